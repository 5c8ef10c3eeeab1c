"""Multi-core: the same load against ``--workers 1`` and ``--workers N``; throughput ratio.

    .venv/bin/python -m bench.workers [--workers N] [--duration S] [--json] ...

Each run starts a fresh gateway (``--workers 1``, then ``--workers N``: N processes sharing
the port with SO_REUSEPORT, one librdkafka producer each) against the same broker and drives it
with wrk: v2 produce, 100 records (100-byte BINARY values) per request, keep-alive, 128
connections (the kernel spreads them over the workers). Reported per run: records/s, gateway CPU
per record (all its processes and threads) and the share of a core each worker used. The row's
figure is records/s with N workers over records/s with one, same run; it scales when that is
above 1. On this 2-core machine the broker and wrk share the cores with the gateway, so the
ceiling is well below N.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.common import (
    BenchError,
    Rig,
    bench_main,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    value_bytes,
)
from bench.requests import (
    V2_CT,
    RequestRow,
    add_request_arguments,
    check_request_args,
    measure_row,
    v1v2_body,
)

ROW = "--workers N (SO_REUSEPORT, one producer each)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_request_arguments(p, duration=5.0, connections=128, baseline_records=1)
    # No producer-loop baseline here: the comparison is --workers 1 in the same run.
    p.set_defaults(baseline_records=1)
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="worker processes of the second run (default 2)")
    p.add_argument("--records-per-request", type=int, default=100, metavar="N",
                   help="records in each request (default 100)")
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.workers < 2:
        return "--workers must be at least 2"
    if args.records_per_request < 1:
        return "--records-per-request must be at least 1"
    return check_request_args(args)


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    n = args.records_per_request
    def row_for(workers: int) -> RequestRow:
        return RequestRow(f"v2-w{workers}", f"v2 batches of {n} records, {args.connections} conns", V2_CT,
                          v1v2_body(value_bytes(args.value_bytes), n), n, None, '"offset":null',
                          0.0, "record")

    result = new_result("bench.workers", args, dict(
        workers=args.workers, duration_s=args.duration, warmup_s=args.warmup,
        connections=args.connections, wrk_threads=args.threads, partitions=args.partitions,
        value_bytes=args.value_bytes, records_per_request=n,
    ))
    result["rows"] = []
    base_args = list(args.gateway_arg or ())
    with Rig("bench-workers", args, log_dir) as rig:
        result["broker"] = rig.info
        for workers in (1, args.workers):
            args.gateway_arg = [*base_args, f"--workers={workers}"]
            gw = rig.start_gateway(log_name=f"gateway-{workers}.log")
            try:
                try:
                    r = measure_row(row_for(workers), rig, gw, args, log_dir)
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, f"bench.workers --workers {workers}") from None
                r["workers"] = workers
                r["processes"] = len(gw.pids())
                result["rows"].append(r)
            finally:
                rig.stop_gateway(gw)
        args.gateway_arg = base_args
        result["gateway_processes"] = [g.report() for g in rig.gateways]
    one, many = result["rows"]
    scale = many["records_per_s"] / one["records_per_s"] if one["records_per_s"] else None
    result["scaling"] = scale
    for r in result["rows"]:
        other_load_warning(result, r["other_load_cores"], f"the --workers {r['workers']} run")
    result["verdicts"].append({
        "row": ROW.replace("N", str(args.workers), 1), "metric": "records/s", "unit": "",
        "gateway": many["records_per_s"], "baseline": one["records_per_s"],
        "baseline_what": "--workers 1", "ratio": scale, "target": 1.0, "target_on": "ratio",
        "target_text": "> 1× (scales)", "pass": None if scale is None else scale > 1.0,
        "higher_is_better": True,
    })
    result["series"]["throughput"] = [{
        "label": f"--workers {r['workers']}", "unit": "records/s",
        "t": [x[0] for x in r["per_second"]],
        "rate": [x[1] * n for x in r["per_second"]],
    } for r in result["rows"]]
    return result


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_header(result, (
        f"bench.workers: v2 produce, {p['records_per_request']} records per request, "
        f"{p['connections']} keep-alive connections, wrk -t{p['wrk_threads']}, {p['duration_s']:g} s "
        f"measured per run, --workers 1 then --workers {p['workers']}"
    ))
    rows = [("", "processes", "records/s", "CPU µs/rec", "gw cores", "p50 ms", "p99 ms", "other load")]
    for r in result["rows"]:
        lat = r["latency_us"]
        rows.append((
            f"--workers {r['workers']}", str(r["processes"]), f"{r['records_per_s']:,.0f}",
            f"{r['cpu_us_per_record']:.2f}", f"{r['gateway_cores']:.2f}",
            f"{lat['p50'] / 1000:.2f}", f"{lat['p99'] / 1000:.2f}", f"{r['other_load_cores']:.2f} cores",
        ))
    print_rows(rows)
    print()
    print_gateway_processes(result)
    print_warnings(result)
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.workers", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
