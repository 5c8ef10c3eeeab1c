"""The users file of HTTP Basic authentication, and its password hashes (argon2id).

Format (one user a line; blank lines and lines starting with ``#`` are ignored)::

    # name:argon2 hash in PHC string format
    alice:$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$...

The name is everything before the first ``:`` (RFC 7617: a user-id contains no colon); the
hash carries its own salt and cost parameters, so hashes of different strengths can sit side
by side. ``kafka-gateway passwd NAME`` writes such lines.

Verifying a password costs tens of milliseconds of CPU and the hash's memory (64 MiB with
the default parameters): it is blocking work, never run on the event loop
(gateway.auth.authenticator runs it on a small thread pool).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.errors import ConfigError


def password_hasher() -> PasswordHasher:
    """argon2id with argon2-cffi's defaults (RFC 9106's second recommended option:
    t=3, m=64 MiB, p=4; a random 16-byte salt per hash)."""
    return PasswordHasher()


def hash_password(password: str | bytes, hasher: PasswordHasher | None = None) -> str:
    return (hasher or password_hasher()).hash(password)


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be a user name (None: it can)."""
    if not name:
        return "the user name is empty"
    if ":" in name:
        return "a user name cannot contain ':' (RFC 7617)"
    if not name.isprintable() or name != name.strip():
        return "a user name cannot contain control characters or surrounding spaces"
    return None


def parse_users(text: str, source: str = "users file") -> dict[str, str]:
    """``{name: hash}`` from the file's text; ConfigError says the line of a bad entry."""
    users: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        where = f"{source}:{lineno}"
        if not sep:
            raise ConfigError(f"{where}: expected NAME:HASH")
        problem = check_name(name)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")
        hashed = hashed.strip()
        if not hashed.startswith("$argon2"):
            raise ConfigError(
                f"{where}: the hash of {name!r} is not an argon2 hash "
                "(create entries with `kafka-gateway passwd NAME`)"
            )
        try:
            extract_parameters(hashed)
        except InvalidHashError:
            raise ConfigError(f"{where}: the hash of {name!r} is malformed") from None
        if name in users:
            raise ConfigError(f"{where}: user {name!r} appears twice")
        users[name] = hashed
    return users


def read_users_file(path: str) -> dict[str, str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--users-file: cannot read {path}: {exc}") from None
    return parse_users(text, path)


def world_readable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


class Users:
    """The users and their hashes; ``verify`` is blocking (call it off the event loop)."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self._hashes = dict(hashes)
        self._hasher = password_hasher()
        # Unknown names are verified against this (made on first use, on a worker thread) so
        # that they cost as long as known ones: timing tells nothing about which names exist.
        self._dummy: str | None = None

    @classmethod
    def from_file(cls, path: str) -> Users:
        return cls(read_users_file(path))

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, name: object) -> bool:
        return name in self._hashes

    def verify(self, name: str, password: bytes) -> bool:
        """True when ``password`` is ``name``'s. Blocking: tens of milliseconds."""
        hashed = self._hashes.get(name)
        if hashed is None:
            if self._dummy is None:
                self._dummy = self._hasher.hash(os.urandom(16))
            target = self._dummy
        else:
            target = hashed
        try:
            ok = self._hasher.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False
        return ok and hashed is not None
