"""The same-run baselines: plain confluent-kafka client loops, in a child process of their own.

    python -m bench.baseline '<json params>'     (started by the benchmarks, not by hand)

- ``produce``: N records as fast as the plain producer loop goes (``produce()`` +
  ``poll(0)``, then ``flush()``), with the gateway's librdkafka settings (docs/api.md §5), so
  that a comparison is about the HTTP path. CPU µs per record of the whole child process.
- ``rate``: records at a fixed rate for a fixed time, ``poll()`` waiting between ticks;
  the latency of each record is its delivery callback's time minus its ``produce()`` time.
- ``clients``: N closed-loop clients over one producer (one record in flight each, the next
  produced once its delivery report is in and the schedule says one is due), paced to a rate
  for a fixed time: bench.requests's "the same pattern without HTTP".
- ``consume``: every record of a topic read back with ``assign()`` + ``consume(count)``.

The child prints one JSON line of results; the parent adds per-record figures.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    CLK_TCK,
    REPO,
    BenchError,
    child_preexec,
    cpu_ticks,
    log_tail,
    machine_busy_ticks,
    rss_mb,
    thread_cpu,
    value_bytes,
)
from gateway.kafka.producer import DEFAULT_PRODUCER_CONFIG

# The baseline producer uses exactly the gateway's librdkafka defaults (docs/api.md §5).
PRODUCER_SETTINGS: dict[str, Any] = dict(DEFAULT_PRODUCER_CONFIG)
SERIES_EVERY = 0.1  # seconds between throughput samples


class _Window:
    """CPU and wall clock of this process, the broker and the machine over one interval."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.broker0 = cpu_ticks(broker_pid) if broker_pid is not None else None
        self.machine0 = machine_busy_ticks()
        self.ticks0 = cpu_ticks()
        self.t0 = time.perf_counter()

    def close(self) -> dict[str, Any]:
        t1 = time.perf_counter()
        ticks = cpu_ticks() - self.ticks0
        broker = cpu_ticks(self.broker_pid) - self.broker0 if self.broker0 is not None else None
        machine = machine_busy_ticks() - self.machine0
        wall = t1 - self.t0
        return {
            "wall_s": wall,
            "cpu_s": ticks / CLK_TCK,
            "broker_cpu_s": broker / CLK_TCK if broker is not None else None,
            "machine_busy_cores": machine / CLK_TCK / wall,
            "other_load_cores": max(0, machine - ticks - (broker or 0)) / CLK_TCK / wall,
            "t_end": t1,
        }


def _producer(params: dict[str, Any], on_delivery: Any) -> Any:
    from confluent_kafka import Producer

    conf = dict(PRODUCER_SETTINGS, **{"bootstrap.servers": params["bootstrap"]})
    if on_delivery is not None:
        conf["on_delivery"] = on_delivery
    return Producer(conf)


def _produce(params: dict[str, Any]) -> dict[str, Any]:
    n, topic, timeout = params["records"], params["topic"], params["timeout"]
    value = value_bytes(params["value_bytes"])
    deadline = time.monotonic() + timeout
    delivered = failed = 0
    errors: collections.Counter[str] = collections.Counter()

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1
            errors[str(err)] += 1

    producer = _producer(params, on_delivery)
    produce, poll = producer.produce, producer.poll
    t_warm = time.monotonic()
    for _ in range(max(1, params["warmup"])):
        produce(topic, value)
    if producer.flush(timeout) or failed:
        return {"error": f"warm-up failed: {dict(errors)}"}
    warmup_s = time.monotonic() - t_warm
    delivered = 0
    buffer_full = 0
    series: list[tuple[float, int]] = []
    window = _Window(params["broker_pid"])
    t0 = window.t0
    next_sample = t0 + SERIES_EVERY
    clock = time.perf_counter
    for i in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # queue.buffering.max.messages reached: serve reports
                buffer_full += 1
                poll(0.1)
        poll(0)
        if not i & 0x3FF:
            now = clock()
            if now >= next_sample:
                series.append((round(now - t0, 4), delivered))
                next_sample = now + SERIES_EVERY
            if not i & 0xFFFF and time.monotonic() > deadline:
                return {"error": f"timed out after {timeout:g} s at record {i}"}
    t_produced = time.perf_counter()
    left = producer.flush(max(0.0, deadline - time.monotonic()))
    out = window.close()
    series.append((round(out["t_end"] - t0, 4), delivered))
    out.update(
        records=n, delivered=delivered, failed=failed, errors=dict(errors), unflushed=left,
        produce_loop_s=t_produced - t0, buffer_full=buffer_full, warmup_s=warmup_s,
        rss_mb_after=rss_mb(), series=series,
    )
    return out


