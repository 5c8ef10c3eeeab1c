"""Produce requests answered once, as a whole, when every record has its outcome.

``WholeRequest`` is the body consumer shared by ``BatchRequest`` (v3 ``records:batch``,
gateway.produce.batch) and ``V1ProduceRequest`` (v1/v2 ``POST /topics/{t}``, gateway.produce.v1).
It reads the body whole (bounded by ``max_bytes``), lets its subclass turn it into produce items
(the splitter's item shape, gateway/produce/items.py), hands them to Kafka through a
``StreamCore`` (waiting for room when librdkafka's queue is full), and answers when the last
delivery report is in. The core completes the reports in C and keeps the outcomes in request
order; the subclass only says what the body looks like (``_begin``) and what the answer is
(``_answer``).

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
import time
from typing import Any, Protocol

from gateway.errors import GatewayBug, GatewayError, error_body
from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.moves import move_masks
from gateway.produce.core import StreamCore, hand_over
from gateway.stats import ProduceStats

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


READING, PRODUCING, ORPHANED, DONE = RequestState  # (fast globals for the hot paths)
_MOVES = move_masks({
    READING: {PRODUCING, DONE},
    PRODUCING: {ORPHANED, DONE},
    ORPHANED: {DONE},
    DONE: set(),
})


class WholeRequest:
    """Body consumer of one produce request answered as a whole; see the module docstring.

    A subclass implements ``_begin`` (parse the body: the produce items, or RequestRefused),
    ``_answer`` (the final status and body, from ``self._core``), and may give the core its
    report format (``_mode``), error mapping (``_error_of``) and failure entry (``_entry``)."""

    _noun = "records"  # for the log
    _too_large = "request body"  # for the 413 message
    api = "v1"  # the report-latency histogram's label
    _mode = 0  # StreamCore report format (REPORT_FORMAT_V3: the batch reads outcomes instead)

    def __init__(
        self,
        conn: Responder,
        producer: KafkaProducer,
        *,
        topic: str,
        partitions: int,
        max_bytes: int,
        content_type: bytes = JSON_TYPE,
        stats: ProduceStats | None = None,
        rates: RateLimiter | None = None,
        principal: str = "-",
    ) -> None:
        self._conn = conn
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._stats = stats = stats if stats is not None else ProduceStats()
        self._tc = stats.topics[topic]
        self._rates = rates if rates is not None and rates.enabled else None
        self._principal = principal
        self._max_bytes = max_bytes
        self._content_type = content_type
        self._state = READING
        self._buf = bytearray()
        self._items: list[Any] = []
        self._next = 0  # the first item not handed to Kafka yet
        self._core: StreamCore | None = None
        self._t0 = 0.0  # first hand-over

    @property
    def state(self) -> RequestState:
        return self._state

    def _set_state(self, state: RequestState) -> None:
        if not _MOVES[self._state] >> state & 1:
            raise GatewayBug(f"illegal {self.api} request state move {self._state.name} -> {state.name}")
        self._state = state

    @property
    def accepting(self) -> bool:
        return self._state is READING

    def describe(self) -> str:
        return f"{self.api} request to topic {self._topic}"

    # -- to implement -------------------------------------------------------------------
    def _begin(self, body: bytes) -> list[Any]:
        raise NotImplementedError

    def _answer(self, core: StreamCore) -> tuple[int, bytes]:
        raise NotImplementedError

    def _error_of(self, err: int) -> tuple[int, str]:
        """(error_code, message) of a record Kafka (or produce()) refused."""
        return self._producer.error_of(err)

    def _entry(self, code: int, message: str) -> bytes:
        """A failed record's entry in the answer."""
        return error_body(code, message)

    # -- body ---------------------------------------------------------------------------
    def on_body(self, data: memoryview) -> None:
        if self._state is not READING:
            return
        self._tc.bytes_in += len(data)
        if len(self._buf) + len(data) > self._max_bytes:
            self._refuse(413, 413, f"{self._too_large} is over the {self._max_bytes}-byte limit",
                         close=True)
            return
        self._buf += data

    def on_body_error(self, error: GatewayError) -> None:
        """The connection stopped reading the body before its end (broken framing, the
        client half-closed, idle, shutdown): nothing was produced; ``error`` is the answer."""
        if self._state is READING:
            self._buf = bytearray()
            self._refuse(error.status, error.error_code, error.message, close=True)

    def on_body_end(self) -> None:
        if self._state is not READING:
            return
        body = bytes(self._buf)
        self._buf = bytearray()
        try:
            items = self._begin(body)
        except RequestRefused as exc:
            self._refuse(exc.status, exc.error_code, exc.message)
            return
        self._items = items
        producer = self._producer
        # (new_core, written out: this runs for every request)
        self._core = StreamCore(
            producer.router, producer.current, self._topic, self._partitions, max(1, len(items)),
            b"", self, self._error_of, self._tc.fail, self._entry, self._mode,
        )
        self._state = PRODUCING  # (READING -> PRODUCING: checked above)
        self._t0 = time.monotonic()
        self._stats.live_requests.add(self)
        self._hand_over()

    # -- producing ----------------------------------------------------------------------
    def _hand_over(self) -> None:
        core = self._core
        assert core is not None
        items = self._items
        produced0 = core.produced
        producer = self._producer
        i = hand_over(core, producer, items, self._next, self._rates, self._principal)
        self._tc.accepted += core.produced - produced0
        if i < len(items):
            # librdkafka's queue is full: go on when the producer says there is room.
            self._next = i
            self._producer.wait_for_space(self)
            return
        # Every record is with librdkafka (which copied the bytes): drop our references.
        self._items = []
        self._next = 0
        producer.kick()
        if not core.pending:
            self._maybe_answer()

    def on_queue_space(self) -> None:
        if self._state is PRODUCING:
            self._hand_over()

    def flush_reports(self) -> None:
        core = self._core
        if core is None:
            return
        core.dirty = False  # (take_ready resets it; the answer is taken only at the end)
        if self._state is PRODUCING:
            self._maybe_answer()
        elif self._state is ORPHANED and not core.pending:
            self._settle()

    def _maybe_answer(self) -> None:
        core = self._core
        if core is None or core.pending or self._next < len(self._items):
            return
        self._settle()
        status, body = self._answer(core)
        core.close()
        # The core holds this request (its error callbacks are our bound methods): let go of
        # it, so the request and its core go away with the connection's reference instead of
        # waiting, a cycle, for the garbage collector.
        self._core = None
        self._stats.latency[self.api].observe(time.monotonic() - self._t0)
        # (a request whose records went to the disk spool says how many in its access line)
        self._conn.respond(status, body, content_type=self._content_type,
                           detail=f"spooled={core.spooled}" if core.spooled else "")

    def _settle(self) -> None:
        """Every record has its outcome: count the delivered ones, leave the live set."""
        core = self._core
        assert core is not None
        gone = self._state is ORPHANED
        if gone or self._state is PRODUCING:
            self._state = DONE  # (both legal moves)
        else:
            self._set_state(DONE)
        self._stats.live_requests.discard(self)
        self._tc.delivered += core.ok
        if gone:
            if core.failed:
                log.warning("client gone: %d of its %s failed", core.failed, self._noun)
            core.close()
            self._core = None

    def _refuse(self, status: int, error_code: int, message: str, *, close: bool = False) -> None:
        self._set_state(DONE)
        self._conn.respond(
            status, error_body(error_code, message), content_type=self._content_type, close=close
        )

    def in_flight(self) -> int:
        """Records of this request not yet with their outcome (the in-flight gauge)."""
        core = self._core
        return (0 if core is None else core.pending) + len(self._items) - self._next

    def debug_info(self) -> dict[str, Any]:
        """State for the SIGUSR1 connection dump."""
        return {
            "request": self.api,
            "topic": self._topic,
            "request_state": self._state.name,
            "body_bytes": len(self._buf),
            "in_flight": self.in_flight(),
        }

    # -- lifecycle ----------------------------------------------------------------------
    def on_connection_lost(self) -> None:
        self._producer.cancel_wait(self)
        state = self._state
        if state is READING:
            self._set_state(DONE)
            return
        if state is not PRODUCING:
            return
        left = len(self._items) - self._next
        if left:
            log.warning("client gone: %d %s were never handed to Kafka", left, self._noun)
            self._tc.dropped += left
            self._items = []
            self._next = 0
        core = self._core
        assert core is not None
        self._set_state(ORPHANED)
        if not core.pending:
            self._settle()

    def on_shutdown(self) -> None:
        # Still reading the body: refuse. Records already with Kafka finish and are answered.
        if self._state is READING:
            self._refuse(503, 50003, "the gateway is shutting down", close=True)

    def on_internal_error(self, exc: BaseException) -> None:
        """Reporting to this request failed (the producer logged why): every record without an
        outcome gets the internal-error entry (50003), and the answer goes out."""
        core = self._core
        if core is None or self._state not in (PRODUCING, ORPHANED):
            return
        self._producer.cancel_wait(self)
        core.fail_pending()
        for _ in range(len(self._items) - self._next):
            core.push_failure(50003, "internal error of the gateway before this record was "
                              "handed to Kafka; resend it", True)
        self._items = []
        self._next = 0
        if self._state is ORPHANED:
            self._settle()
        else:
            self._maybe_answer()
