"""A minimal uvloop protocol answering every request with one fixed 200: reference B of
bench.requests ("the HTTP part without the gateway").

    python -m bench.fixed200 ANSWER_FILE      (started by bench.requests, not by hand)

It listens on 127.0.0.1 (a free port, printed as ``port N`` on stdout once it listens), reads
keep-alive requests whose body has a ``Content-Length`` (pipelined or split anyhow), and
answers each complete request with the bytes of ANSWER_FILE: the gateway's own answer to the
same request, captured by the bench. No routing, no JSON, no Kafka: one ``find`` for the end of
the head, one for the Content-Length, one ``write`` per read. SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop


class Fixed200(asyncio.Protocol):
    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = answered = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            head = buf[pos:end].lower()
            i = head.find(b"\r\ncontent-length:")
            length = 0
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                length = int(head[i + 17:j if j >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                break
            pos = end + 4 + length
            answered += 1
        self.buf = buf[pos:]
        if answered and self.transport is not None:
            self.transport.write(self.answer * answered if answered > 1 else self.answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(answer: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Fixed200(answer), "127.0.0.1", 0, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as f:
        answer = f.read()
    uvloop.run(serve(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
