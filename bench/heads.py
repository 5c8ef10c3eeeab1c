"""Time per ``parse_head`` of typical request heads: the compiled twin against the Python one.

    .venv/bin/python -m bench.heads [--rounds N] [--number N] [--json]

No broker, no gateway process, no socket: each head (a v2 produce as python-requests sends it,
a v3 produce as curl sends it, a v3 chunked stream, a GET of metadata) is parsed in place from a
``bytearray`` with the body after it, as the connection does, by
``gateway.http.parser.python_parse_head`` and ``gateway._speedups.parse_head`` (ext/httphead.pxi).
Each round times ``--number`` calls of each twin on each head, the twins interleaved (python,
compiled, python, ...); figures are the median of ``--rounds`` rounds (at least 3) with min–max,
in µs of wall time per call on an otherwise idle core (one thread, no I/O). Before timing, each
twin's answer is checked to be the same for every head.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import check_rounds, fmt_pair, machine_info, versions
from gateway._speedups import parse_head as compiled_parse_head
from gateway.http.parser import DEFAULT_LIMITS, python_parse_head

HEADS: dict[str, bytes] = {
    "v2 produce": (
        b"POST /topics/orders HTTP/1.1\r\n"
        b"Host: localhost:8082\r\n"
        b"User-Agent: python-requests/2.31.0\r\n"
        b"Accept-Encoding: gzip, deflate\r\n"
        b"Accept: application/vnd.kafka.v2+json\r\n"
        b"Connection: keep-alive\r\n"
        b"Content-Type: application/vnd.kafka.json.v2+json\r\n"
        b"Content-Length: 137\r\n"
        b"\r\n"
    ),
    "v3 produce": (
        b"POST /v3/clusters/c1/topics/orders/records HTTP/1.1\r\n"
        b"Host: localhost:8082\r\n"
        b"User-Agent: curl/8.5.0\r\n"
        b"Accept: */*\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 123\r\n"
        b"\r\n"
    ),
    "v3 stream": (
        b"POST /v3/clusters/c1/topics/orders/records HTTP/1.1\r\n"
        b"Host: localhost:8082\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"\r\n"
    ),
    "metadata GET": b"GET /v3/clusters/c1/topics?x=1 HTTP/1.1\r\nHost: localhost:8082\r\nAccept: */*\r\n\r\n",
}
TWINS: dict[str, Callable[..., Any]] = {"python": python_parse_head, "compiled": compiled_parse_head}


def answer(parse: Callable[..., Any], buf: bytearray) -> tuple[Any, ...]:
    head, end = parse(buf, 0, len(buf), DEFAULT_LIMITS)
    return (*(getattr(head, name) for name in head.__slots__), end)


def time_one(parse: Callable[..., Any], buf: bytearray, number: int) -> float:
    """µs per call of ``parse`` on ``buf``, ``number`` calls."""
    end = len(buf)
    limits = DEFAULT_LIMITS
    t0 = time.perf_counter()
    for _ in range(number):
        parse(buf, 0, end, limits)
    return (time.perf_counter() - t0) / number * 1e6


def run(rounds: int, number: int) -> dict[str, Any]:
    bufs = {name: bytearray(head + b"x" * 137) for name, head in HEADS.items()}
    for name, buf in bufs.items():
        if answer(python_parse_head, buf) != answer(compiled_parse_head, buf):
            raise SystemExit(f"bench.heads: the twins disagree on the {name} head")
    times: dict[str, dict[str, list[float]]] = {h: {t: [] for t in TWINS} for h in HEADS}
    for _ in range(rounds):
        for name, buf in bufs.items():
            for twin, parse in TWINS.items():
                times[name][twin].append(time_one(parse, buf, number))
    return {
        "benchmark": "heads",
        "params": {"rounds": rounds, "number": number},
        "machine": machine_info(),
        "versions": versions(),
        "us_per_call": times,
    }


def print_table(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(f"parse_head, µs per call: median of {result['params']['rounds']} rounds (min–max), "
          f"{result['params']['number']} calls per round")
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, load average {m['loadavg_1m_at_start']:.2f} at start")
    print(f"{'head':<14} {'bytes':>5}  {'python':>20}  {'compiled':>20}  {'ratio':>6}")
    for name, by_twin in result["us_per_call"].items():
        a, b, r = fmt_pair(by_twin["python"], by_twin["compiled"], ".2f")
        print(f"{name:<14} {len(HEADS[name]):>5}  {a:>20}  {b:>20}  {r:>5}×")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heads", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 3; default 5)")
    parser.add_argument("--number", type=int, default=50000, help="calls per twin, head and round (default 50000)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    problem = check_rounds(args.rounds) or (None if args.number >= 1 else "--number must be positive")
    if problem:
        print(f"bench.heads: {problem}", file=sys.stderr)
        return 2
    result = run(args.rounds, args.number)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
