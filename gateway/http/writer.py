"""Response framing: precomputed status lines, fixed-length and chunked bodies (RFC 9112 §7.1)."""

from __future__ import annotations

from http import HTTPStatus

SERVER_HEADER = b"Server: kafka-gateway\r\n"

# "HTTP/1.1 404 Not Found\r\n" for every status we may send, built once.
STATUS_LINES: dict[int, bytes] = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode("latin-1")) for s in HTTPStatus
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
KEEP_ALIVE = b"Connection: keep-alive\r\n"
JSON_TYPE = b"application/json"


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d Unknown\r\n" % status
    return line


def fixed_response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = JSON_TYPE,
    close: bool = False,
    keep_alive: bool = False,
    extra_headers: bytes = b"",
) -> bytes:
    """A whole response with Content-Length, as one bytes object (one transport.write).
    ``keep_alive``: the answer to an HTTP/1.0 request whose connection stays open says so
    (HTTP/1.0 closes by default; RFC 9112 §9.3). A 204 has no content, so neither a
    Content-Type nor a Content-Length (RFC 9110 §8.6, §15.3.5): ``body`` must be empty."""
    if status == 204:
        return b"".join(
            (
                status_line(status),
                SERVER_HEADER,
                b"Connection: close\r\n" if close else KEEP_ALIVE if keep_alive else b"",
                extra_headers,
                b"\r\n",
            )
        )
    key = (status, content_type, close, keep_alive, extra_headers)
    parts = _FIXED_HEADS.get(key)
    if parts is None:
        parts = (
            status_line(status) + SERVER_HEADER + b"Content-Type: " + content_type
            + b"\r\nContent-Length: ",
            b"\r\n"
            + (b"Connection: close\r\n" if close else KEEP_ALIVE if keep_alive else b"")
            + extra_headers
            + b"\r\n",
        )
        if len(_FIXED_HEADS) < _HEADS_MAX:
            _FIXED_HEADS[key] = parts
    return b"%s%d%s%s" % (parts[0], len(body), parts[1], body)


# Heads built before: a head depends on a few values only (the Content-Length aside), and
# nearly every answer has the same. Bounded (the values come from the gateway, not the peer).
_CHUNKED_HEADS: dict[tuple[int, bytes, bool, bool, bytes], bytes] = {}
_FIXED_HEADS: dict[tuple[int, bytes, bool, bool, bytes], tuple[bytes, bytes]] = {}
_HEADS_MAX = 64


def chunked_head(
    status: int,
    *,
    content_type: bytes = JSON_TYPE,
    close: bool = False,
    http10: bool = False,
    extra_headers: bytes = b"",
) -> bytes:
    """Head of a streamed response. HTTP/1.0 peers cannot take chunked framing: they get a
    close-delimited body instead (RFC 9112 §6.3 rule 8)."""
    key = (status, content_type, close, http10, extra_headers)
    head = _CHUNKED_HEADS.get(key)
    if head is None:
        head = _chunked_head(status, content_type, close, http10, extra_headers)
        if len(_CHUNKED_HEADS) < _HEADS_MAX:
            _CHUNKED_HEADS[key] = head
    return head


def _chunked_head(
    status: int, content_type: bytes, close: bool, http10: bool, extra_headers: bytes
) -> bytes:
    if http10:
        framing = b"Connection: close\r\n"
    else:
        framing = b"Transfer-Encoding: chunked\r\n" + (b"Connection: close\r\n" if close else b"")
    return b"".join(
        (
            status_line(status),
            SERVER_HEADER,
            b"Content-Type: ",
            content_type,
            b"\r\n",
            extra_headers,
            framing,
            b"\r\n",
        )
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)
