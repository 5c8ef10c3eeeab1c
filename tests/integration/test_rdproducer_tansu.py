"""RdProducer (gateway._speedups) against the embedded Tansu broker over TCP.

Every record handed over must land exactly as sent (key, value, headers in order, timestamp) at
the partition and offset its delivery report names; keyed records must land where Kafka's
murmur2 partitioner puts them (tests/support/murmur2.py, independent of librdkafka); and the
event fd must be enough to drive the producer from an event loop, with no poll timer.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import time
from collections.abc import Callable

import pytest
import uvloop
from confluent_kafka import TIMESTAMP_CREATE_TIME
from support.kafka import consume_topic
from support.murmur2 import partition_for_key

from gateway._speedups import RdProducer
from gateway.kafka.embedded import EmbeddedBroker
from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG

PARTITIONS = 3
RECORDS = 100_000
BASE_TS_MS = 1_700_000_000_000
SINK = 0x5EED  # the high half of every opaque id: (sink << 32) | seq


def _record(i: int, rng: random.Random) -> tuple[int, bytes | None, bytes | None,
                                                  list[tuple[str, bytes | None]] | None, int]:
    """(partition, key, value, headers, timestamp) of record i; partition -1 = partitioner."""
    key = None if i % 4 == 0 else b"key-%d" % rng.randrange(5000)
    partition = i % PARTITIONS if i % 10 == 5 else -1
    value = None if i % 97 == 0 else b"%d:" % i + rng.randbytes(rng.randrange(0, 120))
    headers: list[tuple[str, bytes | None]] | None = None
    if i % 3 == 0:
        # Duplicate names and a null value must come back as sent, in order.
        headers = [("seq", b"%d" % i), ("dup", b"1"), ("null", None), ("dup", b"2")]
    return partition, key, value, headers, BASE_TS_MS + i


def _drain(p: RdProducer, reports: dict[int, tuple[int, int, int, int]]) -> None:
    n = p.poll()
    if n:
        opaque, partition, offset, ts, err = cols = p.reports()
        for o, pt, off, t, e in zip(opaque.tolist(), partition.tolist(), offset.tolist(),
                                    ts.tolist(), err.tolist(), strict=True):
            assert o not in reports, f"second report for opaque {o:#x}"
            reports[o] = (pt, off, t, e)
        for c in cols:
            c.release()


@pytest.mark.timeout(300)
def test_100k_records_land_exactly_where_their_reports_say(
    broker: EmbeddedBroker, topic_factory: Callable[..., str]
) -> None:
    seed = int(os.environ.get("TEST_SEED", "0")) or random.randrange(1, 2**32)
    rng = random.Random(seed)
    topic = topic_factory(PARTITIONS)
    records = [_record(i, rng) for i in range(RECORDS)]
    p = RdProducer({**DEFAULT_PRODUCER_CONFIG, "bootstrap.servers": broker.bootstrap},
                   max_reports=8192)
    reports: dict[int, tuple[int, int, int, int]] = {}
    queue_full = 0
    try:
        t = p.topic(topic)
        deadline = time.monotonic() + 120
        for i, (partition, key, value, headers, ts) in enumerate(records):
            while True:
                err = p.produce(t, partition, key, value, headers, ts, (SINK << 32) | i)
                if err != RdProducer.ERR_QUEUE_FULL:
                    assert err == 0, f"seed={seed} record {i}: {RdProducer.error_name(err)}"
                    break
                queue_full += 1
                assert time.monotonic() < deadline, f"seed={seed}: stuck at record {i}"
                select.select([p.event_fd], [], [], 0.1)
                _drain(p, reports)
            if not i & 1023 and select.select([p.event_fd], [], [], 0)[0]:
                _drain(p, reports)
        while len(reports) < RECORDS:
            assert time.monotonic() < deadline, f"seed={seed}: {len(reports)} reports"
            select.select([p.event_fd], [], [], 0.1)
            _drain(p, reports)
        assert p.lost_reports == 0 and not p.fatal and len(p) == 0
    finally:
        p.close(5000)

    assert sorted(reports) == [(SINK << 32) | i for i in range(RECORDS)], f"seed={seed}"
    failed = {o: r for o, r in reports.items() if r[3] != 0}
    assert not failed, f"seed={seed}: e.g. {list(failed.items())[:3]}"

    where: dict[tuple[int, int], int] = {}
    for opaque, (partition, offset, ts, _err) in reports.items():
        i = opaque & 0xFFFFFFFF
        want_partition, key, _value, _headers, want_ts = records[i]
        if want_partition >= 0:
            assert partition == want_partition, f"seed={seed} record {i}"
        elif key is not None:
            assert partition == partition_for_key(key, PARTITIONS), f"seed={seed} key {key!r}"
        assert ts == want_ts, f"seed={seed} record {i}: report timestamp {ts}"
        where[(partition, offset)] = i
    assert len(where) == RECORDS  # no two reports name the same place

    got = consume_topic(broker.bootstrap, topic, PARTITIONS, RECORDS, timeout=120,
                        quiet_period=0.3)
    for partition, recs in got.items():
        # Gap-free offsets, every one named by exactly one report.
        assert [r.offset for r in recs] == list(range(len(recs))), f"partition {partition}"
        for r in recs:
            i = where[(partition, r.offset)]
            _part, key, value, headers, ts = records[i]
            assert (r.key, r.value, r.headers, r.timestamp) == (
                key, value, headers or [], (TIMESTAMP_CREATE_TIME, ts)
            ), f"seed={seed} record {i} at {partition}/{r.offset}"
    # Null keys spread over the partitions (murmur2_random), keyed ones follow their key.
    null_key_parts = {reports[(SINK << 32) | i][0] for i in range(0, RECORDS, 4)
                      if records[i][0] < 0}
    assert null_key_parts == set(range(PARTITIONS))


@pytest.mark.timeout(120)
def test_event_fd_drives_the_producer_from_an_event_loop(
    broker: EmbeddedBroker, topic_factory: Callable[..., str]
) -> None:
    """loop.add_reader(event_fd) alone delivers every report, in batches, with no poll timer;
    a full batch brings the reader back for the rest."""
    topic = topic_factory(PARTITIONS)
    n = 20_000
    loop = uvloop.new_event_loop()
    p = RdProducer({**DEFAULT_PRODUCER_CONFIG, "bootstrap.servers": broker.bootstrap},
                   max_reports=1000)
    batches: list[int] = []
    seen: set[int] = set()
    done = loop.create_future()

    def on_reports() -> None:
        count = p.poll()
        if count:
            batches.append(count)
            opaque, *_rest, err = cols = p.reports()
            assert not any(err.tolist())
            seen.update(opaque.tolist())
            for c in cols:
                c.release()
        if len(seen) == n and not done.done():
            done.set_result(None)

    async def produce_all() -> None:
        t = p.topic(topic)
        i = 0
        while i < n:
            err = p.produce(t, -1, b"k%d" % (i % 100), b"v" * 100, None, 0, i)
            if err == RdProducer.ERR_QUEUE_FULL:
                await asyncio.sleep(0.001)  # the reader makes room
                continue
            assert err == 0
            i += 1
            if not i % 500:
                await asyncio.sleep(0)  # let the reader run, as a real connection would
        await asyncio.wait_for(done, 60)

    try:
        loop.add_reader(p.event_fd, on_reports)
        loop.run_until_complete(produce_all())
        loop.remove_reader(p.event_fd)
    finally:
        loop.close()
        p.close(5000)
    assert seen == set(range(n))
    assert max(batches) <= 1000 and len(batches) < n // 10, "reports should come in batches"
