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

__version__ = "0.6.0.dev0"

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
