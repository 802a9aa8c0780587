"""Authentication and authorisation of the HTTP API, over real HTTP against real
processes: the permission matrix, key minting, users, secrets at rest, keyless
TCP, TLS (with client certificates) and CORS."""

from __future__ import annotations

import base64
import logging
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
import tornado.httpclient
from conftest import SLEEP, TIMEOUT, next_event
from gaffer import states
from gaffer.errors import ConfigError
from gaffer.events import Subscription
from gaffer.http import HttpApp, HttpSettings
from gaffer.http.keystore import AuthStore
from gaffer.http.settings import TlsSettings
from gaffer.manager import Manager
from httpkit import Client, Response, make_key

JOBS = ("default.web", "default.db", "prod.api")
SESSIONS = ("default", "prod")
RANK = {"read": 0, "write": 1, "manage": 2}

# -- helpers -------------------------------------------------------------------------


def covers(scope: str, job: str) -> bool:
    """The model: an entry is '*', a session, or 'session.job'."""
    return scope in ("*", job.split(".", 1)[0], job)


def allowed(perms: dict[str, list[str]], need: str, job: str) -> bool:
    return any(
        RANK[level] >= RANK[need] and any(covers(s, job) for s in scopes)
        for level, scopes in perms.items()
    )


def jpath(job: str) -> str:
    session, name = job.split(".", 1)
    return f"/jobs/{session}/{name}"


def forbidden(r: Response, what: str = "") -> dict[str, Any]:
    """A 403 in the one error shape; ``what`` must appear in the reason."""
    assert r.status == 403, r
    body: dict[str, Any] = r.json
    assert set(body) == {"error", "errno"} and body["errno"] == 403, body
    assert isinstance(body["error"], str) and what in body["error"], body
    return body


def ok(r: Response, status: int = 200) -> Any:
    assert r.status == status, r
    if r.headers.get("Content-Type", "").startswith("application/json"):
        return r.json
    return r.text


def stop_app(manager: Manager, app: HttpApp) -> Any:
    if app in manager.apps:
        manager.apps.remove(app)
    return app.stop()


def start_app(manager: Manager, settings: HttpSettings, store: AuthStore | None = None) -> HttpApp:
    app = HttpApp(settings, store=store or AuthStore(settings.keys_db, scrypt_n=2**10))
    app.start(manager.loop, manager)
    manager.apps.append(app)
    return app


async def load_jobs(manager: Manager, start: bool = True) -> None:
    for name in JOBS:
        session, job = name.split(".", 1)
        manager.load({"name": job, **SLEEP}, sessionid=session, start=start)
    if start:
        for name in JOBS:
            await manager.wait_running(name, 1, timeout=TIMEOUT)


async def reaped(events: Subscription, pid: int) -> None:
    await next_event(events, lambda e: e.type == "reap" and e.data.get("pid") == pid)


def drain(events: Subscription) -> list[str]:
    out = []
    while (e := events.get_nowait()) is not None:
        out.append(f"{e.type} {e.topic}")
    return out


# -- 1. the permission matrix ----------------------------------------------------------


async def check_listings(manager: Manager, c: Client, perms: dict[str, list[str]]) -> None:
    readable = [j for j in JOBS if allowed(perms, "read", j)]
    assert sorted(ok(await c.get("/jobs"))["jobs"]) == sorted(readable)
    sessions = {j.split(".", 1)[0] for j in readable}
    assert sorted(ok(await c.get("/sessions"))["sessions"]) == sorted(sessions)
    want = sorted(p for j in readable for p in manager.pids(j))
    assert sorted(ok(await c.get("/pids"))["pids"]) == want
    for session in SESSIONS:
        r = await c.get(f"/jobs/{session}")
        mine = [j for j in readable if j.startswith(session + ".")]
        if mine:
            assert ok(r) == {"sessionid": session, "jobs": mine}
        else:
            forbidden(r, session)
    r = await c.get("/metrics")
    if any("*" in scopes for scopes in perms.values()):
        assert r.status == 200 and b"gaffer_" in r.body, r
    else:
        forbidden(r)


