"""RdProducer (gateway._speedups, ext/producer.pxi) against librdkafka's in-process mock cluster.

``test.mock.num.brokers=1`` makes librdkafka start a mock broker inside the producer and point
``bootstrap.servers`` at it: a real produce path (partitioner, batching, idempotence, delivery
reports) without Tansu. The mock auto-creates topics with 4 partitions and answers with a
LogAppendTime, so timestamps are checked against Tansu in tests/integration/test_rdproducer.py.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from gateway._speedups import RdProducer, RdTopic
from gateway.kafka.embedded import find_free_port

ROOT = Path(__file__).resolve().parents[2]
MOCK: dict[str, Any] = {"test.mock.num.brokers": 1, "linger.ms": 1}
# The gateway's defaults (docs/api.md §5), as librdkafka sees them.
GATEWAY: dict[str, Any] = {"acks": "all", "enable.idempotence": True,
                           "partitioner": "murmur2_random"}
MOCK_PARTITIONS = 4


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def make() -> Iterator[Callable[..., RdProducer]]:
    """Producers closed at the end of the test (close() is bounded: the mock answers at once)."""
    made: list[RdProducer] = []

    def factory(config: dict[str, Any] | None = None, **kwargs: Any) -> RdProducer:
        p = RdProducer({**MOCK, **GATEWAY, **(config or {})}, **kwargs)
        made.append(p)
        return p

    yield factory
    for p in made:
        p.close(1000)


def readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def collect(p: RdProducer, n: int, timeout: float = 10.0) -> list[tuple[int, int, int, int, int]]:
    """Poll whenever the event fd says so until ``n`` reports arrived (fails after ``timeout``)."""
    got: list[tuple[int, int, int, int, int]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(got)} of {n} reports within {timeout} s"
        if readable(p.event_fd, min(left, 0.5)):
            got += [p.report(i) for i in range(p.poll())]
    assert p.lost_reports == 0
    return got


# -- the library ---------------------------------------------------------------------------------


def test_links_the_librdkafka_bundled_with_confluent_kafka() -> None:
    """Importing the extension needs no LD_LIBRARY_PATH (rpath), and the process maps one
    librdkafka: the same file confluent_kafka.cimpl uses, whichever is imported first."""
    code = (
        "import json, re, gateway._speedups as s, confluent_kafka as ck\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(json.dumps(sorted(set(re.findall(r'/\\S*librdkafka\\S*', maps)))))\n"
        "print(s.RdProducer.librdkafka_version()[1], ck.libversion()[0])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert r.returncode == 0, r.stderr
    libs, versions = r.stdout.splitlines()
    libs_list = json.loads(libs)
    assert len(libs_list) == 1 and "/confluent_kafka.libs/librdkafka-" in libs_list[0], libs
    ours, theirs = versions.split()
    assert ours == theirs
    # ext/rdkafka.pxd declares the documented API of librdkafka 2.x.
    assert RdProducer.librdkafka_version()[0] >= 0x02000000


def test_error_codes_agree_with_confluent_kafka() -> None:
    """Our hand-written constants against confluent_kafka's, compiled from the real rdkafka.h."""
    pairs = {
        RdProducer.ERR_NO_ERROR: KafkaError.NO_ERROR,
        RdProducer.ERR_QUEUE_FULL: KafkaError._QUEUE_FULL,
        RdProducer.ERR_MSG_TIMED_OUT: KafkaError._MSG_TIMED_OUT,
        RdProducer.ERR_PURGE_QUEUE: KafkaError._PURGE_QUEUE,
        RdProducer.ERR_PURGE_INFLIGHT: KafkaError._PURGE_INFLIGHT,
        RdProducer.ERR_FATAL: KafkaError._FATAL,
        RdProducer.ERR_UNKNOWN_PARTITION: KafkaError._UNKNOWN_PARTITION,
        RdProducer.ERR_UNKNOWN_TOPIC: KafkaError._UNKNOWN_TOPIC,
        RdProducer.ERR_INVALID_ARG: KafkaError._INVALID_ARG,
        RdProducer.ERR_STATE: KafkaError._STATE,
        RdProducer.ERR_MSG_SIZE_TOO_LARGE: KafkaError.MSG_SIZE_TOO_LARGE,
    }
    for ours, theirs in pairs.items():
        assert ours == theirs
        assert RdProducer.error_name(ours) == KafkaError(theirs).name()
        assert RdProducer.error_string(ours) == KafkaError(theirs).str()
    assert RdProducer.PARTITION_UA == -1


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "exc", "pattern"),
    [
        ({"no.such.property": "1"}, ValueError, r"'no\.such\.property'.*No such configuration"),
        ({"linger.ms": "soon"}, ValueError, r"'linger\.ms'='soon'"),
        ({"acks": "some"}, ValueError, r"'acks'='some'"),
        ({"enable.idempotence": True, "acks": 1}, ValueError,
         r"refused the producer configuration: .*acks"),
        ({"error_cb": print}, TypeError, r"'error_cb'.*callbacks are not librdkafka properties"),
        ({"linger.ms": None}, TypeError, r"'linger\.ms': a NoneType value"),
        ({5: "x"}, TypeError, r"names are str, not int"),
    ],
)
def test_configuration_errors_name_the_property(config: dict[Any, Any], exc: type[Exception],
                                                pattern: str) -> None:
    before = open_fds()
    with pytest.raises(exc, match=pattern):
        RdProducer({**MOCK, **config})
    # Nothing leaked: no eventfd, no librdkafka threads' sockets.
    assert open_fds() <= before


