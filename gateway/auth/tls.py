"""TLS on the listener (Python's ssl module on the asyncio server), and the principal a
verified client certificate names."""

from __future__ import annotations

import ssl
from typing import Any

from gateway.config import Config
from gateway.errors import ConfigError


def server_context(cfg: Config) -> ssl.SSLContext | None:
    """The listener's TLS context (None: plain HTTP). ConfigError for unreadable or
    mismatched certificate files, so a bad one fails at start."""
    if cfg.tls_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"--tls-cert/--tls-key: cannot load {cfg.tls_cert}"
            + (f" with {cfg.tls_key}" if cfg.tls_key else "")
            + f": {exc}"
        ) from None
    if cfg.tls_client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=cfg.tls_client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-client-ca: cannot load {cfg.tls_client_ca}: {exc}") from None
        # Optional: a client without a certificate may still authenticate with Basic.
        ctx.verify_mode = ssl.CERT_REQUIRED if cfg.tls_require_client_cert else ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def cert_principal(peercert: Any) -> str | None:
    """The principal of a verified client certificate: its subject's common name (the last
    CN when there are several, the most specific by convention). None without a verified
    certificate or without a CN. ``peercert`` is ``SSLObject.getpeercert()``: the server
    only sees a non-empty one when the certificate chained to --tls-client-ca."""
    if not peercert:
        return None
    name = None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and value:
                name = value
    return name
