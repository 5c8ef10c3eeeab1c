"""Stubs and docstrings for the compiled extension ``gateway._speedups`` (built from ext/).

The extension is required: ``make`` builds it, and the gateway does not run without it (there is
no pure-Python fallback; README "Design" says why). Code outside the extension imports its names
from these places: ``gateway.kafka.producer`` (the producer and the report router),
``gateway.produce`` (the splitter, the stream core and the v1/v2 decoders; the v3 session, the
whole-body requests and the v1/v2 request from ``gateway.produce.session``, ``.whole`` and ``.v1``),
``gateway.http.parser`` (the request-head parser and the head it builds), ``gateway.log`` (the
access log's line buffer), and the consumer modules and the consumer API (the consumer, its
error, ``json_loads``).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.errors import GatewayError
from gateway.http.parser import HttpLimits
from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.produce.items import RecordError
from gateway.produce.session import ReportStream, SessionState
from gateway.produce.whole import RequestState, Responder
from gateway.stats import ProduceStats

# (index, partition, key, value, headers, timestamp_ms, key_type, value_type);
# see gateway/produce/items.py.
Record = tuple[
    int,
    int,
    bytes | None,
    bytes | None,
    list[tuple[str, bytes | None]] | None,
    int,
    str | None,
    str | None,
]

class RequestHead:
    """A parsed request line and header section (what either head parser twin builds).

    ``target`` is the request target in origin form (an absolute-form target is reduced to its
    path and query); ``path`` and ``query`` are split at the first ``?`` and not decoded.
    ``headers`` keeps every field line in order as ``(lower-case name, value)``; values are
    latin-1 decoded with surrounding whitespace removed. ``content_length`` is ``None`` when the
    request has no Content-Length; with ``chunked`` it is always ``None``."""

    method: str
    target: str
    path: str
    query: str
    version: int
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    content_type: str | None

    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        query: str,
        version: int,
        headers: list[tuple[str, str]],
        content_length: int | None,
        chunked: bool,
        keep_alive: bool,
        expect_continue: bool,
        content_type: str | None,
    ) -> None: ...
    def header(self, name: str) -> str | None:
        """First value of the field ``name`` (lower case), or None."""
    def joined(self, name: str) -> str | None:
        """Every value of the field ``name`` (lower case) as one comma-separated list (RFC 9110
        §5.3: several field lines are one list), or None when it is absent."""

class JsonSplitter:
    """Incremental splitter of a v3 produce body (docs/api.md §1) into produce items.

    The body is concatenated JSON objects, one per record, with only whitespace (space, tab, LF,
    CR) between them. Feed it in chunks split anywhere, even inside a string, an escape or a
    UTF-8 sequence; each ``feed()`` returns the items its data completed, in order:

    - a good record: ``(index, partition, key, value, headers, timestamp_ms, key_type,
      value_type)`` (gateway/produce/items.py);
    - a bad record: ``RecordError(index, error_code, message, fatal=False)``; the stream goes on.
      The message is ``record {index} at byte {offset}: {reason}`` with the absolute body offset
      of the offending byte (JSON syntax) or value (field errors). A JSON syntax error anywhere in
      the record is reported in preference to a field error; among field errors the first met in
      reading order wins.
    - a fatal error, ``fatal=True``: a byte other than whitespace or ``{`` between records, a
      record not closed within ``max_record_bytes`` bytes of its ``{``, or (from ``finish()``) a
      body ending inside a record. The splitter is then ``failed`` and ignores further input.

    A record wholly inside one chunk is decoded from the chunk itself; a record spanning chunks
    is copied into an internal buffer of at most ``max_record_bytes`` bytes, so the chunk may be
    a view into a buffer the caller reuses once ``feed()`` returns.

    Its pure-Python reference model is tests/support/ref_splitter.py; the tests feed both the
    same bodies and compare items, messages, ``offset`` and ``records``.
    """

    def __init__(self, max_record_bytes: int = 2097152) -> None:
        """``max_record_bytes``: the longest record accepted, ``{`` to ``}`` inclusive (2 to 2**31;
        ValueError otherwise)."""

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record | RecordError]:
        """Consume the next chunk of the body (any bytes-like object with a C-contiguous buffer,
        read as raw bytes) and return the items it completed, in order. After a fatal error,
        returns ``[]`` and ignores ``data``. Raises RuntimeError after ``finish()``."""

    def finish(self) -> list[RecordError]:
        """The body has ended: ``[]`` when it ended between records, else one fatal RecordError
        (``body ended inside the record``). Idempotent; ``[]`` once failed."""

    @property
    def records(self) -> int:
        """Items emitted so far, errors included; the index the next item will get."""

    @property
    def offset(self) -> int:
        """Body bytes consumed so far. After a fatal error it stays at the offending byte (or the
        first byte past the record limit) and no longer moves."""

    @property
    def failed(self) -> bool:
        """A fatal error was emitted; feed() and finish() now return ``[]``."""

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished record held in the internal buffer (at most
        ``max_record_bytes``)."""

class RdTopic:
    """A librdkafka topic handle from ``RdProducer.topic(name)``; owned by that producer (it is
    destroyed when the producer closes). Producing through a handle skips the name lookup."""

    @property
    def name(self) -> str: ...

# The columns of a delivery report batch, each a read-only memoryview of ``reports_ready``
# items: opaque ids ("Q"), partitions ("i"), offsets ("q"), timestamps ("q", ms), errors ("i").
ReportColumns = tuple[memoryview, memoryview, memoryview, memoryview, memoryview]

class ProducerBase:
    """The producer interface of ``StreamCore`` and ``ReportRouter``: records go in through
    ``produce_record``; delivery reports collect in the *batch* (C arrays) that
    ``ReportRouter.dispatch`` reads after each poll. ``RdProducer`` implements it on
    librdkafka. A test double subclasses it in Python, overrides ``produce_record`` (the compiled
    callers reach the override) and fills the batch with ``new_batch``/``add_report``."""

    def __init__(self, *, max_reports: int = 65536) -> None:
        """``max_reports``: the largest delivery-report batch (1 to 2**26)."""

    def produce_record(
        self,
        topic: Any,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str | bytes, bytes | None]] | None,
        timestamp_ms: int,
        opaque_id: int,
    ) -> int:
        """Hand one record over; 0, or the librdkafka error code (``ERR_QUEUE_FULL``: poll and
        try again). ``topic`` is what ``topic(name)`` returned (or a name)."""

    produce = produce_record  # (the same, by the name Python callers use)

    def topic(self, name: str) -> Any:
        """The producer's handle for topic ``name`` (the name itself unless overridden)."""

    def new_batch(self) -> None:
        """Empty the batch (BufferError while views from ``reports()`` are alive)."""

    def add_report(
        self, opaque_id: int, partition: int, offset: int, timestamp: int, err: int,
        failed_record: Any = None,
    ) -> None:
        """Append one delivery report to the batch, as librdkafka's callback does in C
        (``failed_record``: a failed record's content, kept when ``keep_failed`` is set)."""

    keep_failed: bool

    @property
    def reports_ready(self) -> int:
        """Reports in the current batch."""

    @property
    def lost_reports(self) -> int:
        """Reports that found no room in the batch: always 0 (anything else is a bug)."""

    def report(self, i: int) -> tuple[int, int, int, int, int]:
        """Report ``i`` of the batch: ``(opaque_id, partition, offset, timestamp_ms, error)``.
        On error, offset is -1001 (RD_KAFKA_OFFSET_INVALID) and error is librdkafka's code."""

    def reports(self) -> ReportColumns:
        """The batch as five read-only column views (see ``ReportColumns``), no per-record
        objects. Release them (``del`` or ``.release()``) before the next poll."""

