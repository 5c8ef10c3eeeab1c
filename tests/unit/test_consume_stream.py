"""Streaming consume's machinery (gateway.consume.stream) with a fake consumer
(tests/support/fake_rdconsumer.py) and a fake connection: what a client of the stream would
read, when offsets are stored (only what went to the socket), back-pressure, the ends; and the
endpoint's query parsing (gateway.api.consume_stream)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.fake_rdconsumer import FakeCluster, FakeRdConsumer

from gateway import errors
from gateway._speedups import RdKafkaError
from gateway.api.consume_stream import parse_query
from gateway.consume import stream as stream_mod
from gateway.consume.stream import (
    OFFSET_BEGINNING,
    OFFSET_END,
    ConsumeStream,
    StreamRegistry,
    StreamRequest,
    consumer_config,
)

TOPIC = "events"


class FakeSink:
    """The connection as the stream sees it. ``buffered``: bytes the transport still holds
    (not yet handed to the socket); ``lost``: the connection is gone."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.written = 0
        self.buffered = 0
        self.hold = False  # writes stay in the transport's buffer
        self.write_blocked = False
        self.ended = False
        self.lost = False
        self.access: list[tuple[str, int]] = []

    @property
    def flushed(self) -> int:
        return -1 if self.lost else self.written - self.buffered

    def write_body(self, data: bytes) -> None:
        assert not self.ended
        self.data += data
        self.written += len(data) + 10  # (as if framed)
        if self.hold:
            self.buffered += len(data) + 10

    def end_body(self) -> None:
        assert not self.ended
        self.ended = True

    def log_access(self, detail: str, status: int = 200) -> None:
        self.access.append((detail, status))

    def drain(self) -> None:
        self.buffered = 0

    def lines(self) -> list[dict[str, Any]]:
        text = self.data.decode()
        assert text == "" or text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


def run(body: Callable[[asyncio.AbstractEventLoop], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(asyncio.get_running_loop())

    asyncio.run(main())


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def make(loop: asyncio.AbstractEventLoop, cluster: FakeCluster, **kw: Any) -> StreamRegistry:
    return StreamRegistry(loop, {"bootstrap.servers": "x"}, factory=cluster.factory,
                          formats=(FakeRdConsumer.FORMAT_STREAM_BINARY, FakeRdConsumer.FORMAT_STREAM_JSON),
                          threads=1, **kw)


async def opened(registry: StreamRegistry, req: StreamRequest, sink: FakeSink
                 ) -> tuple[ConsumeStream, FakeRdConsumer]:
    stream, fut = registry.open(req, sink)
    consumer = await fut
    stream.start(consumer)
    assert isinstance(consumer, FakeRdConsumer)
    return stream, consumer


def cluster_with(partitions: int = 2, records: int = 0, size: int = 10) -> FakeCluster:
    c = FakeCluster()
    c.create(TOPIC, partitions)
    for i in range(records):
        c.produce(TOPIC, i % partitions, b"v%0*d" % (size - 1, i), key=b"k%d" % i)
    return c


def offsets_of(lines: list[dict[str, Any]], partition: int) -> list[int]:
    return [r["offset"] for r in lines if r.get("partition_id") == partition]


# -- records in order, in the v3 shape ----------------------------------------------------------
def test_records_come_in_order_as_they_arrive_in_the_v3_shape() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(2)
        cluster.produce(TOPIC, 0, b"hello", key=b"k", headers=[("h", b"x"), ("n", None)])
        reg = make(loop, cluster)
        sink = FakeSink()
        _, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING))), sink)
        await turns()
        assert sink.lines() == [{
            "topic_name": TOPIC, "partition_id": 0, "offset": 0, "timestamp": "2025-12-02T07:00:00.123Z",
            "key": {"type": "BINARY", "data": "aw=="}, "value": {"type": "BINARY", "data": "aGVsbG8="},
            "headers": [{"name": "h", "value": "eA=="}, {"name": "n", "value": None}],
        }]
        # Records that come later are written as they come (the consumer's fd wakes the loop).
        for i in range(5):
            cluster.produce(TOPIC, 1, b"%d" % i)
        await until(lambda: len(sink.lines()) == 6)
        assert offsets_of(sink.lines(), 1) == [0, 1, 2, 3, 4]
        assert not sink.ended
        assert ("fetch", (stream_mod.SLICE_RECORDS, stream_mod.SLICE_BYTES, 7, False)) in consumer.calls

    run(body)


