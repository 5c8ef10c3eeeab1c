"""A bounded pool of long-lived librdkafka consumers that read one partition range per request.

Each worker thread owns one compiled consumer (``gateway._speedups.RdConsumer``) for the life of
the process. Its ``fetch()`` writes the v1 answer (``[{"key","value","partition","offset"}]``,
base64) straight from librdkafka's messages: no Python object per record. No group is joined and
nothing is committed (``group.id`` is only there because librdkafka insists on one).

**Cursors.** A read that stops before the end of its partition (``count`` or ``max_bytes``)
leaves the partition assigned, with what the consumer prefetched still queued. A read that
continues it (same topic and partition, its next offset: what a client reading a partition front
to back asks for) goes to that consumer and finds its records there at once; any other read
``assign()``s its partition at the requested offset. A read that reaches the end unassigns
(an assigned partition at its end is fetched again every ``fetch.wait.max.ms``), and so does a
consumer whose cursor nobody continues within ``CURSOR_IDLE``. A read that continues an idle
consumer's cursor begins on the loop, with what the consumer has queued (a fetch that does not
wait): when that answers it, no thread is involved at all; else the worker goes on from there. (Pausing the partition instead
was measured to stall the next assignment's first fetch for 1 s now and then.)

The event loop never calls librdkafka here. It hands each job to an idle worker, preferring one
whose cursor the job continues, and gets one answer back through ``call_soon_threadsafe``. Jobs
beyond the workers wait in a bounded queue on the loop; past the bound, or after waiting longer
than ``queue_timeout``, the request fails with 503/50301, the answer Confluent's v1
simple-consumer pool gives when it has no consumer to lend.

How a read decides it is done, and why (measured against Tansu, the broker of the tests):
- Records that exist arrive in the first fetch response, ~1-3 ms after ``assign()`` (the
  broker answers at once when it has data; ``fetch.wait.max.ms`` only delays an empty answer,
  and a fetch still in flight from the previous request on this consumer).
- The end of the partition comes from the fetch responses, never from ListOffsets. Tansu's
  ListOffsets (``watermarks(cached=False)``) reports the first offset of the last batch + 1 (one
  batch of 3 records: 1), but its Fetch responses carry the true high watermark, and that is
  what librdkafka uses for ``_PARTITION_EOF`` and for the cached watermarks
  (``watermarks(cached=True)``, updated before the records of that response are
  queued). So after records: stop when the next offset reaches the cached high watermark of the
  response that carried them; with none: stop at ``_PARTITION_EOF``.
- Out of range: a real Kafka answers OFFSET_OUT_OF_RANGE, which librdkafka (with
  ``auto.offset.reset=error``) reports as ``_AUTO_OFFSET_RESET``. Tansu answers an offset past
  the end with empty responses and no error, for ever. So "no event at all within
  ``suspect_after``" only raises a suspicion; either way the range is then *measured*: the
  earliest offset from ListOffsets (right on Tansu), the end from a fetch just below ListOffsets'
  high watermark (whose response carries the true one). Only an offset outside that measured
  range is a 416; an offset inside it (a slow broker) is read again with full patience.

What a read that fails answers:
- Kafka cannot be reached, or does not answer within ``request_timeout`` (a broker down, hung or
  being restarted): 503/50003, the client may retry (``errors.KafkaUnavailable``).
- The consumer's client says it does not know the topic or partition: librdkafka says so at
  once, from its own state, while the cluster cannot be reached (measured: ListOffsets gives
  ``_UNKNOWN_PARTITION`` within 60 ms of the broker's death). It is never taken as "not
  found": the request was checked against the cluster's metadata, so this is
  ``NotKnownToKafka`` (503/50003), and the endpoint answers 404 only if a fresh listing from the
  cluster says the topic or partition is gone (gateway.api.consume_v1).
- Kafka refuses the read with an error a retry cannot fix: 500/50001.

``renew()`` (the embedded broker died, gateway.app): reads in progress end with 503/50003 within
``POLL_SLICE``, and every consumer is replaced by a new one before its next read. The broker
comes back empty and its topics are created again under new topic ids; a consumer that fetched
a partition of the old topic fetches by the old id, and librdkafka 2.16 then crashes the whole
process on the answer (a NULL topic name in the leader update of the fetch response, on its
rdk:main thread, in ``rd_kafka_metadata_update_op``: measured against Tansu). New consumers
know no old id.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway import errors
from gateway._speedups import RdConsumer, RdKafkaError
from gateway.futures import settle

log = logging.getLogger("gateway.consume")

MAX_OFFSET = (1 << 63) - 1
# Longest single wait inside a read: a read notices renew() within this.
POLL_SLICE = 0.1
V1_BINARY = RdConsumer.FORMAT_V1_BINARY
# How long a consumer keeps the partition of its last read (and what it prefetched) for a read
# that continues it; then it unassigns it.
CURSOR_IDLE = 2.0

# Settings the read algorithm depends on: applied after the caller's properties.
REQUIRED_CONSUMER_CONFIG: dict[str, Any] = {
    "group.id": "kafka-gateway-v1-consume",  # required by librdkafka; never joined (assign only)
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,  # "[] at the end" is decided from this event
    "auto.offset.reset": "error",  # an out-of-range offset must surface, not silently move
    # Java's default and Confluent's: HW is the end; read_committed would stop at the LSO,
    # which the end-of-partition checks above do not model.
    "isolation.level": "read_uncommitted",
}

# Tunables (a caller's property wins).
DEFAULT_CONSUMER_CONFIG: dict[str, Any] = {
    # How long the broker holds an empty fetch. It is the latency of "[] at the end", and of the
    # first fetch of a request that follows another on the same consumer (one fetch in flight
    # per connection). 0 makes Tansu answer nothing at all (measured): keep it >= 1.
    "fetch.wait.max.ms": 2,
    # Bounded prefetch per consumer; a request never needs more than max_bytes queued.
    "queued.max.messages.kbytes": 16384,
    # librdkafka waits this long before refetching once the queue thresholds are hit (1 s by
    # default): a large request would stall on it.
    "fetch.queue.backoff.ms": 5,
    "socket.nagle.disable": True,
}

# librdkafka error codes the read tells apart (rdkafka.h).
_ERR_PARTITION_EOF = -191
_ERR_UNKNOWN_PARTITION = -190
_ERR_UNKNOWN_TOPIC = -188
_ERR_AUTO_OFFSET_RESET = -140
_ERR_FATAL = -150
_ERR_AUTHENTICATION = -169
_ERR_SSL = -181
_ERR_INVALID_ARG = -186
_ERR_UNSUPPORTED_FEATURE = -165
_ERR_OFFSET_OUT_OF_RANGE = 1
_ERR_UNKNOWN_TOPIC_OR_PART = 3

_OUT_OF_RANGE = {_ERR_OFFSET_OUT_OF_RANGE, _ERR_AUTO_OFFSET_RESET}
# "Unknown" from the consumer's client: its own view, never the cluster's word on existence.
_NOT_KNOWN = {_ERR_UNKNOWN_TOPIC_OR_PART, _ERR_UNKNOWN_TOPIC, _ERR_UNKNOWN_PARTITION}
# Local (librdkafka) errors that waiting cannot cure; other local ones (transport, broker down,
# timeouts) are retried by librdkafka until the request's deadline.
_LOCAL_PERMANENT = {_ERR_AUTHENTICATION, _ERR_SSL, _ERR_INVALID_ARG, _ERR_UNSUPPORTED_FEATURE,
                    _ERR_FATAL}
# Broker errors a retry can cure (Kafka's protocol marks them retriable): the others fail the read.
_BROKER_RETRIABLE = {5, 6, 7, 13, 14, 15, 16, 19, 20, 56, 74, 75, 78, 80, 89}


class ConsumeResult(NamedTuple):
    """A read's answer: the v1 binary JSON array of its records, and how many."""

    body: bytes
    records: int


