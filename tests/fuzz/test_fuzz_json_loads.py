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

``json_batch_entries`` (the records:batch walk, in the same shim) is checked against both: it
refuses what json_loads refuses, with the same message and offset (where the document holds none
of what it leaves to the splitter inside a record: NaN/Infinity, a lone surrogate escape), and
on a batch each entry's cut-out record reads, as json reads it, as the entry without its first
``id`` member.
"""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import examples, mutated
from support.json_text import typed

from gateway._speedups import JsonDecodeError, json_batch_entries, json_loads

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


names = strings | st.sampled_from(['"id"', '"id"', '"\\u0069d"', '"entries"', '"value"'])
entries = st.one_of(
    st.builds(_object, st.lists(st.tuples(names, values), max_size=4), WS),
    values,
)
batches = st.builds(
    lambda a, items, ws, b: (a + '{"entries":' + _array(items, ws) + b + "}").encode(),
    WS, st.lists(entries, max_size=4), st.lists(WS, min_size=4, max_size=4), WS,
)


def pairs(text: bytes) -> object:
    """The document as json reads it, every object a Members of its (name, value) pairs."""
    return json.loads(text.decode("utf-8"), object_pairs_hook=Members)


class Members(tuple):  # an object's members, in order, repeated names kept
    pass


def check_batch(doc: bytes) -> None:
    try:
        expected = json_loads(doc)
    except JsonDecodeError as exc:
        if _REFUSED.search(doc):
            return  # (inside a record, left to the splitter: the walk may read on)
        try:
            json_batch_entries(doc)
        except JsonDecodeError as got:
            assert (got.msg, got.pos) == (exc.msg, exc.pos), doc
            return
        raise AssertionError(f"the batch walk took {doc!r}: {exc}") from None
    except ValueError:
        expected = None  # an integer over Python's digit limit: the walk converts none
    got = json_batch_entries(doc)
    whole = pairs(doc)
    if not (isinstance(whole, Members) and len(whole) == 1 and whole[0][0] == "entries"
            and isinstance(whole[0][1], list)):
        assert got is None, doc
        return
    assert expected is None or isinstance(expected, dict)
    assert got is not None and len(got) == len(whole[0][1]), (doc, got)
    for entry, item in zip(got, whole[0][1], strict=True):
        if not isinstance(item, Members):
            assert entry is None, (doc, entry)
            continue
        assert entry is not None, doc
        entry_id, ids, start, cut_start, cut_end, end = entry
        id_values = [v for k, v in item if k == "id"]
        assert ids == len(id_values), doc
        if id_values:
            assert entry_id == (id_values[0] if isinstance(id_values[0], str) else None), doc
            first = next(i for i, (k, _) in enumerate(item) if k == "id")
            item = Members(item[:first] + item[first + 1:])
        else:
            assert entry_id is None and cut_start == cut_end == end, doc
        assert pairs(doc[start:cut_start] + doc[cut_end:end]) == item, doc


@examples(300)
@given(batches)
def test_batch_entries_cut_out_as_json_reads_them(doc: bytes) -> None:
    check_batch(doc)


@examples(500)
@given(st.data(), batches)
def test_mutated_batches_refused_as_json_loads_refuses_them(data: st.DataObject, doc: bytes) -> None:
    check_batch(data.draw(mutated(doc)))
