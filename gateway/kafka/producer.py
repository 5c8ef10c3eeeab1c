"""The process's one librdkafka producer, driven from the event loop.

librdkafka runs its own threads; the loop only calls non-blocking entry points: produce and
poll. The producer is ``gateway._speedups.RdProducer`` (librdkafka's C API): its delivery
reports are collected in C arrays, and a ``ReportRouter`` hands each, in C, to the ``StreamCore``
its record was produced for (the msg_opaque is ``sink id << 32 | sequence number``): one per v3
stream, v1/v2 request or records:batch request. There is no future, task, thread hop or Python
object per record on the report side.

Polling: librdkafka writes an eventfd when an event lands on its empty queue; the loop watches it
(``add_reader``) and polls once per wake-up, serving every report queued by then. After each
poll the listeners whose records were reported flush their reports once, and listeners that hit
a full librdkafka queue (``queue.buffering.max.messages``) are told there is room again.

One listener's failure stays its own: an exception raised while its reports are handled (in the
router, or in its ``flush_reports``/``on_queue_space``) is logged once, with the stream it
belongs to, and ends that stream (``on_internal_error``: its pending records are reported 50003);
every other listener of the batch is still served. A slow
timer polls too while records are outstanding (belt and braces; also the only driver for
producers without an event fd, such as the fakes of the unit tests).

A fatal producer error (an idempotent producer that lost its producer id, e.g. after the broker
lost its state) makes librdkafka fail every queued record; the failed records are reported and
a fresh producer takes over, so the gateway carries on.

With ``statistics.interval.ms`` set, librdkafka's statistics (its STATISTICS.md JSON) arrive
from the same polls; the broker connection states and round-trip times are kept from the
latest one for /metrics. ``start()`` adds an idle poll every ``IDLE_POLL_INTERVAL`` seconds, so
statistics and error events are served while no record is outstanding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from confluent_kafka import KafkaError  # the librdkafka error codes, as ints

from gateway._speedups import ProducerBase, RdProducer, ReportRouter
from gateway.kafka.health import LIBRDKAFKA, ClusterHealth
from gateway.kafka.rdlog import LogThrottle

log = logging.getLogger("gateway.kafka")

# docs/api.md §5 producer defaults; every one can be overridden with -X.
DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    # A client waits at most this long for a record's report (librdkafka's 300 s default would
    # hold a stream whose cluster died for minutes per in-flight window): 30 s covers a leader
    # election and a broker restart, and then the client hears 50003 and may resend.
    "message.timeout.ms": 30000,
    # Reconnect within a second of a broker coming back (librdkafka backs off up to 10 s).
    "reconnect.backoff.max.ms": 1000,
}

POLL_INTERVAL = 0.001  # seconds between polls while records are outstanding, without event fd
SAFETY_POLL_INTERVAL = 0.05  # the same with the event fd (which normally wakes the loop)
IDLE_POLL_INTERVAL = 1.0  # seconds between poll(0) calls while nothing is outstanding
ERROR_LOG_INTERVAL = 10.0  # seconds: one log line per librdkafka error code at most
# Records timing out one after another, none delivered in between: after this many the
# producer is replaced (a broker that lost its state may answer UnknownProducerId to every
# request of our producer id, which librdkafka retries until the records time out), at most
# once per TIMEOUT_RUN_INTERVAL seconds.
TIMEOUT_RUN = 1000
TIMEOUT_RUN_INTERVAL = 30.0


class BrokerState(NamedTuple):
    """One broker connection in librdkafka's statistics (STATISTICS.md, ``brokers``)."""

    address: str  # nodename: host:port
    node_id: int  # -1 for a bootstrap address not yet matched to a broker
    state: str  # UP, DOWN, INIT, CONNECT, AUTH, APIVERSION_QUERY, ...
    rtt_avg_s: float  # average request round trip in the last interval (0: none)


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
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.REPLICA_NOT_AVAILABLE,
    KafkaError.KAFKA_STORAGE_ERROR,
    KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def error_code_for(err: int) -> int:
    """Confluent's per-record code for a librdkafka error code: 50003 means the client may
    resend."""
    mapped = _CODE_MAP.get(err)
    if mapped is not None:
        return mapped
    if err in _RETRIABLE:
        return 50003
    return 50002


