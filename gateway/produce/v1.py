"""v1 and v2 produce bodies: ``{"records":[...]}`` for ``POST /topics/{topic}`` and
``POST /topics/{topic}/partitions/{p}``, answered once with one offsets entry per record, in
request order, when every delivery report is in (docs/api.md §2 and §3). The endpoint (content
negotiation, the checks before the body) is gateway.api.produce_v1.

The body is read whole (``WholeRequest``, shared with the v3 batch variant), parsed by simdjson
(``json_loads``: the objects json.loads makes, in about 0.6 of its time for a body of 100 binary
records: ``python -m bench.jsonbodies``) and checked completely before any record is handed to
Kafka, so a refused request (4xx) never leaves part of its records behind. A body simdjson
refuses is answered with its reason and the byte offset where reading stopped.

Decisions where the contract is silent (docs/api.md: the specs, then Confluent's proxy):

- Every record must have ``value`` (the spec makes only ``key`` and ``partition`` optional);
  ``null`` is a Kafka null (a tombstone), also for the json format. Unknown record or body
  fields are refused (422), as Confluent does; its ignored schema fields
  (``key_schema``, ``key_schema_id``, ``value_schema``, ``value_schema_id``) are accepted.
- base64 is the standard alphabet with padding, as on the v3 path.
- json format: the key/value is stored as its compact JSON text (no whitespace, non-ASCII as
  UTF-8, numbers as Python writes them: ``1E3`` becomes ``1000.0``), as Confluent's Jackson
  re-serialises it. NaN/Infinity and numbers out of double range are refused (not JSON).
- ``partition`` in a record on the ``/partitions/{p}`` path: absent, null or equal to ``p``;
  another value contradicts the URL: 422. On the topic path a ``partition`` outside the topic is
  404/40402 for the whole request (Confluent's "Invalid partition"), nothing is produced.
- A record Kafka refused gets ``{"partition":null,"offset":null,"error_code":...,"error":...}``:
  50003 when a resend may succeed (timeouts, broker down, topic vanished), else 50002. When
  ``produce()`` refused every record of the request, nothing reached Kafka: 500/50001.

``V1ProduceRequest``, the body consumer of one v1/v2 request, runs once per request: it is
compiled (ext/whole.pxi, a ``WholeRequest`` in the v1 or v2 offsets format) and re-exported
here; it calls ``parse_body`` and ``decode_records`` below and answers with ``_FAILED``,
``_ANSWER_HEAD`` and ``_ANSWER_TAIL``. The records are produced from C, their delivery reports
completed in C by the producer's router, and the offsets entries formatted in C, in request
order, when the last report is in: Python runs once per request (and once per poll that
reported some of its records), never once per record.
"""

from __future__ import annotations

import json
from typing import Any

from gateway._speedups import V1ProduceRequest
from gateway.produce.core import (
    JsonDecodeError,
    base64_decode,
    json_loads,
    v1_binary_items,
)
from gateway.produce.whole import RequestRefused

BINARY = "binary"
JSON = "json"


# -- the body (pure) ---------------------------------------------------------------------

_MISSING: Any = object()
_BODY_FIELDS = frozenset(("records", "key_schema", "key_schema_id", "value_schema", "value_schema_id"))
_RECORD_FIELDS = ("value", "key", "partition")


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# Strict standard base64 (padded, nothing else), in C: the record splitter's decoder.
_decode_base64 = base64_decode


def _json_text(data: Any) -> bytes:
    return _encode_json(data).encode()


def _refuse(message: str, error_code: int = 422, status: int = 422) -> RequestRefused:
    return RequestRefused(status, error_code, message)


def parse_body(body: bytes) -> list[Any]:
    """The ``records`` array of a produce body; RequestRefused (422) if the body is not one."""
    try:
        doc = json_loads(body)
    except ValueError as exc:
        # Not JSON (JsonDecodeError: its reason and byte offset), or an integer past Python's
        # digit limit (its own ValueError).
        raise _not_json(body, exc) from None
    if doc.__class__ is not dict:
        raise _refuse('the body must be a JSON object {"records":[...]}')
    for name in doc:
        if name not in _BODY_FIELDS:
            raise _refuse(f"unknown field '{name}' in the body")
    records = doc.get("records")
    if records.__class__ is not list or not records:
        raise _refuse("records must be a non-empty array")
    return records


def _not_json(body: bytes, exc: ValueError) -> RequestRefused:
    if not body.strip():
        return _refuse('the request body is empty: send {"records":[...]}')
    if isinstance(exc, JsonDecodeError) and exc.msg == "not UTF-8":
        return _refuse(f"the body is not UTF-8 (byte {exc.pos})")
    return _refuse(f"the body is not valid JSON: {exc}")


