"""Gateway memory: RSS with 10,000 concurrently open v3 streams, and the extra RSS one client
costs that sends records but never reads its reports.

    .venv/bin/python -m bench.memory [--streams N] [--rounds R] [--json] [--plot FILE.png] ...

Two phases, each on a fresh gateway (memory freed by one phase would hide the other's), run in
turn for ``--rounds`` rounds (3 by default: non-reader, streams, non-reader, streams, ...);
each figure is the median of the rounds with their min–max:

1. Non-reader: one chunked stream to ``POST /v3/clusters/{c}/topics/{t}/records`` whose
   client writes records as fast as it can and never reads. The gateway must pause reading
   it (docs: back-pressure); once the client has made no progress for ``--stall`` seconds, the
   gateway's SIGUSR1 state dump says why that connection is paused, and its RSS then, minus
   its RSS before the client came, is the cost of the client. Target (issue 4): ≤ 16 MB.
2. Open streams: ``--streams`` connections (default 10,000), opened in waves; each sends its
   request head and one record and waits for that record's report, so every stream is
   live and idle. Gateway RSS is sampled as they open, with all open (and the gateway's idle
   CPU then), and after they close. Target (issue 4): ≤ 150 MB RSS with 10,000 open.

Each gateway first gets a ``--warmup`` stream from the repository's load generator
(gateway.loadgen's stream mode, called in-process by bench.load). The non-reading client and
the idle streams are not load: they are this module's own sockets, which open streams and then
never read (the non-reader) or never send again (the open streams), something the load
generator, which always reads its reports and keeps its streams busy, does not do.

The open-file limit is raised (RLIMIT_NOFILE, up to the hard limit) in this process and in
the gateway child. The baseline in the same run is the gateway's own RSS before the phase;
the ratio is each round's figure over that round's RSS before, median (min–max).
"""

from __future__ import annotations

import argparse
import ast
import errno
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from typing import Any

from bench.common import (
    CLK_TCK,
    BenchError,
    GatewayProcess,
    Rig,
    bench_main,
    check_rounds,
    common_arguments,
    fmt_spread,
    median_of,
    new_result,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    raise_nofile,
    ratio,
    record_json,
    records_path,
    spread,
    tcp_queues,
    value_bytes,
    verdict,
)
from bench.load import warm_up

TARGET_STREAMS_MB = 150.0
TARGET_NON_READER_MB = 16.0
WAVE = 500  # connections opened at once (the gateway's listen backlog is 1024)
OK = b'"error_code":200'
FD_SLACK = 200


def stable_rss(gw: GatewayProcess, settle: float = 1.0) -> float:
    """RSS once it stopped moving (at most *settle* × 3 seconds of waiting)."""
    deadline = time.monotonic() + 3 * settle
    last = gw.rss_mb() or 0.0
    while time.monotonic() < deadline:
        time.sleep(settle / 4)
        now = gw.rss_mb() or 0.0
        if abs(now - last) < 0.25:
            return now
        last = now
    return last


def stream_head(port: int, path: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nUser-Agent: bench.memory\r\n\r\n"
    ).encode("ascii")


def chunk_of(records: bytes) -> bytes:
    return b"%x\r\n" % len(records) + records + b"\r\n"


# -- phase 1: a client that never reads --------------------------------------------------------


