"""The embedded broker, the topic fixture and the read-back helpers work end to end.

Also checks our independent murmur2 (tests/support/murmur2.py) against librdkafka's
``murmur2_random`` partitioner on a real broker, so later tests can predict where a
keyed record lands.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from support.kafka import Record, consume_partition, consume_topic
from support.murmur2 import partition_for_key

from gateway.kafka.embedded import AddressInUse, EmbeddedBroker, find_free_port

PARTITIONS = 3
RECORDS = 1000
BASE_TS_MS = 1_700_000_000_000


def _producer(bootstrap: str, **extra: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            **extra,
        }
    )


def _produce_all(producer: Producer, sends: list[dict[str, Any]]) -> list[Message]:
    """Produce every record, flush, and return the delivery reports (all successful)."""
    reports: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            reports.append(msg)

    for send in sends:
        producer.produce(on_delivery=on_delivery, **send)
        producer.poll(0)
    assert producer.flush(15.0) == 0, "records still in flight after 15 s"
    assert errors == []
    assert len(reports) == len(sends)
    return reports


def _headers(i: int) -> list[tuple[str, bytes | None]]:
    if i % 4 == 0:
        return []
    # Duplicate names and a null value must come back as sent, in order.
    return [("seq", str(i).encode()), ("dup", b"first"), ("null", None), ("dup", b"second")]


def test_session_broker_answers_metadata(broker: EmbeddedBroker) -> None:
    assert broker.running and broker.pid is not None
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
    assert md.cluster_id == "local"
    assert [(b.host, b.port) for b in md.brokers.values()] == [("127.0.0.1", broker.port)]


def test_records_round_trip_exactly(broker: EmbeddedBroker, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(PARTITIONS)
    sends: list[dict[str, Any]] = [
        {
            "topic": topic,
            "partition": i % PARTITIONS,
            "key": None if i % 10 == 0 else f"key-{i}".encode(),
            "value": None if i % 13 == 0 else f"value-{i}-".encode() * (1 + i % 5),
            "headers": _headers(i),
            "timestamp": BASE_TS_MS + i,
        }
        for i in range(RECORDS)
    ]
    reports = _produce_all(_producer(broker.bootstrap), sends)

    expected: dict[int, list[Record]] = {p: [] for p in range(PARTITIONS)}
    for send in sends:
        part = expected[send["partition"]]
        part.append(
            Record(
                topic=topic,
                partition=send["partition"],
                offset=len(part),
                key=send["key"],
                value=send["value"],
                headers=send["headers"],
                timestamp=(TIMESTAMP_CREATE_TIME, send["timestamp"]),
            )
        )
    # Delivery reports name the same offsets as a gap-free per-partition sequence.
    assert sorted((m.partition(), m.offset()) for m in reports) == sorted(
        (r.partition, r.offset) for rs in expected.values() for r in rs
    )

    got = consume_topic(broker.bootstrap, topic, PARTITIONS, RECORDS, timeout=20.0,
                        quiet_period=0.3)
    for p in range(PARTITIONS):
        assert got[p] == expected[p], f"partition {p} differs"

    # One partition on its own reads the same records.
    assert consume_partition(broker.bootstrap, topic, 1, len(expected[1])) == expected[1]


def test_consume_partition_says_how_many_arrived(
    broker: EmbeddedBroker, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(1)
    _produce_all(_producer(broker.bootstrap),
                 [{"topic": topic, "partition": 0, "value": b"x"} for _ in range(3)])
    with pytest.raises(AssertionError, match=r"3 of 4 records arrived within 1\.0 s"):
        consume_partition(broker.bootstrap, topic, 0, 4, timeout=1.0)
    with pytest.raises(AssertionError, match="more than the 2 expected records"):
        consume_partition(broker.bootstrap, topic, 0, 2, timeout=5.0, quiet_period=1.0)


@pytest.mark.parametrize("partitions", [PARTITIONS, 7])
def test_murmur2_partitioner_matches_reference(
    broker: EmbeddedBroker, topic_factory: Callable[..., str], partitions: int
) -> None:
    seed = int(os.environ.get("TEST_SEED", "0")) or random.randrange(1, 2**32)
    rng = random.Random(seed)
    keys = [rng.randbytes(n) for n in range(41)]  # every tail length, and the empty key
    keys += [rng.randbytes(rng.randrange(1, 200)) for _ in range(200)]
    keys += [b"21", b"foobar", b"abc", b"a-little-bit-long-string"]
    topic = topic_factory(partitions)

    producer = _producer(broker.bootstrap, partitioner="murmur2_random")
    reports = _produce_all(producer, [{"topic": topic, "key": k, "value": b"v"} for k in keys])

    placed = {m.key(): m.partition() for m in reports}
    wrong = {k: (p, partition_for_key(k, partitions)) for k, p in placed.items()
             if p != partition_for_key(k, partitions)}
    assert wrong == {}, f"seed={seed}: key -> (librdkafka, reference)"

    # And the broker holds each key in that partition.
    got = consume_topic(broker.bootstrap, topic, partitions, len(keys), timeout=20.0)
    for p, records in got.items():
        for r in records:
            assert r.key is not None and partition_for_key(r.key, partitions) == p, f"seed={seed}"


def test_embedded_broker_refuses_a_taken_port(broker: EmbeddedBroker) -> None:
    # Tansu panics when it cannot bind (and even exits 0): start() looks first, and must not
    # mistake the session broker already on that port for its own.
    intruder = EmbeddedBroker("127.0.0.1", broker.port)
    with pytest.raises(AddressInUse, match=f"^127.0.0.1:{broker.port}: address already in use$"):
        intruder.start(timeout=5.0)
    assert not intruder.running
    assert broker.running


def test_embedded_broker_stop_is_idempotent_and_restart_is_empty() -> None:
    b = EmbeddedBroker("127.0.0.1", find_free_port())
    b.stop()  # never started: nothing to do
    with b:
        first_pid = b.pid
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("t", 1)])["t"].result(10)
        assert "t" in admin.list_topics(timeout=5).topics
        del admin
    assert not b.running
    b.stop()
    b.start()
    try:
        assert b.pid != first_pid
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
        assert "t" not in md.topics, "memory storage should start empty"
    finally:
        b.stop()
    assert not b.running


def test_embedded_broker_dies_with_its_parent() -> None:
    child = textwrap.dedent(
        """
        import time
        from gateway.kafka.embedded import EmbeddedBroker, find_free_port
        b = EmbeddedBroker("127.0.0.1", find_free_port())
        b.start()
        print(b.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        tansu_pid = int(parent.stdout.readline())
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()

    deadline = time.monotonic() + 5.0
    while _alive(tansu_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if _alive(tansu_pid):
        os.kill(tansu_pid, signal.SIGKILL)
        pytest.fail("the broker outlived its SIGKILLed parent (PR_SET_PDEATHSIG not set?)")


def _alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (an orphan is reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_fault_proxy_carries_every_client_of_a_broker_that_advertises_it(
    broker_factory: Callable[..., EmbeddedBroker],
) -> None:
    """The adversity tests put support.proxy.FaultProxy between clients and a broker started
    with ``advertised=`` the proxy's address: clients then reach that broker only through it."""
    from confluent_kafka import KafkaException
    from support.proxy import FaultProxy

    proxy = FaultProxy("127.0.0.1", 0, find_free_port()).start()
    try:
        b = broker_factory(advertised=proxy.address)
        proxy.upstream = ("127.0.0.1", b.port)
        md = AdminClient({"bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
        assert [(x.host, x.port) for x in md.brokers.values()] == [("127.0.0.1", proxy.port)]
        p = _producer(proxy.address)
        delivered: list[Message] = []
        p.produce("via-proxy", b"v",
                  on_delivery=lambda err, msg: delivered.append(msg) if err is None else None)
        assert p.flush(10) == 0 and len(delivered) == 1
        assert proxy.connections_accepted > 0
        assert proxy.reject() > 0  # the producer's connections are reset, new ones too
        with pytest.raises(KafkaException):
            AdminClient({"bootstrap.servers": proxy.address}).list_topics(timeout=1)
        proxy.heal()
        md = AdminClient({"bootstrap.servers": proxy.address}).list_topics(timeout=5)
        assert "via-proxy" in md.topics
    finally:
        proxy.stop()
