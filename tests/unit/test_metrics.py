"""The metrics path: no work per record, the collector's numbers, the access log handler."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import re
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

import prometheus_client
import pytest
from confluent_kafka import KafkaError
from prometheus_client.parser import text_string_to_metric_families
from support.fake_producer import FakeRdProducer
from test_session import FakeStream, ListSplitter, rec

from gateway import log, stats
from gateway._speedups import AccessLines
from gateway.api import metrics
from gateway.http.flow import PAUSE_WRITE
from gateway.kafka.producer import KafkaProducer
from gateway.log import FORMAT, AccessLogHandler, CachedTimeFormatter
from gateway.produce.items import RecordError
from gateway.produce.session import PAUSE_IN_FLIGHT, ProduceSession
from gateway.stats import LatencyHistogram, ProduceStats


@pytest.fixture
def loop() -> Any:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _pieces(n_records: int, per_piece: int) -> list[list[Any]]:
    """Records in body pieces; every 1000th is a bad record (400), every 2500th names a
    partition the topic does not have (40402)."""
    pieces: list[list[Any]] = []
    for start in range(0, n_records, per_piece):
        items: list[Any] = []
        for i in range(start, min(start + per_piece, n_records)):
            if i % 1000 == 999:
                items.append(RecordError(i, 400, f"record {i} at byte 0: bad"))
            elif i % 2500 == 1:
                items.append(rec(i, partition=9))
            else:
                items.append(rec(i, partition=i % 3))
        pieces.append(items)
    return pieces


def test_metrics_do_no_work_per_record(loop: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 records through a real session and producer poll loop (fake librdkafka): the
    metrics library is never touched, and the gateway's own metric code runs a number of
    times that follows body pieces and delivery batches, not records."""

    def forbidden(*_a: Any, **_k: Any) -> None:
        raise AssertionError("metrics library called on the produce path")

    for cls, method in (
        (prometheus_client.Counter, "inc"),
        (prometheus_client.Gauge, "inc"),
        (prometheus_client.Gauge, "set"),
        (prometheus_client.Histogram, "observe"),
        (metrics.GatewayCollector, "collect"),
    ):
        monkeypatch.setattr(cls, method, forbidden)

    n, per_piece = 10_000, 500
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp._producer
    stream = FakeStream()
    produce_stats = ProduceStats()
    s = ProduceSession(stream, kp, ListSplitter(_pieces(n, per_piece)), cluster_id="c", topic="t",
                       partitions=3, max_in_flight=100_000, stats=produce_stats)

    calls = {"n": 0}
    watched = {stats.__file__, metrics.__file__}

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename in watched:
            calls["n"] += 1

    delivered = 0
    sys.setprofile(profile)
    try:
        for _ in range(n // per_piece):
            s.on_body(memoryview(b"x" * 100))
            # Kafka acknowledges what is queued, one delivery batch per poll.
            queued = len(fake.queued)
            for i in range(delivered, queued):
                if fake.queued[i] is not None:
                    err = KafkaError(KafkaError._MSG_TIMED_OUT) if i == 4321 else None
                    fake.deliver(i, err)
            delivered = queued
            kp.poll_now()
        s.on_body_end()
        kp.poll_now()
    finally:
        sys.setprofile(None)

    reports = stream.reports()
    assert len(reports) == n and stream.ended
    bad, unknown_partition = n // 1000, len(range(1, n, 2500))
    tc = produce_stats.topics["t"]
    assert tc.accepted == n - bad - unknown_partition
    assert tc.delivered == tc.accepted - 1
    assert tc.failed == {400: bad, 40402: unknown_partition, 50003: 1}
    assert tc.bytes_in == 100 * (n // per_piece)
    assert tc.streams == 1 and not produce_stats.live_streams
    pieces = n // per_piece
    h = produce_stats.latency["v3_stream"]
    assert 1 <= h.count <= pieces  # sampled: at most one record per body piece
    # Metric code that runs per record would make at least n calls; what runs is the failure
    # counting (rare records) and one fold per piece and per delivery batch.
    failures = bad + unknown_partition + 1
    assert calls["n"] <= failures + 4 * pieces + 10, calls


def test_collector_reads_live_state_at_scrape_time(loop: Any) -> None:
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp._producer
    produce_stats = ProduceStats()
    stream = FakeStream()
    s = ProduceSession(stream, kp, ListSplitter([[rec(i) for i in range(7)]]), cluster_id="c",
                       topic="t", partitions=1, max_in_flight=100, stats=produce_stats)
    conns = [SimpleNamespace(paused_reasons=PAUSE_WRITE | PAUSE_IN_FLIGHT),
             SimpleNamespace(paused_reasons=PAUSE_WRITE), SimpleNamespace(paused_reasons=0),
             # A --workers hand-off connection (gateway.server) is not a client's.
             SimpleNamespace(paused_reasons=PAUSE_WRITE, internal=True)]
    ctx = SimpleNamespace(
        stats=produce_stats,
        http_stats=stats.HttpStats(),
        connections=conns,
        producer=kp,
        metadata=SimpleNamespace(info=None),
        spooler=None,
        streams=None,
        instances=None,
        config=SimpleNamespace(worker_slot=3),
    )
    registry = metrics.make_registry(ctx, lambda: "the Kafka cluster cannot be reached: test")  # type: ignore[arg-type]

    def scrape() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        body, ctype = metrics.render(registry, None)
        assert ctype.startswith(b"text/plain; version=0.0.4")
        return {
            (smp.name, frozenset(smp.labels.items())): smp.value
            for fam in text_string_to_metric_families(body.decode())
            for smp in fam.samples
        }

    def get(m: Any, name: str, **labels: str) -> float | None:
        return m.get((name, frozenset({"worker": "3", **labels}.items())))

    s.on_body(memoryview(b"x"))
    m = scrape()
    assert get(m, "gateway_in_flight_records") == 7
    assert get(m, "gateway_open_streams") == 1
    assert get(m, "gateway_open_connections") == 3
    assert get(m, "gateway_paused_connections", reason="write") == 2
    assert get(m, "gateway_paused_connections", reason="in-flight") == 1
    assert get(m, "gateway_paused_connections", reason="stopped") == 0
    assert get(m, "gateway_kafka_queue_messages") == 7
    assert get(m, "gateway_ready") == 0
    assert get(m, "gateway_records_accepted_total", topic="t") == 7
    assert get(m, "gateway_records_delivered_total", topic="t") == 0
    # Every sample, the process collector's too, carries the worker label.
    assert all(dict(k[1]).get("worker") == "3" for k in m)
    for i in range(7):
        fake.deliver(i)
    kp.poll_now()
    s.on_body_end()
    m = scrape()
    assert get(m, "gateway_in_flight_records") == 0
    assert get(m, "gateway_open_streams") == 0
    assert get(m, "gateway_records_delivered_total", topic="t") == 7
    assert stream.access == ["topic=t records=7 ok=7 failed=0"]


def test_latency_histogram_buckets_are_cumulative_with_le_semantics() -> None:
    produce_stats = ProduceStats()
    h = produce_stats.histogram("v1")
    for v in (0.0005, 0.001, 0.002, 0.7, 1000.0):
        h.observe(v)
    ctx = SimpleNamespace(stats=produce_stats, http_stats=stats.HttpStats(), connections=[],
                          producer=SimpleNamespace(outstanding=lambda: 0, queued_bytes=None,
                                                   brokers=None, fatal_errors=0),
                          metadata=SimpleNamespace(info=None), spooler=None, streams=None,
                          instances=None)
    fams = {f.name: f for f in metrics.GatewayCollector(ctx, lambda: None, "0").collect()}  # type: ignore[arg-type]
    buckets = {s.labels["le"]: s.value for s in fams["gateway_report_latency_seconds"].samples
               if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 2 and buckets["0.0025"] == 3 and buckets["1.0"] == 4
    assert buckets["300.0"] == 4 and buckets["+Inf"] == 5
    assert isinstance(h, LatencyHistogram) and h.count == 5


def test_access_log_handler_writes_from_its_thread_and_never_blocks() -> None:
    r, w = os.pipe()
    stream = os.fdopen(w, "w", closefd=False)
    handler = AccessLogHandler(stream, interval=0.02, max_pending_bytes=2000)
    handler.setFormatter(CachedTimeFormatter("%(asctime)s %(name)s: %(message)s"))
    logger = logging.getLogger("test.access.handler")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    drainer: threading.Thread | None = None
    try:
        logger.info("line %d", 1)
        deadline = time.monotonic() + 5
        got = b""
        while b"\n" not in got and time.monotonic() < deadline:
            got += os.read(r, 4096)
        assert got.endswith(b" test.access.handler: line 1\n")
        # Nobody drains the pipe now: the writer thread blocks on it, the logger does not;
        # past the pending bound, lines are dropped and counted.
        t0 = time.monotonic()
        for i in range(20_000):
            logger.info("x" * 100 + " %d", i)
        assert time.monotonic() - t0 < 30
        assert handler.dropped > 0
    finally:
        logger.removeHandler(handler)

        def drain() -> None:
            try:
                while os.read(r, 65536):
                    pass
            except OSError:
                pass

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        handler.close()  # the writer thread finishes once the pipe is read again
        os.close(w)
        drainer.join(5)
        os.close(r)


def test_access_log_handler_to_a_stream_without_fd() -> None:
    out = io.StringIO()
    handler = AccessLogHandler(out, interval=10)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("test.access.stringio")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("a")
        logger.info("b")
        assert out.getvalue() == ""  # gathered, not written yet
        handler.flush()
        assert out.getvalue() == "a\nb\n"
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_cached_time_formatter_matches_logging_default() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "m", None, None)
    assert CachedTimeFormatter("%(asctime)s").format(record) == logging.Formatter("%(asctime)s").format(record)


def test_access_fast_path_writes_what_the_formatter_writes(tmp_path: Any) -> None:
    path = tmp_path / "access.log"
    with open(path, "w") as f:
        handler = AccessLogHandler(f, interval=10)
        handler.setFormatter(CachedTimeFormatter(FORMAT.format(who="[worker 1] ")))
        handler.fast_prefix = " INFO [worker 1] gateway.access: "
        record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "via %s", ("logging",), None)
        handler.handle(record)
        handler.lines.add_request("10.0.0.1:5", "GET", "/v3/clusters", 200, 91, 350, 1.25, " user=bob")
        handler.flush()
        handler.close()
    lines = path.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(stamp + r" INFO \[worker 1\] gateway\.access: via logging", lines[0]), lines
    assert re.fullmatch(stamp + r' INFO \[worker 1\] gateway\.access: 10\.0\.0\.1:5 "GET /v3/clusters" 200 '
                        r"in=91 out=350 ms=1\.2 user=bob", lines[1]), lines
    # The compiled timestamp is logging's asctime of the same moment (local time, milliseconds).
    formatted = CachedTimeFormatter("%(asctime)s").format(
        logging.LogRecord("n", logging.INFO, __file__, 1, "m", None, None))
    assert abs(_stamp_seconds(lines[1][:23]) - _stamp_seconds(formatted)) < 60


def _stamp_seconds(stamp: str) -> float:
    t = time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")
    return time.mktime(t) + int(stamp[20:23]) / 1000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("1.2.3.4:80", "POST", "/topics/t", 200, 120, 300, 0.05, ""),
         '1.2.3.4:80 "POST /topics/t" 200 in=120 out=300 ms=0.1'),
        (("1.2.3.4:80", None, None, 400, 7, 150, 3.25, ""),  # a head that did not parse
         '1.2.3.4:80 "-" 400 in=7 out=150 ms=3.2'),
        (("p", "GET", "/a\x01b\x7f", 404, 0, 0, 12345.678, " (client gone)"),
         'p "GET /a\\x01b\\x7f" 404 in=0 out=0 ms=12345.7 (client gone)'),
        (("p", "GET", "/caf\u00e9", 200, 2**40, 2**41, 0.0, ' user="a b" r\u00e9'),
         f'p "GET /caf\u00e9" 200 in={2**40} out={2**41} ms=0.0 user="a b" r\u00e9'),
        (("p\udcff", "GET", "/x\udcfe", 200, 1, 2, 1e9, ""),  # surrogates: escaped, never raised
         'p\\udcff "GET /x\\udcfe" 200 in=1 out=2 ms=1000000000.0'),
    ],
)
def test_compiled_access_line_is_what_logging_formats(args: tuple[Any, ...], expected: str) -> None:
    lines = AccessLines(1 << 20, 1 << 20)
    lines.prefix = " INFO gateway.access: "
    assert lines.add_request(*args) is False
    text = lines.take().decode("utf-8")
    assert lines.pending_bytes == 0 and lines.take() == b""
    assert text.endswith("\n") and text.count("\n") == 1
    assert text[23:-1] == " INFO gateway.access: " + expected
    # The same line through logging (the path taken when the access logger is configured
    # otherwise): identical text after the timestamp.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = log._access_logger
    saved = (logger.handlers[:], logger.propagate, logger.level, logger.disabled)
    logger.handlers[:] = [handler]
    logger.propagate, logger.disabled = False, False
    logger.setLevel(logging.INFO)
    try:
        log.write_request(*args)
    finally:
        logger.handlers[:], logger.propagate, _, logger.disabled = saved
        logger.setLevel(saved[2])
    # (the handler encodes what logging hands it with backslashreplace, as the C path does)
    assert out.getvalue().encode("utf-8", "backslashreplace").decode("utf-8") == expected + "\n"


