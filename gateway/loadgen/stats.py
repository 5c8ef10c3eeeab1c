"""What a load-generator run hands to its displays: a sample a second and a result at the end.

The engine (gateway.loadgen.engine) fills these; the live progress line, the summary table,
``--json`` and ``--plot`` (gateway.loadgen.report, gateway.loadgen.plot) only read them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The latency percentiles every sample and the result carry, as (key, fraction).
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


@dataclass
class Sample:
    """The run at one moment, taken about once a second and once at the end.

    Counts are totals since the start of the measured run (warm-up excluded). ``rate`` and
    the latency percentiles cover the interval since the previous sample only, so a plot of
    the samples shows how they change over time. Latency is in milliseconds, from each
    record's intended send time to its report (no coordinated omission); ``None`` when no
    report arrived in the interval.
    """

    t: float  # seconds since the start of the measured run
    acked: int  # records with a success report (or, in consume mode, records received)
    failed: dict[str, int]  # records that failed, by error code ("40403", "429", "connect", ...)
    in_flight: int  # records sent whose report has not arrived
    rate: float  # acked records per second over the interval
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


@dataclass
class Result:
    """A whole run, for the summary table, ``--json`` and ``--plot``."""

    target: str  # the URL given
    mode: str  # stream, unary, batch or consume
    options: dict[str, Any]  # what the run was asked to do: connections, rate, record bytes, ...
    duration_s: float  # the measured run, first send to last report (or the bound)
    sent: int  # records written to the target
    acked: int
    failed: dict[str, int]
    unanswered: int  # records sent that got no report before the run ended (also in failed)
    rate: float  # acked / duration_s
    latency_ms: dict[str, float | None]  # p50, p90, p99, p999, max over the whole run
    loadgen_cpu_s: float  # this process's CPU time (user + system) over the run
    loadgen_cpu_us_per_record: float | None  # loadgen_cpu_s per acked record
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # first few failure messages, verbatim

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failures"] = self.failures
        return d
