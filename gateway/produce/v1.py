"""v1 and v2 produce: ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/{p}`` with
a ``{"records":[...]}`` body, answered once with one offsets entry per record, in request order,
when every delivery report is in (docs/api.md §2 and §3).

The request path is the v3 one's: the same server, HTTP parser and producer. The body is read
whole (``WholeRequest``, shared with the v3 batch variant), parsed with one ``json.loads`` and
checked completely before any record is handed to Kafka, so a refused request (4xx) never
leaves part of its records behind.

Decisions where the contract is silent (docs/api.md: the specs, then Confluent's proxy):

- Content-Type picks the API version and the embedded format (``negotiate``). ``application/json``
  is v1 binary, also on the v2 paths (§3). ``application/vnd.kafka.v2+json`` (no embedded format)
  is v2 binary, as ``application/vnd.kafka.v1+json`` is v1 binary. Confluent's v1 JSON format
  (``application/vnd.kafka.json.v1+json``) is served too. Schema formats (avro, jsonschema,
  protobuf) need a Schema Registry: 415. A missing Content-Type is a wrong one: 415.
- Accept picks the answer's media type among the version's (RFC 9110 §12.5.1: q-values, the
  most specific matching range decides, ties go to our order); absent or empty: the version's
  own type (``application/vnd.kafka.v1+json`` or ``...v2+json``); nothing acceptable: 406.
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
- The body is bounded by ``--max-request-bytes`` when set, and always by the batch body limit
  (``max_batch_bytes``, 4 MiB): it is held whole until parsed. Over it: 413.
- A record Kafka refused gets ``{"partition":null,"offset":null,"error_code":...,"error":...}``:
  50003 when a resend may succeed (timeouts, broker down, topic vanished), else 50002. When
  ``produce()`` refused every record of the request, nothing reached Kafka: 500/50001.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway import errors
from gateway._speedups import (
    REPORT_FORMAT_V1,
    REPORT_FORMAT_V2,
    StreamCore,
    base64_decode,
    v1_binary_items,
)
from gateway.errors import error_body
from gateway.http.protocol import ST_BODY
from gateway.kafka.producer import KafkaProducer, error_text
from gateway.produce.batch import RequestRefused, Responder, WholeRequest
from gateway.produce.reports import json_str
from gateway.stats import ProduceStats

if TYPE_CHECKING:
    from gateway.http.parser import RequestHead
    from gateway.http.protocol import HttpProtocol
    from gateway.server import Server

log = logging.getLogger("gateway.produce")

BINARY = "binary"
JSON = "json"


# -- content negotiation (pure) ----------------------------------------------------------


class Negotiated(NamedTuple):
    version: int  # 1 or 2: the answer's shape
    embedded: str  # BINARY (base64 key/value) or JSON (any JSON key/value)
    response_type: bytes  # the answer's Content-Type


# Content-Type -> (version, embedded format).
REQUEST_TYPES: dict[str, tuple[int, str]] = {
    "application/vnd.kafka.binary.v1+json": (1, BINARY),
    "application/vnd.kafka.v1+json": (1, BINARY),
    "application/vnd.kafka+json": (1, BINARY),
    "application/json": (1, BINARY),
    "application/vnd.kafka.json.v1+json": (1, JSON),
    "application/vnd.kafka.binary.v2+json": (2, BINARY),
    "application/vnd.kafka.v2+json": (2, BINARY),
    "application/vnd.kafka.json.v2+json": (2, JSON),
}
SCHEMA_TYPES = frozenset(
    (
        "application/vnd.kafka.avro.v1+json",
        "application/vnd.kafka.avro.v2+json",
        "application/vnd.kafka.jsonschema.v2+json",
        "application/vnd.kafka.protobuf.v2+json",
    )
)
# Answer types each version offers, best first (Confluent's qs order: versioned type, the
# unversioned vendor type, plain JSON, then the embedded-format types some clients echo back).
RESPONSE_TYPES: dict[int, tuple[str, ...]] = {
    1: (
        "application/vnd.kafka.v1+json",
        "application/vnd.kafka+json",
        "application/json",
        "application/vnd.kafka.binary.v1+json",
        "application/vnd.kafka.json.v1+json",
    ),
    2: (
        "application/vnd.kafka.v2+json",
        "application/vnd.kafka+json",
        "application/json",
        "application/vnd.kafka.binary.v2+json",
        "application/vnd.kafka.json.v2+json",
    ),
}


def parse_media_type(text: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` in lower case and the parameters (names in lower case, values unquoted)."""
    media, *params = text.split(";")
    out: dict[str, str] = {}
    for param in params:
        name, _, value = param.partition("=")
        name = name.strip().lower()
        if name:
            out[name] = value.strip().strip('"')
    return media.strip().lower(), out


