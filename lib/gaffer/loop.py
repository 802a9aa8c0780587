"""Choose the event loop: uvloop (libuv) by default, plain asyncio on request.

``GAFFER_LOOP=asyncio`` (or ``loop_kind="asyncio"``) selects asyncio's default
loop; ``uvloop`` or unset selects uvloop.
"""

from __future__ import annotations

import asyncio
import os

LOOP_KINDS = ("uvloop", "asyncio")


def loop_kind(kind: str | None = None) -> str:
    kind = kind or os.environ.get("GAFFER_LOOP") or "uvloop"
    if kind not in LOOP_KINDS:
        raise ValueError(f"GAFFER_LOOP: expected one of {', '.join(LOOP_KINDS)}, got {kind!r}")
    return kind


def new_event_loop(kind: str | None = None) -> asyncio.AbstractEventLoop:
    """A new, not yet running, loop of the chosen kind."""
    if loop_kind(kind) == "uvloop":
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()
