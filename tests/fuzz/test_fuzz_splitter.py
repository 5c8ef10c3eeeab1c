"""Fuzzing the v3 record splitter, both twins: the compiled ``gateway._speedups.JsonSplitter``
and its pure-Python reference model (tests/support/ref_splitter.py) (docs/api.md §1).

tests/unit/test_splitter.py has the seeded differential tests (generated records from fixed
value lists, mutated by hand-written rules). Here hypothesis draws the content (any Unicode
text, any bytes, JSON values of any shape), shrinks what fails, and checks properties the
unit tests check only on fixed bodies:

- no exception for any bytes in any split; only ``RecordError`` items with 4xx codes (400,
  40402), a fatal one only last, indexes 0, 1, 2, ... and ``records`` counting them;
- the two twins give the same items and state after every ``feed()``;
- the items do not depend on how the body is split, nor on the caller reusing its buffer
  (the protocol hands views into its read buffer);
- generated records give exactly the items they were built from; a record's JSON syntax
  verdict matches Python's ``json`` made strict, and a JSON value comes back as its text
  without whitespace.
"""

from __future__ import annotations

import base64
import datetime
import json

from hypothesis import example, given
from hypothesis import strategies as st
from support.fuzz import examples, mutated, splits
from support.json_text import compact_reference
from support.ref_splitter import JsonSplitter as PyJsonSplitter

# An autouse fixture: every test runs under each of the splitter's simdjson settings.
from support.splitter_settings import simdjson_setting  # noqa: F401

from gateway import _speedups
from gateway.produce import RecordError

Compiled = _speedups.JsonSplitter
ALLOWED_CODES = {400, 40402}
LIMITS = st.sampled_from([2 * 1024 * 1024, 2 * 1024 * 1024, 400, 64, 3])




def state(s) -> tuple:
    return (s.records, s.offset, s.failed, s.buffered)


def check_items(items: list, start_index: int = 0) -> None:
    for n, item in enumerate(items):
        index = item.index if isinstance(item, RecordError) else item[0]
        assert index == start_index + n, items
        if isinstance(item, RecordError):
            assert item.error_code in ALLOWED_CODES, item
            assert item.message.startswith(f"record {index} at byte "), item
            assert not item.fatal or n == len(items) - 1, items
        else:
            assert isinstance(item, tuple) and len(item) == 8, item


def feed_both(pieces: list[bytes], limit: int, *, views: bool = False) -> tuple[list, tuple]:
    """Both twins, the same pieces; equal after every feed. ``views``: each piece is a view of a
    bytearray that is overwritten once feed() returns."""
    c, p = Compiled(limit), PyJsonSplitter(limit)
    items: list = []
    buf = bytearray(max((len(x) for x in pieces), default=0))
    for piece in pieces:
        if views:
            buf[: len(piece)] = piece
            data: bytes | memoryview = memoryview(buf)[: len(piece)]
        else:
            data = piece
        a, b = c.feed(data), p.feed(data)
        assert a == b, (piece, a, b)
        assert state(c) == state(p)
        if views:
            buf[:] = b"\xa5" * len(buf)
        check_items(a, len(items))
        items += a
    a, b = c.finish(), p.finish()
    assert a == b
    check_items(a, len(items))
    items += a
    assert state(c) == state(p)
    s = state(c)
    assert s[0] == len(items)
    assert s[3] <= limit
    if any(isinstance(i, RecordError) and i.fatal for i in items):
        assert s[2] and items[-1].fatal
    else:
        assert not s[2] and s[1] == sum(len(x) for x in pieces)
    return items, s


# --- records built from drawn content --------------------------------------------------------
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
WS = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  "])


@st.composite
def dumps(draw: st.DrawFn, value: object) -> str:
    return json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, None, 1, "\t"])),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )


