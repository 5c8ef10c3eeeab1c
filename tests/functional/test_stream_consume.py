"""Streaming consume (``GET .../records:stream``, docs/api.md §13) through the real gateway
process and the real broker: the records a client reads, in order and in the documented shape;
explicit partitions and offsets; a group member's commits; back-pressure with a client that
stops reading (the gateway's memory, then every record); a client that cuts its stream; the
shutdown's last line; the checks before the 200.

Records are written with a plain confluent-kafka producer (explicit timestamps, so that each
line can be compared whole). The gateways join groups with a short session timeout: Tansu's
group join takes session.timeout.ms/2.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import struct
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from support.gateway import GatewayProcess, child_pids, crash_checked, process_name
from support.http import request

from gateway.kafka.embedded import EmbeddedBroker, find_free_port

GROUP_ARGS = ("-X", "session.timeout.ms=2000", "-X", "heartbeat.interval.ms=300")
T0 = 1764658800000  # 2025-12-02T07:00:00.000Z
B64 = lambda b: base64.b64encode(b).decode()  # noqa: E731


@pytest.fixture(autouse=True)
def close_streams() -> Iterator[None]:
    yield
    while Stream.opened:
        Stream.opened.pop().sock.close()


@pytest.fixture(scope="module")
def gw(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    g = GatewayProcess(["--bootstrap-servers", broker.bootstrap, *GROUP_ARGS],
                       tmp_path_factory.mktemp("stream") / "gateway.log")
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    """Each record: partition, value, and optionally key, headers, timestamp (ms)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                  "batch.num.messages": 10000, "queue.buffering.max.messages": 200000})
    failed: list[Any] = []
    for r in records:
        while True:
            try:
                p.produce(topic, r.get("value"), r.get("key"), partition=r["partition"],
                          headers=r.get("headers"), timestamp=r.get("timestamp", 0),
                          on_delivery=lambda err, _m: err is not None and failed.append(err))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(30) == 0
    assert not failed, failed[:3]


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets (-1001: none), read without joining it."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)]
    finally:
        c.close()


