"""Resource figures of one OS process, via psutil.

A process that has vanished, or that we may not inspect, yields ``None`` for
each figure it could not read: stats never raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

FIELDS = ("cpu", "mem", "rss", "vms", "threads", "fds", "uptime", "ctime", "nice", "username")


def empty_stats() -> dict[str, Any]:
    return dict.fromkeys(FIELDS)


def sample(proc: psutil.Process | None, started: float | None) -> dict[str, Any]:
    """CPU % (since the previous sample of ``proc``), memory, threads, fds, uptime."""
    out = empty_stats()
    if started is not None:
        out["uptime"] = round(time.time() - started, 3)
    if proc is None:
        return out
    try:
        with proc.oneshot():
            readers: dict[str, Callable[[], Any]] = {
                "cpu": lambda: proc.cpu_percent(None),
                "mem": lambda: round(proc.memory_percent(), 3),
                "rss": lambda: proc.memory_info().rss,
                "vms": lambda: proc.memory_info().vms,
                "threads": proc.num_threads,
                "fds": proc.num_fds,
                "ctime": lambda: round(sum(proc.cpu_times()[:2]), 3),
                "nice": proc.nice,
                "username": proc.username,
            }
            for key, read in readers.items():
                try:
                    out[key] = read()
                except psutil.AccessDenied:
                    out[key] = None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return {**empty_stats(), "uptime": out["uptime"]}
    # 0.5's names for the memory figures
    out["mem_info1"] = out["rss"]
    out["mem_info2"] = out["vms"]
    return out


def brief(proc: psutil.Process | None) -> dict[str, Any]:
    """CPU % (since the previous sample) and memory only: the figures a status
    table shows, read from two /proc files instead of the seven of :func:`sample`."""
    out: dict[str, Any] = {"cpu": None, "mem": None, "rss": None}
    if proc is None:
        return out
    try:
        with proc.oneshot():
            out["cpu"] = proc.cpu_percent(None)
            rss = proc.memory_info().rss
            out["rss"] = rss
            out["mem"] = round(100.0 * rss / _total_memory(), 3)
    except psutil.Error:
        pass
    return out


_TOTAL_MEMORY: list[int] = []


def _total_memory() -> int:
    # psutil.Process.memory_percent() reads /proc/meminfo on every call
    if not _TOTAL_MEMORY:
        _TOTAL_MEMORY.append(psutil.virtual_memory().total)
    return _TOTAL_MEMORY[0]
