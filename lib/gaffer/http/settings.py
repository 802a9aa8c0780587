"""The HTTP app's settings: where it listens, how it authenticates, its limits.

Secure by default: a unix socket (mode 0600, in a 0700 directory) and nothing
else; TCP only when ``bind`` names an address, and then API keys are required
unless ``require_key`` is explicitly false.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gaffer.errors import ConfigError
from gaffer.paths import default_socket

DEFAULT_MAX_BODY = 1 << 20
DEFAULT_REPLAY = 10_000
DEFAULT_CLIENT_BUFFER = 4 << 20


def default_state_dir() -> str:
    """/var/lib/gaffer as root, else $XDG_STATE_HOME/gaffer (~/.local/state/gaffer)."""
    if os.getuid() == 0:
        return "/var/lib/gaffer"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "gaffer")


def parse_bind(value: str, field_name: str = "bind") -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(field_name, f"expected host:port, got {value!r}")
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ConfigError(field_name, f"a host is required (e.g. 127.0.0.1:5000), got {value!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(field_name, f"port must be 0..65535, got {port!r}")
    return host, int(port)


@dataclass(frozen=True)
class TlsSettings:
    certfile: str
    keyfile: str
    # verify client certificates against this CA bundle when set
    client_ca: str | None = None


@dataclass(frozen=True)
class HttpSettings:
    unix_socket: str | None = field(default_factory=default_socket)
    bind: tuple[str, ...] = ()
    require_key: bool = True
    tls: TlsSettings | None = None
    cors_origins: tuple[str, ...] = ()
    # None keeps keys and users in memory (embedding, tests)
    state_dir: str | None = None
    max_body_size: int = DEFAULT_MAX_BODY
    replay_size: int = DEFAULT_REPLAY
    client_buffer: int = DEFAULT_CLIENT_BUFFER

    def __post_init__(self) -> None:
        for i, addr in enumerate(self.bind):
            parse_bind(addr, f"bind[{i}]")
        if "*" in self.cors_origins:
            raise ConfigError(
                "cors_origins", "'*' is not allowed: list the origins that may call the API"
            )
        for name in ("max_body_size", "replay_size", "client_buffer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, f"must be a positive integer, got {value!r}")

    @property
    def keys_db(self) -> str | None:
        return os.path.join(self.state_dir, "auth.db") if self.state_dir else None
