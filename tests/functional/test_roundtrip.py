"""The acceptance stream: 100,000 records over one chunked connection, every report checked
in order, every record read back from the broker byte for byte."""

from __future__ import annotations

import base64
import json
import random
import threading
from datetime import UTC, datetime

from support.http import ProduceStream
from support.kafka import consume_topic
from support.murmur2 import partition_for_key

N = 100_000
PARTITIONS = 4


def make_records(seed: int) -> tuple[list[bytes], list[dict]]:
    """Wire bytes of each record and what Kafka must hold for it."""
    rnd = random.Random(seed)
    wire, expect = [], []
    base_ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    for i in range(N):
        key = None if i % 3 == 0 else b"key-%d" % rnd.randrange(5000)
        value = rnd.randbytes(rnd.randrange(0, 120))
        headers = [("seq", str(i).encode())] + ([("dup", b"a"), ("dup", None)] if i % 7 == 0 else [])
        rec: dict = {
            "headers": [
                {"name": n, "value": None if v is None else base64.b64encode(v).decode()} for n, v in headers
            ],
            "value": {"type": "BINARY", "data": base64.b64encode(value).decode()},
        }
        ts = None
        if i % 2 == 0:
            ts = base_ms + i
            rec["timestamp"] = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if key is not None:
            rec["key"] = {"type": "BINARY", "data": base64.b64encode(key).decode()}
        if i % 11 == 0:
            rec["partition_id"] = i % PARTITIONS
        wire.append(json.dumps(rec, separators=(",", ":")).encode() + (b"\n" if i % 5 else b""))
        expect.append({"key": key, "value": value, "headers": headers, "ts": ts,
                       "partition": rec.get("partition_id")})
    return wire, expect


def test_100k_records_one_connection_exact_roundtrip(gateway, topic_factory) -> None:
    seed = random.randrange(1 << 30)
    topic = topic_factory(PARTITIONS)
    wire, expect = make_records(seed)
    reports: list[dict] = []
    with ProduceStream(gateway.host, gateway.port, topic, timeout=120) as s:
        assert s.read_status(10) == 200
        reader = threading.Thread(target=lambda: reports.extend(s.read_rest(240)))
        reader.start()
        for start in range(0, N, 500):
            s.send(b"".join(wire[start : start + 500]))
        s.end()
        reader.join(300)
    assert len(reports) == N, f"seed={seed}"
    got = consume_topic(gateway.bootstrap, topic, PARTITIONS, N, timeout=120)
    by_pos = {(p, r.offset): r for p, recs in got.items() for r in recs}
    assert len(by_pos) == N
    last = {}
    for i, (rep, exp) in enumerate(zip(reports, expect, strict=True)):
        assert rep["error_code"] == 200, (i, rep, seed)
        p = rep["partition_id"]
        if exp["partition"] is not None:
            assert p == exp["partition"]
        elif exp["key"] is not None:
            assert p == partition_for_key(exp["key"], PARTITIONS)
        assert rep["offset"] > last.get(p, -1), "reports of a partition out of order"
        last[p] = rep["offset"]
        rec = by_pos[(p, rep["offset"])]
        assert rec.key == exp["key"] and rec.value == exp["value"], (i, seed)
        assert rec.headers == exp["headers"], (i, seed)
        if exp["ts"] is not None:
            assert rec.timestamp[1] == exp["ts"]
        stamp = datetime.fromtimestamp(rec.timestamp[1] / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert rep["timestamp"] == stamp
        assert rep["value"] == {"type": "BINARY", "size": len(exp["value"])}
        assert ("key" in rep) == (exp["key"] is not None)
