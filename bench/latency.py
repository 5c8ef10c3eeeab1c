"""Report latency of one v3 stream at a fixed rate: half the peak streaming rate by default.

    .venv/bin/python -m bench.latency [--rate R | --fraction F] [--duration S] [--json] ...

1. Peak: a quick full-speed stream (bench.stream's generator, ``--probe-records``) gives the
   gateway's peak rate on this machine in this run (or take ``--rate``).
2. Gateway: one chunked connection to ``POST /v3/clusters/{c}/topics/{t}/records``; a sender
   process (forked: it shares no GIL with the reader) writes, every millisecond, one HTTP
   chunk holding the records due by then at the fixed rate (``--fraction`` of the peak) for
   ``--duration`` seconds, noting each chunk's send time; the reader notes when each report
   arrives (on Linux the kernel's receive time of its bytes, so that the reader's own wake-up
   and work are not counted). Report latency = arrival of a record's report - send time of its
   chunk. Reports come in request order, so report i is record i.
3. Baseline: the plain confluent-kafka producer (bench.baseline, mode ``rate``) at the same
   rate for the same time, same tick; latency = delivery callback time - produce() time.

``--rounds N`` alternates the two N times and gives medians with min-max (a burst of other
load then falls on both sides). Both include librdkafka's ``linger.ms=5`` (the gateway's
default, docs/api.md §5). Targets: gateway p99 report latency ≤ 10 ms at half the peak rate
(issue 4), and at most 1 ms over the plain producer's p99 in the same run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import select
import socket
import struct
import sys
import time
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
    describe_tcp,
    fmt,
    machine_busy_ticks,
    new_result,
    other_load_warning,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    record_json,
    records_path,
    spread,
    thread_cpu,
    value_bytes,
    verdict,
)
from bench.stream import (
    RECV_BYTES,
    GatewayRefused,
    ReportStream,
    build_body,
    stream_records,
    warm_up_gateway,
)

TARGET_P99_MS = 10.0
# A report's arrival is the kernel's receive time of the bytes that carried it (Linux:
# SO_TIMESTAMPNS, <asm-generic/socket.h>; a struct timespec of CLOCK_REALTIME per recvmsg, that of
# the last segment read), so that the reader's own wake-up and the time it spends checking the
# previous block, which are no part of the gateway's latency, are not counted.
KERNEL_RX_STAMPS = sys.platform == "linux"
SO_TIMESTAMPNS = 35
ANC_BYTES = socket.CMSG_SPACE(16)
TARGET_P99_GAP_MS = 1.0  # the gateway's p99 at most this much over the plain producer's
MAX_CHUNK_RECORDS = 4096
WINDOW = 0.5  # seconds per point of the latency-over-time series
THROUGHPUT_BIN = 0.1  # seconds per point of the throughput series


def weighted_percentiles(pairs: list[tuple[float, int]]) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max of latencies given as (value, how many records had it)."""
    total = sum(w for _, w in pairs)
    if not total:
        return {"p50": None, "p90": None, "p99": None, "p999": None, "max": None}
    pairs = sorted(pairs)
    out: dict[str, float | None] = {}
    marks = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999)]
    seen = 0
    k = 0
    for value, w in pairs:
        seen += w
        while k < len(marks) and seen > marks[k][1] * total:
            out[marks[k][0]] = value
            k += 1
    out["max"] = pairs[-1][0]
    return out


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


