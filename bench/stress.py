"""Randomized stress test of gaffer's :class:`~gaffer.manager.Manager`.

Run with ``make stress`` (240 s) or ``make stress QUICK=1`` (60 s), or
``.venv/bin/python bench/stress.py [--loop uvloop|asyncio] [--budget SECONDS]
[--seeds 1-10,15] [--start N] [--ops 200] [--exclude kill9,...] [--out DIR]``.

By default both event loops run one after the other (uvloop, then asyncio),
each for half of ``--budget``; ``--seeds`` runs the given seeds instead. Each
seed gets a fresh ``Manager(loop_kind=...)`` and two concurrent "actors" doing
``--ops`` random operations between them (load, unload, update, reload, scale,
commit, stop/start jobs, stopall, kill -9 of leaders and group members,
stop_process, killall, restart, waits...) on jobs running ``sleep``, forking
shells, TERM-ignoring children, failing and missing programs. Futures are
awaited, left to fire, or given tiny timeouts. Then the seed settles, calls
``astop()`` and checks for leaks.

Invariants checked (any violation is a "finding"):

* every live registered process is owned exactly once, by a slot, the
  retiring set, the one-off (``commit``) runs or the lingering set; slot and
  process indices agree; no two live processes share an index, except one-off
  runs, which all have index -1; owned processes are registered and alive;
* when no config operation holds a job's ``config_lock``, no slot is stuck
  ``rolling`` and retiring processes are being stopped; once settled, every
  active job has exactly its ``numprocesses`` slots, all filled or scheduled;
* events per pid come in a legal order (spawn first, state transitions allowed
  by ``gaffer.states``, one exit, then one reap, nothing after the reap);
  event sequence numbers increase; the subscription drops nothing;
* no unexpected warnings are logged: no asyncio "exception was never
  retrieved" / "Exception in callback", no unraisable exceptions, no
  exception escaping an API call or future (other than ``GafferError``);
* returned futures finish (no hangs), ``astop()`` finishes within 30 s, and
  afterwards no process is registered, held by a job or still alive
  (leaders, their group members and any descendant of this script);
* the open file descriptor count returns to its value before the seed.

Output: the output directory (``--out``, default a fresh temporary directory)
is printed first; it gets ``<loop>.jsonl`` (one line per seed) and, for each
seed with findings, ``<loop>-<seed>.log`` with the operation log. One line per
seed goes to stdout, then a summary. Exit status 1 if any seed had findings or
a process was left behind, else 0. Whatever the script started is killed and
reaped on exit, including Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import psutil
from gaffer import states
from gaffer.errors import GafferError
from gaffer.manager import Manager
from gaffer.reaper import proc_stats

PY = sys.executable
# prints "ready <pid>", ignores SIGTERM and so does the child it forks (a group member)
IGN = str(Path(__file__).resolve().parent.parent / "tests" / "children" / "ignore_term.py")
HANG = 60.0  # an awaited library future taking longer than this is a hang
LOOPS = ("uvloop", "asyncio")
EXCLUDE: set[str] = set()  # op kinds left out (--exclude)
ME = os.getpid()

# ----------------------------------------------------------------------------- logs

EXPECTED_LOG = (
    ("gaffer.process", "still running after graceful_timeout"),
    ("gaffer.job", "cannot start"),
    ("gaffer.job", "giving up"),
)


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:
            msg = repr(record.msg)
        exc = ""
        if record.exc_info:
            exc = "".join(traceback.format_exception(*record.exc_info))
        self.records.append((record.name, record.levelname, msg, exc))


CAPTURE = Capture()
logging.getLogger().addHandler(CAPTURE)
logging.getLogger().setLevel(logging.WARNING)

UNRAISABLE: list[str] = []


def _unraisable(u: object) -> None:
    UNRAISABLE.append(
        f"{getattr(u, 'err_msg', '')} {getattr(u, 'exc_value', '')!r}"
        f" obj={getattr(u, 'object', '')!r}"
    )


sys.unraisablehook = _unraisable


def classify_log(rec: tuple[str, str, str, str]) -> str | None:
    """None if expected, else a finding kind."""
    name, level, msg, _exc = rec
    for lname, pat in EXPECTED_LOG:
        if name == lname and pat in msg:
            return None
    if name == "gaffer.manager" and level == "WARNING":
        return None  # _task_done logging a GafferError reason
    if name == "asyncio":
        first = msg.splitlines()[0] if msg else msg
        return f"asyncio-log: {first[:80]}"
    return f"log {name} {level}: {msg[:80]}"


# ----------------------------------------------------------------------------- /proc


def proc_table() -> dict[int, tuple[int, int, str, int]]:
    """pid -> (ppid, pgrp, state, starttime)"""
    out = {}
    for pid, fields in proc_stats():
        try:
            out[pid] = (int(fields[1]), int(fields[2]), fields[0].decode(), int(fields[19]))
        except (IndexError, ValueError):
            continue
    return out


def descendants(table: dict[int, tuple[int, int, str, int]], root: int) -> set[int]:
    kids = collections.defaultdict(list)
    for pid, (ppid, *_rest) in table.items():
        kids[ppid].append(pid)
    out: set[int] = set()
    todo = [root]
    while todo:
        p = todo.pop()
        for c in kids.get(p, ()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def pidfd_kill(pid: int, starttime: int | None, sig: int) -> bool:
    """Signal pid only if it is still the process we saw (same start time)."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if starttime is not None:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rfind(b")") + 2 :].split()
                if int(fields[19]) != starttime:
                    return False
            except OSError:
                return False
        try:
            signal.pidfd_send_signal(fd, sig)
            return True
        except OSError:
            return False
    finally:
        os.close(fd)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_listing() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def kill_leftovers() -> list[int]:
    """Kill whatever of ours is still alive (by pid, verified), reap zombies.

    Returns the pids that were still alive (not zombies) at the first look.
    """
    found: list[int] = []
    for attempt in range(10):
        table = proc_table()
        mine = descendants(table, ME)
        for pid in mine:
            if table[pid][2] not in ("Z", "X"):
                if attempt == 0:
                    found.append(pid)
                pidfd_kill(pid, table[pid][3], signal.SIGKILL)
        time.sleep(0.1)
        for pid, (ppid, _pgrp, st, _start) in proc_table().items():
            if ppid == ME and st == "Z":
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        if not descendants(proc_table(), ME):
            break
    return found


