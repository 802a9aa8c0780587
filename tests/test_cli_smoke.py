"""The command's own basics: ps against a real daemon, exit codes."""

from __future__ import annotations

from pathlib import Path

from clikit import Gaffer, served, sleeper


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
