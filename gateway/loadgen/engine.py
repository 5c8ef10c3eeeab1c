"""The load generator's loop: one thread, a ``selectors`` (epoll) loop over non-blocking client
connections (gateway.loadgen.modes), the run's bounds, its tallies and its samples.

Time is CLOCK_REALTIME in microseconds (``net.now_us``), the clock of the kernel's receive
timestamps. A record's latency is its report's arrival (kernel timestamp) minus its intended
send time: in the open loop (``--rate``) the time its schedule gave it, however late it was
actually written; in the closed loop the time it was written.
"""

from __future__ import annotations

import json
import resource
import selectors
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway._speedups import LatencyHistogram
from gateway.loadgen.http import Target, TargetUnusable, UsageError, blocking_request
from gateway.loadgen.net import now_us
from gateway.loadgen.stats import PERCENTILES, Result, Sample

MAX_ERRORS = 20  # failure messages kept verbatim for the result
SAMPLE_EVERY_US = 1e6
TICK_S = 0.001  # the open loop's scheduling tick
IDLE_TICK_S = 0.05  # the closed loop's longest wait between checks (bounds, reconnects)
INTERRUPT_DRAIN_S = 2.0  # after SIGINT/SIGTERM, the longest wait for outstanding reports


@dataclass
class Settings:
    """What the run is asked to do (the command line, validated)."""

    mode: str  # stream, unary, batch, consume
    topic: str
    records: int | None  # measured records to send (consume: to receive)
    duration: float | None  # measured seconds of sending; one of the two bounds is set
    connections: int
    batch: int
    record_bytes: int
    keys: int
    rate: float | None  # records/s over all connections; None: closed loop
    window: int
    warmup: float
    drain_timeout: float
    cluster_id: str | None
    group: str
    # Where a record's latency starts in the open loop: "intended", its scheduled send time
    # (no coordinated omission), or "written", when it was written to the socket (what the
    # target itself adds, the loadgen's own lateness left out). The closed loop has only the
    # second.
    latency_from: str = "intended"

    def options(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "topic": self.topic, "records": self.records,
            "duration_s": self.duration, "connections": self.connections,
            "batch": self.batch if self.mode == "batch" else None,
            "record_bytes": self.record_bytes, "keys": self.keys, "rate": self.rate,
            "window": self.window if self.mode == "stream" else None,
            "warmup_s": self.warmup, "drain_timeout_s": self.drain_timeout,
            "latency_from": self.latency_from if self.rate else "written",
        }


class Tally:
    """Counts of the measured run (records sent during the warm-up are not in them)."""

    def __init__(self) -> None:
        self.sent = 0
        self.acked = 0
        self.failed: dict[str, int] = {}
        self.errors: list[str] = []
        self.interval = LatencyHistogram()
        self.total = LatencyHistogram()

    def fail(self, code: str, n: int, message: str | None = None) -> None:
        if n > 0:
            self.failed[code] = self.failed.get(code, 0) + n
            if message is not None:
                self.note(message)

    def note(self, message: str) -> None:
        """Keep a failure message (the first MAX_ERRORS distinct ones)."""
        if len(self.errors) < MAX_ERRORS and message not in self.errors:
            self.errors.append(message)

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


