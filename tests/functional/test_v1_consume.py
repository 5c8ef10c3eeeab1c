"""v1 consume (``GET /topics/{t}/partitions/{p}?offset=N`` and its two other paths) through the
real gateway process and the real broker: what a client of docs/api.md §2 "Consume" observes.

Records are written with a plain confluent-kafka producer (linger, so that several records share
a batch: Tansu's ListOffsets then reports the first offset of the last batch + 1, below the end)
or through the gateway's v3 endpoint, and read back through the gateway byte for byte.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from support.http import Conn, HttpResponse, ProduceStream, build_request, request

V1_BINARY = "application/vnd.kafka.binary.v1+json"
B64 = lambda b: base64.b64encode(b).decode()  # noqa: E731

Truth = dict[int, list[tuple[bytes | None, bytes | None]]]  # partition -> [(key, value)] by offset


# -- helpers ---------------------------------------------------------------------------------
def range_text(end: int) -> str:
    """How a 416 says where a partition's records are (they start at offset 0 here)."""
    return f"offsets 0 to {end - 1} and {end} is the end" if end else "no records and 0 is the end"


def get(g: Any, path: str, timeout: float = 30.0) -> HttpResponse:
    return request(g.host, g.port, "GET", path, timeout=timeout)


def records_of(resp: HttpResponse) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of a 200 answer, checking its exact shape."""
    assert resp.status == 200, resp
    assert resp.header("content-type") == V1_BINARY
    out = []
    for entry in resp.json():
        assert list(entry) == ["key", "value", "partition", "offset"], entry
        key = None if entry["key"] is None else base64.b64decode(entry["key"], validate=True)
        value = None if entry["value"] is None else base64.b64decode(entry["value"], validate=True)
        out.append((entry["partition"], entry["offset"], key, value))
    return out


def expected(truth: Truth, partition: int, offset: int, count: int | None = None) -> list[tuple]:
    recs = truth[partition][offset:]
    if count is not None:
        recs = recs[:count]
    return [(partition, offset + i, k, v) for i, (k, v) in enumerate(recs)]


def assert_error(resp: HttpResponse, status: int, error_code: int) -> dict[str, Any]:
    assert resp.status == status, resp
    body = resp.json()
    assert body["error_code"] == error_code, body
    assert list(body) == ["error_code", "message"], body
    return body


def produce_batches(
    bootstrap: str, topic: str, batches: list[tuple[int, list[tuple[bytes | None, bytes | None]]]]
) -> Truth:
    """Write each (partition, records) batch in one producer flush with a long linger, so the
    records of a batch share one Kafka record batch. Returns what each partition holds, checked
    against the offsets Kafka reported."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 100, "enable.idempotence": True,
                  "acks": "all", "batch.num.messages": 100000})
    truth: Truth = {}
    reported: dict[tuple[int, int], tuple[bytes | None, bytes | None]] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        reported[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    for partition, recs in batches:
        for key, value in recs:
            p.produce(topic, key=key, value=value, partition=partition, on_delivery=on_delivery)
            truth.setdefault(partition, []).append((key, value))
        assert p.flush(30) == 0
    for partition, recs in truth.items():
        assert [reported[(partition, o)] for o in range(len(recs))] == recs
    return truth


def list_offsets_high(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    finally:
        c.close()


def rand_record(rnd: random.Random, i: int) -> tuple[bytes | None, bytes | None]:
    key = None if i % 4 == 0 else rnd.randbytes(rnd.randrange(0, 20))
    value = None if i % 13 == 5 else rnd.randbytes(rnd.randrange(0, 300))
    return key, value


@pytest.fixture(scope="module")
def data(broker: Any) -> tuple[str, Truth]:
    """A 3-partition topic: partition 0 in multi-record batches, 1 empty, 2 in small batches."""
    from support.kafka import create_topic

    topic = create_topic(broker.bootstrap, f"v1-consume-data-{os.getpid()}-{random.randrange(1 << 30)}", 3)
    rnd = random.Random(7)
    n = 0
    batches = []
    for size in (3, 5, 1, 7, 2, 4):
        batches.append((0, [rand_record(rnd, n + i) for i in range(size)]))
        n += size
    for size in (2, 1, 3):
        batches.append((2, [rand_record(rnd, n + i) for i in range(size)]))
        n += size
    truth = produce_batches(broker.bootstrap, topic, batches)
    truth[1] = []
    return topic, truth


# -- the three paths and the answer's shape ----------------------------------------------------
@pytest.mark.parametrize(
    "template",
    [
        "/topics/{t}/partitions/{p}?offset={o}",
        "/consume/{t}/partitions/{p}?offset={o}",
        "/topics/{t}/partitions/{p}/messages?offset={o}",
    ],
)
def test_every_path_answers_the_records_exactly(gateway, data, template) -> None:
    topic, truth = data
    for partition in (0, 2):
        for offset in (0, 2):
            resp = get(gateway, template.format(t=topic, p=partition, o=offset))
            assert records_of(resp) == expected(truth, partition, offset)


def test_answer_bytes_null_key_and_value_and_field_order(gateway, topic_factory, broker) -> None:
    topic = topic_factory(1)
    produce_batches(broker.bootstrap, topic, [(0, [(None, b"hello"), (b"k", None), (b"", b""), (None, None)])])
    resp = get(gateway, f"/topics/{topic}/partitions/0?offset=0")
    assert resp.status == 200
    assert resp.header("content-type") == V1_BINARY
    assert resp.body == (
        b'[{"key":null,"value":"aGVsbG8=","partition":0,"offset":0},'
        b'{"key":"aw==","value":null,"partition":0,"offset":1},'
        b'{"key":"","value":"","partition":0,"offset":2},'
        b'{"key":null,"value":null,"partition":0,"offset":3}]'
    )


def test_messages_path_with_count_and_keep_alive_pipelining(gateway, data) -> None:
    topic, truth = data
    paths = [f"/topics/{topic}/partitions/0/messages?offset={o}&count=2" for o in range(0, 8, 2)]
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"".join(build_request("GET", p) for p in paths))  # pipelined
        answers = [c.read_response() for _ in paths]
    for o, resp in zip(range(0, 8, 2), answers, strict=True):
        assert records_of(resp) == expected(truth, 0, o, 2)


# -- Tansu's high-watermark bug: every offset of multi-record batches ----------------------------
def test_every_offset_of_multi_record_batches_up_to_the_end(gateway, topic_factory, broker) -> None:
    """Several records share each batch, so Tansu's ListOffsets reports less than the end; the
    gateway must still return every record of the last batch, and [] only at the true end."""
    topic = topic_factory(2)
    rnd = random.Random(11)
    truth = produce_batches(
        broker.bootstrap, topic,
        [(0, [rand_record(rnd, i) for i in range(n)]) for n in (3, 4, 6)]
        + [(1, [rand_record(rnd, i) for i in range(3)])],
    )
    for partition in (0, 1):
        end = len(truth[partition])
        # The premise (Tansu's ListOffsets): it stops at the last batch's first record + 1.
        assert list_offsets_high(broker.bootstrap, topic, partition) < end
        for offset in range(end):
            got = records_of(get(gateway, f"/topics/{topic}/partitions/{partition}?offset={offset}"))
            assert got == expected(truth, partition, offset), (partition, offset)
        assert records_of(get(gateway, f"/topics/{topic}/partitions/{partition}?offset={end}")) == []
        body = assert_error(get(gateway, f"/topics/{topic}/partitions/{partition}?offset={end + 1}"), 416, 41601)
        assert range_text(end) in body["message"], body


def test_end_of_partition_is_an_empty_array_promptly(gateway, data) -> None:
    topic, truth = data
    for partition in (0, 1, 2):
        end = len(truth[partition])
        t0 = time.monotonic()
        assert records_of(get(gateway, f"/topics/{topic}/partitions/{partition}?offset={end}")) == []
        assert time.monotonic() - t0 < 1.0


# -- count and max_bytes -----------------------------------------------------------------------
def test_count_bounds_the_answer_and_defaults_to_100(gateway, topic_factory, broker) -> None:
    topic = topic_factory(1)
    truth = produce_batches(broker.bootstrap, topic, [(0, [(None, b"%d" % i) for i in range(150)])])
    assert records_of(get(gateway, f"/topics/{topic}/partitions/0?offset=0")) == expected(truth, 0, 0, 100)
    for count in (1, 3, 149, 150, 10000):
        got = records_of(get(gateway, f"/topics/{topic}/partitions/0/messages?offset=0&count={count}"))
        assert got == expected(truth, 0, 0, count), count
    assert records_of(get(gateway, f"/consume/{topic}/partitions/0?offset=140&count=100")) == expected(truth, 0, 140)


@pytest.mark.parametrize("count", ["0", "10001", "-1", "abc", "1.5", ""])
def test_count_outside_1_to_10000_is_400(gateway, data, count) -> None:
    topic, _ = data
    assert_error(get(gateway, f"/topics/{topic}/partitions/0?offset=0&count={count}"), 400, 400)


def test_max_bytes_bounds_key_and_value_bytes_and_one_record_always_goes(gateway, topic_factory, broker) -> None:
    topic = topic_factory(1)
    truth = produce_batches(broker.bootstrap, topic, [(0, [(b"kk", b"v" * 98) for _ in range(20)])])
    path = f"/topics/{topic}/partitions/0?offset=0&max_bytes="
    assert records_of(get(gateway, path + "250")) == expected(truth, 0, 0, 2)  # 100 bytes each
    assert records_of(get(gateway, path + "300")) == expected(truth, 0, 0, 3)
    assert records_of(get(gateway, path + "1")) == expected(truth, 0, 0, 1)  # never stuck
    assert records_of(get(gateway, path + "1000000000000")) == expected(truth, 0, 0)  # capped, not refused
    assert records_of(get(gateway, path + "1000&count=4")) == expected(truth, 0, 0, 4)  # first bound wins
    for bad in ("0", "-5", "x"):
        assert_error(get(gateway, path + bad), 400, 400)


# -- errors ------------------------------------------------------------------------------------
def test_unknown_topic_is_404_40401_and_creates_nothing(gateway, broker) -> None:
    name = f"never-created-{random.randrange(1 << 30)}"
    for path in (f"/topics/{name}/partitions/0?offset=0", f"/consume/{name}/partitions/0?offset=0",
                 f"/topics/{name}/partitions/0/messages?offset=0"):
        assert_error(get(gateway, path), 404, 40401)
    assert name not in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10).topics


