"""CPU per record of the producer half: confluent-kafka's Producer against RdProducer.

    .venv/bin/python -m bench.rdproducer [--records N] [--value-bytes B] [--json] ...

Issue 4's streaming target is gateway CPU per record no higher than a plain confluent-kafka
``produce()`` loop's. This measures the piece RdProducer replaces, producer + delivery reports,
with no HTTP and no JSON, four ways, each in its own child process against the same broker in
the same run (a fresh topic each):

  ck-shared   confluent_kafka.Producer: produce(topic, value) + poll(0) per record, one
              on_delivery for every record (bench.stream's baseline: the issue's reference)
  ck-partial  the same with a functools.partial callback per record, as ProduceSession does
  ck-partial-1024
              the same, poll(0) every 1024 records: today's gateway (a callback per record,
              polls on a timer), at rd-python's polling cadence
  rd-python   RdProducer.produce() per record from Python; poll() every 1024 records (and on
              QUEUE_FULL); reports read as column views, no object per record
  rd-c-loop   RdProducer._produce_many(): the produce calls from a C loop, 1024 at a time --
              the floor a splitter fused with the producer could reach

Figures: records/s over first produce -> last report; CPU µs per record of the whole process
(the producing thread and librdkafka's threads) and of the producing thread alone (what the
event loop would pay); the broker's CPU per record. Same librdkafka settings as the gateway
(gateway.kafka.producer.DEFAULT_PRODUCER_CONFIG). Phases run one after another on an embedded
Tansu broker on a free loopback port (or --bootstrap-servers), each bounded by --timeout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG

PHASES = ("ck-shared", "ck-partial", "ck-partial-1024", "rd-python", "rd-c-loop")
VALUE_SEED = 20261121
CHUNK = 1024  # rd-*: records between two poll() calls
CLK_TCK = os.sysconf("SC_CLK_TCK")

HELP_EPILOG = """\
Memory: the embedded Tansu broker keeps every record in memory (about 110 bytes of RSS per
100-byte record): the default run (4 phases x 1,000,000 records plus warm-ups) holds ~450 MB
until it stops at the end of the run.

