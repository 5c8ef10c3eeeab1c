"""Streaming produce through the gateway against a plain confluent-kafka producer.

    .venv/bin/python -m bench.stream [--records N] [--json] ...

The gateway phase streams N records over ONE chunked HTTP/1.1 connection to
``POST /v3/clusters/{cluster_id}/topics/{topic}/records`` (docs/api.md §1) and reads the
delivery reports on the same connection while it is still sending. The baseline phase runs
a plain ``confluent_kafka.Producer`` with the gateway's librdkafka settings in a child
process, sending the same records to a topic of the same layout on the same broker. Both
figures are records/s and CPU µs per record of the process doing the work (all its threads).

Everything runs on 127.0.0.1: an embedded Tansu broker (unless ``--bootstrap-servers``), a
fresh topic per phase, the gateway as a child process. Each phase has a timeout, and the
broker, the gateway and the baseline child are stopped on every exit path.
"""

from __future__ import annotations

import argparse
import base64
import collections
import ctypes
import json
import os
import platform
import random
import resource
import secrets
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The baseline producer uses exactly the gateway's librdkafka defaults (docs/api.md §5), so
# that the comparison is about the HTTP path.
PRODUCER_SETTINGS: dict[str, Any] = dict(DEFAULT_PRODUCER_CONFIG)

CHUNK_BYTES = 64 * 1024  # HTTP chunk payload size the body is cut into (whole records)
RECV_BYTES = 256 * 1024
SAMPLE_EVERY = 1000  # every SAMPLE_EVERY-th report is decoded with json.loads
VALUE_SEED = 20261121  # the value bytes are the same in every run and in both phases
OK_MARK = b'\r\n{"error_code":200,'  # every report is preceded by CRLF (see ReportStream)
MAX_EXAMPLES = 5
LOG_TAIL_LINES = 30

HELP_EPILOG = """\
Memory: the embedded Tansu broker keeps every record in memory (memory storage has no
retention), about 110 bytes of RSS per 100-byte record. A default run (1,000,000 records
through the gateway and 1,000,000 through the baseline, plus warm-ups) holds ~250 MB in the
broker until it stops at the end of the run. Against --bootstrap-servers the bench deletes
its topics at the end.

Figures: records/s is N / (first request byte sent -> last delivery report received) for
the gateway, and N / (first produce() -> flush() returned) for the baseline. CPU is
utime+stime from /proc/<pid>/stat (all threads) over the same interval. The load
generator, the gateway, its librdkafka threads and the broker share the machine's cores.
"""


class BenchError(Exception):
    """The run could not produce figures; the message says why."""


# -- /proc helpers ---------------------------------------------------------------------------


def cpu_ticks(pid: int | str = "self") -> int:
    """utime + stime of a whole process (every thread, live or exited), in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # Fields after "(comm)": state is field 3, utime field 14, stime field 15 (proc(5)).
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def rss_mb(pid: int | str = "self") -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def machine_busy_ticks() -> int:
    """Non-idle CPU time of the whole machine (all CPUs), in clock ticks, from /proc/stat.

    Compared with our own processes' CPU it shows how much else ran during a phase: the
    figures are only comparable between runs on an otherwise quiet machine.
    """
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is in user)
    values = [int(x) for x in fields[1:9]]
    return sum(values) - values[3] - values[4]


def _tcp_queues(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int] | None:
    """(send queue, receive queue) in bytes of the IPv4 TCP socket local -> remote, from
    /proc/net/tcp (proc(5)); None if not found."""
    def hexaddr(addr: tuple[str, int]) -> str:
        return f"{socket.inet_aton(addr[0])[::-1].hex().upper()}:{addr[1]:04X}"

    want = (hexaddr(local), hexaddr(remote))
    try:
        with open("/proc/net/tcp") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if (fields[1], fields[2]) == want:
                    tx, rx = fields[4].split(":")
                    return int(tx, 16), int(rx, 16)
    except (OSError, IndexError, ValueError):
        pass
    return None


def describe_tcp(sock: socket.socket) -> str:
    """Where the bytes are stuck on a stalled connection: both ends' kernel queues."""
    try:
        ours, theirs = sock.getsockname(), sock.getpeername()
    except OSError:
        return "connection gone"
    client = _tcp_queues(ours, theirs)
    server = _tcp_queues(theirs, ours)
    parts = []
    if server is not None:
        parts.append(f"gateway socket: {server[1]:,} request bytes unread by the gateway, "
                     f"{server[0]:,} response bytes unsent")
    if client is not None:
        parts.append(f"bench socket: {client[0]:,} request bytes unsent, "
                     f"{client[1]:,} response bytes unread")
    return "; ".join(parts) or "TCP queues unknown"