@st.composite
def side(draw: st.DrawFn) -> tuple[str, bytes | None, str | None]:
    """A key or value: (JSON text, expected bytes, expected type)."""
    kind = draw(st.sampled_from(["null", "BINARY", "STRING", "JSON"]))
    if kind == "null":
        return "null", None, None
    members = [f'"type":{draw(WS)}"{kind}"']
    expected: bytes | None = None
    mode = draw(st.integers(0, 9))
    if mode == 0:
        pass  # no data: null, the type still reported
    elif mode == 1:
        members.append('"data":null')
    elif kind == "BINARY":
        raw = draw(st.binary(max_size=60))
        members.append(f'"data":{draw(WS)}"{b64(raw)}"')
        expected = raw
    elif kind == "STRING":
        text = draw(st.text(max_size=30))
        members.append('"data":' + draw(dumps(text)))
        expected = text.encode()
    else:
        v = draw(json_values)
        text = draw(dumps(v))
        members.append('"data":' + draw(WS) + text)
        expected = None if v is None else compact_reference(text)
    members = draw(st.permutations(members))
    sep = "," + draw(WS)
    return "{" + draw(WS) + sep.join(members) + draw(WS) + "}", expected, kind


@st.composite
def record(draw: st.DrawFn, index: int) -> tuple[bytes, tuple]:
    fields: list[tuple[str, str]] = []
    partition, headers, ts = -1, None, 0
    key = value = None
    kt = vt = None
    if draw(st.booleans()):
        p = draw(st.none() | st.integers(0, 2**31 - 1))
        fields.append(("partition_id", json.dumps(p)))
        partition = -1 if p is None else p
    if draw(st.booleans()):
        hs = draw(st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3))
        parts = []
        for name, v in hs:
            members = ['"name":' + draw(dumps(name))]
            if v is not None or draw(st.booleans()):
                members.append('"value":' + ("null" if v is None else f'"{b64(v)}"'))
            parts.append("{" + ",".join(draw(st.permutations(members))) + "}")
        fields.append(("headers", "[" + ("," + draw(WS)).join(parts) + "]"))
        headers = hs
    if draw(st.booleans()):
        text, key, kt = draw(side())
        fields.append(("key", text))
    if draw(st.booleans()):
        text, value, vt = draw(side())
        fields.append(("value", text))
    if draw(st.booleans()):
        dt = draw(
            st.datetimes(
                min_value=datetime.datetime(1970, 1, 2),
                max_value=datetime.datetime(2999, 12, 31),
                timezones=st.just(datetime.UTC),
            )
        )
        text = dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)
        fields.append(("timestamp", json.dumps(text)))
        ts = int(dt.timestamp()) * 1000 + dt.microsecond // 1000
    fields = draw(st.permutations(fields))
    body = "{" + draw(WS) + ("," + draw(WS)).join(f'"{n}"{draw(WS)}:{draw(WS)}{v}' for n, v in fields) + draw(WS) + "}"
    kt = kt if kt != "null" else None
    vt = vt if vt != "null" else None
    return body.encode(), (index, partition, key, value, headers, ts, kt, vt)


@st.composite
def bodies(draw: st.DrawFn, max_records: int = 6) -> tuple[bytes, list[tuple]]:
    n = draw(st.integers(1, max_records))
    parts, expected = [], []
    for i in range(n):
        text, item = draw(record(i))
        parts.append(text + draw(WS).encode())
        expected.append(item)
    return b"".join(parts), expected


@examples(100)
@given(st.data(), bodies(), st.booleans())
def test_generated_records_give_their_items_in_any_split(data: st.DataObject, gen: tuple, views: bool) -> None:
    body, expected = gen
    items, s = feed_both(data.draw(splits(body, max_pieces=20)), 2 * 1024 * 1024, views=views)
    assert items == expected
    assert s == (len(expected), len(body), False, 0)


@examples(150)
@given(st.data(), bodies(), LIMITS)
def test_mutated_bodies_same_items_for_both_twins_in_any_split(data: st.DataObject, gen: tuple, limit: int) -> None:
    body = data.draw(mutated(gen[0], max_ops=5))
    whole = feed_both([body], limit)
    for views in (False, True):
        assert feed_both(data.draw(splits(body, max_pieces=20)), limit, views=views) == whole


