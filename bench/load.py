"""The benchmarks' streaming load: the load generator's engine (gateway.loadgen, the engine of
``kafka-gateway loadgen``) called in-process as a library, so that there is one load generator
in the repository.

``run_stream`` runs one v3 produce stream of the loadgen's stream mode (docs/api.md §1: one
chunked ``POST /v3/clusters/{c}/topics/{t}/records`` per connection, the delivery reports read
on the same connection while it writes) over ONE connection, without a warm-up of its own
(``--warmup 0``: the benchmarks warm the gateway up with a run of their own, ``warm_up``),
records without a key and with a BINARY value of ``value_bytes`` bytes, like the baselines'
(bench.baseline sends no key either). Closed loop (``records``): as fast as the gateway answers,
at most ``STREAM_WINDOW`` records in flight, four times the gateway's default
``--max-in-flight`` (16,384 per connection), so that, as with the generator the benchmarks had
before, it is the gateway's own limit that bounds the stream, not the client. Open loop
(``rate``): the loadgen's schedule (a 1 ms tick), latency from each record's intended send time.

Around the loadgen's own figures (gateway.loadgen.stats.Result), the stream's client
(``WatchedStreamClient``, the loadgen's ``StreamClient``) notes when the response head, the
first report and the end of the body came, the longest gap between two reports, and checks the
content of about one report in SAMPLE_EVERY (topic, partition, offsets increasing per
partition, value size, no key; or, for a spooling gateway, the 202 "spooled" form), and counts
reports of the other success code (a 202 where a 200 is expected, and the reverse): the loadgen
counts both as acknowledged.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import BenchError
from gateway.loadgen.engine import Engine, Settings
from gateway.loadgen.http import Target, TargetUnusable
from gateway.loadgen.modes import CHUNK_BYTES, StreamClient
from gateway.loadgen.net import now_us
from gateway.loadgen.records import RecordSource
from gateway.loadgen.stats import Result, Sample

STREAM_WINDOW = 65536  # records in flight at most: 4x the gateway's default --max-in-flight
SAMPLE_EVERY = 1000  # about one report in this many is decoded and checked
OK_MARK = b'{"error_code":200,'
SPOOLED_MARK = b'{"error_code":202,'
MAX_PROBLEMS = 5
SERIES_EVERY_US = 100_000


@dataclass
class ReportWatch:
    """What the stream's client notes of one run (times in µs on the loadgen's clock,
    CLOCK_REALTIME, those of reads the kernel's receive timestamps) and its report checks."""

    topic: str
    partitions: int
    value_size: int
    spooled: bool = False  # every report must be a 202 "spooled" one, not a 200
    head_at: float = 0.0  # the response head arrived
    first_report_at: float = 0.0
    last_report_at: float = 0.0
    max_gap_us: float = 0.0  # longest time between two reads that brought reports
    send_done_at: float = 0.0  # the body's last chunk was written
    reports: int = 0
    sampled: int = 0
    other_kind: int = 0  # 202 reports where 200 is expected, or the reverse
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    last_offset: dict[int, int] = field(default_factory=dict)
    #: (arrival µs, reports so far) every SERIES_EVERY_US at most: the plots' throughput
    #: (finer than the loadgen's 1 s samples, for runs of under a second)
    points: list[tuple[float, int]] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    def on_reports(self, seg: bytes, n: int, ts: float) -> None:
        if self.first_report_at:
            gap = ts - self.last_report_at
            if gap > self.max_gap_us:
                self.max_gap_us = gap
        else:
            self.first_report_at = ts
        self.last_report_at = ts
        self.other_kind += seg.count(OK_MARK if self.spooled else SPOOLED_MARK)
        before = self.reports
        self.reports += n
        if not self.points or ts - self.points[-1][0] >= SERIES_EVERY_US:
            self.points.append((ts, self.reports))
        # The first report of the block, when the block crosses a multiple of SAMPLE_EVERY: one
        # json.loads per SAMPLE_EVERY reports at most.
        if before // SAMPLE_EVERY != self.reports // SAMPLE_EVERY or not before:
            self.check(before, seg[: seg.find(b"\n") + 1])

    def check(self, index: int, line: bytes) -> None:
        self.sampled += 1
        try:
            rep = json.loads(line)
        except ValueError as exc:
            self.problem(f"report #{index} is not JSON ({exc}): {line[:200]!r}")
            return
        code = rep.get("error_code")
        if code not in (200, 202):
            return  # a failure: the loadgen counts it
        if self.spooled:
            if code != 202 or set(rep) != {"error_code", "message"} or not str(
                    rep["message"]).startswith("spooled:"):
                self.problem(f"report #{index}: not a spooled report: {line[:300]!r}")
            return
        part, off = rep.get("partition_id"), rep.get("offset")
        wrong = []
        if code != 200:
            wrong.append("error_code")
        if rep.get("topic_name") != self.topic:
            wrong.append("topic_name")
        if not (isinstance(part, int) and 0 <= part < self.partitions):
            wrong.append("partition_id")
        if not isinstance(off, int) or off < 0:
            wrong.append("offset")
        elif isinstance(part, int):
            prev = self.last_offset.get(part)
            if prev is not None and off <= prev:
                wrong.append(f"offset not increasing on partition {part} ({prev} then {off})")
            self.last_offset[part] = off
        if rep.get("value") != {"type": "BINARY", "size": self.value_size}:
            wrong.append("value")
        if "key" in rep:
            wrong.append("key (the request had none)")
        if wrong:
            self.problem(f"report #{index}: wrong {', '.join(wrong)}: {line[:300]!r}")