# ----------------------------------------------------------------------------- configs

CMD_KINDS = [
    ("sleep", 30),
    ("forker", 14),
    ("ignterm", 8),
    ("true", 7),
    ("false", 7),
    ("exit3", 7),
    ("missing", 6),
    ("short", 10),
]


def cmd_for(kind: str, variant: int) -> dict:
    v = str(variant)
    if kind == "sleep":
        return {"cmd": "sleep", "args": [str(3600 + variant)]}
    if kind == "true":
        return {"cmd": "true", "args": [v]}
    if kind == "false":
        return {"cmd": "false", "args": [v]}
    if kind == "exit3":
        return {"cmd": "sh", "args": ["-c", "exit 3", v]}
    if kind == "ignterm":
        return {"cmd": PY, "args": [IGN, v]}
    if kind == "forker":
        return {"cmd": "sh", "args": ["-c", "sleep 3600 & exec sleep 3600", v]}
    if kind == "missing":
        return {"cmd": "/nonexistent/gaffer-stress-prog", "args": [v]}
    if kind == "short":
        return {"cmd": "sh", "args": ["-c", "sleep 0.2; exit 1", v]}
    raise ValueError(kind)


def rand_config(rng: random.Random, name: str, base: dict | None = None) -> dict:
    kinds, weights = zip(*CMD_KINDS, strict=True)
    if base is not None and rng.random() < 0.4:
        c = dict(base)
        c["name"] = name
        what = rng.random()
        if what < 0.4:  # same size, different args
            kind = c.get("_kind", "sleep")
            c.update(cmd_for(kind, rng.randint(0, 3)))
        elif what < 0.8:  # only the size
            c["numprocesses"] = rng.randint(0, 5)
        else:  # size and args
            c["numprocesses"] = rng.randint(0, 5)
            c.update(cmd_for(c.get("_kind", "sleep"), rng.randint(0, 3)))
        return c
    kind = rng.choices(kinds, weights)[0]
    c = {"name": name, "_kind": kind, **cmd_for(kind, rng.randint(0, 3))}
    c["numprocesses"] = rng.randint(0, 5)
    c["startsecs"] = rng.choice([0, 0, round(rng.uniform(0, 0.3), 3)])
    c["restart"] = rng.choice(["always", "always", "on-failure", "never"])
    c["rolling"] = rng.choice(["start-first", "stop-first"])
    c["graceful_timeout"] = round(rng.uniform(0.1, 0.5), 3)
    c["flapping"] = rng.choice(
        [
            False,
            False,
            {"attempts": 3, "window": 1.0, "retry_in": 0.2, "max_retry": 1},
            {"attempts": 4, "window": 2.0, "retry_in": 0.1, "max_retry": 3},
        ]
    )
    c["backoff"] = {"initial": 0.01, "factor": 2, "max": rng.choice([0.02, 0.05])}
    c["priority"] = rng.choice([1, 5, 999])
    if rng.random() < 0.15:
        c["success_exit_codes"] = [0, 3]
    if rng.random() < 0.1:
        c["redirect_output"] = rng.choice([["out"], []])
    if rng.random() < 0.08:
        c["start"] = False
    return c


def public(c: dict) -> dict:
    return {k: v for k, v in c.items() if not k.startswith("_")}


NAMES = [(None, "a"), (None, "b"), (None, "c"), ("s1", "d"), ("s2", "e")]


def fullname(sess: str | None, job: str) -> str:
    return f"{sess or 'default'}.{job}"


