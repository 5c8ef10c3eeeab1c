"""Logging set-up: one line format for every logger, and the access log (``gateway.access``) on
a handler of its own that never makes the event loop wait for stderr.

The access log writes one line per request (per v3 stream: when its last report is out), so at
high request rates it is the one logger on a hot path. ``AccessLogHandler`` appends each line
to a bounded in-memory buffer (``gateway._speedups.AccessLines``) and a writer thread writes
what has gathered to stderr every ``FLUSH_INTERVAL`` seconds, so a slow or blocked stderr (a
full pipe) stalls that thread only. ``write_request`` is what the gateway calls: while the
handler that ``configure`` installed is the logger's only one, the line is formatted in C,
timestamp included (the same text the formatter would write), straight into that buffer,
skipping the ``LogRecord``, the formatter and every intermediate string; otherwise it logs
through ``logging`` as usual. Past ``MAX_PENDING_BYTES`` lines are dropped and counted
(``gateway_access_log_dropped_lines_total``) instead of growing memory.
Lines of ``gateway.access`` therefore reach stderr up to ``FLUSH_INTERVAL`` after the other
loggers' lines of the same moment; each line carries its own timestamp.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
import time
from typing import IO

from gateway._speedups import AccessLines

FORMAT = "%(asctime)s %(levelname)s {who}%(name)s: %(message)s"
FLUSH_INTERVAL = 0.1  # seconds between writes of the gathered access log lines
MAX_PENDING_BYTES = 4 * 1024 * 1024  # access log text waiting for a slow stderr
WAKE_BYTES = 64 * 1024  # wake the writer before its interval when this much has gathered
PIPE_BUF = 4096  # writes up to this size are atomic on a pipe (POSIX): workers share stderr

ACCESS_LOGGER = "gateway.access"


class CachedTimeFormatter(logging.Formatter):
    """``logging.Formatter`` with the default ``asctime`` (``2026-11-21 10:14:42,123``), its
    date and time part computed once per second instead of once per line."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._sec = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        sec = int(record.created)
        if sec != self._sec:
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(sec))
            self._sec = sec
        return "%s,%03d" % (self._prefix, record.msecs)


