"""What an HTTP connection calls: its handler (who serves the requests) and a request's body
consumer. The connection (``gateway.http.protocol``) knows HTTP only; the layer above it
implements these, so nothing in ``gateway.http`` imports the server, the endpoints or the
Kafka side.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from gateway.errors import GatewayError
from gateway.http.parser import HttpLimits, RequestHead
from gateway.stats import HttpStats

# The connection passes itself to its handler: a gateway.http.protocol.HttpProtocol, named loosely
# here because that module imports this one (no import cycle, even for typing).
HttpProtocol = Any


class ConnectionHandler(Protocol):
    """Serves the requests of every connection it is given (``HttpProtocol(handler)``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the connection schedules its deferred parsing and timers on."""
        ...

    @property
    def http_limits(self) -> HttpLimits:
        """Head and chunk-framing limits of the request parser."""
        ...

    @property
    def http_stats(self) -> HttpStats:
        """Byte, connection and response totals the connection adds to."""
        ...

    @property
    def access_log(self) -> bool:
        """Whether each request ends with its ``gateway.access`` line."""
        ...

    def dispatch(self, conn: HttpProtocol, head: RequestHead) -> None:
        """A request head has arrived: answer it (``respond``, ``start_stream``, ``read_body``)
        now or later (after ``defer``). Before answering later, ask ``conn.pending(head)``."""
        ...

    def connection_opened(self, conn: HttpProtocol) -> None: ...

    def connection_closed(self, conn: HttpProtocol) -> None: ...


class BodyConsumer(Protocol):
    """Takes a request's body (``start_stream`` / ``read_body``). It may also have
    ``on_writable()`` (called when a socket that was full takes bytes again),
    ``on_peer_eof()`` (the client ended its side while a stream answers a request whose body
    was read: a stream without end, streaming consume, ends there) and ``debug_info()``
    (merged into the connection's ``info()``).

    A body ends in exactly one of two ways: ``on_body_end`` (read to its end) or
    ``on_body_error`` (reading stopped before its end, for a reason the error names). What a
    consumer raises from any of these calls is a fault of ours: the connection logs it and
    ends the request (``on_body_error`` with a 500 error while a stream is open; otherwise a
    500 answer of its own, and ``on_connection_lost``)."""

    @property
    def accepting(self) -> bool:
        """False while it takes no more body bytes (it has paused reading for its reason)."""
        ...

    def on_body(self, data: memoryview) -> None:
        """Body bytes; the view is valid during the call only."""
        ...

    def on_body_end(self) -> None:
        """The body was read to its end (the last chunk, or Content-Length bytes)."""
        ...

    def on_body_error(self, error: GatewayError) -> None:
        """The connection stops reading the body before its end, for ``error``: its chunked
        framing broke (400; an oversize trailer 431), the client half-closed before the end
        (400), it sent nothing for the stream idle timeout (408), the gateway is shutting down
        (503/50003); or a fault of ours ended the request (500, ``errors.GatewayBug``). Nothing
        more of the body comes. A stream ends its response with one last failure report
        (``error.error_code``) naming the reason and the body byte where reading stopped; a
        consumer answering whole answers ``error`` (its status) if it has not answered yet.
        The connection closes after the response. A consumer that leaves the request without
        an answer gets ``error`` as the connection's answer."""
        ...

    def on_connection_lost(self) -> None:
        """Nobody reads the answer any more: the client is gone, or the connection answered
        the request itself after a fault of ours."""
        ...

    def on_shutdown(self) -> None:
        """The gateway is stopping: take no more work, finish what is in flight, end the
        response. (A body still being read was cut with ``on_body_error`` just before.)"""
        ...
