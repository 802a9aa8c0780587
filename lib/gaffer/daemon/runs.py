"""Run records: gafferd keeps every exit of a supervised process and every
one-off run (``commit``) in ``<state_dir>/runs.db``.

The core publishes a ``record`` event for each exit (see ``Job._record``; once
more, with the same start time, when its last output has been read); a one-off
run is also written when it starts, so running runs are listed. The file is
bounded by ``daemon.runs`` (``keep`` records, ``max_age``), pruned on insert.

Threading: the loop never waits on SQLite. One worker thread owns the
connection; writes are queued to it and not awaited, reads await it. The one
worker runs them in order, so a read sees every write queued before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from gaffer.errors import InvalidState, NotFound

if TYPE_CHECKING:
    from gaffer.events import Event
    from gaffer.manager import Manager

log = logging.getLogger("gaffer.runs")

T = TypeVar("T")

DEFAULT_KEEP = 10000
DEFAULT_MAX_AGE = 30 * 86400.0
MAX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    pid INTEGER NOT NULL,
    os_pid INTEGER,
    once INTEGER NOT NULL,
    started REAL,
    ended REAL,
    exit_status INTEGER,
    term_signal INTEGER,
    reason TEXT,
    error TEXT,
    output TEXT
);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE INDEX IF NOT EXISTS runs_ended ON runs (ended);
CREATE INDEX IF NOT EXISTS runs_key ON runs (pid, started);
"""
_COLUMNS = (
    "id, job, pid, os_pid, once, started, ended, exit_status, term_signal, reason, error, output"
)


@dataclass(frozen=True)
class RunsSettings:
    """``daemon.runs``: how many records are kept, and for how long (seconds)."""

    keep: int = DEFAULT_KEEP
    max_age: float = DEFAULT_MAX_AGE


def _row(row: tuple[Any, ...]) -> dict[str, Any]:
    (rid, job, pid, os_pid, once, started, ended, status, signum, reason, error, output) = row
    return {
        "id": rid,
        "job": job,
        "pid": pid,
        "os_pid": os_pid,
        "once": bool(once),
        "started": started,
        "ended": ended,
        "running": ended is None,
        "duration": round(ended - started, 3) if ended is not None and started else None,
        "exit_status": status,
        "term_signal": signum,
        "reason": reason,
        "error": error,
        "output": json.loads(output) if output else {},
    }


class RunStore:
    """The SQLite file of run records, used from the event loop."""

    def __init__(self, path: str, settings: RunsSettings | None = None) -> None:
        self.path = path
        self.settings = settings or RunsSettings()
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- lifecycle (the worker owns the connection) -------------------------------

    def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gaffer-runs")
        self._executor.submit(self._open).result()

    def _open(self) -> None:
        # Created 0600 by us, never with the umask's mode: outputs can hold secrets.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn

    def close(self) -> None:
        """Finish the queued writes and close (blocks: call at shutdown)."""
        if self._executor is None:
            return
        self._executor.submit(self._close).result()
        self._executor.shutdown()
        self._executor = None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        if self._executor is None:
            raise RuntimeError("RunStore is not open")

        def work() -> T:
            assert self._conn is not None
            return fn(self._conn)

        return self._executor.submit(work)

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        def done(fut: Future[Any]) -> None:
            if fut.exception() is not None:
                log.error("run records: cannot write: %s", fut.exception())

        self._submit(fn).add_done_callback(done)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._submit(fn))

    # -- writes (queued, never awaited) -------------------------------------------

    def started(self, rec: dict[str, Any]) -> None:
        """A one-off run began: listed as running until it ends."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO runs (job, pid, os_pid, once, started, reason) "
                "VALUES (?, ?, ?, 1, ?, 'running')",
                (rec["name"], rec["pid"], rec["os_pid"], rec["started"]),
            )
            self._prune(conn)

        self._write(work)

    def ended(self, rec: dict[str, Any]) -> None:
        """A process ended (or its output was read to the end): complete its
        record, or add it. A run already marked ``cancelled`` stays so."""
        values = (
            rec["os_pid"],
            rec["ended"],
            rec["exit_status"],
            rec["term_signal"],
            rec["reason"],
            rec.get("error"),
            json.dumps(rec.get("output") or {}),
        )

        def work(conn: sqlite3.Connection) -> None:
            with conn:
                updated = 0
                if rec["started"] is not None:
                    updated = conn.execute(
                        "UPDATE runs SET os_pid = ?, ended = ?, exit_status = ?, term_signal = ?,"
                        " reason = CASE WHEN reason = 'cancelled' THEN reason ELSE ? END,"
                        " error = ?, output = ? WHERE pid = ? AND started = ? AND job = ?",
                        (*values, rec["pid"], rec["started"], rec["name"]),
                    ).rowcount
                if not updated:
                    conn.execute(
                        "INSERT INTO runs (os_pid, ended, exit_status, term_signal, reason,"
                        " error, output, job, pid, once, started)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, rec["name"], rec["pid"], int(bool(rec["once"])), rec["started"]),
                    )
                    self._prune(conn)

        self._write(work)

    def close_open(self, reason: str = "lost") -> None:
        """Runs a previous daemon left open ended with it (a re-executed daemon's
        adopted runs are completed again when they end)."""

        def work(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE runs SET ended = ?, reason = ? WHERE ended IS NULL", (time.time(), reason)
            )

        self._write(work)

    def _prune(self, conn: sqlite3.Connection) -> None:
        # Both use an index: the id (primary key) and `ended`.
        conn.execute(
            "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?",
            (time.time() - self.settings.max_age,),
        )
        row = conn.execute(
            "SELECT id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?", (self.settings.keep,)
        ).fetchone()
        if row is not None:
            conn.execute("DELETE FROM runs WHERE id <= ? AND ended IS NOT NULL", (row[0],))

    async def mark(self, rid: int, reason: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET reason = ? WHERE id = ?", (reason, rid))

        await self._read(work)

    # -- reads ------------------------------------------------------------------

    async def get(self, rid: int) -> dict[str, Any] | None:
        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE id = ?", (rid,)).fetchone()
            return _row(row) if row is not None else None

        return await self._read(work)

    async def list(
        self,
        job: str | None = None,
        once: bool | None = None,
        reason: str | None = None,
        since: float | None = None,
        limit: int = 100,
        readable: Callable[[str], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. ``job`` is ``S.J`` or a session ``S``; ``readable``
        filters by job (called on the worker thread: it must be pure)."""
        where: list[str] = []
        params: list[Any] = []
        if job is not None:
            where.append("(job = ? OR job LIKE ? ESCAPE '\\')")
            escaped = job.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [job, escaped + ".%"]
        if once is not None:
            where.append("once = ?")
            params.append(int(once))
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        if since is not None:
            where.append("(ended IS NULL OR ended >= ?)")
            params.append(since)
        sql = f"SELECT {_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            out = []
            for row in conn.execute(sql, params):
                if readable is None or readable(row[1]):
                    out.append(_row(row))
                    if len(out) >= limit:
                        break
            return out

        return await self._read(work)


