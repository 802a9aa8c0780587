"""The event bus: topics, prefix subscriptions, and bounded subscriber queues.

Every event is an immutable :class:`Event` with a sequence number that only grows,
a wall-clock timestamp, the topics it is published under and a payload. An event
published under several topics (``exit``, ``job.default.web.exit``,
``proc.7.exit``) is still one event: a subscriber that matches several of them
receives it once.

Subscriptions match by dotted prefix: ``job.default.web`` receives
``job.default.web.exit``; ``.`` receives everything.

Delivery happens on the loop, after the publishing code has returned, so a
listener never runs in the middle of a state change. A listener that raises is
logged and skipped; a :class:`Subscription` that is not drained drops its oldest
events and counts them instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gaffer.events")

Listener = Callable[["Event"], None]


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    time: float
    type: str
    topics: tuple[str, ...]
    data: Mapping[str, Any]

    @property
    def topic(self) -> str:
        """The most specific topic (the last one it was published under)."""
        return self.topics[-1]

    def to_dict(self, topic: str | None = None) -> dict[str, Any]:
        return {
            **self.data,
            "event": self.type,
            "topic": topic or self.topic,
            "seq": self.seq,
            "time": self.time,
        }


def _prefixes(topic: str) -> Iterable[str]:
    yield "."
    start = 0
    while True:
        i = topic.find(".", start)
        if i < 0:
            yield topic
            return
        yield topic[:i]
        start = i + 1


class EventEmitter:
    """Publishes events to listeners subscribed by topic prefix."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._seq = 0
        self._subs: dict[str, list[Listener]] = {}
        self._pending: collections.deque[Event] = collections.deque()
        self._scheduled = False
        self.failed_deliveries = 0

    @property
    def last_seq(self) -> int:
        """The sequence number of the last event published (0 before any)."""
        return self._seq

    def advance(self, seq: int) -> None:
        """Continue numbering after ``seq`` (a re-executed daemon keeps its
        predecessor's sequence, so clients resuming by event id stay right)."""
        self._seq = max(self._seq, seq)

    def subscribe(self, topic: str, listener: Listener) -> None:
        topic = "." if topic in ("", ".") else topic
        self._subs.setdefault(topic, []).append(listener)

    def unsubscribe(self, topic: str, listener: Listener) -> None:
        topic = "." if topic in ("", ".") else topic
        listeners = self._subs.get(topic)
        if not listeners:
            return
        try:
            listeners.remove(listener)
        except ValueError:
            return
        if not listeners:
            del self._subs[topic]

    def publish(self, type_: str, topics: tuple[str, ...], data: Mapping[str, Any]) -> Event:
        """Publish one event under ``topics``; returns it (with its sequence number)."""
        self._seq += 1
        event = Event(self._seq, time.time(), type_, topics, data)
        if self._subs:
            self._pending.append(event)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._drain)
        return event

    def _drain(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, collections.deque()
        subs = self._subs
        for event in pending:
            seen: set[int] = set()
            for topic in event.topics:
                for prefix in _prefixes(topic):
                    # a copy: a listener may unsubscribe (itself or others) while we loop
                    for listener in tuple(subs.get(prefix, ())):
                        key = id(listener)
                        if key in seen:
                            continue
                        seen.add(key)
                        try:
                            listener(event)
                        except Exception:
                            self.failed_deliveries += 1
                            log.exception("event listener %r failed on %s", listener, event.topic)


def _size(event: Event) -> int:
    data = event.data.get("data")
    return 200 + (len(data) if isinstance(data, bytes | str) else 0)


class Subscription:
    """A bounded queue of the events on one topic, for code that wants to pull.

    ``async for event in sub`` or ``await sub.get()`` (several readers may wait at
    once; each event goes to one of them). When more than ``maxsize`` events, or
    more than ``max_bytes`` of output, wait unread, the oldest are dropped and
    counted in :attr:`dropped`: an unread subscription never grows without bound.
    """

    def __init__(self, topic: str, maxsize: int = 10_000, max_bytes: int = 8 << 20) -> None:
        self.topic = topic
        self.dropped = 0
        self._queue: collections.deque[Event] = collections.deque()
        self._bytes = 0
        self._maxsize = maxsize
        self._max_bytes = max_bytes
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        self._queue.append(event)
        self._bytes += _size(event)
        while len(self._queue) > self._maxsize or (
            self._bytes > self._max_bytes and len(self._queue) > 1
        ):
            self._bytes -= _size(self._queue.popleft())
            self.dropped += 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __len__(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Event | None:
        if not self._queue:
            return None
        event = self._queue.popleft()
        self._bytes -= _size(event)
        return event

    async def get(self) -> Event:
        while not self._queue:
            if self.closed:
                raise EOFError("subscription closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and self._queue:
                    self._wake_one()  # pass the wake-up on to another reader
                raise
        event = self._queue.popleft()
        self._bytes -= _size(event)
        if self._queue:
            self._wake_one()
        return event

    def close(self) -> None:
        self.closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Event]:
        while True:
            try:
                yield await self.get()
            except EOFError:
                return
