"""Authentication and authorization (README "Security"): HTTP Basic against a users file of
argon2id hashes, TLS client certificates, and a per-topic ACL.

- ``users``: the users file and password hashing (blocking work, run off the event loop).
- ``acl``: the topic ACL (produce / consume, shell-style topic patterns).
- ``tls``: the listener's TLS context and a client certificate's principal.
- ``authenticator``: the event-loop side: cache, bounded verification pool, decisions.
- ``passwd``: ``kafka-gateway passwd NAME`` (also ``python -m gateway.auth passwd NAME``).
"""

from __future__ import annotations

from gateway.config import Config, ConfigError


def validate_security(cfg: Config) -> None:
    """Check the security settings and read their files once, so that a bad one fails at
    start with a clear message (ConfigError)."""
    if cfg.tls_key is not None and cfg.tls_cert is None:
        raise ConfigError("--tls-key needs --tls-cert")
    if cfg.tls_client_ca is not None and cfg.tls_cert is None:
        raise ConfigError("--tls-client-ca needs --tls-cert (client certificates need TLS)")
    if cfg.tls_require_client_cert and cfg.tls_client_ca is None:
        raise ConfigError("--tls-require-client-cert needs --tls-client-ca")
    if cfg.acl_file is not None and cfg.users_file is None and cfg.tls_client_ca is None:
        raise ConfigError(
            "--acl-file needs authentication: --users-file and/or --tls-client-ca"
        )
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
