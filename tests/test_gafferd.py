"""gafferd as a user runs it: a real daemon process, its config file, its signals."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
GAFFERD = [sys.executable, str(ROOT / "gafferd")]


def gafferd(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GAFFERD, *args], capture_output=True, text=True, timeout=30, **kw)  # type: ignore[call-overload]


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 10) -> bytes:
    """Read the daemon's stderr until ``needle`` shows up (fails on timeout or EOF)."""
    assert proc.stderr is not None
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while needle not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                pytest.fail(f"gafferd never printed {needle!r}; got:\n{buf.decode()}")
            chunk = os.read(proc.stderr.fileno(), 65536)
            if not chunk:
                pytest.fail(f"gafferd exited before printing {needle!r}; got:\n{buf.decode()}")
            buf += chunk
    return buf


def private_api(tmp_path: Path) -> list[str]:
    """Flags that keep a test daemon's socket and state in ``tmp_path``."""
    return [
        "--unix-socket",
        str(tmp_path / "run" / "gafferd.sock"),
        "--state-dir",
        str(tmp_path / "state"),
    ]


@contextlib.contextmanager
def daemon(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A real gafferd with its socket and state in ``tmp_path``; killed (and
    reaped) on the way out if the test did not stop it."""
    proc = subprocess.Popen(
        [*GAFFERD, *args, *private_api(tmp_path)], stderr=subprocess.PIPE, env=env
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stubborn_config(tmp_path: Path) -> Path:
    """A job whose process (and its child) ignore SIGTERM, with 60 s to stop."""
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "jobs:\n"
        "  stubborn:\n"
        f"    cmd: {sys.executable}\n"
        f"    args: ['{ROOT / 'tests' / 'children' / 'ignore_term.py'}']\n"
        "    graceful_timeout: 60\n"
        "    startsecs: 0\n"
    )
    return cfg


def curl(*args: str) -> tuple[int, str]:
    r = subprocess.run(
        ["curl", "-s", "-m", "10", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, code = r.stdout.rpartition("\n")
    return int(code), body


def signal_process(sock: str, pid: object, sig: str) -> int:
    """POST /<pid>/signal over the daemon's socket; the HTTP status."""
    body = json.dumps({"signal": sig})
    code, _ = curl("--unix-socket", sock, "-X", "POST", "-d", body, f"http://g/{pid}/signal")
    return code


def test_check_accepts_the_example_config() -> None:
    r = gafferd("--check", "-c", str(ROOT / "etc" / "gafferd.yml"))
    assert r.returncode == 0, r.stderr
    assert "ok, 2 job(s)" in r.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "jobs:\n  web:\n    cmd: sleep\n    numprocesses: -1\n",
            "cfg.yml:4: jobs.web.numprocesses: must be an integer ≥ 0, got -1",
        ),
        (
            "jobs:\n  web:\n    cmd: sleep\n    bogus: 1\n",
            "cfg.yml:4: jobs.web.bogus: unknown option",
        ),
        ("jobs:\n  web:\n    numprocesses: 1\n", "jobs.web.cmd: is required"),
        (
            "jobs:\n  web:\n    cmd: echo\n    args: [$NOPE]\n",
            "cfg.yml:4: jobs.web.args[0]: undefined variable $NOPE",
        ),
        ("jobs:\n  web: [1, 2]\n", "cfg.yml:2: jobs.web: must be a mapping"),
        ("daemon:\n  loop: tokio\n", "cfg.yml:2: daemon.loop: must be one of uvloop, asyncio"),
        ("jobs:\n  web:\n    cmd: [unclosed\n", "cfg.yml:4: invalid YAML"),
        ("jobs:\n  web:\n    cmd: a\n    cmd: b\n", "cfg.yml:4: cmd: duplicate key"),
        ("services: {}\n", "cfg.yml:1: services: unknown section"),
    ],
)
def test_check_rejects_bad_configs_with_file_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    cfg = tmp_path / "cfg.yml"
    cfg.write_text(text)
    r = gafferd("--check", "-c", "cfg.yml", cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr


def test_missing_config_file() -> None:
    r = gafferd("--check", "-c", "/nonexistent/gafferd.yml")
    assert r.returncode == 2
    assert "/nonexistent/gafferd.yml: cannot read" in r.stderr


def test_runs_jobs_prints_output_and_stops_on_sigterm(tmp_path: Path, loop_kind: str) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "jobs:\n"
        "  hello:\n"
        "    cmd: sh\n"
        "    args: ['-c', 'echo hello from $$GAFFER_INDEX; exec sleep 3600']\n"
        "    numprocesses: 2\n"
        "  s1.worker:\n"
        "    cmd: sleep\n"
        "    args: ['3600']\n"
    )
    proc = subprocess.Popen(
        [*GAFFERD, "-c", str(cfg), *private_api(tmp_path)],
        stderr=subprocess.PIPE,
        env={**os.environ, "GAFFER_LOOP": loop_kind},
    )
    try:
        out = read_until(proc, f"on {loop_kind}".encode())
        for index in (0, 1):
            line = f"default.hello.{index} | hello from {index}".encode()
            if line not in out:
                out += read_until(proc, line)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serves_the_api_on_its_unix_socket_and_on_tcp_with_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web:\n    cmd: sleep\n    args: ['3600']\n")
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg), "--bind", "127.0.0.1:0") as proc:
        out = read_until(proc, b"API listening on http://127.0.0.1:")
        port = out.split(b"API listening on http://127.0.0.1:")[1].split(b"\n")[0].decode()
        assert f"API listening on {sock}".encode() in out
        assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
        code, body = curl("--unix-socket", sock, "http://gafferd/jobs")
        assert (code, body) == (200, '{"jobs":["default.web"]}')
        # TCP wants a key; the owner mints one over the socket
        assert curl(f"http://127.0.0.1:{port}/jobs")[0] == 401
        code, body = curl(
            "--unix-socket",
            sock,
            "-X",
            "POST",
            "-d",
            '{"permissions": {"read": ["*"]}}',
            "http://gafferd/keys",
        )
        assert code == 200
        key = json.loads(body)["api_key"]
        code, body = curl("-H", f"X-Api-Key: {key}", f"http://127.0.0.1:{port}/jobs/default/web")
        assert code == 200 and json.loads(body)["running"] == 1
        # the key store is a file in the state dir, without the secret in it
        db = (tmp_path / "state" / "auth.db").read_bytes()
        assert key.split(".", 1)[1].encode() not in db
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not os.path.exists(sock)


