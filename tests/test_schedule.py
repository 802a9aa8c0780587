"""Cron schedules: a job's one-off runs started at the times its ``schedule``
names, with the time injected through the manager's clock (no waiting minutes),
concurrency, catch_up, and one check through a real gafferd."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clikit import served
from conftest import TIMEOUT, next_event
from gaffer.config import ProcessConfig
from gaffer.errors import ConfigError
from gaffer.events import Subscription
from gaffer.manager import Manager
from test_cli_jobs import wait_event

TICK = {"cmd": "sh", "args": ["-c", "echo tick"], "numprocesses": 0}
LONG = {"cmd": "sleep", "args": ["3600"], "numprocesses": 0, "graceful_timeout": 1}


def clock_at(manager: Manager, hour: int, minute: int, second: float, tz: str = "") -> float:
    """Make the manager's clock say it is ``hour:minute:second`` today (in
    ``tz``, default local time), running on from there; returns that time."""
    zone = ZoneInfo(tz) if tz else None
    whole = int(second)
    day = datetime.now(zone).replace(hour=hour, minute=minute, second=whole, microsecond=0)
    target = day.timestamp() + (second - whole)
    offset = target - time.time()
    manager.clock = lambda: time.time() + offset
    return target


def sub_job(manager: Manager, name: str = "cron") -> Subscription:
    return manager.subscribe(f"job.default.{name}")


def of(type_: str, **data: Any) -> Any:
    return lambda e: e.type == type_ and all(e.data.get(k) == v for k, v in data.items())


async def test_a_schedule_fires_a_run(manager: Manager) -> None:
    target = clock_at(manager, 11, 59, 59.9)  # "* * * * *" fires in 0.1 s
    sub = sub_job(manager)
    job = manager.load({"name": "cron", **TICK, "schedule": "* * * * *"})
    armed = await next_event(sub, of("schedule"))
    assert armed.data["next_run"] == pytest.approx(target + 0.1)
    assert manager.get("cron").status()["next_run"] == armed.data["next_run"]
    assert manager.info("cron")["next_run"] == armed.data["next_run"]
    assert job.processes == []  # numprocesses 0: nothing runs but the schedule's runs

    run = await next_event(sub, of("scheduled_run"))
    assert run.data["fire_time"] == armed.data["next_run"]
    pid = run.data["pid"]
    exited = await next_event(sub, of("exit", pid=pid))
    assert exited.data["once"] is True and exited.data["exit_status"] == 0
    # armed again, for the next minute
    assert manager.info("cron")["next_run"] == pytest.approx(target + 60.1)
    assert job.processes == [] and job.once == {}


async def test_timezone(manager: Manager) -> None:
    # Noon in Tokyo, whatever the local time: the fire is 0.1 s away.
    target = clock_at(manager, 11, 59, 59.9, tz="Asia/Tokyo")
    sub = sub_job(manager)
    manager.load({"name": "cron", **TICK, "schedule": "0 12 * * *", "timezone": "Asia/Tokyo"})
    armed = await next_event(sub, of("schedule"))
    assert armed.data["next_run"] == pytest.approx(target + 0.1)
    assert armed.data["timezone"] == "Asia/Tokyo"
    run = await next_event(sub, of("scheduled_run"))
    await next_event(sub, of("exit", pid=run.data["pid"]))


async def test_skip_while_a_run_is_going(manager: Manager) -> None:
    clock_at(manager, 12, 0, 30)  # the next fire is half a minute away
    sub = sub_job(manager)
    job = manager.load({"name": "cron", **LONG, "schedule": "* * * * *"})
    first = job.scheduler.fire()
    assert first is not None and list(job.once) == [first]
    assert job.scheduler.fire() is None
    skipped = await next_event(sub, of("skipped"))
    assert "still going (concurrency: skip)" in skipped.data["reason"]
    assert list(job.once) == [first]
    await manager.stop_process(first)
    # once it has ended, the next fire runs again
    second = job.scheduler.fire()
    assert second is not None and second != first
    await manager.unload("cron")


async def test_queue_runs_once_after(manager: Manager) -> None:
    clock_at(manager, 12, 0, 30)
    sub = sub_job(manager)
    job = manager.load({"name": "cron", **LONG, "schedule": "* * * * *", "concurrency": "queue"})
    first = job.scheduler.fire()
    assert first is not None
    assert job.scheduler.fire() is None
    await next_event(sub, of("queued"))
    assert job.scheduler.fire() is None  # at most one waits
    skipped = await next_event(sub, of("skipped"))
    assert "already queued" in skipped.data["reason"]
    assert list(job.once) == [first]
    manager.kill(first, "KILL")
    await next_event(sub, of("exit", pid=first))
    run = await next_event(sub, of("scheduled_run"))
    assert run.data["pid"] != first and list(job.once) == [run.data["pid"]]
    assert job.scheduler.queued is None
    await manager.unload("cron")


async def test_allow_overlaps(manager: Manager) -> None:
    clock_at(manager, 12, 0, 30)
    job = manager.load({"name": "cron", **LONG, "schedule": "* * * * *", "concurrency": "allow"})
    a, b = job.scheduler.fire(), job.scheduler.fire()
    assert a is not None and b is not None and a != b
    assert sorted(job.once) == sorted([a, b])
    assert all(p.alive for p in job.once.values())
    await manager.unload("cron")


@pytest.mark.parametrize(
    ("options", "field", "why"),
    [
        ({"schedule": "61 * * * *"}, "schedule", "bad cron expression"),
        ({"schedule": "* * *"}, "schedule", "5 fields"),
        ({"schedule": "0 0 31 2 *"}, "schedule", "bad cron expression"),  # never fires
        ({"schedule": "* * * * *", "timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"schedule": "* * * * *", "concurrency": "maybe"}, "concurrency", "skip, queue, allow"),
        ({"schedule": "* * * * *", "catch_up": "yes"}, "catch_up", "true or false"),
    ],
)
def test_bad_options_are_refused_naming_the_field(
    options: dict[str, Any], field: str, why: str
) -> None:
    with pytest.raises(ConfigError) as err:
        ProcessConfig.from_dict({"name": "cron", **TICK, **options})
    assert err.value.field == field
    assert why in str(err.value)


async def test_unload_and_stop_cancel_the_timer(manager: Manager) -> None:
    clock_at(manager, 11, 59, 59.5)  # the fire is 0.5 s away
    sub = manager.subscribe("scheduled_run")
    job = manager.load({"name": "cron", **TICK, "schedule": "* * * * *"})
    timer = job.scheduler.timer
    assert timer is not None
    manager.stop_job("cron")
    assert timer.cancelled() and manager.get("cron").status()["next_run"] is None
    manager.start_job("cron")
    timer = job.scheduler.timer
    assert timer is not None and manager.info("cron")["next_run"] is not None
    await manager.unload("cron")
    assert timer.cancelled() and job.scheduler.timer is None
    # past the fire time: no run came
    with pytest.raises(AssertionError, match="no matching event"):
        await next_event(sub, timeout=1.0)


async def test_an_update_reschedules_without_restarting(manager: Manager) -> None:
    clock_at(manager, 12, 0, 30)
    sub = sub_job(manager, "web")
    cfg = {"name": "web", **LONG, "numprocesses": 1, "startsecs": 0}
    job = manager.load({**cfg, "schedule": "0 * * * *"})
    await manager.wait_running("web", timeout=TIMEOUT)
    [pid] = manager.pids("web")
    first = (await next_event(sub, of("schedule"))).data["next_run"]
    await manager.update({**cfg, "schedule": "30 * * * *"})
    second = await next_event(sub, lambda e: e.type == "schedule" and e.data["next_run"])
    assert second.data["next_run"] - first == pytest.approx(-30 * 60)
    assert manager.pids("web") == [pid]  # not restarted
    await manager.update(cfg)  # no schedule any more
    assert job.scheduler.timer is None and manager.info("web")["next_run"] is None
    assert manager.pids("web") == [pid]


async def test_catch_up_runs_once_for_missed_fires(manager: Manager) -> None:
    now = clock_at(manager, 12, 0, 30)
    # the previous daemon followed the schedules until an hour ago
    manager.schedule_marks["default.late"] = now - 3600
    manager.schedule_marks["default.cron"] = now - 3600
    sub = manager.subscribe("scheduled_run")
    job = manager.load({"name": "cron", **TICK, "schedule": "*/5 * * * *", "catch_up": True})
    run = await next_event(sub)
    assert run.data["name"] == "default.cron"
    assert run.data["fire_time"] == pytest.approx(now - 30)  # 12:00, the last one missed
    assert job.scheduler.running or run.data["pid"] not in job.once
    assert manager.schedule_marks["default.cron"] >= now
    # without catch_up, missed fires are not replayed
    late = manager.load({"name": "late", **TICK, "schedule": "*/5 * * * *"})
    assert late.scheduler.running == set() and late.once == {}
    # not every start: a job stopped and started is not caught up
    manager.stop_job("cron")
    manager.start_job("cron")
    with pytest.raises(AssertionError, match="no matching event"):
        await next_event(sub, timeout=0.3)


def test_through_gafferd(tmp_path: Path) -> None:
    config = (
        "jobs:\n  tick:\n    cmd: sh\n    args: ['-c', 'echo tick']\n    numprocesses: 0\n"
        "    schedule: '* * * * * *'\n    concurrency: queue\n"  # every second
    )
    with served(tmp_path, config) as gaffer:
        run = wait_event(gaffer, lambda e: e.get("event") == "scheduled_run")
        assert run["name"] == "default.tick" and run["fire_time"] % 1 == 0
        info = gaffer("info", "tick")
        assert info.returncode == 0, info.stderr
        assert "schedule: * * * * * * (local time), concurrency queue" in info.stdout
        assert "next run: " in info.stdout and "next run: -" not in info.stdout
        [job] = gaffer.json("ps")
        assert job["next_run"] > time.time() - 1
        bad = tmp_path / "bad.yml"
        bad.write_text("name: bad\ncmd: 'true'\nschedule: 'every day'\n")
        r = gaffer("load", str(bad))
        assert r.returncode != 0 and "schedule" in r.stderr


def test_catch_up_after_the_daemon_was_down(tmp_path: Path) -> None:
    config = (
        "jobs:\n  nightly:\n    cmd: 'true'\n    numprocesses: 0\n"
        "    schedule: '0 3 * * *'\n    catch_up: true\n"
    )
    with served(tmp_path, config) as gaffer:
        [job] = gaffer.json("ps")
        assert job["next_run"] > time.time()
    # As if that daemon had stopped two days ago: a 03:00 run was missed since.
    with contextlib.closing(sqlite3.connect(tmp_path / "state" / "state.db")) as db, db:
        [(text,)] = db.execute("SELECT value FROM state WHERE key = 'jobs'").fetchall()
        state = json.loads(text)
        state["schedule_marks"]["default.nightly"] -= 2 * 86400
        db.execute("UPDATE state SET value = ? WHERE key = 'jobs'", (json.dumps(state),))
    with served(tmp_path, config) as gaffer:
        run = wait_event(gaffer, lambda e: e.get("event") == "scheduled_run")
        assert run["name"] == "default.nightly"
        missed = datetime.fromtimestamp(run["fire_time"])
        assert (missed.hour, missed.minute) == (3, 0) and run["fire_time"] < time.time()
