"""Produce session ordering, flow control and failure paths, with a fake librdkafka producer.

The fake (tests/support/fake_producer.py) stands in for the compiled RdProducer only; KafkaProducer (the poll loop, batching,
waiters) and ProduceSession are the real ones."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
from confluent_kafka import KafkaError
from support.fake_producer import FakeRdProducer

from gateway import errors
from gateway.kafka.producer import KafkaProducer
from gateway.produce.items import RecordError
from gateway.produce.session import PAUSE_IN_FLIGHT, PAUSE_KAFKA_QUEUE, ProduceSession
from gateway.stats import ProduceStats


class FakeStream:
    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self.paused = 0
        self.stopped = False
        self.pause_calls: list[tuple[str, int]] = []
        self.access: list[str] = []  # log_access calls: one per stream, at its end
        self.statuses: list[int] = []  # the status each of them logged
        self.write_blocked = False  # the peer stopped reading (transport over high water)

    def write_body(self, data: bytes) -> None:
        assert not self.ended
        self.data += data

    def end_body(self, data: bytes = b"") -> None:
        assert not self.ended
        self.data += data  # (the stream's last output comes with its end)
        self.ended = True

    def pause_reading(self, reason: int) -> None:
        self.paused |= reason
        self.pause_calls.append(("pause", reason))

    def resume_reading(self, reason: int) -> None:
        assert self.paused & reason, "resume of a reason that was not paused"
        self.paused &= ~reason
        self.pause_calls.append(("resume", reason))

    def stop_reading(self) -> None:
        self.stopped = True

    def log_access(self, detail: str, status: int = 200) -> None:
        self.access.append(detail)
        self.statuses.append(status)

    def reports(self) -> list[dict[str, Any]]:
        lines = bytes(self.data).split(b"\r\n")
        assert lines[-1] == b""
        return [json.loads(x) for x in lines[:-1]]


class ListSplitter:
    """Hands out prepared items: one list per feed() call."""

    def __init__(self, batches: list[list[Any]], tail: list[Any] | None = None) -> None:
        self.batches = list(batches)
        self.tail = tail or []

    def feed(self, data: Any) -> list[Any]:
        return self.batches.pop(0) if self.batches else []

    def finish(self) -> list[Any]:
        return self.tail


def rec(i: int, partition: int = -1, key: bytes | None = None, value: bytes | None = b"v") -> tuple:
    return (i, partition, key, value, None, 0, "BINARY" if key is not None else None, "BINARY")


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def make(loop: Any, batches: list[list[Any]], *, max_in_flight: int = 1000, queue_limit: int = 10**6,
         tail: list[Any] | None = None, partitions: int = 3):
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf, queue_limit))
    stream = FakeStream()
    stats = ProduceStats()
    s = ProduceSession(stream, kp, ListSplitter(batches, tail), cluster_id="c1", topic="t",
                       partitions=partitions, max_in_flight=max_in_flight, stats=stats)
    return kp, kp._producer, stream, s, stats


def test_reports_leave_in_send_order_whatever_order_kafka_acknowledges(loop: Any) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    n = 200
    kp, fake, stream, s, _ = make(loop, [[rec(i, partition=i % 3) for i in range(n)]])
    s.on_body(memoryview(b"x"))
    s.on_body_end()
    order = list(range(n))
    rnd.shuffle(order)
    released = 0
    for step, i in enumerate(order):
        fake.deliver(i)
        if step % 17 == 0:
            kp.poll_now()
            got = stream.reports()
            # Only a prefix with every earlier report known may have been written.
            delivered = {order[j] for j in range(step + 1)}
            prefix = 0
            while prefix in delivered:
                prefix += 1
            assert len(got) == prefix, f"seed={seed}"
            released = prefix
    kp.poll_now()
    got = stream.reports()
    assert len(got) == n >= released
    for i, r in enumerate(got):
        assert r["error_code"] == 200
        assert r["partition_id"] == i % 3
    assert stream.ended


def test_success_report_shape_and_field_order(loop: Any) -> None:
    item = (0, 2, b"abc", b"x" * 42, None, 1_763_720_082_123, "BINARY", "JSON")
    kp, fake, stream, s, _ = make(loop, [[item]])
    s.on_body(memoryview(b"x"))
    fake.deliver(0)
    kp.poll_now()
    assert bytes(stream.data) == (
        b'{"error_code":200,"cluster_id":"c1","topic_name":"t","partition_id":2,"offset":0,'
        b'"timestamp":"2025-11-21T10:14:42.123Z","key":{"type":"BINARY","size":3},'
        b'"value":{"type":"JSON","size":42}}\r\n'
    )
    assert not stream.ended  # the body has not ended: the stream stays open


def test_record_errors_get_their_own_report_in_place(loop: Any) -> None:
    items = [rec(0), RecordError(1, 400, "record 1 at byte 9: bad"), rec(2), rec(3, partition=7)]
    kp, fake, stream, s, _ = make(loop, [items])
    s.on_body(memoryview(b"x"))
    s.on_body_end()
    kp.poll_now()
    assert stream.data == b""  # record 0 is not reported yet, so nothing after it may be
    fake.deliver(1)  # the fake's queue index 1 is record 2
    fake.deliver(0)
    kp.poll_now()
    got = stream.reports()
    assert [r["error_code"] for r in got] == [200, 400, 200, 40402]
    assert got[1] == {"error_code": 400, "message": "record 1 at byte 9: bad"}
    assert "partition_id 7 does not exist" in got[3]["message"]
    assert stream.ended


def test_failed_delivery_maps_kafka_errors(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(0), rec(1), rec(2)]])
    s.on_body(memoryview(b"x"))
    s.on_body_end()
    fake.deliver(0, KafkaError(KafkaError._MSG_TIMED_OUT))
    fake.deliver(1, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    fake.deliver(2, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [50003, 413, 40301]
    assert list(stream.reports()[0]) == ["error_code", "message"]


def test_produce_call_errors_are_reported_per_record(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(0)]])
    fake.fail_produce = KafkaError._UNKNOWN_PARTITION
    s.on_body(memoryview(b"x"))
    s.on_body_end()
    assert [r["error_code"] for r in stream.reports()] == [40402]
    assert stream.ended


def test_in_flight_limit_pauses_and_resumes_without_losing_records(loop: Any) -> None:
    n = 50
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(n)]], max_in_flight=8)
    s.on_body(memoryview(b"x"))
    assert stream.paused == PAUSE_IN_FLIGHT
    assert not s.accepting
    assert len(fake.queued) == 8
    delivered = 0
    while delivered < n:
        for i in range(delivered, len(fake.queued)):
            fake.deliver(i)
        delivered = len(fake.queued)
        kp.poll_now()
    assert stream.paused == 0 and s.accepting
    s.on_body_end()
    got = stream.reports()
    assert len(got) == n and all(r["error_code"] == 200 for r in got)
    assert [r["offset"] for r in got] == list(range(n))
    assert stream.ended


def test_full_kafka_queue_pauses_until_reports_make_room(loop: Any) -> None:
    n = 30
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(n)]], queue_limit=10)
    s.on_body(memoryview(b"x"))
    assert stream.paused == PAUSE_KAFKA_QUEUE
    for _ in range(100):
        if not len(fake) and s.accepting:
            break
        for i, q in enumerate(fake.queued):
            if q is not None:
                fake.deliver(i)
        kp.poll_now()
    s.on_body_end()
    kp.poll_now()
    got = stream.reports()
    assert len(got) == n and stream.paused == 0
    assert ("resume", PAUSE_KAFKA_QUEUE) in stream.pause_calls


def test_fatal_splitter_error_stops_reading_and_ends_after_outstanding_reports(loop: Any) -> None:
    items = [rec(0), rec(1), RecordError(2, 400, "record 2 at byte 30: expected '{'", fatal=True)]
    kp, fake, stream, s, _ = make(loop, [items])
    s.on_body(memoryview(b"x"))
    assert stream.stopped
    assert not stream.ended  # records 0 and 1 are still in flight
    fake.deliver(0)
    fake.deliver(1)
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [200, 200, 400]
    assert stream.ended


def test_client_gone_records_in_kafka_still_counted(loop: Any) -> None:
    kp, fake, stream, s, stats = make(loop, [[rec(0), rec(1)]])
    s.on_body(memoryview(b"x"))
    s.on_connection_lost()
    fake.deliver(0)
    fake.deliver(1, KafkaError(KafkaError._MSG_TIMED_OUT))
    kp.poll_now()
    assert stream.data == b"" and not stream.ended
    assert s.finished
    assert (stats.records_ok, stats.records_failed) == (1, 1)


def test_shutdown_fails_parked_records_with_retriable_reports(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(20)]], queue_limit=5)
    s.on_body(memoryview(b"x"))
    s.on_shutdown()
    assert stream.stopped
    for i in range(5):
        fake.deliver(i)
    kp.poll_now()
    got = stream.reports()
    assert [r["error_code"] for r in got] == [200] * 5 + [50003] * 15
    assert stream.ended


def test_a_body_cut_short_ends_with_one_last_failure_report(loop: Any) -> None:
    """The connection stops reading (its framing broke): the records read keep their reports,
    in order; one last report names the reason and the body byte where reading stopped; the
    access log carries its status."""
    kp, fake, stream, s, _ = make(loop, [[rec(0), rec(1)]])
    s.on_body(memoryview(b"x" * 80))
    s.on_body_error(errors.BadRequest("malformed chunked body: bad size (at body byte 99)"))
    assert stream.stopped and not stream.ended  # records 0 and 1 are still with Kafka
    s.on_body(memoryview(b"more"))  # (nothing is read any more)
    s.on_body_end()
    fake.deliver(0)
    fake.deliver(1)
    kp.poll_now()
    got = stream.reports()
    assert [r["error_code"] for r in got] == [200, 200, 400]
    assert got[2]["message"] == (
        "malformed chunked body: bad size (at body byte 99): reading stopped at byte 80 of the "
        "records sent; the records after this report were not read, send them again"
    )
    assert stream.ended and stream.statuses == [400]
    assert stream.access == ["topic=t records=3 ok=2 failed=1"]


def test_a_cut_fails_parked_records_as_retriable_and_logs_its_own_status(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(8)]], queue_limit=5)
    s.on_body(memoryview(b"x" * 10))
    assert not s.accepting  # three records wait for room in librdkafka's queue
    s.on_body_error(errors.ShuttingDown("the gateway is shutting down"))
    for i in range(5):
        fake.deliver(i)
    kp.poll_now()
    got = stream.reports()
    assert [r["error_code"] for r in got] == [200] * 5 + [50003] * 4
    assert got[-1]["message"].startswith(
        "the gateway is shutting down: reading stopped at byte 10 of the records sent; "
    )
    assert stream.ended and stream.statuses == [503]


def test_a_cut_after_the_body_ended_changes_nothing(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(0)]])
    s.on_body(memoryview(b"x"))
    s.on_body_end()
    s.on_body_error(errors.RequestTimeout("idle"))
    fake.deliver(0)
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [200]
    assert stream.ended and stream.statuses == [200]


def test_a_fault_of_ours_ends_the_stream_with_retriable_reports_and_status_500(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(0), rec(1)]])
    s.on_body(memoryview(b"x" * 7))
    fake.deliver(0)
    kp.poll_now()
    s.on_body_error(errors.GatewayBug("internal error of the gateway"))
    got = stream.reports()
    assert [r["error_code"] for r in got] == [200, 50003, 50003]
    assert got[2]["message"].startswith("internal error of the gateway: reading stopped at byte 7;")
    assert stream.ended and stream.stopped and stream.statuses == [500]


def test_a_peer_that_stops_reading_keeps_reports_in_the_window_until_writable(loop: Any) -> None:
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(6)], [rec(i) for i in range(6, 12)]],
                                  max_in_flight=8)
    s.on_body(memoryview(b"x"))
    stream.write_blocked = True
    for i in range(6):
        fake.deliver(i)
    kp.poll_now()
    assert stream.data == b""  # known, but held in the ring while the socket is full
    assert s.in_flight() == 6
    s.on_body(memoryview(b"x"))  # 2 fit the window of 8; the rest wait, reading pauses
    assert stream.paused == PAUSE_IN_FLIGHT and len(fake.queued) == 8
    stream.write_blocked = False
    s.on_writable()
    assert len(stream.reports()) == 6
    assert stream.paused == 0 and len(fake.queued) == 12  # room again: the backlog went on
    for i in range(6, 12):
        fake.deliver(i)
    kp.poll_now()
    s.on_body_end()
    assert [r["error_code"] for r in stream.reports()] == [200] * 12 and stream.ended


def test_window_grows_from_a_few_slots_and_keeps_order(loop: Any) -> None:
    # The ring starts at 16 slots; 1,000 records in flight make it double six times.
    n = 1000
    kp, fake, stream, s, _ = make(loop, [[rec(i) for i in range(n)]], max_in_flight=n)
    s.on_body(memoryview(b"x"))
    assert s.debug_info()["core"]["slots"] == 1024
    for i in reversed(range(n)):
        fake.deliver(i)
        if i:
            kp.poll_now()
            assert stream.data == b""
    kp.poll_now()
    s.on_body_end()
    offsets = [r["offset"] for r in stream.reports()]
    assert offsets == list(reversed(range(n)))  # the fake numbers offsets in delivery order
    assert stream.ended


def test_timestamps_format_like_the_utc_calendar() -> None:
    import time

    from gateway._speedups import format_timestamp

    rnd = random.Random(7)
    samples = [0, 1, 999, 1000, -1, -1000, -1001, 86_399_999, 951_782_400_000, 253_402_300_799_999,
               -62_135_596_800_000]  # 0001-01-01
    samples += [rnd.randrange(-62_135_596_800_000, 253_402_300_800_000) for _ in range(2000)]
    for ms in samples:
        sec, milli = divmod(ms, 1000)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        expected = expected.rjust(19, "0") + ".%03dZ" % milli
        assert format_timestamp(ms).decode() == expected, ms


def replaceable(loop: Any, batches: list[list[Any]]) -> tuple[KafkaProducer, list[FakeRdProducer], FakeStream,
                                                              ProduceSession]:
    """A session whose producer may be replaced: ``made`` lists every fake producer built."""
    made: list[FakeRdProducer] = []

    def factory(conf: dict[str, Any]) -> FakeRdProducer:
        made.append(FakeRdProducer(conf))
        return made[-1]

    kp = KafkaProducer({}, loop, producer_factory=factory)
    stream = FakeStream()
    s = ProduceSession(stream, kp, ListSplitter(batches), cluster_id="c", topic="t", partitions=1,
                       max_in_flight=100, stats=ProduceStats())
    return kp, made, stream, s


def test_fenced_producer_is_replaced_and_its_records_are_retriable(loop: Any) -> None:
    kp, made, stream, s = replaceable(loop, [[rec(0), rec(1)], [rec(2)]])
    s.on_body(memoryview(b"x"))
    made[0].deliver(0, KafkaError(KafkaError.PRODUCER_FENCED))
    made[0].deliver(1)
    kp.poll_now()
    assert len(made) == 2, "the fenced producer was not replaced"
    s.on_body(memoryview(b"x"))
    assert len(made[1].queued) == 1  # later records go to the new producer
    made[1].deliver(0)
    s.on_body_end()
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [50003, 200, 200]


def test_a_run_of_timeouts_with_nothing_delivered_replaces_the_producer(loop: Any, monkeypatch: Any) -> None:
    from gateway.kafka import producer as producer_module

    monkeypatch.setattr(producer_module, "TIMEOUT_RUN", 5)
    kp, made, stream, s = replaceable(loop, [[rec(i) for i in range(12)], [rec(12)]])
    s.on_body(memoryview(b"x"))
    for i in range(4):
        made[0].deliver(i, KafkaError(KafkaError._MSG_TIMED_OUT))
    kp.poll_now()
    made[0].deliver(4)  # a batch with a delivered record breaks the run
    kp.poll_now()
    for i in range(5, 9):
        made[0].deliver(i, KafkaError(KafkaError._MSG_TIMED_OUT))
    kp.poll_now()
    assert len(made) == 1
    for i in range(9, 12):
        made[0].deliver(i, KafkaError(KafkaError._MSG_TIMED_OUT))
    kp.poll_now()  # 7 timeouts in a row, nothing delivered: a new producer
    assert len(made) == 2
    s.on_body(memoryview(b"x"))
    assert len(made[1].queued) == 1
    made[1].deliver(0)
    s.on_body_end()
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [50003] * 4 + [200] + [50003] * 7 + [200]


class Responder:
    """The connection as a request answered whole sees it."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, bool]] = []

    def respond(self, status: int, body: bytes, *, content_type: bytes = b"", close: bool = False,
                detail: str = "") -> None:
        self.answers.append((status, body, close))


