"""The HTTP API as a manager app: ``manager.start(apps=[HttpApp(settings)])``.

It serves the 0.5 wire API (plus OpenAPI, metrics, SSE and output streams) on
a unix socket and, when asked, on TCP with optional TLS. Sockets are bound in
:meth:`HttpApp.start`, so a bad address fails the daemon's start-up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from gaffer.errors import ConfigError, GafferError
from gaffer.http import (
    auth,
    channel,
    iochannel,
    jobs,
    misc,
    processes,
    runs,
    streaming,
)
from gaffer.http.base import NotFoundHandler
from gaffer.http.keystore import AuthStore
from gaffer.http.listen import Listeners, bind_listeners
from gaffer.http.reloading import NoReloader
from gaffer.http.replay import ReplayBuffer
from gaffer.http.settings import HttpSettings
from gaffer.manager import Manager

log = logging.getLogger("gaffer.http")

JOB = r"/jobs/([^/]+)/([^/]+)"
PID = r"/([0-9]+)"

ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (r"/", misc.WelcomeHandler),
    (r"/ping", misc.PingHandler),
    (r"/version", misc.VersionHandler),
    (r"/openapi.json", misc.OpenApiHandler),
    (r"/metrics", misc.MetricsHandler),
    (r"/reload", misc.ReloadHandler),
    (r"/logs/reopen", misc.ReopenLogsHandler),
    (r"/reexec", misc.ReexecHandler),
    (r"/sessions", jobs.SessionsHandler),
    (r"/status", jobs.StatusHandler),
    (r"/jobs", jobs.JobsHandler),
    (r"/jobs/([^/]+)", jobs.SessionJobsHandler),
    (JOB, jobs.JobHandler),
    (JOB + r"/stats", jobs.JobStatsHandler),
    (JOB + r"/numprocesses", jobs.NumProcessesHandler),
    (JOB + r"/pids", jobs.JobPidsHandler),
    (JOB + r"/state", jobs.JobStateHandler),
    (JOB + r"/signal", jobs.JobSignalHandler),
    (JOB + r"/commit", jobs.JobCommitHandler),
    (r"/pids", processes.PidsHandler),
    (PID, processes.ProcessHandler),
    (PID + r"/signal", processes.ProcessSignalHandler),
    (PID + r"/stats", processes.ProcessStatsHandler),
    (PID + r"/channel", iochannel.ProcessChannelHandler),
    (PID + r"/channel/([^/]+)", iochannel.ProcessChannelHandler),
    (r"/streams/([0-9]+)/([^/]+)", streaming.OutputHandler),
    (r"/events", streaming.EventsHandler),
    (r"/channel", channel.ChannelHandler),
    (r"/channel/websocket", channel.ChannelHandler),
    (r"/runs", runs.RunsHandler),
    (r"/runs/([0-9]+)", runs.RunHandler),
    (r"/auth", auth.AuthHandler),
    (r"/keys", auth.KeysHandler),
    (r"/keys/([^/]+)", auth.KeyHandler),
    (r"/users", auth.UsersHandler),
    (r"/users/([^/]+)", auth.UserHandler),
    (r"/users/([^/]+)/password", auth.UserPasswordHandler),
    (r"/users/([^/]+)/key", auth.UserKeyHandler),
]


access_log = logging.getLogger("gaffer.http.access")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request: refusals at info (a client's mistake, not the
    daemon's), failures at error; the path cut short so it cannot flood the log."""
    status = handler.get_status()
    level = logging.ERROR if status >= 500 else logging.INFO if status >= 400 else logging.DEBUG
    if access_log.isEnabledFor(level):
        req = handler.request
        ms = 1000.0 * req.request_time()
        access_log.log(level, "%d %s %.200r %.2fms", status, req.method, req.uri, ms)


def make_application(app: HttpApp) -> tornado.web.Application:
    return tornado.web.Application(
        [(pattern, handler, {"gaffer": app}) for pattern, handler in ROUTES],
        default_handler_class=NotFoundHandler,
        default_handler_args={"gaffer": app},
        log_function=log_request,
        websocket_ping_interval=None,
        compress_response=False,
    )


