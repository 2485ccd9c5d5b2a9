"""Reading a request within its limits: a size cap per route, read deadlines per request, bodies
spooled to disk where an API takes large uploads, and a lingering close after a refusal.

What one client can make the server hold is bounded: a body over its route's cap is refused
from its Content-Length before a byte of it is read, and a chunked body is read only up to the
cap; a client that stalls or trickles is cut off by the deadlines below; a refused body is read
and thrown away (never kept) for a few seconds so that the client, still sending, reads the
answer instead of a connection reset (which the SDK would retry for minutes).

Databricks documents "The maximum allowed size of a request to the Jobs API is 10MB" and 10 MB
for a workspace import's content (errors name 10485760 bytes); its front door answers an
oversized request with 400 BAD_REQUEST "Server received a request which exceeds maximum allowed
content length. RequestSize(bytes): N, Limit(bytes): L". The Files API takes uploads up to
5 GiB, which are spooled to a temporary file instead of memory.
"""

from __future__ import annotations

import io
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO, Protocol, cast

MB = 1024 * 1024
MAX_REQUEST_BYTES = 10 * MB  # every route unless it declares its own cap
SPOOL_IN_MEMORY = 1 * MB  # a spooled body moves to a temporary file past this
_PIECE = 64 * 1024
_MAX_LINE = 64 * 1024  # a chunk-size or trailer line


@dataclass(frozen=True)
class BodyLimit:
    """What a route accepts: at most `max_bytes` of body; `spool` keeps it on disk, not in memory."""

    max_bytes: int = MAX_REQUEST_BYTES
    spool: bool = False


@dataclass(frozen=True)
class ReadTimeouts:
    """How long a client may take to send a request (Apache mod_reqtimeout's defaults, the usual
    defence against slow clients): headers within `header_s` of their first byte; the body within
    `body_s`, extended by a second per `body_min_rate` bytes received, so a client sending at a
    useful rate is never cut off and one trickling a byte at a time is, after `body_s`."""

    keepalive_s: float = 120.0  # an idle connection between requests is closed after this
    header_s: float = 20.0
    body_s: float = 20.0
    body_min_rate: float = 500.0  # bytes per second
    write_s: float = 60.0  # sending a response to a client that does not read it
    linger_s: float = 5.0  # reading (and discarding) what a refused client still sends


class BodyTooLarge(Exception):
    def __init__(self, size: int | None, limit: int):
        self.size, self.limit = size, limit
        shown = f"{size}" if size is not None else f"more than {limit}"
        super().__init__(
            "Server received a request which exceeds maximum allowed content length. "
            f"RequestSize(bytes): {shown}, Limit(bytes): {limit}"
        )


class RequestTimeout(TimeoutError):
    """The client did not send its request in time (BaseHTTPRequestHandler closes quietly on
    a TimeoutError while reading headers; a body cut off this way is answered 408)."""


class DeadlineSocket(io.RawIOBase):
    """A connection's reading side, each read bounded by the current phase's deadline:
    waiting for a request (keep-alive), its headers, its body."""

    def __init__(self, sock: socket.socket, timeouts: ReadTimeouts):
        self._sock = sock
        self.timeouts = timeouts
        self._phase = "idle"
        self._since = time.monotonic()
        self._received = 0

    def readable(self) -> bool:
        return True

    def await_request(self) -> None:
        self._phase, self._since = "idle", time.monotonic()

    def begin_body(self) -> None:
        self._phase, self._since, self._received = "body", time.monotonic(), 0

    def end_body(self) -> None:
        self._phase = "done"

    def _budget(self) -> float:
        t = self.timeouts
        elapsed = time.monotonic() - self._since
        if self._phase == "idle":
            return t.keepalive_s - elapsed
        if self._phase == "headers":
            return t.header_s - elapsed
        if self._phase == "body":
            return t.body_s + self._received / t.body_min_rate - elapsed
        return t.write_s  # reading outside a request: the connection is being drained or closed

    def readinto(self, buffer) -> int:
        budget = self._budget()
        if budget <= 0:
            raise RequestTimeout(f"no complete request {self._phase} in time")
        self._sock.settimeout(budget)
        try:
            n = self._sock.recv_into(buffer)
        except TimeoutError:
            raise RequestTimeout(f"no complete request {self._phase} in time") from None
        if n and self._phase == "idle":  # the first byte of a request: its headers' clock starts
            self._phase, self._since = "headers", time.monotonic()
        self._received += n
        return n

    def close(self) -> None:  # the server closes the socket itself
        super().close()


