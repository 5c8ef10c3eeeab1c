"""The disk spool in the produce path: spooling and forwarding against the normal path.

    .venv/bin/python -m bench.edge [--records N] [--rounds R] [--json] [--plot FILE.png] ...

Each round runs three phases, one after the other, with N records of ``--value-bytes`` (100)
byte BINARY values, no key, streamed over one chunked v3 connection by the repository's load
generator as bench.stream streams them (gateway.loadgen's stream mode, closed loop, called
in-process by bench.load: ``POST /v3/clusters/{c}/topics/{t}/records``, the reports read while
sending), each after a ``--warmup`` stream on the same gateway that is not counted:

- normal: a gateway without the spool, with Kafka (an embedded Tansu broker unless
  ``--bootstrap-servers``). One gateway serves every round.
- spooling: a gateway started for the round with ``--spool-dir`` (a fresh directory under
  ``--dir``), ``--spool-fsync 100`` and ``--spool-after 0``, whose ``--bootstrap-servers`` is a
  loopback port nobody listens on: it judges Kafka unreachable at once (the bench waits for
  /readyz to say "spooling") and spools every record. Every report must be a 202 (counted, and
  about one in 1,000 decoded whole); a round with any other report is invalid, says so, and is left
  out of the spooling figures.
- forwarding: that gateway stopped (SIGTERM), a gateway started on the same spool directory
  with the live broker forwards what the spool holds, the round's records and its warm-up, to a
  topic created for the round. The bench reads the spool's checkpoint file every 5 ms (which
  costs the gateway nothing, where polling /metrics would cost it CPU): the figures run from
  the first checkpoint the forwarder writes to the last (one per batch of up to 2,500 records
  that Kafka has acknowledged; the round lines give the median time between two). Then
  /metrics must say the spool is empty, every record forwarded and none dropped, and every
  record is read back from the topic (not timed).

Figures: records/s (normal, spooling: from the response head to the last report; forwarding:
first checkpoint -> last) and the gateway process's CPU µs per record (the loadgen's measured
run, its first record to the end of the run; utime+stime of all its threads from /proc: the event loop, librdkafka's
threads, the spool's writer and reader), with the event loop's own beside it (per record, and
"busy": its CPU over the time measured). A gateway started while Kafka is unreachable knows no
topic: it answers a stream's head once its topic lookup has failed, about a second later, so
the spooling row also shows that wait and the records/s of the whole stream, first byte to
last report. Each figure is the median of the rounds with their min–max. Targets (issue 11):
spooling costs at most 2× the normal path's CPU per record; forwarding reaches at least the
normal path's records/s. The verdicts inform; machines are noisy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

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
    log_findings,
    log_tail,
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
    verdict,
)
from bench.load import StreamRun, require_all_acked, run_stream, warm_up
from gateway.produce.edge import FORWARD_MAX_RECORDS
from gateway.produce.spool.files import read_checkpoint

FSYNC = "100"
TARGET_CPU_RATIO = 2.0  # spooling CPU per record <= 2x the normal path's
TARGET_RATE_RATIO = 1.0  # forwarding records/s >= the normal path's
CHECKPOINT_POLL = 0.005  # seconds between two reads of the checkpoint while forwarding
PHASES = ("normal", "spooling", "forwarding")
# Lines a gateway logs because its Kafka is not there: expected from the spooling gateway.
OUTAGE_LINES = (
    "Connection refused", "brokers are down", "Kafka is unreachable", "is not reachable yet",
    "metadata refresh failed", "spooling new records", "Failed to get metadata",
)


# -- small HTTP helpers ----------------------------------------------------------------------


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def scrape(port: int) -> dict[str, float]:
    """The gateway's /metrics: each family's samples summed over their labels."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    out: dict[str, float] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + float(value)
    return out


