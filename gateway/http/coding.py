"""Content codings (RFC 9110 §8.4): compressed request bodies decoded, report streams encoded.

Request bodies. ``request_codings`` reads ``Content-Encoding``: a list of codings in the order
they were applied (``identity`` is no coding; ``x-gzip`` is gzip, §8.4.1.3), each one of
``gzip``, ``deflate`` or ``zstd``; anything else is ``UnsupportedContentEncoding`` (415 with an
``Accept-Encoding`` header naming what is taken, §15.5.16). The connection puts a
``BodyDecoder`` between its framing and the body consumer, which then sees plain bytes: the
produce code never knows a body was compressed, and every limit it applies counts decoded bytes.

The decoder works in bounded steps: each stage takes at most ``IN_SLICE`` input bytes and gives
at most ``OUT_STEP`` output bytes per call (zlib's ``max_length``, zstd's ``max_length``), and
the decoder hands each step to the consumer only while it accepts. What it cannot hand on yet
stays compressed (the rest of the piece, at most one read of the connection, and the
decompressor's own state): a small body that inflates to gigabytes costs one output step of
memory at a time, and the consumer's limits (``--max-request-bytes``, the held-body limit) stop
it. A flush point of the client (zlib's Z_SYNC_FLUSH, zstd's flush) gives every byte before it
at once: a stage is asked for output until it says it has none without more input.

- ``gzip``: RFC 1952, several members one after the other (as ``cat a.gz b.gz`` makes them).
- ``deflate``: RFC 9110 says the zlib format (RFC 1950); some clients send raw deflate (RFC
  1951) under that name. The first two bytes tell them apart: a valid zlib header (method 8,
  window at most 32 KiB, no preset dictionary, header checksum) is zlib, anything else raw.
- ``zstd``: RFC 8878, frames one after the other, windows up to 8 MiB (RFC 9659; a frame
  asking for more is refused, 400).

Corrupt data, a body that ends inside its compressed data, or data after the end of a deflate
stream raise ``BadRequest`` (400): the connection cuts the body as for broken chunked framing.
A body of no bytes at all is empty, whatever its coding.

Report streams. ``response_coding`` picks, from ``Accept-Encoding`` (§12.5.3, q-values
honoured, ``*`` and ``identity`` understood), ``gzip`` or ``zstd`` for a v3 stream's reports, or
none; ``BodyEncoder`` compresses each write and flushes it (Z_SYNC_FLUSH, zstd FLUSH_BLOCK), so
every report still reaches the client when it is written.

Inflating uses ISA-L (``isal.isal_zlib``), which bench/inflate.py measured against zlib on
telemetry bodies (README "Compressed bodies"); zstd is ``backports.zstd``, CPython 3.14's
``compression.zstd`` for earlier versions (python-zstandard has no bounded incremental
decompression that gives out the data before a flush point).
"""

from __future__ import annotations

import sys
import zlib
from types import ModuleType
from typing import Any, Protocol

import isal.isal_zlib as isal_zlib

from gateway.errors import BadRequest, PeerError

if sys.version_info >= (3, 14):  # pragma: no cover - the standard library's own
    from compression import zstd  # type: ignore[import-not-found]
else:
    from backports import zstd

__all__ = [
    "ACCEPT_ENCODING",
    "BodyDecoder",
    "BodyEncoder",
    "UnsupportedContentEncoding",
    "request_codings",
    "response_coding",
]

# What a request body may be coded with, by the names a client may use for them.
REQUEST_CODINGS = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "zstd": "zstd"}
# The answer of a 415 for a coding we do not take (RFC 9110 §12.5.3, §15.5.16).
ACCEPT_ENCODING = b"Accept-Encoding: gzip, deflate, zstd\r\n"
# Codings one body may carry, applied one over the other: more is refused (415), a chain of
# codings costs a decoder each and no client needs more.
MAX_CODINGS = 3

# Report streams: the codings offered, best first (the tie-break among equal q-values): zstd
# took fewer bytes and less CPU per report than gzip (bench/wire.py, README "Compressed bodies").
RESPONSE_CODINGS = ("zstd", "gzip")

IN_SLICE = 16 * 1024  # compressed bytes a stage takes per call
OUT_STEP = 64 * 1024  # decoded bytes a stage gives per call (the consumer's feed size)
# Decoded bytes handed on per call of ``feed``/``pump`` before the connection lets the event
# loop run something else (and calls ``pump`` again from a callback of its own).
OUT_BUDGET = 1024 * 1024

ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB (RFC 9659)

# The inflate implementation (measured: bench/inflate.py).
INFLATE: ModuleType = isal_zlib


class UnsupportedContentEncoding(PeerError):
    """A request body in a coding the gateway does not decode: 415, with ``Accept-Encoding``
    listing the codings it does (RFC 9110 §15.5.16)."""

    status = 415
    error_code = 415
    headers = ACCEPT_ENCODING


