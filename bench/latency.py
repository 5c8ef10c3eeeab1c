"""Report latency of one v3 stream at a fixed rate: half the peak streaming rate by default.

    .venv/bin/python -m bench.latency [--rate R | --fraction F] [--duration S] [--json] ...

The gateway's load is the repository's load generator (gateway.loadgen, the engine of
``kafka-gateway loadgen``, called in-process by bench.load), stream mode, one connection,
records without a key:

1. Peak: a quick closed-loop stream (``--probe-records``, as fast as the gateway answers) gives
   the gateway's peak rate on this machine in this run (or take ``--rate``).
2. Gateway: the loadgen's open loop on one chunked connection to
   ``POST /v3/clusters/{c}/topics/{t}/records`` at the fixed rate (``--fraction`` of the peak)
   for ``--duration`` seconds: every 1 ms tick it writes the records due by then. Report
   latency = the kernel's receive time of the bytes carrying a record's report
   (SO_TIMESTAMPNS, so that the loadgen's own wake-up and work are not counted) - when the
   record was written (the loadgen's ``--latency-from written``): the gateway's share, as the
   baseline's is counted from its produce() call. (From the schedule instead, as the loadgen
   counts by default, each side would add the wait for its next tick, up to 1 ms, and the
   gateway's side the loadgen's own lateness too.)
3. Baseline: the plain confluent-kafka producer (bench.baseline, mode ``rate``) at the same
   rate for the same time, a produce() burst every 1 ms; latency = delivery callback time -
   produce() time.

``--rounds N`` alternates the two N times and gives medians with min-max (a burst of other
load then falls on both sides). Both include librdkafka's ``linger.ms=5`` (the gateway's
default, docs/api.md §5). Targets: gateway p99 report latency ≤ 10 ms at half the peak rate
(issue 4), and at most 1 ms over the plain producer's p99 in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from bench import baseline
from bench.common import (
    CLK_TCK,
    BenchError,
    CpuSampler,
    GatewayProcess,
    Rig,
    bench_main,
    check_rounds,
    common_arguments,
    cpu_ticks,
    fmt,
    machine_busy_ticks,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    spread,
    verdict,
)
from bench.load import rate_series, require_all_acked, run_stream, warm_up
from gateway.loadgen.engine import TICK_S

TARGET_P99_MS = 10.0
TARGET_P99_GAP_MS = 1.0  # the gateway's p99 at most this much over the plain producer's


_NO_FIGURE: dict[str, float | None] = {"median": None, "min": None, "max": None}


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and min-max over the rounds of each side's percentiles, and of the gateway's p99
    minus the baseline's p99 in the same round."""
    out: dict[str, Any] = {}
    for side in ("gateway", "baseline"):
        out[side] = {k: spread(r[side].get(k) for r in rounds) or dict(_NO_FIGURE)
                     for k in ("p50", "p99", "p999", "max")}
    gaps = [r["gateway"]["p99"] - r["baseline"]["p99"] for r in rounds
            if r["gateway"]["p99"] is not None and r["baseline"]["p99"] is not None]
    out["p99_gap"] = spread(gaps) or dict(_NO_FIGURE)
    return out


def paced_stream(gw: GatewayProcess, cluster_id: str, topic: str, args: argparse.Namespace,
                 rate: float, broker_pid: int | None) -> dict[str, Any]:
    """The loadgen's open loop: ``rate`` records/s on one connection for ``--duration`` s."""
    ticks: dict[str, Any] = {}

    def on_start() -> None:  # the loadgen's measured run begins: before its first record
        ticks.update(gw=gw.cpu_ticks(), machine=machine_busy_ticks(), self=cpu_ticks(),
                     broker=cpu_ticks(broker_pid) if broker_pid is not None else None)

    with CpuSampler(gw.pids) as sampler:
        run = run_stream(gw.port, cluster_id, topic, value_bytes=args.value_bytes,
                         partitions=args.partitions, duration=args.duration, rate=rate,
                         timeout=args.timeout, stall_timeout=args.stall_timeout, on_start=on_start,
                         latency_from="written")
        gw_ticks = gw.cpu_ticks() - ticks["gw"]
        br_ticks = (cpu_ticks(broker_pid) - ticks["broker"]
                    if broker_pid is not None and ticks["broker"] is not None else None)
        self_ticks = cpu_ticks() - ticks["self"]
        machine = machine_busy_ticks() - ticks["machine"]
    require_all_acked(run, None, "the fixed-rate stream")
    r = run.result
    n = r.acked
    wall = run.t_end - run.t_start
    samples = r.samples
    if len(samples) > 1 and samples[-1].t - samples[-2].t < 0.5:
        samples = samples[:-1]  # the run's last sample, of its short tail: not a point to plot
    series: dict[str, Any] = {"t": [s.t for s in samples], "p50": [s.p50_ms for s in samples],
                                    "p99": [s.p99_ms for s in samples],
                                    "p999": [s.p999_ms for s in samples],
                                    "x_label": "seconds (by report arrival, 1 s intervals)"}
    ours = gw_ticks + (br_ticks or 0) + self_ticks
    return {
        "records": n, "rate": rate, "achieved_rate": r.sent / args.duration, "wall_s": wall,
        "latency_ms": r.latency_ms,
        "cpu_us_per_record": gw_ticks / CLK_TCK / n * 1e6,
        "gateway_cores": gw_ticks / CLK_TCK / wall,
        "broker_cpu_us_per_record": br_ticks / CLK_TCK / n * 1e6 if br_ticks is not None else None,
        "loadgen_cpu_us_per_record": r.loadgen_cpu_us_per_record,
        "other_load_cores": max(0.0, machine - ours) / CLK_TCK / wall,
        "latency_series": series,
        "throughput_series": rate_series("latency run (fixed rate)", samples),
        "cpu_series": sampler.series(run.t_start, run.t_end),
    }


