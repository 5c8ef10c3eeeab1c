"""Streaming produce through the gateway against a plain confluent-kafka producer.

    .venv/bin/python -m bench.stream [--records N] [--rounds R] [--json] [--plot FILE.png] ...

The gateway phase's load is the repository's load generator (gateway.loadgen, the engine of
``kafka-gateway loadgen``, called in-process by bench.load): its stream mode, closed loop, over
ONE chunked HTTP/1.1 connection to ``POST /v3/clusters/{cluster_id}/topics/{topic}/records``
(docs/api.md §1), reading the delivery reports on the same connection while it is still
sending, N records without a key, at most 65,536 in flight (4x the gateway's default
``--max-in-flight``: the gateway's own limit bounds the stream). The baseline phase runs a
plain ``confluent_kafka.Producer`` with the gateway's librdkafka settings in a child process
(bench.baseline), sending the same number of records, without a key either, to a topic of the
same layout on the same broker. Both figures are records/s and CPU µs per record of the process
doing the work (all its threads). The two phases alternate for ``--rounds`` rounds (3 by
default; gateway then baseline, or the reverse with ``--baseline-first``) against the one
gateway and broker: each figure is the median of the rounds with their min–max, and the ratio
is each round's gateway figure over that round's baseline, the median of those with their
min–max (the machine is shared and noisy). Target (issue 4): gateway CPU per record ≤ 1.0× the
baseline's.

Everything runs on 127.0.0.1: an embedded Tansu broker (unless ``--bootstrap-servers``), a
fresh topic per phase, the gateway as a child process. Each phase has a timeout, and the
broker, the gateway and the baseline child are stopped on every exit path.
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
    fmt_spread,
    loop_warning,
    machine_busy_ticks,
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
    verdict,
)
from bench.load import (
    SAMPLE_EVERY,
    STREAM_WINDOW,
    require_all_acked,
    run_stream,
    warm_up,
    watch_series,
)
from gateway.loadgen.modes import CHUNK_BYTES
from gateway.loadgen.records import RecordSource

SERIES_EVERY = 0.1  # seconds between the baseline's throughput samples for the plot
TARGET_RATIO = 1.0  # issue 4: gateway CPU per record <= 1.0x the plain producer loop's

HELP_EPILOG = """\
Memory: the embedded Tansu broker keeps every record in memory (memory storage has no
retention), about 110 bytes of RSS per 100-byte record. A default run (3 rounds of 1,000,000
records through the gateway and 1,000,000 through the baseline, plus warm-ups) holds ~700 MB in
the broker until it stops at the end of the run: --records 300000 keeps it near 200 MB. Against
--bootstrap-servers the bench deletes its topics at the end.

