"""Ownership records of consumer instances with ``--workers`` (gateway.consume.owners): which
worker holds each (group, name), claimed whole or not at all, released when the instance goes,
cleared for a slot when its worker starts again, forgotten when its worker is gone; and the
registry claiming and releasing them (gateway.consume.instances, over the stand-in consumer)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_consumer import FakeCluster, FakeRdConsumer

from gateway.consume.instances import (
    InstanceExists,
    InstanceRegistry,
    InstanceSettings,
    TooManyInstances,
)
from gateway.consume.owners import InstanceOwners, RecordFailed, record_name


def records(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in directory.iterdir()}


def test_a_name_is_held_by_one_worker_at_a_time(tmp_path: Path) -> None:
    zero = InstanceOwners(str(tmp_path), 0, pid=100)
    one = InstanceOwners(str(tmp_path), 1, pid=101)
    zero.claim("g", "a")
    assert records(tmp_path) == {record_name("g", "a"): "0 100\n"}  # nothing half-written left
    with pytest.raises(InstanceExists) as taken:
        one.claim("g", "a")
    assert (taken.value.status, taken.value.error_code) == (409, 40902)
    assert "group g has an instance named a (worker 0)" in taken.value.message
    with pytest.raises(InstanceExists):
        zero.claim("g", "a")  # (the registry refuses its own names before claiming)
    assert one.owner("g", "a") == (0, 100)
    assert zero.owner("g", "a") is None  # its own: not another worker's
    assert one.owner("g", "b") is None and one.owner("h", "a") is None
    one.release("g", "a")  # not its record: left alone
    assert one.owner("g", "a") == (0, 100)
    zero.release("g", "a")
    assert records(tmp_path) == {}
    one.claim("g", "a")  # free again
    assert zero.owner("g", "a") == (1, 101)


def test_record_names_are_short_and_tell_group_from_name(tmp_path: Path) -> None:
    long = "x" * 255
    names = {record_name(g, n) for g, n in [("g", "a"), ("ga", ""), ("g", "a\x00"), (long, long),
                                            ("ü/..", "名前")]}
    assert len(names) == 5 and all(len(n) < 64 and "/" not in n for n in names)
    owners = InstanceOwners(str(tmp_path), 0)
    owners.claim(long, long)
    owners.claim("ü/..", "名前")
    assert InstanceOwners(str(tmp_path), 1).owner("ü/..", "名前") == (0, os.getpid())


def test_a_worker_starting_in_a_slot_clears_that_slots_records_only(tmp_path: Path) -> None:
    old = InstanceOwners(str(tmp_path), 1, pid=200)
    old.claim("g", "a")
    old.claim("g", "b")
    InstanceOwners(str(tmp_path), 0, pid=300).claim("g", "c")
    # A claim cut short by the old process's death leaves its temporary file.
    (tmp_path / (record_name("g", "d") + ".1.tmp")).write_text("1 200\n")
    (tmp_path / (record_name("g", "e") + ".0.tmp")).write_text("0 300\n")  # slot 0 is claiming
    (tmp_path / "worker-1.sock").write_text("")  # not a record
    new = InstanceOwners(str(tmp_path), 1, pid=201)
    assert new.clear() == 2
    assert sorted(records(tmp_path)) == sorted([record_name("g", "c"), record_name("g", "e") + ".0.tmp",
                                                "worker-1.sock"])
    new.claim("g", "a")
    assert InstanceOwners(str(tmp_path), 0).owner("g", "a") == (1, 201)


def test_a_gone_workers_record_is_forgotten_unless_it_changed(tmp_path: Path) -> None:
    gone = InstanceOwners(str(tmp_path), 1, pid=200)
    other = InstanceOwners(str(tmp_path), 0, pid=300)
    gone.claim("g", "a")
    seen = other.owner("g", "a")
    assert seen == (1, 200)
    # Meanwhile the slot's next worker cleared it and made a new instance of that name.
    successor = InstanceOwners(str(tmp_path), 1, pid=201)
    successor.clear()
    successor.claim("g", "a")
    assert not other.forget("g", "a", seen)
    assert other.owner("g", "a") == (1, 201)
    assert other.forget("g", "a", (1, 201))
    assert other.owner("g", "a") is None
    assert not other.forget("g", "a", (1, 201))  # nothing left


def test_a_record_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    owners = InstanceOwners(str(tmp_path / "gone"), 0)
    with pytest.raises(RecordFailed) as failed:
        owners.claim("g", "a")
    assert failed.value.status == 500
    assert "cannot record which worker holds consumer instance a of group g" in failed.value.message


# -- the registry ----------------------------------------------------------------------------
@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    lp.close()


def run(loop: asyncio.AbstractEventLoop, aw: Any) -> Any:
    return loop.run_until_complete(asyncio.wait_for(aw, 5))


def test_the_registry_claims_each_name_and_releases_it_when_the_instance_goes(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    cluster = FakeCluster()
    other = InstanceOwners(str(tmp_path), 1)
    other.claim("g", "theirs")

    def make(**kw: Any) -> InstanceRegistry:
        return InstanceRegistry(loop, {}, factory=cluster.factory, consumer_class=FakeRdConsumer,
                                owners=InstanceOwners(str(tmp_path), 0), **kw)

    reg = make(max_instances=3, idle_timeout=0.2)
    with pytest.raises(InstanceExists):
        reg.create("g", "theirs", None, "confluent", InstanceSettings())
    assert len(reg) == 0 and cluster.created == []  # refused before any consumer was made
    a = run(loop, reg.create("g", "a", None, "confluent", InstanceSettings()))
    b = run(loop, reg.create("g", None, None, "confluent", InstanceSettings()))  # a generated name
    assert other.owner("g", "a") == (0, os.getpid()) and other.owner("g", b.name) is not None
    assert reg.holds("g", "a") and not reg.holds("g", "theirs")
    run(loop, reg.delete(a))
    assert other.owner("g", "a") is None
    run(loop, asyncio.sleep(0.5))  # b expires
    assert other.owner("g", b.name) is None
    # A name the limit refuses is not claimed.
    full = make(max_instances=0)
    with pytest.raises(TooManyInstances):
        full.create("g", "x", None, "confluent", InstanceSettings())
    assert other.owner("g", "x") is None
    # A consumer librdkafka refuses gives its name back.
    bad = InstanceRegistry(loop, {"invalid.property": 1}, factory=cluster.factory,
                           consumer_class=FakeRdConsumer, owners=InstanceOwners(str(tmp_path), 0))
    with pytest.raises(Exception, match="invalid.property"):
        run(loop, bad.create("g", "y", None, "confluent", InstanceSettings()))
    assert other.owner("g", "y") is None
    # Shutdown releases everything.
    run(loop, reg.create("g", "c", None, "confluent", InstanceSettings()))
    for r in (reg, full, bad):
        run(loop, r.close(1.0))
    assert records(tmp_path) == {record_name("g", "theirs"): f"1 {os.getpid()}\n"}
