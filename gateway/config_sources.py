"""Where the settings of ``gateway.options`` are read from, and the configuration they resolve to.

Three sources, each a ``Layer`` of checked values that remembers where each came from: flags
(argparse, built from the option table), ``GATEWAY_<NAME>`` environment variables, and a TOML
file (``--config FILE`` or ``GATEWAY_CONFIG``). Precedence: flags > environment > file >
defaults. For the two tables it holds per property and per topic: a file's ``[kafka]`` and
``-X`` flags are merged, a flag winning over the same property in the file. Every source is
checked whole at start (an unknown key, a wrong type or an out-of-range value is an error even
where another source overrides it): the message names the flag, the variable or the file and
key. Then ``check`` looks at settings together (and reads the security files once).

Also here: the configuration written back as a file (``--print-config``) and the environment a
``--workers`` process gets the supervisor's configuration in.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.options import BY_DEST, BY_ENV, BY_KEY, ENV_PREFIX, GROUPS, OPTIONS, Bool, Option

ENV_CONFIG = "GATEWAY_CONFIG"
# The supervisor of --workers hands each worker the configuration it resolved (file-format
# values as JSON): workers neither re-read a file that may have changed since nor see flags.
ENV_WORKER_CONFIG = "GATEWAY_WORKER_CONFIG"
# ... and the private run directory it shares with them (gateway.workers).
ENV_WORKER_RUN_DIR = "GATEWAY_WORKER_RUN_DIR"
# GATEWAY_ variables that are not settings (read elsewhere); any other unknown one is a warning.
# GATEWAY_HEAD_PARSER: the request-head parser twin (gateway.http.parser.HEAD_PARSER_ENV).
OTHER_ENV = frozenset(
    {"GATEWAY_TANSU_BIN", "GATEWAY_HEAD_PARSER", ENV_CONFIG, ENV_WORKER_CONFIG, ENV_WORKER_RUN_DIR}
)

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")

class Layer:
    """The values one source gives (dest -> value, each checked), and where each came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.where: dict[str, str] = {}  # dest -> "--listen", "GATEWAY_LISTEN", "gw.toml: listen"

    def set(self, option: Option, value: Any, where: str) -> None:
        if option.kind.multi and option.dest in self.values:
            self.values[option.dest].update(value)
        else:
            self.values[option.dest] = value
        self.where[option.dest] = where