class RdProducer(ProducerBase):
    """A librdkafka producer over its C API, driven from one thread (the event loop's), with
    delivery reports collected in C: no Python object, callback or future per record.

    Records are handed over with ``produce_record()``/``produce()`` (or, from Cython code of
    this module, ``produce_c()`` with ``const char*`` + length). librdkafka's delivery-report callback is a C
    function that appends ``(opaque_id, partition, offset, timestamp_ms, error)`` to a C array,
    the *batch*. ``poll()`` starts a new batch, serves librdkafka's queue without blocking and
    returns how many reports it collected; read them with ``reports()`` (column views) or
    ``report(i)``. The batch is valid until the next ``poll()``/``flush()``/``close()``.

    The batch grows by doubling up to ``max_reports``; a poll that fills it stops there (the
    rest stay queued in librdkafka, nothing is dropped) and sets ``batch_full``.

    ``event_fd`` becomes readable when reports (or errors) are waiting: hand it to
    ``loop.add_reader()`` and call ``poll()`` from the reader, instead of polling on a timer.
    A full batch makes the fd readable again by itself, so the reader comes back for the rest.

    Uses the librdkafka shared library bundled with confluent-kafka (one copy per process).
    """

    ERR_NO_ERROR: int
    ERR_QUEUE_FULL: int
    ERR_MSG_TIMED_OUT: int
    ERR_PURGE_QUEUE: int
    ERR_PURGE_INFLIGHT: int
    ERR_FATAL: int
    ERR_UNKNOWN_PARTITION: int
    ERR_UNKNOWN_TOPIC: int
    ERR_INVALID_ARG: int
    ERR_STATE: int
    ERR_MSG_SIZE_TOO_LARGE: int
    PARTITION_UA: int

    def __init__(
        self, config: Mapping[str, str | int | float | bool], *, max_reports: int = 65536
    ) -> None:
        """Create the producer from librdkafka properties (CONFIGURATION.md; values str, int,
        float or bool). An unknown property, a bad value or a configuration librdkafka refuses
        raises ValueError naming it; a non-str name or a callable value, TypeError.
        ``max_reports``: the largest delivery-report batch (1 to 2**26)."""

    def topic(self, name: str) -> RdTopic:
        """The producer's handle for topic ``name`` (created once, then cached)."""

    def poll(self) -> int:
        """Start a new batch, serve librdkafka's queue without blocking (delivery reports and
        error callbacks) and return the number of reports in the batch. BufferError while
        views from ``reports()`` are alive."""

    def flush(self, timeout_ms: int) -> int:
        """Start a new batch and serve the queue, blocking up to ``timeout_ms``, until nothing
        is outstanding or the batch is full; returns the records still outstanding. For
        shutdown and tests only: never call it on the event loop."""

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = False) -> None:
        """Fail queued (and in-flight) records: each gets a report with ``ERR_PURGE_QUEUE`` or
        ``ERR_PURGE_INFLIGHT`` at a later poll."""

    def close(self, timeout_ms: int = 5000) -> int:
        """Wait up to ``timeout_ms`` for outstanding records (their reports are discarded),
        purge the rest, destroy the producer and close ``event_fd``. Blocks: not on the loop.
        Returns what librdkafka still held at the deadline (``len()``: records, which never
        get a report, and unserved events). Idempotent (later calls return 0). Dropping the
        last reference does the same with a 1 s limit. Topic handles die with the producer."""

    @property
    def closed(self) -> bool: ...
    @property
    def event_fd(self) -> int:
        """An eventfd, readable while delivery reports or errors wait for ``poll()``; -1 once
        closed. Never read it yourself: ``poll()`` drains it."""

    def __len__(self) -> int:
        """Records and events librdkafka still holds (rd_kafka_outq_len); 0 once closed."""

    @property
    def batch_full(self) -> bool:
        """The last poll/flush stopped because the batch reached ``max_reports``."""

    @property
    def fatal(self) -> bool:
        """librdkafka raised a fatal error: the producer is unusable; replace it."""

    def fatal_error(self) -> tuple[int, str] | None:
        """The underlying fatal error ``(code, reason)`` (rd_kafka_fatal_error), or None."""

    @property
    def error_count(self) -> int:
        """Error callbacks seen so far."""

    def take_errors(self) -> list[tuple[int, str]]:
        """Error callbacks ``(code, reason)`` since the last call, oldest first (at most the
        16 most recent)."""

    @property
    def log_count(self) -> int:
        """librdkafka log lines collected by polls since the last ``take_logs``."""

    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]:
        """``([(syslog level, facility, text), ...], lines lost)`` since the last call: librdkafka
        logs through the poll (``log.queue``), on the polling thread, never to stderr itself; at
        most 64 lines are kept between two calls."""

    def take_stats(self) -> str | None:
        """The latest librdkafka statistics document (``statistics.interval.ms``) not taken
        yet, or None; an untaken one is replaced by the next."""

    def _produce_many(
        self, topic: str | RdTopic, partition: int, value: bytes | None, count: int,
        first_opaque_id: int,
    ) -> tuple[int, int]:
        """Benchmark helper: produce ``count`` records with the same value from a C loop
        (opaque ids counting up from ``first_opaque_id``); stops at the first error. Returns
        ``(records produced, that error or 0)``."""

    def _test_fatal_error(self, code: int, reason: str) -> int:
        """Tests only: rd_kafka_test_fatal_error (idempotent producers)."""

    @staticmethod
    def error_name(code: int) -> str:
        """librdkafka's name of an error code (rd_kafka_err2name), e.g. ``_QUEUE_FULL``."""

    @staticmethod
    def error_string(code: int) -> str:
        """librdkafka's description of an error code (rd_kafka_err2str)."""

    @staticmethod
    def librdkafka_version() -> tuple[int, str]:
        """The linked librdkafka's ``(rd_kafka_version(), rd_kafka_version_str())``."""

