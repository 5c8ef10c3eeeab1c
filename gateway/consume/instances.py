"""Consumer instances: named members of Kafka consumer groups that HTTP clients drive request by
request (Confluent's v2 consumer API, the Strimzi bridge's, Confluent's v1 instance read:
gateway.api.consumers, docs/api.md §12). Knows Kafka, not HTTP.

``InstanceRegistry`` holds the instances of this process, keyed by (group, name):

- at most ``max_instances`` (``--max-consumer-instances``); one more is ``TooManyInstances``
  (503/50302): the gateway is full for now, an instance frees its place when it is deleted or
  expires;
- an instance idle for ``idle_timeout`` seconds (``--consumer-instance-timeout``; Confluent's
  ``consumer.instance.timeout.ms``) is closed by a sweep on the event loop. Idle means no request
  of its is waiting or running: a long ``GET .../records`` keeps it alive, and its time counts
  from the end of its last request;
- with authentication on an instance belongs to the principal that created it: for anyone else
  it does not exist (``InstanceNotFound``, 404/40403), so that nobody learns its name;
- with ``--workers``, names are unique across the worker processes: each name is claimed in
  the ownership records (``owners``, gateway.consume.owners) before its instance is made, and
  released when it goes; the records also tell a worker which one holds an instance it does
  not (gateway.api.consumers hands such requests over).

Each ``ConsumerInstance`` owns one librdkafka consumer (``gateway._speedups.RdConsumer``) and
ONE worker thread. Every call into the consumer runs on that thread, one at a time, in the
order the requests came (the consumer is not thread-safe, and several of its calls block: a
fetch that waits for records, a commit, a seek, leaving the group); the event loop only queues
a job and gets its answer back through ``call_soon_threadsafe``. At most ``MAX_JOBS`` requests
of one instance wait or run at once; one more is ``InstanceBusy`` (429/42902). The consumer is
created on that thread too (``rd_kafka_new`` checks the properties: a bad one is
``InvalidConsumerConfig``, 422/42204) and closed there: on ``DELETE``, on expiry, on shutdown
(within the gateway's grace period) and when the embedded broker is replaced (``renew``: its
topics come back under new ids, which a consumer that fetched the old ones must never see).
Requests still waiting when an instance closes get ``InstanceNotFound``; the running one
finishes first.

Memory per instance is bounded by its librdkafka prefetch (``INSTANCE_CONFIG``: 8 MiB queued,
fetches of at most 8 MiB) and by each answer's ``max_bytes``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway import errors
from gateway.futures import settle
from gateway.kafka.rdlog import LogThrottle

log = logging.getLogger("gateway.consume")

T = TypeVar("T")

DEFAULT_MAX_INSTANCES = 100
DEFAULT_IDLE_TIMEOUT = 300.0
MAX_JOBS = 8  # requests of one instance waiting or running at once
MAX_RECORDS = 10_000  # records in one answer (max_bytes bounds it too)
KAFKA_TIMEOUT_MS = 5_000  # a seek, or a read of committed offsets
SEEK_RETRY = 0.02  # seconds between attempts to seek a partition that is not fetched yet
CLOSE_TIMEOUT = 10.0  # seconds a DELETE or an expiry gives the consumer to leave its group
NAME_LIMIT = 255

# librdkafka settings of every instance; a consumer property among the gateway's client
# properties (-X, gateway.app.instance_config) wins.
INSTANCE_CONFIG: dict[str, Any] = {
    # The prefetch of one instance: what librdkafka holds for it between requests.
    "queued.max.messages.kbytes": 8192,
    "queued.min.messages": 10000,
    "fetch.max.bytes": 8 * 1024 * 1024,
    # Once the prefetch is full, librdkafka waits this long before it fetches again (1 s by
    # default): a client reading faster than that found the queue empty and waited out its
    # timeout (measured by bench.consume: GET records stalled ~1 s every 20,000 records).
    "fetch.queue.backoff.ms": 5,
    # An empty fetch is held this long by the broker: what a new record may wait for.
    "fetch.wait.max.ms": 100,
    "socket.nagle.disable": True,
    # Kafka's defaults before 3.0 (librdkafka's are 45 s and 3 s). A group's join waits for
    # its members: Tansu waits half the session timeout (23 s with 45 s, 5 s with this).
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 1000,
}

# Offsets of RdConsumer (librdkafka's logical offsets).
OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001

# What an instance's consumer is doing: neither, a group member (subscribe), or reading
# partitions it chose (assign). Kafka's consumer refuses to mix the two.
NONE = "none"
SUBSCRIBED = "subscribed"
ASSIGNED = "assigned"

_NAME = re.compile(r"[^/\x00-\x1f\x7f]{1,%d}" % NAME_LIMIT)


class InstanceNotFound(errors.NotFound):
    """404/40403: no such instance in this group (or not the caller's)."""

    error_code = 40403


class InstanceExists(errors.PeerError):
    """409/40902: the group has an instance of that name."""

    status = 409
    error_code = 40902


class StateConflict(errors.PeerError):
    """409/40903: the consumer cannot do that in its state (subscribe while assigned, assign
    while subscribed; Confluent's "illegal state")."""

    status = 409
    error_code = 40903


class AlreadySubscribed(errors.PeerError):
    """409/40901: a v1 read of a topic other than the one the instance reads."""

    status = 409
    error_code = 40901


class NotAssigned(StateConflict):
    """A seek names a partition the instance is not assigned (Confluent: 409/40903; the
    Strimzi bridge: 404)."""


class InvalidConsumerConfig(errors.Unprocessable):
    """422/42204: a create request's settings (Confluent's "invalid consumer configuration")."""

    error_code = 42204


class RecordNotJson(errors.PeerError):
    """406/40601: a record of a ``json`` instance whose key or value is not one JSON value."""

    status = 406
    error_code = 40601


class TooManyInstances(errors.UpstreamError):
    """503/50302: the gateway holds ``--max-consumer-instances`` instances."""

    status = 503
    error_code = 50302


class InstanceBusy(errors.TooManyRequests):
    """429/42902: ``MAX_JOBS`` requests of this instance wait already."""


class KafkaCallFailed(errors.UpstreamError):
    """500/50002: Kafka refused a consumer's call with an error a retry does not fix."""


class ConsumerLike(Protocol):
    """What an instance calls on its consumer (``gateway._speedups.RdConsumer``, or a test's
    stand-in with the same methods)."""

    def subscribe(self, topics: Sequence[str]) -> None: ...
    def unsubscribe(self) -> None: ...
    def assign(self, partitions: Sequence[tuple[str, int, int]]) -> None: ...
    def assignment(self) -> list[tuple[str, int]]: ...
    def seek(self, partitions: Sequence[tuple[str, int, int]], timeout_ms: int) -> None: ...
    def committed(self, partitions: Sequence[tuple[str, int]], timeout_ms: int
                  ) -> list[tuple[str, int, int, str]]: ...
    def commit(self, offsets: Sequence[tuple[str, int, int]] | None = None,
               asynchronous: bool = False) -> list[tuple[str, int, int]]: ...
    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int,
              min_bytes: int = 0, store: bool = True, first: bool = True) -> tuple[bytes, int]: ...
    def take_errors(self) -> list[tuple[int, str]]: ...
    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]: ...
    def close(self, timeout_ms: int = 10000) -> None: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerLike]


