"""What a client call raises: the server's refusal, typed by its status, with
the server's own reason; or :class:`ConnectionError` when there is no daemon
to ask."""

from __future__ import annotations

import builtins


class GafferClientError(Exception):
    """A request the daemon refused or failed; ``status`` is the HTTP status
    and ``reason`` the daemon's own words."""

    status = 0

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.reason


class BadRequest(GafferClientError):
    status = 400


class Unauthorized(GafferClientError):
    status = 401


class Forbidden(GafferClientError):
    status = 403


class NotFound(GafferClientError):
    status = 404


class Conflict(GafferClientError):
    status = 409


class ServerError(GafferClientError):
    """Any other refusal (405, 413, 5xx...)."""

    status = 500


class ConnectionError(GafferClientError, builtins.ConnectionError):
    """The daemon cannot be reached (not running, wrong address, TLS failure)
    or went away in the middle of an answer."""

    status = 0


_BY_STATUS: dict[int, type[GafferClientError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def from_status(status: int, reason: str) -> GafferClientError:
    return _BY_STATUS.get(status, ServerError)(reason, status)


def from_payload(payload: object, status: int) -> GafferClientError:
    """The typed error for a refusal the daemon sent as ``payload``: an HTTP
    answer's body or a channel's error frame. A dict's ``errno`` is the status
    (else ``status``) and its ``reason`` or ``error`` the reason; anything else
    is the reason itself."""
    reason: object = payload
    if isinstance(payload, dict):
        errno = payload.get("errno")
        if isinstance(errno, int):
            status = errno
        # channel frames carry a code in "error" and the words in "reason"
        reason = payload.get("reason") or payload.get("error")
    return from_status(status, str(reason) if reason else f"refused (status {status})")
