"""Content codings (gateway.http.coding): the decoder on its own, then through HttpProtocol with
a mock transport (tests/support/mock_transport.py), as a client observes it: what the body
consumer receives, when reading pauses, what the response says and how it is framed.

The compressed bodies are made here with the reference libraries (zlib, zstd), written as
clients write them: one-shot, or flushed after each record (Z_SYNC_FLUSH, zstd FLUSH_BLOCK).
"""

from __future__ import annotations

import itertools
import json
import random
import zlib
from collections.abc import Callable, Iterator

import pytest
from support.bombs import MIB, gzip_bomb, zstd_bomb
from support.mock_transport import CONSUMER_REASON, FakeLoop, Harness, body_digest, patched_time

from gateway import errors
from gateway.http import coding, protocol
from gateway.http.coding import (
    OUT_BUDGET,
    OUT_STEP,
    BodyDecoder,
    BodyEncoder,
    UnsupportedContentEncoding,
    request_codings,
    response_coding,
    zstd,
)
from gateway.http.states import ConnState

pytestmark = pytest.mark.timeout(60)

RECORDS = [
    json.dumps({"key": {"type": "STRING", "data": f"sensor-{i % 7}"},
                "value": {"type": "JSON", "data": {"seq": i, "temp": 20 + i % 5, "ok": True}}},
               separators=(",", ":")).encode()
    for i in range(40)
]
PLAIN = b"\n".join(RECORDS) + b"\n"


def gzip_(data: bytes) -> bytes:
    return zlib.compress(data, 6, wbits=31)


def zlib_(data: bytes) -> bytes:
    return zlib.compress(data, 6)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zstd_(data: bytes) -> bytes:
    return zstd.compress(data)


# (name, the coding's name on the wire, compress)
CODINGS: list[tuple[str, str, Callable[[bytes], bytes]]] = [
    ("gzip", "gzip", gzip_),
    ("deflate-zlib", "deflate", zlib_),
    ("deflate-raw", "deflate", raw_deflate),
    ("zstd", "zstd", zstd_),
]
IDS = [c[0] for c in CODINGS]


def flushed_pieces(coding: str, records: list[bytes]) -> list[bytes]:
    """The compressed bytes a client writes after each record, flushed (a flush point each)."""
    out = []
    if coding == "zstd":
        z = zstd.ZstdCompressor()
        for r in records:
            out.append(z.compress(r, zstd.ZstdCompressor.FLUSH_BLOCK))
        out.append(z.flush(zstd.ZstdCompressor.FLUSH_FRAME))
    else:
        c = zlib.compressobj(6, zlib.DEFLATED, 31 if coding == "gzip" else 15)
        for r in records:
            out.append(c.compress(r) + c.flush(zlib.Z_SYNC_FLUSH))
        out.append(c.flush(zlib.Z_FINISH))
    return out


class Sink:
    """A body consumer as the decoder sees it: takes bytes while ``accepting``."""

    def __init__(self, limit: int | None = None) -> None:
        self.body = bytearray()
        self.pieces: list[int] = []
        self.limit = limit  # stops accepting once it has this many bytes
        self.accepting = True

    def on_body(self, data: memoryview) -> None:
        assert self.accepting
        self.body += data
        self.pieces.append(len(data))
        if self.limit is not None and len(self.body) >= self.limit:
            self.accepting = False


def decode(codings: tuple[str, ...], pieces: list[bytes]) -> bytes:
    sink = Sink()
    d = BodyDecoder(codings, sink)
    for p in pieces:
        d.feed(memoryview(p))
        while d.busy:
            d.pump()
    d.finish()
    return bytes(sink.body)


# == Content-Encoding and Accept-Encoding ========================================================
def test_request_codings_read_the_header_as_a_list_in_order() -> None:
    assert request_codings(None) == ()
    assert request_codings("") == ()
    assert request_codings("identity") == ()
    assert request_codings("GZip") == ("gzip",)
    assert request_codings("x-gzip") == ("gzip",)
    assert request_codings("deflate , , zstd") == ("deflate", "zstd")
    assert request_codings("gzip, identity, zstd") == ("gzip", "zstd")


