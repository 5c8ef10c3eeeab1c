"""The disk spool in the produce path (issue 11; docs/api.md §5 "Disk spool"): when records
go to the spool instead of Kafka, their 202 reports, and the forwarder that replays the spool
into Kafka once it is back.

**When.** ``Spooler.should_spool(topic)`` is asked once per batch of records (hand_over). It is
true while the gateway judges Kafka unreachable (``judge``, every ``JUDGE_INTERVAL``: every
broker connection down for ``spool_after`` seconds; records outstanding in librdkafka and no
delivery report for ``spool_after`` seconds, which is how a hung broker looks; or librdkafka's
queue past its high mark), and for a topic the spool still holds records of (so a topic's
records reach Kafka in the order they came, whatever the judgement says meanwhile).

**Reports.** ``spool_items()`` appends a batch through ``StreamCore.spool`` (one
``Spool.append`` per batch: no Python call per record), and notes (token, core). Records Kafka
fails with a retriable error come back from the producer's poll (``respool``) and are appended
the same way. When the spool's writer says a
range is durable (``on_durable``, once per writer round), every core with a record in it gets
its 202 reports filed (``StreamCore.spool_settle``) and its listener told (``flush_reports``),
as after a delivery poll.

**Forwarding.** ``Forwarder`` reads the spool in order while Kafka is judged reachable, hands
each batch to the same producer as live records (so a record forwarded and a later live record
of the same partition keep their order in librdkafka's queue), with up to BATCHES_IN_FLIGHT
batches with Kafka at once, and acknowledges each, in order, once Kafka has every record of
it: the spool checkpoints the position and gives back the segments before it. A record refused with a retriable error is sent again (the failed ones only, in
order); one refused for good is dropped, logged and counted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.kafka.producer import KafkaProducer
from gateway.produce.core import REPORT_FORMAT_V3, STOP_OTHER_TOPIC, StreamCore, new_core
from gateway.produce.spool import Spool, SpoolStats

log = logging.getLogger("gateway.spool")

JUDGE_INTERVAL = 0.25  # seconds between two looks at Kafka's reachability
SPOOLED_MESSAGE = (
    "spooled: Kafka is unreachable; the gateway will produce this record when it is back")
FORWARD_MAX_RECORDS = 2500  # records per forwarded batch
FORWARD_MAX_BYTES = 4 << 20  # bytes per forwarded batch
BATCHES_IN_FLIGHT = 4  # forwarded batches with Kafka at once
RETRY_DELAY = 0.5  # seconds before a retriable refusal is sent again
FAILURE_PAUSE = 1.0  # seconds the forwarder waits after an unexpected error before going on
# A record refused with 50003 (retriable) is sent again until Kafka takes it. One refused
# with an unknown topic or partition is sent again for a while (a broker that came back empty
# gets its topics created again), then dropped; any other refusal is for good.
MAYBE_LATER_CODES = frozenset({40401, 40402})
MAYBE_LATER_ATTEMPTS = 60  # x RETRY_DELAY: half a minute
UNKNOWN_PARTITIONS = (1 << 31) - 1  # a topic the gateway could not look up while spooling


class Spooler:
    """Decides when records are spooled, spools them, files their 202 reports. One per
    gateway process, built by the server when ``--spool-dir`` is set."""

    def __init__(
        self,
        spool: Spool,
        producer: KafkaProducer,
        *,
        spool_after: float,
        high_mark: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self._producer = producer
        self.spool_after = spool_after
        self.high_mark = high_mark
        self._clock = clock
        # Why new records go to the spool (None: they go to Kafka unless their topic is held).
        self.unreachable: str | None = None
        self._down_since: float | None = None
        self._waiting_since: float | None = None  # records outstanding since, no report since
        self._reports_seen = 0
        self._watch: collections.deque[tuple[int, StreamCore]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.forwarder: Forwarder | None = None
        self.closed = False
        self.respooled = 0  # records Kafka failed with a retriable error, spooled instead

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop, partitions: Callable[[str], int | None]) -> None:
        self._loop = loop
        self.spool.start(loop, on_durable=self._on_durable, on_error=self._on_error)
        self._timer = loop.call_later(JUDGE_INTERVAL, self._tick)
        self.forwarder = Forwarder(self, self._producer, partitions)
        self.forwarder.start(loop)
        if not self.spool.empty:
            st = self.spool.stats()
            log.info("the spool holds %d records (%d bytes): they are forwarded once Kafka is "
                     "reachable", st.records, st.bytes)

    async def stop_forwarding(self, timeout: float = 5.0) -> None:
        """The gateway is stopping: hand Kafka no more spooled records; the batch in flight
        gets ``timeout`` seconds (Forwarder.stop)."""
        if self.forwarder is not None:
            await self.forwarder.stop(timeout)

    async def stop(self) -> None:
        """Stop forwarding, wait for what was appended to be durable, close the spool."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.stop_forwarding(0.0)
        try:
            await self.spool.sync()
        except Exception as exc:  # noqa: BLE001 - a failed spool still closes
            log.warning("the spool could not sync at stop: %s", exc)
        await self.spool.aclose()

    # -- the judgement ----------------------------------------------------------------------
    def _tick(self) -> None:
        self._timer = None
        if self.closed or self._loop is None:
            return
        try:
            self.judge()
        finally:
            self._timer = self._loop.call_later(JUDGE_INTERVAL, self._tick)

    def judge(self) -> str | None:
        """Look at Kafka's reachability now; sets and returns ``unreachable``."""
        now = self._clock()
        producer = self._producer
        reason: str | None = None
        down = producer.health.down
        if down is None:
            self._down_since = None
        else:
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since >= self.spool_after:
                reason = f"Kafka is unreachable ({down})"
        outstanding = producer.outstanding()
        reports = producer.reports_seen
        if outstanding == 0 or reports != self._reports_seen:
            self._waiting_since = None if outstanding == 0 else now
            self._reports_seen = reports
        elif self._waiting_since is None:
            self._waiting_since = now
        if reason is None and self._waiting_since is not None and (
                now - self._waiting_since >= self.spool_after):
            reason = (f"Kafka has answered no record for {now - self._waiting_since:.0f} s "
                      f"({outstanding} waiting)")
        if reason is None and outstanding > self.high_mark:
            reason = f"librdkafka's queue holds {outstanding} records (high mark {self.high_mark})"
        was = self.unreachable
        self.unreachable = reason
        if (was is None) != (reason is None):
            if reason is not None:
                log.warning("spooling new records: %s", reason)
            else:
                log.info("Kafka takes records again: new records go to Kafka once the spool "
                         "holds none of their topic")
            if self.forwarder is not None:
                self.forwarder.wake()
        return reason

    def should_spool(self, topic: str) -> bool:
        """Whether a batch of ``topic`` goes to the spool (asked once per batch)."""
        return self.unreachable is not None or self.spool.holds(topic)

    @property
    def spooling(self) -> bool:
        """Kafka is judged unreachable: every new record goes to the spool (/readyz says so).
        Once it is reachable again, a topic the spool still holds keeps going there until
        forwarded, and /readyz says ready."""
        return self.unreachable is not None

    # -- spooling -------------------------------------------------------------------------
    def spool_items(self, core: StreamCore, items: list[Any], i: int, allow_records: int = -1,
                    allow_bytes: int = -1) -> int:
        """``core.spool`` items[i:] and watch for their durability; the index of the first
        item not taken (as push)."""
        if core.spooled_report is None:
            core.spooled_report = core.error_report(202, SPOOLED_MESSAGE)
        token0 = core.spool_token
        i = core.spool(items, i, self.spool, allow_records, allow_bytes)
        token = core.spool_token
        if token != token0:
            self._watch.append((token, core))
        return i

    def respool(self, cores: list[StreamCore]) -> None:
        """Append to the spool the records Kafka failed with a retriable error (the
        producer's poll found them: ReportRouter.take_respool), one append per core."""
        for core in cores:
            items = core.take_respool()
            if not items:
                continue
            if core.spooled_report is None:
                core.spooled_report = core.error_report(202, SPOOLED_MESSAGE)
            try:
                token = self.spool.append(core.topic_name, items)
            except Exception as exc:  # noqa: BLE001 - those records get 50003, not lost silently
                log.warning("%d records Kafka failed could not be spooled: %s", len(items), exc)
                try:
                    core.respool_failed(core.error_report(
                        50003, f"Kafka failed this record and the spool cannot take it: {exc}; "
                        "resend it"))
                    listener = core.listener
                    if listener is not None:
                        listener.flush_reports()
                except Exception as exc2:  # noqa: BLE001 - one stream's bug ends that stream only
                    _internal_error(core, exc2)
                continue
            self.respooled += len(items)
            core.respooled(token)
            self._watch.append((token, core))

    def _on_durable(self, first: int, end: int) -> None:
        self._settle(end, None)

    def _on_error(self, first: int, end: int, exc: BaseException) -> None:
        log.error("the spool could not write records %d to %d: %s", first, end - 1, exc)
        self._settle(end, f"the spool could not store this record ({exc}); resend it")

    def _settle(self, end: int, failure: str | None) -> None:
        watch = self._watch
        cores: dict[int, StreamCore] = {}
        while watch and watch[0][0] <= end:
            _, core = watch.popleft()
            cores[id(core)] = core
        for core in cores.values():
            report = None if failure is None else core.error_report(50003, failure)
            try:
                if core.spool_settle(end, report):
                    listener = core.listener
                    if listener is not None:
                        listener.flush_reports()
            except Exception as exc:  # noqa: BLE001 - one stream's bug ends that stream only
                _internal_error(core, exc)

    def stats(self) -> SpoolStats:
        return self.spool.stats()


