"""The disk spool: records kept in files while Kafka cannot take them, read back in order to be
forwarded (issue 11, "Disk spool"). It knows records and files: not HTTP, not librdkafka.

Usage (``Spool.open`` and ``close`` block: call them off the event loop)::

    spool = Spool.open(directory, max_bytes=1 << 30, fsync="100")   # or "always", "never"
    spool.start(loop, on_durable=durable, on_error=failed)
    token = spool.append(topic, records)   # SpoolFull / SpoolBusy: refused at once, retriable
    # ... durable(first, end): records first..end-1 are stored under the fsync policy;
    #     spool.durable_seq >= token: the whole batch is
    reader = spool.reader()
    batch = await reader.read(max_records, max_bytes)   # waits for records
    # ... hand batch.records to Kafka; once it has every one of them:
    reader.acknowledge(batch.end)
    spool.stats(), spool.empty, spool.holds(topic)
    await spool.aclose()

**Records.** ``append(topic, records)`` takes the splitter's tuples (gateway/produce/items.py:
partition, key, value, headers and timestamp_ms are kept; index and data types are not) of one
topic, which a produce session's batch always is (the topic is encoded once per batch). Each
record gets the spool's next sequence number: ``append`` returns the number after the batch
(its token). A record with timestamp 0 ("the gateway's clock at receipt") is stored with the
append's time, so it reaches Kafka with the time it was received, not the time it was
forwarded. Records come back from the reader as ``(seq, topic, partition, key, value,
headers, timestamp_ms)``: key, value and header values bytes or None, headers None or a list
of ``(name, value)`` with names as str (bytes if a name given as bytes is not UTF-8).

**Appending** runs on the event loop: the batch is encoded in C (ext/spool.pxi, one call per
batch: no Python call per record) into the write buffer. A writer thread writes what has
gathered with one ``writev`` per round, and fsyncs per the policy (``FsyncPolicy``):
``always``: written and fsynced before ``on_durable``; ``<ms>``: written before
``on_durable``, fsynced at most every that many ms and within that long of being written
(so a process crash loses nothing written, a system crash at most that much);
``never``: written before ``on_durable``, the OS writes back. ``on_durable(first, end)`` comes
once per round through ``loop.call_soon_threadsafe``: one call for the whole range, no future
or thread hop per record (``start()`` without a loop runs the callbacks on the writer thread:
for tools and tests). The loop thread does no write, fsync or open; the lock it shares with
the writer is held only to hand batches over.

**Bounds.** ``max_bytes`` (``--spool-max-bytes``, default 1 GiB) covers the segment files and
the write buffer: an append that does not fit raises ``SpoolFull`` at once, with nothing of
its batch spooled and nothing spooled before dropped. The write buffer is bounded by
``buffer_bytes`` (16 MiB): an append while it is over raises ``SpoolBusy`` (``buffer_full``
says so beforehand; the next ``on_durable`` says the writer caught up). Both are
``SpoolError``: 503/50003, retriable. A segment is at most ``segment_bytes`` (64 MiB; a
quarter of ``max_bytes`` when that is smaller) plus one batch: the writer starts a new
segment between batches.

**Reading and acknowledging.** ``reader.read_batch(max_records, max_bytes)`` (blocking I/O: a
thread) or ``await reader.read(...)`` (waits for records, reads in the spool's reader thread)
gives the durable records after the read position in append order, in a ``Batch`` with its
``start`` and ``end`` positions; ``reader.rewind()`` goes back to the acknowledged position.
``reader.acknowledge(batch.end)``, once Kafka has every record before it, is checkpointed by
the writer thread (the ``checkpoint`` file: written whole, fsynced, renamed; no fsync under
``never``), coalesced: one checkpoint per writer round however many acknowledgements came.
Segments wholly before the checkpointed position are then deleted and their bytes count no
more against ``max_bytes``; once everything is acknowledged the segment being appended to goes
too, so an empty spool is a directory with its checkpoint and lock file. Delivery is at least once: a
restart re-sends what was read and not acknowledged, plus the acknowledgements not yet
checkpointed (the writer's current round).

**Restarts.** ``Spool.open`` finds the acknowledged position in the checkpoint, deletes the
segments wholly before it (a crash between checkpoint and delete), and reads the last segment
through. There a record cut short, a bad checksum in the last record or zeros to the end is a
torn tail (a crash while writing): it is cut off, logged as a warning, counted in
``torn_bytes``, and appending resumes after the last good record with the next sequence
number. Sequence numbers are never reused: they go on from the checkpoint when it is ahead of
the records (a system crash lost writes not yet fsynced under ``<ms>`` or ``never``).

**Corruption** that is not a torn tail (a bad record with more data after it) cannot be
repaired; the spool keeps what it can and says what it lost:

- in the last segment, at opening: the segment is cut at the bad record (the records after it
  are lost), logged as an error, counted in ``corrupt_total``;
- in any other segment, met by the reader: the rest of that segment is skipped and reading goes
  on at the next one; the records skipped are known from the sequence numbers (the next
  segment's name is its first one), logged as an error and counted in
  ``records_lost_total``. A segment whose head is bad is skipped whole.

**Visible.** ``stats()`` gives records and bytes spooled (totals), records forwarded
(acknowledged, total), records and bytes now, the age of the oldest record not acknowledged
(from marks of the append times kept at most every 100 ms: an upper bound, that close;
coarser past 4096 marks), refusals, losses, fsyncs. ``holds(topic)`` is true while a record of
that topic is spooled and not acknowledged (after a restart, for every topic until the records
found at opening are all acknowledged): what keeping a topic's order needs to know.
``await sync()`` waits until every record appended so far is durable.

**Checksum: CRC32C**, computed in the extension with the CPU's crc32 instruction (SSE4.2;
a slicing-by-8 table elsewhere). Measured on this 2-core machine (other work running, so
ranges), one Python call per 130-150-byte record: ``zlib.crc32`` 250-390 ns, ``crc32c``
(PyPI) 180-340 ns, ``google-crc32c`` 145-330 ns, ``xxhash.xxh32`` 130-175 ns, ``xxh3_64``
65-125 ns, plus 100-150 ns to slice the record out of a read buffer (``google-crc32c`` takes
bytes only). On 1 MiB: ``crc32c`` 13-20 GB/s, ``xxh3`` 50 GB/s, ``google-crc32c`` and ``xxh32``
5 GB/s, ``zlib`` 1.4-2.5 GB/s. For 100-byte records the call, not the hash, is the cost: 0.2-0.5
µs per record and per direction, up to a third of the whole produce path's 1.5 µs. So none of
them is called per record: the checksum is computed where the frame is built and checked
where it is read, in C. CRC32C because Kafka's own record batches use it (a known polynomial:
``crc32c`` from PyPI gives the same values; the tests check the standard vectors) and because
the instruction makes it nearly free: checking a whole 153-byte frame, checksum and fields,
takes about 30 ns. The table keeps it portable; no package is added for it. ``python -m
bench.spool`` measures the engine.
"""

from __future__ import annotations

from gateway.produce.spool.engine import (
    DEFAULT_BUFFER_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_SEGMENT_BYTES,
    FsyncPolicy,
    Spool,
    SpoolStats,
)
from gateway.produce.spool.errors import SpoolBusy, SpoolError, SpoolFull
from gateway.produce.spool.files import Position
from gateway.produce.spool.reader import Batch, SpooledRecord, SpoolReader

__all__ = [
    "DEFAULT_BUFFER_BYTES",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SEGMENT_BYTES",
    "Batch",
    "FsyncPolicy",
    "Position",
    "Spool",
    "SpoolBusy",
    "SpoolError",
    "SpoolFull",
    "SpoolReader",
    "SpoolStats",
    "SpooledRecord",
]
