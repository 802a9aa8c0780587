"""Commands on jobs and processes: ``ps``/``status``, ``info``, ``load``,
``unload``, ``reload``, ``update``, ``scale``, ``start``, ``stop``,
``restart``, ``kill``, ``run``, ``sessions``, ``jobs``, ``export``, ``check``."""

from __future__ import annotations

from gaffer.cli.output import human_bytes, human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from gaffer.cli.context import Context


def job_name(raw: str) -> str:
    """``web`` → ``default.web``; ``session.job`` as given."""
    return raw if "." in raw else f"default.{raw}"


def add_wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="return once the daemon has the request")
    p.add_argument(
        "--wait-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for the change (default 60)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ps",
        aliases=["status"],
        parents=[common],
        help="jobs and their processes: state, pids, uptime, CPU, memory, restarts",
        description="A table of jobs and their processes.",
    )
    p.add_argument("names", nargs="*", metavar="JOB", help="only these jobs or sessions")
    p.add_argument("--no-stats", action="store_true", help="skip CPU and memory (faster)")
    p.set_defaults(func=cmd_ps)


def cmd_ps(ctx: Context, args: argparse.Namespace) -> int:
    names = [n if "." in n or n in ctx.client.sessions() else job_name(n) for n in args.names]
    jobs = ctx.client.status(names, stats=not args.no_stats)
    out = ctx.out
    if out.json_mode:
        out.json(jobs)
        return 0
    if not jobs:
        out.note("no jobs loaded" if not names else "no such job")
        return 0 if not names else 1
    rows: list[list[Any]] = []
    for job in jobs:
        procs = job["processes"]
        if not procs:
            state = "stopped" if not job["active"] else "idle"
            rows.append([job["name"], "-", None, None, state, None, None, None, 0])
        for r in procs:
            idx = "run" if r.get("once") else r.get("index")
            state = r.get("state") or r.get("slot") or "idle"
            cpu = r.get("cpu")
            rows.append(
                [
                    job["name"],
                    idx,
                    r.get("pid"),
                    r.get("os_pid"),
                    state,
                    human_duration(r.get("uptime")) if r.get("pid") else None,
                    None if cpu is None else f"{cpu:.1f}%",
                    human_bytes(r.get("rss")) if r.get("rss") is not None else None,
                    r.get("restarts", 0),
                ]
            )
    headers = ["JOB", "#", "PID", "OS PID", "STATE", "UPTIME", "CPU", "MEM", "RESTARTS"]
    out.print(out.table(headers, rows, align="lrrrlrrrr", states=4))
    return 0
