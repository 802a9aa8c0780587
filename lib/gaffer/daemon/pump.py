"""A writer thread behind a queue bounded in bytes: the loop hands output over
and never waits for a slow reader (a full pipe, a stalled journald). What does
not fit is dropped and counted, and the count is written out once the sink
keeps up again."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

MAX_QUEUED = 4 << 20


class Pump:
    def __init__(self, write: Callable[[bytes], object], max_bytes: int = MAX_QUEUED) -> None:
        self._write = write
        self._max = max_bytes
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._queued = 0
        self._lock = threading.Lock()
        self.dropped = 0  # bytes, since the start
        self._unreported = 0
        self._thread = threading.Thread(target=self._run, name="gafferd-pump", daemon=True)
        self._thread.start()

    def put(self, data: bytes) -> bool:
        """Queue ``data``; False (and counted) if the sink is that far behind."""
        with self._lock:
            if self._queued + len(data) > self._max:
                self.dropped += len(data)
                self._unreported += len(data)
                return False
            self._queued += len(data)
        self._queue.put(data)
        return True

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            with self._lock:
                self._queued -= len(data)
                lost, self._unreported = self._unreported, 0
            try:
                if lost:
                    self._write(
                        f"gafferd | {lost} bytes of output dropped: too slow a reader\n".encode()
                    )
                self._write(data)
            except OSError:
                pass  # the reader is gone; keep draining so the queue stays bounded

    def close(self, timeout: float = 1.0) -> bool:
        """Flush and stop; False if the sink is stuck (its thread still in write())."""
        self._queue.put(None)
        self._thread.join(timeout)  # a sink stuck in write() must not hold up the exit
        return not self._thread.is_alive()

    def after_fork(self) -> None:
        """In a forked child (``--daemon``): the thread did not come along."""
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._queued = 0
        self._thread = threading.Thread(target=self._run, name="gafferd-pump", daemon=True)
        self._thread.start()


class PumpHandler(logging.Handler):
    """A logging handler writing through a :class:`Pump`: the daemon's own log
    lines cannot block the loop either, and stay in order with job output."""

    def __init__(self, pump: Pump) -> None:
        super().__init__()
        self.pump = pump

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pump.put((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)
