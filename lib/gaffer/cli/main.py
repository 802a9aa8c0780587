"""The ``gaffer`` command: drive a gafferd over its HTTP API.

Exit codes: 0 ok; 1 the daemon refused or an operation failed; 2 a usage
error; 3 the daemon cannot be reached. Each command lives in a module of
:mod:`gaffer.cli.commands` that adds its parser with ``register``; modules
import what is heavy (rich, PyYAML, tornado) inside the commands that need
it, so that ``gaffer ps`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from gaffer import __version__
from gaffer.cli.context import Context, Failure, UsageError
from gaffer.client.errors import ConnectionError, GafferClientError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

COMMAND_MODULES = ("jobs", "io", "watch", "admin", "dev", "completion")
# Which module defines each command, so that only that one is imported and
# its parsers built (argparse for every command costs ~10 ms at each start).
# Anything not found here (--help, a typo) builds them all.
COMMANDS = {
    **dict.fromkeys(
        (
            "ps",
            "status",
            "info",
            "ps:info",
            "load",
            "unload",
            "reload",
            "update",
            "scale",
            "ps:scale",
            "start",
            "ps:start",
            "stop",
            "ps:stop",
            "restart",
            "kill",
            "ps:kill",
            "run",
            "commit",
            "sessions",
            "jobs",
            "export",
            "check",
        ),
        "jobs",
    ),
    **dict.fromkeys(("send", "recv"), "io"),
    **dict.fromkeys(("logs", "events", "top"), "watch"),
    **dict.fromkeys(
        (
            "login",
            "logout",
            "key:list",
            "key:create",
            "key:info",
            "key:delete",
            "user:list",
            "user:create",
            "user:info",
            "user:delete",
            "user:setpassword",
            "user:setkey",
            "daemon",
        ),
        "admin",
    ),
    **dict.fromkeys(("dev", "dev:start"), "dev"),
    **dict.fromkeys(("completion",), "completion"),
    **dict.fromkeys(("runs", "history", "cancel"), "runs"),
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Formatter(argparse.HelpFormatter):
    """argparse's, with the terminal width looked up once: argparse makes a
    formatter for every add_argument() (to check the metavar), each asking
    shutil (imported for it) for the terminal's size — 4 ms at each start."""

    _columns: int | None = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        if Formatter._columns is None:
            try:
                Formatter._columns = os.get_terminal_size(sys.stderr.fileno()).columns
            except (OSError, ValueError):
                Formatter._columns = 80
        super().__init__(prog, indent_increment, max_help_position, Formatter._columns - 2)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kw)

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.partition(" ")[2]
        err = UsageError(f"{command}: {message}" if command else message)
        err.usage = self.format_usage()
        raise err


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. Defaults are
    SUPPRESSed here and set once on the top parser, so a subcommand's parser
    never resets what was given before the command's name."""
    p = Parser(add_help=False)
    s = argparse.SUPPRESS
    g = p.add_argument_group("connection")
    g.add_argument(
        "-H",
        "--host",
        default=s,
        help="the daemon: a unix socket path, or an http:// or https:// URL "
        "(default: $GAFFER_HOST, the profile's host, or the local daemon's socket)",
    )
    g.add_argument(
        "-P", "--profile", default=s, help="a profile of ~/.gaffer/gaffer.yml (see `gaffer login`)"
    )
    g.add_argument("--key", default=s, help="the API key (default: $GAFFER_KEY or the profile's)")
    g.add_argument("--cacert", default=s, metavar="FILE", help="CA bundle to verify the daemon")
    g.add_argument("--cert", default=s, metavar="FILE", help="client certificate (TLS)")
    g.add_argument("--cert-key", default=s, metavar="FILE", help="the client certificate's key")
    g.add_argument(
        "--insecure", action="store_true", default=s, help="do not verify the daemon's certificate"
    )
    g.add_argument(
        "--timeout", type=float, default=s, metavar="SECONDS", help="per request (default 30)"
    )
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", default=s, help="machine-readable output")
    o.add_argument(
        "--color",
        "--colour",
        dest="color",
        action="store_true",
        default=s,
        help="colours even when not on a terminal",
    )
    o.add_argument(
        "--no-color",
        "--no-colour",
        dest="color",
        action="store_false",
        default=s,
        help="no colours (also: $NO_COLOR)",
    )
    return p


DEFAULTS = {
    "host": None,
    "profile": None,
    "key": None,
    "cacert": None,
    "cert": None,
    "cert_key": None,
    "insecure": False,
    "timeout": 30.0,
    "json": False,
    "color": None,
}