class Engine:
    """Runs one load: set-up, the loop until the bound, the drain, and the result."""

    def __init__(
        self,
        settings: Settings,
        target: Target,
        make_clients: Callable[[Engine], list[Any]],
        on_sample: Callable[[Sample], None] | None = None,
        on_measure_start: Callable[[], None] | None = None,
    ) -> None:
        """``make_clients``: the run's connections (gateway.loadgen.modes.make_clients), each
        with setup(), pump(now), on_event(mask), idle, abandon(), close(), teardown().
        ``on_sample``: called with each sample as it is taken (about once a second).
        ``on_measure_start``: called once, when the measured run begins (after the warm-up,
        before the first measured record is sent; with no warm-up, before the first record),
        for a caller that measures something of its own over the same run, e.g. the CPU time
        of the target's processes (bench/). Also called, at the end, by a run stopped during its
        warm-up. The command line passes none."""
        self.make_clients = make_clients
        self.settings = settings
        self.target = target
        self.on_sample = on_sample
        self.on_measure_start = on_measure_start
        self.sel = selectors.DefaultSelector()
        self.tally = Tally()
        self.samples: list[Sample] = []
        self.open_loop = settings.rate is not None and settings.mode != "consume"
        self.sending = False  # records may be sent (or, consume, fetched)
        self.measuring = settings.warmup <= 0
        self.interrupted = False
        self.interrupted_at = 0.0
        self.aborted = False  # a second interrupt: stop at once
        self.fatal: str | None = None  # the target refused us from the start (exit 2)
        self.any_success = False
        self.outstanding = 0  # records sent, warm-up included, without an outcome yet
        self.claimed = 0  # records claimed for sending, warm-up included (the key index)
        self.claimed_measured = 0
        self.t0 = 0.0  # when sending began (the open loop's schedule origin)
        self.measure_start = 0.0
        self.last_report = 0.0
        self.cluster_id = settings.cluster_id
        self.clients: list[Any] = []
        self._cpu0 = 0.0

    # -- what clients call ------------------------------------------------------------------

    def claim(self, n: int) -> tuple[int, int]:
        """(first record index, count) of up to ``n`` records to send now; count 0 when the
        run's record bound is reached or sending has stopped."""
        if not self.sending:
            return 0, 0
        if self.measuring and self.settings.records is not None:
            n = min(n, self.settings.records - self.claimed_measured)
            if n <= 0:
                return 0, 0
        first = self.claimed
        self.claimed += n
        if self.measuring:
            self.claimed_measured += n
        self.outstanding += n
        return first, n

    def sent(self, n: int, measured: bool) -> None:
        if measured:
            self.tally.sent += n

    def answered(
        self,
        n: int,
        ok: int,
        failed: dict[str, int] | None,
        measured: bool,
        at: float,
        messages: Callable[[int], list[str]] | None = None,
    ) -> None:
        """Outcomes of ``n`` records: ``ok`` acknowledged, the others ``failed`` by code."""
        self.outstanding -= n
        if ok:
            self.any_success = True
        if at > self.last_report:
            self.last_report = at
        if not measured:
            return
        t = self.tally
        t.acked += ok
        if failed:
            room = MAX_ERRORS - len(t.errors)
            if room > 0 and messages is not None:
                for m in messages(room):
                    t.note(m)
            for code, k in failed.items():
                t.failed[code] = t.failed.get(code, 0) + k

    def received(self, n: int, measured: bool, at: float) -> None:
        """Consume mode: ``n`` records arrived."""
        if n:
            self.any_success = True
        if at > self.last_report:
            self.last_report = at
        if measured:
            self.tally.sent += n
            self.tally.acked += n
            self.claimed_measured += n

    def refused_at_start(self, status: int, text: str) -> None:
        """An answer that says the target will take nothing from us (401): fatal before any
        success, a failure like any other after."""
        if not self.any_success and self.fatal is None:
            self.fatal = f"the target refused the request: {text}"

    def connect_failed(self, exc: BaseException) -> None:
        if not self.sending and self.fatal is None:
            self.fatal = f"cannot connect to {self.target.host}:{self.target.port}: {exc}"

    # -- the run ----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """SIGINT/SIGTERM: stop sending and drain briefly; a second one stops at once."""
        if self.interrupted:
            self.aborted = True
        else:
            self.interrupted_at = now_us()
        self.interrupted = True

    def discover_cluster(self) -> None:
        """The cluster id of the v3 paths: --cluster-id, else the first of GET /v3/clusters."""
        if self.cluster_id is not None:
            return
        path = self.target.path("v3", "clusters")
        try:
            answer = blocking_request(self.target, "GET", path, fields=[("Accept", "application/json")])
        except (OSError, ssl.SSLError) as exc:
            raise TargetUnusable(f"cannot reach {self.target.url}: {exc}") from None
        except Exception as exc:  # a ProtocolError: not an HTTP server
            raise TargetUnusable(f"{self.target.url} does not answer HTTP: {exc}") from None
        if answer.status != 200:
            raise TargetUnusable(f"GET {path} answered {answer.error_text()}")
        try:
            data = json.loads(answer.body)["data"]
            self.cluster_id = str(data[0]["cluster_id"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise TargetUnusable(
                f"GET {path} named no cluster: {answer.body[:200].decode('utf-8', 'replace')}"
            ) from None

    def run(self) -> Result:
        s = self.settings
        if s.mode in ("stream", "unary"):
            self.discover_cluster()
        self.clients = self.make_clients(self)
        try:
            for c in self.clients:
                c.setup()
                if self.fatal:
                    raise TargetUnusable(self.fatal)
            return self._loop()
        finally:
            for c in self.clients:
                c.close()
            for c in self.clients:
                c.teardown()
            self.sel.close()

    def _begin_measuring(self, now: float) -> None:
        self.measuring = True
        self.measure_start = now
        if self.on_measure_start is not None:
            self.on_measure_start()  # (before our own CPU time is read: its work is not ours)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu0 = ru.ru_utime + ru.ru_stime

    def _bound_reached(self, now: float) -> bool:
        s = self.settings
        if self.interrupted:
            return True
        if not self.measuring:
            return False
        if s.duration is not None and now >= self.measure_start + s.duration * 1e6:
            return True
        return s.records is not None and self.claimed_measured >= s.records

    def _loop(self) -> Result:
        s = self.settings
        now = now_us()
        self.t0 = now
        self.sending = True
        if self.measuring:
            self._begin_measuring(now)
        warm_end = now + s.warmup * 1e6
        next_sample = (self.measure_start if self.measuring else warm_end) + SAMPLE_EVERY_US
        last_sample_t = self.measure_start
        last_sample_acked = 0
        drain_deadline = 0.0
        clients = self.clients
        for c in clients:
            c.pump(now)
        next_sweep = now
        state_changed = False
        while True:
            if self.fatal:
                raise TargetUnusable(self.fatal)
            if self.aborted:
                break
            timeout = TICK_S if (self.open_loop and self.sending) else IDLE_TICK_S
            for key, mask in self.sel.select(timeout):
                key.data.on_event(mask)
            now = now_us()
            if not self.measuring and now >= warm_end:
                self._begin_measuring(now)
                next_sample = now + SAMPLE_EVERY_US
                last_sample_t = now
            if self.sending and self._bound_reached(now):
                self.sending = False
                drain_deadline = now + s.drain_timeout * 1e6
                state_changed = True
            if now >= next_sweep or state_changed:
                # Clients pump themselves on their own events; the sweep serves the open loop's
                # schedule, reconnects after a back-off, and the end of sending.
                for c in clients:
                    c.pump(now)
                next_sweep = now + (TICK_S if self.open_loop else IDLE_TICK_S) * 1e6
                state_changed = False
            if self.measuring and now >= next_sample:
                last_sample_acked = self._sample(now, last_sample_t, last_sample_acked)
                last_sample_t = now
                next_sample += SAMPLE_EVERY_US
                if next_sample < now:
                    next_sample = now + SAMPLE_EVERY_US
            if not self.sending:
                if all(c.idle for c in clients):
                    break
                if self.interrupted:  # also when it comes during the drain
                    drain_deadline = min(drain_deadline, self.interrupted_at + INTERRUPT_DRAIN_S * 1e6)
                if now >= drain_deadline:
                    break
        return self._result(now_us(), last_sample_t, last_sample_acked)

    def _sample(self, now: float, since: float, acked_before: int) -> int:
        t = self.tally
        iv = t.interval
        dt = max(1e-6, (now - since) / 1e6)
        sample = Sample(
            t=round((now - self.measure_start) / 1e6, 3),
            acked=t.acked,
            failed=dict(t.failed),
            in_flight=self.outstanding,
            rate=(t.acked - acked_before) / dt,
            p50_ms=_ms(iv.value_at_percentile(50.0)),
            p99_ms=_ms(iv.value_at_percentile(99.0)),
            p999_ms=_ms(iv.value_at_percentile(99.9)),
        )
        t.total.merge(iv)
        iv.reset()
        self.samples.append(sample)
        if self.on_sample is not None:
            self.on_sample(sample)
        return t.acked

    def _result(self, now: float, last_sample_t: float, last_sample_acked: int) -> Result:
        s = self.settings
        t = self.tally
        unanswered = 0
        for c in self.clients:
            unanswered += c.abandon()
        t.fail("unanswered", unanswered, None)
        if not self.measuring:  # stopped during the warm-up
            self._begin_measuring(now)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu = ru.ru_utime + ru.ru_stime - self._cpu0
        self._sample(now, last_sample_t, last_sample_acked)  # the last one, at the end
        end = self.last_report if self.last_report > self.measure_start else now
        duration = max(1e-6, (end - self.measure_start) / 1e6)
        latency: dict[str, float | None] = {
            key: _ms(t.total.value_at_percentile(p)) for key, p in PERCENTILES
        }
        latency["max"] = _ms(t.total.max)
        return Result(
            target=self.target.url,
            mode=s.mode,
            options=s.options(),
            duration_s=round(duration, 6),
            sent=t.sent,
            acked=t.acked,
            failed=dict(t.failed),
            unanswered=unanswered,
            rate=t.acked / duration,
            latency_ms=latency,
            loadgen_cpu_s=round(cpu, 6),
            loadgen_cpu_us_per_record=(cpu * 1e6 / t.acked) if t.acked else None,
            samples=self.samples,
            errors=list(t.errors),
        )


def _ms(us: float | int | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


__all__ = ["Engine", "Settings", "Tally", "TargetUnusable", "UsageError"]
