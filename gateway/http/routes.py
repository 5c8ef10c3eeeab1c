"""URL routing: which endpoint a request path and method name (knows HTTP paths, not Kafka)."""

from __future__ import annotations

from urllib.parse import unquote

# Endpoint names.
PRODUCE_V3 = "produce_v3"
PRODUCE_V3_BATCH = "produce_v3_batch"
CONSUME_STREAM = "consume_stream"  # GET /v3/clusters/{c}/topics/{t}/records:stream
PRODUCE_V1 = "produce_v1"  # POST /topics/{t} and /topics/{t}/partitions/{p} (v1 and v2 bodies)
CONSUME_V1 = "consume_v1"
PARTITION_OR_CONSUME = "partition_or_consume"  # GET /topics/{t}/partitions/{p}[?offset=N]
TOPICS = "topics"
TOPIC = "topic"
PARTITIONS = "partitions"
BROKERS = "brokers"
CLUSTERS = "clusters"
CLUSTER = "cluster"
V3_BROKERS = "v3_brokers"
V3_BROKER = "v3_broker"
V3_TOPICS = "v3_topics"
V3_TOPIC = "v3_topic"
V3_PARTITIONS = "v3_partitions"
V3_PARTITION = "v3_partition"
ROOT = "root"
HEALTHZ = "healthz"
READYZ = "readyz"
METRICS = "metrics"
NOT_FOUND = "not_found"  # no route: the name requests are counted under (never dispatched)
# Consumer instances (Confluent's v2 consumer API, the Strimzi bridge's, Confluent's v1 read).
CONSUMER_CREATE = "consumer_create"  # POST /consumers/{group}
CONSUMER_DELETE = "consumer_delete"  # DELETE /consumers/{group}/instances/{instance}
CONSUMER_SUBSCRIBE = "consumer_subscribe"  # POST .../subscription
CONSUMER_SUBSCRIPTION = "consumer_subscription"  # GET .../subscription
CONSUMER_UNSUBSCRIBE = "consumer_unsubscribe"  # DELETE .../subscription
CONSUMER_ASSIGN = "consumer_assign"  # POST .../assignments
CONSUMER_ASSIGNMENT = "consumer_assignment"  # GET .../assignments
CONSUMER_SEEK = "consumer_seek"  # POST .../positions
CONSUMER_SEEK_BEGINNING = "consumer_seek_beginning"  # POST .../positions/beginning
CONSUMER_SEEK_END = "consumer_seek_end"  # POST .../positions/end
CONSUMER_RECORDS = "consumer_records"  # GET .../records
CONSUMER_COMMIT = "consumer_commit"  # POST .../offsets
CONSUMER_COMMITTED = "consumer_committed"  # GET .../offsets
CONSUMER_READ_V1 = "consumer_read_v1"  # GET .../topics/{topic} (Confluent v1)
CONSUMER_ENDPOINTS = frozenset({
    CONSUMER_CREATE, CONSUMER_DELETE, CONSUMER_SUBSCRIBE, CONSUMER_SUBSCRIPTION,
    CONSUMER_UNSUBSCRIBE, CONSUMER_ASSIGN, CONSUMER_ASSIGNMENT, CONSUMER_SEEK,
    CONSUMER_SEEK_BEGINNING, CONSUMER_SEEK_END, CONSUMER_RECORDS, CONSUMER_COMMIT,
    CONSUMER_COMMITTED, CONSUMER_READ_V1,
})

Route = tuple[dict[str, str], dict[str, str]]  # (method -> endpoint, path parameters)

# The method maps, built once: a route hands out these very dicts (read-only).
_GET_TOPIC = {"GET": TOPIC, "POST": PRODUCE_V1}
_GET_PARTITIONS = {"GET": PARTITIONS}
_GET_PARTITION = {"GET": PARTITION_OR_CONSUME, "POST": PRODUCE_V1}
_GET_CONSUME_V1 = {"GET": CONSUME_V1}
_GET_CLUSTER = {"GET": CLUSTER}
_GET_V3_BROKERS = {"GET": V3_BROKERS}
_GET_V3_BROKER = {"GET": V3_BROKER}
_GET_V3_TOPICS = {"GET": V3_TOPICS}
_GET_V3_TOPIC = {"GET": V3_TOPIC}
_POST_PRODUCE_V3 = {"POST": PRODUCE_V3}
_POST_PRODUCE_V3_BATCH = {"POST": PRODUCE_V3_BATCH}
_GET_CONSUME_STREAM = {"GET": CONSUME_STREAM}
_GET_V3_PARTITIONS = {"GET": V3_PARTITIONS}
_GET_V3_PARTITION = {"GET": V3_PARTITION}
_POST_CONSUMER_CREATE = {"POST": CONSUMER_CREATE}
_DELETE_CONSUMER = {"DELETE": CONSUMER_DELETE}
_GET_CONSUMER_READ_V1 = {"GET": CONSUMER_READ_V1}
_V3_COLLECTION = {
    "records": _POST_PRODUCE_V3,
    "records:batch": _POST_PRODUCE_V3_BATCH,
    "records:stream": _GET_CONSUME_STREAM,
    "partitions": _GET_V3_PARTITIONS,
}

