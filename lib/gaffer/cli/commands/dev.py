"""``gaffer dev``: run a Procfile in the foreground, like foreman or honcho,
without a daemon: a :class:`~gaffer.manager.Manager` runs in this process
and every line of output is printed after its process's coloured prefix.

As with foreman and honcho, when one process exits by itself every other
one is stopped and ``gaffer dev`` exits with that process's status (a
development setup with a dead part is better noticed than half running);
``--restart`` supervises instead, restarting what exits as gafferd would.
Ctrl-C or SIGTERM stops everything gracefully and exits 0; a second one
kills what is left at once.
"""

from __future__ import annotations

import os

from gaffer.cli.context import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from gaffer.cli.context import Context
    from gaffer.config import ProcessConfig
    from gaffer.events import Event

DEFAULT_PORT = 5000
GRACEFUL_TIMEOUT = 5.0  # foreman's and honcho's


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dev",
        aliases=["dev:start"],
        parents=[common],
        help="run a Procfile in the foreground (like foreman or honcho), no daemon needed",
        description="Run the processes of a Procfile here, their output prefixed and "
        "coloured per process, until Ctrl-C (which stops them all). When a process "
        "exits, the others are stopped and its exit status is returned (as foreman "
        "and honcho do); --restart restarts it instead. Each process gets $PORT: the "
        "base port (default 5000), +100 per Procfile line, +1 per process of a line.",
    )
    p.add_argument(
        "procfile", nargs="?", default="Procfile", metavar="PROCFILE", help="default: ./Procfile"
    )
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=None,
        metavar="FILE",
        help="a .env file of KEY=VALUE lines for every process, repeatable "
        "(default: the .env next to the Procfile, if there is one)",
    )
    p.add_argument(
        "-p",
        "--port",
        type=int,
        default=None,
        metavar="N",
        help="the base port (default: $PORT of the .env or the environment, else 5000)",
    )
    p.add_argument(
        "-c",
        "--concurrency",
        action="append",
        default=[],
        metavar="NAME=N[,NAME=N]",
        help="how many processes of a type (default 1 each; 0 leaves it out)",
    )
    p.add_argument(
        "-t",
        "--graceful-timeout",
        type=float,
        default=GRACEFUL_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a process has to stop before it is killed (default {GRACEFUL_TIMEOUT:g})",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="restart processes that exit (as gafferd does) instead of stopping them all",
    )
    p.set_defaults(func=cmd_dev)


def _concurrency(values: list[str], known: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        for item in value.split(","):
            name, sep, count = item.strip().partition("=")
            if not sep or not count.strip().isdigit():
                raise UsageError(f"dev: -c/--concurrency: expected NAME=N, got {item!r}")
            if name.strip() not in known:
                raise UsageError(
                    f"dev: -c/--concurrency: no process type {name.strip()!r} in the Procfile "
                    f"({', '.join(known)})"
                )
            out[name.strip()] = int(count)
    return out


def _plan(args: argparse.Namespace) -> list[tuple[ProcessConfig, dict[str, str]]]:
    """The jobs to run, each with the env its processes get, from the command
    line and the files it names; a bad file or argument is a UsageError."""
    import dataclasses

    from gaffer.daemon.config import read_env_files, read_procfile
    from gaffer.errors import ConfigError

    root = os.path.dirname(os.path.abspath(args.procfile))
    env_files = args.env
    if env_files is None:
        default = os.path.join(root, ".env")
        env_files = [default] if os.path.isfile(default) else []
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"dev: -p/--port: must be a port number, got {args.port}")
    if not args.graceful_timeout >= 0:
        raise UsageError("dev: -t/--graceful-timeout: must be ≥ 0 seconds")
    try:
        env = read_env_files(env_files) if env_files else {}
        raw_port = args.port if args.port is not None else env.get("PORT", os.environ.get("PORT"))
        try:
            port = DEFAULT_PORT if raw_port is None else int(raw_port)
        except ValueError:
            raise UsageError(f"dev: $PORT: expected a port number, got {raw_port!r}") from None
        procfile = read_procfile(args.procfile, port)
        names = [c.name for c in procfile]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UsageError(f"dev: {args.procfile}: {dupes[0]} is defined twice")
        if not procfile:
            raise UsageError(f"dev: {args.procfile}: no processes (expected 'name: command' lines)")
        counts = _concurrency(args.concurrency, names)
        plan = []
        for config in procfile:
            # foreman's $PORT: the line's port (read_procfile's), + the process's index
            extra = {**env, "PORT": f"$(({config.env['PORT']} + GAFFER_INDEX))"}
            config = dataclasses.replace(
                config,
                cwd=root,
                numprocesses=counts.get(config.name, 1),
                graceful_timeout=args.graceful_timeout,
                restart="always" if args.restart else "never",
                startsecs=0,
            )
            config.check_env(extra)
            plan.append((config, extra))
    except ConfigError as e:
        raise UsageError(f"dev: {e}") from None
    return plan


