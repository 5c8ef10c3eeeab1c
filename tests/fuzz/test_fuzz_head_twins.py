"""The two request-head parsers side by side: the compiled ``gateway._speedups.parse_head``
(ext/httphead.pxi) and its reference, ``gateway.http.parser.python_parse_head``.

For any input, whole or cut anywhere, in a bytearray or in bytes, at any start in the buffer,
the compiled twin answers as the reference: the same head (every field) and end, the same
"incomplete", or the same exception class, status and message. Inputs: heads like clients send
(the grammar the compiled twin parses itself) with steps outside it, generated requests
(tests/support/fuzz.py) and their mutations, and arbitrary bytes.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st
from support.fuzz import GenRequest, examples, mutated, requests
from support.head_twins import compiled_parse_head, head_outcome

from gateway.http.parser import HttpLimits, python_parse_head

SMALL = HttpLimits(max_request_line=64, max_header_bytes=256, max_headers=6, max_chunk_line=40, max_trailer_bytes=60)
LIMITS = [HttpLimits(), SMALL]


def same_on_both_twins(data: bytes, limits: HttpLimits, cuts: list[int], pad: bytes = b"") -> tuple:
    """The compiled twin answers as the Python reference on ``data`` and on its prefixes at
    ``cuts``, in a bytearray (as the connection's buffer) and in bytes, and after ``pad``."""
    whole = head_outcome(python_parse_head, data, 0, limits)
    for k in sorted({*cuts, len(data)}):
        piece = data[:k]
        ref = whole if k == len(data) else head_outcome(python_parse_head, piece, 0, limits)
        assert head_outcome(compiled_parse_head, bytearray(piece), 0, limits) == ref, (k, piece)
        assert head_outcome(compiled_parse_head, piece, 0, limits) == ref, (k, piece)
    buf = bytearray(pad + data)
    ref = head_outcome(python_parse_head, buf, len(pad), limits)
    assert head_outcome(compiled_parse_head, buf, len(pad), limits) == ref
    return whole


# Field lines the compiled twin parses itself, and (ODD) ones it leaves to the reference.
GOOD_LINES = [
    b"Content-Length: 5", b"content-length:0", b"Content-Length: 123456789012345678", b"Content-Length: 05",
    b"Content-Length: 5 ", b"Transfer-Encoding: chunked", b"transfer-encoding: CHUNKED", b"Connection: close",
    b"Connection: Keep-Alive", b"Expect: 100-continue", b"Expect: 100-Continue", b"Content-Type: application/json",
    b"Content-Type:", b"User-Agent: curl/8.5.0", b"Accept: */*", b"accept-encoding: gzip",
    b"Authorization: Basic dTpw", b"X-" + b"n" * 62 + b": longest name", b"X-Tab:\ta\tb\t",
    b"X-Latin: caf\xe9 \x80\xff", b"x-empty:", b"X-Q: a:b?c",
]
ODD_LINES = [
    b"Host: other", b"Content-Length: 1234567890123456789", b"Content-Length: 5, 5", b"Content-Length: +5",
    b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked;x=1", b"Connection: upgrade", b"Expect: nope",
    b"X-" + b"n" * 63 + b": long name", b"X: \x00", b"X: \x7f", b"X: a\rb", b"X : v", b": v", b" folded", b"X",
    b"Bad(Name): v",
]


@st.composite
def fast_heads(draw: st.DrawFn) -> bytes:
    """Heads in and around the grammar the compiled twin parses itself: CRLF line endings,
    common methods, targets and framing fields, with now and then a step outside it."""
    def pick(good: list[bytes], odd: list[bytes]) -> bytes:
        return draw(st.sampled_from(odd if draw(st.integers(0, 11)) == 0 else good))

    method = pick([b"GET", b"POST", b"PUT", b"M-SEARCH", b"DELETE"], [b"G(T", b"", b"g\xe9t"])
    target = pick(
        [b"/", b"/v3/clusters/c1/topics/orders/records", b"/topics/t?x=1?y", b"/a?", b"/%7E/x~"],
        [b"*", b"http://h/p", b"x", b"", b"/caf\xe9", b"/a\tb", b"/a b"],
    )
    version = pick([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"], [b"HTTP/1.2", b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 "])
    lines = [pick(GOOD_LINES, ODD_LINES) for _ in range(draw(st.integers(0, 6)))]
    if draw(st.integers(0, 9)):
        lines.insert(draw(st.integers(0, len(lines))), b"Host: localhost:8082")
    eol = pick([b"\r\n"], [b"\n"])
    lead = pick([b""], [b"\r\n", b"\n\r\n", b"\r\n" * 5, b"\r"])
    return lead + method + b" " + target + b" " + version + b"\r\n" + b"".join(x + eol for x in lines) + b"\r\n"


@examples(400)
@given(st.data(), fast_heads(), st.sampled_from(LIMITS), st.binary(max_size=6))
@example(None, b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\nc\r\n\r\n", LIMITS[0], b"")
def test_twins_agree_on_heads_like_clients_send(
    data: st.DataObject | None, head: bytes, limits: HttpLimits, tail: bytes
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(head)), max_size=6)) if data is not None else []
    same_on_both_twins(head + tail, limits, cuts, pad=tail)


@examples(150)
@given(st.data(), requests(), st.sampled_from(LIMITS))
def test_twins_agree_on_generated_and_mutated_requests(
    data: st.DataObject, req: GenRequest, limits: HttpLimits
) -> None:
    wire = req.wire[: req.head_len + 8]
    if data.draw(st.booleans()):
        wire = data.draw(mutated(wire))
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    same_on_both_twins(wire, limits, cuts, pad=data.draw(st.binary(max_size=8)))


@examples(500)
@given(st.binary(max_size=200), st.sampled_from(LIMITS))
def test_twins_agree_on_arbitrary_bytes(data: bytes, limits: HttpLimits) -> None:
    same_on_both_twins(data, limits, list(range(0, len(data), 7)))
