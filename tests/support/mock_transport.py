"""Drive ``HttpProtocol`` without sockets: a hand-pumped event loop, a mock transport, a fake
server with scripted handlers, a fake body consumer, and a client-side response reader.

The pieces model what uvloop does, closely enough for the protocol's contract:

- ``FakeLoop`` runs ``call_soon`` callbacks in order and ``call_later`` timers on its own clock;
  an exception in a callback propagates (a real loop would only log it: the test must see it).
- ``MockTransport`` records every write and every pause/resume call, and notes as a
  *violation* what a careful protocol never does: two pauses or two resumes in a row, a
  pause/resume after ``connection_lost``, a write after ``close()``. A write after
  ``write_eof()`` raises ``RuntimeError`` exactly like uvloop's ``UVStream.write``.
  ``close()`` loses the connection once the write buffer is empty (``unsent``), ``abort()``
  at once.
- ``Harness`` plays the client's socket: bytes sent are read by the "loop" (one read per pump
  step, as large as the protocol's buffer allows, never while reading is paused), and the pump
  alternates ready callbacks and reads like uvloop (idle callbacks before I/O polling).
- ``read_responses`` parses what was written, written against RFC 9112 and not our code.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from gateway.errors import GatewayError
from gateway.http.parser import HttpLimits, RequestHead
from gateway.http.protocol import HttpProtocol
from gateway.stats import HttpStats

CONSUMER_REASON = 1 << 4  # a bit of the mask that belongs to the body consumer
CONSUMER_REASON_2 = 1 << 5


# -- event loop -------------------------------------------------------------------------------
class FakeHandle:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """``call_soon``/``call_later`` pumped by hand; ``time()`` only moves with ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._ready: deque[FakeHandle] = deque()
        self._timers: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[..., Any], *args: Any, context: Any = None) -> FakeHandle:
        h = FakeHandle(self.now, callback, args)
        self._ready.append(h)
        return h

    def call_later(
        self, delay: float, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> FakeHandle:
        h = FakeHandle(self.now + delay, callback, args)
        heapq.heappush(self._timers, (h.when, next(self._seq), h))
        return h

    def pending_timers(self) -> list[FakeHandle]:
        return [h for _, _, h in self._timers if not h.cancelled]

    def run_ready(self) -> bool:
        """Run the callbacks ready now (not those they schedule); True if any ran."""
        ran = False
        for _ in range(len(self._ready)):
            h = self._ready.popleft()
            if not h.cancelled:
                ran = True
                h.callback(*h.args)
        return ran

    def advance(self, seconds: float) -> None:
        """Move the clock, firing due timers (and what they schedule) in time order."""
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, h = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not h.cancelled:
                h.callback(*h.args)
            while self.run_ready():
                pass
        self.now = target


# -- transport --------------------------------------------------------------------------------
class MockTransport:
    def __init__(self, loop: FakeLoop, protocol: HttpProtocol) -> None:
        self.loop = loop
        self.protocol = protocol
        self.written = bytearray()
        self.writes: list[bytes] = []
        self.reading = True
        self.reading_calls: list[str] = []  # "pause" / "resume", in order
        self.violations: list[str] = []
        self.closing = False
        self.aborted = False
        self.lost = False
        self.eof_written = False
        self.eof_stopped = False  # eof_received kept the transport open: it stopped reading
        self.limits: tuple[int | None, int | None] | None = None
        self.unsent = 0  # bytes the peer has not taken yet
        self.peer_reading = True  # False: writes pile up in ``unsent``
        self.write_paused = False  # pause_writing() was called and not yet resume_writing()
        self.extra: dict[str, Any] = {"peername": ("127.0.0.1", 40000)}
        self.protocol_eof_again = False  # resumed after EOF: the next read answers EOF again

    # writes
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")  # as uvloop does
        if self.lost:
            return  # uvloop counts and drops them
        if self.closing:
            self.violations.append(f"write after close(): {bytes(data)[:60]!r}")
        data = bytes(data)
        self.writes.append(data)
        self.written += data
        if not self.peer_reading:
            # The bytes stay in our buffer; above the high mark the protocol is told, as the
            # real transport does from inside write().
            before = self.unsent
            self.unsent += len(data)
            high = self.limits[0] if self.limits and self.limits[0] is not None else 65536
            if before <= high < self.unsent and not self.write_paused:
                self.write_paused = True
                self.protocol.pause_writing()

    def writelines(self, chunks: list[bytes]) -> None:
        for c in chunks:
            self.write(c)

    def write_eof(self) -> None:
        if self.eof_written:
            return
        self.eof_written = True

    def can_write_eof(self) -> bool:
        return True

    # reading
    def pause_reading(self) -> None:
        self._reading_call("pause")

    def resume_reading(self) -> None:
        self._reading_call("resume")
        if self.eof_stopped and not self.closing and not self.lost:
            # uvloop starts reading again: the socket answers EOF again.
            self.eof_stopped = False
            self.protocol_eof_again = True

    def _reading_call(self, what: str) -> None:
        self.reading_calls.append(what)
        if self.lost:
            self.violations.append(f"{what}_reading() after connection_lost")
            return
        want = what == "resume"
        if self.reading == want:
            where = " (at the start of a lingering close)" if want and self.eof_written else ""
            self.violations.append(
                f"{what}_reading() twice in a row{where} (calls: {self.reading_calls})"
            )
        self.reading = want

    def is_reading(self) -> bool:
        return self.reading and not self.closing and not self.lost and not self.eof_stopped

    # closing
    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if not self.unsent:
            self.loop.call_soon(self._lose, None)

    def abort(self) -> None:
        self.aborted = True
        if not self.lost:
            self.closing = True
            self.unsent = 0
            self.loop.call_soon(self._lose, None)

    def is_closing(self) -> bool:
        return self.closing

    def _lose(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.protocol.connection_lost(exc)

    # the rest of the interface
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


# -- server and handlers ----------------------------------------------------------------------
class FakeServer:
    """A ``ConnectionHandler`` (gateway.http.handler), what HttpProtocol calls: ``dispatch``
    hands each head to ``handler``."""

    def __init__(
        self,
        loop: FakeLoop,
        handler: Callable[[HttpProtocol, RequestHead], None],
        limits: HttpLimits | None = None,
    ) -> None:
        self.loop = loop
        self.http_limits = limits or HttpLimits()
        self.http_stats = HttpStats()
        self.access_log = True
        self.handler = handler
        self.heads: list[RequestHead] = []
        self.opened: list[HttpProtocol] = []
        self.closed: list[HttpProtocol] = []

    def dispatch(self, conn: HttpProtocol, head: RequestHead) -> None:
        self.heads.append(head)
        self.handler(conn, head)

    def connection_opened(self, conn: HttpProtocol) -> None:
        self.opened.append(conn)

    def connection_closed(self, conn: HttpProtocol) -> None:
        self.closed.append(conn)


def body_digest(body: bytes | bytearray) -> bytes:
    return b"%d:%s" % (len(body), hashlib.sha1(body).hexdigest().encode())


class FakeConsumer:
    """A body consumer like ProduceSession: records every byte, and can be told to stop
    accepting (pausing for a reason, as the session does with a backlog), accept again, stop
    reading, or end its response. By default it answers ``<len>:<sha1>`` of the body at its
    end and ends the response; a body cut short (``on_body_error``) it answers as the real
    consumers do: a stream with a last line ``error <error_code> at <bytes read>`` before its
    end, a whole answer with the error itself."""

    def __init__(
        self, conn: HttpProtocol, *, auto_end: bool = True, whole: bool = False
    ) -> None:
        self.conn = conn
        self.auto_end = auto_end
        self.whole = whole  # answers with respond() (read_body), not a chunked stream
        self.body = bytearray()
        self.events: list[tuple[str, int]] = []
        self.body_ends = 0
        self.body_errors: list[GatewayError] = []
        self.lost = 0
        self.shutdowns = 0
        self.response_ended = False
        self._accepting = True
        self._reasons = 0
        # Hook run after each on_body (tests use it to stop accepting mid-body, etc.).
        self.after_body: Callable[[FakeConsumer], None] | None = None

    @property
    def accepting(self) -> bool:
        return self._accepting

    def on_body(self, data: memoryview) -> None:
        assert isinstance(data, memoryview), type(data)
        assert self._accepting, "on_body while the consumer said it was not accepting"
        assert self.body_ends == 0, "on_body after on_body_end"
        assert not self.body_errors, "on_body after on_body_error"
        self.body += data
        self.events.append(("body", len(data)))
        if self.after_body is not None:
            self.after_body(self)

    def on_body_end(self) -> None:
        assert not self.body_errors, "on_body_end after on_body_error"
        self.body_ends += 1
        self.events.append(("end", 0))
        if self.auto_end:
            self.finish()

    def on_body_error(self, error: GatewayError) -> None:
        if self.body_ends == 0 and not self.body_errors:
            self.events.append(("error", error.status))
        self.body_errors.append(error)
        if self.auto_end:
            self.fail(error)

    def on_connection_lost(self) -> None:
        self.lost += 1
        self.events.append(("lost", 0))

    def on_shutdown(self) -> None:
        self.shutdowns += 1
        self.events.append(("shutdown", 0))
        if self.body_ends == 0 and not self.body_errors:
            self.conn.stop_reading()
        if self.auto_end:
            self.finish()

    # controls
    def stop_accepting(self, reason: int = CONSUMER_REASON) -> None:
        self._accepting = False
        self._reasons |= reason
        self.conn.pause_reading(reason)

    def accept_again(self, reason: int = CONSUMER_REASON) -> None:
        self._reasons &= ~reason
        if not self._reasons:
            self._accepting = True
        self.conn.resume_reading(reason)

    def write(self, data: bytes) -> None:
        self.conn.write_body(data)

    def fail(self, error: GatewayError) -> None:
        """End the answer for a body cut short, as the real consumers do (a stream writes
        its own access-log line, with the status of its last report)."""
        if self.response_ended:
            return
        self.response_ended = True
        if self.whole:
            self.conn.respond(error.status, error.body(), close=True)
            return
        self.conn.write_body(b"error %d at %d" % (error.error_code, len(self.body)))
        self.conn.end_body()
        self.conn.log_access("cut", error.status)

    def finish(self, *, close: bool = False) -> None:
        if self.response_ended:
            return
        self.response_ended = True
        if self.whole:
            self.conn.respond(200, body_digest(self.body), close=close)
            return
        self.conn.write_body(body_digest(self.body))
        self.conn.end_body()
        self.conn.log_access("ended", 200)


def path_handler(harness: Harness) -> Callable[[HttpProtocol, RequestHead], None]:
    """Routes by path:

    /r/<x>       200 with body ``<x>`` (the body of the request, if any, is not read)
    /stream      start_stream with a FakeConsumer (harness.consumers)
    /hold        start_stream with a FakeConsumer that does not end its response by itself
    /whole       read_body with a FakeConsumer that answers with respond() at the body's end
    /defer       defer (harness.deferred), the test answers later
    /nothing     no answer at all (a handler bug)
    """

    def handler(conn: HttpProtocol, head: RequestHead) -> None:
        path = head.path
        if path.startswith("/r/"):
            conn.respond(200, path[3:].encode())
        elif path == "/stream" or path == "/hold":
            consumer = FakeConsumer(conn, auto_end=path == "/stream")
            harness.consumers.append(consumer)
            conn.start_stream(consumer)
        elif path == "/whole":
            consumer = FakeConsumer(conn, whole=True)
            harness.consumers.append(consumer)
            conn.read_body(consumer)
        elif path == "/defer":
            harness.deferred.append(conn)
            conn.defer()
        elif path == "/nothing":
            pass
        else:
            conn.respond(404, b"not found")

    return handler


class Harness:
    """One connection: the protocol, its mock transport, and the client's side of the socket."""

    def __init__(
        self,
        *,
        handler: Callable[[HttpProtocol, RequestHead], None] | None = None,
        limits: HttpLimits | None = None,
        loop: FakeLoop | None = None,
    ) -> None:
        # The loop's clock must already stand in for the protocol's time.monotonic.
        self.loop = loop or FakeLoop()
        self.consumers: list[FakeConsumer] = []
        self.deferred: list[HttpProtocol] = []
        self.server = FakeServer(self.loop, handler or path_handler(self), limits)
        self.proto = HttpProtocol(self.server)  # type: ignore[arg-type]
        self.transport = MockTransport(self.loop, self.proto)
        self.proto.connection_made(self.transport)  # type: ignore[arg-type]
        self._segments: deque[bytearray] = deque()
        self._eof_pending = False
        self.reads: list[int] = []  # size of every buffer_updated call
        self.min_buffer_seen = 1 << 30  # smallest buffer get_buffer handed out

    # the client's socket
    @property
    def unread(self) -> int:
        """Bytes the client sent that the server has not read yet."""
        return sum(len(s) for s in self._segments)

    def send(self, *segments: bytes, run: bool = True) -> None:
        """Each segment arrives as its own read(s): the split is the caller's."""
        for s in segments:
            if s:
                self._segments.append(bytearray(s))
        if run:
            self.run()

    def send_eof(self, run: bool = True) -> None:
        self._eof_pending = True
        if run:
            self.run()

    def _read_once(self) -> bool:
        t = self.transport
        if t.closing or t.lost:
            return False
        if t.protocol_eof_again:
            t.protocol_eof_again = False
            self._deliver_eof()
            return True
        if not t.is_reading():
            return False
        if self._segments:
            seg = self._segments[0]
            buf = self.proto.get_buffer(-1)
            self.min_buffer_seen = min(self.min_buffer_seen, len(buf))
            if len(buf) == 0:
                t.violations.append("get_buffer() returned an empty buffer while reading")
                return False
            n = min(len(buf), len(seg))
            buf[:n] = seg[:n]
            del seg[:n]
            if not seg:
                self._segments.popleft()
            self.reads.append(n)
            self.proto.buffer_updated(n)
            return True
        if self._eof_pending:
            self._eof_pending = False
            self._deliver_eof()
            return True
        return False

    def _deliver_eof(self) -> None:
        keep_open = self.proto.eof_received()
        if keep_open:
            self.transport.eof_stopped = True
        else:
            self.transport.close()

    def read_before_callbacks(self) -> bool:
        """One read (or EOF) before the ready callbacks run: the order a loop may pick when
        reading resumed from an I/O callback of the same poll phase."""
        return self._read_once()

    def run(self, max_steps: int = 200_000) -> None:
        """Ready callbacks, then one read, until nothing moves (uvloop: idle before poll)."""
        for _ in range(max_steps):
            moved = self.loop.run_ready()
            moved = self._read_once() or moved
            if not moved:
                return
        raise AssertionError("the connection never settles (livelock)")

    # the peer's reading of our output
    def peer_stops_reading(self, unsent: int = 0) -> None:
        """From now on our writes stay unsent. ``unsent`` > 0: that much is already stuck
        (over the high mark: pause_writing at once)."""
        t = self.transport
        t.peer_reading = False
        if unsent:
            t.unsent = unsent
            if not t.write_paused:
                t.write_paused = True
                self.proto.pause_writing()

    def peer_reads_all(self) -> None:
        t = self.transport
        t.peer_reading = True
        t.unsent = 0
        if t.write_paused:
            t.write_paused = False
            if not t.lost:
                self.proto.resume_writing()
        if t.closing and not t.lost:
            self.loop.call_soon(t._lose, None)
        self.run()

    # what the client observes
    @property
    def responses(self) -> list[Response]:
        return read_responses(bytes(self.transport.written))

    @property
    def closed(self) -> bool:
        return self.transport.lost

    @property
    def fin_sent(self) -> bool:
        """The client would read EOF after the last byte (FIN or close)."""
        return self.transport.eof_written or self.transport.closing

    def timeouts(
        self,
        after: float,
        *,
        header: float = 10.0,
        idle: float = 60.0,
        body: float = 300.0,
    ) -> None:
        """Advance the clock by ``after`` seconds, then run one sweep as the server does."""
        self.loop.advance(after)
        self.proto.check_timeouts(self.loop.time(), header, idle, body)
        self.run()


def patched_time(loop: FakeLoop) -> SimpleNamespace:
    """Stands in for the ``time`` module inside gateway.http.protocol: its clock is the loop's."""
    return SimpleNamespace(monotonic=loop.time)


# -- the client's reading of the bytes -------------------------------------------------------
class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.headers = headers
        self.body = b""
        self.chunks: list[bytes] = []
        self.framing = ""  # "length", "chunked", "close" or "" (1xx)
        self.complete = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.framing}, {self.body[:80]!r}, complete={self.complete})"