def wait_spooling(gw: GatewayProcess, timeout: float) -> str:
    """Wait until /readyz says the gateway spools; its reason."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, body = http_get(gw.port, "/readyz")
        try:
            last = (status, json.loads(body))
        except ValueError:
            last = (status, body[:200])
        if status == 200 and isinstance(last[1], dict) and last[1].get("status") == "spooling":
            return str(last[1].get("reason"))
        time.sleep(0.05)
    raise BenchError(f"the gateway did not say it spools within {timeout:g} s: /readyz {last}")


def consume_count(bootstrap: str, topic: str, partitions: int, want: int, timeout: float) -> int:
    """Records read from a topic from its start, until *want* of them or *timeout*. (Tansu's
    high watermarks do not add up to the records a topic holds: the records are read.)"""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-edge",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        n = 0
        deadline = time.monotonic() + timeout
        while n < want and time.monotonic() < deadline:
            n += sum(1 for m in consumer.consume(10_000, 0.5) if m.error() is None)
        return n
    finally:
        consumer.close()


# -- the gateways ----------------------------------------------------------------------------


def start_gateway(rig: Rig, bootstrap: str, log_name: str, extra: list[str],
                  before: Callable[[GatewayProcess], None] | None = None) -> GatewayProcess:
    """A gateway with this bootstrap and these arguments (after any --gateway-arg), stopped
    with the rig; *before* is called with it right before it is started."""
    from gateway.kafka.embedded import find_free_port

    gw = GatewayProcess(bootstrap, find_free_port(), os.path.join(rig.log_dir, log_name),
                        extra_args=[*(rig.args.gateway_arg or ()), *extra])
    rig.gateways.append(gw)
    if before is not None:
        before(gw)
    try:
        gw.start(rig.timeout)
    except BenchError as exc:
        raise BenchError(f"{exc} (log: {gw.log_path})\n{log_tail(gw.log_path)}") from None
    return gw


def outage_findings(path: str) -> dict[str, Any]:
    """log_findings of a gateway whose Kafka is not there: the lines that say so are counted
    apart (``expected``), every other warning or error as usual."""
    findings = log_findings(path)
    expected = 0
    counts: dict[str, int] = {}
    examples: list[str] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                level = next((lv for lv in ("WARNING", "ERROR", "CRITICAL", "Traceback")
                              if lv in line), None)
                if level is None:
                    continue
                if any(s in line for s in OUTAGE_LINES):
                    expected += 1
                    continue
                counts[level] = counts.get(level, 0) + 1
                if len(examples) < 5:
                    examples.append(line.rstrip()[:300])
    except OSError:
        pass
    return dict(findings, counts=counts, examples=examples, expected_outage_lines=expected)


def gateway_report(gw: GatewayProcess, outage: bool) -> dict[str, Any]:
    report = gw.report()
    if outage:
        report["log_findings"] = outage_findings(gw.log_path)
    return report


# -- a measured stream -----------------------------------------------------------------------


def measure_stream(gw: GatewayProcess, broker_pid: int | None, cluster_id: str, topic: str,
                   args: argparse.Namespace, spooled: bool) -> tuple[dict[str, Any], StreamRun]:
    """Stream ``--records`` records (the loadgen, bench.load) and read their reports; the
    gateway's figures. The caller checks the reports. Records/s run from the response head to
    the last report (a gateway that has to look its topic up answers the head later: that wait
    is ``head_ms``); CPU from the start of the loadgen's measured run to its end."""
    n = args.records
    ticks: dict[str, int] = {}

    def on_start() -> None:  # the loadgen's measured run begins: before its first record
        ticks.update(gw=gw.cpu_ticks(), loop=main_thread_ticks(gw.pid), self=cpu_ticks(),
                     machine=machine_busy_ticks(),
                     broker=cpu_ticks(broker_pid) if broker_pid is not None else 0)

    run = run_stream(gw.port, cluster_id, topic, value_bytes=args.value_bytes,
                     partitions=args.partitions, records=n, timeout=args.timeout,
                     stall_timeout=args.stall_timeout, spooled=spooled, on_start=on_start)
    gw_ticks = gw.cpu_ticks() - ticks["gw"]
    loop_ticks = main_thread_ticks(gw.pid) - ticks["loop"]
    self_ticks = cpu_ticks() - ticks["self"]
    machine = machine_busy_ticks() - ticks["machine"]
    broker = cpu_ticks(broker_pid) - ticks["broker"] if broker_pid is not None else 0
    w = run.watch
    wall = run.result.duration_s
    head_ms = run.ms_after_start(w.head_at) or 0.0
    answered = max(1e-6, wall - head_ms / 1000)
    ticks_wall = run.t_end - run.t_start
    return {
        "records": n,
        "wall_s": wall,
        "records_per_s": n / answered,
        "stream_records_per_s": n / wall,
        "head_ms": head_ms,
        "cpu_us_per_record": gw_ticks / CLK_TCK / n * 1e6,
        "loop_us_per_record": loop_ticks / CLK_TCK / n * 1e6,
        "loop_share": loop_ticks / CLK_TCK / answered,
        "broker_cpu_us_per_record": broker / CLK_TCK / n * 1e6 if broker_pid is not None else None,
        "other_load_cores": max(0, machine - gw_ticks - self_ticks - broker) / CLK_TCK / ticks_wall,
        "max_report_gap_ms": w.max_gap_us / 1000,
        "reports_sampled": w.sampled,
        "loadgen_cpu_us_per_record": run.result.loadgen_cpu_us_per_record,
    }, run