def error_text(err: int) -> str:
    """librdkafka's description of an error code."""
    return RdProducer.error_string(err)


__all__ = ["KafkaProducer", "ProducerBase", "RdProducer", "ReportRouter", "error_code_for",
           "error_text"]


class DeliveryListener(Protocol):
    def flush_reports(self) -> None: ...
    def on_queue_space(self) -> None: ...
    def on_internal_error(self, exc: BaseException) -> None: ...
    def describe(self) -> str: ...


def make_rdproducer(config: dict[str, Any]) -> Any:
    return RdProducer(config)


class KafkaProducer:
    def __init__(
        self,
        config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        *,
        producer_factory: Callable[[dict[str, Any]], Any] = make_rdproducer,
        health: ClusterHealth | None = None,
    ) -> None:
        self._loop = loop
        self.health = health if health is not None else ClusterHealth()
        self._factory = factory = producer_factory
        self._config = dict(config)
        # The latest statistics: broker connections and queued bytes (None: none yet).
        self.brokers: dict[str, BrokerState] | None = None
        self.queued_bytes: int | None = None
        self.stats_at = 0.0  # time.monotonic() of the latest statistics
        self.router = ReportRouter()
        self._producer = factory(self._config)
        # The producer records go to now (replaced after a fatal error): an attribute, not a
        # property, as every request reads it.
        self.current: Any = self._producer
        self._reader_fd = -1
        self._retired: list[Any] = []  # producers replaced after a fatal error, being drained
        self._fatal: str | None = None
        self._error_log: dict[int, tuple[float, int]] = {}  # code -> (last logged, not logged since)
        self._rdlog = LogThrottle("producer")  # librdkafka's own log lines (gateway.kafka.rdlog)
        self._waiters: list[DeliveryListener] = []
        self._poll_handle: asyncio.TimerHandle | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self.fatal_errors = 0
        self._failures = 0  # failed records seen by error_code (delivery reports and refusals)
        self._timeouts = 0  # of those, message timeouts
        self._timeout_run = 0  # message timeouts since the last delivered record
        self._replaced_at = -TIMEOUT_RUN_INTERVAL
        self._renewing = False  # the pending replacement is renew()'s, not a fatal error's
        self.reports_seen = 0  # delivery reports served so far (the spool's judgement reads it)
        # The produce path's disk spool (gateway.produce.edge.Spooler; attach_spooler): records
        # go there instead while Kafka is judged unreachable.
        self.spooler: Any = None
        self._watch(self._producer)

    def attach_spooler(self, spooler: Any) -> None:
        """--spool-dir: records failed with a retriable error have their content kept (by this
        librdkafka handle and any that replaces it) and go to ``spooler`` (poll_now)."""
        self.spooler = spooler
        self._producer.keep_failed = True

    # -- called by sessions and requests ----------------------------------------------------
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
            interval = POLL_INTERVAL if self._reader_fd < 0 else SAFETY_POLL_INTERVAL
            self._poll_handle = self._loop.call_later(interval, self._poll)

    def error_code(self, err: int) -> int:
        """``error_code_for`` a failed record, noticing errors that mean this producer is done
        for (it is replaced after the current poll)."""
        self._failures += 1
        if err in _PRODUCER_STATE_LOST and self._fatal is None:
            log.error(
                "producer state rejected by the broker (%s): starting a new producer",
                error_text(err),
            )
            self._fatal = error_text(err)
            self.kick()
        elif err == KafkaError._MSG_TIMED_OUT:
            self._timeouts += 1
        return error_code_for(err)

    def _after_batch(self, served: int, failures: int, timeouts: int) -> None:
        """Count a run of timed-out records with nothing delivered in between (per poll
        batch); a long one replaces the producer (see TIMEOUT_RUN)."""
        if served > failures:
            self._timeout_run = 0  # a record was delivered
            if self.health.down is not None:
                self.health.answered()
            return
        self._timeout_run += timeouts
        if (
            self._timeout_run >= TIMEOUT_RUN
            and self._fatal is None
            and time.monotonic() - self._replaced_at >= TIMEOUT_RUN_INTERVAL
        ):
            log.error(
                "%d records in a row timed out and none was delivered: starting a new producer "
                "(the broker may have lost this producer's state)",
                self._timeout_run,
            )
            self._fatal = f"{self._timeout_run} records in a row timed out"
            self._timeout_run = 0

    def error_of(self, err: int) -> tuple[int, str]:
        """(error_code, message) of a failed record."""
        return self.error_code(err), error_text(err)

    # -- the poll loop ----------------------------------------------------------------
    def outstanding(self) -> int:
        """Records (and requests) librdkafka still holds, across current and retired producers."""
        return len(self._producer) + sum(len(p) for p in self._retired)

    def _watch(self, producer: Any) -> None:
        fd = getattr(producer, "event_fd", -1)
        if self._reader_fd >= 0:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = -1
        if isinstance(fd, int) and fd >= 0 and not self._closed:
            self._loop.add_reader(fd, self._on_event)
            self._reader_fd = fd

    def _on_event(self) -> None:
        if not self._closed:
            self.poll_now()

    def _poll_one(self, producer: Any) -> None:
        router = self.router
        failures, timeouts = self._failures, self._timeouts
        producer.poll()
        served = router.dispatch(producer)
        while producer.batch_full:
            # The batch filled up: librdkafka kept the rest; serve it now.
            producer.poll()
            served += router.dispatch(producer)
        self.reports_seen += served
        if served and producer is self._producer:
            self._after_batch(served, self._failures - failures, self._timeouts - timeouts)
        stats = producer.take_stats()
        if stats is not None:
            self._on_stats(stats)
        if producer.error_count:
            for code, reason in producer.take_errors():
                self._on_error(producer, code, reason)
        if producer.log_count:
            lines, lost = producer.take_logs()
            for level, facility, text in lines:
                self._rdlog.line(level, facility, text)
            self._rdlog.lost(lost)
        elif self._rdlog.held:
            self._rdlog.tick()

    def poll_now(self) -> None:
        self._poll_one(self._producer)
        if self._retired:
            for p in self._retired:
                self._poll_one(p)
            still = []
            for p in self._retired:
                if len(p) > 0:
                    still.append(p)
                else:
                    p.close(0)
            self._retired = still
        if self._fatal is not None:
            self._replace_after_fatal()
        router = self.router
        spooler = self.spooler
        if spooler is not None:
            respool = router.take_respool()
            if respool:
                spooler.respool(respool)
        for listener, exc in router.take_failures():
            self._listener_failed(listener, exc)
        for listener in router.take_dirty():
            try:
                listener.flush_reports()
            except Exception as exc:  # noqa: BLE001 - one stream's bug ends that stream only
                self._listener_failed(listener, exc)
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for listener in waiters:
                try:
                    listener.on_queue_space()
                except Exception as exc:  # noqa: BLE001 - as above
                    self._listener_failed(listener, exc)

    def _listener_failed(self, listener: DeliveryListener, exc: BaseException) -> None:
        """A listener's report handling raised: log it once, with the stream it belongs to, and
        end that stream (its pending records are reported 50003); the others go on."""
        self.cancel_wait(listener)
        try:
            who = listener.describe()
        except Exception:  # noqa: BLE001 - the listener is already broken
            who = repr(listener)
        log.error("internal error while reporting to %s: ending it with 50003 reports", who,
                  exc_info=exc)
        try:
            listener.on_internal_error(exc)
        except Exception:  # noqa: BLE001 - it could not even end itself
            log.exception("%s could not end after its internal error", who)

    def _poll(self) -> None:
        self._poll_handle = None
        self.poll_now()
        if (self.outstanding() or self._waiters) and not self._closed:
            self.kick()

    def start(self) -> None:
        """Poll every IDLE_POLL_INTERVAL while nothing is outstanding (statistics, errors)."""
        if self._idle_handle is None and not self._closed:
            self._idle_handle = self._loop.call_later(IDLE_POLL_INTERVAL, self._idle_poll)

    def _idle_poll(self) -> None:
        self._idle_handle = None
        if self._closed:
            return
        self.poll_now()
        if self.outstanding() or self._retired:
            self.kick()
        self._idle_handle = self._loop.call_later(IDLE_POLL_INTERVAL, self._idle_poll)

    def health_problem(self) -> str | None:
        """Why this producer cannot take records now (None: it can), for /readyz."""
        if self._closed:
            return "the producer is closed"
        if self._fatal is not None:
            return f"the producer hit a fatal error ({self._fatal}) and is being replaced"
        return None

    def _on_stats(self, text: str) -> None:
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
            if any(b.state == "UP" for b in self.brokers.values()):
                self.health.answered()
            self.queued_bytes = int(doc.get("msg_size", 0))
            self.stats_at = time.monotonic()
        except (ValueError, TypeError, AttributeError):
            log.debug("unreadable librdkafka statistics", exc_info=True)

    def _on_error(self, producer: Any, code: int, reason: str) -> None:
        if code == KafkaError._FATAL or producer.fatal:
            if producer is not self._producer:
                return  # a retired producer: already replaced
            fatal = producer.fatal_error()
            text = f"{fatal[1]} ({RdProducer.error_name(fatal[0])})" if fatal else reason
            if self._fatal is None:
                log.error(
                    "fatal producer error: %s; failing its queued records and starting a new "
                    "producer",
                    text,
                )
                self._fatal = text
        else:
            if code == KafkaError._ALL_BROKERS_DOWN and producer is self._producer:
                self.health.mark_down(LIBRDKAFKA, f"every broker connection is down ({reason})")
            self._log_error(code, reason)

    def _log_error(self, code: int, reason: str) -> None:
        """An error event, logged at most once per ERROR_LOG_INTERVAL per error code (librdkafka
        repeats them every second while a broker is away), with how many were not logged."""
        now = time.monotonic()
        last, quiet = self._error_log.get(code, (-ERROR_LOG_INTERVAL, 0))
        if now - last < ERROR_LOG_INTERVAL:
            self._error_log[code] = (last, quiet + 1)
            return
        self._error_log[code] = (now, 0)
        more = f" ({quiet} more like it in the last {now - last:.0f} s)" if quiet else ""
        log.warning("producer: %s: %s%s", RdProducer.error_name(code), reason, more)

    def renew(self, reason: str) -> None:
        """Replace the producer at the next poll, as after a fatal error: for a cluster that
        came back without this producer's state (the embedded broker restarted empty), which
        would hold its records until they time out (``message.timeout.ms``). Records still
        queued in the old one get failed reports (50003; with the spool, spooled)."""
        if self._fatal is None:
            log.warning("%s: failing the producer's queued records and starting a new producer",
                        reason)
            self._fatal = reason
            self._renewing = True
        self.kick()

    def _replace_after_fatal(self) -> None:
        self._fatal = None
        if self._renewing:
            self._renewing = False
        else:
            self.fatal_errors += 1
        self._replaced_at = time.monotonic()
        old = self._producer
        # Records still queued in the fatal producer get failed delivery reports (purged ->
        # 50003: the client may resend them); they are drained by polling the retired producer.
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
        except Exception:  # noqa: BLE001 - a fatal producer may refuse; its DRs still come
            log.exception("purge of the failed producer")
        self._retired.append(old)
        self._producer = self.current = self._factory(self._config)
        if self.spooler is not None:
            self._producer.keep_failed = True
        self._watch(self._producer)
        self.kick()

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
        if self._reader_fd >= 0:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = -1
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for p in [self._producer, *self._retired]:
            p.close(0)
