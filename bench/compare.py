"""gaffer side by side with supervisord and circus: the same workloads, in the
same run, one table of ratios.

Run with ``make bench`` (``make bench QUICK=1`` for a short run, under two
minutes), or ``.venv/bin/python bench/compare.py [--quick] [--json]``. The
peers are installed from PyPI into ``bench/.venv-peers`` on first use
(``bench/peers.py`` says which versions, and how each daemon is configured:
same argv, same environment, output to files, restarting on, no start delay,
each peer's documented settings for fast repair). Each daemon runs as a
separate process, started and stopped by the benchmark; "alive" is observed
from outside the same way for all three (``bench/observe.py``: a child of the
daemon whose ``/proc/<pid>/cmdline`` is the workload's argv, polled every
0.25 ms; the scan period, the observer's resolution, is printed with the
table). Progress goes to stderr; stdout gets the machine, the parameters and a
Markdown table, or only JSON with ``--json``.

Each workload runs with a ``sleep 3600`` child and with a small Python child
(``python3.11 -c "import time; time.sleep(3600)"``) -- ``--kinds`` picks --
except the control latency and idle cost, which do not depend on the child and
use ``sleep``. Every figure is the median and min-max over ``--runs`` runs (3;
workloads 1, 3, 4 at 100 and 5 start fresh daemons each run, in an order
rotated between runs; 2, 6 and 4 at 1,000 start each daemon once and repeat
the measurement); crash-repair percentiles pool every kill of every run.

``--quick`` (``make bench QUICK=1``): the ``sleep`` child only, 100 processes,
6 kills, 100 API calls (or 0.5 s) per series, 3 CLI runs of the status of
everything only, 2 s idle, 0.5 s floods, 100 processes restarting for the
events, and the 1,000-process latency for gaffer only (circus needs ~19 s for
that phase here, supervisord ~11 s to start 1,000 and ~1.7 s per
``getAllProcessInfo`` there); the full run does everything (about 20-25 minutes on 2 CPUs).

1. Cold start (``--sizes``, 100 and 500; 100 with ``--quick``): from just
   before ``Popen`` of the daemon until the observer sees all N workload
   children alive. This includes the daemon's own start-up (interpreter,
   imports, config); a second row gives the time from the first child alive
   to the last (the spawning alone). Floors, same run: ``Popen`` N times in a
   loop and ``os.posix_spawn`` N times (``bench/floors.py``). Targets
   (gaffer): 100 ``sleep`` in <= 150 ms, 500 in <= 600 ms (the "met" column),
   <= 1.5x the Popen loop (the gaffer/floor column).
2. Scale-up by one command (``--scale-sizes``, 100 and 500; 100 with
   ``--quick``): on the daemon of workload 6 (started once per daemon; its
   writers wait, idle), a job at 0 processes (supervisord: a group of N not
   started), then one native call (``bench/peer_client.py``: gaffer's ``POST
   .../numprocesses``, supervisord's ``startProcessGroup``, circus's
   ``start`` of a watcher of N with ``autostart = false``), timed from just
   before the call is sent until the observer sees all N alive; then
   (untimed) back to 0 and the next run. Floor: a Popen loop of N, same run.
3. Crash repair (``--kills`` per daemon in all, spread over the runs; 100, 6
   with ``--quick``): with the N=100 fleet of workload 1 up and settled (every
   child asleep: a hundred Python children are still importing long after
   their exec), SIGKILL one child
   (``time.perf_counter()`` just before ``os.kill``; a different original
   child each time, so no slot is killed twice in a run and gaffer's flapping
   protection cannot trigger) and wait until the observer sees a new
   workload child alive. Before the first kill the daemon must have settled
   (under 2 ms of CPU in 100 ms, 5 s at most), and before each kill every
   child must be asleep again (a Python child takes ~20 ms of CPU after its
   exec, which would compete with the next repair). Median, p95, p99
   (nearest rank, pooled over runs). Floor: kill, pidfd ``poll()``, reap, ``Popen``.
   Targets (gaffer): median <= 5 ms, p95 <= 10 ms.
4. Control latency (with 100 and 1,000 ``sleep`` processes: the N=100 fleet,
   and a daemon started with 1,000 in a phase of its own): each daemon's native
   API -- status of job ``one`` and of everything (``bench/peer_client.py``
   says which call each is) -- ``--requests`` timed calls after ``--warmup``
   per run, p50 and p99 per run; and its CLI (``gaffer -H SOCK ps``,
   ``supervisorctl -c CONF status``, ``circusctl --endpoint E status``), wall
   time of ``--cli-runs`` runs per run, output read to the end. Targets: job
   status p50 <= 1 ms at 1,000 processes; ``gaffer ps`` <= 50 ms.
5. Idle cost: with each daemon's N=100 ``sleep`` fleet up after workloads
   1, 3, 4, and all three daemons up at once (they idle together, so one
   window serves all), wait 0.5 s, then measure ``--idle-seconds`` (30; 2 with
   ``--quick``): CPU % (schedstat), wake-ups/s (context switches of all its
   threads) and RSS (``bench/observe.py``). Nothing is subscribed, no request
   is made. Targets (gaffer): wake-ups 0 (< 0.5/s), CPU < 0.01 %, RSS <= 20 MiB.
6. Output capture (``bench/flood.py`` says exactly what is measured): one
   child writing as fast as it can for ``--flood-seconds`` (2; 0.5 with
   ``--quick``) in 64 KiB writes, and in 100-byte lines: MB/s reaching its log
   file, the % of the bytes that got there in the end, the daemon's CPU over
   the flood, and the p99 of the native "status of one job" call made back to
   back during it. Floor: a plain pipe-to-file relay. Targets
   (gaffer): 64 KiB writes >= 0.9x the relay, API p99 < 50 ms, lines >=
   supervisord's rate.
7. Event delivery (``--event-clients`` 50 subscribers, ``--event-procs`` 500
   ``sleep``; 100 with ``--quick``): one daemon each, the subscribers in one
   process (``bench/subscribers.py``: gaffer's SSE ``/events``, circus's zmq
   pubsub); each run, every process of the job is SIGKILLed by one native call
   (gaffer ``POST .../signal``, circus ``signal``) and the daemon replaces them
   all. Reported: events delivered per second (the sum over subscribers /
   from just before the call until the last event any subscriber got, once
   no event came for circus's ``check_delay`` + 0.25 s and the observer saw
   all N replaced), the events each
   subscriber got (the daemons publish different events per restart: compare
   this before the rate), and the most minus the fewest any subscriber got
   (0: nobody lost any). supervisord: "n/a" -- it has no subscription for
   outside clients; its events go only to event-listener processes it runs
   itself, one event at a time per listener with a READY/OK handshake.

Leaves nothing behind: every daemon is stopped (SIGTERM; SIGKILL after 30 s)
and any child of it still alive is killed; at the end every process carrying
the run's marker variable in its environment (daemons, children, clients) is
looked for with psutil -- any found is killed and the exit status is 1.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import flood
import floors
import observe
import peers
import psutil
from peers import MARK, NAMES, Daemon, Job, log

PYTHON = os.path.realpath(sys.executable)
KINDS = {
    "sleep": [peers.SLEEP, "3600"],
    "python": [PYTHON, "-c", "import time; time.sleep(3600)"],
}
FLEET = 100  # the fleet of workloads 3-5
START_TIMEOUT = 120.0
REPAIR_TIMEOUT = 30.0


@dataclass
class Params:
    runs: int = 3
    sizes: list[int] = field(default_factory=lambda: [100, 500])
    scale_sizes: list[int] = field(default_factory=lambda: [100, 500])
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    daemons: list[str] = field(default_factory=lambda: list(NAMES))
    kills: int = 100
    latency_sizes: list[int] = field(default_factory=lambda: [100, 1000])
    big_daemons: list[str] = field(default_factory=lambda: list(NAMES))
    requests: int = 1000
    latency_budget: float = 10.0
    warmup: int = 50
    cli_runs: int = 10
    cli_what: list[str] = field(default_factory=lambda: ["all", "one"])
    idle_seconds: float = 30.0
    flood_seconds: float = 2.0
    circus_check_delay: float = 1.0
    event_procs: int = 500
    event_clients: int = 50
    workloads: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])


class Results:
    """``values[figure][who]``: the values of one figure, per daemon or floor."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        # What a cell says instead of a figure: notes[figure][who].
        self.notes: dict[str, dict[str, str]] = defaultdict(dict)
        self.resolution_ms: list[float] = []

    def add(self, figure: str, who: str, *values: float) -> None:
        self.values[figure][who].extend(values)


