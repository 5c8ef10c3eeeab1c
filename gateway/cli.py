"""``kafka-gateway`` command line: flags, GATEWAY_<NAME> environment variables, start and stop."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__
from gateway.config import Config, ConfigError, parse_host_port, parse_property, parse_topic
from gateway.log import configure as configure_logging

log = logging.getLogger("gateway")


def _env(name: str) -> str | None:
    value = os.environ.get("GATEWAY_" + name)
    return value if value not in (None, "") else None


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = argparse.ArgumentParser(
        prog="kafka-gateway",
        description="HTTP gateway into Apache Kafka (Confluent REST Proxy v3 streaming produce). "
        "Every flag can also be set with the environment variable GATEWAY_<NAME> "
        "(e.g. GATEWAY_LISTEN, GATEWAY_BOOTSTRAP_SERVERS); a flag wins over its variable. "
        "GATEWAY_TOPIC takes a comma-separated list, GATEWAY_X a ';'-separated list of key=value.",
    )
    p.add_argument("--version", action="version", version=f"kafka-gateway {__version__}")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve HTTP on (default 0.0.0.0:8082)")
    p.add_argument(
        "--bootstrap-servers",
        metavar="LIST",
        help="use this Kafka cluster; no embedded broker is started",
    )
    p.add_argument(
        "--embedded-broker",
        metavar="HOST:PORT",
        help="without --bootstrap-servers, start an embedded broker (memory only) here "
        "(default 127.0.0.1:9092)",
    )
    p.add_argument(
        "--topic",
        action="append",
        metavar="NAME[:PARTITIONS]",
        help="create this topic at start-up if it is missing (repeatable)",
    )
    p.add_argument(
        "-X",
        action="append",
        dest="X",
        metavar="KEY=VALUE",
        help="librdkafka producer property, e.g. -X compression.type=lz4 (repeatable)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        metavar="SECONDS",
        help=f"on SIGTERM/SIGINT, time allowed for in-flight records to finish (default {d.shutdown_timeout:g})",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        metavar="N",
        help=f"records per connection awaiting their report before reading pauses (default {d.max_in_flight})",
    )
    p.add_argument(
        "--max-record-bytes",
        type=int,
        metavar="N",
        help=f"largest JSON record in a v3 stream (default {d.max_record_bytes})",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        metavar="N",
        help="largest request body: a Content-Length over it is 413, a chunked v3 stream gets a "
        "last 413 report at that byte; 0 means no limit (default 0)",
    )
    p.add_argument(
        "--max-batch-entries",
        type=int,
        metavar="N",
        help=f"entries allowed in one records:batch request, 1 to 50 (default {d.max_batch_entries})",
    )
    p.add_argument(
        "--consumer-pool-size",
        type=int,
        metavar="N",
        help="Kafka consumers (one thread each) serving v1 consume requests; requests beyond "
        f"them queue (default {d.consumer_pool_size})",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        metavar="SECONDS",
        help=f"time allowed to send a request head (default {d.header_timeout:g})",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help=f"close a keep-alive connection idle this long (default {d.idle_timeout:g})",
    )
    p.add_argument(
        "--stream-idle-timeout",
        type=float,
        metavar="SECONDS",
        help="end a request body that sends nothing, or a client that reads nothing, for this long; "
        f"0 disables (default {d.stream_idle_timeout:g})",
    )
    p.add_argument(
        "--validate-cluster-id",
        action="store_true",
        default=None,
        help="answer 404 when the URL's cluster id is not the cluster's",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="serve from N processes sharing the listening address (SO_REUSEPORT), each with "
        "its own producer (default 1)",
    )
    p.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    p.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error (default info)")
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one gateway.access line per request, per v3 stream when it ends (default on)",
    )
    p.add_argument(
        "--kafka-stats-interval",
        type=float,
        metavar="SECONDS",
        help="librdkafka statistics every SECONDS, for the broker metrics; 0 turns them off "
        f"(default {d.kafka_stats_interval:g})",
    )
    _add_security_flags(p)
    _add_limit_flags(p)
    return p


# (flag, Config field, type, help): the produce limits (gateway.limits; README "Limits"), named
# after Confluent's REST Proxy settings (their dots are dashes here).
LIMIT_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--api-v3-produce-rate-limit-enabled", "rate_limit_enabled", bool,
     "turn the record and byte rate limits on (records over them get in-stream 429 reports)"),
    ("--api-v3-produce-rate-limit-max-requests-per-sec", "rate_limit_records", int,
     "records/s per principal (default 10000)"),
    ("--api-v3-produce-rate-limit-max-requests-global-per-sec", "rate_limit_records_global", int,
     "records/s for the whole gateway process (default 10000)"),
    ("--api-v3-produce-rate-limit-max-bytes-per-sec", "rate_limit_bytes", int,
     "key+value bytes/s per principal (default 10000000)"),
    ("--api-v3-produce-rate-limit-max-bytes-global-per-sec", "rate_limit_bytes_global", int,
     "key+value bytes/s for the whole gateway process (default 10000000)"),
    ("--max-concurrent", "max_concurrent", int,
     "produce streams and requests one principal (without authentication: one client IP) may "
     "have open at once; one more is refused with 429/42902 (default 0: no limit)"),
    ("--streaming-connection-max-duration-ms", "stream_max_duration", float,
     "a v3 stream open longer than this many ms stops reading: one last 408 report, then the "
     "response ends and the connection closes (default 0: no limit)"),
]


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "limits",
        "Produce rates (token buckets holding one second of their rate), concurrency and stream "
        "duration, named after Confluent's REST Proxy settings. --max-request-bytes is "
        "Confluent's api.v3.produce.request.size.limit.max.bytes: a chunked v3 stream over it "
        "gets one last 413 report and stops reading.",
    )
    for flag, dest, kind, text in LIMIT_FLAGS:
        if kind is bool:
            g.add_argument(flag, dest=dest, action="store_true", default=None, help=text)
        else:
            g.add_argument(flag, dest=dest, metavar="N", help=text)


def _limits_from_args(args: argparse.Namespace, cfg: Config, pick: Any) -> None:
    for flag, dest, kind, _ in LIMIT_FLAGS:
        v = pick(getattr(args, dest), flag[2:].upper().replace("-", "_"))
        if v is None:
            continue
        if kind is bool:
            cfg.rate_limit_enabled = _flag(v)
            continue
        try:
            number = kind(v)
        except ValueError:
            raise ConfigError(f"{flag}: not a number: {v!r}") from None
        if number < 0 or (number == 0 and dest.startswith("rate_limit")):
            raise ConfigError(f"{flag}: must be {'positive' if dest.startswith('rate') else 'at least 0'}, not {v}")
        if dest == "stream_max_duration":
            number = number / 1000.0
        setattr(cfg, dest, number)


def _add_security_flags(p: argparse.ArgumentParser) -> None:
    """Authentication, authorization and TLS (gateway.auth; README "Security")."""
    g = p.add_argument_group(
        "security",
        "HTTP Basic against a users file, a topic ACL, TLS and client certificates. "
        "With --users-file or --tls-client-ca every request except /, /healthz, /readyz and "
        "/metrics must authenticate (401/40101), then be allowed by the ACL (403/40301).",
    )
    g.add_argument(
        "--users-file",
        metavar="FILE",
        help="HTTP Basic users, NAME:ARGON2-HASH lines (make them with `kafka-gateway passwd NAME`)",
    )
    g.add_argument(
        "--acl-file",
        metavar="FILE",
        help="topic ACL, PRINCIPAL produce|consume|all TOPIC-PATTERN lines; what no line allows "
        "is denied (without it, any authenticated principal may do everything)",
    )
    g.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain)")
    g.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert (unless in that file)")
    g.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="accept client certificates issued by these PEM CA(s); a certificate's subject CN "
        "is the principal (Basic credentials, when sent, take precedence)",
    )
    g.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        default=None,
        help="refuse a TLS handshake without a valid client certificate",
    )


def _security_from_args(args: argparse.Namespace, cfg: Config, pick: Any) -> None:
    for name in ("users_file", "acl_file", "tls_cert", "tls_key", "tls_client_ca"):
        v = pick(getattr(args, name), name.upper())
        if v is not None:
            setattr(cfg, name, v)
    v = pick(args.tls_require_client_cert, "TLS_REQUIRE_CLIENT_CERT")
    if v is not None:
        cfg.tls_require_client_cert = _flag(v)


def _flag(value: object) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    args = build_parser().parse_args(argv)
    cfg = Config()

    def pick(flag_value: Any, env_name: str) -> Any:
        return flag_value if flag_value is not None else _env(env_name)

    if (v := pick(args.listen, "LISTEN")) is not None:
        cfg.listen = parse_host_port(v, what="--listen")
    cfg.bootstrap_servers = pick(args.bootstrap_servers, "BOOTSTRAP_SERVERS")
    if (v := pick(args.embedded_broker, "EMBEDDED_BROKER")) is not None:
        cfg.embedded_broker = parse_host_port(v, what="--embedded-broker")
    topics = args.topic if args.topic is not None else (_env("TOPIC") or "").split(",")
    cfg.topics = [parse_topic(t) for t in topics if t.strip()]
    props = args.X if args.X is not None else (_env("X") or "").replace("\n", ";").split(";")
    cfg.producer_properties = dict(parse_property(x) for x in props if x.strip())
    for name, conv in (
        ("shutdown_timeout", float),
        ("max_in_flight", int),
        ("max_record_bytes", int),
        ("max_request_bytes", int),
        ("max_batch_entries", int),
        ("workers", int),
        ("consumer_pool_size", int),
        ("header_timeout", float),
        ("idle_timeout", float),
        ("stream_idle_timeout", float),
        ("kafka_stats_interval", float),
    ):
        v = pick(getattr(args, name), name.upper())
        if v is not None:
            try:
                setattr(cfg, name, conv(v))
            except ValueError:
                raise ConfigError(f"--{name.replace('_', '-')}: not a number: {v!r}") from None
    v = pick(args.validate_cluster_id, "VALIDATE_CLUSTER_ID")
    if v is not None:
        cfg.validate_cluster_id = _flag(v)
    v = pick(args.access_log, "ACCESS_LOG")
    if v is not None:
        cfg.access_log = _flag(v)
    cfg.worker_slot = args.worker_slot
    if (v := pick(args.log_level, "LOG_LEVEL")) is not None:
        cfg.log_level = v.lower()
    if cfg.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level: unknown level {cfg.log_level!r}")
    _security_from_args(args, cfg, pick)
    _limits_from_args(args, cfg, pick)
    cfg.validate()
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["passwd"]:  # kafka-gateway passwd NAME: a users-file entry
        from gateway.auth.passwd import main as passwd_main

        return passwd_main(args[1:])
    try:
        cfg = config_from_args(argv)
    except ConfigError as exc:
        print(f"kafka-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    who = "" if cfg.worker_slot is None else f"[worker {cfg.worker_slot}] "
    # The supervisor of --workers serves no request: its access log stays off.
    configure_logging(cfg.log_level, who=who, access_log=cfg.access_log and cfg.workers == 1)
    from gateway.app import main as app_main

    try:
        return app_main(cfg, list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return 0
