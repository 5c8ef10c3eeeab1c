"""v1 and v2 produce: ``POST /topics/{topic}`` and ``POST /topics/{topic}/partitions/{p}``
(docs/api.md §2, §3): content negotiation and the checks before the body; the body and the
answer are gateway.produce.v1's.

- Content-Type picks the API version and the embedded format (``negotiate``). ``application/json``
  is v1 binary, also on the v2 paths (§3). ``application/vnd.kafka.v2+json`` (no embedded format)
  is v2 binary, as ``application/vnd.kafka.v1+json`` is v1 binary. Confluent's v1 JSON format
  (``application/vnd.kafka.json.v1+json``) is served too. Schema formats (avro, jsonschema,
  protobuf) need a Schema Registry: 415. A missing Content-Type is a wrong one: 415.
- Accept picks the answer's media type among the version's (RFC 9110 §12.5.1: q-values, the
  most specific matching range decides, ties go to our order); absent or empty: the version's
  own type (``application/vnd.kafka.v1+json`` or ``...v2+json``); nothing acceptable: 406.
- The body is bounded by ``--max-request-bytes`` when set, and always by the batch body limit
  (``max_batch_bytes``, 4 MiB): it is held whole until parsed. Over it: 413. A compressed body
  (``Content-Encoding``: gzip, deflate, zstd; any other is 415) is decoded by the connection and
  measured decoded, as it is read.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway import errors
from gateway.api.common import refuse, refused_coding, refused_now, take_slot, with_topic
from gateway.api.context import ApiContext
from gateway.http.media import choose, parse_media_type
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol
from gateway.produce.v1 import BINARY, JSON, V1ProduceRequest


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


def response_type(version: int, accept: str | None) -> bytes:
    """The answer's media type for ``version`` under ``accept`` (RFC 9110 §12.5.1); 406 if none."""
    return choose(RESPONSE_TYPES[version], accept).encode()


# Negotiations made before, by (Content-Type, Accept): a client sends the same pair with every
# request. Bounded in entries and in length (the values are the peer's); refusals are not kept.
_NEGOTIATED: dict[tuple[str | None, str | None], Negotiated] = {}
_NEGOTIATED_MAX = 256
_NEGOTIATED_MAX_TEXT = 512


def negotiate(content_type: str | None, accept: str | None) -> Negotiated:
    """Content-Type (415 first, as Confluent) then Accept (406)."""
    key = (content_type, accept)
    found = _NEGOTIATED.get(key)
    if found is None:
        version, embedded = request_format(content_type)
        found = Negotiated(version, embedded, response_type(version, accept))
        if (len(_NEGOTIATED) < _NEGOTIATED_MAX
                and len(content_type or "") + len(accept or "") <= _NEGOTIATED_MAX_TEXT):
            _NEGOTIATED[key] = found
    return found


def _parse_url_partition(raw: str) -> int | None:
    return int(raw) if raw.isascii() and raw.isdigit() else None


def on_produce(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    """Checks (docs/api.md §2), the topic's metadata (refreshed on a miss), then the body."""
    try:
        negotiated = negotiate(head.content_type, head.joined("accept"))
    except errors.PeerError as exc:
        conn.respond_error(exc)
        return
    ctype = negotiated.response_type
    # (refused_now's and refused_coding's checks are made only when they could refuse)
    if (ctx.closing or ctx.cluster.down is not None) and refused_now(
            ctx, conn, spools=True, content_type=ctype):
        return
    coded: bool | None = False
    if head.joined("content-encoding") is not None:
        coded = refused_coding(conn, head)
        if coded is None:
            return

    topic = params["topic"]
    url_partition: int | None = None
    raw = params.get("partition")
    if raw is not None:
        url_partition = _parse_url_partition(raw)
        if url_partition is None:
            refuse(conn, errors.PartitionNotFound(f"partition {raw} not found"), ctype)
            return
    if not conn.has_body():
        # No Content-Length and no chunked framing is a zero-length body (RFC 9112 §6.3).
        refuse(conn, errors.Unprocessable('the request body is empty: send {"records":[...]}'),
               ctype)
        return
    limit = ctx.config.held_body_limit()
    if not coded and head.content_length is not None and head.content_length > limit:
        refuse(conn, errors.PayloadTooLarge(
            f"request body of {head.content_length} bytes is over the {limit}-byte limit"
        ), ctype)
        return

    partitions = ctx.metadata.partitions(topic)
    if partitions is not None:  # (with_topic's cache hit, written out)
        _start(partitions, ctx, conn, topic, url_partition, negotiated, limit)
        return
    with_topic(ctx, conn, head, topic, _start, ctx, conn, topic, url_partition, negotiated, limit,
               content_type=ctype, spools=True)


def _start(partitions: int, ctx: ApiContext, conn: HttpProtocol, topic: str,
           url_partition: int | None, negotiated: Negotiated, limit: int) -> None:
    """The topic is known: the partition check, the request's slot, then its body."""
    if url_partition is not None and url_partition >= partitions:
        refuse(conn, errors.PartitionNotFound(
            f"partition {url_partition} not found: topic {topic} has {partitions} partitions"
        ), negotiated.response_type)
        return
    if ctx.concurrency.limit and not take_slot(ctx, conn):
        return
    conn.read_body(
        V1ProduceRequest(
            conn,
            ctx.producer,
            topic=topic,
            partitions=partitions,
            url_partition=url_partition,
            version=negotiated.version,
            embedded=negotiated.embedded,
            content_type=negotiated.response_type,
            max_bytes=limit,
            stats=ctx.stats,
        )
    )
