"""The v1 consume pieces below HTTP: request parsing and the consumer pool (its bounds with a fake consumer; its reads against the session's Tansu broker and against
librdkafka's mock cluster, which answers like Apache Kafka: OFFSET_OUT_OF_RANGE, true
ListOffsets); what a read that fails answers (503 when Kafka cannot be reached or does not know
the partition, 404 only from the cluster's listing)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop
from confluent_kafka import Producer

from gateway import errors
from gateway._speedups import RdKafkaError
from gateway.api.consume_v1 import DEFAULT_MAX_BYTES, MAX_BYTES_CEILING, parse_request
from gateway.consume import ConsumeResult, ConsumerPool, ConsumerPoolBusy, OffsetOutOfRangeError
from gateway.consume.pool import NotKnownToKafka


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.close()


# -- parsing ----------------------------------------------------------------------------------
P = {"topic": "t", "partition": "2"}


def test_parse_defaults_and_values() -> None:
    r = parse_request(P, "offset=5")
    assert (r.topic, r.partition, r.offset, r.count, r.max_bytes) == ("t", 2, 5, 100, DEFAULT_MAX_BYTES)
    r = parse_request(P, "count=7&offset=0&max_bytes=10&other=x")
    assert (r.offset, r.count, r.max_bytes) == (0, 7, 10)
    assert parse_request(P, "offset=-3").offset == -3  # an integer: 416 later, not 400
    assert parse_request(P, "offset=1&offset=2").offset == 1  # the first, like JAX-RS
    assert parse_request(P, "offset=1&max_bytes=999999999999").max_bytes == MAX_BYTES_CEILING
    assert parse_request(P, "offset=1&count=10000").count == 10000


@pytest.mark.parametrize(
    "partition, query, exc, code",
    [
        ("x", "offset=0", errors.NotFound, 404),
        ("1.0", "offset=0", errors.NotFound, 404),
        ("", "offset=0", errors.NotFound, 404),
        ("-1", "offset=0", errors.PartitionNotFound, 40402),
        ("0", "", errors.BadRequest, 400),
        ("0", "offset=", errors.BadRequest, 400),
        ("0", "offset=a", errors.BadRequest, 400),
        ("0", "offset=1e3", errors.BadRequest, 400),
        ("0", "offset=0&count=0", errors.BadRequest, 400),
        ("0", "offset=0&count=10001", errors.BadRequest, 400),
        ("0", "offset=0&count=", errors.BadRequest, 400),
        ("0", "offset=0&max_bytes=0", errors.BadRequest, 400),
        ("0", "offset=0&max_bytes=-1", errors.BadRequest, 400),
    ],
)
def test_parse_errors(partition: str, query: str, exc: type, code: int) -> None:
    with pytest.raises(exc) as info:
        parse_request({"topic": "t", "partition": partition}, query)
    assert info.value.error_code == code


# -- the pool's bounds, with a consumer that answers when told ---------------------------------
def offsets(result: ConsumeResult) -> list[int]:
    records = json.loads(result.body)
    assert len(records) == result.records
    return [r["offset"] for r in records]


class FakeConsumer:
    """RdConsumer's surface: holds each fetch until ``release`` is set, then answers one record
    (value ``v<offset>``) and the end of the partition."""

    release = threading.Event()
    created: list[FakeConsumer] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self.assigned: list[tuple[str, int, int]] = []
        self.pending: list[int] = []
        self.pos = -1001
        self.ends: list[tuple[str, int, int]] = []
        self.fetched_bytes = 0
        self.closed = False
        FakeConsumer.created.append(self)

    def assign(self, parts: list[tuple[str, int, int]]) -> None:
        self.assigned = list(parts)
        self.pending = [parts[0][2]] if parts else []
        self.pos = parts[0][2] if parts else -1001

    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int, **kw: Any) -> tuple[bytes, int]:
        if not FakeConsumer.release.wait(timeout_ms / 1000) or not self.pending:
            return b"[]", 0
        topic, partition, _ = self.assigned[0]
        offset = self.pending.pop(0)
        self.pos = offset + 1
        self.ends.append((topic, partition, self.pos))
        value = base64.b64encode(b"v%d" % offset).decode()
        self.fetched_bytes = 2
        return (b'[{"key":null,"value":"%s","partition":%d,"offset":%d}]' % (value.encode(), partition, offset), 1)

    def eof(self) -> list[tuple[str, int, int]]:
        ends, self.ends = self.ends, []
        return ends

    def take_errors(self) -> list[tuple[int, str]]:
        return []

    def watermarks(self, topic: str, partition: int, cached: bool, timeout_ms: int = 0) -> tuple[int, int]:
        return 0, self.pos

    def position(self, parts: list[tuple[str, int]]) -> list[int]:
        return [self.pos for _ in parts]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake() -> Iterator[type[FakeConsumer]]:
    FakeConsumer.release = threading.Event()
    FakeConsumer.created = []
    yield FakeConsumer
    FakeConsumer.release.set()


def test_required_settings_win_over_the_callers(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({"bootstrap.servers": "x:1", "enable.auto.commit": True, "fetch.wait.max.ms": 7},
                        loop, size=1, consumer_factory=fake)
    fake.release.set()
    result = loop.run_until_complete(pool.fetch("t", 0, 3, 10, 100))
    assert json.loads(result.body) == [{"key": None, "value": base64.b64encode(b"v3").decode(),
                                        "partition": 0, "offset": 3}]
    conf = fake.created[0].conf
    assert conf["enable.auto.commit"] is False and conf["enable.partition.eof"] is True
    assert conf["auto.offset.reset"] == "error" and conf["fetch.wait.max.ms"] == 7
    loop.run_until_complete(pool.close())
    assert fake.created[0].closed


def test_requests_beyond_the_queue_bound_are_503_50301(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({}, loop, size=2, max_queued=3, consumer_factory=fake)
    futs = [pool.submit("t", 0, i, 10, 100) for i in range(5)]  # 2 running + 3 waiting
    with pytest.raises(ConsumerPoolBusy) as info:
        pool.submit("t", 0, 9, 10, 100)
    assert (info.value.status, info.value.error_code) == (503, 50301)
    fake.release.set()
    results = loop.run_until_complete(asyncio.gather(*futs))
    assert [offsets(r) for r in results] == [[0], [1], [2], [3], [4]]
    assert pool.outstanding == 0
    assert offsets(loop.run_until_complete(pool.fetch("t", 0, 9, 10, 100))) == [9]  # room again
    assert len(fake.created) == 2  # the same two consumers served all seven
    loop.run_until_complete(pool.close())


def test_a_request_that_waits_too_long_for_a_consumer_is_503(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({}, loop, size=1, queue_timeout=0.05, consumer_factory=fake)
    first = pool.submit("t", 0, 0, 10, 100)
    second = pool.submit("t", 0, 1, 10, 100)
    loop.run_until_complete(asyncio.sleep(0.1))
    fake.release.set()
    assert offsets(loop.run_until_complete(first)) == [0]
    with pytest.raises(ConsumerPoolBusy):
        loop.run_until_complete(second)
    loop.run_until_complete(pool.close())


def test_a_cancelled_request_that_has_not_started_is_skipped(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({}, loop, size=1, consumer_factory=fake)
    first = pool.submit("t", 0, 0, 10, 100)
    second = pool.submit("t", 0, 1, 10, 100)
    second.cancel()
    fake.release.set()
    assert offsets(loop.run_until_complete(first)) == [0]
    loop.run_until_complete(asyncio.sleep(0.05))
    assert pool.outstanding == 0
    loop.run_until_complete(pool.close())


def test_close_fails_queued_requests_and_refuses_new_ones(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({}, loop, size=1, consumer_factory=fake)
    first = pool.submit("t", 0, 0, 10, 100)
    second = pool.submit("t", 0, 1, 10, 100)
    loop.run_until_complete(asyncio.sleep(0.02))
    closing = loop.create_task(pool.close())
    loop.run_until_complete(asyncio.sleep(0))  # close() has begun: the pool is closed
    fake.release.set()
    loop.run_until_complete(closing)
    assert offsets(loop.run_until_complete(first)) == [0]  # the running read finishes
    with pytest.raises(errors.ShuttingDown):
        loop.run_until_complete(second)
    with pytest.raises(errors.ShuttingDown):
        pool.submit("t", 0, 2, 10, 100)


def test_a_consumer_that_cannot_be_created_fails_requests_with_50001(loop: asyncio.AbstractEventLoop) -> None:
    def broken(conf: dict[str, Any]) -> Any:
        raise ValueError("No such configuration property: nonsense")

    pool = ConsumerPool({}, loop, size=1, consumer_factory=broken)
    with pytest.raises(errors.KafkaRequestFailed) as info:
        loop.run_until_complete(pool.fetch("t", 0, 0, 10, 100))
    assert "nonsense" in info.value.message and info.value.error_code == 50001
    loop.run_until_complete(pool.close())


# -- reads against real protocol implementations ----------------------------------------------
def _produce(bootstrap_or_mock: dict[str, Any], topic: str, plan: list[tuple[int, int]]) -> dict[int, list[bytes]]:
    """Batches (partition, n) written with a long linger: the records of one share a batch."""
    p = Producer({**bootstrap_or_mock, "linger.ms": 100})
    truth: dict[int, list[bytes]] = {}
    rnd = random.Random(3)
    for partition, n in plan:
        for _ in range(n):
            v = rnd.randbytes(rnd.randrange(1, 64))
            p.produce(topic, value=v, partition=partition)
            truth.setdefault(partition, []).append(v)
        assert p.flush(10) == 0
    return truth


def _check_every_offset(loop: asyncio.AbstractEventLoop, pool: ConsumerPool, topic: str, truth: dict[int, list[bytes]]) -> None:
    for partition, values in truth.items():
        end = len(values)
        for offset in range(end + 1):
            got = json.loads(loop.run_until_complete(pool.fetch(topic, partition, offset, 10_000, 1 << 20)).body)
            assert [r["offset"] for r in got] == list(range(offset, end)), (partition, offset)
            assert [base64.b64decode(r["value"]) for r in got] == values[offset:]
        for offset in (end + 1, end + 50, -1):
            with pytest.raises(OffsetOutOfRangeError) as info:
                loop.run_until_complete(pool.fetch(topic, partition, offset, 10, 1 << 20))
            assert (info.value.earliest, info.value.end) == (0, end)
            assert (info.value.status, info.value.error_code) == (416, 41601)


def test_reads_against_tansu_with_an_impatient_suspicion(loop: asyncio.AbstractEventLoop, broker: Any) -> None:
    """With no patience at all, every read first suspects an out-of-range offset: the measured
    range must clear every offset in range, and the records must still be exact."""
    from support.kafka import create_topic

    topic = create_topic(broker.bootstrap, f"pool-tansu-{random.randrange(1 << 30)}", 2)
    truth = _produce({"bootstrap.servers": broker.bootstrap}, topic, [(0, 3), (0, 5), (1, 4), (0, 2)])
    pool = ConsumerPool({"bootstrap.servers": broker.bootstrap}, loop, size=2, suspect_after=0.0)
    try:
        _check_every_offset(loop, pool, topic, truth)
    finally:
        loop.run_until_complete(pool.close())


def test_reads_against_a_kafka_that_reports_out_of_range(loop: asyncio.AbstractEventLoop) -> None:
    """librdkafka's mock cluster answers OFFSET_OUT_OF_RANGE like Apache Kafka. With a suspicion
    window longer than the whole test, a 416 can only come from that answer."""
    mock = Producer({"test.mock.num.brokers": 1})
    brokers = mock.list_topics(timeout=10).brokers
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    truth = _produce({"bootstrap.servers": bootstrap}, "mocked", [(0, 3), (0, 4), (1, 1)])
    pool = ConsumerPool({"bootstrap.servers": bootstrap}, loop, size=2, suspect_after=600.0)
    try:
        t0 = time.monotonic()
        _check_every_offset(loop, pool, "mocked", truth)
        assert time.monotonic() - t0 < 60
    finally:
        loop.run_until_complete(pool.close())
        mock.flush(1)


# -- what a read that fails answers: "not found" never comes from the consumer ----------------
class SilentConsumer(FakeConsumer):
    """A Kafka that never answers a fetch (a broker down or hung)."""

    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int, **kw: Any) -> tuple[bytes, int]:
        time.sleep(min(timeout_ms / 1000, 0.01))
        return b"[]", 0


class UnknowingConsumer(SilentConsumer):
    """librdkafka while the cluster is unreachable: it says at once, from its own state, that it
    does not know the partition (measured against a killed Tansu: ``_UNKNOWN_PARTITION``)."""

    def watermarks(self, topic: str, partition: int, cached: bool, timeout_ms: int = 0) -> tuple[int, int]:
        raise RdKafkaError(-190, "Failed to get watermark offsets: Local: Unknown partition")


def test_a_kafka_that_does_not_answer_is_503_50003(loop: asyncio.AbstractEventLoop) -> None:
    pool = ConsumerPool({}, loop, size=1, request_timeout=0.3, consumer_factory=SilentConsumer)
    with pytest.raises(errors.KafkaUnavailable) as info:
        loop.run_until_complete(pool.fetch("t", 2, 0, 10, 100))
    assert (info.value.status, info.value.error_code) == (503, 50003)
    assert "t[2]" in info.value.message
    loop.run_until_complete(pool.close())


def test_a_partition_the_client_does_not_know_is_503_not_404(loop: asyncio.AbstractEventLoop) -> None:
    pool = ConsumerPool({}, loop, size=1, consumer_factory=UnknowingConsumer)
    with pytest.raises(NotKnownToKafka) as info:
        loop.run_until_complete(pool.fetch("t", 1, 0, 10, 100))
    assert (info.value.status, info.value.error_code) == (503, 50003)
    assert (info.value.topic, info.value.partition) == ("t", 1)
    assert "partition 1" in info.value.message
    loop.run_until_complete(pool.close())


def test_renew_ends_reads_in_progress_and_replaces_every_consumer(loop: asyncio.AbstractEventLoop, fake: type[FakeConsumer]) -> None:
    pool = ConsumerPool({}, loop, size=1, consumer_factory=fake)
    reading = pool.submit("t", 0, 0, 10, 100)  # nothing arrives until fake.release is set
    loop.run_until_complete(asyncio.sleep(0.1))
    started = time.monotonic()
    pool.renew()
    with pytest.raises(errors.KafkaUnavailable) as info:
        loop.run_until_complete(asyncio.wait_for(reading, 5))
    assert (info.value.status, info.value.error_code) == (503, 50003)
    assert time.monotonic() - started < 2  # not the request timeout (5 s)
    fake.release.set()
    assert offsets(loop.run_until_complete(pool.fetch("t", 0, 5, 10, 100))) == [5]
    assert len(fake.created) == 2  # the read after renew() had a new consumer
    assert fake.created[0].closed and not fake.created[1].closed
    loop.run_until_complete(pool.close())


class _Conn:
    def __init__(self) -> None:
        self.answers: list[errors.GatewayError] = []

    def pending(self, head: Any) -> bool:
        return True

    def respond_error(self, exc: errors.GatewayError) -> None:
        self.answers.append(exc)


class _Metadata:
    """The cluster's listing after a refresh: ``topics`` (None: no metadata at all)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, topics: dict[str, int] | None, last_error: str | None) -> None:
        self.loop = loop
        self.info = SimpleNamespace(topics=topics) if topics is not None else None
        self.last_error = last_error
        self.refreshes = 0

    def refresh_for_miss(self) -> asyncio.Future[Any]:
        self.refreshes += 1
        fut = self.loop.create_future()
        fut.set_result(self.info if self.last_error is None else None)
        return fut


