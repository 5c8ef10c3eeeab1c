"""What ``kafka-gateway loadgen`` shows (gateway.loadgen.report, gateway.loadgen.plot): the
progress line on a terminal (one line rewritten in place, fitted to the width) and in a pipe
(plain lines), the summary table, ``--json`` and the ``--plot`` PNG."""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import pytest

from gateway.loadgen.plot import COLORS, write_plot
from gateway.loadgen.report import Progress, print_summary, write_json
from gateway.loadgen.stats import Result, Sample

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

LONG = Sample(t=12.0, acked=3_612_345, failed={"40403": 10, "429": 2, "connect": 1},
              in_flight=4_096, rate=301_234.5, p50_ms=1.834, p99_ms=6.2, p999_ms=14.23)
SHORT = Sample(t=13.0, acked=3_900_000, failed={}, in_flight=0, rate=287_655.0,
               p50_ms=None, p99_ms=None, p999_ms=None)
# What LONG shows, field by field.
LONG_FIELDS = ["12.0s", "rate 301.2k/s", "acked 3,612,345",
               "failed 13 (40403: 10, 429: 2, connect: 1)", "in-flight 4,096", "p50 1.83 ms",
               "p99 6.20 ms", "p99.9 14.2 ms"]
SHORT_FIELDS = ["13.0s", "rate 287.7k/s", "acked 3,900,000", "failed 0", "in-flight 0",
                "p50 -", "p99 -", "p99.9 -"]


# -- a terminal ---------------------------------------------------------------------------------

