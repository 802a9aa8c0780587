"""Handlers for the daemon itself: welcome, ping, version, the OpenAPI
description and the Prometheus metrics."""

from __future__ import annotations

from gaffer import __version__
from gaffer.errors import InvalidState, NotFound
from gaffer.http.base import BaseHandler
from gaffer.http.openapi import spec


class WelcomeHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send_json({"welcome": "gaffer", "version": __version__})


class PingHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("OK")


class VersionHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send_json({"name": "gaffer", "version": __version__})


class OpenApiHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send_json(spec())


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.identity.require("read", None)
        body, content_type = self.gaffer.metrics()
        self.set_header("Content-Type", content_type)
        self.finish(body)


class ReopenLogsHandler(BaseHandler):
    """``POST /logs/reopen``: reopen the jobs' log files (what SIGUSR1 does)."""

    def post(self) -> None:
        self.identity.require("manage", None)
        if self.gaffer.reopen_logs is None:
            raise InvalidState("this daemon writes no log files")
        self.gaffer.reopen_logs()
        self.send_json({"ok": True}, 202)


class ReexecHandler(BaseHandler):
    """``POST /reexec``: re-execute gafferd in place (what SIGUSR2 does): same
    PID, every child kept and still supervised, its output still captured."""

    def post(self) -> None:
        self.identity.require("manage", None)
        if self.gaffer.reexec is None:
            raise InvalidState("this manager is not a gafferd daemon: nothing to re-execute")
        self.send_json({"ok": True}, 202)
        self.gaffer.reexec()  # after the answer is written: the exec follows soon


class ReloadHandler(BaseHandler):
    """``GET /reload``: how the last reload went; ``POST /reload``: re-read the
    config file and apply the difference (what SIGHUP does)."""

    def get(self) -> None:
        self.identity.require("read", None)
        last = self.gaffer.reloader.last
        if last is None:
            raise NotFound("no reload has happened yet")
        self.send_json(last.to_dict())

    async def post(self) -> None:
        self.identity.require("manage", None)
        result = await self.gaffer.reloader.reload()
        if not result.ok:
            self.send_json(
                {"error": result.error, "errno": 409, "reload": result.to_dict()}, status=409
            )
            return
        self.send_json(result.to_dict())
