"""The gateway's listener: connections, their timeouts, the SIGUSR1 dump and the graceful stop.

``Server`` is the handler the HTTP protocol talks to (gateway.http.protocol's
``ConnectionHandler``): it keeps the set of open connections and hands each request head to the
endpoints (``gateway.api.Api.dispatch``), which get an ``ApiContext`` with what they need.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from gateway.api.context import ApiContext
from gateway.api.dispatch import Api
from gateway.auth.tls import server_context
from gateway.config import Config
from gateway.consume.instances import InstanceRegistry
from gateway.consume.pool import ConsumerPool
from gateway.http.parser import HttpLimits
from gateway.http.protocol import HttpProtocol
from gateway.http.tls_listener import TlsListener
from gateway.kafka.health import ClusterHealth
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.producer import KafkaProducer
from gateway.produce.edge import Spooler

log = logging.getLogger("gateway")

SWEEP_INTERVAL = 1.0
# During shutdown a connection that has sent nothing for this long is closed (one accepted
# then, e.g. a client's spare connection, must not hold the drain to its deadline).
SHUTDOWN_IDLE_TIMEOUT = 1.0


class Server:
    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        producer: KafkaProducer,
        metadata: MetadataCache,
        consumers: ConsumerPool | None = None,
        cluster: ClusterHealth | None = None,
        spooler: Spooler | None = None,
        instances: InstanceRegistry | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.producer = producer
        self.connections: set[HttpProtocol] = set()
        self.ctx = ctx = ApiContext.from_config(config, loop, producer, metadata, consumers,
                                                self.connections, cluster or ClusterHealth(),
                                                spooler, instances)
        self.api = Api(ctx)
        # The ConnectionHandler interface of gateway.http.protocol.
        self.http_limits = HttpLimits()
        self.http_stats = ctx.http_stats
        self.access_log = config.access_log
        self.dispatch = self.api.dispatch
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    # -- listener -----------------------------------------------------------------------
    async def start(self) -> list[tuple[str, int]]:
        host, port = self.config.listen
        tls = server_context(self.config)
        server: asyncio.Server | TlsListener
        if tls is None:
            server = await self.loop.create_server(
                lambda: HttpProtocol(self),
                host,
                port,
                backlog=1024,
                reuse_address=True,
                reuse_port=self.config.worker_slot is not None,  # --workers share the address
            )
        else:
            # Our accept loop: plain HTTP sent to the TLS port gets a 400, not a silent close.
            # The first byte and the handshake are part of sending the request head
            # (slowloris): the protocol and its timeouts only exist once they are done.
            timeout = self.config.header_timeout or None
            server = TlsListener(
                self.loop, lambda: HttpProtocol(self), tls,
                first_byte_timeout=timeout, handshake_timeout=timeout,
            )
            server.listen(host, port, backlog=1024, reuse_port=self.config.worker_slot is not None)
        self._servers.append(server)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        return [s.getsockname()[:2] for s in server.sockets]

    def stop_listening(self) -> None:
        """Close the listening sockets now: no new connection; those accepted go on (a
        --workers worker whose supervisor is gone, gateway.app)."""
        for server in self._servers:
            server.close()

    def connection_opened(self, conn: HttpProtocol) -> None:
        self.connections.add(conn)
        self._idle.clear()
        if self.ctx.closing:
            # The listener stays open while we drain, so that /readyz can say 503 to a load
            # balancer (and a client gets a 503 rather than a refused connection): one
            # request, then the connection closes.
            conn.last_request()

    def connection_closed(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()

    def dump_state(self) -> None:
        """SIGUSR1: log every connection's state (reading paused and why, buffers, stream)."""
        log.info("%d connections; producer holds %d records", len(self.connections), self.producer.outstanding())
        spooler = self.ctx.spooler
        if spooler is not None:
            st = spooler.stats()
            log.info("spool: %s; %d records (%d bytes) in %d segments, oldest %.1f s; %d "
                     "spooled, %d forwarded since start", spooler.unreachable or "not spooling",
                     st.records, st.bytes, st.segments, st.oldest_age_seconds,
                     st.records_spooled_total, st.records_forwarded_total)
        for conn in list(self.connections):
            log.info("connection %s", conn.info())

    def _sweep(self) -> None:
        cfg = self.config
        now = time.monotonic()
        idle = min(cfg.idle_timeout, SHUTDOWN_IDLE_TIMEOUT) if self.ctx.closing else cfg.idle_timeout
        for conn in list(self.connections):
            conn.check_timeouts(now, cfg.header_timeout, idle, cfg.stream_idle_timeout)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    # -- shutdown -------------------------------------------------------------------------
    async def shutdown(self, deadline: float) -> None:
        """Stop taking work (/readyz says 503 from now on), stop reading, let in-flight records
        finish and their reports go out, flush the producer before ``deadline`` (loop time).
        The listener stays open until then: a connection accepted meanwhile gets one answer
        (503 for produce and consume, health, readiness and metrics as usual) and closes."""
        self.ctx.closing = True
        for conn in list(self.connections):
            conn.shutdown()
        # Consumer instances leave their groups meanwhile, one thread each (a read in progress
        # is answered first), within the same deadline.
        instances = self.ctx.instances
        closing = (
            self.loop.create_task(instances.close(max(0.0, deadline - self.loop.time())))
            if instances is not None else None
        )
        purged = await self.producer.drain(deadline)
        if purged:
            log.warning("%d records were failed at the shutdown deadline", purged)
        # Reports are out once the producer has drained; give the sockets until the deadline.
        remaining = max(0.0, deadline - self.loop.time())
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(remaining, 0.5))
        except TimeoutError:
            log.warning("%d connections still open at the deadline: closing them", len(self.connections))
            for conn in list(self.connections):
                conn.abort()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()  # accepted in the last moment: nothing of theirs is in flight
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            await server.wait_closed()
        if closing is not None:
            await closing
        if self.ctx.auth is not None:
            self.ctx.auth.close()

    def summary(self) -> dict[str, Any]:
        s = self.ctx.stats
        return {
            "streams": s.streams,
            "records_ok": s.records_ok,
            "records_failed": s.records_failed,
            "records_dropped_no_client": s.records_dropped_no_client,
        }
