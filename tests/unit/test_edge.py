"""The disk spool in the produce path (issue 11; docs/api.md §5 "Disk spool"), without a broker
or a gateway process: ``StreamCore.spool``/``spool_settle`` (ext/stream.pxi), the ``Spooler``'s
judgement and 202 reports, records Kafka failed with a retriable error going to the spool, the
``Forwarder`` and its stop (gateway/produce/edge.py) and ``hand_over`` (gateway/produce/core.py).

The librdkafka producer is the test double of tests/support/fake_producer.py under the real
``KafkaProducer``, ``ReportRouter`` and ``StreamCore``; the spool is a real one in a temporary
directory (its writer and reader threads doing the file I/O), or a small stand-in where a
refusal must be injected or the durable callbacks must come when the test says. Everything
runs on a uvloop event loop, as in the gateway. What a test checks is what a client or an
operator sees: the report bytes and their order, what reaches Kafka (the fake's produce calls)
and what stays in the spool, the counters and the log.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from confluent_kafka import KafkaError
from support.fake_producer import FakeRdProducer

from gateway.kafka.health import LIBRDKAFKA, ClusterHealth
from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter, RateSettings
from gateway.produce import edge
from gateway.produce.core import (
    REPORT_FORMAT_V1,
    REPORT_FORMAT_V2,
    REPORT_FORMAT_V3,
    StreamCore,
    hand_over,
    new_core,
)
from gateway.produce.edge import SPOOLED_MESSAGE, Spooler
from gateway.produce.items import RecordError
from gateway.produce.reports import error_report, json_str
from gateway.produce.session import PAUSE_IN_FLIGHT
from gateway.produce.spool import Spool, SpoolBusy, SpoolError, SpoolFull

SPOOLED = {"error_code": 202, "message": SPOOLED_MESSAGE}
DOWN = "every broker connection is down"
TS = 1_700_000_000_000


# -- helpers ----------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 20))
    finally:
        loop.close()


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def rec(i: int, partition: int = -1, key: bytes | None = None, value: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None) -> tuple:
    """The splitter's tuple of record ``i``; its value (and timestamp) say which it is."""
    value = b"value-%d" % i if value is None else value
    return (i, partition, key, value, headers, TS + i, "BINARY" if key is not None else None,
            "BINARY")


class RecordingProducer(FakeRdProducer):
    """The fake librdkafka, keeping every record it was given in ``produced`` (topic, value,
    key, partition, opaque, timestamp, headers): what reached Kafka, in produce order."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self.produced: list[list[Any]] = []

    def produce_record(self, topic: Any, partition: int, key: Any, value: Any, headers: Any,
                       ts: int, opaque: int) -> int:
        err = super().produce_record(topic, partition, key, value, headers, ts, opaque)
        if not err:
            self.produced.append([topic, value, key, partition, opaque, ts, headers])
        return err


def make_kp(loop: asyncio.AbstractEventLoop, health: ClusterHealth | None = None) -> KafkaProducer:
    return KafkaProducer({}, loop, producer_factory=RecordingProducer,
                         health=health or ClusterHealth())


class Listener:
    """A stream's side of its core (gateway.kafka.producer.DeliveryListener)."""

    def __init__(self, name: str = "stream", fail: BaseException | None = None,
                 fail_again: BaseException | None = None) -> None:
        self.name = name
        self.fail = fail  # flush_reports raises it
        self.fail_again = fail_again  # on_internal_error raises it
        self.flushes = 0
        self.internal_errors: list[BaseException] = []

    def flush_reports(self) -> None:
        self.flushes += 1
        if self.fail is not None:
            raise self.fail

    def on_queue_space(self) -> None:
        pass

    def on_internal_error(self, exc: BaseException) -> None:
        self.internal_errors.append(exc)
        if self.fail_again is not None:
            raise self.fail_again

    def describe(self) -> str:
        return f"test {self.name}"


class Failures:
    """The core's failure metrics callback: (error_code, count) as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, code: int, count: int) -> None:
        self.calls.append((code, count))

    def total(self, code: int) -> int:
        return sum(n for c, n in self.calls if c == code)


def v3_core(kp: KafkaProducer, listener: Any = None, *, topic: str = "t", partitions: int = 3,
            capacity: int = 100, fails: Failures | None = None) -> StreamCore:
    """A core as a v3 stream makes it (gateway/produce/session.py), with the 202 report the
    Spooler files for it."""
    prefix = b'{"error_code":200,"cluster_id":"c","topic_name":%s,"partition_id":' % json_str(topic)
    core = new_core(kp, topic, partitions, capacity, prefix,
                    listener if listener is not None else Listener(), kp.error_of,
                    fails if fails is not None else Failures(), error_report, REPORT_FORMAT_V3)
    core.spooled_report = core.error_report(202, SPOOLED_MESSAGE)
    return core


def reports(core: StreamCore) -> list[dict[str, Any]]:
    """The reports a v3 client gets now (StreamCore.take_ready), parsed."""
    lines = core.take_ready().split(b"\r\n")
    assert lines[-1] == b""
    return [json.loads(line) for line in lines[:-1]]


def codes(got: list[dict[str, Any]]) -> list[int]:
    return [r["error_code"] for r in got]


def values(fake: RecordingProducer, first: int = 0) -> list[bytes]:
    """The values of the records the fake librdkafka was given, in produce order."""
    return [e[1] for e in fake.produced[first:]]


OPENED: list[Spool] = []


def open_spool(path: Path, **options: Any) -> Spool:
    options.setdefault("fsync", "never")
    spool = Spool.open(str(path), **options)
    OPENED.append(spool)
    return spool


async def started_spool(path: Path, **options: Any) -> Spool:
    spool = open_spool(path, **options)
    spool.start(asyncio.get_running_loop())
    return spool


@pytest.fixture(autouse=True)
def _spools_closed() -> Iterator[None]:
    """A test that failed half-way has its spools closed here; no spool thread outlives a test."""
    yield
    left = [sp for sp in OPENED if not sp._closed]
    for sp in left:
        sp.close()
    OPENED.clear()
    assert [sp.directory for sp in left] == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("spool-")] == []


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """The judgement and the forwarder's retries every few milliseconds (not every 250/500)."""
    monkeypatch.setattr(edge, "JUDGE_INTERVAL", 0.005)
    monkeypatch.setattr(edge, "RETRY_DELAY", 0.01)
    monkeypatch.setattr(edge, "FAILURE_PAUSE", 0.01)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.close()


class TokenSpool:
    """A spool that takes every batch and numbers its records as the real one does, and says
    nothing by itself: the test calls the Spooler's durable and error callbacks."""

    def __init__(self, refuse: BaseException | None = None) -> None:
        self.refuse = refuse
        self.next_seq = 0
        self.batches: list[tuple[str, list[tuple]]] = []
        self.topics: set[str] = set()
        self.empty = True

    def append(self, topic: str, records: list[tuple]) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.batches.append((topic, list(records)))
        self.topics.add(topic)
        self.next_seq += len(records)
        return self.next_seq

    def holds(self, topic: str) -> bool:
        return topic in self.topics