def thread_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime + ru.ru_stime


def machine_info() -> dict[str, Any]:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model or platform.processor() or "unknown",
        "kernel": platform.release(),
        "clk_tck": CLK_TCK,
        "loadavg_1m_at_start": os.getloadavg()[0],
    }


def versions() -> dict[str, Any]:
    import confluent_kafka

    def first(v: Any) -> Any:  # version() is a string or a (string, int) tuple
        return v[0] if isinstance(v, tuple) else v

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "confluent_kafka": first(confluent_kafka.version()),
        "librdkafka": first(confluent_kafka.libversion()),
    }
    try:
        import gateway

        out["gateway"] = getattr(gateway, "__version__", None)
    except ImportError:
        out["gateway"] = None
    try:
        out["git"] = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        out["git"] = None
    return out


def _die_with_parent(sig: int) -> Any:
    """A preexec_fn asking Linux to send *sig* to the child when the bench dies.

    A bench killed with SIGKILL then leaves no gateway or baseline child behind.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(127)

    return preexec


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"  (cannot read {path}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else "  (empty)"


def log_findings(path: str) -> dict[str, Any]:
    """Counts of WARNING/ERROR/CRITICAL lines and Tracebacks in the gateway log, with examples."""
    counts: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").rstrip()
                for level in ("WARNING", "ERROR", "CRITICAL", "Traceback"):
                    if level in line:
                        counts[level] += 1
                        if len(examples) < MAX_EXAMPLES:
                            examples.append(line[:300])
                        break
    except OSError:
        pass
    return {"counts": dict(counts), "examples": examples}


# -- the request body ------------------------------------------------------------------------


def value_bytes(size: int) -> bytes:
    return random.Random(VALUE_SEED).randbytes(size)


def record_json(value: bytes) -> bytes:
    data = base64.b64encode(value)
    return b'{"value":{"type":"BINARY","data":"' + data + b'"}}'


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
        ok = data.count(OK_MARK, 0, cut)
        base = self.count
        self.count += n
        self.ok += ok
        if ok != n:
            for i, line in enumerate(data[:cut].split(b"\r\n")[1:]):
                if not line.startswith(OK_MARK[2:]) or b"\n" in line:
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
                if reports.count >= body.records:
                    t_last_report = now
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
    }


class GatewayRefused(BenchError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"gateway answered HTTP {status}: {body.strip()[:500]}")
        self.status = status


def records_path(cluster_id: str, topic: str) -> str:
    return f"/v3/clusters/{cluster_id}/topics/{topic}/records"


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
    port: int, gw_pid: int, broker_pid: int | None, cluster_id: str, topic: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    warmup_s = warm_up_gateway(port, cluster_id, topic, args)
    n = args.records
    record = record_json(value_bytes(args.value_bytes))
    body = build_body("127.0.0.1", port, records_path(cluster_id, topic), n, record)
    reports = ReportStream(topic, args.partitions, args.value_bytes, n)
    ticks: dict[str, int] = {}

    def on_start() -> None:  # right before the first byte is sent
        ticks["gw"] = cpu_ticks(gw_pid)
        ticks["self"] = cpu_ticks()
        ticks["machine"] = machine_busy_ticks()
        if broker_pid is not None:
            ticks["broker"] = cpu_ticks(broker_pid)

    t = stream_records(port, body, reports, args.timeout, args.stall_timeout, on_start)
    gw_ticks = cpu_ticks(gw_pid) - ticks["gw"]
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
        "rss_mb_after": rss_mb(gw_pid),
        "warmup_s": warmup_s,
        "topic": topic,
    }


# -- the gateway process ---------------------------------------------------------------------


class GatewayProcess:
    def __init__(self, bootstrap: str, port: int, log_path: str) -> None:
        self.bootstrap = bootstrap
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.stop_s: float | None = None

    def start(self, timeout: float) -> None:
        argv = [
            sys.executable, "-m", "gateway",
            "--listen", f"127.0.0.1:{self.port}",
            "--bootstrap-servers", self.bootstrap,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                close_fds=True, start_new_session=True,  # a Ctrl-C reaches only the bench
                preexec_fn=_die_with_parent(signal.SIGTERM),
            )
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise BenchError(f"the gateway exited with status {rc} while starting")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise BenchError(f"the gateway did not listen within {timeout:g} s ({exc})") from None
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float) -> None:
        proc = self.proc
        if proc is None or self.exit_code is not None:
            return
        t0 = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.exit_code = proc.returncode
        self.stop_s = time.monotonic() - t0


# -- the baseline phase ----------------------------------------------------------------------


def baseline_child(params: dict[str, Any]) -> int:
    """Runs in the child process: produce N records, then print one JSON line of results."""
    from confluent_kafka import Producer

    n, topic, timeout = params["records"], params["topic"], params["timeout"]
    value = value_bytes(params["value_bytes"])
    deadline = time.monotonic() + timeout
    delivered = failed = 0
    errors: collections.Counter[str] = collections.Counter()

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1
            errors[str(err)] += 1

    conf = dict(PRODUCER_SETTINGS, **{"bootstrap.servers": params["bootstrap"], "on_delivery": on_delivery})
    producer = Producer(conf)
    produce, poll = producer.produce, producer.poll
    t_warm = time.monotonic()
    for _ in range(max(1, params["warmup"])):
        produce(topic, value)
    if producer.flush(timeout) or failed:
        print(json.dumps({"error": f"warm-up failed: {dict(errors)}"}))
        return 1
    warmup_s = time.monotonic() - t_warm
    delivered = 0
    buffer_full = 0

    broker_pid = params["broker_pid"]
    broker0 = cpu_ticks(broker_pid) if broker_pid is not None else None
    machine0 = machine_busy_ticks()
    ticks0 = cpu_ticks()
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # queue.buffering.max.messages reached: serve reports
                buffer_full += 1
                poll(0.1)
        poll(0)
        if not i & 0xFFFF and time.monotonic() > deadline:
            print(json.dumps({"error": f"timed out after {timeout:g} s at record {i}"}))
            return 1
    t_produced = time.perf_counter()
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    t1 = time.perf_counter()
    ticks = cpu_ticks() - ticks0
    broker_ticks = cpu_ticks(broker_pid) - broker0 if broker0 is not None else None
    machine_ticks = machine_busy_ticks() - machine0
    others = max(0, machine_ticks - ticks - (broker_ticks or 0))
    out = {
        "records": n,
        "delivered": delivered,
        "failed": failed,
        "errors": dict(errors),
        "unflushed": left,
        "wall_s": t1 - t0,
        "produce_loop_s": t_produced - t0,
        "cpu_s": ticks / CLK_TCK,
        "broker_cpu_s": broker_ticks / CLK_TCK if broker_ticks is not None else None,
        "machine_busy_cores": machine_ticks / CLK_TCK / (t1 - t0),
        "other_load_cores": others / CLK_TCK / (t1 - t0),
        "buffer_full": buffer_full,
        "warmup_s": warmup_s,
        "rss_mb_after": rss_mb(),
    }
    print(json.dumps(out))
    return 0


def run_baseline_phase(
    bootstrap: str, broker_pid: int | None, topic: str, args: argparse.Namespace, log_path: str
) -> dict[str, Any]:
    params = {
        "bootstrap": bootstrap,
        "topic": topic,
        "records": args.records,
        "value_bytes": args.value_bytes,
        "warmup": args.warmup,
        "timeout": args.timeout,
        "broker_pid": broker_pid,
    }
    argv = [sys.executable, "-m", "bench.stream", "--baseline-child", json.dumps(params)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            close_fds=True, start_new_session=True, preexec_fn=_die_with_parent(signal.SIGKILL),
        )
    try:
        out, _ = proc.communicate(timeout=args.timeout + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the baseline producer did not finish within {args.timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError(
            f"the baseline producer exited with status {proc.returncode} and no result "
            f"(log: {log_path})\n{log_tail(log_path)}"
        ) from None
    if "error" in res:
        raise BenchError(f"baseline: {res['error']} (log: {log_path})")
    n = args.records
    if res["delivered"] != n or res["failed"] or res["unflushed"]:
        raise BenchError(
            f"baseline: {res['delivered']} of {n} delivered, {res['failed']} failed "
            f"{res['errors']}, {res['unflushed']} not flushed"
        )
    res.update(
        records_per_s=n / res["wall_s"],
        cpu_us_per_record=res["cpu_s"] / n * 1e6,
        broker_cpu_us_per_record=(
            res["broker_cpu_s"] / n * 1e6 if res["broker_cpu_s"] is not None else None
        ),
        topic=topic,
    )
    return res


# -- set-up ----------------------------------------------------------------------------------

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def check_loopback(bootstrap: str) -> None:
    for server in bootstrap.split(","):
        host = server.strip().rsplit(":", 1)[0]
        if host not in LOOPBACK:
            raise BenchError(f"--bootstrap-servers: {server!r} is not on loopback; this bench targets 127.0.0.1 only")


def create_topics(bootstrap: str, names: list[str], partitions: int, timeout: float) -> str:
    """Create the topics, wait until metadata shows them whole; return the cluster id."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, partitions, replication_factor=1) for name in names],
        request_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except Exception as exc:
            raise BenchError(f"could not create topic {name}: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        if all(name in md.topics and len(md.topics[name].partitions) == partitions for name in names):
            return md.cluster_id or "cluster"
        if time.monotonic() > deadline:
            raise BenchError(f"topics {names} not in metadata with {partitions} partitions")
        time.sleep(0.1)


def delete_topics(bootstrap: str, names: list[str], timeout: float = 15.0) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.delete_topics(names, request_timeout=timeout).values():
        try:
            fut.result(timeout)
        except Exception:
            pass


# -- output ----------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def print_table(result: dict[str, Any]) -> None:
    m, v, p = result["machine"], result["versions"], result["params"]
    gw, base, ratio = result.get("gateway"), result.get("baseline"), result.get("ratio", {})
    print(
        f"bench.stream: {p['records']:,} records, {p['value_bytes']}-byte BINARY values, no key, "
        f"{p['partitions']} partitions ({p['warmup']:,}-record warm-up per phase, not counted)"
    )
    print(
        f"machine:  {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average {m['loadavg_1m_at_start']:.2f} at start"
    )
    print(
        f"versions: Python {v['python']}, confluent-kafka {v['confluent_kafka']}, "
        f"librdkafka {v['librdkafka']}, gateway {v['gateway']} ({v['git']})"
    )
    print(f"broker:   {result['broker']['kind']} at {result['broker']['bootstrap']}")
    print()

    def f(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    rows = [("", "records/s", "CPU µs/rec", "broker µs/rec", "wall s", "other load")]
    for name, r in (("gateway", gw), ("baseline", base)):
        if r is not None:
            rows.append((
                name,
                f(r["records_per_s"], ",.0f"),
                f(r["cpu_us_per_record"], ".2f"),
                f(r["broker_cpu_us_per_record"], ".2f"),
                f(r["wall_s"], ".2f"),
                f(r["other_load_cores"], ".2f") + " cores",
            ))
    if gw is not None and base is not None:
        rows.append((
            "gateway/baseline",
            f(ratio.get("records_per_s"), ".3f"),
            f(ratio.get("cpu_us_per_record"), ".2f"),
            f(ratio.get("broker_cpu_us_per_record"), ".2f"),
            "",
            "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]))
    busy = [r["other_load_cores"] for r in (gw, base) if r is not None]
    if busy and max(busy) > 0.2:
        print(
            f"WARNING: other processes used up to {max(busy):.2f} of {m['nproc']} cores during "
            "the run ('other load'): these figures are not comparable with a quiet machine's"
        )
    print()
    if gw is not None:
        print(
            f"load generator: {gw['loadgen_cpu_us_per_record']:.2f} CPU µs/rec "
            f"(sender {gw['loadgen_sender_cpu_us_per_record']:.2f}, reader "
            f"{gw['loadgen_reader_cpu_us_per_record']:.2f}); body {gw['body_bytes'] / 1e6:,.1f} MB "
            f"in {gw['chunks']:,} chunks of {gw['records_per_chunk']} records"
        )
        print(
            f"gateway stream: body sent after {gw['send_done_s']:.2f} s, first report after "
            f"{gw['first_report_ms']:.1f} ms, longest gap between reports {gw['max_report_gap_ms']:.1f} ms, "
            f"{gw['reports_sampled']:,} reports decoded in full, RSS {f(gw['rss_mb_after'], '.0f')} MB; "
            f"warm-up took {gw['warmup_s']:.2f} s"
        )
        g = result.get("gateway_process", {})
        findings = g.get("log_findings", {})
        print(
            f"gateway process: exit status {g.get('exit_code')} after SIGTERM "
            f"({f(g.get('stop_s'), '.2f')} s); log {g.get('log')}: "
            f"{findings.get('counts') or 'no warnings or errors'}"
        )
        for line in findings.get("examples", []):
            print(f"  | {line}")
    if base is not None:
        print(
            f"baseline: produce loop {base['produce_loop_s']:.2f} s + flush, "
            f"{base['buffer_full']:,} BufferError retries, RSS {f(base['rss_mb_after'], '.0f')} MB; "
            f"warm-up took {base['warmup_s']:.2f} s"
        )


# -- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.stream",
        description=__doc__.split("\n\n")[0] + ": records/s and CPU µs per record of the gateway "
        "(one chunked HTTP/1.1 stream, v3 produce) and of a plain confluent-kafka producer with "
        "the same librdkafka settings (acks=all, enable.idempotence=true, "
        "partitioner=murmur2_random, linger.ms=5).",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--records", type=int, default=1_000_000, metavar="N",
                   help="records per phase (default 1,000,000)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value, sent as BINARY (base64) (default 100)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topics (default 6)")
    p.add_argument("--warmup", type=int, default=1000, metavar="N",
                   help="records sent before each measured phase, not counted (default 1000)")
    p.add_argument("--bootstrap-servers", metavar="LIST",
                   help="use this (loopback) Kafka instead of an embedded Tansu broker")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="limit for each phase (default 300)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="end the gateway phase when no report arrives for this long "
                   "(0: wait for --timeout) (default 30)")
    p.add_argument("--baseline-first", action="store_true",
                   help="run the baseline before the gateway")
    p.add_argument("--only", choices=("gateway", "baseline"),
                   help="run one phase only (no ratios)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the temporary log directory even when the run succeeds")
    p.add_argument("--baseline-child", metavar="PARAMS", help=argparse.SUPPRESS)
    return p


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "benchmark": "bench.stream",
        "params": {
            "records": args.records,
            "value_bytes": args.value_bytes,
            "partitions": args.partitions,
            "warmup": args.warmup,
            "chunk_bytes": CHUNK_BYTES,
            "timeout_s": args.timeout,
            "stall_timeout_s": args.stall_timeout,
            "producer_settings": PRODUCER_SETTINGS,
        },
        "machine": machine_info(),
        "versions": versions(),
        "log_dir": log_dir,
    }
    broker = None
    gateway: GatewayProcess | None = None
    topics: list[str] = []
    bootstrap = args.bootstrap_servers
    try:
        if bootstrap is None:
            from gateway.kafka.embedded import EmbeddedBroker, find_free_port

            broker = EmbeddedBroker(
                "127.0.0.1", find_free_port(), log_path=os.path.join(log_dir, "tansu.log")
            )
            broker.start(timeout=min(args.timeout, 60.0))
            bootstrap = broker.bootstrap
            result["broker"] = {"kind": "embedded Tansu (memory storage)", "bootstrap": bootstrap}
        else:
            check_loopback(bootstrap)
            result["broker"] = {"kind": "external", "bootstrap": bootstrap}
        broker_pid = broker.pid if broker is not None else None

        run_id = f"bench-stream-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        gw_topic, base_topic = f"{run_id}-gw", f"{run_id}-base"
        phases = ["baseline", "gateway"] if args.baseline_first else ["gateway", "baseline"]
        if args.only:
            phases = [args.only]
        wanted = [gw_topic if ph == "gateway" else base_topic for ph in phases]
        cluster_id = create_topics(bootstrap, wanted, args.partitions, args.timeout)
        topics = wanted

        if "gateway" in phases:
            from gateway.kafka.embedded import find_free_port

            gateway = GatewayProcess(bootstrap, find_free_port(), os.path.join(log_dir, "gateway.log"))
            try:
                gateway.start(args.timeout)
            except BenchError as exc:
                raise BenchError(f"{exc} (log: {gateway.log_path})\n{log_tail(gateway.log_path)}") from None
        for phase in phases:
            if phase == "gateway":
                assert gateway is not None
                try:
                    result["gateway"] = run_gateway_phase(
                        gateway.port, gateway.pid, broker_pid, cluster_id, gw_topic, args
                    )
                except BenchError as exc:
                    alive = gateway.proc is not None and gateway.proc.poll() is None
                    raise BenchError(
                        f"gateway phase: {exc}\n(gateway {'running' if alive else 'exited'}; "
                        f"log: {gateway.log_path})\n{log_tail(gateway.log_path)}"
                    ) from None
            else:
                result["baseline"] = run_baseline_phase(
                    bootstrap, broker_pid, base_topic, args, os.path.join(log_dir, "baseline.log")
                )
    finally:
        if gateway is not None:
            gateway.stop(timeout=40.0)
            result["gateway_process"] = {
                "exit_code": gateway.exit_code,
                "stop_s": gateway.stop_s,
                "log": gateway.log_path,
                "log_findings": log_findings(gateway.log_path),
            }
        if broker is not None:
            broker.stop()
        elif topics and bootstrap is not None:
            delete_topics(bootstrap, topics)

    gw, base = result.get("gateway"), result.get("baseline")
    if gw is not None and base is not None:
        result["ratio"] = {
            "records_per_s": _ratio(gw["records_per_s"], base["records_per_s"]),
            "cpu_us_per_record": _ratio(gw["cpu_us_per_record"], base["cpu_us_per_record"]),
            "broker_cpu_us_per_record": _ratio(
                gw["broker_cpu_us_per_record"], base["broker_cpu_us_per_record"]
            ),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.baseline_child is not None:
        return baseline_child(json.loads(args.baseline_child))
    for name in ("records", "value_bytes", "partitions"):
        if getattr(args, name) < 1:
            print(f"bench.stream: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if args.timeout <= 0 or args.stall_timeout < 0:
        print("bench.stream: --timeout must be positive, --stall-timeout not negative",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    log_dir = tempfile.mkdtemp(prefix="bench-stream-")
    ok = False
    try:
        result = run(args, log_dir)
        ok = True
    except BenchError as exc:
        print(f"bench.stream: {exc}\n(logs in {log_dir})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bench.stream: interrupted (logs in {log_dir})", file=sys.stderr)
        return 130
    finally:
        if ok and not args.keep_logs:
            g = result.get("gateway_process", {})
            if g.get("exit_code") in (0, None) and not g.get("log_findings", {}).get("counts"):
                _remove_dir(log_dir)
                result["log_dir"] = None
                if g:
                    g["log"] = "clean, removed (--keep-logs keeps it)"
    if args.json:
        print(json.dumps(result, indent=None))
    else:
        print_table(result)
    return 0


def _remove_dir(path: str) -> None:
    for name in os.listdir(path):
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            return
    try:
        os.rmdir(path)
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