def content_length(headers: dict[str, str]) -> int | None:
    """The declared body length; None for a chunked body. ValueError if malformed."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    raw = headers.get("content-length")
    if raw is None or raw.strip() == "":
        return 0  # HTTP/1.1: no length and not chunked means no body
    if not raw.strip().isdigit():
        raise ValueError(f"Invalid Content-Length: {raw!r}")
    return int(raw)


def has_body(headers: dict[str, str]) -> bool:
    """Whether a body follows the headers (a malformed length counts: the framing is unknown)."""
    try:
        return content_length(headers) != 0
    except ValueError:
        return True


def check_declared(headers: dict[str, str], limit: BodyLimit) -> None:
    """Refuse from the headers alone a body declared larger than the route's cap."""
    length = content_length(headers)
    if length is not None and length > limit.max_bytes:
        raise BodyTooLarge(length, limit.max_bytes)


def read_body(rfile: io.BufferedIOBase, headers: dict[str, str], limit: BodyLimit) -> tuple[bytes, BinaryIO | None]:
    """The body, never more than `limit.max_bytes` of it: (bytes, None), or (b"", file) when the route
    spools. BodyTooLarge past the cap, RequestTimeout from the deadlines, ValueError if malformed."""
    check_declared(headers, limit)
    sink: _Sink = _SpoolSink() if limit.spool else _MemorySink()
    try:
        length = content_length(headers)
        if length is None:
            _read_chunked(rfile, sink, limit.max_bytes)
        else:
            _read_exactly(rfile, sink, length)
        return sink.result()
    except BaseException:
        sink.discard()
        raise


def _read_exactly(rfile: io.BufferedIOBase, sink: _Sink, length: int) -> None:
    left = length
    while left > 0:
        piece = rfile.read(min(left, _PIECE))
        if not piece:
            raise ValueError(f"The request body ended after {length - left} of its {length} bytes (Content-Length)")
        sink.write(piece)
        left -= len(piece)


def _read_chunked(rfile: io.BufferedIOBase, sink: _Sink, cap: int) -> None:
    total = 0
    while True:
        line = rfile.readline(_MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise ValueError("Malformed chunked body: a chunk size line is missing or too long")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError(f"Malformed chunked body: bad chunk size {size_text[:20]!r}") from None
        if size < 0:
            raise ValueError("Malformed chunked body: negative chunk size")
        if size == 0:
            for _ in range(100):  # trailers, then the blank line
                trailer = rfile.readline(_MAX_LINE + 1)
                if trailer in (b"\r\n", b"\n", b""):
                    return
            raise ValueError("Malformed chunked body: too many trailer lines")
        if total + size > cap:
            raise BodyTooLarge(None, cap)
        _read_exactly(rfile, sink, size)
        total += size
        if rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
            raise ValueError("Malformed chunked body: a chunk is not followed by CRLF")


class _Sink(Protocol):
    def write(self, data: bytes) -> None: ...
    def result(self) -> tuple[bytes, BinaryIO | None]: ...
    def discard(self) -> None: ...


class _MemorySink:
    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data

    def result(self) -> tuple[bytes, BinaryIO | None]:
        return bytes(self._buf), None

    def discard(self) -> None:
        self._buf = bytearray()


class _SpoolSink:
    def __init__(self) -> None:
        # Handed to the request (Request.body_file) and closed by the server once answered.
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="dbx-upload-")  # noqa: SIM115

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def result(self) -> tuple[bytes, BinaryIO | None]:
        self._file.seek(0)
        return b"", cast(BinaryIO, self._file)

    def discard(self) -> None:
        self._file.close()


def linger(sock: socket.socket, seconds: float) -> None:
    """After answering a request whose body was not read: stop writing, then read and discard what the
    client still sends (until it closes, or `seconds`), so closing does not reset the connection
    before the client has read the answer."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            sock.settimeout(left)
            if not sock.recv(_PIECE):
                return
        except OSError:  # timed out, reset, closed
            return