def test_refuses_a_second_daemon_on_the_same_socket(tmp_path: Path) -> None:
    proc = subprocess.Popen([*GAFFERD, *private_api(tmp_path)], stderr=subprocess.PIPE)
    try:
        read_until(proc, b"API listening on")
        socket_path = str(tmp_path / "run" / "gafferd.sock")
        # the same socket (another state dir): refused, the first one's socket kept
        other = ["--unix-socket", socket_path, "--state-dir", str(tmp_path / "other")]
        r = gafferd(*other)
        assert r.returncode == 2
        assert "another daemon is listening" in r.stderr
        # the same state dir (another socket): refused before it touches anything
        r = gafferd(
            "--unix-socket", str(tmp_path / "b.sock"), "--state-dir", str(tmp_path / "state")
        )
        assert r.returncode == 2
        assert "another gafferd is running on this state dir" in r.stderr
        assert curl("--unix-socket", socket_path, "http://g/ping") == (200, "OK")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def recv_until(sock: socket.socket, needle: str, timeout: float = 10) -> list[str]:
    """Datagrams received until one contains ``needle`` (fails on timeout)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {needle!r} on the notify socket; got {got}")
        sock.settimeout(left)
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            continue
        got.append(msg)
        if needle in msg:
            return got


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_ready_watchdog_stopping(tmp_path: Path, abstract: bool) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"gaffer-test-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web:\n    cmd: sleep\n    args: ['3600']\n")
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [*GAFFERD, "-c", str(cfg), *private_api(tmp_path)], stderr=subprocess.PIPE, env=env
    )
    try:
        ready = recv_until(sock, "READY=1")[-1].splitlines()
        assert f"MAINPID={proc.pid}" in ready
        assert any(line.startswith("STATUS=") and "1 job(s)" in line for line in ready)
        # the API is up by the time READY=1 is sent
        assert curl("--unix-socket", str(tmp_path / "run" / "gafferd.sock"), "http://g/ping") == (
            200,
            "OK",
        )
        # the watchdog is fed every 0.1 s (half of WATCHDOG_USEC)
        recv_until(sock, "WATCHDOG=1")
        recv_until(sock, "WATCHDOG=1")
        # a reload is bracketed by RELOADING=1 ... READY=1
        proc.send_signal(signal.SIGHUP)
        recv_until(sock, "RELOADING=1")
        recv_until(sock, "READY=1")
        proc.send_signal(signal.SIGTERM)
        recv_until(sock, "STOPPING=1")
        assert proc.wait(timeout=15) == 0
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pidfile_refuses_a_second_daemon_and_replaces_a_stale_one(tmp_path: Path) -> None:
    pidfile = tmp_path / "gafferd.pid"
    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")  # stale: that process is gone
    with daemon(tmp_path, "--pidfile", str(pidfile)) as proc:
        read_until(proc, b"API listening on")
        assert pidfile.read_text() == f"{proc.pid}\n"
        other = tmp_path / "other"
        r = gafferd(*private_api(other), "--pidfile", str(pidfile))
        assert r.returncode == 2 and f"already running as pid {proc.pid}" in r.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not pidfile.exists()


def test_sigquit_stops_fast_even_past_graceful_timeout(tmp_path: Path) -> None:
    cfg = stubborn_config(tmp_path)
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"default.stubborn.0 | ready")
        children = psutil.Process(proc.pid).children(recursive=True)
        started = time.monotonic()
        proc.send_signal(signal.SIGQUIT)
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - started < 10  # not the job's 60 s
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_config_lookup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".gaffer").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "GAFFERD_CONFIG"}
    env["HOME"] = str(home)
    if os.getuid() == 0:
        # as root the lookup is /etc/gaffer/gafferd.yml; only $GAFFERD_CONFIG is testable here
        pass
    else:
        r = gafferd("--check", env=env)
        assert (r.returncode, r.stdout.strip()) == (0, "<embedded default>: ok, 0 job(s)")
        (home / ".gaffer" / "gafferd.yml").write_text("jobs:\n  a:\n    cmd: sleep\n")
        r = gafferd("--check", env=env)
        assert r.returncode == 0 and "gafferd.yml: ok, 1 job(s)" in r.stdout
    explicit = tmp_path / "explicit.yml"
    explicit.write_text("jobs:\n  a:\n    cmd: sleep\n  b:\n    cmd: sleep\n")
    r = gafferd("--check", env={**env, "GAFFERD_CONFIG": str(explicit)})
    assert r.returncode == 0 and r.stdout.strip() == f"{explicit}: ok, 2 job(s)"


def api_json(sock: str, path: str, method: str = "GET") -> tuple[int, object]:
    code, body = curl("--unix-socket", sock, "-X", method, f"http://gafferd{path}")
    return code, json.loads(body) if body else None


def os_pids(sock: str, job: str) -> set[int]:
    _, info = api_json(sock, f"/jobs/default/{job}")
    assert isinstance(info, dict)
    out = set()
    for pid in info["processes"]:
        _, proc = api_json(sock, f"/{pid}")
        assert isinstance(proc, dict)
        out.add(proc["os_pid"])
    return out


RELOAD_BEFORE = """
jobs:
  same:   {cmd: sleep, args: ['3600'], startsecs: 0}
  scaled: {cmd: sleep, args: ['3600'], startsecs: 0}
  changed: {cmd: sleep, args: ['3600'], startsecs: 0, numprocesses: 2}
  relabelled: {cmd: sleep, args: ['3600'], startsecs: 0, tags: [a]}
  removed: {cmd: sleep, args: ['3600'], startsecs: 0}
