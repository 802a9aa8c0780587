"""One supervised OS process and its state machine.

A :class:`Process` is spawned once and ends once. Every change of state goes
through :meth:`Process._set_state`, which checks the move against
:data:`gaffer.states.TRANSITIONS` and publishes exactly one ``state`` event. The
decision of what happens after an exit (replace now, back off, give up) is the
job's: the process reports its exit and the job calls :meth:`Process.finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gaffer import states
from gaffer.config import ProcessConfig
from gaffer.errors import InvalidState, InvalidTransition, NotFound
from gaffer.readiness import NOTIFY, CheckFailed, HealthConfig, ReadyConfig, attempt
from gaffer.reaper import ExitStatus, GroupWatch
from gaffer.sdnotify import NotifySocket
from gaffer.signals import signal_name
from gaffer.spawn import SpawnSpec, group_alive, pid_alive, signal_group, spawn, which
from gaffer.stats import OomCounter, brief, sample
from gaffer.streams import PipeReader, PipeWriter, Tail

if TYPE_CHECKING:
    import psutil

    from gaffer.events import EventEmitter
    from gaffer.reaper import ChildWatcher

log = logging.getLogger("gaffer.process")

# How long SIGKILLed group members may take to vanish before a stop stops waiting
# (SIGKILL cannot be caught; only a process in uninterruptible sleep outlives it).
KILL_GRACE = 1.0


class Process:
    """A running (or finished) child. ``pid`` is gaffer's internal id; ``os_pid``
    is the kernel's."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        executables: dict[tuple[str, str], str] | None = None,
        emitter: EventEmitter,
        watcher: ChildWatcher,
        pid: int,
        job: str,
        config: ProcessConfig,
        index: int,
        env: Mapping[str, str] | None = None,
        committed: bool = False,
        graceful_timeout: float | None = None,
        on_exit: Callable[[Process], None] | None = None,
        oom: OomCounter | None = None,
    ) -> None:
        self.loop = loop
        self._emitter = emitter
        self._watcher = watcher
        self.pid = pid
        self.name = job
        self.config = config
        self.index = index
        self.extra_env = dict(env or {})
        self.committed = committed
        self.graceful_timeout = (
            graceful_timeout if graceful_timeout is not None else config.graceful_timeout
        )
        self._on_exit = on_exit
        self._executables = executables if executables is not None else {}
        self._oom = oom

        self.state = states.STARTING
        self.reason: str | None = None
        self.os_pid: int | None = None
        self.create_time: float | None = None  # wall clock, seconds
        self.started_mono: float | None = None
        self.ended_mono: float | None = None
        self.exit: ExitStatus | None = None
        self.stop_requested = False
        self.exit_reason: str | None = None  # why it ended: exited, killed, stopped...
        self.spawn_error: str | None = None

        self.env: dict[str, str] = {}
        self.argv: list[str] = []
        self.readers: dict[str, PipeReader] = {}
        self.writers: dict[str, PipeWriter] = {}
        self.tails: dict[str, Tail] = {}

        self._timer: asyncio.TimerHandle | None = None
        # readiness: the check task, its deadline, the last attempt's error, and
        # why the process was stopped for missing the deadline
        self._ready_task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._unwinding: list[asyncio.Task[None]] = []  # cancelled checks, finishing
        self.ready_error: str | None = None
        self.not_ready: str | None = None
        # sd_notify (notify: true): its socket, STATUS=, MAINPID= and the watchdog
        self._notify: NotifySocket | None = None
        self.status_text: str | None = None
        self.main_pid: int | None = None
        self._main_fd: int | None = None  # a pidfd on main_pid, once the leader is gone
        self._followed = False
        self.watchdog_usec = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_ping = 0.0
        # liveness (health:) and the one-off run's time limit (timeout:)
        self._health_task: asyncio.Task[None] | None = None
        self.healthy: bool | None = None
        self.health_error: str | None = None
        self._limit: asyncio.TimerHandle | None = None
        self._health: tuple[HealthConfig, str | list[str]] | None = None
        # why gaffer stopped a running process itself: (exit reason, message)
        self.condemned: tuple[str, str] | None = None
        self._kill_timer: asyncio.TimerHandle | None = None
        self._group_killed = False
        self._group: GroupWatch | None = None
        self.on_drained: Callable[[Process], None] | None = None
        self._drained_callbacks: list[Callable[[Process], None]] = []
        self._stopped: asyncio.Future[Process] = loop.create_future()
        self._psutil: psutil.Process | None = None
        self._cpu_sample: tuple[float, float] | None = None  # for status(): (CPU s, when)

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name}[{self.index}] os_pid={self.os_pid} {self.state}>"

    # -- topics -----------------------------------------------------------------

    def _publish(self, type_: str, data: dict[str, Any], glob: bool = True) -> None:
        topics: tuple[str, ...] = (f"job.{self.name}.{type_}", f"proc.{self.pid}.{type_}")
        if glob:
            topics = (type_, *topics)
        self._emitter.publish(type_, topics, data)

    # -- life -------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the OS process. Raises OSError if it cannot be started; the
        process object is then finished (``fatal``) and must not be used."""
        cfg = self.config
        self.env = cfg.build_env(self.index, self.extra_env, pid=self.pid)
        self.argv = cfg.build_argv(self.env)
        check = None if self.committed else cfg.ready_check
        target = check.expand(self.env) if check is not None else None
        health = None if self.committed else cfg.health_check
        health_target = health.expand(self.env, "health") if health is not None else None
        if cfg.notify and not self.committed:
            uid = cfg.uid if isinstance(cfg.uid, int) else os.geteuid()
            self._notify = NotifySocket(self.loop, self._on_notify, uid, str(self.pid))
            self.env["NOTIFY_SOCKET"] = self._notify.name
            if cfg.watchdog_sec:
                self.watchdog_usec = int(cfg.watchdog_sec * 1_000_000)
                self.env["WATCHDOG_USEC"] = str(self.watchdog_usec)
        labels = cfg.redirect_output
        # Popen searches PATH on every spawn; the job remembers where it found a
        # program (and forgets it if the program is gone, see spawn_failed).
        key = (self.argv[0], self.env.get("PATH", ""))
        executable = self._executables.get(key)
        if executable is None:
            executable = which(self.argv[0], self.env)
            if executable is not None:
                self._executables[key] = executable
        spec = SpawnSpec(
            argv=self.argv,
            env=self.env,
            executable=executable,
            cwd=cfg.cwd,
            uid=cfg.uid if isinstance(cfg.uid, int) else None,
            gid=cfg.gid if isinstance(cfg.gid, int) else None,
            umask=cfg.umask if isinstance(cfg.umask, int) else None,
            detach=cfg.detach,
            stdin=cfg.redirect_input,
            outputs=len(labels),
            custom_streams=len(cfg.custom_streams),
        )
        try:
            spawned = spawn(spec)
        except BaseException:
            self._close_notify()
            raise
        # Popen must not try to reap the child itself: the watcher does.
        spawned.popen.returncode = 0  # keeps Popen.__del__ from tracking it
        raw = [fd for fd in (spawned.stdin, spawned.stdout, spawned.stderr) if fd is not None]
        raw += spawned.custom
        watched = False
        try:
            self._watcher.add(spawned.pid, self._exited)
            watched = True
            if spawned.stdin is not None:
                self.writers["stdin"] = PipeWriter(self.loop, spawned.stdin)
            if spawned.stdout is not None:
                self._add_reader(labels[0], spawned.stdout)
            if spawned.stderr is not None:
                self._add_reader(labels[1], spawned.stderr)
            for label, fd in zip(cfg.custom_streams, spawned.custom, strict=True):
                self.writers[label] = PipeWriter(self.loop, os.dup(fd))
                self._add_reader(label, fd)
        except BaseException:
            # A child we cannot fully supervise must not run: kill it, reap it here
            # (not through the watcher) and release every fd.
            if watched:
                self._watcher.remove(spawned.pid)
            signal_group(spawned.pid, signal.SIGKILL)
            os.waitpid(spawned.pid, 0)
            owned = {r.fd for r in self.readers.values()} | {w.fd for w in self.writers.values()}
            self.close()
            self.readers.clear()
            self.writers.clear()
            self.tails.clear()
            for fd in raw:
                if fd not in owned:
                    os.close(fd)
            raise
        self.os_pid = spawned.pid
        self.create_time = time.time()
        self.started_mono = time.monotonic()

        data = self._ids()
        self._publish("spawn", data)
        if health is not None:
            assert health_target is not None
            self._health = (health, health_target)
        if self.committed and cfg.timeout:
            why = f"still running after timeout={cfg.timeout:g}s"
            self._limit = self.loop.call_later(cfg.timeout, self._condemn, "timeout", why)
        startsecs = 0.0 if self.committed else cfg.startsecs
        if check is not None:
            assert target is not None
            # starting until the check first passes (startsecs does not apply)
            if check.kind != NOTIFY:  # READY=1 arrives by itself
                self._ready_task = self.loop.create_task(self._check_until_ready(check, target))
            self._deadline = self.loop.call_later(check.deadline, self._missed_deadline, check)
        elif startsecs <= 0:
            self._set_state(states.RUNNING, "started")
        else:
            self._timer = self.loop.call_later(startsecs, self._started)

    def handoff(self) -> dict[str, Any] | None:
        """For a re-exec of the daemon: stop watching and reading this process
        but leave it running, its pipes open and inheritable; returns what the
        next daemon needs to adopt it (None when there is nothing to hand over)."""
        if (
            self.os_pid is None
            or self.exit is not None
            or self.state
            not in (
                states.STARTING,
                states.RUNNING,
            )
        ):
            return None
        self._watcher.remove(self.os_pid)
        for timer in (self._timer, self._kill_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._kill_timer = None
        self._cancel_checks()
        following = self._main_fd is not None  # the leader is gone; main_pid is the process
        if self._main_fd is not None:
            self.loop.remove_reader(self._main_fd)
            os.close(self._main_fd)
            self._main_fd = None
        notify_fd = self._notify.detach() if self._notify is not None else None
        if notify_fd is not None:
            os.set_inheritable(notify_fd, True)
        readers = {label: r.detach() for label, r in self.readers.items()}
        writers = {label: w.detach() for label, w in self.writers.items()}
        for fd in [*readers.values(), *writers.values()]:
            if fd is not None:
                os.set_inheritable(fd, True)
        return {
            "pid": self.pid,
            "index": self.index,
            "os_pid": self.os_pid,
            "create_time": self.create_time,
            "env": self.env,
            "argv": self.argv,
            "committed": self.committed,
            "graceful_timeout": self.graceful_timeout,
            "readers": {k: v for k, v in readers.items() if v is not None},
            "writers": {k: v for k, v in writers.items() if v is not None},
            "notify": None
            if notify_fd is None or self._notify is None
            else {
                "fd": notify_fd,
                "name": self._notify.name,
                "status": self.status_text,
                "main_pid": self.main_pid,
                "following": following,
                "watchdog_usec": self.watchdog_usec,
            },
        }

    def adopt(self, rec: Mapping[str, Any]) -> None:
        """Take over a process handed over by :meth:`handoff` (after a re-exec it
        is still our child): watch it, read its pipes, call it running."""
        self.env = dict(rec.get("env") or {})
        self.argv = list(rec.get("argv") or [])
        self.os_pid = int(rec["os_pid"])
        self.create_time = float(rec["create_time"])
        self.started_mono = time.monotonic() - max(0.0, time.time() - self.create_time)
        notify = rec.get("notify")
        if notify and notify.get("following"):
            # its leader exited under the previous daemon: carry on with MAINPID
            self.main_pid = int(notify["main_pid"])
            if not self._follow_main():
                self.loop.call_soon(self._exited, self.os_pid, ExitStatus(0, 0))
        else:
            self._watcher.add(self.os_pid, self._exited)
        for label, fd in rec.get("writers", {}).items():
            os.set_inheritable(fd, False)
            self.writers[label] = PipeWriter(self.loop, fd)
        for label, fd in rec.get("readers", {}).items():
            os.set_inheritable(fd, False)
            self._add_reader(label, fd)
        if notify:
            fd = int(notify["fd"])
            os.set_inheritable(fd, False)
            uid = self.config.uid if isinstance(self.config.uid, int) else os.geteuid()
            self._notify = NotifySocket(
                self.loop, self._on_notify, uid, str(self.pid), fd=fd, name=str(notify["name"])
            )
            self.status_text = notify.get("status")
            self.main_pid = self.main_pid or notify.get("main_pid")
            self.watchdog_usec = int(notify.get("watchdog_usec") or 0)
        health = None if self.committed else self.config.health_check
        if health is not None:
            self._health = (health, health.expand(self.env, "health"))
        self._publish("spawn", {**self._ids(), "adopted": True})
        self._set_state(states.RUNNING, "adopted")

    def spawn_failed(self, error: Exception) -> None:
        """Report a process that could not be started as a failed start (exit 127,
        like a shell's "command not found")."""
        self._executables.clear()  # a program moved or was removed: look again
        if isinstance(error, OSError) and error.strerror:
            self.spawn_error = f"{error.strerror}: {error.filename or self.config.cmd}"
        else:
            self.spawn_error = str(error) or type(error).__name__
        self.started_mono = self.ended_mono = time.monotonic()
        self.exit = ExitStatus(127, 0)
        self.exit_reason = "spawn_error"
        self._cancel_checks()
        self._publish_exit(error=self.spawn_error)
        if self._on_exit is not None:
            self._on_exit(self)
        self._resolve_stopped()

    def _add_reader(self, label: str, fd: int) -> None:
        tail = self.tails[label] = Tail()
        topic = (f"stream.{self.pid}.{label}",)
        base = {"name": self.name, "pid": self.pid, "index": self.index, "label": label}
        emitter = self._emitter

        def on_data(data: bytes) -> None:
            # the offset lets a reader that also fetched the tail skip what it has
            offset = tail.total - len(data)
            emitter.publish("output", topic, {**base, "data": data, "offset": offset})

        def on_eof() -> None:
            # On the output topic itself, so a reader sees it after the last chunk.
            emitter.publish("eof", topic, base)
            self._reader_done()

        self.readers[label] = PipeReader(self.loop, fd, on_data, on_eof, tail=tail)

    def _reader_done(self) -> None:
        if not self.reading:
            if self.on_drained is not None:
                self.on_drained(self)
            callbacks, self._drained_callbacks = self._drained_callbacks, []
            for callback in callbacks:
                callback(self)

    def when_drained(self, callback: Callable[[Process], None]) -> None:
        """Call ``callback`` once every output pipe has reached its end (now, if so)."""
        if self.reading:
            self._drained_callbacks.append(callback)
        else:
            callback(self)

    def last_lines(self, n: int, width: int = 500) -> dict[str, list[str]]:
        """The last ``n`` lines of each output stream, each cut to ``width``."""
        return {
            label: [line[:width] for line in tail.lines(n)] for label, tail in self.tails.items()
        }

    @property
    def reading(self) -> bool:
        """Some output pipe is still open (e.g. held by a leftover child)."""
        return any(r.fd is not None for r in self.readers.values())

    def _started(self) -> None:
        self._timer = None
        if self.state == states.STARTING:
            self._set_state(states.RUNNING, f"up for startsecs={self.config.startsecs:g}")

    async def _check_until_ready(self, check: ReadyConfig, target: str | list[str]) -> None:
        while self.state == states.STARTING:
            try:
                await attempt(check, target, self.env, self.config.cwd)
            except Exception as e:
                if isinstance(e, CheckFailed):
                    error = str(e)
                else:  # a broken check must not look like a passing one
                    log.exception("%s: process %d: readiness check failed", self.name, self.pid)
                    error = f"{type(e).__name__}: {e}"
                if error != self.ready_error:
                    # an event when the failure changes, not one per attempt
                    self._publish("ready_check", {**self._ids(), "error": error}, glob=False)
                self.ready_error = error
            else:
                self._ready_task = None
                self.ready_error = None
                self._became_ready(f"ready: {check.kind} check passed")
                return
            await asyncio.sleep(check.interval)

    def _became_ready(self, reason: str) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self.state == states.STARTING:
            self._set_state(states.RUNNING, reason)

    def _missed_deadline(self, check: ReadyConfig) -> None:
        self._deadline = None
        self._cancel_checks()
        if self.state != states.STARTING or not self.alive or self.os_pid is None:
            return
        waited = self.ready_error or (
            "no READY=1 received" if check.kind == NOTIFY else "no check finished"
        )
        why = f"not ready after {check.deadline:g}s: {waited}"
        self.not_ready = why
        log.warning("%s: process %d %s; stopping it", self.name, self.pid, why)
        self._publish("not_ready", {**self._ids(), "reason": why})
        # Still ``starting``: its exit is a failed start, and the job decides on it
        # (backoff, flapping) like on any other.
        self._stop_self()

    def _condemn(self, cause: str, why: str) -> None:
        """Stop a process gaffer has given up on (``watchdog``, ``health``,
        ``timeout``): its exit is recorded with ``cause`` and the job restarts it
        like any failed process."""
        self._limit = None
        if self.condemned is not None or not self.alive or self.stop_requested:
            return
        self.condemned = (cause, why)
        self._cancel_checks()
        log.warning("%s: process %d %s; stopping it", self.name, self.pid, why)
        self._publish(cause, {**self._ids(), "reason": why})
        self._stop_self()

    def _stop_self(self, timeout: float | None = None) -> None:
        """The stop signal now, SIGKILL after ``timeout`` (default: graceful_timeout)."""
        assert self.os_pid is not None
        timeout = self.graceful_timeout if timeout is None else timeout
        self._signal_all(self.config.stop_signum)
        self._cancel_kill()  # a stop for a missed deadline may be under way
        self._kill_timer = self.loop.call_later(timeout, self._kill_group, self.os_pid)

    def _signal_all(self, sig: int) -> None:
        """Signal the process group, and a MAINPID outside it."""
        assert self.os_pid is not None
        signal_group(self.os_pid, sig)
        if self.main_pid is not None and self.main_pid != self.os_pid:
            with contextlib.suppress(OSError):
                os.kill(self.main_pid, sig)

    def _cancel_checks(self) -> None:
        """Stop every timer and check that watches the process while it runs."""
        for timer in (self._deadline, self._watchdog, self._limit):
            if timer is not None:
                timer.cancel()
        self._deadline = self._watchdog = self._limit = None
        for task in (self._ready_task, self._health_task):
            if task is not None:
                task.cancel()  # an exec check's child is killed as it unwinds
                self._unwinding.append(task)
        self._ready_task = self._health_task = None

    # -- once ready: sd_notify, watchdog, health -----------------------------------

    def _on_running(self) -> None:
        if self.watchdog_usec:
            self._arm_watchdog()
        if self._health is not None and self._health_task is None:
            check, target = self._health
            self._health_task = self.loop.create_task(self._check_health(check, target))

    def _on_notify(self, fields: dict[str, str], sender: int) -> None:
        if not self.alive:
            return
        changed: dict[str, Any] = {}
        if "STATUS" in fields:
            self.status_text = changed["status"] = fields["STATUS"][:1000]
        main = fields.get("MAINPID", "")
        if main.isdigit() and int(main) > 0 and int(main) != self.main_pid:
            if pid_alive(int(main)):
                self.main_pid = changed["main_pid"] = int(main)
                self._psutil = None
            else:
                log.warning("%s: process %d: MAINPID=%s does not exist", self.name, self.pid, main)
        for flag in ("STOPPING", "RELOADING"):
            if fields.get(flag) == "1":
                changed[flag.lower()] = True
        if "ERRNO" in fields:
            changed["errno"] = fields["ERRNO"]
        usec = fields.get("WATCHDOG_USEC", "")
        if usec.isdigit() and int(usec) > 0 and self._notify is not None:
            self.watchdog_usec = changed["watchdog_usec"] = int(usec)
            if self.state == states.RUNNING:
                self._arm_watchdog()
        watchdog = fields.get("WATCHDOG")
        if watchdog == "1":
            self._watchdog_ping = time.monotonic()
        extend = fields.get("EXTEND_TIMEOUT_USEC", "")
        if extend.isdigit() and self._deadline is not None and self.state == states.STARTING:
            # systemd's meaning: the start may take at least this much longer
            remaining = self._deadline.when() - self.loop.time()
            delay = int(extend) / 1_000_000
            check = self.config.ready_check
            if delay > remaining and check is not None:
                self._deadline.cancel()
                self._deadline = self.loop.call_later(delay, self._missed_deadline, check)
        ready = fields.get("READY") == "1"
        if ready:
            changed["ready"] = True
        if changed:
            self._publish("notify", {**self._ids(), "from_pid": sender, **changed})
        if ready:
            self._became_ready("ready: READY=1")
        if watchdog == "trigger":
            self._condemn("watchdog", "asked for it (WATCHDOG=trigger)")

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog_ping = time.monotonic()
        self._watchdog = self.loop.call_later(self.watchdog_usec / 1e6, self._watchdog_due)

    def _watchdog_due(self) -> None:
        # One timer per process, moved on only when it fires: a ping is a clock read.
        self._watchdog = None
        if self.state != states.RUNNING or not self.alive:
            return
        left = self._watchdog_ping + self.watchdog_usec / 1e6 - time.monotonic()
        if left > 0:
            self._watchdog = self.loop.call_later(left, self._watchdog_due)
            return
        self._condemn("watchdog", f"no WATCHDOG=1 for {self.watchdog_usec / 1e6:g}s")

    async def _check_health(self, check: HealthConfig, target: str | list[str]) -> None:
        failures = 0
        while True:
            await asyncio.sleep(check.interval)
            if self.state != states.RUNNING or not self.alive:
                return
            try:
                await attempt(check, target, self.env, self.config.cwd)
            except Exception as e:
                if not isinstance(e, CheckFailed):  # a broken check must not look like a pass
                    log.exception("%s: process %d: health check failed", self.name, self.pid)
                error = str(e) if isinstance(e, CheckFailed) else f"{type(e).__name__}: {e}"
                failures += 1
                if error != self.health_error:
                    data = {**self._ids(), "error": error, "failures": failures}
                    self._publish("health_check", data, glob=False)
                self.healthy, self.health_error = False, error
                if failures >= check.failures:
                    self._health_task = None
                    why = f"failed {failures} health checks in a row: {error}"
                    self._condemn("health", why)
                    return
            else:
                if self.healthy is False:
                    self._publish("health_check", {**self._ids(), "error": None}, glob=False)
                failures = 0
                self.healthy, self.health_error = True, None

    def _close_notify(self) -> None:
        if self._notify is not None:
            self._notify.close()
            self._notify = None

    def _follow_main(self) -> bool:
        """The leader exited but told us of another main process (MAINPID=, a
        forking daemon): the process lives on until that one exits. It is not
        gafferd's child, so a pidfd tells when it ends, not how."""
        pid = self.main_pid
        if pid is None or pid == self.os_pid or self._followed:
            return False
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False  # gone already (or no pidfds): the leader's exit is the end
        self._main_fd = fd
        self._followed = True
        log.info("%s: process %d: following MAINPID %d", self.name, self.pid, pid)
        self.loop.add_reader(fd, self._main_exited)
        return True

    def _main_exited(self) -> None:
        fd = self._main_fd
        assert fd is not None and self.os_pid is not None
        self.loop.remove_reader(fd)
        os.close(fd)
        self._main_fd = None
        self._exited(self.os_pid, ExitStatus(0, 0))

    def _ids(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "os_pid": self.os_pid, "index": self.index}

    def _set_state(self, new: str, reason: str | None = None) -> None:
        old = self.state
        if new not in states.TRANSITIONS[old]:
            raise InvalidTransition(self.pid, old, new)
        self.state = new
        self.reason = reason
        self._publish("state", {**self._ids(), "from": old, "to": new, "reason": reason})
        if new == states.RUNNING:
            self._on_running()

    def _exited(self, os_pid: int, status: ExitStatus) -> None:
        if self._follow_main():
            return
        self.exit = status
        self.ended_mono = time.monotonic()
        for t in (self._timer,):
            if t is not None:
                t.cancel()
        self._timer = None
        self._cancel_checks()
        self._close_notify()
        for writer in self.writers.values():
            writer.close()
        if self.stop_requested:
            self.exit_reason = "stopped"
        elif self.condemned is not None:
            self.exit_reason = self.condemned[0]
        elif (
            status.term_signal == signal.SIGKILL
            and not self._group_killed
            and self._oom is not None
            and self._oom.claim()
        ):
            self.exit_reason = "oom"
        elif status.term_signal:
            self.exit_reason = "killed"
        else:
            self.exit_reason = "exited"
        self._publish_exit()
        if self._on_exit is not None:
            self._on_exit(self)  # the job decides (and respawns) first: repair is fast
        # Whatever is left of its process group goes too: after a requested stop,
        # once graceful_timeout is up; after a crash, asked politely first. The
        # process counts as stopped only when its group has been dealt with.
        if not group_alive(os_pid):
            self._group_empty()
            return
        self._group = GroupWatch(self.loop, os_pid, self._group_empty)
        if not len(self._group):  # only zombies were left
            self._group_empty()
            return
        if self._group_killed:
            # SIGKILL went to the whole group already: wait for it to take effect.
            self._kill_timer = self.loop.call_later(KILL_GRACE, self._give_up_on_group)
            return
        if not self.stop_requested:
            self._group.signal(self.config.stop_signum)
        if self._kill_timer is None:
            self._kill_timer = self.loop.call_later(self.graceful_timeout, self._kill_group, os_pid)

    def _group_empty(self) -> None:
        self._cancel_kill()
        if self._group is not None:
            self._group.close()
        self._resolve_stopped()

    def _publish_exit(self, **extra: Any) -> None:
        assert self.exit is not None
        self._publish(
            "exit",
            {
                **self._ids(),
                "exit_status": self.exit.exit_status,
                "term_signal": self.exit.term_signal,
                "once": self.committed,
                "reason": self.exit_reason,
                "uptime": round(self.uptime or 0.0, 6),
                **extra,
            },
        )

    def _resolve_stopped(self) -> None:
        for task in self._unwinding:
            if not task.done():
                # an exec check's child is reaped before the process counts as stopped
                task.add_done_callback(lambda _: self._resolve_stopped())
                return
        if not self._stopped.done():
            self._stopped.set_result(self)

    def finish(self, state: str, reason: str | None = None) -> None:
        """Move to a terminal state (called by the owner after an exit)."""
        if self.state != state:
            self._set_state(state, reason)
        self._publish("reap", self._ids())

    # -- control ----------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.exit is None and self.os_pid is not None

    @property
    def ready(self) -> bool:
        """Up: its readiness check passed (without one: up for ``startsecs``)."""
        return self.state == states.RUNNING

    @property
    def active(self) -> bool:
        return self.state in states.ALIVE_STATES

    @property
    def uptime(self) -> float | None:
        if self.started_mono is None:
            return None
        end = self.ended_mono if self.ended_mono is not None else time.monotonic()
        return end - self.started_mono

    def stop(self, graceful_timeout: float | None = None) -> asyncio.Future[Process]:
        """Ask the process group to stop; SIGKILL it after the graceful timeout.
        The future resolves when the process has exited and its group is gone
        (or has been sent SIGKILL)."""
        if not self.alive or self.stop_requested:
            return self.wait_future()
        self.stop_requested = True
        self._cancel_checks()
        timeout = self.graceful_timeout if graceful_timeout is None else graceful_timeout
        self._set_state(states.STOPPING, "stop requested")
        self._publish("stop_process", {"pid": self.pid, "name": self.name}, glob=True)
        assert self.os_pid is not None
        if timeout <= 0:
            self._cancel_kill()
            self._kill_group(self.os_pid)
        else:
            self._stop_self(timeout)
        return self.wait_future()

    async def wait(self) -> Process:
        """Wait until the process has exited and its group is dealt with."""
        return await asyncio.shield(self._stopped)

    def wait_future(self) -> asyncio.Future[Process]:
        """A future of the process's end that the caller may cancel freely: a
        caller giving up its wait never affects the process or other waiters."""
        return asyncio.shield(self._stopped)

    @property
    def stopped(self) -> bool:
        """Exited, with its group dealt with."""
        return self._stopped.done()

    def _kill_group(self, pgid: int) -> None:
        self._kill_timer = None
        self._group_killed = True
        log.warning(
            "%s: process %d (group %d) still running after graceful_timeout=%gs; sent SIGKILL",
            self.name,
            self.pid,
            pgid,
            self.graceful_timeout,
        )
        if self.exit is None:
            # The leader is alive, so its pid, and the group id, cannot be reused yet.
            # Its exit (and then its group's) is what resolves the stop.
            self._signal_all(signal.SIGKILL)
        elif self._group is not None:
            # Resolved by _group_empty once the members are gone (SIGKILL is quick),
            # or after KILL_GRACE by _give_up_on_group.
            self._group.signal(signal.SIGKILL)
            self._kill_timer = self.loop.call_later(KILL_GRACE, self._give_up_on_group)

    def _give_up_on_group(self) -> None:
        # Members that outlive SIGKILL are in uninterruptible sleep; they die when
        # the kernel lets them. Waiting for them would only hang the caller.
        self._kill_timer = None
        log.error("%s: process %d: group members survive SIGKILL (D state?)", self.name, self.pid)
        self._group_empty()

    def kill_group_now(self) -> None:
        """SIGKILL the process group at once (emergency exit)."""
        if self._stopped.done():
            return  # its group is gone: the id may be someone else's now
        self._cancel_kill()
        self._group_killed = True
        if self.exit is None and self.os_pid is not None:
            self._signal_all(signal.SIGKILL)
        elif self._group is not None:
            self._group.signal(signal.SIGKILL)

    @property
    def lingering(self) -> bool:
        """The process exited but members of its group are still being stopped."""
        return self.exit is not None and not self._stopped.done()

    def _cancel_kill(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
            self._kill_timer = None

    def close(self) -> None:
        """Release timers and pipes; called when the daemon shuts down."""
        for t in (self._timer, self._kill_timer):
            if t is not None:
                t.cancel()
        self._cancel_checks()
        self._close_notify()
        if self._main_fd is not None:
            self.loop.remove_reader(self._main_fd)
            os.close(self._main_fd)
            self._main_fd = None
        if self._group is not None:
            self._group.close()
        for reader in self.readers.values():
            reader.close()
        for writer in self.writers.values():
            writer.close()

    def kill(self, signum: int) -> None:
        """Send ``signum`` to the process itself (not its group)."""
        if not self.alive or self.os_pid is None:
            raise InvalidState(f"process {self.pid} is not running")
        try:
            os.kill(self.main_pid or self.os_pid, signum)
        except ProcessLookupError:
            raise InvalidState(f"process {self.pid} is not running") from None
        self._publish("kill", {"pid": self.pid, "name": self.name, "signum": signum}, glob=False)

    def send(self, data: bytes | str, stream: str | None = None) -> None:
        """Write ``data`` to the process's stdin or to a custom stream."""
        label = stream or "stdin"
        writer = self.writers.get(label)
        if writer is None:
            if label == "stdin":
                raise InvalidState(
                    f"process {self.pid} has no stdin pipe (set redirect_input: true)"
                )
            raise NotFound(f"process {self.pid} has no stream {label!r}")
        if isinstance(data, str):
            data = data.encode()
        writer.write(data)

    # -- views ------------------------------------------------------------------

    def _ps(self) -> psutil.Process | None:
        import psutil  # on first use: not on gafferd's way to its first spawn

        if self.alive and self.os_pid is not None and self._psutil is None:
            with contextlib.suppress(psutil.Error):
                self._psutil = psutil.Process(self.main_pid or self.os_pid)
        return self._psutil if self.alive else None

    def stats(self) -> dict[str, Any]:
        out = sample(self._ps(), self.create_time if self.alive else None)
        out["pid"] = self.pid
        out["os_pid"] = self.os_pid
        out["name"] = self.name
        return out

    def status(self, with_stats: bool) -> dict[str, Any]:
        """The row a status table shows: identity, state and (optionally) CPU/memory."""
        out: dict[str, Any] = {
            "pid": self.pid,
            "os_pid": self.os_pid,
            "index": self.index,
            "state": self.state,
            "reason": self.reason,
            "ready": self.ready,
            "healthy": self.healthy,
            "status": self.status_text,
            "once": self.committed,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
        }
        if with_stats:
            # CPU % since the previous status of this process, or since it started
            since = self._cpu_sample or (0.0, self.started_mono or time.monotonic())
            figures, self._cpu_sample = brief(
                (self.main_pid or self.os_pid) if self.alive else None, since
            )
            out.update(figures)
        return out

    def info(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "pid": self.pid,
            "name": self.name,
            "index": self.index,
            "cmd": cfg.cmd,
            "args": self.argv[1:] if self.argv else list(cfg.argv),
            "env": self.env,
            "uid": cfg.uid,
            "gid": cfg.gid,
            "os_pid": self.os_pid,
            "create_time": self.create_time,
            "commited": self.committed,
            "redirect_output": list(cfg.redirect_output),
            "redirect_input": cfg.redirect_input,
            "custom_streams": list(cfg.custom_streams),
            "active": self.active,
            "state": self.state,
            "reason": self.reason,
            "ready": self.ready,
            "ready_error": self.ready_error,
            "healthy": self.healthy,
            "health_error": self.health_error,
            "status": self.status_text,
            "main_pid": self.main_pid,
            "watchdog_usec": self.watchdog_usec or None,
            "notify_socket": self._notify.name if self._notify is not None else None,
            "uptime": None if self.uptime is None else round(self.uptime, 3),
            "exit_status": self.exit.exit_status if self.exit else None,
            "term_signal": self.exit.term_signal if self.exit else None,
            "term_signal_name": signal_name(self.exit.term_signal)
            if self.exit and self.exit.term_signal
            else None,
        }

    def output_tail(self, lines: int = 20) -> dict[str, list[str]]:
        return {label: tail.lines(lines) for label, tail in self.tails.items()}


def abandon_handed_over(records: list[Mapping[str, Any]]) -> None:
    """SIGKILL the process groups of handed-over processes that cannot be
    adopted, and close their pipes: nothing may run on unsupervised."""
    for rec in records:
        with contextlib.suppress(Exception):
            os.killpg(int(rec["os_pid"]), signal.SIGKILL)
        for fd in [*rec.get("readers", {}).values(), *rec.get("writers", {}).values()]:
            with contextlib.suppress(Exception):
                os.close(int(fd))