def set_size(fd: int, cols: int, rows: int = 24) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_until(fd: int, done: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    """Read the pty master until done(what was read) or the other side closed (EIO)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not done(data):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; read {data!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every slave fd is closed
                break
            if not chunk:
                break
            data += chunk
    return data


def screen(output: str, cols: int) -> list[str]:
    """The rows a terminal of cols columns shows after output: CR, LF, erase to end of line
    and auto-wrap at the right margin (so a line that was too long shows as two rows)."""
    rows: list[list[str]] = [[]]
    col = 0
    i = 0
    while i < len(output):
        ch = output[i]
        if output.startswith("\x1b[K", i):
            del rows[-1][col:]
            i += 3
            continue
        assert ch != "\x1b", f"an escape other than erase-line: {output[i:i + 8]!r}"
        if ch == "\r":
            col = 0
        elif ch == "\n":
            rows.append([])
            col = 0
        else:
            if col == cols:  # the wrap happens when a character goes past the margin
                rows.append([])
                col = 0
            row = rows[-1]
            row.extend(" " * (col - len(row)))
            row[col:col + 1] = [ch]
            col += 1
        i += 1
    return ["".join(r).rstrip() for r in rows]


def updates(output: str) -> list[str]:
    """The visible text of each in-place update: what lies between the carriage returns."""
    return [ESCAPE.sub("", seg) for seg in output.replace("\r\n", "\n").split("\r") if seg]


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


@pytest.fixture
def tty(pty: tuple[int, int]) -> Iterator[TextIO]:
    """A text stream on the pty's terminal side, as sys.stderr is on a terminal."""
    with open(pty[1], "w", encoding="utf-8", closefd=False) as stream:
        yield stream


def test_terminal_one_line_rewritten_in_place(pty: tuple[int, int], tty: TextIO) -> None:
    master, slave = pty
    set_size(slave, 200)
    p = Progress(tty)
    assert p.is_tty
    p.update(LONG)
    p.update(SHORT)  # shorter than the line before it: erase-to-end removes the rest
    p.update(LONG)
    p.update(SHORT)
    out = read_until(master, lambda d: d.count(b"\x1b[K") == 4).decode()
    assert "\n" not in out, out  # nothing scrolls while the run goes on
    assert out.count("\r") == 4 and out.startswith("\r")
    assert all(seg.endswith("\x1b[K") for seg in out.split("\r")[1:])
    shown = updates(out)
    assert shown == [shown[0], shown[1]] * 2
    for field in LONG_FIELDS:
        assert field in shown[0], (field, shown[0])
    for field in SHORT_FIELDS:
        assert field in shown[1], (field, shown[1])
    assert screen(out, 200) == [shown[1]]  # the last update only, no leftovers of the longer

    p.close()
    end = read_until(master, lambda d: b"\n" in d).decode()
    assert end == "\r\n"  # the newline (the tty's ONLCR makes it CR LF)
    p.close()  # a second close writes nothing more
    tty.write("next\n")
    tty.flush()
    end += read_until(master, lambda d: b"next\r\n" in d).decode()
    assert screen(out + end, 200) == [shown[1], "next", ""]


@pytest.mark.parametrize("cols", [120, 80, 60, 40, 24])
def test_terminal_line_fits_the_width(pty: tuple[int, int], tty: TextIO, cols: int) -> None:
    """On a narrow terminal the least important fields go; the line never wraps."""
    master, slave = pty
    set_size(slave, cols)
    p = Progress(tty)
    p.update(LONG)
    p.update(SHORT)
    p.close()
    out = read_until(master, lambda d: b"\n" in d).decode()
    for line in updates(out):
        assert len(line.rstrip("\n")) < cols, (cols, line)
    long_line, short_line = (s.rstrip("\n") for s in updates(out))
    assert long_line.startswith("12.0s  rate 301.2k/s")  # what stays at any width
    if cols >= 60:
        assert "failed 13" in long_line
    if cols >= 120:  # the fields go from the least important: p50 before p99
        assert "p99 6.20 ms" in long_line and "p50" not in long_line
        assert "in-flight 4,096" in long_line and "acked 3,612,345" in long_line
        assert "(40403: 10, +2 other)" in long_line  # the top code and how many more
    rows = screen(out, cols)
    assert rows == [short_line, ""], rows  # one row: nothing wrapped


def test_terminal_resized_during_the_run(pty: tuple[int, int], tty: TextIO) -> None:
    master, slave = pty
    set_size(slave, 200)
    p = Progress(tty)
    p.update(LONG)
    set_size(slave, 50)
    p.update(LONG)
    out = read_until(master, lambda d: d.count(b"\x1b[K") == 2).decode()
    wide, narrow = updates(out)
    assert wide.endswith("p99.9 14.2 ms") and len(wide) < 200
    assert len(narrow) < 50 and narrow.startswith("12.0s  rate 301.2k/s")


# -- a pipe -------------------------------------------------------------------------------------

def test_pipe_plain_lines_one_per_update() -> None:
    r, w = os.pipe()
    with open(r, "rb", buffering=0) as reader, open(w, "w", encoding="utf-8") as stream:
        p = Progress(stream)
        assert not p.is_tty
        lines = []
        for s in (LONG, SHORT, LONG):
            p.update(s)
            # There at once: every update is flushed (a pipe is block-buffered otherwise).
            assert select.select([r], [], [], 2.0)[0], "the update was not flushed"
            chunk = os.read(r, 65536).decode()
            assert chunk.count("\n") == 1 and chunk.endswith("\n"), chunk
            assert all(c.isprintable() for c in chunk[:-1]), chunk  # no \r, no escapes
            lines.append(chunk[:-1])
        p.close()
        stream.close()
        assert reader.read() == b""  # close() adds nothing to plain lines
    assert lines[0] == "  ".join(LONG_FIELDS)
    assert lines[1] == "  ".join(SHORT_FIELDS)
    assert lines[2] == lines[0]


def test_a_file_or_string_buffer_is_not_a_terminal() -> None:
    buf = io.StringIO()
    p = Progress(buf)
    p.update(LONG)
    p.close()
    assert buf.getvalue() == "  ".join(LONG_FIELDS) + "\n"


# -- the real thing: a child process's stderr, as the CLI writes it -----------------------------

CHILD = """
import sys
from gateway.loadgen.report import Progress
from gateway.loadgen.stats import Sample
p = Progress(sys.stderr)
for i in range(1, 4):
    p.update(Sample(t=float(i), acked=100_000 * i, failed={"429": 7 * i}, in_flight=12,
                    rate=100_000.0, p50_ms=1.5, p99_ms=4.0, p999_ms=None))
p.close()
print("summary follows", file=sys.stderr)
"""
CHILD_LINES = [
    f"{i}.0s  rate 100.0k/s  acked {100 * i},000  failed {7 * i} (429: {7 * i})  in-flight 12  "
    f"p50 1.50 ms  p99 4.00 ms  p99.9 -" for i in range(1, 4)
]


def run_child(stderr: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)
    return subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)