# ----------------------------------------------------------------------------- checks

ALIVE = states.ALIVE_STATES
TERMINAL = states.TERMINAL_STATES


class PidTrack:
    __slots__ = ("error", "events", "exit", "name", "os_pid", "reap", "spawn", "state")

    def __init__(self) -> None:
        self.events: list[str] = []
        self.state = states.STARTING
        self.spawn = False
        self.exit = False
        self.reap = 0
        self.os_pid = None
        self.name = None
        self.error = False


class Seed:
    def __init__(self, loop_kind: str, seed: int, nops: int) -> None:
        self.loop_kind = loop_kind
        self.seed = seed
        self.nops = nops
        self.rng = random.Random(seed)
        self.findings: dict[str, dict] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.oplog: list[str] = []
        self.t0 = time.monotonic()
        self.jobs_ever: list = []
        self.configs: dict[str, dict] = {}
        self.tracks: dict[int, PidTrack] = {}
        self.last_seq = 0
        self.members: dict[int, int] = {}  # pid -> starttime of group members ever seen
        self.leaders: dict[int, int] = {}  # os_pid -> starttime
        self.futures: list[tuple[str, asyncio.Future, bool]] = []
        self.stopping = False
        self.cancelled: set[str] = set()
        self.m: Manager | None = None

    # -- bookkeeping
    def log(self, s: str) -> None:
        self.oplog.append(f"{time.monotonic() - self.t0:8.3f} {s}")

    def find(self, kind: str, detail: str) -> None:
        if kind.startswith("no rollout running") or kind.startswith("settled"):
            kind += (
                " [after a cancelled rollout]"
                if any(c.startswith(("reload", "update")) for c in self.cancelled)
                else " [NO cancelled rollout]"
            )
        f = self.findings.get(kind)
        if f is None:
            self.findings[kind] = {
                "count": 1,
                "detail": detail[:4000],
                "t": time.monotonic() - self.t0,
            }
            self.log(f"FINDING {kind}: {detail[:500]}")
        else:
            f["count"] += 1

    # -- events
    def drain_events(self) -> None:
        sub = self.sub
        while True:
            ev = sub.get_nowait()
            if ev is None:
                break
            self.feed(ev)
        if sub.dropped:
            self.find("events-dropped", f"subscription dropped {sub.dropped}")

    def feed(self, ev) -> None:
        if ev.seq <= self.last_seq:
            self.find("event-seq", f"seq {ev.seq} after {self.last_seq}")
        self.last_seq = ev.seq
        t = ev.type
        d = ev.data
        if t == "output" or "pid" not in d:
            return
        if t not in ("spawn", "state", "exit", "reap", "stop_process", "kill"):
            return
        pid = d["pid"]
        tr = self.tracks.get(pid)
        if tr is None:
            tr = self.tracks[pid] = PidTrack()
            tr.name = d.get("name")
        desc = t if t != "state" else f"state {d['from']}->{d['to']}"
        tr.events.append(desc)

        def bad(why: str) -> None:
            self.find(f"event-order: {why}", f"pid {pid} {tr.name} events {tr.events}")

        if tr.reap:
            bad(f"{t} after reap")
        if t == "spawn":
            if len(tr.events) != 1:
                bad("spawn not first")
            tr.spawn = True
            tr.os_pid = d.get("os_pid")
            if tr.os_pid:
                self.leaders.setdefault(tr.os_pid, 0)
        elif t == "exit":
            if tr.exit:
                bad("two exits")
            if not tr.spawn:
                if "error" not in d:
                    bad("exit without spawn or error")
                elif len(tr.events) != 1:
                    bad("spawn-error exit not first")
                tr.error = True
            tr.exit = True
        elif t == "state":
            if not (tr.spawn or tr.error):
                bad("state before spawn")
            frm, to = d["from"], d["to"]
            if frm != tr.state:
                bad(f"state from {frm} but was {tr.state}")
            if to not in states.TRANSITIONS.get(frm, ()):
                bad(f"illegal transition {frm}->{to}")
            if to in TERMINAL and not tr.exit:
                bad(f"terminal {to} before exit")
            if to not in TERMINAL and tr.exit:
                bad(f"alive state {to} after exit")
            tr.state = to
        elif t == "reap":
            if not tr.exit:
                bad("reap before exit")
            if tr.state not in TERMINAL:
                bad(f"reap in non-terminal state {tr.state}")
            tr.reap += 1
            if tr.reap > 1:
                bad("two reaps")
        elif t == "stop_process" and (not tr.spawn or tr.exit):
            bad("stop_process while not alive")

    def final_event_check(self) -> None:
        for pid, tr in self.tracks.items():
            if not tr.exit:
                self.find("event-order: no exit by end", f"pid {pid} {tr.name} events {tr.events}")
            elif tr.reap != 1:
                self.find("event-order: no reap by end", f"pid {pid} {tr.name} events {tr.events}")

    # -- structural invariants (run on the loop, between callbacks)
    def check_live(self, where: str) -> None:
        m = self.m
        owners: dict[int, list[str]] = collections.defaultdict(list)
        objs = {}
        loaded = {id(j) for j in m._all_jobs()}
        for job in self.jobs_ever:
            for idx, slot in job.slots.items():
                if slot.index != idx:
                    self.find("slot index mismatch", f"{job.name} {idx} {slot.index}")
                p = slot.process
                if p is not None:
                    owners[id(p)].append(f"{job.name}@{id(job):x} slot {idx}")
                    objs[id(p)] = p
                    if p.index != idx:
                        self.find("process index != slot index", f"{job.name} slot {idx} {p!r}")
            for p in job.retiring:
                owners[id(p)].append(f"{job.name}@{id(job):x} retiring")
                objs[id(p)] = p
            for pid, p in job.once.items():
                owners[id(p)].append(f"{job.name}@{id(job):x} once")
                objs[id(p)] = p
                if pid != p.pid:
                    self.find("once key mismatch", f"{job.name} {pid} {p!r}")
            if id(job) not in loaded and job.active:
                self.find(
                    "unloaded job is active",
                    f"{where}: {job!r} slots={[s.info() for s in job.slots.values()]}",
                )
            if not m.active and job.active and m._stopping is not None and m._stopping.done():
                self.find("job active after astop", f"{where}: {job!r}")
        for job in m._all_jobs():
            if job.config_lock.locked():
                continue
            for slot in job.slots.values():
                if slot.status == "rolling":
                    self.find(
                        "no rollout running, yet slot status 'rolling' (stuck)",
                        f"{where}: {job!r} {slot.info()}",
                    )
            for p in job.retiring:
                if p.alive and not p.stop_requested:
                    self.find(
                        "no rollout running, yet a retiring process is not being stopped",
                        f"{where}: {job!r} {p!r}",
                    )
        for p in m._processes.values():
            o = owners.get(id(p), [])
            if len(o) != 1:
                self.find(
                    f"accounting: live process owned {min(len(o), 2)}x",
                    f"{where}: {p!r} owners={o} "
                    f"jobs={[repr(j) for j in self.jobs_ever if j.name == p.name]}",
                )
            if p.exit is not None or p.os_pid is None:
                self.find("registered process not alive", f"{where}: {p!r} exit={p.exit}")
            if p.state not in ALIVE:
                self.find("registered process in terminal state", f"{where}: {p!r}")
        for key, p in objs.items():
            if m._processes.get(p.pid) is not p:
                self.find(
                    "stale: dead process still owned by a job",
                    f"{where}: {p!r} exit={p.exit} owners={owners[key]}",
                )
        for job in self.jobs_ever:
            byidx = collections.defaultdict(list)
            for slot in job.slots.values():
                if slot.process is not None:
                    byidx[slot.process.index].append(("slot", slot.process))
            for p in job.once.values():
                byidx[p.index].append(("once", p))
            for idx, ps in byidx.items():
                if len(ps) > 1 and idx != -1:  # one-off runs all have index -1
                    kinds = sorted(k for k, _ in ps)
                    self.find(
                        f"index shared by live processes ({'+'.join(kinds)})",
                        f"{where}: {job.name} index {idx}: {[(k, repr(p)) for k, p in ps]} "
                        f"numprocesses={job.numprocesses}",
                    )

    def check_settled(self, where: str) -> None:
        """No rollout or background task is running: nothing should be stuck."""
        m = self.m
        for job in m._all_jobs():
            for p in job.retiring:
                if not p.stop_requested and p.alive:
                    self.find(
                        "settled: retiring process never stopped",
                        f"{where}: {job!r} {p!r} config_same={p.config == job.config}",
                    )
            if not job.active:
                continue
            for idx, slot in job.slots.items():
                if idx >= job.numprocesses:
                    self.find("settled: slot above numprocesses", f"{where}: {job!r} slot {idx}")
                if slot.status == "rolling":
                    self.find(
                        "settled: slot stuck in 'rolling'",
                        f"{where}: {job!r} slot {slot.info()}",
                    )
                elif (
                    slot.process is None
                    and slot.timer is None
                    and slot.status in ("idle", "running")
                ):
                    self.find(
                        "settled: empty slot nobody fills",
                        f"{where}: {job!r} slot {slot.info()}",
                    )
            for idx in range(job.numprocesses):
                if idx not in job.slots:
                    self.find("settled: missing slot", f"{where}: {job!r} idx {idx}")

    # -- /proc scan: remember group members, reap orphan zombies
    def scan(self) -> None:
        m = self.m
        table = proc_table()
        leaders = {p.os_pid for p in m._processes.values() if p.os_pid}
        leaders |= {p.os_pid for p in m._lingering if p.os_pid}
        for pid, (_ppid, pgrp, st, start) in table.items():
            if pgrp in leaders and pid != pgrp and st not in ("Z", "X"):
                self.members.setdefault(pid, start)
            if pid in self.leaders and self.leaders[pid] == 0 and pid in leaders:
                self.leaders[pid] = start
        self.reap_orphans(table)

    def reap_orphans(self, table=None) -> None:
        m = self.m
        table = table or proc_table()
        watched = set(getattr(m.watcher, "_fds", {}) or ()) | set(
            getattr(m.watcher, "_callbacks", {}) or ()
        )
        watched |= {p.os_pid for p in m._processes.values() if p.os_pid}
        for pid, (ppid, _pgrp, st, _start) in table.items():
            if ppid == ME and st == "Z" and pid not in watched:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def periodic(self) -> None:
        if self._periodic_stop:
            return
        try:
            self.check_live("periodic")
            self.scan()
            self.drain_events()
        except Exception:
            self.find("stress-harness error", traceback.format_exc())
        self._periodic_handle = self.m.loop.call_later(
            self.rng_p.uniform(0.01, 0.08), self.periodic
        )

    # -- ops
    def pick_name(self, rng: random.Random) -> tuple[str | None, str]:
        return rng.choice(NAMES)

    async def handle_future(self, rng: random.Random, label: str, fut) -> None:
        if not isinstance(fut, asyncio.Future):
            self.find("api: returned non-future", f"{label} -> {fut!r}")
            return
        r = rng.random()
        if r < 0.45:
            mode = "await"
        elif r < 0.75:
            mode = "fire"
        else:
            mode = "tiny"
        self.log(f"  {label} mode={mode}")
        if mode == "fire":
            self.futures.append((label, fut, rng.random() < 0.6))
            return
        timeout = HANG if mode == "await" else rng.uniform(0.001, 0.05)
        try:
            await asyncio.wait_for(fut, timeout)
            self.counts["fut-ok"] += 1
        except TimeoutError:
            if mode == "await":
                self.find(
                    f"hang: {label.split()[0]} future not done in {HANG}s",
                    f"{label}\n{self.dump()}",
                )
            else:
                self.counts["fut-tiny-timeout"] += 1
                if fut.cancelled():
                    self.cancelled.add(label.split()[0] + " " + label.split()[1])
        except asyncio.CancelledError:
            if fut.cancelled() and asyncio.current_task().cancelling() == 0:
                self.counts["fut-cancelled"] += 1
            else:
                raise
        except GafferError as e:
            self.counts[f"err {type(e).__name__}"] += 1
            self.log(f"  -> {type(e).__name__}: {e}")
        except Exception as e:
            self.find(
                f"exception from future: {type(e).__name__} ({label.split()[0]})",
                f"{label}\n{traceback.format_exc()}",
            )

    async def op(self, rng: random.Random, actor: int) -> None:
        m = self.m
        kinds = [
            ("load", 12),
            ("unload", 5),
            ("update", 10),
            ("reload", 8),
            ("scale", 10),
            ("commit", 5),
            ("stop_job", 6),
            ("start_job", 6),
            ("stopall", 2),
            ("kill9", 10),
            ("stop_process", 3),
            ("killall", 2),
            ("sleep", 12),
            ("wait", 4),
            ("info", 3),
            ("restart", 1),
            ("manage", 1),
        ]
        kinds = [(k_, w_) for k_, w_ in kinds if k_ not in EXCLUDE]
        k, w = zip(*kinds, strict=True)
        kind = rng.choices(k, w)[0]
        sess, job = self.pick_name(rng)
        name = fullname(sess, job)
        self.counts[f"op {kind}"] += 1
        label = f"{kind} {name}"
        try:
            if kind == "load":
                c = rand_config(rng, job)
                label = f"load {name} {json.dumps(public(c))}"
                self.log(f"[{actor}] {label}")
                j = m.load(public(c), sessionid=sess)
                self.jobs_ever.append(j)
                self.configs[name] = c
            elif kind == "unload":
                self.log(f"[{actor}] {label}")
                await self.handle_future(rng, label, m.unload(name))
            elif kind == "update":
                c = rand_config(rng, job, self.configs.get(name))
                label = f"update {name} {json.dumps(public(c))}"
                self.log(f"[{actor}] {label}")
                fut = m.update(public(c), sessionid=sess)
                self.configs[name] = c
                await self.handle_future(rng, label, fut)
            elif kind == "reload":
                self.log(f"[{actor}] {label}")
                await self.handle_future(rng, label, m.reload(name))
            elif kind == "scale":
                n = rng.choice(
                    [
                        rng.randint(-3, 3),
                        f"+{rng.randint(0, 3)}",
                        f"-{rng.randint(0, 3)}",
                        f"={rng.randint(0, 5)}",
                    ]
                )
                label = f"scale {name} {n!r}"
                self.log(f"[{actor}] {label}")
                m.scale(name, n)
            elif kind == "commit":
                gt = rng.choice([0, 0.1, 0.3])
                label = f"commit {name} gt={gt}"
                self.log(f"[{actor}] {label}")
                m.commit(name, graceful_timeout=gt)
            elif kind == "stop_job":
                self.log(f"[{actor}] {label}")
                await self.handle_future(rng, label, m.stop_job(name))
            elif kind == "start_job":
                self.log(f"[{actor}] {label}")
                m.start_job(name)
            elif kind == "stopall":
                nm = name if rng.random() < 0.5 else None
                label = f"stopall {nm}"
                self.log(f"[{actor}] {label}")
                await self.handle_future(rng, label, m.stopall(nm))
            elif kind == "kill9":
                self.scan()
                cands = [
                    (p.os_pid, None, "leader", p)
                    for p in m._processes.values()
                    if p.os_pid and p.alive
                ]
                table = proc_table()
                leaders = {p.os_pid for p in m._processes.values() if p.os_pid} | {
                    p.os_pid for p in m._lingering if p.os_pid
                }
                for pid, (_ppid, pgrp, st, start) in table.items():
                    if pgrp in leaders and pid != pgrp and st not in ("Z", "X"):
                        cands.append((pid, start, "member", None))
                if cands:
                    pid, start, what, p = rng.choice(cands)
                    label = f"kill9 {what} os_pid={pid} {p!r}"
                    self.log(f"[{actor}] {label}")
                    pidfd_kill(pid, start, signal.SIGKILL)
            elif kind == "stop_process":
                procs = list(m._processes.values())
                if procs:
                    p = rng.choice(procs)
                    label = f"stop_process {p!r}"
                    self.log(f"[{actor}] {label}")
                    await self.handle_future(rng, label, m.stop_process(p.pid))
            elif kind == "killall":
                label = f"killall {name} TERM"
                self.log(f"[{actor}] {label}")
                m.killall(name, "TERM")
            elif kind == "sleep":
                await asyncio.sleep(
                    rng.choice(
                        [0, rng.uniform(0, 0.05), rng.uniform(0, 0.3), rng.uniform(0.2, 1.0)]
                    )
                )
            elif kind == "wait":
                which = rng.choice(["running", "stopped"])
                label = f"wait_{which} {name}"
                self.log(f"[{actor}] {label}")
                try:
                    if which == "running":
                        await m.wait_running(name, timeout=rng.uniform(0.01, 0.3))
                    else:
                        await m.wait_stopped(name, timeout=rng.uniform(0.01, 1.0))
                except TimeoutError:
                    self.counts["wait-timeout"] += 1
            elif kind == "info":
                m.info(name)
                m.stats(name)
                m.list(name)
                m.pids()
            elif kind == "restart":
                self.log(f"[{actor}] restart()")
                m.restart()
            elif kind == "manage":
                self.log(f"[{actor}] manage {name}")
                m.manage(name)
        except GafferError as e:
            self.counts[f"err {type(e).__name__}"] += 1
            self.log(f"  -> {type(e).__name__}: {e}")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.find(
                f"exception from call: {type(e).__name__} ({kind})",
                f"{label}\n{traceback.format_exc()}",
            )
        if rng.random() < 0.1:
            self.check_live(f"after {label[:60]}")

    async def actor(self, i: int, n: int) -> None:
        rng = random.Random(self.seed * 7919 + i)
        for _ in range(n):
            await self.op(rng, i)

    def dump(self) -> str:
        m = self.m
        lines = []
        for job in m._all_jobs():
            lines.append(
                f"{job!r} lock={job.config_lock.locked()} ops={job.config_ops} "
                f"retiring={job.retiring} once={list(job.once.values())} "
                f"lingering={job.lingering}"
            )
            for s in job.slots.values():
                lines.append(f"   {s.info()} proc={s.process!r}")
        lines.append(f"tasks={m._tasks}")
        return "\n".join(lines)

    # -- main
    async def main(self) -> None:
        m = self.m
        self.rng_p = random.Random(self.seed + 1)
        self._periodic_stop = False
        m.start()
        self.sub = m.subscribe(".", maxsize=10**7, max_bytes=1 << 40)
        await asyncio.sleep(0.01)
        gc.collect()
        fd0 = fd_count()
        fds0 = fd_listing()
        self.periodic()
        early_stop = self.rng.random() < 0.25
        n1 = self.nops // 2
        a = asyncio.ensure_future(self.actor(0, n1))
        b = asyncio.ensure_future(self.actor(1, self.nops - n1))
        if early_stop:
            await a
            self.log("== astop while actor 1 still runs")
        else:
            await asyncio.gather(a, b)
            # await the futures we said we would, then settle
            later = [(lbl, f) for lbl, f, aw in self.futures if aw]
            self.log(f"== awaiting {len(later)} fired futures")
            for label, fut in later:
                try:
                    await asyncio.wait_for(fut, HANG)
                except TimeoutError:
                    self.find(
                        f"hang: fired {label.split()[0]} future not done", f"{label}\n{self.dump()}"
                    )
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    self.counts["fut-cancelled"] += 1
                except GafferError as e:
                    self.counts[f"err {type(e).__name__}"] += 1
                except Exception as e:
                    self.find(
                        f"exception from future: {type(e).__name__} ({label.split()[0]})",
                        f"{label}\n{traceback.format_exc()}",
                    )
            deadline = time.monotonic() + HANG
            while (
                m._tasks or any(j.config_lock.locked() for j in m._all_jobs())
            ) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if m._tasks:
                self.find("hang: background tasks never finish", self.dump())
            else:
                self.check_settled("settled")
                await asyncio.sleep(0.7)
                if not m._tasks:
                    self.check_settled("settled+0.7s")
            self.check_live("before astop")
        # (1) astop finishes
        self.log("== astop")
        t = time.monotonic()
        try:
            await asyncio.wait_for(m.astop(), 30)
        except TimeoutError:
            self.find("astop did not finish in 30s", self.dump())
        except Exception as e:
            self.find(f"astop raised {type(e).__name__}", traceback.format_exc())
        self.astop_time = time.monotonic() - t
        self.log(f"== astop done in {self.astop_time:.3f}s")
        # right after astop: nothing alive
        self.check_alive_after("immediately after astop", hard=False)
        if early_stop:
            try:
                await asyncio.wait_for(b, HANG)
            except TimeoutError:
                self.find("hang: actor did not finish after astop", self.dump())
            self.log("== actor 1 finished")
        self._periodic_stop = True
        self._periodic_handle.cancel()
        for _ in range(5):
            await asyncio.sleep(0.01)
        self.drain_events()
        self.final_event_check()
        self.check_live("after astop")
        if m._processes:
            self.find("processes registered after astop", repr(list(m._processes.values())))
        for job in self.jobs_ever:
            if job.lingering or job.retiring or job.once:
                self.find(
                    "job holds processes after astop",
                    f"{job!r} {job.lingering} {job.retiring} {job.once}",
                )
        if m._lingering or m._draining:
            self.find("manager lingering/draining after astop", f"{m._lingering} {m._draining}")
        if len(m.watcher):
            self.find("watcher still watching after astop", f"{len(m.watcher)}")
        # (3) fds
        await asyncio.sleep(0.5)
        self.check_alive_after("0.5s after astop", hard=True)
        gc.collect()
        await asyncio.sleep(0.01)
        fd1 = fd_count()
        self.fd_delta = fd1 - fd0
        if abs(fd1 - fd0) > 2:
            now = fd_listing()
            extra = {k: v for k, v in now.items() if fds0.get(k) != v}
            self.find("fd leak after astop", f"{fd0} -> {fd1}: new {extra}")
        m.unsubscribe(".", self.sub)

    def check_alive_after(self, where: str, hard: bool) -> None:
        table = proc_table()
        alive = []
        for pid, start in list(self.leaders.items()) + list(self.members.items()):
            info = table.get(pid)
            if info is None:
                continue
            _ppid, pgrp, st, st_start = info
            if start and st_start != start:
                continue
            if st in ("Z", "X"):
                continue
            alive.append((pid, st, pgrp))
        for pid in descendants(table, ME):
            st = table[pid][2]
            if st not in ("Z", "X") and all(pid != a[0] for a in alive):
                alive.append((pid, st, table[pid][1]))
        if alive:
            detail = []
            for pid, st, pgrp in alive:
                try:
                    cmd = " ".join(psutil.Process(pid).cmdline())
                except psutil.Error:
                    cmd = "?"
                detail.append(f"{pid} st={st} pgrp={pgrp} {cmd}")
            kind = (
                "leak: processes alive 0.5s after astop"
                if hard
                else "soft: processes alive right after astop returned"
            )
            self.find(kind, "\n".join(detail))


