"""A process's IO over a websocket (``/<pid>/channel[/<stream>]``).

Frames are ``V1 <type> <msgid>\\0<body>``, ``type`` being ``message``,
``response`` or ``error``. ``?mode=1`` reads the process's output, ``2``
writes to its stdin (or to the named custom stream), ``3`` (the default) both.
A client ``message`` frame is written to the process and acknowledged with a
``response`` frame whose body is ``OK``; output arrives as ``message`` frames.
When a key is required, the first frame's body is ``AUTH:<key>``.
"""

from __future__ import annotations

import codecs
import itertools
import json

from gaffer.errors import BadRequest, Forbidden, GafferError, NotFound, Unauthorized
from gaffer.events import Event
from gaffer.http.base import Identity, identify
from gaffer.http.channel import BoundedWebSocket
from gaffer.process import Process

READ, WRITE = 1, 2


def frame(type_: str, msgid: str, body: str) -> str:
    return f"V1 {type_} {msgid}\0{body}"


def parse_frame(text: str) -> tuple[str, str, str]:
    head, sep, body = text.partition("\0")
    parts = head.split(" ")
    if not sep or len(parts) != 3 or parts[0] != "V1":
        raise BadRequest("frame: expected 'V1 <type> <msgid>\\0<body>'")
    return parts[1], parts[2], body


class ProcessChannelHandler(BoundedWebSocket):
    identity: Identity | None = None

    async def prepare(self) -> None:
        await self.identify_caller()
        mode = self.get_query_argument("mode", "3")
        if mode not in ("1", "2", "3"):
            raise BadRequest(f"mode: expected 1 (read), 2 (write) or 3 (both), got {mode!r}")
        self.mode = int(mode)

    def open(self, pid: str, stream: str | None = None) -> None:
        self._ids = itertools.count(1)
        self._decoders: dict[str, codecs.IncrementalDecoder] = {}
        self._topic: str | None = None
        self.stream_name = stream
        self.pid = pid
        self.gaffer.channels.add(self)
        if self.identity is not None:
            self._start()
        else:
            self.auth_deadline()

    def _error(self, msgid: str, e: GafferError) -> None:
        self.send(frame("error", msgid, json.dumps({"error": e.reason, "errno": e.errno})))

    def _process(self, level: str) -> Process:
        assert self.identity is not None
        proc = self.gaffer.manager.get_process(self.pid)
        self.identity.require(level, proc.name)
        return proc

    def _start(self) -> None:
        """Check the process and the rights, then start reading its output."""
        try:
            proc = self._process("write" if self.mode & WRITE else "read")
            labels = (*proc.config.redirect_output, *proc.config.custom_streams)
            if self.stream_name is not None and self.stream_name not in labels:
                raise NotFound(f"process {proc.pid} has no stream {self.stream_name!r}")
        except GafferError as e:
            self._error("0", e)
            self.close(1008, e.reason.encode()[:120].decode("utf-8", "ignore"))
            return
        if self.mode & READ:
            suffix = f".{self.stream_name}" if self.stream_name else ""
            self._topic = f"stream.{proc.pid}{suffix}"
            self.gaffer.manager.emitter.subscribe(self._topic, self._on_output)

    def _on_output(self, event: Event) -> None:
        if event.type == "output":
            # One decoder per stream: a character split across two reads stays whole.
            label = event.data["label"]
            decoder = self._decoders.get(label)
            if decoder is None:
                decoder = self._decoders[label] = codecs.getincrementaldecoder("utf-8")("replace")
            data = decoder.decode(event.data["data"])
            if data:
                self.send(frame("message", str(next(self._ids)), data))

    def on_close(self) -> None:
        self.gaffer.channels.discard(self)
        if self._topic is not None:
            self.gaffer.manager.emitter.unsubscribe(self._topic, self._on_output)
            self._topic = None

    async def on_message(self, message: str | bytes) -> None:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        try:
            type_, msgid, body = parse_frame(text)
        except BadRequest as e:
            self._error("0", e)
            return
        if self.identity is None:
            if not body.startswith("AUTH:"):
                self._error(msgid, Unauthorized("send AUTH:<key> first"))
                self.close(1008, "authentication required")
                return
            try:
                self.identity = await identify(self.gaffer, None, body[5:].strip())
            except (Unauthorized, Forbidden) as e:
                self._error(msgid, e)
                self.close(1008, "authentication failed")
                return
            self.send(frame("response", msgid, "OK"))
            self._start()
            return
        if type_ != "message":
            self._error(msgid, BadRequest(f"type: expected message, got {type_!r}"))
            return
        if not self.mode & WRITE:
            self._error(msgid, Forbidden("this channel was opened read-only (mode=1)"))
            return
        try:
            proc = self._process("write")
            self.gaffer.manager.send(proc.pid, body, self._write_stream(proc))
        except GafferError as e:
            self._error(msgid, e)
            return
        self.send(frame("response", msgid, "OK"))

    def _write_stream(self, proc: Process) -> str | None:
        name = self.stream_name
        if name is None or name in proc.config.custom_streams:
            return name
        raise BadRequest(f"stream: {name!r} is an output stream; write to stdin or a custom stream")