class RunsApp:
    """Records runs from the manager's events into a :class:`RunStore`, and
    cancels running one-off runs (``DELETE /runs/<id>``)."""

    def __init__(self, store: RunStore, adopting: bool = False) -> None:
        self.store = store
        # after a re-exec, the open runs are still running: adopted, not lost
        self.adopting = adopting
        self.manager: Manager | None = None
        # cancels waiting for their run's record: pid -> futures
        self._ending: dict[int, list[asyncio.Future[None]]] = {}

    def start(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None:
        self.manager = manager
        self.store.open()
        if not self.adopting:
            self.store.close_open()
        manager.emitter.subscribe("spawn", self._spawned)
        manager.emitter.subscribe("record", self._recorded)

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.emitter.unsubscribe("spawn", self._spawned)
            self.manager.emitter.unsubscribe("record", self._recorded)
        self.store.close()

    def _spawned(self, event: Event) -> None:
        data = event.data
        if data.get("adopted") or self.manager is None:
            return  # after a re-exec: its record was written when it started
        try:
            proc = self.manager.get_process(data["pid"])
        except NotFound:
            return  # ended already: its record is written whole
        if proc.committed:
            self.store.started({**data, "started": proc.create_time})

    def _recorded(self, event: Event) -> None:
        self.store.ended(dict(event.data))
        for fut in self._ending.pop(event.data["pid"], []):
            if not fut.done():
                fut.set_result(None)

    async def cancel(self, rid: int, can: Callable[[str], bool]) -> dict[str, Any]:
        """Stop a running one-off run gracefully; its record says ``cancelled``."""
        assert self.manager is not None
        rec = await self.store.get(rid)
        if rec is None or not can(rec["job"]):
            raise NotFound(f"run {rid} not found")
        proc = None
        if rec["ended"] is None:
            with contextlib.suppress(NotFound):
                proc = self.manager.get_process(rec["pid"])
        if proc is None or proc.os_pid != rec["os_pid"] or not proc.alive:
            raise InvalidState(f"run {rid} has already ended ({rec['reason']})")
        if not rec["once"]:
            raise InvalidState(f"run {rid} is a supervised process, not a one-off run")
        ending = asyncio.get_running_loop().create_future()
        self._ending.setdefault(proc.pid, []).append(ending)
        await self.store.mark(rid, "cancelled")
        await self.manager.stop_process(proc.pid)
        await ending
        out = await self.store.get(rid)
        assert out is not None
        return out
