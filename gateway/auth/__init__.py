"""Authentication and authorization (README "Security"): HTTP Basic against a users file of
argon2id hashes, TLS client certificates, and a per-topic ACL.

- ``users``: the users file and password hashing (blocking work, run off the event loop).
- ``acl``: the topic ACL (produce / consume, shell-style topic patterns).
- ``tls``: the listener's TLS context and a client certificate's principal.
- ``authenticator``: the event-loop side: cache, bounded verification pool, decisions.
- ``passwd``: ``kafka-gateway passwd NAME`` (also ``python -m gateway.auth passwd NAME``).

The settings are checked, and these files read once, at start by
``gateway.config_sources.check_security``.
"""
