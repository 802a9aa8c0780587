"""Readiness and health checks: when a started process counts as up, and
whether it still works.

A job's ``ready:`` option names one check, ``{http: URL}`` (a 2xx answer),
``{tcp: HOST:PORT}`` (a connection is accepted) or ``{exec: CMD}`` (exit 0), with
``interval``, ``timeout`` and ``deadline`` seconds; with ``notify: true`` the check
is the process's own ``READY=1`` (:mod:`gaffer.sdnotify`) and ``ready:`` may only
set its ``deadline``. ``health:`` names a check of the same kinds that runs every
``interval`` once the process is ready, ``failures`` failing in a row restart it.
The target may use the process's variables (``$GAFFER_INDEX``, ``$PORT``,
``$((8000 + GAFFER_INDEX))``), expanded per process like its arguments. Every check
is a coroutine on the daemon's loop: a slow or hanging target never blocks it, and
each attempt is bounded by ``timeout``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from gaffer.errors import ConfigError
from gaffer.interpolate import BadExpression, UndefinedVariable, expand

# The checks themselves import asyncio/tornado when they run: the config (and so
# this module) is also read by the lean `gaffer` command.

KINDS = ("http", "tcp", "exec")
NOTIFY = "notify"  # the kind of a check that is the process's own READY=1


class CheckFailed(Exception):
    """One attempt of a readiness check did not pass; the message says why."""


@dataclass(frozen=True)
class ReadyConfig:
    """One readiness check. ``target`` is the URL, ``HOST:PORT`` or command
    words, before variable expansion (empty for ``notify``)."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("interval", "timeout", "deadline")
    EXAMPLE: ClassVar[str] = "{http: URL}"

    kind: str
    target: str | tuple[str, ...]
    interval: float = 0.5
    timeout: float = 2.0
    deadline: float = 60.0

    @classmethod
    def parse(cls, v: object, fld: str = "ready", notify: bool = False) -> ReadyConfig | None:
        """``notify``: the job has ``notify: true``, so READY=1 is the check and
        ``v`` may only give its deadline."""
        if isinstance(v, ReadyConfig):
            return v
        if v is None:
            return cls(NOTIFY, "") if notify else None
        if not isinstance(v, Mapping):
            raise ConfigError(fld, f"must be a mapping like {cls.EXAMPLE}, got {v!r}")
        unknown = set(v) - set(KINDS) - set(cls.OPTIONS)
        if unknown:
            raise ConfigError(f"{fld}.{sorted(map(str, unknown))[0]}", "unknown option")
        kinds = [k for k in KINDS if k in v]
        if notify:
            if kinds or set(v) - {"deadline"}:
                raise ConfigError(
                    fld, "with notify: true the check is READY=1; ready may only set deadline"
                )
            return cls._options(fld, v, NOTIFY, "")
        if len(kinds) != 1:
            raise ConfigError(fld, "needs exactly one of http, tcp or exec")
        kind = kinds[0]
        raw = v[kind]
        target: str | tuple[str, ...]
        if kind == "exec":
            target = _command(f"{fld}.exec", raw)
        else:
            if not isinstance(raw, str) or not raw.strip():
                raise ConfigError(f"{fld}.{kind}", f"must be a non-empty string, got {raw!r}")
            target = raw.strip()
            if kind == "http" and not target.lower().startswith(("http://", "https://")):
                raise ConfigError(f"{fld}.http", f"must be an http:// or https:// URL, got {raw!r}")
            if kind == "tcp" and "$" not in target:
                split_address(f"{fld}.tcp", target)
        return cls._options(fld, v, kind, target)

    @classmethod
    def _options(
        cls, fld: str, v: Mapping[str, Any], kind: str, target: str | tuple[str, ...]
    ) -> ReadyConfig:
        from gaffer.config import seconds

        d = cls(kind, target)
        values: dict[str, Any] = {}
        for opt in cls.OPTIONS:
            if opt == "failures":
                values[opt] = _count(f"{fld}.{opt}", v.get(opt, getattr(d, opt)))
                continue
            values[opt] = seconds(f"{fld}.{opt}", v.get(opt, getattr(d, opt)))
            if values[opt] <= 0:
                raise ConfigError(f"{fld}.{opt}", "must be > 0 seconds")
        return cls(kind, target, **values)

    def to_dict(self) -> dict[str, Any]:
        if self.kind == NOTIFY:
            return {"deadline": self.deadline}
        target = list(self.target) if isinstance(self.target, tuple) else self.target
        out: dict[str, Any] = {self.kind: target}
        out.update({k: v for k, v in dataclasses.asdict(self).items() if k in self.OPTIONS})
        return out

    @property
    def texts(self) -> tuple[str, ...]:
        return self.target if isinstance(self.target, tuple) else (self.target,)

    def expand(self, env: Mapping[str, str], fld: str = "ready") -> str | list[str]:
        """The target for one process (ConfigError naming ``ready.KIND``)."""
        fld = f"{fld}.{self.kind}"
        try:
            if isinstance(self.target, tuple):
                return [expand(w, env) for w in self.target]
            out = expand(self.target, env)
        except (UndefinedVariable, BadExpression) as e:
            raise ConfigError(fld, str(e)) from None
        if self.kind == "tcp":
            split_address(fld, out)
        return out


