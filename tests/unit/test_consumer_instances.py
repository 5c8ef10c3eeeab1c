"""Consumer instances (gateway.consume.instances) over the stand-in consumer
(tests/support/fake_consumer.py): the registry's limits, names and owners, one worker thread per
instance running its calls in order, idle expiry that a request in progress holds off, and
closing on delete, on renewal and at shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.fake_consumer import FakeCluster, FakeRdConsumer

from gateway import errors
from gateway.consume.instances import (
    MAX_JOBS,
    InstanceBusy,
    InstanceExists,
    InstanceNotFound,
    InstanceRegistry,
    InstanceSettings,
    InvalidConsumerConfig,
    StateConflict,
    TooManyInstances,
    consumer_config,
)

BINARY = FakeRdConsumer.FORMAT_V2_BINARY


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    lp.close()


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.create_topic("t", 2)
    return c


def registry(loop: asyncio.AbstractEventLoop, cluster: FakeCluster, **kw: Any) -> InstanceRegistry:
    return InstanceRegistry(loop, {"bootstrap.servers": "b:1"}, factory=cluster.factory,
                            consumer_class=FakeRdConsumer, **kw)


def run(loop: asyncio.AbstractEventLoop, aw: Any, timeout: float = 5.0) -> Any:
    return loop.run_until_complete(asyncio.wait_for(aw, timeout))


def test_an_instance_gets_the_gateway_properties_and_what_it_needs_itself() -> None:
    conf = consumer_config(
        {"bootstrap.servers": "b:1", "session.timeout.ms": "2000", "fetch.wait.max.ms": 5},
        "g1", InstanceSettings(auto_offset_reset="none", auto_commit=False, fetch_min_bytes=10,
                               isolation_level="read_committed"),
    )
    assert conf["bootstrap.servers"] == "b:1"
    assert conf["session.timeout.ms"] == "2000"
    assert conf["fetch.wait.max.ms"] == 5  # the gateway's property wins over the default
    assert conf["queued.max.messages.kbytes"] == 8192  # the prefetch is bounded
    assert (conf["group.id"], conf["enable.auto.commit"], conf["enable.auto.offset.store"]) == (
        "g1", False, False)
    assert conf["auto.offset.reset"] == "error"  # Confluent's "none"
    assert conf["isolation.level"] == "read_committed"
    assert "fetch.min.bytes" not in conf  # it bounds an answer, not librdkafka's fetches


def test_names_owners_and_the_limit(loop: asyncio.AbstractEventLoop, cluster: FakeCluster) -> None:
    reg = registry(loop, cluster, max_instances=2)
    a = run(loop, reg.create("g", "a", "alice", "confluent", InstanceSettings()))
    b = run(loop, reg.create("g", None, None, "confluent", InstanceSettings()))
    assert b.name.startswith("rest-consumer-") and len(reg) == 2
    assert reg.get("g", "a", "alice") is a
    with pytest.raises(InstanceNotFound) as nf:
        reg.get("g", "a", "bob")  # another principal's: it does not exist for bob
    assert (nf.value.status, nf.value.error_code) == (404, 40403)
    with pytest.raises(InstanceNotFound):
        reg.get("other", "a", "alice")
    with pytest.raises(InstanceExists) as ex:
        reg.create("g", "a", "alice", "confluent", InstanceSettings())
    assert (ex.value.status, ex.value.error_code) == (409, 40902)
    with pytest.raises(TooManyInstances) as full:
        reg.create("g", "c", None, "confluent", InstanceSettings())
    assert (full.value.status, full.value.error_code) == (503, 50302)
    assert "--max-consumer-instances" in full.value.message
    with pytest.raises(InvalidConsumerConfig):
        reg.create("g", "a/b", None, "confluent", InstanceSettings())
    run(loop, reg.delete(a))
    assert a.closed and cluster.created[0].closed
    run(loop, reg.create("g", "a", None, "confluent", InstanceSettings()))  # the name is free again
    run(loop, reg.close(1.0))


def test_a_property_librdkafka_refuses_is_422_and_leaves_no_instance(
    loop: asyncio.AbstractEventLoop, cluster: FakeCluster
) -> None:
    reg = InstanceRegistry(loop, {"invalid.property": 1}, factory=cluster.factory,
                           consumer_class=FakeRdConsumer)
    with pytest.raises(InvalidConsumerConfig) as bad:
        run(loop, reg.create("g", "a", None, "confluent", InstanceSettings()))
    assert (bad.value.status, bad.value.error_code) == (422, 42204)
    assert "invalid.property" in bad.value.message
    assert len(reg) == 0
    run(loop, reg.close(1.0))


def test_every_call_runs_on_the_instance_thread_in_order(
    loop: asyncio.AbstractEventLoop, cluster: FakeCluster
) -> None:
    reg = registry(loop, cluster)
    inst = run(loop, reg.create("g", "a", None, "confluent", InstanceSettings(auto_offset_reset="earliest")))
    for i in range(3):
        cluster.produce("t", i % 2, b"v%d" % i)
    futs = [inst.assign([("t", 0), ("t", 1)]), inst.fetch(BINARY, 1 << 20, 1000), inst.commit(None)]
    run(loop, asyncio.gather(*futs))
    data, n = futs[1].result()
    assert n == 3
    assert data.startswith(b'[{"topic":"t","key":null,"value":"djA=","partition":0,"offset":0}')
    assert futs[2].result() == [("t", 0, 2), ("t", 1, 1)]
    consumer = cluster.created[0]
    assert consumer.calls[:3] == ["assign", "fetch", "commit"]
    assert len(consumer.thread_ids) == 1 and threading.get_ident() not in consumer.thread_ids
    assert inst.records_consumed == reg.records_consumed == 3
    run(loop, reg.close(1.0))


def test_subscribe_and_assign_exclude_each_other(loop: asyncio.AbstractEventLoop, cluster: FakeCluster) -> None:
    reg = registry(loop, cluster)
    inst = run(loop, reg.create("g", "a", None, "confluent", InstanceSettings()))
    run(loop, inst.subscribe(["t"], None))
    with pytest.raises(StateConflict) as conflict:
        inst.assign([("t", 0)])
    assert (conflict.value.status, conflict.value.error_code) == (409, 40903)
    run(loop, inst.unsubscribe())
    # A group member gets a new consumer (it left the group with the old one).
    assert len(cluster.created) == 2 and cluster.created[0].closed
    run(loop, inst.assign([("t", 0)]))
    assert cluster.created[1].calls == ["assign"]
    with pytest.raises(StateConflict):
        inst.subscribe(["t"], None)
    run(loop, reg.close(1.0))


def test_a_busy_instance_refuses_more_requests(loop: asyncio.AbstractEventLoop, cluster: FakeCluster) -> None:
    reg = registry(loop, cluster)
    inst = run(loop, reg.create("g", "a", None, "confluent", InstanceSettings()))
    run(loop, inst.assign([("t", 0)]))
    futs = [inst.fetch(BINARY, 1000, 300) for _ in range(MAX_JOBS)]
    with pytest.raises(InstanceBusy) as busy:
        inst.fetch(BINARY, 1000, 300)
    assert (busy.value.status, busy.value.error_code) == (429, 42902)
    run(loop, asyncio.sleep(0.1))  # the first fetch is waiting for records now
    run(loop, reg.delete(inst))  # the running fetch ends; the waiting ones fail with 404
    outcomes = [f.exception() for f in futs]
    assert outcomes[0] is None
    assert all(isinstance(e, InstanceNotFound) for e in outcomes[1:])
    run(loop, reg.close(1.0))


def test_an_idle_instance_expires_but_not_during_a_request(
    loop: asyncio.AbstractEventLoop, cluster: FakeCluster
) -> None:
    reg = registry(loop, cluster, idle_timeout=0.3)
    idle = run(loop, reg.create("g", "idle", None, "confluent", InstanceSettings()))
    busy = run(loop, reg.create("g", "busy", None, "confluent", InstanceSettings()))
    run(loop, busy.assign([("t", 0)]))
    # A read that waits for records longer than the timeout keeps its instance alive.
    start = time.monotonic()
    data, n = run(loop, busy.fetch(BINARY, 1000, 800))
    assert (data, n) == (b"[]", 0) and time.monotonic() - start >= 0.7
    assert reg.get("g", "busy", None) is busy
    assert idle.closed and cluster.created[0].closed  # the other one expired meanwhile
    with pytest.raises(InstanceNotFound):
        reg.get("g", "idle", None)
    run(loop, asyncio.sleep(0.6))
    with pytest.raises(InstanceNotFound):
        reg.get("g", "busy", None)
    assert reg.expired == 2
    run(loop, reg.close(1.0))


def test_shutdown_and_renewal_close_every_instance(loop: asyncio.AbstractEventLoop, cluster: FakeCluster) -> None:
    reg = registry(loop, cluster)
    insts = [run(loop, reg.create("g", f"i{i}", None, "confluent", InstanceSettings(auto_offset_reset="earliest")))
             for i in range(3)]
    run(loop, insts[0].assign([("t", 0)]))
    cluster.produce("t", 0, b"x")
    run(loop, insts[0].fetch(BINARY, 1000, 1000))
    reg.renew()
    assert len(reg) == 0 and all(i.closed for i in insts)
    run(loop, asyncio.gather(*(i.stopped for i in insts)))
    assert all(c.closed for c in cluster.created)
    # Auto commit: what the first one handed out was committed when it left.
    assert cluster.committed["g"] == {("t", 0): 1}
    more = run(loop, reg.create("g", "j", None, "confluent", InstanceSettings()))
    run(loop, reg.close(1.0))
    assert more.closed and cluster.created[-1].closed
    with pytest.raises(errors.ShuttingDown):
        reg.create("g", "k", None, "confluent", InstanceSettings())
