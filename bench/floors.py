"""The raw floors of ``bench/compare.py``: what plain Python does for the same
work, measured in the same run, with the same argv and environment as the
daemons' children.

- :func:`popen_loop`: seconds for ``subprocess.Popen(argv)`` ``n`` times in a
  plain loop (the figure ``bench/run.py`` calls the Popen floor). ``Popen``
  returns once the child has exec'd (it waits for its CLOEXEC error pipe to
  close), so the loop's end is "all alive" in the observer's sense.
- :func:`posix_spawn_loop`: the same with ``os.posix_spawn`` (glibc's uses
  ``CLONE_VFORK``: it also returns after the exec).
- :func:`repair_floor`: one child; each round SIGKILLs it (timed from just
  before ``os.kill``), waits on its pidfd with ``poll()``, reaps it and starts
  the replacement with ``Popen`` (timed until ``Popen`` returns: exec'd).
- :func:`relay_floor`: ``relay.py`` -- a Python process that starts the writer
  with its stdout on a pipe and copies the pipe to a file with
  ``os.read(fd, 65536)`` / ``os.write`` -- the plain pipe-to-file relay that
  output capture is compared with (see ``bench/flood.py``).

Children are killed and reaped after each measurement, never timed doing so.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence


def popen_loop(argv: Sequence[str], n: int, env: Mapping[str, str]) -> float:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            procs.append(subprocess.Popen(argv, env=env))
        return time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def posix_spawn_loop(
    argv: Sequence[str], n: int, env: Mapping[str, str], search: bool = False
) -> float:
    """Seconds to start ``n`` children with ``os.posix_spawn`` (``posix_spawnp``,
    searching ``PATH``, with ``search``); they are then killed and reaped."""
    start = os.posix_spawnp if search else os.posix_spawn
    pids: list[int] = []
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            pids.append(start(argv[0], list(argv), env))
        return time.perf_counter() - t0
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def repair_floor(argv: Sequence[str], kills: int, env: Mapping[str, str]) -> list[float]:
    """Seconds from each kill until the replacement has exec'd."""
    proc = subprocess.Popen(argv, env=env)
    out: list[float] = []
    try:
        for _ in range(kills):
            fd = os.pidfd_open(proc.pid)
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                t0 = time.perf_counter()
                os.kill(proc.pid, signal.SIGKILL)
                poller.poll()
                proc.wait()
                proc = subprocess.Popen(argv, env=env)
                out.append(time.perf_counter() - t0)
            finally:
                os.close(fd)
    finally:
        proc.kill()
        proc.wait()
    return out


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"