# -- StreamCore.spool and spool_settle ------------------------------------------------------


def test_spooled_records_report_202_once_durable_in_send_order_among_pushed_ones(
        tmp_path: Path) -> None:
    async def main() -> None:
        kp = make_kp(asyncio.get_running_loop())
        fake = kp.current
        spool = await started_spool(tmp_path / "spool")
        core = v3_core(kp)

        assert core.push([rec(0, 0), rec(1, 1)], 0) == 2
        assert core.spool([rec(2, 2, key=b"k", headers=[("h", b"1")]), rec(3, 0)], 0, spool) == 2
        assert core.spool_token == 2  # the spool's sequence numbers after the batch
        assert core.push([rec(4, 1)], 0) == 1
        # The spooled records never reach librdkafka; they wait in their slots.
        assert values(fake) == [b"value-0", b"value-1", b"value-4"]
        assert (core.produced, core.pending, core.spooling, core.spooled) == (3, 5, 2, 0)

        # Kafka answers every pushed record: only the reports before the spooled ones go out.
        fake.deliver(0)
        fake.deliver(1)
        fake.deliver(2, KafkaError.MSG_SIZE_TOO_LARGE)
        kp.poll_now()
        assert codes(reports(core)) == [200, 200]
        assert reports(core) == []  # record 4's report waits behind the spooled records
        await spool.sync()
        assert reports(core) == []  # durable, but not settled: no 202 yet

        assert core.spool_settle(spool.durable_seq) == 2
        assert (core.pending, core.spooling, core.spooled, core.ok, core.failed) == (0, 0, 2, 2, 1)
        got = reports(core)
        assert got[:2] == [SPOOLED, SPOOLED]
        assert got[2]["error_code"] == 413
        assert core.spool_settle(spool.durable_seq) == 0  # settled once

        # Spooled ones settled before the record pushed ahead of them is delivered: they wait.
        core.push([rec(5, 2)], 0)
        core.spool([rec(6, 1)], 0, spool)
        await spool.sync()
        assert core.spool_settle(spool.durable_seq) == 1
        assert reports(core) == []
        fake.deliver(3)
        kp.poll_now()
        got = reports(core)
        assert codes(got) == [200, 202]
        assert got[0]["partition_id"] == 2

        # What the spool holds is what the client sent (the forwarder produces it from there).
        batch = await spool.reader().read(10)
        assert batch.records == [(0, "t", 2, b"k", b"value-2", [("h", b"1")], TS + 2),
                                 (1, "t", 0, None, b"value-3", None, TS + 3),
                                 (2, "t", 1, None, b"value-6", None, TS + 6)]
        core.close()
        await spool.aclose()

    run(main())


def test_record_errors_and_partitions_out_of_range_get_their_own_reports(tmp_path: Path) -> None:
    async def main() -> None:
        kp = make_kp(asyncio.get_running_loop())
        spool = await started_spool(tmp_path / "spool")
        fails = Failures()
        core = v3_core(kp, fails=fails, partitions=3)
        items = [rec(0), RecordError(1, 42201, "record 1: value: not valid base64"),
                 rec(2, partition=5), rec(3, partition=2),
                 RecordError(4, 40001, "record 4: bad JSON, cannot go on", fatal=True)]
        assert core.spool(items, 0, spool) == 5
        assert core.fatal_seen
        assert (core.pending, core.spooling, core.failed) == (2, 2, 3)
        assert spool.next_seq == 2  # only the two good records were appended
        await spool.sync()
        core.spool_settle(spool.durable_seq)
        assert reports(core) == [
            SPOOLED,
            {"error_code": 42201, "message": "record 1: value: not valid base64"},
            {"error_code": 40402,
             "message": "partition_id 5 does not exist: topic 't' has 3 partitions"},
            SPOOLED,
            {"error_code": 40001, "message": "record 4: bad JSON, cannot go on"},
        ]
        assert sorted(fails.calls) == [(40001, 1), (40402, 1), (42201, 1)]
        core.close()
        await spool.aclose()

    run(main())


def test_the_in_flight_window_stops_spooling_as_it_stops_push(tmp_path: Path) -> None:
    async def main() -> None:
        kp = make_kp(asyncio.get_running_loop())
        fake = kp.current
        spool = await started_spool(tmp_path / "spool")
        core = v3_core(kp, capacity=4)
        items = [rec(i) for i in range(6)]
        assert core.push(items[:1], 0) == 1  # record 0 with Kafka (one slot)
        assert core.spool(items, 1, spool) == 4
        assert core.stop_reason == PAUSE_IN_FLIGHT
        assert spool.next_seq == 3  # records 1..3: the window of 4 is full
        await spool.sync()
        core.spool_settle(spool.durable_seq)
        assert reports(core) == []  # record 0 still with Kafka: the window stays full
        assert core.spool(items, 4, spool) == 4 and core.stop_reason == PAUSE_IN_FLIGHT
        fake.deliver(0)
        kp.poll_now()
        assert codes(reports(core)) == [200, 202, 202, 202]
        assert core.spool(items, 4, spool) == 6
        assert core.stop_reason == 0
        await spool.sync()
        core.spool_settle(spool.durable_seq)
        assert codes(reports(core)) == [202, 202]
        core.close()
        await spool.aclose()

    run(main())


def test_rate_allowances_drop_records_with_429_as_push_does(tmp_path: Path) -> None:
    async def main() -> None:
        kp = make_kp(asyncio.get_running_loop())
        spool = await started_spool(tmp_path / "spool")
        fails = Failures()
        core = v3_core(kp, fails=fails)
        items = [rec(i, value=b"x" * 10) for i in range(4)]
        assert core.spool(items, 0, spool, 2, -1) == 4
        assert (core.used_records, core.used_bytes, core.rate_dropped) == (2, 20, 2)
        items = [rec(i, key=b"kk", value=b"x" * 10) for i in range(3)]
        assert core.spool(items, 0, spool, -1, 25) == 3  # 12 bytes each: two fit
        assert (core.used_records, core.used_bytes, core.rate_dropped) == (4, 44, 3)
        assert spool.next_seq == 4
        await spool.sync()
        core.spool_settle(spool.durable_seq)
        got = reports(core)
        assert codes(got) == [202, 202, 429, 429, 202, 202, 429]
        assert got[2]["message"] == "record dropped: the produce rate limit is exceeded"
        assert fails.total(429) == 3
        core.close()
        await spool.aclose()

    run(main())


