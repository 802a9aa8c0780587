"""The blocking client: one method per endpoint of gafferd's HTTP API.

Results are the daemon's JSON, typed for checkers by :mod:`gaffer.client.types`;
refusals raise the exceptions of :mod:`gaffer.client.errors` with the daemon's
reason. Imports are kept light: the ``gaffer`` command is built on this.
"""

from __future__ import annotations

from gaffer.client import api
from gaffer.client.api import decode, job_path, quote, refusal, sse_event, with_params
from gaffer.client.errors import NotFound
from gaffer.client.wire import BodyStream, Connection, Response, iter_sse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, TypeVar

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

    R = TypeVar("R")

# job_path and quote are the command's (it imports them from here)
__all__ = ["Client", "EventStream", "job_path", "quote"]


class Client(api.ClientBase):
    """A blocking client of one gafferd::

        from gaffer.client import Client

        with Client("/run/gaffer/gafferd.sock") as c:
            c.scale("default.web", "=3")
            for job in c.status():
                print(job["name"], job["running"])

    ``host`` is what :class:`~gaffer.client.target.Target` accepts; or pass a
    ready ``target``.
    """

    def _setup(self) -> None:
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
        return decode(self.raw_request(method, path, body, raw=raw, headers=headers, params=params))

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
        """Send a request; return the answer as it came; raise the typed
        error on a refusal."""
        return self._send(api.Call(method, path, body, raw=raw, headers=headers, params=params))

    def _send(self, call: api.Call[Any]) -> Response:
        data, headers = call.encode()
        resp = self._conn.request(call.method, call.uri, data, headers)
        if resp.status >= 400:
            raise refusal(resp)
        return resp

    def _call(self, call: api.Call[R]) -> R:
        return call.result(self._send(call))

    def _exists(self, call: api.Call[bool]) -> bool:
        try:
            return self._call(call)
        except NotFound:
            return False

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
        return self._call(api.welcome())

    def ping(self) -> bool:
        """True when the daemon answers; raises ConnectionError when it cannot be reached."""
        return self._call(api.ping())

    def version(self) -> str:
        return self._call(api.version())

    def openapi(self) -> dict[str, Any]:
        return self._call(api.openapi())

    def metrics(self) -> str:
        return self._call(api.metrics())

    def reload_config(self) -> ReloadResult:
        """Re-read gafferd's config file and apply the difference (SIGHUP);
        a file that does not load raises Conflict and changes nothing."""
        return self._call(api.reload_config())

    def last_reload(self) -> ReloadResult:
        return self._call(api.last_reload())

    def reopen_logs(self) -> None:
        return self._call(api.reopen_logs())

    def reexec(self) -> None:
        """Re-execute gafferd in place; its processes keep running."""
        return self._call(api.reexec())

    # -- sessions and jobs ----------------------------------------------------------

    def sessions(self) -> list[str]:
        return self._call(api.sessions())

    def jobs(self, session: str | None = None, tags: Iterable[str] = ()) -> list[str]:
        """The loaded jobs (of ``session``), as ``session.job``; with ``tags``,
        those with any of them."""
        return self._call(api.jobs(session, tags))

    def status(
        self, names: Iterable[str] = (), stats: bool = True, tags: Iterable[str] = ()
    ) -> list[JobStatus]:
        """Every job (or those of the given sessions/jobs; with ``tags``, those
        with any of them) with a row per process."""
        return self._call(api.status(names, stats, tags))

    def job_exists(self, name: str) -> bool:
        return self._exists(api.job_exists(name))

    def job_info(self, name: str) -> JobInfo:
        return self._call(api.job_info(name))

    def load(self, config: Mapping[str, Any], session: str = "default", start: bool = True) -> None:
        """Load a job (a config as the API takes it: ``name``, ``cmd``, ...)."""
        return self._call(api.load(config, session, start))

    def update(self, name: str, config: Mapping[str, Any], start: bool = True) -> None:
        """Replace a job's config; its processes are rolled over to it. Returns
        when the update is done."""
        return self._call(api.update(name, config, start))

    def unload(self, name: str) -> None:
        return self._call(api.unload(name))

    def job_stats(self, name: str) -> JobStats:
        return self._call(api.job_stats(name))

    def numprocesses(self, name: str) -> int:
        return self._call(api.numprocesses(name))

    def scale(self, name: str, n: int | str) -> int:
        """``n``: an int adds (negative removes), ``"+N"``, ``"-N"`` or ``"=N"``.
        Returns the new wanted number of processes."""
        return self._call(api.scale(name, n))

    def job_pids(self, name: str) -> list[int]:
        return self._call(api.job_pids(name))

    def is_active(self, name: str) -> bool:
        return self._call(api.is_active(name))

    def start_job(self, name: str) -> None:
        return self._call(api.set_state(name, b"1"))

    def stop_job(self, name: str, wait: bool = False) -> None:
        return self._call(api.set_state(name, b"0", wait))

    def restart_job(self, name: str, wait: bool = False) -> None:
        """Replace every process of the job (0.5's "reload" of a job), one slot
        at a time. With ``wait``, return once done; a new process that fails to
        start raises Conflict naming it (the old ones keep running)."""
        return self._call(api.set_state(name, b"2", wait))

    def signal_job(self, name: str, signal: int | str) -> None:
        return self._call(api.signal_job(name, signal))

    def commit(
        self,
        name: str,
        graceful_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] | None = None,
    ) -> int:
        """Run a one-off process with the job's config (``args`` replace its
        args); returns its pid."""
        return self._call(api.commit(name, graceful_timeout, env, args))

    # -- run records (gafferd) ----------------------------------------------------

    def runs(
        self,
        job: str | None = None,
        once: bool | None = None,
        reason: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        return self._call(api.runs(job, once, reason, since, limit))

    def run(self, rid: int) -> dict[str, Any]:
        return self._call(api.run(rid))

    def cancel_run(self, rid: int) -> dict[str, Any]:
        return self._call(api.cancel_run(rid))

    # -- processes ------------------------------------------------------------------

    def pids(self) -> list[int]:
        return self._call(api.pids())

    def process_exists(self, pid: int) -> bool:
        return self._exists(api.process_exists(pid))

    def process_info(self, pid: int) -> ProcessInfo:
        return self._call(api.process_info(pid))

    def process_stats(self, pid: int) -> ProcessStats:
        return self._call(api.process_stats(pid))

    def stop_process(self, pid: int) -> None:
        """Stop one process gracefully; a supervised one is replaced."""
        return self._call(api.stop_process(pid))

    def signal_process(self, pid: int, signal: int | str) -> None:
        return self._call(api.signal_process(pid, signal))

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
        call = api.output(pid, label, offset, replay)
        return self.stream(call.path, call.params)

    def tail(self, pid: int, label: str = "stdout", replay: int | None = None) -> tuple[int, bytes]:
        """What the daemon kept of a process's output (or its last ``replay``
        bytes), without waiting: ``(offset of the first byte, data)``."""
        return self._call(api.tail(pid, label, replay))

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
        call = api.events(topics, names, last_event_id)
        return EventStream(self.stream(call.path, call.params, timeout=timeout))

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
        return self._call(api.login(username, password))

    def keys(self) -> list[KeyInfo]:
        return self._call(api.keys())

    def key_info(self, key: str, include_keys: bool = False) -> KeyInfo:
        return self._call(api.key_info(key, include_keys))

    def create_key(
        self,
        permissions: Permissions | Mapping[str, Any],
        label: str = "",
        parent: str | None = None,
    ) -> dict[str, Any]:
        """A new key no broader than this client's; returns ``{"api_key", "key"}``
        (the secret token and the key's id)."""
        return self._call(api.create_key(permissions, label, parent))

    def delete_key(self, key: str) -> int:
        """Delete a key and its descendants; returns how many were deleted."""
        return self._call(api.delete_key(key))

    def users(self) -> list[UserInfo]:
        return self._call(api.users())

    def user_info(self, username: str) -> UserInfo:
        return self._call(api.user_info(username))

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
        return self._call(api.create_user(username, password, user_type, permissions, key, extra))

    def update_user(self, username: str, **fields: Any) -> UserInfo:
        return self._call(api.update_user(username, fields))

    def delete_user(self, username: str) -> None:
        return self._call(api.delete_user(username))

    def set_password(self, username: str, password: str) -> None:
        return self._call(api.set_password(username, password))

    def set_user_key(self, username: str, key: str) -> None:
        return self._call(api.set_user_key(username, key))


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
