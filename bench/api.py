"""API benchmarks: request latency with 1,000 processes managed, and event
fan-out to 50 websocket clients. Run by ``bench/run.py`` (rows in the same
table and JSON); ``--no-api`` leaves them out, ``--api-only`` runs only them.

The daemon -- a Manager with the HTTP API -- runs in a subprocess of its own
(``bench/api_server.py``), one per event loop being measured, so the client
here never shares its loop or its CPU time: every figure is what a separate
client process sees. The API listens on a unix socket and on TCP
(``127.0.0.1``, random port) with API keys *required*: the TCP figures send an
admin key as ``X-Api-Key`` (the key store caches a verified token, so only the
first request pays for scrypt; it is in the warm-up). Every child of the
server carries a marker in its environment; when the server has been stopped
(SIGTERM: ``Manager.astop()``, SIGKILL after 35 s) the benchmark looks for any
``sleep`` still carrying the marker, kills it and reports a failure.

1. Latency. The server runs a job of ``--api-procs`` (1,000; ``--quick`` does
   not change it) ``sleep 3600`` processes and a small job of one, and waits
   until all are running. Over one persistent (keep-alive) connection per
   transport -- ``http.client`` on AF_UNIX, and on TCP; the benchmark fails if
   a connection was ever re-opened -- after a warm-up of ``--api-warmup``
   requests per path, ``--api-requests`` (1,000; 200 with ``--quick``)
   sequential GETs of each path, timed from just before the request is sent
   until the whole body is read: ``/jobs/default/small`` (the small job's
   info), ``/pids`` (every process) and ``/jobs/default/big`` (the big job's
   info, with one entry per slot: everything listed with detail). The floor is
   ``GET /ping`` on the same connection (the HTTP stack alone: no key check,
   no JSON). Reported: median and p99 (nearest rank) in ms, and the ratio to
   the floor's same statistic. Targets: job GET median <= 2 ms, p99 <= 10 ms.
   The JSON also has the server's CPU time per request (from /proc, over each
   series) and the response sizes.

2. Event fan-out. A new server runs a job of ``--fan-procs`` (500; 100 with
   ``--quick``) ``sleep 3600``. ``--fan-clients`` (50) websocket clients, on
   this process's loop, connect to ``/channel`` over TCP with the key and send
   ``{"event": "SUB", "data": {"topic": "EVENTS"}}``. Each round (one untimed
   warm-up, then ``--fan-rounds``, 3; 2 with ``--quick``): ``POST
   /jobs/default/fan/signal {"signal": "KILL"}`` kills every process, and the
   job replaces each. A client is done when it has seen a ``state`` event
   ``to: running`` for ``N`` new processes; the benchmark then asks the server
   (over its stdin control channel, not the API) for the sequence numbers of
   every event it published for the job since the round began, and that the
   job has ``N`` running. Each client must have received each of those exactly
   once (events of other jobs are not counted). Reported: events delivered per
   second (the sum over clients / the time from the POST until the last client
   had the last event), the events lost or duplicated (target 0), the server's
   CPU time per event delivered (per event per client), the time from the POST
   until the last replacement was ``running`` (its event's timestamp), the
   longest ``GET /ping`` (unix socket, sent every 10 ms from a thread during
   the round: how long the daemon's loop leaves a request waiting while it
   delivers) and the p99 delivery lag (client receipt minus the event's
   timestamp; same clock).
   Flapping protection stays at its default; each slot is killed once per
   round, 4 times at most (the warm-up plus 3), which cannot trigger it: the
   benchmark fails on a ``flap`` event anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import math
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import tornado.httpclient
import tornado.websocket

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api_server.py")
MARK = "GAFFER_BENCH_API"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 35.0
ROUND_TIMEOUT = 120.0
REQUEST_TIMEOUT = 30.0
KEY_HEADER = "X-Api-Key"

JOB_MEDIAN_TARGET_MS = 2.0
JOB_P99_TARGET_MS = 10.0
# Each slot restarts at most attempts - 1 = 4 times (gaffer's default
# flapping protection), the warm-up round included.
MAX_FAN_ROUNDS = 3

PATHS = {
    "ping": "/ping",
    "job": "/jobs/default/small",
    "pids": "/pids",
    "job_big": "/jobs/default/big",
}
TRANSPORTS = ("unix", "tcp+key")


@dataclass
class ApiParams:
    procs: int = 1000
    requests: int = 1000
    warmup: int = 50
    fan_procs: int = 500
    fan_clients: int = 50
    fan_rounds: int = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("API benchmarks (bench/api.py)")
    g.add_argument("--no-api", action="store_true", help="skip the API benchmarks")
    g.add_argument("--api-only", action="store_true", help="run only the API benchmarks")
    g.add_argument("--api-procs", type=int, help="processes managed for latency (1000)")
    g.add_argument(
        "--api-requests", type=int, help="timed requests per path (1000, 200 with --quick)"
    )
    g.add_argument("--api-warmup", type=int, help="warm-up requests per path (50, 20 with --quick)")
    g.add_argument(
        "--fan-procs", type=int, help="processes killed per round (500, 100 with --quick)"
    )
    g.add_argument("--fan-clients", type=int, help="websocket clients (50)")
    g.add_argument(
        "--fan-rounds", type=int, help=f"timed rounds (3, 2 with --quick; <= {MAX_FAN_ROUNDS})"
    )


def params_from(args: argparse.Namespace) -> ApiParams:
    quick = args.quick
    p = ApiParams(
        procs=args.api_procs or 1000,
        requests=args.api_requests or (200 if quick else 1000),
        warmup=args.api_warmup or (20 if quick else 50),
        fan_procs=args.fan_procs or (100 if quick else 500),
        fan_clients=args.fan_clients or 50,
        fan_rounds=args.fan_rounds or (2 if quick else 3),
    )
    if not 1 <= p.fan_rounds <= MAX_FAN_ROUNDS:
        raise SystemExit(f"--fan-rounds: 1..{MAX_FAN_ROUNDS} (flapping protection)")
    return p


# -- statistics ---------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)``."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    return f"{med:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"


def stats(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


# -- the server process -----------------------------------------------------------


def sleep_job(name: str, n: int, mark: str) -> dict[str, Any]:
    return {
        "name": name,
        "cmd": "sleep",
        "args": ["3600"],
        "numprocesses": n,
        "startsecs": 0,
        "env": {MARK: mark},
    }


class Server:
    """``api_server.py`` in a session of its own (a Ctrl-C reaches only the
    benchmark, which then stops it properly)."""

    def __init__(self, kind: str, jobs: list[dict[str, Any]]) -> None:
        self.kind = kind
        self.tmp = tempfile.mkdtemp(prefix="gaffer-bench-api-")
        self._buf = b""
        # Started from the main thread: the server asks for SIGTERM when the
        # thread that forked it ends (PR_SET_PDEATHSIG).
        self.proc = subprocess.Popen(
            [
                sys.executable,
                SERVER,
                "--loop",
                kind,
                "--unix-socket",
                os.path.join(self.tmp, "run", "gafferd.sock"),
                "--bind",
                "127.0.0.1:0",
                "--require-key",
                "--jobs",
                json.dumps(jobs),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            self.info = self._line(START_TIMEOUT)
            if not self.info.get("ready"):
                raise RuntimeError(f"api_server: {self.info}")
        except BaseException:
            self.stop()
            raise
        self.unix: str = self.info["unix"]
        host, port = self.info["tcp"]
        self.tcp: tuple[str, int] = (host, port)
        self.key: str = self.info["key"]
        self.ps = psutil.Process(self.proc.pid)

    def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"api_server said nothing for {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise RuntimeError(f"api_server exited (status {self.proc.wait()})")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return dict(json.loads(line))

    def control(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        self.proc.stdin.flush()
        reply = self._line(REQUEST_TIMEOUT)
        if "error" in reply:
            raise RuntimeError(f"api_server: {reply['error']}")
        return reply

    def cpu_s(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        """SIGTERM (the server stops every job), SIGKILL if it hangs."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"error: api_server ({self.kind}) did not stop in {STOP_TIMEOUT:g} s: killed")
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            log(f"error: api_server ({self.kind}) exited with status {proc.returncode}")
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sweep(mark: str) -> list[int]:
    """Kill every ``sleep`` still carrying this run's marker; their pids."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "sleep":
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARK) == mark:
                proc.kill()
                found.append(proc)
    psutil.wait_procs(found, timeout=5)
    return [p.pid for p in found]


# -- HTTP client ------------------------------------------------------------------


class CountingHTTPConnection(http.client.HTTPConnection):
    """Keep-alive HTTP/1.1 over TCP; counts how often it had to (re)connect."""

    connects = 0

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1


class UnixHTTPConnection(http.client.HTTPConnection):
    """Keep-alive HTTP/1.1 over a unix socket."""

    connects = 0

    def __init__(self, path: str, timeout: float = REQUEST_TIMEOUT) -> None:
        super().__init__("gafferd", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock
        self.connects += 1


Conn = CountingHTTPConnection | UnixHTTPConnection


def connect(server: Server, transport: str) -> tuple[Conn, dict[str, str]]:
    if transport == "unix":
        return UnixHTTPConnection(server.unix), {}
    host, port = server.tcp
    return CountingHTTPConnection(host, port, timeout=REQUEST_TIMEOUT), {KEY_HEADER: server.key}


def request(
    conn: Conn, method: str, path: str, headers: dict[str, str], body: Any = None
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body)
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def get_ok(conn: Conn, path: str, headers: dict[str, str]) -> bytes:
    status, body = request(conn, "GET", path, headers)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
    return body


def timed_gets(conn: Conn, path: str, headers: dict[str, str], n: int) -> list[float]:
    """Milliseconds for each of ``n`` sequential GETs (request sent to body read)."""
    out = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        out.append((clock() - t0) * 1000)
        if r.status != 200:
            raise RuntimeError(f"GET {path}: {r.status}")
    return out


def latency(kind: str, p: ApiParams) -> dict[str, Any]:
    mark = uuid.uuid4().hex
    jobs = [sleep_job("big", p.procs, mark), sleep_job("small", 1, mark)]
    log(f"[{kind}] API latency: starting the server with {p.procs + 1} processes")
    res: dict[str, Any] = {}
    try:
        with Server(kind, jobs) as server:
            res["startup_s"] = server.info["startup_s"]
            for transport in TRANSPORTS:
                conn, headers = connect(server, transport)
                try:
                    # Check what the listings hold (untimed), and warm up.
                    pids = json.loads(get_ok(conn, "/pids", headers))["pids"]
                    big = json.loads(get_ok(conn, PATHS["job_big"], headers))
                    if len(pids) != p.procs + 1 or len(big["slots"]) != p.procs:
                        raise RuntimeError(
                            f"expected {p.procs + 1} pids and {p.procs} slots, got "
                            f"{len(pids)} and {len(big['slots'])}"
                        )
                    for path in PATHS.values():
                        timed_gets(conn, path, headers, p.warmup)
                    figures: dict[str, Any] = {}
                    for name, path in PATHS.items():
                        size = len(get_ok(conn, path, headers))
                        gc.collect()
                        gc.disable()
                        try:
                            cpu0 = server.cpu_s()
                            ms = timed_gets(conn, path, headers, p.requests)
                            cpu = server.cpu_s() - cpu0
                        finally:
                            gc.enable()
                        figures[name] = {
                            "ms": ms,
                            "summary": stats(ms),
                            "server_cpu_ms_per_request": cpu * 1000 / p.requests,
                            "bytes": size,
                        }
                        s = figures[name]["summary"]
                        log(
                            f"[{kind}] {transport} GET {path}: median {s['median']:.3f} ms, "
                            f"p99 {s['p99']:.3f} ms, server CPU "
                            f"{figures[name]['server_cpu_ms_per_request']:.3f} ms/request, "
                            f"{size} bytes"
                        )
                    if conn.connects != 1:
                        raise RuntimeError(
                            f"{transport}: the connection was opened {conn.connects} times"
                        )
                    res[transport] = figures
                finally:
                    conn.close()
    finally:
        report_leftovers(res, mark)
    return res


def report_leftovers(res: dict[str, Any], mark: str) -> None:
    """Kill what the API server left behind, and say so in the results."""
    left = sweep(mark)
    if left:
        res["leftovers"] = left
        log(f"error: {len(left)} sleep processes of the API server were left (now killed)")


# -- websocket fan-out ------------------------------------------------------------


class WsClient:
    """One /channel subscriber to EVENTS; keeps what it got of one job's events."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.conn: tornado.websocket.WebSocketClientConnection | None = None
        self.subscribed = asyncio.Event()
        self.error: str | None = None
        self.reset(0, set(), 0)

    def reset(self, seq0: int, old: set[int], want: int) -> None:
        self.seq0 = seq0
        self.old = old
        self.want = want
        self.seqs: list[int] = []
        self.recv_at: dict[int, float] = {}
        self.lags: list[float] = []
        self.new_running: set[int] = set()
        self.running_at = 0.0  # the server's timestamp of the last new "running"
        self.flaps = 0
        self.target: int | None = None
        self.done = asyncio.Event()
        self.reached = asyncio.Event()
        if self.error:
            self._fail(self.error)

    def wait_for_seq(self, seq: int) -> None:
        self.target = seq
        if self.seqs and max(self.seqs) >= seq:
            self.reached.set()

    def _fail(self, why: str) -> None:
        # Called back by tornado: raising here would only be logged.
        self.error = self.error or why
        self.subscribed.set()
        self.done.set()
        self.reached.set()

    def on_message(self, msg: str | bytes | None) -> None:
        if msg is None:
            self._fail("the server closed the channel")
            return
        now = time.time()
        at = time.perf_counter()
        m = json.loads(msg)
        event = m.get("event")
        if event != "gaffer:event":
            if event == "gaffer:subscription_success":
                self.subscribed.set()
            elif event in ("gaffer:error", "gaffer:subscription_error"):
                self._fail(f"channel: {m}")
            return
        d = m["data"]
        seq = d["seq"]
        if d.get("name") != self.job or seq <= self.seq0:
            return
        self.seqs.append(seq)
        self.recv_at.setdefault(seq, at)
        self.lags.append(now - d["time"])
        kind = d["event"]
        if kind == "flap":
            self.flaps += 1
            self._fail("flapping protection triggered")
        elif kind == "state" and d["to"] == "running" and d["pid"] not in self.old:
            self.new_running.add(d["pid"])
            self.running_at = max(self.running_at, d["time"])
            if len(self.new_running) >= self.want:
                self.done.set()
        if self.target is not None and seq >= self.target:
            self.reached.set()

    async def connect(self, server: Server) -> None:
        host, port = server.tcp
        req = tornado.httpclient.HTTPRequest(
            f"ws://{host}:{port}/channel", headers={KEY_HEADER: server.key}
        )
        self.conn = await tornado.websocket.websocket_connect(
            req, on_message_callback=self.on_message
        )
        await self.conn.write_message(json.dumps({"event": "SUB", "data": {"topic": "EVENTS"}}))
        await asyncio.wait_for(self.subscribed.wait(), REQUEST_TIMEOUT)
        if self.error:
            raise RuntimeError(self.error)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class Prober:
    """``GET /ping`` every 10 ms on a connection of its own, from a thread,
    while a fan-out round runs: how long the daemon's loop keeps a request
    waiting while it delivers the events."""

    INTERVAL = 0.01

    def __init__(self, server: Server) -> None:
        self.conn = UnixHTTPConnection(server.unix, timeout=ROUND_TIMEOUT)
        self.ms: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping-prober", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.ms += timed_gets(self.conn, "/ping", {}, 1)
                self._stop.wait(self.INTERVAL)
        except BaseException as e:
            self.error = e

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(ROUND_TIMEOUT + 5)
        self.conn.close()


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def fan_round(
    server: Server, conn: Conn, headers: dict[str, str], clients: list[WsClient], p: ApiParams
) -> dict[str, Any]:
    job = "default.fan"
    seq0 = server.control(cmd="last_seq")["last_seq"]
    old = set(json.loads(get_ok(conn, "/jobs/default/fan/pids", headers))["pids"])
    if len(old) != p.fan_procs:
        raise RuntimeError(f"{job}: {len(old)} processes before the round, not {p.fan_procs}")
    for c in clients:
        c.reset(seq0, old, p.fan_procs)
    gc.collect()
    with Prober(server) as prober:
        await asyncio.sleep(Prober.INTERVAL * 5)
        cpu_server0, cpu_self0 = server.cpu_s(), own_cpu_s()
        wall0 = time.time()
        t0 = time.perf_counter()
        status, body = request(
            conn,
            "POST",
            "/jobs/default/fan/signal",
            headers | {"Content-Type": "application/json"},
            {"signal": "KILL"},
        )
        if status != 202:
            raise RuntimeError(f"POST signal: {status} {body[:200]!r}")
        async with asyncio.timeout(ROUND_TIMEOUT):
            await asyncio.gather(*(c.done.wait() for c in clients))
            # What the server published for the job since the round began.
            snap = await asyncio.to_thread(server.control, cmd="seqs", job=job, after=seq0)
            expected = snap["seqs"]
            if not expected:
                raise RuntimeError(f"{job}: the server published no event for the round")
            last = max(expected)
            for c in clients:
                c.wait_for_seq(last)
            await asyncio.gather(*(c.reached.wait() for c in clients))
        cpu_server, cpu_self = server.cpu_s() - cpu_server0, own_cpu_s() - cpu_self0
    if prober.error is not None:
        raise RuntimeError(f"GET /ping during the round: {prober.error!r}")
    errors = {c.error for c in clients if c.error}
    if errors:
        raise RuntimeError(f"fan-out: {sorted(errors)}")
    if snap["flaps"]:
        raise RuntimeError("flapping protection triggered; the fan-out figures would be wrong")
    if snap["running"] != p.fan_procs:
        raise RuntimeError(f"{job}: {snap['running']} running after the round, not {p.fan_procs}")
    want = set(expected)
    delivered = lost = dups = unexpected = 0
    end = t0
    lags: list[float] = []
    for c in clients:
        window = [s for s in c.seqs if s <= last]
        got = set(window)
        delivered += len(got & want)
        lost += len(want - got)
        dups += len(window) - len(got)
        unexpected += len(got - want)
        end = max([end, *(c.recv_at[s] for s in got & want)])
        lags += [lag for s, lag in zip(c.seqs, c.lags, strict=True) if s <= last]
    wall = end - t0
    return {
        "events": len(expected),
        "events_per_process": len(expected) / p.fan_procs,
        "delivered": delivered,
        "lost": lost,
        "duplicated": dups,
        "unexpected": unexpected,
        "wall_s": wall,
        # From the POST until the last replacement was running (the server's
        # clock): the fan-out shares the loop with the supervision.
        "restored_s": max(c.running_at for c in clients) - wall0,
        "events_per_s": delivered / wall,
        "lag_ms": {k: v * 1000 for k, v in stats(lags).items()},
        "lags_ms": [x * 1000 for x in lags],
        "ping_ms": stats(prober.ms),
        "server_cpu_s": cpu_server,
        "server_cpu_us_per_delivery": cpu_server * 1e6 / delivered,
        "client_cpu_s": cpu_self,
    }


