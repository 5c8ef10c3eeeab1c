"""The metadata reads Confluent clients call, answered as Confluent's REST Proxy answers them:
``GET /topics``, ``/topics/{t}``, ``/topics/{t}/partitions``, ``/topics/{t}/partitions/{p}``,
``/brokers`` (v2 shapes), and the v3 resources ``GET /v3/clusters`` and, under
``/v3/clusters/{cluster_id}``, the cluster, its brokers, topics and partitions (docs/api.md §4).

Everything comes from the gateway's metadata cache (a full listing that never creates topics).
Listings refresh it first (shared and rate-limited, see MetadataCache.refresh_for_miss) so a
topic created a moment ago shows up; a topic lookup refreshes only when the cache misses.

The v3 resources link only to resources the gateway serves (``related`` URLs), built from the
request's ``Host`` and path prefix (``/v3`` or ``/kafka/v3``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from gateway import errors
from gateway.api.common import run_request
from gateway.api.context import ApiContext
from gateway.auth.acl import ANY
from gateway.http.parser import RequestHead
from gateway.http.protocol import HttpProtocol
from gateway.kafka.metadata import ClusterInfo, MetadataCache, PartitionInfo

V2_TYPE = b"application/vnd.kafka.v2+json"
JSON_TYPE = b"application/json"

Answer = tuple[bytes, bytes]


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _visible(ctx: ApiContext, conn: HttpProtocol) -> Callable[[str], bool] | None:
    """Which topics the caller may see in a listing: those it has some permission on (as
    Kafka's own listing shows only the topics a client may describe); None: all."""
    auth = ctx.auth
    principal = conn.principal
    if principal is None or auth is None or auth.acl is None:
        return None
    return lambda topic: auth.allows(principal, ANY, topic)


def _topics(info: ClusterInfo, visible: Callable[[str], bool] | None) -> list[str]:
    return sorted(t for t in info.topics if visible is None or visible(t))


def _partition(parts: tuple[PartitionInfo, ...], text: str) -> PartitionInfo:
    if text.isdigit() and text.isascii():
        index = int(text)
        for p in parts:
            if p.partition == index:
                return p
    raise errors.PartitionNotFound(f"partition {text} not found")


# -- v2 shapes -----------------------------------------------------------------------------

def _partition_v2(p: PartitionInfo) -> dict[str, Any]:
    return {
        "partition": p.partition,
        "leader": p.leader,
        "replicas": [
            {"broker": b, "leader": b == p.leader, "in_sync": b in p.in_sync} for b in p.replicas
        ],
    }


def on_topics(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    visible = _visible(ctx, conn)

    async def answer() -> Answer:
        info = await ctx.metadata.fresh()
        return V2_TYPE, dumps(_topics(info, visible))

    run_request(ctx, conn, head, answer())


def on_topic(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    topic = params["topic"]
    md = ctx.metadata

    async def answer() -> Answer:
        parts = await md.topic_partitions(topic)
        configs = await ctx.loop.run_in_executor(None, _topic_configs, md, topic)
        return V2_TYPE, dumps(
            {"name": topic, "configs": configs, "partitions": [_partition_v2(p) for p in parts]}
        )

    run_request(ctx, conn, head, answer())


def _topic_configs(metadata: MetadataCache, topic: str) -> dict[str, str | None]:
    """Topic configuration from describe_configs (blocking: runs on a worker thread). Some
    brokers answer only the keys set explicitly; an error leaves the configs empty, as the
    partitions are still worth answering."""
    from confluent_kafka.admin import ConfigResource

    try:
        futures = metadata.admin.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, topic)], request_timeout=metadata.request_timeout
        )
        (fut,) = futures.values()
        entries = fut.result(timeout=metadata.request_timeout)
    except Exception:  # noqa: BLE001 - configs are best effort
        return {}
    return {name: entry.value for name, entry in sorted(entries.items())}


