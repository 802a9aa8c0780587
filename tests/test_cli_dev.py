"""``gaffer dev``: a Procfile run in the foreground, no daemon, as the real
command; its processes are real and none may outlive it."""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import psutil
from clikit import Gaffer
from test_cli_watch import read_until

PY = sys.executable
# web prints its $PORT and a variable of .env, worker two lines; then they wait
WEB = 'import os, time; print("web on", os.environ["PORT"], "greeting", os.environ["GREETING"])'
WORKER = 'import time; print("working"); print("still working")'
PROCFILE = f"""\
# a comment
web: {PY} -u -c '{WEB}; time.sleep(3600)'
worker: {PY} -u -c '{WORKER}; time.sleep(3600)'
"""


def gaffer_in(tmp_path: Path) -> Gaffer:
    return Gaffer(str(tmp_path / "no-daemon.sock"), tmp_path / "home")


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_dev_runs_a_procfile_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(PROCFILE)
    (tmp_path / ".env").write_text("GREETING=hello\n")
    gaffer = gaffer_in(tmp_path)
    proc = gaffer.popen("dev", "-c", "web=2", host=False, cwd=tmp_path)
    try:
        out = read_until(
            proc,
            lambda text: text.count("web on") == 2 and "still working" in text,
        )
        ours = psutil.Process(proc.pid)
        assert len(ours.children()) == 3  # one a process: web twice, worker once
        spawned = ours.children(recursive=True)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert not alive(spawned), spawned
    out += rest
    lines = out.splitlines()
    stamp = r"\d\d:\d\d:\d\d"
    # prefixes padded to the widest ("worker.0", "system"), $PORT as foreman sets it
    for want in (
        rf"{stamp} web\.0    \| web on 5000 greeting hello",
        rf"{stamp} web\.1    \| web on 5001 greeting hello",
        rf"{stamp} worker\.0 \| working",
        rf"{stamp} worker\.0 \| still working",
        rf"{stamp} system   \| SIGINT: stopping every process",
        rf"{stamp} web\.0    \| \[started, os pid \d+\]",
        rf"{stamp} worker\.0 \| \[stopped \(by SIGTERM\)\]",
    ):
        assert any(re.fullmatch(want, line) for line in lines), (want, out)
    assert "\x1b[" not in out  # no colours into a pipe
    assert sum("[stopped" in line for line in lines) == 3, out


def test_dev_stops_everything_when_a_process_exits(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text(
        "sleeper: sleep 3600\nquitter: echo giving up; exit 3\nidle: sleep 3600\n"
    )
    gaffer = gaffer_in(tmp_path)
    r = gaffer("dev", str(tmp_path / "Procfile"), "-c", "idle=0", "--color", host=False)
    assert r.returncode == 3, r.stderr
    plain = re.sub(r"\x1b\[[\d;]*m", "", r.stdout)
    lines = [line[9:] for line in plain.splitlines()]  # without the time
    assert lines.index("quitter.0 | giving up") < lines.index("quitter.0 | [exited with 3]")
    assert "system    | quitter.0 exited with 3: stopping every process" in lines, plain
    assert "sleeper.0 | [stopped (by SIGTERM)]" in lines, plain
    assert not any(line.startswith("idle") for line in lines)
    # coloured per process: two processes, two colours
    colours = set(re.findall(r"\x1b\[(\d+)m\d\d:\d\d:\d\d (?:sleeper|quitter)", r.stdout))
    assert len(colours) == 2, r.stdout


def test_dev_json_and_bad_input(tmp_path: Path) -> None:
    (tmp_path / "Procfile").write_text("once: echo one; echo two\n")
    gaffer = gaffer_in(tmp_path)
    r = gaffer("dev", str(tmp_path / "Procfile"), "--json", host=False)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["line"] for row in rows] == ["one", "two"]
    assert rows[0]["name"] == "once" and rows[0]["index"] == 0 and rows[0]["label"] == "stdout"
    assert "once.0 exited with 0: stopping every process" in r.stderr

    r = gaffer("dev", str(tmp_path / "nothing"), host=False)
    assert r.returncode == 2 and "cannot read" in r.stderr and "nothing" in r.stderr
    r = gaffer("dev", str(tmp_path / "Procfile"), "-c", "web=2", host=False)
    assert r.returncode == 2 and "no process type 'web'" in r.stderr
    r = gaffer("dev", str(tmp_path / "Procfile"), "-c", "once", host=False)
    assert r.returncode == 2 and "expected NAME=N" in r.stderr
    (tmp_path / "Bad").write_text("web python3\n")
    r = gaffer("dev", str(tmp_path / "Bad"), host=False)
    assert r.returncode == 2 and "Bad:1: expected 'name: command'" in r.stderr