@pytest.mark.parametrize("error", [
    errors.BadRequest("malformed chunked body: chunk size must be 1 to 16 hex digits, got b'zz' (at body byte 40)"),
    errors.HeadersTooLarge("chunked trailer section larger than 16384 bytes"),
    errors.RequestTimeout("the client sent nothing of the body for 300 s (--stream-idle-timeout)"),
    errors.ShuttingDown("the gateway is shutting down"),
], ids=["framing", "trailer", "idle", "shutdown"])
def test_a_request_answered_whole_answers_a_body_cut_short_with_the_reason(loop: Any, error: Any) -> None:
    from gateway.produce import JsonSplitter
    from gateway.produce.batch import BatchRequest

    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    conn = Responder()
    req = BatchRequest(conn, kp, lambda: JsonSplitter(1 << 20), cluster_id="c", topic="t",
                       partitions=3, max_entries=10, max_bytes=1 << 20, stats=ProduceStats())
    req.on_body(memoryview(b'{"entries":[{"id":"a","value":null}'))
    req.on_body_error(error)
    assert conn.answers == [(error.status, errors.error_body(error.error_code, error.message), True)]
    req.on_body_end()  # (nothing more: the request is over)
    req.on_shutdown()
    assert len(conn.answers) == 1 and kp.current.queued == []  # nothing was produced
