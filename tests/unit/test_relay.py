"""One HTTP exchange over a Unix socket (gateway.http.relay): the request as it goes on, and the
answer read whole from servers that answer in every way the relay must handle (a length, no
body, the connection's end, interim answers) or must refuse (chunked, too large, malformed, cut
short, too slow, nobody there). On uvloop, as in the gateway."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway.http import relay
from gateway.http.parser import HttpLimits, parse_head


def head_of(raw: bytes) -> Any:
    parsed = parse_head(bytearray(raw), 0, len(raw), HttpLimits())
    assert parsed is not None
    return parsed[0]


def test_the_request_goes_on_with_its_fields_but_not_this_hops() -> None:
    head = head_of(
        b"POST /consumers/g/instances/i/offsets?async=true HTTP/1.1\r\nHost: gw.example:8082\r\n"
        b"Content-Type: application/vnd.kafka.v2+json\r\nAccept: application/json\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
        b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n"
        b"Authorization: Basic YTpi\r\nX-Secret: s\r\nAccept: text/plain\r\n\r\n"
    )
    out = relay.forward_request(head, b'{"a":1}', drop=("authorization", "x-secret"),
                                add=[("x-added", "v1; principal=al%20ice")])
    assert out == (
        b"POST /consumers/g/instances/i/offsets?async=true HTTP/1.1\r\n"
        b"host: gw.example:8082\r\ncontent-type: application/vnd.kafka.v2+json\r\n"
        b"accept: application/json\r\naccept: text/plain\r\nx-added: v1; principal=al%20ice\r\n"
        b"content-length: 7\r\nconnection: close\r\n\r\n"
        b'{"a":1}'
    )
    # An HTTP/1.0 request without a Host gets one (HTTP/1.1 requires it).
    out = relay.forward_request(head_of(b"GET /x HTTP/1.0\r\n\r\n"), b"")
    assert out == b"GET /x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


_servers: list[asyncio.AbstractServer] = []


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    for server in _servers:  # (uvloop does not close a loop that still serves)
        server.close()
        lp.run_until_complete(server.wait_closed())
    _servers.clear()
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()


class Canned(asyncio.Protocol):
    """A server that reads the request whole (to the blank line and its Content-Length), then
    writes ``answer`` and, with ``close``, ends the connection."""

    def __init__(self, answer: bytes | Callable[[asyncio.Transport], None], close: bool,
                 seen: list[bytes]) -> None:
        self.answer = answer
        self.close = close
        self.seen = seen
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head, sep, body = self.buf.partition(b"\r\n\r\n")
        if not sep:
            return
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        if len(body) < length:
            return
        self.seen.append(self.buf)
        if callable(self.answer):
            self.answer(self.transport)
        else:
            self.transport.write(self.answer)
        if self.close:
            self.transport.close()


def serve(loop: asyncio.AbstractEventLoop, path: str, answer: Any, close: bool = True) -> list[bytes]:
    seen: list[bytes] = []
    _servers.append(loop.run_until_complete(loop.create_unix_server(lambda: Canned(answer, close, seen), path)))
    return seen


def exchange(loop: asyncio.AbstractEventLoop, path: str, *, timeout: float = 5.0,
             max_body: int = 1000, request: bytes = b"GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
             ) -> relay.Answer:
    return loop.run_until_complete(relay.exchange(path, request, timeout=timeout, max_body=max_body))


def test_answers_by_length_without_a_body_and_to_the_end(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    sock = str(tmp_path / "a.sock")
    seen = serve(loop, sock, b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.kafka.v2+json\r\n"
                             b"Content-Length: 5\r\nRetry-After:  3 \r\n\r\nhello", close=False)
    answer = exchange(loop, sock, request=b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    assert (answer.status, answer.body) == (200, b"hello")
    assert answer.header("content-type") == "application/vnd.kafka.v2+json"
    assert answer.header("retry-after") == "3" and answer.header("x-none") is None
    assert seen == [b"POST /p HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"]

    sock = str(tmp_path / "b.sock")
    serve(loop, sock, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: s\r\n\r\n", close=False)
    answer = exchange(loop, sock)
    assert (answer.status, answer.body, answer.headers) == (204, b"", [("server", "s")])

    sock = str(tmp_path / "c.sock")
    serve(loop, sock, b"HTTP/1.0 404 Not Found\r\n\r\nto the end")
    assert exchange(loop, sock) == relay.Answer(404, [], b"to the end")

    sock = str(tmp_path / "d.sock")  # an answer that comes in pieces
    serve(loop, sock, lambda t: [t.write(b) for b in (b"HTTP/1.1 200 OK\r\nContent-", b"Length: 3\r",
                                                      b"\n\r\na", b"bc")], close=False)
    assert exchange(loop, sock).body == b"abc"


@pytest.mark.parametrize(("answer", "close", "message"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True, "a chunked answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n", False, "body of 1001 bytes is over 1000 bytes"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 1001, False, "body is over 1000 bytes"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70_000, False, "head is over 65536 bytes"),
    (b"SPDY 200\r\n\r\n", True, "not an HTTP/1.1 status line"),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", True, "malformed field line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", True, "not one number"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", True, "after 3 of the 10 bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabc", False, "more than the answer's Content-Length"),
    (b"HTTP/1.1 200", True, "closed the connection before its answer"),
])
def test_answers_that_are_refused(loop: asyncio.AbstractEventLoop, tmp_path: Path, answer: bytes,
                                  close: bool, message: str) -> None:
    sock = str(tmp_path / "s.sock")
    serve(loop, sock, answer, close)
    with pytest.raises(relay.RelayFailed, match=message) as failed:
        exchange(loop, sock)
    assert type(failed.value) is relay.RelayFailed


def test_a_server_that_does_not_answer_in_time(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    sock = str(tmp_path / "slow.sock")
    serve(loop, sock, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=False)
    with pytest.raises(relay.RelayTimeout, match=r"no whole answer from .*slow.sock within 0.2 s"):
        exchange(loop, sock, timeout=0.2)


def test_nobody_there(loop: asyncio.AbstractEventLoop, tmp_path: Path) -> None:
    with pytest.raises(relay.Unreachable, match="nothing listens at"):
        exchange(loop, str(tmp_path / "none.sock"))
    # The socket of a process that is gone: the file is there, nobody listens.
    path = str(tmp_path / "gone.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    with pytest.raises(relay.Unreachable):
        exchange(loop, path)
