"""The HTTP API against a manager running real processes: the 0.5 endpoints,
their errors, the unix socket, curl, TLS, CORS, metrics, SSE and output streams."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess

from conftest import SLEEP
from gaffer.http import HttpApp
from gaffer.manager import Manager
from httpkit import make_key


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