def format_timestamp(ms: int) -> bytes:
    """Milliseconds since the epoch -> ``2026-11-21T10:14:42.123Z`` (UTC, as in reports)."""

class ReportRouter:
    """Delivery reports to their StreamCores by the sink id in each record's msg_opaque
    (``sink_id << 32 | sequence number``); see ext/stream.pxi."""

    orphans: int
    dispatched: int

    def unregister(self, sink_id: int) -> None: ...
    def __len__(self) -> int: ...
    def take_dirty(self) -> list[Any]:
        """The listeners of the StreamCores that got reports since the last call."""

    def take_failures(self) -> list[tuple[Any, BaseException]]:
        """``(listener, exception)`` of each StreamCore whose report handling raised since the
        last call; its pending records were failed with the internal-error report (50003)."""

    def take_respool(self) -> list[StreamCore]:
        """The cores holding records Kafka failed with a retriable error (for the spool)."""
    def dispatch(self, producer: ProducerBase) -> int:
        """Deliver the producer's current batch of reports; returns how many. An exception in
        one core's callbacks breaks that core only (see ``take_failures``)."""

REPORT_FORMAT_V3: int
REPORT_FORMAT_V1: int
REPORT_FORMAT_V2: int
STOP_OTHER_TOPIC: int  # StreamCore.push_spooled's stop_reason at another topic's record

class StreamCore:
    """The per-record half of a produce stream or request: records to the producer, reports in
    order (C ring). See ext/stream.pxi."""

    head: int
    tail: int
    capacity: int
    listener: Any
    ok: int
    failed: int
    produced: int
    stop_reason: int
    fatal_seen: bool
    orphans: int
    pending: int
    mode: int
    dirty: bool
    broken: bool
    broken_failed: int
    late: int

    def __init__(
        self,
        router: ReportRouter,
        producer: ProducerBase,
        topic: str,
        partitions: int,
        capacity: int,
        prefix: bytes,
        listener: Any,
        error_fn: Callable[[int], tuple[int, str]],
        fail_fn: Callable[[int, int], None],
        error_report: Callable[[int, str], bytes],
        mode: int = ...,
    ) -> None: ...
    used_records: int
    used_bytes: int
    rate_dropped: int
    rate_report: bytes | None
    spooling: int
    spooled: int
    spool_token: int
    spooled_report: bytes | None
    def spool(self, items: list[Any], i: int, spool: Any, allow_records: int = -1,
              allow_bytes: int = -1) -> int:
        """Append items[i:] to the disk spool (one ``spool.append``); their reports wait for
        ``spool_settle``."""
    def spool_settle(self, end: int, failure: bytes | None = None) -> int:
        """Records spooled before sequence ``end`` are durable (202 ``spooled_report``) or
        failed (``failure``); how many were settled."""
    def error_report(self, code: int, message: str) -> bytes: ...
    spool_retriable: bool
    respool_listed: bool
    def take_respool(self) -> list[Any]:
        """Records Kafka failed with a retriable error, to append to the spool."""
    def respooled(self, token: int) -> None: ...
    def push_spooled(self, records: list[Any], i: int = 0) -> int:
        """Hand the spool reader's records to Kafka while their topic is this core's."""
    def take_settled(self, limit: int) -> tuple[int, list[tuple[int, bytes]]]:
        """Take up to ``limit`` completed records: (taken, [(position, failure report)])."""
    def respool_failed(self, report: bytes) -> int: ...

    def push(self, items: list[Any], i: int = 0, allow_records: int = -1, allow_bytes: int = -1) -> int:
        """Hand items[i:] to Kafka in order; the index of the first item not taken. Records
        beyond the allowance (-1: none) are dropped with ``rate_report`` (HTTP-level 429)."""

    def push_failure(self, code: int, message: str, force: bool = False) -> None: ...
    def refuse(self, items: list[Any], i: int, code: int, message: str) -> int:
        """Give every record of items[i:] the failure report instead of handing it over (Kafka
        is unreachable); stops at the in-flight window; the index of the first item not taken."""
    def take_ready(self) -> bytes:
        """The reports whose predecessors are all known, in order, as one bytes object."""

    def take_outcomes(self) -> list[tuple[int, int, int, str | None, int, str | None, int] | bytes]:
        """The same prefix as ``take_ready``, one value per record: a delivered record's
        ``(partition, offset, timestamp_ms, key_type, key_size, value_type, value_size)``, a
        failed one's report bytes."""

    def fail_pending(self) -> int:
        """After an internal error: fail every pending record with the internal-error report
        (50003), ignore later reports for them, take no more records. How many were failed."""

    @property
    def internal_report(self) -> bytes: ...
    def rebind(self, producer: ProducerBase) -> None: ...
    def close(self) -> None: ...
    @property
    def sink_id(self) -> int: ...
    @property
    def full(self) -> bool: ...
    @property
    def topic_name(self) -> str: ...
    @property
    def producer(self) -> ProducerBase: ...
    def __len__(self) -> int: ...
    def debug_info(self) -> dict[str, Any]: ...