# -- statistics ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)``, or the one value."""
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return f"{med:{fmt}}"
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


# -- running daemons -------------------------------------------------------------


class Session:
    """The daemons of one benchmark run: where they live, and stopping them all."""

    def __init__(self, p: Params, keep: bool) -> None:
        self.p = p
        self.mark = uuid.uuid4().hex
        self.root = tempfile.mkdtemp(prefix="gaffer-compare-")
        self.keep = keep
        self.live: list[Daemon] = []
        self.leftovers: list[int] = []
        self.count = 0

    def child_env(self) -> dict[str, str]:
        return {"PATH": peers.DEFAULT_PATH, MARK: self.mark}

    def daemon(self, name: str, jobs: list[Job]) -> Daemon:
        self.count += 1
        workdir = os.path.join(self.root, f"{self.count:03d}-{name}")
        d = peers.make(name, workdir, jobs, self.mark, {"check_delay": self.p.circus_check_delay})
        self.live.append(d)
        return d

    def stop(self, d: Daemon) -> None:
        self.leftovers += d.stop()
        if d in self.live:
            self.live.remove(d)
        if not self.keep:
            shutil.rmtree(d.dir, ignore_errors=True)

    def stop_all(self) -> None:
        for d in list(self.live):
            try:
                self.stop(d)
            except Exception as e:
                log(f"error: stopping {d.name}: {e!r}")

    def final_check(self) -> list[int]:
        """Kill every process still carrying the run's marker; their pids."""
        found = []
        me = os.getpid()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == me:
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARK) == self.mark:
                    found.append(proc)
        for proc in found:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(found, timeout=5)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        return [p.pid for p in found]