def test_json_format_and_a_record_that_is_not_json_ends_the_stream_before_it() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1)
        cluster.produce(TOPIC, 0, b'{"n":1}', key=b'"a"')
        cluster.produce(TOPIC, 0, b"not json")
        cluster.produce(TOPIC, 0, b"[2]")
        reg = make(loop, cluster)
        sink = FakeSink()
        _, consumer = await opened(reg, StreamRequest(TOPIC, json=True, start=((0, OFFSET_BEGINNING),)), sink)
        await until(lambda: sink.ended)
        lines = sink.lines()
        assert lines[0]["key"] == {"type": "JSON", "data": "a"}
        assert lines[0]["value"] == {"type": "JSON", "data": {"n": 1}}
        assert lines[1]["error_code"] == 50002
        assert "offset 1" in lines[1]["message"] and "format=binary" in lines[1]["message"]
        assert len(lines) == 2
        assert sink.access[0][1] == 500
        await until(lambda: consumer.closed)

    run(body)


@pytest.mark.parametrize("drained", [True, False])
def test_a_group_never_commits_the_record_that_could_not_be_written(drained: bool) -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1)
        for v in (b"1", b"2", b"not json", b"4"):
            cluster.produce(TOPIC, 0, v)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.hold = not drained  # the first records are still in the buffer at the error
        _, consumer = await opened(reg, StreamRequest(TOPIC, json=True, group="g", reset="earliest"), sink)
        await turns()
        assert [r.get("offset", r.get("error_code")) for r in sink.lines()] == [0, 1, 50002]
        sink.drain()
        await until(lambda: consumer.closed)
        # The next member starts at the bad record (or before it): never after it.
        assert cluster.committed == ({("g", TOPIC, 0): 2} if drained else {})

    run(body)


def test_an_explicit_offset_out_of_range_ends_the_stream_with_41601() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=3)
        reg = make(loop, cluster)
        sink = FakeSink()
        await opened(reg, StreamRequest(TOPIC, start=((0, 10),)), sink)
        await until(lambda: sink.ended)
        (line,) = sink.lines()
        assert line["error_code"] == 41601
        assert list(line) == ["error_code", "message"]

    run(body)


def test_slices_are_bounded_and_the_loop_runs_between_them() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=10_000)
        cluster.prefetch = 100_000
        reg = make(loop, cluster)
        sink = FakeSink()
        writes: list[int] = []
        real = sink.write_body
        sink.write_body = lambda data: (writes.append(data.count(b"\n")), real(data))  # type: ignore[method-assign]
        other_ran = []
        stream, fut = reg.open(StreamRequest(TOPIC, start=((0, OFFSET_BEGINNING),)), sink)
        consumer = await fut
        loop.call_soon(lambda: other_ran.append(len(writes)))
        stream.start(consumer)
        # One slice at once; the rest only on later turns, after other callbacks had theirs.
        assert writes == [stream_mod.SLICE_RECORDS]
        await until(lambda: sum(writes) == 10_000)
        assert other_ran == [1]
        assert max(writes) <= stream_mod.SLICE_RECORDS
        assert offsets_of(sink.lines(), 0) == list(range(10_000))

    run(body)


# -- back-pressure --------------------------------------------------------------------------
def test_a_client_that_stops_reading_pauses_the_partitions_and_nothing_is_skipped() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(2, records=20)
        reg = make(loop, cluster)
        sink = FakeSink()
        real = sink.write_body

        def write(data: bytes) -> None:
            real(data)
            sink.write_blocked = True  # the transport went over its high-water mark

        sink.write_body = write  # type: ignore[method-assign]
        stream, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, 0), (1, 0))), sink)
        await turns()
        fetches = sum(1 for name, _ in consumer.calls if name == "fetch")
        assert fetches == 1  # nothing more is taken from the consumer
        assert ("pause", None) not in consumer.calls
        await asyncio.sleep(stream_mod.PAUSE_AFTER + 0.05)  # still full: the partitions pause
        assert ("pause", None) in consumer.calls
        for i in range(50):  # records keep coming while the client reads nothing
            cluster.produce(TOPIC, i % 2, b"more %d" % i)
        await turns(20)
        assert sum(1 for name, _ in consumer.calls if name == "fetch") == fetches
        assert consumer.queued() == 0  # paused partitions fetch nothing
        # The client reads again: resumed, and every record comes, in order, no gap.
        sink.write_blocked = False
        sink.write_body = real  # type: ignore[method-assign]
        stream.on_writable()
        assert ("resume", None) in consumer.calls
        await until(lambda: len(sink.lines()) == 70)
        for p in (0, 1):
            assert offsets_of(sink.lines(), p) == list(range(35))

    run(body)


