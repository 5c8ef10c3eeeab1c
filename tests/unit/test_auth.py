"""Authentication and authorization below HTTP: the users file and its argon2 hashes, Basic
credentials, the verification cache and its bounds, the ACL, the client-certificate
principal, the security settings, and ``kafka-gateway passwd``."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop
from argon2 import PasswordHasher

from gateway import errors
from gateway.auth.acl import ANY, CONSUME, GROUP, PRODUCE, Acl, parse_acl
from gateway.auth.authenticator import Authenticator, TtlCache, parse_basic
from gateway.auth.passwd import main as passwd_main
from gateway.auth.tls import cert_principal
from gateway.auth.users import Users, hash_password, parse_users
from gateway.cli import config_from_args
from gateway.config import Config
from gateway.config_sources import check_security as validate_security
from gateway.errors import ConfigError
from gateway.http.parser import RequestHead

# Cheap argon2id parameters for tests that are not about the cost (1 pass, 64 KiB).
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


def cheap_hash(password: str) -> str:
    return hash_password(password, CHEAP)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def head(*headers: tuple[str, str]) -> RequestHead:
    return RequestHead("GET", "/topics", "/topics", "", 11, list(headers), None, False, True, False, None)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = uvloop.new_event_loop()
    yield lp
    lp.close()


# -- users file and hashes ----------------------------------------------------------------------
def test_users_file_parses_names_and_hashes_and_skips_comments() -> None:
    h1, h2 = cheap_hash("a"), cheap_hash("b")
    text = f"# users\n\nalice:{h1}\n  bob:{h2}  \n"
    assert parse_users(text) == {"alice": h1, "bob": h2}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("alice", "expected NAME:HASH"),
        (":$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "user name is empty"),
        ("alice:secret", "not an argon2 hash"),
        ("alice:$argon2id$garbage", "malformed"),
    ],
)
def test_users_file_errors_name_the_line(line: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"users\.txt:3: .*{problem}"):
        parse_users(f"# c\n\n{line}\n", "users.txt")


def test_users_file_refuses_a_duplicate_user() -> None:
    h = cheap_hash("a")
    with pytest.raises(ConfigError, match="users.txt:2: user 'alice' appears twice"):
        parse_users(f"alice:{h}\nalice:{h}\n", "users.txt")


def test_default_hash_is_salted_argon2id() -> None:
    a, b = hash_password("same"), hash_password("same")
    assert a.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert a != b  # a random salt per hash
    users = Users({"alice": a})
    assert users.verify("alice", b"same")
    assert not users.verify("alice", b"Same")


def test_users_verify_right_wrong_and_unknown() -> None:
    users = Users({"alice": cheap_hash("pässword")})
    assert users.verify("alice", "pässword".encode())  # RFC 7617: UTF-8
    assert not users.verify("alice", b"password")
    assert not users.verify("alice", b"")
    assert not users.verify("mallory", "pässword".encode())


# -- Basic credentials ----------------------------------------------------------------------------
def test_parse_basic() -> None:
    assert parse_basic(basic("alice", "s:e:c")) == ("alice", b"s:e:c")  # the first ':' splits
    assert parse_basic("bAsIc " + base64.b64encode(b"bob:").decode()) == ("bob", b"")
    for bad, why in [
        ("Bearer abc", "unsupported authentication scheme"),
        ("Basic !!!", "not base64"),
        ("Basic " + base64.b64encode(b"nocolon").decode(), "no ':'"),
        ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), "not UTF-8"),
        ("Basic", "not base64|no ':'"),
    ]:
        with pytest.raises(errors.Unauthorized, match=why) as info:
            parse_basic(bad)
        assert (info.value.status, info.value.error_code) == (401, 40101)


# -- the cache --------------------------------------------------------------------------------------
def test_ttl_cache_expires_and_evicts_least_recently_used() -> None:
    now = [0.0]
    c: TtlCache[str, int] = TtlCache(2, 10.0, lambda: now[0])
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recently used
    c.put("c", 3)
    assert (c.get("a"), c.get("b"), c.get("c")) == (1, None, 3)
    now[0] = 9.9
    assert c.get("a") == 1
    now[0] = 10.0
    assert c.get("a") is None and len(c) == 1


class CountingVerifier:
    """Users stand-in: counts verifications; ``gate`` holds them until set."""

    def __init__(self, passwords: dict[str, bytes], delay: float = 0.0) -> None:
        self.passwords = passwords
        self.calls = 0
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def verify(self, name: str, password: bytes) -> bool:
        self.calls += 1
        self.gate.wait(10)
        if self.delay:
            time.sleep(self.delay)
        return self.passwords.get(name) == password


def resolve(loop: asyncio.AbstractEventLoop, outcome: object) -> object:
    if isinstance(outcome, asyncio.Future):
        return loop.run_until_complete(outcome)
    return outcome


def test_success_is_cached_and_failure_never_counts_as_success(loop) -> None:
    now = [0.0]
    v = CountingVerifier({"alice": b"right"})
    auth = Authenticator(v, None, loop, cache_ttl=60.0, failure_ttl=5.0, clock=lambda: now[0])
    good = head(("authorization", basic("alice", "right")))
    bad = head(("authorization", basic("alice", "wrong")))

    first = auth.authenticate(good, None)
    assert isinstance(first, asyncio.Future)  # verified off the loop
    assert resolve(loop, first) == "alice"
    assert auth.authenticate(good, None) == "alice"  # cached: no new verification
    assert v.calls == 1

    outcome = resolve(loop, auth.authenticate(bad, None))
    assert isinstance(outcome, errors.Unauthorized)
    assert v.calls == 2
    with pytest.raises(errors.Unauthorized, match="wrong user name or password"):
        auth.authenticate(bad, None)  # the failure is remembered as a failure
    assert v.calls == 2
    now[0] = 5.0  # failure remembered no longer: verified again, and still refused
    assert isinstance(resolve(loop, auth.authenticate(bad, None)), errors.Unauthorized)
    assert v.calls == 3
    assert auth.authenticate(good, None) == "alice"
    now[0] = 60.0  # the success expired: verified again
    assert resolve(loop, auth.authenticate(good, None)) == "alice"
    assert v.calls == 4
    auth.close()


def test_concurrent_requests_with_the_same_credentials_share_one_verification(loop) -> None:
    v = CountingVerifier({"alice": b"pw"})
    v.gate.clear()
    auth = Authenticator(v, None, loop)
    h = head(("authorization", basic("alice", "pw")))
    futures = [auth.authenticate(h, None) for _ in range(20)]
    assert all(f is futures[0] for f in futures)
    v.gate.set()
    assert resolve(loop, futures[0]) == "alice"
    assert v.calls == 1
    auth.close()


def test_verifications_in_progress_are_bounded(loop) -> None:
    v = CountingVerifier({"u0": b"pw", "u1": b"pw", "u2": b"pw"})
    v.gate.clear()
    auth = Authenticator(v, None, loop, max_pending=2)
    f0 = auth.authenticate(head(("authorization", basic("u0", "pw"))), None)
    f1 = auth.authenticate(head(("authorization", basic("u1", "pw"))), None)
    with pytest.raises(errors.AuthBusy) as info:
        auth.authenticate(head(("authorization", basic("u2", "pw"))), None)
    assert (info.value.status, info.value.error_code) == (503, 50003)
    # Credentials already cached are not affected by the saturation.
    v.gate.set()
    assert resolve(loop, f0) == "u0" and resolve(loop, f1) == "u1"
    assert resolve(loop, auth.authenticate(head(("authorization", basic("u2", "pw"))), None)) == "u2"
    auth.close()


def test_credentials_certificates_and_precedence(loop) -> None:
    v = CountingVerifier({"alice": b"pw"})
    auth = Authenticator(v, None, loop, cert_auth=True)
    with pytest.raises(errors.Unauthorized, match="send HTTP Basic credentials"):
        auth.authenticate(head(), None)
    assert auth.authenticate(head(), "writer") == "writer"  # the certificate's CN
    # Basic, when sent, decides: right ones name their user, wrong ones are a 401 even with
    # a valid certificate.
    assert resolve(loop, auth.authenticate(head(("authorization", basic("alice", "pw"))), "writer")) == "alice"
    wrong = auth.authenticate(head(("authorization", basic("alice", "no"))), "writer")
    assert isinstance(resolve(loop, wrong), errors.Unauthorized)
    with pytest.raises(errors.Unauthorized, match="more than one Authorization header"):
        auth.authenticate(
            head(("authorization", basic("alice", "pw")), ("authorization", basic("alice", "pw"))), None
        )
    auth.close()
    # Certificates only (no users file): an Authorization header is not a way in.
    certs_only = Authenticator(None, None, loop, cert_auth=True)
    assert certs_only.challenge == b""
    with pytest.raises(errors.Unauthorized, match="client certificate is required"):
        certs_only.authenticate(head(("authorization", basic("alice", "pw"))), None)
    assert certs_only.authenticate(head(("authorization", basic("alice", "pw"))), "bob") == "bob"


def test_the_loop_keeps_running_while_real_hashes_are_verified(loop) -> None:
    users = Users({"alice": hash_password("pw")})  # the default cost: ~0.1 s of CPU each
    auth = Authenticator(users, None, loop)
    lags: list[float] = []

    async def run() -> list[object]:
        futures = [
            auth.authenticate(head(("authorization", basic("alice", f"guess{i}"))), None)
            for i in range(6)
        ]
        t0 = time.perf_counter()
        pending = asyncio.ensure_future(asyncio.gather(*futures))  # type: ignore[arg-type]
        while not pending.done():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)
        assert time.perf_counter() - t0 > 0.15  # the hashes did take time
        return await pending

    outcomes = loop.run_until_complete(run())
    assert all(isinstance(o, errors.Unauthorized) for o in outcomes)
    assert len(lags) > 20
    lags.sort()
    # A verification run on the loop would stall it ~0.1 s each time.
    assert lags[len(lags) // 2] < 0.03, lags
    auth.close()


# -- ACL --------------------------------------------------------------------------------------------
ACL_TEXT = """
# principal operation pattern
alice   produce  orders.*
alice   consume  orders.eu
bob     all      logs-[ab]?
*       consume  public-*
ops     all      *
"""


def test_acl_matching() -> None:
    acl = Acl(parse_acl(ACL_TEXT))
    assert acl.allows("alice", PRODUCE, "orders.us")
    assert not acl.allows("alice", CONSUME, "orders.us")
    assert acl.allows("alice", CONSUME, "orders.eu")
    assert not acl.allows("alice", PRODUCE, "orders")  # "orders.*" needs the dot
    assert not acl.allows("alice", PRODUCE, "Orders.us")  # case-sensitive
    assert acl.allows("bob", PRODUCE, "logs-a1") and acl.allows("bob", CONSUME, "logs-b2")
    assert not acl.allows("bob", PRODUCE, "logs-c1") and not acl.allows("bob", PRODUCE, "logs-a12")
    assert acl.allows("carol", CONSUME, "public-news")  # "*": any authenticated principal
    assert not acl.allows("carol", PRODUCE, "public-news")
    assert acl.allows("ops", PRODUCE, "anything") and acl.allows("ops", CONSUME, "x")
    assert not acl.allows("mallory", PRODUCE, "orders.us")  # deny by default
    assert acl.allows("alice", ANY, "orders.us") and not acl.allows("carol", ANY, "orders.us")
    # The same questions again come from the decision table, with the same answers.
    assert acl.allows("alice", PRODUCE, "orders.us") and not acl.allows("mallory", PRODUCE, "orders.us")


def test_acl_group_rules_name_consumer_groups() -> None:
    acl = Acl(parse_acl("bob group billing-*\nbob consume orders.eu\nops all *\n* consume public-*\n"))
    assert acl.allows("bob", GROUP, "billing-1")
    assert not acl.allows("bob", GROUP, "orders.eu")  # a topic rule is not a group rule
    assert not acl.allows("bob", CONSUME, "billing-1")  # nor the other way round
    assert not acl.allows("bob", ANY, "billing-1")  # a group rule gives no topic metadata
    assert acl.allows("ops", GROUP, "anything")  # "all" is produce, consume and group
    # A topic pattern subscription needs consume on every topic: a rule with the pattern *.
    assert acl.allows_every("ops", CONSUME) and not acl.allows_every("bob", CONSUME)
    assert not acl.allows_every("carol", CONSUME)  # "* consume public-*" is not every topic
    assert Acl(parse_acl("* consume *\n")).allows_every("carol", CONSUME)


def test_acl_decision_table_is_bounded(monkeypatch) -> None:
    import gateway.auth.acl as acl_mod

    monkeypatch.setattr(acl_mod, "DECISION_CACHE_SIZE", 10)
    acl = Acl(parse_acl("* produce t-*"))
    for i in range(100):
        assert acl.allows(f"user{i}", PRODUCE, f"t-{i}")
        assert not acl.allows(f"user{i}", CONSUME, f"t-{i}")
    assert len(acl._decisions) <= 10


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice produce", "expected PRINCIPAL OPERATION PATTERN"),
        ("alice produce a b", "expected PRINCIPAL OPERATION PATTERN"),
        ("alice write orders", "unknown operation 'write' \\(produce, consume, group or all\\)"),
    ],
)
def test_acl_errors_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"acl:2: {problem}"):
        parse_acl("# x\n" + text, "acl")


def test_without_an_acl_every_authenticated_principal_may_do_everything(loop) -> None:
    auth = Authenticator(CountingVerifier({}), None, loop)
    assert auth.allows("anyone", PRODUCE, "t") and auth.allows("anyone", CONSUME, "t")


# -- client certificates ----------------------------------------------------------------------------
def test_certificate_principal_is_the_subject_cn() -> None:
    cert = {
        "subject": ((("organizationName", "Acme"),), (("commonName", "orders-writer"),)),
        "issuer": ((("commonName", "CA"),),),
    }
    assert cert_principal(cert) == "orders-writer"
    assert cert_principal({"subject": ((("organizationName", "Acme"),),)}) is None
    assert cert_principal({}) is None  # no verified certificate
    assert cert_principal(None) is None


# -- settings -----------------------------------------------------------------------------------
@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    p = tmp_path / "users"
    p.write_text(f"alice:{cheap_hash('pw')}\n")
    p.chmod(0o600)
    return p


def test_security_flags_and_environment(tmp_path: Path, users_file: Path, monkeypatch) -> None:
    acl = tmp_path / "acl"
    acl.write_text("alice all *\n")
    cfg = config_from_args(["--users-file", str(users_file), "--acl-file", str(acl)])
    assert (cfg.users_file, cfg.acl_file, cfg.tls_cert) == (str(users_file), str(acl), None)
    monkeypatch.setenv("GATEWAY_USERS_FILE", str(users_file))
    monkeypatch.setenv("GATEWAY_ACL_FILE", str(acl))
    cfg = config_from_args([])
    assert (cfg.users_file, cfg.acl_file) == (str(users_file), str(acl))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"acl_file": "acl"}, "--acl-file needs authentication"),
        ({"tls_key": "k"}, "--tls-key needs --tls-cert"),
        ({"tls_client_ca": "ca"}, "--tls-client-ca needs --tls-cert"),
        ({"tls_require_client_cert": True}, "--tls-require-client-cert needs --tls-client-ca"),
        ({"users_file": "/nonexistent/users"}, "--users-file: cannot read /nonexistent/users"),
        ({"tls_cert": "/nonexistent/cert.pem"}, "--tls-cert/--tls-key: cannot load /nonexistent/cert.pem"),
    ],
)
def test_invalid_security_settings_fail_at_start(settings: dict, message: str) -> None:
    cfg = Config(**settings)
    with pytest.raises(ConfigError, match=message):
        validate_security(cfg)


def test_a_bad_users_file_stops_the_command_with_a_clear_message(tmp_path: Path, capsys) -> None:
    from gateway.cli import main

    bad = tmp_path / "users"
    bad.write_text("alice:plaintext\n")
    assert main(["--users-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {bad}:1: the hash of 'alice' is not an argon2 hash" in err


# -- kafka-gateway passwd ----------------------------------------------------------------------------
def run_passwd(args: list[str], stdin: str, monkeypatch) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return passwd_main(args)


def test_passwd_prints_a_line_that_verifies(monkeypatch, capsys) -> None:
    assert run_passwd(["alice"], "s3cret pass\n", monkeypatch) == 0
    line = capsys.readouterr().out.strip()
    users = Users(parse_users(line))
    assert users.verify("alice", b"s3cret pass")
    assert not users.verify("alice", b"s3cret pass\n")


def test_passwd_creates_updates_and_deletes_entries(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "users"
    assert run_passwd(["alice", "--users-file", str(path)], "one\n", monkeypatch) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_text("# team\n" + path.read_text())
    assert run_passwd(["bob", "--users-file", str(path)], "two\n", monkeypatch) == 0
    assert run_passwd(["alice", "--users-file", str(path)], "three\n", monkeypatch) == 0
    text = path.read_text()
    assert text.startswith("# team\nalice:")
    users = Users(parse_users(text))
    assert len(users) == 2
    assert users.verify("alice", b"three") and not users.verify("alice", b"one")
    assert users.verify("bob", b"two")
    assert run_passwd(["bob", "--users-file", str(path), "--delete"], "", monkeypatch) == 0
    assert list(parse_users(path.read_text())) == ["alice"]
    assert run_passwd(["bob", "--users-file", str(path), "--delete"], "", monkeypatch) == 2
    assert "user 'bob' is not in" in capsys.readouterr().err


def test_passwd_refuses_bad_names_and_empty_passwords(monkeypatch, capsys) -> None:
    assert run_passwd(["a:b"], "pw\n", monkeypatch) == 2
    assert "cannot contain ':'" in capsys.readouterr().err
    assert run_passwd(["alice"], "\n", monkeypatch) == 2
    assert "empty password" in capsys.readouterr().err


def test_passwd_is_a_subcommand_of_the_gateway_command(monkeypatch, capsys) -> None:
    from gateway.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("pw\n"))
    assert main(["passwd", "carol"]) == 0
    assert Users(parse_users(capsys.readouterr().out)).verify("carol", b"pw")


# -- the API's dispatch: what is answered before any endpoint runs ----------------------------------
class FakeConn:
    """The part of HttpProtocol the dispatch uses; records the answer."""

    def __init__(self, req: RequestHead) -> None:
        self.head = req
        self.gone = False
        self.endpoint = "-"
        self.peer_cert = None
        self.principal: str | None = None
        self.deferred = False
        self.answers: list[tuple[int, bytes, bytes]] = []

    def defer(self) -> None:
        self.deferred = True

    def later(self, callback: Callable[..., None]) -> Callable[..., None]:
        return callback  # (HttpProtocol's wraps it: a fault it raises is answered 500)

    def pending(self, head: RequestHead) -> bool:
        return head is self.head and not self.gone and not self.answers

    def respond(self, status: int, body: bytes, *, extra_headers: bytes = b"", **_: object) -> None:
        self.answers.append((status, body, extra_headers))

    def respond_error(self, exc: errors.GatewayError) -> None:
        self.respond(exc.status, exc.body())


def request_head(method: str, path: str, *headers: tuple[str, str]) -> RequestHead:
    return RequestHead(method, path, path, "", 11, list(headers), None, False, True, False, None)


@pytest.fixture
def server(loop) -> Iterator[object]:
    """The API's dispatch, with no Kafka behind it (nothing here may reach an endpoint that
    needs one)."""
    from gateway.api.context import ApiContext
    from gateway.api.dispatch import Api

    ctx = ApiContext(Config(), loop, producer=None, metadata=None)  # type: ignore[arg-type]
    api = Api(ctx)
    yield api
    if ctx.auth is not None:
        ctx.auth.close()


def test_dispatch_refuses_before_the_endpoint_runs(server, loop) -> None:
    v = CountingVerifier({"alice": b"pw", "bob": b"pw"})
    server.ctx.auth = Authenticator(v, Acl(parse_acl("alice produce t")), loop, max_pending=1)
    produce_path = "/v3/clusters/c/topics/t/records"

    conn = FakeConn(request_head("POST", produce_path))
    server.dispatch(conn, conn.head)
    ((status, body, extra),) = conn.answers
    assert (status, extra) == (401, b'WWW-Authenticate: Basic realm="kafka-gateway", charset="UTF-8"\r\n')
    assert body == b'{"error_code":40101,"message":"authentication required: send HTTP Basic credentials"}'
    assert conn.endpoint == "produce_v3"  # counted under its endpoint in the metrics

    # Uncached credentials: deferred (nothing is read) until the thread pool has verified them.
    v.gate.clear()
    bob = FakeConn(request_head("POST", produce_path, ("authorization", basic("bob", "pw"))))
    server.dispatch(bob, bob.head)
    assert bob.deferred and bob.answers == []
    # Saturated (max_pending=1): 503 with Retry-After, at once.
    busy = FakeConn(request_head("POST", produce_path, ("authorization", basic("alice", "pw"))))
    server.dispatch(busy, busy.head)
    assert [(s, e) for s, _, e in busy.answers] == [(503, b"Retry-After: 1\r\n")]
    assert json_loads(busy.answers[0][1])["error_code"] == 50003
    v.gate.set()
    loop.run_until_complete(asyncio.sleep(0.2))
    ((status, body, _),) = bob.answers
    assert (status, bob.principal) == (403, "bob")
    assert body == b'{"error_code":40301,"message":"bob may not produce to topic t"}'

    # The open paths answer without credentials; a method not allowed needs them first.
    for path in ("/healthz", "/"):
        ok = FakeConn(request_head("GET", path))
        server.dispatch(ok, ok.head)
        assert ok.answers[0][0] == 200
    post = FakeConn(request_head("POST", "/topics"))
    server.dispatch(post, post.head)
    assert post.answers[0][0] == 401


def test_a_client_gone_during_verification_gets_nothing_written(server, loop) -> None:
    v = CountingVerifier({"alice": b"pw"})
    v.gate.clear()
    server.ctx.auth = Authenticator(v, None, loop)
    conn = FakeConn(request_head("GET", "/brokers", ("authorization", basic("alice", "pw"))))
    server.dispatch(conn, conn.head)
    conn.gone = True
    v.gate.set()
    loop.run_until_complete(asyncio.sleep(0.2))
    assert conn.answers == [] and v.calls == 1


def json_loads(body: bytes) -> dict:
    import json

    return json.loads(body)
