"""Findings of the security review of the HTTP layer, each pinned by a test:
escalations that must be refused, revoked keys that must stop working at once,
subscriptions that must not leak other jobs' events."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import tornado.httpclient
from conftest import SLEEP, TIMEOUT
from gaffer.http import HttpApp
from gaffer.manager import Manager
from httpkit import Client, make_key


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


async def test_commit_with_a_new_environment_needs_manage(manager: Manager, api: HttpApp) -> None:
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
