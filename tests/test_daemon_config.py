"""gafferd's config file: include:, env_file: and procfile: (parsed from real files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from gaffer.daemon.config import load_file
from gaffer.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_files_and_globs(tmp_path: Path) -> None:
    main = write(
        tmp_path / "gafferd.yml", "include: [conf.d/*.yml, extra.yml]\njobs:\n  a: {cmd: sleep}\n"
    )
    write(tmp_path / "conf.d" / "10-web.yml", "jobs:\n  web: {cmd: sleep}\n")
    write(tmp_path / "conf.d" / "20-batch.yml", "jobs:\n  batch.report: {cmd: sleep}\n")
    write(tmp_path / "extra.yml", "jobs:\n  x: {cmd: sleep}\n")
    cfg = load_file(str(main))
    assert [(e.session, e.config.name) for e in cfg.jobs] == [
        ("default", "a"),
        ("default", "web"),
        ("batch", "report"),
        ("default", "x"),
    ]


def test_include_errors_name_the_file_and_line(tmp_path: Path) -> None:
    main = write(tmp_path / "gafferd.yml", "jobs:\n  web: {cmd: sleep}\ninclude: more.yml\n")
    write(tmp_path / "more.yml", "jobs:\n  other: {cmd: sleep}\n  web: {cmd: sleep}\n")
    with pytest.raises(ConfigError) as e:
        load_file(str(main))
    assert "more.yml:3: jobs.web: the same job as jobs.web at" in e.value.reason
    assert "gafferd.yml:2" in e.value.reason
    write(tmp_path / "more.yml", "daemon: {loop: asyncio}\n")
    with pytest.raises(
        ConfigError, match=re.escape("more.yml:1: daemon: daemon: settings belong in the main")
    ):
        load_file(str(main))
    write(tmp_path / "gafferd.yml", "jobs: {}\ninclude: missing.yml\n")
    with pytest.raises(
        ConfigError, match=re.escape("gafferd.yml:2: include: no such file: missing.yml")
    ):
        load_file(str(main))
    write(tmp_path / "more.yml", "jobs:\n  web: {cmd: sleep, numprocesses: -2}\n")
    write(tmp_path / "gafferd.yml", "include: more.yml\n")
    with pytest.raises(ConfigError, match=re.escape("more.yml:2: jobs.web.numprocesses")):
        load_file(str(main))


def test_env_file(tmp_path: Path) -> None:
    write(
        tmp_path / "web.env",
        "# the web's settings\nexport DB_URL=postgres://db/app\nQUOTED='a b'\nPLAIN=x # a comment\n"
        "\nOVERRIDDEN=from-file\n",
    )
    main = write(
        tmp_path / "gafferd.yml",
        "jobs:\n  web:\n    cmd: sleep\n    env_file: web.env\n"
        "    env: {OVERRIDDEN: from-config}\n",
    )
    (entry,) = load_file(str(main)).jobs
    assert entry.config.env == {
        "DB_URL": "postgres://db/app",
        "QUOTED": "a b",
        "PLAIN": "x",
        "OVERRIDDEN": "from-config",
    }
    write(tmp_path / "gafferd.yml", "jobs:\n  web:\n    cmd: sleep\n    env_file: nope.env\n")
    with pytest.raises(
        ConfigError, match=re.escape("gafferd.yml:4: jobs.web.env_file: cannot read nope.env")
    ):
        load_file(str(main))
    write(tmp_path / "web.env", "NOT AN ASSIGNMENT\n")
    write(tmp_path / "gafferd.yml", "jobs:\n  web:\n    cmd: sleep\n    env_file: [web.env]\n")
    with pytest.raises(
        ConfigError, match=re.escape("jobs.web.env_file: web.env:1: expected KEY=VALUE")
    ):
        load_file(str(main))


def test_procfile_is_a_session(tmp_path: Path) -> None:
    write(
        tmp_path / "Procfile",
        "# processes\nweb: python3 -m http.server $PORT\nworker: ./work --queue=high\n",
    )
    main = write(tmp_path / "gafferd.yml", "procfile: {path: Procfile, session: shop}\n")
    jobs = load_file(str(main)).jobs
    assert [(e.session, e.config.name) for e in jobs] == [("shop", "web"), ("shop", "worker")]
    web = jobs[0].config
    assert web.shell and web.cmd == "python3 -m http.server $PORT" and web.env == {"PORT": "5000"}
    assert jobs[1].config.env == {"PORT": "5100"}
    write(tmp_path / "Procfile", "web python3\n")
    with pytest.raises(ConfigError, match=re.escape("Procfile:1: expected 'name: command'")):
        load_file(str(main))


OLD_INI = """\
[gaffer]
bind = 127.0.0.1:5000

