"""Consumer instances with ``--workers 2`` (docs/api.md §12, "Workers"): the kernel hands each
new connection to either worker, and every request for an instance is answered as by one
process: the worker it lands on hands it over to the one that holds the instance. Real gateway
processes, the compiled consumer and the real broker; every request below is on a new
connection.

Tansu holds a group's join for half the session timeout: the instances get a 2 s session."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from confluent_kafka import Producer
from support.gateway import GatewayProcess
from support.http import HttpResponse, request

from gateway.auth.users import hash_password

V2 = "application/vnd.kafka.v2+json"
SESSION = ("-X", "session.timeout.ms=2000", "-X", "heartbeat.interval.ms=300")
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def call(g: GatewayProcess, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> HttpResponse:
    """One request on a new connection, as a client of the consumer API sends it."""
    data = None if body is None else json.dumps(body).encode()
    return request(g.host, g.port, method, path, data, {"Content-Type": V2, **(headers or {})},
                   timeout=30)


def assert_error(r: HttpResponse, status: int, code: int) -> str:
    assert r.status == status, r
    body = r.json()
    assert list(body) == ["error_code", "message"] and body["error_code"] == code, body
    return str(body["message"])


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def workers_said(g: GatewayProcess, text: str) -> list[str]:
    """The slot of each worker line containing ``text``, in the log's order."""
    return [m.group(1) for m in re.finditer(r"\[worker (\d+)\] [\w.]+: [^\n]*" + re.escape(text), g.log())]


def start(gateway_factory: Any, *args: str) -> GatewayProcess:
    g = gateway_factory("--workers", "2", *SESSION, *args)
    wait_for("both workers listening", lambda: set(workers_said(g, "listening on")) == {"0", "1"}, 30)
    return g