CPU is getrusage(): RUSAGE_SELF for the process (all threads, librdkafka's included) and
RUSAGE_THREAD for the producing thread, over first produce -> last delivery report. The
producer, its librdkafka threads and the broker share the machine's cores.
"""


class BenchError(Exception):
    """The run could not produce figures; the message says why."""


def cpu_ticks(pid: int) -> int:
    """utime + stime of a whole process, in clock ticks (proc(5))."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    rest = data[data.rindex(b")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def cpu_now() -> tuple[float, float]:
    """(process CPU s, this thread's CPU s)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    t = resource.getrusage(resource.RUSAGE_THREAD)
    return s.ru_utime + s.ru_stime, t.ru_utime + t.ru_stime


# -- the child: one phase ----------------------------------------------------------------------


def _ck_phase(params: dict[str, Any], value: bytes) -> dict[str, Any]:
    from confluent_kafka import Producer

    n, topic, phase = params["records"], params["topic"], params["phase"]
    per_record = phase.startswith("ck-partial")
    poll_mask = CHUNK - 1 if phase == "ck-partial-1024" else 0
    deadline = time.monotonic() + params["timeout"]
    counts = {"ok": 0, "failed": 0}

    def on_delivery(err: Any, msg: Any) -> None:
        counts["failed" if err is not None else "ok"] += 1

    def on_delivery_seq(seq: int, err: Any, msg: Any) -> None:
        counts["failed" if err is not None else "ok"] += 1

    conf = dict(DEFAULT_PRODUCER_CONFIG, **{"bootstrap.servers": params["bootstrap"]})
    if not per_record:
        conf["on_delivery"] = on_delivery
    producer = Producer(conf)
    produce, poll = producer.produce, producer.poll
    for _ in range(params["warmup"]):
        produce(topic, value)
    if producer.flush(params["timeout"]) or counts["failed"]:
        raise BenchError(f"warm-up failed: {counts}")
    counts["ok"] = 0
    queue_full = 0

    cpu0, thread0 = cpu_now()
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                if per_record:
                    # Positional, as ProduceSession calls it: (topic, value, key, partition,
                    # on_delivery).
                    produce(topic, value, None, -1, functools.partial(on_delivery_seq, i))
                else:
                    produce(topic, value)
                break
            except BufferError:  # queue.buffering.max.messages: serve reports, retry
                queue_full += 1
                poll(0.1)
        if not i & poll_mask:
            poll(0)
        if not i & 0xFFFF and time.monotonic() > deadline:
            raise BenchError(f"timed out at record {i}")
    t_loop = time.perf_counter()
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    t1 = time.perf_counter()
    cpu1, thread1 = cpu_now()
    if left:
        raise BenchError(f"{left} records still outstanding at the deadline")
    return {"ok": counts["ok"], "failed": counts["failed"], "queue_full": queue_full,
            "wall_s": t1 - t0, "produce_loop_s": t_loop - t0,
            "cpu_s": cpu1 - cpu0, "thread_cpu_s": thread1 - thread0}


def _rd_phase(params: dict[str, Any], value: bytes) -> dict[str, Any]:
    from gateway._speedups import RdProducer

    n, c_loop = params["records"], params["phase"] == "rd-c-loop"
    deadline = time.monotonic() + params["timeout"]
    p = RdProducer(dict(DEFAULT_PRODUCER_CONFIG, **{"bootstrap.servers": params["bootstrap"]}))
    t = p.topic(params["topic"])
    fd = p.event_fd
    counts = {"ok": 0, "failed": 0}
    full = RdProducer.ERR_QUEUE_FULL

    def drain() -> None:
        got = p.poll()
        if got:
            cols = p.reports()
            err = cols[4]
            # All-zero error column <=> every record delivered; no object per record.
            if err.tobytes().strip(b"\0"):
                bad = sum(1 for e in err.tolist() if e)
                counts["failed"] += bad
                counts["ok"] += got - bad
            else:
                counts["ok"] += got
            for c in cols:
                c.release()

    def wait_all(total: int) -> None:
        while counts["ok"] + counts["failed"] < total:
            if time.monotonic() > deadline:
                raise BenchError(f"{counts} of {total} reported at the deadline")
            select.select([fd], [], [], 0.1)
            drain()

    produce = p.produce
    for i in range(params["warmup"]):
        if produce(t, -1, None, value, None, 0, i):
            raise BenchError("warm-up produce failed")
    wait_all(params["warmup"])
    if counts["failed"]:
        raise BenchError(f"warm-up failed: {counts}")
    counts["ok"] = 0
    queue_full = 0

    cpu0, thread0 = cpu_now()
    t0 = time.perf_counter()
    i = 0
    if c_loop:
        produce_many = p._produce_many
        while i < n:
            done, err = produce_many(t, -1, value, min(CHUNK, n - i), i)
            i += done
            if err:
                if err != full:
                    raise BenchError(f"produce: {RdProducer.error_name(err)}")
                queue_full += 1
                select.select([fd], [], [], 0.1)
            drain()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out at record {i}")
    else:
        while i < n:
            err = produce(t, -1, None, value, None, 0, i)
            if err:
                if err != full:
                    raise BenchError(f"produce: {RdProducer.error_name(err)}")
                queue_full += 1
                select.select([fd], [], [], 0.1)
                drain()
                continue
            i += 1
            if not i & (CHUNK - 1):
                drain()
                if not i & 0xFFFF and time.monotonic() > deadline:
                    raise BenchError(f"timed out at record {i}")
    t_loop = time.perf_counter()
    wait_all(n)
    t1 = time.perf_counter()
    cpu1, thread1 = cpu_now()
    lost = p.lost_reports
    p.close(1000)
    if lost:
        raise BenchError(f"{lost} reports lost (a bug)")
    return {"ok": counts["ok"], "failed": counts["failed"], "queue_full": queue_full,
            "wall_s": t1 - t0, "produce_loop_s": t_loop - t0,
            "cpu_s": cpu1 - cpu0, "thread_cpu_s": thread1 - thread0}


def child(params: dict[str, Any]) -> int:
    value = random.Random(VALUE_SEED).randbytes(params["value_bytes"])
    broker_pid = params.get("broker_pid")
    try:
        b0 = cpu_ticks(broker_pid) if broker_pid else None
        run = _ck_phase if params["phase"].startswith("ck-") else _rd_phase
        out = run(params, value)
        if b0 is not None:
            out["broker_cpu_s"] = (cpu_ticks(broker_pid) - b0) / CLK_TCK
    except BenchError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(out))
    return 0


# -- the parent: broker, topics, phases, table ---------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 15.0) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=timeout)[name].result(timeout)
    deadline = time.monotonic() + timeout
    while True:  # a full listing: a per-topic request could auto-create on Tansu
        topic = admin.list_topics(timeout=timeout).topics.get(name)
        if topic is not None and len(topic.partitions) == partitions and all(
            p.leader >= 0 for p in topic.partitions.values()
        ):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"topic {name} not ready after {timeout} s")
        time.sleep(0.05)


def run_phase(phase: str, bootstrap: str, broker_pid: int | None, args: argparse.Namespace,
              log_dir: str) -> dict[str, Any]:
    topic = f"bench-rdproducer-{phase}-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, args.partitions)
    params = {"phase": phase, "bootstrap": bootstrap, "topic": topic, "records": args.records,
              "value_bytes": args.value_bytes, "warmup": args.warmup, "timeout": args.timeout,
              "broker_pid": broker_pid}
    log_path = os.path.join(log_dir, f"{phase}.log")
    with open(log_path, "wb") as log:
        try:
            r = subprocess.run(
                [sys.executable, "-m", "bench.rdproducer", "--child", json.dumps(params)],
                stdout=subprocess.PIPE, stderr=log, timeout=args.timeout + 30, check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{phase}: no result within {args.timeout + 30:g} s "
                             f"(log: {log_path})") from None
    lines = r.stdout.decode().strip().splitlines()
    if not lines:
        raise BenchError(f"{phase}: exited with {r.returncode} and no result (log: {log_path})")
    res: dict[str, Any] = json.loads(lines[-1])
    if "error" in res:
        raise BenchError(f"{phase}: {res['error']} (log: {log_path})")
    if res["ok"] != args.records or res["failed"]:
        raise BenchError(f"{phase}: {res['ok']} delivered, {res['failed']} failed "
                         f"of {args.records}")
    n = args.records
    res["records_per_s"] = n / res["wall_s"]
    res["cpu_us_per_record"] = res["cpu_s"] / n * 1e6
    res["thread_cpu_us_per_record"] = res["thread_cpu_s"] / n * 1e6
    if res.get("broker_cpu_s") is not None:
        res["broker_cpu_us_per_record"] = res["broker_cpu_s"] / n * 1e6
    return res


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds (CPU also its range): a 2-core machine is noisy."""
    out: dict[str, Any] = {"rounds": len(runs)}
    for key in ("records_per_s", "cpu_us_per_record", "thread_cpu_us_per_record",
                "broker_cpu_us_per_record"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
        if values:
            out[key + "_range"] = [min(values), max(values)]
    out["queue_full"] = sum(r["queue_full"] for r in runs)
    out["runs"] = runs
    return out


def print_table(result: dict[str, Any]) -> None:
    phases = result["phases"]
    base = phases.get("ck-shared")
    rounds = max(r["rounds"] for r in phases.values())
    print(f"{result['records']:,} records of {result['value_bytes']} bytes, "
          f"{result['partitions']} partitions, librdkafka {result['versions']['librdkafka']}, "
          f"{result['machine']['nproc']} CPUs ({result['machine']['cpu_model']})"
          + (f"; medians of {rounds} rounds" if rounds > 1 else ""))
    head = ("phase", "records/s", "CPU µs/rec", "(range)", "loop-thread µs/rec",
            "broker µs/rec", "vs ck-shared", "queue full")
    rows = []
    for name, r in phases.items():
        ratio = (f"{r['cpu_us_per_record'] / base['cpu_us_per_record']:.2f}x"
                 if base and name != "ck-shared" else "-")
        broker = r.get("broker_cpu_us_per_record")
        lo, hi = r["cpu_us_per_record_range"]
        rows.append((name, f"{r['records_per_s']:,.0f}", f"{r['cpu_us_per_record']:.2f}",
                     f"{lo:.2f}-{hi:.2f}", f"{r['thread_cpu_us_per_record']:.2f}",
                     "-" if broker is None else f"{broker:.2f}", ratio, f"{r['queue_full']:,}"))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w)
                        for i, (x, w) in enumerate(zip(row, widths, strict=True))))
    print("CPU µs/rec: the whole producing process (its thread + librdkafka's threads); "
          "loop-thread: the producing thread alone.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.rdproducer", description=__doc__.split("\n\n")[0],
        epilog=HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--value-bytes", type=int, default=100)
    p.add_argument("--warmup", type=int, default=20_000)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma-separated, in order (default {','.join(PHASES)})")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the phase list this many times, interleaved; report medians")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per phase")
    p.add_argument("--bootstrap-servers", help="a running cluster instead of embedded Tansu")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--child", metavar="PARAMS", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child(json.loads(args.child))
    phases = [x for x in args.phases.split(",") if x]
    unknown = set(phases) - set(PHASES)
    if unknown or args.records < 1 or args.value_bytes < 0 or args.rounds < 1:
        p.error(f"bad arguments: unknown phases {sorted(unknown)}" if unknown
                else "records >= 1, value-bytes >= 0 and rounds >= 1")

    import confluent_kafka

    from gateway._speedups import RdProducer
    from gateway.kafka.embedded import EmbeddedBroker, find_free_port

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         model)
    except OSError:
        pass
    result: dict[str, Any] = {
        "records": args.records, "value_bytes": args.value_bytes,
        "partitions": args.partitions, "phases": {},
        "versions": {"python": platform.python_version(),
                     "confluent_kafka": confluent_kafka.version()[0],
                     "librdkafka": RdProducer.librdkafka_version()[1]},
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu_model": model,
                    "loadavg_1m_at_start": os.getloadavg()[0]},
        "producer_config": DEFAULT_PRODUCER_CONFIG,
    }
    log_dir = tempfile.mkdtemp(prefix="bench-rdproducer-")
    broker = None
    try:
        if args.bootstrap_servers:
            bootstrap, broker_pid = args.bootstrap_servers, None
        else:
            broker = EmbeddedBroker("127.0.0.1", find_free_port(),
                                    log_path=os.path.join(log_dir, "tansu.log"))
            broker.start(timeout=20.0)
            bootstrap, broker_pid = broker.bootstrap, broker.pid
        runs: dict[str, list[dict[str, Any]]] = {phase: [] for phase in phases}
        for rnd in range(args.rounds):
            for phase in phases:
                print(f"round {rnd + 1}/{args.rounds}: {phase} ...", file=sys.stderr, flush=True)
                runs[phase].append(run_phase(phase, bootstrap, broker_pid, args, log_dir))
        result["phases"] = {phase: summarise(rs) for phase, rs in runs.items()}
    except BenchError as exc:
        print(f"bench.rdproducer: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if broker is not None:
            broker.stop()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
