"""Compressed request bodies and compressed report streams through the real gateway process and
the real broker, over real sockets (docs/api.md §9 "Content codings"): what a client sending
gzip, deflate or zstd, or asking for compressed reports, observes.

The bodies are compressed here with the reference libraries, as clients do: one-shot, or
flushed after each record so that each record can be decoded as soon as it arrives.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import zlib
from typing import Any

import pytest
from support.bombs import MIB, gzip_bomb
from support.http import Conn, ProduceStream, build_request, request
from support.kafka import consume_partition

from gateway.http.coding import zstd

JSON = {"Content-Type": "application/json"}
RECORDS = [
    {"key": {"type": "STRING", "data": f"sensor-{i}"},
     "value": {"type": "JSON", "data": {"seq": i, "temp": 21.5 + i, "state": "ok"}}}
    for i in range(5)
]
PLAIN = b"\n".join(json.dumps(r, separators=(",", ":")).encode() for r in RECORDS) + b"\n"


def gzip_(data: bytes) -> bytes:
    return zlib.compress(data, 6, wbits=31)


def zstd_(data: bytes) -> bytes:
    return zstd.compress(data)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


COMPRESS = {"gzip": gzip_, "zstd": zstd_, "deflate": zlib.compress, "deflate-raw": raw_deflate}


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what differs from one request to the next (where and when)."""
    return {k: v for k, v in report.items() if k not in ("offset", "timestamp")}


def records_path(topic: str, batch: bool = False) -> str:
    return f"/v3/clusters/c/topics/{topic}/records" + (":batch" if batch else "")


def chunked_head(path: str, headers: dict[str, str]) -> bytes:
    h = {"Host": "gateway.test", "Content-Type": "application/json", "Transfer-Encoding": "chunked",
         **headers}
    return (f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def reports_of(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.split(b"\r\n") if line]


# == cut at every byte ===========================================================================
@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_compressed_stream_cut_at_every_byte_gets_the_same_reports(gateway, topic_factory, coding) -> None:
    """The compressed body of five records, sent as two chunks split at every offset, each on
    the same keep-alive connection: every request gets the reports the plain body gets."""
    topic = topic_factory(1)
    path = records_path(topic)
    plain = request(gateway.host, gateway.port, "POST", path, PLAIN, JSON)
    assert plain.status == 200, plain
    want = [comparable(r) for r in reports_of(plain.body)]
    assert [r["error_code"] for r in want] == [200] * 5
    body = COMPRESS[coding](PLAIN)
    head = chunked_head(path, {"Content-Encoding": coding})
    with Conn(gateway.host, gateway.port, timeout=30) as c:
        for cut in range(1, len(body)):
            c.send(head + chunk(body[:cut]))
            time.sleep(0.001)  # two reads of the gateway's, in practice
            c.send(chunk(body[cut:]) + b"0\r\n\r\n")
            r = c.read_response(10)
            assert r.status == 200 and r.header("connection") is None, (cut, r)
            reports = reports_of(r.body)
            assert [comparable(x) for x in reports] == want, f"cut at byte {cut}"
    # Every record of every request is in Kafka, in order.
    n = 5 * len(body)
    got = consume_partition(gateway.bootstrap, topic, 0, n)
    assert [json.loads(x.value)["seq"] for x in got] == [0, 1, 2, 3, 4] * len(body)


# == incremental ==================================================================================
@pytest.mark.parametrize("coding", ["gzip", "zstd"])
def test_a_compressed_stream_is_reported_as_it_arrives(gateway, topic_factory, coding) -> None:
    """A client that flushes its compressor after each record gets that record's report
    before it sends the next: the body is decompressed as it comes, not at its end."""
    topic = topic_factory(1)
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    z = zstd.ZstdCompressor()

    def flushed(data: bytes) -> bytes:
        if coding == "gzip":
            return gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)
        return z.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    records = [json.dumps({"value": {"type": "STRING", "data": f"piece-{i}"}}).encode() for i in range(20)]
    with ProduceStream(gateway.host, gateway.port, topic, extra_headers={"Content-Encoding": coding}) as s:
        assert s.read_status(10) == 200
        for i, rec in enumerate(records):
            s.send(flushed(rec))
            (report,) = s.read_reports(1, timeout=10)  # the rest of the body is not sent yet
            assert report["error_code"] == 200 and report["offset"] == i
        s.send(gz.flush(zlib.Z_FINISH) if coding == "gzip" else z.flush(zstd.ZstdCompressor.FLUSH_FRAME))
        s.end()
        assert s.read_rest(10) == []
    got = consume_partition(gateway.bootstrap, topic, 0, 20)
    assert [x.value for x in got] == [b"piece-%d" % i for i in range(20)]