async def fan_out(server: Server, p: ApiParams, kind: str) -> dict[str, Any]:
    clients = [WsClient("default.fan") for _ in range(p.fan_clients)]
    conn, headers = connect(server, "tcp+key")
    rounds: list[dict[str, Any]] = []
    try:
        await asyncio.gather(*(c.connect(server) for c in clients))
        for r in range(p.fan_rounds + 1):
            res = await fan_round(server, conn, headers, clients, p)
            label = "warm-up" if r == 0 else f"round {r}/{p.fan_rounds}"
            log(
                f"[{kind}] fan-out {label}: {res['events']} events x {p.fan_clients} clients "
                f"in {res['wall_s'] * 1000:.0f} ms = {res['events_per_s']:.0f} events/s, "
                f"lost {res['lost']}, duplicated {res['duplicated']}, "
                f"lag p99 {res['lag_ms']['p99']:.1f} ms; all running again after "
                f"{res['restored_s'] * 1000:.0f} ms; GET /ping max "
                f"{res['ping_ms']['max']:.0f} ms; CPU server "
                f"{res['server_cpu_s']:.2f} s, client {res['client_cpu_s']:.2f} s"
            )
            if r:
                rounds.append(res)
    finally:
        for c in clients:
            c.close()
        conn.close()
    return {"rounds": rounds, "client_loop": type(asyncio.get_running_loop()).__module__}


