"""The ``gaffer`` command.

Not built yet: the client needs the HTTP API (issue 4) and lands with issue 6.
Until then it only reports its version and says so, with exit code 2.
"""

from __future__ import annotations

import sys

from gaffer import __version__


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--version", "-V"):
        print(f"gaffer {__version__}")
        return 0
    print(
        "gaffer: the command-line client is not implemented yet; run jobs with gafferd -c FILE",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