async def check_reads(manager: Manager, c: Client, perms: dict[str, list[str]]) -> None:
    for job in JOBS:
        proc = manager.get(job).processes[0]
        p = jpath(job)
        urls = [p, f"{p}/stats", f"{p}/pids", f"{p}/numprocesses", f"{p}/state"]
        urls += [f"/{proc.pid}", f"/{proc.pid}/stats"]
        if not allowed(perms, "read", job):
            for url in urls:
                forbidden(await c.get(url), "read")
            assert (await c.request("HEAD", p)).status == 403
            assert (await c.request("HEAD", f"/{proc.pid}")).status == 403
            continue
        info = ok(await c.get(p))
        assert info["name"] == job and info["processes"] == [proc.pid]
        stats = ok(await c.get(f"{p}/stats"))
        assert stats["name"] == job and [s["pid"] for s in stats["stats"]] == [proc.pid]
        assert ok(await c.get(f"{p}/pids")) == {"pids": [proc.pid]}
        assert ok(await c.get(f"{p}/numprocesses")) == {"numprocesses": 1}
        assert ok(await c.get(f"{p}/state")) == "1"
        pinfo = ok(await c.get(f"/{proc.pid}"))
        assert pinfo["pid"] == proc.pid and pinfo["os_pid"] == proc.os_pid
        assert ok(await c.get(f"/{proc.pid}/stats"))["stats"]["pid"] == proc.pid
        assert (await c.request("HEAD", p)).status == 200


async def check_denied(manager: Manager, c: Client, perms: dict[str, list[str]]) -> None:
    """Every write and manage request the key may not make: 403, and nothing
    happened (no event at all was published, the processes are untouched)."""
    seq = manager.emitter.last_seq
    watched = []
    for job in JOBS:
        j = manager.get(job)
        proc = j.processes[0]
        watched.append(proc)
        p = jpath(job)
        before = manager.pids()
        if not allowed(perms, "write", job):
            forbidden(await c.post(f"{p}/numprocesses", {"scale": "+1"}), "write")
            assert j.numprocesses == 1
            forbidden(await c.post(f"{p}/state", raw=b"0"), "write")
            assert j.active
            forbidden(await c.post(f"{p}/signal", {"signal": "KILL"}), "write")
            forbidden(await c.post(f"{p}/commit", {}), "write")
            forbidden(await c.delete(f"/{proc.pid}"), "write")
            forbidden(await c.post(f"/{proc.pid}/signal", {"signal": "KILL"}), "write")
            assert manager.pids() == before and j.processes == [proc]
        if not allowed(perms, "manage", job):
            session, name = job.split(".", 1)
            if not allowed(perms, "manage", f"{session}.extra"):
                r = await c.post(f"/jobs/{session}", {"name": "extra", **SLEEP})
                forbidden(r, "manage")
                assert f"{session}.extra" not in manager.jobs()
            forbidden(await c.put(p, {"name": name, **SLEEP, "numprocesses": 3}), "manage")
            forbidden(await c.put(f"{p}?wait=true", {"name": name, **SLEEP}), "manage")
            forbidden(await c.delete(f"{p}?wait=true"), "manage")
            forbidden(await c.delete(p), "manage")
            assert job in manager.jobs() and manager.get(job) is j
            assert j.numprocesses == 1 and j.processes == [proc] and j.active
    assert manager.emitter.last_seq == seq, "a refused request published events"
    for proc in watched:
        assert proc.state == states.RUNNING
        assert psutil.Process(proc.os_pid).status() != psutil.STATUS_ZOMBIE


