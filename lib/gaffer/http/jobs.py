"""Handlers for sessions and jobs: ``/sessions``, ``/jobs...`` (the 0.5 paths)."""

from __future__ import annotations

from typing import Any

from gaffer.config import ProcessConfig
from gaffer.errors import BadRequest
from gaffer.http.base import BaseHandler, job_name


class SessionsHandler(BaseHandler):
    def get(self) -> None:
        self.send_json({"sessions": self.identity.readable_sessions(self.manager)})


class TaggedHandler(BaseHandler):
    """A listing filtered by ``?tag=T`` (repeatable): a job with any of them."""

    def tagged(self, names: list[str]) -> list[str]:
        tags = set(self.get_query_arguments("tag"))
        if not tags:
            return names
        return [n for n in names if tags.intersection(self.manager.get(n).config.tags)]


class JobsHandler(TaggedHandler):
    def get(self) -> None:
        jobs = [j for j in self.tagged(self.manager.jobs()) if self.identity.can("read", j)]
        self.send_json({"jobs": jobs})


class StatusHandler(TaggedHandler):
    """``GET /status[?name=SESSION|SESSION.JOB][&tag=T][&stats=0]``: every
    readable job with one row per process — what ``gaffer ps`` shows, in one
    request."""

    def get(self) -> None:
        wanted = self.get_query_arguments("name")
        flag = self.get_query_argument("stats", "1").lower()
        if flag not in ("0", "1", "true", "false"):
            raise BadRequest(f"stats: expected 0 or 1, got {flag!r}")
        with_stats = flag in ("1", "true")
        out = []
        for name in self.tagged(self.manager.jobs()):
            if wanted and not any(name == w or name.startswith(w + ".") for w in wanted):
                continue
            if self.identity.can("read", name):
                out.append(self.manager.get(name).status(with_stats))
        self.send_json({"jobs": out})


class SessionJobsHandler(TaggedHandler):
    def get(self, session: str) -> None:
        # Refused before looked up: a key must not learn which sessions exist.
        perms = self.identity.perms
        entries = perms.read | perms.write | perms.manage
        if not perms.admin and not any(
            e in ("*", session) or e.startswith(session + ".") for e in entries
        ):
            self.identity.require("read", session)
        jobs = self.tagged(self.manager.jobs(session))
        jobs = [j for j in jobs if self.identity.can("read", j)]
        self.send_json({"sessionid": session, "jobs": jobs})

    def post(self, session: str) -> None:
        body = self.json_body()
        start = body.pop("start", True)
        if not isinstance(start, bool):
            raise BadRequest(f"start: expected true or false, got {start!r}")
        config = ProcessConfig.from_dict({**body, "start": start})
        self.identity.require("manage", job_name(session, config.name))
        self.manager.load(config, sessionid=session, start=start)
        self.send_json({"ok": True})


class JobBase(BaseHandler):
    """A handler under ``/jobs/<session>/<job>``; defines no method itself, so
    each subpath serves only the methods its own class implements."""

    def _name(self, session: str, job: str, level: str) -> str:
        name = job_name(session, job)
        self.identity.require(level, name)
        return name


class JobHandler(JobBase):
    def head(self, session: str, job: str) -> None:
        name = self._name(session, job, "read")
        self.manager.get(name)
        self.set_status(200)
        self.finish()

    def get(self, session: str, job: str) -> None:
        self.send_json(self.manager.info(self._name(session, job, "read")))

    async def put(self, session: str, job: str) -> None:
        name = self._name(session, job, "manage")
        body = self.json_body()
        body.setdefault("name", name.split(".", 1)[1])
        # as in 0.5: an update also starts a stopped job unless "start": false
        start = body.pop("start", True)
        if not isinstance(start, bool):
            raise BadRequest(f"start: expected true or false, got {start!r}")
        config = ProcessConfig.from_dict(body)
        if f"{name.split('.', 1)[0]}.{config.name}" != name:
            raise BadRequest(f"name: {config.name!r} does not match the job in the path ({name})")
        fut = self.manager.update(config, sessionid=name.split(".", 1)[0], start=start)
        if self.get_query_argument("wait", "false").lower() in ("1", "true", "yes"):
            await fut
        else:
            fut.add_done_callback(consume)
        self.send_json({"ok": True}, 201)

    async def delete(self, session: str, job: str) -> None:
        name = self._name(session, job, "manage")
        fut = self.manager.unload(name)
        if self.get_query_argument("wait", "false").lower() in ("1", "true", "yes"):
            await fut
        else:
            fut.add_done_callback(consume)
        self.send_json({"ok": True})


