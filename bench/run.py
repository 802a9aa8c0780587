"""gaffer benchmarks: spawn, crash repair, idle cost and the HTTP API, on uvloop and asyncio.

Run with ``make bench`` (``make bench QUICK=1`` for a short run), or
``.venv/bin/python bench/run.py [--quick] [--json]``. Everything is measured in
one run, on both event loops, each with its own :class:`~gaffer.manager.Manager`
(created with ``loop_kind=...``). Progress goes to stderr; stdout gets the
machine description and a Markdown table, or only JSON with ``--json``.

1. Spawn throughput. Time for the manager to bring N ``sleep 3600`` processes
   to ``running``: from just before ``Manager.load()`` of a job with
   ``numprocesses=N, startsecs=0`` until ``Manager.wait_running()`` returns.
   The job uses gaffer's defaults otherwise, so each process also gets two
   output pipes (read by the loop), its own process group, a pidfd watch and
   its events -- work the floors below do not do. The floors, measured in the
   same run on the same loop's thread: ``subprocess.Popen(["sleep", "3600"])``
   N times in a plain loop, and ``os.posix_spawnp`` N times, both with the
   environment gaffer gives its children (its default PATH and the GAFFER_*
   variables) rather than the benchmark's own: with a longer PATH (``sleep``
   found later) or a bigger environment every exec is slower, which would
   flatter gaffer. Each of 7 rounds (3 with ``--quick``) times gaffer, Popen
   and posix_spawnp once (the order alternates between rounds), after one
   small untimed warm-up round. Children are stopped and reaped between runs
   and never timed doing so, and ``gc.collect()`` runs before each timed run
   (and before each repair series), so that collecting one run's garbage is
   not charged to the next; collections a run triggers with its own garbage
   do count. Reported: median and min-max of each time, and of the per-round
   ratio gaffer / floor; the target (ratio <= 1.25) is judged on the median
   ratio.

2. Crash repair. A job of ``sleep 3600`` processes with ``startsecs=0``; a child
   is sent SIGKILL (``time.perf_counter()`` just before ``os.kill``) and the time
   is taken again when the benchmark, subscribed to the job's events, receives
   the ``state`` event of the *new* process in the same slot with
   ``to == "running"`` -- so the figure includes the event bus's delivery. No
   sleeps or polling: the benchmark waits on the subscription only.
   Flapping protection stays at gaffer's default (5 restarts of a slot within
   10 s hold the slot back 7 s). Instead of switching it off, the job has
   enough slots that it cannot trigger: slots are killed round-robin and each
   is killed at most ``attempts - 1`` = 4 times (25 slots for 100 kills, 8 for
   30). The benchmark fails if a ``flap`` event shows up anyway. Reported:
   median, p95 and p99 (nearest rank; with 30 kills p99 is the maximum) in ms.
   Targets: median <= 5 ms, p99 <= 20 ms. The floor column is the same repair
   done by hand on the same loop: a pidfd registered with ``loop.add_reader``,
   whose callback reaps the child and starts a new one with ``Popen``; timed
   from the kill until the awaiting coroutine has the new ``Popen``. The JSON
   also gives, per kill, the time until the event was *published* (its
   wall-clock timestamp minus the kill's), i.e. without the bus's delivery.

3. API latency and 4. event fan-out (``bench/api.py``, whose docstring says
   exactly what is measured): the HTTP API's request latency with 1,000
   processes managed -- the job info of a small job, ``/pids`` and the big
   job's info, over the unix socket and over TCP with an API key, against
   ``GET /ping`` -- and the events 50 websocket clients receive while every
   process of a job is killed and replaced. The daemon runs in a subprocess
   (``bench/api_server.py``, one per loop) and the clients here, so they never
   share an event loop. ``--no-api`` skips them, ``--api-only`` runs only them;
   ``--quick`` makes fewer requests and kills 100 processes instead of 500, but
   the latency figures keep their 1,000 processes.

5. The command's speed (``bench/cli.py``, whose docstring says what is
   measured): ``gaffer ps`` against a daemon managing 100 processes, wall time
   per run (30 runs, 10 with ``--quick``), against ``python -c pass``. It runs
   with the API benchmarks (``--no-api`` skips it too).

The figures are only as quiet as the machine: run it on an otherwise idle one.

Every process is stopped at the end (``Manager.astop()`` in ``finally``, also
after an error or Ctrl-C), and the floors' children are killed and reaped. As a
last check the benchmark looks for any child of its own still alive (or not
reaped): if there is one it says so, kills and reaps it, and exits with status 1.
The API servers are stopped with SIGTERM (their ``Manager.astop()`` stops their
children) and then every ``sleep`` still carrying the run's marker in its
environment is looked for with psutil; any found is killed and the exit status
is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import api
import cli
import floors
import psutil
from gaffer.config import FlappingConfig, ProcessConfig
from gaffer.manager import Manager

LOOPS = ("uvloop", "asyncio")
SLEEP = ["sleep", "3600"]
SPAWN_RATIO_TARGET = 1.25
REPAIR_MEDIAN_TARGET_MS = 5.0
REPAIR_P99_TARGET_MS = 20.0
# Limits on any one wait, only reached if something is broken. Stopping a sleep
# takes milliseconds; after a Ctrl-C in the middle of gaffer's code a process may
# never be signalled, and the final leftover check kills it instead.
TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
WARMUP_N = 20


@dataclass
class Params:
    n: int
    rounds: int
    kills: int
    slots: int
    idle_s: float = 10.0


@dataclass
class Row:
    figure: str
    loop: str
    gaffer: str
    floor: str
    ratio: str
    target: str
    met: str


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- statistics ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
    }


def spread(values: Sequence[float], fmt: str, unit: str = "") -> str:
    """``median (min-max)``."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:{fmt}}{unit} ({lo:{fmt}}-{hi:{fmt}})"


