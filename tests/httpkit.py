"""Real HTTP and websocket clients for the API tests, over TCP or the unix socket.

``api`` (a fixture in conftest) starts an :class:`HttpApp` on the test's manager
listening on a unix socket in tmp and on 127.0.0.1 (random port), keys required
over TCP, the key store in memory with cheap scrypt parameters.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import tornado.httpclient
import tornado.netutil
import tornado.websocket
from gaffer.http import HttpApp, HttpSettings
from gaffer.http.keystore import AuthStore
from gaffer.http.permissions import Permissions
from gaffer.manager import Manager

TIMEOUT = 10.0


class UnixResolver(tornado.netutil.Resolver):
    """Resolves every host to one unix socket (tornado's client speaks AF_UNIX)."""

    def initialize(self, path: str) -> None:  # type: ignore[override]
        self.path = path

    async def resolve(  # type: ignore[override]
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return [(socket.AF_UNIX, self.path)]


class Response:
    def __init__(self, r: tornado.httpclient.HTTPResponse) -> None:
        self.status = r.code
        self.headers = r.headers
        self.body = r.body or b""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:200]!r}>"


class Client:
    """One caller: over the unix socket (the local owner) or TCP (with ``key``)."""

    def __init__(self, app: HttpApp, key: str | None = None, tcp: bool = False) -> None:
        self.app = app
        self.key = key
        self.tcp = tcp or key is not None
        if self.tcp:
            host, port = next(a for a in app.addresses if isinstance(a, tuple))
            self.base = f"http://{host}:{port}"
            self.http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        else:
            path = next(a for a in app.addresses if isinstance(a, str))
            self.base = "http://gafferd"
            self.http = tornado.httpclient.AsyncHTTPClient(
                force_instance=True, resolver=UnixResolver(path=path)
            )

    def close(self) -> None:
        self.http.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> Response:
        hdrs = dict(headers or {})
        if self.key is not None:
            hdrs.setdefault("X-Api-Key", self.key)
        data: bytes | str | None = raw
        if body is not None:
            data = json.dumps(body)
        if data is None and method in ("POST", "PUT"):
            data = b""
        req = tornado.httpclient.HTTPRequest(
            self.base + path,
            method=method,
            body=data,
            headers=hdrs,
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        r = await self.http.fetch(req, raise_error=False)
        if r.code == 599:
            raise AssertionError(f"{method} {path}: {r.error}")
        return Response(r)

    def stream(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[Chunks, asyncio.Future[tornado.httpclient.HTTPResponse]]:
        """Start a streaming GET; chunks arrive in the returned :class:`Chunks`.
        The future resolves when the server ends the response."""
        hdrs = dict(headers or {})
        if self.key is not None:
            hdrs.setdefault("X-Api-Key", self.key)
        chunks = Chunks()
        req = tornado.httpclient.HTTPRequest(
            self.base + path,
            headers=hdrs,
            streaming_callback=chunks.add,
            header_callback=chunks.header,
            request_timeout=60,
        )
        fut = asyncio.ensure_future(self.http.fetch(req, raise_error=False))
        return chunks, fut

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Response:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)

    async def ws(self, path: str, headers: dict[str, str] | None = None) -> Channel:
        host, port = next(a for a in self.app.addresses if isinstance(a, tuple))
        hdrs = dict(headers or {})
        if self.key is not None and "X-Api-Key" not in hdrs:
            hdrs["X-Api-Key"] = self.key
        req = tornado.httpclient.HTTPRequest(f"ws://{host}:{port}{path}", headers=hdrs)
        conn = await asyncio.wait_for(tornado.websocket.websocket_connect(req), TIMEOUT)
        return Channel(conn)


class Chunks:
    """What a streaming response has delivered so far."""

    def __init__(self) -> None:
        self.data = b""
        self.headers: list[str] = []
        self._changed = asyncio.Event()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        self._changed.set()

    def header(self, line: str) -> None:
        self.headers.append(line)

    async def until(self, needle: bytes, timeout: float = TIMEOUT) -> bytes:
        """Wait until ``needle`` has arrived; returns everything so far."""

        async def wait() -> bytes:
            while needle not in self.data:
                self._changed.clear()
                await self._changed.wait()
            return self.data

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"never got {needle!r}; got {self.data[-500:]!r}") from None


class Channel:
    """A websocket client with helpers for the /channel protocol."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self._ids = 0

    async def send(self, msg: Any) -> None:
        await self.conn.write_message(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv_raw(self, timeout: float = TIMEOUT) -> str | bytes | None:
        return await asyncio.wait_for(self.conn.read_message(), timeout)

    async def recv(self, timeout: float = TIMEOUT) -> Any:
        msg = await self.recv_raw(timeout)
        if msg is None:
            raise EOFError("the server closed the channel")
        return json.loads(msg)

    async def until(self, pred: Any, timeout: float = TIMEOUT) -> Any:
        """The next message for which ``pred(msg)`` is true."""

        async def find() -> Any:
            while True:
                msg = await self.recv(timeout)
                if pred(msg):
                    return msg

        return await asyncio.wait_for(find(), timeout)

    async def sub(self, topic: str) -> Any:
        await self.send({"event": "SUB", "data": {"topic": topic}})
        return await self.until(lambda m: m["event"].startswith("gaffer:subscription"))

    async def cmd(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._ids += 1
        ident = f"cmd-{self._ids}"
        await self.send(
            {
                "event": "CMD",
                "data": {"identity": ident, "name": name, "args": list(args), "kwargs": kwargs},
            }
        )
        return await self.until(
            lambda m: m["event"].startswith("gaffer:command") and m["data"]["id"] == ident
        )

    def close(self) -> None:
        self.conn.close()


async def make_key(app: HttpApp, **perms: Any) -> str:
    """A new API key with these permissions (minted by the local owner)."""
    store = await app.auth_store()
    _, token = await store.create_key(Permissions.from_dict(perms), label="test")
    return token


def start_app(manager: Manager, tmp_path: Any, **settings: Any) -> HttpApp:
    """An HttpApp on ``manager``: a unix socket in ``tmp_path``, 127.0.0.1 on a
    random port (keys required), keys in memory unless ``state_dir`` is given."""
    kw: dict[str, Any] = {
        "unix_socket": str(tmp_path / "run" / "gafferd.sock"),
        "bind": ("127.0.0.1:0",),
        **settings,
    }
    cfg = HttpSettings(**kw)
    app = HttpApp(cfg, store=AuthStore(cfg.keys_db, scrypt_n=2**10))
    app.start(manager.loop, manager)
    manager.apps.append(app)
    return app
