"""gafferd's websockets from the client side: the pub/sub and command
channel (``/channel``, :class:`Channel`) and a process's IO
(``/<pid>/channel[/<stream>]``, :class:`ProcessIO`).

Both are asyncio objects; ``open_sync`` gives a blocking one that drives the
asyncio one on a private event loop in a thread of its own, so that replies and
events are read, and heartbeats sent, while the caller does something else.

The API key goes in the handshake's ``X-Api-Key`` header, so a bad key is
refused at once with the daemon's reason. ``/channel`` is also sent 0.5's
``AUTH:<key>`` first frame (a daemon that got the header ignores it; one
behind a proxy that dropped the header needs it). The IO channel is not: once
a header has authenticated it, every frame is written to the process.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import tornado.websocket

from gaffer.client.aio import Transport
from gaffer.client.api import quote
from gaffer.client.errors import BadRequest, ConnectionError, from_payload
from gaffer.client.target import Target

if TYPE_CHECKING:
    from typing import Self

    from gaffer.client.types import Event

T = TypeVar("T")


class _Closable(Protocol):
    async def close(self) -> None: ...


A = TypeVar("A", bound=_Closable)

HEARTBEAT = 15.0  # seconds between NOP frames on an open /channel


def _closed_error(target: Target, ws: tornado.websocket.WebSocketClientConnection) -> Exception:
    why = f": {ws.close_reason}" if ws.close_reason else ""
    return ConnectionError(f"gafferd at {target.url} closed the channel{why}")


class Channel:
    """The ``/channel`` websocket: subscriptions, events and commands::

        async with await Channel.open(target) as ch:
            await ch.subscribe("EVENTS:job.default.web")
            await ch.command("scale", "default.web", "+1")
            async for event in ch.events(timeout=10):
                print(event["event"], event.get("pid"))

    Command results are the daemon's JSON; a refused command raises the typed
    error (:class:`~gaffer.client.errors.NotFound`, ...) with its reason.
    """

    def __init__(self, target: Target, heartbeat: float = HEARTBEAT) -> None:
        self.target = target
        self.heartbeat = heartbeat
        self.transport = Transport(target)
        self.topics: set[str] = set()
        self._ws: tornado.websocket.WebSocketClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._commands: dict[str, asyncio.Future[Any]] = {}
        self._subs: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._error: Exception | None = None  # why the channel ended, if it did
        self._closing = False

    @classmethod
    async def open(cls, target: Target) -> Channel:
        ch = cls(target)
        await ch.connect()
        return ch

    @classmethod
    def open_sync(cls, target: Target) -> SyncChannel:
        """A blocking channel (what :meth:`gaffer.client.Client.channel` returns)."""
        return SyncChannel.start(lambda: cls.open(target), target.timeout)

    async def connect(self) -> None:
        self._ws = ws = await self.transport.websocket("/channel")
        if self.target.key:
            await ws.write_message(f"AUTH:{self.target.key}")
        self._tasks = [
            asyncio.ensure_future(self._read(ws)),
            asyncio.ensure_future(self._beat(ws)),
        ]

    async def __aenter__(self) -> Channel:
        if self._ws is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests -------------------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        """Receive the events of ``topic`` (``EVENTS``, ``EVENTS:<prefix>``,
        ``JOB:<s.j>``, ``PROCESS:<pid>``, ``STATS:<pid|s.j>``,
        ``STREAM:<pid>[.<label>]``); returns once the daemon has subscribed."""
        await self._sub("SUB", topic)
        self.topics.add(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self._sub("UNSUB", topic)
        self.topics.discard(topic)

    async def _sub(self, kind: str, topic: str) -> None:
        if not isinstance(topic, str) or not topic:
            raise BadRequest(f"topic: expected a topic name, got {topic!r}")
        fut = asyncio.get_running_loop().create_future()
        waiting = self._subs.setdefault(topic, collections.deque())
        waiting.append(fut)
        try:
            await self._send({"event": kind, "data": {"topic": topic}})
            await fut
        finally:
            if fut in waiting:
                waiting.remove(fut)
            _settle(fut)

    async def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run command ``name`` (``sessions``, ``jobs``, ``pids``, ``load``,
        ``scale``, ``info``, ``kill``...) and return its result."""
        ident = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self._commands[ident] = fut
        msg = {"identity": ident, "name": name, "args": list(args), "kwargs": kwargs}
        try:
            await self._send({"event": "CMD", "data": msg})
            return await fut
        finally:
            self._commands.pop(ident, None)
            _settle(fut)

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event of the subscribed topics (the ``data`` of a
        ``gaffer:event``); None once the channel was closed. ``TimeoutError``
        when none comes within ``timeout``; the daemon closing the channel
        raises :class:`~gaffer.client.errors.ConnectionError`."""
        item = await asyncio.wait_for(self._events.get(), timeout)
        if isinstance(item, dict):
            return item  # type: ignore[return-value]
        self._events.put_nowait(item)  # the end, for every reader
        if self._error is not None and not self._closing:
            raise self._error
        return None

    async def events(self, timeout: float | None = None) -> AsyncIterator[Event]:
        """The events as they arrive, until the channel is closed; ``timeout``
        bounds the wait for each (``TimeoutError``)."""
        while (event := await self.next_event(timeout)) is not None:
            yield event

    async def close(self) -> None:
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            # the reader ends when the daemon has answered the close
            await asyncio.wait(self._tasks[:1], timeout=5)
            for task in self._tasks:
                task.cancel()
        self.transport.close()

    # -- the connection ----------------------------------------------------------------

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._error is not None:
            raise self._error
        if self._ws is None:
            raise ConnectionError("the channel is closed")
        try:
            await self._ws.write_message(json.dumps(msg))
        except tornado.websocket.WebSocketClosedError:
            # the daemon's last words (why it closed) may still wait to be read
            await asyncio.wait(self._tasks[:1], timeout=5)
            raise self._error or ConnectionError("the channel is closed") from None

    async def _beat(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await ws.write_message('{"event": "NOP"}')
            except tornado.websocket.WebSocketClosedError:
                return

    async def _read(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        try:
            while (raw := await ws.read_message()) is not None:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    self._dispatch(msg)
        finally:
            if self._error is None:
                self._error = (
                    ConnectionError("the channel is closed")
                    if self._closing
                    else _closed_error(self.target, ws)
                )
            self._fail(self._error)
            self._events.put_nowait(None)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("event")
        data = msg.get("data")
        data = data if isinstance(data, dict) else {}
        if kind == "gaffer:event":
            self._events.put_nowait(data)
        elif kind in ("gaffer:command_success", "gaffer:command_error"):
            fut = self._commands.get(str(data.get("id")))
            if fut is None or fut.done():
                return
            if kind == "gaffer:command_success":
                fut.set_result(data.get("result"))
            else:
                fut.set_exception(from_payload(data, 500))
        elif kind in ("gaffer:subscription_success", "gaffer:subscription_error"):
            topic = msg.get("topic", data.get("topic"))
            waiting = self._subs.get(topic) if isinstance(topic, str) else None
            while waiting:
                fut = waiting.popleft()
                if not fut.done():
                    if kind == "gaffer:subscription_success":
                        fut.set_result(None)
                    else:
                        fut.set_exception(from_payload(data, 500))
                    break
        elif kind == "gaffer:error":
            # Authentication refused (the daemon closes the channel), or a
            # frame it did not understand: nothing pending can be trusted.
            self._error = from_payload(data, 500)
            self._fail(self._error)
            if self._ws is not None:
                self._ws.close()

    def _fail(self, error: Exception) -> None:
        for fut in self._commands.values():
            if not fut.done():
                fut.set_exception(error)
        for waiting in self._subs.values():
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(error)


def _settle(fut: asyncio.Future[Any]) -> None:
    """A reply nobody waits for any more (the request failed before it, or
    was cancelled): not an error to report at exit."""
    if fut.done() and not fut.cancelled():
        fut.exception()
    else:
        fut.cancel()


class ProcessIO:
    """A process's IO channel (``/<pid>/channel[/<stream>]``): ``write``
    sends to its stdin (or the custom ``stream``) and returns once the daemon
    has written it; ``read`` (or ``async for``) gives its output as text.
    ``mode`` 1 only reads, 2 only writes, 3 (the default) both::

        async with await ProcessIO.open(target, pid) as io:
            await io.write("hello\\n")
            print(await io.read(timeout=5))
    """

    def __init__(self, target: Target, pid: int, stream: str | None = None, mode: int = 3) -> None:
        if mode not in (1, 2, 3):
            raise BadRequest(f"mode: expected 1 (read), 2 (write) or 3 (both), got {mode!r}")
        self.target = target
        self.pid = int(pid)
        self.stream = stream
        self.mode = mode
        self.transport = Transport(target)
        self._ws: tornado.websocket.WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = 0
        self._writes: dict[str, asyncio.Future[None]] = {}
        self._output: asyncio.Queue[str | None] = asyncio.Queue()
        self._error: Exception | None = None
        self._closing = False

    @classmethod
    async def open(
        cls, target: Target, pid: int, stream: str | None = None, mode: int = 3
    ) -> ProcessIO:
        io = cls(target, pid, stream, mode)
        await io.connect()
        return io

    @classmethod
    def open_sync(
        cls, target: Target, pid: int, stream: str | None = None, mode: int = 3
    ) -> SyncProcessIO:
        """A blocking IO channel (what :meth:`gaffer.client.Client.channel_io` returns)."""
        return SyncProcessIO.start(lambda: cls.open(target, pid, stream, mode), target.timeout)

    async def connect(self) -> None:
        path = f"/{self.pid}/channel"
        if self.stream is not None:
            path += f"/{quote(self.stream, safe='')}"
        self._ws = ws = await self.transport.websocket(f"{path}?mode={self.mode}")
        self._reader = asyncio.ensure_future(self._read(ws))

    async def __aenter__(self) -> ProcessIO:
        if self._ws is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, data: bytes | str) -> None:
        """Write ``data`` (text: the channel carries UTF-8) to the process."""
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise BadRequest("data: not UTF-8 text (the IO channel carries text)") from None
        if self._error is not None:
            raise self._error
        if self._ws is None:
            raise ConnectionError("the IO channel is closed")
        self._ids += 1
        msgid = str(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._writes[msgid] = fut
        try:
            try:
                await self._ws.write_message(f"V1 message {msgid}\0{data}")
            except tornado.websocket.WebSocketClosedError:
                # the daemon's last words (why it closed) may still wait to be read
                if self._reader is not None:
                    await asyncio.wait([self._reader], timeout=5)
                raise self._error or ConnectionError("the IO channel is closed") from None
            await fut
        finally:
            self._writes.pop(msgid, None)
            _settle(fut)

    async def read(self, timeout: float | None = None) -> str | None:
        """The next piece of the process's output; None once the channel is
        closed; ``TimeoutError`` when nothing comes within ``timeout``."""
        item = await asyncio.wait_for(self._output.get(), timeout)
        if item is None:
            self._output.put_nowait(None)
            if self._error is not None and not self._closing:
                raise self._error
        return item

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        while (text := await self.read()) is not None:
            yield text

    async def close(self) -> None:
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
            self._reader.cancel()
        self.transport.close()

    async def _read(self, ws: tornado.websocket.WebSocketClientConnection) -> None:
        try:
            while (raw := await ws.read_message()) is not None:
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                head, sep, body = text.partition("\0")
                parts = head.split(" ")
                if not sep or len(parts) != 3 or parts[0] != "V1":
                    continue
                kind, msgid = parts[1], parts[2]
                if kind == "message":
                    self._output.put_nowait(body)
                elif kind == "response":
                    fut = self._writes.get(msgid)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                elif kind == "error":
                    self._on_error(msgid, body)
        finally:
            if self._error is None:
                self._error = (
                    ConnectionError("the IO channel is closed")
                    if self._closing
                    else _closed_error(self.target, ws)
                )
            for fut in self._writes.values():
                if not fut.done():
                    fut.set_exception(self._error)
            self._output.put_nowait(None)

    def _on_error(self, msgid: str, body: str) -> None:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body
        error = from_payload(payload, 500)
        fut = self._writes.get(msgid)
        if fut is not None and not fut.done():
            fut.set_exception(error)
        elif msgid == "0" and self._error is None:
            # the channel could not start (no such process or stream, not
            # allowed): the daemon closes it; everything after fails with this
            self._error = error


# -- blocking wrappers ----------------------------------------------------------------


class LoopThread:
    """A private event loop running in a daemon thread, for the blocking
    wrappers: the caller's thread blocks on one result at a time while the loop
    keeps reading the websocket."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="gaffer-client-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result; a ``timeout``
        that passes is a ConnectionError (the daemon did not answer)."""

        async def bounded() -> T:
            try:
                return await asyncio.wait_for(coro, timeout)
            except TimeoutError:
                raise ConnectionError("gafferd did not answer in time") from None

        if self.loop.is_closed():
            coro.close()
            raise ConnectionError("the channel is closed")
        future = asyncio.run_coroutine_threadsafe(bounded() if timeout else coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()


class _Blocking(Generic[A]):
    """A blocking wrapper of an asyncio channel, driven on a
    :class:`LoopThread` of its own; closing it closes the channel and stops
    the loop."""

    def __init__(self, inner: A, runner: LoopThread) -> None:
        self._inner = inner
        self._runner = runner

    @classmethod
    def start(cls, opening: Callable[[], Coroutine[Any, Any, A]], timeout: float | None) -> Self:
        """Open the channel (``opening()``, on a new loop) and wrap it."""
        runner = LoopThread()
        try:
            inner = runner.run(opening(), timeout)
        except BaseException:
            runner.stop()
            raise
        return cls(inner, runner)

    def close(self) -> None:
        try:
            if not self._runner.loop.is_closed():
                self._runner.run(self._inner.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncChannel(_Blocking[Channel]):
    """A blocking :class:`Channel`: the same methods, returning when done;
    ``events()`` is a plain iterator. Replies wait at most the target's
    timeout (ConnectionError)."""

    @property
    def channel(self) -> Channel:
        return self._inner

    @property
    def topics(self) -> set[str]:
        return set(self.channel.topics)

    def subscribe(self, topic: str) -> None:
        self._runner.run(self.channel.subscribe(topic), self.channel.target.timeout)

    def unsubscribe(self, topic: str) -> None:
        self._runner.run(self.channel.unsubscribe(topic), self.channel.target.timeout)

    def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        coro = self.channel.command(name, *args, **kwargs)
        return self._runner.run(coro, self.channel.target.timeout)

    def next_event(self, timeout: float | None = None) -> Event | None:
        return self._runner.run(self.channel.next_event(timeout))

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """The events as they arrive, until the channel is closed; ``timeout``
        bounds the wait for each (``TimeoutError``)."""
        while (event := self.next_event(timeout)) is not None:
            yield event


class SyncProcessIO(_Blocking[ProcessIO]):
    """A blocking :class:`ProcessIO`: ``write``, ``read`` and iteration."""

    @property
    def io(self) -> ProcessIO:
        return self._inner

    @property
    def pid(self) -> int:
        return self.io.pid

    def write(self, data: bytes | str) -> None:
        self._runner.run(self.io.write(data), self.io.target.timeout)

    def read(self, timeout: float | None = None) -> str | None:
        return self._runner.run(self.io.read(timeout))

    def __iter__(self) -> Iterator[str]:
        while (text := self.read()) is not None:
            yield text
