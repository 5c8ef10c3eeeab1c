"""HttpProtocol through a mock transport: no sockets, no Kafka (tests/support/mock_transport.py).

Every test asserts what a client would observe: the bytes written, whether and how the
connection ends (FIN after the last byte, close, abort), and whether the server is reading.
Every harness is checked at teardown for the flow-control invariants (reasons as a bitmask):
pause/resume calls on the transport alternate, none comes after connection_lost, no write
after close(); and (uvloop's behaviour) a write after write_eof() raises at once.
Every test runs on both request-head parsers, the compiled one and the Python reference
(tests/support/head_twins.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.head_twins import HEAD_TWINS, swapped
from support.mock_transport import (
    CONSUMER_REASON,
    CONSUMER_REASON_2,
    FakeConsumer,
    FakeLoop,
    Harness,
    body_digest,
    patched_time,
    read_responses,
)

from gateway import errors
from gateway._speedups import AccessLines
from gateway.errors import GatewayError
from gateway.http import protocol, reqlog, writer
from gateway.http.flow import PAUSE_BUFFER, PAUSE_WRITE
from gateway.http.parser import HttpLimits, RequestHead
from gateway.http.protocol import LINGER_TIMEOUT, HttpProtocol
from gateway.http.readbuf import MIN_READ_SPACE, READ_BUFFER_INITIAL, READ_BUFFER_MAX, ReadBuffer
from gateway.http.states import ConnState

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module", autouse=True, params=HEAD_TWINS)
def head_twin(request):
    yield from swapped(protocol, "parse_head", request.param)

SEEDS = range(12)


# -- requests ---------------------------------------------------------------------------------
def get(path: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"GET %s HTTP/%s\r\nHost: t\r\n%s\r\n" % (path, version, extra)


def post(path: bytes, body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST %s HTTP/%s\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path,
        version,
        len(body),
        extra,
        body,
    )


def chunked(body: bytes, sizes: Iterator[int] | None = None, *, fancy: bool = False) -> bytes:
    """Chunked framing of ``body``; ``fancy`` adds extensions, upper-case hex and a trailer."""
    out = bytearray()
    pos = 0
    sizes = sizes or itertools.repeat(7)
    while pos < len(body):
        n = max(1, next(sizes))
        piece = body[pos : pos + n]
        pos += len(piece)
        size = b"%X" % len(piece) if fancy else b"%x" % len(piece)
        out += size + (b';ext="v"' if fancy else b"") + b"\r\n" + piece + b"\r\n"
    out += b"0\r\n" + (b"X-Trailer: yes\r\n" if fancy else b"") + b"\r\n"
    return bytes(out)


def post_chunked(path: bytes, framed: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n%s\r\n%s" % (
        path,
        extra,
        framed,
    )


def random_body(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def random_splits(rng: random.Random, data: bytes, pieces: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(pieces, len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def make(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Harness]]:
    """``make(**kw)`` builds a Harness whose clock is also the protocol's time.monotonic."""
    made: list[Harness] = []
    loop = FakeLoop()
    monkeypatch.setattr(protocol, "time", patched_time(loop))

    def make_(**kw: object) -> Harness:
        # Harnesses share the clock; each has its own connection.
        h = Harness(loop=loop, **kw)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make_
    for h in made:
        check_invariants(h)


def check_invariants(h: Harness) -> None:
    """The mock notes each breach as it happens (two pauses or two resumes in a row, counting
    from a reading transport; any call after connection_lost; a write after close())."""
    assert h.transport.violations == [], h.transport.violations


def assert_reading_matches_mask(h: Harness, where: str = "") -> None:
    """Outside of closing, the transport reads exactly when no reason to pause holds."""
    t = h.transport
    if t.closing or t.eof_written or t.lost:
        return
    assert t.reading == (h.proto.paused_reasons == 0), (
        f"{where}: transport reading={t.reading} but reasons={h.proto.paused_reasons:#x}"
    )


def reference_output(make: Callable[..., Harness], data: bytes, **kw: object) -> bytes:
    h = make(**kw)
    h.send(data)
    return bytes(h.transport.written)


# == 1. pipelining ============================================================================
def test_many_pipelined_requests_in_one_read_are_answered_in_order(make):
    h = make()
    h.send(b"".join(get(b"/r/%d" % i) for i in range(200)))
    rs = h.responses
    assert [r.body for r in rs] == [b"%d" % i for i in range(200)]
    assert all(r.status == 200 and r.complete and not r.closes for r in rs)
    assert not h.fin_sent and h.transport.reading
    assert h.proto.state is ConnState.HEAD and h.proto.requests == 200


MIXED_PIPELINE = (
    get(b"/r/first")
    + post(b"/stream", b'{"a":1}{"b":2}')
    + post_chunked(b"/stream", chunked(b'{"c":3}' * 5, iter([1, 2, 3, 30]), fancy=True))
    + b"\r\n"  # a stray CRLF between requests is tolerated (RFC 9112 §2.2)
    + post(b"/stream", b"", b"Expect: 100-continue\r\n")
    + get(b"/r/last")
)


def _expected_mixed(rs: list) -> None:
    assert [r.status for r in rs] == [200, 200, 200, 200, 200]
    assert rs[0].body == b"first"
    assert rs[1].body == body_digest(b'{"a":1}{"b":2}')
    assert rs[2].body == body_digest(b'{"c":3}' * 5)
    assert rs[3].body == body_digest(b"")
    assert rs[4].body == b"last"
    assert all(r.complete for r in rs)


def test_mixed_pipeline_in_one_read(make):
    h = make()
    h.send(MIXED_PIPELINE)
    _expected_mixed(h.responses)
    assert not h.fin_sent and h.proto.state is ConnState.HEAD


def test_pipeline_split_at_every_byte_position_gives_the_same_answers(make):
    want = reference_output(make, MIXED_PIPELINE)
    _expected_mixed(read_responses(want))
    for i in range(1, len(MIXED_PIPELINE)):
        h = make()
        h.send(MIXED_PIPELINE[:i], MIXED_PIPELINE[i:])
        assert bytes(h.transport.written) == want, f"split at byte {i}"
        assert not h.fin_sent, f"split at byte {i}"


def test_pipeline_fed_byte_by_byte_gives_the_same_answers(make):
    want = reference_output(make, MIXED_PIPELINE)
    h = make()
    h.send(*(MIXED_PIPELINE[i : i + 1] for i in range(len(MIXED_PIPELINE))))
    assert bytes(h.transport.written) == want
    assert h.reads == [1] * len(MIXED_PIPELINE)


@pytest.mark.parametrize("framing", ["length", "chunked", "chunked-fancy"])
def test_body_split_at_every_position_arrives_intact(make, framing):
    body = bytes(range(256)) + b"\r\n0\r\n\r\n" + bytes(range(255, -1, -1))  # framing look-alikes
    if framing == "length":
        req = post(b"/stream", body)
    else:
        req = post_chunked(b"/stream", chunked(body, iter([1, 16, 255, 3, 100, 500]),
                                                fancy=framing == "chunked-fancy"))
    req += get(b"/r/after")
    for i in range(1, len(req)):
        h = make()
        h.send(req[:i], req[i:])
        c = h.consumers[0]
        assert c.body == body, f"{framing}: split at byte {i}"
        assert c.body_ends == 1, f"{framing}: split at byte {i}"
        rs = h.responses
        assert [r.body for r in rs] == [body_digest(body), b"after"], f"split at byte {i}"


@pytest.mark.parametrize("seed", SEEDS)
def test_bodies_in_random_splits_arrive_intact(make, seed):
    rng = random.Random(seed)
    bodies = [random_body(rng, rng.randrange(0, 3000)) for _ in range(4)]
    data = bytearray()
    for i, body in enumerate(bodies):
        if i % 2:
            sizes = iter(lambda: rng.randrange(1, 400), None)
            data += post_chunked(b"/stream", chunked(body, sizes, fancy=rng.random() < 0.5))
        else:
            data += post(b"/stream", body)
    data += get(b"/r/end")
    h = make()
    h.send(*random_splits(rng, bytes(data), rng.randrange(1, 200)))
    assert [bytes(c.body) for c in h.consumers] == bodies, f"seed={seed}"
    assert [r.body for r in h.responses] == [*map(body_digest, bodies), b"end"], f"seed={seed}"
    assert all(c.body_ends == 1 for c in h.consumers), f"seed={seed}"


# == 2. flow control ==========================================================================
REASONS = {
    "write": (lambda h: h.proto.pause_writing(), lambda h: h.proto.resume_writing()),
    "consumer": (
        lambda h: h.consumers[0].stop_accepting(CONSUMER_REASON),
        lambda h: h.consumers[0].accept_again(CONSUMER_REASON),
    ),
    "consumer2": (
        lambda h: h.consumers[0].stop_accepting(CONSUMER_REASON_2),
        lambda h: h.consumers[0].accept_again(CONSUMER_REASON_2),
    ),
}


