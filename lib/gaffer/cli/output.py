"""How the ``gaffer`` command prints: tables that fit the terminal, JSON with
``--json``, colours only on a terminal (and never with ``NO_COLOR``).

Tables are texttable's (a single small module, so ``gaffer ps`` stays fast);
colours are plain ANSI SGR codes, the one thing every terminal that is not
``dumb`` understands — a library for eight escape sequences would cost more
start-up time than it saves code.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "bright_red": "91",
    "bright_green": "92",
    "bright_yellow": "93",
    "bright_blue": "94",
    "bright_magenta": "95",
    "bright_cyan": "96",
}
# one per process, in turn, as foreman and honcho do
PREFIX_COLOURS = (
    "cyan",
    "yellow",
    "green",
    "magenta",
    "blue",
    "bright_cyan",
    "bright_yellow",
    "bright_green",
    "bright_magenta",
    "bright_blue",
)
STATE_COLOURS = {
    "running": "green",
    "ready": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "backoff": "yellow",
    "flapping": "red",
    "fatal": "red",
    "exited": "dim",
    "stopped": "dim",
    "idle": "dim",
}


def wants_colour(stream: TextIO, flag: bool | None = None) -> bool:
    """``--color``/``--no-color`` win; else only on a terminal, not with
    ``NO_COLOR`` set (https://no-color.org) nor on a ``dumb`` one."""
    if flag is not None:
        return flag
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class Output:
    """Where and how a command writes what it has to say."""

    def __init__(
        self, json_mode: bool = False, colour: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.tty = self.stream.isatty()
        self.colour = wants_colour(self.stream, colour)
        self.err_colour = wants_colour(sys.stderr, colour)

    # -- text -------------------------------------------------------------------------

    def style(self, text: str, *styles: str, err: bool = False) -> str:
        if not (self.err_colour if err else self.colour):
            return text
        codes = ";".join(_SGR[s] for s in styles if s in _SGR)
        return f"\x1b[{codes}m{text}\x1b[0m" if codes else text

    def state(self, state: str | None) -> str:
        text = state or "-"
        colour = STATE_COLOURS.get(text)
        return self.style(text, colour) if colour else text

    def print(self, text: str = "") -> None:
        print(text, file=self.stream)

    def error(self, text: str) -> None:
        print(f"{self.style('gaffer:', 'bold', 'red', err=True)} {text}", file=sys.stderr)

    def note(self, text: str) -> None:
        """A remark for a person: stderr, so that piped output stays clean."""
        print(text, file=sys.stderr)

    def json(self, obj: Any) -> None:
        json.dump(obj, self.stream, indent=2 if self.tty else None, sort_keys=False)
        self.stream.write("\n")

    # -- tables -----------------------------------------------------------------------

    @property
    def width(self) -> int:
        if not self.tty:
            return 0  # no limit: a pipe gets whole lines
        columns = os.environ.get("COLUMNS", "")
        if columns.isdigit():
            return int(columns)
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except OSError:
            return 100

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        align: str = "",
        states: int | None = None,
    ) -> str:
        """Rows under headers, columns aligned (``align``: one of ``l``/``r``
        per column), wrapped to the terminal's width; column ``states`` is
        coloured by state."""
        from texttable import Texttable

        t = Texttable(max_width=self.width)
        t.set_deco(Texttable.HEADER)
        t.set_cols_dtype(["t"] * len(headers))
        if align:
            t.set_cols_align(list(align))
            t.set_header_align(list(align))
        t.header(list(headers))
        t.add_rows([[("-" if v is None else str(v)) for v in row] for row in rows], header=False)
        lines = [line.rstrip() for line in t.draw().splitlines()]
        if self.colour and lines:
            # Colour goes on after layout: texttable would count escape codes as width.
            lines[0] = self.style(lines[0], "bold")
            if states is not None:
                widths: list[int] = getattr(t, "_width", [])
                if len(widths) == len(headers):
                    start = sum(widths[:states]) + 3 * states
                    end = start + widths[states]
                    lines[2:] = [_paint(line, start, end, self.state) for line in lines[2:]]
        return "\n".join(lines)


def _paint(line: str, start: int, end: int, paint: Callable[[str], str]) -> str:
    cell = line[start:end]
    word = cell.strip()
    if not word or word not in STATE_COLOURS:
        return line
    i = start + cell.index(word)
    return line[:i] + paint(word) + line[i + len(word) :]


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}TiB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
