"""Commands that watch the daemon: ``logs`` (the processes' output, prefixed
and coloured per process), ``events`` (live events) and ``top`` (a refreshing
CPU/memory table). :class:`LinePrinter`, which prefixes and colours output
lines, is shared with ``gaffer dev``."""

from __future__ import annotations

import json
import time

from gaffer.cli.context import Failure, UsageError
from gaffer.cli.names import not_found, resolve_names
from gaffer.cli.output import PREFIX_COLOURS, STATE_COLOURS, human_bytes, human_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any

    from gaffer.cli.context import Context
    from gaffer.cli.output import Output
    from gaffer.client.sync import EventStream
    from gaffer.client.types import JobStatus

# A line longer than this is printed in pieces rather than held back forever.
MAX_PARTIAL = 64 * 1024
LABELS = ("stdout", "stderr")
HOLD_EXIT = 1.0  # seconds an exit note may wait for the end of the process's output


def short_name(name: str) -> str:
    """``default.web`` → ``web`` (as a user types it); other sessions' jobs in full."""
    return name.removeprefix("default.")


def process_label(name: str, index: int, pid: int | None = None, show_pid: bool = False) -> str:
    """``web.0``; a one-off run (index -1) is ``web.run(7)``; ``web.0(7)`` with ``show_pid``."""
    short = short_name(name)
    if index < 0:
        return f"{short}.run({pid})"
    return f"{short}.{index}({pid})" if show_pid and pid is not None else f"{short}.{index}"


def exit_text(d: Mapping[str, Any]) -> str:
    """What an ``exit`` event says, in words: ``exited with 1``, ``killed by SIGKILL``..."""
    reason = d.get("reason")
    if reason == "spawn_error":
        return f"failed to start: {d.get('error') or 'spawn error'}"
    signum = d.get("term_signal")
    if signum:
        import signal

        try:
            how = f"by {signal.Signals(signum).name}"
        except ValueError:
            how = f"by signal {signum}"
        return f"stopped ({how})" if reason == "stopped" else f"killed {how}"
    status = d.get("exit_status")
    return "stopped" if reason == "stopped" else f"exited with {status}"


