"""ProcessConfig validation, variable expansion, scale and signal parsing."""

from __future__ import annotations

import os
import signal

import pytest
from gaffer.config import BackoffConfig, FlappingConfig, ProcessConfig, split_name
from gaffer.errors import BadRequest, ConfigError
from gaffer.interpolate import BadExpression, UndefinedVariable, expand
from gaffer.job import parse_scale
from gaffer.signals import parse_signal


def test_defaults_are_safe() -> None:
    c = ProcessConfig("web", "sleep", ["10"])
    assert c.numprocesses == 1
    assert c.restart == "always"
    assert c.flapping == FlappingConfig()  # on by default
    assert c.redirect_output == ("stdout", "stderr")  # captured by default
    assert c.stop_signal == signal.SIGTERM
    assert c.graceful_timeout == 10.0
    assert c.startsecs == 1.0


def test_from_dict_round_trips() -> None:
    d = {
        "name": "web",
        "cmd": "python3",
        "args": ["-m", "http.server", "$PORT"],
        "env": {"PORT": "$((8000 + GAFFER_INDEX))", "N": 3},
        "numprocesses": 3,
        "stop_signal": "INT",
        "flapping": {"attempts": 3, "window": 2, "retry_in": 1, "max_retry": 2},
        "restart": "on-failure",
        "success_exit_codes": [0, 3],
        "umask": "027",
        "backoff": {"initial": 0.5, "factor": 3, "max": 10},
    }
    c = ProcessConfig.from_dict(d)
    assert c.stop_signal == signal.SIGINT
    assert c.umask == 0o27
    assert c.env == {"PORT": "$((8000 + GAFFER_INDEX))", "N": "3"}
    assert ProcessConfig.from_dict(c.to_dict()) == c


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("numprocesses", -1, "must be an integer ≥ 0"),
        ("numprocesses", "3", "must be an integer ≥ 0"),
        ("numprocesses", True, "must be an integer"),
        ("graceful_timeout", "10s", "must be a number of seconds"),
        ("graceful_timeout", -1, "must be a number of seconds"),
        ("startsecs", None, "must be a number of seconds"),
        ("os_env", "yes", "must be true or false"),
        ("shell", 1, "must be true or false"),
        ("args", 5, "must be a list of strings"),
        ("args", ["ok", {"no": 1}], "must be a string"),
        ("env", ["A=1"], "must be a mapping"),
        ("env", {"A": [1]}, "must be a string or a number"),
        ("restart", "sometimes", "must be one of always, on-failure, never"),
        ("stop_signal", "SIGNOPE", "unknown signal"),
        ("flapping", "often", "must be true, false or a mapping"),
        ("flapping", {"attempts": 0}, "must be an integer ≥ 1"),
        ("flapping", {"bogus": 1}, "unknown option"),
        ("backoff", {"factor": 0.5}, "≥ 1"),
        ("backoff", {"initial": 0}, "must be > 0 seconds"),
        ("uid", "no-such-user-here", "no such user"),
        ("gid", "no-such-group-here", "no such group"),
        ("umask", "999", "octal mode"),
        ("redirect_output", ["a", "b", "c"], "at most two labels"),
        ("redirect_output", ["a", "a"], "distinct"),
        ("custom_streams", ["x.y"], "bad stream label"),
        ("success_exit_codes", ["0"], "must be an integer"),
        ("cwd", "", "must be a non-empty string"),
        ("description", 3, "must be a string"),
        ("description", "x" * 1001, "at most 1000 characters"),
        ("description", "a\0b", "NUL"),
        ("version", ["1"], "must be a string"),
        ("version", "1.0\nrelease", "one line"),
        ("tags", "web", "must be a list of tags"),
        ("tags", [""], "must be a non-empty string"),
        ("tags", [7], "must be a non-empty string"),
        ("tags", ["front end"], "no spaces or commas"),
        ("tags", ["a,b"], "no spaces or commas"),
        ("tags", ["x" * 65], "at most 64 characters"),
        ("tags", [f"t{i}" for i in range(33)], "at most 32 tags"),
    ],
)
def test_bad_values_name_the_field(key: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ProcessConfig.from_dict({"name": "web", "cmd": "sleep", "args": ["1"], key: value})
    assert exc.value.field is not None
    assert exc.value.field.split(".")[0].split("[")[0] == key
    assert reason in str(exc.value)


def test_metadata_defaults_round_trip_and_drop_duplicate_tags() -> None:
    c = ProcessConfig("web", "sleep")
    assert (c.description, c.tags, c.version) == ("", (), "")
    c = ProcessConfig.from_dict(
        {
            "name": "web",
            "cmd": "sleep",
            "description": "the shop's front end\nsecond line",
            "tags": ["web", "shop", "web", "é-tag"],
            "version": "2.1.0",
        }
    )
    assert c.tags == ("web", "shop", "é-tag")  # the first of each kept, in order
    assert c.to_dict()["tags"] == ["web", "shop", "é-tag"]
    assert ProcessConfig.from_dict(c.to_dict()) == c
    # metadata alone never changes how a job runs; anything else does
    assert c.runs_like(c.replace(tags=("other",), description="", version="3", numprocesses=4))
    assert not c.runs_like(c.replace(cmd="true", tags=("other",)))


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as exc:
        ProcessConfig.from_dict({"name": "web", "cmd": "sleep", "numprocess": 2})
    assert exc.value.field == "numprocess"
    assert "unknown option" in str(exc.value)


def test_missing_required_keys() -> None:
    with pytest.raises(ConfigError, match="cmd: is required"):
        ProcessConfig.from_dict({"name": "web"})


def test_keywords_are_checked_too() -> None:
    with pytest.raises(ConfigError) as exc:
        ProcessConfig("web", "sleep", numprocess=2)  # type: ignore[call-arg]
    assert exc.value.field == "numprocess"
    with pytest.raises(ConfigError, match="cmd: is required"):
        ProcessConfig(name="web")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="numprocesses: must be an integer"):
        ProcessConfig("web", "sleep", numprocesses="3")  # type: ignore[arg-type]


