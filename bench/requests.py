"""One record per request, keep-alive, 64 connections: the gateway's CPU per request,
decomposed against two references measured at the gateway's rate in the same rounds.

    .venv/bin/python -m bench.requests [--rounds R] [--duration S] [--connections N] [--json] ...

Two variants, each against a fresh topic, driven by wrk (bench.wrk) over 64 keep-alive
connections on 127.0.0.1:
- v3: ``POST /v3/clusters/{c}/topics/{t}/records`` with a Content-Length body of one record
  (``{"value":{"type":"BINARY","data":"<base64 of 100 bytes>"}}``); an answer is good when it
  is a 200 whose report has ``"error_code":200``.
- v2: ``POST /topics/{t}`` with ``application/vnd.kafka.binary.v2+json``
  ``{"records":[{"value":"<base64>"}]}``; good when 200 with no ``"offset":null``.

Each variant gets a warm-up, then ``--rounds`` interleaved rounds (3 by default), each of three
runs of ``--duration`` seconds, one after the other:
- the gateway: wrk as fast as the 64 closed loops go; its CPU (utime+stime of all its threads,
  from /proc) per request completed, and its rate;
- (A) "the same pattern without HTTP" (bench.baseline ``clients``): 64 closed-loop clients in
  one process over one confluent-kafka producer with the gateway's settings, each producing one
  record and waiting for its delivery report, paced to the gateway's rate of the round; its CPU
  per record;
- (B) "a minimal uvloop protocol answering a fixed 200" (bench.fixed200, the gateway's own
  answer bytes): wrk with the same requests and connections, each connection paced (wrk's
  ``delay()``) so that they ask for the gateway's rate of the round; its CPU per request.
The gateway's own overhead is gateway − (A + B), per round and as median (min–max). Target
(issue 13): at most 15 µs per request.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

from bench import baseline
from bench.common import (
    REPO,
    SATURATED_LOOP,
    BenchError,
    GatewayProcess,
    Rig,
    bench_main,
    child_preexec,
    common_arguments,
    fmt,
    fmt_spread,
    log_tail,
    loop_warning,
    median_of,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    ratio,
    record_json,
    records_path,
    spread,
    stop_child,
    value_bytes,
    verdict,
)
from bench.wrk import WrkRun, WrkScript, check_answers, run_wrk

TARGET_OVERHEAD_US = 15.0  # gateway - (A + B), per request
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


def wait_ready(port: int, row: RequestRow, cluster_id: str, topic: str, timeout: float) -> bytes:
    """One request first: the gateway answers 503 until it has Kafka metadata. Returns the
    gateway's answer (status line, head fields, body) framed with a Content-Length."""
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answer = b""
        try:
            conn.request("POST", row.path(cluster_id, topic), body=row.body,
                         headers={"Content-Type": row.content_type})
            resp = conn.getresponse()
            raw = resp.read()
            text = raw.decode("utf-8", "replace")
            fields = [f"{k}: {v}\r\n" for k, v in resp.getheaders()
                      if k.lower() not in ("transfer-encoding", "content-length")]
            answer = (f"HTTP/1.1 {resp.status} {resp.reason}\r\n{''.join(fields)}"
                      f"Content-Length: {len(raw)}\r\n\r\n").encode("latin-1") + raw
        except OSError as exc:
            status, text = 0, repr(exc)
        else:
            status = resp.status
        finally:
            conn.close()
        if status == 200:
            return answer
        if status not in (0, 503) or time.monotonic() > deadline:
            raise BenchError(f"{row.key}: the gateway answered {status}: {text[:300]}")
        time.sleep(0.2)