def _rate(params: dict[str, Any]) -> dict[str, Any]:
    """Fixed rate for a fixed time; latency = delivery callback time - produce() time."""
    topic, rate, duration = params["topic"], params["rate"], params["duration"]
    value = value_bytes(params["value_bytes"])
    clock = time.perf_counter
    lat: list[float] = []  # one entry per delivered record (ms)
    failed = 0

    def callback_for(t_sent: float) -> Any:
        # One closure per tick, shared by the records sent in it (like one HTTP chunk).
        def on_delivery(err: Any, msg: Any) -> None:
            nonlocal failed
            if err is None:
                lat.append((clock() - t_sent) * 1000)
            else:
                failed += 1
        return on_delivery

    producer = _producer(params, None)
    produce, poll = producer.produce, producer.poll
    for _ in range(max(1, params["warmup"])):
        produce(topic, value)
    if producer.flush(params["timeout"]):
        return {"error": "warm-up not flushed"}
    window = _Window(params["broker_pid"])
    t0 = window.t0
    sent = 0
    end = t0 + duration
    tick = params["tick"]
    next_tick = t0
    late_ticks = 0
    while True:
        now = clock()
        if now >= end:
            break
        due = int((now - t0) * rate) - sent
        if due > 0:
            cb = callback_for(now)
            for _ in range(due):
                while True:
                    try:
                        produce(topic, value, on_delivery=cb)
                        break
                    except BufferError:
                        poll(0.001)
            sent += due
        # Serve delivery reports until the next tick (the gateway's stream reader waits for
        # its reports the same way, in poll()).
        next_tick += tick
        wait = next_tick - clock()
        if wait < -tick:
            late_ticks += 1
            next_tick = clock()
        poll(max(0.0, wait))
    left = producer.flush(params["timeout"])
    out = window.close()
    lat.sort()
    out.update(records=sent, delivered=len(lat), failed=failed, unflushed=left,
               latency_ms=_percentiles(lat), send_s=duration, rss_mb_after=rss_mb(),
               achieved_rate=sent / duration, late_ticks=late_ticks)
    return out


def _clients(params: dict[str, Any]) -> dict[str, Any]:
    """N closed-loop clients over one producer, paced to a rate: reference A of bench.requests
    (one record per request without HTTP). Each client has at most one record in flight: it
    produces one when the schedule says one is due and waits for its delivery report before its
    next. ``poll()`` serves the reports and returns as soon as one arrives; the gateway also
    serves every connection from one producer."""
    topic, rate, duration = params["topic"], params["rate"], params["duration"]
    value = value_bytes(params["value_bytes"])
    clock = time.perf_counter
    free = params["clients"]
    delivered = failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal free, delivered, failed
        free += 1
        if err is None:
            delivered += 1
        else:
            failed += 1

    producer = _producer(params, on_delivery)
    produce, poll = producer.produce, producer.poll
    for _ in range(max(1, params["warmup"])):
        produce(topic, value)
    if producer.flush(params["timeout"]) or failed:
        return {"error": "warm-up not flushed"}
    delivered = 0
    tick = params["tick"]
    window = _Window(params["broker_pid"])
    loop0 = thread_cpu()
    t0 = window.t0
    end = t0 + duration
    sent = 0
    while True:
        now = clock()
        if now >= end:
            break
        due = min(int((now - t0) * rate) - sent, free)
        if due > 0:
            for _ in range(due):
                produce(topic, value)
            sent += due
            free -= due
        poll(tick)
    left = producer.flush(params["timeout"])
    loop_s = thread_cpu() - loop0
    out = window.close()
    out.update(records=sent, delivered=delivered, failed=failed, unflushed=left, send_s=duration,
               achieved_rate=sent / duration, loop_cpu_s=loop_s, rss_mb_after=rss_mb())
    return out


def _percentiles(sorted_ms: list[float]) -> dict[str, float | None]:
    if not sorted_ms:
        return {"p50": None, "p90": None, "p99": None, "p999": None, "max": None}

    def pct(q: float) -> float:
        return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]

    return {"p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99), "p999": pct(0.999),
            "max": sorted_ms[-1]}


def _consume(params: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    topic, partitions, per_partition = params["topic"], params["partitions"], params["per_partition"]
    count = params["count"]
    consumer = Consumer({
        "bootstrap.servers": params["bootstrap"],
        "group.id": "bench-baseline",  # never joined: assign() only
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 2,
    })
    want = partitions * per_partition
    deadline = time.monotonic() + params["timeout"]
    window = _Window(params["broker_pid"])
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = eofs = 0
    done: set[int] = set()
    while got < want and len(done) < partitions:
        if time.monotonic() > deadline:
            return {"error": f"timed out after {got} of {want} records"}
        for msg in consumer.consume(count, 1.0):
            err = msg.error()
            if err is None:
                got += 1
            elif err.code() == err._PARTITION_EOF:
                eofs += 1
                done.add(msg.partition())
            else:
                return {"error": f"consume: {err}"}
    out = window.close()
    consumer.close()
    out.update(records=got, wanted=want, rss_mb_after=rss_mb())
    return out


MODES = {"produce": _produce, "rate": _rate, "clients": _clients, "consume": _consume}


def child_main(params: dict[str, Any]) -> int:
    try:
        out = MODES[params["mode"]](params)
    except Exception as exc:  # reported to the parent as a result
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))
    return 1 if "error" in out else 0


def run_child(params: dict[str, Any], log_path: str, timeout: float) -> dict[str, Any]:
    """Start the child, wait for its JSON line (killing it after *timeout* + 30 s)."""
    argv = [sys.executable, "-m", "bench.baseline", json.dumps(params)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            close_fds=True, start_new_session=True, preexec_fn=child_preexec(signal.SIGKILL),
        )
    try:
        out, _ = proc.communicate(timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the baseline {params['mode']} loop did not finish within {timeout:g} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = out.decode("utf-8", "replace").strip().splitlines()
    try:
        res: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise BenchError(
            f"the baseline {params['mode']} loop exited with status {proc.returncode} and no "
            f"result (log: {log_path})\n{log_tail(log_path)}"
        ) from None
    if "error" in res:
        raise BenchError(f"baseline {params['mode']}: {res['error']} (log: {log_path})")
    return res


def run_produce(bootstrap: str, broker_pid: int | None, topic: str, records: int, value_size: int,
                warmup: int, timeout: float, log_path: str) -> dict[str, Any]:
    """The plain producer loop: N records as fast as it goes; per-record figures added."""
    res = run_child({
        "mode": "produce", "bootstrap": bootstrap, "topic": topic, "records": records,
        "value_bytes": value_size, "warmup": warmup, "timeout": timeout, "broker_pid": broker_pid,
    }, log_path, timeout)
    if res["delivered"] != records or res["failed"] or res["unflushed"]:
        raise BenchError(
            f"baseline: {res['delivered']} of {records} delivered, {res['failed']} failed "
            f"{res['errors']}, {res['unflushed']} not flushed"
        )
    res.update(
        records_per_s=records / res["wall_s"],
        cpu_us_per_record=res["cpu_s"] / records * 1e6,
        broker_cpu_us_per_record=(
            res["broker_cpu_s"] / records * 1e6 if res["broker_cpu_s"] is not None else None
        ),
        topic=topic,
    )
    return res


def run_rate(bootstrap: str, broker_pid: int | None, topic: str, rate: float, duration: float,
             value_size: int, warmup: int, timeout: float, log_path: str,
             tick: float = 0.001) -> dict[str, Any]:
    res = run_child({
        "mode": "rate", "bootstrap": bootstrap, "topic": topic, "rate": rate, "tick": tick,
        "duration": duration, "value_bytes": value_size, "warmup": warmup,
        "timeout": timeout, "broker_pid": broker_pid,
    }, log_path, timeout + duration)
    if res["delivered"] != res["records"] or res["failed"] or res["unflushed"]:
        raise BenchError(f"baseline at a fixed rate: {res['delivered']} of {res['records']} "
                         f"delivered, {res['failed']} failed, {res['unflushed']} not flushed")
    res["cpu_us_per_record"] = res["cpu_s"] / max(1, res["records"]) * 1e6
    res["topic"] = topic
    return res


def run_clients(bootstrap: str, broker_pid: int | None, topic: str, clients: int, rate: float,
                duration: float, value_size: int, warmup: int, timeout: float, log_path: str,
                tick: float = 0.001) -> dict[str, Any]:
    """*clients* closed-loop clients, one record in flight each, paced to *rate* records/s."""
    res = run_child({
        "mode": "clients", "bootstrap": bootstrap, "topic": topic, "clients": clients,
        "rate": rate, "tick": tick, "duration": duration, "value_bytes": value_size,
        "warmup": warmup, "timeout": timeout, "broker_pid": broker_pid,
    }, log_path, timeout + duration)
    if res["delivered"] != res["records"] or res["failed"] or res["unflushed"]:
        raise BenchError(f"closed-loop clients: {res['delivered']} of {res['records']} "
                         f"delivered, {res['failed']} failed, {res['unflushed']} not flushed")
    n = max(1, res["records"])
    res.update(cpu_us_per_record=res["cpu_s"] / n * 1e6,
               loop_us_per_record=res["loop_cpu_s"] / n * 1e6, topic=topic)
    return res


def run_consume(bootstrap: str, broker_pid: int | None, topic: str, partitions: int,
                per_partition: int, count: int, timeout: float, log_path: str) -> dict[str, Any]:
    res = run_child({
        "mode": "consume", "bootstrap": bootstrap, "topic": topic, "partitions": partitions,
        "per_partition": per_partition, "count": count, "timeout": timeout,
        "broker_pid": broker_pid,
    }, log_path, timeout)
    if res["records"] != res["wanted"]:
        raise BenchError(f"baseline consumer read {res['records']} of {res['wanted']} records")
    res.update(records_per_s=res["records"] / res["wall_s"],
               cpu_us_per_record=res["cpu_s"] / res["records"] * 1e6)
    return res


if __name__ == "__main__":
    sys.exit(child_main(json.loads(sys.argv[1])))
