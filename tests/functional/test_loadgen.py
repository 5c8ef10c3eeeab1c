"""``python -m gateway.loadgen`` against live gateways, as a user runs it: its counts against the
gateway's own /metrics, its failure counts and exit statuses for a failing target, open-loop
pacing, TLS with Basic credentials, and Ctrl-C."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families
from support.gateway import ROOT, GatewayProcess
from support.http import request
from support.tls import ThrowawayCA

from gateway.auth.users import hash_password
from gateway.kafka.embedded import EmbeddedBroker, find_free_port

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout
        self.result: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}

    def __repr__(self) -> str:
        return f"rc={self.rc} stdout={self.stdout[:2000]} stderr={self.stderr[-2000:]}"


def loadgen(url: str, *args: str, timeout: float = 60) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.loadgen", url, "--json", "--no-progress", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    return Run(proc)


def url(g: GatewayProcess) -> str:
    return f"http://{g.host}:{g.port}"


def delivered(g: GatewayProcess, topic: str, ctx: ssl.SSLContext | None = None) -> float:
    """The gateway's count of records Kafka acknowledged for ``topic`` (its /metrics)."""
    if ctx is None:
        return g.metric("gateway_records_delivered_total", topic=topic) or 0.0
    r = request(g.host, g.port, "GET", "/metrics", timeout=10, ssl_context=ctx)
    assert r.status == 200, r
    for family in text_string_to_metric_families(r.body.decode()):
        for sample in family.samples:
            if sample.name == "gateway_records_delivered_total" and sample.labels.get("topic") == topic:
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def lg_gateway(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One gateway for the counting tests of this module."""
    g = GatewayProcess(["--bootstrap-servers", broker.bootstrap],
                       tmp_path_factory.mktemp("loadgen") / "gateway.log")
    try:
        yield g
    finally:
        g.stop()
    g.assert_no_crash()


@pytest.mark.parametrize("mode,records,extra", [
    ("stream", 20000, []),
    ("unary", 2000, ["--connections", "8"]),
    ("batch", 10000, ["--batch", "200"]),
])
def test_each_produce_mode_counts_what_the_gateway_delivered(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str], mode: str, records: int,
    extra: list[str],
) -> None:
    topic = topic_factory(3)
    before = delivered(lg_gateway, topic)
    run = loadgen(url(lg_gateway), "--topic", topic, "--mode", mode, "--records", str(records),
                  "--warmup", "0", *extra)
    assert run.rc == 0, run
    r = run.result
    assert (r["mode"], r["sent"], r["acked"], r["failed"], r["unanswered"]) == (
        mode, records, records, {}, 0), run
    assert delivered(lg_gateway, topic) - before == records
    lat = r["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 30_000, lat
    assert r["loadgen_cpu_us_per_record"] > 0 and r["rate"] > 0
    assert r["samples"] and r["samples"][-1]["acked"] == records


def test_consume_mode_receives_the_records_produced_before(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(2)
    produced = loadgen(url(lg_gateway), "--topic", topic, "--records", "3000", "--warmup", "0")
    assert produced.rc == 0 and produced.result["acked"] == 3000, produced
    assert delivered(lg_gateway, topic) == 3000
    run = loadgen(url(lg_gateway), "--topic", topic, "--mode", "consume", "--records", "3000",
                  "--warmup", "0")
    assert run.rc == 0, run
    r = run.result
    assert (r["acked"], r["failed"]) == (3000, {}), run
    assert r["latency_ms"]["p50"] is not None
    # The consumer instance was deleted at the end: the gateway holds none.
    assert lg_gateway.metric("gateway_consumer_instances") in (None, 0.0)


def test_open_loop_keeps_the_rate_and_reports_latency(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    start = time.monotonic()
    run = loadgen(url(lg_gateway), "--topic", topic, "--rate", "4000", "--records", "8000",
                  "--warmup", "0", "--connections", "2")
    elapsed = time.monotonic() - start
    assert run.rc == 0, run
    r = run.result
    assert r["acked"] == 8000, run
    assert 1.9 <= r["duration_s"] <= 3.0, r["duration_s"]  # 8000 records at 4000/s: 2 s
    assert elapsed < 10
    assert 3000 <= r["samples"][0]["rate"] <= 5000, r["samples"]
    lat = r["latency_ms"]
    assert all(lat[k] is not None for k in ("p50", "p90", "p99", "p999", "max")), lat
    assert r["options"]["rate"] == 4000


def test_an_unknown_topic_is_counted_as_failures(lg_gateway: GatewayProcess) -> None:
    run = loadgen(url(lg_gateway), "--topic", "no-such-topic-here", "--records", "1000",
                  "--warmup", "0")
    assert run.rc == 1, run
    r = run.result
    assert (r["acked"], r["failed"]) == (0, {"40401": 1000}), run
    assert any("40401" in e for e in r["errors"]), r["errors"]
    # The same with room for the failures: exit 0.
    run = loadgen(url(lg_gateway), "--topic", "no-such-topic-here", "--mode", "batch",
                  "--records", "500", "--warmup", "0", "--max-failures", "500")
    assert run.rc == 0, run
    assert run.result["failed"] == {"40401": 500}


def test_the_rate_limit_shows_as_429_failures(
    gateway_factory: Callable[..., GatewayProcess], topic_factory: Callable[..., str]
) -> None:
    g = gateway_factory("--api-v3-produce-rate-limit-enabled",
                        "--api-v3-produce-rate-limit-max-requests-per-sec", "1000")
    topic = topic_factory(1)
    run = loadgen(url(g), "--topic", topic, "--records", "5000", "--warmup", "0")
    assert run.rc == 1, run
    r = run.result
    assert set(r["failed"]) == {"429"} and r["failed"]["429"] > 0, run
    assert r["acked"] + r["failed"]["429"] == 5000
    assert delivered(g, topic) == r["acked"]
    assert g.metric("gateway_records_failed_total", topic=topic, error_code="429") == r["failed"]["429"]


def test_an_unreachable_target_exits_2_with_a_message() -> None:
    port = find_free_port("127.0.0.1")
    for mode in ("stream", "batch"):
        run = loadgen(f"http://127.0.0.1:{port}", "--topic", "t", "--mode", mode, "--records", "10")
        assert run.rc == 2, run
        assert run.stdout == ""
        [line] = run.stderr.strip().splitlines()
        assert line.startswith("kafka-gateway loadgen: ") and str(port) in line, line


def test_kafka_gateway_loadgen_is_the_same_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway", "loadgen", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: kafka-gateway loadgen ")
    assert all(m in proc.stdout for m in ("stream", "unary", "batch", "consume", "exit status"))


def test_usage_errors_exit_2() -> None:
    run = loadgen("http://127.0.0.1:1", "--topic", "t", "--mode", "consume", "--rate", "5")
    assert run.rc == 2 and "--rate" in run.stderr, run
    run = loadgen("127.0.0.1:1", "--topic", "t")
    assert run.rc == 2 and "http://" in run.stderr, run


def test_tls_and_basic_credentials(
    gateway_factory: Callable[..., GatewayProcess], topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    ca = ThrowawayCA(tmp_path)
    server = ca.issue_server()
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('s3cret', CHEAP)}\n")
    users.chmod(0o600)
    g = gateway_factory("--tls-cert", str(server.cert), "--tls-key", str(server.key),
                        "--users-file", str(users))
    topic = topic_factory(2)
    base = f"https://alice:s3cret@127.0.0.1:{g.port}"
    for mode in ("stream", "unary", "batch"):
        run = loadgen(base, "--topic", topic, "--mode", mode, "--records", "1000",
                      "--warmup", "0", "--cacert", str(ca.files.cert), "--connections", "2")
        assert run.rc == 0, run
        assert run.result["acked"] == 1000, run
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    assert delivered(g, topic, ctx) == 3000
    # The password in --user instead, and --insecure instead of the CA.
    run = loadgen(f"https://127.0.0.1:{g.port}", "--user", "alice:s3cret", "--insecure",
                  "--topic", topic, "--records", "100", "--warmup", "0")
    assert run.rc == 0 and run.result["acked"] == 100, run
    # A wrong password: the target is unusable from the start.
    run = loadgen(f"https://127.0.0.1:{g.port}", "--user", "alice:wrong", "--insecure",
                  "--topic", topic, "--records", "100")
    assert run.rc == 2 and "401" in run.stderr, run
    # Without the CA the certificate is not trusted.
    run = loadgen(f"https://127.0.0.1:{g.port}", "--user", "alice:s3cret", "--topic", topic,
                  "--records", "100")
    assert run.rc == 2 and "certificate" in run.stderr.lower(), run


def test_ctrl_c_ends_the_run_with_its_summary(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.loadgen", url(lg_gateway), "--topic", topic,
         "--duration", "60", "--rate", "2000", "--warmup", "0", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        time.sleep(2.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    r = json.loads(out)
    assert 3000 <= r["acked"] <= 7000 and r["failed"] == {} and r["unanswered"] == 0, r
    assert r["acked"] == r["sent"] == delivered(lg_gateway, topic)
    assert "acked" in err  # the progress lines went to stderr


def test_the_warmup_is_load_left_out_of_the_figures(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(3)
    run = loadgen(url(lg_gateway), "--topic", topic, "--rate", "5000", "--records", "5000",
                  "--warmup", "1", "--connections", "2")
    assert run.rc == 0, run
    r = run.result
    assert (r["sent"], r["acked"], r["failed"]) == (5000, 5000, {}), run
    # The gateway took the warm-up's second of records too.
    assert 4000 <= delivered(lg_gateway, topic) - 5000 <= 6000
    assert 0.9 <= r["duration_s"] <= 1.6, r["duration_s"]


def test_streams_cut_by_the_gateway_go_on_in_new_streams(
    gateway_factory: Callable[..., GatewayProcess], topic_factory: Callable[..., str]
) -> None:
    g = gateway_factory("--streaming-connection-max-duration-ms", "400")
    topic = topic_factory(2)
    run = loadgen(url(g), "--topic", topic, "--rate", "5000", "--records", "10000",
                  "--warmup", "0", "--connections", "2", "--max-failures", "10000")
    assert run.rc == 0, run
    r = run.result
    # Each stream ends after 0.4 s with 408 reports; the records it did not read fail with the
    # last report's code, and the run goes on in new streams to its 2 s.
    assert set(r["failed"]) == {"408"}, r["failed"]
    # (The first cut comes after 2,000 records: most of the 10,000 are acked in later streams,
    # the few sent while a cut was on its way fail.)
    assert r["acked"] + r["failed"]["408"] == 10000 and r["acked"] > 6000, r
    assert delivered(g, topic) == r["acked"]
    assert any("maximum" in e for e in r["errors"]), r["errors"]
    # Without room for them, the failures make the exit status 1.
    run = loadgen(url(g), "--topic", topic, "--rate", "5000", "--records", "5000",
                  "--warmup", "0", "--connections", "2")
    assert run.rc == 1 and run.result["failed"].get("408"), run


def _terminal_run(args: list[str], cols: int) -> tuple[int, str, str]:
    """Run the loadgen with its stderr on a pseudo-terminal ``cols`` wide, as in a shell:
    (exit status, stdout, what the terminal received)."""
    import fcntl
    import os
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.loadgen", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=slave, text=True)
    finally:
        os.close(slave)
    received = bytearray()
    try:
        while True:  # until the child's end closes the terminal (EIO)
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            received += data
        out, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, received.decode("utf-8", "replace")


def test_progress_on_a_terminal_and_in_a_pipe_and_the_plot(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory(3)
    png = tmp_path / "run.png"
    args = ["--topic", topic, "--rate", "2000", "--records", "5000", "--warmup", "0",
            "--connections", "2"]
    rc, out, screen = _terminal_run([url(lg_gateway), *args, "--plot", str(png)], cols=100)
    assert rc == 0, screen
    # A terminal gets one line rewritten in place each second, ended by a newline at the end;
    # the summary table goes to stdout.
    assert screen.endswith("\n") and screen.count("\n") == 1, repr(screen)
    updates = [u for u in screen.rstrip("\r\n").split("\r") if u]
    assert len(updates) >= 3, repr(screen)
    for line in updates:
        assert line.endswith("\x1b[K") and "acked" in line, repr(line)
        assert len(line) - len("\x1b[K") < 100, repr(line)
    assert "acked" in screen and "p99" in screen
    assert "5,000" in out and "summary" in out, out
    # The plot: a PNG of the run's samples, throughput above, latency below.
    import matplotlib.image
    import numpy as np
    from matplotlib.colors import to_rgb

    from gateway.loadgen.plot import COLORS

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(matplotlib.image.imread(str(png)))[:, :, :3]
    half = img.shape[0] // 2

    def pixels(colour: str, rows: slice) -> int:
        return int((np.abs(img[rows] - np.array(to_rgb(colour))).max(axis=2) < 0.06).sum())

    assert pixels(COLORS["acked"], slice(0, half)) > 100
    assert pixels(COLORS["p99"], slice(half, None)) > 100
    assert pixels(COLORS["acked"], slice(half, None)) == 0
    assert pixels(COLORS["p99"], slice(0, half)) == 0

    # Piped, the same run writes plain lines, one a second, no control characters.
    proc = subprocess.run([sys.executable, "-m", "gateway.loadgen", url(lg_gateway), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) >= 2 and all("acked" in line for line in lines), proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr


def test_open_loop_latency_counts_the_wait_to_be_sent_unless_asked_not_to(
    lg_gateway: GatewayProcess, topic_factory: Callable[..., str]
) -> None:
    # 10 records in flight at most, each taking the producer's linger (5 ms) or more: at most
    # about 2,000 records/s, asked for 10,000/s. The records queue in the loadgen, and their
    # latency from the schedule grows with the queue (no coordinated omission); from the write
    # it stays what the gateway takes.
    topic = topic_factory(1)
    args = ["--topic", topic, "--rate", "10000", "--records", "3000", "--warmup", "0",
            "--connections", "1", "--window", "10"]
    scheduled = loadgen(url(lg_gateway), *args)
    written = loadgen(url(lg_gateway), *args, "--latency-from", "written")
    for run in (scheduled, written):
        assert run.rc == 0 and run.result["acked"] == 3000, run
    assert scheduled.result["options"]["latency_from"] == "intended"
    assert written.result["options"]["latency_from"] == "written"
    queued, served = scheduled.result["latency_ms"]["p99"], written.result["latency_ms"]["p99"]
    assert queued > 300, queued  # the last records waited most of the run
    assert served < queued / 5, (served, queued)