def measure_row(row: RequestRow, rig: Rig, gw: GatewayProcess, args: argparse.Namespace,
                log_dir: str, topic: str | None = None) -> dict[str, Any]:
    """One measured wrk run of *row*. Without *topic*: a fresh topic, the wait until the
    gateway answers and a warm-up run first; with the *topic* of an earlier round, the gateway
    is warm already and the run starts at once."""
    warm_up = topic is None
    if topic is None:
        topic = rig.topic(row.key, args.partitions)
        wait_ready(gw.port, row, rig.cluster_id, topic, args.timeout)
    url = f"http://127.0.0.1:{gw.port}{row.path(rig.cluster_id, topic)}"
    script = WrkScript(method="POST", content_type=row.content_type, body=row.body,
                       ok_mark=row.ok_mark, bad_mark=row.bad_mark)
    common = dict(threads=args.threads, connections=args.connections, gateway=gw,
                  broker_pid=rig.broker_pid, timeout=args.timeout,
                  script_path=os.path.join(log_dir, f"wrk-{row.key}.lua"))
    if warm_up and args.warmup > 0:
        check_answers(run_wrk(script, url, duration=args.warmup, **common), f"{row.key} warm-up")
    run = run_wrk(script, url, duration=args.duration, **common)
    check_answers(run, row.key)
    out = run_figures(run, row, args.connections)
    out["topic"] = topic
    return out


def run_figures(run: WrkRun, row: RequestRow, connections: int) -> dict[str, Any]:
    """The per-request and per-record figures of one measured wrk run."""
    n = run.requests
    records = n * row.records_per_request
    out = run.as_dict()
    lat = run.latency_us
    out.update(
        key=row.key, label=row.label,
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
        concurrency_bound_per_s=connections / (lat["mean"] / 1e6) if lat["mean"] else None,
    )
    return out


def run_request_rows(name: str, args: argparse.Namespace, log_dir: str, rows: list[RequestRow],
                     params: dict[str, Any]) -> dict[str, Any]:
    """``--rounds`` interleaved rounds on one gateway: each row's wrk run, then the plain
    producer loop as that round's baseline."""
    result = new_result(name, args, dict(
        params, rounds=args.rounds, duration_s=args.duration, warmup_s=args.warmup,
        connections=args.connections, wrk_threads=args.threads, partitions=args.partitions,
        value_bytes=args.value_bytes, baseline_records=args.baseline_records,
        producer_settings=baseline.PRODUCER_SETTINGS,
    ))
    rounds: list[dict[str, dict[str, Any]]] = []
    with Rig(name.replace(".", "-"), args, log_dir) as rig:
        result["broker"] = rig.info
        gw = rig.start_gateway()
        try:
            topics: dict[str, str] = {}
            base_topic = rig.topic("base", args.partitions)
            for i in range(1, args.rounds + 1):
                one: dict[str, dict[str, Any]] = {}
                for row in rows:
                    try:
                        one[row.key] = measure_row(row, rig, gw, args, log_dir, topics.get(row.key))
                    except BenchError as exc:
                        raise rig.gateway_failed(gw, exc, f"{name} {row.key}, round {i}") from None
                    topics[row.key] = one[row.key]["topic"]
                one["baseline"] = baseline.run_produce(
                    rig.bootstrap, rig.broker_pid, base_topic, args.baseline_records,
                    args.value_bytes, 1000, args.timeout, os.path.join(log_dir, "baseline.log"),
                )
                one["baseline"].pop("series", None)
                rounds.append(one)
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize(result, rows, rounds)
    return result


#: A row's figures that get a median (min–max) over the rounds.
ROW_FIGURES = ("requests_per_s", "records_per_s", "cpu_us_per_request", "cpu_us_per_record",
               "loop_us_per_request", "gateway_cores", "peak_loop_share", "wrk_cores",
               "wrk_us_per_request", "p50_ms", "p99_ms", "other_load_cores")
BASELINE_FIGURES = ("records_per_s", "cpu_us_per_record", "other_load_cores")