def _record_fields_error(i: int, rec: dict[str, Any]) -> RequestRefused:
    for name in rec:
        if name not in _RECORD_FIELDS:
            return _refuse(f"records[{i}] has an unknown field '{name}'")
    return _refuse(f"records[{i}] has no value (send \"value\":null for a null value)")


def _partition_error(
    i: int, partition: Any, partitions: int, url_partition: int | None
) -> RequestRefused:
    if partition.__class__ is not int:
        return _refuse(f"records[{i}].partition must be an integer or null")
    if url_partition is not None:
        return _refuse(
            f"records[{i}].partition {partition} contradicts the URL's partition {url_partition}"
        )
    return _refuse(
        f"records[{i}].partition {partition} not found: the topic has {partitions} partitions",
        40402,
        404,
    )


def _data_error(i: int, rec: dict[str, Any], embedded: str) -> RequestRefused:
    for side in ("key", "value"):
        data = rec.get(side)
        if data is None:
            continue
        try:
            _convert(data, embedded)
        except RecursionError:
            return _refuse(f"records[{i}].{side} is nested too deeply")
        except ValueError as exc:
            if embedded == JSON:
                return _refuse(f"records[{i}].{side} cannot be stored as JSON text: {exc}")
            if data.__class__ is not str:
                return _refuse(f"records[{i}].{side} must be a base64 string or null")
            return _refuse(f"records[{i}].{side} is not valid base64 (standard alphabet, padded)")
        except TypeError:
            return _refuse(f"records[{i}].{side} must be a base64 string or null")
    return _refuse(f"records[{i}] cannot be encoded")  # not reached: one side failed


def _convert(data: Any, embedded: str) -> bytes:
    return (_json_text if embedded == JSON else _decode_base64)(data)


def decode_records(
    records: list[Any], embedded: str, partitions: int, url_partition: int | None
) -> list[tuple[Any, ...]]:
    """Check and convert every record: ``(index, partition, key, value, None, 0, None, None)``
    per record, the item shape ``StreamCore.push`` takes (``partition`` -1: the partitioner
    decides). RequestRefused at the first bad record."""
    if embedded != JSON:
        try:
            fast = v1_binary_items(records, partitions, url_partition)
        except OverflowError:
            # A partition beyond a C long long: the loop below words the refusal.
            fast = None
        if fast is not None:
            return fast
    todo: list[tuple[Any, ...]] = []
    append = todo.append
    conv = _json_text if embedded == JSON else _decode_base64
    default = -1 if url_partition is None else url_partition
    missing = _MISSING
    key: Any
    partition: Any
    # Hot loop (issue 4 budgets ~2.5 µs of CPU per record, produce and report included): no
    # per-record objects beyond the output tuple; the common shapes take the short branches.
    for i, rec in enumerate(records):
        if rec.__class__ is not dict:
            raise _refuse(f"records[{i}] is not an object")
        value = rec.get("value", missing)
        if value is not missing and len(rec) == 1:
            key = None
            partition = default
        else:
            key = rec.get("key", missing)
            partition = rec.get("partition", missing)
            if value is missing or len(rec) != 1 + (key is not missing) + (partition is not missing):
                raise _record_fields_error(i, rec)
            if key is missing:
                key = None
            if partition is missing or partition is None:
                partition = default
            elif partition.__class__ is not int or (
                partition != url_partition
                if url_partition is not None
                else not 0 <= partition < partitions
            ):
                raise _partition_error(i, partition, partitions, url_partition)
        try:
            if value is not None:
                value = conv(value)
            if key is not None:
                key = conv(key)
        except (ValueError, TypeError, RecursionError):
            raise _data_error(i, rec, embedded) from None
        append((i, partition, key, value, None, 0, None, None))
    return todo


# -- the answer --------------------------------------------------------------------------

# A delivered record's entry is formatted by StreamCore (REPORT_FORMAT_V1: {"partition":P,
# "offset":O}; REPORT_FORMAT_V2 adds "error_code":null,"error":null).
_FAILED = b'{"partition":null,"offset":null,"error_code":%d,"error":%s}'
_ANSWER_HEAD = b'{"offsets":['
_ANSWER_TAIL = b'],"key_schema_id":null,"value_schema_id":null}'


def record_error_code(code: int) -> int:
    """Confluent's per-record code in an offsets entry: 50003 if a resend may succeed."""
    return 50003 if code == 50003 or code == 40401 else 50002


__all__ = ["BINARY", "JSON", "V1ProduceRequest", "decode_records", "parse_body", "record_error_code"]
