"""Fuzzing the HTTP/1.1 request parser (gateway/http/parser.py): ``parse_head`` and
``ChunkedDecoder`` on generated requests, their mutations and arbitrary bytes, in any split.

Properties, for any input:
- the only exceptions are the parser's refusals (``PeerError``: a 4xx, or 501/505 where
  RFC 9112 says so), never a crash;
- a refusal is final: if some prefix of the bytes is refused, so is every longer input (a head
  or body split across reads is never refused for the split); a head parses the same however
  it was split and wherever in the buffer it sits, and a chunked body decodes (or is refused,
  with the same message) the same in any split;
- what is accepted is exactly what was sent: a generated request parses to the fields it was
  built from, a chunked body decodes to its data and ends at its last byte, and a mutated one
  decodes as an independent reference decoder (below, RFC 9112 §7.1 on the whole input) says.

Every parse_head test runs on both twins (tests/support/head_twins.py); test_fuzz_head_twins.py
compares them on the same inputs.
"""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.fuzz import GenRequest, chunked_body, examples, mutated, requests, splits
from support.head_twins import HEAD_TWINS, head_outcome, swapped

from gateway import errors
from gateway.http.chunked import ChunkedDecoder
from gateway.http.parser import HttpLimits, parse_head

SMALL = HttpLimits(max_request_line=64, max_header_bytes=256, max_headers=6, max_chunk_line=40, max_trailer_bytes=60)
LIMITS = [HttpLimits(), SMALL]


@pytest.fixture(scope="module", autouse=True, params=HEAD_TWINS)
def head_twin(request):
    yield from swapped(sys.modules[__name__], "parse_head", request.param)


def outcome(buf: bytes | bytearray, start: int = 0, limits: HttpLimits = LIMITS[0]) -> tuple:
    """parse_head (the twin of the run) as a comparable value (support.head_twins)."""
    return head_outcome(parse_head, buf, start, limits)


def check_incremental(data: bytes, limits: HttpLimits, cuts: list[int]) -> tuple:
    """Feed ``data`` as the protocol does (the same start, more bytes each time): a prefix that
    parses gives exactly the whole input's head; a prefix that is refused means the whole
    input is refused too. (Not always for the same reason: a head refused early for its
    size or field count may show a bad byte later, and the order of the checks on a complete
    head differs. Both answers are 4xx and the connection closes.)"""
    whole = outcome(data, 0, limits)
    for k in sorted(set(cuts)):
        got = outcome(data[:k], 0, limits)
        if got[0] == "head":
            assert got == whole, (k, got, whole)
        elif got[0] == "error":
            assert whole[0] == "error", (k, got, whole)
    return whole


# --- parse_head ----------------------------------------------------------------------------
@examples(120)
@given(requests(), st.binary(max_size=40), st.binary(max_size=20))
# A bare-LF head followed by CRLF (was refused with 400; see test_http_parser.py)
@example(
    GenRequest(b"GET / HTTP/1.1\nHost: h\n\n", "GET", "/", 11, [("host", "h")], None, False, True, False, head_len=24),
    b"\r\nGET / HTTP/1.1\r\n",
    b"",
)
def test_generated_requests_parse_to_what_was_sent(req: GenRequest, tail: bytes, before: bytes) -> None:
    data = req.wire
    got = outcome(data)
    assert got[0] == "head", (got, data)
    (_, method, target, path, query, version, headers, cl, chunked, keep, expect, _ctype, end) = got
    assert (method, target, version) == (req.method, req.target, req.version)
    assert (path, query) == tuple(req.target.partition("?")[::2])
    assert list(headers) == req.headers
    assert (cl, chunked, keep, expect) == (req.content_length, req.chunked, req.keep_alive, req.expect_continue)
    assert end == req.head_len
    # Bytes after the head (a body, the next request) are never looked at; bytes before
    # ``start`` (an earlier request) neither.
    assert outcome(data[:end] + tail) == got
    assert outcome(before + data[:end] + tail, len(before)) == got
    # Every proper prefix is incomplete.
    for k in range(end):
        assert outcome(data[:k]) == ("incomplete",), k