class AccessLogHandler(logging.Handler):
    """Formats on the caller's thread, writes on a thread of its own (see the module
    docstring). ``dropped`` counts the lines that did not fit while stderr was not taking
    them."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        interval: float = FLUSH_INTERVAL,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        super().__init__()
        self._stream = stream if stream is not None else sys.stderr
        try:
            self._fd: int | None = self._stream.fileno()
            mode = os.fstat(self._fd).st_mode
            # Other processes (--workers) may write the same pipe or socket: there a line must
            # not be cut by their writes, so writes stay within PIPE_BUF at line ends. Files
            # and terminals take each batch in one write (one GIL hand-over per batch).
            self._line_atomic = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        except (AttributeError, OSError, ValueError):
            self._fd = None  # e.g. io.StringIO: written through the stream itself
            self._line_atomic = False
        self._interval = interval
        # The pending text, formatted in C: adding and taking run under the GIL, no lock.
        self.lines = AccessLines(max_pending_bytes, WAKE_BYTES)
        self._fast = False
        self._wake = threading.Event()
        self._closed = False
        self._write_lock = threading.Lock()  # one writer at a time: the thread, or flush()
        self._thread = threading.Thread(target=self._run, name="gateway-access-log", daemon=True)
        self._thread.start()

    @property
    def fast_prefix(self) -> str | None:
        """What ``FORMAT`` writes between the timestamp and the message (" INFO
        gateway.access: "), once ``configure`` set it; None: ``write_request`` logs through
        ``logging``."""
        return self.lines.prefix if self._fast else None

    @fast_prefix.setter
    def fast_prefix(self, prefix: str | None) -> None:
        self._fast = prefix is not None
        if prefix is not None:
            self.lines.prefix = prefix

    @property
    def dropped(self) -> int:
        return self.lines.dropped

    def emit(self, record: logging.LogRecord) -> None:
        # Runs under the handler's lock (Handler.handle).
        try:
            line = self.format(record) + "\n"
        except Exception:  # noqa: BLE001 - logging's contract: report, never raise
            self.handleError(record)
            return
        if self.lines.add_text(line):
            self._wake.set()

    def _write_pending(self) -> None:
        """Write what has gathered (taken under the write lock: batches keep their order)."""
        with self._write_lock:
            data = self.lines.take()
            if not data:
                return
            try:
                fd = self._fd
                if fd is None:
                    self._stream.write(data.decode("utf-8"))
                    self._stream.flush()
                    return
                if not self._line_atomic:
                    _write_all(fd, data)
                    return
                view = memoryview(data)
                start, n = 0, len(data)
                while start < n:
                    end = start + PIPE_BUF
                    if end < n:
                        cut = data.rfind(b"\n", start, end)
                        # A line longer than PIPE_BUF goes alone (it cannot be atomic).
                        end = cut + 1 if cut >= start else (data.find(b"\n", end) + 1 or n)
                    else:
                        end = n
                    _write_all(fd, view[start:end])
                    start = end
            except (OSError, ValueError):
                pass  # stderr is gone: nothing sensible to do with the log

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write_pending()

    def flush(self) -> None:
        """Write what has gathered now (on the caller's thread: for shutdown and tests)."""
        self._write_pending()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(1.0)
        self.flush()
        super().close()


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def configure(level: str, *, who: str = "", access_log: bool = True) -> AccessLogHandler | None:
    """Every logger to stderr in one format; ``gateway.access`` (at INFO whatever ``level``
    says: it has its own switch) through an ``AccessLogHandler``, or off."""
    # Per-record fields no line shows (logging HOWTO, "Optimization"): skipped.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no sys._getframe() walk per record (same HOWTO section)
    formatter = CachedTimeFormatter(FORMAT.format(who=who))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    access = logging.getLogger(ACCESS_LOGGER)
    access.propagate = False
    for old in list(access.handlers):
        access.removeHandler(old)
        old.close()
    if not access_log:
        access.disabled = True
        return None
    access.disabled = False
    access.setLevel(logging.INFO)
    access_handler = AccessLogHandler(sys.stderr)
    access_handler.setFormatter(formatter)
    access_handler.fast_prefix = f" INFO {who}{ACCESS_LOGGER}: "  # what FORMAT writes after asctime
    access.addHandler(access_handler)
    return access_handler


_access_logger = logging.getLogger(ACCESS_LOGGER)


def write_request(peer: str, method: str | None, target: str | None, status: int,
                  bytes_in: int, bytes_out: int, ms: float, detail: str) -> None:
    """One request's access log line, ``PEER "METHOD TARGET" STATUS in=BYTES out=BYTES
    ms=MILLISECONDS[DETAIL]`` (``method`` None: "-", a head that could not be parsed; a target
    with a control character is written escaped as ``repr`` escapes it): formatted in C on the
    fast path."""
    logger = _access_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    # The handler configure() installed, while it is the logger's only way out (no filter, no
    # other handler, no propagation): the line skips logging, formatted in C.
    handlers = logger.handlers
    if len(handlers) == 1 and not logger.propagate and not logger.filters:
        h = handlers[0]
        if type(h) is AccessLogHandler and h._fast and not h.filters:
            if h.lines.add_request(peer, method, target, status, bytes_in, bytes_out, ms,
                                   detail):
                h._wake.set()
            return
    if method is None:
        line = "-"
    else:
        if target is not None and not target.isprintable():
            target = repr(target)[1:-1]  # never a raw control character in the log
        line = f"{method} {target}"
    logger.info('%s "%s" %d in=%d out=%d ms=%.1f%s', peer, line, status, bytes_in, bytes_out,
                ms, detail)


def access_log_handler() -> AccessLogHandler | None:
    for h in logging.getLogger(ACCESS_LOGGER).handlers:
        if isinstance(h, AccessLogHandler):
            return h
    return None


def flush_access_log() -> None:
    h = access_log_handler()
    if h is not None:
        h.flush()


def dropped_access_lines() -> int:
    h = access_log_handler()
    return h.dropped if h is not None else 0


__all__ = [
    "ACCESS_LOGGER",
    "AccessLogHandler",
    "CachedTimeFormatter",
    "access_log_handler",
    "configure",
    "dropped_access_lines",
    "flush_access_log",
    "write_request",
]
