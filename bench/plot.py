"""Draw benchmark results into one PNG: throughput and gateway CPU over time, report latency
(over time and as percentiles), memory against open streams, and every target row as
figure / target.

    .venv/bin/python -m bench.plot RESULTS.json [-o FILE.png]

RESULTS.json is the ``--json`` output of one benchmark or of ``python -m bench``; the
benchmarks also take ``--plot FILE.png`` directly. matplotlib (``dev`` extras) with the Agg
backend: no display is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PANEL_W, PANEL_H = 7.0, 3.6


def _panels(results: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    thr, cpu, lat_req, verdicts = [], [], [], []
    latency = memory = non_reader = None
    for r in results:
        s = r.get("series", {})
        thr += s.get("throughput", [])
        cpu += s.get("cpu", [])
        lat_req += s.get("latency_requests", [])
        latency = s.get("latency", latency)
        memory = s.get("memory", memory)
        non_reader = s.get("non_reader_rss", non_reader)
        verdicts += r.get("verdicts", [])
    panels: list[tuple[str, Any]] = []
    if thr:
        panels.append(("throughput", thr))
    if cpu:
        panels.append(("cpu", cpu))
    if latency:
        panels.append(("latency_time", latency))
        panels.append(("latency_pct", latency))
    if lat_req:
        panels.append(("latency_requests", lat_req))
    if memory:
        panels.append(("memory", memory))
    if non_reader:
        panels.append(("non_reader", non_reader))
    if [v for v in verdicts if v.get("target") is not None and not v.get("skipped")]:
        panels.append(("targets", verdicts))
    return panels


def _title(results: list[dict[str, Any]]) -> str:
    names = ", ".join(str(r.get("benchmark", "?")).removeprefix("bench.") for r in results)
    m = results[0].get("machine", {})
    v = results[0].get("versions", {})
    return (f"kafka-gateway benchmarks ({names}) — {m.get('nproc', '?')} CPUs, "
            f"{m.get('cpu_model', '?')}, gateway {v.get('git') or v.get('gateway')}")


def write_plot(results: list[dict[str, Any]], path: str) -> str | None:
    """Write the PNG; the path, or None (with a note on stderr) without matplotlib or data."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench.plot: matplotlib is not installed (pip install -e '.[dev]'): no plot",
              file=sys.stderr)
        return None
    panels = _panels(results)
    if not panels:
        print("bench.plot: nothing to plot", file=sys.stderr)
        return None
    # The target table gets the whole width of the last row; the others two per row.
    targets = [p for p in panels if p[0] == "targets"]
    others = [p for p in panels if p[0] != "targets"]
    cols = 2 if len(others) > 1 else 1
    rows = (len(others) + cols - 1) // cols
    n_targets = len([v for v in targets[0][1] if v.get("target") is not None]) if targets else 0
    target_h = max(2.0, 0.35 * n_targets + 1.0) if targets else 0.0
    # Subfigures: the long row labels of the target panel do not squeeze the panels above.
    fig = plt.figure(figsize=(PANEL_W * cols, PANEL_H * rows + target_h), layout="constrained")
    if targets and others:
        top, bottom = fig.subfigures(2, 1, height_ratios=[PANEL_H * rows, target_h])
    else:
        top = bottom = fig
    if others:
        axes = top.subplots(rows, cols, squeeze=False)
        for ax, (kind, data) in zip(axes.flat, others, strict=False):
            DRAW[kind](ax, data)
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(others):]:
            ax.axis("off")
    if targets:
        ax = bottom.subplots()
        _targets(ax, targets[0][1])
        ax.grid(True, alpha=0.3, axis="x")
    fig.suptitle(_title(results), fontsize=10)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _throughput(ax: Any, series: list[dict[str, Any]]) -> None:
    for s in series:
        if s["t"]:
            ax.plot(s["t"], s["rate"], label=s["label"], linewidth=1.2,
                    drawstyle="steps-mid" if len(s["t"]) < 30 else "default")
    ax.set_yscale("log")
    ax.set_title("Throughput over time (measured window)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("records/s (log)")
    ax.legend(fontsize=6, loc="lower right")


def _cpu(ax: Any, series: list[dict[str, Any]]) -> None:
    for s in series:
        if s["t"]:
            (line,) = ax.plot(s["t"], s["cores"], label=s["label"], linewidth=1.2)
            ax.plot(s["t"], s["loop_cores"], linestyle=":", color=line.get_color(), linewidth=0.8)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylim(bottom=0)
    ax.set_title("Gateway CPU (solid: all threads; dotted: event loop)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("cores")
    ax.legend(fontsize=6, loc="lower right")


def _latency_time(ax: Any, lat: dict[str, Any]) -> None:
    s = lat["over_time"]
    # (p99.9 from the load generator's samples; "max" in results of older benches)
    for key, style in (("p50", "-"), ("p99", "-"), ("p999", ":"), ("max", ":")):
        if key in s:
            ax.plot(s["t"], [v if v is not None else float("nan") for v in s[key]], style,
                    label="p99.9" if key == "p999" else key, linewidth=1.2)
    ax.axhline(lat["target_ms"], color="red", linestyle="--", linewidth=0.8,
               label=f"p99 target {lat['target_ms']:g} ms")
    ax.set_yscale("log")
    ax.set_title(f"Report latency over time, {s['label']}")
    ax.set_xlabel(s.get("x_label", "seconds (by send time, 0.5 s windows)"))
    ax.set_ylabel("ms (log)")
    ax.legend(fontsize=7)


def _bars(ax: Any, groups: list[str], series: dict[str, list[float | None]]) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        vals = [v if v is not None else 0 for v in values]
        bars = ax.bar(xs, vals, width, label=name)
        for b, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)


def _latency_pct(ax: Any, lat: dict[str, Any]) -> None:
    keys = ["p50", "p90", "p99", "max"]
    pct = lat["percentiles"]
    _bars(ax, keys, {name: [pct[name].get(k) for k in keys] for name in ("gateway", "baseline")})
    ax.axhline(lat["target_ms"], color="red", linestyle="--", linewidth=0.8,
               label=f"p99 target {lat['target_ms']:g} ms")
    ax.set_yscale("log")
    ax.set_title("Report latency at the fixed rate: gateway vs plain producer")
    ax.set_ylabel("ms (log)")
    ax.legend(fontsize=7)


def _latency_requests(ax: Any, rows: list[dict[str, Any]]) -> None:
    keys = ["p50", "p90", "p99", "max"]
    _bars(ax, keys, {r["label"]: [r[k] / 1000 if r.get(k) is not None else None for k in keys]
                     for r in rows})
    ax.set_yscale("log")
    ax.set_title("Request latency under load (wrk, closed loop)")
    ax.set_ylabel("ms (log)")
    ax.legend(fontsize=7)


def _memory(ax: Any, mem: dict[str, Any]) -> None:
    ax.plot(mem["streams"], mem["rss_mb"], marker="o", markersize=3, label="gateway RSS")
    ax.axhline(mem["target_mb"], color="red", linestyle="--", linewidth=0.8,
               label=f"target {mem['target_mb']:g} MB at 10,000")
    ax.set_ylim(bottom=0)
    ax.set_title("Gateway RSS against concurrently open v3 streams")
    ax.set_xlabel("open streams")
    ax.set_ylabel("MB")
    ax.legend(fontsize=7)


def _non_reader(ax: Any, nr: dict[str, Any]) -> None:
    ax.plot(nr["t"], nr["rss_mb"], label="gateway RSS")
    ax.axhline(nr["rss_before_mb"], color="grey", linestyle=":", linewidth=0.8,
               label="before the client")
    ax.axhline(nr["rss_before_mb"] + nr["target_mb"], color="red", linestyle="--", linewidth=0.8,
               label=f"before + {nr['target_mb']:g} MB (target)")
    ax.set_title("Gateway RSS while one client sends and never reads")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MB")
    ax.legend(fontsize=7)


def _targets(ax: Any, verdicts: list[dict[str, Any]]) -> None:
    rows = []
    for v in verdicts:
        if v.get("skipped") or v.get("target") is None:
            continue
        judged = v["gateway"] if v["target_on"] == "gateway" else v["ratio"]
        if judged is None:
            continue
        # A "more is better" row (--workers scaling: the ratio must exceed its target) is drawn
        # as target / figure, so that ≤ 1 meets every target alike.
        figure = v["target"] / judged if v.get("higher_is_better") else judged / v["target"]
        # (A difference below zero, e.g. a p99 under the plain producer's, meets its target;
        # the log axis draws it at its left end.)
        figure = max(figure, 0.01)
        rows.append((f"{v['row']} ({v['metric']})", figure, v["pass"]))
    labels = [r[0] for r in rows][::-1]
    values = [r[1] for r in rows][::-1]
    colors = ["tab:green" if r[2] else "tab:red" for r in rows][::-1]
    bars = ax.barh(range(len(rows)), values, color=colors)
    for b, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.2f}×", (b.get_width(), b.get_y() + b.get_height() / 2),
                    va="center", fontsize=7)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title("Every target: figure / target (≤ 1 meets it)")


DRAW = {
    "throughput": _throughput, "cpu": _cpu, "latency_time": _latency_time,
    "latency_pct": _latency_pct, "latency_requests": _latency_requests, "memory": _memory,
    "non_reader": _non_reader, "targets": _targets,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON from --json of a benchmark or of python -m bench")
    p.add_argument("-o", "--output", default="bench.png", help="PNG to write (default bench.png)")
    args = p.parse_args(argv)
    with open(args.results) as f:
        data = json.load(f)
    results = data["results"] if "results" in data else [data]
    out = write_plot(results, args.output)
    if out:
        print(out)
    return 0 if out else 1


if __name__ == "__main__":
    sys.exit(main())
