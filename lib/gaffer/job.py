"""A job: the wanted set of processes built from one config, kept at its size.

The job owns *slots* ``0..numprocesses-1``. Each slot holds at most one live
supervised process, whose ``$GAFFER_INDEX`` is the slot's index for its whole
life. When a slot's process exits the job decides, in :meth:`Job._on_exit`, what
the slot does next:

- restart policy says no (``never``, or ``on-failure`` and a clean exit) → the
  process ends ``exited`` and the slot stays empty;
- it had been up for ``startsecs`` (a stable run) → ``exited`` and an immediate
  replacement, the fastest repair possible;
- it died sooner (a failed start) → ``backoff`` and a replacement after an
  exponentially growing delay, reset by the next stable run;
- the slot restarted ``flapping.attempts`` times within ``flapping.window`` →
  held back ``flapping.retry_in`` seconds (``backoff``), and after
  ``flapping.max_retry`` holds the slot gives up: ``fatal``.

Everything is driven by exit events and timers; nothing polls.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gaffer import states
from gaffer.config import MAX_PROCESSES, ProcessConfig, dependency_names
from gaffer.errors import BadRequest, ReloadFailed
from gaffer.events import EventEmitter
from gaffer.process import Process
from gaffer.reaper import ChildWatcher
from gaffer.schedule import Scheduler
from gaffer.stats import OomCounter

log = logging.getLogger("gaffer.job")

HISTORY_SIZE = 50
HISTORY_LINES = 10  # output lines kept with each exit in the history
# With flapping off, a run shorter than this is a failed start whatever startsecs says.
MIN_STABLE_RUN = 1.0
SPAWN_BATCH = 50


class JobContext(Protocol):
    """What a job needs from its manager."""

    loop: asyncio.AbstractEventLoop
    emitter: EventEmitter
    watcher: ChildWatcher
    clock: Callable[[], float]  # wall-clock time, for schedules
    schedule_marks: dict[str, float]  # job name -> time its schedule was followed up to

    def get_process_id(self) -> int: ...

    def _register(self, proc: Process) -> None: ...

    def _unregister(self, proc: Process) -> None: ...

    def _hold(self, job: Job) -> str | None:
        """Why ``job`` may not start yet (its ``after`` jobs are not ready), having
        noted it to be re-checked when they change; None once it may start."""
        ...

    def _unhold(self, job: Job) -> None: ...


@dataclass
class Slot:
    index: int
    process: Process | None = None
    failures: int = 0  # failed starts in a row
    restarts: collections.deque[float] = field(default_factory=collections.deque)
    restart_count: int = 0  # every restart of this slot since the job was loaded
    flap_holds: int = 0
    timer: asyncio.TimerHandle | None = None
    due: float | None = None  # wall-clock time of the scheduled respawn
    status: str = "idle"  # idle, running, rolling, backoff, flapping, fatal, exited

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        self.due = None

    def info(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "status": self.status,
            "restarts": self.restart_count,
            "pid": self.process.pid if self.process else None,
            "state": self.process.state if self.process else None,
            "failures": self.failures,
            "next_start": self.due,
        }


_SCALE = re.compile(r"([+=-]?)(\d+)")


def parse_scale(current: int, n: object) -> int:
    """The new size for ``scale(n)``: an int or digit string adds (negative
    removes), ``"+N"`` adds, ``"-N"`` removes, ``"=N"`` sets. Never below 0."""
    if isinstance(n, bool):
        raise BadRequest(f"scale: expected an integer, '+N', '-N' or '=N', got {n!r}")
    if isinstance(n, int):
        return _bounded(max(0, current + n))
    if isinstance(n, str):
        m = _SCALE.fullmatch(n.strip())
        if m:
            op, value = m.group(1), int(m.group(2))
            if op == "=":
                return _bounded(value)
            if op == "-":
                return max(0, current - value)
            return _bounded(current + value)
    raise BadRequest(f"scale: expected an integer, '+N', '-N' or '=N', got {n!r}")


def _bounded(n: int) -> int:
    if n > MAX_PROCESSES:
        raise BadRequest(f"scale: {n} processes is over the limit of {MAX_PROCESSES} per job")
    return n


class Job:
    def __init__(
        self,
        ctx: JobContext,
        session: str,
        jobname: str,
        config: ProcessConfig,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.jobname = jobname
        self.name = f"{session}.{jobname}"
        self.config = config
        self.env = dict(env or {})
        self.numprocesses = config.numprocesses
        self.active = False
        self.slots: dict[int, Slot] = {}
        self.once: dict[int, Process] = {}  # committed one-off processes
        self.retiring: set[Process] = set()  # replaced or scaled away, still stopping
        self.lingering: set[Process] = set()  # exited; members of its group still stopping
        # reload/update run one at a time, in the order they were asked for
        self.config_lock = asyncio.Lock()
        self.config_ops = 0  # config operations running or waiting for the lock
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY_SIZE)
        self.restarts = 0
        self.exits_by_reason: collections.Counter[str] = collections.Counter()
        self.executables: dict[tuple[str, str], str] = {}  # (program, PATH) -> path
        self.oom = OomCounter()
        self._manage_handle: asyncio.Handle | None = None
        self.scheduler = Scheduler(self)
        # Start gating (``after``): once the dependencies were ready the job is
        # released and stays so until stopped; until then ``waiting`` says why.
        self.released = False
        self.waiting: str | None = None

    def __repr__(self) -> str:
        return f"<Job {self.name} active={self.active} {self.running}/{self.numprocesses}>"

    # -- events -----------------------------------------------------------------

    def _publish(self, type_: str, data: dict[str, Any], glob: bool = True) -> None:
        topics: tuple[str, ...] = (f"job.{self.name}.{type_}",)
        if glob:
            topics = (type_, *topics)
        self.ctx.emitter.publish(type_, topics, {"name": self.name, **data})

    # -- views ------------------------------------------------------------------

    @property
    def processes(self) -> list[Process]:
        """Live supervised processes in slot order (not one-off runs)."""
        out = [s.process for _, s in sorted(self.slots.items()) if s.process is not None]
        return out

    def all_processes(self) -> list[Process]:
        return [*self.processes, *self.retiring, *self.once.values(), *self.lingering]

    @property
    def running(self) -> int:
        """Processes in the ``running`` state (ready: their readiness check passed,
        or, without one, up for at least ``startsecs``)."""
        return sum(1 for p in self.processes if p.state == states.RUNNING)

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The full names of the jobs this one starts after."""
        return dependency_names(self.config.after, self.session)

    @staticmethod
    def process_ready(proc: Process) -> bool:
        """Whether one process is ready (the ``running`` state): its readiness
        check passed, or, without one, it has been up for ``startsecs``."""
        return proc.ready

    @property
    def ready_count(self) -> int:
        return sum(1 for p in self.processes if self.process_ready(p))

    @property
    def ready(self) -> bool:
        """Whether the job is started and every wanted process is ready (what
        its dependants wait for)."""
        return self.active and self.released and self.ready_count >= self.numprocesses

    @property
    def failed(self) -> str | None:
        """The status of a slot that gave up or is held back (fatal, flapping)."""
        for _, slot in sorted(self.slots.items()):
            if slot.status in ("fatal", "flapping"):
                return slot.status
        return None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def info(self) -> dict[str, Any]:
        slots = [s for _, s in sorted(self.slots.items())]
        procs = [s.process for s in slots if s.process is not None]
        return {
            "name": self.name,
            "active": self.active,
            "running": len(procs),
            "ready": sum(1 for p in procs if self.process_ready(p)),
            "waiting": self.waiting,
            "running_out": len(self.once),
            "max_processes": self.numprocesses,
            "numprocesses": self.numprocesses,
            "processes": [p.pid for p in procs],
            "slots": [s.info() for s in slots],
            "restarts": self.restarts,
            "exits_by_reason": dict(self.exits_by_reason),
            "history": list(self.history),
            "config": self.config.to_dict(),
            "next_run": self.scheduler.next_run,
        }

    def status(self, with_stats: bool = True) -> dict[str, Any]:
        """A status table's view of the job: counts, and one row per slot
        (its process, or why it has none) and per one-off run."""
        rows = []
        for _, slot in sorted(self.slots.items()):
            proc = slot.process
            row: dict[str, Any] = {"pid": None, "index": slot.index, "ready": False}
            if proc is not None:
                row = proc.status(with_stats)
            row.update(slot=slot.status, restarts=slot.restart_count, next_start=slot.due)
            rows.append(row)
        for proc in self.once.values():
            rows.append(
                {**proc.status(with_stats), "slot": None, "restarts": 0, "next_start": None}
            )
        procs = [s.process for s in self.slots.values() if s.process is not None]
        return {
            "name": self.name,
            "active": self.active,
            "numprocesses": self.numprocesses,
            "running": len(procs),
            "ready": sum(1 for p in procs if self.process_ready(p)),
            "waiting": self.waiting,
            "restarts": self.restarts,
            # replaced or scaled away, not yet gone: not in any slot's row
            "stopping": len(self.retiring) + len(self.lingering),
            "description": self.config.description,
            "tags": list(self.config.tags),
            "version": self.config.version,
            "next_run": self.scheduler.next_run,
            "processes": rows,
        }

    # -- control ----------------------------------------------------------------

    def start(self) -> None:
        if not self.active:
            self.active = True
            self._publish("start", {})
        for slot in self.slots.values():
            if slot.status in ("fatal", "exited"):  # an explicit start starts them again
                slot.status = "idle"
                slot.failures = 0
                slot.flap_holds = 0
                slot.restarts.clear()
        self.gate()
        self.scheduler.arm()

    def gate(self) -> None:
        """Start the slots if the jobs named in ``after`` are ready; otherwise
        wait (the manager calls this again when one of them changes)."""
        if not self.active:
            return
        if not self.released:
            why = self.ctx._hold(self)
            if why is not None:
                if why != self.waiting:
                    self.waiting = why
                    self._publish("wait", {"waiting": why})
                return
            self.released = True
            if self.waiting is not None:
                self.waiting = None
                self._publish("wait", {"waiting": None})
        self._manage()

    def reschedule(self) -> None:
        """Follow a changed schedule (an update applied in place)."""
        if self.active:
            self.scheduler.arm()

    def stop(self, graceful_timeout: float | None = None) -> asyncio.Future[Any]:
        """Stop the job's supervised processes; they are not replaced. The future
        resolves once all of them have exited."""
        was_active = self.active
        self.active = False
        self._unblock()
        self._cancel_manage()
        self.scheduler.disarm()
        waits = []
        for slot in self.slots.values():
            slot.cancel_timer()
            if slot.process is not None:
                waits.append(slot.process.stop(graceful_timeout))
            if slot.status != "fatal" or was_active:
                slot.status = "idle"
        waits += [p.stop(graceful_timeout) for p in self.retiring]
        waits += [p.wait_future() for p in self.lingering]
        if was_active:
            self._publish("stop", {})
        return asyncio.gather(*waits)

    def stop_all(self, graceful_timeout: float | None = None) -> asyncio.Future[Any]:
        """Stop everything, one-off runs included (unload, shutdown)."""
        waits = [self.stop(graceful_timeout)]
        waits += [p.stop(graceful_timeout) for p in self.once.values()]
        return asyncio.gather(*waits)

    def scale(self, n: object) -> int:
        new = parse_scale(self.numprocesses, n)
        if new != self.numprocesses:
            self._publish("scale", {"numprocesses": new})
        self.numprocesses = new
        # Surplus slots go from the top, so indices stay 0..n-1 (ports stay valid).
        for index in sorted(self.slots, reverse=True):
            if index < new:
                break
            slot = self.slots.pop(index)
            slot.cancel_timer()
            if slot.process is not None:
                self.retiring.add(slot.process)
                slot.process.stop()
        if self.active:
            self._manage()
        return new

    def manage(self) -> None:
        """Bring the job to its wanted size now (no-op when it is stopped)."""
        if self.active:
            self._manage()

    def _unblock(self) -> None:
        # stopped: the next start is gated again
        self.released = False
        self.ctx._unhold(self)
        if self.waiting is not None:
            self.waiting = None
            self._publish("wait", {"waiting": None})

    def _manage(self) -> None:
        if not self.released:
            return  # waiting for its dependencies: gate() starts it
        # Spawn at most SPAWN_BATCH processes per loop turn, so that bringing up
        # hundreds of processes never holds the loop (and the API) for long.
        self._cancel_manage()
        spawned = 0
        for index in range(self.numprocesses):
            slot = self.slots.get(index)
            if slot is None:
                slot = self.slots[index] = Slot(index)
            if slot.process is None and slot.timer is None and slot.status in ("idle", "running"):
                if spawned == SPAWN_BATCH:
                    self._manage_handle = self.ctx.loop.call_soon(self.manage)
                    return
                self._spawn(slot)
                spawned += 1

    @property
    def spawning(self) -> bool:
        """More processes are due on the next loop turns (a big job comes up in
        batches)."""
        return self._manage_handle is not None

    def _cancel_manage(self) -> None:
        if self._manage_handle is not None:
            self._manage_handle.cancel()
            self._manage_handle = None

    def _spawn(self, slot: Slot) -> Process:
        assert slot.process is None, f"{self.name}[{slot.index}] already has {slot.process}"
        slot.cancel_timer()
        ctx = self.ctx
        proc = Process(
            executables=self.executables,
            oom=self.oom,
            loop=ctx.loop,
            emitter=ctx.emitter,
            watcher=ctx.watcher,
            pid=ctx.get_process_id(),
            job=self.name,
            config=self.config,
            index=slot.index,
            env=self.env,
            on_exit=self._on_exit,
        )
        slot.process = proc
        slot.status = "running"
        ctx._register(proc)
        try:
            proc.spawn()
        except Exception as e:  # whatever it is, it is this slot's failed start
            log.error("%s[%d]: cannot start %s: %s", self.name, slot.index, self.config.cmd, e)
            proc.spawn_failed(e)
        except BaseException as e:  # KeyboardInterrupt mid-spawn: leave no stuck process
            proc.spawn_failed(RuntimeError(f"interrupted: {e!r}"))
            raise
        return proc

    def handoff(self) -> list[dict[str, Any]]:
        """For a re-exec: every live process of the job, handed over (see
        :meth:`Process.handoff`), with its slot (None for one-off runs)."""
        self._cancel_manage()
        self.scheduler.disarm()
        out = []
        for index, slot in sorted(self.slots.items()):
            slot.cancel_timer()
            if slot.process is not None:
                rec = slot.process.handoff()
                if rec is not None:
                    out.append({**rec, "slot": index})
        for proc in list(self.once.values()):
            rec = proc.handoff()
            if rec is not None:
                out.append({**rec, "slot": None})
        return out

    def adopt(self, records: list[dict[str, Any]]) -> None:
        """Take over processes a previous daemon handed over (same pids)."""
        ctx = self.ctx
        if any(rec["slot"] is not None for rec in records):
            self.released = True  # it had started: its dependencies were ready then
        for rec in records:
            committed = rec["slot"] is None
            proc = Process(
                executables=self.executables,
                oom=self.oom,
                loop=ctx.loop,
                emitter=ctx.emitter,
                watcher=ctx.watcher,
                pid=int(rec["pid"]),
                job=self.name,
                config=self.config,
                index=int(rec["index"]),
                env=self.env,
                committed=committed,
                graceful_timeout=rec.get("graceful_timeout"),
                on_exit=self._on_exit,
            )
            if committed:
                self.once[proc.pid] = proc
            else:
                slot = self.slots[rec["slot"]] = Slot(rec["slot"])
                slot.process = proc
                slot.status = "running"
            ctx._register(proc)
            proc.adopt(rec)

    def commit(
        self,
        graceful_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] | None = None,
    ) -> Process:
        """Start a one-off process with the job's config; it is never restarted.
        ``args`` replace the job's arguments (the words after the program)."""
        # One-off runs are outside the slots: $GAFFER_INDEX is -1, so a run can
        # never take (or later collide with) a slot's per-process values.
        index = -1
        ctx = self.ctx
        extra = {**self.env, **(env or {})}
        config = self.config
        if args is not None:
            cmd = config.cmd
            if not config.argv and not config.shell:
                # "cmd: sleep 10" with no args: its first word is the program
                try:
                    words = shlex.split(cmd)
                except ValueError as e:
                    raise BadRequest(f"cmd: cannot split {cmd!r}: {e}") from None
                cmd = words[0] if words else cmd
            config = dataclasses.replace(config, cmd=cmd, args=list(args))
        config.check_env(extra)
        proc = Process(
            executables=self.executables,
            oom=self.oom,
            loop=ctx.loop,
            emitter=ctx.emitter,
            watcher=ctx.watcher,
            pid=ctx.get_process_id(),
            job=self.name,
            config=config,
            index=index,
            env=extra,
            committed=True,
            graceful_timeout=graceful_timeout or None,
            on_exit=self._on_exit,
        )
        self.once[proc.pid] = proc
        ctx._register(proc)
        try:
            proc.spawn()
        except Exception as e:
            log.error("%s: cannot start a one-off run of %s: %s", self.name, self.config.cmd, e)
            proc.spawn_failed(e)
        except BaseException as e:
            proc.spawn_failed(RuntimeError(f"interrupted: {e!r}"))
            raise
        return proc

    async def rolling_replace(
        self, config: ProcessConfig | None = None, limit: int | None = None
    ) -> None:
        """Restart every slot (below ``limit``), one at a time, on ``config``
        (default: the current one).

        ``rolling: start-first`` starts the new process and stops the old one once
        the new one is ``running``; ``stop-first`` (for fixed per-slot ports) stops
        the old one first. If a new process fails to start, the rollout stops
        there, the job goes back to its previous config — the old processes that
        are left keep running — and :class:`ReloadFailed` is raised. A job stopped,
        or a slot scaled away, while the rollout runs is left as that asked.
        Callers run it under :attr:`config_lock` (see ``Manager.reload``).
        """
        previous = self.config
        if config is not None:
            self.config = config
        try:
            # A config change skips processes already running that config; a
            # plain reload restarts them all.
            await self._roll(skip_current=config is not None, limit=limit)
        except ReloadFailed:
            self.config = previous
            raise

    async def _roll(self, skip_current: bool, limit: int | None) -> None:
        start_first = self.config.rolling == "start-first"
        for index in sorted(self.slots):
            slot = self.slots.get(index)
            if not self.active:
                return
            if slot is None or (limit is not None and index >= limit):
                continue
            old = slot.process if slot.process is not None and slot.process.active else None
            if skip_current and old is not None and old.config == self.config:
                continue
            if old is None and slot.process is not None:
                continue  # a dead process not yet reaped: the slot takes care of itself
            new: Process | None = None
            try:
                new = await self._roll_slot(slot, old, start_first)
            except asyncio.CancelledError:
                # Only a shutdown cancels a rollout; leave the slot consistent.
                self._abandon_roll(slot, old, new)
                raise

    async def _roll_slot(
        self, slot: Slot, old: Process | None, start_first: bool
    ) -> Process | None:
        if old is not None:
            slot.process = None
            self.retiring.add(old)
        if old is not None and not start_first:
            slot.status = "rolling"  # reserved: nothing else spawns into it
            await old.stop()
            if not self._still(slot) or slot.process is not None:
                # Stopped, scaled away or refilled meanwhile: not ours any more.
                if slot.status == "rolling":
                    slot.status = "running"
                return None
        slot.cancel_timer()
        slot.status = "running"
        slot.failures = 0
        new = self._spawn(slot)
        ok = await self._wait_started(new)
        if not self._still(slot):
            # Stopped or scaled away meanwhile: that took care of the new process;
            # the old one goes the same way.
            if old is not None and old.active:
                old.stop()
            return new
        if not ok:
            if old is not None and old.active:
                # Give the slot back to the old process, whatever filled it.
                slot.cancel_timer()
                current = slot.process
                if current is not None and current is not old:
                    self.retiring.add(current)
                    current.stop()
                self.retiring.discard(old)
                slot.process = old
                slot.status = "running"
            raise ReloadFailed(
                f"{self.name}[{slot.index}]: the new process failed to start "
                f"({new.spawn_error or new.reason or new.state})"
            )
        if old is not None and start_first:
            await old.stop()
        return new

    def _abandon_roll(self, slot: Slot, old: Process | None, new: Process | None) -> None:
        if slot.status == "rolling":
            slot.status = "running"
        if old is not None and old.active:
            if slot.process is None and self._still(slot):
                self.retiring.discard(old)  # never replaced: it keeps its slot
                slot.process = old
            else:
                old.stop()  # replaced (or going away): finish the swap

    def _still(self, slot: Slot) -> bool:
        return self.active and self.slots.get(slot.index) is slot

    async def _wait_started(self, proc: Process) -> bool:
        if proc.state == states.RUNNING:
            return True
        if proc.state not in (states.STARTING,):
            return False
        loop = self.ctx.loop
        done: asyncio.Future[bool] = loop.create_future()
        topic = f"proc.{proc.pid}.state"

        def on_event(event: Any) -> None:
            if done.done():
                return
            if proc.state == states.RUNNING:
                done.set_result(True)
            elif proc.state not in (states.STARTING,):
                done.set_result(False)

        self.ctx.emitter.subscribe(topic, on_event)
        try:
            return await done
        finally:
            self.ctx.emitter.unsubscribe(topic, on_event)

    # -- exits ------------------------------------------------------------------

    def _record(self, proc: Process, outcome: str) -> None:
        status = proc.exit
        reason = proc.exit_reason or "exited"
        if proc.state == states.STARTING and reason in ("exited", "killed"):
            reason = "start_failed"
        self.exits_by_reason[reason] += 1
        entry: dict[str, Any] = {
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "index": proc.index,
            "time": time.time(),
            "exit_status": status.exit_status if status else None,
            "term_signal": status.term_signal if status else None,
            "uptime": round(proc.uptime or 0.0, 3),
            "reason": reason,
            "outcome": outcome,
            "once": proc.committed,
            "error": proc.spawn_error,
            # its last words: why it died is most often there
            "output": proc.last_lines(HISTORY_LINES),
        }
        self._publish_record(proc, entry)
        if proc.reading:
            # what it wrote last may still be in the pipe: read again once drained
            def drained(p: Process) -> None:
                entry.update(output=p.last_lines(HISTORY_LINES))
                self._publish_record(p, entry)

            proc.when_drained(drained)
        self.history.append(entry)

    def _publish_record(self, proc: Process, entry: dict[str, Any]) -> None:
        # The whole record of one run, for whoever keeps them (gafferd's run
        # records); published again, same start, once its last output is read.
        data = {
            "name": self.name,
            "pid": proc.pid,
            "os_pid": proc.os_pid,
            "index": proc.index,
            "once": proc.committed,
            "started": proc.create_time,
            "ended": entry["time"],
            **{k: entry[k] for k in ("exit_status", "term_signal", "reason", "error", "output")},
        }
        topics = ("record", f"job.{self.name}.record", f"proc.{proc.pid}.record")
        self.ctx.emitter.publish("record", topics, data)

    def _on_exit(self, proc: Process) -> None:
        self.ctx._unregister(proc)
        if proc.lingering:
            self.lingering.add(proc)
            proc.wait_future().add_done_callback(lambda _: self.lingering.discard(proc))
        if proc.committed:
            self.once.pop(proc.pid, None)
            self._record(proc, states.EXITED)
            proc.finish(states.EXITED, proc.exit_reason)
            self.scheduler.ended(proc.pid)
            return
        slot = self.slots.get(proc.index)
        if proc in self.retiring or slot is None or slot.process is not proc:
            self.retiring.discard(proc)
            self._record(proc, states.EXITED)
            proc.finish(states.EXITED, proc.exit_reason)
            return
        slot.process = None
        decision, delay, why = self._decide(slot, proc)
        self._record(proc, decision)
        if decision == states.EXITED and delay is None:
            slot.status = "exited" if self.active else "idle"
            proc.finish(states.EXITED, why)
            return
        if decision == states.FATAL:
            slot.status = "fatal"
            proc.finish(states.FATAL, why)
            log.error("%s[%d]: %s; giving up", self.name, slot.index, why)
            return
        self.restarts += 1
        slot.restart_count += 1
        if delay == 0:
            slot.status = "running"
            proc.finish(states.EXITED, why)
            self._spawn(slot)
            return
        assert delay is not None
        slot.status = "flapping" if why.startswith("flapping") else "backoff"
        slot.due = time.time() + delay
        slot.timer = self.ctx.loop.call_later(delay, self._respawn, slot)
        proc.finish(states.BACKOFF, why)

    def _respawn(self, slot: Slot) -> None:
        slot.timer = None
        slot.due = None
        if self.active and self.slots.get(slot.index) is slot and slot.process is None:
            slot.status = "running"
            self._spawn(slot)

    def _decide(self, slot: Slot, proc: Process) -> tuple[str, float | None, str]:
        """(terminal state, respawn delay or None for no respawn, reason)."""
        cfg = self.config
        status = proc.exit
        assert status is not None
        if status.term_signal:
            what = f"killed by signal {status.term_signal}"
        else:
            what = f"exited with status {status.exit_status}"
        if proc.spawn_error:
            what = f"could not start: {proc.spawn_error}"
        elif proc.not_ready and not proc.stop_requested:
            what = proc.not_ready  # stopped for missing its readiness deadline
        elif proc.condemned and not proc.stop_requested:
            what = proc.condemned[1]  # stopped by its watchdog or health check
        if proc.stop_requested:
            if self.active and slot.index < self.numprocesses:
                return states.EXITED, 0.0, "stopped; replaced"
            return states.EXITED, None, "stopped"
        if not self.active:
            return states.EXITED, None, what
        failed = (
            bool(status.term_signal)
            or status.exit_status not in cfg.success_exit_codes
            or proc.not_ready is not None
            or proc.condemned is not None
        )
        if cfg.restart == "never" or (cfg.restart == "on-failure" and not failed):
            return states.EXITED, None, f"{what}; restart={cfg.restart}"

        early = proc.state == states.STARTING or proc.spawn_error is not None
        if cfg.flapping_config is None and (proc.uptime or 0) < MIN_STABLE_RUN:
            # Without flapping protection, backoff is all that stands between a
            # program that exits at once and a hot respawn loop.
            early = True
        slot.failures = slot.failures + 1 if early else 0
        delay = cfg.backoff_config.delay(slot.failures)
        why = f"{what} after {proc.uptime or 0:.3f}s" + ("; failed to start" if early else "")

        flapping = cfg.flapping_config
        if flapping is not None:
            now = time.monotonic()
            if (proc.uptime or 0) > flapping.window:
                slot.flap_holds = 0  # a run longer than the window: not flapping
            slot.restarts.append(now)
            while slot.restarts and now - slot.restarts[0] > flapping.window:
                slot.restarts.popleft()
            if len(slot.restarts) >= flapping.attempts:
                slot.restarts.clear()
                slot.flap_holds += 1
                fatal = slot.flap_holds > flapping.max_retry
                self._publish(
                    "flap",
                    {
                        "index": slot.index,
                        "attempts": flapping.attempts,
                        "window": flapping.window,
                        "retry_in": None if fatal else flapping.retry_in,
                        "retries_left": max(0, flapping.max_retry - slot.flap_holds),
                        "fatal": fatal,
                    },
                )
                if fatal:
                    return (
                        states.FATAL,
                        None,
                        f"flapping: {what}; gave up after {flapping.max_retry} retries",
                    )
                return (
                    states.BACKOFF,
                    max(delay, flapping.retry_in),
                    f"flapping: {flapping.attempts} restarts within {flapping.window:g}s; "
                    f"retry in {flapping.retry_in:g}s",
                )
        if delay > 0:
            return states.BACKOFF, delay, f"{why}; retry in {delay:g}s"
        return states.EXITED, 0.0, why

    def close(self) -> None:
        self.ctx._unhold(self)
        self._cancel_manage()
        self.scheduler.disarm()
        for slot in self.slots.values():
            slot.cancel_timer()
