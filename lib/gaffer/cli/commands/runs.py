"""Run records kept by gafferd: ``runs``, ``history JOB``, ``cancel RUN``."""

from __future__ import annotations

from gaffer.cli.context import UsageError
from gaffer.cli.names import job_name
from gaffer.cli.output import human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from gaffer.cli.context import Context


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    def add(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help, **kw)
        return p

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--reason", metavar="R", help="only runs that ended for this reason")
        p.add_argument("--once", action="store_true", help="only one-off runs (run/commit)")
        p.add_argument(
            "-n", "--limit", type=int, default=None, metavar="N", help="at most N (default 100)"
        )
        p.add_argument("-l", "--long", action="store_true", help="with each run's last output")

    p = add(
        "runs",
        "recorded runs and exits, newest first",
        description="Every exit of a supervised process and every one-off run, as gafferd "
        "recorded them (kept in <state_dir>/runs.db).",
    )
    p.add_argument("--job", metavar="JOB", help="only this job (or session)")
    filters(p)
    p.set_defaults(func=cmd_runs)

    p = add("history", "the recorded runs of one job (runs --job JOB)")
    p.add_argument("job", metavar="JOB")
    filters(p)
    p.set_defaults(func=cmd_runs)

    p = add(
        "cancel",
        "stop a running one-off run, recorded as cancelled",
        description="Stop a running one-off run gracefully and wait until it has stopped; "
        "exits 1 if it has already ended.",
    )
    p.add_argument("run", metavar="RUN", type=int, help="its id (gaffer runs)")
    p.set_defaults(func=cmd_cancel)


def _when(ts: float | None) -> str:
    import time

    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _exit(run: dict[str, Any]) -> str:
    if run.get("term_signal"):
        return f"sig {run['term_signal']}"
    status = run.get("exit_status")
    return "-" if status is None else str(status)


def _output(run: dict[str, Any]) -> list[str]:
    return [
        f"    {label}: {line}"
        for label, lines in (run.get("output") or {}).items()
        for line in lines
    ]


def cmd_runs(ctx: Context, args: argparse.Namespace) -> int:
    import time

    if args.limit is not None and not 1 <= args.limit <= 1000:
        raise UsageError(f"--limit: expected 1 to 1000, got {args.limit}")
    job = job_name(args.job) if args.command == "history" else args.job
    runs = ctx.client.runs(
        job=job, once=True if args.once else None, reason=args.reason, limit=args.limit
    )
    out = ctx.out
    if out.json_mode:
        out.json(runs)
        return 0
    if not runs:
        out.note("no runs recorded" + (f" for {job}" if job else ""))
        return 0
    now = time.time()
    rows = []
    for r in runs:
        started = r.get("started")
        ended = r.get("ended")
        took = (ended or now) - started if started else None
        rows.append(
            [
                r["id"],
                r["job"] + (" (run)" if r.get("once") else ""),
                r["pid"],
                _when(started),
                human_duration(took),
                _exit(r),
                r.get("reason"),
            ]
        )
    if not args.long:
        heads = ["ID", "JOB", "PID", "STARTED", "DURATION", "EXIT", "REASON"]
        out.print(out.table(heads, rows, "rlrllrl"))
        return 0
    for r, row in zip(runs, rows, strict=True):
        out.print("  ".join("-" if v is None else str(v) for v in row))
        for line in _output(r):
            out.print(line)
    return 0


def cmd_cancel(ctx: Context, args: argparse.Namespace) -> int:
    run = ctx.client.cancel_run(args.run)
    ctx.out.result(run, f"run {run['id']} ({run['job']}, process {run['pid']}): {run['reason']}")
    return 0
