"""``GET /``, ``/healthz``, ``/readyz`` and ``/metrics`` (docs/api.md §4): open to load
balancers and scrapers, never authenticated."""

from __future__ import annotations

import json
import time

from gateway import errors
from gateway.api.context import ApiContext
from gateway.api.metrics import make_registry, render
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol

# /readyz answers from the cached state, and refreshes the cluster metadata (in the background,
# for the next probe) when it is older than this: a lost cluster shows within a probe or two.
READY_METADATA_AGE = 5.0


def readiness_problem(ctx: ApiContext) -> str | None:
    """Why /readyz answers 503 (None: ready). Ready means: not shutting down, the producer can
    take records, and the latest metadata refresh reached the cluster."""
    if ctx.closing:
        return "the gateway is shutting down"
    spooler = ctx.spooler
    if spooler is not None:
        if spooler.spool.failure is not None:
            return f"the spool has failed: {spooler.spool.failure}"
        if spooler.spooling:
            return None  # Kafka may be unreachable, but records are taken: into the spool
    down = ctx.cluster.down
    if down is not None:
        return f"Kafka is unreachable: {down}"
    problem = ctx.producer.health_problem()
    if problem is not None:
        return problem
    md = ctx.metadata
    if md.info is None:
        return f"Kafka is unreachable: {md.last_error or 'no metadata yet'}"
    if md.last_error is not None:
        return f"Kafka is unreachable: the last metadata refresh failed ({md.last_error})"
    return None


def on_root(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    conn.respond(200, b"{}")


def on_healthz(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    conn.respond(200, b'{"status":"ok"}')


def on_readyz(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    problem = readiness_problem(ctx)
    md = ctx.metadata
    if not ctx.closing and (
        md.info is None
        or md.last_error is not None
        or time.monotonic() - md.info.fetched_at > READY_METADATA_AGE
    ):
        # Probes keep the cluster check fresh (shared with topic misses, at most one metadata
        # request per miss_refresh_interval); the answer is for the next probe.
        md.refresh_for_miss()
    spooler = ctx.spooler
    if problem is None and spooler is not None and spooler.spooling:
        st = spooler.stats()
        why = spooler.unreachable
        conn.respond(200, json.dumps({
            "status": "spooling", "reason": why,
            "spool": {"records": st.records, "bytes": st.bytes,
                      "oldest_age_seconds": round(st.oldest_age_seconds, 3)},
        }, separators=(",", ":")).encode())
        return
    if problem is None:
        conn.respond(200, b'{"status":"ready"}')
    elif ctx.closing:
        conn.respond_error(errors.ShuttingDown(problem))
    else:
        conn.respond_error(errors.KafkaUnavailable(problem))


class MetricsEndpoint:
    """``GET /metrics``: one registry, made with the endpoint (gateway.api.metrics)."""

    def __init__(self, ctx: ApiContext) -> None:
        self._registry = make_registry(ctx, lambda: readiness_problem(ctx))

    def __call__(self, ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
        body, content_type = render(self._registry, head.joined("accept"))
        conn.respond(200, body, content_type=content_type)