def test_missing_variable_is_a_config_error_not_a_spawn_crash() -> None:
    with pytest.raises(ConfigError) as exc:
        ProcessConfig("web", "echo", ["$NOPE"]).check_env()
    assert exc.value.field == "args[0]"
    assert "undefined variable $NOPE" in str(exc.value)
    with pytest.raises(ConfigError, match=r"env.B: undefined variable \$MISSING"):
        ProcessConfig("web", "echo", env={"B": "${MISSING}x"}).check_env()
    ProcessConfig("web", "echo", ["$LATER"]).check_env({"LATER": "given at load"})


def test_per_instance_values() -> None:
    c = ProcessConfig(
        "web",
        "serve",
        ["--port", "$PORT", "--id=${GAFFER_INDEX}", "$$HOME"],
        env={"PORT": "$((8000 + GAFFER_INDEX))"},
    )
    for index in range(3):
        env = c.build_env(index)
        assert env["GAFFER_INDEX"] == str(index)
        assert env["PORT"] == str(8000 + index)
        assert c.build_argv(env) == ["serve", "--port", str(8000 + index), f"--id={index}", "$HOME"]


def test_os_env_inherits_with_job_env_on_top(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAFFER_TEST_INHERITED", "daemon")
    monkeypatch.setenv("GAFFER_TEST_OVERRIDDEN", "daemon")
    c = ProcessConfig("w", "true", env={"GAFFER_TEST_OVERRIDDEN": "job"}, os_env=True)
    env = c.build_env(0)
    assert env["GAFFER_TEST_INHERITED"] == "daemon"
    assert env["GAFFER_TEST_OVERRIDDEN"] == "job"
    env = c.replace(os_env=False).build_env(0)
    assert "GAFFER_TEST_INHERITED" not in env
    assert env["PATH"]  # a default PATH, as systemd gives services


def test_cmd_without_args_is_split_like_0_5() -> None:
    c = ProcessConfig("w", "sleep 10")
    assert c.build_argv(c.build_env(0)) == ["sleep", "10"]
    s = ProcessConfig("w", "echo $GAFFER_INDEX", shell=True)
    assert s.build_argv(s.build_env(0)) == ["/bin/sh", "-c", "echo $GAFFER_INDEX"]


def test_expand() -> None:
    env = {"A": "1", "B": "x"}
    assert expand("$A-${B}-$$-$((A*10+2))", env) == "1-x-$-12"
    with pytest.raises(UndefinedVariable):
        expand("$C", env)
    with pytest.raises(BadExpression):
        expand("$((B + 1))", env)
    with pytest.raises(BadExpression):
        expand("$((__import__('os')))", env)


def test_backoff_delays_grow_and_cap() -> None:
    b = BackoffConfig(initial=0.1, factor=2, max=0.5)
    assert [b.delay(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]


@pytest.mark.parametrize(
    ("current", "op", "expected"),
    [
        (2, 3, 5),
        (2, -1, 1),
        (2, -5, 0),
        (2, "3", 5),
        (2, "+1", 3),
        (2, "-2", 0),
        (2, "=7", 7),
        (2, " =0 ", 0),
    ],
)
def test_scale_operations(current: int, op: object, expected: int) -> None:
    assert parse_scale(current, op) == expected


@pytest.mark.parametrize("op", ["x", "+", "=-1", "1.5", 1.5, None, True, [1], "++1"])
def test_bad_scale_operations(op: object) -> None:
    with pytest.raises(BadRequest, match="scale: expected"):
        parse_scale(2, op)


@pytest.mark.parametrize("value", [15, "15", "TERM", "SIGTERM", "sigterm", " term "])
def test_signal_spellings(value: object) -> None:
    assert parse_signal(value) == signal.SIGTERM


@pytest.mark.parametrize("value", ["NOPE", 999, -1, None, 1.0, True, ""])
def test_bad_signals(value: object) -> None:
    with pytest.raises(BadRequest, match="signal"):
        parse_signal(value)


def test_split_name() -> None:
    assert split_name("web") == ("default", "web")
    assert split_name("s.web") == ("s", "web")
    assert split_name("s/web") == ("s", "web")
    assert split_name("s.web.v2") == ("s", "web.v2")
    assert split_name("web.v2", "s") == ("s", "web.v2")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to resolve users freely")
def test_user_names_resolve() -> None:
    c = ProcessConfig("w", "true", uid="nobody", gid="nogroup")
    assert c.uid == 65534
    assert c.user_env()["USER"] == "nobody"


def test_limits_guard_against_runaway_values() -> None:
    from gaffer.config import MAX_PROCESSES

    with pytest.raises(ConfigError, match="numprocesses: must be at most 10000"):
        ProcessConfig.from_dict({"name": "a", "cmd": "x", "numprocesses": MAX_PROCESSES + 1})
    with pytest.raises(BadRequest, match="scale: 10001 processes is over the limit"):
        parse_scale(MAX_PROCESSES, "+1")
    assert parse_scale(MAX_PROCESSES, "-5") == MAX_PROCESSES - 5
    for bad in (float("inf"), float("nan"), 10**400, -1):
        with pytest.raises(ConfigError, match="graceful_timeout"):
            ProcessConfig.from_dict({"name": "a", "cmd": "x", "graceful_timeout": bad})