def test_child_stderr_on_a_terminal(pty: tuple[int, int]) -> None:
    master, slave = pty
    set_size(slave, 150)
    child = run_child(slave)
    os.close(slave)  # the child's is now the only slave fd: EIO when it exits
    out = read_until(master, lambda d: False, timeout=10).decode()
    assert child.wait(5) == 0
    assert "\n" not in out.split("\r\n")[0]
    assert updates(out.split("\r\n")[0]) == CHILD_LINES
    assert screen(out, 150) == [CHILD_LINES[-1], "summary follows", ""]


def test_child_stderr_in_a_pipe() -> None:
    child = run_child(subprocess.PIPE)
    _, err = child.communicate(timeout=10)
    assert child.returncode == 0
    assert err.decode() == "\n".join([*CHILD_LINES, "summary follows"]) + "\n"


# -- the summary table and --json ---------------------------------------------------------------

def result(samples: list[Sample] | None = None, failed: dict[str, int] | None = None) -> Result:
    failed = {"40403": 10, "429": 2, "unanswered": 3} if failed is None else failed
    return Result(
        target="http://127.0.0.1:8082/v3/clusters/kafka-gateway/topics/loadgen/records",
        mode="stream",
        options={"connections": 8, "rate": 300_000, "record_bytes": 100, "keys": True,
                 "partitioner": None},
        duration_s=30.0042, sent=9_000_123, acked=8_999_988, failed=failed,
        unanswered=failed.get("unanswered", 0), rate=299_957.6,
        latency_ms={"p50": 1.834, "p90": 3.1, "p99": 6.2, "p999": 14.23, "max": 120.5},
        loadgen_cpu_s=41.2, loadgen_cpu_us_per_record=4.578, samples=samples or [],
        errors=["40403: Topic 'loadgen' not found", "429: rate limit\nexceeded",
                "e3", "e4", "e5", "e6", "e7"],
    )


def test_summary_table() -> None:
    buf = io.StringIO()
    print_summary(result(), buf)
    text = buf.getvalue()
    assert "\x1b" not in text and text.endswith("\n")
    lines = text.splitlines()

    def row(label: str) -> str:
        (line,) = [ln for ln in lines if ln.strip().startswith(label)]
        return line

    assert row("target").split() == ["target", result().target]
    assert row("mode").split(None, 1)[1] == "stream (8 connections, open loop 300,000 records/s)"
    assert row("options").split(None, 1)[1] == ("connections=8, rate=300,000, record_bytes=100, "
                                                "keys=yes, partitioner=-")
    assert row("duration").split() == ["duration", "30.00", "s"]
    assert row("records sent").split() == ["records", "sent", "9,000,123"]
    assert row("acked").split() == ["acked", "8,999,988"]
    assert row("failed").split(None, 2) == ["failed", "15", "40403: 10, unanswered: 3, 429: 2"]
    assert row("unanswered").split(None, 2) == ["unanswered", "3", "(also in failed)"]
    assert row("rate").split() == ["rate", "299,958", "records/s"]
    assert row("latency p50").split() == ["latency", "p50", "1.83", "ms"]
    for label, value in (("p90", "3.10"), ("p99 ", "6.20"), ("p99.9", "14.2"), ("max", "120")):
        assert row(label).split() == [label.strip(), value, "ms"]
    assert row("loadgen CPU").split() == ["loadgen", "CPU", "41.20", "s"]
    assert row("per record").split() == ["per", "record", "4.58", "µs"]
    # The errors: the first five, the first line of each.
    i = lines.index("  errors (first 5 of 7)")
    assert [ln.strip() for ln in lines[i + 1:]] == [
        "40403: Topic 'loadgen' not found", "429: rate limit", "e3", "e4", "e5"]
    # Aligned: labels in one column, the figures right-aligned in the next.
    figures = {"records sent": "9,000,123", "acked": "8,999,988", "failed": "15",
               "rate": "299,958", "latency p50": "1.83", "max": "120", "per record": "4.58"}
    ends = {row(k).index(v) + len(v) for k, v in figures.items()}
    assert len(ends) == 1, ends
    starts = {row(k).index(v) for k, v in (("target", "http"), ("mode", "stream"),
                                           ("options", "connections"))}
    assert len(starts) == 1 and starts.pop() < ends.pop()


