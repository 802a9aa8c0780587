"""sd_notify for supervised processes (``notify: true``): each process gets its own
``$NOTIFY_SOCKET``; ``READY=1`` (from ``systemd-notify --ready`` inside it) makes it
ready, ``STATUS=`` shows in its info and events, ``MAINPID=`` is followed, and with
``watchdog_sec`` a process that stops sending ``WATCHDOG=1`` is restarted."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from clikit import served
from conftest import TIMEOUT, next_event
from gaffer import states
from gaffer.config import ProcessConfig
from gaffer.errors import ConfigError
from gaffer.events import Event
from gaffer.manager import Manager
from test_readiness import free_port

needs_systemd_notify = pytest.mark.skipif(
    shutil.which("systemd-notify") is None, reason="systemd-notify is not installed"
)


def to(state: str) -> Callable[[Event], bool]:
    return lambda e: e.type == "state" and e.data["to"] == state


# A child that waits for a line on stdin before it says it is ready, so the test
# sees it starting first.
GATED = {
    "cmd": "sh",
    "args": ["-c", 'read go; systemd-notify --ready --status="serving on $PORT"; exec sleep 3600'],
    "env": {"PORT": "8080"},
    "redirect_input": True,
    "notify": True,
}

# READY=1 and a few WATCHDOG=1 pings, then silence (a hung program).
PINGS_THEN_HANGS = """
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"].replace("@", "\\0", 1)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=up, watchdog " + os.environ["WATCHDOG_USEC"].encode(), addr)
for _ in range(3):
    time.sleep(0.05)
    s.sendto(b"WATCHDOG=1", addr)