class OffsetOutOfRangeError(errors.OffsetOutOfRange):
    """416/41601 with the range the broker has now: ``earliest`` .. ``end`` (``end`` answers
    ``[]``)."""

    def __init__(self, topic: str, partition: int, offset: int, earliest: int, end: int) -> None:
        where = (
            f"the records are at offsets {earliest} to {end - 1} and {end} is the end"
            if end > earliest
            else f"the partition has no records and {end} is the end"
        )
        super().__init__(
            f"offset {offset} is out of range for topic {topic} partition {partition}: {where} "
            "(it answers [] until more are written)"
        )
        self.earliest = earliest
        self.end = end


class ConsumerPoolBusy(errors.UpstreamError):
    """Every consumer is busy and the wait queue is full, or a request waited too long:
    Confluent's v1 answer (``simpleconsumer.pool.timeout.ms``): 503 with error_code 50301."""

    status = 503
    error_code = 50301


class NotKnownToKafka(errors.KafkaUnavailable):
    """The consumer's Kafka client does not know ``topic``/``partition`` now, although the
    cluster's metadata listed it when the request was checked: the cluster cannot be reached,
    or the topic changed since (503/50003 unless a fresh listing says it is gone)."""

    def __init__(self, topic: str, partition: int, reason: str) -> None:
        super().__init__(
            f"Kafka cannot tell where topic {topic} partition {partition} is now "
            f"({reason}): the cluster may be unreachable; retry later"
        )
        self.topic = topic
        self.partition = partition