def run_seed(loop_kind: str, seed: int, nops: int, out_dir: str) -> dict[str, Any]:
    CAPTURE.records.clear()
    UNRAISABLE.clear()
    gc.collect()
    fd_before = fd_count()
    s = Seed(loop_kind, seed, nops)
    m = Manager(loop_kind=loop_kind)
    s.m = m
    t0 = time.monotonic()
    loop = m.loop
    try:
        loop.run_until_complete(asyncio.wait_for(s.main(), 300))
    except TimeoutError:
        s.find("seed timed out (300s)", s.dump())
    except Exception:
        s.find("stress-harness error (main)", traceback.format_exc())
    finally:
        try:
            for t in asyncio.all_tasks(loop):
                t.cancel()
            loop.run_until_complete(asyncio.sleep(0.05))
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            s.find("stress-harness error (shutdown)", traceback.format_exc())
        finally:
            loop.close()
            left = kill_leftovers()  # also on KeyboardInterrupt
    if left:
        s.find("leftover: processes killed by the harness after the seed", repr(left))
    gc.collect()
    fd_after = fd_count()
    if abs(fd_after - fd_before) > 2:
        s.find("fd leak after loop close", f"{fd_before} -> {fd_after}")
    for rec in CAPTURE.records:
        kind = classify_log(rec)
        if kind:
            s.find(kind, f"{rec[2]}\n{rec[3]}")
        else:
            s.counts[f"log-expected {rec[0]}"] += 1
    for u in UNRAISABLE:
        s.find("unraisable exception", u)
    res = {
        "loop": loop_kind,
        "seed": seed,
        "ops": sum(v for k, v in s.counts.items() if k.startswith("op ")),
        "secs": round(time.monotonic() - t0, 2),
        "pids": len(s.tracks),
        "astop": round(getattr(s, "astop_time", -1), 3),
        "fd_delta": getattr(s, "fd_delta", None),
        "findings": s.findings,
        "counts": dict(s.counts),
    }
    if s.findings:
        with open(os.path.join(out_dir, f"{loop_kind}-{seed}.log"), "w") as f:
            f.write("\n".join(s.oplog))
            f.write("\n\nFINDINGS\n")
            for k, v in s.findings.items():
                f.write(f"\n## {k} (x{v['count']}, t={v['t']:.3f})\n{v['detail']}\n")
    return res


