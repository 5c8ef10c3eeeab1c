"""Run every benchmark, one after the other, and print the issue's target table at the end.

    .venv/bin/python -m bench [--only stream,requests,...] [--json] [--plot FILE.png] ...

This is what ``make bench`` runs. Each benchmark starts its own broker and gateway on
127.0.0.1 and stops them before the next one starts; counts are smaller than the modules'
own defaults so that the whole set takes a few minutes. A figure is the median of at least 3
interleaved rounds with its min–max, against references measured in the same rounds. The
results go to ``bench/out/results.json`` and the plot to ``bench/out/bench.png`` (override with
``--json-out`` / ``--plot``). The pass/fail column informs; the exit status is 0 whenever every
benchmark produced figures, whatever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from bench import (
    batches,
    consume,
    edge,
    latency,
    memory,
    plot,
    requests,
    spool,
    stream,
    wire,
    workers,
)
from bench.common import (
    REPO,
    BenchError,
    machine_info,
    print_header,
    print_verdicts,
    run_bench,
    versions,
)

# (name, module, the arguments `make bench` gives it). Every module runs its
# default 3 interleaved rounds; the counts per round are small enough for a few minutes in all.
SUITE: list[tuple[str, Any, list[str]]] = [
    ("stream", stream, ["--records", "600000"]),
    ("requests", requests, ["--duration", "2"]),
    ("batches", batches, ["--duration", "3", "--baseline-records", "300000"]),
    ("consume", consume, ["--per-partition", "25000"]),
    ("latency", latency, ["--duration", "3", "--probe-records", "300000"]),
    ("memory", memory, ["--stall", "1"]),
    ("workers", workers, ["--duration", "3"]),
    ("spool", spool, ["--records", "300000"]),
    ("edge", edge, ["--records", "300000"]),
    ("wire", wire, ["--records", "20000"]),
]

OUT_DIR = REPO / "bench" / "out"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [name for name, _, _ in SUITE]
    p.add_argument("--only", metavar="LIST", help=f"comma-separated subset of {','.join(names)}")
    p.add_argument("--bootstrap-servers", metavar="LIST",
                   help="use this (loopback) Kafka instead of embedded Tansu brokers")
    p.add_argument("--gateway-arg", action="append", metavar="ARG",
                   help="extra argument for every gateway's command line (repeatable)")
    p.add_argument("--keep-logs", action="store_true", help="keep every log directory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--json-out", default=str(OUT_DIR / "results.json"), metavar="FILE",
                   help="also write the JSON here ('' for nowhere; default bench/out/results.json)")
    p.add_argument("--plot", default=str(OUT_DIR / "bench.png"), metavar="FILE.png",
                   help="write the plot here ('' for none; default bench/out/bench.png)")
    return p


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    suite = SUITE
    if args.only:
        wanted = {x.strip() for x in args.only.split(",") if x.strip()}
        unknown = wanted - {name for name, _, _ in SUITE}
        if unknown:
            print(f"bench: unknown benchmark(s) {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        suite = [s for s in SUITE if s[0] in wanted]
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C stops the run (and the clean-up runs) even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    common: list[str] = []
    if args.bootstrap_servers:
        common += ["--bootstrap-servers", args.bootstrap_servers]
    for extra in args.gateway_arg or ():
        common.append(f"--gateway-arg={extra}")
    if args.keep_logs:
        common.append("--keep-logs")
    t0 = time.monotonic()
    summary: dict[str, Any] = {"benchmark": "bench", "machine": machine_info(), "versions": versions(),
                               "results": [], "errors": {}, "durations_s": {}}
    for name, module, extra in suite:
        margs = module.build_parser().parse_args(extra + common)
        check = getattr(module, "check_args", None) or getattr(module, "check_request_args", None)
        t1 = time.monotonic()
        if not args.json:
            print(f"== bench.{name} {' '.join(extra)}", flush=True)
        try:
            problem = check(margs) if check else None
            if problem:
                raise BenchError(problem)
            result = run_bench(f"bench.{name}", margs, module.run)
        except BenchError as exc:
            summary["errors"][name] = str(exc)
            print(f"bench.{name}: {exc}", file=sys.stderr, flush=True)
            continue
        except KeyboardInterrupt:
            print(f"bench: interrupted during bench.{name}", file=sys.stderr)
            return 130
        finally:
            summary["durations_s"][name] = round(time.monotonic() - t1, 1)
        summary["results"].append(result)
        if not args.json:
            module.print_table(result)
            print(f"(bench.{name} took {summary['durations_s'][name]:.0f} s)\n", flush=True)
    summary["total_s"] = round(time.monotonic() - t0, 1)
    verdicts = [v for r in summary["results"] for v in r["verdicts"]]
    summary["verdicts"] = verdicts
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        summary["plot"] = plot.write_plot(summary["results"], args.plot) if summary["results"] else None
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(summary, f)
    if args.json:
        print(json.dumps(summary))
    else:
        print_header(summary, f"== bench: the issue's targets, {len(summary['results'])} of "
                     f"{len(suite)} benchmarks in {summary['total_s']:.0f} s")
        print()
        print_verdicts(verdicts)
        for name, err in summary["errors"].items():
            print(f"bench.{name} FAILED to run: {err.splitlines()[0]}")
        warnings = [(r["benchmark"], w) for r in summary["results"] for w in r.get("warnings", [])]
        if warnings:
            print(f"\n{len(warnings)} warnings above (other load, or the gateway not saturated)")
        if args.json_out:
            print(f"results: {os.path.relpath(args.json_out)}")
        if summary.get("plot"):
            print(f"plot: {os.path.relpath(summary['plot'])}")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
