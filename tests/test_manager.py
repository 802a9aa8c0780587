"""The Manager against real processes, on both loops."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import psutil
import pytest
from conftest import PYTHON, SLEEP, TIMEOUT, child, gone, next_event, output_of, py
from gaffer import states
from gaffer.errors import (
    AlreadyExists,
    BadRequest,
    ConfigError,
    InvalidState,
    NotFound,
    ReloadFailed,
)
from gaffer.manager import Manager


def alive(os_pid: int | None) -> bool:
    if os_pid is None:
        return False
    try:
        return psutil.Process(os_pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- loading and naming ------------------------------------------------------------


async def test_load_starts_numprocesses(manager: Manager) -> None:
    job = manager.load({"name": "web", **SLEEP, "numprocesses": 3})
    await manager.wait_running("web", timeout=TIMEOUT)
    procs = manager.list("web")
    assert [p.index for p in procs] == [0, 1, 2]
    assert all(alive(p.os_pid) for p in procs)
    # internal pids are a counter, distinct from the OS pids
    assert [p.pid for p in procs] == [1, 2, 3]
    assert manager.pids("default.web") == [1, 2, 3]
    assert manager.jobs() == ["default.web"]
    assert manager.sessions == ["default"]
    assert job.name == "default.web"
    # each process runs in its own process group
    assert all(os.getpgid(p.os_pid) == p.os_pid for p in procs if p.os_pid)


async def test_sessions_and_names(manager: Manager) -> None:
    manager.load({"name": "a", **SLEEP}, sessionid="s1")
    manager.load({"name": "b", **SLEEP}, sessionid="s1")
    manager.load({"name": "a", **SLEEP}, sessionid="s2", start=False)
    assert sorted(manager.sessions) == ["s1", "s2"]
    assert manager.jobs("s1") == ["s1.a", "s1.b"]
    assert manager.get("s1.a") is manager.get("s1/a") is manager.get("a", sessionid="s1")
    with pytest.raises(NotFound):
        manager.jobs("nope")
    with pytest.raises(AlreadyExists):
        manager.load({"name": "a", **SLEEP}, sessionid="s1")
    with pytest.raises(NotFound):
        manager.get("s1.nope")
    with pytest.raises(BadRequest):
        manager.load({"name": "x", **SLEEP}, sessionid="bad.session")
    walked: list[str] = []
    manager.jobs_walk(lambda m, name: walked.append(name), "s1")
    assert walked == ["s1.a", "s1.b"]
    await manager.wait_running("s1.a", timeout=TIMEOUT)
    seen: list[int] = []
    manager.walk(lambda m, p: seen.append(p.pid), "s1.a")
    assert seen == manager.pids("s1.a")
    assert not manager.get("s2.a").active
    assert manager.pids("s2.a") == []


async def test_load_config_object_and_bad_configs(manager: Manager) -> None:
    with pytest.raises(ConfigError, match="numprocesses"):
        manager.load({"name": "bad", "cmd": "sleep", "numprocesses": "two"})
    with pytest.raises(ConfigError, match=r"undefined variable \$MISSING"):
        manager.load({"name": "bad", "cmd": "echo", "args": ["$MISSING"]})
    # a variable supplied by the load's env is fine
    manager.load({"name": "ok", "cmd": "sleep", "args": ["$T"]}, env={"T": "3600"})
    assert manager.jobs() == ["default.ok"]  # the bad ones left nothing behind
    await manager.wait_running("ok", timeout=TIMEOUT)


async def test_unload_stops_everything(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    os_pids = [p.os_pid for p in manager.list("web")]
    sub = manager.subscribe("unload")
    await manager.unload("web")
    assert not any(alive(p) for p in os_pids)
    assert manager.jobs() == []
    assert manager.sessions == []
    assert (await next_event(sub)).data["name"] == "default.web"
    with pytest.raises(NotFound):
        manager.unload("web")


# -- per-process values ------------------------------------------------------------


async def test_index_and_env_per_process(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "web",
            "cmd": PYTHON,
            "args": [
                "-c",
                "import os,sys; print('port', os.environ['PORT'], sys.argv[1])",
                "idx=$GAFFER_INDEX",
            ],
            "numprocesses": 2,
            "restart": "never",
            "env": {"PORT": "$((8000 + GAFFER_INDEX))"},
        }
    )
    lines: set[bytes] = set()
    while len(lines) < 2:
        e = await next_event(sub, lambda e: e.type == "output")
        lines.update(e.data["data"].splitlines())
    assert lines == {b"port 8000 idx=0", b"port 8001 idx=1"}


async def test_output_is_captured_by_label(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {"name": "o", "cmd": "sh", "args": ["-c", "echo out; echo err >&2"], "restart": "never"}
    )
    seen: dict[str, bytes] = {}
    while len(seen) < 2:
        e = await next_event(sub, lambda e: e.type == "output")
        seen[e.data["label"]] = seen.get(e.data["label"], b"") + e.data["data"]
        assert e.topic == f"stream.{e.data['pid']}.{e.data['label']}"
    assert seen == {"stdout": b"out\n", "stderr": b"err\n"}


async def test_output_tail_keeps_the_last_lines(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    script = "for i in 1 2 3; do echo out$$i; done; echo err >&2; exec sleep 3600"
    manager.load({"name": "t", "cmd": "sh", "args": ["-c", script]})
    seen = {"stdout": b"", "stderr": b""}
    while b"out3\n" not in seen["stdout"] or b"err\n" not in seen["stderr"]:
        e = await next_event(sub, lambda e: e.type == "output")
        seen[e.data["label"]] += e.data["data"]
    proc = manager.list("t")[0]
    assert proc.output_tail(2) == {"stdout": ["out2", "out3"], "stderr": ["err"]}


async def test_os_env_cwd_umask(manager: Manager, tmp_path: object) -> None:
    os.environ["GAFFER_TEST_FROM_DAEMON"] = "inherited"
    try:
        sub = manager.subscribe("stream")
        manager.load(
            {
                "name": "e",
                "cmd": "sh",
                "args": ["-c", "echo $GAFFER_TEST_FROM_DAEMON $JOBVAR; pwd; umask; echo done"],
                "env": {"JOBVAR": "job"},
                "os_env": True,
                "cwd": str(tmp_path),
                "umask": "027",
                "restart": "never",
            }
        )
        out = await output_of(sub, b"done")
    finally:
        del os.environ["GAFFER_TEST_FROM_DAEMON"]
    assert out.splitlines()[:3] == [b"inherited job", str(tmp_path).encode(), b"0027"]


@pytest.mark.skipif(os.geteuid() != 0, reason="uid/gid need root")
async def test_uid_gid_apply(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "u",
            "cmd": "sh",
            "args": ["-c", "id -u; id -g; echo $USER $HOME; echo end"],
            "uid": "nobody",
            "gid": 65534,
            "restart": "never",
        }
    )
    out = await output_of(sub, b"end")
    lines = out.splitlines()
    assert lines[0] == b"65534"
    assert lines[1] == b"65534"
    assert lines[2].split()[0] == b"nobody"


# -- restarts -----------------------------------------------------------------------


async def test_crash_is_repaired_at_once_in_the_same_slot(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    victim = manager.list("web")[1]
    sub = manager.subscribe("job.default.web")
    os.kill(victim.os_pid or 0, signal.SIGKILL)
    exit_ev = await next_event(sub, lambda e: e.type == "exit")
    assert exit_ev.data["pid"] == victim.pid
    assert exit_ev.data["term_signal"] == signal.SIGKILL
    spawn = await next_event(sub, lambda e: e.type == "spawn")
    assert spawn.data["index"] == 1
    assert spawn.data["pid"] > victim.pid
    await manager.wait_running("web", timeout=TIMEOUT)
    info = manager.info("web")
    assert info["restarts"] == 1
    assert info["history"][-1]["term_signal"] == signal.SIGKILL
    assert info["history"][-1]["reason"] == "killed"
    with pytest.raises(NotFound):
        manager.get_process(victim.pid)


@pytest.mark.parametrize(
    ("policy", "code", "restarted"),
    [
        ("always", 0, True),
        ("always", 3, True),
        ("on-failure", 0, False),
        ("on-failure", 3, True),
        ("on-failure", 4, False),  # 4 is listed as a success below
        ("never", 3, False),
    ],
)
async def test_restart_policies(manager: Manager, policy: str, code: int, restarted: bool) -> None:
    sub = manager.subscribe("job.default.p")
    # The first run exits with `code` after startsecs; later runs sleep.
    marker = f"/tmp/gaffer-test-{os.getpid()}-{policy}-{code}-{id(manager)}"
    script = (
        f"import os,sys,time\n"
        f"if not os.path.exists({marker!r}):\n"
        f"    open({marker!r}, 'w').close(); print('first', flush=True); sys.stdin.read(); "
        f"sys.exit({code})\n"
        f"time.sleep(3600)\n"
    )
    try:
        manager.load(
            py(
                script,
                name="p",
                restart=policy,
                success_exit_codes=[0, 4],
                startsecs=0,
                redirect_input=True,
            )
        )
        await manager.wait_running("p", timeout=TIMEOUT)
        first = manager.list("p")[0]
        manager.send(first.pid, b"")  # nothing to read...
        first.writers["stdin"].close()  # ...then EOF: it exits with `code`
        e = await next_event(sub, lambda e: e.type == "exit")
        assert e.data["exit_status"] == code
        state = await next_event(
            sub,
            lambda e: (
                e.type == "state"
                and e.data["pid"] == first.pid
                and e.data["to"] in states.TERMINAL_STATES
            ),
        )
        assert state.data["to"] == states.EXITED
        if restarted:
            await manager.wait_running("p", timeout=TIMEOUT)
            assert manager.list("p")[0].pid != first.pid
        else:
            assert manager.list("p") == []
            assert manager.info("p")["slots"][0]["status"] == "exited"
            # an explicit start starts an exited slot again, like supervisorctl start
            manager.start_job("p")
            await manager.wait_running("p", timeout=TIMEOUT)
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


async def test_failed_starts_back_off_then_flapping_gives_up(manager: Manager) -> None:
    sub = manager.subscribe("job.default.bad")
    manager.load(
        {
            "name": "bad",
            "cmd": "false",
            "startsecs": 5,
            "backoff": {"initial": 0.02, "factor": 2, "max": 0.05},
            "flapping": {"attempts": 3, "window": 30, "retry_in": 0.05, "max_retry": 1},
        }
    )
    delays = []
    terminal = []
    flaps = []
    while True:
        e = await next_event(sub, lambda e: e.type in ("state", "flap"))
        if e.type == "flap":
            flaps.append((e.data["fatal"], e.data["retries_left"], e.data["retry_in"]))
            if e.data["fatal"]:
                break
            continue
        if e.data["to"] in states.TERMINAL_STATES:
            terminal.append(e.data["to"])
            if "retry in" in (e.data["reason"] or ""):
                delays.append(e.data["reason"].rsplit("retry in ", 1)[1])
    fatal = await next_event(sub, lambda e: e.type == "state" and e.data["to"] == states.FATAL)
    assert "gave up" in fatal.data["reason"]
    # failed starts back off (growing), flapping holds the slot, then gives up
    assert terminal[0] == states.BACKOFF
    assert delays[:2] == ["0.02s", "0.04s"]
    # max_retry=1: one hold (with no retry left after it), then fatal
    assert flaps == [(False, 0, 0.05), (True, 0, None)]
    info = manager.info("bad")
    assert info["slots"][0]["status"] == "fatal"
    assert info["exits_by_reason"]["start_failed"] >= 6
    assert manager.list("bad") == []
    # start_job revives a fatal slot
    manager.start_job("bad")
    await next_event(sub, lambda e: e.type == "spawn")
    await manager.stop_job("bad")


async def test_flapping_false_keeps_backing_off(manager: Manager) -> None:
    sub = manager.subscribe("job.default.bad")
    manager.load(
        {
            "name": "bad",
            "cmd": "false",
            "startsecs": 5,
            "flapping": False,
            "backoff": {"initial": 0.01, "factor": 1, "max": 0.01},
        }
    )
    backoffs = 0
    while backoffs < 12:
        e = await next_event(sub, lambda e: e.type in ("state", "flap"))
        assert e.type != "flap"
        if e.data["to"] == states.BACKOFF:
            backoffs += 1
    await manager.stop_job("bad")
    assert manager.info("bad")["slots"][0]["status"] == "idle"


async def test_stable_run_then_crash_restarts_immediately_and_resets_backoff(
    manager: Manager,
) -> None:
    sub = manager.subscribe("job.default.s")
    manager.load(
        {
            "name": "s",
            "cmd": "sleep",
            "args": ["3600"],
            "startsecs": 0.05,
            "backoff": {"initial": 5, "max": 5},
        }
    )
    await manager.wait_running("s", timeout=TIMEOUT)
    p = manager.list("s")[0]
    os.kill(p.os_pid or 0, signal.SIGKILL)
    e = await next_event(
        sub,
        lambda e: (
            e.type == "state" and e.data["pid"] == p.pid and e.data["to"] in states.TERMINAL_STATES
        ),
    )
    assert e.data["to"] == states.EXITED  # not backoff: the replacement starts now
    await manager.wait_running("s", timeout=TIMEOUT)


async def test_spawn_error_is_a_failed_start_not_a_crash(manager: Manager) -> None:
    sub = manager.subscribe("job.default.missing")
    manager.load({"name": "missing", "cmd": "/nonexistent/program", "flapping": False})
    e = await next_event(sub, lambda e: e.type == "exit")
    assert e.data["reason"] == "spawn_error"
    assert "No such file" in e.data["error"]
    await next_event(sub, lambda e: e.type == "state" and e.data["to"] == states.BACKOFF)
    assert manager.info("missing")["history"][0]["error"]
    await manager.stop_job("missing")


# -- stopping ----------------------------------------------------------------------


async def test_graceful_stop_kills_a_term_ignoring_group(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "stubborn",
            "cmd": PYTHON,
            "args": [child("ignore_term.py")],
            "graceful_timeout": 0.5,
        }
    )
    out = await output_of(sub, b"ready")
    grandchild = int(out.split()[1])
    leader = manager.list("stubborn")[0].os_pid
    t0 = time.monotonic()
    await manager.stop_job("stubborn")
    elapsed = time.monotonic() - t0
    assert 0.4 < elapsed < 0.5 + 1.0
    assert not alive(leader)
    # the grandchild ignored SIGTERM too; it got SIGKILL with the group
    assert await gone(grandchild, 0.5 + 1.0 - elapsed)


async def test_group_leftovers_are_killed_after_a_crash(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {
            "name": "stubborn",
            "cmd": PYTHON,
            "args": [child("ignore_term.py")],
            "graceful_timeout": 0.2,
            "restart": "never",
        }
    )
    out = await output_of(sub, b"ready")
    grandchild = int(out.split()[1])
    leader = manager.list("stubborn")[0]
    events = manager.subscribe("job.default.stubborn")
    os.kill(leader.os_pid or 0, signal.SIGKILL)
    await next_event(events, lambda e: e.type == "exit")
    # the orphan ignores SIGTERM; it is SIGKILLed after graceful_timeout
    assert await gone(grandchild, 0.2 + 1.0), "the leftover group member was not killed"


async def test_stop_signal_is_used(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    code = (
        "import os,signal,sys\n"
        "signal.signal(signal.SIGINT, lambda *a: (os.write(1, b'got INT\\n'), sys.exit(0)))\n"
        "print('ready', flush=True)\nsignal.pause()\n"
    )
    manager.load(py(code, name="i", stop_signal="SIGINT", graceful_timeout=5))
    await output_of(sub, b"ready")
    t0 = time.monotonic()
    stopping = manager.stop_job("i")
    assert b"got INT" in await output_of(sub, b"got INT")
    await stopping
    assert time.monotonic() - t0 < 4


async def test_stop_and_start_job(manager: Manager) -> None:
    sub = manager.subscribe("job.default.web")
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    await manager.stop_job("web")
    assert manager.list("web") == []
    assert not manager.get("web").active
    e = await next_event(sub, lambda e: e.type == "stop")
    assert e.topics == ("stop", "job.default.web.stop")
    manager.start_job("web")
    await manager.wait_running("web", timeout=TIMEOUT)
    await manager.stopall("web")
    assert manager.list("web") == []


async def test_stopall_every_job(manager: Manager) -> None:
    manager.load({"name": "a", **SLEEP})
    manager.load({"name": "b", **SLEEP}, sessionid="other")
    await manager.wait_running("a", timeout=TIMEOUT)
    await manager.wait_running("other.b", timeout=TIMEOUT)
    await manager.stopall()
    assert manager.pids() == []


async def test_stop_process_is_replaced(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    old = manager.list("web")[0]
    stopped = await manager.stop_process(old.pid)
    assert stopped is old
    assert old.exit is not None and old.exit.term_signal == signal.SIGTERM
    await manager.wait_running("web", timeout=TIMEOUT)
    assert old.pid not in manager.pids("web")
    assert len(manager.pids("web")) == 2


# -- scaling -----------------------------------------------------------------------


async def test_scale(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 1})
    assert manager.scale("web", 2) == 3  # an int adds (0.5 semantics)
    assert manager.scale("web", "+2") == 5
    await manager.wait_running("web", timeout=TIMEOUT)
    procs = manager.list("web")
    assert manager.scale("web", "-2") == 3
    await manager.wait_running("web", timeout=TIMEOUT)
    # surplus goes from the top, so the indices stay 0..n-1
    assert [p.index for p in manager.list("web")] == [0, 1, 2]
    assert [p.pid for p in manager.list("web")] == [p.pid for p in procs[:3]]
    assert manager.scale("web", "=1") == 1
    assert manager.scale("web", -5) == 0
    await manager.wait_running("web", n=0, timeout=TIMEOUT)
    await manager.wait_for(lambda: manager.pids() == [], timeout=TIMEOUT)
    for bad in ("x", "1.5", None, "=-1"):
        with pytest.raises(BadRequest):
            manager.scale("web", bad)  # type: ignore[arg-type]
    assert manager.get("web").numprocesses == 0
    with pytest.raises(NotFound):
        manager.scale("nope", 1)


# -- one-off runs ------------------------------------------------------------------


async def test_commit_runs_once(manager: Manager) -> None:
    manager.load(
        {"name": "task", "cmd": "sh", "args": ["-c", "echo once $$X; exit 3"], "numprocesses": 0}
    )
    sub = manager.subscribe("job.default.task")
    out = manager.subscribe("stream")
    pid = manager.commit("task", env={"X": "extra"})
    e = await next_event(sub, lambda e: e.type == "exit")
    assert e.data["pid"] == pid and e.data["once"] is True and e.data["exit_status"] == 3
    assert b"once extra" in await output_of(out, b"once")
    st = await next_event(
        sub, lambda e: e.type == "state" and e.data["to"] in states.TERMINAL_STATES
    )
    assert st.data["to"] == states.EXITED
    assert manager.pids("task") == []
    assert manager.info("task")["running_out"] == 0
    with pytest.raises(BadRequest):
        manager.commit("task", graceful_timeout="soon")  # type: ignore[arg-type]


async def test_commit_info_and_stop(manager: Manager) -> None:
    manager.load({"name": "task", **SLEEP, "numprocesses": 0})
    pid = manager.commit("task", graceful_timeout=1)
    info = manager.get_process(pid).info()
    assert info["commited"] is True
    assert manager.info("task")["running_out"] == 1
    await manager.unload("task")
    with pytest.raises(NotFound):
        manager.get_process(pid)


# -- signals and input -------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGUSR1, "USR1", "SIGUSR1", "10"])
async def test_kill_by_name_or_number(manager: Manager, sig: object) -> None:
    sub = manager.subscribe("stream")
    code = (
        "import os,signal\n"
        "signal.signal(signal.SIGUSR1, lambda *a: os.write(1, b'usr1\\n'))\n"
        "print('ready', flush=True)\nwhile True: signal.pause()\n"
    )
    manager.load(py(code, name="k"))
    await output_of(sub, b"ready")
    pid = manager.pids("k")[0]
    manager.kill(pid, sig)  # type: ignore[arg-type]
    await output_of(sub, b"usr1")
    with pytest.raises(BadRequest):
        manager.kill(pid, "NOSUCHSIG")
    with pytest.raises(NotFound):
        manager.kill(99999, "TERM")


async def test_killall(manager: Manager) -> None:
    sub = manager.subscribe("job.default.w")
    manager.load({"name": "w", **SLEEP, "numprocesses": 2, "restart": "never"})
    await manager.wait_running("w", timeout=TIMEOUT)
    manager.killall("w", "KILL")
    kill = await next_event(sub, lambda e: e.type == "kill")
    assert kill.data["signum"] == signal.SIGKILL
    for _ in range(2):
        e = await next_event(sub, lambda e: e.type == "exit")
        assert e.data["term_signal"] == signal.SIGKILL


async def test_send_to_stdin(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load({"name": "cat", "cmd": "cat", "redirect_input": True})
    await manager.wait_for(lambda: bool(manager.pids("cat")), timeout=TIMEOUT)
    pid = manager.pids("cat")[0]
    manager.send(pid, "hello\n")
    manager.send(pid, [b"a", "b", "\n"])
    out = await output_of(sub, b"ab\n")
    assert out == b"hello\nab\n"
    manager.load({"name": "noin", **SLEEP})
    with pytest.raises(InvalidState, match="redirect_input"):
        manager.send(manager.pids("noin")[0], "x")
    with pytest.raises(NotFound):
        manager.send(pid, "x", stream="nope")


async def test_custom_stream_on_fd3(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {"name": "cs", "cmd": PYTHON, "args": [child("streams.py")], "custom_streams": ["ctl"]}
    )
    out = await output_of(sub, b"hello on fd 3\n")
    assert out == b"hello on fd 3\n"
    pid = manager.pids("cs")[0]
    manager.send(pid, b"ping\n", stream="ctl")
    e = await next_event(sub, lambda e: e.type == "output")
    assert e.data["label"] == "ctl" and e.data["data"] == b"PING\n"
    assert manager.get_process(pid).info()["custom_streams"] == ["ctl"]


# -- reload and update -------------------------------------------------------------


async def test_reload_is_rolling(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    old = manager.list("web")
    sub = manager.subscribe("job.default.web")
    await manager.reload("web")
    new = manager.list("web")
    assert {p.pid for p in new}.isdisjoint({p.pid for p in old})
    assert not any(alive(p.os_pid) for p in old)
    # one slot at a time: the new process spawns before the old one stops
    order = []
    while (e := sub.get_nowait()) is not None:
        if e.type in ("spawn", "stop_process"):
            order.append((e.type, e.data["pid"]))
    assert order == [
        ("spawn", new[0].pid),
        ("stop_process", old[0].pid),
        ("spawn", new[1].pid),
        ("stop_process", old[1].pid),
    ]


async def test_reload_keeps_old_processes_when_new_ones_fail(
    manager: Manager, tmp_path: object
) -> None:
    flag = f"{tmp_path}/broken"
    script = f"import os,sys,time\nif os.path.exists({flag!r}): sys.exit(1)\ntime.sleep(3600)\n"
    manager.load(py(script, name="web", startsecs=0.2, flapping=False))
    await manager.wait_running("web", timeout=TIMEOUT)
    old = manager.list("web")[0]
    open(flag, "w").close()
    with pytest.raises(ReloadFailed, match="failed to start"):
        await manager.reload("web")
    assert manager.list("web") == [old]
    assert alive(old.os_pid)


async def test_update_replaces_config(manager: Manager) -> None:
    sub = manager.subscribe("stream")
    manager.load(
        {"name": "u", "cmd": "sh", "args": ["-c", "echo v1; exec sleep 3600"], "startsecs": 0}
    )
    await output_of(sub, b"v1")
    await manager.update(
        {"name": "u", "cmd": "sh", "args": ["-c", "echo v2; exec sleep 3600"], "startsecs": 0}
    )
    await output_of(sub, b"v2")
    assert manager.info("u")["config"]["args"][1].startswith("echo v2")
    # a numprocesses-only change scales in place: the running process is kept
    before = manager.pids("u")
    await manager.update(
        {
            "name": "u",
            "cmd": "sh",
            "args": ["-c", "echo v2; exec sleep 3600"],
            "startsecs": 0,
            "numprocesses": 2,
        }
    )
    await manager.wait_running("u", timeout=TIMEOUT)
    assert manager.pids("u")[0] == before[0]
    assert len(manager.pids("u")) == 2
    with pytest.raises(NotFound):
        await manager.update({"name": "nope", "cmd": "true"})


async def test_a_metadata_only_update_keeps_every_process(manager: Manager) -> None:
    manager.load({"name": "m", **SLEEP, "numprocesses": 2, "tags": ["a"]})
    await manager.wait_running("m", timeout=TIMEOUT)
    before = [(p.pid, p.os_pid) for p in manager.list("m")]
    sub = manager.subscribe("job.default.m")
    new = {"name": "m", **SLEEP, "numprocesses": 2}
    await manager.update({**new, "tags": ["b", "c"], "description": "d", "version": "2"})
    assert [(p.pid, p.os_pid) for p in manager.list("m")] == before
    assert all(alive(p.os_pid) for p in manager.list("m"))
    config = manager.info("m")["config"]
    assert (config["tags"], config["description"], config["version"]) == (["b", "c"], "d", "2")
    assert manager.get("m").status()["tags"] == ["b", "c"]
    # events are delivered in order: all the update caused comes before this one
    manager.emitter.publish("marker", ("job.default.m.marker",), {})
    events = []
    while (event := await next_event(sub)).type != "marker":
        events.append(event.type)
    manager.unsubscribe("job.default.m", sub)
    assert events == ["update"]  # no spawn, no exit: nothing was rolled
    # and a real change still rolls
    await manager.update({**new, "tags": ["b", "c"], "graceful_timeout": 1})
    assert not {p.os_pid for p in manager.list("m")} & {os_pid for _, os_pid in before}


# -- views -------------------------------------------------------------------------


async def test_info_and_stats_shapes(manager: Manager) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    await manager.wait_running("web", timeout=TIMEOUT)
    info = manager.info("web")
    for key in ("name", "active", "running", "running_out", "max_processes", "processes", "config"):
        assert key in info
    assert info["running"] == 2 and info["max_processes"] == 2
    assert info["processes"] == manager.pids("web")
    pinfo = manager.get_process(info["processes"][0]).info()
    for key in (
        "pid",
        "name",
        "cmd",
        "args",
        "env",
        "uid",
        "gid",
        "os_pid",
        "create_time",
        "commited",
        "redirect_output",
        "redirect_input",
        "custom_streams",
        "active",
    ):
        assert key in pinfo
    assert pinfo["args"] == ["3600"] and pinfo["state"] == states.RUNNING
    stats = manager.stats("web")
    for key in ("name", "stats", "mem", "max_mem", "min_mem", "cpu", "max_cpu", "min_cpu"):
        assert key in stats
    s0 = stats["stats"][0]
    assert s0["pid"] == info["processes"][0] and s0["os_pid"] == pinfo["os_pid"]
    assert s0["rss"] > 0 and s0["threads"] >= 1 and s0["fds"] >= 0 and s0["uptime"] >= 0
    # a process that vanished gives nulls, not an exception
    proc = manager.get_process(info["processes"][-1])
    manager.get("web").scale("=1")
    await manager.wait_for(lambda: proc.exit is not None, timeout=TIMEOUT)
    assert proc.stats()["cpu"] is None and proc.stats()["rss"] is None


async def test_get_process_id_never_reused(manager: Manager) -> None:
    a = manager.get_process_id()
    b = manager.get_process_id()
    assert b == a + 1
    manager.load({"name": "w", **SLEEP})
    assert manager.pids("w")[0] > b


async def test_monitor_and_unmonitor(manager: Manager) -> None:
    manager.load({"name": "w", **SLEEP})
    await manager.wait_running("w", timeout=TIMEOUT)
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    def listener(event: str, stats: dict[str, object]) -> None:
        assert event == "stat"
        got.put_nowait(stats)

    manager.monitor(listener, "w")
    stats = await asyncio.wait_for(got.get(), TIMEOUT)
    assert stats["pid"] == manager.pids("w")[0]
    manager.unmonitor(listener, "w")
    assert manager._stats_timer is None  # idle again: no periodic wake-ups
    with pytest.raises(NotFound):
        manager.monitor(listener, "nope")


# -- events ------------------------------------------------------------------------


async def test_events_prefix_exactly_once_and_ordered(manager: Manager) -> None:
    got: list[tuple[str, int]] = []

    def listener(e: object) -> None:
        got.append((e.type, e.seq))  # type: ignore[attr-defined]

    # the same listener on overlapping prefixes still gets each event once
    for topic in ("job", "job.default", "job.default.w", ".", "exit"):
        manager.emitter.subscribe(topic, listener)
    broken_calls = []

    def broken(e: object) -> None:
        broken_calls.append(e)
        raise RuntimeError("a failing subscriber")

    manager.emitter.subscribe(".", broken)
    sub = manager.subscribe("job.default.w")
    manager.load({"name": "w", "cmd": "true", "restart": "never"})
    await next_event(sub, lambda e: e.type == "reap")
    seqs = [s for _, s in got]
    assert len(seqs) == len(set(seqs)), "an event was delivered twice"
    assert seqs == sorted(seqs)
    types = [t for t, _ in got]
    for expected in ("load", "start", "spawn", "state", "exit", "reap"):
        assert expected in types
    assert broken_calls and manager.emitter.failed_deliveries >= len(broken_calls)
    manager.unsubscribe(".", broken)


async def test_event_topics_and_payloads(manager: Manager) -> None:
    sub = manager.subscribe(".")
    manager.load({"name": "w", "cmd": "sh", "args": ["-c", "exit 2"], "restart": "never"})
    exit_ev = await next_event(sub, lambda e: e.type == "exit")
    pid = exit_ev.data["pid"]
    assert exit_ev.topics == ("exit", "job.default.w.exit", f"proc.{pid}.exit")
    for key in ("name", "pid", "os_pid", "exit_status", "term_signal", "once"):
        assert key in exit_ev.data
    assert exit_ev.data["exit_status"] == 2
    reap = await next_event(sub, lambda e: e.type == "reap")
    assert reap.topics == ("reap", "job.default.w.reap", f"proc.{pid}.reap")
    d = reap.to_dict()
    assert d["event"] == "reap" and d["seq"] == reap.seq and d["time"] > 0


async def test_subscription_is_bounded(manager: Manager) -> None:
    sub = manager.subscribe(".", maxsize=3)
    manager.load({"name": "w", **SLEEP, "numprocesses": 3})
    await manager.wait_for(lambda: sub.dropped > 0, timeout=TIMEOUT)
    assert len(sub) == 3
    assert sub.dropped > 0
    manager.unsubscribe(".", sub)
    assert sub.closed


async def test_state_machine_transitions(manager: Manager) -> None:
    sub = manager.subscribe("proc")
    manager.load({"name": "w", "cmd": "sleep", "args": ["3600"], "startsecs": 0.05})
    await manager.wait_running("w", timeout=TIMEOUT)
    await manager.stop_job("w")
    seen = []
    while True:
        e = await next_event(sub, lambda e: e.type in ("state", "reap"))
        if e.type == "reap":
            break
        seen.append((e.data["from"], e.data["to"]))
    assert seen == [("starting", "running"), ("running", "stopping"), ("stopping", "exited")]


# -- lifecycle ---------------------------------------------------------------------


async def test_manager_requires_start(loop: asyncio.AbstractEventLoop) -> None:
    m = Manager(loop)
    with pytest.raises(InvalidState):
        m.load({"name": "w", **SLEEP})
    assert not m.active
    m.start()
    assert m.active
    with pytest.raises(InvalidState, match="already started"):
        m.start()
    await m.astop()
    assert not m.active


async def test_manage_brings_a_job_to_size(manager: Manager) -> None:
    job = manager.load({"name": "w", **SLEEP, "numprocesses": 2})
    await manager.wait_running("w", timeout=TIMEOUT)
    job.numprocesses = 3  # the wanted size changed without a scale() call
    manager.manage("w")
    await manager.wait_running("w", n=3, timeout=TIMEOUT)
    await manager.stop_job("w")
    manager.manage("w")  # a stopped job is left alone
    assert manager.list("w") == []
    with pytest.raises(NotFound):
        manager.manage("nope")


async def test_restart_everything(manager: Manager) -> None:
    manager.load({"name": "w", **SLEEP})
    await manager.wait_running("w", timeout=TIMEOUT)
    before = manager.pids("w")
    done = asyncio.get_running_loop().create_future()
    manager.restart(lambda m: done.set_result(True))
    await asyncio.wait_for(done, TIMEOUT)
    await manager.wait_running("w", timeout=TIMEOUT)
    assert manager.pids("w") != before


class RecordingApp:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, loop: asyncio.AbstractEventLoop, manager: Manager) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")


def test_run_and_stop_from_another_thread(loop_kind: str) -> None:
    m = Manager(loop_kind=loop_kind)
    app = RecordingApp()
    m.start(apps=[app])
    os_pids: list[int] = []
    running = threading.Event()

    def watch(e: object) -> None:
        if m.get("w").running == 2 and not running.is_set():
            os_pids.extend(p.os_pid or 0 for p in m.list("w"))
            running.set()

    m.emitter.subscribe("job.default.w", watch)
    m.load({"name": "w", **SLEEP, "numprocesses": 2})
    stopped: list[Manager] = []

    def other_thread() -> None:
        running.wait(TIMEOUT)
        m.stop(stopped.append)  # thread-safe

    t = threading.Thread(target=other_thread)
    t.start()
    m.run()  # returns once stop() has finished
    t.join()
    m.loop.close()
    assert running.is_set()
    assert stopped == [m]
    assert len(os_pids) == 2
    assert app.calls == ["start", "stop"]
    assert not any(alive(p) for p in os_pids)


def test_wakeup_from_another_thread(loop_kind: str) -> None:
    m = Manager(loop_kind=loop_kind)
    m.start()
    hit = threading.Event()

    def poke() -> None:
        m.loop.call_soon_threadsafe(hit.set)
        m.wakeup()
        m.stop()

    threading.Thread(target=poke).start()
    m.run()
    m.loop.close()
    assert hit.is_set()


@pytest.mark.parametrize("watcher", ["pidfd", "sigchld"])
async def test_child_watchers(loop: asyncio.AbstractEventLoop, watcher: str) -> None:
    m = Manager(loop, child_watcher=watcher)
    m.start()
    assert m.watcher.kind == watcher
    try:
        m.load({"name": "w", **SLEEP})
        await m.wait_running("w", timeout=TIMEOUT)
        sub = m.subscribe("job.default.w")
        os.kill(m.list("w")[0].os_pid or 0, signal.SIGKILL)
        e = await next_event(sub, lambda e: e.type == "exit")
        assert e.data["term_signal"] == signal.SIGKILL
        await m.wait_running("w", timeout=TIMEOUT)
    finally:
        await m.astop()


async def test_idle_manager_schedules_nothing(
    loop: asyncio.AbstractEventLoop, loop_kind: str
) -> None:
    if loop_kind != "asyncio":
        pytest.skip("only asyncio's loop exposes its timer heap")
    m = Manager(loop)
    m.start()

    def armed() -> set[object]:
        return {h for h in loop._scheduled if not h.cancelled()}  # type: ignore[attr-defined]

    before = armed()  # the test harness's own timeout
    try:
        m.load(
            {"name": "w", "cmd": "sleep", "args": ["3600"], "numprocesses": 100, "startsecs": 0.01}
        )
        await m.wait_running("w")
        assert armed() - before == set(), "an idle manager must not have timers armed"
    finally:
        await m.astop()


async def test_big_loads_spawn_in_batches_and_keep_the_loop_free(manager: Manager) -> None:
    from gaffer.job import SPAWN_BATCH

    ran_between: list[int] = []
    job = manager.load({"name": "big", **SLEEP, "numprocesses": 3 * SPAWN_BATCH})
    # load() returned after the first batch; other callbacks get their turn
    # before the next one
    assert len(job.processes) == SPAWN_BATCH
    asyncio.get_running_loop().call_soon(lambda: ran_between.append(len(job.processes)))
    await manager.wait_running("big", timeout=TIMEOUT)
    assert ran_between and ran_between[0] < 3 * SPAWN_BATCH
    assert [p.index for p in job.processes] == list(range(3 * SPAWN_BATCH))


async def test_handoff_refused_while_processes_are_stopping(manager: Manager) -> None:
    job = manager.load(
        {
            "name": "slow",
            "cmd": PYTHON,
            "args": [child("ignore_term.py")],
            "graceful_timeout": 30,
            "startsecs": 0,
        }
    )
    await manager.wait_running("slow", timeout=TIMEOUT)
    out = manager.subscribe("stream")
    await output_of(out, b"ready")
    manager.unsubscribe("stream", out)
    stopping = manager.stop_process(job.pids[0])
    with pytest.raises(InvalidState, match="processes are stopping"):
        manager.handoff()
    manager.get_process(job.pids[0]).kill_group_now()
    await stopping
    # its slot's replacement ignores SIGTERM too: stop it without the 30 s wait
    await job.stop(graceful_timeout=0.5)