# -- the machine ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = floors.cpu_model()
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": uvloop_version,
    }


def ensure_fd_limit(needed: int) -> None:
    """Each gaffer child holds a pidfd and two pipe ends open in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


# -- floors ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment gaffer gives the benchmark's children (it does not pass
    its own on: ``os_env`` is false). The floors use it too, since a longer PATH
    or a bigger environment makes every exec slower."""
    cfg = ProcessConfig.from_dict({"name": "w", "cmd": SLEEP[0], "args": SLEEP[1:]})
    return cfg.build_env(0, pid=1)


def popen_spawn(n: int, env: Mapping[str, str]) -> float:
    """Seconds to start ``n`` children with plain Popen; they are then reaped."""
    return floors.popen_loop(SLEEP, n, env)


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGKILL the children, then reap them."""
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def popen_supervised(n: int, env: Mapping[str, str]) -> float:
    """Seconds to start ``n`` children with Popen the way any supervisor must:
    stdout and stderr pipes kept open and a pidfd per child. Each child adds
    three fds to the parent, and every later fork copies the whole fd table,
    so this floor grows faster than N -- it is what gaffer pays too."""
    procs: list[subprocess.Popen[bytes]] = []
    fds: list[int] = []
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            proc = subprocess.Popen(SLEEP, env=env, stdout=out_w, stderr=err_w, process_group=0)
            os.close(out_w)
            os.close(err_w)
            fds += [out_r, err_r, os.pidfd_open(proc.pid)]
            procs.append(proc)
        return time.perf_counter() - t0
    finally:
        kill_all(procs)
        for fd in fds:
            os.close(fd)


def posix_spawn(n: int, env: Mapping[str, str]) -> float:
    """Seconds to start ``n`` children with os.posix_spawnp; they are then reaped."""
    return floors.posix_spawn_loop(SLEEP, n, env, search=True)


async def raw_repair(kills: int, env: Mapping[str, str]) -> list[float]:
    """The repair floor: kill, notice through a pidfd on the loop, reap, Popen a
    new child. Seconds from each kill until the coroutine has the new child."""
    loop = asyncio.get_running_loop()
    proc = subprocess.Popen(SLEEP, env=env)
    watched: list[int] = []  # the pidfd being watched, if any
    out: list[float] = []

    def unwatch() -> None:
        while watched:
            fd = watched.pop()
            loop.remove_reader(fd)
            os.close(fd)

    def ready(old: subprocess.Popen[bytes], done: asyncio.Future[Any]) -> None:
        unwatch()
        old.wait()
        done.set_result(subprocess.Popen(SLEEP, env=env))

    try:
        for _ in range(kills):
            done: asyncio.Future[subprocess.Popen[bytes]] = loop.create_future()
            watched.append(os.pidfd_open(proc.pid))
            loop.add_reader(watched[0], ready, proc, done)
            t0 = time.perf_counter()
            os.kill(proc.pid, signal.SIGKILL)
            async with asyncio.timeout(TIMEOUT):
                proc = await done
            out.append(time.perf_counter() - t0)
    finally:
        unwatch()
        proc.kill()
        proc.wait()
    return out


# -- gaffer -----------------------------------------------------------------------


async def gaffer_spawn(m: Manager, name: str, n: int) -> float:
    """Seconds from load() until all ``n`` processes are running; then unloads
    the job and waits until every process has exited (not timed)."""
    try:
        t0 = time.perf_counter()
        m.load(
            {"name": name, "cmd": SLEEP[0], "args": SLEEP[1:], "numprocesses": n, "startsecs": 0}
        )
        await m.wait_running(name, timeout=TIMEOUT)
        return time.perf_counter() - t0
    finally:
        await unload(m, name)


async def gaffer_idle(m: Manager, n: int, seconds: float) -> dict[str, float]:
    """The manager's own CPU time and context switches while ``n`` children run
    and nothing happens, over ``seconds`` (the benchmark just waits: that is the
    point). Wake-ups are voluntary context switches of this process."""
    name = "idle"
    try:
        m.load(
            {"name": name, "cmd": SLEEP[0], "args": SLEEP[1:], "numprocesses": n, "startsecs": 0}
        )
        await m.wait_running(name, timeout=TIMEOUT)
        gc.collect()
        before = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(seconds)
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await unload(m, name)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "cpu_percent": 100 * cpu / seconds,
        "wakeups_per_s": (after.ru_nvcsw - before.ru_nvcsw) / seconds,
    }


async def unload(m: Manager, name: str) -> None:
    """Unload a job and wait until its processes have exited. A failure is only
    reported: the final astop() and leftover check still clean up."""
    try:
        async with asyncio.timeout(STOP_TIMEOUT):
            await m.unload(name)
    except Exception as e:
        log(f"error: unloading {name}: {e!r}")


def _check_flap(event_type: str) -> None:
    if event_type == "flap":
        raise RuntimeError("flapping protection triggered; the repair figures would be wrong")


async def gaffer_repair(m: Manager, kills: int, slots: int) -> dict[str, list[float]]:
    """Kill a child ``kills`` times, round-robin over ``slots`` slots. Returns
    seconds from each kill until the new process's ``running`` event reaches a
    subscriber (``observed``) and until it was published (``published``)."""
    name = "repair"
    m.load(
        {"name": name, "cmd": SLEEP[0], "args": SLEEP[1:], "numprocesses": slots, "startsecs": 0}
    )
    await m.wait_running(name, timeout=TIMEOUT)
    sub = m.subscribe(f"job.default.{name}")
    observed: list[float] = []
    published: list[float] = []
    try:
        for i in range(kills):
            index = i % slots
            old = next(p for p in m.list(name) if p.index == index)
            assert old.os_pid is not None and old.state == "running"
            while (stale := sub.get_nowait()) is not None:
                _check_flap(stale.type)
            wall0 = time.time()
            t0 = time.perf_counter()
            os.kill(old.os_pid, signal.SIGKILL)
            async with asyncio.timeout(TIMEOUT):
                while True:
                    event = await sub.get()
                    _check_flap(event.type)
                    data = event.data
                    if (
                        event.type == "state"
                        and data["index"] == index
                        and data["to"] == "running"
                        and data["pid"] != old.pid
                    ):
                        break
            observed.append(time.perf_counter() - t0)
            published.append(event.time - wall0)
        if sub.dropped:
            raise RuntimeError(f"the subscription dropped {sub.dropped} events")
    finally:
        m.unsubscribe(f"job.default.{name}", sub)
        await unload(m, name)
    return {"observed": observed, "published": published}


async def bench_loop(m: Manager, kind: str, p: Params) -> dict[str, Any]:
    m.start()
    try:
        log(f"[{kind}] warm-up")
        await gaffer_spawn(m, "warmup", WARMUP_N)
        env = child_env()
        popen_spawn(WARMUP_N, env)
        posix_spawn(WARMUP_N, env)

        times: dict[str, list[float]] = {
            "gaffer": [],
            "popen": [],
            "posix_spawnp": [],
            "popen_supervised": [],
        }
        for r in range(p.rounds):
            order = list(times) if r % 2 == 0 else list(reversed(times))
            for label in order:
                # Start each timed run without the previous runs' garbage, so a
                # full collection of it is not charged to whichever run comes next.
                gc.collect()
                if label == "gaffer":
                    t = await gaffer_spawn(m, f"spawn{r}", p.n)
                elif label == "popen":
                    t = popen_spawn(p.n, env)
                elif label == "popen_supervised":
                    t = popen_supervised(p.n, env)
                else:
                    t = posix_spawn(p.n, env)
                times[label].append(t)
            log(
                f"[{kind}] spawn round {r + 1}/{p.rounds}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items())
            )

        log(f"[{kind}] crash repair: {p.kills} kills over {p.slots} slots")
        gc.collect()
        repair = await gaffer_repair(m, p.kills, p.slots)
        log(f"[{kind}] repair floor (pidfd + Popen by hand): {p.kills} kills")
        gc.collect()
        floor = await raw_repair(p.kills, env)
        log(f"[{kind}] idle: 100 children, {p.idle_s:g} s")
        idle = await gaffer_idle(m, 100, p.idle_s)
    finally:
        async with asyncio.timeout(STOP_TIMEOUT):
            await m.astop()
    return {
        "spawn_s": times,
        "ratio_popen": [g / f for g, f in zip(times["gaffer"], times["popen"], strict=True)],
        "ratio_posix_spawnp": [
            g / f for g, f in zip(times["gaffer"], times["posix_spawnp"], strict=True)
        ],
        "ratio_popen_supervised": [
            g / f for g, f in zip(times["gaffer"], times["popen_supervised"], strict=True)
        ],
        "repair_ms": {k: [x * 1000 for x in v] for k, v in repair.items()},
        "repair_floor_ms": [x * 1000 for x in floor],
        "idle": idle,
    }


def run_loop(kind: str, p: Params) -> dict[str, Any]:
    m = Manager(loop_kind=kind)
    loop = m.loop
    task = loop.create_task(bench_loop(m, kind, p))
    try:
        return loop.run_until_complete(task)
    finally:
        # After Ctrl-C the task is still pending: let its finally blocks run.
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        if m.started:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.wait_for(m.astop(), STOP_TIMEOUT))
        loop.close()


def reap_leftovers() -> list[int]:
    """Kill and reap any child still around; returns their pids (none expected)."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    for child in children:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.waitpid(child.pid, 0)
    return [c.pid for c in children]