sys.stdin.read()  # hangs until stopped
"""


@needs_systemd_notify
async def test_systemd_notify_ready_from_inside_the_process(manager: Manager) -> None:
    sub = manager.subscribe("job.default.web")
    job = manager.load({"name": "web", **GATED})
    await next_event(sub, lambda e: e.type == "spawn")
    (proc,) = job.processes
    # the socket is its own, in the abstract namespace, and it has not said READY=1
    assert proc.env["NOTIFY_SOCKET"].startswith("@gaffer/")
    info = manager.get_process(proc.pid).info()
    assert info["state"] == states.STARTING and info["ready"] is False
    assert info["notify_socket"] == proc.env["NOTIFY_SOCKET"]
    assert manager.info("web")["ready"] == 0

    proc.send(b"go\n")
    notified = await next_event(sub, lambda e: e.type == "notify")
    assert notified.data["ready"] is True
    assert notified.data["status"] == "serving on 8080"
    running = await next_event(sub, to(states.RUNNING))
    assert running.data["reason"] == "ready: READY=1"
    info = manager.get_process(proc.pid).info()
    assert info["ready"] is True and info["status"] == "serving on 8080"
    assert manager.info("web")["ready"] == 1
    assert job.status(with_stats=False)["processes"][0]["status"] == "serving on 8080"
    await manager.stop_job("web")


async def test_no_ready_before_the_deadline_is_a_failed_start(manager: Manager) -> None:
    sub = manager.subscribe("job.default.mute")
    manager.load(
        {
            "name": "mute",
            "cmd": "sleep",
            "args": ["3600"],
            "notify": True,
            "ready": {"deadline": 0.3},
            "backoff": {"initial": 5},
        }
    )
    not_ready = await next_event(sub, lambda e: e.type == "not_ready")
    assert not_ready.data["reason"] == "not ready after 0.3s: no READY=1 received"
    backoff = await next_event(sub, to(states.BACKOFF))
    assert backoff.data["from"] == states.STARTING
    assert manager.info("mute")["exits_by_reason"]["start_failed"] == 1
    await manager.stop_job("mute")


async def test_a_silent_watchdog_restarts_the_process(manager: Manager) -> None:
    sub = manager.subscribe("job.default.hang")
    job = manager.load(
        {
            "name": "hang",
            "cmd": sys.executable,
            "args": ["-c", PINGS_THEN_HANGS],
            "redirect_input": True,
            "notify": True,
            "watchdog_sec": 0.4,
            "graceful_timeout": 1,
        }
    )
    notified = await next_event(sub, lambda e: e.type == "notify" and e.data.get("ready"))
    first = notified.data["pid"]
    # it was told the interval, in microseconds
    assert notified.data["status"] == "up, watchdog 400000"
    await next_event(sub, to(states.RUNNING))
    fired = await next_event(sub, lambda e: e.type == "watchdog")
    assert fired.data["pid"] == first
    assert fired.data["reason"] == "no WATCHDOG=1 for 0.4s"
    exited = await next_event(sub, lambda e: e.type == "exit")
    assert exited.data["pid"] == first and exited.data["reason"] == "watchdog"
    # restarted: a new process in the same slot, ready again by its own READY=1
    again = await next_event(sub, lambda e: e.type == "notify" and e.data.get("ready"))
    assert again.data["pid"] != first and again.data["index"] == 0
    info = manager.info("hang")
    assert info["exits_by_reason"]["watchdog"] == 1
    (record,) = [h for h in job.history if h["pid"] == first]
    assert record["reason"] == "watchdog"
    await manager.stop_job("hang")


@needs_systemd_notify
async def test_mainpid_is_followed_after_the_leader_exits(manager: Manager) -> None:
    # A forking daemon: the leader starts the real server, reports it and exits 0.
    sub = manager.subscribe("job.default.forking")
    job = manager.load(
        {
            "name": "forking",
            "cmd": "sh",
            "args": ["-c", "sleep 3600 & systemd-notify --ready --pid=$!; exit 0"],
            "notify": True,
        }
    )
    notified = await next_event(sub, lambda e: e.type == "notify" and "main_pid" in e.data)
    main_pid = notified.data["main_pid"]
    (proc,) = job.processes
    assert main_pid != proc.os_pid
    with open(f"/proc/{main_pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    await next_event(sub, to(states.RUNNING))
    # the leader is gone; the process is still running, as its main pid
    await _until_gone(proc.os_pid)
    info = manager.get_process(proc.pid).info()
    assert info["state"] == states.RUNNING and info["main_pid"] == main_pid
    # killing the main pid ends the process, and the job starts a new one
    os.kill(main_pid, signal.SIGKILL)
    exited = await next_event(sub, lambda e: e.type == "exit")
    assert exited.data["pid"] == proc.pid
    again = await next_event(sub, lambda e: e.type == "notify" and "main_pid" in e.data)
    assert again.data["pid"] != proc.pid
    # a stop reaches the main pid too (the leftover check would catch it)
    await manager.stop_job("forking")
    await _until_gone(again.data["main_pid"])


async def _until_gone(pid: int) -> None:
    """Wait for a pid to exit, on a pidfd (it need not be our child)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        await asyncio.wait_for(gone, TIMEOUT)
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@needs_systemd_notify
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to send as another user")
async def test_a_datagram_from_another_user_is_dropped(manager: Manager) -> None:
    sub = manager.subscribe("job.default.web")
    job = manager.load({"name": "web", "cmd": "sleep", "args": ["3600"], "notify": True})
    await next_event(sub, lambda e: e.type == "spawn")
    (proc,) = job.processes
    env = {"NOTIFY_SOCKET": proc.env["NOTIFY_SOCKET"]}
    # as nobody: dropped; then as root (the job's user): taken. (systemd-notify
    # waits for gafferd to close the fd it passes, so the loop must be free.)
    forged = await asyncio.create_subprocess_exec(
        "systemd-notify", "--ready", "--status=forged", env=env, preexec_fn=lambda: os.setuid(65534)
    )
    assert await forged.wait() == 0
    mine = await asyncio.create_subprocess_exec("systemd-notify", "--status=mine", env=env)
    assert await mine.wait() == 0
    notified = await next_event(sub, lambda e: e.type == "notify")
    assert notified.data["status"] == "mine" and "ready" not in notified.data
    assert manager.get_process(proc.pid).info()["state"] == states.STARTING
    await manager.stop_job("web")


def test_notify_options_are_checked() -> None:
    with pytest.raises(ConfigError) as e:
        ProcessConfig(name="a", cmd="x", watchdog_sec=5)
    assert e.value.field == "watchdog_sec" and "needs notify: true" in e.value.reason
    with pytest.raises(ConfigError) as e:
        ProcessConfig(name="a", cmd="x", notify=True, ready={"http": "http://x/"})
    assert e.value.field == "ready" and "ready may only set deadline" in e.value.reason
    with pytest.raises(ConfigError) as e:
        ProcessConfig(name="a", cmd="x", notify="yes please")
    assert e.value.field == "notify"
    cfg = ProcessConfig(name="a", cmd="x", notify=True, watchdog_sec=2, ready={"deadline": 9})
    assert ProcessConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["ready"] == {"deadline": 9.0}