class HttpApp:
    """The HTTP API and the websocket channels, plugged into a Manager."""

    def __init__(
        self,
        settings: HttpSettings | None = None,
        store: AuthStore | None = None,
        listeners: Listeners | None = None,
        replay: ReplayBuffer | None = None,
    ) -> None:
        self.settings = settings or HttpSettings()
        # bound already (gafferd binds them before it starts any process)
        self.listeners = listeners
        # ...and kept the events since the manager started (for /events resumes)
        self._early_replay = replay
        self.store = store or AuthStore(self.settings.keys_db)
        self._store_ready: asyncio.Future[AuthStore] | None = None
        self.servers: list[tornado.httpserver.HTTPServer] = []
        self.addresses: list[str | tuple[str, int]] = []
        self.channels: set[Any] = set()  # open websockets
        self.streams: set[Any] = set()  # open SSE and output streams
        self.cut_off_clients = 0
        self.key_checks: dict[bytes, asyncio.Future[Any]] = {}  # scrypt checks in flight
        # gafferd plugs its config reloader in here (POST /reload)
        self.reloader: Any = NoReloader()
        # ...and what reopens its log files (POST /logs/reopen); None: no log files
        self.reopen_logs: Callable[[], None] | None = None
        # ...and what re-executes it in place (POST /reexec); None: not a daemon
        self.reexec: Callable[[], None] | None = None
        # ...and what keeps run records (/runs: gaffer.daemon.runs.RunsApp); None: not kept
        self.runs: Any = None
        self._manager: Manager | None = None
        self.replay: ReplayBuffer
        self._metrics: Any = None

    @property
    def manager(self) -> Manager:
        assert self._manager is not None, "the HTTP app is not started"
        return self._manager

    # -- lifecycle --------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None:
        self._manager = manager
        self.replay = self._early_replay or ReplayBuffer(manager.emitter, self.settings.replay_size)
        self._early_replay = None
        application = make_application(self)
        # Bodies up to twice the limit are read and answered 413 (with our error
        # shape); beyond that tornado cuts the connection with a bare 400. Either
        # way a client cannot make the daemon buffer more than this.
        max_body = self.settings.max_body_size * 2
        try:
            self._check_state_dir()
            listeners, self.listeners = self.listeners or bind_listeners(self.settings), None
        except BaseException:
            self.replay.close()
            raise
        if listeners.unix is not None and listeners.unix_path:
            server = tornado.httpserver.HTTPServer(application, max_body_size=max_body)
            self._accept(loop, server, [listeners.unix])
            self.servers.append(server)
            self.addresses.append(listeners.unix_path)
        for host, port, socks in listeners.tcp:
            server = tornado.httpserver.HTTPServer(
                application, ssl_options=listeners.ssl, max_body_size=max_body
            )
            self._accept(loop, server, socks)
            self.servers.append(server)
            self.addresses.append((host, port))
        if self.settings.bind and not self.settings.require_key:
            log.warning(
                "!!! API keys are NOT required on %s: anyone who can reach it controls "
                "every process. Set require_key: true unless this is a trusted network. !!!",
                ", ".join(self.settings.bind),
            )
        self._store_ready = asyncio.ensure_future(self._open_store(), loop=loop)

    def _check_state_dir(self) -> None:
        """Fail at start, not at the first request, when the state dir is unusable."""
        state_dir = self.settings.state_dir
        if state_dir is None:
            return
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise ConfigError("state_dir", f"{state_dir}: {e.strerror}") from None
        if not os.path.isdir(state_dir) or not os.access(state_dir, os.W_OK | os.X_OK):
            raise ConfigError("state_dir", f"{state_dir}: not a writable directory")

    @staticmethod
    def _accept(
        loop: asyncio.AbstractEventLoop,
        server: tornado.httpserver.HTTPServer,
        socks: list[socket.socket],
    ) -> None:
        # Tornado registers the accept handler on the *current* loop: do it from
        # inside the manager's loop, which may not be running yet.
        loop.call_soon(server.add_sockets, socks)

    async def _open_store(self) -> AuthStore:
        await self.store.open()
        return self.store

    async def auth_store(self) -> AuthStore:
        assert self._store_ready is not None, "the HTTP app is not started"
        return await asyncio.shield(self._store_ready)

    def _close_servers(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        path = self.settings.unix_socket
        if path and path in self.addresses:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.addresses.clear()

    async def stop(self) -> None:
        servers = list(self.servers)
        self._close_servers()
        for ws in list(self.channels):
            with contextlib.suppress(Exception):
                ws.close(1001, "gafferd is stopping")
        self.channels.clear()
        for stream in list(self.streams):
            stream.end()
        # Requests still in flight get a moment to finish; then they are cut.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(s.close_all_connections() for s in servers)), 2.0
            )
        self.replay.close()
        if self._store_ready is not None:
            with contextlib.suppress(Exception):
                await self._store_ready
            await self.store.close()

    def drop_revoked(self, store: AuthStore) -> int:
        """Close every websocket and stream opened with a key that no longer
        exists: deleting a key takes effect on open connections too."""
        dropped = 0
        for client in [*self.channels, *self.streams]:
            ident = getattr(client, "identity", None)
            key_id = getattr(ident, "key_id", None)
            if key_id is None:
                continue
            try:
                store.get_key(key_id)
            except GafferError:
                dropped += 1
                client.revoke()
        return dropped

    # -- figures ----------------------------------------------------------------

    def daemon_figures(self) -> Mapping[str, float]:
        return {
            "channel_clients": len(self.channels),
            "events_replay_size": len(self.replay),
            "slow_clients_cut_off": self.cut_off_clients,
        }

    def metrics(self) -> tuple[bytes, str]:
        # prometheus_client (and psutil) on the first scrape: ~4 MiB nobody else uses
        from gaffer.http import metrics

        if self._metrics is None:
            self._metrics = metrics.make_registry(self.manager, self.daemon_figures)
        return metrics.render(self._metrics)


__all__ = ["GafferError", "HttpApp", "HttpSettings", "make_application"]
