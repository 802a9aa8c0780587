"""The websocket channels against a manager running real processes: /channel's
pub/sub topics and commands, its authentication and permission checks, the cut-off
of a slow client, and the process IO channel (/<pid>/channel)."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import PYTHON, SLEEP, TIMEOUT, child, next_event, output_of, py
from gaffer.http import HttpApp, HttpSettings
from gaffer.http.commands import COMMANDS
from gaffer.http.keystore import AuthStore
from gaffer.manager import Manager
from httpkit import Channel, Client, UnixResolver, make_key

Msg = dict[str, Any]

# A job that answers each line on stdin with one line on stdout and one on stderr.
TALK = {
    "cmd": "sh",
    "args": ["-c", 'while read l; do echo "out $$l"; echo "err $$l" >&2; done'],
    "redirect_input": True,
    "startsecs": 0,
}
CAT = {
    "cmd": "cat",
    "redirect_input": True,
    "redirect_output": ["stdout", "stderr"],
    "startsecs": 0,
}


class Feed:
    """A /channel client that keeps every message it receives, so that waiting
    for one reply never throws away an event another check needs."""

    def __init__(self, ch: Channel) -> None:
        self.ch = ch
        self.msgs: list[Msg] = []
        self._ids = 0

    async def send(self, msg: Any) -> None:
        await self.ch.send(msg)

    async def wait(self, pred: Callable[[Msg], bool], since: int = 0) -> Msg:
        """The first message from index ``since`` on that satisfies ``pred``."""

        async def find() -> Msg:
            i = since
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i]):
                        return self.msgs[i]
                    i += 1
                self.msgs.append(await self.ch.recv())

        try:
            return await asyncio.wait_for(find(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no matching message; last: {self.msgs[-10:]!r}") from None

    async def next(self) -> Msg:
        """The next message not yet seen."""
        return await self.wait(lambda m: True, len(self.msgs))

    async def closed(self) -> None:
        """Read until the server closes the channel; fails if it does not."""

        async def drain() -> None:
            while (raw := await self.ch.recv_raw()) is not None:
                self.msgs.append(json.loads(raw))

        try:
            await asyncio.wait_for(drain(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"the server kept the channel open: {self.msgs!r}") from None

    async def sub(self, topic: str, event: str = "SUB") -> Msg:
        since = len(self.msgs)
        await self.send({"event": event, "data": {"topic": topic}})

        def reply(m: Msg) -> bool:
            if m["event"] == "gaffer:subscription_success":
                return bool(m["topic"] == topic)
            return m["event"] == "gaffer:subscription_error" and m["data"]["topic"] == topic

        return await self.wait(reply, since)

    async def unsub(self, topic: str) -> Msg:
        return await self.sub(topic, "UNSUB")

    async def cmd(self, name: str, *args: Any, **kwargs: Any) -> Msg:
        self._ids += 1
        ident = f"cmd-{self._ids}"
        since = len(self.msgs)
        data = {"identity": ident, "name": name, "args": list(args), "kwargs": kwargs}
        await self.send({"event": "CMD", "data": data})
        return await self.wait(
            lambda m: m["event"].startswith("gaffer:command") and m["data"]["id"] == ident, since
        )

    async def ok(self, name: str, *args: Any, **kwargs: Any) -> Any:
        reply = await self.cmd(name, *args, **kwargs)
        assert reply["event"] == "gaffer:command_success", reply
        return reply["data"]["result"]

    async def err(self, name: str, *args: Any, **kwargs: Any) -> tuple[int, str]:
        reply = await self.cmd(name, *args, **kwargs)
        assert reply["event"] == "gaffer:command_error", reply
        return reply["data"]["errno"], reply["data"]["reason"]

    async def sync(self) -> None:
        """After this, every message the server sent before it is in ``msgs``."""
        await self.ok("sessions")

    def events(self, topic: str | None = None, type_: str | None = None) -> list[Msg]:
        return [
            m["data"]
            for m in self.msgs
            if m["event"] == "gaffer:event"
            and (topic is None or m["data"]["topic"] == topic)
            and (type_ is None or m["data"]["event"] == type_)
        ]

    async def event(self, topic: str, type_: str, **match: Any) -> Msg:
        msg = await self.wait(
            lambda m: (
                m["event"] == "gaffer:event"
                and m["data"]["topic"] == topic
                and m["data"]["event"] == type_
                and all(m["data"].get(k) == v for k, v in match.items())
            )
        )
        return msg["data"]


class Opener:
    """Opens websockets to ``api`` over TCP, with an admin key unless told otherwise."""

    def __init__(self, api: HttpApp) -> None:
        self.api = api
        self.opened: list[Channel] = []
        self._admin: str | None = None

    async def admin_key(self) -> str:
        if self._admin is None:
            self._admin = await make_key(self.api, admin=True)
        return self._admin

    async def raw(self, path: str = "/channel", key: str | None = "admin") -> Channel:
        if key == "admin":
            key = await self.admin_key()
        client = Client(self.api, key, tcp=True)
        try:
            ch = await client.ws(path)
        finally:
            client.close()
        self.opened.append(ch)
        return ch

    async def __call__(self, path: str = "/channel", key: str | None = "admin") -> Feed:
        return Feed(await self.raw(path, key))


@pytest.fixture
def ws(api: HttpApp) -> Iterator[Opener]:
    opener = Opener(api)
    yield opener
    for ch in opener.opened:
        ch.close()


def proc_of(manager: Manager, job: str, i: int = 0) -> tuple[int, int]:
    """(pid, os_pid) of the i-th process of ``job``."""
    proc = manager.list(job)[i]
    assert proc.os_pid is not None
    return proc.pid, proc.os_pid


# -- the protocol -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/channel", "/channel/websocket"])
async def test_protocol_replies_and_errors(
    manager: Manager, api: HttpApp, ws: Opener, path: str
) -> None:
    feed = await ws(path)
    await feed.send({"event": "NOP"})
    await feed.send({"event": "SUB", "data": {"topic": "EVENTS"}})
    # the NOP got no reply: the first message is the SUB's
    assert await feed.next() == {"event": "gaffer:subscription_success", "topic": "EVENTS"}
    await feed.send({"event": "UNSUB", "data": {"topic": "EVENTS"}})
    assert await feed.next() == {"event": "gaffer:subscription_success", "topic": "EVENTS"}

    bad: list[tuple[Any, str]] = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "event_missing"),
        ({"data": {"topic": "EVENTS"}}, "event_missing"),
        ({"event": "SUB"}, "data_missing"),
        ({"event": "SUB", "data": "EVENTS"}, "data_missing"),
        ({"event": "SUB", "data": {}}, "topic_missing"),
        ({"event": "FROB", "data": {}}, "unknown_cmd"),
        ({"event": "CMD", "data": {"identity": "x"}}, "cmd_name_missing"),
        ({"event": "CMD", "data": {"name": "jobs"}}, "cmd_identity_missing"),
    ]
    for msg, reason in bad:
        await feed.send(msg)
        reply = await feed.next()
        assert reply["event"] == "gaffer:error", (msg, reply)
        assert reply["data"]["reason"] == reason, (msg, reply)
        assert reply["data"]["errno"] == 400
    # still connected, and still answering
    manager.load({"name": "web", **SLEEP})
    assert await feed.ok("jobs") == ["default.web"]
    await manager.wait_running("web", timeout=TIMEOUT)


# -- topics -------------------------------------------------------------------------


async def test_event_topics_deliver_each_event_once(
    manager: Manager, api: HttpApp, ws: Opener
) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "web")
    feed = await ws()
    topics = [
        "EVENTS",
        "EVENTS:job.default.web",
        "EVENTS:job",  # a first segment: 0.5 delivered every event twice
        "JOB:web",
        "JOB:default.web",
        f"PROCESS:{pid}",
    ]
    for t in topics:
        assert await feed.sub(t) == {"event": "gaffer:subscription_success", "topic": t}

    manager.scale("web", 1)
    spawn = await feed.event("EVENTS", "spawn", name="default.web")
    new_pid = spawn["pid"]
    assert new_pid != pid and new_pid in manager.pids("web")
    assert (await feed.event("EVENTS:job.default.web", "spawn"))["pid"] == new_pid
    assert (await feed.event("JOB:web", "spawn"))["pid"] == new_pid
    # the new process is not ours: PROCESS:<pid> is about one process only
    await manager.wait_running("web", timeout=TIMEOUT)

    manager.kill(pid, signal.SIGKILL)
    for t in ("EVENTS", "EVENTS:job.default.web", "EVENTS:job", "JOB:web", "JOB:default.web"):
        ev = await feed.event(t, "exit", pid=pid)
        assert ev["term_signal"] == signal.SIGKILL and ev["name"] == "default.web"
    assert (await feed.event(f"PROCESS:{pid}", "kill"))["signum"] == signal.SIGKILL
    assert (await feed.event(f"PROCESS:{pid}", "exit"))["term_signal"] == signal.SIGKILL
    await feed.event(f"PROCESS:{pid}", "reap", pid=pid)
    await feed.event("JOB:default.web", "reap", pid=pid)
    await feed.sync()

    assert all(e["pid"] == pid for e in feed.events(f"PROCESS:{pid}"))
    assert {e["name"] for e in feed.events("JOB:web")} == {"default.web"}
    # output is only for STREAM topics
    assert not [e for e in feed.events() if e["event"] == "output"]
    counts = collections.Counter((e["topic"], e["seq"]) for e in feed.events())
    assert counts and max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    # EVENTS saw the same events as EVENTS:job (a job event) and more (manager ones)
    job_seqs = {e["seq"] for e in feed.events("EVENTS:job")}
    assert job_seqs <= {e["seq"] for e in feed.events("EVENTS")}
    await manager.wait_running("web", timeout=TIMEOUT)


async def test_stats_topics_and_the_timer_stops(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid, os_pid = proc_of(manager, "web")
    feed = await ws()
    assert manager._stats_timer is None
    for t in (f"STATS:{pid}", "STATS:web"):
        assert (await feed.sub(t))["event"] == "gaffer:subscription_success"
    assert manager._stats_timer is not None
    by_pid = await feed.event(f"STATS:{pid}", "stat")
    by_job = await feed.event("STATS:web", "stat")
    for stat in (by_pid, by_job):
        assert stat["pid"] == pid and stat["os_pid"] == os_pid and stat["name"] == "default.web"
        assert "cpu" in stat and "mem" in stat

    await feed.unsub(f"STATS:{pid}")
    assert manager._stats_timer is not None  # STATS:web still wants samples
    await feed.unsub("STATS:web")
    assert manager._stats_timer is None


async def test_stream_topics_carry_real_output(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "talk", **TALK})
    await manager.wait_running("talk", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "talk")
    feed = await ws()
    for t in (f"STREAM:{pid}", f"STREAM:{pid}.stdout"):
        assert (await feed.sub(t))["event"] == "gaffer:subscription_success"
    manager.send(pid, "hi\n")

    def text(topic: str, label: str) -> str:
        return "".join(e["data"] for e in feed.events(topic, "output") if e["label"] == label)

    await feed.wait(lambda m: "out hi\n" in text(f"STREAM:{pid}", "stdout"))
    await feed.wait(lambda m: "err hi\n" in text(f"STREAM:{pid}", "stderr"))
    await feed.wait(lambda m: "out hi\n" in text(f"STREAM:{pid}.stdout", "stdout"))
    await feed.sync()
    assert text(f"STREAM:{pid}.stdout", "stderr") == ""
    assert all(e["pid"] == pid for e in feed.events())
    # bus prefixes the client names itself work too
    assert (await feed.sub(f"stream.{pid}.stderr"))["event"] == "gaffer:subscription_success"
    manager.send(pid, "again\n")
    await feed.wait(lambda m: "err again\n" in text(f"stream.{pid}.stderr", "stderr"))


async def test_bad_topics_are_subscription_errors(
    manager: Manager, api: HttpApp, ws: Opener
) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "web")
    feed = await ws()
    cases = {
        "FROB:x": 400,
        "JOB:": 400,
        "PROCESS:abc": 400,
        f"PROCESS:{pid}.stdout": 400,
        "PROCESS:9999": 404,
        "STREAM:9999": 404,
        f"STREAM:{pid}.nolabel": 404,
        "STATS:9999": 404,
        "STATS:nope": 404,
        "JOB:nope": 404,
        "JOB:s.nope": 404,
    }
    for topic, errno in cases.items():
        reply = await feed.sub(topic)
        assert reply["event"] == "gaffer:subscription_error", reply
        assert reply["data"]["errno"] == errno, reply
        assert reply["data"]["reason"]
    assert manager._stats_timer is None  # no failed STATS subscription left a sampler
    assert await feed.ok("pids") == [pid]


# -- commands -----------------------------------------------------------------------

TESTED_COMMANDS = {
    "sessions",
    "jobs",
    "pids",
    "load",
    "unload",
    "reload",
    "update",
    "start_job",
    "stop_job",
    "scale",
    "info",
    "stats",
    "stopall",
    "killall",
    "commit",
    "process_info",
    "process_stats",
    "stop_process",
    "send",
    "kill",
}


def test_every_command_is_tested() -> None:
    assert set(COMMANDS) == TESTED_COMMANDS


async def test_job_commands(manager: Manager, api: HttpApp, ws: Opener) -> None:
    feed = await ws()
    assert await feed.ok("load", {"name": "web", **SLEEP}) is True
    assert await feed.ok("load", {"name": "w2", **SLEEP}, sessionid="s1", start=False) is True
    assert manager.jobs() == ["default.web", "s1.w2"]
    assert not manager.get("s1.w2").active
    await manager.wait_running("web", timeout=TIMEOUT)

    assert await feed.ok("sessions") == ["default", "s1"]
    assert await feed.ok("jobs") == ["default.web", "s1.w2"]
    assert await feed.ok("jobs", "s1") == ["s1.w2"]

    assert await feed.ok("scale", "web", "+2") == 3
    await manager.wait_running("web", timeout=TIMEOUT)
    assert len(manager.pids("web")) == 3
    assert await feed.ok("scale", "default.web", "=1") == 1
    await manager.wait_running("web", timeout=TIMEOUT)
    pids = manager.pids("web")
    assert len(pids) == 1
    await manager.wait_for(lambda: manager.pids() == pids, TIMEOUT)  # the others reaped
    assert await feed.ok("pids") == pids
    assert await feed.ok("pids", "web") == pids
    assert await feed.ok("pids", "s1.w2") == []

    info = await feed.ok("info", "web")
    assert info["name"] == "default.web" and info["processes"] == pids and info["active"]
    stats = await feed.ok("stats", "web")
    assert stats["name"] == "default.web" and [s["pid"] for s in stats["stats"]] == pids

    assert await feed.ok("start_job", "w2", sessionid="s1") is True
    assert manager.get("s1.w2").active
    await manager.wait_running("s1.w2", timeout=TIMEOUT)
    assert await feed.ok("stop_job", "s1.w2") is True
    assert not manager.get("s1.w2").active and manager.pids("s1.w2") == []

    assert await feed.ok("reload", "web") is True
    await manager.wait_running("web", timeout=TIMEOUT)
    reloaded = manager.pids("web")
    assert len(reloaded) == 1 and not set(reloaded) & set(pids)

    cfg = {"name": "web", **SLEEP, "args": ["3601"], "numprocesses": 2}
    assert await feed.ok("update", cfg) is True
    await manager.wait_running("web", timeout=TIMEOUT)
    assert manager.info("web")["config"]["args"] == ["3601"]
    assert [p.argv[1:] for p in manager.list("web")] == [["3601"], ["3601"]]

    assert await feed.ok("unload", "w2", sessionid="s1") is True
    assert manager.jobs() == ["default.web"]
    assert await feed.ok("stopall") is True
    assert manager.pids() == [] and not manager.get("web").active


async def test_process_commands(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP, "numprocesses": 2})
    manager.load({"name": "talk", **TALK})
    await manager.wait_running("web", timeout=TIMEOUT)
    await manager.wait_running("talk", timeout=TIMEOUT)
    feed = await ws()
    pid, os_pid = proc_of(manager, "web")

    info = await feed.ok("process_info", pid)
    assert (info["pid"], info["os_pid"], info["name"]) == (pid, os_pid, "default.web")
    assert info["commited"] is False
    stats = await feed.ok("process_stats", str(pid))
    assert (stats["pid"], stats["os_pid"]) == (pid, os_pid)

    # send writes to stdin
    talk, _ = proc_of(manager, "talk")
    sub = manager.subscribe(f"stream.{talk}.stdout")
    assert await feed.ok("send", talk, "ping\n") is True
    assert await output_of(sub, b"out ping\n") == b"out ping\n"
    assert await feed.ok("send", talk, ["a", "b\n"]) is True
    assert b"out ab\n" in await output_of(sub, b"out ab\n")
    manager.unsubscribe(f"stream.{talk}.stdout", sub)

    # kill sends one signal to one process
    sub = manager.subscribe(f"proc.{pid}")
    assert await feed.ok("kill", pid, 9) is True
    ev = await next_event(sub, lambda e: e.type == "exit")
    assert ev.data["term_signal"] == signal.SIGKILL
    manager.unsubscribe(f"proc.{pid}", sub)
    await manager.wait_running("web", timeout=TIMEOUT)

    # killall signals every process of the job, by name
    sub = manager.subscribe("job.default.web.exit")
    before = set(manager.pids("web"))
    assert await feed.ok("killall", "web", "USR1") is True
    exited = set()
    while exited != before:
        ev = await next_event(sub)
        assert ev.data["term_signal"] == signal.SIGUSR1
        exited.add(ev.data["pid"])
    manager.unsubscribe("job.default.web.exit", sub)
    await manager.wait_running("web", timeout=TIMEOUT)

    # stop_process stops it (answering once it is gone); its slot gets a new one
    pid, os_pid = proc_of(manager, "web")
    assert await feed.ok("stop_process", pid) is True
    assert pid not in manager.pids() and await feed.err("process_info", pid) == (
        404,
        f"process {pid} not found",
    )
    await manager.wait_running("web", timeout=TIMEOUT)
    assert len(manager.pids("web")) == 2

    # commit runs a one-off process
    once = await feed.ok("commit", "web", env={"X": "1"})
    proc = manager.get_process(once)
    assert proc.committed and proc.env is not None and proc.env["X"] == "1"
    assert once not in manager.pids("web")
    assert (await feed.ok("process_info", once))["commited"] is True

    assert await feed.ok("stopall", "web") is True
    assert manager.pids("web") == [] and proc.exit is not None
    assert manager.pids("talk") == [talk]


async def test_bad_commands_are_command_errors(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid, os_pid = proc_of(manager, "web")
    feed = await ws()
    cases: list[tuple[tuple[Any, ...], dict[str, Any], int, str]] = [
        (("frobnicate",), {}, 400, "unknown command"),
        (("scale",), {}, 400, "args: scale"),
        (("scale", "web", "x3"), {}, 400, "scale: expected"),
        (("scale", "web", True), {}, 400, "scale: expected"),
        (("scale", "web", 1, 2, 3), {}, 400, "args: scale"),
        (("info", "web"), {"bogus": 1}, 400, "args: info"),
        (("info", 7), {}, 400, "name: expected"),
        (("info", "nope"), {}, 404, "default.nope"),
        (("kill", pid), {}, 400, "args: kill"),
        (("kill", pid, "NOPE"), {}, 400, "signal: unknown signal"),
        (("kill", 9999, 9), {}, 404, "process 9999"),
        (("kill", [pid], 9), {}, 400, "pid: expected"),
        (("load", "web"), {}, 400, "config: expected an object"),
        (("load", {"name": "x", "cmd": "sleep", "numprocesses": "two"}), {}, 400, "numprocesses"),
        (("load", {"name": "web", **SLEEP}), {}, 409, "exists"),
        (("load", {"name": "x", **SLEEP}), {"start": "yes"}, 400, "start: expected"),
        (("jobs", 3), {}, 400, "sessionid: expected"),
        (("send", pid, "x"), {}, 409, "redirect_input"),
        (("send", pid, "x"), {"stream": 3}, 400, "stream: expected"),
        (("commit", "web"), {"env": {"A": 1}}, 400, "env: expected"),
        (("commit", "web", "soon"), {}, 400, "graceful_timeout"),
    ]
    for args, kwargs, errno, reason in cases:
        reply = await feed.cmd(*args, **kwargs)
        assert reply["event"] == "gaffer:command_error", (args, reply)
        assert reply["data"]["errno"] == errno, (args, reply)
        assert reason in reply["data"]["reason"], (args, reply)
    # args and kwargs of the wrong type
    for data, reason in [
        ({"args": "web"}, "args: expected a list"),
        ({"args": [], "kwargs": ["web"]}, "kwargs: expected an object"),
    ]:
        await feed.send({"event": "CMD", "data": {"identity": "raw", "name": "info", **data}})
        reply = await feed.wait(lambda m: m["event"].startswith("gaffer:command"), len(feed.msgs))
        assert reply["event"] == "gaffer:command_error" and reply["data"]["id"] == "raw"
        assert reply["data"]["errno"] == 400 and reason in reply["data"]["reason"]
    # nothing ran
    assert manager.jobs() == ["default.web"] and proc_of(manager, "web") == (pid, os_pid)
    assert manager.get("web").numprocesses == 1


# -- authentication and permissions -------------------------------------------------


async def test_channel_auth_frame_comes_first(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    before = proc_of(manager, "web")

    # a command before AUTH: refused, the channel closed, and the command never ran
    feed = await ws(key=None)
    await feed.send(
        {"event": "CMD", "data": {"identity": "1", "name": "scale", "args": ["web", 3]}}
    )
    await feed.closed()
    assert [m["event"] for m in feed.msgs] == ["gaffer:error"]
    assert feed.msgs[0]["data"]["errno"] == 401
    await (await ws()).ok("sessions")  # the refused command had its chance to run
    assert manager.get("web").numprocesses == 1 and proc_of(manager, "web") == before

    # so is a SUB: no events for an unauthenticated client
    feed = await ws(key=None)
    await feed.send({"event": "SUB", "data": {"topic": "EVENTS"}})
    await feed.closed()
    assert [m["event"] for m in feed.msgs] == ["gaffer:error"]

    # a wrong key
    feed = await ws(key=None)
    await feed.send("AUTH:nope.nope")
    await feed.closed()
    assert [(m["event"], m["data"]["errno"]) for m in feed.msgs] == [("gaffer:error", 403)]

    # a good key: then commands run
    key = await make_key(api, write=["default.web"])
    feed = await ws(key=None)
    await feed.send(f"AUTH:{key}")
    assert (await feed.next())["event"] == "gaffer:auth_success"
    assert await feed.ok("scale", "web", 1) == 2
    await manager.wait_running("web", timeout=TIMEOUT)
    assert len(manager.pids("web")) == 2
    # but only what the key allows
    assert (await feed.err("load", {"name": "x", **SLEEP}))[0] == 403
    assert manager.jobs() == ["default.web"]


async def test_handshake_checks(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "web")
    admin = await ws.admin_key()
    host, port = next(a for a in api.addresses if isinstance(a, tuple))
    for path, key, status in [
        ("/channel", "nope.nope", 403),
        (f"/{pid}/channel", "nope.nope", 403),
        (f"/{pid}/channel?mode=7", admin, 400),
    ]:
        req = tornado.httpclient.HTTPRequest(
            f"ws://{host}:{port}{path}", headers={"X-Api-Key": key}
        )
        with pytest.raises(tornado.httpclient.HTTPClientError) as exc:
            await asyncio.wait_for(tornado.websocket.websocket_connect(req), TIMEOUT)
        assert exc.value.code == status, path
        assert exc.value.response is not None
        assert json.loads(exc.value.response.body)["errno"] == status

    # the owner on the unix socket needs no key
    path = next(a for a in api.addresses if isinstance(a, str))
    conn = await asyncio.wait_for(
        tornado.websocket.websocket_connect(
            "ws://gafferd/channel", resolver=UnixResolver(path=path)
        ),
        TIMEOUT,
    )
    try:
        feed = Feed(Channel(conn))
        assert await feed.ok("pids") == [pid]
        assert await feed.ok("scale", "web", 1) == 2
        await manager.wait_running("web", timeout=TIMEOUT)
    finally:
        conn.close()


async def test_read_only_key(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "web", **SLEEP})
    manager.load({"name": "other", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    await manager.wait_running("other", timeout=TIMEOUT)
    web = proc_of(manager, "web")
    other = proc_of(manager, "other")
    key = await make_key(api, read=["default.web"])
    feed = await ws(key=key)

    assert (await feed.ok("info", "web"))["processes"] == [web[0]]
    assert await feed.ok("jobs") == ["default.web"]
    assert await feed.ok("pids") == [web[0]]
    assert (await feed.ok("process_info", web[0]))["os_pid"] == web[1]
    refused: list[tuple[Any, ...]] = [
        ("info", "other"),
        ("process_info", other[0]),
        ("scale", "web", 2),
        ("kill", web[0], 9),
        ("kill", other[0], 9),
        ("killall", "web", 9),
        ("stop_process", web[0]),
        ("stop_job", "web"),
        ("stopall",),
        ("commit", "web"),
        ("send", web[0], "x"),
        ("unload", "web"),
        ("load", {"name": "x", **SLEEP}),
        ("update", {"name": "web", **SLEEP, "numprocesses": 3}),
    ]
    for args in refused:
        errno, reason = await feed.err(*args)
        assert errno == 403, (args, reason)
    await feed.sync()
    assert manager.jobs() == ["default.web", "default.other"]
    assert manager.get("web").numprocesses == 1 and manager.get("other").numprocesses == 1
    assert proc_of(manager, "web") == web and proc_of(manager, "other") == other
    assert all(p.exit is None for p in manager.list())

    for topic in ("JOB:other", "JOB:default.other", f"PROCESS:{other[0]}", "STATS:other"):
        reply = await feed.sub(topic)
        assert reply["event"] == "gaffer:subscription_error", reply
        assert reply["data"]["errno"] == 403
    assert manager._stats_timer is None

    assert (await feed.sub("EVENTS"))["event"] == "gaffer:subscription_success"
    assert (await feed.sub("JOB:web"))["event"] == "gaffer:subscription_success"
    manager.scale("other", 1)  # events of a job the key cannot read, first
    manager.scale("web", 1)
    spawn = await feed.event("EVENTS", "spawn", name="default.web")
    await feed.sync()
    seen = feed.events("EVENTS")
    assert seen and {e["name"] for e in seen} == {"default.web"}, seen
    assert spawn["pid"] in manager.pids("web")
    await manager.wait_running("web", timeout=TIMEOUT)
    await manager.wait_running("other", timeout=TIMEOUT)


# -- a slow client -------------------------------------------------------------------


def ws_frame(text: str) -> bytes:
    """A masked text frame, as a client sends it."""
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


async def test_slow_client_is_cut_off(manager: Manager) -> None:
    settings = HttpSettings(
        unix_socket=None, bind=("127.0.0.1:0",), require_key=False, client_buffer=64 << 10
    )
    app = HttpApp(settings, store=AuthStore(None, scrypt_n=2**10))
    app.start(manager.loop, manager)
    manager.apps.append(app)
    host, port = next(a for a in app.addresses if isinstance(a, tuple))
    # floods stdout once it reads a line
    manager.load(
        py(
            "import sys\n"
            "sys.stdin.readline()\n"
            "chunk = (b'x' * 1023 + b'\\n') * 64\n"
            "while True:\n"
            "    sys.stdout.buffer.write(chunk)\n",
            name="flood",
            redirect_input=True,
            startsecs=0,
        )
    )
    await manager.wait_running("flood", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "flood")
    loop = asyncio.get_running_loop()

    # The slow client: a raw socket with a tiny receive buffer that, once
    # subscribed, never reads again.
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    other_client = Client(app, tcp=True)
    try:
        await asyncio.wait_for(loop.sock_connect(slow, (host, port)), TIMEOUT)
        nonce = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /channel HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(slow, request.encode())
        await loop.sock_sendall(
            slow, ws_frame(json.dumps({"event": "SUB", "data": {"topic": f"STREAM:{pid}"}}))
        )
        buf = b""
        while b"subscription_success" not in buf:
            chunk = await asyncio.wait_for(loop.sock_recv(slow, 4096), TIMEOUT)
            assert chunk, buf
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 101"), buf

        other = Feed(await other_client.ws("/channel"))
        assert await other.ok("pids") == [pid]
        assert app.cut_off_clients == 0

        manager.send(pid, "go\n")
        await manager.wait_for(lambda: app.cut_off_clients > 0, TIMEOUT, topic=f"stream.{pid}")
        assert app.cut_off_clients == 1
        # the flood goes on; the other client is still answered promptly
        for _ in range(5):
            start = loop.time()
            assert await other.ok("pids") == [pid]
            assert loop.time() - start < 2.0
            assert manager.get_process(pid).exit is None

        # the server closed the slow client's connection
        async def until_eof() -> None:
            while await loop.sock_recv(slow, 1 << 20):
                pass

        # at once: not after tornado's 5 s wait for a close handshake the client
        # is too slow to answer
        with contextlib.suppress(ConnectionResetError):
            await asyncio.wait_for(until_eof(), 3.0)
        assert app.cut_off_clients == 1
        assert len(app.channels) == 1  # only the other client is left
        other.ch.close()
    finally:
        slow.close()
        other_client.close()


# -- the process IO channel ---------------------------------------------------------


async def recv_frame(ch: Channel) -> tuple[str, str, str]:
    raw = await ch.recv_raw()
    assert isinstance(raw, str), raw
    head, sep, body = raw.partition("\0")
    v1, type_, msgid = head.split(" ")
    assert (v1, sep) == ("V1", "\0"), raw
    return type_, msgid, body


async def frame_until(ch: Channel, pred: Callable[[str, str, str], bool]) -> tuple[str, str, str]:
    async def find() -> tuple[str, str, str]:
        while True:
            f = await recv_frame(ch)
            if pred(*f):
                return f

    return await asyncio.wait_for(find(), TIMEOUT)


async def io_closed(ch: Channel) -> list[str | bytes]:
    """The frames left until the server closes the channel."""
    left: list[str | bytes] = []

    async def drain() -> None:
        while (raw := await ch.recv_raw()) is not None:
            left.append(raw)

    await asyncio.wait_for(drain(), TIMEOUT)
    return left


async def test_io_channel_read_and_write(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "cat", **CAT})
    await manager.wait_running("cat", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "cat")

    both = await ws.raw(f"/{pid}/channel")
    await both.send("V1 message 1\0hello\n")
    assert await recv_frame(both) == ("response", "1", "OK")
    type_, n, body = await recv_frame(both)
    assert (type_, body) == ("message", "hello\n") and n.isdigit()

    # read only: output arrives, writes are refused
    reader = await ws.raw(f"/{pid}/channel?mode=1")
    await reader.send("V1 message 7\0nope\n")
    type_, msgid, body = await recv_frame(reader)
    assert (type_, msgid, json.loads(body)["errno"]) == ("error", "7", 403)
    # write only: writes work, no output comes back
    writer = await ws.raw(f"/{pid}/channel?mode=2")
    await writer.send("V1 message 1\0from writer\n")
    assert await recv_frame(writer) == ("response", "1", "OK")
    await frame_until(reader, lambda t, i, b: t == "message" and "from writer\n" in b)
    await frame_until(both, lambda t, i, b: t == "message" and "from writer\n" in b)
    await writer.send("V1 message 2\0again\n")
    assert await recv_frame(writer) == ("response", "2", "OK")  # no output frame before it
    await frame_until(reader, lambda t, i, b: "again\n" in b)
    assert b"nope" not in manager.get_process(pid).tails["stdout"].get()

    # a frame that is not V1, and one of the wrong type
    await both.send("hello")
    type_, _, body = await frame_until(both, lambda t, i, b: t == "error")
    assert json.loads(body)["errno"] == 400
    await both.send("V1 response 3\0OK")
    type_, msgid, body = await frame_until(both, lambda t, i, b: t == "error")
    assert msgid == "3" and json.loads(body)["errno"] == 400

    # an output stream cannot be written to
    out = await ws.raw(f"/{pid}/channel/stdout")
    await out.send("V1 message 1\0x\n")
    type_, _, body = await frame_until(out, lambda t, i, b: t in ("error", "response"))
    assert type_ == "error" and json.loads(body)["errno"] == 400


async def test_io_channel_custom_stream(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load(
        {
            "name": "cs",
            "cmd": PYTHON,
            "args": [child("streams.py")],
            "custom_streams": ["ctl"],
            "startsecs": 0,
        }
    )
    await manager.wait_running("cs", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "cs")
    ch = await ws.raw(f"/{pid}/channel/ctl")
    await ch.send("V1 message 1\0ping\n")
    assert await frame_until(ch, lambda t, i, b: t != "message") == ("response", "1", "OK")
    await frame_until(ch, lambda t, i, b: t == "message" and "PING\n" in b)

    missing = await ws.raw(f"/{pid}/channel/nope")
    type_, _, body = await recv_frame(missing)
    assert type_ == "error" and json.loads(body)["errno"] == 404
    assert await io_closed(missing) == []


async def test_io_channel_unknown_pid_and_auth(manager: Manager, api: HttpApp, ws: Opener) -> None:
    manager.load({"name": "cat", **CAT})
    await manager.wait_running("cat", timeout=TIMEOUT)
    pid, _ = proc_of(manager, "cat")

    ch = await ws.raw("/9999/channel")
    type_, _, body = await recv_frame(ch)
    assert type_ == "error" and json.loads(body)["errno"] == 404
    assert await io_closed(ch) == []

    sub = manager.subscribe(f"stream.{pid}")
    # no key: the first frame must be AUTH
    ch = await ws.raw(f"/{pid}/channel", key=None)
    await ch.send("V1 message 1\0sneaky\n")
    type_, msgid, body = await recv_frame(ch)
    assert (type_, msgid, json.loads(body)["errno"]) == ("error", "1", 401)
    assert await io_closed(ch) == []
    # a wrong key
    ch = await ws.raw(f"/{pid}/channel", key=None)
    await ch.send("V1 message 1\0AUTH:nope.nope")
    type_, _, body = await recv_frame(ch)
    assert type_ == "error" and json.loads(body)["errno"] == 403
    assert await io_closed(ch) == []
    # a key that may only read cannot open a writing channel
    reader_key = await make_key(api, read=["default.cat"])
    ch = await ws.raw(f"/{pid}/channel", key=None)
    await ch.send(f"V1 message 1\0AUTH:{reader_key}")
    assert await recv_frame(ch) == ("response", "1", "OK")
    type_, _, body = await recv_frame(ch)
    assert type_ == "error" and json.loads(body)["errno"] == 403
    assert await io_closed(ch) == []
    # ... but may open a reading one
    ch = await ws.raw(f"/{pid}/channel?mode=1", key=None)
    await ch.send(f"V1 message 1\0AUTH:{reader_key}")
    assert await recv_frame(ch) == ("response", "1", "OK")
    manager.send(pid, "for readers\n")
    assert (await recv_frame(ch))[::2] == ("message", "for readers\n")
    # a good key
    key = await make_key(api, write=["default.cat"])
    ch = await ws.raw(f"/{pid}/channel", key=None)
    await ch.send(f"V1 message 1\0AUTH:{key}")
    assert await recv_frame(ch) == ("response", "1", "OK")
    await ch.send("V1 message 2\0granted\n")
    assert await recv_frame(ch) == ("response", "2", "OK")
    assert (await recv_frame(ch))[::2] == ("message", "granted\n")
    out = await output_of(sub, b"granted\n")
    assert b"sneaky" not in out and b"AUTH" not in out
