"""The reference murmur2 partitioner in tests/support against Apache Kafka's own vectors.

The expected hashes are the values Kafka's Java unit test for ``Utils.murmur2``
(``UtilsTest.testMurmur2`` in clients/src/test/.../common/utils) asserts. Those keys
have 2, 3, 6, 24, 26 and 48 bytes, so they leave a 1-byte tail untested; the
integration test in test_broker_fixture.py checks every key length from 0 to 40
against librdkafka's murmur2 partitioner.
"""

from __future__ import annotations

import os
import random

import pytest
from support.murmur2 import murmur2, partition_for_key, to_positive

KAFKA_UTILS_TEST_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST_VECTORS, ids=lambda v: repr(v))
def test_murmur2_matches_kafka_utils_test(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_murmur2_accepts_any_bytes_like(wrap: type) -> None:
    for key, expected in KAFKA_UTILS_TEST_VECTORS:
        assert murmur2(wrap(key)) == expected


def test_murmur2_is_a_java_int() -> None:
    seed = int(os.environ.get("TEST_SEED", "0")) or random.randrange(1, 2**32)
    rng = random.Random(seed)
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 64))
        h = murmur2(key)
        assert -(2**31) <= h < 2**31, f"seed={seed} key={key!r} -> {h}"
        assert 0 <= partition_for_key(key, 7) < 7, f"seed={seed} key={key!r}"


def test_to_positive_clears_the_sign_bit_rather_than_negating() -> None:
    # "21" hashes negative: Java keeps the low 31 bits, it does not take abs().
    assert to_positive(-973932308) == 1173551340
    assert to_positive(-(2**31)) == 0  # where Math.abs would stay negative
    assert to_positive(-1) == 2**31 - 1
    assert to_positive(479470107) == 479470107


@pytest.mark.parametrize("partitions", [1, 2, 3, 6, 7, 12])
def test_partition_for_key_of_the_vectors(partitions: int) -> None:
    assert partition_for_key(b"21", partitions) == 1173551340 % partitions
    assert partition_for_key(b"abc", partitions) == 479470107 % partitions
    # -58897971 & 0x7fffffff
    assert partition_for_key(
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", partitions
    ) == 2088585677 % partitions


@pytest.mark.parametrize("partitions", [0, -3])
def test_partition_for_key_needs_partitions(partitions: int) -> None:
    with pytest.raises(ValueError):
        partition_for_key(b"abc", partitions)
