"""Consuming through the gateway against a plain consumer loop: CPU per record, three ways.

    .venv/bin/python -m bench.consume [--per-partition N] [--rounds R] [--json] ...

Set-up (not measured): a fresh topic of ``--partitions`` partitions gets ``--per-partition``
records of ``--value-bytes`` bytes (no key) in each, from a plain producer. One gateway serves
every round. Each round then reads the whole topic four times, one phase after the other:

- baseline: a plain confluent-kafka consumer (bench.baseline, its own process) reading the
  topic front to back with ``assign()`` + ``consume(1000)``; its CPU per record.
- v2 records: a consumer instance (Confluent's v2 API, binary format) assigned every partition
  from the beginning, read with ``GET .../records`` of ``--v2-records`` records each (its
  ``max_bytes`` and the instance's ``fetch.min.bytes`` are that many values' bytes), one
  keep-alive connection, until it has every record; then the instance is deleted.
- v1 consume: ``--connections`` keep-alive connections, each reading one partition front to
  back with ``GET /topics/{t}/partitions/{p}?offset=O&count=--v1-count``, the next request at
  the offset after the last record of the previous one, as a v1 client reads.
- stream: one ``GET /v3/clusters/{c}/topics/{t}/records:stream?offset=earliest&max_records=N``
  read until the gateway ends it after every record.

Every phase checks it read each record once (the count per partition, and the offsets of the
v1 answers). A gateway phase's figure is the gateway process's CPU (utime+stime of all its
threads from /proc: the event loop, the consumers' worker threads and librdkafka's) from the
phase's first request to its last byte, divided by the records read; the client's own CPU is
not counted. Each gateway figure is divided by the same round's baseline; the table gives the
median of the rounds' ratios with their min–max. Targets (issue 12): v2 records of 1,000 and v1
consume of 100 at most 2× the plain loop's CPU per record, the stream at most 1.5×.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import threading
import time
from typing import Any

from bench import baseline
from bench.common import (
    CLK_TCK,
    BenchError,
    GatewayProcess,
    Rig,
    bench_main,
    check_rounds,
    common_arguments,
    cpu_ticks,
    fmt_spread,
    machine_busy_ticks,
    main_thread_ticks,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    spread,
    value_bytes,
    verdict,
)

PHASES = ("v2", "v1", "stream")
TARGETS = {"v2": 2.0, "v1": 2.0, "stream": 1.5}
BASELINE_BATCH = 1000
V2_TYPE = "application/vnd.kafka.v2+json"
V2_BINARY = "application/vnd.kafka.binary.v2+json"
OFFSET_MARK = b'"offset":'
PARTITION_MARK = b'"partition":'


def fill_topic(bootstrap: str, topic: str, partitions: int, per_partition: int, size: int,
               timeout: float) -> None:
    from confluent_kafka import Producer

    value = value_bytes(size)
    failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                         "enable.idempotence": True, "on_delivery": on_delivery})
    for i in range(per_partition):
        for p in range(partitions):
            while True:
                try:
                    producer.produce(topic, value, partition=p)
                    break
                except BufferError:
                    producer.poll(0.05)
        if not i & 0xFF:
            producer.poll(0)
    if producer.flush(timeout) or failed:
        raise BenchError(f"filling the topic: {failed} records failed")


class Http:
    """One keep-alive connection to the gateway."""

    def __init__(self, port: int, timeout: float) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None, accept: str | None = None
             ) -> tuple[int, bytes]:
        headers = {"Content-Type": V2_TYPE}
        if accept:
            headers["Accept"] = accept
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


class Window:
    """The gateway's CPU (and the machine's, the client's, the broker's) over one phase."""

    def __init__(self, gw: GatewayProcess, broker_pid: int | None) -> None:
        self.gw, self.broker_pid = gw, broker_pid
        self.t0 = time.perf_counter()
        self.ticks = (gw.cpu_ticks(), main_thread_ticks(gw.pid), cpu_ticks(), machine_busy_ticks(),
                      cpu_ticks(broker_pid) if broker_pid is not None else 0)

    def close(self, records: int) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        gw0, loop0, self0, machine0, broker0 = self.ticks
        gw = self.gw.cpu_ticks() - gw0
        loop = main_thread_ticks(self.gw.pid) - loop0
        me = cpu_ticks() - self0
        broker = cpu_ticks(self.broker_pid) - broker0 if self.broker_pid is not None else 0
        machine = machine_busy_ticks() - machine0
        return {
            "records": records, "wall_s": wall, "records_per_s": records / wall,
            "cpu_us_per_record": gw / CLK_TCK / records * 1e6,
            "loop_us_per_record": loop / CLK_TCK / records * 1e6,
            "client_us_per_record": me / CLK_TCK / records * 1e6,
            "other_load_cores": max(0, machine - gw - me - broker) / CLK_TCK / wall,
        }


def check_counts(what: str, per_partition: dict[int, int], partitions: int, want: int) -> None:
    bad = {p: n for p, n in per_partition.items() if n != want}
    missing = [p for p in range(partitions) if p not in per_partition]
    if bad or missing:
        raise BenchError(f"{what}: records per partition {dict(sorted(per_partition.items()))}, "
                         f"expected {want} in each of {partitions}")


def count_partitions(body: bytes, into: dict[int, int]) -> int:
    """Records of a JSON answer by partition (each record has ``"partition":N``)."""
    n = 0
    start = 0
    while True:
        i = body.find(PARTITION_MARK, start)
        if i < 0:
            return n
        j = i + len(PARTITION_MARK)
        k = j
        while body[k:k + 1].isdigit():
            k += 1
        p = int(body[j:k])
        into[p] = into.get(p, 0) + 1
        n += 1
        start = k


# -- the phases ------------------------------------------------------------------------------


def v2_phase(gw: GatewayProcess, broker_pid: int | None, topic: str, round_no: int,
             args: argparse.Namespace) -> dict[str, Any]:
    group = f"bench-v2-{os.getpid()}-{round_no}"
    total = args.partitions * args.per_partition
    page_bytes = args.v2_records * args.value_bytes
    c = Http(gw.port, args.timeout)
    base = f"/consumers/{group}/instances/reader"
    try:
        status, body = c.call("POST", f"/consumers/{group}", {
            "name": "reader", "format": "binary", "auto.offset.reset": "earliest",
            "auto.commit.enable": "false", "fetch.min.bytes": str(page_bytes),
            "consumer.request.timeout.ms": "1000"})
        if status != 200:
            raise BenchError(f"v2: creating the instance: {status} {body[:300]!r}")
        parts = [{"topic": topic, "partition": p} for p in range(args.partitions)]
        for path, payload in ((f"{base}/assignments", {"partitions": parts}),
                              (f"{base}/positions/beginning", {"partitions": parts})):
            status, body = c.call("POST", path, payload)
            if status != 204:
                raise BenchError(f"v2: POST {path}: {status} {body[:300]!r}")
        got: dict[int, int] = {}
        n = 0
        deadline = time.monotonic() + args.timeout
        window = Window(gw, broker_pid)
        while n < total:
            if time.monotonic() > deadline:
                raise BenchError(f"v2: {n} of {total} records within {args.timeout:g} s")
            status, body = c.call("GET", f"{base}/records?max_bytes={page_bytes}&timeout=1000",
                                  accept=V2_BINARY)
            if status != 200:
                raise BenchError(f"v2: GET records: {status} {body[:300]!r}")
            n += count_partitions(body, got)
        out = window.close(n)
        check_counts("v2", got, args.partitions, args.per_partition)
        out["requests"] = None
        return out
    finally:
        try:
            c.call("DELETE", base)
        except OSError:
            pass
        c.close()


def v1_phase(gw: GatewayProcess, broker_pid: int | None, topic: str,
             args: argparse.Namespace) -> dict[str, Any]:
    """``--connections`` readers, each taking partitions front to back in turn."""
    todo = list(range(args.partitions))
    lock = threading.Lock()
    got: dict[int, int] = {}
    failures: list[str] = []
    requests = [0]
    deadline = time.monotonic() + args.timeout

    def reader() -> None:
        c = Http(gw.port, args.timeout)
        try:
            while not failures:
                with lock:
                    if not todo:
                        return
                    p = todo.pop(0)
                offset = n = 0
                while True:
                    if time.monotonic() > deadline:
                        failures.append(f"partition {p}: {offset} records within {args.timeout:g} s")
                        return
                    status, body = c.call(
                        "GET", f"/topics/{topic}/partitions/{p}?offset={offset}&count={args.v1_count}")
                    requests[0] += 1
                    if status != 200:
                        failures.append(f"partition {p} offset {offset}: {status} {body[:300]!r}")
                        return
                    k = body.count(OFFSET_MARK)
                    if k == 0:
                        break
                    last = body.rfind(OFFSET_MARK) + len(OFFSET_MARK)
                    end = body.index(b"}", last)
                    if int(body[last:end]) != offset + k - 1:
                        failures.append(f"partition {p}: an answer from offset {offset} with {k} "
                                        f"records ends at offset {int(body[last:end])}")
                        return
                    offset += k
                    n += k
                with lock:
                    got[p] = n
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            c.close()

    window = Window(gw, broker_pid)
    threads = [threading.Thread(target=reader, daemon=True) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout + 5)
    n = sum(got.values())
    out = window.close(max(1, n))
    if failures:
        raise BenchError(f"v1: {failures[0]}")
    check_counts("v1", got, args.partitions, args.per_partition)
    out["requests"] = requests[0]
    return out


def stream_phase(gw: GatewayProcess, broker_pid: int | None, cluster_id: str, topic: str,
                 args: argparse.Namespace) -> dict[str, Any]:
    total = args.partitions * args.per_partition
    path = (f"/v3/clusters/{cluster_id}/topics/{topic}/records:stream?offset=earliest"
            f"&max_records={total}&idle_timeout_ms=10000")
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=args.timeout)
    got: dict[int, int] = {}
    try:
        window = Window(gw, broker_pid)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError(f"stream: the connection closed before the answer: {head[:300]!r}")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"stream: {head[:300]!r} {rest[:300]!r}")
        # Records are one JSON object a line; chunk framing lines hold no '"partition_id":'.
        mark = b'"partition_id":'
        tail = rest
        n = 0
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            buf = tail + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                tail = buf
                continue
            block, tail = buf[:cut], buf[cut:]
            start = 0
            while True:
                i = block.find(mark, start)
                if i < 0:
                    break
                j = i + len(mark)
                k = block.index(b",", j)
                p = int(block[j:k])
                got[p] = got.get(p, 0) + 1
                n += 1
                start = k
            if buf.endswith(b"\r\n0\r\n\r\n"):
                break  # the last chunk: the stream ended (max_records)
        out = window.close(max(1, n))
    finally:
        sock.close()
    check_counts("stream", got, args.partitions, args.per_partition)
    out["requests"] = 1
    return out


def baseline_phase(rig: Rig, topic: str, args: argparse.Namespace, log_dir: str
                   ) -> dict[str, Any]:
    res = baseline.run_consume(rig.bootstrap, rig.broker_pid, topic, args.partitions,
                               args.per_partition, BASELINE_BATCH, args.timeout,
                               os.path.join(log_dir, "baseline.log"))
    return {"records": res["records"], "wall_s": res["wall_s"],
            "records_per_s": res["records_per_s"], "cpu_us_per_record": res["cpu_us_per_record"],
            "other_load_cores": res.get("other_load_cores")}


# -- the run ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.consume", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", type=int, default=4, metavar="N",
                   help="partitions of the topic (default 4)")
    p.add_argument("--per-partition", type=int, default=50_000, metavar="N",
                   help="records in each partition (default 50,000)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value (default 100)")
    p.add_argument("--rounds", type=int, default=3, metavar="R", help="rounds (default 3)")
    p.add_argument("--v2-records", type=int, default=1000, metavar="N",
                   help="records per v2 GET records answer (default 1000)")
    p.add_argument("--v1-count", type=int, default=100, metavar="N",
                   help="records per v1 consume request (default 100)")
    p.add_argument("--connections", type=int, default=4, metavar="N",
                   help="v1 consume connections (default 4)")
    p.add_argument("--phases", default=",".join(PHASES), metavar="LIST",
                   help=f"gateway phases to run, of {','.join(PHASES)} (default: all)")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    phases = [x for x in args.phases.split(",") if x]
    if not phases or set(phases) - set(PHASES):
        return f"--phases: a comma-separated list of {', '.join(PHASES)}"
    args.phases = [x for x in PHASES if x in phases]
    if problem := check_rounds(args.rounds):
        return problem
    if not 1 <= args.v1_count <= 10_000:
        return "--v1-count must be between 1 and 10,000 (the gateway's limit)"
    for name in ("partitions", "per_partition", "value_bytes", "v2_records", "connections"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    return None


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.consume", args, {
        "partitions": args.partitions, "per_partition": args.per_partition,
        "value_bytes": args.value_bytes, "rounds": args.rounds, "v2_records": args.v2_records,
        "v1_count": args.v1_count, "connections": args.connections,
        "baseline_batch": BASELINE_BATCH, "phases": args.phases,
    })
    rounds: list[dict[str, Any]] = []
    with Rig("bench-consume", args, log_dir) as rig:
        result["broker"] = rig.info
        topic = rig.topic("data", args.partitions)
        t0 = time.monotonic()
        fill_topic(rig.bootstrap, topic, args.partitions, args.per_partition, args.value_bytes,
                   args.timeout)
        result["fill_s"] = time.monotonic() - t0
        gw = rig.start_gateway()
        try:
            for r in range(1, args.rounds + 1):
                try:
                    one = {"baseline": baseline_phase(rig, topic, args, log_dir)}
                    if "v2" in args.phases:
                        one["v2"] = v2_phase(gw, rig.broker_pid, topic, r, args)
                    if "v1" in args.phases:
                        one["v1"] = v1_phase(gw, rig.broker_pid, topic, args)
                    if "stream" in args.phases:
                        one["stream"] = stream_phase(gw, rig.broker_pid, rig.cluster_id, topic,
                                                     args)
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, f"round {r}") from None
                rounds.append(one)
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize(result, rounds, args.phases)
    return result


def summarize(result: dict[str, Any], rounds: list[dict[str, Any]], phases: list[str]) -> None:
    result["rounds"] = rounds
    rows: dict[str, dict[str, Any]] = {}
    for phase in ("baseline", *phases):
        rows[phase] = {key: spread([r[phase][key] for r in rounds if r[phase].get(key) is not None])
                       for key in ("cpu_us_per_record", "records_per_s", "loop_us_per_record",
                                   "client_us_per_record")}
        loads = [r[phase].get("other_load_cores") or 0 for r in rounds]
        busy = [c for c in loads if c > 0.2]
        if busy:
            other_load_warning(result, max(busy), f"{len(busy)} of {len(loads)} {phase} phases")
    ratios = {phase: spread([r[phase]["cpu_us_per_record"] / r["baseline"]["cpu_us_per_record"]
                              for r in rounds]) for phase in phases}
    result["rows"] = rows
    result["ratios"] = ratios
    p = result["params"]
    labels = {"v2": f"v2 records, {p['v2_records']} per request",
              "v1": f"v1 consume, {p['v1_count']} per request",
              "stream": "streaming consume"}
    for phase in phases:
        # Judged on the median of the rounds' own ratios (each against its round's baseline).
        result["verdicts"].append(verdict(
            labels[phase], "CPU/record", rows[phase]["cpu_us_per_record"]["median"],
            rows["baseline"]["cpu_us_per_record"]["median"], f"consume({BASELINE_BATCH}) loop",
            TARGETS[phase], target_on="ratio", unit="µs", rounds_ratio=ratios[phase]))


def print_table(result: dict[str, Any]) -> None:
    p, rows, ratios = result["params"], result["rows"], result["ratios"]
    print_header(result, (
        f"bench.consume: a topic of {p['partitions']} × {p['per_partition']:,} records of "
        f"{p['value_bytes']} bytes (filled in {result['fill_s']:.1f} s), read whole in each "
        f"phase, {p['rounds']} rounds; median (min–max)"))
    print()
    table = [("", "CPU µs/record", "/ baseline", "records/s", "loop µs/record", "client µs/rec")]
    names = {"baseline": f"baseline: consume({p['baseline_batch']}) loop",
             "v2": f"v2 GET records, {p['v2_records']} per answer",
             "v1": f"v1 consume, {p['v1_count']} per request, {p['connections']} conns",
             "stream": "streaming consume, one stream"}
    for phase in rows:
        r = rows[phase]
        table.append((names[phase], fmt_spread(r["cpu_us_per_record"], ".2f"),
                      fmt_spread(ratios.get(phase), ".2f") if phase in ratios else "",
                      fmt_spread(r["records_per_s"], ",.0f"), fmt_spread(r["loop_us_per_record"], ".2f"),
                      fmt_spread(r["client_us_per_record"], ".2f")))
    print_rows(table)
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.consume", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