class LinePrinter:
    """Prints processes' output a whole line at a time, each after its
    process's prefix (``web.0 |``), padded to the widest prefix so far and
    coloured per process as foreman and honcho do; with ``json_mode``, one
    JSON object per line instead. Output arrives in chunks: what follows a
    chunk's last newline waits for the rest of its line, per process and
    stream, until :meth:`flush`."""

    def __init__(
        self,
        out: Output,
        *,
        json_mode: bool = False,
        clock: bool = False,
        show_pid: bool = False,
        prefixes: bool = True,
    ) -> None:
        self.out = out
        self.stream = out.stream
        self.json_mode = json_mode
        self.clock = clock
        self.show_pid = show_pid
        self.prefixes = prefixes
        self.width = 0
        self._colours: dict[tuple[str, int], str] = {}
        self._partial: dict[tuple[int, str], bytes] = {}
        self._whose: dict[int, tuple[str, int]] = {}
        self._closed: dict[int, set[str]] = {}  # outputs at their end, per pid
        self._held: dict[int, tuple[str, int, str, float]] = {}  # exit notes waiting

    def know(self, name: str, index: int, pid: int | None = None) -> None:
        """Take a process into account for colours and widths before its output
        comes, so that prefixes line up and colours follow the process order."""
        self.colour(name, index)
        self.width = max(self.width, len(process_label(name, index, pid, self.show_pid)))

    def colour(self, name: str, index: int) -> str:
        # Per job and index, not per pid: a restarted process keeps its colour.
        key = (name, index)
        c = self._colours.get(key)
        if c is None:
            c = self._colours[key] = PREFIX_COLOURS[len(self._colours) % len(PREFIX_COLOURS)]
        return c

    def prefix(self, name: str, index: int, pid: int | None, label: str | None = None) -> str:
        text = label if label is not None else process_label(name, index, pid, self.show_pid)
        self.width = max(self.width, len(text))
        head = time.strftime("%H:%M:%S ") if self.clock else ""
        colour = self.colour(name, index) if label is None else "bold"
        return self.out.style(f"{head}{text.ljust(self.width)} |", colour) + " "

    def feed(self, name: str, index: int, pid: int, label: str, data: bytes) -> None:
        key = (pid, label)
        buf = self._partial.pop(key, b"") + data
        lines = buf.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_PARTIAL:
            lines.append(rest)
        elif rest:
            self._partial[key] = rest
            self._whose[pid] = (name, index)
        self.lines(name, index, pid, label, [line.decode("utf-8", "replace") for line in lines])

    def hold(self, name: str, index: int, pid: int, label: str, data: bytes) -> None:
        """The start of a line whose rest is still to come."""
        if data:
            self._partial[(pid, label)] = data
            self._whose[pid] = (name, index)

    def flush(self, pid: int, label: str | None = None) -> None:
        """Print what is left of a line (the process ended, or so did we)."""
        whose = self._whose.get(pid)
        if whose is None:
            return
        for key in [k for k in self._partial if k[0] == pid and label in (None, k[1])]:
            data = self._partial.pop(key)
            self.lines(*whose, pid, key[1], [data.decode("utf-8", "replace")])
        if not any(k[0] == pid for k in self._partial):
            del self._whose[pid]

    def flush_all(self) -> None:
        self.release()
        for pid in sorted({k[0] for k in self._partial}):
            self.flush(pid)

    # A process's exit is often known before the last of its output has been
    # read: the note waits for the end of its stdout and stderr (or release()),
    # so that it comes after the process's last lines, not among them.

    def eof(self, pid: int, label: str) -> None:
        self.flush(pid, label)
        closed = self._closed.setdefault(pid, set())
        closed.add(label)
        if pid in self._held and closed.issuperset(LABELS):
            self.release(pid)

    def exited(self, name: str, index: int, pid: int, text: str) -> None:
        self._held[pid] = (name, index, text, time.monotonic())
        if self._closed.get(pid, set()).issuperset(LABELS):
            self.release(pid)

    def held(self, pid: int) -> bool:
        return pid in self._held

    def release(
        self,
        pid: int | None = None,
        older: float | None = None,
        slot: tuple[str, int] | None = None,
    ) -> None:
        """Print the held exit notes: of ``pid``, of those held longer than
        ``older`` seconds, of the processes of ``slot`` (its next one started),
        or all of them."""
        now = time.monotonic()
        for p in sorted(self._held) if pid is None else [pid]:
            name, index, text, since = self._held.get(p, ("", 0, "", now))
            if p not in self._held or (older is not None and now - since < older):
                continue
            if slot is not None and slot != (name, index):
                continue
            del self._held[p]
            self._closed.pop(p, None)
            self.flush(p)
            self.note(name, index, p, text)

    def lines(self, name: str, index: int, pid: int, label: str, lines: Iterable[str]) -> None:
        texts = [line.removesuffix("\r") for line in lines]
        if not texts:
            return
        if self.json_mode:
            self.stream.write(
                "".join(
                    json.dumps(
                        {"name": name, "pid": pid, "index": index, "label": label, "line": t}
                    )
                    + "\n"
                    for t in texts
                )
            )
        elif self.prefixes:
            prefix = self.prefix(name, index, pid)
            self.stream.write("".join(f"{prefix}{t}\n" for t in texts))
        else:
            self.stream.write("".join(f"{t}\n" for t in texts))
        self.stream.flush()

    def note(self, name: str, index: int, pid: int | None, text: str) -> None:
        """A line about the process (it started, it exited), dimmed; not in JSON."""
        if self.json_mode:
            return
        prefix = self.prefix(name, index, pid) if self.prefixes else ""
        self.stream.write(f"{prefix}{self.out.style(f'[{text}]', 'dim')}\n")
        self.stream.flush()

    def system(self, text: str) -> None:
        """A line of the command's own (honcho's ``system |``); stderr in JSON mode."""
        if self.json_mode:
            self.out.note(text)
            return
        self.stream.write(f"{self.prefix('', 0, None, 'system')}{text}\n")
        self.stream.flush()


