"""The OpenAPI description (``gaffer.http.openapi``) against the HTTP API.

- Every served route and every method its handler implements is described, and
  nothing else is (no server needed).
- ``GET /openapi.json`` serves it and schemathesis loads it as OpenAPI 3.
- A live daemon is fuzzed from it (schemathesis, seeded: the same run every
  time): no input may get a 5xx or crash anything in the background, and every
  response must be one the description documents (status, content type,
  schema). Sizes and waits in the generated bodies are kept small.
- What the fuzz leaves out (SSE, websockets) refuses bad requests as documented,
  and inputs that once got a 500 get a 400.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import tornado.web
import tornado.websocket
from gaffer.http import HttpApp, HttpSettings
from gaffer.http.app import ROUTES
from gaffer.http.misc import PingHandler
from gaffer.http.openapi import spec
from gaffer.manager import Manager
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

Operation = APIOperation[Any, Any, Any, Any]
HTTP_METHODS = ("get", "head", "post", "put", "delete", "patch", "options", "trace")
# What a handler can implement besides OPTIONS (which BaseHandler answers for all).
HANDLER_METHODS = ("get", "head", "post", "put", "delete", "patch")
SAMPLES = {
    "sessionid": "default",
    "job": "web",
    "pid": "12",
    "stream": "stdout",
    "key": "0123abcd",
    "username": "alice",
    "id": "3",
}

# -- route coverage ----------------------------------------------------------------


def implemented(handler: type[tornado.web.RequestHandler]) -> set[str]:
    """The methods a handler class defines (itself or through its bases)."""
    if issubclass(handler, tornado.websocket.WebSocketHandler):
        base: type[tornado.web.RequestHandler] = tornado.websocket.WebSocketHandler
        found = {"get"}
    else:
        base, found = tornado.web.RequestHandler, set()
    return found | {m for m in HANDLER_METHODS if getattr(handler, m) is not getattr(base, m)}


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], template)


def served_by(
    path: str, routes: list[tuple[str, type[tornado.web.RequestHandler]]]
) -> tuple[str, type[tornado.web.RequestHandler]] | None:
    """The route tornado picks for ``path``: the first whose pattern matches."""
    return next(((p, h) for p, h in routes if re.fullmatch(p, path)), None)


def coverage_problems(
    paths: dict[str, Any], routes: list[tuple[str, type[tornado.web.RequestHandler]]]
) -> list[str]:
    problems = []
    samples = {template: concrete(template) for template in paths}
    for pattern, handler in routes:
        if not any(served_by(path, routes) == (pattern, handler) for path in samples.values()):
            problems.append(f"route {pattern} ({handler.__name__}) is not described")
    for template, path in samples.items():
        route = served_by(path, routes)
        if route is None:
            problems.append(f"{template} is described but no route serves it")
            continue
        described = {m for m in paths[template] if m in HTTP_METHODS}
        handled = implemented(route[1])
        if described != handled:
            problems.append(
                f"{template} ({route[1].__name__}): described {sorted(described)}, "
                f"implemented {sorted(handled)}"
            )
    return problems


def test_every_route_and_method_is_described() -> None:
    assert coverage_problems(spec()["paths"], ROUTES) == []


def test_coverage_check_catches_undescribed_routes_and_methods() -> None:
    class Extra(tornado.web.RequestHandler):
        def get(self) -> None: ...

    class MorePing(PingHandler):
        def delete(self) -> None: ...

    routes: list[tuple[str, type[tornado.web.RequestHandler]]] = [*ROUTES, (r"/extra", Extra)]
    assert coverage_problems(spec()["paths"], routes) == ["route /extra (Extra) is not described"]
    routes = [(p, MorePing if p == "/ping" else h) for p, h in ROUTES]
    assert coverage_problems(spec()["paths"], routes) == [
        "/ping (MorePing): described ['get'], implemented ['delete', 'get']"
    ]


def test_spec_is_json() -> None:
    assert json.loads(json.dumps(spec())) == spec()


# -- a live daemon -------------------------------------------------------------------

SLEEP = {"cmd": "sleep", "args": ["3600"], "startsecs": 0, "graceful_timeout": 1}


@dataclass
class Daemon:
    manager: Manager
    app: HttpApp
    url: str
    thread: threading.Thread
    session: requests.Session = field(default_factory=requests.Session)
    known_key: str = ""

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=10)


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A manager with the HTTP app on TCP (no keys required) in its own thread,
    running two harmless jobs; stopped (every job with it) at the end."""
    monkeypatch.chdir(tmp_path)  # where relative paths of fuzzed configs land
    manager = Manager(loop_kind="asyncio")
    app = HttpApp(HttpSettings(unix_socket=None, bind=("127.0.0.1:0",), require_key=False))
    ready = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            manager.start(apps=[app])
            manager.load({"name": "sleeper", **SLEEP, "numprocesses": 2, "cwd": str(tmp_path)})
            manager.load(
                {"name": "worker", **SLEEP, "redirect_input": True, "custom_streams": ["ctl"]},
                sessionid="batch",
            )
        except BaseException as e:
            failed.append(e)
            manager.stop()
        finally:
            ready.set()
        manager.run()
        manager.loop.close()

    thread = threading.Thread(target=run, name="gafferd", daemon=True)
    thread.start()
    assert ready.wait(10), "the daemon did not start"
    try:
        assert not failed, failed
        address = app.addresses[0]
        assert isinstance(address, tuple)
        yield Daemon(manager, app, f"http://{address[0]}:{address[1]}", thread)
    finally:
        manager.stop()
        thread.join(30)
        assert not thread.is_alive(), "the daemon did not stop"