def test_a_full_spool_refuses_the_records_of_that_call_with_50003_and_nothing_raised(
        tmp_path: Path) -> None:
    async def main() -> None:
        kp = make_kp(asyncio.get_running_loop())
        spool = await started_spool(tmp_path / "spool", max_bytes=4096)
        fails = Failures()
        core = v3_core(kp, fails=fails)
        assert core.spool([rec(0)], 0, spool) == 1
        # Two records, the second too big for what is left: the whole call is refused.
        assert core.spool([rec(1), rec(2, value=b"x" * 5000)], 0, spool) == 2
        assert (core.pending, core.spooling, core.failed) == (1, 1, 2)
        assert fails.calls == [(50003, 2)]
        assert spool.next_seq == 1 and spool.stats().refused_full_total == 2
        await spool.sync()
        core.spool_settle(spool.durable_seq)
        got = reports(core)
        assert got[0] == SPOOLED  # what was spooled before is kept and reported
        assert codes(got[1:]) == [50003, 50003]
        assert got[1]["message"].startswith("the spool cannot take this record: spool full (")
        assert got[1]["message"].endswith("; resend it")
        core.close()
        await spool.aclose()

    run(main())


@pytest.mark.parametrize("refusal", [
    SpoolBusy("spool write buffer full (16777216 bytes not yet written)"),
    SpoolError("the spool failed: [Errno 5] Input/output error"),
])
def test_a_refused_append_gives_each_record_of_the_call_50003(
        loop: asyncio.AbstractEventLoop, refusal: SpoolError) -> None:
    kp = make_kp(loop)
    fails = Failures()
    core = v3_core(kp, fails=fails)
    core.push([rec(0)], 0)
    items = [rec(1), RecordError(2, 42201, "bad record"), rec(3)]
    assert core.spool(items, 0, TokenSpool(refuse=refusal)) == 3
    assert (core.pending, core.spooling, core.failed) == (1, 0, 3)
    kp.current.deliver(0)
    kp.poll_now()
    got = reports(core)
    assert codes(got) == [200, 50003, 42201, 50003]
    assert got[1]["message"] == f"the spool cannot take this record: {refusal}; resend it"
    assert got[1] == got[3]
    assert fails.total(50003) == 2
    core.close()


def test_a_non_retriable_append_failure_fails_those_records_and_is_raised(
        loop: asyncio.AbstractEventLoop) -> None:
    kp = make_kp(loop)
    core = v3_core(kp)
    spool = TokenSpool()
    core.spool([rec(0)], 0, spool)
    bug = TypeError("header name must be str or bytes")
    spool.refuse = bug
    with pytest.raises(TypeError) as raised:
        core.spool([rec(1), rec(2)], 0, spool)
    assert raised.value is bug
    assert (core.pending, core.spooling, core.failed) == (1, 1, 2)
    assert core.spool_settle(1) == 1
    got = reports(core)
    assert got[0] == SPOOLED
    assert codes(got[1:]) == [50003, 50003]
    assert got[1]["message"] == ("the spool cannot take this record: header name must be str or "
                                 "bytes; resend it")
    core.close()


def test_spool_settle_files_a_failure_and_settles_up_to_the_end_given(
        loop: asyncio.AbstractEventLoop) -> None:
    kp = make_kp(loop)
    fails = Failures()
    core = v3_core(kp, fails=fails)
    spool = TokenSpool()
    core.spool([rec(0), rec(1)], 0, spool)  # token 2
    core.spool([rec(2), rec(3), rec(4)], 0, spool)  # token 5
    assert core.spool_settle(4) == 2  # the second batch is not wholly durable at 4
    assert (core.pending, core.spooling, core.spooled) == (3, 3, 2)
    failure = core.error_report(50003, "the spool could not store this record (EIO); resend it")
    assert core.spool_settle(5, failure) == 3
    assert (core.pending, core.spooling, core.spooled, core.failed) == (0, 0, 2, 3)
    assert fails.calls == [(50003, 3)]
    got = reports(core)
    assert got[:2] == [SPOOLED, SPOOLED]
    assert got[2:] == [{"error_code": 50003,
                        "message": "the spool could not store this record (EIO); resend it"}] * 3
    core.close()


def test_fail_pending_after_an_internal_error_also_fails_records_waiting_for_the_spool(
        loop: asyncio.AbstractEventLoop) -> None:
    kp = make_kp(loop)
    core = v3_core(kp)
    spool = TokenSpool()
    core.push([rec(0)], 0)
    core.spool([rec(1), rec(2)], 0, spool)
    assert core.fail_pending() == 3
    assert (core.pending, core.spooling) == (0, 0)
    assert core.spool_settle(2) == 0  # the spool's word comes too late: nothing changes
    got = reports(core)
    assert codes(got) == [50003] * 3
    assert got[0]["message"].startswith("internal error of the gateway while reporting")
    with pytest.raises(RuntimeError, match="broken"):
        core.spool([rec(3)], 0, spool)
    kp.current.deliver(0)
    kp.poll_now()
    assert core.late == 1 and reports(core) == []
    core.close()


def _v1_entry(code: int, message: str) -> bytes:
    # A failed v1/v2 offsets entry (docs/api.md §2, as gateway/produce/v1.py builds it).
    return b'{"partition":null,"offset":null,"error_code":%d,"error":%s},' % (code,
                                                                            json_str(message))


@pytest.mark.parametrize("mode", [REPORT_FORMAT_V1, REPORT_FORMAT_V2])
def test_v1_and_v2_offsets_entries_of_spooled_records_say_202(
        loop: asyncio.AbstractEventLoop, mode: int) -> None:
    kp = make_kp(loop)
    core = new_core(kp, "t", 3, 10, b"", Listener(), kp.error_of, Failures(), _v1_entry, mode)
    spooler = Spooler(TokenSpool(), kp, spool_after=2.0, high_mark=100)  # type: ignore[arg-type]
    assert core.push([rec(0, 1)], 0) == 1
    assert spooler.spool_items(core, [rec(1), rec(2)], 0) == 2
    spooler._on_durable(0, 2)
    kp.current.deliver(0)
    kp.poll_now()
    entries = json.loads(b"[" + core.take_ready()[:-1] + b"]")
    delivered: dict[str, Any] = {"partition": 1, "offset": 0}
    if mode == REPORT_FORMAT_V2:
        delivered.update(error_code=None, error=None)
    spooled = {"partition": None, "offset": None, "error_code": 202, "error": SPOOLED_MESSAGE}
    assert entries == [delivered, spooled, spooled]
    assert core.spooled == 2
    core.close()


# -- Spooler.judge -------------------------------------------------------------------------


