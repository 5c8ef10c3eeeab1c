"""The concatenated-JSON record splitter (docs/api.md §1), run on both twins.

Every test takes the ``twin`` fixture: the gateway's compiled ``gateway._speedups.JsonSplitter``
(id "cython") and its pure-Python reference model ``tests/support/ref_splitter.py`` (id
"python"). Both must give the same items for any body split any way; the differential tests
compare them directly.
Randomised tests are seeded and print the seed on failure.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import random
import subprocess
import sys
import tracemalloc
from array import array

import pytest
from support.json_text import compact_reference
from support.ref_splitter import JsonSplitter as PyJsonSplitter
from support.ref_splitter import days_from_civil

# An autouse fixture: every test runs under each of the splitter's simdjson settings.
from support.splitter_settings import simdjson_setting  # noqa: F401

from gateway import _speedups
from gateway.produce import JsonSplitter, RecordError

CompiledSplitter = _speedups.JsonSplitter
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TWINS = [
    pytest.param(CompiledSplitter, id="cython"),
    pytest.param(PyJsonSplitter, id="python"),
]


@pytest.fixture(params=TWINS)
def twin(request):
    return request.param




# ----------------------------------------------------------------------------- helpers

def run(cls, body: bytes, chunks=None, **kw):
    """Feed body (optionally as the given chunk sizes) then finish; returns (items, splitter)."""
    s = cls(**kw)
    items = []
    if chunks is None:
        items += s.feed(body)
    else:
        pos = 0
        for size in chunks:
            items += s.feed(body[pos : pos + size])
            pos += size
        assert pos == len(body)
    items += s.finish()
    return items, s


def one(cls, record: bytes):
    items, s = run(cls, record)
    assert len(items) == 1, items
    assert s.records == 1 and not s.failed and s.offset == len(record)
    return items[0]


def err(index: int, off: int, reason: str, code: int = 400, fatal: bool = False) -> RecordError:
    return RecordError(index, code, f"record {index} at byte {off}: {reason}", fatal)


def rec(index=0, partition=-1, key=None, value=None, headers=None, ts=0, kt=None, vt=None):
    return (index, partition, key, value, headers, ts, kt, vt)


def epoch_ms(text: str) -> int:
    """Independent oracle for timestamps (the splitter does its own calendar arithmetic)."""
    dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return delta.days * 86400000 + delta.seconds * 1000 + delta.microseconds // 1000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ----------------------------------------------------------------------------- valid records

VALID = [
    # (record, expected item for index 0)
    (b"{}", rec()),
    (b"{ \t\r\n}", rec()),
    (b'{"partition_id":null}', rec()),
    (b'{"partition_id":0}', rec(partition=0)),
    (b'{"partition_id":-0}', rec(partition=0)),
    (b'{"partition_id":7}', rec(partition=7)),
    (b'{"partition_id":2147483647}', rec(partition=2147483647)),
    (b'{"headers":null}', rec()),
    (b'{"headers":[]}', rec(headers=[])),
    (b'{"headers":[ ]}', rec(headers=[])),
    (
        b'{"headers":[{"name":"a","value":"AQI="},{"name":"a"},{"value":null,"name":"\\u00e9\xe2\x82\xac"},'
        b'{"name":"","value":""}]}',
        rec(headers=[("a", b"\x01\x02"), ("a", None), ("\u00e9\u20ac", None), ("", b"")]),
    ),
    (b'{"headers":[{"name":"h","value":"YWJ\\u006a"}]}', rec(headers=[("h", b"abc")])),
    (b'{"key":null}', rec()),
    (b'{"value":null}', rec()),
    (b'{"key":{"type":"BINARY"}}', rec(kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":null}}', rec(kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":""}}', rec(key=b"", kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":"aGk="}}', rec(key=b"hi", kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":"aGVs"}}', rec(key=b"hel", kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":"aA=="}}', rec(key=b"h", kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":"+/+/"}}', rec(key=b"\xfb\xff\xbf", kt="BINARY")),
    (b'{"key":{"type":"BINARY","data":"\\/w=="}}', rec(key=b"\xff", kt="BINARY")),
    (b'{"value":{"data":"aGk=","type":"BINARY"}}', rec(value=b"hi", vt="BINARY")),
    (b'{"value":{"type":"STRING","data":"hi"}}', rec(value=b"hi", vt="STRING")),
    (b'{"value":{"type":"STRING","data":""}}', rec(value=b"", vt="STRING")),
    (b'{"value":{"type":"STRING"}}', rec(vt="STRING")),
    (b'{"value":{"type":"STRING","data":null}}', rec(vt="STRING")),
    (
        b'{"value":{"type":"STRING","data":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u20AC\\ud83d\\ude00\xc3\xa9"}}',
        rec(value='"\\/\b\f\n\r\t\x00\u00e9\u20ac\U0001f600\u00e9'.encode(), vt="STRING"),
    ),
    (
        b'{"value":{"type":"STRING","data":"\xf4\x8f\xbf\xbf\x7f"}}',
        rec(value=b"\xf4\x8f\xbf\xbf\x7f", vt="STRING"),
    ),
    (b'{"value":{"type":"JSON"}}', rec(vt="JSON")),
    (b'{"value":{"type":"JSON","data":null}}', rec(vt="JSON")),
    (b'{"value":{"type":"JSON","data":{}}}', rec(value=b"{}", vt="JSON")),
    (b'{"value":{"type":"JSON","data":[]}}', rec(value=b"[]", vt="JSON")),
    (b'{"value":{"type":"JSON","data":0}}', rec(value=b"0", vt="JSON")),
    (b'{"value":{"type":"JSON","data":-12.50E+07}}', rec(value=b"-12.50E+07", vt="JSON")),
    (b'{"value":{"type":"JSON","data":true}}', rec(value=b"true", vt="JSON")),
    (b'{"value":{"type":"JSON","data":false}}', rec(value=b"false", vt="JSON")),
    (b'{"value":{"type":"JSON","data":"a b"}}', rec(value=b'"a b"', vt="JSON")),
    (
        b'{"value":{"type":"JSON","data":\n {\n  "a b" : [ 1 , 2.5e-3 , "x\\" \\u0041 ]" ],\r\n\t"c":{ }, "d":null } }}',
        rec(value=b'{"a b":[1,2.5e-3,"x\\" \\u0041 ]"],"c":{},"d":null}', vt="JSON"),
    ),
    (b'{"value":{"type":"JSON","data":"\\\\"}}', rec(value=b'"\\\\"', vt="JSON")),
    (b'{"timestamp":null}', rec()),
    (b'{"timestamp":"2026-11-21T10:14:42.123Z"}', rec(ts=epoch_ms("2026-11-21T10:14:42.123Z"))),
    (b'{"timestamp":"1970-01-01T00:00:00.001Z"}', rec(ts=1)),
    (b'{"timestamp":"1969-12-31T23:30:00-01:00"}', rec(ts=1800000)),
    (b'{"timestamp":"2024-02-29T23:59:59.9999Z"}', rec(ts=epoch_ms("2024-02-29T23:59:59.999Z"))),
    (b'{"timestamp":"2000-02-29T12:00:00+05:30"}', rec(ts=epoch_ms("2000-02-29T12:00:00+05:30"))),
    (b'{"timestamp":"2026-11-21T10:14:42.1Z"}', rec(ts=epoch_ms("2026-11-21T10:14:42.100Z"))),
    (
        b'{"timestamp":"2026-11-21T10:14:42.123456789Z"}',
        rec(ts=epoch_ms("2026-11-21T10:14:42.123Z")),
    ),
    (b'{"timestamp":"9999-12-31T23:59:59-23:59"}', rec(ts=epoch_ms("9999-12-31T23:59:59-23:59"))),
    (b'{"timestamp":"2026-11-21T10:14:42\\u002e5Z"}', rec(ts=epoch_ms("2026-11-21T10:14:42.500Z"))),
    # Escaped field names are the same fields.
    (
        b'{"p\\u0061rtition_id":3,"\\u006bey":{"\\u0074ype":"\\u0042INARY","d\\u0061ta":"AA=="}}',
        rec(partition=3, key=b"\x00", kt="BINARY"),
    ),
    # Everything at once, in an unusual order, with whitespace everywhere.
    (
        b' {"timestamp" : "2026-01-02T03:04:05Z" , "value" : { "type" : "JSON" , "data" : [ 1 ] } ,'
        b' "headers" : [ { "name" : "n" , "value" : "AA==" } ] , "key" : { "type" : "STRING" ,'
        b' "data" : "k" } , "partition_id" : 12 } ',
        rec(
            partition=12,
            key=b"k",
            value=b"[1]",
            headers=[("n", b"\x00")],
            ts=epoch_ms("2026-01-02T03:04:05Z"),
            kt="STRING",
            vt="JSON",
        ),
    ),
]


@pytest.mark.parametrize("record,expected", VALID, ids=[str(i) for i in range(len(VALID))])
def test_valid_record(twin, record, expected):
    items, s = run(twin, record)
    assert items == [expected]
    assert (s.records, s.offset, s.failed, s.buffered) == (1, len(record), False, 0)


def test_all_combinations_of_fields(twin):
    # Every subset of the five fields, each in every one of its value forms.
    forms = {
        "partition_id": [(b"null", {}), (b"5", {"partition": 5})],
        "headers": [
            (b"null", {}),
            (b"[]", {"headers": []}),
            (b'[{"name":"x"}]', {"headers": [("x", None)]}),
        ],
        "key": [
            (b"null", {}),
            (b'{"type":"BINARY","data":"eA=="}', {"key": b"x", "kt": "BINARY"}),
            (b'{"type":"JSON"}', {"kt": "JSON"}),
        ],
        "value": [
            (b"null", {}),
            (b'{"type":"STRING","data":"v"}', {"value": b"v", "vt": "STRING"}),
            (b'{"type":"JSON","data":{"a":[1]}}', {"value": b'{"a":[1]}', "vt": "JSON"}),
        ],
        "timestamp": [(b"null", {}), (b'"1970-01-01T00:00:01Z"', {"ts": 1000})],
    }
    names = list(forms)
    body = bytearray()
    expected = []
    index = 0
    for mask in range(1 << len(names)):
        chosen = [n for i, n in enumerate(names) if mask >> i & 1]
        combos = [[]]
        for n in chosen:
            combos = [c + [(n, f)] for c in combos for f in forms[n]]
        for combo in combos:
            parts = []
            fields = {}
            for n, (text, exp) in combo:
                parts.append(b'"%s":%s' % (n.encode(), text))
                fields.update(exp)
            body += b"{" + b",".join(parts) + b"}\n"
            expected.append(rec(index, **fields))
            index += 1
    items, s = run(twin, bytes(body))
    assert items == expected
    assert s.records == len(expected) == 3 * 4 * 4 * 4 * 3


def test_timestamps_against_datetime(twin):
    rng = random.Random(20261121)
    body = bytearray()
    expected = []
    for i in range(2000):
        year = rng.choice([1970, 1971, 1999, 2000, 2024, 2100, 2400, rng.randint(1970, 9999)])
        month = rng.randint(1, 12)
        day = rng.randint(1, 31)
        try:
            datetime.date(year, month, day)
        except ValueError:
            day = 28
        frac = rng.choice(
            ["", "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))]
        )
        zone = rng.choice(
            ["Z", "%s%02d:%02d" % (rng.choice("+-"), rng.randint(0, 23), rng.randint(0, 59))]
        )
        if year == 1970:
            zone = "Z"
        text = "%04d-%02d-%02dT%02d:%02d:%02d%s%s" % (
            year,
            month,
            day,
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            frac,
            zone,
        )
        body += b'{"timestamp":"%s"}' % text.encode()
        iso = text if not frac else text.replace(frac, frac[:4].ljust(4, "0"))
        expected.append(rec(i, ts=epoch_ms(iso)))
    items, _ = run(twin, bytes(body))
    assert items == expected


def test_days_from_civil_matches_the_calendar():
    epoch = datetime.date(1970, 1, 1).toordinal()
    for ordinal in range(
        datetime.date(1, 1, 1).toordinal(), datetime.date(9999, 12, 31).toordinal(), 97
    ):
        d = datetime.date.fromordinal(ordinal)
        assert days_from_civil(d.year, d.month, d.day) == ordinal - epoch, d


# ----------------------------------------------------------------------------- bad records

S = "invalid JSON: "
TS = "timestamp must be an ISO-8601 date-time such as 2026-11-21T10:14:42.123Z"
NO_SR = "(no Schema Registry)"

ERRORS = [
    # (record, where: offset or first occurrence of a substring (nth occurrence with a tuple),
    #  reason, error_code)
    # --- JSON syntax
    (b'{"a":tru}', b"}", S + "expected 'true', found '}'", 400),
    (b'{"a":nulL}', b"L", S + "expected 'null', found 'L'", 400),
    (b'{"a":fals}', b"}", S + "expected 'false', found '}'", 400),
    (b'{"a":True}', b"T", S + "expected a value, found 'T'", 400),
    (b"{]", 1, S + "expected '\"' to start a field name, found ']'", 400),
    (b"{'a':1}", 1, S + "expected '\"' to start a field name, found '''", 400),
    (b'{"a":1,}', 7, S + "expected '\"' to start a field name, found '}'", 400),
    (b'{"key" 1}', b"1", S + "expected ':' after a field name, found '1'", 400),
    (
        b'{"key":null "value":null}',
        (b'"', 2),
        S + "expected ',' or '}' after a field, found '\"'",
        400,
    ),
    (b'{"key":null]', b"]", S + "expected ',' or '}' after a field, found ']'", 400),
    (b'{"key":null\x0c}', b"\x0c", S + "expected ',' or '}' after a field, found byte 0x0c", 400),
    (b'{"key":\xc3\xa9}', b"\xc3", S + "expected a value, found byte 0xc3", 400),
    (b'{"a":[1 2]}', b"2", S + "expected ',' or ']' after an array element, found '2'", 400),
    (b'{"a":[1,]}', b"]", S + "expected a value, found ']'", 400),
    (b'{"a":[}]', b"}", S + "expected a value, found '}'", 400),
    (b'{"a":{"b":1,}}', (b"}", 0), S + "expected '\"' to start a field name, found '}'", 400),
    (b'{"a":-}', b"}", S + "expected a digit after '-', found '}'", 400),
    (b'{"a":-Infinity}', b"I", S + "expected a digit after '-', found 'I'", 400),
    (b'{"a":Infinity}', b"I", S + "expected a value, found 'I'", 400),
    (b'{"a":NaN}', b"N", S + "expected a value, found 'N'", 400),
    (b'{"a":+1}', b"+", S + "expected a value, found '+'", 400),
    (b'{"a":.5}', b".", S + "expected a value, found '.'", 400),
    (b'{"a":1.}', b"}", S + "expected a digit after '.', found '}'", 400),
    (b'{"a":1.e5}', b"e", S + "expected a digit after '.', found 'e'", 400),
    (b'{"a":1e}', b"}", S + "expected a digit in the exponent, found '}'", 400),
    (b'{"a":1E+}', b"}", S + "expected a digit in the exponent, found '}'", 400),
    (b'{"a":01}', b"1", S + "expected ',' or '}' after a field, found '1'", 400),
    (b'{"a":-01}', b"1", S + "expected ',' or '}' after a field, found '1'", 400),
    (b'{"a":"x\x01"}', b"\x01", S + "unescaped control character (byte 0x01) in a string", 400),
    (b'{"a":"x\ny"}', b"\n", S + "unescaped control character (byte 0x0a) in a string", 400),
    (b'{"a\t":1}', b"\t", S + "unescaped control character (byte 0x09) in a string", 400),
    (b'{"a":"\\x"}', b"\\", S + "invalid escape: '\\' followed by 'x'", 400),
    (b'{"a":"\\\xc3\xa9"}', b"\\", S + "invalid escape: '\\' followed by byte 0xc3", 400),
    (b'{"a":"\\u12"}', b"\\", S + "invalid \\u escape: expected 4 hex digits", 400),
    (b'{"a":"\\u12G4"}', b"\\", S + "invalid \\u escape: expected 4 hex digits", 400),
    (b'{"a":"\\U1234"}', b"\\", S + "invalid escape: '\\' followed by 'U'", 400),
    (b'{"a":"\\uD800"}', b"\\", S + "unpaired surrogate escape \\uD800", 400),
    (b'{"a":"\\udbff\\u0041"}', b"\\", S + "unpaired surrogate escape \\udbff", 400),
    (b'{"a":"\\uD800\\uD800"}', b"\\", S + "unpaired surrogate escape \\uD800", 400),
    (b'{"a":"\\uD800\\uZZZZ"}', b"\\", S + "unpaired surrogate escape \\uD800", 400),
    (b'{"a":"x\\uDC00"}', b"\\", S + "unpaired surrogate escape \\uDC00", 400),
    (b'{"a":"\\ud83d\\ude00\\udE00"}', 18, S + "unpaired surrogate escape \\udE00", 400),
    (b'{"a":"ok\xff"}', b"\xff", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\x80"}', b"\x80", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xc0\x80"}', b"\xc0", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xc1\xbf"}', b"\xc1", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xe0\x80\xaf"}', b"\xe0", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xed\xa0\x80"}', b"\xed", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xf0\x8f\xbf\xbf"}', b"\xf0", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xf4\x90\x80\x80"}', b"\xf4", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xf5\x80\x80\x80"}', b"\xf5", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xe4\xb8"}', b"\xe4", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xe4\xb8\\n"}', b"\xe4", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xc3\x01"}', b"\xc3", S + "invalid UTF-8 in a string", 400),
    (b'{"a":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3"}', 15, S + "invalid UTF-8 in a string", 400),
    (b'{"\xff":1}', b"\xff", S + "invalid UTF-8 in a string", 400),
    # Nesting: the record is level 1, the key object 2, so data may open 62 more levels.
    (
        b'{"key":{"type":"JSON","data":' + b"[" * 63 + b"]" * 63 + b"}}",
        29 + 62,
        S + "nesting deeper than 64 levels",
        400,
    ),
    (
        b'{"a":' + b'{"b":' * 64 + b"1" + b"}" * 64 + b"}",
        5 + 63 * 5,
        S + "nesting deeper than 64 levels",
        400,
    ),
    # Syntax errors win over field errors wherever they are.
    (b'{"foo":1,"a":tru}', b"}", S + "expected 'true', found '}'", 400),
    (b'{"partition_id":"x","key":nul}', b"}", S + "expected 'null', found '}'", 400),
    (b'{"key":{"type":"AVRO","data":[1,]}}', b"]", S + "expected a value, found ']'", 400),
    (b'{"headers":7,"x":"\xff"}', b"\xff", S + "invalid UTF-8 in a string", 400),
    # --- record fields
    (b'{"foo":1}', 1, "unknown field 'foo'", 400),
    (b'{"Key":null}', 1, "unknown field 'Key'", 400),
    (b'{"f\\u00f6o":1}', 1, "unknown field 'f\u00f6o'", 400),
    (b'{"' + b"n" * 100 + b'":1}', 1, "unknown field '" + "n" * 64 + "...'", 400),
    (b'{"key":null,"key":null}', 12, "duplicate field 'key'", 400),
    (b'{"value":null,"v\\u0061lue":null}', 14, "duplicate field 'value'", 400),
    (b'{"partition_id":1,"partition_id":1}', 18, "duplicate field 'partition_id'", 400),
    (b'{"headers":[],"headers":[]}', 14, "duplicate field 'headers'", 400),
    (b'{"timestamp":null,"timestamp":null}', 18, "duplicate field 'timestamp'", 400),
    (b'{"foo":1,"bar":2}', 1, "unknown field 'foo'", 400),
    (b'{"key":5,"foo":1}', 7, "key must be an object or null", 400),
    # partition_id
    (b'{"partition_id":-1}', 16, "partition_id -1 does not exist", 40402),
    (b'{"partition_id":-2147483648}', 16, "partition_id -2147483648 does not exist", 40402),
    (b'{"partition_id":2147483648}', 16, "partition_id 2147483648 does not exist", 40402),
    (b'{"partition_id":99999999999}', 16, "partition_id 99999999999 does not exist", 40402),
    (
        b'{"partition_id":' + b"9" * 100 + b"}",
        16,
        "partition_id " + "9" * 64 + "... does not exist",
        40402,
    ),
    (b'{"partition_id":1.0}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":1e2}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":-1.5}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":"1"}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":true}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":{}}', 16, "partition_id must be an integer or null", 400),
    (b'{"partition_id":[1]}', 16, "partition_id must be an integer or null", 400),
    # headers
    (b'{"headers":5}', 11, "headers must be an array or null", 400),
    (b'{"headers":"x"}', 11, "headers must be an array or null", 400),
    (b'{"headers":{}}', 11, "headers must be an array or null", 400),
    (b'{"headers":[1]}', 12, "headers[0] must be an object", 400),
    (b'{"headers":[{"name":"a"},null]}', 25, "headers[1] must be an object", 400),
    (
        b'{"headers":[{"name":"a"},{"name":"b"},{"value":"AA=="}]}',
        38,
        "headers[2].name is required",
        400,
    ),
    (b'{"headers":[{}]}', 12, "headers[0].name is required", 400),
    (b'{"headers":[{"name":1}]}', 20, "headers[0].name must be a string", 400),
    (b'{"headers":[{"name":null}]}', 20, "headers[0].name must be a string", 400),
    (
        b'{"headers":[{"name":"a","value":1}]}',
        32,
        "headers[0].value must be a base64 string or null",
        400,
    ),
    (
        b'{"headers":[{"name":"a","value":["AA=="]}]}',
        32,
        "headers[0].value must be a base64 string or null",
        400,
    ),
    (b'{"headers":[{"name":"a","value":"A"}]}', 32, "headers[0].value is not valid base64", 400),
    (b'{"headers":[{"name":"a","value":"AA=A"}]}', 32, "headers[0].value is not valid base64", 400),
    (b'{"headers":[{"name":"a","value":"AA= "}]}', 32, "headers[0].value is not valid base64", 400),
    (b'{"headers":[{"name":"a","value":"-_=="}]}', 32, "headers[0].value is not valid base64", 400),
    (b'{"headers":[{"name":"a","value":"===="}]}', 32, "headers[0].value is not valid base64", 400),
    (b'{"headers":[{"name":"a","value":"AAA"}]}', 32, "headers[0].value is not valid base64", 400),
    (
        b'{"headers":[{"name":"a","value":"AA=="},{"name":"b","value":"AA==AA=="}]}',
        60,
        "headers[1].value is not valid base64",
        400,
    ),
    (b'{"headers":[{"name":"a","extra":1}]}', 24, "unknown field 'headers[0].extra'", 400),
    (b'{"headers":[{"name":"a","name":"b"}]}', 24, "duplicate field 'headers[0].name'", 400),
    (
        b'{"headers":[{"value":null,"value":null,"name":"x"}]}',
        26,
        "duplicate field 'headers[0].value'",
        400,
    ),
    # key / value
    (b'{"key":5}', 7, "key must be an object or null", 400),
    (b'{"value":"aGk="}', 9, "value must be an object or null", 400),
    (b'{"value":[]}', 9, "value must be an object or null", 400),
    (b'{"key":{}}', 7, "key.type is required", 400),
    (b'{"value":{"data":"aGk="}}', 9, "value.type is required", 400),
    (b'{"key":{"type":"binary"}}', 15, "key.type must be BINARY, JSON or STRING", 400),
    (b'{"key":{"type":"BINARY "}}', 15, "key.type must be BINARY, JSON or STRING", 400),
    (b'{"key":{"type":5}}', 15, "key.type must be BINARY, JSON or STRING", 400),
    (b'{"key":{"type":null}}', 15, "key.type must be BINARY, JSON or STRING", 400),
    (b'{"key":{"type":"AVRO"}}', 15, "key.type AVRO is not supported " + NO_SR, 400),
    (
        b'{"value":{"type":"JSONSCHEMA","data":{}}}',
        17,
        "value.type JSONSCHEMA is not supported " + NO_SR,
        400,
    ),
    (b'{"value":{"type":"PROTOBUF"}}', 17, "value.type PROTOBUF is not supported " + NO_SR, 400),
    (
        b'{"value":{"type":"JSON","schema":"{}"}}',
        24,
        "value.schema: schema fields are not supported " + NO_SR,
        400,
    ),
    (
        b'{"value":{"schema_id":1,"type":"AVRO"}}',
        10,
        "value.schema_id: schema fields are not supported " + NO_SR,
        400,
    ),
    (b'{"key":{"subject":"s"}}', 8, "key.subject: schema fields are not supported " + NO_SR, 400),
    (
        b'{"key":{"subject_name_strategy":"s"}}',
        8,
        "key.subject_name_strategy: schema fields are not supported " + NO_SR,
        400,
    ),
    (
        b'{"key":{"schema_version":1}}',
        8,
        "key.schema_version: schema fields are not supported " + NO_SR,
        400,
    ),
    (b'{"key":{"type":"JSON","format":1}}', 22, "unknown field 'key.format'", 400),
    (b'{"key":{"type":"JSON","type":"JSON"}}', 22, "duplicate field 'key.type'", 400),
    (b'{"key":{"type":"JSON","data":1,"data":2}}', 31, "duplicate field 'key.data'", 400),
    (
        b'{"key":{"type":"BINARY","data":5}}',
        31,
        "key.data must be a base64 string for type BINARY",
        400,
    ),
    (
        b'{"key":{"data":{"a":1},"type":"BINARY"}}',
        15,
        "key.data must be a base64 string for type BINARY",
        400,
    ),
    (b'{"key":{"type":"BINARY","data":"aGk"}}', 31, "key.data is not valid base64", 400),
    (b'{"key":{"type":"BINARY","data":"aGk=\\n"}}', 31, "key.data is not valid base64", 400),
    (b'{"key":{"type":"BINARY","data":"aG=k"}}', 31, "key.data is not valid base64", 400),
    (b'{"key":{"type":"BINARY","data":"aGk=aGk="}}', 31, "key.data is not valid base64", 400),
    (
        b'{"value":{"type":"STRING","data":5}}',
        33,
        "value.data must be a string for type STRING",
        400,
    ),
    (
        b'{"value":{"type":"STRING","data":["a"]}}',
        33,
        "value.data must be a string for type STRING",
        400,
    ),
    (
        b'{"value":{"type":"STRING","data":true}}',
        33,
        "value.data must be a string for type STRING",
        400,
    ),
    # timestamp
    (b'{"timestamp":5}', 13, TS, 400),
    (b'{"timestamp":true}', 13, TS, 400),
    (b'{"timestamp":""}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21t10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21 10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14Z"}', 13, TS, 400),
    (b'{"timestamp":"26-11-21T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-1-21T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42.Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42.1234567890Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42,1Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42Z "}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42+0100"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42+01"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42+24:00"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:42+01:60"}', 13, TS, 400),
    (b'{"timestamp":"2026-13-21T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-00-21T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-00T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-31T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-02-29T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2100-02-29T10:14:42Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T24:00:00Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:60:00Z"}', 13, TS, 400),
    (b'{"timestamp":"2026-11-21T10:14:60Z"}', 13, TS, 400),
    (b'{"timestamp":"1969-12-31T23:59:59.999Z"}', 13, TS, 400),
    (b'{"timestamp":"1970-01-01T00:30:00+01:00"}', 13, TS, 400),
    (b'{"timestamp":"0000-01-01T00:00:00Z"}', 13, TS, 400),
    (b'{"timestamp":"\xef\xbc\x92026-11-21T10:14:42Z"}', 13, TS, 400),
    # The first field error in reading order wins.
    (b'{"key":{"type":"AVRO"},"foo":1}', 15, "key.type AVRO is not supported " + NO_SR, 400),
    (b'{"partition_id":-5,"headers":7}', 16, "partition_id -5 does not exist", 40402),
    (b'{"key":{"data":5,"foo":1}}', 17, "unknown field 'key.foo'", 400),
    (b'{"key":{"foo":1}}', 8, "unknown field 'key.foo'", 400),
]


def _where(record: bytes, where) -> int:
    if isinstance(where, int):
        return where
    if isinstance(where, tuple):
        sub, nth = where
        pos = -1
        for _ in range(nth + 1):
            pos = record.index(sub, pos + 1)
        return pos
    return record.index(where)


@pytest.mark.parametrize(
    "record,where,reason,code", ERRORS, ids=[str(i) for i in range(len(ERRORS))]
)
def test_bad_record(twin, record, where, reason, code):
    # Offsets are absolute body offsets: put a good record and whitespace in front.
    prefix = b'{"key":null}  \n'
    items, s = run(twin, prefix + record + b"\n{}")
    assert items == [
        rec(0),
        err(1, len(prefix) + _where(record, where), reason, code),
        rec(2),
    ]
    assert (s.records, s.failed) == (3, False)


def test_depth_limit_is_inclusive(twin):
    ok = b'{"key":{"type":"JSON","data":' + b"[" * 62 + b"]" * 62 + b"}}"
    assert one(twin, ok) == rec(key=b"[" * 62 + b"]" * 62, kt="JSON")
    deep = b'{"a":' * 64 + b"1" + b"}" * 64
    assert one(twin, deep) == err(0, 1, "unknown field 'a'")


# ----------------------------------------------------------------------------- fatal errors


@pytest.mark.parametrize(
    "between,desc",
    [
        (b",", "','"),
        (b"]", "']'"),
        (b"}", "'}'"),
        (b"[", "'['"),
        (b'"', "'\"'"),
        (b"\xff", "byte 0xff"),
        (b"\x0c", "byte 0x0c"),
        (b"\x00", "byte 0x00"),
        (b"x", "'x'"),
    ],
)
def test_garbage_between_records_is_fatal(twin, between, desc):
    body = b'{"key":null} \n' + between + b' {"key":null}'
    s = twin()
    items = s.feed(body)
    assert items == [
        rec(0),
        err(1, 14, f"expected '{{' to start a record, found {desc}", fatal=True),
    ]
    assert (s.records, s.offset, s.failed, s.buffered) == (2, 14, True, 0)
    assert s.feed(b"{}") == []
    assert s.feed(b"garbage") == []
    assert s.finish() == []
    assert (s.records, s.offset) == (2, 14)


def test_garbage_first(twin):
    items, s = run(twin, b"  [{}]")
    assert items == [err(0, 2, "expected '{' to start a record, found '['", fatal=True)]
    assert s.offset == 2


def test_garbage_in_a_later_chunk(twin):
    s = twin()
    assert s.feed(b'{}{"key":') == [rec(0)]
    assert s.feed(b"null}\n") == [rec(1)]
    assert s.feed(b"\r\n\t ,{}") == [
        err(2, 19, "expected '{' to start a record, found ','", fatal=True)
    ]
    assert s.offset == 19 and s.failed


def test_record_at_the_limit_passes_and_one_byte_more_is_fatal(twin):
    good = b'{"key":null}'  # 12 bytes
    body = good + b" " + b'{"key": null}' + good
    items, s = run(twin, body, max_record_bytes=12)
    assert items == [rec(0), err(1, 13, "record exceeds the 12-byte limit", fatal=True)]
    assert (s.offset, s.records, s.failed, s.buffered) == (13 + 12, 2, True, 0)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_oversized_record_is_fatal_as_soon_as_seen_and_never_buffered(twin, chunk):
    limit = 1000
    body = b'{}\n{"value":{"type":"STRING","data":"' + b"x" * 5000 + b'"}}{}'
    s = twin(max_record_bytes=limit)
    items = []
    fed = 0
    while fed < len(body) and not s.failed:
        items += s.feed(body[fed : fed + chunk])
        fed += chunk
        assert s.buffered <= limit
    assert items == [rec(0), err(1, 3, f"record exceeds the {limit}-byte limit", fatal=True)]
    assert s.offset == 3 + limit
    # The error came with the chunk holding byte limit+1 of the record, not later.
    assert fed - chunk <= 3 + limit < fed
    assert s.feed(b"{}") == [] and s.finish() == []


def test_memory_stays_bounded_for_an_endless_record(twin):
    limit = 256 * 1024
    chunk = b"x" * 65536
    s = twin(max_record_bytes=limit)
    tracemalloc.start()
    try:
        s.feed(b'{"value":{"type":"STRING","data":"')
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        items = []
        for _ in range(64):  # 4 MiB of one string
            items += s.feed(chunk)
            assert s.buffered <= limit
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert items == [err(0, 0, f"record exceeds the {limit}-byte limit", fatal=True)]
    # The record buffer (<= limit) plus small change; never the 4 MiB that was fed.
    assert peak - baseline < limit + 128 * 1024, peak - baseline


@pytest.mark.parametrize(
    "body,start",
    [
        (b'{"key":', 0),
        (b'{} {"value":{"type":"STRING","data":"abc', 3),
        (b"{}\n{", 3),
        (b'{"a":"\\', 0),
        (b'{"a":[{}]', 0),
    ],
)
def test_body_ending_inside_a_record_is_fatal(twin, body, start):
    s = twin()
    items = s.feed(body)
    assert s.finish() == [err(len(items), start, "body ended inside the record", fatal=True)]
    assert s.failed and s.offset == len(body) and s.records == len(items) + 1
    assert s.finish() == [] and s.feed(b"}") == []


def test_clean_finish(twin):
    s = twin()
    assert s.finish() == []
    assert s.finish() == []
    assert not s.failed and s.records == 0 and s.offset == 0
    with pytest.raises(RuntimeError):
        s.feed(b"{}")
    s = twin()
    assert s.feed(b"{} \r\n\t ") == [rec(0)]
    assert s.finish() == []
    assert (s.records, s.offset, s.failed) == (1, 7, False)


def test_empty_feeds(twin):
    s = twin()
    assert s.feed(b"") == []
    assert s.feed(b"{") == []
    assert s.feed(bytearray()) == []
    assert s.feed(memoryview(b"")) == []
    assert s.feed(b"}") == [rec(0)]
    assert s.offset == 2


# ----------------------------------------------------------------------------- split anywhere

SPLIT_BODIES = [
    b'{"value":{"type":"BINARY","data":"aGVsbG8gd29ybGQ="}}{"key":{"type":"STRING","data":"k"}}',
    b' {"key":{"type":"STRING","data":"a\\"b\\\\c\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\uDE00 }{]["}}\n'
    b'{"value":{"type":"JSON","data":{"s":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80","n":[-0.5e+10,0,1E-2,true,false,null]}}}',
    b'{"partition_id":2147483647,"timestamp":"2026-11-21T10:14:42.123456+05:30",'
    b'"headers":[{"name":"tr\xc3\xa4ce","value":"AQID"},{"name":"\\u0000","value":null}]}'
    b'\r\n\t{"partition_id":-3}{"partition_id":12}',
    # Errors mid-stream followed by good records.
    b'{"foo":1}{"a":"\\uD800"}{"key":{"type":"AVRO"}}{"a":"\xe4\xb8"}{"a":tru}'
    b'{"key":{"type":"BINARY","data":"aGk"}}{"a":[}]{]\n{"value":{"type":"STRING","data":"ok"}}',
    b'{"key":{"type":"JSON","data":"\\\\"}}{"key":{"type":"JSON","data":"}\\"{"}}{"a":"\\\\\\""}',
    b'{"value":{"type":"JSON","data":[[[{"a":[{}]}]],"[",{"]":"}"}]}}  {}',
    # Fatal at the end: the split must not change where it is found.
    b'{"key":null}{"value":null} , {"key":null}',
    b'{"key":null}\xff',
    b'{"key":null}{"value":{"type":"STRING","data":"unterminated',
]


def _single(cls, body: bytes, **kw):
    items, s = run(cls, body, **kw)
    return items, (s.records, s.offset, s.failed)


@pytest.mark.parametrize("body", SPLIT_BODIES, ids=[str(i) for i in range(len(SPLIT_BODIES))])
def test_every_split_point(twin, body):
    expected = _single(twin, body)
    assert expected == _single(CompiledSplitter, body) == _single(PyJsonSplitter, body)
    for i in range(len(body) + 1):
        items, s = run(twin, body, [i, len(body) - i])
        assert (items, (s.records, s.offset, s.failed)) == expected, f"split at {i}"
    for i in range(len(body) + 1):
        for j in range(i, len(body) + 1, 7):
            items, s = run(twin, body, [i, j - i, len(body) - j])
            assert (items, (s.records, s.offset, s.failed)) == expected, f"split at {i}, {j}"
    items, s = run(twin, body, [1] * len(body))
    assert (items, (s.records, s.offset, s.failed)) == expected, "byte by byte"


@pytest.mark.parametrize("body", SPLIT_BODIES[:6], ids=[str(i) for i in range(6)])
def test_every_split_point_at_the_exact_limit(twin, body):
    # The smallest limit the body passes with is its longest record; one byte less is fatal.
    lo, hi = 2, len(body)
    while lo < hi:
        mid = (lo + hi) // 2
        if _single(twin, body, max_record_bytes=mid)[1][2]:
            lo = mid + 1
        else:
            hi = mid
    expected = _single(twin, body, max_record_bytes=lo)
    assert expected == _single(twin, body)
    tighter = _single(twin, body, max_record_bytes=lo - 1)
    assert tighter[1][2] and tighter[0][-1].message.endswith(
        f"record exceeds the {lo - 1}-byte limit"
    )
    for limit, want in ((lo, expected), (lo - 1, tighter)):
        for i in range(len(body) + 1):
            items, s = run(twin, body, [i, len(body) - i], max_record_bytes=limit)
            assert (items, (s.records, s.offset, s.failed)) == want, f"limit {limit}, split at {i}"
            assert s.buffered == 0


# ----------------------------------------------------------------------------- generated records

NAMES = [
    "a",
    "trace-id",
    "\u00e9t\u00e9",
    "\u20ac",
    "\U0001f600",
    'q"uote',
    "back\\slash",
    "ctl\x01\n",
    "",
]
TEXTS = [
    "",
    "hello",
    "\u00e9\u20ac\U0001f600",
    '"\\/\b\f\n\r\t',
    "\x00\x1f\x7f",
    "x" * 300,
    '}{]["',
    "\ud7ff\ue000\uffff\U0010ffff",
]


def _ws(rng) -> str:
    return rng.choice(["", "", "", " ", "\n", " \t", "\r\n  "])


def _name(rng, name: str) -> str:
    # Sometimes write a field name with one character as a \u escape (the same name in JSON).
    if name and rng.random() < 0.15:
        i = rng.randrange(len(name))
        return '"' + name[:i] + "\\u%04x" % ord(name[i]) + name[i + 1 :] + '"'
    return '"' + name + '"'


def _json_value(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([0, -1, 17, 2.5, -0.125, 1e21, True, False, None, "s", rng.choice(TEXTS)])
    if r < 0.7:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(NAMES): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _dumps(rng, value) -> str:
    ascii_only = rng.random() < 0.5
    if rng.random() < 0.5:
        return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=ascii_only, indent=rng.choice([None, 1, "\t"]))


def gen_record(rng, index: int) -> tuple[bytes, tuple]:
    """A random valid record and the item it must give."""
    fields = []
    exp = {}
    if rng.random() < 0.3:
        p = rng.choice([None, 0, 1, 2147483647, rng.randint(0, 1000)])
        fields.append(("partition_id", json.dumps(p)))
        exp["partition"] = -1 if p is None else p
    if rng.random() < 0.3:
        if rng.random() < 0.2:
            fields.append(("headers", "null"))
        else:
            headers = []
            parts = []
            for _ in range(rng.randint(0, 3)):
                name = rng.choice(NAMES)
                value = rng.choice([None, b"", rng.randbytes(rng.randint(1, 40))])
                members = [
                    _name(rng, "name")
                    + ":"
                    + _ws(rng)
                    + json.dumps(name, ensure_ascii=rng.random() < 0.5)
                ]
                if value is not None or rng.random() < 0.5:
                    members.append(
                        _name(rng, "value")
                        + ":"
                        + (json.dumps(b64(value)) if value is not None else "null")
                    )
                rng.shuffle(members)
                parts.append("{" + _ws(rng) + ("," + _ws(rng)).join(members) + _ws(rng) + "}")
                headers.append((name, value))
            fields.append(("headers", "[" + ",".join(parts) + "]"))
            exp["headers"] = headers
    for side, short in (("key", "k"), ("value", "v")):
        if rng.random() < 0.7:
            kind = rng.choice(["null", "BINARY", "BINARY", "STRING", "JSON"])
            if kind == "null":
                fields.append((side, "null"))
                continue
            members = [_name(rng, "type") + ":" + _ws(rng) + json.dumps(kind)]
            data = None
            mode = rng.random()
            if mode < 0.1:
                pass  # no data: that side is null, its type still reported
            elif mode < 0.2:
                members.append(_name(rng, "data") + ":" + _ws(rng) + "null")
            elif kind == "BINARY":
                raw = rng.randbytes(rng.randint(0, 120))
                text = b64(raw)
                if rng.random() < 0.2:
                    text = text.replace("/", "\\/")  # some encoders escape slashes
                members.append(_name(rng, "data") + ":" + '"' + text + '"')
                data = raw
            elif kind == "STRING":
                s = rng.choice(TEXTS + NAMES)
                members.append(_name(rng, "data") + ":" + _dumps(rng, s))
                data = s.encode()
            else:
                v = _json_value(rng)
                text = _dumps(rng, v)
                members.append(_name(rng, "data") + ":" + _ws(rng) + text)
                data = None if v is None else compact_reference(text)
            rng.shuffle(members)
            fields.append((side, "{" + _ws(rng) + ("," + _ws(rng)).join(members) + _ws(rng) + "}"))
            exp[side] = data
            exp[short + "t"] = kind
    if rng.random() < 0.3:
        ts = "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (
            rng.randint(1970, 2999),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.randint(0, 999),
        )
        fields.append(("timestamp", json.dumps(ts)))
        exp["ts"] = epoch_ms(ts)
    rng.shuffle(fields)
    body = (
        "{"
        + _ws(rng)
        + ("," + _ws(rng)).join(_name(rng, n) + _ws(rng) + ":" + _ws(rng) + v for n, v in fields)
        + _ws(rng)
        + "}"
    )
    return body.encode(), rec(index, **exp)


def _gen_body(seed: int, count: int) -> tuple[bytes, list]:
    rng = random.Random(seed)
    parts = []
    expected = []
    for i in range(count):
        record, item = gen_record(rng, i)
        parts.append(record + _ws(rng).encode())
        expected.append(item)
    return b"".join(parts), expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_records_at_random_split_sizes(twin, seed):
    body, expected = _gen_body(seed, 600)
    items, s = run(twin, body)
    assert items == expected, f"seed {seed}"
    rng = random.Random(seed * 7919)
    for attempt in range(4):
        sizes = []
        left = len(body)
        scale = rng.choice([3, 40, 700, 65536])
        while left:
            n = min(left, rng.randint(1, scale))
            sizes.append(n)
            left -= n
        got, s = run(twin, body, sizes)
        assert got == expected, f"seed {seed}, attempt {attempt}, sizes {sizes[:20]}..."
        assert (s.records, s.offset, s.failed, s.buffered) == (
            len(expected),
            len(body),
            False,
            0,
        ), f"seed {seed}"


MUTATION_BYTES = b'"{}[],:\\ \t\nabefnrtu0129-+.eE=/\x00\x1f\x7f\x80\xbf\xc3\xe2\xed\xf0\xf4\xff'


def _mutate(rng, record: bytes) -> bytes:
    b = bytearray(record)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.randrange(7)
        i = rng.randrange(len(b) + 1)
        if op == 0 and i < len(b):
            b[i] = rng.choice(MUTATION_BYTES)
        elif op == 1 and i < len(b):
            del b[i]
        elif op == 2:
            b[i:i] = bytes([rng.choice(MUTATION_BYTES)])
        elif op == 3:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j) : max(i, j)][:30]
        elif op == 4:
            old = rng.choice(
                [b'"key"', b'"value"', b'"type"', b'"data"', b'"name"', b'"BINARY"', b'"JSON"']
            )
            new = rng.choice(
                [
                    b'"schema"',
                    b'"foo"',
                    b'"AVRO"',
                    b'"headers"',
                    b'"timestamp"',
                    b'"partition_id"',
                    b'"k\\u0065y"',
                    b"null",
                    b"1",
                    b"[]",
                    b"{}",
                ]
            )
            b = bytearray(bytes(b).replace(old, new, 1))
        elif op == 5:
            old = rng.choice([b'"', b":", b",", b"=", b"0", b"T", b"Z", b"\\"])
            new = rng.choice(
                [b"", b'"', b"\\u", b"\\ud800", b"1.5", b"-0", b"9" * 11, b"\xc3\xa9", b"\xf0\x9f"]
            )
            b = bytearray(bytes(b).replace(old, new, 1))
        else:
            depth = rng.randint(60, 66)
            b[i:i] = b"[" * depth + b"]" * depth
    return bytes(b)


def _strict_json_ok(record: bytes) -> bool:
    """Independent strictness oracle: Python's json plus the checks it does not make."""
    try:
        text = record.decode("utf-8")

        def no_constants(name):
            raise ValueError(name)

        value = json.loads(text, parse_constant=no_constants)
    except ValueError:
        return False

    def walk(v, depth):
        if isinstance(v, str):
            v.encode("utf-8")  # a lone surrogate escape cannot be encoded
        elif isinstance(v, list | dict):
            if depth > 64:
                raise ValueError("depth")
            for x in v.items() if isinstance(v, dict) else v:
                if isinstance(x, tuple):
                    walk(x[0], depth + 1)
                    walk(x[1], depth + 1)
                else:
                    walk(x, depth + 1)

    try:
        walk(value, 1)
    except (ValueError, UnicodeEncodeError):
        return False
    return True