# -- logs ------------------------------------------------------------------------------


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "logs",
        parents=[common],
        help="the processes' output, prefixed per process (-f to follow)",
        description="The last lines of each process's output, each prefixed with its "
        "process (job.index |) and coloured per process; -f follows the output live. "
        "Without JOB or PID: every job.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="JOB|PID",
        help="jobs (web, session.job), sessions, or process ids",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing output as it comes")
    p.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=10,
        metavar="N",
        help="the last N lines of each process and stream first (default 10)",
    )
    p.add_argument(
        "--stream",
        choices=("stdout", "stderr", "all"),
        default="all",
        help="which output (default: all)",
    )
    p.add_argument("--no-prefix", action="store_true", help="the lines alone, without prefixes")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser(
        "events",
        parents=[common],
        help="the daemon's events, live",
        description="Events as they happen, one line each: time, type, job, details. "
        "TOPIC: EVENTS (the default: every event but output), EVENTS:<prefix>, JOB:<job>, "
        "PROCESS:<pid>, STREAM:<pid>[.<label>], or a bus prefix (spawn, exit, job.default.web).",
    )
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="what to watch (default: EVENTS)")
    p.add_argument(
        "--job",
        action="append",
        default=[],
        metavar="JOB",
        help="only events of this job or session (repeatable)",
    )
    p.add_argument(
        "--since",
        type=_count,
        default=None,
        metavar="SEQ",
        help="first replay the kept events after sequence number SEQ",
    )
    p.set_defaults(func=cmd_events)

    p = sub.add_parser(
        "top",
        parents=[common],
        help="live CPU and memory of the processes, refreshing",
        description="A table of processes by CPU use, refreshed every -d seconds "
        "(a live screen on a terminal; tables one after another when piped).",
    )
    p.add_argument("names", nargs="*", metavar="JOB", help="only these jobs or sessions")
    p.add_argument(
        "-d",
        "--delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="between refreshes (default 1)",
    )
    p.add_argument(
        "-n",
        "--iterations",
        type=_count,
        default=None,
        metavar="N",
        help="refresh N times, printing plain tables, then exit",
    )
    p.add_argument(
        "--once", dest="iterations", action="store_const", const=1, help="the same as -n 1"
    )
    p.set_defaults(func=cmd_top)


def _count(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        import argparse

        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}")
    return int(text)


def resolve_targets(ctx: Context, raw: Iterable[str]) -> tuple[list[str], list[int]]:
    """Command-line targets → (job or session names, process ids)."""
    targets = list(raw)
    pids = [int(t) for t in targets if t.isascii() and t.isdigit()]
    names = resolve_names(ctx, [t for t in targets if not (t.isascii() and t.isdigit())])
    return names, pids


def _processes(
    ctx: Context, names: list[str], pids: list[int], jobs_seen: list[str] | None = None
) -> list[tuple[str, int, int]]:
    """(job, index, pid) of every process the targets name, in order; the
    jobs looked at go in ``jobs_seen``."""
    client = ctx.client
    out: list[tuple[str, int, int]] = []
    if pids:
        for pid in pids:
            info = client.process_info(pid)
            out.append((str(info.get("name", "?")), int(info.get("index", 0)), pid))
        return out
    jobs = client.status(names, stats=False)
    if jobs_seen is not None:
        jobs_seen.extend(j["name"] for j in jobs)
    for name in names:
        if not any(j["name"] == name or j["name"].startswith(name + ".") for j in jobs):
            raise not_found(name)
    for job in jobs:
        for row in job["processes"]:
            row_pid = row.get("pid")
            if row_pid is not None:
                out.append((job["name"], int(row.get("index", 0)), int(row_pid)))
    return out


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    from gaffer.client.errors import NotFound

    names, pids = resolve_targets(ctx, args.targets)
    if names and pids:
        raise UsageError("logs: give jobs or process ids, not both")
    labels = LABELS if args.stream == "all" else (args.stream,)
    client = ctx.client
    events: EventStream | None = None
    if args.follow:
        # Opened before the tails are read: nothing written in between is lost
        # (and what the tails already showed is skipped by its offset).
        if pids:
            topics = [f"stream.{p}" for p in pids] + [f"proc.{p}" for p in pids]
        else:
            topics = ["stream", "spawn", "exit"]
        events = client.events(topics, names=names)
    printer = LinePrinter(
        ctx.out, json_mode=ctx.out.json_mode, show_pid=bool(pids), prefixes=not args.no_prefix
    )
    shown: dict[tuple[int, str], int] = {}
    try:
        jobs_seen: list[str] = []
        procs = _processes(ctx, names, pids, jobs_seen)
        for name, index, pid in procs:
            printer.know(name, index, pid)
        # Each slot's last exit, with its last lines: a process that crashed
        # (and maybe was replaced) said why there, as supervisorctl tail and
        # pm2 logs would show from their log files.
        exits: dict[tuple[str, int], dict[str, Any]] = {}
        for job in jobs_seen if args.lines else []:
            for entry in client.job_info(job).get("history") or []:
                if not entry.get("once"):
                    exits[job, int(entry.get("index", 0))] = entry
        live = {(name, index) for name, index, _ in procs}
        for (name, index), entry in exits.items():
            if (name, index) not in live:
                _print_exit(printer, name, index, entry, labels, args.lines)
        for name, index, pid in procs:
            if (name, index) in exits:
                _print_exit(printer, name, index, exits[name, index], labels, args.lines)
            for label in labels:
                try:
                    start, data = client.tail(pid, label)
                except NotFound:
                    continue  # gone meanwhile, or no such stream
                shown[(pid, label)] = start + len(data)
                lines = data.split(b"\n")
                rest = lines.pop()
                if rest and events is None:
                    lines.append(rest)
                    rest = b""
                if args.lines and lines:
                    printer.feed(name, index, pid, label, b"\n".join(lines[-args.lines :]) + b"\n")
                # the start of a line whose rest the live output will bring
                printer.hold(name, index, pid, label, rest)
        if events is None:
            return 0
        _follow(printer, events, labels, shown)
    except KeyboardInterrupt:
        printer.flush_all()
        return 0
    finally:
        if events is not None:
            events.close()
    raise Failure("the daemon closed the event stream")