def request_format(content_type: str | None) -> tuple[int, str]:
    """(version, embedded format) of a produce request's Content-Type; 415 if we do not take it."""
    if content_type is None or not content_type.strip():
        raise errors.UnsupportedMediaType(
            "Content-Type is missing: send application/vnd.kafka.binary.v1+json, "
            "application/vnd.kafka.binary.v2+json or application/vnd.kafka.json.v2+json"
        )
    media, params = parse_media_type(content_type)
    charset = params.get("charset")
    if charset is not None and charset.lower() != "utf-8":
        raise errors.UnsupportedMediaType(f"charset {charset} is not supported: JSON is UTF-8")
    found = REQUEST_TYPES.get(media)
    if found is not None:
        return found
    if media in SCHEMA_TYPES:
        raise errors.UnsupportedMediaType(
            f"{media} needs a Schema Registry, which this gateway does not use: "
            "send binary or json records"
        )
    raise errors.UnsupportedMediaType(f"Content-Type {media} is not supported for produce")


def _accept_ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        if not part.strip():
            continue
        media, params = parse_media_type(part)
        if media == "*":  # old Java clients send a bare "*"
            media = "*/*"
        q = 1.0
        if "q" in params:
            try:
                q = float(params["q"])
            except ValueError:
                continue  # a malformed range says nothing: skip it
            if not 0.0 <= q <= 1.0:
                continue
        ranges.append((media, q))
    return ranges


def response_type(version: int, accept: str | None) -> bytes:
    """The answer's media type for ``version`` under ``accept`` (RFC 9110 §12.5.1); 406 if none."""
    offers = RESPONSE_TYPES[version]
    if accept is None or not accept.strip():
        return offers[0].encode()
    ranges = _accept_ranges(accept)
    best: str | None = None
    best_q = 0.0
    for offer in offers:
        wildcard = offer.partition("/")[0] + "/*"
        q = -1.0
        specificity = -1
        for media, rq in ranges:
            if media == offer:
                s = 2
            elif media == wildcard:
                s = 1
            elif media == "*/*":
                s = 0
            else:
                continue
            if s > specificity or (s == specificity and rq > q):
                specificity, q = s, rq
        if q > best_q:
            best, best_q = offer, q
    if best is None:
        raise errors.NotAcceptable(
            f"none of the answer types is acceptable ({accept}): "
            f"the answer is {', '.join(offers[:3])}"
        )
    return best.encode()


def negotiate(content_type: str | None, accept: str | None) -> Negotiated:
    """Content-Type (415 first, as Confluent) then Accept (406)."""
    version, embedded = request_format(content_type)
    return Negotiated(version, embedded, response_type(version, accept))


# -- the body (pure) ---------------------------------------------------------------------

_MISSING: Any = object()
_BODY_FIELDS = frozenset(("records", "key_schema", "key_schema_id", "value_schema", "value_schema_id"))
_RECORD_FIELDS = ("value", "key", "partition")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# Strict standard base64 (padded, nothing else), in C: the record splitter's decoder.
_decode_base64 = base64_decode


