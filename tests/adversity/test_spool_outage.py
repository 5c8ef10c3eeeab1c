"""The edge node's disk spool through real outages (issue 11; README "Edge").

A hung broker (SIGSTOP) keeps its state, so what the gateway promised can be checked in Kafka
afterwards: every record gets exactly one report, 200 (in Kafka) or 202 (spooled, forwarded
later), never 50003; once the broker is back every record is in Kafka, once, and the records of
each key are in the order they were sent. The gateway killed (SIGKILL) while spooling, with
``--spool-fsync always``, and started again on the same directory, forwards what it had
reported 202: every such record reaches Kafka at least once, also when the crash left a torn
record at the end of the last segment.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.gateway import GatewayProcess
from support.http import request
from support.kafka import Record, consume_all, create_topic
from support.streaming import PacedStream

from gateway.kafka.embedded import EmbeddedBroker

PARTITIONS = 3
KEYS = 7
SPOOL_FLAGS = ("--spool-after", "1", "-X", "reconnect.backoff.max.ms=200",
               "--shutdown-timeout", "5")


@contextmanager
def hung(broker: EmbeddedBroker) -> Iterator[None]:
    """The broker stopped (SIGSTOP) for the block; continued whatever happens."""
    assert broker.pid is not None
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.pid, signal.SIGCONT)


def _readyz(g: GatewayProcess) -> dict[str, object]:
    r = request(g.host, g.port, "GET", "/readyz", timeout=5)
    assert r.status == 200, (r.status, r.body)
    body: dict[str, object] = json.loads(r.body)
    return body


def _wait(cond: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _indices(s: PacedStream, landed: list[Record]) -> list[int]:
    """The record index of each record of ``s`` in Kafka (values are ``<tag>-<index>``)."""
    prefix = s.tag.encode() + b"-"
    return [int(r.value[len(prefix):].rstrip(b"p")) for r in landed
            if r.value is not None and r.value.startswith(prefix)]


def _check_key_order(s: PacedStream, landed: list[Record]) -> None:
    """Per partition, in offset order, each key's records come in the order they were sent."""
    prefix = s.tag.encode() + b"-"
    last: dict[bytes | None, int] = {}
    for r in sorted(landed, key=lambda r: (r.partition, r.offset)):
        if r.value is None or not r.value.startswith(prefix):
            continue
        i = int(r.value[len(prefix):])
        assert r.key == s.key(i), (r.key, s.key(i), i)
        assert last.get(r.key, -1) < i, (
            f"key {r.key!r}: record {i} is in Kafka after record {last[r.key]}")
        last[r.key] = i


def test_a_broker_hung_for_30_s_gets_every_record_200_or_202(
    broker_factory, gateway_factory, tmp_path: Path
) -> None:
    b = broker_factory()
    topic = create_topic(b.bootstrap, "edge-hung", PARTITIONS)
    g = gateway_factory("--spool-dir", str(tmp_path / "spool"), *SPOOL_FLAGS, bootstrap=b.bootstrap)
    s = PacedStream(g.host, g.port, topic, tag="hung", batch=10, interval=0.02, keys=KEYS)
    try:
        assert s.status == 200
        s.wait_reports(200, timeout=10)
        stopped_at = time.monotonic()
        with hung(b):
            _wait(lambda: _readyz(g).get("status") == "spooling", "/readyz to say spooling", 10)
            ready = _readyz(g)
            assert "Kafka" in str(ready["reason"]), ready
            # The gateway still takes records: a stream opened now gets its 202s at once
            # (the first stream's wait behind the records librdkafka holds for Kafka).
            late = PacedStream(g.host, g.port, topic, tag="late", batch=50, interval=0.01,
                               limit=500, keys=KEYS)
            try:
                late.wait_reports(500, timeout=10)
                late.finish(10)
            finally:
                late.close()
            assert Counter(r["error_code"] for r in late.reports) == {202: 500}
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))
        reports = s.finish(90)
    finally:
        s.close()
    codes = Counter(r["error_code"] for r in reports)
    assert len(reports) == s.sent, f"{len(reports)} reports for {s.sent} records: {codes}"
    assert set(codes) <= {200, 202}, codes
    assert codes[202] > 0 and codes[200] > 0, codes
    for r in reports:
        if r["error_code"] == 202:
            assert set(r) == {"error_code", "message"} and "spooled" in r["message"], r
    # Everything reaches Kafka once the forwarder has replayed the spool: once each, per-key
    # order kept.
    landed = consume_all(b.bootstrap, topic, PARTITIONS, at_least=s.sent + 500, timeout=60,
                         idle=1.0)
    for stream in (s, late):
        got = Counter(_indices(stream, landed))
        assert sorted(got) == list(range(stream.sent)), (
            f"{len(got)} distinct of {stream.sent} records of {stream.tag} in Kafka")
        assert max(got.values()) == 1, [i for i, n in got.items() if n > 1][:5]
        _check_key_order(stream, landed)
    _wait(lambda: g.metric("gateway_spool_records") == 0, "the spool to be forwarded", 30)
    assert _readyz(g) == {"status": "ready"}
    assert g.metric("gateway_spool_records_forwarded_total") == codes[202] + 500
    assert f"spooled={codes[202]}" in g.log() and "records=500 ok=0 failed=0 spooled=500" in g.log()