def run_fan_out(kind: str, p: ApiParams) -> dict[str, Any]:
    mark = uuid.uuid4().hex
    log(f"[{kind}] fan-out: starting the server with {p.fan_procs} processes")
    res: dict[str, Any] = {}
    try:
        with Server(kind, [sleep_job("fan", p.fan_procs, mark)]) as server:
            try:
                import uvloop

                factory: Any = uvloop.new_event_loop
            except ImportError:
                factory = None
            with asyncio.Runner(loop_factory=factory) as runner:
                res = runner.run(fan_out(server, p, kind))
    finally:
        report_leftovers(res, mark)
    return res


def run(kind: str, p: ApiParams) -> dict[str, Any]:
    """Both API benchmarks against a server on the ``kind`` loop."""
    return {"latency": latency(kind, p), "fan_out": run_fan_out(kind, p)}


def leftovers(res: dict[str, Any]) -> list[int]:
    return [*res["latency"].get("leftovers", []), *res["fan_out"].get("leftovers", [])]


# -- report -------------------------------------------------------------------------

LABELS = {
    "job": "GET /jobs/default/small",
    "pids": "GET /pids",
    "job_big": "GET /jobs/default/big",
}
TARGETS = {("job", "median"): JOB_MEDIAN_TARGET_MS, ("job", "p99"): JOB_P99_TARGET_MS}


