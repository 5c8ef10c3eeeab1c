"""``gateway._speedups.json_loads`` (simdjson's On-Demand API, ext/jsondoc.cc) against
``json.loads``, its reference: the same objects for JSON documents, and a JsonDecodeError naming
the byte offset for the rest. tests/fuzz/test_fuzz_json_loads.py compares them on generated
documents."""

from __future__ import annotations

import json
import math

import pytest
from support.json_text import typed

from gateway._speedups import JsonDecodeError, json_loads, simdjson_implementation

VALID = [
    b"{}", b"[]", b"0", b"-0", b"-0.0", b"1", b"true", b"false", b"null", b'""', b' "s" ',
    b'{"a":[1,2.5,-3,true,false,null,"x"]}',
    b'{"a":1,"a":2,"b":{"a":3},"a":4}',  # a repeated name: the last member counts
    b"[9223372036854775807,-9223372036854775808,18446744073709551615,18446744073709551616]",
    b"[123456789012345678901234567890,-123456789012345678901234567890]",
    b"123456789012345678901234567890",
    b"[1E3,1e-3,0.1,-2.5E+10,1.7976931348623157e308,5e-324,1e-400]",
    b"[1e400,-1e400]", b"1e400",  # beyond the double range: +-inf, as float() reads them
    b'["\\"\\\\\\/\\b\\f\\n\\r\\t","\\u00e9\\u20ac","\\ud83d\\ude00","\\u0000"]',
    "[\"caf\u00e9 \u2713 \U0001f600\"]".encode(),
    b' \t\r\n[ 1 , { "k" : [ ] } ] \n',
    b"[[[[[[[[[[]]]]]]]]]]",
    b"[" * 400 + b"]" * 400,
    b'{"\\u0069d":1}',
]


@pytest.mark.parametrize("doc", VALID)
def test_valid_documents_are_read_as_json_reads_them(doc: bytes) -> None:
    assert typed(json_loads(doc)) == typed(json.loads(doc))


def test_bytearray_and_memoryview_are_read_too() -> None:
    doc = b'{"records":[{"value":"AAEC"}]}'
    assert json_loads(bytearray(doc)) == json_loads(memoryview(doc)) == json.loads(doc)
    assert json_loads(memoryview(b'xx[1]yy')[2:5]) == [1]


def test_a_str_is_refused() -> None:
    with pytest.raises(TypeError):
        json_loads('{"a":1}')  # type: ignore[arg-type]


def test_a_utf8_bom_is_refused_as_json_refuses_it_in_text() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(b"\xef\xbb\xbf[1]".decode())
    with pytest.raises(JsonDecodeError, match="byte order mark at byte 0"):
        json_loads(b"\xef\xbb\xbf[1]")


# (document, message, byte offset)
INVALID = [
    (b"", "no JSON value", 0),
    (b"  ", "no JSON value", 2),
    (b"[1,", "an array or object not closed", 3),
    (b'["abc', "a string not closed", 5),
    (b'{"a" 1}', "not JSON", 5),
    (b"[1 2]", "not JSON", 3),
    (b"[1,2,]", "not JSON", 5),
    (b'{"a":1,}', "not JSON", 7),
    (b'{"a":[1,{"b":2]}', "not JSON", 14),
    (b"[1]]", "more after the JSON value", 3),
    (b'{"a":1}}', "more after the JSON value", 7),
    (b"\xff", "not UTF-8", 0),
    (b'["\xe9"]', "not UTF-8", 2),
    (b'[1,"ok","\xc3"]', "not UTF-8", 9),
    (b"[01]", "an invalid number", 1),
    (b"[1.]", "an invalid number", 1),
    (b"[-]", "an invalid number", 1),
    (b"[1e]", "an invalid number", 1),
    (b'["a\x01"]', "a control character not escaped in a string", None),
    (b'["\\x"]', "an invalid string escape", None),
    (b"tru", "not a JSON value", 0),
]


@pytest.mark.parametrize(("doc", "message", "pos"), INVALID)
def test_invalid_documents_name_the_byte_offset(doc: bytes, message: str, pos: int | None) -> None:
    with pytest.raises(ValueError):  # json.JSONDecodeError, or UnicodeDecodeError
        json.loads(doc.decode("utf-8"))
    with pytest.raises(JsonDecodeError) as info:
        json_loads(doc)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.msg.startswith(message)
    assert 0 <= exc.pos <= len(doc)
    if pos is not None:
        assert exc.pos == pos
    assert str(exc) == f"{exc.msg} at byte {exc.pos}"


@pytest.mark.parametrize("doc", [b"NaN", b"[Infinity]", b'{"a":-Infinity}'])
def test_the_constants_json_takes_are_refused(doc: bytes) -> None:
    # json.loads takes them; they are not JSON (RFC 8259 §6), and no body caller wants them.
    assert math.isnan(json.loads(b"NaN")) and json.loads(doc) is not None
    with pytest.raises(JsonDecodeError):
        json_loads(doc)


def test_a_lone_surrogate_escape_is_refused() -> None:
    assert json.loads(b'"\\ud800"') == "\ud800"  # no UTF-8 holds it
    with pytest.raises(JsonDecodeError, match="lone surrogate"):
        json_loads(b'["\\ud800"]')


def test_nesting_beyond_1024_is_refused() -> None:
    assert json_loads(b"[" * 1024 + b"]" * 1024) is not None
    with pytest.raises(JsonDecodeError, match="nested too deeply"):
        json_loads(b"[" * 1025 + b"]" * 1025)
    with pytest.raises(JsonDecodeError, match="nested too deeply"):
        json_loads(b'{"a":' * 2000 + b"1" + b"}" * 2000)


def test_an_integer_over_pythons_digit_limit_is_a_value_error_as_in_json() -> None:
    doc = b"[" + b"1" * 5000 + b"]"
    with pytest.raises(ValueError):
        json.loads(doc)
    with pytest.raises(ValueError):
        json_loads(doc)


def test_a_large_document_then_small_ones() -> None:
    # The shared parser is replaced after a document over 1 MiB; the next parse still works.
    big = json.dumps({"records": [{"value": "x" * 1000}] * 3000}).encode()
    assert json_loads(big) == json.loads(big)
    assert json_loads(b'{"a":[1]}') == {"a": [1]}


def test_simdjson_reports_its_kernel() -> None:
    assert simdjson_implementation() in {"icelake", "haswell", "westmere", "fallback"}
