"""``kafka-gateway loadgen URL`` (also ``python -m gateway.loadgen URL``): the command line."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from gateway.loadgen import plot, report
from gateway.loadgen.engine import Engine, Settings
from gateway.loadgen.http import Target, TargetUnusable, UsageError
from gateway.loadgen.modes import make_clients
from gateway.loadgen.records import MAX_KEYS

DEFAULT_CONNECTIONS = {"stream": 4, "unary": 64, "batch": 16, "consume": 1}
DEFAULT_DURATION = 10.0

DESCRIPTION = """\
Load generator for kafka-gateway and any server of the same API (Confluent's REST Proxy):
sends records to TOPIC through URL, the REST proxy's base URL with an optional path prefix
(http[s]://[NAME:PASSWORD@]HOST[:PORT][/PREFIX]), and measures what comes back.
"""

EPILOG = """\
modes:
  stream   v3 streaming produce: each connection holds one long POST
           {prefix}/v3/clusters/{cluster}/topics/{topic}/records with a chunked body of
           records, and reads the in-order delivery reports on the same connection while it
           writes. At most --window records are in flight per connection. When the server
           ends a stream early (e.g. its maximum stream duration), the records it did not take
           fail with the code of its last report and a new stream goes on.
  unary    v3 produce, one record per request (Content-Length, keep-alive), one request in
           flight per connection.
  batch    v2 produce: POST {prefix}/topics/{topic}, Content-Type
           application/vnd.kafka.binary.v2+json, --batch records per request; an offsets
           entry with an error_code is a failed record.
  consume  v2 consumer instances (one per connection, in the group --group, from the
           earliest offset): GET .../records?timeout=1000 in a loop. Acked = records received;
           latency = each read's round trip, counted once per record it brought; a failure is
           a failed read. The instances are deleted at the end (also on errors and Ctrl-C).

records:
  Every record has a value of --record-bytes printable bytes (BINARY, base64 on the wire)
  and, with --keys K > 0, the STRING key "k" + a zero-padded number that walks all K keys
  (a different one for consecutive records): K keys spread over the partitions as K real
  keys would. All records have the same length.

bounds and rate:
  --records and --duration bound the measured run; without either, --duration 10; with both,
  whichever comes first. The --warmup seconds before it are extra load, not in any figure
  (nor in --records). Without --rate the load is closed loop: each connection sends as fast
  as its answers (and --window) allow, and a record's latency counts from when it was
  written. With --rate R, the R records/s are scheduled over the connections (open loop):
  a record's latency counts from its scheduled time, so time it spent waiting to be sent
  (window full, socket full, loadgen late) counts too (no coordinated omission).

latency:
  From a record's intended send time to the arrival of its report (the kernel's receive
  timestamp of those bytes, SO_TIMESTAMPNS), in a log-bucket histogram of 1 µs resolution and
  under 1% error, for reports of every kind (failures too). With --rate and --latency-from
  written, from when the record was written to the socket instead: the target's share alone,
  for comparing it with another target or with a plain Kafka producer.

output:
  A progress line a second on stderr (unless --no-progress), then a summary table on stdout,
  or with --json one JSON object (the figures, the options, the per-second samples, the
  first failure messages). The loadgen's own CPU time per acknowledged record is among them.
  After the run ends (bound reached, or Ctrl-C / SIGTERM: sending stops, outstanding
  reports are waited for 2 s at most), records still without an answer after --drain-timeout
  are failures with the code "unanswered".

exit status:
  0  the run completed with at most --max-failures failed records
  1  more failed records than --max-failures (failures are counted by error_code: the
     in-stream report's, the error body's, else the HTTP status; "disconnected" when a
     connection broke with records outstanding; "unanswered" at the end)
  2  a usage error, or the target unusable from the start (connection refused, TLS failure,
     401, no cluster to be found)
"""


def int_from(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return v

    return parse


positive_int = int_from(1)
non_negative_int = int_from(0)


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kafka-gateway loadgen",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", metavar="URL", help="the REST proxy's base URL, e.g. http://127.0.0.1:8082")
    p.add_argument("--topic", required=True, help="the topic to produce to (consume: to read)")
    p.add_argument("--mode", choices=("stream", "unary", "batch", "consume"), default="stream",
                   help="what kind of load (below; default stream)")
    g = p.add_argument_group("bounds and rate")
    g.add_argument("--records", type=positive_int, metavar="N",
                   help="send N measured records (consume: receive N), then stop")
    g.add_argument("--duration", type=positive_float, metavar="S",
                   help=f"send for S measured seconds (default {DEFAULT_DURATION:g} when "
                        "--records is not given)")
    g.add_argument("--rate", type=positive_float, metavar="R",
                   help="open loop: R records/s in total over the connections (default: "
                        "closed loop, as fast as it goes; not for consume)")
    g.add_argument("--latency-from", choices=("intended", "written"), default="intended",
                   help="open loop: a record's latency starts at its scheduled send time "
                        "(intended, the default: no coordinated omission) or when it was "
                        "written (written: what the target adds, without the loadgen's own "
                        "lateness)")
    g.add_argument("--warmup", type=non_negative_float, default=1.0, metavar="S",
                   help="seconds of load before measuring, left out of every figure (default 1)")
    g.add_argument("--drain-timeout", type=non_negative_float, default=30.0, metavar="S",
                   help="after the bound, wait this long at most for outstanding reports; "
                        "records still unanswered fail as \"unanswered\" (default 30)")
    g.add_argument("--max-failures", type=non_negative_int, default=0, metavar="F",
                   help="exit 1 when more than F records failed (default 0)")
    g = p.add_argument_group("load shape")
    g.add_argument("--connections", type=positive_int, metavar="C",
                   help="connections (default: stream 4, unary 64, batch 16, consume 1)")
    g.add_argument("--window", type=positive_int, default=10000, metavar="W",
                   help="stream: records in flight per connection at most; also bounds the "
                        "loadgen's memory (default 10000)")
    g.add_argument("--batch", type=positive_int, default=100, metavar="B",
                   help="batch: records per v2 request (default 100)")
    g.add_argument("--record-bytes", type=non_negative_int, default=100, metavar="N",
                   help="value size in bytes, before base64 (default 100)")
    g.add_argument("--keys", type=non_negative_int, default=1000, metavar="K",
                   help=f"distinct keys, 0 for records without a key (default 1000, at most "
                        f"{MAX_KEYS})")
    g = p.add_argument_group("target")
    g.add_argument("--cluster-id", metavar="ID",
                   help="the cluster id of the v3 paths (default: the first of GET /v3/clusters)")
    g.add_argument("--group", metavar="NAME",
                   help="consume: the consumer group (default loadgen-<pid>)")
    g.add_argument("--user", metavar="NAME:PASSWORD",
                   help="HTTP Basic credentials (also from the URL's NAME:PASSWORD@)")
    g.add_argument("--cacert", metavar="FILE",
                   help="https: trust the CA certificates in this PEM file")
    g.add_argument("--insecure", action="store_true",
                   help="https: do not verify the server's certificate")
    g = p.add_argument_group("output")
    g.add_argument("--json", action="store_true",
                   help="print the result as one JSON object instead of the table")
    g.add_argument("--plot", metavar="FILE.png",
                   help="also draw the per-second samples into this PNG (needs matplotlib: "
                        "pip install 'kafka-gateway[loadgen]')")
    g.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    mode = args.mode
    if mode == "consume" and args.rate is not None:
        raise UsageError("--rate does not apply to --mode consume")
    if args.keys > MAX_KEYS:
        raise UsageError(f"--keys must be at most {MAX_KEYS}")
    duration = args.duration
    if duration is None and args.records is None:
        duration = DEFAULT_DURATION
    return Settings(
        mode=mode,
        topic=args.topic,
        records=args.records,
        duration=duration,
        connections=args.connections or DEFAULT_CONNECTIONS[mode],
        batch=args.batch,
        record_bytes=args.record_bytes,
        keys=args.keys,
        rate=args.rate,
        window=args.window,
        warmup=args.warmup,
        drain_timeout=args.drain_timeout,
        cluster_id=args.cluster_id,
        group=args.group or f"loadgen-{os.getpid()}",
        latency_from=args.latency_from,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with argparse's message on a usage error
    try:
        settings = settings_from(args)
        target = Target.parse(args.url, args.user, args.cacert, args.insecure)
    except UsageError as exc:
        print(f"kafka-gateway loadgen: {exc}", file=sys.stderr)
        return 2
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # Refused before any load is sent, not after a long run.
        print(f"kafka-gateway loadgen: {plot.MISSING}", file=sys.stderr)
        return 2
    progress = None if args.no_progress else report.Progress(sys.stderr)
    engine = Engine(settings, target, make_clients,
                    progress.update if progress is not None else None)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        engine.interrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = engine.run()
    except TargetUnusable as exc:
        if progress is not None:
            progress.close()
        print(f"kafka-gateway loadgen: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if progress is not None:
        progress.close()
    if args.json:
        report.write_json(result, sys.stdout)
    else:
        report.print_summary(result, sys.stdout)
    if args.plot:
        plot.write_plot(result, args.plot)  # (matplotlib is imported only here)
    sys.stdout.flush()
    return 1 if result.failures > args.max_failures else 0
