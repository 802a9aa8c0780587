"""The last events, kept for clients that reconnect, and their JSON encodings.

Every event the manager publishes (except process output, which has its own
per-process replay in the output tails) is kept in a bounded ring. A client
that reconnects with the sequence number it last saw gets what it missed, or
is told that the ring no longer reaches back that far.

Encoding an event for fifty subscribers should cost one ``json.dumps``, not
fifty: encodings are cached by (sequence number, form).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, TypeVar, cast

from gaffer.events import Event, EventEmitter

T = TypeVar("T")


class ReplayBuffer:
    """The last ``size`` events (output excluded), and an encoding cache."""

    CACHE_SIZE = 4096

    def __init__(self, emitter: EventEmitter, size: int) -> None:
        self._emitter = emitter
        self._events: collections.deque[Event] = collections.deque(maxlen=size)
        # Events up to this sequence number may be missing from the ring: they
        # were published before it started, or have been pushed out since.
        self.horizon = emitter.last_seq
        self._cache: collections.OrderedDict[tuple[int, str], object] = collections.OrderedDict()
        emitter.subscribe(".", self._on_event)

    def close(self) -> None:
        self._emitter.unsubscribe(".", self._on_event)
        self._events.clear()
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._events)

    def _on_event(self, event: Event) -> None:
        if event.type == "output":
            return
        if len(self._events) == self._events.maxlen:
            self.horizon = self._events[0].seq
        self._events.append(event)

    def since(self, seq: int) -> tuple[list[Event], bool]:
        """The kept events after ``seq``, and whether some after it were lost."""
        lost = seq < self.horizon
        return [e for e in self._events if e.seq > seq], lost

    def encode(self, event: Event, form: str, build: Callable[[Event], Any]) -> str:
        """``json.dumps(build(event))``, computed once per (event, form)."""

        def dumps() -> str:
            # imported here: gafferd keeps events from its start, before the server exists
            from gaffer.http.base import json_dumps

            return json_dumps(build(event))

        return self.cached((event.seq, form), dumps)

    def cached(self, key: tuple[int, str], make: Callable[[], T]) -> T:
        """``make()``, computed once per key while the key is among the last
        :attr:`CACHE_SIZE` asked for."""
        try:
            return cast(T, self._cache[key])
        except KeyError:
            value = make()
            self._cache[key] = value
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
            return value
