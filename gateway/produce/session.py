"""One v3 produce stream: body bytes in, records to Kafka, delivery reports out in order.

The session knows records, order and reports, not sockets: it talks to the connection through
``ReportStream`` (write report bytes, end the response, pause/resume reading for a reason).

Flow control (docs/api.md §1, style.md practice 6): the records between "parsed" and "report
written" are bounded by the report queue's capacity (the per-connection in-flight limit). When
it is full, or librdkafka's queue is full, the remaining parsed records wait in a backlog (at
most one body slice's worth) and reading pauses for that reason; it resumes when that reason
clears, and the connection resumes the socket only when no other reason holds.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any, Protocol

from confluent_kafka import KafkaException

from gateway.kafka.producer import KafkaProducer
from gateway.produce.items import RecordError
from gateway.produce.reports import (
    ReportQueue,
    TimestampFormatter,
    error_report,
    json_str,
    key_value_suffix,
)
from gateway.stats import ProduceStats

log = logging.getLogger("gateway.produce")

# Reasons a session asks its connection to stop reading (bits of the connection's mask).
PAUSE_IN_FLIGHT = 1 << 4
PAUSE_KAFKA_QUEUE = 1 << 5

SHUTDOWN_MESSAGE = "gateway is shutting down before this record was handed to Kafka; resend it"


class ReportStream(Protocol):
    def write_body(self, data: bytes) -> None: ...
    def end_body(self) -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...
    def stop_reading(self) -> None: ...
    def log_access(self, detail: str) -> None: ...


class ProduceSession:
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
    ) -> None:
        self._stream = stream
        self._producer = producer
        self._splitter = splitter
        self._topic = topic
        self._partitions = partitions
        self._reports = ReportQueue(max_in_flight)
        self._stats = stats
        self._max_feed = max_feed
        self._prefix = b'{"error_code":200,"cluster_id":%s,"topic_name":%s,"partition_id":' % (
            json_str(cluster_id),
            json_str(topic),
        )
        self._fmt_ts = TimestampFormatter()
        self._backlog: list[Any] | None = None
        self._backlog_pos = 0
        self._paused = 0
        self._dirty = False
        self._input_done = False
        self._ended = False
        self._gone = False
        self._shutting_down = False
        self.records_ok = 0
        self.records_failed = 0
        stats.streams += 1
        # Metrics (gateway.stats): folded at batch boundaries, never counted per record.
        self._tc = tc = stats.topic(topic)
        tc.streams += 1
        self._folded_ok = 0  # records_ok already added to tc.delivered
        # Report latency, sampled: the last record handed to Kafka from one body piece, from
        # its produce() to its report being written; one sample outstanding per stream.
        self._latency = stats.histogram("v3_stream")
        self._sample_seq = -1
        self._sample_t = 0.0
        stats.live_streams.add(self)

    # -- input ------------------------------------------------------------------------
    @property
    def accepting(self) -> bool:
        """False while parsed records wait for room: the connection must not feed more."""
        return self._backlog is None and not self._input_done

    def on_body(self, data: memoryview) -> None:
        if self._input_done:
            return
        step = self._max_feed
        n = len(data)
        self._tc.bytes_in += n
        if n <= step:
            self._handle(self._splitter.feed(data), 0)
            return
        # Feed bounded slices and stop at the first backlog: it then holds at most the records
        # of what this one call delivered (bounded by the connection's read buffer).
        pos = 0
        while pos < n and self.accepting:
            self._handle(self._splitter.feed(data[pos : pos + step]), 0)
            pos += step
        if pos < n and not self._input_done:
            # A backlog formed mid-body; the rest is kept by feeding it now (the splitter copies
            # only the trailing partial record) and parking its records behind the backlog.
            rest = self._splitter.feed(data[pos:])
            if rest:
                assert self._backlog is not None
                self._backlog = self._backlog[self._backlog_pos :] + rest
                self._backlog_pos = 0

    def on_body_end(self) -> None:
        if self._input_done:
            return
        items = self._splitter.finish()
        if items:
            if self._backlog is not None:
                # Behind the records still waiting for room, in order.
                self._backlog = self._backlog[self._backlog_pos :] + items
                self._backlog_pos = 0
            else:
                self._handle(items, 0)
        self._input_done = True
        self.flush_reports()

    def _handle(self, items: list[Any], i: int) -> None:
        rq = self._reports
        produce = self._producer.produce
        topic = self._topic
        on_dr = self._on_dr
        n = len(items)
        produced = False
        tail0 = rq.tail
        failed0 = self.records_failed
        while i < n:
            if rq.tail - rq.head >= rq.capacity:
                self._park(items, i, PAUSE_IN_FLIGHT)
                break
            item = items[i]
            if type(item) is tuple:
                _, partition, key, value, headers, ts, kt, vt = item
                if partition >= self._partitions:
                    rq.push(
                        error_report(
                            40402,
                            f"partition_id {partition} does not exist: topic '{topic}' has "
                            f"{self._partitions} partitions",
                        )
                    )
                    self.records_failed += 1
                    self._tc.fail(40402)
                else:
                    try:
                        # Positional: (topic, value, key, partition, callback, on_delivery,
                        # timestamp, headers), cheaper than keywords on this per-record call.
                        produce(topic, value, key, partition, partial(on_dr, rq.tail), None, ts, headers)
                    except BufferError:
                        # librdkafka's queue is full: wait for delivery reports to make room.
                        self._park(items, i, PAUSE_KAFKA_QUEUE)
                        self._producer.wait_for_space(self)
                        break
                    except KafkaException as exc:
                        err = exc.args[0]
                        code = self._producer.error_code(err)
                        rq.push(error_report(code, err.str()))
                        self.records_failed += 1
                        self._tc.fail(code)
                    else:
                        rq.push((key_value_suffix(kt, key, vt, value),))
                        produced = True
            else:
                assert isinstance(item, RecordError)
                rq.push(error_report(item.error_code, item.message))
                self.records_failed += 1
                self._tc.fail(item.error_code)
                if item.fatal:
                    # The splitter cannot find the next record: read no more of this body.
                    self._input_done = True
                    self._stream.stop_reading()
            i += 1
        else:
            if self._backlog is not None:
                self._backlog = None
                self._backlog_pos = 0
        # Every slot pushed in this call is a record handed to Kafka or a failure report
        # (produce() calls no delivery callback, so records_failed moved only here).
        self._tc.accepted += rq.tail - tail0 - (self.records_failed - failed0)
        if produced:
            if self._sample_seq < 0:
                self._sample_seq = rq.tail - 1
                self._sample_t = time.monotonic()
            self._producer.kick()
        self.flush_reports()

    def _park(self, items: list[Any], i: int, reason: int) -> None:
        self._backlog = items
        self._backlog_pos = i
        if not self._paused & reason:
            self._paused |= reason
            self._stream.pause_reading(reason)

    def _retry_backlog(self) -> None:
        backlog = self._backlog
        if backlog is None:
            return
        if self._shutting_down:
            self._fail_backlog()
            return
        self._handle(backlog, self._backlog_pos)
        if self._backlog is None and self._paused:
            reasons = self._paused
            self._paused = 0
            for reason in (PAUSE_IN_FLIGHT, PAUSE_KAFKA_QUEUE):
                if reasons & reason:
                    self._stream.resume_reading(reason)

    def _fail_backlog(self) -> None:
        backlog = self._backlog
        self._backlog = None
        if backlog is None:
            return
        rq = self._reports
        count = len(backlog) - self._backlog_pos
        for _ in range(count):
            # Shutdown ends reading, so the queue has room once earlier reports drain; the
            # in-flight bound still holds because nothing new is read.
            rq.push(error_report(50003, SHUTDOWN_MESSAGE), force=True)
        self.records_failed += count
        self._tc.fail(50003, count)

    # -- delivery reports -------------------------------------------------------------
    def _on_dr(self, seq: int, err: Any, msg: Any) -> None:
        # Called from producer.poll(0) on the loop thread, once per record of the batch.
        rq = self._reports
        if err is None:
            slot = rq.pending(seq)
            rq.complete(
                seq,
                b'%s%d,"offset":%d,"timestamp":"%s"%s}\r\n'
                % (
                    self._prefix,
                    msg.partition(),
                    msg.offset(),
                    self._fmt_ts(msg.timestamp()[1]),
                    slot[0],  # type: ignore[index]
                ),
            )
            self.records_ok += 1
        else:
            code = self._producer.error_code(err)
            rq.complete(seq, error_report(code, err.str()))
            self.records_failed += 1
            self._tc.fail(code)
        if not self._dirty:
            self._dirty = True
            self._producer.mark_dirty(self)

    def flush_reports(self) -> None:
        """Write every report whose predecessors are all known, as one chunk."""
        self._dirty = False
        rq = self._reports
        data = rq.pop_ready()
        if data and not self._gone:
            self._stream.write_body(data)
        ok = self.records_ok
        if ok != self._folded_ok:
            self._tc.delivered += ok - self._folded_ok
            self._folded_ok = ok
        if 0 <= self._sample_seq < rq.head:
            if not self._gone:
                self._latency.observe(time.monotonic() - self._sample_t)
            self._sample_seq = -1
        if self._backlog is not None and self._paused & PAUSE_IN_FLIGHT and not rq.full():
            self._retry_backlog()
            return
        self._maybe_end()

    def on_queue_space(self) -> None:
        if self._paused & PAUSE_KAFKA_QUEUE:
            self._retry_backlog()

    def _maybe_end(self) -> None:
        if self._ended or not self._input_done or self._backlog is not None:
            return
        if len(self._reports):
            return
        self._ended = True
        stats = self._stats
        stats.records_ok += self.records_ok
        stats.records_failed += self.records_failed
        stats.live_streams.discard(self)
        ok, failed = self.records_ok, self.records_failed
        if self._gone:
            if failed:
                log.warning(
                    "stream to topic %s ended after its client left: %d records delivered, "
                    "%d failed (their reports had no reader)",
                    self._topic,
                    ok,
                    failed,
                )
        else:
            self._stream.end_body()
        # The access log line of the stream (gateway.access), once, when its last report is out.
        self._stream.log_access(
            "topic=%s records=%d ok=%d failed=%d%s"
            % (self._topic, ok + failed, ok, failed, " (client gone)" if self._gone else "")
        )

    # -- lifecycle --------------------------------------------------------------------
    def on_connection_lost(self) -> None:
        """The client is gone. Records already handed to Kafka are still delivered (or counted
        failed); parsed records that were waiting for room are dropped, counted and logged."""
        if self._gone:
            return
        self._gone = True
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            dropped = len(self._backlog) - self._backlog_pos
            self._backlog = None
            self._stats.records_dropped_no_client += dropped
            self._tc.dropped += dropped
            self.records_failed += dropped
            log.warning(
                "client gone: %d parsed records of topic %s were never handed to Kafka",
                dropped,
                self._topic,
            )
        self._input_done = True
        self.flush_reports()

    def on_shutdown(self) -> None:
        """Stop reading; records already handed to Kafka finish and their reports go out;
        parsed records still waiting for room get a retriable failure report."""
        self._shutting_down = True
        if not self._input_done:
            self._input_done = True
            self._stream.stop_reading()
        self._producer.cancel_wait(self)
        if self._backlog is not None:
            self._fail_backlog()
        self.flush_reports()

    def in_flight(self) -> int:
        """Records read from the body whose report has not been written (or, with the client
        gone, whose outcome is not known yet): the in-flight gauge, read at scrape time."""
        waiting = 0 if self._backlog is None else len(self._backlog) - self._backlog_pos
        return len(self._reports) + waiting

    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
        return {
            "topic": self._topic,
            "session_paused": self._paused,
            "backlog": None if self._backlog is None else len(self._backlog) - self._backlog_pos,
            "reports_pending": len(self._reports),
            "input_done": self._input_done,
            "ok": self.records_ok,
            "failed": self.records_failed,
        }

    @property
    def finished(self) -> bool:
        return self._ended
