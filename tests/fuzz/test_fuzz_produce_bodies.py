"""Fuzzing the produce bodies answered as a whole: the v3 batch variant (``records:batch``,
gateway/produce/batch.py) and v1/v2 produce (gateway/produce/v1.py) (docs/api.md §1 "Batch
variant", §2, §3).

The request objects run in process on the fake producer of the unit tests
(tests/support/fake_producer.py, at the compiled producer's interface), so the real splitter,
``StreamCore`` and ``KafkaProducer`` answer, and hundreds of bodies take seconds. The bodies are JSON
text written here, not by ``json.dumps``: any Unicode, escapes of every kind, lone surrogate
escapes (``"\\ud800"``), numbers json cannot hold (``1e999``, integers of 4300+ digits), ``NaN``
(which json accepts and JSON is not), nesting past 64 levels up to 100,000, and whitespace
anywhere JSON allows it.

What a client sees, whatever the body:

- exactly one answer, with a status docs/api.md gives and a JSON body of its shape; nothing is
  produced when the request is refused as a whole;
- records:batch: a body of valid entries is answered 207, and each entry's fate is the v3
  stream's for the same record: a JsonSplitter fed the entry's record JSON (its text without
  the ``id`` member) accepts it, and then it is produced exactly once, with the key, value,
  headers, partition and timestamp the splitter gives for that record text (so the bytes a
  stream would store for it), and reported a success under its id;
  or it refuses it, and the entry is a failure under its id with the splitter's error_code and
  message (without its ``record N at byte M:`` prefix);
- v1/v2: the status and error_code a model of docs/api.md §2 gives for the body, and on 200
  one offsets entry per record, each record produced once with its key, value and partition.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fake_producer import FakeRdProducer
from support.fuzz import examples, mutated, splits

from gateway.kafka.producer import KafkaProducer
from gateway.produce import JsonSplitter, RecordError
from gateway.produce.batch import BatchRequest
from gateway.produce.v1 import V1ProduceRequest

TOPIC = "t"
PARTITIONS = 3
MAX_ENTRIES = 10
MAX_RECORD = 1 << 20
MAX_BYTES = 4 << 20
PREFIX = re.compile(r"^record \d+ at byte \d+: ")
ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}")


# -- JSON text ---------------------------------------------------------------------------------

WS = st.sampled_from(["", "", "", " ", "\n", "\t", " \r\n "])


@st.composite
def _rarely(draw: st.DrawFn, usual: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> str:
    """``usual``, or one time in eight ``other``: what the gateway cannot take stays the exception
    within a body, so the entries around it are drawn too."""
    return draw(other if draw(st.integers(0, 7)) == 3 else usual)


# JSON strings: any text, written with UTF-8 or with \u escapes (surrogate pairs beyond the BMP),
# or one of a few hand-written ones; rarely one with a lone surrogate escape.
plain_strings = st.one_of(
    st.text(max_size=8).map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.text(max_size=8).map(json.dumps),
    st.sampled_from(['"a\\/b"', '"\\u00E9\\u00e9"', '"\\uD83D\\uDE00"', '"\\b\\f\\n\\r\\t"', '"\u2028é😀"']),
)
lone_surrogates = st.sampled_from(['"\\ud800"', '"x\\uDBFF"', '"\\udc00y"', '"\\uDFFF\\uD800"', '"\\ud83d\\u0041"'])
json_strings = _rarely(plain_strings, lone_surrogates)
plain_numbers = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1E3", "-0", "-0.0", "0.5e-10", "1e+2", "1e-400", "4.9e-324", "1.7976931348623157e308"]),
)
json_numbers = _rarely(
    plain_numbers,
    st.one_of(
        st.sampled_from(["1e999", "-1e400", "1.8e308"]),  # beyond the double range
        st.integers(4295, 4305).map(lambda n: "7" * n),  # around json's 4300-digit limit
    ),
)
plain_literals = st.sampled_from(["true", "false", "null"])
json_literals = _rarely(plain_literals, st.sampled_from(["NaN", "-Infinity"]))  # json takes them


def _name_of(member: tuple[str, str]) -> str:
    return json.loads(member[0])  # (names are unique as json reads them: see members())


def _array(items: list[str], ws: list[str]) -> str:
    return "[" + ",".join(w + item for w, item in zip(ws, items, strict=False)) + "]"


def _object(members: list[tuple[str, str]], ws: str) -> str:
    return "{" + ",".join(f"{ws}{k}{ws}:{ws}{v}" for k, v in members) + ws + "}"


def _values(strings: st.SearchStrategy[str], leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.recursive(
        leaves,
        lambda inner: st.builds(_array, st.lists(inner, max_size=4), st.lists(WS, min_size=4, max_size=4))
        | st.builds(_object, st.lists(st.tuples(strings, inner), max_size=4, unique_by=_name_of), WS),
        max_leaves=6,
    )


# JSON values the gateway can store whatever the path; and any JSON value (and NaN).
plain_json_values = _values(plain_strings, plain_strings | plain_numbers | plain_literals)
json_values = _values(json_strings, json_strings | json_numbers | json_literals)


@st.composite
def deep(draw: st.DrawFn, inner: st.SearchStrategy[str]) -> str:
    """A value nested ``n`` arrays or objects deep: around the splitter's 64 levels, past
    json's recursion limit, or 100,000 (the reported body)."""
    n = draw(st.sampled_from([1, 60, 62, 63, 64, 65, 1200, 100_000]))
    value = draw(inner)
    if draw(st.booleans()):
        return "[" * n + value + "]" * n
    return '{"a":' * n + value + "}" * n