class _Unused:
    """Takes any parser call and ignores it: what the commands not being run
    get, since each real ArgumentParser costs ~0.4 ms here (argparse asks
    gettext for its section titles, which searches the disk every time)."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kw: Any) -> _Unused:
        return self


class _OneCommand:
    """Stands in for the subparsers while only ``command`` is wanted: the
    module's other commands are not built at all."""

    def __init__(self, sub: Any, command: str) -> None:
        self._sub = sub
        self._command = command

    def add_parser(self, name: str, **kw: Any) -> Any:
        if self._command == name or self._command in kw.get("aliases", ()):
            return self._sub.add_parser(name, **kw)
        return _Unused()


def build_parser(only: str | None = None, command: str | None = None) -> Parser:
    """The parser, with every command's (``only=None``), or one module's, or
    (``command`` given too) only that command's."""
    import importlib

    common = common_options()
    parser = Parser(
        prog="gaffer",
        description="Control a gafferd process supervisor.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 refused or failed, 2 usage error, 3 daemon unreachable.",
    )
    # Not set_defaults: the common options' actions are shared with every
    # subparser, and a default set here would be reset by the subcommand.
    parser.set_defaults(func=None)
    parser.add_argument("-V", "--version", action="version", version=f"gaffer {__version__}")
    # prog given: else argparse lays out a usage line (and imports shutil) to make it
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, prog="gaffer"
    )
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"gaffer.cli.commands.{name}")
        module.register(sub if command is None else _OneCommand(sub, command), common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    ctx: Context | None = None
    try:
        command = next((a for a in args_in if a in COMMANDS), None)
        module = COMMANDS[command] if command else None
        try:
            args = build_parser(module, command).parse_args(args_in)
        except UsageError:
            if module is None:
                raise
            args = build_parser().parse_args(args_in)  # the error as the full parser words it
        parser = build_parser() if args.func is None else None
        for name, value in DEFAULTS.items():
            if not hasattr(args, name):
                setattr(args, name, value)
        if parser is not None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        ctx = Context(args)
        code = args.func(ctx, args)
        return EXIT_OK if code is None else int(code)
    except UsageError as e:
        if e.usage:
            sys.stderr.write(e.usage)
        _report(ctx, args_in, str(e), 2, "try 'gaffer --help' or 'gaffer COMMAND --help'")
        return _own(ctx, EXIT_USAGE)
    except ConnectionError as e:
        hint = "start it with `gafferd` (or `make run`), or point -H/$GAFFER_HOST at it"
        _report(ctx, args_in, str(e), 0, hint)
        return _own(ctx, EXIT_UNREACHABLE)
    except GafferClientError as e:
        message = f"{e.reason} ({e.status})" if e.status else e.reason
        _report(ctx, args_in, message, e.status)
        return _own(ctx, EXIT_FAILED)
    except Failure as e:
        if str(e):
            _report(ctx, args_in, str(e), 1)
        return _own(ctx, EXIT_FAILED)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gaffer logs | head`: the reader has gone, nothing more to say
        sys.stderr.close()
        return EXIT_OK
    finally:
        if ctx is not None:
            ctx.close()


def _own(ctx: Context | None, code: int) -> int:
    """The exit code for gaffer's own failure. A command whose exit code is
    another program's (``run -f`` exits with the run's status) sets
    ``own_failure`` so that its own failures cannot be taken for the run's
    (as ``docker run`` does with 125)."""
    own = getattr(ctx.args, "own_failure", None) if ctx is not None else None
    return code if own is None else int(own)


def _report(
    ctx: Context | None, argv: Sequence[str], message: str, errno: int, hint: str | None = None
) -> None:
    # before the arguments are parsed there is no ctx: --json still asks for JSON
    if ctx.args.json if ctx is not None else "--json" in argv:
        import json

        print(json.dumps({"error": message, "errno": errno}))
    from gaffer.cli.output import wants_colour

    label = "gaffer:"
    if wants_colour(sys.stderr, ctx.args.color if ctx else None):
        label = f"\x1b[1;31m{label}\x1b[0m"
    print(f"{label} {message}", file=sys.stderr)
    if hint:
        print(f"  ({hint})", file=sys.stderr)


def run() -> None:
    """The console script: :func:`main`, then exit without the interpreter's
    clean-up — tearing down the modules and objects of a process about to end
    takes ~7 ms here, an eighth of what ``gaffer ps`` may take. Output is
    flushed first; nothing the command opened needs more than that (files are
    written through ``with`` blocks, helper threads are daemons)."""
    import contextlib  # already loaded by then (argparse's gettext brings it)

    code = main()
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    with contextlib.suppress(BrokenPipeError, ValueError):  # closed after a broken pipe
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