def probe_peak(gw: GatewayProcess, cluster_id: str, topic: str, args: argparse.Namespace) -> dict[str, Any]:
    """The loadgen's closed loop: ``--probe-records`` records as fast as they go."""
    n = args.probe_records
    run = run_stream(gw.port, cluster_id, topic, value_bytes=args.value_bytes,
                     partitions=args.partitions, records=n, timeout=args.timeout,
                     stall_timeout=args.stall_timeout)
    require_all_acked(run, n, "peak probe")
    wall = run.result.duration_s
    return {"records": n, "wall_s": wall, "records_per_s": n / wall}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, metavar="R",
                   help="records/s to send at (default: --fraction of the probed peak)")
    p.add_argument("--fraction", type=float, default=0.5, metavar="F",
                   help="share of the probed peak rate to send at (default 0.5)")
    p.add_argument("--probe-records", type=int, default=200_000, metavar="N",
                   help="records of the full-speed probe of the peak rate (default 200,000)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="seconds of sending at the fixed rate, gateway and baseline each (default 10)")
    p.add_argument("--rounds", type=int, default=3, metavar="N",
                   help="alternate the gateway's and the baseline's runs N times (at least 3); "
                   "the figures are the medians over the rounds, with min-max (default 3)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topics (default 6)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value (default 100)")
    p.add_argument("--warmup", type=int, default=1000, metavar="N",
                   help="records sent before the measured phases, not counted (default 1000)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="S",
                   help="stop a load generator run (warm-up, probe, fixed rate) when no report "
                   "arrives for this long (default 30)")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.rate is not None and args.rate <= 0:
        return "--rate must be positive"
    if not 0 < args.fraction <= 1:
        return "--fraction must be in (0, 1]"
    if args.duration < 1 or args.probe_records < 1000:
        return "--duration must be at least 1 s, --probe-records at least 1000"
    if min(args.partitions, args.value_bytes) < 1:
        return "--partitions and --value-bytes must be at least 1"
    return check_rounds(args.rounds)


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.latency", args, {
        "fraction": args.fraction, "rate": args.rate, "probe_records": args.probe_records,
        "duration_s": args.duration, "partitions": args.partitions,
        "value_bytes": args.value_bytes, "tick_ms": TICK_S * 1000,
        "load": "gateway.loadgen stream mode, open loop, 1 connection, no key",
        "producer_settings": baseline.PRODUCER_SETTINGS, "rounds": args.rounds,
    })
    result["rounds"] = []
    with Rig("bench-latency", args, log_dir) as rig:
        result["broker"] = rig.info
        gw = rig.start_gateway()
        try:
            try:
                topic = rig.topic("gw", args.partitions)
                warm_up(gw.port, rig.cluster_id, topic, args)
                if args.rate is None:
                    result["peak"] = probe_peak(gw, rig.cluster_id, topic, args)
                    rate = result["peak"]["records_per_s"] * args.fraction
                else:
                    rate = args.rate
                result["rate"] = rate
            except BenchError as exc:
                raise rig.gateway_failed(gw, exc, "bench.latency") from None
            base_topic = rig.topic("base", args.partitions)
            # Rounds alternate the two sides, so that a burst of other load on the machine
            # falls on both rather than on one.
            for k in range(args.rounds):
                try:
                    result["gateway"] = paced_stream(gw, rig.cluster_id, topic, args, rate,
                                                     rig.broker_pid)
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, "bench.latency") from None
                result["baseline"] = baseline.run_rate(
                    rig.bootstrap, rig.broker_pid, base_topic, rate, args.duration, args.value_bytes,
                    args.warmup, args.timeout, os.path.join(log_dir, f"baseline-{k}.log"),
                    TICK_S,
                )
                result["rounds"].append({
                    "gateway": result["gateway"]["latency_ms"],
                    "baseline": result["baseline"]["latency_ms"],
                    "other_load_cores": {"gateway": result["gateway"]["other_load_cores"],
                                         "baseline": result["baseline"]["other_load_cores"]},
                })
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    g, b = result["gateway"], result["baseline"]
    other_load_warning(result, g["other_load_cores"], "the gateway's fixed-rate run")
    other_load_warning(result, b["other_load_cores"], "the baseline's fixed-rate run")
    if g["achieved_rate"] < 0.97 * rate:
        result["warnings"].append(f"the load generator sent {g['achieved_rate']:,.0f} of "
                                  f"{rate:,.0f} records/s")
    summary = summarize_rounds(result["rounds"])
    result["rounds_summary"] = summary
    g_p99, b_p99 = summary["gateway"]["p99"]["median"], summary["baseline"]["p99"]["median"]
    at = f"{args.fraction:g}× peak" if args.rate is None else "a given rate"
    row = f"latency at {at} ({rate:,.0f} records/s), 1 stream"
    many = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    result["verdicts"].append(verdict(
        row, f"p99 report latency{many}", g_p99, b_p99, "plain producer p99", TARGET_P99_MS,
        unit="ms",
    ))
    result["verdicts"].append(verdict(
        row, f"p99 minus the plain producer's p99{many}", summary["p99_gap"]["median"], None,
        "-", TARGET_P99_GAP_MS, unit="ms",
    ))
    result["series"]["latency"] = {
        "over_time": dict(g["latency_series"], label=f"gateway at {rate:,.0f} records/s"),
        "percentiles": {"gateway": g["latency_ms"], "baseline": b["latency_ms"]},
        "target_ms": TARGET_P99_MS,
    }
    result["series"]["throughput"] = [dict(g["throughput_series"], label="latency run (fixed rate)",
                                           unit="records/s")]
    result["series"]["cpu"] = [dict(g["cpu_series"], label="latency run (fixed rate)")]
    return result


