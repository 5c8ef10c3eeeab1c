"""The v3 batch variant: ``POST .../records:batch`` with ``{"entries":[{"id":..., record}, ...]}``,
answered once with HTTP 207 ``{"successes":[...], "failures":[...]}`` (docs/api.md §1).

Each entry's record is the entry without its ``id`` member, as the client wrote it: the
splitter reads it as it reads a record of the stream, so both paths store the same bytes for
the same record and refuse the same records (a repeated record field included), with the same
messages (without the stream's ``record N at byte M:`` prefix). The body is small and bounded
(at most 50 entries and ``max_bytes``) and parsed once it has ended; the rest is
``WholeRequest``'s.

One pass of simdjson over the body (``json_batch_entries``) checks all of it as ``json_loads``
does, and gives each entry's ``id`` and the byte spans of the entry's text around its ``id``
member; no Python object is made of a record, and none is written back. A body it refuses is
not JSON (400), worded by its message and byte offset.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.produce.core import JsonDecodeError, StreamCore, format_timestamp, json_batch_entries
from gateway.produce.items import RecordError
from gateway.produce.reports import json_str
from gateway.produce.whole import RequestRefused, WholeRequest
from gateway.stats import ProduceStats

ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}\Z")
_MESSAGE_PREFIX = re.compile(r"^record \d+ at byte \d+: ")
BATCH_ERROR = 42208
_SHAPE = 'the batch must be {"entries": [...]}'
_SPOOLED = b'{"error_code":202,'  # the report of a spooled record (gateway.produce.edge)


def _not_json(reason: str) -> RequestRefused:
    return RequestRefused(400, 400, f"the batch is not valid JSON: {reason}")


def _shape(message: str = _SHAPE) -> RequestRefused:
    return RequestRefused(422, BATCH_ERROR, message)


class BatchRequest(WholeRequest):
    """The v3 batch variant; answers when every entry has its outcome."""

    def __init__(
        self,
        conn: Any,
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
        super().__init__(
            conn, producer, topic=topic, partitions=partitions, max_bytes=max_bytes, stats=stats,
            rates=rates, principal=principal, api="v3_batch", noun="batch entries",
            too_large="batch body",
        )
        self._make_splitter = make_splitter
        self._cluster_json = json_str(cluster_id)
        self._topic_json = json_str(topic)
        self._max_entries = max_entries
        self._ids: list[str] = []

    def _begin(self, body: bytes) -> list[Any]:
        items: list[Any] = []
        for index, (entry_id, record) in enumerate(self._parse(body)):
            self._ids.append(entry_id)
            splitter = self._make_splitter()
            item = (splitter.feed(record) + splitter.finish())[0]
            if isinstance(item, RecordError):
                item = RecordError(index, item.error_code, _MESSAGE_PREFIX.sub("", item.message))
            items.append(item)
        return items

    def _parse(self, body: bytes) -> list[tuple[str, bytes]]:
        """Each entry's id and the record text the splitter is to decode; RequestRefused when
        the body is not a batch."""
        try:
            entries = json_batch_entries(body)
        except JsonDecodeError as exc:
            if exc.msg == "not UTF-8":
                raise _not_json(f"it is not UTF-8 (byte {exc.pos})") from None
            raise _not_json(str(exc)) from None
        if entries is None:
            raise _shape()
        if not 1 <= len(entries) <= self._max_entries:
            raise _shape(f"a batch has 1 to {self._max_entries} entries, not {len(entries)}")
        out: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if entry is None:
                raise _shape(f"entries[{i}] is not an object")
            entry_id, ids, start, cut_start, cut_end, end = entry
            if ids > 1:
                raise _shape(f"entries[{i}] has a duplicate field 'id'")
            out.append((_check_id(i, entry_id, seen), body[start:cut_start] + body[cut_end:end]))
        return out

    def _answer(self, core: StreamCore) -> tuple[int, bytes]:
        successes: list[bytes] = []
        failures: list[bytes] = []
        for entry_id, outcome in zip(self._ids, core.take_outcomes(), strict=True):
            if isinstance(outcome, bytes):
                # The core's report {"error_code":...,"message":...} with the id first: a
                # failure, or a record accepted into the disk spool (202: a success, to be
                # produced once Kafka is back).
                entry = b'{"id":%s,%s' % (json_str(entry_id), outcome[1:])
                (successes if outcome.startswith(_SPOOLED) else failures).append(entry)
                continue
            partition, offset, timestamp, key_type, key_size, value_type, value_size = outcome
            entry = b'{"id":%s,"cluster_id":%s,"topic_name":%s,"partition_id":%d,"offset":%d,' \
                b'"timestamp":"%s"' % (
                    json_str(entry_id), self._cluster_json, self._topic_json, partition, offset,
                    format_timestamp(timestamp),
                )
            if key_type is not None:
                entry += b',"key":{"type":%s,"size":%d}' % (json_str(key_type), key_size)
            if value_type is not None:
                entry += b',"value":{"type":%s,"size":%d}' % (json_str(value_type), value_size)
            successes.append(entry + b"}")
        body = b'{"successes":[%s],"failures":[%s]}' % (b",".join(successes), b",".join(failures))
        return 207, body


def _check_id(i: int, entry_id: Any, seen: set[str]) -> str:
    if not isinstance(entry_id, str) or not ENTRY_ID.match(entry_id):
        raise _shape(f"entries[{i}].id must be 1 to 80 characters of [0-9a-zA-Z_-]")
    if entry_id in seen:
        raise _shape(f"entries[{i}].id {entry_id} is not unique")
    seen.add(entry_id)
    return entry_id