def normal_phase(rig: Rig, gw: GatewayProcess, topic: str, args: argparse.Namespace
                 ) -> dict[str, Any]:
    try:
        warm_up(gw.port, rig.cluster_id, topic, args)
        out, run = measure_stream(gw, rig.broker_pid, rig.cluster_id, topic, args, False)
        require_all_acked(run, args.records, "normal phase")
    except BenchError as exc:
        raise rig.gateway_failed(gw, exc, "normal phase") from None
    return out


def spooling_phase(rig: Rig, topic: str, directory: str, round_no: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    """A gateway without Kafka spools the round's stream into *directory*; stopped after."""
    from gateway.kafka.embedded import find_free_port

    nobody = f"127.0.0.1:{find_free_port()}"  # free now: nobody listens there
    gw = start_gateway(rig, nobody, f"gateway-spooling-{round_no}.log", [
        "--spool-dir", directory, "--spool-fsync", FSYNC, "--spool-after", "0"])
    try:
        reason = wait_spooling(gw, min(args.timeout, 30.0))

        warm_up(gw.port, rig.cluster_id, topic, args, spooled=True)
        out, run = measure_stream(gw, None, rig.cluster_id, topic, args, True)
        w = run.watch
        if w.problem_count:
            raise BenchError(f"{w.problem_count} sampled 202 reports are wrong: {w.problems}")
        m = scrape(gw.port)
    except BenchError as exc:
        raise rig.gateway_failed(gw, exc, f"spooling phase, round {round_no}") from None
    gw.stop(timeout=40.0)
    if gw.exit_code != 0:
        raise rig.gateway_failed(gw, BenchError(f"exit status {gw.exit_code} after SIGTERM"),
                                 f"spooling phase, round {round_no}")
    r = run.result
    # The loadgen counts 200 and 202 alike as acknowledged; the watch counted the 200s.
    spooled_ok = r.acked - w.other_kind
    others = dict(r.failed)
    if w.other_kind:
        others["200"] = w.other_kind
    invalid = None
    if spooled_ok != args.records or run.stalled:
        invalid = (f"{args.records - spooled_ok:,} of {args.records:,} reports are not 202 "
                   f"(by code: {others}; first: {r.errors[:1]})"
                   + (" (stalled)" if run.stalled else ""))
    return dict(
        out,
        reports_202=spooled_ok,
        reports_other=others,
        invalid=invalid,
        reason=reason,
        spooled=int(m.get("gateway_spool_records", 0)),
        spool_bytes=int(m.get("gateway_spool_bytes", 0)),
        stop_s=gw.stop_s,
    )


class CheckpointWatch(threading.Thread):
    """Reads the spool's checkpoint every CHECKPOINT_POLL s while a gateway forwards it, and
    notes at each change (time, acknowledged sequence number, the gateway's CPU ticks, its
    event loop's, the machine's busy ticks, the broker's, the bench's)."""

    def __init__(self, directory: str, end_seq: int, broker_pid: int | None) -> None:
        super().__init__(name="bench-checkpoint", daemon=True)
        self.directory = directory
        self.end_seq = end_seq
        self.broker_pid = broker_pid
        self.gw: GatewayProcess | None = None
        self.marks: list[tuple[float, int, int, int, int, int, int]] = []
        self.error: str | None = None
        self.done = threading.Event()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)

    def run(self) -> None:
        last = -1
        try:
            while not self._stop_event.is_set():
                proc = self.gw.proc if self.gw is not None else None
                if proc is not None:
                    pos, bad = read_checkpoint(self.directory)
                    if bad is not None:
                        self.error = f"the checkpoint cannot be read: {bad}"
                        return
                    seq = pos.seq if pos is not None else 0
                    if seq != last:
                        t = time.perf_counter()
                        pid = proc.pid
                        self.marks.append((
                            t, seq, cpu_ticks(pid), main_thread_ticks(pid), machine_busy_ticks(),
                            cpu_ticks(self.broker_pid) if self.broker_pid is not None else 0,
                            cpu_ticks(),
                        ))
                        last = seq
                        if seq >= self.end_seq:
                            return
                self._stop_event.wait(CHECKPOINT_POLL)
        except (OSError, ValueError) as exc:  # the gateway exited under us
            self.error = f"reading the checkpoint or the gateway's CPU failed: {exc!r}"
        finally:
            self.done.set()