@pytest.mark.parametrize("value, named", [
    ("br", "'br'"), ("gzip, compress", "'compress'"), ("gzip;q=1", "'gzip;q=1'"),
    ("gzip, gzip, gzip, gzip", "4 codings"),
])
def test_an_unknown_coding_is_415_naming_it_with_accept_encoding(value: str, named: str) -> None:
    with pytest.raises(UnsupportedContentEncoding) as info:
        request_codings(value)
    exc = info.value
    assert (exc.status, exc.error_code) == (415, 415)
    assert named in exc.message
    assert exc.headers == b"Accept-Encoding: gzip, deflate, zstd\r\n"


@pytest.mark.parametrize("value, chosen", [
    (None, None),
    ("", None),
    ("identity", None),
    ("gzip", "gzip"),
    ("zstd", "zstd"),
    ("deflate, gzip, br, zstd", "zstd"),  # curl --compressed: a tie, our order decides
    ("gzip;q=0.5, zstd;q=0.8", "zstd"),
    ("gzip;q=0, zstd;q=0", None),
    ("*", "zstd"),
    ("*;q=0.3, gzip", "gzip"),
    ("*;q=0", None),
    ("gzip;q=0.2, identity", None),  # identity weighs more
    ("br, deflate", None),  # nothing offered is acceptable: the reports go uncoded
    ("x-gzip", "gzip"),
    ("gzip;q=2, zstd;q=0.1", "zstd"),  # a malformed weight says nothing
    ("GZIP ; Q=0.9", "gzip"),
])
def test_response_coding_honours_q_values(value: str | None, chosen: str | None) -> None:
    assert response_coding(value) == chosen


# == the decoder ================================================================================
@pytest.mark.parametrize("name, wire, compress", CODINGS, ids=IDS)
def test_a_body_split_at_every_byte_decodes_the_same(name, wire, compress) -> None:
    body = compress(PLAIN)
    for i in range(1, len(body)):
        assert decode((wire,), [body[:i], body[i:]]) == PLAIN, f"split at byte {i}"
    assert decode((wire,), [body[i : i + 1] for i in range(len(body))]) == PLAIN


@pytest.mark.parametrize("wire", ["gzip", "deflate", "zstd"])
def test_every_flush_point_gives_its_records_at_once(wire) -> None:
    """A client that flushes after each record gets that record decoded when its bytes arrive,
    before anything after it, with records large enough to need several output steps."""
    rnd = random.Random(5)
    records = [r + b" " * rnd.choice([0, 10, 70_000, 200_000]) for r in RECORDS[:12]]
    sink = Sink()
    d = BodyDecoder((wire,), sink)
    pieces = flushed_pieces(wire, records)
    for record, piece in zip(records, pieces, strict=False):
        before = len(sink.body)
        d.feed(memoryview(piece))
        while d.busy:
            d.pump()
        assert bytes(sink.body[before:]) == record
    d.feed(memoryview(pieces[-1]))
    d.finish()
    assert bytes(sink.body) == b"".join(records)
    assert max(sink.pieces) <= OUT_STEP


def test_codings_applied_one_over_the_other_are_undone_in_reverse() -> None:
    body = zstd_(gzip_(PLAIN))  # Content-Encoding: gzip, zstd
    assert decode(("gzip", "zstd"), [body[i : i + 5] for i in range(0, len(body), 5)]) == PLAIN


def test_gzip_members_and_zstd_frames_one_after_the_other() -> None:
    half = len(PLAIN) // 2
    members = gzip_(PLAIN[:half]) + gzip_(PLAIN[half:])
    assert decode(("gzip",), [members[i : i + 7] for i in range(0, len(members), 7)]) == PLAIN
    frames = zstd_(PLAIN[:half]) + zstd_(PLAIN[half:])
    assert decode(("zstd",), [frames]) == PLAIN


@pytest.mark.parametrize("wire", ["gzip", "deflate", "zstd"])
def test_a_body_of_no_bytes_is_empty(wire) -> None:
    assert decode((wire,), []) == b""


