"""RdConsumer (gateway._speedups, ext/consumer.pxi): fetch() formats, positions, offsets, groups.

Group behaviour (subscribe, commits, two members splitting partitions) runs against the session's
Tansu broker, whose group join takes session.timeout.ms/2: the consumers here use a 2 s session.
Where a fake broker is enough (topic names Kafka would refuse, unreachable clusters) librdkafka's
in-process mock cluster stands in: an RdProducer with ``test.mock.num.brokers`` starts it and
logs its address.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from gateway._speedups import RdConsumer, RdKafkaError, RdProducer, format_timestamp
from gateway.kafka.embedded import EmbeddedBroker

Rec = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]] | None, int]

ALL_FORMATS = [
    RdConsumer.FORMAT_V2_BINARY, RdConsumer.FORMAT_V2_JSON,
    RdConsumer.FORMAT_STRIMZI_BINARY, RdConsumer.FORMAT_STRIMZI_JSON,
    RdConsumer.FORMAT_V1_BINARY, RdConsumer.FORMAT_V1_JSON,
    RdConsumer.FORMAT_STREAM_BINARY, RdConsumer.FORMAT_STREAM_JSON,
]
BIG = 64 << 20


@pytest.fixture
def consumers(broker: EmbeddedBroker) -> Iterator[Callable[..., RdConsumer]]:
    """RdConsumers on the session's broker (a fresh group each unless given), closed after."""
    made: list[RdConsumer] = []

    def make(group: str | None = None, **extra: Any) -> RdConsumer:
        c = RdConsumer({
            "bootstrap.servers": broker.bootstrap,
            "group.id": group or f"g-{uuid.uuid4().hex[:8]}",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 300,
            "fetch.wait.max.ms": 50,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **extra,
        })
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(2000)