def test_max_reports_is_bounded() -> None:
    for bad in (0, -1, 2**26 + 1):
        with pytest.raises(ValueError, match="max_reports"):
            RdProducer(MOCK, max_reports=bad)


def test_values_are_converted_to_librdkafka_strings(make: Callable[..., RdProducer]) -> None:
    # bool -> "true"/"false", int/float -> decimal; librdkafka validates them.
    p = make({"enable.idempotence": False, "acks": 1, "linger.ms": 0.5,
              "queue.buffering.max.messages": 10})
    assert not p.closed and p.event_fd >= 0


# -- produce and delivery reports ----------------------------------------------------------------


def test_reports_carry_opaque_partition_and_offset(make: Callable[..., RdProducer]) -> None:
    p = make()
    sink = 7
    n = 300
    for seq in range(n):
        part = seq % MOCK_PARTITIONS if seq % 3 == 0 else RdProducer.PARTITION_UA
        key = None if seq % 5 == 0 else b"key-%d" % (seq % 17)
        headers = [("seq", str(seq).encode()), ("null", None)] if seq % 2 else None
        err = p.produce("orders", part, key, b"value-%d" % seq, headers, 0, (sink << 32) | seq)
        assert err == 0, RdProducer.error_name(err)
    reports = collect(p, n)

    assert sorted(r[0] for r in reports) == [(sink << 32) | s for s in range(n)]
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for opaque, partition, offset, _ts, err in reports:
        assert err == 0
        seq = opaque & 0xFFFFFFFF
        if seq % 3 == 0:
            assert partition == seq % MOCK_PARTITIONS  # explicit partitions are kept
        by_partition.setdefault(partition, []).append((offset, seq))
    for partition, pairs in by_partition.items():
        pairs.sort()
        # Gap-free offsets from 0, and (idempotent producer) in the order produced.
        assert [o for o, _ in pairs] == list(range(len(pairs))), partition
        seqs = [s for _, s in pairs]
        assert seqs == sorted(seqs), partition
    assert len(p) == 0


def test_keyed_records_go_where_the_same_key_went(make: Callable[..., RdProducer]) -> None:
    p = make()
    keys = [b"k%d" % i for i in range(40)]
    for i, key in enumerate(keys * 3):
        assert p.produce("keyed", -1, key, b"v", None, 0, i) == 0
    reports = collect(p, len(keys) * 3)
    placed: dict[bytes, set[int]] = {}
    for opaque, partition, *_ in reports:
        placed.setdefault(keys[opaque % len(keys)], set()).add(partition)
    assert all(len(parts) == 1 for parts in placed.values())
    assert len({next(iter(s)) for s in placed.values()}) > 1  # and they spread


def test_topic_handles_are_cached_and_owned(make: Callable[..., RdProducer]) -> None:
    p, q = make(), make()
    t = p.topic("handles")
    assert isinstance(t, RdTopic) and t.name == "handles" and p.topic("handles") is t
    assert repr(t) == "<RdTopic 'handles'>"
    assert p.produce(t, -1, None, b"x", None, 0, 1) == 0
    with pytest.raises(ValueError, match="belongs to another"):
        q.produce(t, -1, None, b"x", None, 0, 1)
    with pytest.raises(TypeError):
        RdTopic()
    assert collect(p, 1)[0][0] == 1