def test_compiled_access_lines_are_bounded_and_wake_the_writer_once() -> None:
    lines = AccessLines(1000, 300)
    args = ("1.2.3.4:80", "POST", "/topics/t", 200, 120, 300, 0.5, "")
    one = AccessLines(1000, 1000)
    one.add_request(*args)
    size = len(one.take())  # one line (the timestamp is always 23 characters)
    wakes = [lines.add_request(*args) for _ in range(20)]
    fit = 1000 // size
    assert lines.pending_bytes == fit * size and lines.dropped == 20 - fit
    assert wakes.count(True) == 1 and wakes.index(True) == -(-300 // size) - 1
    assert len(lines.take()) == fit * size and lines.pending_bytes == 0
    # After a take: room again, and the writer is woken again once past wake_bytes.
    assert lines.add_request(*args) is False and lines.pending_bytes == size
    assert lines.add_text("x" * 10 + "\n") is False and lines.take().endswith(b"\n" + b"x" * 10 + b"\n")
    assert lines.dropped == 20 - fit


def test_compiled_access_line_writes_milliseconds_as_python_does() -> None:
    # Written by hand away from rounding ties, by printf at them: '%.1f' either way.
    rng = random.Random(7)
    values = [0.0, 0.05, 0.25, 0.35, 0.95, 9.95, 99.949999, 1e12, 1e15, 2.5e-5, float("inf")]
    values += [rng.random() * 10 ** rng.randint(-3, 8) for _ in range(3000)]
    values += [round(rng.random() * 1000, 2) for _ in range(3000)]
    lines = AccessLines(1 << 20, 1 << 20)
    for v in values:
        lines.add_request("p", "GET", "/", 200, 0, 0, v, "")
        assert lines.take().decode().rstrip("\n").split(" ms=")[1] == "%.1f" % v, v
