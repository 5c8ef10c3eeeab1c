"""The read buffer a connection owns (``asyncio.BufferedProtocol``, as picows does it).

The event loop reads straight into the free tail that ``get_buffer`` hands out; the subclass
parses ``_buf[_start:_end]`` in place, advancing ``_start``, and hands body bytes on as
memoryviews that do not outlive the call. Unparsed bytes move to the front when room is
needed.

The buffer starts small (an idle keep-alive or stream connection costs little: 10,000 open
streams must fit in a modest RSS), doubles while reads keep filling it (a busy stream reads in
large pieces), and shrinks back once the connection is idle with nothing buffered. It never
grows past ``READ_BUFFER_MAX``: a full buffer is the subclass's reason to pause reading.
"""

from __future__ import annotations

import asyncio

READ_BUFFER_INITIAL = 4 * 1024
READ_BUFFER_MAX = 256 * 1024
MIN_READ_SPACE = 1024  # compact, grow or pause when less than this is free
SHRINK_AFTER_IDLE = 2.0  # seconds without input before a grown, empty buffer is given back


class ReadBuffer(asyncio.BufferedProtocol):
    """Owns ``_buf`` (with its memoryview ``_view``); ``_buf[_start:_end]`` is what was read and
    not parsed yet. ``get_buffer`` is the loop's entry point and makes room as needed.

    The subclass's ``buffer_updated(nbytes)`` books each read with these two lines, written
    out there rather than called because they run on every socket read::

        self._end += nbytes
        if nbytes >= self._offered and len(self._buf) < READ_BUFFER_MAX:
            self._grow = True  # the read filled what was offered: offer more next time
    """

    __slots__ = ("_buf", "_view", "_start", "_end", "_offered", "_grow")

    def __init__(self) -> None:
        self._buf = bytearray(READ_BUFFER_INITIAL)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._offered = 0  # size of the space handed out by the last get_buffer
        self._grow = False  # the last read filled what was offered: offer more next time

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._grow or len(self._buf) - self._end < MIN_READ_SPACE:
            self._make_room()
        self._offered = len(self._buf) - self._end
        return self._view[self._end :]

    def _make_room(self) -> bool:
        """Compact; double the buffer (up to READ_BUFFER_MAX) if reads keep filling it or
        compacting freed too little. False: still less than MIN_READ_SPACE free (the buffer is
        full at its largest; reading must pause until the parser consumes some)."""
        self._compact()
        size = len(self._buf)
        if (self._grow or size - self._end < MIN_READ_SPACE) and size < READ_BUFFER_MAX:
            self._resize(min(size * 2, READ_BUFFER_MAX))
        self._grow = False
        return len(self._buf) - self._end >= MIN_READ_SPACE

    def _compact(self) -> None:
        start, end = self._start, self._end
        if start == 0:
            return
        n = end - start
        if n:
            self._buf[0:n] = self._buf[start:end]
        self._start = 0
        self._end = n

    def _resize(self, size: int) -> None:
        # Only between callbacks: no view of the old buffer is alive (body consumers copy).
        n = self._end - self._start
        buf = bytearray(size)
        buf[0:n] = self._buf[self._start : self._end]
        self._buf = buf
        self._view = memoryview(buf)
        self._start = 0
        self._end = n

    def _shrink_if_idle(self, idle: float) -> None:
        """Give a grown buffer back once ``idle`` seconds passed without input and nothing is
        buffered."""
        if (
            self._start == self._end
            and len(self._buf) > READ_BUFFER_INITIAL
            and idle > SHRINK_AFTER_IDLE
        ):
            self._resize(READ_BUFFER_INITIAL)

    def _drop_unparsed(self) -> None:
        """Forget what is buffered (a connection that reads only to discard)."""
        self._start = self._end = 0

    @property
    def buffered(self) -> int:
        """Bytes read and not parsed yet."""
        return self._end - self._start

    @property
    def buffer_size(self) -> int:
        return len(self._buf)
