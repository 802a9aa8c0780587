"""The asyncio client: the blocking :class:`~gaffer.client.sync.Client`'s
methods, awaitable, on tornado's HTTP client.

A unix-socket target is reached through a resolver that answers every name
with the socket (tornado's TCP client then connects with ``AF_UNIX``). Output
and event streams run on a connection of their own, which closing drops: a
tornado ``fetch`` cannot be cancelled, and a stream must be closable while it
waits for data.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import AsyncIterator, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import tornado.netutil
import tornado.websocket
from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import IOStream, StreamClosedError
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient
from tornado.tcpclient import TCPClient

from gaffer.client import api
from gaffer.client.api import decode, refusal, sse_event, with_params
from gaffer.client.errors import ConnectionError, GafferClientError, NotFound
from gaffer.client.sync import Client
from gaffer.client.target import Target
from gaffer.client.wire import Response, SSEParser, os_reason

if TYPE_CHECKING:
    from gaffer.client import types
    from gaffer.client.channel import Channel, ProcessIO

R = TypeVar("R")

# A stream is read as long as the daemon writes it (an event stream never ends).
UNBOUNDED = 1 << 62


class UnixResolver(tornado.netutil.Resolver):
    """Every host name resolves to the daemon's unix socket."""

    def initialize(self, path: str) -> None:
        self.path = path

    async def resolve(
        self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[tuple[int, Any]]:
        return [(socket.AF_UNIX, self.path)]


class Transport:
    """How to reach one target with tornado: base URL, resolver, TLS, headers.
    Shared by the client, its streams and the channels."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._ssl: ssl.SSLContext | None = None
        self._resolver: tornado.netutil.Resolver | None = None

    def url(self, path: str, ws: bool = False) -> str:
        t = self.target
        if t.unix_path is not None:
            scheme, netloc = "http", "localhost"
        else:
            scheme = t.scheme
            netloc = f"[{t.host}]:{t.port}" if ":" in t.host else f"{t.host}:{t.port}"
        if ws:
            scheme = "wss" if scheme == "https" else "ws"
        return f"{scheme}://{netloc}{t.prefix}{path}"

    def resolver(self) -> tornado.netutil.Resolver | None:
        """A resolver to the unix socket; None (tornado's own) over TCP."""
        if self.target.unix_path is not None and self._resolver is None:
            self._resolver = UnixResolver(path=self.target.unix_path)
        return self._resolver

    def ssl_options(self) -> ssl.SSLContext | None:
        if not self.target.tls:
            return None
        if self._ssl is None:
            try:
                self._ssl = self.target.ssl_context()
            except (OSError, ValueError) as e:
                raise ConnectionError(f"TLS setup for {self.target.url} failed: {e}") from None
        return self._ssl

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        hdrs = dict(extra or {})
        if self.target.key:
            hdrs["X-Api-Key"] = self.target.key
        return hdrs

    @property
    def timeout(self) -> float:
        # tornado's "no limit" is 0
        return self.target.timeout or 0.0

    def unreachable(self, exc: BaseException) -> ConnectionError:
        """The ConnectionError that says why ``exc`` kept us from the daemon."""
        url = self.target.url
        if isinstance(exc, StreamClosedError) and exc.real_error is not None:
            exc = exc.real_error
        if isinstance(exc, HTTPTimeoutError | TimeoutError):
            return ConnectionError(f"gafferd at {url} did not answer in time")
        if isinstance(exc, StreamClosedError | HTTPClientError):
            return ConnectionError(f"gafferd at {url} closed the connection")
        if isinstance(exc, OSError):
            return ConnectionError(f"cannot reach gafferd at {url}: {os_reason(exc)}")
        return ConnectionError(f"cannot reach gafferd at {url}: {exc}")

    def close(self) -> None:
        if self._resolver is not None:
            self._resolver.close()
            self._resolver = None

    async def websocket(
        self, path: str, headers: Mapping[str, str] | None = None
    ) -> tornado.websocket.WebSocketClientConnection:
        """A websocket to ``path``; a refused handshake raises the typed error."""
        req = HTTPRequest(
            self.url(path, ws=True),
            headers=self.headers(headers),
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
            ssl_options=self.ssl_options(),
        )
        try:
            return await tornado.websocket.websocket_connect(
                req, resolver=self.resolver(), ping_interval=None
            )
        except HTTPClientError as e:
            if e.response is not None and e.code < 599:
                raise refusal(_response(e.response)) from None
            raise self.unreachable(e) from None
        except (OSError, StreamClosedError, tornado.websocket.WebSocketError) as e:
            raise self.unreachable(e) from None


def _response(r: Any) -> Response:
    headers = {name.lower(): value for name, value in r.headers.get_all()}
    return Response(r.code, headers, r.body or b"")


class AsyncClient(api.ClientBase):
    """An asyncio client of one gafferd, with the methods of
    :class:`~gaffer.client.sync.Client`::

        from gaffer.client import AsyncClient

        async with AsyncClient("/run/gaffer/gafferd.sock") as c:
            await c.scale("default.web", "=3")
            async with c.events(["EVENTS:job.default.web"]) as events:
                async for event in events:
                    print(event["event"], event.get("pid"))
    """

    def _setup(self) -> None:
        self.transport = Transport(self.target)
        # made on first use, so that the client may be built outside the loop
        self._http: SimpleAsyncHTTPClient | None = None
        self._streams: set[AsyncBodyStream] = set()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client and the streams it opened."""
        for stream in list(self._streams):
            stream.close()
        if self._http is not None:
            self._http.close()
            self._http = None
        self.transport.close()

    # -- plumbing -------------------------------------------------------------------

    def _client(self) -> SimpleAsyncHTTPClient:
        if self._http is None:
            self._http = SimpleAsyncHTTPClient(
                force_instance=True, resolver=self.transport.resolver()
            )
        return self._http

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        resp = await self.raw_request(method, path, body, raw=raw, headers=headers, params=params)
        return decode(resp)

    async def raw_request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        call: api.Call[Any] = api.Call(method, path, body, raw=raw, headers=headers, params=params)
        return await self._send(call)

    async def _send(self, call: api.Call[Any]) -> Response:
        t = self.transport
        data, headers = call.encode()
        req = HTTPRequest(
            t.url(call.uri),
            method=call.method,
            headers=t.headers(headers),
            body=data,
            connect_timeout=t.timeout,
            request_timeout=t.timeout,
            follow_redirects=False,
            decompress_response=False,
            allow_nonstandard_methods=True,
            ssl_options=t.ssl_options(),
        )
        try:
            r = await self._client().fetch(req, raise_error=False)
        except GafferClientError:
            raise
        except Exception as e:  # tornado raises what the socket raised, and its own
            raise t.unreachable(e) from None
        resp = _response(r)
        if resp.status >= 400:
            raise refusal(resp)
        return resp

    async def _call(self, call: api.Call[R]) -> R:
        return call.result(await self._send(call))

    async def _exists(self, call: api.Call[bool]) -> bool:
        try:
            return await self._call(call)
        except NotFound:
            return False

    def stream(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> AsyncBodyStream:
        """A long-lived GET: the body's chunks as they arrive, on a connection
        of its own. It connects when awaited, entered (``async with``) or
        first iterated; a refusal is raised then."""
        return AsyncBodyStream(self, with_params(path, params), headers, timeout)

    # -- the daemon -----------------------------------------------------------------

    async def welcome(self) -> dict[str, Any]:
        return await self._call(api.welcome())

    async def ping(self) -> bool:
        return await self._call(api.ping())

    async def version(self) -> str:
        return await self._call(api.version())

    async def openapi(self) -> dict[str, Any]:
        return await self._call(api.openapi())

    async def metrics(self) -> str:
        return await self._call(api.metrics())

    async def reload_config(self) -> types.ReloadResult:
        return await self._call(api.reload_config())

    async def last_reload(self) -> types.ReloadResult:
        return await self._call(api.last_reload())

    async def reopen_logs(self) -> None:
        return await self._call(api.reopen_logs())

    async def reexec(self) -> None:
        return await self._call(api.reexec())

    # -- sessions and jobs ----------------------------------------------------------

    async def sessions(self) -> list[str]:
        return await self._call(api.sessions())

    async def jobs(self, session: str | None = None, tags: Iterable[str] = ()) -> list[str]:
        return await self._call(api.jobs(session, tags))

    async def status(
        self, names: Iterable[str] = (), stats: bool = True, tags: Iterable[str] = ()
    ) -> list[types.JobStatus]:
        return await self._call(api.status(names, stats, tags))

    async def job_exists(self, name: str) -> bool:
        return await self._exists(api.job_exists(name))

    async def job_info(self, name: str) -> types.JobInfo:
        return await self._call(api.job_info(name))

    async def load(
        self, config: Mapping[str, Any], session: str = "default", start: bool = True
    ) -> None:
        return await self._call(api.load(config, session, start))

    async def update(self, name: str, config: Mapping[str, Any], start: bool = True) -> None:
        return await self._call(api.update(name, config, start))

    async def unload(self, name: str) -> None:
        return await self._call(api.unload(name))

    async def job_stats(self, name: str) -> types.JobStats:
        return await self._call(api.job_stats(name))

    async def numprocesses(self, name: str) -> int:
        return await self._call(api.numprocesses(name))

    async def scale(self, name: str, n: int | str) -> int:
        return await self._call(api.scale(name, n))

    async def job_pids(self, name: str) -> list[int]:
        return await self._call(api.job_pids(name))

    async def is_active(self, name: str) -> bool:
        return await self._call(api.is_active(name))

    async def start_job(self, name: str) -> None:
        return await self._call(api.set_state(name, b"1"))

    async def stop_job(self, name: str, wait: bool = False) -> None:
        return await self._call(api.set_state(name, b"0", wait))

    async def restart_job(self, name: str, wait: bool = False) -> None:
        return await self._call(api.set_state(name, b"2", wait))

    async def signal_job(self, name: str, signal: int | str) -> None:
        return await self._call(api.signal_job(name, signal))

    async def commit(
        self,
        name: str,
        graceful_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] | None = None,
    ) -> int:
        """Run a one-off process with the job's config (``args`` replace its
        args); returns its pid."""
        return await self._call(api.commit(name, graceful_timeout, env, args))

    # -- run records (gafferd) ----------------------------------------------------

    async def runs(
        self,
        job: str | None = None,
        once: bool | None = None,
        reason: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        return await self._call(api.runs(job, once, reason, since, limit))

    async def run(self, rid: int) -> dict[str, Any]:
        return await self._call(api.run(rid))

    async def cancel_run(self, rid: int) -> dict[str, Any]:
        return await self._call(api.cancel_run(rid))

    # -- processes ------------------------------------------------------------------

    async def pids(self) -> list[int]:
        return await self._call(api.pids())

    async def process_exists(self, pid: int) -> bool:
        return await self._exists(api.process_exists(pid))

    async def process_info(self, pid: int) -> types.ProcessInfo:
        return await self._call(api.process_info(pid))

    async def process_stats(self, pid: int) -> types.ProcessStats:
        return await self._call(api.process_stats(pid))

    async def stop_process(self, pid: int) -> None:
        return await self._call(api.stop_process(pid))

    async def signal_process(self, pid: int, signal: int | str) -> None:
        return await self._call(api.signal_process(pid, signal))

    async def send(self, pid: int, data: bytes | str, stream: str | None = None) -> None:
        async with await self.channel_io(pid, stream, mode=2) as io:
            await io.write(data)

    async def channel_io(self, pid: int, stream: str | None = None, mode: int = 3) -> ProcessIO:
        """The process's IO channel (``/<pid>/channel``): ``mode`` 1 reads
        its output, 2 writes to it, 3 both."""
        from gaffer.client.channel import ProcessIO

        return await ProcessIO.open(self.target, pid, stream, mode)

    # -- output and events ----------------------------------------------------------

    def output(
        self,
        pid: int,
        label: str = "stdout",
        *,
        offset: int | None = None,
        replay: int | None = None,
    ) -> AsyncBodyStream:
        """:meth:`Client.output <gaffer.client.sync.Client.output>` as an
        async iterator of bytes; ``async with`` connects it and closes it."""
        call = api.output(pid, label, offset, replay)
        return self.stream(call.path, call.params)

    async def tail(
        self, pid: int, label: str = "stdout", replay: int | None = None
    ) -> tuple[int, bytes]:
        return await self._call(api.tail(pid, label, replay))

    def events(
        self,
        topics: Iterable[str] = ("EVENTS",),
        *,
        names: Iterable[str] = (),
        last_event_id: int | None = None,
        timeout: float | None = None,
    ) -> AsyncEventStream:
        """:meth:`Client.events <gaffer.client.sync.Client.events>` as an
        async iterator; subscribed once awaited or entered (``async with``)."""
        call = api.events(topics, names, last_event_id)
        return AsyncEventStream(self.stream(call.path, call.params, timeout=timeout))

    async def channel(self) -> Channel:
        """The pub/sub and command channel (``/channel``)::

        async with await client.channel() as ch:
            await ch.subscribe("EVENTS:job.default.web")
            print(await ch.command("scale", "default.web", "+1"))
            async for event in ch.events():
                ...
        """
        from gaffer.client.channel import Channel

        return await Channel.open(self.target)

    # -- keys and users -------------------------------------------------------------

    async def login(self, username: str, password: str) -> str:
        return await self._call(api.login(username, password))

    async def keys(self) -> list[types.KeyInfo]:
        return await self._call(api.keys())

    async def key_info(self, key: str, include_keys: bool = False) -> types.KeyInfo:
        return await self._call(api.key_info(key, include_keys))

    async def create_key(
        self,
        permissions: types.Permissions | Mapping[str, Any],
        label: str = "",
        parent: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(api.create_key(permissions, label, parent))

    async def delete_key(self, key: str) -> int:
        return await self._call(api.delete_key(key))

    async def users(self) -> list[types.UserInfo]:
        return await self._call(api.users())

    async def user_info(self, username: str) -> types.UserInfo:
        return await self._call(api.user_info(username))

    async def create_user(
        self,
        username: str,
        password: str,
        *,
        user_type: int = 1,
        permissions: Mapping[str, Any] | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> types.UserInfo:
        call = api.create_user(username, password, user_type, permissions, key, extra)
        return await self._call(call)

    async def update_user(self, username: str, **fields: Any) -> types.UserInfo:
        return await self._call(api.update_user(username, fields))

    async def delete_user(self, username: str) -> None:
        return await self._call(api.delete_user(username))

    async def set_password(self, username: str, password: str) -> None:
        return await self._call(api.set_password(username, password))

    async def set_user_key(self, username: str, key: str) -> None:
        return await self._call(api.set_user_key(username, key))


# A method that does what the blocking client's does is documented there, once.
for _name, _method in vars(AsyncClient).items():
    if callable(_method) and _method.__doc__ is None and not _name.startswith("_"):
        _method.__doc__ = getattr(Client, _name, None).__doc__


_END = object()


class _Reader(httputil.HTTPMessageDelegate):
    """Hands an answer's head and body chunks to an :class:`AsyncBodyStream`."""

    def __init__(self, head: asyncio.Future[None], queue: asyncio.Queue[Any]) -> None:
        self.head = head
        self.queue = queue
        self.status = 0
        self.headers: dict[str, str] = {}
        self.done = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> None:
        assert isinstance(start_line, httputil.ResponseStartLine)
        if 100 <= start_line.code < 200:
            return
        self.status = start_line.code
        self.headers = {name.lower(): value for name, value in headers.get_all()}
        if not self.head.done():
            self.head.set_result(None)

    def data_received(self, chunk: bytes) -> None:
        self.queue.put_nowait(chunk)

    def finish(self) -> None:
        self.done = True
        self.queue.put_nowait(_END)

    def on_connection_close(self) -> None:
        if not self.done:
            self.done = True
            self.queue.put_nowait(ConnectionError("the daemon closed the connection mid-answer"))


class AsyncBodyStream:
    """The chunks of a long answer as they arrive: an async iterator of bytes.
    ``settimeout`` bounds the wait for the next chunk (a
    :class:`ConnectionError` when it passes); ``close()`` drops the connection."""

    def __init__(
        self,
        client: AsyncClient,
        path: str,
        headers: Mapping[str, str] | None,
        timeout: float | None,
    ) -> None:
        self._client = client
        self._path = path
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._iostream: IOStream | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._opening: asyncio.Future[None] | None = None
        self._closed = False
        self.status = 0
        self.headers: dict[str, str] = {}

    async def open(self) -> AsyncBodyStream:
        """Connect and read the answer's head; a refusal raises its typed error."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        await asyncio.shield(self._opening)
        return self

    async def _open(self) -> None:
        if self._closed:
            raise ConnectionError("the stream is closed")
        t = self._client.transport
        target = t.target
        queue: asyncio.Queue[Any] = asyncio.Queue()
        head = asyncio.get_running_loop().create_future()
        reader = _Reader(head, queue)
        try:
            tcp = TCPClient(resolver=t.resolver())
            connecting = tcp.connect(
                target.host, target.port, ssl_options=t.ssl_options(), timeout=t.timeout or None
            )
            self._iostream = stream = await connecting
            self._client._streams.add(self)
            conn = HTTP1Connection(
                stream,
                True,
                HTTP1ConnectionParameters(
                    no_keep_alive=True, max_body_size=UNBOUNDED, decompress=False
                ),
            )
            hdrs = httputil.HTTPHeaders(t.headers(self._headers))
            hdrs["Host"] = target.host_header
            start = httputil.RequestStartLine("GET", target.prefix + self._path, "HTTP/1.1")
            conn.write_headers(start, hdrs)
            conn.finish()
            reading = asyncio.ensure_future(conn.read_response(reader))
            reading.add_done_callback(lambda f: self._read_done(f, head, queue))
            await asyncio.wait_for(asyncio.shield(head), t.timeout or None)
        except GafferClientError:
            self.close()
            raise
        except Exception as e:  # tornado raises what the socket raised, and its own
            self.close()
            raise t.unreachable(e) from None
        self.status, self.headers = reader.status, reader.headers
        self._queue = queue
        if self.status >= 400:
            body = b""
            while isinstance(item := await queue.get(), bytes):
                body += item
            self.close()
            raise refusal(Response(self.status, self.headers, body))

    def _read_done(self, f: asyncio.Future[bool], head: asyncio.Future[None], q: Any) -> None:
        exc = None if f.cancelled() else f.exception()
        if not head.done():
            head.set_exception(exc or StreamClosedError())
        elif exc is not None and not self._closed:
            q.put_nowait(ConnectionError(f"connection to {self._client.target.url} lost"))
        q.put_nowait(_END)

    def __await__(self) -> Generator[Any, None, AsyncBodyStream]:
        return self.open().__await__()

    async def __aenter__(self) -> AsyncBodyStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncBodyStream:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        await self.open()
        assert self._queue is not None
        try:
            item = await asyncio.wait_for(self._queue.get(), self._timeout)
        except TimeoutError:
            self.close()
            url = self._client.target.url
            raise ConnectionError(f"gafferd at {url} did not answer in time") from None
        if isinstance(item, bytes):
            return item
        ours = self._closed  # closed here while the read waited: a plain end
        self.close()
        if isinstance(item, BaseException) and not ours:
            raise item
        raise StopAsyncIteration

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def close(self) -> None:
        self._closed = True
        self._client._streams.discard(self)
        if self._iostream is not None:
            self._iostream.close()
            self._iostream = None

    async def aclose(self) -> None:
        self.close()


class AsyncEventStream:
    """The events of an ``/events`` answer, decoded, as they arrive."""

    def __init__(self, body: AsyncBodyStream) -> None:
        self.body = body
        self._sse = SSEParser()
        self._ready: collections.deque[tuple[str, str, str | None]] = collections.deque()

    async def open(self) -> AsyncEventStream:
        """Subscribe (connect and read the answer's head)."""
        await self.body.open()
        return self

    def __await__(self) -> Generator[Any, None, AsyncEventStream]:
        return self.open().__await__()

    async def __aenter__(self) -> AsyncEventStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[types.Event]:
        return self

    async def __anext__(self) -> types.Event:
        while not self._ready:
            self._ready.extend(self._sse.feed(await self.body.__anext__()))
        return sse_event(*self._ready.popleft())

    def settimeout(self, timeout: float | None) -> None:
        self.body.settimeout(timeout)

    def close(self) -> None:
        self.body.close()

    async def aclose(self) -> None:
        self.close()