class PacedSender:
    """Writes the chunked body at a fixed rate in a child process of its own (forked, sharing
    the socket), so that the sender and the reader of the reports never wait for each other's
    GIL: a thread of the measuring process would delay the reader's arrival times (and be
    delayed by it) by up to the time the other holds the GIL, which is no part of the
    gateway's latency. ``result()`` gives (send time, records) per chunk, appended before the
    chunk is written, once the child is done; both processes read the same clock
    (``time.perf_counter``: CLOCK_MONOTONIC)."""

    def __init__(self, sock: socket.socket, head: bytes, record: bytes, rate: float,
                 duration: float, tick: float) -> None:
        self.sock, self.head, self.record, self.tick = sock, head, record, tick
        self.rate, self.duration = rate, duration
        self.pid = 0
        self.fd = -1  # the read end of the pipe the child writes its result to
        self._data = bytearray()
        self.done = False
        self.sends: list[tuple[float, int]] = []
        self.sent = 0
        self.t0 = 0.0
        self.cpu = 0.0
        self.late_ticks = 0  # ticks that found more than 2 ticks' worth of records due
        self.error: str | None = None

    def start(self) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: send, write the result, leave without running any cleanup
            code = 0
            try:
                os.close(r)
                out = self._run()
                view = memoryview(pickle.dumps(out))
                while view:
                    view = view[os.write(w, view):]
            except BaseException:  # noqa: BLE001 - the parent reports the child's failure
                code = 1
            os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r

    def on_readable(self) -> None:
        """The pipe has data (or EOF): take it; at EOF the result is in."""
        chunk = os.read(self.fd, 1 << 16)
        if chunk:
            self._data += chunk
            return
        self.close()
        try:
            out = pickle.loads(self._data)
        except Exception as exc:  # noqa: BLE001 - a dead child
            out = {"error": f"the sender process died ({exc!r})"}
        self.error = out.get("error")
        self.sends = out.get("sends", [])
        self.sent = out.get("sent", 0)
        self.t0 = out.get("t0", 0.0)
        self.cpu = out.get("cpu", 0.0)
        self.late_ticks = out.get("late_ticks", 0)
        self.done = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.pid:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0

    def _run(self) -> dict[str, Any]:
        cpu0 = time.process_time()
        clock, sleep, sendall = time.perf_counter, time.sleep, self.sock.sendall
        rate, record = self.rate, self.record
        sends: list[tuple[float, int]] = []
        late_ticks = 0
        sent = 0
        t0 = 0.0
        error = None
        try:
            sendall(self.head)
            t0 = clock()
            end = t0 + self.duration
            tick = self.tick
            next_tick = t0
            while True:
                now = clock()
                if now >= end:
                    break
                due = int((now - t0) * rate) - sent
                if due > 0:
                    due = min(due, MAX_CHUNK_RECORDS)
                    payload = record * due
                    chunk = b"%x\r\n" % len(payload) + payload + b"\r\n"
                    # Stamped when handed to the socket, the chunk built (its records are the
                    # gateway's from then on).
                    sends.append((clock(), due))
                    sendall(chunk)
                    sent += due
                # One chunk per tick: the records due since the last one.
                next_tick += tick
                wait = next_tick - clock()
                if wait > 0:
                    sleep(wait)
                elif wait < -tick:  # more than a tick behind: do not try to catch up in bursts
                    late_ticks += 1
                    next_tick = clock()
            sendall(b"0\r\n\r\n")
        except BaseException as exc:  # noqa: BLE001 - reported by the reader
            error = repr(exc)
        return {"sends": sends, "sent": sent, "t0": t0, "late_ticks": late_ticks, "error": error,
                "cpu": time.process_time() - cpu0}