@examples(1000)
@given(st.binary(max_size=400), LIMITS)
@example(b'{"value":{"type":"JSON","data":' + b"[" * 70 + b"]" * 70 + b"}}", 2 * 1024 * 1024)
@example(b"{}" * 50 + b"x", 64)
@example(b'{"partition_id":99999999999}{"partition_id":-0}{"partition_id":1.0}', 400)
def test_arbitrary_bytes(body: bytes, limit: int) -> None:
    whole = feed_both([body], limit)
    assert feed_both([body[i : i + 1] for i in range(len(body))], limit, views=True) == whole


JSON_PIECES = [
    "{", "}", "[", "]", ",", ":", '"', '"a"', '""', "0", "-0", "01", "1.", ".5", "1e5", "1E+5", "-1.5e-3",
    "1e", "--1", "true", "false", "null", "tru", "nul", " ", "\n", "\t", "\r", "\x0b", "\x00",
    "\\", '"\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00"', '"\\u12"', '"\\x"', '"\\/"',
    '"\x01"', '"é"', '"\U0001f600"', "NaN", "Infinity", "9" * 30, '{"a":1}', "[1,2,]", "[,]",
]


@st.composite
def json_soup(draw: st.DrawFn) -> bytes:
    """Tokens and fragments of JSON in any order (mostly invalid), with valid values mixed in,
    and now and then a raw byte that is not UTF-8."""
    parts = draw(st.lists(st.sampled_from(JSON_PIECES) | json_values.map(json.dumps), min_size=1, max_size=12))
    raw = "".join(parts).encode()
    if draw(st.integers(0, 5)) == 0:
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + draw(st.sampled_from([b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff"])) + raw[i:]
    return raw


def strict_record(body: bytes) -> tuple[object, int] | None:
    """The first JSON value of ``body`` by Python's json made strict (UTF-8 only, no NaN or
    Infinity, no lone surrogates, nesting at most 64 with the record at level 1), and the byte
    where it ends; None when RFC 8259 does not allow it."""
    text = body.decode("utf-8", "surrogateescape")  # a byte that is not UTF-8: a lone surrogate

    def no_constant(name: str) -> object:
        raise ValueError(name)

    try:
        value, end = json.JSONDecoder(parse_constant=no_constant).raw_decode(text)
    except ValueError:
        return None

    def walk(v: object, depth: int) -> None:
        if depth > 64:
            raise ValueError("depth")
        if isinstance(v, str):
            v.encode("utf-8")
        elif isinstance(v, list):
            for x in v:
                walk(x, depth + 1)
        elif isinstance(v, dict):
            for k, x in v.items():
                k.encode("utf-8")
                walk(x, depth + 1)

    try:
        walk(value, 1)
    except (ValueError, UnicodeError):
        return None
    return value, len(text[:end].encode("utf-8", "surrogateescape"))


@examples(200)
@given(json_soup(), st.booleans())
@example(b'"\\ud800"', False)
@example(b"-0.0e+00", False)
@example(b"1}} {", False)
def test_json_syntax_verdict_matches_pythons_json(soup: bytes, split: bool) -> None:
    """A record whose data is the soup: refused as invalid JSON exactly when Python's json
    (made strict) refuses the record; when the soup is the whole data, it comes back compact."""
    rec = b'{"value":{"type":"JSON","data":' + soup + b"}}"
    pieces = [rec[i : i + 7] for i in range(0, len(rec), 7)] if split else [rec]
    items, _ = feed_both(pieces, 2 * 1024 * 1024)
    first = items[0]
    oracle = strict_record(rec)
    if oracle is None:
        assert isinstance(first, RecordError), (rec, first)
        reason = first.message.split(": ", 1)[1]
        assert reason.startswith(("invalid JSON", "body ended inside the record")), (rec, first)
        return
    value, end = oracle
    if isinstance(first, RecordError):  # valid JSON, but not a valid record (an unknown field)
        assert not first.message.split(": ", 1)[1].startswith("invalid JSON"), (rec, first)
        return
    if end == len(rec):
        data = value["value"]["data"]  # type: ignore[index]
        assert first[3] == (None if data is None else compact_reference(soup.decode()))
        if data is not None:
            assert json.loads(first[3]) == data
