"""The strict base64 decoder of v1/v2 produce bodies (the record splitter's, in C)."""

from __future__ import annotations

import base64
import random

import pytest

from gateway._speedups import base64_decode


def test_canonical_base64_of_any_bytes_decodes_to_them() -> None:
    rnd = random.Random(11)
    for n in list(range(40)) + [1000, 65536]:
        raw = bytes(rnd.randrange(256) for _ in range(n))
        text = base64.b64encode(raw)
        assert base64_decode(text.decode()) == raw
        assert base64_decode(text) == raw


@pytest.mark.parametrize("text", [
    "QQ", "QQ=", "QUI", "QUJD=", "QUJD==", "QUJDRA===", "Q===",  # padding missing or extra
    "QU JD", "QUJD\n", " QUJD",  # whitespace
    "QUJ-", "QUJ_",  # the URL-safe alphabet
    "QU=D", "=QUJ",  # padding inside
    "QUJé",  # not ASCII
])
def test_anything_but_canonical_padded_base64_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        base64_decode(text)


@pytest.mark.parametrize("value", [None, 12, 1.5, ["QUJD"], {"a": 1}, bytearray(b"QUJD")])
def test_other_types_are_type_errors(value: object) -> None:
    with pytest.raises(TypeError):
        base64_decode(value)  # type: ignore[arg-type]


def test_empty_text_is_empty_bytes() -> None:
    assert base64_decode("") == b""
