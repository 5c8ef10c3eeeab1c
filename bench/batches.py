"""v1 and v2 produce with 100 records per request: gateway CPU per record.

    .venv/bin/python -m bench.batches [--rounds R] [--duration S] [--records-per-request N] [--json] ...

Two variants, each against a fresh topic, driven by wrk (bench.wrk) over keep-alive
connections on 127.0.0.1:
- v1: ``POST /topics/{t}``, ``application/vnd.kafka.binary.v1+json``,
  ``{"records":[{"value":"<base64 of 100 bytes>"}, ... 100 of them]}``
- v2: the same body as ``application/vnd.kafka.binary.v2+json``
An answer is good when it is a 200 with no ``"offset":null`` (a record that failed in Kafka).
The gateway's CPU over the measured run is divided by the records acknowledged; the same-run
baseline is the plain confluent-kafka producer loop (bench.baseline). After one warm-up per
variant, ``--rounds`` interleaved rounds (3 by default) each run v1, v2, then the baseline:
every figure is the median of the rounds with their min–max, and "/ baseline" is each round's
gateway figure over that round's baseline, median (min–max). Target (issue 4): ≤ 2.5 µs CPU
per record.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.common import bench_main, check_rounds, value_bytes
from bench.requests import (
    V1_CT,
    V2_CT,
    RequestRow,
    add_request_arguments,
    check_request_args,
    print_rows_table,
    run_request_rows,
    v1v2_body,
)

TARGET_US_PER_RECORD = 2.5


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.batches", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Two seconds of warm-up: the first variant of a run measured ~0.5-1 µs/record worse than
    # the same variant alone after one second (the fresh gateway and topic settling).
    add_request_arguments(p, duration=5.0, connections=64, baseline_records=500_000, warmup=2.0)
    p.add_argument("--records-per-request", type=int, default=100, metavar="N",
                   help="records in each request (default 100)")
    p.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="interleaved rounds of v1, v2 and the baseline, at least 3 (default 3)")
    p.add_argument("--only", choices=("v1", "v2"), help="run one variant only")
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.records_per_request < 1:
        return "--records-per-request must be at least 1"
    return check_rounds(args.rounds) or check_request_args(args)


def make_rows(args: argparse.Namespace) -> list[RequestRow]:
    n = args.records_per_request
    body = v1v2_body(value_bytes(args.value_bytes), n)
    rows = [
        RequestRow("v1", f"v1 batches of {n} records, {args.connections} conns", V1_CT, body, n,
                   None, '"offset":null', TARGET_US_PER_RECORD, "record"),
        RequestRow("v2", f"v2 batches of {n} records, {args.connections} conns", V2_CT, body, n,
                   None, '"offset":null', TARGET_US_PER_RECORD, "record"),
    ]
    return [r for r in rows if args.only in (None, r.key)]


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    return run_request_rows("bench.batches", args, log_dir, make_rows(args),
                            {"records_per_request": args.records_per_request})


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_rows_table(result, (
        f"bench.batches: {p['records_per_request']} records ({p['value_bytes']}-byte BINARY values) "
        f"per request, keep-alive, {p['connections']} connections, wrk -t{p['wrk_threads']}, "
        f"{p['partitions']} partitions; {p['warmup_s']:g} s warm-up per variant, then "
        f"{p['rounds']} interleaved rounds of {p['duration_s']:g} s per variant and "
        f"{p['baseline_records']:,} records of the producer loop; median (min–max)"
    ))


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.batches", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
