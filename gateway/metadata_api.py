"""The metadata reads Confluent clients call, answered as Confluent's REST Proxy answers them:
``GET /topics``, ``/topics/{t}``, ``/topics/{t}/partitions``, ``/topics/{t}/partitions/{p}``,
``/brokers`` (v2 shapes) and ``GET /v3/clusters`` (v3 resource shape).

Everything comes from the gateway's metadata cache (a full listing that never creates topics).
Listings refresh it first (shared and rate-limited, see MetadataCache.refresh_for_miss) so a
topic created a moment ago shows up; a topic lookup refreshes only when the cache misses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.kafka.metadata import ClusterInfo, MetadataCache, PartitionInfo

if TYPE_CHECKING:
    from gateway.http.parser import RequestHead

V2_TYPE = b"application/vnd.kafka.v2+json"
JSON_TYPE = b"application/json"


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def partition_doc(p: PartitionInfo) -> dict[str, Any]:
    return {
        "partition": p.partition,
        "leader": p.leader,
        "replicas": [
            {"broker": b, "leader": b == p.leader, "in_sync": b in p.in_sync} for b in p.replicas
        ],
    }


async def fresh_info(metadata: MetadataCache) -> ClusterInfo:
    await metadata.refresh_for_miss()
    info = metadata.info
    if info is None:
        raise errors.KafkaUnavailable(
            f"the Kafka cluster cannot be reached: {metadata.last_error or 'no metadata'}"
        )
    return info


async def topic_partitions(metadata: MetadataCache, topic: str) -> tuple[PartitionInfo, ...]:
    info = metadata.info
    if info is None or info.partitions is None or topic not in info.partitions:
        info = await fresh_info(metadata)
    parts = (info.partitions or {}).get(topic)
    if parts is None:
        raise errors.TopicNotFound("Topic not found.")
    return parts


def parse_partition(text: str, parts: tuple[PartitionInfo, ...]) -> PartitionInfo:
    if text.isdigit() and text.isascii():
        index = int(text)
        for p in parts:
            if p.partition == index:
                return p
    raise errors.PartitionNotFound("Partition not found.")


async def list_topics(
    metadata: MetadataCache, visible: Callable[[str], bool] | None = None
) -> tuple[bytes, bytes]:
    """Every topic's name, or those ``visible`` accepts (the ACL's view of a principal)."""
    info = await fresh_info(metadata)
    names = info.topics if visible is None else [t for t in info.topics if visible(t)]
    return V2_TYPE, dumps(sorted(names))


async def get_topic(metadata: MetadataCache, topic: str, loop: asyncio.AbstractEventLoop) -> tuple[bytes, bytes]:
    parts = await topic_partitions(metadata, topic)
    configs = await loop.run_in_executor(None, _topic_configs, metadata, topic)
    return V2_TYPE, dumps(
        {"name": topic, "configs": configs, "partitions": [partition_doc(p) for p in parts]}
    )


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


async def get_partitions(metadata: MetadataCache, topic: str) -> tuple[bytes, bytes]:
    parts = await topic_partitions(metadata, topic)
    return V2_TYPE, dumps([partition_doc(p) for p in parts])


async def get_partition(metadata: MetadataCache, topic: str, partition: str) -> tuple[bytes, bytes]:
    parts = await topic_partitions(metadata, topic)
    return V2_TYPE, dumps(partition_doc(parse_partition(partition, parts)))


async def list_brokers(metadata: MetadataCache) -> tuple[bytes, bytes]:
    info = await fresh_info(metadata)
    return V2_TYPE, dumps({"brokers": list(info.brokers)})


def base_url(head: RequestHead) -> str:
    host = head.header("host") or "localhost"
    prefix = "/kafka/v3" if head.path.startswith("/kafka/") else "/v3"
    return f"http://{host}{prefix}"


def cluster_doc(info: ClusterInfo, base: str) -> dict[str, Any]:
    me = f"{base}/clusters/{info.cluster_id}"
    return {
        "kind": "KafkaCluster",
        "metadata": {"self": me, "resource_name": f"crn:///kafka={info.cluster_id}"},
        "cluster_id": info.cluster_id,
        "controller": {"related": f"{me}/brokers/{info.controller}"} if info.controller >= 0 else None,
        "brokers": {"related": f"{me}/brokers"},
        "topics": {"related": f"{me}/topics"},
    }


async def list_clusters(metadata: MetadataCache, head: RequestHead) -> tuple[bytes, bytes]:
    info = await fresh_info(metadata)
    base = base_url(head)
    return JSON_TYPE, dumps(
        {
            "kind": "KafkaClusterList",
            "metadata": {"self": f"{base}/clusters", "next": None},
            "data": [cluster_doc(info, base)],
        }
    )


async def get_cluster(metadata: MetadataCache, head: RequestHead, cluster_id: str) -> tuple[bytes, bytes]:
    info = await fresh_info(metadata)
    if cluster_id != info.cluster_id:
        raise errors.NotFound(f"Cluster {cluster_id} cannot be found.")
    return JSON_TYPE, dumps(cluster_doc(info, base_url(head)))
