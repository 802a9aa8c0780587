"""gaffer: a process supervisor.

The core — :class:`~gaffer.manager.Manager`, :class:`~gaffer.config.ProcessConfig`
and the event bus — knows nothing of HTTP, files or terminals, so it can be
embedded in any asyncio program::

    from gaffer import Manager, ProcessConfig

    m = Manager()
    m.start()
    m.load(ProcessConfig("web", "python3", ["-m", "http.server", "$PORT"],
                         env={"PORT": "$((8000 + GAFFER_INDEX))"}, numprocesses=2))
    m.run()          # until m.stop() is called (from any thread)
"""

from __future__ import annotations

__version__ = "0.6.0.dev0"

# Not typing.TYPE_CHECKING: importing typing alone costs the command ~15 ms here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gaffer.config import ProcessConfig
    from gaffer.errors import (
        AlreadyExists,
        BadRequest,
        ConfigError,
        GafferError,
        InvalidState,
        NotFound,
    )
    from gaffer.manager import Manager

# Loaded on first use, so that ``gaffer.client`` and the ``gaffer`` command do
# not pay for the manager (and asyncio, psutil...) when they start.
_LAZY = {
    "ProcessConfig": "gaffer.config",
    "Manager": "gaffer.manager",
    **dict.fromkeys(
        ("AlreadyExists", "BadRequest", "ConfigError", "GafferError", "InvalidState", "NotFound"),
        "gaffer.errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gaffer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AlreadyExists",
    "BadRequest",
    "ConfigError",
    "GafferError",
    "InvalidState",
    "Manager",
    "NotFound",
    "ProcessConfig",
    "__version__",
]
