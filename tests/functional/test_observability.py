"""/metrics, /healthz, /readyz and the access log of the real gateway process (docs/api.md §4)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import time
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.http import Conn, ProduceStream, build_request, request

from gateway.kafka.embedded import find_free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
ACCESS = re.compile(
    r'gateway\.access: (?P<peer>\S+) "(?P<line>[^"]*)" (?P<status>\d+) in=(?P<inb>\d+) '
    r"out=(?P<outb>\d+) ms=(?P<ms>[\d.]+)(?P<detail>.*)$"
)


def scrape(g: Any, accept: str | None = None) -> Samples:
    r = request(g.host, g.port, "GET", "/metrics", headers={"Accept": accept} if accept else None)
    assert r.status == 200, r
    ctype = r.header("content-type") or ""
    if accept is None:
        assert ctype == "text/plain; version=0.0.4; charset=utf-8", ctype
    samples: Samples = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, worker: str = "0", **labels: str) -> float | None:
    return samples.get((name, frozenset({"worker": worker, **labels}.items())))


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def scrape_when(g: Any, name: str, expected: float) -> Samples | None:
    m = scrape(g)
    return m if value(m, name) == expected else None


def access_lines(g: Any) -> list[re.Match[str]]:
    return [m for line in g.log().splitlines() if (m := ACCESS.search(line))]


def test_a_stream_is_counted_by_topic_and_error_code(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    records: list[bytes] = []
    for i in range(1000):
        if i % 100 == 7:
            rec = {"value": {"type": "BINARY", "data": "not base64!"}}  # 400
        elif i in (500, 900):
            rec = {"partition_id": 99, "value": None}  # 40402
        else:
            rec = {"value": {"type": "STRING", "data": f"r{i}"}}
        records.append(json.dumps(rec).encode())
    body = b"".join(records)
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        for i in range(0, len(records), 100):
            s.send(b"".join(records[i : i + 100]))
        s.end()
        reports = s.read_rest(30)
    codes = [r["error_code"] for r in reports]
    assert codes.count(200) == 988 and codes.count(400) == 10 and codes.count(40402) == 2
    m = scrape(gateway)
    assert value(m, "gateway_records_accepted_total", topic=topic) == 988
    assert value(m, "gateway_records_delivered_total", topic=topic) == 988
    assert value(m, "gateway_records_failed_total", topic=topic, error_code="400") == 10
    assert value(m, "gateway_records_failed_total", topic=topic, error_code="40402") == 2
    assert value(m, "gateway_records_failed_total", topic=topic, error_code="50003") is None
    assert value(m, "gateway_records_dropped_total", topic=topic) == 0
    assert value(m, "gateway_produce_request_bytes_total", topic=topic) == len(body)
    assert value(m, "gateway_streams_total", topic=topic) == 1
    assert value(m, "gateway_http_requests_total", endpoint="produce_v3", status="200") >= 1
    assert value(m, "gateway_in_flight_records") == 0
    count = value(m, "gateway_report_latency_seconds_count", api="v3_stream")
    assert count is not None and 1 <= count
    assert value(m, "gateway_report_latency_seconds_bucket", api="v3_stream", le="+Inf") == count
    assert value(m, "gateway_ready") == 1
    assert value(m, "process_resident_memory_bytes") > 0  # the process collector, labelled too


def test_v2_and_batch_requests_are_counted(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    body = json.dumps({"records": [{"value": base64.b64encode(b"v%d" % i).decode()} for i in range(3)]})
    r = request(gateway.host, gateway.port, "POST", f"/topics/{topic}", body.encode(),
                {"Content-Type": "application/vnd.kafka.binary.v2+json"})
    assert r.status == 200, r
    batch = json.dumps({"entries": [
        {"id": "a", "value": {"type": "STRING", "data": "ok"}},
        {"id": "b", "value": {"type": "BINARY", "data": "%%%"}},
    ]}).encode()
    r2 = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch",
                 batch, {"Content-Type": "application/json"})
    assert r2.status == 207, r2
    m = scrape(gateway)
    assert value(m, "gateway_records_accepted_total", topic=topic) == 4
    assert value(m, "gateway_records_delivered_total", topic=topic) == 4
    assert value(m, "gateway_records_failed_total", topic=topic, error_code="400") == 1
    assert value(m, "gateway_produce_request_bytes_total", topic=topic) == len(body) + len(batch)
    assert value(m, "gateway_report_latency_seconds_count", api="v2") >= 1
    assert value(m, "gateway_report_latency_seconds_count", api="v3_batch") >= 1


def test_open_streams_and_connections_gauges(gateway_factory, topic_factory) -> None:
    g = gateway_factory()
    topic = topic_factory(1)
    m = scrape(g)
    assert value(m, "gateway_open_connections") == 1  # the scrape itself
    assert value(m, "gateway_open_streams") == 0
    for reason in ("write", "buffer", "waiting", "stopped", "in-flight", "kafka-queue"):
        assert value(m, "gateway_paused_connections", reason=reason) == 0, reason
    with ProduceStream(g.host, g.port, topic) as s:
        s.send_records([{"value": {"type": "STRING", "data": "x"}}] * 5)
        s.read_reports(5, timeout=10)  # the body stays open
        m = scrape(g)
        assert value(m, "gateway_open_streams") == 1
        assert value(m, "gateway_open_connections") == 2
        assert value(m, "gateway_in_flight_records") == 0  # every report is out
        s.end()
        assert s.read_rest(10) == []
    m = wait_for(lambda: scrape_when(g, "gateway_open_connections", 1),
                 what="the stream's connection to close")
    assert value(m, "gateway_open_streams") == 0
    assert value(m, "gateway_connections_total") >= 4
    assert value(m, "gateway_records_delivered_total", topic=topic) == 5


def test_bytes_and_requests_by_status(gateway_factory) -> None:
    g = gateway_factory()
    before = scrape(g)
    raw = build_request("GET", "/nope", headers={"Connection": "close"})
    with Conn(g.host, g.port) as c:
        c.send(raw)
        received = b""
        while chunk := c.sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 404")
    after = scrape(g)
    assert value(after, "gateway_http_requests_total", endpoint="not_found", status="404") == 1
    assert value(after, "gateway_http_requests_total", endpoint="metrics", status="200") >= 1
    # Between the two scrapes: our request and the first scrape's request and answer.
    got_in = value(after, "gateway_http_received_bytes_total") - value(before, "gateway_http_received_bytes_total")
    got_out = value(after, "gateway_http_sent_bytes_total") - value(before, "gateway_http_sent_bytes_total")
    scrape_req = len(build_request("GET", "/metrics"))
    assert got_in == len(raw) + scrape_req
    assert got_out > len(received)


def test_openmetrics_is_served_when_asked_for(gateway) -> None:
    r = request(gateway.host, gateway.port, "GET", "/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status == 200
    assert (r.header("content-type") or "").startswith("application/openmetrics-text")
    assert r.body.rstrip().endswith(b"# EOF")


def test_healthz_and_readyz_when_ready(gateway) -> None:
    r = request(gateway.host, gateway.port, "GET", "/healthz")
    assert (r.status, r.json()) == (200, {"status": "ok"})
    r = request(gateway.host, gateway.port, "GET", "/readyz")
    assert (r.status, r.json()) == (200, {"status": "ready"})
    assert request(gateway.host, gateway.port, "POST", "/readyz", b"").status == 405


def test_readyz_is_503_when_kafka_is_unreachable(gateway_factory) -> None:
    g = gateway_factory(bootstrap=f"127.0.0.1:{find_free_port()}")
    r = request(g.host, g.port, "GET", "/readyz")
    assert r.status == 503
    body = r.json()
    assert body["error_code"] == 50003
    assert body["message"].startswith("Kafka is unreachable: "), body
    assert request(g.host, g.port, "GET", "/healthz").status == 200  # the process is up
    m = scrape(g)
    assert value(m, "gateway_ready") == 0
    assert value(m, "gateway_http_requests_total", endpoint="readyz", status="503") == 1


def test_readyz_turns_503_when_the_cluster_goes_away(gateway_factory, broker_factory) -> None:
    private = broker_factory()
    g = gateway_factory(bootstrap=private.bootstrap)
    assert request(g.host, g.port, "GET", "/readyz").status == 200
    private.stop()

    def not_ready() -> Any:
        r = request(g.host, g.port, "GET", "/readyz")
        return r if r.status == 503 else None

    # Probes refresh metadata older than 5 s; a refresh against no broker fails within 5 s.
    r = wait_for(not_ready, timeout=30, what="/readyz to notice the lost cluster")
    assert r.json()["error_code"] == 50003
    assert r.json()["message"].startswith("Kafka is unreachable: "), r.json()
    assert request(g.host, g.port, "GET", "/healthz").status == 200


def test_readyz_is_503_during_shutdown_and_the_drain_still_completes(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--shutdown-timeout", "10")
    topic = topic_factory(1)
    rec = json.dumps({"value": {"type": "STRING", "data": "z"}}).encode()
    with ProduceStream(g.host, g.port, topic) as s:
        s.send(rec * 20 + rec[:5])  # the body stays open, mid-record
        s.read_reports(20, timeout=10)
        assert request(g.host, g.port, "GET", "/readyz").status == 200
        os.kill(g.proc.pid, signal.SIGTERM)
        # The stream is ended by the gateway and its connection lingers (the client does not
        # close it): meanwhile the listener answers, and readiness says we are going.
        def not_ready() -> Any:
            x = request(g.host, g.port, "GET", "/readyz")
            return x if x.status == 503 else None

        r = wait_for(not_ready, what="/readyz to answer 503")
        assert r.json() == {"error_code": 50003, "message": "the gateway is shutting down"}
        assert r.header("connection") == "close"
        p = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", rec,
                    {"Content-Type": "application/json"})
        assert p.status == 503 and p.json()["error_code"] == 50003
        # Every accepted record was reported; the body was still being read: one last report
        # says from which byte on nothing was read (the record cut there included).
        assert s.read_rest(10) == [{
            "error_code": 50003,
            "message": "the gateway is shutting down: reading stopped at byte "
                       f"{len(rec) * 20 + 5} of the records sent; the records after this report "
                       "were not read, send them again",
        }]
    assert g.proc.wait(30) == 0


def test_access_log_lines(gateway_factory, topic_factory) -> None:
    g = gateway_factory()
    topic = topic_factory(1)
    rec = json.dumps({"value": {"type": "STRING", "data": "a"}}).encode()
    bad = json.dumps({"value": {"type": "BINARY", "data": "!"}}).encode()
    with ProduceStream(g.host, g.port, topic) as s:
        s.send(rec * 3 + bad)
        s.end()
        assert len(s.read_rest(10)) == 4
    raw = build_request("GET", "/healthz", headers={"Connection": "close"})
    with Conn(g.host, g.port) as c:
        c.send(raw)
        received = b""
        while chunk := c.sock.recv(65536):
            received += chunk
        local = "%s:%d" % c.sock.getsockname()[:2]
    lines = wait_for(lambda: access_lines(g) if len(access_lines(g)) >= 2 else None,
                     what="access lines")
    stream = next(m for m in lines if m["line"].startswith("POST "))
    assert stream["line"] == f"POST /v3/clusters/cluster-1/topics/{topic}/records"
    assert stream["status"] == "200"
    assert stream["detail"] == f" topic={topic} records=4 ok=3 failed=1"
    assert int(stream["outb"]) > 0 and float(stream["ms"]) >= 0
    health = next(m for m in lines if m["line"] == "GET /healthz")
    assert health["peer"] == local
    assert health["status"] == "200"
    assert int(health["inb"]) == len(raw)
    assert int(health["outb"]) == len(received)
    assert health["detail"] == ""


def test_no_access_log(gateway_factory) -> None:
    g = gateway_factory("--no-access-log")
    for _ in range(3):
        assert request(g.host, g.port, "GET", "/healthz").status == 200
    time.sleep(0.5)  # longer than the access log's flush interval
    assert "gateway.access" not in g.log()


def test_kafka_broker_state_from_librdkafka_statistics(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--kafka-stats-interval", "0.2")
    topic = topic_factory(1)
    r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records",
                b'{"value":null}', {"Content-Type": "application/json"})
    assert r.status == 200

    def brokers_up() -> Samples | None:
        m = scrape(g)
        up = {k: v for k, v in m.items() if k[0] == "gateway_kafka_broker_up"}
        return m if up and all(v == 1 for v in up.values()) else None

    m = wait_for(brokers_up, what="a statistics event with the broker UP")
    host, port = g.bootstrap.rsplit(":", 1)
    assert any(dict(k[1]).get("broker") == f"{host}:{port}" for k in m if k[0] == "gateway_kafka_broker_up")
    assert value(m, "gateway_kafka_stats_age_seconds") < 5
    assert value(m, "gateway_kafka_queue_messages") is not None
    assert value(m, "gateway_kafka_metadata_age_seconds") is not None


def test_each_worker_serves_its_own_metrics(gateway_factory) -> None:
    g = gateway_factory("--workers", "2")
    seen: set[str] = set()

    def both() -> bool:
        try:
            r = request(g.host, g.port, "GET", "/metrics", timeout=5)
        except OSError:
            return False
        families = text_string_to_metric_families(r.body.decode())
        workers = {s.labels["worker"] for f in families for s in f.samples}
        assert len(workers) == 1, workers  # one process answers a scrape
        seen.update(workers)
        return seen == {"0", "1"}

    wait_for(both, timeout=30, what="both workers to answer a scrape")


@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/healthz"])
def test_around_the_api_endpoints_answer_on_a_kept_alive_connection(gateway, path) -> None:
    with Conn(gateway.host, gateway.port) as c:
        for _ in range(3):
            c.send(build_request("GET", path))
            assert c.read_response().status == 200
    with socket.create_connection((gateway.host, gateway.port)) as sock:
        sock.sendall(build_request("GET", path, headers={"Connection": "close"}))
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
