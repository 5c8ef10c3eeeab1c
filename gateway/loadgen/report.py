"""What ``kafka-gateway loadgen`` shows: a progress line a second while it runs, then a summary
table or ``--json`` (``--plot`` is gateway.loadgen.plot).

The progress display is one line rewritten in place on a terminal, fitted to its width by
dropping the least important fields (a wrapped line would break the ``\\r`` rewrite: the
terminal would scroll one row per update). Anywhere else (a pipe, a file, a CI log) it is one
plain line per update, flushed at once so ``tail -f`` and log collectors see each one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import textwrap
from collections.abc import Mapping
from typing import Any, TextIO

from gateway.loadgen.stats import Result, Sample

__all__ = ["Progress", "print_summary", "write_json"]

#: Failure codes named in the progress line; the rest are summed into "+N other".
PROGRESS_CODES = 3
#: Error messages the summary prints (the engine keeps the first few; this caps the display).
SUMMARY_ERRORS = 5
#: ANSI "erase to end of line" (ECMA-48 EL 0): removes what a longer previous update left.
CLEAR_EOL = "\x1b[K"


# -- number formats shared by the displays ------------------------------------------------------

def count(n: int) -> str:
    """A count with thousands separators: 3,612,345."""
    return f"{n:,}"


def compact(v: float) -> str:
    """A rate or count in k/M with 3-4 significant digits: 950, 301.2k, 1.25M."""
    a = abs(v)
    if a < 1_000:
        return f"{v:.0f}"
    if a < 999_950:
        return f"{v / 1e3:.1f}k"
    return f"{v / 1e6:.2f}M"


def ms(v: float | None) -> str:
    """A latency in ms with about three significant digits; ``-`` when there is none."""
    if v is None or not math.isfinite(v):
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def by_code(failed: Mapping[str, int], limit: int | None = None) -> str:
    """Failures by error code, most frequent first: ``40403: 10, 429: 2`` (+N other)."""
    items = sorted(((c, n) for c, n in failed.items() if n), key=lambda cn: (-cn[1], cn[0]))
    shown = items if limit is None else items[:limit]
    text = ", ".join(f"{c}: {count(n)}" for c, n in shown)
    rest = len(items) - len(shown)
    if rest:
        text += f", +{rest} other"
    return text


# -- the live progress display ------------------------------------------------------------------

class Progress:
    """The progress display: ``update`` with each sample, ``close`` at the end."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        try:
            self._tty = stream.isatty()
        except (AttributeError, ValueError):  # no isatty, or a closed stream
            self._tty = False
        self._open_line = False  # a tty line has been written and not ended yet

    @property
    def is_tty(self) -> bool:
        return self._tty

    def update(self, sample: Sample) -> None:
        fields = _progress_fields(sample)
        if self._tty:
            short = {"codes": f"({by_code(sample.failed, 1)})"}
            line = _fit(fields, self._width() - 1, short)  # never the last column: no auto-wrap
            self._stream.write("\r" + line + CLEAR_EOL)
            self._open_line = True
        else:
            self._stream.write(_join(fields) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the tty line so what is printed next starts on a fresh one (idempotent)."""
        if self._open_line:
            self._stream.write("\n")
            self._stream.flush()
            self._open_line = False

    def _width(self) -> int:
        # Asked at every update: the terminal may be resized during a run. The stream's own
        # terminal first (progress goes to stderr, which shutil does not look at).
        try:
            return os.get_terminal_size(self._stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size().columns


# On a narrow terminal the progress fields go in this order, the least important first ("codes>1"
# names only the most frequent error code). Elapsed time and rate always stay.
_DROP = ("codes>1", "p50", "p999", "in_flight", "codes", "acked", "p99", "failed")


def _progress_fields(s: Sample) -> list[tuple[str, str]]:
    failures = s.failures
    fields = [
        ("t", f"{s.t:.1f}s"),
        ("rate", f"rate {compact(s.rate)}/s"),
        ("acked", f"acked {count(s.acked)}"),
        ("failed", f"failed {count(failures)}"),
    ]
    if failures:
        fields.append(("codes", f"({by_code(s.failed, PROGRESS_CODES)})"))
    fields += [
        ("in_flight", f"in-flight {count(s.in_flight)}"),
        ("p50", f"p50 {_ms_unit(s.p50_ms)}"),
        ("p99", f"p99 {_ms_unit(s.p99_ms)}"),
        ("p999", f"p99.9 {_ms_unit(s.p999_ms)}"),
    ]
    return fields


def _ms_unit(v: float | None) -> str:
    text = ms(v)
    return text if text == "-" else text + " ms"


def _join(fields: list[tuple[str, str]]) -> str:
    out = ""
    for name, text in fields:
        # The codes read as part of "failed 12 (40403: 10)": one space, not a field gap.
        out += (" " if name == "codes" else "  ") + text if out else text
    return out


def _fit(fields: list[tuple[str, str]], width: int, short: Mapping[str, str]) -> str:
    """The line with as many of the fields as fit in width columns; ``short`` has shorter
    forms of some fields, tried before dropping fields."""
    for drop in _DROP:
        line = _join(fields)
        if len(line) <= width:
            return line
        if drop == "codes>1":  # first name just the most frequent code
            fields = [(n, short.get(n, t) if n == "codes" else t) for n, t in fields]
        else:
            fields = [(n, t) for n, t in fields if n != drop]
    return _join(fields)[: max(width, 0)]


# -- the summary table --------------------------------------------------------------------------

def _option(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return count(v)
    if isinstance(v, float):
        # A whole number (--rate 400000 is parsed as a float) reads as a count: 400,000.
        return count(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"
    return str(v)


def loop_text(options: Mapping[str, Any]) -> str:
    """``8 connections, open loop 300,000 records/s`` (or closed loop) from the options."""
    parts = []
    conns = options.get("connections")
    if conns is not None:
        parts.append(f"{_option(conns)} connection{'' if conns == 1 else 's'}")
    rate = options.get("rate")
    parts.append(f"open loop {_option(rate)} records/s" if rate else "closed loop")
    return ", ".join(parts)


def print_summary(result: Result, stream: TextIO) -> None:
    """The summary table at the end of a run: plain text, two aligned columns."""
    rows: list[tuple[str, str, str]] = []  # label, value (right-aligned if numeric), rest

    def num(label: str, value: str, rest: str = "") -> None:
        rows.append((label, value, rest))

    opts = ", ".join(f"{k}={_option(v)}" for k, v in result.options.items()) or "-"
    text_rows = [
        ("target", result.target),
        ("mode", f"{result.mode} ({loop_text(result.options)})"),
        ("options", opts),
    ]
    num("duration", f"{result.duration_s:,.2f}", "s")
    num("records sent", count(result.sent))
    num("        acked", count(result.acked))
    num("        failed", count(result.failures), by_code(result.failed))
    num("        unanswered", count(result.unanswered), "(also in failed)" if result.unanswered
        else "")
    num("rate", f"{result.rate:,.0f}", "records/s")
    lat = result.latency_ms
    for i, (key, name) in enumerate((("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
                                     ("p999", "p99.9"), ("max", "max"))):
        num(("latency " if i == 0 else "        ") + name, ms(lat.get(key)), "ms")
    num("loadgen CPU", f"{result.loadgen_cpu_s:,.2f}", "s")
    num("        per record", ms(result.loadgen_cpu_us_per_record)
        if result.loadgen_cpu_us_per_record is not None else "-", "µs")

    label_w = max(len(r[0]) for r in [*rows, *text_rows]) + 2
    value_w = max(len(r[1]) for r in rows)
    out = ["kafka-gateway loadgen: summary"]
    wrap_w = max(100 - label_w, 40)
    for label, text in text_rows:
        lines = textwrap.wrap(text, wrap_w, break_long_words=False, break_on_hyphens=False) or [""]
        out.append(f"  {label:<{label_w}}{lines[0]}")
        out += [f"  {'':<{label_w}}{line}" for line in lines[1:]]
    for label, value, rest in rows:
        out.append(f"  {label:<{label_w}}{value:>{value_w}}  {rest}".rstrip())
    if result.errors:
        shown = result.errors[:SUMMARY_ERRORS]
        more = len(result.errors) - len(shown)
        out.append(f"  errors (first {len(shown)}{f' of {len(result.errors)}' if more else ''})")
        for msg in shown:
            first, *_ = (msg.splitlines() or [""])
            out.append(f"    {first[:200]}")
    stream.write("\n".join(out) + "\n")
    stream.flush()


# -- --json -------------------------------------------------------------------------------------

def _jsonable(v: Any) -> Any:
    """JSON-native values only: a NaN or infinite float is null (JSON has no such numbers);
    tuples and sets are lists; anything else unknown is its str."""
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    return str(v)


def write_json(result: Result, stream: TextIO) -> None:
    """``result.as_dict()`` as JSON, indented, one newline at the end."""
    json.dump(_jsonable(result.as_dict()), stream, indent=2, allow_nan=False)
    stream.write("\n")
    stream.flush()
