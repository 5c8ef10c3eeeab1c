"""Bytes on the wire: a compressed v3 stream against a plain one, both directions.

    .venv/bin/python -m bench.wire [--records N] [--batch N] [--rounds N] [--json] ...

One chunked stream per variant to ``POST /v3/clusters/{c}/topics/{t}/records`` (docs/api.md §1),
``--records`` telemetry records (bench/inflate.py's: readings of 400 sensors as JSON, about 240
bytes each), written ``--batch`` records per chunk as an edge agent
writes them (its compressor flushed after each batch: Z_SYNC_FLUSH for gzip, FLUSH_BLOCK for
zstd), the reports read on the same connection while it sends. Variants:

- plain: no ``Content-Encoding``, no ``Accept-Encoding``;
- gzip: ``Content-Encoding: gzip`` and ``Accept-Encoding: gzip`` (the reports compressed and
  flushed by the gateway at each write);
- zstd: the same with zstd.

Bytes are counted at the client's socket: every byte written (request head, chunk framing,
body) and every byte read (response head, chunk framing, reports), divided by the records.
Each variant runs ``--rounds`` times (at least 3), interleaved (plain, gzip, zstd, plain, ...);
figures are medians with min–max, bytes and the gateway's CPU (all its threads, from /proc) per
record. The row of the issue's table is gzip's bytes per record (both directions added) against
plain's. Everything on 127.0.0.1: an embedded Tansu broker (unless ``--bootstrap-servers``), the
gateway as a child process, a fresh one-partition topic; each stream has a timeout.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
import zlib
from typing import Any

from bench.common import (
    CLK_TCK,
    BenchError,
    GatewayProcess,
    Rig,
    bench_main,
    common_arguments,
    new_result,
    print_gateway_processes,
    print_header,
    print_rows,
    print_verdicts,
    print_warnings,
    records_path,
    verdict,
)
from bench.inflate import telemetry
from gateway.http.coding import zstd

VARIANTS = ("plain", "gzip", "zstd")


class Encoder:
    """The client's side of a request coding: each batch compressed and flushed."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        if coding == "gzip":
            self._gz = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif coding == "zstd":
            self._z = zstd.ZstdCompressor()

    def batch(self, data: bytes) -> bytes:
        if self.coding == "gzip":
            return self._gz.compress(data) + self._gz.flush(zlib.Z_SYNC_FLUSH)
        if self.coding == "zstd":
            return self._z.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)
        return data

    def end(self) -> bytes:
        if self.coding == "gzip":
            return self._gz.flush(zlib.Z_FINISH)
        if self.coding == "zstd":
            return self._z.flush(zstd.ZstdCompressor.FLUSH_FRAME)
        return b""


class ChunkedReader:
    """Reads a chunked response off the socket, counting every byte; decodes the body."""

    def __init__(self, sock: socket.socket, coding: str, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buf = bytearray()
        self.received = 0
        self.body = bytearray()
        self.headers: dict[str, str] = {}
        if coding == "gzip":
            self._d: Any = zlib.decompressobj(31)
        elif coding == "zstd":
            self._d = zstd.ZstdDecompressor()
        else:
            self._d = None

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BenchError("timed out reading the reports")
        self.sock.settimeout(left)
        data = self.sock.recv(262144)
        if not data:
            raise BenchError("the gateway closed the connection before the end of the reports")
        self.received += len(data)
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def read(self) -> None:
        status = self._line()
        if not status.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"the gateway answered {status!r}")
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        while True:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                self._line()
                return
            while len(self.buf) < size + 2:
                self._fill()
            data = bytes(self.buf[:size])
            del self.buf[: size + 2]
            self.body += self._d.decompress(data) if self._d is not None else data


def stream(port: int, path: str, records: list[bytes], batch: int, coding: str,
           timeout: float) -> dict[str, Any]:
    """One stream of ``records``; bytes each way, and the reports checked."""
    headers = "Host: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    if coding != "plain":
        headers += f"Content-Encoding: {coding}\r\nAccept-Encoding: {coding}\r\n"
    head = f"POST {path} HTTP/1.1\r\n{headers}\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    deadline = time.monotonic() + timeout
    reader = ChunkedReader(sock, coding, deadline)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            reader.read()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failure.append(exc)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    enc = Encoder(coding)
    sent = 0
    try:
        sock.sendall(head)
        sent += len(head)
        for i in range(0, len(records), batch):
            data = enc.batch(b"\n".join(records[i : i + batch]) + b"\n")
            framed = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
            sock.sendall(framed)
            sent += len(framed)
        tail = enc.end()
        last = (b"%x\r\n%s\r\n" % (len(tail), tail) if tail else b"") + b"0\r\n\r\n"
        sock.sendall(last)
        sent += len(last)
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            raise BenchError(f"{coding}: timed out waiting for the reports")
        if failure:
            raise BenchError(f"{coding}: {failure[0]}")
    finally:
        sock.close()
    reports = bytes(reader.body).split(b"\r\n")[:-1]
    ok = sum(1 for r in reports if r.startswith(b'{"error_code":200,'))
    if ok != len(records):
        raise BenchError(f"{coding}: {ok} of {len(records)} reports are 200: {reports[:2]}")
    want = "" if coding == "plain" else coding
    if reader.headers.get("content-encoding", "") != want:
        raise BenchError(f"{coding}: the answer's Content-Encoding is {reader.headers.get('content-encoding')!r}")
    return {"sent": sent, "received": reader.received, "report_bytes": len(reader.body)}


