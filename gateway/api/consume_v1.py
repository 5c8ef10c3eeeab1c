"""v1 consume (docs/api.md §2 "Consume"): records of one partition from an offset, as JSON.

``GET /topics/{t}/partitions/{p}?offset=N`` (the v1 spec), ``GET /consume/{t}/partitions/{p}``
(its example) and Confluent's ``GET /topics/{t}/partitions/{p}/messages``, with ``offset``,
``count`` (1..10000, default 100) and ``max_bytes`` (default 1 MiB) in the query.

Checks, in the order Confluent's JAX-RS resource makes them (parameters, then the topic, then
the partition):
- partition not a decimal integer: 404 ``404`` (the URL names nothing: a JAX-RS ``int`` path
  parameter that does not convert is a 404); a negative one, or one the topic does not have:
  404 ``40402``.
- ``offset`` missing or not an integer: 400 (**better than Confluent**, which reads a missing
  offset as 0). A negative offset is an integer below the earliest offset: 416 ``41601``.
- ``count`` not an integer in 1..10000, ``max_bytes`` not a positive integer: 400. A
  ``max_bytes`` above ``MAX_BYTES_CEILING`` is lowered to it, as Confluent caps ``max_bytes``
  at ``consumer.request.max.bytes`` (64 MiB).
- topic unknown to a full metadata listing (refreshed once on a miss): 404 ``40401``; no
  metadata at all: 503 ``50003`` (as for produce).
- Kafka unreachable, or not answering in time: 503 ``50003`` (gateway.consume.pool). When the
  consumer says Kafka does not know the partition, the cluster's listing is asked again: 404
  only if it no longer has the topic or partition ("not found" comes only from the cluster's
  metadata), else 503 ``50003``.

``max_bytes`` counts key and value bytes before base64, as Confluent does; the first record is
always included, even when it alone is larger (otherwise a reader could never get past it).
The answer is written by the consumer's compiled fetch on its worker thread
(gateway.consume.pool); the loop only sends it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from gateway import errors
from gateway.api.common import query_params, refused_now, with_topic
from gateway.api.context import ApiContext
from gateway.consume.pool import NotKnownToKafka
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol

CONTENT_TYPE = b"application/vnd.kafka.binary.v1+json"
DEFAULT_COUNT = 100
MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 1024 * 1024
MAX_BYTES_CEILING = 64 * 1024 * 1024

_INT = re.compile(r"-?[0-9]+")
_NOT_FOUND = "HTTP 404 Not Found"


class ConsumeRequest:
    __slots__ = ("topic", "partition", "offset", "count", "max_bytes")

    def __init__(self, topic: str, partition: int, offset: int, count: int, max_bytes: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.count = count
        self.max_bytes = max_bytes


def _query_int(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    text = value.strip()
    if not _INT.fullmatch(text):
        raise errors.BadRequest(f"{name} must be an integer, not {value!r}")
    return int(text)


def parse_request(params: dict[str, str], query_string: str) -> ConsumeRequest:
    """The request's parameters, or the PeerError to answer with."""
    topic = params["topic"]
    part_text = params["partition"]
    if not _INT.fullmatch(part_text):
        raise errors.NotFound(_NOT_FOUND)
    partition = int(part_text)
    if partition < 0:
        raise errors.PartitionNotFound(f"partition {partition} of topic {topic} not found")
    query = query_params(query_string)
    offset = _query_int(query, "offset")
    if offset is None:
        raise errors.BadRequest("the offset query parameter is required, e.g. ?offset=0")
    count = _query_int(query, "count")
    if count is None:
        count = DEFAULT_COUNT
    elif not 1 <= count <= MAX_COUNT:
        raise errors.BadRequest(f"count must be between 1 and {MAX_COUNT}, not {count}")
    max_bytes = _query_int(query, "max_bytes")
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES
    elif max_bytes < 1:
        raise errors.BadRequest(f"max_bytes must be a positive integer, not {max_bytes}")
    return ConsumeRequest(topic, partition, offset, count, min(max_bytes, MAX_BYTES_CEILING))


def on_consume(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    if refused_now(ctx, conn):
        return
    try:
        req = parse_request(params, head.query)
    except errors.PeerError as exc:
        conn.respond_error(exc)
        return
    with_topic(ctx, conn, head, req.topic, lambda partitions: _read(ctx, conn, head, req, partitions))


def _read(
    ctx: ApiContext, conn: HttpProtocol, head: RequestHead, req: ConsumeRequest, partitions: int
) -> None:
    if req.partition >= partitions:
        conn.respond_error(
            errors.PartitionNotFound(f"partition {req.partition} of topic {req.topic} not found")
        )
        return
    pool = ctx.consumers
    if pool is None:
        conn.respond_error(errors.ShuttingDown("consuming is not available"))
        return
    try:
        fut = pool.submit(req.topic, req.partition, req.offset, req.count, req.max_bytes)
    except errors.GatewayError as exc:
        conn.respond_error(exc)
        return
    if fut.done():  # answered on the loop from what a consumer had queued (gateway.consume.pool)
        _answer(ctx, conn, head, fut)
        return
    conn.defer()
    fut.add_done_callback(conn.later(lambda f: _answer(ctx, conn, head, f)))


def _answer(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, fut: asyncio.Future[Any]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()  # retrieved even when nobody waits: asyncio would log it otherwise
    if not conn.pending(head):
        return  # the client went away: drop the answer
    if exc is None:
        conn.respond(200, fut.result().body, content_type=CONTENT_TYPE)
    elif isinstance(exc, NotKnownToKafka):
        _recheck(ctx, conn, head, exc)
    elif isinstance(exc, errors.GatewayError):
        conn.respond_error(exc)
    else:
        conn.respond_error(errors.GatewayBug(f"consume failed: {exc!r}"))


def _recheck(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, exc: NotKnownToKafka) -> None:
    """The consumer says Kafka does not know the partition: 404 only if a fresh listing of the
    cluster (shared and rate-limited) says it is gone; else the consumer's 503."""

    def decide(_fut: asyncio.Future[Any]) -> None:
        if not conn.pending(head):
            return
        info = ctx.metadata.info
        count = info.topics.get(exc.topic) if info is not None else None
        if info is not None and ctx.metadata.last_error is None and count is None:
            conn.respond_error(errors.TopicNotFound(f"topic {exc.topic} not found"))
        elif count is not None and exc.partition >= count:
            conn.respond_error(
                errors.PartitionNotFound(f"partition {exc.partition} of topic {exc.topic} not found")
            )
        else:
            conn.respond_error(exc)

    ctx.metadata.refresh_for_miss().add_done_callback(decide)