def _print_exit(
    printer: LinePrinter,
    name: str,
    index: int,
    entry: Mapping[str, Any],
    labels: tuple[str, ...],
    lines: int,
) -> None:
    """An exited process's last lines (kept by the daemon with its exit) and how it ended."""
    pid = int(entry.get("pid") or 0)
    printer.know(name, index, pid)
    output = entry.get("output") or {}
    for label in labels:
        printer.lines(name, index, pid, label, list(output.get(label) or [])[-lines:])
    printer.note(name, index, pid, exit_text(entry))


def _follow(
    printer: LinePrinter,
    events: Iterator[Mapping[str, Any]],
    labels: tuple[str, ...],
    shown: dict[tuple[int, str], int],
) -> None:
    for ev in events:
        kind = ev.get("event")
        pid = ev.get("pid")
        if not isinstance(pid, int):
            continue
        name = str(ev.get("name", "?"))
        index = int(ev.get("index") or 0)
        if kind == "output":
            label = str(ev.get("label"))
            if label not in labels:
                continue
            offset = ev.get("offset")
            seen = shown.get((pid, label))
            # The daemon puts a chunk in the tail and publishes it in one step,
            # so a chunk is either all in the tail we read or all after it.
            # (Its offset counts raw bytes; its data is text decoded with
            # "replace", whose length need not match: compare offsets only.)
            if seen is not None and isinstance(offset, int) and offset < seen:
                continue  # the tail showed it already
            printer.feed(name, index, pid, label, str(ev.get("data", "")).encode())
        elif kind == "eof":
            printer.eof(pid, str(ev.get("label")))
        elif kind == "exit":
            printer.exited(name, index, pid, exit_text(ev))
        elif kind == "spawn":
            printer.release(slot=(name, index))
            printer.know(name, index, pid)
            printer.note(name, index, pid, f"started, os pid {ev.get('os_pid')}")
        printer.release(older=HOLD_EXIT)


# -- events ----------------------------------------------------------------------------

_EVENT_COLOURS = {"spawn": "green", "exit": "yellow", "flap": "red", "kill": "red", "output": "dim"}
_SKIP_KEYS = frozenset(("event", "topic", "seq", "time", "name"))


def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    # a job not loaded yet may be watched (to see it load): default.NAME then
    names = resolve_names(ctx, args.job, missing_ok=True)
    out = ctx.out
    stream = out.stream
    events = ctx.client.events(args.topics or ["EVENTS"], names=names, last_event_id=args.since)
    try:
        for ev in events:
            if out.json_mode:
                stream.write(json.dumps(ev) + "\n")
            else:
                stream.write(_event_line(out, ev) + "\n")
            stream.flush()
    except KeyboardInterrupt:
        return 0
    finally:
        events.close()
    raise Failure("the daemon closed the event stream")


def _event_line(out: Output, ev: Mapping[str, Any]) -> str:
    kind = str(ev.get("event", "?"))
    when = ev.get("time")
    if isinstance(when, int | float):
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    else:
        stamp = "--:--:--.---"
    if kind == "gaffer:gap":
        return f"{stamp} {out.style('some events are gone', 'red')} ({_details(ev)})"
    name = str(ev.get("name") or "-")
    type_ = out.style(f"{kind:<10}", _EVENT_COLOURS.get(kind, "bold"))
    return f"{out.style(stamp, 'dim')} {type_} {name} {_details(ev)}".rstrip()