def test_summary_without_failures_or_figures() -> None:
    r = result(failed={})
    r.latency_ms = {"p50": None, "p90": None, "p99": None, "p999": None, "max": None}
    r.loadgen_cpu_us_per_record = None
    r.errors = []
    r.options = {"connections": 1, "rate": None}
    buf = io.StringIO()
    print_summary(r, buf)
    lines = buf.getvalue().splitlines()
    assert [ln.split() for ln in lines if "failed" in ln] == [["failed", "0"]]
    assert [ln.split() for ln in lines if "p99.9" in ln] == [["p99.9", "-", "ms"]]
    assert "mode                stream (1 connection, closed loop)" in lines[2]
    assert not [ln for ln in lines if "errors" in ln]


def test_json_round_trips() -> None:
    r = result(samples=[LONG, SHORT])
    buf = io.StringIO()
    write_json(r, buf)
    text = buf.getvalue()
    assert text.endswith("}\n") and text.count("\n") > 10 and '\n  "target": ' in text
    assert json.loads(text) == r.as_dict()  # floats exactly, None as null
    assert json.loads(text)["samples"][1]["p50_ms"] is None
    assert json.loads(text)["failures"] == 15


def test_json_has_no_nan() -> None:
    """JSON has no NaN or Infinity: such a figure is null, and strict parsers accept it."""
    r = result()
    r.rate = math.inf
    r.latency_ms["max"] = math.nan
    buf = io.StringIO()
    write_json(r, buf)

    def refuse(name: str) -> None:
        raise AssertionError(name)

    d = json.loads(buf.getvalue(), parse_constant=refuse)
    assert d["rate"] is None and d["latency_ms"]["max"] is None


# -- the plot -----------------------------------------------------------------------------------

def run_samples(n: int = 30, fail_at: tuple[int, ...] = (), gap: tuple[int, ...] = ()) -> list[
        Sample]:
    out, acked, failed = [], 0, 0
    for i in range(1, n + 1):
        rate = 300_000.0 * min(i, 3) / 3 - (200_000.0 if i in fail_at else 0.0)
        acked += int(rate)
        failed += 500 if i in fail_at else 0
        none = i in gap
        out.append(Sample(t=float(i), acked=acked, failed={"429": failed} if failed else {},
                          in_flight=4000, rate=rate,
                          p50_ms=None if none else 1.8 + (30 if i in fail_at else 0),
                          p99_ms=None if none else 6.0 + (200 if i in fail_at else 0),
                          p999_ms=None if none else 14.0 + (300 if i in fail_at else 0)))
    return out


def pixels(path: Path) -> object:
    import matplotlib.image

    img = matplotlib.image.imread(str(path))
    assert img.shape[:2] == (800, 1200)  # ~1200x800: readable at a glance
    return img