def hand_over(
    core: StreamCore,
    producer: KafkaProducer,
    items: list[Any],
    i: int,
    rates: RateLimiter | None,
    principal: str,
) -> int:
    """Push ``items[i:]`` into ``core`` in order; the index of the first item it did not take
    (``core.stop_reason`` says why). A producer replaced after a fatal error takes the new
    records (the old one still reports the records it has). With ``rates``, the records beyond
    the principal's allowance get a 429 report and what was used is charged (gateway.limits).
    With the disk spool on, a batch may go to the spool instead (gateway.produce.edge).
    Without it, while Kafka is known to be unreachable (gateway.kafka.health), each record gets
    a 50003 report at once instead of waiting out the message timeout (resend). Its return is
    noticed by the metadata listing, which runs often meanwhile, or a broker UP in librdkafka's
    statistics: a record handed over as a probe would hold every later report of its stream."""

class ProduceSession:
    """One v3 produce stream (ext/session.pxi; described in gateway/produce/session.py): body
    pieces in, records to Kafka through its ``StreamCore``, reports out in order through the
    connection (``ReportStream``). Weak-referenceable, hashable by identity."""

    def __init__(
        self,
        stream: ReportStream,
        producer: KafkaProducer,
        splitter: Any,
        *,
        cluster_id: str,
        topic: str,
        partitions: int,
        max_in_flight: int,
        stats: ProduceStats,
        max_feed: int = 64 * 1024,
        rates: RateLimiter | None = None,
        principal: str = "-",
        max_body_bytes: int = 0,
        max_duration: float = 0.0,
        client: str = "-",
    ) -> None: ...
    @property
    def state(self) -> SessionState: ...
    def describe(self) -> str: ...
    @property
    def records_ok(self) -> int: ...
    @property
    def records_failed(self) -> int: ...
    @property
    def accepting(self) -> bool:
        """False while parsed records wait for room: the connection must not feed more."""
    def on_body(self, data: memoryview) -> None: ...
    def on_body_end(self) -> None: ...
    def on_body_error(self, error: GatewayError) -> None:
        """The connection stopped reading this body before its end (``error``: its framing
        broke, the client half-closed, it was idle, the gateway is stopping), or a fault of
        ours ended the request (``GatewayBug``). Records already handed to Kafka keep their
        reports; one last report says why and from which body byte on nothing was read."""
    def _on_max_duration(self) -> None: ...
    def flush_reports(self) -> None:
        """Write every report whose predecessors are all known, as one chunk. Called after a
        poll that completed some of this stream's records (the router lists them), and after
        each body piece. While the peer does not read (the socket's buffer is full), reports
        stay in the core's ring, a few dozen bytes each, until ``on_writable``; the full
        window then pauses reading."""
    def on_writable(self) -> None:
        """The socket's buffer drained below its low-water mark."""
    def on_queue_space(self) -> None: ...
    def on_connection_lost(self) -> None:
        """The client is gone. Records already handed to Kafka are still delivered (or counted
        failed); parsed records that were waiting for room are dropped, counted and logged."""
    def on_shutdown(self) -> None:
        """Stop reading; records already handed to Kafka finish and their reports go out;
        parsed records still waiting for room get a retriable failure report."""
    def on_internal_error(self, exc: BaseException) -> None:
        """Reporting to this stream failed (the producer has logged why). Only the core's C
        side and constant reports are used from here: every record without an outcome gets the
        internal-error report (50003, resend), a stream still being read gets one last report
        saying where reading stopped, and the response ends."""
    def in_flight(self) -> int:
        """Records read from the body whose report has not been written (or, with the client
        gone, whose outcome is not known yet): the in-flight gauge, read at scrape time."""
    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
    @property
    def core(self) -> StreamCore: ...
    @property
    def finished(self) -> bool: ...

class WholeRequest:
    """Body consumer of one produce request answered as a whole (ext/whole.pxi; described in
    gateway/produce/whole.py). A subclass implements ``_begin`` (parse the body: the produce
    items, or RequestRefused) and ``_answer`` (the final status and body, from the core), and
    may give the core its error mapping (``_error_of``) and failure entry (``_entry``)."""

    api: str  # the report-latency histogram's label
    def __init__(
        self,
        conn: Responder,
        producer: KafkaProducer,
        *,
        topic: str,
        partitions: int,
        max_bytes: int,
        content_type: bytes | None = None,
        stats: ProduceStats | None = None,
        rates: RateLimiter | None = None,
        principal: str = "-",
        api: str = "v1",
        noun: str = "records",
        too_large: str = "request body",
        mode: int = 0,
    ) -> None:
        """``content_type`` of the answer (None: application/json); ``noun`` names the records
        in the log, ``too_large`` the body in the 413 message; ``mode`` is the core's report
        format."""
    @property
    def state(self) -> RequestState: ...
    @property
    def accepting(self) -> bool: ...
    def describe(self) -> str: ...
    def _begin(self, body: bytes) -> list[Any]: ...
    def _answer(self, core: StreamCore) -> tuple[int, bytes]: ...
    def _error_of(self, err: int) -> tuple[int, str]:
        """(error_code, message) of a record Kafka (or produce()) refused."""
    def _entry(self, code: int, message: str) -> bytes:
        """A failed record's entry in the answer."""
    def on_body(self, data: memoryview) -> None: ...
    def on_body_error(self, error: GatewayError) -> None:
        """The connection stopped reading the body before its end (broken framing, the
        client half-closed, idle, shutdown): nothing was produced; ``error`` is the answer."""
    def on_body_end(self) -> None: ...
    def on_queue_space(self) -> None: ...
    def flush_reports(self) -> None: ...
    def in_flight(self) -> int:
        """Records of this request not yet with their outcome (the in-flight gauge)."""
    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
    def on_connection_lost(self) -> None: ...
    def on_shutdown(self) -> None:
        """Still reading the body: refuse. Records already with Kafka finish and are answered."""
    def on_internal_error(self, exc: BaseException) -> None:
        """Reporting to this request failed (the producer logged why): every record without an
        outcome gets the internal-error entry (50003), and the answer goes out."""

