"""How the ``gaffer`` command prints: tables that fit the terminal, JSON with
``--json``, colours only on a terminal (and never with ``NO_COLOR``).

Tables and colours are drawn here rather than by a library, for speed: the
command must answer ``gaffer ps`` in 50 ms, and on this class of machine
texttable took 25 ms to lay out 100 rows and rich takes ~90 ms to import,
where aligning columns takes 1 ms. Colours are plain ANSI SGR codes, which
every terminal that is not ``dumb`` understands. (rich is used where its cost
does not matter: ``top``'s live screen and the progress spinner.)
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
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
    "unhealthy": "red",
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

    def result(self, obj: Any, text: str | None) -> None:
        """A command's answer: ``obj`` as JSON with ``--json``, else ``text``
        (nothing when it is None)."""
        if self.json_mode:
            self.json(obj)
        elif text is not None:
            self.print(text)

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
        optional: Sequence[int] = (),
    ) -> str:
        """Rows under headers, columns aligned (``align``: ``l`` or ``r`` per
        column, default left), two spaces apart. On a terminal too narrow, the
        ``optional`` columns are left out (in that order) until it fits, then
        the widest left-aligned column is cut short with ``…``. Column
        ``states`` is coloured by state."""
        cells = [[("-" if v is None else str(v)).replace("\n", " ") for v in row] for row in rows]
        heads = list(headers)
        align = align.ljust(len(heads), "l")
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(heads)]
        limit = self.width

        def total() -> int:
            return sum(widths) + 2 * (len(widths) - 1)

        if limit and total() > limit and optional:
            keep = list(range(len(heads)))
            for col in optional:
                if total() <= limit:
                    break
                if col in keep:
                    i = keep.index(col)
                    columns: list[list[Any]] = [keep, heads, widths, *cells]
                    for seq in columns:
                        del seq[i]
                    align = align[:i] + align[i + 1 :]
            if states is not None:
                states = keep.index(states) if states in keep else None
        total_width = total()
        if limit and total_width > limit:
            flexible = [i for i, a in enumerate(align) if a == "l" and i != states]
            if flexible:
                i = max(flexible, key=lambda k: widths[k])
                widths[i] = max(len(heads[i]), 4, widths[i] - (total_width - limit))
                cells = [
                    [_cut(c, widths[i]) if k == i else c for k, c in enumerate(r)] for r in cells
                ]

        def line(values: Sequence[str], paint: bool) -> str:
            out = []
            for i, v in enumerate(values):
                text = v.rjust(widths[i]) if align[i] == "r" else v.ljust(widths[i])
                if paint and i == states and self.colour:
                    text = text.replace(v, self.state(v), 1)
                out.append(text)
            return "  ".join(out).rstrip()

        head = line(heads, False)
        lines = [self.style(head, "bold") if self.colour else head]
        lines += [line(r, True) for r in cells]
        return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
