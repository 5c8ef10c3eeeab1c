"""The gateway's own per-request path, without sockets: CPU (and instructions) per request.

    .venv/bin/python -m bench.pathcost [--rounds N] [--requests N] [--instructions] [--profile]

One process runs the gateway's real request path: its ``Server`` (the endpoints, the producer
with librdkafka, the metadata cache, the access log on as by default, written to /dev/null) over
64 ``HttpProtocol`` connections whose transport is a stub that counts answers. An embedded Tansu
broker on a free port takes the records. Each request is one 100-byte BINARY record, v2
(``POST /topics/T``) or v3 with a ``Content-Length`` body; the 64 connections each get one
request, then the loop runs until every answer is out, as ``bench.requests``' 64 closed loops do
over sockets. What is measured is the event-loop thread's CPU (``time.thread_time``) per request,
the socket reads and writes left out: what ``bench.requests`` calls the gateway's own share,
plus the librdkafka calls made on the loop (produce, poll) that its reference (A) also makes.

- Default: ``--rounds`` interleaved rounds (v2, v3, v2, ...) of ``--requests`` requests per
  variant, median (min–max) of the rounds in µs of thread CPU per request.
- ``--instructions``: the same path under valgrind's callgrind (``apt-get install valgrind``),
  the event-loop thread's instructions per request, from the difference of two runs of 40 and
  140 batches of 64 requests (start-up and warm-up cancel out). Stable where CPU time is not:
  this is the figure to compare two versions of the code with.
- ``--profile``: cProfile of one run per variant (its overhead inflates every Python call): the
  functions called per request, with their own time, in the order of their cost.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import (
    BenchError,
    check_rounds,
    create_topics,
    fmt_spread,
    machine_info,
    spread,
    versions,
)

CONNECTIONS = 64
TOPIC = "pathcost"
VALUE = "QUFB" * 33  # 132 characters of base64: 99 bytes decoded (bench.requests' value size)


def request_bytes(variant: str, cluster_id: str) -> bytes:
    if variant == "v2":
        body = b'{"records":[{"value":"%s"}]}' % VALUE.encode()
        return (b"POST /topics/%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                b"application/vnd.kafka.binary.v2+json\r\nContent-Length: %d\r\n\r\n%s"
                % (TOPIC.encode(), len(body), body))
    body = b'{"value":{"type":"BINARY","data":"%s"}}' % VALUE.encode()
    return (b"POST /v3/clusters/%s/topics/%s/records HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
            b"application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (cluster_id.encode(), TOPIC.encode(), len(body), body))


class StubTransport:
    """What HttpProtocol needs of a transport; counts the answers (one write each)."""

    def __init__(self, counter: list[Any]) -> None:
        self._counter = counter
        self._closing = False

    def write(self, data: bytes) -> None:
        c = self._counter
        c[0] += 1
        if c[0] == c[1]:
            c[2].set()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    abort = close

    def get_write_buffer_size(self) -> int:
        return 0


async def run_path(bootstrap: str, cluster_id: str, plan: list[tuple[str, int]],
                   profile: cProfile.Profile | None = None) -> list[tuple[str, float]]:
    """Serve ``plan`` (variant, batches of 64 requests) in order; the thread CPU µs per request
    of each step (after one warm-up batch of 20 per variant)."""
    from gateway.app import admin_config, producer_config
    from gateway.config import Config
    from gateway.http.protocol import HttpProtocol
    from gateway.kafka.health import ClusterHealth
    from gateway.kafka.metadata import MetadataCache
    from gateway.kafka.producer import KafkaProducer
    from gateway.server import Server

    loop = asyncio.get_running_loop()
    cfg = Config()
    cluster = ClusterHealth()
    metadata = MetadataCache(admin_config(cfg, bootstrap), loop, health=cluster)
    producer = KafkaProducer(producer_config(cfg, bootstrap), loop, health=cluster)
    await metadata.refresh()
    metadata.start()
    producer.start()
    server = Server(cfg, loop, producer, metadata, None, cluster)
    counter: list[Any] = [0, 0, None]
    conns = []
    for _ in range(CONNECTIONS):
        proto = HttpProtocol(server)
        proto.connection_made(StubTransport(counter))  # type: ignore[arg-type]
        conns.append(proto)
    requests = {v: request_bytes(v, cluster_id) for v in ("v2", "v3")}

    async def batch(req: bytes) -> None:
        counter[1] = counter[0] + CONNECTIONS
        counter[2] = done = asyncio.Event()
        n = len(req)
        for proto in conns:
            proto.get_buffer(-1)[:n] = req
            proto.buffer_updated(n)
        await asyncio.wait_for(done.wait(), 60)

    for variant, _ in plan:
        for _ in range(20):
            await batch(requests[variant])
    out = []
    try:
        for variant, batches in plan:
            req = requests[variant]
            t0 = time.thread_time()
            if profile is not None:
                profile.enable()
            for _ in range(batches):
                await batch(req)
            if profile is not None:
                profile.disable()
            out.append((variant, (time.thread_time() - t0) / (batches * CONNECTIONS) * 1e6))
    finally:
        producer.close()
        metadata.close()
    return out


def serve(bootstrap: str, cluster_id: str, plan: list[tuple[str, int]],
          profile: cProfile.Profile | None = None) -> list[tuple[str, float]]:
    import uvloop

    from gateway import log as gateway_log

    # The access log on, as by default, its lines written to /dev/null (the handler keeps the
    # stream it was made with).
    devnull = open(os.devnull, "w")
    saved, sys.stderr = sys.stderr, devnull
    try:
        gateway_log.configure("warning", access_log=True)
    finally:
        sys.stderr = saved
    try:
        return uvloop.run(run_path(bootstrap, cluster_id, plan, profile))
    finally:
        gateway_log.configure("warning", access_log=False)
        devnull.close()


def instructions(bootstrap: str, cluster_id: str, variant: str) -> float:
    """Event-loop thread instructions per request under callgrind (difference of two runs)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise BenchError("--instructions needs valgrind (apt-get install -y valgrind)")
    totals = []
    with tempfile.TemporaryDirectory(prefix="bench-pathcost-") as tmp:
        for batches in (40, 140):
            out = os.path.join(tmp, f"cg-{batches}.out")
            cmd = [valgrind, "--tool=callgrind", "--separate-threads=yes",
                   f"--callgrind-out-file={out}", sys.executable, "-m", "bench.pathcost",
                   "--child", bootstrap, cluster_id, variant, str(batches)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise BenchError(f"callgrind run failed:\n{proc.stderr[-2000:]}")
            with open(out + "-01") as f:  # thread 1: the event loop
                m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
            if m is None:
                raise BenchError(f"no instruction total in {out}-01")
            totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) / (100 * CONNECTIONS)


