"""Incremental HTTP/1.1 request-head parsing (RFC 9112 §2-§6); chunked bodies are
gateway.http.chunked's.

``parse_head`` works in place on the connection's read buffer (a ``bytearray`` owned by the
protocol): it takes ``(buf, start, end)`` and answers an index into it, so the caller can drop
consumed bytes and keep the unparsed tail. It is stateless: it is called again with the same
start when more bytes have arrived, answers ``None`` until the head is complete, and enforces
the limits on the bytes seen so far, so a head that can no longer fit is refused before it is
complete.

Errors are the classes of ``gateway.errors`` (each knows its HTTP status); messages say the byte
offset, counted from the start of the request line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import NoReturn

from gateway._speedups import RequestHead as _RequestHead
from gateway.errors import (
    BadRequest,
    ExpectationFailed,
    HeadersTooLarge,
    NotImplementedByGateway,
    PeerError,
    UriTooLong,
)

__all__ = [
    "TCHAR",
    "HttpLimits",
    "HttpVersionNotSupported",
    "RequestHead",
    "parse_head",
    "python_parse_head",
]


class HttpVersionNotSupported(PeerError):
    """A well-formed ``HTTP/x.y`` other than 1.0 and 1.1 (RFC 9110 §15.6.6)."""

    status = 505
    error_code = 505


class HttpLimits:
    """Size limits on what a peer may send before the gateway refuses it.

    max_request_line: bytes of the request line, line ending excluded (414 beyond).
    max_header_bytes: bytes of the whole head, from the first byte of the request line to the
        end of the empty line that closes it, line endings included (431 beyond).
    max_headers: number of field lines (431 beyond).
    max_chunk_line: bytes of a chunk-size line including extensions, line ending excluded
        (400 beyond).
    max_trailer_bytes: bytes of the trailer field lines with their line endings; the final
        empty line is not counted (431 beyond).
    """

    __slots__ = (
        "max_request_line",
        "max_header_bytes",
        "max_headers",
        "max_chunk_line",
        "max_trailer_bytes",
    )

    def __init__(
        self,
        max_request_line: int = 8192,
        max_header_bytes: int = 16384,
        max_headers: int = 100,
        max_chunk_line: int = 4096,
        max_trailer_bytes: int = 16384,
    ) -> None:
        for name, value in (
            ("max_request_line", max_request_line),
            ("max_header_bytes", max_header_bytes),
            ("max_headers", max_headers),
            ("max_chunk_line", max_chunk_line),
            ("max_trailer_bytes", max_trailer_bytes),
        ):
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.max_chunk_line = max_chunk_line
        self.max_trailer_bytes = max_trailer_bytes

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__)
        return f"HttpLimits({fields})"


DEFAULT_LIMITS = HttpLimits()


# The parsed head both twins build: a C type (ext/httphead.pxi), so that the compiled parser fills
# it without a Python __init__ call; documented in gateway/_speedups.pyi.
RequestHead = _RequestHead


# --- request head -------------------------------------------------------------------------

# RFC 9112 §2.2: "SHOULD ignore at least one empty line (CRLF) received prior to the
# request-line". A few are tolerated (old clients send CRLF after a POST body); an endless
# stream of them is refused rather than buffered.
MAX_EMPTY_LINES = 4

TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(f"[{TCHAR}]+")
_HTTP_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
# Bytes a head may carry besides its line endings: HTAB, SP, VCHAR and obs-text. Controls and
# DEL are refused everywhere (RFC 9110 §5.5 field-vchar; RFC 9112 §3.2 request-target), and a
# CR only ever ends a line (RFC 9112 §2.2 lets a recipient reject a bare CR).
_FIELD_BYTES = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
_FIELD_BYTES_CRLF = _FIELD_BYTES + b"\r\n"

_COMMON_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT"}
)

# Field names seen before, mapped to their lower-case form: most requests repeat the same
# dozen names, and a dict hit is much cheaper than a regex per field. Bounded so that a peer
# sending random names cannot grow it; past the bound names are validated every time.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 1024

# Fields whose values shape the framing or the connection; everything else is only stored.
_H_HOST = "host"
_H_CONTENT_LENGTH = "content-length"
_H_TRANSFER_ENCODING = "transfer-encoding"
_H_CONNECTION = "connection"
_H_EXPECT = "expect"
_H_CONTENT_TYPE = "content-type"
_SPECIAL = frozenset(
    {_H_HOST, _H_CONTENT_LENGTH, _H_TRANSFER_ENCODING, _H_CONNECTION, _H_EXPECT, _H_CONTENT_TYPE}
)


def python_parse_head(
    buf: bytearray | bytes, start: int, end: int, limits: HttpLimits = DEFAULT_LIMITS
) -> tuple[RequestHead, int] | None:
    """Parse the request head in ``buf[start:end]`` (the reference twin; ``parse_head`` is the
    twin selected, below).

    Returns None while the head is incomplete, else ``(head, index just after the empty line
    that ends the head)``. Raises a ``gateway.errors.PeerError`` (or
    ``HttpVersionNotSupported``) for a head that is malformed or over ``limits``, as soon as
    the bytes seen so far prove it.
    """
    if start >= end:
        return None
    c = buf[start]
    if c == 13 or c == 10:
        s = _skip_empty_lines(buf, start, end)
        if s < 0:
            return None
    else:
        s = start

    # Fast path: the whole head is there, ends in CRLF CRLF within max_header_bytes, and
    # every line ends in CRLF with no control character anywhere (what real clients send).
    lim = s + limits.max_header_bytes
    if lim > end:
        lim = end
    t = buf.find(b"\r\n\r\n", s, lim)
    if t >= 0:
        raw = buf[s:t]  # request line and field lines without the final CRLF CRLF (small)
        # Deleting every allowed byte must leave nothing but the CRs and LFs of the CRLF pairs
        # of raw: a bare CR and a bare LF apart in raw would pair up once the bytes between
        # them are gone, and must not end up inside a field value.
        if len(raw.translate(None, _FIELD_BYTES)) == 2 * raw.count(b"\r\n"):
            lines = raw.decode("latin-1").split("\r\n")
            head_end = t + 4
            if len(lines[0]) > limits.max_request_line:
                raise UriTooLong(f"request line longer than {limits.max_request_line} bytes")
        else:
            split = _split_head(buf, start, s, end, limits)
            if split is None:  # pragma: no cover - t >= 0 means the head is complete
                return None
            lines, raw, head_end = split
    else:
        split = _split_head(buf, start, s, end, limits)
        if split is None:
            return None
        lines, raw, head_end = split
    if len(lines) - 1 > limits.max_headers:
        raise HeadersTooLarge(f"more than {limits.max_headers} header fields")

    # --- request line (RFC 9112 §3): method SP request-target SP HTTP-version
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(
            "malformed request line: expected 'METHOD SP target SP HTTP-version'"
            f" separated by single spaces (at byte {s - start})"
        )
    method, target, vstr = parts
    if method not in _COMMON_METHODS and _TOKEN.fullmatch(method) is None:
        raise BadRequest(f"malformed request line: method is not a token (at byte {s - start})")
    if vstr == "HTTP/1.1":
        version = 11
    elif vstr == "HTTP/1.0":
        version = 10
    elif _HTTP_VERSION.fullmatch(vstr) is not None:
        raise HttpVersionNotSupported(f"HTTP version {vstr} is not supported; use HTTP/1.1")
    else:
        raise BadRequest(f"malformed request line: bad HTTP version (at byte {s - start})")
    if not target.isascii() or "\t" in target:
        raise BadRequest(
            "malformed request line: request target contains a control or non-ASCII"
            f" character (at byte {s - start + len(method) + 1})"
        )
    if target[:1] != "/":
        target = _non_origin_target(method, target, s - start + len(method) + 1)
    path, _, query = target.partition("?")

    # --- field lines (RFC 9112 §5)
    headers: list[tuple[str, str]] = []
    append = headers.append
    hosts = 0
    cl_values: list[str] | None = None
    te_values: list[str] | None = None
    conn_values: list[str] | None = None
    expect_values: list[str] | None = None
    content_type: str | None = None
    names = _NAME_CACHE
    special = _SPECIAL
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        lname = names.get(name)
        if lname is None or not sep:
            lname = _check_name(name, sep, line, raw, start, s)
        value = value.strip(" \t")
        append((lname, value))
        if lname in special:
            if lname == _H_HOST:
                hosts += 1
            elif lname == _H_CONTENT_LENGTH:
                if cl_values is None:
                    cl_values = [value]
                else:
                    cl_values.append(value)
            elif lname == _H_CONTENT_TYPE:
                if content_type is None:
                    content_type = value
            elif lname == _H_TRANSFER_ENCODING:
                if te_values is None:
                    te_values = [value]
                else:
                    te_values.append(value)
            elif lname == _H_CONNECTION:
                if conn_values is None:
                    conn_values = [value]
                else:
                    conn_values.append(value)
            elif expect_values is None:  # the one special name left: expect
                expect_values = [value]
            else:
                expect_values.append(value)

    # RFC 9112 §3.2: exactly one Host in HTTP/1.1; more than one is invalid in any version.
    if hosts != 1 and (version == 11 or hosts > 1):
        if hosts == 0:
            raise BadRequest("HTTP/1.1 request without a Host header")
        raise BadRequest("request with more than one Host header")

    content_length: int | None = None
    if cl_values is not None:
        v = cl_values[0]
        if len(cl_values) == 1 and len(v) <= 18 and v.isdigit() and v.isascii():
            content_length = int(v)
        else:
            content_length = _content_length(cl_values)

    chunked = False
    if te_values is not None:
        _check_transfer_encoding(te_values, version, content_length)
        chunked = True

    expect_continue = False
    if expect_values is not None:
        expect_continue = _expect(expect_values) and version == 11

    if conn_values is None:
        keep_alive = version == 11
    else:
        v = conn_values[0].lower() if len(conn_values) == 1 else ""
        if v == "keep-alive":
            keep_alive = True
        elif v == "close":
            keep_alive = False
        else:
            keep_alive = _keep_alive(conn_values, version)

    return (
        RequestHead(
            method,
            target,
            path,
            query,
            version,
            headers,
            content_length,
            chunked,
            keep_alive,
            expect_continue,
            content_type,
        ),
        head_end,
    )


def _skip_empty_lines(buf: bytearray | bytes, start: int, end: int) -> int:
    """Index of the first byte after the empty lines at start, or -1 if more may follow."""
    s = start
    skipped = 0
    while s < end:
        c = buf[s]
        if c == 10:
            s += 1
        elif c == 13:
            if s + 1 >= end:
                return -1
            if buf[s + 1] != 10:
                return s  # bare CR: reported as a malformed request line
            s += 2
        else:
            return s
        skipped += 1
        if skipped > MAX_EMPTY_LINES:
            raise BadRequest(
                f"more than {MAX_EMPTY_LINES} empty lines before the request line"
                f" (at byte {s - start})"
            )
    return -1


def _split_head(
    buf: bytearray | bytes, start: int, s: int, end: int, limits: HttpLimits
) -> tuple[list[str], bytearray | bytes, int] | None:
    """The general case of finding and splitting a head: bare LF line endings, limits on an
    incomplete head, and pointing at the offending byte. Answers (lines, raw head, index
    after the head) or None while incomplete."""
    # The request line's LF must come within max_request_line bytes (+ CR + LF).
    max_rl = limits.max_request_line
    lim = s + max_rl + 2
    if lim > end:
        lim = end
    nl = buf.find(b"\n", s, lim)
    if nl < 0:
        if end - s >= max_rl + 2:
            raise UriTooLong(f"request line longer than {max_rl} bytes")
        if end - s >= limits.max_header_bytes:
            raise HeadersTooLarge(f"request head larger than {limits.max_header_bytes} bytes")
        return None
    if nl - s > max_rl and (nl - s > max_rl + 1 or buf[nl - 1] != 13):
        raise UriTooLong(f"request line longer than {max_rl} bytes")

    # The empty line ending the head is an LF followed by CRLF or by a bare LF (RFC 9112
    # §2.2); it must end within max_header_bytes of the request line's first byte.
    max_hb = limits.max_header_bytes
    lim = s + max_hb
    if lim > end:
        lim = end
    t = buf.find(b"\n\r\n", nl, lim)
    if t >= 0:
        # A bare-LF end ("\n\n") may come first, even overlapping that match: "\n\n\r\n" is
        # a head ending in LF LF followed by a body (or the next request) starting with CRLF.
        u = buf.find(b"\n\n", nl, t + 1)
        if u >= 0:
            t = u
            head_end = u + 2
        else:
            head_end = t + 3
    else:
        t = buf.find(b"\n\n", nl, lim)
        if t < 0:
            if end - s >= max_hb:
                raise HeadersTooLarge(f"request head larger than {max_hb} bytes")
            if buf.count(b"\n", nl + 1, end) > limits.max_headers:
                raise HeadersTooLarge(f"more than {limits.max_headers} header fields")
            return None
        head_end = t + 2

    raw = buf[s : t + 1]  # up to and including the last field line's LF
    if raw.translate(None, _FIELD_BYTES_CRLF):
        _bad_control(raw, start, s)
    text = raw.decode("latin-1").replace("\r\n", "\n")
    if "\r" in text:
        _bad_control(raw, start, s)
    return text[:-1].split("\n"), raw, head_end


def _bad_control(raw: bytearray | bytes, start: int, s: int) -> NoReturn:
    """Raise for the first forbidden control character or bare CR in the raw head."""
    n = len(raw)
    for i in range(n):
        c = raw[i]
        if c == 13:
            if i + 1 < n and raw[i + 1] == 10:
                continue
            what = "bare CR"
        elif c < 32 and c != 9 and c != 10 or c == 127:
            what = f"control character 0x{c:02x}"
        else:
            continue
        where = "request line" if raw.find(b"\n", 0, i) < 0 else "header section"
        raise BadRequest(f"{what} in the {where} (at byte {s - start + i})")
    raise AssertionError("no forbidden byte found")  # pragma: no cover


def _non_origin_target(method: str, target: str, offset: int) -> str:
    """Asterisk-form and absolute-form targets (RFC 9112 §3.2.3, §3.2.2), as origin form."""
    if target == "*":
        if method == "OPTIONS":
            return target
        raise BadRequest(f"request target '*' is only allowed with OPTIONS (at byte {offset})")
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        i = len(rest)
        for ch in "/?":
            j = rest.find(ch)
            if 0 <= j < i:
                i = j
        authority = rest[:i]
        if authority and "@" not in authority and "#" not in authority:
            path = rest[i:]
            return path if path[:1] == "/" else "/" + path
        raise BadRequest(f"malformed absolute-form request target (at byte {offset})")
    raise BadRequest(
        f"malformed request line: request target must start with '/' (at byte {offset})"
    )


def _check_name(name: str, sep: str, line: str, raw: bytearray | bytes, start: int, s: int) -> str:
    """Validate a field name the cache did not know; answer its lower-case form or raise."""
    if line[:1] in (" ", "\t"):
        # RFC 9112 §5.2: obs-fold is refused (400) rather than unfolded.
        problem = "obsolete line folding (field line starts with whitespace)"
    elif not sep:
        problem = "field line without a colon"
    elif not name:
        problem = "empty field name"
    elif name[-1] in " \t":
        problem = "whitespace between field name and colon"
    elif _TOKEN.fullmatch(name) is None:
        problem = "field name is not a token"
    else:
        lname = name.lower()
        if len(_NAME_CACHE) < _NAME_CACHE_MAX:
            _NAME_CACHE[name] = lname
        return lname
    i = raw.find(line.encode("latin-1"))
    raise BadRequest(f"malformed field line: {problem} (at byte {s - start + max(i, 0)})")


def _content_length(values: list[str]) -> int:
    """RFC 9112 §6.3 (5): a list of identical decimal values is that value; else 400."""
    n = -1
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not (item.isdigit() and item.isascii()):
                raise BadRequest(f"invalid Content-Length {value!r}: not a decimal number")
            if len(item) > 18:
                raise BadRequest(f"invalid Content-Length {value!r}: more than 18 digits")
            k = int(item)
            if n < 0:
                n = k
            elif n != k:
                raise BadRequest("conflicting Content-Length values")
    return n


def _check_transfer_encoding(values: list[str], version: int, content_length: int | None) -> None:
    """RFC 9112 §6.1, §6.3: accept exactly ``chunked``; refuse every ambiguous framing."""
    if version == 10:
        # §6.1: a server MUST treat a TE in an HTTP/1.0 request as faulty framing.
        raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
    if content_length is not None:
        # §6.1, §6.3 (3): both present is the classic request-smuggling vector.
        raise BadRequest("both Transfer-Encoding and Content-Length")
    codings = []
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if item:  # RFC 9110 §5.6.1: empty list elements are ignored
                codings.append(item)
    if not codings:
        raise BadRequest("empty Transfer-Encoding")
    last = len(codings) - 1
    unknown = None
    for i, coding in enumerate(codings):
        name, _, params = coding.partition(";")
        name = name.rstrip(" \t")
        if _TOKEN.fullmatch(name) is None:
            raise BadRequest(f"malformed transfer coding {coding!r}")
        if name.lower() == "chunked":
            if i != last:
                raise BadRequest("chunked is not the final transfer coding")
            if params:
                raise BadRequest("the chunked transfer coding takes no parameters")
        elif unknown is None:
            unknown = name
    if unknown is not None:
        raise NotImplementedByGateway(
            f"transfer coding {unknown!r} is not supported; only 'chunked' is"
        )


def _expect(values: list[str]) -> bool:
    """True for ``100-continue``; any other expectation is refused (RFC 9110 §10.1.1)."""
    seen = False
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not item:
                continue
            if item.lower() != "100-continue":
                raise ExpectationFailed(f"unsupported expectation {item!r}")
            seen = True
    return seen


def _keep_alive(values: list[str], version: int) -> bool:
    """RFC 9112 §9.3: ``close`` ends the connection; HTTP/1.0 persists only on ``keep-alive``."""
    keep = False
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t").lower()
            if item == "close":
                return False
            if item == "keep-alive":
                keep = True
    return version == 11 or keep


# --- the twin the gateway uses --------------------------------------------------------------

#: Environment variable naming the request-head parser: ``compiled`` (the default:
#: ``gateway._speedups.parse_head``, ext/httphead.pxi) or ``python`` (``python_parse_head``
#: above, the reference). Read once, when this module is imported; the test suite runs under
#: either (``GATEWAY_HEAD_PARSER=python``).
HEAD_PARSER_ENV = "GATEWAY_HEAD_PARSER"

ParseHead = Callable[[bytearray | bytes, int, int, HttpLimits], "tuple[RequestHead, int] | None"]


def head_parser(name: str) -> ParseHead:
    """The parse_head twin called ``name`` (``compiled`` or ``python``); ValueError otherwise."""
    if name == "python":
        return python_parse_head
    if name == "compiled":
        from gateway._speedups import parse_head as compiled_parse_head

        return compiled_parse_head
    raise ValueError(f"{HEAD_PARSER_ENV}={name!r}: expected 'compiled' or 'python'")


HEAD_PARSER = os.environ.get(HEAD_PARSER_ENV) or "compiled"
parse_head: ParseHead = head_parser(HEAD_PARSER)
