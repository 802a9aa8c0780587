"""Handlers for processes by internal pid: ``/pids``, ``/<pid>...``."""

from __future__ import annotations

from gaffer.errors import BadRequest
from gaffer.http.base import BaseHandler
from gaffer.http.jobs import consume


class PidsHandler(BaseHandler):
    def get(self) -> None:
        self.send_json({"pids": self.identity.readable_pids(self.manager)})


class ProcessHandler(BaseHandler):
    def head(self, pid: str) -> None:
        self.process(pid, "read")
        self.finish()

    def get(self, pid: str) -> None:
        self.send_json(self.process(pid, "read").info())

    def delete(self, pid: str) -> None:
        proc = self.process(pid, "write")
        self.manager.stop_process(proc.pid).add_done_callback(consume)
        self.send_json({"ok": True}, 202)


class ProcessSignalHandler(BaseHandler):
    def post(self, pid: str) -> None:
        proc = self.process(pid, "write")
        body = self.json_body()
        if "signal" not in body:
            raise BadRequest("signal: required (a number or a name like TERM or SIGTERM)")
        self.manager.kill(proc.pid, body["signal"])
        self.send_json({"ok": True}, 202)


class ProcessStatsHandler(BaseHandler):
    def get(self, pid: str) -> None:
        self.send_json({"stats": self.process(pid, "read").stats()})
