"""The blocking client: one method per endpoint of gafferd's HTTP API.

Results are the daemon's JSON, typed for checkers by :mod:`gaffer.client.types`;
refusals raise the exceptions of :mod:`gaffer.client.errors` with the daemon's
reason. Imports are kept light: the ``gaffer`` command is built on this.
"""

from __future__ import annotations

import json

from gaffer.client.errors import ConnectionError, NotFound, from_status
from gaffer.client.target import Target
from gaffer.client.wire import BodyStream, Connection, Response, iter_sse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from gaffer.client.channel import SyncChannel, SyncProcessIO
    from gaffer.client.types import (
        Event,
        JobInfo,
        JobStats,
        JobStatus,
        KeyInfo,
        Permissions,
        ProcessInfo,
        ProcessStats,
        ReloadResult,
        UserInfo,
    )


def job_path(name: str) -> str:
    """``session.job`` (or a bare job, in session ``default``) → its URL path."""
    session, sep, job = name.partition(".")
    if not sep:
        session, job = "default", name
    return f"/jobs/{quote(session, safe='')}/{quote(job, safe='')}"


class Client:
    """A blocking client of one gafferd::

        from gaffer.client import Client

        with Client("/run/gaffer/gafferd.sock") as c:
            c.scale("default.web", "=3")
            for job in c.status():
                print(job["name"], job["running"])

    ``host`` is what :class:`~gaffer.client.target.Target` accepts; or pass a
    ready ``target``.
    """

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
        self._conn = Connection(self.target)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # -- plumbing -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send a request; return the decoded JSON answer (or text, when the
        daemon answers in text); raise the typed error on a refusal."""
        resp = self.raw_request(method, path, body, raw=raw, headers=headers, params=params)
        return decode(resp)

    def raw_request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif data is None and method in ("POST", "PUT"):
            data = b""
        resp = self._conn.request(method, with_params(path, params), data, hdrs)
        if resp.status >= 400:
            raise refusal(resp)
        return resp

    def stream(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> BodyStream:
        """A long-lived GET: the body's chunks as they arrive. Each call opens
        its own connection, so requests can be made while it is read."""
        conn = Connection(self.target)
        resp, chunks = conn.stream("GET", with_params(path, params), headers, timeout)
        if resp.status >= 400:
            body = b"".join(chunks)
            raise refusal(Response(resp.status, resp.headers, body))
        return chunks

    # -- the daemon -----------------------------------------------------------------

    def welcome(self) -> dict[str, Any]:
        return self.request("GET", "/")  # type: ignore[no-any-return]

    def ping(self) -> bool:
        """True when the daemon answers; raises ConnectionError when it cannot be reached."""
        return self.raw_request("GET", "/ping").body.strip() == b"OK"

    def version(self) -> str:
        return str(self.request("GET", "/version")["version"])

    def openapi(self) -> dict[str, Any]:
        return self.request("GET", "/openapi.json")  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return self.raw_request("GET", "/metrics").body.decode()

    def reload_config(self) -> ReloadResult:
        """Re-read gafferd's config file and apply the difference (SIGHUP);
        a file that does not load raises Conflict and changes nothing."""
        return self.request("POST", "/reload")  # type: ignore[no-any-return]

    def last_reload(self) -> ReloadResult:
        return self.request("GET", "/reload")  # type: ignore[no-any-return]

    def reopen_logs(self) -> None:
        self.request("POST", "/logs/reopen")

    def reexec(self) -> None:
        """Re-execute gafferd in place; its processes keep running."""
        self.request("POST", "/reexec")

    # -- sessions and jobs ----------------------------------------------------------

    def sessions(self) -> list[str]:
        return list(self.request("GET", "/sessions")["sessions"])

    def jobs(self, session: str | None = None) -> list[str]:
        if session is None:
            return list(self.request("GET", "/jobs")["jobs"])
        return list(self.request("GET", f"/jobs/{quote(session, safe='')}")["jobs"])

    def status(self, names: Iterable[str] = (), stats: bool = True) -> list[JobStatus]:
        """Every job (or those of the given sessions/jobs) with a row per process."""
        params = {"name": list(names), "stats": "1" if stats else "0"}
        return list(self.request("GET", "/status", params=params)["jobs"])

    def job_exists(self, name: str) -> bool:
        try:
            self.raw_request("HEAD", job_path(name))
        except NotFound:
            return False
        return True

    def job_info(self, name: str) -> JobInfo:
        return self.request("GET", job_path(name))  # type: ignore[no-any-return]

    def load(self, config: Mapping[str, Any], session: str = "default", start: bool = True) -> None:
        """Load a job (a config as the API takes it: ``name``, ``cmd``, ...)."""
        self.request("POST", f"/jobs/{quote(session, safe='')}", {**config, "start": start})

    def update(self, name: str, config: Mapping[str, Any], start: bool = True) -> None:
        """Replace a job's config; its processes are rolled over to it. Returns
        when the update is done."""
        self.request("PUT", job_path(name), {**config, "start": start}, params={"wait": "1"})

    def unload(self, name: str) -> None:
        self.request("DELETE", job_path(name))

    def job_stats(self, name: str) -> JobStats:
        return self.request("GET", f"{job_path(name)}/stats")  # type: ignore[no-any-return]

    def numprocesses(self, name: str) -> int:
        return int(self.request("GET", f"{job_path(name)}/numprocesses")["numprocesses"])

    def scale(self, name: str, n: int | str) -> int:
        """``n``: an int adds (negative removes), ``"+N"``, ``"-N"`` or ``"=N"``.
        Returns the new wanted number of processes."""
        body = {"scale": n}
        return int(self.request("POST", f"{job_path(name)}/numprocesses", body)["numprocesses"])

    def job_pids(self, name: str) -> list[int]:
        return list(self.request("GET", f"{job_path(name)}/pids")["pids"])

    def is_active(self, name: str) -> bool:
        return self.raw_request("GET", f"{job_path(name)}/state").body.strip() == b"1"

    def start_job(self, name: str) -> None:
        self.raw_request("POST", f"{job_path(name)}/state", raw=b"1")

    def stop_job(self, name: str) -> None:
        self.raw_request("POST", f"{job_path(name)}/state", raw=b"0")

    def restart_job(self, name: str) -> None:
        """Replace every process of the job (0.5's "reload" of a job)."""
        self.raw_request("POST", f"{job_path(name)}/state", raw=b"2")

    def signal_job(self, name: str, signal: int | str) -> None:
        self.request("POST", f"{job_path(name)}/signal", {"signal": signal})

    def commit(
        self,
        name: str,
        graceful_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Run a one-off process with the job's config; returns its pid."""
        body: dict[str, Any] = {}
        if graceful_timeout is not None:
            body["graceful_timeout"] = graceful_timeout
        if env:
            body["env"] = dict(env)
        return int(self.request("POST", f"{job_path(name)}/commit", body)["pid"])

    # -- processes ------------------------------------------------------------------

    def pids(self) -> list[int]:
        return list(self.request("GET", "/pids")["pids"])

    def process_exists(self, pid: int) -> bool:
        try:
            self.raw_request("HEAD", f"/{int(pid)}")
        except NotFound:
            return False
        return True

    def process_info(self, pid: int) -> ProcessInfo:
        return self.request("GET", f"/{int(pid)}")  # type: ignore[no-any-return]

    def process_stats(self, pid: int) -> ProcessStats:
        return self.request("GET", f"/{int(pid)}/stats")["stats"]  # type: ignore[no-any-return]

    def stop_process(self, pid: int) -> None:
        """Stop one process gracefully; a supervised one is replaced."""
        self.request("DELETE", f"/{int(pid)}")

    def signal_process(self, pid: int, signal: int | str) -> None:
        self.request("POST", f"/{int(pid)}/signal", {"signal": signal})

    def send(self, pid: int, data: bytes | str, stream: str | None = None) -> None:
        """Write to a process's stdin (or a named input stream)."""
        with self.channel_io(pid, stream, mode=2) as io:
            io.write(data)

    def channel_io(self, pid: int, stream: str | None = None, mode: int = 3) -> SyncProcessIO:
        """The process's IO channel (``/<pid>/channel``), as a blocking object:
        ``mode`` 1 reads its output, 2 writes to it, 3 both."""
        from gaffer.client.channel import ProcessIO

        return ProcessIO.open_sync(self.target, pid, stream, mode)

    # -- output and events ----------------------------------------------------------

    def output(
        self,
        pid: int,
        label: str = "stdout",
        *,
        offset: int | None = None,
        replay: int | None = None,
    ) -> BodyStream:
        """A process's output as it is written, until the process closes the
        stream: from ``offset`` (bytes since the stream began), or the last
        ``replay`` bytes, or all the daemon kept (64 KiB)."""
        path = f"/streams/{int(pid)}/{quote(label, safe='')}"
        return self.stream(path, {"offset": offset, "replay": replay})

    def tail(self, pid: int, label: str = "stdout", replay: int | None = None) -> tuple[int, bytes]:
        """What the daemon kept of a process's output (or its last ``replay``
        bytes), without waiting: ``(offset of the first byte, data)``."""
        path = f"/streams/{int(pid)}/{quote(label, safe='')}"
        params = {"feed": "longpoll", "timeout": 0, "replay": 1 << 30 if replay is None else replay}
        resp = self.raw_request("GET", path, params=params)
        return int(resp.headers.get("x-gaffer-start", "0")), resp.body

    def events(
        self,
        topics: Iterable[str] = ("EVENTS",),
        *,
        names: Iterable[str] = (),
        last_event_id: int | None = None,
        timeout: float | None = None,
    ) -> EventStream:
        """Events as they happen (``/events``), each a dict with its ``event``
        type, ``topic``, ``seq`` and payload; ``names`` keeps those of these
        sessions or jobs. ``last_event_id`` resumes after that sequence number;
        a ``gaffer:gap`` event says when some are gone. ``timeout`` bounds the
        wait for each event (ConnectionError when it passes)."""
        params = {"topic": list(topics), "name": list(names), "last_event_id": last_event_id}
        return EventStream(self.stream("/events", params, timeout=timeout))

    def channel(self) -> SyncChannel:
        """The pub/sub and command channel (``/channel``), blocking::

        with client.channel() as ch:
            ch.subscribe("EVENTS:job.default.web")
            print(ch.command("scale", "default.web", "+1"))
            for event in ch.events():
                ...
        """
        from gaffer.client.channel import Channel

        return Channel.open_sync(self.target)

    # -- keys and users -------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """A new API key for a user (``GET /auth`` with Basic credentials)."""
        import base64

        cred = base64.b64encode(f"{username}:{password}".encode()).decode()
        return str(
            self.request("GET", "/auth", headers={"Authorization": f"Basic {cred}"})["api_key"]
        )

    def keys(self) -> list[KeyInfo]:
        return list(self.request("GET", "/keys")["keys"])

    def key_info(self, key: str, include_keys: bool = False) -> KeyInfo:
        params = {"include_keys": "true"} if include_keys else None
        return self.request("GET", f"/keys/{quote(key, safe='')}", params=params)  # type: ignore[no-any-return]

    def create_key(
        self,
        permissions: Permissions | Mapping[str, Any],
        label: str = "",
        parent: str | None = None,
    ) -> dict[str, Any]:
        """A new key no broader than this client's; returns ``{"api_key", "key"}``
        (the secret token and the key's id)."""
        body: dict[str, Any] = {"permissions": dict(permissions), "label": label}
        if parent is not None:
            body["parent"] = parent
        return self.request("POST", "/keys", body)  # type: ignore[no-any-return]

    def delete_key(self, key: str) -> int:
        """Delete a key and its descendants; returns how many were deleted."""
        deleted = self.request("DELETE", f"/keys/{quote(key, safe='')}").get("deleted", [key])
        return len(deleted) if isinstance(deleted, list) else int(deleted)

    def users(self) -> list[UserInfo]:
        return list(self.request("GET", "/users")["users"])

    def user_info(self, username: str) -> UserInfo:
        return self.request("GET", f"/users/{quote(username, safe='')}")  # type: ignore[no-any-return]

    def create_user(
        self,
        username: str,
        password: str,
        *,
        user_type: int = 1,
        permissions: Mapping[str, Any] | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> UserInfo:
        """A user (``user_type`` 0 admin, 1 user) with a new key of
        ``permissions``, or with an existing ``key``."""
        body: dict[str, Any] = {"username": username, "password": password, "user_type": user_type}
        if permissions is not None:
            body["permissions"] = dict(permissions)
        if key is not None:
            body["key"] = key
        body.update(extra)
        return self.request("POST", "/users", body)["user"]  # type: ignore[no-any-return]

    def update_user(self, username: str, **fields: Any) -> UserInfo:
        path = f"/users/{quote(username, safe='')}"
        return self.request("PUT", path, fields)["user"]  # type: ignore[no-any-return]

    def delete_user(self, username: str) -> None:
        self.request("DELETE", f"/users/{quote(username, safe='')}")

    def set_password(self, username: str, password: str) -> None:
        self.request("PUT", f"/users/{quote(username, safe='')}/password", {"password": password})

    def set_user_key(self, username: str, key: str) -> None:
        self.request("PUT", f"/users/{quote(username, safe='')}/key", {"key": key})


class EventStream:
    """The events of an ``/events`` answer, decoded, as they arrive."""

    def __init__(self, body: BodyStream) -> None:
        self.body = body
        self._sse = iter_sse(body)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return sse_event(*next(self._sse))

    def settimeout(self, timeout: float | None) -> None:
        self.body.settimeout(timeout)

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers shared with the asyncio client ---------------------------------------------


_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "") -> str:
    """Percent-encode a path segment or query value; urllib.parse (and the
    ipaddress module it brings, ~4 ms) only loads for text that needs it."""
    if _SAFE.issuperset(text):
        return text
    from urllib.parse import quote as _quote

    return _quote(text, safe=safe)


def with_params(path: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return path
    pairs = []
    for name, value in params.items():
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            pairs.append(f"{quote(name)}={quote(str(v))}")
    return f"{path}?{'&'.join(pairs)}" if pairs else path


def refusal(resp: Response) -> Exception:
    """The typed error for a refusal, carrying the daemon's reason."""
    reason = resp.body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(reason)
        if isinstance(payload, dict) and "error" in payload:
            reason = str(payload["error"])
    except ValueError:
        pass
    return from_status(resp.status, reason or f"HTTP {resp.status}")


def sse_event(kind: str, data: str, id_: str | None) -> Event:
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


def decode(resp: Response) -> Any:
    if not resp.body:
        return None
    if resp.headers.get("content-type", "").startswith("application/json"):
        try:
            return json.loads(resp.body)
        except ValueError:
            raise ConnectionError("the daemon's answer is not valid JSON") from None
    return resp.body.decode("utf-8", "replace")
