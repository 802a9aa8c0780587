"""Workload 6 of ``bench/compare.py``: output capture under a flood.

The writer (``bench/flood_writer.py``, a small Python child run by each daemon
as a job of one process, its stdout captured to a log file as configured in
``bench/peers.py``) waits for a go-file, then writes to stdout as fast as it
can with ``os.write``, in blocks ending in a newline of 65,536 bytes (mode
``64k``, job ``f64k``) or 100 bytes (mode ``lines``, job ``flines``), until a
stop-file appears; then it says how many bytes it wrote.

One flood: the benchmark creates the go-file and polls the log file's size
every 1 ms. From the first poll that sees it grow (the writer's reaction to the
go-file is not counted) it measures for ``seconds`` (the window), then creates
the stop-file, and waits until every byte the writer wrote has reached the file
(or until the file has not grown for 10 s). Reported:

- MB/s (10^6 bytes) reaching the log file during the window: what the file
  grew by from the first growth seen to the window's last poll, over that time
  -- the steady rate while the writer floods;
- the % of the bytes written that reached the file in the end (a daemon may
  drop output it cannot write in time: gaffer does, by design, beyond its
  16 MiB queue, and counts it);
- the daemon's CPU % over the window (``bench/observe.py``: schedstat of all
  its threads);
- API p99 during the flood: the benchmark's ``peer_client.py`` calls the
  daemon's native "status of one job" back to back on a thread of its own from
  just before the go-file until the window ends (nearest rank; the JSON has
  how many calls).

The file is truncated after each flood (every daemon appends to it), so a
full run does not fill the disk.

The floor: :data:`RELAY`, a plain Python process that starts the same writer
with its stdout on a pipe and copies the pipe to a file with ``os.read(fd,
65536)`` / ``os.write``, measured the same way (its own CPU as the "daemon"
CPU). Each daemon (and the relay, once per mode) is started once for workload
6 and floods ``runs`` times in each mode.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import observe
import peers

MODES = {"64k": 65536, "lines": 100}
STALL_S = 10.0
WRITER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flood_writer.py")

RELAY = """
import os, subprocess, sys
out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE)
fd = child.stdout.fileno()
while data := os.read(fd, 65536):
    os.write(out, data)
"""


def writer_argv(python: str, prefix: str, mode: str) -> list[str]:
    return [python, WRITER, prefix, str(MODES[mode])]


def start_relay(
    python: str, workdir: str, mode: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The floor for ``mode``: (process, log file, go-file prefix)."""
    log_file = os.path.join(workdir, f"relay-{mode}.log")
    prefix = os.path.join(workdir, f"go-relay-{mode}")
    argv = [python, "-c", RELAY, log_file, *writer_argv(python, prefix, mode)]
    proc = subprocess.Popen(argv, env=env, start_new_session=True, preexec_fn=peers.die_with_parent)
    return proc, log_file, prefix


def size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def flood(pid: int, log_file: str, go: str, seconds: float, on_window_end: Any) -> dict[str, Any]:
    """One flood of ``seconds`` (from the first growth seen); ``go`` is the
    go-file. ``on_window_end()`` is called as the window closes."""
    start = size_of(log_file)
    with open(go, "w"):
        pass
    deadline = time.perf_counter() + 60
    while (first_size := size_of(log_file)) == start:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{log_file}: nothing arrived in 60 s")
        time.sleep(0.001)
    first = observe.cost(pid)
    while True:
        time.sleep(0.001)
        size = size_of(log_file)
        now = time.perf_counter()
        if now - first.t >= seconds:
            break
    last = observe.cost(pid)
    on_window_end()
    with open(f"{go}.stop", "w"):
        pass
    while not os.path.exists(f"{go}.count"):
        time.sleep(0.001)
    with open(f"{go}.count") as f:
        written = int(f.read())
    grown, last_growth = size_of(log_file) - start, time.perf_counter()
    while grown < written and time.perf_counter() - last_growth < STALL_S:
        time.sleep(0.005)
        if (g := size_of(log_file) - start) != grown:
            grown, last_growth = g, time.perf_counter()
    os.truncate(log_file, 0)
    return {
        "mb_per_s": (size - first_size) / (now - first.t) / 1e6,
        "arrived_percent": 100 * grown / written,
        "written": written,
        "cpu_percent": 100 * (last.cpu_ns - first.cpu_ns) / 1e9 / (last.t - first.t),
        "seconds": now - first.t,
    }
