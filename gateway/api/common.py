"""What several endpoints do the same way: refuse new work while stopping, learn a topic's
partitions (refreshing the metadata once on a miss), hold a concurrency slot, answer from a
coroutine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote_plus

from gateway import errors
from gateway.api.context import ApiContext
from gateway.http.coding import UnsupportedContentEncoding, request_codings
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol
from gateway.produce.edge import UNKNOWN_PARTITIONS

log = logging.getLogger("gateway.api")

def refuse(conn: HttpProtocol, exc: errors.GatewayError, content_type: bytes | None = None) -> None:
    """Answer ``exc``: its JSON error body, as ``content_type`` when given (the v1/v2 produce
    endpoints answer errors in the negotiated type)."""
    if content_type is None:
        conn.respond_error(exc)
    else:
        conn.respond(exc.status, exc.body(), content_type=content_type)


def refused_now(ctx: ApiContext, conn: HttpProtocol, *, spools: bool = False,
                content_type: bytes | None = None) -> bool:
    """True (and the 503/50003 sent, as ``refuse`` sends it) when a request that needs Kafka cannot be served now: the gateway is
    stopping, or Kafka is known to be unreachable (gateway.kafka.health: answered at once, not
    after a timeout), unless the request ``spools`` (a produce request, with the disk spool on:
    its records go there)."""
    if ctx.closing:
        exc: errors.GatewayError = errors.ShuttingDown("the gateway is shutting down")
    else:
        down = ctx.cluster.down
        if down is None or (spools and ctx.spooler is not None):
            return False
        exc = errors.KafkaUnavailable(f"Kafka is unreachable: {down}")
    refuse(conn, exc, content_type)
    return True


def refused_coding(
    conn: HttpProtocol, head: RequestHead, content_type: bytes = b"application/json"
) -> bool | None:
    """Whether the body is compressed (a ``Content-Encoding`` the gateway decodes: True);
    None, and the request answered 415 with ``Accept-Encoding`` naming the codings it takes,
    for one it does not (RFC 9110 §15.5.16), before any byte of the body is read."""
    try:
        if conn.head is head:  # (the connection reads them once per request)
            return bool(conn.request_codings())
        return bool(request_codings(head.joined("content-encoding")))
    except UnsupportedContentEncoding as exc:
        conn.respond(exc.status, exc.body(), content_type=content_type, extra_headers=exc.headers)
        return None


def with_topic(
    ctx: ApiContext,
    conn: HttpProtocol,
    head: RequestHead,
    topic: str,
    then: Callable[..., None],
    *args: Any,
    content_type: bytes | None = None,
    spools: bool = False,
) -> None:
    """Call ``then(partition count, *args)`` once the topic is known: at once from the metadata
    cache, else after one refresh (shared with concurrent misses, rate-limited), reading nothing
    of the request meanwhile. (``args`` rather than a closure of the caller's: this runs for
    every produce request, and a closure's cells would be made for each.) An unknown topic is
    404/40401 and no metadata at all 503/50003, decided from the cluster's full listing
    (gateway.kafka.metadata), answered as ``refuse`` answers with ``content_type``. A request that ``spools`` (a produce request) to a gateway that has no
    listing (none since it started) while it spools goes on with UNKNOWN_PARTITIONS: its
    records are spooled, and their partitions checked when forwarded."""
    partitions = ctx.metadata.partitions(topic)
    if partitions is not None:
        then(partitions, *args)
        return

    def spooled_unlisted() -> bool:
        return (spools and ctx.spooler is not None and ctx.spooler.unreachable is not None
                and ctx.metadata.info is None)

    if spooled_unlisted():  # at once, not after a lookup that fails
        then(UNKNOWN_PARTITIONS, *args)
        return

    def after_refresh(_fut: asyncio.Future[Any]) -> None:
        if not conn.pending(head):
            return  # the client went away meanwhile
        try:
            count = ctx.metadata.partition_count(topic)
        except errors.GatewayError as exc:
            if spooled_unlisted():
                then(UNKNOWN_PARTITIONS, *args)
                return
            refuse(conn, exc, content_type)
            return
        then(count, *args)

    conn.defer()
    ctx.metadata.refresh_for_miss().add_done_callback(conn.later(after_refresh))


def take_slot(ctx: ApiContext, conn: HttpProtocol) -> bool:
    """A concurrency slot for a produce stream or request of this connection's principal;
    False (and the 429/42902 answer sent) when the principal has none left. The connection
    gives the slot back when the request ends."""
    limiter = ctx.concurrency
    if not limiter.limit:
        return True
    who = conn.limit_principal
    if not limiter.acquire(who):
        conn.respond_error(errors.TooManyRequests(
            f"{who} already has {limiter.limit} produce streams or requests open"
        ))
        return False
    conn.hold_slot(limiter, who)
    return True


def run_request(
    ctx: ApiContext,
    conn: HttpProtocol,
    head: RequestHead,
    work: Coroutine[Any, Any, tuple[bytes, bytes]],
) -> None:
    """Answer a request from a coroutine giving (content type, body): one task per request,
    for reads that wait on Kafka. Errors with an HTTP meaning answer as such."""
    conn.defer()
    task = ctx.loop.create_task(work)

    def done(t: asyncio.Task[tuple[bytes, bytes]]) -> None:
        exc = t.exception() if not t.cancelled() else errors.ShuttingDown("cancelled")
        if not conn.pending(head):
            return  # the client went away
        if exc is None:
            content_type, body = t.result()
            conn.respond(200, body, content_type=content_type)
        elif isinstance(exc, errors.GatewayError):
            conn.respond_error(exc)
        else:
            log.error("request failed", exc_info=exc)
            conn.respond_error(errors.GatewayBug("internal error"))

    task.add_done_callback(conn.later(done))


def query_params(query: str) -> dict[str, str]:
    """A query string's parameters, each with its first value (as JAX-RS's ``@QueryParam``
    takes it; blank values kept). Equivalent to ``parse_qs(query, keep_blank_values=True)``'s
    first values, without its cost for the plain parameters requests carry."""
    out: dict[str, str] = {}
    if not query:
        return out
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if "%" in part or "+" in part:
            name, value = unquote_plus(name), unquote_plus(value)
        if name not in out:
            out[name] = value
    return out
