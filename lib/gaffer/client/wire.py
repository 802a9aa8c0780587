"""HTTP/1.1 for the blocking client, on a plain socket.

Why not :mod:`http.client`: it imports the ``email`` package, ~45 ms on this
class of machine, which alone is most of what ``gaffer ps`` may take. What the
daemon speaks is small — requests with JSON bodies, answers with a
Content-Length or chunked, long-lived streams — so this reads exactly that:
a status line, headers, and a body framed by Content-Length, chunks or the end
of the connection.
"""

from __future__ import annotations

import _socket
import os
from time import monotonic as _monotonic

from gaffer.client.errors import ConnectionError
from gaffer.client.target import Target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers  # names in lower case
        self.body = body


class Connection:
    """One connection to the daemon, kept open between requests and opened
    again when the daemon closed it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._sock: _socket.socket | None = None
        self._buf = bytearray()
        # time.monotonic() by which the answer must be complete (a stream's reader sets it)
        self.deadline: float | None = None

    # -- socket -------------------------------------------------------------------

    def _connect(self, timeout: float | None) -> _socket.socket:
        t = self.target
        try:
            if t.unix_path is not None:
                # The C module itself: socket.py builds enum tables at import,
                # ~5 ms of every `gaffer` command, and a unix socket needs none.
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                sock.settimeout(timeout)
                try:
                    sock.connect(t.unix_path)
                except BaseException:
                    sock.close()
                    raise
            else:
                import socket

                tcp = socket.create_connection((t.host, t.port), timeout=timeout)
                tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if t.tls:
                    tcp = t.ssl_context().wrap_socket(tcp, server_hostname=t.host)
                sock = tcp
        except OSError as e:
            why = os_reason(e)
            if t.unix_path is not None and isinstance(e, ConnectionRefusedError):
                import stat

                try:
                    if not stat.S_ISSOCK(os.stat(t.unix_path).st_mode):
                        why = "not a socket (-H takes the daemon's socket, or a URL)"
                except OSError:
                    pass
            raise ConnectionError(f"cannot reach gafferd at {t.url}: {why}") from None
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()

    def _recv(self) -> bytes:
        assert self._sock is not None
        if self.deadline is not None:
            # each read gets what is left, not a fresh timeout: keep-alive
            # comments on a quiet stream must not push the deadline back
            left = self.deadline - _monotonic()
            if left <= 0:
                raise ConnectionError(f"gafferd at {self.target.url} did not answer in time")
            self._sock.settimeout(left)
        try:
            data = self._sock.recv(READ_SIZE)
        except TimeoutError:
            raise ConnectionError(f"gafferd at {self.target.url} did not answer in time") from None
        except OSError as e:
            raise ConnectionError(f"connection to {self.target.url} lost: {os_reason(e)}") from None
        return data

    # -- requests -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = -1.0,
    ) -> Response:
        """Send a request and read the whole answer. A kept-alive connection
        the daemon closed meanwhile is opened again once. After any failure the
        connection is dropped: a half-read answer must not be taken for the
        next request's."""
        try:
            for attempt in (0, 1):
                reused = self._sock is not None
                status, head = self._send(method, path, body, headers, timeout)
                if status == 0 and reused and attempt == 0:
                    self.close()  # the daemon closed the idle connection: once more
                    continue
                if status == 0:
                    raise ConnectionError(f"gafferd at {self.target.url} closed the connection")
                chunks = b"".join(self._body(method, status, head))
                if head.get("connection", "").lower() == "close":
                    self.close()
                return Response(status, head, chunks)
        except BaseException:
            self.close()
            raise
        raise AssertionError("unreachable")

    def stream(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[Response, BodyStream]:
        """Send a request and return its status and headers at once (within
        the target's timeout), and the body as the chunks arrive (each within
        ``timeout``). The connection is not reused afterwards."""
        self.close()
        try:
            status, head = self._send(method, path, None, headers, -1.0)
            if status == 0:
                raise ConnectionError(f"gafferd at {self.target.url} closed the connection")
            self.settimeout(timeout)
        except BaseException:
            self.close()
            raise
        return Response(status, head, b""), BodyStream(self, self._body(method, status, head))

    def settimeout(self, timeout: float | None) -> None:
        if self._sock is not None:
            self._sock.settimeout(timeout)

    def _send(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        timeout: float | None,
    ) -> tuple[int, dict[str, str]]:
        t = self.target
        if timeout is not None and timeout < 0:
            timeout = t.timeout
        if self._sock is None:
            self._sock = self._connect(timeout)
        self._sock.settimeout(timeout)
        lines = [f"{method} {t.prefix}{path} HTTP/1.1", f"Host: {t.host_header}"]
        if t.key:
            lines.append(f"X-Api-Key: {t.key}")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        try:
            self._sock.sendall(raw)
        except OSError:
            return 0, {}  # closed under us; the caller decides whether to retry
        return self._head()

    def _head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HEAD:
                raise ConnectionError("the answer's headers are too long")
            data = self._recv()
            if not data:
                return 0, {}
            self._buf += data
        text = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        status_line, *header_lines = text.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        head: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            head[name.strip().lower()] = value.strip()
        status = int(parts[1])
        if status == 100:
            return self._head()
        return status, head

    def _body(self, method: str, status: int, head: dict[str, str]) -> Iterator[bytes]:
        if method == "HEAD" or status in (204, 304):
            return
        if "chunked" in head.get("transfer-encoding", "").lower():
            yield from self._chunked()
        elif "content-length" in head:
            left = int(head["content-length"])
            while left > 0:
                if not self._buf:
                    data = self._recv()
                    if not data:
                        raise ConnectionError("the daemon closed the connection mid-answer")
                    self._buf += data
                piece = bytes(self._buf[:left])
                del self._buf[: len(piece)]
                left -= len(piece)
                yield piece
        else:  # until the daemon closes the connection
            if self._buf:
                yield bytes(self._buf)
                self._buf.clear()
            while data := self._recv():
                yield data
            self.close()

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._line()
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return
            while len(self._buf) < size + 2:
                data = self._recv()
                if not data:
                    raise ConnectionError("the daemon closed the connection mid-answer")
                self._buf += data
            piece = bytes(self._buf[:size])
            del self._buf[: size + 2]
            yield piece

    def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 2]
                return line
            data = self._recv()
            if not data:
                raise ConnectionError("the daemon closed the connection mid-answer")
            self._buf += data


