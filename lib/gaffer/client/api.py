"""gafferd's HTTP API as data, for both clients.

Each endpoint function here is named after the client method it serves and
returns a :class:`Call`: the request (method, path, JSON or raw body, query
parameters, headers) and how the daemon's answer becomes the method's result.
:class:`~gaffer.client.sync.Client` sends it on a blocking socket,
:class:`~gaffer.client.aio.AsyncClient` with tornado; the methods' docs are
the blocking client's. Nothing here does I/O, and imports stay as light as the
``gaffer`` command needs (it is built on the blocking client).
"""

from __future__ import annotations

import json

from gaffer.client.errors import ConnectionError, from_payload
from gaffer.client.target import Target

TYPE_CHECKING = False  # not typing's: the command starts faster without it
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, Generic, TypeVar

    from gaffer.client import types
    from gaffer.client.wire import Response

    R = TypeVar("R")

    class _Typed(Generic[R]):
        __slots__ = ()

else:
    # Call[int] is for type checkers only: the command does not import typing
    R = None

    class _Typed:
        __slots__ = ()

        def __class_getitem__(cls, item):
            return cls


class Call(_Typed[R]):
    """One request, and how its answer becomes the result: ``result`` takes
    the decoded JSON answer, ``reply`` (instead) the whole
    :class:`~gaffer.client.wire.Response`; without either the result is the
    decoded answer."""

    __slots__ = ("body", "headers", "method", "params", "path", "raw", "result")

    def __init__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        result: Callable[[Any], R] | None = None,
        reply: Callable[[Response], R] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.raw = raw
        self.params = params
        self.headers = headers
        if reply is None:
            reply = decode if result is None else lambda resp: result(decode(resp))
        self.result: Callable[[Response], R] = reply

    @property
    def uri(self) -> str:
        """The path with the query string."""
        return with_params(self.path, self.params)

    def encode(self) -> tuple[bytes | None, dict[str, str]]:
        """The request's body and headers: ``body`` as JSON, else ``raw``. A
        POST or PUT always has a body, if an empty one (Content-Length: 0)."""
        hdrs = dict(self.headers or {})
        if self.body is not None:
            hdrs["Content-Type"] = "application/json"
            return json.dumps(self.body).encode(), hdrs
        if self.raw is None and self.method in ("POST", "PUT"):
            return b"", hdrs
        return self.raw, hdrs


class ClientBase:
    """What both clients are built on: the :class:`Target` they talk to,
    from ``host`` and the options :class:`Target` takes, or a ready
    ``target``."""

    def __init__(
        self,
        host: str | None = None,
        *,
        key: str | None = None,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        verify: bool = True,
        timeout: float | None = 30.0,
        target: Target | None = None,
    ) -> None:
        self.target = target or Target(
            host,
            key=key,
            cafile=cafile,
            certfile=certfile,
            keyfile=keyfile,
            verify=verify,
            timeout=timeout,
        )
        self._setup()

    def _setup(self) -> None:
        """What the client needs beside its target (no I/O yet)."""


def _nothing(resp: Response) -> None:
    return None


# -- the daemon -----------------------------------------------------------------------


def welcome() -> Call[dict[str, Any]]:
    return Call("GET", "/")


def ping() -> Call[bool]:
    return Call("GET", "/ping", reply=lambda r: r.body.strip() == b"OK")


def version() -> Call[str]:
    return Call("GET", "/version", result=lambda a: str(a["version"]))


def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/openapi.json")


def metrics() -> Call[str]:
    return Call("GET", "/metrics", reply=lambda r: r.body.decode())


def reload_config() -> Call[types.ReloadResult]:
    return Call("POST", "/reload")


def last_reload() -> Call[types.ReloadResult]:
    return Call("GET", "/reload")


def reopen_logs() -> Call[None]:
    return Call("POST", "/logs/reopen", reply=_nothing)


def reexec() -> Call[None]:
    return Call("POST", "/reexec", reply=_nothing)


# -- sessions and jobs ----------------------------------------------------------------


def sessions() -> Call[list[str]]:
    return Call("GET", "/sessions", result=lambda a: list(a["sessions"]))


def jobs(session: str | None = None, tags: Iterable[str] = ()) -> Call[list[str]]:
    path = "/jobs" if session is None else f"/jobs/{quote(session, safe='')}"
    params = {"tag": _tags(tags)} if tags else None
    return Call("GET", path, params=params, result=lambda a: list(a["jobs"]))


def status(
    names: Iterable[str] = (), stats: bool = True, tags: Iterable[str] = ()
) -> Call[list[types.JobStatus]]:
    params = {"name": list(names), "stats": "1" if stats else "0", "tag": _tags(tags)}
    return Call("GET", "/status", params=params, result=lambda a: list(a["jobs"]))


def _tags(tags: Iterable[str]) -> list[str]:
    # a lone string is one tag, not its letters
    return [tags] if isinstance(tags, str) else list(tags)


def job_exists(name: str) -> Call[bool]:
    """True when the job is there; the clients answer False to NotFound."""
    return Call("HEAD", job_path(name), reply=lambda r: True)


def job_info(name: str) -> Call[types.JobInfo]:
    return Call("GET", job_path(name))


def load(config: Mapping[str, Any], session: str = "default", start: bool = True) -> Call[None]:
    body = {**config, "start": start}
    return Call("POST", f"/jobs/{quote(session, safe='')}", body, reply=_nothing)


def update(name: str, config: Mapping[str, Any], start: bool = True) -> Call[None]:
    body = {**config, "start": start}
    return Call("PUT", job_path(name), body, params={"wait": "1"}, reply=_nothing)


def unload(name: str) -> Call[None]:
    return Call("DELETE", job_path(name), reply=_nothing)


def job_stats(name: str) -> Call[types.JobStats]:
    return Call("GET", f"{job_path(name)}/stats")


def numprocesses(name: str) -> Call[int]:
    path = f"{job_path(name)}/numprocesses"
    return Call("GET", path, result=lambda a: int(a["numprocesses"]))


def scale(name: str, n: int | str) -> Call[int]:
    path = f"{job_path(name)}/numprocesses"
    return Call("POST", path, {"scale": n}, result=lambda a: int(a["numprocesses"]))


def job_pids(name: str) -> Call[list[int]]:
    return Call("GET", f"{job_path(name)}/pids", result=lambda a: list(a["pids"]))


def is_active(name: str) -> Call[bool]:
    return Call("GET", f"{job_path(name)}/state", reply=lambda r: r.body.strip() == b"1")


def set_state(name: str, state: bytes, wait: bool = False) -> Call[None]:
    """``state``: b"1" starts the job, b"0" stops it, b"2" restarts it; with
    ``wait`` a stop or restart answers once done (a failed roll: Conflict)."""
    params = {"wait": "1"} if wait else None
    return Call("POST", f"{job_path(name)}/state", raw=state, params=params, reply=_nothing)


def signal_job(name: str, signal: int | str) -> Call[None]:
    return Call("POST", f"{job_path(name)}/signal", {"signal": signal}, reply=_nothing)


def commit(
    name: str,
    graceful_timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    args: Iterable[str] | None = None,
) -> Call[int]:
    body: dict[str, Any] = {}
    if graceful_timeout is not None:
        body["graceful_timeout"] = graceful_timeout
    if env:
        body["env"] = dict(env)
    if args is not None:
        body["args"] = list(args)
    return Call("POST", f"{job_path(name)}/commit", body, result=lambda a: int(a["pid"]))


# -- run records (gafferd) ----------------------------------------------------------