async def check_writes(manager: Manager, c: Client, job: str, events: Subscription) -> None:
    """What a write key may do to ``job`` happens; the job ends as it began
    (one running process)."""
    j = manager.get(job)
    p = jpath(job)
    proc = j.processes[0]
    drain(events)
    assert ok(await c.post(f"{p}/numprocesses", {"scale": "+1"})) == {"numprocesses": 2}
    await manager.wait_running(job, 2, timeout=TIMEOUT)
    extra = j.processes[1]
    assert ok(await c.post(f"{p}/numprocesses", {"scale": "-1"})) == {"numprocesses": 1}
    await reaped(events, extra.pid)
    assert j.processes == [proc]
    # signals: the job's, then one process's (SIGCONT: harmless to sleep)
    ok(await c.post(f"{p}/signal", {"signal": "CONT"}), 202)
    e = await next_event(events, lambda e: e.type == "kill" and "pid" not in e.data)
    assert e.data["name"] == job and e.data["signum"] == signal.SIGCONT
    ok(await c.post(f"/{proc.pid}/signal", {"signal": "SIGCONT"}), 202)
    await next_event(events, lambda e: e.type == "kill" and e.data.get("pid") == proc.pid)
    # a one-off run, then stop it
    pid = ok(await c.post(f"{p}/commit", {}))["pid"]
    assert manager.get_process(pid).name == job
    ok(await c.delete(f"/{pid}"), 202)
    await reaped(events, pid)
    # stop the job, then start it again
    ok(await c.post(f"{p}/state", raw=b"0"), 202)
    await reaped(events, proc.pid)
    assert ok(await c.get(f"{p}/state")) == "0"
    ok(await c.post(f"{p}/state", raw=b"1"), 202)
    await manager.wait_running(job, 1, timeout=TIMEOUT)
    proc = j.processes[0]
    # stop one process: its slot gets a new one
    ok(await c.delete(f"/{proc.pid}"), 202)
    await reaped(events, proc.pid)
    await manager.wait_running(job, 1, timeout=TIMEOUT)
    assert j.processes[0].pid != proc.pid


async def check_manage(manager: Manager, c: Client, job: str, events: Subscription) -> None:
    p = jpath(job)
    session, name = job.split(".", 1)
    drain(events)
    ok(await c.put(f"{p}?wait=true", {"name": name, **SLEEP, "numprocesses": 2}), 201)
    assert manager.get(job).numprocesses == 2
    await manager.wait_running(job, 2, timeout=TIMEOUT)
    extra = manager.get(job).processes[1]
    ok(await c.put(f"{p}?wait=true", {"name": name, **SLEEP}), 201)
    await reaped(events, extra.pid)
    assert ok(await c.delete(f"{p}?wait=true")) == {"ok": True}
    assert job not in manager.jobs()
    r = await c.post(f"/jobs/{session}", {"name": name, **SLEEP})
    assert r.status in (200, 201) and r.json == {"ok": True}, r  # the contract says no status
    await manager.wait_running(job, 1, timeout=TIMEOUT)


@pytest.mark.parametrize("scope", ["*", "default", "default.web"])
async def test_permission_matrix(manager: Manager, api: HttpApp, scope: str) -> None:
    await load_jobs(manager)
    events = manager.subscribe(".")
    cases: list[dict[str, list[str]]] = [{level: [scope]} for level in RANK]
    if scope == "*":
        cases.insert(0, {})  # a key with no rights at all
    for perms in cases:
        c = Client(api, key=await make_key(api, **perms))
        try:
            await check_listings(manager, c, perms)
            await check_reads(manager, c, perms)
            await check_denied(manager, c, perms)
            writable = [j for j in JOBS if allowed(perms, "write", j)]
            if writable:
                await check_writes(manager, c, writable[-1], events)
            if perms and "manage" in perms:
                await check_manage(manager, c, writable[-1], events)
            # the others never noticed
            for job in JOBS:
                if job not in writable:
                    assert len(manager.get(job).processes) == 1
        finally:
            c.close()
    manager.unsubscribe(".", events)


# -- 2. minting keys -------------------------------------------------------------------