def cold_start(s: Session, d: Daemon, argv: list[str], n: int, res: Results, tag: str) -> None:
    """Workload 1 on ``d`` (started here; left running)."""
    t0 = time.perf_counter()
    d.start()
    obs = observe.Observer(d.pid, argv)
    first = obs.wait(lambda alive: bool(alive), START_TIMEOUT, "first child")
    last = obs.wait_count(n, START_TIMEOUT)
    res.add(f"cold.{tag}", d.name, 1000 * (last - t0))
    res.add(f"cold_spawn.{tag}", d.name, 1000 * (last - first))
    res.resolution_ms.append(obs.resolution_ms())
    d.remember_children()
    obs.wait_quiet(START_TIMEOUT)


def repair(d: Daemon, argv: list[str], kills: int, res: Results, kind: str) -> None:
    """Workload 3 on ``d``'s running fleet."""
    obs = observe.Observer(d.pid, argv)
    observe.wait_settled(d.pid, 5.0)
    victims = sorted(obs.scan())
    for i in range(kills):
        obs.wait_quiet(REPAIR_TIMEOUT)
        alive = obs.scan()
        victim = victims[i % len(victims)]
        if victim not in alive:
            raise RuntimeError(f"{d.name}: child {victim} to kill is not alive")
        t0 = time.perf_counter()
        os.kill(victim, signal.SIGKILL)
        t = obs.wait_new(alive, REPAIR_TIMEOUT)
        res.add(f"repair.{kind}", d.name, 1000 * (t - t0))
    res.resolution_ms.append(obs.resolution_ms())


def cli_wall(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, env=env, check=False)
    ms = 1000 * (time.perf_counter() - t)
    # supervisorctl status exits 3 when a process is not RUNNING: none should be.
    if r.returncode != 0:
        raise RuntimeError(f"{argv} exited {r.returncode}: {r.stderr.decode()[-300:]}")
    return ms


def latency(s: Session, d: Daemon, n: int, res: Results) -> None:
    """Workload 4, one run, on ``d`` managing ``n`` processes (plus ``one``)."""
    p = s.p
    d.call(op="wait_up", timeout=START_TIMEOUT)
    for call in ("one", "all"):
        ms = d.call(op="time", call=call, n=p.requests, warmup=p.warmup, budget=p.latency_budget)[
            "ms"
        ]
        res.add(f"api.{call}.calls.{n}", d.name, len(ms))
        res.add(f"api.{call}.p50.{n}", d.name, statistics.median(ms))
        res.add(f"api.{call}.p99.{n}", d.name, percentile(ms, 99))
    env = d.env()
    for what in p.cli_what:
        cli_wall(d.cli(what), env)  # warm the page cache
        walls = [cli_wall(d.cli(what), env) for _ in range(p.cli_runs)]
        res.add(f"cli.{what}.{n}", d.name, statistics.median(walls))


def idle(daemons: list[Daemon], seconds: float, res: Results) -> None:
    """Workload 5: one window for all the daemons given."""
    time.sleep(0.5)
    before = {d.name: observe.cost(d.pid) for d in daemons}
    time.sleep(seconds)
    after = {d.name: observe.cost(d.pid) for d in daemons}
    for d in daemons:
        r = observe.rates(before[d.name], after[d.name])
        res.add("idle.cpu", d.name, r["cpu_percent"])
        res.add("idle.wakeups", d.name, r["wakeups_per_s"])
        res.add("idle.rss", d.name, r["rss_mib"])


