"""The benchmark's client of one daemon's native API, run as a subprocess by
``bench/compare.py`` with the *peers'* interpreter (``bench/.venv-peers``:
circus's client needs pyzmq, which gaffer's environment does not have). All
three daemons are driven by this same script in the same interpreter, so the
client side of every latency figure is the same Python doing the same work:

- gaffer: HTTP/1.1 on its unix socket, one keep-alive connection
  (``http.client``); status of one job ``GET /status?name=default.one&stats=0``,
  of everything ``GET /status?stats=0`` (a row per process, without the CPU and
  memory sampling, which the peers' calls do not do either), scale ``POST
  /jobs/default/<job>/numprocesses {"scale": "=N"}``;
- supervisord: XML-RPC on its unix socket (``xmlrpc.client`` with a unix-socket
  transport, one keep-alive connection): ``supervisor.getProcessInfo("one")``,
  ``supervisor.getAllProcessInfo()`` (a dict per process), scale
  ``supervisor.startProcessGroup(job, False)`` of a group of N processes that
  were not started (supervisord cannot change ``numprocs`` at run time);
- circus: ``circus.client.CircusClient`` (zmq DEALER on its ipc endpoint):
  ``{"command": "status", "properties": {"name": "one"}}``, ``status`` with no
  name (one word per watcher: circus has no per-process status call, so this
  "everything" answer is smaller than the other two), scale ``start`` of a
  watcher of N processes with ``autostart = false`` (``incr`` on a watcher of
  0 does nothing: circus keeps a watcher of 0 processes stopped).

Each call is timed with ``time.perf_counter()`` from just before the request is
sent until its answer is decoded. Protocol: one JSON object per line on stdin,
one JSON answer per line on stdout:

- ``{"op": "wait_up", "timeout": S}`` → ``{"ok": true}`` once a status call works;
- ``{"op": "time", "call": "one"|"all", "n": N, "warmup": W, "budget": S}`` →
  ``{"ms": [...]}``: W untimed calls (fewer if S/4 seconds run out), then N timed
  calls, or as many as fit in S seconds (at least 3);
- ``{"op": "scale", "job": J, "n": N}`` → ``{"ok": true, "ms": M}``; ``"unscale"``
  takes the job back to 0 processes (gaffer: scale ``"=0"``; supervisord:
  ``stopProcessGroup``; circus: ``stop``), untimed;
- ``{"op": "kill", "job": J}`` → ``{"ok": true}``: SIGKILL to every process of
  job J (gaffer: ``POST /jobs/default/J/signal {"signal": "KILL"}``; circus:
  ``signal`` with ``signum=9``; supervisord: not needed);
- ``{"op": "loop_start", "call": C}`` → ``{"ok": true}``: call C back to back
  on a thread until ``{"op": "loop_stop"}`` → ``{"ms": [...]}``;
- ``{"op": "quit"}`` or end of input: exit 0.

Any failure is answered ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class UnixTransport(xmlrpc.client.Transport):
    """xmlrpc.client over a unix socket, keeping its connection."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.unix_path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        conn = UnixHTTPConnection(self.unix_path)
        self._connection = host, conn
        return conn


class Gaffer:
    def __init__(self, address: str) -> None:
        self.conn = UnixHTTPConnection(address)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data)
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {raw[:200]!r}")
        return json.loads(raw) if raw[:1] in (b"{", b"[") else raw

    def one(self) -> Any:
        return self.request("GET", "/status?name=default.one&stats=0")

    def all(self) -> Any:
        return self.request("GET", "/status?stats=0")

    def scale(self, job: str, n: int) -> Any:
        return self.request("POST", f"/jobs/default/{job}/numprocesses", {"scale": f"={n}"})

    def unscale(self, job: str, n: int) -> Any:
        return self.request("POST", f"/jobs/default/{job}/numprocesses", {"scale": "=0"})

    def kill(self, job: str) -> Any:
        return self.request("POST", f"/jobs/default/{job}/signal", {"signal": "KILL"})

    def up(self) -> bool:
        self.one()
        return True