def test_a_client_that_reads_again_soon_never_gets_its_partitions_paused() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=3)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.write_blocked = True
        stream, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, 0),)), sink)
        await turns()
        sink.write_blocked = False
        stream.on_writable()
        cluster.produce(TOPIC, 0, b"next")
        await until(lambda: len(sink.lines()) == 4)
        await asyncio.sleep(stream_mod.PAUSE_AFTER + 0.05)
        assert not any(name in ("pause", "resume") for name, _ in consumer.calls)

    run(body)


# -- offsets: stored once written to the socket ----------------------------------------------------
def test_offsets_are_stored_only_once_what_was_written_has_left_the_buffer() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=5)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.hold = True
        stream, consumer = await opened(
            reg, StreamRequest(TOPIC, group="g", reset="earliest", commit_interval_ms=60_000), sink)
        await turns()
        assert len(sink.lines()) == 5
        assert consumer.stored == {} and consumer.pending == {(TOPIC, 0): 5}
        # The buffer drains; the next check stores (here: the next slice's write).
        sink.drain()
        sink.hold = False
        cluster.produce(TOPIC, 0, b"x")
        await until(lambda: len(sink.lines()) == 6)
        assert consumer.stored == {(TOPIC, 0): 6}
        stream.on_peer_eof()
        await until(lambda: consumer.closed)
        assert cluster.committed == {("g", TOPIC, 0): 6}

    run(body)


def test_a_due_commit_stops_fetching_until_written_records_drain() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=3)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.hold = True
        stream, consumer = await opened(
            reg, StreamRequest(TOPIC, group="g", reset="earliest", commit_interval_ms=100), sink)
        await turns()
        assert consumer.stored == {}
        await asyncio.sleep(0.15)  # the commit tick: what was written has not drained
        cluster.produce(TOPIC, 0, b"later")
        await asyncio.sleep(0.05)
        assert len(sink.lines()) == 3  # no fetch while the commit waits for the drain
        sink.drain()
        sink.hold = False
        await until(lambda: len(sink.lines()) == 4)
        assert consumer.stored[(TOPIC, 0)] >= 3
        stream.on_peer_eof()
        await until(lambda: consumer.closed)

    run(body)


def test_a_lost_connection_stores_nothing_it_cannot_vouch_for() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=4)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.hold = True
        stream, consumer = await opened(
            reg, StreamRequest(TOPIC, group="g", reset="earliest", commit_interval_ms=60_000), sink)
        await turns()
        assert len(sink.lines()) == 4
        sink.lost = True  # cut: the bytes still in the transport never reached the socket
        stream.on_connection_lost()
        await until(lambda: consumer.closed)
        assert cluster.committed == {}
        assert sink.access == [("topic=events group=g records=4 bytes=%d end=client-gone (client gone)"
                                % len(sink.data), 200)]
        await until(lambda: reg.stats()["open"] == 0)
        assert reg.stats() == {"open": 0, "opened_total": 1, "records_total": 4, "bytes_total": len(sink.data)}
        assert not reg.full

    run(body)


def test_an_ended_stream_waits_for_its_last_records_to_drain_before_closing() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=4)
        reg = make(loop, cluster)
        sink = FakeSink()
        sink.hold = True
        stream, consumer = await opened(
            reg, StreamRequest(TOPIC, group="g", reset="earliest", commit_interval_ms=60_000), sink)
        await turns()
        stream.on_shutdown()
        assert sink.ended
        lines = sink.lines()
        assert len(lines) == 5 and lines[-1]["error_code"] == 50003
        await asyncio.sleep(0.05)
        assert not consumer.closed  # its records are still in the buffer
        sink.drain()
        await until(lambda: consumer.closed)
        assert cluster.committed == {("g", TOPIC, 0): 4}
        assert sink.access[0][1] == 503

    run(body)