def parse_seeds(spec: str) -> list[int]:
    seeds: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds += range(int(a), int(b) + 1)
        else:
            seeds.append(int(part))
    return seeds


def run_loop(
    loop_kind: str, args: argparse.Namespace, budget: float, out_dir: str
) -> dict[str, int]:
    """Seeds on one loop until the budget is spent (or the --seeds list is done)."""
    seeds = parse_seeds(args.seeds) if args.seeds else None
    total = {"seeds": 0, "ops": 0, "processes": 0, "findings": 0}
    t0 = time.monotonic()
    i = 0
    with open(os.path.join(out_dir, f"{loop_kind}.jsonl"), "a") as out:
        while True:
            if seeds is not None:
                if i >= len(seeds):
                    break
                seed = seeds[i]
            else:
                if time.monotonic() - t0 >= budget:
                    break
                seed = args.start + i
            i += 1
            res = run_seed(loop_kind, seed, args.ops, out_dir)
            out.write(json.dumps(res) + "\n")
            out.flush()
            total["seeds"] += 1
            total["ops"] += res["ops"]
            total["processes"] += res["pids"]
            total["findings"] += bool(res["findings"])
            found = {k: v["count"] for k, v in res["findings"].items()}
            print(
                f"{loop_kind} seed={seed} {res['secs']}s ops={res['ops']} pids={res['pids']} "
                f"astop={res['astop']} fd_delta={res['fd_delta']} findings={found}",
                flush=True,
            )
    return total


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that the cleanup in main() runs


