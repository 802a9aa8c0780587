"""The API's listening sockets, bound before the server exists.

gafferd binds them (and loads the TLS certificate) before it starts any
process, so that a busy port or a bad certificate stops the start-up before
anything runs; the HTTP server, whose imports take longer, takes the sockets
over once the processes are on their way. Only the standard library here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import stat
from dataclasses import dataclass, field

from gaffer.errors import ConfigError
from gaffer.http.settings import HttpSettings, parse_bind

BACKLOG = 128


@dataclass
class Listeners:
    """Bound, listening sockets: the unix one, and each TCP ``bind`` entry's."""

    unix: socket.socket | None = None
    unix_path: str | None = None
    tcp: list[tuple[str, int, list[socket.socket]]] = field(default_factory=list)
    ssl: ssl.SSLContext | None = None

    def close(self) -> None:
        for sock in [*([self.unix] if self.unix else []), *(s for *_, ss in self.tcp for s in ss)]:
            sock.close()
        if self.unix is not None and self.unix_path:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)
        self.unix = None
        self.tcp = []


def bind_listeners(settings: HttpSettings) -> Listeners:
    """Bind every listener the settings ask for; ConfigError naming the field."""
    out = Listeners()
    try:
        if settings.unix_socket:
            out.unix = bind_unix(settings.unix_socket)
            out.unix_path = settings.unix_socket
        out.ssl = ssl_context(settings)
        for i, addr in enumerate(settings.bind):
            host, port = parse_bind(addr, f"bind[{i}]")
            try:
                socks = bind_tcp(host, port)
            except OSError as e:
                reason = e.strerror or str(e)
                if e.errno == errno.EADDRINUSE:
                    reason = "address already in use"
                raise ConfigError(f"bind[{i}]", f"cannot listen on {addr}: {reason}") from None
            out.tcp.append((host, socks[0].getsockname()[1], socks))
    except BaseException:
        out.close()
        raise
    return out


def ssl_context(settings: HttpSettings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.certfile, tls.keyfile)
        if tls.client_ca:
            ctx.load_verify_locations(tls.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("tls", f"cannot load the certificate or key: {e}") from None
    return ctx


def bind_unix(path: str) -> socket.socket:
    """Bind the API's unix socket (mode 0600, in a 0700 directory); refuse to
    steal one that another daemon still answers on."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.stat(directory)
    if st.st_uid not in (0, os.getuid()):
        raise ConfigError("unix_socket", f"{directory}: owned by uid {st.st_uid}, not by us")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        # others could replace the socket with their own
        raise ConfigError(
            "unix_socket", f"{directory}: writable by others (mode {st.st_mode & 0o7777:o})"
        )
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            pass  # stale: nobody listens any more
        else:
            raise ConfigError("unix_socket", f"{path}: another daemon is listening on it")
        finally:
            probe.close()
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise ConfigError("unix_socket", f"{path}: exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # no window in which the socket is open to others
    try:
        sock.setblocking(False)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    return sock


def bind_tcp(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address ``host`` resolves to (as tornado's
    ``bind_sockets``): IPv6 sockets only take IPv6, and with port 0 every
    address gets the port the first one was given."""
    socks: list[socket.socket] = []
    infos = socket.getaddrinfo(
        host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    seen = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:
                sockaddr = (sockaddr[0], socks[0].getsockname()[1], *sockaddr[2:])
            sock.setblocking(False)
            sock.bind(sockaddr)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks
