"""The compiled half of the produce path (ext/, gateway._speedups), and the one hand-over of
produce items to it that every produce API shares.

The extension is required (there is no pure-Python fallback: README "Design"). The produce
package takes its compiled pieces from here only: the splitter of v3 bodies, the ``StreamCore``
that hands records to librdkafka and keeps their reports in order, the v1/v2 decoders, and
``json_loads`` and ``json_batch_entries`` (simdjson) for the bodies parsed whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway._speedups import (
    REPORT_FORMAT_V1,
    REPORT_FORMAT_V2,
    REPORT_FORMAT_V3,
    STOP_OTHER_TOPIC,
    JsonDecodeError,
    JsonSplitter,
    StreamCore,
    base64_decode,
    format_timestamp,
    json_batch_entries,
    json_loads,
    v1_binary_items,
)
from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter

__all__ = [
    "REPORT_FORMAT_V1",
    "REPORT_FORMAT_V2",
    "REPORT_FORMAT_V3",
    "STOP_OTHER_TOPIC",
    "JsonDecodeError",
    "JsonSplitter",
    "StreamCore",
    "base64_decode",
    "format_timestamp",
    "hand_over",
    "json_batch_entries",
    "json_loads",
    "new_core",
    "v1_binary_items",
]


def new_core(
    producer: KafkaProducer,
    topic: str,
    partitions: int,
    capacity: int,
    prefix: bytes,
    listener: Any,
    error_fn: Callable[[int], tuple[int, str]],
    fail_fn: Callable[[int, int], None],
    error_report: Callable[[int, str], bytes],
    mode: int = REPORT_FORMAT_V3,
) -> StreamCore:
    """A core producing to ``topic`` through the producer's current librdkafka handle, its
    reports routed by the producer's router; ``listener`` is told after a poll that completed
    some of its records (``flush_reports``)."""
    return StreamCore(
        producer.router, producer.current, topic, partitions, capacity, prefix, listener,
        error_fn, fail_fn, error_report, mode,
    )


def hand_over(
    core: StreamCore,
    producer: KafkaProducer,
    items: list[Any],
    i: int,
    rates: RateLimiter | None,
    principal: str,
) -> int:
    """Push ``items[i:]`` into ``core`` in order; the index of the first item it did not take
    (``core.stop_reason`` says why). A producer replaced after a fatal error takes the new
    records (the old one still reports the records it has). With ``rates``, the records beyond
    the principal's allowance get a 429 report and what was used is charged (gateway.limits).
    With the disk spool on, a batch may go to the spool instead (gateway.produce.edge).
    Without it, while Kafka is known to be unreachable (gateway.kafka.health), each record gets a 50003
    report at once instead of waiting out the message timeout (resend). Its return is noticed
    by the metadata listing, which runs often meanwhile, or a broker UP in librdkafka's
    statistics: a record handed over as a probe would hold every later report of its stream."""
    spooler = producer.spooler
    if spooler is not None:
        # With the disk spool (gateway.produce.edge), records go there while Kafka is judged
        # unreachable, or while it holds records of their topic; otherwise to librdkafka, which
        # keeps them until Kafka takes them (no message timeout with the spool on).
        if spooler.should_spool(core.topic_name):
            if rates is None:
                return int(spooler.spool_items(core, items, i))
            allow_records, allow_bytes = rates.allowance(principal)
            used_records, used_bytes = core.used_records, core.used_bytes
            i = spooler.spool_items(core, items, i, allow_records, allow_bytes)
            rates.charge(principal, core.used_records - used_records,
                         core.used_bytes - used_bytes)
            return int(i)
    else:
        down = producer.health.down
        if down is not None:
            return core.refuse(items, i, 50003, f"Kafka is unreachable ({down}): this record "
                               "was not handed to Kafka; resend it")
    if producer.current is not core.producer:
        core.rebind(producer.current)
    if rates is None:
        return core.push(items, i)
    allow_records, allow_bytes = rates.allowance(principal)
    used_records, used_bytes = core.used_records, core.used_bytes
    i = core.push(items, i, allow_records, allow_bytes)
    rates.charge(principal, core.used_records - used_records, core.used_bytes - used_bytes)
    return i