def rotated(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


def kills_per_run(p: Params, r: int) -> int:
    """``p.kills`` spread over the runs (the first ones get the remainder)."""
    base, extra = divmod(p.kills, p.runs)
    return min(FLEET, base + (1 if r < extra else 0))


def fleet_run(s: Session, r: int, res: Results) -> None:
    """Workloads 1, 3, 4 (at 100) and 5 for run ``r``."""
    p = s.p
    env = s.child_env()
    for kind in p.kinds:
        argv = KINDS[kind]
        for n in p.sizes:
            tag = f"{kind}.{n}"
            if 1 in p.workloads:
                floors.popen_loop(argv, min(n, 20), env)  # warm-up
                popen = 1000 * floors.popen_loop(argv, n, env)
                posix = 1000 * floors.posix_spawn_loop(argv, n, env)
                for key in (f"cold.{tag}", f"cold_spawn.{tag}"):
                    res.add(key, "popen", popen)
                    res.add(key, "posix_spawn", posix)
            fleet = n == FLEET and bool({1, 3, 4, 5} & set(p.workloads))
            kept: list[Daemon] = []
            for name in rotated(p.daemons, r):
                if not fleet and 1 not in p.workloads:
                    continue
                log(f"run {r + 1}/{p.runs}: {name}: cold start {n} x {kind}")
                d = s.daemon(name, [Job("w", argv, n)])
                try:
                    cold_start(s, d, argv, n, res, tag)
                    if fleet and 3 in p.workloads and kills_per_run(p, r):
                        k = kills_per_run(p, r)
                        log(f"run {r + 1}/{p.runs}: {name}: crash repair x {k}")
                        repair(d, argv, k, res, kind)
                    if fleet and kind == "sleep" and 4 in p.workloads and n in p.latency_sizes:
                        log(f"run {r + 1}/{p.runs}: {name}: control latency at {n}")
                        latency(s, d, n, res)
                except Exception:
                    s.stop(d)
                    raise
                if fleet and kind == "sleep" and 5 in p.workloads:
                    kept.append(d)
                else:
                    s.stop(d)
            if kept:
                log(f"run {r + 1}/{p.runs}: idle {p.idle_seconds:g} s, {len(kept)} daemons at once")
                try:
                    idle(kept, p.idle_seconds, res)
                finally:
                    for d in kept:
                        s.stop(d)
    if 3 in p.workloads:
        for kind in p.kinds:
            k = kills_per_run(p, r)
            if k:
                times = floors.repair_floor(KINDS[kind], k, env)
                res.add(f"repair.{kind}", "floor", *(1000 * t for t in times))


def big_latency(s: Session, res: Results) -> None:
    """Workload 4 at the sizes above the fleet: one daemon each, ``runs`` series."""
    p = s.p
    argv = KINDS["sleep"]
    for n in p.latency_sizes:
        if n == FLEET and FLEET in p.sizes and "sleep" in p.kinds and 1 in p.workloads:
            continue  # measured on the fleet
        for name in p.daemons:
            if name not in p.big_daemons:
                for key in (f"api.{c}.{q}.{n}" for c in ("one", "all") for q in ("p50", "p99")):
                    res.notes[key][name] = "not run (--big-daemons)"
                for key in (f"cli.all.{n}", f"cli.one.{n}"):
                    res.notes[key][name] = "not run (--big-daemons)"
                continue
            log(f"{name}: control latency at {n} processes")
            d = s.daemon(name, [Job("w", argv, n)])
            try:
                d.start()
                observe.Observer(d.pid, argv).wait_count(n, START_TIMEOUT)
                for _ in range(p.runs):
                    latency(s, d, n, res)
            finally:
                s.stop(d)


def scale_up(s: Session, d: Daemon, res: Results) -> None:
    """Workload 2 on ``d``, whose jobs ``s<kind><n>`` have no process yet."""
    p = s.p
    for r in range(p.runs):
        for kind in p.kinds:
            for n in p.scale_sizes:
                log(f"run {r + 1}/{p.runs}: {d.name}: scale-up 0 -> {n} x {kind}")
                obs = observe.Observer(d.pid, KINDS[kind])
                if obs.scan():
                    raise RuntimeError(f"{d.name}: {kind} children alive before scaling up")
                t0 = time.perf_counter()
                d.call(op="scale", job=f"s{kind}{n}", n=n)
                t = obs.wait_count(n, START_TIMEOUT)
                res.add(f"scale.{kind}.{n}", d.name, 1000 * (t - t0))
                if d.name == p.daemons[0]:
                    popen = floors.popen_loop(KINDS[kind], n, s.child_env())
                    res.add(f"scale.{kind}.{n}", "popen", 1000 * popen)
                d.remember_children()
                obs.wait_quiet(START_TIMEOUT)
                d.call(op="unscale", job=f"s{kind}{n}", n=n)
                obs.wait(lambda alive: not alive, START_TIMEOUT, "scaling down")


def output_capture(s: Session, res: Results) -> None:
    """Workloads 6 (``bench/flood.py``) and 2 (first), one daemon each."""
    p = s.p
    for name in p.daemons:
        go = {mode: os.path.join(s.root, f"go-{name}-{mode}") for mode in flood.MODES}
        argvs = {m: flood.writer_argv(PYTHON, go[m], m) for m in flood.MODES}
        jobs = [Job(f"f{m}", argvs[m], 1, started=6 in p.workloads) for m in flood.MODES]
        if 2 in p.workloads:
            for kind in p.kinds:
                jobs += [Job(f"s{kind}{n}", KINDS[kind], n, False) for n in p.scale_sizes]
        d = s.daemon(name, jobs)
        try:
            d.start()
            d.call(op="wait_up", timeout=START_TIMEOUT)
            if 2 in p.workloads:
                scale_up(s, d, res)
            if 6 not in p.workloads:
                continue
            for m in flood.MODES:
                observe.Observer(d.pid, argvs[m]).wait_count(1, START_TIMEOUT)
            d.remember_children()
            for r in range(p.runs):
                for m in flood.MODES:
                    log(f"run {r + 1}/{p.runs}: {name}: output flood, {m}")
                    d.call(op="loop_start", call="one")
                    ms: list[float] = []

                    def window_end(d: Daemon = d, ms: list[float] = ms) -> None:
                        ms.extend(d.call(op="loop_stop")["ms"])

                    out = flood.flood(
                        d.pid, d.log_file(f"f{m}"), f"{go[m]}.{r}", p.flood_seconds, window_end
                    )
                    add_flood(res, m, name, out, ms)
        finally:
            s.stop(d)
    relay_dir = os.path.join(s.root, "relay")
    os.makedirs(relay_dir, exist_ok=True)
    for m in flood.MODES if 6 in p.workloads else ():
        proc, log_file, prefix = flood.start_relay(PYTHON, relay_dir, m, s.child_env())
        try:
            for r in range(p.runs):
                log(f"run {r + 1}/{p.runs}: relay floor: output flood, {m}")
                out = flood.flood(proc.pid, log_file, f"{prefix}.{r}", p.flood_seconds, list)
                add_flood(res, m, "floor", out, [])
        finally:
            for pid in observe.children(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
            with contextlib.suppress(OSError):
                os.unlink(log_file)


def add_flood(res: Results, mode: str, who: str, out: dict[str, Any], ms: list[float]) -> None:
    res.add(f"flood.{mode}.mbps", who, out["mb_per_s"])
    res.add(f"flood.{mode}.arrived", who, out["arrived_percent"])
    res.add(f"flood.{mode}.cpu", who, out["cpu_percent"])
    if ms:
        res.add(f"flood.{mode}.p99", who, percentile(ms, 99))
        res.add(f"flood.{mode}.calls", who, len(ms))


def events(s: Session, res: Results) -> None:
    """Workload 7 (``bench/subscribers.py`` says how each daemon is subscribed to)."""
    p = s.p
    n, clients = p.event_procs, p.event_clients
    argv = KINDS["sleep"]
    for name in p.daemons:
        if name == "supervisord":
            continue  # no outside subscribers: see the module's docstring
        d = s.daemon(name, [Job("w", argv, n)])
        sub: subprocess.Popen[str] | None = None
        try:
            d.start()
            obs = observe.Observer(d.pid, argv)
            obs.wait_count(n, START_TIMEOUT)
            d.call(op="wait_up", timeout=START_TIMEOUT)
            d.remember_children()
            script = os.path.join(peers.HERE, "subscribers.py")
            args = ["--daemon", name, "--address", d.events_address(), "--clients", str(clients)]
            # The count ends once no event came for this long: past circus's
            # check_delay, when it respawns.
            args += ["--quiet", str(max(0.5, p.circus_check_delay + 0.25))]
            sub = subprocess.Popen(
                [peers.PEERS_PY, script, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env={"PATH": peers.DEFAULT_PATH, MARK: s.mark},
                start_new_session=True,
                preexec_fn=peers.die_with_parent,
            )
            assert sub.stdin is not None and sub.stdout is not None
            if not sub.stdout.readline():
                raise RuntimeError(f"{name}: the subscribers could not connect")
            for r in range(p.runs):
                obs.wait_quiet(START_TIMEOUT)
                old = obs.scan()
                log(f"run {r + 1}/{p.runs}: {name}: events, KILL {n} to {clients} subscribers")
                sub.stdin.write('{"op": "count"}\n')
                sub.stdin.flush()
                t0 = time.time()
                d.call(op="kill", job="w")
                obs.wait(lambda alive, old=old: len(alive - old) >= n, START_TIMEOUT, "replaced")
                d.remember_children()
                reply = json.loads(sub.stdout.readline())
                counts = reply["counts"]
                if not reply["last"]:
                    raise RuntimeError(f"{name}: no event reached the subscribers")
                window = reply["last"] - t0
                res.add("events", name, sum(counts) / window)
                res.add("events.per_client", name, sum(counts) / clients)
                res.add("events.spread", name, max(counts) - min(counts))
                res.add("events.window_ms", name, 1000 * window)
        finally:
            if sub is not None:
                sub.kill()
                sub.wait()
            s.stop(d)


# -- the table ---------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    fmt: str
    floor: str | None = None  # which floor the ratio is to
    target: str = "-"
    # Judged on the columns' values (cols[who]); gaffer's are cols["gaffer"].
    met: Callable[[dict[str, list[float]]], bool] | None = None
    higher_is_better: bool = False


def figures(p: Params) -> list[Figure]:
    out: list[Figure] = []
    cold_targets = {100: 150.0, 500: 600.0}
    for kind in p.kinds:
        for n in p.sizes:
            tag = f"{kind}.{n}"
            t = cold_targets.get(n) if kind == "sleep" else None
            out.append(
                Figure(
                    f"cold.{tag}",
                    f"1 cold start {n} x {kind}, ms (daemon exec -> all alive)",
                    ".0f",
                    "popen",
                    f"<= {t:g}" if t else "-",
                    (lambda c, t=t: med(c["gaffer"]) <= t) if t else None,
                )
            )
            out.append(
                Figure(
                    f"cold_spawn.{tag}",
                    f"1 cold start {n} x {kind}, ms (first -> all alive)",
                    ".0f",
                    "popen",
                )
            )
    for kind in p.kinds:
        for n in p.scale_sizes:
            out.append(
                Figure(f"scale.{kind}.{n}", f"2 scale-up 0 -> {n} x {kind}, ms", ".0f", "popen")
            )
    for kind in p.kinds:
        for stat, q, t in (("median", 50, 5.0), ("p95", 95, 10.0), ("p99", 99, None)):
            out.append(
                Figure(
                    f"repair.{kind}@{q}",
                    f"3 crash repair {stat} x {kind}, ms ({p.kills} kills)",
                    ".2f",
                    "floor",
                    f"<= {t:g}" if t else "-",
                    (lambda c, t=t: c["gaffer"][0] <= t) if t else None,
                )
            )
    for n in p.latency_sizes:
        for call in ("one", "all"):
            for stat in ("p50", "p99"):
                t = 1.0 if (call, stat, n) == ("one", "p50", 1000) else None
                what = "one job" if call == "one" else "everything"
                out.append(
                    Figure(
                        f"api.{call}.{stat}.{n}",
                        f"4 native API status of {what} {stat}, ms ({n} procs)",
                        ".2f",
                        None,
                        f"<= {t:g}" if t else "-",
                        (lambda c, t=t: med(c["gaffer"]) <= t) if t else None,
                    )
                )
        for what in p.cli_what:
            t = 50.0 if what == "all" and n == FLEET else None
            out.append(
                Figure(
                    f"cli.{what}.{n}",
                    f"4 CLI status of {'everything' if what == 'all' else 'one job'}, "
                    f"ms wall ({n} procs)",
                    ".0f",
                    None,
                    f"<= {t:g}" if t else "-",
                    (lambda c, t=t: med(c["gaffer"]) <= t) if t else None,
                )
            )
    secs = f"{FLEET} children, {p.idle_seconds:g} s"
    out += [
        Figure(
            "idle.cpu",
            f"5 idle CPU %, {secs}",
            ".4f",
            None,
            "< 0.01",
            lambda c: med(c["gaffer"]) < 0.01,
        ),
        Figure(
            "idle.wakeups",
            f"5 idle wake-ups/s, {secs}",
            ".2f",
            None,
            "0 (< 0.5)",
            lambda c: med(c["gaffer"]) < 0.5,
        ),
        Figure(
            "idle.rss",
            f"5 idle RSS MiB, {secs}",
            ".1f",
            None,
            "<= 20",
            lambda c: med(c["gaffer"]) <= 20,
        ),
    ]
    for mode, what in (("64k", "64 KiB writes"), ("lines", "100-byte lines")):
        tag = f"{what}, {p.flood_seconds:g} s"
        if mode == "64k":
            rate_target, rate_met = (
                ">= 0.9x floor",
                (lambda c: med(c["gaffer"]) >= 0.9 * med(c["floor"])),
            )
        else:
            rate_target, rate_met = (
                ">= supervisord",
                (lambda c: med(c["gaffer"]) >= med(c["supervisord"])),
            )
        out += [
            Figure(
                f"flood.{mode}.mbps",
                f"6 output {tag}: MB/s to the log file",
                ".0f",
                "floor",
                rate_target,
                rate_met,
            ),
            Figure(
                f"flood.{mode}.arrived",
                f"6 output {tag}: % of the bytes that reached the file",
                ".0f",
                "floor",
                "100",
                lambda c: min(c["gaffer"]) >= 99.95,
            ),
            Figure(f"flood.{mode}.cpu", f"6 output {tag}: daemon CPU %", ".0f", "floor"),
            Figure(
                f"flood.{mode}.p99",
                f"6 output {tag}: API status of one job p99 during it, ms",
                ".1f",
                None,
                "< 50",
                lambda c: med(c["gaffer"]) < 50,
            ),
        ]
    tag = f"{p.event_clients} subscribers, KILL {p.event_procs} procs"
    out += [
        Figure("events", f"7 events/s delivered ({tag})", ".0f"),
        Figure("events.per_client", f"7 events each subscriber got per round ({tag})", ".0f"),
        Figure(
            "events.spread",
            f"7 events: most - fewest one subscriber got ({tag})",
            ".0f",
            None,
            "0",
            lambda c: max(c["gaffer"]) == 0,
        ),
        Figure("events.window_ms", f"7 events: KILL until the last delivered, ms ({tag})", ".0f"),
    ]
    return out


def med(values: list[float]) -> float:
    return statistics.median(values)


def pooled_stat(values: list[float], q: int) -> list[float]:
    return [percentile(values, q)] if values else []


def column(res: Results, f: Figure, who: str) -> list[float]:
    """The values shown for ``who``: for repair figures the pooled percentile."""
    if f.key.startswith("repair."):
        base, q = f.key.split("@")
        return pooled_stat(res.values.get(base, {}).get(who, []), int(q))
    return res.values.get(f.key, {}).get(who, [])


def ratio(a: list[float], b: list[float], higher_is_better: bool) -> str:
    if not a or not b:
        return "-"
    x, y = statistics.median(a), statistics.median(b)
    if y == 0:
        return "-"
    return f"{x / y:.2f}"


def rows(res: Results, p: Params) -> list[dict[str, str]]:
    out = []
    for f in figures(p):
        cols = {who: column(res, f, who) for who in (*NAMES, "popen", "posix_spawn", "floor")}
        g = cols["gaffer"]
        if not any(cols.values()) and f.key not in res.notes:
            continue
        floor_vals = cols.get(f.floor, []) if f.floor else []
        row = {"figure": f.label}
        for who in NAMES:
            note = res.notes.get(f.key, {}).get(who, "not run (--daemons)")
            row[who] = spread(cols[who], f.fmt) if cols[who] else note
        row["floor"] = spread(floor_vals, f.fmt) if f.floor else "-"
        for who in ("supervisord", "circus"):
            row[f"gaffer/{who}"] = ratio(g, cols[who], f.higher_is_better)
        row["gaffer/floor"] = ratio(g, floor_vals, f.higher_is_better)
        row["target"] = f.target
        try:
            met = None if f.met is None or not g else f.met(cols)
        except (KeyError, ValueError, statistics.StatisticsError):
            met = None  # a figure it is judged against is missing
        row["met"] = "-" if met is None else ("yes" if met else "**no**")
        out.append(row)
    return out


def markdown(table: list[dict[str, str]]) -> str:
    header = list(table[0]) if table else ["figure"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in table:
        lines.append("| " + " | ".join(r.get(h, "") for h in header) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import platform

    model = floors.cpu_model()
    versions = subprocess.run(
        [
            peers.PEERS_PY,
            "-c",
            "import importlib.metadata as m; "
            "print(m.version('supervisor'), m.version('circus'), m.version('pyzmq'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    from importlib.metadata import version

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gaffer": version("gaffer"),
        "supervisor": versions[0],
        "circus": versions[1],
        "pyzmq": versions[2],
    }


def ensure_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def params_from(args: argparse.Namespace) -> Params:
    q = args.quick
    p = Params(
        runs=args.runs or 3,
        sizes=args.sizes or ([100] if q else [100, 500]),
        scale_sizes=args.scale_sizes or ([100] if q else [100, 500]),
        kinds=args.kinds or (["sleep"] if q else list(KINDS)),
        daemons=args.daemons or list(NAMES),
        kills=args.kills if args.kills is not None else (6 if q else 100),
        latency_sizes=args.latency_sizes or [100, 1000],
        big_daemons=args.big_daemons or (["gaffer"] if q else list(NAMES)),
        requests=args.requests or (100 if q else 1000),
        latency_budget=args.latency_budget or (0.5 if q else 10.0),
        warmup=args.warmup or (10 if q else 50),
        cli_runs=args.cli_runs or (3 if q else 10),
        cli_what=["all"] if q else ["all", "one"],
        idle_seconds=args.idle_seconds or (2.0 if q else 30.0),
        flood_seconds=args.flood_seconds or (0.5 if q else 2.0),
        circus_check_delay=args.circus_check_delay,
        event_procs=args.event_procs or (100 if q else 500),
        event_clients=args.event_clients or 50,
        workloads=args.workloads or [1, 2, 3, 4, 5, 6, 7],
    )
    if p.runs < 3:
        raise SystemExit("--runs: at least 3 (every figure is a median over runs)")
    if "gaffer" not in p.daemons:
        raise SystemExit("--daemons: gaffer is the one being compared")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="short sizes: under 2 minutes")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--runs", type=int, help="runs per figure (3, at least 3)")
    ap.add_argument("--sizes", type=int, nargs="+", help="cold start sizes (100 500)")
    ap.add_argument("--scale-sizes", type=int, nargs="+", help="scale-up sizes (100 500)")
    ap.add_argument("--kinds", nargs="+", choices=list(KINDS), help="workload children")
    ap.add_argument("--daemons", nargs="+", choices=list(NAMES), help="daemons compared")
    ap.add_argument("--kills", type=int, help="crash repairs per daemon and kind (100, 6 quick)")
    ap.add_argument("--latency-sizes", type=int, nargs="+", help="processes (100 1000)")
    ap.add_argument(
        "--big-daemons",
        nargs="+",
        choices=list(NAMES),
        help="daemons measured above 100 processes in workload 4 (all; gaffer with --quick: "
        "circus needs ~19 s there, supervisord ~11 s to start 1,000 and ~1.7 s a call)",
    )
    ap.add_argument("--requests", type=int, help="timed API calls per run (1000, 100 quick)")
    ap.add_argument(
        "--latency-budget", type=float, help="seconds per series at most (10, 0.5 quick)"
    )
    ap.add_argument("--warmup", type=int, help="untimed API calls first (50, 10 quick)")
    ap.add_argument("--cli-runs", type=int, help="CLI runs per run (10, 3 quick)")
    ap.add_argument("--idle-seconds", type=float, help="idle window per run (30, 2 quick)")
    ap.add_argument("--flood-seconds", type=float, help="window of each flood (2, 0.5 quick)")
    ap.add_argument(
        "--circus-check-delay", type=float, default=1.0, help="circus check_delay, s (1)"
    )
    ap.add_argument("--event-procs", type=int, help="processes killed (500, 100 quick)")
    ap.add_argument("--event-clients", type=int, help="event subscribers (50)")
    ap.add_argument("--workloads", type=int, nargs="+", help="which workloads (1-7, all)")
    ap.add_argument("--keep", action="store_true", help="keep the daemons' files (configs, logs)")
    args = ap.parse_args(argv)
    p = params_from(args)

    peers.ensure_peers_venv()
    import gaffer

    compileall.compile_dir(os.path.dirname(gaffer.__file__), quiet=1)
    ensure_fd_limit(8 * max([*p.sizes, *p.latency_sizes, *p.scale_sizes]) + 1024)
    info = machine()
    s = Session(p, args.keep)
    res = Results()
    t_start = time.perf_counter()
    interrupted = False
    for key in ("events", "events.per_client", "events.spread", "events.window_ms"):
        if 7 in p.workloads:
            res.notes[key]["supervisord"] = "n/a: no outside subscribers"
    try:
        for r in range(p.runs):
            fleet_run(s, r, res)
        if 4 in p.workloads:
            big_latency(s, res)
        if {2, 6} & set(p.workloads):
            output_capture(s, res)
        if 7 in p.workloads:
            events(s, res)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every daemon")
    finally:
        s.stop_all()
        found = s.final_check()
    if s.leftovers or found:
        log(f"error: processes left behind (now killed): {sorted(set(s.leftovers + found))}")
        return 1
    if interrupted:
        return 130
    elapsed = time.perf_counter() - t_start
    table = rows(res, p)
    resolution = statistics.median(res.resolution_ms) if res.resolution_ms else 0.0
    if args.json:
        out = {
            "machine": info,
            "params": asdict(p),
            "elapsed_s": elapsed,
            "observer_resolution_ms": resolution,
            "values": {k: dict(v) for k, v in res.values.items()},
            "notes": {k: dict(v) for k, v in res.notes.items()},
            "rows": table,
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
            f"Python {info['python']}; gaffer {info['gaffer']}, supervisor "
            f"{info['supervisor']}, circus {info['circus']} (pyzmq {info['pyzmq']})"
        )
        print(
            f"{p.runs} runs, median (min-max) over runs; crash repair pooled over "
            f"{p.kills} kills; observer resolution (scan period) "
            f"{resolution:.2f} ms; circus check_delay {p.circus_check_delay:g} s; "
            f"{elapsed:.0f} s in all"
        )
        print()
        print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