class _Suspect(Exception):
    """The read saw no record and no end: the offset may be out of range (measure it)."""


@dataclass(slots=True, eq=False)
class _Job:
    topic: str
    partition: int
    offset: int
    count: int
    max_bytes: int
    future: asyncio.Future[ConsumeResult]
    enqueued_at: float
    abandoned: bool = False  # set on the loop when nobody waits for the answer any more
    generation: int = 0  # the pool's generation when the read started (see renew)
    # Begun on the loop (ConsumerPool._read_now): the records it has, and the worker goes on
    # from where the consumer stands, with the events that fetch met still to be looked at.
    pieces: list[bytes] | None = None
    n: int = 0
    size: int = 0


class _Drop:
    """A worker's order to unassign the partition of a cursor nobody continued."""


_DROP = _Drop()


class _Worker:
    """One thread and its consumer. ``cursor`` is where its consumer stands: (topic,
    partition, next offset), None when nowhere useful. The consumer is the thread's while the
    worker is ``busy`` (a job was handed to it and not answered yet), the loop's otherwise:
    only the loop hands out jobs, so the two never use it at once."""

    __slots__ = ("jobs", "busy", "cursor", "thread", "stopped", "consumer", "generation", "epoch")

    def __init__(self, stopped: asyncio.Future[None]) -> None:
        self.jobs: queue.SimpleQueue[_Job | _Drop | None] = queue.SimpleQueue()
        self.busy = False
        self.cursor: tuple[str, int, int] | None = None
        self.thread: threading.Thread | None = None
        self.stopped = stopped
        self.consumer: Any = None  # set by the thread (None: it could not make one)
        self.generation = -1  # the pool's generation its consumer belongs to
        self.epoch = 0  # counts the jobs handed to it (a cursor's expiry names its epoch)


