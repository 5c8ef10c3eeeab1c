"""Streaming produce through the gateway against a plain confluent-kafka producer.

    .venv/bin/python -m bench.stream [--records N] [--rounds R] [--json] [--plot FILE.png] ...

The gateway phase streams N records over ONE chunked HTTP/1.1 connection to
``POST /v3/clusters/{cluster_id}/topics/{topic}/records`` (docs/api.md §1) and reads the
delivery reports on the same connection while it is still sending. The baseline phase runs
a plain ``confluent_kafka.Producer`` with the gateway's librdkafka settings in a child
process (bench.baseline), sending the same records to a topic of the same layout on the same
broker. Both figures are records/s and CPU µs per record of the process doing the work (all
its threads). The two phases alternate for ``--rounds`` rounds (3 by default; gateway then
baseline, or the reverse with ``--baseline-first``) against the one gateway and broker: each
figure is the median of the rounds with their min–max, and the ratio is each round's gateway
figure over that round's baseline, the median of those with their min–max (the machine is
shared and noisy). Target (issue 4): gateway CPU per record ≤ 1.0× the baseline's.

Everything runs on 127.0.0.1: an embedded Tansu broker (unless ``--bootstrap-servers``), a
fresh topic per phase, the gateway as a child process. Each phase has a timeout, and the
broker, the gateway and the baseline child are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench import baseline
from bench.common import (
    CLK_TCK,
    MAX_EXAMPLES,
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
    record_json,
    records_path,
    round_ratios,
    spread,
    thread_cpu,
    value_bytes,
    verdict,
)

CHUNK_BYTES = 64 * 1024  # HTTP chunk payload size the body is cut into (whole records)
RECV_BYTES = 256 * 1024
SAMPLE_EVERY = 1000  # every SAMPLE_EVERY-th report is decoded with json.loads
OK_MARK = b'\r\n{"error_code":200,'  # every report is preceded by CRLF (see ReportStream)
SERIES_EVERY = 0.1  # seconds between throughput samples for the plot
TARGET_RATIO = 1.0  # issue 4: gateway CPU per record <= 1.0x the plain producer loop's

HELP_EPILOG = """\
Memory: the embedded Tansu broker keeps every record in memory (memory storage has no
retention), about 110 bytes of RSS per 100-byte record. A default run (3 rounds of 1,000,000
records through the gateway and 1,000,000 through the baseline, plus warm-ups) holds ~700 MB in
the broker until it stops at the end of the run: --records 300000 keeps it near 200 MB. Against --bootstrap-servers the bench deletes
its topics at the end.

