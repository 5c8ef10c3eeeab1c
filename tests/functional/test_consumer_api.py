"""Consumer instances (docs/api.md §12) through the real gateway process, the compiled consumer
and the real broker: groups sharing partitions and taking over, commits that a new instance
resumes from, offset resets, expiry, formats, the ACL and ownership on every endpoint, limits,
base_uri behind TLS and on 0.0.0.0, and independent clients of each API from PyPI.

Tansu holds a group's join for half the session timeout: these gateways give their instances a
2 s session (``-X session.timeout.ms=2000``, a consumer property, so it goes to the instances)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import support.gateway
from argon2 import PasswordHasher
from confluent_kafka import Producer
from support.gateway import GatewayProcess
from support.http import Conn, HttpResponse, request
from support.tls import ThrowawayCA

from gateway.auth.users import hash_password
from gateway.kafka.embedded import EmbeddedBroker, find_free_port

with warnings.catch_warnings():
    # The client declares its types with mypy_extensions.TypedDict, deprecated since.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka_bridge_client import KafkaBridgeConsumer

V2 = "application/vnd.kafka.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
JSON_V2 = "application/vnd.kafka.json.v2+json"
SESSION = ("-X", "session.timeout.ms=2000", "-X", "heartbeat.interval.ms=300")
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Client:
    """Requests to one gateway as a client of the consumer API sends them: a Content-Type on
    every request, a JSON body where there is one."""

    def __init__(self, g: GatewayProcess, headers: dict[str, str] | None = None,
                 ctx: ssl.SSLContext | None = None, host: str | None = None) -> None:
        self.g = g
        self.headers = headers or {}
        self.ctx = ctx
        self.host = host

    def call(self, method: str, path: str, body: Any = None, accept: str | None = None) -> HttpResponse:
        h = {"Content-Type": V2, **self.headers}
        if accept is not None:
            h["Accept"] = accept
        if self.host is not None:
            h["Host"] = self.host
        data = None if body is None else json.dumps(body).encode()
        return request(self.g.host, self.g.port, method, path, data, h, timeout=30, ssl_context=self.ctx)

    def create(self, group: str, body: dict[str, Any]) -> str:
        r = self.call("POST", f"/consumers/{group}", body)
        assert r.status == 200, r
        return urlsplit(r.json()["base_uri"]).path

    def records(self, base: str, timeout_ms: int = 300, accept: str | None = None) -> list[dict[str, Any]]:
        r = self.call("GET", f"{base}/records?timeout={timeout_ms}", accept=accept)
        assert r.status == 200, r
        out: list[dict[str, Any]] = r.json()
        return out

    def assignment(self, base: str) -> list[tuple[str, int]]:
        r = self.call("GET", f"{base}/assignments")
        assert r.status == 200, r
        return [(p["topic"], p["partition"]) for p in r.json()["partitions"]]


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes]],
            headers: list[tuple[str, bytes]] | None = None) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for partition, key, value in records:
        p.produce(topic, value, key, partition=partition, headers=headers)
        # One batch each: Tansu's ListOffsets (auto.offset.reset=latest) says the first offset
        # of a partition's last batch + 1, not its end.
        assert p.flush(10) == 0


def read_until(c: Client, bases: list[str], done: Any, timeout: float = 20.0) -> dict[str, list[dict[str, Any]]]:
    """Read from each instance in turn until ``done(got)``; what each one got."""
    got: dict[str, list[dict[str, Any]]] = {b: [] for b in bases}
    deadline = time.monotonic() + timeout
    while not done(got):
        assert time.monotonic() < deadline, f"gave up waiting; got {got}"
        for b in bases:
            got[b] += c.records(b, 200)
    return got


def assert_error(r: HttpResponse, status: int, code: int) -> str:
    assert r.status == status, r
    body = r.json()
    assert list(body) == ["error_code", "message"] and body["error_code"] == code, body
    return str(body["message"])


@pytest.fixture(scope="module")
def gw(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Any:
    g = GatewayProcess(["--bootstrap-servers", broker.bootstrap, *SESSION],
                       tmp_path_factory.mktemp("consumers") / "gateway.log")
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()


# -- groups ----------------------------------------------------------------------------------
def test_two_instances_share_the_partitions_and_one_takes_over(gw: GatewayProcess, topic_factory: Any) -> None:
    topic = topic_factory(4)
    c = Client(gw)
    a = c.create("split", {"name": "a", "auto.offset.reset": "earliest"})
    b = c.create("split", {"name": "b", "auto.offset.reset": "earliest"})
    for base in (a, b):
        assert c.call("POST", base + "/subscription", {"topics": [topic]}).status == 204
    # Read until the group has split the four partitions between them.
    deadline = time.monotonic() + 20
    while True:
        c.records(a, 100)
        c.records(b, 100)
        owned = {a: set(c.assignment(a)), b: set(c.assignment(b))}
        if len(owned[a]) == 2 and len(owned[b]) == 2 and not owned[a] & owned[b]:
            break
        assert time.monotonic() < deadline, owned
    assert owned[a] | owned[b] == {(topic, p) for p in range(4)}
    # New records go to the partition's owner only, each exactly once.
    produce(gw.bootstrap, topic, [(p, None, b"split-%d" % p) for p in range(4)])
    markers = lambda recs: [r for r in recs if base64.b64decode(r["value"]).startswith(b"split-")]  # noqa: E731
    got = read_until(c, [a, b], lambda g: sum(len(markers(v)) for v in g.values()) >= 4)
    for base in (a, b):
        assert sorted((r["topic"], r["partition"]) for r in markers(got[base])) == sorted(owned[base])
    # Once a is deleted, b takes over its partitions.
    assert c.call("DELETE", a, {}).status == 204
    assert_error(c.call("GET", a + "/records"), 404, 40403)
    deadline = time.monotonic() + 20
    while len(c.assignment(b)) != 4:
        c.records(b, 100)
        assert time.monotonic() < deadline, c.assignment(b)
    produce(gw.bootstrap, topic, [(p, None, b"again-%d" % p) for p in range(4)])
    again = lambda recs: [r for r in recs if base64.b64decode(r["value"]).startswith(b"again-")]  # noqa: E731
    got = read_until(c, [b], lambda g: len(again(g[b])) >= 4)
    assert sorted(r["partition"] for r in again(got[b])) == [0, 1, 2, 3]
    assert c.call("DELETE", b).status == 204


def test_a_new_instance_resumes_after_the_commit(gw: GatewayProcess, topic_factory: Any) -> None:
    topic = topic_factory(1)
    produce(gw.bootstrap, topic, [(0, None, b"r%d" % i) for i in range(5)])
    c = Client(gw)
    settings = {"name": "x", "auto.offset.reset": "earliest", "auto.commit.enable": "false"}
    x = c.create("resume", settings)
    assert c.call("POST", x + "/subscription", {"topics": [topic]}).status == 204
    got = read_until(c, [x], lambda g: len(g[x]) >= 5)
    assert [r["offset"] for r in got[x]] == [0, 1, 2, 3, 4]
    r = c.call("POST", x + "/offsets")  # everything read so far
    assert r.status == 200 and r.json() == [{"topic": topic, "partition": 0, "consumed": 4, "committed": 4}]
    r = c.call("GET", x + "/offsets", {"partitions": [{"topic": topic, "partition": 0}]})
    assert r.json() == {"offsets": [{"topic": topic, "partition": 0, "offset": 5, "metadata": ""}]}
    assert c.call("DELETE", x).status == 204
    produce(gw.bootstrap, topic, [(0, None, b"r%d" % i) for i in range(5, 8)])
    y = c.create("resume", settings)  # the same name is free again
    assert y == x
    assert c.call("POST", y + "/subscription", {"topics": [topic]}).status == 204
    got = read_until(c, [y], lambda g: len(g[y]) >= 3)
    assert [r["offset"] for r in got[y]] == [5, 6, 7]
    assert c.records(y, 300) == []
    # An explicit commit names the last record consumed: the group resumes after it.
    r = c.call("POST", y + "/offsets", {"offsets": [{"topic": topic, "partition": 0, "offset": 6}]})
    assert r.json() == [{"topic": topic, "partition": 0, "consumed": 6, "committed": 6}]
    r = c.call("GET", y + "/offsets", {"partitions": [{"topic": topic, "partition": 0}]})
    assert r.json()["offsets"][0]["offset"] == 7
    assert c.call("DELETE", y).status == 204


def test_auto_offset_reset_earliest_and_latest(gw: GatewayProcess, topic_factory: Any) -> None:
    topic = topic_factory(1)
    produce(gw.bootstrap, topic, [(0, None, b"old%d" % i) for i in range(3)])
    c = Client(gw)
    early = c.create("reset-early", {"auto.offset.reset": "earliest"})
    late = c.create("reset-late", {"auto.offset.reset": "latest"})
    for base in (early, late):
        r = c.call("POST", base + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]})
        assert r.status == 204
    got = read_until(c, [early], lambda g: len(g[early]) >= 3)
    assert [r["offset"] for r in got[early]] == [0, 1, 2]
    assert c.records(late, 1000) == []
    produce(gw.bootstrap, topic, [(0, None, b"new")])
    got = read_until(c, [late], lambda g: len(g[late]) >= 1)
    assert [(r["offset"], r["value"]) for r in got[late]] == [(3, b64(b"new"))]
    for base in (early, late):
        assert c.call("DELETE", base).status == 204


# -- formats ---------------------------------------------------------------------------------
def test_binary_and_json_formats_and_the_strimzi_records(gw: GatewayProcess, topic_factory: Any) -> None:
    topic = topic_factory(1)
    produce(gw.bootstrap, topic, [(0, b'"k"', b'{"n":1}')], headers=[("h", b"hv")])
    produce(gw.bootstrap, topic, [(0, None, b"\x00\xff not json")])
    c = Client(gw)
    assign = {"partitions": [{"topic": topic, "partition": 0}]}
    binary = c.create("formats-b", {"format": "binary", "auto.offset.reset": "earliest"})
    js = c.create("formats-j", {"format": "json", "auto.offset.reset": "earliest"})
    bridge = c.create("formats-s", {"format": "json", "auto.offset.reset": "earliest",
                                    "enable.auto.commit": False})
    for base in (binary, js, bridge):
        assert c.call("POST", base + "/assignments", assign).status == 204
    got = read_until(c, [binary], lambda g: len(g[binary]) >= 2)
    assert got[binary] == [
        {"topic": topic, "key": b64(b'"k"'), "value": b64(b'{"n":1}'), "partition": 0, "offset": 0},
        {"topic": topic, "key": None, "value": b64(b"\x00\xff not json"), "partition": 0, "offset": 1},
    ]
    r = c.call("GET", js + "/records?timeout=5000", accept=JSON_V2)
    assert r.header("content-type") == JSON_V2
    assert r.body == f'[{{"topic":"{topic}","key":"k","value":{{"n":1}},"partition":0,"offset":0}}]'.encode()
    msg = assert_error(c.call("GET", js + "/records"), 406, 40601)
    assert f"topic {topic} partition 0 offset 1" in msg and "the record is skipped" in msg
    assert c.records(js, 300) == []  # it was skipped: nothing follows it
    assert_error(c.call("GET", binary + "/records", accept=JSON_V2), 406, 40601)
    recs = read_until(c, [bridge], lambda g: len(g[bridge]) >= 1)[bridge]
    assert list(recs[0]) == ["topic", "key", "value", "partition", "offset", "timestamp", "headers"]
    assert recs[0]["value"] == {"n": 1} and recs[0]["headers"] == [{"key": "h", "value": b64(b"hv")}]
    assert abs(recs[0]["timestamp"] / 1000 - time.time()) < 120
    assert_error(c.call("GET", bridge + "/records"), 406, 406)  # the bridge's dialect
    # The bridge's text format: keys and values as strings of their text.
    text = c.create("formats-t", {"format": "text", "auto.offset.reset": "earliest"})
    assert c.call("POST", text + "/assignments", assign).status == 204
    deadline = time.monotonic() + 20
    recs = []
    while len(recs) < 2 and time.monotonic() < deadline:
        r = c.call("GET", text + "/records?timeout=1000", accept="application/vnd.kafka.text.v2+json")
        assert r.status == 200 and r.header("content-type") == "application/vnd.kafka.text.v2+json"
        recs += json.loads(r.body)
    assert [(x["key"], x["value"], x["offset"]) for x in recs] == [
        ('"k"', '{"n":1}', 0), (None, "\x00\ufffd not json", 1)]
    assert recs[0]["headers"] == [{"key": "h", "value": b64(b"hv")}]
    for base in (binary, js, bridge, text):
        assert c.call("DELETE", base).status == 204


# -- instances: expiry, limits, metrics, base_uri ----------------------------------------
def test_an_idle_instance_expires_and_a_long_read_keeps_it(gateway_factory: Any, topic_factory: Any) -> None:
    topic = topic_factory(1)
    g = gateway_factory(*SESSION, "--consumer-instance-timeout", "1")
    c = Client(g)
    idle = c.create("expiry", {"name": "idle"})
    busy = c.create("expiry", {"name": "busy", "consumer.request.timeout.ms": 2500})
    c.call("POST", busy + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]})
    started = time.monotonic()
    assert c.records(busy, 2500) == []  # waits 2.5 s: longer than the timeout
    assert time.monotonic() - started >= 2.3
    assert c.call("GET", busy + "/subscription").status == 200  # still there
    assert_error(c.call("GET", idle + "/subscription"), 404, 40403)  # expired meanwhile
    time.sleep(1.8)
    assert_error(c.call("GET", busy + "/assignments"), 404, 40403)
    assert g.metric("gateway_consumer_instances_expired_total") == 2
    assert g.metric("gateway_consumer_instances") == 0
    assert "consumer instance idle of group expiry expired after 1s idle" in g.log()


def test_the_instance_limit_and_the_body_limit(gateway_factory: Any) -> None:
    g = gateway_factory(*SESSION, "--max-consumer-instances", "2")
    c = Client(g)
    first = c.create("limits", {})
    c.create("limits", {})
    msg = assert_error(c.call("POST", "/consumers/limits", {}), 503, 50302)
    assert "--max-consumer-instances" in msg
    assert g.metric("gateway_consumer_instances") == 2
    assert c.call("DELETE", first).status == 204
    c.create("limits", {})
    assert_error(c.call("POST", "/consumers/limits", {"name": "x" * 70_000}), 413, 413)
    assert_error(c.call("GET", "/consumers/limits/instances/nobody/records"), 404, 40403)


def test_records_consumed_are_counted(gw: GatewayProcess, topic_factory: Any) -> None:
    topic = topic_factory(1)
    produce(gw.bootstrap, topic, [(0, None, b"m%d" % i) for i in range(4)])
    c = Client(gw)
    before = gw.metric("gateway_consumer_records_consumed_total") or 0
    base = c.create("metrics", {"auto.offset.reset": "earliest"})
    c.call("POST", base + "/assignments", {"partitions": [{"topic": topic, "partition": 0}]})
    read_until(c, [base], lambda g: len(g[base]) >= 4)
    assert gw.metric("gateway_consumer_records_consumed_total") == before + 4
    assert (gw.metric("gateway_consumer_instances") or 0) >= 1
    assert c.call("DELETE", base).status == 204


def test_base_uri_behind_tls(gateway_factory: Any, tmp_path: Path) -> None:
    ca = ThrowawayCA(tmp_path)
    server = ca.issue_server()
    g = gateway_factory(*SESSION, "--tls-cert", str(server.cert), "--tls-key", str(server.key))
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    c = Client(g, ctx=ctx, host=f"localhost:{g.port}")
    r = c.call("POST", "/consumers/tls", {"name": "t"})
    uri = r.json()["base_uri"]
    assert uri == f"https://localhost:{g.port}/consumers/tls/instances/t"
    # Usable as given: an HTTPS request to it reaches the instance.
    parts = urlsplit(uri)
    r = request(parts.hostname or "", parts.port or 0, "GET", parts.path + "/subscription",
                None, {"Content-Type": V2}, ssl_context=ctx)
    assert r.status == 200 and r.json() == {"topics": []}


def test_base_uri_on_a_wildcard_listener(broker: EmbeddedBroker, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    port = find_free_port("0.0.0.0")
    monkeypatch.setattr(support.gateway, "find_free_port", lambda host: port)
    g = GatewayProcess(["--bootstrap-servers", broker.bootstrap, *SESSION, "--listen", f"0.0.0.0:{port}"],
                       tmp_path / "gateway.log")
    try:
        r = Client(g).call("POST", "/consumers/wild", {"name": "w"})
        assert r.json()["base_uri"] == "http://gateway.test/consumers/wild/instances/w"  # its Host
        # Without a Host (HTTP/1.0): the address the client reached, never 0.0.0.0.
        with Conn("127.0.0.1", port) as conn:
            conn.send(b"POST /consumers/wild HTTP/1.0\r\nContent-Type: application/vnd.kafka.v2+json\r\n"
                      b"Content-Length: 12\r\n\r\n{\"name\":\"v\"}")
            r = conn.read_response()
        uri = r.json()["base_uri"]
        assert uri == f"http://127.0.0.1:{port}/consumers/wild/instances/v"
        r = request("127.0.0.1", port, "DELETE", urlsplit(uri).path)
        assert r.status == 204
    finally:
        g.stop()
    g.assert_no_crash()


def test_shutdown_closes_the_instances_within_its_grace(gateway_factory: Any, topic_factory: Any) -> None:
    topic = topic_factory(2)
    g = gateway_factory(*SESSION, "--shutdown-timeout", "10")
    c = Client(g)
    bases = [c.create("shutdown", {"auto.offset.reset": "earliest"}) for _ in range(3)]
    for base in bases:
        assert c.call("POST", base + "/subscription", {"topics": [topic]}).status == 204
        c.records(base, 100)
    started = time.monotonic()
    assert g.terminate() == 0
    assert time.monotonic() - started < 10
    g.assert_no_crash()


# -- authentication, the ACL and ownership ---------------------------------------------------
def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{user}-pw".encode()).decode()}


def endpoints(group: str, instance: str, topic: str) -> list[tuple[str, str, Any]]:
    """Every consumer endpoint of one instance (create excepted), with a body naming ``topic``."""
    base = f"/consumers/{group}/instances/{instance}"
    part = {"partitions": [{"topic": topic, "partition": 0}]}
    return [
        ("POST", base + "/subscription", {"topics": [topic]}),
        ("GET", base + "/subscription", {}),
        ("DELETE", base + "/subscription", None),
        ("POST", base + "/assignments", part),
        ("GET", base + "/assignments", None),
        ("POST", base + "/positions", {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}),
        ("POST", base + "/positions/beginning", part),
        ("POST", base + "/positions/end", part),
        ("GET", base + "/records?timeout=0", None),
        ("POST", base + "/offsets", {"offsets": [{"topic": topic, "partition": 0, "offset": 0}]}),
        ("GET", base + "/offsets", part),
        ("GET", base + f"/topics/{topic}", None),
        ("DELETE", base, None),
    ]


def test_authentication_acl_and_ownership_on_every_endpoint(gateway_factory: Any, topic_factory: Any,
                                                           tmp_path: Path) -> None:
    mine = topic_factory(1, prefix="t-acl")
    other = topic_factory(1, prefix="u-acl")
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}:{hash_password(f'{u}-pw', CHEAP)}\n" for u in ("alice", "bob", "carol", "ops")))
    users.chmod(0o600)
    acl = tmp_path / "acl.txt"
    acl.write_text("alice group g-*\nalice consume t-*\ncarol group g-*\nbob consume *\nops all *\n")
    g = gateway_factory(*SESSION, "--users-file", str(users), "--acl-file", str(acl))
    anon, alice, bob, carol, ops = (Client(g, basic(u) if u else None) for u in ("", "alice", "bob", "carol", "ops"))

    assert anon.call("POST", "/consumers/g-1", {}).status == 401
    assert bob.call("POST", "/consumers/g-1", {}).status == 403  # no group rule
    assert alice.call("POST", "/consumers/h-1", {}).status == 403  # not her groups
    base = alice.create("g-1", {"name": "a", "auto.offset.reset": "earliest"})
    assert base == "/consumers/g-1/instances/a"
    for method, path, body in endpoints("g-1", "a", mine):
        assert anon.call(method, path, body).status == 401, (method, path)
        assert_error(bob.call(method, path, body), 403, 40301)  # the group comes first
        r = carol.call(method, path, body)
        if path.endswith(f"/topics/{mine}"):
            assert_error(r, 403, 40301)  # no consume on the topic: refused before the lookup
        else:
            assert_error(r, 404, 40403)  # alice's instance does not exist for carol
    # Alice may not name a topic she cannot consume, nor subscribe to a pattern.
    for method, path, body in endpoints("g-1", "a", other):
        if body is None or method == "GET" and path.endswith("/subscription"):
            continue
        msg = assert_error(alice.call(method, path, body), 403, 40301)
        assert f"alice may not consume from topic {other}" in msg
    assert_error(alice.call("GET", f"{base}/topics/{other}"), 403, 40301)
    msg = assert_error(alice.call("POST", base + "/subscription", {"topic_pattern": "t-.*"}), 403, 40301)
    assert "topic pattern" in msg
    # Her own topic: every endpoint answers, in this order (subscribe, unsubscribe, assign,
    # seek while assigned, read, commit; the v1 read subscribes again).
    for method, path, body in endpoints("g-1", "a", mine):
        if path.endswith(f"/topics/{mine}"):
            assert alice.call("DELETE", base + "/subscription").status == 204
        r = alice.call(method, path, body)
        assert r.status in (200, 204), (method, path, r)
    # ops may use any group and subscribe to a pattern.
    base = ops.create("any-group", {})
    assert ops.call("POST", base + "/subscription", {"topic_pattern": "t-acl.*"}).status == 204
    assert ops.call("DELETE", base).status == 204


# -- independent clients ---------------------------------------------------------------------
@pytest.mark.parametrize("proxy", ["strimzi", "confluent"])
def test_kafka_bridge_client(gw: GatewayProcess, topic_factory: Any, proxy: str) -> None:
    """kafka-bridge-client (PyPI), a client of the Strimzi bridge that also speaks Confluent's
    dialect: it creates its instance, subscribes, polls, commits and deletes."""
    topic = topic_factory(1)
    produce(gw.bootstrap, topic, [(0, b"k%d" % i, b"v%d" % i) for i in range(3)])

    async def consume() -> tuple[list[dict[str, Any]], int]:
        consumer = KafkaBridgeConsumer(
            topic, bootstrap_server=f"http://{gw.host}:{gw.port}/", group_id=f"bridge-{proxy}",
            auto_offset_reset="earliest", enable_auto_commit=False, consumer_name=f"c-{proxy}",
            sleep_interval_seconds=0, proxy=proxy,
        )
        got: list[dict[str, Any]] = []
        async with consumer:
            deadline = time.monotonic() + 20
            while len(got) < 3:
                assert time.monotonic() < deadline, got
                got += await consumer.poll_records(max_bytes=100000, timeout=500)
            await consumer.commit()  # 204 (Strimzi) or 200 (Confluent), as the client expects
        r = request(gw.host, gw.port, "GET", f"/consumers/bridge-{proxy}/instances/c-{proxy}/records")
        return got, r.status

    got, after = asyncio.run(consume())
    assert [(base64.b64decode(r["key"]), base64.b64decode(r["value"])) for r in got] == [
        (b"k%d" % i, b"v%d" % i) for i in range(3)]
    if proxy == "strimzi":
        assert all("timestamp" in r for r in got)
    assert after == 404  # the client deleted its instance


def test_unknown_instances_and_paths(gw: GatewayProcess) -> None:
    c = Client(gw)
    msg = assert_error(c.call("GET", "/consumers/nobody/instances/none/records"), 404, 40403)
    assert "Consumer instance not found" in msg
    assert_error(c.call("DELETE", "/consumers/nobody/instances/none"), 404, 40403)
    assert c.call("GET", "/consumers/nobody").status == 405
