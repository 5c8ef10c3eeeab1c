"""The gateway's own counters: plain ints and dicts, owned by the event-loop thread.

Nothing here is touched per record. Produce sessions already count their records in plain ints;
they add them to these totals at batch boundaries (once per body piece, once per delivery-report
batch), and failure counts by error code are added where failure reports are built (failures
are rare, so per record there is fine). ``gateway.metrics`` reads all of this at scrape time;
this module imports no metrics library, so the produce path does not either.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Protocol

# Upper bounds (seconds) of the report-latency histogram: from a well-lingered acknowledgement
# (linger.ms=5) to librdkafka's message.timeout.ms (300 s by default).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)


class TopicCounters:
    """Records of one topic, across every produce API."""

    __slots__ = ("accepted", "delivered", "failed", "dropped", "bytes_in", "streams")

    def __init__(self) -> None:
        self.accepted = 0  # handed to librdkafka (produce() took it)
        self.delivered = 0  # acknowledged by Kafka (a 200 report, an offsets entry)
        self.failed: dict[int, int] = {}  # error_code of the failure report -> records
        self.dropped = 0  # parsed, never handed to Kafka: the client left while they waited
        self.bytes_in = 0  # request body bytes of produce requests
        self.streams = 0  # v3 streams started

    def fail(self, error_code: int, n: int = 1) -> None:
        failed = self.failed
        failed[error_code] = failed.get(error_code, 0) + n


class LatencyHistogram:
    """Bucket counts of observed seconds (non-cumulative; the collector makes them cumulative)."""

    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # le semantics: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1


class _TopicTable(dict[str, TopicCounters]):
    """Topic name -> counters, made on first use: ``table[name]`` is one dict lookup on a hit
    (the produce path reads it for every request)."""

    def __missing__(self, name: str) -> TopicCounters:
        tc = self[name] = TopicCounters()
        return tc


class _Histograms(dict[str, "LatencyHistogram"]):
    """API -> report-latency histogram, made on first use (as ``_TopicTable``)."""

    def __missing__(self, api: str) -> LatencyHistogram:
        h = self[api] = LatencyHistogram()
        return h


class InFlight(Protocol):
    def in_flight(self) -> int: ...


class ProduceStats:
    """Totals of the produce path for the whole process (the shutdown summary and the metrics
    read these). ``live_streams`` and ``live_requests`` hold the v3 streams and the requests
    answered as a whole that still wait for delivery reports: the open-streams and in-flight
    gauges are computed from them at scrape time."""

    __slots__ = (
        "records_ok",
        "records_failed",
        "records_dropped_no_client",
        "streams",
        "topics",
        "latency",
        "live_streams",
        "live_requests",
    )

    def __init__(self) -> None:
        self.records_ok = 0
        self.records_failed = 0
        self.records_dropped_no_client = 0  # reports that had no client left to read them
        self.streams = 0
        self.topics: dict[str, TopicCounters] = _TopicTable()
        self.latency: dict[str, LatencyHistogram] = _Histograms()  # by API: v3_stream, v3_batch, v1, v2
        self.live_streams: set[InFlight] = set()
        self.live_requests: set[InFlight] = set()

    def topic(self, name: str) -> TopicCounters:
        return self.topics[name]

    def histogram(self, api: str) -> LatencyHistogram:
        return self.latency[api]


class HttpStats:
    """Connection-level totals (bytes are counted per socket read and per write, never per
    record)."""

    __slots__ = ("received_bytes", "sent_bytes", "connections", "requests")

    def __init__(self) -> None:
        self.received_bytes = 0
        self.sent_bytes = 0
        self.connections = 0  # accepted since start
        self.requests: dict[tuple[str, int], int] = {}  # (endpoint, status) -> responses

    def response(self, endpoint: str, status: int) -> None:
        key = (endpoint, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
