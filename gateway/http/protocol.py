"""HTTP/1.1 server connection on ``asyncio.BufferedProtocol`` (RFC 9112), no framework.

The connection reads into a buffer it owns (``gateway.http.readbuf``); ``_process`` parses heads
and body framing in place, handing body bytes to the request's body consumer as memoryviews
that do not outlive the call.

One request is served at a time, in arrival order (pipelined requests wait in the buffer until
the response before them has ended). The connection's handler (``gateway.http.handler``) gets
each request head and answers with ``respond`` (a whole response), ``start_stream`` (a chunked
response fed while the body is still arriving: the v3 produce stream) or ``read_body`` (the
body goes to a consumer that answers with ``respond``), or defers with ``defer`` while it waits
for something (cluster metadata) and answers later, once ``pending(head)`` says the request
still waits for it. Each request ends with its access-log line (``gateway.http.reqlog``).

A body is read to its end (``on_body_end``) or cut short (``_cut_body`` -> ``on_body_error``:
broken chunked framing, an oversize chunk line or trailer, the client's EOF, the stream idle
timeout, shutdown), and the consumer ends the answer with the reason. What the handler or a
body consumer raises is a fault of ours (``_fault``): logged once, answered 500 (or the stream
ended by its consumer), counted 500; it never escapes to the event loop.

Two named states (``gateway.http.states``), each moved by one function that refuses illegal
moves: ``ConnState`` (``_set_state``), the request side and the connection's end, with the
lingering close as a state; ``ResponseState`` (``_set_response``), the current request's
answer.

The rest of the connection's condition is independent of these: why reading is paused (a
bitmask, ``gateway.http.flow``), whether this request's connection stays open (``_keep_alive``),
whether the gateway is stopping (``_shutting_down``), whether the client half-closed
(``_peer_eof``), whether a parse is scheduled, and what a short stream holds back (``_held``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from gateway import errors
from gateway.http import writer
from gateway.http.chunked import ChunkedDecoder
from gateway.http.coding import (
    ACCEPT_ENCODING,
    BodyDecoder,
    BodyEncoder,
    UnsupportedContentEncoding,
    request_codings,
    response_coding,
)
from gateway.http.flow import PAUSE_BUFFER, PAUSE_STOPPED, PAUSE_WAITING, PAUSE_WRITE, describe
from gateway.http.handler import BodyConsumer, ConnectionHandler
from gateway.http.parser import RequestHead, parse_head
from gateway.http.readbuf import MIN_READ_SPACE, READ_BUFFER_MAX, ReadBuffer
from gateway.http.reqlog import RequestLog
from gateway.http.states import (
    ABANDONED,
    BODY,
    CHUNKED,
    CLOSE_DELIMITED,
    CLOSED,
    ENDED,
    HEAD,
    LINGERING,
    NO_RESPONSE,
    RESPONDING,
    RESPONSE_MOVES,
    STATE_MOVES,
    WHOLE,
    ConnState,
    ResponseState,
)

log = logging.getLogger("gateway.http")

WRITE_HIGH_WATER = 256 * 1024
WRITE_LOW_WATER = 64 * 1024
LINGER_TIMEOUT = 2.0  # seconds to drain an abandoned request body before closing

# Every pause reason stops the parser too, except a full buffer (parsing is what empties it).
PARSE_BLOCKERS = ~PAUSE_BUFFER

# The message of a 500 answer: a fault of ours (logged with its traceback), never the client's.
INTERNAL_ERROR = "internal error of the gateway"

VARY_ACCEPT_ENCODING = b"Vary: Accept-Encoding\r\n"



class HttpProtocol(ReadBuffer):
    # Slots, not an instance dict: CPython 3.11 shares an instance dict's keys (and reads an
    # attribute at a fixed index) for at most 30 names, and the per-read paths read many of
    # these (cachegrind: 8-11% fewer instructions per read and per request than with a dict).
    __slots__ = (
        "_handler", "_limits", "_http", "_state", "_response", "_transport", "_paused", "head",
        "_consumer", "_cl_remaining", "_chunked", "_keep_alive", "_shutting_down",
        "_process_scheduled", "_parsing", "_peer_eof", "last_activity", "head_started", "_write_paused_at",
        "_held", "_held_head", "requests", "_sent", "_log", "peer_host", "endpoint", "peer_cert", "principal",
        "_slot", "_decoder", "_encoder", "_codings", "internal",
    )

    def __init__(self, handler: ConnectionHandler, *, internal: bool = False) -> None:
        super().__init__()
        self._handler = handler
        # A connection of the gateway's own (a --workers worker handing a request over on the
        # Unix socket of the worker that serves it), not a client's.
        self.internal = internal
        self._limits = handler.http_limits
        self._http = handler.http_stats  # byte totals (gateway.stats)
        self._state = HEAD
        self._response = NO_RESPONSE
        self._transport: asyncio.Transport | None = None
        self._paused = 0
        self.head: RequestHead | None = None
        self._consumer: BodyConsumer | None = None
        self._cl_remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self._keep_alive = True  # the connection stays open after this request's response
        self._shutting_down = False  # no keep-alive from the next request on
        self._process_scheduled = False
        self._parsing = False  # _process's loop is running (it goes on by itself)
        self._peer_eof = False  # the client half-closed: it sends nothing more
        self.last_activity = time.monotonic()
        self.head_started = 0.0  # when the first byte of the current head arrived (0: none yet)
        self._write_paused_at = 0.0
        # Output of a Content-Length request's stream, held to the end of the loop turn (None:
        # not holding). Non-empty exactly while a _flush_held is scheduled.
        self._held: bytes | None = None
        # That stream's head, held until its first output leaves (b"": none held).
        self._held_head = b""
        self.requests = 0
        self._sent = 0  # bytes written on this connection
        self._log = RequestLog(handler.http_stats, handler.access_log, time.monotonic)
        self.peer_host = "-"
        self.endpoint = "-"  # set by the handler's dispatch
        # TLS: the client certificate the handshake verified ({} or None without one), and
        # the principal the handler's dispatch authenticated for the current request.
        self.peer_cert: Any = None
        self.principal: str | None = None
        # A concurrency slot (gateway.limits) the current request holds: (limiter, principal).
        self._slot: tuple[Any, str] | None = None
        # Content codings (gateway.http.coding): the request body's decoder (between the
        # framing and the body consumer) and the stream's encoder, for this request only.
        self._decoder: BodyDecoder | None = None
        self._encoder: BodyEncoder | None = None
        self._codings: tuple[str, ...] | None = None  # the request body's (None: not read yet)

    # -- state ------------------------------------------------------------------------
    def _set_state(self, state: ConnState) -> None:
        if not STATE_MOVES[self._state] >> state & 1:
            raise errors.GatewayBug(
                f"illegal connection state move {self._state.name} -> {state.name}"
            )
        self._state = state

    def _set_response(self, response: ResponseState) -> None:
        if not RESPONSE_MOVES[self._response] >> response & 1:
            raise errors.GatewayBug(
                f"illegal response state move {self._response.name} -> {response.name}"
            )
        self._response = response

    @property
    def state(self) -> ConnState:
        return self._state

    def pending(self, head: RequestHead) -> bool:
        """This request still waits for its answer: the client has not gone and no answer has
        started. What a handler that answers later asks first (after a metadata refresh, a
        password check, a consume); False means: drop the answer."""
        return self.head is head and self._response is NO_RESPONSE and self._state is not CLOSED

    @property
    def paused_reasons(self) -> int:
        return self._paused

    # -- asyncio callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass, but has its interface.
        t = cast(asyncio.Transport, transport)
        self._transport = t
        t.set_write_buffer_limits(high=WRITE_HIGH_WATER, low=WRITE_LOW_WATER)
        peer = t.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._log.peer = f"{peer[0]}:{peer[1]}"
            self.peer_host = str(peer[0])
        self.peer_cert = t.get_extra_info("peercert")
        self._http.connections += 1
        self._handler.connection_opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release_slot()
        prev = self._state
        if prev is not CLOSED:
            self._set_state(CLOSED)
        self._transport = None
        consumer = self._consumer
        self._consumer = None
        if consumer is not None and prev is not CLOSED:
            try:
                consumer.on_connection_lost()
            except Exception as exc:  # noqa: BLE001 - a fault of ours, not the client's
                self._fault(exc)
        if self._log.ours:
            self._finish_request(499, " (client gone)")  # nginx's "client closed request"
        self._handler.connection_closed(self)

    def buffer_updated(self, nbytes: int) -> None:
        state = self._state
        if state is LINGERING or state is CLOSED:
            return  # reading only to discard (the buffer is not advanced)
        # The read's bookkeeping (ReadBuffer), written out: this runs on every socket read.
        self._end += nbytes
        if nbytes >= self._offered and len(self._buf) < READ_BUFFER_MAX:
            self._grow = True
        self._http.received_bytes += nbytes
        now = time.monotonic()
        self.last_activity = now
        if state is HEAD and self.head_started == 0.0:
            self.head_started = now
        self._process()

    def eof_received(self) -> bool | None:
        if self._state is LINGERING:
            return False  # the peer finished too: close
        # The client will send nothing more. What it sent before may still sit unparsed in
        # our buffer (reading resumes before the parser runs again), so the body is judged
        # incomplete only once that is consumed. Responses still go out: keep the transport
        # open for writing until the response ends.
        self._peer_eof = True
        if self._state is HEAD and self._start == self._end:
            return False
        if self._state is RESPONDING and self._response is not NO_RESPONSE:
            # A stream answering a request without a body (streaming consume): the client's
            # EOF is its end of listening. The consumer, if it cares, ends the stream.
            on_peer_eof = getattr(self._consumer, "on_peer_eof", None)
            if on_peer_eof is not None:
                try:
                    on_peer_eof()
                except Exception as exc:  # noqa: BLE001 - a fault of ours (the body consumer's)
                    self._fault(exc)
                return True
        if not self._paused & PARSE_BLOCKERS:
            self._process()
        else:
            try:
                self._check_eof()
            except Exception as exc:  # noqa: BLE001 - a fault of ours (the body consumer's)
                self._fault(exc)
        return True

    def _check_eof(self) -> None:
        if not self._peer_eof:
            return
        state = self._state
        if state is HEAD:
            if not self._paused & PARSE_BLOCKERS:
                # The parser has run: what is left is no whole request, and never will be.
                self._close_now()
            return
        if state is not BODY or self._start != self._end:
            return
        if not self.has_body() or self._wire_done():
            return  # a whole request is in (its body maybe still being decoded)
        # The body was cut short: the client will send no more of it (it may still read).
        head = self.head
        assert head is not None
        if head.chunked:
            where = "before the last chunk of the body"
        else:
            where = (
                f"after {(head.content_length or 0) - self._cl_remaining} of the "
                f"{head.content_length} body bytes its Content-Length announced"
            )
        self._cut_body(errors.BadRequest(f"the client closed its side of the connection {where}"))

    def pause_writing(self) -> None:
        self._write_paused_at = time.monotonic()
        self.pause_reading(PAUSE_WRITE)

    def resume_writing(self) -> None:
        self.last_activity = time.monotonic()
        self._write_paused_at = 0.0
        self.resume_reading(PAUSE_WRITE)
        # A stream that kept its reports while the socket was full writes them now.
        on_writable = getattr(self._consumer, "on_writable", None)
        response = self._response
        if on_writable is not None and (response is CHUNKED or response is CLOSE_DELIMITED):
            try:
                on_writable()
            except Exception as exc:  # noqa: BLE001 - a fault of ours (the body consumer's)
                self._fault(exc)

    @property
    def write_blocked(self) -> bool:
        """The transport's buffer is over its high-water mark (the peer is not reading)."""
        return self._write_paused_at != 0.0

    @property
    def written(self) -> int:
        """Bytes written to this connection so far (heads, framing and bodies)."""
        return self._sent

    @property
    def flushed(self) -> int:
        """Of ``written``, the bytes the transport has handed to the socket (not in its write
        buffer any more); -1 once the connection is lost (what it held is unknown). Behind TLS
        the count is of bytes encrypted and handed to the TCP transport below, whose own buffer
        (up to its high-water mark) is not seen."""
        transport = self._transport
        if transport is None:
            return -1
        return self._sent - transport.get_write_buffer_size()

    # -- flow control (reasons bitmask) ----------------------------------------------
    def pause_reading(self, reason: int) -> None:
        if self._state is LINGERING:
            return
        was = self._paused
        self._paused = was | reason
        if not was and self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self, reason: int) -> None:
        was = self._paused
        if not was & reason:
            return
        self._paused = now = was & ~reason
        if self._state is CLOSED or self._transport is None:
            return
        if not now:
            self._transport.resume_reading()
        if not now & PARSE_BLOCKERS:
            # Bytes already buffered can be parsed again (a full buffer stops the socket,
            # not the parser: parsing is what empties it).
            if self._state is HEAD and self._start < self._end:
                self.head_started = time.monotonic()  # waiting on us was not the client's delay
            self._schedule_process()

    def stop_reading(self) -> None:
        """The body consumer will take no more bytes; the connection closes after the response."""
        self._keep_alive = False
        self.pause_reading(PAUSE_STOPPED)
        if self._state is BODY:
            self._set_state(ABANDONED)

    def _schedule_process(self) -> None:
        if not self._process_scheduled:
            self._process_scheduled = True
            self._handler.loop.call_soon(self._deferred_process)

    def _parse_on(self) -> None:
        """Bytes already buffered may be parsed now: from the parser's loop when this is called
        inside it (a handler answering from its dispatch), else from a callback of its own."""
        if not self._parsing:
            self._schedule_process()

    def _deferred_process(self) -> None:
        self._process_scheduled = False
        if self._state is not CLOSED:
            self._process()

    # -- parsing loop -----------------------------------------------------------------
    def _process(self) -> None:
        buf = self._buf
        try:
            self._parsing = True
            while not self._paused & PARSE_BLOCKERS:
                state = self._state
                if state is HEAD:
                    if self._start == self._end:
                        break
                    res = parse_head(buf, self._start, self._end, self._limits)
                    if res is None:
                        break
                    head, start = res
                    head_bytes = start - self._start
                    self._start = start
                    self._on_head(head, head_bytes)
                elif state is BODY:
                    if not self._feed_body():
                        break
                else:
                    break
            self._parsing = False
            if self._peer_eof and self._state is not CLOSED:
                self._check_eof()
        except errors.PeerError as exc:
            # The client's fault (malformed framing, or refused by the handler or consumer).
            self._parsing = False
            try:
                self._protocol_error(exc)
            except Exception as fault:  # noqa: BLE001 - ending the body raised: ours
                self._fault(fault)
            return
        except Exception as exc:  # noqa: BLE001 - the handler's or the body consumer's: ours
            self._parsing = False
            self._fault(exc)
            return
        if self._state is CLOSED:
            return
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._buf) - self._end < MIN_READ_SPACE and not self._make_room():
            self.pause_reading(PAUSE_BUFFER)
        if self._paused & PAUSE_BUFFER and len(self._buf) - self._end >= MIN_READ_SPACE:
            self.resume_reading(PAUSE_BUFFER)

    def _feed_body(self) -> bool:
        """Deliver buffered body bytes; False when nothing more can be done now."""
        consumer = self._consumer
        if consumer is None:
            raise errors.GatewayBug(
                "the handler neither answered the request, nor deferred it, nor took its body"
            )
        if not consumer.accepting:
            return False
        decoder = self._decoder
        if decoder is not None and decoder.busy:
            # Decoded bytes of pieces already read come first, before any more is read.
            decoder.pump()
            if self._state is not BODY or self._decoding():
                return False
        chunked = self._chunked
        if chunked is None:
            n = min(self._cl_remaining, self._end - self._start)
            if n:
                start = self._start
                self._start = start + n
                self._log.bytes_in += n
                self._cl_remaining -= n
                if decoder is None:
                    consumer.on_body(self._view[start : start + n])
                    if self._state is not BODY:
                        return False  # the consumer stopped reading the body
                else:
                    decoder.feed(self._view[start : start + n])
                    if self._state is not BODY or self._decoding():
                        return False  # the consumer stopped reading the body, or takes no more now
            if self._cl_remaining == 0:
                if decoder is None:
                    self._body_complete()  # (_end_of_body without a decoder)
                else:
                    self._end_of_body()
                return True
            return n > 0
        if chunked.done:  # the body's end, held back while its last bytes were decoded
            self._end_of_body()
            return True
        if self._start == self._end:
            return False
        pos, ds, de = chunked.feed(self._buf, self._start, self._end)
        self._log.bytes_in += pos - self._start
        self._start = pos
        if de > ds:
            if decoder is None:
                consumer.on_body(self._view[ds:de])
            else:
                decoder.feed(self._view[ds:de])
            if self._state is not BODY or self._decoding():
                return False  # the consumer stopped reading the body, or takes no more now
        if chunked.done:
            self._end_of_body()
        return True

    def _decoding(self) -> bool:
        """The body decoder still holds bytes the consumer has not taken: read no more. When
        the consumer accepts (the decoder stopped for its time budget, not for the consumer),
        the parser runs again from a callback of its own; otherwise the consumer's resume does
        it."""
        decoder = self._decoder
        if decoder is None or not decoder.busy:
            return False
        consumer = self._consumer
        if consumer is not None and consumer.accepting:
            self._schedule_process()
        return True

    def _wire_done(self) -> bool:
        """Every byte of the current body has been read from the connection (its decoding may
        still be going on)."""
        chunked = self._chunked
        return chunked.done if chunked is not None else self._cl_remaining == 0

    def _end_of_body(self) -> None:
        decoder = self._decoder
        if decoder is not None:
            decoder.finish()  # a body that ends inside its compressed data: BadRequest (400)
        self._body_complete()

    def _body_complete(self) -> None:
        consumer = self._consumer
        if self._state is BODY:
            self._state = RESPONDING  # (the common, legal, move: _set_state checks the others)
        else:
            self._set_state(RESPONDING)
        response = self._response
        if response is WHOLE or response is ENDED:
            self._after_response()
        elif consumer is not None:
            consumer.on_body_end()

    def _cut_body(self, error: errors.GatewayError) -> None:
        """Stop reading the current request's body before its end, for ``error``'s reason:
        the one way every such cut ends a request (malformed chunked framing, an oversize
        chunk line or trailer, the client's EOF, the stream idle timeout, shutdown). The body
        consumer ends its answer (``on_body_error``: a stream's last failure report says why
        and where reading stopped; a whole answer is ``error``); a request nobody answers gets
        ``error`` from the connection. The connection closes after the answer."""
        if self._state is not BODY:
            return  # the body is read, or reading it stopped already
        self._keep_alive = False
        self._set_state(ABANDONED)
        self.pause_reading(PAUSE_STOPPED)
        consumer = self._consumer
        if consumer is not None:
            consumer.on_body_error(error)
        if self._response is NO_RESPONSE and self._state is not CLOSED:
            self.respond(error.status, error.body(), close=True)

    # -- requests ---------------------------------------------------------------------
    def _on_head(self, head: RequestHead, head_bytes: int) -> None:
        self.head = head
        self.requests += 1
        self.endpoint = "-"
        self.principal = None
        self._log.begin(head, head_bytes, self._sent)
        self.head_started = 0.0
        self._keep_alive = head.keep_alive and not self._shutting_down
        self._response = NO_RESPONSE  # a new request: its answer has not begun
        self._consumer = None
        self._chunked = ChunkedDecoder(self._limits) if head.chunked else None
        self._cl_remaining = head.content_length or 0
        self._decoder = None
        self._encoder = None
        # The body's content codings: none when the head names none (request_codings parses
        # a Content-Encoding once it is asked for).
        self._codings = () if head.joined("content-encoding") is None else None
        if self._state is HEAD:
            self._state = BODY  # (the common, legal, move: _set_state checks the others)
        else:
            self._set_state(BODY)
        self._handler.dispatch(self, head)

    def has_body(self) -> bool:
        head = self.head
        return head is not None and (head.chunked or bool(head.content_length))

    def defer(self) -> None:
        """The handler answers later (e.g. after a metadata refresh): read nothing meanwhile."""
        self.pause_reading(PAUSE_WAITING)

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = writer.JSON_TYPE,
        close: bool = False,
        extra_headers: bytes = b"",
        detail: str = "",
    ) -> None:
        """A whole response to the current request. An unread request body is not read: the
        connection closes after the response (RFC 9112 §9.6). ``detail``: words for the end
        of its access log line."""
        state = self._state
        transport = self._transport
        if state is CLOSED or state is LINGERING or transport is None:
            return
        if self._response is NO_RESPONSE:
            self._response = WHOLE  # (the common, legal, move: _set_response checks the others)
        else:
            self._set_response(WHOLE)
        if state is BODY:
            if self.has_body():
                close = True  # answered before its body was read
            else:
                self._set_state(RESPONDING)
        if close or not self._keep_alive:
            self._keep_alive = False
            close = True
        head = self.head
        data = writer.fixed_response(
            status,
            body,
            content_type=content_type,
            close=close,
            # An HTTP/1.0 client keeps the connection only when told (RFC 9112 §9.3).
            keep_alive=not close and head is not None and head.version == 10,
            extra_headers=extra_headers,
        )
        n = len(data)  # (_write, written out)
        self._sent += n
        self._http.sent_bytes += n
        transport.write(data)
        self._finish_request(status, " " + detail if detail else "")
        if close:
            self._close_after_write()
            return
        self._after_response()

    def respond_error(self, exc: errors.GatewayError, *, close: bool = False) -> None:
        self.respond(exc.status, exc.body(), close=close)

    def start_stream(self, consumer: BodyConsumer, *, status: int = 200,
                     content_type: bytes = writer.JSON_TYPE) -> None:
        """Begin a chunked response and start feeding the request body to ``consumer``.
        A body with a ``Content-Encoding`` goes through a decoder, so that the consumer sees
        it decoded; with an ``Accept-Encoding`` that asks for it, the response is compressed
        (gateway.http.coding)."""
        head = self.head
        transport = self._transport
        if head is None or transport is None or self._state is not BODY:
            consumer.on_connection_lost()
            return
        has_body = head.chunked or bool(head.content_length)  # (has_body, written out)
        if has_body and self._codings != () and not self._take_decoder(consumer):
            return
        http10 = head.version == 10
        if self._response is NO_RESPONSE:  # (the common, legal, move: _set_response checks)
            self._response = CLOSE_DELIMITED if http10 else CHUNKED
        else:
            self._set_response(CLOSE_DELIMITED if http10 else CHUNKED)
        self._consumer = consumer
        self._log.consumer_writes()  # the stream's line comes with its counts (log_access)
        if head.expect_continue and has_body:
            self._write(writer.CONTINUE_100)
        accept_encoding = head.joined("accept-encoding")
        coding = None if accept_encoding is None else response_coding(accept_encoding)
        extra = VARY_ACCEPT_ENCODING  # the answer depends on Accept-Encoding (RFC 9110 §12.5.5)
        if coding is not None:
            self._encoder = encoder = BodyEncoder(coding)
            extra = encoder.header + extra
        stream_head = writer.chunked_head(
            status, content_type=content_type, close=not self._keep_alive, http10=http10,
            extra_headers=extra,
        )
        if head.content_length:
            # A Content-Length request is short: its head and reports are held to the end of
            # the loop turn in which its first reports are written, so that a short request's
            # whole answer leaves in one write, never later than its reports (docs/api.md §1).
            # (A stream answering a request without a body writes each piece at once.)
            self._held = b""
            self._held_head = stream_head
        else:
            self._write(stream_head)  # at once (docs/api.md §1): a chunked body may take long
        if not has_body:
            self._body_complete()
        if self._paused & PAUSE_WAITING:
            self.resume_reading(PAUSE_WAITING)
        if not self._paused & PARSE_BLOCKERS and not self._parsing:
            self._schedule_process()  # (_parse_on)

    def read_body(self, consumer: BodyConsumer) -> None:
        """Feed the request body to ``consumer``, which answers with ``respond`` once it has
        what it needs (a request answered as a whole, e.g. the v3 batch). A body with a
        ``Content-Encoding`` reaches it decoded; the answer is not compressed."""
        head = self.head
        transport = self._transport
        if head is None or transport is None or self._state is not BODY:
            return
        has_body = head.chunked or bool(head.content_length)  # (has_body, written out)
        if has_body and self._codings != () and not self._take_decoder(consumer):
            return
        self._consumer = consumer
        if head.expect_continue and has_body:
            self._write(writer.CONTINUE_100)
        if not has_body:
            self._body_complete()
        if self._paused & PAUSE_WAITING:
            self.resume_reading(PAUSE_WAITING)
        if not self._paused & PARSE_BLOCKERS and not self._parsing:
            self._schedule_process()  # (_parse_on)

    def _take_decoder(self, consumer: BodyConsumer) -> bool:
        """Put a decoder in front of ``consumer`` for a body with a ``Content-Encoding``.
        False (and the request answered 415) for a coding the gateway does not decode: the
        endpoints refuse it before this, in the order of their checks."""
        head = self.head
        assert head is not None
        if not self.has_body():
            return True
        try:
            codings = self.request_codings()
        except UnsupportedContentEncoding as exc:
            consumer.on_connection_lost()
            self.respond(exc.status, exc.body(), extra_headers=ACCEPT_ENCODING)
            return False
        if codings:
            self._decoder = BodyDecoder(codings, consumer)
        return True

    def request_codings(self) -> tuple[str, ...]:
        """The current request body's content codings (gateway.http.coding.request_codings),
        read from its head once; raises ``UnsupportedContentEncoding``."""
        codings = self._codings
        if codings is None:
            head = self.head
            codings = request_codings(head.joined("content-encoding")) if head is not None else ()
            self._codings = codings
        return codings

    def write_body(self, data: bytes) -> None:
        response = self._response
        if self._transport is None or not data:
            return  # (an empty chunk would be the last-chunk)
        if response is not CHUNKED and response is not CLOSE_DELIMITED:
            return  # no stream is open
        encoder = self._encoder
        held = self._held
        if held is None:
            self._write(self._frame(encoder.write(data) if encoder is not None else data))
            return
        # Held output goes out at the end of this loop turn, or with the response's end: framed
        # chunks, or with a response coding the plain bytes, compressed and framed as one then.
        if not held:
            self._handler.loop.call_soon(self._flush_held)
        self._held = held + (data if encoder is not None else self._frame(data))

    def _frame(self, data: bytes) -> bytes:
        if self._response is CHUNKED and data:
            return writer.chunk(data)
        return data

    def _flush_held(self) -> None:
        held = self._held
        if held:
            self._held = b""  # (the stream is still open: end_body takes what is held)
            encoder = self._encoder
            if encoder is not None:
                held = self._frame(encoder.write(held))
            head = self._held_head
            if head:
                self._held_head = b""
                held = head + held
            self._write(held)

    def end_body(self, data: bytes = b"") -> None:
        """End the stream, with ``data`` as its last output (``write_body(data)`` then
        ``end_body()``, in one write when output is held)."""
        response = self._response
        if response is not CHUNKED and response is not CLOSE_DELIMITED:
            return
        if data and self._transport is not None:
            held = self._held
            if held is None:
                self.write_body(data)
            else:  # joins what is held (written below: nothing to schedule)
                self._held = held + (data if self._encoder is not None
                                     else writer.chunk(data) if response is CHUNKED else data)
        self._response = ENDED  # (CHUNKED or CLOSE_DELIMITED -> ENDED: both legal)
        tail = writer.LAST_CHUNK if response is CHUNKED else b""
        held = self._held
        self._held = None
        encoder = self._encoder
        if encoder is not None:
            # The coding's end (gzip's trailer, zstd's frame end), with what was held.
            self._encoder = None
            last = encoder.end(held or b"")
            tail = (writer.chunk(last) if response is CHUNKED else last) + tail
            held = None
        if held is not None:
            tail = held + tail
        head = self._held_head
        if head:
            self._held_head = b""
            tail = head + tail
        if self._transport is not None:
            self._write(tail)
        if response is CLOSE_DELIMITED or self._state is BODY:
            # A close-delimited body ends with the connection; a response that ended before
            # its request body leaves the rest of that body unread.
            self._keep_alive = False
        if not self._keep_alive:
            self._close_after_write()
            return
        self._after_response()

    def _after_response(self) -> None:
        """The response has ended and the body was fully read: serve the next request."""
        if self._state is CLOSED:
            return
        if not self._keep_alive:
            self._close_after_write()
            return
        self._consumer = None
        self.head = None
        self.last_activity = time.monotonic()  # keep-alive idleness counts from here
        if self._state is RESPONDING:
            self._state = HEAD  # (the common, legal, move: _set_state checks the others)
        else:
            self._set_state(HEAD)
        if self._paused & PAUSE_WAITING:
            self.resume_reading(PAUSE_WAITING)
        if self._start < self._end:
            self.head_started = time.monotonic()
            self._schedule_process()
        elif self._peer_eof:
            self._close_now()  # every request the client sent is answered

    def _close_after_write(self) -> None:
        transport = self._transport
        state = self._state
        if transport is None or transport.is_closing() or state is LINGERING:
            return
        if state is not BODY and state is not ABANDONED and self._start == self._end:
            # Everything the client sent is read: close now.
            self.pause_reading(PAUSE_STOPPED)
            transport.close()  # flushes what is buffered, then closes
            return
        # The client may still be sending a body we will not read (or requests after it):
        # send FIN after our last byte, read and discard until its EOF or LINGER_TIMEOUT.
        self._set_state(LINGERING)
        try:
            transport.write_eof()
        except NotImplementedError:
            # TLS has no half-close (the SSL transport refuses write_eof): the response says
            # "Connection: close", so the client closes once it has read it; until then (or
            # LINGER_TIMEOUT) its unread body is discarded the same way.
            pass
        except (OSError, RuntimeError):
            self._paused |= PAUSE_STOPPED  # (pause_reading is a no-op once lingering)
            transport.close()
            return
        self._drop_unparsed()
        was_paused = self._paused
        self._paused = PAUSE_STOPPED  # the parser stays stopped; the socket is drained
        if was_paused:
            transport.resume_reading()
        self._handler.loop.call_later(LINGER_TIMEOUT, self._close_now)

    def _protocol_error(self, exc: errors.PeerError) -> None:
        """Malformed framing: answer once and close (we cannot find the next request)."""
        transport = self._transport
        state = self._state
        if state is CLOSED or transport is None:
            return
        self.head_started = 0.0
        if state is LINGERING or transport.is_closing():
            return  # already answered and closing
        if state is not HEAD:
            # Malformed body framing: reading the body stops here, the request ends with
            # the reason (a stream's last report, or a whole answer), then we close.
            self._cut_body(exc)
            return
        self._answer_unparsed(exc.status, exc.body())

    def _answer_unparsed(self, status: int, body: bytes) -> None:
        """Refuse what is buffered in HEAD (a malformed head, or a fault of ours before a
        request began): one answer, counted as a request of its own, then close."""
        self._keep_alive = False
        if not self._log.owed:  # no request had begun
            self.endpoint = "-"
            self.principal = None
            self._log.begin_unparsed(self._end - self._start, self._sent)
        self._write(writer.fixed_response(status, body, close=True))
        self._finish_request(status)
        self._close_after_write()

    # -- faults of ours -------------------------------------------------------------------
    def _fault(self, exc: Exception) -> None:
        """The handler or a body consumer raised: a fault of ours, never the client's. Logged
        once, with its traceback; the request is answered and counted as 500, never as a
        dropped connection or 499: a 500 answer when none has begun, or, with a stream open,
        its consumer ends it with one last failure report (``on_body_error`` with a 500
        error). Then the connection closes."""
        head = self.head
        state = self._state
        log.error(
            "internal error of the gateway serving %s from %s (%s): %r",
            f"{head.method} {head.target!r}" if head is not None else "the connection",
            self._log.peer,
            state.name,
            exc,
            exc_info=exc,
        )
        self._keep_alive = False
        if state is CLOSED:  # (the body consumer raised in on_connection_lost)
            self._finish_request(500, " (internal error)")
            return
        if state is LINGERING:
            return  # answered and closing already
        if state is HEAD:
            # No request is being served: the fault is in reading the next one.
            if self._start == self._end:
                self.pause_reading(PAUSE_STOPPED)
                self._close_now()
            else:
                self._answer_unparsed(500, errors.error_body(500, INTERNAL_ERROR))
            return
        if state is BODY and self.has_body():
            self._set_state(ABANDONED)  # the rest of the body is never read
        self.pause_reading(PAUSE_STOPPED)
        consumer = self._consumer
        response = self._response
        bug = errors.GatewayBug(INTERNAL_ERROR)
        if response is CHUNKED or response is CLOSE_DELIMITED:
            if consumer is not None:
                try:
                    consumer.on_body_error(bug)  # its last report, then the response's end
                    return
                except Exception as again:  # noqa: BLE001 - the consumer cannot end it
                    log.error("the body consumer could not end its stream after an internal "
                              "error: the response ends unfinished", exc_info=again)
            # Nobody can end the stream properly: it ends without its last chunk, which a
            # client of a chunked response reads as a broken response (its head goes first).
            self._set_response(ENDED)
            self._held = None
            held_head = self._held_head
            if held_head:
                self._held_head = b""
                self._write(held_head)
            self._drop_consumer()
            self._finish_request(500, " (internal error)")
            self._close_after_write()
            return
        if response is NO_RESPONSE:
            self._drop_consumer()  # its answer, if it ever has one, has no reader
            if self._state is not CLOSED:
                self.respond(500, bug.body(), close=True)
            return
        # The answer was complete before the fault (WHOLE, or ENDED).
        if self._log.owed:
            self._finish_request(500, " (internal error)")
        self._close_after_write()

    def _drop_consumer(self) -> None:
        """The connection answers instead of the body consumer: it gets nothing more, and
        what it still has in flight settles as for a client that has gone."""
        consumer = self._consumer
        self._consumer = None
        if consumer is not None:
            try:
                consumer.on_connection_lost()
            except Exception as exc:  # noqa: BLE001 - already failing: log it only
                log.error("the body consumer failed to let go of its request", exc_info=exc)

    def later(self, callback: Callable[..., None]) -> Callable[..., None]:
        """``callback`` wrapped for a handler that answers the current request later (a
        future's done callback): what it raises is a fault of ours on this request (logged,
        answered 500) rather than an error the event loop logs while the client waits."""
        head = self.head

        def run(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # noqa: BLE001 - a fault of ours
                if self.head is head and self._state is not CLOSED:
                    self._fault(exc)
                else:  # the request is over: nothing to answer
                    log.error("internal error after the request ended", exc_info=exc)

        return run

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None:
            n = len(data)
            self._sent += n
            self._http.sent_bytes += n
            transport.write(data)

    def local_address(self) -> tuple[str, int] | None:
        """The (host, port) this connection was accepted on; None once it is gone."""
        transport = self._transport
        name = transport.get_extra_info("sockname") if transport is not None else None
        if not isinstance(name, tuple) or len(name) < 2:
            return None
        return str(name[0]), int(name[1])

    # -- the request's end: slot, access log and metrics --------------------------------
    @property
    def limit_principal(self) -> str:
        """Who the produce limits count this request for: the authenticated principal, else
        the client's IP address."""
        return self.principal if self.principal is not None else self.peer_host

    def hold_slot(self, limiter: Any, principal: str) -> None:
        """The current request took a concurrency slot: given back when it ends."""
        self._slot = (limiter, principal)

    def release_slot(self) -> None:
        slot = self._slot
        if slot is not None:
            self._slot = None
            slot[0].release(slot[1])

    def _finish_request(self, status: int, detail: str = "") -> None:
        """The request is over: its slot goes back; it is counted and logged (once)."""
        if self._slot is not None:
            self.release_slot()
        self._log.finish(status, detail, self.endpoint, self.principal, self._sent)

    def log_access(self, detail: str, status: int = 200) -> None:
        """A body consumer that answers with a stream (the v3 produce session) ends its
        request here, with its counts in ``detail`` and the status its end stands for (200, or
        the code of the last report of a stream cut short), once its last report is out (or,
        with the client gone, once every record has its outcome)."""
        self._finish_request(status, " " + detail)

    def last_request(self) -> None:
        """A connection accepted during shutdown: serve one request, then close."""
        self._shutting_down = True
        self._keep_alive = False

    # -- handler-driven ---------------------------------------------------------------
    def check_timeouts(self, now: float, header_timeout: float, idle_timeout: float,
                       body_timeout: float) -> None:
        state = self._state
        if state is not LINGERING:
            self._shrink_if_idle(now - self.last_activity)
        if body_timeout and self._write_paused_at and now - self._write_paused_at > body_timeout:
            # The peer stopped reading our responses for too long (whatever the state, even
            # while closing: close() would wait for it forever): give up on it.
            log.info("peer read nothing for %.0fs: dropping the connection (state %s)",
                     body_timeout, state.name)
            self._abort()
            return
        if state is HEAD:
            if self._paused & PARSE_BLOCKERS:
                pass  # complete requests may wait behind a response: not the client's delay
            elif self.head_started and now - self.head_started > header_timeout:
                self._protocol_error(errors.RequestTimeout("timed out reading the request head"))
            elif not self.head_started and now - self.last_activity > idle_timeout:
                self._close_now()
        elif state is BODY and body_timeout and not self._wire_done():
            if not self._paused and now - self.last_activity > body_timeout:
                # Waiting for the client's bytes (not for Kafka): the body is idle.
                log.info("request body idle for %.0fs: ending it", body_timeout)
                idle = errors.RequestTimeout(
                    f"the client sent nothing of the body for {body_timeout:g} s "
                    "(--stream-idle-timeout)"
                )
                try:
                    self._cut_body(idle)
                except Exception as exc:  # noqa: BLE001 - a fault of ours
                    self._fault(exc)

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now; a stream stops reading, finishes its
        in-flight records and ends its response; then the connection closes."""
        self._shutting_down = True
        self._keep_alive = False
        if self._state is HEAD:
            if self._start != self._end:
                self.pause_reading(PAUSE_STOPPED)
            self._close_now()
        elif self._consumer is not None:
            try:
                # A body still being read is cut (its last report says from where to
                # resend); then what is in flight finishes.
                self._cut_body(errors.ShuttingDown("the gateway is shutting down"))
                consumer = self._consumer
                if consumer is not None:
                    consumer.on_shutdown()
            except Exception as exc:  # noqa: BLE001 - a fault of ours
                self._fault(exc)
        else:
            self.pause_reading(PAUSE_STOPPED)

    def _close_now(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _abort(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.abort()

    def abort(self) -> None:
        """Drop the connection at once (shutdown deadline)."""
        self._abort()

    def info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
        c = self._consumer
        t = self._transport
        extra = c.debug_info() if c is not None and hasattr(c, "debug_info") else {}
        info = {
            "peer": t.get_extra_info("peername") if t is not None else None,
            "state": self._state.name,
            "response": self._response.name,
            "paused": describe(self._paused),
            "buffered": self.buffered,
            "buffer": self.buffer_size,
            "unsent": t.get_write_buffer_size() if t is not None else None,
            "requests": self.requests,
            **extra,
        }
        decoder = self._decoder
        if decoder is not None:  # a compressed body: how far its decoding has come
            info["decoded"] = decoder.decoded
            info["decoder_busy"] = decoder.busy
        if self._encoder is not None:
            info["response_coding"] = self._encoder.coding
        return info
