"""The job and process commands of ``gaffer`` (load, scale, kill, run,
export...) run for real against a real gafferd, as a user would type them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from clikit import Gaffer, served, sleeper
from test_cli_watch import interrupt, read_until

WEB = "name: web\ncmd: sleep\nargs: ['3600']\nstartsecs: 0\n"
# exits at once; gives up after two tries (fatal) instead of retrying for long
FAILING = (
    "  bad:\n    cmd: 'false'\n    numprocesses: 0\n    startsecs: 1\n"
    "    backoff: {initial: 0.05}\n"
    "    flapping: {attempts: 2, window: 10, retry_in: 60, max_retry: 0}\n"
)
SHOUT = (
    "  shout:\n    cmd: sh\n    numprocesses: 0\n"
    "    args: ['-c', 'echo out $$GREETING; echo err >&2; exit 3']\n"
)


def wait_event(gaffer: Gaffer, match: Callable[[dict[str, Any]], bool], *args: str) -> Any:
    """The first event that ``match``es, as ``gaffer events --json`` shows it;
    from the daemon's first event on (``--since 0``), so that one that came
    before the command subscribed is not missed."""
    found: list[dict[str, Any]] = []

    def done(text: str) -> bool:
        events = (json.loads(line) for line in text.splitlines(keepends=True) if line[-1] == "\n")
        found.extend(e for e in events if match(e))
        return bool(found)

    proc = gaffer.popen("events", "--json", "--since", "0", *args)
    try:
        read_until(proc, done)
    finally:
        interrupt(proc)
    return found[0]


def rows(jobs: list[Any], name: str) -> list[Any]:
    return next((j["processes"] for j in jobs if j["name"] == name), [])


def running_pids(jobs: list[Any], name: str) -> set[int]:
    return {r["pid"] for r in rows(jobs, name) if r["state"] == "running"}


def test_load_scale_kill_and_the_process_comes_back(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text(WEB)
    with served(tmp_path) as gaffer:
        loaded = gaffer.json("load", str(tmp_path / "web.yml"))
        assert loaded["loaded"] == ["default.web"] and loaded["ok"] is True
        assert loaded["status"] == {"default.web": "1/1 running"}

        r = gaffer("scale", "web=3")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "default.web: 3/3 running\n"
        three = running_pids(gaffer.json("ps"), "default.web")
        assert len(three) == 3
        down = gaffer.json("ps:scale", "web-2")
        assert down["numprocesses"] == {"default.web": 1} and down["ok"] is True
        [row] = rows(gaffer.json("ps"), "default.web")

        r = gaffer("kill", str(row["pid"]), "KILL")
        assert r.returncode == 0 and r.stdout == f"sent SIGKILL to process {row['pid']}\n"
        # the daemon starts another (gaffer pids only grow)
        spawn = wait_event(
            gaffer, lambda e: e["event"] == "spawn" and e["pid"] > max(three), "--job", "web"
        )
        [back] = rows(gaffer.json("ps"), "default.web")
        assert back["pid"] == spawn["pid"] and back["restarts"] == 1
        assert back["os_pid"] != row["os_pid"]

        killed = gaffer.json("kill", "web", "hup")
        assert killed == {"job": "default.web", "signal": "HUP", "signum": 1}
        r = gaffer("kill", "web", "NOSUCH")
        assert r.returncode == 2 and "unknown signal 'NOSUCH'" in r.stderr


def test_info_jobs_sessions(tmp_path: Path) -> None:
    config = "jobs:\n" + sleeper("web", 2) + sleeper("shop.api", 1)
    with served(tmp_path, config) as gaffer:
        info = gaffer.json("info", "web")
        assert info["name"] == "default.web" and info["config"]["args"] == ["3600"]
        assert len(info["slots"]) == 2
        r = gaffer("info", "web")
        assert r.returncode == 0
        assert r.stdout.startswith("default.web: active, ")
        assert "command: sleep 3600" in r.stdout and "SLOT" in r.stdout
        pid = info["processes"][0]
        proc = gaffer.json("ps:info", str(pid))
        assert proc["pid"] == pid and proc["name"] == "default.web" and proc["os_pid"] > 0
        r = gaffer("info", str(pid))
        assert f"process {pid} of default.web (slot 0): running" in r.stdout
        assert gaffer.json("sessions") == ["default", "shop"]
        assert gaffer.json("jobs") == ["default.web", "shop.api"]
        assert gaffer.json("jobs", "shop") == ["shop.api"]
        r = gaffer("jobs")
        assert r.stdout == "default.web\nshop.api\n"


def test_ps_and_jobs_filter_by_tag_and_info_shows_the_metadata(tmp_path: Path) -> None:
    idle = "    cmd: sleep\n    numprocesses: 0\n"
    config = (
        "jobs:\n"
        + f"  web:\n{idle}    tags: [web, front]\n    version: 2.1.0\n"
        + "    description: |\n      The shop's front end.\n      Serves /shop.\n"
        + f"  shop.api:\n{idle}    tags: [web]\n"
        + f"  batch:\n{idle}    tags: [nightly]\n"
        + f"  plain:\n{idle}"
    )
    with served(tmp_path, config) as gaffer:
        assert gaffer.json("jobs", "--tag", "web") == ["default.web", "shop.api"]
        either = ["default.web", "default.batch"]
        assert gaffer.json("jobs", "--tag", "front", "--tag", "nightly") == either
        assert gaffer.json("jobs", "shop", "--tag", "nightly") == []
        assert [j["name"] for j in gaffer.json("ps", "--tag", "web")] == [
            "default.web",
            "shop.api",
        ]
        assert [j["name"] for j in gaffer.json("ps", "web", "batch", "--tag", "nightly")] == [
            "default.batch"  # web is there, without the tag: left out, not an error
        ]
        r = gaffer("ps", "--tag", "nope")
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "no jobs tagged nope\n")
        r = gaffer("ps", "shop.nope", "--tag", "web")
        assert r.returncode == 1 and "shop.nope" in r.stderr
        r = gaffer("jobs", "-l", "--tag", "web")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["NAME", "VERSION", "TAGS", "DESCRIPTION"]
        assert lines[1].split() == [
            "default.web",
            "2.1.0",
            "web,front",
            "The",
            "shop's",
            "front",
            "end.",
        ]
        assert lines[2].split() == ["shop.api", "-", "web", "-"]
        assert len(lines) == 3
        assert gaffer.json("jobs", "--long", "--tag", "nightly") == [
            {
                "name": "default.batch",
                "version": "",
                "tags": ["nightly"],
                "description": "",
            }
        ]
        r = gaffer("info", "web")
        assert r.returncode == 0, r.stderr
        assert "  The shop's front end.\n  Serves /shop.\n  command: sleep\n" in r.stdout
        assert "  version: 2.1.0\n  tags: web, front\n" in r.stdout
        r = gaffer("info", "plain")
        assert "version" not in r.stdout and "tags" not in r.stdout


def test_scale_reports_the_slots_that_did_not_start(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + FAILING) as gaffer:
        r = gaffer("scale", "bad=2")
        assert r.returncode == 1
        assert r.stdout == "default.bad: 0/2 running\n"
        for slot in (0, 1):
            assert (
                f"default.bad.{slot} did not start (fatal); last run exited with status 1"
                in r.stderr
            )
        out = json.loads(gaffer("scale", "bad=2", "--json").stdout)
        assert out["ok"] is False and len(out["failures"]) == 2


def test_start_stop_restart_unload_wait_for_the_change(tmp_path: Path) -> None:
    # startsecs: a new process is "running" only a while after it started,
    # so a command that did not wait would be seen returning too soon
    with served(tmp_path, "jobs:\n" + sleeper("web", 2, startsecs=0.3)) as gaffer:
        r = gaffer("start", "web")  # already started: returns once both are up
        assert r.returncode == 0 and r.stdout == "default.web: 2/2 running\n"
        before = running_pids(gaffer.json("ps"), "default.web")
        assert len(before) == 2

        r = gaffer("restart", "web")
        assert r.returncode == 0 and r.stdout == "default.web: 2/2 running\n"
        after = running_pids(gaffer.json("ps"), "default.web")
        assert len(after) == 2 and not after & before

        again = gaffer.json("reload", "web")
        assert again["ok"] is True and again["restarted"] == ["default.web"]
        assert not running_pids(gaffer.json("ps"), "default.web") & after

        r = gaffer("stop", "web")
        assert r.returncode == 0 and r.stdout == "default.web: stopped\n"
        assert not any(p["pid"] for p in rows(gaffer.json("ps"), "default.web"))

        started = gaffer.json("ps:start", "web")
        assert started["ok"] is True and started["status"] == {"default.web": "2/2 running"}

        assert gaffer.json("unload", "web")["ok"] is True
        assert gaffer.json("jobs") == []


def test_update_rolls_the_processes_over(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web", 1)) as gaffer:
        [old] = running_pids(gaffer.json("ps"), "default.web")
        r = gaffer("update", "web", "--set", "numprocesses=2", "--set", "env.GREETING=hi")
        assert r.returncode == 0 and r.stdout == "default.web: 2/2 running\n", r.stderr
        config = gaffer.json("info", "web")["config"]
        assert config["numprocesses"] == 2 and config["env"] == {"GREETING": "hi"}
        assert old not in running_pids(gaffer.json("ps"), "default.web")

        (tmp_path / "web.yml").write_text("jobs:\n" + sleeper("web", 1))
        assert gaffer.json("update", str(tmp_path / "web.yml"))["ok"] is True
        assert gaffer.json("info", "web")["config"]["env"] == {}
        kept = running_pids(gaffer.json("ps"), "default.web")
        assert len(kept) == 1
        # metadata only: changed in place, the process kept
        r = gaffer("update", "web", "--set", "version=1.10", "--set", "tags=[a, b]")
        assert r.returncode == 0, r.stderr
        config = gaffer.json("info", "web")["config"]
        assert (config["version"], config["tags"]) == ("1.10", ["a", "b"])
        assert running_pids(gaffer.json("ps"), "default.web") == kept


def test_refusals_exit_1_with_the_daemons_reason(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text(WEB)
    with served(tmp_path, "jobs:\n" + sleeper("web", 1)) as gaffer:
        for args in (("scale", "nope=2"), ("info", "nope"), ("run", "nope")):
            r = gaffer(*args)
            assert r.returncode == 1, args
            assert r.stderr.startswith("gaffer: job default.nope not found (404)"), r.stderr
        r = gaffer("stop", "shop.nope")
        assert r.returncode == 1 and "job shop.nope not found (404)" in r.stderr
        r = gaffer("info", "99999", "--json")
        assert r.returncode == 1
        assert json.loads(r.stdout) == {"error": "process 99999 not found (404)", "errno": 404}
        r = gaffer("load", str(tmp_path / "web.yml"))
        assert r.returncode == 1 and "default.web: already loaded; nothing loaded" in r.stderr
        r = gaffer("scale", "web")
        assert r.returncode == 2 and "expected JOB=N, JOB+N or JOB-N, got 'web'" in r.stderr


def test_a_bad_file_is_exit_2_with_its_line_and_nothing_is_loaded(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text(
        "jobs:\n" + sleeper("web", 1) + "  api:\n    cmd: sleep\n    numprocesses: -1\n"
    )
    bad_list = tmp_path / "jobs.json"
    bad_list.write_text(
        '[{"name": "one", "cmd": "sleep 60"},\n {"name": "two", "cmd": "sleep", "bogus": 1}]\n'
    )
    with served(tmp_path) as gaffer:
        r = gaffer("load", str(bad_yaml))
        assert r.returncode == 2
        assert r.stderr == (
            f"gaffer: {bad_yaml}:9: jobs.api.numprocesses: must be an integer ≥ 0, got -1\n"
        )
        r = gaffer("load", str(bad_list), "--json")
        assert r.returncode == 2
        assert json.loads(r.stdout)["error"] == f"{bad_list}:2: [1].bogus: unknown option"
        assert gaffer.json("jobs") == []

        # the same reader without a daemon
        offline = Gaffer(str(tmp_path / "none.sock"), tmp_path / "home")
        r = offline("check", str(bad_yaml))
        assert r.returncode == 2 and f"{bad_yaml}:9: jobs.api.numprocesses" in r.stderr
        bad_yaml.write_text("jobs:\n" + sleeper("web", 1) + sleeper("shop.api", 1))
        r = offline("check", str(bad_yaml))
        assert r.returncode == 0 and r.stdout == "ok: 2 jobs\n"
        checked = offline.json("check", str(bad_yaml))
        assert checked["jobs"] == ["default.web", "shop.api"]


def test_procfile_load_and_run_follow(tmp_path: Path) -> None:
    app = tmp_path / "shop"
    app.mkdir()
    (app / "Procfile").write_text(
        "web: exec sleep 3600\nhello: echo port=$PORT greeting=$GREETING in $(pwd)\n"
    )
    (app / ".env").write_text("GREETING=hi\n")
    with served(tmp_path, "jobs:\n" + SHOUT) as gaffer:
        r = gaffer("load", str(app / "Procfile"), "--nostart")
        assert r.returncode == 0, r.stderr
        assert gaffer.json("jobs", "shop") == ["shop.web", "shop.hello"]
        assert not any(p["pid"] for p in rows(gaffer.json("ps"), "shop.web"))

        r = gaffer("run", "shop.hello", "-f")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"port=5100 greeting=hi in {app.resolve()}\n"

        r = gaffer("run", "shout", "-f", "--env", "GREETING=hello")
        assert r.returncode == 3
        assert r.stdout == "out hello\n" and "err\n" in r.stderr
        # gaffer's own failure is not the run's: 125, as docker run's
        r = gaffer("run", "nosuch", "-f")
        assert r.returncode == 125 and "not found" in r.stderr
        lines = [
            json.loads(line) for line in gaffer("run", "shout", "-f", "--json").stdout.splitlines()
        ]
        assert lines[-1] == {"pid": lines[0]["pid"], "exit_status": 3, "term_signal": 0}
        assert sorted((x["label"], x["data"]) for x in lines[:-1]) == [
            ("stderr", "err\n"),
            ("stdout", "out\n"),
        ]

        pid = gaffer.json("commit", "shout")["pid"]
        assert isinstance(pid, int)
        ended = wait_event(gaffer, lambda e: e["event"] == "exit" and e["pid"] == pid)
        assert ended["exit_status"] == 3

        # a session's name stands for its jobs
        assert gaffer.json("unload", "shop")["unloaded"] == ["shop.web", "shop.hello"]
        assert gaffer.json("sessions") == ["default"]


def test_export_then_load_gives_the_same_jobs(tmp_path: Path) -> None:
    config = (
        "jobs:\n"
        + sleeper("web", 2)
        + "    env: {GREETING: hi}\n    graceful_timeout: 3\n    flapping: false\n"
        + "    description: |\n      The web front.\n      Two lines: 'quoted', #not a comment\n"
        + "    tags: [web, 'v:1', web]\n    version: '1.10'\n"
        + "  shop.api:\n    cmd: sleep 3600\n    start: false\n    restart: on-failure\n"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with served(tmp_path / "a", config) as first:
        r = first("export")
        assert r.returncode == 0, r.stderr
        exported = yaml.safe_load(r.stdout)
        assert list(exported["jobs"]) == ["default.web", "shop.api"]
        web = exported["jobs"]["default.web"]
        assert (web["description"], web["tags"], web["version"]) == (
            "The web front.\nTwo lines: 'quoted', #not a comment\n",
            ["web", "v:1"],
            "1.10",  # a string still, not the number 1.1
        )
        assert exported["jobs"]["shop.api"] == {
            "cmd": "sleep 3600",
            "start": False,
            "restart": "on-failure",
        }
        assert first.json("export") == exported
        assert first.json("export", "--format", "yaml") == exported  # --json wins
        assert json.loads(first("export", "--format", "json", "web").stdout) == {
            "jobs": {"default.web": exported["jobs"]["default.web"]}
        }
        infos = {name: first.json("info", name)["config"] for name in exported["jobs"]}
    (tmp_path / "jobs.yml").write_text(r.stdout)
    with served(tmp_path / "b") as second:
        loaded = second.json("load", str(tmp_path / "jobs.yml"))
        assert loaded["ok"] is True
        assert loaded["status"] == {"default.web": "2/2 running"}  # shop.api: start false
        for name, cfg in infos.items():
            assert second.json("info", name)["config"] == cfg
        assert yaml.safe_load(second("export").stdout) == exported


def test_a_bare_name_is_the_default_job_then_a_session_for_every_command(tmp_path: Path) -> None:
    config = "jobs:\n" + sleeper("web") + sleeper("web.api") + sleeper("shop.cart")
    with served(tmp_path, config) as gaffer:
        # `web`: the job default.web, though a session web exists too
        assert [j["name"] for j in gaffer.json("ps", "web")] == ["default.web"]
        top = gaffer.json("top", "--once", "web")
        assert {p["name"] for p in top["processes"]} == {"default.web"}
        r = gaffer("stop", "web")
        assert r.returncode == 0 and r.stdout == "default.web: stopped\n", r.stderr
        running = {j["name"]: j["running"] for j in gaffer.json("ps")}
        assert running == {"default.web": 0, "web.api": 1, "shop.cart": 1}
        # only a session: its jobs
        assert [j["name"] for j in gaffer.json("ps", "shop")] == ["shop.cart"]
        assert gaffer.json("stop", "shop")["stopped"] == ["shop.cart"]
        # once the job is gone, `web` is the session
        assert gaffer.json("unload", "web")["unloaded"] == ["default.web"]
        assert [j["name"] for j in gaffer.json("ps", "web")] == ["web.api"]

        # neither: exit 1, in words and in JSON, for ps as for any command
        for args in (("ps", "nosuch"), ("stop", "nosuch"), ("logs", "nosuch")):
            r = gaffer(*args)
            assert r.returncode == 1 and r.stdout == "", args
            assert r.stderr == "gaffer: no job or session nosuch (404)\n", args
            r = gaffer(*args, "--json")
            assert r.returncode == 1, args
            assert json.loads(r.stdout) == {"error": "no job or session nosuch (404)", "errno": 404}
        r = gaffer("ps", "shop.nosuch", "--json")
        assert r.returncode == 1
        assert json.loads(r.stdout) == {"error": "no job shop.nosuch (404)", "errno": 404}
