"""The process's one librdkafka producer, driven from the event loop.

librdkafka runs its own threads; the loop only calls non-blocking entry points:
``produce()`` and ``poll(0)``. Delivery reports are served by ``poll(0)`` on a loop timer while
anything is outstanding, so every poll hands the loop a whole batch of reports: there is no
future, task or cross-thread hop per record. After each poll the sessions whose records were
reported flush their reports once, and sessions that hit a full librdkafka queue
(``queue.buffering.max.messages``) are told there is room again.

A fatal producer error (an idempotent producer that lost its producer id, e.g. after the broker
lost its state) makes librdkafka fail every queued record; the failed records are reported and
a fresh producer takes over, so the gateway carries on.

With ``statistics.interval.ms`` set, librdkafka's statistics (its STATISTICS.md JSON) arrive
from the same ``poll(0)``; the broker connection states and round-trip times are kept from the
latest one for /metrics. ``start()`` adds an idle poll every ``IDLE_POLL_INTERVAL`` seconds, so
statistics and error events are served (and do not pile up in librdkafka's queue) while no
record is outstanding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError, Producer

log = logging.getLogger("gateway.kafka")

# docs/api.md §5 producer defaults; every one can be overridden with -X.
DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
}

POLL_INTERVAL = 0.001  # seconds between poll(0) calls while records are outstanding
IDLE_POLL_INTERVAL = 1.0  # seconds between poll(0) calls while nothing is outstanding


class BrokerState(NamedTuple):
    """One broker connection in librdkafka's statistics (STATISTICS.md, ``brokers``)."""

    address: str  # nodename: host:port
    node_id: int  # -1 for a bootstrap address not yet matched to a broker
    state: str  # UP, DOWN, INIT, CONNECT, AUTH, APIVERSION_QUERY, ...
    rtt_avg_s: float  # average request round trip in the last interval (0: none)


class DeliveryListener(Protocol):
    def flush_reports(self) -> None: ...
    def on_queue_space(self) -> None: ...


# Kafka error -> Confluent per-record error_code (docs/api.md §1).
_CODE_MAP = {
    KafkaError.MSG_SIZE_TOO_LARGE: 413,
    KafkaError.RECORD_LIST_TOO_LARGE: 413,
    KafkaError._UNKNOWN_TOPIC: 40401,
    KafkaError.UNKNOWN_TOPIC_OR_PART: 40401,
    KafkaError._UNKNOWN_PARTITION: 40402,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: 40301,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: 40301,
    KafkaError.SASL_AUTHENTICATION_FAILED: 40101,
    KafkaError._AUTHENTICATION: 40101,
}
# The producer's idempotence state is no longer accepted by the broker (e.g. after a message
# timeout bumped its epoch, or the broker lost its state): every later record would fail the
# same way, so the producer is replaced, and the record may be resent (50003).
_PRODUCER_STATE_LOST = {
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.UNKNOWN_PRODUCER_ID,
    KafkaError._FENCED,
}
_RETRIABLE = {
    *_PRODUCER_STATE_LOST,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
    KafkaError._QUEUE_FULL,
    KafkaError._FATAL,
}


def error_code_for(err: KafkaError) -> int:
    """Confluent's per-record code for a librdkafka error: 50003 means the client may resend."""
    code = err.code()
    mapped = _CODE_MAP.get(code)
    if mapped is not None:
        return mapped
    if code in _RETRIABLE or err.retriable():
        return 50003
    return 50002