def forwarding_phase(rig: Rig, topic: str, directory: str, total: int, round_no: int,
                     args: argparse.Namespace) -> dict[str, Any]:
    """A gateway with Kafka on the spooling gateway's directory forwards its *total* records."""
    watch = CheckpointWatch(directory, total, rig.broker_pid)
    t_start = time.perf_counter()

    def before(gw: GatewayProcess) -> None:
        watch.gw = gw
        watch.start()

    try:
        gw = start_gateway(rig, rig.bootstrap, f"gateway-forwarding-{round_no}.log", [
            "--spool-dir", directory, "--spool-fsync", FSYNC], before=before)
    except BaseException:
        watch.stop()
        raise
    what = f"forwarding phase, round {round_no}"
    try:
        if not watch.done.wait(args.timeout):
            seq = watch.marks[-1][1] if watch.marks else 0
            raise BenchError(f"{seq:,} of {total:,} spooled records forwarded after "
                             f"{args.timeout:g} s")
        if watch.error is not None:
            raise BenchError(watch.error)
        deadline = time.monotonic() + 10.0
        while True:
            m = scrape(gw.port)
            if m.get("gateway_spool_records") == 0:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the checkpoint is at the end but /metrics says "
                                 f"gateway_spool_records {m.get('gateway_spool_records')}")
            time.sleep(0.05)
        forwarded = int(m.get("gateway_spool_records_forwarded_total", 0))
        dropped = int(m.get("gateway_spool_records_dropped_total", 0))
        if forwarded != total or dropped:
            raise BenchError(f"{forwarded:,} of {total:,} records forwarded, {dropped:,} dropped")
        t_read = time.monotonic()
        landed = consume_count(rig.bootstrap, topic, args.partitions, total,
                               min(args.timeout, 60.0))
        read_s = time.monotonic() - t_read
        if landed < total:
            raise BenchError(f"{landed:,} records read from the topic in {read_s:.0f} s, "
                             f"{total:,} were forwarded")
    except BenchError as exc:
        raise rig.gateway_failed(gw, exc, what) from None
    finally:
        watch.stop()
    gw.stop(timeout=40.0)
    moving = [mk for mk in watch.marks if mk[1] > 0]
    if len(moving) < 2 or moving[-1][1] - moving[0][1] < FORWARD_MAX_RECORDS:
        return {"invalid": f"{total:,} records forwarded in {len(moving)} checkpoints: too few "
                "to time (use more --records)", "spooled": total, "landed": landed,
                "checkpoints": len(moving), "other_load_cores": None}
    (t0, s0, c0, l0, m0, b0, x0), (t1, s1, c1, l1, m1, b1, x1) = moving[0], moving[-1]
    n, wall = s1 - s0, t1 - t0
    return {
        "records": n,
        "spooled": total,
        "wall_s": wall,
        "records_per_s": n / wall,
        "cpu_us_per_record": (c1 - c0) / CLK_TCK / n * 1e6,
        "loop_us_per_record": (l1 - l0) / CLK_TCK / n * 1e6,
        "loop_share": (l1 - l0) / CLK_TCK / wall,
        "checkpoint_ms": statistics.median(
            (b[0] - a[0]) * 1000 for a, b in zip(moving, moving[1:], strict=False)),
        "broker_cpu_us_per_record": (b1 - b0) / CLK_TCK / n * 1e6 if rig.broker_pid else None,
        "other_load_cores": max(0, (m1 - m0) - (c1 - c0) - (b1 - b0) - (x1 - x0)) / CLK_TCK / wall,
        "checkpoints": len(moving),
        "first_checkpoint_s": t0 - t_start,
        "landed": landed,
        "read_back_s": read_s,
        "stop_s": gw.stop_s,
    }