@pytest.mark.parametrize(
    ("topics", "last_error", "status", "code"),
    [
        ({"other": 1}, None, 404, 40401),  # the cluster's fresh listing has no such topic
        ({"t": 1}, None, 404, 40402),  # ... has the topic with fewer partitions
        ({"t": 3}, None, 503, 50003),  # ... has the partition: Kafka's client could not tell
        ({"t": 3}, "KafkaError{code=_TRANSPORT}", 503, 50003),  # the refresh failed
        (None, "KafkaError{code=_TRANSPORT}", 503, 50003),  # no metadata at all
    ],
)
def test_the_endpoint_says_not_found_only_when_the_clusters_listing_does(
    loop: asyncio.AbstractEventLoop, topics: dict[str, int] | None, last_error: str | None, status: int, code: int
) -> None:
    from gateway.api.consume_v1 import _answer

    metadata = _Metadata(loop, topics, last_error)
    conn = _Conn()
    fut = loop.create_future()
    fut.set_exception(NotKnownToKafka("t", 1, "Local: Unknown partition"))
    _answer(SimpleNamespace(metadata=metadata), conn, None, fut)  # type: ignore[arg-type]
    loop.run_until_complete(asyncio.sleep(0.01))  # the refresh's callbacks
    assert metadata.refreshes == 1
    assert [(a.status, a.error_code) for a in conn.answers] == [(status, code)]


def test_a_partition_read_front_to_back_continues_each_consumers_cursor(loop: asyncio.AbstractEventLoop, broker: Any) -> None:
    """Reads that each start where the previous one stopped get every record once, in order;
    once the consumer has prefetched, such a read is answered at once on the loop (its future
    is done when submit returns) from what the consumer has queued."""
    from support.kafka import create_topic

    topic = create_topic(broker.bootstrap, f"pool-cursor-{random.randrange(1 << 30)}", 1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
    for i in range(3000):
        p.produce(topic, value=b"%d" % i, partition=0)
    assert p.flush(10) == 0
    pool = ConsumerPool({"bootstrap.servers": broker.bootstrap}, loop, size=2)
    try:
        offset = 0
        at_once = 0
        while True:
            fut = pool.submit(topic, 0, offset, 100, 1 << 20)
            at_once += fut.done()
            got = json.loads(loop.run_until_complete(fut).body)
            if not got:
                break
            assert [r["offset"] for r in got] == list(range(offset, offset + len(got)))
            assert [base64.b64decode(r["value"]) for r in got] == [b"%d" % o for o in range(offset, offset + len(got))]
            offset += len(got)
        assert offset == 3000
        assert at_once > 10
    finally:
        loop.run_until_complete(pool.close())