@pytest.mark.parametrize("name, wire, compress", CODINGS, ids=IDS)
def test_a_body_cut_inside_its_compressed_data_is_400_at_its_end(name, wire, compress) -> None:
    body = compress(PLAIN)
    for cut in (1, len(body) // 2, len(body) - 1):
        with pytest.raises(errors.BadRequest, match="it is truncated"):
            decode((wire,), [body[:cut]])


@pytest.mark.parametrize("name, wire, compress", CODINGS[:2] + CODINGS[3:], ids=IDS[:2] + IDS[3:])
def test_corrupt_data_is_400_naming_the_coding(name, wire, compress) -> None:
    body = bytearray(compress(PLAIN))
    body[len(body) // 3 : len(body) // 3 + 8] = b"\xff" * 8
    with pytest.raises(errors.BadRequest, match=f"not valid {wire} data"):
        decode((wire,), [bytes(body)])


def test_raw_deflate_that_breaks_its_format_is_400() -> None:
    # Raw deflate carries no checksum: only what breaks the format itself can be seen (here a
    # block of the reserved type 3); the records' own checks see the rest.
    with pytest.raises(errors.BadRequest, match="not valid deflate data"):
        decode(("deflate",), [b"\x07" + raw_deflate(PLAIN)])


@pytest.mark.parametrize("wire, garbage", [
    ("gzip", b"not gzip"), ("deflate", b"x"), ("zstd", b"\x00\x01\x02\x03junk"),
])
def test_data_after_the_end_is_400(wire, garbage) -> None:
    compress = {"gzip": gzip_, "deflate": zlib_, "zstd": zstd_}[wire]
    with pytest.raises(errors.BadRequest):
        decode((wire,), [compress(PLAIN) + garbage])


def test_a_zstd_window_over_8_mib_is_refused() -> None:
    # Streamed (no content size in the frame header): the frame keeps the window it asks for.
    z = zstd.ZstdCompressor(options={zstd.CompressionParameter.window_log: 24})
    body = z.compress(b"x" * 100, zstd.ZstdCompressor.FLUSH_BLOCK) + z.flush()
    with pytest.raises(errors.BadRequest, match="not valid zstd data"):
        decode(("zstd",), [body])


@pytest.mark.parametrize("codings", [("gzip",), ("gzip", "gzip"), ("zstd",)])
def test_a_bomb_costs_one_step_of_memory_at_a_time(codings) -> None:
    """A body of a few KB to 1 MB inflating to 1 GiB: each call hands out at most its budget,
    in steps of at most OUT_STEP, and nothing while the consumer does not accept; a consumer
    that stops at its limit (as the body limits do) stops the decoding there."""
    if codings[0] == "zstd":
        bomb = zstd_bomb(256 * MIB)
    else:
        bomb = gzip_bomb(1 << 30, layers=len(codings))
    sink = Sink()
    d = BodyDecoder(codings, sink)
    d.feed(memoryview(bomb[:65536]))  # one read of the connection
    assert OUT_STEP <= len(sink.body) <= OUT_BUDGET + OUT_STEP and d.busy
    assert max(sink.pieces) <= OUT_STEP
    sink.accepting = False
    before = len(sink.body)
    d.pump()
    assert len(sink.body) == before and d.busy  # held, not decoded ahead
    sink.accepting = True
    sink.limit = 8 * MIB
    while d.busy and sink.accepting:
        d.pump()
    assert 8 * MIB <= len(sink.body) < 8 * MIB + OUT_STEP and d.busy
    assert set(sink.body) == {ord(" ")}


# == the encoder ================================================================================
@pytest.mark.parametrize("coding_name", ["gzip", "zstd"])
def test_each_encoded_write_is_decodable_at_once(coding_name) -> None:
    enc = BodyEncoder(coding_name)
    assert enc.header == f"Content-Encoding: {coding_name}\r\n".encode()
    if coding_name == "gzip":
        d = zlib.decompressobj(31)
        unpack = d.decompress
    else:
        dz = zstd.ZstdDecompressor()
        unpack = dz.decompress
    whole = bytearray()
    for i in range(50):
        report = b'{"error_code":200,"offset":%d}\r\n' % i
        out = enc.write(report)
        whole += out
        assert unpack(out) == report  # nothing held back by the compressor
    whole += enc.end(b"last\r\n")
    plain = zlib.decompress(bytes(whole), 31) if coding_name == "gzip" else zstd.decompress(bytes(whole))
    assert plain.endswith(b"last\r\n") and plain.count(b"\r\n") == 51


# == through the connection =====================================================================
@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []
    loop = FakeLoop()
    monkeypatch.setattr(protocol, "time", patched_time(loop))

    def make_(**kw: object) -> Harness:
        h = Harness(loop=loop, **kw)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make_
    for h in made:
        assert h.transport.violations == [], h.transport.violations


def post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (path, len(body), extra, body)


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def post_chunked(path: bytes, framed: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n%s\r\n%s" % (path, extra, framed)


@pytest.mark.parametrize("name, wire, compress", CODINGS, ids=IDS)
def test_a_coded_request_split_at_every_byte_reaches_the_consumer_decoded(make, name, wire, compress):
    body = compress(PLAIN)
    ce = b"Content-Encoding: %s\r\n" % wire.encode()
    for req in (post(b"/stream", body, ce), post_chunked(b"/stream", chunked(body, 19), ce)):
        req += b"GET /r/after HTTP/1.1\r\nHost: t\r\n\r\n"
        for i in range(1, len(req), 3):
            h = make()
            h.send(req[:i], req[i:])
            c = h.consumers[0]
            assert c.body == PLAIN, f"{name}: split at byte {i}"
            assert [r.body for r in h.responses] == [body_digest(PLAIN), b"after"]


def test_reading_pauses_while_the_consumer_takes_nothing_and_nothing_is_lost(make):
    """The decoder stops with the consumer; the read buffer then fills and the socket stops
    (flow control through the connection's reasons); when the consumer accepts again, the
    rest follows, in order."""
    h = make()
    big = b"".join(RECORDS) * 2000  # 2.6 MB decoded
    body = gzip_(big)
    h.send(post_chunked(b"/hold", chunked(body, 4000), b"Content-Encoding: gzip\r\n")[:300])
    c = h.consumers[0]

    def stop_after_first(consumer):
        if len(consumer.body) >= OUT_STEP and consumer.accepting:
            consumer.stop_accepting()

    c.after_body = stop_after_first
    rest = post_chunked(b"/hold", chunked(body, 4000), b"Content-Encoding: gzip\r\n")[300:]
    h.send(rest)
    taken = len(c.body)
    assert OUT_STEP <= taken < 2 * OUT_STEP  # nothing more once it stopped accepting
    assert h.proto.paused_reasons & CONSUMER_REASON and not h.transport.reading
    assert h.unread > 0  # what the client sent beyond the buffer waits in its socket
    c.after_body = None
    c.accept_again()
    h.run()
    assert c.body == big and c.body_ends == 1
    c.finish()
    h.run()
    assert h.responses[0].complete


def test_a_decoding_consumer_that_always_accepts_lets_the_loop_run_between_budgets(make):
    """A small body that inflates to 64 MB: one callback decodes at most its budget, then the
    connection asks the loop to call it again (others are served in between)."""
    h = make()
    bomb = gzip_bomb(64 * MIB)
    h.send(post(b"/stream", bomb, b"Content-Encoding: gzip\r\n"), run=False)
    assert h.read_before_callbacks()  # one read, no callback of the loop yet
    consumer = h.consumers[0]
    assert OUT_BUDGET <= len(consumer.body) <= OUT_BUDGET + OUT_STEP
    assert h.proto.state is ConnState.BODY
    h.run()
    assert len(consumer.body) == 64 << 20 and consumer.body_ends == 1


@pytest.mark.parametrize("path, whole", [(b"/stream", False), (b"/whole", True)])
def test_corrupt_data_mid_body_ends_it_with_400(make, path, whole):
    h = make()
    body = bytearray(gzip_(PLAIN * 20))
    body[len(body) // 2 : len(body) // 2 + 16] = b"\xfe" * 16
    h.send(post_chunked(path, chunked(bytes(body), 64), b"Content-Encoding: gzip\r\n"))
    c = h.consumers[0]
    assert [e.status for e in c.body_errors] == [400]
    assert "not valid gzip data" in c.body_errors[0].message
    r = h.responses[0]
    if whole:
        assert r.status == 400 and r.closes
    else:
        assert r.status == 200 and r.chunks[-1] == b"error 400 at %d" % len(c.body)
    assert h.fin_sent


def test_a_content_length_body_that_ends_inside_its_gzip_data_is_400(make):
    h = make()
    body = gzip_(PLAIN)[:-5]
    h.send(post(b"/hold", body, b"Content-Encoding: gzip\r\n"))
    c = h.consumers[0]
    assert c.body == PLAIN[: len(c.body)] and [e.status for e in c.body_errors] == [400]
    assert "it is truncated" in c.body_errors[0].message


def test_the_client_half_closing_after_a_whole_coded_body_cuts_nothing(make):
    """The body was read whole before the client's FIN; its decoding was still going on."""
    h = make()
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = b"".join(c.compress(RECORDS[0] * 3000) for _ in range(40)) + c.flush()
    h.send(post(b"/stream", body, b"Content-Encoding: gzip\r\n"), run=False)
    h.send_eof(run=False)
    h.run()
    consumer = h.consumers[0]
    assert consumer.body_errors == [] and consumer.body_ends == 1
    assert len(consumer.body) == len(RECORDS[0]) * 3000 * 40


def test_an_unknown_coding_the_endpoint_let_through_is_415_from_the_connection(make):
    h = make()
    h.send(post(b"/stream", b"abc", b"Content-Encoding: br\r\n"))
    r = h.responses[0]
    assert r.status == 415 and r.header("accept-encoding") == "gzip, deflate, zstd" and r.closes
    assert h.consumers[0].lost == 1 and h.consumers[0].body == b""


@pytest.mark.parametrize("coding_name", ["gzip", "zstd"])
def test_a_stream_asked_to_compress_sends_each_write_decodable_at_once(make, coding_name):
    h = make()
    h.send(post_chunked(b"/hold", b"", b"Accept-Encoding: %s\r\n" % coding_name.encode()))
    c = h.consumers[0]
    head = h.responses[0]
    assert head.header("content-encoding") == coding_name
    assert head.header("vary") == "Accept-Encoding"
    d = zlib.decompressobj(31) if coding_name == "gzip" else zstd.ZstdDecompressor()
    for i in range(20):
        c.write(b"report %d\r\n" % i)
        chunk = h.responses[0].chunks[-1]
        assert d.decompress(chunk) == b"report %d\r\n" % i
    h.send(b"0\r\n\r\n")
    c.finish()
    h.run()
    r = h.responses[0]
    assert r.complete
    body = zlib.decompress(r.body, 31) if coding_name == "gzip" else zstd.decompress(r.body)
    assert body == b"".join(b"report %d\r\n" % i for i in range(20)) + body_digest(b"")


def test_a_short_compressed_stream_leaves_in_one_write_with_its_end(make):
    h = make()
    h.send(post(b"/hold", b"abc", b"Accept-Encoding: gzip\r\n"))
    c = h.consumers[0]
    before = len(h.transport.writes)
    c.write(b"r1")
    c.write(b"r2")
    c.finish()
    h.run()
    assert len(h.transport.writes) == before + 1
    r = h.responses[0]
    assert r.complete and zlib.decompress(r.body, 31) == b"r1r2" + body_digest(b"abc")


def test_an_uncompressed_stream_says_vary_and_no_content_encoding(make):
    h = make()
    h.send(post(b"/stream", b"abc", b"Accept-Encoding: br;q=1, identity;q=0.5\r\n"))
    r = h.responses[0]
    assert r.header("content-encoding") is None and r.header("vary") == "Accept-Encoding"
    assert r.body == body_digest(b"abc")


def test_whole_answers_are_not_compressed(make):
    h = make()
    h.send(post(b"/whole", gzip_(b"xyz"), b"Accept-Encoding: gzip\r\nContent-Encoding: gzip\r\n"))
    r = h.responses[0]
    assert r.status == 200 and r.header("content-encoding") is None
    assert r.body == body_digest(b"xyz")


def test_pipelined_coded_requests_each_get_their_own_decoder(make):
    h = make()
    reqs = b"".join(
        post(b"/stream", compress(PLAIN[:n]), b"Content-Encoding: %s\r\n" % wire.encode())
        for (_, wire, compress), n in zip(CODINGS, itertools.count(100, 50), strict=False)
    ) + post(b"/stream", PLAIN[:90])
    h.send(reqs)
    assert [bytes(c.body) for c in h.consumers] == [PLAIN[:n] for n in (100, 150, 200, 250, 90)]
    assert len(h.responses) == 5 and not h.fin_sent


def test_inflate_is_isal() -> None:
    """bench/inflate.py measured ISA-L against zlib; the product uses the winner."""
    assert coding.INFLATE.__name__ == "isal.isal_zlib"
