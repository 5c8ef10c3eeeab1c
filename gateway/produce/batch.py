"""The v3 batch variant: ``POST .../records:batch`` with ``{"entries":[{"id":..., record}, ...]}``,
answered once with HTTP 207 ``{"successes":[...], "failures":[...]}`` (docs/api.md §1).

Each entry is checked by the same record rules as the stream (it goes through the splitter), so
both paths accept and refuse exactly the same records, with the same messages (without the
stream's ``record N at byte M:`` prefix). The body is small and bounded (at most 50 entries and
``max_bytes``) and parsed once it has ended; the rest is ``WholeRequest``'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.produce.core import StreamCore, format_timestamp
from gateway.produce.items import RecordError
from gateway.produce.reports import json_str
from gateway.produce.whole import RequestRefused, WholeRequest
from gateway.stats import ProduceStats

ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}\Z")
_MESSAGE_PREFIX = re.compile(r"^record \d+ at byte \d+: ")
BATCH_ERROR = 42208
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class BatchRequest(WholeRequest):
    """The v3 batch variant; answers when every entry has its outcome."""

    _noun = "batch entries"
    _too_large = "batch body"
    api = "v3_batch"

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
            rates=rates, principal=principal,
        )
        self._make_splitter = make_splitter
        self._cluster_id = cluster_id
        self._max_entries = max_entries
        self._ids: list[str] = []

    def _begin(self, body: bytes) -> list[Any]:
        entries = self._parse(body)
        items: list[Any] = []
        for index, (entry_id, fields) in enumerate(entries):
            self._ids.append(entry_id)
            item = self._decode(fields)
            if isinstance(item, RecordError):
                item = RecordError(index, item.error_code, _MESSAGE_PREFIX.sub("", item.message))
            items.append(item)
        return items

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
        text = _dumps(fields).encode()
        items = splitter.feed(text) + splitter.finish()
        return items[0]

    def _answer(self, core: StreamCore) -> tuple[int, bytes]:
        successes: list[bytes] = []
        failures: list[bytes] = []
        for entry_id, outcome in zip(self._ids, core.take_outcomes(), strict=True):
            if isinstance(outcome, bytes):
                # The core's failure report {"error_code":...,"message":...} with the id first.
                failures.append(b'{"id":%s,%s' % (json_str(entry_id), outcome[1:]))
                continue
            partition, offset, timestamp, key_type, key_size, value_type, value_size = outcome
            out: dict[str, Any] = {
                "id": entry_id,
                "cluster_id": self._cluster_id,
                "topic_name": self._topic,
                "partition_id": partition,
                "offset": offset,
                "timestamp": format_timestamp(timestamp).decode(),
            }
            if key_type is not None:
                out["key"] = {"type": key_type, "size": key_size}
            if value_type is not None:
                out["value"] = {"type": value_type, "size": value_size}
            successes.append(_dumps(out).encode())
        body = b'{"successes":[%s],"failures":[%s]}' % (b",".join(successes), b",".join(failures))
        return 207, body
