"""Job output to log files: one file per process stream, named from a template
(``{session}``, ``{job}``, ``{index}``, ``{stream}``), rotated by size
(``max_bytes``, ``backups``) and reopened on SIGUSR1 (for logrotate).

Writing never blocks the loop: output is handed to one writer thread through
a queue bounded in bytes. If the disk cannot keep up, what does not fit is
dropped, counted per job, logged and published as a ``log_dropped`` event —
never silently lost, never growing the daemon's memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

from gaffer.errors import ConfigError
from gaffer.events import Event
from gaffer.manager import Manager

log = logging.getLogger("gafferd.logs")

QUEUE_BYTES = 16 << 20  # output waiting for the disk, all jobs together
DROP_REPORT_EVERY = 1 << 20  # bytes dropped between two reports of one job
TEMPLATE_KEYS = ("session", "job", "index", "stream")


@dataclass(frozen=True)
class LogSettings:
    path: str
    max_bytes: int = 10 << 20
    backups: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError("path", f"expected a path template, got {self.path!r}")
        try:
            self.path.format(session="s", job="j", index=0, stream="stdout")
        except Exception as e:  # KeyError, IndexError, ValueError, AttributeError...
            raise ConfigError(
                "path", f"unknown placeholder {e} (use {', '.join(TEMPLATE_KEYS)})"
            ) from None
        for name in ("max_bytes", "backups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(name, f"must be an integer ≥ 0, got {value!r}")

    @classmethod
    def from_dict(cls, d: Any) -> LogSettings:
        if isinstance(d, str):
            return cls(d)
        if not isinstance(d, dict):
            raise ConfigError(None, f"expected a path or a mapping, got {d!r}")
        unknown = set(d) - {"path", "max_bytes", "backups"}
        if unknown:
            first = sorted(unknown, key=str)[0]
            raise ConfigError(str(first), "unknown option (path, max_bytes, backups)")
        return cls(**d)


class RotatingFile:
    """Appends to ``path``; past ``max_bytes`` it becomes path.1, path.1 becomes
    path.2 ... up to ``backups`` (0: never rotate). Used by the writer thread only."""

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._f: Any = None
        self._size = 0

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open across writes
        self._size = self._f.tell()

    def write(self, data: bytes) -> None:
        if self._f is None:
            self._open()
        rotating = self.max_bytes and self.backups
        while rotating and self._size + len(data) > self.max_bytes:
            # Fill the file up to its last whole line that fits, then rotate.
            room = self.max_bytes - self._size
            cut = data.rfind(b"\n", 0, room) + 1
            if cut == 0 and self._size == 0:
                cut = room  # one line longer than a whole file: split it
            if cut:
                self._f.write(data[:cut])
                data = data[cut:]
            self._rotate()
        if data:
            self._f.write(data)
            self._size += len(data)

    def _rotate(self) -> None:
        self.close()
        for n in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.path, f"{self.path}.1")
        self._open()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class LogFiles:
    """A manager app writing the output of the jobs that have log settings."""

    def __init__(self, default: LogSettings | None, per_job: dict[str, LogSettings | None]) -> None:
        self.default = default
        self.per_job = per_job
        self._queue: queue.SimpleQueue[tuple[str, str, bytes, LogSettings | None] | None] = (
            queue.SimpleQueue()
        )
        self._queued = 0
        self._lock = threading.Lock()
        self._files: dict[str, RotatingFile] = {}
        self._reopen = threading.Event()
        self.dropped: dict[str, int] = {}
        self._reported: dict[str, int] = {}
        self.manager: Manager | None = None
        self._thread: threading.Thread | None = None
        self.errors = 0

    def configure(
        self, default: LogSettings | None, per_job: dict[str, LogSettings | None]
    ) -> None:
        """New settings (after a reload): files are reopened under the new names."""
        self.default = default
        self.per_job = per_job
        self.reopen()

    def settings_for(self, job: str) -> LogSettings | None:
        return self.per_job.get(job, self.default)

    def wants(self, job: str) -> bool:
        return self.settings_for(job) is not None

    # -- app ----------------------------------------------------------------------

    def start(self, loop: Any, manager: Manager) -> None:
        self.manager = manager
        self._thread = threading.Thread(target=self._writer, name="gafferd-logs", daemon=True)
        self._thread.start()
        manager.emitter.subscribe("stream", self._on_output)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.emitter.unsubscribe("stream", self._on_output)
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reopen(self) -> None:
        """Close every file; the next write opens them again (after logrotate)."""
        self._reopen.set()
        self._queue.put(("", "", b"", None))  # wake the writer

    # -- the loop side ---------------------------------------------------------------

    def _on_output(self, event: Event) -> None:
        if event.type != "output":
            return
        d = event.data
        settings = self.settings_for(d["name"])
        if settings is None:
            return
        data: bytes = d["data"]
        session, job = d["name"].split(".", 1)
        path = settings.path.format(session=session, job=job, index=d["index"], stream=d["label"])
        with self._lock:
            if self._queued + len(data) > QUEUE_BYTES:
                self._drop(d["name"], len(data))
                return
            self._queued += len(data)
        self._queue.put((path, d["name"], data, settings))

    def _drop(self, job: str, size: int) -> None:
        total = self.dropped[job] = self.dropped.get(job, 0) + size
        if total - self._reported.get(job, 0) >= DROP_REPORT_EVERY or job not in self._reported:
            self._reported[job] = total
            log.warning("%s: the log disk cannot keep up; %d bytes of output dropped", job, total)
            if self.manager is not None:
                self.manager.emitter.publish(
                    "log_dropped",
                    ("log_dropped", f"job.{job}.log_dropped"),
                    {"name": job, "bytes": total},
                )

    # -- the writer thread -------------------------------------------------------------

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if self._reopen.is_set():
                self._reopen.clear()
                for f in self._files.values():
                    f.close()
                self._files.clear()  # new settings (a reload) apply from here
            if item is None:
                break
            path, job, data, settings = item
            if not data or settings is None:
                continue
            with self._lock:
                self._queued -= len(data)
            if path not in self._files:
                self._files[path] = RotatingFile(path, settings.max_bytes, settings.backups)
            try:
                self._files[path].write(data)
            except Exception as e:  # the writer must outlive any one bad write
                self.errors += 1
                if self.errors == 1 or self.errors % 1000 == 0:
                    log.error("%s: cannot write %s: %s", job, path, getattr(e, "strerror", e))
        for f in self._files.values():
            f.close()
