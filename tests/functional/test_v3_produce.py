"""v3 produce through the real gateway process and the real broker, over real sockets:
what a client of the v3 streaming API observes (docs/api.md §1)."""

from __future__ import annotations

import base64
import json
import random
import re
import select
import socket
import struct
import subprocess
import threading
import time
from typing import Any

import pytest
from support.http import Conn, ProduceStream, build_request, request
from support.kafka import consume_partition, consume_topic
from support.murmur2 import partition_for_key

B64 = lambda b: base64.b64encode(b).decode()  # noqa: E731


def binary(b: bytes) -> dict[str, str]:
    return {"type": "BINARY", "data": B64(b)}


def test_single_record_report_arrives_before_the_body_ends(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    with ProduceStream(gateway.host, gateway.port, topic, cluster_id="my-cluster") as s:
        assert s.read_status(10) == 200
        assert dict(s.headers)["content-type"] == "application/json"
        assert dict(s.headers)["transfer-encoding"] == "chunked"
        s.send_records([{"value": binary(b"hello"), "key": {"type": "STRING", "data": "k1"}}])
        (raw,) = s.read_raw_reports(1, timeout=10)  # the body is still open
        report = json.loads(raw)
        assert list(report) == [
            "error_code", "cluster_id", "topic_name", "partition_id", "offset", "timestamp", "key", "value",
        ]
        assert report["error_code"] == 200
        assert report["cluster_id"] == "my-cluster"
        assert report["topic_name"] == topic
        assert report["key"] == {"type": "STRING", "size": 2}
        assert report["value"] == {"type": "BINARY", "size": 5}
        assert report["partition_id"] == partition_for_key(b"k1", 3)
        assert report["timestamp"].endswith("Z") and len(report["timestamp"]) == 24
        # The next record too, still without ending the body.
        s.send_records([{"value": {"type": "JSON", "data": {"a": [1, 2]}}}])
        (r2,) = s.read_reports(1, timeout=10)
        assert r2["error_code"] == 200 and "key" not in r2 and r2["value"] == {"type": "JSON", "size": 11}
        s.end()
        assert s.read_rest(10) == []
    got = consume_topic(gateway_bootstrap(gateway), topic, 3, 2)
    values = sorted(r.value for recs in got.values() for r in recs)
    assert values == [b"hello", b'{"a":[1,2]}']


def gateway_bootstrap(gateway: Any) -> str:
    args = gateway.proc.args
    return args[args.index("--bootstrap-servers") + 1]


def test_both_mounts_and_content_length_body(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    body = b'{"value":{"type":"STRING","data":"one"}}\n{"value":{"type":"STRING","data":"two"}}'
    for prefix in ("/v3", "/kafka/v3"):
        r = request(
            gateway.host, gateway.port, "POST", f"{prefix}/clusters/c/topics/{topic}/records", body,
            {"Content-Type": "application/json; charset=utf-8"},
        )
        assert r.status == 200, r
        reports = [json.loads(x) for x in r.body.split(b"\r\n") if x]
        assert [x["error_code"] for x in reports] == [200, 200]
        assert reports[1]["offset"] == reports[0]["offset"] + 1
    recs = consume_partition(gateway_bootstrap(gateway), topic, 0, 4)
    assert [x.value for x in recs] == [b"one", b"two", b"one", b"two"]


def test_exact_record_contents_reach_kafka(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    records = [
        {
            "partition_id": 1,
            "headers": [
                {"name": "h1", "value": B64(b"\x00\xff")},
                {"name": "h1", "value": None},
                {"name": "ünï", "value": B64(b"x")},
            ],
            "key": {"type": "BINARY", "data": B64(b"\x01\x02")},
            "value": {"type": "STRING", "data": "snow ☃ \u00e9"},
            "timestamp": "2026-01-02T03:04:05.678Z",
        },
        {"partition_id": 1, "key": None, "value": None},
        {"partition_id": 1, "value": {"type": "JSON", "data": {"x": "y", "n": [1, 2.5e3, None, True]}}},
        {"partition_id": 1, "value": {"type": "BINARY"}, "timestamp": "2026-01-02T04:04:05+01:00"},
    ]
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        s.send_records(records)
        s.end()
        reports = s.read_rest(10)
    assert [r["error_code"] for r in reports] == [200] * 4
    assert reports[0]["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert reports[3]["timestamp"] == "2026-01-02T03:04:05.000Z"
    assert "key" not in reports[1] and "value" not in reports[1]
    assert reports[3]["value"] == {"type": "BINARY", "size": 0}
    got = consume_partition(gateway_bootstrap(gateway), topic, 1, 4)
    assert got[0].key == b"\x01\x02"
    assert got[0].value == "snow ☃ é".encode()
    assert got[0].headers == [("h1", b"\x00\xff"), ("h1", None), ("ünï", b"x")]
    assert got[0].timestamp[1] == 1767323045678
    assert (got[1].key, got[1].value) == (None, None)
    assert got[2].value == b'{"x":"y","n":[1,2500.0,null,true]}'
    assert got[3].value is None and got[3].timestamp[1] == 1767323045000
    assert [r["offset"] for r in reports] == [g.offset for g in got]


def test_keyed_records_land_on_the_java_murmur2_partition(gateway, topic_factory) -> None:
    topic = topic_factory(5)
    rnd = random.Random(7)
    keys = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 30))) for _ in range(300)]
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        s.send_records([{"key": binary(k), "value": binary(b"v%d" % i)} for i, k in enumerate(keys)])
        s.end()
        reports = s.read_rest(20)
    for k, r in zip(keys, reports, strict=True):
        assert r["partition_id"] == partition_for_key(k, 5), k


