"""Inflate for compressed request bodies: zlib against ISA-L (``isal``), CPU per MB decoded.

    .venv/bin/python -m bench.inflate [--mb 64] [--rounds 5] [--level 6] [--json]

The body: realistic telemetry, v3 records (``{"key":...,"value":{"type":"JSON","data":{...}}}``)
of a few hundred sensors with timestamps, readings and states, about 200 bytes each, gzip
compressed at ``--level`` (6: gzip's and curl's default) in one member. It compresses about
8×: between the 5–20× of real telemetry.

Each implementation decodes it exactly as the gateway does (``gateway.http.coding.BodyDecoder``:
64 KiB pieces as socket reads give them, bounded steps of at most 16 KiB in and 64 KiB out, the
decoded bytes handed to a consumer that drops them), ``--mb`` MB of decoded body per
measurement. Rounds alternate the two (zlib, isal, zlib, isal, ...), so that a change of load on
the machine falls on both; the figure is the median over ``--rounds`` (at least 3) with the
min–max, in CPU time of this process (``time.process_time``) per MB decoded and per record.
Everything is in this one process: no sockets, no gateway, no Kafka. A few seconds in all.

The gateway uses the winner (gateway/http/coding.py ``INFLATE``); README "Compressed bodies"
has the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import zlib
from types import ModuleType
from typing import Any

import isal.isal_zlib as isal_zlib

from gateway.http.coding import BodyDecoder

PIECE = 64 * 1024  # compressed bytes per socket read
IMPLEMENTATIONS: dict[str, ModuleType] = {"zlib": zlib, "isal": isal_zlib}


def telemetry(records: int, seed: int = 11) -> bytes:
    """``records`` v3 records of sensor telemetry, newline-separated."""
    rnd = random.Random(seed)
    sites = [f"plant-{i}" for i in range(7)]
    states = ["ok", "ok", "ok", "ok", "warn", "calibrating", "fault"]
    out = []
    t0 = 1_790_000_000_000
    for i in range(records):
        sensor = rnd.randrange(400)
        ms = t0 + i * 37 + rnd.randrange(30)
        data = {
            "sensor": f"sensor-{sensor:04d}",
            "site": sites[sensor % len(sites)],
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z",
            "temp_c": round(18 + rnd.random() * 9, 2),
            "humidity": round(30 + rnd.random() * 40, 1),
            "vibration": round(rnd.random() * 0.05, 4),
            "battery": rnd.randrange(40, 101),
            "state": rnd.choice(states),
            "seq": i,
        }
        rec = {"key": {"type": "STRING", "data": data["sensor"]},
               "value": {"type": "JSON", "data": data}}
        out.append(json.dumps(rec, separators=(",", ":")).encode())
    return b"\n".join(out) + b"\n"


class Drop:
    """A consumer that takes everything and keeps nothing."""

    accepting = True

    def __init__(self) -> None:
        self.n = 0

    def on_body(self, data: memoryview) -> None:
        self.n += len(data)


def decode_once(body: bytes, module: ModuleType) -> int:
    sink = Drop()
    dec = BodyDecoder(("gzip",), sink, inflate=module)
    view = memoryview(body)
    for pos in range(0, len(body), PIECE):
        dec.feed(view[pos : pos + PIECE])
        while dec.busy:
            dec.pump()
    dec.finish()
    return sink.n


def measure(body: bytes, plain_len: int, module: ModuleType, repeat: int) -> float:
    """CPU seconds to decode ``body`` ``repeat`` times."""
    t0 = time.process_time()
    for _ in range(repeat):
        if decode_once(body, module) != plain_len:
            raise AssertionError("decoded a different length")
    return time.process_time() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
    plain = telemetry(20_000)
    records = plain.count(b"\n")
    body = zlib.compress(plain, args.level, wbits=31)
    repeat = max(1, round(args.mb * 1e6 / len(plain)))
    decoded_mb = repeat * len(plain) / 1e6
    for name, module in IMPLEMENTATIONS.items():  # warm-up, and both decode the same bytes
        if decode_once(body, module) != len(plain):
            raise SystemExit(f"bench.inflate: {name} decoded a different body")
    samples: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for name, module in IMPLEMENTATIONS.items():
            samples[name].append(measure(body, len(plain), module, repeat) / decoded_mb)
    rows = {}
    for name, values in samples.items():
        med = statistics.median(values)
        rows[name] = {
            "cpu_ms_per_mb": med * 1e3,
            "cpu_ms_per_mb_min": min(values) * 1e3,
            "cpu_ms_per_mb_max": max(values) * 1e3,
            "cpu_us_per_record": med * 1e6 * len(plain) / 1e6 / records,
            "samples_ms_per_mb": [v * 1e3 for v in values],
        }
    winner = min(rows, key=lambda n: rows[n]["cpu_ms_per_mb"])
    return {
        "benchmark": "bench.inflate",
        "params": {"mb": args.mb, "rounds": args.rounds, "level": args.level, "piece": PIECE},
        "body": {"records": records, "bytes": len(plain), "gzip_bytes": len(body),
                 "ratio": len(plain) / len(body), "bytes_per_record": len(plain) / records},
        "rows": rows,
        "winner": winner,
        "speedup": rows["zlib"]["cpu_ms_per_mb"] / rows["isal"]["cpu_ms_per_mb"],
        "python": sys.version.split()[0],
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
    }


def print_table(r: dict[str, Any]) -> None:
    b = r["body"]
    print(f"bench.inflate: gzip level {r['params']['level']} telemetry, {b['records']:,} records "
          f"of {b['bytes_per_record']:.0f} bytes, {b['bytes'] / 1e6:.1f} MB -> "
          f"{b['gzip_bytes'] / 1e6:.2f} MB ({b['ratio']:.1f}×); median of {r['params']['rounds']} "
          f"interleaved rounds of {r['params']['mb']} MB decoded (min–max)")
    print(f"{'':6}  {'CPU ms per MB decoded':>26}  {'CPU µs per record':>18}")
    for name, row in r["rows"].items():
        spread = f"({row['cpu_ms_per_mb_min']:.2f}–{row['cpu_ms_per_mb_max']:.2f})"
        print(f"{name:6}  {row['cpu_ms_per_mb']:8.2f} {spread:>17}  {row['cpu_us_per_record']:18.3f}")
    print(f"winner: {r['winner']} ({r['speedup']:.2f}× less CPU for isal than zlib; "
          f"zlib {r['zlib']}, Python {r['python']})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.inflate", description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=64.0, help="MB decoded per measurement (default 64)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds, at least 3 (default 5)")
    p.add_argument("--level", type=int, default=6, help="gzip level of the body (default 6)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rounds < 3 or args.mb <= 0 or not 1 <= args.level <= 9:
        print("bench.inflate: --rounds must be at least 3, --mb positive, --level 1 to 9",
              file=sys.stderr)
        return 2
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