def produce(bootstrap: str, topic: str, records: list[tuple[int, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for partition, value in records:
        p.produce(topic, value, partition=partition)
        assert p.flush(10) == 0  # one batch each (Tansu's ListOffsets)


def values(records: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(r["value"]) for r in records]


def test_every_request_for_an_instance_reaches_the_worker_that_holds_it(
    gateway_factory: Any, topic_factory: Any
) -> None:
    g = start(gateway_factory)
    topic = topic_factory(2)
    produce(g.bootstrap or "", topic, [(i % 2, b"r%d" % i) for i in range(6)])
    r = call(g, "POST", "/consumers/wk", {"name": "one", "auto.offset.reset": "earliest",
                                          "auto.commit.enable": "false"})
    assert r.status == 200, r
    base = urlsplit(r.json()["base_uri"]).path
    assert base == "/consumers/wk/instances/one"

    assert call(g, "POST", base + "/subscription", {"topics": [topic]}).status == 204
    r = call(g, "GET", base + "/subscription")
    assert r.status == 200 and r.json() == {"topics": [topic]}
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(got) < 6:
        assert time.monotonic() < deadline, got
        r = call(g, "GET", base + "/records?timeout=300")
        assert r.status == 200 and r.header("content-type") == "application/vnd.kafka.binary.v2+json", r
        got += r.json()
    assert sorted(values(got)) == [b"r%d" % i for i in range(6)]  # each record once
    assert {(x["partition"], x["offset"]) for x in got} == {(p, o) for p in (0, 1) for o in range(3)}
    r = call(g, "GET", base + "/assignments")
    assert r.status == 200
    assert sorted((p["topic"], p["partition"]) for p in r.json()["partitions"]) == [(topic, 0), (topic, 1)]
    # Back to the start of partition 0: its records come again.
    partition0 = {"partitions": [{"topic": topic, "partition": 0}]}
    assert call(g, "POST", base + "/positions/beginning", partition0).status == 204
    again: list[dict[str, Any]] = []
    while len(again) < 3:
        assert time.monotonic() < deadline, again
        again += call(g, "GET", base + "/records?timeout=300").json()
    assert values(again) == [b"r0", b"r2", b"r4"]
    assert call(g, "POST", base + "/positions",
                {"offsets": [{"topic": topic, "partition": 1, "offset": 2}]}).status == 204
    assert values(call(g, "GET", base + "/records?timeout=3000").json()) == [b"r5"]
    r = call(g, "POST", base + "/offsets")  # everything consumed
    assert r.status == 200
    assert sorted(r.json(), key=lambda o: o["partition"]) == [
        {"topic": topic, "partition": 0, "consumed": 2, "committed": 2},
        {"topic": topic, "partition": 1, "consumed": 2, "committed": 2},
    ]
    r = call(g, "GET", base + "/offsets", {"partitions": [{"topic": topic, "partition": 1}]})
    assert r.json() == {"offsets": [{"topic": topic, "partition": 1, "offset": 3, "metadata": ""}]}
    for _ in range(4):
        assert call(g, "GET", base + "/assignments").status == 200
    # The name is taken, whichever worker a create lands on (16 creates: all on one worker
    # once in 30,000 runs).
    for _ in range(16):
        msg = assert_error(call(g, "POST", "/consumers/wk", {"name": "one"}), 409, 40902)
        assert "group wk has an instance named one" in msg
    assert call(g, "DELETE", base, {}).status == 204
    for _ in range(6):
        assert_error(call(g, "GET", base + "/assignments"), 404, 40403)
    # Free again: created anew (on either worker), usable from both, deleted.
    assert call(g, "POST", "/consumers/wk", {"name": "one"}).status == 200
    for _ in range(6):
        assert call(g, "GET", base + "/subscription").json() == {"topics": []}
    assert call(g, "DELETE", base).status == 204

    # Both workers took the instance's requests and the creates of its name; those for the
    # other worker's instance were handed over (the access log says so; each worker writes
    # its lines every 0.1 s).
    wait_for("both workers' lines", lambda: (
        set(workers_said(g, '"GET /consumers/wk/instances/one/')) == {"0", "1"}
        and set(workers_said(g, '"POST /consumers/wk" 409')) == {"0", "1"}), 5)
    handed = re.findall(r"\[worker (\d)\] gateway\.access: .* handed over to worker (\d)", g.log())
    assert handed and all(a != b for a, b in handed), handed


def test_another_principal_gets_404_through_the_hand_off(
    gateway_factory: Any, tmp_path: Path
) -> None:
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}:{hash_password(f'{u}-pw', CHEAP)}\n" for u in ("alice", "bob")))
    users.chmod(0o600)
    acl = tmp_path / "acl.txt"
    acl.write_text("alice group g-*\nbob group g-*\nalice consume *\nbob consume *\n")
    g = start(gateway_factory, "--users-file", str(users), "--acl-file", str(acl))

    def auth(user: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{user}-pw".encode()).decode()}

    r = call(g, "POST", "/consumers/g-own", {"name": "mine"}, auth("alice"))
    assert r.status == 200, r
    base = urlsplit(r.json()["base_uri"]).path
    for _ in range(16):
        assert call(g, "GET", base + "/subscription", headers=auth("alice")).status == 200
        assert_error(call(g, "GET", base + "/subscription", headers=auth("bob")), 404, 40403)
    assert_error(call(g, "DELETE", base, headers=auth("bob")), 404, 40403)
    assert_error(call(g, "POST", "/consumers/g-own", {"name": "mine"}, auth("bob")), 409, 40902)
    # A client cannot pass for another principal by sending the hand-off field itself.
    forged = {**auth("bob"), "Kafka-Gateway-Handoff": "v1; principal=alice"}
    for _ in range(16):
        assert_error(call(g, "GET", base + "/subscription", headers=forged), 404, 40403)
    def handed() -> set[tuple[str, str]]:
        pattern = r"gateway\.access: .*/subscription\" (\d+) .* handed over to worker \d user=(\w+)"
        return set(re.findall(pattern, g.log()))

    wait_for("hand-offs for both", lambda: {("200", "alice"), ("404", "bob")} <= handed(), 5)
    assert call(g, "DELETE", base, headers=auth("alice")).status == 204


def test_a_killed_workers_instances_are_gone_and_its_successor_serves_new_ones(
    gateway_factory: Any
) -> None:
    g = start(gateway_factory)

    def creates() -> list[str]:
        """The worker that created each instance so far, in order (once its line is out)."""
        return workers_said(g, '"POST /consumers/wkill" 200')

    def create(name: str) -> str:
        n = len(creates())
        assert call(g, "POST", "/consumers/wkill", {"name": name}).status == 200
        wait_for("its access line", lambda: len(creates()) == n + 1, 5)
        return creates()[-1]

    # An instance in each worker (creates land where the kernel sends them).
    held: dict[str, str] = {}
    while len(set(held.values())) < 2:
        assert len(held) < 30, held
        name = f"k{len(held)}"
        held[name] = create(name)
    pids = {m.group(1): int(m.group(2)) for m in re.finditer(r"worker (\d) started \(pid (\d+)\)", g.log())}
    victim = held[name]  # the last one: the first instance in its worker
    os.kill(pids[victim], signal.SIGKILL)
    # (Once it is reaped its listening socket is gone: no new connection is queued to it.)
    wait_for("the worker reaped", lambda: f"(pid {pids[victim]}) exited with -9" in g.log(), 5)
    dead = [x for x, slot in held.items() if slot == victim]
    alive = [x for x, slot in held.items() if slot != victim]
    # Until its successor starts, every connection goes to the other worker: the dead
    # worker's instances are gone (404), the other's still answer.
    for x in dead:
        assert_error(call(g, "GET", f"/consumers/wkill/instances/{x}/subscription"), 404, 40403)
    for x in alive:
        assert call(g, "GET", f"/consumers/wkill/instances/{x}/subscription").status == 200
    wait_for("its successor", lambda: workers_said(g, "listening on").count(victim) == 2, 20)
    for _ in range(6):
        for x in dead:
            assert_error(call(g, "GET", f"/consumers/wkill/instances/{x}/subscription"), 404, 40403)
        for x in alive:
            assert call(g, "GET", f"/consumers/wkill/instances/{x}/assignments").status == 200
    # Its names are free again; new instances land on both workers, the successor included,
    # and each answers from either.
    fresh = dead + [f"new{i}" for i in range(15)]
    assert victim in {create(x) for x in fresh}
    for x in fresh:
        for _ in range(2):
            assert call(g, "GET", f"/consumers/wkill/instances/{x}/subscription").status == 200
        assert call(g, "DELETE", f"/consumers/wkill/instances/{x}").status == 204