def runs(
    job: str | None = None,
    once: bool | None = None,
    reason: str | None = None,
    since: float | None = None,
    limit: int | None = None,
) -> Call[list[dict[str, Any]]]:
    """Run records, newest first (see ``GET /runs``)."""
    params: dict[str, Any] = {"job": job, "reason": reason, "since": since, "limit": limit}
    if once is not None:
        params["once"] = "1" if once else "0"
    params = {k: v for k, v in params.items() if v is not None}
    return Call("GET", "/runs", params=params, result=lambda a: list(a["runs"]))


def run(rid: int) -> Call[dict[str, Any]]:
    return Call("GET", f"/runs/{int(rid)}")


def cancel_run(rid: int) -> Call[dict[str, Any]]:
    """Stop a running one-off run; answers its record once it has stopped."""
    return Call("DELETE", f"/runs/{int(rid)}")


# -- processes --------------------------------------------------------------------------


def pids() -> Call[list[int]]:
    return Call("GET", "/pids", result=lambda a: list(a["pids"]))


def process_exists(pid: int) -> Call[bool]:
    """True when the process is there; the clients answer False to NotFound."""
    return Call("HEAD", f"/{int(pid)}", reply=lambda r: True)


def process_info(pid: int) -> Call[types.ProcessInfo]:
    return Call("GET", f"/{int(pid)}")


def process_stats(pid: int) -> Call[types.ProcessStats]:
    return Call("GET", f"/{int(pid)}/stats", result=lambda a: a["stats"])


def stop_process(pid: int) -> Call[None]:
    return Call("DELETE", f"/{int(pid)}", reply=_nothing)


def signal_process(pid: int, signal: int | str) -> Call[None]:
    return Call("POST", f"/{int(pid)}/signal", {"signal": signal}, reply=_nothing)


# -- output and events ------------------------------------------------------------------


def output(
    pid: int, label: str = "stdout", offset: int | None = None, replay: int | None = None
) -> Call[Any]:
    """The stream's request (the clients read its answer as it arrives)."""
    path = f"/streams/{int(pid)}/{quote(label, safe='')}"
    return Call("GET", path, params={"offset": offset, "replay": replay})


def tail(pid: int, label: str = "stdout", replay: int | None = None) -> Call[tuple[int, bytes]]:
    path = f"/streams/{int(pid)}/{quote(label, safe='')}"
    params = {"feed": "longpoll", "timeout": 0, "replay": 1 << 30 if replay is None else replay}
    return Call(
        "GET",
        path,
        params=params,
        reply=lambda r: (int(r.headers.get("x-gaffer-start", "0")), r.body),
    )


def events(
    topics: Iterable[str] = ("EVENTS",),
    names: Iterable[str] = (),
    last_event_id: int | None = None,
) -> Call[Any]:
    """The stream's request (the clients read its answer as it arrives)."""
    params = {"topic": list(topics), "name": list(names), "last_event_id": last_event_id}
    return Call("GET", "/events", params=params)


# -- keys and users ---------------------------------------------------------------------


def login(username: str, password: str) -> Call[str]:
    import base64

    cred = base64.b64encode(f"{username}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {cred}"}
    return Call("GET", "/auth", headers=headers, result=lambda a: str(a["api_key"]))


def keys() -> Call[list[types.KeyInfo]]:
    return Call("GET", "/keys", result=lambda a: list(a["keys"]))


def key_info(key: str, include_keys: bool = False) -> Call[types.KeyInfo]:
    params = {"include_keys": "true"} if include_keys else None
    return Call("GET", f"/keys/{quote(key, safe='')}", params=params)


def create_key(
    permissions: types.Permissions | Mapping[str, Any], label: str = "", parent: str | None = None
) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"permissions": dict(permissions), "label": label}
    if parent is not None:
        body["parent"] = parent
    return Call("POST", "/keys", body)


def delete_key(key: str) -> Call[int]:
    def count(answer: Any) -> int:
        deleted = answer.get("deleted", [key])
        return len(deleted) if isinstance(deleted, list) else int(deleted)

    return Call("DELETE", f"/keys/{quote(key, safe='')}", result=count)