def test_a_topic_created_after_start_is_found(gateway, topic_factory, broker) -> None:
    topic = topic_factory(2)  # unknown to the gateway's cached metadata: refreshed on the miss
    truth = produce_batches(broker.bootstrap, topic, [(1, [(b"a", b"b")])])
    assert records_of(get(gateway, f"/topics/{topic}/partitions/1?offset=0")) == expected(truth, 1, 0)


@pytest.mark.parametrize("partition", ["3", "-1", "99999999999999999999"])
def test_a_partition_the_topic_does_not_have_is_404_40402(gateway, data, partition) -> None:
    topic, _ = data
    for path in (f"/topics/{topic}/partitions/{partition}?offset=0", f"/consume/{topic}/partitions/{partition}?offset=0",
                 f"/topics/{topic}/partitions/{partition}/messages?offset=0"):
        assert_error(get(gateway, path), 404, 40402)


@pytest.mark.parametrize("partition", ["x", "1.0", "0x1"])
def test_a_partition_that_is_not_a_number_is_404_like_confluent(gateway, data, partition) -> None:
    topic, _ = data
    assert_error(get(gateway, f"/consume/{topic}/partitions/{partition}?offset=0"), 404, 404)


@pytest.mark.parametrize("query", ["", "?count=5", "?offset=", "?offset=abc", "?offset=1.5", "?offset=0x10"])
def test_offset_missing_or_not_an_integer_is_400(gateway, data, query) -> None:
    topic, _ = data
    for path in (f"/consume/{topic}/partitions/0{query}", f"/topics/{topic}/partitions/0/messages{query}"):
        body = assert_error(get(gateway, path), 400, 400)
        assert "offset" in body["message"]
    if "offset" in query:  # without it, /topics/{t}/partitions/{p} is partition metadata
        assert_error(get(gateway, f"/topics/{topic}/partitions/0{query}"), 400, 400)