[job:web]
cmd = python3
args = -m http.server 8000
numprocesses = 2
env:MODE = prod
redirect_output = stdout, stderr
flapping = 3 2 5 4

[process:worker/batch]
cmd = ./work.sh
shell = true
graceful_timeout = 30
priority = 5

[env:web]
lang = C.UTF-8

[webhooks]
load = http://hooks.example/load
"""


def test_gaffer_05_ini_is_read_and_converted(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml
    from gaffer.daemon.config import parse

    ini_file = write(tmp_path / "gafferd.ini", OLD_INI)
    cfg = load_file(str(ini_file))
    assert cfg.http.bind == ("127.0.0.1:5000",)
    jobs = {(e.session, e.config.name): e.config for e in cfg.jobs}
    web = jobs["default", "web"]
    assert web.args == ("-m", "http.server", "8000") and web.numprocesses == 2
    assert web.env == {"MODE": "prod", "LANG": "C.UTF-8"} and web.os_env is True
    assert (web.flapping.attempts, web.flapping.window) == (3, 2.0)
    worker = jobs["batch", "worker"]
    assert worker.shell and worker.graceful_timeout == 30 and worker.priority == 5

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, str(root / "gafferd"), "--convert", str(ini_file)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(
        "# [webhooks] load = http://hooks.example/load: gaffer has no webhooks"
    )
    converted = parse(r.stdout, "converted.yml")
    assert {(e.session, e.config.name): e.config for e in converted.jobs} == jobs
    assert yaml.safe_load(r.stdout)["daemon"] == {"bind": ["127.0.0.1:5000"]}

    write(tmp_path / "bad.ini", "[job:web]\ncmd = x\nnumprocesses = many\n")
    with pytest.raises(ConfigError, match=re.escape("[job:web] numprocesses: bad value 'many'")):
        load_file(str(tmp_path / "bad.ini"))


def test_job_metadata_is_read_and_bad_values_name_file_line_and_field(tmp_path: Path) -> None:
    main = write(
        tmp_path / "gafferd.yml",
        "jobs:\n"
        "  shop.web:\n"
        "    cmd: sleep\n"
        "    description: |\n"
        "      The shop's front end.\n"
        "      Serves /shop.\n"
        "    tags: [web, shop, web]\n"
        "    version: 2.1.0\n",
    )
    (entry,) = load_file(str(main)).jobs
    assert entry.config.description == "The shop's front end.\nServes /shop.\n"
    assert entry.config.tags == ("web", "shop")
    assert entry.config.version == "2.1.0"
    for line, bad, reason in (
        (4, "    description: [not, text]\n", "jobs.shop.web.description: must be a string"),
        (4, "    tags: [web, 'two words']\n", "jobs.shop.web.tags[1]: bad tag 'two words'"),
        (4, "    tags: web\n", "jobs.shop.web.tags: must be a list of tags"),
        (
            4,
            "    version: 2.0\n",
            "jobs.shop.web.version: must be a string, got the number 2.0 (in YAML, quote it)",
        ),
    ):
        write(main, "jobs:\n  shop.web:\n    cmd: sleep\n" + bad)
        with pytest.raises(ConfigError, match=re.escape(f"gafferd.yml:{line}: {reason}")):
            load_file(str(main))
