"""One HTTP/1.1 exchange with a server on a Unix socket: send one request, read its whole
answer. What a ``--workers`` worker uses to hand a request over to the worker that can serve it
(gateway.api.consumers); knows HTTP and sockets, nothing above them.

``forward_request`` writes a request received here as it goes on: the same method and target
(path and query as the client sent them), the same fields except those about this hop
(``Connection`` and what it governs, the body's framing and coding: the body given is the
content as the caller has it, decoded) and those the caller drops, a ``Host`` if it had none,
the caller's own fields, then ``Content-Length`` and ``Connection: close`` (one request per
connection: the answer ends where the server says, or with the connection).

``exchange`` runs on the event loop and never blocks it: the connection, the request and the
answer are the loop's I/O. Everything is bounded: the answer's head (``max_head`` bytes), its
body (``max_body``), and the time until the whole answer is in (``timeout`` seconds). An answer
is framed by ``Content-Length``, has no body (``204``, ``304``), or ends with the connection;
a chunked one is refused (the servers it talks to answer these requests whole).

Errors: ``Unreachable`` when nothing listens at the path (no socket file, or the connection is
refused: the server is gone); ``RelayTimeout``; ``RelayFailed`` for everything else (the
connection broke, or the answer is malformed or too large).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import cast

from gateway.http.parser import RequestHead

MAX_HEAD = 64 * 1024

# Fields about one hop only (RFC 9110 §7.6.1), and the framing and coding of the body, which
# the forwarded request sets itself.
HOP_FIELDS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "content-encoding", "expect", "proxy-authorization",
})

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*")


class RelayFailed(Exception):
    """The exchange failed: the connection broke, or the answer is malformed or too large."""


class Unreachable(RelayFailed):
    """Nothing listens at the socket's path (no socket file, or the connection is refused)."""


class RelayTimeout(RelayFailed):
    """The whole answer did not come within the timeout."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # (lower-case name, value), in order
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


def _connection_options(head: RequestHead) -> set[str]:
    """The fields the request's ``Connection`` names: about this hop too (RFC 9110 §7.6.1)."""
    value = head.joined("connection") or ""
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def forward_request(
    head: RequestHead,
    body: bytes,
    *,
    drop: Collection[str] = (),
    add: Sequence[tuple[str, str]] = (),
) -> bytes:
    """The request to send on (see the module docstring): ``drop`` names fields (lower case)
    not to forward, ``add`` the caller's own fields (their values must be valid field values)."""
    skip = HOP_FIELDS | _connection_options(head) | set(drop)
    lines = [f"{head.method} {head.target} HTTP/1.1\r\n"]
    if head.header("host") is None:  # (an HTTP/1.0 request): HTTP/1.1 requires one
        lines.append("host: localhost\r\n")
    lines += [f"{name}: {value}\r\n" for name, value in head.headers if name not in skip]
    lines += [f"{name}: {value}\r\n" for name, value in add]
    lines.append(f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


class _AnswerReader(asyncio.Protocol):
    """Writes the request, reads one answer into ``done``."""

    def __init__(self, request: bytes, done: asyncio.Future[Answer], max_head: int,
                 max_body: int) -> None:
        self._request = request
        self._done = done
        self._max_head = max_head
        self._max_body = max_body
        self._buf = bytearray()
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._length: int | None = None  # body bytes to read; None: until the connection ends
        self._in_body = False
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        # (uvloop's transports are not asyncio.WriteTransport subclasses, but have its methods)
        cast(asyncio.WriteTransport, transport).write(self._request)
        self._request = b""

    def _fail(self, why: str) -> None:
        if not self._done.done():
            self._done.set_exception(RelayFailed(why))
        if self._transport is not None:
            self._transport.close()

    def _finish(self, body: bytes) -> None:
        if not self._done.done():
            self._done.set_result(Answer(self._status, self._headers, body))
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._done.done():
            return
        self._buf += data
        if not self._in_body and not self._read_head():
            return
        length = self._length
        if length is None:
            if len(self._buf) > self._max_body:
                self._fail(f"the answer's body is over {self._max_body} bytes")
        elif len(self._buf) >= length:
            if len(self._buf) > length:
                self._fail("the server sent more than the answer's Content-Length")
                return
            self._finish(bytes(self._buf))

    def _read_head(self) -> bool:
        """Parse the answer's head once it is in (skipping interim 1xx answers); True once the
        body begins (what is left in the buffer)."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self._max_head:
                    self._fail(f"the answer's head is over {self._max_head} bytes")
                return False
            if end > self._max_head:
                self._fail(f"the answer's head is over {self._max_head} bytes")
                return False
            lines = bytes(self._buf[:end]).split(b"\r\n")
            del self._buf[: end + 4]
            status_line = _STATUS_LINE.fullmatch(lines[0])
            if status_line is None:
                self._fail(f"not an HTTP/1.1 status line: {lines[0][:100]!r}")
                return False
            status = int(status_line.group(1))
            headers = []
            for line in lines[1:]:
                field = _FIELD.fullmatch(line)
                if field is None:
                    self._fail(f"a malformed field line in the answer: {line[:100]!r}")
                    return False
                headers.append((field.group(1).decode("ascii").lower(),
                                field.group(2).decode("latin-1")))
            if status < 200:
                continue  # 100 Continue and the like: the answer follows
            return self._begin_body(status, headers)

    def _begin_body(self, status: int, headers: list[tuple[str, str]]) -> bool:
        self._status = status
        self._headers = headers
        self._in_body = True
        names = {n for n, _ in headers}
        if "transfer-encoding" in names:
            self._fail("a chunked answer (only answers framed by Content-Length are relayed)")
            return False
        if status in (204, 304):
            self._length = 0
        elif "content-length" in names:
            values = {v.strip() for n, v in headers if n == "content-length"}
            text = values.pop() if len(values) == 1 else ""
            if not text.isdigit() or len(text) > 18:
                self._fail("the answer's Content-Length is not one number")
                return False
            self._length = int(text)
            if self._length > self._max_body:
                self._fail(f"the answer's body of {self._length} bytes is over {self._max_body} bytes")
                return False
        return True

    def eof_received(self) -> bool | None:
        if self._done.done():
            return None
        if not self._in_body:
            self._fail("the server closed the connection before its answer")
        elif self._length is None:
            self._finish(bytes(self._buf))
        else:
            self._fail(f"the server closed the connection after {len(self._buf)} of the "
                       f"{self._length} bytes of its answer")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._done.done():
            return
        if exc is None:
            self.eof_received()
        else:
            self._fail(f"the connection broke: {exc}")


async def exchange(
    path: str,
    request: bytes,
    *,
    timeout: float,
    max_body: int,
    max_head: int = MAX_HEAD,
) -> Answer:
    """Send ``request`` to the server listening at the Unix socket ``path`` and read its whole
    answer (see the module docstring for the bounds and the errors)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Answer] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                transport, _ = await loop.create_unix_connection(
                    lambda: _AnswerReader(request, done, max_head, max_body), path
                )
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                raise Unreachable(f"nothing listens at {path}: {exc.strerror or exc}") from None
            except OSError as exc:
                raise RelayFailed(f"cannot connect to {path}: {exc.strerror or exc}") from None
            return await done
    except TimeoutError:
        raise RelayTimeout(f"no whole answer from {path} within {timeout:g} s") from None
    finally:
        if transport is not None:
            transport.close()
