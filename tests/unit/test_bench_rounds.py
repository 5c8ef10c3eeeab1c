"""The benchmarks report rounds: each figure as the median of at least 3 interleaved rounds with
its min–max, and a ratio as the median of each round's figure over the same round's reference.
Checked on made-up rounds (no broker, no gateway, nothing timed): what the tables print, and the
target-table keys that ``python -m bench`` and bench.plot read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from bench import (
    batches,
    common,
    consume,
    edge,
    load,
    memory,
    plot,
    requests,
    spool,
    stream,
    workers,
)
from gateway.loadgen.stats import Sample

pytestmark = pytest.mark.timeout(30)

VERDICT_KEYS = {"row", "metric", "unit", "gateway", "baseline", "baseline_what", "ratio", "target",
                "target_on", "target_text", "pass"}


@pytest.mark.parametrize("module", [stream, batches, memory, workers, requests, consume, edge, spool],
                         ids=lambda m: m.__name__)
def test_fewer_than_three_rounds_is_refused(module: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert module.main(["--rounds", "2"]) == 2
    assert "--rounds must be at least 3" in capsys.readouterr().err


@pytest.mark.parametrize("module", [stream, batches, memory, workers], ids=lambda m: m.__name__)
def test_three_rounds_by_default(module: Any) -> None:
    args = module.build_parser().parse_args([])
    assert args.rounds == 3
    assert module.check_args(args) is None


def test_the_ratio_is_the_median_of_the_rounds_ratios() -> None:
    # Medians 2.0 / 2.0 would give 1.0; the rounds' own ratios are 0.5, 2.0 and 3.0.
    rounds = [{"gw": {"x": 1.0}, "ref": {"x": 2.0}}, {"gw": {"x": 2.0}, "ref": {"x": 1.0}},
              {"gw": {"x": 6.0}, "ref": {"x": 2.0}}]
    assert common.round_ratios(rounds, "gw", "ref", "x") == {"median": 2.0, "min": 0.5, "max": 3.0}
    assert common.spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert common.spread([None]) is None
    assert common.fmt_spread({"median": 2.0, "min": 0.5, "max": 3.0}, ".2f") == "2.00 (0.50–3.00)"


def test_a_rounds_verdict_shows_and_judges_the_median_ratio(capsys: pytest.CaptureFixture[str]) -> None:
    v = common.verdict("row", "CPU/record", 2.0, 2.0, "ref", 1.0, target_on="ratio", unit="µs",
                       rounds_ratio={"median": 0.9, "min": 0.5, "max": 3.0})
    assert v["ratio"] == 0.9 and v["pass"] is True
    common.print_verdicts([v])
    assert "0.90× (0.50–3.00)" in capsys.readouterr().out


def made_up_result(module: Any, argv: list[str], params: dict[str, Any]) -> dict[str, Any]:
    args = module.build_parser().parse_args(argv)
    result = common.new_result(f"bench.{module.__name__.rsplit('.', 1)[1]}", args, params)
    result["broker"] = {"kind": "none", "bootstrap": "127.0.0.1:9"}
    result["gateway_processes"] = []
    return result


def check_output(result: dict[str, Any], module: Any, capsys: pytest.CaptureFixture[str],
                 *expected: str) -> str:
    for v in result["verdicts"]:
        assert VERDICT_KEYS <= set(v)
    module.print_table(result)
    out = capsys.readouterr().out
    for text in expected:
        assert text in out, out
    return out


def stream_phase(cpu: float, rate: float, gateway: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "records_per_s": rate, "cpu_us_per_record": cpu, "broker_cpu_us_per_record": 0.5,
        "wall_s": 1.0, "other_load_cores": 0.1, "rss_mb_after": 40.0, "warmup_s": 0.2,
    }
    if gateway:
        out.update(loadgen_cpu_us_per_record=0.4, window=65536,
                   records_per_chunk=378, peak_loop_share=0.95, send_done_s=0.5,
                   first_report_ms=5.0, max_report_gap_ms=9.0, reports_sampled=100,
                   series={"label": "stream v3: gateway (round 1)", "unit": "records/s",
                           "t": [1.0, 2.0], "rate": [10.0, 20.0]},
                   cpu_series={"t": [1.0], "gateway_cores": [1.0], "loop_cores": [0.9]})
    else:
        out.update(produce_loop_s=0.8, buffer_full=0, series=[[0.1, 10], [0.2, 20], [0.3, 30]])
    return out


def test_stream_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    args = stream.build_parser().parse_args([])
    result = made_up_result(stream, [], {"records": 1000, "rounds": 3, "phases": ["gateway", "baseline"],
                                         "value_bytes": 100, "partitions": 6, "warmup": 10})
    rounds = [{"gateway": stream_phase(g, 500_000, True), "baseline": stream_phase(b, 400_000, False)}
              for g, b in ((1.0, 2.0), (2.0, 1.0), (6.0, 2.0))]
    stream.summarize(result, rounds, args)
    (v,) = result["verdicts"]
    assert (v["gateway"], v["baseline"], v["ratio"]) == (2.0, 2.0, 2.0)
    assert v["pass"] is False
    assert result["ratios"]["cpu_us_per_record"] == {"median": 2.0, "min": 0.5, "max": 3.0}
    assert [s["label"] for s in result["series"]["throughput"]] == [
        "stream v3: gateway (round 1)", "stream: plain producer (round 1)"]
    check_output(result, stream, capsys, "3 interleaved rounds (gateway then baseline)",
                 "2.00 (1.00–6.00)", "2.00 (0.50–3.00)", "round 3: gateway 6.00 µs/rec",
                 "2.00× (0.50–3.00)", "load generator (gateway.loadgen, one thread) 0.40 CPU µs/rec")


def test_the_loadgen_samples_become_a_throughput_series() -> None:
    # One sample a second, and the run's last one 0.2 s after the one before: merged into it.
    samples = [Sample(t=1.0, acked=100, failed={}, in_flight=0, rate=100.0),
               Sample(t=2.0, acked=300, failed={}, in_flight=0, rate=200.0),
               Sample(t=2.2, acked=320, failed={}, in_flight=0, rate=100.0)]
    s = load.rate_series("x", samples)
    assert s["t"] == [1.0, 2.2]
    assert s["rate"] == [100.0, 183.3]  # (320 - 100) / 1.2 s
    assert load.rate_series("x", []) == {"label": "x", "unit": "records/s", "t": [], "rate": []}


def test_the_report_watch_checks_sampled_reports() -> None:
    def rep(offset: int, partition: int = 0, **extra: Any) -> bytes:
        fields = {"error_code": 200, "cluster_id": "c", "topic_name": "t",
                  "partition_id": partition, "offset": offset,
                  "value": {"type": "BINARY", "size": 100}, **extra}
        return json.dumps(fields, separators=(",", ":")).encode() + b"\r\n"

    w = load.ReportWatch("t", 6, 100)
    w.on_reports(rep(5), 1, 1.0)
    w.on_reports(rep(6) * 997 + rep(7), 998, 2.0)  # reports #1..#998: none sampled
    w.on_reports(rep(3), 1, 4.0)  # report #999, the 1000th: sampled, its offset went back
    assert (w.sampled, w.problem_count, w.reports) == (2, 1, 1000)
    assert "offset not increasing on partition 0 (5 then 3)" in w.problems[0]
    assert (w.first_report_at, w.last_report_at, w.max_gap_us) == (1.0, 4.0, 2.0)
    spooled = b'{"error_code":202,"message":"spooled: 1"}\r\n'
    w = load.ReportWatch("t", 6, 100)
    w.on_reports(rep(1, key={"type": "STRING", "size": 1}) + spooled, 2, 1.0)
    assert w.other_kind == 1 and "wrong key" in w.problems[0]
    w = load.ReportWatch("t", 6, 100, spooled=True)
    w.on_reports(spooled * 2, 2, 1.0)
    assert (w.sampled, w.problem_count, w.other_kind) == (1, 0, 0)


def request_run(cpu_per_record: float) -> dict[str, Any]:
    return {"requests_per_s": 5000.0, "records_per_s": 500_000.0, "records_per_request": 100,
            "cpu_us_per_request": cpu_per_record * 100, "cpu_us_per_record": cpu_per_record,
            "loop_us_per_request": 150.0, "gateway_cores": 1.0, "peak_loop_share": 0.95,
            "wrk_cores": 0.2, "wrk_us_per_request": 20.0, "other_load_cores": 0.0,
            "latency_us": {"p50": 12_000, "p99": 25_000, "mean": 13_000},
            "concurrency_bound_per_s": 5000.0, "requests": 10_000, "wall_s": 2.0,
            "errors": {"timeout": 0}, "topic": "t", "per_second": [[1.0, 5000]],
            "cpu_series": {"t": [1.0], "gateway_cores": [1.0], "loop_cores": [0.9]}}


def test_batches_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    args = batches.build_parser().parse_args([])
    rows = batches.make_rows(args)
    result = made_up_result(batches, [], dict(
        records_per_request=100, rounds=3, duration_s=5.0, warmup_s=2.0, connections=64,
        wrk_threads=2, partitions=6, value_bytes=100, baseline_records=1000))
    rounds = [{"v1": request_run(v1), "v2": request_run(v2),
               "baseline": {"records_per_s": 400_000.0, "cpu_us_per_record": b, "other_load_cores": 0.0}}
              for v1, v2, b in ((1.0, 2.0, 2.0), (2.0, 2.2, 1.0), (3.0, 2.4, 2.0))]
    requests.summarize(result, rows, rounds)
    v1, v2 = result["verdicts"]
    assert (v1["gateway"], v1["baseline"], v1["ratio"], v1["pass"]) == (2.0, 2.0, 1.5, True)
    assert result["summary"]["v1"]["ratio_to_baseline"] == {"median": 1.5, "min": 0.5, "max": 2.0}
    assert v2["gateway"] == 2.2
    check_output(result, batches, capsys, "then 3 interleaved rounds of 5 s per variant",
                 "2.00 (1.00–3.00)", "1.50 (0.50–2.00)", "round 2: v1 2.00 µs/rec",
                 "1.50× (0.50–2.00)")


def test_workers_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    result = made_up_result(workers, [], dict(
        workers=2, rounds=3, duration_s=5.0, warmup_s=1.0, connections=128, wrk_threads=2,
        partitions=6, value_bytes=100, records_per_request=100))

    def run(workers_: int, rate: float) -> dict[str, Any]:
        return dict(request_run(2.0), records_per_s=rate, workers=workers_,
                    processes=1 if workers_ == 1 else workers_ + 1)

    rounds = [{"one": run(1, a), "many": run(2, b)}
              for a, b in ((100.0, 150.0), (200.0, 100.0), (100.0, 130.0))]
    workers.summarize(result, rounds)
    (v,) = result["verdicts"]
    assert (v["gateway"], v["baseline"], v["ratio"], v["pass"]) == (130.0, 100.0, 1.3, True)
    assert v["higher_is_better"] is True
    assert result["scaling"] == {"median": 1.3, "min": 0.5, "max": 1.5}
    check_output(result, workers, capsys, "3 interleaved rounds of --workers 1 then --workers 2",
                 "130 (100–150)", "1.30 (0.50–1.50)", "round 2: --workers 1 200 rec/s",
                 "1.30× (0.50–1.50)")


def test_memory_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    result = made_up_result(memory, [], dict(streams=10, stall_s=1.0, value_bytes=100, partitions=6,
                                             rounds=3, streams_opened=10))
    rounds = [{
        "non_reader": {"rss_before_mb": 40.0, "rss_paused_mb": 40.0 + extra, "extra_mb": extra,
                       "rss_after_close_mb": 41.0, "records_sent": 1000, "paused_after_s": 0.1,
                       "tcp_queues": None, "connection_dump": {"paused": "write"},
                       "rss_series": [[0.1, 40.0], [0.2, 40.0 + extra]]},
        "streams": {"streams": 10, "rss_idle_mb": 40.0, "rss_open_mb": open_mb,
                    "kb_per_stream": (open_mb - 40.0) * 102.4, "rss_after_close_mb": 41.0,
                    "open_s": 0.1, "idle_cores": 0.01, "close_s": 0.1,
                    "curve": [[0, 40.0], [10, open_mb]]},
    } for extra, open_mb in ((10.0, 120.0), (20.0, 160.0), (12.0, 130.0))]
    memory.summarize(result, rounds)
    streams_v, non_reader_v = result["verdicts"]
    assert (streams_v["gateway"], streams_v["ratio"], streams_v["pass"]) == (130.0, 3.25, True)
    assert (non_reader_v["gateway"], non_reader_v["ratio"], non_reader_v["pass"]) == (12.0, 0.3, True)
    assert result["series"]["memory"]["rss_mb"] == [40.0, 120.0]
    check_output(result, memory, capsys, "3 rounds, a fresh gateway per phase",
                 "130.0 (120.0–160.0)", "12.0 (10.0–20.0)", "round 2: 160.0 MB open",
                 "round 3: extra 12.0 MB")


def test_the_plot_takes_the_rounds_results(tmp_path: Path) -> None:
    result = made_up_result(workers, [], dict(
        workers=2, rounds=3, duration_s=5.0, warmup_s=1.0, connections=128, wrk_threads=2,
        partitions=6, value_bytes=100, records_per_request=100))
    rounds = [{"one": dict(request_run(2.0), workers=1, processes=1, records_per_s=100.0),
               "many": dict(request_run(2.0), workers=2, processes=3, records_per_s=150.0)}
              for _ in range(3)]
    workers.summarize(result, rounds)
    out = tmp_path / "bench.png"
    assert plot.write_plot([result], str(out)) == str(out)
    assert out.stat().st_size > 0


def test_make_bench_gives_every_rounds_module_no_fewer_than_three_rounds() -> None:
    from bench.__main__ import SUITE

    for name, module, extra in SUITE:
        args: argparse.Namespace = module.build_parser().parse_args(extra)
        if hasattr(args, "rounds"):
            assert args.rounds >= 3, name
