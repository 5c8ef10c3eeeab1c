"""The spool's files: segment names and heads, the checkpoint, and the frame codec's outcomes.

A spool directory holds:

- ``<first seq, 20 digits>.seg``: a segment, append-only. A 16-byte head (``KGSPOOL1`` and the
  sequence number of its first record, u64 little-endian) and then record frames back to back
  (ext/spool.pxi describes a frame: length, CRC32C, the record).
- ``checkpoint``: the acknowledged position, 36 bytes: ``KGSPCKP1``, the sequence number of the
  next record to forward, the segment it is in (its first sequence number), its byte offset
  there (u64 each), and the CRC32C of those 32 bytes. Written whole to ``checkpoint.tmp``, which
  is fsynced and renamed over ``checkpoint`` (and the directory fsynced): a reader sees the old
  checkpoint or the new one, never a mix.
- ``lock``: held with ``flock`` by the process that has the spool open (one at a time).

Everything here is plain blocking file I/O: it runs on the spool's threads, or while the spool is
opened (before the event loop uses it), never on the event loop.
"""

from __future__ import annotations

import os
import re
import struct
from typing import NamedTuple

from gateway._speedups import crc32c, spool_decode, spool_encode

__all__ = [
    "BAD_CHECKSUM",
    "BAD_LAYOUT",
    "BAD_LENGTH",
    "BAD_SEQ",
    "CHECKPOINT",
    "CHECKPOINT_TMP",
    "FRAME_HEAD",
    "LOCK",
    "OK",
    "PARTIAL",
    "SEGMENT_HEAD",
    "Position",
    "Segment",
    "crc32c",
    "outcome",
    "read_checkpoint",
    "segment_name",
    "segment_seq",
    "spool_decode",
    "spool_encode",
]

# Outcomes of spool_decode (ext/spool.pxi).
OK = 0
PARTIAL = 1
BAD_LENGTH = 2
BAD_CHECKSUM = 3
BAD_SEQ = 4
BAD_LAYOUT = 5
_OUTCOMES = {
    OK: "good",
    PARTIAL: "cut short",
    BAD_LENGTH: "a length out of range",
    BAD_CHECKSUM: "a bad checksum",
    BAD_SEQ: "an unexpected sequence number",
    BAD_LAYOUT: "fields that do not fill the record",
}

FRAME_HEAD = 8  # u32 length + u32 checksum
FRAME_FIXED = 40  # the fixed part of a frame's body (seq, timestamps, partition, lengths)
FRAME_SPOOLED_AT = FRAME_HEAD + 16  # where a frame's spooled time (i64 ms) is

SEGMENT_MAGIC = b"KGSPOOL1"
SEGMENT_HEAD_STRUCT = struct.Struct("<8sQ")
SEGMENT_HEAD = SEGMENT_HEAD_STRUCT.size  # 16
SEGMENT_SUFFIX = ".seg"
_SEGMENT_RE = re.compile(r"^(\d{20})\.seg$")

CHECKPOINT = "checkpoint"
CHECKPOINT_TMP = "checkpoint.tmp"
CHECKPOINT_MAGIC = b"KGSPCKP1"
_CHECKPOINT_STRUCT = struct.Struct("<8sQQQ")
_CRC = struct.Struct("<I")
CHECKPOINT_SIZE = _CHECKPOINT_STRUCT.size + _CRC.size  # 36
LOCK = "lock"


class Position(NamedTuple):
    """Where the next record is: its sequence number, the segment it is in (the segment's first
    sequence number, its file name) and its byte offset there. ``skipped`` counts the records
    the reader jumped over because they were corrupt, from the spool's opening up to here."""

    seq: int
    segment: int
    offset: int
    skipped: int = 0


class Segment:
    """One segment file. ``size`` is final once sealed; ``end_seq`` is the sequence number after
    its last record when known (the segment appended to, the last one checked at opening)."""

    __slots__ = ("first_seq", "path", "size", "end_seq")

    def __init__(self, first_seq: int, path: str, size: int, end_seq: int | None) -> None:
        self.first_seq = first_seq
        self.path = path
        self.size = size
        self.end_seq = end_seq

    def __repr__(self) -> str:
        return f"Segment({self.first_seq}, size={self.size}, end_seq={self.end_seq})"


def outcome(status: int) -> str:
    return _OUTCOMES.get(status, f"outcome {status}")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def segment_seq(name: str) -> int | None:
    """The first sequence number a segment file's name gives, or None for another file."""
    m = _SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


def segment_head(first_seq: int) -> bytes:
    return SEGMENT_HEAD_STRUCT.pack(SEGMENT_MAGIC, first_seq)


def head_is_good(head: bytes, first_seq: int) -> bool:
    return len(head) == SEGMENT_HEAD and head == segment_head(first_seq)


def pack_checkpoint(pos: Position) -> bytes:
    body = _CHECKPOINT_STRUCT.pack(CHECKPOINT_MAGIC, pos.seq, pos.segment, pos.offset)
    return body + _CRC.pack(crc32c(body))


def read_checkpoint(directory: str) -> tuple[Position | None, str | None]:
    """The checkpoint's position, or None with the reason it cannot be used (None, None: there is
    no checkpoint)."""
    path = os.path.join(directory, CHECKPOINT)
    try:
        with open(path, "rb") as f:
            data = f.read(CHECKPOINT_SIZE + 1)
    except FileNotFoundError:
        return None, None
    if len(data) != CHECKPOINT_SIZE:
        return None, f"{len(data)} bytes instead of {CHECKPOINT_SIZE}"
    body, (crc,) = data[: _CHECKPOINT_STRUCT.size], _CRC.unpack_from(data, _CHECKPOINT_STRUCT.size)
    magic, seq, segment, offset = _CHECKPOINT_STRUCT.unpack(body)
    if magic != CHECKPOINT_MAGIC:
        return None, "not a spool checkpoint"
    if crc32c(body) != crc:
        return None, "bad checksum"
    return Position(seq, segment, offset), None


def write_checkpoint(directory: str, dir_fd: int, pos: Position, sync: bool) -> None:
    """Write ``pos`` as the checkpoint atomically: the whole file to a temporary name, fsynced,
    renamed over the old one, the directory fsynced (without ``sync``: no fsync)."""
    tmp = os.path.join(directory, CHECKPOINT_TMP)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = pack_checkpoint(pos)
        if os.write(fd, data) != len(data):
            raise OSError(f"short write of {tmp}")
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, CHECKPOINT))
    if sync:
        os.fsync(dir_fd)


def peek_spooled_ms(fd: int, offset: int) -> int | None:
    """The spooled time of the frame at ``offset`` (its checksum not checked), or None."""
    data = os.pread(fd, 8, offset + FRAME_SPOOLED_AT)
    if len(data) != 8:
        return None
    return int.from_bytes(data, "little", signed=True)
