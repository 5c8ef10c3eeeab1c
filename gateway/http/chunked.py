"""Incremental decoding of a chunked request body (RFC 9112 §7.1), fed in any split.

``ChunkedDecoder`` works in place on the connection's read buffer: it hands back
``(data_start, data_end)`` windows of body data and consumes the framing itself, never copying
body data. Errors are the classes of ``gateway.errors`` (each knows its HTTP status); messages
say the byte offset counted from the start of the body.
"""

from __future__ import annotations

import re

from gateway.errors import BadRequest, HeadersTooLarge
from gateway.http.parser import DEFAULT_LIMITS, TCHAR, HttpLimits

__all__ = ["ChunkedDecoder"]

_S_SIZE = 0  # reading a chunk-size line (possibly partly held in _line)
_S_DATA = 1  # inside chunk data, _remaining bytes to go
_S_DATA_CR = 2  # chunk data done: expect CR or LF
_S_DATA_LF = 3  # got the CR after chunk data: expect LF
_S_TRAILER = 4  # after the last chunk: trailer field lines until an empty line
_S_DONE = 5

_HEXDIGITS = b"0123456789abcdefABCDEF"
_MAX_SIZE_DIGITS = 16
# The common size line, whole and without extensions; one match finds, checks and bounds it.
_PLAIN_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})\r?\n")
_QDTEXT = r"\t !#-\[\]-~\x80-\xff"
# RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] );
# matched from the first ';' (the BWS before it is stripped with the size).
_CHUNK_EXT = re.compile(
    (
        rf'(?:;[ \t]*[{TCHAR}]+(?:[ \t]*=[ \t]*(?:[{TCHAR}]+|"(?:[{_QDTEXT}]|\\[\t -~\x80-\xff])*"))?'
        r"[ \t]*)*"
    ).encode("latin-1")
)
_TRAILER_NAME = re.compile(f"[{TCHAR}]+".encode())
_TRAILER_FORBIDDEN = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class ChunkedDecoder:
    """Decode a chunked request body (RFC 9112 §7.1) fed in any split.

    ``feed(buf, pos, end)`` consumes framing and answers ``(new_pos, data_start, data_end)``:
    when ``data_end > data_start`` the window is body data (and ``new_pos == data_end``); call
    again from ``new_pos``. Otherwise every byte up to ``end`` went into the decoder's state,
    or ``done`` became true and ``new_pos`` is just past the body (what follows belongs to the
    next pipelined request). Chunk extensions and trailer fields are checked and dropped.
    """

    __slots__ = (
        "done",
        "bytes_received",
        "_state",
        "_remaining",
        "_line",
        "_max_line",
        "_max_trailer",
        "_trailer_bytes",
        "_consumed",
    )

    def __init__(self, limits: HttpLimits = DEFAULT_LIMITS) -> None:
        self.done = False
        self.bytes_received = 0  # body data bytes handed out so far
        self._state = _S_SIZE
        self._remaining = 0
        self._line = bytearray()  # a size or trailer line split across feeds (bounded)
        self._max_line = limits.max_chunk_line
        self._max_trailer = limits.max_trailer_bytes
        self._trailer_bytes = 0
        self._consumed = 0  # body bytes consumed before the current feed, for error offsets

    def feed(self, buf: bytearray | bytes, pos: int, end: int) -> tuple[int, int, int]:
        start = pos
        state = self._state
        while pos < end:
            if state == _S_DATA:
                rem = self._remaining
                n = end - pos
                if n >= rem:
                    n = rem
                    self._remaining = 0
                    self._state = _S_DATA_CR
                else:
                    self._remaining = rem - n
                    self._state = _S_DATA
                self.bytes_received += n
                q = pos + n
                self._consumed += q - start
                return q, pos, q
            if state == _S_DATA_CR:
                c = buf[pos]
                if c == 13:
                    if pos + 1 < end and buf[pos + 1] == 10:  # the usual CRLF in one go
                        pos += 2
                        state = _S_SIZE
                        continue
                    state = _S_DATA_LF
                elif c == 10:
                    state = _S_SIZE
                else:
                    raise self._error(
                        "chunk data not followed by CRLF (chunk longer than its size?)",
                        pos - start,
                    )
                pos += 1
            elif state == _S_SIZE:
                # Fast path for the per-chunk cost (a streaming client may send one small
                # record per chunk): a whole, plain "hex CRLF" line with nothing held over.
                if not self._line:
                    m = _PLAIN_SIZE_LINE.match(buf, pos, end)
                    if m is not None:
                        size = int(m[1], 16)
                        pos = m.end()
                        if size:
                            self._remaining = size
                            state = _S_DATA
                        else:
                            state = _S_TRAILER
                        continue
                pos, state = self._size_line(buf, pos, end, start)
            elif state == _S_DATA_LF:
                if buf[pos] != 10:
                    raise self._error("chunk data followed by CR without LF", pos - start)
                state = _S_SIZE
                pos += 1
            elif state == _S_TRAILER:
                pos, state = self._trailer_line(buf, pos, end, start)
                if state == _S_DONE:
                    self.done = True
                    break
            else:  # _S_DONE: bytes after the body are not ours
                break
        self._state = state
        self._consumed += pos - start
        return pos, pos, pos

    def _error(self, message: str, offset: int) -> BadRequest:
        return BadRequest(
            f"malformed chunked body: {message} (at body byte {self._consumed + offset})"
        )

    def _take_line(
        self, buf: bytearray | bytes, pos: int, end: int, room: int
    ) -> tuple[int, bytes | bytearray | None]:
        """Find the line starting at pos (plus any held partial line) whose LF is within
        ``room`` more bytes. Answers (new_pos, line without LF) or (end, None) if incomplete;
        raises LookupError when no LF can come within room."""
        lim = pos + room
        if lim > end:
            lim = end
        nl = buf.find(b"\n", pos, lim)
        part = self._line
        if nl < 0:
            if end - pos >= room:
                raise LookupError
            part += buf[pos:end]
            return end, None
        if part:
            part += buf[pos:nl]
            line: bytes | bytearray = bytes(part)
            part.clear()
        else:
            line = buf[pos:nl]
        return nl + 1, line

    def _size_line(self, buf: bytearray | bytes, pos: int, end: int, start: int) -> tuple[int, int]:
        max_line = self._max_line
        try:
            new_pos, line = self._take_line(buf, pos, end, max_line + 2 - len(self._line))
        except LookupError:
            raise self._error(
                f"chunk-size line longer than {max_line} bytes", pos - start - len(self._line)
            ) from None
        if line is None:
            return new_pos, _S_SIZE
        line_start = new_pos - start - len(line) - 1
        if line[-1:] == b"\r":
            line = line[:-1]
        if len(line) > max_line:
            raise self._error(f"chunk-size line longer than {max_line} bytes", line_start)
        semi = line.find(b";")
        if semi >= 0:
            digits = line[:semi].rstrip(b" \t")
            if _CHUNK_EXT.fullmatch(line, semi) is None:
                raise self._error("malformed chunk extension", line_start + semi)
        else:
            digits = line
        if not digits or len(digits) > _MAX_SIZE_DIGITS or digits.translate(None, _HEXDIGITS):
            raise self._error(
                f"chunk size must be 1 to {_MAX_SIZE_DIGITS} hex digits, got {bytes(digits)[:40]!r}",
                line_start,
            )
        size = int(digits, 16)
        if size:
            self._remaining = size
            return new_pos, _S_DATA
        return new_pos, _S_TRAILER

    def _trailer_line(
        self, buf: bytearray | bytes, pos: int, end: int, start: int
    ) -> tuple[int, int]:
        budget = self._max_trailer - self._trailer_bytes
        # +2 so the final empty line (not counted) is still recognised with no budget left.
        room = budget - len(self._line) + 2
        try:
            new_pos, line = self._take_line(buf, pos, end, room)
        except LookupError:
            raise HeadersTooLarge(
                f"chunked trailer section larger than {self._max_trailer} bytes"
            ) from None
        if line is None:
            return new_pos, _S_TRAILER
        size = len(line) + 1
        if line[-1:] == b"\r":
            line = line[:-1]
        if not line:
            return new_pos, _S_DONE
        if size > budget:
            raise HeadersTooLarge(f"chunked trailer section larger than {self._max_trailer} bytes")
        self._trailer_bytes += size
        line_start = new_pos - start - size
        colon = line.find(b":")
        if colon < 0 or _TRAILER_NAME.fullmatch(line, 0, colon) is None:
            raise self._error("malformed trailer field line", line_start)
        if _TRAILER_FORBIDDEN.search(line, colon) is not None:
            raise self._error("control character in a trailer field", line_start)
        return new_pos, _S_TRAILER
