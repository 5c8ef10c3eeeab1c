"""Memory of the embedded broker per record it is sent, for each ``--embedded-storage``.

    .venv/bin/python -m bench.brokermem [--records N] [--value-bytes B] [--rounds R] [--json]

For each storage (``memory``, ``null``) and round, a fresh embedded Tansu broker on a free
loopback port (started as the gateway starts it: ``gateway.kafka.embedded.EmbeddedBroker``),
one topic of 6 partitions, and one fast confluent-kafka producer straight to it (no gateway, no
HTTP: linger.ms=5, 1 MB batches, acks=1, keyless records of ``--value-bytes`` bytes). A warm-up
of ``--warmup`` records first, then the broker's resident memory (VmRSS of the Tansu process)
before and after ``--records`` more, each read once it stopped moving. The figure is the growth
in MB (10^6 bytes) per million records: median of the rounds (min–max). Rounds alternate the
storages. Each round is bounded by ``--timeout``; the memory storage holds every record it was
sent until its broker stops at the end of the round (about 111 MB per million 100-byte records).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.common import BenchError, machine_info, versions
from gateway.kafka.embedded import STORAGE_ENGINES, EmbeddedBroker, find_free_port

PARTITIONS = 6
PRODUCER_CONFIG: dict[str, Any] = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "acks": 1,
    "enable.idempotence": False,
    "delivery.report.only.error": True,
}


def broker_rss(pid: int) -> int:
    """VmRSS of process *pid*, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def settled_rss(pid: int, settle: float = 0.2, tries: int = 15) -> int:
    """VmRSS once two readings *settle* seconds apart agree within 256 KiB (or after *tries*)."""
    last = broker_rss(pid)
    for _ in range(tries):
        time.sleep(settle)
        now = broker_rss(pid)
        if abs(now - last) < 256 * 1024:
            return now
        last = now
    return last


def produce(bootstrap: str, topic: str, count: int, value: bytes, deadline: float) -> None:
    """Send *count* records of *value* to *topic* and wait until the broker acknowledged them;
    BenchError on a delivery error or past *deadline* (time.monotonic())."""
    errors: list[str] = []

    def on_error(err: Any, msg: Any) -> None:  # delivery.report.only.error: failures only
        if len(errors) < 5:
            errors.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "on_delivery": on_error, **PRODUCER_CONFIG})
    send = p.produce
    for _ in range(count):
        while True:
            try:
                send(topic, value)
                break
            except BufferError:
                p.poll(0.01)
                if time.monotonic() > deadline:
                    raise BenchError("the producer's queue stayed full past --timeout") from None
    left = p.flush(max(0.1, deadline - time.monotonic()))
    if left:
        raise BenchError(f"{left} records unacknowledged at --timeout")
    if errors:
        raise BenchError(f"delivery errors: {errors}")


def one_round(storage: str, args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    port = find_free_port("127.0.0.1")
    broker = EmbeddedBroker("127.0.0.1", port, storage=storage,
                            log_path=os.path.join(log_dir, f"tansu-{storage}-{port}.log"))
    broker.start()
    try:
        assert broker.pid is not None
        topic = f"brokermem-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 4})
        try:
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(10)
        except KafkaException as exc:
            raise BenchError(f"cannot create topic {topic}: {exc}") from None
        del admin
        value = bytes(i % 251 for i in range(args.value_bytes))
        idle = broker_rss(broker.pid)
        produce(broker.bootstrap, topic, args.warmup, value, deadline)
        before = settled_rss(broker.pid)
        t0 = time.monotonic()
        produce(broker.bootstrap, topic, args.records, value, deadline)
        seconds = time.monotonic() - t0
        after = settled_rss(broker.pid)
    finally:
        broker.stop()
    return {
        "storage": storage,
        "idle_mb": idle / 1e6,
        "before_mb": before / 1e6,
        "after_mb": after / 1e6,
        "mb_per_million": (after - before) / 1e6 / (args.records / 1e6),
        "records_per_s": args.records / seconds,
    }


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every round, in a log directory of its own that is removed when they all succeeded."""
    log_dir = tempfile.mkdtemp(prefix="brokermem-")
    rounds = []
    try:
        for _ in range(args.rounds):
            for storage in args.storage:
                rounds.append(one_round(storage, args, log_dir))
    except BaseException as exc:
        if isinstance(exc, BenchError):
            raise BenchError(f"{exc} (broker logs in {log_dir})") from None
        raise
    shutil.rmtree(log_dir, ignore_errors=True)
    figures = {
        s: spread([r["mb_per_million"] for r in rounds if r["storage"] == s]) for s in args.storage
    }
    return {
        "benchmark": "brokermem",
        "command": "python -m bench.brokermem " + " ".join(sys.argv[1:]),
        "params": {"records": args.records, "warmup": args.warmup,
                   "value_bytes": args.value_bytes, "rounds": args.rounds,
                   "partitions": PARTITIONS, "producer": PRODUCER_CONFIG},
        "machine": machine_info(),
        "platform": platform.platform(),
        "versions": versions(),
        "rounds": rounds,
        "mb_per_million": figures,
    }


def print_table(result: dict[str, Any]) -> None:
    m, v, params = result["machine"], result["versions"], result["params"]
    print(f"command:  {result['command']}")
    print(f"machine:  {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, "
          f"load average {m['loadavg_1m_at_start']:.2f} at start")
    print(f"versions: Python {v['python']}, confluent-kafka {v['confluent_kafka']}, "
          f"librdkafka {v['librdkafka']}, gateway ({v['git']})")
    print(f"run:      {params['records']:,} records of {params['value_bytes']} bytes (no key) per "
          f"round after {params['warmup']:,} warm-up records, {params['rounds']} rounds, "
          f"{params['partitions']} partitions, one producer on loopback")
    print()
    print(f"{'storage':8} {'idle MB':>8} {'before MB':>10} {'after MB':>9} "
          f"{'MB per 1M records':>18} {'records/s':>10}")
    for r in result["rounds"]:
        print(f"{r['storage']:8} {r['idle_mb']:8.1f} {r['before_mb']:10.1f} {r['after_mb']:9.1f} "
              f"{r['mb_per_million']:18.1f} {r['records_per_s']:10,.0f}")
    print()
    for storage, s in result["mb_per_million"].items():
        print(f"{storage}: the broker's RSS grows {s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f}) "
              f"MB per million {params['value_bytes']}-byte records (median (min–max) of "
              f"{params['rounds']} rounds)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.brokermem", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=2_000_000, help="records measured per round")
    p.add_argument("--warmup", type=int, default=200_000, help="records sent before the first reading")
    p.add_argument("--value-bytes", type=int, default=100, help="bytes of each record's value")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--storage", default=",".join(STORAGE_ENGINES),
                   help="comma-separated storages to measure (default: all)")
    p.add_argument("--timeout", type=float, default=120.0, help="limit for each round (seconds)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    args.storage = [s.strip() for s in args.storage.split(",") if s.strip()]
    bad = [s for s in args.storage if s not in STORAGE_ENGINES]
    if bad or not args.storage:
        p.error(f"--storage: expected some of {', '.join(STORAGE_ENGINES)}, got {bad or 'none'}")
    if args.records < 1 or args.warmup < 0 or args.value_bytes < 0 or args.rounds < 1:
        p.error("--records and --rounds must be positive, --warmup and --value-bytes not negative")
    if args.timeout <= 0:
        p.error("--timeout must be positive")
    try:
        result = run(args)
    except BenchError as exc:
        print(f"bench.brokermem: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.brokermem: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
