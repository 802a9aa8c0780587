"""gafferd as a user runs it: a real daemon process, its config file, its signals."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

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
        [*GAFFERD, "-c", str(cfg)],
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
