"""The disk spool's engine (gateway/produce/spool): appending under each fsync policy, the
bound, reading back and acknowledging, the checkpoint, restarts, torn tails and corruption.

Every test runs the spool as the gateway does: appends and acknowledgements on a uvloop event
loop, the writer and reader threads of the spool doing the file I/O. What a test checks is what
a user of the spool sees: the records read back (every field), the callbacks, the errors, the
files in the directory, the figures of ``stats()``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

import gateway.produce.spool.files as files
from gateway.produce.spool import (
    Batch,
    FsyncPolicy,
    Position,
    Spool,
    SpoolBusy,
    SpoolError,
    SpoolFull,
)

HEAD = files.SEGMENT_HEAD


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 30))
    finally:
        loop.close()


def record(seq: int, size: int = 20, topic_tag: str = "") -> tuple:
    """The splitter's tuple of a record whose content says its sequence number."""
    value = (b"value-%d-" % seq).ljust(size, b"x")
    return (0, seq % 3 - 1, b"key-%d" % seq, value, [("seq", b"%d" % seq), ("null", None)],
            1_000_000 + seq, "BINARY", "BINARY")


def expected(seq: int, topic: str = "t", size: int = 20) -> tuple:
    r = record(seq, size)
    return (seq, topic, r[1], r[2], r[3], r[4], r[5])


OPENED: list[Spool] = []


class Harness:
    """A spool open in ``path`` and started on the running loop, with what its callbacks told."""

    def __init__(self, path: Path, **options: Any) -> None:
        options.setdefault("fsync", "never")
        self.spool = Spool.open(str(path), **options)
        OPENED.append(self.spool)
        self.durable: list[tuple[int, int]] = []
        self.errors: list[tuple[int, int, BaseException]] = []
        self.on_durable: Callable[[int, int], None] | None = None

    def start(self) -> Harness:
        def durable(first: int, end: int) -> None:
            self.durable.append((first, end))
            if self.on_durable is not None:
                self.on_durable(first, end)

        self.spool.start(asyncio.get_running_loop(), on_durable=durable,
                         on_error=lambda a, b, e: self.errors.append((a, b, e)))
        return self

    def append(self, n: int, topic: str = "t", size: int = 20) -> int:
        first = self.spool.next_seq
        return self.spool.append(topic, [record(s, size) for s in range(first, first + n)])

    async def read_all(self, max_records: int = 1000, ack: bool = True) -> list[tuple]:
        out: list[tuple] = []
        reader = self.spool.reader()
        while reader.position.seq < self.spool.durable_seq:
            batch = await reader.read(max_records)
            out += batch.records
            if ack:
                reader.acknowledge(batch.end)
        return out


def segments(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.suffix == ".seg")


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool"


# -- round trip -------------------------------------------------------------------------------


def test_every_field_round_trips_through_the_files_and_a_restart(path: Path) -> None:
    big = os.urandom(300_000)
    batches = [
        ("t", [record(0), record(1)]),
        ("other-tópic", [(0, -1, None, None, None, 0, None, None),
                         (5, 7, b"", b"", [], 42, "JSON", "STRING"),
                         (6, 0, b"k", big, [("a", None), ("b", b""), ("é", b"\x00")], -3,
                          None, None)]),
        ("t", [record(5)]),
    ]
    want = [expected(0), expected(1),
            (2, "other-tópic", -1, None, None, None, 1_700_000_000_000),
            (3, "other-tópic", 7, b"", b"", [], 42),
            (4, "other-tópic", 0, b"k", big, [("a", None), ("b", b""), ("é", b"\x00")], -3),
            (5, "t", *expected(5)[2:])]

    async def first() -> None:
        h = Harness(path, clock=lambda: 1_700_000_000.0).start()
        tokens = [h.spool.append(topic, recs) for topic, recs in batches]
        assert tokens == [2, 5, 6]
        await h.spool.sync()
        assert h.durable[-1][1] == 6 and h.spool.durable_seq == 6
        assert await h.read_all(ack=False) == want
        assert not h.spool.empty
        await h.spool.aclose()

    async def again() -> None:
        h = Harness(path).start()
        assert await h.read_all(max_records=2) == want  # nothing acknowledged: all again
        await until(lambda: h.spool.empty, "the acknowledgements")
        assert h.append(1) == 7  # numbering goes on
        await h.spool.aclose()

    run(first())
    run(again())


