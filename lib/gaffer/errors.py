"""The exceptions gaffer raises, and the one table mapping them to an errno.

The HTTP API, the websocket channel and the CLI all turn a :class:`GafferError`
into ``{"error": reason, "errno": status}`` through :attr:`GafferError.errno`, so
one failure reads the same everywhere.
"""

from __future__ import annotations


class GafferError(Exception):
    """Base class; ``errno`` is the HTTP status that describes the failure."""

    errno = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def to_dict(self) -> dict[str, object]:
        return {"error": self.reason, "errno": self.errno}


class BadRequest(GafferError):
    """The caller's input is wrong (a bad scale value, an unknown signal...)."""

    errno = 400


class ConfigError(BadRequest):
    """A job config is invalid. ``field`` names the offending key; ``source`` and
    ``line`` say where it came from when it was read from a file."""

    def __init__(
        self,
        field: str | None,
        reason: str,
        *,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.field = field
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{reason}")
        self.bare_reason = reason


class Unauthorized(GafferError):
    """No API key (or an unreadable one) where one is required."""

    errno = 401


class Forbidden(GafferError):
    """The API key is unknown, or does not allow the operation."""

    errno = 403


class NotFound(GafferError):
    """No such session, job or process."""

    errno = 404


class AlreadyExists(GafferError):
    """A job with that name is already loaded."""

    errno = 409


class TooLarge(GafferError):
    """A request body over the server's limit."""

    errno = 413


class ServiceUnavailable(GafferError):
    """Too busy right now (e.g. too many API keys being verified); retry."""

    errno = 503


class InvalidState(GafferError):
    """The operation does not apply in the current state (e.g. a process that has
    already exited, or a state transition the machine forbids)."""

    errno = 409


class ReloadFailed(InvalidState):
    """A rolling reload or update stopped because a new process failed to start;
    the job is back on its previous config."""


class InvalidTransition(InvalidState):
    """A process was asked to move between two states that have no edge."""

    def __init__(self, pid: int, old: str, new: str) -> None:
        super().__init__(f"process {pid}: no transition {old} -> {new}")
        self.old = old
        self.new = new
