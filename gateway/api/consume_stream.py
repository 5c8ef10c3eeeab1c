"""Streaming consume: ``GET /v3/clusters/{cluster_id}/topics/{topic}/records:stream`` (also
under ``/kafka/v3``), docs/api.md §13. The stream itself is gateway.consume.stream; this module
checks the request and opens it.

Query parameters (the first value of a parameter given twice counts, as in v1 consume):

- ``group=G``: read as a member of consumer group G (the group assigns the partitions; offsets
  are committed for the records written); ``offset=earliest|latest`` is where the group starts
  when it has no committed offset (default latest); ``commit_interval_ms`` (100..3600000,
  default 5000).
- without ``group``: ``partitions=0,2`` (default: every partition of the topic) from
  ``offset=earliest|latest|N`` (default latest), or per partition ``offsets=0:12,2:earliest``
  (its partitions are the ones read unless ``partitions`` names them: every partition of
  ``offsets`` must then be among them); nothing is committed.
- ``format=binary|json`` (default binary): keys and values base64, or embedded as JSON.
- ``max_records=N``: the stream ends (cleanly) after N records; ``idle_timeout_ms=MS``: it
  ends once no record has come for MS milliseconds (read what is there, then stop). Without
  them it lasts until the client closes it.

Checks before the 200, in this order: 503 while stopping (or with Kafka unreachable), 400 for a
request body, 400 for a bad parameter, 404 for another cluster id (as the v3 reads), 404/40401
unknown topic, 404/40402 a partition the topic does not have, 503/50301 with
``--max-consume-streams`` streams open. (401, 403 ``consume`` on the topic: the dispatch; 403
without ``group`` on the group a stream names: here, before the rest.)
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from gateway import errors
from gateway.api.common import query_params, refused_now, with_topic
from gateway.api.context import ApiContext
from gateway.auth.acl import GROUP
from gateway.consume.stream import (
    OFFSET_BEGINNING,
    OFFSET_END,
    ConsumeStream,
    StreamConsumer,
    StreamRequest,
)
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol

PARAMETERS = ("group", "partitions", "offset", "offsets", "format", "commit_interval_ms",
              "max_records", "idle_timeout_ms")
DEFAULT_COMMIT_INTERVAL_MS = 5000
COMMIT_INTERVAL_RANGE = (100, 3_600_000)
MAX_RECORDS_RANGE = (1, 1 << 62)
IDLE_TIMEOUT_RANGE = (1, 86_400_000)
MAX_GROUP_CHARS = 255
MAX_OFFSET = (1 << 63) - 1

# One JSON object per line (each record, and an error line at the end): newline-delimited JSON.
CONTENT_TYPE = b"application/x-ndjson"

_UINT = re.compile(r"[0-9]+")
_NAMED = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}


class StreamsBusy(errors.UpstreamError):
    """Every consume stream the gateway allows is open (``--max-consume-streams``)."""

    status = 503
    error_code = 50301


class ParsedStream:
    """The query, checked: partitions are checked against the topic later."""

    __slots__ = ("group", "partitions", "offset", "offsets", "json", "commit_interval_ms",
                 "max_records", "idle_timeout_ms")

    def __init__(self) -> None:
        self.group: str | None = None
        self.partitions: list[int] | None = None
        self.offset = OFFSET_END
        self.offsets: dict[int, int] = {}
        self.json = False
        self.commit_interval_ms = DEFAULT_COMMIT_INTERVAL_MS
        self.max_records = 0
        self.idle_timeout_ms = 0

    def request(self, topic: str, count: int) -> StreamRequest:
        """The stream's request for a topic of ``count`` partitions (PartitionNotFound for one
        it does not have)."""
        if self.group is not None:
            return StreamRequest(topic, json=self.json, group=self.group,
                                 reset="earliest" if self.offset == OFFSET_BEGINNING else "latest",
                                 commit_interval_ms=self.commit_interval_ms,
                                 max_records=self.max_records, idle_timeout_ms=self.idle_timeout_ms)
        if self.partitions is not None:
            partitions = self.partitions
        elif self.offsets:
            partitions = sorted(self.offsets)
        else:
            partitions = list(range(count))
        for p in partitions:
            if p >= count:
                raise errors.PartitionNotFound(
                    f"partition {p} of topic {topic} not found (it has {count})")
        return StreamRequest(topic, json=self.json,
                             start=tuple((p, self.offsets.get(p, self.offset)) for p in partitions),
                             max_records=self.max_records, idle_timeout_ms=self.idle_timeout_ms)


def _int(name: str, text: str) -> int:
    if not _UINT.fullmatch(text) or int(text) > MAX_OFFSET:
        raise errors.BadRequest(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


def _offset(name: str, text: str, *, named_only: bool = False) -> int:
    named = _NAMED.get(text)
    if named is not None:
        return named
    if named_only:
        raise errors.BadRequest(
            f"{name} must be earliest or latest with a group (where a group without committed "
            f"offsets starts), not {text!r}")
    if not _UINT.fullmatch(text) or int(text) > MAX_OFFSET:
        raise errors.BadRequest(
            f"{name} must be earliest, latest or a non-negative integer, not {text!r}")
    return int(text)


def parse_query(query_string: str) -> ParsedStream:
    """The stream's parameters, or BadRequest naming what is wrong."""
    first = query_params(query_string)
    unknown = sorted(set(first) - set(PARAMETERS))
    if unknown:
        raise errors.BadRequest(
            f"unknown query parameter {unknown[0]!r}: this endpoint takes {', '.join(PARAMETERS)}")
    out = ParsedStream()
    group = first.get("group")
    fmt = first.get("format", "binary")
    if fmt not in ("binary", "json"):
        raise errors.BadRequest(f"format must be binary or json, not {fmt!r}")
    out.json = fmt == "json"
    for name, (lo, hi) in (("max_records", MAX_RECORDS_RANGE), ("idle_timeout_ms", IDLE_TIMEOUT_RANGE)):
        if name in first:
            value = _int(name, first[name])
            if not lo <= value <= hi:
                raise errors.BadRequest(f"{name} must be between {lo} and {hi}, not {value}")
            setattr(out, name, value)
    if group is not None:
        if not group or len(group) > MAX_GROUP_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in group):
            raise errors.BadRequest(
                f"group must be 1 to {MAX_GROUP_CHARS} characters without control characters")
        for name in ("partitions", "offsets"):
            if name in first:
                raise errors.BadRequest(
                    f"{name} cannot be given with group: the group assigns the partitions")
        out.group = group
        if "offset" in first:
            out.offset = _offset("offset", first["offset"], named_only=True)
        if "commit_interval_ms" in first:
            ms = _int("commit_interval_ms", first["commit_interval_ms"])
            lo, hi = COMMIT_INTERVAL_RANGE
            if not lo <= ms <= hi:
                raise errors.BadRequest(f"commit_interval_ms must be between {lo} and {hi}, not {ms}")
            out.commit_interval_ms = ms
        return out
    if "commit_interval_ms" in first:
        raise errors.BadRequest("commit_interval_ms is for a group: without one nothing is committed")
    if "offset" in first:
        out.offset = _offset("offset", first["offset"])
    if "partitions" in first:
        parts = []
        for item in first["partitions"].split(","):
            p = _int("each of partitions", item.strip())
            if p in parts:
                raise errors.BadRequest(f"partition {p} is named twice in partitions")
            parts.append(p)
        out.partitions = parts
    if "offsets" in first:
        for item in first["offsets"].split(","):
            p_text, sep, o_text = item.strip().partition(":")
            if not sep:
                raise errors.BadRequest(
                    f"offsets must be PARTITION:OFFSET pairs separated by commas (0:12,1:earliest), not {item!r}")
            p = _int("the partition of each offsets pair", p_text.strip())
            if p in out.offsets:
                raise errors.BadRequest(f"partition {p} is named twice in offsets")
            out.offsets[p] = _offset(f"the offset of partition {p} in offsets", o_text.strip())
        if out.partitions is not None:
            extra = sorted(set(out.offsets) - set(out.partitions))
            if extra:
                raise errors.BadRequest(
                    f"offsets names partition {extra[0]}, which partitions does not")
    return out


