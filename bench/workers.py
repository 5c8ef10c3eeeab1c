"""Multi-core: the same load against ``--workers 1`` and ``--workers N``; throughput ratio.

    .venv/bin/python -m bench.workers [--workers N] [--rounds R] [--duration S] [--json] ...

Each run starts a fresh gateway (``--workers 1`` or ``--workers N``: N processes sharing the
port with SO_REUSEPORT, one librdkafka producer each) against the same broker and drives it
with wrk after a warm-up: v2 produce, 100 records (100-byte BINARY values) per request,
keep-alive, 128 connections (the kernel spreads them over the workers). The runs alternate
1, N, 1, N, ... for ``--rounds`` rounds (3 by default). Reported: records/s, gateway CPU per
record (all its processes and threads) and the share of a core the gateway used, each as the
median of the rounds with their min–max. The row's figure is each round's records/s with N
workers over the same round's records/s with one, median (min–max); it scales when that is
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
    check_rounds,
    fmt,
    fmt_spread,
    median_of,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    ratio,
    round_ratios,
    spread,
    value_bytes,
    verdict,
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
    p.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="interleaved rounds of --workers 1 and --workers N, at least 3 (default 3)")
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.workers < 2:
        return "--workers must be at least 2"
    if args.records_per_request < 1:
        return "--records-per-request must be at least 1"
    return check_rounds(args.rounds) or check_request_args(args)


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    n = args.records_per_request
    def row_for(workers: int, i: int) -> RequestRow:  # a fresh topic per run
        return RequestRow(f"v2-w{workers}-r{i}", f"v2 batches of {n} records, {args.connections} conns", V2_CT,
                          v1v2_body(value_bytes(args.value_bytes), n), n, None, '"offset":null',
                          0.0, "record")

    result = new_result("bench.workers", args, dict(
        workers=args.workers, rounds=args.rounds, duration_s=args.duration, warmup_s=args.warmup,
        connections=args.connections, wrk_threads=args.threads, partitions=args.partitions,
        value_bytes=args.value_bytes, records_per_request=n,
    ))
    rounds: list[dict[str, dict[str, Any]]] = []
    base_args = list(args.gateway_arg or ())
    with Rig("bench-workers", args, log_dir) as rig:
        result["broker"] = rig.info
        try:
            for i in range(1, args.rounds + 1):
                one: dict[str, dict[str, Any]] = {}
                for side, workers in (("one", 1), ("many", args.workers)):
                    args.gateway_arg = [*base_args, f"--workers={workers}"]
                    gw = rig.start_gateway(log_name=f"gateway-{workers}-round{i}.log")
                    try:
                        try:
                            r = measure_row(row_for(workers, i), rig, gw, args, log_dir)
                        except BenchError as exc:
                            raise rig.gateway_failed(
                                gw, exc, f"bench.workers --workers {workers}, round {i}") from None
                        r["workers"] = workers
                        r["processes"] = len(gw.pids())
                        one[side] = r
                    finally:
                        rig.stop_gateway(gw)
                rounds.append(one)
        finally:
            args.gateway_arg = base_args
        result["gateway_processes"] = [g.report() for g in rig.gateways]
    summarize(result, rounds)
    return result


FIGURES = ("records_per_s", "cpu_us_per_record", "gateway_cores", "p50_ms", "p99_ms",
           "other_load_cores")


def summarize(result: dict[str, Any], rounds: list[dict[str, dict[str, Any]]]) -> None:
    p = result["params"]
    for one in rounds:
        for r in one.values():
            r["p50_ms"], r["p99_ms"] = r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000
    for one in rounds[1:]:  # the plot draws round 1; the other rounds' samples are dropped
        for r in one.values():
            r.pop("per_second", None)
            r.pop("cpu_series", None)
    result["rounds"] = rounds
    result["summary"] = {side: {key: spread([one[side][key] for one in rounds]) for key in FIGURES}
                         for side in ("one", "many")}
    result["summary"]["processes"] = {side: rounds[0][side]["processes"] for side in ("one", "many")}
    # Each round's N-worker rate over the same round's one-worker rate.
    scaling = round_ratios(rounds, "many", "one", "records_per_s")
    result["scaling"] = scaling
    for side, workers in (("one", 1), ("many", p["workers"])):
        loads = [one[side]["other_load_cores"] for one in rounds]
        busy = [c for c in loads if c > 0.2]
        if busy:
            other_load_warning(result, max(busy), f"{len(busy)} of the {len(loads)} --workers "
                               f"{workers} runs ({min(busy):.2f}–{max(busy):.2f} cores)")
    s = result["summary"]
    v = verdict(
        ROW.replace("N", str(p["workers"]), 1), "records/s",
        median_of(s["many"]["records_per_s"]), median_of(s["one"]["records_per_s"]),
        "--workers 1", 1.0, target_on="ratio", target_text="> 1× (scales)",
        higher_is_better=True, rounds_ratio=scaling,
    )
    v["pass"] = None if scaling is None else scaling["median"] > 1.0
    result["verdicts"].append(v)
    n = p["records_per_request"]
    result["series"]["throughput"] = [{
        "label": f"--workers {r['workers']} (round 1)", "unit": "records/s",
        "t": [x[0] for x in r["per_second"]],
        "rate": [x[1] * n for x in r["per_second"]],
    } for r in rounds[0].values()]


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_header(result, (
        f"bench.workers: v2 produce, {p['records_per_request']} records per request, "
        f"{p['connections']} keep-alive connections, wrk -t{p['wrk_threads']}, {p['duration_s']:g} s "
        f"measured per run after {p['warmup_s']:g} s of warm-up, a fresh gateway per run, "
        f"{p['rounds']} interleaved rounds of --workers 1 then --workers {p['workers']}; "
        "median (min–max)"
    ))
    s = result["summary"]
    rows = [("", "processes", "records/s", "/ --workers 1", "CPU µs/rec", "gw cores", "p50 ms",
             "p99 ms", "other load cores")]
    for side, workers in (("one", 1), ("many", p["workers"])):
        x = s[side]
        rows.append((
            f"--workers {workers}", str(s["processes"][side]), fmt_spread(x["records_per_s"], ",.0f"),
            fmt_spread(result["scaling"], ".2f") if side == "many" else "",
            fmt_spread(x["cpu_us_per_record"], ".2f"), fmt_spread(x["gateway_cores"], ".2f"),
            fmt_spread(x["p50_ms"], ".2f"), fmt_spread(x["p99_ms"], ".2f"),
            fmt_spread(x["other_load_cores"], ".2f"),
        ))
    print_rows(rows)
    print()
    for i, one in enumerate(result["rounds"], 1):
        a, b = one["one"], one["many"]
        print(f"round {i}: --workers 1 {a['records_per_s']:,.0f} rec/s (other load "
              f"{a['other_load_cores']:.2f} cores), --workers {p['workers']} "
              f"{b['records_per_s']:,.0f} rec/s (other load {b['other_load_cores']:.2f} cores): "
              f"{fmt(ratio(b['records_per_s'], a['records_per_s']), '.2f')}×")
    print_gateway_processes(result)
    print_warnings(result)
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.workers", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
