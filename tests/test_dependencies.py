"""Dependencies between jobs (``after``): start gating, reverse stop order,
config errors for cycles and missing jobs, and concurrent requests applied once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from clikit import served
from conftest import PYTHON, SLEEP, TIMEOUT, next_event, py
from gaffer import states
from gaffer.errors import ConfigError
from gaffer.events import Event
from gaffer.http import HttpApp
from gaffer.manager import Manager
from httpkit import Client
from test_gafferd import api_json, gafferd

# up for 0.3 s before it counts as running (ready): the order is visible
SLOW = {**SLEEP, "startsecs": 0.3}


def is_start_or_ready(e: Event) -> bool:
    return e.type == "spawn" or (e.type == "state" and e.data.get("to") == states.RUNNING)


async def test_a_chain_starts_in_order_and_stops_in_reverse(manager: Manager) -> None:
    sub = manager.subscribe("job")
    manager.load({"name": "a", **SLOW})
    manager.load({"name": "b", **SLOW, "after": ["a"]})
    manager.load({"name": "c", **SLOW, "after": ["default.b"]})
    # a starts at once; b waits for a, c for b, and they say so
    assert manager.info("b")["waiting"] == "for default.a (0/1 ready)"
    assert manager.info("c")["waiting"] == "for default.b (itself waiting)"
    assert manager.info("c")["processes"] == []
    status = manager.get("c").status()
    assert status["waiting"] == "for default.b (itself waiting)"
    seen = []
    for _ in range(6):
        event = await next_event(sub, is_start_or_ready)
        seen.append((event.type, event.data["name"]))
    assert seen == [
        ("spawn", "default.a"),
        ("state", "default.a"),
        ("spawn", "default.b"),
        ("state", "default.b"),
        ("spawn", "default.c"),
        ("state", "default.c"),
    ]
    assert all(manager.info(j)["waiting"] is None for j in ("a", "b", "c"))
    # stopping all: c has exited before b is stopped, b before a
    await manager.astop()
    exits = []
    while len(exits) < 3:
        event = await next_event(sub, lambda e: e.type == "exit")
        exits.append(event.data["name"])
    assert exits == ["default.c", "default.b", "default.a"]


async def test_only_the_start_is_gated(manager: Manager) -> None:
    manager.load({"name": "db", **SLEEP})
    manager.load({"name": "web", **SLEEP, "after": ["db"]})
    web = await manager.wait_running("web", timeout=TIMEOUT)
    before = web.pids
    # the dependency restarting does not stop (nor hold back) its dependant
    old = manager.list("db")[0]
    await manager.stop_process(old.pid)
    db = await manager.wait_running("db", timeout=TIMEOUT)
    assert db.pids != [old.pid]
    assert web.pids == before and web.waiting is None
    # a stopped dependant is gated again at its next start
    await manager.stop_job("db")
    await manager.stop_job("web")
    manager.start_job("web")
    assert web.waiting == "for default.db (stopped)" and web.processes == []
    manager.start_job("db")
    await manager.wait_running("web", timeout=TIMEOUT)


async def test_a_dependant_of_a_failed_job_waits_and_says_why(manager: Manager) -> None:
    fails = py(
        "import sys; sys.exit(3)",
        startsecs=1,
        flapping={"attempts": 1, "window": 10, "retry_in": 0.1, "max_retry": 0},
    )
    manager.load({"name": "db", **fails})
    web = manager.load({"name": "web", **SLEEP, "after": ["db"]})
    await manager.wait_for(lambda: web.waiting == "for default.db, which failed (fatal)", TIMEOUT)
    assert web.processes == [] and web.active
    # the dependency fixed: the dependant starts as soon as it is ready
    await manager.update({"name": "db", **SLEEP}, start=True)
    manager.start_job("db")  # an explicit start retries the fatal slot
    await manager.wait_running("web", timeout=TIMEOUT)
    assert web.waiting is None


async def test_a_dependency_loaded_later_releases_its_dependant(manager: Manager) -> None:
    # a dependency unloaded after its dependant was loaded: it waits for it
    manager.load({"name": "db", **SLEEP}, start=False)
    web = manager.load({"name": "web", **SLEEP, "after": ["db"]})
    assert web.waiting == "for default.db (stopped)"
    await manager.unload("db")
    await manager.wait_for(lambda: web.waiting == "for default.db (not loaded)", TIMEOUT)
    manager.load({"name": "db", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)


async def test_cycles_and_missing_jobs_are_config_errors(manager: Manager) -> None:
    with pytest.raises(ConfigError, match=r"^after: no job default.nope \(load it first\)$"):
        manager.load({"name": "a", **SLEEP, "after": ["nope"]})
    assert manager.jobs() == []
    with pytest.raises(ConfigError, match=r"after: a dependency cycle: s\.x -> s\.x"):
        manager.load({"name": "x", **SLEEP, "after": ["x"]}, sessionid="s")
    manager.load({"name": "a", **SLEEP})
    manager.load({"name": "b", **SLEEP, "after": ["a"]})
    manager.load({"name": "c", **SLEEP, "after": ["b"]})
    msg = "after: a dependency cycle: default.a -> default.c -> default.b -> default.a"
    with pytest.raises(ConfigError, match=msg):
        manager.update({"name": "a", **SLEEP, "after": ["c"]})
    assert manager.get("a").config.after == ()
    # bad values name the field
    with pytest.raises(ConfigError, match=r"^after: must be a list"):
        manager.load({"name": "d", **SLEEP, "after": "a"})
    with pytest.raises(ConfigError, match=r"^after\[1\]: 'a' is listed twice"):
        manager.load({"name": "d", **SLEEP, "after": ["a", "a"]})
    with pytest.raises(ConfigError, match=r"^after\[0\]: bad job name"):
        manager.load({"name": "d", **SLEEP, "after": ["a\nb"]})


async def test_concurrent_requests_are_applied_once(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    web = {"name": "web", **SLEEP, "numprocesses": 2}
    first, second = await asyncio.gather(c.post("/jobs/default", web), c.post("/jobs/default", web))
    assert sorted([first.status, second.status]) == [200, 409]
    job = await manager.wait_running("web", timeout=TIMEOUT)
    before = set(job.pids)
    # two reloads at once: one rollout, both answered with its result
    spawns: list[Event] = []
    manager.emitter.subscribe("job.default.web.spawn", spawns.append)
    r1, r2 = await asyncio.gather(
        c.post("/jobs/default/web/state?wait=1", "2"), c.post("/jobs/default/web/state?wait=1", "2")
    )
    assert (r1.status, r2.status) == (200, 200)
    after = set(job.pids)
    assert len(after) == 2 and not after & before
    assert job.retiring == set() and len(manager.list()) == 2
    await manager.wait_for(lambda: len(spawns) >= 2, TIMEOUT)  # every event delivered
    assert {e.data["pid"] for e in spawns} == after and len(spawns) == 2
    # two identical updates at once: one set of processes
    changed = {**web, "env": {"V": "2"}}
    u1, u2 = await asyncio.gather(
        c.put("/jobs/default/web?wait=1", changed), c.put("/jobs/default/web?wait=1", changed)
    )
    assert (u1.status, u2.status) == (201, 201)
    assert len(job.processes) == 2 and not set(job.pids) & after
    assert len(manager.list()) == 2 and job.retiring == set()
    # an unknown dependency over the API: 400 naming the field
    r = await c.post("/jobs/default", {"name": "x", **SLEEP, "after": ["nope"]})
    assert r.status == 400 and r.json["error"].startswith("after: no job default.nope")


CYCLE = (
    "jobs:\n"
    "  a: {cmd: sleep, args: ['3600'], after: [c]}\n"
    "  b: {cmd: sleep, args: ['3600'], after: [a]}\n"
    "  c: {cmd: sleep, args: ['3600'], after: [b]}\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CYCLE, "jobs.default.a.after: a dependency cycle: default.a -> default.c -> default.b"),
        (
            "jobs:\n  a: {cmd: sleep, after: [s.b]}\n",
            "jobs.default.a.after: default.a depends on s.b, which does not exist",
        ),
    ],
)
def test_check_rejects_cycles_and_missing_jobs(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cfg.yml").write_text(text)
    r = gafferd("--check", "-c", "cfg.yml", cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr


# listed before its dependency: the file is checked as a whole
ORDERED = (
    "jobs:\n"
    "  web: {cmd: sleep, args: ['3600'], startsecs: 0, after: [db]}\n"
    f"  db: {{cmd: {PYTHON}, args: ['-c', 'import time; time.sleep(3600)'], startsecs: 0.3}}\n"
)


def test_gafferd_starts_in_order_and_refuses_a_cycle_on_reload(tmp_path: Path) -> None:
    with served(tmp_path, ORDERED) as gaffer:
        # `gaffer start` waits (on events) until web runs: db was ready first
        r = gaffer("start", "web", "--wait-timeout", "20")
        assert r.returncode == 0, r.stderr
        _, status = api_json(gaffer.sock, "/status")
        assert isinstance(status, dict)
        uptime = {j["name"]: j["processes"][0]["uptime"] for j in status["jobs"]}
        assert uptime["default.db"] - uptime["default.web"] >= 0.25
        assert all(j["waiting"] is None for j in status["jobs"])
        # a reload with a cycle changes nothing and says why
        (tmp_path / "gafferd.yml").write_text(CYCLE)
        code, body = api_json(gaffer.sock, "/reload", "POST")
        assert code == 409 and isinstance(body, dict)
        assert "a dependency cycle: default.a -> default.c -> default.b" in body["error"]
        assert api_json(gaffer.sock, "/jobs")[1] == {"jobs": ["default.web", "default.db"]}
