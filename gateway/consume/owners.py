"""Which ``--workers`` process holds each consumer instance: ownership records in the run
directory the supervisor shares with its workers (gateway.workers). Knows files, not HTTP.

A worker that creates an instance first **claims** its (group, name): a record file named from
a hash of the two, created whole or not at all (written under a temporary name, then linked
to its own: ``link`` fails when the name exists, and a reader never sees a half-written
record). The record holds the worker's slot and pid. A name another worker holds cannot be
claimed (``InstanceExists``, 409/40902): instance names are unique across the workers, as in
one process. The record goes when the instance goes (delete, expiry, shutdown,
``InstanceRegistry._forget``).

A worker that starts in a slot first removes the records of that slot (``clear``): the
instances they name died with the process that had the slot before. Between that process's
death and its successor's start, a worker that finds a record of the dead one (its hand-off
socket refuses the connection) removes it (``forget``): the name is free again at once.

Each call is one or two system calls on a small local directory (a stat, an open, a link, an
unlink): they run on the event loop, like the socket calls around them.
"""

from __future__ import annotations

import hashlib
import logging
import os

from gateway import errors
from gateway.consume.instances import InstanceExists

log = logging.getLogger("gateway.consume")

PREFIX = "instance-"
RECORD_MAX = 64  # bytes of a record's content ("<slot> <pid>\n")


def record_name(group: str, name: str) -> str:
    """The record's file name: a hash of the group and the instance name (any characters, up to
    255 each, fit in one short file name)."""
    digest = hashlib.sha256(group.encode() + b"\x00" + name.encode()).hexdigest()
    return PREFIX + digest[:40]


class RecordFailed(errors.GatewayError):
    """500/500: the run directory refused a record (it is full, or gone)."""


def _parse(content: bytes) -> tuple[int, int] | None:
    """(slot, pid) of a record, None when it is not one."""
    parts = content.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


class InstanceOwners:
    """The ownership records of one worker (``slot``) in ``directory`` (see the module
    docstring)."""

    def __init__(self, directory: str, slot: int, pid: int | None = None) -> None:
        self.directory = directory
        self.slot = slot
        self.pid = os.getpid() if pid is None else pid
        self._content = b"%d %d\n" % (slot, self.pid)

    def _path(self, group: str, name: str) -> str:
        return os.path.join(self.directory, record_name(group, name))

    def _read(self, path: str) -> tuple[int, int] | None:
        try:
            with open(path, "rb") as f:
                return _parse(f.read(RECORD_MAX))
        except FileNotFoundError:
            return None
        except OSError as exc:  # (not expected in a directory of our own)
            log.warning("cannot read the ownership record %s: %s", path, exc)
            return None

    def clear(self) -> int:
        """Remove the records of this worker's slot (a process that had the slot before left
        them: their instances died with it); how many."""
        removed = 0
        own_tmp = f".{self.slot}.tmp"
        for entry in os.listdir(self.directory):
            if not entry.startswith(PREFIX):
                continue
            path = os.path.join(self.directory, entry)
            if entry.endswith(own_tmp):  # a claim cut short
                _unlink(path)
                continue
            if "." in entry:
                continue
            owner = self._read(path)
            if owner is not None and owner[0] == self.slot and _unlink(path):
                removed += 1
        return removed

    def claim(self, group: str, name: str) -> None:
        """Take (group, name) for this worker; ``InstanceExists`` when a worker holds it."""
        path = self._path(group, name)
        tmp = f"{path}.{self.slot}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, self._content)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            finally:
                _unlink(tmp)
        except FileExistsError:
            owner = self._read(path)
            where = f" (worker {owner[0]})" if owner is not None else ""
            raise InstanceExists(
                "Consumer with specified consumer ID already exists in the specified consumer "
                f"group: group {group} has an instance named {name}{where}"
            ) from None
        except OSError as exc:
            raise RecordFailed(
                f"cannot record which worker holds consumer instance {name} of group {group} "
                f"in {self.directory}: {exc}"
            ) from None

    def release(self, group: str, name: str) -> None:
        """The instance is gone: remove its record (this worker's only)."""
        path = self._path(group, name)
        if self._read(path) == (self.slot, self.pid):
            _unlink(path)

    def owner(self, group: str, name: str) -> tuple[int, int] | None:
        """(slot, pid) of the other worker that holds (group, name); None when none does (no
        record, or this worker's own)."""
        found = self._read(self._path(group, name))
        if found is None or found[0] == self.slot:
            return None
        return found

    def forget(self, group: str, name: str, owner: tuple[int, int]) -> bool:
        """Remove the record of ``owner`` (slot, pid), a worker found gone (its hand-off socket
        refuses connections), unless the record has changed meanwhile. True if removed."""
        path = self._path(group, name)
        if self._read(path) != owner or not _unlink(path):
            return False
        log.info("consumer instance %s of group %s was held by worker %d (pid %d), which is "
                 "gone: its name is free", name, group, owner[0], owner[1])
        return True


def _unlink(path: str) -> bool:
    """Remove a file; False when it was not there (or could not be removed: logged)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
        return False
    return True
