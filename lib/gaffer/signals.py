"""Parse signal names and numbers the way users write them.

``15``, ``"15"``, ``"TERM"``, ``"SIGTERM"`` and ``"sigterm"`` all mean SIGTERM.
"""

from __future__ import annotations

import signal

from gaffer.errors import BadRequest


def parse_signal(value: object, field: str = "signal") -> int:
    """Return the signal number for ``value`` or raise :class:`BadRequest` naming
    ``field``."""
    if isinstance(value, bool):
        raise BadRequest(f"{field}: expected a signal name or number, got {value!r}")
    if isinstance(value, int):
        num = value
    elif isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        if digits.isascii() and digits.isdigit():  # not "²" nor "--5": int() refuses them
            if len(digits) > 6:
                raise BadRequest(f"{field}: unknown signal number {text[:20]}")
            num = int(text)
        else:
            name = text.upper()
            if not name.startswith("SIG"):
                name = "SIG" + name
            try:
                return int(signal.Signals[name])
            except KeyError:
                raise BadRequest(f"{field}: unknown signal {value!r}") from None
    else:
        raise BadRequest(f"{field}: expected a signal name or number, got {value!r}")
    valid = {int(s) for s in signal.Signals}
    if num not in valid:
        raise BadRequest(f"{field}: unknown signal number {num}")
    return num


def signal_name(num: int) -> str:
    """``15`` -> ``"SIGTERM"``; an unknown number is returned as its digits."""
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)
