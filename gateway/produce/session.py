"""One v3 produce stream: body bytes in, records to Kafka, delivery reports out in order.

The session knows records, order and reports, not sockets: it talks to the connection through
``ReportStream`` (write report bytes, end the response, pause/resume reading for a reason).
What is done once per record (produce, file the report slot, complete it from the delivery
report, format the report bytes) is in C: ``StreamCore`` (ext/stream.pxi). The session keeps the
stream's lifecycle: body pieces, backlog, pausing, shutdown, metrics and the access log.

States (``SessionState``, moved only by ``_set_state``):

- READING: body bytes are taken (a backlog of parsed records may wait for room);
- DRAINING: no more input (the body ended, a fatal record error, a limit cut it); the reports of
  the records read go out, then the response ends;
- SHUTTING_DOWN: the same, because the gateway is stopping: reports are written even to a peer
  that does not read (the socket's buffer takes them; the window bounds them);
- ORPHANED: the client is gone; the records with Kafka still get their outcome (counted, logged);
- ENDED: every report is out (or every outcome known), the access line is written.

Flow control (docs/api.md §1): the records between "parsed" and "report written" are bounded by
the core's window (the per-connection in-flight limit). When it is full, or librdkafka's queue
is full, the remaining parsed records wait in a backlog (at most one body slice's worth) and
reading pauses for that reason; it resumes when that reason clears, and the connection resumes
the socket only when no other reason holds.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from typing import Any, Protocol

from gateway.errors import GatewayBug, GatewayError
from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.moves import move_masks
from gateway.produce.core import StreamCore, hand_over
from gateway.produce.reports import error_report, json_str
from gateway.stats import ProduceStats

log = logging.getLogger("gateway.produce")

# Reasons a session asks its connection to stop reading (bits of the connection's mask); the
# same values as StreamCore.stop_reason.
PAUSE_IN_FLIGHT = 1 << 4
PAUSE_KAFKA_QUEUE = 1 << 5

SHUTDOWN_MESSAGE = "gateway is shutting down before this record was handed to Kafka; resend it"
ENDED_MESSAGE = "the stream ended before this record was handed to Kafka; resend it"


class SessionState(enum.IntEnum):
    READING = 0
    DRAINING = 1
    SHUTTING_DOWN = 2
    ORPHANED = 3
    ENDED = 4


# Module-level names: hot paths compare identities with these (an enum class's attribute is a
# slow lookup, a global a fast one).
READING, DRAINING, SHUTTING_DOWN, ORPHANED, ENDED = SessionState
_MOVES = move_masks({
    READING: {DRAINING, SHUTTING_DOWN, ORPHANED, ENDED},
    DRAINING: {SHUTTING_DOWN, ORPHANED, ENDED},
    SHUTTING_DOWN: {ORPHANED, ENDED},
    ORPHANED: {ENDED},
    ENDED: set(),
})
_WRITING = (READING, DRAINING, SHUTTING_DOWN)  # the client is there to read


@functools.lru_cache(maxsize=1024)
def report_prefix(cluster_id: str, topic: str) -> bytes:
    """The start of a success report of the topic's streams (built once per topic: streams of
    one record each are common)."""
    return b'{"error_code":200,"cluster_id":%s,"topic_name":%s,"partition_id":' % (
        json_str(cluster_id),
        json_str(topic),
    )


class ReportStream(Protocol):
    @property
    def write_blocked(self) -> bool: ...
    def write_body(self, data: bytes) -> None: ...
    def end_body(self, data: bytes = b"") -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...
    def stop_reading(self) -> None: ...
    def log_access(self, detail: str, status: int = ...) -> None: ...


class ProduceSession:
    # Slots: 10,000 open streams each hold one (issue 4's memory row).
    __slots__ = (
        "_backlog", "_backlog_pos", "_core", "_dropped", "_folded_ok", "_latency", "_max_feed",
        "_paused", "_producer", "_sample_seq", "_sample_t", "_state", "_splitter", "_stats",
        "_stream", "_tc", "_topic", "_rates", "_principal", "_max_body", "_body_bytes",
        "_timer", "_max_duration", "_client", "_final_status", "__weakref__",
    )

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
    ) -> None:
        self._stream = stream
        self._state = READING
        self._client = client  # who the stream is from, for the log
        # Limits (gateway.limits): the rate buckets, who they count this stream for, the body
        # size limit (0: none) and the stream's maximum duration (0: none).
        self._rates = rates if rates is not None and rates.enabled else None
        self._principal = principal
        self._max_body = max_body_bytes
        self._body_bytes = 0
        self._max_duration = max_duration
        self._timer: asyncio.TimerHandle | None = None
        if max_duration > 0:
            self._timer = asyncio.get_running_loop().call_later(max_duration, self._on_max_duration)
        self._producer = producer
        self._splitter = splitter
        self._topic = topic
        self._stats = stats
        self._max_feed = max_feed
        # Metrics (gateway.stats): folded at batch boundaries, never counted per record.
        self._tc = tc = stats.topics[topic]
        self._core = StreamCore(producer.router, producer.current, topic, partitions,
                                max_in_flight, report_prefix(cluster_id, topic), self,
                                producer.error_of, tc.fail, error_report)
        self._backlog: list[Any] | None = None
        self._backlog_pos = 0
        self._paused = 0
        self._dropped = 0  # parsed records never handed to Kafka (client gone, internal error)
        # The access log's status: 200 for a stream read to its end; a stream cut short logs the
        # status its last report stands for (400 garbage or broken framing, 408, 413, 431,
        # 503 shutdown, 500 internal error).
        self._final_status = 200
        stats.streams += 1
        tc.streams += 1
        self._folded_ok = 0  # core.ok already added to tc.delivered
        # Report latency, sampled: the last record handed to Kafka from one body piece, from
        # its produce to its report being written; one sample outstanding per stream.
        self._latency = stats.latency["v3_stream"]
        self._sample_seq = -1
        self._sample_t = 0.0
        stats.live_streams.add(self)

    # -- state --------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self._state

    def _set_state(self, state: SessionState) -> None:
        if not _MOVES[self._state] >> state & 1:
            raise GatewayBug(f"illegal stream state move {self._state.name} -> {state.name}")
        self._state = state

    def describe(self) -> str:
        return f"v3 stream to topic {self._topic} from {self._client}"

    @property
    def records_ok(self) -> int:
        return self._core.ok

    @property
    def records_failed(self) -> int:
        return self._core.failed + self._dropped

    # -- input ------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False while parsed records wait for room: the connection must not feed more."""
        return self._backlog is None and self._state is READING

    def on_body(self, data: memoryview) -> None:
        if self._state is not READING:
            return
        n = len(data)
        self._tc.bytes_in += n
        done = self._body_bytes
        self._body_bytes = done + n
        if self._max_body and n > self._max_body - done:
            # Over the request size limit: the records complete within it go on; the rest of
            # the body is not read and gets one last 413 report (docs/api.md §1).
            room = self._max_body - done
            if room > 0:
                self._feed(data[:room])
            self._cut_input(
                413,
                f"the request body is over the {self._max_body}-byte limit "
                "(api.v3.produce.request.size.limit.max.bytes): reading stopped at byte "
                f"{self._max_body}; the records after this report were not read",
            )
            return
        if n <= self._max_feed:
            self._handle(self._splitter.feed(data), 0)  # (_feed's common case)
        else:
            self._feed(data)

    def _feed(self, data: memoryview) -> None:
        step = self._max_feed
        n = len(data)
        if n <= step:
            self._handle(self._splitter.feed(data), 0)
            return
        # Feed bounded slices and stop at the first backlog: it then holds at most the records
        # of what this one call delivered (bounded by the connection's read buffer).
        pos = 0
        while pos < n and self.accepting:
            self._handle(self._splitter.feed(data[pos : pos + step]), 0)
            pos += step
        if pos < n and self._state is READING:
            # A backlog formed mid-body; the rest is kept by feeding it now (the splitter copies
            # only the trailing partial record) and parking its records behind the backlog.
            rest = self._splitter.feed(data[pos:])
            if rest:
                self._park(rest)

    def _park(self, items: list[Any]) -> None:
        """Records parsed while others wait for room: behind them, in order."""
        assert self._backlog is not None
        self._backlog = self._backlog[self._backlog_pos :] + items
        self._backlog_pos = 0

    def on_body_end(self) -> None:
        if self._state is not READING:
            return
        items = self._splitter.finish()
        if items:
            if self._backlog is not None:
                self._park(items)
            else:
                self._handle(items, 0)
        if self._state is READING:
            self._state = DRAINING  # (READING -> DRAINING: legal)
        # Records still with Kafka and none waiting for room: the last report's flush ends the
        # stream. Otherwise (reports ready, nothing left, a backlog) flush now.
        core = self._core
        if self._backlog is not None or not 0 < len(core) == core.pending:
            self.flush_reports()

    def _handle(self, items: list[Any], i: int) -> None:
        core = self._core
        if core.fatal_seen:
            return
        producer = self._producer
        tail0 = core.tail
        failed0 = core.failed
        produced0 = core.produced
        i = hand_over(core, producer, items, i, self._rates, self._principal)
        if i < len(items):
            reason = core.stop_reason
            self._backlog = items
            self._backlog_pos = i
            if not self._paused & reason:
                self._paused |= reason
                self._stream.pause_reading(reason)
            if reason == PAUSE_KAFKA_QUEUE:
                producer.wait_for_space(self)
        elif self._backlog is not None:
            self._backlog = None
            self._backlog_pos = 0
        if core.fatal_seen and self._state is READING:
            # The splitter cannot find the next record: read no more of this body.
            self._set_state(DRAINING)
            self._final_status = 400
            self._stream.stop_reading()
        # Every slot filed in this call is a record handed to Kafka or a failure report (no
        # delivery report is served inside push).
        self._tc.accepted += core.tail - tail0 - (core.failed - failed0)
        if core.produced != produced0:
            if self._sample_seq < 0:
                self._sample_seq = core.tail - 1
                self._sample_t = time.monotonic()
            producer.kick()
        # While reading, a flush has work only when this call filed a report (a failure, a 429,
        # a refusal): a record handed over has its report come through the router's flush.
        if self._state is not READING or len(core) != core.pending:
            self.flush_reports()

    def _retry_backlog(self) -> None:
        backlog = self._backlog
        if backlog is None:
            return
        if self._state is SHUTTING_DOWN:
            self._fail_backlog(50003, SHUTDOWN_MESSAGE)
            return
        self._handle(backlog, self._backlog_pos)
        if self._backlog is None and self._paused:
            reasons = self._paused
            self._paused = 0
            for reason in (PAUSE_IN_FLIGHT, PAUSE_KAFKA_QUEUE):
                if reasons & reason:
                    self._stream.resume_reading(reason)

    def _fail_backlog(self, code: int, message: str) -> None:
        backlog = self._backlog
        self._backlog = None
        if backlog is None:
            return
        core = self._core
        for _ in range(len(backlog) - self._backlog_pos):
            # Reading has ended, so the window has room once earlier reports drain; the
            # in-flight bound still holds because nothing new is read.
            core.push_failure(code, message, True)

    def on_body_error(self, error: GatewayError) -> None:
        """The connection stopped reading this body before its end (``error``: its framing
        broke, the client half-closed, it was idle, the gateway is stopping), or a fault of
        ours ended the request (``GatewayBug``). Records already handed to Kafka keep their
        reports; one last report says why and from which body byte on nothing was read."""
        if isinstance(error, GatewayBug):
            self.on_internal_error(error)
            return
        self._cut_input(
            error.error_code,
            f"{error.message}: reading stopped at byte {self._body_bytes} of the records sent; "
            "the records after this report were not read, send them again",
            status=error.status,
            backlog_code=50003,
        )

    def _cut_input(
        self, code: int, message: str, *, status: int = 0, backlog_code: int = 0
    ) -> None:
        """Read no more of this body: records waiting for room get a ``backlog_code`` report
        each (default ``code``), then one last report (``code``) stands for the rest of the
        body, which is not read. The access log carries ``status`` (default ``code``) as the
        stream's status: the HTTP status of that last report's code. Every reason a stream
        stops being read before its end comes here (over the body limit, the maximum
        duration, every cut of the connection's through ``on_body_error``), except two that
        end it their own way: garbage between records (the splitter's fatal report) and a
        fault of ours (``on_internal_error``)."""
        if self._state is not READING:
            return
        self._end_input(DRAINING, backlog_code or code, ENDED_MESSAGE)
        self._final_status = status or code
        self._core.push_failure(code, message, True)
        self.flush_reports()

    def _end_input(self, state: SessionState, backlog_code: int, backlog_message: str) -> None:
        """Read no more; parsed records still waiting for room get a failure report each."""
        was = self._state
        self._set_state(state)
        if was is READING:
            self._stream.stop_reading()
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            self._fail_backlog(backlog_code, backlog_message)

    def _on_max_duration(self) -> None:
        self._timer = None
        ms = round(self._max_duration * 1000)
        self._cut_input(
            408,
            f"the stream was open for its maximum of {ms} ms (streaming.connection.max.duration.ms): "
            "reading stopped here; the records after this report were not read, send them on a "
            "new connection",
        )

    # -- delivery reports -------------------------------------------------------------
    def flush_reports(self) -> None:
        """Write every report whose predecessors are all known, as one chunk. Called after a
        poll that completed some of this stream's records (the router lists them), and after
        each body piece. While the peer does not read (the socket's buffer is full), reports
        stay in the core's ring, a few dozen bytes each, until ``on_writable``; the full
        window then pauses reading."""
        state = self._state
        if state is ENDED:
            return
        core = self._core
        if self._stream.write_blocked and state is not SHUTTING_DOWN and state is not ORPHANED:
            return
        data = core.take_ready()
        last = b""  # the stream's last output: it goes with the stream's end (_finish)
        if data and state is not ORPHANED:
            if state is not READING and self._backlog is None and not len(core):
                last = data
            else:
                self._stream.write_body(data)
        ok = core.ok
        if ok != self._folded_ok:
            self._tc.delivered += ok - self._folded_ok
            self._folded_ok = ok
        if 0 <= self._sample_seq < core.head:
            if state is not ORPHANED:
                self._latency.observe(time.monotonic() - self._sample_t)
            self._sample_seq = -1
        if self._backlog is not None:
            if self._paused & PAUSE_IN_FLIGHT and not core.full:
                self._retry_backlog()
                return
        else:  # the stream ends with its last report (the state may have moved meanwhile)
            state = self._state
            if state is not READING and state is not ENDED and not len(core):
                self._finish(state is ORPHANED, last)
                return
        if last:  # (not ended after all)
            self._stream.write_body(last)

    def on_writable(self) -> None:
        """The socket's buffer drained below its low-water mark."""
        self.flush_reports()

    def on_queue_space(self) -> None:
        if self._paused & PAUSE_KAFKA_QUEUE:
            self._retry_backlog()

    def _finish(self, gone: bool, last: bytes = b"") -> None:
        """The last report is out (or, with the client gone, the last outcome is known)."""
        if self._state is DRAINING:
            self._state = ENDED  # (the common, legal, move: _set_state checks the others)
        else:
            self._set_state(ENDED)
        core = self._core
        core.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stats = self._stats
        ok, failed = core.ok, core.failed + self._dropped  # (records_ok, records_failed)
        stats.records_ok += ok
        stats.records_failed += failed
        stats.live_streams.discard(self)
        if gone:
            if failed:
                log.warning(
                    "stream to topic %s ended after its client left: %d records delivered, "
                    "%d failed (their reports had no reader)",
                    self._topic,
                    ok,
                    failed,
                )
        else:
            self._stream.end_body(last)
        # The access log line of the stream (gateway.access), once, when its last report is out.
        spooled = self._core.spooled
        self._stream.log_access(
            "topic=%s records=%d ok=%d failed=%d%s%s"
            % (self._topic, ok + failed + spooled, ok, failed,
               f" spooled={spooled}" if spooled else "", " (client gone)" if gone else ""),
            self._final_status,
        )

    # -- lifecycle --------------------------------------------------------------------
    def on_connection_lost(self) -> None:
        """The client is gone. Records already handed to Kafka are still delivered (or counted
        failed); parsed records that were waiting for room are dropped, counted and logged."""
        if self._state not in _WRITING:
            return
        self._set_state(ORPHANED)
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            dropped = len(self._backlog) - self._backlog_pos
            self._backlog = None
            self._stats.records_dropped_no_client += dropped
            self._tc.dropped += dropped
            self._dropped += dropped
            log.warning(
                "client gone: %d parsed records of topic %s were never handed to Kafka",
                dropped,
                self._topic,
            )
        self.flush_reports()

    def on_shutdown(self) -> None:
        """Stop reading; records already handed to Kafka finish and their reports go out;
        parsed records still waiting for room get a retriable failure report."""
        if self._state is READING or self._state is DRAINING:
            self._end_input(SHUTTING_DOWN, 50003, SHUTDOWN_MESSAGE)
            self.flush_reports()

    def on_internal_error(self, exc: BaseException) -> None:
        """Reporting to this stream failed (the producer has logged why). Only the core's C
        side and constant reports are used from here: every record without an outcome gets the
        internal-error report (50003, resend), a stream still being read gets one last report
        saying where reading stopped, and the response ends."""
        state = self._state
        if state is ENDED:
            return
        core = self._core
        self._producer.cancel_wait(self)
        core.fail_pending()
        out = core.take_ready()
        backlog = self._backlog
        if backlog is not None:
            n = len(backlog) - self._backlog_pos
            self._backlog = None
            self._dropped += n
            out += core.internal_report * n
        if state is READING:
            self._dropped += 1  # the last report stands for the unread rest
            out += error_report(
                50003,
                f"internal error of the gateway: reading stopped at byte {self._body_bytes}; "
                "the records after this report were not read, send them again",
            )
            self._stream.stop_reading()
        self._final_status = 500
        if state is not ORPHANED and out:
            self._stream.write_body(out)
        self._finish(state is ORPHANED)

    def in_flight(self) -> int:
        """Records read from the body whose report has not been written (or, with the client
        gone, whose outcome is not known yet): the in-flight gauge, read at scrape time."""
        waiting = 0 if self._backlog is None else len(self._backlog) - self._backlog_pos
        return len(self._core) + waiting

    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
        return {
            "topic": self._topic,
            "session": self._state.name,
            "session_paused": self._paused,
            "backlog": None if self._backlog is None else len(self._backlog) - self._backlog_pos,
            "reports_pending": len(self._core),
            "core": self._core.debug_info(),
            "ok": self.records_ok,
            "failed": self.records_failed,
        }

    @property
    def core(self) -> StreamCore:
        return self._core

    @property
    def finished(self) -> bool:
        return self._state is ENDED