class OwnerRecords(Protocol):
    """Which ``--workers`` process holds each instance (gateway.consume.owners.InstanceOwners):
    a name is claimed before its instance is made and released when it goes."""

    def claim(self, group: str, name: str) -> None: ...
    def release(self, group: str, name: str) -> None: ...
    def owner(self, group: str, name: str) -> tuple[int, int] | None: ...
    def forget(self, group: str, name: str, owner: tuple[int, int]) -> bool: ...


def rd_consumer_class() -> Any:
    """The compiled consumer (imported when the first instance is made)."""
    from gateway._speedups import RdConsumer

    return RdConsumer


@dataclass(frozen=True, slots=True)
class InstanceSettings:
    """What a create request chose (gateway.api.consumers checks the values)."""

    format: str = "binary"  # binary | json: the record format of its answers
    auto_offset_reset: str = "latest"  # earliest | latest | none
    auto_commit: bool = True
    fetch_min_bytes: int = 0  # 0: answer as soon as a record is there
    request_timeout_ms: int = 1000  # longest wait of a GET .../records
    isolation_level: str | None = None  # read_committed | read_uncommitted (None: librdkafka's)


def check_name(what: str, name: str) -> None:
    """An instance or group name fits in a URL path segment: 1 to 255 characters, no ``/`` and no
    control characters, not ``.`` or ``..``."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidConsumerConfig(
            f"{what} {name!r} is not a valid name: 1 to {NAME_LIMIT} characters, no '/' and no "
            "control characters"
        )


def consumer_config(base: Mapping[str, Any], group: str, settings: InstanceSettings) -> dict[str, Any]:
    """The librdkafka properties of an instance: ``INSTANCE_CONFIG``, the gateway's client
    properties, then what the instance needs (its group; offsets are stored by each fetch for
    the records it hands out, and committed from there)."""
    conf = dict(INSTANCE_CONFIG)
    conf.update(base)
    conf["group.id"] = group
    conf["enable.auto.commit"] = settings.auto_commit
    conf["enable.auto.offset.store"] = False
    conf["auto.offset.reset"] = "error" if settings.auto_offset_reset == "none" else settings.auto_offset_reset
    # (``fetch.min.bytes`` of the create body bounds an answer, not librdkafka's fetches: a
    # broker holding each fetch for that many bytes of one partition only slows the reads.)
    if settings.isolation_level is not None:
        conf["isolation.level"] = settings.isolation_level
    return conf


def kafka_error(exc: Exception) -> errors.GatewayError:
    """The answer for an error the consumer raised (``RdKafkaError``: ``code``, ``name``,
    ``retriable``)."""
    name = getattr(exc, "name", "")
    if name in ("_VALUE_DESERIALIZATION", "_KEY_DESERIALIZATION"):
        return RecordNotJson(
            f"{exc}: the instance's format is json, so the record is skipped (the next read "
            "goes on after it; a binary instance can read it)"
        )
    if getattr(exc, "retriable", False) or name in ("_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN",
                                                    "_STATE"):
        return errors.KafkaUnavailable(f"Kafka did not answer: {exc}; retry later")
    return KafkaCallFailed(f"Kafka error: {exc}")


@dataclass(eq=False, slots=True)
class _Job:
    fn: Callable[[Any], Any]
    future: asyncio.Future[Any]


class ConsumerInstance:
    """One consumer instance: its consumer, its thread and its job queue (see the module
    docstring). Everything but the worker thread's loop runs on the event loop."""

    def __init__(
        self,
        registry: InstanceRegistry,
        group: str,
        name: str,
        owner: str | None,
        dialect: str,
        settings: InstanceSettings,
        config: dict[str, Any],
    ) -> None:
        self.registry = registry
        self.group = group
        self.name = name
        self.owner = owner
        self.dialect = dialect  # the API it was created through (gateway.api.consumers)
        self.settings = settings
        self.format = settings.format
        self.mode = NONE
        self.topics: tuple[str, ...] = ()  # subscribed or assigned topics (the ACL's view)
        self.pattern: str | None = None  # a subscription by regular expression
        self.last_used = registry.clock()
        self.busy = 0  # jobs queued or running
        self.closed = False  # out of the registry: no new job
        self.records_consumed = 0
        self._config = config
        self._loop = registry.loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._refuse_jobs = False  # read by the worker: jobs it takes from now on fail
        self._consumer: ConsumerLike | None = None  # the worker thread's own
        self._close_timeout_ms = int(CLOSE_TIMEOUT * 1000)
        # librdkafka's log lines of this consumer, written from its thread (repeats held).
        self._rdlog = LogThrottle(f"consumer instance {name} of group {group}:")
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.stopped: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, name=f"gateway-instance-{name[:24]}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<consumer instance {self.group}/{self.name}>"

    @property
    def label(self) -> str:
        return f"consumer instance {self.name} of group {self.group}"

    def start(self) -> None:
        self._thread.start()

    # -- jobs (loop side) -------------------------------------------------------------------
    def submit(self, fn: Callable[[Any], T]) -> asyncio.Future[T]:
        """Run ``fn(consumer)`` on the instance's thread after the jobs before it; the future
        gives its result, or the ``GatewayError`` to answer."""
        if self.closed:
            raise InstanceNotFound(f"{self.label} was closed")
        if self.busy >= MAX_JOBS:
            raise InstanceBusy(f"{self.label} already has {MAX_JOBS} requests in progress")
        self.busy += 1
        self.last_used = self.registry.clock()
        fut: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(fn, fut))
        return fut

    def _done(self, job: _Job, result: Any, exc: BaseException | None) -> None:
        self.busy -= 1
        self.last_used = self.registry.clock()
        fut = job.future
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> asyncio.Future[None]:
        """Take no more requests; those waiting get 404; the running one finishes; then the
        consumer leaves its group (committing what it stored, with auto commit) within
        ``timeout`` seconds and the thread ends. The future is ``stopped``."""
        if not self.closed:
            self.closed = True
            self._refuse_jobs = True
            self._close_timeout_ms = max(0, int(timeout * 1000))
            self._jobs.put(None)
        return self.stopped

    # -- the operations (their state checks on the loop, the calls on the thread) ----------
    def subscribe(self, topics: Sequence[str], pattern: str | None) -> asyncio.Future[None]:
        if self.mode is ASSIGNED:
            raise StateConflict(
                "Illegal state: subscription to topics, partitions and pattern are mutually "
                f"exclusive ({self.label} is assigned partitions: DELETE its subscription first)"
            )
        names = [f"^({pattern})$"] if pattern is not None else list(topics)
        before = (self.mode, self.topics, self.pattern)
        self.mode, self.topics, self.pattern = SUBSCRIBED, tuple(topics), pattern
        return self._tracked(lambda c: c.subscribe(names), before)

    def unsubscribe(self) -> asyncio.Future[None]:
        """Drop the subscription or the assignment. A group member gets a new consumer: it
        leaves the group (committing what it consumed, with auto commit) and the new one is in
        none. (librdkafka's consumer that unsubscribes while the group's join is under way
        takes no manual assignment any more, nor a seek, whatever is served after.)"""
        mode = self.mode
        self.mode, self.topics, self.pattern = NONE, (), None
        if mode is ASSIGNED:
            return self.submit(lambda c: c.assign([]))
        if mode is NONE:
            return self.submit(lambda c: c.unsubscribe())
        return self.submit(self._renew)

    def _renew(self, consumer: ConsumerLike) -> None:
        """On the instance's thread: close its consumer and make a new one."""
        self._consumer = None
        consumer.close(self._close_timeout_ms)
        self._consumer = self.registry.factory(self._config)

    def assign(self, partitions: Sequence[tuple[str, int]]) -> asyncio.Future[None]:
        if self.mode is SUBSCRIBED:
            raise StateConflict(
                "Illegal state: subscription to topics, partitions and pattern are mutually "
                f"exclusive ({self.label} is subscribed: DELETE its subscription first)"
            )
        wanted = [(t, p, OFFSET_STORED) for t, p in partitions]
        before = (self.mode, self.topics, self.pattern)
        topics = tuple(dict.fromkeys(t for t, _ in partitions))
        self.mode, self.topics, self.pattern = (ASSIGNED if wanted else NONE), topics, None
        return self._tracked(lambda c: c.assign(wanted), before)

    def _tracked(self, fn: Callable[[Any], T], before: tuple[Any, ...]) -> asyncio.Future[T]:
        """Submit a subscribe or assign whose state was set at submission (later requests are
        checked against it); put the state back if the call fails."""
        try:
            fut = self.submit(fn)
        except errors.GatewayError:
            self.mode, self.topics, self.pattern = before
            raise

        def restore(f: asyncio.Future[T]) -> None:
            if not f.cancelled() and f.exception() is not None:
                self.mode, self.topics, self.pattern = before

        fut.add_done_callback(restore)
        return fut

    def assignment(self) -> asyncio.Future[list[tuple[str, int]]]:
        return self.submit(lambda c: list(c.assignment()))

    def seek(self, offsets: Sequence[tuple[str, int, int]]) -> asyncio.Future[None]:
        """Seek each (topic, partition) to its offset (or OFFSET_BEGINNING / OFFSET_END); every
        one must be assigned to the instance now (else ``NotAssigned``, nothing moved)."""
        label = self.label

        def run(c: ConsumerLike) -> None:
            assigned = set(c.assignment())
            missing = [f"{t}[{p}]" for t, p, _ in offsets if (t, p) not in assigned]
            if missing:
                raise NotAssigned(
                    f"{label} is not assigned {', '.join(missing)}: it can only seek in the "
                    "partitions it is assigned now"
                )
            # A partition assigned a moment ago is still looking up where to start (its
            # committed offset, the reset): librdkafka refuses to seek it until then.
            deadline = time.monotonic() + KAFKA_TIMEOUT_MS / 1000
            while True:
                try:
                    c.seek(list(offsets), KAFKA_TIMEOUT_MS)
                    return
                except Exception as exc:
                    if getattr(exc, "name", "") != "_STATE" or time.monotonic() >= deadline:
                        raise
                time.sleep(SEEK_RETRY)

        return self.submit(run)

    def fetch(self, fmt: int, max_bytes: int, timeout_ms: int) -> asyncio.Future[tuple[bytes, int]]:
        """Records in ``fmt`` (an RdConsumer format), waiting up to ``timeout_ms`` for the first
        one (with ``fetch.min.bytes``: for that many bytes); their offsets are stored at once:
        they count as consumed (a commit without offsets, or auto commit, commits them)."""
        fut = self.submit(self._fetcher(fmt, max_bytes, timeout_ms))
        fut.add_done_callback(self._count)
        return fut

    def _fetcher(self, fmt: int, max_bytes: int, timeout_ms: int
                 ) -> Callable[[ConsumerLike], tuple[bytes, int]]:
        min_bytes = self.settings.fetch_min_bytes
        label = self.label

        rdlog = self._rdlog

        def run(c: ConsumerLike) -> tuple[bytes, int]:
            out = c.fetch(MAX_RECORDS, max_bytes, timeout_ms, fmt, min_bytes, True, True)
            for code, reason in c.take_errors():
                log.info("%s: Kafka says: %s (%d)", label, reason, code)
            lines, lost = c.take_logs()
            for level, facility, text in lines:
                rdlog.line(level, facility, text)
            if lost:
                rdlog.lost(lost)
            return out

        return run

    def _count(self, fut: asyncio.Future[tuple[bytes, int]]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            n = fut.result()[1]
            self.records_consumed += n
            self.registry.records_consumed += n

    def read_topic(self, topic: str, fmt: int, max_bytes: int, timeout_ms: int
                   ) -> asyncio.Future[tuple[bytes, int]]:
        """Confluent's v1 instance read: the first read of a topic subscribes the instance to it
        (a group member from then on); a read of another topic is ``AlreadySubscribed``."""
        fetch = self._fetcher(fmt, max_bytes, timeout_ms)
        if self.mode is NONE:
            before = (self.mode, self.topics, self.pattern)
            self.mode, self.topics, self.pattern = SUBSCRIBED, (topic,), None

            def subscribe_then_fetch(c: ConsumerLike) -> tuple[bytes, int]:
                c.subscribe([topic])
                return fetch(c)

            fut = self._tracked(subscribe_then_fetch, before)
        elif self.mode is SUBSCRIBED and self.pattern is None and self.topics == (topic,):
            fut = self.submit(fetch)
        else:
            raise AlreadySubscribed(
                "Consumer cannot subscribe the the specified target because it has already "
                f"subscribed to other topics ({self.label} reads "
                f"{', '.join(self.topics) or self.pattern or 'assigned partitions'})"
            )
        fut.add_done_callback(self._count)
        return fut

    def commit(self, offsets: Sequence[tuple[str, int, int]] | None, asynchronous: bool = False
               ) -> asyncio.Future[list[tuple[str, int, int]]]:
        """Commit ``offsets`` (the next offset to read, per partition), or with None every
        offset stored so far (after the records handed out); gives what was committed."""
        wanted = list(offsets) if offsets is not None else None
        return self.submit(lambda c: list(c.commit(wanted, asynchronous)))

    def committed(self, partitions: Sequence[tuple[str, int]]
                  ) -> asyncio.Future[list[tuple[str, int, int, str]]]:
        wanted = list(partitions)
        return self.submit(lambda c: list(c.committed(wanted, KAFKA_TIMEOUT_MS)))

    # -- the worker thread -----------------------------------------------------------------
    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _run(self) -> None:
        try:
            self._consumer = self.registry.factory(self._config)
        except Exception as exc:  # noqa: BLE001 - librdkafka refused a property (or worse)
            self._post(settle, self.ready, None, InvalidConsumerConfig(
                f"Invalid consumer configuration: {exc}"
            ) if isinstance(exc, ValueError | TypeError) else errors.KafkaRequestFailed(
                f"cannot create a Kafka consumer: {exc}"
            ))
        else:
            self._post(settle, self.ready, None, None)
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                consumer = self._consumer
                if consumer is None or self._refuse_jobs:
                    self._post(self._done, job, None, InstanceNotFound(f"{self.label} was closed"))
                    continue
                try:
                    result = job.fn(consumer)
                except errors.GatewayError as exc:
                    self._post(self._done, job, None, exc)
                except Exception as exc:  # noqa: BLE001 - the consumer's error, or a fault
                    if hasattr(exc, "retriable") and hasattr(exc, "code"):
                        self._post(self._done, job, None, kafka_error(exc))
                    else:
                        log.exception("%s: a request failed", self.label)
                        self._post(self._done, job, None, errors.GatewayBug(f"internal error: {exc!r}"))
                else:
                    self._post(self._done, job, result, None)
        finally:
            consumer = self._consumer
            self._consumer = None
            if consumer is not None:
                try:
                    consumer.close(self._close_timeout_ms)
                except Exception as exc:  # noqa: BLE001 - it is gone either way
                    log.warning("%s: closing its consumer failed: %s", self.label, exc)
            self._post(settle, self.stopped, None, None)



class InstanceRegistry:
    """The consumer instances of this process (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_config: Mapping[str, Any],
        *,
        max_instances: int = DEFAULT_MAX_INSTANCES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        factory: ConsumerFactory | None = None,
        consumer_class: Any = None,
        clock: Callable[[], float] = time.monotonic,
        owners: OwnerRecords | None = None,
    ) -> None:
        self.loop = loop
        # With --workers: the records that make names unique across the workers and tell
        # each worker which one holds an instance (None: one process, nothing recorded).
        self.owners = owners
        self.client_config = dict(client_config)
        self.max_instances = max_instances
        self.idle_timeout = idle_timeout
        # The consumer's class names the record formats (FORMAT_*); the factory makes one
        # (both the compiled RdConsumer unless given, imported when first needed).
        self._consumer_class = consumer_class
        self._factory = factory
        self.clock = clock
        self.records_consumed = 0
        self.created = 0
        self.expired = 0
        self._instances: dict[tuple[str, str], ConsumerInstance] = {}
        self._closing: set[ConsumerInstance] = set()
        self._closed = False
        interval = min(1.0, max(0.05, idle_timeout / 4))
        self._sweep_interval = interval
        self._sweeper: asyncio.TimerHandle | None = loop.call_later(interval, self._sweep)

    def __len__(self) -> int:
        return len(self._instances)

    @property
    def consumer_class(self) -> Any:
        if self._consumer_class is None:
            self._consumer_class = rd_consumer_class()
        return self._consumer_class

    @property
    def factory(self) -> ConsumerFactory:
        return self._factory if self._factory is not None else self.consumer_class

    def __iter__(self) -> Iterator[ConsumerInstance]:
        return iter(list(self._instances.values()))

    def format_code(self, name: str) -> int:
        """The consumer's record format ``FORMAT_<name>`` (e.g. ``V2_BINARY``)."""
        return int(getattr(self.consumer_class, f"FORMAT_{name}"))

    # -- create, find, delete ---------------------------------------------------------------
    def create(
        self,
        group: str,
        name: str | None,
        owner: str | None,
        dialect: str,
        settings: InstanceSettings,
    ) -> asyncio.Future[ConsumerInstance]:
        """A new instance, once its consumer exists. Raises at once (nothing created):
        ``ShuttingDown``, ``InvalidConsumerConfig`` for a bad name, ``InstanceExists``,
        ``TooManyInstances``; the future fails with ``InvalidConsumerConfig`` when librdkafka
        refuses a property (the name is free again)."""
        if self._closed:
            raise errors.ShuttingDown("the gateway is shutting down")
        check_name("group", group)
        if name is None:
            name = f"rest-consumer-{uuid.uuid4()}"
        check_name("instance name", name)
        key = (group, name)
        if key in self._instances:
            raise InstanceExists(
                f"Consumer with specified consumer ID already exists in the specified consumer "
                f"group: group {group} has an instance named {name}"
            )
        if len(self._instances) >= self.max_instances:
            raise TooManyInstances(
                f"the gateway already holds {self.max_instances} consumer instances "
                "(--max-consumer-instances): delete one, or retry once an idle one has expired"
            )
        if self.owners is not None:
            self.owners.claim(group, name)  # InstanceExists when another worker holds it
        inst = ConsumerInstance(
            self, group, name, owner, dialect, settings,
            consumer_config(self.client_config, group, settings),
        )
        self._instances[key] = inst
        self.created += 1
        inst.start()
        out: asyncio.Future[ConsumerInstance] = self.loop.create_future()

        def ready(f: asyncio.Future[None]) -> None:
            exc = f.exception()
            if exc is not None:
                self._forget(inst)
                inst.close(0)
                if not out.done():
                    out.set_exception(exc)
            elif not out.done():
                out.set_result(inst)

        inst.ready.add_done_callback(ready)
        return out

    def holds(self, group: str, name: str) -> bool:
        """Whether this process holds an instance of that name (whoever it belongs to)."""
        return (group, name) in self._instances

    def get(self, group: str, name: str, principal: str | None) -> ConsumerInstance:
        """The instance, or ``InstanceNotFound`` (also when it belongs to another principal)."""
        inst = self._instances.get((group, name))
        if inst is None or inst.owner != principal:
            raise InstanceNotFound(
                f"Consumer instance not found: group {group} has no instance named {name}"
            )
        return inst

    def delete(self, inst: ConsumerInstance, timeout: float = CLOSE_TIMEOUT) -> asyncio.Future[None]:
        """Remove the instance now (its name is free at once) and close it; the future is done
        once its consumer has left the group."""
        self._forget(inst)
        return self._close(inst, timeout)

    def _forget(self, inst: ConsumerInstance) -> None:
        if self._instances.get((inst.group, inst.name)) is inst:
            del self._instances[(inst.group, inst.name)]
            if self.owners is not None:
                self.owners.release(inst.group, inst.name)

    def _close(self, inst: ConsumerInstance, timeout: float) -> asyncio.Future[None]:
        self._closing.add(inst)
        stopped = inst.close(timeout)
        stopped.add_done_callback(lambda _f: self._closing.discard(inst))
        return stopped

    # -- expiry, renewal, shutdown ----------------------------------------------------------
    def _sweep(self) -> None:
        now = self.clock()
        for inst in list(self._instances.values()):
            if inst.busy == 0 and now - inst.last_used >= self.idle_timeout:
                log.info("%s expired after %gs idle (--consumer-instance-timeout)",
                         inst.label, self.idle_timeout)
                self.expired += 1
                self.delete(inst)
        if not self._closed:
            self._sweeper = self.loop.call_later(self._sweep_interval, self._sweep)

    def renew(self) -> None:
        """The cluster behind the instances is gone (the embedded broker died; it comes back
        empty, its topics under new ids): every instance is closed. Their clients get 404/40403
        and create new ones."""
        if self._instances:
            log.warning("Kafka was replaced: closing %d consumer instances", len(self._instances))
        for inst in list(self._instances.values()):
            self.delete(inst, timeout=0)

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Shutdown: no new instance; every one closes within ``timeout`` seconds (their
        consumers leave their groups in parallel, one thread each)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for inst in list(self._instances.values()):
            self.delete(inst, timeout)
        waiting = [i.stopped for i in self._closing if not i.stopped.done()]
        if not waiting:
            return
        done, pending = await asyncio.wait(waiting, timeout=max(timeout, 0.1))
        if pending:
            log.warning("%d consumer instances did not close within %gs", len(pending), timeout)
