"""Reading the spool back for forwarding: records in append order, in bounded batches, from the
acknowledged position on (see the package docstring)."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

import gateway.produce.spool.files as files
from gateway.produce.spool.errors import SpoolError
from gateway.produce.spool.files import SEGMENT_HEAD, Position, Segment

log = logging.getLogger("gateway.spool")

READ_CHUNK = 1 << 20  # bytes read from a segment at a time (more for a larger record)

# (seq, topic, partition, key, value, headers, timestamp_ms)
SpooledRecord = tuple[int, str, int, bytes | None, bytes | None,
                      list[tuple[str | bytes, bytes | None]] | None, int]


class _Spool(Protocol):
    """What the reader uses of its spool (gateway.produce.spool.engine.Spool)."""

    directory: str
    durable_seq: int  # (the event loop's view)
    _durable_end: Position  # (the writer's, for the reader thread)
    _segments: list[Segment]
    _closed: bool
    corrupt: int
    lost_records: int

    @property
    def acknowledged(self) -> Position: ...

    def _acknowledge(self, pos: Position) -> None: ...

    def _executor_for_reads(self) -> ThreadPoolExecutor: ...

    async def _wait_data(self) -> None: ...


class Batch(NamedTuple):
    """Records read, in append order, with the positions before the first and after the last:
    acknowledge ``end`` once Kafka has them all."""

    records: list[SpooledRecord]
    start: Position
    end: Position
    nbytes: int  # bytes of their frames


class SpoolReader:
    """The one reader of a spool. ``read_batch`` does blocking file I/O (a thread's job);
    ``read`` waits for records on the event loop and reads in the spool's reader thread;
    ``acknowledge`` and ``rewind`` run on the event loop. One read at a time."""

    def __init__(self, spool: _Spool) -> None:
        self._spool = spool
        self._pos = spool.acknowledged
        self._fd = -1
        self._fd_seg = -1
        self._buf = b""
        self._buf_seg = -1
        self._buf_off = 0
        self._buf_short = False

    @property
    def position(self) -> Position:
        """Where the next read starts."""
        return self._pos

    def acknowledge(self, position: Position) -> None:
        """Kafka has every record before ``position`` (a batch's ``end``): they are not sent
        again after a restart; segments wholly before it are given back. Older positions are
        ignored; a position past what was read is a ValueError."""
        if position.seq > self._pos.seq:
            raise ValueError(
                f"cannot acknowledge record {position.seq - 1}: only records up to "
                f"{self._pos.seq - 1} were read")
        self._spool._acknowledge(position)

    def rewind(self) -> None:
        """Read again from the acknowledged position (records handed to Kafka whose delivery
        failed are sent again)."""
        self._pos = self._spool.acknowledged

    async def read(self, max_records: int = 10000, max_bytes: int = 1 << 20) -> Batch:
        """The next batch, waiting until there is one. SpoolError once the spool is closed or
        failed with nothing left to read."""
        spool = self._spool
        loop = asyncio.get_running_loop()
        while True:
            if self._pos.seq < spool.durable_seq:
                before = self._pos
                batch = await loop.run_in_executor(spool._executor_for_reads(), self.read_batch,
                                                   max_records, max_bytes)
                if batch.records:
                    return batch
                if self._pos != before:
                    continue  # skipped corrupt records: look again
            if spool._closed:
                raise SpoolError("the spool is closed")
            await spool._wait_data()

    def read_batch(self, max_records: int = 10000, max_bytes: int = 1 << 20) -> Batch:
        """Up to ``max_records`` durable records from the read position, their frames at most
        ``max_bytes`` (one record at least, whatever its size); an empty batch when none is
        durable yet. Blocking: call it from a thread. A corrupt record ends its segment: the
        rest of it is skipped (logged, counted in ``records_lost_total``)."""
        if max_records < 1 or max_bytes < 1:
            raise ValueError("max_records and max_bytes must be positive")
        spool = self._spool
        start = pos = self._pos
        records: list[Any] = []
        nbytes = 0
        need = 0
        while len(records) < max_records and nbytes < max_bytes:
            limit = spool._durable_end
            if pos.seq >= limit.seq:
                break
            segs = spool._segments
            seg = next((s for s in segs if s.first_seq == pos.segment), None)
            if seg is not None and seg.first_seq == limit.segment:
                end_off = limit.offset
                if pos.offset >= end_off:
                    break
            elif seg is not None and pos.offset < seg.size:
                end_off = seg.size
            else:
                nxt = self._next_segment(pos, segs, limit)
                if nxt is None:
                    break
                pos = nxt
                continue
            if pos.offset < SEGMENT_HEAD or not self._ensure_fd(seg):
                pos = self._skip(pos, seg, segs, limit, "a bad segment head")
                continue
            # The buffer: a window of the segment from pos.offset.
            buf = self._buf
            rel = pos.offset - self._buf_off
            if self._buf_seg != seg.first_seq or rel < 0 or rel >= len(buf) \
                    or need > len(buf) - rel:
                want = min(max(READ_CHUNK, need), end_off - pos.offset)
                try:
                    buf = os.pread(self._fd, want, pos.offset)
                except OSError as exc:
                    log.error("spool %s: reading segment %s failed: %s", spool.directory,
                              os.path.basename(seg.path), exc)
                    break
                self._buf, self._buf_seg, self._buf_off, rel = buf, seg.first_seq, pos.offset, 0
                self._buf_short = len(buf) < want  # the file ends before the durable end
                if not buf:
                    pos = self._skip(pos, seg, segs, limit, "the end of the file")
                    continue
            rel_end = min(len(buf), end_off - self._buf_off)
            got = len(records)
            new_rel, seq, status, need, _, _ = files.spool_decode(
                buf, rel, rel_end, pos.seq, max_records - got, max_bytes - nbytes, records)
            nbytes += new_rel - rel
            pos = Position(seq, seg.first_seq, self._buf_off + new_rel, pos.skipped)
            if status == files.OK:
                if new_rel < rel_end:
                    break  # a limit was reached
                need = 0
                continue
            if status == files.PARTIAL and pos.offset + need <= end_off:
                if need > len(buf) - new_rel and not self._buf_short:
                    continue  # read on: the frame is longer than what the buffer holds
            pos = self._skip(pos, seg, segs, limit, files.outcome(status))
        self._pos = pos
        return Batch(records, start, pos, nbytes)

    def _ensure_fd(self, seg: Segment) -> bool:
        """The segment open for reading, its head checked (False: bad head, or gone)."""
        if self._fd_seg == seg.first_seq and self._fd >= 0:
            return True
        self._close_fd()
        try:
            fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        head = os.pread(fd, SEGMENT_HEAD, 0)
        if not files.head_is_good(head, seg.first_seq):
            os.close(fd)
            return False
        self._fd, self._fd_seg = fd, seg.first_seq
        return True

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd, self._fd_seg = self._fd, -1, -1
            os.close(fd)
        self._buf, self._buf_seg = b"", -1

    def _next_segment(self, pos: Position, segs: list[Segment],
                      limit: Position) -> Position | None:
        """The start of the segment after ``pos``'s (which was read to its end, or is gone)."""
        nxt = next((s for s in segs if s.first_seq > pos.segment and s.first_seq >= pos.seq), None)
        if nxt is None:
            return None
        if nxt.first_seq > pos.seq:
            lost = nxt.first_seq - pos.seq
            self._lost(lost, f"records {pos.seq} to {nxt.first_seq - 1} are missing before "
                             f"segment {os.path.basename(nxt.path)}")
            return Position(nxt.first_seq, nxt.first_seq, SEGMENT_HEAD, pos.skipped + lost)
        return Position(nxt.first_seq, nxt.first_seq, SEGMENT_HEAD, pos.skipped)

    def _skip(self, pos: Position, seg: Segment, segs: list[Segment], limit: Position,
              why: str) -> Position:
        """A corrupt record at ``pos``: go on at the next segment (or, in the segment being
        appended to, at the durable end): the records in between are lost."""
        spool = self._spool
        spool.corrupt += 1
        nxt = next((s for s in segs if s.first_seq > seg.first_seq), None)
        to = (Position(nxt.first_seq, nxt.first_seq, SEGMENT_HEAD) if nxt is not None
              else Position(limit.seq, limit.segment, limit.offset))
        lost = max(0, to.seq - pos.seq)
        self._lost(lost, f"segment {os.path.basename(seg.path)}: {why} at byte {pos.offset} "
                         f"(record {pos.seq}): the rest of the segment is skipped")
        self._close_fd()
        return to._replace(skipped=pos.skipped + lost)

    def _lost(self, n: int, what: str) -> None:
        spool = self._spool
        spool.lost_records += n
        log.error("spool %s: %s: %d records lost", spool.directory, what, n)
