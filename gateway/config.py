"""Gateway settings: defaults, and parsing of the values flags and environment variables give."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Invalid configuration: the message says which setting and why."""


def parse_host_port(text: str, *, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
    n = int(port)
    if not 0 <= n <= 65535:
        raise ConfigError(f"{what}: port {n} is out of range")
    host = host.strip("[]") or "0.0.0.0"
    return host, n


def parse_topic(text: str) -> tuple[str, int]:
    name, sep, parts = text.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"--topic: empty topic name in {text!r}")
    if not sep:
        return name, 1
    if not parts.isdigit() or int(parts) < 1:
        raise ConfigError(f"--topic: partitions must be a positive integer in {text!r}")
    return name, int(parts)


def parse_property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"-X: expected key=value, got {text!r}")
    return key.strip(), value.strip()


@dataclass
class Config:
    listen: tuple[str, int] = ("0.0.0.0", 8082)
    bootstrap_servers: str | None = None
    embedded_broker: tuple[str, int] = ("127.0.0.1", 9092)
    topics: list[tuple[str, int]] = field(default_factory=list)
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
    # Security (gateway.auth, README "Security"): HTTP Basic users, the topic ACL, TLS.
    users_file: str | None = None  # NAME:ARGON2-HASH lines; Basic authentication is on with it
    acl_file: str | None = None  # PRINCIPAL OPERATION TOPIC-PATTERN lines; deny by default
    tls_cert: str | None = None  # PEM certificate (chain) of the listener; TLS is on with it
    tls_key: str | None = None  # its PEM private key (unless in tls_cert)
    tls_client_ca: str | None = None  # CA(s) of client certificates; their CN is a principal
    tls_require_client_cert: bool = False  # refuse the TLS handshake without a client cert
    # Limits (gateway.limits, README "Limits"), named after Confluent's REST Proxy settings.
    rate_limit_enabled: bool = False  # api.v3.produce.rate.limit.enabled
    rate_limit_records: int = 10000  # ...max.requests.per.sec: records/s per principal
    rate_limit_records_global: int = 10000  # ...max.requests.global.per.sec: records/s in all
    rate_limit_bytes: int = 10_000_000  # ...max.bytes.per.sec: key+value bytes/s per principal
    rate_limit_bytes_global: int = 10_000_000  # ...max.bytes.global.per.sec
    max_concurrent: int = 0  # produce streams and requests open at once per principal (0: any)
    stream_max_duration: float = 0.0  # streaming.connection.max.duration.ms, in s (0: none)

    def held_body_limit(self) -> int:
        """Limit of a body held whole until parsed: max_batch_bytes, or --max-request-bytes
        when that is lower."""
        if self.max_request_bytes:
            return min(self.max_batch_bytes, self.max_request_bytes)
        return self.max_batch_bytes

    def validate(self) -> None:
        if not 1 <= self.workers <= 256:
            raise ConfigError("--workers must be between 1 and 256")
        if self.workers > 1 and self.listen[1] == 0:
            raise ConfigError("--workers needs a fixed --listen port (port 0 would give each its own)")
        if self.max_in_flight < 1:
            raise ConfigError("--max-in-flight must be at least 1")
        if not 1 <= self.max_batch_entries <= 50:
            raise ConfigError("--max-batch-entries must be between 1 and 50")
        if not 1 <= self.consumer_pool_size <= 256:
            raise ConfigError("--consumer-pool-size must be between 1 and 256")
        if self.max_record_bytes < 2:
            raise ConfigError("--max-record-bytes must be at least 2")
        if not (self.kafka_stats_interval == 0 or 0.1 <= self.kafka_stats_interval <= 86400):
            raise ConfigError("--kafka-stats-interval must be 0 (off) or 0.1 to 86400 seconds")
        for name in ("shutdown_timeout", "header_timeout", "idle_timeout", "stream_idle_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        from gateway.auth import validate_security  # reads the users, ACL and TLS files

        validate_security(self)
