"""The admin commands against a real gafferd: ``login``/``logout`` and the
profiles they write, which daemon and key a command uses (``-H``,
``$GAFFER_HOST``, ``-P``), ``key:*``, ``user:*``, ``daemon
status|reload|reexec``, and refusals (no key, a wrong password, a key
without the right)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from clikit import Gaffer, served, sleeper
from test_gafferd import daemon, gafferd, private_api, read_until

PASSWORD = "s3cret!"
LISTENING = b"API listening on http://127.0.0.1:"


@contextlib.contextmanager
def served_tcp(tmp_path: Path, config: str = "", admin: str | None = None) -> Iterator[Gaffer]:
    """A gafferd on its unix socket and on a free TCP port (``gaffer.url``),
    with an admin user ``admin`` (password PASSWORD) created first."""
    if admin is not None:
        env = {**os.environ, "GAFFERD_ADMIN_PASSWORD": PASSWORD}
        r = gafferd(*private_api(tmp_path), "--create-admin-user", admin, env=env)
        assert r.returncode == 0, r.stderr
    cfg = tmp_path / "gafferd.yml"
    cfg.write_text(config or "jobs: {}\n")
    with daemon(tmp_path, "-c", str(cfg), "--bind", "127.0.0.1:0") as proc:
        out = read_until(proc, b"gafferd ")  # its ready line, after the listening ones
        port = out.split(LISTENING)[1].split(b"\n")[0].decode()
        gaffer = Gaffer(str(tmp_path / "run" / "gafferd.sock"), tmp_path / "home", proc)
        gaffer.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        yield gaffer
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)


def profiles(gaffer: Gaffer) -> dict[str, Any]:
    data = json.loads((gaffer.home / ".gaffer" / "gaffer.yml").read_text())
    return data["profiles"]  # type: ignore[no-any-return]


def os_pids(gaffer: Gaffer) -> dict[str, list[int]]:
    return {
        j["name"]: [p["os_pid"] for p in j["processes"]] for j in gaffer.json("ps", "--no-stats")
    }


def where(gaffer: Gaffer, *args: str, **env: str) -> tuple[str, str | None]:
    """Which daemon (and profile) a command without -H goes to."""
    st = gaffer.json(*args, "daemon", "status", host=False, env=gaffer.env(**env))
    return st["host"], st["profile"]


def test_login_stores_a_private_profile_that_later_commands_use(tmp_path: Path) -> None:
    with served_tcp(tmp_path, "jobs:\n" + sleeper("web"), admin="root") as gaffer:
        url: str = gaffer.url  # type: ignore[attr-defined]
        # TCP wants a key: the daemon's reason, exit 1
        r = gaffer("-H", url, "ps", host=False)
        assert r.returncode == 1 and "an API key is required" in r.stderr and "401" in r.stderr
        # a wrong password: refused, nothing stored
        r = gaffer(
            "login", "-P", "prod", "-H", url, "--user", "root", "--password-stdin",
            host=False, input="wrong\n",
        )  # fmt: skip
        assert r.returncode == 1 and "wrong username or password" in r.stderr
        assert not (gaffer.home / ".gaffer").exists()

        r = gaffer(
            "login", "-P", "prod", "-H", url, "--user", "root", "--password-stdin",
            host=False, input=PASSWORD + "\n",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        path = gaffer.home / ".gaffer" / "gaffer.yml"
        assert f"as root; key stored in {path} (profile prod)" in r.stdout
        prod = profiles(gaffer)["prod"]
        assert prod["host"] == url and prod["key"].count(".") == 1
        assert prod["key"] not in r.stdout + r.stderr  # the secret is not shown
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

        # the profile takes later commands to its host, over TCP, with its key
        jobs = gaffer.json("-P", "prod", "ps", host=False)
        assert [j["name"] for j in jobs] == ["default.web"]
        assert where(gaffer, "-P", "prod") == (url, "prod")
        # $GAFFER_HOST alone: the profile stored for that host gives the key
        assert where(gaffer, GAFFER_HOST=url) == (url, "prod")
        # -H wins over $GAFFER_HOST
        assert where(gaffer, "-H", gaffer.sock, GAFFER_HOST=url)[0] == gaffer.sock
        r = gaffer("-P", "nope", "ps", host=False)
        assert r.returncode == 2 and "profile 'nope' not found" in r.stderr

        # no -P: the profile "default", where $GAFFER_HOST (then -H) wins over its host
        r = gaffer(
            "login", "--user", "root", "--password-stdin", "--json",
            host=False, input=PASSWORD + "\n", env=gaffer.env(GAFFER_HOST=url),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        kid, secret = profiles(gaffer)["default"]["key"].split(".")
        # the key's id, never its secret
        assert json.loads(r.stdout) == {
            "profile": "default",
            "path": str(path),
            "host": url,
            "user": "root",
            "key": kid,
        }
        assert secret not in r.stdout + r.stderr
        assert where(gaffer) == (url, "default")
        assert where(gaffer, GAFFER_HOST=gaffer.sock)[0] == gaffer.sock

        # logout takes the key out of the profile and revokes it
        token = prod["key"]
        r = gaffer("logout", "-P", "prod", host=False)
        assert r.returncode == 0 and "revoked at the daemon" in r.stdout, r.stderr
        assert "key" not in profiles(gaffer)["prod"]
        r = gaffer("-P", "prod", "ps", host=False)
        assert r.returncode == 1 and "401" in r.stderr
        r = gaffer("-H", url, "--key", token, "ps", host=False)
        assert r.returncode == 1 and "unknown API key" in r.stderr

        # login --key: a key that does not work is not stored
        r = gaffer("login", "-P", "ci", "-H", url, "--key", "0123456789abcdef.nope", host=False)
        assert r.returncode == 1 and "unknown API key" in r.stderr
        assert "ci" not in profiles(gaffer)


def test_keys_round_trip_and_a_read_only_key_is_refused(tmp_path: Path) -> None:
    with served_tcp(tmp_path, "jobs:\n" + sleeper("web")) as gaffer:
        url: str = gaffer.url  # type: ignore[attr-defined]
        # the owner (on the unix socket) mints a read-only key
        ro = gaffer.json("key:create", "--label", "ro", "--read", "*")
        token, kid = ro["api_key"], ro["key"]
        assert token.startswith(kid + ".")
        listed = {k["key"]: k for k in gaffer.json("key:list")}
        assert listed[kid]["label"] == "ro" and listed[kid]["permissions"]["read"] == ["*"]
        r = gaffer("key:list")
        row = next(line for line in r.stdout.splitlines() if line.startswith(kid))
        assert row.split()[1] == "ro" and row.split()[-1] == "read=*"

        # it reads over TCP; changing anything is refused with the daemon's reason
        assert gaffer.json("-H", url, "--key", token, "ps", host=False)[0]["running"] == 1
        r = gaffer("-H", url, "--key", token, "scale", "web=2", host=False)
        assert r.returncode == 1 and "403" in r.stderr, r.stderr
        r = gaffer("-H", url, "--key", token, "daemon", "reload", host=False)
        assert r.returncode == 1 and "may not manage" in r.stderr and "403" in r.stderr
        # ...and stored by login --key, it is used through the profile
        r = gaffer("login", "-P", "ci", "-H", url, "--key", token, host=False)
        assert r.returncode == 0 and "(profile ci)" in r.stdout, r.stderr
        assert gaffer.json("-P", "ci", "ps", host=False)[0]["name"] == "default.web"

        # text output: the secret once on stdout, the rest on stderr
        r = gaffer("key:create", "--label", "child", "--read", "default.web", "--parent", kid)
        assert r.returncode == 0 and "shown this once" in r.stderr, r.stderr
        child = r.stdout.strip().split(".")[0]
        info = gaffer.json("key:info", kid, "--children")
        assert info["key"] == kid and [k["key"] for k in info["keys"]] == [child]
        assert gaffer.json("key:info", child)["parent"] == kid
        r = gaffer("key:create", "--read", "a b")
        assert r.returncode == 1 and "permissions.read[0]" in r.stderr and "400" in r.stderr

        # deleting it deletes the key under it; the profile's key stops working
        assert sorted(gaffer.json("key:delete", token)["deleted"]) == sorted([kid, child])
        r = gaffer("key:info", kid)
        assert r.returncode == 1 and f"key {kid} not found (404)" in r.stderr
        r = gaffer("-P", "ci", "ps", host=False)
        assert r.returncode == 1 and "unknown API key" in r.stderr


def test_users_create_list_setpassword_setkey_delete(tmp_path: Path) -> None:
    with served_tcp(tmp_path) as gaffer:
        url: str = gaffer.url  # type: ignore[attr-defined]

        def login(password: str) -> subprocess.CompletedProcess[str]:
            return gaffer(
                "login", "-P", "alice", "-H", url, "--user", "alice", "--password-stdin",
                host=False, input=password + "\n",
            )  # fmt: skip

        r = gaffer("user:create", "alice")  # no terminal to ask the password on
        assert r.returncode == 2 and "--password-stdin" in r.stderr
        user = gaffer.json(
            "user:create", "alice", "--password-stdin", "--write", "default", input="pw1\n"
        )
        assert user["username"] == "alice" and user["user_type"] == 1
        r = gaffer("user:create", "alice", "--password-stdin", input="pw1\n")
        assert r.returncode == 1 and "already exists" in r.stderr
        assert [u["username"] for u in gaffer.json("user:list")] == ["alice"]
        r = gaffer("user:list")
        assert r.stdout.splitlines()[1].split()[:2] == ["alice", "user"]
        assert gaffer.json("key:info", user["key"])["permissions"]["write"] == ["default"]

        assert login("pw1").returncode == 0
        r = gaffer("-P", "alice", "user:list", host=False)  # not an admin
        assert r.returncode == 1 and "needs an admin key (403)" in r.stderr

        r = gaffer("user:setpassword", "alice", "--password-stdin", input="pw2\n")
        assert r.returncode == 0 and "password of alice changed" in r.stdout, r.stderr
        r = login("pw1")
        assert r.returncode == 1 and "wrong username or password" in r.stderr
        assert login("pw2").returncode == 0

        other = gaffer.json("key:create", "--read", "*")["key"]
        assert gaffer("user:setkey", "alice", other).returncode == 0
        assert gaffer.json("user:info", "alice")["key"] == other
        assert gaffer("user:delete", "alice").returncode == 0
        r = gaffer("user:info", "alice")
        assert r.returncode == 1 and "user alice not found (404)" in r.stderr


def test_daemon_reload_applies_a_good_file_and_refuses_a_broken_one(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web")) as gaffer:
        cfg = tmp_path / "gafferd.yml"
        cfg.write_text("jobs:\n" + sleeper("web", 2) + sleeper("extra"))
        result = gaffer.json("daemon", "reload")
        assert result["ok"] and result["loaded"] == ["default.extra"]
        assert result["scaled"] == ["default.web"]
        cfg.write_text("jobs:\n" + sleeper("web", 2) + sleeper("extra") + sleeper("more"))
        r = gaffer("daemon", "reload")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == f"reloaded {cfg}"
        assert lines[1].split() == ["loaded:", "default.more"]
        assert lines[5].split(None, 1)[0] == "unchanged:"
        assert sorted(lines[5].split(None, 1)[1].split(", ")) == ["default.extra", "default.web"]
        before = os_pids(gaffer)

        cfg.write_text("jobs:\n  web: {cmd: sleep, numprocesses: -1}\n")
        r = gaffer("daemon", "reload")
        assert r.returncode == 1
        assert "jobs.web.numprocesses: must be an integer" in r.stderr and "409" in r.stderr
        assert os_pids(gaffer) == before  # nothing changed
        status = gaffer.json("daemon", "status")
        assert status["jobs"] == 3 and status["running"] == status["wanted"] == 4
        assert status["last_reload"]["ok"] is False and status["host"] == gaffer.sock
        r = gaffer("daemon", "status")
        assert "processes:   4 running of 4 wanted" in r.stdout, r.stdout
        r = gaffer("daemon")
        assert r.returncode == 2 and "ACTION" in r.stderr


def test_daemon_reexec_keeps_its_pid_and_every_process(tmp_path: Path) -> None:
    with served(tmp_path, "jobs:\n" + sleeper("web", 2)) as gaffer:
        assert gaffer.daemon is not None
        before = os_pids(gaffer)
        assert len(before["default.web"]) == 2
        r = gaffer("daemon", "reexec")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "ok: gafferd re-executed in place; 2 process(es) kept running"
        read_until(gaffer.daemon, b"re-executed in place: adopted 2 process(es)")
        # the same pid runs the new program
        assert "--reexec-state" in psutil.Process(gaffer.daemon.pid).cmdline()
        assert os_pids(gaffer) == before
        # a file the new program could not start on: the daemon does not re-exec
        (tmp_path / "gafferd.yml").write_text("jobs:\n  web: {cmd: sleep, numprocesses: -1}\n")
        assert "(default 30)" in gaffer("daemon", "reexec", "--help").stdout
        r = gaffer("daemon", "reexec", "--wait-timeout", "1")
        assert r.returncode == 1 and "did not re-execute in 1s" in r.stderr
        read_until(gaffer.daemon, b"not re-executing: ")
        assert os_pids(gaffer) == before