"""
RELOAD_AFTER = """
jobs:
  same:   {cmd: sleep, args: ['3600'], startsecs: 0}
  scaled: {cmd: sleep, args: ['3600'], startsecs: 0, numprocesses: 2}
  changed: {cmd: sleep, args: ['3601'], startsecs: 0, numprocesses: 2}
  relabelled: {cmd: sleep, args: ['3600'], startsecs: 0, tags: [b], version: '2'}
  added:  {cmd: sleep, args: ['3600'], startsecs: 0}
"""


def test_reload_applies_the_difference(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(RELOAD_BEFORE)
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"running 5 job(s)")
        before = {j: os_pids(sock, j) for j in ("same", "scaled", "changed", "relabelled")}
        # an invalid file changes nothing, and says so
        cfg.write_text(RELOAD_AFTER + "  broken: {cmd: sleep, numprocesses: -1}\n")
        code, body = api_json(sock, "/reload", "POST")
        assert code == 409 and isinstance(body, dict)
        assert "jobs.broken.numprocesses" in body["error"] and body["errno"] == 409
        assert api_json(sock, "/reload")[1]["ok"] is False  # type: ignore[index]
        assert {j: os_pids(sock, j) for j in before} == before
        # SIGHUP applies the valid file
        cfg.write_text(RELOAD_AFTER)
        proc.send_signal(signal.SIGHUP)
        read_until(proc, b"reloaded ")
        _, result = api_json(sock, "/reload")
        assert isinstance(result, dict) and result["ok"] is True
        assert (result["loaded"], result["unloaded"]) == (["default.added"], ["default.removed"])
        assert result["scaled"] == ["default.scaled"]
        assert result["updated"] == ["default.changed", "default.relabelled"]
        assert result["unchanged"] == ["default.same"]
        assert os_pids(sock, "same") == before["same"]  # untouched
        scaled = os_pids(sock, "scaled")
        assert before["scaled"] < scaled and len(scaled) == 2  # scaled in place
        changed = os_pids(sock, "changed")
        assert len(changed) == 2 and not changed & before["changed"]  # every slot replaced
        assert os_pids(sock, "relabelled") == before["relabelled"]  # metadata: in place
        config = api_json(sock, "/jobs/default/relabelled")[1]["config"]  # type: ignore[index]
        assert (config["tags"], config["version"]) == (["b"], "2")
        assert api_json(sock, "/jobs/default/removed")[0] == 404
        assert len(os_pids(sock, "added")) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def wait_file(path: Path, needle: str, timeout: float = 10) -> str:
    """The file's text once ``needle`` is in it. The daemon's writer thread
    appends asynchronously and files raise no event here: poll the condition,
    with a deadline that fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in (text := path.read_text()):
            return text
        time.sleep(0.02)
    pytest.fail(f"{needle!r} never reached {path}")


