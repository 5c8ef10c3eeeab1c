"""Request dispatch: the route a head names (gateway.http.routes), authentication and the topic
ACL (gateway.auth), then the endpoint. ``Api.dispatch`` is what the HTTP protocol calls with
every request head.

Order of checks (README "Security"): 401 (authentication), then 404/405 for an unknown URL or
method, then 403 (the ACL), then the endpoint's own checks; all before any byte of the body is
read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway import errors
from gateway.api import (
    consume_stream,
    consume_v1,
    consumers,
    health,
    metadata,
    produce_v1,
    produce_v3,
)
from gateway.api.common import query_params
from gateway.api.context import ApiContext
from gateway.auth.acl import ANY, CONSUME, GROUP, PRODUCE
from gateway.auth.authenticator import RETRY_AFTER
from gateway.auth.tls import cert_principal
from gateway.http import routes
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol

Endpoint = Callable[[ApiContext, HttpProtocol, RequestHead, dict[str, str]], None]

NOT_FOUND = errors.NotFound("HTTP 404 Not Found")
METHOD_NOT_ALLOWED = "method_not_allowed"  # the name 405 answers are counted under
_NO_PARAMS: dict[str, str] = {}  # (shared, read-only: an endpoint never changes its parameters)

# What a request head names: the endpoint (routes.NOT_FOUND and METHOD_NOT_ALLOWED name the
# requests answered 404 and 405) and the path's parameters.
Route = tuple[str, dict[str, str]]

# What an endpoint needs on its topic when the ACL is on (README "Security"). Listings
# (/topics, /brokers, clusters, v3 topics) need only authentication; they show the topics the
# principal has a permission on.
_TOPIC_PERMISSION: dict[str, tuple[int, str]] = {
    routes.PRODUCE_V3: (PRODUCE, "produce to"),
    routes.PRODUCE_V3_BATCH: (PRODUCE, "produce to"),
    routes.PRODUCE_V1: (PRODUCE, "produce to"),
    routes.CONSUME_V1: (CONSUME, "consume from"),
    routes.CONSUME_STREAM: (CONSUME, "consume from"),
    routes.TOPIC: (ANY, "read the metadata of"),
    routes.PARTITIONS: (ANY, "read the metadata of"),
    routes.PARTITION_OR_CONSUME: (ANY, "read the metadata of"),
    routes.V3_TOPIC: (ANY, "read the metadata of"),
    routes.V3_PARTITIONS: (ANY, "read the metadata of"),
    routes.V3_PARTITION: (ANY, "read the metadata of"),
    routes.CONSUMER_READ_V1: (CONSUME, "consume from"),
}
# The consumer API needs ``group`` on the URL's group first (gateway.api.consumers checks
# ``consume`` on the topics a request names).
_GROUP_PERMISSION = routes.CONSUMER_ENDPOINTS
# What one worker hands over to another: the requests of an existing instance.
_HANDED_OVER = routes.CONSUMER_ENDPOINTS - {routes.CONSUMER_CREATE}


class Api:
    """The endpoints behind one listener; see the module docstring."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self._endpoints: dict[str, Endpoint] = {
            routes.PRODUCE_V3: produce_v3.on_records,
            routes.PRODUCE_V3_BATCH: produce_v3.on_records_batch,
            routes.PRODUCE_V1: produce_v1.on_produce,
            routes.CONSUME_V1: consume_v1.on_consume,
            routes.CONSUME_STREAM: consume_stream.on_stream,
            routes.TOPICS: metadata.on_topics,
            routes.TOPIC: metadata.on_topic,
            routes.PARTITIONS: metadata.on_partitions,
            routes.PARTITION_OR_CONSUME: metadata.on_partition,
            routes.BROKERS: metadata.on_brokers,
            routes.CLUSTERS: metadata.on_clusters,
            routes.CLUSTER: metadata.on_cluster,
            routes.V3_BROKERS: metadata.on_v3_brokers,
            routes.V3_BROKER: metadata.on_v3_broker,
            routes.V3_TOPICS: metadata.on_v3_topics,
            routes.V3_TOPIC: metadata.on_v3_topic,
            routes.V3_PARTITIONS: metadata.on_v3_partitions,
            routes.V3_PARTITION: metadata.on_v3_partition,
            routes.ROOT: health.on_root,
            routes.HEALTHZ: health.on_healthz,
            routes.READYZ: health.on_readyz,
            routes.METRICS: health.MetricsEndpoint(ctx),
            routes.CONSUMER_CREATE: consumers.on_create,
            routes.CONSUMER_DELETE: consumers.on_delete,
            routes.CONSUMER_SUBSCRIBE: consumers.on_subscribe,
            routes.CONSUMER_SUBSCRIPTION: consumers.on_subscription,
            routes.CONSUMER_UNSUBSCRIBE: consumers.on_unsubscribe,
            routes.CONSUMER_ASSIGN: consumers.on_assign,
            routes.CONSUMER_ASSIGNMENT: consumers.on_assignment,
            routes.CONSUMER_SEEK: consumers.on_seek,
            routes.CONSUMER_SEEK_BEGINNING: consumers.on_seek_beginning,
            routes.CONSUMER_SEEK_END: consumers.on_seek_end,
            routes.CONSUMER_RECORDS: consumers.on_records,
            routes.CONSUMER_READ_V1: consumers.on_read_v1,
            routes.CONSUMER_COMMIT: consumers.on_commit,
            routes.CONSUMER_COMMITTED: consumers.on_committed,
        }

    def dispatch(self, conn: HttpProtocol, head: RequestHead) -> None:
        # The route, written out (this runs for every request): the endpoint the path and
        # method name (routes.NOT_FOUND and METHOD_NOT_ALLOWED name the requests answered 404
        # and 405) and the path's parameters; _serve gives the rest to the endpoint.
        found = routes.lookup(head.path)
        if found is None:
            endpoint, params = routes.NOT_FOUND, _NO_PARAMS
        else:
            endpoint = found[0].get(head.method, METHOD_NOT_ALLOWED)
            params = found[1]
            if endpoint == routes.PARTITION_OR_CONSUME and "offset" in query_params(head.query):
                endpoint = routes.CONSUME_V1
        conn.endpoint = endpoint
        auth = self.ctx.auth
        if auth is None or head.path in routes.OPEN_PATHS:
            handler = self._endpoints.get(endpoint)
            if handler is not None:  # (_serve's common case, written out)
                handler(self.ctx, conn, head, params)
                return
            self._serve(conn, head, endpoint, params)
            return
        route = (endpoint, params)
        # Authentication first, then authorization, both before the endpoint's own checks
        # and before any byte of the body is read (docs/api.md §1: 401 and 403 come first).
        try:
            who = auth.authenticate(head, cert_principal(conn.peer_cert) if auth.cert_auth else None)
        except errors.GatewayError as exc:
            self._refuse(conn, exc)
            return
        if isinstance(who, str):
            self._authorize(conn, head, route, who)
            return
        self._authorize_later(conn, head, route, who)

    def _authorize_later(self, conn: HttpProtocol, head: RequestHead, route: Route,
                         who: asyncio.Future[str | errors.GatewayError]) -> None:
        """The password is being verified on a worker thread (``who``: its future): read
        nothing meanwhile. (Apart from dispatch, whose every call would make this closure's
        cells.)"""
        conn.defer()

        def verified(outcome: str | errors.GatewayError) -> None:
            if not conn.pending(head):  # the client went away meanwhile
                return
            if isinstance(outcome, errors.GatewayError):
                self._refuse(conn, outcome)
                return
            self._authorize(conn, head, route, outcome)

        who.add_done_callback(conn.later(lambda f: verified(f.result())))

    def dispatch_handoff(self, conn: HttpProtocol, head: RequestHead) -> None:
        """A request another --workers worker handed over on this worker's Unix socket
        (gateway.api.consumers): that worker authenticated the client and checked the ACL; the
        principal comes in the hand-off field. Only requests for an instance are taken (the
        ACL is checked again: the same files, the same answer)."""
        route = self._resolve(head)
        conn.endpoint = route[0]
        if route[0] not in _HANDED_OVER:
            conn.respond_error(NOT_FOUND)
            return
        try:
            principal = consumers.handoff_principal(head)
        except errors.GatewayError as exc:
            conn.respond_error(exc)
            return
        if self.ctx.auth is not None and principal is not None:
            self._authorize(conn, head, route, principal)
            return
        conn.principal = principal
        self._serve(conn, head, *route)

    def _authorize(self, conn: HttpProtocol, head: RequestHead, route: Route, principal: str) -> None:
        conn.principal = principal
        auth = self.ctx.auth
        assert auth is not None
        endpoint, params = route
        if endpoint in _GROUP_PERMISSION:
            group = params["group"]
            if not auth.allows(principal, GROUP, group):
                self._refuse(conn, errors.Forbidden(f"{principal} may not use consumer group {group}"))
                return
        need = _TOPIC_PERMISSION.get(endpoint)
        if need is not None:
            operation, verb = need
            topic = params["topic"]
            if not auth.allows(principal, operation, topic):
                self._refuse(conn, errors.Forbidden(f"{principal} may not {verb} topic {topic}"))
                return
        self._serve(conn, head, endpoint, params)

    def _refuse(self, conn: HttpProtocol, exc: errors.GatewayError) -> None:
        extra = b""
        auth = self.ctx.auth
        if isinstance(exc, errors.Unauthorized) and auth is not None:
            extra = auth.challenge  # RFC 9110 §11.6.1: a 401 names the scheme to use
        elif isinstance(exc, errors.AuthBusy):
            extra = RETRY_AFTER
        conn.respond(exc.status, exc.body(), extra_headers=extra)

    @staticmethod
    def _resolve(head: RequestHead) -> Route:
        """The endpoint a request head names and the path's parameters (as ``dispatch``)."""
        found = routes.lookup(head.path)
        if found is None:
            return routes.NOT_FOUND, _NO_PARAMS
        endpoint = found[0].get(head.method, METHOD_NOT_ALLOWED)
        if endpoint == routes.PARTITION_OR_CONSUME and "offset" in query_params(head.query):
            endpoint = routes.CONSUME_V1
        return endpoint, found[1]

    def _serve(self, conn: HttpProtocol, head: RequestHead, endpoint: str,
               params: dict[str, str]) -> None:
        handler = self._endpoints.get(endpoint)
        if handler is not None:
            handler(self.ctx, conn, head, params)
            return
        if endpoint == METHOD_NOT_ALLOWED:
            found = routes.lookup(head.path)
            methods = found[0] if found is not None else {}
            conn.respond(
                405,
                errors.error_body(405, "HTTP 405 Method Not Allowed"),
                extra_headers=b"Allow: " + ", ".join(methods).encode() + b"\r\n",
            )
            return
        conn.respond_error(NOT_FOUND)
