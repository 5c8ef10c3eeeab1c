"""``kafka-gateway`` command line: settings from flags, GATEWAY_<NAME> environment variables and
a TOML file (``gateway.config_sources``), then start and stop."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from gateway.config import Config
from gateway.config_sources import build_parser, resolve, to_toml
from gateway.errors import ConfigError, StartError
from gateway.log import configure as configure_logging

log = logging.getLogger("gateway")

__all__ = ["build_parser", "config_from_args", "main"]


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    """The effective configuration (flags > environment > file > defaults); ConfigError if
    any source is invalid."""
    return resolve(argv)[0]


def main(argv: Sequence[str] | None = None) -> int:
    from gateway.app import check_producer_config
    from gateway.app import main as app_main

    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["passwd"]:  # kafka-gateway passwd NAME: a users-file entry
        from gateway.auth.passwd import main as passwd_main

        return passwd_main(args_list[1:])
    if args_list[:1] == ["loadgen"]:  # kafka-gateway loadgen URL: the load generator
        from gateway.loadgen.cli import main as loadgen_main

        return loadgen_main(args_list[1:])
    try:
        cfg, args = resolve(argv)
        # Also for --print-config: what it prints must be a configuration that starts.
        check_producer_config(cfg)
    except ConfigError as exc:
        print(f"kafka-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        sys.stdout.write(to_toml(cfg))
        return 0
    who = "" if cfg.worker_slot is None else f"[worker {cfg.worker_slot}] "
    # The supervisor of --workers serves no request: its access log stays off.
    configure_logging(cfg.log_level, who=who, access_log=cfg.access_log and cfg.workers == 1)
    try:
        return app_main(cfg)
    except StartError as exc:
        print(f"kafka-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