CHATTY = (
    "trap 'echo usr2 $$n; n=$$((n+1))' USR2; n=0; "
    "for i in $$(seq 1 40); do echo line-$$i-xxxxxxxxxxxx; done; "
    "while true; do sleep 3600 & wait $$!; done"
)


def test_log_files_rotation_and_reopen(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    cfg = tmp_path / "gafferd.yml"
    template = f"{logs}/{{session}}.{{job}}.{{index}}.{{stream}}.log"
    cfg.write_text(
        "daemon:\n"
        f"  logs: {{path: '{template}', max_bytes: 200, backups: 2}}\n"
        "jobs:\n"
        "  chatty:\n"
        "    cmd: sh\n"
        f"    args: ['-c', \"{CHATTY}\"]\n"
        "    startsecs: 0\n"
        "  console:\n"
        "    cmd: sh\n"
        "    args: ['-c', 'echo to the console; exec sleep 3600']\n"
        "    logs: stderr\n"
    )
    sock = str(tmp_path / "run" / "gafferd.sock")
    proc = subprocess.Popen(
        [*GAFFERD, "-c", str(cfg), *private_api(tmp_path)], stderr=subprocess.PIPE
    )
    current = logs / "default.chatty.0.stdout.log"
    try:
        out = read_until(proc, b"default.console.0 | to the console")
        wait_file(current, "line-40-")
        assert b"default.chatty.0 |" not in out  # its output went to its file only
        # rotated by size: at most 200 bytes a file, two backups, the oldest gone
        assert len(current.read_bytes()) <= 200
        backups = sorted(p.name for p in logs.iterdir())
        assert backups == [current.name, current.name + ".1", current.name + ".2"]
        assert "line-1-" not in "".join(p.read_text() for p in logs.iterdir())
        # logrotate moves the file away, then SIGUSR1 makes gafferd reopen it
        moved = tmp_path / "moved.log"
        current.rename(moved)
        proc.send_signal(signal.SIGUSR1)
        read_until(proc, b"SIGUSR1: reopening log files")
        _, info = api_json(sock, "/jobs/default/chatty")
        pid = info["processes"][0]  # type: ignore[index]
        code = signal_process(sock, pid, "USR2")
        assert code == 202
        assert wait_file(current, "usr2 0").strip() == "usr2 0"
        assert "usr2" not in moved.read_text()
        # the same through the API
        current.rename(tmp_path / "moved2.log")
        code, _ = curl("--unix-socket", sock, "-X", "POST", "http://g/logs/reopen")
        assert code == 202
        code = signal_process(sock, pid, "USR2")
        assert wait_file(current, "usr2 1").strip() == "usr2 1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_create_admin_user_then_log_in(tmp_path: Path) -> None:
    env = {**os.environ, "GAFFERD_ADMIN_PASSWORD": "s3cret!"}
    r = gafferd(*private_api(tmp_path), "--create-admin-user", "root", env=env)
    assert r.returncode == 0 and "admin user root created" in r.stdout, r.stderr
    r = gafferd(*private_api(tmp_path), "--create-admin-user", "root", env=env)
    assert r.returncode == 2 and "root" in r.stderr  # already exists
    with daemon(tmp_path, "--bind", "127.0.0.1:0") as proc:
        out = read_until(proc, b"API listening on http://127.0.0.1:")
        port = out.split(b"API listening on http://127.0.0.1:")[1].split(b"\n")[0].decode()
        code, body = curl("-u", "root:s3cret!", f"http://127.0.0.1:{port}/auth")
        assert code == 200
        key = json.loads(body)["api_key"]
        code, body = curl("-H", f"X-Api-Key: {key}", f"http://127.0.0.1:{port}/users")
        assert code == 200 and "root" in body
        assert curl("-u", "root:wrong", f"http://127.0.0.1:{port}/auth")[0] == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_daemon_mode_returns_once_serving(tmp_path: Path) -> None:
    pidfile = tmp_path / "gafferd.pid"
    errlog = tmp_path / "gafferd.log"
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web: {cmd: sleep, args: ['3600']}\n")
    r = gafferd(
        "-c",
        str(cfg),
        *private_api(tmp_path),
        "--daemon",
        "--pidfile",
        str(pidfile),
        "--error-log",
        str(errlog),
    )
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    daemon = psutil.Process(pid)
    try:
        assert os.getsid(pid) != os.getsid(0)  # detached: a session of its own
        code, body = curl("--unix-socket", str(tmp_path / "run" / "gafferd.sock"), "http://g/jobs")
        assert (code, body) == (200, '{"jobs":["default.web"]}')
        assert "API listening on" in errlog.read_text()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
        assert not pidfile.exists()
    finally:
        if daemon.is_running() and daemon.status() != psutil.STATUS_ZOMBIE:
            daemon.kill()
    # a daemon that cannot start says so through the command's exit code
    r = gafferd(*private_api(tmp_path), "--daemon", "--bind", "256.1.1.1:80")
    assert r.returncode == 2


def test_output_flood_never_stops_the_api(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "jobs:\n"
        "  flood:\n"
        "    cmd: 'yes'\n"
        "    args: ['flood flood flood flood flood flood flood flood flood flood flood']\n"
    )
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"default.flood.0 | flood")
        # From here on nobody reads the daemon's stderr: its pipe fills up at once.
        for _ in range(20):
            started = time.monotonic()
            assert curl("--unix-socket", sock, "http://g/ping") == (200, "OK")
            assert time.monotonic() - started < 2.0
        code, body = curl("--unix-socket", sock, "http://g/jobs/default/flood")
        assert code == 200 and json.loads(body)["running"] == 1
        # the output still reaches a reader that wants it: the stream API
        code, body = curl(
            "--unix-socket",
            sock,
            f"http://g/streams/{json.loads(body)['processes'][0]}/stdout?feed=longpoll&offset=0",
        )
        assert code == 200 and "flood flood" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0  # and it stops, pipe full or not