async def test_key_minting_and_the_key_tree(manager: Manager, api: HttpApp) -> None:
    await load_jobs(manager, start=False)
    admin = Client(api, key=await make_key(api, admin=True))
    creator_token = await make_key(api, create_key=True, read=["default"])
    creator = Client(api, key=creator_token)
    creator_id = creator_token.split(".")[0]

    async def mint(by: Client, perms: dict[str, Any], **kw: Any) -> Response:
        return await by.post("/keys", {"permissions": perms, **kw})

    # no broader than the minting key, and the reason names the field
    broader: list[tuple[dict[str, Any], str]] = [
        ({"write": ["default.web"]}, "permissions.write"),
        ({"read": ["*"]}, "permissions.read"),
        ({"read": ["prod.api"]}, "permissions.read"),
        ({"admin": True}, "permissions.admin"),
        ({"create_user": True}, "permissions.create_user"),
        ({"manage": ["default"]}, "permissions.manage"),
    ]
    for perms, field in broader:
        forbidden(await mint(creator, perms), field)
    before = {k["key"] for k in ok(await admin.get("/keys"))["keys"]}
    # users cannot pick key values
    r = await mint(creator, {"read": ["default.web"]}, key="chosen")
    assert r.status == 400 and r.json["errno"] == 400 and "key" in r.json["error"], r
    r = await admin.post("/keys", {"key": "chosen", "permissions": {}})
    assert r.status == 400, r
    # nor hang a key under one they do not own
    admin_id = admin.key.split(".")[0]  # type: ignore[union-attr]
    forbidden(await mint(creator, {}, parent=admin_id), "parent")
    assert {k["key"] for k in ok(await admin.get("/keys"))["keys"]} == before

    r = await mint(creator, {"read": ["default.web"]}, label="child")
    body = ok(r)
    child_token, child_id = body["api_key"], body["key"]
    assert r.headers["X-Api-Key"] == child_token and child_token.startswith(child_id + ".")
    child = Client(api, key=child_token)
    assert ok(await child.get("/jobs")) == {"jobs": ["default.web"]}
    forbidden(await child.get("/jobs/default/db"))
    record = ok(await creator.get(f"/keys/{child_id}"))
    assert record["parent"] == creator_id and record["permissions"]["read"] == ["default.web"]
    assert "api_key" not in record
    # the secret is shown once, at minting, and never again
    secret = child_token.split(".", 1)[1]
    for listing in (await admin.get("/keys"), await creator.get(f"/keys/{child_id}")):
        assert listing.status == 200 and secret not in listing.text

    # a second branch, two levels deep
    body = ok(await mint(creator, {"create_key": True, "read": ["default.web"]}))
    mid = Client(api, key=body["api_key"])
    mid_id = body["key"]
    body = ok(await mint(mid, {"read": ["default.web"]}))
    leaf = Client(api, key=body["api_key"])
    leaf_id = body["key"]
    assert ok(await admin.get(f"/keys/{leaf_id}"))["parent"] == mid_id
    forbidden(await mint(child, {}), "create")  # a plain key mints nothing

    # listings: admin sees all, a create_key key its descendants, a plain key nothing
    everything = {k["key"] for k in ok(await admin.get("/keys"))["keys"]}
    assert {admin_id, creator_id, child_id, mid_id, leaf_id} <= everything
    mine = {k["key"] for k in ok(await creator.get("/keys"))["keys"]}
    assert mine == {child_id, mid_id, leaf_id}
    assert {k["key"] for k in ok(await mid.get("/keys"))["keys"]} == {leaf_id}
    forbidden(await child.get("/keys"))

    # a key itself or an ancestor (or an admin) may see or delete it; nobody else
    assert ok(await child.get(f"/keys/{child_id}"))["key"] == child_id
    assert ok(await creator.get(f"/keys/{leaf_id}"))["key"] == leaf_id
    for who, target in [(child, mid_id), (child, leaf_id), (mid, creator_id), (leaf, mid_id)]:
        forbidden(await who.get(f"/keys/{target}"))
        forbidden(await who.delete(f"/keys/{target}"))
    reader = Client(api, key=await make_key(api, read=["*"]))
    forbidden(await reader.get(f"/keys/{child_id}"))
    forbidden(await reader.delete(f"/keys/{child_id}"))
    assert ok(await leaf.get("/jobs")) == {"jobs": ["default.web"]}  # still alive

    # deleting a parent deletes its children: their requests are refused from then on
    deleted = ok(await creator.delete(f"/keys/{mid_id}"))["deleted"]
    assert set(deleted) == {mid_id, leaf_id}
    forbidden(await leaf.get("/jobs"), "unknown API key")
    forbidden(await mid.get("/jobs"), "unknown API key")
    assert (await admin.get(f"/keys/{leaf_id}")).status == 404
    deleted = ok(await admin.delete(f"/keys/{creator_id}"))["deleted"]
    assert set(deleted) == {creator_id, child_id}
    forbidden(await child.get("/jobs"), "unknown API key")
    forbidden(await creator.get("/jobs"), "unknown API key")
    # a key may delete itself
    assert ok(await reader.delete(f"/keys/{reader.key.split('.')[0]}"))["ok"]  # type: ignore[union-attr]
    forbidden(await reader.get("/jobs"))
    for cl in (admin, creator, child, mid, leaf, reader):
        cl.close()


