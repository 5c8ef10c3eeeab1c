"""Streaming consume (docs/api.md §13): one long chunked answer that carries a topic's records
as they arrive, as a group member (offsets committed for what was written) or from explicit
partitions and offsets. No HTTP here: the stream writes to a ``StreamSink`` (the connection)
and is fed by one ``RdConsumer`` (gateway._speedups) that it alone uses.

Threads. The consumer is created, subscribed or assigned, and at the end closed (which leaves
the group and commits: it blocks) on the registry's worker threads. Everything in between
runs on the event loop and never blocks: records come from ``fetch(timeout_ms=0, store=False)``
when the consumer's ``event_fd`` is readable, formatted by the consumer itself (no Python
object per record), in slices of at most ``SLICE_BYTES`` key+value bytes; after a slice the
stream yields to the loop (``call_soon``) before the next one, so one stream cannot starve the
others.

Back-pressure. When a write leaves the connection's buffer over its high-water mark
(``write_blocked``), the stream stops watching the fd and fetches nothing more; if the buffer
is still full ``PAUSE_AFTER`` later, it pauses its partitions in librdkafka too.
``on_writable`` (the buffer drained below its low-water mark) resumes them and reading goes
on. librdkafka's own prefetch is bounded (``queued.max.messages.kbytes``, ``fetch.max.bytes``):
what a stream holds is that, one slice, and the connection's write buffer. Pausing drops what
librdkafka had prefetched of those partitions; resuming fetches again from the offset after the
last record handed out, so nothing is skipped or repeated.

Offsets (group mode). Each fetch remembers the offsets after its records (store=False); they
are stored (``store_pending``) only once the connection has handed every byte written up to
then to the socket (``flushed`` past the stream's ``_mark``), and librdkafka commits what is
stored every ``commit_interval_ms`` and at close. Since ``store_pending`` stores everything
fetched so far, the stream checks after each write (usually the socket takes a write at once);
when a commit is due and the buffer still holds written records, the stream stops fetching
until they drain (``_gate``), so that commits keep up with a client that reads slowly. A record
is committed only once it was written to the socket: delivery is at least once.

Ends. The client closing (EOF, or the connection lost) ends the stream; the gateway stopping
ends it with one last line ``{"error_code":50003,...}``; a record that cannot be given in the
asked format, or an error of librdkafka the stream cannot go on after, ends it with a line
that says why. Then what was written is stored once it has drained (or not, if the connection
is lost first), and the consumer is closed on a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway import errors
from gateway._speedups import RdKafkaError

log = logging.getLogger("gateway.consume")

# One fetch: at most this many key+value bytes (the formatted slice is larger: base64, JSON
# framing) and records. What one stream writes in one loop turn.
SLICE_BYTES = 256 * 1024
SLICE_RECORDS = 4096
# Polling the connection's buffer while waiting for written records to drain (a commit is due,
# or the stream ended): from the first delay, doubling up to the last.
DRAIN_POLL_FIRST = 0.005
DRAIN_POLL_MAX = 0.2
# How long an ended stream waits for what it wrote to drain before closing its consumer
# without storing it (the client reads no more).
END_DRAIN_TIMEOUT = 5.0
CLOSE_TIMEOUT_MS = 10_000
# A client that keeps its connection full this long gets the stream's partitions paused in
# librdkafka. (Pausing drops what librdkafka had prefetched of them, and resuming fetches it
# again: a client that reads steadily but slower than records come would otherwise make the
# stream pause and refetch at every turn of its buffer.)
PAUSE_AFTER = 0.5
# Without a group (no commit cadence), how often librdkafka's log lines are taken to the log.
LOG_INTERVAL = 5.0
WORKER_THREADS = 4

# librdkafka's special offsets (RdConsumer.OFFSET_*).
OFFSET_BEGINNING = -2
OFFSET_END = -1
# librdkafka error codes the stream acts on.
ERR_AUTO_OFFSET_RESET = -140
ERR_FATAL = -150
ERR_VALUE_DESERIALIZATION = -159
ERR_KEY_DESERIALIZATION = -160

SHUTDOWN_CODE = 50003
INTERNAL_CODE = 50003
INTERNAL_MESSAGE = "internal error of the gateway: the stream ends here; open it again to go on"
SHUTDOWN_MESSAGE = (
    "the gateway is shutting down: the stream ends here; open it again (on this gateway once "
    "it is back, or another) to go on"
)

# Settings the stream depends on: applied over the caller's properties.
REQUIRED_CONFIG: dict[str, Any] = {
    "enable.auto.offset.store": False,  # offsets are stored once written (store_pending)
    "enable.partition.eof": False,
}
# Tunables (the caller's -X properties win).
DEFAULT_CONFIG: dict[str, Any] = {
    # A group member gone without leaving (a gateway killed) is noticed in 10 s, not
    # librdkafka's 45 s; and a group's join waits on its members (Tansu: half of it). As the
    # consumer instances'.
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1000,
    # Bounded prefetch per stream (librdkafka may overshoot it by one fetch response).
    "queued.max.messages.kbytes": 4096,
    "fetch.max.bytes": 4 * 1024 * 1024,
    # How long the broker holds a fetch that has nothing: a stream's latency at the tail.
    "fetch.wait.max.ms": 100,
    # After the prefetch bound was hit, librdkafka waits this long before fetching again (1 s
    # by default): a stream that resumes would stall on it.
    "fetch.queue.backoff.ms": 10,
    "socket.nagle.disable": True,
}
# The group.id of a stream without a group: librdkafka wants one; it is never joined (the
# partitions are assigned) and nothing is committed.
NO_GROUP_ID = "kafka-gateway-stream"


class StreamConsumer(Protocol):
    """What the stream uses of ``gateway._speedups.RdConsumer``."""

    def subscribe(self, topics: Sequence[str]) -> None: ...
    def assign(self, partitions: Sequence[tuple[str, int, int]]) -> None: ...
    def pause(self, partitions: Sequence[tuple[str, int]] | None = None) -> None: ...
    def resume(self, partitions: Sequence[tuple[str, int]] | None = None) -> None: ...
    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int,
              min_bytes: int = 0, store: bool = True, first: bool = True) -> tuple[bytes, int]: ...
    def store_pending(self) -> int: ...
    def queued(self) -> int: ...
    def event_fd(self) -> int: ...
    def take_errors(self) -> list[tuple[int, str]]: ...
    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]: ...
    def close(self, timeout_ms: int = 10000) -> None: ...


class StreamSink(Protocol):
    """What the stream uses of its connection (gateway.http.protocol.HttpProtocol)."""

    @property
    def write_blocked(self) -> bool: ...
    @property
    def written(self) -> int: ...
    @property
    def flushed(self) -> int: ...
    def write_body(self, data: bytes) -> None: ...
    def end_body(self) -> None: ...
    def log_access(self, detail: str, status: int = ...) -> None: ...


@dataclass(frozen=True)
class StreamRequest:
    """What one stream reads: a topic, as a member of ``group`` (librdkafka assigns the
    partitions; a group without committed offsets starts at ``reset``), or without a group
    from ``start``: (partition, offset) pairs, the offset a position or OFFSET_BEGINNING /
    OFFSET_END."""

    topic: str
    json: bool = False  # format=json (else binary)
    group: str | None = None
    reset: str = "latest"
    start: tuple[tuple[int, int], ...] = ()
    commit_interval_ms: int = 5000
    max_records: int = 0  # the stream ends (cleanly) after this many records; 0: no end
    idle_timeout_ms: int = 0  # ... or once no record has come for this long; 0: never

    def describe(self) -> str:
        where = f"group {self.group}" if self.group is not None else "partitions " + ",".join(
            f"{p}@{_offset_name(o)}" for p, o in self.start)
        return f"topic {self.topic} ({where})"


def _offset_name(offset: int) -> str:
    return {OFFSET_BEGINNING: "earliest", OFFSET_END: "latest"}.get(offset, str(offset))


def consumer_config(base: Mapping[str, Any], req: StreamRequest) -> dict[str, Any]:
    """librdkafka properties of the consumer of ``req``: the defaults, then ``base`` (the
    gateway's connection settings and consumer -X properties), then what the stream needs."""
    conf: dict[str, Any] = {**DEFAULT_CONFIG, **base, **REQUIRED_CONFIG}
    if req.group is not None:
        conf["group.id"] = req.group
        conf["enable.auto.commit"] = True  # what is stored, every interval and at close
        conf["auto.commit.interval.ms"] = req.commit_interval_ms
        conf["auto.offset.reset"] = req.reset
    else:
        conf["group.id"] = NO_GROUP_ID
        conf["enable.auto.commit"] = False
        # An explicit offset outside the partition ends the stream (41601) rather than
        # silently moving it.
        conf["auto.offset.reset"] = "error"
    return conf


def _error_line(code: int, message: str) -> bytes:
    return errors.error_body(code, message) + b"\n"


class StreamState(enum.IntEnum):
    STARTING = 0  # the stream's answer is out; its consumer not handed over yet
    RUNNING = 1
    ENDING = 2  # the response has ended; written records drain, then the consumer closes
    ENDED = 3


STARTING, RUNNING, ENDING, ENDED = StreamState


class ConsumeStream:
    """One stream: the connection's body consumer (for a request without a body: it takes
    none) and the driver of one consumer. Created by ``StreamRegistry.open``."""

    __slots__ = (
        "_registry", "_loop", "_req", "_sink", "_client", "_consumer", "_fmt", "_state",
        "_fd", "_reading", "_blocked", "_gated", "_pump_scheduled", "_first", "_mark",
        "_unstored", "_tick", "_drain_timer", "_drain_delay", "_drain_deadline", "records",
        "bytes_out", "_status", "_why", "_errors_seen", "_idle_timer", "_last_record",
        "_pause_timer", "_paused", "__weakref__",
    )

    def __init__(self, registry: StreamRegistry, req: StreamRequest, sink: StreamSink, *,
                 fmt: int, client: str = "-") -> None:
        self._registry = registry
        self._loop = registry.loop
        self._req = req
        self._sink = sink
        self._client = client
        self._consumer: StreamConsumer | None = None
        self._fmt = fmt
        self._state = STARTING
        self._fd = -1
        self._reading = False  # the fd is watched
        self._blocked = False  # the connection's buffer is over its high-water mark
        self._gated = False  # a commit waits for written records to drain: no fetch meanwhile
        self._pump_scheduled = False
        self._first = True
        self._mark = 0  # the connection's byte count after the last slice written
        self._unstored = False  # records fetched (and written) whose offsets are not stored
        self._tick: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drain_delay = DRAIN_POLL_FIRST
        self._drain_deadline = 0.0
        self.records = 0
        self.bytes_out = 0
        self._status = 200
        self._why = "client closed"
        self._errors_seen = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_record = 0.0
        self._pause_timer: asyncio.TimerHandle | None = None
        self._paused = False  # the partitions are paused in librdkafka

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def request(self) -> StreamRequest:
        return self._req

    def describe(self) -> str:
        return f"consume stream of {self._req.describe()} to {self._client}"

    # -- start ----------------------------------------------------------------------------
    def start(self, consumer: StreamConsumer) -> None:
        """The consumer is ready (created and subscribed or assigned on a worker thread):
        read. A stream that ended meanwhile (the client left) closes it instead."""
        self._consumer = consumer
        if self._state is not STARTING:
            self._registry.release(self, consumer)
            return
        self._state = RUNNING
        self._fd = consumer.event_fd()
        self._watch(True)
        self._tick = self._loop.call_later(self._tick_interval(), self._on_tick)
        if self._req.idle_timeout_ms:
            self._last_record = self._loop.time()
            self._idle_timer = self._loop.call_later(self._req.idle_timeout_ms / 1000.0, self._on_idle)
        self._pump()

    # -- the body consumer's side (gateway.http.handler.BodyConsumer) ------------------------
    @property
    def accepting(self) -> bool:
        return False  # no body: the endpoint refuses a request with one

    def on_body(self, data: memoryview) -> None:
        pass

    def on_body_end(self) -> None:
        pass

    def on_body_error(self, error: errors.GatewayError) -> None:
        """Only a fault of ours can cut a request without a body (the connection logged it):
        end with the line of an internal error."""
        self._internal_error()

    def _internal_error(self) -> None:
        self._end(INTERNAL_CODE, INTERNAL_MESSAGE, status=500, why="internal error")

    def on_connection_lost(self) -> None:
        if self._state is STARTING or self._state is RUNNING:
            self._why = "client gone"
            self._end(None, "", gone=True)

    def on_peer_eof(self) -> None:
        """The client closed its side: it listens no more."""
        self._end(None, "")

    def on_shutdown(self) -> None:
        self._end(SHUTDOWN_CODE, SHUTDOWN_MESSAGE, status=503, why="shutdown")

    def on_kafka_lost(self, reason: str) -> None:
        self._end(50003, f"{reason}: the stream ends here; open it again to go on", status=503,
                  why="kafka unreachable")

    def on_writable(self) -> None:
        """The connection's buffer drained below its low-water mark."""
        if not self._blocked or self._state is not RUNNING:
            return
        self._blocked = False
        if self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        if self._paused:
            self._paused = False
            consumer = self._consumer
            assert consumer is not None
            consumer.resume()
        self._try_store()
        if not self._gated:
            self._watch(True)
            self._schedule_pump()

    # -- reading --------------------------------------------------------------------------
    def _watch(self, on: bool) -> None:
        if on == self._reading or self._fd < 0:
            return
        self._reading = on
        if on:
            self._loop.add_reader(self._fd, self._pump)
        else:
            self._loop.remove_reader(self._fd)

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _pump(self) -> None:
        """One slice: fetch what is queued (without waiting), write it, and come back on a
        later loop turn if more is queued. (A loop callback: what it raises is a fault of
        ours, logged, and the stream ends with the line of an internal error.)"""
        if self._state is not RUNNING or self._blocked or self._gated:
            return
        try:
            self._slice()
        except Exception as exc:  # noqa: BLE001 - a fault of ours
            log.error("internal error of the gateway in the %s", self.describe(), exc_info=exc)
            self._internal_error()

    def _slice(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        limit = SLICE_RECORDS
        if self._req.max_records:
            limit = min(limit, self._req.max_records - self.records)
        try:
            data, n = consumer.fetch(limit, SLICE_BYTES, 0, self._fmt, 0, False, self._first)
        except RdKafkaError as exc:
            self._on_fetch_error(exc)
            return
        if n:
            self._first = False
            sink = self._sink
            sink.write_body(data)
            self.records += n
            self.bytes_out += len(data)
            if self._req.group is not None:
                self._mark = sink.written
                self._unstored = True
                self._try_store()
            if self._req.idle_timeout_ms:
                self._last_record = self._loop.time()
            if self._req.max_records and self.records >= self._req.max_records:
                self._end(None, "", why="max records")
                return
            if sink.write_blocked:
                self._block()
                return
        errs = consumer.take_errors()
        if errs and self._on_errors(errs):
            return
        if n and consumer.queued():
            self._schedule_pump()  # the rest on a later turn: other streams go first

    def _on_idle(self) -> None:
        """``idle_timeout_ms``: end the stream once no record has come for that long (while
        the client is not reading, or a commit waits, records are there: not idle)."""
        self._idle_timer = None
        if self._state is not RUNNING:
            return
        idle = self._req.idle_timeout_ms / 1000.0
        left = idle - (self._loop.time() - self._last_record)
        if self._blocked or self._gated or self._pump_scheduled:
            left = idle
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._on_idle)
            return
        self._end(None, "", why="idle")

    def _block(self) -> None:
        """The client does not read as fast as records come: take nothing more from the
        consumer; if it stays so for ``PAUSE_AFTER``, pause the partitions."""
        self._blocked = True
        self._watch(False)
        self._pause_timer = self._loop.call_later(PAUSE_AFTER, self._pause_partitions)

    def _pause_partitions(self) -> None:
        self._pause_timer = None
        if self._blocked and self._state is RUNNING and not self._paused:
            consumer = self._consumer
            assert consumer is not None
            consumer.pause()
            self._paused = True

    def _on_fetch_error(self, exc: RdKafkaError) -> None:
        if exc.code in (ERR_VALUE_DESERIALIZATION, ERR_KEY_DESERIALIZATION):
            # The consumer counts the record it could not format as handed out: its offset is
            # among those store_pending() would store. It was not written: store nothing more
            # (what was written since the last store is read again by the group's next member).
            self._unstored = False
            self._end(50002, f"{exc}: the stream ends before this record; read it with "
                      "format=binary", status=500, why="record not JSON")
            return
        self._end(50002, f"Kafka error: {exc}", status=500, why="kafka error")

    def _on_errors(self, errs: list[tuple[int, str]]) -> bool:
        """Errors from the consumer's queue: True when one ended the stream. Others (a broker
        down, a connection lost: librdkafka retries them) are logged, the first few only."""
        for code, reason in errs:
            if code == ERR_AUTO_OFFSET_RESET:
                self._end(41601, f"offset out of range: {reason}", status=416,
                          why="offset out of range")
                return True
            if code == ERR_FATAL:
                self._end(50002, f"Kafka error: {reason}", status=500, why="kafka error")
                return True
            self._errors_seen += 1
            if self._errors_seen <= 3:
                log.info("%s: librdkafka error %d: %s", self.describe(), code, reason)
        return False

    # -- offsets ----------------------------------------------------------------------------
    def _try_store(self) -> bool:
        """Store the offsets of what was fetched once every byte written so far has gone to
        the socket; True when nothing written is left unstored."""
        if not self._unstored:
            return True
        flushed = self._sink.flushed
        if flushed < self._mark:  # (-1: the connection is gone, what it held is unknown)
            return False
        consumer = self._consumer
        assert consumer is not None
        consumer.store_pending()
        self._unstored = False
        return True

    def _tick_interval(self) -> float:
        if self._req.group is not None:
            return self._req.commit_interval_ms / 1000.0
        return LOG_INTERVAL

    def _on_tick(self) -> None:
        """librdkafka's log lines to the log; and with a group, a commit is due (librdkafka
        commits what is stored at this interval): make sure what was written is stored by
        then, waiting for it to drain if need be."""
        self._tick = self._loop.call_later(self._tick_interval(), self._on_tick)
        self._registry.drain_logs(self._consumer)
        if self._req.group is None:
            return
        if self._state is RUNNING and not self._gated and not self._try_store():
            self._gated = True
            self._watch(False)
            self._poll_drain(DRAIN_POLL_FIRST)

    def _poll_drain(self, delay: float) -> None:
        self._drain_delay = delay
        self._drain_timer = self._loop.call_later(delay, self._on_drain_poll)

    def _on_drain_poll(self) -> None:
        self._drain_timer = None
        if self._state is RUNNING:
            if self._try_store():
                self._gated = False
                if not self._blocked:
                    self._watch(True)
                    self._schedule_pump()
                return
            self._poll_drain(min(self._drain_delay * 2, DRAIN_POLL_MAX))
            return
        if self._state is ENDING:
            if self._try_store() or self._sink.flushed < 0 or time.monotonic() > self._drain_deadline:
                self._close()
                return
            self._poll_drain(min(self._drain_delay * 2, DRAIN_POLL_MAX))

    # -- the end ------------------------------------------------------------------------------
    def _end(self, code: int | None, message: str, *, status: int = 200, why: str = "",
             gone: bool = False) -> None:
        """End the response (with one last line ``{"error_code":code,...}`` when ``code``),
        stop reading; then, once what was written has drained, store it and close."""
        state = self._state
        if state is ENDING or state is ENDED:
            return
        log.debug("%s ends: %s", self.describe(), why or self._why)
        self._state = ENDING
        self._watch(False)
        self._status = status
        if why:
            self._why = why
        for timer in (self._tick, self._drain_timer, self._idle_timer, self._pause_timer):
            if timer is not None:
                timer.cancel()
        self._tick = self._drain_timer = self._idle_timer = self._pause_timer = None
        sink = self._sink
        if not gone:
            if code is not None:
                sink.write_body(_error_line(code, message))
            sink.end_body()
        detail = "topic=%s%s records=%d bytes=%d end=%s" % (
            self._req.topic,
            f" group={self._req.group}" if self._req.group is not None else "",
            self.records, self.bytes_out, self._why.replace(" ", "-"),
        )
        sink.log_access(detail + (" (client gone)" if gone else ""), status)
        if state is STARTING:
            return  # the consumer is closed when it is handed over (start)
        if self._unstored and not gone:
            self._drain_deadline = time.monotonic() + END_DRAIN_TIMEOUT
            self._poll_drain(DRAIN_POLL_FIRST)
            return
        self._close()

    def _close(self) -> None:
        if self._state is ENDED:
            return
        self._state = ENDED
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        consumer = self._consumer
        if consumer is not None:
            self._registry.release(self, consumer)

    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
        return {
            "consume": self._req.describe(),
            "stream": self._state.name,
            "blocked": self._blocked,
            "gated": self._gated,
            "records": self.records,
            "bytes": self.bytes_out,
        }


ConsumerFactory = Callable[[dict[str, Any]], StreamConsumer]


def _rdconsumer(config: dict[str, Any]) -> StreamConsumer:
    from gateway._speedups import RdConsumer

    return RdConsumer(config)


def _formats() -> tuple[int, int]:
    from gateway._speedups import RdConsumer

    return RdConsumer.FORMAT_STREAM_BINARY, RdConsumer.FORMAT_STREAM_JSON


class StreamRegistry:
    """The process's consume streams: at most ``max_streams`` at once (counted from the
    consumer's creation to the end of its close), their worker threads, and their end at
    shutdown. Runs on the event loop, except what it hands to its threads."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        base_config: Mapping[str, Any],
        *,
        max_streams: int = 64,
        factory: ConsumerFactory | None = None,
        formats: tuple[int, int] | None = None,
        close_timeout_ms: int = CLOSE_TIMEOUT_MS,
        threads: int = WORKER_THREADS,
    ) -> None:
        self.loop = loop
        self.base_config = dict(base_config)
        self.max_streams = max_streams
        self._factory = factory or _rdconsumer
        self._formats = formats
        self._close_timeout_ms = close_timeout_ms
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="consume-stream")
        self._held = 0  # streams counted against max_streams
        self.live: set[ConsumeStream] = set()
        self._closing: set[asyncio.Future[None]] = set()
        self.closing = False
        self.opened_total = 0
        self.records_ended = 0  # records and bytes written by the streams no longer live
        self.bytes_ended = 0
        self._log_throttle: Any = None

    @property
    def full(self) -> bool:
        return self._held >= self.max_streams

    def formats(self) -> tuple[int, int]:
        if self._formats is None:
            self._formats = _formats()
        return self._formats

    def open(self, req: StreamRequest, sink: StreamSink, *, client: str = "-"
             ) -> tuple[ConsumeStream, asyncio.Future[StreamConsumer]]:
        """A stream for ``req`` writing to ``sink``, and the future of its consumer (created,
        subscribed or assigned on a worker thread). The caller checked ``full``. A consumer
        that cannot be made fails the future (and frees the stream's place)."""
        binary, as_json = self.formats()
        stream = ConsumeStream(self, req, sink, fmt=as_json if req.json else binary, client=client)
        self._held += 1
        self.opened_total += 1
        self.live.add(stream)
        config = consumer_config(self.base_config, req)
        factory = self._factory

        def create() -> StreamConsumer:
            consumer = factory(config)
            try:
                if req.group is not None:
                    consumer.subscribe([req.topic])
                else:
                    consumer.assign([(req.topic, p, o) for p, o in req.start])
            except BaseException:
                consumer.close(0)
                raise
            return consumer

        fut = asyncio.wrap_future(self._executor.submit(create), loop=self.loop)

        def created(f: asyncio.Future[StreamConsumer]) -> None:
            if f.cancelled() or f.exception() is not None:
                self._held -= 1
                self.live.discard(stream)

        fut.add_done_callback(created)
        return stream, fut

    def abandon(self, stream: ConsumeStream, consumer: StreamConsumer) -> None:
        """A consumer made for a request that was never answered with its stream."""
        self.release(stream, consumer)

    def release(self, stream: ConsumeStream, consumer: StreamConsumer) -> None:
        """Close ``consumer`` on a worker thread (it leaves the group and commits what is
        stored); the stream's place is free once it is closed."""
        self.drain_logs(consumer)
        timeout = self._close_timeout_ms
        describe = stream.describe()

        def close() -> None:
            try:
                consumer.close(timeout)
            except Exception as exc:  # noqa: BLE001 - logged: nothing else to do with it
                log.warning("%s: closing its consumer failed: %s", describe, exc)

        fut = asyncio.wrap_future(self._executor.submit(close), loop=self.loop)
        self._closing.add(fut)

        def closed(f: asyncio.Future[None]) -> None:
            log.debug("%s: its consumer is closed", describe)
            self._closing.discard(f)
            self._held -= 1
            if stream in self.live:
                self.live.discard(stream)
                self.records_ended += stream.records
                self.bytes_ended += stream.bytes_out

        fut.add_done_callback(closed)

    def drain_logs(self, consumer: StreamConsumer | None) -> None:
        """librdkafka's log lines the consumer collected, to the gateway's log (throttled)."""
        if consumer is None:
            return
        try:
            lines, lost = consumer.take_logs()
        except Exception:  # noqa: BLE001 - closed already
            return
        if not lines and not lost:
            return
        if self._log_throttle is None:
            from gateway.kafka.rdlog import LogThrottle

            self._log_throttle = LogThrottle("consume streams")
        for level, facility, text in lines:
            self._log_throttle.line(level, facility, text)
        if lost:
            self._log_throttle.lost(lost)

    def end_all(self, reason: str | None = None) -> None:
        """End every running stream with its last line: ``reason`` (50003, e.g. the embedded
        broker died), or, without one, because the gateway stops (the connections' shutdown
        does that first; this catches a stream whose connection did not) and no stream opens
        any more."""
        if reason is None:
            self.closing = True
        for stream in list(self.live):
            if stream.state is RUNNING:
                if reason is None:
                    stream.on_shutdown()
                else:
                    stream.on_kafka_lost(reason)

    async def close(self, timeout: float) -> None:
        """Wait (up to ``timeout`` seconds) for every consumer to close, then stop the
        threads. Consumers still being created are closed as they come."""
        self.end_all()
        deadline = self.loop.time() + timeout
        while (self._closing or self._held) and self.loop.time() < deadline:
            pending = set(self._closing)
            if pending:
                await asyncio.wait(pending, timeout=max(0.0, deadline - self.loop.time()))
            else:
                await asyncio.sleep(0.05)
        if self._held:
            log.warning("%d consume streams' consumers were still closing at the deadline", self._held)
        self._executor.shutdown(wait=False)

    def stats(self) -> dict[str, int]:
        """For the metrics: streams open now (their consumers not yet closed), streams opened,
        records and bytes written (those of open streams included)."""
        live = list(self.live)
        return {
            "open": len(live),
            "opened_total": self.opened_total,
            "records_total": self.records_ended + sum(s.records for s in live),
            "bytes_total": self.bytes_ended + sum(s.bytes_out for s in live),
        }