def consume(fut: Any) -> None:
    # The outcome of background work is reported through events; retrieve the
    # exception here so asyncio does not log it as never retrieved.
    if not fut.cancelled():
        fut.exception()


class JobStatsHandler(JobBase):
    def get(self, session: str, job: str) -> None:
        self.send_json(self.manager.stats(self._name(session, job, "read")))


class NumProcessesHandler(JobBase):
    def get(self, session: str, job: str) -> None:
        name = self._name(session, job, "read")
        self.send_json({"numprocesses": self.manager.get(name).numprocesses})

    def post(self, session: str, job: str) -> None:
        name = self._name(session, job, "write")
        body = self.json_body()
        if "scale" not in body:
            raise BadRequest("scale: required (an integer, '+N', '-N' or '=N')")
        n = self.manager.scale(name, body["scale"])
        self.send_json({"numprocesses": n})


class JobPidsHandler(JobBase):
    def get(self, session: str, job: str) -> None:
        self.send_json({"pids": self.manager.pids(self._name(session, job, "read"))})


class JobStateHandler(JobBase):
    def get(self, session: str, job: str) -> None:
        name = self._name(session, job, "read")
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish("1" if self.manager.get(name).active else "0")

    async def post(self, session: str, job: str) -> None:
        name = self._name(session, job, "write")
        raw = self.request.body.strip().strip(b'"')
        fut = None
        if raw == b"1":
            self.manager.start_job(name)
        elif raw == b"0":
            fut = self.manager.stop_job(name)
        elif raw == b"2":
            fut = self.manager.reload(name)
        else:
            raise BadRequest(f"body: expected 1 (start), 0 (stop) or 2 (reload), got {raw[:20]!r}")
        if fut is not None and self.get_query_argument("wait", "false").lower() in (
            "1",
            "true",
            "yes",
        ):
            # answered once stopped, or rolled over: a failed roll is a 409 saying
            # which new process failed (the old ones keep running)
            await fut
            self.send_json({"ok": True})
            return
        if fut is not None:
            fut.add_done_callback(consume)
        self.send_json({"ok": True}, 202)


class JobSignalHandler(JobBase):
    def post(self, session: str, job: str) -> None:
        name = self._name(session, job, "write")
        body = self.json_body()
        if "signal" not in body:
            raise BadRequest("signal: required (a number or a name like TERM or SIGTERM)")
        self.manager.get(name)  # 404 before a 400 for the signal
        self.manager.killall(name, _signal(body["signal"]))
        self.send_json({"ok": True}, 202)


class JobCommitHandler(JobBase):
    def post(self, session: str, job: str) -> None:
        name = self._name(session, job, "write")
        body = self.json_body(required=False)
        unknown = set(body) - {"graceful_timeout", "env", "args"}
        if unknown:
            raise BadRequest(f"{sorted(unknown)[0]}: unknown option (graceful_timeout, env, args)")
        env = body.get("env")
        args = body.get("args")
        if args is not None and (
            not isinstance(args, list) or not all(isinstance(a, str) for a in args)
        ):
            raise BadRequest(f"args: expected a list of strings, got {args!r}")
        if env or args is not None:
            # A new environment can make the program run anything (LD_PRELOAD,
            # PATH, PYTHON*...), and so can new arguments (`sh -c ...`): that is
            # changing the job's config, not running it.
            self.identity.require("manage", name)
        if env is not None and (
            not isinstance(env, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
        ):
            raise BadRequest("env: expected an object of strings")
        pid = self.manager.commit(name, body.get("graceful_timeout", 0), env, args)
        self.send_json({"pid": pid})


def _signal(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(f"signal: expected a number or a name, got {value!r}")
    return value