class V1ProduceRequest(WholeRequest):
    """Body consumer of one v1/v2 produce request (gateway/produce/v1.py).

    The records go through a ``StreamCore`` in the v1 or v2 offsets format: produced from C,
    their delivery reports completed in C by the producer's router, and the offsets entries
    formatted in C, in request order, when the last report is in. Python runs once per request
    (and once per poll that reported some of its records), never once per record."""

    def __init__(  # type: ignore[override]
        self,
        conn: Responder,
        producer: KafkaProducer,
        *,
        topic: str,
        partitions: int,
        url_partition: int | None,
        version: int,
        embedded: str,
        content_type: bytes,
        max_bytes: int,
        stats: ProduceStats | None = None,
    ) -> None: ...

def base64_decode(data: str | bytes) -> bytes:
    """Strict standard base64 (RFC 4648 §4: standard alphabet, padding required, nothing else,
    no whitespace) of ASCII text or bytes; ValueError when not valid, TypeError for other
    types. The record splitter's decoder, also used for v1/v2 produce bodies."""

def v1_binary_items(
    records: list[Any], partitions: int, url_partition: int | None
) -> list[tuple[int, int, bytes | None, bytes | None, None, int, None, None]] | None:
    """The StreamCore items of v1/v2 binary records in the common shape (``value``, optional
    ``key`` and ``partition``; base64 strings or null), or None when any record is not in it
    (gateway.produce.v1.decode_records then decodes and words the error)."""

# -- the disk spool's record frames (ext/spool.pxi; gateway/produce/spool) ----------------------

def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, continued from ``value`` (as ``zlib.crc32`` chains): with
    the CPU's crc32 instruction when it has SSE4.2, else by a table."""

