"""The daemon's pidfile: written atomically, refusing a second live daemon."""

from __future__ import annotations

import contextlib
import os

from gaffer.errors import ConfigError
from gaffer.spawn import pid_alive


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False

    def create(self) -> None:
        """Write our pid, unless the file names another live process; a stale
        file (its process gone) is replaced."""
        try:
            with open(self.path) as f:
                text = f.read().strip()
        except FileNotFoundError:
            text = ""
        except OSError as e:
            raise ConfigError("pidfile", f"{self.path}: {e.strerror}") from None
        if text.isdigit() and int(text) != os.getpid() and pid_alive(int(text)):
            raise ConfigError("pidfile", f"{self.path}: gafferd is already running as pid {text}")
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()}\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: a reader sees the old file or the new one
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ConfigError("pidfile", f"{self.path}: {e.strerror}") from None
        self.written = True

    def remove(self) -> None:
        """Remove the file if it is still ours."""
        if not self.written:
            return
        with contextlib.suppress(OSError), open(self.path) as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(self.path)
        self.written = False
