"""Kafka's default key partitioner, written from the algorithm's description.

The Java client hashes a record key with ``Utils.murmur2(byte[])`` -- MurmurHash2,
32-bit, seed ``0x9747b28c`` -- and picks ``toPositive(hash) % numPartitions`` where
``toPositive`` clears the sign bit (it is not ``abs()``). librdkafka's ``murmur2`` and
``murmur2_random`` partitioners promise the same placement. This module is a reference
to test against: it is deliberately independent of librdkafka, so agreement between
the two is evidence, not a tautology.

Java does the arithmetic on signed 32-bit ``int``s with wrap-around and ``>>>``
(unsigned shift). Here every intermediate value is kept as an unsigned 32-bit integer,
which has the same bits; the result is converted to a signed ``int`` at the end.
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_for_key", "to_positive"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK = 0xFFFFFFFF


def murmur2(data: bytes | bytearray | memoryview) -> int:
    """``org.apache.kafka.common.utils.Utils.murmur2(data)``: a signed 32-bit int."""
    buf = bytes(data)
    length = len(buf)
    h = (_SEED ^ length) & _MASK

    # Body: little-endian 4-byte blocks.
    whole = length - (length % 4)
    for i in range(0, whole, 4):
        k = int.from_bytes(buf[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> _R
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k

    # Tail: the last 1..3 bytes, highest first (the Java switch falls through).
    tail = length % 4
    if tail >= 3:
        h ^= buf[whole + 2] << 16
    if tail >= 2:
        h ^= buf[whole + 1] << 8
    if tail >= 1:
        h ^= buf[whole]
        h = (h * _M) & _MASK

    # Final avalanche.
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15

    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Java ``Utils.toPositive``: clear the sign bit of a 32-bit int."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes | bytearray | memoryview, num_partitions: int) -> int:
    """The partition a Java producer (and librdkafka ``murmur2``) picks for *key*."""
    if num_partitions <= 0:
        raise ValueError(f"num_partitions must be positive, got {num_partitions}")
    return to_positive(murmur2(key)) % num_partitions
