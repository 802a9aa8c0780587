"""The subscribers of workload 7 (``bench/compare.py``): ``--clients``
connections to one daemon's event stream, in one process run with the peers'
interpreter (circus's needs pyzmq), counting every event each receives.

- gaffer: ``GET /events?topic=EVENTS`` (Server-Sent Events: every event but
  output) on its unix socket, one connection per client; an event is counted
  per ``data:`` line start received (each SSE event has one);
- circus: a zmq SUB socket per client on its ``pubsub_endpoint``, subscribed
  to everything; an event is one multipart message.

All sockets are read by one ``selectors``/zmq poll loop. It prints
``{"ready": true}`` once every client is connected (gaffer: its response
headers are in); then, on ``{"op": "count"}`` on stdin, keeps reading until no
event has arrived for ``--quiet`` seconds and prints ``{"counts": [...],
"first": T, "last": T}`` (wall-clock times of the first and last event
received, ``time.time()``), and waits for the next ``count``; ``{"op":
"quit"}`` or the end of stdin ends it.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
from typing import Any

MARKER = b"\ndata:"


class GafferSSE:
    def __init__(self, path: str, clients: int) -> None:
        self.socks = []
        for _ in range(clients):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b"GET /events?topic=EVENTS HTTP/1.1\r\nHost: gafferd\r\n\r\n")
            self.socks.append(s)
        for s in self.socks:  # the headers, up to the blank line
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise RuntimeError("gaffer closed an event stream")
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"gaffer /events: {buf[:200]!r}")
            s.setblocking(False)
        self.tails = [b"\n"] * clients
        self.poller = select.poll()
        self.index = {s.fileno(): i for i, s in enumerate(self.socks)}
        for s in self.socks:
            self.poller.register(s.fileno(), select.POLLIN)

    def poll(self, timeout: float, counts: list[int]) -> bool:
        got = False
        for fd, _ in self.poller.poll(timeout * 1000):
            i = self.index[fd]
            try:
                data = self.socks[i].recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise RuntimeError("gaffer closed an event stream")
            text = self.tails[i] + data
            n = text.count(MARKER)
            counts[i] += n
            got = got or n > 0
            self.tails[i] = text[-(len(MARKER) - 1) :]
        return got


class CircusSub:
    def __init__(self, endpoint: str, clients: int) -> None:
        import zmq

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.socks = []
        self.poller = zmq.Poller()
        for _ in range(clients):
            s = self.ctx.socket(zmq.SUB)
            s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(endpoint)
            self.socks.append(s)
            self.poller.register(s, zmq.POLLIN)
        self.index = {s: i for i, s in enumerate(self.socks)}
        time.sleep(0.5)  # zmq subscriptions propagate asynchronously

    def poll(self, timeout: float, counts: list[int]) -> bool:
        got = False
        for s, _ in self.poller.poll(timeout * 1000):
            i = self.index[s]
            while True:
                try:
                    s.recv_multipart(self.zmq.NOBLOCK)
                except self.zmq.Again:
                    break
                counts[i] += 1
                got = True
        return got


def count(sub: Any, clients: int, quiet: float, limit: float) -> dict[str, Any]:
    counts = [0] * clients
    first = last = None
    deadline = time.time() + limit
    while time.time() < deadline:
        if sub.poll(0.05, counts):
            now = time.time()
            first = first or now
            last = now
        elif last is not None and time.time() - last > quiet:
            break
    return {"counts": counts, "first": first, "last": last}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--daemon", required=True, choices=["gaffer", "circus"])
    ap.add_argument("--address", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--quiet", type=float, default=2.0)
    ap.add_argument("--limit", type=float, default=120.0)
    args = ap.parse_args()
    sub: Any = (GafferSSE if args.daemon == "gaffer" else CircusSub)(args.address, args.clients)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if json.loads(line).get("op") != "count":
            break
        print(json.dumps(count(sub, args.clients, args.quiet, args.limit)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