def on_stream(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    auth = ctx.auth
    if auth is not None and conn.principal is not None:
        # With the ACL's other checks (the dispatch's: ``consume`` on the topic): a stream in
        # a group needs ``group`` on its name, as the consumer instances do.
        group = query_params(head.query).get("group")
        if group is not None and not auth.allows(conn.principal, GROUP, group):
            conn.respond_error(errors.Forbidden(f"{conn.principal} may not use consumer group {group}"))
            return
    if refused_now(ctx, conn):
        return
    registry = ctx.streams
    if registry is None:
        conn.respond_error(errors.ShuttingDown("streaming consume is not available"))
        return
    if conn.has_body():
        conn.respond_error(errors.BadRequest(
            "GET .../records:stream takes no request body: its parameters are in the query"))
        return
    try:
        parsed = parse_query(head.query)
    except errors.PeerError as exc:
        conn.respond_error(exc)
        return
    cluster_id, topic = params["cluster_id"], params["topic"]

    def checked_cluster() -> None:
        info = ctx.metadata.info
        assert info is not None
        if cluster_id != info.cluster_id:
            conn.respond_error(errors.NotFound(f"Cluster {cluster_id} cannot be found."))
            return
        with_topic(ctx, conn, head, topic, lambda count: _open(ctx, conn, head, parsed, topic, count))

    if ctx.metadata.info is not None:
        checked_cluster()
        return

    def refreshed(_fut: asyncio.Future[Any]) -> None:
        if not conn.pending(head):
            return
        if ctx.metadata.info is None:
            conn.respond_error(ctx.metadata.unavailable())
            return
        checked_cluster()

    conn.defer()
    ctx.metadata.refresh_for_miss().add_done_callback(conn.later(refreshed))


def _open(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, parsed: ParsedStream,
          topic: str, count: int) -> None:
    registry = ctx.streams
    assert registry is not None
    try:
        req = parsed.request(topic, count)
    except errors.PeerError as exc:
        conn.respond_error(exc)
        return
    if registry.full:
        conn.respond_error(StreamsBusy(
            f"the gateway already has {registry.max_streams} consume streams open "
            "(--max-consume-streams): try again later"))
        return
    stream, fut = registry.open(req, conn, client=conn.peer_host)
    conn.defer()

    def created(f: asyncio.Future[StreamConsumer]) -> None:
        if f.cancelled():
            return
        exc = f.exception()
        if exc is not None:
            if conn.pending(head):
                conn.respond_error(_creation_error(exc))
            return
        _begin(ctx, conn, head, stream, f.result())

    fut.add_done_callback(conn.later(created))


def _begin(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, stream: ConsumeStream,
           consumer: StreamConsumer) -> None:
    registry = ctx.streams
    assert registry is not None
    if not conn.pending(head) or ctx.closing or registry.closing:
        registry.abandon(stream, consumer)
        if conn.pending(head):
            conn.respond_error(errors.ShuttingDown("the gateway is shutting down"))
        return
    conn.start_stream(stream, content_type=CONTENT_TYPE)
    stream.start(consumer)


def _creation_error(exc: BaseException) -> errors.GatewayError:
    if isinstance(exc, errors.GatewayError):
        return exc
    # librdkafka refused the consumer's configuration (a -X property): the operator's to fix.
    return errors.KafkaRequestFailed(f"cannot create a Kafka consumer for the stream: {exc}")
