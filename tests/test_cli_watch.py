"""``gaffer logs``, ``events``, ``top`` and ``completion`` against a real
gafferd: real output of real processes, live events that a test causes."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from clikit import Gaffer, served, sleeper
from gaffer.client import Client

PY = sys.executable
# prints twenty numbered lines to stdout, one to stderr, then waits; on SIGTERM,
# says "bye" and exits, leaving a child to say "late" on its stdout a moment after
TALKER = (
    "import os, signal, subprocess, sys, time\n"
    "def bye(*a):\n"
    "    print('bye')\n"
    "    subprocess.Popen(['sh', '-c', 'sleep 0.3; echo late'])\n"
    "    os._exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "for i in range(1, 21): print('line', i)\n"
    "print('oops', file=sys.stderr)\n"
    "print('done')\n"
    "sys.stdout.flush(); sys.stderr.flush()\n"
    "time.sleep(3600)\n"
)
# a line every millisecond, numbered, for ever; each ends with a byte that is
# not UTF-8 (shown as U+FFFD, three bytes where the process wrote one)
TICKER = (
    "import sys, time, itertools\n"
    "for i in itertools.count():\n"
    "    sys.stdout.buffer.write(b'tick %d \\xff\\n' % i); sys.stdout.flush(); time.sleep(0.001)\n"
)


def py_job(name: str, code: str, n: int = 1) -> str:
    return (
        f"  {name}:\n    cmd: {PY}\n    args: ['-u', '-c', {json.dumps(code)}]\n"
        f"    numprocesses: {n}\n    startsecs: 0\n"
    )


def read_until(
    proc: subprocess.Popen[str], done: Callable[[str], bool], timeout: float = 15
) -> str:
    """What ``proc`` printed on stdout, read until ``done(text)`` holds; fails
    on timeout or if it exits first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not done(buf.decode(errors="replace")):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"timed out; got:\n{buf.decode(errors='replace')}")
            chunk = os.read(fd, 65536)
            if not chunk:
                err = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"exited {proc.wait()} first; got:\n{buf.decode()}\n{err}")
            buf += chunk
    return buf.decode(errors="replace")


