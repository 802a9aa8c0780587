"""The command's own basics: ps against a real daemon, exit codes."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from clikit import Gaffer, served, sleeper
from gaffer.client import Client, ConnectionError


def test_ps_shows_every_process(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web", 2)) as gaffer:
        jobs = gaffer.json("ps")
        assert [j["name"] for j in jobs] == ["default.web"]
        assert len(jobs[0]["processes"]) == 2
        r = gaffer("ps")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split()[:3] == ["JOB", "#", "PID"]
        assert sum(1 for line in lines if line.startswith("default.web")) == 2


def test_unreachable_daemon_is_exit_3_with_a_hint(tmp_path: Path) -> None:
    gaffer = Gaffer(str(tmp_path / "nothing.sock"), tmp_path / "home")
    r = gaffer("ps")
    assert r.returncode == 3
    assert "cannot reach gafferd" in r.stderr and "gafferd" in r.stderr.splitlines()[-1]


def test_bad_arguments_are_exit_2(tmp_path: Path) -> None:
    gaffer = Gaffer(str(tmp_path / "nothing.sock"), tmp_path / "home")
    r = gaffer("ps", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr
    assert gaffer("no-such-command").returncode == 2


def test_wait_timeout_is_a_deadline(tmp_path: Path) -> None:
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    )
    stubborn = (
        "jobs:\n  stubborn:\n"
        f"    cmd: {sys.executable}\n"
        f"    args: ['-c', '{ignore_term}']\n"
        "    graceful_timeout: 60\n    startsecs: 0\n"
    )
    with served(tmp_path, stubborn) as gaffer:
        assert gaffer("start", "stubborn").returncode == 0
        t = time.monotonic()
        r = gaffer("stop", "stubborn", "--wait-timeout", "1")
        assert r.returncode == 1 and "timed out after 1s" in r.stderr, r.stderr
        assert time.monotonic() - t < 10
        # it is still stopping (60 s of grace): finish it off
        assert gaffer("kill", "stubborn", "KILL").returncode == 0
        assert gaffer("stop", "stubborn").returncode == 0


def test_a_timed_out_request_does_not_shift_the_answers(tmp_path: Path) -> None:
    ticker = "jobs:\n  tick:\n    cmd: sleep\n    args: ['3600']\n    startsecs: 0\n"
    with served(tmp_path, ticker) as gaffer:
        c = Client(gaffer.sock, timeout=0.5)
        (pid,) = c.pids()
        # a long poll that outlasts the client's timeout
        with pytest.raises(ConnectionError, match="did not answer in time"):
            c.request("GET", f"/streams/{pid}/stdout", params={"feed": "longpoll", "timeout": 3})
        assert c.version() == gaffer.json("daemon", "status")["version"]
        assert c.sessions() == ["default"]
        c.close()


def test_streams_give_up_on_a_daemon_that_never_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(8)  # connections wait in the backlog, never accepted
    gaffer = Gaffer(path, tmp_path / "home")
    try:
        for args in (["ps"], ["events"], ["logs", "-f"]):
            t = time.monotonic()
            r = gaffer(*args, "--timeout", "1", timeout=20)
            assert r.returncode == 3 and "did not answer in time" in r.stderr, (args, r.stderr)
            assert time.monotonic() - t < 10
    finally:
        mute.close()


def test_a_stream_deadline_holds_while_keepalives_come(tmp_path: Path) -> None:
    """A daemon that only ever sends SSE keep-alive comments (as gafferd does
    every 15 s on a quiet stream; here every 0.1 s) cannot hold a reader past
    its deadline."""
    path = str(tmp_path / "chatty.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            while not stop.wait(0.1):
                conn.sendall(b"e\r\n: keepalive\n\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        events = Client(path).events()
        events.body.set_deadline(time.monotonic() + 1.0)
        t = time.monotonic()
        with pytest.raises(ConnectionError, match="did not answer in time"):
            next(events)
        assert 0.9 < time.monotonic() - t < 3
        events.close()
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_restart_whose_new_process_fails_says_so_at_once(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    job = (
        "jobs:\n  web:\n    cmd: sh\n"
        f"    args: ['-c', 'test -e {flag} && exit 3; exec sleep 3600']\n"
        "    startsecs: 0.5\n"
    )
    with served(tmp_path, job) as gaffer:
        assert gaffer("start", "web").returncode == 0
        (before,) = [r["os_pid"] for r in gaffer.json("ps")[0]["processes"]]
        flag.touch()  # from now on a new process exits at once
        t = time.monotonic()
        r = gaffer("restart", "web")
        assert r.returncode == 1, r
        assert "the new process failed to start" in r.stderr and "(409)" in r.stderr
        assert time.monotonic() - t < 15  # not the 60 s wait
        # the old process was kept, in its slot
        rows = gaffer.json("ps")[0]["processes"]
        assert [(p["os_pid"], p["state"]) for p in rows] == [(before, "running")]


def test_a_crashing_job_says_why_in_logs_and_in_the_scale_report(tmp_path: Path) -> None:
    bad = (
        "jobs:\n  bad:\n    cmd: sh\n"
        "    args: ['-c', 'echo starting; echo cannot open /etc/app.conf >&2; exit 1']\n"
        "    numprocesses: 0\n"
    )
    with served(tmp_path, bad) as gaffer:
        r = gaffer("scale", "bad=1")
        assert r.returncode == 1
        assert "did not start" in r.stderr and ": cannot open /etc/app.conf" in r.stderr
        # no process is left to tail: its last lines come with its exit
        r = gaffer("logs", "bad")
        assert r.returncode == 0
        assert r.stdout.splitlines()[-3:] == [
            "bad.0 | starting",
            "bad.0 | cannot open /etc/app.conf",
            "bad.0 | [exited with 1]",
        ]
        info = gaffer.json("info", "bad")
        assert info["history"][-1]["output"] == {
            "stdout": ["starting"],
            "stderr": ["cannot open /etc/app.conf"],
        }
