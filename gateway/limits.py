"""Produce limits (README "Limits"): record and byte rates, concurrency, stream duration.

Rates are token buckets named after Confluent's REST Proxy settings
(``api.v3.produce.rate.limit.*``): records/s and bytes/s, per principal and for the whole
gateway process. A bucket holds at most one second of its rate and refills continuously. A v3
stream asks for an allowance before each body piece (``RateLimiter.allowance``): the records
of that piece beyond it are dropped with an in-stream 429 report, the stream goes on, and what
the piece used is charged afterwards (``charge``). Bytes are the record's key and value bytes as
stored in Kafka.

Concurrency: ``ConcurrencyLimiter`` counts the produce streams and requests each principal has
open at once; one over the limit is refused before its body is read (HTTP 429, error_code
42902). Without authentication the principal is the client's IP address.

Everything here runs on the event loop thread: plain arithmetic, no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

UNLIMITED = 1 << 62
RATE_LIMITED = 429
TOO_MANY = 42902
# Per-principal buckets unused this long are forgotten (Confluent: ...rate.limit.cache.expiry.ms).
BUCKET_EXPIRY = 3600.0


class TokenBucket:
    """``rate`` tokens per second, at most ``rate`` held (one second of burst)."""

    __slots__ = ("rate", "tokens", "stamp")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self.tokens = float(rate)
        self.stamp = now

    def level(self, now: float) -> float:
        if now > self.stamp:
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return self.tokens

    def take(self, n: float, now: float) -> None:
        self.level(now)
        self.tokens -= n


@dataclass(frozen=True)
class RateSettings:
    enabled: bool = False
    records_per_principal: int = 10000  # api.v3.produce.rate.limit.max.requests.per.sec
    records_global: int = 10000  # api.v3.produce.rate.limit.max.requests.global.per.sec
    bytes_per_principal: int = 10_000_000  # api.v3.produce.rate.limit.max.bytes.per.sec
    bytes_global: int = 10_000_000  # api.v3.produce.rate.limit.max.bytes.global.per.sec


class RateLimiter:
    """The process's record and byte buckets: global, and one pair per principal."""

    def __init__(self, settings: RateSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self._clock = clock
        now = clock()
        self._records = TokenBucket(settings.records_global, now)
        self._bytes = TokenBucket(settings.bytes_global, now)
        self._per: dict[str, tuple[TokenBucket, TokenBucket, list[float]]] = {}
        self._swept = now
        self.dropped = 0  # records refused for rate since start

    def _principal(self, principal: str, now: float) -> tuple[TokenBucket, TokenBucket, list[float]]:
        entry = self._per.get(principal)
        if entry is None:
            if now - self._swept > BUCKET_EXPIRY / 4:
                self._sweep(now)
            s = self.settings
            entry = (TokenBucket(s.records_per_principal, now), TokenBucket(s.bytes_per_principal, now), [now])
            self._per[principal] = entry
        else:
            entry[2][0] = now
        return entry

    def _sweep(self, now: float) -> None:
        self._swept = now
        stale = [p for p, e in self._per.items() if now - e[2][0] > BUCKET_EXPIRY]
        for p in stale:
            del self._per[p]

    def allowance(self, principal: str) -> tuple[int, int]:
        """(records, bytes) this principal may produce now (UNLIMITED when rates are off)."""
        if not self.enabled:
            return UNLIMITED, UNLIMITED
        now = self._clock()
        rec, byt, _ = self._principal(principal, now)
        records = min(self._records.level(now), rec.level(now))
        nbytes = min(self._bytes.level(now), byt.level(now))
        return max(0, int(records)), max(0, int(nbytes))

    def charge(self, principal: str, records: int, nbytes: int) -> None:
        """What a body piece used of its allowance."""
        if not self.enabled or not (records or nbytes):
            return
        now = self._clock()
        rec, byt, _ = self._principal(principal, now)
        self._records.take(records, now)
        self._bytes.take(nbytes, now)
        rec.take(records, now)
        byt.take(nbytes, now)


class ConcurrencyLimiter:
    """Open produce streams and requests per principal (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}
        self.refused = 0

    def acquire(self, principal: str) -> bool:
        if not self.limit:
            return True
        n = self._open.get(principal, 0)
        if n >= self.limit:
            self.refused += 1
            return False
        self._open[principal] = n + 1
        return True

    def release(self, principal: str) -> None:
        if not self.limit:
            return
        n = self._open.get(principal, 0) - 1
        if n > 0:
            self._open[principal] = n
        else:
            self._open.pop(principal, None)

    def open_count(self, principal: str) -> int:
        return self._open.get(principal, 0)