json_data = _rarely(json_values, deep(json_values))


def _escaped_name(name: str, how: int) -> str:
    """A field name's JSON string: as is, or with its first letter (or all) as \\u escapes."""
    if how == 0 or not name:
        return json.dumps(name)
    if how == 1:
        return '"\\u%04x%s"' % (ord(name[0]), name[1:])
    return '"' + "".join("\\u%04X" % ord(c) for c in name) + '"'


@st.composite
def members(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]], unknown: list[str]) -> list[tuple[str, str]]:
    """Some of ``fields``, rarely an unknown one, in any order, names sometimes escaped.

    Names are unique, here and in every object of the JSON text: the batch reads an entry as
    json does, which keeps the last of repeated names, where the stream refuses a repeated
    record field and reads every member (a lone surrogate in a member json drops is refused by
    the stream, not by the batch). docs/api.md says so; the fuzz does not draw them."""
    names = draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)))
    if unknown and draw(st.integers(0, 7)) == 0:
        names.insert(draw(st.integers(0, len(names))), draw(st.sampled_from(unknown)))
    out = []
    for name in names:
        value = draw(fields[name]) if name in fields else draw(json_values)
        how = draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1, 2]))
        out.append((_escaped_name(name, how), value))
    return out


def base64_text(data: bytes) -> str:
    return '"' + base64.b64encode(data).decode() + '"'


base64_strings = st.one_of(
    st.binary(max_size=12).map(base64_text),
    st.sampled_from(['"%%%"', '"QQ"', '"QUJD="', '"QU JD"', '"QUJ-"', '"QUJé"', '""', '"\\u0041A=="']),
)
side_type = st.sampled_from(['"BINARY"', '"JSON"', '"STRING"', '"STRING"', '"AVRO"', '"binary"', "null", "1", '"J\\u0053ON"'])


@st.composite
def side(draw: st.DrawFn) -> str:
    """A record's key or value: null, or {"type": ..., "data": ...} fitting its type or not."""
    if draw(st.integers(0, 9)) == 3:
        return draw(st.sampled_from(["null", "[]", '"x"', "{}"]))
    type_text = draw(side_type)
    fitting = {
        '"BINARY"': base64_strings,
        '"STRING"': json_strings,
        '"JSON"': json_data,
        '"J\\u0053ON"': json_data,
    }.get(type_text, json_values)
    fields = {"type": st.just(type_text), "data": _rarely(fitting, json_values | st.just("null"))}
    return _object(draw(members(fields, ["subject", "x"])), draw(WS))


header = st.builds(
    _object,
    members({"name": json_strings | json_values, "value": base64_strings | st.just("null") | json_values}, ["x"]),
    WS,
)
record_fields = {
    "partition_id": st.sampled_from(
        ["0", "1", "2", "-0", "null", "-1", "3", "2147483648", "99999999999999999999", "1.0", "1E0", '"1"']
    ),
    "headers": st.one_of(st.just("null"), st.lists(header, max_size=3).map(lambda hs: "[" + ",".join(hs) + "]"), json_values),
    "key": side(),
    "value": side(),
    "timestamp": st.sampled_from(
        ['"2026-11-21T10:14:42.123Z"', '"2026-11-21T10:14:42+02:00"', '"1970-01-01T00:00:00Z"', '"not a time"', "null", "1"]
    ),
}
ids = st.text("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-", min_size=1, max_size=80)


