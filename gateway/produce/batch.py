"""Produce requests answered once, as a whole, when every record has its outcome.

``WholeRequest`` is the shared body consumer: it reads the body whole (bounded by ``max_bytes``),
lets its subclass parse it into records, hands them to the producer (waiting for room when the
librdkafka queue is full), collects one delivery report per record, and answers when the last
one is in. Subclasses say what the body looks like and what the answer is:

- ``BatchRequest``: the v3 batch variant, ``POST .../records:batch`` with
  ``{"entries":[{"id":..., record}, ...]}`` answered with HTTP 207
  ``{"successes":[...], "failures":[...]}`` (docs/api.md §1).
- ``gateway.produce.v1.V1ProduceRequest``: v1/v2 ``POST /topics/{t}`` (docs/api.md §2, §3).

Each batch entry is checked by the same record rules as the stream (it goes through the
splitter), so both paths accept and refuse exactly the same records. The batch body is small and
bounded (at most 50 entries and ``max_bytes``) and parsed once it has ended.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway._speedups import RdProducer, format_timestamp
from gateway.errors import error_body
from gateway.http.writer import JSON_TYPE
from gateway.kafka.producer import KafkaProducer, error_text
from gateway.limits import RateLimiter
from gateway.produce.items import RecordError
from gateway.stats import ProduceStats

log = logging.getLogger("gateway.produce")

ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}\Z")
_MESSAGE_PREFIX = re.compile(r"^record \d+ at byte \d+: ")
BATCH_ERROR = 42208
QUEUE_FULL = RdProducer.ERR_QUEUE_FULL


class Responder(Protocol):
    def respond(
        self, status: int, body: bytes, *, content_type: bytes = ..., close: bool = False
    ) -> None: ...


class RequestRefused(Exception):
    """The request as a whole is refused: (status, error_code, message)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class WholeRequest:
    """Body consumer for one produce request answered as a whole.

    A subclass implements ``_begin`` (parse the body, raise ``RequestRefused`` or fill
    ``self._todo``), ``_delivered`` (one delivery report), ``_not_handed`` (``produce()`` itself
    refused a record) and ``_answer`` (the final status and body). ``self._todo`` holds one
    ``(value, key, partition, timestamp_ms, headers, ctx)`` tuple per record; ``ctx`` is what
    the record's report is filed under. The tuples are dropped once all are handed to Kafka.
    Records are produced for a report sink of their own (the producer's router calls
    ``_on_report`` with the record's index in ``_todo`` as its sequence number).

    Metrics (gateway.stats) are counted per request, never per record: records handed to
    Kafka per ``_produce_more`` call, failures where their entry is built (``_count_failure``),
    and the delivered ones once every report is in (handed minus failed in Kafka). The report
    latency is one sample per request: from its first ``produce()`` to its answer.
    """

    _noun = "records"  # for the log
    _too_large = "request body"  # for the 413 message
    api = "v1"  # the report-latency histogram's label

    def __init__(
        self,
        conn: Responder,
        producer: KafkaProducer,
        *,
        topic: str,
        max_bytes: int,
        content_type: bytes = JSON_TYPE,
        stats: ProduceStats | None = None,
    ) -> None:
        self._conn = conn
        self._producer = producer
        self._topic = topic
        self._stats = stats = stats if stats is not None else ProduceStats()
        self._tc = stats.topic(topic)
        self._handed = 0  # records produce() took
        self._kafka_failed = 0  # of those, records Kafka failed
        self._t0 = 0.0  # first produce()
        self._live = False
        self._max_bytes = max_bytes
        self._content_type = content_type
        self._buf = bytearray()
        self._done = False  # answered (or the client left)
        self._started = False  # the body was parsed and producing has begun
        self._todo: list[tuple[Any, ...]] = []
        self._next = 0
        self._waiting = 0  # handed to Kafka, report not in yet
        self._dirty = False
        self._failed_without_client = 0
        self._sink = 0  # the report sink id while records are with Kafka
        self._ctxs: list[Any] = []

    @property
    def accepting(self) -> bool:
        return not self._done

    # -- to implement -------------------------------------------------------------------
    def _begin(self, body: bytes) -> None:
        raise NotImplementedError

    def _delivered(self, ctx: Any, err: int, partition: int, offset: int, timestamp: int) -> None:
        """One delivery report: ``err`` 0 (delivered) or a librdkafka error code."""
        raise NotImplementedError

    def _not_handed(self, ctx: Any, err: int) -> None:
        raise NotImplementedError

    def _ctx_list(self, todo: list[tuple[Any, ...]]) -> list[Any]:
        """The ctx of each record by its index (what ``_on_report`` looks up)."""
        return [t[5] for t in todo]

    def _answer(self) -> tuple[int, bytes]:
        raise NotImplementedError

    # -- body ---------------------------------------------------------------------------
    def on_body(self, data: memoryview) -> None:
        if self._done:
            return
        self._tc.bytes_in += len(data)
        if len(self._buf) + len(data) > self._max_bytes:
            self._answer_error(
                413, 413, f"{self._too_large} is over the {self._max_bytes}-byte limit", close=True
            )
            return
        self._buf += data

    def on_body_end(self) -> None:
        if self._done:
            return
        body = bytes(self._buf)
        self._buf = bytearray()
        try:
            self._begin(body)
        except RequestRefused as exc:
            self._answer_error(exc.status, exc.error_code, exc.message)
            return
        self._started = True
        self._t0 = time.monotonic()
        self._live = True
        self._stats.live_requests.add(self)
        self._produce_more()

    # -- producing ----------------------------------------------------------------------
    def _produce_more(self) -> None:
        todo = self._todo
        n = len(todo)
        producer = self._producer
        if not self._sink:
            self._sink = producer.register(self._on_report)
            self._ctxs = self._ctx_list(todo)
        produce = producer.produce
        topic = self._topic
        base = self._sink << 32
        i = self._next
        waiting0 = self._waiting  # no delivery report is served inside produce()
        while i < n:
            value, key, partition, timestamp, headers, ctx = todo[i]
            err = produce(topic, partition, key, value, headers, timestamp, base | i)
            if err:
                if err == QUEUE_FULL:
                    # librdkafka's queue is full: go on when the producer says there is room.
                    self._next = i
                    self._count_handed(self._waiting - waiting0)
                    producer.wait_for_space(self)
                    return
                self._not_handed(ctx, err)
            else:
                self._waiting += 1
            i += 1
        self._count_handed(self._waiting - waiting0)
        # Every record is with librdkafka (which copied the bytes): drop our references.
        self._todo = []
        self._next = 0
        self._producer.kick()
        self._maybe_answer()

    def on_queue_space(self) -> None:
        if not self._done:
            self._produce_more()

    def _failure_code(self, err: int) -> int:
        """The error_code a record failed in Kafka gets in the answer."""
        return self._producer.error_code(err)

    def _count_handed(self, n: int) -> None:
        self._handed += n
        self._tc.accepted += n

    def _count_failure(self, error_code: int, in_kafka: bool) -> None:
        """A record's failure entry (called where it is built: failures are rare)."""
        self._tc.fail(error_code)
        if in_kafka:
            self._kafka_failed += 1

    def _settle(self) -> None:
        """Every record has its outcome: count the delivered ones, leave the live set."""
        if not self._live:
            return
        self._live = False
        if self._sink:
            self._producer.unregister(self._sink)
        self._stats.live_requests.discard(self)
        self._tc.delivered += self._delivered_total()

    def _delivered_total(self) -> int:
        """Records of this request Kafka acknowledged (once every outcome is in)."""
        return self._handed - self._kafka_failed

    def in_flight(self) -> int:
        """Records of this request not yet with their outcome (the in-flight gauge)."""
        return self._outstanding() + len(self._todo) - self._next

    def _on_report(self, seq: int, err: int, partition: int, offset: int, timestamp: int) -> None:
        self._waiting -= 1
        if self._done:
            # The client left: the record was still delivered or failed; say so in the log.
            if err:
                self._failed_without_client += 1
                self._count_failure(self._failure_code(err), True)
            if not self._waiting:
                if self._failed_without_client:
                    log.warning("client gone: %d of its %s failed in Kafka",
                                self._failed_without_client, self._noun)
                    self._failed_without_client = 0
                if self._next >= len(self._todo):
                    self._settle()
            return
        self._delivered(self._ctxs[seq] if self._ctxs else seq, err, partition, offset, timestamp)
        if not self._dirty:
            self._dirty = True
            self._producer.mark_dirty(self)

    def flush_reports(self) -> None:
        self._dirty = False
        self._maybe_answer()

    def _maybe_answer(self) -> None:
        if self._done or not self._started or self._outstanding() or self._next < len(self._todo):
            return
        self._done = True
        self._settle()
        status, body = self._answer()
        self._stats.histogram(self.api).observe(time.monotonic() - self._t0)
        self._conn.respond(status, body, content_type=self._content_type)

    def _answer_error(self, status: int, error_code: int, message: str, *, close: bool = False) -> None:
        self._done = True
        self._conn.respond(
            status, error_body(error_code, message), content_type=self._content_type, close=close
        )

    # -- lifecycle ----------------------------------------------------------------------
    def on_connection_lost(self) -> None:
        self._producer.cancel_wait(self)
        if not self._done and self._next < len(self._todo):
            left = len(self._todo) - self._next
            log.warning("client gone: %d %s were never handed to Kafka", left, self._noun)
            self._tc.dropped += left
            self._todo = []
            self._next = 0
        self._done = True
        if not self._outstanding():
            self._settle()

    def _outstanding(self) -> int:
        """Records handed to Kafka whose report is not in yet."""
        return self._waiting

    def on_shutdown(self) -> None:
        # Still reading the body: refuse. Records already with Kafka finish and are answered.
        if not self._done and not self._started:
            self._answer_error(503, 50003, "the gateway is shutting down", close=True)