def operations_of(schema: Any) -> list[Operation]:
    """The operations schemathesis reads in a description (none may be broken)."""
    results = list(schema.get_all_operations())
    assert [str(r.err()) for r in results if isinstance(r, Err)] == []
    return [r.ok() for r in results if isinstance(r, Ok)]


def test_openapi_json_is_served_and_loads(daemon: Daemon) -> None:
    r = daemon.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == json.loads(json.dumps(spec()))
    schema = schemathesis.openapi.from_url(daemon.url + "/openapi.json")
    schema.validate()
    operations = operations_of(schema)
    described = {
        f"{method.upper()} {path}"
        for path, item in spec()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }
    # schemathesis leaves out the operation that served the schema
    assert {op.label for op in operations} == described - {"GET /openapi.json"}


# -- the fuzz ------------------------------------------------------------------------

# Responses that never end for a valid request (SSE) and websockets; /streams is
# fuzzed as a long poll that does not wait (feed=longpoll&timeout=0).
NOT_FUZZED = re.compile(r"^/(events|channel.*|\{pid\}/channel.*)$")
NO_WAIT = {"/streams/{pid}/{stream}": {"feed": "longpoll", "timeout": 0}}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and way of generating. The run is the same every time;
# to dig deeper, e.g. GAFFER_FUZZ_EXAMPLES=200 GAFFER_FUZZ_SEED=7.
MAX_EXAMPLES = int(os.environ.get("GAFFER_FUZZ_EXAMPLES", "25"))
SEED = os.environ.get("GAFFER_FUZZ_SEED")
# The order operations run in: looking before changing, deleting last.
ORDER = {"get": 0, "head": 0, "post": 1, "put": 1, "delete": 2}
SCALE = re.compile(r"\s*([+=-]?)(\d+)\s*")


def tame(case: Case[Any]) -> Case[Any]:
    """Keep a fuzzed request from asking for thousands of processes or for
    waits longer than the test: any input goes, but sizes stay small."""
    body = case.body
    if isinstance(body, dict):
        n = body.get("numprocesses")
        if isinstance(n, int) and not isinstance(n, bool) and n > 3:
            body["numprocesses"] = 3
        scale = body.get("scale")
        if isinstance(scale, int) and not isinstance(scale, bool):
            body["scale"] = max(-3, min(scale, 3))
        elif isinstance(scale, str) and (m := SCALE.fullmatch(scale)):
            body["scale"] = f"{m.group(1)}{min(int(m.group(2)), 3)}"
        for name, limit in (("graceful_timeout", 1.0), ("startsecs", 0.2)):
            value = body.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value > limit:
                body[name] = limit
    return case


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def strategies(op: Operation, daemon: Daemon) -> list[SearchStrategy[Case[Any]]]:
    """The ways an operation is fuzzed: generated input (and input that breaks
    the schema, where there is any to break); then, as random names are nearly
    always a 404, generated input aimed at a job, process, key or user that
    exists."""
    query = NO_WAIT.get(op.path)
    modes = [GenerationMode.POSITIVE]
    if len(op.body) or (len(op.query) and query is None):
        modes.append(GenerationMode.NEGATIVE)
    out = [op.as_strategy(generation_mode=mode, query=query) for mode in modes]
    names = {p.name for p in op.path_parameters}
    pids = daemon.get("/pids").json()["pids"]
    known = {
        "sessionid": "default",
        "job": "sleeper",
        "stream": "stdout",
        "username": "alice",
        "key": daemon.known_key,
        **({"pid": pids[0]} if pids else {}),
    }
    if names and names <= set(known):
        fixed = {name: known[name] for name in names}
        out.append(op.as_strategy(path_parameters=fixed, query=query))
    if op.label == "GET /auth":
        out.append(op.as_strategy(headers={"Authorization": basic("alice", "pw")}))
    if op.label == "PUT /users/{username}/key":
        user = {"username": "alice"}
        out.append(op.as_strategy(path_parameters=user, body={"key": known["key"]}))
    return out


def fuzz(daemon: Daemon, op: Operation, strategy: SearchStrategy[Case[Any]]) -> list[str]:
    """Run the strategy's cases against the daemon; the failures (3 at most)."""
    found: list[str] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(strategy.map(tame))
    def run(case: Case[Any]) -> None:
        if len(found) >= 3:
            return
        try:
            response = case.call(base_url=daemon.url, session=daemon.session, timeout=15)
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as e:
            found.append(f"{op.label}: {e}")
        except requests.RequestException as e:
            found.append(f"{op.label}: {case.as_curl_command()}: {e!r}")

    if SEED is not None:
        run = seed(int(SEED))(run)
    # Unsatisfiable: no input breaks the schema (a path parameter can be any text)
    with contextlib.suppress(Unsatisfiable):
        run()
    return found