def test_empty_and_null_key_and_value(make: Callable[..., RdProducer]) -> None:
    p = make()
    for i, (k, v) in enumerate([(None, None), (b"", b""), (b"k", None), (None, b"v")]):
        assert p.produce("nulls", 0, k, v, None, 0, i) == 0
    assert sorted(r[0] for r in collect(p, 4)) == [0, 1, 2, 3]


def test_bad_arguments_raise_and_leak_nothing(make: Callable[..., RdProducer]) -> None:
    p = make()
    with pytest.raises(TypeError, match="key must be bytes or None, not str"):
        p.produce("bad", -1, "k", b"v", None, 0, 1)
    with pytest.raises(TypeError, match="value must be bytes or None, not bytearray"):
        p.produce("bad", -1, None, bytearray(b"v"), None, 0, 1)
    with pytest.raises(TypeError, match="header value must be bytes or None, not str"):
        p.produce("bad", -1, None, b"v", [("a", b"1"), ("b", "2")], 0, 1)
    with pytest.raises(TypeError, match="header name must be str or bytes, not int"):
        p.produce("bad", -1, None, b"v", [(1, b"1")], 0, 1)
    with pytest.raises(ValueError):
        p.produce("bad", -1, None, b"v", [("a", b"1", b"extra")], 0, 1)
    with pytest.raises(OverflowError):
        p.produce("bad", -1, None, b"v", None, 0, -1)  # opaque ids are unsigned 64-bit
    with pytest.raises(OverflowError):
        p.produce("bad", 2**31, None, b"v", None, 0, 1)
    p.poll()  # (serves the events queued meanwhile, such as log lines: len() counts them too)
    assert len(p) == 0 and p.reports_ready == 0  # none of them was handed over


def test_queue_full_is_a_code_not_an_exception(make: Callable[..., RdProducer]) -> None:
    p = make({"queue.buffering.max.messages": 5})
    # A record counts against the limit until its report is served, so without poll() the
    # sixth record finds the queue full.
    codes = [p.produce("full", -1, None, b"x", None, 0, i) for i in range(8)]
    assert codes == [0] * 5 + [RdProducer.ERR_QUEUE_FULL] * 3
    assert RdProducer.error_name(codes[-1]) == "_QUEUE_FULL"
    collect(p, 5)
    assert p.produce("full", -1, None, b"x", None, 0, 99) == 0  # room again
    assert collect(p, 1)[0][0] == 99


def test_event_fd_is_readable_only_while_reports_wait(make: Callable[..., RdProducer]) -> None:
    p = make()
    # One wake-up at creation: librdkafka only writes the fd when an event lands on an empty
    # queue, so events queued before the fd was enabled need this one to be served.
    assert readable(p.event_fd, 0)
    # Let the producer settle (metadata, idempotent producer id), then nothing is pending.
    assert p.produce("wake", 0, None, b"x", None, 0, 1) == 0
    collect(p, 1)
    assert not readable(p.event_fd, 0.2)

    assert p.produce("wake", 0, None, b"x", None, 0, 2) == 0
    assert readable(p.event_fd, 5.0), "no wake-up for a delivery report"
    assert p.poll() == 1 and p.report(0)[0] == 2
    assert not readable(p.event_fd, 0.2), "poll() did not drain the event fd"
    assert p.poll() == 0


def test_batch_is_bounded_and_nothing_is_lost(make: Callable[..., RdProducer]) -> None:
    p = make({"linger.ms": 50}, max_reports=4)  # one produce request carries all 50 records
    for i in range(50):
        assert p.produce("bounded", 0, None, b"x", None, 0, i) == 0
    deadline = time.monotonic() + 10
    got: list[int] = []
    sizes: list[int] = []
    while len(got) < 50:
        assert time.monotonic() < deadline, f"{len(got)} of 50"
        if readable(p.event_fd, 0.5):  # a full batch makes the fd readable again by itself
            n = p.poll()
            sizes.append(n)
            if n == 4:
                assert p.batch_full
            got += [p.report(i)[0] for i in range(n)]
    assert max(sizes) == 4 and sorted(got) == list(range(50))
    assert p.lost_reports == 0


def test_batch_grows_by_doubling_up_to_its_cap(make: Callable[..., RdProducer]) -> None:
    p = make({"linger.ms": 100}, max_reports=3000)
    for i in range(5000):
        assert p.produce("grow", 0, None, b"x", None, 0, i) == 0
    assert p.flush(10000) > 0 and p.batch_full and p.reports_ready == 3000
    assert p.flush(10000) == 0 and not p.batch_full and p.reports_ready == 2000
    assert p.lost_reports == 0


