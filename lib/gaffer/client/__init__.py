"""Clients of gafferd's HTTP API: :class:`Client` (blocking) and
:class:`AsyncClient` (asyncio), over a unix socket, HTTP or HTTPS.

Both cover every endpoint, the ``/channel`` pub/sub and commands, and output
streams; a refusal raises :class:`BadRequest`, :class:`Unauthorized`,
:class:`Forbidden`, :class:`NotFound`, :class:`Conflict` or
:class:`ServerError` with the daemon's reason, and a daemon that cannot be
reached :class:`ConnectionError`.
"""

from __future__ import annotations

from gaffer.client.errors import (
    BadRequest,
    Conflict,
    ConnectionError,
    Forbidden,
    GafferClientError,
    NotFound,
    ServerError,
    Unauthorized,
)
from gaffer.client.sync import Client
from gaffer.client.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gaffer.client.aio import AsyncClient


def __getattr__(name: str) -> Any:
    # the asyncio client brings tornado; the blocking one must not pay for it
    if name == "AsyncClient":
        from gaffer.client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'gaffer.client' has no attribute {name!r}")


__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionError",
    "Forbidden",
    "GafferClientError",
    "NotFound",
    "ServerError",
    "Target",
    "Unauthorized",
]
