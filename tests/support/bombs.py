"""Decompression bombs for tests, made in a fraction of a second: a body of a few KB or MB that
inflates to gigabytes of one repeated byte (spaces: JSON whitespace, so that a v3 stream reads
on without a record until a limit stops it).

``gzip_bomb``: after a full flush a deflate compressor has no history, so the compressed form
of each further MiB is the same bytes; the body is the first MiB, that block repeated, and
the gzip trailer (CRC-32 combined, not computed over the gigabytes). About 1 KB per MiB: deflate
cannot do better than about 1:1000. ``gzip_bomb(..., layers=2)`` compresses that again (the
classic HTTP bomb, ``Content-Encoding: gzip, gzip``): a few KB. ``zstd_bomb``: zstd's own
compressor, about 32 KB per GiB.
"""

from __future__ import annotations

import struct
import zlib

from isal.isal_zlib import crc32_combine

from gateway.http.coding import zstd

MIB = 1 << 20


def gzip_bomb(total: int, fill: bytes = b" ", layers: int = 1) -> bytes:
    """A gzip member that inflates to ``total`` bytes (a multiple of 1 MiB) of ``fill``."""
    assert total % MIB == 0 and total >= 2 * MIB and len(fill) == 1
    block = fill * MIB
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    end = last.compress(block) + last.flush(zlib.Z_FINISH)
    n = total // MIB
    crc_block = zlib.crc32(block)
    crc = 0
    for _ in range(n):
        crc = crc32_combine(crc, crc_block, MIB)
    body = first + again * (n - 2) + end + struct.pack("<II", crc, total & 0xFFFFFFFF)
    for _ in range(layers - 1):
        body = zlib.compress(body, 9, wbits=31)
    return body


def zstd_bomb(total: int, fill: bytes = b" ") -> bytes:
    """One zstd frame that inflates to ``total`` bytes (a multiple of 1 MiB) of ``fill``."""
    assert total % MIB == 0
    z = zstd.ZstdCompressor(level=1)
    block = fill * MIB
    return b"".join(z.compress(block) for _ in range(total // MIB)) + z.flush()
