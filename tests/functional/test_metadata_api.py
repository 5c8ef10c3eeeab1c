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


def test_every_link_a_v3_resource_advertises_is_served(gateway, topic_factory) -> None:
    """Follow every ``related`` and ``self`` link from /v3/clusters, breadth first: each answers
    200 with the resource it names (the links are built from the Host header and the prefix)."""
    topic = topic_factory(2)
    md = AdminClient({"bootstrap.servers": gateway.bootstrap}).list_topics(timeout=5)
    base = "http://gateway.test"
    todo = ["/v3/clusters", "/kafka/v3/clusters"]
    seen: set[str] = set()
    kinds: dict[str, dict] = {}
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        r = get(gateway, path)
        assert r.status == 200, (path, r.status, r.body)
        assert r.header("content-type") == "application/json"
        doc = r.json()
        assert doc["metadata"]["self"] == base + path
        kinds[path] = doc

        def links(node) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("related", "self") and isinstance(value, str):
                        assert value.startswith(base), value
                        todo.append(value[len(base):])
                    else:
                        links(value)
            elif isinstance(node, list):
                for item in node:
                    links(item)

        links(doc)
    cid = md.cluster_id
    for prefix in ("/v3", "/kafka/v3"):
        c = f"{prefix}/clusters/{cid}"
        assert set(kinds[c]) == {"kind", "metadata", "cluster_id", "controller", "brokers", "topics"}
        brokers = kinds[f"{c}/brokers"]
        assert brokers["kind"] == "KafkaBrokerList"
        assert [(b["broker_id"], b["host"], b["port"]) for b in brokers["data"]] == [
            (b.id, b.host, b.port) for b in sorted(md.brokers.values(), key=lambda b: b.id)
        ]
        t = kinds[f"{c}/topics/{topic}"]
        assert (t["kind"], t["topic_name"], t["partitions_count"], t["is_internal"]) == (
            "KafkaTopic", topic, 2, False)
        assert t["replication_factor"] == 1
        assert topic in [x["topic_name"] for x in kinds[f"{c}/topics"]["data"]]
        parts = kinds[f"{c}/topics/{topic}/partitions"]["data"]
        assert [p["partition_id"] for p in parts] == [0, 1]
        leader = md.topics[topic].partitions[1].leader
        one = kinds[f"{c}/topics/{topic}/partitions/1"]
        assert one["leader"] == {"related": f"{base}{c}/brokers/{leader}"}
        assert one["metadata"]["resource_name"] == f"crn:///kafka={cid}/topic={topic}/partition=1"


def test_v3_resources_that_do_not_exist(gateway, topic_factory) -> None:
    topic = topic_factory(1)
    cid = AdminClient({"bootstrap.servers": gateway.bootstrap}).list_topics(timeout=5).cluster_id
    c = f"/v3/clusters/{cid}"
    for path, code in (
        ("/v3/clusters/other/topics", 404),
        ("/v3/clusters/other/brokers", 404),
        (f"{c}/brokers/999", 404),
        (f"{c}/brokers/x", 404),
        (f"{c}/topics/nope-v3", 40401),
        (f"{c}/topics/nope-v3/partitions", 40401),
        (f"{c}/topics/{topic}/partitions/1", 40402),
        (f"{c}/topics/{topic}/partitions/x", 40402),
        (f"{c}/acls", 404),
        (f"{c}/consumer-groups", 404),
    ):
        r = get(gateway, path)
        assert (r.status, r.json()["error_code"]) == (404, code), path