class WatchedStreamClient(StreamClient):
    """The loadgen's stream client, telling a ReportWatch what it reads."""

    def __init__(self, engine: Engine, index: int, source: RecordSource, per_chunk: int,
                 watch: ReportWatch) -> None:
        super().__init__(engine, index, source, per_chunk)
        self.watch = watch

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        super().on_head(status, headers)
        if not self.watch.head_at:
            self.watch.head_at = self.arrival  # (the kernel's time of the read carrying it)

    def reports(self, seg: bytes, ts: float) -> None:
        n = min(self.scanner.counts[0], self.in_flight)
        super().reports(seg, ts)
        if n:
            self.watch.on_reports(seg, n, ts)

    def pump(self, now: float) -> None:
        super().pump(now)
        if self.ending and not self.watch.send_done_at:
            self.watch.send_done_at = now_us()


@dataclass
class StreamRun:
    """One loadgen run and what the bench measured around it."""

    result: Result
    watch: ReportWatch
    t_start: float  # time.perf_counter() when the measured run began (the engine's hook)
    t_end: float  # time.perf_counter() when run() returned
    measure_start_us: float  # the same moment on the loadgen's clock
    stalled: bool

    @property
    def failures(self) -> int:
        return self.result.failures

    def failure_text(self) -> str:
        r = self.result
        return (f"{r.failures:,} of {r.sent:,} records failed (by code: {r.failed})"
                + (f"; first: {r.errors[:3]}" if r.errors else ""))

    def ms_after_start(self, at_us: float) -> float | None:
        return (at_us - self.measure_start_us) / 1000 if at_us else None


