"""Readiness checks (``ready: {http|tcp|exec}``): a process is ``starting`` until its
check first passes, then ``running`` (ready); missing the deadline is a failed start;
dependants wait for the check; bad options are config errors naming the field."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SLEEP, TIMEOUT, next_event
from gaffer import states
from gaffer.config import ProcessConfig
from gaffer.errors import ConfigError, ReloadFailed
from gaffer.events import Event
from gaffer.manager import Manager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def to(state: str) -> Callable[[Event], bool]:
    return lambda e: e.type == "state" and e.data["to"] == state


class Health:
    """A tiny HTTP server on the test's loop: 503 until ``up`` is set, then 200."""

    def __init__(self) -> None:
        self.up = False
        self.paths: list[str] = []
        self.asked = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.paths.append(head.split()[1].decode())
        self.asked.set()
        status = b"200 OK" if self.up else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_http_check_holds_the_process_starting_until_2xx(manager: Manager) -> None:
    health = Health()
    port = await health.start()
    try:
        sub = manager.subscribe("job.default.web")
        job = manager.load(
            {
                "name": "web",
                **SLEEP,
                "numprocesses": 2,
                "env": {"PORT": str(port)},
                # per-process values expand in the URL
                "ready": {"http": "http://127.0.0.1:$PORT/ready/$GAFFER_INDEX", "interval": 0.05},
            }
        )
        failed = [await next_event(sub, lambda e: e.type == "ready_check") for _ in range(2)]
        assert {e.data["error"] for e in failed} == {"HTTP 503 Service Unavailable"}
        assert {e.data["index"] for e in failed} == {0, 1}
        # answered 503: both still starting, not ready, and they say why
        assert [p.state for p in job.processes] == [states.STARTING] * 2
        info = manager.info("web")
        assert info["ready"] == 0
        proc = manager.get_process(job.processes[0].pid).info()
        assert proc["ready"] is False and proc["ready_error"] == "HTTP 503 Service Unavailable"
        rows = job.status(with_stats=False)["processes"]
        assert [r["ready"] for r in rows] == [False, False]
        health.up = True
        ready = [await next_event(sub, to(states.RUNNING)) for _ in range(2)]
        assert {e.data["reason"] for e in ready} == {"ready: http check passed"}
        assert {"/ready/0", "/ready/1"} <= set(health.paths)
        assert manager.info("web")["ready"] == 2
        assert [r["ready"] for r in job.status(with_stats=False)["processes"]] == [True, True]
        assert manager.get_process(job.processes[1].pid).info()["ready_error"] is None
    finally:
        await manager.stop_job("web")
        await health.close()


async def test_tcp_check_passes_once_the_port_accepts(manager: Manager) -> None:
    port = free_port()
    sub = manager.subscribe("job.default.db")
    job = manager.load(
        {"name": "db", **SLEEP, "ready": {"tcp": "localhost:$((PORT))", "interval": 0.05}}
        | {"env": {"PORT": str(port)}}
    )
    failed = await next_event(sub, lambda e: e.type == "ready_check")
    assert failed.data["error"].startswith(f"cannot connect to localhost:{port}")
    assert job.processes[0].state == states.STARTING and not job.ready
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        event = await next_event(sub, to(states.RUNNING))
        assert event.data["reason"] == "ready: tcp check passed"
        assert job.ready
    finally:
        await manager.stop_job("db")
        server.close()
        await server.wait_closed()


