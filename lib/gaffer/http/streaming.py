"""Long-lived HTTP responses: process output (``/streams/<pid>/<label>``) and
events as Server-Sent Events (``/events``).

A response that the client stops reading is cut off once more than
``client_buffer`` bytes wait to be sent: a slow client never grows the daemon's
memory without bound, and never holds up anyone else.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.iostream import StreamClosedError

from gaffer.errors import BadRequest, NotFound
from gaffer.events import Event
from gaffer.http import topics
from gaffer.http.base import BaseHandler, json_dumps

KEEPALIVE = 15.0
LONGPOLL_TIMEOUT = 30.0
MAX_LONGPOLL_TIMEOUT = 300.0


class StreamingHandler(BaseHandler):
    """Writes chunks as they come; ends when :meth:`end` is called or the
    client goes away."""

    def initialize(self, gaffer: Any) -> None:
        super().initialize(gaffer)
        self._pending = 0  # bytes queued and not yet sent
        self._unflushed = 0
        self._flush_scheduled = False
        self._done: asyncio.Future[None] | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self.cut_off = False

    def start_stream(self, content_type: str) -> asyncio.Future[None]:
        self.set_header("Content-Type", content_type)
        self.set_header("X-Accel-Buffering", "no")
        self._done = asyncio.get_running_loop().create_future()
        self.gaffer.streams.add(self)
        return self._done

    def send_chunk(self, data: str | bytes) -> None:
        """Queue a chunk; the chunks of one loop turn are flushed together."""
        if self._done is None or self._done.done():
            return
        raw = data.encode() if isinstance(data, str) else data
        self._pending += len(raw)
        self._unflushed += len(raw)
        if self._pending > self.gaffer.settings.client_buffer:
            # The client is not reading: drop it rather than buffer without end.
            self.cut_off = True
            self.gaffer.cut_off_clients += 1
            stream = getattr(self.request.connection, "stream", None)
            if stream is not None:
                stream.close()
            self.end()
            return
        self.write(raw)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        if self._finished or self.cut_off:
            return
        size, self._unflushed = self._unflushed, 0
        fut = self.flush()

        def flushed(f: asyncio.Future[None]) -> None:
            self._pending -= size
            if not f.cancelled() and isinstance(f.exception(), StreamClosedError):
                self.end()

        fut.add_done_callback(flushed)

    def revoke(self) -> None:
        """Its key was deleted: cut the stream."""
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.close()
        self.end()

    def keepalive(self, interval: float = KEEPALIVE) -> None:
        """Send an SSE comment every ``interval`` s so proxies keep the line open."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.send_chunk(": keepalive\n\n")
            self._keepalive = loop.call_later(interval, tick)

        self._keepalive = loop.call_later(interval, tick)

    def end(self) -> None:
        self.gaffer.streams.discard(self)
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def on_connection_close(self) -> None:
        self.end()

    def on_finish(self) -> None:
        self.end()


def sse(event: str, data: str, id_: int | None = None) -> str:
    head = f"id: {id_}\n" if id_ is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


