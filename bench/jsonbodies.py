"""Time per whole-body JSON parse of typical request bodies: ``json.loads`` against simdjson's
On-Demand API (``gateway._speedups.json_loads``, ext/jsondoc.cc).

    .venv/bin/python -m bench.jsonbodies [--rounds N] [--number N] [--json]

No broker, no gateway process, no socket: the bodies the gateway parses whole, as clients send
them: a v2 produce body of 100 binary records of 100 bytes (base64), a v3 ``records:batch`` body
of 100 entries (a JSON key and value each), a consumer's subscription body. ``json.loads`` is
given the bytes, as the endpoints had it (it decodes them first). Each round times ``--number``
parses of each body by each parser, the parsers interleaved; figures are the median of
``--rounds`` rounds (at least 3) with min–max, in µs of wall time per parse on one thread. Before
timing, both parsers are checked to give the same objects for every body.

A second table times what ``records:batch`` hands the splitter, per body, in the same rounds:
each entry's record text, cut out of the body by ``json_batch_entries`` (what the gateway does),
against ``json.loads`` of the body and one compact ``json.dumps`` per entry without its id (the
gateway's way before: the same work, Python's rendering of the record instead of the client's).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import check_rounds, fmt_pair, machine_info, versions
from gateway._speedups import json_batch_entries, json_loads, simdjson_implementation


def _v2_produce() -> bytes:
    records = [
        {"value": base64.b64encode(bytes((i + j) % 256 for j in range(100))).decode()}
        for i in range(100)
    ]
    return json.dumps({"records": records}).encode()


def _batch() -> bytes:
    entries = [
        {
            "id": f"entry-{i}",
            "partition_id": i % 3,
            "key": {"type": "JSON", "data": f"customer-{i}"},
            "value": {"type": "JSON", "data": {"order": i, "amount": i * 1.25, "items": ["a", "b"],
                                               "note": "café ✓"}},
        }
        for i in range(100)
    ]
    return json.dumps({"entries": entries}).encode()


BODIES: dict[str, bytes] = {
    "v2 produce 100x100B": _v2_produce(),
    "records:batch 100": _batch(),
    "subscription": b'{"topics":["orders","payments","shipments"]}',
}
PARSERS: dict[str, Callable[[bytes], Any]] = {"json.loads": json.loads, "simdjson": json_loads}


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _records_by_json(body: bytes) -> list[bytes]:
    out = []
    for entry in json.loads(body)["entries"]:
        fields = dict(entry)
        fields.pop("id", None)
        out.append(_compact(fields).encode())
    return out


def _records_by_walk(body: bytes) -> list[bytes]:
    return [body[start:cut] + body[resume:end] for _, _, start, cut, resume, end in json_batch_entries(body)]


BATCH_READERS: dict[str, Callable[[bytes], Any]] = {
    "json.loads+dumps": _records_by_json,
    "json_batch_entries": _records_by_walk,
}


def time_one(parse: Callable[[bytes], Any], body: bytes, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        parse(body)
    return (time.perf_counter() - t0) / number * 1e6


def run(rounds: int, number: int) -> dict[str, Any]:
    for name, body in BODIES.items():
        if json.loads(body) != json_loads(body):
            raise SystemExit(f"bench.jsonbodies: the parsers disagree on the {name} body")
    batch = BODIES["records:batch 100"]
    if len(_records_by_walk(batch)) != len(_records_by_json(batch)):
        raise SystemExit("bench.jsonbodies: the batch readers disagree on the entries")
    times: dict[str, dict[str, list[float]]] = {b: {p: [] for p in PARSERS} for b in BODIES}
    batch_times: dict[str, list[float]] = {r: [] for r in BATCH_READERS}
    for _ in range(rounds):
        for name, body in BODIES.items():
            n = max(1, number * 64 // max(64, len(body)))  # about the same time per body
            for parser, parse in PARSERS.items():
                times[name][parser].append(time_one(parse, body, n))
        n = max(1, number * 64 // len(batch))
        for reader, read in BATCH_READERS.items():
            batch_times[reader].append(time_one(read, batch, n))
    return {
        "benchmark": "jsonbodies",
        "params": {"rounds": rounds, "number": number},
        "simdjson_implementation": simdjson_implementation(),
        "machine": machine_info(),
        "versions": versions(),
        "us_per_parse": times,
        "us_per_batch_body": batch_times,
    }


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"whole-body JSON parse, µs per parse: median of {result['params']['rounds']} rounds "
          f"(min–max); simdjson kernel {result['simdjson_implementation']}")
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, load average {m['loadavg_1m_at_start']:.2f} at start")
    print(f"{'body':<21} {'bytes':>6}  {'json.loads':>22}  {'simdjson':>22}  {'ratio':>6}")
    for name, by_parser in result["us_per_parse"].items():
        a, b, r = fmt_pair(by_parser["json.loads"], by_parser["simdjson"], ".2f")
        print(f"{name:<21} {len(BODIES[name]):>6}  {a:>22}  {b:>22}  {r:>5}×")
    print()
    print("records:batch 100: every entry's record text for the splitter, µs per body")
    by_reader = result["us_per_batch_body"]
    a, b, r = fmt_pair(by_reader["json.loads+dumps"], by_reader["json_batch_entries"], ".2f")
    print(f"{'json.loads+dumps':<21} {a:>22}\n{'json_batch_entries':<21} {b:>22}\n{'ratio':<21} {r:>5}×")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jsonbodies", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 3; default 5)")
    parser.add_argument("--number", type=int, default=100000,
                        help="parses of a 64-byte body per parser and round, fewer for larger bodies (default 100000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    problem = check_rounds(args.rounds) or (None if args.number >= 1 else "--number must be positive")
    if problem:
        print(f"bench.jsonbodies: {problem}", file=sys.stderr)
        return 2
    result = run(args.rounds, args.number)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
