"""The v3 batch variant: ``POST .../records:batch`` with ``{"entries":[{"id":..., record}, ...]}``,
answered once with HTTP 207 ``{"successes":[...], "failures":[...]}`` (docs/api.md §1).

Each entry is checked by the same record rules as the stream (it goes through the splitter), so
both paths accept and refuse the same records, with the same messages (without the stream's
``record N at byte M:`` prefix). One difference: an entry is read as json reads it, so of a name
repeated within one object only the last member counts, where the stream refuses a repeated
record field. The body is small and bounded (at most 50 entries and ``max_bytes``) and parsed
once it has ended; the rest is ``WholeRequest``'s.

The splitter is given the compact rendering of the parsed entry without its ``id`` (so a JSON
``data`` is stored as Python writes the value: ``1E3`` becomes ``1000.0``): one parse of the
whole body by simdjson (``json_loads``, the objects json.loads makes; a body it refuses is read
again by ``json.loads``, which words the error), one ``json.dumps`` per entry. Some bodies have no such rendering: nesting
about 1000 deep (json recurses: RecursionError), an integer of more than 4300 digits
(ValueError), a string with a lone surrogate escape (not UTF-8), a number beyond the double
range (parsed as infinity), ``NaN`` or ``Infinity`` (which json takes and JSON is not). Then
``_BatchScan`` finds the entries by position instead, without a recursive parse, and an entry
json cannot render goes to the splitter as the client's own text without its ``id`` member. It
gets the stream's answer for that record: 400 with the stream's message, or (a number beyond
the double range or json's digits) produced as the stream stores it, the text as written.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from gateway.kafka.producer import KafkaProducer
from gateway.limits import RateLimiter
from gateway.produce.core import JsonSplitter, StreamCore, format_timestamp, json_loads
from gateway.produce.items import RecordError
from gateway.produce.reports import json_str
from gateway.produce.whole import RequestRefused, WholeRequest
from gateway.stats import ProduceStats

ENTRY_ID = re.compile(r"[0-9a-zA-Z_-]{1,80}\Z")
_MESSAGE_PREFIX = re.compile(r"^record \d+ at byte \d+: ")
BATCH_ERROR = 42208
_SHAPE = 'the batch must be {"entries": [...]}'
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# An entry's record: what json parsed, written back compact. ValueError for a lone surrogate (not
# UTF-8) and for infinity or NaN (not JSON), RecursionError when nested too deep for json.
_render = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode



_SPOOLED = b'{"error_code":202,'  # the report of a spooled record (gateway.produce.edge)

def _record_text(fields: dict[str, Any]) -> bytes | None:
    """The compact rendering of an entry's record fields; None when json cannot write it."""
    try:
        return _render(fields).encode()
    except (ValueError, RecursionError):
        return None


def _not_json(reason: str) -> RequestRefused:
    return RequestRefused(400, 400, f"the batch is not valid JSON: {reason}")


def _shape(message: str = _SHAPE) -> RequestRefused:
    return RequestRefused(422, BATCH_ERROR, message)


