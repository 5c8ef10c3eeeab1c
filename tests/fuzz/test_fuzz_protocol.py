"""Fuzzing the HTTP/1.1 connection (gateway/http/protocol.py) through the mock transport of
tests/support/mock_transport.py: pipelines of generated requests, their mutations and
arbitrary bytes, delivered in random reads, then EOF and the server's timeout sweeps.

What a client may observe, whatever it sends:
- well-formed HTTP/1.1 responses only, each complete; statuses 100, 2xx, or 4xx, or the two
  5xx RFC 9112 asks for (501 an unknown transfer coding, 505 an HTTP version other than 1.x),
  never another 5xx; every error a JSON body with its error_code; no exception escapes the
  protocol (the fake loop re-raises any), no flow-control breach (pause/resume out of turn,
  a write after close), and the connection ends once the client has said all it will;
- valid requests get their answers, in order, whatever the split of the bytes; and a mutation
  changes nothing for the requests wholly before it.

Requests go to the scripted handlers of ``path_handler`` (/r/..., /stream, /whole, 404) and to
/records, where the body streams into the real JSON splitter (both twins), as a v3 produce
stream does: the items it emits must be those of the body fed whole. The pipeline and
arbitrary-bytes tests run on both request-head parsers (tests/support/head_twins.py).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.fake_producer import FakeRdProducer
from support.fuzz import GenRequest, examples, mutated, requests, splits
from support.head_twins import HEAD_TWINS, swapped
from support.mock_transport import (
    FakeConsumer,
    FakeLoop,
    Harness,
    body_digest,
    patched_time,
    path_handler,
)
from support.ref_splitter import JsonSplitter as PyJsonSplitter

from gateway import _speedups
from gateway.errors import GatewayError
from gateway.http import protocol, reqlog
from gateway.http.protocol import HttpProtocol
from gateway.http.states import ConnState
from gateway.kafka.producer import KafkaProducer
from gateway.produce import RecordError
from gateway.produce.session import ProduceSession
from gateway.stats import ProduceStats

PATHS = ["/r/ok", "/nope", "/stream", "/whole", "/records", "/records"]
ERROR_5XX = {501: "is not supported; only 'chunked' is", 505: "HTTP version"}
RECORDS = [
    b'{"value":{"type":"STRING","data":"a"}}',
    b'{"key":{"type":"BINARY","data":"AAE="},"value":null}\n',
    b'{"value":{"type":"JSON","data":[1,{"x":null}]}} ',
    b'{"value":{"type":"BINARY","data":"not base64"}}',
    b'{"partition_id":99999999999}',
    b"{}",
    b"{",
    b"x",
]
bodies = st.lists(st.sampled_from(RECORDS), max_size=5).map(b"".join) | st.binary(max_size=64)
SPLITTERS = st.sampled_from([_speedups.JsonSplitter, PyJsonSplitter])


class SplitterConsumer(FakeConsumer):
    """A v3-stream-like consumer: the body goes through a JSON splitter as it arrives; one line
    per item (its code); the stream ends at a fatal error or with the body."""

    def __init__(self, conn: HttpProtocol, splitter_cls: type) -> None:
        super().__init__(conn, auto_end=False)
        self.splitter = splitter_cls()
        self.items: list = []
        self.finished_splitter = False

    def _emit(self, items: list) -> None:
        self.items += items
        for item in items:
            code = item.error_code if isinstance(item, RecordError) else 200
            self.conn.write_body(b"%d\n" % code)

    def on_body(self, data: memoryview) -> None:
        super().on_body(data)
        self._emit(self.splitter.feed(data))
        if self.splitter.failed:
            self.conn.stop_reading()  # as the session does: nothing after a fatal error
            self.finish()

    def on_body_end(self) -> None:
        self.body_ends += 1
        if not self.splitter.failed:
            self.finished_splitter = True
            self._emit(self.splitter.finish())
        self.finish()

    def on_body_error(self, error: GatewayError) -> None:
        # Reading stopped before the body's end: one last line, the failure's code.
        super().on_body_error(error)
        self.conn.write_body(b"%d\n" % error.error_code)
        self.finish()

    def on_shutdown(self) -> None:
        if not self.body_errors:
            self.on_body_end()

    def finish(self, *, close: bool = False) -> None:
        # Only the item lines: how much of the body was read after a fatal error depends on
        # the reads, what the splitter made of it does not.
        if not self.response_ended:
            self.response_ended = True
            self.conn.end_body()

    def expected_items(self) -> list:
        s = type(self.splitter)()
        items = s.feed(bytes(self.body))
        if self.finished_splitter:
            items += s.finish()
        return items


class Run:
    """One connection, fed ``pieces`` then EOF, then swept until it must have closed."""

    def __init__(self, pieces: list[bytes], splitter_cls: type) -> None:
        self.loop = FakeLoop()
        saved = protocol.time
        protocol.time = patched_time(self.loop)  # type: ignore[assignment]
        try:
            self.h = Harness(loop=self.loop, handler=self._handler)
            self.splitter_cls = splitter_cls
            self.base = path_handler(self.h)
            for piece in pieces:
                self.h.send(piece)
            self.h.send_eof()
            for after in (11.0, 3.0, 61.0, 301.0, 3.0):  # header, linger, idle, stream timeouts
                self.h.timeouts(after)
            self.responses = self.h.responses
        finally:
            protocol.time = saved  # type: ignore[assignment]

    def _handler(self, conn: HttpProtocol, head: object) -> None:
        if head.path == "/records":  # type: ignore[attr-defined]
            c = SplitterConsumer(conn, self.splitter_cls)
            self.h.consumers.append(c)
            conn.start_stream(c)
        else:
            self.base(conn, head)  # type: ignore[arg-type]

    def check(self) -> None:
        """What any client may observe, whatever it sent."""
        t = self.h.transport
        assert t.violations == [], t.violations
        assert self.h.closed, "the connection did not end after EOF and the timeouts"
        assert self.h.proto.state is ConnState.CLOSED
        for r in self.responses:
            assert r.complete or r.framing == "close", r  # (HTTP/1.0 stream: ends with the connection)
            s = r.status
            assert s == 100 or 200 <= s < 300 or 400 <= s < 500 or s in ERROR_5XX, r
            if s >= 400 and s != 404:
                doc = json.loads(r.body)
                assert doc["error_code"] == s and doc["message"], r
                assert r.closes, r  # a refused request ends the connection
                if s in ERROR_5XX:
                    assert ERROR_5XX[s] in doc["message"], r
        for c in self.h.consumers:
            if isinstance(c, SplitterConsumer):
                assert c.items == c.expected_items()

    def summary(self) -> list[tuple]:
        return [(r.status, tuple(r.headers), r.body, r.framing) for r in self.responses]


def expected_answers(reqs: list[GenRequest], splitter_cls: type) -> list[tuple[int, bytes]]:
    """(status, body) of the final response to each request the connection serves."""
    out = []
    for req in reqs:
        has_body = req.chunked or bool(req.content_length)
        path = req.target
        closes = not req.keep_alive
        if path == "/r/ok":
            out.append((200, b"ok"))
            closes |= has_body  # answered before its body was read
        elif path == "/nope":
            out.append((404, b"not found"))
            closes |= has_body
        elif path in ("/stream", "/whole"):
            out.append((200, body_digest(req.body)))
            closes |= path == "/stream" and req.version == 10  # close-delimited
        else:
            s = splitter_cls()
            items = s.feed(req.body)
            stopped = s.failed  # a fatal error while the body is read: nothing more is read
            if not stopped:
                items += s.finish()
            lines = b"".join(b"%d\n" % (i.error_code if isinstance(i, RecordError) else 200) for i in items)
            out.append((200, lines))
            closes |= stopped or req.version == 10
        if closes:
            break
    return out


@pytest.fixture(scope="module", params=HEAD_TWINS)
def head_twin(request):
    yield from swapped(protocol, "parse_head", request.param)


pipelines = st.lists(requests(paths=st.sampled_from(PATHS), body_bytes=bodies), min_size=1, max_size=5)


@pytest.mark.usefixtures("head_twin")
@examples(100)
@given(st.data(), pipelines, SPLITTERS)
def test_valid_pipelines_are_answered_in_order_in_any_split(
    data: st.DataObject, reqs: list[GenRequest], splitter_cls: type
) -> None:
    wire = b"".join(r.wire for r in reqs)
    run = Run(data.draw(splits(wire, max_pieces=15)), splitter_cls)
    run.check()
    final = [(r.status, r.body) for r in run.responses if r.status != 100]
    assert final == expected_answers(reqs, splitter_cls)
    expected_continues = sum(1 for r in reqs[: len(final)] if r.expect_continue and r.target not in ("/r/ok", "/nope"))
    assert sum(1 for r in run.responses if r.status == 100) == expected_continues
    # The same bytes in one read: the same responses.
    assert Run([wire], splitter_cls).summary() == run.summary()


@pytest.mark.usefixtures("head_twin")
@examples(120)
@given(st.data(), pipelines, SPLITTERS)
def test_mutated_pipelines_get_clean_answers(data: st.DataObject, reqs: list[GenRequest], splitter_cls: type) -> None:
    wire = b"".join(r.wire for r in reqs)
    bad = data.draw(mutated(wire, max_ops=3))
    run = Run(data.draw(splits(bad, max_pieces=15)), splitter_cls)
    run.check()
    # Requests wholly before the first changed byte are answered as without the change.
    same = 0
    while same < min(len(wire), len(bad)) and wire[same] == bad[same]:
        same += 1
    intact, end = 0, 0
    for r in reqs:
        end += len(r.wire)
        if end > same:
            break
        intact += 1
    clean = Run([wire], splitter_cls)
    n = 0  # responses (100 Continue included) of the intact requests in the clean run
    finals = 0
    for r in clean.responses:
        if finals == intact:
            break
        n += 1
        finals += r.status != 100
    assert run.summary()[:n] == clean.summary()[:n]


@pytest.mark.usefixtures("head_twin")
@examples(600)
@given(st.binary(max_size=300), st.data(), SPLITTERS)
@example(b"GET /r/x HTTP/1.1\r\nHost: h\r\n\r\nGET /r/y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: x\r\n\r\n", None, None)
@example(b"POST /records HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}{}x\r\n0\r\n\r\n", None, None)
@example(b"POST /stream HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", None, None)
@example(b"GET / HTTP/3.0\r\n\r\n", None, None)
def test_arbitrary_bytes_get_clean_answers(wire: bytes, data: st.DataObject | None, splitter_cls: type | None) -> None:
    pieces = data.draw(splits(wire, max_pieces=10)) if data is not None else [wire]
    run = Run(pieces, splitter_cls or PyJsonSplitter)
    run.check()


# == v3 produce streams through the real session: a broken stream says it is broken ==========
class AcknowledgingProducer(FakeRdProducer):
    """librdkafka's stand-in: every record is acknowledged at the next poll."""

    def __init__(self, conf: dict) -> None:
        super().__init__(conf)
        self._next = 0

    def poll(self) -> int:
        for i in range(self._next, len(self.queued)):
            self.deliver(i)
        self._next = len(self.queued)
        return super().poll()


