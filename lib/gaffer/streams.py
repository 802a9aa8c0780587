"""Non-blocking pipe readers and writers on the event loop.

A reader hands every chunk it reads to a callback and keeps the last bytes in a
ring buffer (for replays and run records); a writer buffers what the pipe cannot
take yet, up to a bound, and flushes when the loop says the pipe is writable.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
from collections.abc import Callable

from gaffer.errors import InvalidState

READ_SIZE = 64 * 1024  # a pipe's default capacity: one read empties it
FLOOD_PIPE_SIZE = 1024 * 1024  # a pipe that keeps filling up grows to this
TAIL_BYTES = 64 * 1024
WRITE_BUFFER_LIMIT = 1024 * 1024


class Tail:
    """The last ``limit`` bytes written to it. ``total`` counts every byte ever
    added, so a reader can ask for what came after an offset it has seen."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self.total = 0

    def add(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.total += len(data)
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def get(self) -> bytes:
        data = b"".join(self._chunks)
        return data[-self._limit :]

    def since(self, offset: int) -> tuple[bytes, int]:
        """The kept bytes after ``offset`` and the offset they start at (later
        than ``offset`` when the ring no longer reaches back that far)."""
        data = self.get()
        start = self.total - len(data)
        offset = max(offset, start)
        return data[offset - start :], offset

    def lines(self, n: int) -> list[str]:
        text = self.get().decode("utf-8", "replace")
        return text.splitlines()[-n:]


class PipeReader:
    """Reads ``fd`` whenever it is readable until EOF; owns and closes the fd."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        on_data: Callable[[bytes], None],
        on_eof: Callable[[], None] | None = None,
        tail: Tail | None = None,
    ) -> None:
        self._loop = loop
        self.fd: int | None = fd
        self._on_data = on_data
        self._on_eof = on_eof
        self.tail = tail if tail is not None else Tail()
        self.bytes_read = 0
        self._read_size = READ_SIZE
        self.paused = False
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        fd = self.fd
        if fd is None:
            return
        try:
            data = os.read(fd, self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            if self._on_eof is not None:
                self._on_eof()
            return
        if len(data) == self._read_size == READ_SIZE:
            self._grow(fd)
        self.bytes_read += len(data)
        self.tail.add(data)
        self._on_data(data)

    def _grow(self, fd: int) -> None:
        # A full read: the writer is faster than one read per loop turn. A bigger
        # pipe (and reads to match) moves the same bytes in a sixteenth of the
        # turns; only pipes that flood pay for it (capped by the system's
        # pipe-max-size and the user's pipe page quota, then it stays as it is).
        self._read_size = READ_SIZE + 1  # tried once
        with contextlib.suppress(OSError):
            self._read_size = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FLOOD_PIPE_SIZE)

    def pause(self) -> None:
        """Stop reading for now: the pipe fills and the writer blocks, as on any
        full pipe (backpressure from a consumer that cannot keep up)."""
        if self.fd is not None and not self.paused:
            self.paused = True
            self._loop.remove_reader(self.fd)

    def resume(self) -> None:
        if self.fd is not None and self.paused:
            self.paused = False
            self._loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            if not self.paused:
                self._loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def detach(self) -> int | None:
        """Stop reading and give up the fd without closing it (a re-exec)."""
        fd, self.fd = self.fd, None
        if fd is not None and not self.paused:
            self._loop.remove_reader(fd)
        return fd


class PipeWriter:
    """Writes to ``fd`` without blocking; owns and closes the fd."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, limit: int = WRITE_BUFFER_LIMIT
    ) -> None:
        self._loop = loop
        self.fd: int | None = fd
        self._buf = bytearray()
        self._limit = limit

    def write(self, data: bytes) -> None:
        if self.fd is None:
            raise InvalidState("the stream is closed")
        if len(self._buf) + len(data) > self._limit:
            raise InvalidState(f"the stream's write buffer is full ({self._limit} bytes)")
        if not self._buf:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                self.close()
                raise InvalidState(f"the stream is closed ({e.strerror})") from None
            data = data[n:]
            if not data:
                return
            self._loop.add_writer(self.fd, self._writable)
        self._buf += data

    def _writable(self) -> None:
        if self.fd is None:
            return
        try:
            n = os.write(self.fd, self._buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._buf.clear()
            self.close()
            return
        del self._buf[:n]
        if not self._buf:
            self._loop.remove_writer(self.fd)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            self._loop.remove_writer(fd)
            with contextlib.suppress(OSError):
                os.close(fd)

    def detach(self) -> int | None:
        """Give up the fd without closing it (a re-exec); unsent bytes are lost."""
        fd, self.fd = self.fd, None
        if fd is not None:
            self._loop.remove_writer(fd)
        self._buf.clear()
        return fd