def main() -> int:
    ap = argparse.ArgumentParser(description="Randomized stress test of gaffer's Manager.")
    ap.add_argument("--loop", choices=LOOPS, default=None, help="one loop only (default: both)")
    ap.add_argument("--seeds", default=None, help="seeds to run instead of a budget: 1-10 or 3,5")
    ap.add_argument("--start", type=int, default=1, help="first seed with --budget")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds, split between the loops")
    ap.add_argument("--ops", type=int, default=200, help="operations per seed")
    ap.add_argument("--exclude", default="", help="op kinds to leave out, comma-separated")
    ap.add_argument("--out", default=None, help="output directory (default: a fresh temp dir)")
    args = ap.parse_args()
    EXCLUDE.update(x for x in args.exclude.split(",") if x)
    out_dir = args.out or tempfile.mkdtemp(prefix="gaffer-stress-")
    os.makedirs(out_dir, exist_ok=True)
    print(f"output: {out_dir}", flush=True)
    # orphaned group members (e.g. the background sleep of a forking shell) are
    # reparented to us, so that they can be found, killed and reaped
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    signal.signal(signal.SIGTERM, _terminate)
    loops = [args.loop] if args.loop else list(LOOPS)
    totals: dict[str, dict[str, int]] = {}
    interrupted = False
    try:
        for loop_kind in loops:
            totals[loop_kind] = run_loop(loop_kind, args, args.budget / len(loops), out_dir)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted", flush=True)
    finally:
        leftover = kill_leftovers()
    seeds = sum(t["seeds"] for t in totals.values())
    ops = sum(t["ops"] for t in totals.values())
    procs = sum(t["processes"] for t in totals.values())
    per_loop = " ".join(f"{k}={t['findings']}/{t['seeds']}" for k, t in totals.items())
    bad = sum(t["findings"] for t in totals.values())
    print(
        f"summary: seeds={seeds} ops={ops} processes={procs} "
        f"seeds-with-findings: {per_loop} leftover-processes={len(leftover)}"
        + (" (interrupted)" if interrupted else ""),
        flush=True,
    )
    if bad:
        print(f"findings: see {out_dir}", flush=True)
    if interrupted:
        return 130
    return 1 if bad or leftover else 0


if __name__ == "__main__":
    sys.exit(main())
