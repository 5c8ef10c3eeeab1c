"""v3 produce: ``POST /v3/clusters/{cluster_id}/topics/{topic}/records`` (a stream of records,
one report per record in order) and ``.../records:batch`` (answered once, 207) (docs/api.md §1).

Every check that can refuse the request is made before the 200 and before any byte of the body
is read: 503 while stopping, 411 no framing, 415 not JSON, 415 a content coding the gateway does
not decode (with ``Accept-Encoding``), 422/42206 empty, 413 over the body limit (a
``Content-Length`` of a body without content coding: the limits count decoded bytes, so a
compressed body is measured as it is decoded), 404 for another cluster (with
--validate-cluster-id), 404/40401 unknown topic, 429/42902 no concurrency slot. Then the body
goes to a ``ProduceSession`` (streamed reports) or a ``BatchRequest`` (one answer); a compressed
body reaches them decoded (gateway.http.coding, in the connection).
"""

from __future__ import annotations

import functools

from gateway import errors
from gateway.api.common import refused_coding, refused_now, take_slot, with_topic
from gateway.api.context import ApiContext
from gateway.http.media import is_json
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol
from gateway.produce import JsonSplitter
from gateway.produce.batch import BatchRequest
from gateway.produce.session import ProduceSession


def on_records_batch(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    on_records(ctx, conn, head, params, True)


def on_records(
    ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str],
    batch: bool = False,
) -> None:
    # (refused_now's, refused_coding's and take_slot's checks are made only when they could
    # refuse: this runs for every request)
    if (ctx.closing or ctx.cluster.down is not None) and refused_now(ctx, conn, spools=True):
        return
    cfg = ctx.config
    cluster_id, topic = params["cluster_id"], params["topic"]
    if head.content_length is None and not head.chunked:
        conn.respond_error(
            errors.LengthRequired("a request body with Content-Length or chunked encoding is required")
        )
        return
    if not is_json(head.content_type):
        conn.respond_error(
            errors.UnsupportedMediaType(
                f"Content-Type must be application/json, not {head.content_type or 'missing'}"
            )
        )
        return
    coded: bool | None = False
    if head.joined("content-encoding") is not None:
        coded = refused_coding(conn, head)
        if coded is None:
            return
    if head.content_length == 0:
        conn.respond_error(errors.EmptyBody("the request body is empty: send one or more records"))
        return
    limit = cfg.held_body_limit() if batch else cfg.max_request_bytes
    if limit and not coded and head.content_length is not None and head.content_length > limit:
        conn.respond_error(
            errors.PayloadTooLarge(
                f"request body of {head.content_length} bytes is over the {limit}-byte limit"
            )
        )
        return
    if cfg.validate_cluster_id:
        info = ctx.metadata.info
        if info is not None and cluster_id != info.cluster_id:
            conn.respond_error(errors.NotFound(f"cluster {cluster_id} not found"))
            return

    partitions = ctx.metadata.partitions(topic)
    if partitions is not None:  # (with_topic's cache hit, written out)
        _start(partitions, ctx, conn, cluster_id, topic, batch)
        return
    with_topic(ctx, conn, head, topic, _start, ctx, conn, cluster_id, topic, batch, spools=True)


def _start(partitions: int, ctx: ApiContext, conn: HttpProtocol, cluster_id: str, topic: str,
           batch: bool) -> None:
    """The topic is known: the request's slot, then its body."""
    if ctx.concurrency.limit and not take_slot(ctx, conn):
        return
    cfg = ctx.config
    if batch:
        conn.read_body(
            BatchRequest(
                conn,
                ctx.producer,
                functools.partial(JsonSplitter, cfg.max_record_bytes),  # (no cell per call)
                cluster_id=cluster_id,
                topic=topic,
                partitions=partitions,
                max_entries=cfg.max_batch_entries,
                max_bytes=cfg.held_body_limit(),
                stats=ctx.stats,
                rates=ctx.rates,
                principal=conn.limit_principal,
            )
        )
        return
    conn.start_stream(
        ProduceSession(
            conn,
            ctx.producer,
            JsonSplitter(cfg.max_record_bytes),
            cluster_id=cluster_id,
            topic=topic,
            partitions=partitions,
            max_in_flight=cfg.max_in_flight,
            stats=ctx.stats,
            rates=ctx.rates,
            # (who the rate limits count the stream for: asked only when they are on)
            principal=conn.limit_principal if ctx.rates.enabled else "-",
            max_body_bytes=cfg.max_request_bytes,
            max_duration=cfg.stream_max_duration_ms / 1000.0,
            client=conn.peer_host,
        )
    )