class OutputHandler(StreamingHandler):
    """``GET /streams/<pid>/<label>?feed=continuous|longpoll|eventsource``.

    Offsets count bytes since the stream began; a replay comes from the last
    64 KiB the daemon keeps per stream. ``X-Gaffer-Offset`` (and the SSE event
    ids) tell a client where to resume.
    """

    async def get(self, pid: str, label: str) -> None:
        proc = self.process(pid, "read")
        tail = proc.tails.get(label)
        if tail is None:
            raise NotFound(
                f"stream: process {proc.pid} has no output stream {label!r} "
                f"(it has {', '.join(proc.tails) or 'none'})"
            )
        feed = self.get_query_argument("feed", "continuous")
        if feed not in ("continuous", "longpoll", "eventsource"):
            raise BadRequest(f"feed: expected continuous, longpoll or eventsource, got {feed!r}")
        offset = _int_arg(self, "offset", None)
        last_id = _number(self.request.headers.get("Last-Event-ID"))
        if last_id is not None and offset is None:
            offset = last_id
        replay = _int_arg(self, "replay", None)
        if offset is None:
            offset = tail.total - replay if replay is not None else tail.total - len(tail.get())
            if feed == "longpoll" and replay is None:
                offset = tail.total  # wait for what comes next
        offset = max(0, min(offset, tail.total))
        data, start = tail.since(offset)
        ended = proc.readers.get(label) is None or proc.readers[label].fd is None
        if feed == "longpoll":
            await self._longpoll(proc.pid, label, data, start, ended)
            return
        sub_topic = f"stream.{proc.pid}.{label}"
        content = "text/event-stream" if feed == "eventsource" else "application/octet-stream"
        done = self.start_stream(content)
        self.set_header("X-Gaffer-Offset", str(start))
        self.set_header("X-Gaffer-Start", str(start))
        position = start

        def emit(chunk: bytes) -> None:
            nonlocal position
            position += len(chunk)
            if feed == "eventsource":
                body = json_dumps({"data": chunk, "offset": position - len(chunk)})
                self.send_chunk(sse("output", body, position))
            else:
                self.send_chunk(chunk)

        def on_event(event: Event) -> None:
            if event.type == "output":
                emit(event.data["data"])
            elif event.type == "eof":
                if feed == "eventsource":
                    self.send_chunk(sse("eof", json_dumps({"offset": position})))
                self.end()

        emitter = self.manager.emitter
        emitter.subscribe(sub_topic, on_event)
        try:
            if data:
                emit(data)
            else:
                self.flush()  # send the headers now
            if ended:
                on_event(Event(0, 0.0, "eof", (sub_topic,), {}))
            elif feed == "eventsource":
                self.keepalive()
            await done
        finally:
            emitter.unsubscribe(sub_topic, on_event)
        if not self.cut_off and not self._finished:
            self.finish()

    async def _longpoll(self, pid: int, label: str, data: bytes, start: int, ended: bool) -> None:
        timeout = _float_arg(self, "timeout", LONGPOLL_TIMEOUT)
        if not data and not ended:
            sub_topic = f"stream.{pid}.{label}"
            got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            def on_event(event: Event) -> None:
                if not got.done():
                    got.set_result(event.data.get("data", b"") if event.type == "output" else b"")

            self.manager.emitter.subscribe(sub_topic, on_event)
            waiter = asyncio.ensure_future(self._closed_or(got))
            try:
                data = await asyncio.wait_for(waiter, min(timeout, MAX_LONGPOLL_TIMEOUT))
            except TimeoutError:
                data = b""
            finally:
                self.manager.emitter.unsubscribe(sub_topic, on_event)
        stream = getattr(self.request.connection, "stream", None)
        if stream is None or stream.closed():
            return
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("X-Gaffer-Offset", str(start + len(data)))
        self.set_header("X-Gaffer-Start", str(start))
        self.finish(data)

    async def _closed_or(self, fut: asyncio.Future[bytes]) -> bytes:
        closed = self.start_stream("application/octet-stream")
        await asyncio.wait([fut, closed], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        return fut.result() if fut.done() else b""


class EventsHandler(StreamingHandler):
    """``GET /events?topic=T[&topic=T2]``: events as Server-Sent Events. Each
    carries its sequence number as the SSE id; ``Last-Event-ID`` replays what
    was missed, or says (``event: gaffer:gap``) that some of it is gone."""

    async def get(self) -> None:
        raw_topics = self.get_query_arguments("topic") or ["EVENTS"]
        names = self.get_query_arguments("name")
        subs = [topics.parse(self.manager, t) for t in raw_topics]
        for t in subs:
            if t.kind == "STATS":
                raise BadRequest("topic: STATS is only available on the websocket channel")
            if t.job is not None:
                self.identity.require("read", t.job)
        ident = self.identity
        replay = self.gaffer.replay
        last = self.request.headers.get("Last-Event-ID") or self.get_query_argument(
            "last_event_id", ""
        )
        done = self.start_stream("text/event-stream")
        sent = 0

        def allowed(event: Event) -> bool:
            name = event.data.get("name")
            if names and not (
                isinstance(name, str) and any(name == n or name.startswith(n + ".") for n in names)
            ):
                return False
            return ident.can("read", name if isinstance(name, str) else None)

        def deliver(event: Event) -> None:
            nonlocal sent
            if event.seq <= sent or not allowed(event):
                return
            if not any(t.wants(event) and _matches(event, t.prefix) for t in subs):
                return
            sent = event.seq
            body = replay.encode(event, "sse", lambda e: e.to_dict())
            self.send_chunk(sse(event.type, body, event.seq))

        prefixes = {t.prefix for t in subs}
        for prefix in prefixes:
            self.manager.emitter.subscribe(prefix, deliver)
        try:
            last_seq = _number(last)
            if last_seq is not None:
                missed, lost = replay.since(last_seq)
                if lost:
                    gap = {"last_event_id": last_seq, "oldest": replay.horizon + 1}
                    self.send_chunk(sse("gaffer:gap", json.dumps(gap)))
                for event in missed:
                    deliver(event)
            else:
                self.send_chunk(": connected\n\n")
            self.keepalive()
            await done
        finally:
            for prefix in prefixes:
                self.manager.emitter.unsubscribe(prefix, deliver)
        if not self.cut_off and not self._finished:
            self.finish()


def _matches(event: Event, prefix: str) -> bool:
    if prefix == ".":
        return True
    return any(t == prefix or t.startswith(prefix + ".") for t in event.topics)


def _int_arg(handler: BaseHandler, name: str, default: int | None) -> int | None:
    value = handler.get_query_argument(name, None)
    if value is None:
        return default
    out = _number(value)
    if out is None:
        raise BadRequest(f"{name}: expected a non-negative integer, got {value[:40]!r}")
    return out


def _number(value: str | None) -> int | None:
    """A non-negative integer of at most 18 ASCII digits ('²' is a digit to
    isdigit(), and int() refuses numbers of thousands of digits)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


def _float_arg(handler: BaseHandler, name: str, default: float) -> float:
    value = handler.get_query_argument(name, None)
    if value is None:
        return default
    try:
        out = float(value)
    except ValueError:
        raise BadRequest(f"{name}: expected seconds, got {value!r}") from None
    if not 0 <= out <= MAX_LONGPOLL_TIMEOUT:
        raise BadRequest(f"{name}: must be between 0 and {MAX_LONGPOLL_TIMEOUT:g}")
    return out
