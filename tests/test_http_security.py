"""Findings of the security review of the HTTP layer, each pinned by a test:
escalations that must be refused, revoked keys that must stop working at once,
subscriptions that must not leak other jobs' events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient
import tornado.websocket
from conftest import SLEEP, TIMEOUT
from gaffer.http import HttpApp
from gaffer.manager import Manager
from httpkit import Client, make_key

ROOT = Path(__file__).resolve().parent.parent


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_create_user_key_cannot_take_over_broader_users(
    manager: Manager, api: HttpApp
) -> None:
    owner = Client(api)
    assert (
        await owner.post("/users", {"username": "boss", "password": "s3cret", "user_type": 0})
    ).status == 200
    r = await owner.post(
        "/users", {"username": "ops", "password": "s3cret", "permissions": {"manage": ["*"]}}
    )
    assert r.status == 200
    r = await owner.post(
        "/users", {"username": "intern", "password": "s3cret", "permissions": {"read": ["default"]}}
    )
    assert r.status == 200
    hr = Client(api, key=await make_key(api, create_user=True, read=["default"]))
    for target in ("boss", "ops"):
        for method, path, body in (
            ("PUT", f"/users/{target}/password", {"password": "pwned"}),
            ("PUT", f"/users/{target}", {"password": "pwned"}),
            ("DELETE", f"/users/{target}", None),
        ):
            r = await hr.request(method, path, body=body)
            assert r.status == 403, (method, path, r)
        # the password did not change
        assert (await hr.get("/auth", headers=basic(target, "pwned"))).status == 401
        assert (await hr.get("/auth", headers=basic(target, "s3cret"))).status == 200
    # a user no broader than the key: fine
    assert (
        await hr.request("PUT", "/users/intern/password", body={"password": "n3w"})
    ).status == 200
    assert (await hr.get("/auth", headers=basic("intern", "n3w"))).status == 200
    # rights are a key's, not a field of the user
    r = await owner.put("/users/intern", {"permissions": {"admin": True}})
    assert r.status == 400 and "permissions" in r.json["error"]


async def test_commit_with_a_new_environment_or_arguments_needs_manage(
    manager: Manager, api: HttpApp
) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    writer = Client(api, key=await make_key(api, write=["default"]))
    r = await writer.post("/jobs/default/web/commit", {"env": {"LD_PRELOAD": "/tmp/evil.so"}})
    assert r.status == 403 and "manage" in r.json["error"]
    assert [p.pid for p in manager.list("web")] == manager.pids("web")  # no one-off started
    assert not manager.get("web").once
    ch = await writer.ws("/channel")
    reply = await ch.cmd("commit", "web", 0, {"PATH": "/tmp"})
    assert reply["event"] == "gaffer:command_error" and reply["data"]["errno"] == 403
    assert not manager.get("web").once
    # new arguments too: `sh -c ...` would run anything
    r = await writer.post("/jobs/default/web/commit", {"args": ["-c", "rm -rf /"]})
    assert r.status == 403 and "manage" in r.json["error"]
    assert not manager.get("web").once
    # without a new environment, write may run it; manage may change its env
    r = await writer.post("/jobs/default/web/commit", {})
    assert r.status == 200
    manager_key = Client(api, key=await make_key(api, manage=["default"]))
    assert (await manager_key.post("/jobs/default/web/commit", {"env": {"A": "1"}})).status == 200
    ch.close()


async def test_job_topic_is_that_job_only(manager: Manager, api: HttpApp) -> None:
    manager.load({"name": "a", **SLEEP})
    manager.load({"name": "a.b", **SLEEP})
    await manager.wait_running("a", timeout=TIMEOUT)
    await manager.wait_running("default.a.b", timeout=TIMEOUT)
    c = Client(api, key=await make_key(api, read=["default.a"]))
    ch = await c.ws("/channel")
    assert (await ch.sub("JOB:default.a"))["event"] == "gaffer:subscription_success"
    manager.scale("default.a.b", "+1")
    await manager.wait_running("default.a.b", timeout=TIMEOUT)
    manager.scale("a", "+1")
    # the first event to arrive is job a's, none of a.b's came before it
    msg = await ch.until(lambda m: m["event"] == "gaffer:event")
    assert msg["data"]["name"] == "default.a", msg
    ch.close()


async def test_deleting_a_key_closes_what_it_opened(manager: Manager, api: HttpApp) -> None:
    manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    key = await make_key(api, write=["default"])
    c = Client(api, key=key)
    ch = await c.ws("/channel")
    assert (await ch.sub("EVENTS"))["event"] == "gaffer:subscription_success"
    chunks, done = c.stream("/events")
    await chunks.until(b": connected")
    key_id = key.split(".", 1)[0]
    assert (await Client(api).delete(f"/keys/{key_id}")).status == 200
    assert await ch.recv_raw() is None  # the server closed the channel
    with contextlib.suppress(tornado.httpclient.HTTPClientError):
        await asyncio.wait_for(done, TIMEOUT)  # and cut the stream
    assert (await c.get("/jobs")).status == 403
    assert not api.channels and not api.streams


async def test_hostile_inputs_are_400s_not_500s(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load({"name": "web", **SLEEP})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid = job.pids[0]
    huge = "9" * 5000
    cases: list[tuple[str, str, Any, str]] = [
        ("POST", "/jobs/default", '{"a":' * 100_000, "body"),
        ("GET", f"/streams/{pid}/stdout?offset={huge}", None, "offset"),
        ("GET", f"/streams/{pid}/stdout?feed=longpoll&replay={huge}", None, "replay"),
        ("POST", "/jobs/default/web/signal", {"signal": huge}, "signal"),
        ("POST", "/jobs/default", {"name": "y\ud800", "cmd": "sleep"}, "name"),
        ("POST", "/jobs/default", {"name": "x", "cmd": "sleep", "args": ["\ud800"]}, "args"),
        ("POST", "/jobs/default", {"name": "x\ny", "cmd": "sleep"}, "name"),
        (
            "POST",
            "/jobs/default",
            {"name": "x", "cmd": "sleep", "graceful_timeout": 1e308},
            "graceful_timeout",
        ),
        ("POST", "/jobs/default/web/commit", {"graceful_timeout": 1e308}, "graceful_timeout"),
        ("POST", "/jobs/default/web/commit", {"env": {"A": "b\u0000c"}}, "env"),
    ]
    for method, path, body, field in cases:
        raw = body if isinstance(body, str) else None
        r = await c.request(method, path, body=None if raw else body, raw=raw)
        assert r.status == 400 and field in r.json["error"], (method, path, r)
    # a stream (or last event) id far too big is simply unknown: no 500
    r = await c.get(
        f"/streams/{pid}/stdout?feed=longpoll&timeout=0", headers={"Last-Event-ID": huge}
    )
    assert r.status == 200
    chunks, _ = c.stream("/events", headers={"Last-Event-ID": huge})
    await chunks.until(b": connected")
    c.close()
    assert manager.jobs() == ["default.web"]


async def test_wrong_method_says_which_are_allowed(manager: Manager, api: HttpApp) -> None:
    r = await Client(api).request("PATCH", "/jobs")
    assert r.status == 405 and r.headers["Allow"] == "GET, OPTIONS"


async def test_channel_limits(manager: Manager, api: HttpApp, monkeypatch: Any) -> None:
    from gaffer.http import channel

    monkeypatch.setattr(channel, "MAX_SUBSCRIPTIONS", 3)
    ch = await Client(api, key=await make_key(api, read=["*"])).ws("/channel")
    for i in range(3):
        assert (await ch.sub(f"EVENTS:x{i}"))["event"] == "gaffer:subscription_success"
    r = await ch.sub("EVENTS:x3")
    assert r["event"] == "gaffer:subscription_error" and "at most 3" in r["data"]["reason"]
    r = await ch.sub("EVENTS:" + "y" * 600)
    assert r["event"] == "gaffer:subscription_error" and "longer than" in r["data"]["reason"]
    ch.close()
    # a connection that never authenticates is closed after the deadline
    monkeypatch.setattr(channel, "AUTH_DEADLINE", 0.2)
    host, port = next(a for a in api.addresses if isinstance(a, tuple))
    conn = await asyncio.wait_for(
        tornado.websocket.websocket_connect(f"ws://{host}:{port}/channel"), TIMEOUT
    )
    assert await asyncio.wait_for(conn.read_message(), TIMEOUT) is None
    assert conn.close_code == 1008


async def test_a_flood_of_bad_keys_is_refused_not_queued(
    manager: Manager, api: HttpApp, monkeypatch: Any
) -> None:
    from gaffer.http import base

    good = await make_key(api, read=["*"])
    assert (await Client(api, key=good).get("/jobs")).status == 200  # verified, cached
    monkeypatch.setattr(base, "MAX_KEY_CHECKS", 0)
    r = await Client(api, key="0123456789abcdef.nope").get("/jobs")
    assert r.status == 503 and r.json["errno"] == 503
    # a key already verified costs nothing and still passes
    assert (await Client(api, key=good).get("/jobs")).status == 200


def test_unusable_socket_dir_or_state_dir_fail_at_start(tmp_path: Path) -> None:
    from gaffer.errors import ConfigError
    from gaffer.http.listen import bind_unix

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by others"):
        bind_unix(str(shared / "gafferd.sock"))
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "gafferd"),
            "--unix-socket",
            str(tmp_path / "run" / "s.sock"),
            "--state-dir",
            str(not_a_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "state_dir" in r.stderr


async def test_many_callers_with_one_new_key_share_its_check(
    manager: Manager, api: HttpApp
) -> None:
    key = await make_key(api, read=["*"])  # never used yet: not cached
    clients = [Client(api, key=key) for _ in range(40)]
    replies = await asyncio.gather(*(c.get("/jobs") for c in clients))
    assert [r.status for r in replies] == [200] * 40
    for c in clients:
        c.close()
