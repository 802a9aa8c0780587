"""The Python client against real daemons: the blocking :class:`Client` against a
real gafferd (its unix socket, and TCP with keys), the :class:`AsyncClient`
against the HTTP API on a real manager on both loops, the ``/channel`` and
process IO websockets both ways, and the typed errors carrying the daemon's
reasons."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gaffer
import pytest
from conftest import PYTHON, SLEEP, TIMEOUT, child
from gaffer.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    ConnectionError,
    Forbidden,
    NotFound,
    Unauthorized,
)
from gaffer.client.channel import Channel, ProcessIO
from gaffer.client.sync import EventStream
from gaffer.client.target import Target
from gaffer.http import HttpApp
from gaffer.http.settings import TlsSettings
from gaffer.manager import Manager
from httpkit import make_key, start_app
from test_gafferd import daemon, read_until
from test_http_auth import certs  # noqa: F401 (the fixture: a CA, server and client certificates)

CAT = {"cmd": "cat", "redirect_input": True, "startsecs": 0}
WEB = "jobs:\n  web:\n    cmd: sleep\n    args: ['3600']\n    startsecs: 0\n"


# -- a real gafferd, for the blocking client -------------------------------------------


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], sock: str, port: int) -> None:
        self.proc = proc
        self.sock = sock
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def gafferd(tmp_path: Path, config: str = WEB) -> Iterator[Daemon]:
    """A gafferd on a unix socket (its owner needs no key) and on a TCP port
    (keys required), ready."""
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(config)
    with daemon(tmp_path, "-c", str(cfg), "--bind", "127.0.0.1:0") as proc:
        out = read_until(proc, b"gafferd ")
        port = int(out.split(b"API listening on http://127.0.0.1:")[1].split(b"\n")[0])
        try:
            yield Daemon(proc, str(tmp_path / "run" / "gafferd.sock"), port)
        finally:
            proc.terminate()  # even when the test failed: its processes stop too
            code = proc.wait(timeout=20)
            if proc.stderr is not None:
                proc.stderr.close()
        assert code == 0


def until(events: EventStream, check: Callable[[], bool], what: str) -> None:
    """Re-check after each event (the stream opened before the change) until
    ``check()`` holds."""
    deadline = time.monotonic() + TIMEOUT
    while not check():
        left = deadline - time.monotonic()
        assert left > 0, f"timed out waiting for {what}"
        events.settimeout(left)
        next(events)


def read_output(chunks: Iterator[bytes], needle: bytes) -> bytes:
    got = b""
    for chunk in chunks:
        got += chunk
        if needle in got:
            return got
    raise AssertionError(f"the stream ended before {needle!r}; got {got!r}")


def test_blocking_client_drives_jobs_and_processes(tmp_path: Path) -> None:
    with gafferd(tmp_path) as d, Client(d.sock) as c:
        assert c.ping() and c.version() == gaffer.__version__
        assert c.welcome() == {"welcome": "gaffer", "version": gaffer.__version__}
        assert "/status" in c.openapi()["paths"]
        assert "gaffer_job_processes" in c.metrics()
        assert (c.sessions(), c.jobs(), c.jobs("default")) == (
            ["default"],
            ["default.web"],
            ["default.web"],
        )
        # events filtered by job: web's changes happen first and must not show
        with c.events(names=["tools.cat"]) as ev:
            assert c.scale("web", 1) == 2
            c.load({"name": "cat", **CAT}, session="tools")
            seen = []
            for event in ev:
                seen.append(event)
                if event["event"] == "spawn":
                    break
        assert {e["name"] for e in seen} == {"tools.cat"}
        assert [e["event"] for e in seen][:1] == ["load"] and seen[-1]["seq"] > 0
        assert c.sessions() == ["default", "tools"] and c.jobs("tools") == ["tools.cat"]
        assert c.job_exists("tools.cat") and not c.job_exists("tools.nope")
        assert c.job_info("tools.cat")["config"]["cmd"] == "cat"
        (cat,) = c.job_pids("tools.cat")
        assert cat in c.pids() and c.process_exists(cat) and not c.process_exists(999)
        assert c.process_info(cat)["name"] == "tools.cat"
        assert c.process_stats(cat)["rss"]
        # stdin in, stdout out: through the IO channel and the output stream
        out = c.output(cat)
        try:
            c.send(cat, "hello\n")
            assert read_output(out, b"hello\n") == b"hello\n"
        finally:
            out.close()
        assert c.tail(cat) == (0, b"hello\n")
        assert c.tail(cat, replay=3) == (3, b"lo\n")

        with c.events(["EVENTS:job.default.web"]) as ev:

            def web() -> dict[str, Any]:
                return c.status(["default.web"])[0]  # type: ignore[return-value]

            assert c.scale("web", "=3") == 3 and c.numprocesses("web") == 3
            until(ev, lambda: web()["running"] == 3, "3 running")
            assert len(c.job_stats("web")["stats"]) == 3
            assert len(c.status(["default"], stats=False)[0]["processes"]) == 3
            c.stop_job("web")
            until(ev, lambda: not c.job_pids("web"), "web stopped")
            assert not c.is_active("web")
            c.start_job("web")
            until(ev, lambda: web()["running"] == 3, "web started")
            assert c.is_active("web")
            before = set(c.job_pids("web"))
            c.restart_job("web")
            until(ev, lambda: not before & set(c.job_pids("web")), "every process replaced")
            until(ev, lambda: web()["running"] == 3, "3 running again")
            restarts = web()["restarts"]
            c.signal_job("web", "KILL")
            until(ev, lambda: web()["restarts"] == restarts + 3, "3 restarts")
            victim, *_ = c.job_pids("web")
            c.signal_process(victim, "KILL")
            until(ev, lambda: victim not in c.job_pids("web"), "the killed one replaced")
            victim, *_ = c.job_pids("web")
            c.stop_process(victim)
            until(ev, lambda: victim not in c.job_pids("web"), "the stopped one replaced")
            once = c.commit("web", graceful_timeout=1, env={"X": "1"})
            assert c.process_info(once)["commited"] is True
            c.update("web", {"cmd": "sleep", "args": ["3601"], "startsecs": 0, "numprocesses": 1})
            assert c.job_info("web")["config"]["args"] == ["3601"]

        # the config file: reload applies its difference
        (tmp_path / "gafferd.yml").write_text(WEB + "  more:\n    cmd: sleep\n    args: ['60']\n")
        assert c.reload_config()["loaded"] == ["default.more"]
        assert c.last_reload()["loaded"] == ["default.more"]
        c.reopen_logs()
        c.unload("tools.cat")
        assert not c.job_exists("tools.cat")
        # re-executed in place, the daemon answers on the same socket, same processes
        pids = sorted(c.pids())
        c.reexec()
        read_until(d.proc, b"re-executed in place")
        assert sorted(c.pids()) == pids


def test_blocking_channel_and_process_io(tmp_path: Path) -> None:
    config = WEB + "  cat:\n    cmd: cat\n    redirect_input: true\n    startsecs: 0\n"
    with gafferd(tmp_path, config) as d, Client(d.sock) as c:
        with c.channel() as ch:
            ch.subscribe("EVENTS:job.default.web")
            assert ch.topics == {"EVENTS:job.default.web"}
            assert ch.command("scale", "default.web", 1) == 2
            events = ch.events(timeout=TIMEOUT)
            spawn = next(e for e in events if e["event"] == "spawn")
            assert spawn["name"] == "default.web" and spawn["topic"] == "EVENTS:job.default.web"
            assert sorted(ch.command("pids", "default.web")) == sorted(c.job_pids("web"))
            with pytest.raises(NotFound, match=r"job default\.nope not found"):
                ch.command("info", "nope")
            with pytest.raises(BadRequest, match="unknown command 'bogus'"):
                ch.command("bogus")
            with pytest.raises(NotFound, match="nope"):
                ch.subscribe("JOB:default.nope")
            ch.unsubscribe("EVENTS:job.default.web")
            assert ch.command("scale", "default.web", -1) == 1
            late: list[Any] = []  # what was sent before the unsubscription, and nothing after
            with pytest.raises(TimeoutError):
                while True:
                    late.append(ch.next_event(timeout=0.3))
            assert not [e for e in late if e["event"] == "exit" or e.get("numprocesses") == 1]
        with pytest.raises(ConnectionError, match="closed"):
            ch.command("sessions")

        (cat,) = c.job_pids("cat")
        with c.channel_io(cat) as io:
            io.write("ping\n")
            assert io.read(timeout=TIMEOUT) == "ping\n"
            io.write(b"bytes too\n")
            assert io.read(timeout=TIMEOUT) == "bytes too\n"
        (web,) = c.job_pids("web")
        with pytest.raises(Conflict, match="no stdin pipe"):
            c.send(web, "x")
        with pytest.raises(NotFound, match="process 999 not found"):
            c.send(999, "x")


def test_blocking_client_with_keys_and_users_over_tcp(tmp_path: Path) -> None:
    with gafferd(tmp_path) as d, Client(d.sock) as owner:
        with pytest.raises(Unauthorized, match="API key is required"), Client(d.url) as anon:
            anon.jobs()
        with pytest.raises(Forbidden, match="unknown API key"), Client(d.url, key="x.y") as bad:
            bad.jobs()
        made = owner.create_key({"read": ["*"]}, label="reader")
        key_id, token = made["key"], made["api_key"]
        assert key_id in {k["key"] for k in owner.keys()}  # noqa: SIM118
        assert owner.key_info(key_id)["label"] == "reader"
        assert owner.key_info(key_id, include_keys=True)["keys"] == []
        with Client(d.url, key=token) as reader:
            assert reader.jobs() == ["default.web"]
            with pytest.raises(Forbidden, match=r"default\.web"):
                reader.scale("web", 1)
            # the channel over TCP, authenticated by the same key
            with reader.channel() as ch:
                assert ch.command("jobs") == ["default.web"]
                with pytest.raises(Forbidden, match=r"default\.web"):
                    ch.command("scale", "default.web", 1)
        # users: one made by the owner logs in over TCP
        user = owner.create_user("ops", "pw-1", permissions={"write": ["default"]})
        assert user["username"] == "ops" and user["user_type"] == 1
        assert "ops" in {u["username"] for u in owner.users()}
        assert owner.user_info("ops")["key"] == user["key"]
        with Client(d.url) as anon:
            with pytest.raises(Unauthorized, match="wrong username or password"):
                anon.login("ops", "nope")
            ops_key = anon.login("ops", "pw-1")
        with Client(d.url, key=ops_key) as ops:
            assert ops.scale("web", 1) == 2
        assert owner.update_user("ops", note="on call")["username"] == "ops"
        owner.set_password("ops", "pw-2")
        with Client(d.url) as anon:
            assert anon.login("ops", "pw-2")
        owner.set_user_key("ops", key_id)
        assert owner.user_info("ops")["key"] == key_id
        owner.delete_user("ops")
        with pytest.raises(NotFound):
            owner.user_info("ops")
        assert owner.delete_key(key_id) >= 1
        with pytest.raises(Forbidden, match="unknown API key"), Client(d.url, key=token) as gone:
            gone.jobs()


def test_blocking_client_cannot_reach_a_daemon(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="no such socket"):
        Client(str(tmp_path / "none.sock")).ping()
    with pytest.raises(ConnectionError, match="no such socket"):
        Client(str(tmp_path / "none.sock")).channel()
    with pytest.raises(ConnectionError, match="no such socket"):
        Client(str(tmp_path / "none.sock")).send(1, "x")


# -- the asyncio client, on the API in process, on both loops --------------------------


def unix(api: HttpApp) -> str:
    return next(a for a in api.addresses if isinstance(a, str))


def tcp(api: HttpApp) -> str:
    host, port = next(a for a in api.addresses if isinstance(a, tuple))
    return f"http://{host}:{port}"


async def test_async_client_drives_jobs_and_processes(manager: Manager, api: HttpApp) -> None:
    async with AsyncClient(unix(api)) as c:
        assert await c.ping() and await c.version() == gaffer.__version__
        assert (await c.welcome())["welcome"] == "gaffer"
        assert "/events" in (await c.openapi())["paths"]
        await c.load({"name": "web", **SLEEP})
        await c.load({"name": "cat", **CAT, "tags": ["io"]}, session="tools", start=False)
        assert "gaffer_job_processes" in await c.metrics()
        assert await c.sessions() == ["default", "tools"]
        assert await c.jobs() == ["default.web", "tools.cat"]
        assert await c.jobs("tools") == ["tools.cat"]
        assert await c.jobs(tags=["io"]) == ["tools.cat"] == await c.jobs("tools", tags="io")
        assert [j["tags"] for j in await c.status(tags=["io", "x"], stats=False)] == [["io"]]
        assert await c.job_exists("tools.cat") and not await c.job_exists("nope")
        assert not await c.is_active("tools.cat")
        await c.start_job("tools.cat")
        assert await c.is_active("tools.cat")
        await manager.wait_running("tools.cat", timeout=TIMEOUT)
        assert (await c.job_info("tools.cat"))["config"]["cmd"] == "cat"
        (cat,) = await c.job_pids("tools.cat")
        assert cat in await c.pids() and await c.process_exists(cat)
        assert not await c.process_exists(999)
        assert (await c.process_info(cat))["name"] == "tools.cat"
        assert (await c.process_stats(cat))["rss"]

        assert await c.scale("web", "=3") == 3 and await c.numprocesses("web") == 3
        job = await manager.wait_running("web", 3, timeout=TIMEOUT)
        status = await c.status(["default.web"])
        assert status[0]["running"] == 3 and len(status[0]["processes"]) == 3
        assert len((await c.job_stats("web"))["stats"]) == 3
        await c.stop_job("web")
        await manager.wait_for(lambda: not job.pids, TIMEOUT)
        await c.start_job("web")
        await manager.wait_running("web", 3, timeout=TIMEOUT)
        before = set(job.pids)
        await c.restart_job("web")
        await manager.wait_for(lambda: not before & set(job.pids), TIMEOUT)
        await manager.wait_running("web", 3, timeout=TIMEOUT)
        victim = job.pids[0]
        await c.signal_process(victim, "KILL")
        await manager.wait_for(lambda: victim not in job.pids, TIMEOUT)
        victim = job.pids[0]
        await c.stop_process(victim)
        await manager.wait_for(lambda: victim not in job.pids, TIMEOUT)
        await manager.wait_running("web", 3, timeout=TIMEOUT)
        restarts = job.restarts
        await c.signal_job("web", "KILL")
        await manager.wait_for(lambda: job.restarts >= restarts + 3, TIMEOUT)
        once = await c.commit("web", graceful_timeout=1, env={"X": "1"})
        assert (await c.process_info(once))["commited"] is True
        await c.update("web", {**SLEEP, "args": ["3601"], "numprocesses": 1})
        assert (await c.job_info("web"))["config"]["args"] == ["3601"]
        await c.unload("web")
        assert not await c.job_exists("web")
        # an in-process API has no daemon behind it: refused, with the reasons
        with pytest.raises(Conflict, match="no config file"):
            await c.reload_config()
        with pytest.raises(NotFound, match="no reload"):
            await c.last_reload()
        with pytest.raises(Conflict, match="no log files"):
            await c.reopen_logs()
        with pytest.raises(Conflict, match="not a gafferd daemon"):
            await c.reexec()


async def test_async_output_and_event_streams(manager: Manager, api: HttpApp) -> None:
    async with AsyncClient(unix(api)) as c:
        async with c.events(names=["default.cat"]) as ev:
            await c.load({"name": "web", **SLEEP})
            await c.load({"name": "cat", **CAT})
            seen = []
            async for event in ev:
                seen.append(event)
                if event["event"] == "spawn":
                    break
        assert {e["name"] for e in seen} == {"default.cat"}  # web's were filtered out
        cat = seen[-1]["pid"]
        # the output as it comes
        async with c.output(cat) as out:
            await c.send(cat, "one\n")
            assert await anext(out) == b"one\n"
            await c.send(cat, "two\n")
            assert await anext(out) == b"two\n"
        assert await c.tail(cat) == (0, b"one\ntwo\n")
        assert await c.tail(cat, replay=4) == (4, b"two\n")
        chunks = [chunk async for chunk in stream_until(c.output(cat, offset=2), b"two\n")]
        assert b"".join(chunks) == b"e\ntwo\n"
        # a stream ends when the process closes its stdout
        async with c.output(cat) as out:
            await anext(out)  # what was kept
            await c.stop_process(cat)
            assert [chunk async for chunk in out] == []
        with pytest.raises(NotFound, match=f"process {cat} not found"):
            await c.output(cat)
    # an idle stream closes at once (not at the next keep-alive), with its client
    c = AsyncClient(unix(api))
    events = await c.events(["EVENTS:job.default.none"])
    waiting = asyncio.ensure_future(anext(events))
    started = time.monotonic()
    await c.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, TIMEOUT)
    assert time.monotonic() - started < 1


async def stream_until(chunks: Any, needle: bytes) -> Any:
    got = b""
    async with chunks:
        async for chunk in chunks:
            got += chunk
            yield chunk
            if needle in got:
                return


async def test_async_errors_are_typed_with_the_daemon_reason(
    manager: Manager, api: HttpApp, tmp_path: Path
) -> None:
    async with AsyncClient(unix(api)) as c:
        await c.load({"name": "web", **SLEEP})
        with pytest.raises(NotFound, match=r"job default\.nope not found") as e:
            await c.job_info("nope")
        assert e.value.status == 404 and e.value.reason == "job default.nope not found"
        with pytest.raises(Conflict, match="web") as c409:
            await c.load({"name": "web", **SLEEP})
        assert c409.value.status == 409
        with pytest.raises(BadRequest, match="scale"):
            await c.scale("web", "lots")
        with pytest.raises(NotFound, match="stream"):
            await c.output(manager.pids("default.web")[0], "nolabel")
    async with AsyncClient(tcp(api)) as anon:
        with pytest.raises(Unauthorized, match="API key is required"):
            await anon.jobs()
        with pytest.raises(Unauthorized, match="API key is required"):
            await anon.events()
    async with AsyncClient(tcp(api), key="bogus.key") as bad:
        with pytest.raises(Forbidden, match="unknown API key"):
            await bad.jobs()
        with pytest.raises(Forbidden, match="unknown API key"):
            await bad.channel()
    reader = await make_key(api, read=["*"])
    async with AsyncClient(tcp(api), key=reader) as c:
        assert await c.jobs() == ["default.web"]
        with pytest.raises(Forbidden, match=r"default\.web"):
            await c.stop_job("web")
    for host in (str(tmp_path / "none.sock"), "http://127.0.0.1:1"):
        async with AsyncClient(host) as c:
            with pytest.raises(ConnectionError, match="cannot reach gafferd"):
                await c.ping()
            with pytest.raises(ConnectionError, match="cannot reach gafferd"):
                await c.events()
            with pytest.raises(ConnectionError, match="cannot reach gafferd"):
                await c.channel()


async def test_async_keys_and_users(manager: Manager, api: HttpApp) -> None:
    admin = await make_key(api, admin=True)
    async with AsyncClient(tcp(api), key=admin) as c:
        made = await c.create_key({"read": ["*"], "create_key": True}, label="ro")
        key_id, token = made["key"], made["api_key"]
        assert key_id in {k["key"] for k in await c.keys()}
        assert (await c.key_info(key_id))["permissions"]["read"] == ["*"]
        async with AsyncClient(tcp(api), key=token) as ro:
            child_key = await ro.create_key({"read": ["default"]}, label="child")
            with pytest.raises(Forbidden):
                await ro.create_key({"write": ["*"]})  # broader than itself
        info = await c.key_info(key_id, include_keys=True)
        assert [k["key"] for k in info["keys"]] == [child_key["key"]]
        user = await c.create_user("ann", "pw-1", user_type=1, permissions={"read": ["*"]})
        assert [u["username"] for u in await c.users()] == ["ann"]
        assert (await c.user_info("ann"))["key"] == user["key"]
        async with AsyncClient(tcp(api)) as anon:
            ann_key = await anon.login("ann", "pw-1")
            with pytest.raises(Unauthorized, match="wrong username or password"):
                await anon.login("ann", "pw-2")
        async with AsyncClient(tcp(api), key=ann_key) as ann:
            assert await ann.jobs() == []
        assert (await c.update_user("ann", team="ops"))["username"] == "ann"
        await c.set_password("ann", "pw-2")
        async with AsyncClient(tcp(api)) as anon:
            assert await anon.login("ann", "pw-2")
        await c.set_user_key("ann", key_id)
        assert (await c.user_info("ann"))["key"] == key_id
        await c.delete_user("ann")
        assert await c.users() == []
        assert await c.delete_key(key_id) == 2  # with its child
        with pytest.raises(NotFound):
            await c.key_info(key_id)


async def test_async_channel_subscribes_and_runs_commands(manager: Manager, api: HttpApp) -> None:
    manager.load({"name": "web", **SLEEP})
    async with AsyncClient(unix(api)) as c, await c.channel() as ch:
        await ch.subscribe("EVENTS:job.default.web")
        await ch.subscribe("EVENTS:job.default.web")  # twice: counted, answered twice
        assert await ch.command("scale", "default.web", 1) == 2
        async for event in ch.events(timeout=TIMEOUT):
            if event["event"] == "spawn":
                break
        assert event["name"] == "default.web" and event["topic"] == "EVENTS:job.default.web"
        # commands answer in any order, each to its own caller
        results = await asyncio.gather(
            ch.command("jobs"),
            ch.command("pids", "default.web"),
            ch.command("info", "default.web"),
        )
        assert results[0] == ["default.web"] and len(results[1]) == 2
        assert results[2]["name"] == "default.web"
        with pytest.raises(NotFound, match=r"job default\.nope not found"):
            await ch.command("stop_job", "nope")
        with pytest.raises(BadRequest, match="args"):
            await ch.command("scale")
        with pytest.raises(NotFound, match="nope"):
            await ch.subscribe("JOB:default.nope")
        with pytest.raises(BadRequest, match="topic"):
            await ch.subscribe("")
        await ch.unsubscribe("EVENTS:job.default.web")
        await ch.unsubscribe("EVENTS:job.default.web")
        assert await ch.command("scale", "default.web", -1) == 1
        late: list[Any] = []  # what was sent before the unsubscriptions, and nothing after
        with pytest.raises(TimeoutError):
            while True:
                late.append(await ch.next_event(timeout=0.3))
        assert not [e for e in late if e["event"] == "exit" or e.get("numprocesses") == 1]
    assert await ch.next_event() is None  # closed: the events end
    with pytest.raises(ConnectionError, match="closed"):
        await ch.command("jobs")

    # over TCP, a key's rights apply to commands and subscriptions
    reader = await make_key(api, read=["*"])
    async with await Channel.open(Target(tcp(api), key=reader)) as ch:
        assert await ch.command("jobs") == ["default.web"]
        with pytest.raises(Forbidden, match=r"default\.web"):
            await ch.command("scale", "default.web", 1)
        await ch.subscribe("EVENTS")
    few = await make_key(api, read=["other"])
    async with await Channel.open(Target(tcp(api), key=few)) as ch:
        with pytest.raises(Forbidden, match=r"default\.web"):
            await ch.subscribe("JOB:default.web")


async def test_async_process_io(manager: Manager, api: HttpApp) -> None:
    cat = manager.load({"name": "cat", **CAT})
    streams = manager.load(
        {
            "name": "cs",
            "cmd": PYTHON,
            "args": [child("streams.py")],
            "custom_streams": ["ctl"],
            "startsecs": 0,
        }
    )
    await manager.wait_running("cat", timeout=TIMEOUT)
    await manager.wait_running("cs", timeout=TIMEOUT)
    target = Target(unix(api))
    async with await ProcessIO.open(target, cat.pids[0]) as io:
        await io.write("hello\n")
        assert await io.read(timeout=TIMEOUT) == "hello\n"
        await io.write("été\n")
        async for text in io:
            assert text == "été\n"
            break
    assert await io.read() is None
    # a custom stream: written to, and read back (the child upper-cases it)
    async with await ProcessIO.open(target, streams.pids[0], "ctl") as io:
        got = ""
        await io.write("abc\n")
        while "ABC" not in got:
            got += await io.read(timeout=TIMEOUT) or ""
    async with await ProcessIO.open(target, cat.pids[0], mode=1) as io:
        with pytest.raises(Forbidden, match="read-only"):
            await io.write("x")
    async with await ProcessIO.open(target, streams.pids[0], mode=2) as io:
        with pytest.raises(Conflict, match="no stdin pipe"):
            await io.write("x")
    async with await ProcessIO.open(target, 999) as io:
        with pytest.raises(NotFound, match="process 999 not found"):
            await io.write("x")
    async with await ProcessIO.open(target, cat.pids[0], "nostream") as io:
        with pytest.raises(NotFound, match="no stream 'nostream'"):
            await io.read(timeout=TIMEOUT)
    with pytest.raises(BadRequest, match="mode"):
        ProcessIO(target, 1, mode=4)
    # over TCP, with a key in the handshake (a frame would be written to the process)
    writer = await make_key(api, write=["default.cat"])
    async with await ProcessIO.open(Target(tcp(api), key=writer), cat.pids[0]) as io:
        await io.write("keyed\n")
        assert await io.read(timeout=TIMEOUT) == "keyed\n"
    async with AsyncClient(unix(api)) as c:
        # read-only IO open first: the echo is waited for, not raced
        async with await ProcessIO.open(target, cat.pids[0], mode=1) as io:
            await c.send(cat.pids[0], b"via send\n")
            got = ""
            while "via send\n" not in got:
                got += await io.read(timeout=TIMEOUT) or ""
        assert (await c.tail(cat.pids[0]))[1].endswith(b"via send\n")


async def test_https_with_a_ca_and_a_client_certificate(
    manager: Manager,
    tmp_path: Path,
    certs: dict[str, str],  # noqa: F811
) -> None:
    ca = certs["ca.pem"]
    app = start_app(
        manager, tmp_path, tls=TlsSettings(certs["server.pem"], certs["server.key"], client_ca=ca)
    )
    url = tcp(app).replace("http://", "https://")
    key = await make_key(app, read=["*"])
    job = manager.load({"name": "web", **SLEEP})
    tls: dict[str, Any] = {"cafile": ca, "certfile": certs["client.pem"]}
    tls["keyfile"] = certs["client.key"]
    async with AsyncClient(url, key=key, **tls) as c:
        assert await c.jobs() == ["default.web"]
        async with c.events(["EVENTS:job.default.web"]) as events, await c.channel() as ch:
            assert await ch.command("jobs") == ["default.web"]
            await ch.subscribe("EVENTS:job.default.web")
            manager.scale("web", 1)
            assert (await anext(events))["event"] == "scale"
            assert (await ch.next_event(TIMEOUT))["event"] == "scale"  # type: ignore[index]
        await manager.wait_running("web", 2, timeout=TIMEOUT)
        async with c.output(job.pids[0]) as out:
            assert out.status == 200

    def blocking() -> tuple[list[str], Any]:
        with Client(url, key=key, **tls) as c, c.channel() as ch:
            return c.jobs(), ch.command("pids", "default.web")

    jobs, pids = await asyncio.to_thread(blocking)
    assert jobs == ["default.web"] and sorted(pids) == sorted(job.pids)
    # a daemon whose CA is not trusted, and a client without a certificate
    async with AsyncClient(url, key=key) as c:
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await c.jobs()
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await c.channel()
    async with AsyncClient(url, key=key, cafile=ca) as c:
        with pytest.raises(ConnectionError, match=r"cannot reach gafferd|closed"):
            await c.jobs()