def test_api_changes_survive_a_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "jobs:\n"
        "  a: {cmd: sleep, args: ['3600'], startsecs: 0}\n"
        "  z: {cmd: sleep, args: ['3600'], startsecs: 0}\n"
        "  idle: {cmd: sleep, args: ['3600'], startsecs: 0}\n"
    )
    sock = str(tmp_path / "run" / "gafferd.sock")

    def start(*extra: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [*GAFFERD, "-c", str(cfg), *private_api(tmp_path), *extra], stderr=subprocess.PIPE
        )
        read_until(proc, b"API listening on")
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0

    def state() -> dict[str, tuple[int, bool]]:
        _, jobs = api_json(sock, "/jobs")
        out = {}
        for name in jobs["jobs"]:  # type: ignore[index]
            _, info = api_json(sock, "/jobs/" + name.replace(".", "/", 1))
            out[name] = (info["numprocesses"], info["active"])  # type: ignore[index]
        return out

    proc = start()
    try:
        post = ["--unix-socket", sock, "-X", "POST"]
        assert (
            curl(*post, "-d", '{"scale": "=3"}', "http://g/jobs/default/a/numprocesses")[0] == 200
        )
        body = '{"name": "b", "cmd": "sleep", "args": ["3600"], "numprocesses": 2}'
        assert curl(*post, "-d", body, "http://g/jobs/default")[0] == 200
        assert curl("--unix-socket", sock, "-X", "DELETE", "http://g/jobs/default/z")[0] == 200
        assert curl(*post, "-d", "0", "http://g/jobs/default/idle/state")[0] == 202
        expected = {"default.a": (3, True), "default.b": (2, True), "default.idle": (1, False)}
        assert state() == expected
        stop(proc)
        proc = start()
        assert state() == expected  # as the API left it
        stop(proc)
        proc = start("--no-restore")
        assert state() == {
            "default.a": (1, True),
            "default.z": (1, True),
            "default.idle": (1, True),
        }
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_after_a_sigkill_the_next_daemon_stops_the_orphans(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web: {cmd: sleep, args: ['3600'], numprocesses: 2, startsecs: 0}\n")
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"API listening on")
        first = os_pids(sock, "web")
        assert len(first) == 2
        # the state (with these processes) is saved after their spawns; wait for that write
        state_db = tmp_path / "state" / "state.db"
        deadline = time.monotonic() + 10
        while not (
            state_db.exists() and all(str(p).encode() in state_db.read_bytes() for p in first)
        ):
            assert time.monotonic() < deadline, "the state was never saved"
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no chance to stop anything
        proc.wait()
        assert all(psutil.pid_exists(p) for p in first)  # orphans, unsupervised
        proc = subprocess.Popen(
            [*GAFFERD, "-c", str(cfg), *private_api(tmp_path)], stderr=subprocess.PIPE
        )
        out = read_until(proc, b"API listening on")
        assert b"the previous gafferd left 2 process(es) running unsupervised; stopped them" in out
        second = os_pids(sock, "web")
        assert len(second) == 2 and not second & first
        for p in first:  # gone (a zombie of ours at most, until reaped)
            assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
        sleeps = [
            c for c in psutil.Process(proc.pid).children(recursive=True) if c.name() == "sleep"
        ]
        assert len(sleeps) == 2  # no duplicates
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_reload_moves_output_to_log_files(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    job = f"jobs:\n  chatty:\n    cmd: sh\n    args: ['-c', \"{CHATTY}\"]\n    startsecs: 0\n"
    cfg.write_text(job)
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"default.chatty.0 | line-40-")  # on stderr
        log_file = tmp_path / "logs" / "chatty.log"
        cfg.write_text(f"daemon:\n  logs: '{tmp_path}/logs/{{job}}.log'\n" + job)
        code, body = api_json(sock, "/reload", "POST")
        assert code == 200 and body["unchanged"] == ["default.chatty"]  # type: ignore[index]
        _, info = api_json(sock, "/jobs/default/chatty")
        pid = info["processes"][0]  # type: ignore[index]
        signal_process(sock, pid, "USR2")
        assert wait_file(log_file, "usr2 0").strip() == "usr2 0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_reexec_keeps_every_child_and_its_output(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "jobs:\n"
        "  web: {cmd: sleep, args: ['3600'], numprocesses: 2, startsecs: 0}\n"
        f"  chatty:\n    cmd: sh\n    args: ['-c', \"{CHATTY}\"]\n    startsecs: 0\n"
    )
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg), "--pidfile", str(tmp_path / "g.pid")) as proc:
        read_until(proc, b"default.chatty.0 | line-40-")
        before = {j: os_pids(sock, j) for j in ("web", "chatty")}
        _, info = api_json(sock, "/jobs/default/web")
        internal = info["processes"]  # type: ignore[index]
        proc.send_signal(signal.SIGUSR2)
        read_until(proc, b"re-executed in place: adopted 3 process(es)")  # API up before it
        assert (tmp_path / "g.pid").read_text() == f"{proc.pid}\n"  # the same daemon pid
        assert {j: os_pids(sock, j) for j in before} == before  # no child restarted
        _, info = api_json(sock, "/jobs/default/web")
        assert info["processes"] == internal  # type: ignore[index]
        # the pipes are still captured
        _, chatty = api_json(sock, "/jobs/default/chatty")
        pid = chatty["processes"][0]  # type: ignore[index]
        signal_process(sock, pid, "USR2")
        read_until(proc, b"default.chatty.0 | usr2 0")
        # still supervised: a killed child is replaced, with a new internal pid
        victim = internal[0]
        code = signal_process(sock, victim, "KILL")
        assert code == 202
        read_until(proc, b"exited with signal 9")
        # and through the API too
        assert curl("--unix-socket", sock, "-X", "POST", "http://g/reexec")[0] == 202
        read_until(proc, b"re-executed in place: adopted 3 process(es)")
        assert os_pids(sock, "chatty") == before["chatty"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_daemon_apps_log_level_and_error_log_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(
        "import pathlib\n"
        "class App:\n"
        "    def start(self, loop, manager):\n"
        "        pathlib.Path(__file__).with_name('started').write_text(str(manager.jobs()))\n"
        "    def stop(self):\n"
        "        pathlib.Path(__file__).with_name('stopped').write_text('yes')\n"
        "def make():\n"
        "    return App()\n"
    )
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(
        "daemon:\n  apps: ['myapp:make']\n  log_level: warning\n  error_log: daemon.log\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen([*GAFFERD, "-c", str(cfg), *private_api(tmp_path)], env=env)
    try:
        sock = tmp_path / "run" / "gafferd.sock"
        deadline = time.monotonic() + 10
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the app never started"
            time.sleep(0.02)
        assert curl("--unix-socket", str(sock), "http://g/ping") == (200, "OK")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert (tmp_path / "stopped").read_text() == "yes"
        log_text = (tmp_path / "daemon.log").read_text()
        assert "API listening" not in log_text  # info lines are below warning
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cfg.write_text("daemon:\n  apps: ['nosuchmodule:make']\n")
    r = gafferd("-c", str(cfg), *private_api(tmp_path))
    assert r.returncode == 2 and "daemon.apps: nosuchmodule:make: ModuleNotFoundError" in r.stderr
    cfg.write_text("daemon:\n  log_level: chatty\n")
    r = gafferd("--check", "-c", str(cfg))
    assert r.returncode == 2 and "gafferd.yml:2: daemon.log_level: must be one of" in r.stderr


def test_sigint_stops_gracefully_and_a_second_one_kills(tmp_path: Path) -> None:
    cfg = stubborn_config(tmp_path)
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"default.stubborn.0 | ready")
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        read_until(proc, b"SIGINT: stopping every job")
        # the job ignores SIGTERM for 60 s: a second signal kills every group now
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 1
        psutil.wait_procs(children, timeout=5)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_reexec_is_refused_on_a_broken_file_and_applies_a_changed_one(tmp_path: Path) -> None:
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web: {cmd: sleep, args: ['3600'], startsecs: 0}\n")
    sock = str(tmp_path / "run" / "gafferd.sock")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        read_until(proc, b"API listening on")
        web = os_pids(sock, "web")
        cfg.write_text("jobs:\n  web: {cmd: sleep, numprocesses: -1}\n")
        proc.send_signal(signal.SIGUSR2)
        read_until(proc, b"not re-executing: ")  # the new program could not start on it
        assert os_pids(sock, "web") == web
        cfg.write_text(
            "jobs:\n  web: {cmd: sleep, args: ['3600'], startsecs: 0}\n"
            "  extra: {cmd: sleep, args: ['3600'], startsecs: 0}\n"
        )
        proc.send_signal(signal.SIGUSR2)
        read_until(proc, b"re-executed in place: adopted 1 process(es)")
        read_until(proc, b"reloaded ")  # the file changed since: applied after the re-exec
        assert os_pids(sock, "web") == web and len(os_pids(sock, "extra")) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_damaged_saved_state_does_not_stop_the_start(tmp_path: Path) -> None:
    import sqlite3

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    conn = sqlite3.connect(state / "state.db")
    conn.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO state VALUES ('jobs', '{\"procs\": 5, \"jobs\": [1]')")
    conn.commit()
    conn.close()
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text("jobs:\n  web: {cmd: sleep, args: ['3600']}\n")
    with daemon(tmp_path, "-c", str(cfg)) as proc:
        out = read_until(proc, b"running 1 job(s)")
        assert b"the saved state is damaged; starting from the config" in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
