"""Delivery reports: their exact bytes (docs/api.md §1) and the in-order queue that releases them.

Reports are produced out of order (records of different partitions are acknowledged by
different broker requests) but must reach the client in the order the records were sent.
``ReportQueue`` is a ring indexed by record sequence number: a slot is filled when its report is
known, and ``pop_ready`` releases the longest completed prefix in one piece. Its capacity is the
per-connection in-flight limit, and it grows by doubling so an idle stream costs a few slots.
"""

from __future__ import annotations

import json
import time

TYPE_PREFIX = {
    "BINARY": b'{"type":"BINARY","size":',
    "JSON": b'{"type":"JSON","size":',
    "STRING": b'{"type":"STRING","size":',
}

CRLF = b"\r\n"


def json_str(s: str) -> bytes:
    return json.dumps(s, ensure_ascii=False).encode()


def error_report(error_code: int, message: str) -> bytes:
    """A failure report: ``{"error_code":<int>,"message":"<text>"}`` and CRLF."""
    return b'{"error_code":%d,"message":%s}\r\n' % (error_code, json_str(message))


def key_value_suffix(
    key_type: str | None, key: bytes | None, value_type: str | None, value: bytes | None
) -> bytes:
    """The ``,"key":{...},"value":{...}`` tail of a success report; a side appears only when
    the request record had it (its ``size`` is the stored byte length)."""
    out = b""
    if key_type is not None:
        out = b',"key":%s%d}' % (TYPE_PREFIX[key_type], 0 if key is None else len(key))
    if value_type is not None:
        out += b',"value":%s%d}' % (TYPE_PREFIX[value_type], 0 if value is None else len(value))
    return out


class TimestampFormatter:
    """Milliseconds since the epoch -> ``2026-11-21T10:14:42.123Z``. Records arrive in bursts
    within the same second, so the date-time part is cached per second."""

    __slots__ = ("_sec", "_prefix")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = b""

    def __call__(self, ms: int) -> bytes:
        sec, milli = divmod(ms, 1000)
        if sec != self._sec:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode()
            self._sec = sec
        return b"%s.%03dZ" % (self._prefix, milli)


class ReportQueue:
    """Bounded ring of reports keyed by sequence number; see the module docstring.

    A slot holds ``None`` (free), a ``tuple`` (record in flight; its payload is whatever the
    session stored) or ``bytes`` (report known)."""

    __slots__ = ("_ring", "_mask", "_capacity", "head", "tail")

    def __init__(self, capacity: int, initial: int = 16) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        size = 1
        while size < min(initial, capacity):
            size <<= 1
        self._ring: list[object] = [None] * size
        self._mask = size - 1
        self._capacity = capacity
        self.head = 0  # oldest sequence number whose report has not been released
        self.tail = 0  # next sequence number to be assigned

    def __len__(self) -> int:
        return self.tail - self.head

    @property
    def capacity(self) -> int:
        return self._capacity

    def full(self) -> bool:
        return self.tail - self.head >= self._capacity

    def push(self, slot: object, *, force: bool = False) -> int:
        """Assign the next sequence number; ``slot`` is a pending tuple or the final bytes.
        ``force`` may exceed the capacity: only for a final, bounded batch of failure reports
        after reading has stopped for good."""
        n = self.tail - self.head
        if n >= self._capacity and not force:
            raise OverflowError("report queue is full")
        if n > self._mask:
            self._grow()
        seq = self.tail
        self._ring[seq & self._mask] = slot
        self.tail = seq + 1
        return seq

    def pending(self, seq: int) -> object:
        return self._ring[seq & self._mask]

    def complete(self, seq: int, report: bytes) -> None:
        self._ring[seq & self._mask] = report

    def pop_ready(self) -> bytes:
        """Release the completed prefix as one bytes object (b"" if the head is still pending)."""
        ring = self._ring
        mask = self._mask
        seq = self.head
        tail = self.tail
        out = []
        while seq < tail:
            slot = ring[seq & mask]
            if type(slot) is not bytes:
                break
            out.append(slot)
            ring[seq & mask] = None
            seq += 1
        self.head = seq
        if not out:
            return b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _grow(self) -> None:
        old = self._ring
        old_mask = self._mask
        size = len(old) * 2
        ring: list[object] = [None] * size
        mask = size - 1
        for seq in range(self.head, self.tail):
            ring[seq & mask] = old[seq & old_mask]
        self._ring = ring
        self._mask = mask