# -- the run ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=500_000, metavar="N",
                   help="records per phase and round (default 500000)")
    p.add_argument("--rounds", type=int, default=3, metavar="R", help="rounds (default 3)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value, sent as BINARY (base64) (default 100)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topics (default 6)")
    p.add_argument("--warmup", type=int, default=1000, metavar="N",
                   help="records sent before each measured stream, not counted (default 1000)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="end a stream when no report arrives for this long (0: wait for "
                   "--timeout) (default 30)")
    p.add_argument("--dir", metavar="DIR", help="where the spool directories go, on the disk to "
                   "measure (default: the system's temporary directory); removed at the end")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    for name in ("value_bytes", "partitions", "warmup"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.records < 3 * FORWARD_MAX_RECORDS:
        return (f"--records must be at least {3 * FORWARD_MAX_RECORDS} (the forwarder "
                f"acknowledges {FORWARD_MAX_RECORDS:,} records at a time)")
    if problem := check_rounds(args.rounds):
        return problem
    if args.stall_timeout < 0:
        return "--stall-timeout must not be negative"
    if any(a.startswith(("--workers", "--spool-")) for a in args.gateway_arg or ()):
        return "--gateway-arg: bench.edge runs one gateway process and sets the spool options"
    return None


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.edge", args, {
        "records": args.records, "rounds": args.rounds, "value_bytes": args.value_bytes,
        "partitions": args.partitions, "warmup": args.warmup, "spool_fsync": FSYNC,
        "dir": args.dir or tempfile.gettempdir(),
    })
    base = tempfile.mkdtemp(prefix="bench-edge-", dir=args.dir)
    rounds: list[dict[str, Any]] = []
    try:
        with Rig("bench-edge", args, log_dir) as rig:
            result["broker"] = rig.info
            try:
                normal_topic = rig.topic("normal", args.partitions)
                normal_gw = rig.start_gateway("gateway-normal.log")
                for r in range(1, args.rounds + 1):
                    directory = os.path.join(base, f"spool-{r}")
                    topic = rig.topic(f"spooled-{r}", args.partitions)
                    normal = normal_phase(rig, normal_gw, normal_topic, args)
                    spooling = spooling_phase(rig, topic, directory, r, args)
                    forwarding = forwarding_phase(rig, topic, directory, spooling["spooled"], r,
                                                  args)
                    shutil.rmtree(directory, ignore_errors=True)
                    rounds.append({"normal": normal, "spooling": spooling,
                                   "forwarding": forwarding})
            finally:
                for gw in rig.gateways:
                    gw.stop(timeout=40.0)
                # The spooling gateways' logs say that Kafka is not there: expected.
                result["gateway_processes"] = [
                    gateway_report(g, os.path.basename(g.log_path).startswith("gateway-spooling"))
                    for g in rig.gateways]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    summarize(result, rounds, args)
    return result


FIGURES = ("records_per_s", "stream_records_per_s", "head_ms", "cpu_us_per_record",
           "loop_us_per_record", "loop_share", "broker_cpu_us_per_record", "checkpoint_ms")


def summarize(result: dict[str, Any], rounds: list[dict[str, Any]], args: argparse.Namespace
              ) -> None:
    result["rounds"] = rounds
    rows: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        runs = [r[phase] for r in rounds if not r[phase].get("invalid")]
        row: dict[str, Any] = {"valid_rounds": len(runs)}
        for key in FIGURES:
            row[key] = spread([x[key] for x in runs if x.get(key) is not None])
        rows[phase] = row
        loads = [x[phase]["other_load_cores"] for x in rounds]
        busy = [c for c in loads if c is not None and c > 0.2]
        if busy:
            other_load_warning(result, max(busy), f"{len(busy)} of {len(loads)} {phase} phases "
                               f"({min(busy):.2f}–{max(busy):.2f} cores)")
        for i, x in enumerate(rounds, 1):
            if x[phase].get("invalid"):
                result["warnings"].append(f"round {i}: its {phase} figures are INVALID, left "
                                          f"out: {x[phase]['invalid']}")
    # Per round, spooling and forwarding against the normal path of the same round: the
    # target rows judge the median of these, not the ratio of the medians.
    paired: dict[str, dict[str, float] | None] = {}
    for phase, key in (("spooling", "cpu_us_per_record"), ("spooling", "records_per_s"),
                       ("forwarding", "cpu_us_per_record"), ("forwarding", "records_per_s")):
        values = [r[phase][key] / r["normal"][key] for r in rounds
                  if not r[phase].get("invalid") and r["normal"][key]]
        paired[f"{phase}/{key}"] = spread(values)
    result["rows"] = rows
    result["paired_ratios"] = paired

    def median(phase: str, key: str) -> float | None:
        s = rows[phase][key]
        return s["median"] if s else None

    if rows["spooling"]["valid_rounds"]:
        result["verdicts"].append(verdict(
            f"v3 stream spooled (--spool-fsync {FSYNC}), {args.value_bytes}-byte values",
            "CPU/record", median("spooling", "cpu_us_per_record"),
            median("normal", "cpu_us_per_record"), "normal path", TARGET_CPU_RATIO,
            target_on="ratio", unit="µs", rounds_ratio=paired["spooling/cpu_us_per_record"]))
    else:
        result["verdicts"].append({
            "row": f"v3 stream spooled (--spool-fsync {FSYNC})", "metric": "CPU/record",
            "target_text": f"≤ {TARGET_CPU_RATIO:g}× baseline",
            "skipped": "every spooling round was invalid (reports not 202)"})
    if rows["forwarding"]["valid_rounds"]:
        result["verdicts"].append(verdict(
            "spool forwarded into Kafka", "records/s", median("forwarding", "records_per_s"),
            median("normal", "records_per_s"), "normal path", TARGET_RATE_RATIO,
            target_on="ratio", unit="rec/s", higher_is_better=True,
            rounds_ratio=paired["forwarding/records_per_s"]))
    else:
        result["verdicts"].append({
            "row": "spool forwarded into Kafka", "metric": "records/s",
            "target_text": f"≥ {TARGET_RATE_RATIO:g}× baseline",
            "skipped": "no forwarding round could be timed"})