def _state(s):
    return (s.records, s.offset, s.failed, s.buffered)


@pytest.mark.parametrize("seed", range(6))
def test_differential_mutated_records(seed):
    """Both twins, same random bodies of good and mutated records, same random splits."""
    rng = random.Random(1000 + seed)
    checked_oracle = 0
    for body_no in range(150):
        records = []
        for i in range(rng.randint(1, 12)):
            record, _ = gen_record(rng, i)
            if rng.random() < 0.6:
                record = _mutate(rng, record)
            records.append(record + _ws(rng).encode())
        body = b"".join(records)
        limit = rng.choice([2 * 1024 * 1024] * 4 + [400, 64])
        c, p = CompiledSplitter(max_record_bytes=limit), PyJsonSplitter(max_record_bytes=limit)
        pos = 0
        where = f"seed {seed}, body {body_no}, limit {limit}: {body!r}"
        while pos < len(body):
            n = rng.randint(1, rng.choice([5, 50, 5000]))
            chunk = body[pos : pos + n]
            pos += n
            assert c.feed(chunk) == p.feed(chunk), where
            assert _state(c) == _state(p), where
        assert c.finish() == p.finish(), where
        assert _state(c) == _state(p), where
        # Each record alone: the syntax verdict must match Python's json (made strict).
        for record in records:
            items, s = run(CompiledSplitter, record)
            if len(items) != 1 or s.failed:
                continue
            item = items[0]
            invalid = isinstance(item, RecordError) and item.message.split(": ", 1)[1].startswith(
                "invalid JSON"
            )
            assert invalid == (not _strict_json_ok(record.strip())), (seed, record, item)
            checked_oracle += 1
    assert checked_oracle > 100, checked_oracle