def summarize(result: dict[str, Any], rows: list[RequestRow],
              rounds: list[dict[str, dict[str, Any]]]) -> None:
    for one in rounds:
        for row in rows:
            r = one[row.key]
            r["p50_ms"], r["p99_ms"] = r["latency_us"]["p50"] / 1000, r["latency_us"]["p99"] / 1000
            # A round's own ratio: the row's figure over the baseline of the same round.
            figure = r["cpu_us_per_request"] if row.per == "request" else r["cpu_us_per_record"]
            r["ratio_to_baseline"] = ratio(figure, one["baseline"]["cpu_us_per_record"])
    for one in rounds[1:]:  # the plot draws round 1; the other rounds' samples are dropped
        for row in rows:
            for key in ("per_second", "cpu_series"):
                one[row.key].pop(key, None)
    result["rounds"] = rounds
    result["summary"] = {row.key: {key: spread([one[row.key][key] for one in rounds])
                                   for key in (*ROW_FIGURES, "ratio_to_baseline")} for row in rows}
    result["summary"]["baseline"] = {key: spread([one["baseline"][key] for one in rounds])
                                     for key in BASELINE_FIGURES}
    base = result["summary"]["baseline"]
    loads = [one["baseline"]["other_load_cores"] for one in rounds]
    if any(c > 0.2 for c in loads):
        other_load_warning(result, max(loads), f"the baseline ({len([c for c in loads if c > 0.2])} "
                           f"of {len(loads)} rounds)")
    result["series"]["throughput"] = []
    result["series"]["cpu"] = []
    result["series"]["latency_requests"] = []
    p = result["params"]
    for row in rows:
        s = result["summary"][row.key]
        figure = s["cpu_us_per_request"] if row.per == "request" else s["cpu_us_per_record"]
        result["verdicts"].append(verdict(
            row.label, f"CPU/{row.per}", median_of(figure), median_of(base["cpu_us_per_record"]),
            "plain producer µs/record", row.target_us, unit="µs",
            rounds_ratio=s["ratio_to_baseline"],
        ))
        mine = [one[row.key] for one in rounds]
        loads = [r["other_load_cores"] for r in mine]
        if any(c > 0.2 for c in loads):
            other_load_warning(result, max(loads), f"the {row.key} runs "
                               f"({len([c for c in loads if c > 0.2])} of {len(loads)} rounds)")
        peaks = [(i, r) for i, r in enumerate(mine, 1) if r["peak_loop_share"] is not None]
        if peaks:
            i, r = min(peaks, key=lambda x: x[1]["peak_loop_share"])
            why = ""
            if r["wrk_cores"] < 0.9 * p["wrk_threads"]:
                # A closed loop: each connection waits for its answer before it sends again, so
                # connections / mean latency is all it can ask for.
                why = (f", nor was wrk ({r['wrk_cores']:.2f} cores for {p['wrk_threads']} "
                       f"threads): {p['connections']} connections each waiting "
                       f"{r['latency_us']['mean'] / 1000:.1f} ms on average (linger.ms=5 included) "
                       f"ask for at most {r['concurrency_bound_per_s']:,.0f} requests/s; "
                       "--connections raises that")
            loop_warning(result, f"{name_of(result)} {row.key}, round {i} (the lowest of "
                         f"{len(peaks)})", r["peak_loop_share"], why)
        first = mine[0]
        label = f"{row.key} ({first['records_per_request']} rec/req, round 1)"
        result["series"]["throughput"].append({
            "label": label, "unit": "records/s",
            "t": [x[0] for x in first["per_second"]],
            "rate": [x[1] * first["records_per_request"] for x in first["per_second"]],
        })
        result["series"]["cpu"].append(dict(first["cpu_series"], label=label))
        result["series"]["latency_requests"].append({"label": label, **first["latency_us"]})


def name_of(result: dict[str, Any]) -> str:
    return str(result["benchmark"]).removeprefix("bench.")