# Under /consumers/{group}/instances/{instance}/: the methods of each sub-path.
_INSTANCE: dict[str, dict[str, str]] = {
    "subscription": {"POST": CONSUMER_SUBSCRIBE, "GET": CONSUMER_SUBSCRIPTION,
                     "DELETE": CONSUMER_UNSUBSCRIBE},
    "assignments": {"POST": CONSUMER_ASSIGN, "GET": CONSUMER_ASSIGNMENT},
    "positions": {"POST": CONSUMER_SEEK},
    "records": {"GET": CONSUMER_RECORDS},
    "offsets": {"POST": CONSUMER_COMMIT, "GET": CONSUMER_COMMITTED},
}
_POSITIONS = {"beginning": CONSUMER_SEEK_BEGINNING, "end": CONSUMER_SEEK_END}
_POSITION_METHODS = {name: {"POST": endpoint} for name, endpoint in _POSITIONS.items()}

_STATIC: dict[str, dict[str, str]] = {
    "/": {"GET": ROOT},
    "/healthz": {"GET": HEALTHZ},
    "/readyz": {"GET": READYZ},
    "/metrics": {"GET": METRICS},
    "/topics": {"GET": TOPICS},
    "/brokers": {"GET": BROKERS},
    "/v3/clusters": {"GET": CLUSTERS},
    "/kafka/v3/clusters": {"GET": CLUSTERS},
}


# Paths served without authentication (README "Security"): liveness, readiness and metrics
# are for load balancers and scrapers, and reveal nothing of the data.
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics"})


# Paths resolved before, with their routes: keep-alive clients repeat a few paths, and a dict
# hit costs less than splitting and unquoting the path again. A route is shared by every
# request of its path: its dicts are read-only (an endpoint never changes its parameters).
# Bounded in entries and in path length, so that a peer sending random paths cannot grow it;
# past the bound the oldest entry goes. Unknown paths are not kept.
_CACHE: dict[str, Route] = {}
CACHE_MAX = 2048
CACHE_MAX_PATH = 512


def lookup(path: str) -> Route | None:
    """``match(path)``, from the cache of paths seen before."""
    found = _CACHE.get(path)
    if found is None:
        found = match(path)
        if found is not None and len(path) <= CACHE_MAX_PATH:
            if len(_CACHE) >= CACHE_MAX:
                del _CACHE[next(iter(_CACHE))]
            _CACHE[path] = found
    return found


def match(path: str) -> Route | None:
    """The endpoints ``path`` names, by method, with its parameters; None for an unknown path
    (404). A known path whose method is missing from the map is a 405."""
    static = _STATIC.get(path)
    if static is not None:
        return static, {}
    parts = path.split("/")
    n = len(parts)
    if n >= 3 and parts[1] == "topics" and parts[2]:
        topic = unquote(parts[2])
        if n == 3:
            return _GET_TOPIC, {"topic": topic}
        if parts[3] != "partitions":
            return None
        if n == 4:
            return _GET_PARTITIONS, {"topic": topic}
        params = {"topic": topic, "partition": unquote(parts[4])}
        if n == 5 and parts[4]:
            return _GET_PARTITION, params
        if n == 6 and parts[4] and parts[5] == "messages":
            return _GET_CONSUME_V1, params
        return None
    if n == 5 and parts[1] == "consume" and parts[2] and parts[3] == "partitions" and parts[4]:
        return _GET_CONSUME_V1, {"topic": unquote(parts[2]), "partition": unquote(parts[4])}
    if parts[1] == "consumers":
        return _consumers(parts, n)
    # ['', 'kafka', 'v3', 'clusters', C, ...] or without 'kafka'
    if parts[1:2] == ["kafka"]:
        parts = parts[1:]
        n -= 1
    if n < 4 or parts[1] != "v3" or parts[2] != "clusters" or not parts[3]:
        return None
    cluster = {"cluster_id": unquote(parts[3])}
    if n == 4:
        return _GET_CLUSTER, cluster
    collection = parts[4]
    if collection == "brokers":
        if n == 5:
            return _GET_V3_BROKERS, cluster
        if n == 6 and parts[5]:
            return _GET_V3_BROKER, {**cluster, "broker_id": unquote(parts[5])}
        return None
    if collection != "topics":
        return None
    if n == 5:
        return _GET_V3_TOPICS, cluster
    if not parts[5]:
        return None
    params = {**cluster, "topic": unquote(parts[5])}
    if n == 6:
        return _GET_V3_TOPIC, params
    if n == 7:
        methods = _V3_COLLECTION.get(parts[6])
        return (methods, params) if methods is not None else None
    if n == 8 and parts[6] == "partitions" and parts[7]:
        return _GET_V3_PARTITION, {**params, "partition": unquote(parts[7])}
    return None


def _consumers(parts: list[str], n: int) -> Route | None:
    """``/consumers/{group}[/instances/{instance}[/...]]``."""
    if n < 3 or not parts[2]:
        return None
    group = {"group": unquote(parts[2])}
    if n == 3 or (n == 4 and not parts[3]):  # (Confluent's own example ends with a '/')
        return _POST_CONSUMER_CREATE, group
    if parts[3] != "instances" or n < 5 or not parts[4]:
        return None
    params = {**group, "instance": unquote(parts[4])}
    if n == 5:
        return _DELETE_CONSUMER, params
    sub = parts[5]
    if n == 6:
        methods = _INSTANCE.get(sub)
        return (methods, params) if methods is not None else None
    if n == 7 and sub == "positions" and parts[6] in _POSITIONS:
        return _POSITION_METHODS[parts[6]], params
    if n == 7 and sub == "topics" and parts[6]:
        return _GET_CONSUMER_READ_V1, {**params, "topic": unquote(parts[6])}
    return None