def paced_stream(gw: GatewayProcess, path: str, topic: str, args: argparse.Namespace, rate: float,
                 broker_pid: int | None) -> dict[str, Any]:
    record = record_json(value_bytes(args.value_bytes))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nUser-Agent: bench.latency\r\n\r\n"
    ).encode("ascii")
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10.0)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stamps = KERNEL_RX_STAMPS
    if stamps:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            stamps = False
    sender = PacedSender(sock, head, record, rate, args.duration, args.tick_ms / 1000)
    reports = ReportStream(topic, args.partitions, args.value_bytes, expected=1 << 62)
    # The reader only notes (arrival time, reports so far) per read: latencies are worked out
    # once the sender's chunk times are in.
    arrivals: list[tuple[float, int]] = []
    deadline = time.monotonic() + args.duration + args.timeout
    clock = time.perf_counter
    gw0, br0, m0 = gw.cpu_ticks(), cpu_ticks(broker_pid) if broker_pid else None, machine_busy_ticks()
    cpu0 = thread_cpu()
    with CpuSampler(gw.pids) as sampler:
        sender.start()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(sender.fd, select.POLLIN)
        try:
            while not reports.finished:
                if time.monotonic() > deadline:
                    raise BenchError(f"timed out: {reports.count} of {sender.sent or '?'} reports; "
                                     + describe_tcp(sock))
                if sender.error is not None:
                    raise BenchError(f"sending failed: {sender.error}")
                events = poller.poll(250)
                if not events:
                    continue
                for fd, _ in events:
                    if fd != sender.fd:
                        continue
                    sender.on_readable()
                    if sender.done:
                        poller.unregister(fd)
                        reports.expected = sender.sent
                if not any(fd == sock.fileno() for fd, _ in events):
                    continue
                if stamps:
                    data, anc, _, _ = sock.recvmsg(RECV_BYTES, ANC_BYTES)
                    now = clock()
                    for level, kind, blob in anc:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(blob) >= 16:
                            sec, nsec = struct.unpack_from("qq", blob)
                            # CLOCK_REALTIME -> perf_counter's clock, both read right now.
                            now = min(now, sec + nsec / 1e9 - time.time() + clock())
                else:
                    data = sock.recv(RECV_BYTES)
                    now = clock()
                if not data:
                    raise BenchError(f"the gateway closed the connection after {reports.count} reports")
                reports.feed(data)
                if reports.status not in (None, 200):
                    raise GatewayRefused(reports.status or 0, reports.error_body())
                if not arrivals or reports.count != arrivals[-1][1]:
                    arrivals.append((now, reports.count))
            t_end = clock()
            while not sender.done:  # (the last report came before the sender's result)
                sender.on_readable()
        finally:
            reader_cpu = thread_cpu() - cpu0
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sender.close()
            sock.close()
    reports.expected = sender.sent
    reports.check_complete()
    if reports.ok != sender.sent:
        raise BenchError(f"{sender.sent - reports.ok} of {sender.sent} reports failed "
                         f"{dict(reports.failures)}: {reports.problems}")
    # Reports come in request order: report i is record i, sent with chunk k.
    lat: list[tuple[float, int]] = []  # (latency ms, records), one entry per (read, chunk)
    per_window: dict[int, list[tuple[float, int]]] = {}
    bins: dict[int, int] = {}  # reports arrived per THROUGHPUT_BIN seconds
    sends = sender.sends
    chunk = chunk_left = before = 0
    for now, count in arrivals:
        n = count - before
        before = count
        b = int((now - sender.t0) / THROUGHPUT_BIN)
        bins[b] = bins.get(b, 0) + n
        while n:
            if not chunk_left:
                chunk_left = sends[chunk][1]
            t_sent = sends[chunk][0]
            m = min(n, chunk_left)
            ms = (now - t_sent) * 1000
            lat.append((ms, m))
            per_window.setdefault(int((t_sent - sender.t0) / WINDOW), []).append((ms, m))
            n -= m
            chunk_left -= m
            if not chunk_left:
                chunk += 1
    wall = t_end - sender.t0
    gw_ticks = gw.cpu_ticks() - gw0
    br_ticks = cpu_ticks(broker_pid) - br0 if br0 is not None and broker_pid else None
    machine = machine_busy_ticks() - m0
    n = sender.sent
    windows = sorted(per_window)
    series: dict[str, list[Any]] = {"t": [], "p50": [], "p99": [], "max": []}
    for w in windows:
        pct = weighted_percentiles(per_window[w])
        series["t"].append((w + 0.5) * WINDOW)
        for k in ("p50", "p99", "max"):
            series[k].append(pct[k])
    last = max(bins) if bins else -1
    thr = {"t": [round((b + 0.5) * THROUGHPUT_BIN, 3) for b in range(last + 1)],
           "rate": [bins.get(b, 0) / THROUGHPUT_BIN for b in range(last + 1)]}
    ours = gw_ticks + (br_ticks or 0) + (sender.cpu + reader_cpu) * CLK_TCK
    return {
        "records": n, "rate": rate, "achieved_rate": n / args.duration, "wall_s": wall,
        "late_ticks": sender.late_ticks, "chunks": len(sender.sends),
        "latency_ms": weighted_percentiles(lat),
        "cpu_us_per_record": gw_ticks / CLK_TCK / n * 1e6,
        "gateway_cores": gw_ticks / CLK_TCK / wall,
        "broker_cpu_us_per_record": br_ticks / CLK_TCK / n * 1e6 if br_ticks is not None else None,
        "loadgen_cpu_us_per_record": (sender.cpu + reader_cpu) / n * 1e6,
        "other_load_cores": max(0.0, machine - ours) / CLK_TCK / wall,
        "latency_series": series, "throughput_series": thr,
        "cpu_series": sampler.series(sender.t0, t_end),
    }


