"""What an HTTP connection calls: its handler (who serves the requests) and a request's body
consumer. The connection (``gateway.http.protocol``) knows HTTP only; the layer above it
implements these, so nothing in ``gateway.http`` imports the server, the endpoints or the
Kafka side.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

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
    ``on_writable()`` (called when a socket that was full takes bytes again) and
    ``debug_info()`` (merged into the connection's ``info()``)."""

    @property
    def accepting(self) -> bool:
        """False while it takes no more body bytes (it has paused reading for its reason)."""
        ...

    def on_body(self, data: memoryview) -> None:
        """Body bytes; the view is valid during the call only."""
        ...

    def on_body_end(self) -> None:
        """The body is over: complete, or cut short (the client stopped sending it, or its
        chunked framing broke; the connection then closes after the response)."""
        ...

    def on_connection_lost(self) -> None: ...

    def on_shutdown(self) -> None:
        """The gateway is stopping, or the client sent nothing for too long: stop reading,
        finish what is in flight, end the response."""
        ...