def test_a_new_member_of_the_group_resumes_where_the_last_one_was_committed() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(2, records=10)
        reg = make(loop, cluster)
        req = StreamRequest(TOPIC, group="g", reset="earliest")
        sink = FakeSink()
        stream, consumer = await opened(reg, req, sink)
        await turns()
        assert len(sink.lines()) == 10
        stream.on_peer_eof()
        await until(lambda: consumer.closed)
        for i in range(4):
            cluster.produce(TOPIC, i % 2, b"n%d" % i)
        sink2 = FakeSink()
        stream2, consumer2 = await opened(reg, req, sink2)
        await turns()
        assert sorted((r["partition_id"], r["offset"]) for r in sink2.lines()) == [
            (0, 5), (0, 6), (1, 5), (1, 6)]
        stream2.on_peer_eof()
        await until(lambda: consumer2.closed)

    run(body)


# -- the ends --------------------------------------------------------------------------------
def test_shutdown_ends_every_stream_with_the_report_and_waits_for_the_consumers() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=2)
        reg = make(loop, cluster)
        sinks = [FakeSink(), FakeSink()]
        consumers = [(await opened(reg, StreamRequest(TOPIC, start=((0, 0),)), s))[1] for s in sinks]
        await turns()
        await reg.close(5.0)
        for s in sinks:
            assert s.ended
            assert s.lines()[-1] == {"error_code": 50003, "message": stream_mod.SHUTDOWN_MESSAGE}
            assert len(s.lines()) == 3
        assert all(c.closed for c in consumers)
        assert reg.closing

    run(body)


def test_a_stream_whose_client_left_while_its_consumer_was_made_closes_it() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=2)
        reg = make(loop, cluster, max_streams=1)
        sink = FakeSink()
        stream, fut = reg.open(StreamRequest(TOPIC, start=((0, 0),)), sink)
        assert reg.full
        sink.lost = True
        stream.on_connection_lost()
        consumer = await fut
        stream.start(consumer)
        await until(lambda: consumer.closed)
        assert sink.data == b""
        await until(lambda: not reg.full)

    run(body)


def test_a_consumer_that_cannot_be_made_frees_its_place() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        def refuse(config: dict[str, Any]) -> Any:
            raise ValueError("No such configuration property: \"bogus\"")

        reg = StreamRegistry(loop, {}, factory=refuse, formats=(1, 2), max_streams=1, threads=1)
        _, fut = reg.open(StreamRequest(TOPIC, start=((0, 0),)), FakeSink())
        with pytest.raises(ValueError):
            await fut
        await turns()
        assert not reg.full

    run(body)


def test_an_unexpected_fetch_failure_ends_the_stream_with_an_internal_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1)
        reg = make(loop, cluster)
        sink = FakeSink()
        _, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, 0),)), sink)
        consumer.fail_next_fetch = RuntimeError("boom")
        cluster.produce(TOPIC, 0, b"x")
        await until(lambda: sink.ended)
        assert sink.lines() == [{"error_code": 50003, "message": stream_mod.INTERNAL_MESSAGE}]
        assert sink.access[0][1] == 500
        await until(lambda: consumer.closed)

    run(body)
    assert "internal error of the gateway" in caplog.text


def test_a_kafka_error_during_fetch_ends_the_stream_with_50002() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1)
        reg = make(loop, cluster)
        sink = FakeSink()
        _, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, 0),)), sink)
        consumer.fail_next_fetch = RdKafkaError(-150, "fatal: something broke")
        cluster.produce(TOPIC, 0, b"x")
        await until(lambda: sink.ended)
        (line,) = sink.lines()
        assert line["error_code"] == 50002 and "something broke" in line["message"]

    run(body)


def test_max_records_ends_the_stream_cleanly_after_that_many() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=10)
        reg = make(loop, cluster)
        sink = FakeSink()
        _, consumer = await opened(reg, StreamRequest(TOPIC, start=((0, 2),), max_records=3), sink)
        await until(lambda: sink.ended)
        assert offsets_of(sink.lines(), 0) == [2, 3, 4]  # and no error line
        assert sink.access[0][1] == 200 and "end=max-records" in sink.access[0][0]
        await until(lambda: consumer.closed)

    run(body)