@pytest.mark.parametrize("offset_from_end", [1, 2, 1000])
def test_an_offset_past_the_end_is_416_with_the_range(gateway, data, offset_from_end) -> None:
    topic, truth = data
    for partition in (0, 1, 2):
        end = len(truth[partition])
        offset = end + offset_from_end
        body = assert_error(get(gateway, f"/topics/{topic}/partitions/{partition}?offset={offset}"), 416, 41601)
        assert f"offset {offset} " in body["message"], body
        assert range_text(end) in body["message"], body


@pytest.mark.parametrize("offset", ["-1", "-2", "-1000", "9223372036854775807", "99999999999999999999999"])
def test_an_offset_below_the_earliest_or_beyond_any_is_416(gateway, data, offset) -> None:
    topic, truth = data
    body = assert_error(get(gateway, f"/topics/{topic}/partitions/0/messages?offset={offset}"), 416, 41601)
    end = len(truth[0])
    assert range_text(end) in body["message"], body


def test_errors_keep_the_connection_usable(gateway, data) -> None:
    topic, truth = data
    paths = [f"/topics/{topic}/partitions/0?offset=999", f"/topics/{topic}/partitions/9?offset=0",
             f"/consume/{topic}/partitions/0", f"/topics/{topic}/partitions/0?offset=0&count=1"]
    with Conn(gateway.host, gateway.port) as c:
        answers = []
        for p in paths:
            c.send(build_request("GET", p))
            answers.append(c.read_response())
    assert [a.status for a in answers] == [416, 404, 400, 200]
    assert records_of(answers[3]) == expected(truth, 0, 0, 1)


