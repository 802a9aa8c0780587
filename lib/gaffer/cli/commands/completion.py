"""``gaffer completion bash|zsh|tcsh``: a shell completion script, generated
by shtab from the command's full parser, so that it always knows every
command and option. Job arguments complete with the names of the jobs the
daemon has (the script asks ``gaffer completion --jobs``); file arguments
complete with file names."""

from __future__ import annotations

from gaffer.cli.context import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from gaffer.cli.context import Context

SHELLS = ("bash", "zsh", "tcsh")
JOBS_COMMAND = "gaffer completion --jobs 2>/dev/null"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    import argparse

    p = sub.add_parser(
        "completion",
        parents=[common],
        help="print a shell completion script (bash, zsh or tcsh)",
        description="Print a completion script for the shell. Bash: "
        "gaffer completion bash > ~/.local/share/bash-completion/completions/gaffer ; "
        "zsh: gaffer completion zsh > ~/.zfunc/_gaffer (with ~/.zfunc in $fpath, "
        "before compinit).",
    )
    p.add_argument("shell", nargs="?", choices=SHELLS, help="the shell")
    # What the scripts run to complete job names: the daemon's jobs, one a line.
    p.add_argument("--jobs", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_completion)


def cmd_completion(ctx: Context, args: argparse.Namespace) -> int:
    if args.jobs:
        return _print_jobs(ctx)
    if args.shell is None:
        raise UsageError(f"completion: which shell? ({', '.join(SHELLS)})")
    import shtab

    from gaffer.cli.main import build_parser

    parser = build_parser()
    _complete_arguments(parser, shtab.cmd(JOBS_COMMAND), shtab.FILE)
    script = shtab.complete(parser, shell=args.shell)
    if ctx.out.json_mode:
        ctx.out.json({"shell": args.shell, "script": script})
    else:
        ctx.out.print(script.rstrip("\n"))
    return 0


def _complete_arguments(parser: argparse.ArgumentParser, jobs: Any, files: Any) -> None:
    """Say how each argument completes, by what its metavar says it is."""
    import argparse

    seen: set[int] = set()
    todo = [parser]
    while todo:
        p = todo.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(c for c in action.choices.values() if id(c) not in seen)
                seen.update(id(c) for c in action.choices.values())
                continue
            metavar = action.metavar if isinstance(action.metavar, str) else ""
            if not action.option_strings and metavar.startswith("JOB"):
                action.complete = jobs  # type: ignore[attr-defined]
            elif "FILE" in metavar.upper():
                action.complete = files  # type: ignore[attr-defined]


def _print_jobs(ctx: Context) -> int:
    from gaffer.cli.commands.watch import short_name
    from gaffer.client.errors import GafferClientError

    try:
        names = ctx.client.jobs()
    except GafferClientError:
        return 0  # nothing to offer: completion must not print errors
    for name in sorted(short_name(n) for n in names):
        ctx.out.print(name)
    return 0
