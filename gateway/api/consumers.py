"""Consumer instances over HTTP (docs/api.md §12): Confluent's v2 consumer API, the same paths
for clients of the Strimzi bridge, and Confluent's v1 instance read. The instances themselves
(their consumer, thread, expiry) are gateway.consume.instances.

Paths (all under ``/consumers/{group}``)::

    POST   /consumers/{group}                                 create an instance
    DELETE .../instances/{instance}                           delete it (204)
    POST|GET|DELETE .../subscription                          subscribe / read / unsubscribe
    POST|GET .../assignments                                  assign partitions / read them
    POST   .../positions, .../positions/beginning, .../end    seek
    GET    .../records?timeout=MS&max_bytes=N                 records
    POST|GET .../offsets                                      commit / read committed offsets
    GET    .../topics/{topic}?max_bytes=N                     Confluent v1: subscribe and read

**Dialects.** Each instance answers in the dialect of the request that created it:

- ``strimzi`` when the create body has a key only the Strimzi bridge knows
  (``enable.auto.commit``, ``isolation.level``) or ``"format": "text"``: errors are
  ``{"error_code": <the HTTP status>, "message": ...}``, a commit answers 204, records carry
  ``timestamp`` and ``headers``, a seek in a partition the instance is not assigned is 404,
  ``GET .../subscription`` also lists the assigned partitions, explicit commit offsets are
  Kafka's (the next offset to read);
- ``v1`` when its Content-Type is a v1 type (``application/vnd.kafka.v1+json``, ...): as
  ``confluent``, answered as ``application/vnd.kafka.v1+json``;
- ``confluent`` otherwise: Confluent's error codes (40403, 40902, 40903, 40601, 42204, ...), a
  commit answers 200 with ``[{"topic","partition","consumed","committed"}]``, and explicit
  commit offsets are those of the last records consumed (Confluent commits ``offset + 1``).

Every request may carry a Content-Type and a small JSON body, GET and DELETE included (clients
of both APIs send ``{}``); a body is at most ``MAX_BODY`` bytes (413), of a JSON type (415), one
JSON object (400 when it is not JSON, 422 when its fields are wrong). Checks, in order: 401/403
(dispatch: authentication, ``group`` on the group, ``consume`` on a v1 read's topic), 415, 413,
404/40403 (no such instance, or another principal's), the body, the ACL on the topics it names
(403/40301), then the operation.

**Workers.** With ``--workers N`` an instance lives in the worker process that created it, and
the kernel hands each new connection to any worker. A request for an instance that another
worker holds (its ownership record says which: gateway.consume.owners) is handed over to that
worker on its Unix socket (gateway.server), after this worker's checks up to the lookup: the
same method, target, fields and body, with the principal authenticated here in the
``HANDOFF_FIELD`` field (believed on that socket only; an outside request's is dropped). The
owner's answer (status, type, body) goes back to the client as it is. The owner answers within
a read's wait plus ``HANDOFF_MARGIN`` seconds, or the client gets 503/50003; an owner that is
gone (its socket refuses) had the instance: 404/40403, and its record is removed. A request
handed over is never handed on.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote, unquote

from gateway import errors
from gateway._speedups import json_loads
from gateway.api.common import query_params, refused_coding
from gateway.api.context import ApiContext
from gateway.auth.acl import CONSUME
from gateway.consume.instances import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    SUBSCRIBED,
    ConsumerInstance,
    InstanceNotFound,
    InstanceRegistry,
    InstanceSettings,
    InvalidConsumerConfig,
    NotAssigned,
    StateConflict,
)
from gateway.http import relay, writer
from gateway.http.media import accept_ranges, choose, parse_media_type
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol

log = logging.getLogger("gateway.api")

V2_TYPE = b"application/vnd.kafka.v2+json"
V1_TYPE = b"application/vnd.kafka.v1+json"
CONFLUENT = "confluent"
STRIMZI = "strimzi"
V1 = "v1"

MAX_BODY = 64 * 1024  # a consumer request's body
MAX_BYTES = 64 * 1024 * 1024  # an answer's records (Confluent's consumer.request.max.bytes)
MAX_WAIT_MS = 30_000  # the longest a GET .../records waits for records
DEFAULT_WAIT_MS = 1_000  # consumer.request.timeout.ms when the create request says none
MAX_TOPIC = 249  # Kafka's longest topic name
MAX_INT32 = (1 << 31) - 1
MAX_OFFSET = (1 << 63) - 1

# Hand-offs between --workers processes (see "Workers" above).
HANDOFF_FIELD = "kafka-gateway-handoff"
HANDOFF_MARGIN = 30.0  # seconds an owner may take beyond a read's wait (Kafka calls, its queue)
HANDOFF_SLACK = 16 * 1024 * 1024  # bytes of an answer beyond twice its records' max_bytes
# Not handed over: the credentials (the principal goes in HANDOFF_FIELD), and an outside
# request's own HANDOFF_FIELD (never believed).
_NOT_HANDED = ("authorization", HANDOFF_FIELD)
# Fields of the owner's answer the client gets besides its status, type and body.
_ANSWER_FIELDS = frozenset({"retry-after"})

# Body types of the consumer API (Confluent's resource takes the embedded-format types too).
_V2_BODY_TYPES = frozenset({
    "application/vnd.kafka.v2+json", "application/vnd.kafka.binary.v2+json",
    "application/vnd.kafka.json.v2+json", "application/vnd.kafka.avro.v2+json",
    "application/vnd.kafka.jsonschema.v2+json", "application/vnd.kafka.protobuf.v2+json",
    "application/json", "application/vnd.kafka+json",
})
_V1_BODY_TYPES = frozenset({
    "application/vnd.kafka.v1+json", "application/vnd.kafka.binary.v1+json",
    "application/vnd.kafka.json.v1+json", "application/vnd.kafka.avro.v1+json",
})
_EMBEDDED = re.compile(r"application/vnd\.kafka\.([a-z]+)\.v([12])\+json")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_TOPIC)
_HOST = re.compile(r"[A-Za-z0-9.\-_~%]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")

# Keys of a create body, and which API knows them.
_CREATE_KEYS = frozenset({
    "name", "id", "format", "auto.offset.reset", "auto.commit.enable", "enable.auto.commit",
    "fetch.min.bytes", "consumer.request.timeout.ms", "isolation.level",
})
_STRIMZI_KEYS = ("enable.auto.commit", "isolation.level")
_RESETS = {"earliest": "earliest", "latest": "latest", "none": "none",
           "smallest": "earliest", "largest": "latest"}  # (smallest, largest: v1's names)
_SCHEMA_FORMATS = frozenset({"avro", "jsonschema", "protobuf"})

# The consumer's record format, by (API of the answer, the instance's format).
_RECORD_FORMATS = {
    (CONFLUENT, "binary"): "V2_BINARY", (CONFLUENT, "json"): "V2_JSON",
    (STRIMZI, "binary"): "STRIMZI_BINARY", (STRIMZI, "json"): "STRIMZI_JSON",
    (STRIMZI, "text"): "STRIMZI_TEXT",
    (V1, "binary"): "V1_BINARY", (V1, "json"): "V1_JSON",
}

Answer = tuple[int, bytes, bytes]  # status, body, content type
Operation = Callable[["Call"], Coroutine[Any, Any, Answer]]
Endpoint = Callable[[ApiContext, HttpProtocol, RequestHead, dict[str, str]], None]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class Call:
    """One request of the consumer API: what its operation reads, and how it is answered."""

    __slots__ = ("ctx", "conn", "head", "params", "body", "dialect", "inst")

    def __init__(self, ctx: ApiContext, conn: HttpProtocol, head: RequestHead,
                 params: dict[str, str], body: bytes) -> None:
        self.ctx = ctx
        self.conn = conn
        self.head = head
        self.params = params
        self.body = body
        self.dialect = _body_dialect(head)
        self.inst: ConsumerInstance | None = None

    @property
    def registry(self) -> InstanceRegistry:
        registry = self.ctx.instances
        assert registry is not None
        return registry

    @property
    def instance(self) -> ConsumerInstance:
        assert self.inst is not None
        return self.inst

    @property
    def answer_type(self) -> bytes:
        return V1_TYPE if self.dialect == V1 else V2_TYPE

    def ok(self, value: Any) -> Answer:
        return 200, _dumps(value), self.answer_type

    def fail(self, exc: errors.GatewayError, detail: str = "") -> None:
        """The error answer, in the instance's dialect (the gateway's own before there is one)."""
        code = exc.status if self.dialect == STRIMZI else exc.error_code
        if self.dialect == STRIMZI and isinstance(exc, NotAssigned):
            status = code = 404  # the bridge: "did not have one of the partitions assigned"
        else:
            status = exc.status
        self.conn.respond(status, errors.error_body(code, exc.message), content_type=self.answer_type,
                          detail=detail)

    # -- the body ------------------------------------------------------------------------
    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object; None when there is none (empty, or only whitespace)."""
        if not self.body.strip():
            return None
        try:
            value = json_loads(self.body)
        except ValueError as exc:
            # Not JSON: the reason and the byte offset where reading stopped (or an integer past
            # Python's digit limit).
            raise errors.BadRequest(f"the request body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise errors.Unprocessable("the request body must be a JSON object")
        return value

    # -- the ACL -------------------------------------------------------------------------
    def may_consume(self, topics: Any) -> None:
        """403/40301 unless the principal may consume every topic named (authentication on)."""
        auth = self.ctx.auth
        principal = self.conn.principal
        if auth is None or principal is None:
            return
        for topic in dict.fromkeys(topics):
            if not auth.allows(principal, CONSUME, topic):
                raise errors.Forbidden(f"{principal} may not consume from topic {topic}")

    def may_consume_any_topic(self) -> None:
        auth = self.ctx.auth
        principal = self.conn.principal
        if auth is None or principal is None:
            return
        if not auth.allows_every(principal, CONSUME):
            raise errors.Forbidden(
                f"{principal} may not subscribe to a topic pattern: a pattern may match any "
                "topic, so it needs consume on every topic (an ACL rule with the pattern *)"
            )

    def may_read(self) -> None:
        """What the instance reads now must still be allowed to the caller."""
        inst = self.instance
        if inst.pattern is not None:
            self.may_consume_any_topic()
        self.may_consume(inst.topics)


def _body_dialect(head: RequestHead) -> str:
    ctype = head.content_type
    if ctype and parse_media_type(ctype)[0] in _V1_BODY_TYPES:
        return V1
    return CONFLUENT


# -- the endpoint frame ------------------------------------------------------------------
def _endpoint(operation: Operation, *, instance: bool = True) -> Endpoint:
    def endpoint(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
        if ctx.closing or ctx.instances is None:
            conn.respond_error(errors.ShuttingDown("the gateway is shutting down"))
            return
        if not conn.has_body():
            conn.defer()
            _start(ctx, conn, head, params, b"", operation, instance)
            return
        ctype = head.content_type
        if ctype is not None and ctype.strip():
            media, options = parse_media_type(ctype)
            charset = options.get("charset")
            if media not in _V2_BODY_TYPES and media not in _V1_BODY_TYPES or (
                charset is not None and charset.lower() != "utf-8"
            ):
                conn.respond_error(errors.UnsupportedMediaType(
                    f"Content-Type {ctype} is not taken here: send application/vnd.kafka.v2+json"
                ))
                return
        coded = refused_coding(conn, head)
        if coded is None:
            return
        if not coded and head.content_length is not None and head.content_length > MAX_BODY:
            conn.respond_error(errors.PayloadTooLarge(
                f"the request body of {head.content_length} bytes is over the {MAX_BODY}-byte "
                "limit of consumer requests"
            ))
            return
        conn.read_body(_SmallBody(conn, lambda body: _start(ctx, conn, head, params, body,
                                                            operation, instance)))

    return endpoint


def _start(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str],
           body: bytes, operation: Operation, instance: bool) -> None:
    if not conn.pending(head):
        return
    call = Call(ctx, conn, head, params, body)
    try:
        if instance:
            registry = call.registry
            group, name = params["group"], params["instance"]
            owners = registry.owners
            if owners is not None and not conn.internal and not registry.holds(group, name):
                owner = owners.owner(group, name)
                if owner is not None:  # another worker holds it
                    _hand_over(call, owner, operation in _READS)
                    return
            call.inst = registry.get(group, name, conn.principal)
            call.dialect = call.inst.dialect
        work = operation(call)
    except errors.GatewayError as exc:
        call.fail(exc)
        return
    conn.defer()
    task = ctx.loop.create_task(work)

    def done(t: Any) -> None:
        exc = t.exception() if not t.cancelled() else errors.ShuttingDown("cancelled")
        if not conn.pending(head):
            return  # the client went away
        if exc is None:
            status, answer, content_type = t.result()
            conn.respond(status, answer, content_type=content_type)
        elif isinstance(exc, errors.GatewayError):
            call.fail(exc)
        else:
            log.error("consumer request failed", exc_info=exc)
            call.fail(errors.GatewayBug("internal error of the gateway"))

    task.add_done_callback(conn.later(done))


# -- hand-offs between --workers processes -----------------------------------------------
class HandOffFailed(errors.UpstreamError):
    """503/50003: the worker that holds the instance did not answer a request handed over."""

    status = 503
    error_code = 50003


def handoff_value(principal: str | None) -> str:
    """The hand-off field of a request handed over: the principal this worker authenticated
    (percent-encoded UTF-8), or none."""
    return "v1" if principal is None else "v1; principal=" + quote(principal, safe="")


def handoff_principal(head: RequestHead) -> str | None:
    """The principal a request handed over carries (None: authentication is off);
    ``BadRequest`` when it has no valid hand-off field."""
    value = head.header(HANDOFF_FIELD)
    parts = [p.strip() for p in (value or "").split(";")]
    if parts[0] != "v1" or len(parts) > 2:
        raise errors.BadRequest(f"not a request handed over by a worker (no valid {HANDOFF_FIELD} field)")
    if len(parts) == 1:
        return None
    key, _, principal = parts[1].partition("=")
    if key != "principal" or not principal:
        raise errors.BadRequest(f"a {HANDOFF_FIELD} field with a bad principal")
    return unquote(principal)


def _handoff_bounds(query: str, reads: bool) -> tuple[float, int]:
    """How long the owner's answer may take (seconds) and how large it may be (bytes): a read
    waits for records at most its ``timeout`` (up to MAX_WAIT_MS) and answers at most about
    twice its ``max_bytes`` (base64, JSON); the margins cover Kafka calls and the instance's
    queue. (Values the owner refuses give it no time: it answers 400 at once.)"""
    if not reads:
        return HANDOFF_MARGIN, HANDOFF_SLACK
    parsed = query_params(query)
    try:
        wait = _query_int(parsed, "timeout")
        max_bytes = _max_bytes(parsed)
    except errors.GatewayError:
        return HANDOFF_MARGIN, HANDOFF_SLACK
    wait_ms = MAX_WAIT_MS if wait is None or wait < 0 else min(wait, MAX_WAIT_MS)
    return wait_ms / 1000 + HANDOFF_MARGIN, 2 * max_bytes + HANDOFF_SLACK


def _hand_over(call: Call, owner: tuple[int, int], reads: bool) -> None:
    """Send the request to the worker that holds its instance (its hand-off socket), with the
    principal authenticated here, and answer the client with what it answers. A worker that
    is gone (its socket refuses) had the instance: its record goes, and the answer is 404/40403."""
    ctx, conn, head = call.ctx, call.conn, call.head
    group, name = call.params["group"], call.params["instance"]
    slot = owner[0]
    label = f"consumer instance {name} of group {group}"
    timeout, max_body = _handoff_bounds(head.query, reads)
    request = relay.forward_request(
        head, call.body, drop=_NOT_HANDED, add=[(HANDOFF_FIELD, handoff_value(conn.principal))]
    )
    detail = f"handed over to worker {slot}"
    conn.defer()
    task = ctx.loop.create_task(relay.exchange(
        ctx.config.handoff_socket(slot), request, timeout=timeout, max_body=max_body
    ))

    def done(t: Any) -> None:
        exc = t.exception() if not t.cancelled() else relay.RelayFailed("cancelled")
        if not conn.pending(head):
            return  # the client went away
        if exc is None:
            answer: relay.Answer = t.result()
            ctype = answer.header("content-type")
            extra = "".join(f"{n}: {v}\r\n" for n, v in answer.headers if n in _ANSWER_FIELDS)
            conn.respond(
                answer.status, answer.body,
                content_type=ctype.encode("latin-1") if ctype else writer.JSON_TYPE,
                extra_headers=extra.encode("latin-1"), detail=detail,
            )
        elif isinstance(exc, relay.Unreachable):
            registry = call.registry
            if registry.owners is not None:
                registry.owners.forget(group, name, owner)
            call.fail(InstanceNotFound(
                f"Consumer instance not found: group {group} has no instance named {name} (the "
                f"worker that held it, {slot}, is gone)"
            ), detail)
        elif isinstance(exc, relay.RelayTimeout):
            log.warning("a request for %s handed over to worker %d: no answer within %gs",
                        label, slot, timeout)
            call.fail(HandOffFailed(
                f"worker {slot}, which holds {label}, did not answer within {timeout:g} s: retry"
            ), detail)
        elif isinstance(exc, relay.RelayFailed):
            log.warning("a request for %s handed over to worker %d failed: %s", label, slot, exc)
            call.fail(HandOffFailed(f"worker {slot}, which holds {label}, did not answer: {exc}"),
                      detail)
        else:
            log.error("a request handed over failed", exc_info=exc)
            call.fail(errors.GatewayBug("internal error of the gateway"), detail)

    task.add_done_callback(conn.later(done))


class _SmallBody:
    """Reads a consumer request's body whole (at most MAX_BODY bytes; over it: 413 and the
    connection closes) and hands it on."""

    accepting = True

    def __init__(self, conn: HttpProtocol, then: Callable[[bytes], None]) -> None:
        self._conn = conn
        self._then = then
        self._buf = bytearray()
        self._done = False

    def on_body(self, data: memoryview) -> None:
        if self._done:
            return
        if len(self._buf) + len(data) > MAX_BODY:
            self._done = True
            self._conn.respond_error(errors.PayloadTooLarge(
                f"the request body is over the {MAX_BODY}-byte limit of consumer requests"
            ), close=True)
            return
        self._buf += data

    def on_body_end(self) -> None:
        if not self._done:
            self._done = True
            self._then(bytes(self._buf))

    def on_body_error(self, error: errors.GatewayError) -> None:
        if not self._done:
            self._done = True
            self._conn.respond_error(error, close=True)

    def on_connection_lost(self) -> None:
        self._done = True

    def on_shutdown(self) -> None:
        pass


# -- field checks -------------------------------------------------------------------------
def _int(value: Any, what: str, lo: int, hi: int) -> int:
    """An integer (a JSON number, or a string of digits as Confluent's Jackson also takes)."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.Unprocessable(f"{what} must be an integer, not {json.dumps(value)}")
    if not lo <= value <= hi:
        raise errors.Unprocessable(f"{what} must be between {lo} and {hi}, not {value}")
    return value


def _topic(value: Any, what: str) -> str:
    """A topic name as Kafka allows it (so never one of librdkafka's ``^regex`` subscriptions)."""
    if not isinstance(value, str) or not _TOPIC.fullmatch(value):
        raise errors.Unprocessable(
            f"{what} must be a topic name: 1 to {MAX_TOPIC} of a-z, A-Z, 0-9, '.', '_', '-'"
        )
    return value


def _list(body: dict[str, Any] | None, key: str, example: str) -> list[Any]:
    value = (body or {}).get(key)
    if not isinstance(value, list):
        raise errors.Unprocessable(f'the body must have "{key}": a list, e.g. {example}')
    return value


def _partitions(body: dict[str, Any] | None) -> list[tuple[str, int]]:
    out = []
    for i, item in enumerate(_list(body, "partitions", '{"partitions":[{"topic":"t","partition":0}]}')):
        if not isinstance(item, dict):
            raise errors.Unprocessable(f"partitions[{i}] must be an object with topic and partition")
        out.append((_topic(item.get("topic"), f"partitions[{i}].topic"),
                    _int(item.get("partition"), f"partitions[{i}].partition", 0, MAX_INT32)))
    return out


def _offsets(body: dict[str, Any] | None) -> list[tuple[str, int, int]]:
    out = []
    example = '{"offsets":[{"topic":"t","partition":0,"offset":5}]}'
    for i, item in enumerate(_list(body, "offsets", example)):
        if not isinstance(item, dict):
            raise errors.Unprocessable(f"offsets[{i}] must be an object with topic, partition and offset")
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, str):
            raise errors.Unprocessable(f"offsets[{i}].metadata must be a string")
        out.append((_topic(item.get("topic"), f"offsets[{i}].topic"),
                    _int(item.get("partition"), f"offsets[{i}].partition", 0, MAX_INT32),
                    _int(item.get("offset"), f"offsets[{i}].offset", 0, MAX_OFFSET)))
    return out


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidConsumerConfig(f"Invalid consumer configuration: {what} must be true or false")


def create_settings(body: dict[str, Any] | None) -> tuple[str | None, InstanceSettings]:
    """The instance name (None: generated) and settings of a create body; 422/42204 for a bad
    value or a key neither API knows."""
    body = body or {}
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise InvalidConsumerConfig(
            f"Invalid consumer configuration: unknown key {unknown[0]!r} (known: "
            f"{', '.join(sorted(_CREATE_KEYS))})"
        )
    name = body.get("name")
    if name is None:
        name = body.get("id")  # v1's older key
    if name is not None and not isinstance(name, str):
        raise InvalidConsumerConfig("Invalid consumer configuration: name must be a string")
    fmt = body.get("format", "binary")
    if not isinstance(fmt, str):
        raise InvalidConsumerConfig("Invalid consumer configuration: format must be a string")
    fmt = fmt.lower()
    if fmt in _SCHEMA_FORMATS:
        raise InvalidConsumerConfig(
            f"Invalid consumer configuration: format {fmt} needs a Schema Registry, which this "
            "gateway does not use: use binary or json"
        )
    if fmt not in ("binary", "json", "text"):
        raise InvalidConsumerConfig(
            f"Invalid consumer configuration: format {fmt} is not supported: use binary, json "
            "or text"
        )
    reset = body.get("auto.offset.reset", "latest")
    if not isinstance(reset, str) or reset.lower() not in _RESETS:
        raise InvalidConsumerConfig(
            "Invalid consumer configuration: auto.offset.reset must be earliest, latest or none"
        )
    if "auto.commit.enable" in body and "enable.auto.commit" in body:
        raise InvalidConsumerConfig(
            "Invalid consumer configuration: give auto.commit.enable or enable.auto.commit, not both"
        )
    auto_commit = True
    for key in ("auto.commit.enable", "enable.auto.commit"):
        if body.get(key) is not None:
            auto_commit = _bool(body[key], key)
    min_bytes = body.get("fetch.min.bytes")
    request_timeout = body.get("consumer.request.timeout.ms")
    isolation = body.get("isolation.level")
    if isolation is not None and isolation not in ("read_committed", "read_uncommitted"):
        raise InvalidConsumerConfig(
            "Invalid consumer configuration: isolation.level must be read_committed or "
            "read_uncommitted"
        )
    try:
        # -1 is Confluent's "not set"
        min_bytes = 0 if min_bytes is None else max(0, _int(min_bytes, "fetch.min.bytes", -1, MAX_BYTES))
        request_timeout = DEFAULT_WAIT_MS if request_timeout is None else _int(
            request_timeout, "consumer.request.timeout.ms", 0, MAX_INT32)
    except errors.Unprocessable as exc:
        raise InvalidConsumerConfig(f"Invalid consumer configuration: {exc.message}") from None
    return name, InstanceSettings(
        format=fmt,
        auto_offset_reset=_RESETS[reset.lower()],
        auto_commit=auto_commit,
        fetch_min_bytes=min_bytes,
        request_timeout_ms=min(request_timeout, MAX_WAIT_MS),
        isolation_level=isolation,
    )


def create_dialect(body: dict[str, Any] | None, dialect: str) -> str:
    """The create request's API: v1 by its Content-Type, Strimzi by a key only the bridge knows
    (or its ``text`` format), else Confluent's v2."""
    if dialect == V1:
        return V1
    body = body or {}
    fmt = body.get("format")
    if any(key in body for key in _STRIMZI_KEYS) or (isinstance(fmt, str) and fmt.lower() == "text"):
        return STRIMZI
    return CONFLUENT


def base_uri(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, group: str, name: str) -> str:
    """Where the instance is: ``--advertised-url``, else the listener's scheme and the request's
    Host (the address the connection came in on when there is none, or it is not a host)."""
    base = ctx.config.advertised_url
    if base is None:
        scheme = "https" if ctx.config.tls_cert is not None else "http"
        host = head.header("host")
        if not host or not _HOST.fullmatch(host):
            local_host, port = conn.local_address() or ctx.config.listen
            host = f"[{local_host}]:{port}" if ":" in local_host else f"{local_host}:{port}"
        base = f"{scheme}://{host}"
    return f"{base}/consumers/{quote(group, safe='')}/instances/{quote(name, safe='')}"


def _query(head: RequestHead) -> dict[str, str]:
    return query_params(head.query)


def _query_int(query: dict[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"-?[0-9]{1,19}", text):
        raise errors.BadRequest(f"{name} must be an integer, not {value!r}")
    return int(text)


def _records_type(call: Call, version: int) -> bytes:
    """The answer type of a records read, after Accept: 406/40601 when it asks for another
    embedded format than the instance's, 406 when it takes none of the answer's types."""
    inst = call.instance
    accept = call.head.joined("accept")
    embedded = f"application/vnd.kafka.{inst.format}.v{version}+json"
    if accept:
        asked = {m.group(1) for media, q in accept_ranges(accept) if q > 0
                 and (m := _EMBEDDED.fullmatch(media)) is not None}
        if asked and inst.format not in asked:
            raise errors.NotAcceptable(
                "Consumer format does not match the embedded format requested by the Accept "
                f"header: {inst.label} is {inst.format} (asked: {', '.join(sorted(asked))})",
                error_code=40601,
            )
    offers = (embedded, f"application/vnd.kafka.v{version}+json", "application/vnd.kafka+json",
              "application/json")
    return choose(offers, accept).encode()


# -- the operations -------------------------------------------------------------------------
async def _create(call: Call) -> Answer:
    body = call.json()
    call.dialect = create_dialect(body, call.dialect)
    name, settings = create_settings(body)
    group = call.params["group"]
    inst = await call.registry.create(group, name, call.conn.principal, call.dialect, settings)
    return call.ok({"instance_id": inst.name,
                    "base_uri": base_uri(call.ctx, call.conn, call.head, group, inst.name)})


async def _delete(call: Call) -> Answer:
    await call.registry.delete(call.instance)
    return 204, b"", call.answer_type


async def _subscribe(call: Call) -> Answer:
    body = call.json() or {}
    topics = body.get("topics")
    pattern = body.get("topic_pattern")
    if topics is not None and pattern is not None:
        raise StateConflict(
            "Illegal state: subscription to topics, partitions and pattern are mutually "
            "exclusive: give topics or topic_pattern"
        )
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise errors.Unprocessable("topic_pattern must be a regular expression")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise errors.Unprocessable(f"topic_pattern is not a regular expression: {exc}") from None
        call.may_consume_any_topic()
        await call.instance.subscribe((), pattern)
        return 204, b"", call.answer_type
    if not isinstance(topics, list) or not topics:
        raise errors.Unprocessable(
            'A list (of Topics type) or a topic_pattern must be specified: {"topics":["t"]}'
        )
    names = [_topic(t, f"topics[{i}]") for i, t in enumerate(topics)]
    call.may_consume(names)
    await call.instance.subscribe(names, None)
    return 204, b"", call.answer_type


async def _subscription(call: Call) -> Answer:
    inst = call.instance
    assigned: list[tuple[str, int]] = []
    if inst.mode is not SUBSCRIBED:
        topics: list[str] = []
    elif inst.pattern is None and call.dialect != STRIMZI:
        return call.ok({"topics": list(inst.topics)})
    else:
        assigned = await inst.assignment()
        # A pattern's topics: those of its partitions now (the group's share of the matches).
        topics = sorted({t for t, _ in assigned}) if inst.pattern is not None else list(inst.topics)
    if call.dialect != STRIMZI:
        return call.ok({"topics": topics})
    by_topic: dict[str, list[int]] = {}
    for t, p in assigned:
        by_topic.setdefault(t, []).append(p)
    return call.ok({"topics": topics, "partitions": [{t: ps} for t, ps in by_topic.items()]})


async def _unsubscribe(call: Call) -> Answer:
    await call.instance.unsubscribe()
    return 204, b"", call.answer_type


async def _assign(call: Call) -> Answer:
    partitions = _partitions(call.json())
    call.may_consume(t for t, _ in partitions)
    await call.instance.assign(partitions)
    return 204, b"", call.answer_type


async def _assignment(call: Call) -> Answer:
    assigned = await call.instance.assignment()
    return call.ok({"partitions": [{"topic": t, "partition": p} for t, p in assigned]})


async def _seek(call: Call) -> Answer:
    offsets = _offsets(call.json())
    call.may_consume(t for t, _, _ in offsets)
    await call.instance.seek(offsets)
    return 204, b"", call.answer_type


def _seek_to(offset: int) -> Operation:
    async def seek(call: Call) -> Answer:
        partitions = _partitions(call.json())
        call.may_consume(t for t, _ in partitions)
        await call.instance.seek([(t, p, offset) for t, p in partitions])
        return 204, b"", call.answer_type

    return seek


def _wait_ms(call: Call, query: dict[str, str]) -> int:
    """How long a read waits for records: ``timeout``, at most the instance's
    ``consumer.request.timeout.ms`` in Confluent's API (the bridge: ``timeout`` alone), and
    never more than MAX_WAIT_MS."""
    inst = call.instance
    limit = inst.settings.request_timeout_ms
    timeout = _query_int(query, "timeout")
    if timeout is None or timeout < 0:
        return min(limit, MAX_WAIT_MS)
    if call.dialect == STRIMZI:
        return min(timeout, MAX_WAIT_MS)
    return min(timeout, limit, MAX_WAIT_MS)


def _max_bytes(query: dict[str, str]) -> int:
    max_bytes = _query_int(query, "max_bytes")
    if max_bytes is None or max_bytes <= 0:
        return MAX_BYTES
    return min(max_bytes, MAX_BYTES)


async def _records(call: Call) -> Answer:
    inst = call.instance
    query = _query(call.head)
    wait = _wait_ms(call, query)
    max_bytes = _max_bytes(query)
    content_type = _records_type(call, 2)
    call.may_read()
    api = STRIMZI if call.dialect == STRIMZI else CONFLUENT
    fmt = call.registry.format_code(_RECORD_FORMATS[(api, inst.format)])
    data, _n = await inst.fetch(fmt, max_bytes, wait)
    return 200, data, content_type


async def _read_v1(call: Call) -> Answer:
    inst = call.instance
    query = _query(call.head)
    max_bytes = _max_bytes(query)
    content_type = _records_type(call, 1)
    if (V1, inst.format) not in _RECORD_FORMATS:
        raise errors.NotAcceptable(
            f"{inst.label} has the bridge's {inst.format} format, which v1 cannot carry: read "
            "it with GET .../records", error_code=40601)
    fmt = call.registry.format_code(_RECORD_FORMATS[(V1, inst.format)])
    wait = min(inst.settings.request_timeout_ms, MAX_WAIT_MS)
    data, _n = await inst.read_topic(call.params["topic"], fmt, max_bytes, wait)
    return 200, data, content_type


async def _commit(call: Call) -> Answer:
    body = call.json()
    inst = call.instance
    asynchronous = _query(call.head).get("async", "false").lower() == "true"
    if body is None or body.get("offsets") is None:
        committed = await inst.commit(None, asynchronous)
    else:
        offsets = _offsets(body)
        call.may_consume(t for t, _, _ in offsets)
        if call.dialect != STRIMZI:
            # Confluent's consumer commits the offset after the one named (its last record's).
            offsets = [(t, p, min(o + 1, MAX_OFFSET)) for t, p, o in offsets]
        committed = await inst.commit(offsets, asynchronous) if offsets else []
    if call.dialect == STRIMZI:
        return 204, b"", call.answer_type
    return call.ok([{"topic": t, "partition": p, "consumed": o - 1, "committed": o - 1}
                    for t, p, o in committed])


async def _committed(call: Call) -> Answer:
    body = call.json()
    if body is None:
        raise errors.PartitionNotFound(
            'Partition not found: name the partitions in the body: {"partitions":[{"topic":"t","partition":0}]}'
        )
    partitions = _partitions(body)
    call.may_consume(t for t, _ in partitions)
    found = await call.instance.committed(partitions) if partitions else []
    return call.ok({"offsets": [
        {"topic": t, "partition": p, "offset": o, "metadata": m}
        for t, p, o, m in found if o != OFFSET_INVALID
    ]})


_READS: frozenset[Operation] = frozenset({_records, _read_v1})  # answers of up to max_bytes

on_create = _endpoint(_create, instance=False)
on_delete = _endpoint(_delete)
on_subscribe = _endpoint(_subscribe)
on_subscription = _endpoint(_subscription)
on_unsubscribe = _endpoint(_unsubscribe)
on_assign = _endpoint(_assign)
on_assignment = _endpoint(_assignment)
on_seek = _endpoint(_seek)
on_seek_beginning = _endpoint(_seek_to(OFFSET_BEGINNING))
on_seek_end = _endpoint(_seek_to(OFFSET_END))
on_records = _endpoint(_records)
on_read_v1 = _endpoint(_read_v1)
on_commit = _endpoint(_commit)
on_committed = _endpoint(_committed)