# -- output ----------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    p, rows, paired = result["params"], result["rows"], result["paired_ratios"]
    print_header(result, (
        f"bench.edge: {p['records']:,} records of {p['value_bytes']}-byte BINARY values per phase, "
        f"one chunked v3 stream, {p['partitions']} partitions, {p['rounds']} rounds of normal, "
        f"spooling, forwarding; spool in {p['dir']} (--spool-fsync {p['spool_fsync']}); "
        "median (min–max)"))
    print()
    names = {"normal": "normal (no spool)", "spooling": "spooling (Kafka unreachable)",
             "forwarding": "forwarding (the spool into Kafka)"}
    table = [("", "records/s", "CPU µs/record", "loop µs/record", "loop busy",
              "broker µs/record", "head after ms", "whole stream rec/s")]
    for phase in PHASES:
        r = rows[phase]
        name = names[phase]
        if r["valid_rounds"] < p["rounds"]:
            name += f" [{r['valid_rounds']} of {p['rounds']} rounds valid]"
        table.append((name, fmt_spread(r["records_per_s"], ",.0f"), fmt_spread(r["cpu_us_per_record"], ".2f"),
                      fmt_spread(r["loop_us_per_record"], ".2f"), fmt_spread(r["loop_share"], ".0%"),
                      fmt_spread(r["broker_cpu_us_per_record"], ".2f"),
                      fmt_spread(r["head_ms"], ",.0f"),
                      fmt_spread(r["stream_records_per_s"], ",.0f")))
    for phase in ("spooling", "forwarding"):
        table.append((f"{phase} / normal, per round", fmt_spread(paired[f"{phase}/records_per_s"], ".2f"),
                      fmt_spread(paired[f"{phase}/cpu_us_per_record"], ".2f"), "", "", "", "", ""))
    print_rows(table)
    print()
    for i, r in enumerate(result["rounds"], 1):
        s, f = r["spooling"], r["forwarding"]
        other = ", ".join(f"{code}: {n:,}" for code, n in s["reports_other"].items())
        line = (f"round {i}: {s['reports_202']:,} of {s['records']:,} reports 202"
                + (f" (others: {other}; INVALID)" if s.get("invalid") else "")
                + f", {s['spooled']:,} records in the spool "
                f"({s['spool_bytes'] / max(1, s['spooled']):.0f} bytes each); ")
        if f.get("invalid"):
            line += f"forwarding INVALID: {f['invalid']}"
        else:
            line += (f"forwarded {f['records']:,} from the first to the last of "
                     f"{f['checkpoints']} checkpoints (the first {f['first_checkpoint_s']:.1f} s "
                     f"after the gateway was started; then one every {f['checkpoint_ms']:.0f} ms, "
                     "median)")
        print(line + f"; {f['landed']:,} read back from the topic")
    print_gateway_processes(result)
    outage = [g["log_findings"].get("expected_outage_lines", 0)
              for g in result.get("gateway_processes", []) if "expected_outage_lines"
              in g.get("log_findings", {})]
    if outage:
        span = f"{min(outage)}" if min(outage) == max(outage) else f"{min(outage)}–{max(outage)}"
        print(f"(the spooling gateways' logs: {span} warnings each saying that Kafka is not "
              "there, expected and not counted above)")
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.edge", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
