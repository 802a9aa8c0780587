"""Job configs: what to run, how many, and how to keep it running.

A :class:`ProcessConfig` is a validated, immutable template for the processes of
one job. It is built from keywords or from a dict (JSON or YAML); an unknown key or
a value of the wrong type raises :class:`~gaffer.errors.ConfigError` naming the
field. Field names follow gaffer 0.5 (``cmd``, ``numprocesses``, ``graceful_timeout``
...) with the restart controls users of supervisord and systemd expect on top.
"""

from __future__ import annotations

import dataclasses
import grp
import math
import os
import pwd
import shlex
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gaffer.errors import BadRequest, ConfigError
from gaffer.interpolate import BadExpression, UndefinedVariable, expand
from gaffer.readiness import HealthConfig, ReadyConfig
from gaffer.signals import parse_signal

DEFAULT_SESSION = "default"
# A guard against a typo (or a hostile request) asking for millions of processes.
MAX_PROCESSES = 10_000
# Longer than any real timeout or delay; a shutdown must not wait for centuries.
MAX_SECONDS = 7 * 86400
RESTART_POLICIES = ("always", "on-failure", "never")
ROLLING_STRATEGIES = ("start-first", "stop-first")
# What a process gets for PATH when it does not inherit the daemon's environment
# (the same default systemd gives services).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Metadata: what a job is, for people and for filtering; never how it runs.
METADATA_FIELDS = ("description", "tags", "version")
MAX_TEXT = 1000  # description, version: a line or a paragraph, not a document
MAX_TAG = 64
MAX_TAGS = 32
# When and how a job's one-off runs are started on their own (see gaffer.schedule);
# changing them restarts nothing.
SCHEDULE_FIELDS = ("schedule", "timezone", "concurrency", "catch_up")
CONCURRENCY = ("skip", "queue", "allow")


def split_name(name: str, sessionid: str | None = None) -> tuple[str, str]:
    """``"s.j"`` -> ``("s", "j")``; ``"j"`` -> ``("default", "j")``; ``"s/j"`` too.

    With ``sessionid`` given, ``name`` is taken whole as the job part.
    """
    if not isinstance(name, str) or not name:
        raise BadRequest(f"name: expected a job name, got {name!r}")
    if sessionid is not None:
        return sessionid, name
    for sep in ("/", "."):
        if sep in name:
            session, job = name.split(sep, 1)
            if session and job:
                return session, job
    return DEFAULT_SESSION, name


# -- small validators; each raises ConfigError naming the field -------------------


def _bool(fld: str, v: object) -> bool:
    if isinstance(v, bool):
        return v
    raise ConfigError(fld, f"must be true or false, got {v!r}")


