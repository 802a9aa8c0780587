"""What the API changed, kept across restarts: the jobs loaded, unloaded,
scaled, started or stopped through it, in SQLite in the state dir.

After every change (coalesced per loop turn) the whole running set is written
in one transaction — jobs with their config, wanted size and whether they are
active — along with the names the config file had, so that at the next start
``plan()`` can tell a job unloaded through the API (in the file then, gone
from the set) from one added to the file since.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gaffer.config import ProcessConfig
from gaffer.daemon.config import JobEntry
from gaffer.events import Event
from gaffer.manager import Manager
from gaffer.process import abandon_handed_over

if TYPE_CHECKING:
    import psutil

log = logging.getLogger("gafferd.state")

EVENTS = ("load", "unload", "update", "start", "stop", "scale", "spawn", "reap")
START_TIME_SLACK = 2.0  # seconds between our clock at spawn and the kernel's start time
PREVIOUS_GRACE = 5.0  # seconds the previous generation gets to exit on SIGTERM


@dataclass
class Planned:
    """A job to load at start, as the previous run left it."""

    entry: JobEntry
    start: bool
    restored: bool  # changed by the saved state (not just the file)


class StateStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gafferd-state")

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        conn = sqlite3.connect(self.path)
        conn.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")
        os.chmod(self.path, 0o600)
        return conn

    def load(self) -> dict[str, Any] | None:
        """The saved state (at start, before the loop runs)."""
        if not os.path.exists(self.path):
            return None
        try:
            with contextlib.closing(self._connect()) as conn:
                row = conn.execute("SELECT value FROM state WHERE key = 'jobs'").fetchone()
        except sqlite3.Error as e:
            log.error(
                "%s: cannot read the saved state (%s); starting from the config", self.path, e
            )
            return None
        if not row:
            return None
        try:
            state = json.loads(row[0])
        except ValueError as e:
            state = e
        if not (
            isinstance(state, dict)
            and isinstance(state.get("jobs", {}), dict)
            and isinstance(state.get("procs", []), list)
            and isinstance(state.get("file_jobs", []), list)
        ):
            log.error("%s: the saved state is damaged; starting from the config", self.path)
            return None
        return state

    def _save(self, snapshot: dict[str, Any]) -> None:
        with contextlib.closing(self._connect()) as conn, conn:  # one transaction
            conn.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES ('jobs', ?)",
                (json.dumps(snapshot),),
            )

    async def save(self, snapshot: dict[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._save, snapshot)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def snapshot(manager: Manager, file_jobs: list[str]) -> dict[str, Any]:
    procs = [
        {"os_pid": p.os_pid, "started": p.create_time, "job": p.name}
        for p in manager.list()
        if p.os_pid is not None and p.create_time is not None and p.alive
    ]
    jobs = {}
    for name in manager.jobs():
        job = manager.get(name)
        jobs[name] = {
            "config": job.config.to_dict(),
            "numprocesses": job.numprocesses,
            "active": job.active,
        }
    return {
        "version": 1,
        "file_jobs": sorted(file_jobs),
        "jobs": jobs,
        "procs": procs,
        # a schedule's fire spawns a process: saved then (for catch_up)
        "schedule_marks": dict(manager.schedule_marks),
    }


def stop_previous(saved: dict[str, Any] | None) -> list[int]:
    """Stop what a previous gafferd that died without stopping its jobs (SIGKILL,
    OOM) left running, before anything is spawned: no orphan keeps running
    unsupervised, none is duplicated. A recorded process counts only if it is
    still the same one (its start time matches): a reused pid is left alone.
    Runs at start, before the loop serves anything. Returns the pids stopped."""
    records = (saved or {}).get("procs", [])
    if not records:
        return []
    import psutil  # only when there is something to look for: not on every start

    found: list[psutil.Process] = []
    for rec in records:
        try:
            proc = psutil.Process(int(rec["os_pid"]))
            if abs(proc.create_time() - float(rec["started"])) > START_TIME_SLACK:
                continue
        except Exception:  # psutil errors, or a damaged record: not one of ours
            continue
        found.append(proc)
    for proc in found:
        # its whole group: what it started goes with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    alive = _wait_gone(found, PREVIOUS_GRACE)
    for proc in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _wait_gone(alive, PREVIOUS_GRACE)
    return [p.pid for p in found]


def kill_handed_over(state: dict[str, Any]) -> None:
    """SIGKILL the process groups of a hand-over nobody will adopt, and close
    their pipes: a failed re-exec must leave no orphan behind."""
    for job in state.get("jobs", []):
        abandon_handed_over(job.get("processes", []))


def _running(proc: psutil.Process) -> bool:
    import psutil

    # An orphan's zombie (waiting for whoever adopted it to reap it) is gone for us.
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    import psutil

    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        _, alive = psutil.wait_procs(alive, timeout=0.05)
        alive = [p for p in alive if _running(p)]
    return alive


def plan(file_jobs: list[JobEntry], saved: dict[str, Any] | None) -> list[Planned]:
    """What to load at start: the config file's jobs, changed as the API had
    changed them; API-loaded jobs again; API-unloaded ones not at all. Where the
    file changed a job since (its definition, or its ``numprocesses``), the file
    wins. A damaged saved record is skipped."""
    if not saved:
        return [Planned(e, e.config.start, False) for e in file_jobs]
    before_file = {n for n in saved.get("file_jobs", []) if isinstance(n, str)}
    jobs: dict[str, Any] = saved.get("jobs", {})
    out: list[Planned] = []
    for e in file_jobs:
        name = f"{e.session}.{e.config.name}"
        rec = jobs.get(name)
        if rec is None:
            if name in before_file:
                continue  # unloaded through the API: stays unloaded
            out.append(Planned(e, e.config.start, False))
            continue
        try:
            saved_cfg = ProcessConfig.from_dict(rec["config"])
            size, active = int(rec["numprocesses"]), bool(rec["active"])
        except Exception:  # a damaged record, or a config this version cannot read
            out.append(Planned(e, e.config.start, False))
            continue
        if saved_cfg == e.config:  # the file has not changed this job since
            cfg = e.config.replace(numprocesses=size)
            out.append(Planned(JobEntry(e.session, cfg), active, True))
        else:
            out.append(Planned(e, e.config.start, False))  # the file changed: it wins
    file_names = {f"{e.session}.{e.config.name}" for e in file_jobs}
    for name, rec in jobs.items():
        if not isinstance(name, str) or "." not in name:
            continue
        if name in file_names or name in before_file:
            continue  # a file job (handled above), or one since removed from the file
        session = name.split(".", 1)[0]
        try:
            cfg = ProcessConfig.from_dict(rec["config"])
            cfg = cfg.replace(numprocesses=int(rec["numprocesses"]))
            active = bool(rec["active"])
        except Exception as e:
            log.error("saved job %s cannot be restored: %s", name, e)
            continue
        out.append(Planned(JobEntry(session, cfg), active, True))
    return out


class Persistence:
    """A manager app saving the running set after every change."""

    def __init__(self, store: StateStore, file_jobs: Any) -> None:
        self.store = store
        self.file_jobs = file_jobs  # () -> names of the config file's jobs, now
        self.manager: Manager | None = None
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None:
        self.manager = manager
        for type_ in EVENTS:
            manager.emitter.subscribe(type_, self._changed)

    def _changed(self, event: Event) -> None:
        if self._scheduled or self.manager is None or not self.manager.active:
            return  # a shutdown stops jobs: that is not a change to remember
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._scheduled = False
        if self.manager is None or not self.manager.active:
            return
        snap = snapshot(self.manager, self.file_jobs())
        task = asyncio.ensure_future(self.store.save(snap))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cannot save the state: %s", task.exception())

    async def stop(self) -> None:
        if self.manager is not None:
            for type_ in EVENTS:
                self.manager.emitter.unsubscribe(type_, self._changed)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.store.close()
