"""Start one OS process: pipes, process group, user, working directory.

This is the one place gaffer forks. It uses :class:`subprocess.Popen` with file
descriptors it made itself: measured on this project's machines Popen spawns as
fast as ``os.posix_spawn`` (both ~2,000/s) and, unlike it, can set the working
directory, umask and user; the event loops' own subprocess APIs are 2-5x slower.
The child always gets its own process group (or session, with ``detach``) so
that stopping it can signal everything it started.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class SpawnSpec:
    argv: Sequence[str]
    env: Mapping[str, str]
    executable: str | None = None  # argv[0] resolved on PATH, if already known
    cwd: str | None = None
    uid: int | None = None
    gid: int | None = None
    umask: int | None = None
    detach: bool = False
    stdin: bool = False
    # 0: output to /dev/null, 1: stderr merged into stdout, 2: separate pipes
    outputs: int = 2
    custom_streams: int = 0


@dataclass
class Spawned:
    """The parent's ends of the child's pipes; the caller owns and closes them."""

    popen: subprocess.Popen[bytes]
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    custom: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    return r, w


def _dup_to_fds(sources: list[int]) -> None:  # runs in the child, before exec
    base = 3 + len(sources)
    # Move every source above the target range first, so no dup2 clobbers one.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in sources]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)  # inheritable
        os.close(fd)
    # What close_fds would do: close every other inheritable fd. (Close-on-exec
    # ones, Popen's error pipe among them, close themselves at exec.)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd < base:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                os.close(fd)
        except OSError:
            pass


def spawn(spec: SpawnSpec) -> Spawned:
    """Start the process; raises OSError (e.g. FileNotFoundError) if it cannot."""
    parent_fds: list[int] = []
    child_fds: list[int] = []
    stdin_p = stdout_p = stderr_p = None
    custom_p: list[int] = []
    custom_c: list[int] = []
    try:
        if spec.stdin:
            r, w = _pipe()
            stdin_arg: int = r
            stdin_p = w
            child_fds.append(r)
            parent_fds.append(w)
        else:
            stdin_arg = subprocess.DEVNULL
        if spec.outputs == 0:
            stdout_arg: int = subprocess.DEVNULL
            stderr_arg: int = subprocess.DEVNULL
        else:
            r, w = _pipe()
            stdout_arg, stdout_p = w, r
            child_fds.append(w)
            parent_fds.append(r)
            if spec.outputs == 1:
                stderr_arg = subprocess.STDOUT
            else:
                r, w = _pipe()
                stderr_arg, stderr_p = w, r
                child_fds.append(w)
                parent_fds.append(r)
        for _ in range(spec.custom_streams):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pa, ca = a.detach(), b.detach()
            custom_p.append(pa)
            custom_c.append(ca)
            parent_fds.append(pa)
            child_fds.append(ca)

        kwargs: dict[str, object] = {}
        if spec.uid is not None and spec.uid != os.geteuid():
            kwargs["user"] = spec.uid
            gid = spec.gid
            try:
                pw = pwd.getpwuid(spec.uid)
                if gid is None:
                    gid = pw.pw_gid
                kwargs["extra_groups"] = os.getgrouplist(pw.pw_name, gid)
            except KeyError:
                kwargs["extra_groups"] = []
            if gid is not None:
                kwargs["group"] = gid
        elif spec.gid is not None and spec.gid != os.getegid():
            kwargs["group"] = spec.gid
        if spec.umask is not None:
            kwargs["umask"] = spec.umask
        if spec.detach:
            kwargs["start_new_session"] = True
        else:
            kwargs["process_group"] = 0
        if custom_c:
            # Popen cannot place fds at chosen numbers: a preexec_fn does (and does
            # close_fds' job), which costs vfork.
            kwargs["close_fds"] = False
            kwargs["preexec_fn"] = lambda: _dup_to_fds(custom_c)

        popen = subprocess.Popen(
            list(spec.argv),
            executable=spec.executable,
            stdin=stdin_arg,
            stdout=stdout_arg,
            stderr=stderr_arg,
            cwd=spec.cwd,
            env=dict(spec.env),
            **kwargs,  # type: ignore[call-overload]
        )
    except BaseException:
        for fd in parent_fds:
            os.close(fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    for fd in parent_fds:
        os.set_blocking(fd, False)
    return Spawned(popen, stdin_p, stdout_p, stderr_p, custom_p)


def which(name: str, env: Mapping[str, str]) -> str | None:
    """Where ``name`` is on the process's PATH (as exec would find it), or None."""
    if "/" in name:
        return None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    return signal_group(pgid, 0)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists (someone else's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
