"""The receiving end of sd_notify, for supervised processes.

A job with ``notify: true`` gives each process its own ``$NOTIFY_SOCKET``: a
datagram socket that gafferd owns, in the abstract namespace (nothing on disk to
clean up, gone when gafferd closes it). A process, or any tool it runs
(``systemd-notify --ready``, ``sd_notify(3)``, the ``sdnotify`` packages), sends
newline-separated ``KEY=VALUE`` assignments; the process object acts on them.

Anyone on the host can find an abstract socket's name, so the sender's
credentials (``SO_PASSCRED``, filled in by the kernel) must name the process's
user or root, as a socket file with mode 0600 would; other datagrams are
dropped. File descriptors passed along (``FDSTORE=1``) are closed at once:
gaffer does not keep them.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("gaffer.sdnotify")

MAX_DATAGRAM = 4096  # systemd's limit is the pipe buffer; messages are a few lines
_UCRED = struct.Struct("iII")  # pid, uid, gid
_ANCILLARY = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(253 * 4)  # SCM_MAX_FD

# (assignments, sender's pid)
Handler = Callable[[dict[str, str], int], None]


class NotifySocket:
    """One process's ``$NOTIFY_SOCKET``. ``name`` is the value to give it (``@...``)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: Handler,
        uid: int,
        label: str,
        fd: int | None = None,
        name: str | None = None,
    ) -> None:
        self.loop = loop
        self.handler = handler
        self.uid = uid
        if fd is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # unguessable as well as per process: the credential check is the lock
            name = f"@gaffer/{os.getpid()}/{label}/{secrets.token_hex(8)}"
            try:
                sock.bind("\0" + name[1:])
            except BaseException:
                sock.close()
                raise
        else:  # handed over by a re-exec
            sock = socket.socket(fileno=fd)
            assert name is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setblocking(False)
        self.sock: socket.socket | None = sock
        self.name: str = name
        loop.add_reader(sock.fileno(), self.drain)

    def drain(self) -> None:
        """Read every waiting datagram (also called just before closing)."""
        while self.sock is not None:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("%s: cannot read: %s", self.name, e)
                return
            sender: tuple[int, int] | None = None
            for level, kind, payload in ancdata:
                if level != socket.SOL_SOCKET:
                    continue
                if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                    pid, uid, _gid = _UCRED.unpack_from(payload)
                    sender = (pid, uid)
                elif kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
            if sender is None or sender[1] not in (0, self.uid):
                log.warning("%s: datagram from uid %s dropped", self.name, sender and sender[1])
                continue
            try:
                self.handler(parse(data), sender[0])
            except Exception:  # one bad message must not stop the socket
                log.exception("%s: cannot handle %r", self.name, data[:200])

    def detach(self) -> int | None:
        """Stop reading and give up the socket's fd (for a re-exec hand-over)."""
        if self.sock is None:
            return None
        self.loop.remove_reader(self.sock.fileno())
        fd = self.sock.detach()
        self.sock = None
        return fd

    def close(self) -> None:
        if self.sock is not None:
            self.drain()  # a last STATUS= sent just before exiting still counts
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None


def parse(data: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines into a dict; lines without ``=`` are ignored, as systemd does."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            out[key] = value
    return out