class BatchRequest(WholeRequest):
    """The v3 batch variant; answers when every entry has its outcome."""

    _noun = "batch entries"
    _too_large = "batch body"
    api = "v3_batch"

    def __init__(
        self,
        conn: Responder,
        producer: KafkaProducer,
        make_splitter: Callable[[], Any],
        *,
        cluster_id: str,
        topic: str,
        partitions: int,
        max_entries: int,
        max_bytes: int,
        stats: ProduceStats | None = None,
        rates: RateLimiter | None = None,
        principal: str = "-",
    ) -> None:
        super().__init__(conn, producer, topic=topic, max_bytes=max_bytes, stats=stats)
        self._rates = rates if rates is not None and rates.enabled else None
        self._principal = principal
        self._make_splitter = make_splitter
        self._cluster_id = cluster_id
        self._partitions = partitions
        self._max_entries = max_entries
        self._ids: list[str] = []
        self._outcomes: list[dict[str, Any] | None] = []

    def _begin(self, body: bytes) -> None:
        entries = self._parse(body)
        todo = self._todo
        for index, (entry_id, fields) in enumerate(entries):
            self._ids.append(entry_id)
            self._outcomes.append(None)
            item = self._decode(fields)
            if isinstance(item, RecordError):
                self._fail(index, item.error_code, _MESSAGE_PREFIX.sub("", item.message), False)
            elif item[1] >= self._partitions:
                self._fail(index, 40402, f"partition_id {item[1]} does not exist: topic "
                           f"'{self._topic}' has {self._partitions} partitions", False)
            else:
                _, partition, key, value, headers, ts, kt, vt = item
                todo.append((value, key, partition, ts, headers, (index, kt, key, vt, value)))
        if self._rates is not None and todo:
            self._todo = self._within_rate(todo)

    def _within_rate(self, todo: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The entries the rate limits allow now; the others fail with 429 (gateway.limits)."""
        rates = self._rates
        assert rates is not None
        records, nbytes = rates.allowance(self._principal)
        kept: list[tuple[Any, ...]] = []
        used = 0
        for entry in todo:
            value, key = entry[0], entry[1]
            size = (0 if key is None else len(key)) + (0 if value is None else len(value))
            if records < 1 or size > nbytes:
                self._fail(entry[5][0], 429, "record dropped: the produce rate limit is exceeded", False)
                continue
            records -= 1
            nbytes -= size
            used += size
            kept.append(entry)
        rates.charge(self._principal, len(kept), used)
        return kept

    def _parse(self, body: bytes) -> list[tuple[str, dict[str, Any]]]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestRefused(400, 400, f"the batch is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != {"entries"} or not isinstance(doc["entries"], list):
            raise RequestRefused(422, BATCH_ERROR, 'the batch must be {"entries": [...]}')
        entries = doc["entries"]
        if not 1 <= len(entries) <= self._max_entries:
            raise RequestRefused(
                422, BATCH_ERROR, f"a batch has 1 to {self._max_entries} entries, not {len(entries)}"
            )
        out: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise RequestRefused(422, BATCH_ERROR, f"entries[{i}] is not an object")
            fields = dict(entry)
            entry_id = fields.pop("id", None)
            if not isinstance(entry_id, str) or not ENTRY_ID.match(entry_id):
                raise RequestRefused(
                    422, BATCH_ERROR, f"entries[{i}].id must be 1 to 80 characters of [0-9a-zA-Z_-]"
                )
            if entry_id in seen:
                raise RequestRefused(422, BATCH_ERROR, f"entries[{i}].id {entry_id} is not unique")
            seen.add(entry_id)
            out.append((entry_id, fields))
        return out

    def _decode(self, fields: dict[str, Any]) -> Any:
        splitter = self._make_splitter()
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        items = splitter.feed(text) + splitter.finish()
        return items[0]

    def _delivered(self, ctx: Any, err: int, partition: int, offset: int, timestamp: int) -> None:
        index, kt, key, vt, value = ctx
        if err:
            self._fail(index, self._producer.error_code(err), error_text(err), True)
            return
        out: dict[str, Any] = {
            "id": self._ids[index],
            "cluster_id": self._cluster_id,
            "topic_name": self._topic,
            "partition_id": partition,
            "offset": offset,
            "timestamp": format_timestamp(timestamp).decode(),
        }
        if kt is not None:
            out["key"] = {"type": kt, "size": 0 if key is None else len(key)}
        if vt is not None:
            out["value"] = {"type": vt, "size": 0 if value is None else len(value)}
        self._outcomes[index] = out

    def _not_handed(self, ctx: Any, err: int) -> None:
        self._fail(ctx[0], self._producer.error_code(err), error_text(err), False)

    def _fail(self, index: int, error_code: int, message: str, in_kafka: bool) -> None:
        self._outcomes[index] = {"id": self._ids[index], "error_code": error_code, "message": message}
        self._count_failure(error_code, in_kafka)

    def _answer(self) -> tuple[int, bytes]:
        successes = [o for o in self._outcomes if o is not None and "error_code" not in o]
        failures = [o for o in self._outcomes if o is not None and "error_code" in o]
        body = json.dumps({"successes": successes, "failures": failures}, separators=(",", ":"),
                          ensure_ascii=False).encode()
        return 207, body
