"""A stand-in for ``gateway._speedups.RdProducer`` in unit tests of the produce paths.

It sits at the producer interface (``ProducerBase``): the compiled ``StreamCore`` hands it each
record through ``produce_record`` (the one path it also takes with the real producer), and it
records the call; the test decides when and how each record is reported (``deliver``), and
``poll()`` then fills the report batch the way librdkafka's callback does (``add_report``), so
the real ``ReportRouter``, ``StreamCore`` and ``KafkaProducer`` run on top of it."""

from __future__ import annotations

from typing import Any

from gateway.kafka.producer import ProducerBase

QUEUE_FULL = -184  # RD_KAFKA_RESP_ERR__QUEUE_FULL


def _code(err: Any) -> int:
    """A librdkafka error code from an int or a confluent_kafka.KafkaError."""
    if err is None:
        return 0
    return err if isinstance(err, int) else int(err.code())


class FakeRdProducer(ProducerBase):
    event_fd = -1  # no eventfd: KafkaProducer falls back to its poll timer
    batch_full = False
    fatal = False
    log_count = 0  # librdkafka's log lines: the fake has none

    def __init__(self, conf: dict[str, Any], queue_limit: int = 1_000_000) -> None:
        super().__init__()
        self.conf = conf
        self.queue_limit = queue_limit
        # One entry per produce call: [topic, value, key, partition, opaque, ts, headers]; None
        # once delivered.
        self.queued: list[list[Any] | None] = []
        # Reports for the next poll and the last poll's: (opaque, partition, offset, timestamp,
        # error, the failed record's content or None), as add_report takes them.
        self.ready: list[tuple[int, int, int, int, int, Any]] = []
        self.batch: list[tuple[int, int, int, int, int, Any]] = []
        self.offsets: dict[int, int] = {}
        self.fail_produce = 0  # a librdkafka error code every produce call returns (0: none)
        self.waiting = 0  # produced, not yet delivered (kept so len() is O(1))
        self.closed = False
        self.errors: list[tuple[int, str]] = []  # error events for the next poll (error_cb)

    def produce_record(self, topic: Any, partition: int, key: Any, value: Any, headers: Any,
                       ts: int, opaque: int) -> int:
        if self.fail_produce:
            return self.fail_produce
        if len(self) >= self.queue_limit:
            return QUEUE_FULL
        self.queued.append([topic, value, key, partition, opaque, ts, headers])
        self.waiting += 1
        return 0

    def deliver(self, i: int, err: Any = None) -> None:
        entry = self.queued[i]
        assert entry is not None, f"record {i} was already delivered"
        topic, value, key, partition, opaque, ts, headers = entry
        p = partition if partition >= 0 else 0
        off = self.offsets.get(p, 0)
        self.offsets[p] = off + 1
        code = _code(err)
        # With keep_failed (the disk spool on), librdkafka's callback keeps a failed record's
        # content for the spool, in the splitter's item shape.
        failed = (0, partition, key, value, headers, ts, None, None) if code and \
            self.keep_failed else None
        self.ready.append((opaque, p, off, ts or 1_700_000_000_123, code, failed))
        self.queued[i] = None
        self.waiting -= 1

    def poll(self) -> int:
        self.batch, self.ready = self.ready, []
        self.new_batch()
        for report in self.batch:
            self.add_report(*report)
        return len(self.batch)

    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]:
        return [], 0

    def take_stats(self) -> None:
        return None

    @property
    def error_count(self) -> int:
        return len(self.errors)

    def take_errors(self) -> list[tuple[int, str]]:
        errors, self.errors = self.errors, []
        return errors

    def __len__(self) -> int:
        return self.waiting + len(self.ready)

    def purge(self, **kw: Any) -> None:
        pass

    def close(self, timeout_ms: int = 0) -> int:
        self.closed = True
        return 0
