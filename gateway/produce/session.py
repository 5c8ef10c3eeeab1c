"""One v3 produce stream: body bytes in, records to Kafka, delivery reports out in order.

The session knows records, order and reports, not sockets: it talks to the connection through
``ReportStream`` (write report bytes, end the response, pause/resume reading for a reason).
What is done once per record (produce, file the report slot, complete it from the delivery
report, format the report bytes) is in C: ``StreamCore`` (ext/stream.pxi). The session keeps the
stream's lifecycle: body pieces, backlog, pausing, shutdown, metrics and the access log. It runs
for every v3 request, so it is compiled too: ``ProduceSession`` is a class of the extension
(ext/session.pxi), re-exported here; this module keeps what describes it (its states and legal
moves, pause reasons, messages, the report prefix) and the compiled class reads those when the
first session is made.

States (``SessionState``, moved only by ``_set_state``):

- READING: body bytes are taken (a backlog of parsed records may wait for room);
- DRAINING: no more input (the body ended, a fatal record error, a limit cut it); the reports of
  the records read go out, then the response ends;
- SHUTTING_DOWN: the same, because the gateway is stopping: reports are written even to a peer
  that does not read (the socket's buffer takes them; the window bounds them);
- ORPHANED: the client is gone; the records with Kafka still get their outcome (counted, logged);
- ENDED: every report is out (or every outcome known), the access line is written.

Flow control (docs/api.md §1): the records between "parsed" and "report written" are bounded by
the core's window (the per-connection in-flight limit). When it is full, or librdkafka's queue
is full, the remaining parsed records wait in a backlog (at most one body slice's worth) and
reading pauses for that reason; it resumes when that reason clears, and the connection resumes
the socket only when no other reason holds.
"""

from __future__ import annotations

import enum
import functools
import logging
from typing import Protocol

from gateway._speedups import ProduceSession
from gateway.moves import move_masks
from gateway.produce.reports import json_str

log = logging.getLogger("gateway.produce")

# Reasons a session asks its connection to stop reading (bits of the connection's mask); the
# same values as StreamCore.stop_reason.
PAUSE_IN_FLIGHT = 1 << 4
PAUSE_KAFKA_QUEUE = 1 << 5

SHUTDOWN_MESSAGE = "gateway is shutting down before this record was handed to Kafka; resend it"
ENDED_MESSAGE = "the stream ended before this record was handed to Kafka; resend it"


class SessionState(enum.IntEnum):
    READING = 0
    DRAINING = 1
    SHUTTING_DOWN = 2
    ORPHANED = 3
    ENDED = 4


# The legal moves (the compiled ``_set_state`` checks against these masks; the state is a C int
# there, and ``state`` gives the member of SessionState).
READING, DRAINING, SHUTTING_DOWN, ORPHANED, ENDED = SessionState
_MOVES = move_masks({
    READING: {DRAINING, SHUTTING_DOWN, ORPHANED, ENDED},
    DRAINING: {SHUTTING_DOWN, ORPHANED, ENDED},
    SHUTTING_DOWN: {ORPHANED, ENDED},
    ORPHANED: {ENDED},
    ENDED: set(),
})


@functools.lru_cache(maxsize=1024)
def report_prefix(cluster_id: str, topic: str) -> bytes:
    """The start of a success report of the topic's streams (built once per topic: streams of
    one record each are common)."""
    return b'{"error_code":200,"cluster_id":%s,"topic_name":%s,"partition_id":' % (
        json_str(cluster_id),
        json_str(topic),
    )


class ReportStream(Protocol):
    @property
    def write_blocked(self) -> bool: ...
    def write_body(self, data: bytes) -> None: ...
    def end_body(self, data: bytes = b"") -> None: ...
    def pause_reading(self, reason: int) -> None: ...
    def resume_reading(self, reason: int) -> None: ...
    def stop_reading(self) -> None: ...
    def log_access(self, detail: str, status: int = ...) -> None: ...


__all__ = [
    "ENDED_MESSAGE",
    "PAUSE_IN_FLIGHT",
    "PAUSE_KAFKA_QUEUE",
    "SHUTDOWN_MESSAGE",
    "ProduceSession",
    "ReportStream",
    "SessionState",
    "report_prefix",
]