def users() -> Call[list[types.UserInfo]]:
    return Call("GET", "/users", result=lambda a: list(a["users"]))


def user_info(username: str) -> Call[types.UserInfo]:
    return Call("GET", f"/users/{quote(username, safe='')}")


def create_user(
    username: str,
    password: str,
    user_type: int = 1,
    permissions: Mapping[str, Any] | None = None,
    key: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Call[types.UserInfo]:
    body: dict[str, Any] = {"username": username, "password": password, "user_type": user_type}
    if permissions is not None:
        body["permissions"] = dict(permissions)
    if key is not None:
        body["key"] = key
    body.update(extra or {})
    return Call("POST", "/users", body, result=lambda a: a["user"])


def update_user(username: str, fields: Mapping[str, Any]) -> Call[types.UserInfo]:
    path = f"/users/{quote(username, safe='')}"
    return Call("PUT", path, dict(fields), result=lambda a: a["user"])


def delete_user(username: str) -> Call[None]:
    return Call("DELETE", f"/users/{quote(username, safe='')}", reply=_nothing)


def set_password(username: str, password: str) -> Call[None]:
    path = f"/users/{quote(username, safe='')}/password"
    return Call("PUT", path, {"password": password}, reply=_nothing)


def set_user_key(username: str, key: str) -> Call[None]:
    path = f"/users/{quote(username, safe='')}/key"
    return Call("PUT", path, {"key": key}, reply=_nothing)


# -- requests and answers ---------------------------------------------------------------


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encode a path segment or query value; urllib.parse (and the
    ipaddress module it brings, ~4 ms) only loads for text that needs it."""
    if _SAFE.issuperset(text):
        return text
    from urllib.parse import quote as _quote

    return _quote(text, safe=safe)


def job_path(name: str) -> str:
    """``session.job`` (or a bare job, in session ``default``) → its URL path."""
    session, sep, job = name.partition(".")
    if not sep:
        session, job = "default", name
    return f"/jobs/{quote(session, safe='')}/{quote(job, safe='')}"


def with_params(path: str, params: Mapping[str, Any] | None) -> str:
    """``path`` with the query string of ``params`` (a list value repeats its
    name; None leaves the name out)."""
    if not params:
        return path
    pairs = []
    for name, value in params.items():
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(name)}={quote(str(v))}")
    return f"{path}?{'&'.join(pairs)}" if pairs else path


def decode(resp: Response) -> Any:
    """An answer's body: its JSON, or its text when it is not JSON."""
    if not resp.body:
        return None
    if resp.headers.get("content-type", "").startswith("application/json"):
        try:
            return json.loads(resp.body)
        except ValueError:
            raise ConnectionError("the daemon's answer is not valid JSON") from None
    return resp.body.decode("utf-8", "replace")


def refusal(resp: Response) -> Exception:
    """The typed error for a refusal, carrying the daemon's reason."""
    text = resp.body.decode("utf-8", "replace").strip()
    try:
        payload: object = json.loads(text)
    except ValueError:
        payload = text
    if not isinstance(payload, dict) and (
        "html" in resp.headers.get("content-type", "") or text.startswith("<")
    ):
        # a web page: whatever answered is not gafferd (tornado's own refusals
        # of a malformed request are short text, kept as they are)
        server = resp.headers.get("server", "")
        payload = f"HTTP {resp.status} from something that is not gafferd" + (
            f" ({server})" if server else ""
        )
    return from_payload(payload, resp.status)


def sse_event(kind: str, data: str, id_: str | None) -> types.Event:
    """One ``/events`` SSE event as a dict: its JSON payload, with its type
    (``event``) and sequence number (``seq``, from the SSE id)."""
    try:
        payload = json.loads(data)
    except ValueError:
        payload = {"data": data}
    if not isinstance(payload, dict):
        payload = {"data": payload}
    payload.setdefault("event", kind)
    if id_ is not None and id_.isdigit():
        payload.setdefault("seq", int(id_))
    return payload  # type: ignore[return-value]
