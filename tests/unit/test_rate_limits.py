"""Produce limits: token buckets, per-principal and global allowances, concurrency slots, and
the v3 session's in-stream 429, 413 and 408 reports (fake producer)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.fake_producer import FakeRdProducer
from test_session import FakeStream, ListSplitter, rec

from gateway.kafka.producer import KafkaProducer
from gateway.limits import ConcurrencyLimiter, RateLimiter, RateSettings, TokenBucket
from gateway.produce.session import ProduceSession
from gateway.stats import ProduceStats


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_holds_one_second_and_refills_at_its_rate() -> None:
    b = TokenBucket(100, now=0.0)
    assert b.level(0.0) == 100
    b.take(100, 0.0)
    assert b.level(0.0) == 0
    assert b.level(0.25) == pytest.approx(25)
    assert b.level(10.0) == 100  # never more than one second's worth


def test_allowance_is_the_smallest_of_the_principal_and_global_buckets() -> None:
    clock = Clock()
    rl = RateLimiter(RateSettings(enabled=True, records_per_principal=10, records_global=15,
                                  bytes_per_principal=1000, bytes_global=10_000), clock)
    assert rl.allowance("alice") == (10, 1000)
    rl.charge("alice", 10, 400)
    assert rl.allowance("alice") == (0, 600)
    assert rl.allowance("bob") == (5, 1000)  # the global bucket has 5 records left
    rl.charge("bob", 5, 10)
    assert rl.allowance("carol") == (0, 1000)
    clock.t += 0.5
    assert rl.allowance("alice") == (5, 1000)  # 7.5 global, 5 for alice


def test_rates_off_means_no_allowance_limit() -> None:
    rl = RateLimiter(RateSettings(enabled=False, records_per_principal=1))
    records, nbytes = rl.allowance("x")
    assert records > 10**15 and nbytes > 10**15


def test_concurrency_slots_per_principal() -> None:
    c = ConcurrencyLimiter(2)
    assert c.acquire("a") and c.acquire("a")
    assert not c.acquire("a")
    assert c.acquire("b")
    c.release("a")
    assert c.acquire("a")
    assert c.refused == 1
    assert ConcurrencyLimiter(0).acquire("a")  # 0: no limit


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def session(loop: Any, batches: list[list[Any]], **kw: Any) -> tuple[KafkaProducer, Any, FakeStream, ProduceSession]:
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    stream = FakeStream()
    s = ProduceSession(stream, kp, ListSplitter(batches), cluster_id="c", topic="t", partitions=3,
                       max_in_flight=1000, stats=ProduceStats(), **kw)
    return kp, kp._producer, stream, s


def test_records_over_the_rate_get_429_reports_in_place_and_the_stream_goes_on(loop: Any) -> None:
    clock = Clock()
    rl = RateLimiter(RateSettings(enabled=True, records_per_principal=3, records_global=100,
                                  bytes_per_principal=10**6, bytes_global=10**6), clock)
    kp, fake, stream, s = session(loop, [[rec(i) for i in range(5)], [rec(i) for i in range(5, 8)]],
                                  rates=rl, principal="alice")
    s.on_body(memoryview(b"x"))
    assert len(fake.queued) == 3  # two records dropped, never handed to Kafka
    clock.t += 1.0  # the bucket refills
    s.on_body(memoryview(b"x"))
    assert len(fake.queued) == 6
    for i in range(6):
        fake.deliver(i)
    kp.poll_now()
    s.on_body_end()
    codes = [r["error_code"] for r in stream.reports()]
    assert codes == [200, 200, 200, 429, 429, 200, 200, 200]
    assert "rate limit" in stream.reports()[3]["message"]
    assert stream.ended


def test_byte_rate_counts_key_and_value_bytes(loop: Any) -> None:
    rl = RateLimiter(RateSettings(enabled=True, records_per_principal=100, records_global=100,
                                  bytes_per_principal=10, bytes_global=10**6), Clock())
    items = [rec(0, value=b"12345"), rec(1, key=b"k", value=b"1234"), rec(2, value=b"1")]
    kp, fake, stream, s = session(loop, [items], rates=rl, principal="p")
    s.on_body(memoryview(b"x"))
    assert [q[1] for q in fake.queued] == [b"12345", b"1234"]  # the third would be 11 bytes
    for i in range(2):
        fake.deliver(i)
    kp.poll_now()
    s.on_body_end()
    assert [r["error_code"] for r in stream.reports()] == [200, 200, 429]


def test_a_chunked_body_over_the_size_limit_ends_with_one_413_report(loop: Any) -> None:
    from gateway._speedups import JsonSplitter

    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp._producer
    stream = FakeStream()
    rec_bytes = b'{"value":{"type":"STRING","data":"abc"}}'
    s = ProduceSession(stream, kp, JsonSplitter(), cluster_id="c", topic="t", partitions=1,
                       max_in_flight=100, stats=ProduceStats(), max_body_bytes=len(rec_bytes) * 2 + 5)
    s.on_body(memoryview(rec_bytes * 2))
    s.on_body(memoryview(rec_bytes))  # crosses the limit inside this record
    assert stream.stopped
    assert len(fake.queued) == 2
    fake.deliver(0)
    fake.deliver(1)
    kp.poll_now()
    reports = stream.reports()
    assert [r["error_code"] for r in reports] == [200, 200, 413]
    assert "limit" in reports[2]["message"] and stream.ended


def test_a_stream_past_its_maximum_duration_gets_408_and_ends(loop: Any) -> None:
    async def main() -> tuple[FakeStream, Any]:
        kp, fake, stream, s = session(loop, [[rec(0), rec(1)]], max_duration=0.05)
        s.on_body(memoryview(b"x"))
        await asyncio.sleep(0.1)
        assert stream.stopped and not stream.ended  # two records still with Kafka
        fake.deliver(0)
        fake.deliver(1)
        kp.poll_now()
        return stream, fake

    stream, _ = loop.run_until_complete(main())
    reports = stream.reports()
    assert [r["error_code"] for r in reports] == [200, 200, 408]
    assert "maximum" in reports[2]["message"]
    assert stream.ended