# -- 3. secrets at rest ------------------------------------------------------------------


async def test_secrets_are_hashed_and_persist(manager: Manager, tmp_path: Path) -> None:
    state = tmp_path / "state"
    settings = HttpSettings(
        unix_socket=str(tmp_path / "run" / "a.sock"), bind=("127.0.0.1:0",), state_dir=str(state)
    )
    password = "correct-horse-battery-staple-7"
    app = start_app(manager, settings)
    owner = Client(app)
    token = ok(await owner.post("/keys", {"permissions": {"read": ["*"]}}))["api_key"]
    secret = token.split(".", 1)[1]
    r = await owner.post("/users", {"username": "alice", "password": password, "permissions": {}})
    ok(r)
    assert password not in r.text
    owner.close()
    await stop_app(manager, app)

    db = Path(settings.keys_db)  # type: ignore[arg-type]
    assert db.parent == state
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for f in state.iterdir():  # the database and any journal left beside it
        data = f.read_bytes()
        for s in (secret, password):
            assert s.encode() not in data, f"{s!r} in {f.name}"
    data = db.read_bytes()
    assert b"scrypt$" in data  # the hashes are there instead

    # a new app on the same state dir knows the key and the user
    app2 = start_app(manager, settings)
    c = Client(app2, key=token)
    assert ok(await c.get("/jobs")) == {"jobs": []}
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    anon = Client(app2, tcp=True)
    assert "api_key" in ok(await anon.get("/auth", headers={"Authorization": f"Basic {basic}"}))
    forbidden(await Client(app2, key=token[:-2] + "xx").get("/jobs"), "unknown API key")
    c.close()
    anon.close()


# -- 4. users --------------------------------------------------------------------------