def print_rows_table(result: dict[str, Any], first_line: str) -> None:
    print_header(result, first_line)
    print()
    s = result["summary"]
    rows = [("", "requests/s", "records/s", "CPU µs/req", "CPU µs/rec", "/ baseline",
             "loop µs/req", "loop peak", "p50 ms", "p99 ms", "wrk cores")]
    for key, x in s.items():
        if key == "baseline":
            continue
        rows.append((
            f"gateway {key}", fmt_spread(x["requests_per_s"], ",.0f"),
            fmt_spread(x["records_per_s"], ",.0f"), fmt_spread(x["cpu_us_per_request"], ".1f"),
            fmt_spread(x["cpu_us_per_record"], ".2f"), fmt_spread(x["ratio_to_baseline"], ".2f"),
            fmt_spread(x["loop_us_per_request"], ".1f"), fmt_spread(x["peak_loop_share"], ".0%"),
            fmt_spread(x["p50_ms"], ".2f"), fmt_spread(x["p99_ms"], ".2f"),
            fmt_spread(x["wrk_cores"], ".2f"),
        ))
    base = s["baseline"]
    rows.append(("baseline (producer loop)", "", fmt_spread(base["records_per_s"], ",.0f"), "",
                 fmt_spread(base["cpu_us_per_record"], ".2f"), "", "", "", "", "", ""))
    print_rows(rows)
    print()
    print("CPU = utime+stime of the gateway (all threads) / requests or records completed in the "
          "measured run; / baseline = each round's CPU per record over the same round's plain "
          "producer loop; loop = its event-loop thread alone; loop peak = busiest 1 s of the loop "
          "thread; p50/p99 = wrk's request latency; wrk cores = the load generator's own CPU.")
    for i, one in enumerate(result["rounds"], 1):
        parts = [f"{key} {r['cpu_us_per_record']:.2f} µs/rec at {r['records_per_s']:,.0f} rec/s "
                 f"({r['requests']:,} requests in {r['wall_s']:.1f} s, {r['errors']['timeout']} wrk "
                 f"timeouts, other load {r['other_load_cores']:.2f} cores)"
                 for key, r in one.items() if key != "baseline"]
        b = one["baseline"]
        parts.append(f"baseline {b['cpu_us_per_record']:.2f} µs/rec at {b['records_per_s']:,.0f} "
                     f"rec/s (other load {b['other_load_cores']:.2f} cores)")
        print(f"round {i}: " + "; ".join(parts))
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
    if baseline_records:
        p.add_argument("--baseline-records", type=int, default=baseline_records, metavar="N",
                       help=f"records the baseline producer loop sends (default {baseline_records:,})")
    common_arguments(p, timeout=120.0)


def check_request_args(args: argparse.Namespace) -> str | None:
    if args.duration < 1 or args.warmup < 0:
        return "--duration must be at least 1 s, --warmup not negative"
    if args.connections < 1 or args.threads < 1 or args.connections < args.threads:
        return "--connections and --threads must be at least 1, connections >= threads"
    if args.partitions < 1 or args.value_bytes < 1 or getattr(args, "baseline_records", 1) < 1:
        return "--partitions, --value-bytes and --baseline-records must be at least 1"
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.requests", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_request_arguments(p, duration=3.0, connections=64, baseline_records=0)
    p.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="interleaved rounds of gateway, clients, fixed 200 (default 3)")
    p.add_argument("--only", choices=("v3", "v2"), help="run one variant only")
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.rounds < 3:
        return "--rounds must be at least 3 (the median of the rounds is reported)"
    return check_request_args(args)


def make_rows(args: argparse.Namespace) -> list[RequestRow]:
    value = value_bytes(args.value_bytes)
    rows = [
        RequestRow("v3", f"1 record/request, v3 Content-Length, {args.connections} conns",
                   "application/json", record_json(value), 1, '"error_code":200', None,
                   TARGET_OVERHEAD_US, "request", v3=True),
        RequestRow("v2", f"1 record/request, v2 binary, {args.connections} conns", V2_CT,
                   v1v2_body(value, 1), 1, None, '"offset":null', TARGET_OVERHEAD_US, "request"),
    ]
    return [r for r in rows if getattr(args, "only", None) in (None, r.key)]


# -- reference B: the fixed 200 ----------------------------------------------------------------


class Fixed200Server:
    """bench.fixed200 as a child process on a free loopback port."""

    def __init__(self, answer_path: str, log_path: str) -> None:
        self.answer_path = answer_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.fixed200", self.answer_path], cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, close_fds=True,
                start_new_session=True, preexec_fn=child_preexec(signal.SIGTERM))
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode("ascii", "replace") if ready else ""
        if not line.startswith("port "):
            self.stop()
            raise BenchError(f"bench.fixed200 did not start (log: {self.log_path})\n"
                             f"{log_tail(self.log_path)}")
        self.port = int(line.split()[1])

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def stop(self) -> None:
        stop_child(self.proc, signal.SIGTERM, 10.0)


