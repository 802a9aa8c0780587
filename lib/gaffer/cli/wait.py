"""Waiting for a change to happen: commands that change running processes
(``scale``, ``start``, ``stop``, ``restart``, ``load``...) return when the
daemon reports the change done, or say what did not happen.

The watch opens the daemon's event stream for the jobs *before* the change
is asked for, then re-reads their status on each event until a check
passes: no polling, and no event can slip between the request and the wait.
On a terminal a spinner shows how far it got; piped, nothing is drawn.
"""

from __future__ import annotations

import time

from gaffer.client.errors import ConnectionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from gaffer.cli.context import Context
    from gaffer.client.sync import EventStream
    from gaffer.client.types import JobStatus, ProcessRow

DEFAULT_TIMEOUT = 60.0
FAILED_SLOTS = ("fatal", "flapping")


class Outcome:
    """Where a wait stands: ``done`` (finished, well or not), ``ok``, a line
    for the progress display and, once done, the summary."""

    __slots__ = ("done", "failures", "ok", "progress")

    def __init__(
        self, done: bool, ok: bool, progress: str, failures: list[str] | None = None
    ) -> None:
        self.done = done
        self.ok = ok
        self.progress = progress
        self.failures = failures or []


class Watch:
    """Events of some jobs, from now on; :meth:`until` waits on them."""

    def __init__(self, ctx: Context, names: Iterable[str]) -> None:
        self.ctx = ctx
        self.names = list(names)
        self.enabled = not getattr(ctx.args, "no_wait", False)
        self._events: EventStream | None = None
        if self.enabled:
            self._events = ctx.client.events(["EVENTS"], names=self.names, timeout=self.timeout)

    @property
    def timeout(self) -> float:
        value = getattr(self.ctx.args, "wait_timeout", None)
        return DEFAULT_TIMEOUT if value is None else float(value)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def until(self, check: Callable[[dict[str, JobStatus]], Outcome], what: str) -> Outcome:
        """Re-read the jobs' status on every event until ``check`` says done,
        or the timeout passes (then the last outcome, not ok)."""
        if not self.enabled or self._events is None:
            return Outcome(True, True, "not waited for (--no-wait)")
        client = self.ctx.client
        deadline = time.monotonic() + self.timeout
        self._events.body.set_deadline(deadline)
        with _progress(self.ctx, what) as show:
            while True:
                jobs = {j["name"]: j for j in client.status(self.names, stats=False)}
                outcome = check(jobs)
                show(outcome.progress)
                if outcome.done:
                    return outcome
                if time.monotonic() >= deadline:
                    break
                try:
                    next(self._events)
                except ConnectionError:
                    if time.monotonic() < deadline:
                        raise  # the daemon went away
                    break
                except StopIteration:
                    raise ConnectionError("the daemon closed the event stream") from None
        outcome.done = True
        outcome.ok = False
        outcome.failures.append(f"timed out after {self.timeout:g}s")
        return outcome


class _progress:
    """A spinner with a status line on a terminal (rich, loaded only then)."""

    def __init__(self, ctx: Context, what: str) -> None:
        self.what = what
        import sys

        self.live = sys.stderr.isatty() and not ctx.args.json
        self._status: Any = None

    def __enter__(self) -> Callable[[str], None]:
        if self.live:
            from rich.console import Console

            self._status = Console(stderr=True).status(self.what)
            self._status.__enter__()
        return self.show

    def show(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"{self.what}: {text}")

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)


# -- checks ----------------------------------------------------------------------------


def label(job: str, row: ProcessRow) -> str:
    return f"{job}.{row.get('index')}"


def why_not(row: ProcessRow) -> str:
    state = row.get("slot") or row.get("state") or "idle"
    reason = row.get("reason")
    return f"{state}: {reason}" if reason else state


def running(
    name: str, want: int | None = None, replacing: set[int] | frozenset[int] = frozenset()
) -> Callable[[dict[str, JobStatus]], Outcome]:
    """Done when the job runs its wanted number of processes, each up and
    ready (none of them one of ``replacing``); failed when each slot is either
    up or has given up (fatal or flapping), and one has."""

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        job = jobs.get(name)
        if job is None:
            return Outcome(True, False, "gone", [f"{name} is not loaded"])
        wanted = job["numprocesses"] if want is None else want
        rows = [r for r in job["processes"] if not r.get("once")]
        up = [
            r
            for r in rows
            if r.get("state") == "running" and r.get("pid") not in replacing and r.get("pid")
        ]
        progress = f"{len(up)}/{wanted} running"
        failed = [r for r in rows if r.get("slot") in FAILED_SLOTS]
        # given up only once no other slot is still on its way: then the report is whole
        pending = [r for r in rows if r not in up and r not in failed]
        if failed and not pending and len(rows) == wanted:
            return Outcome(
                True,
                False,
                progress,
                [f"{label(name, r)} did not start ({why_not(r)})" for r in failed],
            )
        if len(up) >= wanted and len(rows) == wanted and job["active"]:
            return Outcome(True, True, progress)
        late = [r for r in rows if r not in up]
        return Outcome(
            False, False, progress, [f"{label(name, r)} not running ({why_not(r)})" for r in late]
        )

    return check


def stopped(name: str) -> Callable[[dict[str, JobStatus]], Outcome]:
    """Done when none of the job's supervised processes is left."""

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        job = jobs.get(name)
        if job is None:
            return Outcome(True, True, "unloaded")
        alive = [r for r in job["processes"] if r.get("pid") and not r.get("once")]
        left = len(alive) + job.get("stopping", 0)
        if left == 0:
            return Outcome(True, True, "stopped")
        return Outcome(
            False,
            False,
            f"{left} still stopping",
            [f"{label(name, r)} still {r.get('state')}" for r in alive],
        )

    return check


def gone(name: str) -> Callable[[dict[str, JobStatus]], Outcome]:
    """Done when the job is no longer loaded."""

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        if name not in jobs:
            return Outcome(True, True, "unloaded")
        return Outcome(False, False, "unloading", [f"{name} is still loaded"])

    return check


def every(
    checks: dict[str, Callable[[dict[str, JobStatus]], Outcome]],
) -> Callable[[dict[str, JobStatus]], Outcome]:
    """Several jobs at once: done when each is; the progress of each."""

    def check(jobs: dict[str, JobStatus]) -> Outcome:
        outs = {n: c(jobs) for n, c in checks.items()}
        progress = ", ".join(f"{n}: {o.progress}" for n, o in outs.items())
        failures = [f for o in outs.values() for f in o.failures]
        done = all(o.done for o in outs.values())
        return Outcome(done, done and all(o.ok for o in outs.values()), progress, failures)

    return check