# == every produce endpoint =======================================================================
@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw", "zstd"])
def test_every_produce_endpoint_takes_a_compressed_body(gateway, topic_factory, coding) -> None:
    topic = topic_factory(1)
    wire = coding.removesuffix("-raw")
    compress = COMPRESS[coding]
    ce = {"Content-Encoding": wire}
    r = request(gateway.host, gateway.port, "POST", records_path(topic), compress(PLAIN), {**JSON, **ce})
    assert r.status == 200 and [x["error_code"] for x in reports_of(r.body)] == [200] * 5, r
    batch = {"entries": [{"id": f"e{i}", **rec} for i, rec in enumerate(RECORDS)]}
    r = request(gateway.host, gateway.port, "POST", records_path(topic, batch=True),
                compress(json.dumps(batch).encode()), {**JSON, **ce})
    assert r.status == 207 and [s["id"] for s in r.json()["successes"]] == [f"e{i}" for i in range(5)], r
    for version in ("v1", "v2"):
        body = json.dumps({"records": [{"value": "dmFsdWU="}]}).encode()
        r = request(gateway.host, gateway.port, "POST", f"/topics/{topic}", compress(body),
                    {"Content-Type": f"application/vnd.kafka.binary.{version}+json", **ce})
        assert r.status == 200 and r.json()["offsets"][0]["offset"] is not None, r
    got = consume_partition(gateway.bootstrap, topic, 0, 12)
    assert [x.value for x in got][-2:] == [b"value", b"value"]
    assert [json.loads(x.value)["seq"] for x in got[:10]] == [0, 1, 2, 3, 4] * 2


# == refused codings and broken bodies ===========================================================
@pytest.mark.parametrize("target, ctype", [
    ("stream", "application/json"),
    ("batch", "application/json"),
    ("v2", "application/vnd.kafka.binary.v2+json"),
])
def test_an_unknown_coding_is_415_with_accept_encoding_before_the_body(gateway, topic_factory, target, ctype) -> None:
    topic = topic_factory(1)
    path = f"/topics/{topic}" if target == "v2" else records_path(topic, batch=target == "batch")
    with Conn(gateway.host, gateway.port) as c:
        # Only the head and a part of the body: the answer comes before the rest is sent.
        c.send(build_request("POST", path, b"x" * 10, {"Content-Type": ctype,
                                                       "Content-Encoding": "gzip, br",
                                                       "Content-Length": "100000"}))
        r = c.read_response(10)
        assert c.is_closed_by_peer(5)
    assert r.status == 415 and r.header("accept-encoding") == "gzip, deflate, zstd", r
    assert r.header("connection") == "close"
    assert r.json() == {"error_code": 415, "message": "Content-Encoding 'br' is not supported: the "
                        "request body may be coded with gzip, deflate or zstd"}