class Judged:
    """A Spooler over a KafkaProducer on the fake librdkafka, its clock in ``now``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, spool_after: float = 2.0,
                 high_mark: int = 1000, spool: Any = None) -> None:
        self.health = ClusterHealth()
        self.kp = make_kp(loop, self.health)
        self.fake = self.kp.current
        self.now = 0.0
        self.spool = spool if spool is not None else TokenSpool()
        self.spooler = Spooler(self.spool, self.kp,  # type: ignore[arg-type]
                               spool_after=spool_after, high_mark=high_mark,
                               clock=lambda: self.now)
        self.core = v3_core(self.kp)

    def judge(self, at: float) -> str | None:
        self.now = at
        return self.spooler.judge()


def test_all_brokers_down_for_spool_after_spools_until_kafka_answers(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    j = Judged(loop)
    sp = j.spooler
    assert j.judge(0.0) is None
    j.health.mark_down(LIBRDKAFKA, DOWN)
    assert j.judge(10.0) is None  # down since 10
    assert j.judge(11.9) is None and not sp.spooling and not sp.should_spool("t")
    with caplog.at_level(logging.INFO, logger="gateway.spool"):
        assert j.judge(12.0) == f"Kafka is unreachable ({DOWN})"
        assert sp.spooling and sp.unreachable == f"Kafka is unreachable ({DOWN})"
        assert sp.should_spool("t") and sp.should_spool("any topic")
        assert j.judge(12.5) is not None  # still: no second warning
        j.health.answered()  # a delivery or a metadata listing got through
        assert j.judge(12.75) is None
    assert not sp.spooling and not sp.should_spool("t")
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "gateway.spool"]
    assert said == [
        (logging.WARNING, f"spooling new records: Kafka is unreachable ({DOWN})"),
        (logging.INFO, "Kafka takes records again: new records go to Kafka once the spool "
                       "holds none of their topic"),
    ]
    # A blip shorter than spool_after is not an outage; the clock restarts with each one.
    j.health.mark_down(LIBRDKAFKA, DOWN)
    assert j.judge(20.0) is None
    j.health.answered()
    assert j.judge(21.0) is None
    j.health.mark_down(LIBRDKAFKA, DOWN)
    assert j.judge(21.5) is None
    assert j.judge(23.0) is None
    assert j.judge(23.5) is not None
    j.core.close()


def test_records_outstanding_with_no_report_for_spool_after_spool(
        loop: asyncio.AbstractEventLoop) -> None:
    j = Judged(loop)
    assert j.core.push([rec(i, 0) for i in range(3)], 0) == 3  # a hung broker: no answer
    assert j.judge(0.0) is None
    assert j.judge(1.9) is None
    assert j.judge(2.0) == "Kafka has answered no record for 2 s (3 waiting)"
    j.fake.deliver(0)  # one answer: reachable, and the wait starts again
    j.kp.poll_now()
    assert j.judge(2.5) is None
    assert j.judge(4.0) is None
    assert j.judge(4.5) == "Kafka has answered no record for 2 s (2 waiting)"
    j.fake.deliver(1)
    j.fake.deliver(2)
    j.kp.poll_now()
    assert j.judge(4.75) is None  # nothing outstanding
    assert j.judge(100.0) is None
    # Slow but answering: records always outstanding, a report between two looks.
    j.core.push([rec(i, 0) for i in range(3, 20)], 0)
    for step, i in enumerate(range(3, 20)):
        assert j.judge(200.0 + 1.5 * step) is None
        j.fake.deliver(i)
        j.kp.poll_now()
    assert reports(j.core) and j.spooler.unreachable is None
    j.core.close()


def test_librdkafka_s_queue_past_the_high_mark_spools_at_once(
        loop: asyncio.AbstractEventLoop) -> None:
    j = Judged(loop, high_mark=2)
    j.core.push([rec(0), rec(1)], 0)
    assert j.judge(0.0) is None  # at the mark: not past it
    j.core.push([rec(2)], 0)
    assert j.judge(0.0) == "librdkafka's queue holds 3 records (high mark 2)"
    assert j.spooler.should_spool("t")
    j.fake.deliver(0)
    j.kp.poll_now()
    assert j.judge(0.1) is None
    assert not j.spooler.should_spool("t")
    j.core.close()


def test_a_topic_the_spool_holds_keeps_spooling_while_kafka_is_reachable(
        tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        spool = await started_spool(tmp_path / "spool")
        j = Judged(loop, spool=spool)
        sp = j.spooler
        spool.append("a", [rec(0), rec(1)])
        assert j.judge(0.0) is None and not sp.spooling
        assert sp.should_spool("a") and not sp.should_spool("b")
        await spool.sync()
        reader = spool.reader()
        batch = await reader.read(1)
        reader.acknowledge(batch.end)
        assert sp.should_spool("a")  # one record of "a" still to forward
        batch = await reader.read(10)
        reader.acknowledge(batch.end)
        assert not sp.should_spool("a")
        spool.append("a", [rec(2)])
        await spool.aclose()
        # Records found at opening hold every topic until forwarded.
        again = open_spool(tmp_path / "spool")
        j = Judged(loop, spool=again)
        assert j.spooler.should_spool("b") and not j.spooler.spooling
        again.close()

    run(main())


# -- Spooler: durable and failed ranges ------------------------------------------------------


class Settling:
    """Three streams' cores spooled through a Spooler over a TokenSpool."""

    def __init__(self, loop: asyncio.AbstractEventLoop, **listeners: Listener) -> None:
        self.kp = make_kp(loop)
        self.spool = TokenSpool()
        self.spooler = Spooler(self.spool, self.kp, spool_after=2.0,  # type: ignore[arg-type]
                               high_mark=100)
        self.listeners = {name: listeners.get(name, Listener(name)) for name in "ABC"}
        self.cores = {name: v3_core(self.kp, lst) for name, lst in self.listeners.items()}

    def spool_items(self, name: str, n: int) -> int:
        core = self.cores[name]
        first = self.spool.next_seq
        assert self.spooler.spool_items(core, [rec(first + k) for k in range(n)], 0) == n
        return core.spool_token

    def flushes(self) -> dict[str, int]:
        return {name: lst.flushes for name, lst in self.listeners.items()}

    def close(self) -> None:
        for core in self.cores.values():
            core.close()


def test_a_durable_range_settles_the_cores_in_it_and_tells_each_listener_once(
        loop: asyncio.AbstractEventLoop) -> None:
    s = Settling(loop)
    assert [s.spool_items("A", 2), s.spool_items("B", 2), s.spool_items("A", 2),
            s.spool_items("C", 2)] == [2, 4, 6, 8]
    s.spooler._on_durable(0, 4)
    assert s.flushes() == {"A": 1, "B": 1, "C": 0}
    assert codes(reports(s.cores["A"])) == [202, 202]  # its second batch (token 6) waits
    assert codes(reports(s.cores["B"])) == [202, 202]
    assert reports(s.cores["C"]) == []
    s.spooler._on_durable(4, 8)
    assert s.flushes() == {"A": 2, "B": 1, "C": 1}
    assert codes(reports(s.cores["A"])) == [202, 202]
    assert codes(reports(s.cores["C"])) == [202, 202]
    # One range covering two batches of a core: its listener is told once.
    s.spool_items("A", 1)
    s.spool_items("B", 1)
    s.spool_items("A", 1)
    s.spooler._on_durable(8, 11)
    assert s.flushes() == {"A": 3, "B": 2, "C": 1}
    assert codes(reports(s.cores["A"])) == [202, 202]
    assert (s.cores["A"].spooled, s.cores["B"].spooled, s.cores["C"].spooled) == (6, 3, 2)
    s.close()


