"""Metadata reads as Confluent's REST Proxy answers them, against the real broker."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from support.http import request


def get(gateway, path: str):
    return request(gateway.host, gateway.port, "GET", path)


def test_topics_lists_names_including_a_topic_created_a_moment_ago(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    r = get(gateway, "/topics")
    assert r.status == 200
    assert r.header("content-type") == "application/vnd.kafka.v2+json"
    names = r.json()
    assert topic in names and names == sorted(names)
    assert all(not n.startswith("__") for n in names)


def test_topic_and_partitions(gateway, topic_factory) -> None:
    topic = topic_factory(3)
    md = AdminClient({"bootstrap.servers": gateway.bootstrap}).list_topics(timeout=5)
    leader = md.topics[topic].partitions[0].leader
    expected = [
        {"partition": p, "leader": leader, "replicas": [{"broker": leader, "leader": True, "in_sync": True}]}
        for p in range(3)
    ]
    t = get(gateway, f"/topics/{topic}")
    assert t.status == 200
    doc = t.json()
    assert list(doc) == ["name", "configs", "partitions"]
    assert doc["name"] == topic and isinstance(doc["configs"], dict)
    assert doc["partitions"] == expected
    ps = get(gateway, f"/topics/{topic}/partitions")
    assert ps.status == 200 and ps.json() == expected
    p1 = get(gateway, f"/topics/{topic}/partitions/1")
    assert p1.status == 200 and p1.json() == expected[1]


def test_unknown_topic_and_partition(gateway, topic_factory) -> None:
    topic = topic_factory(2)
    for path in ("/topics/nope-x1", "/topics/nope-x1/partitions", "/topics/nope-x1/partitions/0"):
        r = get(gateway, path)
        assert (r.status, r.json()["error_code"]) == (404, 40401), path
    for part in ("2", "-1", "x", "99999999999999999999"):
        r = get(gateway, f"/topics/{topic}/partitions/{part}")
        assert (r.status, r.json()["error_code"]) == (404, 40402), part


def test_brokers(gateway) -> None:
    md = AdminClient({"bootstrap.servers": gateway.bootstrap}).list_topics(timeout=5)
    r = get(gateway, "/brokers")
    assert r.status == 200 and r.json() == {"brokers": sorted(md.brokers)}


def test_v3_clusters_has_the_real_cluster_id(gateway) -> None:
    md = AdminClient({"bootstrap.servers": gateway.bootstrap}).list_topics(timeout=5)
    cid = md.cluster_id
    for prefix in ("/v3", "/kafka/v3"):
        r = get(gateway, f"{prefix}/clusters")
        assert r.status == 200 and r.header("content-type") == "application/json"
        doc = r.json()
        assert doc["kind"] == "KafkaClusterList"
        assert doc["metadata"] == {"self": f"http://gateway.test{prefix}/clusters", "next": None}
        (cluster,) = doc["data"]
        assert cluster["kind"] == "KafkaCluster" and cluster["cluster_id"] == cid
        assert cluster["metadata"]["self"] == f"http://gateway.test{prefix}/clusters/{cid}"
        assert cluster["topics"] == {"related": f"http://gateway.test{prefix}/clusters/{cid}/topics"}
        one = get(gateway, f"{prefix}/clusters/{cid}")
        assert one.status == 200 and one.json() == cluster
    assert get(gateway, "/v3/clusters/not-this-one").status == 404


def test_wrong_methods_on_metadata_paths(gateway) -> None:
    r = request(gateway.host, gateway.port, "DELETE", "/topics/x")
    assert r.status == 405 and r.header("allow") == "GET, POST"
    r = request(gateway.host, gateway.port, "POST", "/brokers", b"{}")
    assert r.status == 405 and r.header("allow") == "GET"
