"""Every setting of the gateway, defined once in ``OPTIONS``: its flag, kind (type and limits),
help text and ``--help`` group. Where values are read from, and how the sources are merged, is
in ``gateway.config_sources``.

A setting has a command-line flag, an environment variable and a key in the TOML configuration
file, all derived from the one ``Option`` entry:

    flag         --max-in-flight 1024
    environment  GATEWAY_MAX_IN_FLIGHT=1024        (GATEWAY_ + the flag's name, upper case, _)
    file         max-in-flight = 1024              (the flag's name; an integer, not a string)

Two settings take many values and have a table in the file instead: ``-X key=value`` is the
``[kafka]`` table of librdkafka properties, ``--topic NAME[:PARTITIONS]`` the ``[topics]`` table
(``name = partitions``).

To add a setting: a field with its default on ``gateway.config.Config``, and one ``Option`` in
``OPTIONS`` (flag, kind with its limits, help, group). Its environment variable, file key,
``--help`` line, ``--print-config`` line and the hand-over to ``--workers`` processes follow.
The kinds: ``Int(lo, hi)``, ``Seconds(lo, hi, zero_is_off=)``, ``Bool()`` (a --x/--no-x flag
pair), ``Text(choices)``, ``File()`` (must be readable at start), ``HostPort()``, and the
repeatable ``Topics()`` and ``Properties()``; another one subclasses ``Kind`` (from_text,
from_file, to_file). Checks that involve two settings go to ``gateway.config_sources.check``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config import Config
from gateway.kafka.embedded import STORAGE_ENGINES

ENV_PREFIX = "GATEWAY_"


def _describe(value: Any) -> str:
    """A TOML value, for 'expected an integer, got ...' messages."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), f"a {type(value).__name__}")
    text = repr(value) if not isinstance(value, dict | list) else ""
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind} {text}".rstrip()


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else repr(x)


# --- kinds of values ---------------------------------------------------------------------
class Kind:
    """How one setting's values are read from text (a flag, a variable) and from the file,
    checked, and written back in file form. Errors are ValueError with the reason only; the
    caller adds where the value came from."""

    what = "a value"
    multi = False  # a repeatable flag whose values (a dict) merge across sources, key by key

    def from_text(self, text: str) -> Any:
        raise NotImplementedError

    def from_env(self, text: str) -> Any:
        return self.from_text(text)

    def from_file(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"expected {self.what}, got {_describe(value)}")
        return self.from_text(value)

    def to_file(self, value: Any) -> Any:
        return value

    def show(self, value: Any) -> str:
        """The value as --help shows a default."""
        return str(self.to_file(value))