@st.composite
def entries(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """1 to 6 entries with unique valid ids, the id member anywhere among the fields: (id, entry
    text, record text: the entry without its id member)."""
    out = []
    for entry_id in draw(st.lists(ids, min_size=1, max_size=6, unique=True)):
        fields = draw(members(record_fields, ["idx", "partition"]))
        ws = draw(WS)
        id_member = (_escaped_name("id", draw(st.sampled_from([0, 0, 0, 1, 2]))), json.dumps(entry_id))
        at = draw(st.integers(0, len(fields)))
        out.append((entry_id, _object([*fields[:at], id_member, *fields[at:]], ws), _object(fields, ws)))
    return out


def batch_body(texts: list[str], ws: str) -> bytes:
    return (ws + '{"entries"' + ws + ":" + ws + "[" + ",".join(ws + t + ws for t in texts) + "]" + ws + "}").encode()


# -- the request, in process -------------------------------------------------------------------


class Responder:
    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes, bool]] = []

    def respond(self, status: int, body: bytes, *, content_type: bytes = b"", close: bool = False,
                detail: str = "") -> None:
        self.answers.append((status, body, close))


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def run(loop: asyncio.AbstractEventLoop, make: Any, pieces: list[bytes]) -> tuple[int, Any, list[list[Any]]]:
    """Feed the body in ``pieces`` to the request ``make(conn, producer)`` builds, let Kafka
    acknowledge every record it produced: its one answer (status, parsed body) and the records
    produced ([topic, value, key, partition, opaque, ts, headers] each)."""
    kp = KafkaProducer({}, loop, producer_factory=lambda conf: FakeRdProducer(conf))
    fake = kp.current
    conn = Responder()
    req = make(conn, kp)
    for piece in pieces:
        req.on_body(memoryview(piece))
    req.on_body_end()
    produced = [list(q) for q in fake.queued if q is not None]
    for i in range(len(fake.queued)):
        fake.deliver(i)
    kp.poll_now()
    kp.close()
    assert len(conn.answers) == 1, conn.answers
    status, body, _ = conn.answers[0]
    return status, json.loads(body), produced


def make_batch(conn: Responder, kp: KafkaProducer) -> BatchRequest:
    return BatchRequest(conn, kp, lambda: JsonSplitter(MAX_RECORD), cluster_id="c", topic=TOPIC,
                        partitions=PARTITIONS, max_entries=MAX_ENTRIES, max_bytes=MAX_BYTES)


def error_body(doc: Any) -> int:
    """The error_code of an error body ({"error_code": int, "message": str}, nothing else)."""
    assert isinstance(doc, dict) and list(doc) == ["error_code", "message"], doc
    assert isinstance(doc["error_code"], int) and isinstance(doc["message"], str) and doc["message"], doc
    return doc["error_code"]


# -- records:batch -----------------------------------------------------------------------------

_render = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def splitter_item(record: bytes) -> Any:
    splitter = JsonSplitter(MAX_RECORD)
    return (splitter.feed(record) + splitter.finish())[0]


def stored_record(record_text: str) -> Any:
    """What the batch stores for an entry the splitter accepts: the splitter's item for the
    client's own record text, the entry without its id (docs/api.md: "as a stream stores
    it")."""
    return splitter_item(record_text.encode())


def check_success(report: dict[str, Any], item: tuple, produced: list[Any]) -> None:
    _, partition, key, value, headers, ts, key_type, value_type = item
    topic, p_value, p_key, p_partition, _, p_ts, p_headers = produced
    assert (topic, p_value, p_key, p_headers) == (TOPIC, value, key, headers)
    assert p_partition == partition  # -1: the partitioner decides
    assert p_ts == ts  # 0: the gateway's clock
    assert list(report)[:6] == ["id", "cluster_id", "topic_name", "partition_id", "offset", "timestamp"]
    assert (report["cluster_id"], report["topic_name"]) == ("c", TOPIC)
    assert report["partition_id"] == max(partition, 0)  # (the fake producer's partitioner: 0)
    assert isinstance(report["offset"], int) and report["timestamp"].endswith("Z")
    for name, kind, data in (("key", key_type, key), ("value", value_type, value)):
        if kind is None:
            assert name not in report
        else:
            assert report[name] == {"type": kind, "size": len(data or b"")}