# -- report ---------------------------------------------------------------------


def rows_for(kind: str, res: dict[str, Any], p: Params) -> list[Row]:
    t = res["spawn_s"]
    ms = {k: [x * 1000 for x in v] for k, v in t.items()}
    ratio = statistics.median(res["ratio_popen"])
    rows = [
        Row(
            f"spawn {p.n} x sleep, ms",
            kind,
            spread(ms["gaffer"], ".0f"),
            spread(ms["popen"], ".0f"),
            spread(res["ratio_popen"], ".2f"),
            f"<= {SPAWN_RATIO_TARGET:g}",
            "yes" if ratio <= SPAWN_RATIO_TARGET else "**no**",
        ),
    ]
    for key, floor in [
        ("posix_spawnp", "posix_spawnp"),
        ("popen_supervised", "Popen + 2 pipes + pidfd each"),
    ]:
        rows.append(
            Row(
                f"spawn {p.n} x sleep, ms (floor: {floor})",
                kind,
                spread(ms["gaffer"], ".0f"),
                spread(ms[key], ".0f"),
                spread(res[f"ratio_{key}"], ".2f"),
                "-",
                "-",
            )
        )
    obs = summary(res["repair_ms"]["observed"])
    flo = summary(res["repair_floor_ms"])
    targets = {"median": REPAIR_MEDIAN_TARGET_MS, "p95": None, "p99": REPAIR_P99_TARGET_MS}
    for stat, target in targets.items():
        met = "-" if target is None else ("yes" if obs[stat] <= target else "**no**")
        rows.append(
            Row(
                f"crash repair {stat}, ms ({p.kills} kills)",
                kind,
                f"{obs[stat]:.2f}",
                f"{flo[stat]:.2f}",
                f"{obs[stat] / flo[stat]:.1f}",
                "-" if target is None else f"<= {target:g}",
                met,
            )
        )
    idle = res["idle"]
    rows.append(
        Row(
            f"idle CPU %, 100 children, {p.idle_s:g} s",
            kind,
            f"{idle['cpu_percent']:.3f}",
            "-",
            "-",
            "< 0.01",
            "yes" if idle["cpu_percent"] < 0.01 else "**no**",
        )
    )
    rows.append(
        Row(
            f"idle wake-ups/s, 100 children, {p.idle_s:g} s",
            kind,
            f"{idle['wakeups_per_s']:.1f}",
            "-",
            "-",
            "0",
            "yes" if idle["wakeups_per_s"] < 0.5 else "**no**",
        )
    )
    return rows