# -- the rounds --------------------------------------------------------------------------------


@dataclass
class Variant:
    row: RequestRow
    url: str
    script: WrkScript
    server: Fixed200Server
    ref_url: str
    fixed_extra_ms: float = 0.0  # a fixed-200 cycle beyond its pacing delay (latency, timers)


def pacing_delay_ms(connections: int, rate: float, extra_ms: float) -> float:
    """wrk's delay per request that makes *connections* closed loops ask for *rate* requests/s."""
    return max(0.0, connections / rate * 1000 - extra_ms)


def fixed200_run(v: Variant, rate: float, duration: float, rig: Rig, args: argparse.Namespace,
                 log_dir: str) -> dict[str, Any]:
    """wrk against the fixed 200 at *rate*; learns the cycle's extra time for the next run."""
    delay = pacing_delay_ms(args.connections, rate, v.fixed_extra_ms)
    script = replace(v.script, delay_ms=delay)
    run = run_wrk(script, v.ref_url, threads=args.threads, connections=args.connections,
                  duration=duration, gateway=v.server, broker_pid=rig.broker_pid,
                  timeout=args.timeout, script_path=os.path.join(log_dir, f"wrk-{v.row.key}-fixed200.lua"))
    check_answers(run, f"{v.row.key} fixed 200")
    achieved = run.requests / run.wall_s
    v.fixed_extra_ms = max(0.0, args.connections / achieved * 1000 - delay)
    return dict(
        requests=run.requests, wall_s=run.wall_s, requests_per_s=achieved, delay_ms=delay,
        cpu_us_per_request=run.gateway_cpu_s / run.requests * 1e6,
        wrk_us_per_request=run.wrk_cpu_s / run.requests * 1e6,
        latency_us=run.latency_us, other_load_cores=run.other_load_cores,
    )


def setup_variant(row: RequestRow, rig: Rig, gw: GatewayProcess, args: argparse.Namespace,
                  log_dir: str) -> Variant:
    """The variant's topic, the gateway's answer for the fixed 200, its warm-ups."""
    topic = rig.topic(row.key, args.partitions)
    answer = wait_ready(gw.port, row, rig.cluster_id, topic, args.timeout)
    answer_path = os.path.join(log_dir, f"answer-{row.key}.http")
    with open(answer_path, "wb") as f:
        f.write(answer)
    server = Fixed200Server(answer_path, os.path.join(log_dir, f"fixed200-{row.key}.log"))
    server.start(min(args.timeout, 30.0))
    path = row.path(rig.cluster_id, topic)
    v = Variant(row, f"http://127.0.0.1:{gw.port}{path}",
                WrkScript(method="POST", content_type=row.content_type, body=row.body,
                          ok_mark=row.ok_mark, bad_mark=row.bad_mark),
                server, f"http://127.0.0.1:{server.port}{path}")
    if args.warmup > 0:
        run = run_wrk(v.script, v.url, threads=args.threads, connections=args.connections,
                      duration=args.warmup, gateway=gw, broker_pid=rig.broker_pid,
                      timeout=args.timeout, script_path=os.path.join(log_dir, f"wrk-{row.key}.lua"))
        check_answers(run, f"{row.key} warm-up")
        # The fixed 200's warm-up at the gateway's warm-up rate measures its cycle's extra time.
        fixed200_run(v, run.requests / run.wall_s, args.warmup, rig, args, log_dir)
    return v


