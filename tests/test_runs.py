"""Run records (gafferd's ``runs.db``): one-off runs and exits of supervised
processes, with their exit status, reason and last lines of output, listed by
``gaffer runs``/``gaffer history``; kept across restarts, pruned by
``daemon.runs``; a running one-off run cancelled with ``gaffer cancel``; and
``gaffer run JOB -- ARGS`` replacing the job's args."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clikit import served, sleeper
from gaffer.client import Client
from gaffer.daemon.config import parse
from gaffer.errors import ConfigError


def jobs(tmp_path: Path) -> str:
    script = tmp_path / "task.sh"
    script.write_text('#!/bin/sh\necho "args: $*"\necho bad >&2\nexit 3\n')
    script.chmod(0o755)
    return (
        "jobs:\n"
        "  task:\n"
        f"    cmd: {script}\n"
        "    args: ['x']\n"
        "    start: false\n"
        "  crash:\n"
        "    cmd: sh\n"
        "    args: ['-c', 'echo dying; exit 7']\n"
        "    restart: never\n"
        "    startsecs: 0\n"
        "    start: false\n"
    )


def wait_record(events: Any, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first ``record`` event passing ``check`` (the stream times out)."""
    for ev in events:
        if ev.get("event") == "record" and check(ev):
            return ev
    raise AssertionError("the event stream ended")


def by_pid(runs: list[dict[str, Any]], pid: int) -> dict[str, Any]:
    [run] = [r for r in runs if r["pid"] == pid]
    return run


def test_runs_are_recorded_with_their_output_and_survive_a_restart(tmp_path: Path) -> None:
    config = jobs(tmp_path)
    with served(tmp_path, config) as gaffer, Client(gaffer.sock) as c:
        with c.events(["record"], timeout=15) as events:
            r = gaffer("run", "task", "--", "a", "b")
            assert r.returncode == 0, r.stderr
            task_pid = int(r.stdout)
            wait_record(
                events,
                lambda e: e["pid"] == task_pid and e["output"].get("stderr") == ["bad"],
            )
            assert gaffer("start", "--no-wait", "crash").returncode == 0
            wait_record(
                events, lambda e: e["name"] == "default.crash" and e["output"].get("stdout")
            )

        runs = gaffer.json("runs")
        task = by_pid(runs, task_pid)
        assert task["job"] == "default.task"
        assert task["once"] is True
        assert (task["exit_status"], task["term_signal"], task["reason"]) == (3, 0, "exited")
        # the args replaced the job's ('x'); the program is the job's
        assert task["output"] == {"stdout": ["args: a b"], "stderr": ["bad"]}
        assert task["ended"] >= task["started"] > 0
        [crash] = [r for r in runs if r["job"] == "default.crash"]
        assert crash["once"] is False
        assert (crash["exit_status"], crash["reason"]) == (7, "exited")
        assert crash["output"]["stdout"] == ["dying"]
        assert runs.index(crash) < runs.index(task)  # newest first

        assert [r["pid"] for r in gaffer.json("history", "crash")] == [crash["pid"]]
        assert [r["pid"] for r in gaffer.json("runs", "--once")] == [task_pid]
        assert gaffer.json("runs", "--reason", "killed") == []
        table = gaffer("runs")
        assert table.returncode == 0, table.stderr
        header, *rows = table.stdout.splitlines()
        assert header.split() == ["ID", "JOB", "PID", "STARTED", "DURATION", "EXIT", "REASON"]
        assert any(
            "default.task (run)" in row and row.split()[-2:] == ["3", "exited"] for row in rows
        )
        long = gaffer("history", "task", "-l").stdout
        assert "    stderr: bad" in long
        assert json.loads(gaffer("runs", "--json", "-n", "1").stdout) == [crash]

    with served(tmp_path, config) as gaffer:  # a new daemon on the same state dir
        assert gaffer.json("runs") == runs
        assert gaffer.json("history", "task")[0]["output"]["stdout"] == ["args: a b"]


def test_retention_keeps_the_newest_runs(tmp_path: Path) -> None:
    config = (
        "daemon:\n  runs: {keep: 3, max_age: 30d}\njobs:\n  quick: {cmd: 'true', start: false}\n"
    )
    with served(tmp_path, config) as gaffer, Client(gaffer.sock) as c:
        pids = []
        with c.events(["record"], timeout=15) as events:
            for _ in range(5):
                pids.append(c.commit("quick"))
                wait_record(events, lambda e: e["pid"] == pids[-1])
        assert [r["pid"] for r in gaffer.json("runs")] == pids[:1:-1]


@pytest.mark.parametrize(
    ("runs", "field"),
    [
        ("{keep: 0}", "daemon.runs.keep"),
        ("{max_age: soon}", "daemon.runs.max_age"),
        ("{kept: 3}", "daemon.runs.kept"),
        ("[1]", "daemon.runs"),
    ],
)
def test_bad_retention_settings_name_the_field(runs: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(f"daemon:\n  runs: {runs}\n")
    assert e.value.field == field


def test_cancel_stops_a_running_one_off_run(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("long") + "    start: false\n") as gaffer:
        pid = gaffer.json("run", "long")["pid"]
        [running] = gaffer.json("runs", "--once")
        assert (running["pid"], running["running"], running["reason"]) == (pid, True, "running")

        r = gaffer("cancel", str(running["id"]))
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("cancelled")
        [run] = gaffer.json("runs")
        assert (run["id"], run["running"], run["reason"]) == (running["id"], False, "cancelled")
        assert run["term_signal"] == 15  # stopped gracefully (SIGTERM), not killed
        assert gaffer.json("ps")[0]["processes"] == []

        again = gaffer("cancel", str(run["id"]))
        assert again.returncode == 1
        assert f"run {run['id']} has already ended (cancelled)" in again.stderr
        missing = gaffer("cancel", "999")
        assert missing.returncode == 1
        assert "run 999 not found" in missing.stderr


def test_runs_need_gafferd(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web")) as gaffer:
        r = gaffer("runs", "-n", "0")
        assert r.returncode == 2
        assert "--limit" in r.stderr
