"""What every HTTP handler shares: the error shape, JSON bodies with a size
limit, CORS, and who the caller is (their API key's permissions).

Every failure is answered as ``{"error": reason, "errno": status}``. A
:class:`gaffer.errors.GafferError` raised anywhere in a handler becomes its
``errno``; an unexpected exception is logged and answered 500 (the fuzz test
holds that at zero).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import struct
from dataclasses import dataclass
from http.client import responses
from typing import TYPE_CHECKING, Any, cast

import tornado.web

from gaffer.config import split_name
from gaffer.errors import (
    BadRequest,
    Forbidden,
    GafferError,
    ServiceUnavailable,
    TooLarge,
    Unauthorized,
)
from gaffer.http.permissions import ADMIN, Permissions

if TYPE_CHECKING:
    from gaffer.http.app import HttpApp
    from gaffer.manager import Manager
    from gaffer.process import Process

log = logging.getLogger("gaffer.http")

API_KEY_HEADER = "X-Api-Key"
MAX_KEY_CHECKS = 16  # scrypt verifications in flight at once
CORS_HEADERS = "Content-Type, X-Api-Key, Authorization, Last-Event-ID"


@dataclass(frozen=True)
class Identity:
    """Who is calling: the permissions of their key (``key_id`` None for the
    local owner on the unix socket, or when keys are not required)."""

    perms: Permissions
    key_id: str | None = None

    def can(self, level: str, name: str | None) -> bool:
        return self.perms.can(level, name)

    def readable_sessions(self, manager: Manager) -> list[str]:
        """The sessions with a job (or the session itself) this key may read."""
        return [
            s
            for s in manager.sessions
            if self.can("read", s) or any(self.can("read", j) for j in manager.jobs(s))
        ]

    def readable_pids(self, manager: Manager) -> list[int]:
        """The live processes of the jobs this key may read."""
        if self.can("read", None):  # reads everything: no need to ask per process
            return manager.pids()
        return [p.pid for p in manager.list() if self.can("read", p.name)]

    def require(self, level: str, name: str | None) -> None:
        if not self.perms.can(level, name):
            what = name if name is not None else "every job"
            raise Forbidden(f"this key may not {level} {what}")


LOCAL = Identity(ADMIN)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return int(struct.unpack("3i", creds)[1])


def is_trusted_peer(sock: socket.socket | None) -> bool:
    """A unix-socket peer running as our own user (or root) is the owner."""
    if sock is None or sock.family != socket.AF_UNIX:
        return False
    uid = peer_uid(sock)
    return uid is not None and uid in (0, os.getuid())


async def identify(gaffer: HttpApp, sock: socket.socket | None, token: str | None) -> Identity:
    """Decide who the caller is; raise 401/403 when a key is needed and bad."""
    if (is_trusted_peer(sock) or not gaffer.settings.require_key) and not token:
        return LOCAL
    if not token:
        raise Unauthorized("an API key is required (header X-Api-Key)")
    store = await gaffer.auth_store()
    # Each unknown key costs a scrypt. Callers presenting the same key at once
    # share one check; beyond MAX_KEY_CHECKS different keys in flight, an
    # unverified one is refused at once rather than queued behind a flood.
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    check = gaffer.key_checks.get(digest)
    if check is None:
        if len(gaffer.key_checks) >= MAX_KEY_CHECKS and not store.is_cached(token):
            raise ServiceUnavailable("too many API keys being checked; retry shortly")
        check = asyncio.ensure_future(store.authenticate_key(token))
        gaffer.key_checks[digest] = check
        check.add_done_callback(lambda _: gaffer.key_checks.pop(digest, None))
    key = await asyncio.shield(check)
    if key is None:
        raise Forbidden("unknown API key")
    return Identity(key.permissions, key.id)


def json_dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def job_name(session: str, job: str) -> str:
    """Path parts → ``session.job`` (a bad name is a 400)."""
    s, j = split_name(job, session)
    if not s or not j:
        raise BadRequest(f"job: not a job name: {session}.{job}")
    return f"{s}.{j}"


class BaseHandler(tornado.web.RequestHandler):
    """JSON in and out, one error shape, CORS and authentication."""

    # Routes every caller may reach without a key.
    public = False
    identity: Identity = LOCAL

    def initialize(self, gaffer: HttpApp) -> None:
        self.gaffer = gaffer

    @property
    def manager(self) -> Manager:
        return self.gaffer.manager

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def _cors(self) -> bool:
        origins = self.gaffer.settings.cors_origins
        if origins:
            # The answer depends on the Origin: say so to every cache, always.
            self.set_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin is None or origin not in origins:
            return False
        self.set_header("Access-Control-Allow-Origin", origin)
        self.set_header("Access-Control-Allow-Credentials", "true")
        self.set_header("Access-Control-Expose-Headers", "X-Api-Key, Location")
        return True

    async def prepare(self) -> None:
        self._cors()
        if self.request.method == "OPTIONS":
            return
        length = self.request.headers.get("Content-Length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > self.gaffer.settings.max_body_size
        ):
            raise TooLarge(
                f"body: {length} bytes is over the limit of {self.gaffer.settings.max_body_size}"
            )
        if self.public:
            return
        self.identity = await identify(
            self.gaffer, self._socket(), self.request.headers.get(API_KEY_HEADER)
        )

    def _socket(self) -> socket.socket | None:
        stream = getattr(self.request.connection, "stream", None)
        return cast("socket.socket | None", getattr(stream, "socket", None))

    def allowed_methods(self) -> list[str]:
        base = tornado.web.RequestHandler
        names = ("GET", "HEAD", "POST", "PUT", "DELETE")
        own = [m for m in names if getattr(type(self), m.lower()) is not getattr(base, m.lower())]
        return [*own, "OPTIONS"]

    def options(self, *args: str) -> None:
        allow = ", ".join(self.allowed_methods())
        self.set_header("Allow", allow)
        if self.request.headers.get("Origin") in self.gaffer.settings.cors_origins:
            self.set_header("Access-Control-Allow-Methods", allow)
            self.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    # -- bodies -----------------------------------------------------------------

    def json_body(self, required: bool = True) -> dict[str, Any]:
        raw = self.request.body
        if not raw.strip():
            if required:
                raise BadRequest("body: a JSON object is required")
            return {}
        if len(raw) > self.gaffer.settings.max_body_size:
            raise TooLarge(f"body: over the limit of {self.gaffer.settings.max_body_size} bytes")
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"body: malformed JSON: {e}") from None
        except RecursionError:
            raise BadRequest("body: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise BadRequest(f"body: expected a JSON object, got {type(obj).__name__}")
        return obj

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json_dumps(obj))

    # -- lookups with permission checks -------------------------------------------

    def process(self, pid: str, level: str) -> Process:
        proc = self.manager.get_process(pid)
        self.identity.require(level, proc.name)
        return proc

    # -- errors -----------------------------------------------------------------

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, GafferError):
            reason = exc.reason
        elif isinstance(exc, tornado.web.HTTPError):
            reason = exc.log_message or responses.get(status_code, "error")
            if status_code == 405:
                reason = f"method {self.request.method} not allowed on {self.request.path}"
                self.set_header("Allow", ", ".join(self.allowed_methods()))
        else:
            reason = responses.get(status_code, "internal error").lower()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self._cors()
        self.finish(json_dumps({"error": reason, "errno": status_code}))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, GafferError):
            if self._finished:
                return
            self.clear()
            self.send_error(e.errno, exc_info=(type(e), e, e.__traceback__))
            return
        super()._handle_request_exception(e)


class NotFoundHandler(BaseHandler):
    """Every path no route matches."""

    public = True

    def prepare(self) -> None:  # type: ignore[override]
        raise tornado.web.HTTPError(404, f"no such resource: {self.request.path}")
