"""The ACL: which principal may produce to or consume from which topics, and use which consumer
groups.

Format (one rule a line, fields separated by spaces or tabs; blank lines and lines starting
with ``#`` are ignored)::

    # principal   operation   pattern
    alice         produce     orders.*
    bob           consume     orders.eu
    bob           group       billing-*
    ops           all         *
    *             consume     public-*

- principal: a user name of the users file, or a client certificate's CN; ``*`` is any
  authenticated principal.
- operation: ``produce`` or ``consume`` (the pattern names topics), ``group`` (the pattern
  names consumer groups: create and use consumer instances in them), or ``all`` (all three).
- pattern: shell-style, case-sensitive (``fnmatch.fnmatchcase``): ``*`` any run of
  characters, ``?`` one character, ``[abc]`` one of a set.

Rules only allow: what no rule allows is denied. Decisions are cached per (principal,
operation, name), in a bounded table, so a request costs one dictionary lookup.
"""

from __future__ import annotations

import re
from fnmatch import translate
from pathlib import Path

from gateway.errors import ConfigError

PRODUCE = 1
CONSUME = 2
GROUP = 4  # on a consumer group's name, not a topic's
ANY = PRODUCE | CONSUME  # "some permission on the topic" (its metadata reads)
_OPERATIONS = {"produce": PRODUCE, "consume": CONSUME, "group": GROUP, "all": PRODUCE | CONSUME | GROUP}
EVERYTHING = "*"
ANYONE = "*"
DECISION_CACHE_SIZE = 16384


class Acl:
    def __init__(self, rules: list[tuple[str, int, str]]) -> None:
        self.rules = list(rules)
        # principal -> [(operations, compiled pattern)]; "*" rules apply to everyone.
        self._by_principal: dict[str, list[tuple[int, re.Pattern[str]]]] = {}
        for principal, ops, pattern in rules:
            self._by_principal.setdefault(principal, []).append((ops, re.compile(translate(pattern))))
        self._decisions: dict[tuple[str, int, str], bool] = {}

    @classmethod
    def from_file(cls, path: str) -> Acl:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--acl-file: cannot read {path}: {exc}") from None
        return cls(parse_acl(text, path))

    def allows(self, principal: str, operation: int, topic: str) -> bool:
        """True when a rule grants ``principal`` the operation (``ANY``: either) on ``topic``."""
        key = (principal, operation, topic)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(principal, operation, topic)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()  # bounded; rebuilt from the rules on demand
            self._decisions[key] = decision
        return decision

    def allows_every(self, principal: str, operation: int) -> bool:
        """True when a rule grants ``principal`` the operation on every name (pattern ``*``):
        what a subscription to a topic pattern needs, since it may match any topic, now or
        later."""
        return any(
            ops & operation and pattern == EVERYTHING
            for who, ops, pattern in self.rules
            if who in (principal, ANYONE)
        )

    def _decide(self, principal: str, operation: int, topic: str) -> bool:
        for who in (principal, ANYONE):
            for ops, pattern in self._by_principal.get(who, ()):
                if ops & operation and pattern.match(topic):
                    return True
        return False


def parse_acl(text: str, source: str = "ACL file") -> list[tuple[str, int, str]]:
    rules: list[tuple[str, int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{source}:{lineno}"
        if len(fields) != 3:
            raise ConfigError(f"{where}: expected PRINCIPAL OPERATION PATTERN, got {line!r}")
        principal, operation, pattern = fields
        ops = _OPERATIONS.get(operation.lower())
        if ops is None:
            raise ConfigError(
                f"{where}: unknown operation {operation!r} (produce, consume, group or all)"
            )
        rules.append((principal, ops, pattern))
    return rules