class Int(Kind):
    what = "an integer"

    def __init__(self, lo: int, hi: int) -> None:
        self.lo = lo
        self.hi = hi

    def from_text(self, text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        return self.check(value)

    def from_file(self, value: Any) -> int:
        if type(value) is not int:
            raise ValueError(f"expected an integer, got {_describe(value)}")
        return self.check(value)

    def check(self, value: int) -> int:
        if not self.lo <= value <= self.hi:
            raise ValueError(f"must be between {self.lo} and {self.hi}, got {value}")
        return value


class Seconds(Kind):
    """A duration in seconds (an integer or a float in the file); finite, within [lo, hi], or
    0 when ``zero_is_off``."""

    what = "a number of seconds"

    def __init__(self, lo: float = 0.0, hi: float = 30 * 86400.0, *, zero_is_off: bool = False) -> None:
        self.lo = lo
        self.hi = hi
        self.zero_is_off = zero_is_off

    def from_text(self, text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds, got {text!r}") from None
        return self.check(value)

    def from_file(self, value: Any) -> float:
        if type(value) not in (int, float):
            raise ValueError(f"expected a number of seconds, got {_describe(value)}")
        return self.check(float(value))

    def check(self, value: float) -> float:
        if self.zero_is_off and value == 0:
            return 0.0
        if not (math.isfinite(value) and self.lo <= value <= self.hi):
            off = "0 (off) or " if self.zero_is_off else ""
            raise ValueError(
                f"must be {off}between {_num(self.lo)} and {_num(self.hi)} seconds, got {_num(value)}"
            )
        return value

    def show(self, value: Any) -> str:
        return f"{value:g}"


class Bool(Kind):
    what = "true or false"
    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def from_text(self, text: str) -> bool:
        t = text.strip().lower()
        if t in self._TRUE:
            return True
        if t in self._FALSE:
            return False
        raise ValueError(f"expected true or false (1/0, yes/no, on/off), got {text!r}")

    def from_file(self, value: Any) -> bool:
        if type(value) is not bool:
            raise ValueError(f"expected true or false, got {_describe(value)}")
        return value

    def show(self, value: Any) -> str:
        return "on" if value else "off"


class Text(Kind):
    what = "a string"

    def __init__(self, choices: Sequence[str] | None = None) -> None:
        self.choices = tuple(choices) if choices else None

    def from_text(self, text: str) -> str:
        value = text.strip()
        if not value:
            raise ValueError("must not be empty")
        if self.choices is not None:
            value = value.lower()
            if value not in self.choices:
                raise ValueError(f"expected one of {', '.join(self.choices)}, got {text!r}")
        return value


class FsyncPolicyText(Text):
    """``always``, ``never``, or a number of milliseconds (the spool's fsync policy)."""

    what = "always, never or a number of milliseconds"

    def from_text(self, text: str) -> str:
        value = text.strip().lower()
        if value in ("always", "never"):
            return value
        try:
            ms = int(value, 10)
        except ValueError:
            raise ValueError(f"expected always, never or milliseconds, got {text!r}") from None
        if not 1 <= ms <= 3_600_000:
            raise ValueError(f"milliseconds must be between 1 and 3600000, got {ms}")
        return str(ms)

    def from_file(self, value: Any) -> str:
        if type(value) is int:
            return self.from_text(str(value))
        if type(value) is not str:
            raise ValueError(f"expected always, never or milliseconds, got {_describe(value)}")
        return self.from_text(value)


class Url(Text):
    """An absolute http or https URL with a host, and no query or fragment; kept without a
    trailing ``/``."""

    what = "a URL"

    def from_text(self, text: str) -> str:
        value = text.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {text!r}")
        if parts.query or parts.fragment or any(c.isspace() for c in value):
            raise ValueError(f"expected a URL without query, fragment or spaces, got {text!r}")
        return value.rstrip("/")


class File(Kind):
    """A path to a file the gateway reads (certificates, keys, users files): it must exist and
    be readable at start. Kept as given (relative paths are from the working directory, the
    same for --workers processes)."""

    what = "a file path"

    def from_text(self, text: str) -> str:
        path = text.strip()
        if not path:
            raise ValueError("must not be empty")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        return path


class HostPort(Kind):
    what = 'a "HOST:PORT" string'

    def from_text(self, text: str) -> tuple[str, int]:
        host, sep, port = text.strip().rpartition(":")
        if not sep or not port.isdigit() or not port.isascii():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        n = int(port)
        if not 0 <= n <= 65535:
            raise ValueError(f"port {n} is out of range (0 to 65535)")
        # [::1]:8082 is IPv6 loopback; an empty host is every address.
        return host.strip("[]") or "0.0.0.0", n

    def to_file(self, value: Any) -> str:
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """TOML reads ``security.protocol = "SSL"`` as nested tables: dotted names come back whole."""
    for key, value in table.items():
        name = prefix + key
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


MAX_PARTITIONS = 100_000
# Kafka's rule for topic names (org.apache.kafka.common.internals.Topic): at most 249 of
# [a-zA-Z0-9._-], and not "." or "..".
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def _check_topic_name(name: str) -> None:
    if not name:
        raise ValueError("empty topic name")
    if _TOPIC_NAME.fullmatch(name) is None or name in (".", ".."):
        raise ValueError(
            f"invalid topic name {name!r}: at most 249 of a-z, A-Z, 0-9, '.', '_', '-' (not '.' or '..')"
        )


class Topics(Kind):
    """Topics created at start-up: name -> partitions."""

    what = "a table of topic = partitions"
    multi = True

    def from_text(self, text: str) -> dict[str, int]:
        name, sep, parts = text.partition(":")
        name = name.strip()
        _check_topic_name(name)
        if not sep:
            return {name: 1}
        parts = parts.strip()
        if not parts.isdigit() or not parts.isascii() or not 1 <= int(parts) <= MAX_PARTITIONS:
            raise ValueError(
                f"topic {name!r}: partitions must be an integer between 1 and {MAX_PARTITIONS}, got {parts!r}"
            )
        return {name: int(parts)}

    def from_env(self, text: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in text.split(","):
            if item.strip():
                out.update(self.from_text(item))
        return out

    def from_file(self, value: Any) -> dict[str, int]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table of topic = partitions, got {_describe(value)}")
        out: dict[str, int] = {}
        for name, parts in _flatten(value):
            _check_topic_name(name)
            if type(parts) is not int:
                raise ValueError(f"topic {name!r}: expected a number of partitions, got {_describe(parts)}")
            if not 1 <= parts <= MAX_PARTITIONS:
                raise ValueError(
                    f"topic {name!r}: partitions must be between 1 and {MAX_PARTITIONS}, got {parts}"
                )
            out[name] = parts
        return out

    def show(self, value: Any) -> str:
        return ", ".join(f"{n}:{p}" for n, p in value.items()) or "none"


class Properties(Kind):
    """librdkafka producer properties: name -> value (text, as librdkafka takes them)."""

    what = "a table of librdkafka property = value"
    multi = True

    def from_text(self, text: str) -> dict[str, str]:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"expected key=value, got {text!r}")
        return {key: value.strip()}

    def from_env(self, text: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in text.replace("\n", ";").split(";"):
            if item.strip():
                out.update(self.from_text(item))
        return out

    def from_file(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table of librdkafka properties, got {_describe(value)}")
        out: dict[str, str] = {}
        for name, v in _flatten(value):
            if type(v) is bool:
                out[name] = "true" if v else "false"
            elif type(v) in (int, float, str):
                out[name] = str(v)
            else:
                raise ValueError(f"{name}: expected a string, number or boolean, got {_describe(v)}")
        return out

    def show(self, value: Any) -> str:
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "none"


# --- the table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    dest: str  # the Config attribute
    flag: str  # "--max-in-flight" (or "-X")
    kind: Kind
    help: str  # the default is appended from Config, unless ``default`` says it
    group: str
    metavar: str | None = None
    key: str | None = None  # file key when it is not the flag's name
    default: str | None = None  # how --help shows the default when Config's value is not telling

    @property
    def name(self) -> str:
        return self.flag.lstrip("-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")

    @property
    def file_key(self) -> str:
        return self.key or self.name


G_HTTP = "HTTP listener"
G_KAFKA = "Kafka"
G_LIMITS = "limits"
G_TIMEOUTS = "timeouts"
G_PROCESS = "process and logging"
G_SECURITY = "security"
G_RATES = "produce rate limits"
G_SPOOL = "disk spool (edge)"
GROUPS = (G_HTTP, G_KAFKA, G_LIMITS, G_RATES, G_TIMEOUTS, G_SECURITY, G_SPOOL, G_PROCESS)

MAX_RECORD_LIMIT = 1 << 31  # gateway.produce.splitter.MAX_RECORD_LIMIT

OPTIONS: tuple[Option, ...] = (
    Option("listen", "--listen", HostPort(), "address to serve HTTP on", G_HTTP, "HOST:PORT"),
    Option(
        "validate_cluster_id",
        "--validate-cluster-id",
        Bool(),
        "answer 404 when the URL's cluster id is not the cluster's",
        G_HTTP,
    ),
    Option(
        "bootstrap_servers",
        "--bootstrap-servers",
        Text(),
        "use this Kafka cluster; no embedded broker is started",
        G_KAFKA,
        "LIST",
        default="none: the embedded broker",
    ),
    Option(
        "embedded_broker",
        "--embedded-broker",
        HostPort(),
        "without bootstrap-servers, start an embedded broker (memory only) here",
        G_KAFKA,
        "HOST:PORT",
    ),
    Option(
        "embedded_storage",
        "--embedded-storage",
        Text(tuple(STORAGE_ENGINES)),
        "the embedded broker's storage: memory keeps every record in its memory until the "
        "gateway stops (it grows about 111 MB per million 100-byte records); null acknowledges "
        "every record and keeps none (a load-test target: consumes find nothing)",
        G_KAFKA,
        "memory|null",
    ),
    Option(
        "topics",
        "--topic",
        Topics(),
        "create this topic at start-up if it is missing (repeatable; GATEWAY_TOPIC=a:3,b; "
        "the file's [topics] table: name = partitions)",
        G_KAFKA,
        "NAME[:PARTITIONS]",
        key="topics",
    ),
    Option(
        "producer_properties",
        "-X",
        Properties(),
        "librdkafka producer property, e.g. -X compression.type=lz4 (repeatable; "
        'GATEWAY_X="k=v;k2=v2"; the file\'s [kafka] table: property = value)',
        G_KAFKA,
        "KEY=VALUE",
        key="kafka",
    ),
    Option(
        "kafka_stats_interval",
        "--kafka-stats-interval",
        Seconds(0.1, 86400.0, zero_is_off=True),
        "librdkafka statistics every SECONDS, for the broker metrics; 0 turns them off",
        G_KAFKA,
        "SECONDS",
    ),
    Option(
        "max_in_flight",
        "--max-in-flight",
        Int(1, 1 << 20),
        "records per connection awaiting their report before reading pauses",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_record_bytes",
        "--max-record-bytes",
        Int(2, MAX_RECORD_LIMIT),
        "largest JSON record in a v3 stream",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_request_bytes",
        "--max-request-bytes",
        Int(0, 1 << 62),
        "largest request body (Confluent's api.v3.produce.request.size.limit.max.bytes): a "
        "Content-Length over it is 413, a chunked v3 stream gets a last 413 report at that byte "
        "and stops reading; 0 means no limit",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_concurrent",
        "--max-concurrent",
        Int(0, 1 << 30),
        "produce streams and requests one principal (without authentication: one client IP) "
        "may have open at once; one more is refused with 429/42902; 0 means no limit",
        G_LIMITS,
        "N",
    ),
    Option(
        "stream_max_duration_ms",
        "--streaming-connection-max-duration-ms",
        Int(0, 1 << 40),
        "a v3 stream open this long stops reading: one last 408 report, then the response "
        "ends and the connection closes; 0 means no limit",
        G_LIMITS,
        "MS",
    ),
    Option(
        "rate_limit_enabled",
        "--api-v3-produce-rate-limit-enabled",
        Bool(),
        "the record and byte rate limits below: records over them are dropped with an "
        "in-stream 429 report (records:batch entries: 429 failures) and the stream goes on",
        G_RATES,
    ),
    Option(
        "rate_limit_records",
        "--api-v3-produce-rate-limit-max-requests-per-sec",
        Int(1, 1 << 40),
        "records/s per principal",
        G_RATES,
        "N",
    ),
    Option(
        "rate_limit_records_global",
        "--api-v3-produce-rate-limit-max-requests-global-per-sec",
        Int(1, 1 << 40),
        "records/s for the whole gateway process",
        G_RATES,
        "N",
    ),
    Option(
        "rate_limit_bytes",
        "--api-v3-produce-rate-limit-max-bytes-per-sec",
        Int(1, 1 << 50),
        "key+value bytes/s per principal",
        G_RATES,
        "N",
    ),
    Option(
        "rate_limit_bytes_global",
        "--api-v3-produce-rate-limit-max-bytes-global-per-sec",
        Int(1, 1 << 50),
        "key+value bytes/s for the whole gateway process",
        G_RATES,
        "N",
    ),
    Option(
        "max_batch_entries",
        "--max-batch-entries",
        Int(1, 50),
        "entries allowed in one records:batch request",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_batch_bytes",
        "--max-batch-bytes",
        Int(2, 1 << 30),
        "largest body answered as a whole (records:batch, v1/v2 produce), held until parsed; "
        "max-request-bytes wins when lower",
        G_LIMITS,
        "N",
    ),
    Option(
        "consumer_pool_size",
        "--consumer-pool-size",
        Int(1, 256),
        "Kafka consumers (one thread each) serving v1 consume requests; requests beyond them queue",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_consume_streams",
        "--max-consume-streams",
        Int(1, 10000),
        "streaming consume: streams open at once (one Kafka consumer each); one more is refused "
        "with 503/50301",
        G_LIMITS,
        "N",
    ),
    Option(
        "max_consumer_instances",
        "--max-consumer-instances",
        Int(0, 1 << 16),
        "consumer instances (of Confluent's v2 and the Strimzi bridge's consumer API) this "
        "process holds at once, one Kafka consumer and one thread each; one more is refused "
        "with 503/50302",
        G_LIMITS,
        "N",
    ),
    Option(
        "consumer_instance_timeout",
        "--consumer-instance-timeout",
        Seconds(0.1, 30 * 86400.0),
        "a consumer instance that gets no request for this long is closed (its consumer leaves "
        "its group)",
        G_TIMEOUTS,
        "SECONDS",
    ),
    Option(
        "advertised_url",
        "--advertised-url",
        Url(),
        "the URL clients reach this gateway at, given as the base_uri of new consumer instances "
        "(e.g. behind a load balancer); default: the listener's scheme and the request's Host",
        G_HTTP,
        "URL",
        default="none: the request's Host",
    ),
    Option(
        "header_timeout",
        "--header-timeout",
        Seconds(),
        "time allowed to send a request head",
        G_TIMEOUTS,
        "SECONDS",
    ),
    Option(
        "idle_timeout",
        "--idle-timeout",
        Seconds(),
        "close a keep-alive connection idle this long",
        G_TIMEOUTS,
        "SECONDS",
    ),
    Option(
        "stream_idle_timeout",
        "--stream-idle-timeout",
        Seconds(),
        "end a request body that sends nothing, or a client that reads nothing, for this long; "
        "0 disables",
        G_TIMEOUTS,
        "SECONDS",
    ),
    Option(
        "shutdown_timeout",
        "--shutdown-timeout",
        Seconds(),
        "on SIGTERM/SIGINT, time allowed for in-flight records to finish",
        G_TIMEOUTS,
        "SECONDS",
    ),
    Option(
        "spool_dir",
        "--spool-dir",
        Text(),
        "keep records in this directory while Kafka is unreachable, and forward them when it "
        "is back (202 reports); off by default. With --workers N, worker i uses DIR/worker-i",
        G_SPOOL,
        "DIR",
        default="none: no spool",
    ),
    Option(
        "spool_fsync",
        "--spool-fsync",
        FsyncPolicyText(),
        "when a spooled record is made durable before its 202: always (fsynced), MS (written "
        "at once, fsynced within MS milliseconds), never (written; the OS writes back)",
        G_SPOOL,
        "always|MS|never",
    ),
    Option(
        "spool_max_bytes",
        "--spool-max-bytes",
        Int(1 << 20, 1 << 50),
        "bytes the spool may hold; a record that does not fit gets a 50003 report",
        G_SPOOL,
        "N",
    ),
    Option(
        "spool_after",
        "--spool-after",
        Seconds(0.0, 3600.0),
        "how long Kafka must look unreachable before new records are spooled",
        G_SPOOL,
        "SECONDS",
    ),
    Option(
        "workers",
        "--workers",
        Int(1, 256),
        "serve from N processes sharing the listening address (SO_REUSEPORT), each with its "
        "own producer",
        G_PROCESS,
        "N",
    ),
    Option(
        "log_level",
        "--log-level",
        Text(("debug", "info", "warning", "error")),
        "debug, info, warning or error",
        G_PROCESS,
        "LEVEL",
    ),
    Option(
        "access_log",
        "--access-log",
        Bool(),
        "one gateway.access line per request, per v3 stream when it ends",
        G_PROCESS,
    ),
    Option(
        "users_file",
        "--users-file",
        File(),
        "HTTP Basic users, NAME:ARGON2-HASH lines (make them with `kafka-gateway passwd NAME`); "
        "with it every request except /, /healthz, /readyz and /metrics must authenticate "
        "(401/40101)",
        G_SECURITY,
        "FILE",
        default="none",
    ),
    Option(
        "acl_file",
        "--acl-file",
        File(),
        "ACL, PRINCIPAL produce|consume|group|all PATTERN lines (topics; group: consumer "
        "groups); what no line allows is "
        "denied (403/40301); without it, any authenticated principal may do everything",
        G_SECURITY,
        "FILE",
        default="none",
    ),
    Option(
        "tls_cert",
        "--tls-cert",
        File(),
        "serve HTTPS with this PEM certificate (chain)",
        G_SECURITY,
        "FILE",
        default="none: plain HTTP",
    ),
    Option(
        "tls_key",
        "--tls-key",
        File(),
        "PEM private key of --tls-cert (unless in that file)",
        G_SECURITY,
        "FILE",
        default="none",
    ),
    Option(
        "tls_client_ca",
        "--tls-client-ca",
        File(),
        "accept client certificates issued by these PEM CA(s); a certificate's subject CN is "
        "the principal (Basic credentials, when sent, take precedence)",
        G_SECURITY,
        "FILE",
        default="none",
    ),
    Option(
        "tls_require_client_cert",
        "--tls-require-client-cert",
        Bool(),
        "refuse a TLS handshake without a valid client certificate",
        G_SECURITY,
    ),
)

BY_DEST = {o.dest: o for o in OPTIONS}
BY_KEY = {o.file_key: o for o in OPTIONS}
BY_ENV = {o.env: o for o in OPTIONS}


def _check_table() -> None:
    """Each option is defined once: no two share a dest, a flag, an env variable or a key."""
    for what, index in (("dest", BY_DEST), ("file key", BY_KEY), ("variable", BY_ENV)):
        if len(index) != len(OPTIONS):  # pragma: no cover - caught by the first import
            raise AssertionError(f"two options share a {what}")
    fields = set(Config.__dataclass_fields__)
    for o in OPTIONS:
        if o.dest not in fields:  # pragma: no cover
            raise AssertionError(f"option {o.flag}: Config has no field {o.dest}")


_check_table()