def test_a_failed_range_gives_its_records_50003_and_the_later_ones_still_202(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    s = Settling(loop)
    s.spool_items("A", 2)
    s.spool_items("B", 1)
    s.spool_items("C", 1)  # token 4: after the failed range
    with caplog.at_level(logging.ERROR, logger="gateway.spool"):
        s.spooler._on_error(0, 3, OSError(errno.EIO, "Input/output error"))
    assert s.flushes() == {"A": 1, "B": 1, "C": 0}
    want = {"error_code": 50003, "message": "the spool could not store this record "
            "([Errno 5] Input/output error); resend it"}
    assert reports(s.cores["A"]) == [want, want]
    assert reports(s.cores["B"]) == [want]
    assert s.cores["A"].failed == 2 and s.cores["A"].spooled == 0
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.spool"] == [
        "the spool could not write records 0 to 2: [Errno 5] Input/output error"]
    s.spooler._on_durable(3, 4)
    assert reports(s.cores["C"]) == [SPOOLED]
    s.close()


def test_a_listener_that_raises_ends_its_own_stream_only(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    boom = RuntimeError("boom")
    s = Settling(loop, A=Listener("A", fail=boom),
                 B=Listener("B", fail=ValueError("bad"), fail_again=KeyError("worse")))
    for name in "ABC":
        s.spool_items(name, 2)
    with caplog.at_level(logging.ERROR, logger="gateway.spool"):
        s.spooler._on_durable(0, 6)
    assert s.listeners["A"].internal_errors == [boom]
    assert len(s.listeners["B"].internal_errors) == 1
    assert s.flushes() == {"A": 1, "B": 1, "C": 1}
    # Every core was settled, the one after the failing listeners too.
    for name in "ABC":
        assert codes(reports(s.cores[name])) == [202, 202], name
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.spool"]
    assert said.count("internal error while reporting spooled records") == 2
    assert "a stream could not end after its internal error" in said
    s.close()


def test_the_real_spool_s_writer_settles_streams_through_the_spooler(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        kp = make_kp(loop)
        spool = open_spool(tmp_path / "spool")
        spooler = Spooler(spool, kp, spool_after=2.0, high_mark=100)
        spool.start(loop, on_durable=spooler._on_durable, on_error=spooler._on_error)
        a, b = Listener("A"), Listener("B")
        ca, cb = v3_core(kp, a), v3_core(kp, b)
        spooler.spool_items(ca, [rec(0), rec(1)], 0)
        spooler.spool_items(cb, [rec(2)], 0)
        await until(lambda: not ca.pending and not cb.pending, "the 202s")
        assert codes(reports(ca)) == [202, 202] and codes(reports(cb)) == [202]
        assert a.flushes >= 1 and b.flushes >= 1

        # The disk fails: the records being written get 50003; later ones are refused at once.
        def writev(fd: int, bufs: Any) -> int:
            raise OSError(errno.EIO, "Input/output error")

        with monkeypatch.context() as patched:
            patched.setattr(os, "writev", writev)
            spooler.spool_items(ca, [rec(3)], 0)
            await until(lambda: not ca.pending, "the failed write")
        got = reports(ca)
        assert codes(got) == [50003]
        assert got[0]["message"].startswith("the spool could not store this record (")
        spooler.spool_items(cb, [rec(4)], 0)
        got = reports(cb)
        assert codes(got) == [50003]
        assert got[0]["message"].startswith("the spool cannot take this record: the spool failed")
        ca.close()
        cb.close()
        await spool.aclose()

    run(main())


# -- the forwarder ----------------------------------------------------------------------------


class Edge:
    """A gateway's produce side with the spool on: KafkaProducer over the fake librdkafka, a
    real spool, the Spooler started as the server starts it (judgement timer, forwarder); the
    metadata cache's partition count of every topic is ``partitions``."""

    def __init__(self, path: Path, partitions: int | None = 3, **spool_options: Any) -> None:
        self.partitions = partitions
        loop = asyncio.get_running_loop()
        self.health = ClusterHealth()
        self.kp = make_kp(loop, self.health)
        self.fake: RecordingProducer = self.kp.current
        self.now = 0.0
        self.spool = open_spool(path, **spool_options)
        self.spooler = Spooler(self.spool, self.kp, spool_after=2.0, high_mark=10**6,
                               clock=lambda: self.now)
        self.kp.spooler = self.spooler
        self.fake.keep_failed = True  # (gateway/app.py: failed records' contents for the spool)
        self.spooler.start(loop, lambda topic: self.partitions)
        assert self.spooler.forwarder is not None
        self.forwarder = self.spooler.forwarder

    def down(self) -> None:
        """Kafka judged unreachable: every broker down for spool_after."""
        self.health.mark_down(LIBRDKAFKA, DOWN)
        self.spooler.judge()
        self.now += 5.0
        assert self.spooler.judge() is not None

    def up(self) -> None:
        self.health.answered()
        assert self.spooler.judge() is None

    async def spooled(self, *batches: tuple[str, list[tuple]]) -> None:
        """Append while Kafka is judged unreachable, wait until durable, then Kafka is back."""
        self.down()
        for topic, records in batches:
            self.spool.append(topic, records)
        await self.spool.sync()
        self.up()

    def queued(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.fake.produced) >= n

    async def close(self) -> None:
        if not self.spooler.closed:
            await self.spooler.stop()
            self.kp.close()

    async def __aenter__(self) -> Edge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def test_the_forwarder_produces_in_order_and_acknowledges_once_kafka_has_every_record(
        tmp_path: Path, fast: None) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("a", [rec(0, key=b"k"), rec(1, 2), rec(2, headers=[("h", None)])]),
                            ("b", [rec(3), rec(4, 1)]),
                            ("a", [rec(5, key=b"k")]))
            await until(e.queued(6), "six produce calls")
            got = [(p[0], p[1], p[2], p[3], p[5], p[6]) for p in e.fake.produced]
            # In the spool's order, each topic's records in theirs.
            assert got == [("a", b"value-0", b"k", -1, TS, None),
                           ("a", b"value-1", None, 2, TS + 1, None),
                           ("a", b"value-2", None, -1, TS + 2, [("h", None)]),
                           ("b", b"value-3", None, -1, TS + 3, None),
                           ("b", b"value-4", None, 1, TS + 4, None),
                           ("a", b"value-5", b"k", -1, TS + 5, None)]
            for i in range(5):
                e.fake.deliver(i)
            await asyncio.sleep(0.1)  # many polls and judgements
            assert e.spool.acknowledged.seq == 0 and not e.spool.empty  # record 4 of "b" waits
            assert e.spooler.should_spool("a") and e.spooler.should_spool("b")
            e.fake.deliver(5)
            await until(lambda: e.spool.empty, "the acknowledgement")
            assert (e.forwarder.forwarded, e.forwarder.dropped, e.forwarder.retried) == (6, 0, 0)
            assert e.spool.stats().records_forwarded_total == 6
            assert not e.spooler.should_spool("a") and not e.spooler.should_spool("b")
            assert len(e.fake.produced) == 6

    run(main())


def test_the_forwarder_sends_again_only_the_records_refused_for_now(
        tmp_path: Path, fast: None, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("t", [rec(i) for i in range(5)]))
            await until(e.queued(5), "five produce calls")
            e.fake.deliver(0)
            e.fake.deliver(1, KafkaError._MSG_TIMED_OUT)
            e.fake.deliver(2)
            e.fake.deliver(3, KafkaError.NOT_LEADER_FOR_PARTITION)
            e.fake.deliver(4)
            await until(e.queued(7), "the records refused for now, sent again")
            assert values(e.fake, 5) == [b"value-1", b"value-3"]  # in order, no duplicate
            assert not e.spool.empty
            e.fake.deliver(5, KafkaError.REQUEST_TIMED_OUT)  # record 1 once more
            e.fake.deliver(6)
            await until(e.queued(8), "record 1 sent a third time")
            assert values(e.fake, 7) == [b"value-1"]
            e.fake.deliver(7)
            await until(lambda: e.spool.empty, "the acknowledgement")
            assert (e.forwarder.forwarded, e.forwarder.dropped, e.forwarder.retried) == (5, 0, 3)
            assert len(e.fake.produced) == 8
            # The forwarder sends its failures again itself: none went back to the spool.
            assert e.spool.next_seq == 5 and e.spooler.respooled == 0
            warned = [r.getMessage() for r in caplog.records if r.name == "gateway.spool"]
            assert "2 spooled records refused by Kafka for now: sent again in 0.0 s" in warned

    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        run(main())


def test_a_record_refused_for_good_is_dropped_counted_and_logged(
        tmp_path: Path, fast: None, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge, "MAYBE_LATER_ATTEMPTS", 3)

    async def main() -> None:
        async with Edge(tmp_path / "spool", partitions=3) as e:
            # Record 1 too large for the broker; record 2 for a partition the topic no longer has.
            await e.spooled(("t", [rec(0), rec(1), rec(2, partition=7), rec(3)]))
            await until(e.queued(3), "three produce calls")
            e.fake.deliver(0)
            e.fake.deliver(1, KafkaError.MSG_SIZE_TOO_LARGE)
            e.fake.deliver(2)
            await until(lambda: e.spool.empty, "the acknowledgement")
            assert values(e.fake) == [b"value-0", b"value-1", b"value-3"]  # 2 never produced
            assert (e.forwarder.forwarded, e.forwarder.dropped) == (2, 2)
            assert e.forwarder.retried == 2  # record 2, sent again twice before given up

    with caplog.at_level(logging.ERROR, logger="gateway.spool"):
        run(main())
    said = [r.getMessage() for r in caplog.records
            if r.levelno == logging.ERROR and r.name == "gateway.spool"]
    assert len(said) == 2
    assert said[0].startswith("spooled record 1 of topic t dropped: Kafka refused it for good: "
                              '{"error_code":413')
    assert said[1].startswith("spooled record 2 of topic t dropped: Kafka refused it for good: "
                              '{"error_code":40402')


def test_a_topic_grown_since_the_last_forward_takes_records_of_its_new_partitions(
        tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge, "MAYBE_LATER_ATTEMPTS", 3)

    async def main() -> None:
        async with Edge(tmp_path / "spool", partitions=3) as e:
            await e.spooled(("t", [rec(0, 2)]))
            await until(e.queued(1), "the first forward")
            e.fake.deliver(0)
            await until(lambda: e.spool.empty, "the first acknowledgement")
            # The topic gets 6 partitions; a client that knows it sends a record to partition 4.
            e.partitions = 6
            await e.spooled(("t", [rec(1, 4)]))
            await until(lambda: len(e.fake.produced) == 2 or e.forwarder.dropped > 0,
                        "the second forward")
            assert e.forwarder.dropped == 0
            assert [(p[1], p[3]) for p in e.fake.produced] == [(b"value-0", 2), (b"value-1", 4)]
            e.fake.deliver(1)
            await until(lambda: e.spool.empty, "the second acknowledgement")

    run(main())


def test_an_internal_error_in_the_forwarder_s_reports_costs_a_resend_only(
        tmp_path: Path, fast: None, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            real = e.kp.error_of
            calls = []

            def error_of(err: int) -> tuple[int, str]:
                calls.append(err)
                if len(calls) == 1:
                    raise RuntimeError("a bug in the report handling")
                return real(err)

            e.kp.error_of = error_of  # type: ignore[method-assign]
            await e.spooled(("t", [rec(i) for i in range(3)]))
            await until(e.queued(3), "the forward")
            e.fake.deliver(0)
            e.fake.deliver(1, KafkaError._TRANSPORT)  # its report handling raises
            # The forwarder's stream of reports ended with 50003 for records 1 and 2: sent again.
            await until(e.queued(5), "records 1 and 2 sent again")
            assert values(e.fake, 3) == [b"value-1", b"value-2"]
            e.fake.deliver(2)  # (record 2's first copy: its report comes late, ignored)
            e.fake.deliver(3)
            e.fake.deliver(4)
            await until(lambda: e.spool.empty, "the acknowledgement")
            assert (e.forwarder.forwarded, e.forwarder.dropped) == (3, 0)

    with caplog.at_level(logging.ERROR):
        run(main())
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert said == ["internal error while reporting to the spool's forwarder: ending it with "
                    "50003 reports"]


def test_after_an_unexpected_error_the_batch_is_sent_again_through_fresh_cores(
        tmp_path: Path, fast: None, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            real = e.fake.produce_record
            calls = []

            def produce_record(*args: Any) -> int:
                calls.append(args)
                if len(calls) == 2:
                    raise RuntimeError("a bug in the producer")
                return real(*args)

            e.fake.produce_record = produce_record  # type: ignore[method-assign]
            await e.spooled(("t", [rec(i) for i in range(3)]))
            # Record 0 was handed over, then the producer raised: the batch is read again.
            await until(e.queued(4), "the batch sent again")
            for i in range(4):
                e.fake.deliver(i)  # (the first copy of record 0 is reported too)
            await until(lambda: e.spool.empty, "the acknowledgement")
            # Record 0 twice (its first copy may be in Kafka: at least once), the others once.
            assert values(e.fake) == [b"value-0", b"value-0", b"value-1", b"value-2"]
            assert (e.forwarder.forwarded, e.forwarder.dropped, e.forwarder.retried) == (3, 0, 0)

    with caplog.at_level(logging.ERROR, logger="gateway.spool"):
        run(main())
    said = [r.getMessage() for r in caplog.records if r.name == "gateway.spool"]
    assert said == ["the spool's forwarder failed; it goes on in a second"]


def test_the_forwarder_waits_while_kafka_is_judged_unreachable(
        tmp_path: Path, fast: None) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            e.down()
            e.spool.append("t", [rec(0), rec(1)])
            await e.spool.sync()
            await asyncio.sleep(0.1)  # many judgements: Kafka still down
            assert e.fake.produced == [] and not e.spool.empty
            e.up()
            await until(e.queued(2), "the forwarding")
            e.fake.deliver(0)
            await until(lambda: e.kp.outstanding() == 1, "record 0's report polled")
            # Refused for now while Kafka has gone away again: not sent again before it is back.
            e.down()
            e.fake.deliver(1, KafkaError._TRANSPORT)
            await until(lambda: e.forwarder.retried == 1, "record 1's refusal")
            await asyncio.sleep(0.1)  # many judgements and retry delays: Kafka still down
            assert len(e.fake.produced) == 2
            e.up()
            await until(e.queued(3), "record 1 sent again")
            assert values(e.fake, 2) == [b"value-1"]
            e.fake.deliver(2)
            await until(lambda: e.spool.empty, "the acknowledgement")

    run(main())


def test_stopping_with_a_batch_in_flight_keeps_it_in_the_spool(
        tmp_path: Path, fast: None) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("t", [rec(i) for i in range(3)]))
            await until(e.queued(3), "the forwarding")
            e.fake.deliver(0)  # Kafka has one record of the batch; the stop comes meanwhile
            e.kp.poll_now()
            e.forwarder.wake()  # (a wake-up meeting the stop's cancellation)
            t0 = time.monotonic()
            await e.close()
            # Kafka never answers the rest: stopping does not wait for it (this run() gives
            # up after 20 s, and the stop hung until then).
            assert time.monotonic() - t0 < 10

    run(main())
    # Restarted: the whole batch is forwarded again (at least once), nothing is lost.
    spool = open_spool(tmp_path / "spool")
    batch = spool.reader().read_batch(10, 1 << 20)
    assert [r[4] for r in batch.records] == [b"value-0", b"value-1", b"value-2"]
    spool.close()


def test_a_graceful_stop_gives_the_batch_in_flight_time_to_be_acknowledged(
        tmp_path: Path, fast: None) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("t", [rec(i) for i in range(3)]))
            await until(e.queued(3), "the forwarding")
            stopping = asyncio.ensure_future(e.spooler.stop_forwarding(10.0))
            await asyncio.sleep(0.05)
            assert not stopping.done()  # waiting for Kafka's reports
            for i in range(3):
                e.fake.deliver(i)
            await asyncio.wait_for(stopping, 5)
            assert e.spool.acknowledged.seq == 3  # checkpointed: sent nothing twice
            e.spool.append("t", [rec(3)])  # (taken while stopping; not forwarded now)
            await e.spool.sync()
            await asyncio.sleep(0.05)
            assert len(e.fake.produced) == 3

    run(main())
    spool = open_spool(tmp_path / "spool")
    batch = spool.reader().read_batch(10, 1 << 20)
    assert [r[4] for r in batch.records] == [b"value-3"]
    spool.close()


def test_a_graceful_stop_leaves_a_batch_kafka_does_not_answer_to_the_next_start(
        tmp_path: Path, fast: None) -> None:
    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("t", [rec(i) for i in range(3)]))
            await until(e.queued(3), "the forwarding")
            e.fake.deliver(0)
            await asyncio.wait_for(e.spooler.stop_forwarding(0.05), 5)
            assert e.spool.acknowledged.seq == 0

    run(main())
    spool = open_spool(tmp_path / "spool")
    batch = spool.reader().read_batch(10, 1 << 20)
    assert [r[4] for r in batch.records] == [b"value-0", b"value-1", b"value-2"]
    spool.close()