def _internal_error(core: StreamCore, exc: BaseException) -> None:
    """Reporting a core's spooled records raised: log it and end that core's stream (its
    listener reports 50003 for what is pending); the other streams go on."""
    log.error("internal error while reporting spooled records", exc_info=exc)
    listener = core.listener
    if listener is not None:
        try:
            listener.on_internal_error(exc)
        except Exception:  # noqa: BLE001
            log.exception("a stream could not end after its internal error")


class _ForwardListener:
    """What the producer tells a forwarding core (gateway.kafka.producer.DeliveryListener)."""

    def __init__(self, forwarder: Forwarder) -> None:
        self._forwarder = forwarder

    def flush_reports(self) -> None:
        self._forwarder.progress()

    def on_queue_space(self) -> None:
        self._forwarder.progress()

    def on_internal_error(self, exc: BaseException) -> None:
        self._forwarder.progress()

    def describe(self) -> str:
        return "the spool's forwarder"


class Forwarder:
    """Replays the spool into Kafka, in order, while Kafka is judged reachable."""

    def __init__(self, spooler: Spooler, producer: KafkaProducer,
                 partitions: Callable[[str], int | None]) -> None:
        self._spooler = spooler
        self._producer = producer
        self._partitions = partitions
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener = _ForwardListener(self)
        self._cores: dict[str, tuple[StreamCore, int]] = {}  # topic -> (core, its partitions)
        self.forwarded = 0
        self.dropped = 0
        self.retried = 0
        self._stopping = False
        self._given_up = False  # stop's time for the batch in flight is over

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    def wake(self) -> None:
        self._event.set()

    def progress(self) -> None:
        self._event.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Read no more of the spool; the batch being forwarded is given ``timeout`` seconds to
        be acknowledged by Kafka (then checkpointed: a graceful stop sends nothing twice), and
        is left to the next start after that."""
        self._stopping = True
        self._event.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except (TimeoutError, asyncio.CancelledError):
            # (_forward checks _given_up too: asyncio.wait_for of Python 3.11 swallows a
            # cancellation that meets the event being set, and the batch's reports may never
            # come while Kafka is away.)
            self._given_up = True
            task.cancel()
        except Exception:  # noqa: BLE001 - logged by the task itself; stopping anyway
            pass
        if not task.done():
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping anyway
                pass

    def _close_cores(self) -> None:
        for core, _ in self._cores.values():
            core.close()
        self._cores.clear()

    async def _wait(self) -> None:
        self._event.clear()
        try:
            await asyncio.wait_for(self._event.wait(), JUDGE_INTERVAL)
        except TimeoutError:
            pass

    async def _run(self) -> None:
        """Up to BATCHES_IN_FLIGHT batches with Kafka at once (read, handed over, their
        outcomes awaited and acknowledged in order), so that librdkafka always has records
        while a batch's last acknowledgements come in."""
        spool = self._spooler.spool
        reader = spool.reader()
        flights: collections.deque[_Flight] = collections.deque()
        while True:
            if self._stopping and not flights:
                return
            try:
                if (not self._stopping and len(flights) < BATCHES_IN_FLIGHT
                        and self._spooler.unreachable is None
                        and (reader.position.seq < spool.durable_seq
                             or (not flights and not spool.empty))):
                    batch = await reader.read(FORWARD_MAX_RECORDS, FORWARD_MAX_BYTES)
                    if not batch.records:
                        reader.acknowledge(batch.end)  # (records skipped as corrupt)
                        continue
                    flight = await self._send(batch.records, batch.end, 1)
                    if flight is None:
                        return  # stopping: what is not acknowledged is sent at the next start
                    flights.append(flight)
                    continue
                if not flights:
                    await self._wait()
                    continue
                flight = flights[0]
                if not self._collect(flight):
                    if self._given_up:
                        return
                    await self._wait()
                    continue
                flights.popleft()
                if flight.retry:
                    # Rare (Kafka refused records it may take later): the batches after it
                    # settle first, then every refused record is sent again, in order.
                    retry = flight.retry
                    end = flight.end
                    while flights:
                        while not self._collect(flights[0]):
                            if self._given_up:
                                return
                            await self._wait()
                        later = flights.popleft()
                        retry += later.retry
                        end = later.end
                    if not await self._forward(sorted(retry, key=_seq_of), 2):
                        return
                    reader.acknowledge(end)
                else:
                    reader.acknowledge(flight.end)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the forwarder carries on after a pause
                log.exception("the spool's forwarder failed; it goes on in a second")
                # Read again from the acknowledged position, through new cores: records the
                # old ones still wait for must not take the new records' outcomes.
                flights.clear()
                self._close_cores()
                reader.rewind()
                await asyncio.sleep(FAILURE_PAUSE)

    def _core(self, topic: str) -> StreamCore:
        """The core forwarding ``topic``'s records. It checks partitions against the metadata
        cache's count of now: a new core replaces one made with another count (the topic grew,
        or was unknown) or broken by an internal error in its report handling (its records got
        50003: they are sent again through the new one), once it has no record with Kafka."""
        partitions = self._partitions(topic) or UNKNOWN_PARTITIONS
        entry = self._cores.get(topic)
        if entry is not None:
            core, known = entry
            if not core.broken and (known == partitions or len(core)):
                if core.producer is not self._producer.current:
                    core.rebind(self._producer.current)
                return core
            core.close()
        core = new_core(
            self._producer, topic, partitions, FORWARD_MAX_RECORDS * BATCHES_IN_FLIGHT, b"",
            self._listener, self._producer.error_of, _no_metrics, _outcome_report,
            REPORT_FORMAT_V3,
        )
        core.spool_retriable = False  # the forwarder sends its failures again itself
        self._cores[topic] = (core, partitions)
        return core

    async def _send(self, records: list[Any], end: Any, attempt: int) -> _Flight | None:
        """Hand ``records`` (the spool reader's tuples) to Kafka, in order, one run of a topic
        at a time (no Python call per record); None if the forwarder stops while librdkafka's
        queue is full."""
        flight = _Flight(end, attempt)
        i, n = 0, len(records)
        while i < n:
            core = self._core(records[i][1])
            j = core.push_spooled(records, i)
            if j > i:
                flight.parts.append(_Part(core, records[i:j]))
            if j < n and core.stop_reason != STOP_OTHER_TOPIC:
                # librdkafka's queue is full (the window holds every batch in flight).
                if self._stopping:
                    self._producer.kick()
                    return None
                self._producer.wait_for_space(self._listener)
                await self._wait()
            i = j
        self._producer.kick()
        return flight

    def _collect(self, flight: _Flight) -> bool:
        """Take the outcomes of ``flight`` that are in (in order: a part's records follow the
        earlier parts' in their core); True once they all are. Counts the forwarded records,
        drops (and logs) the ones refused for good, keeps the others in ``flight.retry``."""
        while flight.done < len(flight.parts):
            part = flight.parts[flight.done]
            taken, failures = part.core.take_settled(len(part.records) - part.taken)
            for pos, report in failures:
                rec = part.records[part.taken + pos]
                code = int(report.split(b",", 1)[0].rsplit(b":", 1)[1])
                if code != 50003 and (code not in MAYBE_LATER_CODES
                                      or flight.attempt >= MAYBE_LATER_ATTEMPTS):
                    self.dropped += 1
                    log.error("spooled record %d of topic %s dropped: Kafka refused it for "
                              "good: %s", rec[0], rec[1], report.decode(errors="replace").strip())
                else:
                    flight.retry.append(rec)
            self.forwarded += taken - len(failures)
            part.taken += taken
            if part.taken < len(part.records):
                return False
            flight.done += 1
        return True

    async def _forward(self, todo: list[Any], attempt: int) -> bool:
        """Send ``todo`` (records Kafka refused for now) again until every one is acknowledged
        or dropped for good (True), or the forwarder stops (False)."""
        while todo:
            self.retried += len(todo)
            log.warning("%d spooled records refused by Kafka for now: sent again in %.1f s",
                        len(todo), RETRY_DELAY)
            await asyncio.sleep(RETRY_DELAY)
            while self._spooler.unreachable is not None and not self._stopping:
                await self._wait()
            if self._stopping:
                return False
            flight = await self._send(todo, None, attempt)
            if flight is None:
                return False
            while not self._collect(flight):
                if self._given_up:
                    return False
                await self._wait()
            todo = flight.retry
            attempt += 1
        return True


class _Part:
    """Records of a forwarded batch handed to one core in one run, and how many of their
    outcomes were taken."""

    __slots__ = ("core", "records", "taken")

    def __init__(self, core: StreamCore, records: list[Any]) -> None:
        self.core = core
        self.records = records
        self.taken = 0


class _Flight:
    """A batch with Kafka: its parts in hand-over order, the spool position after it, the
    records to send again."""

    __slots__ = ("end", "attempt", "parts", "done", "retry")

    def __init__(self, end: Any, attempt: int) -> None:
        self.end = end
        self.attempt = attempt
        self.parts: list[_Part] = []
        self.done = 0  # parts whose every outcome is in
        self.retry: list[Any] = []


def _seq_of(record: Any) -> int:
    return int(record[0])


def _no_metrics(code: int, count: int) -> None:
    pass


def _outcome_report(code: int, message: str) -> bytes:
    """A forwarded record's failure, as the forwarder reads it back (code first)."""
    text = message.encode(errors="replace").replace(b'"', b"'")
    return b'{"error_code":%d,"message":"%s"}' % (code, text)