def rows_for(kind: str, res: dict[str, Any], p: ApiParams) -> list[tuple[str, ...]]:
    """Rows of (figure, loop, gaffer, floor, ratio, target, met)."""
    rows: list[tuple[str, ...]] = []
    lat = res["latency"]
    for transport in TRANSPORTS:
        figs = lat[transport]
        floor = figs["ping"]["summary"]
        for name, label in LABELS.items():
            s = figs[name]["summary"]
            for stat in ("median", "p99"):
                target = TARGETS.get((name, stat))
                met = "-" if target is None else ("yes" if s[stat] <= target else "**no**")
                rows.append(
                    (
                        f"API {label} {stat}, ms ({transport}; {p.procs + 1} procs; "
                        f"floor: GET /ping)",
                        kind,
                        f"{s[stat]:.2f}",
                        f"{floor[stat]:.2f}",
                        f"{s[stat] / floor[stat]:.1f}",
                        "-" if target is None else f"<= {target:g}",
                        met,
                    )
                )
    rounds = res["fan_out"]["rounds"]
    events = statistics.median(r["events"] for r in rounds)
    lost = sum(r["lost"] + r["duplicated"] + r["unexpected"] for r in rounds)
    lags = [x for r in rounds for x in r["lags_ms"]]
    what = f"{p.fan_clients} ws clients, KILL {p.fan_procs} procs, {len(rounds)} rounds"
    rows += [
        (
            f"fan-out events/s delivered ({what}; {events:.0f} events each)",
            kind,
            spread([r["events_per_s"] for r in rounds], ".0f"),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"fan-out events lost or duplicated ({what})",
            kind,
            str(lost),
            "-",
            "-",
            "0",
            "yes" if lost == 0 else "**no**",
        ),
        (
            f"fan-out server CPU per event delivered, us ({what})",
            kind,
            spread([r["server_cpu_us_per_delivery"] for r in rounds], ".0f"),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"fan-out KILL until {p.fan_procs} running again, ms ({what}; server clock)",
            kind,
            spread([r["restored_s"] * 1000 for r in rounds], ".0f"),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"fan-out GET /ping max during the round, ms ({what}; unix)",
            kind,
            spread([r["ping_ms"]["max"] for r in rounds], ".0f"),
            "-",
            "-",
            "-",
            "-",
        ),
        (
            f"fan-out delivery lag p99, ms ({what})",
            kind,
            f"{percentile(lags, 99):.1f}",
            "-",
            "-",
            "-",
            "-",
        ),
    ]
    return rows


def targets() -> dict[str, float]:
    return {
        "api_job_median_ms": JOB_MEDIAN_TARGET_MS,
        "api_job_p99_ms": JOB_P99_TARGET_MS,
        "fan_out_lost": 0,
    }
