"""Resource figures of one OS process, via psutil.

A process that has vanished, or that we may not inspect, yields ``None`` for
each figure it could not read: stats never raise.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

# psutil itself is imported when first used: gafferd starts its processes first.

FIELDS = ("cpu", "mem", "rss", "vms", "threads", "fds", "uptime", "ctime", "nice", "username")


def empty_stats() -> dict[str, Any]:
    return dict.fromkeys(FIELDS)


def sample(proc: psutil.Process | None, started: float | None) -> dict[str, Any]:
    """CPU % (since the previous sample of ``proc``), memory, threads, fds, uptime."""
    import psutil

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


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPU_WINDOW = 1.0  # seconds
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def read_stat(os_pid: int) -> tuple[float, int] | None:
    """CPU seconds (user + system) and resident bytes of a process, from one
    read of /proc/<pid>/stat; None when it is gone. A status table samples
    every process at once: this costs ~9 us a process here, psutil's
    oneshot()/cpu_percent()/memory_info() ~150 us."""
    try:
        fd = os.open(f"/proc/{os_pid}/stat", os.O_RDONLY)  # no buffered file object: 3x faster
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name (field 2) may hold spaces and parentheses: split after it
    fields = data[data.rindex(b")") + 2 :].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, int(fields[21]) * _PAGE_SIZE
    except (IndexError, ValueError):
        return None


def brief(
    os_pid: int | None, since: tuple[float, float]
) -> tuple[dict[str, Any], tuple[float, float] | None]:
    """CPU % and memory only, the figures a status table shows. ``since`` is
    (CPU seconds, monotonic time) of an earlier sample (or of the start);
    returns the figures and the sample to pass next time, which moves on only
    once a second has passed: CPU time comes in 10 ms ticks, so a shorter
    window would read a busy process as idle."""
    out: dict[str, Any] = {"cpu": None, "mem": None, "rss": None}
    got = None if os_pid is None else read_stat(os_pid)
    if got is None:
        return out, None
    cpu_s, rss = got
    now = time.monotonic()
    elapsed = now - since[1]
    if elapsed > 0:
        out["cpu"] = round(max(0.0, 100.0 * (cpu_s - since[0]) / elapsed), 1)
    out["rss"] = rss
    out["mem"] = round(100.0 * rss / _total_memory(), 3)
    return out, (cpu_s, now) if elapsed >= CPU_WINDOW else since


_TOTAL_MEMORY: list[int] = []


def _mem_total() -> int:
    # /proc/meminfo's first line, as psutil reads it (without importing psutil)
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("no MemTotal in /proc/meminfo")


def _total_memory() -> int:
    # psutil.Process.memory_percent() reads /proc/meminfo on every call
    if not _TOTAL_MEMORY:
        _TOTAL_MEMORY.append(_mem_total())
    return _TOTAL_MEMORY[0]


@functools.cache
def _oom_file() -> tuple[str, str] | None:
    """Where this process's cgroup counts OOM kills: (path, key). Inside a
    container the cgroup's own directory is usually the mount's root."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    paths = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        paths[controllers] = path.lstrip("/")
    candidates = []
    if "" in paths:  # cgroup v2
        candidates += [(f"/sys/fs/cgroup/{paths['']}/memory.events", "oom_kill")]
        candidates += [("/sys/fs/cgroup/memory.events", "oom_kill")]
    for controllers, path in paths.items():
        if "memory" in controllers.split(","):  # cgroup v1
            candidates += [(f"/sys/fs/cgroup/memory/{path}/memory.oom_control", "oom_kill")]
            candidates += [("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill")]
    for path, key in candidates:
        if os.path.isfile(path) and oom_kills((path, key)) is not None:
            return path, key
    return None


def oom_kills(where: tuple[str, str] | None = None) -> int | None:
    """How many processes the kernel's OOM killer has killed in gafferd's cgroup
    (which its children share unless moved), or None where it is not told."""
    where = where or _oom_file()
    if where is None:
        return None
    path, key = where
    try:
        with open(path, "rb") as f:
            for line in f.read().split(b"\n"):
                name, _, value = line.partition(b" ")
                if name.decode() == key and value.strip().isdigit():
                    return int(value)
    except OSError:
        return None
    return None


class OomCounter:
    """Tells whether a SIGKILL nobody in gaffer sent was the OOM killer's: one
    per job, it remembers the cgroup's count and claims each new kill once. A
    kill of another process of the same cgroup may be claimed by mistake when
    one of the job's processes is also SIGKILLed from outside."""

    def __init__(self) -> None:
        self.seen = oom_kills()

    def claim(self) -> bool:
        now = oom_kills()
        if now is None or self.seen is None or now < self.seen:
            self.seen = now
            return False
        if now > self.seen:
            self.seen += 1
            return True
        return False