def crc32c_portable(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """``crc32c`` by the table only (the tests compare the two)."""

def crc32c_hardware() -> bool:
    """``crc32c`` uses the CPU instruction."""

def spool_encode(records: list[Any], topic: str, first_seq: int, now_ms: int) -> bytes:
    """The spool frames of ``records`` (the splitter's tuples: partition, key, value, headers
    and timestamp_ms are read), numbered from ``first_seq``, as one ``bytes``; a timestamp of 0
    becomes ``now_ms``, also every frame's spooled time. TypeError/ValueError/OverflowError for
    a field that cannot be spooled (nothing is encoded then)."""

def spool_decode(
    buf: bytes,
    pos: int,
    end: int,
    seq: int,
    max_records: int,
    max_bytes: int,
    out: list[Any] | None,
) -> tuple[int, int, int, int, int, int]:
    """Check (and, with a list ``out``, decode into it as ``(seq, topic, partition, key, value,
    headers, timestamp_ms)``) the frames of ``buf[pos:end]`` from sequence number ``seq``, up to
    ``max_records`` records and ``max_bytes`` bytes of frames (the first record of an empty
    ``out`` is always taken). Returns ``(pos, seq, status, need, first_spooled_ms,
    last_spooled_ms)``: where it stopped, the next sequence number, 0 (good so far) or why it
    stopped (1: the frame at ``pos`` is cut short and needs ``need`` bytes; 2 to 5: it is
    corrupt: a bad length, checksum, sequence number or layout), and the spooled times of the
    first and last good frames (-1 when none)."""

# -- the consumer (ext/consumer.pxi) --------------------------------------------------------------

class RdKafkaError(Exception):
    """A librdkafka error from an RdConsumer call. ``str(exc)`` is a sentence: what failed, then
    librdkafka's reason (``seek in topic t partition 5 to offset 0: Local: Erroneous state``).

    ``topic``/``partition`` name the partition when the error is about one (seek, committed,
    commit, watermarks, a record fetch() could not format), else None; ``offset`` is set only
    for a record fetch() could not format (a key or value that is not JSON in a JSON format:
    ``code`` ``_KEY_DESERIALIZATION`` -160 or ``_VALUE_DESERIALIZATION`` -159)."""

    code: int
    """librdkafka's error code (``RD_KAFKA_RESP_ERR_*``, as ``confluent_kafka.KafkaError``)."""
    name: str
    """librdkafka's name of the code (rd_kafka_err2name), e.g. ``_PARTITION_EOF``."""
    retriable: bool
    """A later attempt may succeed (the broker or coordinator moving or busy, a timeout)."""
    topic: str | None
    partition: int | None
    offset: int | None

    def __init__(self, code: int, message: str, retriable: bool | None = None,
                 topic: str | None = None, partition: int | None = None,
                 offset: int | None = None) -> None: ...

class RdConsumer:
    """A librdkafka consumer over its C API whose ``fetch()`` formats records straight from
    librdkafka's messages into one ``bytes`` (one growing C buffer): no Python object, callback
    or call per record. Uses the librdkafka bundled with confluent-kafka, as RdProducer.

    **Threads.** The caller serialises the calls (any one thread at a time). Calls that can
    block release the GIL and belong on a worker thread, never on the event loop: ``fetch()``
    with ``timeout_ms > 0``, ``seek``, ``committed``, ``commit`` (synchronous),
    ``watermarks(cached=False)``, ``close`` (and ``subscribe``, ``unsubscribe``, ``assign``,
    which wait for librdkafka's own thread). ``fetch(timeout_ms=0)``, ``pause``, ``resume``,
    ``assignment``, ``subscription``, ``position``, ``store_pending``, ``event_fd``, ``queued``,
    ``eof``, ``take_errors``, ``take_logs`` do not wait on the network and may run on the loop
    (``pause``, ``resume``, ``assignment`` and ``subscription`` hand librdkafka's main thread an
    operation and wait for it: microseconds, never a round-trip). A second ``fetch()`` while one
    runs on another thread, or ``close()`` while any GIL-releasing call runs, raises
    RuntimeError.

    **Queues and wake-ups.** librdkafka's main queue (errors, log lines, commit results) is
    forwarded to the consumer queue, so ``fetch()`` serves everything: there is no other poll.
    ``event_fd()`` becomes readable when that queue gets something; ``fetch()`` reads it, and
    writes it again itself when it leaves records behind (``max_records``/``max_bytes``), so a
    reader on the fd comes back for them. No rebalance callback: librdkafka's default handling
    assigns and revokes partitions by itself.

    **Offsets.** ``enable.auto.offset.store`` is always false (set after the caller's
    properties): the offsets stored are those ``fetch()`` handed out, per partition the last
    record's offset + 1, at once (``store=True``) or at ``store_pending()``. ``commit(None)``
    commits what was stored; with ``enable.auto.commit`` true librdkafka commits it every
    ``auto.commit.interval.ms`` and at ``close()``.

    **Records taken but not handed out.** fetch() takes messages from librdkafka in batches;
    those beyond ``max_records``/``max_bytes`` are kept, in order, for the next fetch(), and
    ``position()`` and ``queued()`` count them. librdkafka counts them as consumed, so they are
    never dropped, except by ``seek`` (for the partitions sought), ``assign``, ``unsubscribe``
    and ``subscribe`` (for topics no longer subscribed), which move the positions anyway.
    """

    OFFSET_BEGINNING: int  # -2
    OFFSET_END: int  # -1
    OFFSET_STORED: int  # -1000
    OFFSET_INVALID: int  # -1001
    FORMAT_V2_BINARY: int
    """``[{"topic":"t","key":b64|null,"value":b64|null,"partition":0,"offset":5},...]``
    (Confluent v2 records; ``b64`` is standard base64 with padding)."""
    FORMAT_V2_JSON: int
    """As FORMAT_V2_BINARY with key and value embedded as their JSON text (null when absent).
    The text is checked with the produce side's JSON grammar (RFC 8259, strict UTF-8, nesting
    up to 64 levels) and compacted: whitespace outside strings is dropped, nothing else
    changes (escapes stay as they were)."""
    FORMAT_STRIMZI_BINARY: int
    """``[{"topic":"t","key":...,"value":...,"partition":0,"offset":5,"timestamp":1712345678901,
    "headers":[{"key":"h","value":b64|null}]},...]`` (Strimzi bridge records; ``headers``
    omitted when the record has none; ``timestamp`` -1 when the record has none)."""
    FORMAT_STRIMZI_JSON: int
    """As FORMAT_STRIMZI_BINARY with JSON keys and values (header values stay base64)."""
    FORMAT_V1_BINARY: int
    """``[{"key":...,"value":...,"partition":0,"offset":5},...]`` (Confluent v1 records)."""
    FORMAT_V1_JSON: int
    FORMAT_STREAM_BINARY: int
    """Streaming consume: one JSON object per record, each followed by ``\\n``, no array:
    ``{"topic_name":"t","partition_id":0,"offset":5,"timestamp":"2026-12-02T07:00:00.123Z",
    "key":{"type":"BINARY","data":b64}|null,"value":...,"headers":[{"name":"h","value":b64|null}]}``
    (``headers`` always there, ``[]`` when none; ``timestamp`` as ``format_timestamp()``, null
    when the record has none)."""
    FORMAT_STREAM_JSON: int
    """As FORMAT_STREAM_BINARY with ``{"type":"JSON","data":<the JSON text>}``."""
    FORMAT_STRIMZI_TEXT: int
    """As FORMAT_STRIMZI_BINARY with keys and values as JSON strings of their text (the
    bridge's ``text`` format; invalid UTF-8 as U+FFFD, one per byte)."""

    def __init__(self, config: Mapping[str, str | int | float | bool]) -> None:
        """Create the consumer from librdkafka properties (values str, int, float or bool).
        ``group.id`` is required (librdkafka has no consumer queue without one): ValueError
        without it. An unknown property, a bad value or a configuration librdkafka refuses
        raises ValueError naming it; a non-str name or a callable value, TypeError.
        ``log.queue`` and ``enable.auto.offset.store`` are set by the consumer."""

    def subscribe(self, topics: Sequence[str]) -> None:
        """Join the group for these topics (a name starting with ``^`` is a regex); replaces
        the subscription. ValueError for none; RdKafkaError when librdkafka refuses."""

    def unsubscribe(self) -> None:
        """Leave the subscription (the assignment is revoked)."""

    def subscription(self) -> list[str]:
        """The topics (and patterns) subscribed."""

    def assign(self, partitions: Sequence[tuple[str, int, int]]) -> None:
        """Read these ``(topic, partition, offset)`` (an offset may be ``OFFSET_BEGINNING``,
        ``OFFSET_END``, ``OFFSET_STORED``: the committed one, else ``auto.offset.reset``),
        replacing the assignment; ``[]`` unassigns everything. Without a subscription."""

    def assignment(self) -> list[tuple[str, int]]:
        """The partitions assigned now (by assign() or the group), sorted."""

    def seek(self, partitions: Sequence[tuple[str, int, int]], timeout_ms: int) -> None:
        """Move assigned partitions to ``(topic, partition, offset)`` (rd_kafka_seek_partitions;
        ``timeout_ms`` 0: do not wait for it). RdKafkaError for the first partition that failed
        (e.g. ``_STATE`` for one not assigned), naming it; those before it moved."""

    def position(self, partitions: Sequence[tuple[str, int]]) -> list[int]:
        """Per partition, the offset of the next record fetch() hands out (records taken from
        librdkafka but not handed out count), ``OFFSET_INVALID`` when none was read yet."""

    def committed(self, partitions: Sequence[tuple[str, int]], timeout_ms: int
                  ) -> list[tuple[str, int, int, str]]:
        """The group's committed ``(topic, partition, offset, metadata)``, asked of the broker;
        offset ``OFFSET_INVALID`` where nothing is committed. Blocks up to ``timeout_ms``."""

    def commit(self, offsets: Sequence[tuple[str, int, int]] | None = None,
               asynchronous: bool = False) -> list[tuple[str, int, int]]:
        """Commit ``offsets`` (``(topic, partition, next offset to read)``), or with None what
        was stored (the offsets after every record handed out and stored), and return what was
        committed, sorted (``[]`` when there was nothing: not an error). Synchronous by
        default: waits for the broker (RdKafkaError when it fails, naming the partition when
        one failed). ``asynchronous=True`` does not wait and returns ``[]``; a failure then
        reaches ``take_errors()`` through a later fetch()."""

    def store_pending(self) -> int:
        """Store the offsets after the records of every ``fetch(store=False)`` since the last
        call; returns how many partitions were stored (one no longer assigned is not)."""

    def pause(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        """Stop fetching these partitions (None: the whole assignment): fetch() hands out
        nothing of them, not even records it had already taken, until ``resume()``."""

    def resume(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        """Fetch paused partitions again, from the first record not handed out: nothing is
        skipped or repeated."""

    def watermarks(self, topic: str, partition: int, cached: bool, timeout_ms: int = 0
                   ) -> tuple[int, int]:
        """``(low, high)`` offsets of a partition: ``cached`` from the latest fetch responses
        (``OFFSET_INVALID`` until one came; never blocks), else asked of the broker (blocks up
        to ``timeout_ms``). RdKafkaError when it cannot tell."""

    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int,
              min_bytes: int = 0, store: bool = True, first: bool = True,
              stop_on_event: bool = False, continued: bool = False) -> tuple[bytes, int]:
        """Records as one formatted byte string in format ``fmt`` (``FORMAT_*``), and how many.

        Waits up to ``timeout_ms`` for the first record (with ``min_bytes``: until that many
        key+value bytes), then takes what is queued without waiting, up to ``max_records``
        records and ``max_bytes`` key+value bytes (at least one record when one is there,
        however large). On timeout: ``b"[]"`` in the array formats, ``b""`` in the stream
        formats, and 0. ``max_records`` and ``max_bytes`` at least 1, ``timeout_ms`` and
        ``min_bytes`` not negative (ValueError).

        ``store=True`` stores the offsets after these records at once; ``store=False`` keeps
        them for ``store_pending()``. ``first``: False when the piece continues a response
        (the stream formats end every record with ``\\n`` and do not need it).

        Messages with an error other than the end of a partition go to ``take_errors()``
        (``"topic [partition]: reason"``); ends of partitions to ``eof()``. In the JSON
        formats a record whose key or value is not one JSON value is not returned: fetch()
        stops before it, and the next call, with it first, raises RdKafkaError
        (``_KEY_DESERIALIZATION``/``_VALUE_DESERIALIZATION``, ``topic t partition p offset o:
        the value is not JSON (reason)``, with ``topic``/``partition``/``offset`` set). That
        record then counts as handed out (its offset is stored like a record's, per ``store``)
        and reading goes on after it; seek back and fetch in a binary format to read it.

        ``stop_on_event``: return as soon as the queue is drained after an error or an end of
        partition, instead of waiting on for a record (a read of one partition that must
        answer ``[]`` at its end at once). ``continued``: this fetch continues an answer that
        already has records, so ``max_bytes`` binds its first record too (it may return none)."""

    @property
    def fetched_bytes(self) -> int:
        """Key and value bytes of the records the last ``fetch()`` returned."""

    def queued(self) -> int:
        """Messages and events in the consumer queue now, plus records taken but not handed
        out; 0 once closed."""

    def event_fd(self) -> int:
        """An eventfd, readable while records or events wait for ``fetch()``; -1 once closed.
        Never read it yourself: fetch() drains it."""

    def eof(self) -> list[tuple[str, int, int]]:
        """``(topic, partition, end offset)`` of the partitions fetch() found at their end
        since the last call (``enable.partition.eof`` must be true), sorted."""

    def take_errors(self) -> list[tuple[int, str]]:
        """Errors ``(code, reason)`` since the last call, oldest first (at most the 16 most
        recent): librdkafka's error callback, failed commits, errors of fetched messages."""

    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]:
        """``([(syslog level, facility, text), ...], lines lost)`` since the last call, served
        by fetch() (``log.queue``); at most 64 lines are kept between two calls."""

    def close(self, timeout_ms: int = 10000) -> None:
        """Leave the group (a final commit of what was stored when ``enable.auto.commit`` is
        on), bounded by ``timeout_ms``, destroy the consumer and close ``event_fd``; past the
        bound the consumer is destroyed without leaving (the group notices after
        ``session.timeout.ms``). Records taken but not handed out are dropped (they were
        never stored). Blocks: not on the loop. Idempotent. Dropping the last reference to an
        unclosed consumer does the same with a 1 s bound."""

    @property
    def closed(self) -> bool: ...

    def member_id(self) -> str:
        """The group member id librdkafka has now (``""`` before the first join)."""

def parse_head(
    buf: bytearray | bytes, start: int, end: int, limits: HttpLimits | None = None
) -> tuple[RequestHead, int] | None:
    """The request head in ``buf[start:end]``: the compiled twin of
    ``gateway.http.parser.python_parse_head`` (ext/httphead.pxi), with the same answers for any
    input: ``None`` while the head is incomplete, ``(head, index just after the empty line that
    ends it)`` once it is complete, or the same ``PeerError`` (class, status and message) for a
    head that is malformed or over ``limits`` (``None``: ``parser.DEFAULT_LIMITS``).

    Heads as clients send them (CRLF line endings, no control byte, an origin-form target,
    HTTP/1.0 or 1.1, token field names, the framing fields in their plain form) are parsed over
    C bytes; every other input, errors included, is answered by the reference twin. Which twin
    the gateway uses is ``gateway.http.parser.parse_head`` (``GATEWAY_HEAD_PARSER``)."""

class JsonDecodeError(ValueError):
    """A document ``json_loads`` refuses: ``str()`` is ``"<msg> at byte <pos>"``."""

    msg: str
    pos: int
    def __init__(self, msg: str, pos: int) -> None: ...

def json_loads(data: bytes | bytearray | memoryview) -> Any:
    """The Python objects ``json.loads`` makes of the UTF-8 JSON document ``data``, parsed by
    simdjson's On-Demand API (ext/jsondoc.cc): dict (of a repeated name the last member wins),
    list, str, int (of any size, within Python's int digit limit: ValueError beyond it), float
    (beyond the double range: +-inf, as json), bool, None.

    Raises ``JsonDecodeError`` (a ValueError) naming the byte offset for a document that is not
    JSON, and also for what json.loads takes: ``NaN``/``Infinity``/``-Infinity``, a string
    escaping a lone UTF-16 surrogate, nesting deeper than 1024, and a UTF-8 byte order mark (which
    json.loads refuses in text, and skips in bytes). ``str`` is a TypeError."""

def json_batch_entries(
    data: bytes,
) -> list[tuple[str | None, int, int, int, int, int] | None] | None:
    """The entries of the batch document ``{"entries":[...]}``, read by one On-Demand pass that
    makes no object of a record: per entry, ``None`` when it is not an object, else
    ``(id, ids, start, cut_start, cut_end, end)``: ``id`` is the string of its first ``"id"``
    member (``None`` when it has none or it is not a string), ``ids`` how many ``"id"`` members
    it has, and its text without that member (and a comma next to it) is
    ``data[start:cut_start] + data[cut_end:end]``. ``None`` when the document is JSON of another
    shape (not an object, another member, ``entries`` not an array).

    The whole document is checked as ``json_loads`` checks it, and a document it refuses raises
    the same ``JsonDecodeError``; only the integer digit limit is not applied (no number is
    converted)."""

def simdjson_implementation() -> str:
    """The simdjson kernel of the On-Demand API that ``json_loads``, ``json_batch_entries`` and
    the v3 record reader use: the one the build's target allows ("fallback" on baseline
    x86-64; simdjson chooses a kernel at run time only for its DOM API, which is not used)."""

def splitter_simdjson(
    stream_min: int | None = None, record_min: int | None = None
) -> tuple[int, int]:
    """Where ``JsonSplitter`` lets simdjson read first (ext/jsonsplit.pxi; whatever simdjson does
    not accept, the splitter's own parser decides): the complete records of a chunk in one pass
    when ``stream_min`` bytes or more of it are left at a record boundary, and a record that
    spanned chunks when it is ``record_min`` bytes or longer. Sets what is given (a value over
    2**31, the longest record, turns that use off); returns the previous
    ``(stream_min, record_min)``. For the benchmark and the tests."""

class SimdjsonRecords:
    """simdjson alone over a v3 body fed in chunks (bench/splitjson.py's counterpart of
    ``JsonSplitter``): each chunk is appended to the partial record the previous one left, and the
    complete records are read by On-Demand ``iterate_many`` in one pass. Items as the splitter's
    for good records; ValueError on the first record it does not accept (no error wording)."""

    records: int
    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]: ...

