"""Every produce API while the gateway spools (issue 11; docs/api.md §1-§3, §5).

The broker is hung (SIGSTOP): a request already with librdkafka waits for it, and the gateway
judges Kafka unreachable after ``--spool-after``. Meanwhile each API answers at once, with a
202 for each record: v3 reports, records:batch successes, v1/v2 offsets entries. Once the
broker is back, every record is in Kafka once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from support.http import HttpResponse, request
from support.kafka import consume_all, create_topic

V2 = {"Content-Type": "application/vnd.kafka.binary.v2+json"}
V1 = {"Content-Type": "application/vnd.kafka.binary.v1+json"}
JSON = {"Content-Type": "application/json"}


def _v1_body(*values: bytes) -> bytes:
    return json.dumps({"records": [{"value": base64.b64encode(v).decode()} for v in values]}).encode()


def test_each_produce_api_answers_202_while_spooling(
    broker_factory, gateway_factory, tmp_path: Path
) -> None:
    b = broker_factory()
    topic = create_topic(b.bootstrap, "edge-apis", 2)
    g = gateway_factory("--spool-dir", str(tmp_path / "spool"), "--spool-after", "0.5",
                        "-X", "reconnect.backoff.max.ms=200", bootstrap=b.bootstrap)

    def readyz() -> dict[str, object]:
        r = request(g.host, g.port, "GET", "/readyz", timeout=5)
        assert r.status == 200, r
        return dict(json.loads(r.body))

    assert readyz() == {"status": "ready"}
    first: list[HttpResponse] = []
    assert b.pid is not None
    os.kill(b.pid, signal.SIGSTOP)
    try:
        # A request handed to librdkafka before the gateway knows: it waits for Kafka.
        waiting = threading.Thread(target=lambda: first.append(request(
            g.host, g.port, "POST", f"/topics/{topic}", _v1_body(b"first"), V2, timeout=60)))
        waiting.start()
        deadline = time.monotonic() + 10
        while readyz().get("status") != "spooling":
            assert time.monotonic() < deadline, readyz()
            time.sleep(0.05)
        status = readyz()
        assert "no record" in str(status["reason"]), status
        spool_info = status["spool"]
        assert isinstance(spool_info, dict) and set(spool_info) == {"records", "bytes", "oldest_age_seconds"}

        r2 = request(g.host, g.port, "POST", f"/topics/{topic}", _v1_body(b"v2-a", b"v2-b"), V2)
        assert r2.status == 200, r2
        offsets = json.loads(r2.body)["offsets"]
        assert [o["error_code"] for o in offsets] == [202, 202], offsets
        assert all(o["partition"] is None and o["offset"] is None and "spooled" in o["error"]
                   for o in offsets), offsets

        r1 = request(g.host, g.port, "POST", f"/topics/{topic}", _v1_body(b"v1-a"), V1)
        assert r1.status == 200, r1
        assert [o["error_code"] for o in json.loads(r1.body)["offsets"]] == [202]

        batch = json.dumps({"entries": [
            {"id": "a", "value": {"type": "STRING", "data": "batch-a"}},
            {"id": "b", "value": {"type": "BINARY", "data": "%%%"}},
            {"id": "c", "value": {"type": "STRING", "data": "batch-c"}},
        ]}).encode()
        rb = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch",
                     batch, JSON)
        assert rb.status == 207, rb
        answer = json.loads(rb.body)
        assert [(e["id"], e["error_code"]) for e in answer["successes"]] == [("a", 202), ("c", 202)]
        assert [(e["id"], e["error_code"]) for e in answer["failures"]] == [("b", 400)]

        rv3 = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records",
                      json.dumps({"value": {"type": "STRING", "data": "v3-one"}}).encode(), JSON)
        assert rv3.status == 200, rv3
        report = json.loads(rv3.body)
        assert report["error_code"] == 202 and "spooled" in report["message"], report
        assert not first, "the request with librdkafka was answered while Kafka was hung"
    finally:
        os.kill(b.pid, signal.SIGCONT)
    waiting.join(30)
    assert first and first[0].status == 200, first
    assert [o["error_code"] for o in json.loads(first[0].body)["offsets"]] == [None]
    expected = {b"first", b"v2-a", b"v2-b", b"v1-a", b"batch-a", b"batch-c", b"v3-one"}
    landed = consume_all(b.bootstrap, topic, 2, at_least=len(expected), timeout=30)
    assert Counter(r.value for r in landed) == Counter(expected)
    deadline = time.monotonic() + 10
    while g.metric("gateway_spool_records") != 0:
        assert time.monotonic() < deadline, "the spool was not forwarded"
        time.sleep(0.1)
    assert readyz() == {"status": "ready"}
    assert g.metric("gateway_spool_records_spooled_total") == 6
    assert g.metric("gateway_spool_records_forwarded_total") == 6
    assert g.metric("gateway_spooling") == 0
    log = g.log()
    assert f'"POST /topics/{topic}" 200' in log and "spooled=2" in log and "spooled=1" in log


def test_a_spool_directory_in_use_stops_the_start_with_one_line(
    broker, gateway_factory, tmp_path: Path
) -> None:
    """Each gateway process needs its own spool: a second one on the same directory does not
    start (exit 2, one line), and the first goes on."""
    spool = tmp_path / "spool"
    g = gateway_factory("--spool-dir", str(spool), bootstrap=broker.bootstrap)
    p = subprocess.run(
        [sys.executable, "-m", "gateway", "--listen", "127.0.0.1:0",
         "--bootstrap-servers", broker.bootstrap, "--spool-dir", str(spool)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
    )
    assert p.returncode == 2, p.stdout
    assert p.stdout.splitlines()[-1] == (
        f"kafka-gateway: cannot open the spool (--spool-dir): spool directory {spool} is in use "
        "by another process"
    ), p.stdout
    assert request(g.host, g.port, "GET", "/readyz").status == 200


def test_each_worker_has_its_own_spool_directory(broker, gateway_factory, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    g = gateway_factory("--workers", "2", "--spool-dir", str(spool), bootstrap=broker.bootstrap)
    deadline = time.monotonic() + 30
    def ready() -> bool:
        names = sorted(os.listdir(spool)) if spool.exists() else []
        return names == ["worker-0", "worker-1"] and all(
            (spool / w / "lock").exists() for w in names)

    while not ready():
        assert time.monotonic() < deadline, sorted(os.listdir(spool)) if spool.exists() else None
        time.sleep(0.1)
    assert request(g.host, g.port, "GET", "/readyz").status == 200
