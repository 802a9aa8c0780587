"""Watching a daemon from outside, the same way for gaffer, supervisord and
circus (``bench/compare.py``): which of its children run the workload, and what
the daemon itself costs.

**Alive.** A child counts as alive once it has exec'd the workload: it is
listed in ``/proc/<daemon>/task/<tid>/children`` (every thread of the daemon)
and its ``/proc/<pid>/cmdline`` is exactly the workload's argv. A forked child
that has not exec'd yet still shows the daemon's own command line, and a child
killed but not reaped shows an empty one, so neither counts. No daemon's own
notion of "running" is used (supervisord's ``startsecs``, gaffer's states,
circus's process list), so none biases the figure. :class:`Observer` polls
this from the benchmark process every ``POLL_S`` (0.25 ms) of sleep; one scan
of 500 children costs ~0.1-0.3 ms here, so the observer's resolution is the
scan period, which is measured and reported with the results (the median
period of the scans of a run).

**Cost.** CPU time is the sum over the daemon's threads of the first field of
``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on the CPU, exact, unlike the
10 ms ticks of ``/proc/<pid>/stat``); wake-ups are the sum over its threads of
``voluntary_ctxt_switches`` + ``nonvoluntary_ctxt_switches`` from
``/proc/<pid>/task/<tid>/status``; RSS is ``VmRSS`` of ``/proc/<pid>/status``.
Threads that end between two samples take their counts with them (none of the
three daemons starts or ends threads while idle or under an output flood).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

POLL_S = 0.00025


def children(pid: int) -> list[int]:
    """The direct children of every thread of ``pid``."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def state(pid: int) -> str:
    """The one-letter state of ``pid`` ("" if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""


class Observer:
    """Counts the daemon's children that have exec'd ``argv``."""

    def __init__(self, daemon_pid: int, argv: list[str]) -> None:
        self.pid = daemon_pid
        self.want = b"\0".join(a.encode() for a in argv) + b"\0"
        self.matched: set[int] = set()
        self.periods: list[float] = []

    def scan(self) -> set[int]:
        kids = children(self.pid)
        alive = set()
        for k in kids:
            if k in self.matched or cmdline(k) == self.want:
                alive.add(k)
        self.matched = alive
        return alive

    def wait(self, done: object, timeout: float, what: str) -> float:
        """Poll until ``done(alive)`` is true; returns ``perf_counter()`` of the
        scan that saw it. ``done`` is a callable taking the set of alive pids."""
        assert callable(done)
        deadline = time.perf_counter() + timeout
        last = time.perf_counter()
        while True:
            alive = self.scan()
            now = time.perf_counter()
            self.periods.append(now - last)
            last = now
            if done(alive):
                return now
            if now > deadline:
                raise TimeoutError(f"{what}: {len(alive)} alive after {timeout:g} s")
            time.sleep(POLL_S)

    def wait_count(self, n: int, timeout: float) -> float:
        return self.wait(lambda alive: len(alive) >= n, timeout, f"waiting for {n} alive")

    def wait_new(self, old: set[int], timeout: float) -> float:
        return self.wait(lambda alive: bool(alive - old), timeout, "waiting for a replacement")

    def wait_quiet(self, timeout: float) -> None:
        """Wait until every alive child is asleep (state ``S`` in
        ``/proc/<pid>/stat``) in two scans 10 ms apart: a Python child has
        exec'd long before it is done importing, and a hundred of them doing
        so would load the CPU under the next measurement."""
        deadline = time.perf_counter() + timeout
        quiet = 0
        while quiet < 2:
            quiet = quiet + 1 if all(state(pid) in ("S", "") for pid in self.scan()) else 0
            if time.perf_counter() > deadline:
                raise TimeoutError("the children did not settle")
            time.sleep(0.01)

    def resolution_ms(self) -> float:
        return 1000 * statistics.median(self.periods) if self.periods else 0.0


@dataclass
class Cost:
    cpu_ns: int
    switches: int
    rss_kib: int
    t: float


def cost(pid: int) -> Cost:
    """The daemon's CPU time, context switches and RSS now."""
    cpu = switches = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/schedstat") as f:
                cpu += int(f.read().split()[0])
            with open(f"{base}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return Cost(cpu, switches, rss, time.perf_counter())


def wait_settled(pid: int, limit: float, busy_ns: int = 2_000_000) -> None:
    """Wait (``limit`` seconds at most) until the daemon uses under ``busy_ns``
    of CPU in 100 ms: done with whatever it does after starting its children."""
    deadline = time.perf_counter() + limit
    before = cost(pid)
    while time.perf_counter() < deadline:
        time.sleep(0.1)
        now = cost(pid)
        if now.cpu_ns - before.cpu_ns < busy_ns:
            return
        before = now


def rates(before: Cost, after: Cost) -> dict[str, float]:
    """CPU %, wake-ups/s and RSS (MiB, at the end) between two samples."""
    wall = after.t - before.t
    return {
        "cpu_percent": 100 * (after.cpu_ns - before.cpu_ns) / 1e9 / wall,
        "wakeups_per_s": (after.switches - before.switches) / wall,
        "rss_mib": after.rss_kib / 1024,
        "seconds": wall,
    }