def run_stream(
    port: int, cluster_id: str, topic: str, *, value_bytes: int, partitions: int,
    records: int | None = None, duration: float | None = None, rate: float | None = None,
    timeout: float = 120.0, stall_timeout: float = 30.0, spooled: bool = False,
    on_start: Callable[[], None] | None = None, latency_from: str = "intended",
) -> StreamRun:
    """One loadgen stream run on one connection (see the module's doc): closed loop bounded by
    ``records`` (and by ``timeout`` seconds), or open loop at ``rate`` records/s for
    ``duration`` seconds. ``on_start`` is called when the measured run begins, right before the
    first record is sent. A run in which no report arrives for ``stall_timeout`` s (0: no
    limit) is stopped, its outstanding records failing as "unanswered". Failed records do not
    raise: the caller looks at ``result.failures`` (``require_all_acked``). ``latency_from``:
    the loadgen's option of that name (open loop)."""
    settings = Settings(
        mode="stream", topic=topic, records=records,
        duration=duration if duration is not None else timeout, connections=1, batch=1,
        record_bytes=value_bytes, keys=0, rate=rate, window=STREAM_WINDOW, warmup=0.0,
        drain_timeout=stall_timeout or timeout, cluster_id=cluster_id, group="bench",
        latency_from=latency_from,
    )
    watch = ReportWatch(topic, partitions, value_bytes, spooled)
    marks: dict[str, float] = {}
    stall = {"acked": -1, "since": time.monotonic(), "stalled": False}
    engine: Engine | None = None

    def measure_start() -> None:
        if on_start is not None:
            on_start()
        marks["t_start"] = time.perf_counter()

    def on_sample(sample: Sample) -> None:
        done = sample.acked + sample.failures
        now = time.monotonic()
        if done != stall["acked"]:
            stall.update(acked=done, since=now)
        elif stall_timeout and sample.in_flight and now - stall["since"] > stall_timeout:
            stall["stalled"] = True
            assert engine is not None
            engine.interrupt()

    def make_clients(eng: Engine) -> list[Any]:
        s = eng.settings
        per_chunk = max(1, CHUNK_BYTES // RecordSource("v3", s.record_bytes, s.keys, 1).record_len)
        source = RecordSource("v3", s.record_bytes, s.keys, per_chunk)
        return [WatchedStreamClient(eng, i, source, per_chunk, watch) for i in range(s.connections)]

    target = Target.parse(f"http://127.0.0.1:{port}", None, None, False)
    engine = Engine(settings, target, make_clients, on_sample, measure_start)
    try:
        result = engine.run()
    except TargetUnusable as exc:
        raise BenchError(f"the load generator could not use the gateway: {exc}") from None
    t_end = time.perf_counter()
    return StreamRun(result, watch, marks.get("t_start", t_end), t_end, engine.measure_start,
                     bool(stall["stalled"]))


def require_all_acked(run: StreamRun, expected: int | None, what: str) -> None:
    """A BenchError unless every record was acknowledged (and, when given, ``expected`` of
    them) and the sampled reports were right."""
    r = run.result
    if run.stalled:
        raise BenchError(f"{what}: stalled, no report for the --stall-timeout; "
                         f"{r.acked:,} records acknowledged, {run.failure_text()}")
    if r.failures:
        raise BenchError(f"{what}: {run.failure_text()}")
    if expected is not None and r.acked != expected:
        raise BenchError(f"{what}: {r.acked:,} of {expected:,} records acknowledged in "
                         f"{r.duration_s:.0f} s (timed out?)")
    w = run.watch
    if w.other_kind:
        want, other = ("202", "200") if w.spooled else ("200", "202")
        raise BenchError(f"{what}: {w.other_kind:,} reports are {other}, not {want}")
    if w.problem_count:
        raise BenchError(f"{what}: {w.problem_count} sampled reports are wrong: {w.problems}")


def warm_up(port: int, cluster_id: str, topic: str, args: argparse.Namespace,
            spooled: bool = False) -> float:
    """A small stream first (``--warmup`` records: connection, producer id, metadata, code
    paths), every record of which must be acknowledged; a gateway that answers 503 (no Kafka
    metadata yet) is retried for up to ``--timeout`` s. Seconds it took."""
    n = max(1, args.warmup)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    while True:
        run = run_stream(port, cluster_id, topic, value_bytes=args.value_bytes,
                         partitions=args.partitions, records=n,
                         timeout=max(1.0, deadline - time.monotonic()),
                         stall_timeout=args.stall_timeout, spooled=spooled)
        codes = set(run.result.failed)
        if codes and all(c.startswith("503") for c in codes) and time.monotonic() < deadline:
            time.sleep(0.2)
            continue
        require_all_acked(run, n, "warm-up")
        return time.monotonic() - t0


def watch_series(label: str, run: StreamRun) -> dict[str, Any]:
    """Reports/s between the watch's points (every 0.1 s), seconds from the run's start, for
    the throughput plot."""
    w = run.watch
    points = list(w.points)
    if points and points[-1][1] != w.reports:  # the last report, when it made no point
        points.append((w.last_report_at, w.reports))
    pts = [((t - run.measure_start_us) / 1e6, n) for t, n in points]
    pairs = [(a, b) for a, b in zip([(0.0, 0), *pts], pts, strict=False) if b[0] - a[0] > 0.01]
    return {"label": label, "unit": "records/s", "t": [round(b[0], 3) for _, b in pairs],
            "rate": [round((b[1] - a[1]) / (b[0] - a[0]), 1) for a, b in pairs]}


def rate_series(label: str, samples: list[Sample]) -> dict[str, Any]:
    """Acknowledged records/s per sample interval (about 1 s), for the throughput plot. (The
    run's last sample may come right after another: an interval under half a second is
    merged into the one before it.)"""
    points = [(0.0, 0)]
    for s in samples:
        if s.t <= points[-1][0]:
            continue
        if s.t - points[-1][0] < 0.5 and len(points) > 1:
            points[-1] = (s.t, s.acked)
        else:
            points.append((s.t, s.acked))
    pairs = list(zip(points, points[1:], strict=False))
    return {"label": label, "unit": "records/s", "t": [b[0] for _, b in pairs],
            "rate": [round((b[1] - a[1]) / (b[0] - a[0]), 1) for a, b in pairs]}
