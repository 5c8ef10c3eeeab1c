"""The loadgen's latency histogram (gateway._speedups.LatencyHistogram, ext/loadgen.pxi) and its
record writer: percentiles within the histogram's 1% against a sorted list, bulk recording equal
to one value at a time."""

from __future__ import annotations

import base64
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway._speedups import LatencyHistogram, loadgen_records
from gateway.loadgen.records import RecordSource, key_text, value_bytes

HOUR_US = 3600 * 1_000_000
PERCENTILES = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def reference(values: list[int], p: float) -> int:
    """The smallest value with at least p% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def assert_close(got: int, want: int) -> None:
    # A bucket is at most 1/128 of its values wide; values below 256 are exact.
    assert want <= got <= want + want / 128 + 1e-9, (got, want)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2 * HOUR_US), min_size=1, max_size=300))
def test_percentiles_are_within_one_percent_of_the_sorted_values(values: list[int]) -> None:
    h = LatencyHistogram()
    for v in values:
        h.record(v)
    assert h.count == len(values)
    assert h.max == max(values) and h.min == min(values)
    assert h.mean == pytest.approx(sum(values) / len(values))
    for p in PERCENTILES:
        assert_close(h.value_at_percentile(p), reference(values, p))


@settings(max_examples=100, deadline=None)
@given(
    first=st.floats(-1000.0, 1e9, allow_nan=False),
    step=st.floats(-5000.0, 5000.0, allow_nan=False),
    n=st.integers(0, 500),
)
def test_record_span_equals_recording_each_value(first: float, step: float, n: int) -> None:
    bulk = LatencyHistogram()
    bulk.record_span(first, step, n)
    single = LatencyHistogram()
    for k in range(n):
        single.record(int(first + step * k))
    assert bulk.count == single.count == n
    assert (bulk.max, bulk.min) == (single.max, single.min)
    for p in PERCENTILES:
        assert bulk.value_at_percentile(p) == single.value_at_percentile(p)


def test_counts_negative_values_as_zero_and_clamps_beyond_the_range() -> None:
    h = LatencyHistogram()
    h.record(-5)
    h.record(2**50)
    assert h.min == 0
    assert h.max == 2**41 - 1  # 25 days: far beyond the hour the issue asks for
    assert h.value_at_percentile(50) == 0


def test_merge_and_reset() -> None:
    rng = random.Random(7)
    a_values = [rng.randrange(0, 10**7) for _ in range(1000)]
    b_values = [rng.randrange(0, 10**5) for _ in range(3000)]
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in a_values:
        a.record(v)
    for v in b_values:
        b.record(v)
    a.merge(b)
    assert a.count == 4000
    for p in PERCENTILES:
        assert_close(a.value_at_percentile(p), reference(a_values + b_values, p))
    a.reset()
    assert (a.count, a.max, a.min, a.mean, a.value_at_percentile(50)) == (0, None, None, None, None)
    a.merge(LatencyHistogram())  # an empty one changes nothing
    assert a.count == 0


def test_a_million_values_in_one_bulk_call() -> None:
    h = LatencyHistogram()
    h.record_span(1_000_000.0, -1.0, 1_000_000)  # 1 s down to 1 µs
    assert h.count == 1_000_000
    assert_close(h.value_at_percentile(50), 500_000)
    assert_close(h.value_at_percentile(99.9), 999_000)
    assert h.max == 1_000_000


@pytest.mark.parametrize("encoding", ["v3", "v2"])
@pytest.mark.parametrize("keys", [0, 1, 7, 1000, 123_457])
def test_records_are_fixed_length_with_the_keys_of_the_python_twin(encoding: str, keys: int) -> None:
    src = RecordSource(encoding, 33, keys, 50)
    for first, n in [(0, 50), (5, 3), (10**9 + 11, 40), (7, 200)]:  # 200: beyond the ring
        blob = src.records(first, n)
        assert len(blob) == n * src.record_len
        sep = b"\n" if encoding == "v3" else b","
        objs = [json.loads(blob[i * src.record_len : (i + 1) * src.record_len].rstrip(sep))
                for i in range(n)]
        for i, obj in enumerate(objs):
            if encoding == "v3":
                assert obj["value"] == {"type": "BINARY", "data": base64.b64encode(value_bytes(33)).decode()}
                key = obj["key"]["data"].encode() if keys else None
                assert obj.get("key", {}).get("type", "STRING") == "STRING"
            else:
                assert base64.b64decode(obj["value"]) == value_bytes(33)
                key = base64.b64decode(obj["key"]) if keys else None
            assert key == (key_text(first + i, keys) if keys else None)
            assert ("key" in obj) == bool(keys)


def test_the_keys_walk_every_key_once_per_cycle() -> None:
    keys = 1000
    assert {key_text(i, keys) for i in range(keys)} == {b"k%03d" % k for k in range(keys)}


def test_the_writer_refuses_a_key_that_does_not_fit() -> None:
    with pytest.raises(ValueError):
        loadgen_records(b"{}", 1, b"k", 4, 0, 1, 10, 3, False)