Figures: records/s is N / (the loadgen's measured run: its start -> the last delivery report
received, the kernel's receive time) for the gateway, and N / (first produce() -> flush()
returned) for the baseline. CPU is utime+stime from /proc/<pid>/stat (all threads) over the
same interval (the gateway's: from the start of the loadgen's measured run, its
on_measure_start hook, to the end of the run). The load generator (one thread of this
process), the gateway, its librdkafka threads and the broker share the machine's cores.
"""


# -- the gateway phase -----------------------------------------------------------------------


def run_gateway_phase(
    gw: GatewayProcess, broker_pid: int | None, cluster_id: str, topic: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    warmup_s = warm_up(gw.port, cluster_id, topic, args)
    n = args.records
    ticks: dict[str, int] = {}

    def on_start() -> None:  # the loadgen's measured run begins: before its first record
        ticks["gw"] = gw.cpu_ticks()
        ticks["self"] = cpu_ticks()
        ticks["machine"] = machine_busy_ticks()
        if broker_pid is not None:
            ticks["broker"] = cpu_ticks(broker_pid)

    with CpuSampler(gw.pids) as sampler:
        run = run_stream(gw.port, cluster_id, topic, value_bytes=args.value_bytes,
                         partitions=args.partitions, records=n, timeout=args.timeout,
                         stall_timeout=args.stall_timeout, on_start=on_start)
        gw_ticks = gw.cpu_ticks() - ticks["gw"]
        broker_ticks = cpu_ticks(broker_pid) - ticks["broker"] if broker_pid is not None else None
        self_ticks = cpu_ticks() - ticks["self"]
        machine_ticks = machine_busy_ticks() - ticks["machine"]
    require_all_acked(run, n, "gateway phase")
    r, w = run.result, run.watch
    wall = r.duration_s
    ticks_wall = run.t_end - run.t_start  # (the CPU ticks' interval: the run and its close)
    ours = gw_ticks + self_ticks + (broker_ticks or 0)
    return {
        "records": n,
        "reports_ok": r.acked,
        "reports_sampled": w.sampled,
        "wall_s": wall,
        "records_per_s": r.acked / wall,
        "cpu_us_per_record": gw_ticks / CLK_TCK / n * 1e6,
        "cpu_s": gw_ticks / CLK_TCK,
        "broker_cpu_us_per_record": (
            broker_ticks / CLK_TCK / n * 1e6 if broker_ticks is not None else None
        ),
        "loadgen_cpu_us_per_record": r.loadgen_cpu_us_per_record,
        "loadgen_process_cpu_us_per_record": self_ticks / CLK_TCK / n * 1e6,
        "machine_busy_cores": machine_ticks / CLK_TCK / ticks_wall,
        "other_load_cores": max(0, machine_ticks - ours) / CLK_TCK / ticks_wall,
        "send_done_s": (run.ms_after_start(w.send_done_at) or 0.0) / 1000,
        "first_report_ms": run.ms_after_start(w.first_report_at),
        "max_report_gap_ms": w.max_gap_us / 1000,
        "window": STREAM_WINDOW,
        "records_per_chunk": max(1, CHUNK_BYTES // RecordSource("v3", args.value_bytes, 0, 1).record_len),
        "partitions_seen": len(w.last_offset),
        "rss_mb_after": gw.rss_mb(),
        "warmup_s": warmup_s,
        "topic": topic,
        "latency_ms": r.latency_ms,
        "series": watch_series("stream v3: gateway (round 1)", run),
        "cpu_series": sampler.series(run.t_start, run.t_end),
        "peak_loop_share": sampler.peak_loop(run.t_start, run.t_end),
    }


# -- output ----------------------------------------------------------------------------------

#: The figures of a phase that get a median (min–max) over the rounds.
FIGURES = ("records_per_s", "cpu_us_per_record", "broker_cpu_us_per_record", "wall_s",
           "other_load_cores")
#: The figures compared with the same round's baseline.
RATIOS = ("records_per_s", "cpu_us_per_record", "broker_cpu_us_per_record")


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    s, r = result["summary"], result.get("ratios", {})
    order = " then ".join(p["phases"])
    print_header(result,
        f"bench.stream: {p['records']:,} records per phase, {p['value_bytes']}-byte BINARY values, "
        f"no key, {p['partitions']} partitions ({p['warmup']:,}-record warm-up per phase, not "
        f"counted); {p['rounds']} interleaved rounds ({order}); median (min–max)"
    )
    print()
    rows = [("", "records/s", "CPU µs/rec", "broker µs/rec", "wall s", "other load cores")]
    for name in p["phases"]:
        x = s[name]
        rows.append((
            name,
            fmt_spread(x["records_per_s"], ",.0f"),
            fmt_spread(x["cpu_us_per_record"], ".2f"),
            fmt_spread(x["broker_cpu_us_per_record"], ".2f"),
            fmt_spread(x["wall_s"], ".2f"),
            fmt_spread(x["other_load_cores"], ".2f"),
        ))
    if r:
        rows.append((
            "gateway/baseline, per round",
            fmt_spread(r["records_per_s"], ".3f"),
            fmt_spread(r["cpu_us_per_record"], ".2f"),
            fmt_spread(r["broker_cpu_us_per_record"], ".2f"),
            "",
            "",
        ))
    print_rows(rows)
    print()
    for i, one in enumerate(result["rounds"], 1):
        parts = [f"{name} {one[name]['cpu_us_per_record']:.2f} µs/rec at "
                 f"{one[name]['records_per_s']:,.0f}/s (other load "
                 f"{one[name]['other_load_cores']:.2f} cores)" for name in p["phases"]]
        if "gateway" in one and "baseline" in one:
            parts.append(f"ratio {ratio(one['gateway']['cpu_us_per_record'], one['baseline']['cpu_us_per_record']):.2f}")
        print(f"round {i}: " + "; ".join(parts))
    gw = result["rounds"][0].get("gateway")
    if gw is not None:
        print(
            f"round 1 gateway: load generator (gateway.loadgen, one thread) "
            f"{fmt(gw['loadgen_cpu_us_per_record'], '.2f')} CPU µs/rec; chunks of "
            f"{gw['records_per_chunk']} records, at most {gw['window']:,} in flight; gateway event "
            f"loop at {fmt(gw['peak_loop_share'], '.0%')} of a core at peak (1 s)"
        )
        print(
            f"round 1 gateway stream: body sent after {gw['send_done_s']:.2f} s, first report after "
            f"{fmt(gw['first_report_ms'], '.1f')} ms, longest gap between reports "
            f"{gw['max_report_gap_ms']:.1f} ms, {gw['reports_sampled']:,} reports decoded in full, "
            f"RSS {fmt(gw['rss_mb_after'], '.0f')} MB; warm-up took {gw['warmup_s']:.2f} s"
        )
    print_gateway_processes(result)
    base = result["rounds"][0].get("baseline")
    if base is not None:
        print(
            f"round 1 baseline: produce loop {base['produce_loop_s']:.2f} s + flush, "
            f"{base['buffer_full']:,} BufferError retries, RSS {fmt(base['rss_mb_after'], '.0f')} MB; "
            f"warm-up took {base['warmup_s']:.2f} s"
        )
    print_warnings(result)
    if result["verdicts"]:
        print()
        print_verdicts(result["verdicts"])


# -- main ------------------------------------------------------------------------------------


def build_parser(records: int = 1_000_000) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.stream",
        description=__doc__.split("\n\n")[0] + ": records/s and CPU µs per record of the gateway "
        "(one chunked HTTP/1.1 stream, v3 produce, sent by the load generator gateway.loadgen "
        "as a library) and of a plain confluent-kafka producer with "
        "the same librdkafka settings (acks=all, enable.idempotence=true, "
        "partitioner=murmur2_random, linger.ms=5).",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--records", type=int, default=records, metavar="N",
                   help=f"records per phase and round (default {records:,})")
    p.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="interleaved rounds of gateway and baseline, at least 3 (default 3)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value, sent as BINARY (base64) (default 100)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topics (default 6)")
    p.add_argument("--warmup", type=int, default=1000, metavar="N",
                   help="records sent before each measured phase, not counted (default 1000)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="end the gateway phase when no report arrives for this long "
                   "(0: wait for --timeout) (default 30)")
    p.add_argument("--baseline-first", action="store_true",
                   help="run the baseline before the gateway in each round")
    p.add_argument("--only", choices=("gateway", "baseline"),
                   help="run one phase only (no ratios)")
    common_arguments(p, timeout=300.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    for name in ("records", "value_bytes", "partitions"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.stall_timeout < 0:
        return "--stall-timeout must not be negative"
    return check_rounds(args.rounds)


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    phases = ["baseline", "gateway"] if args.baseline_first else ["gateway", "baseline"]
    if args.only:
        phases = [args.only]
    result = new_result("bench.stream", args, {
        "records": args.records,
        "rounds": args.rounds,
        "phases": phases,
        "value_bytes": args.value_bytes,
        "partitions": args.partitions,
        "warmup": args.warmup,
        "chunk_bytes": CHUNK_BYTES,
        "load": f"gateway.loadgen stream mode, closed loop, 1 connection, window {STREAM_WINDOW}, "
                "no key",
        "report_sample_every": SAMPLE_EVERY,
        "stall_timeout_s": args.stall_timeout,
        "producer_settings": baseline.PRODUCER_SETTINGS,
    })
    rounds: list[dict[str, Any]] = []
    with Rig("bench-stream", args, log_dir) as rig:
        result["broker"] = rig.info
        gateway = rig.start_gateway() if "gateway" in phases else None
        try:
            for i in range(1, args.rounds + 1):
                one: dict[str, Any] = {}
                for phase in phases:
                    # A fresh topic per phase and round: every phase starts from empty partitions.
                    topic = rig.topic(f"{'gw' if phase == 'gateway' else 'base'}{i}", args.partitions)
                    if phase == "gateway":
                        assert gateway is not None
                        try:
                            one[phase] = run_gateway_phase(
                                gateway, rig.broker_pid, rig.cluster_id, topic, args
                            )
                        except BenchError as exc:
                            raise rig.gateway_failed(gateway, exc, f"gateway phase, round {i}") from None
                    else:
                        one[phase] = baseline.run_produce(
                            rig.bootstrap, rig.broker_pid, topic, args.records,
                            args.value_bytes, args.warmup, args.timeout,
                            os.path.join(log_dir, "baseline.log"),
                        )
                rounds.append(one)
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize(result, rounds, args)
    return result


def summarize(result: dict[str, Any], rounds: list[dict[str, Any]], args: argparse.Namespace) -> None:
    phases = result["params"]["phases"]
    series = {phase: rounds[0][phase].pop("series", None) for phase in phases}
    for one in rounds[1:]:  # the plot draws round 1; the other rounds' samples are dropped
        for phase in phases:
            one[phase].pop("series", None)
            one[phase].pop("cpu_series", None)
    result["rounds"] = rounds
    result["summary"] = {phase: {key: spread([r[phase][key] for r in rounds]) for key in FIGURES}
                         for phase in phases}
    for phase in phases:
        loads = [r[phase]["other_load_cores"] for r in rounds]
        busy = [c for c in loads if c > 0.2]
        if busy:
            other_load_warning(result, max(busy), f"{len(busy)} of the {len(loads)} {phase} phases "
                               f"({min(busy):.2f}–{max(busy):.2f} cores)")
    if "gateway" in phases:
        peaks = [(i, r["gateway"]["peak_loop_share"]) for i, r in enumerate(rounds, 1)
                 if r["gateway"]["peak_loop_share"] is not None]
        if peaks:
            i, low = min(peaks, key=lambda x: x[1])
            loop_warning(result, f"stream, round {i} (the lowest of {len(peaks)})", low)
    both = "gateway" in phases and "baseline" in phases
    if both:
        result["ratios"] = {key: round_ratios(rounds, "gateway", "baseline", key) for key in RATIOS}
    s = result["summary"]
    result["verdicts"].append(verdict(
        f"v3 streaming, {args.value_bytes}-byte BINARY values, 1 chunked connection",
        "CPU/record", median_of(s["gateway"]["cpu_us_per_record"]) if "gateway" in s else None,
        median_of(s["baseline"]["cpu_us_per_record"]) if "baseline" in s else None,
        "plain producer loop", TARGET_RATIO, target_on="ratio", unit="µs",
        rounds_ratio=result["ratios"]["cpu_us_per_record"] if both else None,
    ))
    result["series"]["throughput"] = []
    if series.get("gateway") is not None:
        result["series"]["throughput"].append(series["gateway"])
        result["series"]["cpu"] = [dict(rounds[0]["gateway"]["cpu_series"],
                                        label="stream v3: gateway (round 1)")]
    if series.get("baseline") is not None:
        b = series["baseline"]
        result["series"]["throughput"].append(_rate_series(
            "stream: plain producer (round 1)", {"t": [x[0] for x in b], "count": [x[1] for x in b]}))


def _rate_series(label: str, s: dict[str, list[float]]) -> dict[str, Any]:
    """Records/s between consecutive samples of a cumulative count."""
    t, n = s["t"], s["count"]
    out: dict[str, Any] = {"label": label, "unit": "records/s", "t": [], "rate": []}
    for i in range(1, len(t)):
        if t[i] - t[i - 1] > SERIES_EVERY / 2:  # the last sample may come right after another
            out["t"].append(t[i])
            out["rate"].append((n[i] - n[i - 1]) / (t[i] - t[i - 1]))
    return out


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.stream", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