def test_zero_timestamp_is_the_time_of_the_append(path: Path) -> None:
    async def main() -> None:
        h = Harness(path, clock=lambda: 1234.5678).start()
        h.spool.append("t", [(0, -1, None, b"v", None, 0, None, None)])
        await h.spool.sync()
        assert (await h.read_all())[0][6] == 1_234_567
        await h.spool.aclose()

    run(main())


# -- fsync policies ---------------------------------------------------------------------------


class FsyncAudit:
    """Wraps os.fsync: for each file, the size it had when last fsynced; ``block`` holds the
    fsyncs of segment files until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synced: dict[str, int] = {}
        self.times: list[float] = []
        self.calls: list[str] = []
        self.block = threading.Event()
        self.block.set()
        real = os.fsync

        def fsync(fd: int) -> None:
            name = os.readlink(f"/proc/self/fd/{fd}")
            if name.endswith(".seg"):
                self.block.wait()
                self.times.append(time.monotonic())
            size = os.fstat(fd).st_size
            real(fd)
            self.synced[name] = size
            self.calls.append(name)

        monkeypatch.setattr(os, "fsync", fsync)

    def durable_seqs(self, path: Path) -> set[int]:
        """Sequence numbers of the records wholly in fsynced bytes of their segments."""
        seqs: set[int] = set()
        for name in segments(path):
            full = str(path / name)
            data = (path / name).read_bytes()[: self.synced.get(full, 0)]
            first = files.segment_seq(name)
            assert first is not None
            out: list[tuple] = []
            files.spool_decode(data, HEAD, len(data), first, 1 << 40, 1 << 40, out)
            seqs.update(r[0] for r in out)
        return seqs

    def segment_calls(self) -> list[str]:
        return [c for c in self.calls if c.endswith(".seg")]


def test_fsync_always_reports_only_fsynced_records(path: Path, monkeypatch) -> None:
    audit = FsyncAudit(monkeypatch)

    async def main() -> None:
        h = Harness(path, fsync="always", segment_bytes=4096)
        checked: list[int] = []

        def on_durable(first: int, end: int) -> None:
            # At the moment the loop hears of them, every record reported is fsynced.
            synced = audit.durable_seqs(path)
            assert set(range(first, end)) <= synced
            checked.append(end)

        h.on_durable = on_durable
        h.start()
        for i in range(60):
            h.append(1 + i % 5, size=100)
            if i % 7 == 0:
                await asyncio.sleep(0.002)
        await h.spool.sync()
        assert checked[-1] == h.spool.next_seq
        assert len(segments(path)) > 2  # the checks crossed segments
        # A record is not reported while its fsync is held.
        audit.block.clear()
        token = h.append(3)
        await asyncio.sleep(0.2)
        assert h.spool.durable_seq < token
        audit.block.set()
        await h.spool.sync()
        assert h.spool.durable_seq == token
        await h.spool.aclose()

    run(main())


@pytest.mark.parametrize("policy", ["never", "200"])
def test_other_policies_report_written_records_without_waiting_for_fsync(
        path: Path, monkeypatch, policy: str) -> None:
    audit = FsyncAudit(monkeypatch)
    audit.block.clear()  # any fsync of a segment would hang

    async def main() -> None:
        h = Harness(path, fsync=policy).start()
        token = h.append(5)
        await until(lambda: h.spool.durable_seq == token, "the durable report")
        assert await h.read_all() == [expected(s) for s in range(5)]  # readable at once
        audit.block.set()
        await h.spool.aclose()

    run(main())
    if policy == "never":
        assert audit.calls == []  # not a segment, not the checkpoint, not the directory


def test_fsync_interval_spaces_fsyncs_and_syncs_what_was_written(path: Path, monkeypatch) -> None:
    audit = FsyncAudit(monkeypatch)
    interval = 0.15

    async def main() -> None:
        h = Harness(path, fsync=str(int(interval * 1000))).start()
        t_end = time.monotonic() + 0.8
        while time.monotonic() < t_end:
            h.append(10)
            await asyncio.sleep(0.005)
        last = h.spool.next_seq
        await h.spool.sync()
        # Fsynced within the interval of being written, with no append to prompt it.
        await until(lambda: audit.durable_seqs(path) >= set(range(last)), "the last fsync",
                    timeout=5 * interval + 2)
        await h.spool.aclose()

    run(main())
    gaps = [b - a for a, b in zip(audit.times, audit.times[1:], strict=False)]
    assert len(audit.times) >= 3
    assert min(gaps) >= interval - 0.002, gaps


def test_fsync_policy_parsing() -> None:
    assert FsyncPolicy.parse("always") == FsyncPolicy("always")
    assert FsyncPolicy.parse(" NEVER ") == FsyncPolicy("never")
    assert FsyncPolicy.parse("100") == FsyncPolicy("interval", 0.1)
    assert str(FsyncPolicy.parse("250")) == "250" and str(FsyncPolicy("always")) == "always"
    for bad in ("", "0", "-5", "1.5", "sometimes", "3600001"):
        with pytest.raises(ValueError, match="'always', 'never' or a number of milliseconds"):
            FsyncPolicy.parse(bad)


# -- bounds -----------------------------------------------------------------------------------


def test_full_refuses_at_once_drops_nothing_and_gives_space_back(path: Path) -> None:
    async def main() -> None:
        h = Harness(path, max_bytes=16384, segment_bytes=4096, fsync="never").start()
        accepted = 0
        with pytest.raises(SpoolFull) as info:
            while True:
                accepted = h.append(7, size=60)
        assert (info.value.status, info.value.error_code) == (503, 50003)
        assert "spool full" in info.value.message
        assert h.spool.next_seq == accepted  # the refused batch took no sequence number
        st = h.spool.stats()
        assert st.bytes <= 16384 and st.refused_full_total == 7
        # A batch that does not fit is refused whole, even when a smaller one would fit.
        with pytest.raises(SpoolFull):
            h.append(1, size=20000)
        await h.spool.sync()
        # Nothing already spooled was dropped.
        got = await h.read_all(max_records=5, ack=False)
        assert got == [expected(s, size=60) for s in range(accepted)]
        # Acknowledged: the segments go, their bytes no longer count.
        h.spool.reader().acknowledge(h.spool.reader().position)
        await until(lambda: segments(path) == [], "the segments to be deleted")
        assert h.spool.stats().bytes == 0 and h.spool.stats().records == 0
        assert h.append(7, size=60) == accepted + 7
        await h.spool.aclose()

    run(main())


def test_a_full_write_buffer_refuses_and_recovers(path: Path, monkeypatch) -> None:
    gate = threading.Event()
    real = os.writev

    def slow_writev(fd: int, bufs: list[bytes]) -> int:
        gate.wait()
        return real(fd, bufs)

    monkeypatch.setattr(os, "writev", slow_writev)

    async def main() -> None:
        h = Harness(path, buffer_bytes=1000).start()
        first = h.append(10, size=100)  # over the bound now, held by the writer
        assert h.spool.buffer_full
        with pytest.raises(SpoolBusy):
            h.append(1)
        assert h.spool.stats().refused_busy_total == 1
        gate.set()
        await h.spool.sync()
        assert not h.spool.buffer_full and h.durable[-1][1] == first
        h.append(1, size=100)
        await h.spool.sync()
        assert await h.read_all() == [expected(s, size=100) for s in range(11)]
        await h.spool.aclose()

    run(main())


# -- acknowledging, the checkpoint ------------------------------------------------------------


def test_reopening_resumes_after_the_checkpoint(path: Path) -> None:
    async def first() -> Position:
        h = Harness(path, segment_bytes=2048).start()
        h.append(100)
        await h.spool.sync()
        reader = h.spool.reader()
        batch = await reader.read(30)
        assert [r[0] for r in batch.records] == list(range(30))
        reader.acknowledge(batch.end)
        more = await reader.read(10)  # read, not acknowledged: sent again after a restart
        assert more.start == batch.end
        await h.spool.aclose()
        return batch.end

    async def second(acked: Position) -> None:
        h = Harness(path).start()
        assert h.spool.acknowledged == acked
        assert h.spool.reader().position == acked
        assert await h.read_all() == [expected(s) for s in range(30, 100)]
        assert h.spool.stats().records_forwarded_total == 70
        await h.spool.aclose()

    run(second(run(first())))


def test_a_crash_between_acknowledgement_and_checkpoint_sends_that_batch_again(
        path: Path, tmp_path: Path, monkeypatch) -> None:
    """The directory as a crash would leave it, copied while the writer is about to checkpoint
    the second acknowledgement: opened again, the reader starts after the first batch."""
    crash = tmp_path / "crash"
    real = files.write_checkpoint
    calls: list[Position] = []

    def write_checkpoint(directory: str, dir_fd: int, pos: Position, sync: bool) -> None:
        calls.append(pos)
        if len(calls) == 2:
            shutil.copytree(directory, crash)
        real(directory, dir_fd, pos, sync)

    monkeypatch.setattr(files, "write_checkpoint", write_checkpoint)

    async def before() -> tuple[Batch, Batch]:
        h = Harness(path, fsync="always").start()
        h.append(50)
        await h.spool.sync()
        reader = h.spool.reader()
        b1 = await reader.read(20)
        reader.acknowledge(b1.end)
        await until(lambda: len(calls) == 1, "the first checkpoint")
        b2 = await reader.read(20)
        reader.acknowledge(b2.end)
        await until(lambda: len(calls) == 2, "the second checkpoint")
        await h.spool.aclose()
        return b1, b2

    async def after(b1: Batch, b2: Batch) -> None:
        h = Harness(crash, fsync="always").start()
        assert h.spool.acknowledged.seq == b1.end.seq
        again = await h.spool.reader().read(1000)
        assert again.records[: len(b2.records)] == b2.records  # the batch in flight, again
        assert [r[0] for r in again.records] == list(range(20, 50))
        await h.spool.aclose()

    run(after(*run(before())))


def test_acknowledging_more_than_was_read_is_refused(path: Path) -> None:
    async def main() -> None:
        h = Harness(path).start()
        h.append(10)
        await h.spool.sync()
        reader = h.spool.reader()
        batch = await reader.read(4)
        with pytest.raises(ValueError, match="only records up to 3 were read"):
            reader.acknowledge(Position(5, 0, 999))
        reader.acknowledge(batch.end)
        reader.acknowledge(batch.start)  # older: ignored
        assert h.spool.acknowledged == batch.end
        # rewind: read again from the acknowledged position
        await reader.read(3)
        reader.rewind()
        assert [r[0] for r in (await reader.read(100)).records] == list(range(4, 10))
        await h.spool.aclose()

    run(main())


def test_many_segments_read_in_order_and_given_back(path: Path) -> None:
    async def main() -> None:
        h = Harness(path, segment_bytes=1024).start()
        for _ in range(50):
            h.append(10, size=30)
        await h.spool.sync()
        count = len(segments(path))
        assert count >= 40
        assert h.spool.stats().segments == count
        reader = h.spool.reader()
        got: list[tuple] = []
        seen_counts = []
        while not h.spool.empty:
            batch = await reader.read(7, max_bytes=2000)
            assert 0 < len(batch.records) <= 7 and batch.nbytes <= 2000
            got += batch.records
            reader.acknowledge(batch.end)
            await asyncio.sleep(0)
            seen_counts.append(len(segments(path)))
        assert got == [expected(s, size=30) for s in range(500)]
        # (the writer thread unlinks a segment, then counts its bytes freed)
        await until(lambda: segments(path) == [] and h.spool.stats().bytes == 0,
                    "every segment to be given back")
        assert seen_counts == sorted(seen_counts, reverse=True)  # given back as they go
        st = h.spool.stats()
        assert (st.records, st.bytes, st.records_forwarded_total) == (0, 0, 500)
        assert sorted(os.listdir(path)) == ["checkpoint", "lock"]
        await h.spool.aclose()

    run(main())


def test_a_restart_with_records_pending_forwards_them(path: Path) -> None:
    async def first() -> None:
        h = Harness(path, segment_bytes=2048).start()
        h.append(40, topic="a")
        h.append(40, topic="b")
        assert h.spool.holds("a") and h.spool.holds("b") and not h.spool.holds("c")
        await h.spool.aclose()

    async def second() -> None:
        h = Harness(path).start()
        st = h.spool.stats()
        assert (st.records, st.records_spooled_total) == (80, 0)
        # Records of before the restart: every topic is held until they are all forwarded.
        assert h.spool.holds("c") and not h.spool.empty
        got = await h.read_all(max_records=25)
        assert [r[0] for r in got] == list(range(80))
        assert [r[1] for r in got] == ["a"] * 40 + ["b"] * 40
        await until(lambda: h.spool.empty, "the acknowledgements")
        assert not h.spool.holds("c")
        h.append(1, topic="c")
        assert h.spool.holds("c") and not h.spool.holds("a")
        await h.spool.aclose()

    run(first())
    run(second())


# -- torn tails and corruption ----------------------------------------------------------------


def make_segment(path: Path, n: int, size: int = 20) -> None:
    async def main() -> None:
        h = Harness(path).start()
        for _ in range(n):
            h.append(1, size=size)
        await h.spool.aclose()

    run(main())


def test_a_torn_tail_cut_at_every_byte_is_dropped_and_appending_resumes(
        path: Path, tmp_path: Path, caplog) -> None:
    make_segment(path, 4, size=40)
    [name] = segments(path)
    data = (path / name).read_bytes()
    last = HEAD + 3 * (len(data) - HEAD) // 4  # where the 4th record begins
    work = tmp_path / "work"

    async def check(cut: int) -> None:
        if work.exists():
            shutil.rmtree(work)
        shutil.copytree(path, work)
        (work / name).write_bytes(data[:cut])
        h = Harness(work).start()
        assert h.spool.stats().torn_bytes == cut - last
        assert h.spool.next_seq == 3
        h.append(2, size=40)
        await h.spool.sync()
        got = await h.read_all()
        assert got == [expected(s, size=40) for s in range(5)], cut
        await h.spool.aclose()

    caplog.set_level(logging.WARNING, "gateway.spool")
    for cut in range(last, len(data)):
        run(check(cut))
    assert sum("torn tail" in r.message for r in caplog.records) == len(data) - last - 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_tail_of_zeros_is_torn_too(path: Path, caplog) -> None:
    """What a system crash can leave: the file longer than what reached the disk."""
    make_segment(path, 3)
    [name] = segments(path)
    with open(path / name, "ab") as f:
        f.write(bytes(5000))

    async def main() -> None:
        h = Harness(path).start()
        assert h.spool.stats().torn_bytes == 5000
        h.append(1)
        await h.spool.sync()
        assert await h.read_all() == [expected(s) for s in range(4)]
        await h.spool.aclose()

    run(main())
    assert "torn tail" in caplog.text


def flip(file: Path, offset: int) -> None:
    data = bytearray(file.read_bytes())
    data[offset] ^= 0x40
    file.write_bytes(bytes(data))


def test_corruption_inside_the_last_segment_cuts_it_there(path: Path, caplog) -> None:
    make_segment(path, 6)
    [name] = segments(path)
    size = ((path / name).stat().st_size - HEAD) // 6
    flip(path / name, HEAD + 2 * size + 20)  # inside the third record's body

    async def main() -> None:
        h = Harness(path).start()
        st = h.spool.stats()
        assert (st.corrupt_total, st.torn_bytes, h.spool.next_seq) == (1, 0, 2)
        h.append(1)
        await h.spool.sync()
        assert await h.read_all() == [expected(0), expected(1), expected(2)]
        await h.spool.aclose()

    caplog.set_level(logging.WARNING, "gateway.spool")
    run(main())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "bad checksum" in errors[0].message
    assert "4 * size bytes" not in errors[0].message and f"{4 * size} bytes" in errors[0].message


def test_a_bad_checksum_in_an_older_segment_skips_the_rest_of_it(path: Path, caplog) -> None:
    async def write() -> None:
        h = Harness(path, segment_bytes=1024).start()
        for _ in range(30):
            h.append(1, size=100)
        await h.spool.aclose()

    run(write())
    names = segments(path)
    assert len(names) >= 4
    second = path / names[1]
    first_seq = files.segment_seq(names[1])
    next_seq = files.segment_seq(names[2])
    assert first_seq is not None and next_seq is not None
    in_segment = next_seq - first_seq
    size = (second.stat().st_size - HEAD) // in_segment
    flip(second, HEAD + size + 30)  # its second record

    async def read() -> None:
        h = Harness(path).start()
        got = await h.read_all(max_records=4)
        seqs = [r[0] for r in got]
        lost = set(range(first_seq + 1, next_seq))
        assert seqs == [s for s in range(30) if s not in lost]
        assert got == [expected(s, size=100) for s in seqs]
        st = h.spool.stats()
        assert (st.records_lost_total, st.corrupt_total) == (len(lost), 1)
        assert st.records_forwarded_total == 30 - len(lost) and h.spool.empty
        await h.spool.aclose()

    caplog.set_level(logging.ERROR, "gateway.spool")
    run(read())
    [err] = caplog.records
    assert "bad checksum" in err.message and f"{in_segment - 1} records lost" in err.message


def test_a_segment_with_a_bad_head_is_skipped_whole(path: Path, caplog) -> None:
    async def write() -> None:
        h = Harness(path, segment_bytes=1024).start()
        for _ in range(20):
            h.append(1, size=100)
        await h.spool.aclose()

    run(write())
    names = segments(path)
    flip(path / names[0], 2)
    skipped = files.segment_seq(names[1])
    assert skipped is not None

    async def read() -> None:
        h = Harness(path).start()
        assert [r[0] for r in await h.read_all()] == list(range(skipped, 20))
        assert h.spool.stats().records_lost_total == skipped
        await h.spool.aclose()

    run(read())
    assert "a bad segment head" in caplog.text


def test_an_unusable_checkpoint_starts_again_at_the_first_record(path: Path, caplog) -> None:
    async def first() -> None:
        h = Harness(path).start()
        h.append(10)
        await h.spool.sync()
        batch = await h.spool.reader().read(5)
        h.spool.reader().acknowledge(batch.end)
        await h.spool.aclose()

    run(first())
    flip(path / "checkpoint", 12)

    async def second() -> None:
        h = Harness(path).start()
        assert [r[0] for r in await h.read_all()] == list(range(10))  # at least once
        await h.spool.aclose()

    run(second())
    assert "checkpoint unusable (bad checksum)" in caplog.text


def test_a_checkpoint_past_the_records_keeps_numbers_going_up(path: Path, caplog) -> None:
    """After a system crash under `never`, records the forwarder had acknowledged may be gone
    from the segment: nothing is read twice and no number is used again."""
    make_segment(path, 5)
    fd = os.open(path, os.O_RDONLY)
    try:
        files.write_checkpoint(str(path), fd, Position(9, 0, 9999), sync=False)
    finally:
        os.close(fd)

    async def main() -> None:
        h = Harness(path).start()
        assert h.spool.empty and h.spool.next_seq == 9
        assert segments(path) == []
        assert h.append(2) == 11
        await h.spool.sync()
        assert [r[0] for r in await h.read_all()] == [9, 10]
        await h.spool.aclose()

    run(main())
    assert "past the last record" in caplog.text


def test_a_checkpoint_that_names_a_record_but_not_its_place_is_found(path: Path) -> None:
    make_segment(path, 6)
    fd = os.open(path, os.O_RDONLY)
    try:  # record 4, at an offset that is not where it is
        files.write_checkpoint(str(path), fd, Position(4, 0, 10**9), sync=False)
    finally:
        os.close(fd)

    async def main() -> None:
        h = Harness(path).start()
        assert h.spool.acknowledged.seq == 4
        assert await h.read_all() == [expected(4), expected(5)]
        await h.spool.aclose()

    run(main())


# -- failures ---------------------------------------------------------------------------------


def test_a_write_error_fails_the_records_and_stops_appends(path: Path, monkeypatch, caplog) -> None:
    real = os.writev
    broken = threading.Event()

    def writev(fd: int, bufs: list[bytes]) -> int:
        if broken.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, bufs)

    monkeypatch.setattr(os, "writev", writev)

    async def main() -> None:
        h = Harness(path, fsync="always").start()
        h.append(5)
        await h.spool.sync()
        broken.set()
        token = h.append(3)
        await until(lambda: h.errors != [], "the error callback")
        [(first, end, exc)] = h.errors
        assert (first, end) == (5, token) and isinstance(exc, OSError)
        assert h.spool.stats().failed and h.spool.durable_seq == 5
        with pytest.raises(SpoolError, match="failed"):
            h.append(1)
        with pytest.raises(SpoolError):
            await h.spool.sync()
        # What was durable is still read and forwarded.
        assert await h.read_all() == [expected(s) for s in range(5)]
        await h.spool.aclose()

    run(main())
    assert "No space left on device" in caplog.text
    broken.clear()

    async def reopened() -> None:
        h = Harness(path).start()
        assert h.spool.next_seq == 5 and h.spool.empty
        assert h.append(1) == 6
        await h.spool.aclose()

    run(reopened())


def test_a_directory_that_cannot_be_used_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SpoolError, match="spool directory .*file"):
        Spool.open(str(tmp_path / "file"))


def test_one_process_at_a_time(path: Path) -> None:
    async def main() -> None:
        h = Harness(path).start()
        with pytest.raises(SpoolError, match="in use by another process"):
            Spool.open(str(path))
        await h.spool.aclose()
        again = Spool.open(str(path))  # free again
        again.close()

    run(main())


def test_closed_spool_refuses_and_ends_a_waiting_read(path: Path) -> None:
    async def main() -> None:
        h = Harness(path).start()
        h.append(2)
        reader = h.spool.reader()
        assert len((await reader.read()).records) == 2
        waiting = asyncio.ensure_future(reader.read())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # no record to read: it waits
        h.append(1)
        assert [r[0] for r in (await waiting).records] == [2]  # woken by the append
        waiting = asyncio.ensure_future(reader.read())
        await asyncio.sleep(0.01)
        await h.spool.aclose()
        with pytest.raises(SpoolError, match="closed"):
            await waiting
        with pytest.raises(SpoolError, match="closed"):
            h.append(1)

    run(main())


# -- figures ----------------------------------------------------------------------------------


def test_stats_count_and_age(path: Path) -> None:
    now = [1000.0]

    async def main() -> None:
        h = Harness(path, clock=lambda: now[0]).start()
        st = h.spool.stats()
        assert (st.records, st.bytes, st.oldest_age_seconds) == (0, 0, 0.0)
        h.append(3)
        now[0] += 5
        h.append(2)
        now[0] += 2
        await h.spool.sync()
        st = h.spool.stats()
        frames = st.bytes_spooled_total
        assert (st.records_spooled_total, st.records, st.records_forwarded_total) == (5, 5, 0)
        assert st.bytes == frames + HEAD and st.segments == 1 and st.buffered_bytes == 0
        assert st.oldest_age_seconds == pytest.approx(7.0)
        reader = h.spool.reader()
        reader.acknowledge((await reader.read(3)).end)  # the first append's records
        st = h.spool.stats()
        assert (st.records, st.records_forwarded_total) == (2, 3)
        assert st.oldest_age_seconds == pytest.approx(2.0)
        reader.acknowledge((await reader.read(3)).end)
        assert h.spool.stats().oldest_age_seconds == 0.0
        await h.spool.aclose()

    run(main())


def test_the_age_survives_a_restart(path: Path) -> None:
    async def first() -> None:
        h = Harness(path, clock=lambda: 5000.0).start()
        h.append(2)
        await h.spool.aclose()

    async def second() -> None:
        h = Harness(path, clock=lambda: 5060.0).start()
        assert h.spool.stats().oldest_age_seconds == pytest.approx(60.0)
        await h.spool.aclose()

    run(first())
    run(second())


def test_segment_file_format(path: Path) -> None:
    make_segment(path, 2)
    [name] = segments(path)
    assert name == "00000000000000000000.seg"
    data = (path / name).read_bytes()
    assert data[:16] == b"KGSPOOL1" + struct.pack("<Q", 0)
    out: list[tuple] = []
    files.spool_decode(data, HEAD, len(data), 0, 100, 1 << 30, out)
    assert out == [expected(0), expected(1)]


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Every spool a test opened is closed: no writer or reader thread outlives it. (A test
    that failed half-way has its spools closed here, so that the next test starts clean.)"""
    yield
    left = [sp for sp in OPENED if not sp._closed]
    for sp in left:
        sp.close()
    OPENED.clear()
    assert [sp.directory for sp in left] == []
    assert [t.name for t in threading.enumerate() if t.name.startswith("spool-")] == []