def produce(broker: EmbeddedBroker, topic: str, partition: int, records: list[Rec]) -> None:
    """(timestamp_ms, key, value, headers, partition offset unused) in order, then flush."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for ts, key, value, headers, _ in records:
        p.produce(topic, value=value, key=key, partition=partition, timestamp=ts,
                  headers=headers)
    assert p.flush(10) == 0


def produce_values(broker: EmbeddedBroker, topic: str, partition: int,
                   values: list[bytes]) -> None:
    produce(broker, topic, partition, [(0, None, v, None, 0) for v in values])


def fetch_until(c: RdConsumer, n: int, fmt: int = RdConsumer.FORMAT_V2_BINARY,
                timeout: float = 10.0, **kwargs: Any) -> list[bytes]:
    """fetch() until ``n`` records came; the pieces returned."""
    pieces: list[bytes] = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < n:
        assert time.monotonic() < deadline, f"{got} of {n} records in {timeout} s"
        data, count = c.fetch(n - got, BIG, 200, fmt, **kwargs)
        if count:
            pieces.append(data)
            got += count
    return pieces


def offsets_of(pieces: list[bytes]) -> list[tuple[int, int]]:
    """(partition, offset) of every record of V2 binary pieces, in order."""
    return [(r["partition"], r["offset"]) for p in pieces for r in json.loads(p)]


def values_of(pieces: list[bytes]) -> list[bytes]:
    return [base64.b64decode(r["value"]) for p in pieces for r in json.loads(p)]


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


# -- the formats ---------------------------------------------------------------------------------


def b64(data: bytes | None) -> str:
    return "null" if data is None else '"' + base64.b64encode(data).decode() + '"'


def jstr(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def expected(fmt: int, topic: str, partition: int, records: list[Rec],
             json_text: dict[bytes, str] | None = None) -> bytes:
    """What fetch() must give for ``records`` (their 5th field is the offset); in the JSON
    formats ``json_text`` maps each key/value to its expected (compacted) JSON text."""
    js = fmt & 1

    def side(data: bytes | None, typed: bool) -> str:
        if data is None:
            return "null"
        if js:
            text = json_text[data]  # type: ignore[index]
            return '{"type":"JSON","data":' + text + "}" if typed else text
        return '{"type":"BINARY","data":' + b64(data) + "}" if typed else b64(data)

    out = []
    for ts, key, value, headers, offset in records:
        if fmt in (RdConsumer.FORMAT_STREAM_BINARY, RdConsumer.FORMAT_STREAM_JSON):
            hs = ",".join('{"name":' + jstr(n) + ',"value":' + b64(v) + "}"
                          for n, v in headers or [])
            out.append(
                '{"topic_name":' + jstr(topic) + f',"partition_id":{partition},"offset":{offset}'
                + ',"timestamp":"' + format_timestamp(ts).decode() + '"'
                + ',"key":' + side(key, True) + ',"value":' + side(value, True)
                + ',"headers":[' + hs + "]}\n")
            continue
        head = "" if fmt in (RdConsumer.FORMAT_V1_BINARY, RdConsumer.FORMAT_V1_JSON) else (
            '"topic":' + jstr(topic) + ",")
        rec = ("{" + head + '"key":' + side(key, False) + ',"value":' + side(value, False)
               + f',"partition":{partition},"offset":{offset}')
        if fmt in (RdConsumer.FORMAT_STRIMZI_BINARY, RdConsumer.FORMAT_STRIMZI_JSON):
            rec += f',"timestamp":{ts}'
            if headers:
                rec += ',"headers":[' + ",".join(
                    '{"key":' + jstr(n) + ',"value":' + b64(v) + "}" for n, v in headers) + "]"
        out.append(rec + "}")
    if fmt in (RdConsumer.FORMAT_STREAM_BINARY, RdConsumer.FORMAT_STREAM_JSON):
        return "".join(out).encode()
    return ("[" + ",".join(out) + "]").encode()


BINARY_RECORDS: list[Rec] = [
    (1712345678901, None, bytes(range(256)), [("h1", b"\x00\x01\x02"), ('h"\\\n\té', b""),
                                              ("nul", None)], 0),
    (1712345678902, b"", b"", None, 1),
    (1712345678903, b"\x00\xff\x80", None, None, 2),
    (4102444800000, b"k", b"ab", [("only", b"x")], 3),
]
JSON_TEXT = {
    b' {"a" : [1, 2.5e3, "x\\u00e9 y\\"z\\\\"] }\n': '{"a":[1,2.5e3,"x\\u00e9 y\\"z\\\\"]}',
    '"café au lait"'.encode(): '"café au lait"',
    b"\t-0.5\r\n": "-0.5",
    b"null": "null",
    b"[ ]": "[]",
    b'{"k": "v w"}': '{"k":"v w"}',
    b"true": "true",
}
JSON_RECORDS: list[Rec] = [
    (1712345678901, None, b' {"a" : [1, 2.5e3, "x\\u00e9 y\\"z\\\\"] }\n', [("h", b"\xff")], 0),
    (1712345678902, '"café au lait"'.encode(), b"\t-0.5\r\n", None, 1),
    (1712345678903, b"null", b"[ ]", None, 2),
    (1712345678904, b'{"k": "v w"}', None, [("a", None), ("b", b"")], 3),
    (1712345678905, None, b"true", None, 4),
]


def joined(pieces: list[bytes], fmt: int) -> bytes:
    """fetch() pieces as one answer of the format (the records of one array)."""
    if fmt in (RdConsumer.FORMAT_STREAM_BINARY, RdConsumer.FORMAT_STREAM_JSON):
        return b"".join(pieces)
    return b"[" + b",".join(p[1:-1] for p in pieces) + b"]"


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_format_is_byte_exact(broker: EmbeddedBroker, topic_factory: Callable[..., str],
                                    consumers: Callable[..., RdConsumer], fmt: int) -> None:
    topic = topic_factory(2)
    records, text = (JSON_RECORDS, JSON_TEXT) if fmt & 1 else (BINARY_RECORDS, None)
    produce(broker, topic, 1, records)
    c = consumers()
    c.assign([(topic, 1, RdConsumer.OFFSET_BEGINNING)])
    assert joined(fetch_until(c, len(records), fmt), fmt) == expected(fmt, topic, 1, records,
                                                                       text)
    # Nothing more: an empty answer in the format's shape.
    assert c.fetch(100, BIG, 0, fmt) == ((b"", 0) if fmt >= 6 else (b"[]", 0))


def test_topic_and_header_names_are_json_escaped() -> None:
    """Names Kafka itself would refuse (the mock cluster takes any): quotes, backslashes,
    control characters, non-ASCII kept as UTF-8, and each byte of invalid UTF-8 as \\ufffd."""
    producer = RdProducer({"test.mock.num.brokers": 1, "linger.ms": 1})
    try:
        producer.poll()
        deadline = time.monotonic() + 5
        logs: list[tuple[int, str, str]] = []
        while not any(fac == "MOCK" for _, fac, _ in logs):
            assert time.monotonic() < deadline
            time.sleep(0.02)
            producer.poll()
            logs += producer.take_logs()[0]
        found = re.search(r"replaced with (\S+)", next(t for _, f, t in logs if f == "MOCK"))
        assert found
        bootstrap = found.group(1)
        topic = 'odd "topic\\\x01é'
        assert producer.produce(topic, 0, b"k", b"v", [(b'h"\\\n\xff\xe2\x82', b"x")], 0, 1) == 0
        assert producer.flush(5000) == 0 and producer.report(0)[4] == 0
        c = RdConsumer({"bootstrap.servers": bootstrap, "group.id": "g"})
        try:
            c.assign([(topic, 0, 0)])
            (data,) = fetch_until(c, 1, RdConsumer.FORMAT_V2_BINARY)
            assert data == ('[{"topic":"odd \\"topic\\\\\\u0001é","key":"aw==","value":"dg==",'
                            '"partition":0,"offset":0}]').encode()
            c.seek([(topic, 0, 0)], 5000)
            (data,) = fetch_until(c, 1, RdConsumer.FORMAT_STREAM_BINARY)
            assert b'"topic_name":"odd \\"topic\\\\\\u0001\xc3\xa9",' in data
            assert b'"headers":[{"name":"h\\"\\\\\\n\\ufffd\\ufffd\\ufffd","value":"eA=="}]' in data
            assert json.loads(data)["headers"][0]["name"] == 'h"\\\n\ufffd\ufffd\ufffd'
        finally:
            c.close(1000)
    finally:
        producer.close(1000)


# -- fetch bounds --------------------------------------------------------------------------------


def test_max_records_max_bytes_and_nothing_skipped(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    values = [b"%03d" % i + b"x" * 97 for i in range(50)]  # 100 bytes each
    produce_values(broker, topic, 0, values)
    c = consumers()
    c.assign([(topic, 0, 0)])
    got: list[bytes] = []
    got += values_of(fetch_until(c, 1))  # the first batch arrives (more may wait in the queue)
    assert got == values[:1]
    deadline = time.monotonic() + 5
    while c.queued() < 49:  # the rest taken from the broker and waiting
        assert time.monotonic() < deadline
        time.sleep(0.02)
    data, n = c.fetch(7, BIG, 0, RdConsumer.FORMAT_V2_BINARY)
    assert n == 7
    got += values_of([data])
    data, n = c.fetch(100, 350, 0, RdConsumer.FORMAT_V2_BINARY)  # 3 records fit in 350 bytes
    assert n == 3
    got += values_of([data])
    data, n = c.fetch(100, 1, 0, RdConsumer.FORMAT_V2_BINARY)  # the first always comes
    assert n == 1
    got += values_of([data])
    assert c.position([(topic, 0)]) == [12]  # what was taken but not handed out comes next
    got += values_of(fetch_until(c, 38))
    assert got == values
    assert c.fetch(100, BIG, 0, RdConsumer.FORMAT_V2_BINARY) == (b"[]", 0)


def test_timeout_and_min_bytes(broker: EmbeddedBroker, topic_factory: Callable[..., str],
                               consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    c = consumers()
    c.assign([(topic, 0, 0)])
    start = time.monotonic()
    assert c.fetch(10, BIG, 300, RdConsumer.FORMAT_V1_BINARY) == (b"[]", 0)
    assert time.monotonic() - start >= 0.29
    # min_bytes: a fetch waits for 300 key+value bytes, which come in three records.
    produce_values(broker, topic, 0, [b"b" * 100, b"c" * 100])
    later = threading.Timer(0.5, produce_values, (broker, topic, 0, [b"a" * 100]))
    later.start()
    try:
        start = time.monotonic()
        data, n = c.fetch(10, BIG, 8000, RdConsumer.FORMAT_V1_BINARY, min_bytes=300)
    finally:
        later.join()
    assert n == 3 and time.monotonic() - start >= 0.45
    assert [base64.b64decode(r["value"]) for r in json.loads(data)] == [
        b"b" * 100, b"c" * 100, b"a" * 100]


def test_bad_arguments_and_closed_consumer(consumers: Callable[..., RdConsumer]) -> None:
    c = consumers()
    for args in ((0, 1, 0, 0), (1, 0, 0, 0), (1, 1, -1, 0), (1, 1, 0, 10), (1, 1, 0, -1)):
        with pytest.raises(ValueError):
            c.fetch(*args)
    with pytest.raises(ValueError, match="at least one topic"):
        c.subscribe([])
    c.close()
    assert c.closed and c.event_fd() == -1 and c.queued() == 0
    c.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        c.fetch(1, 1, 0, RdConsumer.FORMAT_V2_BINARY)
    with pytest.raises(RuntimeError, match="closed"):
        c.assignment()


# -- configuration and errors --------------------------------------------------------------------


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_configuration_errors() -> None:
    before = open_fds()
    with pytest.raises(ValueError, match=r"'no\.such\.property'"):
        RdConsumer({"group.id": "g", "no.such.property": 1})
    with pytest.raises(ValueError, match=r"'session\.timeout\.ms'='soon'"):
        RdConsumer({"group.id": "g", "session.timeout.ms": "soon"})
    with pytest.raises(ValueError, match="group.id"):
        RdConsumer({"bootstrap.servers": "127.0.0.1:1"})
    with pytest.raises(TypeError):
        RdConsumer({"group.id": "g", "error_cb": print})
    assert open_fds() <= before  # no eventfd, no librdkafka socket left behind


def test_unreachable_cluster_errors_are_kept() -> None:
    c = RdConsumer({"bootstrap.servers": "127.0.0.1:1", "group.id": "g",
                    "reconnect.backoff.ms": 10, "socket.connection.setup.timeout.ms": 1000})
    try:
        c.assign([("t", 0, 0)])
        deadline = time.monotonic() + 5
        errors: list[tuple[int, str]] = []
        while not errors:
            assert time.monotonic() < deadline
            assert c.fetch(10, BIG, 100, RdConsumer.FORMAT_V2_BINARY) == (b"[]", 0)
            errors = c.take_errors()
        assert {code for code, _ in errors} <= {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
        assert any("127.0.0.1:1" in reason for _, reason in errors)
        # librdkafka's log lines come through fetch() too (log.queue), not to stderr.
        lines, lost = c.take_logs()
        assert any(fac == "FAIL" and "127.0.0.1:1" in text for _, fac, text in lines), lines
        assert c.take_logs() == ([], 0)
    finally:
        c.close(1000)


def test_a_value_that_is_not_json(broker: EmbeddedBroker, topic_factory: Callable[..., str],
                                  consumers: Callable[..., RdConsumer]) -> None:
    """Records before it are returned; the next fetch raises naming it; reading goes on after
    it (it counts as handed out: its offset is stored)."""
    topic = topic_factory(1)
    produce_values(broker, topic, 0, [b"1", b'"two"', b"{not json}", b"[4]"])
    c = consumers()
    c.assign([(topic, 0, 0)])
    deadline = time.monotonic() + 5
    while c.queued() < 4:  # all four taken from the broker, waiting in the consumer's queue
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert c.fetch(100, BIG, 1000, RdConsumer.FORMAT_V1_JSON) == (
        b'[{"key":null,"value":1,"partition":0,"offset":0},'
        b'{"key":null,"value":"two","partition":0,"offset":1}]', 2)
    with pytest.raises(RdKafkaError) as caught:
        c.fetch(100, BIG, 1000, RdConsumer.FORMAT_V1_JSON)
    err = caught.value
    assert err.code == KafkaError._VALUE_DESERIALIZATION and err.name == "_VALUE_DESERIALIZATION"
    assert not err.retriable
    assert (err.topic, err.partition, err.offset) == (topic, 0, 2)
    assert str(err).startswith(f"topic {topic} partition 0 offset 2: the value is not JSON (")
    assert c.fetch(100, BIG, 1000, RdConsumer.FORMAT_V1_JSON) == (
        b'[{"key":null,"value":[4],"partition":0,"offset":3}]', 1)
    assert c.commit() == [(topic, 0, 4)]


# -- positions -----------------------------------------------------------------------------------


def test_assign_seek_and_position(broker: EmbeddedBroker, topic_factory: Callable[..., str],
                                  consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(2)
    produce_values(broker, topic, 0, [b"a%d" % i for i in range(10)])
    for i in range(3):  # one batch each: Tansu's end offset is its last batch's first + 1
        produce_values(broker, topic, 1, [b"b%d" % i])
    c = consumers()
    c.assign([(topic, 0, 4), (topic, 1, RdConsumer.OFFSET_END)])
    assert c.assignment() == [(topic, 0), (topic, 1)]
    assert c.position([(topic, 0), (topic, 1)]) == [RdConsumer.OFFSET_INVALID] * 2
    assert values_of(fetch_until(c, 6)) == [b"a%d" % i for i in range(4, 10)]
    assert c.position([(topic, 0)]) == [10]
    # OFFSET_END is resolved once the partition is fetched: then the cached watermarks are in.
    deadline = time.monotonic() + 5
    while c.watermarks(topic, 1, cached=True) != (0, 3):
        assert time.monotonic() < deadline, c.watermarks(topic, 1, cached=True)
        assert c.fetch(10, BIG, 50, RdConsumer.FORMAT_V2_BINARY)[1] == 0
    produce_values(broker, topic, 1, [b"b3"])  # only what comes after the end
    assert offsets_of(fetch_until(c, 1)) == [(1, 3)]
    c.seek([(topic, 0, 8), (topic, 1, RdConsumer.OFFSET_BEGINNING)], 5000)
    got = offsets_of(fetch_until(c, 6))
    assert sorted(got) == [(0, 8), (0, 9), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert c.watermarks(topic, 1, cached=False, timeout_ms=5000)[1] == 4
    with pytest.raises(RdKafkaError, match=f"seek in topic {topic} partition 5 to offset 0: "):
        c.seek([(topic, 5, 0)], 5000)  # not assigned
    c.assign([])
    assert c.assignment() == []


def test_pause_fetches_nothing_and_resume_skips_nothing(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    values = [b"%03d" % i + b"x" * 97 for i in range(30)]
    produce_values(broker, topic, 0, values[:20])
    c = consumers()
    c.assign([(topic, 0, 0)])
    deadline = time.monotonic() + 5
    while c.queued() < 20:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # 3 records of 100 bytes fit in 350: the other 17 are taken from librdkafka and kept.
    data, n = c.fetch(100, 350, 0, RdConsumer.FORMAT_V2_BINARY)
    assert n == 3
    got = values_of([data])
    c.pause()
    produce_values(broker, topic, 0, values[20:])
    for _ in range(3):
        assert c.fetch(100, BIG, 200, RdConsumer.FORMAT_V2_BINARY) == (b"[]", 0)
    assert c.position([(topic, 0)]) == [3]
    c.resume()
    got += values_of(fetch_until(c, 27))
    assert got == values


def test_event_fd_is_readable_when_records_wait(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    c = consumers(**{"enable.partition.eof": True})
    c.assign([(topic, 0, 0)])
    fd = c.event_fd()
    deadline = time.monotonic() + 5
    while c.eof() == []:  # the empty partition's end is reported once
        assert time.monotonic() < deadline
        if readable(fd, 0.2):
            c.fetch(10, BIG, 0, RdConsumer.FORMAT_STREAM_BINARY)
    assert c.fetch(10, BIG, 0, RdConsumer.FORMAT_STREAM_BINARY) == (b"", 0)
    assert not readable(fd, 0.3)
    produce_values(broker, topic, 0, [b"x", b"y"])
    got: list[bytes] = []
    while len(got) < 2:
        assert readable(fd, 5), "no wake-up for the records"
        data, n = c.fetch(1, BIG, 0, RdConsumer.FORMAT_STREAM_BINARY)
        got += [base64.b64decode(json.loads(line)["value"]["data"])
                for line in data.splitlines()]
    assert got == [b"x", b"y"]
    # Reached the end again: reported with the partition's end offset.
    while True:
        assert readable(fd, 5)
        c.fetch(10, BIG, 0, RdConsumer.FORMAT_STREAM_BINARY)
        eof = c.eof()
        if eof:
            assert eof == [(topic, 0, 2)]
            break


# -- offsets and groups --------------------------------------------------------------------------


def test_store_false_waits_for_store_pending_and_commit_given_offsets(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(2)
    produce_values(broker, topic, 0, [b"a", b"b", b"c"])
    produce_values(broker, topic, 1, [b"d"])
    c = consumers()
    c.assign([(topic, 0, 0), (topic, 1, 0)])
    fetch_until(c, 4, store=False)
    assert c.commit() == []  # nothing stored yet
    assert c.store_pending() == 2
    assert c.store_pending() == 0
    assert c.commit() == [(topic, 0, 3), (topic, 1, 1)]
    assert c.committed([(topic, 0), (topic, 1)], 5000) == [(topic, 0, 3, ""), (topic, 1, 1, "")]
    assert c.commit([(topic, 0, 1)]) == [(topic, 0, 1)]
    assert c.committed([(topic, 0)], 5000) == [(topic, 0, 1, "")]
    assert c.commit([(topic, 1, 0)], asynchronous=True) == []
    deadline = time.monotonic() + 5
    while c.committed([(topic, 1)], 5000) != [(topic, 1, 0, "")]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    other = consumers()
    assert other.committed([(topic, 1)], 5000) == [(topic, 1, RdConsumer.OFFSET_INVALID, "")]


def test_auto_commit_commits_what_fetch_stored(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    produce_values(broker, topic, 0, [b"a", b"b", b"c"])
    c = consumers(**{"enable.auto.commit": True, "auto.commit.interval.ms": 100})
    c.assign([(topic, 0, 0)])
    fetch_until(c, 2, store=True)
    fetch_until(c, 1, store=False)
    deadline = time.monotonic() + 5
    while c.committed([(topic, 0)], 5000)[0][2] != 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The third record was fetched with store=False: not committed until stored.
    time.sleep(0.3)
    assert c.committed([(topic, 0)], 5000)[0][2] == 2
    assert c.store_pending() == 1
    while c.committed([(topic, 0)], 5000)[0][2] != 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.take_errors() == []


def test_subscribe_commit_and_resume_in_the_group(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce_values(broker, topic, 0, [b"%d" % i for i in range(5)])
    c = consumers(group)
    c.subscribe([topic])
    assert c.subscription() == [topic]
    assert values_of(fetch_until(c, 5)) == [b"%d" % i for i in range(5)]
    assert c.assignment() == [(topic, 0)]
    assert c.member_id() != ""
    assert c.commit() == [(topic, 0, 5)]
    assert c.commit() == []  # nothing new since
    assert c.committed([(topic, 0)], 5000) == [(topic, 0, 5, "")]
    c.unsubscribe()
    assert c.subscription() == []
    c.close()
    produce_values(broker, topic, 0, [b"5", b"6"])
    again = consumers(group)
    again.subscribe([topic])
    assert values_of(fetch_until(again, 2)) == [b"5", b"6"]


def test_two_members_split_the_partitions(
        broker: EmbeddedBroker, topic_factory: Callable[..., str],
        consumers: Callable[..., RdConsumer]) -> None:
    topic = topic_factory(4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    for p in range(4):
        produce_values(broker, topic, p, [b"%d" % p])
    a, b = consumers(group), consumers(group)
    a.subscribe([topic])
    b.subscribe([topic])
    got: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    deadline = time.monotonic() + 20
    while True:
        assert time.monotonic() < deadline, (a.assignment(), b.assignment(), got)
        for name, c in (("a", a), ("b", b)):
            got[name] += offsets_of([c.fetch(10, BIG, 100, RdConsumer.FORMAT_V2_BINARY)[0]])
        sa, sb = set(a.assignment()), set(b.assignment())
        if len(sa) == len(sb) == 2 and sa | sb == {(topic, p) for p in range(4)}:
            break
    assert not sa & sb
    # Every record read, each by the member that holds its partition now or held it before.
    while len({r for rs in got.values() for r in rs}) < 4:
        assert time.monotonic() < deadline
        for name, c in (("a", a), ("b", b)):
            got[name] += offsets_of([c.fetch(10, BIG, 100, RdConsumer.FORMAT_V2_BINARY)[0]])
    assert {r for rs in got.values() for r in rs} == {(p, 0) for p in range(4)}


def test_a_dropped_consumer_leaves_its_group_at_once(
        broker: EmbeddedBroker, topic_factory: Callable[..., str]) -> None:
    """Dropping an unclosed member closes it (bounded to about a second): the group is empty
    right after, not after the session timeout."""
    topic = topic_factory(1)
    group = f"g-{uuid.uuid4().hex[:8]}"
    c = RdConsumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                    "session.timeout.ms": 2000, "heartbeat.interval.ms": 300})
    c.subscribe([topic])
    deadline = time.monotonic() + 10
    while not c.assignment():
        assert time.monotonic() < deadline
        c.fetch(1, 1, 100, RdConsumer.FORMAT_V2_BINARY)
    start = time.monotonic()
    del c
    gc.collect()
    assert time.monotonic() - start < 3
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert described.members == []