def probe_peak(gw: GatewayProcess, cluster_id: str, topic: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.probe_records
    body = build_body("127.0.0.1", gw.port, records_path(cluster_id, topic), n,
                      record_json(value_bytes(args.value_bytes)))
    reports = ReportStream(topic, args.partitions, args.value_bytes, n)
    t = stream_records(gw.port, body, reports, args.timeout, args.stall_timeout)
    if reports.ok != n:
        raise BenchError(f"peak probe: {n - reports.ok} of {n} records failed: {reports.problems}")
    wall = t["t_last_report"] - t["t_first"]
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
    p.add_argument("--tick-ms", type=float, default=1.0, metavar="MS",
                   help="one HTTP chunk (baseline: one produce() burst) per tick (default 1 ms)")
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
                   help="end the probe when no report arrives for this long (default 30)")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.rate is not None and args.rate <= 0:
        return "--rate must be positive"
    if not 0 < args.fraction <= 1:
        return "--fraction must be in (0, 1]"
    if args.duration < 1 or args.probe_records < 1000:
        return "--duration must be at least 1 s, --probe-records at least 1000"
    if not 0.05 <= args.tick_ms <= 100:
        return "--tick-ms must be between 0.05 and 100"
    if min(args.partitions, args.value_bytes) < 1:
        return "--partitions and --value-bytes must be at least 1"
    return check_rounds(args.rounds)


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.latency", args, {
        "fraction": args.fraction, "rate": args.rate, "probe_records": args.probe_records,
        "duration_s": args.duration, "partitions": args.partitions,
        "value_bytes": args.value_bytes, "tick_ms": args.tick_ms,
        "producer_settings": baseline.PRODUCER_SETTINGS, "rounds": args.rounds,
    })
    result["rounds"] = []
    with Rig("bench-latency", args, log_dir) as rig:
        result["broker"] = rig.info
        gw = rig.start_gateway()
        try:
            try:
                topic = rig.topic("gw", args.partitions)
                warm_up_gateway(gw.port, rig.cluster_id, topic, args)
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
                    result["gateway"] = paced_stream(gw, records_path(rig.cluster_id, topic), topic,
                                                     args, rate, rig.broker_pid)
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, "bench.latency") from None
                result["baseline"] = baseline.run_rate(
                    rig.bootstrap, rig.broker_pid, base_topic, rate, args.duration, args.value_bytes,
                    args.warmup, args.timeout, os.path.join(log_dir, f"baseline-{k}.log"),
                    args.tick_ms / 1000,
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
        result["warnings"].append(f"the paced sender reached {g['achieved_rate']:,.0f} of "
                                  f"{rate:,.0f} records/s")
    if g["late_ticks"] > 0.05 * g["chunks"]:
        result["warnings"].append(f"{g['late_ticks']:,} of {g['chunks']:,} send ticks were late: "
                                  "the sender itself was short of CPU")
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
        f"{p['duration_s']:g} s, one chunk every {p['tick_ms']:g} ms, {p['value_bytes']}-byte BINARY "
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
    print(f"load generator: {g['loadgen_cpu_us_per_record']:.2f} CPU µs/rec, {g['chunks']:,} chunks, "
          f"{g['late_ticks']:,} late ticks")
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.latency", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
