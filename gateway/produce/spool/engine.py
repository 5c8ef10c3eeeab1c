"""The spool: appends from the event loop, a writer thread that writes, fsyncs, checkpoints and
gives segments back (see the package docstring for the contract)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import gateway.produce.spool.files as files
from gateway.produce.spool.errors import SpoolBusy, SpoolError, SpoolFull
from gateway.produce.spool.files import SEGMENT_HEAD, Position, Segment
from gateway.produce.spool.reader import SpoolReader

log = logging.getLogger("gateway.spool")

DEFAULT_MAX_BYTES = 1 << 30  # --spool-max-bytes
DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_BUFFER_BYTES = 16 << 20  # appended, not yet written
MIN_SEGMENT_BYTES = 1024
MIN_MAX_BYTES = 4 * MIN_SEGMENT_BYTES
_SCAN_CHUNK = 4 << 20  # bytes read at a time when the last segment is checked at opening
_IOV_MAX = 1024  # buffers per writev (IOV_MAX on Linux)
# The age of the oldest record comes from marks (first seq of an append, its time) kept at
# most one per MARK_MS; past MAX_MARKS every other one is dropped (coarser, still an upper bound).
MARK_MS = 100
MAX_MARKS = 4096
CHECKPOINT_RETRY = 1.0  # seconds before a checkpoint that could not be written is tried again


class FsyncPolicy(NamedTuple):
    """``--spool-fsync``: ``always`` (a record is written and fsynced before it is reported
    durable), ``<ms>`` (reported once written; fsynced at most every ``interval`` seconds, and
    within that time of being written), ``never`` (reported once written; the OS writes back)."""

    mode: str  # "always", "interval" or "never"
    interval: float = 0.0  # seconds, for "interval"

    @classmethod
    def parse(cls, text: str | FsyncPolicy) -> FsyncPolicy:
        if isinstance(text, FsyncPolicy):
            return text
        word = str(text).strip().lower()
        if word in ("always", "never"):
            return cls(word)
        try:
            ms = int(word)
        except ValueError:
            ms = 0
        if not 1 <= ms <= 3_600_000:
            raise ValueError(
                f"spool fsync policy {text!r}: expected 'always', 'never' or a number of "
                "milliseconds from 1 to 3600000")
        return cls("interval", ms / 1000)

    def __str__(self) -> str:
        return self.mode if self.mode != "interval" else str(round(self.interval * 1000))


class SpoolStats(NamedTuple):
    """A snapshot of the spool's figures (the metrics read it at scrape time)."""

    records_spooled_total: int  # records appended since the spool was opened
    bytes_spooled_total: int  # their bytes in the files (frames)
    records_forwarded_total: int  # records acknowledged (in Kafka) since opened
    records: int  # records appended and not acknowledged yet
    bytes: int  # bytes the spool holds now: segment files and the write buffer
    oldest_age_seconds: float  # age of the oldest record not acknowledged (0 when empty)
    max_bytes: int
    segments: int
    buffered_bytes: int  # appended, not written yet
    refused_full_total: int  # records refused because the spool was full
    refused_busy_total: int  # records refused because the write buffer was full
    records_lost_total: int  # records skipped by the reader: corrupt data
    corrupt_total: int  # corrupt places found (torn tails excluded)
    torn_bytes: int  # bytes of torn tails dropped when the spool was opened
    fsyncs_total: int  # fsyncs of segment files
    checkpoints_total: int
    failed: bool  # an I/O error stopped the writer: appends are refused until reopened


DurableCallback = Callable[[int, int], Any]
ErrorCallback = Callable[[int, int, BaseException], Any]