# -- records Kafka fails with a retriable error -------------------------------------------------


def test_records_kafka_fails_with_a_retriable_error_are_spooled_and_reported_202_in_order(
        tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        kp = make_kp(loop)
        fake = kp.current
        spool = open_spool(tmp_path / "spool")
        spooler = Spooler(spool, kp, spool_after=2.0, high_mark=100)
        spool.start(loop, on_durable=spooler._on_durable, on_error=spooler._on_error)
        kp.spooler = spooler
        fake.keep_failed = True  # as gateway/app.py sets it with the spool on
        listener = Listener()
        core = v3_core(kp, listener)
        assert core.spool_retriable
        items = [rec(0, 0), rec(1, 1, key=b"k1"), rec(2, 2, headers=[("h", b"v"), ("n", None)]),
                 rec(3, 0), rec(4, 1)]
        assert core.push(items, 0) == 5
        fake.deliver(0)
        fake.deliver(1, KafkaError._MSG_TIMED_OUT)
        fake.deliver(2, KafkaError.NOT_ENOUGH_REPLICAS)
        fake.deliver(3, KafkaError.MSG_SIZE_TOO_LARGE)  # not retriable: its own report
        fake.deliver(4)
        kp.poll_now()
        assert spooler.respooled == 2 and spool.next_seq == 2
        assert codes(reports(core)) == [200]  # record 1 waits for the spool
        await until(lambda: not core.pending, "the spool")
        assert listener.flushes >= 2
        got = reports(core)
        assert got[:2] == [SPOOLED, SPOOLED]
        assert codes(got[2:]) == [413, 200]
        assert (core.ok, core.spooled, core.failed) == (2, 2, 1)
        batch = await spool.reader().read(10)
        assert batch.records == [(0, "t", 1, b"k1", b"value-1", None, TS + 1),
                                 (1, "t", 2, None, b"value-2", [("h", b"v"), ("n", None)], TS + 2)]
        core.close()
        await spool.aclose()

    run(main())


def test_a_failed_record_the_spool_cannot_take_gets_50003(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    kp = make_kp(loop)
    full = SpoolFull("spool full (4000 of 4096 bytes)")
    spooler = Spooler(TokenSpool(refuse=full), kp,  # type: ignore[arg-type]
                      spool_after=2.0, high_mark=100)
    kp.spooler = spooler
    kp.current.keep_failed = True
    listener = Listener()
    core = v3_core(kp, listener)
    core.push([rec(0), rec(1)], 0)
    kp.current.deliver(0, KafkaError._TRANSPORT)
    kp.current.deliver(1)
    with caplog.at_level(logging.WARNING, logger="gateway.spool"):
        kp.poll_now()
    got = reports(core)
    assert got[0] == {"error_code": 50003, "message": "Kafka failed this record and the spool "
                                                      f"cannot take it: {full}; resend it"}
    assert codes(got[1:]) == [200]
    assert (core.pending, core.spooling, core.failed) == (0, 0, 1)
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.spool"] == [
        f"1 records Kafka failed could not be spooled: {full}"]
    core.close()


def test_a_listener_that_raises_while_told_of_a_refused_respool_ends_its_own_stream_only(
        loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture) -> None:
    kp = make_kp(loop)
    busy = TokenSpool(refuse=SpoolBusy("spool write buffer full"))
    spooler = Spooler(busy, kp, spool_after=2.0, high_mark=100)  # type: ignore[arg-type]
    kp.spooler = spooler
    kp.current.keep_failed = True
    boom = RuntimeError("boom")
    a, b = Listener("A", fail=boom), Listener("B")
    ca, cb = v3_core(kp, a), v3_core(kp, b)
    ca.push([rec(0)], 0)
    cb.push([rec(1)], 0)
    kp.current.deliver(0, KafkaError._TRANSPORT)
    kp.current.deliver(1, KafkaError._TRANSPORT)
    with caplog.at_level(logging.ERROR):
        kp.poll_now()  # nothing raised out of the producer's poll
    assert a.internal_errors == [boom]
    assert b.flushes == 1 and codes(reports(cb)) == [50003]
    assert codes(reports(ca)) == [50003]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        "internal error while reporting spooled records"]
    ca.close()
    cb.close()


