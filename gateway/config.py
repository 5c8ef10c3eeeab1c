"""Gateway settings: the ``Config`` the gateway runs with, its defaults, and the checks that
involve more than one setting. Where values come from (flags, environment, a TOML file) and
each setting's type and limits are in ``gateway.options``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Invalid configuration: the message says which setting, where it came from, and why."""


@dataclass
class Config:
    listen: tuple[str, int] = ("0.0.0.0", 8082)
    bootstrap_servers: str | None = None
    embedded_broker: tuple[str, int] = ("127.0.0.1", 9092)
    topics: dict[str, int] = field(default_factory=dict)  # created at start-up: name -> partitions
    producer_properties: dict[str, Any] = field(default_factory=dict)
    shutdown_timeout: float = 30.0
    max_in_flight: int = 16384  # records per connection between "parsed" and "report written"
    max_record_bytes: int = 2 * 1024 * 1024  # JSON bytes of one record in a v3 stream
    max_request_bytes: int = 0  # Content-Length limit (0: none; chunked streams are unbounded)
    max_batch_entries: int = 10  # entries in one records:batch request (at most 50)
    # Body of a request answered as a whole (v3 records:batch, v1/v2 produce): it is held and
    # parsed at once, and tiny records parse to ~25x their bytes in Python objects.
    max_batch_bytes: int = 4 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    stream_idle_timeout: float = 300.0
    validate_cluster_id: bool = False
    consumer_pool_size: int = 4  # long-lived Kafka consumers (and threads) serving v1 consume
    workers: int = 1  # processes serving the same address (SO_REUSEPORT), one producer each
    worker_slot: int | None = None  # set in a worker started by the --workers supervisor
    log_level: str = "info"
    access_log: bool = True  # one gateway.access line per request (per v3 stream)
    # librdkafka statistics.interval.ms, in seconds (0: off): broker state for /metrics.
    kafka_stats_interval: float = 5.0

    def held_body_limit(self) -> int:
        """Limit of a body held whole until parsed: max_batch_bytes, or --max-request-bytes
        when that is lower."""
        if self.max_request_bytes:
            return min(self.max_batch_bytes, self.max_request_bytes)
        return self.max_batch_bytes

    def validate(self, where: Mapping[str, str] | None = None) -> None:
        """Checks across settings (each one's own type and range is checked where it is read).
        ``where`` names the source of each value that is not a default, for the message."""
        where = where or {}

        def name(dest: str) -> str:
            return where.get(dest) or "default " + dest.replace("_", "-")

        if self.workers > 1 and self.listen[1] == 0:
            raise ConfigError(
                f"{name('workers')}: {self.workers} workers need a fixed listen port "
                f"(port 0 from {name('listen')} would give each its own)"
            )