def measure_round(v: Variant, rig: Rig, gw: GatewayProcess, clients_topic: str,
                  args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    key = v.row.key
    try:
        run = run_wrk(v.script, v.url, threads=args.threads, connections=args.connections,
                      duration=args.duration, gateway=gw, broker_pid=rig.broker_pid,
                      timeout=args.timeout, script_path=os.path.join(log_dir, f"wrk-{key}.lua"))
        check_answers(run, key)
    except BenchError as exc:
        raise rig.gateway_failed(gw, exc, f"bench.requests {key}") from None
    g = run_figures(run, v.row, args.connections)
    rate = g["requests_per_s"]
    a = baseline.run_clients(rig.bootstrap, rig.broker_pid, clients_topic, args.connections, rate,
                             run.wall_s, args.value_bytes, 1000, args.timeout,
                             os.path.join(log_dir, "clients.log"))
    b = fixed200_run(v, rate, run.wall_s, rig, args, log_dir)
    a_us, b_us = a["cpu_us_per_record"], b["cpu_us_per_request"]
    return {"gateway": g, "clients": a, "fixed200": b,
            "overhead_us": g["cpu_us_per_request"] - a_us - b_us}


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    rows = make_rows(args)
    result = new_result("bench.requests", args, dict(
        rounds=args.rounds, duration_s=args.duration, warmup_s=args.warmup,
        connections=args.connections, wrk_threads=args.threads, partitions=args.partitions,
        value_bytes=args.value_bytes, producer_settings=baseline.PRODUCER_SETTINGS,
    ))
    rounds: list[dict[str, dict[str, Any]]] = []
    variants: list[Variant] = []
    with Rig("bench-requests", args, log_dir) as rig:
        result["broker"] = rig.info
        gw = rig.start_gateway()
        try:
            clients_topic = rig.topic("clients", args.partitions)
            for row in rows:
                try:
                    variants.append(setup_variant(row, rig, gw, args, log_dir))
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, f"bench.requests {row.key} warm-up") from None
            for _ in range(args.rounds):
                rounds.append({v.row.key: measure_round(v, rig, gw, clients_topic, args, log_dir)
                               for v in variants})
        finally:
            for v in variants:
                v.server.stop()
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize_rounds(result, rows, rounds)
    return result


FIGURES = {
    "gateway": ("gateway", "cpu_us_per_request"),
    "gateway_loop": ("gateway", "loop_us_per_request"),
    "gateway_rate": ("gateway", "requests_per_s"),
    "clients": ("clients", "cpu_us_per_record"),
    "clients_loop": ("clients", "loop_us_per_record"),
    "clients_rate": ("clients", "achieved_rate"),
    "fixed200": ("fixed200", "cpu_us_per_request"),
    "fixed200_rate": ("fixed200", "requests_per_s"),
}


def summarize_rounds(result: dict[str, Any], rows: list[RequestRow],
                     rounds: list[dict[str, dict[str, Any]]]) -> None:
    result["rounds"] = rounds
    result["summary"] = {}
    for key in ("throughput", "cpu", "latency_requests"):
        result["series"][key] = []
    for row in rows:
        mine = [r[row.key] for r in rounds]
        s = {name: spread([m[part][field] for m in mine]) for name, (part, field) in FIGURES.items()}
        s["references"] = spread([m["clients"]["cpu_us_per_record"]
                                  + m["fixed200"]["cpu_us_per_request"] for m in mine])
        s["overhead"] = spread([m["overhead_us"] for m in mine])
        result["summary"][row.key] = s
        v = verdict(row.label, "own µs/req", s["overhead"]["median"], s["references"]["median"],
                    "clients + fixed 200", row.target_us, unit="µs")
        v["ratio"] = None  # the target is on the difference, not on a ratio
        result["verdicts"].append(v)
        loads = [m[part]["other_load_cores"] for m in mine
                 for part in ("gateway", "clients", "fixed200")]
        busy = [c for c in loads if c > 0.2]
        if busy:
            other_load_warning(result, max(busy), f"{len(busy)} of the {len(loads)} {row.key} "
                               f"runs ({min(busy):.2f}–{max(busy):.2f} cores)")
        for i, m in enumerate(mine, 1):
            g = m["gateway"]["requests_per_s"]
            for what, rate in (("clients", m["clients"]["achieved_rate"]),
                               ("fixed 200", m["fixed200"]["requests_per_s"])):
                if abs(rate / g - 1) > 0.1:
                    result["warnings"].append(
                        f"round {i} {row.key}: the {what} ran at {rate:,.0f}/s, the gateway at "
                        f"{g:,.0f}/s: its CPU per request is not at the same rate")
        peaks = [m["gateway"]["peak_loop_share"] for m in mine]
        s["gateway_loop_peak"] = spread([x for x in peaks if x is not None]) if any(
            x is not None for x in peaks) else None
        low = [(i, m["gateway"]) for i, m in enumerate(mine, 1)
               if m["gateway"]["peak_loop_share"] is not None
               and m["gateway"]["peak_loop_share"] < SATURATED_LOOP]
        if low:
            i, g = min(low, key=lambda x: x[1]["peak_loop_share"])
            loop_warning(result, f"requests {row.key}, {len(low)} of {len(mine)} rounds (the "
                         f"lowest: round {i})", g["peak_loop_share"],
                         f" (it was waiting: {result['params']['connections']} connections each "
                         f"{g['latency_us']['mean'] / 1000:.1f} ms on average, linger.ms=5 "
                         "included)")
        first = mine[0]["gateway"]
        label = f"{row.key} (1 rec/req, round 1)"
        result["series"]["throughput"].append({
            "label": label, "unit": "records/s",
            "t": [x[0] for x in first["per_second"]], "rate": [x[1] for x in first["per_second"]],
        })
        result["series"]["cpu"].append(dict(first["cpu_series"], label=label))
        result["series"]["latency_requests"].append({"label": label, **first["latency_us"]})