@needs_systemd_notify
def test_gafferd_shows_readiness_and_status(tmp_path: Path) -> None:
    port = free_port()
    config = f"""
jobs:
  web:
    cmd: {sys.executable}
    args: [-m, http.server, $PORT, --bind, 127.0.0.1]
    env: {{PORT: "{port}"}}
    ready: {{http: "http://127.0.0.1:$PORT/", interval: 0.1}}
  worker:
    cmd: sh
    args: [-c, 'systemd-notify --ready --status="working for $PORT"; exec sleep 3600']
    env: {{PORT: "{port}"}}
    notify: true
    after: [default.web]
"""
    with served(tmp_path, config) as gaffer:
        # `start` waits until ready: web's page answers, then worker says READY=1
        r = gaffer("start", "worker", "--wait-timeout", "20")
        assert r.returncode == 0, r.stderr
        rows = {j["name"]: j["processes"][0] for j in gaffer.json("ps")}
        assert rows["default.web"]["ready"] is True
        assert rows["default.worker"]["ready"] is True
        assert rows["default.worker"]["status"] == f"working for {port}"
        info = gaffer("info", str(rows["default.worker"]["pid"]))
        assert info.returncode == 0, info.stderr
        assert f"status: working for {port}" in info.stdout
        assert "ready: yes" in info.stdout
        assert "notify socket: @gaffer/" in info.stdout


# READY=1 and a status; on SIGUSR1 a new status, through the same socket.
TELLS_ON_USR1 = """
import os, signal, socket
addr = os.environ["NOTIFY_SOCKET"].replace("@", "\\0", 1)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
signal.signal(signal.SIGUSR1, lambda *_: s.sendto(b"STATUS=after", addr))
s.sendto(b"READY=1\\nSTATUS=before", addr)
while True:
    signal.pause()
"""


@needs_systemd_notify
def test_the_notify_socket_survives_a_reexec(tmp_path: Path) -> None:
    from gaffer.client import Client
    from test_gafferd import read_until

    config = f"""
jobs:
  told:
    cmd: {sys.executable}
    args: ['-c', {json.dumps(TELLS_ON_USR1)}]
    notify: true
  forking:
    cmd: sh
    args: [-c, 'sleep 3600 & systemd-notify --ready --pid=$!; exit 0']
    notify: true
"""
    with served(tmp_path, config) as gaffer:
        r = gaffer("start", "told", "forking", "--wait-timeout", "20")
        assert r.returncode == 0, r.stderr
        (before,) = gaffer.json("ps", "told")[0]["processes"]
        assert before["status"] == "before"
        (forking,) = gaffer.json("ps", "forking")[0]["processes"]
        main_pid = gaffer.json("info", str(forking["pid"]))["main_pid"]
        gone = os.pidfd_open(main_pid)
        gaffer.daemon.send_signal(signal.SIGUSR2)
        read_until(gaffer.daemon, b"re-executed in place: adopted 2 process(es)")
        (after,) = gaffer.json("ps", "told")[0]["processes"]
        assert (after["os_pid"], after["status"], after["ready"]) == (
            before["os_pid"],
            "before",
            True,
        )
        # the forking job's leader is long gone: the new gafferd follows its MAINPID
        info = gaffer.json("info", str(forking["pid"]))
        assert (info["state"], info["main_pid"]) == (states.RUNNING, main_pid)
        r = gaffer("stop", "forking", "--wait-timeout", "20")
        assert r.returncode == 0, r.stderr
        assert select.select([gone], [], [], TIMEOUT)[0] == [gone]  # the stop reached it
        os.close(gone)
        # the new gafferd reads the same socket
        client = Client(gaffer.sock)
        with client.events(("notify",), timeout=TIMEOUT) as events:
            client.signal_process(before["pid"], "USR1")
            event = next(iter(events))
        assert event["status"] == "after" and event["pid"] == before["pid"]