def cmd_dev(ctx: Context, args: argparse.Namespace) -> int:
    import signal

    from gaffer.cli.commands.watch import HOLD_EXIT, LinePrinter, exit_text, short_name
    from gaffer.manager import Manager

    plan = _plan(args)
    manager = Manager()
    loop = manager.loop
    printer = LinePrinter(ctx.out, json_mode=ctx.out.json_mode, clock=True)
    printer.width = len("system")
    for config, _ in plan:
        for index in range(config.numprocesses):
            printer.know(config.name, index)
    # code: the exit status to return, set by the first process that exits by itself
    outcome: dict[str, Any] = {"code": None, "stopping": False, "signals": 0}
    pending: dict[int, Any] = {}  # pid -> (what to do once its exit is printed, timer)

    def on_output(event: Event) -> None:
        d = event.data
        if event.type == "output":
            printer.feed(short_name(d["name"]), d["index"], d["pid"], d["label"], d["data"])
        elif event.type == "eof":
            printer.eof(d["pid"], d["label"])
            if d["pid"] in pending and not printer.held(d["pid"]):
                then, timer = pending.pop(d["pid"])
                timer.cancel()
                then()

    def on_event(event: Event) -> None:
        d = event.data
        name, index, pid = short_name(d["name"]), d["index"], d["pid"]
        if event.type == "spawn":
            printer.release(slot=(name, index))
            printer.note(name, index, pid, f"started, os pid {d['os_pid']}")
            return
        printer.exited(name, index, pid, exit_text(d))
        then: Callable[[], None] = lambda: None  # noqa: E731
        if outcome["code"] is None and not outcome["stopping"] and not args.restart:
            status = d.get("exit_status")
            outcome["code"] = status if status is not None else 128 + int(d["term_signal"] or 0)
            why = f"{name}.{index} {exit_text(d)}: stopping every process"
            then = lambda: stop(why)  # noqa: E731
        if printer.held(pid):
            # once its last output has been printed, or after a moment if
            # something it left behind holds its pipes open
            pending[pid] = (then, loop.call_later(HOLD_EXIT, finish, pid))
        else:
            then()

    def finish(pid: int) -> None:
        printer.release(pid)
        then, _ = pending.pop(pid)
        then()

    def stop(why: str) -> None:
        if not outcome["stopping"]:
            outcome["stopping"] = True
            printer.system(why)
            manager.stop()

    def on_signal(signum: int) -> None:
        outcome["signals"] += 1
        name = signal.Signals(signum).name
        if outcome["signals"] > 1:
            printer.system(f"{name} again: killing every process")
            manager.kill_now()
        else:
            stop(f"{name}: stopping every process")

    manager.emitter.subscribe("stream", on_output)
    for topic in ("spawn", "exit"):
        manager.emitter.subscribe(topic, on_event)
    manager.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        for config, env in plan:
            manager.load(config, env=env)
        manager.run()
    finally:
        if manager.started:  # a load failed, or the loop was left early
            loop.run_until_complete(manager.astop())
        printer.flush_all()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        loop.close()
    return int(outcome["code"] or 0)
