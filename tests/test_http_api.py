"""The HTTP API against a manager running real processes: the 0.5 endpoints,
their errors, the unix socket, curl, TLS, CORS, metrics, SSE and output streams."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

from conftest import PYTHON, SLEEP, TIMEOUT, next_event
from gaffer.http import HttpApp
from gaffer.manager import Manager
from httpkit import Client, make_key, start_app


async def curl(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-m",
        "10",
        "-w",
        "\n%{http_code}",
        *args,
        stdout=subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


async def test_unix_socket_is_private_and_speaks_to_curl(manager: Manager, api: HttpApp) -> None:
    path = next(a for a in api.addresses if isinstance(a, str))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    code, body = await curl("--unix-socket", path, "http://gafferd/ping")
    assert (code, body) == (200, "OK")
    manager.load({"name": "web", **SLEEP})
    code, body = await curl("--unix-socket", path, "http://gafferd/jobs")
    assert code == 200 and '"default.web"' in body


async def test_tcp_needs_a_key(manager: Manager, api: HttpApp) -> None:
    host, port = next(a for a in api.addresses if isinstance(a, tuple))
    code, body = await curl(f"http://{host}:{port}/jobs")
    assert code == 401 and '"errno":401' in body
    code, body = await curl("-H", "X-Api-Key: nope.nope", f"http://{host}:{port}/jobs")
    assert code == 403
    key = await make_key(api, read=["*"])
    code, body = await curl("-H", f"X-Api-Key: {key}", f"http://{host}:{port}/jobs")
    assert (code, body) == (200, '{"jobs":[]}')
    # the public routes answer anyone
    code, body = await curl(f"http://{host}:{port}/ping")
    assert (code, body) == (200, "OK")


WEB = {"name": "web", **SLEEP, "numprocesses": 2}


async def test_job_endpoints_follow_the_wire_api(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    r = await c.post("/jobs/default", WEB)
    assert (r.status, r.json) == (200, {"ok": True})
    job = await manager.wait_running("web", timeout=TIMEOUT)
    assert (await c.post("/jobs/default", WEB)).status == 409
    assert (await c.get("/jobs")).json == {"jobs": ["default.web"]}
    assert (await c.get("/jobs/default")).json == {"sessionid": "default", "jobs": ["default.web"]}
    assert (await c.get("/jobs/nope")).status == 404
    assert (await c.get("/sessions")).json == {"sessions": ["default"]}
    assert (await c.request("HEAD", "/jobs/default/web")).status == 200
    assert (await c.request("HEAD", "/jobs/default/nope")).status == 404

    info = (await c.get("/jobs/default/web")).json
    assert {
        "name",
        "active",
        "running",
        "running_out",
        "max_processes",
        "processes",
        "config",
    } <= set(info)
    assert info["name"] == "default.web" and info["running"] == 2 and info["active"] is True
    assert info["processes"] == job.pids and info["config"]["cmd"] == "sleep"

    stats = (await c.get("/jobs/default/web/stats")).json
    assert {"name", "stats", "mem", "max_mem", "min_mem", "cpu", "max_cpu", "min_cpu"} <= set(stats)
    assert sorted(s["pid"] for s in stats["stats"]) == job.pids
    assert all(s["os_pid"] for s in stats["stats"])

    assert (await c.get("/jobs/default/web/numprocesses")).json == {"numprocesses": 2}
    assert (await c.post("/jobs/default/web/numprocesses", {"scale": "+1"})).json == {
        "numprocesses": 3
    }
    await manager.wait_running("web", timeout=TIMEOUT)
    assert (await c.post("/jobs/default/web/numprocesses", {"scale": "=1"})).json == {
        "numprocesses": 1
    }
    await manager.wait_for(lambda: len(job.processes) == 1, TIMEOUT)
    assert (await c.get("/jobs/default/web/pids")).json == {"pids": job.pids}

    r = await c.get("/jobs/default/web/state")
    assert (r.status, r.text) == (200, "1")
    assert (await c.post("/jobs/default/web/state", raw="0")).status == 202
    await manager.wait_stopped("web", timeout=TIMEOUT)
    assert (await c.get("/jobs/default/web/state")).text == "0"
    assert (await c.post("/jobs/default/web/state", raw="1")).status == 202
    await manager.wait_running("web", timeout=TIMEOUT)
    before = job.pids
    assert (await c.post("/jobs/default/web/state", raw="2")).status == 202
    await manager.wait_for(lambda: job.pids != before and job.running == 1, TIMEOUT)

    # a one-off run, never restarted
    r = await c.post("/jobs/default/web/commit", {"env": {"RUN": "1"}})
    pid = r.json["pid"]
    proc = (await c.get(f"/{pid}")).json
    assert proc["commited"] is True and proc["env"]["RUN"] == "1"

    # an update is rolled out; the new config shows in info
    r = await c.put("/jobs/default/web", {"cmd": "sleep", "args": ["3601"], "startsecs": 0})
    assert (r.status, r.json) == (201, {"ok": True})
    await manager.wait_for(lambda: [p.argv[1:] for p in job.processes] == [["3601"]], TIMEOUT)
    assert (await c.get("/jobs/default/web")).json["config"]["args"] == ["3601"]

    assert (await c.delete("/jobs/default/web")).json == {"ok": True}
    assert (await c.get("/jobs/default/web")).status == 404
    await manager.wait_for(lambda: not manager.pids(), TIMEOUT)


async def test_job_signal_reaches_every_process(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load(WEB)
    await manager.wait_running("web", timeout=TIMEOUT)
    sub = manager.subscribe("job.default.web.exit")
    pids = set(job.pids)
    r = await c.post("/jobs/default/web/signal", {"signal": "KILL"})
    assert (r.status, r.json) == (202, {"ok": True})
    exits = [await next_event(sub), await next_event(sub)]
    assert {e.data["pid"] for e in exits} == pids
    assert [e.data["term_signal"] for e in exits] == [9, 9]
    manager.unsubscribe("job.default.web.exit", sub)


async def test_process_endpoints(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load(WEB)
    await manager.wait_running("web", timeout=TIMEOUT)
    pid = job.pids[0]
    assert (await c.get("/pids")).json == {"pids": job.pids}
    assert (await c.request("HEAD", f"/{pid}")).status == 200
    assert (await c.request("HEAD", "/999999")).status == 404
    info = (await c.get(f"/{pid}")).json
    wanted = {
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
    }
    assert wanted <= set(info)
    assert info["pid"] == pid and info["name"] == "default.web" and info["commited"] is False
    stats = (await c.get(f"/{pid}/stats")).json["stats"]
    assert stats["pid"] == pid and stats["os_pid"] == info["os_pid"] and stats["rss"] > 0

    sub = manager.subscribe(f"proc.{pid}.exit")
    r = await c.post(f"/{pid}/signal", {"signal": "SIGTERM"})
    assert (r.status, r.json) == (202, {"ok": True})
    assert (await next_event(sub)).data["term_signal"] == signal.SIGTERM
    manager.unsubscribe(f"proc.{pid}.exit", sub)
    await manager.wait_for(lambda: job.running == 2 and pid not in job.pids, TIMEOUT)

    victim = job.pids[0]
    r = await c.delete(f"/{victim}")
    assert (r.status, r.json) == (202, {"ok": True})
    await manager.wait_for(lambda: victim not in job.pids and job.running == 2, TIMEOUT)
    assert (await c.get(f"/{victim}")).status == 404


async def test_signals_by_name_and_number(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load({**WEB, "numprocesses": 4})
    await manager.wait_running("web", timeout=TIMEOUT)
    sub = manager.subscribe("job.default.web.exit")
    for pid, spelling in zip(list(job.pids), ("TERM", "SIGINT", 9, "1"), strict=True):
        assert (await c.post(f"/{pid}/signal", {"signal": spelling})).status == 202
        event = await next_event(sub, lambda e, pid=pid: e.data["pid"] == pid)
        assert event.data["term_signal"] == {"TERM": 15, "SIGINT": 2, 9: 9, "1": 1}[spelling]
    manager.unsubscribe("job.default.web.exit", sub)


async def test_bad_input_is_a_400_naming_the_field_and_touches_nothing(
    manager: Manager, api: HttpApp
) -> None:
    c = Client(api)
    job = manager.load(WEB)
    await manager.wait_running("web", timeout=TIMEOUT)
    before = list(job.pids)
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/jobs/default", "{not json", 400, "body: malformed JSON"),
        ("POST", "/jobs/default", "[1, 2]", 400, "body: expected a JSON object"),
        ("POST", "/jobs/default", {"name": "x"}, 400, "cmd"),
        (
            "POST",
            "/jobs/default",
            {"name": "x", "cmd": "sleep", "numprocesses": "many"},
            400,
            "numprocesses",
        ),
        ("POST", "/jobs/default", {"name": "x", "cmd": "sleep", "colour": 1}, 400, "colour"),
        ("POST", "/jobs/default/web/numprocesses", {}, 400, "scale"),
        ("POST", "/jobs/default/web/numprocesses", {"scale": "lots"}, 400, "scale"),
        ("POST", "/jobs/default/web/signal", {"signal": "SIGFOO"}, 400, "signal"),
        ("POST", f"/{before[0]}/signal", {"signal": 99999}, 400, "signal"),
        ("POST", "/jobs/default/web/state", "7", 400, "body"),
        ("POST", "/jobs/default/web/commit", {"env": {"A": 1}}, 400, "env"),
        ("PUT", "/jobs/default/web", {"name": "other", "cmd": "sleep"}, 400, "name"),
        ("GET", "/jobs/nosuch", None, 404, "nosuch"),
        ("GET", "/jobs/default/nosuch", None, 404, "default.nosuch"),
        ("GET", "/424242", None, 404, "424242"),
        ("GET", "/no/such/path", None, 404, "/no/such/path"),
        ("DELETE", "/jobs", None, 405, "DELETE"),
        ("PATCH", "/jobs/default/web", None, 405, "PATCH"),
        ("POST", "/jobs/default", WEB, 409, "already exists"),
    ]
    for method, path, body, status, needle in cases:
        raw = body if isinstance(body, str) else None
        r = await c.request(method, path, body=None if raw is not None else body, raw=raw)
        assert r.status == status, (method, path, r)
        assert r.json["errno"] == status and needle in r.json["error"], (method, path, r.json)
    big = b'{"name": "' + b"x" * (api.settings.max_body_size + 10) + b'"}'
    r = await c.request("POST", "/jobs/default", raw=big)
    assert r.status == 413 and r.json == {"error": r.json["error"], "errno": 413}
    assert job.pids == before and all(p.alive for p in job.processes)
    assert manager.jobs() == ["default.web"]


async def test_options_answers_with_allowed_methods(manager: Manager, api: HttpApp) -> None:
    r = await Client(api).request("OPTIONS", "/jobs/default/web")
    assert r.status == 204
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}
    # no CORS unless the config lists origins
    r = await Client(api).request("OPTIONS", "/jobs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


async def test_job_info_keeps_a_restart_history(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load({**WEB, "numprocesses": 1})
    await manager.wait_running("web", timeout=TIMEOUT)
    pid = job.pids[0]
    await c.post(f"/{pid}/signal", {"signal": "KILL"})
    await manager.wait_for(lambda: job.running == 1 and pid not in job.pids, TIMEOUT)
    info = (await c.get("/jobs/default/web")).json
    assert info["restarts"] == 1
    (entry,) = info["history"]
    assert entry["pid"] == pid and entry["term_signal"] == 9 and entry["reason"] == "killed"
    assert {"time", "exit_status", "uptime"} <= set(entry)
    assert info["exits_by_reason"] == {"killed": 1}


async def test_metrics_in_prometheus_format(manager: Manager, api: HttpApp) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    manager.load(WEB)
    await manager.wait_running("web", timeout=TIMEOUT)
    r = await Client(api).get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    (sample,) = families["gaffer_job_processes"].samples
    assert sample.labels == {"job": "default.web"} and sample.value == 2
    assert families["gaffer_daemon_channel_clients"].samples[0].value == 0
    assert len(families["gaffer_process_memory_rss_bytes"].samples) == 2
    # over TCP, a key without read on everything may not scrape
    key = await make_key(api, read=["default.web"])
    assert (await Client(api, key=key).get("/metrics")).status == 403


ECHO = {
    "name": "echo",
    "cmd": "sh",
    "args": ["-c", "echo one; exec cat"],
    "redirect_input": True,
    "startsecs": 0,
}


async def test_output_stream_continuous(manager: Manager, api: HttpApp) -> None:
    job = manager.load(ECHO)
    await manager.wait_running("echo", timeout=TIMEOUT)
    pid = job.pids[0]
    await manager.wait_for(lambda: manager.get_process(pid).tails["stdout"].total >= 4, TIMEOUT)
    chunks, done = Client(api).stream(f"/streams/{pid}/stdout")
    await chunks.until(b"one\n")  # the replay
    manager.send(pid, "two\n")
    assert (await chunks.until(b"two\n")) == b"one\ntwo\n"
    await manager.stop_process(pid)  # the stream ends with the process's output
    r = await asyncio.wait_for(done, TIMEOUT)
    assert r.code == 200 and r.headers["Content-Type"] == "application/octet-stream"
    assert chunks.data == b"one\ntwo\n"


async def test_output_stream_longpoll_and_offsets(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load(ECHO)
    await manager.wait_running("echo", timeout=TIMEOUT)
    pid = job.pids[0]
    await manager.wait_for(lambda: manager.get_process(pid).tails["stdout"].total >= 4, TIMEOUT)
    r = await c.get(f"/streams/{pid}/stdout?feed=longpoll&offset=0")
    assert (r.status, r.body, r.headers["X-Gaffer-Offset"]) == (200, b"one\n", "4")
    # Nothing new yet: the request waits for the next output. (Whether "two"
    # arrives before or after the request is parked, the answer is the same.)
    pending = asyncio.ensure_future(c.get(f"/streams/{pid}/stdout?feed=longpoll&offset=4"))
    manager.send(pid, "two\n")
    r = await asyncio.wait_for(pending, TIMEOUT)
    assert (r.body, r.headers["X-Gaffer-Offset"], r.headers["X-Gaffer-Start"]) == (
        b"two\n",
        "8",
        "4",
    )
    # a timeout with nothing new is an empty answer at the same offset
    r = await c.get(f"/streams/{pid}/stdout?feed=longpoll&offset=8&timeout=0")
    assert (r.status, r.body, r.headers["X-Gaffer-Offset"]) == (200, b"", "8")
    assert (await c.get(f"/streams/{pid}/nosuch")).status == 404
    assert (await c.get(f"/streams/{pid}/stdout?feed=carrier-pigeon")).status == 400


async def test_output_stream_as_server_sent_events(manager: Manager, api: HttpApp) -> None:
    job = manager.load(ECHO)
    await manager.wait_running("echo", timeout=TIMEOUT)
    pid = job.pids[0]
    await manager.wait_for(lambda: manager.get_process(pid).tails["stdout"].total >= 4, TIMEOUT)
    chunks, done = Client(api).stream(f"/streams/{pid}/stdout?feed=eventsource")
    await chunks.until(b"event: output")
    manager.send(pid, "two\n")
    await chunks.until(b"id: 8\n")
    events = parse_sse(chunks.data)
    assert [(e["event"], e["id"]) for e in events] == [("output", "4"), ("output", "8")]
    assert [json.loads(e["data"])["data"] for e in events] == ["one\n", "two\n"]
    # resuming from an event id replays only what came after it
    again, done2 = Client(api).stream(
        f"/streams/{pid}/stdout?feed=eventsource", headers={"Last-Event-ID": "4"}
    )
    await again.until(b"id: 8\n")
    assert [json.loads(e["data"])["data"] for e in parse_sse(again.data)] == ["two\n"]
    await manager.stop_process(pid)
    await asyncio.wait_for(asyncio.gather(done, done2), TIMEOUT)
    assert parse_sse(chunks.data)[-1]["event"] == "eof"


def parse_sse(data: bytes) -> list[dict[str, str]]:
    out = []
    for block in data.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if fields:
            out.append(fields)
    return out


async def test_events_as_sse_resume_from_last_event_id(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    chunks, _ = c.stream("/events?topic=job.default.web")
    await chunks.until(b": connected")
    manager.load({**WEB, "numprocesses": 1})
    await manager.wait_running("web", timeout=TIMEOUT)
    await chunks.until(b"event: spawn")
    first = parse_sse(chunks.data)[0]
    assert first["event"] == "load" and json.loads(first["data"])["name"] == "default.web"
    # the client goes away; more happens; it comes back with the last id it saw
    c.close()
    manager.scale("web", "=2")
    await manager.wait_running("web", timeout=TIMEOUT)
    c2 = Client(api)
    again, _ = c2.stream("/events?topic=job.default.web", headers={"Last-Event-ID": first["id"]})
    await again.until(b"event: spawn")
    replayed = parse_sse(again.data)
    seqs = [int(e["id"]) for e in replayed]
    assert seqs == sorted(seqs) and seqs[0] > int(first["id"])
    assert sum(e["event"] == "spawn" for e in replayed) == 2, replayed  # both spawns, once each
    c2.close()


async def test_sse_says_when_the_replay_no_longer_reaches_back(
    manager: Manager, tmp_path: Path
) -> None:
    app = start_app(manager, tmp_path, replay_size=3)
    manager.load({**WEB, "numprocesses": 1})
    await manager.wait_running("web", timeout=TIMEOUT)
    manager.scale("web", "=3")
    await manager.wait_running("web", timeout=TIMEOUT)
    c = Client(app)
    chunks, _ = c.stream("/events", headers={"Last-Event-ID": "1"})
    await chunks.until(b"event: gaffer:gap")
    gap = parse_sse(chunks.data)[0]
    assert gap["event"] == "gaffer:gap"
    assert json.loads(gap["data"])["last_event_id"] == 1
    c.close()


async def test_shutdown_ends_open_streams_and_removes_the_socket(
    manager: Manager, api: HttpApp
) -> None:
    path = next(a for a in api.addresses if isinstance(a, str))
    c = Client(api)
    chunks, done = c.stream("/events")
    await chunks.until(b": connected")
    await asyncio.wait_for(manager.astop(), TIMEOUT)
    r = await asyncio.wait_for(done, TIMEOUT)  # the server ended the response
    assert r.code == 200
    assert not os.path.exists(path)


async def test_welcome_and_version(manager: Manager, api: HttpApp) -> None:
    from gaffer import __version__

    c = Client(api)
    assert (await c.get("/")).json == {"welcome": "gaffer", "version": __version__}
    assert (await c.get("/version")).json == {"name": "gaffer", "version": __version__}
    # public: no key needed over TCP either
    host, port = next(a for a in api.addresses if isinstance(a, tuple))
    code, body = await curl(f"http://{host}:{port}/version")
    assert code == 200 and json.loads(body)["name"] == "gaffer"


async def test_websocket_routes_answer_options(manager: Manager, api: HttpApp) -> None:
    for path in ("/channel", "/channel/websocket"):
        r = await Client(api).request("OPTIONS", path)
        assert (r.status, r.headers["Allow"]) == (204, "GET, OPTIONS")


async def test_status_is_one_request_for_a_status_table(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    job = manager.load({**WEB, "numprocesses": 2})
    manager.load({"name": "idle", **SLEEP, "numprocesses": 0}, sessionid="other")
    await manager.wait_running("web", timeout=TIMEOUT)
    pid = job.pids[0]
    await c.post(f"/{pid}/signal", {"signal": "KILL"})
    await manager.wait_for(lambda: job.running == 2 and pid not in job.pids, TIMEOUT)
    body = (await c.get("/status")).json
    assert [j["name"] for j in body["jobs"]] == ["default.web", "other.idle"]
    web = body["jobs"][0]
    assert (web["active"], web["numprocesses"], web["running"], web["restarts"]) == (True, 2, 2, 1)
    rows = web["processes"]
    assert [r["index"] for r in rows] == [0, 1]
    assert sorted(r["restarts"] for r in rows) == [0, 1]  # the killed slot counts its restart
    assert {r["os_pid"] for r in rows} == {manager.get_process(p).os_pid for p in job.pids}
    assert all(r["rss"] > 0 and r["cpu"] is not None for r in rows)
    # filtered by session or job, and without the psutil figures
    only = (await c.get("/status?name=other&stats=0")).json["jobs"]
    assert [j["name"] for j in only] == ["other.idle"] and only[0]["processes"] == []
    lean = (await c.get("/status?name=default.web&stats=0")).json["jobs"][0]["processes"]
    assert "rss" not in lean[0] and lean[0]["state"] == "running"
    r = await c.get("/status?stats=maybe")
    assert r.status == 400 and "stats" in r.json["error"]


async def test_jobs_and_status_filter_by_tag_and_carry_the_metadata(
    manager: Manager, api: HttpApp
) -> None:
    c = Client(api)
    idle = {**SLEEP, "numprocesses": 0}  # no process needed to be listed
    meta = {"description": "the shop", "tags": ["web", "shop"], "version": "2.1"}
    assert (await c.post("/jobs/default", {"name": "shop", **idle, **meta})).status == 200
    manager.load({"name": "api", **idle, "tags": ["web"]}, sessionid="other")
    manager.load({"name": "batch", **idle, "tags": ["nightly"]})
    manager.load({"name": "plain", **idle})

    async def names(path: str) -> list[str]:
        r = await c.get(path)
        assert r.status == 200, r.json
        body = r.json["jobs"]
        return [j if isinstance(j, str) else j["name"] for j in body]

    assert await names("/jobs?tag=web") == ["default.shop", "other.api"]
    assert await names("/jobs?tag=nightly&tag=shop") == ["default.shop", "default.batch"]
    assert await names("/jobs?tag=nope") == []
    assert await names("/status?tag=web") == ["default.shop", "other.api"]
    assert await names("/status?tag=web&name=other") == ["other.api"]
    r = await c.get("/jobs/other?tag=nightly")
    assert r.json == {"sessionid": "other", "jobs": []}
    assert len(await names("/status")) == 4  # no filter: every job

    row = (await c.get("/status?name=default.shop&stats=0")).json["jobs"][0]
    assert {k: row[k] for k in meta} == meta
    plain = (await c.get("/status?name=default.plain")).json["jobs"][0]
    assert (plain["description"], plain["tags"], plain["version"]) == ("", [], "")
    config = (await c.get("/jobs/default/shop")).json["config"]
    assert {k: config[k] for k in meta} == meta
    # a bad tag is a 400 naming it
    r = await c.post("/jobs/default", {"name": "bad", **idle, "tags": ["a b"]})
    assert r.status == 400 and "tags[0]" in r.json["error"]


async def test_events_filtered_by_job_name(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    chunks, _ = c.stream("/events?topic=EVENTS&name=default.b")
    await chunks.until(b": connected")
    manager.load({"name": "a", **SLEEP})
    manager.load({"name": "b", **SLEEP})
    await chunks.until(b"event: spawn")
    names = {json.loads(e["data"])["name"] for e in parse_sse(chunks.data)}
    assert names == {"default.b"}


async def test_status_cpu_and_memory_are_the_process_own(manager: Manager, api: HttpApp) -> None:
    c = Client(api)
    # burns 0.3 s of CPU, says so, and goes on burning
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    burn += "print('hot', flush=True)\nwhile True: pass\n"
    sub = manager.subscribe("stream")
    manager.load({"name": "busy", "cmd": PYTHON, "args": ["-c", burn], "startsecs": 0})
    manager.load({"name": "idle", **SLEEP})
    await next_event(sub, lambda e: e.type == "output" and b"hot" in e.data["data"])
    manager.unsubscribe("stream", sub)
    await manager.wait_running("idle", timeout=TIMEOUT)
    jobs = {j["name"]: j["processes"][0] for j in (await c.get("/status")).json["jobs"]}
    assert jobs["default.busy"]["cpu"] > 10.0, jobs
    assert jobs["default.idle"]["cpu"] < 5.0, jobs
    assert 0 < jobs["default.idle"]["rss"] < jobs["default.busy"]["rss"]