def test_a_corrupt_stream_ends_with_a_last_400_after_its_good_records(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    good = c.compress(PLAIN) + c.flush(zlib.Z_SYNC_FLUSH)
    with ProduceStream(gateway.host, gateway.port, topic, extra_headers={"Content-Encoding": "gzip"}) as s:
        s.send(good)
        assert [r["error_code"] for r in s.read_reports(5, timeout=10)] == [200] * 5
        s.send(b"\xff" * 40)  # not deflate data
        reports = s.read_rest(10)
        assert s.conn.is_closed_by_peer(5)
    (last,) = reports
    assert last["error_code"] == 400 and list(last) == ["error_code", "message"]
    assert "the request body is not valid gzip data" in last["message"]
    assert last["message"].endswith(
        f": reading stopped at byte {len(PLAIN)} of the records sent; the records after this "
        "report were not read, send them again"
    )


def test_a_corrupt_or_truncated_batch_is_400(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    body = gzip_(json.dumps({"entries": [{"id": "a", **RECORDS[0]}]}).encode())
    for bad, words in ((body[:-6], "it is truncated"), (body[:12] + b"\x00" * 9 + body[21:], "not valid gzip")):
        r = request(gateway.host, gateway.port, "POST", records_path(topic, batch=True), bad,
                    {**JSON, "Content-Encoding": "gzip"})
        assert (r.status, r.json()["error_code"]) == (400, 400), r
        assert words in r.json()["message"]


# == bombs ========================================================================================
def _rss_growth(g, send) -> tuple[Any, int]:
    before = g.rss_bytes()
    out = send()
    return out, g.rss_bytes() - before


def test_a_decompression_bomb_ends_in_413_with_bounded_memory(gateway_factory, topic_factory) -> None:
    """A few KB that inflate to 2 GiB (``gzip, gzip``), and 32 KB of zstd that inflate to 1 GiB:
    each ends with the documented 413 once its decoded bytes pass the limit, and the gateway's
    memory stays where it was."""
    g = gateway_factory("--max-request-bytes", str(MIB))
    topic = topic_factory(1)
    double = gzip_bomb(2048 * MIB, layers=2)
    assert len(double) < 8000

    # records:batch and v2: the held-body limit (the smaller of 4 MiB and --max-request-bytes).
    def batch() -> Any:
        return request(g.host, g.port, "POST", records_path(topic, batch=True), double,
                       {**JSON, "Content-Encoding": "gzip, gzip"})

    r, grown = _rss_growth(g, batch)
    assert (r.status, r.json()["error_code"], r.header("connection")) == (413, 413, "close"), r
    assert grown < 32 * MIB, grown

    def v2() -> Any:
        return request(g.host, g.port, "POST", f"/topics/{topic}", double,
                       {"Content-Type": "application/vnd.kafka.binary.v2+json",
                        "Content-Encoding": "gzip, gzip"})

    r, grown = _rss_growth(g, v2)
    assert (r.status, r.json()["error_code"]) == (413, 413), r
    assert grown < 32 * MIB, grown

    # A v3 stream: its records within the limit are produced, then one last 413 report.
    z = zstd.ZstdCompressor(level=1)
    spaces = b" " * MIB
    bomb = z.compress(PLAIN) + b"".join(z.compress(spaces) for _ in range(1024)) + z.flush()
    assert len(bomb) < 64 * 1024

    def stream() -> Any:
        return request(g.host, g.port, "POST", records_path(topic), bomb,
                       {**JSON, "Content-Encoding": "zstd"})

    r, grown = _rss_growth(g, stream)
    assert r.status == 200, r
    reports = reports_of(r.body)
    assert [x["error_code"] for x in reports] == [200] * 5 + [413]
    assert f"over the {MIB}-byte limit" in reports[-1]["message"]
    assert grown < 32 * MIB, grown
    assert [json.loads(x.value)["seq"] for x in consume_partition(g.bootstrap, topic, 0, 5)] == list(range(5))


# == compressed report streams ====================================================================
def test_a_compressed_report_stream_is_decodable_report_by_report(gateway, topic_factory) -> None:
    """Python's zlib as the client: each report it reads decodes at once (the gateway flushes
    every write), and the whole answer is one valid gzip member."""
    topic = topic_factory(1)
    d = zlib.decompressobj(31)
    wire = bytearray()
    with ProduceStream(gateway.host, gateway.port, topic, extra_headers={"Accept-Encoding": "gzip"}) as s:
        assert s.read_status(10) == 200
        headers = dict(s.headers)
        assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
        for i in range(10):
            s.send_records([{"value": {"type": "STRING", "data": f"r{i}"}}])
            text = b""
            deadline = time.monotonic() + 10
            while not text.endswith(b"\r\n"):
                piece = s.conn.read_chunk(deadline)
                wire += piece
                text += d.decompress(piece)
            report = json.loads(text)
            assert report["error_code"] == 200 and report["offset"] == i
        s.end()
        while piece := s.conn.read_chunk(time.monotonic() + 10):
            wire += piece
            assert d.decompress(piece) == b""  # the gzip trailer
    assert d.eof
    assert len(zlib.decompress(bytes(wire), 31).split(b"\r\n")) == 11


def test_curl_compressed_reads_the_compressed_reports(gateway, topic_factory) -> None:
    """curl --compressed asks for compressed answers (deflate, gzip, br, zstd: curl names what
    it was built with) and decodes them; the head shows what it got."""
    topic = topic_factory(1)
    url = f"http://{gateway.host}:{gateway.port}{records_path(topic)}"
    out = subprocess.run(
        ["curl", "-sS", "--compressed", "-D", "-", "-X", "POST", "-H", "Content-Type: application/json",
         "--data-binary", "@-", url],
        input=PLAIN, capture_output=True, timeout=30, check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    # A tie (no q-values): the gateway's preference, zstd, which this curl decodes.
    assert b"\r\nContent-Encoding: zstd\r\n" in head and b"\r\nVary: Accept-Encoding\r\n" in head
    assert [r["error_code"] for r in reports_of(body)] == [200] * 5


def test_curl_sends_a_gzip_body_from_a_pipe(gateway, topic_factory) -> None:
    """The README's way: gzip the records and tell the gateway so."""
    topic = topic_factory(1)
    url = f"http://{gateway.host}:{gateway.port}{records_path(topic)}"
    gz = subprocess.run(["gzip", "-c"], input=PLAIN * 100, capture_output=True, check=True).stdout
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json",
         "-H", "Content-Encoding: gzip", "--data-binary", "@-", url],
        input=gz, capture_output=True, timeout=30, check=True,
    ).stdout
    assert [r["error_code"] for r in reports_of(out)] == [200] * 500


def test_compressed_streams_on_many_connections_at_once(gateway, topic_factory) -> None:
    """Eight clients, each a zstd body in and gzip reports out, at the same time."""
    topic = topic_factory(1)
    body = zstd_(PLAIN * 40)
    results: list[Any] = []

    def one() -> None:
        results.append(request(gateway.host, gateway.port, "POST", records_path(topic), body,
                               {**JSON, "Content-Encoding": "zstd", "Accept-Encoding": "gzip"}))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8
    for r in results:
        assert r.status == 200 and r.header("content-encoding") == "gzip", r
        assert [x["error_code"] for x in reports_of(zlib.decompress(r.body, 31))] == [200] * 200
