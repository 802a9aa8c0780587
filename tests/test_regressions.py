"""Regression tests for bugs found in review: each names what used to go wrong."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PYTHON, SLEEP, TIMEOUT, gone, next_event, output_of
from gaffer import states
from gaffer.config import ProcessConfig
from gaffer.errors import ConfigError, InvalidState, ReloadFailed
from gaffer.events import Event
from gaffer.manager import Manager
from test_gafferd import GAFFERD, gafferd, read_until


async def test_bad_expansion_in_any_slot_is_caught_at_load(manager: Manager) -> None:
    # Used to pass the load (which checked slot 0 only) and leave a stuck process.
    with pytest.raises(ConfigError, match="division by zero"):
        manager.load(
            {
                "name": "d",
                **SLEEP,
                "numprocesses": 2,
                "env": {"X": "$((7300 / (GAFFER_INDEX - 1)))"},
            }
        )
    assert manager.jobs() == []


async def test_spawn_error_of_any_kind_is_a_failed_start(manager: Manager) -> None:
    # Scaling into a slot whose values cannot be computed: a failed start, and
    # stopping the job still finishes (it used to hang forever).
    sub = manager.subscribe("job.default.d")
    manager.load(
        {"name": "d", **SLEEP, "flapping": False, "env": {"X": "$((7300 / (GAFFER_INDEX - 1)))"}}
    )
    manager.scale("d", 1)
    e = await next_event(sub, lambda e: e.type == "exit" and e.data["index"] == 1)
    assert e.data["reason"] == "spawn_error" and "division by zero" in e.data["error"]
    await asyncio.wait_for(manager.stop_job("d"), TIMEOUT)


def test_nul_bytes_are_rejected() -> None:
    for bad in ({"args": ["a\0b"]}, {"env": {"A": "x\0"}}, {"cmd": "sl\0eep"}):
        with pytest.raises(ConfigError, match="NUL byte"):
            ProcessConfig.from_dict({"name": "n", "cmd": "sleep", **bad})


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_uid_without_passwd_entry_needs_a_gid() -> None:
    # It used to run with gid 0.
    with pytest.raises(ConfigError, match="gid: uid 54321 has no passwd entry"):
        ProcessConfig("u", "true", uid=54321)
    assert ProcessConfig("u", "true", uid=54321, gid=54321).gid == 54321


async def test_reload_racing_a_scale_down_leaves_nothing_behind(manager: Manager) -> None:
    # The old process of a slot scaled away mid-reload used to run on, unsupervised.
    manager.load(
        {"name": "r", "cmd": "sleep", "args": ["3600"], "numprocesses": 2, "startsecs": 0.3}
    )
    await manager.wait_running("r", timeout=TIMEOUT)
    old = manager.list("r")
    sub = manager.subscribe("job.default.r")
    reload = manager.reload("r")
    await next_event(sub, lambda e: e.type == "spawn" and e.data["index"] == 1)
    manager.scale("r", "=1")
    await asyncio.wait_for(reload, TIMEOUT)
    await manager.wait_for(lambda: not any(p.alive for p in old), timeout=TIMEOUT)
    assert len(manager.list("r")) == 1


async def test_stop_does_not_wait_for_dead_grandchildren(manager: Manager) -> None:
    # sh's child dies with it; its zombie used to make the stop wait graceful_timeout.
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "sh",
            "cmd": "sh",
            "args": ["-c", "echo up; while true; do sleep 60; done"],
            "graceful_timeout": 8,
        }
    )
    await output_of(sub, b"up")
    t0 = time.monotonic()
    await manager.stop_job("sh")
    assert time.monotonic() - t0 < 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', sys.argv[1], flush=True)\n"
    "time.sleep(3600)\n"
)


async def test_stop_first_rolling_reload_with_per_slot_ports(manager: Manager) -> None:
    # start-first cannot work when each slot binds a fixed port; stop-first can.
    base = _free_port()
    job = {
        "name": "web",
        "cmd": PYTHON,
        "args": ["-c", SERVER, "$((BASE + GAFFER_INDEX))"],
        "env": {"BASE": str(base)},
        "startsecs": 0.2,
        "flapping": False,
    }
    manager.load({**job, "rolling": "start-first"})
    await manager.wait_running("web", timeout=TIMEOUT)
    with pytest.raises(ReloadFailed):
        await manager.reload("web")
    await manager.unload("web")
    manager.load({**job, "rolling": "stop-first", "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    before = manager.pids("web")
    await manager.reload("web")
    await manager.wait_running("web", timeout=TIMEOUT)
    assert set(manager.pids("web")).isdisjoint(before)


async def test_output_flood_to_an_unread_subscription_is_bounded(manager: Manager) -> None:
    # The queue used to be bounded by event count only: 10,000 x 256 KiB.
    sub = manager.subscribe("stream", max_bytes=1 << 20)
    done = manager.subscribe("job.default.flood")
    manager.load(
        {
            "name": "flood",
            "cmd": "head",
            "args": ["-c", "50000000", "/dev/zero"],
            "restart": "never",
        }
    )
    await next_event(done, lambda e: e.type == "reap")
    assert sub.dropped > 0
    assert sub._bytes <= 1 << 20


async def test_update_of_size_and_command_together(manager: Manager) -> None:
    # New slots used to start on the old config and be replaced at once.
    manager.load({"name": "u", **SLEEP})
    await manager.wait_running("u", timeout=TIMEOUT)
    await manager.update(
        {"name": "u", "cmd": "sleep", "args": ["3601"], "startsecs": 0, "numprocesses": 3}
    )
    procs = manager.list("u")
    assert [p.argv for p in procs] == [["sleep", "3601"]] * 3
    assert manager.info("u")["restarts"] == 0  # nothing was started twice


async def test_failed_update_keeps_the_old_config(manager: Manager) -> None:
    manager.load({"name": "u", **SLEEP, "startsecs": 0.2})
    await manager.wait_running("u", timeout=TIMEOUT)
    with pytest.raises(ReloadFailed):
        await manager.update({"name": "u", "cmd": "false", "startsecs": 0.2, "flapping": False})
    assert manager.info("u")["config"]["cmd"] == "sleep"
    # and a crash of the old process is repaired with the old config
    proc = manager.list("u")[0]
    os.kill(proc.os_pid or 0, signal.SIGKILL)
    await manager.wait_for(
        lambda: (
            bool(manager.list("u"))
            and manager.list("u")[0] is not proc
            and manager.list("u")[0].state == states.RUNNING
        ),
        timeout=TIMEOUT,
    )
    assert manager.list("u")[0].argv == ["sleep", "3600"]


async def test_stop_during_reload_is_quiet(manager: Manager) -> None:
    manager.load({"name": "r", "cmd": "sleep", "args": ["3600"], "startsecs": 0.3})
    await manager.wait_running("r", timeout=TIMEOUT)
    reload = manager.reload("r")
    await manager.stop_job("r")
    await asyncio.wait_for(reload, TIMEOUT)  # no ReloadFailed: it was stopped, not broken
    assert manager.pids() == []


async def test_work_is_refused_while_stopping(manager: Manager) -> None:
    manager.load(
        {
            "name": "a",
            "cmd": PYTHON,
            "args": [
                "-c",
                "import signal,time; "
                "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)",
            ],
            "graceful_timeout": 0.3,
            "startsecs": 0,
        }
    )
    await manager.wait_running("a", timeout=TIMEOUT)
    began = manager.subscribe("stop_process")
    stopping = asyncio.ensure_future(manager.astop())
    await next_event(began)  # astop is stopping "a"
    with pytest.raises(InvalidState, match="stopping"):
        manager.load({"name": "b", **SLEEP})
    with pytest.raises(InvalidState, match="stopping"):
        manager.commit("a")
    await stopping


def test_run_returns_even_if_the_stop_callback_raises(loop_kind: str) -> None:
    m = Manager(loop_kind=loop_kind)
    m.start()

    def bad(_: Manager) -> None:
        raise RuntimeError("callback bug")

    m.loop.call_soon(m.stop, bad)
    m.run()  # returns (it used to run forever); the loop logs the callback's error
    assert not m.started
    m.loop.close()


async def test_unsubscribing_inside_a_listener_does_not_skip_others(manager: Manager) -> None:
    seen: list[str] = []

    def first(e: Event) -> None:
        seen.append("first")
        manager.emitter.unsubscribe("manager", first)

    def second(e: Event) -> None:
        seen.append("second")

    manager.emitter.subscribe("manager", first)
    manager.emitter.subscribe("manager", second)
    sub = manager.subscribe("manager")
    manager._publish("test", {})
    await next_event(sub)
    assert seen == ["first", "second"]


async def test_two_readers_of_one_subscription(manager: Manager) -> None:
    sub = manager.subscribe("manager")
    # Both readers are waiting before the events arrive: their first steps were
    # scheduled before the delivery that the publishing schedules.
    a = asyncio.ensure_future(sub.get())
    b = asyncio.ensure_future(sub.get())
    manager._publish("one", {})
    manager._publish("two", {})
    got = await asyncio.wait_for(asyncio.gather(a, b), TIMEOUT)
    assert sorted(e.type for e in got) == ["one", "two"]


async def test_no_hot_loop_without_flapping_protection(manager: Manager) -> None:
    # startsecs 0 + flapping off used to respawn `true` ~900 times a second.
    sub = manager.subscribe("job.default.t")
    manager.load(
        {
            "name": "t",
            "cmd": "true",
            "startsecs": 0,
            "flapping": False,
            "backoff": {"initial": 0.05, "factor": 2, "max": 0.2},
        }
    )
    e = await next_event(
        sub, lambda e: e.type == "state" and e.data["to"] in states.TERMINAL_STATES
    )
    assert e.data["to"] == states.BACKOFF
    await manager.stop_job("t")


async def test_custom_streams_leak_no_inheritable_fds(manager: Manager) -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)  # as a careless embedding program might
    try:
        sub = manager.subscribe("stream")
        manager.load(
            {
                "name": "fds",
                "cmd": PYTHON,
                "restart": "never",
                "custom_streams": ["c"],
                "args": [
                    "-c",
                    "import os; print(sorted(int(f) for f in "
                    "os.listdir('/proc/self/fd')), flush=True)",
                ],
            }
        )
        out = await output_of(sub, b"]")
    finally:
        os.close(r)
        os.close(w)
    fds = eval(out.strip())
    assert w not in fds
    assert set(fds) <= {0, 1, 2, 3, 4}  # 3: the stream; 4: listdir's own


async def test_monitor_of_an_exited_process_stops_the_timer(manager: Manager) -> None:
    manager.load({"name": "m", **SLEEP, "restart": "never"})
    await manager.wait_running("m", timeout=TIMEOUT)
    pid = manager.pids("m")[0]
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    manager.monitor(lambda ev, st: got.put_nowait(st), pid)
    await asyncio.wait_for(got.get(), TIMEOUT)
    await manager.stop_process(pid)
    assert manager._stats_timer is None  # nothing left to sample: no wake-ups


def test_check_reports_bad_encoding_bad_keys_and_duplicate_jobs(tmp_path: Path) -> None:
    cases = {
        b"jobs:\n  web:\n    cmd: \xff\xfe\n": "not UTF-8 text",
        b"jobs:\n  ? [a, b]\n  : {cmd: x}\n": "a key must be a plain value, not list",
        b"jobs:\n  web: {cmd: sleep}\n  default.web: {cmd: sleep}\n": (
            "jobs.default.web: the same job as jobs.web"
        ),
    }
    for text, message in cases.items():
        cfg = tmp_path / "c.yml"
        cfg.write_bytes(text)
        r = gafferd("--check", "-c", str(cfg))
        assert r.returncode == 2, r.stderr
        assert message in r.stderr and "Traceback" not in r.stderr


def test_second_sigterm_kills_every_child(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yml"
    cfg.write_text(
        "jobs:\n  stubborn:\n    cmd: " + sys.executable + "\n"
        "    args: ['-c', 'import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        'print("up", flush=True); time.sleep(3600)\']\n'
        "    graceful_timeout: 60\n    numprocesses: 2\n"
    )
    proc = subprocess.Popen([*GAFFERD, "-c", str(cfg)], stderr=subprocess.PIPE)
    try:
        out = read_until(proc, b"stubborn.1 | up")
        if b"stubborn.0 | up" not in out:
            read_until(proc, b"stubborn.0 | up")
        import psutil

        children = psutil.Process(proc.pid).children()
        proc.send_signal(signal.SIGTERM)
        read_until(proc, b"stopping every job")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 1
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- second review --------------------------------------------------------------------


# Takes 0.3 s to stop after SIGTERM: long enough to act while it is stopping.
SLOW_TO_STOP = (
    "import signal,sys,time; signal.signal(signal.SIGTERM, "
    "lambda *a: (time.sleep(0.3), sys.exit(0))); print('ready', flush=True); time.sleep(3600)"
)


def orphans(manager: Manager) -> list[object]:
    """Processes the manager runs that no job accounts for."""
    tracked = {p for j in manager._all_jobs() for p in j.all_processes()}
    return [p for p in manager._processes.values() if p not in tracked]


async def mid_stop_first_reload(
    manager: Manager, name: str, **options: object
) -> asyncio.Future[None]:
    """Load a stop-first job of SLOW_TO_STOP processes, reload it, and return the
    reload's future once its first old process is stopping (slowly: every
    process has said it is ready, so its SIGTERM handler is in place)."""
    out = manager.subscribe("stream")
    config = {
        "name": name,
        "cmd": PYTHON,
        "args": ["-c", SLOW_TO_STOP],
        "startsecs": 0,
        "rolling": "stop-first",
        **options,
    }
    manager.load(config)
    ready = 0
    while ready < int(str(config.get("numprocesses", 1))):
        ready += (await next_event(out, lambda e: e.type == "output")).data["data"].count(b"ready")
    manager.unsubscribe("stream", out)
    events = manager.subscribe(f"job.default.{name}")
    reload = manager.reload(name)
    await next_event(events, lambda e: e.type == "state" and e.data["to"] == states.STOPPING)
    manager.unsubscribe(f"job.default.{name}", events)
    return reload


async def test_giving_up_a_wait_does_not_poison_the_stop(manager: Manager) -> None:
    ignore = (
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(3600)"
    )
    sub = manager.subscribe("stream")
    manager.load({"name": "s", "cmd": PYTHON, "args": ["-c", ignore], "graceful_timeout": 0.5})
    await output_of(sub, b"ready")
    proc = manager.list("s")[0]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.stop_job("s"), 0.01)
    # the process's own future is intact: later waits and the shutdown work
    assert (await asyncio.wait_for(proc.wait(), TIMEOUT)) is proc
    await asyncio.wait_for(manager.stop_job("s"), TIMEOUT)


async def test_shutdown_during_a_stop_first_reload_stops_everything(manager: Manager) -> None:
    manager.load({"name": "db", **SLEEP, "priority": 1})
    await manager.wait_running("db", timeout=TIMEOUT)
    reload = await mid_stop_first_reload(manager, "web", priority=10)
    os_pids = [p.os_pid for p in manager.list()]
    await asyncio.wait_for(manager.astop(), TIMEOUT)
    assert not manager.started
    assert reload.done()
    for pid in os_pids:
        assert await gone(pid or 0, 1.0)


async def test_a_member_forked_late_keeps_the_group_alive(manager: Manager) -> None:
    # The last watched member forks a child into the group, then exits.
    script = "( trap '' TERM; sleep 0.3; sleep 3600 & echo $! ; exit 0 ) & exec sleep 3600"
    sub = manager.subscribe("stream")
    manager.load(
        {"name": "f", "cmd": "sh", "args": ["-c", script], "graceful_timeout": 1.0, "startsecs": 0}
    )
    out = await output_of(sub, b"\n")
    late = int(out.split()[0])
    t0 = time.monotonic()
    await manager.stop_job("f")
    assert time.monotonic() - t0 > 0.9  # it waited for the late member...
    assert await gone(late, 1.0)  # ...and killed it


async def test_scale_during_a_stop_first_reload_leaves_no_orphan(manager: Manager) -> None:
    reload = await mid_stop_first_reload(manager, "r", numprocesses=2)
    manager.scale("r", 1)  # would spawn into the slot being rolled
    await asyncio.wait_for(reload, TIMEOUT)
    assert orphans(manager) == []
    await manager.wait_running("r", n=3, timeout=TIMEOUT)


async def test_concurrent_reloads_run_one_after_the_other(manager: Manager) -> None:
    manager.load(
        {"name": "r", "cmd": "sleep", "args": ["3600"], "startsecs": 0.1, "numprocesses": 2}
    )
    await manager.wait_running("r", timeout=TIMEOUT)
    first = manager.list("r")
    await asyncio.wait_for(asyncio.gather(manager.reload("r"), manager.reload("r")), TIMEOUT)
    assert orphans(manager) == []
    assert len(manager.list("r")) == 2
    assert not set(manager.list("r")) & set(first)
    assert manager.info("r")["restarts"] == 0


async def test_unload_waits_for_a_crashed_process_group(manager: Manager) -> None:
    script = (
        "import os,signal,sys,time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True)\n"
        "    time.sleep(3600)\n"
        "time.sleep(0.3); sys.exit(1)\n"
    )
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "c",
            "cmd": PYTHON,
            "args": ["-c", script],
            "restart": "never",
            "graceful_timeout": 0.5,
        }
    )
    member = int((await output_of(sub, b"\n")).split()[0])
    events = manager.subscribe("job.default.c")
    await next_event(events, lambda e: e.type == "exit")
    await asyncio.wait_for(manager.unload("c"), TIMEOUT)
    assert await gone(member, 0.2)  # unload returned only once the member was gone


# -- randomized stress run ------------------------------------------------------------


async def test_restart_does_not_revive_a_job_unloaded_meanwhile(manager: Manager) -> None:
    manager.load({"name": "a", "cmd": PYTHON, "args": ["-c", SLOW_TO_STOP], "startsecs": 0})
    await manager.wait_running("a", timeout=TIMEOUT)
    done = asyncio.get_running_loop().create_future()
    began = manager.subscribe("stop_process")
    manager.restart(lambda m: done.set_result(None))
    await next_event(began)  # the restart is stopping "a"
    await manager.unload("a")
    await asyncio.wait_for(done, TIMEOUT)
    assert manager.jobs() == [] and manager.pids() == []


async def test_restart_is_refused_while_stopping(manager: Manager) -> None:
    manager.load({"name": "a", "cmd": PYTHON, "args": ["-c", SLOW_TO_STOP], "startsecs": 0})
    await manager.wait_running("a", timeout=TIMEOUT)
    began = manager.subscribe("stop_process")
    stopping = asyncio.ensure_future(manager.astop())
    await next_event(began)  # astop is stopping "a"
    with pytest.raises(InvalidState, match="stopping"):
        manager.restart()
    await stopping
    assert manager.pids() == []


async def test_astop_waits_for_an_unload_in_progress(manager: Manager) -> None:
    manager.load({"name": "w", "cmd": PYTHON, "args": ["-c", SLOW_TO_STOP], "startsecs": 0})
    await manager.wait_running("w", timeout=TIMEOUT)
    os_pid = manager.list("w")[0].os_pid or 0
    manager.unload("w")  # not awaited
    await manager.astop()
    assert await gone(os_pid, 0.1)


@pytest.mark.parametrize("rolling", ["start-first", "stop-first"])
async def test_giving_up_on_a_reload_does_not_cancel_it(manager: Manager, rolling: str) -> None:
    manager.load(
        {
            "name": "r",
            "cmd": PYTHON,
            "args": ["-c", SLOW_TO_STOP],
            "startsecs": 0.1,
            "rolling": rolling,
        }
    )
    await manager.wait_running("r", timeout=TIMEOUT)
    old = manager.list("r")[0]
    reload = manager.reload("r")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reload, 0.05)
    await manager.wait_for(lambda: not old.alive and manager.get("r").running == 1, timeout=TIMEOUT)
    job = manager.get("r")
    assert job.retiring == set() and job.slots[0].status == "running"


async def test_giving_up_on_stopall_does_not_cancel_it(manager: Manager) -> None:
    out = manager.subscribe("stream")
    manager.load(
        {
            "name": "slow",
            "cmd": PYTHON,
            "args": ["-c", SLOW_TO_STOP],
            "startsecs": 0,
            "priority": 10,
        }
    )
    manager.load({"name": "fast", **SLEEP, "priority": 1})
    await output_of(out, b"ready")  # its SIGTERM handler is in place
    await manager.wait_running("fast", timeout=TIMEOUT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.stopall(), 0.05)
    await manager.wait_for(lambda: not manager.pids(), timeout=TIMEOUT)
    assert not manager.get("fast").active


async def test_stop_and_start_during_a_stop_first_reload(manager: Manager) -> None:
    reload = await mid_stop_first_reload(manager, "r")
    manager.stop_job("r")
    manager.start_job("r")
    await asyncio.wait_for(reload, TIMEOUT)  # used to fail with an AssertionError
    await manager.wait_running("r", timeout=TIMEOUT)
    assert len(manager.list("r")) == 1 and orphans(manager) == []


async def test_updates_apply_in_the_order_asked(manager: Manager) -> None:
    manager.load({"name": "u", **SLEEP, "startsecs": 0.1})
    await manager.wait_running("u", timeout=TIMEOUT)
    reload = manager.reload("u")
    a = manager.update({"name": "u", "cmd": "sleep", "args": ["3601"], "startsecs": 0.1})
    b = manager.update({"name": "u", "cmd": "sleep", "args": ["3602"], "startsecs": 0.1})
    await asyncio.wait_for(asyncio.gather(reload, a, b), TIMEOUT)
    assert manager.get("u").config.argv == ("3602",)
    assert [p.argv for p in manager.list("u")] == [["sleep", "3602"]]


async def test_one_off_runs_are_outside_the_slots(manager: Manager) -> None:
    manager.load({"name": "w", **SLEEP})
    pid = manager.commit("w")
    manager.scale("w", 1)
    await manager.wait_running("w", n=2, timeout=TIMEOUT)
    assert manager.get_process(pid).env["GAFFER_INDEX"] == "-1"
    assert [p.env["GAFFER_INDEX"] for p in manager.list("w")] == ["0", "1"]