PARTITIONS = 3
# A cut of the body's framing after some good bytes (issue 10, finding 2): reading stops there.
FRAMING_BREAKS = [
    b"zz\r\n",
    b"ffffffffffffffffff\r\n",
    b"-1\r\n",
    b"\x00\r\n",
    b"5;" + b"e" * 5000 + b"\r\nhello\r\n",
    b"0\r\nX-Pad: " + b"v" * 17_000 + b"\r\n\r\n",
]


class ProduceRun:
    """One connection whose /records requests are v3 streams of the real ``ProduceSession``
    (the real splitter, core and KafkaProducer, over a producer that acknowledges everything):
    ``pieces`` are sent, each followed by the producer's polls, then EOF and the sweeps."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.loop = FakeLoop()
        saved_time, saved_write = protocol.time, reqlog.write_request
        protocol.time = patched_time(self.loop)  # type: ignore[assignment]
        reqlog.write_request = lambda *line: None  # type: ignore[assignment]
        try:
            self.producer = KafkaProducer({}, self.loop,  # type: ignore[arg-type]
                                          producer_factory=AcknowledgingProducer)
            self.h = Harness(loop=self.loop, handler=self._handler)
            self.base = path_handler(self.h)
            for piece in pieces:
                self.h.send(piece)
                self._settle()
            self.h.send_eof()
            self._settle()
            for after in (11.0, 3.0, 61.0, 301.0, 3.0):
                self.h.timeouts(after)
                self._settle()
            self.responses = self.h.responses
        finally:
            protocol.time = saved_time  # type: ignore[assignment]
            reqlog.write_request = saved_write  # type: ignore[assignment]

    def _settle(self) -> None:
        for _ in range(8):  # the producer's poll timer, and what its reports let the connection read
            self.loop.advance(0.002)
            self.h.run()

    def _handler(self, conn: HttpProtocol, head: object) -> None:
        if head.path == "/records":  # type: ignore[attr-defined]
            conn.endpoint = "records"
            conn.start_stream(ProduceSession(
                conn, self.producer, _speedups.JsonSplitter(), cluster_id="c", topic="t",
                partitions=PARTITIONS, max_in_flight=3, stats=ProduceStats(),
            ))
        else:
            self.base(conn, head)  # type: ignore[arg-type]


def item_code(item: object) -> int:
    """The report code a parsed item gets when Kafka acknowledges every record."""
    if isinstance(item, RecordError):
        return item.error_code
    partition = item[1]  # type: ignore[index]
    return 40402 if partition >= PARTITIONS else 200


def served(reqs: list[GenRequest]) -> list[GenRequest]:
    """The requests a connection serves before one that closes it."""
    out = []
    for req in reqs:
        out.append(req)
        has_body = req.chunked or bool(req.content_length)
        closes = not req.keep_alive or req.version == 10 and req.target in ("/stream", "/records")
        closes |= has_body and req.target in ("/r/ok", "/nope")
        if req.target == "/records":
            # A fatal record error (garbage between records, or a body ending inside one)
            # ends the stream and closes the connection.
            s = _speedups.JsonSplitter()
            s.feed(req.body)
            s.finish()
            closes |= s.failed
        if closes:
            break
    return out


PRODUCE_PATHS = ["/records", "/records", "/records", "/r/ok", "/whole"]
produce_pipelines = st.lists(
    requests(paths=st.sampled_from(PRODUCE_PATHS), body_bytes=bodies), min_size=1, max_size=4
)


@examples(150)
@given(st.data(), produce_pipelines, st.sampled_from(["clean", "eof", "break"]))
@example(None, None, None)
def test_a_produce_stream_ended_cleanly_is_counted_else_its_last_report_is_a_failure(
    data: st.DataObject | None, reqs: list[GenRequest] | None, how: str | None
) -> None:
    """Issue 10: for every v3 stream the client ends cleanly, the reports count its records
    (one per record, in order, with its code) and the access log counts it under 200 (400
    after garbage between records); for a stream the client does not end cleanly (EOF inside
    the body, or broken chunked framing after some good bytes), the response still ends
    properly, its reports before the last are those of the records before the cut, and the
    last report is a failure, whose code is the stream's status in the metrics."""
    if reqs is None:  # the finding itself: good chunks, then a chunk-size line "zz"
        body = b'{"value":{"type":"STRING","data":"a"}}' * 2
        head = b"POST /records HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        reqs = [GenRequest(wire=head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body), method="POST",
                           target="/records", version=11, headers=[], content_length=None,
                           chunked=True, keep_alive=True, expect_continue=False, body=body,
                           head_len=len(head))]
        how, cut_at, brk = "break", len(head) + 3 + len(body) + 2, FRAMING_BREAKS[0]
    reqs = served(reqs)
    victim = reqs[-1]
    has_body = victim.chunked or bool(victim.content_length)
    if victim.target != "/records" or not has_body or (how == "break" and not victim.chunked):
        how = "clean"
    wire = b"".join(r.wire for r in reqs)
    start = len(wire) - len(victim.wire)
    if how != "clean":
        if data is not None:
            # Somewhere in the body, never at its very end (that would end it cleanly).
            cut_at = data.draw(st.integers(victim.head_len, len(victim.wire) - 1), label="cut at")
            brk = data.draw(st.sampled_from(FRAMING_BREAKS), label="break")
        wire = wire[: start + cut_at] + (brk if how == "break" else b"")
    pieces = data.draw(splits(wire, max_pieces=8)) if data is not None else [wire]
    run = ProduceRun(pieces)
    assert run.h.transport.violations == []
    assert run.h.closed
    finals = [r for r in run.responses if r.status != 100]
    assert len(finals) == len(reqs), (finals, reqs)
    statuses: list[int] = []
    for req, resp in zip(reqs, finals, strict=True):
        if req.target != "/records":
            continue
        assert resp.status == 200 and (resp.complete or resp.framing == "close"), resp
        lines = resp.body.split(b"\r\n")
        assert lines[-1] == b"", resp.body[-200:]
        reports = [json.loads(x) for x in lines[:-1]]
        codes = [r["error_code"] for r in reports]
        splitter = _speedups.JsonSplitter()
        items = splitter.feed(req.body)
        if not splitter.failed:
            items += splitter.finish()
        expected = [item_code(i) for i in items]
        if req is victim and how != "clean":
            # Not ended cleanly: the last report is a failure, and stands for what was not read.
            assert codes and codes[-1] not in (200, 40402), reports
            assert set(reports[-1]) == {"error_code", "message"} and reports[-1]["message"]
            if how == "eof":  # (a break's bytes may be read as data: no prefix to compare)
                assert codes[:-1] == expected[: len(codes) - 1], (codes, expected)
            statuses.append(codes[-1])
        else:
            assert codes == expected, (codes, expected)
            statuses.append(400 if splitter.failed else 200)
    counted = sorted(
        status for (endpoint, status), n in run.h.server.http_stats.requests.items()
        if endpoint == "records" for _ in range(n)
    )
    assert counted == sorted(statuses)