def count_colour(img: object, colour: str, rows: slice) -> int:
    import numpy as np
    from matplotlib.colors import to_rgb

    rgb = np.asarray(img)[rows, :, :3]
    return int((np.abs(rgb - np.array(to_rgb(colour))).max(axis=2) < 0.06).sum())


TOP, BOTTOM = slice(0, 400), slice(400, 800)
LINE = 600  # pixels of a line across the panel (a legend's sample line is ~40)


def png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_has_both_panels(tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    write_plot(result(samples=run_samples(), failed={}), str(path))
    png(path)
    img = pixels(path)
    # Throughput above, latency below; and no failure line without failures.
    assert count_colour(img, COLORS["acked"], TOP) > LINE
    assert count_colour(img, COLORS["acked"], BOTTOM) == 0
    for key in ("p50", "p99", "p999"):
        assert count_colour(img, COLORS[key], BOTTOM) > LINE, key
        assert count_colour(img, COLORS[key], TOP) == 0, key
    assert count_colour(img, COLORS["failed"], slice(0, 800)) == 0


def test_plot_shows_failures(tmp_path: Path) -> None:
    path = tmp_path / "run.png"
    write_plot(result(samples=run_samples(fail_at=(14, 15, 16))), str(path))
    png(path)
    img = pixels(path)
    assert count_colour(img, COLORS["failed"], TOP) > LINE
    assert count_colour(img, COLORS["failed"], BOTTOM) == 0
    assert count_colour(img, COLORS["acked"], TOP) > LINE


def test_plot_leaves_gaps_for_intervals_without_reports(tmp_path: Path) -> None:
    full, gappy = tmp_path / "full.png", tmp_path / "gap.png"
    write_plot(result(samples=run_samples(), failed={}), str(full))
    write_plot(result(samples=run_samples(gap=tuple(range(10, 20))), failed={}), str(gappy))
    png(gappy)
    with_gap = count_colour(pixels(gappy), COLORS["p99"], BOTTOM)
    assert LINE / 2 < with_gap < 0.8 * count_colour(pixels(full), COLORS["p99"], BOTTOM)


@pytest.mark.parametrize("n", [0, 1])
def test_plot_of_zero_or_one_sample(tmp_path: Path, n: int) -> None:
    path = tmp_path / "run.png"
    write_plot(result(samples=run_samples(n)), str(path))
    png(path)
    img = pixels(path)
    if n == 1:  # the one sample shows as a dot
        assert count_colour(img, COLORS["acked"], TOP) > 5
        assert count_colour(img, COLORS["p99"], BOTTOM) > 5


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(RuntimeError, match=r"--plot needs matplotlib: pip install "
                                           r"'kafka-gateway\[loadgen\]'"):
        write_plot(result(), str(tmp_path / "run.png"))
    assert not (tmp_path / "run.png").exists()


def test_plot_leaves_out_the_rate_of_a_short_closing_interval(tmp_path: Path) -> None:
    """The sample that closes a run covers what was left of its last second (the drain): a few
    ms whose rate would draw a spike ten times the real throughput. The line stays at the
    throughput the run had, near the top of its panel."""
    import numpy as np

    samples = run_samples(10)
    last = samples[-1]
    samples.append(Sample(t=last.t + 0.02, acked=last.acked + 60_000, failed={}, in_flight=0,
                          rate=3_000_000.0, p50_ms=1.8, p99_ms=6.0, p999_ms=14.0))
    path = tmp_path / "run.png"
    write_plot(result(samples=samples, failed={}), str(path))
    img = np.asarray(pixels(path))[TOP, :400, :3]  # (left of the closing sample at t=10 of 30)
    from matplotlib.colors import to_rgb

    rows = np.nonzero((np.abs(img - np.array(to_rgb(COLORS["acked"]))).max(axis=2) < 0.06)
                      .any(axis=1))[0]
    # The steady 300k line is drawn in the upper part of the panel, as the top of the scale;
    # a spike to 3M would put all of the line in the panel's bottom tenth.
    assert rows.min() < 150, rows
