"""Liveness after start (``health:``), the one-off run's time limit (``timeout:``)
and how an exit's reason is told (``health``, ``timeout``, ``oom``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SLEEP, next_event
from gaffer import states
from gaffer.config import ProcessConfig
from gaffer.errors import ConfigError
from gaffer.manager import Manager
from gaffer.stats import oom_kills
from test_readiness import Health, to


async def test_failing_health_checks_restart_the_process(manager: Manager) -> None:
    health = Health()
    health.up = True
    port = await health.start()
    try:
        sub = manager.subscribe("job.default.api")
        job = manager.load(
            {
                "name": "api",
                **SLEEP,
                "env": {"PORT": str(port)},
                "health": {
                    "http": "http://127.0.0.1:$PORT/health",
                    "interval": 0.05,
                    "failures": 3,
                },
            }
        )
        await next_event(sub, to(states.RUNNING))
        (first,) = job.processes
        # passing: healthy, and it keeps running
        await health.asked.wait()
        health.asked.clear()
        await health.asked.wait()
        assert first.info()["healthy"] is True and first.info()["health_error"] is None
        assert health.paths[0] == "/health"

        health.up = False
        failing = await next_event(sub, lambda e: e.type == "health_check")
        assert failing.data["error"] == "HTTP 503 Service Unavailable"
        assert failing.data["failures"] == 1
        condemned = await next_event(sub, lambda e: e.type == "health")
        assert condemned.data["pid"] == first.pid
        why = "failed 3 health checks in a row: HTTP 503 Service Unavailable"
        assert condemned.data["reason"] == why
        exited = await next_event(sub, lambda e: e.type == "exit")
        assert exited.data["reason"] == "health"
        health.up = True
        await next_event(sub, to(states.RUNNING))
        assert job.processes[0].pid != first.pid
        assert manager.info("api")["exits_by_reason"]["health"] == 1
        (record,) = [h for h in job.history if h["pid"] == first.pid]
        assert record["reason"] == "health"
        await manager.stop_job("api")
    finally:
        await health.close()


async def test_a_one_off_run_past_its_timeout_is_stopped(manager: Manager) -> None:
    sub = manager.subscribe("job.default.task")
    job = manager.load({"name": "task", **SLEEP, "numprocesses": 0, "timeout": 0.2})
    pid = manager.commit("task")
    condemned = await next_event(sub, lambda e: e.type == "timeout")
    assert condemned.data["pid"] == pid
    assert condemned.data["reason"] == "still running after timeout=0.2s"
    exited = await next_event(sub, lambda e: e.type == "exit")
    assert exited.data["pid"] == pid and exited.data["reason"] == "timeout"
    assert [h["reason"] for h in job.history] == ["timeout"]
    await manager.stop_job("task")


@pytest.mark.parametrize(
    ("health", "error"),
    [
        ({"http": "http://x/", "failures": 0}, r"^health\.failures: must be a whole number ≥ 1"),
        ({"http": "http://x/", "deadline": 3}, r"^health\.deadline: unknown option$"),
        ({"tcp": "nowhere"}, r"^health\.tcp: must be HOST:PORT"),
        ("yes", r"^health: must be a mapping like \{http: URL, interval: 10\}"),
    ],
)
def test_bad_health_options_name_the_field(health: object, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        ProcessConfig(name="a", cmd="x", health=health)


def test_health_and_timeout_round_trip() -> None:
    cfg = ProcessConfig(name="a", cmd="x", health={"exec": "true", "failures": 2}, timeout=60)
    assert cfg.timeout == 60
    assert cfg.to_dict()["health"] == {
        "exec": ["true"],
        "interval": 10.0,
        "timeout": 2.0,
        "failures": 2,
    }
    assert ProcessConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("text", "key", "count"),
    [
        ("low 0\nhigh 0\nmax 0\noom 2\noom_kill 1\n", "oom_kill", 1),  # cgroup v2 memory.events
        ("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n", "oom_kill", 7),  # v1 oom_control
        ("oom_kill_disable 0\n", "oom_kill", None),  # a kernel before 4.13
    ],
)
def test_oom_kill_counts_are_read(tmp_path: Path, text: str, key: str, count: int | None) -> None:
    path = tmp_path / "memory.events"
    path.write_text(text)
    assert oom_kills((str(path), key)) == count
