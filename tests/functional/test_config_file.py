"""The real gateway process started from a TOML configuration file (README "Configuration"):
the file's settings, librdkafka properties and topics take effect, a variable and a flag
override the file, and ``--workers`` processes keep the file's settings even once the file is
gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.http import request
from support.kafka import consume_topic, wait_for_topic

from gateway.kafka.embedded import EmbeddedBroker, find_free_port

if TYPE_CHECKING:
    from collections.abc import Callable


pytestmark = pytest.mark.timeout(120)

JSON = {"Content-Type": "application/json"}


def batch(gateway: Any, topic: str, entries: list[dict]) -> tuple[int, dict]:
    r = request(
        gateway.host,
        gateway.port,
        "POST",
        f"/v3/clusters/c/topics/{topic}/records:batch",
        json.dumps({"entries": entries}).encode(),
        JSON,
    )
    return r.status, r.json()


def entry(i: int, data: str = "x", partition: int | None = None) -> dict:
    e: dict = {"id": f"e{i}", "value": {"type": "STRING", "data": data}}
    if partition is not None:
        e["partition_id"] = partition
    return e


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def test_gateway_runs_with_the_settings_of_its_config_file(
    broker: EmbeddedBroker, tmp_path: Path, gateway_command: Callable[..., Any]
) -> None:
    topic = f"cfg-{uuid.uuid4().hex[:10]}"
    unused_port = find_free_port("127.0.0.1")
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
# what an operator would write
listen = "127.0.0.1:{unused_port}"   # the --listen flag of the test harness wins
bootstrap-servers = "{broker.bootstrap}"
max-batch-entries = 2                # GATEWAY_MAX_BATCH_ENTRIES below wins
max-record-bytes = 4096
kafka-stats-interval = 0

[kafka]
message.max.bytes = 2000             # a librdkafka property: bigger records are refused
linger.ms = 1

[topics]
{topic} = 3
"""
    )
    g = gateway_command("--config", str(path), env={"GATEWAY_MAX_BATCH_ENTRIES": "3"})
    # [topics]: created at start-up with its partitions.
    wait_for_topic(broker.bootstrap, topic, 3)
    # The flag's address is served, the file's is not.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", unused_port), timeout=2):
        pass
    # Environment over file: three entries are allowed, four are not.
    status, doc = batch(g, topic, [entry(i) for i in range(4)])
    assert (status, doc["error_code"]) == (422, 42208), doc
    assert doc["message"] == "a batch has 1 to 3 entries, not 4"
    # [kafka] message.max.bytes: the big record is refused by librdkafka, 413 in its place.
    status, doc = batch(g, topic, [entry(0, partition=2), entry(1, "y" * 3000), entry(2)])
    assert status == 207, doc
    assert [s["id"] for s in doc["successes"]] == ["e0", "e2"]
    assert doc["successes"][0]["partition_id"] == 2
    assert [(f["id"], f["error_code"]) for f in doc["failures"]] == [("e1", 413)]
    # max-record-bytes from the file: a record over 4096 bytes ends a v3 stream.
    big = json.dumps({"value": {"type": "STRING", "data": "z" * 5000}}).encode()
    r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", big, JSON)
    reports = [json.loads(line) for line in r.body.splitlines()]
    assert r.status == 200 and [x["error_code"] for x in reports] == [400], reports
    assert reports[0]["message"].endswith("record exceeds the 4096-byte limit")
    got = consume_topic(broker.bootstrap, topic, 3, 2, quiet_period=0.5)
    assert sorted(x.value for v in got.values() for x in v) == [b"x", b"x"]
    assert g.terminate(30) == 0


def test_workers_keep_the_file_settings_after_the_file_is_gone(
    broker: EmbeddedBroker, tmp_path: Path, gateway_command: Callable[..., Any]
) -> None:
    topic = f"cfgw-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'bootstrap-servers = "{broker.bootstrap}"\nworkers = 2\nmax-batch-entries = 2\n'
        f"kafka-stats-interval = 0\n[topics]\n{topic} = 1\n"
    )
    g = gateway_command("--config", str(path))
    deadline = time.monotonic() + 20
    while len(children(g.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = children(g.proc.pid)
    assert len(workers) == 2
    path.unlink()
    # A worker that dies is restarted with the same settings, file or no file.
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (len(children(g.proc.pid)) < 2 or workers[0] in children(g.proc.pid)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert len(children(g.proc.pid)) == 2 and "restarting it" in g.log()
    deadline = time.monotonic() + 20
    while "gateway: listening on" not in g.log().split("restarting it", 1)[1]:
        assert time.monotonic() < deadline, g.log()
        time.sleep(0.1)
    # Every connection lands on one of the two workers; each enforces the file's limit.
    seen: set[str] = set()
    for i in range(40):
        status, doc = batch(g, topic, [entry(0), entry(1), entry(2)])
        assert (status, doc["message"]) == (422, "a batch has 1 to 2 entries, not 3"), (i, doc)
        r = request(g.host, g.port, "GET", "/metrics")
        seen.update(
            line.split('worker="', 1)[1].split('"', 1)[0]
            for line in r.body.decode().splitlines()
            if line.startswith("gateway_open_connections{")
        )
    assert seen == {"0", "1"}
    assert g.terminate(60) == 0
