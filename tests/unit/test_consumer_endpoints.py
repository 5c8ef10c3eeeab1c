"""The consumer API (gateway.api.consumers, docs/api.md §12) through the gateway's own HTTP
server, in this process, over real sockets, with the stand-in consumer
(tests/support/fake_consumer.py) behind the instances: paths, bodies, answers byte for byte,
error codes in each dialect, limits, expiry and shutdown. The same API against the real broker
and the compiled consumer: tests/functional/test_consumer_api.py."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.fake_consumer import FakeCluster, FakeRdConsumer
from support.http import Conn, HttpResponse, request

from gateway.config import Config
from gateway.consume.instances import InstanceRegistry
from gateway.server import Server

V2 = "application/vnd.kafka.v2+json"
V1 = "application/vnd.kafka.v1+json"
B64 = lambda b: base64.b64encode(b).decode()  # noqa: E731


class _Producer:
    """All the server needs of a producer here: its drain at shutdown."""

    async def drain(self, deadline: float) -> int:
        return 0

    def outstanding(self) -> int:
        return 0


class InProcessGateway:
    """The gateway's server on a loop of its own thread, its instances over ``cluster``."""

    def __init__(self, cluster: FakeCluster, *, max_instances: int = 100, idle_timeout: float = 300.0,
                 **config: Any) -> None:
        self.cluster = cluster
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.config = Config(listen=("127.0.0.1", 0), access_log=False, **config)

        async def setup() -> tuple[Server, InstanceRegistry, int]:
            registry = InstanceRegistry(self.loop, {}, factory=cluster.factory,
                                        consumer_class=FakeRdConsumer, max_instances=max_instances,
                                        idle_timeout=idle_timeout)
            server = Server(self.config, self.loop, _Producer(), None, instances=registry)  # type: ignore[arg-type]
            addresses = await server.start()
            return server, registry, addresses[0][1]

        self.server, self.registry, self.port = self.call(setup())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def request(self, method: str, path: str, body: Any = None, ctype: str | None = V2,
                headers: dict[str, str] | None = None) -> HttpResponse:
        h = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if ctype is not None:
            h["Content-Type"] = ctype
        return request("127.0.0.1", self.port, method, path, data, h, timeout=10)

    def stop(self) -> None:
        async def shutdown() -> None:
            await self.server.shutdown(self.loop.time() + 2)

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.create_topic("t", 2)
    c.create_topic("u", 1)
    return c


@pytest.fixture
def gw(cluster: FakeCluster) -> Iterator[InProcessGateway]:
    g = InProcessGateway(cluster)
    yield g
    g.stop()


def assert_error(r: HttpResponse, status: int, code: int) -> str:
    assert r.status == status, r
    body = r.json()
    assert list(body) == ["error_code", "message"] and body["error_code"] == code, body
    return str(body["message"])


def create(gw: InProcessGateway, group: str, body: Any, ctype: str = V2) -> str:
    r = gw.request("POST", f"/consumers/{group}", body, ctype)
    assert r.status == 200, r
    return str(r.json()["base_uri"]).split("gateway.test", 1)[1]


# -- Confluent's v2 API ----------------------------------------------------------------------
def test_a_confluent_instance_from_create_to_delete(gw: InProcessGateway, cluster: FakeCluster) -> None:
    for i in range(3):
        cluster.produce("t", i % 2, b"v%d" % i, key=b"k" if i == 0 else None)
    r = gw.request("POST", "/consumers/g1", {"name": "c1", "format": "binary",
                                              "auto.offset.reset": "earliest", "auto.commit.enable": "false"})
    assert r.status == 200 and r.header("content-type") == V2
    assert r.body == b'{"instance_id":"c1","base_uri":"http://gateway.test/consumers/g1/instances/c1"}'
    base = "/consumers/g1/instances/c1"
    r = gw.request("POST", base + "/subscription", {"topics": ["t"]})
    assert (r.status, r.body, r.header("content-length"), r.header("content-type")) == (204, b"", None, None)
    # Clients send a Content-Type and a small JSON body with GET and DELETE too.
    r = gw.request("GET", base + "/subscription", {})
    assert r.status == 200 and r.json() == {"topics": ["t"]}
    r = gw.request("GET", base + "/records?timeout=1000", None, None,
                   {"Accept": "application/vnd.kafka.binary.v2+json"})
    assert r.status == 200 and r.header("content-type") == "application/vnd.kafka.binary.v2+json"
    assert r.body == (
        b'[{"topic":"t","key":"aw==","value":"djA=","partition":0,"offset":0},'
        b'{"topic":"t","key":null,"value":"djI=","partition":0,"offset":1},'
        b'{"topic":"t","key":null,"value":"djE=","partition":1,"offset":0}]'
    )
    r = gw.request("GET", base + "/assignments")
    assert r.json() == {"partitions": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}]}
    # Commit everything consumed: Confluent answers the committed offsets (of the last records).
    r = gw.request("POST", base + "/offsets", None)
    assert r.status == 200 and r.json() == [
        {"topic": "t", "partition": 0, "consumed": 1, "committed": 1},
        {"topic": "t", "partition": 1, "consumed": 0, "committed": 0},
    ]
    r = gw.request("GET", base + "/offsets", {"partitions": [{"topic": "t", "partition": 0},
                                                             {"topic": "u", "partition": 0}]})
    assert r.json() == {"offsets": [{"topic": "t", "partition": 0, "offset": 2, "metadata": ""}]}
    # An explicit commit names the last record consumed: Kafka gets the offset after it.
    r = gw.request("POST", base + "/offsets", {"offsets": [{"topic": "t", "partition": 0, "offset": 0}]})
    assert r.json() == [{"topic": "t", "partition": 0, "consumed": 0, "committed": 0}]
    assert cluster.committed["g1"][("t", 0)] == 1
    r = gw.request("DELETE", base, {})
    assert (r.status, r.body, r.header("content-length")) == (204, b"", None)
    assert cluster.created[0].closed
    msg = assert_error(gw.request("GET", base + "/records"), 404, 40403)
    assert "Consumer instance not found" in msg


