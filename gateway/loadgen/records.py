"""The records a run sends: fixed-length JSON text, built in bulk.

Every record has the same length (a value of ``--record-bytes`` bytes, a key of fixed width),
so n records from index i are one slice of a precomputed ring covering the key cycle, or, when
that ring would be too large, one call of the compiled writer (``loadgen_records``): no Python
work per record either way.

Record i has the key ``k`` followed by ``(i * KEY_MULTIPLIER) % keys`` zero-padded to the width
of ``keys - 1``: a prime multiplier walks every key once per cycle, in an order that spreads
consecutive records over the partitions as distinct keys would (murmur2 of the key text).
"""

from __future__ import annotations

import base64

from gateway._speedups import loadgen_records

KEY_MULTIPLIER = 2_147_483_629  # a prime above any allowed --keys: (i * it) % keys is a cycle
MAX_KEYS = 1_000_000_000
RING_BYTES = 8 * 1024 * 1024  # the precomputed ring's bound
KEY_PREFIX = b"k"
_PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def value_bytes(size: int) -> bytes:
    """The value every record carries: ``size`` printable bytes."""
    return (_PATTERN * (size // len(_PATTERN) + 1))[:size]


def key_text(i: int, keys: int) -> bytes:
    """Record i's key (``keys`` > 0): what the compiled writer puts in, for tests and twins."""
    width = len(str(keys - 1))
    return KEY_PREFIX + b"%0*d" % (width, (i * KEY_MULTIPLIER) % keys)


class RecordSource:
    """Records in one of two encodings: ``v3`` (a v3 record object followed by LF, for a v3
    body) or ``v2`` (a v2 binary record object followed by a comma, for the ``records`` array of
    a v2 body: the caller drops the last comma)."""

    def __init__(self, encoding: str, record_bytes: int, keys: int, max_chunk: int) -> None:
        if not 0 <= keys <= MAX_KEYS:
            raise ValueError(f"keys must be 0 to {MAX_KEYS}")
        self.keys = keys
        self.width = len(str(keys - 1)) if keys else 1
        value = base64.b64encode(value_bytes(record_bytes))
        placeholder = KEY_PREFIX + b"0" * self.width
        self.b64 = encoding == "v2"
        if encoding == "v3":
            head = b'{"key":{"type":"STRING","data":"' if keys else b"{"
            key = placeholder + b'"},' if keys else b""
            template = head + key + b'"value":{"type":"BINARY","data":"' + value + b'"}}\n'
            self.key_at = len(head)
        elif encoding == "v2":
            head = b'{"key":"' if keys else b"{"
            key = base64.b64encode(placeholder) + b'",' if keys else b""
            template = head + key + b'"value":"' + value + b'"},'
            self.key_at = len(head)
        else:
            raise ValueError(f"unknown encoding {encoding!r}")
        self.template = template
        self.record_len = len(template)
        self.ring: bytes | None = None
        cycle = keys or 1
        if (cycle + max_chunk) * self.record_len <= RING_BYTES:
            self.ring = self._write(0, cycle + max_chunk)
        self.max_chunk = max_chunk

    def _write(self, first: int, n: int) -> bytes:
        if not self.keys:
            return self.template * n
        return loadgen_records(self.template, self.key_at, KEY_PREFIX, self.width, first, n,
                               self.keys, KEY_MULTIPLIER, self.b64)

    def records(self, first: int, n: int) -> bytes:
        """Records first .. first + n - 1, concatenated."""
        ring = self.ring
        if ring is not None and n <= self.max_chunk:
            at = (first % self.keys) * self.record_len if self.keys else 0
            return ring[at : at + n * self.record_len]
        return self._write(first, n)
