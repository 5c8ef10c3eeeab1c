"""The four kinds of client connection a run is made of, one object per connection:

- ``StreamClient`` (``--mode stream``): one long v3 request with a chunked body of records,
  reading the in-order report stream on the same connection while it writes (docs/api.md §1).
- ``RequestClient`` (``--mode unary`` and ``batch``): one request at a time on a keep-alive
  connection, a v3 request of one record or a v2 request of ``--batch`` records (§1, §3).
- ``ConsumeClient`` (``--mode consume``): a v2 consumer instance read in a loop (§12).

A client pumps itself when its connection can take more (after reading reports, after its
output drained), and the engine sweeps every client each tick of the open loop's schedule and
now and then for reconnects and the end of sending.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import ssl
from collections import deque
from typing import Any

from gateway.loadgen.engine import Engine
from gateway.loadgen.http import ProtocolError, ResponseParser, TargetUnusable, blocking_request
from gateway.loadgen.net import SEND_LOW_WATER, Transport, now_us
from gateway.loadgen.records import RecordSource
from gateway.loadgen.scan import (
    REPORT,
    ReportFormatError,
    ReportScanner,
    count_reports,
    failure_lines,
    nth_report_end,
)

CHUNK_BYTES = 64 * 1024  # a stream writes chunks of whole records up to about this size
MAX_BODY_BYTES = 64 * 1024 * 1024  # a whole answer (unary, batch, consume) over this: an error
RECONNECT_FIRST_S = 0.05
RECONNECT_MAX_S = 1.0
READS_PER_EVENT = 4  # reads of one connection per readiness event before others get a turn
_CODE = re.compile(rb'"error_code"\s*:\s*(-?\d+)')
_OFFSET = b'"offset":'

EV_READ = selectors.EVENT_READ
EV_WRITE = selectors.EVENT_WRITE


def make_clients(engine: Engine) -> list[Any]:
    s = engine.settings
    if s.mode == "stream":
        source = RecordSource("v3", s.record_bytes, s.keys, 1)
        per_chunk = max(1, CHUNK_BYTES // source.record_len)
        source = RecordSource("v3", s.record_bytes, s.keys, per_chunk)
        return [StreamClient(engine, i, source, per_chunk) for i in range(s.connections)]
    if s.mode == "unary":
        return [RequestClient(engine, i, RecordSource("v3", s.record_bytes, s.keys, 1), 1)
                for i in range(s.connections)]
    if s.mode == "batch":
        return [RequestClient(engine, i, RecordSource("v2", s.record_bytes, s.keys, s.batch),
                              s.batch) for i in range(s.connections)]
    return [ConsumeClient(engine, i) for i in range(s.connections)]


def error_code(body: bytes, status: int) -> str:
    """The error body's ``error_code`` (docs/api.md: every error body has one), else the
    status."""
    m = _CODE.search(body[:4096])
    return m.group(1).decode() if m else str(status)


class Client:
    """A connection with its response parser; subclasses decide what to send and what an
    answer means."""

    def __init__(self, engine: Engine, index: int) -> None:
        self.engine = engine
        self.index = index
        self.transport: Transport | None = None
        self.parser: ResponseParser | None = None
        self.retry_at = 0.0
        self.backoff = RECONNECT_FIRST_S
        self._writing = False  # registered for EVENT_WRITE too

    # -- the connection ---------------------------------------------------------------------

    def connect(self) -> bool:
        try:
            t = Transport(self.engine.target)
        except (OSError, ssl.SSLError) as exc:
            self.engine.connect_failed(exc)
            self.retry_at = now_us() + self.backoff * 1e6
            self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)
            return False
        self.transport = t
        self.parser = ResponseParser(self.on_head, self.on_body, self.on_end)
        self._writing = False
        self.engine.sel.register(t.sock, EV_READ, self)
        return True

    def drop(self) -> None:
        """Close the connection (the subclass has settled what was outstanding on it)."""
        t = self.transport
        if t is not None:
            self.transport = None
            try:
                self.engine.sel.unregister(t.sock)
            except (KeyError, ValueError):
                pass
            t.close()

    def flush(self) -> None:
        t = self.transport
        if t is None:
            return
        try:
            done = t.flush()
        except OSError as exc:
            self.broken(f"write failed: {exc}")
            return
        if done == self._writing:  # want write events exactly while output is pending
            self._writing = not done
            self.engine.sel.modify(t.sock, EV_READ | (0 if done else EV_WRITE), self)

    def on_event(self, mask: int) -> None:
        if mask & EV_READ:
            self.read()
        if mask & EV_WRITE and self.transport is not None:
            self.flush()
            if not self._writing:
                self.pump(now_us())

    def read(self) -> None:
        for _ in range(READS_PER_EVENT):
            t = self.transport
            if t is None or self.parser is None:
                return
            try:
                got = t.read()
            except (OSError, ssl.SSLError) as exc:
                self.broken(f"read failed: {exc}")
                return
            if got is None:
                break
            data, ts = got
            self.arrival = ts
            try:
                if not data:
                    self.parser.feed_eof()
                    self.broken("the server closed the connection")
                    return
                self.parser.feed(data)
            except (ProtocolError, ReportFormatError) as exc:
                self.broken(f"bad answer: {exc}")
                return
            self.after_read(ts)
        self.pump(now_us())

    # -- what subclasses provide --------------------------------------------------------------

    arrival = 0.0

    def setup(self) -> None:
        self.connect()

    def teardown(self) -> None:
        pass

    def close(self) -> None:
        self.drop()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        raise NotImplementedError

    def on_body(self, data: bytes) -> None:
        raise NotImplementedError

    def on_end(self) -> None:
        raise NotImplementedError

    def after_read(self, ts: float) -> None:
        pass

    def pump(self, now: float) -> None:
        raise NotImplementedError

    def broken(self, reason: str) -> None:
        raise NotImplementedError

    @property
    def idle(self) -> bool:
        raise NotImplementedError

    def abandon(self) -> int:
        """At the end: the measured records still without an outcome (counted "unanswered")."""
        return 0


# -- stream ----------------------------------------------------------------------------------


class StreamClient(Client):
    """One v3 stream at a time on this connection (a new one when the server ends one early)."""

    def __init__(self, engine: Engine, index: int, source: RecordSource, per_chunk: int) -> None:
        super().__init__(engine, index)
        s = engine.settings
        self.source = source
        self.per_chunk = per_chunk
        self.window = s.window
        assert engine.cluster_id is not None
        path = engine.target.path("v3", "clusters", engine.cluster_id, "topics", s.topic, "records")
        self.head = engine.target.head("POST", path, [
            ("Content-Type", "application/json"), ("Accept", "application/json"),
            ("Transfer-Encoding", "chunked"),
        ])
        # Open loop: this connection's j-th record is due at t0 + (j + phase) * step.
        self.step = 0.0
        if engine.open_loop and s.rate:
            self.step = 1e6 * s.connections / s.rate
        self.phase = index / s.connections
        # Open loop: latency from the schedule (intended) or from the write (Settings).
        self.from_schedule = s.latency_from == "intended"
        self.j = 0  # records this connection has sent (its place in the schedule)
        # Sent spans not yet answered: [count, intended time of the first (µs), step, measured].
        self.spans: deque[list[Any]] = deque()
        self.in_flight = 0
        self.streaming = False  # a request is open
        self.ending = False  # its zero-size chunk is written
        self.status = 0
        self.error_body: list[bytes] = []
        self.pieces: list[bytes] = []
        self.scanner = ReportScanner()
        self.last_line = b""  # the last report read, for a stream that ends early

    @property
    def idle(self) -> bool:
        return not self.streaming and self.in_flight == 0

    def start_stream(self, now: float) -> bool:
        if self.transport is None:
            if now < self.retry_at or not self.connect():
                return False
        assert self.transport is not None and self.parser is not None
        self.streaming = True
        self.ending = False
        self.status = 0
        self.error_body = []
        self.pieces = []
        self.scanner = ReportScanner()
        self.last_line = b""
        self.transport.write_parts(self.head)
        self.flush()
        return self.transport is not None

    def pump(self, now: float) -> None:
        eng = self.engine
        if not self.streaming:
            if not eng.sending or not self.start_stream(now):
                return
        if self.ending or self.status not in (0, 200):
            return
        t = self.transport
        if t is None:
            return
        if not eng.sending:
            self.ending = True
            t.write(b"0\r\n\r\n")
            self.flush()
            return
        wrote = False
        while True:
            if t.pending >= SEND_LOW_WATER:
                wrote = False
                self.flush()  # (registers for write events when the kernel takes no more)
                if self.transport is None or t.pending >= SEND_LOW_WATER:
                    return
            room = self.window - self.in_flight
            if room <= 0:
                break
            if self.step:
                due = int((now - eng.t0) / self.step - self.phase) + 1 - self.j
                n = min(due, room, self.per_chunk)
                if n <= 0:
                    break
                intended = eng.t0 + (self.j + self.phase) * self.step if self.from_schedule else now
            else:
                n = min(room, self.per_chunk)
                intended = now
            first, n = eng.claim(n)
            if not n:
                break
            payload = self.source.records(first, n)
            measured = eng.measuring
            spans = self.spans
            last = spans[-1] if spans else None
            step = self.step if self.from_schedule else 0.0
            if last is not None and last[3] == measured and (
                (step and last[1] + last[0] * step == intended)
                or (not step and last[1] == intended)
            ):
                last[0] += n  # contiguous with the previous span: one span
            else:
                spans.append([n, intended, step, measured])
            self.in_flight += n
            self.j += n
            eng.sent(n, measured)
            t.write_parts(b"%x\r\n" % len(payload), payload, b"\r\n")
            wrote = True
            if not step:
                now = intended  # the same write time for what this pump sends
        if wrote:
            self.flush()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes) -> None:
        if self.status == 200:
            self.pieces.append(data)
        elif sum(map(len, self.error_body)) < 4096:
            self.error_body.append(data)

    def after_read(self, ts: float) -> None:
        if not self.pieces:
            return
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces = []
        seg = self.scanner.feed(data)
        if seg:
            self.reports(seg, ts)

    def reports(self, seg: bytes, ts: float) -> None:
        n = self.scanner.counts[0]
        counts: tuple[int, int] | None = self.scanner.counts
        # The last report read, before any is set aside below: a stream cut short ends with a
        # report for the rest of the body, which may come when every record written so far is
        # accounted for; records written after it (not read by the server) fail with its code.
        end = len(seg) - 1
        self.last_line = seg[seg.rfind(b"\n", 0, end) + 1 :]
        if n > self.in_flight:  # more reports than records: keep what is accounted for
            seg = seg[: nth_report_end(seg, self.in_flight)]
            n = self.in_flight
            counts = None
            if not n:
                return
        hist = self.engine.tally.interval
        spans = self.spans
        left = n
        warm = 0  # leading reports of warm-up records
        while left:
            span = spans[0]
            m = span[0] if span[0] < left else left
            if span[3]:
                hist.record_span(ts - span[1], -span[2], m)
            elif left == n - warm:
                warm += m
            if m == span[0]:
                spans.popleft()
            else:
                span[0] -= m
                span[1] += m * span[2]
            left -= m
        self.in_flight -= n
        if warm and warm < n:
            cut = nth_report_end(seg, warm)
            self._count(seg[:cut], warm, False, ts, None)
            self._count(seg[cut:], n - warm, True, ts, None)
        else:
            self._count(seg, n, not warm, ts, counts)

    def _count(self, seg: bytes, n: int, measured: bool, ts: float,
               counts: tuple[int, int] | None) -> None:
        _, ok, failed = count_reports(seg, counts)
        self.engine.answered(n, ok, failed, measured, ts,
                             (lambda k: failure_lines(seg, k)) if failed else None)

    def on_end(self) -> None:
        # Called from inside parser.feed: the reports of this read are still in self.pieces.
        self.after_read(self.arrival)
        if self.status == 200:
            seg = self.scanner.finish()
            if seg:
                self.reports(seg, self.arrival)
        eng = self.engine
        if self.status == 200:
            if self.in_flight:
                # Cut short (docs/api.md §1 "How a stream ends"): the last report stands for every
                # record not read; those records fail with its code.
                code = error_code(self.last_line, 0) if self.last_line else "cut"
                self._fail_outstanding(code, self.last_line.decode("utf-8", "replace").strip())
        else:
            body = b"".join(self.error_body)
            code = error_code(body, self.status)
            text = f"{self.status} {body[:300].decode('utf-8', 'replace')}"
            if self.status == 401:
                eng.refused_at_start(self.status, text)
            self._fail_outstanding(code, text)
        # A response that ended before our body did (refused, or cut short) leaves the rest
        # of the body unread: the server closes the connection (docs/api.md §1), even when
        # its head, written before the cut, did not say so.
        reusable = self.ending and self.parser is not None and self.parser.keep_alive
        self.streaming = False
        self.ending = False
        if not reusable:
            self.drop()
            self.retry_at = now_us() + (self.backoff * 1e6 if self.status != 200 else 0)
            if self.status != 200:
                self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)
        if self.status == 200:
            self.backoff = RECONNECT_FIRST_S

    def _fail_outstanding(self, code: str, message: str | None) -> None:
        if not self.in_flight:
            return
        measured = sum(s[0] for s in self.spans if s[3])
        warm = self.in_flight - measured
        if warm:
            self.engine.answered(warm, 0, {code: warm}, False, self.arrival)
        if measured:
            self.engine.answered(measured, 0, {code: measured}, True, self.arrival,
                                 (lambda k: [message]) if message else None)
        self.spans.clear()
        self.in_flight = 0

    def broken(self, reason: str) -> None:
        self.pieces = []
        self._fail_outstanding("disconnected", reason)
        self.streaming = False
        self.ending = False
        self.drop()
        self.retry_at = now_us() + self.backoff * 1e6
        self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)

    def abandon(self) -> int:
        measured = sum(s[0] for s in self.spans if s[3])
        self.engine.outstanding -= self.in_flight
        self.spans.clear()
        self.in_flight = 0
        return measured


# -- unary and batch -------------------------------------------------------------------------


class RequestClient(Client):
    """One request at a time: a v3 request of one record (unary), or a v2 produce of
    ``per_request`` records (batch)."""

    def __init__(self, engine: Engine, index: int, source: RecordSource, per_request: int) -> None:
        super().__init__(engine, index)
        s = engine.settings
        self.source = source
        self.per_request = per_request
        self.v2 = s.mode == "batch"
        if self.v2:
            self.path = engine.target.path("topics", s.topic)
            self.fields = [("Content-Type", "application/vnd.kafka.binary.v2+json"),
                           ("Accept", "application/vnd.kafka.v2+json")]
        else:
            assert engine.cluster_id is not None
            self.path = engine.target.path("v3", "clusters", engine.cluster_id, "topics",
                                           s.topic, "records")
            self.fields = [("Content-Type", "application/json"), ("Accept", "application/json")]
        self.heads: dict[int, bytes] = {}  # by body length
        self.step = 0.0
        if engine.open_loop and s.rate:
            self.step = 1e6 * s.connections * per_request / s.rate
        self.phase = index / s.connections
        # Open loop: latency from the schedule (intended) or from the write (Settings).
        self.from_schedule = s.latency_from == "intended"
        self.j = 0  # requests sent (the place in the schedule)
        self.busy: tuple[int, float, bool] | None = None  # (records, intended, measured)
        self.status = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    @property
    def idle(self) -> bool:
        return self.busy is None

    def _head(self, length: int) -> bytes:
        head = self.heads.get(length)
        if head is None:
            if len(self.heads) > 4:
                self.heads.clear()
            head = self.engine.target.head(
                "POST", self.path, [*self.fields, ("Content-Length", str(length))]
            )
            self.heads[length] = head
        return head

    def pump(self, now: float) -> None:
        eng = self.engine
        if self.busy is not None or not eng.sending:
            return
        if self.step:
            intended = eng.t0 + (self.j + self.phase) * self.step
            if intended > now:
                return
            if not self.from_schedule:
                intended = now
        else:
            intended = now
        if self.transport is None and (now < self.retry_at or not self.connect()):
            return
        first, n = eng.claim(self.per_request)
        if not n:
            return
        records = self.source.records(first, n)
        if self.v2:
            body = b'{"records":[' + records[:-1] + b"]}"
        else:
            body = records
        measured = eng.measuring
        self.busy = (n, intended, measured)
        self.j += 1
        self.status = 0
        self.body = []
        self.body_bytes = 0
        eng.sent(n, measured)
        assert self.transport is not None
        self.transport.write_parts(self._head(len(body)), body)
        self.flush()

    def on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def on_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.body_bytes > MAX_BODY_BYTES:
            raise ProtocolError("an answer larger than 64 MiB")
        self.body.append(data)

    def on_end(self) -> None:
        busy = self.busy
        if busy is None:
            raise ProtocolError("an answer to no request")
        n, intended, measured = busy
        self.busy = None
        body = b"".join(self.body)
        self.body = []
        eng = self.engine
        at = self.arrival
        status = self.status
        if measured:
            eng.tally.interval.record_span(at - intended, 0.0, n)
        if status == 200:
            if self.v2:
                ok, failed, messages = self._offsets(body, n)
            else:
                ok, failed, messages = self._report(body)
            eng.answered(n, ok, failed, measured, at, (lambda k: messages[:k]) if failed else None)
        else:
            code = error_code(body, status)
            text = f"{status} {body[:300].decode('utf-8', 'replace')}"
            if status == 401:
                eng.refused_at_start(status, text)
            eng.answered(n, 0, {code: n}, measured, at, lambda k: [text])
        if self.parser is not None and not self.parser.keep_alive:
            self.drop()
            if status != 200:
                self.retry_at = now_us() + self.backoff * 1e6
                self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)
        elif status == 200:
            self.backoff = RECONNECT_FIRST_S

    @staticmethod
    def _report(body: bytes) -> tuple[int, dict[str, int] | None, list[str]]:
        if body.startswith(REPORT) and body.count(b"\n") == 1 and body.endswith(b"\n"):
            seg = body  # the gateway's one report and its CRLF
        else:
            try:
                scanner = ReportScanner()
                seg = scanner.feed(body)
                seg += scanner.finish()
            except ReportFormatError:
                seg = b""
        n, ok, failed = count_reports(seg)
        if n != 1:
            return 0, {"invalid": 1}, [f"not one report: {body[:300]!r}"]
        return ok, failed, failure_lines(seg, 1) if failed else []

    @staticmethod
    def _offsets(body: bytes, n: int) -> tuple[int, dict[str, int] | None, list[str]]:
        try:
            offsets = json.loads(body)["offsets"]
            if not isinstance(offsets, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return 0, {"invalid": n}, [f"not an offsets answer: {body[:300]!r}"]
        ok = 0
        failed: dict[str, int] = {}
        messages: list[str] = []
        for entry in offsets:
            code = entry.get("error_code") if isinstance(entry, dict) else "invalid"
            if code is None or code == 202:
                ok += 1
            else:
                key = str(code)
                failed[key] = failed.get(key, 0) + 1
                if len(messages) < 5:
                    messages.append(json.dumps(entry))
        if len(offsets) != n:
            failed["invalid"] = failed.get("invalid", 0) + max(0, n - len(offsets))
            ok = min(ok, n)
        return ok, failed or None, messages

    def broken(self, reason: str) -> None:
        busy = self.busy
        self.busy = None
        if busy is not None:
            n, _, measured = busy
            self.engine.answered(n, 0, {"disconnected": n}, measured, now_us(),
                                 lambda k: [reason])
        self.drop()
        self.retry_at = now_us() + self.backoff * 1e6
        self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)

    def abandon(self) -> int:
        busy = self.busy
        self.busy = None
        if busy is None:
            return 0
        self.engine.outstanding -= busy[0]
        return busy[0] if busy[2] else 0


# -- consume ---------------------------------------------------------------------------------

V2_JSON = "application/vnd.kafka.v2+json"


class ConsumeClient(Client):
    """A consumer instance in the run's group, read with ``GET .../records`` in a loop. Its
    latency is each read's round trip, counted once per record it brought."""

    def __init__(self, engine: Engine, index: int) -> None:
        super().__init__(engine, index)
        s = engine.settings
        self.group = s.group
        self.name = f"loadgen-{os.getpid()}-{index}"
        self.instance_path: str | None = None
        self.busy: tuple[float, bool] | None = None  # (sent at, measured)
        self.status = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.request = b""

    @property
    def idle(self) -> bool:
        return self.busy is None

    def setup(self) -> None:
        eng = self.engine
        t = eng.target
        create = json.dumps({"name": self.name, "format": "binary",
                             "auto.offset.reset": "earliest"}).encode()
        answer = self._call("POST", t.path("consumers", self.group), create)
        if answer is None:
            return
        if answer.status != 200:
            raise TargetUnusable(f"creating a consumer instance: {answer.error_text()}")
        self.instance_path = t.path("consumers", self.group, "instances", self.name)
        sub = json.dumps({"topics": [eng.settings.topic]}).encode()
        answer = self._call("POST", self.instance_path + "/subscription", sub)
        if answer is not None and answer.status != 204:
            raise TargetUnusable(f"subscribing to {eng.settings.topic}: {answer.error_text()}")
        self.request = t.head("GET", self.instance_path + "/records?timeout=1000", [
            ("Accept", "application/vnd.kafka.binary.v2+json")])
        self.connect()

    def _call(self, method: str, path: str, body: bytes | None) -> Any:
        try:
            return blocking_request(self.engine.target, method, path, body,
                                    [("Content-Type", V2_JSON), ("Accept", V2_JSON)])
        except (OSError, ssl.SSLError, ProtocolError) as exc:
            if self.instance_path is None:
                raise TargetUnusable(f"cannot reach {self.engine.target.url}: {exc}") from None
            return None

    def teardown(self) -> None:
        if self.instance_path is not None:
            path, self.instance_path = self.instance_path, None
            try:
                blocking_request(self.engine.target, "DELETE", path, None,
                                 [("Content-Type", V2_JSON)], timeout=5.0)
            except (OSError, ssl.SSLError, ProtocolError):
                pass  # it expires on the server (--consumer-instance-timeout)

    def pump(self, now: float) -> None:
        eng = self.engine
        if self.busy is not None or not eng.sending or not self.request:
            return
        s = eng.settings
        if eng.measuring and s.records is not None and eng.tally.acked >= s.records:
            return
        if self.transport is None and (now < self.retry_at or not self.connect()):
            return
        self.busy = (now, eng.measuring)
        self.status = 0
        self.body = []
        self.body_bytes = 0
        assert self.transport is not None
        self.transport.write(self.request)
        self.flush()

    on_head = RequestClient.on_head
    on_body = RequestClient.on_body

    def on_end(self) -> None:
        busy = self.busy
        if busy is None:
            raise ProtocolError("an answer to no request")
        self.busy = None
        sent_at, measured = busy
        body = b"".join(self.body)
        self.body = []
        eng = self.engine
        at = self.arrival
        if self.status == 200:
            n = body.count(_OFFSET)
            if n and measured:
                eng.tally.interval.record_span(at - sent_at, 0.0, n)
            eng.received(n, measured, at)
            self.backoff = RECONNECT_FIRST_S
        else:
            text = f"{self.status} {body[:300].decode('utf-8', 'replace')}"
            if self.status == 401:
                eng.refused_at_start(self.status, text)
            if measured:
                eng.tally.fail(error_code(body, self.status), 1, text)
            self.retry_at = now_us() + self.backoff * 1e6
            self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)
        if self.parser is not None and not self.parser.keep_alive:
            self.drop()

    def broken(self, reason: str) -> None:
        busy = self.busy
        self.busy = None
        if busy is not None and busy[1]:
            self.engine.tally.fail("disconnected", 1, reason)
        self.drop()
        self.retry_at = now_us() + self.backoff * 1e6
        self.backoff = min(RECONNECT_MAX_S, self.backoff * 2)

    def abandon(self) -> int:
        self.busy = None
        return 0