# -- hand_over ----------------------------------------------------------------------------------


def test_hand_over_spools_a_batch_while_the_spooler_says_so_else_pushes_it(
        tmp_path: Path) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        health = ClusterHealth()
        kp = make_kp(loop, health)
        fake = kp.current
        spool = open_spool(tmp_path / "spool")
        spooler = Spooler(spool, kp, spool_after=2.0, high_mark=100)
        spool.start(loop, on_durable=spooler._on_durable, on_error=spooler._on_error)
        kp.spooler = spooler
        listener = Listener()
        core = v3_core(kp, listener)
        other = v3_core(kp, topic="u")

        # Kafka down, not judged unreachable yet: records still go to librdkafka.
        health.mark_down(LIBRDKAFKA, DOWN)
        assert hand_over(core, kp, [rec(0)], 0, None, "p") == 1
        assert values(fake) == [b"value-0"] and spool.next_seq == 0
        # Judged unreachable: the batch goes to the spool; no produce call.
        spooler.unreachable = f"Kafka is unreachable ({DOWN})"
        assert hand_over(core, kp, [rec(1), rec(2)], 0, None, "p") == 2
        assert len(fake.produced) == 1 and spool.next_seq == 2
        await until(lambda: core.spooled == 2, "the 202s")
        assert listener.flushes >= 1
        # Reachable again: "t" stays on the spool while it holds records of it, "u" does not.
        health.answered()
        spooler.unreachable = None
        assert hand_over(core, kp, [rec(3)], 0, None, "p") == 1
        assert hand_over(other, kp, [rec(4)], 0, None, "p") == 1
        assert values(fake) == [b"value-0", b"value-4"] and spool.next_seq == 3
        await spool.sync()
        await until(lambda: core.spooled == 3, "the last 202")
        fake.deliver(0)
        kp.poll_now()
        assert codes(reports(core)) == [200, 202, 202, 202]
        core.close()
        other.close()
        await spool.aclose()

    run(main())


