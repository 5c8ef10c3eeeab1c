"""Cached cluster metadata: which topics exist and how many partitions each has.

Topic existence is decided from a full metadata listing, which never auto-creates a topic
(a produce or a per-topic metadata request may, on brokers with auto-creation on). The listing
is a blocking librdkafka call, so it runs on a worker thread; the loop only ever reads the cache
or awaits a refresh future. Concurrent misses share one refresh, and misses refresh at most once
per ``miss_refresh_interval`` so a client cannot turn unknown topics into a metadata storm: a
miss that comes sooner waits for the next allowed refresh rather than being answered from a
listing older than the request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import AdminClient

from gateway import errors
from gateway.futures import settle
from gateway.kafka.health import ClusterHealth

log = logging.getLogger("gateway.metadata")

# Seconds between listings while Kafka is unreachable: the first that succeeds says it is back.
DOWN_REFRESH_INTERVAL = 0.5
DOWN_REQUEST_TIMEOUT = 1.0  # seconds a listing waits for an answer while Kafka is unreachable


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str
    topics: dict[str, int]  # topic -> number of partitions
    brokers: tuple[int, ...]
    fetched_at: float  # time.monotonic()
    controller: int = -1
    partitions: dict[str, tuple[PartitionInfo, ...]] | None = None  # topic -> by partition id
    broker_addresses: dict[int, tuple[str | None, int]] | None = None  # broker id -> (host, port)


class MetadataCache:
    def __init__(
        self,
        client_config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        *,
        refresh_interval: float = 30.0,
        miss_refresh_interval: float = 0.5,
        max_age: float = 120.0,
        request_timeout: float = 5.0,
        health: ClusterHealth | None = None,
    ) -> None:
        self._loop = loop
        # A listing that succeeds says Kafka answers (gateway.kafka.health); while Kafka is
        # unreachable the listing runs every DOWN_REFRESH_INTERVAL to notice its return.
        self.health = health
        if health is not None:
            health.listen(self._on_health)
        self._admin: AdminClient | None = AdminClient(client_config)
        # The listing runs on a daemon thread of its own: a stop never waits for one in
        # progress (up to request_timeout) unless it asks to (wait_closed), where a pool's
        # thread would be joined when the process exits.
        self._thread: threading.Thread | None = None
        self.refresh_interval = refresh_interval
        self.miss_refresh_interval = miss_refresh_interval
        self.max_age = max_age
        # With the disk spool, the last listing is kept through an outage of any length:
        # records are spooled against it (the server sets this with --spool-dir).
        self.keep_stale = False
        self.request_timeout = request_timeout
        self.info: ClusterInfo | None = None
        self.last_error: str | None = None
        self._refreshing: asyncio.Future[ClusterInfo | None] | None = None
        self._last_attempt = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._pending_miss: asyncio.Future[ClusterInfo | None] | None = None

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            raise RuntimeError("the metadata cache is closed")
        return self._admin

    def _fetch(self) -> ClusterInfo:
        # While Kafka is known to be unreachable, a listing gives up sooner: the next one comes
        # DOWN_REFRESH_INTERVAL later anyway, and a stop waits for the one in progress.
        down = self.health is not None and self.health.down is not None
        md = self.admin.list_topics(timeout=DOWN_REQUEST_TIMEOUT if down else self.request_timeout)
        topics: dict[str, int] = {}
        partitions: dict[str, tuple[PartitionInfo, ...]] = {}
        for name, t in md.topics.items():
            if t.error is not None or name.startswith("__"):
                continue  # broken or internal topics are neither listed nor produced to
            topics[name] = len(t.partitions)
            partitions[name] = tuple(
                PartitionInfo(p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
                for p in sorted(t.partitions.values(), key=lambda p: p.id)
            )
        return ClusterInfo(
            cluster_id=md.cluster_id or "",
            topics=topics,
            brokers=tuple(sorted(md.brokers)),
            fetched_at=time.monotonic(),
            controller=md.controller_id,
            partitions=partitions,
            broker_addresses={b.id: (b.host, b.port) for b in md.brokers.values()},
        )

    def refresh(self) -> asyncio.Future[ClusterInfo | None]:
        """Start (or join) a refresh; the future gives the new info, or None if Kafka could not
        be reached (the old info, if any, stays in place until it is older than max_age)."""
        if self._refreshing is not None:
            return self._refreshing
        fut: asyncio.Future[ClusterInfo | None] = self._loop.create_future()
        if self._admin is None:  # closed: Kafka is not asked any more
            fut.set_result(None)
            return fut
        self._last_attempt = time.monotonic()
        self._refreshing = fut
        work = self._in_thread(self._fetch)

        def done(w: asyncio.Future[ClusterInfo]) -> None:
            self._refreshing = None
            if w.cancelled():  # closed before the listing started
                if not fut.done():
                    fut.set_result(None)
                return
            exc = w.exception()
            if exc is None:
                self.info = w.result()
                self.last_error = None
                result: ClusterInfo | None = self.info
                if self.health is not None:
                    self.health.answered()
            else:
                self.last_error = str(exc)
                log.warning("metadata refresh failed: %s", exc)
                if (self.info is not None and not self.keep_stale
                        and time.monotonic() - self.info.fetched_at > self.max_age):
                    self.info = None
                result = None
            if not fut.done():
                fut.set_result(result)

        work.add_done_callback(done)
        return fut

    def start(self) -> None:
        """Refresh now and then every refresh_interval seconds."""
        self.refresh()
        self._timer = self._loop.call_later(self.refresh_interval, self._tick)

    def _tick(self) -> None:
        self.refresh()
        down = self.health is not None and self.health.down is not None
        self._timer = self._loop.call_later(
            DOWN_REFRESH_INTERVAL if down else self.refresh_interval, self._tick
        )

    def _on_health(self, down: str | None) -> None:
        if down is not None and self._timer is not None:
            self._timer.cancel()
            self._timer = self._loop.call_later(DOWN_REFRESH_INTERVAL, self._tick)

    def partitions(self, topic: str) -> int | None:
        """Partition count from the cache, None if unknown (topic missing or no metadata)."""
        info = self.info
        if info is None:
            return None
        return info.topics.get(topic)

    # -- what a request needs to know about a topic (one decision for every endpoint) --------
    def unavailable(self) -> errors.KafkaUnavailable:
        return errors.KafkaUnavailable(
            f"Kafka is unreachable: {self.last_error or 'no metadata'}"
        )

    def partition_count(self, topic: str) -> int:
        """The topic's partition count as the cache has it: 503/50003 when there is no
        metadata, 404/40401 when the cluster's listing has no such topic."""
        info = self.info
        if info is None:
            raise self.unavailable()
        count = info.topics.get(topic)
        if count is None:
            raise errors.TopicNotFound(f"topic {topic} not found")
        return count

    async def fresh(self) -> ClusterInfo:
        """The cluster's metadata after a refresh (shared and rate-limited); 503 without it."""
        await self.refresh_for_miss()
        info = self.info
        if info is None:
            raise self.unavailable()
        return info

    async def topic_partitions(self, topic: str) -> tuple[PartitionInfo, ...]:
        """The topic's partitions, refreshing the cache once on a miss; errors as
        partition_count."""
        info = self.info
        if info is None or info.partitions is None or topic not in info.partitions:
            info = await self.fresh()
        self.partition_count(topic)
        return (info.partitions or {})[topic]

    def refresh_for_miss(self) -> asyncio.Future[ClusterInfo | None]:
        """A refresh for a topic the cache does not know: joins one in progress, else starts
        one now or at the next allowed time (shared by every miss until then)."""
        if self._refreshing is not None:
            return self._refreshing
        delay = self._last_attempt + self.miss_refresh_interval - time.monotonic()
        if delay <= 0:
            return self.refresh()
        if self._pending_miss is None:
            waiter: asyncio.Future[ClusterInfo | None] = self._loop.create_future()
            self._pending_miss = waiter

            def relay(f: asyncio.Future[ClusterInfo | None]) -> None:
                if not waiter.done():
                    waiter.set_result(f.result())

            def start() -> None:
                self._pending_miss = None
                self.refresh().add_done_callback(relay)

            self._loop.call_later(delay, start)
        return self._pending_miss

    def _in_thread(self, fn: Callable[[], ClusterInfo]) -> asyncio.Future[ClusterInfo]:
        work: asyncio.Future[ClusterInfo] = self._loop.create_future()
        loop = self._loop

        def run() -> None:
            try:
                result, exc = fn(), None
            except BaseException as e:  # noqa: BLE001 - handed to the loop
                result, exc = None, e
            try:
                loop.call_soon_threadsafe(settle, work, result, exc)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        thread = threading.Thread(target=run, name="gateway-metadata", daemon=True)
        self._thread = thread
        thread.start()
        return work

    def close(self) -> None:
        """Stop refreshing and let go of the admin client. librdkafka destroys it, closing its
        broker connections, once a listing still running on the worker thread returns (within
        request_timeout): ``wait_closed`` waits for that without holding the loop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._admin = None

    async def wait_closed(self) -> None:
        """After ``close``: returns once the admin client is gone (so an embedded broker can
        be stopped without this client logging the connections it loses)."""
        thread = self._thread
        while thread is not None and thread.is_alive():
            await asyncio.sleep(0.02)

