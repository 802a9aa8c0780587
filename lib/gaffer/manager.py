"""The Manager: loads jobs into sessions and keeps their processes alive.

One manager runs on one event loop (uvloop unless ``GAFFER_LOOP=asyncio`` or
``Manager(loop_kind="asyncio")``). Apps — the HTTP API, the daemon's plumbing —
plug in with ``manager.start(apps=[...])``: each gets ``app.start(loop, manager)``
and, on shutdown, ``app.stop()``.

Every method is called on the loop's thread, except :meth:`Manager.stop` and
:meth:`Manager.restart`, which may be called from any thread. Methods that start
work which takes time (stopping, reloading) return a future; the ``wait_*``
coroutines wait for the state a caller wants, driven by events, never by polling.

Job names are ``session.job``; a name without a session means ``default``.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from gaffer import states
from gaffer.config import (
    DEFAULT_SESSION,
    ProcessConfig,
    check_dependencies,
    dependency_names,
    seconds,
    split_name,
)
from gaffer.errors import (
    AlreadyExists,
    BadRequest,
    ConfigError,
    GafferError,
    InvalidState,
    NotFound,
    ReloadFailed,
)
from gaffer.events import Event, EventEmitter, Listener, Subscription
from gaffer.job import Job
from gaffer.loop import new_event_loop
from gaffer.process import Process, abandon_handed_over
from gaffer.reaper import ChildWatcher, make_watcher
from gaffer.signals import parse_signal

log = logging.getLogger("gaffer.manager")

STATS_INTERVAL = 1.0
T = TypeVar("T")


class App(Protocol):
    def start(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None: ...

    def stop(self) -> Awaitable[None] | None: ...


class Manager:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        loop_kind: str | None = None,
        child_watcher: str | None = None,
    ) -> None:
        self._own_loop = loop is None
        self.loop = loop if loop is not None else new_event_loop(loop_kind)
        self.emitter = EventEmitter(self.loop)
        self._watcher_kind = child_watcher
        self.watcher: ChildWatcher = _NoWatcher()
        self._sessions: dict[str, dict[str, Job]] = {}
        self._processes: dict[int, Process] = {}
        self._lingering: set[Process] = set()
        self._draining: set[Process] = set()  # exited, output pipes not yet at EOF
        self._unloading: set[Job] = set()  # unloaded, processes still stopping
        self._held: set[Job] = set()  # started, waiting for their ``after`` jobs
        self._reloads: dict[Job, asyncio.Task[None]] = {}  # reloads running or queued
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pid_counter = itertools.count(1)
        self.apps: list[Any] = []
        self.started = False
        self._stopping: asyncio.Future[None] | None = None
        self._thread_id: int | None = None
        self._monitors: dict[str, list[Callable[..., Any]]] = {}
        self._stats_timer: asyncio.TimerHandle | None = None
        # Wall-clock time for schedules; tests replace it to be at any time of day.
        self.clock: Callable[[], float] = time.time
        # Per job, the time its schedule was followed up to (for catch_up; gafferd
        # saves it with its state and sets it back before loading the jobs).
        self.schedule_marks: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------

    def start(self, apps: Iterable[Any] = ()) -> None:
        """Start watching children and start each app (``app.start(loop, self)``)."""
        if self.started:
            raise InvalidState("the manager is already started")
        self.watcher = make_watcher(self.loop, self._watcher_kind)
        self._thread_id = threading.get_ident()
        self.started = True
        self._stopping = None
        for app in apps:
            app.start(self.loop, self)
            self.apps.append(app)
        self._publish("start", {})

    @property
    def spawning(self) -> bool:
        """Some job still has processes to spawn in batches on the next turns."""
        return any(job.spawning for job in self._all_jobs())

    def add_app(self, app: Any) -> None:
        """Start one more app on a started manager; it stops first (apps stop in
        the reverse of the order they started)."""
        if not self.active:
            raise InvalidState("the manager is not running")
        app.start(self.loop, self)
        self.apps.append(app)

    @property
    def active(self) -> bool:
        return self.started and self._stopping is None

    def run(self) -> None:
        """Run the loop until :meth:`stop` has finished (only for a manager that
        created its own loop)."""
        if not self.started:
            self.start()
        if self.loop.is_running():
            raise InvalidState("the loop is already running")
        self.loop.run_forever()

    def _in_loop_thread(self) -> bool:
        return self._thread_id is None or threading.get_ident() == self._thread_id

    def stop(
        self,
        callback: Callable[[Manager], Any] | None = None,
        graceful_timeout: float | None = None,
    ) -> None:
        """Stop every job gracefully (``graceful_timeout`` overrides each job's),
        then the apps; then call ``callback`` and, if :meth:`run` is running the
        loop, return from it. Thread-safe."""
        if not self._in_loop_thread():
            self.loop.call_soon_threadsafe(self.stop, callback, graceful_timeout)
            return
        fut = self._background(self.astop(graceful_timeout))

        def done(f: asyncio.Future[None]) -> None:
            try:
                if callback is not None:
                    callback(self)
            finally:
                if self._own_loop and self.loop.is_running():
                    self.loop.stop()

        fut.add_done_callback(done)

    async def astop(self, graceful_timeout: float | None = None) -> None:
        """Stop everything and wait for it. Jobs stop in reverse priority order."""
        if not self.started:
            return
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        self._stopping = self.loop.create_future()
        try:
            current = asyncio.current_task()
            for task in list(self._tasks):  # reloads in flight: the jobs are stopping
                if task is not current:
                    task.cancel()
            await self._stop_jobs([*self._all_jobs(), *self._unloading], graceful_timeout)
            # Crashed processes whose group members are still being stopped.
            await asyncio.gather(*(p.wait() for p in self._lingering))
            # Pipes a leftover may still hold open: stop reading them.
            for proc in self._draining:
                proc.close()
            self._draining.clear()
            self._stop_stats()
            # Apps stop last, so that they see (and can report) the jobs stopping.
            for app in reversed(self.apps):
                try:
                    result = app.stop()
                    if inspect.isawaitable(result):  # an app that closes asynchronously
                        await result
                except Exception:
                    log.exception("app %r failed to stop", app)
            self._publish("stop", {})
            for job in self._all_jobs():
                job.close()
            self.watcher.close()
            self.apps = []
            self.started = False
        finally:
            self._stopping.set_result(None)

    def restart(self, callback: Callable[[Manager], Any] | None = None) -> None:
        """Restart every app and every active job's processes. Thread-safe."""
        if not self._in_loop_thread():
            self.loop.call_soon_threadsafe(self.restart, callback)
            return
        self._require_active()

        async def run() -> None:
            for app in self.apps:
                if hasattr(app, "restart"):
                    app.restart()
            jobs = [j for j in self._all_jobs() if j.active]
            await self._stop_jobs(jobs, None)
            for job in sorted(jobs, key=lambda j: j.config.priority):
                # Not a job unloaded meanwhile, nor anything once shutdown began.
                if self.active and self._is_loaded(job):
                    job.start()
            if callback is not None:
                callback(self)

        self._background(run())

    async def _stop_jobs(self, jobs: list[Job], graceful_timeout: float | None) -> None:
        # Dependants (``after``) have exited before their dependencies stop; then
        # the highest priority value first; jobs of one rank stop together.
        depth = _depths(jobs)

        def rank(j: Job) -> tuple[int, int]:
            return (-depth[j], -j.config.priority)

        for _, group in itertools.groupby(sorted(jobs, key=rank), key=rank):
            # One job failing to stop must not leave the others running.
            members = list(group)
            results = await asyncio.gather(
                *(j.stop_all(graceful_timeout) for j in members), return_exceptions=True
            )
            for job, result in zip(members, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("%s: failed to stop", job.name, exc_info=result)

    def _background(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        # Keep a reference (the loop holds tasks only weakly) and log a failure
        # even if the caller never awaits it.
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, GafferError):
                log.warning("%s", exc.reason)
            else:
                log.error("background task failed", exc_info=exc)

    def kill_now(self) -> None:
        """SIGKILL every process group right now, without waiting (the last resort
        of a daemon that must exit at once: nothing is left running unsupervised)."""
        for proc in [*self._processes.values(), *self._lingering]:
            proc.kill_group_now()

    def wakeup(self) -> None:
        """Wake the loop from another thread (it runs pending callbacks)."""
        self.loop.call_soon_threadsafe(lambda: None)

    # -- ids and registry ---------------------------------------------------------

    def check_handoff(self) -> None:
        """Refuse a hand-over while processes are on their way out (a rollout, a
        scale-down, a stop): they could not be handed over, nor left behind."""
        self._require_active()
        busy = [
            j.name
            for j in self._all_jobs()
            if j.retiring
            or j.config_ops
            or j.lingering
            or any(p.state == states.STOPPING for p in j.all_processes())
        ]
        if busy or self._lingering or self._draining or self._unloading:
            what = ", ".join(busy) or "a job being unloaded"
            raise InvalidState(f"processes are stopping ({what}); re-execute once they are gone")

    def handoff(self) -> dict[str, Any]:
        """Everything a re-executed daemon needs to carry on with the same jobs
        and processes (same internal and OS pids, pipes kept open across exec).
        After this the manager watches nothing: exec (or exit) must follow."""
        self.check_handoff()
        jobs = []
        for job in self._all_jobs():
            jobs.append(
                {
                    "session": job.session,
                    "config": job.config.to_dict(),
                    "env": job.env,
                    "numprocesses": job.numprocesses,
                    "active": job.active,
                    "processes": job.handoff(),
                }
            )
        return {
            "next_pid": next(self._pid_counter),
            "seq": self.emitter.last_seq,
            "jobs": jobs,
            "schedule_marks": dict(self.schedule_marks),
        }

    def adopt(self, state: Mapping[str, Any]) -> int:
        """Load the jobs of a :meth:`handoff` and take over their processes;
        returns how many processes were adopted."""
        self._require_active()
        self._pid_counter = itertools.count(int(state["next_pid"]))
        self.emitter.advance(int(state.get("seq", 0)))
        self.restore_schedule_marks(state.get("schedule_marks"))
        adopted = 0
        for rec in state["jobs"]:
            try:
                config = ProcessConfig.from_dict(rec["config"])
                job = self.load(
                    config, sessionid=rec["session"], env=rec["env"], start=False, check_after=False
                )
                job.numprocesses = int(rec["numprocesses"])
            except Exception as e:  # e.g. a config this version no longer accepts
                log.error(
                    "cannot take over job %s: %s; stopping its processes", rec.get("config"), e
                )
                abandon_handed_over(rec.get("processes", []))
                continue
            job.adopt(rec["processes"])
            adopted += len(rec["processes"])
            if rec["active"]:
                job.start()  # spawns only the slots that have no process
        return adopted

    def restore_schedule_marks(self, marks: object) -> None:
        """Take the schedule marks a previous daemon saved (see :mod:`gaffer.schedule`)."""
        if not isinstance(marks, Mapping):
            return
        for name, t in marks.items():
            if isinstance(name, str) and isinstance(t, int | float) and not isinstance(t, bool):
                self.schedule_marks[name] = float(t)

    def get_process_id(self) -> int:
        """A new internal pid: a counter, never reused."""
        return next(self._pid_counter)

    def _register(self, proc: Process) -> None:
        self._processes[proc.pid] = proc

    def _unregister(self, proc: Process) -> None:
        self._processes.pop(proc.pid, None)
        if self._monitors.pop(str(proc.pid), None) is not None and not self._monitors:
            self._stop_stats()
        if proc.lingering:
            self._lingering.add(proc)
            proc.wait_future().add_done_callback(lambda _: self._lingering.discard(proc))
        if proc.reading:
            self._draining.add(proc)
            proc.on_drained = self._draining.discard

    def _publish(self, type_: str, data: dict[str, Any]) -> Event:
        return self.emitter.publish(type_, (f"manager.{type_}",), data)

    def _all_jobs(self) -> list[Job]:
        return [j for jobs in self._sessions.values() for j in jobs.values()]

    # -- jobs -------------------------------------------------------------------

    @property
    def sessions(self) -> list[str]:
        return list(self._sessions)

    def _require_active(self) -> None:
        if not self.started:
            raise InvalidState("the manager is not started")
        if self._stopping is not None:
            raise InvalidState("the manager is stopping")

    def load(
        self,
        config: ProcessConfig | Mapping[str, Any],
        sessionid: str | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = True,
        check_after: bool = True,
    ) -> Job:
        """Load a job into ``sessionid`` (default ``default``) and start it unless
        ``start`` or ``config.start`` is false. 409 if it exists. A job named in
        ``after`` must be loaded already, and no cycle may form (ConfigError);
        ``check_after=False`` is for a set of jobs checked as a whole (a config
        file), which may name a job loaded after it."""
        self._require_active()
        if not isinstance(config, ProcessConfig):
            config = ProcessConfig.from_dict(config)
        session = sessionid or DEFAULT_SESSION
        if "." in session or "/" in session:
            raise BadRequest(f"sessionid: no '.' or '/' allowed in {session!r}")
        jobs = self._sessions.setdefault(session, {})
        if config.name in jobs:
            raise AlreadyExists(f"job {session}.{config.name} already exists")
        env = dict(env or {})
        try:
            config.check_env(env)
            if check_after:
                self._check_after(f"{session}.{config.name}", config, session, missing=True)
        except BaseException:
            if not jobs:
                del self._sessions[session]
            raise
        job = Job(self, session, config.name, config, env)
        jobs[config.name] = job
        job._publish("load", {})
        if start and config.start:
            job.start()
        return job

    def _check_after(self, name: str, config: ProcessConfig, session: str, missing: bool) -> None:
        """ConfigError naming a missing dependency (if ``missing``) or the cycle
        that job ``name`` with ``config`` would close."""
        deps = dependency_names(config.after, session)
        graph = {j.name: j.dependencies for j in self._all_jobs()}
        graph[name] = deps
        if missing:
            for dep in deps:
                if dep not in graph:
                    raise ConfigError("after", f"no job {dep} (load it first)")
        # a job unloaded meanwhile is no cycle: only the edges between loaded jobs
        graph = {k: tuple(d for d in v if d in graph) for k, v in graph.items()}
        check_dependencies(graph, [name])

    # -- start gating (``after``) -------------------------------------------------

    def _hold(self, job: Job) -> str | None:
        why = self.waiting_for(job)
        if why is None:
            self._unhold(job)
            return None
        if not self._held:
            # Every job event may change a dependency's readiness; listened to
            # only while some job waits.
            self.emitter.subscribe("job", self._recheck_held)
        self._held.add(job)
        return why

    def _unhold(self, job: Job) -> None:
        if job in self._held:
            self._held.discard(job)
            if not self._held:
                self.emitter.unsubscribe("job", self._recheck_held)

    def _recheck_held(self, _: Event) -> None:
        for job in list(self._held):
            if job.active and self._is_loaded(job) and self._stopping is None:
                job.gate()
            else:
                self._unhold(job)

    def waiting_for(self, job: Job) -> str | None:
        """Why ``job`` may not start yet: which of its ``after`` jobs are not
        ready, and how far they are; None if all are."""
        reasons = []
        for dep in job.dependencies:
            session, jobname = dep.split(".", 1)
            other = self._sessions.get(session, {}).get(jobname)
            if other is None:
                reasons.append(f"for {dep} (not loaded)")
            elif other is job or other.ready:
                continue
            elif other.failed is not None:
                reasons.append(f"for {dep}, which failed ({other.failed})")
            elif not other.active:
                reasons.append(f"for {dep} (stopped)")
            elif other.waiting is not None:
                reasons.append(f"for {dep} (itself waiting)")
            else:
                want = other.numprocesses
                reasons.append(f"for {dep} ({other.ready_count}/{want} ready)")
        return ", ".join(reasons) or None

    def _resolve(self, name: str | ProcessConfig | Job, sessionid: str | None) -> Job:
        if isinstance(name, Job):
            return name
        if isinstance(name, ProcessConfig):
            name = name.name
            sessionid = sessionid or DEFAULT_SESSION
        session, jobname = split_name(name, sessionid)
        try:
            return self._sessions[session][jobname]
        except KeyError:
            raise NotFound(f"job {session}.{jobname} not found") from None

    def get(self, name: str, sessionid: str | None = None) -> Job:
        return self._resolve(name, sessionid)

    def unload(
        self, name_or_process: str | ProcessConfig | Job, sessionid: str | None = None
    ) -> asyncio.Future[Any]:
        """Stop every process of the job (one-off runs too) and remove it."""
        job = self._resolve(name_or_process, sessionid)
        del self._sessions[job.session][job.jobname]
        if not self._sessions[job.session]:
            del self._sessions[job.session]
        fut = job.stop_all()
        # Until its processes are gone, a shutdown must still wait for it.
        self._unloading.add(job)
        fut.add_done_callback(lambda _: self._unloading.discard(job))
        job.close()
        self.schedule_marks.pop(job.name, None)
        job._publish("unload", {})
        return _for_caller(fut)

    def update(
        self,
        config: ProcessConfig | Mapping[str, Any],
        sessionid: str | None = None,
        env: Mapping[str, str] | None = None,
        start: bool = False,
        check_after: bool = True,
    ) -> asyncio.Future[None]:
        """Replace a job's config. A running job is restarted slot by slot on the
        new config (new process first); a change of ``numprocesses`` or of the
        metadata (description, tags, version) or of the schedule alone applies in
        place, no process restarted. ``start`` also starts a stopped job."""
        self._require_active()
        if not isinstance(config, ProcessConfig):
            config = ProcessConfig.from_dict(config)
        job = self._resolve(config.name, sessionid or DEFAULT_SESSION)
        config.check_env(env if env is not None else job.env)
        if check_after and config.after != job.config.after:
            self._check_after(job.name, config, job.session, missing=True)
        return self._job_op(job, lambda: self._update_job(job, config, env, start))

    async def _update_job(
        self, job: Job, config: ProcessConfig, env: Mapping[str, str] | None, start: bool
    ) -> None:
        if not self._is_loaded(job):
            raise NotFound(f"job {job.name} was unloaded before its update ran")
        old, old_env = job.config, job.env
        if env is not None:
            job.env = dict(env)
        job._publish("update", {})
        if old.runs_like(config) or not job.active:
            job.config = config
            job.scale(f"={config.numprocesses}")  # in place: running processes are kept
            job.reschedule()
            if start:
                job.start()
            return
        # Roll the slots that stay over to the new config first, then resize: if
        # the rollout fails, nothing else has changed.
        try:
            await job.rolling_replace(config, limit=config.numprocesses)
        except ReloadFailed:
            job.env = old_env
            raise
        finally:
            job.reschedule()  # the new schedule, or the old one back
        job.scale(f"={config.numprocesses}")

    def reload(self, name: str, sessionid: str | None = None) -> asyncio.Future[None]:
        """Restart the job's processes one slot at a time (new process first; the
        old one stops once the new one is running). Asked again while a reload of
        the job is under way or queued, it is that reload: applied once."""
        self._require_active()
        job = self._resolve(name, sessionid)
        pending = self._reloads.get(job)
        if pending is not None and not pending.done():
            return _for_caller(pending)
        # Decided when asked: a running job is rolled (unless stopped before its
        # turn comes), a stopped one is started.
        was_active = job.active

        async def reload() -> None:
            if was_active:
                await job.rolling_replace()
            elif self._is_loaded(job) and not job.active:
                job.start()

        task = self._job_task(job, reload)
        self._reloads[job] = task
        task.add_done_callback(
            lambda t: self._reloads.pop(job) if self._reloads.get(job) is t else None
        )
        return _for_caller(task)

    def _job_op(self, job: Job, op: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Run a config operation (reload, update) of ``job`` after the ones asked
        for before it. The caller gets a future it may cancel without cancelling
        the operation; only a shutdown does that."""
        return _for_caller(self._job_task(job, op))

    def _job_task(self, job: Job, op: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        job.config_ops += 1

        async def run() -> None:
            async with job.config_lock:
                await op()

        task = self._background(run())

        def done(_: object) -> None:
            job.config_ops -= 1

        task.add_done_callback(done)
        return task

    def _is_loaded(self, job: Job) -> bool:
        return self._sessions.get(job.session, {}).get(job.jobname) is job

    def start_job(self, name: str, sessionid: str | None = None) -> Job:
        self._require_active()
        job = self._resolve(name, sessionid)
        job.start()
        return job

    def stop_job(self, name: str, sessionid: str | None = None) -> asyncio.Future[Any]:
        return self._resolve(name, sessionid).stop()

    def stop_session(self, sessionid: str) -> asyncio.Future[Any]:
        """Stop every job of a session, dependants before their dependencies."""
        if sessionid not in self._sessions:
            raise NotFound(f"session {sessionid} not found")
        jobs = list(self._sessions[sessionid].values())
        return _for_caller(self._background(self._stop_jobs(jobs, None)))

    def stopall(self, name: str | None = None) -> asyncio.Future[Any]:
        """Stop every process of job ``name`` (like :meth:`stop_job`), or of every
        job when ``name`` is None."""
        jobs = [self._resolve(name, None)] if name is not None else self._all_jobs()
        return _for_caller(self._background(self._stop_jobs(jobs, None)))

    def scale(self, name: str, n: int | str) -> int:
        """Change the wanted number of processes; returns it. See
        :func:`gaffer.job.parse_scale` for ``n``."""
        job = self._resolve(name, None)
        self._require_active()
        return job.scale(n)

    def manage(self, name: str) -> None:
        """Bring job ``name`` to its wanted size now."""
        self._resolve(name, None).manage()

    def commit(
        self,
        name: str,
        graceful_timeout: float = 0,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
    ) -> int:
        """Run a one-off process of the job, never restarted; returns its pid.
        ``args`` replace the job's arguments, ``env`` is added to its environment."""
        self._require_active()
        try:
            timeout = seconds("graceful_timeout", graceful_timeout)
        except ConfigError as e:
            raise BadRequest(e.reason) from None
        if env is not None and not isinstance(env, Mapping):
            raise BadRequest(f"env: expected a mapping, got {env!r}")
        for k, v in (env or {}).items():
            if not isinstance(k, str) or not isinstance(v, str) or "\0" in k + v or "=" in k:
                raise BadRequest(f"env.{k}: expected a string without NUL bytes")
        if args is not None and (
            isinstance(args, str | bytes)
            or not isinstance(args, Sequence)
            or not all(isinstance(a, str) and "\0" not in a for a in args)
        ):
            raise BadRequest(f"args: expected a list of strings without NUL bytes, got {args!r}")
        return self._resolve(name, None).commit(timeout, env, args).pid

    def jobs(self, sessionid: str | None = None) -> list[str]:
        if sessionid is not None:
            if sessionid not in self._sessions:
                raise NotFound(f"session {sessionid} not found")
            return [j.name for j in self._sessions[sessionid].values()]
        return [j.name for j in self._all_jobs()]

    def jobs_walk(
        self, callback: Callable[[Manager, str], Any], sessionid: str | None = None
    ) -> None:
        for name in self.jobs(sessionid):
            callback(self, name)

    def info(self, name: str) -> dict[str, Any]:
        return self._resolve(name, None).info()

    def stats(self, name: str) -> dict[str, Any]:
        """Per-process stats and job totals (cpu %, memory %) in 0.5's shape."""
        job = self._resolve(name, None)
        per = [p.stats() for p in job.processes]
        cpus = [s["cpu"] for s in per if s["cpu"] is not None]
        mems = [s["mem"] for s in per if s["mem"] is not None]
        return {
            "name": job.name,
            "stats": per,
            "cpu": round(sum(cpus), 3),
            "max_cpu": max(cpus, default=0.0),
            "min_cpu": min(cpus, default=0.0),
            "mem": round(sum(mems), 3),
            "max_mem": max(mems, default=0.0),
            "min_mem": min(mems, default=0.0),
        }

    # -- processes --------------------------------------------------------------

    def get_process(self, pid: int | str) -> Process:
        try:
            return self._processes[int(pid)]
        except (KeyError, ValueError, TypeError):
            raise NotFound(f"process {pid} not found") from None

    def pids(self, name: str | None = None) -> list[int]:
        if name is not None:
            return self._resolve(name, None).pids
        return sorted(self._processes)

    def list(self, name: str | None = None) -> builtins.list[Process]:
        """Live processes of a job (supervised ones), or of every job."""
        if name is not None:
            return self._resolve(name, None).processes
        return [self._processes[pid] for pid in sorted(self._processes)]

    def walk(self, callback: Callable[[Manager, Process], Any], name: str | None = None) -> None:
        for proc in self.list(name):
            callback(self, proc)

    def stop_process(self, pid: int | str) -> asyncio.Future[Process]:
        """Stop one process. A supervised one is replaced in its slot by a new
        process, as a crash would be; a one-off run just ends."""
        return self.get_process(pid).stop()

    def kill(self, pid: int | str, sig: int | str) -> None:
        """Send a signal (``15``, ``"15"``, ``"TERM"``, ``"SIGTERM"``) to one process."""
        signum = parse_signal(sig)
        self.get_process(pid).kill(signum)

    def killall(self, name: str, sig: int | str) -> None:
        """Send a signal to every live process of a job (one-off runs included)."""
        signum = parse_signal(sig)
        job = self._resolve(name, None)
        for proc in job.all_processes():
            if proc.alive:
                proc.kill(signum)
        job._publish("kill", {"signum": signum}, glob=False)

    def send(
        self, pid: int | str, lines: bytes | str | builtins.list[Any], stream: str | None = None
    ) -> None:
        """Write to a process's stdin (``redirect_input``) or custom stream."""
        proc = self.get_process(pid)
        if isinstance(lines, list):
            data = b"".join(x if isinstance(x, bytes) else str(x).encode() for x in lines)
        elif isinstance(lines, bytes | str):
            data = lines if isinstance(lines, bytes) else lines.encode()
        else:
            raise BadRequest(f"lines: expected text, bytes or a list, got {type(lines).__name__}")
        proc.send(data, stream)

    # -- events -----------------------------------------------------------------

    def subscribe(
        self, topic: str, maxsize: int = 10_000, max_bytes: int = 8 << 20
    ) -> Subscription:
        """A bounded queue of the events whose topic starts with ``topic``
        (``.`` for all). Pass it to :meth:`unsubscribe` when done."""
        sub = Subscription(topic, maxsize, max_bytes)
        self.emitter.subscribe(topic, sub)
        return sub

    def unsubscribe(self, topic: str, channel: Subscription | Listener) -> None:
        self.emitter.unsubscribe(topic, channel)
        if isinstance(channel, Subscription):
            channel.close()

    def monitor(self, listener: Callable[[str, dict[str, Any]], Any], name: str | int) -> None:
        """Call ``listener("stat", stats)`` every second for each process of job
        ``name`` (or for the process with that pid) until :meth:`unmonitor`.
        The sampling timer runs only while someone monitors."""
        self._monitored(name)  # NotFound now rather than silence later
        self._monitors.setdefault(str(name), []).append(listener)
        if self._stats_timer is None:
            self._stats_timer = self.loop.call_later(STATS_INTERVAL, self._sample_stats)

    def unmonitor(self, listener: Callable[..., Any], name: str | int) -> None:
        listeners = self._monitors.get(str(name), [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._monitors.pop(str(name), None)
        if not self._monitors:
            self._stop_stats()

    def _monitored(self, name: str | int) -> builtins.list[Process]:
        if isinstance(name, int) or name.isdigit():
            return [self.get_process(name)]
        return self._resolve(name, None).processes

    def _stop_stats(self) -> None:
        if self._stats_timer is not None:
            self._stats_timer.cancel()
            self._stats_timer = None

    def _sample_stats(self) -> None:
        self._stats_timer = None
        for name, listeners in list(self._monitors.items()):
            try:
                procs = self._monitored(name)
            except NotFound:  # the job was unloaded or the process has exited
                del self._monitors[name]
                continue
            for proc in procs:
                stats = proc.stats()
                for listener in list(listeners):
                    try:
                        listener("stat", stats)
                    except Exception:
                        log.exception("stats listener %r failed", listener)
        if self._monitors:
            self._stats_timer = self.loop.call_later(STATS_INTERVAL, self._sample_stats)

    # -- awaitables -------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float | None = None,
        topic: str = ".",
    ) -> None:
        """Return once ``predicate()`` is true, re-checking after every event on
        ``topic``. Raises TimeoutError after ``timeout`` seconds."""
        if predicate():
            return
        done = self.loop.create_future()

        def on_event(_: Event) -> None:
            if not done.done() and predicate():
                done.set_result(None)

        self.emitter.subscribe(topic, on_event)
        try:
            await asyncio.wait_for(done, timeout)
        finally:
            self.emitter.unsubscribe(topic, on_event)

    async def wait_running(
        self, name: str, n: int | None = None, timeout: float | None = None
    ) -> Job:
        """Wait until job ``name`` has ``n`` (default: its wanted number of)
        processes in the ``running`` state and no others."""
        job = self._resolve(name, None)

        def ok() -> bool:
            want = job.numprocesses if n is None else n
            # Re-checked on every event of the job: reject in O(1) while the last
            # slot (spawned last) is not running yet, before the O(n) check.
            if want:
                last = job.slots.get(want - 1)
                if last is None or last.process is None or last.process.state != states.RUNNING:
                    return False
            procs = job.processes
            return len(procs) == want and all(p.state == states.RUNNING for p in procs)

        await self.wait_for(ok, timeout, topic=f"job.{job.name}")
        return job

    async def wait_stopped(self, name: str, timeout: float | None = None) -> Job:
        """Wait until nothing of job ``name`` runs: no process (one-off runs
        included) and no member of a crashed process's group."""
        job = self._resolve(name, None)
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in job.all_processes())), timeout)
        return job


def _depths(jobs: builtins.list[Job]) -> dict[Job, int]:
    """Per job, the length of its longest chain of dependencies among ``jobs``
    (0: it depends on none of them)."""
    by_name = {j.name: j for j in jobs}
    depth: dict[Job, int] = {}

    def walk(job: Job, seen: frozenset[str]) -> int:
        if job not in depth:
            deps = [by_name[d] for d in job.dependencies if d in by_name and d not in seen]
            # ``seen`` guards a cycle (refused at load, but never a hang here)
            depth[job] = max((walk(d, seen | {d.name}) + 1 for d in deps), default=0)
        return depth[job]

    for job in jobs:
        walk(job, frozenset({job.name}))
    return depth


def _for_caller(task: asyncio.Future[T]) -> asyncio.Future[T]:
    """A future of ``task`` that the caller may cancel without cancelling the
    task, or ignore without asyncio complaining: the task's failure is logged
    once, by :meth:`Manager._task_done`."""
    outer = asyncio.shield(task)
    outer.add_done_callback(lambda f: f.cancelled() or f.exception())
    return outer


class _NoWatcher(ChildWatcher):
    kind = "none"

    def add(self, pid: int, callback: Any) -> None:
        raise InvalidState("the manager is not started")

    def remove(self, pid: int) -> None:
        pass

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return 0