def request_codings(content_encoding: str | None) -> tuple[str, ...]:
    """The codings of a request body, in the order they were applied (``Content-Encoding``'s
    value, every field line joined); () for none. Raises ``UnsupportedContentEncoding``."""
    if content_encoding is None:
        return ()
    out: list[str] = []
    for item in content_encoding.split(","):
        name = item.strip(" \t")
        if not name or name.lower() == "identity":
            continue
        coding = REQUEST_CODINGS.get(name.lower())
        if coding is None:
            raise UnsupportedContentEncoding(
                f"Content-Encoding {name!r} is not supported: the request body may be coded "
                "with gzip, deflate or zstd"
            )
        out.append(coding)
    if len(out) > MAX_CODINGS:
        raise UnsupportedContentEncoding(
            f"Content-Encoding lists {len(out)} codings: at most {MAX_CODINGS} are decoded"
        )
    return tuple(out)


def _qvalue(params: str) -> float | None:
    """The weight of one Accept-Encoding element's parameters (1 without ``q``); None when
    malformed (the element then says nothing)."""
    q = 1.0
    for param in params.split(";"):
        name, eq, value = param.partition("=")
        if not name.strip(" \t") and not eq:
            continue
        if name.strip(" \t").lower() != "q":
            return None  # codings take no other parameter
        value = value.strip(" \t")
        try:
            q = float(value)
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0 or len(value) > 5:
            return None
    return q


