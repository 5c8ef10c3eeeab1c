"""Kafka round trips for tests: create a topic, read back what landed in it.

Reading uses ``assign()`` from offset 0, never ``subscribe()``: no consumer-group join
(which takes ~half of ``session.timeout.ms`` on Tansu). It never looks at watermarks
either: Tansu reports the high watermark as the first offset of the last batch + 1, so
the only trustworthy answer to "what is in this partition" is to read it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

__all__ = [
    "Record",
    "consume_all",
    "consume_partition",
    "consume_topic",
    "create_topic",
    "wait_for_topic",
]


class Record(NamedTuple):
    """One record as read back from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]  # in wire order, duplicates kept
    timestamp: tuple[int, int]  # (confluent_kafka.TIMESTAMP_*, milliseconds)

    @classmethod
    def from_message(cls, msg: Message) -> Record:
        return cls(
            topic=msg.topic(),
            partition=msg.partition(),
            offset=msg.offset(),
            key=msg.key(),
            value=msg.value(),
            headers=list(msg.headers() or ()),
            timestamp=msg.timestamp(),
        )


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 10.0) -> str:
    """Create *name* with *partitions* partitions and wait until metadata shows them all."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    wait_for_topic(bootstrap, name, partitions, timeout=timeout, admin=admin)
    return name


def wait_for_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    timeout: float = 10.0,
    admin: AdminClient | None = None,
) -> None:
    """Wait until a full metadata listing shows *name* with *partitions* partitions.

    Full listing only: a per-topic metadata request can auto-create the topic on Tansu.
    """
    admin = admin or AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    seen = "absent"
    while True:
        md = admin.list_topics(timeout=max(0.1, deadline - time.monotonic()))
        topic = md.topics.get(name)
        if topic is not None:
            ready = [p for p in topic.partitions.values() if p.error is None and p.leader >= 0]
            if topic.error is None and len(topic.partitions) == partitions == len(ready):
                return
            seen = f"{len(ready)}/{len(topic.partitions)} partitions ready, error={topic.error}"
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"topic {name!r} not ready with {partitions} partitions after {timeout} s: {seen}"
            )
        time.sleep(0.02)


def _consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            # A group id is required by the client but never joined: we assign().
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
        }
    )


def _read(
    bootstrap: str,
    topic: str,
    partitions: list[int],
    count: int,
    timeout: float,
    quiet_period: float,
) -> list[Record]:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    consumer = _consumer(bootstrap)
    records: list[Record] = []
    errors: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout
        while len(records) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{topic} partitions {partitions}: {len(records)} of {count} records "
                    f"arrived within {timeout} s"
                    + (f"; errors: {errors[-5:]}" if errors else "")
                )
            batch = consumer.consume(num_messages=min(count - len(records), 10000),
                                     timeout=min(remaining, 0.2))
            for msg in batch:
                err = msg.error()
                if err is None:
                    records.append(Record.from_message(msg))
                elif err.fatal() or err.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                    raise KafkaException(err)
                else:
                    errors.append(str(err))
        # Optionally prove that nothing follows the records we expected.
        end = time.monotonic() + quiet_period
        while (left := end - time.monotonic()) > 0:
            extra = [m for m in consumer.consume(num_messages=100, timeout=min(left, 0.2))
                     if m.error() is None]
            if extra:
                first = Record.from_message(extra[0])
                raise AssertionError(
                    f"{topic} partitions {partitions}: more than the {count} expected "
                    f"records, e.g. partition {first.partition} offset {first.offset}"
                )
    finally:
        consumer.close()
    return records


def consume_partition(
    bootstrap: str,
    topic: str,
    partition: int,
    count: int,
    timeout: float = 30.0,
    *,
    quiet_period: float = 0.0,
) -> list[Record]:
    """Read exactly *count* records of one partition, from offset 0, in offset order.

    Fails (AssertionError) if fewer arrive within *timeout* s, saying how many did.
    With *quiet_period* > 0, also fails if any further record shows up in that time.
    """
    return _read(bootstrap, topic, [partition], count, timeout, quiet_period)


def consume_topic(
    bootstrap: str,
    topic: str,
    partitions: int | Iterable[int],
    count: int,
    timeout: float = 30.0,
    *,
    quiet_period: float = 0.0,
) -> dict[int, list[Record]]:
    """Read *count* records in total from the given partitions (a number means 0..n-1).

    Returns ``{partition: [records in offset order]}`` with an entry (possibly empty)
    for every partition read. Same failure rules as ``consume_partition``.
    """
    parts = list(range(partitions)) if isinstance(partitions, int) else list(partitions)
    by_partition: dict[int, list[Record]] = {p: [] for p in parts}
    for record in _read(bootstrap, topic, parts, count, timeout, quiet_period):
        by_partition[record.partition].append(record)
    return by_partition


def consume_all(
    bootstrap: str,
    topic: str,
    partitions: int,
    at_least: int = 0,
    timeout: float = 30.0,
    idle: float = 1.0,
) -> list[Record]:
    """Every record of *topic* (partitions 0..n-1) from offset 0: at least *at_least* of them
    within *timeout* s, then whatever else arrives until nothing new has come for *idle* s.

    For topics whose exact content is not known in advance (records that failed with a
    timeout may still have been written); the caller decides what may be there.
    """
    consumer = _consumer(bootstrap)
    records: list[Record] = []
    errors: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if len(records) >= at_least and now - quiet_since >= idle:
                return records
            if now >= deadline:
                raise AssertionError(
                    f"{topic}: {len(records)} records read within {timeout} s, expected at "
                    f"least {at_least}" + (f"; errors: {errors[-5:]}" if errors else "")
                )
            for msg in consumer.consume(num_messages=10000, timeout=0.2):
                err = msg.error()
                if err is None:
                    records.append(Record.from_message(msg))
                    quiet_since = time.monotonic()
                elif err.fatal() or err.code() == KafkaError.OFFSET_OUT_OF_RANGE:
                    raise KafkaException(err)
                else:
                    errors.append(str(err))
    finally:
        consumer.close()