def test_a_client_that_leaves_before_the_answer_harms_nothing(gateway, data) -> None:
    topic, truth = data
    for _ in range(5):
        with Conn(gateway.host, gateway.port) as c:  # 416 takes a while: the client is gone first
            c.send(build_request("GET", f"/topics/{topic}/partitions/0?offset=100000"))
    time.sleep(0.5)
    assert records_of(get(gateway, f"/topics/{topic}/partitions/0?offset=0")) == expected(truth, 0, 0)


# -- concurrency, latency, the pool -----------------------------------------------------------
def test_concurrent_consumes_of_different_partitions_are_each_exact(gateway, topic_factory, broker) -> None:
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    partitions = 8
    topic = topic_factory(partitions)
    batches = []
    for p in range(partitions):
        for _ in range(3):
            batches.append((p, [rand_record(rnd, i) for i in range(rnd.randrange(1, 40))]))
    truth = produce_batches(broker.bootstrap, topic, batches)
    failures: list[str] = []

    def client(i: int) -> None:
        r = random.Random(seed + i)
        try:
            with Conn(gateway.host, gateway.port) as c:
                for _ in range(15):
                    p = r.randrange(partitions)
                    end = len(truth[p])
                    o = r.randrange(end + 1)
                    n = r.randrange(1, 50)
                    c.send(build_request("GET", f"/topics/{topic}/partitions/{p}/messages?offset={o}&count={n}"))
                    got = records_of(c.read_response())
                    if got != expected(truth, p, o, n):
                        failures.append(f"client {i}: partition {p} offset {o} count {n}: {got[:2]}")
        except Exception as exc:  # noqa: BLE001 - reported below with the seed
            failures.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, (seed, failures[:5])


