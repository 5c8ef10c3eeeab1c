"""The v3 record splitter against simdjson, per record size: ns per record and MB/s.

    .venv/bin/python -m bench.splitjson [--mb 4] [--rounds 5] [--json]

Bodies: v3 records (docs/api.md §1) of about 100 B, 1 KB, 10 KB and 100 KB, each with a STRING
key, one header and a value that is either a nested telemetry object (``"type":"JSON"``: a
device, its site and a list of readings with sensors, timestamps, floats, states and tags) or
random bytes in base64 (``"type":"BINARY"``). Each measurement feeds ``--mb`` MB of body in 64
KiB pieces (as socket reads give them, so large records span pieces) and collects the items.

Parsers, on the same bodies:

- ``splitter``: ``JsonSplitter`` with its own Cython parser only (ext/splitter.pxi: a
  string-aware bracket scan finds each record's end, then a recursive-descent parser validates
  and decodes it, byte by byte);
- ``simdjson``: simdjson alone (``SimdjsonRecords``, ext/jsonsplit.cc): each piece appended to
  the partial record the previous one left, then On-Demand ``iterate_many`` over it, every value
  walked and checked, the fields read; the same items;
- ``per-record``: ``JsonSplitter`` handing every record to simdjson once its scan has found the
  end (one On-Demand parse per record);
- ``adopted``: ``JsonSplitter`` as the gateway runs it (``splitter_simdjson()``): simdjson reads
  the complete records of each piece in one pass, the splitter's scanner takes over from the
  first it does not accept or that is not complete in the piece, and a record that spanned
  pieces goes to simdjson alone if it is long enough (the splitter keeps its own scan of it).

All decode base64 with the splitter's decoder (ext/codecs.pxi) and build the same items; the
bench checks they are equal before it times anything. Rounds interleave the parsers (splitter,
simdjson, per-record, adopted, splitter, ...): the figure is the median over ``--rounds`` (at
least 3) with the min–max, in wall time of this one thread (no sockets, no gateway, no Kafka);
the ratio is the median of each round's own ratio (splitter time / parser time: above 1, the
parser is faster). About 40 s in all at the defaults.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import check_rounds
from gateway import _speedups

PIECE = 64 * 1024
SIZES = [("100 B", 100), ("1 KB", 1000), ("10 KB", 10_000), ("100 KB", 100_000)]
KINDS = ["JSON", "BINARY"]
DEFAULTS = _speedups.splitter_simdjson()  # what the gateway runs with
OFF = 1 << 40  # longer than any record: that use of simdjson off


def _reading(rnd: random.Random, i: int) -> dict[str, Any]:
    ms = 1_790_000_000_000 + i * 37 + rnd.randrange(30)
    return {
        "sensor": f"sensor-{rnd.randrange(400):04d}",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z",
        "temp_c": round(18 + rnd.random() * 9, 2),
        "humidity": round(30 + rnd.random() * 40, 1),
        "vibration": round(rnd.random() * 0.05, 4),
        "battery": rnd.randrange(40, 101),
        "state": rnd.choice(["ok", "ok", "ok", "warn", "calibrating", "fault"]),
        "tags": {"line": rnd.randrange(12), "shift": rnd.choice(["a", "b", "c"]), "ok": True},
    }


def record(size: int, kind: str, rnd: random.Random, i: int) -> bytes:
    """One v3 record of about ``size`` bytes with a value of ``kind``."""
    head = {
        "key": {"type": "STRING", "data": f"device-{rnd.randrange(10_000):05d}"},
        "headers": [{"name": "source", "value": "dGVsZW1ldHJ5"}],
    }

    def render(value: dict[str, Any]) -> bytes:
        return json.dumps({**head, "value": value}, separators=(",", ":")).encode()

    if kind == "BINARY":
        empty = len(render({"type": "BINARY", "data": ""}))
        n = max(0, (size - empty) * 3 // 4)
        data = base64.b64encode(rnd.randbytes(n)).decode()
        return render({"type": "BINARY", "data": data})
    if size < 200:
        return render({"type": "JSON", "data": {"s": f"s-{i % 1000}", "t": round(rnd.random(), 2)}})
    data: dict[str, Any] = {"device": f"dev-{i % 997}", "site": f"plant-{i % 7}", "readings": []}
    while True:
        data["readings"].append(_reading(rnd, i))
        out = render({"type": "JSON", "data": data})
        if len(out) >= size:
            return out


def body(size: int, kind: str, mb: float, seed: int = 7) -> tuple[bytes, int]:
    """About ``mb`` MB of newline-separated records, and how many."""
    rnd = random.Random(seed)
    distinct = [record(size, kind, rnd, i) for i in range(64)]
    n = max(8, int(mb * 1e6) // len(distinct[0]))
    return b"\n".join(distinct[i % len(distinct)] for i in range(n)) + b"\n", n


def pieces(data: bytes) -> list[memoryview]:
    view = memoryview(data)
    return [view[i:i + PIECE] for i in range(0, len(data), PIECE)]


def run_splitter(chunks: list[memoryview], stream_min: int, record_min: int) -> list[Any]:
    old = _speedups.splitter_simdjson(stream_min, record_min)
    try:
        splitter = _speedups.JsonSplitter(max_record_bytes=1 << 20)
        out: list[Any] = []
        for chunk in chunks:
            out += splitter.feed(chunk)
        return out + splitter.finish()
    finally:
        _speedups.splitter_simdjson(*old)


def run_simdjson(chunks: list[memoryview]) -> list[Any]:
    reader = _speedups.SimdjsonRecords()
    out: list[Any] = []
    for chunk in chunks:
        out += reader.feed(chunk)
    return out


def parsers() -> dict[str, Callable[[list[memoryview]], list[Any]]]:
    found: dict[str, Callable[[list[memoryview]], list[Any]]] = {
        "splitter": lambda c: run_splitter(c, OFF, OFF),
        "simdjson": run_simdjson,
        "per-record": lambda c: run_splitter(c, OFF, 2),
        "adopted": lambda c: run_splitter(c, *DEFAULTS),
    }
    return found


def measure(mb: float, rounds: int) -> dict[str, Any]:
    cells = []
    names = list(parsers())
    for label, size in SIZES:
        for kind in KINDS:
            data, n = body(size, kind, mb)
            chunks = pieces(data)
            runs = parsers()
            expected = runs["splitter"](chunks)
            if len(expected) != n or any(isinstance(x, Exception) for x in expected):
                raise SystemExit(f"{label} {kind}: the splitter refused the bench body")
            for name, run in runs.items():
                if run(chunks) != expected:
                    raise SystemExit(f"{label} {kind}: {name} gives other items than the splitter")
            times: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(rounds):
                for name, run in runs.items():
                    # The items are tens of thousands of tuples: without this the cyclic
                    # collector's passes over them land on whichever parser runs then.
                    gc.collect()
                    gc.disable()
                    try:
                        t0 = time.perf_counter_ns()
                        run(chunks)
                        times[name].append(time.perf_counter_ns() - t0)
                    finally:
                        gc.enable()
            record_bytes = len(data) / n
            cell: dict[str, Any] = {
                "size": label, "kind": kind, "records": n, "record_bytes": round(record_bytes),
                "body_bytes": len(data), "parsers": {},
            }
            for name in names:
                ns = [t / n for t in times[name]]
                mbs = [len(data) / t * 1e3 for t in times[name]]
                ratios = [s / t for s, t in zip(times["splitter"], times[name], strict=True)]
                cell["parsers"][name] = {
                    "ns_per_record": [statistics.median(ns), min(ns), max(ns)],
                    "mb_per_s": [statistics.median(mbs), min(mbs), max(mbs)],
                    "ratio": [statistics.median(ratios), min(ratios), max(ratios)],
                }
            cells.append(cell)
    return {
        "simdjson_implementation": _speedups.simdjson_implementation(),
        "splitter_simdjson": list(DEFAULTS),
        "mb": mb, "rounds": rounds, "piece": PIECE, "cells": cells,
    }


def _fmt(v: list[float], spec: str) -> str:
    return f"{v[0]:{spec}} ({v[1]:{spec}}–{v[2]:{spec}})"


def table(result: dict[str, Any]) -> str:
    lines = [
        f"simdjson On-Demand kernel: {result['simdjson_implementation']}; "
        f"adopted: splitter_simdjson(stream_min, record_min) = "
        f"{tuple(result['splitter_simdjson'])}",
        f"{result['mb']} MB per measurement in {result['piece'] // 1024} KiB pieces, "
        f"{result['rounds']} interleaved rounds: median (min–max)",
        "",
        f"{'record':>8} {'value':<6} {'parser':<17} {'ns/record':>28} {'MB/s':>22} "
        f"{'splitter/parser':>22}",
    ]
    for cell in result["cells"]:
        for name, p in cell["parsers"].items():
            ratio = "" if name == "splitter" else _fmt(p["ratio"], ".2f")
            lines.append(
                f"{cell['size']:>8} {cell['kind']:<6} {name:<17} "
                f"{_fmt(p['ns_per_record'], ',.0f'):>28} {_fmt(p['mb_per_s'], '.0f'):>22} "
                f"{ratio:>22}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.splitjson", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=4.0, help="MB of body per measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 3)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if problem := check_rounds(args.rounds):
        ap.error(problem)
    if not 0.1 <= args.mb <= 64:
        ap.error("--mb must be between 0.1 and 64")
    result = measure(args.mb, args.rounds)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
