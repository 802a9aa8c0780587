"""The commands of the websocket channel (``CMD``), each checked against the
job it touches before it runs.

A command is refused — and not run — unless the caller's key allows it: read
for views, write for starting, stopping, scaling and signalling, manage for
loading, unloading and changing configs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from gaffer.config import ProcessConfig, split_name
from gaffer.errors import BadRequest
from gaffer.http.base import Identity
from gaffer.manager import Manager

Command = Callable[..., Awaitable[Any]]


class Context:
    def __init__(self, manager: Manager, identity: Identity) -> None:
        self.manager = manager
        self.identity = identity

    def job(self, name: Any, level: str, sessionid: Any = None) -> str:
        """The full name of job ``name``, once the caller may ``level`` it."""
        if sessionid is not None and not isinstance(sessionid, str):
            raise BadRequest(f"sessionid: expected a string, got {sessionid!r}")
        if not isinstance(name, str):
            raise BadRequest(f"name: expected a job name, got {name!r}")
        session, job = split_name(name, sessionid)
        full = f"{session}.{job}"
        self.identity.require(level, full)
        self.manager.get(full)
        return full

    def pid(self, pid: Any, level: str) -> int:
        if isinstance(pid, bool) or not isinstance(pid, int | str):
            raise BadRequest(f"pid: expected a process id, got {pid!r}")
        proc = self.manager.get_process(pid)
        self.identity.require(level, proc.name)
        return proc.pid


async def sessions(ctx: Context) -> list[str]:
    return ctx.identity.readable_sessions(ctx.manager)


async def jobs(ctx: Context, sessionid: str | None = None) -> list[str]:
    if sessionid is not None and not isinstance(sessionid, str):
        raise BadRequest(f"sessionid: expected a string, got {sessionid!r}")
    return [j for j in ctx.manager.jobs(sessionid) if ctx.identity.can("read", j)]


async def pids(ctx: Context, name: str | None = None) -> list[int]:
    if name is not None:
        return ctx.manager.pids(ctx.job(name, "read"))
    return ctx.identity.readable_pids(ctx.manager)


def _config(config: Any) -> ProcessConfig:
    if not isinstance(config, dict):
        raise BadRequest(f"config: expected an object, got {type(config).__name__}")
    return ProcessConfig.from_dict(config)


def _env(env: Any) -> dict[str, str] | None:
    if env is None:
        return None
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise BadRequest("env: expected an object of strings")
    return env


async def load(
    ctx: Context, config: Any, sessionid: str | None = None, env: Any = None, start: bool = True
) -> bool:
    cfg = _config(config)
    session = sessionid or "default"
    if not isinstance(session, str):
        raise BadRequest(f"sessionid: expected a string, got {sessionid!r}")
    ctx.identity.require("manage", f"{session}.{cfg.name}")
    if not isinstance(start, bool):
        raise BadRequest(f"start: expected true or false, got {start!r}")
    ctx.manager.load(cfg, sessionid=session, env=_env(env), start=start)
    return True


async def unload(ctx: Context, name: Any, sessionid: Any = None) -> bool:
    await ctx.manager.unload(ctx.job(name, "manage", sessionid))
    return True


async def reload(ctx: Context, name: Any, sessionid: Any = None) -> bool:
    await ctx.manager.reload(ctx.job(name, "write", sessionid))
    return True


async def update(
    ctx: Context, config: Any, sessionid: Any = None, env: Any = None, start: bool = False
) -> bool:
    cfg = _config(config)
    full = ctx.job(cfg.name, "manage", sessionid or "default")
    if not isinstance(start, bool):
        raise BadRequest(f"start: expected true or false, got {start!r}")
    await ctx.manager.update(cfg, sessionid=full.split(".", 1)[0], env=_env(env), start=start)
    return True


async def start_job(ctx: Context, name: Any, sessionid: Any = None) -> bool:
    ctx.manager.start_job(ctx.job(name, "write", sessionid))
    return True


async def stop_job(ctx: Context, name: Any, sessionid: Any = None) -> bool:
    await ctx.manager.stop_job(ctx.job(name, "write", sessionid))
    return True


async def scale(ctx: Context, name: Any, num: Any = 1) -> int:
    return ctx.manager.scale(ctx.job(name, "write"), num)


async def info(ctx: Context, name: Any) -> dict[str, Any]:
    return ctx.manager.info(ctx.job(name, "read"))


async def stats(ctx: Context, name: Any) -> dict[str, Any]:
    return ctx.manager.stats(ctx.job(name, "read"))


async def stopall(ctx: Context, name: Any = None) -> bool:
    if name is None:
        ctx.identity.require("write", None)
        await ctx.manager.stopall()
    else:
        await ctx.manager.stopall(ctx.job(name, "write"))
    return True


async def killall(ctx: Context, name: Any, sig: Any) -> bool:
    ctx.manager.killall(ctx.job(name, "write"), sig)
    return True


async def commit(ctx: Context, name: Any, graceful_timeout: Any = 0, env: Any = None) -> int:
    # A new environment can make the program run anything: that needs manage.
    return ctx.manager.commit(
        ctx.job(name, "manage" if env else "write"), graceful_timeout, _env(env)
    )


async def process_info(ctx: Context, pid: Any) -> dict[str, Any]:
    return ctx.manager.get_process(ctx.pid(pid, "read")).info()


async def process_stats(ctx: Context, pid: Any) -> dict[str, Any]:
    return ctx.manager.get_process(ctx.pid(pid, "read")).stats()


async def stop_process(ctx: Context, pid: Any) -> bool:
    await ctx.manager.stop_process(ctx.pid(pid, "write"))
    return True


async def send(ctx: Context, pid: Any, lines: Any, stream: Any = None) -> bool:
    if stream is not None and not isinstance(stream, str):
        raise BadRequest(f"stream: expected a stream name, got {stream!r}")
    ctx.manager.send(ctx.pid(pid, "write"), lines, stream)
    return True


async def kill(ctx: Context, pid: Any, sig: Any) -> bool:
    ctx.manager.kill(ctx.pid(pid, "write"), sig)
    return True


COMMANDS: dict[str, Command] = {
    f.__name__: f
    for f in (
        sessions,
        jobs,
        pids,
        load,
        unload,
        reload,
        update,
        start_job,
        stop_job,
        scale,
        info,
        stats,
        stopall,
        killall,
        commit,
        process_info,
        process_stats,
        stop_process,
        send,
        kill,
    )
}


async def run(ctx: Context, name: Any, args: Any, kwargs: Any) -> Any:
    """Run command ``name``; a bad name or bad arguments is a 400 naming them."""
    if not isinstance(name, str) or name not in COMMANDS:
        raise BadRequest(f"name: unknown command {name!r} (one of {', '.join(COMMANDS)})")
    if not isinstance(args, list):
        raise BadRequest(f"args: expected a list, got {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise BadRequest(f"kwargs: expected an object, got {type(kwargs).__name__}")
    fn = COMMANDS[name]
    try:
        inspect.signature(fn).bind(ctx, *args, **kwargs)
    except TypeError as e:
        raise BadRequest(f"args: {name}: {e}") from None
    return await fn(ctx, *args, **kwargs)
