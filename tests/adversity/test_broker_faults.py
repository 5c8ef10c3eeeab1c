"""The broker goes away in the middle of v3 streams (issue 5, adversity).

Every record the gateway accepted ends with exactly one report, in order: 200 only if Kafka
acknowledged it, 50003 (the client may resend) if not. Every 200 is in Kafka afterwards, at the
partition and offset its report gives (report i is record i's: values are numbered), and no
record is in Kafka twice.

Tansu with memory storage loses everything when killed, so the outages that must lose nothing
keep the broker's state: a hung broker (SIGSTOP, then SIGCONT) and network faults from a TCP
proxy of ours between the gateway and the broker (support.proxy). The real kill and restart is
tested too, expecting the data to be gone but the reports and the gateway's recovery right.

librdkafka's message timeout is short here (``message.timeout.ms``), so that records held
through an outage fail within the test's time; every outage outlasts it.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException
from support.gateway import GatewayProcess, crash_checked
from support.http import request
from support.kafka import Record, consume_all, create_topic
from support.proxy import FaultProxy
from support.streaming import PacedStream, check_acknowledged

from gateway.kafka.embedded import EmbeddedBroker, find_free_port

MESSAGE_TIMEOUT_MS = 1000
OUTAGE = 2.0  # seconds: twice the message timeout, so records held through it fail
PARTITIONS = 3
GATEWAY_FLAGS = (
    "-X", f"message.timeout.ms={MESSAGE_TIMEOUT_MS}",
    "-X", "reconnect.backoff.max.ms=200",
    "--shutdown-timeout", "3",
)
# Every report is known a message timeout after the outage at the latest; beyond this, a
# record has been left without one.
REPORT_WAIT = 8.0


def _check_one_report_each(s: PacedStream) -> Counter[int]:
    """Exactly one report per record sent, each 200 or 50003 (the retriable code)."""
    codes = Counter(r["error_code"] for r in s.reports)
    assert len(s.reports) == s.sent, f"{len(s.reports)} reports for {s.sent} records: {codes}"
    assert set(codes) <= {200, 50003}, codes
    for r in s.reports:
        if r["error_code"] == 50003:
            assert set(r) == {"error_code", "message"} and r["message"], r
    return codes


def _no_duplicates(landed: list[Record]) -> None:
    seen = Counter(r.value for r in landed)
    twice = [v for v, n in seen.items() if n > 1]
    assert not twice, f"{len(twice)} records are in Kafka more than once, e.g. {twice[:3]}"


def _fresh_stream_all_acknowledged(
    g: GatewayProcess, topic: str, tag: str, bootstrap: str, partitions: int = PARTITIONS
) -> None:
    """After the fault, a new stream is served normally: all 200, all in Kafka."""
    s = PacedStream(g.host, g.port, topic, tag=tag, batch=50, interval=0.01, limit=500)
    try:
        assert s.status == 200
        s.wait_reports(500, timeout=REPORT_WAIT)
        s.finish(REPORT_WAIT)
    finally:
        s.close()
    assert Counter(r["error_code"] for r in s.reports) == {200: 500}
    check_acknowledged([s], consume_all(bootstrap, topic, partitions, at_least=500, idle=0.5))


def _stream_through(
    g: GatewayProcess, topic: str, tag: str, fault: Callable[[PacedStream], None]
) -> PacedStream:
    """A stream of 1,000 records/s: 300 reports, ``fault``, then, once the gateway says it is
    ready again (it answers 503 and fails records at once while Kafka is known unreachable),
    1 s more, then its end."""
    s = PacedStream(g.host, g.port, topic, tag=tag)
    try:
        assert s.status == 200
        s.wait_reports(300, timeout=REPORT_WAIT)
        fault(s)
        s.wait_reports(s.sent, timeout=REPORT_WAIT)
        _wait_ready(g)
        _wait_acknowledged(s)
        time.sleep(1.0)  # the stream goes on after the outage
        _wait_steady(s)
        s.finish(REPORT_WAIT)
    finally:
        s.close()
    return s


def _wait_ready(g: GatewayProcess) -> None:
    deadline = time.monotonic() + REPORT_WAIT
    while request(g.host, g.port, "GET", "/readyz").status != 200:
        assert time.monotonic() < deadline, "the gateway did not say it was ready again"
        time.sleep(0.1)


def _wait_acknowledged(s: PacedStream) -> None:
    """Records read from now on are acknowledged again (librdkafka may take a moment more than
    the metadata listing to reconnect: records in between fail with 50003, as they may)."""
    start = len(s.reports)
    deadline = time.monotonic() + REPORT_WAIT
    while not any(r["error_code"] == 200 for r in s.reports[start:]):
        assert time.monotonic() < deadline, "nothing acknowledged once the gateway was ready"
        time.sleep(0.05)


def _wait_steady(s: PacedStream, run: int = 300) -> None:
    """The last ``run`` reports are all 200. A late error after the outage (Tansu may fence the
    producer's epoch once librdkafka bumps it: the producer is replaced, its queued records get
    50003) is recovered from: the records after it are acknowledged again."""
    deadline = time.monotonic() + REPORT_WAIT
    while True:
        last = s.reports[-run:]
        if len(last) == run and all(r["error_code"] == 200 for r in last):
            return
        assert time.monotonic() < deadline, f"no {run} acknowledged reports in a row: {last[-5:]}"
        time.sleep(0.05)


def _stop_cleanly(g: GatewayProcess) -> None:
    assert g.terminate(30) == 0


def test_hung_broker_sigstop_sigcont(broker_factory, gateway_factory) -> None:
    b = broker_factory()
    topic = create_topic(b.bootstrap, "hung-broker", PARTITIONS)
    g = gateway_factory(*GATEWAY_FLAGS, bootstrap=b.bootstrap)

    def hang(_s: PacedStream) -> None:
        assert b.pid is not None
        os.kill(b.pid, signal.SIGSTOP)  # records keep coming; in-flight requests wait
        try:
            time.sleep(OUTAGE)
        finally:
            os.kill(b.pid, signal.SIGCONT)

    with crash_checked(g):
        s = _stream_through(g, topic, "hung", hang)
        codes = _check_one_report_each(s)
        assert codes[50003] > 0, f"records held through a {OUTAGE}s outage did not fail: {codes}"
        landed = consume_all(b.bootstrap, topic, PARTITIONS, at_least=codes[200], idle=0.5)
        check_acknowledged([s], landed)
        _no_duplicates(landed)
        # The gateway recovered within the stream: its last records were acknowledged again.
        assert s.reports[-1]["error_code"] == 200, s.reports[-20:]
        _fresh_stream_all_acknowledged(g, topic, "hung-after", b.bootstrap)
        _stop_cleanly(g)


@pytest.fixture
def proxied(broker_factory) -> Iterator[tuple[FaultProxy, EmbeddedBroker]]:
    """A broker whose clients all go through a FaultProxy (it is advertised as the broker)."""
    proxy = FaultProxy("127.0.0.1", 0, find_free_port())
    proxy.start()
    try:
        b = broker_factory(advertised=proxy.address)
        proxy.upstream = ("127.0.0.1", b.port)
        yield proxy, b
    finally:
        proxy.stop()


def _outage(start: Callable[[FaultProxy], object]) -> Callable[[FaultProxy, PacedStream], None]:
    def fault(proxy: FaultProxy, s: PacedStream) -> None:
        # At a moment when every record sent is acknowledged (no request in flight), so that
        # the outage itself is all that is tested; records keep coming through it.
        s.pause()
        s.resume()
        start(proxy)
        time.sleep(OUTAGE)
        proxy.heal()

    return fault


def _answers_lost(proxy: FaultProxy, s: PacedStream) -> None:
    """Connections reset while requests are in flight and their answers are lost: the broker
    has the records, the producer sends them again and learns that it has them."""
    for _ in range(3):
        proxy.hold_responses()
        time.sleep(0.3)
        assert proxy.reset() > 0, "no Kafka connection went through the proxy"
        proxy.heal()
        time.sleep(0.5)


NETWORK_FAULTS = [
    # refused: every connection reset, and every new one, for the outage
    pytest.param("refused", _outage(FaultProxy.reject), True, id="refused"),
    # blackhole: nothing moves either way, new connections hang unanswered
    pytest.param("blackhole", _outage(FaultProxy.blackhole), True, id="blackhole"),
    # the answers of in-flight requests lost, then the connections reset
    pytest.param(
        "answers-lost", _answers_lost, False, id="answers-lost",
    ),
]


@pytest.mark.parametrize(("name", "fault", "must_fail"), NETWORK_FAULTS)
def test_network_fault_between_gateway_and_broker(
    name: str,
    fault: Callable[[FaultProxy, PacedStream], None],
    must_fail: bool,
    proxied: tuple[FaultProxy, EmbeddedBroker],
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    proxy, _broker = proxied
    topic = create_topic(proxy.address, f"net-{name}", PARTITIONS)
    g = gateway_factory(*GATEWAY_FLAGS, bootstrap=proxy.address)
    with crash_checked(g):
        s = _stream_through(g, topic, name, lambda s: fault(proxy, s))
        codes = _check_one_report_each(s)
        if must_fail:
            assert codes[50003] > 0, f"records held through a {OUTAGE}s {name} kept: {codes}"
        landed = consume_all(proxy.address, topic, PARTITIONS, at_least=codes[200], idle=0.5)
        check_acknowledged([s], landed, resends_misplaced=name == "answers-lost")
        _no_duplicates(landed)
        assert s.reports[-1]["error_code"] == 200, s.reports[-20:]
        _fresh_stream_all_acknowledged(g, topic, f"{name}-after", proxy.address)
        _stop_cleanly(g)


def test_broker_killed_and_restarted_with_its_data_lost(broker_factory, gateway_factory) -> None:
    """SIGKILL and a restart on the same port: memory storage comes back empty, so what was
    acknowledged before is gone (expected), and the producer's idempotence state is unknown to
    the new broker (a fatal error: the gateway replaces its producer). The reports must still
    be exactly one per record, 200 or 50003; a record sent after the restart that got a 200 is
    in the new broker; the gateway carries on."""
    b = broker_factory()
    partitions = 4  # as many as Tansu gives a topic it auto-creates (it may, after the restart)
    topic = create_topic(b.bootstrap, "killed-broker", partitions)
    g = gateway_factory(*GATEWAY_FLAGS, bootstrap=b.bootstrap)
    restarted_at = 0

    def kill_and_restart(s: PacedStream) -> None:
        nonlocal restarted_at
        assert b.pid is not None
        os.kill(b.pid, signal.SIGKILL)
        b.stop()  # reaps it
        b.start()  # the same port, empty storage
        # The topic is gone with the rest; it comes back as an operator (or --topic) makes it.
        try:
            create_topic(b.bootstrap, topic, partitions)
        except KafkaException as exc:  # librdkafka's metadata request auto-created it first
            assert exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, exc
        restarted_at = s.sent  # records from this index on were sent to the new broker
        # The gateway recovers: a record sent after the restart is acknowledged.
        deadline = time.monotonic() + REPORT_WAIT
        while not any(r["error_code"] == 200 for r in s.reports[restarted_at:]):
            assert time.monotonic() < deadline, (
                "nothing acknowledged after the restart: "
                f"{Counter(r.get('message') for r in s.reports[restarted_at:]).most_common(3)}"
            )
            time.sleep(0.05)

    with crash_checked(g):
        s = _stream_through(g, topic, "killed", kill_and_restart)
        _check_one_report_each(s)
        after = s.reports[restarted_at:]
        acked_after = sum(r["error_code"] == 200 for r in after)
        assert acked_after, "nothing acknowledged after the restart"
        assert s.reports[-1]["error_code"] == 200, s.reports[-20:]
        landed = consume_all(b.bootstrap, topic, partitions, at_least=acked_after, idle=0.5)
        check_acknowledged([s], landed, since={s.tag: restarted_at})
        assert s.value(0) not in {r.value for r in landed}, "the broker kept its data"
        _fresh_stream_all_acknowledged(g, topic, "killed-after", b.bootstrap, partitions)
        _stop_cleanly(g)


def test_a_dead_cluster_settles_a_stream_within_the_message_timeout(broker_factory, gateway_factory) -> None:
    """The broker killed for good under a stream of 1,000 records/s, with a small in-flight
    window. The records with librdkafka then fail after ``message.timeout.ms``; the records read
    afterwards fail at once, since Kafka is known to be unreachable. So the stream's last report
    comes within one message timeout (plus a small margin) of its last record, not one timeout
    per in-flight window (a 50,000-record stream once took 902 s). The gateway's default timeout
    is 30 s (tests/unit/test_unreachable.py); a short one here keeps the test short."""
    timeout = 3.0
    b = broker_factory()
    topic = create_topic(b.bootstrap, "dead-cluster", PARTITIONS)
    g = gateway_factory("-X", f"message.timeout.ms={int(timeout * 1000)}", "--max-in-flight", "500",
                        "--shutdown-timeout", "3", bootstrap=b.bootstrap)
    with crash_checked(g):
        s = PacedStream(g.host, g.port, topic, tag="dead")
        try:
            assert s.status == 200
            s.wait_reports(300, timeout=REPORT_WAIT)
            assert b.pid is not None
            os.kill(b.pid, signal.SIGKILL)
            b.stop()  # reaps it; it stays dead
            time.sleep(4 * timeout)  # 12,000 records more: 24 in-flight windows' worth
            s.stop_sending()
            last_sent = time.monotonic()
            s.finish(timeout + 10)
        finally:
            s.close()
        codes = _check_one_report_each(s)
        assert codes[50003] > 10_000, codes
        assert s.report_times[-1] - last_sent <= timeout + 2.0, (
            f"the last report came {s.report_times[-1] - last_sent:.1f} s after the last record"
        )
        # /readyz says so, and a new stream is refused at once.
        r = request(g.host, g.port, "GET", "/readyz")
        assert r.status == 503 and "Kafka is unreachable" in r.json()["message"], r.body
        t0 = time.monotonic()
        r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records",
                    b'{"value":null}', {"Content-Type": "application/json"})
        assert (r.status, r.json()["error_code"]) == (503, 50003), r.body
        assert time.monotonic() - t0 < 1.0
        _stop_cleanly(g)
