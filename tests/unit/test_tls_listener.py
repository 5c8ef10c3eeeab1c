"""The HTTPS listener (gateway/http/tls_listener.py) on uvloop, in this process, with an echo
protocol in place of the gateway's: TLS clients are served, plain text gets the 400, connections
that send nothing are closed after the first-byte timeout, and connections over the limit are
closed at once and counted; closing the listener closes what it still holds, and nothing leaks."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from support.tls import ThrowawayCA

from gateway.http.tls_listener import TlsListener

pytestmark = pytest.mark.timeout(60)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"echo:" + data)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) for 127.0.0.1."""
    ca = ThrowawayCA(tmp_path_factory.mktemp("ca"))
    issued = ca.issue_server()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(issued.cert), str(issued.key))
    client = ssl.create_default_context(cafile=str(ca.files.cert))
    return server, client


@pytest.fixture
def run() -> Iterator[Callable[[Awaitable[Any]], Any]]:
    loop = uvloop.new_event_loop()
    try:
        yield loop.run_until_complete
    finally:
        loop.close()


async def listening(server_ctx: ssl.SSLContext, **kw: Any) -> tuple[TlsListener, int]:
    listener = TlsListener(
        asyncio.get_running_loop(), Echo, server_ctx,
        first_byte_timeout=kw.pop("first_byte_timeout", 10.0), handshake_timeout=10.0, **kw,
    )
    listener.listen("127.0.0.1", 0, backlog=128, reuse_port=False)
    return listener, listener.sockets[0].getsockname()[1]


async def wait_until(check: Callable[[], bool]) -> None:
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 10 s")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_tls_clients_are_served(run, contexts) -> None:
    server_ctx, client_ctx = contexts

    async def main() -> list[bytes]:
        listener, port = await listening(server_ctx)
        answers = []
        for i in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
            writer.write(b"hello %d" % i)
            answers.append(await reader.readexactly(12))
            writer.close()
        listener.close()
        await listener.wait_closed()
        return answers

    assert run(main()) == [b"echo:hello 0", b"echo:hello 1", b"echo:hello 2"]


@pytest.mark.parametrize(
    "sent",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v3/clusters/c/topics/t/records HTTP/1.1\r\nContent-Length: 40000\r\n\r\n" + b"x" * 40000,
        b"\x00",  # anything that is not a TLS handshake record
    ],
)
def test_anything_but_tls_gets_the_plain_http_answer(run, contexts, sent: bytes) -> None:
    async def main() -> tuple[bytes, TlsListener]:
        listener, port = await listening(contexts[0])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        answer = await reader.read()  # to the end: the listener closes the connection
        writer.close()
        await wait_until(lambda: listener.pending == 0)
        listener.close()
        return answer, listener

    answer, listener = run(main())
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 400 Bad Request"
    assert b"Connection: close" in lines and b"Content-Type: application/json" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert json.loads(body) == {
        "error_code": 400,
        "message": "plain HTTP request sent to the TLS port: use https://",
    }
    assert listener.plain_http_answered == 1


def test_a_connection_that_sends_nothing_is_closed_after_the_first_byte_timeout(run, contexts) -> None:
    async def main() -> tuple[bytes, int]:
        listener, port = await listening(contexts[0], first_byte_timeout=0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: listener.pending == 1)
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        pending = listener.pending
        listener.close()
        return got, pending

    assert run(main()) == (b"", 0)


def test_connections_over_the_limit_are_closed_and_counted(run, contexts) -> None:
    async def main() -> tuple[list[bytes], int, int, list[bytes]]:
        listener, port = await listening(contexts[0], max_pending=2)
        clients = []
        for _ in range(2):
            clients.append(await asyncio.open_connection("127.0.0.1", port))
        await wait_until(lambda: listener.pending == 2)
        over = []
        for _ in range(3):  # no room: each is closed without an answer
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            over.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
        refused, pending = listener.refused_over_limit, listener.pending
        # The two waiting ones still get their answer when they speak.
        answers = []
        for reader, writer in clients:
            writer.write(b"GET / HTTP/1.1\r\n\r\n")
            answers.append((await reader.read())[:24])
            writer.close()
        listener.close()
        return over, refused, pending, answers

    over, refused, pending, answers = run(main())
    assert over == [b"", b"", b""]
    assert (refused, pending) == (3, 2)
    assert answers == [b"HTTP/1.1 400 Bad Request"] * 2


def test_close_closes_waiting_connections_and_nothing_leaks(run, contexts) -> None:
    server_ctx, client_ctx = contexts

    async def main() -> tuple[bytes, int]:
        listener, port = await listening(server_ctx)
        before = None
        for i in range(21):  # served TLS connections and plain ones
            if i == 1:  # after a first round: libuv opens a spare descriptor of its own once
                before = open_fds()
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
            writer.write(b"x")
            await reader.readexactly(6)
            writer.close()
            await writer.wait_closed()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"plain")
            await reader.read()
            writer.close()
            await writer.wait_closed()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: listener.pending == 1)
        listener.close()
        await listener.wait_closed()
        got = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)  # the transports' own closing callbacks
        assert before is not None
        return got, open_fds() - before

    got, grown = run(main())
    assert got == b""
    # The listening socket is closed too: one fewer than before, none left of the clients.
    assert grown == -1


def test_an_address_in_use_is_an_oserror_and_leaves_nothing_open(run, contexts, tmp_path: Path) -> None:
    import errno
    import socket

    async def main() -> tuple[int | None, int]:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            listener = TlsListener(
                asyncio.get_running_loop(), Echo, contexts[0],
                first_byte_timeout=1.0, handshake_timeout=1.0,
            )
            before = open_fds()
            try:
                listener.listen("127.0.0.1", taken.getsockname()[1], backlog=8, reuse_port=False)
            except OSError as exc:
                return exc.errno, open_fds() - before
        return None, 0

    assert run(main()) == (errno.EADDRINUSE, 0)