class Supervisord:
    def __init__(self, address: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(address))

    def one(self) -> Any:
        return self.proxy.supervisor.getProcessInfo("one")

    def all(self) -> Any:
        return self.proxy.supervisor.getAllProcessInfo()

    def scale(self, job: str, n: int) -> Any:
        return self.proxy.supervisor.startProcessGroup(job, False)

    def unscale(self, job: str, n: int) -> Any:
        return self.proxy.supervisor.stopProcessGroup(job, True)

    def up(self) -> bool:
        return bool(self.proxy.supervisor.getState()["statename"] == "RUNNING")


class Circus:
    def __init__(self, address: str) -> None:
        from circus.client import CircusClient

        self.client = CircusClient(endpoint=address, timeout=60.0)

    def call(self, command: str, **props: Any) -> Any:
        answer = self.client.call({"command": command, "properties": props})
        if answer.get("status") == "error":
            raise RuntimeError(f"circus {command}: {answer}")
        return answer

    def one(self) -> Any:
        return self.call("status", name="one")

    def all(self) -> Any:
        return self.call("status")

    def scale(self, job: str, n: int) -> Any:
        return self.call("start", name=job, waiting=False)

    def unscale(self, job: str, n: int) -> Any:
        return self.call("stop", name=job, waiting=True)

    def kill(self, job: str) -> Any:
        return self.call("signal", name=job, signum=9)

    def up(self) -> bool:
        self.one()
        return True


KINDS: dict[str, Callable[[str], Any]] = {
    "gaffer": Gaffer,
    "supervisord": Supervisord,
    "circus": Circus,
}


class Looper:
    """Calls one function back to back on a thread, timing each call."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.ms: list[float] = []
        self.error: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                t = time.perf_counter()
                self.fn()
                self.ms.append(1000 * (time.perf_counter() - t))
        except Exception as e:
            self.error = repr(e)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        if self.error:
            return {"error": self.error}
        return {"ms": self.ms}


def wait_up(client_factory: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = client_factory()
            if client.up():
                return client
        except Exception:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.02)


def answer(msg: dict[str, Any], state: dict[str, Any], factory: Callable[[], Any]) -> Any:
    op = msg.get("op")
    if op == "wait_up":
        state["client"] = wait_up(factory, float(msg.get("timeout", 60)))
        return {"ok": True}
    client = state.get("client") or factory()
    state["client"] = client
    if op == "time":
        fn = getattr(client, msg["call"])
        budget = float(msg.get("budget", 1e9))
        deadline = time.perf_counter() + budget / 4
        for _ in range(int(msg.get("warmup", 0))):
            fn()
            if time.perf_counter() > deadline:
                break
        ms: list[float] = []
        deadline = time.perf_counter() + budget
        while len(ms) < int(msg["n"]) and (len(ms) < 3 or time.perf_counter() < deadline):
            t = time.perf_counter()
            fn()
            ms.append(1000 * (time.perf_counter() - t))
        return {"ms": ms}
    if op == "scale":
        t = time.perf_counter()
        client.scale(msg["job"], int(msg["n"]))
        return {"ok": True, "ms": 1000 * (time.perf_counter() - t)}
    if op == "unscale":
        client.unscale(msg["job"], int(msg["n"]))
        return {"ok": True}
    if op == "kill":
        client.kill(msg["job"])
        return {"ok": True}
    if op == "loop_start":
        # A client of its own: the looping thread must not share a connection.
        state["looper"] = Looper(getattr(factory(), msg["call"]))
        return {"ok": True}
    if op == "loop_stop":
        return state.pop("looper").finish()
    return {"error": f"unknown op {op!r}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--daemon", required=True, choices=sorted(KINDS))
    ap.add_argument("--address", required=True, help="unix socket path or zmq endpoint")
    args = ap.parse_args()

    def factory() -> Any:
        return KINDS[args.daemon](args.address)

    state: dict[str, Any] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        if msg.get("op") == "quit":
            break
        try:
            reply = answer(msg, state, factory)
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