def test_bad_records_mid_stream_get_400_and_the_stream_goes_on(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    good = b'{"value":{"type":"STRING","data":"ok"}}'
    body = b"".join([
        good,
        b'{"value":{"type":"BINARY","data":"not base64!"}}',
        good,
        b'{"value":{"type":"AVRO","data":"x"}}',
        b'{"bogus":1}',
        b'{"value":{"type":"STRING","data":"ok"},"partition_id":99}',
        b'{"value" 1}',
        good,
    ])
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        # Split in odd places to cross chunk boundaries inside bad records too.
        for i in range(0, len(body), 7):
            s.send(body[i : i + 7])
        s.end()
        reports = s.read_rest(10)
    codes = [r["error_code"] for r in reports]
    assert codes == [200, 400, 200, 400, 400, 40402, 400, 200]
    for r in reports:
        if r["error_code"] != 200:
            assert list(r) == ["error_code", "message"]
    assert "record 1 at byte" in reports[1]["message"]
    assert "AVRO" in reports[3]["message"]
    assert "bogus" in reports[4]["message"]
    assert [x.value for x in consume_partition(gateway_bootstrap(gateway), topic, 0, 3)] == [b"ok"] * 3


def test_garbage_between_records_ends_the_stream_after_outstanding_reports(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    good = b'{"value":{"type":"STRING","data":"ok"}}'
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        s.send(good * 50 + b" , " + good)
        reports = s.read_rest(10)  # the gateway ends the response by itself
        assert s.conn.is_closed_by_peer(5)
    assert [r["error_code"] for r in reports] == [200] * 50 + [400]
    assert "byte %d" % (len(good) * 50 + 1) in reports[-1]["message"]
    assert len(consume_partition(gateway_bootstrap(gateway), topic, 0, 50)) == 50


GOOD = b'{"value":{"type":"STRING","data":"ok"}}'
ACCESS = re.compile(r'gateway\.access: \S+ "POST (?P<path>\S+)" (?P<status>\d+) .* topic=(?P<topic>\S+) ')


def stream_access_status(g: Any, topic: str, timeout: float = 10.0) -> int:
    """The status of the access-log line of the (one) v3 stream to ``topic``."""
    deadline = time.monotonic() + timeout
    while True:
        for line in g.log().splitlines():
            m = ACCESS.search(line)
            if m and m["topic"] == topic:
                return int(m["status"])
        assert time.monotonic() < deadline, f"no access-log line for the stream to {topic}"
        time.sleep(0.05)


# The framing breaks of issue 10, each after good chunks: what reading stops at, its code, and
# the reason the last report names.
FRAMING_BREAKS = {
    "size-zz": (b"zz\r\n", 400, "chunk size must be 1 to 16 hex digits, got b'zz'"),
    "size-18-digits": (b"ffffffffffffffffff\r\n", 400, "chunk size must be 1 to 16 hex digits"),
    "size-minus-1": (b"-1\r\n", 400, "got b'-1'"),
    "size-nul": (b"\x00\r\n", 400, "got b'\\x00'"),
    "extension-5000-bytes": (b"5;" + b"e" * 5000 + b"\r\nhello\r\n", 400,
                             "chunk-size line longer than 4096 bytes"),
    "trailer-over-16k": (b"0\r\nX-Pad: " + b"v" * 17_000 + b"\r\n\r\n", 431,
                         "chunked trailer section larger than 16384 bytes"),
}


@pytest.mark.parametrize("name", list(FRAMING_BREAKS))
def test_broken_chunked_framing_ends_the_stream_with_a_last_failure_report(
    gateway, topic_factory, name
) -> None:
    """Issue 10, finding 2: the records decoded before the break keep their reports; one last
    report names the reason and the byte where reading stopped; the connection closes; the
    access log and the metrics count the stream under that report's code, not 200."""
    bad, code, reason = FRAMING_BREAKS[name]
    topic = topic_factory(1)
    counted = gateway.metric("gateway_http_requests_total", endpoint="produce_v3", status=str(code)) or 0
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        s.send(GOOD * 5)
        assert [r["error_code"] for r in s.read_reports(5, timeout=10)] == [200] * 5
        s.conn.send(b"%x\r\n%s\r\n" % (len(GOOD) * 3, GOOD * 3) + bad + b"5\r\nafter\r\n0\r\n\r\n")
        reports = s.read_rest(10)  # the gateway ends the response: its last chunk
        assert s.conn.is_closed_by_peer(5)
    assert [r["error_code"] for r in reports] == [200] * 3 + [code]
    assert list(reports[-1]) == ["error_code", "message"]
    message = reports[-1]["message"]
    assert reason in message, message
    assert message.endswith(
        f": reading stopped at byte {len(GOOD) * 8} of the records sent; the records after this "
        "report were not read, send them again"
    ), message
    assert stream_access_status(gateway, topic) == code
    assert gateway.metric("gateway_http_requests_total", endpoint="produce_v3", status=str(code)) == counted + 1
    assert [r.value for r in consume_partition(gateway_bootstrap(gateway), topic, 0, 8)] == [b"ok"] * 8


def test_a_stream_ended_cleanly_ends_with_its_last_record_and_200(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    with ProduceStream(gateway.host, gateway.port, topic) as s:
        s.send(GOOD * 4)
        s.conn.send(b"0;ext=1\r\nX-Trailer: fine\r\n\r\n")
        reports = s.read_rest(10)
        assert not s.conn.is_closed_by_peer(0.5)  # the connection is kept for the next request
    assert [r["error_code"] for r in reports] == [200] * 4
    assert stream_access_status(gateway, topic) == 200


def test_a_batch_whose_framing_breaks_gets_its_own_4xx(gateway, topic_factory) -> None:
    """Answered whole, a request with a broken body is refused as a whole: nothing produced."""
    topic = topic_factory(1)
    body = json.dumps({"entries": [{"id": "a", "value": {"type": "STRING", "data": "x"}}]}).encode()
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records:batch HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n" % (len(body) - 2, body[:-2]) + b"zz\r\n"
        )
        r = c.read_response(10)
        assert c.is_closed_by_peer(5)
    assert (r.status, r.header("connection")) == (400, "close")
    assert r.json()["error_code"] == 400
    assert "chunk size must be 1 to 16 hex digits" in r.json()["message"]


def test_stream_fed_one_byte_and_random_sized_chunks(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    seed = random.randrange(1 << 30)
    rnd = random.Random(seed)
    records = [
        {"key": {"type": "STRING", "data": f"k\\u{i}"}, "value": {"type": "JSON", "data": {"i": i, "s": "é\"\\"}}}
        for i in range(200)
    ]
    body = b"\n".join(json.dumps(r).encode() for r in records)
    for mode in ("bytes", "random"):
        with ProduceStream(gateway.host, gateway.port, topic) as s:
            pos = 0
            while pos < len(body):
                n = 1 if mode == "bytes" and pos < 2000 else rnd.randrange(1, 300)
                s.send(body[pos : pos + n])
                pos += n
            s.end()
            reports = s.read_rest(30)
        assert [r["error_code"] for r in reports] == [200] * 200, f"seed={seed}"
    got = consume_topic(gateway_bootstrap(gateway), topic, 3, 400)
    values = sorted(r.value for recs in got.values() for r in recs)
    expected = sorted(json.dumps(r["value"]["data"], separators=(",", ":")).encode() for r in records) * 1
    assert values == sorted(expected * 2)


def test_concurrent_streams_each_get_their_reports_in_order(gateway, topic_factory) -> None:
    topic = topic_factory(4)
    n_streams, n = 8, 2000
    results: dict[int, list[dict[str, Any]]] = {}
    errors: list[BaseException] = []

    def run(sid: int) -> None:
        try:
            with ProduceStream(gateway.host, gateway.port, topic) as s:
                for start in range(0, n, 250):
                    s.send_records(
                        [{"partition_id": (sid + i) % 4, "value": {"type": "STRING", "data": f"{sid}:{i}"}}
                         for i in range(start, start + 250)]
                    )
                s.end()
                results[sid] = s.read_rest(60)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    got = consume_topic(gateway_bootstrap(gateway), topic, 4, n_streams * n)
    by_offset = {(p, r.offset): r.value for p, recs in got.items() for r in recs}
    for sid, reports in results.items():
        assert len(reports) == n
        last: dict[int, int] = {}
        for i, r in enumerate(reports):
            assert r["error_code"] == 200
            p = r["partition_id"]
            assert p == (sid + i) % 4
            assert by_offset[(p, r["offset"])] == f"{sid}:{i}".encode()
            assert r["offset"] > last.get(p, -1)  # per partition, in the order sent
            last[p] = r["offset"]


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_slow_reader_is_paused_not_buffered_and_loses_nothing(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--max-in-flight", "1024")
    topic = topic_factory(1)
    rec = json.dumps({"value": {"type": "BINARY", "data": B64(b"x" * 100)}}).encode()
    per_chunk = 200
    chunk = b"%x\r\n%s\r\n" % (len(rec) * per_chunk, rec * per_chunk)
    max_chunks = 2000  # 400,000 records: far more report bytes than any socket buffer holds
    rss_before = _rss_bytes(g.proc.pid)
    with ProduceStream(g.host, g.port, topic) as s:
        sock = s.conn.sock
        sock.setblocking(False)
        sent_chunks, view = 0, memoryview(chunk)
        stalled = False
        deadline = time.monotonic() + 60
        while sent_chunks < max_chunks and time.monotonic() < deadline:
            try:
                n = sock.send(view)
            except BlockingIOError:
                # Not writable for 2 s while we read nothing: the gateway stopped reading us.
                if not select.select([], [sock], [], 2.0)[1]:
                    stalled = True
                    break
                continue
            view = view[n:]
            if not view:
                sent_chunks += 1
                view = memoryview(chunk)
        assert stalled, f"the gateway kept reading {sent_chunks} chunks although no report was read"
        rss_stalled = _rss_bytes(g.proc.pid)
        # Bounded: what the gateway holds for this client is far below what was sent.
        assert rss_stalled - rss_before < 64 * 1024 * 1024, (rss_before, rss_stalled)
        # Now read (on another thread: the gateway reads our bytes only as we read its
        # reports), finish the chunk in progress and end the body.
        sock.setblocking(True)
        reports: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: reports.extend(s.read_rest(120)))
        reader.start()
        sock.sendall(view)
        sent_chunks += 1
        total = sent_chunks * per_chunk
        s.end()
        reader.join(150)
    assert len(reports) == total
    assert all(r["error_code"] == 200 for r in reports)
    assert [r["offset"] for r in reports] == list(range(total))


def test_disconnect_mid_stream_still_delivers_what_was_accepted(gateway_factory, topic_factory) -> None:
    g = gateway_factory()
    bootstrap = gateway_bootstrap(g)
    rec = json.dumps({"value": {"type": "STRING", "data": "x" * 50}}).encode()
    for how in ("close", "reset"):
        topic = topic_factory(1)
        with ProduceStream(g.host, g.port, topic) as s:
            s.send(rec * 1000 + rec[:20])  # ends inside a record
            s.read_reports(10, timeout=10)
            if how == "reset":
                s.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The client is gone; the 1000 complete records are delivered anyway, nothing else.
        got = consume_partition(bootstrap, topic, 0, 1000, quiet_period=1.0)
        assert [r.value for r in got] == [b"x" * 50] * 1000
        deadline = time.monotonic() + 10
        while f"topic={topic} " not in g.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        line = next(x for x in g.log().splitlines() if f"topic={topic} " in x)
        assert "ok=1000 " in line, line
        if how == "close":
            # The client's EOF cuts the body: one last 400 report stands for the cut record,
            # which is never produced.
            assert '" 400 ' in line and "records=1001 ok=1000 failed=1" in line, line
        else:
            assert "(client gone)" in line, line


def test_unknown_topic_is_404_40401_and_creates_nothing(gateway, broker) -> None:
    r = request(gateway.host, gateway.port, "POST", "/v3/clusters/c/topics/no-such-topic-x/records",
                b'{"value":null}', {"Content-Type": "application/json"})
    assert r.status == 404
    assert r.json() == {"error_code": 40401, "message": "topic no-such-topic-x not found"}
    from confluent_kafka.admin import AdminClient

    assert "no-such-topic-x" not in AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5).topics


@pytest.mark.parametrize(
    "headers,status,code",
    [
        ({"Content-Type": "text/plain"}, 415, 415),
        ({"Content-Type": "application/json; charset=latin-1"}, 415, 415),
        ({}, 415, 415),
        ({"Content-Type": "application/json", "Content-Length": "0"}, 422, 42206),
    ],
)
def test_checks_before_the_200(gateway, topic_factory, headers, status, code) -> None:
    topic = topic_factory(1)
    body = b"" if headers.get("Content-Length") == "0" else b"{}"
    h = dict(headers)
    h.pop("Content-Length", None)
    raw = build_request("POST", f"/v3/clusters/c/topics/{topic}/records", body, h)
    with Conn(gateway.host, gateway.port) as c:
        c.send(raw)
        r = c.read_response()
    assert r.status == status
    assert r.json()["error_code"] == code


def test_no_length_is_411(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n\r\n".encode()
        )
        r = c.read_response()
    assert (r.status, r.json()["error_code"]) == (411, 411)


def test_unreachable_cluster_is_503(gateway_factory, tmp_path) -> None:
    from gateway.kafka.embedded import find_free_port

    g = gateway_factory(bootstrap=f"127.0.0.1:{find_free_port()}")
    r = request(g.host, g.port, "POST", "/v3/clusters/c/topics/t/records", b"{}",
                {"Content-Type": "application/json"}, timeout=30)
    assert r.status == 503
    assert r.json()["error_code"] == 50003


def test_curl_streams_a_chunked_upload_from_a_pipe(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    lines = b"".join(
        json.dumps({"value": {"type": "STRING", "data": f"curl-{i}"}}).encode() + b"\n" for i in range(500)
    )
    proc = subprocess.run(
        ["curl", "-sS", "--no-buffer", "-X", "POST", "-H", "Content-Type: application/json",
         "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
         f"http://{gateway.host}:{gateway.port}/kafka/v3/clusters/c/topics/{topic}/records"],
        input=lines, capture_output=True, timeout=60, check=True,
    )
    reports = [json.loads(x) for x in proc.stdout.split(b"\r\n") if x]
    assert len(reports) == 500 and all(r["error_code"] == 200 for r in reports)
    got = consume_topic(gateway_bootstrap(gateway), topic, 2, 500)
    assert sorted(r.value for recs in got.values() for r in recs) == sorted(b"curl-%d" % i for i in range(500))


def test_full_librdkafka_queue_pauses_reading_and_drops_nothing(gateway_factory, topic_factory) -> None:
    # A tiny producer queue (any librdkafka property passes through -X) forces the
    # queue-full path on nearly every read.
    g = gateway_factory("-X", "queue.buffering.max.messages=200", "-X", "linger.ms=20")
    topic = topic_factory(2)
    n = 30_000
    rec = json.dumps({"value": {"type": "BINARY", "data": B64(b"z" * 60)}}).encode()
    with ProduceStream(g.host, g.port, topic) as s:
        reports: list[dict[str, Any]] = []
        reader = threading.Thread(target=lambda: reports.extend(s.read_rest(120)))
        reader.start()
        for _ in range(n // 1000):
            s.send(rec * 1000)
        s.end()
        reader.join(120)
    assert len(reports) == n
    assert all(r["error_code"] == 200 for r in reports)
    got = consume_topic(g.bootstrap, topic, 2, n, quiet_period=0.5)
    assert sum(len(v) for v in got.values()) == n


def test_batch_variant_answers_207_with_successes_and_failures(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    body = json.dumps({"entries": [
        {"id": "a1", "partition_id": 1, "value": {"type": "STRING", "data": "first"}},
        {"id": "b-2", "value": {"type": "BINARY", "data": "%%%"}},
        {"id": "c_3", "partition_id": 9, "value": None},
        {"id": "d4", "key": {"type": "STRING", "data": "k"}, "value": {"type": "JSON", "data": [1, {"x": 2}]}},
    ]}).encode()
    for prefix in ("/v3", "/kafka/v3"):
        r = request(gateway.host, gateway.port, "POST", f"{prefix}/clusters/cl/topics/{topic}/records:batch",
                    body, {"Content-Type": "application/json"})
        assert r.status == 207, r
        doc = r.json()
        assert [s["id"] for s in doc["successes"]] == ["a1", "d4"]
        first = doc["successes"][0]
        assert list(first) == ["id", "cluster_id", "topic_name", "partition_id", "offset", "timestamp", "value"]
        assert (first["cluster_id"], first["topic_name"], first["partition_id"]) == ("cl", topic, 1)
        assert doc["successes"][1]["key"] == {"type": "STRING", "size": 1}
        assert doc["successes"][1]["partition_id"] == partition_for_key(b"k", 2)
        assert [(f["id"], f["error_code"]) for f in doc["failures"]] == [("b-2", 400), ("c_3", 40402)]
        assert "base64" in doc["failures"][0]["message"]
    got = consume_topic(gateway.bootstrap, topic, 2, 4)
    assert sorted(x.value for v in got.values() for x in v) == sorted([b"first", b'[1,{"x":2}]'] * 2)


@pytest.mark.parametrize(
    "doc,status,code",
    [
        ({"entries": []}, 422, 42208),
        ({"entries": [{"id": str(i)} for i in range(11)]}, 422, 42208),
        ({"entries": [{"id": "x"}, {"id": "x"}]}, 422, 42208),
        ({"entries": [{"id": "bad id!"}]}, 422, 42208),
        ({"entries": [{"value": None}]}, 422, 42208),
        ({"records": []}, 422, 42208),
    ],
)
def test_batch_variant_rejects_bad_batches(gateway, topic_factory, doc, status, code) -> None:
    topic = topic_factory(1)
    r = request(gateway.host, gateway.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch",
                json.dumps(doc).encode(), {"Content-Type": "application/json"})
    assert (r.status, r.json()["error_code"]) == (status, code), r
