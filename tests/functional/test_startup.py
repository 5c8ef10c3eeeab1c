"""Starting and stopping the real command (``python -m gateway``) with its embedded broker: an
address already in use stops the start with one line and exit status 2, leaving nothing
running; a SIGTERM stops every Kafka client before the broker, so nothing reports a lost
connection afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import ROOT, GatewayProcess
from support.http import request

from gateway.kafka.embedded import find_free_port

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line or environment contains ``text`` (a broker's listener
    URL, a worker's handed-over configuration)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if text.encode() in cmdline or text.encode() in environ:
            found.append(pid + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, to its end (it must not start)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )


def assert_nothing_left(*ports: int) -> None:
    for port in ports:
        # Nothing listens there (a broker or a worker of ours would).
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
        left = processes_mentioning(f"127.0.0.1:{port}")
        assert left == [], left


@pytest.mark.parametrize("workers", ["1", "2"])
def test_listen_port_in_use_is_one_line_and_exit_2(taken_port: int, workers: str) -> None:
    broker_port = find_free_port()
    p = run_gateway(
        "--listen", f"127.0.0.1:{taken_port}",
        "--embedded-broker", f"127.0.0.1:{broker_port}",
        "--workers", workers,
    )
    assert p.returncode == 2, p.stdout
    assert p.stdout.splitlines() == [
        f"kafka-gateway: cannot listen on 127.0.0.1:{taken_port} (--listen): address already in use"
    ]
    assert_nothing_left(broker_port)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_embedded_broker_port_in_use_is_one_line_and_exit_2(taken_port: int, workers: str) -> None:
    listen_port = find_free_port()
    p = run_gateway(
        "--listen", f"127.0.0.1:{listen_port}",
        "--embedded-broker", f"127.0.0.1:{taken_port}",
        "--workers", workers,
    )
    assert p.returncode == 2, p.stdout
    assert p.stdout.splitlines() == [
        f"kafka-gateway: cannot start the embedded broker on 127.0.0.1:{taken_port} "
        "(--embedded-broker): address already in use"
    ]
    assert "Traceback" not in p.stdout and "panic" not in p.stdout
    assert_nothing_left(listen_port)
    assert processes_mentioning(f"tcp://127.0.0.1:{taken_port}") == []


def test_a_configured_listen_port_in_use_with_a_cluster_given(taken_port: int, broker) -> None:
    """Without the embedded broker too: the same line, nothing else."""
    p = run_gateway("--listen", f"127.0.0.1:{taken_port}", "--bootstrap-servers", broker.bootstrap)
    assert p.returncode == 2
    assert p.stdout == (
        f"kafka-gateway: cannot listen on 127.0.0.1:{taken_port} (--listen): address already in use\n"
    )


CONNECTION_TROUBLE = ("Connect to", "refused", "Disconnected", "Connection", "FAIL")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_stops_every_kafka_client_before_the_embedded_broker(
    tmp_path: Path, workers: str
) -> None:
    broker_port = find_free_port()
    g = GatewayProcess(
        ["--embedded-broker", f"127.0.0.1:{broker_port}", "--topic", "stop-order:2",
         "--workers", workers],
        tmp_path / "gateway.log",
        # The embedded broker, not a test broker: no GATEWAY_ setting of the runner's.
        {k: "" for k in os.environ if k.startswith("GATEWAY_")},
    )
    try:
        g.wait_for_log("listening on", int(workers))  # every worker has its clients
        r = request(
            g.host, g.port, "POST", "/v3/clusters/c/topics/stop-order/records",
            b'{"value":{"type":"STRING","data":"one"}}', {"Content-Type": "application/json"},
        )
        assert r.status == 200 and r.json()["error_code"] == 200, r
        # The metadata client and the consumers have their own connections: use them too.
        assert request(g.host, g.port, "GET", "/topics/stop-order").status == 200
        consumed = request(g.host, g.port, "GET", "/topics/stop-order/partitions/0?offset=0")
        assert consumed.status == 200, consumed
    finally:
        code = g.terminate()
    log = g.log()
    assert code == 0, log
    lines = log.splitlines()
    stopped = [i for i, line in enumerate(lines) if "embedded broker stopped" in line]
    assert stopped, log
    after = lines[stopped[-1] + 1:]
    assert [line for line in after if any(t in line for t in CONNECTION_TROUBLE)] == [], log
    g.assert_no_crash()
    assert_nothing_left(broker_port, g.port)
