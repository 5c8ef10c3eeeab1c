"""A connection's request log: one ``gateway.access`` line and one response count per request.

The line is ``PEER "METHOD TARGET" STATUS in=BYTES out=BYTES ms=MILLISECONDS[ detail]``: ``in``
counts the request's head and body bytes as the connection parses them, ``out`` what it wrote
for the request. Who ends the request decides when the line is written: the connection, when
it answers (or the client goes, 499; or a fault of ours ends it, 500), or the body consumer of
a v3 stream, once its last report is out, with its counts as the detail and the status its end
stands for (``HttpProtocol.log_access``).

The clock is the connection's (``clock``), so that tests move one clock.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable

from gateway.http.parser import RequestHead
from gateway.log import write_request
from gateway.stats import HttpStats


class Line(enum.IntEnum):
    """Whether the current request's line is still owed, and by whom."""

    WRITTEN = 0  # written (or no request has begun): nothing is owed
    OURS = 1  # the connection writes it when the request ends
    CONSUMERS = 2  # the body consumer writes it (log_access); the connection never does


_WRITTEN, _OURS, _CONSUMERS = Line


def log_name(name: str) -> str:
    """A principal as one access-log token (a certificate CN may hold spaces)."""
    if name.isprintable() and " " not in name and '"' not in name:
        return name
    return json.dumps(name)


class RequestLog:
    __slots__ = ("peer", "bytes_in", "_head", "_t0", "_sent0", "_owed", "_stats", "_enabled",
                 "_clock")

    def __init__(self, stats: HttpStats, enabled: bool, clock: Callable[[], float]) -> None:
        self.peer = "-"  # host:port of the client
        self.bytes_in = 0  # head and body bytes of the current request (the connection adds)
        self._head: RequestHead | None = None  # the current request's (None: a refused head)
        self._t0 = 0.0
        self._sent0 = 0  # the connection's bytes written when the request began
        self._owed = _WRITTEN
        self._stats = stats
        self._enabled = enabled
        self._clock = clock

    @property
    def owed(self) -> bool:
        """The current request's line is not written yet."""
        return self._owed is not _WRITTEN

    @property
    def ours(self) -> bool:
        """The connection writes the current request's line (the body consumer does not)."""
        return self._owed is _OURS

    def begin(self, head: RequestHead, head_bytes: int, sent: int) -> None:
        """A request head was parsed (``sent``: the connection's bytes written so far)."""
        self._t0 = self._clock()
        self._sent0 = sent
        self.bytes_in = head_bytes
        self._head = head  # (its line is made only when it is written)
        self._owed = _OURS

    def begin_unparsed(self, unparsed: int, sent: int) -> None:
        """A head that could not be parsed is refused: the refusal gets a line of its own
        ("-" for the request line, ``in`` the bytes refused)."""
        self._t0 = self._clock()
        self._sent0 = sent
        self.bytes_in = unparsed
        self._head = None
        self._owed = _OURS

    def consumer_writes(self) -> None:
        """The body consumer ends the request (``log_access``); the connection does not, not
        even when the client goes first (the consumer still counts the outcomes)."""
        if self._owed is not _WRITTEN:
            self._owed = _CONSUMERS

    def finish(
        self, status: int, detail: str, endpoint: str, principal: str | None, sent: int
    ) -> None:
        """The request is over: count the response and write the line, once per request."""
        if self._owed is _WRITTEN:
            return
        self._owed = _WRITTEN
        requests = self._stats.requests  # (HttpStats.response, written out)
        key = (endpoint, status)
        requests[key] = requests.get(key, 0) + 1
        head = self._head
        self._head = None
        if self._enabled:
            if principal is not None:
                detail += " user=" + log_name(principal)
            write_request(self.peer, None if head is None else head.method,
                          None if head is None else head.target, status, self.bytes_in,
                          sent - self._sent0, (self._clock() - self._t0) * 1000.0, detail)
