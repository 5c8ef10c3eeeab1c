"""A TCP proxy of our own for network faults between the gateway and the broker.

The broker keeps its state through every fault (unlike a killed Tansu with memory storage),
so a test can check afterwards that nothing acknowledged was lost. Start the broker with its
advertised address set to the proxy (``EmbeddedBroker(advertised=proxy.address)``) and point
the gateway's ``--bootstrap-servers`` at the proxy: every Kafka connection then runs through it.

Faults:
- ``reset()``: every open connection is reset (RST to both ends), as a crashed middlebox does.
- ``reject()`` / ``heal()``: reset everything and reset every new connection at once.
- ``blackhole()`` / ``heal()``: bytes stop moving both ways and new connections hang unanswered,
  as when packets are dropped; ``heal()`` lets the held bytes through again (TCP would have
  retransmitted them) on the connections that are still open.
- ``hold_responses()``: requests still reach the broker, its answers are held; a ``reset()``
  then loses them: the broker has written records whose acknowledgement never arrived, and
  the producer sends them again on a new connection.

The proxy runs its own event loop on a daemon thread; the methods are called from the test's
thread. Loopback only.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any

PASS, REJECT, BLACKHOLE = "pass", "reject", "blackhole"


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST: SO_LINGER on with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class _Pair:
    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def reset(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                _rst(w)
        for t in self.tasks:
            t.cancel()


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = port
        self.mode = PASS
        self.connections_accepted = 0
        self.connections_reset = 0
        self._pairs: set[_Pair] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._answers = asyncio.Event()  # cleared: broker-to-client bytes are held
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    # -- control (test thread) -------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def reset(self) -> int:
        """Reset every open connection; returns how many there were."""
        return self._call(self._reset_all())

    def reject(self) -> int:
        """Reset every open connection and every new one until ``heal()``."""
        return self._call(self._set_mode(REJECT))

    def blackhole(self) -> None:
        """Hold every byte, both ways, and leave new connections unanswered until ``heal()``."""
        self._call(self._set_mode(BLACKHOLE))

    def hold_responses(self) -> None:
        """Hold what the broker sends (requests still get through) until ``heal()``."""
        self._loop.call_soon_threadsafe(self._answers.clear)

    def heal(self) -> None:
        self._call(self._set_mode(PASS))

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the proxy (its own loop) ----------------------------------------------------
    async def _start(self) -> None:
        self._flowing.set()
        self._answers.set()
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        # Every connection's task ends here, on this loop (a connection held by a blackhole
        # waits in _accept): none is left pending when the loop closes, and each one's
        # StreamWriter is closed before it, not collected later against a closed loop.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_mode(self, mode: str) -> int:
        self.mode = mode
        n = 0
        if mode == REJECT:
            n = await self._reset_all()
        if mode == BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == PASS:
            self._answers.set()
        return n

    async def _reset_all(self) -> int:
        pairs = list(self._pairs)
        self._pairs.clear()
        for pair in pairs:
            pair.reset()
        self.connections_reset += len(pairs)
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        pair = _Pair(writer)
        if self.mode == REJECT:
            self.connections_reset += 1
            _rst(writer)
            return
        self._pairs.add(pair)
        try:
            await self._flowing.wait()  # a blackholed connect is never answered
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except (OSError, asyncio.CancelledError):
            self._pairs.discard(pair)
            _rst(writer)
            return
        if pair not in self._pairs:  # reset while connecting
            _rst(up_writer)
            return
        pair.upstream = up_writer
        pair.tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer, pair, answers=False)),
            asyncio.ensure_future(self._pump(up_reader, writer, pair, answers=True)),
        ]

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, pair: _Pair, *, answers: bool
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # blackholed: hold this piece, read nothing more
                if answers:
                    await self._answers.wait()
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        # One side closed (or failed): the connection is over, both ways.
        if pair in self._pairs:
            self._pairs.discard(pair)
            for w in (pair.client, pair.upstream):
                if w is not None:
                    w.transport.abort()
            for t in pair.tasks:
                if t is not asyncio.current_task():
                    t.cancel()