def check_batch(loop: asyncio.AbstractEventLoop, batch: list[tuple[str, str, str]], pieces: list[bytes]) -> None:
    status, doc, produced = run(loop, make_batch, pieces)
    assert status == 207, doc
    assert list(doc) == ["successes", "failures"]
    successes, failures = iter(doc["successes"]), iter(doc["failures"])
    produced_records = iter(produced)
    for entry_id, entry_text, record_text in batch:
        verdict = splitter_item(record_text.encode())
        if isinstance(verdict, RecordError):
            want = {"id": entry_id, "error_code": verdict.error_code,
                    "message": PREFIX.sub("", verdict.message)}
        elif verdict[1] >= PARTITIONS:  # the stream's report once the splitter has the record
            want = {"id": entry_id, "error_code": 40402, "message": f"partition_id {verdict[1]} "
                    f"does not exist: topic '{TOPIC}' has {PARTITIONS} partitions"}
        else:
            want = {}
        if want:
            assert next(failures) == want, entry_text
            continue
        item = stored_record(record_text)
        assert not isinstance(item, RecordError), (entry_text, item)
        report = next(successes)
        assert report["id"] == entry_id, (entry_text, report)
        check_success(report, item, next(produced_records))
    # Nothing else answered, nothing else (nor twice) produced.
    assert next(successes, None) is None and next(failures, None) is None
    assert next(produced_records, None) is None


@examples(200)
@given(st.data(), entries(), WS)
def test_each_batch_entry_gets_the_v3_streams_answer_for_its_record(loop, data, batch, ws) -> None:
    body = batch_body([text for _, text, _ in batch], ws)
    check_batch(loop, batch, data.draw(splits(body)))


GOOD = '{"value":{"type":"STRING","data":"ok"}}'
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("bad", [
    '{"value":{"type":"JSON","data":"\\ud800"}}',  # the two reported entries
    '{"value":{"type":"JSON","data":' + DEEP + "}}",
    '{"value":{"type":"STRING","data":"\\uDC00x"},"key":{"type":"JSON","data":1e999}}',
    '{"value":{"type":"JSON","data":[1e999,1E3,' + "7" * 5000 + "]}}",
    '{"value":{"type":"JSON","data":NaN}}',
    '{"key":null,"value":{"type":"JSON","data":' + "{\"a\":" * 70 + "1" + "}" * 70 + "}}",
    '{"value":{"type":"STRING","data":"a"},"value":{"type":"STRING","data":"b"}}',  # repeated
    '{"value":{"type":"JSON","data":{"a":1,"a":2}}}',
])
@pytest.mark.parametrize("id_at", ["first", "last"])
def test_entries_json_cannot_hold_get_the_streams_answer(loop, bad, id_at) -> None:
    """The valid entries around them are produced; each gets the v3 stream's answer for its
    record: the reported two fail as the stream words them, the numbers beyond the double
    range and json's digit limit are stored as the client wrote them."""
    def entry(entry_id: str, record: str) -> tuple[str, str, str]:
        if id_at == "first":
            return entry_id, '{"id":"%s",%s' % (entry_id, record[1:]), record
        return entry_id, '%s,"id":"%s"}' % (record[:-1], entry_id), record

    batch = [entry("a", GOOD), entry("b", bad), entry("c", GOOD)]
    check_batch(loop, batch, [batch_body([text for _, text, _ in batch], "")])