class Recorder:
    """Wraps clients so every response of the test can be searched afterwards."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def client(self, app: HttpApp, key: str | None = None, tcp: bool = False) -> Client:
        c = Client(app, key=key, tcp=tcp)
        request = c.request

        async def recording(*a: Any, **kw: Any) -> Response:
            r = await request(*a, **kw)
            self.seen.append(r.text)
            self.seen.extend(f"{k}: {v}" for k, v in r.headers.get_all())
            return r

        c.request = recording  # type: ignore[method-assign]
        return c


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_users(manager: Manager, api: HttpApp) -> None:
    await load_jobs(manager, start=False)
    rec = Recorder()
    admin = rec.client(api, await make_key(api, admin=True))
    manager_of_users = rec.client(api, await make_key(api, create_user=True, read=["default"]))
    reader = rec.client(api, await make_key(api, read=["*"]))
    anon = rec.client(api, tcp=True)
    passwords = ["bob-secret-pw-1", "dave-secret-pw-2", "carol-pw-3", "root-pw-4", "new-pw-5"]
    bob_pw, dave_pw, carol_pw, root_pw, new_pw = passwords

    # who may create users, and with what
    bob = {"username": "bob", "password": bob_pw, "permissions": {"read": ["default.web"]}}
    forbidden(await reader.post("/users", bob), "users")
    user = ok(await admin.post("/users", bob))["user"]
    assert user["username"] == "bob" and user["user_type"] == 1 and user["key"]
    keys = len(ok(await admin.get("/keys"))["keys"])
    r = await admin.post("/users", {**bob, "password": "other"})
    assert r.status == 409 and r.json["errno"] == 409, r
    assert len(ok(await admin.get("/keys"))["keys"]) == keys  # no stray key left behind
    carol = {"username": "carol", "password": carol_pw, "permissions": {"read": ["default.db"]}}
    forbidden(await manager_of_users.post("/users", {**carol, "user_type": 0}), "user_type")
    forbidden(
        await manager_of_users.post("/users", {**carol, "permissions": {"write": ["*"]}}),
        "permissions.write",
    )
    ok(await manager_of_users.post("/users", carol))
    root = {"username": "root", "password": root_pw, "user_type": 0}
    assert ok(await admin.post("/users", root))["user"]["user_type"] == 0
    dave = {
        "username": "dave",
        "password": dave_pw,
        "permissions": {"create_user": True, "read": ["prod"]},
    }
    dave_key = ok(await admin.post("/users", dave))["user"]["key"]

    # GET /auth: HTTP Basic → a key with the user's rights
    r = await anon.get("/auth", headers=basic("bob", bob_pw))
    token = ok(r)["api_key"]
    assert r.headers["X-Api-Key"] == token
    bob_c = rec.client(api, token)
    assert ok(await bob_c.get("/jobs")) == {"jobs": ["default.web"]}
    forbidden(await bob_c.get("/jobs/default/db"))
    forbidden(await bob_c.post("/jobs/default/web/state", raw=b"1"), "write")
    for who, pw in [("bob", "wrong"), ("bob", ""), ("nobody", bob_pw), ("bob", bob_pw + "x")]:
        r = await anon.get("/auth", headers=basic(who, pw))
        assert r.status == 401 and r.json["errno"] == 401, r
    r = await anon.get("/auth")
    assert r.status == 401 and "Basic" in r.headers.get("WWW-Authenticate", ""), r
    root_c = rec.client(api, ok(await anon.get("/auth", headers=basic("root", root_pw)))["api_key"])
    assert ok(await root_c.get("/users"))["users"]

    # a user cannot change its own account, even with create_user
    dave_c = rec.client(api, ok(await anon.get("/auth", headers=basic("dave", dave_pw)))["api_key"])
    reader_id = reader.key.split(".")[0]  # type: ignore[union-attr]
    for c, name in [(dave_c, "dave"), (bob_c, "bob")]:
        forbidden(await c.put(f"/users/{name}/key", {"key": reader_id}))
        forbidden(await c.put(f"/users/{name}/password", {"password": new_pw}))
        forbidden(await c.delete(f"/users/{name}"))
        forbidden(await c.put(f"/users/{name}", {"user_type": 0}))
    assert ok(await admin.get("/users/dave"))["key"] == dave_key
    ok(await anon.get("/auth", headers=basic("dave", dave_pw)))  # password unchanged
    assert (await anon.get("/auth", headers=basic("dave", new_pw))).status == 401
    # ...nor take over a user with rights it lacks (carol reads default.db)
    forbidden(await dave_c.put("/users/carol/password", {"password": new_pw}), "default.db")
    assert (await anon.get("/auth", headers=basic("carol", new_pw))).status == 401
    forbidden(await dave_c.put("/users/carol/key", {"key": reader_id}), "permissions.read")

    # an admin sets a user's key to an existing key only
    for bad in ("chosen", "0123456789abcdef", "chosen.value"):
        r = await admin.put("/users/bob/key", {"key": bad})
        assert r.status == 404 and r.json["errno"] == 404, r
    ok(await admin.put("/users/bob/key", {"key": reader_id}))
    assert ok(await admin.get("/users/bob"))["key"] == reader_id
    bob2 = rec.client(api, ok(await anon.get("/auth", headers=basic("bob", bob_pw)))["api_key"])
    assert sorted(ok(await bob2.get("/jobs"))["jobs"]) == sorted(JOBS)

    # GET /users: admins only
    users = ok(await admin.get("/users"))["users"]
    assert {u["username"] for u in users} == {"bob", "carol", "root", "dave"}
    for u in users:
        assert "password" not in u
    forbidden(await manager_of_users.get("/users"))
    forbidden(await bob2.get("/users"))
    forbidden(await reader.get("/users"))
    assert ok(await manager_of_users.get("/users/bob"))["username"] == "bob"

    # and deleting: not a user broader than the caller, nor itself (above); an admin may
    forbidden(await dave_c.delete("/users/carol"), "default.db")
    ok(await admin.delete("/users/carol"))
    assert (await admin.get("/users/carol")).status == 404

    text = "\n".join(rec.seen)
    assert text and "user" in text
    for pw in passwords:
        assert pw not in text, f"a password was echoed: {pw}"
    for c in (admin, manager_of_users, reader, anon, bob_c, root_c, dave_c, bob2):
        c.close()


# -- 5. keyless TCP --------------------------------------------------------------------


async def test_require_key_false_over_tcp_warns_and_serves(
    manager: Manager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = HttpSettings(unix_socket=None, bind=("127.0.0.1:0",), require_key=False)
    with caplog.at_level(logging.WARNING, logger="gaffer.http"):
        app = start_app(manager, settings)
    warnings = [
        r for r in caplog.records if r.name == "gaffer.http" and r.levelno >= logging.WARNING
    ]
    assert any("NOT required" in r.getMessage() for r in warnings), caplog.text
    assert "127.0.0.1:0" in caplog.text
    manager.load({"name": "web", **SLEEP}, start=False)
    c = Client(app, tcp=True)
    assert ok(await c.get("/jobs")) == {"jobs": ["default.web"]}
    assert ok(await c.get("/jobs/default/web/numprocesses")) == {"numprocesses": 1}
    # a key that is given is still checked
    forbidden(await Client(app, key="nope.nope").get("/jobs"), "unknown API key")
    c.close()


async def test_require_key_true_does_not_warn(
    manager: Manager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gaffer.http"):
        app = start_app(manager, HttpSettings(unix_socket=None, bind=("127.0.0.1:0",)))
    assert "NOT required" not in caplog.text
    r = await Client(app, tcp=True).get("/jobs")
    assert r.status == 401 and r.json == {"error": r.json["error"], "errno": 401}


# -- 6. TLS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all
    signed by the CA; made with the openssl command."""
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=30)

    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=gaffer-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, subj, ext in [
        ("server", "/CN=127.0.0.1", ["-addext", "subjectAltName=IP:127.0.0.1"]),
        ("client", "/CN=gaffer-test-client", []),
    ]:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj, *ext)
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "2" if name == "server" else "3", "-days", "1",
            "-copy_extensions", "copy", "-out", f"{name}.pem",
        )  # fmt: skip
    # self-signed, unknown to the server
    openssl("req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.pem", "-subj", "/CN=rogue")
    return {n: str(d / n) for n in os.listdir(d)}


