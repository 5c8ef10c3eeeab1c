"""Start-up and graceful stop of the real gateway process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

from support.http import ProduceStream, request
from support.kafka import consume_topic

from gateway.kafka.embedded import find_free_port


def test_sigterm_during_heavy_streaming_loses_nothing_acknowledged(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--shutdown-timeout", "20")
    topic = topic_factory(3)
    rec = json.dumps({"value": {"type": "STRING", "data": "y" * 80}}).encode()
    batch = rec * 500
    reports: list[dict] = []
    sent = [0]
    with ProduceStream(g.host, g.port, topic, timeout=60) as s:
        assert s.read_status(10) == 200

        def send() -> None:
            try:
                for _ in range(400):  # up to 200,000 records
                    s.send(batch)
                    sent[0] += 500
            except OSError:
                pass  # the gateway stopped reading and closed: expected

        sender = threading.Thread(target=send)
        sender.start()
        reports.extend(s.read_reports(5000, timeout=30))
        os.kill(g.proc.pid, signal.SIGTERM)
        reports.extend(s.read_rest(60))  # the response ends properly: last chunk
        sender.join(30)
    assert g.proc.wait(30) == 0
    assert 5000 <= len(reports) <= sent[0] + 500
    codes = {r["error_code"] for r in reports}
    assert codes <= {200, 50003}, codes
    # The body was still being read: the last report says so, and from where to resend.
    assert reports[-1]["error_code"] == 50003
    assert reports[-1]["message"].startswith("the gateway is shutting down: reading stopped at byte ")
    ok = [(r["partition_id"], r["offset"]) for r in reports if r["error_code"] == 200]
    got = consume_topic(g.bootstrap, topic, 3, len(ok), timeout=60, quiet_period=1.0)
    landed = {(p, r.offset) for p, recs in got.items() for r in recs}
    assert landed == set(ok)
    assert "stopped:" in g.log()


def test_embedded_broker_topics_and_clean_exit(tmp_path) -> None:
    import subprocess
    import sys

    port, broker_port = find_free_port(), find_free_port()
    log = open(tmp_path / "gw.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{port}",
         "--embedded-broker", f"127.0.0.1:{broker_port}", "--topic", "events:3", "--topic", "other"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = request("127.0.0.1", port, "GET", "/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "gw.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status == 200
        with ProduceStream("127.0.0.1", port, "events") as s:
            s.send_records([{"key": {"type": "STRING", "data": f"k{i}"}} for i in range(30)])
            s.end()
            reports = s.read_rest(10)
        assert {r["partition_id"] for r in reports} <= {0, 1, 2}
        assert all(r["error_code"] == 200 for r in reports)
        got = consume_topic(f"127.0.0.1:{broker_port}", "events", 3, 30)
        assert sum(len(v) for v in got.values()) == 30
        text = (tmp_path / "gw.log").read_text()
        assert "memory only" in text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        log.close()
    # The embedded broker went with the gateway.
    import socket

    try:
        socket.create_connection(("127.0.0.1", broker_port), timeout=1).close()
        raise AssertionError("the embedded broker is still listening")
    except OSError:
        pass


def test_a_librdkafka_property_librdkafka_refuses_stops_the_start_with_exit_2() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "--listen", f"127.0.0.1:{find_free_port()}",
         "--bootstrap-servers", f"127.0.0.1:{find_free_port()}", "-X", "no.such.property=1"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "no.such.property" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_aborted_streams_leak_nothing(gateway_factory, topic_factory) -> None:
    import socket
    import struct

    g = gateway_factory()
    topic = topic_factory(2)
    rec = json.dumps({"value": {"type": "STRING", "data": "q" * 40}}).encode()
    # Warm up (first connections allocate the loop's and librdkafka's long-lived state).
    with ProduceStream(g.host, g.port, topic) as s:
        s.send(rec * 10)
        s.end()
        s.read_rest(10)
    time.sleep(0.5)
    # Client connections only: librdkafka opens and closes its own sockets in the background.
    fds_before = g.client_sockets()
    for _round in range(3):
        streams = [ProduceStream(g.host, g.port, topic) for _ in range(100)]
        for s in streams:
            s.send(rec * 50 + rec[:10])  # a partial record keeps the body open
        for s in streams:
            # Once its reports are back the gateway has read the records: an RST can no
            # longer discard them in the kernel before the gateway sees them.
            s.read_reports(50, timeout=30)
            s.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # abortive close (RST) mid-stream
    deadline = time.monotonic() + 15
    while g.client_sockets() > fds_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert g.client_sockets() <= fds_before, "sockets of aborted streams are still open"
    # Every complete record sent before the aborts was still delivered.
    got = consume_topic(g.bootstrap, topic, 2, 10 + 300 * 50, timeout=60, quiet_period=0.5)
    assert sum(len(v) for v in got.values()) == 10 + 300 * 50
    # The gateway still serves.
    assert request(g.host, g.port, "GET", "/").status == 200


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def test_workers_share_the_address_and_each_serves(gateway_factory, topic_factory) -> None:
    g = gateway_factory("--workers", "2")
    topic = topic_factory(2)
    deadline = time.monotonic() + 20
    while len(_children(g.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = _children(g.proc.pid)
    assert len(workers) == 2
    body = b'{"value":{"type":"STRING","data":"w"}}'
    for _ in range(200):  # new connection each time: the kernel spreads them over the workers
        r = request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", body,
                    {"Content-Type": "application/json"})
        assert r.status == 200 and json.loads(r.body)["error_code"] == 200
    got = consume_topic(g.bootstrap, topic, 2, 200, quiet_period=0.5)
    assert sum(len(v) for v in got.values()) == 200
    text = g.log()
    assert "[worker 0] gateway.access: " in text and "[worker 1] gateway.access: " in text
    # A worker that dies is replaced; the address keeps being served.
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (len(_children(g.proc.pid)) < 2 or workers[0] in _children(g.proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_children(g.proc.pid)) == 2 and "restarting it" in g.log()
    for _ in range(20):
        assert request(g.host, g.port, "GET", "/healthz").status == 200
    assert g.terminate(60) == 0
    assert "all workers stopped" in g.log()
