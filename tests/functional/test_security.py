"""Authentication, authorization and TLS through the real gateway process and the real
broker: what a client observes (README "Security"; docs/api.md §1: 401 and 403 come before
anything else, and before any record is read)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from support.http import Conn, HttpResponse, ProduceStream, build_request, request
from support.kafka import consume_topic
from support.tls import Issued, ThrowawayCA

from gateway.auth.users import hash_password

# Cheap argon2id parameters where the cost is not what is tested (the gateway verifies any).
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
RECORD = b'{"value":{"type":"STRING","data":"secret payload"}}'
V1 = "application/vnd.kafka.binary.v1+json"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def write_users(path: Path, users: dict[str, str], hasher: PasswordHasher = CHEAP) -> str:
    path.write_text("".join(f"{u}:{hash_password(p, hasher)}\n" for u, p in users.items()))
    path.chmod(0o600)
    return str(path)


def produce(g: Any, topic: str, headers: dict[str, str] | None = None, body: bytes = RECORD,
            ctx: ssl.SSLContext | None = None) -> HttpResponse:
    h = {"Content-Type": "application/json", **(headers or {})}
    return request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records", body, h,
                   ssl_context=ctx)


def get(g: Any, path: str, headers: dict[str, str] | None = None,
        ctx: ssl.SSLContext | None = None) -> HttpResponse:
    return request(g.host, g.port, "GET", path, None, headers, ssl_context=ctx)


def assert_401(r: HttpResponse, challenge: bool = True) -> None:
    assert r.status == 401, r
    assert r.json()["error_code"] == 40101 and r.json()["message"]
    if challenge:
        assert r.header("www-authenticate") == 'Basic realm="kafka-gateway", charset="UTF-8"'


def assert_403(r: HttpResponse) -> None:
    assert r.status == 403, r
    assert r.json()["error_code"] == 40301 and r.json()["message"]


def assert_empty(g: Any, topic: str, partitions: int = 1) -> None:
    got = consume_topic(g.bootstrap, topic, partitions, 0, quiet_period=0.5)
    assert all(not recs for recs in got.values()), got


def stream_refused(g: Any, topic: str, headers: dict[str, str]) -> int:
    """A chunked v3 stream that sends records right away: the status it gets instead of the
    200 (its error body checked), after which the gateway closes without reading them."""
    with ProduceStream(g.host, g.port, topic, extra_headers=headers, timeout=15) as s:
        s.send(RECORD * 10)
        status = s.read_status()
        length = int(dict(s.headers)["content-length"])
        body = json.loads(s.conn.read_exact(length, time.monotonic() + 10))
        assert body["error_code"] == {401: 40101, 403: 40301}.get(status), (status, body)
        assert dict(s.headers).get("connection") == "close"
        assert s.conn.is_closed_by_peer()
        return status


# -- HTTP Basic -----------------------------------------------------------------------------------
def test_no_or_wrong_credentials_get_401_and_nothing_reaches_kafka(
    gateway_factory, topic_factory, tmp_path
) -> None:
    g = gateway_factory("--users-file", write_users(tmp_path / "users", {"alice": "right"}))
    topic = topic_factory(1)
    assert_401(produce(g, topic))
    assert_401(produce(g, topic, basic("alice", "wrong")))
    assert_401(produce(g, topic, basic("mallory", "right")))
    assert_401(produce(g, topic, {"Authorization": "Basic not-base64!"}))
    assert_401(produce(g, topic, {"Authorization": "Bearer abc"}))
    assert stream_refused(g, topic, {}) == 401
    assert stream_refused(g, topic, basic("alice", "wrong")) == 401
    v1 = json.dumps({"records": [{"value": base64.b64encode(b"x").decode()}]}).encode()
    assert_401(request(g.host, g.port, "POST", f"/topics/{topic}", v1, {"Content-Type": V1}))
    batch = json.dumps({"entries": [{"id": "a", "value": {"type": "STRING", "data": "x"}}]}).encode()
    assert_401(request(g.host, g.port, "POST", f"/v3/clusters/c/topics/{topic}/records:batch", batch,
                       {"Content-Type": "application/json", **basic("alice", "wrong")}))
    # Reads too: metadata and consume.
    assert_401(get(g, "/topics"))
    assert_401(get(g, f"/topics/{topic}/partitions/0?offset=0"))
    assert_401(get(g, "/v3/clusters"))
    assert_401(get(g, "/no/such/path"))  # 401 comes before 404 (docs/api.md §1)
    assert_empty(g, topic)

    # The right credentials: 200 and the records in the broker.
    r = produce(g, topic, basic("alice", "right"), RECORD * 3)
    assert r.status == 200, r
    assert [json.loads(x)["error_code"] for x in r.body.splitlines()] == [200, 200, 200]
    got = consume_topic(g.bootstrap, topic, 1, 3)
    assert [rec.value for rec in got[0]] == [b"secret payload"] * 3
    assert get(g, "/no/such/path", basic("alice", "right")).status == 404
    # The access log names the principal.
    g.wait_for_log(r'"POST /v3/clusters/c/topics/\S+/records" 200 .* user=alice')


def test_health_readiness_metrics_and_root_stay_open(gateway_factory, tmp_path) -> None:
    g = gateway_factory("--users-file", write_users(tmp_path / "users", {"alice": "pw"}))
    assert get(g, "/healthz").status == 200
    deadline = time.monotonic() + 10
    while get(g, "/readyz").status != 200:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.1)
    assert get(g, "/").body == b"{}"
    metrics = get(g, "/metrics")
    assert metrics.status == 200 and b"gateway_http_requests_total" in metrics.body


def test_keep_alive_requests_with_cached_credentials(gateway_factory, topic_factory, tmp_path) -> None:
    g = gateway_factory("--users-file", write_users(tmp_path / "users", {"alice": "pw"}))
    topic = topic_factory(1)
    with Conn(g.host, g.port) as c:
        for _ in range(50):
            c.send(build_request("POST", f"/v3/clusters/c/topics/{topic}/records", RECORD,
                                 {"Content-Type": "application/json", **basic("alice", "pw")}))
            r = c.read_response()
            assert r.status == 200 and json.loads(r.body)["error_code"] == 200
        # A 401 on a request without a body keeps the connection.
        c.send(build_request("GET", "/topics"))
        assert_401(c.read_response())
        c.send(build_request("GET", f"/topics/{topic}", headers=basic("alice", "pw")))
        assert c.read_response().status == 200
    assert sum(len(v) for v in consume_topic(g.bootstrap, topic, 1, 50).values()) == 50


# -- ACL --------------------------------------------------------------------------------------------
ACL = """
# who    what     topics
alice    produce  orders-*
bob      consume  orders-*
bob      group    audit-*
*        consume  public-*
"""


def test_acl_allows_and_denies_per_topic_and_operation(gateway_factory, topic_factory, tmp_path) -> None:
    users = write_users(tmp_path / "users", {"alice": "a", "bob": "b", "carol": "c"})
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    g = gateway_factory("--users-file", users, "--acl-file", str(acl))
    orders = topic_factory(1, prefix="orders")
    secret = topic_factory(1, prefix="secret")
    public = topic_factory(1, prefix="public")
    alice, bob, carol = basic("alice", "a"), basic("bob", "b"), basic("carol", "c")

    # Produce: alice to orders-* only; the others nowhere.
    assert produce(g, orders, alice).status == 200
    assert_403(produce(g, secret, alice))
    assert stream_refused(g, secret, alice) == 403
    assert_403(produce(g, orders, bob))
    assert_403(produce(g, public, carol))
    v1 = json.dumps({"records": [{"value": base64.b64encode(b"x").decode()}]}).encode()
    assert_403(request(g.host, g.port, "POST", f"/topics/{secret}", v1, {"Content-Type": V1, **alice}))
    # 403 before 404: a forbidden topic's existence is not revealed; an allowed one's is.
    assert_403(produce(g, "secret-missing", alice))
    missing = produce(g, "orders-missing", alice)
    assert (missing.status, missing.json()["error_code"]) == (404, 40401)

    # Consume: bob from orders-*, everyone from public-*, alice from nothing.
    r = get(g, f"/topics/{orders}/partitions/0?offset=0", bob)
    assert r.status == 200 and [base64.b64decode(x["value"]) for x in r.json()] == [b"secret payload"]
    assert_403(get(g, f"/topics/{orders}/partitions/0?offset=0", alice))
    assert_403(get(g, f"/consume/{orders}/partitions/0?offset=0", carol))
    assert get(g, f"/topics/{public}/partitions/0/messages?offset=0", carol).status == 200
    assert_403(get(g, f"/topics/{secret}/partitions/0?offset=0", bob))
    # Streaming consume (docs/api.md §13): the same permission.
    stream = f"/v3/clusters/local/topics/{orders}/records:stream?offset=earliest&max_records=1"
    assert_403(get(g, stream, alice))
    r = get(g, stream, bob)
    assert r.status == 200 and json.loads(r.body)["value"]["data"] == base64.b64encode(b"secret payload").decode()
    # A stream in a group also needs ``group`` on it: refused before its parameters are read
    # (this one's conflict, a 400, shows the ACL let it through).
    assert_403(get(g, f"/v3/clusters/local/topics/{orders}/records:stream?group=sales-1", bob))
    r = get(g, f"/v3/clusters/local/topics/{orders}/records:stream?group=audit-1&partitions=0", bob)
    assert r.status == 400 and "cannot be given with group" in r.json()["message"], r

    # Metadata: a topic's needs some permission on it; the listing shows only those.
    assert get(g, f"/topics/{orders}", alice).status == 200
    assert get(g, f"/topics/{orders}/partitions", bob).status == 200
    assert_403(get(g, f"/topics/{secret}", alice))
    assert_403(get(g, f"/topics/{secret}/partitions/0", alice))
    listed = get(g, "/topics", alice).json()
    assert orders in listed and public in listed and secret not in listed  # "*" rules count
    listed = get(g, "/topics", carol).json()
    assert public in listed and all(t.startswith("public-") for t in listed), listed
    assert get(g, "/brokers", carol).status == 200
    assert get(g, "/v3/clusters", carol).status == 200

    assert_empty(g, secret)
    assert_empty(g, public)
    assert len(consume_topic(g.bootstrap, orders, 1, 1, quiet_period=0.5)[0]) == 1


# -- verification off the event loop -----------------------------------------------------------------
def test_the_gateway_keeps_answering_while_passwords_are_verified(
    gateway_factory, topic_factory, tmp_path
) -> None:
    # An expensive hash (~0.3 s of CPU): verifying it on the event loop would stall everything.
    slow = PasswordHasher(time_cost=6, memory_cost=64 * 1024, parallelism=1)
    g = gateway_factory("--users-file", write_users(tmp_path / "users", {"alice": "pw"}, slow))
    topic = topic_factory(1)
    t0 = time.monotonic()
    assert produce(g, topic, basic("alice", "pw")).status == 200
    one_verification = time.monotonic() - t0

    results: list[int] = []

    def guess(i: int) -> None:
        results.append(produce(g, topic, basic("alice", f"guess-{i}")).status)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    latencies = []
    while any(t.is_alive() for t in threads):
        t1 = time.monotonic()
        assert get(g, "/healthz").status == 200
        latencies.append(time.monotonic() - t1)
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert results == [401] * 8
    assert len(latencies) >= 5
    latencies.sort()
    assert latencies[len(latencies) // 2] < min(0.1, one_verification / 2), (one_verification, latencies)
    # Cached credentials are answered at once, even while others are being verified.
    t1 = time.monotonic()
    assert produce(g, topic, basic("alice", "pw")).status == 200
    assert time.monotonic() - t1 < one_verification
    assert sum(len(v) for v in consume_topic(g.bootstrap, topic, 1, 2).values()) == 2


# -- TLS --------------------------------------------------------------------------------------------
@pytest.fixture
def ca(tmp_path: Path) -> ThrowawayCA:
    return ThrowawayCA(tmp_path)


def client_context(ca: ThrowawayCA, cert: Issued | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.files.cert))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def refused_by_tls(g: Any, ctx: ssl.SSLContext) -> bool:
    """True when no HTTP answer comes back over ``ctx`` (the handshake is refused; in TLS 1.3
    the client learns it on its first read)."""
    try:
        r = get(g, "/healthz", ctx=ctx)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    raise AssertionError(f"answered {r}")


def test_tls_roundtrip(gateway_factory, topic_factory, ca) -> None:
    server = ca.issue_server()
    g = gateway_factory("--tls-cert", str(server.cert), "--tls-key", str(server.key))
    topic = topic_factory(1)
    ctx = client_context(ca)
    with ProduceStream(g.host, g.port, topic, ssl_context=ctx) as s:
        assert s.read_status() == 200
        for i in range(5):
            s.send_records([{"value": {"type": "STRING", "data": f"tls {i}"}}])
            assert s.read_reports(1)[0]["error_code"] == 200
        s.end()
        assert s.read_rest() == []
        assert s.conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    got = consume_topic(g.bootstrap, topic, 1, 5)
    assert [r.value for r in got[0]] == [f"tls {i}".encode() for i in range(5)]
    assert get(g, "/healthz", ctx=ctx).status == 200
    # Plain HTTP to the TLS port is answered 400, and served nothing (tests/functional/
    # test_tls_plain_http.py has the details).
    with socket.create_connection((g.host, g.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = sock.recv(1024)
        assert data.startswith(b"HTTP/1.1 400 "), data


MTLS_ACL = """
writer   produce  t-*
reader   consume  t-*
"""


def test_client_certificate_cn_is_the_principal(gateway_factory, topic_factory, ca, tmp_path) -> None:
    server = ca.issue_server()
    acl = tmp_path / "acl"
    acl.write_text(MTLS_ACL)
    g = gateway_factory(
        "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--tls-client-ca", str(ca.files.cert), "--tls-require-client-cert",
        "--acl-file", str(acl),
    )
    topic = topic_factory(1, prefix="t")
    writer = client_context(ca, ca.issue_client("writer"))
    reader = client_context(ca, ca.issue_client("reader"))
    r = produce(g, topic, ctx=writer)
    assert r.status == 200 and json.loads(r.body)["error_code"] == 200
    assert_403(produce(g, topic, ctx=reader))
    r = get(g, f"/topics/{topic}/partitions/0?offset=0", ctx=reader)
    assert r.status == 200 and len(r.json()) == 1
    assert_403(get(g, f"/topics/{topic}/partitions/0?offset=0", ctx=writer))
    # No certificate, or one from another CA: no TLS connection at all.
    assert refused_by_tls(g, client_context(ca))
    (tmp_path / "other").mkdir()
    other = ThrowawayCA(tmp_path / "other", "Other CA")
    assert refused_by_tls(g, client_context(ca, other.issue_client("writer")))
    assert len(consume_topic(g.bootstrap, topic, 1, 1, quiet_period=0.5)[0]) == 1
    g.wait_for_log(r"200 .* user=writer")


def test_basic_credentials_take_precedence_over_an_optional_certificate(
    gateway_factory, topic_factory, ca, tmp_path
) -> None:
    server = ca.issue_server()
    acl = tmp_path / "acl"
    acl.write_text("alice produce t-*\nwriter produce t-*\n")
    g = gateway_factory(
        "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--tls-client-ca", str(ca.files.cert),  # optional client certificates
        "--users-file", write_users(tmp_path / "users", {"alice": "pw"}),
        "--acl-file", str(acl),
    )
    topic = topic_factory(1, prefix="t")
    anonymous = client_context(ca)
    writer = client_context(ca, ca.issue_client("writer"))
    stranger = client_context(ca, ca.issue_client("stranger"))
    assert_401(produce(g, topic, ctx=anonymous))
    assert produce(g, topic, basic("alice", "pw"), ctx=anonymous).status == 200
    assert produce(g, topic, ctx=writer).status == 200
    assert_403(produce(g, topic, ctx=stranger))
    assert produce(g, topic, basic("alice", "pw"), ctx=stranger).status == 200  # Basic wins
    assert_401(produce(g, topic, basic("alice", "wrong"), ctx=writer))  # even when wrong
    assert len(consume_topic(g.bootstrap, topic, 1, 3, quiet_period=0.5)[0]) == 3


def test_workers_serve_with_the_same_security(gateway_factory, topic_factory, ca, tmp_path) -> None:
    server = ca.issue_server()
    g = gateway_factory(
        "--workers", "2", "--tls-cert", str(server.cert), "--tls-key", str(server.key),
        "--users-file", write_users(tmp_path / "users", {"alice": "pw"}),
    )
    topic = topic_factory(1)
    ctx = client_context(ca)
    deadline = time.monotonic() + 30
    sent = 0
    while not ("[worker 0] gateway.access: " in g.log() and "[worker 1] gateway.access: " in g.log()):
        assert time.monotonic() < deadline, g.log()[-3000:]
        try:
            r = produce(g, topic, ctx=ctx)
        except OSError:
            time.sleep(0.1)  # a worker still starting
            continue
        assert_401(r)
        assert produce(g, topic, basic("alice", "pw"), ctx=ctx).status == 200
        sent += 1
    assert len(consume_topic(g.bootstrap, topic, 1, sent, quiet_period=0.5)[0]) == sent