def read_responses(data: bytes) -> list[Response]:
    """Split a server's output into responses (RFC 9112 §6.3 framing, requests never HEAD)."""
    out: list[Response] = []
    pos = 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise AssertionError(f"incomplete response head at byte {pos}: {data[pos:pos + 80]!r}")
        lines = data[pos:end].decode("latin-1").split("\r\n")
        version, status, _ = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        r = Response(int(status), headers)
        out.append(r)
        pos = end + 4
        if 100 <= r.status < 200:
            r.complete = True
            continue
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", te
            r.framing = "chunked"
            body = bytearray()
            while True:
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    r.body = bytes(body)
                    return out  # the response is still being written
                size = int(data[pos:nl], 16)
                if size == 0:
                    if data[nl + 2 : nl + 4] != b"\r\n":
                        r.body = bytes(body)
                        return out
                    pos = nl + 4
                    r.complete = True
                    break
                chunk = data[nl + 2 : nl + 2 + size]
                if len(chunk) < size or len(data) < nl + 4 + size:
                    r.body = bytes(body)
                    return out
                assert data[nl + 2 + size : nl + 4 + size] == b"\r\n", "chunk not followed by CRLF"
                r.chunks.append(chunk)
                body += chunk
                pos = nl + 4 + size
            r.body = bytes(body)
        elif cl is not None:
            r.framing = "length"
            n = int(cl)
            r.body = data[pos : pos + n]
            r.complete = len(r.body) == n
            pos += n
        else:
            r.framing = "close"
            r.body = data[pos:]
            pos = len(data)
    return out