def test_hand_over_charges_the_rate_limits_for_spooled_records(
        loop: asyncio.AbstractEventLoop) -> None:
    kp = make_kp(loop)
    spool = TokenSpool()
    spooler = Spooler(spool, kp, spool_after=2.0, high_mark=100)  # type: ignore[arg-type]
    spooler.unreachable = "Kafka is unreachable (test)"
    kp.spooler = spooler
    rates = RateLimiter(RateSettings(enabled=True, records_per_principal=3), clock=lambda: 0.0)
    core = v3_core(kp)
    assert hand_over(core, kp, [rec(i) for i in range(5)], 0, rates, "alice") == 5
    assert [len(records) for _, records in spool.batches] == [3]
    assert rates.allowance("alice")[0] == 0
    assert rates.allowance("bob")[0] == 3
    spooler._on_durable(0, 3)
    assert codes(reports(core)) == [202, 202, 202, 429, 429]
    assert kp.current.produced == []
    core.close()


def test_hand_over_without_a_spool_refuses_at_once_while_kafka_is_unreachable(
        loop: asyncio.AbstractEventLoop) -> None:
    health = ClusterHealth()
    kp = make_kp(loop, health)
    core = v3_core(kp)
    health.mark_down(LIBRDKAFKA, DOWN)
    assert hand_over(core, kp, [rec(0), rec(1)], 0, None, "p") == 2
    assert kp.current.produced == []
    assert reports(core) == [{"error_code": 50003, "message": f"Kafka is unreachable ({DOWN}): "
                              "this record was not handed to Kafka; resend it"}] * 2
    health.answered()
    assert hand_over(core, kp, [rec(2)], 0, None, "p") == 1
    assert values(kp.current) == [b"value-2"]
    core.close()


def test_two_batches_are_with_kafka_at_once_and_a_refusal_in_the_first_waits_for_the_second(
        tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge, "FORWARD_MAX_RECORDS", 3)
    monkeypatch.setattr(edge, "BATCHES_IN_FLIGHT", 2)

    async def main() -> None:
        async with Edge(tmp_path / "spool") as e:
            await e.spooled(("t", [rec(i) for i in range(7)]))
            # Batches of 3: the first two are handed over before Kafka answers any record.
            await until(e.queued(6), "two batches handed over")
            await asyncio.sleep(0.05)
            assert len(e.fake.produced) == 6
            for i in range(3):
                e.fake.deliver(i)
            await until(lambda: e.spool.acknowledged.seq == 3, "the first batch acknowledged")
            await until(e.queued(7), "the third batch handed over")
            e.fake.deliver(3)
            e.fake.deliver(4, KafkaError.NOT_LEADER_FOR_PARTITION)
            e.fake.deliver(5)
            e.fake.deliver(6)
            # The refused record goes again once every batch in flight has settled, and the
            # spool is acknowledged past them only once Kafka has it.
            await until(e.queued(8), "the refused record sent again")
            assert values(e.fake, 7) == [b"value-4"]
            assert e.spool.acknowledged.seq == 3
            e.fake.deliver(7)
            await until(lambda: e.spool.empty, "every batch acknowledged")
            assert (e.forwarder.forwarded, e.forwarder.retried) == (7, 1)

    run(main())