@pytest.mark.parametrize("pause_order", list(itertools.permutations(REASONS)))
@pytest.mark.parametrize("resume_order", list(itertools.permutations(REASONS)))
def test_reading_pauses_at_first_reason_and_resumes_only_when_the_last_clears(
    make, pause_order, resume_order
):
    body = b"x" * 5000
    h = make()
    req = post(b"/stream", body)
    h.send(req[: len(req) - len(body) + 100])
    c = h.consumers[0]
    assert h.proto.state is ConnState.BODY and bytes(c.body) == body[:100]
    for i, name in enumerate(pause_order):
        REASONS[name][0](h)
        h.run()
        assert not h.transport.reading, f"after pausing {pause_order[: i + 1]}"
    assert h.transport.reading_calls == ["pause"]
    h.send(body[100:])  # the client keeps sending: nothing may be read now
    assert len(c.body) == 100 and h.unread == len(body) - 100
    for i, name in enumerate(resume_order):
        REASONS[name][1](h)
        h.run()
        last = i == len(resume_order) - 1
        assert h.transport.reading == last, f"after resuming {resume_order[: i + 1]}"
        assert len(c.body) == (len(body) if last else 100)
    assert h.transport.reading_calls == ["pause", "resume"]
    assert bytes(c.body) == body
    assert h.responses[0].body == body_digest(body) and h.responses[0].complete


def _many_chunks(total: int, size: int = 1000) -> tuple[bytes, bytes]:
    body = bytes(i % 251 for i in range(total))
    return body, post_chunked(b"/stream", chunked(body, itertools.repeat(size)))


def test_full_read_buffer_pauses_and_is_parsed_when_the_consumer_accepts_again(make):
    """The regression: a full buffer (plus a consumer pause) once stopped the very parser that
    empties it, and the connection hung. One read fills the buffer; the consumer stops after
    its first chunk."""
    body, req = _many_chunks(1024 * 1024)
    h = make()

    def stop_once(c: FakeConsumer) -> None:
        c.after_body = None
        c.stop_accepting()

    h.send(req[:200], run=False)  # the head first: the stream exists before the flood
    h.run()
    c = h.consumers[0]
    h.send(req[200 : 600 * 1024])  # reads keep filling the buffer: it grows to the most
    c.after_body = stop_once
    h.send(req[600 * 1024 :])
    assert h.proto.info()["buffer"] == READ_BUFFER_MAX  # reads filled it: it grew to the most
    assert h.proto.paused_reasons & PAUSE_BUFFER, "a full buffer must be a reason to pause"
    assert READ_BUFFER_MAX - h.proto.info()["buffered"] < MIN_READ_SPACE
    assert h.proto.paused_reasons & CONSUMER_REASON
    assert not h.transport.reading and h.unread > 0
    delivered = len(c.body)
    c.accept_again()
    h.run()
    assert len(c.body) > delivered
    assert bytes(c.body) == body
    assert h.responses[0].body == body_digest(body) and h.responses[0].complete
    assert h.transport.reading and h.unread == 0 and h.proto.paused_reasons == 0
    assert h.transport.reading_calls == ["pause", "resume"]


def test_client_fills_the_buffer_while_a_response_is_pending_then_everything_is_served(make):
    """The body is done but the response is not: the client keeps pipelining requests until
    the read buffer has less than MIN_READ_SPACE free; reading pauses; when the response ends
    every buffered request is answered and reading resumes."""
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    assert c.body_ends == 1 and not c.response_ended
    gets = [get(b"/r/%d" % i) for i in range(20000)]
    stream = b"".join(gets)
    assert len(stream) > READ_BUFFER_MAX
    h.send(*(stream[i : i + 4096] for i in range(0, len(stream), 4096)))
    assert h.proto.paused_reasons == PAUSE_BUFFER
    assert h.proto.info()["buffer"] == READ_BUFFER_MAX
    assert READ_BUFFER_MAX - h.proto.info()["buffered"] < MIN_READ_SPACE
    assert not h.transport.reading and h.unread > 0
    # Nothing answered out of order (the stream's head waits for its first report: a
    # Content-Length request).
    assert h.responses == []
    assert h.min_buffer_seen > 0
    c.write(b"report")
    c.finish()
    h.run()
    rs = h.responses
    assert rs[0].body == b"report" + body_digest(b"abc")
    assert [r.body for r in rs[1:]] == [b"%d" % i for i in range(20000)]
    assert h.transport.reading and h.unread == 0 and h.proto.paused_reasons == 0
    assert h.transport.reading_calls == ["pause", "resume"]


@pytest.mark.parametrize(
    "order",
    [
        p
        for p in itertools.permutations(["pw", "rw", "pc", "rc"])
        if p.index("pw") < p.index("rw") and p.index("pc") < p.index("rc")
    ]
    + [
        p
        for p in itertools.permutations(["pw", "rw", "pc", "rc"])
        if p.index("rw") < p.index("pw") and p.index("rc") < p.index("pc")
    ],
)
def test_write_pauses_and_consumer_pauses_in_every_order(make, order):
    """pw/rw: pause_writing/resume_writing; pc/rc: the consumer stops/starts accepting. A
    resume of a reason that is not held must change nothing."""
    body, req = _many_chunks(600 * 1024, size=4000)
    h = make()
    h.send(req[:300])
    c = h.consumers[0]
    held = 0
    for step in order:
        if step == "pw":
            h.proto.pause_writing()
            held |= PAUSE_WRITE
        elif step == "rw":
            h.proto.resume_writing()
            held &= ~PAUSE_WRITE
        elif step == "pc":
            c.stop_accepting()
            held |= CONSUMER_REASON
        else:
            c.accept_again()
            held &= ~CONSUMER_REASON
        h.send(req[300:] if step == order[0] else b"")
        assert h.proto.paused_reasons & ~PAUSE_BUFFER == held, f"{order} at {step}"
        assert_reading_matches_mask(h, f"{order} at {step}")
        if held:
            assert not h.transport.reading
    if held & PAUSE_WRITE:
        h.proto.resume_writing()
    if held & CONSUMER_REASON:
        c.accept_again()
    h.run()
    assert bytes(c.body) == body, f"{order}"
    assert h.responses[0].body == body_digest(body)
    assert h.transport.reading and h.unread == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_random_pauses_never_deadlock_or_break_the_invariants(make, seed):
    """A consumer that stops accepting at random body slices, and a peer that stops and
    starts reading at random: every byte arrives, in order, and reading is paused exactly
    while some reason holds."""
    rng = random.Random(seed)
    body = random_body(rng, rng.randrange(300_000, 900_000))
    framed = chunked(body, iter(lambda: rng.randrange(1, 9000), None))
    req = post_chunked(b"/stream", framed) + get(b"/r/next")
    h = make()
    h.send(req[:100])
    c = h.consumers[0]

    def maybe_stop(c: FakeConsumer) -> None:
        if rng.random() < 0.3:
            c.stop_accepting(rng.choice([CONSUMER_REASON, CONSUMER_REASON_2]))

    c.after_body = maybe_stop
    h.send(*random_splits(rng, req[100:], 300), run=False)
    write_paused = False
    for _step in range(100_000):
        h.run()
        assert_reading_matches_mask(h, f"seed={seed} step={_step}")
        if c.response_ended and h.unread == 0 and not write_paused:
            break
        r = rng.random()
        if r < 0.25:
            if write_paused:
                h.proto.resume_writing()
            else:
                h.proto.pause_writing()
            write_paused = not write_paused
        elif not c.accepting:
            c.accept_again(rng.choice([CONSUMER_REASON, CONSUMER_REASON_2]))
        elif write_paused:
            h.proto.resume_writing()
            write_paused = False
        else:
            raise AssertionError(f"seed={seed}: nothing holds reading but it stalled")
    assert bytes(c.body) == body, f"seed={seed}"
    assert [r.body for r in h.responses] == [body_digest(body), b"next"], f"seed={seed}"
    assert h.transport.reading and h.proto.paused_reasons == 0, f"seed={seed}"


def test_never_resume_reading_after_connection_lost(make):
    h = make()
    h.send(post(b"/hold", b"x" * 10)[:-5])
    c = h.consumers[0]
    c.stop_accepting()
    h.proto.pause_writing()
    calls = list(h.transport.reading_calls)
    assert calls == ["pause"]
    h.transport._lose(ConnectionResetError())
    assert c.lost == 1 and h.proto.state is ConnState.CLOSED
    assert h.server.closed == [h.proto]
    # Every reason clears afterwards: none of it may touch the transport.
    h.proto.resume_writing()
    c.accept_again()
    h.proto.pause_reading(CONSUMER_REASON_2)
    h.proto.resume_reading(CONSUMER_REASON_2)
    c.write(b"late report")
    c.finish()
    h.proto.shutdown()
    h.proto.check_timeouts(h.loop.time() + 1000, 10, 60, 300)
    h.loop.advance(LINGER_TIMEOUT + 1)
    h.run()
    assert h.transport.reading_calls == calls
    assert b"late report" not in h.transport.written
    assert c.lost == 1


