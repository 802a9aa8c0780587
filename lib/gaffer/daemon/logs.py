"""Job output to log files: one file per process stream, named from a template
(``{session}``, ``{job}``, ``{index}``, ``{stream}``), rotated by size
(``max_bytes``, ``backups``) and reopened on SIGUSR1 (for logrotate).

Writing never blocks the loop: output is handed to one writer thread through
a queue bounded in bytes. If the disk cannot keep up, the pipe that pushed the
queue over its bound is no longer read until the writer has caught up (its
process blocks on a full pipe, as it would writing to a slow file itself):
nothing is lost and the daemon's memory stays bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any

from gaffer.errors import ConfigError, GafferError
from gaffer.events import Event
from gaffer.manager import Manager

log = logging.getLogger("gafferd.logs")

QUEUE_BYTES = 16 << 20  # output waiting for the disk, all jobs together (paused
# pipes are read again once it is down to half)
WRITE_BATCH = 256  # queued chunks written together at most
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

    def __init__(
        self,
        default: LogSettings | None,
        per_job: dict[str, LogSettings | None],
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.default = default
        self.queue_bytes = queue_bytes
        self.per_job = per_job
        self._queue: queue.SimpleQueue[tuple[str, str, bytes, LogSettings | None] | None] = (
            queue.SimpleQueue()
        )
        self._queued = 0
        self._lock = threading.Lock()
        self._files: dict[str, RotatingFile] = {}
        self._reopen = threading.Event()
        # streams not read until the writer catches up: (pid, label); loop side
        self._paused: set[tuple[int, str]] = set()
        self._resume_wanted = False  # under _lock: the writer must wake the loop
        self.pauses = 0
        self.manager: Manager | None = None
        self._loop: Any = None
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
        self._loop = loop
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
            self._queued += len(data)
            full = self._queued > self.queue_bytes
            if full:
                self._resume_wanted = True
        self._queue.put((path, d["name"], data, settings))
        if full and self.manager is not None:
            key = (int(d["pid"]), str(d["label"]))
            with contextlib.suppress(GafferError):
                self.manager.get_process(key[0]).readers[key[1]].pause()
                if key not in self._paused:
                    self.pauses += 1
                self._paused.add(key)

    def _resume(self) -> None:
        paused, self._paused = self._paused, set()
        if self.manager is None:
            return
        for pid, label in paused:
            with contextlib.suppress(GafferError, KeyError):  # it has gone meanwhile
                self.manager.get_process(pid).readers[label].resume()

    # -- the writer thread -------------------------------------------------------------

    def _writer(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Whatever else waits goes out with it: one write per file per batch
            # instead of one per chunk (and far fewer trips through the GIL).
            with contextlib.suppress(queue.Empty):
                while len(batch) < WRITE_BATCH and batch[-1] is not None:
                    batch.append(self._queue.get_nowait())
            if self._reopen.is_set():
                self._reopen.clear()
                for f in self._files.values():
                    f.close()
                self._files.clear()  # new settings (a reload) apply from here
            pending: dict[str, tuple[str, list[bytes], LogSettings]] = {}
            size = 0
            for item in batch:
                if item is None:
                    break
                path, job, data, settings = item
                if not data or settings is None:
                    continue
                size += len(data)
                if path in pending:
                    pending[path][1].append(data)
                else:
                    pending[path] = (job, [data], settings)
            with self._lock:
                self._queued -= size
                wake = self._resume_wanted and self._queued <= self.queue_bytes // 2
                if wake:
                    self._resume_wanted = False
            if wake and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to resume
                    self._loop.call_soon_threadsafe(self._resume)
            for path, (job, chunks, settings) in pending.items():
                self._write(path, job, b"".join(chunks), settings)
            if batch[-1] is None:
                break
        for f in self._files.values():
            f.close()

    def _write(self, path: str, job: str, data: bytes, settings: LogSettings) -> None:
        if path not in self._files:
            self._files[path] = RotatingFile(path, settings.max_bytes, settings.backups)
        try:
            self._files[path].write(data)
        except Exception as e:  # the writer must outlive any one bad write
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                log.error("%s: cannot write %s: %s", job, path, getattr(e, "strerror", e))
