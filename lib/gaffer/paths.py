"""Where a gafferd listens by default, shared by the daemon and its clients.

Kept free of heavy imports: the ``gaffer`` command reads it on every start.
"""

from __future__ import annotations

import os


def runtime_dir() -> str:
    """Where the daemon's socket lives: /run/gaffer as root, else
    $XDG_RUNTIME_DIR/gaffer, else /tmp/gaffer-<uid>."""
    if os.getuid() == 0:
        return "/run/gaffer"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "gaffer")
    return f"/tmp/gaffer-{os.getuid()}"


def default_socket() -> str:
    return os.path.join(runtime_dir(), "gafferd.sock")
