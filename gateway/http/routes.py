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

Route = tuple[dict[str, str], dict[str, str]]  # (method -> endpoint, path parameters)

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
            return {"GET": TOPIC, "POST": PRODUCE_V1}, {"topic": topic}
        if parts[3] != "partitions":
            return None
        if n == 4:
            return {"GET": PARTITIONS}, {"topic": topic}
        params = {"topic": topic, "partition": unquote(parts[4])}
        if n == 5 and parts[4]:
            return {"GET": PARTITION_OR_CONSUME, "POST": PRODUCE_V1}, params
        if n == 6 and parts[4] and parts[5] == "messages":
            return {"GET": CONSUME_V1}, params
        return None
    if n == 5 and parts[1] == "consume" and parts[2] and parts[3] == "partitions" and parts[4]:
        return {"GET": CONSUME_V1}, {"topic": unquote(parts[2]), "partition": unquote(parts[4])}
    # ['', 'kafka', 'v3', 'clusters', C, ...] or without 'kafka'
    if parts[1:2] == ["kafka"]:
        parts = parts[1:]
        n -= 1
    if n < 4 or parts[1] != "v3" or parts[2] != "clusters" or not parts[3]:
        return None
    cluster = {"cluster_id": unquote(parts[3])}
    if n == 4:
        return {"GET": CLUSTER}, cluster
    collection = parts[4]
    if collection == "brokers":
        if n == 5:
            return {"GET": V3_BROKERS}, cluster
        if n == 6 and parts[5]:
            return {"GET": V3_BROKER}, {**cluster, "broker_id": unquote(parts[5])}
        return None
    if collection != "topics":
        return None
    if n == 5:
        return {"GET": V3_TOPICS}, cluster
    if not parts[5]:
        return None
    params = {**cluster, "topic": unquote(parts[5])}
    if n == 6:
        return {"GET": V3_TOPIC}, params
    if n == 7:
        if parts[6] == "records":
            return {"POST": PRODUCE_V3}, params
        if parts[6] == "records:batch":
            return {"POST": PRODUCE_V3_BATCH}, params
        if parts[6] == "records:stream":
            return {"GET": CONSUME_STREAM}, params
        if parts[6] == "partitions":
            return {"GET": V3_PARTITIONS}, params
        return None
    if n == 8 and parts[6] == "partitions" and parts[7]:
        return {"GET": V3_PARTITION}, {**params, "partition": unquote(parts[7])}
    return None