class AccessLines:
    """The access log's pending text (gateway.log.AccessLogHandler): lines formatted in C,
    timestamp included, into one buffer that the writer thread takes whole. Every method runs
    under the GIL without running Python code while it touches the buffer: no lock needed.
    A line that would take the pending text past ``max_bytes`` is dropped and counted in
    ``dropped``. The ``add_*`` methods return True when the pending text has just reached
    ``wake_bytes`` (wake the writer; once until the next ``take``)."""

    max_bytes: int
    wake_bytes: int
    dropped: int
    prefix: str  # written between the timestamp and the message, e.g. " INFO gateway.access: "
    pending_bytes: int

    def __init__(self, max_bytes: int, wake_bytes: int) -> None: ...
    def take(self) -> bytes:
        """The pending text, UTF-8 (unencodable characters backslash-escaped); empties it."""
    def add_text(self, text: str) -> bool:
        """A line formatted elsewhere, its newline included."""
    def add_request(self, peer: str, method: str | None, target: str | None, status: int,
                    bytes_in: int, bytes_out: int, ms: float, detail: str) -> bool:
        """``YYYY-MM-DD HH:MM:SS,mmm{prefix}PEER "METHOD TARGET" STATUS in=N out=N ms=F{detail}``
        and a newline, the time local as logging's default asctime; ``method`` None writes
        "-" (a head that could not be parsed); a target that is not printable is written as
        ``repr`` escapes it."""