# A few bodies that are not batches, and what they get (docs/api.md §1 "Batch variant").
@pytest.mark.parametrize("body,status,code", [
    (b"\xff", 400, 400),
    (b'{"entries":[{"id":"a","value":{"type":"STRING","data":"\xed\xa0\x80"}}]}', 400, 400),  # UTF-8 of a surrogate
    (b'{"entries":[{"id":"a"}] x', 400, 400),
    # Nesting past 1024 outside a record: not a body the gateway reads (400, as json_loads).
    (b'[' * 100_000 + b']' * 100_000, 400, 400),
    (b'{"x":' + b'[' * 100_000 + b']' * 100_000 + b',"entries":[{"id":"a"}]}', 400, 400),
    (b'{"entries":[' + b'[' * 100_000 + b']' * 100_000 + b']}', 400, 400),
    (b'{"entries":[{"value":' + b'[' * 100_000 + b']' * 100_000 + b'}]}', 422, 42208),  # no id
    (b'{"entries":[{"id":"a","value":' + b'[' * 100_000 + b']' * 99_999 + b'}]}', 400, 400),
    (b'{"entries":[{"id":"a","value":' + b'[' * 100_000 + b']' * 100_000 + b'} {"id":"b"}]}', 400, 400),
    (b'{"entries":[{"id":"a","value":' + b'[' * 100_000 + b']' * 100_000 + b'},{"id":"b","v":tru}]}', 400, 400),
    (b'{"entries":[{"id":"a","value":' + b'[' * 100_000 + b']' * 100_000 + b'},{"id":"a"}]}', 422, 42208),
    (b'{"entries":[' + b','.join(b'{"id":"%d","v":1e999}' % i for i in range(11)) + b']}', 422, 42208),
])
def test_a_body_that_is_not_a_batch_is_refused_whole(loop, body, status, code) -> None:
    got, doc, produced = run(loop, make_batch, [body])
    assert (got, error_body(doc)) == (status, code), doc
    assert produced == []


@examples(200)
@given(st.data(), entries(), WS)
def test_any_body_gets_one_clean_answer(loop, data, batch, ws) -> None:
    """Generated batches with bytes flipped, inserted, dropped: 207 or the body's 400/422,
    never anything else; a 207 names each produced entry once, as a success."""
    body = data.draw(mutated(batch_body([text for _, text, _ in batch], ws)))
    status, doc, produced = run(loop, make_batch, data.draw(splits(body)))
    if status != 207:
        assert (status, error_body(doc)) in {(400, 400), (422, 42208)}, (body, doc)
        assert produced == []
        return
    assert list(doc) == ["successes", "failures"]
    answered = [e["id"] for e in doc["successes"]] + [e["id"] for e in doc["failures"]]
    assert len(answered) == len(set(answered)) and all(ENTRY_ID.fullmatch(i) for i in answered)
    assert len(produced) == len(doc["successes"])
    for failure in doc["failures"]:
        assert list(failure) == ["id", "error_code", "message"] and failure["error_code"] in {400, 40402}


# -- v1 and v2 produce --------------------------------------------------------------------------

V1_FIELDS = ("value", "key", "partition")
SCHEMA_FIELDS = ("key_schema", "key_schema_id", "value_schema", "value_schema_id")


@st.composite
def v1_record(draw: st.DrawFn, embedded: str, good: bool) -> str:
    """A record of a v1/v2 body: a good one (key and value in the embedded format, a partition
    of the topic or none), or anything like one."""
    data = st.binary(max_size=12).map(base64_text) if embedded == "binary" else plain_json_values
    side = data | st.just("null")
    partition = st.sampled_from(["null", "0", "1", "2"])
    if not good:
        side = _rarely(side, base64_strings | json_values | json_data)
        partition = _rarely(partition, record_fields["partition_id"])
    chosen = draw(members({"key": side, "partition": partition}, [] if good else ["topic"]))
    if good or draw(st.integers(0, 7)):
        chosen.insert(draw(st.integers(0, len(chosen))), ('"value"', draw(side)))
    return _object(chosen, draw(WS))


@st.composite
def v1_bodies(draw: st.DrawFn, embedded: str) -> bytes:
    """A v1/v2 produce body: half of them good ones, the others {"records": [...]} with records
    of any kind, or anything."""
    good = draw(st.booleans())
    record = v1_record(embedded, good)
    if not good:
        record = _rarely(record, json_values)
    records = st.lists(record, min_size=1, max_size=4).map(lambda rs: "[" + ",".join(rs) + "]")
    schema = {"value_schema_id": st.just("1"), "key_schema": st.just("null")}
    chosen = draw(members(schema, [] if good else ["records2"]))
    chosen.insert(draw(st.integers(0, len(chosen))), ('"records"', draw(records if good else _rarely(records, json_values))))
    body = _object(chosen, draw(WS))
    if not good and draw(st.integers(0, 7)) == 3:
        body = draw(st.sampled_from(["", " ", "[]", "null", '{"records":' + DEEP + "}", "{", '"\\ud800"']))
    return body.encode()


