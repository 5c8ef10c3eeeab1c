"""Gateway settings: the ``Config`` the gateway runs with, its defaults, and what derives from
them. Each setting's type and limits are in ``gateway.options``; where values come from (flags,
environment, a TOML file) and the checks across settings are in ``gateway.config_sources``.

Imports nothing of the gateway: every layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Config:
    listen: tuple[str, int] = ("0.0.0.0", 8082)
    bootstrap_servers: str | None = None
    embedded_broker: tuple[str, int] = ("127.0.0.1", 9092)
    # The embedded broker's storage: "memory" keeps every record (no retention), "null"
    # acknowledges produce requests and keeps no record (gateway.kafka.embedded.STORAGE_ENGINES).
    embedded_storage: str = "memory"
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
    max_consume_streams: int = 64  # streaming consume: open streams (one Kafka consumer each)
    # Consumer instances (gateway.consume.instances): how many at once, and how long one may
    # stay idle (Confluent's consumer.instance.timeout.ms, 5 minutes) before it is closed.
    max_consumer_instances: int = 100
    consumer_instance_timeout: float = 300.0
    # The URL clients reach this gateway at (base_uri of a new consumer instance); None: the
    # scheme of the listener and the request's Host header.
    advertised_url: str | None = None
    workers: int = 1  # processes serving the same address (SO_REUSEPORT), one producer each
    worker_slot: int | None = None  # set in a worker started by the --workers supervisor
    # The supervisor's private run directory, shared with its workers (gateway.workers): their
    # hand-off sockets and the consumer instances' ownership records. None without --workers.
    worker_run_dir: str | None = None
    log_level: str = "info"
    access_log: bool = True  # one gateway.access line per request (per v3 stream)
    # librdkafka statistics.interval.ms, in seconds (0: off): broker state for /metrics.
    kafka_stats_interval: float = 5.0
    # Security (gateway.auth, README "Security"): HTTP Basic users, the topic ACL, TLS.
    users_file: str | None = None  # NAME:ARGON2-HASH lines; Basic authentication is on with it
    acl_file: str | None = None  # PRINCIPAL OPERATION PATTERN lines; deny by default
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
    stream_max_duration_ms: int = 0  # streaming.connection.max.duration.ms (0: none)
    # The disk spool (gateway.produce.edge, README "Edge"): off without a directory.
    spool_dir: str | None = None
    spool_fsync: str = "100"  # always | milliseconds | never
    spool_max_bytes: int = 1 << 30
    spool_after: float = 2.0  # seconds Kafka looks unreachable before records are spooled

    def handoff_socket(self, slot: int) -> str:
        """The Unix socket on which the --workers worker ``slot`` takes requests handed over by
        the other workers (gateway.api.consumers)."""
        assert self.worker_run_dir is not None
        return f"{self.worker_run_dir}/worker-{slot}.sock"

    def held_body_limit(self) -> int:
        """Limit of a body held whole until parsed: max_batch_bytes, or --max-request-bytes
        when that is lower."""
        if self.max_request_bytes:
            return min(self.max_batch_bytes, self.max_request_bytes)
        return self.max_batch_bytes
