"""The websocket channel (``/channel``): 0.5's JSON pub/sub and command protocol.

Client frames: ``{"event": "NOP"}``, ``{"event": "SUB"|"UNSUB", "data":
{"topic": T}}``, ``{"event": "CMD", "data": {"identity", "name", "args",
"kwargs"}}``; when a key is required and was not sent as an ``X-Api-Key``
header, the first frame must be ``AUTH:<key>``. Nothing runs before that, and
a command the key does not allow is refused without running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import tornado.websocket
from tornado.iostream import StreamClosedError

from gaffer.errors import BadRequest, Forbidden, GafferError, Unauthorized
from gaffer.events import Event
from gaffer.http import commands, topics
from gaffer.http.base import API_KEY_HEADER, Identity, identify, json_dumps

if TYPE_CHECKING:
    from gaffer.http.app import HttpApp

log = logging.getLogger("gaffer.http.channel")

AUTH_DEADLINE = 10.0  # seconds a connection may wait before its AUTH: frame
MAX_SUBSCRIPTIONS = 1024  # per connection
MAX_TOPIC = 512  # characters


class BoundedWebSocket(tornado.websocket.WebSocketHandler):
    """A websocket whose unsent output is bounded: a client that stops reading
    is disconnected once ``client_buffer`` bytes wait for it."""

    identity: Identity | None = None

    def initialize(self, gaffer: HttpApp) -> None:
        self.gaffer = gaffer
        self._pending = 0  # bytes written to the stream and not yet sent
        self._outbox: list[bytes] = []  # frames of this loop turn, not yet written
        self._outbox_bytes = 0
        self._flush_scheduled = False
        self.cut_off = False

    async def identify_caller(self) -> None:
        """Who connects (header key or unix-socket owner); None when a key is
        needed and was not sent: it must then come as the first frame. A bad
        key refuses the handshake."""
        stream = getattr(self.request.connection, "stream", None)
        try:
            self.identity = await identify(
                self.gaffer,
                getattr(stream, "socket", None),
                self.request.headers.get(API_KEY_HEADER),
            )
        except Unauthorized:
            self.identity = None

    def options(self, *args: str) -> None:
        self.set_header("Allow", "GET, OPTIONS")
        self.set_status(204)
        self.finish()

    def check_origin(self, origin: str) -> bool:
        if origin in self.gaffer.settings.cors_origins:
            return True
        return urlparse(origin).netloc == self.request.host

    def _handle_request_exception(self, e: BaseException) -> None:
        # A handshake refused in prepare() (unknown key, bad parameter) is answered
        # in the API's error shape, not as a 500.
        if isinstance(e, GafferError) and not self._finished:
            self.clear()
            self.set_status(e.errno)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json_dumps(e.to_dict()))
            return
        super()._handle_request_exception(e)

    def send(self, text: str | bytes, binary: bool = False) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.send_frame(ws_frame(data, OP_BINARY if binary else OP_TEXT))

    def send_frame(self, frame: bytes) -> None:
        """Queue one ready-made frame. Frames queued during one loop turn go out
        in one write: an event burst costs a syscall per client, not per event."""
        conn = self.ws_connection
        if conn is None or conn.is_closing() or self.cut_off:
            return
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if self._pending + self._outbox_bytes > self.gaffer.settings.client_buffer:
            self._cut_off()
            return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def auth_deadline(self) -> None:
        """A connection that has not authenticated within AUTH_DEADLINE is closed:
        nobody holds a socket open without a key."""
        if self.identity is not None:
            return

        def expire() -> None:
            if self.identity is None:
                self.close(1008, "no AUTH frame in time")

        handle = asyncio.get_running_loop().call_later(AUTH_DEADLINE, expire)
        self._auth_timer = handle

    def on_connection_close(self) -> None:
        timer = getattr(self, "_auth_timer", None)
        if timer is not None:
            timer.cancel()
        super().on_connection_close()

    def revoke(self) -> None:
        """Its key was deleted: nothing more for this client."""
        self.close(1008, "API key revoked")

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self._flush()  # what was said before the close goes out before it
        super().close(code, reason)

    def _cut_off(self) -> None:
        self.cut_off = True
        self._outbox.clear()
        self.gaffer.cut_off_clients += 1
        log.warning("%s: client too slow, disconnecting it", self.request.path)
        # before close(), which sets ws_connection to None
        stream = getattr(self.ws_connection, "stream", None)
        self.close(1008, "client too slow: output buffer full")
        if stream is not None:
            stream.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        stream = getattr(self.ws_connection, "stream", None)
        if stream is None or stream.closed() or not self._outbox:
            self._outbox.clear()
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        self._outbox_bytes = 0
        try:
            fut = stream.write(data)
        except StreamClosedError:
            return
        size = len(data)
        self._pending += size

        def written(f: asyncio.Future[None]) -> None:
            self._pending -= size
            if not f.cancelled():
                f.exception()  # a closed stream is handled by on_close

        fut.add_done_callback(written)


OP_TEXT, OP_BINARY = 0x1, 0x2


def ws_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, unmasked frame as a server sends it (RFC 6455, 5.2)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class ChannelHandler(BoundedWebSocket):
    identity: Identity | None = None

    async def prepare(self) -> None:
        await self.identify_caller()

    def open(self, *args: str) -> None:
        self._subs: dict[str, tuple[topics.Topic, Any, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.gaffer.channels.add(self)
        self.auth_deadline()

    def on_close(self) -> None:
        self.gaffer.channels.discard(self)
        for raw in list(getattr(self, "_subs", {})):
            self._stop(raw)
        for task in getattr(self, "_tasks", ()):
            task.cancel()

    def _reply(self, obj: dict[str, Any]) -> None:
        self.send(json_dumps(obj))

    def _error(self, error: str, reason: str, errno: int = 400) -> None:
        self._reply(
            {"event": "gaffer:error", "data": {"error": error, "reason": reason, "errno": errno}}
        )

    async def on_message(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        if self.identity is None:
            await self._authenticate(text)
            return
        if text.startswith("AUTH:"):
            return  # a key given both ways: the header's was already accepted
        try:
            msg = json.loads(text)
        except ValueError:
            self._error("invalid_msg", "invalid_json")
            return
        if not isinstance(msg, dict) or "event" not in msg:
            self._error("invalid_msg", "event_missing")
            return
        event = msg["event"]
        if event == "NOP":
            return
        data = msg.get("data")
        if not isinstance(data, dict):
            self._error("invalid_msg", "data_missing")
            return
        if event in ("SUB", "UNSUB"):
            topic = data.get("topic")
            if not isinstance(topic, str) or not topic:
                self._error("invalid_msg", "topic_missing")
                return
            if event == "SUB":
                self._subscribe(topic)
            else:
                self._unsubscribe(topic)
        elif event == "CMD":
            if "name" not in data:
                self._error("invalid_msg", "cmd_name_missing")
                return
            if "identity" not in data:
                self._error("invalid_msg", "cmd_identity_missing")
                return
            task = asyncio.ensure_future(self._command(data))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._error("invalid_msg", "unknown_cmd")

    async def _authenticate(self, text: str) -> None:
        if not text.startswith("AUTH:"):
            self._reply(
                {
                    "event": "gaffer:error",
                    "data": {
                        "error": "AUTH_REQUIRED",
                        "errno": 401,
                        "reason": "send AUTH:<key> first",
                    },
                }
            )
            self.close(1008, "authentication required")
            return
        try:
            self.identity = await identify(self.gaffer, None, text[5:].strip())
        except (Unauthorized, Forbidden) as e:
            self._reply(
                {
                    "event": "gaffer:error",
                    "data": {"error": "AUTH_REQUIRED", "errno": e.errno, "reason": e.reason},
                }
            )
            self.close(1008, "authentication failed")
            return
        self._reply({"event": "gaffer:auth_success", "data": {"key": self.identity.key_id}})

    # -- commands ---------------------------------------------------------------

    async def _command(self, data: dict[str, Any]) -> None:
        ident = data["identity"]
        assert self.identity is not None
        ctx = commands.Context(self.gaffer.manager, self.identity)
        try:
            result = await commands.run(
                ctx, data["name"], data.get("args", []), data.get("kwargs", {})
            )
        except GafferError as e:
            self._reply(
                {
                    "event": "gaffer:command_error",
                    "data": {
                        "id": ident,
                        "errno": e.errno,
                        "reason": e.reason,
                        "error": {"errno": e.errno, "reason": e.reason},
                    },
                }
            )
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("channel command %r failed", data.get("name"))
            self._reply(
                {
                    "event": "gaffer:command_error",
                    "data": {"id": ident, "errno": 500, "reason": "internal error"},
                }
            )
            return
        self._reply({"event": "gaffer:command_success", "data": {"id": ident, "result": result}})

    # -- subscriptions ----------------------------------------------------------

    def _subscribe(self, raw: str) -> None:
        assert self.identity is not None
        try:
            if len(raw) > MAX_TOPIC:
                raise BadRequest(f"topic: longer than {MAX_TOPIC} characters")
            if raw not in self._subs and len(self._subs) >= MAX_SUBSCRIPTIONS:
                raise BadRequest(f"topic: at most {MAX_SUBSCRIPTIONS} subscriptions per channel")
            topic = topics.parse(self.gaffer.manager, raw)
            if topic.job is not None:
                self.identity.require("read", topic.job)
        except GafferError as e:
            self._reply(
                {
                    "event": "gaffer:subscription_error",
                    "data": {"topic": raw, "errno": e.errno, "reason": e.reason},
                }
            )
            return
        if raw in self._subs:
            t, listener, count = self._subs[raw]
            self._subs[raw] = (t, listener, count + 1)
        else:
            listener = self._listener(topic)
            if topic.kind == "STATS":
                self.gaffer.manager.monitor(listener, topic.prefix)
            else:
                self.gaffer.manager.emitter.subscribe(topic.prefix, listener)
            self._subs[raw] = (topic, listener, 1)
        self._reply({"event": "gaffer:subscription_success", "topic": raw})

    def _unsubscribe(self, raw: str) -> None:
        if raw in self._subs:
            t, listener, count = self._subs[raw]
            if count > 1:
                self._subs[raw] = (t, listener, count - 1)
            else:
                self._stop(raw)
        self._reply({"event": "gaffer:subscription_success", "topic": raw})

    def _stop(self, raw: str) -> None:
        topic, listener, _ = self._subs.pop(raw)
        if topic.kind == "STATS":
            self.gaffer.manager.unmonitor(listener, topic.prefix)
        else:
            self.gaffer.manager.emitter.unsubscribe(topic.prefix, listener)

    def _listener(self, topic: topics.Topic) -> Any:
        ident = self.identity
        assert ident is not None
        replay = self.gaffer.replay
        raw = topic.raw

        def encode(event: Event) -> bytes:
            return replay.encode(event, raw, build).encode()

        def build(event: Event) -> dict[str, Any]:
            return {
                "event": "gaffer:event",
                "data": {**event.to_dict(), "event": event.type, "topic": raw},
            }

        if topic.kind == "STATS":

            def on_stat(_: str, stats: dict[str, Any]) -> None:
                data = {**stats, "event": "stat", "topic": raw}
                self.send(json_dumps({"event": "gaffer:event", "data": data}))

            return on_stat

        check_each = topic.job is None

        def on_event(event: Event) -> None:
            if not topic.wants(event):
                return
            if check_each:
                name = event.data.get("name")
                if not ident.can("read", name if isinstance(name, str) else None):
                    return
            self.send_frame(
                replay.cached((event.seq, "ws:" + raw), lambda: ws_frame(encode(event)))
            )

        return on_event