def not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _base64(data: Any) -> bytes:
    """Standard alphabet, padded (RFC 4648 §4): Python's decoder also takes padding beyond the
    last quantum ("QUJD="), which docs/api.md does not."""
    if type(data) is not str or not data.isascii():
        raise ValueError
    stripped = data.rstrip("=")
    pad = len(data) - len(stripped)
    if len(data) % 4 or pad > 2 or (pad and len(stripped) % 4 + pad != 4):
        raise ValueError
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError from None


def v1_model(body: bytes, embedded: str, url_partition: int | None) -> tuple[int, int, list[tuple[int, Any, Any]]]:
    """docs/api.md §2: (status, error_code, [(partition, key, value) per record]) for a body."""
    refused: tuple[int, int, list[tuple[int, Any, Any]]] = (422, 422, [])
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=not_json)
    except (ValueError, RecursionError):
        return refused
    if not isinstance(doc, dict) or any(k not in ("records", *SCHEMA_FIELDS) for k in doc):
        return refused
    records = doc.get("records")
    if type(records) is not list or not records:
        return refused
    out = []
    for rec in records:
        if type(rec) is not dict or "value" not in rec or any(k not in V1_FIELDS for k in rec):
            return refused
        partition = rec.get("partition")
        if partition is None:
            partition = -1 if url_partition is None else url_partition
        elif type(partition) is not int or (url_partition is not None and partition != url_partition):
            return refused
        elif url_partition is None and not 0 <= partition < PARTITIONS:
            return 404, 40402, []
        sides = []
        for data in (rec.get("key"), rec["value"]):
            try:
                if data is None:
                    sides.append(None)
                elif embedded == "json":
                    sides.append(_render(data).encode())
                else:
                    sides.append(_base64(data))
            except (ValueError, RecursionError):
                return refused
        out.append((partition, *sides))
    return 200, 0, out


def check_v1(loop: asyncio.AbstractEventLoop, version: int, embedded: str, url_partition: int | None,
             body: bytes, pieces: list[bytes]) -> None:
    def make(conn: Responder, kp: KafkaProducer) -> V1ProduceRequest:
        return V1ProduceRequest(conn, kp, topic=TOPIC, partitions=PARTITIONS, url_partition=url_partition,
                                version=version, embedded=embedded, content_type=b"application/json",
                                max_bytes=MAX_BYTES)

    status, doc, produced = run(loop, make, pieces)
    want_status, want_code, want_records = v1_model(body, embedded, url_partition)
    assert status == want_status, (body, doc)
    if status != 200:
        assert error_body(doc) == want_code, doc
        assert produced == []
        return
    assert list(doc) == ["offsets", "key_schema_id", "value_schema_id"]
    assert doc["key_schema_id"] is None and doc["value_schema_id"] is None
    assert len(doc["offsets"]) == len(want_records) == len(produced)
    extra = {"error_code": None, "error": None} if version == 2 else {}
    for entry, (partition, key, value), (topic, p_value, p_key, p_partition, *_) in zip(
        doc["offsets"], want_records, produced, strict=True
    ):
        assert (topic, p_partition, p_key, p_value) == (TOPIC, partition, key, value)
        assert entry == {"partition": max(partition, 0), "offset": entry["offset"], **extra}
        assert isinstance(entry["offset"], int)


KINDS = [(1, "binary"), (1, "json"), (2, "binary"), (2, "json")]


@examples(300)
@given(st.data(), st.sampled_from(KINDS), st.sampled_from([None, None, 1]))
def test_any_v1_or_v2_body_gets_the_answer_docs_api_gives(loop, data, kind, url_partition) -> None:
    version, embedded = kind
    body = data.draw(v1_bodies(embedded))
    check_v1(loop, version, embedded, url_partition, body, data.draw(splits(body)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", [
    b'{"records":[{"value":"\\ud800"}]}',
    b'{"records":[{"value":' + DEEP.encode() + b'}]}',
    b'{"records":[{"value":1e999},{"value":' + b"7" * 5000 + b'}]}',
    b'{"records":[{"value":"AA==","partition":99999999999999999999}]}',
    b'{"records":[{"value":"AA==","partition":-99999999999999999999}]}',
])
@pytest.mark.parametrize("url_partition", [None, 1])
def test_the_reported_inputs_get_clean_v1_answers(loop, kind, body, url_partition) -> None:
    check_v1(loop, *kind, url_partition, body, [body])
