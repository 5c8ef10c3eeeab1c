"""``GET /metrics``: the gateway's counters in Prometheus text format (prometheus_client).

Nothing is counted through the library on the hot path: the gateway keeps its own plain
counters (``gateway.stats``, folded at batch boundaries) and ``GatewayCollector`` turns them,
and gauges read off the live state (connections, streams, librdkafka), into metric families
when a scraper asks. Each process of ``--workers`` serves its own numbers; every sample carries
the worker slot as the label ``worker`` (``"0"`` without ``--workers``). README.md, "Metrics
and health", lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway.http.flow import REASON_NAMES
from gateway.log import dropped_access_lines

if TYPE_CHECKING:
    from gateway.api.context import ApiContext
from gateway.produce.edge import Spooler

LATENCY_HELP = (
    "Seconds from a record being handed to librdkafka to its delivery report being written to "
    "the client. Sampled, so that nothing is measured per record: a v3 stream contributes one "
    "record per body piece (the last one read from it), with at most one sample outstanding "
    "per stream; a request answered as a whole (v3 records:batch, v1, v2) contributes one "
    "sample, from its first record handed to Kafka to its answer."
)


def _float_le(bound: float) -> str:
    return repr(float(bound))


def _one(family: CounterMetricFamily | GaugeMetricFamily, worker: str, value: float) -> Metric:
    family.add_metric((worker,), value)
    return family


class GatewayCollector(Collector):
    """Reads the gateway's own counters and state at scrape time (on the event-loop thread)."""

    def __init__(self, ctx: ApiContext, readiness: Callable[[], str | None], worker: str) -> None:
        self._ctx = ctx
        self._readiness = readiness
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        ctx = self._ctx
        w = self._worker
        stats = ctx.stats
        http = ctx.http_stats
        topics = sorted(stats.topics.items())

        accepted = CounterMetricFamily(
            "gateway_records_accepted",
            "Records handed to librdkafka (produce() took them), by topic.",
            labels=("worker", "topic"),
        )
        delivered = CounterMetricFamily(
            "gateway_records_delivered",
            "Records Kafka acknowledged (a 200 report, or an offsets entry), by topic.",
            labels=("worker", "topic"),
        )
        failed = CounterMetricFamily(
            "gateway_records_failed",
            "Records that got a failure report (or a failed entry), by topic and the "
            "error_code the client saw: 400 bad record, 40402 unknown partition, 413 too "
            "large, 50002 Kafka error, 50003 retriable (the client may resend), ...",
            labels=("worker", "topic", "error_code"),
        )
        dropped = CounterMetricFamily(
            "gateway_records_dropped",
            "Records read from a request that were never handed to Kafka because the client "
            "disconnected while they waited for room (no report could be written).",
            labels=("worker", "topic"),
        )
        body_bytes = CounterMetricFamily(
            "gateway_produce_request_bytes",
            "Request body bytes received by produce requests (v3 streams, v3 batches, v1/v2), "
            "after chunked decoding, by topic.",
            labels=("worker", "topic"),
        )
        streams = CounterMetricFamily(
            "gateway_streams",
            "v3 produce streams started, by topic.",
            labels=("worker", "topic"),
        )
        for name, tc in topics:
            accepted.add_metric((w, name), tc.accepted)
            delivered.add_metric((w, name), tc.delivered)
            for code, n in sorted(tc.failed.items()):
                failed.add_metric((w, name, str(code)), n)
            dropped.add_metric((w, name), tc.dropped)
            body_bytes.add_metric((w, name), tc.bytes_in)
            streams.add_metric((w, name), tc.streams)
        yield from (accepted, delivered, failed, dropped, body_bytes, streams)

        latency = HistogramMetricFamily(
            "gateway_report_latency_seconds", LATENCY_HELP, labels=("worker", "api")
        )
        for api, h in sorted(stats.latency.items()):
            buckets: list[tuple[str, float]] = []
            cumulative = 0
            for bound, n in zip(h.bounds, h.counts, strict=False):
                cumulative += n
                buckets.append((_float_le(bound), cumulative))
            buckets.append(("+Inf", h.count))
            latency.add_metric((w, api), buckets, h.total)
        yield latency

        requests = CounterMetricFamily(
            "gateway_http_requests",
            "HTTP requests answered, by endpoint and status (a v3 stream counts when it ends, "
            "under its last report's status when cut short; 499: the client left before its "
            "answer; 500: a fault of the gateway).",
            labels=("worker", "endpoint", "status"),
        )
        for (endpoint, status), n in sorted(http.requests.items()):
            requests.add_metric((w, endpoint, str(status)), n)
        yield requests
        yield _one(CounterMetricFamily(
            "gateway_http_received_bytes", "Bytes read from client connections.",
            labels=("worker",)
        ), w, http.received_bytes)
        yield _one(CounterMetricFamily(
            "gateway_http_sent_bytes", "Bytes written to client connections.", labels=("worker",)
        ), w, http.sent_bytes)
        yield _one(CounterMetricFamily(
            "gateway_connections", "Client connections accepted.", labels=("worker",)
        ), w, http.connections)

        # -- gauges: the live state --------------------------------------------------------
        # (Not the hand-off connections between --workers processes: gateway.server.)
        conns = [c for c in ctx.connections if not getattr(c, "internal", False)]
        yield _one(GaugeMetricFamily(
            "gateway_open_connections", "Client connections open now.", labels=("worker",)
        ), w, len(conns))
        yield _one(GaugeMetricFamily(
            "gateway_open_streams",
            "v3 produce streams whose last report is not written yet (a stream whose client "
            "left stays open until its records have their outcome).",
            labels=("worker",),
        ), w, len(stats.live_streams))
        paused = GaugeMetricFamily(
            "gateway_paused_connections",
            "Connections not reading now, by reason (a connection paused for several reasons "
            "counts under each): write = the client does not read its responses, buffer = read "
            "buffer full, waiting = a request waits for metadata or its answer, stopped = "
            "reading ended for good, in-flight = --max-in-flight reports outstanding, "
            "kafka-queue = librdkafka's queue is full.",
            labels=("worker", "reason"),
        )
        by_reason = dict.fromkeys(REASON_NAMES, 0)
        for conn in conns:
            mask = conn.paused_reasons
            if mask:
                for bit in by_reason:
                    if mask & bit:
                        by_reason[bit] += 1
        for bit, n in by_reason.items():
            paused.add_metric((w, REASON_NAMES[bit]), n)
        yield paused
        in_flight = sum(s.in_flight() for s in stats.live_streams) + sum(
            r.in_flight() for r in stats.live_requests
        )
        yield _one(GaugeMetricFamily(
            "gateway_in_flight_records",
            "Records read from requests whose outcome has not reached the client yet (in "
            "librdkafka, waiting for room, or reported but behind an earlier record).",
            labels=("worker",),
        ), w, in_flight)

        # -- Kafka ------------------------------------------------------------------------
        producer = ctx.producer
        yield _one(GaugeMetricFamily(
            "gateway_kafka_queue_messages",
            "Messages (and requests) librdkafka holds for the gateway's producer: len(producer).",
            labels=("worker",),
        ), w, producer.outstanding())
        if producer.queued_bytes is not None:
            yield _one(GaugeMetricFamily(
                "gateway_kafka_queue_bytes",
                "Bytes of the messages in librdkafka's producer queues (statistics msg_size, "
                "as of gateway_kafka_stats_age_seconds ago).",
                labels=("worker",),
            ), w, producer.queued_bytes)
        brokers = producer.brokers
        if brokers is not None:
            up = GaugeMetricFamily(
                "gateway_kafka_broker_up",
                "1 when librdkafka's connection to the broker is UP (else it is DOWN, or "
                "connecting), from its statistics (--kafka-stats-interval); before any broker "
                "is learned, the bootstrap addresses (node_id -1).",
                labels=("worker", "broker", "node_id"),
            )
            rtt = GaugeMetricFamily(
                "gateway_kafka_broker_rtt_seconds",
                "Average request round trip to the broker over the last statistics interval.",
                labels=("worker", "broker", "node_id"),
            )
            for b in sorted(brokers.values()):
                up.add_metric((w, b.address, str(b.node_id)), 1 if b.state == "UP" else 0)
                rtt.add_metric((w, b.address, str(b.node_id)), b.rtt_avg_s)
            yield up
            yield rtt
            yield _one(GaugeMetricFamily(
                "gateway_kafka_stats_age_seconds",
                "Seconds since librdkafka's latest statistics.",
                labels=("worker",),
            ), w, time.monotonic() - producer.stats_at)
        yield _one(CounterMetricFamily(
            "gateway_kafka_producer_replacements",
            "Producers replaced after a fatal error (their records were failed with 50003).",
            labels=("worker",),
        ), w, producer.fatal_errors)
        instances = ctx.instances
        if instances is not None:
            yield _one(GaugeMetricFamily(
                "gateway_consumer_instances",
                "Consumer instances open now (at most --max-consumer-instances).",
                labels=("worker",),
            ), w, len(instances))
            yield _one(CounterMetricFamily(
                "gateway_consumer_records_consumed",
                "Records handed to clients of consumer instances (GET .../records and the v1 "
                "instance read).",
                labels=("worker",),
            ), w, instances.records_consumed)
            yield _one(CounterMetricFamily(
                "gateway_consumer_instances_expired",
                "Consumer instances closed after --consumer-instance-timeout idle.",
                labels=("worker",),
            ), w, instances.expired)
        info = ctx.metadata.info
        if info is not None:
            yield _one(GaugeMetricFamily(
                "gateway_kafka_metadata_age_seconds",
                "Seconds since the cluster metadata was last fetched successfully.",
                labels=("worker",),
            ), w, time.monotonic() - info.fetched_at)
            yield _one(GaugeMetricFamily(
                "gateway_kafka_brokers", "Brokers in the cluster metadata.", labels=("worker",)
            ), w, len(info.brokers))
        yield _one(GaugeMetricFamily(
            "gateway_ready", "1 when GET /readyz answers 200.", labels=("worker",)
        ), w, 1 if self._readiness() is None else 0)
        yield _one(CounterMetricFamily(
            "gateway_access_log_dropped_lines",
            "Access log lines dropped because stderr did not take them fast enough.",
            labels=("worker",),
        ), w, dropped_access_lines())
        if ctx.spooler is not None:
            yield from self._spool(ctx.spooler, w)
        if ctx.streams is not None:
            st = ctx.streams.stats()
            yield _one(GaugeMetricFamily(
                "gateway_consume_streams",
                "Consume streams open (until their Kafka consumer is closed).",
                labels=("worker",),
            ), w, st["open"])
            for name, help_text, value in (
                ("gateway_consume_streams_opened", "Consume streams opened.", st["opened_total"]),
                ("gateway_consume_stream_records", "Records written to consume streams.",
                 st["records_total"]),
                ("gateway_consume_stream_bytes", "Bytes of records written to consume streams.",
                 st["bytes_total"]),
            ):
                yield _one(CounterMetricFamily(name, help_text, labels=("worker",)), w, value)

    def _spool(self, spooler: Spooler, w: str) -> Iterator[Metric]:
        """The disk spool's families (--spool-dir; README "Edge")."""
        st = spooler.stats()
        fwd = spooler.forwarder
        for kind, name, text, value in (
            (CounterMetricFamily, "gateway_spool_records_spooled",
             "Records appended to the disk spool (reported 202 once durable).",
             st.records_spooled_total),
            (CounterMetricFamily, "gateway_spool_bytes_spooled",
             "Bytes of the records appended to the spool (as stored).", st.bytes_spooled_total),
            (CounterMetricFamily, "gateway_spool_records_forwarded",
             "Spooled records Kafka acknowledged (the forwarder's checkpointed progress).",
             st.records_forwarded_total),
            (CounterMetricFamily, "gateway_spool_records_dropped",
             "Spooled records Kafka refused for good while forwarding (logged), and records "
             "lost to a damaged spool file.",
             (fwd.dropped if fwd is not None else 0) + st.records_lost_total),
            (GaugeMetricFamily, "gateway_spool_records",
             "Records in the spool not yet acknowledged by Kafka.", st.records),
            (GaugeMetricFamily, "gateway_spool_bytes",
             "Bytes the spool holds (segment files and write buffer).", st.bytes),
            (GaugeMetricFamily, "gateway_spool_max_bytes", "--spool-max-bytes.", st.max_bytes),
            (GaugeMetricFamily, "gateway_spool_oldest_age_seconds",
             "Age of the oldest record in the spool (0 when empty).", st.oldest_age_seconds),
            (GaugeMetricFamily, "gateway_spooling",
             "1 while the gateway judges Kafka unreachable and spools every new record.",
             1 if spooler.unreachable is not None else 0),
        ):
            yield _one(kind(name, text, labels=("worker",)), w, value)
        refused = CounterMetricFamily(
            "gateway_spool_refused",
            "Records the spool could not take (reported 50003): full (--spool-max-bytes) or "
            "its write buffer full (busy).",
            labels=("worker", "reason"),
        )
        refused.add_metric((w, "full"), st.refused_full_total)
        refused.add_metric((w, "busy"), st.refused_busy_total)
        yield refused


class _WithWorker(Collector):
    """Another collector's families with the ``worker`` label on every sample."""

    def __init__(self, inner: Collector, worker: str) -> None:
        self._inner = inner
        self._worker = worker

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            family.samples = [
                s._replace(labels={**s.labels, "worker": self._worker}) for s in family.samples
            ]
            yield family


def make_registry(ctx: ApiContext, readiness: Callable[[], str | None]) -> CollectorRegistry:
    """The registry /metrics renders: the gateway's own collector, and the process, platform
    and garbage-collector collectors of prometheus_client, all labelled with the worker."""
    worker = str(ctx.config.worker_slot or 0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(ctx, readiness, worker))
    for inner in (
        ProcessCollector(registry=None),
        PlatformCollector(registry=None),
        GCCollector(registry=CollectorRegistry()),  # (it insists on registering somewhere)
    ):
        registry.register(_WithWorker(inner, worker))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, bytes]:
    """(body, content type) of a scrape: Prometheus text format 0.0.4, or what ``Accept``
    asks for among the formats prometheus_client writes (OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type.encode("ascii")