def run(args: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    result = new_result("bench.wire", args, {"records": args.records, "batch": args.batch,
                                             "rounds": args.rounds})
    records = telemetry(args.records).split(b"\n")[:-1]
    record_bytes = sum(map(len, records)) / len(records)
    with Rig("wire", args, log_dir) as rig:
        topic = rig.topic("wire", 1)
        gw: GatewayProcess = rig.start_gateway()
        path = records_path(rig.cluster_id, topic)
        # Warm-up (metadata, producer id): a small plain stream, retried while the gateway says 503.
        deadline = time.monotonic() + args.timeout
        while True:
            try:
                stream(gw.port, path, records[:100], args.batch, "plain", args.timeout)
                break
            except BenchError as exc:
                if "503" not in str(exc) or time.monotonic() > deadline:
                    raise rig.gateway_failed(gw, exc, "warm-up") from None
                time.sleep(0.2)
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                t0 = gw.cpu_ticks()
                try:
                    s = stream(gw.port, path, records, args.batch, variant, args.timeout)
                except BenchError as exc:
                    raise rig.gateway_failed(gw, exc, variant) from None
                cpu = (gw.cpu_ticks() - t0) / CLK_TCK
                n = len(records)
                samples[variant].append({
                    "sent": s["sent"] / n, "received": s["received"] / n,
                    "both": (s["sent"] + s["received"]) / n, "cpu_us": cpu * 1e6 / n,
                    "report_bytes": s["report_bytes"] / n,
                })
        result["gateway_processes"] = [rig.stop_gateway(gw)]
        result["broker"] = rig.info
    rows = {}
    for variant, runs in samples.items():
        row: dict[str, Any] = {}
        for key in ("sent", "received", "both", "cpu_us", "report_bytes"):
            values = [r[key] for r in runs]
            row[key] = statistics.median(values)
            row[key + "_min"] = min(values)
            row[key + "_max"] = max(values)
        rows[variant] = row
    result["rows"] = rows
    result["record_bytes"] = record_bytes
    plain = rows["plain"]
    for variant in ("gzip", "zstd"):
        r = rows[variant]
        result["verdicts"].append(verdict(
            f"Bytes on the wire, {variant} stream vs plain (both directions)", "bytes/record",
            r["both"], plain["both"], "plain stream", None, unit="B/record",
            target_text="informational"))
    return result


def print_table(result: dict[str, Any]) -> None:
    p = result["params"]
    print_header(result, (
        f"bench.wire: {p['records']:,} telemetry records ({result['record_bytes']:.0f} bytes each as "
        f"JSON) per stream, {p['batch']} per chunk (the client's compressor flushed per chunk), "
        f"median of {p['rounds']} interleaved rounds (min–max)"
    ))
    rows = [("variant", "sent B/record", "received B/record", "both B/record", "reports B/record (plain)",
             "gateway CPU µs/record")]
    for name, r in result["rows"].items():
        def cell(key: str, spec: str = ".1f", r: dict[str, Any] = r) -> str:
            return f"{r[key]:{spec}} ({r[key + '_min']:{spec}}–{r[key + '_max']:{spec}})"
        rows.append((name, cell("sent"), cell("received"), cell("both"), f"{r['report_bytes']:.1f}",
                     cell("cpu_us", ".2f")))
    print_rows(rows)
    print_gateway_processes(result)
    print_warnings(result)
    print()
    print_verdicts(result["verdicts"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.wire", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=20_000, metavar="N",
                   help="records per stream (default 20,000)")
    p.add_argument("--batch", type=int, default=100, metavar="N",
                   help="records per chunk, the client's compressor flushed after each (default 100)")
    p.add_argument("--rounds", type=int, default=3, metavar="N",
                   help="interleaved rounds of every variant, at least 3 (default 3)")
    common_arguments(p, timeout=120.0)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    if args.records < 100 or args.batch < 1 or args.rounds < 3:
        return "--records must be at least 100, --batch at least 1, --rounds at least 3"
    return None


def main(argv: list[str] | None = None) -> int:
    return bench_main("bench.wire", build_parser(), run, print_table, argv, check_args)


if __name__ == "__main__":
    sys.exit(main())

