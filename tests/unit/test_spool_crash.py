"""A process that spools records is killed (SIGKILL) at a random moment: opened again, the spool
has every record that was reported durable, intact, and appending goes on after them.

The child appends batches on a uvloop event loop as the gateway would and writes, from its
``on_durable`` callback, the sequence number up to which records are durable to a pipe; the
parent kills it at a random moment after a random number of reports. With ``always`` a
reported record is on disk; with a number of milliseconds it is at least in the kernel's page
cache, which a killed process does not lose either. Each round reopens the same directory,
so later rounds also check that appending resumes cleanly after a crash (the torn tail the
previous kill may have left is dropped).
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.produce.spool import Spool

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, os, sys
import uvloop
from gateway.produce.spool import Spool, SpoolBusy

directory, policy, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = os.fdopen(1, "w", buffering=1)

def record(seq):
    return (0, seq % 4 - 1, b"key-%d" % seq, b"value-%d-" % seq + bytes(seq % 200),
            [("seq", b"%d" % seq)] if seq % 2 else None, 1_000_000 + seq, None, None)

async def main():
    spool = Spool.open(directory, fsync=policy, segment_bytes=64 * 1024, max_bytes=1 << 30)
    spool.start(asyncio.get_running_loop(), on_durable=lambda first, end: out.write(f"{end}\n"))
    out.write(f"start {spool.next_seq}\n")
    n = seed % 7
    while True:
        n = (n * 31 + 7) % 50
        first = spool.next_seq
        try:
            spool.append("crash", [record(s) for s in range(first, first + 1 + n)])
        except SpoolBusy:  # the writer is behind: wait for it, as a stream would
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)

uvloop.run(main())
"""


def record(seq: int) -> tuple:
    return (seq, "crash", seq % 4 - 1, b"key-%d" % seq, b"value-%d-" % seq + bytes(seq % 200),
            [("seq", b"%d" % seq)] if seq % 2 else None, 1_000_000 + seq)


def crash_round(directory: Path, policy: str, rnd: random.Random) -> tuple[int, int]:
    """Run the child until it has reported a random number of durable batches, then kill it at
    once; (the first sequence number it appended, the highest it reported durable)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), policy,
                             str(rnd.randrange(1000))],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        start = proc.stdout.readline().decode()
        assert start.startswith("start "), start + proc.stderr.read().decode()  # type: ignore[union-attr]
        first = int(start.split()[1])
        # Killed after a random number of reports, or a random time after the first one.
        reports = rnd.randint(5, 300)
        durable = first
        fd = proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + 20
        kill_at = None
        while reports > 0 and (kill_at is None or time.monotonic() < kill_at):
            assert time.monotonic() < deadline, "the child reports too slowly"
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            assert chunk, proc.stderr.read().decode()  # type: ignore[union-attr]
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                durable = max(durable, int(line))
                reports -= 1
            if kill_at is None and durable > first:
                kill_at = time.monotonic() + rnd.uniform(0.05, 0.5)
        # A little more time, so that the kill lands anywhere in a write round.
        time.sleep(rnd.random() * 0.01)
        os.kill(proc.pid, signal.SIGKILL)
        # What it reported before dying counts too.
        rest = proc.stdout.read()
        for line in (buf + rest).split(b"\n"):
            if line.strip():
                durable = max(durable, int(line))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return first, durable


@pytest.mark.parametrize("policy, rounds", [("always", 3), ("50", 2)])
def test_every_record_reported_durable_survives_sigkill(tmp_path: Path, policy: str,
                                                        rounds: int) -> None:
    rnd = random.Random(f"{policy}-{os.getpid()}-{time.time_ns()}")
    directory = tmp_path / "spool"
    reported = 0
    for _ in range(rounds):
        first, durable = crash_round(directory, policy, rnd)
        assert first >= reported  # numbering resumed after every record kept
        assert durable > first
        reported = durable
    spool = Spool.open(str(directory))
    try:
        spool.start()
        reader = spool.reader()
        got = []
        while True:
            batch = reader.read_batch(5000, 1 << 22)
            if not batch.records:
                break
            got += batch.records
        # Every record reported durable is there, intact, in order, once; so is everything
        # before the last one kept.
        assert len(got) >= reported
        assert [r[0] for r in got] == list(range(len(got)))
        assert got == [record(s) for s in range(len(got))]
        st = spool.stats()
        assert st.records_lost_total == 0 and st.corrupt_total == 0
    finally:
        spool.close()