def _int(fld: str, v: object, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        bound = f" ≥ {minimum}" if minimum is not None else ""
        raise ConfigError(fld, f"must be an integer{bound}, got {v!r}")
    if minimum is not None and v < minimum:
        raise ConfigError(fld, f"must be an integer ≥ {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ConfigError(fld, f"must be at most {maximum}, got {v!r}")
    return v


def seconds(fld: str, v: object, minimum: float = 0.0) -> float:
    """A finite number of seconds ≥ ``minimum`` (ConfigError naming ``fld``)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ConfigError(fld, f"must be a number of seconds ≥ {minimum:g}, got {v!r}")
    try:
        out = float(v)
    except OverflowError:  # an integer beyond any float
        raise ConfigError(fld, "is too large") from None
    if not math.isfinite(out) or out > MAX_SECONDS:
        raise ConfigError(fld, f"must be at most {MAX_SECONDS} seconds, got {v!r}")
    if out < minimum:
        raise ConfigError(fld, f"must be a number of seconds ≥ {minimum:g}, got {v!r}")
    return out


def _no_nul(fld: str, v: str) -> str:
    if "\0" in v:
        raise ConfigError(fld, "must not contain a NUL byte")
    try:
        v.encode()
    except UnicodeEncodeError:  # a lone surrogate: no program could be given it
        raise ConfigError(fld, "must be valid Unicode (no lone surrogates)") from None
    return v


def _str(fld: str, v: object, empty_ok: bool = False) -> str:
    if not isinstance(v, str) or (not v and not empty_ok):
        raise ConfigError(fld, f"must be a non-empty string, got {v!r}")
    return _no_nul(fld, v)


def _str_list(fld: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        raise ConfigError(fld, f"must be a list of strings, got {v!r}")
    if not isinstance(v, list | tuple):
        raise ConfigError(fld, f"must be a list of strings, got {v!r}")
    out = []
    for i, item in enumerate(v):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{fld}[{i}]", f"must be a string, got {item!r}")
        out.append(_no_nul(f"{fld}[{i}]", str(item)))
    return tuple(out)


def _env(fld: str, v: object) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise ConfigError(fld, f"must be a mapping of NAME: value, got {v!r}")
    out = {}
    for k, val in v.items():
        if not isinstance(k, str) or not k or "=" in k or "\0" in k:
            raise ConfigError(fld, f"bad variable name {k!r}")
        if isinstance(val, bool) or not isinstance(val, str | int | float):
            raise ConfigError(f"{fld}.{k}", f"must be a string or a number, got {val!r}")
        out[k] = _no_nul(f"{fld}.{k}", str(val))
    return out


def _text(fld: str, v: object, one_line: bool = False) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        # YAML reads 1.10 as the number 1.1: quoting keeps what was written
        raise ConfigError(fld, f"must be a string, got the number {v!r} (in YAML, quote it)")
    if not isinstance(v, str):
        raise ConfigError(fld, f"must be a string, got {v!r}")
    if one_line and not v.isprintable():
        raise ConfigError(fld, f"must be one line of printable text, got {v!r}")
    if len(v) > MAX_TEXT:
        raise ConfigError(fld, f"must be at most {MAX_TEXT} characters, got {len(v)}")
    return _no_nul(fld, v)


def _tags(fld: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, list | tuple):
        raise ConfigError(fld, f"must be a list of tags, got {v!r}")
    out: dict[str, None] = {}  # ordered: duplicates dropped, the first kept
    for i, tag in enumerate(v):
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"{fld}[{i}]", f"must be a non-empty string, got {tag!r}")
        # a tag is one word: ?tag=a,b and "--tag a" must not be ambiguous
        if not tag.isprintable() or any(c.isspace() or c == "," for c in tag):
            raise ConfigError(f"{fld}[{i}]", f"bad tag {tag!r} (no spaces or commas)")
        if len(tag) > MAX_TAG:
            raise ConfigError(f"{fld}[{i}]", f"must be at most {MAX_TAG} characters")
        out[_no_nul(f"{fld}[{i}]", tag)] = None
    if len(out) > MAX_TAGS:
        raise ConfigError(fld, f"at most {MAX_TAGS} tags, got {len(out)}")
    return tuple(out)


def _cron(fld: str, v: object) -> str:
    text = _text(fld, v, one_line=True).strip()
    if text:
        from gaffer.schedule import check_expression

        try:
            check_expression(text)
        except ValueError as e:
            raise ConfigError(fld, str(e)) from None
    return text


def _timezone(fld: str, v: object) -> str:
    name = _text(fld, v, one_line=True).strip()
    if name:
        from gaffer.schedule import zone

        try:
            zone(name)
        except ValueError as e:
            raise ConfigError(fld, str(e)) from None
    return name


def _after(fld: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str) or not isinstance(v, list | tuple):
        raise ConfigError(fld, f"must be a list of job names (session.job or job), got {v!r}")
    out: list[str] = []
    for i, name in enumerate(v):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{fld}[{i}]", f"must be a job name, got {name!r}")
        if (
            not name.isprintable()
            or any(c.isspace() for c in name)
            or name.startswith((".", "/"))
            or name.endswith((".", "/"))
        ):
            raise ConfigError(f"{fld}[{i}]", f"bad job name {name!r}")
        if name in out:
            raise ConfigError(f"{fld}[{i}]", f"{name!r} is listed twice")
        out.append(_no_nul(f"{fld}[{i}]", name))
    return tuple(out)


def dependency_names(after: tuple[str, ...] | list[str], session: str) -> tuple[str, ...]:
    """The full ``session.job`` names of ``after``; a bare ``job`` is in ``session``."""
    out: dict[str, None] = {}
    for name in after:
        if "." in name or "/" in name:
            s, j = split_name(name)
        else:
            s, j = session, name
        out[f"{s}.{j}"] = None
    return tuple(out)


def check_dependencies(graph: Mapping[str, tuple[str, ...]], names: Iterable[str]) -> None:
    """ConfigError (field ``after``) if a job of ``names`` depends, directly or
    through others, on a job missing from ``graph`` (job -> its dependencies),
    or on itself: the message names the missing job or the cycle's path."""
    done: set[str] = set()
    for root in names:
        if root in done:
            continue
        # iterative depth-first walk: a long chain must not hit the recursion limit
        path: list[str] = [root]
        on_path = {root}
        stack = [iter(graph.get(root, ()))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                continue
            if dep in on_path:
                cycle = [*path[path.index(dep) :], dep]
                raise ConfigError("after", "a dependency cycle: " + " -> ".join(cycle))
            if dep in done:
                continue
            if dep not in graph:
                raise ConfigError("after", f"{path[-1]} depends on {dep}, which does not exist")
            path.append(dep)
            on_path.add(dep)
            stack.append(iter(graph[dep]))


def _labels(fld: str, v: object) -> tuple[str, ...]:
    labels = _str_list(fld, v)
    for i, label in enumerate(labels):
        if not label or "." in label or "/" in label:
            raise ConfigError(f"{fld}[{i}]", f"bad stream label {label!r} (no '.' or '/')")
    if len(set(labels)) != len(labels):
        raise ConfigError(fld, "stream labels must be distinct")
    return labels


@dataclass(frozen=True)
class FlappingConfig:
    """A slot restarted ``attempts`` times within ``window`` seconds is flapping:
    it is held back for ``retry_in`` seconds, and after ``max_retry`` such holds it
    is left ``fatal``. (gaffer 0.5's field names.)"""

    attempts: int = 5
    window: float = 10.0
    retry_in: float = 7.0
    max_retry: int = 5

    @classmethod
    def parse(cls, v: object, fld: str = "flapping") -> FlappingConfig | None:
        if v is None or v is False:
            return None
        if v is True:
            return cls()
        if isinstance(v, FlappingConfig):
            return v
        if not isinstance(v, Mapping):
            raise ConfigError(fld, f"must be true, false or a mapping, got {v!r}")
        unknown = set(v) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{fld}.{sorted(unknown)[0]}", "unknown option")
        d = cls()
        return cls(
            attempts=_int(f"{fld}.attempts", v.get("attempts", d.attempts), 1),
            window=seconds(f"{fld}.window", v.get("window", d.window)),
            retry_in=seconds(f"{fld}.retry_in", v.get("retry_in", d.retry_in)),
            max_retry=_int(f"{fld}.max_retry", v.get("max_retry", d.max_retry), 0),
        )


@dataclass(frozen=True)
class BackoffConfig:
    """Delay before restarting after the n-th failed start in a row:
    ``min(initial * factor ** (n - 1), max)``. A stable run resets n."""

    initial: float = 0.1
    factor: float = 2.0
    max: float = 15.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        try:
            grown = self.initial * self.factor ** (failures - 1)
        except OverflowError:  # a huge factor: the cap was reached long ago
            return float(self.max)
        return float(min(grown, self.max))

    @classmethod
    def parse(cls, v: object, fld: str = "backoff") -> BackoffConfig:
        if isinstance(v, BackoffConfig):
            return v
        if not isinstance(v, Mapping):
            raise ConfigError(fld, f"must be a mapping (initial, factor, max), got {v!r}")
        unknown = set(v) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"{fld}.{sorted(unknown)[0]}", "unknown option")
        d = cls()
        out = cls(
            initial=seconds(f"{fld}.initial", v.get("initial", d.initial)),
            factor=seconds(f"{fld}.factor", v.get("factor", d.factor), 1.0),
            max=seconds(f"{fld}.max", v.get("max", d.max)),
        )
        if out.initial <= 0:
            # A failed start must never be retried at once: that is a hot loop.
            raise ConfigError(f"{fld}.initial", f"must be > 0 seconds, got {out.initial:g}")
        if out.max < out.initial:
            raise ConfigError(f"{fld}.max", "must be ≥ backoff.initial")
        return out


@dataclass(frozen=True)
class ProcessConfig:
    """The template of a job's processes. See README.rst for every field."""

    name: str
    cmd: str
    args: tuple[str, ...] | list[str] | str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    os_env: bool = False
    cwd: str | None = None
    uid: int | str | None = None
    gid: int | str | None = None
    umask: int | str | None = None
    shell: bool = False
    detach: bool = False
    numprocesses: int = 1
    start: bool = True
    priority: int = 999
    redirect_output: tuple[str, ...] | list[str] = ("stdout", "stderr")
    redirect_input: bool = False
    custom_streams: tuple[str, ...] | list[str] = ()
    graceful_timeout: float = 10.0
    stop_signal: int | str = signal.SIGTERM
    flapping: FlappingConfig | Mapping[str, Any] | bool | None = True
    restart: str = "always"
    success_exit_codes: tuple[int, ...] | list[int] = (0,)
    startsecs: float = 1.0
    backoff: BackoffConfig | Mapping[str, Any] = field(default_factory=BackoffConfig)
    rolling: str = "start-first"
    description: str = ""
    tags: tuple[str, ...] | list[str] = ()
    version: str = ""
    schedule: str = ""
    timezone: str = ""
    concurrency: str = "skip"
    catch_up: bool = False
    after: tuple[str, ...] | list[str] = ()
    ready: ReadyConfig | Mapping[str, Any] | None = None
    notify: bool = False
    watchdog_sec: float = 0.0
    health: HealthConfig | Mapping[str, Any] | None = None
    timeout: float = 0.0

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "name", _str("name", self.name))
        if (
            self.name.startswith(".")
            or "/" in self.name
            or not self.name.isprintable()  # no newline to forge log lines with
        ):
            raise ConfigError("name", f"bad job name {self.name!r}")
        s(self, "cmd", _str("cmd", self.cmd))
        args = self.args
        if args is None:
            args = ()
        elif isinstance(args, str):
            try:
                args = tuple(shlex.split(args))
            except ValueError as e:
                raise ConfigError("args", f"cannot split {args!r}: {e}") from None
        s(self, "args", _str_list("args", args))
        s(self, "env", _env("env", self.env))
        for b in ("os_env", "shell", "detach", "start", "redirect_input"):
            s(self, b, _bool(b, getattr(self, b)))
        if self.cwd is not None:
            s(self, "cwd", _str("cwd", self.cwd))
        s(self, "numprocesses", _int("numprocesses", self.numprocesses, 0, MAX_PROCESSES))
        s(self, "priority", _int("priority", self.priority))
        redirect = self.redirect_output
        if redirect is None:
            redirect = ()
        out = _labels("redirect_output", redirect)
        if len(out) > 2:
            raise ConfigError("redirect_output", "at most two labels (stdout, stderr)")
        s(self, "redirect_output", out)
        custom = _labels("custom_streams", self.custom_streams)
        if set(custom) & set(out):
            raise ConfigError("custom_streams", "labels must differ from redirect_output's")
        if "stdin" in custom:
            raise ConfigError("custom_streams", "'stdin' is reserved for the process's input")
        s(self, "custom_streams", custom)
        s(self, "graceful_timeout", seconds("graceful_timeout", self.graceful_timeout))
        try:
            s(self, "stop_signal", parse_signal(self.stop_signal, "stop_signal"))
        except BadRequest as e:
            raise ConfigError("stop_signal", e.reason.removeprefix("stop_signal: ")) from None
        s(self, "flapping", FlappingConfig.parse(self.flapping))
        if self.restart not in RESTART_POLICIES:
            raise ConfigError(
                "restart", f"must be one of {', '.join(RESTART_POLICIES)}, got {self.restart!r}"
            )
        if self.rolling not in ROLLING_STRATEGIES:
            raise ConfigError(
                "rolling",
                f"must be one of {', '.join(ROLLING_STRATEGIES)}, got {self.rolling!r}",
            )
        codes = self.success_exit_codes
        if isinstance(codes, int) and not isinstance(codes, bool):
            codes = (codes,)
        if not isinstance(codes, list | tuple):
            raise ConfigError("success_exit_codes", f"must be a list of integers, got {codes!r}")
        s(
            self,
            "success_exit_codes",
            tuple(_int(f"success_exit_codes[{i}]", c, 0) for i, c in enumerate(codes)),
        )
        s(self, "startsecs", seconds("startsecs", self.startsecs))
        s(self, "backoff", BackoffConfig.parse(self.backoff))
        s(self, "uid", self._resolve_uid())
        s(self, "gid", self._resolve_gid())
        if self.uid is not None and self.gid is None and not self.user_env():
            raise ConfigError(
                "gid", f"uid {self.uid} has no passwd entry, so its group is unknown: set gid"
            )
        s(self, "umask", self._parse_umask())
        s(self, "description", _text("description", self.description))
        s(self, "tags", _tags("tags", self.tags))
        s(self, "version", _text("version", self.version, one_line=True))
        s(self, "schedule", _cron("schedule", self.schedule))
        s(self, "timezone", _timezone("timezone", self.timezone))
        if self.concurrency not in CONCURRENCY:
            raise ConfigError(
                "concurrency",
                f"must be one of {', '.join(CONCURRENCY)}, got {self.concurrency!r}",
            )
        s(self, "catch_up", _bool("catch_up", self.catch_up))
        s(self, "after", _after("after", self.after))
        s(self, "notify", _bool("notify", self.notify))
        s(self, "ready", ReadyConfig.parse(self.ready, notify=self.notify))
        s(self, "watchdog_sec", seconds("watchdog_sec", self.watchdog_sec))
        if self.watchdog_sec and not self.notify:
            raise ConfigError("watchdog_sec", "needs notify: true (the process pings WATCHDOG=1)")
        s(self, "health", HealthConfig.parse_health(self.health))
        s(self, "timeout", seconds("timeout", self.timeout))

    def __new__(cls, *args: Any, **kwargs: Any) -> ProcessConfig:
        # Keywords are checked before the generated __init__ runs, so that an
        # unknown or missing option is a ConfigError naming it, not a TypeError.
        names = [f.name for f in dataclasses.fields(cls)]
        for key in kwargs:
            if key not in names:
                raise ConfigError(key, "unknown option")
        given = set(names[: len(args)]) | set(kwargs)
        for required in ("name", "cmd"):
            if required not in given:
                raise ConfigError(required, "is required")
        return super().__new__(cls)

    # -- typed views (mypy cannot narrow the normalised fields) ---------------------

    @property
    def argv(self) -> tuple[str, ...]:
        return tuple(self.args or ())

    @property
    def flapping_config(self) -> FlappingConfig | None:
        assert self.flapping is None or isinstance(self.flapping, FlappingConfig)
        return self.flapping

    @property
    def backoff_config(self) -> BackoffConfig:
        assert isinstance(self.backoff, BackoffConfig)
        return self.backoff

    @property
    def ready_check(self) -> ReadyConfig | None:
        assert self.ready is None or isinstance(self.ready, ReadyConfig)
        return self.ready

    @property
    def health_check(self) -> HealthConfig | None:
        assert self.health is None or isinstance(self.health, HealthConfig)
        return self.health

    @property
    def stop_signum(self) -> int:
        assert isinstance(self.stop_signal, int)
        return self.stop_signal

    # -- construction -------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], name: str | None = None) -> ProcessConfig:
        """Build from a JSON/YAML mapping; ``name`` fills in a missing ``name`` key."""
        if not isinstance(data, Mapping):
            raise ConfigError(None, f"a job config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(str(key), "unknown option")
        d = dict(data)
        if name is not None:
            d.setdefault("name", name)
        for required in ("name", "cmd"):
            if required not in d:
                raise ConfigError(required, "is required")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_dict` turns back into an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, FlappingConfig | BackoffConfig):
                v = dataclasses.asdict(v)
            elif isinstance(v, ReadyConfig):  # and HealthConfig
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Mapping):
                v = dict(v)
            out[f.name] = v
        if out["flapping"] is None:
            out["flapping"] = False
        return out

    def replace(self, **changes: Any) -> ProcessConfig:
        return dataclasses.replace(self, **changes)

    def runs_like(self, other: ProcessConfig) -> bool:
        """Whether ``other`` starts the same processes: it differs at most in
        ``numprocesses``, metadata, schedule and ``after`` (which only gates a
        start), which apply without restarting any."""
        fields = ("numprocesses", "after", *METADATA_FIELDS, *SCHEDULE_FIELDS)
        kept = {f: getattr(other, f) for f in fields}
        return self.replace(**kept) == other

    # -- per-process values -------------------------------------------------------

    def user_env(self) -> dict[str, str]:
        """HOME, USER and LOGNAME for the user the job runs as (empty if none)."""
        if self.uid is None:
            return {}
        assert isinstance(self.uid, int)
        try:
            pw = pwd.getpwuid(self.uid)
        except KeyError:
            return {}
        return {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name}

    def build_env(
        self,
        index: int,
        extra: Mapping[str, str] | None = None,
        pid: int | None = None,
    ) -> dict[str, str]:
        """The environment of the process in slot ``index``.

        Layers, later wins: the daemon's environment (only with ``os_env``), a
        default PATH, the run-as user's HOME/USER/LOGNAME, the job's ``env``, the
        ``extra`` env given at load or commit, then GAFFER_* values. Job env values
        may refer to the layers below them and to ``$GAFFER_INDEX``.
        """
        base: dict[str, str] = dict(os.environ) if self.os_env else {"PATH": DEFAULT_PATH}
        base.update(self.user_env())
        gaffer_vars = {"GAFFER_INDEX": str(index), "GAFFER_JOB": self.name}
        if pid is not None:
            gaffer_vars["GAFFER_PID"] = str(pid)
        layers = dict(self.env)
        if extra:
            layers.update(extra)
        # Sequential, like shell assignments: a value sees the layers below it and
        # the values defined before it ("PATH: $PATH:/opt/bin" extends the base).
        env = dict(base)
        for k, v in layers.items():
            try:
                env[k] = expand(v, {**env, **gaffer_vars})
            except (UndefinedVariable, BadExpression) as e:
                raise ConfigError(f"env.{k}", str(e)) from None
        env.update(gaffer_vars)
        return env

    def build_argv(self, env: Mapping[str, str]) -> list[str]:
        """``[cmd, *args]`` with variables expanded (the shell expands its own)."""
        if self.shell:
            line = " ".join([self.cmd, *(shlex.quote(a) for a in self.argv)])
            return ["/bin/sh", "-c", line]
        if self.argv:
            words = [("cmd", self.cmd)] + [(f"args[{i}]", a) for i, a in enumerate(self.argv)]
        else:
            # 0.5 accepted "cmd: sleep 10" with no args; split it like a shell would.
            try:
                words = [("cmd", w) for w in shlex.split(self.cmd)]
            except ValueError as e:
                raise ConfigError("cmd", f"cannot split {self.cmd!r}: {e}") from None
            if not words:
                raise ConfigError("cmd", "is empty")
        out = []
        for fld, text in words:
            try:
                out.append(expand(text, env))
            except (UndefinedVariable, BadExpression) as e:
                raise ConfigError(fld, str(e)) from None
        return out

    def check_env(self, extra: Mapping[str, str] | None = None, count: int | None = None) -> None:
        """Raise ConfigError now for anything that would fail to expand at spawn,
        for each of the first ``count`` (default: ``numprocesses``) slots.

        Not done on construction because ``load(config, env=...)`` may supply
        variables; :meth:`Manager.load` and the daemon's config reader call it."""
        count = max(1, self.numprocesses if count is None else count)
        if not self.per_slot:
            count = 1  # every slot expands the same way
        for index in range(count):
            env = self.build_env(index, extra, pid=0)
            self.build_argv(env)
            if self.ready_check is not None:
                self.ready_check.expand(env)
            if self.health_check is not None:
                self.health_check.expand(env, "health")

    @property
    def per_slot(self) -> bool:
        """Whether any value refers to a per-process variable (``$GAFFER_*``)."""
        texts = [self.cmd, *self.argv, *self.env.values()]
        for check in (self.ready_check, self.health_check):
            if check is not None:
                texts += check.texts
        return any("GAFFER_" in t for t in texts)

    # -- field resolution ---------------------------------------------------------

    def _resolve_uid(self) -> int | None:
        v = self.uid
        if v is None:
            return None
        if isinstance(v, bool):
            raise ConfigError("uid", f"must be a user name or number, got {v!r}")
        if isinstance(v, int) or (isinstance(v, str) and v.isascii() and v.isdigit()):
            return int(v)
        if isinstance(v, str):
            try:
                return pwd.getpwnam(v).pw_uid
            except (KeyError, ValueError):  # ValueError: a NUL byte
                raise ConfigError("uid", f"no such user {v!r}") from None
        raise ConfigError("uid", f"must be a user name or number, got {v!r}")

    def _resolve_gid(self) -> int | None:
        v = self.gid
        if v is None:
            return None
        if isinstance(v, bool):
            raise ConfigError("gid", f"must be a group name or number, got {v!r}")
        if isinstance(v, int) or (isinstance(v, str) and v.isascii() and v.isdigit()):
            return int(v)
        if isinstance(v, str):
            try:
                return grp.getgrnam(v).gr_gid
            except (KeyError, ValueError):  # ValueError: a NUL byte
                raise ConfigError("gid", f"no such group {v!r}") from None
        raise ConfigError("gid", f"must be a group name or number, got {v!r}")

    def _parse_umask(self) -> int | None:
        v = self.umask
        if v is None:
            return None
        if isinstance(v, str):
            try:
                v = int(v, 8)
            except ValueError:
                raise ConfigError("umask", f"must be an octal mode like '022', got {v!r}") from None
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0o777:
            raise ConfigError("umask", f"must be an octal mode like '022', got {v!r}")
        return v