def test_report_columns_are_views_of_the_batch(make: Callable[..., RdProducer]) -> None:
    p = make()
    for i in range(20):
        assert p.produce("columns", i % 2, None, b"x", None, 0, 1000 + i) == 0
    assert p.flush(10000) == 0
    n = p.reports_ready
    assert n == 20
    opaque, partition, offset, ts, err = cols = p.reports()
    assert [c.format for c in cols] == ["Q", "i", "q", "q", "i"]
    assert all(c.readonly and len(c) == n for c in cols)
    assert list(zip(opaque.tolist(), partition.tolist(), offset.tolist(), ts.tolist(),
                    err.tolist(), strict=True)) == [p.report(i) for i in range(n)]
    # A view must not outlive its batch: the next batch waits until every view is gone.
    with pytest.raises(BufferError, match="views are still alive"):
        p.poll()
    with pytest.raises(BufferError):
        p.close()
    del opaque, partition, offset, ts, err, cols
    assert p.poll() == 0
    with pytest.raises(IndexError):
        p.report(0)


def test_purge_gives_every_queued_record_a_failed_report() -> None:
    # A broker that is not there: records wait in the queue until purged.
    p = RdProducer({"bootstrap.servers": f"127.0.0.1:{find_free_port()}", **GATEWAY})
    try:
        for i in range(3):
            assert p.produce("nowhere", -1, b"k", b"v", None, 0, i) == 0
        assert len(p) >= 3
        p.purge(in_queue=True, in_flight=True)
        reports = collect(p, 3)
        assert sorted(r[0] for r in reports) == [0, 1, 2]
        assert {r[4] for r in reports} == {RdProducer.ERR_PURGE_QUEUE}
        assert {r[2] for r in reports} == {-1001}  # RD_KAFKA_OFFSET_INVALID
    finally:
        # Not asserted: what close() counts as outstanding includes events (the refused
        # connections' errors) that may still be queued; the records were all reported above.
        p.close(0)


