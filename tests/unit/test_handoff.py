"""Hand-offs between ``--workers`` processes (gateway.api.consumers, docs/api.md §12 "Workers"),
in this process: two of the gateway's servers as workers 0 and 1, sharing a run directory, each
on its own port so that every request goes to the worker the test names, with the stand-in
consumer (tests/support/fake_consumer.py) behind their instances. The same with real worker
processes and the real broker: tests/functional/test_consumer_workers.py."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from support.fake_consumer import FakeCluster, FakeRdConsumer
from support.http import HttpResponse, request

from gateway.api import consumers
from gateway.config import Config
from gateway.consume.instances import InstanceRegistry
from gateway.consume.owners import InstanceOwners
from gateway.server import Server
from gateway.workers import make_run_dir

V2 = "application/vnd.kafka.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"


class _Producer:
    async def drain(self, deadline: float) -> int:
        return 0

    def outstanding(self) -> int:
        return 0


class Workers:
    """Workers 0 and 1: each a server (its port, its hand-off socket) and its instances, on one
    loop of their own thread."""

    def __init__(self, cluster: FakeCluster, run_dir: str) -> None:
        self.run_dir = run_dir
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: list[Server] = []
        self.registries: list[InstanceRegistry] = []
        self.ports: list[int] = []

        async def setup(slot: int) -> None:
            config = Config(listen=("127.0.0.1", 0), access_log=False, worker_slot=slot,
                            worker_run_dir=run_dir)
            owners = InstanceOwners(run_dir, slot)
            owners.clear()
            registry = InstanceRegistry(self.loop, {}, factory=cluster.factory,
                                        consumer_class=FakeRdConsumer, owners=owners)
            server = Server(config, self.loop, _Producer(), None, instances=registry)  # type: ignore[arg-type]
            self.ports.append((await server.start())[0][1])
            self.servers.append(server)
            self.registries.append(registry)

        for slot in (0, 1):
            self.call(setup(slot))

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def request(self, slot: int, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> HttpResponse:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        return request("127.0.0.1", self.ports[slot], method, path, data,
                       {"Content-Type": V2, **(headers or {})}, timeout=10)

    def stop(self) -> None:
        async def shutdown() -> None:
            for server in self.servers:
                await server.shutdown(self.loop.time() + 2)

        self.call(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def run_dir() -> Iterator[str]:
    path = make_run_dir()  # (a socket's path must be short: not under pytest's tmp_path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.create_topic("t", 2)
    return c


@pytest.fixture
def workers(cluster: FakeCluster, run_dir: str) -> Iterator[Workers]:
    w = Workers(cluster, run_dir)
    yield w
    w.stop()


def assert_error(r: HttpResponse, status: int, code: int) -> str:
    assert r.status == status, r
    body = r.json()
    assert list(body) == ["error_code", "message"] and body["error_code"] == code, body
    return str(body["message"])


def test_every_request_reaches_the_worker_that_holds_the_instance(workers: Workers, cluster: FakeCluster) -> None:
    for i in range(3):
        cluster.produce("t", i % 2, b"v%d" % i)
    r = workers.request(0, "POST", "/consumers/g", {"name": "i", "auto.offset.reset": "earliest",
                                                     "auto.commit.enable": "false"})
    assert r.status == 200
    base = "/consumers/g/instances/i"
    # A compressed body is handed over as the content it carries.
    r = workers.request(1, "POST", base + "/subscription", gzip.compress(b'{"topics":["t"]}'),
                        {"Content-Encoding": "gzip"})
    assert (r.status, r.body, r.header("content-type")) == (204, b"", None)
    # Answered as worker 0 answers it: status, type and body.
    direct, handed = (workers.request(w, "GET", base + "/subscription", {}) for w in (0, 1))
    assert (handed.status, handed.header("content-type"), handed.body) == (
        direct.status, direct.header("content-type"), direct.body) == (200, V2, b'{"topics":["t"]}')
    r = workers.request(1, "GET", base + "/records?timeout=1000&max_bytes=100000", None,
                        {"Accept": BINARY_V2})
    assert r.status == 200 and r.header("content-type") == BINARY_V2
    assert sorted(x["value"] for x in r.json()) == ["djA=", "djE=", "djI="]
    assert_error(workers.request(1, "GET", base + "/records", None, {"Accept": "application/vnd.kafka.json.v2+json"}),
                 406, 40601)
    r = workers.request(1, "POST", base + "/offsets")
    assert r.json() == [{"topic": "t", "partition": 0, "consumed": 1, "committed": 1},
                        {"topic": "t", "partition": 1, "consumed": 0, "committed": 0}]
    r = workers.request(1, "GET", base + "/offsets", {"partitions": [{"topic": "t", "partition": 0}]})
    assert r.json() == {"offsets": [{"topic": "t", "partition": 0, "offset": 2, "metadata": ""}]}
    assert workers.registries[1].records_consumed == 0 and workers.registries[0].records_consumed == 3
    # A client's own hand-off field is not believed (here it would make the instance another
    # principal's: 404): the worker sends its own.
    r = workers.request(1, "GET", base + "/assignments", None, {"Kafka-Gateway-Handoff": "v1; principal=eve"})
    assert r.status == 200
    # The name is taken on both; deleted through worker 1, it is gone from both, and free.
    for w in (0, 1):
        assert_error(workers.request(w, "POST", "/consumers/g", {"name": "i"}), 409, 40902)
    assert workers.request(1, "DELETE", base).status == 204
    assert len(workers.registries[0]) == 0
    for w in (0, 1):
        assert_error(workers.request(w, "GET", base + "/subscription"), 404, 40403)
    assert workers.request(1, "POST", "/consumers/g", {"name": "i"}).status == 200
    assert workers.request(0, "GET", base + "/assignments").json() == {"partitions": []}


def test_an_instance_of_a_worker_that_is_gone_is_404_and_its_name_free(workers: Workers) -> None:
    assert workers.request(0, "POST", "/consumers/g", {"name": "i"}).status == 200
    # Worker 0's sockets close as when its process dies (its instance and record stay).

    async def die() -> None:
        workers.servers[0].stop_listening()

    workers.call(die())
    msg = assert_error(workers.request(1, "GET", "/consumers/g/instances/i/subscription"), 404, 40403)
    assert "the worker that held it, 0, is gone" in msg
    assert workers.registries[1].owners.owner("g", "i") is None  # type: ignore[union-attr]
    assert workers.request(1, "POST", "/consumers/g", {"name": "i"}).status == 200


def test_a_worker_that_does_not_answer_is_503(workers: Workers, run_dir: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "HANDOFF_MARGIN", 0.3)
    # Worker 2 holds an instance, takes connections and never answers.
    InstanceOwners(run_dir, 2).claim("g", "stuck")
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(f"{run_dir}/worker-2.sock")
    mute.listen(8)
    try:
        msg = assert_error(workers.request(1, "GET", "/consumers/g/instances/stuck/assignments"), 503, 50003)
        assert msg == "worker 2, which holds consumer instance stuck of group g, did not answer within 0.3 s: retry"
        r = workers.request(1, "GET", "/consumers/g/instances/stuck/records?timeout=200")
        assert "did not answer within 0.5 s" in assert_error(r, 503, 50003)
    finally:
        mute.close()


def test_the_handoff_socket_takes_only_requests_handed_over(workers: Workers, run_dir: str) -> None:
    assert workers.request(0, "POST", "/consumers/g", {"name": "i"}).status == 200
    path = f"{run_dir}/worker-0.sock"

    def unix(head: str) -> HttpResponse:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(path)
            s.sendall(head.encode() + b"\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        status = int(data.split(b" ", 2)[1])
        return HttpResponse(status, "", [], data.split(b"\r\n\r\n", 1)[1])

    assert unix("GET /consumers/g/instances/i/assignments HTTP/1.1\r\nHost: x\r\n"
                "Kafka-Gateway-Handoff: v1\r\nConnection: close\r\n").status == 200
    assert_error(unix("GET /consumers/g/instances/i/assignments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"),
                 400, 400)
    # Creates, and everything that is not an instance's, stay with the worker a client reaches.
    assert unix("POST /consumers/g HTTP/1.1\r\nHost: x\r\nKafka-Gateway-Handoff: v1\r\n"
                "Content-Length: 2\r\nConnection: close\r\n\r\n{}").status == 404
    assert unix("GET /topics HTTP/1.1\r\nHost: x\r\nKafka-Gateway-Handoff: v1\r\nConnection: close\r\n").status == 404