def _json_text(data: Any) -> bytes:
    return _encode_json(data).encode()


def _refuse(message: str, error_code: int = 422, status: int = 422) -> RequestRefused:
    return RequestRefused(status, error_code, message)


def parse_body(body: bytes) -> list[Any]:
    """The ``records`` array of a produce body; RequestRefused (422) if the body is not one."""
    if not body.strip():
        raise _refuse('the request body is empty: send {"records":[...]}')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        doc = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise _refuse(f"the body is not valid JSON: {exc}") from None
    if doc.__class__ is not dict:
        raise _refuse('the body must be a JSON object {"records":[...]}')
    for name in doc:
        if name not in _BODY_FIELDS:
            raise _refuse(f"unknown field '{name}' in the body")
    records = doc.get("records")
    if records.__class__ is not list or not records:
        raise _refuse("records must be a non-empty array")
    return records


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
        fast = v1_binary_items(records, partitions, url_partition)
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


class V1ProduceRequest(WholeRequest):
    """Body consumer of one v1/v2 produce request.

    The records go through a ``StreamCore`` in the v1 or v2 offsets format: produced from C,
    their delivery reports completed in C by the producer's router, and the offsets entries
    formatted in C, in request order, when the last report is in. Python runs once per request
    (and once per poll that reported some of its records), never once per record."""

    def __init__(
        self,
        conn: Responder,
        producer: KafkaProducer,
        *,
        topic: str,
        partitions: int,
        url_partition: int | None,
        negotiated: Negotiated,
        max_bytes: int,
        stats: ProduceStats | None = None,
    ) -> None:
        super().__init__(
            conn,
            producer,
            topic=topic,
            max_bytes=max_bytes,
            content_type=negotiated.response_type,
            stats=stats,
        )
        self.api = "v2" if negotiated.version == 2 else "v1"
        self._version = negotiated.version
        self._partitions = partitions
        self._url_partition = url_partition
        self._embedded = negotiated.embedded
        self._core: StreamCore | None = None
        self._first_refusal = ""
        self._conn_gone = False

    def _begin(self, body: bytes) -> None:
        records = parse_body(body)
        self._todo = decode_records(records, self._embedded, self._partitions, self._url_partition)

    def _error_of(self, err: int) -> tuple[int, str]:
        # Produce refusals and failed deliveries alike (the core calls it; rare).
        text = error_text(err)
        if not self._first_refusal:
            self._first_refusal = text
        return record_error_code(self._producer.error_code(err)), text

    @staticmethod
    def _entry(code: int, message: str) -> bytes:
        return _FAILED % (code, json_str(message)) + b","

    def _produce_more(self) -> None:
        producer = self._producer
        core = self._core
        if core is None:
            core = self._core = StreamCore(
                producer.router,
                producer.current,
                self._topic,
                self._partitions,
                max(1, len(self._todo)),
                b"",
                self,
                self._error_of,
                self._tc.fail,
                self._entry,
                REPORT_FORMAT_V2 if self._version == 2 else REPORT_FORMAT_V1,
            )
        elif producer.current is not core.producer:
            core.rebind(producer.current)
        todo = self._todo
        handed0 = core.produced
        i = core.push(todo, self._next)
        self._count_handed(core.produced - handed0)
        if i < len(todo):
            # librdkafka's queue is full: go on when the producer says there is room.
            self._next = i
            producer.wait_for_space(self)
            return
        # Every record is with librdkafka (which copied the bytes): drop our references.
        self._todo = []
        self._next = 0
        producer.kick()
        self._maybe_answer()

    def flush_reports(self) -> None:
        core = self._core
        if core is None:
            return
        core.dirty = False
        if self._done:
            # The client left: settle once the last record has its outcome.
            if not core.pending and self._next >= len(self._todo):
                self._settle()
            return
        self._maybe_answer()

    def _delivered_total(self) -> int:
        return 0 if self._core is None else self._core.ok

    def _settle(self) -> None:
        live = self._live
        super()._settle()
        core = self._core
        if live and core is not None and self._conn_gone:
            if core.failed:
                log.warning("client gone: %d of its %s failed", core.failed, self._noun)
            core.close()

    def _answer(self) -> tuple[int, bytes]:
        core = self._core
        assert core is not None
        entries = core.take_ready()
        produced = core.produced
        core.close()
        if not produced:
            # Not one record reached Kafka: the request as a whole failed (Confluent's 50001).
            return 500, error_body(
                50001, f"the records could not be handed to Kafka: {self._first_refusal}"
            )
        return 200, _ANSWER_HEAD + entries[:-1] + _ANSWER_TAIL

    def on_connection_lost(self) -> None:
        self._conn_gone = True
        super().on_connection_lost()

    def _outstanding(self) -> int:
        core = self._core
        return 0 if core is None else core.pending


