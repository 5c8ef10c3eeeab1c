"""A bounded pool of long-lived librdkafka consumers that read one partition range per request.

Each worker thread owns one ``confluent_kafka.Consumer`` for the life of the process: a request
``assign()``s its partition at the requested offset, reads, and ``unassign()``s. No group is
joined and nothing is committed (``group.id`` is only there because librdkafka insists on one).
The event loop never calls librdkafka here: it queues a job and gets one answer per request
back through ``call_soon_threadsafe``. Jobs beyond the workers wait in a bounded queue; past the
bound, or after waiting longer than ``queue_timeout``, the request fails with 503/50301, the
answer Confluent's v1 simple-consumer pool gives when it has no consumer to lend.

How a read decides it is done, and why (measured against Tansu, the broker of the tests):
- Records that exist arrive in the first fetch response, ~1-3 ms after ``assign()`` (the
  broker answers at once when it has data; ``fetch.wait.max.ms`` only delays an empty answer,
  and a fetch still in flight from the previous request on this consumer).
- The end of the partition comes from the fetch responses, never from ListOffsets. Tansu's
  ListOffsets (``get_watermark_offsets``) reports the first offset of the last batch + 1 (one
  batch of 3 records: 1), but its Fetch responses carry the true high watermark, and that is
  what librdkafka uses for ``_PARTITION_EOF`` and for the cached watermarks
  (``get_watermark_offsets(cached=True)``, updated before the records of that response are
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from gateway import errors

log = logging.getLogger("gateway.consume")

MAX_OFFSET = (1 << 63) - 1
# Longest single wait inside a read: a read notices renew() within this.
POLL_SLICE = 0.1

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


class ConsumedRecord(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


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

    def __init__(self, topic: str, partition: int, err: KafkaError) -> None:
        super().__init__(
            f"Kafka cannot tell where topic {topic} partition {partition} is now "
            f"({err.str()}): the cluster may be unreachable; retry later"
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
    transform: Callable[[list[ConsumedRecord]], Any] | None
    future: asyncio.Future[Any]
    enqueued_at: float
    abandoned: bool = False  # set on the loop when nobody waits for the answer any more
    generation: int = 0  # the pool's generation when the read started (see renew)


_OUT_OF_RANGE = {KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET}
# "Unknown" from the consumer's client: its own view, never the cluster's word on existence.
_NOT_KNOWN = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
# Local (librdkafka) errors that waiting cannot cure; other local ones (transport, broker down,
# timeouts) are retried by librdkafka until the request's deadline.
_LOCAL_PERMANENT = {
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError._INVALID_ARG,
    KafkaError._UNSUPPORTED_FEATURE,
    KafkaError._FATAL,
}


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
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
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
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._outstanding = 0  # queued + running jobs (loop thread only)
        self._closed = False
        self._generation = 0  # renew() counts up; a worker's consumer of an older one is replaced
        self._stopped: list[asyncio.Future[None]] = []
        self._threads: list[threading.Thread] = []
        for i in range(size):
            stopped: asyncio.Future[None] = loop.create_future()
            t = threading.Thread(
                target=self._worker, args=(stopped,), name=f"gateway-consume-{i}", daemon=True
            )
            self._stopped.append(stopped)
            self._threads.append(t)
            t.start()

    # -- loop side ------------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(
        self,
        topic: str,
        partition: int,
        offset: int,
        count: int,
        max_bytes: int,
        transform: Callable[[list[ConsumedRecord]], Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a read; the future gives ``transform(records)`` (run on the worker thread, so
        encoding an answer does not hold the loop) or the records, or a ``GatewayError``.
        Cancel the future to drop a read that has not started yet."""
        if self._closed:
            raise errors.ShuttingDown("the gateway is shutting down")
        if self._outstanding >= self.size + self.max_queued:
            raise ConsumerPoolBusy(
                f"all {self.size} consumers are busy and {self.max_queued} requests wait: retry later"
            )
        fut: asyncio.Future[Any] = self._loop.create_future()
        job = _Job(topic, partition, offset, count, max_bytes, transform, fut, time.monotonic())
        fut.add_done_callback(lambda f: _abandon(job) if f.cancelled() else None)
        self._outstanding += 1
        self._jobs.put(job)
        return fut

    async def fetch(
        self, topic: str, partition: int, offset: int, count: int, max_bytes: int
    ) -> list[ConsumedRecord]:
        """Records of ``topic``/``partition`` from ``offset`` on, as many as exist now, at most
        ``count`` and about ``max_bytes`` of key and value bytes (always at least one record
        when one exists). ``[]`` at the end of the partition; ``OffsetOutOfRangeError`` outside
        ``[earliest, end]``; ``KafkaUnavailable`` (``NotKnownToKafka`` among them) when Kafka
        cannot be reached or does not answer in time; ``KafkaRequestFailed`` when it fails the
        read."""
        return await self.submit(topic, partition, offset, count, max_bytes)

    def _resolve(self, job: _Job, result: Any, exc: BaseException | None) -> None:
        self._outstanding -= 1
        fut = job.future
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def renew(self) -> None:
        """The cluster behind the consumers is gone (it comes back as a new one): reads in
        progress end with 503/50003, and each consumer is replaced before its next read."""
        self._generation += 1

    async def close(self, timeout: float = 5.0) -> None:
        """Stop taking requests; queued ones fail with 503; workers close their consumers."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        done, pending = await asyncio.wait(self._stopped, timeout=timeout)
        if pending:
            log.warning("%d consumer threads did not stop within %gs", len(pending), timeout)

    # -- worker threads ------------------------------------------------------------------
    def _post(self, job: _Job, result: Any, exc: BaseException | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._resolve, job, result, exc)
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

    def _worker(self, stopped: asyncio.Future[None]) -> None:
        generation = self._generation
        consumer, startup_error = self._new_consumer()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                if job.abandoned:
                    self._post(job, None, None)
                    continue
                if self._closed:
                    self._post(job, None, errors.ShuttingDown("the gateway is shutting down"))
                    continue
                waited = time.monotonic() - job.enqueued_at
                if waited > self.queue_timeout:
                    self._post(job, None, ConsumerPoolBusy(
                        f"no consumer became free within {self.queue_timeout:g}s: retry later"
                    ))
                    continue
                if generation != self._generation:
                    generation = self._generation
                    if consumer is not None:
                        self._close_consumer(consumer)
                    consumer, startup_error = self._new_consumer()
                if consumer is None:
                    self._post(job, None, errors.KafkaRequestFailed(
                        f"no Kafka consumer: {startup_error}"
                    ))
                    continue
                job.generation = generation
                try:
                    records = self._read(consumer, job)
                    result = job.transform(records) if job.transform is not None else records
                except errors.GatewayError as exc:
                    self._post(job, None, exc)
                except Exception as exc:
                    log.exception("consume from %s[%d] failed", job.topic, job.partition)
                    self._post(job, None, errors.KafkaRequestFailed(f"Kafka error: {exc}"))
                else:
                    self._post(job, result, None)
        finally:
            if consumer is not None:
                self._close_consumer(consumer)
            try:
                self._loop.call_soon_threadsafe(_set_done, stopped)
            except RuntimeError:
                pass

    def _read(self, consumer: Any, job: _Job) -> list[ConsumedRecord]:
        topic, partition, offset = job.topic, job.partition, job.offset
        deadline = time.monotonic() + self.request_timeout
        if not 0 <= offset <= MAX_OFFSET:
            earliest, end = self._measure_range(consumer, job, deadline)
            raise OffsetOutOfRangeError(topic, partition, offset, earliest, end)
        suspect_after: float | None = self.suspect_after
        while True:
            try:
                return self._read_from(consumer, job, deadline, suspect_after)
            except _Suspect:
                pass
            earliest, end = self._measure_range(consumer, job, deadline)
            if offset == end:
                return []
            if not earliest <= offset < end:
                raise OffsetOutOfRangeError(topic, partition, offset, earliest, end)
            # The records are there: the broker was only slow. Read again, patiently.
            suspect_after = None

    def _read_from(
        self, consumer: Any, job: _Job, deadline: float, suspect_after: float | None
    ) -> list[ConsumedRecord]:
        topic, partition = job.topic, job.partition
        count, max_bytes = job.count, job.max_bytes
        tp = TopicPartition(topic, partition, job.offset)
        out: list[ConsumedRecord] = []
        size = 0
        next_offset = job.offset
        last_error: KafkaError | None = None
        first_deadline = time.monotonic() + suspect_after if suspect_after is not None else deadline
        consumer.assign([tp])
        try:
            while True:
                limit = deadline if out else min(first_deadline, deadline)
                wait = limit - time.monotonic()
                if wait <= 0:
                    if out:
                        return out  # as many as arrived in time
                    if suspect_after is not None and limit == first_deadline:
                        raise _Suspect
                    raise errors.KafkaUnavailable(
                        f"Kafka did not answer a fetch from {topic}[{partition}] within "
                        f"{self.request_timeout:g}s" + (f": {last_error.str()}" if last_error else "")
                    )
                msg = consumer.poll(min(wait, POLL_SLICE))
                self._check_current(job)
                if msg is None:
                    continue
                # Everything queued now, in one call: a fetch response's records come together.
                batch = [msg, *consumer.consume(max(1, count - len(out)), 0)]
                for m in batch:
                    err = m.error()
                    if err is not None:
                        code = err.code()
                        if code == KafkaError._PARTITION_EOF:
                            if m.topic() == topic and m.partition() == partition:
                                return out
                            continue
                        if code in _OUT_OF_RANGE:
                            if out:
                                return out
                            raise _Suspect
                        _raise_fatal(err, topic, partition)
                        last_error = err  # retriable: librdkafka retries until our deadline
                        continue
                    off = m.offset()
                    if off < next_offset or m.partition() != partition or m.topic() != topic:
                        continue
                    key = m.key()
                    value = m.value()
                    n = (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
                    if out and size + n > max_bytes:
                        return out  # the first record always goes, so a reader always progresses
                    out.append(ConsumedRecord(off, key, value))
                    size += n
                    next_offset = off + 1
                    if len(out) >= count or size >= max_bytes:
                        return out
                if out:
                    # The high watermark of the fetch response that carried these records.
                    high = consumer.get_watermark_offsets(tp, cached=True)[1]
                    if high >= 0 and next_offset >= high:
                        return out
        finally:
            consumer.unassign()

    def _check_current(self, job: _Job) -> None:
        """KafkaUnavailable once ``renew()`` was called since the read started."""
        if job.generation != self._generation:
            raise errors.KafkaUnavailable(
                f"Kafka became unreachable while reading {job.topic}[{job.partition}]: retry later"
            )

    def _measure_range(self, consumer: Any, job: _Job, deadline: float) -> tuple[int, int]:
        """(earliest, end) of the partition now: earliest from ListOffsets, end from a fetch."""
        topic, partition = job.topic, job.partition
        tp = TopicPartition(topic, partition)
        for _attempt in range(3):
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=wait)
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None:
                    _raise_fatal(err, topic, partition)
                # Retriable (transport, timeout, no broker up): Kafka could not be asked.
                raise errors.KafkaUnavailable(
                    f"could not read the offsets of {topic}[{partition}]: "
                    f"{err.str() if err is not None else exc}"
                ) from exc
            # Tansu's ListOffsets high watermark can be low (the last batch's first offset + 1):
            # read from just below it; the fetch response carries the true one.
            start = max(low, high - 1)
            consumer.assign([TopicPartition(topic, partition, start)])
            try:
                while (wait := deadline - time.monotonic()) > 0:
                    msg = consumer.poll(min(wait, POLL_SLICE))
                    self._check_current(job)
                    if msg is None:
                        continue
                    err = msg.error()
                    if err is None:
                        end = consumer.get_watermark_offsets(tp, cached=True)[1]
                        return low, max(end, msg.offset() + 1)
                    code = err.code()
                    if code == KafkaError._PARTITION_EOF:
                        return low, msg.offset()
                    if code in _OUT_OF_RANGE:
                        break  # the log moved between ListOffsets and the fetch: measure again
                    _raise_fatal(err, topic, partition)
            finally:
                consumer.unassign()
        raise errors.KafkaUnavailable(
            f"could not find the offset range of {topic}[{partition}] within {self.request_timeout:g}s"
        )


def _raise_fatal(err: KafkaError, topic: str, partition: int) -> None:
    """Raise the answer for an error that waiting in this read cannot fix; return for a
    retriable one."""
    code = err.code()
    if code in _NOT_KNOWN:
        raise NotKnownToKafka(topic, partition, err)
    if err.fatal() or code in _LOCAL_PERMANENT or (code > 0 and not err.retriable()):
        raise errors.KafkaRequestFailed(f"Kafka error: {err.str()}")


def _abandon(job: _Job) -> None:
    job.abandoned = True


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
