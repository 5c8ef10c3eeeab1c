"""Hypothesis strategies for the fuzz tests (tests/fuzz): HTTP/1.1 requests written against
RFC 9112 (not against our parser), chunked bodies, and byte-level mutations of any of them.

``requests()`` draws a ``GenRequest``: the wire bytes of one request and what a correct parser
must make of them (method, target, version, fields, framing, keep-alive).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# request-target characters: VCHAR without '?' and '#' (added on purpose below)
PCHAR = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "?#")
FIELD_VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Bytes that matter to an HTTP or JSON parser, for mutations.
INTERESTING = (
    b"\r\n\t :;=,\"\\/?#{}[]0123456789aAfFxX-+.eE"
    + b"\x00\x01\x0b\x0c\x1f\x7f\x80\xbf\xc0\xc3\xe2\xed\xf0\xf4\xff"
)
SPECIAL_FIELDS = ("Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Content-Type")

tokens = st.text(TCHAR, min_size=1, max_size=12)


def _field_value() -> st.SearchStrategy[bytes]:
    """field-value: field-vchar with SP/HTAB inside (never first or last), obs-text included."""
    inner = st.lists(st.sampled_from([bytes([b]) for b in FIELD_VCHAR] + [b" ", b"\t"]), max_size=30)
    return st.builds(
        lambda first, mid, last: first + b"".join(mid) + last if mid else first,
        st.sampled_from([bytes([b]) for b in FIELD_VCHAR]),
        inner,
        st.sampled_from([bytes([b]) for b in FIELD_VCHAR]),
    ) | st.just(b"")


@dataclass
class GenRequest:
    wire: bytes
    method: str
    target: str
    version: int
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    body: bytes = b""  # decoded body (the framing is in ``wire``)
    head_len: int = 0
    extra: dict[str, object] = field(default_factory=dict)


@st.composite
def chunked_body(draw: st.DrawFn, data: bytes, *, trailers: bool = True, lf_only: bool = True) -> bytes:
    """``data`` in chunked framing (RFC 9112 §7.1): random chunk sizes, hex case and leading
    zeros, chunk extensions with BWS, token and quoted-string values, trailer fields, and
    (``lf_only``) bare LF line endings, which the gateway accepts."""
    eol = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]) if lf_only else st.just(b"\r\n")
    ows = st.sampled_from([b"", b"", b" ", b"\t", b" \t "])

    def ext() -> st.SearchStrategy[bytes]:
        quoted = st.lists(
            st.sampled_from([b"a", b" ", b"\t", b"\\\"", b"\\\\", b"\x80", b"=", b";", b"\\x"]),
            max_size=6,
        ).map(lambda parts: b'"' + b"".join(parts) + b'"')
        value = tokens.map(str.encode) | quoted
        one = st.builds(
            lambda b1, name, v, b2, b3, b4: b1
            + b";"
            + b2
            + name.encode()
            + (b3 + b"=" + b4 + v if v is not None else b""),
            ows,
            tokens,
            st.none() | value,
            ows,
            ows,
            ows,
        )
        return st.lists(one, max_size=3).map(b"".join)

    def size_text(n: int) -> bytes:
        digits = draw(st.sampled_from(["%x", "%X"])) % n
        zeros = draw(st.integers(0, max(0, min(3, 16 - len(digits)))))
        return b"0" * zeros + digits.encode()

    out = bytearray()
    pos = 0
    while pos < len(data):
        n = draw(st.integers(1, max(1, len(data) - pos)))
        piece = data[pos : pos + n]
        pos += n
        out += size_text(len(piece)) + draw(ext()) + draw(eol) + piece + draw(eol)
    out += size_text(0) if draw(st.booleans()) else b"0"
    out += draw(ext()) + draw(eol)
    if trailers:
        for _ in range(draw(st.integers(0, 2))):
            name = draw(tokens).encode()
            out += name + b":" + draw(ows) + draw(_field_value()) + draw(ows) + draw(eol)
    out += draw(eol)
    return bytes(out)


@st.composite
def requests(
    draw: st.DrawFn,
    *,
    paths: st.SearchStrategy[str] | None = None,
    bodies: bool = True,
    lf_only: bool = True,
    versions: tuple[int, ...] = (11, 11, 11, 10),
    close: st.SearchStrategy[bool] | None = None,
    body_bytes: st.SearchStrategy[bytes] | None = None,
) -> GenRequest:
    """One well-formed request and its expected parse."""
    version = draw(st.sampled_from(versions))
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) | tokens)
    if paths is not None:
        target = draw(paths)
    else:
        path = "/" + "/".join(draw(st.lists(st.text(PCHAR, max_size=8), max_size=4)))
        query = draw(st.none() | st.text(PCHAR + "?", max_size=10))
        target = path if query is None else path + "?" + query
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"])) if lf_only else b"\r\n"
    lines: list[bytes] = []
    fields: list[tuple[str, str]] = []

    def add(name: str, value: bytes) -> None:
        before = draw(st.sampled_from([b"", b" ", b" ", b"\t", b"  "]))
        after = draw(st.sampled_from([b"", b"", b" ", b"\t"]))
        lines.append(name.encode() + b":" + before + value + after)
        fields.append((name.lower(), value.decode("latin-1")))

    others = draw(
        st.lists(
            st.tuples(tokens.filter(lambda n: n.lower() not in {s.lower() for s in SPECIAL_FIELDS}), _field_value()),
            max_size=5,
        )
    )
    body_st = body_bytes if body_bytes is not None else st.binary(max_size=64)
    body = draw(body_st) if bodies and draw(st.booleans()) else b""
    chunked = bool(body) and version == 11 and draw(st.booleans())
    with_cl = bool(body) and not chunked or (not body and draw(st.integers(0, 4)) == 0)
    keep_alive = version == 11
    conn_value = None
    if close is not None and draw(close):
        conn_value = b"close"
    elif draw(st.integers(0, 3)) == 0:
        conn_value = draw(st.sampled_from([b"close", b"keep-alive", b"Keep-Alive", b"upgrade, close", b"te"]))
    expect = bool(body) and version == 11 and draw(st.integers(0, 3)) == 0
    specials: list[tuple[str, bytes]] = []
    if version == 11 or draw(st.booleans()):
        specials.append((draw(st.sampled_from(["Host", "host", "HOST"])), draw(tokens).encode()))
    if with_cl:
        specials.append(("Content-Length", b"%d" % len(body)))
    if chunked:
        specials.append(("Transfer-Encoding", draw(st.sampled_from([b"chunked", b"Chunked", b", chunked"]))))
    if conn_value is not None:
        specials.append(("Connection", conn_value))
        tokens_ = [t.strip().lower() for t in conn_value.decode().split(",")]
        keep_alive = "close" not in tokens_ and (version == 11 or "keep-alive" in tokens_)
    if expect:
        specials.append(("Expect", b"100-continue"))
    if draw(st.booleans()):
        specials.append(("Content-Type", b"application/json"))
    merged = [(n, v) for n, v in others] + specials
    order = draw(st.permutations(range(len(merged))))
    for i in order:
        name, value = merged[i]
        add(name, value)
    leading = draw(st.sampled_from([b"", b"", b"", b"\r\n", b"\n", b"\r\n\r\n"]))
    vtext = b"HTTP/1.1" if version == 11 else b"HTTP/1.0"
    head = leading + method.encode() + b" " + target.encode() + b" " + vtext + eol
    head += b"".join(line + eol for line in lines) + eol
    framed = draw(chunked_body(body, lf_only=lf_only)) if chunked else body
    return GenRequest(
        wire=head + framed,
        method=method,
        target=target,
        version=version,
        headers=[(n, v.strip(" \t")) for n, v in fields],
        content_length=len(body) if with_cl else None,
        chunked=chunked,
        keep_alive=keep_alive,
        expect_continue=expect,
        body=body,
        head_len=len(head),
    )


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_ops: int = 4) -> bytes:
    """``data`` with a few byte-level changes: flips, inserts and deletes of bytes that matter
    to parsers, duplicated or dropped slices, truncation."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.integers(0, 6))
        i = draw(st.integers(0, len(b)))
        if op == 0 and i < len(b):
            b[i] = draw(st.sampled_from(INTERESTING))
        elif op == 1 and i < len(b):
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 2:
            b[i:i] = draw(st.binary(min_size=1, max_size=3) | st.sampled_from([bytes([c]) for c in INTERESTING]))
        elif op == 3 and i < len(b):
            j = draw(st.integers(i, min(len(b), i + 8)))
            del b[i:j]
        elif op == 4:
            j = draw(st.integers(0, len(b)))
            lo, hi = min(i, j), max(i, j)
            b[i:i] = b[lo:hi][:40]
        elif op == 5:
            del b[i:]
        else:
            b[i:i] = draw(st.sampled_from([b"\r\n", b"\n\n", b"\r\n\r\n", b"\r", b"0\r\n\r\n", b"ffffffffffffffff"]))
    return bytes(b)


@st.composite
def splits(draw: st.DrawFn, data: bytes, max_pieces: int = 12) -> list[bytes]:
    """``data`` cut into pieces at random points (each piece non-empty)."""
    if len(data) < 2:
        return [data] if data else []
    cuts = draw(st.lists(st.integers(1, len(data) - 1), max_size=max_pieces, unique=True))
    cuts.sort()
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def examples(ci: int) -> settings:
    """Examples for one target in the short run of ``make test`` (the ``ci`` profile: cheap
    targets get more, costly ones fewer); under the ``fuzz`` profile the profile decides."""
    if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "fuzz":
        return settings()
    return settings(max_examples=ci)
