"""Fuzzing ``gateway._speedups.json_loads`` (simdjson's On-Demand API, ext/jsondoc.cc) against
``json.loads``, its reference twin.

Documents are JSON text written here (any Unicode, as UTF-8 or as \\u escapes, numbers of every
shape including integers past 64 bits and beyond the double range, repeated names, whitespace
anywhere JSON allows it), then byte-level mutations of them. Whatever the bytes:

- when json.loads reads them (as UTF-8) and they hold none of what json_loads refuses on
  purpose (NaN/Infinity, a lone surrogate escape), json_loads gives the same objects, types
  included;
- otherwise json_loads raises a ValueError: JsonDecodeError with a byte offset within the
  document when the text is not JSON.
"""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import examples, mutated

from gateway._speedups import JsonDecodeError, json_loads

WS = st.sampled_from(["", "", "", " ", "\n", "\t", " \r\n "])
strings = st.one_of(
    st.text(max_size=8).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(['"a\\/b"', '"\\u00E9\\u00e9"', '"\\uD83D\\uDE00"', '"\\b\\f\\n\\r\\t"', '"\u2028é😀"',
                     '"\\u0000"']),
)
numbers = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.integers().map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1E3", "-0", "-0.0", "0.5e-10", "1e+2", "1e-400", "4.9e-324",
                     "1.7976931348623157e308", "1e999", "-1e400", "18446744073709551615",
                     "18446744073709551616", "-9223372036854775809"]),
)
literals = st.sampled_from(["true", "false", "null"])


def _array(items: list[str], ws: list[str]) -> str:
    return "[" + ",".join(w + item for w, item in zip(ws, items, strict=False)) + "]"


def _object(members: list[tuple[str, str]], ws: str) -> str:
    return "{" + ",".join(f"{ws}{k}{ws}:{ws}{v}" for k, v in members) + ws + "}"


values = st.recursive(
    strings | numbers | literals,
    lambda inner: st.builds(_array, st.lists(inner, max_size=5), st.lists(WS, min_size=5, max_size=5))
    | st.builds(_object, st.lists(st.tuples(strings | st.just('"a"'), inner), max_size=5), WS),
    max_leaves=12,
)
documents = st.builds(lambda a, v, b: (a + v + b).encode(), WS, values, WS)

_REFUSED = re.compile(rb"NaN|Infinity|\\u[dD][89a-fA-F]")


def typed(x: object) -> object:
    """``x`` with every scalar's type made part of it (1, 1.0 and True compare equal)."""
    if isinstance(x, dict):
        return ("dict", [(k, typed(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("list", [typed(v) for v in x])
    if isinstance(x, float):
        return ("float", repr(x))
    return (type(x).__name__, x)


def check(doc: bytes) -> None:
    try:
        expected = json.loads(doc.decode("utf-8"))
    except (ValueError, RecursionError):
        expected = None
        reference_failed = True
    else:
        reference_failed = False
    if reference_failed or _REFUSED.search(doc):
        try:
            got = json_loads(doc)
        except JsonDecodeError as exc:
            assert 0 <= exc.pos <= len(doc), (doc, exc.pos)
            return
        except ValueError:
            return  # (an integer over Python's digit limit: json says so too)
        # Valid JSON after all: a surrogate pair escaped, or text json cannot decode.
        assert not reference_failed, (doc, got)
        assert typed(got) == typed(expected), doc
        return
    assert typed(json_loads(doc)) == typed(expected), doc


@examples(300)
@given(documents)
def test_json_documents_read_as_json_reads_them(doc: bytes) -> None:
    check(doc)


@examples(500)
@given(st.data(), documents)
def test_mutated_documents_read_as_json_or_refused_with_an_offset(data: st.DataObject, doc: bytes) -> None:
    check(data.draw(mutated(doc)))


@examples(200)
@given(st.binary(max_size=64))
def test_random_bytes(doc: bytes) -> None:
    check(doc)
