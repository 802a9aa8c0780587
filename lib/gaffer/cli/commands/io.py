"""Talking to a process through its IO channel: ``send`` writes to its stdin
(or a custom stream), ``recv`` prints what it writes, as 0.5's commands did.

Both go over the ``/<pid>/channel`` websocket, which brings tornado: it is
imported only when one of these commands runs.
"""

from __future__ import annotations

import sys

from gaffer.cli.context import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from gaffer.cli.context import Context


def pid_arg(raw: str) -> int:
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    raise UsageError(f"PID: expected a process id (a positive number), got {raw!r}")


def quiet_tornado() -> None:
    """tornado logs a failed TLS handshake itself; the command reports it
    once, as the ConnectionError it becomes."""
    import logging

    logging.getLogger("tornado").setLevel(logging.CRITICAL)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "send",
        parents=[common],
        help="write to a process's stdin (or a custom stream)",
        description="Write DATA to the stdin of process PID (its job needs "
        "redirect_input: true), or to one of its custom_streams with --stream. "
        "DATA '-' reads it from standard input.",
    )
    p.add_argument("pid", metavar="PID", help="the process (its gaffer pid, as `gaffer ps` shows)")
    p.add_argument("data", metavar="DATA", help="the text to write; '-' reads standard input")
    p.add_argument("--stream", metavar="NAME", help="a custom stream of the process, not stdin")
    p.add_argument("-n", "--newline", action="store_true", help="append a newline to DATA")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "recv",
        parents=[common],
        help="print what a process writes, as it writes it (until Ctrl-C)",
        description="Print the output of process PID as it comes (stdout and "
        "stderr, or one stream with --stream) until interrupted. "
        "For a job's logs, with history, see `gaffer logs`.",
    )
    p.add_argument("pid", metavar="PID", help="the process (its gaffer pid)")
    p.add_argument("--stream", metavar="NAME", help="only this output or custom stream")
    p.set_defaults(func=cmd_recv)


def cmd_send(ctx: Context, args: argparse.Namespace) -> int:
    pid = pid_arg(args.pid)
    if args.data == "-":
        raw = sys.stdin.buffer.read()
        try:
            data = raw.decode()
        except UnicodeDecodeError:
            raise UsageError("DATA: standard input is not UTF-8 text") from None
    else:
        data = args.data
    if args.newline:
        data += "\n"
    quiet_tornado()
    ctx.client.send(pid, data, args.stream)
    size = len(data.encode())
    out = ctx.out
    if out.json_mode:
        out.json({"ok": True, "pid": pid, "bytes": size})
    else:
        where = f"stream {args.stream!r} of process {pid}" if args.stream else f"process {pid}"
        out.print(f"sent {size} byte{'s' if size != 1 else ''} to {where}")
    return 0


def cmd_recv(ctx: Context, args: argparse.Namespace) -> int:
    import json

    pid = pid_arg(args.pid)
    quiet_tornado()
    with ctx.client.channel_io(pid, args.stream, mode=1) as io:
        # on stderr, so also with --json: a script can wait for it
        ctx.out.note(f"receiving from process {pid} (Ctrl-C stops)")
        stream = ctx.out.stream
        for text in io:
            if ctx.out.json_mode:
                stream.write(json.dumps({"pid": pid, "data": text}) + "\n")
            else:
                stream.write(text)
            stream.flush()
    return 0
