"""v1 consume of existing records: records/s and gateway CPU µs per record.

    .venv/bin/python -m bench.consume [--duration S] [--count N] [--connections N] [--json] ...

Set-up (not measured): a fresh topic gets ``--per-partition`` records of 100 bytes in each
partition from a plain producer. Then wrk (bench.wrk) sends, over keep-alive connections on
127.0.0.1, ``GET /topics/{t}/partitions/{p}?offset={o}&count={count}`` with a random
partition and a random offset that leaves ``count`` records to read, and counts the records
in every answer. The gateway's CPU (all threads: the event loop and its consumer-pool
threads) over the measured run is divided by the records answered. The same-run baseline is
a plain confluent-kafka consumer (bench.baseline) reading the same topic front to back with
``assign()`` + ``consume(count)``. The issue's target table has no consume row: the figures
are reported without a pass/fail.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from typing import Any

from bench import baseline
from bench.common import (
    SATURATED_LOOP,
    BenchError,
    Rig,
    bench_main,
    common_arguments,
    fmt,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    value_bytes,
    verdict,
)
from bench.wrk import WrkScript, check_answers, run_wrk


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


def get_json(port: int, path: str, timeout: float) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body)
    except ValueError:
        return resp.status, body[:300]


def check_layout(port: int, topic: str, partitions: int, per_partition: int, count: int,
                 timeout: float) -> None:
    """Offsets 0..per_partition-1 in every partition: the last ``count`` come back whole, and
    the end is ``[]`` (also waits out a 503 before the gateway has metadata)."""
    deadline = time.monotonic() + timeout
    path = f"/topics/{topic}/partitions/{partitions - 1}?offset={per_partition - count}&count={count}"
    while True:
        status, body = get_json(port, path, 10.0)
        if status == 200:
            break
        if status != 503 or time.monotonic() > deadline:
            raise BenchError(f"GET {path}: {status} {body}")
        time.sleep(0.2)
    if len(body) != count or body[-1]["offset"] != per_partition - 1:
        raise BenchError(f"GET {path}: {len(body)} records, last offset "
                         f"{body[-1]['offset'] if body else None}; expected {count} up to "
                         f"{per_partition - 1}")
    status, body = get_json(port, f"/topics/{topic}/partitions/0?offset={per_partition}", 10.0)
    if status != 200 or body != []:
        raise BenchError(f"the end of partition 0 is not at offset {per_partition}: {status} {body}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.consume", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, metavar="S",
                   help="seconds of the measured wrk run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, metavar="S",
                   help="seconds of the warm-up wrk run (default 1)")
    p.add_argument("--count", type=int, default=100, metavar="N",
                   help="records asked for in each request (default 100)")
    p.add_argument("--connections", type=int, default=8, metavar="N",
                   help="keep-alive connections (default 8)")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="wrk threads (default 2)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the topic (default 6)")
    p.add_argument("--per-partition", type=int, default=20_000, metavar="N",
                   help="records in each partition (default 20,000)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value (default 100)")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.duration < 1 or args.warmup < 0:
        return "--duration must be at least 1 s, --warmup not negative"
    if not 1 <= args.count <= 10_000:
        return "--count must be between 1 and 10,000 (the gateway's limit)"
    if args.per_partition < args.count:
        return "--per-partition must be at least --count"
    if min(args.connections, args.threads, args.partitions, args.value_bytes) < 1:
        return "--connections, --threads, --partitions and --value-bytes must be at least 1"
    return None


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.consume", args, {
        "duration_s": args.duration, "warmup_s": args.warmup, "count": args.count,
        "connections": args.connections, "wrk_threads": args.threads,
        "partitions": args.partitions, "per_partition": args.per_partition,
        "value_bytes": args.value_bytes,
    })
    with Rig("bench-consume", args, log_dir) as rig:
        result["broker"] = rig.info
        topic = rig.topic("data", args.partitions)
        t0 = time.monotonic()
        fill_topic(rig.bootstrap, topic, args.partitions, args.per_partition, args.value_bytes,
                   args.timeout)
        result["fill_s"] = time.monotonic() - t0
        gw = rig.start_gateway()
        try:
            try:
                check_layout(gw.port, topic, args.partitions, args.per_partition, args.count,
                             args.timeout)
                script = WrkScript(
                    method="GET", path_fmt=f"/topics/{topic}/partitions/%d?offset=%d&count={args.count}",
                    partitions=args.partitions, max_offset=args.per_partition - args.count,
                    count_mark='"offset":',
                )
                url = f"http://127.0.0.1:{gw.port}/topics/{topic}"
                common = dict(threads=args.threads, connections=args.connections, gateway=gw,
                              broker_pid=rig.broker_pid, timeout=args.timeout,
                              script_path=os.path.join(log_dir, "wrk-consume.lua"))
                if args.warmup > 0:
                    check_answers(run_wrk(script, url, duration=args.warmup, **common), "warm-up")
                w = run_wrk(script, url, duration=args.duration, **common)
                check_answers(w, "consume")
            except BenchError as exc:
                raise rig.gateway_failed(gw, exc, "bench.consume") from None
            n, recs = w.requests, w.records
            gwres = w.as_dict()
            gwres.update(
                requests_per_s=n / w.wall_s, records_per_s=recs / w.wall_s,
                records_per_request=recs / n,
                cpu_us_per_record=w.gateway_cpu_s / recs * 1e6 if recs else None,
                cpu_us_per_request=w.gateway_cpu_s / n * 1e6,
                loop_us_per_request=w.gateway_loop_cpu_s / n * 1e6,
                gateway_cores=w.gateway_cpu_s / w.wall_s, loop_cores=w.gateway_loop_cpu_s / w.wall_s,
                wrk_cores=w.wrk_cpu_s / w.wall_s, wrk_us_per_request=w.wrk_cpu_s / n * 1e6,
            )
            result["gateway"] = gwres
            result["baseline"] = baseline.run_consume(
                rig.bootstrap, rig.broker_pid, topic, args.partitions, args.per_partition,
                args.count, args.timeout, os.path.join(log_dir, "baseline.log"),
            )
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    g, b = result["gateway"], result["baseline"]
    if g["records_per_request"] < args.count * 0.99:
        result["warnings"].append(f"answers held {g['records_per_request']:.1f} records on average, "
                                  f"not the {args.count} asked for")
    other_load_warning(result, g["other_load_cores"], "the consume run")
    other_load_warning(result, b["other_load_cores"], "the baseline")
    # Reads run on the gateway's consumer-pool threads, not on its event loop: judge the
    # whole process.
    if g["gateway_cores"] < SATURATED_LOOP:
        result["warnings"].append(
            f"consume: the gateway used {g['gateway_cores']:.2f} cores in all (event loop at "
            f"{fmt(g['peak_loop_share'], '.0%')} at peak): neither it nor wrk "
            f"({g['wrk_cores']:.2f} cores) was saturated; requests waited on the consumer pool")
    result["verdicts"].append(verdict(
        f"v1 consume, count={args.count}, {args.connections} conns", "CPU/record",
        g["cpu_us_per_record"], b["cpu_us_per_record"], "plain consumer µs/record", None, unit="µs",
        target_text="- (none in the issue)",
    ))
    label = f"consume ({args.count} rec/req)"
    result["series"]["throughput"] = [{"label": label, "unit": "records/s",
                                       "t": [x[0] for x in g["per_second"]],
                                       "rate": [x[1] * g["records_per_request"] for x in g["per_second"]]}]
    result["series"]["cpu"] = [dict(g["cpu_series"], label=label)]
    return result


def print_table(result: dict[str, Any]) -> None:
    p, g, b = result["params"], result["gateway"], result["baseline"]
    print_header(result, (
        f"bench.consume: v1 consume, count={p['count']}, random partition and offset per request, "
        f"{p['connections']} keep-alive connections, wrk -t{p['wrk_threads']}, {p['duration_s']:g} s "
        f"measured after {p['warmup_s']:g} s warm-up; topic of {p['partitions']} × "
        f"{p['per_partition']:,} records of {p['value_bytes']} bytes (filled in {result['fill_s']:.1f} s)"
    ))
    print()
    lat = g["latency_us"]
    print_rows([
        ("", "requests/s", "records/s", "rec/req", "CPU µs/rec", "CPU µs/req", "loop µs/req",
         "gw cores", "loop peak", "p50 ms", "p99 ms", "wrk cores"),
        ("gateway", fmt(g["requests_per_s"], ",.0f"), fmt(g["records_per_s"], ",.0f"),
         fmt(g["records_per_request"], ".1f"), fmt(g["cpu_us_per_record"], ".2f"),
         fmt(g["cpu_us_per_request"], ".0f"), fmt(g["loop_us_per_request"], ".0f"),
         fmt(g["gateway_cores"], ".2f"), fmt(g["peak_loop_share"], ".0%"),
         fmt(lat["p50"] / 1000, ".2f"), fmt(lat["p99"] / 1000, ".2f"), fmt(g["wrk_cores"], ".2f")),
        ("baseline (consumer loop)", "", fmt(b["records_per_s"], ",.0f"), "",
         fmt(b["cpu_us_per_record"], ".2f"), "", "", "", "", "", "", ""),
    ])
    print()
    print(f"{g['requests']:,} requests, {g['records']:,} records in {g['wall_s']:.1f} s, "
          f"{g['errors']['timeout']} wrk timeouts; the baseline read {b['records']:,} records in "
          f"{b['wall_s']:.2f} s")
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.consume", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