class BatchRequest(WholeRequest):
    """The v3 batch variant; answers when every entry has its outcome."""

    _noun = "batch entries"
    _too_large = "batch body"
    api = "v3_batch"

    def __init__(
        self,
        conn: Any,
        producer: KafkaProducer,
        make_splitter: Callable[[], Any],
        *,
        cluster_id: str,
        topic: str,
        partitions: int,
        max_entries: int,
        max_bytes: int,
        stats: ProduceStats | None = None,
        rates: RateLimiter | None = None,
        principal: str = "-",
    ) -> None:
        super().__init__(
            conn, producer, topic=topic, partitions=partitions, max_bytes=max_bytes, stats=stats,
            rates=rates, principal=principal,
        )
        self._make_splitter = make_splitter
        self._cluster_id = cluster_id
        self._max_entries = max_entries
        self._ids: list[str] = []

    def _begin(self, body: bytes) -> list[Any]:
        items: list[Any] = []
        for index, (entry_id, record) in enumerate(self._parse(body)):
            self._ids.append(entry_id)
            splitter = self._make_splitter()
            item = (splitter.feed(record) + splitter.finish())[0]
            if isinstance(item, RecordError):
                item = RecordError(index, item.error_code, _MESSAGE_PREFIX.sub("", item.message))
            items.append(item)
        return items

    def _parse(self, body: bytes) -> list[tuple[str, bytes]]:
        """Each entry's id and the record text the splitter is to decode; RequestRefused when
        the body is not a batch."""
        try:
            doc = json_loads(body)
        except ValueError:
            # Not JSON, or what json_loads refuses on purpose (NaN, a lone surrogate escape,
            # nesting past 1024, an integer over Python's 4300 digits): json reads it again and
            # words the error as this endpoint always has.
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _not_json(f"it is not UTF-8 (byte {exc.start})") from None
            try:
                doc = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _not_json(str(exc)) from None
            except (ValueError, RecursionError):
                # Valid JSON json cannot hold (an integer over 4300 digits, nesting ~1000 deep).
                return _BatchScan(body, self._max_entries).entries()
        if not isinstance(doc, dict) or set(doc) != {"entries"} or not isinstance(doc["entries"], list):
            raise _shape()
        entries = doc["entries"]
        if not 1 <= len(entries) <= self._max_entries:
            raise _shape(f"a batch has 1 to {self._max_entries} entries, not {len(entries)}")
        checked: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise _shape(f"entries[{i}] is not an object")
            fields = dict(entry)
            checked.append((_check_id(i, fields.pop("id", None), seen), fields))
        out: list[tuple[str, bytes]] = []
        for entry_id, fields in checked:
            record = _record_text(fields)
            if record is None:
                return _BatchScan(body, self._max_entries, entries).entries()
            out.append((entry_id, record))
        return out

    def _answer(self, core: StreamCore) -> tuple[int, bytes]:
        successes: list[bytes] = []
        failures: list[bytes] = []
        for entry_id, outcome in zip(self._ids, core.take_outcomes(), strict=True):
            if isinstance(outcome, bytes):
                # The core's report {"error_code":...,"message":...} with the id first: a
                # failure, or a record accepted into the disk spool (202: a success, to be
                # produced once Kafka is back).
                entry = b'{"id":%s,%s' % (json_str(entry_id), outcome[1:])
                (successes if outcome.startswith(_SPOOLED) else failures).append(entry)
                continue
            partition, offset, timestamp, key_type, key_size, value_type, value_size = outcome
            out: dict[str, Any] = {
                "id": entry_id,
                "cluster_id": self._cluster_id,
                "topic_name": self._topic,
                "partition_id": partition,
                "offset": offset,
                "timestamp": format_timestamp(timestamp).decode(),
            }
            if key_type is not None:
                out["key"] = {"type": key_type, "size": key_size}
            if value_type is not None:
                out["value"] = {"type": value_type, "size": value_size}
            successes.append(_dumps(out).encode())
        body = b'{"successes":[%s],"failures":[%s]}' % (b",".join(successes), b",".join(failures))
        return 207, body


def _check_id(i: int, entry_id: Any, seen: set[str]) -> str:
    if not isinstance(entry_id, str) or not ENTRY_ID.match(entry_id):
        raise _shape(f"entries[{i}].id must be 1 to 80 characters of [0-9a-zA-Z_-]")
    if entry_id in seen:
        raise _shape(f"entries[{i}].id {entry_id} is not unique")
    seen.add(entry_id)
    return entry_id


# -- bodies json cannot take whole -----------------------------------------------------------
#
# The scan reads the body's bytes with regular expressions and the splitter's bracket scanner,
# never recursing: the document object, its "entries" array, and each entry's members up to the
# first "id". It is as lenient as that needs (what lies inside a value is the splitter's to
# judge) and strict where it reads: a body it cannot follow is not JSON (400).

_WS = re.compile(rb"[ \t\n\r]*+")
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_STRING_RE = re.compile(_STRING, re.S)
_SCALAR = re.compile(
    _STRING + rb"|-?+[0-9]++(?:\.[0-9]++)?+(?:[eE][-+]?+[0-9]++)?+|true|false|null|NaN|-?Infinity",
    re.S,
)


def _container(depth: int) -> bytes:
    """A JSON array or object nested at most ``depth`` deep (brackets counted, not paired, as the
    splitter's scanner counts them), matched without backtracking."""
    pattern = rb'[\[{](?:[^\[\]{}"]++|' + _STRING + rb")*+[\]}]"
    for _ in range(depth - 1):
        pattern = rb'[\[{](?:[^\[\]{}"]++|' + _STRING + rb"|" + pattern + rb")*+[\]}]"
    return pattern