def print_table(result: dict[str, Any]) -> None:
    p, g, b = result["params"], result["gateway"], result["baseline"]
    peak = result.get("peak")
    how = (f"{p['fraction']:g} × the probed peak of {peak['records_per_s']:,.0f} records/s "
           f"({peak['records']:,} records in {peak['wall_s']:.2f} s)") if peak else "given by --rate"
    print_header(result, (
        f"bench.latency: one v3 stream at a fixed {result['rate']:,.0f} records/s ({how}), "
        f"{p['duration_s']:g} s (gateway.loadgen open loop, a {p['tick_ms']:g} ms tick), {p['value_bytes']}-byte BINARY "
        f"values, {p['partitions']} partitions"
    ))
    print()
    rounds = p.get("rounds", 1)
    if rounds > 1:
        print(f"last of {rounds} rounds:")
    rows = [("", "records", "records/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
             "CPU µs/rec", "cores")]
    for name, x, cores in (("gateway (report latency)", g, g["gateway_cores"]),
                           ("baseline (delivery callback)", b, b["cpu_s"] / b["wall_s"])):
        lat = x["latency_ms"]
        rows.append((name, f"{x['records']:,}", fmt(x["achieved_rate"], ",.0f"),
                     fmt(lat["p50"], ".2f"), fmt(lat["p90"], ".2f"), fmt(lat["p99"], ".2f"),
                     fmt(lat["p999"], ".2f"), fmt(lat["max"], ".2f"),
                     fmt(x["cpu_us_per_record"], ".2f"), fmt(cores, ".2f")))
    print_rows(rows)
    print()
    if rounds > 1:
        summary = result["rounds_summary"]

        def cell(d: dict[str, float | None]) -> str:
            if d["median"] is None:
                return "-"
            return f"{d['median']:.2f} ({d['min']:.2f}-{d['max']:.2f})"

        print(f"over {rounds} rounds, median (min-max):")
        over = [("", "p50 ms", "p99 ms", "p99.9 ms", "max ms")]
        for side in ("gateway", "baseline"):
            x = summary[side]
            over.append((side, cell(x["p50"]), cell(x["p99"]), cell(x["p999"]), cell(x["max"])))
        over.append(("gateway p99 - baseline p99", "", cell(summary["p99_gap"]), "", ""))
        print_rows(over)
        print()
    print(f"load generator (gateway.loadgen, one thread): "
          f"{fmt(g['loadgen_cpu_us_per_record'], '.2f')} CPU µs/rec; gateway latency from each "
          "record's write to the socket to the kernel's receive time of its report")
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.latency", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