# ----------------------------------------------------------------------------- inputs and API


def test_memoryview_of_a_reused_bytearray(twin):
    body = SPLIT_BODIES[1] + SPLIT_BODIES[2] + SPLIT_BODIES[3]
    expected, _ = run(twin, body)
    for size in (1, 3, 16, 100):
        buf = bytearray(size)
        s = twin()
        items = []
        for pos in range(0, len(body), size):
            piece = body[pos : pos + size]
            buf[: len(piece)] = piece
            items += s.feed(memoryview(buf)[: len(piece)])
            buf[:] = b"\xff" * size  # the caller reuses its buffer once feed() returns
        items += s.finish()
        assert items == expected, f"chunk size {size}"


def test_other_bytes_like_inputs(twin):
    body = b'{"key":{"type":"STRING","data":"x"}}'
    expected = [rec(key=b"x", kt="STRING")]
    assert twin().feed(bytearray(body)) == expected
    assert twin().feed(memoryview(body)) == expected
    assert twin().feed(memoryview(body).cast("c")) == expected
    assert twin().feed(memoryview(body).cast("b")) == expected
    assert twin().feed(array("B", body)) == expected
    two_d = memoryview(bytearray(body[:36])).cast("B", (6, 6))
    assert twin().feed(two_d) == expected