def test_records_that_exist_come_back_without_waiting_for_a_poll_timeout(gateway, data) -> None:
    """20 sequential reads of existing records: a read that waited for a poll timeout (100 ms and
    more in most clients) would take seconds in total."""
    topic, truth = data
    paths = [f"/topics/{topic}/partitions/{p}?offset={o}" for p in (0, 2) for o in range(len(truth[p]))][:20]
    assert len(paths) == 20
    with Conn(gateway.host, gateway.port) as c:
        c.send(build_request("GET", paths[0]))  # warm the connection
        c.read_response()
        t0 = time.monotonic()
        for path in paths:
            c.send(build_request("GET", path))
            assert records_of(c.read_response())
        elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"20 reads took {elapsed:.3f}s"


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _broker_sockets(pid: int, broker_port: int) -> set[str]:
    """Inodes of the process's TCP connections to the broker's port."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == broker_port and fields[9] in inodes and fields[3] == "01":  # ESTABLISHED
                out.add(fields[9])
    return out


def test_no_kafka_consumer_per_request(gateway_factory, data, broker) -> None:
    """200 requests reuse the pool: no new threads and no new connections to the broker."""
    topic, truth = data
    g = gateway_factory("--consumer-pool-size", "3")
    broker_port = int(broker.bootstrap.rsplit(":", 1)[1])

    def run(n: int) -> None:
        with Conn(g.host, g.port) as c:
            for i in range(n):
                o = i % (len(truth[0]) + 1)
                c.send(build_request("GET", f"/topics/{topic}/partitions/0?offset={o}"))
                assert records_of(c.read_response()) == expected(truth, 0, o)

    def slow() -> None:  # an offset past the end takes tens of ms (Tansu answers nothing)
        assert_error(get(g, f"/topics/{topic}/partitions/0?offset=1000"), 416, 41601)

    # Warm up every consumer: each connects on first use, and a little later to its group
    # coordinator (librdkafka wants a group.id even for assign()). Six slow requests at once keep
    # all three busy; repeat until the set of connections to the broker holds still.
    sockets_before: set[str] = set()
    for _ in range(10):
        warm = [threading.Thread(target=slow) for _ in range(6)] + [threading.Thread(target=run, args=(10,))]
        for t in warm:
            t.start()
        for t in warm:
            t.join(60)
        time.sleep(0.5)
        now = _broker_sockets(g.proc.pid, broker_port)
        if now == sockets_before:
            break
        sockets_before = now
    threads_before = _threads(g.proc.pid)
    peak = threads_before
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _threads(g.proc.pid))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=run, args=(50,)) for _ in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(120)
    stop.set()
    sampler.join()
    assert peak <= threads_before + 1, (threads_before, peak)
    assert threads_before < 60, threads_before
    assert _broker_sockets(g.proc.pid, broker_port) == sockets_before


def test_a_pool_of_one_queues_concurrent_requests(gateway_factory, data) -> None:
    topic, truth = data
    g = gateway_factory("--consumer-pool-size", "1")
    results: list[Any] = []

    def client(p: int) -> None:
        results.append(records_of(get(g, f"/topics/{topic}/partitions/{p}?offset=0")) == expected(truth, p, 0))

    threads = [threading.Thread(target=client, args=(p,)) for p in (0, 2) * 8]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True] * 16


# -- round trips -------------------------------------------------------------------------------
N_ROUND_TRIP = 10_000


def _read_all(g: Any, topic: str, partition: int) -> list[tuple]:
    """Every record of a partition through the gateway, page by page, until []."""
    out: list[tuple] = []
    with Conn(g.host, g.port) as c:
        while True:
            c.send(build_request("GET", f"/topics/{topic}/partitions/{partition}/messages?offset={len(out)}&count=1000"))
            page = records_of(c.read_response())
            if not page:
                return out
            assert page[0][1] == len(out)
            out.extend(page)


def _check_round_trip(g: Any, topic: str, partitions: int, sent: dict[tuple[int, int], tuple]) -> None:
    got = {}
    for p in range(partitions):
        for partition, offset, key, value in _read_all(g, topic, p):
            assert partition == p
            got[(p, offset)] = (key, value)
    assert len(got) == len(sent) == N_ROUND_TRIP
    for pos, rec in sent.items():
        assert got[pos] == rec, pos


def test_v3_produce_then_v1_consume_10000_records_exact(gateway, topic_factory) -> None:
    """The same through the v3 streaming endpoint."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    partitions = 4
    topic = topic_factory(partitions)
    wire, records = [], []
    for i in range(N_ROUND_TRIP):
        key = None if i % 5 == 0 else rnd.randbytes(rnd.randrange(0, 16))
        value = None if i % 97 == 3 else rnd.randbytes(rnd.randrange(0, 200))
        rec: dict[str, Any] = {"partition_id": rnd.randrange(partitions)}
        if key is not None:
            rec["key"] = {"type": "BINARY", "data": B64(key)}
        if value is not None:
            rec["value"] = {"type": "BINARY", "data": B64(value)}
        wire.append(json.dumps(rec).encode())
        records.append((key, value))
    with ProduceStream(gateway.host, gateway.port, topic, timeout=120) as s:
        assert s.read_status(10) == 200
        for start in range(0, N_ROUND_TRIP, 500):
            s.send(b"".join(wire[start : start + 500]))
        s.end()
        reports = s.read_rest(120)
    assert len(reports) == N_ROUND_TRIP
    sent = {}
    for rep, rec in zip(reports, records, strict=True):
        assert rep["error_code"] == 200, (rep, seed)
        sent[(rep["partition_id"], rep["offset"])] = rec
    _check_round_trip(gateway, topic, partitions, sent)