@dataclass(frozen=True)
class HealthConfig(ReadyConfig):
    """A liveness check, run every ``interval`` once the process is ready;
    ``failures`` failed attempts in a row restart the process."""

    OPTIONS: ClassVar[tuple[str, ...]] = ("interval", "timeout", "failures")
    EXAMPLE: ClassVar[str] = "{http: URL, interval: 10}"

    interval: float = 10.0
    failures: int = 3

    @classmethod
    def parse_health(cls, v: object, fld: str = "health") -> HealthConfig | None:
        out = cls.parse(v, fld)
        assert out is None or isinstance(out, HealthConfig)
        return out


def _count(fld: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(fld, f"must be a whole number ≥ 1, got {v!r}")
    return v


def _command(fld: str, v: object) -> tuple[str, ...]:
    if isinstance(v, str):
        try:
            words = tuple(shlex.split(v))
        except ValueError as e:
            raise ConfigError(fld, f"cannot split {v!r}: {e}") from None
    elif isinstance(v, list | tuple) and all(isinstance(w, str) for w in v):
        words = tuple(v)
    else:
        raise ConfigError(fld, f"must be a command (a string or a list of strings), got {v!r}")
    if not words or not words[0]:
        raise ConfigError(fld, "is empty")
    return words


def split_address(fld: str, text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(fld, f"must be HOST:PORT, got {text!r}")
    return host, int(port)


# -- one attempt each --------------------------------------------------------------


async def check_http(url: str, timeout: float) -> None:
    from tornado.httpclient import AsyncHTTPClient

    client = AsyncHTTPClient(force_instance=True)
    try:
        response = await client.fetch(
            url,
            raise_error=False,
            connect_timeout=timeout,
            request_timeout=timeout,
            follow_redirects=False,
            validate_cert=False,  # a local probe; the service's cert may be self-signed
        )
    finally:
        client.close()
    if not 200 <= response.code < 300:
        if response.code == 599 and response.error is not None:
            raise CheckFailed(str(response.error))
        raise CheckFailed(f"HTTP {response.code} {response.reason or ''}".rstrip())


async def check_tcp(address: str) -> None:
    import asyncio

    host, port = split_address("ready.tcp", address)
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        raise CheckFailed(f"cannot connect to {address}: {e.strerror or e}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def check_exec(argv: list[str], env: Mapping[str, str], cwd: str | None) -> None:
    import asyncio

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            # its own group: a timed-out check is killed with all it started
            start_new_session=True,
        )
    except OSError as e:
        raise CheckFailed(f"cannot run {argv[0]!r}: {e.strerror or e}") from None
    try:
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            # Cancelled (timeout, or the process went away): kill it now, and reap
            # it through asyncio, which owns this child (gaffer's watcher never
            # sees its pid).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(proc.wait())
    if code != 0:
        what = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        raise CheckFailed(f"{shlex.join(argv)}: {what}")


async def attempt(
    check: ReadyConfig, target: str | list[str], env: Mapping[str, str], cwd: str | None
) -> None:
    """One attempt, bounded by ``check.timeout``; raises CheckFailed."""
    import asyncio

    try:
        async with asyncio.timeout(check.timeout):
            if check.kind == "http":
                assert isinstance(target, str)
                await check_http(target, check.timeout)
            elif check.kind == "tcp":
                assert isinstance(target, str)
                await check_tcp(target)
            else:
                assert isinstance(target, list)
                await check_exec(target, env, cwd)
    except TimeoutError:
        raise CheckFailed(f"no answer within timeout={check.timeout:g}s") from None