class BodyStream:
    """The chunks of a long answer as they arrive; ``settimeout`` bounds the
    wait for the next one (a :class:`ConnectionError` when it passes)."""

    def __init__(self, conn: Connection, chunks: Iterator[bytes]) -> None:
        self._conn = conn
        self._chunks = chunks

    def __iter__(self) -> BodyStream:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def settimeout(self, timeout: float | None) -> None:
        self._conn.settimeout(timeout)

    def set_deadline(self, deadline: float | None) -> None:
        """Give up (ConnectionError) once ``time.monotonic()`` passes this,
        however often the daemon sends keep-alives meanwhile."""
        self._conn.deadline = deadline

    def close(self) -> None:
        self._conn.close()


def iter_sse(chunks: Iterable[bytes]) -> Iterator[tuple[str, str, str | None]]:
    """Server-Sent Events out of a byte stream: ``(event, data, id)``;
    comments (keep-alives) are skipped."""
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)


class SSEParser:
    """Server-Sent Events, fed chunk by chunk (the asyncio client has no
    blocking iterable to hand :func:`iter_sse`)."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: str = "message"
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, str, str | None]]:
        """The events that ``chunk`` completes: ``(event, data, id)``."""
        out = []
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", "replace")
            if not line:
                if self._data:
                    out.append((self._event, "\n".join(self._data), self._id))
                self._event, self._data, self._id = "message", [], None
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
        return out


def os_reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such socket (is gafferd running?)"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is gafferd running?)"
    if isinstance(e, PermissionError):
        return "permission denied (the socket belongs to another user)"
    return e.strerror or str(e)