async def fetch(url: str, **kw: Any) -> tuple[int, bytes | None, BaseException | None]:
    """(status, body, error); a connection or TLS failure is (599, None, error)."""
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        r = await http.fetch(url, raise_error=False, request_timeout=TIMEOUT, **kw)
    except (OSError, tornado.httpclient.HTTPClientError) as e:
        return 599, None, e
    finally:
        http.close()
    return r.code, r.body, r.error


def tcp_address(app: HttpApp) -> str:
    host, port = next(a for a in app.addresses if isinstance(a, tuple))
    return f"{host}:{port}"


async def test_tls(manager: Manager, certs: dict[str, str]) -> None:
    tls = TlsSettings(certs["server.pem"], certs["server.key"])
    app = start_app(manager, HttpSettings(unix_socket=None, bind=("127.0.0.1:0",), tls=tls))
    addr = tcp_address(app)
    key = await make_key(app, read=["*"])
    manager.load({"name": "web", **SLEEP}, start=False)
    ca = certs["ca.pem"]
    code, body, err = await fetch(f"https://{addr}/jobs", ca_certs=ca, headers={"X-Api-Key": key})
    assert (code, body) == (200, b'{"jobs":["default.web"]}'), err
    code, _, err = await fetch(f"https://{addr}/jobs", ca_certs=ca)
    assert code == 401, err  # TLS is no substitute for a key
    # plain HTTP to the TLS port, and HTTPS with a CA the client does not trust
    code, body, err = await fetch(f"http://{addr}/ping")
    assert code == 599 and body is None, (code, body)
    code, body, err = await fetch(f"https://{addr}/ping")
    assert code == 599 and "CERTIFICATE_VERIFY_FAILED" in str(err), (code, body, err)

    # with client_ca, a client certificate signed by the CA is required
    tls = TlsSettings(certs["server.pem"], certs["server.key"], client_ca=ca)
    app2 = start_app(manager, HttpSettings(unix_socket=None, bind=("127.0.0.1:0",), tls=tls))
    url = f"https://{tcp_address(app2)}/ping"
    code, body, err = await fetch(url, ca_certs=ca)
    assert code == 599 and body is None, (code, body)
    # a client certificate the CA did not sign
    code, body, err = await fetch(
        url, ca_certs=ca, client_cert=certs["rogue.pem"], client_key=certs["rogue.key"]
    )
    assert code == 599 and body is None, (code, body)
    code, body, err = await fetch(
        url, ca_certs=ca, client_cert=certs["client.pem"], client_key=certs["client.key"]
    )
    assert (code, body) == (200, b"OK"), err


# -- 7. CORS ---------------------------------------------------------------------------

UI = "https://ui.example"
EVIL = "https://evil.example"


def no_cors(r: Response) -> None:
    for h in ("Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"):
        assert h not in r.headers, (h, r.headers)
    assert "Access-Control-Allow-Methods" not in r.headers


async def test_cors_is_off_by_default(manager: Manager, api: HttpApp) -> None:
    key = await make_key(api, read=["*"])
    owner, tcp, keyed = Client(api), Client(api, tcp=True), Client(api, key=key)
    for origin in (UI, EVIL, "null"):
        h = {"Origin": origin}
        for c, path, status in [
            (owner, "/jobs", 200),
            (keyed, "/jobs", 200),
            (tcp, "/ping", 200),
            (tcp, "/jobs", 401),
            (keyed, "/nowhere", 404),
            (keyed, "/keys", 403),
        ]:
            r = await c.get(path, headers=h)
            assert r.status == status, r
            no_cors(r)
        r = await tcp.request(
            "OPTIONS", "/jobs", headers={**h, "Access-Control-Request-Method": "DELETE"}
        )
        assert r.status == 204 and "GET" in r.headers["Allow"], r
        no_cors(r)
    for c in (owner, tcp, keyed):
        c.close()


async def test_cors_allowed_origins(manager: Manager, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cors_origins"):
        HttpSettings(cors_origins=("*",))
    with pytest.raises(ConfigError, match="cors_origins"):
        HttpSettings(cors_origins=(UI, "*"))
    settings = HttpSettings(unix_socket=None, bind=("127.0.0.1:0",), cors_origins=(UI,))
    app = start_app(manager, settings)
    key = await make_key(app, read=["*"])
    tcp, keyed = Client(app, tcp=True), Client(app, key=key)
    for c, path, status in [(tcp, "/ping", 200), (keyed, "/jobs", 200), (tcp, "/jobs", 401)]:
        r = await c.get(path, headers={"Origin": UI})
        assert r.status == status, r
        assert r.headers["Access-Control-Allow-Origin"] == UI
        assert "Origin" in r.headers.get_list("Vary") or "Origin" in r.headers.get("Vary", "")
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        for other in (EVIL, UI + ".evil.example", "http://ui.example", "null"):
            no_cors(await c.get(path, headers={"Origin": other}))
    # the preflight
    pre = {"Origin": UI, "Access-Control-Request-Method": "POST"}
    r = await tcp.request("OPTIONS", "/jobs/default/web/numprocesses", headers=pre)
    assert r.status == 204, r
    assert r.headers["Access-Control-Allow-Origin"] == UI
    methods = {m.strip() for m in r.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST"} <= methods and "DELETE" not in methods
    assert "X-Api-Key" in r.headers["Access-Control-Allow-Headers"]
    r = await tcp.request("OPTIONS", "/jobs", headers={**pre, "Origin": EVIL})
    assert r.status == 204, r
    no_cors(r)
    tcp.close()
    keyed.close()
