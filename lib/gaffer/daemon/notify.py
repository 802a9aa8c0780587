"""sd_notify: tell systemd (or anything listening on ``$NOTIFY_SOCKET``) how
the daemon is doing — ``READY=1``, ``STATUS=...``, ``RELOADING=1``,
``STOPPING=1`` — and keep its watchdog fed at half of ``$WATCHDOG_USEC``.

The protocol is one datagram per message to a unix socket; a name starting with
``@`` is in the abstract namespace. Sending never blocks, and without
``$NOTIFY_SOCKET`` every call is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("gafferd.notify")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if addr.startswith("@"):
            self.address = "\0" + addr[1:]
        elif addr.startswith("/"):
            self.address = addr
        self.watchdog_usec = 0
        usec = env.get("WATCHDOG_USEC", "")
        wd_pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and (not wd_pid or wd_pid == str(os.getpid())):
            self.watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False if it could not go."""
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as e:
            if not self._failed:  # once: a gone listener must not flood the log
                log.warning("sd_notify to %r failed: %s", self.address, e)
                self._failed = True
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        lines = ["READY=1", f"MAINPID={os.getpid()}"]
        if status:
            lines.append(f"STATUS={status}")
        self.send(*lines)

    def reloading(self) -> None:
        # systemd ≥ 253 wants the monotonic time of the reload with RELOADING=1
        self.send(
            "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ping ``WATCHDOG=1`` at half the interval systemd asked for."""
        if not self.watchdog_usec or self.address is None:
            return
        interval = self.watchdog_usec / 2e6

        def ping() -> None:
            self.send("WATCHDOG=1")
            self._timer = loop.call_later(interval, ping)

        ping()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