def test_fuzz_live_daemon(daemon: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    r = daemon.session.post(daemon.url + "/users", json={"username": "alice", "password": "pw"})
    assert r.status_code == 200, r.text
    r = daemon.session.post(daemon.url + "/keys", json={"permissions": {"read": ["*"]}})
    assert r.status_code == 200, r.text
    daemon.known_key = r.json()["key"]

    schema = schemathesis.openapi.from_dict(spec())
    operations = [op for op in operations_of(schema) if not NOT_FUZZED.match(op.path)]
    operations.sort(key=lambda op: ORDER[op.method.lower()])
    assert len(operations) == 50

    failures = [
        failure
        for op in operations
        for strategy in strategies(op, daemon)
        for failure in fuzz(daemon, op, strategy)
    ]
    assert failures == [], "\n\n".join(failures)

    # Nothing took the daemon down, nor failed unexpectedly out of sight (a
    # background task, or a request whose answer had already begun).
    r = daemon.get("/ping")
    assert (r.status_code, r.text) == (200, "OK")
    assert daemon.manager.active
    crashes = [
        f"{record.name}: {record.getMessage()}\n{record.exc_text or ''}"
        for record in caplog.records
        if record.exc_info is not None
    ]
    assert crashes == [], "\n".join(crashes)


# -- what is not fuzzed ----------------------------------------------------------------

# (operation, request, status): requests to the streaming and websocket endpoints
# answered at once, as documented; and input that once got a 500.
PID1 = {"pid": 1, "stream": "stdout"}
SESSION = {"sessionid": "default"}
SLEEPER = {"sessionid": "default", "job": "sleeper"}
HUGE = 10**400  # an integer no float can hold
ANSWERS: list[tuple[str, dict[str, Any], int]] = [
    ("GET /events", {"query": {"topic": ["STATS:1"]}}, 400),
    ("GET /events", {"query": {"topic": ["EVENTS", "bogus:x"]}}, 400),
    ("GET /events", {"query": {"topic": ["PROCESS:99999"]}}, 404),
    ("GET /events", {"query": {"topic": ["JOB:default.nope"]}}, 404),
    ("GET /streams/{pid}/{stream}", {"path_parameters": {"pid": 99999, "stream": "x"}}, 404),
    ("GET /streams/{pid}/{stream}", {"path_parameters": {"pid": 1, "stream": "nope"}}, 404),
    ("GET /streams/{pid}/{stream}", {"path_parameters": PID1, "query": {"feed": "x"}}, 400),
    ("GET /streams/{pid}/{stream}", {"path_parameters": PID1, "query": {"offset": "²"}}, 400),
    (
        "GET /streams/{pid}/{stream}",
        {
            "path_parameters": PID1,
            "query": {"feed": "longpoll", "timeout": 0},
            "headers": {"Last-Event-ID": "²"},
        },
        200,
    ),
    ("GET /channel", {}, 400),
    ("GET /channel/websocket", {"headers": {"X-Api-Key": "no.such-key"}}, 403),
    ("GET /{pid}/channel", {"path_parameters": {"pid": 1}, "query": {"mode": "9"}}, 400),
    ("GET /{pid}/channel", {"path_parameters": {"pid": 1}, "headers": {"X-Api-Key": "x.y"}}, 403),
    ("GET /{pid}/channel/{stream}", {"path_parameters": {"pid": 1, "stream": "ctl"}}, 400),
    ("GET /auth", {"headers": {"Authorization": "Basic \xe9"}}, 401),
    (
        "POST /jobs/{sessionid}",
        {
            "path_parameters": SESSION,
            "body": {"name": "x", "cmd": "true", "graceful_timeout": HUGE},
        },
        400,
    ),
    (
        "POST /jobs/{sessionid}/{job}/commit",
        {"path_parameters": SLEEPER, "body": {"graceful_timeout": HUGE}},
        400,
    ),
    (
        "POST /jobs/{sessionid}",
        {"path_parameters": SESSION, "body": {"name": "x", "cmd": "t", "uid": "²"}},
        400,
    ),
    (
        "POST /jobs/{sessionid}/{job}/signal",
        {"path_parameters": SLEEPER, "body": {"signal": "--5"}},
        400,
    ),
]


def test_answers_outside_the_fuzz_are_documented(daemon: Daemon) -> None:
    schema = schemathesis.openapi.from_dict(spec())
    operations = {op.label: op for op in operations_of(schema)}
    for label, request, status in ANSWERS:
        case = operations[label].Case(**request)
        response = case.call(base_url=daemon.url, session=daemon.session, timeout=5)
        assert response.status_code == status, (label, request, response.text)
        case.validate_response(response, checks=CHECKS)
