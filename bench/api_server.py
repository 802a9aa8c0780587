"""The daemon side of the API benchmarks (``bench/api.py``): a Manager with the
HTTP API, in a process of its own so that the benchmark's client never shares
its event loop.

    api_server.py --loop uvloop --unix-socket PATH [--bind 127.0.0.1:0]
                  [--require-key] --jobs '[{"name": "big", ...}, ...]'

It starts the Manager and an :class:`HttpApp` (keys kept in memory), loads the
jobs (into the ``default`` session), waits until every one of their processes
is running and then prints one JSON line on stdout::

    {"ready": true, "pid": ..., "loop": ..., "unix": PATH, "tcp": [HOST, PORT],
     "key": TOKEN or null, "startup_s": ...}

``key`` is an admin API key created for the benchmark when ``--require-key``
is given (to be sent as ``X-Api-Key``). After that it answers one JSON line per
JSON line read on stdin (the benchmark's control channel, apart from the API):

- ``{"cmd": "last_seq"}`` → ``{"last_seq": N}``, the event bus's last sequence
  number;
- ``{"cmd": "seqs", "job": "default.x", "after": N}`` → ``{"seqs": [...],
  "running": R, "want": W, "flaps": F}``: the sequence numbers of every event
  published with that job's name after N (on any topic; output excluded, as
  the channel's ``EVENTS`` topic excludes it), how many of its processes are
  ``running`` and how many it wants, and how many ``flap`` events it has had.

On SIGTERM or SIGINT, or when stdin is closed (the benchmark has gone), it stops
every job with ``Manager.astop()`` -- its children are stopped and reaped --
and exits 0; if that takes longer than 30 s it kills every process group
(``Manager.kill_now()``) and exits 1. It also asks the kernel for a SIGTERM if
its parent dies (``PR_SET_PDEATHSIG``). Exit status 2: bad arguments or the
API could not listen; 1: the jobs did not all start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import sys
import time
from collections import defaultdict
from typing import Any

from gaffer import states
from gaffer.errors import GafferError
from gaffer.events import Event
from gaffer.http import HttpApp, HttpSettings
from gaffer.http.keystore import AuthStore
from gaffer.http.permissions import ADMIN
from gaffer.manager import Manager

START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1

log = logging.getLogger("api_server")


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def raise_fd_limit(needed: int) -> None:
    """Each child holds a pidfd and two pipe ends open in the daemon."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


class Recorder:
    """The sequence numbers of the events published for each job."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.flaps: dict[str, int] = defaultdict(int)
        # Everything, as the channel's EVENTS topic: job and process events are
        # published under job.<name>.*, but a pipe's ``eof`` only under stream.*.
        manager.emitter.subscribe(".", self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.type == "output":
            return
        name = event.data.get("name")
        if isinstance(name, str):
            self.seqs[name].append(event.seq)
            if event.type == "flap":
                self.flaps[name] += 1

    def answer(self, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, dict):
            return {"error": "expected a JSON object"}
        cmd = msg.get("cmd")
        if cmd == "last_seq":
            return {"last_seq": self.manager.emitter.last_seq}
        if cmd == "seqs":
            name = str(msg.get("job"))
            after = int(msg.get("after", 0))
            try:
                job = self.manager.get(name)
            except GafferError as e:
                return {"error": e.reason}
            return {
                "seqs": [s for s in self.seqs.get(name, ()) if s > after],
                "running": sum(1 for p in job.processes if p.state == states.RUNNING),
                "want": job.numprocesses,
                "flaps": self.flaps.get(name, 0),
            }
        return {"error": f"unknown command {cmd!r}"}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(m: Manager, app: HttpApp, args: argparse.Namespace, stop: asyncio.Event) -> int:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    recorder = Recorder(m)
    token = None
    if args.require_key:
        store = await app.auth_store()
        _, token = await store.create_key(ADMIN, label="bench")
    jobs = json.loads(args.jobs)
    try:
        for job in jobs:
            m.load(job)
        for job in jobs:
            await m.wait_running(f"default.{job['name']}", timeout=START_TIMEOUT)
    except (GafferError, TimeoutError) as e:
        log.error("the jobs did not all start: %r", e)
        return 1
    tcp = next((list(a) for a in app.addresses if isinstance(a, tuple)), None)
    unix = next((a for a in app.addresses if isinstance(a, str)), None)
    emit(
        {
            "ready": True,
            "pid": os.getpid(),
            "loop": args.loop,
            "unix": unix,
            "tcp": tcp,
            "key": token,
            "startup_s": time.perf_counter() - t0,
        }
    )

    buf = b""
    fd = sys.stdin.fileno()

    def on_stdin() -> None:
        nonlocal buf
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:  # the benchmark has gone
            loop.remove_reader(fd)
            stop.set()
            return
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                reply = recorder.answer(json.loads(line))
            except ValueError as e:
                reply = {"error": f"bad request: {e}"}
            emit(reply)

    loop.add_reader(fd, on_stdin)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(fd)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    ap.add_argument("--unix-socket", required=True)
    ap.add_argument("--bind", action="append", default=[], metavar="HOST:PORT")
    ap.add_argument("--require-key", action="store_true", help="keys required on TCP")
    ap.add_argument("--jobs", required=True, help="a JSON list of job configs")
    args = ap.parse_args(argv)
    die_with_parent()
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s [api_server] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    jobs = json.loads(args.jobs)
    raise_fd_limit(3 * sum(int(j.get("numprocesses", 1)) for j in jobs) + 1024)

    m = Manager(loop_kind=args.loop)
    loop = m.loop
    settings = HttpSettings(
        unix_socket=args.unix_socket,
        bind=tuple(args.bind),
        require_key=args.require_key,
        state_dir=None,
    )
    app = HttpApp(settings, store=AuthStore(None))
    try:
        m.start(apps=[app])
    except GafferError as e:
        log.error("cannot start: %s", e.reason)
        loop.run_until_complete(m.astop())
        loop.close()
        return 2

    asyncio.set_event_loop(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    status = 0
    task = loop.create_task(serve(m, app, args, stop))
    try:
        status = loop.run_until_complete(task)
    except BaseException as e:
        log.error("serving failed: %r", e)
        status = 1
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        try:
            loop.run_until_complete(asyncio.wait_for(m.astop(), STOP_TIMEOUT))
        except BaseException as e:
            log.error("stopping failed (%r): killing every process group", e)
            m.kill_now()
            status = 1
        loop.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
