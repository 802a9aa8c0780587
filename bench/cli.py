"""How fast the ``gaffer`` command answers: ``gaffer ps`` against a daemon
managing 100 processes, wall time from exec to exit.

The daemon is ``bench/api_server.py`` (a Manager with the HTTP API, in its own
process, on the loop being measured) running one job of 100 ``sleep 3600``.
The command is the ``gaffer`` console script of the benchmark's own
environment, run as a user runs it, with its output sent to a pipe that is
read to the end (so the table is really rendered); each run is timed with
``time.perf_counter()`` around ``subprocess.run``. The floor, measured in the
same rounds (order alternating), is the same interpreter doing nothing
(``python -c pass``): what any Python command pays before its first line.

Reported: median and min-max over the runs, and the ratio to the floor.
Target: ``gaffer ps`` median <= 50 ms (supervisorctl status and circusctl
status take 120-140 ms on this class of machine, most of it imports).

The package's modules are byte-compiled first (``compileall``), as a normal
install does: with ``PYTHONDONTWRITEBYTECODE`` set (it is on these machines)
an editable install would otherwise recompile every module at every start.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import api

PS_TARGET_MS = 50.0
PROCS = 100


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, check=False)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{argv} exited {r.returncode}: {r.stderr.decode()[-500:]}")
    return 1000.0 * elapsed


def run(kind: str, runs: int) -> dict[str, Any]:
    import gaffer

    compileall.compile_dir(os.path.dirname(gaffer.__file__), quiet=1)
    script = os.path.join(os.path.dirname(sys.executable), "gaffer")
    mark = uuid.uuid4().hex
    res: dict[str, Any] = {"ps_ms": [], "floor_ms": [], "rows": 0}
    api.log(f"[{kind}] gaffer ps: {runs} runs against {PROCS} processes")
    try:
        with api.Server(kind, [api.sleep_job("web", PROCS, mark)]) as server:
            ps = [script, "-H", server.unix, "ps"]
            out = subprocess.run(ps, capture_output=True, text=True, check=True).stdout
            res["rows"] = sum(1 for line in out.splitlines() if line.startswith("default.web"))
            if res["rows"] != PROCS:
                raise RuntimeError(f"gaffer ps showed {res['rows']} rows, not {PROCS}")
            floor = [sys.executable, "-c", "pass"]
            for i in range(runs):
                pair = [("ps_ms", ps), ("floor_ms", floor)]
                for key, argv in pair if i % 2 == 0 else reversed(pair):
                    res[key].append(_wall(argv))
    finally:
        api.report_leftovers(res, mark)
    return res


def rows_for(kind: str, res: dict[str, Any]) -> list[tuple[str, ...]]:
    ps, floor = res["ps_ms"], res["floor_ms"]
    med = statistics.median(ps)
    return [
        (
            f"`gaffer ps`, {PROCS} processes, ms wall (floor: `python -c pass`)",
            kind,
            api.spread(ps, ".1f"),
            api.spread(floor, ".1f"),
            f"{med / statistics.median(floor):.2f}",
            f"<= {PS_TARGET_MS:g}",
            "yes" if med <= PS_TARGET_MS else "**no**",
        )
    ]