def test_consumer_resuming_inside_on_connection_lost_is_ignored(make):
    h = make()
    h.send(post(b"/hold", b"x" * 10)[:-5])
    c = h.consumers[0]
    c.stop_accepting()

    original = c.on_connection_lost

    def lost_then_resume() -> None:
        original()
        c.accept_again()

    c.on_connection_lost = lost_then_resume  # type: ignore[method-assign]
    h.transport.abort()
    h.run()
    assert h.transport.reading_calls == ["pause"] and c.lost == 1


def test_transport_write_buffer_limits_are_set(make):
    h = make()
    assert h.transport.limits == (protocol.WRITE_HIGH_WATER, protocol.WRITE_LOW_WATER)
    assert h.server.opened == [h.proto]


# == 3. stream lifecycle ======================================================================
@pytest.mark.parametrize("expect", [True, False])
@pytest.mark.parametrize("body", [b"", b"hello", None])
def test_100_continue_only_when_expected_and_a_body_is_announced(make, expect, body):
    extra = b"Expect: 100-continue\r\n" if expect else b""
    req = get(b"/hold", extra) if body is None else post(b"/hold", body, extra)
    h = make()
    head_only = req[: req.index(b"\r\n\r\n") + 4]
    h.send(head_only)  # a client that waits for 100 Continue sends only the head
    rs = h.responses
    # The 200 of a stream answering a Content-Length body goes with its first reports
    # (docs/api.md §1); the 100 goes at once.
    if expect and body:
        assert [r.status for r in rs] == [100]
        assert bytes(h.transport.written) == writer.CONTINUE_100
    elif body:
        assert rs == []
    else:
        assert [r.status for r in rs] == [200]
    h.send(req[len(head_only) :])
    c = h.consumers[0]
    assert bytes(c.body) == (body or b"") and c.body_ends == 1
    c.write(b"r1")
    c.finish()
    h.run()
    assert [r.status for r in h.responses] == ([100, 200] if expect and body else [200])
    assert h.responses[-1].complete and h.responses[-1].body.startswith(b"r1")


def test_no_100_continue_for_a_request_answered_without_reading_its_body(make):
    h = make()
    h.send(post(b"/r/no", b"x" * 100, b"Expect: 100-continue\r\n")[:-100])
    assert [r.status for r in h.responses] == [200]
    assert writer.CONTINUE_100 not in h.transport.written


