"""Kafka known to be unreachable (gateway.kafka.health): records fail at once, not after the
message timeout, until Kafka answers again.

A stream's records wait in librdkafka for at most ``message.timeout.ms``; but while every broker
connection is down, the records read next would each wait that long too, one in-flight window
after another (a 50,000-record stream once took 902 s to settle). So while librdkafka says every
broker is down, new records get a 50003 report at once (the client may resend). Any sign that
Kafka answers (a delivery, a metadata listing, which runs every half second meanwhile) ends it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError
from support.fake_producer import FakeRdProducer
from test_session import FakeStream, ListSplitter, rec

from gateway.kafka.health import ClusterHealth
from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG, KafkaProducer
from gateway.produce.session import ProduceSession
from gateway.stats import ProduceStats


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def test_the_message_timeout_is_chosen_for_a_gateway() -> None:
    """A client waits at most 30 s for a report by default (librdkafka's own default is 300 s),
    and librdkafka reconnects within a second of a broker's return."""
    assert DEFAULT_PRODUCER_CONFIG["message.timeout.ms"] == 30000
    assert DEFAULT_PRODUCER_CONFIG["reconnect.backoff.max.ms"] == 1000


def test_records_fail_at_once_while_every_broker_is_down(
    loop: Any, caplog: pytest.LogCaptureFixture
) -> None:
    health = ClusterHealth()
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf), health=health)
    fake = kp.current
    stream = FakeStream()
    pieces = [[rec(i, partition=0)] for i in range(6)]
    s = ProduceSession(stream, kp, ListSplitter(pieces), cluster_id="c", topic="t", partitions=1,
                       max_in_flight=100, stats=ProduceStats())

    s.on_body(memoryview(b"x"))  # record 0: handed over
    assert len(fake.queued) == 1
    fake.errors.append((KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    with caplog.at_level(logging.WARNING, logger="gateway.kafka"):
        kp.poll_now()
    assert health.down is not None and "every broker connection is down" in health.down
    assert any("Kafka is unreachable" in r.getMessage() for r in caplog.records)

    # Records 1 and 2 get 50003 at once, behind record 0's report (order is kept).
    s.on_body(memoryview(b"x"))
    s.on_body(memoryview(b"x"))
    assert len(fake.queued) == 1
    assert stream.reports() == []
    fake.deliver(0, KafkaError._MSG_TIMED_OUT)
    kp.poll_now()
    reports = stream.reports()
    assert [r["error_code"] for r in reports] == [50003, 50003, 50003]
    assert "Kafka is unreachable" in reports[1]["message"] and "resend it" in reports[1]["message"]
    # Kafka answers again (a metadata listing succeeded): records flow.
    health.answered()
    s.on_body(memoryview(b"x"))
    assert len(fake.queued) == 2
    fake.deliver(1)
    s.on_body_end()
    kp.poll_now()
    assert [r["error_code"] for r in stream.reports()] == [50003, 50003, 50003, 200]
    assert stream.ended


def test_a_delivery_says_kafka_answers(loop: Any) -> None:
    health = ClusterHealth()
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf), health=health)
    fake = kp.current
    stream = FakeStream()
    s = ProduceSession(stream, kp, ListSplitter([[rec(0, partition=0)]]), cluster_id="c",
                       topic="t", partitions=1, max_in_flight=10, stats=ProduceStats())
    s.on_body(memoryview(b"x"))
    health.mark_down("librdkafka", "every broker connection is down")
    fake.deliver(0)  # a record handed over before: librdkafka reconnected and delivered it
    kp.poll_now()
    assert health.down is None


def test_a_metadata_listing_that_succeeds_also_says_kafka_answers() -> None:
    health = ClusterHealth()
    seen: list[str | None] = []
    health.listen(seen.append)
    health.mark_down("librdkafka", "every broker connection is down")
    health.mark_down("embedded-broker", "the embedded broker exited")
    health.answered()  # librdkafka's connections come back by themselves...
    assert health.down == "the embedded broker exited"  # ...a watched process does not
    health.mark_up("embedded-broker")
    assert health.down is None
    # The embedded broker's reason is shown as soon as it is known (librdkafka's is the generic
    # one), and stays while the process is not back.
    assert seen == ["every broker connection is down", "the embedded broker exited",
                    "the embedded broker exited", None]


def test_a_batch_while_kafka_is_unreachable_is_answered_at_once(loop: Any) -> None:
    """A request answered whole whose records arrive while Kafka is unreachable: every entry
    fails with 50003 at once (no wait for a timeout)."""
    from gateway.produce import JsonSplitter
    from gateway.produce.batch import BatchRequest

    health = ClusterHealth()
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf), health=health)
    health.mark_down("librdkafka", "every broker connection is down")

    class Conn:
        answers: list[tuple[int, bytes]] = []

        def respond(self, status: int, body: bytes, **_: Any) -> None:
            self.answers.append((status, body))

    conn = Conn()
    req = BatchRequest(conn, kp, lambda: JsonSplitter(1 << 20), cluster_id="c", topic="t",
                       partitions=1, max_entries=10, max_bytes=1 << 20, stats=ProduceStats())
    req.on_body(memoryview(json.dumps({"entries": [
        {"id": "a", "value": {"type": "STRING", "data": "x"}},
        {"id": "b", "value": {"type": "BINARY", "data": "not base64"}},
    ]}).encode()))
    req.on_body_end()
    ((status, body),) = conn.answers
    doc = json.loads(body)
    assert status == 207 and doc["successes"] == []
    assert [(f["id"], f["error_code"]) for f in doc["failures"]] == [("a", 50003), ("b", 400)]
    assert kp.current.queued == []


def test_repeated_error_events_are_logged_once_per_interval(
    loop: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """librdkafka repeats "1/1 brokers are down" every second while the broker is away: one
    line, then one more per ERROR_LOG_INTERVAL saying how many were not logged."""
    from gateway.kafka import producer as producer_module

    clock = [1000.0]
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp.current
    monkeypatch.setattr(producer_module.time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="gateway.kafka"):
        for _ in range(25):  # 25 s of one event a second
            fake.errors.append((KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            kp.poll_now()
            clock[0] += 1.0
    lines = [r.getMessage() for r in caplog.records if "_ALL_BROKERS_DOWN" in r.getMessage()]
    assert lines == [
        "producer: _ALL_BROKERS_DOWN: 1/1 brokers are down",
        "producer: _ALL_BROKERS_DOWN: 1/1 brokers are down (9 more like it in the last 10 s)",
        "producer: _ALL_BROKERS_DOWN: 1/1 brokers are down (9 more like it in the last 10 s)",
    ]


def test_a_source_that_knows_the_cause_gives_the_reason() -> None:
    """librdkafka may notice "every broker connection is down" a few milliseconds before the
    embedded broker's keeper reports its exit: the keeper's reason is the one shown."""
    health = ClusterHealth()
    health.mark_down("librdkafka", "every broker connection is down (1/1 brokers are down)")
    health.mark_down("embedded-broker", "the embedded broker was killed by SIGKILL; it is being restarted")
    assert health.down == "the embedded broker was killed by SIGKILL; it is being restarted"
    health.mark_up("embedded-broker")
    assert health.down == "every broker connection is down (1/1 brokers are down)"
    health.answered()
    assert health.down is None
