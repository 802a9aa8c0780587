"""The ``gaffer`` command: drive a gafferd over its HTTP API.

Exit codes: 0 ok; 1 the daemon refused or an operation failed; 2 a usage
error; 3 the daemon cannot be reached. Each command lives in a module of
:mod:`gaffer.cli.commands` that adds its parser with ``register``; modules
import what is heavy (rich, PyYAML, tornado) inside the commands that need
it, so that ``gaffer ps`` starts fast.
"""

from __future__ import annotations

import argparse
import sys

from gaffer import __version__
from gaffer.cli.context import Context, Failure, UsageError
from gaffer.client.errors import ConnectionError, GafferClientError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

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
    **dict.fromkeys(("send",), "io"),
    **dict.fromkeys(("logs", "events", "top"), "watch"),
    **dict.fromkeys(
        (
            "login",
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
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        command = self.prog.partition(" ")[2]
        raise UsageError(f"{command}: {message}" if command else message)


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. Defaults are
    SUPPRESSed here and set once on the top parser, so a subcommand's parser
    never resets what was given before the command's name."""
    p = argparse.ArgumentParser(add_help=False)
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


def build_parser(only: str | None = None) -> Parser:
    """The parser, with every command's (``only=None``) or one module's."""
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"gaffer.cli.commands.{name}")
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    ctx: Context | None = None
    try:
        module = next((COMMANDS[a] for a in args_in if a in COMMANDS), None)
        try:
            args = build_parser(module).parse_args(args_in)
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
        _report(ctx, str(e), 2, "try 'gaffer --help' or 'gaffer COMMAND --help'")
        return EXIT_USAGE
    except ConnectionError as e:
        _report(
            ctx,
            str(e),
            0,
            "start it with `gafferd` (or `make run`), or point -H/$GAFFER_HOST at it",
        )
        return EXIT_UNREACHABLE
    except GafferClientError as e:
        _report(ctx, f"{e.reason} ({e.status})" if e.status else e.reason, e.status)
        return EXIT_FAILED
    except Failure as e:
        if str(e):
            _report(ctx, str(e), 1)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gaffer logs | head`: the reader has gone, nothing more to say
        sys.stderr.close()
        return EXIT_OK
    finally:
        if ctx is not None:
            ctx.close()


def _report(ctx: Context | None, message: str, errno: int, hint: str | None = None) -> None:
    if ctx is not None and ctx.args.json:
        import json

        print(json.dumps({"error": message, "errno": errno}))
    from gaffer.cli.output import wants_colour

    label = "gaffer:"
    if wants_colour(sys.stderr, ctx.args.color if ctx else None):
        label = f"\x1b[1;31m{label}\x1b[0m"
    print(f"{label} {message}", file=sys.stderr)
    if hint:
        print(f"  ({hint})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