class LatencyHistogram:
    """The load generator's latency histogram (gateway.loadgen; ext/loadgen.pxi): counts of
    integer values (microseconds) in HdrHistogram's log-bucket layout, 128 sub-buckets per
    power of two: values below 256 exact, above that a bucket under 1/128 (0.8%) of its values
    wide. Values below 0 count as 0, above 2^41 - 1 (25 days) as that. A fixed 35 KiB."""

    def record(self, value: int, count: int = 1) -> None:
        """Count ``value`` ``count`` times."""
    def record_span(self, first: float, step: float, n: int) -> None:
        """Count the n values ``first + k * step`` (k = 0 .. n-1, each rounded down; ``step``
        may be negative or 0): the latencies of n records answered at once, in one C loop."""
    def merge(self, other: LatencyHistogram) -> None:
        """Add every count of ``other``."""
    def reset(self) -> None:
        """Back to empty."""
    def value_at_percentile(self, percentile: float) -> int | None:
        """The smallest recorded value with at least ``percentile`` % of the counts at or below
        it, as the highest value of its bucket (never above the maximum recorded); 100 gives
        the maximum; None when empty."""
    @property
    def count(self) -> int: ...
    @property
    def max(self) -> int | None: ...
    @property
    def min(self) -> int | None: ...
    @property
    def mean(self) -> float | None: ...

def loadgen_records(
    template: bytes, key_at: int, key_prefix: bytes, width: int, first: int, n: int,
    keys: int, mult: int, b64: bool,
) -> bytes:
    """n copies of the fixed-length record ``template``, the i-th (counting from ``first``) with
    the key text ``key_prefix`` + the ``width``-digit zero-padded ``(i * mult) % keys`` written at
    ``key_at`` (its base64 when ``b64``); with ``keys`` 0 the copies are left as they are.
    ValueError when the key does not fit or ``keys`` is above 2^31 - 1. (gateway.loadgen.records
    builds the templates; ``key_text`` there is the Python twin of the key.)"""