def test_assign_seek_and_positions(gw: InProcessGateway, cluster: FakeCluster) -> None:
    for i in range(5):
        cluster.produce("u", 0, b"%d" % i)
    base = create(gw, "g2", {"format": "json"})
    r = gw.request("POST", base + "/assignments", {"partitions": [{"topic": "u", "partition": 0}]})
    assert r.status == 204
    assert_error(gw.request("POST", base + "/subscription", {"topics": ["u"]}), 409, 40903)
    r = gw.request("POST", base + "/positions", {"offsets": [{"topic": "u", "partition": 0, "offset": 3}]})
    assert r.status == 204
    r = gw.request("GET", base + "/records", None, None, {"Accept": "application/vnd.kafka.json.v2+json"})
    assert r.header("content-type") == "application/vnd.kafka.json.v2+json"
    assert r.body == (b'[{"topic":"u","key":null,"value":3,"partition":0,"offset":3},'
                      b'{"topic":"u","key":null,"value":4,"partition":0,"offset":4}]')
    assert gw.request("POST", base + "/positions/beginning", {"partitions": [{"topic": "u", "partition": 0}]}).status == 204
    r = gw.request("GET", base + "/records?max_bytes=2")  # the first record always comes
    assert [rec["offset"] for rec in r.json()] == [0, 1]
    assert gw.request("POST", base + "/positions/end", {"partitions": [{"topic": "u", "partition": 0}]}).status == 204
    assert gw.request("GET", base + "/records?timeout=0").body == b"[]"
    msg = assert_error(gw.request("POST", base + "/positions", {"offsets": [{"topic": "t", "partition": 1, "offset": 0}]}),
                       409, 40903)
    assert "not assigned t[1]" in msg
    # The instance's format is json: a binary read is refused.
    msg = assert_error(gw.request("GET", base + "/records", None, None,
                                  {"Accept": "application/vnd.kafka.binary.v2+json"}), 406, 40601)
    assert "is json" in msg
    assert gw.request("DELETE", base + "/subscription").status == 204
    assert gw.request("GET", base + "/assignments").json() == {"partitions": []}


def test_a_json_instance_stops_at_a_record_that_is_not_json(gw: InProcessGateway, cluster: FakeCluster) -> None:
    cluster.produce("u", 0, b'{"a":1}')
    cluster.produce("u", 0, b"not json")
    cluster.produce("u", 0, b"[2]")
    base = create(gw, "g3", {"format": "json", "auto.offset.reset": "earliest"})
    gw.request("POST", base + "/assignments", {"partitions": [{"topic": "u", "partition": 0}]})
    r = gw.request("GET", base + "/records")
    assert r.body == b'[{"topic":"u","key":null,"value":{"a":1},"partition":0,"offset":0}]'
    msg = assert_error(gw.request("GET", base + "/records"), 406, 40601)
    assert "partition 0 offset 1" in msg and "the record is skipped" in msg
    r = gw.request("GET", base + "/records")
    assert r.body == b'[{"topic":"u","key":null,"value":[2],"partition":0,"offset":2}]'


