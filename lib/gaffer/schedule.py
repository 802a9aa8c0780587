"""Cron schedules: a job with ``schedule`` runs a one-off process (a commit) at
the times its cron expression names, in ``timezone`` (default: local time).

Each job has one :class:`Scheduler`, armed while the job is active: one timer
(``loop.call_later``) to the next fire time, set again each time it fires;
nothing polls. Time comes from the manager's ``clock`` (``time.time``), which a
test replaces to be at whatever time of day it needs.

``concurrency`` says what a fire does while the previous scheduled run of the
job is still going: ``skip`` it, ``queue`` it (run once more as soon as the
previous one ends; at most one waits), or ``allow`` runs to overlap.

``catch_up``: the manager keeps, per job, the time up to which its schedule was
followed (``Manager.schedule_marks``; gafferd saves it with its state). When a
job is loaded and a fire time fell between that mark and now — the daemon was
down — one run starts at once. Without it missed runs are not replayed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from gaffer.errors import GafferError

if TYPE_CHECKING:
    from gaffer.job import Job

log = logging.getLogger("gaffer.schedule")


def check_expression(expr: str) -> None:
    """Raise ValueError (saying why) unless ``expr`` is a cron expression that
    ever fires: five fields, six with seconds last, or an alias (``@daily``)."""
    import time

    from croniter import croniter

    if len(expr.split()) not in (5, 6) and not expr.startswith("@"):
        raise ValueError(
            "expected a cron expression of 5 fields (minute hour day month weekday), "
            f"or 6 with seconds last, got {expr!r}"
        )
    try:
        croniter(expr, time.time()).get_next(float)
    except Exception as e:  # croniter raises ValueErrors, and others on odd input
        raise ValueError(f"bad cron expression {expr!r}: {e}") from None


@functools.lru_cache(maxsize=64)
def zone(name: str) -> tzinfo:
    """The time zone ``name`` (IANA, e.g. ``Europe/Paris``), or local time for
    ``""``. ValueError for an unknown one."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name:
        return _local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (expected e.g. 'Europe/Paris')") from None


def _local_zone() -> tzinfo:
    from zoneinfo import ZoneInfo

    # A real zone, not today's fixed offset, so that fire times follow DST.
    tz = os.environ.get("TZ", "").lstrip(":")
    try:
        if tz:
            return ZoneInfo(tz)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except Exception:
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local


def next_fire(expr: str, timezone: str, after: float) -> float:
    """The first fire time of ``expr`` strictly after ``after`` (epoch seconds)."""
    from croniter import croniter

    return float(croniter(expr, datetime.fromtimestamp(after, zone(timezone))).get_next(float))


def last_fire(expr: str, timezone: str, at: float) -> float:
    """The last fire time of ``expr`` before ``at``."""
    from croniter import croniter

    return float(croniter(expr, datetime.fromtimestamp(at, zone(timezone))).get_prev(float))


class Scheduler:
    """The schedule of one job: its timer and its scheduled runs."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.timer: asyncio.TimerHandle | None = None
        self.next_run: float | None = None
        self.running: set[int] = set()  # pids of scheduled runs still going
        self.queued: float | None = None  # fire time of the run waiting for them
        self._armed_for: tuple[str, str] | None = None
        self._loaded = True  # catch_up applies only to the first arming

    def _now(self) -> float:
        return self.job.ctx.clock()

    def _mark(self, t: float) -> None:
        self.job.ctx.schedule_marks[self.job.name] = t

    def arm(self) -> None:
        """Set the timer to the next fire time (the job has become active, or its
        schedule changed). A no-op when it already is, or without a schedule."""
        cfg = self.job.config
        key = (cfg.schedule, cfg.timezone)
        if self.timer is not None and key == self._armed_for:
            return
        self._cancel()
        first, self._loaded = self._loaded, False
        if not cfg.schedule:
            return
        now = self._now()
        if first and cfg.catch_up:
            since = self.job.ctx.schedule_marks.get(self.job.name)
            if since is not None:
                missed = last_fire(cfg.schedule, cfg.timezone, now)
                if missed > since:
                    log.info("%s: catching up the run missed at %s", self.job.name, missed)
                    self.fire(missed)
        self._mark(now)
        self._armed_for = key
        self._set_timer(now)

    def disarm(self) -> None:
        """Cancel the timer and any queued run (the job stopped, or is gone)."""
        if self.timer is not None:
            self._mark(self._now())
        self._cancel()
        self.queued = None
        self._loaded = False

    def _cancel(self) -> None:
        was = self.next_run is not None
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None
        self.next_run = None
        self._armed_for = None
        if was:
            self.job._publish("schedule", {"next_run": None, "schedule": self.job.config.schedule})

    def _set_timer(self, after: float) -> None:
        cfg = self.job.config
        try:
            at = next_fire(cfg.schedule, cfg.timezone, after)
        except Exception as e:  # checked when loaded: not expected, but never fatal
            log.error("%s: cannot compute the next run of %r: %s", self.job.name, cfg.schedule, e)
            return
        self.next_run = at
        # A timer may fire a little early by the wall clock: the fire time stays
        # ``at`` and the next one is computed from it, so none is ever doubled.
        delay = max(0.0, at - self._now())
        self.timer = self.job.ctx.loop.call_later(delay, self._on_timer, at)
        self.job._publish(
            "schedule",
            {"next_run": at, "schedule": cfg.schedule, "timezone": cfg.timezone or None},
        )

    def _on_timer(self, at: float) -> None:
        self.timer = None
        try:
            self.fire(at)
        finally:
            if self.job.active and self.job.config.schedule:
                # After a suspend or a clock jump, carry on from now: no burst of fires.
                self._set_timer(max(at, self._now()))
            else:
                self.next_run = None

    def fire(self, at: float | None = None) -> int | None:
        """Start a scheduled run as if the clock said ``at`` (default: now),
        unless ``concurrency`` holds it back. Returns the run's pid, if any."""
        job = self.job
        at = self._now() if at is None else at
        self._mark(at)
        concurrency = job.config.concurrency
        if self.running and concurrency != "allow":
            if concurrency == "queue" and self.queued is None:
                self.queued = at
                job._publish("queued", {"fire_time": at, "running": sorted(self.running)})
                return None
            if concurrency == "queue":
                why = "a run is already queued (concurrency: queue)"
            else:
                why = "the previous run is still going (concurrency: skip)"
            job._publish(
                "skipped", {"fire_time": at, "reason": why, "running": sorted(self.running)}
            )
            return None
        return self._run(at)

    def _run(self, at: float) -> int | None:
        job = self.job
        try:
            proc = job.commit()
        except GafferError as e:  # e.g. an env variable that no longer expands
            log.error("%s: cannot start the scheduled run: %s", job.name, e.reason)
            job._publish("skipped", {"fire_time": at, "reason": f"cannot start: {e.reason}"})
            return None
        if proc.pid in job.once:  # not already over (a failed spawn)
            self.running.add(proc.pid)
        job._publish("scheduled_run", {"pid": proc.pid, "fire_time": at})
        return proc.pid

    def ended(self, pid: int) -> None:
        """A one-off run of the job has exited."""
        if pid not in self.running:
            return
        self.running.discard(pid)
        if not self.running and self.queued is not None:
            # Not from within the exit handling of the previous run.
            self.job.ctx.loop.call_soon(self._run_queued)

    def _run_queued(self) -> None:
        at, self.queued = self.queued, None
        if at is not None and self.job.active and not self.running:
            self._run(at)