def _mm(s: dict[str, float], spec: str) -> str:
    return f"{fmt(s['median'], spec)} ({fmt(s['min'], spec)}–{fmt(s['max'], spec)})"


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_header(result, (
        f"bench.requests: one record ({p['value_bytes']}-byte BINARY value) per request, keep-alive, "
        f"{p['connections']} connections, wrk -t{p['wrk_threads']}; {p['rounds']} interleaved rounds "
        f"of {p['duration_s']:g} s per variant: the gateway, then (A) {p['connections']} closed-loop "
        "confluent-kafka clients and (B) a minimal uvloop server answering a fixed 200, both at the "
        "gateway's rate of the round; median (min–max)"))
    print()
    table = [("", "requests/s", "CPU µs/request", "of it: main thread", "loop peak")]
    for key, s in result["summary"].items():
        peak = _mm(s["gateway_loop_peak"], ".0%") if s.get("gateway_loop_peak") else "-"
        table += [
            (f"{key} gateway", _mm(s["gateway_rate"], ",.0f"), _mm(s["gateway"], ".1f"),
             _mm(s["gateway_loop"], ".1f"), peak),
            (f"{key} (A) the same pattern without HTTP", _mm(s["clients_rate"], ",.0f"),
             _mm(s["clients"], ".1f"), _mm(s["clients_loop"], ".1f"), ""),
            (f"{key} (B) a minimal uvloop server, fixed 200", _mm(s["fixed200_rate"], ",.0f"),
             _mm(s["fixed200"], ".1f"), "", ""),
            (f"{key} the gateway's own: gateway - (A + B)", "", _mm(s["overhead"], ".1f"), "", ""),
        ]
    print_rows(table)
    print()
    print("CPU = utime+stime of the process (all threads; main thread: the gateway's event loop, "
          "the clients' Python loop, librdkafka's threads are the rest) / requests completed; "
          "loop peak = the gateway's event loop in its busiest second. "
          "(A): one process, one producer with the gateway's settings, each client producing one "
          "record and waiting for its delivery report, paced to the gateway's rate. (B): "
          "bench.fixed200 answering every request with the gateway's own answer bytes, wrk "
          "paced to the gateway's rate with the same requests and connections.")
    for i, r in enumerate(result["rounds"], 1):
        parts = []
        for key, m in r.items():
            g, a, b = m["gateway"], m["clients"], m["fixed200"]
            parts.append(
                f"{key} {g['cpu_us_per_request']:.1f} - ({a['cpu_us_per_record']:.1f} + "
                f"{b['cpu_us_per_request']:.1f}) = {m['overhead_us']:.1f} µs at "
                f"{g['requests_per_s']:,.0f}/{a['achieved_rate']:,.0f}/{b['requests_per_s']:,.0f} "
                f"req/s (p50 {g['latency_us']['p50'] / 1000:.1f} ms; other load "
                f"{g['other_load_cores']:.2f}/{a['other_load_cores']:.2f}/"
                f"{b['other_load_cores']:.2f} cores)")
        print(f"round {i}: " + "; ".join(parts))
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.requests", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
