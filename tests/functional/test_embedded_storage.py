"""``--embedded-storage memory|null``: what the embedded broker keeps, seen from outside.

With ``null`` the broker acknowledges every record and keeps none: its resident memory stays
flat however many records it is sent (with ``memory`` it grows about 111 MB per million
100-byte records: ``python -m bench.brokermem``), a produce through the gateway answers 200
with offsets, and a consume finds nothing. An invalid value stops the start like any bad flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from support.gateway import ROOT, GatewayProcess, child_pids
from support.http import request
from support.kafka import consume_topic, create_topic

from bench.brokermem import broker_rss, produce
from gateway.kafka.embedded import EmbeddedBroker, find_free_port

pytestmark = pytest.mark.timeout(120)

VALUE = bytes(range(100))  # every record: no key, this 100-byte value
FIRST = 200_000  # records before the first reading (the broker's buffers have grown by then)
TOTAL = 2_000_000
# Growth allowed between the readings. Measured here: 0.0 MB with null storage; the memory
# storage grows about 111 MB per million such records (bench.brokermem), ~200 MB over these
# 1.8 million, so a broker that kept the records could not stay under this bound.
MAX_GROWTH = 30 * 1024 * 1024


def test_null_storage_holds_the_broker_rss_flat_over_two_million_records(
    broker_factory: Callable[..., EmbeddedBroker],
) -> None:
    broker = broker_factory(storage="null")
    assert broker.pid is not None
    topic = create_topic(broker.bootstrap, "null-flat", 6)
    # bench.brokermem's producer: large batches, acks=1; it raises unless the broker
    # acknowledged every record.
    deadline = time.monotonic() + 90
    produce(broker.bootstrap, topic, FIRST, VALUE, deadline)
    time.sleep(0.2)
    after_first = broker_rss(broker.pid)
    produce(broker.bootstrap, topic, TOTAL - FIRST, VALUE, deadline)
    time.sleep(0.2)
    at_end = broker_rss(broker.pid)
    growth = at_end - after_first
    assert growth < MAX_GROWTH, f"the broker grew {growth / 1e6:.1f} MB over {TOTAL - FIRST:,} records"
    # ... and kept none of them.
    assert consume_topic(broker.bootstrap, topic, 6, 0, quiet_period=1.0) == {p: [] for p in range(6)}
    assert broker.running


def tansu_command_lines(pid: int) -> list[list[str]]:
    """The command lines of the children of gateway process *pid* that run a Tansu broker."""
    out = []
    for child in child_pids(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == "broker" and "--storage-engine" in argv:
            out.append(argv)
    return out


def post(g: GatewayProcess, path: str, body: bytes, content_type: str) -> tuple[int, str]:
    r = request(g.host, g.port, "POST", path, body, {"Content-Type": content_type})
    return r.status, r.body.decode()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_gateway_with_null_storage_answers_produce_and_keeps_nothing(
    gateway_command: Callable[..., GatewayProcess], workers: str
) -> None:
    broker_port = find_free_port()
    g = gateway_command(
        "--embedded-broker", f"127.0.0.1:{broker_port}", "--embedded-storage", "null",
        "--topic", "loadtest:3", "--workers", workers,
    )
    g.wait_for_log(rf"embedded broker started on 127\.0\.0\.1:{broker_port} with null storage")
    # The broker (the supervisor's, with --workers) runs with Tansu's null engine.
    [argv] = tansu_command_lines(g.pid)
    assert argv[argv.index("--storage-engine") + 1] == "null://tansu/"

    # v3 produce: 200 and a success report with an offset for each record; nothing is kept, so
    # the same record sent again is given the same offset.
    path = "/v3/clusters/local/topics/loadtest/records"
    record = b'{"partition_id":1,"value":{"type":"STRING","data":"hello"}}'
    offsets = []
    for _ in range(2):
        status, text = post(g, path, record, "application/json")
        assert status == 200, text
        [report] = [json.loads(line) for line in text.splitlines() if line]
        assert report["error_code"] == 200, report
        assert (report["topic_name"], report["partition_id"]) == ("loadtest", 1)
        assert isinstance(report["offset"], int) and report["offset"] >= 0, report
        offsets.append(report["offset"])
    assert offsets[0] == offsets[1]

    # v1 produce too: 200 with offsets.
    status, text = post(g, "/topics/loadtest/partitions/1", b'{"records":[{"value":"aGk="}]}',
                        "application/vnd.kafka.binary.v1+json")
    assert status == 200, text
    assert json.loads(text)["offsets"] == [{"partition": 1, "offset": offsets[0]}]

    # The topic is there, with its partitions; its records are not: a v1 consume from offset 0
    # answers [] and any later offset is out of range, the partition being empty.
    r = request(g.host, g.port, "GET", "/v3/clusters/local/topics/loadtest")
    assert r.status == 200 and r.json()["partitions_count"] == 3, r
    r = request(g.host, g.port, "GET", "/topics/loadtest/partitions/1?offset=0")
    assert (r.status, r.json()) == (200, []), r
    r = request(g.host, g.port, "GET", f"/topics/loadtest/partitions/1?offset={offsets[0]}")
    assert r.status == 416, r
    assert r.json()["error_code"] == 41601
    assert "the partition has no records and 0 is the end" in r.json()["message"], r


def test_the_memory_storage_says_what_it_costs(gateway_command: Callable[..., GatewayProcess]) -> None:
    broker_port = find_free_port()
    g = gateway_command("--embedded-broker", f"127.0.0.1:{broker_port}")
    g.wait_for_log(r"embedded broker started on .*memory grows with every record \(about \d+ MB "
                   r"per million 100-byte records\).*with --embedded-storage null it discards")
    [argv] = tansu_command_lines(g.pid)
    assert argv[argv.index("--storage-engine") + 1] == "memory://tansu/"


@pytest.mark.parametrize(
    "args,env,where",
    [
        (["--embedded-storage", "disk"], {}, "--embedded-storage"),
        ([], {"GATEWAY_EMBEDDED_STORAGE": "disk"}, "GATEWAY_EMBEDDED_STORAGE"),
    ],
)
def test_an_invalid_storage_stops_the_start_with_exit_2(
    args: list[str], env: dict[str, str], where: str
) -> None:
    broker_port = find_free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    p = subprocess.run(
        [sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{find_free_port()}",
         "--embedded-broker", f"127.0.0.1:{broker_port}", *args],
        cwd=ROOT, env={**environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=60,
    )
    assert p.returncode == 2, p.stdout
    assert p.stdout.splitlines() == [
        f"kafka-gateway: configuration error: {where}: expected one of memory, null, got 'disk'"
    ]