def interrupt(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C: the command must end quietly with exit code 0; the rest of its output."""
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    return out


def wait_output(gaffer: Gaffer, pid: int, needle: bytes) -> None:
    """Until process ``pid`` has written ``needle`` (on its stdout)."""
    with Client(gaffer.sock) as c:
        buf = b""
        for chunk in c.stream(f"/streams/{pid}/stdout", timeout=10):
            buf += chunk
            if needle in buf:
                return
    raise AssertionError(f"process {pid} never wrote {needle!r}")


def last_seq(gaffer: Gaffer) -> str:
    """The sequence number of the daemon's latest event: ``events --since``
    it replays whatever happens after now, even before the command is
    subscribed (so that a test needs no guess at when it is)."""
    with Client(gaffer.sock) as c:
        text = c.metrics()
    m = re.search(r"^gaffer_daemon_events_published_total (\d+)", text, re.M)
    assert m, text
    return m.group(1)


def pids_of(gaffer: Gaffer, job: str) -> list[int]:
    with Client(gaffer.sock) as c:
        return c.job_pids(job)


def test_logs_shows_the_last_lines_of_each_process_prefixed(tmp_path: Path) -> None:
    config = "jobs:\n" + py_job("talk", TALKER, 2) + sleeper("quiet")
    with served(tmp_path, config) as gaffer:
        for pid in pids_of(gaffer, "default.talk"):
            wait_output(gaffer, pid, b"done\n")
        r = gaffer("logs", "talk", "-n", "3")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        for i in (0, 1):
            mine = [line for line in lines if line.startswith(f"talk.{i} |")]
            # the last three of stdout, and stderr's one line
            assert mine == [
                f"talk.{i} | line 19",
                f"talk.{i} | line 20",
                f"talk.{i} | done",
                f"talk.{i} | oops",
            ], r.stdout
        assert "\x1b[" not in r.stdout  # no colours into a pipe

        r = gaffer("logs", "talk", "--stream", "stderr", "--no-prefix")
        assert r.stdout.splitlines() == ["oops", "oops"], r.stdout

        # colours on demand: one per process
        r = gaffer("logs", "talk", "-n", "1", "--stream", "stdout", "--color")
        colours = re.findall(r"\x1b\[(\d+)mtalk\.\d", r.stdout)
        assert len(colours) == 2 and colours[0] != colours[1], r.stdout

        # a process by its pid
        pid = pids_of(gaffer, "default.talk")[0]
        r = gaffer("logs", str(pid), "-n", "1", "--stream", "stdout")
        assert r.stdout.splitlines() == [f"talk.0({pid}) | done"], r.stdout

        rows = [json.loads(line) for line in gaffer("logs", "talk", "--json").stdout.splitlines()]
        assert len(rows) == 2 * 11  # ten stdout lines and one stderr line each
        assert {r["label"] for r in rows} == {"stdout", "stderr"}
        assert rows[0].keys() == {"name", "pid", "index", "label", "line"}
        assert rows[0]["name"] == "default.talk" and rows[0]["line"] == "line 12"

        r = gaffer("logs", "nosuch")
        assert r.returncode == 1 and "no job or session nosuch (404)" in r.stderr
        r = gaffer("logs", "-n", "many")
        assert r.returncode == 2 and "-n/--lines" in r.stderr


def test_logs_follow_prints_live_lines_once_each(tmp_path: Path) -> None:
    config = "jobs:\n" + py_job("tick", TICKER) + py_job("talk", TALKER)
    with served(tmp_path, config) as gaffer:
        (tick_pid,) = pids_of(gaffer, "default.tick")
        wait_output(gaffer, tick_pid, b"tick 30 ")
        proc = gaffer.popen("logs", "-f", "-n", "5")
        try:
            out = read_until(proc, lambda text: "talk.0 | done" in text)
            # a new process: its start and its output show up live
            with Client(gaffer.sock) as c:
                c.scale("default.talk", "+1")
            out += read_until(proc, lambda text: "talk.1 | done" in text)
            # stopped: its last words (even those written after it exited),
            # then that it has stopped
            with Client(gaffer.sock) as c:
                c.scale("default.talk", "-1")
            out += read_until(proc, lambda text: "talk.1 | [stopped" in text)
            out += read_until(proc, lambda text: text.count("| tick ") >= 300)
        finally:
            out += interrupt(proc)
        tick = re.compile(r"tick\.0 +\| tick (\d+) \ufffd")
        lines = [line for line in out.splitlines() if line.startswith("tick.0 ")]
        # no piece of a line (the tail and the live output meet on raw byte offsets)
        assert all(tick.fullmatch(line) for line in lines), [
            line for line in lines if not tick.fullmatch(line)
        ]
        ticks = [int(m.group(1)) for line in lines if (m := tick.fullmatch(line))]
        # the tail's last five lines, then every live line: none twice, none lost
        assert len(ticks) >= 300 and ticks == list(range(ticks[0], ticks[0] + len(ticks))), out
        talk1 = [line for line in out.splitlines() if line.startswith("talk.1 ")]
        assert re.fullmatch(r"talk\.1 +\| \[started, os pid \d+\]", talk1[0]), out
        # stdout and stderr are two pipes: "oops" may come anywhere among them
        assert talk1.count("talk.1 | oops") == 1, out
        assert [x for x in talk1[1:] if x != "talk.1 | oops"] == [
            *(f"talk.1 | line {i}" for i in range(1, 21)),
            "talk.1 | done",
            "talk.1 | bye",
            "talk.1 | late",
            "talk.1 | [stopped]",
        ], out


def test_logs_follow_json_lines(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + py_job("tick", TICKER)) as gaffer:
        proc = gaffer.popen("logs", "tick", "-f", "-n", "0", "--json")
        try:
            out = read_until(proc, lambda text: text.count("\n") >= 5)
        finally:
            out += interrupt(proc)
        rows = [json.loads(line) for line in out.splitlines()]
        assert all(r["name"] == "default.tick" and r["label"] == "stdout" for r in rows)
        assert all(r["line"].startswith("tick ") for r in rows), rows


def spawned(text: str) -> set[str]:
    """The jobs of the spawn events among the whole lines of ``events --json``."""
    events = (json.loads(x) for x in text.splitlines(keepends=True) if x.endswith("\n"))
    return {e.get("name") for e in events if e.get("event") == "spawn"}


def test_events_shows_live_events(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web") + sleeper("db")) as gaffer:
        seq = last_seq(gaffer)
        proc = gaffer.popen("events", "--job", "web", "--since", seq)
        plain = gaffer.popen("events", "--json", "--since", seq)
        try:
            with Client(gaffer.sock) as c:
                c.scale("default.db", "+1")
                c.scale("default.web", "+1")
            out = read_until(proc, lambda text: re.search(r" spawn .* index=1", text) is not None)
            js = read_until(plain, lambda text: spawned(text) >= {"default.db", "default.web"})
        finally:
            out += interrupt(proc)
            js += interrupt(plain)
        line = next(x for x in out.splitlines() if " spawn " in x)
        assert re.match(r"\d\d:\d\d:\d\d\.\d{3} spawn +default\.web pid=\d+ os_pid=\d+", line), out
        assert "default.db" not in out  # --job web
        assert spawned(js) >= {"default.db", "default.web"}  # every job: no --job
        events = [json.loads(x) for x in js.splitlines()]
        assert all(isinstance(e["seq"], int) and isinstance(e["time"], float) for e in events)


def test_events_since_replays(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web")) as gaffer:
        proc = gaffer.popen("events", "--since", "0", "--json")
        try:
            out = read_until(proc, lambda text: '"event": "load"' in text)
        finally:
            out += interrupt(proc)
        assert any(json.loads(x).get("name") == "default.web" for x in out.splitlines())
        r = gaffer("events", "BOGUS:1")
        assert r.returncode == 1 and "unknown topic" in r.stderr


def test_top_once_prints_a_table(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web", 2) + sleeper("db")) as gaffer:
        r = gaffer("top", "--once", "web")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert re.match(r"\d\d:\d\d:\d\d +2 processes, 2 running", lines[0]), r.stdout
        assert lines[1].split()[:4] == ["PID", "OS", "PID", "JOB"]
        rows = [line.split() for line in lines[2:] if line.strip()]
        assert len(rows) == 2 and all(row[2] == "default.web" for row in rows), r.stdout
        assert all(row[4] == "running" and row[5].endswith("%") for row in rows), r.stdout

        r = gaffer("top", "-n", "2", "-d", "0.05", "--json")
        docs = [json.loads(line) for line in r.stdout.splitlines()]
        assert len(docs) == 2 and len(docs[0]["processes"]) == 3
        assert {p["name"] for p in docs[1]["processes"]} == {"default.web", "default.db"}
        assert gaffer("top", "-d", "0").returncode == 2


def test_completion_scripts(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web") + sleeper("shop.cart")) as gaffer:
        r = gaffer("completion", "bash", host=False)
        assert r.returncode == 0, r.stderr
        script = r.stdout
        for command in ("ps", "logs", "events", "top", "dev", "completion"):
            assert re.search(rf"\b{re.escape(command)}\b", script), command
        check = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert check.returncode == 0, check.stderr
        # job names complete from the daemon
        env = gaffer.env(GAFFER_HOST=gaffer.sock)
        r = gaffer("completion", "--jobs", host=False, env=env)
        assert r.stdout.split() == ["shop.cart", "web"], r.stdout
        # ... as bash itself completes them, with the script loaded
        probe = (
            f"{script}\n"
            f'gaffer() {{ {" ".join(gaffer.argv(host=False))} "$@"; }}\n'
            "COMP_WORDS=(gaffer logs w); COMP_CWORD=2; COMP_LINE='gaffer logs w'; "
            "COMP_POINT=${#COMP_LINE}\n"
            '_shtab_gaffer; echo "${COMPREPLY[@]}"\n'
        )
        r = subprocess.run(["bash", "-c", probe], text=True, capture_output=True, env=env)
        assert r.stdout.split() == ["web"], (r.stdout, r.stderr)
    zsh = gaffer("completion", "zsh", host=False)
    assert zsh.returncode == 0 and zsh.stdout.startswith("#compdef gaffer")
    assert gaffer("completion", host=False).returncode == 2
