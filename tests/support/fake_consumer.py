"""A stand-in for ``gateway._speedups.RdConsumer`` in unit tests of consumer instances.

Same methods, same record formats (byte for byte, as the design of the compiled consumer gives
them), over an in-memory cluster (``FakeCluster``): topics of partitions of records, and groups
with their committed offsets and members. A group's partitions are spread over its subscribed
members at once, round robin, whenever one joins or leaves (librdkafka does it with the broker,
later; tests of that run against the real broker). ``fetch`` waits on a condition for records,
as the real one blocks in librdkafka, so it must run off the event loop, as instances do."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001


class FakeRdKafkaError(Exception):
    def __init__(self, code: int, name: str, message: str, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
        self.retriable = retriable


Record = tuple[bytes | None, bytes | None, int, list[tuple[str, bytes]]]  # key, value, ts ms, headers


class FakeCluster:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.topics: dict[str, list[list[Record]]] = {}
        self.committed: dict[str, dict[tuple[str, int], int]] = {}  # group -> offsets
        self.members: dict[str, list[FakeRdConsumer]] = {}  # group -> subscribed members
        self.created: list[FakeRdConsumer] = []

    def create_topic(self, name: str, partitions: int) -> None:
        with self.lock:
            self.topics[name] = [[] for _ in range(partitions)]

    def produce(self, topic: str, partition: int, value: bytes | None, key: bytes | None = None,
                ts: int = 1_700_000_000_000, headers: list[tuple[str, bytes]] | None = None) -> int:
        with self.lock:
            log = self.topics[topic][partition]
            log.append((key, value, ts, headers or []))
            self.lock.notify_all()
            return len(log) - 1

    def factory(self, conf: dict[str, Any]) -> FakeRdConsumer:
        c = FakeRdConsumer(conf, self)
        self.created.append(c)
        return c

    # -- group membership (lock held) -------------------------------------------------------
    def _rebalance(self, group: str) -> None:
        members = self.members.get(group, [])
        parts = sorted(
            (t, p) for t, log in self.topics.items() for p in range(len(log))
            if any(m._matches(t) for m in members)
        )
        shares: dict[int, list[tuple[str, int]]] = {id(m): [] for m in members}
        for i, tp in enumerate(p for p in parts):
            interested = [m for m in members if m._matches(tp[0])]
            if interested:
                shares[id(interested[i % len(interested)])].append(tp)
        for m in members:
            m._set_assignment(shares[id(m)])


class FakeRdConsumer:
    OFFSET_BEGINNING = OFFSET_BEGINNING
    OFFSET_END = OFFSET_END
    OFFSET_STORED = OFFSET_STORED
    OFFSET_INVALID = OFFSET_INVALID
    FORMAT_V2_BINARY = 1
    FORMAT_V2_JSON = 2
    FORMAT_STRIMZI_BINARY = 3
    FORMAT_STRIMZI_JSON = 4
    FORMAT_V1_BINARY = 5
    FORMAT_V1_JSON = 6
    FORMAT_STREAM_BINARY = 7
    FORMAT_STREAM_JSON = 8
    FORMAT_STRIMZI_TEXT = 9

    def __init__(self, conf: dict[str, Any], cluster: FakeCluster | None = None) -> None:
        if "group.id" not in conf:
            raise ValueError('"group.id" must be configured')
        reset = str(conf.get("auto.offset.reset", "latest"))
        if reset not in ("earliest", "latest", "error", "smallest", "largest", "beginning", "end"):
            raise ValueError(f'Invalid value "{reset}" for configuration property "auto.offset.reset"')
        for key in conf:
            if key.startswith("invalid."):
                raise ValueError(f'No such configuration property: "{key}"')
        self.conf = dict(conf)
        self.cluster = cluster if cluster is not None else FakeCluster()
        self.group = str(conf["group.id"])
        self.reset = reset
        self.auto_commit = bool(conf.get("enable.auto.commit", True))
        self._subscription: list[str] = []
        self._assignment: list[tuple[str, int]] = []
        self._positions: dict[tuple[str, int], int] = {}
        self._stored: dict[tuple[str, int], int] = {}
        self.closed = False
        self.calls: list[str] = []  # method names, in order (what a test may check)
        self.thread_ids: set[int] = set()
        self.fetch_delay = 0.0  # seconds each fetch sleeps first (a slow broker)

    # -- helpers ---------------------------------------------------------------------------
    def _call(self, name: str) -> None:
        if self.closed:
            raise RuntimeError("the consumer is closed")
        self.calls.append(name)
        self.thread_ids.add(threading.get_ident())

    def _matches(self, topic: str) -> bool:
        for s in self._subscription:
            if s.startswith("^"):
                if re.match(s, topic):
                    return True
            elif s == topic:
                return True
        return False

    def _set_assignment(self, parts: list[tuple[str, int]]) -> None:
        self._assignment = list(parts)
        self._positions = {tp: self._start(tp, OFFSET_STORED) for tp in parts}

    def _start(self, tp: tuple[str, int], offset: int) -> int:
        log = self.cluster.topics.get(tp[0], [[]] * (tp[1] + 1))[tp[1]]
        if offset == OFFSET_STORED:
            committed = self.cluster.committed.get(self.group, {}).get(tp)
            if committed is not None:
                return committed
            if self.reset in ("earliest", "smallest", "beginning"):
                return 0
            if self.reset == "error":
                return OFFSET_INVALID
            return len(log)
        if offset == OFFSET_BEGINNING:
            return 0
        if offset == OFFSET_END:
            return len(log)
        return offset

    # -- the RdConsumer interface -----------------------------------------------------------
    def subscribe(self, topics: Sequence[str]) -> None:
        self._call("subscribe")
        with self.cluster.lock:
            self._subscription = list(topics)
            members = self.cluster.members.setdefault(self.group, [])
            if self not in members:
                members.append(self)
            self.cluster._rebalance(self.group)

    def unsubscribe(self) -> None:
        self._call("unsubscribe")
        with self.cluster.lock:
            self._subscription = []
            members = self.cluster.members.get(self.group, [])
            if self in members:
                members.remove(self)
            self._set_assignment([])
            self.cluster._rebalance(self.group)

    def subscription(self) -> list[str]:
        return list(self._subscription)

    def assign(self, partitions: Sequence[tuple[str, int, int]]) -> None:
        self._call("assign")
        with self.cluster.lock:
            self._assignment = sorted((t, p) for t, p, _ in partitions)
            self._positions = {(t, p): self._start((t, p), o) for t, p, o in partitions}

    def assignment(self) -> list[tuple[str, int]]:
        self._call("assignment")
        return sorted(self._assignment)

    def seek(self, partitions: Sequence[tuple[str, int, int]], timeout_ms: int) -> None:
        self._call("seek")
        with self.cluster.lock:
            for t, p, o in partitions:
                if (t, p) not in self._assignment:
                    raise FakeRdKafkaError(-190, "_UNKNOWN_PARTITION", f"{t} [{p}] is not assigned")
                self._positions[(t, p)] = self._start((t, p), o)

    def position(self, partitions: Sequence[tuple[str, int]]) -> list[int]:
        return [self._positions.get(tp, OFFSET_INVALID) for tp in partitions]

    def committed(self, partitions: Sequence[tuple[str, int]], timeout_ms: int
                  ) -> list[tuple[str, int, int, str]]:
        self._call("committed")
        with self.cluster.lock:
            offsets = self.cluster.committed.get(self.group, {})
            return [(t, p, offsets.get((t, p), OFFSET_INVALID), "") for t, p in partitions]

    def commit(self, offsets: Sequence[tuple[str, int, int]] | None = None,
               asynchronous: bool = False) -> list[tuple[str, int, int]]:
        self._call("commit")
        with self.cluster.lock:
            if offsets is None:
                done = [(t, p, o) for (t, p), o in sorted(self._stored.items())]
            else:
                done = list(offsets)
            group = self.cluster.committed.setdefault(self.group, {})
            for t, p, o in done:
                group[(t, p)] = o
            return done

    def store_pending(self) -> int:
        return 0

    def pause(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        pass

    def resume(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        pass

    def fetch(self, max_records: int, max_bytes: int, timeout_ms: int, fmt: int,
              min_bytes: int = 0, store: bool = True, first: bool = True) -> tuple[bytes, int]:
        self._call("fetch")
        if self.fetch_delay:
            time.sleep(self.fetch_delay)
        deadline = time.monotonic() + timeout_ms / 1000
        with self.cluster.lock:
            while True:
                picked = self._take(max_records, max_bytes, fmt)
                size = sum(len(r[2] or b"") + len(r[3] or b"") for r in picked)
                if picked and size >= min_bytes:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cluster.lock.wait(left)
            if store:
                for t, p, _k, _v, o, _ts, _h in picked:
                    self._stored[(t, p)] = o + 1
            for t, p, _k, _v, o, _ts, _h in picked:
                self._positions[(t, p)] = o + 1
        return _format(picked, fmt), len(picked)

    def _take(self, max_records: int, max_bytes: int, fmt: int) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        size = 0
        for t, p in self._assignment:
            pos = self._positions.get((t, p), OFFSET_INVALID)
            if pos < 0:
                continue
            log = self.cluster.topics.get(t, [])[p] if p < len(self.cluster.topics.get(t, [])) else []
            while pos < len(log) and len(out) < max_records:
                key, value, ts, headers = log[pos]
                if fmt in (2, 4, 6, 8) and not (_is_json(key) and _is_json(value)):
                    err = FakeRdKafkaError(
                        -159, "_VALUE_DESERIALIZATION",
                        f"topic {t} partition {p} offset {pos}: the value is not JSON")
                    if not out:  # the record is dropped, as librdkafka hands it out once
                        self._positions[(t, p)] = pos + 1
                        raise err
                    return out  # the next fetch meets it first
                n = len(key or b"") + len(value or b"")
                if out and size + n > max_bytes:
                    return out
                out.append((t, p, key, value, pos, ts, headers))
                size += n
                pos += 1
        return out

    def queued(self) -> int:
        return 0

    def event_fd(self) -> int:
        return -1

    def eof(self) -> list[tuple[str, int, int]]:
        return []

    def take_errors(self) -> list[tuple[int, str]]:
        return []

    def take_logs(self) -> tuple[list[tuple[int, str, str]], int]:
        return [], 0

    def close(self, timeout_ms: int = 10000) -> None:
        if self.closed:
            return
        self.calls.append("close")
        with self.cluster.lock:
            if self.auto_commit and self._stored:
                group = self.cluster.committed.setdefault(self.group, {})
                group.update(self._stored)
            members = self.cluster.members.get(self.group, [])
            if self in members:
                members.remove(self)
                self.cluster._rebalance(self.group)
        self.closed = True

    def member_id(self) -> str:
        return f"member-{id(self)}"


def _is_json(data: bytes | None) -> bool:
    if data is None:
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def _b64(data: bytes | None) -> str:
    return "null" if data is None else json.dumps(base64.b64encode(data).decode())


def _embed(data: bytes | None, fmt: int) -> str:
    if fmt in (2, 4, 6, 8):  # JSON formats: the JSON text as it is
        return "null" if data is None else data.decode()
    return _b64(data)


def _format(picked: list[tuple[Any, ...]], fmt: int) -> bytes:
    items = []
    for t, p, key, value, o, ts, headers in picked:
        topic = json.dumps(t)
        k, v = _embed(key, fmt), _embed(value, fmt)
        if fmt in (1, 2):
            items.append(f'{{"topic":{topic},"key":{k},"value":{v},"partition":{p},"offset":{o}}}')
        elif fmt in (3, 4):
            extra = ""
            if headers:
                hs = ",".join(f'{{"key":{json.dumps(h)},"value":{_b64(hv)}}}' for h, hv in headers)
                extra = f',"headers":[{hs}]'
            items.append(f'{{"topic":{topic},"key":{k},"value":{v},"partition":{p},"offset":{o},'
                         f'"timestamp":{ts}{extra}}}')
        elif fmt in (5, 6):
            items.append(f'{{"key":{k},"value":{v},"partition":{p},"offset":{o}}}')
        else:
            raise NotImplementedError("the stream formats are not faked")
    return ("[" + ",".join(items) + "]").encode()