def test_bad_inputs(twin):
    s = twin()
    with pytest.raises(TypeError):
        s.feed("{}")
    with pytest.raises(TypeError):
        s.feed(None)
    with pytest.raises(BufferError):
        s.feed(memoryview(b"{}{}")[::2])
    assert (s.records, s.offset, s.failed) == (0, 0, False)
    assert s.feed(b"{}") == [rec(0)]


def test_constructor_limits(twin):
    assert twin(2).feed(b"{}") == [rec(0)]
    assert twin(max_record_bytes=1 << 31).feed(b"{}") == [rec(0)]
    for bad in (1, 0, -5, (1 << 31) + 1):
        with pytest.raises(ValueError):
            twin(bad)
    with pytest.raises(TypeError):
        twin(2.5)


def test_state_is_read_only(twin):
    s = twin()
    for name in ("records", "offset", "failed", "buffered"):
        with pytest.raises(AttributeError):
            setattr(s, name, 1)


def test_records_and_offset_track_the_stream(twin):
    s = twin()
    assert s.feed(b'{"foo":1}  {"key"') == [err(0, 1, "unknown field 'foo'")]
    assert (s.records, s.offset, s.buffered) == (1, 17, 6)
    assert s.feed(b":null}") == [rec(1)]
    assert (s.records, s.offset, s.buffered) == (2, 23, 0)


def test_public_names():
    """The gateway's splitter is the compiled one (the extension is required): whatever the
    environment says, in a fresh interpreter."""
    assert JsonSplitter is CompiledSplitter
    code = "import gateway.produce as p; print(p.JsonSplitter.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "GATEWAY_PURE_PYTHON": "1"},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "gateway._speedups"