def test_a_gateway_killed_while_spooling_forwards_its_spool_when_started_again(
    broker_factory, gateway_factory, tmp_path: Path
) -> None:
    """fsync ``always``: a 202 is on disk. SIGKILL, a torn record appended to the last
    segment (a write the crash cut), then a new gateway on the same directory: every record
    reported 200 or 202 reaches Kafka (at least once)."""
    b = broker_factory()
    topic = create_topic(b.bootstrap, "edge-killed", PARTITIONS)
    spool = tmp_path / "spool"
    flags = ("--spool-dir", str(spool), "--spool-fsync", "always", *SPOOL_FLAGS)
    g = gateway_factory(*flags, bootstrap=b.bootstrap)
    s = PacedStream(g.host, g.port, topic, tag="killed", batch=10, interval=0.02, keys=KEYS)
    later = None
    try:
        assert s.status == 200
        s.wait_reports(100, timeout=10)
        with hung(b):
            # Kafka answers nothing: the records the gateway already gave librdkafka wait there
            # (this stream's next reports wait behind them); once the gateway judges Kafka
            # unreachable, a new stream's records are spooled and reported 202 at once.
            _wait(lambda: _readyz(g).get("status") == "spooling", "/readyz to say spooling", 10)
            later = PacedStream(g.host, g.port, topic, tag="later", batch=10, interval=0.01,
                                keys=KEYS)
            later.wait_reports(300, timeout=10)
            assert g.proc.pid is not None
            os.kill(g.proc.pid, signal.SIGKILL)
            g.proc.wait(10)
        acknowledged = {
            stream: [i for i, r in enumerate(stream.reports) if r["error_code"] in (200, 202)]
            for stream in (s, later)
        }
        assert Counter(r["error_code"] for r in later.reports) == {202: len(later.reports)}
    finally:
        s.close()
        if later is not None:
            later.close()
    # A write the crash cut short: half a frame at the end of the last segment.
    segments = sorted(p for p in spool.iterdir() if p.name.endswith(".seg"))
    assert segments, sorted(os.listdir(spool))
    with open(segments[-1], "ab") as f:
        f.write(b"\x40\x00\x00\x00\x12\x34")
    g2 = gateway_factory(*flags, bootstrap=b.bootstrap)
    total = sum(len(v) for v in acknowledged.values())
    landed = consume_all(b.bootstrap, topic, PARTITIONS, at_least=total, timeout=60)
    for stream, indices in acknowledged.items():
        got = set(_indices(stream, landed))
        missing = [i for i in indices if i not in got]
        assert not missing, (
            f"{len(missing)} records of {stream.tag} reported 200/202 are not in Kafka, "
            f"e.g. {missing[:5]}")
    _wait(lambda: g2.metric("gateway_spool_records") == 0, "the spool to drain", 30)
    assert "torn tail" in g2.log()


