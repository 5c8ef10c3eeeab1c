"""One record per request, keep-alive, 64 connections: gateway CPU per request.

    .venv/bin/python -m bench.requests [--duration S] [--connections N] [--json] [--plot F.png]

Two variants, each against a fresh topic, driven by wrk (bench.wrk) over 64 keep-alive
connections on 127.0.0.1:
- v3: ``POST /v3/clusters/{c}/topics/{t}/records`` with a Content-Length body of one record
  (``{"value":{"type":"BINARY","data":"<base64 of 100 bytes>"}}``); an answer is good when it
  is a 200 whose report has ``"error_code":200``.
- v2: ``POST /topics/{t}`` with ``application/vnd.kafka.binary.v2+json``
  ``{"records":[{"value":"<base64>"}]}``; good when 200 with no ``"offset":null``.

Each variant gets a warm-up run, then a measured run; the gateway's CPU (utime+stime of all
its threads, from /proc) over the measured run is divided by the requests completed. The
same-run baseline is the plain confluent-kafka producer loop (bench.baseline) sending
records of the same size to the same broker. Target (issue 4): ≤ 25 µs CPU per request.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import baseline
from bench.common import (
    BenchError,
    GatewayProcess,
    Rig,
    bench_main,
    common_arguments,
    fmt,
    loop_warning,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    record_json,
    records_path,
    value_bytes,
    verdict,
)
from bench.wrk import WrkScript, check_answers, run_wrk

TARGET_US_PER_REQUEST = 25.0
V1_CT = "application/vnd.kafka.binary.v1+json"
V2_CT = "application/vnd.kafka.binary.v2+json"


@dataclass
class RequestRow:
    key: str  # short name, also the topic suffix
    label: str  # the row of the target table
    content_type: str
    body: bytes
    records_per_request: int
    ok_mark: str | None
    bad_mark: str | None
    target_us: float
    per: str  # "request" or "record": what the target is per
    v3: bool = False

    def path(self, cluster_id: str, topic: str) -> str:
        return records_path(cluster_id, topic) if self.v3 else f"/topics/{topic}"


def v1v2_body(value: bytes, n: int) -> bytes:
    rec = {"value": base64.b64encode(value).decode("ascii")}
    return json.dumps({"records": [rec] * n}, separators=(",", ":")).encode()


def wait_ready(port: int, row: RequestRow, cluster_id: str, topic: str, timeout: float) -> None:
    """One request first: the gateway answers 503 until it has Kafka metadata."""
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("POST", row.path(cluster_id, topic), body=row.body,
                         headers={"Content-Type": row.content_type})
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        except OSError as exc:
            status, text = 0, repr(exc)
        else:
            status = resp.status
        finally:
            conn.close()
        if status == 200:
            return
        if status not in (0, 503) or time.monotonic() > deadline:
            raise BenchError(f"{row.key}: the gateway answered {status}: {text[:300]}")
        time.sleep(0.2)


def measure_row(row: RequestRow, rig: Rig, gw: GatewayProcess, args: argparse.Namespace,
                log_dir: str) -> dict[str, Any]:
    topic = rig.topic(row.key, args.partitions)
    wait_ready(gw.port, row, rig.cluster_id, topic, args.timeout)
    url = f"http://127.0.0.1:{gw.port}{row.path(rig.cluster_id, topic)}"
    script = WrkScript(method="POST", content_type=row.content_type, body=row.body,
                       ok_mark=row.ok_mark, bad_mark=row.bad_mark)
    common = dict(threads=args.threads, connections=args.connections, gateway=gw,
                  broker_pid=rig.broker_pid, timeout=args.timeout,
                  script_path=os.path.join(log_dir, f"wrk-{row.key}.lua"))
    if args.warmup > 0:
        check_answers(run_wrk(script, url, duration=args.warmup, **common), f"{row.key} warm-up")
    run = run_wrk(script, url, duration=args.duration, **common)
    check_answers(run, row.key)
    n = run.requests
    records = n * row.records_per_request
    out = run.as_dict()
    lat = run.latency_us
    out.update(
        key=row.key, label=row.label, topic=topic,
        records_per_request=row.records_per_request,
        requests_per_s=n / run.wall_s,
        records_per_s=records / run.wall_s,
        cpu_us_per_request=run.gateway_cpu_s / n * 1e6,
        cpu_us_per_record=run.gateway_cpu_s / records * 1e6,
        loop_us_per_request=run.gateway_loop_cpu_s / n * 1e6,
        gateway_cores=run.gateway_cpu_s / run.wall_s,
        loop_cores=run.gateway_loop_cpu_s / run.wall_s,
        wrk_cores=run.wrk_cpu_s / run.wall_s,
        wrk_us_per_request=run.wrk_cpu_s / n * 1e6,
        broker_us_per_record=(run.broker_cpu_s / records * 1e6 if run.broker_cpu_s is not None else None),
        # Little's law: with every connection always waiting, connections / mean latency is
        # the most a closed loop can get; near it, latency (linger.ms) bounds the rate.
        concurrency_bound_per_s=args.connections / (lat["mean"] / 1e6) if lat["mean"] else None,
    )
    return out


def run_request_rows(name: str, args: argparse.Namespace, log_dir: str, rows: list[RequestRow],
                     params: dict[str, Any]) -> dict[str, Any]:
    result = new_result(name, args, dict(
        params, duration_s=args.duration, warmup_s=args.warmup, connections=args.connections,
        wrk_threads=args.threads, partitions=args.partitions, value_bytes=args.value_bytes,
        baseline_records=args.baseline_records,
        producer_settings=baseline.PRODUCER_SETTINGS,
    ))
    result["rows"] = []
    with Rig(name.replace(".", "-"), args, log_dir) as rig:
        result["broker"] = rig.info
        gw = rig.start_gateway()
        try:
            for row in rows:
                try:
                    result["rows"].append(measure_row(row, rig, gw, args, log_dir))
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, f"{name} {row.key}") from None
            base_topic = rig.topic("base", args.partitions)
            result["baseline"] = baseline.run_produce(
                rig.bootstrap, rig.broker_pid, base_topic, args.baseline_records,
                args.value_bytes, 1000, args.timeout, os.path.join(log_dir, "baseline.log"),
            )
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize(result, rows)
    return result


def summarize(result: dict[str, Any], rows: list[RequestRow]) -> None:
    base = result["baseline"]
    other_load_warning(result, base["other_load_cores"], "the baseline")
    result["series"]["throughput"] = []
    result["series"]["cpu"] = []
    result["series"]["latency_requests"] = []
    for row, r in zip(rows, result["rows"], strict=True):
        figure = r["cpu_us_per_request"] if row.per == "request" else r["cpu_us_per_record"]
        result["verdicts"].append(verdict(
            row.label, f"CPU/{row.per}", figure, base["cpu_us_per_record"],
            "plain producer µs/record", row.target_us, unit="µs",
        ))
        other_load_warning(result, r["other_load_cores"], f"the {row.key} run")
        why = ""
        if r["wrk_cores"] < 0.9 * result["params"]["wrk_threads"]:
            # A closed loop: each connection waits for its answer before it sends again, so
            # connections / mean latency is all it can ask for.
            why = (f", nor was wrk ({r['wrk_cores']:.2f} cores for {result['params']['wrk_threads']} "
                   f"threads): {result['params']['connections']} connections each waiting "
                   f"{r['latency_us']['mean'] / 1000:.1f} ms on average (linger.ms=5 included) "
                   f"ask for at most {r['concurrency_bound_per_s']:,.0f} requests/s; "
                   "--connections raises that")
        loop_warning(result, f"{name_of(result)} {r['key']}", r["peak_loop_share"], why)
        label = f"{r['key']} ({r['records_per_request']} rec/req)"
        result["series"]["throughput"].append({
            "label": label, "unit": "records/s",
            "t": [x[0] for x in r["per_second"]],
            "rate": [x[1] * r["records_per_request"] for x in r["per_second"]],
        })
        result["series"]["cpu"].append(dict(r["cpu_series"], label=label))
        result["series"]["latency_requests"].append({"label": label, **r["latency_us"]})


def name_of(result: dict[str, Any]) -> str:
    return str(result["benchmark"]).removeprefix("bench.")


def print_rows_table(result: dict[str, Any], first_line: str) -> None:
    print_header(result, first_line)
    print()
    base = result["baseline"]
    rows = [("", "requests/s", "records/s", "CPU µs/req", "CPU µs/rec", "loop µs/req",
             "gw cores", "loop peak", "p50 ms", "p99 ms", "wrk cores", "wrk µs/req")]
    for r in result["rows"]:
        lat = r["latency_us"]
        rows.append((
            f"gateway {r['key']}", fmt(r["requests_per_s"], ",.0f"), fmt(r["records_per_s"], ",.0f"),
            fmt(r["cpu_us_per_request"], ".1f"), fmt(r["cpu_us_per_record"], ".2f"),
            fmt(r["loop_us_per_request"], ".1f"), fmt(r["gateway_cores"], ".2f"),
            fmt(r["peak_loop_share"], ".0%"), fmt(lat["p50"] / 1000, ".2f"),
            fmt(lat["p99"] / 1000, ".2f"), fmt(r["wrk_cores"], ".2f"), fmt(r["wrk_us_per_request"], ".1f"),
        ))
    rows.append(("baseline (producer loop)", "", fmt(base["records_per_s"], ",.0f"), "",
                 fmt(base["cpu_us_per_record"], ".2f"), "", "", "", "", "", "", ""))
    print_rows(rows)
    print()
    print("CPU = utime+stime of the gateway (all threads) / requests or records completed in the "
          "measured run; loop = its event-loop thread alone; loop peak = busiest 1 s of the loop "
          "thread; p50/p99 = wrk's request latency; wrk cores = the load generator's own CPU.")
    for r in result["rows"]:
        print(f"{r['key']}: {r['requests']:,} requests in {r['wall_s']:.1f} s, "
              f"{r['errors']['timeout']} wrk timeouts, topic {r['topic']}")
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def add_request_arguments(p: argparse.ArgumentParser, duration: float, connections: int,
                          baseline_records: int = 300_000, warmup: float = 1.0) -> None:
    p.add_argument("--duration", type=float, default=duration, metavar="S",
                   help=f"seconds of each measured wrk run (default {duration:g})")
    p.add_argument("--warmup", type=float, default=warmup, metavar="S",
                   help=f"seconds of the warm-up wrk run before each measured one (default {warmup:g})")
    p.add_argument("--connections", type=int, default=connections, metavar="N",
                   help=f"keep-alive connections (default {connections})")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="wrk threads (default 2)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topics (default 6)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value (default 100)")
    p.add_argument("--baseline-records", type=int, default=baseline_records, metavar="N",
                   help=f"records the baseline producer loop sends (default {baseline_records:,})")
    common_arguments(p, timeout=120.0)


def check_request_args(args: argparse.Namespace) -> str | None:
    if args.duration < 1 or args.warmup < 0:
        return "--duration must be at least 1 s, --warmup not negative"
    if args.connections < 1 or args.threads < 1 or args.connections < args.threads:
        return "--connections and --threads must be at least 1, connections >= threads"
    if args.partitions < 1 or args.value_bytes < 1 or args.baseline_records < 1:
        return "--partitions, --value-bytes and --baseline-records must be at least 1"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_request_arguments(p, duration=5.0, connections=64)
    p.add_argument("--only", choices=("v3", "v2"), help="run one variant only")
    return p


def make_rows(args: argparse.Namespace) -> list[RequestRow]:
    value = value_bytes(args.value_bytes)
    rows = [
        RequestRow("v3", f"1 record/request, v3 Content-Length, {args.connections} conns",
                   "application/json", record_json(value), 1, '"error_code":200', None,
                   TARGET_US_PER_REQUEST, "request", v3=True),
        RequestRow("v2", f"1 record/request, v2 binary, {args.connections} conns", V2_CT,
                   v1v2_body(value, 1), 1, None, '"offset":null', TARGET_US_PER_REQUEST, "request"),
    ]
    return [r for r in rows if getattr(args, "only", None) in (None, r.key)]


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    return run_request_rows("bench.requests", args, log_dir, make_rows(args), {})


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_rows_table(result, (
        f"bench.requests: one record ({p['value_bytes']}-byte BINARY value) per request, keep-alive, "
        f"{p['connections']} connections, wrk -t{p['wrk_threads']}, {p['duration_s']:g} s measured "
        f"after {p['warmup_s']:g} s warm-up per variant, {p['partitions']} partitions"
    ))


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.requests", build_parser(), run, print_table, argv, check_request_args)


if __name__ == "__main__":
    sys.exit(main())