def _read(where: str, read: Callable[[Any], Any], raw: Any) -> Any:
    try:
        return read(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def file_layer(data: Mapping[str, Any], label: str) -> Layer:
    """Check a parsed TOML document: every key known, every value of the right type and range."""
    layer = Layer()
    for key, raw in data.items():
        option = BY_KEY.get(key)
        if option is None:
            alias = {o.name: o.file_key for o in OPTIONS if o.name != o.file_key}
            hint = f" (use the [{alias[key]}] table)" if key in alias else _suggest(key, BY_KEY)
            what = f"table [{key}]" if isinstance(raw, dict) else f"key {key!r}"
            raise ConfigError(f"{label}: unknown {what}{hint}")
        where = f"{label}: {key}"
        layer.set(option, _read(where, option.kind.from_file, raw), where)
    return layer


def load_file(path: str) -> Layer:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
    return file_layer(data, f"config file {path}")


def env_layer(environ: Mapping[str, str]) -> Layer:
    layer = Layer()
    for option in OPTIONS:
        text = environ.get(option.env)
        if text is None or text == "":  # an empty variable is an unset one
            continue
        layer.set(option, _read(option.env, option.kind.from_env, text), option.env)
    return layer


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """Warnings for GATEWAY_ variables that are no setting (a typo would go unnoticed)."""
    out = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in BY_ENV and name not in OTHER_ENV:
            out.append(f"{name} is not a setting; it is ignored{_suggest(name, BY_ENV)}")
    return out


def flag_layer(args: argparse.Namespace) -> Layer:
    layer = Layer()
    for option in OPTIONS:
        raw = getattr(args, option.dest)
        if raw is None:
            continue
        if isinstance(raw, bool):  # BooleanOptionalAction
            layer.set(option, raw, option.flag)
        elif option.kind.multi:
            for item in raw:
                layer.set(option, _read(option.flag, option.kind.from_text, item), option.flag)
        else:
            layer.set(option, _read(option.flag, option.kind.from_text, raw), option.flag)
    return layer


def merge(layers: Sequence[Layer]) -> tuple[Config, dict[str, str]]:
    """Apply the layers in order (later wins) over the defaults; answers the configuration and
    where each value that is not a default came from. The values of a repeatable option
    merge key by key."""
    cfg = Config()
    merged: dict[str, dict[str, Any]] = {}
    where: dict[str, str] = {}
    for layer in layers:
        for dest, value in layer.values.items():
            if BY_DEST[dest].kind.multi:
                merged.setdefault(dest, {}).update(value)
            else:
                setattr(cfg, dest, value)
            where[dest] = layer.where[dest]
    for dest, value in merged.items():
        setattr(cfg, dest, value)
    return cfg, where


# --- command line ------------------------------------------------------------------------
EPILOG = """\
configuration file (--config FILE, or GATEWAY_CONFIG=FILE), TOML:
  A key is the flag's name without its dashes; values have their own type (numbers are not
  quoted, switches are true or false). -X properties are the [kafka] table, topics to create
  the [topics] table. Unknown keys, wrong types and out-of-range values stop the start.

    listen = "0.0.0.0:8082"
    bootstrap-servers = "kafka-1:9092,kafka-2:9092"
    max-in-flight = 8192
    stream-idle-timeout = 120.0
    access-log = false

    [kafka]
    compression.type = "lz4"
    linger.ms = 10

    [topics]
    orders = 12
    "audit.events" = 3

environment:
  Every flag is also read from GATEWAY_<NAME>: the flag's name in upper case with '-' as '_'
  (GATEWAY_MAX_IN_FLIGHT=8192). GATEWAY_TOPIC takes a comma-separated list (a:3,b),
  GATEWAY_X a ';'-separated list of key=value. An empty variable counts as unset.

precedence:
  flags > environment > configuration file > defaults. For -X properties and topics it holds
  per property and per topic name (the sources are merged). --print-config shows the result.
"""


def build_parser() -> argparse.ArgumentParser:
    from gateway import __version__

    defaults = Config()
    p = argparse.ArgumentParser(
        prog="kafka-gateway",
        description="HTTP gateway into Apache Kafka (Confluent REST Proxy v3 streaming produce).\n"
        "Settings come from flags, GATEWAY_<NAME> environment variables and a TOML file:\n"
        "see the end of this help.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"kafka-gateway {__version__}")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from this TOML file (also GATEWAY_CONFIG); flags and environment "
        "variables override it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective settings as a configuration file and exit",
    )
    p.add_argument("--worker-slot", type=int, help=argparse.SUPPRESS)
    groups = {name: p.add_argument_group(name) for name in GROUPS}
    for o in OPTIONS:
        default = o.default if o.default is not None else o.kind.show(getattr(defaults, o.dest))
        text = f"{o.help} (default {default})"
        g = groups[o.group]
        if isinstance(o.kind, Bool):
            g.add_argument(o.flag, dest=o.dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif o.kind.multi:
            g.add_argument(o.flag, dest=o.dest, action="append", metavar=o.metavar, help=text)
        else:
            g.add_argument(o.flag, dest=o.dest, metavar=o.metavar, help=text)
    return p


def resolve(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Config, argparse.Namespace]:
    """The effective configuration from flags, environment and file (ConfigError if invalid)."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    handed = environ.get(ENV_WORKER_CONFIG)
    if args.worker_slot is not None and handed:
        # A --workers worker: exactly what its supervisor resolved.
        try:
            data = json.loads(handed)
        except ValueError as exc:
            raise ConfigError(f"{ENV_WORKER_CONFIG}: invalid JSON: {exc}") from None
        cfg, where = merge([file_layer(data, ENV_WORKER_CONFIG)])
        cfg.worker_run_dir = environ.get(ENV_WORKER_RUN_DIR) or None
    else:
        for warning in unknown_env(environ):
            print(f"kafka-gateway: warning: {warning}", file=sys.stderr)
        layers = []
        path = args.config if args.config is not None else environ.get(ENV_CONFIG) or None
        if path:
            layers.append(load_file(path))
        layers.append(env_layer(environ))
        layers.append(flag_layer(args))
        cfg, where = merge(layers)
    cfg.worker_slot = args.worker_slot
    check(cfg, where)
    return cfg, args


def check(cfg: Config, where: Mapping[str, str] | None = None) -> None:
    """Checks across settings (each one's own type and range is checked where it is read), and
    the security files read once. ``where`` names the source of each value that is not a
    default, for the message."""
    where = where or {}

    def name(dest: str) -> str:
        return where.get(dest) or "default " + dest.replace("_", "-")

    if cfg.workers > 1 and cfg.listen[1] == 0:
        raise ConfigError(
            f"{name('workers')}: {cfg.workers} workers need a fixed listen port "
            f"(port 0 from {name('listen')} would give each its own)"
        )
    check_security(cfg)


def check_security(cfg: Config) -> None:
    """Check the security settings and read their files once, so that a bad one fails at
    start with a clear message (ConfigError)."""
    if cfg.tls_key is not None and cfg.tls_cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        raise ConfigError("--tls-client-ca needs --tls-cert (client certificates need TLS)")
    if cfg.tls_require_client_cert and cfg.tls_client_ca is None:
        raise ConfigError("--tls-require-client-cert needs --tls-client-ca")
    if cfg.acl_file is not None and cfg.users_file is None and cfg.tls_client_ca is None:
        raise ConfigError("--acl-file needs authentication: --users-file and/or --tls-client-ca")
    # The readers are imported here: argon2 and ssl only when a setting needs them.
    if cfg.users_file is not None:
        import logging

        from gateway.auth.users import read_users_file, world_readable

        if not read_users_file(cfg.users_file):
            logging.getLogger("gateway.auth").warning(
                "the users file %s has no users: every Basic login fails", cfg.users_file
            )
        if world_readable(cfg.users_file):
            logging.getLogger("gateway.auth").warning(
                "the users file %s is readable by every local user (chmod 600 it)", cfg.users_file
            )
    if cfg.acl_file is not None:
        from gateway.auth.acl import Acl

        Acl.from_file(cfg.acl_file)
    if cfg.tls_cert is not None:
        from gateway.auth.tls import server_context

        server_context(cfg)


def to_file_values(cfg: Config) -> dict[str, Any]:
    """Every setting in file form (the inverse of ``file_layer``)."""
    out = {}
    for o in OPTIONS:
        value = getattr(cfg, o.dest)
        if value is not None:
            out[o.file_key] = o.kind.to_file(value)
    return out


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string is a TOML basic string (the same escapes, \\uXXXX for controls).
    return json.dumps(value, ensure_ascii=False)


def to_toml(cfg: Config) -> str:
    """The configuration as a file ``--config`` reads back to the same settings."""
    values = to_file_values(cfg)
    lines = ["# kafka-gateway settings (kafka-gateway --print-config)"]
    tables = []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, table in tables:
        lines.append("")
        lines.append(f"[{_toml_key(key)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def worker_environ(
    cfg: Config, bootstrap: str, environ: Mapping[str, str], run_dir: str | None = None
) -> dict[str, str]:
    """The environment of a --workers worker: the supervisor's, plus the settings it resolved
    (one worker each, on the cluster the supervisor settled on) and its run directory."""
    values = to_file_values(cfg)
    values[BY_DEST["workers"].file_key] = 1
    values[BY_DEST["bootstrap_servers"].file_key] = bootstrap
    env = {k: v for k, v in environ.items() if k not in (ENV_CONFIG, ENV_WORKER_RUN_DIR)}
    env[ENV_WORKER_CONFIG] = json.dumps(values)
    if run_dir is not None:
        env[ENV_WORKER_RUN_DIR] = run_dir
    return env