class KafkaProducer:
    def __init__(
        self,
        config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        *,
        producer_factory: Callable[[dict[str, Any]], Any] = Producer,
    ) -> None:
        self._loop = loop
        self._factory = producer_factory
        self._config = dict(config)
        self._config["error_cb"] = self._on_error
        if float(self._config.get("statistics.interval.ms", 0) or 0) > 0:
            self._config["stats_cb"] = self._on_stats
        # The latest statistics: broker connections and queued bytes (None: none yet).
        self.brokers: dict[str, BrokerState] | None = None
        self.queued_bytes: int | None = None
        self.stats_at = 0.0  # time.monotonic() of the latest statistics
        self._producer = producer_factory(self._config)
        # Bound once: the hot path calls it per record.
        self.produce = self._producer.produce
        self._retired: list[Any] = []  # producers replaced after a fatal error, being drained
        self._fatal: KafkaError | None = None
        self._dirty: list[DeliveryListener] = []
        self._waiters: list[DeliveryListener] = []
        self._poll_handle: asyncio.TimerHandle | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.fatal_errors = 0

    # -- called by sessions -------------------------------------------------------------
    def mark_dirty(self, listener: DeliveryListener) -> None:
        """A listener got delivery reports in this poll; it flushes once after the batch."""
        self._dirty.append(listener)

    def wait_for_space(self, listener: DeliveryListener) -> None:
        if listener not in self._waiters:
            self._waiters.append(listener)
        self.kick()

    def cancel_wait(self, listener: DeliveryListener) -> None:
        try:
            self._waiters.remove(listener)
        except ValueError:
            pass

    def kick(self) -> None:
        """Make sure a poll is scheduled (call after producing)."""
        if self._poll_handle is None and not self._closed:
            self._poll_handle = self._loop.call_later(POLL_INTERVAL, self._poll)

    def error_code(self, err: KafkaError) -> int:
        """``error_code_for`` a failed record, noticing errors that mean this producer is done
        for (it is replaced after the current poll)."""
        if err.code() in _PRODUCER_STATE_LOST and self._fatal is None:
            log.error("producer state rejected by the broker (%s): starting a new producer", err)
            self._fatal = err
            self.kick()
        return error_code_for(err)

    # -- the poll loop ----------------------------------------------------------------
    def outstanding(self) -> int:
        """Records (and requests) librdkafka still holds, across current and retired producers."""
        return len(self._producer) + sum(len(p) for p in self._retired)

    def poll_now(self) -> None:
        self._poll_handle = None
        self._producer.poll(0)
        if self._retired:
            for p in self._retired:
                p.poll(0)
            self._retired = [p for p in self._retired if len(p) > 0]
        if self._fatal is not None:
            self._replace_after_fatal()
        dirty = self._dirty
        if dirty:
            self._dirty = []
            for listener in dirty:
                listener.flush_reports()
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for listener in waiters:
                listener.on_queue_space()

    def _poll(self) -> None:
        self.poll_now()
        if (self.outstanding() or self._waiters) and self._poll_handle is None and not self._closed:
            self._poll_handle = self._loop.call_later(POLL_INTERVAL, self._poll)

    def start(self) -> None:
        """Poll every IDLE_POLL_INTERVAL while nothing is outstanding (statistics, errors)."""
        if self._idle_handle is None and not self._closed:
            self._idle_handle = self._loop.call_later(IDLE_POLL_INTERVAL, self._idle_poll)

    def _idle_poll(self) -> None:
        self._idle_handle = None
        if self._closed:
            return
        if self._poll_handle is None:
            self.poll_now()
        self._idle_handle = self._loop.call_later(IDLE_POLL_INTERVAL, self._idle_poll)

    def health_problem(self) -> str | None:
        """Why this producer cannot take records now (None: it can), for /readyz."""
        if self._closed:
            return "the producer is closed"
        if self._fatal is not None:
            return f"the producer hit a fatal error ({self._fatal.str()}) and is being replaced"
        return None

    def _on_stats(self, text: str) -> None:
        # Runs inside poll() on the loop thread, every statistics.interval.ms.
        try:
            doc = json.loads(text)
            learned: dict[str, BrokerState] = {}
            configured: dict[str, BrokerState] = {}
            for b in doc.get("brokers", {}).values():
                node_id = int(b.get("nodeid", -1))
                source = b.get("source")
                if source not in ("learned", "configured"):
                    continue  # logical (coordinator) and internal handles are no connections
                st = BrokerState(
                    str(b.get("nodename", "")),
                    node_id,
                    str(b.get("state", "")),
                    float((b.get("rtt") or {}).get("avg", 0)) / 1e6,
                )
                (learned if node_id >= 0 else configured)[f"{st.address}/{node_id}"] = st
            # Once brokers are learned, the bootstrap handles say nothing about the cluster
            # (librdkafka lets their connections go); before that they are all there is.
            self.brokers = learned or configured
            self.queued_bytes = int(doc.get("msg_size", 0))
            self.stats_at = time.monotonic()
        except (ValueError, TypeError, AttributeError):
            log.debug("unreadable librdkafka statistics", exc_info=True)

    def _on_error(self, err: KafkaError) -> None:
        # Runs inside poll() on the loop thread.
        if err.fatal():
            log.error("fatal producer error: %s; failing its queued records and starting a new producer", err)
            self._fatal = err
        else:
            log.warning("producer: %s", err)

    def _replace_after_fatal(self) -> None:
        self._fatal = None
        self.fatal_errors += 1
        old = self._producer
        # Records still queued in the fatal producer get failed delivery reports (purged ->
        # 50003: the client may resend them); they are drained by polling the retired producer.
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
        except Exception:  # noqa: BLE001 - a fatal producer may refuse; its DRs still come
            log.exception("purge of the failed producer")
        self._retired.append(old)
        self._producer = self._factory(self._config)
        self.produce = self._producer.produce

    # -- shutdown ---------------------------------------------------------------------
    async def drain(self, deadline: float) -> int:
        """Poll until every outstanding record is reported or the loop time ``deadline`` passes;
        then purge what is left so that it, too, gets a (failed) report. Never blocks the loop.
        Returns the number of records purged."""
        loop = self._loop
        while self.outstanding() and loop.time() < deadline:
            self.poll_now()
            await asyncio.sleep(POLL_INTERVAL * 5)
        left = self.outstanding()
        if left:
            log.warning("shutdown deadline reached with %d records outstanding: failing them", left)
            for p in [self._producer, *self._retired]:
                p.purge(in_queue=True, in_flight=True, blocking=False)
            # Purged records are reported on the next polls.
            for _ in range(100):
                self.poll_now()
                if not self.outstanding():
                    break
                await asyncio.sleep(POLL_INTERVAL * 5)
        self.poll_now()
        return left

    def close(self) -> None:
        self._closed = True
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