def dump_connection(gw: GatewayProcess, port: int, timeout: float = 3.0) -> dict[str, Any] | None:
    """SIGUSR1 makes the gateway log every connection (gateway.server.dump_state); find ours
    by its peer port."""
    try:
        start = os.path.getsize(gw.log_path)
    except OSError:
        return None
    os.kill(gw.pid, signal.SIGUSR1)
    pattern = re.compile(r"connection (\{.*'peer': \('127\.0\.0\.1', %d\).*\})\s*$" % port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        with open(gw.log_path, "rb") as f:
            f.seek(start)
            for raw in f:
                m = pattern.search(raw.decode("utf-8", "replace"))
                if m:
                    try:
                        return dict(ast.literal_eval(m.group(1)))
                    except (ValueError, SyntaxError):
                        return {"raw": m.group(1)[:500]}
    return None


def non_reader(gw: GatewayProcess, path: str, args: argparse.Namespace) -> dict[str, Any]:
    record = record_json(value_bytes(args.value_bytes))
    chunk = chunk_of(record * max(1, 65536 // len(record)))
    per_chunk = max(1, 65536 // len(record))
    rss_before = stable_rss(gw)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10.0)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    port = sock.getsockname()[1]
    state = {"chunks": 0, "last": time.monotonic(), "error": None}
    stop = threading.Event()

    def send() -> None:
        try:
            sock.sendall(stream_head(gw.port, path))
            while not stop.is_set():
                sock.sendall(chunk)
                state["chunks"] += 1
                state["last"] = time.monotonic()
        except OSError as exc:
            state["error"] = exc

    sender = threading.Thread(target=send, name="bench-non-reader", daemon=True)
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    samples: list[tuple[float, float]] = []
    sender.start()
    try:
        while True:
            time.sleep(0.1)
            now = time.monotonic()
            samples.append((round(now - t0, 2), gw.rss_mb() or 0.0))
            if state["error"] is not None:
                raise BenchError(f"non-reader: sending failed after {state['chunks']} chunks: "
                                 f"{state['error']!r}")
            if now - state["last"] >= args.stall and state["chunks"]:
                break
            if now > deadline:
                raise BenchError(f"non-reader: the gateway was still reading after {args.timeout:g} s "
                                 f"({state['chunks'] * per_chunk:,} records sent): never paused")
        paused_after = state["last"] - t0
        rss_paused = stable_rss(gw, 0.5)
        queues = tcp_queues(sock)
        info = dump_connection(gw, port)
    finally:
        stop.set()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sender.join(5.0)
        sock.close()
    rss_after_close = stable_rss(gw)
    return {
        "rss_before_mb": rss_before, "rss_paused_mb": rss_paused, "extra_mb": rss_paused - rss_before,
        "rss_after_close_mb": rss_after_close, "records_sent": state["chunks"] * per_chunk,
        "bytes_sent": state["chunks"] * len(chunk), "paused_after_s": paused_after,
        "tcp_queues": queues, "connection_dump": info, "rss_series": samples,
    }


# -- phase 2: many open streams --------------------------------------------------------------


class StreamOpener:
    """Opens streams in waves with non-blocking sockets and one epoll; a stream counts as
    open once its first record's report has arrived."""

    def __init__(self, port: int, path: str, record: bytes) -> None:
        self.addr = ("127.0.0.1", port)
        self.request = stream_head(port, path) + chunk_of(record)
        self.ep = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        self.pending: dict[int, bytes] = {}  # fd -> bytes received so far (no report yet)
        self.open = 0

    def wave(self, n: int, timeout: float) -> None:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(self.addr)
            if err not in (0, errno.EINPROGRESS):
                s.close()
                raise BenchError(f"connect: {os.strerror(err)} after {self.open:,} open streams")
            fd = s.fileno()
            self.socks[fd] = s
            self.pending[fd] = b""
            self.ep.register(fd, select.EPOLLOUT)
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(self.pending)} streams got no report within {timeout:g} s "
                                 f"({self.open:,} open)")
            for fd, ev in self.ep.poll(0.5):
                s = self.socks[fd]
                if ev & select.EPOLLOUT:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise BenchError(f"connect: {os.strerror(err)} after {self.open:,} open streams")
                    if s.send(self.request) != len(self.request):
                        raise BenchError("a request head did not fit a fresh socket buffer")
                    self.ep.modify(fd, select.EPOLLIN)
                elif ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                    data = s.recv(65536)
                    if not data:
                        raise BenchError(f"the gateway closed a stream: {self.pending[fd][:300]!r}")
                    got = self.pending[fd] + data
                    if OK in got:
                        del self.pending[fd]
                        self.ep.unregister(fd)
                        self.open += 1
                    elif len(got) > 4096 or got.startswith(b"HTTP/1.1 5") or got.startswith(b"HTTP/1.1 4"):
                        raise BenchError(f"a stream was answered {got[:300]!r}")
                    else:
                        self.pending[fd] = got

    def close_all(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()
        self.pending.clear()
        self.ep.close()


def open_streams(gw: GatewayProcess, path: str, args: argparse.Namespace, n: int) -> dict[str, Any]:
    record = record_json(value_bytes(args.value_bytes))
    rss_idle = stable_rss(gw)
    curve: list[tuple[int, float]] = [(0, rss_idle)]
    opener = StreamOpener(gw.port, path, record)
    t0 = time.monotonic()
    try:
        while opener.open < n:
            opener.wave(min(WAVE, n - opener.open), args.timeout)
            curve.append((opener.open, gw.rss_mb() or 0.0))
        open_s = time.monotonic() - t0
        rss_open = stable_rss(gw)
        curve.append((opener.open, rss_open))
        # What idle streams cost in CPU (the gateway's timers and sweeps over them).
        c0, t_idle = gw.cpu_ticks(), time.monotonic()
        time.sleep(args.idle)
        idle_cores = (gw.cpu_ticks() - c0) / CLK_TCK / (time.monotonic() - t_idle)
        alive = gw.alive()
    finally:
        t_close = time.monotonic()
        opener.close_all()
    rss_closed = stable_rss(gw, 1.0)
    if not alive:
        raise BenchError("the gateway exited while the streams were open")
    return {
        "streams": opener.open, "rss_idle_mb": rss_idle, "rss_open_mb": rss_open,
        "kb_per_stream": (rss_open - rss_idle) * 1024 / max(1, opener.open),
        "rss_after_close_mb": rss_closed, "open_s": open_s, "idle_cores": idle_cores,
        "close_s": time.monotonic() - t_close, "curve": curve,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=10_000, metavar="N",
                   help="concurrently open streams (default 10,000)")
    p.add_argument("--stall", type=float, default=2.0, metavar="S",
                   help="the non-reading client counts as paused after this long without "
                   "progress (default 2)")
    p.add_argument("--idle", type=float, default=2.0, metavar="S",
                   help="seconds to measure the gateway's CPU with every stream open (default 2)")
    p.add_argument("--value-bytes", type=int, default=100, metavar="N",
                   help="bytes per record value (default 100)")
    p.add_argument("--partitions", type=int, default=6, metavar="N",
                   help="partitions of the fresh topic (default 6)")
    p.add_argument("--rounds", type=int, default=3, metavar="R",
                   help="rounds of the phases, each on a fresh gateway, at least 3 (default 3)")
    p.add_argument("--only", choices=("streams", "non-reader"), help="run one phase only")
    p.add_argument("--warmup", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--stall-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    common_arguments(p, timeout=60.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.streams < 1 or args.stall <= 0 or args.idle <= 0:
        return "--streams must be at least 1, --stall and --idle positive"
    if min(args.value_bytes, args.partitions) < 1:
        return "--value-bytes and --partitions must be at least 1"
    return check_rounds(args.rounds)


NON_READER_FIGURES = ("rss_before_mb", "rss_paused_mb", "extra_mb", "rss_after_close_mb",
                      "records_sent", "paused_after_s")
STREAMS_FIGURES = ("streams", "rss_idle_mb", "rss_open_mb", "kb_per_stream", "rss_after_close_mb",
                   "open_s", "idle_cores")


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.memory", args, {
        "streams": args.streams, "stall_s": args.stall, "value_bytes": args.value_bytes,
        "partitions": args.partitions, "rounds": args.rounds,
    })
    n = args.streams
    limit = raise_nofile(n + FD_SLACK)
    if limit < n + FD_SLACK:
        result["warnings"].append(f"the open-file limit is {limit:,}: {limit - FD_SLACK:,} streams, "
                                  f"not {n:,}")
        n = limit - FD_SLACK
    result["params"]["streams_opened"] = n
    phases = [x for x in ("non-reader", "streams") if args.only in (None, x)]
    rounds: list[dict[str, Any]] = []
    with Rig("bench-memory", args, log_dir) as rig:
        result["broker"] = rig.info
        topic = rig.topic("mem", args.partitions)
        path = records_path(rig.cluster_id, topic)
        try:
            for i in range(1, args.rounds + 1):
                one: dict[str, Any] = {}
                for phase in phases:
                    if phase == "non-reader":
                        gw = rig.start_gateway(f"gateway-non-reader-round{i}.log")
                    else:
                        gw = rig.start_gateway(f"gateway-streams-round{i}.log", nofile=n + FD_SLACK)
                    try:
                        warm_up(gw.port, rig.cluster_id, topic, args)
                        if phase == "non-reader":
                            one["non_reader"] = non_reader(gw, path, args)
                        else:
                            one["streams"] = open_streams(gw, path, args, n)
                    except BenchError as exc:
                        raise rig.gateway_failed(gw, exc, f"{phase} phase, round {i}") from None
                    rig.stop_gateway(gw)
                rounds.append(one)
        finally:
            result["gateway_processes"] = [rig.stop_gateway(g) for g in rig.gateways]
    summarize(result, rounds)
    return result


def summarize(result: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    result["rounds"] = rounds
    result["summary"] = {}
    first = rounds[0]
    if "streams" in first:
        ss = [r["streams"] for r in rounds]
        s = result["summary"]["streams"] = {key: spread([x[key] for x in ss]) for key in STREAMS_FIGURES}
        s["ratio"] = spread([ratio(x["rss_open_mb"], x["rss_idle_mb"]) for x in ss])
        result["verdicts"].append(verdict(
            f"{result['params']['streams_opened']:,} concurrently open v3 streams", "gateway RSS",
            median_of(s["rss_open_mb"]), median_of(s["rss_idle_mb"]), "idle RSS before",
            TARGET_STREAMS_MB, unit="MB", rounds_ratio=s["ratio"],
        ))
        curve = first["streams"]["curve"]
        result["series"]["memory"] = {"streams": [c[0] for c in curve], "rss_mb": [c[1] for c in curve],
                                      "target_mb": TARGET_STREAMS_MB}
    if "non_reader" in first:
        nrs = [r["non_reader"] for r in rounds]
        for i, nr in enumerate(nrs, 1):
            info = nr["connection_dump"] or {}
            if "paused" in info and info["paused"] in ("-", ""):
                result["warnings"].append(f"non-reader, round {i}: the gateway's dump shows the "
                                          f"connection not paused: {info}")
        s = result["summary"]["non_reader"] = {key: spread([x[key] for x in nrs])
                                               for key in NON_READER_FIGURES}
        s["ratio"] = spread([ratio(x["extra_mb"], x["rss_before_mb"]) for x in nrs])
        result["verdicts"].append(verdict(
            "a client that never reads its reports", "extra RSS once paused",
            median_of(s["extra_mb"]), median_of(s["rss_before_mb"]), "RSS before it",
            TARGET_NON_READER_MB, unit="MB", rounds_ratio=s["ratio"],
        ))
        nr = first["non_reader"]
        result["series"]["non_reader_rss"] = {"t": [x[0] for x in nr["rss_series"]],
                                              "rss_mb": [x[1] for x in nr["rss_series"]],
                                              "rss_before_mb": nr["rss_before_mb"],
                                              "target_mb": TARGET_NON_READER_MB}
    for one in rounds[1:]:  # the plot draws round 1; the other rounds' samples are dropped
        one.get("non_reader", {}).pop("rss_series", None)
        one.get("streams", {}).pop("curve", None)


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_header(result, (
        f"bench.memory: gateway RSS with {p['streams_opened']:,} open v3 streams, and the cost of one "
        f"client that never reads its reports ({p['value_bytes']}-byte BINARY values); "
        f"{p['rounds']} rounds, a fresh gateway per phase; median (min–max)"
    ))
    s, nr = result["summary"].get("streams"), result["summary"].get("non_reader")
    if nr is not None:
        print()
        print_rows([
            ("non-reading client", "RSS before MB", "RSS paused MB", "extra MB", "/ before",
             "after close MB", "records sent", "paused after s"),
            ("gateway", fmt_spread(nr["rss_before_mb"], ".1f"), fmt_spread(nr["rss_paused_mb"], ".1f"),
             fmt_spread(nr["extra_mb"], ".1f"), fmt_spread(nr["ratio"], ".2f"),
             fmt_spread(nr["rss_after_close_mb"], ".1f"), fmt_spread(nr["records_sent"], ",.0f"),
             fmt_spread(nr["paused_after_s"], ".2f")),
        ])
        for i, one in enumerate(result["rounds"], 1):
            x = one["non_reader"]
            info = x["connection_dump"] or {}
            q = x["tcp_queues"] or {}
            print(f"  round {i}: extra {x['extra_mb']:.1f} MB; gateway dump of that connection: "
                  f"paused={info.get('paused')!s}, unsent={info.get('unsent')}, "
                  f"buffered={info.get('buffered')}, reports_pending={info.get('reports_pending')}, "
                  f"ok={info.get('ok')}, session_paused={info.get('session_paused')}"
                  + (f"; kernel queues: gateway socket {q['server_unread']:,} B unread / "
                     f"{q['server_unsent']:,} B unsent, client socket {q['client_unsent']:,} B "
                     f"unsent / {q['client_unread']:,} B unread" if q else ""))
    if s is not None:
        print()
        print_rows([
            ("open streams", "streams", "RSS idle MB", "RSS open MB", "/ idle", "KB/stream",
             "after close MB", "open in s", "idle CPU cores"),
            ("gateway", fmt_spread(s["streams"], ",.0f"), fmt_spread(s["rss_idle_mb"], ".1f"),
             fmt_spread(s["rss_open_mb"], ".1f"), fmt_spread(s["ratio"], ".2f"),
             fmt_spread(s["kb_per_stream"], ".1f"), fmt_spread(s["rss_after_close_mb"], ".1f"),
             fmt_spread(s["open_s"], ".1f"), fmt_spread(s["idle_cores"], ".3f")),
        ])
        print("  " + "; ".join(f"round {i}: {one['streams']['rss_open_mb']:.1f} MB open"
                               for i, one in enumerate(result["rounds"], 1)))
    print()
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.memory", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