def on_partitions(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    async def answer() -> Answer:
        parts = await ctx.metadata.topic_partitions(params["topic"])
        return V2_TYPE, dumps([_partition_v2(p) for p in parts])

    run_request(ctx, conn, head, answer())


def on_partition(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    async def answer() -> Answer:
        parts = await ctx.metadata.topic_partitions(params["topic"])
        return V2_TYPE, dumps(_partition_v2(_partition(parts, params["partition"])))

    run_request(ctx, conn, head, answer())


def on_brokers(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    async def answer() -> Answer:
        info = await ctx.metadata.fresh()
        return V2_TYPE, dumps({"brokers": list(info.brokers)})

    run_request(ctx, conn, head, answer())


# -- v3 resources ----------------------------------------------------------------------------

def _base_url(head: RequestHead) -> str:
    host = head.header("host") or "localhost"
    prefix = "/kafka/v3" if head.path.startswith("/kafka/") else "/v3"
    return f"http://{host}{prefix}"


def _resource(kind: str, url: str, crn: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"self": url, "resource_name": crn}, **fields}


def _listing(kind: str, url: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"self": url, "next": None}, "data": data}


class _V3:
    """URLs and documents of one cluster's v3 resources, for one request."""

    def __init__(self, info: ClusterInfo, head: RequestHead) -> None:
        self.info = info
        self.cluster = info.cluster_id
        self.url = f"{_base_url(head)}/clusters/{info.cluster_id}"
        self.crn = f"crn:///kafka={info.cluster_id}"

    def cluster_doc(self) -> dict[str, Any]:
        controller = self.info.controller
        return _resource(
            "KafkaCluster", self.url, self.crn,
            cluster_id=self.cluster,
            controller={"related": f"{self.url}/brokers/{controller}"} if controller >= 0 else None,
            brokers={"related": f"{self.url}/brokers"},
            topics={"related": f"{self.url}/topics"},
        )

    def broker_doc(self, broker: int) -> dict[str, Any]:
        host, port = (self.info.broker_addresses or {}).get(broker, (None, None))
        return _resource(
            "KafkaBroker", f"{self.url}/brokers/{broker}", f"{self.crn}/broker={broker}",
            cluster_id=self.cluster, broker_id=broker, host=host, port=port, rack=None,
        )

    def topic_doc(self, topic: str) -> dict[str, Any]:
        parts = (self.info.partitions or {}).get(topic, ())
        url = f"{self.url}/topics/{topic}"
        return _resource(
            "KafkaTopic", url, f"{self.crn}/topic={topic}",
            cluster_id=self.cluster,
            topic_name=topic,
            is_internal=False,
            replication_factor=len(parts[0].replicas) if parts else 0,
            partitions_count=self.info.topics.get(topic, 0),
            partitions={"related": f"{url}/partitions"},
        )

    def partition_doc(self, topic: str, p: PartitionInfo) -> dict[str, Any]:
        url = f"{self.url}/topics/{topic}/partitions/{p.partition}"
        return _resource(
            "KafkaPartition", url, f"{self.crn}/topic={topic}/partition={p.partition}",
            cluster_id=self.cluster,
            topic_name=topic,
            partition_id=p.partition,
            leader={"related": f"{self.url}/brokers/{p.leader}"} if p.leader >= 0 else None,
        )


async def _cluster(ctx: ApiContext, head: RequestHead, cluster_id: str, listing: bool) -> _V3:
    """The cluster the URL names (404 for another): after a refresh for a listing, from the
    cache for a lookup by name (which refreshes on a miss, as the v2 reads do)."""
    md = ctx.metadata
    info = md.info if not listing and md.info is not None else await md.fresh()
    if cluster_id != info.cluster_id:
        raise errors.NotFound(f"Cluster {cluster_id} cannot be found.")
    return _V3(info, head)


V3Doc = Callable[[ApiContext, _V3, dict[str, str]], Awaitable[dict[str, Any]]]


def _v3_endpoint(
    build: V3Doc, *, listing: bool = False
) -> Callable[[ApiContext, HttpProtocol, RequestHead, dict[str, str]], None]:
    """An endpoint answering one document of the cluster the URL names (404 for another)."""

    def endpoint(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
        async def answer() -> Answer:
            v3 = await _cluster(ctx, head, params["cluster_id"], listing)
            return JSON_TYPE, dumps(await build(ctx, v3, params))

        run_request(ctx, conn, head, answer())

    return endpoint


def on_clusters(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    async def answer() -> Answer:
        v3 = _V3(await ctx.metadata.fresh(), head)
        return JSON_TYPE, dumps(_listing("KafkaClusterList", f"{_base_url(head)}/clusters", [v3.cluster_doc()]))

    run_request(ctx, conn, head, answer())


async def _cluster_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    return v3.cluster_doc()


async def _brokers_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    return _listing("KafkaBrokerList", f"{v3.url}/brokers", [v3.broker_doc(b) for b in v3.info.brokers])


async def _broker_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    text = params["broker_id"]
    broker = int(text) if text.isascii() and text.isdigit() else -1
    if broker not in v3.info.brokers:
        v3.info = await ctx.metadata.fresh()  # a broker added since: refresh once on a miss
    if broker not in v3.info.brokers:
        raise errors.NotFound(f"Broker {text} cannot be found.")
    return v3.broker_doc(broker)


def on_v3_topics(ctx: ApiContext, conn: HttpProtocol, head: RequestHead, params: dict[str, str]) -> None:
    visible = _visible(ctx, conn)

    async def topics(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
        docs = [v3.topic_doc(t) for t in _topics(v3.info, visible)]
        return _listing("KafkaTopicList", f"{v3.url}/topics", docs)

    _v3_endpoint(topics, listing=True)(ctx, conn, head, params)


async def _topic_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    topic = params["topic"]
    await ctx.metadata.topic_partitions(topic)  # 404 for an unknown topic (after a refresh)
    v3.info = ctx.metadata.info or v3.info
    return v3.topic_doc(topic)


async def _partitions_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    topic = params["topic"]
    docs = [v3.partition_doc(topic, p) for p in await ctx.metadata.topic_partitions(topic)]
    return _listing("KafkaPartitionList", f"{v3.url}/topics/{topic}/partitions", docs)


async def _partition_doc(ctx: ApiContext, v3: _V3, params: dict[str, str]) -> dict[str, Any]:
    topic = params["topic"]
    parts = await ctx.metadata.topic_partitions(topic)
    return v3.partition_doc(topic, _partition(parts, params["partition"]))


on_cluster = _v3_endpoint(_cluster_doc, listing=True)
on_v3_brokers = _v3_endpoint(_brokers_doc, listing=True)
on_v3_broker = _v3_endpoint(_broker_doc)
on_v3_topic = _v3_endpoint(_topic_doc)
on_v3_partitions = _v3_endpoint(_partitions_doc)
on_v3_partition = _v3_endpoint(_partition_doc)