def test_chunked_response_framing(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    c.write(b"abc")
    c.write(b"x" * 300)
    h.proto.end_body()
    out = bytes(h.transport.written)
    # A stream's answer varies with Accept-Encoding (it may be compressed): it says so.
    head = writer.chunked_head(200, extra_headers=b"Vary: Accept-Encoding\r\n")
    assert out == head + b"3\r\nabc\r\n" + b"12c\r\n" + b"x" * 300 + b"\r\n" + b"0\r\n\r\n"
    assert b"Transfer-Encoding: chunked\r\n" in head and b"Connection" not in head
    r = h.responses[0]
    assert r.chunks == [b"abc", b"x" * 300] and r.complete
    # Nothing after the last chunk, and the connection stays open for the next request.
    c.write(b"ignored")
    h.proto.end_body()
    assert bytes(h.transport.written) == out
    assert not h.fin_sent and h.proto.state is ConnState.HEAD


def test_keep_alive_after_a_stream_serves_the_next_pipelined_request(make):
    h = make()
    h.send(post(b"/hold", b"body") + get(b"/r/next") + get(b"/r/third"))
    c = h.consumers[0]
    assert h.responses == []  # (the stream's head waits for its first report)
    assert h.server.heads[-1].path == "/hold"  # the next request waits for this response
    c.write(b"r1")
    c.finish()
    h.run()
    assert [r.body for r in h.responses] == [b"r1" + body_digest(b"body"), b"next", b"third"]
    assert not h.fin_sent and h.transport.reading


def test_response_ending_inside_on_body_end_serves_the_next_request(make):
    h = make()
    h.send(post(b"/stream", b"a") + post(b"/stream", b"b") + get(b"/r/c"))
    assert [r.body for r in h.responses] == [body_digest(b"a"), body_digest(b"b"), b"c"]


def test_consumer_stop_reading_mid_body_then_lingering_close_until_eof(make):
    body = b"y" * 10_000
    h = make()
    h.send(post(b"/hold", body)[: -len(body)] + body[:1000])
    c = h.consumers[0]
    c.conn.stop_reading()  # a fatal record error: the rest of the body is never read
    assert not h.transport.reading
    c.write(b"error report")
    assert not h.fin_sent  # reports still go out before the response ends
    c.finish()
    h.run()
    r = h.responses[0]
    assert r.complete and r.body == b"error report" + body_digest(body[:1000])
    assert r.framing == "chunked"
    # Lingering close: FIN after the last byte; what the client still sends is read and thrown
    # away (closing now with unread bytes would reset the connection and lose the response).
    assert h.transport.eof_written and not h.transport.closing
    assert h.transport.reading
    written = bytes(h.transport.written)
    h.send(body[1000:] + get(b"/r/after"))
    assert h.unread == 0 and len(c.body) == 1000
    assert bytes(h.transport.written) == written  # discarded, never answered
    assert h.server.heads[-1].path == "/hold"
    h.send_eof()
    assert h.closed and not h.transport.aborted


@pytest.mark.parametrize("last_slice", [False, True])
def test_consumer_stopping_inside_on_body_gets_nothing_more(make, last_slice):
    """stop_reading from on_body (the session does this on a fatal record error): no more
    on_body and no on_body_end, even when that slice completed the body."""
    body = b"k" * 3000
    h = make()
    req = post(b"/hold", body)
    h.send(req[: len(req) - len(body)])
    c = h.consumers[0]
    c.after_body = lambda c: c.conn.stop_reading()
    h.send(body if last_slice else body[:1000], body[1000:] if not last_slice else b"")
    assert c.events == [("body", 3000 if last_slice else 1000)]
    c.finish()
    h.run()
    assert h.responses[0].complete and h.fin_sent
    h.send_eof()
    assert h.closed and c.events[-1] == ("lost", 0)


def test_lingering_close_ends_at_the_linger_timeout(make):
    h = make()
    h.send(post(b"/hold", b"z" * 100)[:-50])
    c = h.consumers[0]
    c.conn.stop_reading()
    c.finish()
    h.run()
    assert h.transport.eof_written and not h.closed
    h.loop.advance(LINGER_TIMEOUT - 0.1)
    assert not h.closed
    h.send(b"z" * 50)  # still discarded
    h.loop.advance(0.2)
    h.run()
    assert h.closed and not h.transport.aborted
    assert h.responses[0].complete


def test_response_ending_before_the_body_closes_after_it(make):
    h = make()
    h.send(post(b"/hold", b"q" * 100)[:-60])
    c = h.consumers[0]
    c.finish()  # e.g. every record so far failed and the consumer gave up
    h.run()
    assert h.responses[0].complete and h.transport.eof_written
    h.send(b"q" * 60 + get(b"/r/ignored"))
    assert len(h.responses) == 1
    h.send_eof()
    assert h.closed


@pytest.mark.parametrize(
    "req",
    [
        get(b"/r/bye", b"Connection: close\r\n"),
        get(b"/r/bye", version=b"1.0"),
        post(b"/stream", b"data", b"Connection: close\r\n"),
    ],
    ids=["connection-close", "http10", "stream-connection-close"],
)
def test_close_after_the_response_when_asked(make, req):
    h = make()
    h.send(req)
    r = h.responses[0]
    assert r.complete and r.closes
    assert h.closed and not h.transport.aborted


def test_connection_close_with_pipelined_bytes_behind_it_answers_once(make):
    h = make()
    h.send(get(b"/r/one", b"Connection: close\r\n") + get(b"/r/two"))
    assert [r.body for r in h.responses] == [b"one"]
    assert h.responses[0].closes and h.fin_sent
    h.send_eof()
    assert h.closed


def test_http10_keep_alive_is_honoured_and_said(make):
    """An HTTP/1.0 client keeps its connection only when the answer says so (RFC 9112 §9.3):
    ``Connection: keep-alive``. HTTP/1.1 answers never need it."""
    h = make()
    h.send(
        get(b"/r/a", b"Connection: keep-alive\r\n", b"1.0")
        + get(b"/r/b")
        + post(b"/whole", b"body", b"Connection: Keep-Alive\r\n", b"1.0")
        + get(b"/r/c", version=b"1.0")
    )
    rs = h.responses
    assert [r.body for r in rs] == [b"a", b"b", body_digest(b"body"), b"c"]
    assert [r.header("connection") for r in rs] == ["keep-alive", None, "keep-alive", "close"]
    assert h.closed


def test_http10_stream_is_close_delimited(make):
    h = make()
    h.send(post(b"/hold", b"abc", version=b"1.0"))
    c = h.consumers[0]
    c.write(b"r1\n")
    c.write(b"r2\n")
    c.finish()
    h.run()
    out = bytes(h.transport.written)
    head = writer.chunked_head(200, http10=True, extra_headers=b"Vary: Accept-Encoding\r\n")
    assert out == head + b"r1\nr2\n" + body_digest(b"abc")
    assert b"Transfer-Encoding" not in out and h.responses[0].closes
    assert h.closed


def test_client_half_close_after_the_body_still_gets_its_response(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    h.send_eof()
    c = h.consumers[0]
    assert not h.closed and c.body_ends == 1
    c.write(b"late")
    c.finish()
    h.run()
    assert h.responses[0].complete and h.responses[0].body.startswith(b"late")
    assert h.closed


def test_client_half_close_mid_body_cuts_the_body_and_the_response_still_goes_out(make):
    h = make()
    h.send(post(b"/hold", b"a" * 100)[:-40])
    h.send_eof()
    c = h.consumers[0]
    assert c.body_ends == 0 and len(c.body) == 60 and not h.closed
    (error,) = c.body_errors
    assert (error.status, error.error_code) == (400, 400)
    assert error.message == (
        "the client closed its side of the connection after 60 of the 100 body bytes its "
        "Content-Length announced"
    )
    c.fail(error)
    h.run()
    r = h.responses[0]
    assert r.complete and r.closes is False and r.chunks[-1] == b"error 400 at 60"
    h.loop.advance(LINGER_TIMEOUT)
    h.run()
    assert h.closed


def test_read_body_consumer_answers_with_a_whole_response(make):
    """read_body: the body goes to a consumer that answers with respond() once it has it all
    (the v3 batch); the connection is kept for the next request."""
    h = make()
    body = b'{"entries":[]}'
    h.send(post(b"/whole", body, b"Expect: 100-continue\r\n") + get(b"/r/next"))
    rs = h.responses
    assert [r.status for r in rs] == [100, 200, 200]
    assert rs[1].framing == "length" and rs[1].body == body_digest(body) and not rs[1].closes
    assert rs[2].body == b"next" and not h.fin_sent


def test_read_body_consumer_refusing_mid_body_closes(make):
    h = make()
    body = b"w" * 5000
    h.send(post_chunked(b"/whole", chunked(body, itertools.repeat(1000)))[:-2000])
    c = h.consumers[0]
    assert len(c.body) > 0 and c.body_ends == 0
    c.finish(close=True)  # e.g. 413: the body is over the batch limit
    h.run()
    r = h.responses[0]
    assert r.status == 200 and r.closes and r.complete and h.fin_sent
    h.send(b"more body" + get(b"/r/never"))
    assert len(h.responses) == 1
    h.send_eof()
    assert h.closed


@pytest.mark.parametrize("eof_first", [False, True], ids=["parse-first", "eof-first"])
def test_half_close_with_the_body_still_buffered_loses_nothing(make, eof_first):
    """The client sent its whole body, then FIN, while the consumer was not accepting: the
    body sits in our buffer, the EOF in the socket. When the consumer accepts again, reading
    resumes and the parser is scheduled; the EOF may be read first. Either way every buffered
    byte reaches the consumer, then on_body_end, once; the response goes out, then close."""
    body, req = _many_chunks(700 * 1024)
    h = make()
    h.send(req[:200])
    c = h.consumers[0]

    def stop_once(c: FakeConsumer) -> None:
        c.after_body = None
        c.stop_accepting()

    h.send(req[200 : 600 * 1024])  # grows the buffer to the most: the rest fits in one read
    c.after_body = stop_once
    h.send(req[600 * 1024 :])
    h.send_eof(run=False)
    assert h.unread == 0 and not h.transport.reading and c.body_ends == 0
    c.accept_again()
    if eof_first:
        assert h.read_before_callbacks()
    h.run()
    assert bytes(c.body) == body and c.body_ends == 1
    r = h.responses[0]
    assert r.complete and r.body == body_digest(body)
    assert h.closed


def test_half_close_after_pipelined_requests_answers_them_all(make):
    h = make()
    h.send(post(b"/hold", b"abc") + get(b"/r/two") + get(b"/r/three"))
    h.send_eof()
    c = h.consumers[0]
    assert not h.closed
    c.finish()
    h.run()
    assert [r.body for r in h.responses] == [body_digest(b"abc"), b"two", b"three"]
    assert h.closed


@pytest.mark.parametrize("eof_first", [False, True], ids=["parse-first", "eof-first"])
def test_half_close_behind_a_deferred_request_answers_every_request(make, eof_first):
    h = make()
    h.send(get(b"/defer") + get(b"/r/two") + post(b"/stream", b"three"))
    h.send_eof(run=False)
    assert not h.transport.reading and h.responses == []
    h.deferred[0].respond(200, b"one")  # resumes reading, schedules the parser
    if eof_first:
        assert h.read_before_callbacks()
    h.run()
    assert [r.body for r in h.responses] == [b"one", b"two", body_digest(b"three")]
    assert all(r.complete for r in h.responses)
    assert h.closed


# == 4. errors ================================================================================
@pytest.mark.parametrize(
    "bad, status",
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"v" * 20000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "no-host", "http2", "two-lengths", "huge-head"],
)
@pytest.mark.parametrize("after_good_request", [False, True])
def test_malformed_head_is_answered_once_then_closed(make, bad, status, after_good_request):
    h = make()
    first = get(b"/r/ok") if after_good_request else b""
    h.send(first + bad + get(b"/r/never"))
    rs = h.responses
    assert [r.status for r in rs] == ([200] if after_good_request else []) + [status]
    assert rs[-1].closes and rs[-1].complete and b'"error_code"' in rs[-1].body
    assert h.fin_sent
    h.send(b"more garbage\r\n\r\n" + get(b"/r/never"))
    assert len(h.responses) == len(rs)
    h.send_eof()
    assert h.closed and not h.transport.aborted


def test_malformed_head_fed_byte_by_byte_is_answered_once(make):
    bad = b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n"
    h = make()
    h.send(*(bad[i : i + 1] for i in range(len(bad))))
    assert [r.status for r in h.responses] == [400]
    h.loop.advance(LINGER_TIMEOUT)
    h.run()
    assert h.closed


@pytest.mark.parametrize(
    "bad_tail",
    [b"zz\r\nxx\r\n0\r\n\r\n", b"3\r\nabcdef\r\n", b"3\r\nabc\r\n" + b"1" * 5000 + b"\r\n"],
    ids=["bad-size", "data-longer-than-size", "size-line-too-long"],
)
def test_bad_chunk_framing_mid_stream_cuts_the_body_then_closes(make, bad_tail):
    good = chunked(b"0123456789", iter([4, 6]))[: -len(b"0\r\n\r\n")]
    h = make()
    h.send(post_chunked(b"/hold", good + bad_tail) + get(b"/r/never"))
    c = h.consumers[0]
    assert bytes(c.body).startswith(b"0123456789")
    assert c.body_ends == 0 and c.events[-1] == ("error", 400)
    (error,) = c.body_errors
    assert error.message.startswith("malformed chunked body: ")
    rs = h.responses
    assert len(rs) == 1 and rs[0].status == 200 and not rs[0].complete  # the stream goes on
    assert not h.fin_sent
    assert not h.transport.reading  # nothing more is read from a broken framing
    c.write(b"reports")
    c.fail(error)
    h.run()
    rs = h.responses
    assert len(rs) == 1 and rs[0].complete and rs[0].chunks == [b"reports", b"error 400 at %d" % len(c.body)]
    assert h.fin_sent
    h.send_eof()
    assert h.closed
    assert c.body_ends == 0 and len(c.body_errors) == 1


def test_respond_with_an_unread_body_closes_the_connection(make):
    h = make()
    h.send(post(b"/r/rejected", b"x" * 1000)[:-900] + b"")
    r = h.responses[0]
    assert r.status == 200 and r.closes and r.complete
    assert h.fin_sent and not h.closed  # lingering: the client may still be sending its body
    h.send(b"x" * 900 + get(b"/r/never"))
    assert len(h.responses) == 1
    h.send_eof()
    assert h.closed


def test_respond_without_a_body_keeps_the_connection(make):
    h = make()
    h.send(post(b"/r/empty", b"") + get(b"/r/next"))
    assert [(r.body, r.closes) for r in h.responses] == [(b"empty", False), (b"next", False)]


def test_deferred_request_reads_nothing_until_answered(make):
    h = make()
    h.send(get(b"/defer") + get(b"/r/next"))
    assert h.responses == [] and h.deferred
    assert not h.transport.reading
    h.send(get(b"/r/third"))
    assert h.unread > 0
    h.deferred[0].respond(200, b"late")
    h.run()
    assert [r.body for r in h.responses] == [b"late", b"next", b"third"]
    assert h.transport.reading and h.unread == 0


# == 5. timeouts ==============================================================================
def test_partial_head_too_long_gets_408_and_close(make):
    h = make()
    h.send(b"GET /r/slow HTTP/1.1\r\nHo")
    h.timeouts(9.9)
    assert h.responses == []
    h.send(b"st: t\r\n")  # trickling bytes do not restart the head's clock
    h.timeouts(0.2)
    rs = h.responses
    assert [r.status for r in rs] == [408] and rs[0].closes
    assert h.fin_sent
    h.send_eof()
    assert h.closed


def test_idle_keep_alive_connection_closes(make):
    h = make()
    h.send(get(b"/r/a"))
    h.timeouts(59)
    assert not h.fin_sent
    h.timeouts(2)
    assert h.closed and len(h.responses) == 1


def test_connection_that_never_sends_closes_at_the_idle_timeout(make):
    h = make()
    h.timeouts(61)
    assert h.closed and h.transport.written == b""


def test_stream_idle_is_cut_through_its_consumer_with_408(make):
    h = make()
    h.send(post(b"/hold", b"b" * 100)[:-50])
    c = h.consumers[0]
    h.timeouts(299, body=300)
    assert c.body_errors == []
    h.timeouts(2, body=300)
    (error,) = c.body_errors
    assert (error.status, error.error_code) == (408, 408)
    assert error.message == "the client sent nothing of the body for 300 s (--stream-idle-timeout)"
    assert not h.transport.reading and c.shutdowns == 0
    c.fail(error)
    h.run()
    assert h.responses[0].complete and h.fin_sent
    assert h.responses[0].chunks[-1] == b"error 408 at %d" % len(c.body)
    h.timeouts(10, body=300)
    assert len(c.body_errors) == 1


def test_stream_waiting_on_its_consumer_is_not_idle(make):
    h = make()
    h.send(post(b"/hold", b"b" * 100)[:-50])
    c = h.consumers[0]
    c.stop_accepting()  # waiting for Kafka, not for the client
    h.timeouts(1000, body=300)
    assert c.shutdowns == 0 and not h.fin_sent


def test_stream_body_timeout_disabled_with_zero(make):
    h = make()
    h.send(post(b"/hold", b"b" * 100)[:-50])
    h.timeouts(10_000, body=0)
    assert h.consumers[0].shutdowns == 0 and not h.fin_sent


def test_peer_not_reading_for_longer_than_body_timeout_is_aborted(make, caplog):
    caplog.set_level(logging.INFO, logger="gateway.http")
    h = make()
    h.send(post(b"/hold", b"b" * 100)[:-50])
    c = h.consumers[0]
    h.peer_stops_reading(unsent=300 * 1024)
    assert not h.transport.reading
    h.timeouts(299, body=300)
    assert not h.transport.aborted
    h.timeouts(2, body=300)
    assert h.transport.aborted and h.closed and c.lost == 1
    assert "peer read nothing for 300s: dropping the connection (state BODY)" in caplog.text


def test_peer_that_reads_again_is_not_aborted(make):
    h = make()
    h.send(post(b"/hold", b"b" * 100))
    h.peer_stops_reading(unsent=300 * 1024)
    h.timeouts(200, body=300)
    h.peer_reads_all()
    assert h.transport.reading
    h.timeouts(200, body=300)
    assert not h.transport.aborted and not h.closed


# == 6. shutdown ==============================================================================
def test_shutdown_closes_an_idle_connection(make):
    h = make()
    h.send(get(b"/r/a"))
    h.proto.shutdown()
    h.run()
    assert h.closed and len(h.responses) == 1


def test_shutdown_closes_a_connection_with_a_partial_head(make):
    h = make()
    h.send(b"GET / HT")
    h.proto.shutdown()
    h.run()
    assert h.closed and h.responses == []


def test_shutdown_ends_a_stream_through_its_consumer(make):
    h = make()
    h.send(post(b"/hold", b"s" * 100)[:-50])
    c = h.consumers[0]
    h.proto.shutdown()
    h.run()
    assert c.shutdowns == 1 and not h.transport.reading
    # The body was still being read: it is cut first (503/50003), then the shutdown.
    assert c.events[-2:] == [("error", 503), ("shutdown", 0)]
    assert c.body_errors[0].error_code == 50003
    c.write(b"last reports")
    c.fail(c.body_errors[0])
    h.run()
    r = h.responses[0]
    assert r.complete and r.chunks == [b"last reports", b"error 50003 at 50"]
    h.send_eof()
    assert h.closed


def test_shutdown_after_the_body_closes_once_the_response_ends(make):
    h = make()
    h.send(post(b"/hold", b"s") + get(b"/r/not-served"))
    c = h.consumers[0]
    h.proto.shutdown()
    assert c.shutdowns == 1
    c.finish()
    h.run()
    assert len(h.responses) == 1 and h.fin_sent
    h.send_eof()
    assert h.closed


def test_shutdown_with_a_deferred_request_answers_it_and_closes(make):
    h = make()
    h.send(get(b"/defer"))
    h.proto.shutdown()
    h.deferred[0].respond(503, b"stopping")
    h.run()
    r = h.responses[0]
    assert r.status == 503 and r.closes and h.closed


def test_info_describes_the_connection(make):
    h = make()
    h.send(post(b"/hold", b"i" * 10)[:-5])
    h.consumers[0].stop_accepting()
    info = h.proto.info()
    assert info["peer"] == ("127.0.0.1", 40000)
    assert info["state"] == "BODY" and info["response"] == "CHUNKED" and info["requests"] == 1
    assert "in-flight" in info["paused"]


def test_limits_come_from_the_server(make):
    h = make(limits=HttpLimits(max_header_bytes=64))
    h.send(get(b"/r/x", b"X-Pad: " + b"p" * 64 + b"\r\n"))
    assert [r.status for r in h.responses] == [431]



# == 7. named states, pending(), the request log, the read buffer ============================
def test_states_by_name_through_a_stream_that_stops_reading(make):
    """BODY while the body is read; ABANDONED once the consumer stops reading it; LINGERING
    (FIN sent, input discarded) after the response; CLOSED at the client's EOF. The SIGUSR1
    dump names them."""
    h = make()
    h.send(post(b"/hold", b"s" * 100)[:-50])
    c = h.consumers[0]
    assert (h.proto.info()["state"], h.proto.info()["response"]) == ("BODY", "CHUNKED")
    c.conn.stop_reading()
    assert h.proto.info()["state"] == "ABANDONED" and not h.transport.reading
    c.finish()
    h.run()
    assert (h.proto.info()["state"], h.proto.info()["response"]) == ("LINGERING", "ENDED")
    assert h.transport.eof_written and h.transport.reading  # draining what the client sends
    h.send(b"s" * 50)
    assert h.proto.info()["buffered"] == 0
    h.send_eof()
    assert h.closed and h.proto.state is ConnState.CLOSED
    assert h.proto.info()["state"] == "CLOSED"


def test_states_by_name_through_keep_alive_requests(make):
    h = make()
    assert h.proto.state is ConnState.HEAD
    h.send(post(b"/hold", b"abc"))
    assert h.proto.state is ConnState.RESPONDING  # the body is in, the response goes on
    h.consumers[0].finish()
    h.run()
    assert h.proto.state is ConnState.HEAD and not h.fin_sent
    h.send(get(b"/defer"))
    assert h.proto.state is ConnState.BODY and h.proto.info()["response"] == "NONE"
    h.deferred[0].respond(200, b"late")
    h.run()
    assert h.proto.state is ConnState.HEAD
    assert [r.body for r in h.responses] == [body_digest(b"abc"), b"late"]


def test_pending_until_the_answer_starts_or_the_client_goes(make):
    h = make()
    h.send(get(b"/defer") + get(b"/defer"))
    conn = h.proto
    first = h.server.heads[0]
    assert conn.pending(first)
    conn.respond(200, b"one")
    assert not conn.pending(first)  # answered
    h.run()
    second = h.server.heads[1]
    assert conn.pending(second) and not conn.pending(first)
    h.transport.abort()
    h.run()
    assert not conn.pending(second)  # the client is gone
    assert [r.body for r in h.responses] == [b"one"]


def test_pending_is_false_once_a_stream_began(make):
    h = make()
    h.send(post(b"/hold", b"abc")[:-1])
    assert not h.proto.pending(h.server.heads[0])


def test_pending_while_a_body_consumer_has_yet_to_answer(make):
    consumers: list[FakeConsumer] = []

    def handler(conn, head):
        c = FakeConsumer(conn, whole=True, auto_end=False)
        consumers.append(c)
        conn.read_body(c)

    h = make(handler=handler)
    h.send(post(b"/whole", b"body"))
    head = h.server.heads[0]
    c = consumers[0]
    assert c.body_ends == 1 and h.proto.pending(head)
    c.finish()
    h.run()
    assert not h.proto.pending(head)
    assert h.responses[0].body == body_digest(b"body")


def test_a_second_answer_is_refused_as_a_bug_and_writes_nothing(make):
    h = make()
    h.send(get(b"/defer"))
    conn = h.deferred[0]
    conn.respond(200, b"one")
    h.run()
    written = bytes(h.transport.written)
    with pytest.raises(errors.GatewayBug, match="WHOLE -> WHOLE"):
        conn.respond(200, b"two")
    assert bytes(h.transport.written) == written and not h.fin_sent


def test_a_whole_answer_inside_a_stream_is_refused_and_the_stream_goes_on(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    c.write(b"r1")
    with pytest.raises(errors.GatewayBug, match="CHUNKED -> WHOLE"):
        h.proto.respond(500, b"no")
    c.finish()
    h.run()
    r = h.responses[0]
    assert len(h.responses) == 1 and r.complete and r.chunks == [b"r1", body_digest(b"abc")]


def test_an_illegal_state_move_is_refused_by_name(make):
    h = make()
    h.send(post(b"/hold", b"abc")[:-1])
    with pytest.raises(errors.GatewayBug, match="illegal connection state move BODY -> HEAD"):
        h.proto._set_state(ConnState.HEAD)
    assert h.proto.state is ConnState.BODY


@pytest.fixture
def access_lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The access lines the connection writes, as the compiled formatter makes them (without
    the timestamp and the logger's prefix)."""
    lines: list[str] = []
    pending = AccessLines(1 << 20, 1 << 20)
    pending.prefix = " | "

    def write_request(*args: Any) -> None:
        assert pending.add_request(*args) is False  # (never reaches wake_bytes here)
        lines.append(pending.take().decode().split(" | ", 1)[1].removesuffix("\n"))

    monkeypatch.setattr(reqlog, "write_request", write_request)
    return lines


def test_one_access_line_and_one_count_per_request(make, access_lines):
    h = make()
    req = get(b"/r/a")
    h.send(req)
    h.loop.advance(0.25)
    h.send(b"BAD\r\n\r\n")
    assert [r.status for r in h.responses] == [200, 400]
    first, bad = access_lines
    out = len(h.transport.writes[0])
    assert first == f'127.0.0.1:40000 "GET /r/a" 200 in={len(req)} out={out} ms=0.0'
    out = len(h.transport.writes[1])
    assert bad == f'127.0.0.1:40000 "-" 400 in=7 out={out} ms=0.0'  # the bytes refused
    assert h.server.http_stats.requests == {("-", 200): 1, ("-", 400): 1}


def test_a_stream_writes_its_own_line_even_when_the_client_goes(make, access_lines):
    h = make()
    req = post(b"/hold", b"x" * 100)
    h.send(req[:-40])
    c = h.consumers[0]
    h.transport.abort()
    h.run()
    assert c.lost == 1 and access_lines == []  # the consumer still counts its outcomes
    h.proto.log_access("records=3")
    h.proto.log_access("records=3")  # (once per request)
    assert len(access_lines) == 1
    assert access_lines[0].startswith(f'127.0.0.1:40000 "POST /hold" 200 in={len(req) - 40} ')
    assert access_lines[0].endswith(" records=3")


def test_a_request_cut_short_is_logged_as_client_gone(make, access_lines):
    h = make()
    h.send(get(b"/defer"))
    h.transport.abort()
    h.run()
    assert len(access_lines) == 1 and '"GET /defer" 499 ' in access_lines[0]
    assert access_lines[0].endswith(" (client gone)")


def test_read_buffer_compacts_grows_to_its_most_and_says_when_it_is_full():
    rb = ReadBuffer()
    view = rb.get_buffer(-1)
    assert len(view) == READ_BUFFER_INITIAL
    view[:READ_BUFFER_INITIAL] = b"a" * (READ_BUFFER_INITIAL - 10) + b"0123456789"
    rb._end += READ_BUFFER_INITIAL
    rb._start = READ_BUFFER_INITIAL - 10  # all but the last ten bytes were parsed
    # Less than MIN_READ_SPACE free: the unparsed tail moves to the front, and that frees
    # enough (the buffer grows only when that is not so, or reads keep filling it: _grow).
    view = rb.get_buffer(-1)
    assert (rb._start, rb._end, rb.buffer_size) == (0, 10, READ_BUFFER_INITIAL)
    assert bytes(rb._buf[:10]) == b"0123456789" and len(view) == READ_BUFFER_INITIAL - 10
    while rb.buffer_size < READ_BUFFER_MAX:  # reads that keep filling it double it
        size = rb.buffer_size
        rb._end = size
        assert rb._make_room() and rb.buffer_size == min(size * 2, READ_BUFFER_MAX)
        assert bytes(rb._buf[:10]) == b"0123456789"
    rb._end = READ_BUFFER_MAX - MIN_READ_SPACE + 1
    assert not rb._make_room()  # full at its largest: the reader must pause
    assert rb.buffer_size == READ_BUFFER_MAX
    rb._shrink_if_idle(100.0)
    assert rb.buffer_size == READ_BUFFER_MAX  # never while bytes are buffered
    rb._drop_unparsed()
    rb._shrink_if_idle(1.0)
    assert rb.buffer_size == READ_BUFFER_MAX  # not idle long enough
    rb._shrink_if_idle(100.0)
    assert rb.buffer_size == READ_BUFFER_INITIAL and rb.buffered == 0


# Regressions found by this suite (each failed before its fix in gateway/http/protocol.py).


def test_sweep_during_the_linger_after_a_408_writes_nothing_more(make):
    # A second 408 after write_eof() raised out of the server's sweep and stopped every timeout.
    h = make()
    h.send(b"GET /r/slow HTTP/1.1\r\nHo")
    h.timeouts(11)
    assert [r.status for r in h.responses] == [408] and h.transport.eof_written
    h.timeouts(1)
    assert [r.status for r in h.responses] == [408]


def test_idle_timeout_counts_from_the_end_of_the_response(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    h.loop.advance(100)  # the records take 100 s to be confirmed (broker slow)
    h.consumers[0].finish()
    h.run()
    assert h.responses[0].complete and not h.responses[0].closes and not h.fin_sent
    h.timeouts(1, idle=60)
    assert not h.fin_sent, "a keep-alive connection idle for 1 s was closed"


def test_peer_that_never_reads_is_aborted_after_the_idle_close(make):
    h = make()
    h.send(get(b"/r/a"))
    h.peer_stops_reading(unsent=300 * 1024)
    for _ in range(600):
        h.timeouts(1, header=10, idle=60, body=300)
    assert h.transport.closing
    assert h.closed, "the connection is still held 600 s later (never aborted)"


def test_peer_that_never_reads_is_aborted_after_a_lingering_close(make):
    h = make()
    h.send(post(b"/hold", b"x" * 100)[:-50])
    c = h.consumers[0]
    c.conn.stop_reading()
    h.peer_stops_reading(unsent=300 * 1024)
    c.finish()
    h.run()
    for _ in range(600):
        h.timeouts(1, header=10, idle=60, body=300)
    assert h.closed, "the connection is held forever by a peer that does not read"


def test_empty_write_body_does_not_end_the_chunked_response(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    c.write(b"")
    c.write(b"r1")
    c.finish()
    h.run()
    assert h.transport.written.endswith(b"2\r\nr1\r\n" + b"%x\r\n" % len(body_digest(b"abc"))
                                        + body_digest(b"abc") + b"\r\n0\r\n\r\n")
    assert h.transport.written.count(b"0\r\n\r\n") == 1, bytes(h.transport.written)


def test_lingering_close_does_not_resume_a_transport_that_reads(make):
    h = make()
    h.send(post(b"/r/rejected", b"x" * 1000)[:-900])
    assert h.transport.eof_written
    assert h.transport.reading_calls == [], h.transport.reading_calls


def test_read_body_consumer_answering_before_the_body_ends_closes(make):
    h = make()
    h.send(post(b"/whole", b"w" * 5000)[:-3000])
    c = h.consumers[0]
    c.finish()
    h.run()
    r = h.responses[0]
    assert r.complete and r.closes and h.fin_sent


def test_requests_waiting_behind_a_slow_reader_are_not_timed_out(make):
    def handler(conn, head):
        conn.respond(200, b"b" * 100_000)

    h = make(handler=handler)
    h.peer_stops_reading()
    h.send(b"".join(get(b"/big/%d" % i) for i in range(5)))
    assert h.transport.write_paused and len(h.responses) == 3
    h.timeouts(11)
    h.peer_reads_all()
    assert [r.status for r in h.responses] == [200] * 5


def test_read_buffer_starts_small_grows_under_load_and_shrinks_when_idle(make):
    body, req = _many_chunks(512 * 1024, size=8000)
    h = make()
    assert h.proto.info()["buffer"] == READ_BUFFER_INITIAL  # an idle connection costs little
    h.send(req)
    c = h.consumers[0]
    assert bytes(c.body) == body
    assert h.proto.info()["buffer"] == READ_BUFFER_MAX  # reads kept filling it
    h.timeouts(1)
    assert h.proto.info()["buffer"] == READ_BUFFER_MAX  # not idle long enough yet
    h.timeouts(5)
    assert h.proto.info()["buffer"] == READ_BUFFER_INITIAL
    h.send(get(b"/r/after"))  # still serves
    assert h.responses[-1].body == b"after"


def test_content_length_stream_sends_its_head_reports_and_end_in_one_write(make):
    # The head of a Content-Length request's stream goes with its first reports (docs/api.md
    # §1); what its stream writes in one loop turn, and the last-chunk, leave together: a
    # one-record request's answer is one write.
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    assert h.transport.writes == []
    c.write(b"r1")
    c.write(b"r2")
    c.finish()
    h.run()
    assert len(h.transport.writes) == 1, h.transport.writes
    (out,) = h.transport.writes
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\n\r\n2\r\nr1\r\n2\r\nr2\r\n" in out and out.endswith(b"0\r\n\r\n")
    assert h.responses[0].complete and h.responses[0].body.startswith(b"r1r2")


def test_end_body_with_the_last_output_writes_once_and_schedules_nothing(make):
    # A stream ending with its last reports (end_body(data)): held, the head, the reports and
    # the last-chunk leave in one write at once, with no callback left for the loop turn's end.
    h = make()
    h.send(post(b"/hold", b"abc"))
    assert h.transport.writes == []
    ready = len(h.loop._ready)
    h.proto.end_body(b"r1")
    assert len(h.loop._ready) == ready  # (no _flush_held scheduled)
    (out,) = h.transport.writes
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n2\r\nr1\r\n0\r\n\r\n")
    # Not held (a chunked request's stream): the output is framed as write_body frames it.
    h.send(post_chunked(b"/hold", b"3\r\nabc\r\n0\r\n\r\n"))
    h.proto.end_body(b"x" * 20)
    assert h.transport.written.endswith(b"14\r\n" + b"x" * 20 + b"\r\n0\r\n\r\n")
    assert [r.chunks for r in h.responses] == [[b"r1"], [b"x" * 20]]
    assert all(r.complete for r in h.responses)


def test_content_length_stream_without_reports_sends_its_head_with_its_end(make):
    h = make()
    h.send(post(b"/hold", b"  "))
    c = h.consumers[0]
    assert h.transport.writes == []
    c.finish()
    h.run()
    assert len(h.transport.writes) == 1
    assert h.transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert h.transport.writes[0].endswith(b"0\r\n\r\n")
    assert h.responses[0].status == 200 and h.responses[0].complete


def test_chunked_stream_sends_its_head_at_once(make):
    # Clients of long streams read the 200 before any report (docs/api.md §1).
    h = make()
    h.send(post_chunked(b"/hold", b"3\r\nabc\r\n"))  # the body goes on
    assert [r.status for r in h.responses] == [200] and not h.responses[0].complete
    assert h.transport.writes[-1].endswith(b"Transfer-Encoding: chunked\r\n\r\n")


def test_content_length_stream_held_reports_leave_within_the_loop_turn(make):
    h = make()
    h.send(post(b"/hold", b"abc"))
    c = h.consumers[0]
    c.write(b"early")
    h.run()  # the turn ends: the held report is written although the stream goes on
    assert h.transport.written.endswith(b"5\r\nearly\r\n")
    # ... in one write with the head it waited for.
    assert len(h.transport.writes) == 1 and h.transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert h.responses[0].status == 200 and not h.responses[0].complete
    c.finish()
    h.run()
    assert h.responses[0].complete


# == 8. faults of ours: an answer, not a dropped connection ===================================
class Boom(Exception):
    """A bug of the gateway's (any exception that is not the client's fault)."""


INTERNAL_BODY = b'{"error_code":500,"message":"internal error of the gateway"}'


class RaisingConsumer(FakeConsumer):
    """A body consumer with a bug: ``where`` (one of its calls) raises, once or ``always``.
    Its stream stays open until its body ends with an error (``fail``)."""

    def __init__(self, conn, where: str, *, whole: bool, always: bool = False) -> None:
        super().__init__(conn, whole=whole, auto_end=False)
        self.where = where
        self.always = always
        self.raised = 0

    def _maybe_raise(self, name: str) -> None:
        if name == self.where and (self.always or not self.raised):
            self.raised += 1
            raise Boom(f"{name} failed")

    def on_body(self, data):
        super().on_body(data)  # (it took the bytes, then failed)
        self._maybe_raise("on_body")

    def on_body_end(self):
        self._maybe_raise("on_body_end")
        super().on_body_end()

    def on_body_error(self, error):
        self._maybe_raise("on_body_error")
        super().on_body_error(error)
        self.fail(error)

    def on_shutdown(self):
        self._maybe_raise("on_shutdown")
        super().on_shutdown()

    def on_connection_lost(self):
        super().on_connection_lost()
        self._maybe_raise("on_connection_lost")

    def on_writable(self):
        self._maybe_raise("on_writable")


def raising_handler(harness: Harness, *, always: bool = False):
    """/stream/<where>, /whole/<where>: a consumer whose <where> raises; /dispatch: the
    handler itself raises; /later: the handler defers and its callback (harness.deferred
    holds the wrapped one) raises; anything else as path_handler."""
    base = __import__("support.mock_transport", fromlist=["path_handler"]).path_handler(harness)

    def handler(conn, head):
        kind, _, where = head.path[1:].partition("/")
        if kind in ("stream", "whole") and where:
            c = RaisingConsumer(conn, where, whole=kind == "whole", always=always)
            harness.consumers.append(c)
            conn.endpoint = kind
            (conn.read_body if kind == "whole" else conn.start_stream)(c)
        elif kind == "dispatch":
            conn.endpoint = "dispatch"
            raise Boom("dispatch failed")
        elif kind == "later":
            conn.endpoint = "later"
            conn.defer()

            def answer_later() -> None:
                raise Boom("the deferred answer failed")

            harness.deferred.append(conn.later(answer_later))
        else:
            base(conn, head)

    return handler


def ours_logged(caplog, what: str) -> None:
    """The fault is logged once, as ours (gateway.http, ERROR), with its traceback."""
    errs = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errs) == 1, [r.getMessage() for r in errs]
    assert errs[0].name == "gateway.http"
    assert errs[0].getMessage().startswith("internal error of the gateway serving ")
    assert errs[0].exc_info is not None and str(errs[0].exc_info[1]) == what


@pytest.mark.parametrize(
    "request_bytes",
    [get(b"/dispatch"), post(b"/dispatch", b"x" * 100)[:-30], post_chunked(b"/dispatch", b"")],
    ids=["no-body", "body-still-coming", "chunked"],
)
def test_a_handler_that_raises_is_answered_500_and_closed(make, access_lines, caplog, request_bytes):
    h = make(handler=None)
    h.server.handler = raising_handler(h)
    h.send(request_bytes + get(b"/r/never"))
    (r,) = h.responses
    assert (r.status, r.body, r.closes, r.complete) == (500, INTERNAL_BODY, True, True)
    assert h.fin_sent
    ours_logged(caplog, "dispatch failed")
    assert h.server.http_stats.requests == {("dispatch", 500): 1}
    (line,) = access_lines
    assert '"POST /dispatch" 500 ' in line or '"GET /dispatch" 500 ' in line
    h.send_eof()
    assert h.closed and access_lines == [line]  # never a second line, never 499


def test_a_deferred_answer_that_raises_is_answered_500(make, access_lines, caplog):
    h = make(handler=None)
    h.server.handler = raising_handler(h)
    h.send(get(b"/later"))
    assert h.responses == []
    h.deferred[0]()  # e.g. the metadata refresh is done; the callback has a bug
    h.run()
    (r,) = h.responses
    assert (r.status, r.body, r.closes) == (500, INTERNAL_BODY, True)
    ours_logged(caplog, "the deferred answer failed")
    assert h.server.http_stats.requests == {("later", 500): 1}
    assert h.closed  # everything the client sent was read: closed at once


def test_a_fault_while_reading_a_head_answers_500(make, access_lines, caplog, monkeypatch):
    def broken_parse_head(*args):
        raise Boom("parse_head failed")

    h = make()
    h.send(get(b"/r/first"))
    monkeypatch.setattr(protocol, "parse_head", broken_parse_head)
    h.send(get(b"/r/second"))
    assert [(r.status, r.closes) for r in h.responses] == [(200, False), (500, True)]
    assert h.responses[1].body == INTERNAL_BODY
    ours_logged(caplog, "parse_head failed")
    assert access_lines[1].startswith('127.0.0.1:40000 "-" 500 ')


# A body consumer that raises, at each point the connection calls it.
def _post_stream(path: bytes) -> bytes:
    return post_chunked(path, chunked(b"r" * 50, itertools.repeat(10)))


CONSUMER_FAULTS = [
    ("stream", "on_body", lambda h: h.send(_post_stream(b"/stream/on_body"))),
    ("stream", "on_body_end", lambda h: h.send(_post_stream(b"/stream/on_body_end"))),
    ("stream", "on_shutdown", lambda h: (h.send(post(b"/stream/on_shutdown", b"r" * 50)),
                                         h.proto.shutdown(), h.run())),
    ("stream", "on_writable", lambda h: (h.send(post(b"/stream/on_writable", b"r" * 50)[:-10]),
                                         h.peer_stops_reading(unsent=300 * 1024),
                                         h.peer_reads_all())),
    ("stream", "on_body_error", lambda h: h.send(
        post_chunked(b"/stream/on_body_error", b"a\r\n" + b"r" * 10 + b"\r\nzz\r\n"))),
    ("whole", "on_body", lambda h: h.send(_post_stream(b"/whole/on_body"))),
    ("whole", "on_body_end", lambda h: h.send(_post_stream(b"/whole/on_body_end"))),
]


@pytest.mark.parametrize("kind, where, run", CONSUMER_FAULTS,
                         ids=[f"{k}-{w}" for k, w, _ in CONSUMER_FAULTS])
def test_a_body_consumer_that_raises_ends_its_request_as_500(make, access_lines, caplog, kind,
                                                            where, run):
    """A stream already begun ends with one last failure line from its consumer (the session
    writes a 50003 report there), then the connection closes; a request without an answer
    yet gets a 500 answer and its consumer is let go of (on_connection_lost)."""
    h = make(handler=None)
    h.server.handler = raising_handler(h)
    run(h)
    h.run()
    c = h.consumers[0]
    assert c.raised == 1
    (r,) = h.responses
    if kind == "stream":
        assert r.status == 200 and r.complete  # the head went out before the fault
        assert r.chunks[-1] == b"error 500 at %d" % len(c.body)
        assert [e.status for e in c.body_errors] == [500]
    else:
        assert (r.status, r.body, r.closes, r.complete) == (500, INTERNAL_BODY, True, True)
        assert c.lost == 1
    assert h.fin_sent
    ours_logged(caplog, f"{where} failed")
    assert h.server.http_stats.requests == {(kind, 500): 1}
    assert len(access_lines) == 1 and f"/{kind}/{where}\" 500 " in access_lines[0]
    h.send_eof()
    h.loop.advance(LINGER_TIMEOUT)
    h.run()
    assert h.closed and len(access_lines) == 1


def test_a_consumer_that_cannot_end_its_stream_leaves_it_visibly_unfinished(make, access_lines,
                                                                          caplog):
    """Its on_body_error raises every time: the chunked response ends without its last chunk
    (a client reads that as a broken response), counted 500, and the connection closes."""
    h = make(handler=None)
    h.server.handler = raising_handler(h, always=True)
    h.send(post_chunked(b"/stream/on_body_error", b"a\r\n" + b"r" * 10 + b"\r\nzz\r\n"))
    h.run()
    c = h.consumers[0]
    assert c.raised == 2  # the framing error, then the internal error
    (r,) = h.responses
    assert r.status == 200 and not r.complete
    assert h.fin_sent
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["gateway.http"] * 2
    assert h.server.http_stats.requests == {("stream", 500): 1}
    assert access_lines[0].endswith(" (internal error)")
    c.write(b"late report")  # what the consumer still writes goes nowhere
    c.conn.end_body()
    h.send_eof()
    h.loop.advance(LINGER_TIMEOUT)
    h.run()
    assert h.closed and not h.responses[0].complete and len(access_lines) == 1


def test_a_consumer_that_raises_when_the_client_goes_is_counted_500_not_499(make, access_lines,
                                                                           caplog):
    h = make(handler=None)
    h.server.handler = raising_handler(h)
    h.send(post(b"/stream/on_connection_lost", b"r" * 100)[:-50])
    h.transport.abort()
    h.run()
    ours_logged(caplog, "on_connection_lost failed")
    assert h.server.http_stats.requests == {("stream", 500): 1}
    (line,) = access_lines
    assert '"POST /stream/on_connection_lost" 500 ' in line and line.endswith(" (internal error)")


# == 9. a body cut short: one mechanism, whoever consumes it ==================================
@pytest.mark.parametrize(
    "cut, status",
    [
        (lambda h: h.send(post_chunked(b"/whole", b"5\r\nhello\r\nzz\r\n")), 400),
        (lambda h: h.send(post_chunked(b"/whole", b"0\r\nX: " + b"v" * 17_000 + b"\r\n\r\n")), 431),
        (lambda h: (h.send(post(b"/whole", b"w" * 100)[:-60]), h.send_eof()), 400),
        (lambda h: (h.send(post(b"/whole", b"w" * 100)[:-60]), h.timeouts(301, body=300)), 408),
        (lambda h: (h.send(post(b"/whole", b"w" * 100)[:-60]), h.proto.shutdown(), h.run()), 503),
    ],
    ids=["framing", "trailer", "eof", "idle", "shutdown"],
)
def test_a_body_answered_whole_that_is_cut_short_gets_its_reason_and_close(make, access_lines,
                                                                          cut, status):
    h = make()
    cut(h)
    c = h.consumers[0]
    assert c.body_ends == 0 and [e.status for e in c.body_errors] == [status]
    (r,) = h.responses
    assert (r.status, r.closes, r.complete) == (status, True, True)
    assert json.loads(r.body)["error_code"] == c.body_errors[0].error_code
    assert h.fin_sent
    assert len(access_lines) == 1 and f'"POST /whole" {status} ' in access_lines[0]


@pytest.mark.parametrize("request_bytes", [get(b"/nothing"), post(b"/nothing", b"n" * 100)[:-60]],
                         ids=["no-body", "body"])
def test_a_handler_that_neither_answers_nor_defers_is_a_fault_answered_500(make, access_lines,
                                                                          caplog, request_bytes):
    h = make()
    h.send(request_bytes)
    (r,) = h.responses
    assert (r.status, r.body, r.closes) == (500, INTERNAL_BODY, True)
    errs = [x for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errs) == 1 and "nor took its body" in str(errs[0].exc_info[1])
    assert len(access_lines) == 1 and '/nothing" 500 ' in access_lines[0]


def test_a_stream_whose_body_ended_is_not_cut_by_shutdown(make, access_lines):
    h = make()
    h.send(post_chunked(b"/hold", chunked(b"abc")))
    c = h.consumers[0]
    assert c.body_ends == 1
    h.proto.shutdown()
    h.run()
    assert c.body_errors == [] and c.shutdowns == 1
    c.finish()
    h.run()
    assert h.responses[0].complete and h.responses[0].chunks == [body_digest(b"abc")]
    assert access_lines[0].split('"')[2].startswith(" 200 ")


# == a stream answering a request without a body (streaming consume) ============================
class Listener:
    """A body consumer for a GET answered with an endless stream: records what it is told."""

    accepting = False

    def __init__(self, conn: HttpProtocol) -> None:
        self.conn = conn
        self.events: list[str] = []

    def on_body(self, data: memoryview) -> None:
        self.events.append("body")

    def on_body_end(self) -> None:
        self.events.append("body_end")

    def on_body_error(self, error: GatewayError) -> None:
        self.events.append(f"error {error.error_code}")

    def on_connection_lost(self) -> None:
        self.events.append("lost")

    def on_shutdown(self) -> None:
        self.events.append("shutdown")

    def on_writable(self) -> None:
        self.events.append("writable")

    def on_peer_eof(self) -> None:
        self.events.append("eof")
        self.conn.end_body()
        self.conn.log_access("listened")


def listen_harness(make: Callable[..., Harness]) -> tuple[Harness, list[Listener]]:
    listeners: list[Listener] = []

    def handler(conn: HttpProtocol, head: RequestHead) -> None:
        if head.path != "/listen":
            conn.respond(200, head.path.encode())
            return
        listener = Listener(conn)
        listeners.append(listener)
        conn.start_stream(listener, content_type=b"application/x-ndjson")

    return make(handler=handler), listeners


def test_a_stream_without_a_request_body_writes_at_once_and_counts_what_reached_the_socket(make):
    h, listeners = listen_harness(make)
    h.send(get(b"/listen"))
    (li,) = listeners
    assert li.events == ["body_end"]  # no body: read at once
    head_bytes = len(h.transport.written)
    assert b"Content-Type: application/x-ndjson\r\n" in bytes(h.transport.written)
    assert h.proto.written == head_bytes and h.proto.flushed == head_bytes
    h.proto.write_body(b'{"n":1}\n')
    # Written at once (not held to the end of the loop turn), as one chunk.
    assert bytes(h.transport.written).endswith(b'8\r\n{"n":1}\n\r\n')
    assert h.proto.written == h.proto.flushed == len(h.transport.written)
    # The client stops reading: what is written stays in the transport's buffer.
    h.peer_stops_reading()
    h.proto.write_body(b"x" * 1000)
    assert h.proto.written == len(h.transport.written)
    assert h.proto.flushed == h.proto.written - h.transport.unsent < h.proto.written
    h.peer_reads_all()
    assert h.proto.flushed == h.proto.written


def test_the_clients_eof_ends_a_stream_without_a_request_body(make):
    h, listeners = listen_harness(make)
    h.send(get(b"/listen"))
    h.proto.write_body(b"a\n")
    h.send_eof()
    (li,) = listeners
    assert li.events == ["body_end", "eof"]
    assert h.responses[0].complete and h.responses[0].chunks == [b"a\n"]
    h.run()
    assert h.closed
    # Once the connection is gone, what its buffer held is unknown.
    assert h.proto.flushed == -1
