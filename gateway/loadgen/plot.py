"""``kafka-gateway loadgen --plot FILE.png``: throughput and latency over the run, one PNG.

Two panels on one time axis (seconds since the start of the measured run): above, acked
records/s per sample (and failures/s on their own red axis when there are any); below, the
p50/p99/p99.9 report latency of each interval in ms. matplotlib's object API with the Agg
canvas: no display, and no global backend or pyplot state is touched in the caller's process.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.loadgen.report import compact, count, loop_text, ms
from gateway.loadgen.stats import Result

__all__ = ["write_plot", "COLORS"]

#: The colours of the lines (matplotlib's tab10: distinct, and readable by most colour-blind
#: viewers); the tests look for them in the image.
COLORS = {
    "acked": "#1f77b4",  # blue
    "failed": "#d62728",  # red
    "p50": "#2ca02c",  # green
    "p99": "#ff7f0e",  # orange
    "p999": "#9467bd",  # purple
}
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 8.0, 100  # 1200 x 800 pixels
#: The latency axis is logarithmic when the largest value is this many times the smallest.
LOG_RANGE = 20.0
SHORT_LAST_INTERVAL_S = 0.5  # a closing sample shorter than this has no throughput point
#: Up to this many samples each one is marked with a dot (a lone sample between gaps shows).
MARKERS_UP_TO = 120
MISSING = "--plot needs matplotlib: pip install 'kafka-gateway[loadgen]'"


def _shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n // 2 - 1] + "…" + text[-(n - n // 2):]


def _title(result: Result) -> str:
    p99 = result.latency_ms.get("p99")
    return (
        f"kafka-gateway loadgen: {result.mode} → {_shorten(result.target, 80)}\n"
        f"{loop_text(result.options)}  ·  {result.duration_s:,.1f} s  ·  "
        f"acked {count(result.acked)} ({compact(result.rate)}/s)  ·  "
        f"failures {count(result.failures)}  ·  p99 {ms(p99)}{' ms' if p99 is not None else ''}"
    )


def write_plot(result: Result, path: str) -> None:
    """Write the run's PNG to path (RuntimeError if matplotlib is not installed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    except ImportError as exc:
        raise RuntimeError(MISSING) from exc

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    fig.suptitle(_title(result), fontsize=12)
    samples = result.samples
    thousands = FuncFormatter(lambda v, _: compact(v))
    marker: dict[str, Any] = {"marker": "o", "markersize": 3} if len(samples) <= MARKERS_UP_TO \
        else {}

    t = [s.t for s in samples]
    # Throughput. The last sample closes the run: its interval is what was left of the last
    # second (the drain, often a few ms), and its rate over so short a time would be a spike
    # that never happened; its latency points stay.
    rates = [s.rate for s in samples]
    failures_per_s = _failure_rates(result)
    if len(t) >= 2 and t[-1] - t[-2] < SHORT_LAST_INTERVAL_S:
        rates[-1] = failures_per_s[-1] = math.nan
    top.plot(t, rates, color=COLORS["acked"], linewidth=2, label="acked records/s", **marker)
    target = result.options.get("rate")
    if isinstance(target, int | float) and target > 0:
        top.axhline(target, color="grey", linestyle="--", linewidth=1,
                    label=f"target {compact(target)}/s")
    # Room above the highest point, so that a steady rate is not drawn on the panel's edge.
    highest = max([r for r in rates if not math.isnan(r)]
                  + ([target] if isinstance(target, int | float) else []), default=0.0)
    top.set_ylim(0, highest * 1.15 if highest > 0 else 1.0)
    top.set_ylabel("records/s")
    top.yaxis.set_major_formatter(thousands)
    top.set_title("Throughput (acked records per second, each interval)", fontsize=11)
    handles, labels = top.get_legend_handles_labels()
    if any(f > 0 for f in failures_per_s):
        right = top.twinx()  # its own scale: a few failures a second would vanish at 300k
        right.plot(t, failures_per_s, color=COLORS["failed"], linewidth=2, label="failures/s",
                   **marker)
        right.set_ylim(bottom=0)
        right.set_ylabel("failures/s", color=COLORS["failed"])
        right.tick_params(axis="y", colors=COLORS["failed"])
        right.yaxis.set_major_formatter(thousands)
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2

    # Latency: None (no report in the interval) is NaN, a gap in the line.
    values: list[float] = []
    for key, name in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
        ys = [_nan(getattr(s, f"{key}_ms")) for s in samples]
        values += [y for y in ys if not math.isnan(y)]
        bottom.plot(t, ys, color=COLORS[key], linewidth=2, label=name, **marker)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) >= LOG_RANGE:
        bottom.set_yscale("log")
        # 1, 2, 5, 10, 20, ... labelled: a decade per label is too coarse to read a value off.
        bottom.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.set_ylabel("latency, ms (log scale)")
    else:
        bottom.set_ylim(bottom=0)
        bottom.set_ylabel("latency, ms")
    scheduled = result.options.get("rate") and result.options.get("latency_from") != "written"
    bottom.set_title("Report latency percentiles (each interval; from "
                     + ("the scheduled send time)" if scheduled else "the write)"), fontsize=11)
    bottom.set_xlabel("seconds since start")
    bottom.set_xlim(0, max([*t, result.duration_s, 1.0]))

    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    if samples:
        top.legend(handles, labels, loc="lower right", fontsize=10)
        bottom.legend(loc="upper left", fontsize=10)
    else:
        for ax in (top, bottom):
            ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center",
                    va="center", fontsize=16, color="grey")
    fig.savefig(path, format="png")


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


def _failure_rates(result: Result) -> list[float]:
    """Failures per second in each sample's interval (samples carry totals)."""
    rates, prev_t, prev_n = [], 0.0, 0
    for s in result.samples:
        n = s.failures
        dt = s.t - prev_t
        rates.append(max(n - prev_n, 0) / dt if dt > 0 else 0.0)
        prev_t, prev_n = s.t, n
    return rates
