"""``gaffer send`` and ``gaffer recv`` against a real gafferd: what is sent
reaches the process (its answer shows in its output), refusals carry the
daemon's reason, bad arguments are usage errors."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from clikit import Gaffer, served, sleeper
from conftest import PYTHON, TIMEOUT, child
from gaffer.client import Client

CONFIG = (
    "jobs:\n"
    + sleeper("web")
    + "  cat:\n    cmd: cat\n    redirect_input: true\n    startsecs: 0\n"
    + f"  cs:\n    cmd: {PYTHON}\n    args: ['{child('streams.py')}']\n"
    + "    custom_streams: [ctl]\n    startsecs: 0\n"
)


def pid_of(gaffer: Gaffer, job: str) -> int:
    (row,) = next(j for j in gaffer.json("ps") if j["name"] == f"default.{job}")["processes"]
    return int(row["pid"])


def output_until(gaffer: Gaffer, pid: int, needle: bytes, label: str = "stdout") -> bytes:
    """The process's output (what the daemon kept, then what comes) until ``needle``."""
    got = b""
    with Client(gaffer.sock) as c:
        chunks = c.output(pid, label)
        chunks.settimeout(TIMEOUT)
        try:
            for chunk in chunks:
                got += chunk
                if needle in got:
                    return got
        finally:
            chunks.close()
    raise AssertionError(f"process {pid} never wrote {needle!r}; got {got!r}")


def read_until(proc: subprocess.Popen[str], needle: str, stderr: bool = False) -> str:
    """What a running command printed (stdout or stderr) until ``needle``."""
    pipe = proc.stderr if stderr else proc.stdout
    assert pipe is not None
    got = ""
    deadline = time.monotonic() + TIMEOUT
    with selectors.DefaultSelector() as sel:
        sel.register(pipe.fileno(), selectors.EVENT_READ)
        while needle not in got:
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), f"never printed {needle!r}; got {got!r}"
            data = os.read(pipe.fileno(), 65536)
            assert data, f"exited before printing {needle!r}; got {got!r}"
            got += data.decode()
    return got


def test_send_writes_to_a_process_and_it_answers(tmp_path: Path) -> None:
    with served(tmp_path, CONFIG) as gaffer:
        cat = pid_of(gaffer, "cat")
        assert gaffer.json("send", str(cat), "hello", "-n") == {"ok": True, "pid": cat, "bytes": 6}
        assert output_until(gaffer, cat, b"hello\n") == b"hello\n"
        # DATA '-' is standard input, as it is (no newline added)
        r = gaffer("send", str(cat), "-", input="from stdin: é\n")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"sent 15 bytes to process {cat}\n"
        assert output_until(gaffer, cat, b"stdin: \xc3\xa9\n").endswith(b"from stdin: \xc3\xa9\n")
        # a custom stream (the program answers on it in capitals)
        cs = pid_of(gaffer, "cs")
        r = gaffer("send", str(cs), "shout", "--newline", "--stream", "ctl")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"sent 6 bytes to stream 'ctl' of process {cs}\n"
        assert b"SHOUT\n" in output_until(gaffer, cs, b"SHOUT\n", "ctl")


def test_send_refusals_and_usage_errors(tmp_path: Path) -> None:
    with served(tmp_path, CONFIG) as gaffer:
        web, cat = pid_of(gaffer, "web"), pid_of(gaffer, "cat")
        r = gaffer("send", str(web), "x")
        assert r.returncode == 1
        assert f"process {web} has no stdin pipe (set redirect_input: true)" in r.stderr
        r = gaffer("send", "999", "x", "--json")
        assert r.returncode == 1 and '"errno": 404' in r.stdout
        assert "process 999 not found" in r.stderr
        r = gaffer("send", str(cat), "x", "--stream", "stdout")
        assert r.returncode == 1 and "'stdout' is an output stream" in r.stderr
        r = gaffer("send", str(cat), "x", "--stream", "nope")
        assert r.returncode == 1 and "no stream 'nope'" in r.stderr
        r = gaffer("send", "web", "x")
        assert r.returncode == 2 and "PID: expected a process id" in r.stderr
        r = gaffer("send", str(cat))
        assert r.returncode == 2 and "DATA" in r.stderr
        raw = subprocess.run(
            gaffer.argv("send", str(cat), "-"),
            input=b"\xff\xfe",
            capture_output=True,
            env=gaffer.env(),
            timeout=30,
        )
        assert raw.returncode == 2 and b"not UTF-8" in raw.stderr
    nobody = Gaffer(str(tmp_path / "none.sock"), tmp_path / "home")
    r = nobody("send", "1", "x")
    assert r.returncode == 3 and "cannot reach gafferd" in r.stderr


def test_recv_prints_what_the_process_writes_until_interrupted(tmp_path: Path) -> None:
    with served(tmp_path, CONFIG) as gaffer:
        cat = pid_of(gaffer, "cat")
        recv = gaffer.popen("recv", str(cat))
        try:
            read_until(recv, "receiving from process", stderr=True)
            assert gaffer("send", str(cat), "first line", "-n").returncode == 0
            assert read_until(recv, "first line\n") == "first line\n"
            recv.send_signal(signal.SIGINT)
            assert recv.wait(timeout=TIMEOUT) == 130
        finally:
            if recv.poll() is None:
                recv.kill()
                recv.wait()
        recv = gaffer.popen("recv", str(cat), "--json")
        try:
            read_until(recv, "receiving from process", stderr=True)
            assert gaffer("send", str(cat), "j", "-n").returncode == 0
            assert read_until(recv, "\n") == f'{{"pid": {cat}, "data": "j\\n"}}\n'
        finally:
            recv.kill()
            recv.wait()
        r = gaffer("recv", "999")
        assert r.returncode == 1 and "process 999 not found" in r.stderr