def test_idle_timeout_ends_the_stream_once_records_stop_coming() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        cluster = cluster_with(1, records=2)
        reg = make(loop, cluster)
        sink = FakeSink()
        t0 = loop.time()
        await opened(reg, StreamRequest(TOPIC, group="g", reset="earliest", idle_timeout_ms=150), sink)
        await asyncio.sleep(0.1)
        cluster.produce(TOPIC, 0, b"late")  # resets the idle clock
        await until(lambda: sink.ended)
        assert loop.time() - t0 >= 0.25
        assert offsets_of(sink.lines(), 0) == [0, 1, 2]
        assert "end=idle" in sink.access[0][0]
        await until(lambda: cluster.committed == {("g", TOPIC, 0): 3})

    run(body)


# -- configuration -------------------------------------------------------------------------------
def test_consumer_configuration_per_mode() -> None:
    base = {"bootstrap.servers": "b:1", "session.timeout.ms": 2000, "enable.auto.offset.store": True}
    group = consumer_config(base, StreamRequest(TOPIC, group="g", reset="earliest", commit_interval_ms=700))
    assert group["group.id"] == "g" and group["enable.auto.commit"] is True
    assert group["auto.commit.interval.ms"] == 700 and group["auto.offset.reset"] == "earliest"
    assert group["enable.auto.offset.store"] is False  # what the stream needs wins
    assert group["session.timeout.ms"] == 2000 and group["bootstrap.servers"] == "b:1"
    plain = consumer_config(base, StreamRequest(TOPIC, start=((0, 5),)))
    assert plain["enable.auto.commit"] is False and plain["auto.offset.reset"] == "error"


# -- the query -----------------------------------------------------------------------------------
def test_query_parameters() -> None:
    q = parse_query("")
    assert q.request(TOPIC, 3) == StreamRequest(TOPIC, start=((0, OFFSET_END), (1, OFFSET_END), (2, OFFSET_END)))
    q = parse_query("partitions=2,0&offset=earliest&format=json")
    assert q.request(TOPIC, 3) == StreamRequest(TOPIC, json=True, start=((2, OFFSET_BEGINNING), (0, OFFSET_BEGINNING)))
    q = parse_query("offsets=1:12,0:latest")
    assert q.request(TOPIC, 3).start == ((0, OFFSET_END), (1, 12))
    q = parse_query("partitions=0,1&offset=7&offsets=1:3")
    assert q.request(TOPIC, 3).start == ((0, 7), (1, 3))
    q = parse_query("group=readers&offset=earliest&commit_interval_ms=250")
    assert q.request(TOPIC, 3) == StreamRequest(TOPIC, group="readers", reset="earliest", commit_interval_ms=250)
    assert parse_query("group=g").request(TOPIC, 1).reset == "latest"
    q = parse_query("max_records=10&idle_timeout_ms=500&partitions=1")
    assert q.request(TOPIC, 2) == StreamRequest(TOPIC, start=((1, OFFSET_END),), max_records=10, idle_timeout_ms=500)
    with pytest.raises(errors.PartitionNotFound):
        parse_query("partitions=3").request(TOPIC, 3)


@pytest.mark.parametrize(("query", "words"), [
    ("partition=0", "unknown query parameter 'partition'"),
    ("format=avro", "format must be binary or json"),
    ("offset=-1", "offset must be earliest, latest or a non-negative integer"),
    ("offset=first", "offset must be earliest, latest or a non-negative integer"),
    ("partitions=0,x", "each of partitions must be a non-negative integer"),
    ("partitions=1,1", "partition 1 is named twice"),
    ("offsets=0-5", "offsets must be PARTITION:OFFSET pairs"),
    ("offsets=0:1,0:2", "partition 0 is named twice in offsets"),
    ("partitions=0&offsets=1:4", "offsets names partition 1, which partitions does not"),
    ("group=", "group must be 1 to 255 characters"),
    ("group=g&partitions=0", "partitions cannot be given with group"),
    ("group=g&offset=5", "offset must be earliest or latest with a group"),
    ("group=g&commit_interval_ms=5", "commit_interval_ms must be between 100 and 3600000"),
    ("commit_interval_ms=500", "commit_interval_ms is for a group"),
    ("max_records=0", "max_records must be between 1 and"),
    ("idle_timeout_ms=x", "idle_timeout_ms must be a non-negative integer"),
])
def test_bad_query_parameters_are_400_naming_the_problem(query: str, words: str) -> None:
    with pytest.raises(errors.BadRequest) as info:
        parse_query(query)
    assert words in info.value.message
