"""Which daemon a client talks to, and how: a unix socket or an
``http(s)://`` address, an API key, and TLS files."""

from __future__ import annotations

import os

from gaffer.client.errors import BadRequest
from gaffer.paths import default_socket

TYPE_CHECKING = False  # not typing's: the command starts faster without it
if TYPE_CHECKING:
    import ssl


class Target:
    """Where the daemon listens. ``host`` is a unix socket path (``/run/...``,
    ``./x.sock``, ``unix:/path``), an ``http://`` or ``https://`` URL (an
    optional path is a prefix, for a daemon behind a proxy), or ``host:port``;
    ``None`` is the local daemon's default socket."""

    __slots__ = (
        "cafile",
        "certfile",
        "host",
        "key",
        "keyfile",
        "port",
        "prefix",
        "scheme",
        "timeout",
        "unix_path",
        "verify",
    )

    def __init__(
        self,
        host: str | None = None,
        *,
        key: str | None = None,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        verify: bool = True,
        timeout: float | None = 30.0,
    ) -> None:
        self.key = key or None
        self.cafile = cafile
        self.certfile = certfile
        self.keyfile = keyfile
        self.verify = verify
        self.timeout = timeout
        self.unix_path: str | None = None
        self.scheme = "http"
        self.host = "localhost"
        self.port = 80
        self.prefix = ""
        self._parse(host or default_socket())

    def _parse(self, raw: str) -> None:
        if raw.startswith("unix:"):
            path = raw[5:]
            while path.startswith("//"):
                path = path[1:]
            self.unix_path = os.path.expanduser(path)
            return
        if raw.startswith(("/", ".", "~")):
            self.unix_path = os.path.expanduser(raw)
            return
        scheme, sep, rest = raw.partition("://")
        if not sep:
            scheme, rest = "http", raw
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise BadRequest(f"host: expected a socket path or an http(s):// URL, got {raw!r}")
        hostport, _, path = rest.partition("/")
        self.scheme = scheme
        self.prefix = ("/" + path).rstrip("/") if path else ""
        host, port = hostport, ""
        if hostport.startswith("["):  # [::1]:5000
            host, _, port = hostport[1:].partition("]")
            port = port.lstrip(":")
        elif hostport.count(":") == 1:
            host, _, port = hostport.partition(":")
        if not host:
            raise BadRequest(f"host: no host name in {raw!r}")
        self.host = host
        if port:
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise BadRequest(f"host: bad port {port!r} in {raw!r}")
            self.port = int(port)
        else:
            self.port = 443 if scheme == "https" else 80

    @property
    def tls(self) -> bool:
        return self.unix_path is None and self.scheme == "https"

    @property
    def url(self) -> str:
        """How the target is shown to people."""
        if self.unix_path is not None:
            return self.unix_path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}"

    @property
    def host_header(self) -> str:
        return "localhost" if self.unix_path is not None else f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        import ssl

        ctx = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

    def __repr__(self) -> str:
        return f"Target({self.url!r})"
