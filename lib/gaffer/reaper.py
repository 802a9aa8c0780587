"""Notice child exits as events, never by polling.

The default watcher opens a pidfd for each child and registers it with the loop
as a reader: the kernel makes it readable the moment the child exits, so an idle
daemon has nothing to wake it. Where pidfds are not available (Linux < 5.3) the
fallback handles SIGCHLD through the loop and reaps only the pids it was given,
never ``waitpid(-1)``, so it cannot steal another library's children.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gaffer.reaper")


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a child ended: ``exit_status`` if it exited, ``term_signal`` if killed."""

    exit_status: int
    term_signal: int

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(0, os.WTERMSIG(status))
        if os.WIFEXITED(status):
            return cls(os.WEXITSTATUS(status), 0)
        return cls(255, 0)

    @property
    def ok(self) -> bool:
        return self.term_signal == 0 and self.exit_status == 0


ExitCallback = Callable[[int, ExitStatus], None]


def pidfd_supported() -> bool:
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


class ChildWatcher:
    """Calls ``callback(pid, status)`` once, on the loop, when a child exits."""

    kind = "abstract"

    def add(self, pid: int, callback: ExitCallback) -> None:
        raise NotImplementedError

    def remove(self, pid: int) -> None:
        """Stop watching ``pid`` (the caller reaps it)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


def _reap(pid: int) -> ExitStatus | None:
    try:
        wpid, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Someone else reaped it; we cannot know how it ended.
        log.warning("child %d was reaped elsewhere; reporting exit status 255", pid)
        return ExitStatus(255, 0)
    if wpid == 0:
        return None
    return ExitStatus.from_wait(status)


class PidfdWatcher(ChildWatcher):
    kind = "pidfd"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._fds)

    def add(self, pid: int, callback: ExitCallback) -> None:
        fd = os.pidfd_open(pid)
        self._fds[pid] = fd
        self._loop.add_reader(fd, self._ready, pid, fd, callback)

    def remove(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _ready(self, pid: int, fd: int, callback: ExitCallback) -> None:
        status = _reap(pid)
        if status is None:  # readable but not yet waitable: cannot happen, be safe
            return
        self._loop.remove_reader(fd)
        os.close(fd)
        self._fds.pop(pid, None)
        callback(pid, status)

    def close(self) -> None:
        for fd in self._fds.values():
            self._loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()


class SigchldWatcher(ChildWatcher):
    kind = "sigchld"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._callbacks: dict[int, ExitCallback] = {}
        self._previous: Any = None
        try:
            loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        except RuntimeError:
            # uvloop keeps SIGCHLD for itself; a Python-level handler (chained to
            # the previous one) still runs promptly on its thread via the wakeup fd.
            self._previous = signal.signal(signal.SIGCHLD, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._loop.call_soon_threadsafe(self._on_sigchld)
        if callable(self._previous):
            self._previous(signum, frame)

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, pid: int, callback: ExitCallback) -> None:
        self._callbacks[pid] = callback
        # The child may have exited before it was registered: check once now.
        self._loop.call_soon(self._check, pid)

    def remove(self, pid: int) -> None:
        self._callbacks.pop(pid, None)

    def _check(self, pid: int) -> None:
        callback = self._callbacks.get(pid)
        if callback is None:
            return
        status = _reap(pid)
        if status is not None:
            del self._callbacks[pid]
            callback(pid, status)

    def _on_sigchld(self) -> None:
        for pid in list(self._callbacks):
            self._check(pid)

    def close(self) -> None:
        if self._previous is None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
        else:
            signal.signal(signal.SIGCHLD, self._previous)
        self._callbacks.clear()


def make_watcher(loop: asyncio.AbstractEventLoop, kind: str | None = None) -> ChildWatcher:
    """``kind``: ``"pidfd"``, ``"sigchld"`` or None for the best available."""
    if kind is None:
        kind = "pidfd" if pidfd_supported() else "sigchld"
    if kind == "pidfd":
        return PidfdWatcher(loop)
    if kind == "sigchld":
        return SigchldWatcher(loop)
    raise ValueError(f"unknown child watcher {kind!r} (pidfd or sigchld)")


def proc_stats() -> Iterator[tuple[int, list[bytes]]]:
    """Every process's /proc/<pid>/stat fields after ``(comm)``: pid, then
    ``[state, ppid, pgrp, session, ...]`` (``proc(5)``, fields 3 onwards)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        yield int(entry), stat[stat.rfind(b")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc."""
    return [
        pid
        for pid, fields in proc_stats()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X")
    ]


class GroupWatch:
    """Watches what is left of a process group after its leader exited.

    Each live member gets a pidfd registered with the loop, so the group is known
    to be empty the moment its last member exits, and signals go through the
    pidfds, so they can never hit a process that reused a pid.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, pgid: int, on_empty: Callable[[], None]
    ) -> None:
        self._loop = loop
        self.pgid = pgid
        self._on_empty = on_empty
        self._fds: dict[int, int] = {}
        self.closed = False
        self._adopt()

    def _adopt(self) -> None:
        if self.closed:
            return  # the group id may belong to someone else by now
        for pid in group_members(self.pgid):
            if pid in self._fds:
                continue
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (OSError, AttributeError):
                fd = -1  # no pidfds on this kernel: signal by pid, rely on the timer
            self._fds[pid] = fd
            if fd >= 0:
                self._loop.add_reader(fd, self._gone, pid)

    def __len__(self) -> int:
        return len(self._fds)

    def _gone(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None and fd >= 0:
            self._loop.remove_reader(fd)
            os.close(fd)
        if not self._fds and not self.closed:
            self._adopt()  # a member may have forked before it exited: look again
            if not self._fds:
                self.close()
                self._on_empty()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to every member, including any started since the last look."""
        if self.closed:
            return
        self._adopt()
        for pid, fd in list(self._fds.items()):
            try:
                if fd >= 0:
                    signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(pid, sig)
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        for fd in self._fds.values():
            if fd >= 0:
                self._loop.remove_reader(fd)
                os.close(fd)
        self._fds.clear()
