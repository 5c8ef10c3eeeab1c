"""librdkafka's log lines, calmly (gateway.kafka.rdlog): one line per change of what a broker
says, the repeats summarised at most every 10 s; and the producer's lines come through its poll,
never printed to stderr by librdkafka's own threads."""

from __future__ import annotations

import logging
import select
import time

import pytest

from gateway._speedups import RdProducer
from gateway.kafka import rdlog
from gateway.kafka.rdlog import LogThrottle

REFUSED = ("[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 "
           "failed: Connection refused (after {}ms in state CONNECT)")


def test_repeats_are_held_and_summarised(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    t = LogThrottle("producer", clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="gateway.rdkafka"):
        for i in range(30):  # 30 s of one reconnect a second
            t.line(3, "FAIL", REFUSED.format(i % 7))
            if i == 12:  # the broker comes back, then goes away again
                t.line(6, "STATE", "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Broker changed state CONNECT -> UP")
            now[0] += 1.0
        t.tick()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    said = [m for _, m in lines if "Connect to" in m and "more librdkafka lines" not in m]
    assert len(said) == 2  # the first, and again after the state change
    assert (logging.ERROR, "producer FAIL: " + REFUSED.format(0)) == lines[0]
    summaries = [m for _, m in lines if "more librdkafka lines like these" in m]
    assert 2 <= len(summaries) <= 3 and all("e.g. FAIL: [thrd:127.0.0.1:1/bootstrap]" in m for m in summaries)
    held = sum(int(m.split(": ", 1)[1].split()[0]) for m in summaries)
    assert held == 30 - 2  # every line is either written or counted


def test_lines_of_different_brokers_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    t = LogThrottle("producer", clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="gateway.rdkafka"):
        for broker in ("a:1/1", "b:2/2", "a:1/1", "b:2/2"):
            t.line(3, "FAIL", f"[thrd:{broker}]: {broker}: Connect failed (after 3ms in state CONNECT)")
    assert len(caplog.records) == 2


def test_the_producer_logs_through_its_poll_not_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    p = RdProducer({"bootstrap.servers": "127.0.0.1:1", "reconnect.backoff.max.ms": 100})
    lines: list[tuple[int, str, str]] = []
    try:
        deadline = time.monotonic() + 10
        while not any("Connect to" in text for _, _, text in lines):
            assert time.monotonic() < deadline, lines
            select.select([p.event_fd], [], [], 0.2)
            p.poll()
            got, lost = p.take_logs()
            lines += got
            assert lost >= 0
    finally:
        p.close(0)
    level, facility, text = next(x for x in lines if "Connect to" in x[2])
    assert level <= 4 and facility == "FAIL" and "127.0.0.1:1" in text
    assert "%3|" not in capfd.readouterr().err  # librdkafka printed nothing itself


def test_summary_interval_is_ten_seconds() -> None:
    assert rdlog.SUMMARY_INTERVAL == 10.0
