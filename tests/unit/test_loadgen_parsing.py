"""The loadgen's client side of HTTP (gateway.loadgen.http.ResponseParser, RFC 9112) and its
report counting (gateway.loadgen.scan): fed byte by byte and at random splits, seeded."""

from __future__ import annotations

import json
import random

import pytest

from gateway.loadgen.http import ProtocolError, ResponseParser, Target, UsageError
from gateway.loadgen.scan import ReportFormatError, ReportScanner, count_reports, failure_lines

SEEDS = range(20)

OK = b'{"error_code":200,"cluster_id":"c","topic_name":"t","partition_id":0,"offset":%d,"timestamp":"2026-01-01T00:00:00.000Z"}'
FAIL = b'{"error_code":%d,"message":"record dropped: the produce rate limit is exceeded"}'


class Collect:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.parser = ResponseParser(self.head, self.body, self.end)
        self._body: list[bytes] = []

    def head(self, status: int, headers: dict[str, str]) -> None:
        self.events.append(("head", status, headers))

    def body(self, data: bytes) -> None:
        assert isinstance(data, bytes) and data
        self._body.append(data)

    def end(self) -> None:
        self.events.append(("end", b"".join(self._body)))
        self._body = []


def splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        n = rng.choice([1, 1, 2, 3, 7, 64, 1000])
        out.append(data[pos : pos + n])
        pos += n
    return out


RESPONSES = [
    # (wire bytes, [(status, body), ...])
    (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n"
     b"HTTP/1.1 404 Not Found\r\nContent-Length: 11\r\n\r\n{\"a\":\"404\"}",
     [(200, b"helloabcdefghijklmnopqrstuvwxyz"), (404, b'{"a":"404"}')]),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
     b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
     [(204, b""), (200, b"")]),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("wire,expected", RESPONSES)
def test_responses_fed_at_any_split(seed: int, wire: bytes, expected: list) -> None:
    c = Collect()
    for piece in splits(wire, seed) if seed else [bytes([b]) for b in wire]:
        c.parser.feed(piece)
    ends = [e[1] for e in c.events if e[0] == "end"]
    heads = [e[1] for e in c.events if e[0] == "head"]
    assert list(zip(heads, ends, strict=True)) == expected
    assert c.parser.idle
    c.parser.feed_eof()  # an idle connection may end


def test_a_body_until_the_connection_ends() -> None:
    c = Collect()
    for b in b"HTTP/1.0 200 OK\r\n\r\nsome body":
        c.parser.feed(bytes([b]))
    assert not c.parser.keep_alive
    c.parser.feed_eof()
    assert c.events[-1] == ("end", b"some body")


def test_connection_close_and_http_1_0_are_not_kept_alive() -> None:
    c = Collect()
    c.parser.feed(b"HTTP/1.1 404 x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    assert not c.parser.keep_alive
    c.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert c.parser.keep_alive


@pytest.mark.parametrize("wire", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"SMTP 220 hello\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
])
def test_malformed_answers_are_protocol_errors(wire: bytes) -> None:
    c = Collect()
    with pytest.raises(ProtocolError):
        for b in wire:
            c.parser.feed(bytes([b]))


def test_an_answer_cut_short_is_a_protocol_error_at_eof() -> None:
    c = Collect()
    c.parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ProtocolError):
        c.parser.feed_eof()


def test_the_target_url() -> None:
    t = Target.parse("https://al%40ce:p%3Aw@example.com:8443/kafka/")
    assert (t.host, t.port, t.tls, t.prefix) == ("example.com", 8443, True, "/kafka")
    assert t.authorization == "Basic YWxAY2U6cDp3"  # al@ce:p:w
    assert t.url == "https://example.com:8443/kafka/"  # no password in what is printed
    assert t.path("v3", "clusters", "a/b") == "/kafka/v3/clusters/a%2Fb"
    t = Target.parse("http://127.0.0.1:8082", user="bob:pw")
    assert (t.port, t.prefix, t.authorization, t.host_header) == (8082, "", "Basic Ym9iOnB3", "127.0.0.1:8082")
    for bad in ("ftp://x", "http://", "http://x:99999", "http://x/?q=1"):
        with pytest.raises(UsageError):
            Target.parse(bad)
    with pytest.raises(UsageError):
        Target.parse("http://x", insecure=True)


# -- reports ---------------------------------------------------------------------------------


def gateway_reports(codes: list[int]) -> bytes:
    return b"".join((OK % i if c == 200 else FAIL % c) + b"\r\n" for i, c in enumerate(codes))


def scan_all(data: bytes, pieces: list[bytes]) -> tuple[int, int, dict[str, int], list[str]]:
    s = ReportScanner()
    n = ok = 0
    failed: dict[str, int] = {}
    lines: list[str] = []
    for piece in [*pieces, None]:
        seg = s.feed(piece) if piece is not None else s.finish()
        if seg:
            k, o, f = count_reports(seg)
            n += k
            ok += o
            for code, m in (f or {}).items():
                failed[code] = failed.get(code, 0) + m
            if f:
                lines += failure_lines(seg, 3)
    assert s.partial.strip() == b""
    return n, ok, failed, lines


@pytest.mark.parametrize("seed", SEEDS)
def test_gateway_reports_are_counted_at_any_split(seed: int) -> None:
    rng = random.Random(seed)
    codes = [rng.choice([200] * 8 + [429, 400, 50003]) for _ in range(300)]
    data = gateway_reports(codes)
    n, ok, failed, lines = scan_all(data, splits(data, seed))
    assert n == 300 and ok == codes.count(200)
    assert failed == {str(c): codes.count(c) for c in (429, 400, 50003) if c in codes}
    assert all(json.loads(line)["error_code"] != 200 for line in lines)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sep", [b"", b"\n", b" ", b"\r\n\t"])
def test_other_servers_report_layouts_are_counted_too(seed: int, sep: bytes) -> None:
    """Fields in another order, reports separated by nothing or other whitespace, a string
    holding braces, quotes and non-ASCII text: the general reader."""
    rng = random.Random(seed)
    codes = [rng.choice([200, 200, 200, 40401]) for _ in range(100)]
    reports = []
    for i, c in enumerate(codes):
        if c == 200:
            reports.append({"cluster_id": "c", "topic_name": "t", "error_code": 200, "offset": i})
        else:
            reports.append({"message": 'no "topic" {here} – é\\', "error_code": c})
    data = sep.join(json.dumps(r, ensure_ascii=False).encode() for r in reports)
    n, ok, failed, _ = scan_all(data, splits(data, seed))
    assert (n, ok) == (100, codes.count(200))
    assert failed == ({"40401": codes.count(40401)} if 40401 in codes else {})


def test_a_report_without_an_error_code_counts_as_invalid() -> None:
    n, ok, failed, _ = scan_all(b'{"x":1}\n{"error_code":200,"a":1}\n', [b'{"x":1}\n{"error_code":200,"a":1}\n'])
    assert (n, ok, failed) == (2, 1, {"invalid": 1})


def test_an_answer_that_is_not_reports_is_an_error() -> None:
    with pytest.raises(ReportFormatError):
        ReportScanner().feed(b"<html>oops</html>\n")
