"""The gateway with TLS on (``--tls-cert``), as a real process: its start-up line says https://,
HTTPS is served, and plain HTTP sent to the TLS port gets a 400 answer (curl and a raw socket),
also with ``--workers``."""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from support.http import request
from support.tls import ThrowawayCA

pytestmark = pytest.mark.timeout(120)

PLAIN_HTTP_BODY = {
    "error_code": 400,
    "message": "plain HTTP request sent to the TLS port: use https://",
}


@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCA:
    return ThrowawayCA(tmp_path)


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def split_response(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("workers", ["1", "2"])
def test_plain_http_to_the_tls_port_is_answered_400(gateway_factory, ca, workers: str) -> None:
    server = ca.issue_server()
    g = gateway_factory(
        "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--workers", workers
    )
    g.wait_for_log(re.escape(f"listening on https://127.0.0.1:{g.port} "), int(workers))
    assert "listening on http://" not in g.log()
    # curl, as a user who forgot the s in https
    p = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "20", f"http://127.0.0.1:{g.port}/healthz"],
        capture_output=True, timeout=30,
    )
    assert p.returncode == 0, p.stderr
    status, headers, body = split_response(p.stdout)
    assert status == "HTTP/1.1 400 Bad Request"
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    assert json.loads(body) == PLAIN_HTTP_BODY
    # A raw socket with a request body: the answer is read whole, not cut by a reset.
    with socket.create_connection((g.host, g.port), timeout=20) as sock:
        sock.sendall(
            b"POST /v3/clusters/c/topics/t/records HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 30000\r\n\r\n" + b" " * 30000
        )
        status, headers, body = split_response(read_to_end(sock))
    assert status == "HTTP/1.1 400 Bad Request" and headers["connection"] == "close"
    assert json.loads(body) == PLAIN_HTTP_BODY
    # HTTPS on the same port, after that
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    r = request(g.host, g.port, "GET", "/healthz", ssl_context=ctx)
    assert (r.status, r.json()) == (200, {"status": "ok"})


def test_a_tls_connection_that_sends_nothing_is_closed(gateway_factory, ca) -> None:
    """Within --header-timeout, as a plain connection that sends no request head is."""
    server = ca.issue_server()
    g = gateway_factory(
        "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--header-timeout", "1"
    )
    with socket.create_connection((g.host, g.port), timeout=30) as sock:
        assert sock.recv(1) == b""
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    assert request(g.host, g.port, "GET", "/healthz", ssl_context=ctx).status == 200