def test_v1_produce_then_v1_consume_10000_records_exact(gateway, topic_factory) -> None:
    """The v1 round trip: 10,000 records in requests of 500, to explicit partitions (on both v1
    produce paths) and keyed ones, read back through v1 consume byte for byte."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    partitions = 4
    topic = topic_factory(partitions)
    sent: dict[tuple[int, int], tuple] = {}
    with Conn(gateway.host, gateway.port, timeout=60) as c:
        for start in range(0, N_ROUND_TRIP, 500):
            url_partition = rnd.randrange(partitions) if start % 1000 else None
            path = f"/topics/{topic}" + (f"/partitions/{url_partition}" if url_partition is not None else "")
            body, records = [], []
            for i in range(start, start + 500):
                key = None if i % 5 == 0 else rnd.randbytes(rnd.randrange(0, 16))
                value = None if i % 97 == 3 else rnd.randbytes(rnd.randrange(0, 200))
                rec: dict[str, Any] = {"value": None if value is None else B64(value)}
                if key is not None:
                    rec["key"] = B64(key)
                if url_partition is None and i % 3 == 0:
                    rec["partition"] = rnd.randrange(partitions)
                body.append(rec)
                records.append((key, value))
            c.send(build_request("POST", path, json.dumps({"records": body}).encode(),
                                 {"Content-Type": V1_BINARY}))
            resp = c.read_response()
            assert resp.status == 200, (resp, seed)
            offsets = resp.json()["offsets"]
            for entry, rec_sent, wire in zip(offsets, records, body, strict=True):
                assert entry.get("error_code") is None, (entry, seed)
                p = entry["partition"]
                assert p == (url_partition if url_partition is not None else wire.get("partition", p))
                sent[(p, entry["offset"])] = rec_sent
    _check_round_trip(gateway, topic, partitions, sent)


def test_producer_then_v1_consume_10000_records_exact(gateway, topic_factory, broker) -> None:
    """The same with a plain confluent-kafka producer (batches of many records, lz4)."""
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    partitions = 3
    topic = topic_factory(partitions)
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "compression.type": "lz4",
                  "enable.idempotence": True})
    sent: dict[tuple[int, int], tuple] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        sent[(msg.partition(), msg.offset())] = (msg.key(), msg.value())

    for i in range(N_ROUND_TRIP):
        key, value = rand_record(rnd, i)
        p.produce(topic, key=key, value=value, partition=rnd.randrange(partitions), on_delivery=on_delivery)
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(60) == 0
    _check_round_trip(gateway, topic, partitions, sent)


def test_a_hung_broker_is_503_50003_and_consuming_recovers(broker_factory, gateway_factory) -> None:
    """A broker that does not answer is a cluster the gateway cannot reach: 503/50003 (the
    client may retry), not 500."""
    from support.kafka import create_topic

    b = broker_factory()
    topic = create_topic(b.bootstrap, "hung", 1)
    truth = produce_batches(b.bootstrap, topic, [(0, [(b"k", b"v1"), (None, b"v2")])])
    g = gateway_factory(bootstrap=b.bootstrap)
    path = f"/topics/{topic}/partitions/0?offset=0"
    assert records_of(get(g, path)) == expected(truth, 0, 0)
    assert b.pid is not None
    os.kill(b.pid, signal.SIGSTOP)  # a hung broker: it keeps its state
    try:
        start = time.monotonic()
        resp = get(g, path)
        elapsed = time.monotonic() - start
    finally:
        os.kill(b.pid, signal.SIGCONT)
    body = assert_error(resp, 503, 50003)
    assert topic in body["message"], body
    assert elapsed < 15, elapsed
    deadline = time.monotonic() + 20
    while True:  # the same pooled consumers carry on once the broker answers again
        resp = get(g, path)
        if resp.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert records_of(resp) == expected(truth, 0, 0)