def print_profile(prof: cProfile.Profile, requests: int) -> None:
    stats = pstats.Stats(prof)
    rows = []
    for (path, line, name), (_cc, calls, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if calls >= requests // 2:
            where = "built-in" if path == "~" else os.path.relpath(path) if path.startswith("/") else path
            rows.append((own / requests * 1e6, calls / requests, f"{where}:{line} {name}"))
    rows.sort(reverse=True)
    print(f"  {sum(r[1] for r in rows):.0f} calls per request (functions called at least every "
          "other request); own time under cProfile, µs per request:")
    for own, calls, what in rows:
        print(f"  {own:6.2f}  {calls:5.2f}/req  {what}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.pathcost", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--requests", type=int, default=32000, help="requests per variant and round "
                   "(default 32000, in batches of 64)")
    p.add_argument("--instructions", action="store_true", help="instructions per request under "
                   "callgrind instead of CPU time (a few minutes)")
    p.add_argument("--profile", action="store_true", help="cProfile of one run per variant")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timeout", type=float, default=60.0, help="limit of the broker's start")
    p.add_argument("--child", nargs=4, metavar=("BOOTSTRAP", "CLUSTER", "VARIANT", "BATCHES"),
                   help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        bootstrap, cluster_id, variant, batches = args.child
        serve(bootstrap, cluster_id, [(variant, int(batches))])
        return 0
    problem = check_rounds(args.rounds)
    if problem:
        print(f"bench.pathcost: {problem}", file=sys.stderr)
        return 2
    from gateway.kafka.embedded import EmbeddedBroker, find_free_port

    with tempfile.TemporaryDirectory(prefix="bench-pathcost-") as tmp:
        broker = EmbeddedBroker("127.0.0.1", find_free_port(), log_path=os.path.join(tmp, "tansu.log"))
        broker.start(timeout=args.timeout)
        try:
            cluster_id = create_topics(broker.bootstrap, [TOPIC], 6, args.timeout)
            return report(args, broker.bootstrap, cluster_id)
        except BenchError as exc:
            print(f"bench.pathcost: {exc}", file=sys.stderr)
            return 1
        finally:
            broker.stop()


def report(args: argparse.Namespace, bootstrap: str, cluster_id: str) -> int:
    result: dict[str, Any] = {"machine": machine_info(), "versions": versions()}
    head = ("bench.pathcost: the gateway's request path in one process, no sockets: 64 "
            "connections, one 100-byte BINARY record per request, access log on")
    if args.instructions:
        counts = {v: instructions(bootstrap, cluster_id, v) for v in ("v2", "v3")}
        result["instructions_per_request"] = counts
        if args.json:
            print(json.dumps(result))
            return 0
        print(head)
        for v, n in counts.items():
            print(f"{v}: {n:,.0f} instructions per request on the event-loop thread (callgrind)")
        return 0
    batches = max(1, args.requests // CONNECTIONS)
    if args.profile:
        for v in ("v2", "v3"):
            prof = cProfile.Profile()
            serve(bootstrap, cluster_id, [(v, batches)], prof)
            print(f"{v}:")
            print_profile(prof, batches * CONNECTIONS)
        return 0
    plan = [(v, batches) for _ in range(args.rounds) for v in ("v2", "v3")]
    figures: dict[str, list[float]] = {"v2": [], "v3": []}
    for v, us in serve(bootstrap, cluster_id, plan):
        figures[v].append(us)
    result["us_per_request"] = {v: spread(xs) for v, xs in figures.items()}
    result["rounds"] = figures
    if args.json:
        print(json.dumps(result))
        return 0
    m = result["machine"]
    print(head)
    print(f"machine: {m.get('nproc')} CPUs, {m.get('cpu_model')}; {args.rounds} interleaved rounds of "
          f"{batches * CONNECTIONS:,} requests per variant; median (min–max)")
    for v in ("v2", "v3"):
        print(f"{v}: {fmt_spread(result['us_per_request'][v], '.1f')} µs of event-loop CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