def _details(ev: Mapping[str, Any]) -> str:
    parts = []
    for key, value in ev.items():
        if key in _SKIP_KEYS or value is None:
            continue
        if isinstance(value, str) and (key == "data" or not value.isprintable() or " " in value):
            text = json.dumps(value)
            value = text if len(text) <= 80 else text[:77] + '..."'
        elif not isinstance(value, str):
            value = json.dumps(value)
        parts.append(f"{key}={value}")
    return " ".join(parts)


# -- top -------------------------------------------------------------------------------

TOP_HEADERS = ("PID", "OS PID", "JOB", "#", "STATE", "CPU", "MEM", "RSS", "UPTIME", "RESTARTS")


def _top_rows(jobs: list[JobStatus]) -> list[dict[str, Any]]:
    """One row per live process, busiest first."""
    rows: list[dict[str, Any]] = []
    for job in jobs:
        for r in job["processes"]:
            if r.get("pid") is None:
                continue
            rows.append(
                {
                    "name": job["name"],
                    "index": r.get("index"),
                    "pid": r.get("pid"),
                    "os_pid": r.get("os_pid"),
                    "state": r.get("state"),
                    "cpu": r.get("cpu"),
                    "mem": r.get("mem"),
                    "rss": r.get("rss"),
                    "uptime": r.get("uptime"),
                    "restarts": r.get("restarts", 0),
                }
            )
    rows.sort(key=lambda r: (-(r["cpu"] or 0.0), r["name"], r["index"] or 0))
    return rows


def _cells(row: Mapping[str, Any]) -> list[str]:
    cpu, mem = row["cpu"], row["mem"]
    index = row["index"]
    return [
        str(row["pid"]),
        "-" if row["os_pid"] is None else str(row["os_pid"]),
        row["name"],
        "run" if index is not None and index < 0 else str(index),
        row["state"] or "-",
        "-" if cpu is None else f"{cpu:.1f}%",
        "-" if mem is None else f"{mem:.1f}%",
        human_bytes(row["rss"]),
        human_duration(row["uptime"]),
        str(row["restarts"]),
    ]


def _summary(rows: list[dict[str, Any]]) -> str:
    cpu = sum(r["cpu"] or 0.0 for r in rows)
    rss = sum(r["rss"] or 0 for r in rows)
    running = sum(1 for r in rows if r["state"] == "running")
    return (
        f"{time.strftime('%H:%M:%S')}  {len(rows)} processes, {running} running  "
        f"CPU {cpu:.1f}%  RSS {human_bytes(rss)}"
    )


def cmd_top(ctx: Context, args: argparse.Namespace) -> int:
    if not args.delay > 0:
        raise UsageError(f"top: -d/--delay: must be > 0 seconds, got {args.delay:g}")
    if args.iterations == 0:
        raise UsageError("top: -n/--iterations: must be ≥ 1")
    names = resolve_names(ctx, args.names)
    out = ctx.out
    try:
        if out.tty and not out.json_mode and args.iterations is None:
            _top_live(ctx, names, args.delay)
            return 0
        n = 0
        while True:
            rows = _top_rows(ctx.client.status(names))
            if out.json_mode:
                out.stream.write(json.dumps({"time": time.time(), "processes": rows}) + "\n")
            else:
                if n:
                    out.print()
                out.print(_summary(rows))
                # narrow: OS PID, RESTARTS, RSS, UPTIME go before job names are cut
                cells = [_cells(r) for r in rows]
                out.print(out.table(TOP_HEADERS, cells, "rrlrlrrrrr", 4, optional=(1, 9, 7, 8)))
            out.stream.flush()
            n += 1
            if args.iterations is not None and n >= args.iterations:
                return 0
            time.sleep(args.delay)
    except KeyboardInterrupt:
        return 0


def _top_live(ctx: Context, names: list[str], delay: float) -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    console = Console(no_color=not ctx.out.colour, highlight=False)

    def render() -> Table:
        rows = _top_rows(ctx.client.status(names))
        table = Table(title=_summary(rows), title_justify="left", box=None, header_style="bold")
        for h, a in zip(TOP_HEADERS, "rrlrlrrrrr", strict=True):
            table.add_column(h, justify="right" if a == "r" else "left", no_wrap=h != "JOB")
        for r in rows:
            cells: list[Any] = _cells(r)
            cells[4] = Text(cells[4], style=STATE_COLOURS.get(cells[4], ""))
            table.add_row(*cells)
        return table

    with Live(render(), console=console, auto_refresh=False, transient=False) as live:
        while True:
            time.sleep(delay)
            live.update(render(), refresh=True)
