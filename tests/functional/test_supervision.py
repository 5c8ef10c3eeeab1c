"""The embedded broker is supervised, and --workers workers die with their supervisor (real
processes: the gateway starts its own embedded broker; the tests kill it, or the supervisor, with
SIGKILL).

While the embedded broker is down it stays down for as long as the test holds its port (a
restart finds the address taken and backs off): every check of "while it is down" is then
made in a known state, not in a race with the restart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from confluent_kafka.admin import AdminClient
from support.gateway import GatewayProcess, child_pids, crash_checked, process_name
from support.http import HttpResponse, request
from support.kafka import consume_all
from support.streaming import PacedStream, check_acknowledged

from gateway.kafka.embedded import find_free_port

REPORT_WAIT = 15.0  # a record's report comes within the message timeout once the broker is back




def _state(pid: int) -> str | None:
    """The process's state letter (Z: a zombie), None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _running(pid: int) -> bool:
    return _state(pid) not in (None, "Z")


def _broker_pid(g: GatewayProcess) -> int:
    """The embedded broker: the gateway's one running tansu child."""
    found = [p for p in child_pids(g.pid) if process_name(p) == "tansu" and _running(p)]
    assert len(found) == 1, f"tansu children of the gateway: {found}"
    return found[0]


def _listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _hold_port(port: int, timeout: float = 5.0) -> socket.socket:
    """Listen on the broker's port as soon as the killed broker has let go of it: its restart
    then finds the address taken (and backs off) until the socket is closed."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
            return sock
        except OSError:
            sock.close()
            assert time.monotonic() < deadline, f"the killed broker still holds port {port}"
            time.sleep(0.005)


def _wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` holds (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what}: not within {timeout}s"
        time.sleep(0.01)
    return time.monotonic() - start


def _readyz(g: GatewayProcess) -> HttpResponse:
    return request(g.host, g.port, "GET", "/readyz", timeout=5)


def _assert_503_50003(r: HttpResponse) -> dict:
    assert r.status == 503, r
    body = json.loads(r.body)
    assert body["error_code"] == 50003, body
    return body


def _partitions_in_broker(bootstrap: str, topic: str) -> int | None:
    md = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=10)
    t = md.topics.get(topic)
    return None if t is None or t.error is not None else len(t.partitions)


def _consume(g: GatewayProcess, partition: int = 1) -> HttpResponse:
    return request(g.host, g.port, "GET", f"/topics/test/partitions/{partition}?offset=0", timeout=10)


def _produce_v1(g: GatewayProcess) -> HttpResponse:
    return request(g.host, g.port, "POST", "/topics/test/partitions/1",
                   b'{"records":[{"value":"aGVsbG8="}]}',
                   {"Content-Type": "application/vnd.kafka.binary.v1+json"}, timeout=10)


def test_a_killed_embedded_broker_is_seen_at_once_and_restarted_with_its_topics(tmp_path: Path) -> None:
    broker_port = find_free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    g = GatewayProcess(
        # librdkafka's default message timeout (30 s): records sent once the broker is back
        # must not wait for it (the producer the new broker knows nothing of is replaced).
        ["--embedded-broker", bootstrap, "--topic", "test:3", "--shutdown-timeout", "5"],
        tmp_path / "gateway.log",
    )
    try:
        with crash_checked(g):
            _wait_for("ready", lambda: _readyz(g).status == 200, 30)
            assert _produce_v1(g).status == 200
            r = _consume(g)
            assert r.status == 200 and len(json.loads(r.body)) == 1, r
            first = _broker_pid(g)

            s = PacedStream(g.host, g.port, "test", tag="through")  # 1,000 records/s
            try:
                assert s.status == 200
                s.wait_reports(200, timeout=REPORT_WAIT)
                os.kill(first, signal.SIGKILL)
                killed_at = time.monotonic()
                holder = _hold_port(broker_port)
                try:
                    # /readyz says 503 within a second of the exit, with the exit's signal.
                    assert _wait_for("/readyz 503", lambda: _readyz(g).status == 503, 1.0) < 1.0
                    assert "SIGKILL" in _assert_503_50003(_readyz(g))["message"]
                    # What needs Kafka is refused at once, never a 404 for what exists.
                    for r in (_consume(g), _consume(g, 2), _produce_v1(g),
                              request(g.host, g.port, "POST", "/v3/clusters/local/topics/test/records",
                                      b'{"value":null}', {"Content-Type": "application/json"})):
                        _assert_503_50003(r)
                    # The exit is logged with its signal, and the broker reaped (no zombie).
                    _wait_for("the exit in the log",
                              lambda: f"the embedded broker (pid {first}) was killed by SIGKILL" in g.log(), 2)
                    _wait_for("the broker reaped", lambda: _state(first) is None, 2)
                    # The restart found the port taken and waits longer before the next try.
                    _wait_for("a failed restart", lambda: "next try in 1s" in g.log(), 5)
                    assert time.monotonic() - killed_at >= 0.5  # the first back-off
                    assert _readyz(g).status == 503
                finally:
                    holder.close()
                statuses: Counter[int] = Counter()

                def back() -> bool:
                    statuses[_consume(g).status] += 1
                    return _readyz(g).status == 200

                _wait_for("the broker back", back, 10)
                recovered_at = s.sent  # records from here on went to the new broker
                assert set(statuses) <= {200, 503}, statuses  # never 404 on the way back
                # The same port, a new process, the --topic topics as configured (not
                # auto-created by a client: Tansu would give them 4 partitions).
                second = _broker_pid(g)
                assert second != first
                assert f"the embedded broker is up again on {bootstrap} (pid {second})" in g.log()
                assert _partitions_in_broker(bootstrap, "test") == 3
                # The metadata cache learns the new broker's state (a refresh since the kill).

                def refreshed() -> bool:
                    age = g.metric("gateway_kafka_metadata_age_seconds")
                    return age is not None and age < time.monotonic() - killed_at

                _wait_for("the metadata refreshed", refreshed, 5)
                r = request(g.host, g.port, "GET", "/v3/clusters/local/topics/test")
                assert r.status == 200 and json.loads(r.body)["partitions_count"] == 3, r
                # The stream goes on: records sent now are acknowledged by the new broker (the
                # producer, whose idempotence state the new broker does not know, is replaced
                # when it comes back: records it held meanwhile get 50003), within seconds, not
                # after the 30 s message timeout.
                _wait_for("a record acknowledged after the restart",
                          lambda: any(r["error_code"] == 200 for r in s.reports[recovered_at:]), 10)
                assert "the embedded broker was restarted without its data" in g.log()
                time.sleep(0.5)
                reports = s.finish(REPORT_WAIT)  # nothing hangs: every record has its report
            finally:
                s.close()
            # One report per record, in order: 200 when the broker acknowledged it (before the
            # kill or after the restart), 50003 when it could not.
            assert len(reports) == s.sent
            codes = Counter(r["error_code"] for r in reports)
            assert set(codes) <= {200, 50003}, codes
            assert reports[-1]["error_code"] == 200, reports[-5:]
            landed = consume_all(bootstrap, "test", 3, at_least=1, idle=0.5)
            check_acknowledged([s], landed, since={s.tag: recovered_at})
            # A new stream is served as before the outage.
            fresh = PacedStream(g.host, g.port, "test", tag="after", batch=50, interval=0.01, limit=500)
            try:
                assert fresh.status == 200
                fresh.wait_reports(500, timeout=REPORT_WAIT)
                assert Counter(r["error_code"] for r in fresh.finish(REPORT_WAIT)) == {200: 500}
            finally:
                fresh.close()
            # The consumer pool did not flood the log while the broker was down (each idle
            # consumer would log ~10 failed connects a second).
            assert "rdkafka#consumer" not in g.log()
        assert g.terminate(30) == 0
        assert not _listening(broker_port), "the embedded broker outlived the gateway"
    finally:
        g.stop()


def _workers_said(g: GatewayProcess, text: str) -> set[str]:
    return set(re.findall(r"\[worker (\d+)\] [\w.]+: " + re.escape(text), g.log()))


def _on_fresh_connections(g: GatewayProcess, method: str, path: str, n: int = 20, **kw) -> list[HttpResponse]:
    """``n`` requests, each on a new connection: the kernel spreads them over the workers."""
    return [request(g.host, g.port, method, path, timeout=10, **kw) for _ in range(n)]


def test_workers_hear_of_the_embedded_broker_from_their_supervisor_and_die_with_it(tmp_path: Path) -> None:
    broker_port = find_free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    g = GatewayProcess(
        ["--workers", "2", "--embedded-broker", bootstrap, "--topic", "test:3", "--shutdown-timeout", "3"],
        tmp_path / "gateway.log",
    )
    try:
        with crash_checked(g):
            _wait_for("both workers listening",
                      lambda: _workers_said(g, "listening on") == {"0", "1"}, 30)
            _wait_for("ready", lambda: all(r.status == 200 for r in _on_fresh_connections(g, "GET", "/readyz")), 10)
            workers = [p for p in child_pids(g.pid) if process_name(p) != "tansu"]
            assert len(workers) == 2
            first = _broker_pid(g)  # the supervisor's child: it owns the broker

            os.kill(first, signal.SIGKILL)
            killed_at = time.monotonic()
            holder = _hold_port(broker_port)
            try:
                # Each worker hears of it from the supervisor within a second, and says 503.
                _wait_for("both workers told", lambda: _workers_said(g, "Kafka is unreachable") == {"0", "1"}, 1.0)
                assert time.monotonic() - killed_at < 1.0
                for r in _on_fresh_connections(g, "GET", "/readyz"):
                    assert "SIGKILL" in _assert_503_50003(r)["message"]
                for r in _on_fresh_connections(g, "GET", "/topics/test/partitions/0?offset=0", n=6):
                    _assert_503_50003(r)
                assert "the embedded broker (pid %d) was killed by SIGKILL" % first in g.log()
                _wait_for("the broker reaped", lambda: _state(first) is None, 2)
            finally:
                holder.close()
            # Restarted by the supervisor, topics and all; every worker is told and serves.
            _wait_for("both workers told it is back",
                      lambda: _workers_said(g, "Kafka is reachable again") == {"0", "1"}, 10)
            _wait_for("ready again",
                      lambda: all(r.status == 200 for r in _on_fresh_connections(g, "GET", "/readyz")), 10)
            assert _partitions_in_broker(bootstrap, "test") == 3
            for r in _on_fresh_connections(g, "POST", "/v3/clusters/local/topics/test/records",
                                           body=b'{"value":{"type":"STRING","data":"w"}}',
                                           headers={"Content-Type": "application/json"}):
                assert r.status == 200 and json.loads(r.body)["error_code"] == 200, r

            # The supervisor killed: nothing listens on the gateway's port within 2 s, the
            # broker is gone with it, the workers stop.
            os.kill(g.pid, signal.SIGKILL)
            _wait_for("the port let go of", lambda: not _listening(g.port), 2.0)
            _wait_for("the broker gone", lambda: not _listening(broker_port), 2.0)
            _wait_for("the workers stopped", lambda: not any(_running(p) for p in workers), 10)
            assert _workers_said(g, "the supervisor (pid %d) is gone" % g.pid) == {"0", "1"}
    finally:
        g.stop()


def test_workers_whose_supervisor_is_killed_let_go_of_the_port_and_finish_their_records(
    gateway_factory, topic_factory, broker
) -> None:
    g = gateway_factory("--workers", "2", "--shutdown-timeout", "5")
    topic = topic_factory(2)
    _wait_for("both workers listening", lambda: _workers_said(g, "listening on") == {"0", "1"}, 30)
    workers = child_pids(g.pid)
    assert len(workers) == 2
    s = PacedStream(g.host, g.port, topic, tag="orphaned")
    try:
        assert s.status == 200
        s.wait_reports(300, timeout=REPORT_WAIT)
        os.kill(g.pid, signal.SIGKILL)
        _wait_for("the port let go of", lambda: not _listening(g.port), 2.0)
        # The worker of the stream finishes what it read: reports, then the response's end.
        reports = s.finish(REPORT_WAIT, end=False)
    finally:
        s.close()
    _wait_for("the workers stopped", lambda: not any(_running(p) for p in workers), 10)
    # One report per record read, all acknowledged, then one last report: the stream was cut
    # (the gateway stopped reading it), from that byte on nothing was read.
    *records, last = reports
    assert 300 <= len(records) <= s.sent
    assert Counter(r["error_code"] for r in records) == {200: len(records)}
    assert last["error_code"] == 50003 and "the gateway is shutting down" in last["message"], last
    check_acknowledged([s], consume_all(broker.bootstrap, topic, 2, at_least=len(records), idle=0.5))
    with socket.socket() as sock:  # a new gateway could have the port alone (no SO_REUSEPORT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", g.port))
        sock.listen(1)
    g.assert_no_crash()
