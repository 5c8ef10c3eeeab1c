"""HTTP/1.1 behaviour of the gateway's own server, through real sockets (RFC 9112)."""

from __future__ import annotations

import json
import socket
import time

from support.http import Conn, ProduceStream, build_request


def test_keep_alive_and_pipelined_requests_are_answered_in_order(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    produce = build_request(
        "POST", f"/v3/clusters/c/topics/{topic}/records",
        b'{"value":{"type":"STRING","data":"p1"}}{"value":{"type":"STRING","data":"p2"}}',
        {"Content-Type": "application/json"},
    )
    pipeline = (
        build_request("GET", "/")
        + produce
        + build_request("GET", "/nope")
        + build_request("DELETE", f"/v3/clusters/c/topics/{topic}/records")
        + produce
        + build_request("GET", "/healthz")
    )
    with Conn(gateway.host, gateway.port) as c:
        c.send(pipeline)
        answers = [c.read_response(10) for _ in range(6)]
        # The connection is still usable afterwards.
        c.send(build_request("GET", "/"))
        assert c.read_response(10).body == b"{}"
    assert [a.status for a in answers] == [200, 200, 404, 405, 200, 200]
    assert answers[0].body == b"{}"
    assert answers[2].json() == {"error_code": 404, "message": "HTTP 404 Not Found"}
    assert answers[3].header("allow") == "POST"
    offsets = []
    for a in (answers[1], answers[4]):
        reports = [json.loads(x) for x in a.body.split(b"\r\n") if x]
        assert [r["error_code"] for r in reports] == [200, 200]
        offsets += [r["offset"] for r in reports]
    assert offsets == [0, 1, 2, 3]


def test_connection_close_is_honoured(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(build_request("GET", "/", headers={"Connection": "close"}))
        r = c.read_response(5)
        assert r.status == 200 and r.header("connection") == "close"
        assert c.is_closed_by_peer(5)


def test_http10_keep_alive_is_said_in_the_answer(gateway) -> None:
    """An HTTP/1.0 client keeps the connection only when the answer says so (issue 10, 5)."""
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        first = c.read_response(5)
        assert (first.status, first.header("connection")) == (200, "keep-alive")
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = c.read_response(5)
        assert (second.status, second.body, second.header("connection")) == (200, b"{}", "keep-alive")
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        assert c.read_response(5).header("connection") == "close"
        assert c.is_closed_by_peer(5)


def test_http10_without_keep_alive_closes(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response(5)
        assert r.status == 200
        assert c.is_closed_by_peer(5)


def test_expect_100_continue_then_stream(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 39\r\n\r\n".encode()
        )
        status, _, _ = c.read_head(5)
        assert status == 100  # asked to go on before sending the body
        c.send(b'{"value":{"type":"STRING","data":"ok"}}')
        r = c.read_response(10)
    assert r.status == 200
    assert json.loads(r.body.split(b"\r\n")[0])["error_code"] == 200


def test_expect_100_continue_refused_gets_the_error_and_no_continue(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            b"POST /v3/clusters/c/topics/missing-topic-q/records HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        r = c.read_response(10)
        assert r.status == 404 and r.json()["error_code"] == 40401
        assert c.is_closed_by_peer(5)  # the announced body was never read


def test_chunk_extensions_and_trailers_are_tolerated(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    rec = b'{"value":{"type":"STRING","data":"ext"}}'
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%X;name=value;q=\"a b\"\r\n%s\r\n" % (len(rec), rec)
            + b"0\r\nX-Trailer: yes\r\n\r\n"
        )
        r = c.read_response(10)
        assert r.status == 200
        assert json.loads(r.body.split(b"\r\n")[0])["error_code"] == 200
        c.send(build_request("GET", "/"))
        assert c.read_response(5).status == 200


def test_malformed_request_is_400_and_closes(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        r = c.read_response(5)
        assert r.status == 400 and r.json()["error_code"] == 400
        assert c.is_closed_by_peer(5)


def test_bad_chunk_framing_mid_stream_ends_the_stream(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    rec = b'{"value":{"type":"STRING","data":"ok"}}'
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n" % (len(rec), rec)
            + b"zz\r\n"
        )
        r = c.read_response(10)
        assert r.status == 200
        reports = [json.loads(x) for x in r.body.split(b"\r\n") if x]
        # The accepted record still gets its report before the response ends.
        assert reports[0]["error_code"] == 200
        assert c.is_closed_by_peer(5)


def test_long_request_line_is_414_and_big_head_is_431(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response(5).status == 414
    with Conn(gateway.host, gateway.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n")
        assert c.read_response(5).status == 431


def test_header_timeout_and_idle_timeout(gateway_factory) -> None:
    g = gateway_factory("--header-timeout", "1", "--idle-timeout", "1")
    with Conn(g.host, g.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished: slowloris
        r = c.read_response(5)
        assert r.status == 408
        assert c.is_closed_by_peer(5)
    with Conn(g.host, g.port) as c:
        c.send(build_request("GET", "/"))
        assert c.read_response(5).status == 200
        t0 = time.monotonic()
        assert c.is_closed_by_peer(6)  # idle keep-alive connection closed by the server
        assert time.monotonic() - t0 < 5


def test_many_connections_each_served(gateway) -> None:
    socks = [socket.create_connection((gateway.host, gateway.port), timeout=10) for _ in range(200)]
    try:
        for s in socks:
            s.sendall(build_request("GET", "/healthz"))
        for s in socks:
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = s.recv(4096)
                assert chunk
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for s in socks:
            s.close()


def test_error_before_an_unread_body_is_answered_and_the_rest_drained(gateway) -> None:
    with Conn(gateway.host, gateway.port) as c:
        c.send(build_request("POST", "/no/such/path", b"x" * 100_000, {"Content-Type": "application/json"}))
        r = c.read_response(5)
        assert r.status == 404 and r.header("connection") == "close"
        assert c.is_closed_by_peer(5)
    with Conn(gateway.host, gateway.port) as c:
        c.send(build_request("PUT", "/", b"abc"))
        r = c.read_response(5)
        assert r.status == 405 and r.header("allow") == "GET"


def test_half_closed_client_gets_every_answer(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    rec = b'{"value":{"type":"STRING","data":"half"}}'
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            build_request("GET", "/topics")
            + build_request("POST", f"/v3/clusters/c/topics/{topic}/records", rec * 3000,
                            {"Content-Type": "application/json"})
            + build_request("GET", "/healthz")
        )
        c.sock.shutdown(socket.SHUT_WR)  # like `nc -N`: everything is sent, then EOF
        first = c.read_response(10)
        produced = c.read_response(30)
        last = c.read_response(10)
        assert c.is_closed_by_peer(5)
    assert first.status == 200 and topic in first.json()
    reports = [json.loads(x) for x in produced.body.split(b"\r\n") if x]
    assert len(reports) == 3000 and all(r["error_code"] == 200 for r in reports)
    assert last.status == 200


def test_body_cut_short_by_half_close(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    rec = b'{"value":{"type":"STRING","data":"cut"}}'
    with Conn(gateway.host, gateway.port) as c:
        c.send(
            f"POST /v3/clusters/c/topics/{topic}/records HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"%x\r\n%s\r\n" % (len(rec) * 2 + 5, rec * 2 + rec[:5])
        )
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response(10)  # the client can still read: the response ends properly
        assert c.is_closed_by_peer(5)
    reports = [json.loads(x) for x in r.body.split(b"\r\n") if x]
    assert [x["error_code"] for x in reports] == [200, 200, 400]
    assert reports[2]["message"] == (
        "the client closed its side of the connection before the last chunk of the body: "
        f"reading stopped at byte {len(rec) * 2 + 5} of the records sent; the records after "
        "this report were not read, send them again"
    )


def test_an_idle_stream_ends_with_a_last_408_report(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--stream-idle-timeout", "1")
    topic = topic_factory(1)
    rec = b'{"value":{"type":"STRING","data":"idle"}}'
    with ProduceStream(g.host, g.port, topic) as s:
        s.send(rec * 3 + rec[:7])
        assert [r["error_code"] for r in s.read_reports(3, timeout=10)] == [200] * 3
        reports = s.read_rest(10)  # nothing more is sent: the gateway ends the stream
        assert s.conn.is_closed_by_peer(5)
    assert reports == [{
        "error_code": 408,
        "message": "the client sent nothing of the body for 1 s (--stream-idle-timeout): reading "
                   f"stopped at byte {len(rec) * 3 + 7} of the records sent; the records after "
                   "this report were not read, send them again",
    }]
    deadline = time.monotonic() + 10  # (the access log is written in batches)
    while not (lines := [x for x in g.log().splitlines() if f'/topics/{topic}/records" ' in x]):
        assert time.monotonic() < deadline, "no access-log line for the stream"
        time.sleep(0.05)
    assert f'/topics/{topic}/records" 408 ' in lines[0], lines