def response_coding(accept_encoding: str | None) -> str | None:
    """The coding of a report stream for ``Accept-Encoding`` (every field line joined): the
    offered coding with the highest weight above 0 (ties: ``RESPONSE_CODINGS`` order), unless
    ``identity`` weighs more; None without the header, with an empty one, or when nothing
    offered is acceptable (the reports then go uncoded: RFC 9110 §12.5.3 lets a server
    disregard the header rather than refuse)."""
    if accept_encoding is None:
        return None
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip(" \t").lower()
        if not name:
            continue
        q = _qvalue(params) if params else 1.0
        if q is None:
            continue
        if name == "x-gzip":
            name = "gzip"
        weights.setdefault(name, q)  # the first mention counts
    star = weights.get("*")
    best: str | None = None
    best_q = 0.0
    for coding in RESPONSE_CODINGS:
        q = weights.get(coding, star if star is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    if best is None:
        return None
    identity = weights.get("identity", star)
    if identity is not None and identity > best_q:
        return None
    return best


# -- decoding ---------------------------------------------------------------------------------
class Sink(Protocol):
    """The body consumer, as the decoder sees it (gateway.http.handler.BodyConsumer)."""

    @property
    def accepting(self) -> bool: ...

    def on_body(self, data: memoryview) -> None: ...


class _Stage:
    """One coding undone: compressed bytes in (``push``), decoded bytes out (``pull``)."""

    __slots__ = ("name", "_in", "_pos", "consumed", "started")

    def __init__(self, name: str) -> None:
        self.name = name
        self._in: bytes | memoryview = b""  # input not yet given to the decompressor
        self._pos = 0
        self.consumed = 0  # compressed bytes given to the decompressor so far
        self.started = False  # any byte at all came in

    def push(self, data: bytes | memoryview) -> None:
        """More input; only once the stage has used what it had (``pull`` gave b"")."""
        self._in = data
        self._pos = 0
        if data:
            self.started = True

    def keep(self) -> None:
        """The input left is a view of the connection's buffer: copy it (bounded by one read)."""
        if isinstance(self._in, memoryview):
            self._in = bytes(self._in[self._pos :])
            self._pos = 0

    def _slice(self) -> bytes | memoryview:
        pos = self._pos
        piece = self._in[pos : pos + IN_SLICE]
        self._pos = pos + len(piece)
        self.consumed += len(piece)
        return piece

    @property
    def has_input(self) -> bool:
        return self._pos < len(self._in)

    @property
    def pending(self) -> bool:
        """Input left, or output that needs none: ``pull`` before ``push``."""
        raise NotImplementedError

    def pull(self, max_length: int) -> bytes:
        """Up to ``max_length`` decoded bytes; b"" when the stage needs more input (or ended)."""
        raise NotImplementedError

    def finish(self) -> None:
        """The input has ended: raise BadRequest if it ended inside the compressed data."""
        raise NotImplementedError

    def _corrupt(self, exc: Exception) -> BadRequest:
        return BadRequest(
            f"the request body is not valid {self.name} data ({exc}; within its first "
            f"{self.consumed} compressed bytes)"
        )


class _Inflate(_Stage):
    """gzip (RFC 1952, member after member) and deflate (RFC 1950 zlib, or raw RFC 1951)."""

    __slots__ = ("_d", "_more", "_gzip", "_module", "_sniff", "_ended", "_member_start")

    def __init__(self, name: str, module: ModuleType = INFLATE) -> None:
        super().__init__(name)
        self._module = module
        self._gzip = name == "gzip"
        # deflate: the decompressor is made once the first two bytes told zlib from raw.
        self._d: Any = module.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None
        self._sniff = b""  # deflate: the first bytes, until there are two
        self._more = False  # the last call filled max_length: more output may come without input
        self._ended = False  # deflate: the stream has ended; nothing may follow
        self._member_start = 0  # gzip: ``consumed`` when the current member began

    @property
    def pending(self) -> bool:
        d = self._d
        return self._more or self._pos < len(self._in) or (d is not None and bool(d.unconsumed_tail))

    def pull(self, max_length: int) -> bytes:
        while True:
            d = self._d
            if d is None:  # deflate, not yet told zlib from raw
                if not self._start_deflate():
                    return b""
                continue
            try:
                tail = d.unconsumed_tail
                if tail:
                    out = d.decompress(tail, max_length)
                elif self._more:
                    out = d.decompress(b"", max_length)
                elif self._pos < len(self._in):
                    if self._ended:
                        raise BadRequest(
                            f"the request body has data after the end of its {self.name} "
                            f"stream (at compressed byte {self.consumed})"
                        )
                    out = d.decompress(self._slice(), max_length)
                else:
                    return b""
            except self._module.error as exc:
                raise self._corrupt(exc) from None
            self._more = len(out) == max_length
            if d.eof:
                self._more = False  # (the end comes after the last output)
                self._stream_end(d)
            if out:
                return out

    def _start_deflate(self) -> bool:
        """Tell zlib-wrapped deflate from raw by its first two bytes (RFC 1950 §2.2)."""
        piece = self._in[self._pos : self._pos + 2 - len(self._sniff)]
        self._pos += len(piece)
        self._sniff += bytes(piece)
        if len(self._sniff) < 2:
            return False
        cmf, flg = self._sniff[0], self._sniff[1]
        zlib_header = (
            cmf & 0x0F == 8 and cmf >> 4 <= 7 and not flg & 0x20 and (cmf << 8 | flg) % 31 == 0
        )
        self._d = self._module.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        # The two bytes go in with the rest, the usual way.
        self._in = self._sniff + bytes(self._in[self._pos :])
        self._pos = 0
        return True

    def _stream_end(self, d: Any) -> None:
        """The decompressor reached the end of a gzip member or of the deflate stream."""
        rest = d.unused_data
        if rest:
            self.consumed -= len(rest)
        if not self._gzip:
            self._ended = True  # deflate is one stream: what follows is refused
            if rest:
                raise BadRequest(
                    f"the request body has data after the end of its {self.name} stream "
                    f"(at compressed byte {self.consumed})"
                )
            return
        # gzip: another member may follow (RFC 1952 §2.2).
        self._d = self._module.decompressobj(16 + zlib.MAX_WBITS)
        self._member_start = self.consumed
        if rest:
            self._in = bytes(rest) + bytes(self._in[self._pos :])
            self._pos = 0

    def finish(self) -> None:
        if not self.started:
            return  # no bytes at all: an empty body
        if self._gzip:
            if self.consumed == self._member_start:
                return  # between members
        elif self._ended:
            return
        raise BadRequest(
            f"the request body ends inside its {self.name} data (after {self.consumed} "
            "compressed bytes): it is truncated"
        )


class _Zstd(_Stage):
    """zstd (RFC 8878): frames one after the other, each window at most 8 MiB (RFC 9659)."""

    __slots__ = ("_d", "_frame_bytes")

    def __init__(self, name: str = "zstd") -> None:
        super().__init__(name)
        self._d = self._new()
        self._frame_bytes = 0  # compressed bytes given to the current frame

    @staticmethod
    def _new() -> Any:
        return zstd.ZstdDecompressor(
            options={zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX}
        )

    @property
    def pending(self) -> bool:
        return self._pos < len(self._in) or not self._d.needs_input

    def pull(self, max_length: int) -> bytes:
        while True:
            d = self._d
            try:
                if not d.needs_input:
                    out = d.decompress(b"", max_length)
                elif self._pos < len(self._in):
                    piece = self._slice()
                    self._frame_bytes += len(piece)
                    out = d.decompress(piece, max_length)
                else:
                    return b""
            except zstd.ZstdError as exc:
                raise self._corrupt(exc) from None
            if d.eof:
                # The frame is complete; another may follow (RFC 8878 §3).
                rest = d.unused_data
                self._d = self._new()
                self._frame_bytes = 0
                if rest:
                    self.consumed -= len(rest)
                    self._in = bytes(rest) + bytes(self._in[self._pos :])
                    self._pos = 0
            if out:
                return out

    def finish(self) -> None:
        if self._frame_bytes:
            raise BadRequest(
                f"the request body ends inside its zstd data (after {self.consumed} "
                "compressed bytes): it is truncated"
            )


class BodyDecoder:
    """Undoes a request body's codings (``request_codings``) and hands the decoded bytes to
    ``sink``, in steps of at most ``OUT_STEP`` bytes, only while it accepts.

    ``feed(piece)`` takes the next compressed piece (a view of the connection's buffer, valid
    during the call) and delivers what it can; what is left is kept (``busy``) and delivered by
    ``pump()`` once the sink accepts again. A call delivers at most ``OUT_BUDGET`` bytes and
    then returns, still ``busy``, so that the event loop serves others in between.
    ``finish()``, at the body's end (once not ``busy``), raises BadRequest when the body ended
    inside its compressed data. ``decoded`` counts the bytes handed on."""

    __slots__ = ("_stages", "_last", "_sink", "_held", "decoded")

    def __init__(self, codings: tuple[str, ...], sink: Sink, inflate: ModuleType = INFLATE) -> None:
        # The last coding applied is the first undone.
        self._stages: list[_Stage] = [
            _Zstd() if name == "zstd" else _Inflate(name, inflate) for name in reversed(codings)
        ]
        self._last = len(self._stages) - 1
        self._sink = sink
        self._held: bytes | None = None  # a decoded step the sink did not take yet
        self.decoded = 0

    @property
    def busy(self) -> bool:
        """Decoded or compressed bytes are waiting: feed nothing new, ``pump``."""
        return self._held is not None or any(s.pending for s in self._stages)

    def feed(self, piece: memoryview) -> None:
        stage = self._stages[0]
        stage.push(piece)
        try:
            self.pump()
        finally:
            stage.keep()

    def pump(self) -> None:
        sink = self._sink
        budget = OUT_BUDGET
        held = self._held
        self._held = None
        while sink.accepting:
            if held is None:
                if budget <= 0:
                    break  # still busy: the connection calls again from a callback of its own
                held = self._pull(self._last, OUT_STEP)
                if not held:
                    return
            n = len(held)
            self.decoded += n
            budget -= n
            out, held = held, None
            sink.on_body(memoryview(out))
        self._held = held

    def _pull(self, i: int, max_length: int) -> bytes:
        """Output of stage ``i`` (0 undoes the last coding applied), fed from the one before."""
        stage = self._stages[i]
        while True:
            out = stage.pull(max_length)
            if out or i == 0:
                return out
            src = self._pull(i - 1, IN_SLICE)
            if not src:
                return b""
            stage.push(src)

    def finish(self) -> None:
        for stage in self._stages:
            stage.finish()


# -- encoding (report streams) ----------------------------------------------------------------
# gzip: a 4 KiB window and small hash tables: reports repeat within a few hundred bytes, and
# 10,000 open streams must stay cheap (about 24 KiB each, not zlib's default 256 KiB).
GZIP_LEVEL = 1
GZIP_WINDOW_BITS = 12
GZIP_MEM_LEVEL = 4
# zstd: the same idea (a 16 KiB window).
ZSTD_LEVEL = 3
ZSTD_WINDOW_LOG = 14


class BodyEncoder:
    """Compresses a stream's writes for a ``response_coding``: ``write`` gives the compressed,
    flushed bytes of one write (the client can decode every byte of it at once), ``end`` the
    last ones with the coding's end (gzip trailer, zstd frame end)."""

    __slots__ = ("coding", "header", "_gzip", "_c")

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self.header = b"Content-Encoding: " + coding.encode() + b"\r\n"
        self._gzip = coding == "gzip"
        self._c: Any
        if self._gzip:
            self._c = zlib.compressobj(
                GZIP_LEVEL, zlib.DEFLATED, 16 + GZIP_WINDOW_BITS, GZIP_MEM_LEVEL
            )
        elif coding == "zstd":
            self._c = zstd.ZstdCompressor(options={
                zstd.CompressionParameter.compression_level: ZSTD_LEVEL,
                zstd.CompressionParameter.window_log: ZSTD_WINDOW_LOG,
            })
        else:  # pragma: no cover - response_coding offers no other
            raise ValueError(f"no encoder for {coding!r}")

    def write(self, data: bytes) -> bytes:
        c = self._c
        if self._gzip:
            return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)  # type: ignore[no-any-return]
        return c.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)  # type: ignore[no-any-return]

    def end(self, data: bytes = b"") -> bytes:
        c = self._c
        if self._gzip:
            return c.compress(data) + c.flush(zlib.Z_FINISH)  # type: ignore[no-any-return]
        return c.compress(data, zstd.ZstdCompressor.FLUSH_FRAME)  # type: ignore[no-any-return]
