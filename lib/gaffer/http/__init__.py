"""The HTTP API and websocket channels of gaffer, as a manager app.

The names below are imported on first use (PEP 562): the settings are read by
gafferd's config reader before anything of tornado is needed, and gafferd
starts its jobs' processes before it imports the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gaffer.http.app import HttpApp
    from gaffer.http.settings import HttpSettings, TlsSettings

_LAZY = {
    "HttpApp": "gaffer.http.app",
    "HttpSettings": "gaffer.http.settings",
    "TlsSettings": "gaffer.http.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gaffer.http' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["HttpApp", "HttpSettings", "TlsSettings"]
