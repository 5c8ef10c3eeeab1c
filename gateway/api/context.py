"""``ApiContext``: what the endpoints need, built once by the server (gateway.server)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from gateway.auth.authenticator import Authenticator
from gateway.config import Config
from gateway.consume.instances import InstanceRegistry
from gateway.consume.pool import ConsumerPool
from gateway.consume.stream import StreamRegistry
from gateway.kafka.health import ClusterHealth
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.producer import KafkaProducer
from gateway.limits import ConcurrencyLimiter, RateLimiter, RateSettings
from gateway.produce.edge import Spooler
from gateway.stats import HttpStats, ProduceStats


@dataclass(eq=False)
class ApiContext:
    config: Config
    loop: asyncio.AbstractEventLoop
    producer: KafkaProducer
    metadata: MetadataCache
    consumers: ConsumerPool | None = None
    # Consumer instances (gateway.consume.instances); None: the consumer API answers 503.
    instances: InstanceRegistry | None = None
    stats: ProduceStats = field(default_factory=ProduceStats)
    http_stats: HttpStats = field(default_factory=HttpStats)
    # The open connections (their pause reasons feed the metrics): the server's set itself.
    connections: Collection[Any] = field(default_factory=set)
    # Whether Kafka is reachable now (gateway.kafka.health): requests that need it get 503 at
    # once while it is not.
    cluster: ClusterHealth = field(default_factory=ClusterHealth)
    auth: Authenticator | None = None  # None: authentication is off
    rates: RateLimiter = field(default_factory=lambda: RateLimiter(RateSettings()))
    concurrency: ConcurrencyLimiter = field(default_factory=lambda: ConcurrencyLimiter(0))
    # The disk spool (--spool-dir): produce requests are not refused while Kafka is
    # unreachable, their records are spooled (gateway.produce.edge). None: no spool.
    spooler: Spooler | None = None
    # Set by the server when it starts to stop: new work is refused (503), /readyz says 503.
    closing: bool = False
    # Streaming consume (gateway.consume.stream): None where it is not served.
    streams: StreamRegistry | None = None

    @classmethod
    def from_config(
        cls,
        config: Config,
        loop: asyncio.AbstractEventLoop,
        producer: KafkaProducer,
        metadata: MetadataCache,
        consumers: ConsumerPool | None,
        connections: Collection[Any],
        cluster: ClusterHealth,
        spooler: Spooler | None = None,
        instances: InstanceRegistry | None = None,
    ) -> ApiContext:
        return cls(
            config=config,
            loop=loop,
            producer=producer,
            metadata=metadata,
            consumers=consumers,
            connections=connections,
            cluster=cluster,
            spooler=spooler,
            instances=instances,
            auth=Authenticator.from_config(config, loop),
            rates=RateLimiter(RateSettings(
                enabled=config.rate_limit_enabled,
                records_per_principal=config.rate_limit_records,
                records_global=config.rate_limit_records_global,
                bytes_per_principal=config.rate_limit_bytes,
                bytes_global=config.rate_limit_bytes_global,
            )),
            concurrency=ConcurrencyLimiter(config.max_concurrent),
        )