@functools.cache
def _members() -> re.Pattern[bytes]:
    """A run of object members, each followed by a comma, none named "id" (however its letters
    are escaped), each value a scalar or a container nested up to 64 deep (as deep as the
    splitter reads): passed over in one match however many there are. Compiled on first use
    (some 10 ms): the common case never needs it."""
    return re.compile(
        rb'(?:"(?!(?:i|\\u0069)(?:d|\\u0064)")(?:[^"\\]++|\\.)*+"[ \t\n\r]*+:[ \t\n\r]*+(?:'
        + _SCALAR.pattern + rb"|" + _container(64) + rb")[ \t\n\r]*+,[ \t\n\r]*+)*+",
        re.S,
    )


_NO_ID: Any = object()  # an entry without an "id" member


def _skip(rx: re.Pattern[bytes], b: bytes, p: int) -> int:
    """Where ``rx`` (which matches the empty string too) stops matching from ``p``."""
    m = rx.match(b, p)
    return p if m is None else m.end()


class _BatchScan:
    """The entries of a batch body that json cannot parse or write back whole.

    ``entries()`` answers as ``BatchRequest._parse`` does: each entry's id and the record text
    for the splitter, or RequestRefused. An entry json can parse and write (alone) is rendered
    as in the common case; any other entry is the client's text without its first "id"
    member. Work is linear in the body: a run of members is one regular-expression match, each
    other array or object one pass of the splitter's scanner (in C, however deep)."""

    def __init__(self, body: bytes, max_entries: int, parsed: list[Any] | None = None) -> None:
        self._body = body
        self._max_entries = max_entries
        self._parsed = parsed  # the entries as json parsed them, when it could

    def entries(self) -> list[tuple[str, bytes]]:
        spans = self._elements()
        if not spans:
            raise _shape(f"a batch has 1 to {self._max_entries} entries, not 0")
        # Every entry is read before any is judged: a body that is not JSON is told so (400)
        # before a shape error (422), as in the common case.
        read = [self._entry(i, start, end) for i, (start, end) in enumerate(spans)]
        out: list[tuple[str, bytes]] = []
        seen: set[str] = set()
        for i, entry in enumerate(read):
            if entry is None:
                raise _shape(f"entries[{i}] is not an object")
            entry_id, record = entry
            out.append((_check_id(i, entry_id, seen), record))
        return out

    # -- the document and its entries -------------------------------------------------------
    def _elements(self) -> list[tuple[int, int]]:
        """The (start, end) of each element of the "entries" array."""
        b = self._body
        p = self._ws(0)
        if b[p : p + 1] != b"{":
            raise _shape()
        p = self._ws(p + 1)
        if b[p : p + 1] == b"}":
            raise _shape()
        name, p = self._name(p)
        if name != "entries" or b[p : p + 1] != b"[":
            raise _shape()
        spans: list[tuple[int, int]] = []
        p = self._ws(p + 1)
        if b[p : p + 1] != b"]":
            while True:
                if len(spans) == self._max_entries:
                    raise _shape(
                        f"a batch has 1 to {self._max_entries} entries, "
                        f"not {self._max_entries + 1} or more"
                    )
                end = self._value_end(p)
                spans.append((p, end))
                p = self._ws(end)
                if b[p : p + 1] == b",":
                    p = self._ws(p + 1)
                    continue
                if b[p : p + 1] != b"]":
                    raise self._unexpected(p, "',' or ']' after an entry")
                break
        p = self._ws(p + 1)
        if b[p : p + 1] == b",":
            raise _shape()  # another member besides "entries"
        if b[p : p + 1] != b"}":
            raise self._unexpected(p, "',' or '}' after the entries")
        p = self._ws(p + 1)
        if p != len(b):
            raise self._unexpected(p, "the end of the body")
        return spans

    def _entry(self, i: int, start: int, end: int) -> tuple[Any, bytes] | None:
        """An entry's id (as parsed: checked later) and record text; None if not an object."""
        b = self._body
        if b[start] != 0x7B:  # '{'
            return None
        while b[end - 1] in b" \t\n\r":
            end -= 1
        if self._parsed is not None:
            entry = self._parsed[i]
        else:
            try:
                entry = json.loads(b[start:end])
            except json.JSONDecodeError as exc:
                at = start + len(exc.doc[: exc.pos].encode())
                raise _not_json(f"{exc.msg} at byte {at}") from None
            except (ValueError, RecursionError):
                return self._raw_entry(start, end)
        fields = dict(entry)
        entry_id = fields.pop("id", None)
        record = _record_text(fields)
        if record is None:
            return self._raw_entry(start, end)
        return entry_id, record

    def _raw_entry(self, start: int, end: int) -> tuple[Any, bytes]:
        """The id of the entry ``b[start:end]`` and its text without that id member."""
        b = self._body
        p = self._ws(start + 1)
        if b[p : p + 1] == b"}":
            return _NO_ID, b[start:end]
        member = value = p
        while True:
            p = _skip(_members(), b, p)
            member = p
            name, p = self._name(p)
            value = p
            p = self._ws(self._value_end(p))
            if name == "id":
                break
            if b[p : p + 1] == b",":
                p = self._ws(p + 1)
                continue
            if b[p : p + 1] != b"}":
                raise self._unexpected(p, "',' or '}' after a field")
            return _NO_ID, b[start:end]
        entry_id: Any = None  # (not a string: refused by the id check)
        if b[value : value + 1] == b'"':
            try:
                entry_id = json.loads(b[value : self._value_end(value)])
            except ValueError:
                raise self._unexpected(value, "a valid string") from None
        if b[p : p + 1] == b",":
            # Drop the member, its comma and the whitespace after it.
            return entry_id, b[start:member] + b[self._ws(p + 1) : end]
        if b[p : p + 1] != b"}":
            raise self._unexpected(p, "',' or '}' after a field")
        # The last member: drop it with the comma before it, if there is one.
        q = member
        while b[q - 1] in b" \t\n\r":
            q -= 1
        if b[q - 1] == 0x2C:
            member = q - 1
        return entry_id, b[start:member] + b[p:end]

    # -- tokens -------------------------------------------------------------------------------
    def _ws(self, p: int) -> int:
        return _skip(_WS, self._body, p)

    def _unexpected(self, p: int, expected: str) -> RequestRefused:
        if p >= len(self._body):
            return _not_json(f"expected {expected}, found the end of the body")
        c = self._body[p]
        found = f"'{chr(c)}'" if 0x20 <= c <= 0x7E else f"byte 0x{c:02x}"
        return _not_json(f"expected {expected}, found {found} at byte {p}")

    def _name(self, p: int) -> tuple[str, int]:
        """The member name at ``p`` (decoded), and where its value starts."""
        m = _STRING_RE.match(self._body, p)
        if m is None:
            raise self._unexpected(p, "a field name")
        token = m.group()
        try:
            name = json.loads(token) if b"\\" in token else token[1:-1].decode()
        except ValueError:
            raise self._unexpected(p, "a valid field name") from None
        p = self._ws(m.end())
        if self._body[p : p + 1] != b":":
            raise self._unexpected(p, "':' after a field name")
        return name, self._ws(p + 1)

    def _value_end(self, p: int) -> int:
        """Where the value at ``p`` ends; for an array or object, where the next non-blank byte
        after it is."""
        b = self._body
        c = b[p : p + 1]
        if c == b"[" or c == b"{":
            return self._container_end(p)
        m = _SCALAR.match(b, p)
        if m is None:
            raise self._unexpected(p, "a value")
        return m.end()

    def _container_end(self, p: int) -> int:
        """The splitter's scanner finds where the container at ``p`` closes (counting brackets
        outside strings, in C, however deep); an array is fed to it as if it began with '{'.
        What follows is the splitter's first fatal error: the next non-blank byte."""
        b = self._body
        view = memoryview(b)
        splitter = JsonSplitter(min(max(len(b) - p + 1, 2), 1 << 31))
        if b[p] == 0x7B:
            out = splitter.feed(view[p:])
        else:
            out = splitter.feed(b"{") + splitter.feed(view[p + 1 :])
        out += splitter.finish()
        first = out[0]
        if isinstance(first, RecordError) and first.fatal:
            raise self._unexpected(len(b), f"the end of the value at byte {p}")
        if len(out) == 1:
            return len(b)  # only whitespace after it
        after = out[1]
        if not (isinstance(after, RecordError) and after.fatal):
            # Another object right after it (the splitter read it as the next record).
            raise _not_json(f"the value at byte {p} is followed by another value")
        return p + splitter.offset
