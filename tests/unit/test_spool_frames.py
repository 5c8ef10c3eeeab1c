"""The spool's record frames (ext/spool.pxi): CRC32C, encoding a batch and decoding it back.

The frame layout is checked from outside too: a frame is read here with ``struct`` from its
documented fields, so that a change of layout is a visible change of format.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

from gateway._speedups import crc32c, crc32c_hardware, crc32c_portable
from gateway.produce.spool import files
from gateway.produce.spool.files import spool_decode, spool_encode

BIG = 1 << 40


def decode_all(blob: bytes, seq: int = 0) -> tuple[list[tuple], tuple]:
    out: list[tuple] = []
    res = spool_decode(blob, 0, len(blob), seq, BIG, BIG, out)
    return out, res


def rec(partition=-1, key=None, value=None, headers=None, ts=0):
    # The splitter's tuple: (index, partition, key, value, headers, timestamp_ms, key_type,
    # value_type).
    return (0, partition, key, value, headers, ts, None, None)


# -- CRC32C -------------------------------------------------------------------------------------


def test_crc32c_known_values() -> None:
    """RFC 3720 B.4 and the usual check value: the Castagnoli polynomial, reflected."""
    for fn in (crc32c, crc32c_portable):
        assert fn(b"123456789") == 0xE3069283
        assert fn(bytes(32)) == 0x8A9136AA
        assert fn(b"\xff" * 32) == 0x62A8AB43
        assert fn(bytes(range(32))) == 0x46DD794E
        assert fn(bytes(range(31, -1, -1))) == 0x113FDB5C
        assert fn(b"") == 0
    assert isinstance(crc32c_hardware(), bool)


def test_crc32c_instruction_and_table_agree_and_chain() -> None:
    rnd = random.Random(7)
    for n in list(range(0, 70)) + [255, 256, 1000, 4097]:
        data = rnd.randbytes(n)
        assert crc32c(data) == crc32c_portable(data)
        cut = rnd.randint(0, n)
        assert crc32c(data[cut:], crc32c(data[:cut])) == crc32c(data)
        assert crc32c_portable(data[cut:], crc32c_portable(data[:cut])) == crc32c(data)
    # Any buffer, at any alignment.
    data = bytearray(rnd.randbytes(100))
    assert crc32c(memoryview(data)[3:]) == crc32c(bytes(data[3:]))


# -- encoding and decoding ----------------------------------------------------------------------


def test_every_field_round_trips() -> None:
    big = os.urandom(3 << 20)
    records = [
        rec(),  # null key, null value, no headers, no timestamp
        rec(7, b"", b"", [], 1_700_000_000_123),  # empty key and value, an empty header list
        rec(2**31 - 1, b"k" * 70_000, big, None, -5),  # large, a negative timestamp
        rec(-2**31, b"\x00\xff", b"v", [("h1", b"a"), ("h2", None), ("h3", b""), ("é€😀", b"x")]),
        rec(0, None, b"\x00" * 10, [(b"raw\xffname", b"v"), (b"ok", None)]),
    ]
    blob = spool_encode(records, "tópic.ünicode", 42, 1_800_000_000_000)
    out, (pos, seq, status, need, first_ms, last_ms) = decode_all(blob, 42)
    assert (pos, seq, status, need) == (len(blob), 47, files.OK, 0)
    assert first_ms == last_ms == 1_800_000_000_000
    assert out == [
        (42, "tópic.ünicode", -1, None, None, None, 1_800_000_000_000),
        (43, "tópic.ünicode", 7, b"", b"", [], 1_700_000_000_123),
        (44, "tópic.ünicode", 2**31 - 1, b"k" * 70_000, big, None, -5),
        (45, "tópic.ünicode", -2**31, b"\x00\xff", b"v",
         [("h1", b"a"), ("h2", None), ("h3", b""), ("é€😀", b"x")], 1_800_000_000_000),
        # A header name given as bytes comes back as str when it is UTF-8, else as bytes.
        (46, "tópic.ünicode", 0, None, b"\x00" * 10, [(b"raw\xffname", b"v"), ("ok", None)],
         1_800_000_000_000),
    ]


def test_frame_layout() -> None:
    """The documented layout: u32 length, u32 CRC32C of the length field then of the body, then
    seq, timestamp, spooled time, partition, topic length, header count, key and value
    lengths, the bytes."""
    blob = spool_encode([rec(3, b"key", b"value!", [("n", None)], 99)], "t", 5, 1000)
    body_len, crc = struct.unpack_from("<II", blob)
    assert len(blob) == 8 + body_len
    assert crc == crc32c(blob[8:], crc32c(blob[:4]))
    fields = struct.unpack_from("<QqqiHHii", blob, 8)
    assert fields == (5, 99, 1000, 3, 1, 1, 3, 6)
    assert blob[48:] == b"t" + b"key" + b"value!" + struct.pack("<Hi", 1, -1) + b"n"
    # No headers at all is 0xFFFF headers; an empty list is 0.
    none = spool_encode([rec()], "t", 0, 1)
    empty = spool_encode([rec(headers=[])], "t", 0, 1)
    assert struct.unpack_from("<H", none, 8 + 30) == (0xFFFF,)
    assert struct.unpack_from("<H", empty, 8 + 30) == (0,)


def test_zero_timestamp_is_the_append_time_and_topics_are_shared() -> None:
    blob = spool_encode([rec(ts=0), rec(ts=1)], "t", 0, 12345)
    out, _ = decode_all(blob)
    assert [r[6] for r in out] == [12345, 1]
    assert out[0][1] is out[1][1]  # one str for a run of records of the same topic


def test_empty_batch() -> None:
    assert spool_encode([], "t", 0, 0) == b""
    assert decode_all(b"") == ([], (0, 0, files.OK, 0, -1, -1))


@pytest.mark.parametrize("bad, exc", [
    ((0, 1, "key", None, None, 0), TypeError),  # key not bytes
    ((0, 1, None, bytearray(b"v"), None, 0), TypeError),
    ((0, 1, None, None, [("h", "v")], 0), TypeError),  # header value not bytes
    ((0, 1, None, None, [("h",)], 0), TypeError),
    ((0, 1, None, None, [(1, b"v")], 0), TypeError),
    ((0, 1, None, None, "headers", 0), TypeError),
    ((0, 2**31, None, None, None, 0), OverflowError),  # partition beyond int32
    ((0, None, None, None, None, 0), TypeError),
    ((0, 1, None, None, None, None), TypeError),  # timestamp
    ((0, 1, None, None, None), TypeError),  # too short
    ([0, 1, None, None, None, 0], TypeError),  # not a tuple
    ((0, 1, None, None, [("\udc80", b"")], 0), UnicodeEncodeError),  # a lone surrogate
    ((0, 1, None, None, [("x" * 65536, b"")], 0), ValueError),
])
def test_a_record_that_cannot_be_spooled_fails_the_whole_batch(bad, exc) -> None:
    with pytest.raises(exc):
        spool_encode([rec(), bad], "t", 0, 0)


def test_topic_limits() -> None:
    with pytest.raises(ValueError):
        spool_encode([rec()], "t" * 65536, 0, 0)
    with pytest.raises(UnicodeEncodeError):
        spool_encode([rec()], "\udc80", 0, 0)


def test_limits_stop_between_records() -> None:
    blob = spool_encode([rec(value=b"x" * 100)] * 10, "t", 0, 1)
    size = len(blob) // 10
    out: list[tuple] = []
    pos, seq, status, *_ = spool_decode(blob, 0, len(blob), 0, 3, BIG, out)
    assert (pos, seq, status, len(out)) == (3 * size, 3, files.OK, 3)
    # max_bytes: only whole records under it ...
    out = []
    pos, seq, status, *_ = spool_decode(blob, 0, len(blob), 0, BIG, 2 * size + size // 2, out)
    assert (pos, seq, len(out)) == (2 * size, 2, 2)
    # ... but the first record of an empty batch is taken whatever its size
    out = []
    pos, seq, *_ = spool_decode(blob, 0, len(blob), 0, BIG, 1, out)
    assert (pos, seq, len(out)) == (size, 1, 1)
    # and not when the batch has records already
    pos, seq, *_ = spool_decode(blob, size, len(blob), 1, BIG, 1, out)
    assert (pos, seq, len(out)) == (size, 1, 1)


def test_a_frame_cut_anywhere_is_partial_and_the_ones_before_it_are_good() -> None:
    records = [rec(1, b"a", b"b" * 50, [("h", None)], 7), rec(2, None, b"c" * 300)]
    blob = spool_encode(records, "topic", 10, 1)
    first = len(spool_encode(records[:1], "topic", 10, 1))
    for cut in range(len(blob)):
        out: list[tuple] = []
        pos, seq, status, need, _, _ = spool_decode(blob[:cut], 0, cut, 10, BIG, BIG, out)
        whole = 1 if cut >= first else 0
        assert (len(out), seq, pos) == (whole, 10 + whole, first if whole else 0), cut
        if cut in (0, first):
            assert status == files.OK
        else:
            assert status == files.PARTIAL
            start = first if whole else 0
            assert need == (8 if cut - start < 8 else (first if not whole else len(blob) - first))


def test_every_flipped_bit_is_caught() -> None:
    blob = spool_encode([rec(1, b"key", b"value", [("h", b"v")], 5)], "topic", 3, 1)
    for i in range(len(blob)):
        for bit in (0, 3, 7):
            bad = bytearray(blob)
            bad[i] ^= 1 << bit
            out: list[tuple] = []
            pos, seq, status, need, _, _ = spool_decode(bytes(bad), 0, len(bad), 3, BIG, BIG, out)
            assert out == [] and pos == 0 and status != files.OK, (i, bit)
            if i < 4 and status == files.PARTIAL:
                assert need > len(blob)  # a longer length: the frame seems to go on


def test_a_good_frame_with_another_sequence_number_is_refused() -> None:
    blob = spool_encode([rec()], "t", 8, 1)
    assert decode_all(blob, 9)[1][2] == files.BAD_SEQ
    assert decode_all(blob, 8)[1][2] == files.OK


def test_a_checksummed_frame_whose_fields_do_not_fill_it_is_refused() -> None:
    """A frame with a good checksum but lengths that disagree with its size (not something a
    torn write makes: a bug, or a foreign file) is corrupt, not decoded out of bounds."""
    good = spool_encode([rec(0, b"key", b"val", [("h", b"v")])], "t", 0, 1)
    # (offset in the body, struct format, value): the key's length past the body, a value
    # length below -1, a longer topic, more headers, a header value past the body.
    for offset, fmt, value in [(32, "<i", 100), (36, "<i", -7), (28, "<H", 3), (30, "<H", 5),
                               (47 + 2, "<i", 1000)]:
        body = bytearray(good[8:])
        struct.pack_into(fmt, body, offset, value)
        length = struct.pack("<I", len(body))
        frame = length + struct.pack("<I", crc32c(bytes(body), crc32c(length))) + bytes(body)
        assert decode_all(frame)[1][2] == files.BAD_LAYOUT, offset
    assert decode_all(struct.pack("<II", 3, 0) + bytes(3))[1][2] == files.BAD_LENGTH