# -- the Strimzi bridge's dialect ----------------------------------------------------------
def test_a_strimzi_instance_answers_as_the_bridge(gw: InProcessGateway, cluster: FakeCluster) -> None:
    cluster.produce("u", 0, b"x", key=b"k", ts=1712345678901, headers=[("h", b"hv")])
    r = gw.request("POST", "/consumers/sg", {"name": "s1", "format": "binary", "auto.offset.reset": "earliest",
                                             "enable.auto.commit": False, "fetch.min.bytes": 1,
                                             "consumer.request.timeout.ms": 30000})
    assert r.status == 200
    base = "/consumers/sg/instances/s1"
    assert gw.request("POST", base + "/subscription", {"topics": ["u"]}).status == 204
    r = gw.request("GET", base + "/subscription")
    assert r.json() == {"topics": ["u"], "partitions": [{"u": [0]}]}
    r = gw.request("GET", base + "/records?timeout=2000&max_bytes=100000", None, V2,
                   {"Accept": "application/vnd.kafka.binary.v2+json"})
    assert r.body == (b'[{"topic":"u","key":"aw==","value":"eA==","partition":0,"offset":0,'
                      b'"timestamp":1712345678901,"headers":[{"key":"h","value":"aHY="}]}]')
    # A commit is 204; explicit offsets are Kafka's own (the next one to read).
    r = gw.request("POST", base + "/offsets", {"offsets": [{"topic": "u", "partition": 0, "offset": 1}]})
    assert (r.status, r.body) == (204, b"")
    assert cluster.committed["sg"][("u", 0)] == 1
    # Errors say the HTTP status as their error_code; a seek outside the assignment is 404.
    assert_error(gw.request("POST", base + "/positions", {"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}),
                 404, 404)
    assert_error(gw.request("POST", base + "/assignments", {"partitions": [{"topic": "t", "partition": 0}]}),
                 409, 409)
    assert_error(gw.request("POST", base + "/subscription", {}), 422, 422)
    assert gw.request("DELETE", base).status == 204


def test_the_bridge_text_format_makes_a_bridge_instance_and_other_formats_are_refused(gw: InProcessGateway) -> None:
    r = gw.request("POST", "/consumers/sg", {"format": "text"})
    assert r.status == 200
    base = str(r.json()["base_uri"]).split("gateway.test", 1)[1]
    # The bridge's dialect: an embedded format the instance does not have is its bare 406.
    assert_error(gw.request("GET", base + "/records", None, None,
                            {"Accept": "application/vnd.kafka.binary.v2+json"}), 406, 406)
    msg = assert_error(gw.request("POST", "/consumers/sg", {"format": "yaml", "enable.auto.commit": True}), 422, 422)
    assert "format yaml is not supported" in msg


# -- Confluent's v1 instance read ----------------------------------------------------------
def test_a_v1_instance_reads_a_topic_and_commits(gw: InProcessGateway, cluster: FakeCluster) -> None:
    cluster.produce("u", 0, b"a", key=b"k")
    r = gw.request("POST", "/consumers/v1g", {"format": "binary", "auto.offset.reset": "smallest"}, V1)
    assert r.status == 200 and r.header("content-type") == V1
    base = str(r.json()["base_uri"]).split("gateway.test", 1)[1]
    r = gw.request("GET", base + "/topics/u", None, None, {"Accept": "application/vnd.kafka.binary.v1+json"})
    assert r.header("content-type") == "application/vnd.kafka.binary.v1+json"
    assert r.body == b'[{"key":"aw==","value":"YQ==","partition":0,"offset":0}]'
    r = gw.request("POST", base + "/offsets", None, V1)
    assert r.header("content-type") == V1
    assert r.json() == [{"topic": "u", "partition": 0, "consumed": 0, "committed": 0}]
    msg = assert_error(gw.request("GET", base + "/topics/t"), 409, 40901)
    assert "already subscribed" in msg
    assert gw.request("DELETE", base, None, V1).status == 204


# -- errors and limits -----------------------------------------------------------------------
def test_create_errors(gw: InProcessGateway) -> None:
    assert create(gw, "g", {"name": "dup"})
    assert_error(gw.request("POST", "/consumers/g", {"name": "dup"}), 409, 40902)
    for body, words in [
        ({"format": "avro"}, "needs a Schema Registry"),
        ({"auto.offset.reset": "sometimes"}, "auto.offset.reset must be"),
        ({"auto.commit.enable": "maybe"}, "auto.commit.enable must be true or false"),
        ({"fetch.min.bytes": "x"}, "fetch.min.bytes must be an integer"),
        ({"nmae": "typo"}, "unknown key 'nmae'"),
        ({"name": "a/b"}, "not a valid name"),
    ]:
        assert words in assert_error(gw.request("POST", "/consumers/g", body), 422, 42204)
    assert_error(gw.request("POST", "/consumers/g", b"{oops"), 400, 400)
    assert_error(gw.request("POST", "/consumers/g", b"[1]"), 422, 422)
    assert_error(gw.request("POST", "/consumers/g", b"{}", "text/plain"), 415, 415)
    big = {"name": "x" * 70_000}
    assert_error(gw.request("POST", "/consumers/g", big), 413, 413)
    r = gw.request("POST", "/consumers/g/", {})  # Confluent's own example ends with '/'
    assert r.status == 200


def test_request_errors_of_an_instance(gw: InProcessGateway) -> None:
    base = create(gw, "g", {"name": "e"})
    assert_error(gw.request("GET", "/consumers/g/instances/nobody/subscription"), 404, 40403)
    assert_error(gw.request("POST", base + "/subscription", {"topics": ["t"], "topic_pattern": "t.*"}), 409, 40903)
    assert "A list (of Topics type) or a topic_pattern" in assert_error(
        gw.request("POST", base + "/subscription", {"topics": []}), 422, 422)
    assert_error(gw.request("POST", base + "/subscription", {"topic_pattern": "("}), 422, 422)
    assert_error(gw.request("POST", base + "/assignments", {"partitions": [{"topic": "t"}]}), 422, 422)
    # Not a Kafka topic name (a leading ^ would make it a pattern for librdkafka).
    assert_error(gw.request("POST", base + "/subscription", {"topics": ["^.*"]}), 422, 422)
    assert_error(gw.request("POST", base + "/subscription", b"[" * 5000 + b"]" * 5000), 400, 400)
    assert_error(gw.request("POST", base + "/positions", {"offsets": [{"topic": "t", "partition": 0, "offset": -1}]}),
                 422, 422)
    assert_error(gw.request("GET", base + "/offsets"), 404, 40402)
    assert_error(gw.request("GET", base + "/records?timeout=soon"), 400, 400)
    assert_error(gw.request("GET", base + "/records", None, None, {"Accept": "text/html"}), 406, 406)
    assert gw.request("PUT", base + "/records").status == 405


def test_the_instance_limit(cluster: FakeCluster) -> None:
    g = InProcessGateway(cluster, max_instances=1)
    try:
        create(g, "g", {})
        msg = assert_error(g.request("POST", "/consumers/g", {}), 503, 50302)
        assert "--max-consumer-instances" in msg
    finally:
        g.stop()


def test_an_idle_instance_expires(cluster: FakeCluster) -> None:
    g = InProcessGateway(cluster, idle_timeout=0.3)
    try:
        base = create(g, "g", {"name": "idle"})
        assert g.request("GET", base + "/subscription").status == 200
        time.sleep(0.8)
        assert_error(g.request("GET", base + "/subscription"), 404, 40403)
        assert cluster.created[0].closed
    finally:
        g.stop()


def test_shutdown_closes_every_instance(cluster: FakeCluster) -> None:
    g = InProcessGateway(cluster)
    for i in range(3):
        create(g, "g", {"name": f"i{i}"})
    g.stop()
    assert len(cluster.created) == 3 and all(c.closed for c in cluster.created)


# -- base_uri --------------------------------------------------------------------------------
def test_base_uri_is_the_advertised_url_when_given(cluster: FakeCluster) -> None:
    g = InProcessGateway(cluster, advertised_url="https://gw.example:8443/kafka")
    try:
        r = g.request("POST", "/consumers/my%20group", {"name": "n:1"})
        assert r.json()["base_uri"] == "https://gw.example:8443/kafka/consumers/my%20group/instances/n%3A1"
        r = g.request("GET", "/consumers/my%20group/instances/n%3A1/subscription")
        assert r.status == 200
    finally:
        g.stop()


def test_base_uri_without_a_host_header_is_the_listener_address(gw: InProcessGateway) -> None:
    with Conn("127.0.0.1", gw.port) as c:
        c.send(b"POST /consumers/g HTTP/1.0\r\nContent-Type: application/vnd.kafka.v2+json\r\n"
               b"Content-Length: 13\r\n\r\n{\"name\":\"h\"}\n")
        r = c.read_response()
    assert r.json()["base_uri"] == f"http://127.0.0.1:{gw.port}/consumers/g/instances/h"


@pytest.mark.parametrize("body,message", [
    (b'  {"name":"c1",', "an array or object not closed at byte 15"),
    (b'{"name":"c1","format":NaN}', "not JSON (a misplaced or missing comma, colon, bracket or name) at byte 22"),
    (b'{"name":"\\ud800"}', "an invalid string escape (or a lone surrogate) at byte 16"),
    (b'{"name":"c1"}\xff', "not UTF-8 at byte 13"),
    (b"[" * 2000 + b"]" * 2000, "nested too deeply at byte 1024"),
])
def test_a_consumer_body_that_is_not_json_is_400_naming_the_byte(gw, body: bytes, message: str) -> None:
    """The reason and the byte offset (counted in the body as sent, whitespace included) where
    reading stopped (docs/api.md §12)."""
    msg = assert_error(gw.request("POST", "/consumers/g1", body), 400, 400)
    assert msg == f"the request body is not JSON: {message}"