def test_connection_errors_reach_the_error_ring() -> None:
    p = RdProducer({"bootstrap.servers": f"127.0.0.1:{find_free_port()}",
                    "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 50})
    try:
        deadline = time.monotonic() + 10
        while p.error_count == 0:
            assert time.monotonic() < deadline, "no error callback for a refused connection"
            if readable(p.event_fd, 0.2):
                p.poll()
        errors = p.take_errors()
        assert errors and all(isinstance(c, int) and isinstance(r, str) for c, r in errors)
        assert {c for c, _ in errors} <= {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}
        assert not p.fatal and p.fatal_error() is None
        assert p.take_errors() == []  # errors are only collected inside poll()
    finally:
        p.close(0)


def test_fatal_error_is_a_flag_and_fails_later_records(make: Callable[..., RdProducer]) -> None:
    p = make()
    assert p.produce("fatal", 0, None, b"x", None, 0, 1) == 0
    collect(p, 1)
    assert p._test_fatal_error(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "test-injected") == 0
    deadline = time.monotonic() + 10
    while not p.fatal:
        assert time.monotonic() < deadline, "no fatal error callback"
        if readable(p.event_fd, 0.2):
            p.poll()
    assert KafkaError._FATAL in {c for c, _ in p.take_errors()}
    code, reason = p.fatal_error() or (0, "")
    assert code == KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER and "test-injected" in reason
    assert p.produce("fatal", 0, None, b"x", None, 0, 2) == RdProducer.ERR_FATAL


def test_closed_producer(make: Callable[..., RdProducer]) -> None:
    p = RdProducer({**MOCK, **GATEWAY})
    t = p.topic("closing")
    assert p.produce(t, 0, None, b"x", None, 0, 1) == 0
    assert p.close(5000) == 0  # waited for the record
    assert p.closed and p.event_fd == -1 and len(p) == 0
    assert p.close() == 0  # idempotent
    for call in (lambda: p.produce("closing", 0, None, b"x", None, 0, 1),
                 lambda: p.produce(t, 0, None, b"x", None, 0, 1),
                 p.poll, lambda: p.flush(0), p.purge, lambda: p.topic("other")):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    assert p.fatal_error() is None


def test_dropping_the_last_reference_closes(make: Callable[..., RdProducer]) -> None:
    before = open_fds()
    p = RdProducer({**MOCK, **GATEWAY})
    for i in range(10):
        assert p.produce("dropped", -1, None, b"x", None, 0, i) == 0
    t0 = time.monotonic()
    del p
    assert time.monotonic() - t0 < 5.0
    assert open_fds() <= before


def test_close_is_bounded_when_the_broker_is_away() -> None:
    p = RdProducer({"bootstrap.servers": f"127.0.0.1:{find_free_port()}"})
    for i in range(5):
        assert p.produce("away", -1, None, b"x", None, 0, i) == 0
    t0 = time.monotonic()
    # Never delivered: purged without a report. The count may also include the refused
    # connections' error events still queued, hence at least 5.
    assert p.close(300) >= 5
    assert time.monotonic() - t0 < 5.0


def test_callbacks_are_nogil_c_functions() -> None:
    """The C callbacks never touch a Python object: they are `noexcept nogil`, which Cython
    enforces at compile time (a Python call there does not compile)."""
    src = (ROOT / "ext" / "producer.pxi").read_text()
    for name in ("cb_rdp_delivery", "cb_rdp_error"):
        m = re.search(rf"^cdef void {name}\([^)]*\) noexcept nogil:", src, re.M | re.S)
        assert m, f"{name} must be a noexcept nogil C function"


# -- statistics, the router and the stream core on a real producer ------------------------------


def test_statistics_documents_are_kept_until_taken(make: Callable[..., RdProducer]) -> None:
    p = make({"statistics.interval.ms": 100})
    deadline = time.monotonic() + 10
    doc = None
    while doc is None:
        assert time.monotonic() < deadline, "no statistics within 10 s"
        if readable(p.event_fd, 0.5):
            p.poll()
            doc = p.take_stats()
    stats = json.loads(doc)
    assert stats["type"] == "producer"
    assert "brokers" in stats
    assert p.take_stats() is None  # taken: gone until the next interval


def test_router_feeds_every_stream_core_of_one_batch(make: Callable[..., RdProducer]) -> None:
    """Reports of two cores and of an unknown sink id, mixed in one batch: each core gets its
    own (its listener listed once per batch), the unknown ones are counted as orphans."""
    from gateway._speedups import ReportRouter, StreamCore
    from gateway.produce.reports import error_report

    p = make()
    router = ReportRouter()
    flushed: list[str] = []
    failed: list[tuple[int, int]] = []

    class Listener:
        def __init__(self, name: str) -> None:
            self.name = name

    cores = [
        StreamCore(router, p, "orders", MOCK_PARTITIONS, 1000, b'{"error_code":200,"partition_id":',
                   Listener(f"s{k}"), lambda err: (50002, RdProducer.error_string(err)),
                   lambda code, n: failed.append((code, n)), error_report)
        for k in range(2)
    ]
    stranger = max(core.sink_id for core in cores) + 1000  # a sink id nobody registered
    n = 200
    for core in cores:
        items = [(i, i % MOCK_PARTITIONS if i % 2 else -1, None, b"v%d" % i, None, 0, None, "BINARY")
                 for i in range(n)]
        items.insert(5, (5, MOCK_PARTITIONS, None, b"x", None, 0, None, "STRING"))  # no such partition
        assert core.push(items) == n + 1
        assert core.produced == n and core.failed == 1
    for seq in range(10):
        assert p.produce("orders", 0, None, b"nobody's", None, 0, (stranger << 32) | seq) == 0
    got = 0
    deadline = time.monotonic() + 10
    while got < 2 * n + 10:
        assert time.monotonic() < deadline
        if readable(p.event_fd, 0.5):
            p.poll()
            got += router.dispatch(p)
            dirty = router.take_dirty()
            assert len(dirty) == len(set(map(id, dirty)))  # each listener once per batch
            flushed.extend(listener.name for listener in dirty)
    assert router.orphans == 10
    assert set(flushed) == {"s0", "s1"}
    for core in cores:
        lines = core.take_ready().split(b"\r\n")
        assert lines[-1] == b""
        reports = [json.loads(x) for x in lines[:-1]]
        assert len(reports) == n + 1 and len(core) == 0
        assert reports[5]["error_code"] == 40402
        ok = reports[:5] + reports[6:]
        assert all(r["error_code"] == 200 for r in ok)
        assert [r["value"] for r in ok] == [{"type": "BINARY", "size": len(b"v%d" % i)} for i in range(n)]
        for i, r in enumerate(ok):
            if i % 2:
                assert r["partition_id"] == i % MOCK_PARTITIONS
        core.close()
    assert failed == [(40402, 1), (40402, 1)]
    assert len(router) == 0
