"""Subscription topics as clients write them, mapped onto the event bus.

The channel's 0.5 topics — ``EVENTS``, ``EVENTS:<prefix>``, ``JOB:<s.j>``,
``PROCESS:<pid>``, ``STREAM:<pid>[.<label>]`` (and ``STATS:...``, which is not
an event topic but a sampling subscription) — and plain bus prefixes such as
``job.default.web`` all parse into a :class:`Topic`: the prefix to subscribe to
on the bus, and which job the subscriber must be allowed to read.
"""

from __future__ import annotations

from dataclasses import dataclass

from gaffer.config import split_name
from gaffer.errors import BadRequest, NotFound
from gaffer.events import Event
from gaffer.manager import Manager

OUTPUT_PREFIX = "stream"


@dataclass(frozen=True)
class Topic:
    raw: str
    kind: str  # EVENTS, JOB, PROCESS, STREAM, STATS
    prefix: str  # on the bus ("." = everything); for STATS, the monitored name
    job: str | None  # the job a reader needs "read" on; None = per event
    pid: int | None = None

    def wants(self, event: Event) -> bool:
        """Whether an event delivered under ``prefix`` belongs here: output is
        only for STREAM topics (or bus prefixes that ask for it by name)."""
        if self.kind == "JOB":
            # Exactly this job: a job named "a.b" is under the prefix of job "a".
            return event.data.get("name") == self.job
        if self.kind == "STREAM" or self.prefix.startswith(OUTPUT_PREFIX):
            return True
        return event.type != "output"


def parse(manager: Manager, raw: object) -> Topic:
    """Parse a topic; unknown processes and jobs are 404s, bad syntax 400."""
    if not isinstance(raw, str) or not raw:
        raise BadRequest(f"topic: expected a topic string, got {raw!r}")
    source, sep, target = raw.partition(":")
    kind = source.upper()
    if not sep and kind != "EVENTS":
        # a plain bus prefix: job.default.web, proc.7, stream.7.stdout, "."
        prefix = "." if raw in (".", "") else raw
        return Topic(raw, "EVENTS", prefix, None)
    if kind == "EVENTS":
        return Topic(raw, kind, target or ".", None)
    if not target:
        raise BadRequest(f"topic: {kind} needs a target ({kind}:<...>)")
    if kind == "JOB":
        name = _job(manager, target)
        return Topic(raw, kind, f"job.{name}", name)
    if kind in ("PROCESS", "STREAM", "STATS"):
        pid_part, _, label = target.partition(".")
        if pid_part.isdigit():
            proc = manager.get_process(pid_part)
            if kind == "PROCESS":
                if label:
                    raise BadRequest(f"topic: PROCESS takes a pid, got {target!r}")
                return Topic(raw, kind, f"proc.{proc.pid}", proc.name, proc.pid)
            if kind == "STATS":
                if label:
                    raise BadRequest(f"topic: STATS takes a pid or a job, got {target!r}")
                return Topic(raw, kind, str(proc.pid), proc.name, proc.pid)
            labels = (*proc.config.redirect_output, *proc.config.custom_streams)
            if label and label not in labels:
                raise NotFound(f"process {proc.pid} has no stream {label!r}")
            prefix = f"stream.{proc.pid}" + (f".{label}" if label else "")
            return Topic(raw, kind, prefix, proc.name, proc.pid)
        if kind == "STATS":
            name = _job(manager, target)
            return Topic(raw, kind, name, name)
        raise BadRequest(f"topic: {kind} takes a process id, got {target!r}")
    raise BadRequest(
        f"topic: unknown topic {raw!r} (EVENTS, EVENTS:<prefix>, JOB:<job>, "
        "PROCESS:<pid>, STATS:<pid|job>, STREAM:<pid>[.<label>])"
    )


def _job(manager: Manager, target: str) -> str:
    session, job = split_name(target)
    name = f"{session}.{job}"
    manager.get(name)  # NotFound for an unknown job
    return name