class Stream:
    """One streaming consume request over a raw socket: the head, then lines as they come.
    Every one a test opens is closed after it (``close_streams``)."""

    opened: list[Stream] = []

    def __init__(self, g: GatewayProcess, topic: str, query: str, *, rcvbuf: int | None = None,
                 mount: str = "/v3", headers: str = "") -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        Stream.opened.append(self)
        self.sock = sock
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(30)
        sock.connect((g.host, g.port))
        self.sock = sock
        self.raw = bytearray()  # bytes received, not yet parsed as chunks
        self.body = bytearray()  # de-chunked bytes not yet split into lines
        self.ready: deque[bytes] = deque()  # lines split off, not yet returned
        self.ended = False
        self.received = 0
        path = f"{mount}/clusters/local/topics/{topic}/records:stream?{query}"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
        while b"\r\n\r\n" not in self.raw:
            self._recv()
        head, _, rest = bytes(self.raw).partition(b"\r\n\r\n")
        self.raw = bytearray(rest)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}

    def _recv(self, n: int = 65536) -> None:
        data = self.sock.recv(n)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self.received += len(data)
        self.raw += data

    def _dechunk(self) -> None:
        pos = 0
        raw = self.raw
        while not self.ended:
            i = raw.find(b"\r\n", pos)
            if i < 0:
                break
            size = int(raw[pos:i].split(b";")[0], 16)
            if size == 0:
                if raw[i + 2 : i + 4] == b"\r\n":
                    self.ended = True
                    pos = i + 4
                break
            if len(raw) < i + 2 + size + 2:
                break
            self.body += raw[i + 2 : i + 2 + size]
            pos = i + 2 + size + 2
        del raw[:pos]
        end = self.body.rfind(b"\n")
        if end >= 0:
            self.ready.extend(bytes(self.body[:end]).split(b"\n"))
            del self.body[: end + 1]

    def lines(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The next ``n`` lines (fewer if the stream ends first)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            self._dechunk()
            while len(out) < n and self.ready:
                out.append(json.loads(self.ready.popleft()))
            if len(out) == n or (self.ended and not self.ready):
                break
            assert time.monotonic() < deadline, f"{len(out)} of {n} lines in {timeout} s"
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            self._recv()
        return out

    def rest(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Every line until the response's end."""
        out = []
        while True:
            got = self.lines(1, timeout)
            if not got:
                assert self.ended
                return out
            out.extend(got)

    def close(self) -> None:
        self.sock.close()

    def cut(self) -> None:
        """Close with a reset (SO_LINGER 0): the connection dies at once, mid-whatever."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def line(topic: str, partition: int, offset: int, ts: int, key: Any, value: Any,
         headers: list[tuple[str, bytes | None]] = (), as_json: bool = False) -> dict[str, Any]:
    def side(data: Any) -> Any:
        if data is None:
            return None
        return {"type": "JSON", "data": json.loads(data)} if as_json else {"type": "BINARY", "data": B64(data)}

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts // 1000)) + ".%03dZ" % (ts % 1000)
    return {"topic_name": topic, "partition_id": partition, "offset": offset, "timestamp": stamp,
            "key": side(key), "value": side(value),
            "headers": [{"name": n, "value": None if v is None else B64(v)} for n, v in headers]}


def access_line(g: GatewayProcess, topic: str, has: str = "", timeout: float = 10.0) -> str:
    """The gateway's access log line of a stream of ``topic`` (the last one, with ``has``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in g.log().splitlines()
                 if "records:stream" in x and f"topic={topic} " in x and has in x]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no access log line for the stream with {has!r}"
        time.sleep(0.05)


# -- the shape, in order -----------------------------------------------------------------------------
def test_records_come_in_order_in_the_documented_shape_binary_and_json(gw, broker, topic_factory) -> None:
    topic = topic_factory(2)
    recs = [
        {"partition": 0, "key": b"k0", "value": b'{"n":0}', "timestamp": T0 + 1,
         "headers": [("trace", b"abc"), ("empty", None), ("trace", b"2")]},
        {"partition": 0, "key": None, "value": b"[1,2]", "timestamp": T0 + 2},
        {"partition": 0, "key": b'"k2"', "value": None, "timestamp": T0 + 3},
        {"partition": 1, "key": b"x", "value": b"binary \xff\x00", "timestamp": T0 + 4},
    ]
    produce(broker.bootstrap, topic, recs)
    expected = [line(topic, 0, i, r["timestamp"], r.get("key"), r["value"], r.get("headers") or [])
                for i, r in enumerate(recs[:3])]

    s = Stream(gw, topic, "partitions=0&offset=earliest")
    assert s.status == 200
    assert s.headers["content-type"] == "application/x-ndjson"
    assert s.headers["transfer-encoding"] == "chunked"
    assert s.lines(3) == expected
    # A record that comes while the stream is open is written as it comes.
    produce(broker.bootstrap, topic, [{"partition": 0, "key": b"live", "value": b"1", "timestamp": T0 + 5}])
    assert s.lines(1) == [line(topic, 0, 3, T0 + 5, b"live", b"1")]
    assert gw.metric("gateway_consume_streams") >= 1
    assert gw.metric("gateway_consume_stream_records_total") >= 4
    s.close()


def test_json_format_embeds_json_and_stops_before_a_record_that_is_not(gw, broker, topic_factory) -> None:
    topic = topic_factory(1)
    recs = [
        {"partition": 0, "key": b'"a"', "value": b'{"n":1}', "timestamp": T0},
        {"partition": 0, "key": None, "value": b"[true,null]", "timestamp": T0 + 1},
        {"partition": 0, "key": None, "value": b"not json", "timestamp": T0 + 2},
        {"partition": 0, "key": None, "value": b"3", "timestamp": T0 + 3},
    ]
    produce(broker.bootstrap, topic, recs)
    s = Stream(gw, topic, "offset=earliest&format=json")
    got = s.rest()
    assert got[:2] == [line(topic, 0, 0, T0, b'"a"', b'{"n":1}', as_json=True),
                       line(topic, 0, 1, T0 + 1, None, b"[true,null]", as_json=True)]
    assert len(got) == 3 and got[2]["error_code"] == 50002 and list(got[2]) == ["error_code", "message"]
    assert "offset 2" in got[2]["message"]
    # From the next record on, it reads again.
    s = Stream(gw, topic, "offsets=0:3&format=json&max_records=1")
    assert s.rest() == [line(topic, 0, 3, T0 + 3, None, b"3", as_json=True)]


# -- explicit partitions and offsets -------------------------------------------------------------------
def test_explicit_partitions_and_offsets(gw, broker, topic_factory) -> None:
    topic = topic_factory(3)
    produce(broker.bootstrap, topic, [{"partition": p, "value": b"%d-%d" % (p, i), "timestamp": T0 + i}
                                      for p in (0, 2) for i in range(5)])
    s = Stream(gw, topic, "offsets=0:3,2:earliest&max_records=7")
    got = s.rest()
    assert sorted((r["partition_id"], r["offset"]) for r in got) == [(0, 3), (0, 4)] + [(2, i) for i in range(5)]
    assert all(base64.b64decode(r["value"]["data"]) == b"%d-%d" % (r["partition_id"], r["offset"]) for r in got)
    # latest: only what comes after the stream began; the other partitions are not read.
    # (Partition 1 is empty: Tansu answers "latest" of a partition whose last batch holds
    # several records with that batch's first offset + 1.)
    s = Stream(gw, topic, "partitions=1&offset=latest")
    assert s.status == 200
    time.sleep(0.5)  # its consumer has its position before the next record is written
    produce(broker.bootstrap, topic, [{"partition": 1, "value": b"new"}, {"partition": 0, "value": b"other"}])
    (r,) = s.lines(1)
    assert (r["partition_id"], r["offset"], r["value"]["data"]) == (1, 0, B64(b"new"))
    s.close()
    # partitions + offset: every partition from that offset; idle_timeout_ms ends it.
    s = Stream(gw, topic, "partitions=0,2&offset=4&idle_timeout_ms=300")
    assert sorted((r["partition_id"], r["offset"]) for r in s.rest()) == [(0, 4), (0, 5), (2, 4)]


# -- a group member's commits --------------------------------------------------------------------------
def test_a_group_member_commits_what_it_wrote_and_the_next_resumes_there(gw, broker, topic_factory) -> None:
    topic = topic_factory(2)
    group = f"readers-{topic}"
    produce(broker.bootstrap, topic, [{"partition": i % 2, "value": b"a%d" % i} for i in range(20)])
    s = Stream(gw, topic, f"group={group}&offset=earliest&commit_interval_ms=200")
    got = s.lines(20)
    assert sorted((r["partition_id"], r["offset"]) for r in got) == [(p, i) for p in (0, 1) for i in range(10)]
    s.close()  # the client has read everything it was given, and leaves
    deadline = time.monotonic() + 15
    while committed(broker.bootstrap, group, topic, 2) != [10, 10]:
        assert time.monotonic() < deadline, committed(broker.bootstrap, group, topic, 2)
        time.sleep(0.2)
    produce(broker.bootstrap, topic, [{"partition": i % 2, "value": b"b%d" % i} for i in range(6)])
    # The next member resumes exactly after what was read: nothing again, nothing skipped.
    s = Stream(gw, topic, f"group={group}&idle_timeout_ms=3000")
    got = s.rest(timeout=30)
    assert sorted((r["partition_id"], r["offset"]) for r in got) == [(p, i) for p in (0, 1) for i in range(10, 13)]
    assert " 200 " in access_line(gw, topic, "end=idle")


# -- back-pressure ---------------------------------------------------------------------------------
def test_a_client_that_stops_reading_holds_no_memory_and_then_gets_every_record(gw, broker, topic_factory) -> None:
    topic = topic_factory(2)
    n, size = 100_000, 600
    s = Stream(gw, topic, "offset=earliest", rcvbuf=256 * 1024)  # (the topic is empty)
    assert s.status == 200
    time.sleep(0.5)
    before = gw.rss_bytes()
    pad = b"x" * (size - 8)
    t0 = time.monotonic()
    produce(broker.bootstrap, topic, [{"partition": i % 2, "value": b"%08d" % i + pad} for i in range(n)])
    t1 = time.monotonic()
    peak = before
    while time.monotonic() - t0 < 10:  # the client reads nothing for 10 s
        peak = max(peak, gw.rss_bytes())
        time.sleep(0.1)
    # 60 MB of values (84 MB of lines) went by meanwhile; the gateway held a few MB of them.
    assert peak - before < 40 * 1024 * 1024, (before, peak)
    print(f"RSS before {before >> 20} MiB, peak {peak >> 20} MiB; produced in {t1 - t0:.1f} s")
    seen = {0: -1, 1: -1}
    count = 0
    while count < n:
        for r in s.lines(min(5000, n - count), timeout=60):
            p, off = r["partition_id"], r["offset"]
            assert off == seen[p] + 1, (p, off, seen[p])  # in order, no gap
            seen[p] = off
            value = base64.b64decode(r["value"]["data"])
            assert value[:8] == b"%08d" % (2 * off + p) and len(value) == size
            count += 1
    assert seen == {0: n // 2 - 1, 1: n // 2 - 1}
    s.close()


# -- a client that cuts its stream -----------------------------------------------------------------
def test_a_stream_cut_mid_record_commits_no_further_than_was_written(gw, broker, topic_factory) -> None:
    topic = topic_factory(1)
    group = f"cut-{topic}"
    n = 3000
    produce(broker.bootstrap, topic, [{"partition": 0, "value": b"%06d" % i + b"y" * 1000} for i in range(n)])
    s = Stream(gw, topic, f"group={group}&offset=earliest&commit_interval_ms=100", rcvbuf=8192)
    assert s.status == 200
    while s.received < 200_000:
        s._recv(4096)
    first_chunk = bytes(s.raw[s.raw.find(b"\r\n") + 2 :])
    assert b"\n" in first_chunk and not first_chunk.endswith(b"\n")  # (a record is cut)
    time.sleep(0.5)  # commits happen meanwhile (the client reads nothing more)
    s.cut()
    detail = access_line(gw, topic, "(client gone)")
    written = int(re.search(r" records=(\d+) ", detail).group(1))
    assert 0 < written < n
    # The gateway goes on; the group resumes at most where the cut stream wrote, never past it,
    # and from there every record comes, in order.
    assert request(gw.host, gw.port, "GET", "/healthz").status == 200
    deadline = time.monotonic() + 15
    while (start := committed(broker.bootstrap, group, topic, 1)[0]) < 0:
        assert time.monotonic() < deadline, "nothing committed"
        time.sleep(0.2)
    assert 0 < start <= written
    s = Stream(gw, topic, f"group={group}&idle_timeout_ms=2000")
    got = s.rest(timeout=30)
    assert [r["offset"] for r in got] == list(range(start, n))


# -- the ends and the checks -------------------------------------------------------------------------
def test_shutdown_ends_open_streams_with_a_last_line_and_commits(gateway_factory, broker, topic_factory) -> None:
    g = gateway_factory(*GROUP_ARGS, "--max-consume-streams", "2")
    topic = topic_factory(1)
    produce(broker.bootstrap, topic, [{"partition": 0, "value": b"%d" % i} for i in range(5)])
    group = f"stop-{topic}"
    a = Stream(g, topic, f"group={group}&offset=earliest")
    b = Stream(g, topic, "offset=earliest")
    assert len(a.lines(5)) == 5 and len(b.lines(5)) == 5
    # Every place is taken: one more waits for none.
    r = request(g.host, g.port, "GET", f"/v3/clusters/local/topics/{topic}/records:stream")
    assert (r.status, r.json()["error_code"]) == (503, 50301), r
    g.proc.send_signal(signal.SIGTERM)
    for s in (a, b):
        (last,) = s.rest()
        assert last["error_code"] == 50003 and "shutting down" in last["message"]
        assert list(last) == ["error_code", "message"]
    assert g.terminate() == 0
    g.assert_no_crash()
    assert committed(broker.bootstrap, group, topic, 1) == [5]


def test_checks_before_the_200(gw, topic_factory) -> None:
    topic = topic_factory(2)

    def get(path: str) -> tuple[int, int, str]:
        r = request(gw.host, gw.port, "GET", path)
        body = r.json()
        assert list(body) == ["error_code", "message"], body
        return r.status, body["error_code"], body["message"]

    base = f"/v3/clusters/local/topics/{topic}/records:stream"
    assert get("/v3/clusters/local/topics/no-such-topic/records:stream")[:2] == (404, 40401)
    assert get("/kafka/v3/clusters/local/topics/no-such-topic/records:stream?group=g")[:2] == (404, 40401)
    assert get(f"/v3/clusters/other/topics/{topic}/records:stream")[:2] == (404, 404)
    assert get(f"{base}?partitions=0,2")[:2] == (404, 40402)
    status, code, message = get(f"{base}?partition=0")
    assert (status, code) == (400, 400) and "unknown query parameter 'partition'" in message
    assert get(f"{base}?group=g&offset=5")[:2] == (400, 400)
    r = request(gw.host, gw.port, "POST", base, b"{}", {"Content-Type": "application/json"})
    assert r.status == 405 and r.header("allow") == "GET"
    r = request(gw.host, gw.port, "GET", base, b"{}", {"Content-Type": "application/json"})
    assert (r.status, r.json()["error_code"]) == (400, 400)


def test_the_embedded_broker_dying_ends_open_streams_with_50003(tmp_path) -> None:
    """Its consumers know the old broker's topic ids (librdkafka must never fetch them from the
    new one): the streams end, and new ones read from the broker started again."""
    bootstrap = f"127.0.0.1:{find_free_port('127.0.0.1')}"
    g = GatewayProcess(["--embedded-broker", bootstrap, "--topic", "t:1", "--shutdown-timeout", "5"],
                       tmp_path / "gateway.log")

    def ready() -> None:
        deadline = time.monotonic() + 20
        while request(g.host, g.port, "GET", "/readyz", timeout=5).status != 200:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)

    def produce_one(text: str) -> None:
        r = request(g.host, g.port, "POST", "/v3/clusters/local/topics/t/records",
                    json.dumps({"value": {"type": "STRING", "data": text}}).encode(),
                    {"Content-Type": "application/json"})
        assert r.status == 200 and json.loads(r.body)["error_code"] == 200, r

    try:
        with crash_checked(g):
            ready()
            produce_one("before")
            s = Stream(g, "t", "offset=earliest")
            (r,) = s.lines(1)
            assert base64.b64decode(r["value"]["data"]) == b"before"
            tansu = [p for p in child_pids(g.pid) if process_name(p) == "tansu"]
            assert len(tansu) == 1, tansu
            os.kill(tansu[0], signal.SIGKILL)
            (last,) = s.rest()
            assert last["error_code"] == 50003 and "Kafka is unreachable" in last["message"], last
            ready()  # the broker is back, empty
            produce(bootstrap, "t", [{"partition": 0, "value": b"after"}])
            s = Stream(g, "t", "offset=earliest&max_records=1")
            (r,) = s.rest()
            assert (r["offset"], base64.b64decode(r["value"]["data"])) == (0, b"after")
    finally:
        g.stop()


