"""Produce limits through the real gateway and broker: in-stream 429 for records over the rate,
429/42902 for one stream too many, the chunked body size limit (413) and the maximum stream
duration (408). Every record with a 200 report is in Kafka; no other is."""

from __future__ import annotations

import json
import time

from support.http import ProduceStream, request
from support.kafka import consume_topic


def _records(n: int, tag: str) -> list[dict]:
    return [{"partition_id": 0, "value": {"type": "STRING", "data": f"{tag}-{i}"}} for i in range(n)]


def test_records_over_the_rate_are_dropped_with_429_reports_and_the_stream_goes_on(
    gateway_factory, topic_factory, broker
) -> None:
    g = gateway_factory(
        "--api-v3-produce-rate-limit-enabled",
        "--api-v3-produce-rate-limit-max-requests-per-sec", "20",
    )
    topic = topic_factory(1)
    with ProduceStream(g.host, g.port, topic) as s:
        s.send_records(_records(50, "a"))  # one piece: 20 fit the bucket, 30 do not
        first = s.read_reports(50)
        time.sleep(1.1)  # the bucket refills
        s.send_records(_records(5, "b"))
        s.end()
        rest = s.read_rest(30)
    codes = [r["error_code"] for r in first]
    ok = codes.count(200)
    # 20 fit the bucket; a body piece read a little later may find a token or two refilled.
    assert 20 <= ok <= 23 and codes == [200] * ok + [429] * (50 - ok), codes
    assert all("rate limit" in r["message"] for r in first[ok:])
    assert [r["error_code"] for r in rest] == [200] * 5
    stored = [r.value.decode() for r in consume_topic(broker.bootstrap, topic, 1, ok + 5)[0]]
    assert stored == [f"a-{i}" for i in range(ok)] + [f"b-{i}" for i in range(5)]


def test_one_stream_too_many_for_a_client_is_429_42902(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--max-concurrent", "1")
    topic = topic_factory(1)
    with ProduceStream(g.host, g.port, topic) as first:
        first.send_records(_records(1, "x"))
        assert first.read_reports(1)[0]["error_code"] == 200
        body = json.dumps({"value": {"type": "STRING", "data": "y"}}).encode()
        r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", body=body,
                    headers={"Content-Type": "application/json"})
        assert r.status == 429 and r.json()["error_code"] == 42902
        first.end()
        assert first.read_rest(10) == []
    # The slot is back once the first stream ended.
    r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", body=body,
                headers={"Content-Type": "application/json"})
    assert r.status == 200 and b'"error_code":200' in r.body


def test_a_chunked_body_over_the_size_limit_gets_one_last_413_report(gateway_factory, topic_factory, broker) -> None:
    rec = json.dumps({"partition_id": 0, "value": {"type": "STRING", "data": "0123456789"}}).encode()
    g = gateway_factory("--max-request-bytes", str(len(rec) * 3 + 10))
    topic = topic_factory(1)
    with ProduceStream(g.host, g.port, topic) as s:
        s.send(rec * 3)
        s.send(rec * 3)  # crosses the limit inside its first record
        reports = s.read_rest(30)
        assert s.conn.is_closed_by_peer()
    assert [r["error_code"] for r in reports] == [200, 200, 200, 413]
    assert "limit" in reports[3]["message"]
    assert len(consume_topic(broker.bootstrap, topic, 1, 3)[0]) == 3


def test_a_stream_open_past_its_maximum_duration_gets_408_then_ends(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--streaming-connection-max-duration-ms", "700")
    topic = topic_factory(1)
    with ProduceStream(g.host, g.port, topic) as s:
        s.send_records(_records(3, "d"))
        assert [r["error_code"] for r in s.read_reports(3)] == [200] * 3
        reports = s.read_rest(30)  # the client never ends its body: the gateway does
        assert s.conn.is_closed_by_peer()
    assert [r["error_code"] for r in reports] == [408]
    assert "maximum" in reports[0]["message"]


def test_batch_entries_over_the_rate_fail_with_429(gateway_factory, topic_factory) -> None:
    g = gateway_factory(
        "--api-v3-produce-rate-limit-enabled",
        "--api-v3-produce-rate-limit-max-requests-global-per-sec", "3",
    )
    topic = topic_factory(1)
    entries = [{"id": f"e{i}", "value": {"type": "STRING", "data": str(i)}} for i in range(5)]
    r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch",
                body=json.dumps({"entries": entries}).encode(), headers={"Content-Type": "application/json"})
    assert r.status == 207
    doc = r.json()
    assert [s["id"] for s in doc["successes"]] == ["e0", "e1", "e2"]
    assert [(f["id"], f["error_code"]) for f in doc["failures"]] == [("e3", 429), ("e4", 429)]
