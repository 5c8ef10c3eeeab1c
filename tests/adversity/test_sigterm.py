"""SIGTERM while several clients stream hard loses nothing acknowledged (issue 5, adversity).

tests/functional/test_lifecycle.py stops the gateway under one heavy stream and compares the
acknowledged partition/offset pairs with Kafka. Here several streams run at once, and each
report is checked against the record it belongs to (report i is record i of its stream): a
200 means that very record is in Kafka at that offset, once; nothing is in Kafka that its
client was told had failed; no record gets more than one report; the process exits 0.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

from support.kafka import consume_all
from support.streaming import PacedStream, check_acknowledged

STREAMS = 4
PARTITIONS = 3


def test_sigterm_during_concurrent_heavy_streams(gateway_factory, topic_factory) -> None:
    # A long linger keeps thousands of records inside librdkafka at any moment.
    g = gateway_factory("--shutdown-timeout", "20", "-X", "linger.ms=200")
    topic = topic_factory(PARTITIONS)
    streams = [
        # 40,000 records/s in all, about what the gateway takes here with the clients and the
        # broker on the same 2 cores: at the SIGTERM, records are on their way everywhere.
        PacedStream(g.host, g.port, topic, tag=f"s{i}", batch=100, interval=0.01, pad=40)
        for i in range(STREAMS)
    ]
    try:
        for s in streams:
            assert s.status == 200
            s.wait_reports(1000, timeout=30)
        deadline = time.monotonic() + 30
        while sum(len(s.reports) for s in streams) < 20_000:
            assert time.monotonic() < deadline, [len(s.reports) for s in streams]
            time.sleep(0.01)
        os.kill(g.pid, signal.SIGTERM)
        for s in streams:
            # The gateway stops reading, finishes what it took, ends every response.
            s.finish(60, end=False)
    finally:
        for s in streams:
            s.close()
    assert g.proc.wait(30) == 0
    g.assert_no_crash()

    acked: list[bytes] = []
    for s in streams:
        codes = Counter(r["error_code"] for r in s.reports)
        # One report per record read, and one last report for the body being read at the stop.
        assert len(s.reports) <= s.sent + 1, f"{s.tag}: {len(s.reports)} reports for {s.sent} records"
        assert set(codes) <= {200, 50003}, (s.tag, codes)
        last = s.reports[-1]
        assert last["error_code"] == 50003, (s.tag, last)
        assert last["message"].startswith("the gateway is shutting down: reading stopped at byte ")
        assert codes[200] >= 1000
        # Reports are in record order: once one failed (shutdown), none after it succeeded.
        first_failed = next((i for i, r in enumerate(s.reports) if r["error_code"] != 200), None)
        if first_failed is not None:
            assert codes[200] == first_failed, (s.tag, codes, first_failed)
        acked += [s.value(i) + s.pad.encode() for i, r in enumerate(s.reports)
                  if r["error_code"] == 200]
    landed = consume_all(g.bootstrap, topic, PARTITIONS, at_least=len(acked), timeout=60)
    check_acknowledged(streams, landed)
    in_kafka = Counter(r.value for r in landed)
    assert max(in_kafka.values()) == 1, "a record is in Kafka twice"
    assert set(in_kafka) == set(acked), (
        f"{len(set(in_kafka) - set(acked))} records are in Kafka without a 200 report"
    )
    assert "stopped:" in g.log()