def test_a_full_spool_refuses_with_50003_and_keeps_what_it_has(
    broker_factory, gateway_factory, tmp_path: Path
) -> None:
    b = broker_factory()
    topic = create_topic(b.bootstrap, "edge-full", PARTITIONS)
    g = gateway_factory("--spool-dir", str(tmp_path / "spool"), "--spool-max-bytes", str(1 << 20),
                        *SPOOL_FLAGS, bootstrap=b.bootstrap)
    s = PacedStream(g.host, g.port, topic, tag="full", batch=20, interval=0.01, pad=1000)
    try:
        assert s.status == 200
        s.wait_reports(20, timeout=10)
        with hung(b):
            _wait(lambda: (g.metric("gateway_spool_refused_total", reason="full") or 0) > 0,
                  "the spool to refuse records", 30)
            s.stop_sending()
        reports = s.finish(60)
    finally:
        s.close()
    codes = Counter(r["error_code"] for r in reports)
    assert len(reports) == s.sent and set(codes) <= {200, 202, 50003}, codes
    assert codes[202] > 0 and codes[50003] > 0, codes
    for r in reports:
        if r["error_code"] == 50003:
            assert r["message"].startswith("the spool cannot take this record: spool full"), r
    kept = [i for i, r in enumerate(reports) if r["error_code"] in (200, 202)]
    landed = consume_all(b.bootstrap, topic, PARTITIONS, at_least=len(kept), timeout=60)
    got = set(_indices(s, landed))
    assert all(i in got for i in kept), "a record reported 200 or 202 is not in Kafka"


def test_records_kafka_fails_at_shutdown_go_to_the_spool(
    broker_factory, gateway_factory, tmp_path: Path
) -> None:
    """Records librdkafka still holds when a stopping gateway's grace period ends are failed by
    it (purged): with the spool on they are spooled (202) instead of reported 50003, and the
    next gateway on that directory forwards them (at least once: one already sent to the hung
    broker may land twice)."""
    b = broker_factory()
    topic = create_topic(b.bootstrap, "edge-stopping", PARTITIONS)
    spool = tmp_path / "spool"
    # Kafka is never judged unreachable here: every record is handed to librdkafka.
    flags = ("--spool-dir", str(spool), "--spool-fsync", "always", "--spool-after", "60",
             "-X", "reconnect.backoff.max.ms=200", "--shutdown-timeout", "2")
    g = gateway_factory(*flags, bootstrap=b.bootstrap)
    s = PacedStream(g.host, g.port, topic, tag="stopping", batch=10, interval=0.01, keys=KEYS)
    try:
        assert s.status == 200
        s.wait_reports(200, timeout=10)
        s.pause()
        before = s.sent
        with hung(b):
            s.resume()
            time.sleep(0.5)
            s.stop_sending()
            assert s.sent > before
            g.proc.send_signal(signal.SIGTERM)
            assert g.proc.wait(20) == 0, g.log()
            reports = s.finish(10, end=False)
    finally:
        s.close()
    # One report per record, then the stream's last report: cut by the shutdown.
    codes = Counter(r["error_code"] for r in reports[:s.sent])
    assert len(reports) in (s.sent, s.sent + 1), (len(reports), s.sent)
    assert set(codes) <= {200, 202}, (codes, reports[before], g.log()[-3000:])
    assert codes[202] >= s.sent - before, codes
    assert reports[before:s.sent] == [reports[before]] * (s.sent - before)  # all the same 202
    assert "failing them" in g.log()
    g2 = gateway_factory(*flags, bootstrap=b.bootstrap)
    landed = consume_all(b.bootstrap, topic, PARTITIONS, at_least=s.sent, timeout=60)
    assert set(_indices(s, landed)) == set(range(s.sent))
    _wait(lambda: g2.metric("gateway_spool_records") == 0, "the spool to drain", 30)