def markdown(rows: list[Row]) -> str:
    header = ["figure", "loop", "gaffer", "floor (Popen)", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(asdict(r).values()) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--quick", action="store_true", help="N=100, 30 kills; API: 200 requests, fan-out of 100"
    )
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("-n", type=int, help="processes to spawn (default 500, 100 with --quick)")
    ap.add_argument("--rounds", type=int, help="spawn rounds (default 7, 3 with --quick)")
    ap.add_argument("--kills", type=int, help="crash repairs (default 100, 30 with --quick)")
    ap.add_argument("--loops", nargs="+", choices=LOOPS, default=list(LOOPS))
    api.add_arguments(ap)
    args = ap.parse_args(argv)
    if args.no_api and args.api_only:
        ap.error("--no-api and --api-only exclude each other")
    api_params = api.params_from(args)

    n = args.n or (100 if args.quick else 500)
    kills = args.kills or (30 if args.quick else 100)
    # Each slot restarts at most attempts - 1 times, so flapping cannot trigger.
    per_slot = FlappingConfig().attempts - 1
    rounds = args.rounds or (3 if args.quick else 7)
    p = Params(
        n=n,
        rounds=rounds,
        kills=kills,
        slots=math.ceil(kills / per_slot),
        idle_s=3.0 if args.quick else 10.0,
    )
    ensure_fd_limit(3 * max(n, p.slots) + 256)

    info = machine()
    results: dict[str, Any] = {}
    api_results: dict[str, Any] = {}
    cli_results: dict[str, Any] = {}
    api_leftovers: list[int] = []
    try:
        if not args.api_only:
            results = {kind: run_loop(kind, p) for kind in args.loops}
        if not args.no_api:
            for kind in args.loops:
                api_results[kind] = api.run(kind, api_params)
                api_leftovers += api.leftovers(api_results[kind])
                cli_results[kind] = cli.run(kind, 10 if args.quick else 30)
                api_leftovers += cli_results[kind].get("leftovers", [])
    finally:
        leftovers = reap_leftovers()
        if leftovers:
            log(f"error: {len(leftovers)} child processes were left behind (now killed)")
    if leftovers or api_leftovers:
        return 1
    rows = []
    for kind in args.loops:
        if kind in results:
            rows += rows_for(kind, results[kind], p)
        if kind in api_results:
            rows += [Row(*r) for r in api.rows_for(kind, api_results[kind], api_params)]
        if kind in cli_results:
            rows += [Row(*r) for r in cli.rows_for(kind, cli_results[kind])]

    if args.json:
        out = {
            "machine": info,
            "params": {**asdict(p), "api": asdict(api_params)},
            "targets": {
                "spawn_ratio": SPAWN_RATIO_TARGET,
                "repair_median_ms": REPAIR_MEDIAN_TARGET_MS,
                "repair_p99_ms": REPAIR_P99_TARGET_MS,
                **api.targets(),
                "gaffer_ps_ms": cli.PS_TARGET_MS,
            },
            "results": {
                kind: {
                    **res,
                    "repair_summary_ms": {
                        "observed": summary(res["repair_ms"]["observed"]),
                        "published": summary(res["repair_ms"]["published"]),
                        "floor": summary(res["repair_floor_ms"]),
                    },
                }
                for kind, res in results.items()
            },
            "api": api_results,
            "cli": cli_results,
            "rows": [asdict(r) for r in rows],
        }
        print(json.dumps(out, indent=2))
    else:
        print(
            f"machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, "
            f"Python {info['python']}, uvloop {info['uvloop']}"
        )
        if results:
            print(
                f"spawn: N={p.n}, {p.rounds} rounds, median (min-max); "
                f"repair: {p.kills} kills over {p.slots} slots"
            )
        if api_results:
            a = api_params
            print(
                f"API: server in its own process; {a.requests} timed requests per path after "
                f"{a.warmup} warm-up, one keep-alive connection each (unix socket; TCP with "
                f"X-Api-Key); fan-out: {a.fan_clients} websocket clients, {a.fan_procs} "
                f"processes killed per round, {a.fan_rounds} rounds, events/s median (min-max)"
            )
        print()
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
