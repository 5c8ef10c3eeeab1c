"""A stand-in for ``gateway._speedups.RdConsumer`` (docs: notes of issue 12's design, and
gateway/_speedups.pyi) over an in-memory cluster, for unit tests of what drives a consumer.

``FakeCluster`` holds topics (partitions of records) and the offsets each group committed.
``FakeRdConsumer`` is one consumer of it with the real one's surface: subscribe (one member:
it gets every partition) or assign, pause/resume, ``fetch`` in the stream formats (byte-exact
as the design gives them), offsets remembered by ``fetch(store=False)`` and stored by
``store_pending``, commit of what is stored at close when auto commit is on, an eventfd that
becomes readable when records (or errors) come to an empty queue, as librdkafka's does
(``fetch`` drains it; records it leaves make no new wake-up), errors for ``take_errors``.

Prefetch is modelled by ``prefetch``: at most that many records of unpaused partitions count as
queued (``queued()``) and can be fetched at once; the rest come as the queue empties. Every
call is recorded in ``calls`` (name, args) for tests that check what was asked, and when.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway._speedups import RdKafkaError
from support.fake_consumer import _is_json

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001
ERR_AUTO_OFFSET_RESET = -140
ERR_VALUE_DESERIALIZATION = -159


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


class FakeCluster:
    def __init__(self) -> None:
        self.topics: dict[str, list[list[Record]]] = {}
        self.committed: dict[tuple[str, str, int], int] = {}  # (group, topic, partition) -> offset
        self.consumers: list[FakeRdConsumer] = []
        self.prefetch = 1000  # of the consumers made by factory()

    def create(self, topic: str, partitions: int) -> None:
        self.topics[topic] = [[] for _ in range(partitions)]

    def produce(self, topic: str, partition: int, value: bytes | None, key: bytes | None = None,
                headers: Sequence[tuple[str, bytes | None]] = (), timestamp_ms: int = 1764658800123
                ) -> int:
        log = self.topics[topic][partition]
        log.append(Record(key, value, timestamp_ms, list(headers)))
        for c in list(self.consumers):
            c._arrived(topic, partition)
        return len(log) - 1

    def factory(self, config: dict[str, Any]) -> FakeRdConsumer:
        return FakeRdConsumer(config, self, self.prefetch)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _timestamp(ms: int) -> str:
    t = datetime.fromtimestamp(ms // 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def format_stream(topic: str, partition: int, offset: int, rec: Record, as_json: bool) -> bytes:
    """One record in FORMAT_STREAM_BINARY / _JSON, with its newline."""

    def side(data: bytes | None) -> str:
        if data is None:
            return "null"
        if as_json:
            return '{"type":"JSON","data":' + data.decode() + "}"
        return '{"type":"BINARY","data":"' + _b64(data) + '"}'

    headers = ",".join(
        '{"name":' + json.dumps(name) + ',"value":' + ("null" if v is None else '"' + _b64(v) + '"') + "}"
        for name, v in rec.headers
    )
    text = (
        '{"topic_name":' + json.dumps(topic) + ',"partition_id":%d,"offset":%d,"timestamp":"%s",'
        % (partition, offset, _timestamp(rec.timestamp_ms))
        + '"key":' + side(rec.key) + ',"value":' + side(rec.value) + ',"headers":[' + headers + "]}\n"
    )
    return text.encode()



class FakeRdConsumer:
    OFFSET_BEGINNING = OFFSET_BEGINNING
    OFFSET_END = OFFSET_END
    OFFSET_STORED = OFFSET_STORED
    OFFSET_INVALID = OFFSET_INVALID
    FORMAT_STREAM_BINARY = 7
    FORMAT_STREAM_JSON = 8

    def __init__(self, config: Mapping[str, Any], cluster: FakeCluster, prefetch: int = 1000) -> None:
        if "group.id" not in config:
            raise ValueError("group.id is required")
        self.config = dict(config)
        self.cluster = cluster
        self.prefetch = prefetch
        self.group = str(config["group.id"])
        self.auto_commit = bool(config.get("enable.auto.commit", True))
        self.reset = str(config.get("auto.offset.reset", "latest"))
        self.positions: dict[tuple[str, int], int] = {}  # assigned partitions -> next offset
        self.paused: set[tuple[str, int]] = set()
        self.stopped: set[tuple[str, int]] = set()  # out of range with reset=error
        self.pending: dict[tuple[str, int], int] = {}
        self.stored: dict[tuple[str, int], int] = {}
        self.errors: list[tuple[int, str]] = []
        self.calls: list[tuple[str, Any]] = []
        self.fail_next_fetch: Exception | None = None
        self._closed = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signalled = False
        cluster.consumers.append(self)

    # -- assignment ---------------------------------------------------------------------
    def _start(self, topic: str, partition: int, offset: int) -> None:
        end = len(self.cluster.topics[topic][partition])
        if offset == OFFSET_STORED:
            offset = self.cluster.committed.get((self.group, topic, partition), OFFSET_INVALID)
            if offset == OFFSET_INVALID:
                offset = OFFSET_BEGINNING if self.reset == "earliest" else OFFSET_END
        if offset == OFFSET_BEGINNING:
            offset = 0
        elif offset == OFFSET_END:
            offset = end
        elif offset > end:
            if self.reset == "error":
                self.stopped.add((topic, partition))
                self.errors.append((ERR_AUTO_OFFSET_RESET,
                                    f"{topic} [{partition}]: offset {offset} out of range"))
                self._signal()
            else:
                offset = 0 if self.reset == "earliest" else end
        self.positions[(topic, partition)] = offset

    def subscribe(self, topics: Sequence[str]) -> None:
        self.calls.append(("subscribe", list(topics)))
        for topic in topics:
            for p in range(len(self.cluster.topics[topic])):
                self._start(topic, p, OFFSET_STORED)
        self._signal_if_queued()

    def assign(self, partitions: Sequence[tuple[str, int, int]]) -> None:
        self.calls.append(("assign", list(partitions)))
        self.positions.clear()
        for topic, p, offset in partitions:
            self._start(topic, p, offset)
        self._signal_if_queued()

    def assignment(self) -> list[tuple[str, int]]:
        return sorted(self.positions)

    def pause(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        self.calls.append(("pause", partitions))
        self.paused |= set(self.positions if partitions is None else partitions)

    def resume(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        self.calls.append(("resume", partitions))
        self.paused -= set(self.positions if partitions is None else partitions)
        self._signal_if_queued()

    # -- records ------------------------------------------------------------------------
    def _available(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records waiting) of the partitions that fetch."""
        out = []
        for (topic, p), pos in sorted(self.positions.items()):
            if (topic, p) in self.paused or (topic, p) in self.stopped:
                continue
            n = len(self.cluster.topics[topic][p]) - pos
            if n > 0:
                out.append((topic, p, n))
        return out

    def queued(self) -> int:
        return min(self.prefetch, sum(n for _, _, n in self._available()))

    def _signal(self) -> None:
        if not self._signalled and not self._closed:
            self._signalled = True
            os.eventfd_write(self._efd, 1)

    def _signal_if_queued(self) -> None:
        if self.queued() or self.errors:
            self._signal()

    def _arrived(self, topic: str, partition: int) -> None:
        if (topic, partition) in self.positions:
            self._signal_if_queued()

    def event_fd(self) -> int:
        return self._efd

    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int,
              min_bytes: int = 0, store: bool = True, first: bool = True) -> tuple[bytes, int]:
        assert not self._closed
        assert timeout_ms == 0, "the fake serves only fetch(timeout_ms=0)"
        self.calls.append(("fetch", (max_records, max_bytes, fmt, store)))
        if self._signalled:
            self._signalled = False
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
        if self.fail_next_fetch is not None:
            exc, self.fail_next_fetch = self.fail_next_fetch, None
            raise exc
        as_json = fmt == self.FORMAT_STREAM_JSON
        out: list[bytes] = []
        taken = 0
        nbytes = 0
        budget = min(max_records, self.prefetch)
        for topic, p, _ in self._available():
            log = self.cluster.topics[topic][p]
            pos = self.positions[(topic, p)]
            while pos < len(log) and taken < budget and (taken == 0 or nbytes < max_bytes):
                rec = log[pos]
                if as_json and not (_is_json(rec.key) and _is_json(rec.value)):
                    if taken == 0:
                        # As the real one: the record counts as handed out (its offset is
                        # stored per ``store``) and reading goes on after it.
                        self.positions[(topic, p)] = pos + 1
                        (self.pending if not store else self.stored)[(topic, p)] = pos + 1
                        raise RdKafkaError(
                            ERR_VALUE_DESERIALIZATION,
                            f"topic {topic} partition {p} offset {pos}: the value is not JSON",
                            topic=topic, partition=p, offset=pos)
                    budget = taken  # stop before it
                    break
                out.append(format_stream(topic, p, pos, rec, as_json))
                nbytes += len(rec.key or b"") + len(rec.value or b"")
                taken += 1
                pos += 1
            self.positions[(topic, p)] = pos
            if taken and (store is False):
                self.pending[(topic, p)] = pos
            elif taken:
                self.stored[(topic, p)] = pos
            if taken >= budget or nbytes >= max_bytes:
                break
        # What is left stays queued without a new wake-up: librdkafka writes the fd only when
        # its queue goes from empty to not empty.
        return b"".join(out), taken

    def store_pending(self) -> int:
        self.calls.append(("store_pending", dict(self.pending)))
        n = len(self.pending)
        self.stored.update(self.pending)
        self.pending.clear()
        return n

    def commit(self, offsets: Sequence[tuple[str, int, int]] | None = None,
               asynchronous: bool = False) -> list[tuple[str, int, int]]:
        items = [(t, p, o) for (t, p), o in sorted(self.stored.items())] if offsets is None else list(offsets)
        for t, p, o in items:
            self.cluster.committed[(self.group, t, p)] = o
        return items

    def take_errors(self) -> list[tuple[int, str]]:
        errs, self.errors = self.errors, []
        return errs

    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]:
        return [], 0

    def close(self, timeout_ms: int = 10000) -> None:
        self.calls.append(("close", timeout_ms))
        if self._closed:
            return
        if self.auto_commit:
            self.commit()
        self._closed = True
        os.close(self._efd)
        self._efd = -1
        self.cluster.consumers.remove(self)

    @property
    def closed(self) -> bool:
        return self._closed
