"""The compiled half of the produce path (ext/, gateway._speedups), as the produce package
takes it.

The extension is required (there is no pure-Python fallback: README "Design"). The produce
package takes its compiled pieces from here only: the splitter of v3 bodies, the ``StreamCore``
that hands records to librdkafka and keeps their reports in order, ``hand_over``, the one
hand-over of produce items to a core that every produce API shares (ext/session.pxi), the v1/v2
decoders, and ``json_loads`` and ``json_batch_entries`` (simdjson) for the bodies parsed whole.
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
    hand_over,
    json_batch_entries,
    json_loads,
    v1_binary_items,
)
from gateway.kafka.producer import KafkaProducer

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
