"""The named states of an HTTP connection and their legal moves. ``gateway.http.protocol``
moves each through one function that refuses any other move (``errors.GatewayBug``).

``ConnState``: the request side, and the connection's end::

    HEAD ──head──> BODY ──body read──> RESPONDING ──response ended, keep-alive──> HEAD
                    │
                    └──the body will not be read (the consumer stopped reading it, its
                       framing broke, the client cut it short)──> ABANDONED
    HEAD, BODY, RESPONDING, ABANDONED ──response over, the connection must close──> LINGERING
    any ──connection_lost──> CLOSED

LINGERING is the lingering close: our FIN goes after the last response byte, and what the
client still sends is read and discarded until its EOF or the linger timeout (closing with
unread bytes would reset the connection and could destroy responses it has not read yet). A
connection that has read everything the client sent closes without lingering.

``ResponseState``: the current request's answer. NONE until one begins; then WHOLE (one write
with Content-Length: it is never in progress), or a stream, CHUNKED or CLOSE_DELIMITED (an
HTTP/1.0 peer cannot take chunked framing: its body ends with the connection), until the
stream is ENDED. Once begun, an answer is that answer: no whole response inside a stream, no
second answer. Each request starts at NONE.

The two are kept apart because they move independently (a stream's response is written while
its request body is still read: BODY with CHUNKED). Both are ``IntEnum``: the moves are checked
with bitmasks (gateway.moves), plain int arithmetic. Hot paths compare identities with the
module-level names below: an attribute of an enum class (``ConnState.BODY``) is a far slower
lookup than a global.
"""

from __future__ import annotations

import enum

from gateway.moves import move_masks


class ConnState(enum.IntEnum):
    HEAD = 0  # waiting for (more of) a request head
    BODY = 1  # a request is being served; its body (if any) is still to be read
    RESPONDING = 2  # the body is read; the response has not ended yet
    ABANDONED = 3  # the rest of the body is never read; the response goes on, then we close
    LINGERING = 4  # closing: FIN sent, input discarded until the client's EOF or a timeout
    CLOSED = 5  # connection_lost


class ResponseState(enum.IntEnum):
    NONE = 0  # the current request's answer has not begun
    WHOLE = 1  # answered with a whole response (respond, or a framing error's 4xx)
    CHUNKED = 2  # a chunked stream is being written
    CLOSE_DELIMITED = 3  # an HTTP/1.0 stream: the body ends with the connection
    ENDED = 4  # the stream has ended


HEAD, BODY, RESPONDING, ABANDONED, LINGERING, CLOSED = ConnState
NO_RESPONSE, WHOLE, CHUNKED, CLOSE_DELIMITED, ENDED = ResponseState

STATE_MOVES = move_masks({
    HEAD: frozenset({BODY, LINGERING, CLOSED}),
    BODY: frozenset({RESPONDING, ABANDONED, LINGERING, CLOSED}),
    RESPONDING: frozenset({HEAD, LINGERING, CLOSED}),
    ABANDONED: frozenset({LINGERING, CLOSED}),
    LINGERING: frozenset({CLOSED}),
    CLOSED: frozenset(),
})

RESPONSE_MOVES = move_masks({
    NO_RESPONSE: frozenset({WHOLE, CHUNKED, CLOSE_DELIMITED}),
    CHUNKED: frozenset({ENDED}),
    CLOSE_DELIMITED: frozenset({ENDED}),
    WHOLE: frozenset(),
    ENDED: frozenset(),
})