@examples(150)
@given(st.data(), requests(), st.sampled_from(LIMITS))
def test_mutated_heads_are_refused_cleanly_in_any_split(
    data: st.DataObject, req: GenRequest, limits: HttpLimits
) -> None:
    wire = data.draw(mutated(req.wire[: req.head_len + 8]))
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    whole = check_incremental(wire, limits, cuts)
    pad = data.draw(st.binary(max_size=8))
    assert outcome(pad + wire, len(pad), limits) == whole


@examples(1000)
@given(st.binary(max_size=300), st.sampled_from(LIMITS))
@example(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", LIMITS[0])
@example(b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", LIMITS[0])
@example(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", LIMITS[0])
@example(b"GET / HTTP/2.0\r\n\r\n", LIMITS[0])
def test_arbitrary_bytes_as_a_head(data: bytes, limits: HttpLimits) -> None:
    check_incremental(data, limits, list(range(len(data))))


@examples(300)
@given(st.lists(st.sampled_from([
    b"GET", b"POST", b" ", b"  ", b"/", b"/x?y", b"*", b"http://h/p", b"HTTP/1.1", b"HTTP/1.0",
    b"HTTP/2.0", b"HTTP/1.10", b"\r\n", b"\n", b"\r", b"Host: h", b"host:h", b"Content-Length: 5",
    b"Content-Length: 5, 5", b"Content-Length: 5,6", b"Content-Length: +5", b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: chunked;q=1", b"Transfer-Encoding: ,", b"Connection: close", b"Expect: 100-continue",
    b"Expect: 200-ok", b"X:", b": v", b"X : v", b" folded", b"\tfolded", b"X: \x00", b"X: \x7f",
    b"X: \x80\xff", b"\x00", b"\xff",
]), max_size=30), st.sampled_from(LIMITS))
def test_grammar_pieces_in_any_order(pieces: list[bytes], limits: HttpLimits) -> None:
    """Request-line and field pieces shuffled together: deep into the parser's branches."""
    data = b"".join(pieces) + b"\r\n\r\n"
    check_incremental(data, limits, list(range(0, len(data), 3)))


# --- ChunkedDecoder ------------------------------------------------------------------------
def decode(pieces: list[bytes], limits: HttpLimits = LIMITS[0], reuse: bool = False) -> tuple:
    """Feed the pieces as the protocol does (each appended to a buffer, consumed bytes dropped;
    ``reuse``: in a bytearray overwritten after each feed). Answers (data, done, end offset in
    the input or None, error or None)."""
    d = ChunkedDecoder(limits)
    out = bytearray()
    buf = bytearray()
    consumed = 0  # input bytes dropped from the front of buf
    try:
        for piece in pieces:
            buf += piece
            pos = 0
            while pos < len(buf) and not d.done:
                new, ds, de = d.feed(buf, pos, len(buf))
                assert pos <= new <= len(buf) and ds <= de
                if de > ds:
                    assert pos <= ds and new == de  # data windows are in place, never copied
                    out += buf[ds:de]
                elif not d.done:
                    assert new == len(buf)  # everything else went into the decoder's state
                pos = new
            if d.done:
                return bytes(out), True, consumed + pos, None
            if reuse:
                buf[:] = b"\xaa" * len(buf)  # a view kept past feed() would see this
            consumed += len(buf)
            buf.clear()
    except errors.PeerError as exc:
        assert exc.status in (400, 431), exc
        return bytes(out), False, None, (type(exc).__name__, exc.message)
    assert d.bytes_received == len(out)
    return bytes(out), False, None, None


# An independent decoder for the differential test: RFC 9112 §7.1 on the whole input with
# regular expressions, with the gateway's documented leniencies (a bare LF ends a line; BWS
# before ';'; at most 16 hex digits). Limits are left to the decoder's own tests: the
# differential runs with limits no input here reaches.
_HEX = rb"[0-9A-Fa-f]{1,16}"
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# BWS only before a ';' (and, as the gateway allows, after an extension): "1\t" alone is no
# chunk-size line.
_EXT = rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?[ \t]*)*"
_SIZE_LINE = re.compile(rb"(" + _HEX + rb")" + _EXT + rb"\r?\n")
_TRAILER_LINE = re.compile(_TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r?\n")
_END = re.compile(rb"\r?\n")
BIG = HttpLimits(max_chunk_line=1 << 20, max_trailer_bytes=1 << 20)


def reference_decode(wire: bytes) -> tuple[str, bytes, int]:
    """("ok", data, end) | ("error", data so far, 0) | ("incomplete", data so far, 0).
    A line is judged once its LF is there (a line cut short is incomplete)."""
    pos = 0
    out = bytearray()
    while True:
        if wire.find(b"\n", pos) < 0:
            return ("incomplete", bytes(out), 0)
        m = _SIZE_LINE.match(wire, pos)
        if m is None:
            return ("error", bytes(out), 0)
        size = int(m[1], 16)
        pos = m.end()
        if size == 0:
            break
        if len(wire) - pos < size:
            out += wire[pos:]
            return ("incomplete", bytes(out), 0)
        out += wire[pos : pos + size]
        pos += size
        e = _END.match(wire, pos)
        if e is None:
            return ("incomplete" if wire[pos:] in (b"", b"\r") else "error", bytes(out), 0)
        pos = e.end()
    while True:
        if wire.find(b"\n", pos) < 0:
            return ("incomplete", bytes(out), 0)
        e = _END.match(wire, pos)
        if e is not None:
            return ("ok", bytes(out), e.end())
        t = _TRAILER_LINE.match(wire, pos)
        if t is None:
            return ("error", bytes(out), 0)
        pos = t.end()


@examples(100)
@given(st.data(), st.binary(max_size=200), st.booleans())
def test_generated_chunked_bodies_decode_to_their_data(data: st.DataObject, body: bytes, reuse: bool) -> None:
    wire = data.draw(chunked_body(body))
    tail = data.draw(st.binary(max_size=20))
    pieces = data.draw(splits(wire + tail, max_pieces=30))
    got, done, end, error = decode(pieces, reuse=reuse)
    assert (got, done, end, error) == (body, True, len(wire), None)
    assert reference_decode(wire + tail) == ("ok", body, len(wire))


@examples(120)
@given(st.data(), st.binary(max_size=100), st.sampled_from([LIMITS[0], SMALL, BIG]))
def test_mutated_chunked_bodies_same_outcome_in_any_split(
    data: st.DataObject, body: bytes, limits: HttpLimits
) -> None:
    wire = data.draw(mutated(data.draw(chunked_body(body))))
    whole = decode([wire], limits)
    for _ in range(3):
        pieces = data.draw(splits(wire, max_pieces=25))
        assert decode(pieces, limits, reuse=True) == whole, pieces
    if limits is BIG:
        ref, ref_data, ref_end = reference_decode(wire)
        got, done, end, error = whole
        if done:
            assert (ref, ref_data, ref_end) == ("ok", got, end), (wire, whole)
        elif error is not None:
            assert ref == "error", (wire, whole)
        else:
            assert (ref, ref_data) == ("incomplete", got), (wire, whole)


@examples(1000)
@given(st.binary(max_size=200), st.sampled_from(LIMITS))
@example(b"0\r\n\r\n", LIMITS[0])
@example(b"ffffffffffffffff\r\n", LIMITS[0])
@example(b"1;a=\"\\\r\n", LIMITS[0])
@example(b"01\t\n\x00\r\n0\r\n\r\n", LIMITS[0])
def test_arbitrary_bytes_as_a_chunked_body(wire: bytes, limits: HttpLimits) -> None:
    whole = decode([wire], limits)
    assert decode([wire[i : i + 1] for i in range(len(wire))], limits, reuse=True) == whole
