"""Who is asking (HTTP Basic or the TLS client certificate) and what they may do (the ACL),
decided on the event loop without blocking it.

A password is verified against its slow hash on a small thread pool; the event loop only
waits for the answer (the request is deferred, nothing of its body is read). A successful
verification is cached, keyed by a keyed digest of the whole ``Authorization`` value, for
``CACHE_TTL`` seconds in a bounded LRU table: a client's next requests cost a digest and a
lookup. A failed one is cached as a failure (never as a success) for a shorter time, so a
client retrying wrong credentials in a loop does not keep a thread busy. Concurrent requests
with the same uncached credentials share one verification. At most ``MAX_PENDING``
different verifications run or wait at once; beyond that the request is answered 503/50003
with ``Retry-After`` (the gateway is busy, not the client at fault: 429 would blame it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from gateway import errors
from gateway.auth.acl import Acl

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.http.parser import RequestHead

log = logging.getLogger("gateway.auth")

VERIFY_THREADS = 2  # each verification takes a core and the hash's memory (64 MiB by default)
MAX_PENDING = 32  # different verifications running or queued; more: 503 + Retry-After
CACHE_SIZE = 10_000  # successful credentials remembered
CACHE_TTL = 300.0  # seconds a successful verification is trusted without verifying again
FAILURE_CACHE_SIZE = 10_000
FAILURE_TTL = 10.0  # seconds the same wrong credentials are refused without verifying
REALM = "kafka-gateway"
CHALLENGE = f'WWW-Authenticate: Basic realm="{REALM}", charset="UTF-8"\r\n'.encode()
RETRY_AFTER = b"Retry-After: 1\r\n"

K = TypeVar("K")
V = TypeVar("V")


class PasswordVerifier(Protocol):
    def verify(self, name: str, password: bytes) -> bool: ...


class TtlCache(Generic[K, V]):
    """A bounded LRU table whose entries expire ``ttl`` seconds after they were put."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (value, self._clock() + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def parse_basic(value: str) -> tuple[str, bytes]:
    """(user name, password bytes) of a ``Basic`` Authorization value (RFC 7617: base64 of
    ``user-id ":" password``, UTF-8). Unauthorized when it is anything else."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise errors.Unauthorized(f"unsupported authentication scheme {scheme[:20]!r}: use Basic")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise errors.Unauthorized("malformed Basic credentials: not base64") from None
    name, sep, password = decoded.partition(b":")
    if not sep:
        raise errors.Unauthorized("malformed Basic credentials: no ':' between user and password")
    try:
        user = name.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.Unauthorized("malformed Basic credentials: the user name is not UTF-8") from None
    return user, password


def authorization_value(head: RequestHead) -> str | None:
    value = None
    for name, v in head.headers:
        if name == "authorization":
            if value is not None:
                raise errors.Unauthorized("more than one Authorization header")
            value = v
    return value


class Authenticator:
    """Authentication (Basic against the users file, or the client certificate's CN) and
    authorization (the ACL). Lives on the event loop; only ``users.verify`` runs elsewhere."""

    def __init__(
        self,
        users: PasswordVerifier | None,
        acl: Acl | None,
        loop: asyncio.AbstractEventLoop,
        *,
        cert_auth: bool = False,
        threads: int = VERIFY_THREADS,
        max_pending: int = MAX_PENDING,
        cache_ttl: float = CACHE_TTL,
        failure_ttl: float = FAILURE_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.acl = acl
        self.loop = loop
        self.cert_auth = cert_auth
        self.max_pending = max_pending
        # Basic is offered (and 401 carries its challenge) only with a users file.
        self.challenge = CHALLENGE if users is not None else b""
        self._executor: ThreadPoolExecutor | None = None
        self._threads = threads
        self._key = os.urandom(32)  # per process: digests mean nothing outside it
        self._ok: TtlCache[bytes, str] = TtlCache(CACHE_SIZE, cache_ttl, clock)
        self._failed: TtlCache[bytes, bool] = TtlCache(FAILURE_CACHE_SIZE, failure_ttl, clock)
        self._pending: dict[bytes, asyncio.Future[str | errors.GatewayError]] = {}
        self.verifications = 0  # passwords verified against their hash (cache misses)

    @classmethod
    def from_config(cls, cfg: Config, loop: asyncio.AbstractEventLoop) -> Authenticator | None:
        """None when authentication is off (no users file and no client CA)."""
        if cfg.users_file is None and cfg.tls_client_ca is None:
            return None
        from gateway.auth.users import Users

        users = Users.from_file(cfg.users_file) if cfg.users_file is not None else None
        acl = Acl.from_file(cfg.acl_file) if cfg.acl_file is not None else None
        return cls(users, acl, loop, cert_auth=cfg.tls_client_ca is not None)

    # -- authentication ---------------------------------------------------------------
    def authenticate(
        self, head: RequestHead, cert_name: str | None
    ) -> str | asyncio.Future[str | errors.GatewayError]:
        """The principal now (cached credentials, a client certificate), or a future that
        gives the principal or the error to answer with once the password is verified.
        Raises Unauthorized / AuthBusy when the answer is known at once.

        Precedence: Basic credentials, when the request has them and a users file is
        configured, decide (wrong ones are a 401 even on a connection with a valid client
        certificate); otherwise the certificate's CN is the principal."""
        value = authorization_value(head) if self.users is not None else None
        if value is None:
            if cert_name is not None:
                return cert_name
            if self.users is None:
                raise errors.Unauthorized("a client certificate is required")
            raise errors.Unauthorized("authentication required: send HTTP Basic credentials")
        digest = hashlib.blake2b(value.encode("latin-1"), key=self._key, digest_size=16).digest()
        principal = self._ok.get(digest)
        if principal is not None:
            return principal
        if self._failed.get(digest) is not None:
            raise errors.Unauthorized("wrong user name or password")
        pending = self._pending.get(digest)
        if pending is not None:
            return pending  # the same credentials are being verified for another request
        user, password = parse_basic(value)
        if len(self._pending) >= self.max_pending:
            raise errors.AuthBusy(
                "too many password verifications in progress: retry shortly"
            )
        return self._verify(digest, user, password)

    def _verify(
        self, digest: bytes, user: str, password: bytes
    ) -> asyncio.Future[str | errors.GatewayError]:
        users = self.users
        assert users is not None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="gateway-auth")
        waiter: asyncio.Future[str | errors.GatewayError] = self.loop.create_future()
        self._pending[digest] = waiter
        self.verifications += 1
        work = self.loop.run_in_executor(self._executor, users.verify, user, password)

        def done(f: asyncio.Future[bool]) -> None:
            self._pending.pop(digest, None)
            outcome: str | errors.GatewayError
            if f.cancelled():
                outcome = errors.AuthBusy("the gateway is shutting down")
            elif (exc := f.exception()) is not None:
                log.error("password verification failed", exc_info=exc)
                outcome = errors.GatewayBug("internal error while verifying the password")
            elif f.result():
                self._ok.put(digest, user)
                outcome = user
            else:
                self._failed.put(digest, True)
                outcome = errors.Unauthorized("wrong user name or password")
            if not waiter.done():
                waiter.set_result(outcome)

        work.add_done_callback(done)
        return waiter

    # -- authorization ----------------------------------------------------------------
    def allows(self, principal: str, operation: int, topic: str) -> bool:
        """Without an ACL file, every authenticated principal may do everything."""
        acl = self.acl
        return acl is None or acl.allows(principal, operation, topic)

    def allows_every(self, principal: str, operation: int) -> bool:
        """Whether the principal has the operation on every name (gateway.auth.acl)."""
        acl = self.acl
        return acl is None or acl.allows_every(principal, operation)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
