"""The v3 batch variant: ``POST .../records:batch`` with ``{"entries":[{"id":..., record}, ...]}``
answered once, with HTTP 207 ``{"successes":[...], "failures":[...]}`` (docs/api.md §1).

Each entry is checked by the same record rules as the stream (it goes through the splitter), so
both paths accept and refuse exactly the same records. The body is read whole (it is small and
bounded: at most 50 entries and ``max_bytes``) and parsed once it has ended.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from confluent_kafka import KafkaException

from gateway.kafka.producer import KafkaProducer, error_code_for
from gateway.produce.items import RecordError
from gateway.produce.reports import TimestampFormatter

log = logging.getLogger("gateway.produce")

ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}\Z")
_MESSAGE_PREFIX = re.compile(r"^record \d+ at byte \d+: ")
BATCH_ERROR = 42208


class BatchResponder(Protocol):
    def respond(self, status: int, body: bytes, *, close: bool = False) -> None: ...


class BatchError(Exception):
    """The batch as a whole is refused: (status, error_code, message)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def _body(error_code: int, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}, separators=(",", ":")).encode()


class BatchRequest:
    """Body consumer for one batch request; answers when every entry has its outcome."""

    def __init__(
        self,
        conn: BatchResponder,
        producer: KafkaProducer,
        make_splitter: Callable[[], Any],
        *,
        cluster_id: str,
        topic: str,
        partitions: int,
        max_entries: int,
        max_bytes: int,
    ) -> None:
        self._conn = conn
        self._producer = producer
        self._make_splitter = make_splitter
        self._cluster_id = cluster_id
        self._topic = topic
        self._partitions = partitions
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._buf = bytearray()
        self._done = False  # answered (or the client left)
        self._ids: list[str] = []
        self._outcomes: list[dict[str, Any] | None] = []
        self._to_produce: list[tuple[int, tuple[Any, ...]]] = []
        self._next = 0
        self._waiting = 0
        self._fmt_ts = TimestampFormatter()
        self._dirty = False

    @property
    def accepting(self) -> bool:
        return not self._done

    # -- body ---------------------------------------------------------------------------
    def on_body(self, data: memoryview) -> None:
        if self._done:
            return
        if len(self._buf) + len(data) > self._max_bytes:
            self._answer_error(413, 413, f"batch body is over the {self._max_bytes}-byte limit", close=True)
            return
        self._buf += data

    def on_body_end(self) -> None:
        if self._done:
            return
        try:
            entries = self._parse(bytes(self._buf))
        except BatchError as exc:
            self._answer_error(exc.status, exc.error_code, exc.message)
            return
        self._buf = bytearray()
        for index, (entry_id, fields) in enumerate(entries):
            self._ids.append(entry_id)
            self._outcomes.append(None)
            item = self._decode(fields)
            if isinstance(item, RecordError):
                self._fail(index, item.error_code, _MESSAGE_PREFIX.sub("", item.message))
            elif item[1] >= self._partitions:
                self._fail(index, 40402, f"partition_id {item[1]} does not exist: topic "
                           f"'{self._topic}' has {self._partitions} partitions")
            else:
                self._to_produce.append((index, item))
        self._produce_more()

    def _parse(self, body: bytes) -> list[tuple[str, dict[str, Any]]]:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BatchError(400, 400, f"the batch is not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != {"entries"} or not isinstance(doc["entries"], list):
            raise BatchError(422, BATCH_ERROR, 'the batch must be {"entries": [...]}')
        entries = doc["entries"]
        if not 1 <= len(entries) <= self._max_entries:
            raise BatchError(
                422, BATCH_ERROR, f"a batch has 1 to {self._max_entries} entries, not {len(entries)}"
            )
        out: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise BatchError(422, BATCH_ERROR, f"entries[{i}] is not an object")
            fields = dict(entry)
            entry_id = fields.pop("id", None)
            if not isinstance(entry_id, str) or not ENTRY_ID.match(entry_id):
                raise BatchError(
                    422, BATCH_ERROR, f"entries[{i}].id must be 1 to 80 characters of [0-9a-zA-Z_-]"
                )
            if entry_id in seen:
                raise BatchError(422, BATCH_ERROR, f"entries[{i}].id {entry_id} is not unique")
            seen.add(entry_id)
            out.append((entry_id, fields))
        return out

    def _decode(self, fields: dict[str, Any]) -> Any:
        splitter = self._make_splitter()
        text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        items = splitter.feed(text) + splitter.finish()
        return items[0]

    # -- producing ----------------------------------------------------------------------
    def _produce_more(self) -> None:
        todo = self._to_produce
        produce = self._producer.produce
        while self._next < len(todo):
            index, item = todo[self._next]
            _, partition, key, value, headers, ts, kt, vt = item
            try:
                produce(self._topic, value, key, partition, partial(self._on_dr, index, kt, key, vt, value),
                        None, ts, headers)
            except BufferError:
                self._producer.wait_for_space(self)
                return
            except KafkaException as exc:
                err = exc.args[0]
                self._fail(index, error_code_for(err), err.str())
            else:
                self._waiting += 1
            self._next += 1
        self._producer.kick()
        self._maybe_answer()

    def on_queue_space(self) -> None:
        if not self._done:
            self._produce_more()

    def _on_dr(self, index: int, kt: str | None, key: bytes | None, vt: str | None,
               value: bytes | None, err: Any, msg: Any) -> None:
        self._waiting -= 1
        if err is not None:
            self._fail(index, error_code_for(err), err.str())
        else:
            out: dict[str, Any] = {
                "id": self._ids[index],
                "cluster_id": self._cluster_id,
                "topic_name": self._topic,
                "partition_id": msg.partition(),
                "offset": msg.offset(),
                "timestamp": self._fmt_ts(msg.timestamp()[1]).decode(),
            }
            if kt is not None:
                out["key"] = {"type": kt, "size": 0 if key is None else len(key)}
            if vt is not None:
                out["value"] = {"type": vt, "size": 0 if value is None else len(value)}
            self._outcomes[index] = out
        if not self._dirty:
            self._dirty = True
            self._producer.mark_dirty(self)

    def flush_reports(self) -> None:
        self._dirty = False
        self._maybe_answer()

    def _fail(self, index: int, error_code: int, message: str) -> None:
        self._outcomes[index] = {"id": self._ids[index], "error_code": error_code, "message": message}

    def _maybe_answer(self) -> None:
        if self._done or self._waiting or self._next < len(self._to_produce):
            return
        self._done = True
        successes = [o for o in self._outcomes if o is not None and "error_code" not in o]
        failures = [o for o in self._outcomes if o is not None and "error_code" in o]
        body = json.dumps({"successes": successes, "failures": failures}, separators=(",", ":"),
                          ensure_ascii=False).encode()
        self._conn.respond(207, body)

    def _answer_error(self, status: int, error_code: int, message: str, *, close: bool = False) -> None:
        self._done = True
        self._conn.respond(status, _body(error_code, message), close=close)

    # -- lifecycle ----------------------------------------------------------------------
    def on_connection_lost(self) -> None:
        self._producer.cancel_wait(self)
        if not self._done and self._next < len(self._to_produce):
            log.warning("client gone: %d batch entries were never handed to Kafka",
                        len(self._to_produce) - self._next)
        self._done = True

    def on_shutdown(self) -> None:
        if not self._done and not self._to_produce and not self._outcomes:
            self._answer_error(503, 50003, "the gateway is shutting down", close=True)
