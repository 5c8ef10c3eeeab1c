"""One stream's bug costs that stream only (issue: no report is lost to one stream's error).

Ten v3 streams share one producer and one report batch. A callback of one of them raises,
either inside the compiled report dispatch (its failure metrics) or in the producer's listener
loop (its flush). The other nine get every report, exactly once, in order; the broken one ends
with a report for every record (50003 for those whose outcome was lost, resend), no slot stays
pending, and the error is logged once, naming the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from support.fake_producer import FakeRdProducer
from test_session import FakeStream as Stream

from gateway.kafka.producer import KafkaProducer
from gateway.produce.batch import BatchRequest
from gateway.produce.session import ProduceSession, SessionState
from gateway.stats import ProduceStats, TopicCounters

N = 40  # records per stream
STREAMS = 10
BAD = 3  # the stream whose callback raises


class Splitter:
    def __init__(self, n: int) -> None:
        self.items = [(i, i % 3, None, b"v%d" % i, None, 0, None, "BINARY") for i in range(n)]

    def feed(self, data: Any) -> list[Any]:
        items, self.items = self.items, []
        return items

    def finish(self) -> list[Any]:
        return []


class ExplodingCounters(TopicCounters):
    """Failure metrics that raise: a bug in a callback the compiled dispatch calls."""

    def fail(self, error_code: int, n: int = 1) -> None:
        raise RuntimeError("metrics bug")


class FlakyFlush(ProduceSession):
    """A session whose flush raises once armed: a bug in the producer's listener loop."""

    armed = False

    def flush_reports(self) -> None:
        if self.armed:
            raise RuntimeError("flush bug")
        super().flush_reports()


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def streams(loop: Any, session_cls: type[ProduceSession] = ProduceSession, bad_topic_counters: Any = None):
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp.current
    stats = ProduceStats()
    if bad_topic_counters is not None:
        stats.topics[f"t{BAD}"] = bad_topic_counters
    out = []
    for k in range(STREAMS):
        cls = session_cls if k == BAD else ProduceSession
        stream = Stream()
        s = cls(stream, kp, Splitter(N), cluster_id="c", topic=f"t{k}", partitions=3,
                max_in_flight=1000, stats=stats, client=f"10.0.0.{k}:5000")
        s.on_body(memoryview(b"records"))  # every stream is still being read
        out.append((stream, s))
    return kp, fake, out


def deliver_all(fake: FakeRdProducer, kp: KafkaProducer, fail_every: int = 0) -> None:
    """Acknowledge every record, interleaved across streams, failing every ``fail_every``th."""
    for i in range(len(fake.queued)):
        fake.deliver(i, -185 if fail_every and i % fail_every == 0 else None)  # -185: _MSG_TIMED_OUT
        if i % 50 == 49:
            kp.poll_now()
    kp.poll_now()


def check_the_others(out: list[tuple[Stream, ProduceSession]]) -> None:
    for k, (stream, s) in enumerate(out):
        if k == BAD:
            continue
        reports = stream.reports()
        assert len(reports) == N, f"stream {k}: {len(reports)} reports"
        assert all(r["error_code"] in (200, 50003) for r in reports)
        assert [r["partition_id"] for r in reports if r["error_code"] == 200] == [
            i % 3 for i, r in enumerate(reports) if r["error_code"] == 200
        ]
        assert not stream.ended and s.state is SessionState.READING  # still streaming
        s.on_body_end()
        assert stream.ended and s.state is SessionState.ENDED
        assert len(s.core) == 0 and s.core.pending == 0


def check_the_broken_one(stream: Stream, s: ProduceSession) -> None:
    reports = stream.reports()
    # One report per record read, then one saying where reading stopped; nothing pending.
    assert len(reports) == N + 1
    assert all(r["error_code"] in (200, 50003) for r in reports)
    assert reports[-1]["error_code"] == 50003 and "reading stopped at byte 7" in reports[-1]["message"]
    assert stream.ended and stream.stopped and stream.statuses == [500]
    assert s.state is SessionState.ENDED and len(s.core) == 0 and s.core.pending == 0


def test_a_callback_raising_inside_report_dispatch_ends_its_own_stream_only(loop, caplog) -> None:
    kp, fake, out = streams(loop, bad_topic_counters=ExplodingCounters())
    with caplog.at_level(logging.ERROR, logger="gateway.kafka"):
        deliver_all(fake, kp, fail_every=7)  # failures reach the bad stream's metrics callback
    check_the_others(out)
    stream, s = out[BAD]
    check_the_broken_one(stream, s)
    assert s.core.broken and s.core.broken_failed > 0
    lost = [r for r in stream.reports()[:N] if "internal error" in r.get("message", "")]
    assert len(lost) == s.core.broken_failed  # the records whose outcome was lost: 50003 each
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"v3 stream to topic t{BAD} from 10.0.0.{BAD}:5000" in errors[0].getMessage()
    # The producer goes on: a new stream on it is served.
    stream2 = Stream()
    s2 = ProduceSession(stream2, kp, Splitter(3), cluster_id="c", topic="t9", partitions=3,
                        max_in_flight=10, stats=ProduceStats())
    s2.on_body(memoryview(b"x"))
    s2.on_body_end()
    for i in range(len(fake.queued)):
        if fake.queued[i] is not None:
            fake.deliver(i)
    kp.poll_now()
    assert [r["error_code"] for r in stream2.reports()] == [200, 200, 200] and stream2.ended


def test_a_listener_raising_in_the_producer_loop_ends_its_own_stream_only(loop, caplog) -> None:
    kp, fake, out = streams(loop, session_cls=FlakyFlush)
    stream, s = out[BAD]
    assert isinstance(s, FlakyFlush)
    s.armed = True
    with caplog.at_level(logging.ERROR, logger="gateway.kafka"):
        deliver_all(fake, kp)
    check_the_others(out)
    check_the_broken_one(stream, s)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"topic t{BAD}" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "flush bug" in str(errors[0].exc_info[1])


class Responder:
    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []

    def respond(self, status: int, body: bytes, *, content_type: bytes = b"", close: bool = False,
                detail: str = "") -> None:
        self.answers.append((status, body))


def test_a_batch_request_whose_report_handling_raises_is_answered(loop, caplog) -> None:
    """A request answered as a whole gets its answer: the entries whose outcome was lost are
    failures with 50003."""
    from gateway.produce import JsonSplitter

    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp.current
    stats = ProduceStats()
    stats.topics["b"] = ExplodingCounters()
    conn = Responder()
    req = BatchRequest(conn, kp, lambda: JsonSplitter(1 << 20), cluster_id="c", topic="b",
                       partitions=3, max_entries=10, max_bytes=1 << 20, stats=stats)
    entries = [{"id": f"e{i}", "value": {"type": "STRING", "data": f"v{i}"}} for i in range(4)]
    req.on_body(memoryview(json.dumps({"entries": entries}).encode()))
    req.on_body_end()
    with caplog.at_level(logging.ERROR, logger="gateway.kafka"):
        fake.deliver(0)
        fake.deliver(1, -185)  # its metrics callback raises
        fake.deliver(2)
        kp.poll_now()
    ((status, body),) = conn.answers
    doc = json.loads(body)
    assert status == 207
    assert [e["id"] for e in doc["successes"]] == ["e0"]
    assert {e["id"]: e["error_code"] for e in doc["failures"]} == {"e1": 50003, "e2": 50003, "e3": 50003}
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
