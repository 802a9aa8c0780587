"""What ``/reload`` talks to. The daemon plugs in its config reloader; a
manager embedded without a config file has nothing to reload."""

from __future__ import annotations

from typing import Any, Protocol

from gaffer.errors import InvalidState


class Result(Protocol):
    ok: bool
    error: str | None

    def to_dict(self) -> dict[str, Any]: ...


class Reloader(Protocol):
    last: Any

    async def reload(self) -> Any: ...


class NoReloader:
    last: Result | None = None

    async def reload(self) -> Result:
        raise InvalidState("this daemon has no config file to reload")
