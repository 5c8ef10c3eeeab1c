"""The gateway process: listener, request dispatch, the v3 produce endpoint, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

from gateway import errors, metadata_api
from gateway.auth.acl import ANY, CONSUME, PRODUCE
from gateway.auth.authenticator import RETRY_AFTER, Authenticator
from gateway.auth.tls import cert_principal, server_context
from gateway.config import Config
from gateway.http import routes
from gateway.http.parser import HttpLimits, RequestHead
from gateway.http.protocol import ST_BODY, HttpProtocol
from gateway.http.tls_listener import TlsListener
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.producer import KafkaProducer
from gateway.limits import ConcurrencyLimiter, RateLimiter, RateSettings
from gateway.produce import JsonSplitter
from gateway.produce.batch import BatchRequest
from gateway.produce.session import ProduceSession
from gateway.stats import HttpStats, ProduceStats

log = logging.getLogger("gateway")

NOT_FOUND = errors.NotFound("HTTP 404 Not Found")
_METADATA_READS = frozenset(
    {
        routes.TOPICS,
        routes.TOPIC,
        routes.PARTITIONS,
        routes.PARTITION_OR_CONSUME,
        routes.BROKERS,
        routes.CLUSTERS,
        routes.CLUSTER,
    }
)
METHOD_NOT_ALLOWED = "method_not_allowed"
# What an endpoint needs on its topic when the ACL is on (README "Security"). Listings
# (/topics, /brokers, clusters) need only authentication; /topics lists the allowed topics.
_TOPIC_PERMISSION: dict[str, tuple[int, str]] = {
    routes.PRODUCE_V3: (PRODUCE, "produce to"),
    routes.PRODUCE_V3_BATCH: (PRODUCE, "produce to"),
    routes.PRODUCE_V1: (PRODUCE, "produce to"),
    routes.CONSUME_V1: (CONSUME, "consume from"),
    routes.TOPIC: (ANY, "read the metadata of"),
    routes.PARTITIONS: (ANY, "read the metadata of"),
    routes.PARTITION_OR_CONSUME: (ANY, "read the metadata of"),
}
SWEEP_INTERVAL = 1.0
# During shutdown a connection that has sent nothing for this long is closed (one accepted
# then, e.g. a client's spare connection, must not hold the drain to its deadline).
SHUTDOWN_IDLE_TIMEOUT = 1.0
# /readyz answers from the cached state, and refreshes the cluster metadata (in the background,
# for the next probe) when it is older than this: a lost cluster shows within a probe or two.
READY_METADATA_AGE = 5.0


def _is_json(content_type: str | None) -> bool:
    """``application/json``, optionally with ``charset=utf-8`` (docs/api.md §1)."""
    if content_type is None:
        return False
    media, _, params = content_type.partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        if not param.strip():
            continue
        name, _, value = param.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            return False
    return True


class Server:
    def __init__(
        self,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        producer: KafkaProducer,
        metadata: MetadataCache,
    ) -> None:
        self.config = config
        self.loop = loop
        self.producer = producer
        self.metadata = metadata
        self.http_limits = HttpLimits()
        self.stats = ProduceStats()
        self.http_stats = HttpStats()
        self.access_log = config.access_log
        self.connections: set[HttpProtocol] = set()
        self.consumers: Any = None  # gateway.consume.pool.ConsumerPool, set by gateway.app
        self.auth = Authenticator.from_config(config, loop)  # None: authentication is off
        self.rates = RateLimiter(RateSettings(
            enabled=config.rate_limit_enabled,
            records_per_principal=config.rate_limit_records,
            records_global=config.rate_limit_records_global,
            bytes_per_principal=config.rate_limit_bytes,
            bytes_global=config.rate_limit_bytes_global,
        ))
        self.concurrency = ConcurrencyLimiter(config.max_concurrent)
        self._servers: list[asyncio.AbstractServer] = []
        self._registry: Any = None  # prometheus_client registry (gateway.metrics), from start()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    # -- listener -----------------------------------------------------------------------
    async def start(self) -> list[tuple[str, int]]:
        from gateway.metrics import make_registry  # (prometheus_client: imported once, here)

        self._registry = make_registry(self, self.config.worker_slot)
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

    def connection_opened(self, conn: HttpProtocol) -> None:
        self.connections.add(conn)
        self._idle.clear()
        if self._closing:
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
        for conn in list(self.connections):
            log.info("connection %s", conn.info())

    def _sweep(self) -> None:
        cfg = self.config
        now = time.monotonic()
        idle = min(cfg.idle_timeout, SHUTDOWN_IDLE_TIMEOUT) if self._closing else cfg.idle_timeout
        for conn in list(self.connections):
            conn.check_timeouts(now, cfg.header_timeout, idle, cfg.stream_idle_timeout)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    # -- dispatch -------------------------------------------------------------------------
    def dispatch(self, conn: HttpProtocol, head: RequestHead) -> None:
        endpoint, params, methods = self._resolve(head)
        conn.endpoint = endpoint
        auth = self.auth
        if auth is None or head.path in routes.OPEN_PATHS:
            self._serve(conn, head, endpoint, params, methods)
            return
        # Authentication first, then authorization, both before the endpoint's own checks
        # and before any byte of the body is read (docs/api.md §1: 401 and 403 come first).
        try:
            who = auth.authenticate(head, cert_principal(conn.peer_cert) if auth.cert_auth else None)
        except errors.GatewayError as exc:
            self._refuse(conn, exc)
            return
        if isinstance(who, str):
            self._authorize(conn, head, endpoint, params, methods, who)
            return
        # The password is being verified on a worker thread: read nothing meanwhile.
        conn.defer()
        who.add_done_callback(
            lambda f: self._after_verify(conn, head, endpoint, params, methods, f.result())
        )

    def _after_verify(
        self,
        conn: HttpProtocol,
        head: RequestHead,
        endpoint: str,
        params: dict[str, str],
        methods: dict[str, str] | None,
        outcome: str | errors.GatewayError,
    ) -> None:
        if conn.head is not head or conn.state != ST_BODY:  # the client went away meanwhile
            return
        if isinstance(outcome, errors.GatewayError):
            self._refuse(conn, outcome)
            return
        self._authorize(conn, head, endpoint, params, methods, outcome)

    def _authorize(
        self,
        conn: HttpProtocol,
        head: RequestHead,
        endpoint: str,
        params: dict[str, str],
        methods: dict[str, str] | None,
        principal: str,
    ) -> None:
        conn.principal = principal
        auth = self.auth
        assert auth is not None
        need = _TOPIC_PERMISSION.get(endpoint)
        if need is not None:
            operation, verb = need
            topic = params["topic"]
            if not auth.allows(principal, operation, topic):
                self._refuse(conn, errors.Forbidden(f"{principal} may not {verb} topic {topic}"))
                return
        self._serve(conn, head, endpoint, params, methods)

    def _refuse(self, conn: HttpProtocol, exc: errors.GatewayError) -> None:
        extra = b""
        if isinstance(exc, errors.Unauthorized) and self.auth is not None:
            extra = self.auth.challenge  # RFC 9110 §11.6.1: a 401 names the scheme to use
        elif isinstance(exc, errors.AuthBusy):
            extra = RETRY_AFTER
        conn.respond(exc.status, exc.body(), extra_headers=extra)

    def _resolve(self, head: RequestHead) -> tuple[str, dict[str, str], dict[str, str] | None]:
        """(endpoint, path parameters, the path's methods); NOT_FOUND and METHOD_NOT_ALLOWED
        name the requests answered 404 and 405."""
        found = routes.match(head.path)
        if found is None:
            return routes.NOT_FOUND, {}, None
        methods, params = found
        endpoint = methods.get(head.method)
        if endpoint is None:
            return METHOD_NOT_ALLOWED, params, methods
        if endpoint == routes.PARTITION_OR_CONSUME and "offset" in parse_qs(
            head.query, keep_blank_values=True
        ):
            endpoint = routes.CONSUME_V1
        return endpoint, params, methods

    def _serve(
        self,
        conn: HttpProtocol,
        head: RequestHead,
        endpoint: str,
        params: dict[str, str],
        methods: dict[str, str] | None,
    ) -> None:
        if endpoint == routes.NOT_FOUND:
            conn.respond_error(NOT_FOUND)
        elif endpoint == METHOD_NOT_ALLOWED:
            conn.respond(
                405,
                errors.error_body(405, "HTTP 405 Method Not Allowed"),
                extra_headers=b"Allow: " + ", ".join(methods or ()).encode() + b"\r\n",
            )
        elif endpoint == routes.PRODUCE_V3:
            self.on_produce_v3(conn, head, params["cluster_id"], params["topic"])
        elif endpoint == routes.PRODUCE_V3_BATCH:
            self.on_produce_v3(conn, head, params["cluster_id"], params["topic"], batch=True)
        elif endpoint == routes.PRODUCE_V1:
            from gateway.produce.v1 import on_produce_v1

            on_produce_v1(self, conn, head, params)
        elif endpoint == routes.CONSUME_V1:
            if self._closing:
                conn.respond_error(errors.ShuttingDown("the gateway is shutting down"))
                return
            from gateway.consume.v1 import on_consume_v1

            on_consume_v1(self, conn, head, params)
        elif endpoint in _METADATA_READS:
            self.run_request(conn, self._metadata_read(endpoint, head, params, conn.principal))
        elif endpoint == routes.ROOT:
            conn.respond(200, b"{}")
        elif endpoint == routes.HEALTHZ:
            conn.respond(200, b'{"status":"ok"}')
        elif endpoint == routes.READYZ:
            self.on_readyz(conn)
        elif endpoint == routes.METRICS:
            self.on_metrics(conn, head)
        else:
            conn.respond_error(NOT_FOUND)

    # -- health and metrics (docs/api.md §4) ---------------------------------------------
    def readiness_problem(self) -> str | None:
        """Why /readyz answers 503 (None: ready). Ready means: not shutting down, the producer
        can take records, and the latest metadata refresh reached the cluster."""
        if self._closing:
            return "the gateway is shutting down"
        problem = self.producer.health_problem()
        if problem is not None:
            return problem
        md = self.metadata
        if md.info is None:
            return f"the Kafka cluster cannot be reached: {md.last_error or 'no metadata yet'}"
        if md.last_error is not None:
            return f"the Kafka cluster cannot be reached: the last metadata refresh failed ({md.last_error})"
        return None

    def on_readyz(self, conn: HttpProtocol) -> None:
        problem = self.readiness_problem()
        md = self.metadata
        if not self._closing and (
            md.info is None
            or md.last_error is not None
            or time.monotonic() - md.info.fetched_at > READY_METADATA_AGE
        ):
            # Probes keep the cluster check fresh (shared with topic misses, at most one
            # metadata request per miss_refresh_interval); the answer is for the next probe.
            md.refresh_for_miss()
        if problem is None:
            conn.respond(200, b'{"status":"ready"}')
        elif self._closing:
            conn.respond_error(errors.ShuttingDown(problem))
        else:
            conn.respond_error(errors.KafkaUnavailable(problem))

    def on_metrics(self, conn: HttpProtocol, head: RequestHead) -> None:
        from gateway.metrics import render

        accept = ", ".join(v for n, v in head.headers if n == "accept") or None
        body, content_type = render(self._registry, accept)
        conn.respond(200, body, content_type=content_type)

    def run_request(self, conn: HttpProtocol, work: Coroutine[Any, Any, tuple[bytes, bytes]]) -> None:
        """Answer a request from a coroutine giving (content type, body): one task per request,
        for reads that wait on Kafka. Errors with an HTTP meaning answer as such."""
        conn.defer()
        task = self.loop.create_task(work)

        def done(t: asyncio.Task[tuple[bytes, bytes]]) -> None:
            if conn.state != ST_BODY:
                return  # the client went away
            exc = t.exception() if not t.cancelled() else errors.ShuttingDown("cancelled")
            if exc is None:
                content_type, body = t.result()
                conn.respond(200, body, content_type=content_type)
            elif isinstance(exc, errors.GatewayError):
                conn.respond_error(exc)
            else:
                log.error("request failed", exc_info=exc)
                conn.respond_error(errors.GatewayBug("internal error"))

        task.add_done_callback(done)

    async def _metadata_read(
        self, endpoint: str, head: RequestHead, params: dict[str, str], principal: str | None
    ) -> tuple[bytes, bytes]:
        md = self.metadata
        if endpoint == routes.TOPICS:
            auth = self.auth
            if principal is None or auth is None or auth.acl is None:
                return await metadata_api.list_topics(md)
            # The listing shows the topics the principal has some permission on (as Kafka's
            # own listing shows only the topics a client may describe).
            return await metadata_api.list_topics(
                md, lambda topic: auth.allows(principal, ANY, topic)
            )
        if endpoint == routes.TOPIC:
            return await metadata_api.get_topic(md, params["topic"], self.loop)
        if endpoint == routes.PARTITIONS:
            return await metadata_api.get_partitions(md, params["topic"])
        if endpoint == routes.PARTITION_OR_CONSUME:
            return await metadata_api.get_partition(md, params["topic"], params["partition"])
        if endpoint == routes.BROKERS:
            return await metadata_api.list_brokers(md)
        if endpoint == routes.CLUSTERS:
            return await metadata_api.list_clusters(md, head)
        if endpoint == routes.CLUSTER:
            return await metadata_api.get_cluster(md, head, params["cluster_id"])
        raise errors.GatewayBug(f"no metadata read for {endpoint}")

    # -- v3 produce -----------------------------------------------------------------------
    def on_produce_v3(
        self,
        conn: HttpProtocol,
        head: RequestHead,
        cluster_id: str,
        topic: str,
        *,
        batch: bool = False,
    ) -> None:
        """Checks before the 200 (docs/api.md §1), then the stream (or the batch)."""
        if self._closing:
            conn.respond_error(errors.ShuttingDown("the gateway is shutting down"))
            return
        if head.content_length is None and not head.chunked:
            conn.respond_error(
                errors.LengthRequired("a request body with Content-Length or chunked encoding is required")
            )
            return
        if not _is_json(head.content_type):
            conn.respond_error(
                errors.UnsupportedMediaType(
                    f"Content-Type must be application/json, not {head.content_type or 'missing'}"
                )
            )
            return
        if head.content_length == 0:
            conn.respond_error(errors.EmptyBody("the request body is empty: send one or more records"))
            return
        limit = self.config.held_body_limit() if batch else self.config.max_request_bytes
        if limit and head.content_length is not None and head.content_length > limit:
            conn.respond_error(
                errors.PayloadTooLarge(
                    f"request body of {head.content_length} bytes is over the {limit}-byte limit"
                )
            )
            return
        if self.config.validate_cluster_id:
            info = self.metadata.info
            if info is not None and cluster_id != info.cluster_id:
                conn.respond_error(errors.NotFound(f"cluster {cluster_id} not found"))
                return
        partitions = self.metadata.partitions(topic)
        if partitions is not None:
            self._start_produce(conn, cluster_id, topic, partitions, batch)
            return
        # Unknown topic, or no metadata yet: refresh (shared with concurrent misses), then decide.
        conn.defer()
        fut = self.metadata.refresh_for_miss()
        fut.add_done_callback(lambda _f: self._after_refresh(conn, cluster_id, topic, batch))

    def _after_refresh(self, conn: HttpProtocol, cluster_id: str, topic: str, batch: bool) -> None:
        if conn.head is None or conn.state != ST_BODY:  # the client went away meanwhile
            return
        if self.metadata.info is None:
            conn.respond_error(
                errors.KafkaUnavailable(
                    f"the Kafka cluster cannot be reached: {self.metadata.last_error or 'no metadata'}"
                )
            )
            return
        partitions = self.metadata.partitions(topic)
        if partitions is None:
            conn.respond_error(errors.TopicNotFound(f"topic {topic} not found"))
            return
        self._start_produce(conn, cluster_id, topic, partitions, batch)

    def take_slot(self, conn: HttpProtocol) -> bool:
        """A concurrency slot for a produce stream or request of this connection's principal;
        False (and the 429/42902 answer sent) when the principal has none left."""
        if not self.concurrency.limit:
            return True
        who = conn.limit_principal
        if not self.concurrency.acquire(who):
            conn.respond_error(errors.TooManyRequests(
                f"{who} already has {self.concurrency.limit} produce streams or requests open"
            ))
            return False
        conn.hold_slot(self.concurrency, who)
        return True

    def _start_produce(
        self, conn: HttpProtocol, cluster_id: str, topic: str, partitions: int, batch: bool
    ) -> None:
        cfg = self.config
        if not self.take_slot(conn):
            return
        if batch:
            conn.read_body(
                BatchRequest(
                    conn,
                    self.producer,
                    lambda: JsonSplitter(cfg.max_record_bytes),
                    cluster_id=cluster_id,
                    topic=topic,
                    partitions=partitions,
                    max_entries=cfg.max_batch_entries,
                    max_bytes=cfg.held_body_limit(),
                    stats=self.stats,
                    rates=self.rates,
                    principal=conn.limit_principal,
                )
            )
            return
        session = ProduceSession(
            conn,
            self.producer,
            JsonSplitter(cfg.max_record_bytes),
            cluster_id=cluster_id,
            topic=topic,
            partitions=partitions,
            max_in_flight=cfg.max_in_flight,
            stats=self.stats,
            rates=self.rates,
            principal=conn.limit_principal,
            max_body_bytes=cfg.max_request_bytes,
            max_duration=cfg.stream_max_duration_ms / 1000.0,
        )
        conn.start_stream(session)

    # -- shutdown -------------------------------------------------------------------------
    async def shutdown(self, deadline: float) -> None:
        """Stop taking work (/readyz says 503 from now on), stop reading, let in-flight records
        finish and their reports go out, flush the producer before ``deadline`` (loop time).
        The listener stays open until then: a connection accepted meanwhile gets one answer
        (503 for produce and consume, health, readiness and metrics as usual) and closes."""
        self._closing = True
        for conn in list(self.connections):
            conn.shutdown()
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
                conn._abort()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn._abort()  # accepted in the last moment: nothing of theirs is in flight
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            await server.wait_closed()
        if self.auth is not None:
            self.auth.close()

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "streams": s.streams,
            "records_ok": s.records_ok,
            "records_failed": s.records_failed,
            "records_dropped_no_client": s.records_dropped_no_client,
        }