class Spool:
    """A disk spool of records (see the package docstring). Made by ``Spool.open``."""

    def __init__(self, directory: str, *, max_bytes: int, segment_bytes: int,
                 fsync: FsyncPolicy, buffer_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        if max_bytes < MIN_MAX_BYTES:
            raise ValueError(f"spool max_bytes must be at least {MIN_MAX_BYTES}, not {max_bytes}")
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(
                f"spool segment_bytes must be at least {MIN_SEGMENT_BYTES}, not {segment_bytes}")
        if buffer_bytes < 1:
            raise ValueError(f"spool buffer_bytes must be positive, not {buffer_bytes}")
        self.directory = os.path.abspath(directory)
        self.max_bytes = max_bytes
        # A segment is given back whole: at most a quarter of the bound each, so that space
        # comes back while the spool drains.
        self.segment_bytes = min(segment_bytes, max(MIN_SEGMENT_BYTES, max_bytes // 4))
        self.fsync = fsync
        self.buffer_bytes = buffer_bytes
        self._clock = clock
        self._lock_fd = -1
        self._dir_fd = -1
        # -- owned by the event loop (the appending thread) --
        self._next_seq = 0
        self._queued = 0  # bytes appended since opened
        self._ack = Position(0, 0, SEGMENT_HEAD)  # acknowledged: every record before it
        self.durable_seq = 0  # every record before it is durable (told by the writer)
        self._topic_end: dict[str, int] = {}  # topic -> seq after its last append
        self._reopened_end = 0  # records below it were spooled before this opening
        self._marks: deque[tuple[int, int]] = deque()  # (seq, spooled ms), see MARK_MS
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_durable: DurableCallback | None = None
        self._on_error: ErrorCallback | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # sync(): (seq, future)
        self._data_waiters: list[asyncio.Future[None]] = []
        self._reader: SpoolReader | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.spooled_records = 0
        self.spooled_bytes = 0
        self.forwarded_records = 0
        self.refused_full = 0
        self.refused_busy = 0
        # -- shared with the writer: guarded by _cond --
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[tuple[int, int, bytes]] = []  # (first seq, end seq, frames)
        self._ack_wanted = self._ack
        self._closing = False
        # -- owned by the writer thread (read elsewhere as whole values) --
        self._thread: threading.Thread | None = None
        self._segments: list[Segment] = []  # replaced, never changed in place
        self._active: Segment | None = None  # the segment appended to (None: start a new one)
        self._fd = -1  # the active segment's, opened by the writer
        self._durable_end = Position(0, 0, SEGMENT_HEAD)  # for the reader
        self._ack_written = self._ack
        self._checkpoint_retry = 0.0  # (monotonic) not before: the last attempt failed
        self._written = 0  # bytes of the write buffer written (or dropped on failure)
        self._overhead = 0  # segment heads written
        self._freed = 0  # bytes of segments deleted
        self._base = 0  # bytes of the segments found at opening
        self._unsynced = False
        self._sync_due = 0.0
        self._last_sync = 0.0
        self.failure: BaseException | None = None
        self.fsyncs = 0
        self.checkpoints = 0
        # -- set at opening, then by the reader thread --
        self.torn_bytes = 0
        self.corrupt = 0
        self.lost_records = 0

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: str | FsyncPolicy = "100",
             buffer_bytes: int = DEFAULT_BUFFER_BYTES,
             clock: Callable[[], float] = time.time) -> Spool:
        """Open (or create) the spool in ``directory``: blocking file I/O, so call it before the
        event loop runs or from a thread. Finds the acknowledged position in the checkpoint,
        deletes the segments wholly before it, checks the last segment and drops a torn tail.
        SpoolError when the directory cannot be used (another process has it open, ...)."""
        spool = cls(directory, max_bytes=max_bytes, segment_bytes=segment_bytes,
                    fsync=FsyncPolicy.parse(fsync), buffer_bytes=buffer_bytes, clock=clock)
        try:
            spool._recover()
        except OSError as exc:
            spool._release()
            raise SpoolError(f"spool directory {spool.directory}: {exc}") from exc
        except BaseException:
            spool._release()
            raise
        return spool

    def _recover(self) -> None:
        d = self.directory
        try:
            os.makedirs(d, exist_ok=True)
            self._lock_fd = os.open(os.path.join(d, files.LOCK),
                                    os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._dir_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise SpoolError(f"spool directory {d}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolError(f"spool directory {d} is in use by another process") from None
        try:
            os.unlink(os.path.join(d, files.CHECKPOINT_TMP))
        except FileNotFoundError:
            pass
        cp, why = files.read_checkpoint(d)
        if why is not None:
            self.corrupt += 1
            log.error("spool %s: checkpoint unusable (%s): forwarding starts again at the first "
                      "segment (records may be sent twice)", d, why)
        segs = []
        for name in os.listdir(d):
            first = files.segment_seq(name)
            if first is not None:
                path = os.path.join(d, name)
                segs.append(Segment(first, path, os.stat(path).st_size, None))
        segs.sort(key=lambda s: s.first_seq)
        # Segments wholly before the checkpoint (a crash came between checkpoint and delete).
        while cp is not None and len(segs) > 1 and segs[1].first_seq <= cp.seq:
            os.unlink(segs.pop(0).path)
        if segs:
            self._check_last(segs[-1])
        end = segs[-1].end_seq if segs else 0
        assert end is not None
        if cp is not None and cp.seq > end:
            if segs:
                log.warning("spool %s: the checkpoint (record %d) is past the last record "
                            "(%d): records written after the last fsync were lost with the "
                            "system; every record left is taken as forwarded", d, cp.seq, end)
            end = cp.seq
        self._next_seq = self.durable_seq = end
        if segs and segs[-1].end_seq == end:
            self._active = segs[-1]
            self._durable_end = Position(end, self._active.first_seq, self._active.size)
        else:
            self._durable_end = Position(end, end, SEGMENT_HEAD)
        self._segments = segs
        self._ack = self._ack_wanted = self._ack_written = self._resolve_ack(cp, segs, end)
        self._base = sum(s.size for s in segs)
        self._delete_before(self._ack)
        segs = self._segments
        if self._ack.seq < end:
            self._reopened_end = end
            self._marks_at_opening(segs)
        if segs or cp is not None:
            log.info("spool %s opened: %d records in %d segments (%d bytes), records %d to %d "
                     "to forward", d, end - self._ack.seq, len(segs), self._base,
                     self._ack.seq, end)

    def _check_last(self, seg: Segment) -> None:
        """Read the last segment through: records after the last good one are a torn tail (or,
        when good data follows a bad record, corruption): both are cut off, logged."""
        fd = os.open(seg.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            head = os.pread(fd, SEGMENT_HEAD, 0)
            size = os.fstat(fd).st_size
            if not files.head_is_good(head, seg.first_seq):
                if size > SEGMENT_HEAD:
                    self.corrupt += 1
                    log.error("spool %s: segment %s has a bad head: its %d bytes are dropped",
                              self.directory, os.path.basename(seg.path), size)
                elif size:
                    self.torn_bytes += size
                os.ftruncate(fd, 0)
                os.pwrite(fd, files.segment_head(seg.first_seq), 0)
                self._sync(fd)
                seg.size, seg.end_seq = SEGMENT_HEAD, seg.first_seq
                return
            pos, seq = SEGMENT_HEAD, seg.first_seq
            status, need = files.OK, 0
            while pos < size:
                chunk = os.pread(fd, max(_SCAN_CHUNK, need), pos)
                rel, seq, status, need, _, _ = files.spool_decode(chunk, 0, len(chunk), seq,
                                                                  1 << 62, 1 << 62, None)
                pos += rel
                if status == files.PARTIAL and pos + need <= size:
                    continue  # the frame continues past this chunk
                if status != files.OK:
                    break
            if pos < size:
                dropped = size - pos
                tail = os.pread(fd, min(dropped, 1 << 20), pos)
                torn = status == files.PARTIAL or (dropped < (1 << 20) and not tail.strip(b"\0"))
                if not torn and status == files.BAD_CHECKSUM and len(tail) >= 4:
                    # A last frame whose length is whole but whose bytes are not (yet) all there.
                    torn = files.FRAME_HEAD + int.from_bytes(tail[:4], "little") == dropped
                where = (f"spool {self.directory}: segment {os.path.basename(seg.path)}, "
                         f"record {seq} at byte {pos}")
                if torn:
                    self.torn_bytes += dropped
                    log.warning("%s: torn tail (%s): %d bytes dropped, appending resumes after "
                                "record %d", where, files.outcome(status), dropped, seq - 1)
                else:
                    self.corrupt += 1
                    log.error("%s: corrupt (%s) before the end of the last segment: the %d "
                              "bytes from there are dropped", where, files.outcome(status),
                              dropped)
                os.ftruncate(fd, pos)
                self._sync(fd)
            seg.size, seg.end_seq = pos, seq
        finally:
            os.close(fd)

    def _resolve_ack(self, cp: Position | None, segs: list[Segment], end: int) -> Position:
        if not segs:
            return Position(end, end, SEGMENT_HEAD)
        first = segs[0]
        if cp is None or cp.seq < first.first_seq:
            if cp is not None:
                log.error("spool %s: records %d to %d were deleted before they were forwarded",
                          self.directory, cp.seq, first.first_seq)
            return Position(first.first_seq, first.first_seq, SEGMENT_HEAD)
        if cp.seq >= end:
            return self._durable_end
        seg = next(s for s in reversed(segs) if s.first_seq <= cp.seq)
        if cp.segment == seg.first_seq and SEGMENT_HEAD <= cp.offset <= seg.size:
            return cp
        if seg.first_seq == cp.seq:
            return Position(cp.seq, seg.first_seq, SEGMENT_HEAD)
        # The checkpoint names the record but not where it is: find it.
        with open(seg.path, "rb") as f:
            data = f.read()
        rel, seq, _, _, _, _ = files.spool_decode(data, SEGMENT_HEAD, len(data), seg.first_seq,
                                                  cp.seq - seg.first_seq, 1 << 62, None)
        return Position(seq, seg.first_seq, rel)

    def _marks_at_opening(self, segs: list[Segment]) -> None:
        now_ms = int(self._clock() * 1000)
        for seg in segs:
            if seg.first_seq > self._ack.seq or seg.first_seq == self._ack.segment:
                offset = self._ack.offset if seg.first_seq == self._ack.segment else SEGMENT_HEAD
                first = self._ack.seq if seg.first_seq == self._ack.segment else seg.first_seq
                try:
                    fd = os.open(seg.path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        ms = files.peek_spooled_ms(fd, offset)
                    finally:
                        os.close(fd)
                except OSError:
                    ms = None
                self._marks.append((first, ms if ms is not None and ms <= now_ms else now_ms))

    # -- the event loop's side -------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None,
              on_durable: DurableCallback | None = None,
              on_error: ErrorCallback | None = None) -> None:
        """Start the writer thread. ``on_durable(first, end)`` is called once per write round
        with the records that became durable (sequence numbers ``first`` to ``end - 1``);
        ``on_error(first, end, exc)`` when records could not be written (the spool has failed).
        With a ``loop`` both run on it (``call_soon_threadsafe``), and so does everything of
        the spool but its threads; without one, they run on the writer thread."""
        if self._thread is not None:
            raise RuntimeError("the spool is already started")
        self._loop = loop
        self._on_durable = on_durable
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def append(self, topic: str, records: Sequence[Any]) -> int:
        """Spool ``records`` of ``topic`` (the splitter's tuples: gateway/produce/items.py):
        encoded at once, written by the writer thread. Returns the token: the sequence number
        after the batch's last record (its records are ``token - len(records)`` to
        ``token - 1``); the batch is durable once ``durable_seq >= token``. Raises SpoolFull or
        SpoolBusy (nothing of the batch is spooled), SpoolError when closed or failed, and
        TypeError/ValueError for a record that cannot be spooled (nothing of the batch is)."""
        if self._closed:
            raise SpoolError("the spool is closed")
        if self._thread is None:
            raise RuntimeError("the spool is not started")
        if self.failure is not None:
            raise SpoolError(f"the spool failed: {self.failure}")
        n = len(records)
        if not n:
            return self._next_seq
        if self._queued - self._written >= self.buffer_bytes:
            self.refused_busy += n
            raise SpoolBusy(f"spool write buffer full ({self.buffer_bytes} bytes not yet written)")
        used = self._base + self._queued + self._overhead - self._freed
        if used >= self.max_bytes:
            self.refused_full += n
            raise SpoolFull(f"spool full ({used} of {self.max_bytes} bytes)")
        now_ms = int(self._clock() * 1000)
        first = self._next_seq
        frames = files.spool_encode(records if isinstance(records, list) else list(records),
                                    topic, first, now_ms)
        size = len(frames)
        if used + size + SEGMENT_HEAD > self.max_bytes:  # (it may need a new segment's head)
            self.refused_full += n
            raise SpoolFull(f"spool full ({used} of {self.max_bytes} bytes; "
                            f"{size} more needed)")
        end = first + n
        self._next_seq = end
        self._queued += size
        with self._cond:
            self._pending.append((first, end, frames))
            self._cond.notify()
        self.spooled_records += n
        self.spooled_bytes += size
        self._topic_end[topic] = end
        marks = self._marks
        if not marks or now_ms - marks[-1][1] >= MARK_MS:
            marks.append((first, now_ms))
            if len(marks) > MAX_MARKS:
                self._marks = deque(list(marks)[::2])
        return end

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended record gets."""
        return self._next_seq

    @property
    def acknowledged(self) -> Position:
        """Every record before this position is acknowledged (in Kafka)."""
        return self._ack

    @property
    def empty(self) -> bool:
        """Every record appended has been acknowledged."""
        return self._ack.seq >= self._next_seq

    @property
    def buffer_full(self) -> bool:
        """An append now would get SpoolBusy."""
        return self._queued - self._written >= self.buffer_bytes

    def holds(self, topic: str) -> bool:
        """A record of ``topic`` is spooled and not acknowledged yet (records spooled before the
        spool was opened count for every topic until they are all acknowledged)."""
        ack = self._ack.seq
        return ack < self._topic_end.get(topic, 0) or ack < self._reopened_end

    def reader(self) -> SpoolReader:
        """The spool's reader (one per spool), starting at the acknowledged position."""
        if self._reader is None:
            self._reader = SpoolReader(self)
        return self._reader

    def _acknowledge(self, pos: Position) -> None:
        prev = self._ack
        if pos.seq <= prev.seq:
            return
        self._ack = pos
        self.forwarded_records += max(0, (pos.seq - prev.seq) - (pos.skipped - prev.skipped))
        self._trim_marks()
        with self._cond:
            self._ack_wanted = pos
            self._cond.notify()

    def _trim_marks(self) -> None:
        marks, ack = self._marks, self._ack.seq
        while len(marks) > 1 and marks[1][0] <= ack:
            marks.popleft()

    def stats(self) -> SpoolStats:
        written = self._written
        records = max(0, self._next_seq - self._ack.seq)
        age = 0.0
        if records:
            self._trim_marks()
            if self._marks:
                age = max(0.0, self._clock() - self._marks[0][1] / 1000)
        return SpoolStats(
            records_spooled_total=self.spooled_records,
            bytes_spooled_total=self.spooled_bytes,
            records_forwarded_total=self.forwarded_records,
            records=records,
            bytes=self._base + self._queued + self._overhead - self._freed,
            oldest_age_seconds=age,
            max_bytes=self.max_bytes,
            segments=len(self._segments),
            buffered_bytes=self._queued - written,
            refused_full_total=self.refused_full,
            refused_busy_total=self.refused_busy,
            records_lost_total=self.lost_records,
            corrupt_total=self.corrupt,
            torn_bytes=self.torn_bytes,
            fsyncs_total=self.fsyncs,
            checkpoints_total=self.checkpoints,
            failed=self.failure is not None,
        )

    async def sync(self) -> None:
        """Wait until every record appended so far is durable (under the fsync policy)."""
        target = self._next_seq
        if self.durable_seq >= target or self._thread is None:
            return
        self._check_usable()
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut

    def _check_usable(self) -> None:
        if self.failure is not None:
            raise SpoolError(f"the spool failed: {self.failure}")

    async def _wait_data(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._data_waiters.append(fut)
        await fut

    def _executor_for_reads(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-reader")
        return self._executor

    def _durable(self, first: int, end: int) -> None:
        # On the loop (or the writer thread without one): records first..end-1 are durable.
        if end > self.durable_seq:
            self.durable_seq = end
        if self._waiters:
            keep = []
            for seq, fut in self._waiters:
                if seq <= end:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((seq, fut))
            self._waiters = keep
        self._wake_readers()
        if self._on_durable is not None:
            self._on_durable(first, end)

    def _wake_readers(self) -> None:
        waiters, self._data_waiters = self._data_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _failed(self, first: int, end: int, exc: BaseException) -> None:
        err = SpoolError(f"the spool failed: {exc}")
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(err)
        self._waiters = []
        self._wake_readers()
        if self._on_error is not None and end > first:
            self._on_error(first, end, exc)

    def close(self) -> None:
        """Write what is appended, fsync (unless ``never``), checkpoint the acknowledged
        position, stop the threads, release the directory. Blocking: from the event loop, use
        ``aclose``."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            thread.join()
            with self._cond:
                left, self._pending = self._pending, []
            if left:  # appended from another thread while closing: not written
                self._post(self._failed, left[0][0], left[-1][1],
                           SpoolError("the spool is closed"))
        elif self._lock_fd >= 0 and self._ack_written != self._ack and self.failure is None:
            files.write_checkpoint(self.directory, self._dir_fd, self._ack,
                                   self.fsync.mode != "never")
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._reader is not None:
            self._reader._close_fd()
        self._post(self._wake_readers)  # a read() waiting for records ends: closed
        self._release()

    async def aclose(self) -> None:
        """``close`` from the event loop, waiting in a thread."""
        self._closed = True
        await asyncio.to_thread(self.close)

    def _release(self) -> None:
        for attr in ("_fd", "_dir_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd >= 0:
                setattr(self, attr, -1)
                os.close(fd)  # (closing the lock file releases the flock)

    # -- the writer thread -----------------------------------------------------------------

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is left to tell
            pass

    def _sync(self, fd: int) -> None:
        if self.fsync.mode != "never":
            os.fsync(fd)

    def _run(self) -> None:
        try:
            self._writer_loop()
        except BaseException as exc:  # a bug: fail what is pending rather than hang
            log.exception("spool %s: the writer stopped", self.directory)
            self._fail(exc)
            with self._cond:
                pending, self._pending = self._pending, []
            self._drop(pending, exc)
        finally:
            if self._fd >= 0:
                fd, self._fd = self._fd, -1
                os.close(fd)

    def _writer_loop(self) -> None:
        interval = self.fsync.mode == "interval"
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._pending or self._closing:
                        break
                    now = time.monotonic()
                    timeout = None
                    if self._ack_wanted is not self._ack_written:
                        if now >= self._checkpoint_retry:
                            break
                        timeout = self._checkpoint_retry - now
                    if interval and self._unsynced:
                        if now >= self._sync_due:
                            break
                        due = self._sync_due - now
                        timeout = due if timeout is None else min(timeout, due)
                    cond.wait(timeout)
                pending, self._pending = self._pending, []
                ack, closing = self._ack_wanted, self._closing
            if pending:
                if self.failure is not None:
                    self._drop(pending, self.failure)
                else:
                    self._write_round(pending)
            if interval and self._unsynced and (closing or time.monotonic() >= self._sync_due):
                self._fsync_active()
            if ack is not self._ack_written and (closing or time.monotonic() >= self._checkpoint_retry):
                self._checkpoint(ack)
            if closing:
                with cond:
                    if self._pending:
                        continue
                if self._unsynced:
                    self._fsync_active()
                return

    def _write_round(self, pending: list[tuple[int, int, bytes]]) -> None:
        """Write the batches in order, rolling to a new segment at a batch boundary once the
        active one is full; fsync per the policy; tell the loop what is durable."""
        first = pending[0][0]
        done_end = first  # the batches before it are in sealed segments
        written0 = self._written
        active = self._active
        keep = (active.size, active.end_seq) if active is not None else (0, None)
        try:
            bufs: list[bytes] = []
            end = first
            planned = 0  # bytes of bufs
            for seq, batch_end, frames in pending:
                active = self._active
                if active is None or self._fd < 0 or active.size + planned >= self.segment_bytes:
                    if bufs:
                        self._write_bufs(bufs, end)
                        bufs, planned = [], 0
                    self._roll(seq)
                    done_end = seq
                    active = self._active
                    assert active is not None
                    keep = (active.size, active.end_seq)
                bufs.append(frames)
                planned += len(frames)
                end = batch_end
            self._write_bufs(bufs, end)
            if self.fsync.mode == "always":
                self._fsync_active()
            elif self.fsync.mode == "interval" and not self._unsynced:
                self._unsynced = True
                self._sync_due = max(time.monotonic(), self._last_sync + self.fsync.interval)
        except OSError as exc:
            self._write_failed(pending, exc, done_end, keep, written0)
            return
        assert active is not None
        self._durable_end = Position(end, active.first_seq, active.size)
        self._post(self._durable, first, end)

    def _write_bufs(self, bufs: list[bytes], end_seq: int) -> None:
        active = self._active
        assert active is not None
        for i in range(0, len(bufs), _IOV_MAX):
            group = bufs[i:i + _IOV_MAX]
            want = sum(len(b) for b in group)
            done = os.writev(self._fd, group)
            if done < want:  # a short write (rare on a file): write the rest
                rest = memoryview(b"".join(group))
                while done < want:
                    n = os.write(self._fd, rest[done:])
                    if n <= 0:
                        raise OSError(f"no progress writing {active.path}")
                    done += n
            active.size += want
            self._written += want
        active.end_seq = end_seq

    def _roll(self, first_seq: int) -> None:
        """Seal the active segment (fsynced unless ``never``) and go on in a new one, or open the
        segment found at opening to append to it."""
        active = self._active
        if self._fd >= 0:
            if self._unsynced or self.fsync.mode == "always":
                self._fsync_active()
            fd, self._fd = self._fd, -1
            os.close(fd)
        elif active is not None and active.end_seq == first_seq \
                and active.size < self.segment_bytes:
            self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            return
        path = os.path.join(self.directory, files.segment_name(first_seq))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC,
                     0o644)
        try:
            head = files.segment_head(first_seq)
            os.write(fd, head)
            self._sync(self._dir_fd)
        except BaseException:
            os.close(fd)
            raise
        seg = Segment(first_seq, path, len(head), first_seq)
        self._overhead += len(head)
        self._fd = fd
        self._active = seg
        self._segments = [*self._segments, seg]

    def _fsync_active(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            self.fsyncs += 1
        self._unsynced = False
        self._last_sync = time.monotonic()

    def _write_failed(self, pending: list[tuple[int, int, bytes]], exc: OSError, done_end: int,
                      keep: tuple[int, int | None], written0: int) -> None:
        """An I/O error: the batches in sealed segments are durable, the others are failed
        (the active segment is cut back to where they began) and the spool takes no more."""
        log.error("spool %s: writing records %d to %d failed (%s): the spool takes no more "
                  "records until it is opened again", self.directory, done_end,
                  pending[-1][1] - 1, exc)
        self._fail(exc)
        active = self._active
        if active is not None and active.size > keep[0]:
            try:
                os.truncate(active.path, keep[0])
                self._freed += active.size - keep[0]
                active.size, active.end_seq = keep
            except OSError:
                pass  # left for the next opening to check
        round_bytes = sum(len(frames) for _, _, frames in pending)
        unwritten = round_bytes - (self._written - written0)
        self._written += unwritten
        self._freed += unwritten
        if done_end > pending[0][0] and active is not None:
            self._durable_end = Position(done_end, active.first_seq, SEGMENT_HEAD)
            self._post(self._durable, pending[0][0], done_end)
        self._post(self._failed, done_end, pending[-1][1], exc)

    def _drop(self, pending: list[tuple[int, int, bytes]], exc: BaseException) -> None:
        """Batches the writer will not write (the spool has failed): their bytes are given
        back, their records failed."""
        if not pending:
            return
        size = sum(len(frames) for _, _, frames in pending)
        self._written += size
        self._freed += size
        self._post(self._failed, pending[0][0], pending[-1][1], exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc

    def _checkpoint(self, ack: Position) -> None:
        try:
            files.write_checkpoint(self.directory, self._dir_fd, ack, self.fsync.mode != "never")
        except OSError as exc:
            log.error("spool %s: writing the checkpoint failed (%s): tried again in %g s",
                      self.directory, exc, CHECKPOINT_RETRY)
            self._checkpoint_retry = time.monotonic() + CHECKPOINT_RETRY
            return
        self.checkpoints += 1
        self._ack_written = ack
        self._delete_before(ack)

    def _delete_before(self, ack: Position) -> None:
        """Give back the segments whose every record is acknowledged (the active one too once
        it is: the next batch starts a new one)."""
        segs = self._segments
        for i, seg in enumerate(segs):
            if i + 1 < len(segs):
                if segs[i + 1].first_seq > ack.seq:
                    return
            elif seg.end_seq is None or ack.seq < seg.end_seq or seg.end_seq == seg.first_seq:
                return
            if seg is self._active:
                if self._fd >= 0:
                    fd, self._fd = self._fd, -1
                    os.close(fd)
                self._unsynced = False
                self._active = None
            self._remove_segment(seg)

    def _remove_segment(self, seg: Segment) -> None:
        # Counted as given back before the file goes, so that a file seen gone is never
        # still counted in stats().
        self._freed += seg.size
        self._segments = [s for s in self._segments if s is not seg]
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        log.debug("spool %s: segment %s given back (%d bytes)", self.directory,
                  os.path.basename(seg.path), seg.size)