Figures: records/s is N / (first request byte sent -> last delivery report received) for
the gateway, and N / (first produce() -> flush() returned) for the baseline. CPU is
utime+stime from /proc/<pid>/stat (all threads) over the same interval. The load
generator, the gateway, its librdkafka threads and the broker share the machine's cores.
"""


# -- the request body ------------------------------------------------------------------------


@dataclass
class Body:
    head: bytes
    chunks: list[bytes]  # HTTP chunks, framing included; the last is the zero-size chunk
    records: int
    nbytes: int
    chunk_records: int


def build_body(host: str, port: int, path: str, n: int, record: bytes) -> Body:
    """The whole request, built once: the same framed chunk object is sent again and again."""
    per_chunk = max(1, CHUNK_BYTES // len(record))

    def frame(count: int) -> bytes:
        payload = record * count
        return b"%x\r\n" % len(payload) + payload + b"\r\n"

    full, rest = divmod(n, per_chunk)
    chunks = [frame(per_chunk)] * full
    if rest:
        chunks.append(frame(rest))
    chunks.append(b"0\r\n\r\n")
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        "Transfer-Encoding: chunked\r\n"
        "User-Agent: bench.stream\r\n"
        "\r\n"
    ).encode("ascii")
    return Body(head, chunks, n, len(head) + sum(map(len, chunks)), per_chunk)


# -- the response: chunked decoding and report checks -----------------------------------------


class ReportStream:
    """Decodes the chunked response and checks the delivery reports in it, without
    json.loads on every report.

    The decoded stream is one JSON object + CRLF per report. We keep the CRLF in front of
    each report instead (the stream starts with a virtual CRLF), so "reports in a block" is
    ``block.count(b"\\r\\n")`` and "successful reports" is ``block.count(OK_MARK)``: two
    C-speed scans per received block. Every SAMPLE_EVERY-th report is decoded in full.
    """

    mark = OK_MARK  # what starts each report counted as the expected one

    def __init__(self, topic: str, partitions: int, value_size: int, expected: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.value_size = value_size
        self.expected = expected
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.finished = False  # the zero-size chunk and the trailer arrived
        self.count = 0
        self.ok = 0
        self.sampled = 0
        self.failures: collections.Counter[int | str] = collections.Counter()
        self.problems: list[str] = []  # failed reports and sample mismatches, first few
        self.problem_count = 0
        self.last_offset: dict[int, int] = {}
        self._buf = bytearray()
        self._head_done = False
        self._left = 0  # payload bytes still to come in the current chunk
        self._need_crlf = False  # the CRLF after a chunk's payload
        self._in_trailer = False
        self._carry = b"\r\n"

    def _problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_EXAMPLES:
            self.problems.append(text)

    def feed(self, data: bytes) -> None:
        self._buf += data
        if not self._head_done:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > 65536:
                    raise BenchError("response head larger than 64 KiB")
                return
            self._parse_head(bytes(self._buf[:end]))
            del self._buf[: end + 4]
            self._head_done = True
            if self.status != 200:
                return  # the caller reads the error body
        if self.status == 200:
            spans, used = self._dechunk()
            data = None
            if spans:
                # One copy of the payload bytes: memoryview slices joined behind the carry.
                with memoryview(self._buf) as view:
                    data = b"".join([self._carry, *(view[a:b] for a, b in spans)])
            del self._buf[:used]
            if data is not None:
                self._reports(data)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise BenchError(f"bad status line {lines[0]!r}")
        self.status = int(parts[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        if self.status == 200 and "chunked" not in self.headers.get("transfer-encoding", "").lower():
            raise BenchError(f"200 response is not chunked: {head.decode('latin-1')!r}")

    def error_body(self) -> str:
        return bytes(self._buf[:2000]).decode("utf-8", "replace")

    def _dechunk(self) -> tuple[list[tuple[int, int]], int]:
        """(payload spans in the buffer, bytes of the buffer consumed)."""
        buf = self._buf
        end = len(buf)
        pos = 0
        out: list[tuple[int, int]] = []
        while pos < end:
            if self._left:
                take = min(self._left, end - pos)
                out.append((pos, pos + take))
                pos += take
                self._left -= take
                if not self._left:
                    self._need_crlf = True
            elif self._need_crlf:
                if end - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise BenchError("chunk payload not followed by CRLF")
                pos += 2
                self._need_crlf = False
            else:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if end - pos > 4096:
                        raise BenchError("chunk-size line longer than 4 KiB")
                    break
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if self._in_trailer:
                    if not line:  # the empty line ending the trailer: response complete
                        self.finished = True
                        if pos != end:
                            raise BenchError(f"{end - pos} bytes after the end of the response")
                    continue
                if self.finished:
                    raise BenchError("data after the end of the response")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BenchError(f"bad chunk-size line {line[:80]!r}") from None
                if size == 0:
                    self._in_trailer = True
                else:
                    self._left = size
        return out, pos

    def _reports(self, data: bytes) -> None:
        """*data*: the carry (CRLF + any partial report) followed by newly decoded bytes."""
        cut = data.rfind(b"\r\n")
        if cut <= 0:
            self._carry = data
            return
        # data[:cut] is "\r\n<report>\r\n<report>...": complete reports only. Compact JSON
        # has no raw LF, so counting the (fast, one-byte) LF counts the reports.
        n = data.count(b"\n", 0, cut)
        ok = data.count(self.mark, 0, cut)
        base = self.count
        self.count += n
        self.ok += ok
        if ok != n:
            for i, line in enumerate(data[:cut].split(b"\r\n")[1:]):
                if not line.startswith(self.mark[2:]) or b"\n" in line:
                    self._failed_report(base + i, line)
        first = (-base) % SAMPLE_EVERY
        if first < n:
            self._samples(data, cut, n, base, first)
        self._carry = data[cut:]

    def _samples(self, data: bytes, cut: int, n: int, base: int, first: int) -> None:
        # Report j starts right after the (j+1)-th LF. Reports are nearly the same length,
        # so jump close to it with a C-speed count, then step line by line.
        avg = cut / n
        pos = seen = 0  # seen: LFs in data[:pos]
        for j in range(first, n, SAMPLE_EVERY):
            want = j + 1
            guess = min(cut, max(pos, int((want - 2) * avg)))
            skipped = data.count(b"\n", pos, guess)
            if seen + skipped < want:
                seen += skipped
                pos = guess
            while seen < want:
                pos = data.index(b"\n", pos) + 1
                seen += 1
            self._check_sample(base + j, data[pos : data.index(b"\r\n", pos)])

    def _failed_report(self, index: int, line: bytes) -> None:
        try:
            code = json.loads(line).get("error_code", "missing")
        except ValueError:
            code = "not JSON"
        self.failures[code] += 1
        self._problem(f"report #{index}: {line[:300].decode('utf-8', 'replace')}")

    def _check_sample(self, index: int, line: bytes) -> None:
        self.sampled += 1
        try:
            rep = json.loads(line)
        except ValueError as exc:
            self._problem(f"report #{index} is not JSON ({exc}): {line[:200]!r}")
            return
        if rep.get("error_code") != 200:
            return  # counted as a failure already
        part, off = rep.get("partition_id"), rep.get("offset")
        wrong = []
        if rep.get("topic_name") != self.topic:
            wrong.append("topic_name")
        if not (isinstance(part, int) and 0 <= part < self.partitions):
            wrong.append("partition_id")
        if not isinstance(off, int) or off < 0:
            wrong.append("offset")
        elif isinstance(part, int):
            prev = self.last_offset.get(part)
            if prev is not None and off <= prev:
                wrong.append(f"offset not increasing on partition {part} ({prev} then {off})")
            self.last_offset[part] = off
        if rep.get("value") != {"type": "BINARY", "size": self.value_size}:
            wrong.append("value")
        if "key" in rep:
            wrong.append("key (the request had none)")
        if wrong:
            self._problem(f"report #{index}: wrong {', '.join(wrong)}: {line[:300].decode()}")

    def check_complete(self) -> None:
        if self._carry != b"\r\n":
            raise BenchError(f"response ended inside a report: {self._carry[:200]!r}")
        if self.count != self.expected:
            raise BenchError(f"{self.count} reports for {self.expected} records")


# -- the gateway phase -----------------------------------------------------------------------


@dataclass
class SendState:
    chunks_sent: int = 0
    t_first: float = 0.0
    t_done: float = 0.0
    cpu: float = 0.0
    error: BaseException | None = None


def _send(sock: socket.socket, body: Body, state: SendState) -> None:
    cpu0 = thread_cpu()
    sendall = sock.sendall
    try:
        state.t_first = time.perf_counter()
        sendall(body.head)
        for chunk in body.chunks:
            sendall(chunk)
            state.chunks_sent += 1
        state.t_done = time.perf_counter()
    except BaseException as exc:  # reported by the reader; the socket was shut down
        state.error = exc
    finally:
        state.cpu = thread_cpu() - cpu0


def stream_records(
    port: int,
    body: Body,
    reports: ReportStream,
    timeout: float,
    stall_timeout: float = 0.0,
    on_start: Any = None,
) -> dict[str, Any]:
    """Send *body* on one connection while reading its reports; return timings.

    The sender is a thread doing blocking sendall(); this (main) thread polls the socket and
    decodes. On a timeout, a stall (no report for *stall_timeout* s; 0: no limit) or an
    error the socket is shut down, which unblocks the sender.
    """
    deadline = time.monotonic() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=min(timeout, 10.0))
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state = SendState()
    sender = threading.Thread(target=_send, args=(sock, body, state), name="bench-send", daemon=True)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    recv = sock.recv
    cpu0 = thread_cpu()
    t_first_report = t_last_report = 0.0
    t_prev = 0.0
    max_gap = 0.0
    series: list[tuple[float, int]] = []  # (seconds from the first byte, reports so far)
    t_sample = 0.0
    try:
        if on_start is not None:
            on_start()
        sender.start()
        while not reports.finished:
            remaining = deadline - time.monotonic()
            stalled = time.perf_counter() - (t_prev or state.t_first or time.perf_counter())
            if remaining <= 0 or (stall_timeout and stalled > stall_timeout):
                why = f"timed out after {timeout:g} s" if remaining <= 0 else "stalled"
                raise BenchError(
                    f"{why}: {reports.count} of {body.records} reports "
                    f"(none for the last {stalled:.1f} s), {state.chunks_sent} of "
                    f"{len(body.chunks)} chunks of {body.chunk_records} records sent"
                    + (" (sender blocked in sendall)" if not state.t_done else "")
                    + "; " + describe_tcp(sock)
                )
            if not poller.poll(min(remaining, 0.25) * 1000):
                continue
            data = recv(RECV_BYTES)
            if not data:
                if reports.status not in (None, 200):
                    break
                raise BenchError(
                    f"gateway closed the connection after {reports.count} of {body.records} "
                    f"reports ({state.chunks_sent} of {len(body.chunks)} chunks sent"
                    + (f"; sender: {state.error!r}" if state.error else "") + ")"
                )
            before = reports.count
            reports.feed(data)
            if reports.status not in (None, 200):
                if "content-length" in reports.headers and len(reports.error_body()) < int(
                    reports.headers["content-length"]
                ):
                    continue
                break
            if reports.count != before:
                now = time.perf_counter()
                if before == 0:
                    t_first_report = now
                elif now - t_prev > max_gap:
                    max_gap = now - t_prev
                t_prev = now
                if now - t_sample >= SERIES_EVERY:
                    series.append((round(now - state.t_first, 4), reports.count))
                    t_sample = now
                if reports.count >= body.records:
                    t_last_report = now
                    series.append((round(now - state.t_first, 4), reports.count))
        if reports.status != 200:
            raise GatewayRefused(reports.status or 0, reports.error_body())
        reports.check_complete()
    finally:
        reader_cpu = thread_cpu() - cpu0
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sender.join(timeout=10.0)
        sock.close()
    if state.error is not None:
        raise BenchError(f"sending the request failed: {state.error!r}")
    return {
        "t_first": state.t_first,
        "t_last_report": t_last_report,
        "send_done_s": state.t_done - state.t_first,
        "first_report_s": t_first_report - state.t_first,
        "max_report_gap_ms": max_gap * 1000,
        "sender_cpu_s": state.cpu,
        "reader_cpu_s": reader_cpu,
        "series": series,
    }


class GatewayRefused(BenchError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"gateway answered HTTP {status}: {body.strip()[:500]}")
        self.status = status


def warm_up_gateway(port: int, cluster_id: str, topic: str, args: argparse.Namespace) -> float:
    """A small stream first (connection set-up, producer id, metadata, code paths).

    The gateway may answer 503 until it has Kafka metadata: retry that for a while.
    """
    n = max(1, args.warmup)
    record = record_json(value_bytes(args.value_bytes))
    body = build_body("127.0.0.1", port, records_path(cluster_id, topic), n, record)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    while True:
        reports = ReportStream(topic, args.partitions, args.value_bytes, n)
        try:
            stream_records(
                port, body, reports, max(1.0, deadline - time.monotonic()), args.stall_timeout
            )
        except GatewayRefused as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        if reports.ok != n:
            raise BenchError(f"warm-up: {n - reports.ok} of {n} records failed: {reports.problems}")
        return time.monotonic() - t0


def run_gateway_phase(
    gw: GatewayProcess, broker_pid: int | None, cluster_id: str, topic: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    port = gw.port
    warmup_s = warm_up_gateway(port, cluster_id, topic, args)
    n = args.records
    record = record_json(value_bytes(args.value_bytes))
    body = build_body("127.0.0.1", port, records_path(cluster_id, topic), n, record)
    reports = ReportStream(topic, args.partitions, args.value_bytes, n)
    ticks: dict[str, int] = {}

    def on_start() -> None:  # right before the first byte is sent
        ticks["gw"] = gw.cpu_ticks()
        ticks["self"] = cpu_ticks()
        ticks["machine"] = machine_busy_ticks()
        if broker_pid is not None:
            ticks["broker"] = cpu_ticks(broker_pid)

    with CpuSampler(gw.pids) as sampler:
        t = stream_records(port, body, reports, args.timeout, args.stall_timeout, on_start)
    gw_ticks = gw.cpu_ticks() - ticks["gw"]
    broker_ticks = cpu_ticks(broker_pid) - ticks["broker"] if broker_pid is not None else None
    self_ticks = cpu_ticks() - ticks["self"]
    machine_ticks = machine_busy_ticks() - ticks["machine"]
    if reports.ok != n:
        raise BenchError(
            f"{n - reports.ok} of {n} reports are not error_code 200 "
            f"(by code: {dict(reports.failures)}); first: {reports.problems}"
        )
    if reports.problem_count:
        raise BenchError(f"{reports.problem_count} sampled reports are wrong: {reports.problems}")
    wall = t["t_last_report"] - t["t_first"]
    t_end = t["t_last_report"]
    loadgen_s = t["sender_cpu_s"] + t["reader_cpu_s"]
    ours = gw_ticks + self_ticks + (broker_ticks or 0)
    return {
        "records": n,
        "reports_ok": reports.ok,
        "reports_sampled": reports.sampled,
        "wall_s": wall,
        "records_per_s": n / wall,
        "cpu_us_per_record": gw_ticks / CLK_TCK / n * 1e6,
        "cpu_s": gw_ticks / CLK_TCK,
        "broker_cpu_us_per_record": (
            broker_ticks / CLK_TCK / n * 1e6 if broker_ticks is not None else None
        ),
        "loadgen_cpu_us_per_record": loadgen_s / n * 1e6,
        "loadgen_sender_cpu_us_per_record": t["sender_cpu_s"] / n * 1e6,
        "loadgen_reader_cpu_us_per_record": t["reader_cpu_s"] / n * 1e6,
        "loadgen_process_cpu_us_per_record": self_ticks / CLK_TCK / n * 1e6,
        "machine_busy_cores": machine_ticks / CLK_TCK / wall,
        "other_load_cores": max(0, machine_ticks - ours) / CLK_TCK / wall,
        "send_done_s": t["send_done_s"],
        "first_report_ms": t["first_report_s"] * 1000,
        "max_report_gap_ms": t["max_report_gap_ms"],
        "body_bytes": body.nbytes,
        "chunks": len(body.chunks),
        "records_per_chunk": body.chunk_records,
        "partitions_seen": len(reports.last_offset),
        "rss_mb_after": gw.rss_mb(),
        "warmup_s": warmup_s,
        "topic": topic,
        "series": {"t": [s[0] for s in t["series"]], "count": [s[1] for s in t["series"]]},
        "cpu_series": sampler.series(t["t_first"], t_end),
        "peak_loop_share": sampler.peak_loop(t["t_first"], t_end),
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
            f"round 1 gateway: load generator {gw['loadgen_cpu_us_per_record']:.2f} CPU µs/rec "
            f"(sender {gw['loadgen_sender_cpu_us_per_record']:.2f}, reader "
            f"{gw['loadgen_reader_cpu_us_per_record']:.2f}); body {gw['body_bytes'] / 1e6:,.1f} MB "
            f"in {gw['chunks']:,} chunks of {gw['records_per_chunk']} records; gateway event loop "
            f"at {fmt(gw['peak_loop_share'], '.0%')} of a core at peak (1 s)"
        )
        print(
            f"round 1 gateway stream: body sent after {gw['send_done_s']:.2f} s, first report after "
            f"{gw['first_report_ms']:.1f} ms, longest gap between reports {gw['max_report_gap_ms']:.1f} ms, "
            f"{gw['reports_sampled']:,} reports decoded in full, RSS {fmt(gw['rss_mb_after'], '.0f')} MB; "
            f"warm-up took {gw['warmup_s']:.2f} s"
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
        "(one chunked HTTP/1.1 stream, v3 produce) and of a plain confluent-kafka producer with "
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
        result["series"]["throughput"].append(_rate_series("stream v3: gateway (round 1)",
                                                           series["gateway"]))
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
