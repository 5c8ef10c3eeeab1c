"""What the spool answers when it cannot take records: every one is retriable (503/50003)."""

from __future__ import annotations

from gateway.errors import UpstreamError


class SpoolError(UpstreamError):
    """The spool cannot take records (closed, or failed on an I/O error): retriable."""

    status = 503
    error_code = 50003
    retriable = True  # (StreamCore.spool: the records get a 50003 report, nothing is raised)


class SpoolFull(SpoolError):
    """``--spool-max-bytes`` would be exceeded: nothing of the refused batch was spooled, and
    nothing spooled before it was dropped. Retriable once records are forwarded."""


class SpoolBusy(SpoolError):
    """The write buffer (records appended, not yet written) is over its bound: retriable as soon
    as the writer catches up (the next ``on_durable`` call)."""