# -- the endpoint ------------------------------------------------------------------------


def _accept_header(head: RequestHead) -> str | None:
    # Several Accept field lines are one comma-separated list (RFC 9110 §5.3).
    values = [v for n, v in head.headers if n == "accept"]
    return ", ".join(values) if values else None


def _parse_url_partition(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() else None


def on_produce_v1(server: Server, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    """Checks (docs/api.md §2), the topic's metadata (refreshed on a miss), then the body."""
    if server._closing:
        conn.respond_error(errors.ShuttingDown("the gateway is shutting down"))
        return
    try:
        negotiated = negotiate(head.content_type, _accept_header(head))
    except errors.PeerError as exc:
        conn.respond_error(exc)
        return
    ctype = negotiated.response_type

    def refuse(exc: errors.GatewayError) -> None:
        conn.respond(exc.status, exc.body(), content_type=ctype)

    topic = params["topic"]
    url_partition: int | None = None
    raw = params.get("partition")
    if raw is not None:
        url_partition = _parse_url_partition(raw)
        if url_partition is None:
            refuse(errors.PartitionNotFound(f"partition {raw} not found"))
            return
    if not conn.has_body():
        # No Content-Length and no chunked framing is a zero-length body (RFC 9112 §6.3).
        refuse(errors.Unprocessable('the request body is empty: send {"records":[...]}'))
        return
    limit = server.config.held_body_limit()
    if head.content_length is not None and head.content_length > limit:
        refuse(errors.PayloadTooLarge(
            f"request body of {head.content_length} bytes is over the {limit}-byte limit"
        ))
        return

    def start(partitions: int) -> None:
        if url_partition is not None and url_partition >= partitions:
            refuse(errors.PartitionNotFound(
                f"partition {url_partition} not found: topic {topic} has {partitions} partitions"
            ))
            return
        if not server.take_slot(conn):
            return
        conn.read_body(
            V1ProduceRequest(
                conn,
                server.producer,
                topic=topic,
                partitions=partitions,
                url_partition=url_partition,
                negotiated=negotiated,
                max_bytes=limit,
                stats=server.stats,
            )
        )

    partitions = server.metadata.partitions(topic)
    if partitions is not None:
        start(partitions)
        return

    # Unknown topic, or no metadata yet: refresh (shared with concurrent misses), then decide.
    def after_refresh(_fut: Any) -> None:
        if conn.head is not head or conn.state != ST_BODY:  # the client went away meanwhile
            return
        if server.metadata.info is None:
            refuse(errors.KafkaUnavailable(
                f"the Kafka cluster cannot be reached: {server.metadata.last_error or 'no metadata'}"
            ))
            return
        found = server.metadata.partitions(topic)
        if found is None:
            refuse(errors.TopicNotFound(f"topic {topic} not found"))
            return
        start(found)

    conn.defer()
    server.metadata.refresh_for_miss().add_done_callback(after_refresh)
