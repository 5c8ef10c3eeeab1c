"""``kafka-gateway passwd NAME [--users-file FILE] [--delete]``: make a users-file entry.

The password is read from standard input: one line from a pipe (``echo "$PW" | ...``), or
typed twice at a terminal (not echoed). Without ``--users-file`` the ``NAME:HASH`` line is
printed; with it, the file is created (mode 0600) or updated in place, atomically, keeping
every other line. A running gateway reads the file at start: restart it to apply changes.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gateway.auth.users import check_name, hash_password, parse_users
from gateway.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kafka-gateway passwd",
        description="Hash a password (argon2id) for the gateway's users file. The password is "
        "read from standard input (one line), or typed twice at a terminal.",
    )
    p.add_argument("name", help="user name (no ':')")
    p.add_argument(
        "--users-file",
        metavar="FILE",
        help="add or replace NAME's line in FILE (created with mode 0600 if missing); "
        "without it the line is printed",
    )
    p.add_argument("--delete", action="store_true", help="remove NAME from --users-file")
    return p


def read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password again: "):
            raise ConfigError("the passwords do not match")
        password = first
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ConfigError("empty password")
    return password


def update_file(path: str, name: str, line: str | None) -> None:
    """Replace (``line``) or remove (None) NAME's entry; the file stays valid throughout:
    a temporary file in the same directory is renamed over it."""
    target = Path(path)
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    parse_users(old, path)  # refuse to rewrite a file that is already broken
    out: list[str] = []
    replaced = False
    for raw in old.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#") and stripped.partition(":")[0] == name:
            if line is not None and not replaced:
                out.append(line)
            replaced = True
            continue
        out.append(raw)
    if line is None and not replaced:
        raise ConfigError(f"user {name!r} is not in {path}")
    if line is not None and not replaced:
        out.append(line)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(x + "\n" for x in out))
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        problem = check_name(args.name)
        if problem is not None:
            raise ConfigError(problem)
        if args.delete:
            if args.users_file is None:
                raise ConfigError("--delete needs --users-file")
            update_file(args.users_file, args.name, None)
            return 0
        line = f"{args.name}:{hash_password(read_password())}"
        if args.users_file is None:
            print(line)
        else:
            update_file(args.users_file, args.name, line)
    except (ConfigError, OSError) as exc:
        print(f"kafka-gateway passwd: {exc}", file=sys.stderr)
        return 2
    return 0