async def test_exec_check_passes_on_exit_0(manager: Manager, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    sub = manager.subscribe("job.default.w")
    job = manager.load(
        {"name": "w", **SLEEP, "ready": {"exec": f"test -e {flag}", "interval": 0.05}}
    )
    failed = await next_event(sub, lambda e: e.type == "ready_check")
    assert failed.data["error"] == f"test -e {flag}: exited with status 1"
    assert job.processes[0].state == states.STARTING
    flag.touch()
    await next_event(sub, to(states.RUNNING))
    assert manager.get_process(job.processes[0].pid).info()["ready"] is True
    await manager.stop_job("w")


async def test_a_missed_deadline_is_a_failed_start(manager: Manager) -> None:
    sub = manager.subscribe("job.default.slow")
    manager.load(
        {
            "name": "slow",
            **SLEEP,
            # each attempt hangs: it is killed at its timeout (no leftover sleep)
            "ready": {"exec": ["sleep", "30"], "timeout": 0.1, "interval": 0.05, "deadline": 0.5},
            "backoff": {"initial": 5},
        }
    )
    not_ready = await next_event(sub, lambda e: e.type == "not_ready")
    why = "not ready after 0.5s: no answer within timeout=0.1s"
    assert not_ready.data["reason"] == why
    event: Event = await next_event(sub, to(states.BACKOFF))
    assert event.data["from"] == states.STARTING
    assert why in event.data["reason"]
    assert "failed to start; retry in 5s" in event.data["reason"]
    info = manager.info("slow")
    assert info["exits_by_reason"]["start_failed"] == 1
    assert info["slots"][0]["status"] == "backoff" and info["slots"][0]["failures"] == 1
    await manager.stop_job("slow")


async def test_a_dependant_waits_for_the_readiness_check(manager: Manager, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    sub = manager.subscribe("job")
    db = manager.load(
        {"name": "db", **SLEEP, "ready": {"exec": ["test", "-e", str(flag)], "interval": 0.05}}
    )
    web = manager.load({"name": "web", **SLEEP, "after": ["db"]})
    await next_event(sub, lambda e: e.type == "ready_check")
    assert web.waiting == "for default.db (0/1 ready)" and web.processes == []
    flag.touch()
    seen = []
    for _ in range(2):
        e = await next_event(sub, lambda e: e.type == "spawn" or to(states.RUNNING)(e))
        seen.append((e.type, e.data["name"]))
    assert seen == [("state", "default.db"), ("spawn", "default.web")]
    assert db.ready
    await manager.wait_running("web", timeout=TIMEOUT)


async def test_a_rolling_update_waits_for_readiness(manager: Manager, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    check = {"exec": ["test", "-e", str(flag)], "interval": 0.05, "deadline": 0.5}
    job = manager.load({"name": "web", **SLEEP, "ready": check})
    await manager.wait_running("web", timeout=TIMEOUT)
    old = job.processes[0]
    # the new config's check never passes: the old process keeps the slot
    never = {**check, "exec": ["test", "-e", str(tmp_path / "never")]}
    with pytest.raises(ReloadFailed, match=r"failed to start \(not ready after 0.5s: test -e"):
        await manager.update({"name": "web", **SLEEP, "ready": never})
    assert job.processes == [old] and old.state == states.RUNNING
    # one whose check passes replaces it once ready
    await manager.update({"name": "web", **SLEEP, "ready": {**check, "interval": 0.1}})
    (new,) = job.processes
    assert (
        new is not old
        and new.state == states.RUNNING
        and new.reason == ("ready: exec check passed")
    )
    assert old.state == states.EXITED and old.stopped
    await manager.stop_job("web")


@pytest.mark.parametrize(
    ("ready", "error"),
    [
        ("http://x", r"^ready: must be a mapping"),
        ({}, r"^ready: needs exactly one of http, tcp or exec$"),
        ({"http": "http://x", "tcp": "x:1"}, r"^ready: needs exactly one"),
        ({"http": "ftp://x"}, r"^ready\.http: must be an http:// or https:// URL"),
        ({"tcp": "localhost"}, r"^ready\.tcp: must be HOST:PORT"),
        ({"tcp": "localhost:99999"}, r"^ready\.tcp: must be HOST:PORT"),
        ({"exec": ""}, r"^ready\.exec: is empty"),
        ({"exec": 3}, r"^ready\.exec: must be a command"),
        ({"exec": "true", "interval": 0}, r"^ready\.interval: must be > 0"),
        ({"exec": "true", "deadline": -1}, r"^ready\.deadline: must be a number"),
        ({"exec": "true", "every": 1}, r"^ready\.every: unknown option$"),
    ],
)
def test_bad_ready_options_name_the_field(ready: object, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        ProcessConfig.from_dict({"name": "x", "cmd": "sleep", "ready": ready})


async def test_variables_in_the_check_are_checked_at_load(manager: Manager) -> None:
    with pytest.raises(ConfigError, match=r"^ready\.http: undefined variable \$NOPE$"):
        manager.load({"name": "x", **SLEEP, "ready": {"http": "http://h:$NOPE/"}})
    with pytest.raises(ConfigError, match=r"^ready\.tcp: must be HOST:PORT, got 'h:0'"):
        manager.load({"name": "x", **SLEEP, "ready": {"tcp": "h:$GAFFER_INDEX"}})
    assert manager.jobs() == []


def test_ready_round_trips() -> None:
    cfg = ProcessConfig.from_dict({"name": "x", "cmd": "sleep", "ready": {"exec": "a 'b c'"}})
    d = cfg.to_dict()
    assert d["ready"] == {"exec": ["a", "b c"], "interval": 0.5, "timeout": 2.0, "deadline": 60.0}
    assert ProcessConfig.from_dict(d) == cfg
    assert ProcessConfig.from_dict({"name": "x", "cmd": "sleep"}).to_dict()["ready"] is None