class ConsumerPool:
    def __init__(
        self,
        client_config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        size: int = 4,
        *,
        max_queued: int | None = None,
        queue_timeout: float = 1.0,
        request_timeout: float = 5.0,
        suspect_after: float = 0.05,
        consumer_factory: Callable[[dict[str, Any]], Any] = RdConsumer,
    ) -> None:
        if size < 1:
            raise ValueError("a consumer pool needs at least one consumer")
        self.size = size
        self.max_queued = 64 * size if max_queued is None else max_queued
        self.queue_timeout = queue_timeout
        self.request_timeout = request_timeout
        self.suspect_after = suspect_after
        self._loop = loop
        conf = dict(DEFAULT_CONSUMER_CONFIG)
        conf.update(client_config)
        conf.update(REQUIRED_CONSUMER_CONFIG)
        self._config = conf
        self._factory = consumer_factory
        self._waiting: deque[_Job] = deque()  # loop side: jobs no worker has taken yet
        self._outstanding = 0  # waiting + running jobs (loop thread only)
        self._closed = False
        self._generation = 0  # renew() counts up; a worker's consumer of an older one is replaced
        self._workers: list[_Worker] = []
        for i in range(size):
            worker = _Worker(loop.create_future())
            worker.thread = threading.Thread(
                target=self._run, args=(worker,), name=f"gateway-consume-{i}", daemon=True
            )
            self._workers.append(worker)
            worker.thread.start()

    # -- loop side ------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(
        self, topic: str, partition: int, offset: int, count: int, max_bytes: int
    ) -> asyncio.Future[ConsumeResult]:
        """Queue a read; the future gives its ``ConsumeResult`` or a ``GatewayError``. Cancel
        the future to drop a read that has not started yet."""
        if self._closed:
            raise errors.ShuttingDown("the gateway is shutting down")
        if self._outstanding >= self.size + self.max_queued:
            raise ConsumerPoolBusy(
                f"all {self.size} consumers are busy and {self.max_queued} requests wait: retry later"
            )
        fut: asyncio.Future[ConsumeResult] = self._loop.create_future()
        job = _Job(topic, partition, offset, count, max_bytes, fut, time.monotonic())
        idle = None
        for worker in self._workers:
            if not worker.busy:
                if worker.cursor == (topic, partition, offset):
                    idle = worker
                    if self._read_now(worker, job):
                        return fut
                    break
                if idle is None:
                    idle = worker
        fut.add_done_callback(lambda f: _abandon(job) if f.cancelled() else None)
        self._outstanding += 1
        if idle is not None:
            self._hand(idle, job)
        else:
            self._waiting.append(job)
        return fut

    def _read_now(self, worker: _Worker, job: _Job) -> bool:
        """A read that continues ``worker``'s cursor, begun on the loop with what its consumer
        has queued (fetch without waiting: nothing blocks). True when that answered it; else
        the job carries what it got to the worker, which goes on from there."""
        consumer = worker.consumer
        if consumer is None or worker.generation != self._generation or not consumer.queued():
            return False
        topic, partition = job.topic, job.partition
        body, k = consumer.fetch(job.count, job.max_bytes, 0, V1_BINARY, store=False,
                                 stop_on_event=True)
        job.pieces = [body] if k else []
        job.n = k
        job.size = consumer.fetched_bytes if k else 0
        if not k:
            return False
        position = consumer.position([(topic, partition)])[0]
        high = consumer.watermarks(topic, partition, True)[1]
        if high >= 0 and position >= high:
            worker.cursor = None  # at the end: see _park
            consumer.assign([])
        elif job.n < job.count and job.size < job.max_bytes:
            return False
        else:
            worker.cursor = (topic, partition, position)
            self._expire_later(worker)
        job.future.set_result(ConsumeResult(body, k))
        return True

    async def fetch(
        self, topic: str, partition: int, offset: int, count: int, max_bytes: int
    ) -> ConsumeResult:
        """Records of ``topic``/``partition`` from ``offset`` on, as many as exist now, at most
        ``count`` and about ``max_bytes`` of key and value bytes (always at least one record
        when one exists). ``[]`` at the end of the partition; ``OffsetOutOfRangeError`` outside
        ``[earliest, end]``; ``KafkaUnavailable`` (``NotKnownToKafka`` among them) when Kafka
        cannot be reached or does not answer in time; ``KafkaRequestFailed`` when it fails the
        read."""
        return await self.submit(topic, partition, offset, count, max_bytes)

    def _hand(self, worker: _Worker, job: _Job | _Drop) -> None:
        worker.busy = True
        worker.epoch += 1
        worker.jobs.put(job)

    def _expire_later(self, worker: _Worker) -> None:
        if worker.cursor is not None:
            self._loop.call_later(CURSOR_IDLE, self._expire, worker, worker.epoch)

    def _expire(self, worker: _Worker, epoch: int) -> None:
        """Nobody continued ``worker``'s cursor since ``epoch``: unassign its partition."""
        if not worker.busy and worker.epoch == epoch and worker.cursor is not None and not self._closed:
            self._hand(worker, _DROP)

    def _next_for(self, worker: _Worker) -> None:
        """``worker`` is free: give it the waiting job that continues its cursor, else the
        oldest; jobs that waited too long or were abandoned are answered on the way."""
        waiting = self._waiting
        now = time.monotonic()
        while waiting and (waiting[0].abandoned or now - waiting[0].enqueued_at > self.queue_timeout):
            job = waiting.popleft()
            self._outstanding -= 1
            if not job.abandoned:
                settle(job.future, None, ConsumerPoolBusy(
                    f"no consumer became free within {self.queue_timeout:g}s: retry later"
                ))
        if not waiting:
            return
        cursor = worker.cursor
        chosen = None
        if cursor is not None:
            for job in waiting:
                if (job.topic, job.partition, job.offset) == cursor and not job.abandoned:
                    chosen = job
                    break
        if chosen is None:
            chosen = waiting.popleft()
        else:
            waiting.remove(chosen)
        self._hand(worker, chosen)

    def _resolve(self, worker: _Worker, job: _Job | _Drop, result: Any,
                 exc: BaseException | None) -> None:
        worker.busy = False
        if isinstance(job, _Job):
            self._outstanding -= 1
            settle(job.future, result, exc)
        if not self._closed:
            self._next_for(worker)
            if not worker.busy:
                self._expire_later(worker)

    def renew(self) -> None:
        """The cluster behind the consumers is gone (it comes back as a new one): reads in
        progress end with 503/50003, and each consumer is replaced before its next read."""
        self._generation += 1

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking requests; waiting ones fail with 503; workers close their consumers."""
        if self._closed:
            return
        self._closed = True
        while self._waiting:
            job = self._waiting.popleft()
            self._outstanding -= 1
            settle(job.future, None, errors.ShuttingDown("the gateway is shutting down"))
        for worker in self._workers:
            worker.jobs.put(None)
        done, pending = await asyncio.wait([w.stopped for w in self._workers], timeout=timeout)
        if pending:
            log.warning("%d consumer threads did not stop within %gs", len(pending), timeout)

    # -- worker threads ------------------------------------------------------------------
    def _post(self, worker: _Worker, job: _Job | _Drop, result: Any,
              exc: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve, worker, job, result, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _new_consumer(self) -> tuple[Any, Exception | None]:
        """(a consumer, None), or (None, why not): a bad -X property, said by every job."""
        try:
            return self._factory(self._config), None
        except Exception as exc:
            log.error("cannot create a Kafka consumer: %s", exc)
            return None, exc

    def _close_consumer(self, consumer: Any) -> None:
        try:
            consumer.close()
        except Exception as exc:
            log.warning("closing a consumer failed: %s", exc)

    def _run(self, worker: _Worker) -> None:
        generation = self._generation
        consumer, startup_error = self._new_consumer()
        worker.consumer, worker.generation = consumer, generation
        try:
            while True:
                job = worker.jobs.get()
                if job is None:
                    break
                if isinstance(job, _Drop):
                    # Nobody continued the last read: stop fetching its partition.
                    worker.cursor = None
                    if consumer is not None and generation == self._generation:
                        try:
                            consumer.assign([])
                        except Exception as exc:  # noqa: BLE001 - the next read assigns anew
                            log.warning("unassigning a consumer failed: %s", exc)
                    self._post(worker, job, None, None)
                    continue
                if job.abandoned:
                    self._post(worker, job, None, None)
                    continue
                if self._closed:
                    self._post(worker, job, None, errors.ShuttingDown("the gateway is shutting down"))
                    continue
                if generation != self._generation:
                    generation = self._generation
                    worker.cursor = None
                    if consumer is not None:
                        self._close_consumer(consumer)
                    consumer, startup_error = self._new_consumer()
                    worker.consumer, worker.generation = consumer, generation
                    job.pieces = None  # (begun on the replaced consumer: read from the start)
                if consumer is None:
                    self._post(worker, job, None, errors.KafkaRequestFailed(
                        f"no Kafka consumer: {startup_error}"
                    ))
                    continue
                job.generation = generation
                try:
                    result = self._read(consumer, worker, job)
                except errors.GatewayError as exc:
                    worker.cursor = None
                    self._post(worker, job, None, exc)
                except Exception as exc:
                    worker.cursor = None
                    log.exception("consume from %s[%d] failed", job.topic, job.partition)
                    self._post(worker, job, None, errors.KafkaRequestFailed(f"Kafka error: {exc}"))
                else:
                    self._post(worker, job, result, None)
        finally:
            if consumer is not None:
                self._close_consumer(consumer)
            try:
                self._loop.call_soon_threadsafe(_set_done, worker.stopped)
            except RuntimeError:
                pass

    def _read(self, consumer: Any, worker: _Worker, job: _Job) -> ConsumeResult:
        topic, partition, offset = job.topic, job.partition, job.offset
        deadline = time.monotonic() + self.request_timeout
        if not 0 <= offset <= MAX_OFFSET:
            earliest, end = self._measure_range(consumer, worker, job, deadline)
            raise OffsetOutOfRangeError(topic, partition, offset, earliest, end)
        suspect_after: float | None = self.suspect_after
        while True:
            try:
                return self._read_from(consumer, worker, job, deadline, suspect_after)
            except _Suspect:
                pass
            earliest, end = self._measure_range(consumer, worker, job, deadline)
            if offset == end:
                return ConsumeResult(b"[]", 0)
            if not earliest <= offset < end:
                raise OffsetOutOfRangeError(topic, partition, offset, earliest, end)
            # The records are there: the broker was only slow. Read again, patiently.
            suspect_after = None

    def _place(self, consumer: Any, worker: _Worker, topic: str, partition: int, offset: int) -> None:
        """Make ``consumer`` read ``topic``/``partition`` from ``offset``: keep what it has
        queued when that is where it stands, else assign afresh."""
        if worker.cursor != (topic, partition, offset):
            worker.cursor = None
            consumer.assign([(topic, partition, offset)])
        consumer.eof()  # (ends and errors of an earlier read are not this one's)
        consumer.take_errors()

    def _park(self, consumer: Any, worker: _Worker, topic: str, partition: int, at_end: bool) -> None:
        """The read is over. At the end of the partition, unassign it: an assigned partition at
        its end is fetched again every ``fetch.wait.max.ms``, for ever. Else keep it, with what
        it prefetched, for a read that continues it (``CURSOR_IDLE`` at most)."""
        if at_end:
            worker.cursor = None
            consumer.assign([])
            return
        position = consumer.position([(topic, partition)])[0]
        worker.cursor = (topic, partition, position) if position >= 0 else None
    def _read_from(
        self, consumer: Any, worker: _Worker, job: _Job, deadline: float,
        suspect_after: float | None,
    ) -> ConsumeResult:
        topic, partition = job.topic, job.partition
        count, max_bytes = job.count, job.max_bytes
        last_error = ""
        first_deadline = time.monotonic() + suspect_after if suspect_after is not None else deadline
        at_end = False
        if job.pieces is not None:
            # Begun on the loop, where the consumer stands: go on from there (the events its
            # fetch met are still to be looked at below).
            pieces, n, size = job.pieces, job.n, job.size
            job.pieces = None
        else:
            pieces = []
            n = size = 0
            self._place(consumer, worker, topic, partition, job.offset)
        try:
            while True:
                limit = deadline if n else min(first_deadline, deadline)
                wait = limit - time.monotonic()
                if wait <= 0:
                    if n:
                        return _answer(pieces, n)  # as many as arrived in time
                    if suspect_after is not None and limit == first_deadline:
                        raise _Suspect
                    raise errors.KafkaUnavailable(
                        f"Kafka did not answer a fetch from {topic}[{partition}] within "
                        f"{self.request_timeout:g}s" + (f": {last_error}" if last_error else "")
                    )
                body, k = consumer.fetch(
                    count - n, max_bytes - size, max(1, int(min(wait, POLL_SLICE) * 1000)),
                    V1_BINARY, store=False, stop_on_event=True, continued=n > 0,
                )
                self._check_current(job)
                if k:
                    pieces.append(body)
                    n += k
                    size += consumer.fetched_bytes
                    if n >= count or size >= max_bytes:
                        return _answer(pieces, n)
                for code, reason in consumer.take_errors():
                    if code in _OUT_OF_RANGE:
                        if n:
                            return _answer(pieces, n)
                        raise _Suspect
                    _raise_fatal(code, reason, topic, partition)
                    last_error = reason  # retriable: librdkafka retries until our deadline
                for t, p, _end in consumer.eof():
                    if t == topic and p == partition:
                        at_end = True
                        return _answer(pieces, n)
                if k:
                    # The high watermark of the fetch response that carried these records.
                    high = consumer.watermarks(topic, partition, True)[1]
                    if high >= 0 and consumer.position([(topic, partition)])[0] >= high:
                        at_end = True
                        return _answer(pieces, n)
        finally:
            self._park(consumer, worker, topic, partition, at_end)

    def _check_current(self, job: _Job) -> None:
        """KafkaUnavailable once ``renew()`` was called since the read started."""
        if job.generation != self._generation:
            raise errors.KafkaUnavailable(
                f"Kafka became unreachable while reading {job.topic}[{job.partition}]: retry later"
            )

    def _measure_range(self, consumer: Any, worker: _Worker, job: _Job, deadline: float) -> tuple[int, int]:
        """(earliest, end) of the partition now: earliest from ListOffsets, end from a fetch."""
        topic, partition = job.topic, job.partition
        for _attempt in range(3):
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                low, high = consumer.watermarks(topic, partition, False, max(1, int(wait * 1000)))
            except RdKafkaError as exc:
                _raise_fatal(exc.code, str(exc), topic, partition)
                # Retriable (transport, timeout, no broker up): Kafka could not be asked.
                raise errors.KafkaUnavailable(
                    f"could not read the offsets of {topic}[{partition}]: {exc}"
                ) from exc
            # Tansu's ListOffsets high watermark can be low (the last batch's first offset + 1):
            # read from just below it; the fetch response carries the true one.
            start = max(low, high - 1)
            worker.cursor = None
            self._place(consumer, worker, topic, partition, start)
            try:
                while (wait := deadline - time.monotonic()) > 0:
                    _body, k = consumer.fetch(
                        1, 1 << 30, max(1, int(min(wait, POLL_SLICE) * 1000)), V1_BINARY,
                        store=False, stop_on_event=True,
                    )
                    self._check_current(job)
                    if k:
                        end = consumer.watermarks(topic, partition, True)[1]
                        return low, max(end, consumer.position([(topic, partition)])[0])
                    out_of_range = False
                    for code, reason in consumer.take_errors():
                        if code in _OUT_OF_RANGE:
                            out_of_range = True
                        else:
                            _raise_fatal(code, reason, topic, partition)
                    for t, p, end in consumer.eof():
                        if t == topic and p == partition:
                            return low, end
                    if out_of_range:
                        break  # the log moved between ListOffsets and the fetch: measure again
            finally:
                worker.cursor = None
                consumer.assign([])
        raise errors.KafkaUnavailable(
            f"could not find the offset range of {topic}[{partition}] within {self.request_timeout:g}s"
        )


def _answer(pieces: list[bytes], n: int) -> ConsumeResult:
    if len(pieces) == 1:
        return ConsumeResult(pieces[0], n)
    # Each piece is a JSON array: join their insides.
    return ConsumeResult(b"[" + b",".join(p[1:-1] for p in pieces) + b"]", n)


def _raise_fatal(code: int, reason: str, topic: str, partition: int) -> None:
    """Raise the answer for an error that waiting in this read cannot fix; return for a
    retriable one."""
    if code in _NOT_KNOWN:
        raise NotKnownToKafka(topic, partition, reason)
    if code in _LOCAL_PERMANENT or (code > 0 and code not in _BROKER_RETRIABLE):
        raise errors.KafkaRequestFailed(f"Kafka error: {reason}")



def _abandon(job: _Job) -> None:
    job.abandoned = True


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
