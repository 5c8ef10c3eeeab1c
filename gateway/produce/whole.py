"""Produce requests answered once, as a whole, when every record has its outcome.

``WholeRequest`` is the body consumer shared by ``BatchRequest`` (v3 ``records:batch``,
gateway.produce.batch) and ``V1ProduceRequest`` (v1/v2 ``POST /topics/{t}``, gateway.produce.v1).
It reads the body whole (bounded by ``max_bytes``), lets its subclass turn it into produce items
(the splitter's item shape, gateway/produce/items.py), hands them to Kafka through a
``StreamCore`` (waiting for room when librdkafka's queue is full), and answers when the last
delivery report is in. The core completes the reports in C and keeps the outcomes in request
order; the subclass only says what the body looks like (``_begin``) and what the answer is
(``_answer``).

It runs for every v1/v2 request, so it is compiled (ext/whole.pxi), with ``V1ProduceRequest``;
this module keeps what describes it (its states and legal moves, ``RequestRefused``, the
``Responder`` it answers through) and re-exports the class, which reads those when the first
request is made. A subclass gives ``_begin`` and ``_answer`` (cpdef hooks: ``BatchRequest`` is a
Python subclass) and passes its ``api`` (the report-latency label), ``noun`` (for the log),
``too_large`` (for the 413 message) and ``mode`` (the core's report format) to ``__init__``.

States (``RequestState``): READING the body; PRODUCING once it is parsed and its records are
with Kafka; ORPHANED when the client left while records were still out; DONE once answered (or
refused) and every outcome is known. Metrics (gateway.stats) are counted per request, never per
record: records handed to Kafka per hand-over, failures where the core files them, delivered
records once every outcome is in. The report latency is one sample per request: from its first
hand-over to its answer.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol

from gateway._speedups import WholeRequest
from gateway.moves import move_masks

log = logging.getLogger("gateway.produce")

JSON_TYPE = b"application/json"


class Responder(Protocol):
    def respond(
        self, status: int, body: bytes, *, content_type: bytes = ..., close: bool = False,
        detail: str = ...,
    ) -> None: ...


class RequestRefused(Exception):
    """The request as a whole is refused: (status, error_code, message)."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


class RequestState(enum.IntEnum):
    READING = 0  # collecting the body
    PRODUCING = 1  # records handed (or waiting for room in librdkafka's queue)
    ORPHANED = 2  # the client left; records are still with Kafka
    DONE = 3  # answered or refused, every outcome known


# The legal moves (the compiled ``_set_state`` checks against these masks; the state is a C int
# there, and ``state`` gives the member of RequestState).
READING, PRODUCING, ORPHANED, DONE = RequestState
_MOVES = move_masks({
    READING: {PRODUCING, DONE},
    PRODUCING: {ORPHANED, DONE},
    ORPHANED: {DONE},
    DONE: set(),
})


__all__ = ["JSON_TYPE", "RequestRefused", "RequestState", "Responder", "WholeRequest"]
