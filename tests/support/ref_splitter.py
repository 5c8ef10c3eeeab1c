"""Incremental splitter for a v3 produce body: concatenated JSON objects in, produce items out.

The pure-Python reference model of the gateway's compiled splitter
(``gateway._speedups.JsonSplitter``, ext/splitter.pxi): the specification the compiled one is
tested against, written for clarity, not speed. It is not part of the gateway (which needs its
extension). Both must give identical items, byte-identical messages and the same
``offset`` / ``records`` for any body, however it is split into feed() calls;
tests/unit/test_splitter.py and tests/fuzz run both and compare them. Change one, change the
other.

How a body is read (docs/api.md §1, "v3 produce records"):

1. Between records only whitespace (space, tab, LF, CR) and ``{`` may appear. Anything else is
   fatal: the splitter cannot find the start of the next record, so the stream must end.
2. A record's end is found by a string-aware bracket count (``{``/``[`` against ``}``/``]``), so a
   record can be split across feed() calls at any byte. A record that has not closed within
   ``max_record_bytes`` bytes of its ``{`` is fatal; a record spanning feed() calls is copied into
   an internal buffer that never holds more than that limit. A record wholly inside one chunk is
   decoded from the chunk itself.
3. The complete record bytes are decoded by a strict RFC 8259 recursive-descent parser that also
   checks the record's fields. A bad record gets its own, non-fatal ``RecordError``.

Error precedence inside a record: a JSON syntax error always wins over a field error (when a field
error is found the record is re-checked as plain JSON, so the client hears about broken JSON
first); among field errors, the first one met in reading order is reported. Offsets in messages
are absolute body offsets: the offending byte for syntax errors, the first byte of the offending
JSON value (or field name) for field errors.
"""

from __future__ import annotations

import binascii
import json
import operator
import re

from gateway.produce.items import RecordError

__all__ = ["JsonSplitter"]

# Containers nested deeper than this are refused; the record object itself is level 1.
MAX_DEPTH = 64
# Limits accepted for max_record_bytes: at least "{}", and small enough that offsets stay far
# from overflow in the compiled twin.
MIN_RECORD_LIMIT = 2
MAX_RECORD_LIMIT = 1 << 31
_INT32_MAX = 2147483647
# Client-chosen text (unknown field names, partition literals) is clipped to this many code points
# in messages, so a 2 MiB field name cannot become a 2 MiB report.
_CLIP = 64

_TIMESTAMP_REASON = "timestamp must be an ISO-8601 date-time such as 2026-11-21T10:14:42.123Z"
_SCHEMA_REGISTRY = "(no Schema Registry)"

_WS_RUN = re.compile(rb"[ \t\n\r]*")
# Record-end scanner: outside strings, everything up to the next quote or bracket; inside a
# string, everything up to the closing quote, backslash escapes included (a backslash as the last
# byte of the chunk is left for the next feed()).
_SCAN_OUTSIDE = re.compile(rb'[^"{}\[\]]*')
_SCAN_STRING = re.compile(rb'(?s)[^"\\]*(?:\\.[^"\\]*)*')
# Inside a string: a run of bytes that need no attention except UTF-8 validation.
_STRING_PLAIN = re.compile(rb'[^"\\\x00-\x1f]*')
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_DIGITS = re.compile(rb"[0-9]*")
# RFC 4648 §4 standard alphabet, padding required, nothing else (the bits after the last
# character are not checked, as Python's binascii and Java's Base64 decoder do not either).
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Compact JSON text of an already validated value: keep strings verbatim, drop whitespace.
_COMPACT = re.compile(rb'(?s)("[^"\\]*(?:\\.[^"\\]*)*")|[ \t\n\r]+')
_TIMESTAMP = re.compile(
    rb"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    rb"(?:\.([0-9]{1,9}))?(?:Z|([+-])([0-9]{2}):([0-9]{2}))"
)

_SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

# Record fields: id -> name; the ids index the per-record "seen" bit mask.
_F_PARTITION, _F_HEADERS, _F_KEY, _F_VALUE, _F_TIMESTAMP = 1, 2, 3, 4, 5
_RECORD_FIELDS = {
    b"partition_id": _F_PARTITION,
    b"headers": _F_HEADERS,
    b"key": _F_KEY,
    b"value": _F_VALUE,
    b"timestamp": _F_TIMESTAMP,
}
_RECORD_FIELD_NAMES = ("", "partition_id", "headers", "key", "value", "timestamp")
_DATA_TYPES = {b"BINARY": "BINARY", b"JSON": "JSON", b"STRING": "STRING"}
_SCHEMA_TYPES = frozenset((b"AVRO", b"JSONSCHEMA", b"PROTOBUF"))
_SCHEMA_FIELDS = frozenset(
    (b"subject", b"subject_name_strategy", b"schema_id", b"schema_version", b"schema")
)

# Kinds of a key/value "data" field.
_D_ABSENT, _D_NULL, _D_STRING, _D_OTHER = 0, 1, 2, 3

_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def describe_byte(c: int) -> str:
    """How a message names a byte: ``','`` when printable ASCII, else ``byte 0xff``."""
    if c < 0:
        return "end of record"
    if 0x20 <= c <= 0x7E:
        return f"'{chr(c)}'"
    return f"byte 0x{c:02x}"


def _clip(text: str) -> str:
    return text if len(text) <= _CLIP else text[:_CLIP] + "..."


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to the proleptic Gregorian date y-m-d (negative before it)."""
    # Count from 0000-03-01 with years starting in March: the leap day is then the last day of a
    # year, and the month lengths Mar..Jan repeat the 5-month pattern 31,30,31,30,31, so the days
    # before month m (0 = March) are (153*m + 2) // 5. 719468 is 0000-03-01 .. 1970-01-01.
    if m <= 2:
        y -= 1
        m += 9
    else:
        m -= 3
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * m + 2) // 5 + d - 1 - 719468


def parse_timestamp(text: bytes) -> int:
    """Milliseconds since the epoch for ``YYYY-MM-DDTHH:MM:SS[.f](Z|+HH:MM|-HH:MM)``, or -1."""
    m = _TIMESTAMP.fullmatch(text)
    if m is None:
        return -1
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or second > 59:
        return -1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS_IN_MONTH[month] + (1 if month == 2 and leap else 0):
        return -1
    fraction = m.group(7)
    millis = int((fraction + b"00")[:3]) if fraction else 0
    shift = 0
    if m.group(8):
        off_hour, off_minute = int(m.group(9)), int(m.group(10))
        if off_hour > 23 or off_minute > 59:
            return -1
        shift = (off_hour * 60 + off_minute) * 60000
        if m.group(8) == b"-":
            shift = -shift
    ms = (
        days_from_civil(year, month, day) * 86400000
        + ((hour * 60 + minute) * 60 + second) * 1000
        + millis
        - shift
    )
    return ms if ms >= 0 else -1


def decode_base64(text: bytes | memoryview) -> bytes | None:
    """Strict standard base64 (padding required) to bytes, or None when not valid."""
    if _BASE64.fullmatch(text) is None:
        return None
    return binascii.a2b_base64(text)


class _Syntax(Exception):
    """The record is not valid JSON (always reported before any field error)."""

    code = 400

    def __init__(self, pos: int, reason: str) -> None:
        self.pos = pos
        self.reason = "invalid JSON: " + reason


class _Field(Exception):
    """The record is valid JSON so far but a field is wrong."""

    def __init__(self, pos: int, reason: str, code: int = 400) -> None:
        self.pos = pos
        self.reason = reason
        self.code = code


Item = tuple  # (index, partition, key, value, headers, timestamp_ms, key_type, value_type)
Buf = bytes | bytearray | memoryview


class JsonSplitter:
    """Pure-Python twin of ``gateway._speedups.JsonSplitter``; see gateway/_speedups.pyi."""

    __slots__ = (
        "_max",
        "_records",
        "_offset",
        "_failed",
        "_finished",
        "_in_record",
        "_in_string",
        "_escape",
        "_depth",
        "_start",
        "_buf",
        "_b",
        "_e",
    )

    def __init__(self, max_record_bytes: int = 2 * 1024 * 1024) -> None:
        limit = operator.index(max_record_bytes)
        if not MIN_RECORD_LIMIT <= limit <= MAX_RECORD_LIMIT:
            raise ValueError(
                f"max_record_bytes must be between {MIN_RECORD_LIMIT} and {MAX_RECORD_LIMIT}"
            )
        self._max = limit
        self._records = 0
        self._offset = 0
        self._failed = False
        self._finished = False
        # Scanner state, kept between feed() calls.
        self._in_record = False
        self._in_string = False
        self._escape = False
        self._depth = 0
        self._start = 0
        self._buf = bytearray()
        # The record being decoded: its buffer and end index.
        self._b: Buf = b""
        self._e = 0

    @property
    def records(self) -> int:
        return self._records

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def buffered(self) -> int:
        return len(self._buf)

    # ---------------------------------------------------------------- splitting

    def feed(self, data: Buf) -> list[Item | RecordError]:
        if self._failed:
            return []
        if self._finished:
            raise RuntimeError("JsonSplitter.feed() called after finish()")
        b: Buf
        if type(data) is bytes:
            b = data
        else:
            b = memoryview(data)
            if not b.c_contiguous:
                raise BufferError("memoryview: underlying buffer is not C-contiguous")
            if b.format != "B" or b.ndim != 1:
                b = b.cast("B")
        n = len(b)
        out: list[Item | RecordError] = []
        base = self._offset  # body offset of b[0]
        i = 0
        rec_i = 0  # index in b of the current record's first byte (0 when it began earlier)
        while i < n:
            if not self._in_record:
                i = _WS_RUN.match(b, i).end()  # type: ignore[union-attr]
                if i == n:
                    break
                c = b[i]
                if c != 0x7B:
                    self._fatal(
                        out, base + i, f"expected '{{' to start a record, found {describe_byte(c)}"
                    )
                    self._offset = base + i
                    return out
                self._in_record = True
                self._in_string = False
                self._escape = False
                self._depth = 0
                self._start = base + i
                rec_i = i
            limit = min(n, self._start + self._max - base)
            j = self._scan(b, i, limit)
            if j >= 0:
                if self._buf:
                    self._buf += b[:j]
                    record = self._buf
                    self._buf = bytearray()
                    out.append(self._decode(record, 0, len(record), self._start))
                else:
                    out.append(self._decode(b, rec_i, j, base))
                self._records += 1
                self._in_record = False
                i = j
            elif limit < n:
                self._fatal(out, self._start, f"record exceeds the {self._max}-byte limit")
                self._offset = base + limit
                return out
            else:
                self._buf += b[rec_i:n]
                i = n
        self._offset = base + n
        return out

    def finish(self) -> list[Item | RecordError]:
        if self._failed or self._finished:
            return []
        self._finished = True
        out: list[Item | RecordError] = []
        if self._in_record:
            self._fatal(out, self._start, "body ended inside the record")
        return out

    def _fatal(self, out: list[Item | RecordError], off: int, reason: str) -> None:
        index = self._records
        out.append(RecordError(index, 400, f"record {index} at byte {off}: {reason}", True))
        self._records = index + 1
        self._failed = True
        self._in_record = False
        self._buf = bytearray()

    def _scan(self, b: Buf, i: int, limit: int) -> int:
        """Index after the byte that closes the record, or -1 if it is not closed before limit."""
        depth = self._depth
        in_string = self._in_string
        if self._escape:
            # The previous chunk ended on a backslash inside a string: skip the escaped byte.
            if i >= limit:
                return -1
            self._escape = False
            i += 1
        while i < limit:
            if in_string:
                j = _SCAN_STRING.match(b, i, limit).end()  # type: ignore[union-attr]
                if j >= limit:
                    i = limit
                    break
                if b[j] == 0x22:
                    in_string = False
                    i = j + 1
                else:  # a backslash that is the last byte before limit
                    self._escape = True
                    i = limit
                    break
            else:
                j = _SCAN_OUTSIDE.match(b, i, limit).end()  # type: ignore[union-attr]
                if j >= limit:
                    i = limit
                    break
                c = b[j]
                if c == 0x22:
                    in_string = True
                elif c == 0x7B or c == 0x5B:
                    depth += 1
                else:
                    depth -= 1
                    if depth == 0:
                        self._depth = 0
                        self._in_string = False
                        return j + 1
                i = j + 1
        self._depth = depth
        self._in_string = in_string
        return -1

    # ---------------------------------------------------------------- decoding

    def _decode(self, b: Buf, s: int, e: int, base: int) -> Item | RecordError:
        """Decode the complete record b[s:e]; base is the body offset of b[0]."""
        self._b = b
        self._e = e
        index = self._records
        err: _Syntax | _Field
        try:
            return self._record(s, index)
        except _Syntax as exc:
            err = exc
        except _Field as exc:
            err = exc
            try:
                self._value(s, 0)
            except _Syntax as syntax:
                err = syntax
        finally:
            self._b = b""
        return RecordError(
            index, err.code, f"record {index} at byte {base + err.pos}: {err.reason}"
        )

    def _peek(self, p: int) -> int:
        return self._b[p] if p < self._e else -1

    def _skip(self, p: int) -> int:
        b = self._b
        if p < self._e and b[p] <= 0x20:
            return _WS_RUN.match(b, p, self._e).end()  # type: ignore[union-attr]
        return p

    def _string(self, p: int) -> tuple[int, bool]:
        """b[p] is '"'. Returns (index after the closing quote, whether it has escapes)."""
        b = self._b
        e = self._e
        q = p + 1
        escaped = False
        while True:
            r = _STRING_PLAIN.match(b, q, e).end()  # type: ignore[union-attr]
            if r > q:
                m = _NON_ASCII.search(b, q, r)
                if m is not None:
                    k = m.start()
                    try:
                        str(b[k:r], "utf-8")
                    except UnicodeDecodeError as exc:
                        raise _Syntax(k + exc.start, "invalid UTF-8 in a string") from None
            if r >= e:
                raise _Syntax(r, "unterminated string")
            c = b[r]
            if c == 0x22:
                return r + 1, escaped
            if c == 0x5C:
                escaped = True
                q = self._escape_seq(r)
            else:
                raise _Syntax(r, f"unescaped control character (byte 0x{c:02x}) in a string")

    def _hex4(self, r: int) -> int:
        """Value of the 4 hex digits after the backslash-u at r, or -1."""
        if r + 6 > self._e:
            return -1
        digits = bytes(self._b[r + 2 : r + 6])
        if not all(c in _HEX_DIGITS for c in digits):
            return -1
        return int(digits, 16)

    def _escape_seq(self, r: int) -> int:
        b = self._b
        c = self._peek(r + 1)
        if c in _SIMPLE_ESCAPES:
            return r + 2
        if c == 0x75:
            cp = self._hex4(r)
            if cp < 0:
                raise _Syntax(r, "invalid \\u escape: expected 4 hex digits")
            if 0xD800 <= cp <= 0xDBFF:
                # RFC 8259 §7: a character outside the BMP is a high/low surrogate escape pair.
                if (
                    r + 7 < self._e
                    and b[r + 6] == 0x5C
                    and b[r + 7] == 0x75
                    and 0xDC00 <= self._hex4(r + 6) <= 0xDFFF
                ):
                    return r + 12
                cp = -1
            elif 0xDC00 <= cp <= 0xDFFF:
                cp = -1
            if cp < 0:
                raise _Syntax(r, f"unpaired surrogate escape {str(b[r : r + 6], 'ascii')}")
            return r + 6
        raise _Syntax(r, f"invalid escape: '\\' followed by {describe_byte(c)}")

    def _text(self, p: int, q: int, escaped: bool) -> bytes:
        """UTF-8 bytes of the validated string b[p:q] (quotes included)."""
        if not escaped:
            return bytes(self._b[p + 1 : q - 1])
        value: str = json.loads(str(self._b[p:q], "utf-8"))
        return value.encode("utf-8")

    def _number(self, p: int) -> tuple[int, bool]:
        """b[p] is '-' or a digit. Returns (index after the number, whether it is an integer)."""
        b = self._b
        e = self._e
        q = p + 1 if b[p] == 0x2D else p
        c = self._peek(q)
        if c == 0x30:
            q += 1
        elif 0x31 <= c <= 0x39:
            q = _DIGITS.match(b, q + 1, e).end()  # type: ignore[union-attr]
        else:
            raise _Syntax(q, f"expected a digit after '-', found {describe_byte(c)}")
        integer = True
        if self._peek(q) == 0x2E:
            c = self._peek(q + 1)
            if not 0x30 <= c <= 0x39:
                raise _Syntax(q + 1, f"expected a digit after '.', found {describe_byte(c)}")
            q = _DIGITS.match(b, q + 2, e).end()  # type: ignore[union-attr]
            integer = False
        c = self._peek(q)
        if c == 0x65 or c == 0x45:
            q += 1
            c = self._peek(q)
            if c == 0x2B or c == 0x2D:
                q += 1
                c = self._peek(q)
            if not 0x30 <= c <= 0x39:
                raise _Syntax(q, f"expected a digit in the exponent, found {describe_byte(c)}")
            q = _DIGITS.match(b, q + 1, e).end()  # type: ignore[union-attr]
            integer = False
        return q, integer

    def _literal(self, p: int, word: bytes) -> int:
        for k in range(1, len(word)):
            c = self._peek(p + k)
            if c != word[k]:
                raise _Syntax(p + k, f"expected '{word.decode()}', found {describe_byte(c)}")
        return p + len(word)

    def _value(self, p: int, depth: int) -> int:
        """Validate the JSON value at p inside depth containers; index after it."""
        c = self._peek(p)
        if c == 0x22:
            return self._string(p)[0]
        if c == 0x7B:
            return self._object(p, depth + 1)
        if c == 0x5B:
            return self._array(p, depth + 1)
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self._number(p)[0]
        if c == 0x74:
            return self._literal(p, b"true")
        if c == 0x66:
            return self._literal(p, b"false")
        if c == 0x6E:
            return self._literal(p, b"null")
        raise _Syntax(p, f"expected a value, found {describe_byte(c)}")

    def _name_end(self, p: int) -> tuple[int, bool]:
        """A field name at p: (index after its closing quote, escaped)."""
        if self._peek(p) != 0x22:
            raise _Syntax(
                p, f"expected '\"' to start a field name, found {describe_byte(self._peek(p))}"
            )
        return self._string(p)

    def _colon(self, q: int) -> int:
        q = self._skip(q)
        c = self._peek(q)
        if c != 0x3A:
            raise _Syntax(q, f"expected ':' after a field name, found {describe_byte(c)}")
        return self._skip(q + 1)

    def _name(self, p: int) -> tuple[bytes, int]:
        """A field name at p: (its UTF-8 bytes, index of its value)."""
        q, escaped = self._name_end(p)
        return self._text(p, q, escaped), self._colon(q)

    def _after_field(self, p: int) -> tuple[int, bool]:
        """After an object field's value: (next index, whether another field follows)."""
        p = self._skip(p)
        c = self._peek(p)
        if c == 0x2C:
            return self._skip(p + 1), True
        if c == 0x7D:
            return p + 1, False
        raise _Syntax(p, f"expected ',' or '}}' after a field, found {describe_byte(c)}")

    def _after_element(self, p: int) -> tuple[int, bool]:
        p = self._skip(p)
        c = self._peek(p)
        if c == 0x2C:
            return self._skip(p + 1), True
        if c == 0x5D:
            return p + 1, False
        raise _Syntax(p, f"expected ',' or ']' after an array element, found {describe_byte(c)}")

    def _object(self, p: int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _Syntax(p, f"nesting deeper than {MAX_DEPTH} levels")
        p = self._skip(p + 1)
        if self._peek(p) == 0x7D:
            return p + 1
        more = True
        while more:
            q, _ = self._name_end(p)
            p, more = self._after_field(self._value(self._colon(q), depth))
        return p

    def _array(self, p: int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _Syntax(p, f"nesting deeper than {MAX_DEPTH} levels")
        p = self._skip(p + 1)
        if self._peek(p) == 0x5D:
            return p + 1
        more = True
        while more:
            p, more = self._after_element(self._value(p, depth))
        return p

    # ---------------------------------------------------------------- record fields

    def _record(self, s: int, index: int) -> Item:
        partition = -1
        key: bytes | None = None
        value: bytes | None = None
        headers: list[tuple[str, bytes | None]] | None = None
        timestamp = 0
        key_type: str | None = None
        value_type: str | None = None
        seen = 0
        p = self._skip(s + 1)
        if self._peek(p) == 0x7D:
            return (index, partition, key, value, headers, timestamp, key_type, value_type)
        more = True
        while more:
            name_at = p
            name, p = self._name(p)
            field = _RECORD_FIELDS.get(name, 0)
            if not field:
                raise _Field(name_at, f"unknown field '{_clip(name.decode())}'")
            if seen & (1 << field):
                raise _Field(name_at, f"duplicate field '{_RECORD_FIELD_NAMES[field]}'")
            seen |= 1 << field
            if field == _F_PARTITION:
                p, partition = self._partition(p)
            elif field == _F_HEADERS:
                p, headers = self._headers(p)
            elif field == _F_KEY:
                p, key, key_type = self._side(p, "key")
            elif field == _F_VALUE:
                p, value, value_type = self._side(p, "value")
            else:
                p, timestamp = self._timestamp(p)
            p, more = self._after_field(p)
        return (index, partition, key, value, headers, timestamp, key_type, value_type)

    def _partition(self, p: int) -> tuple[int, int]:
        c = self._peek(p)
        if c == 0x6E:
            return self._literal(p, b"null"), -1
        if c == 0x2D or 0x30 <= c <= 0x39:
            q, integer = self._number(p)
            if not integer:
                raise _Field(p, "partition_id must be an integer or null")
            text = str(self._b[p:q], "ascii")
            digits = text[1:] if c == 0x2D else text
            # "-0" is partition 0; the length test keeps int() away from huge literals.
            if (c == 0x2D and digits != "0") or len(digits) > 10 or int(digits) > _INT32_MAX:
                raise _Field(p, f"partition_id {_clip(text)} does not exist", 40402)
            return q, int(digits)
        raise _Field(p, "partition_id must be an integer or null")

    def _headers(self, p: int) -> tuple[int, list[tuple[str, bytes | None]] | None]:
        c = self._peek(p)
        if c == 0x6E:
            return self._literal(p, b"null"), None
        if c != 0x5B:
            raise _Field(p, "headers must be an array or null")
        headers: list[tuple[str, bytes | None]] = []
        q = self._skip(p + 1)
        if self._peek(q) == 0x5D:
            return q + 1, headers
        more = True
        while more:
            i = len(headers)
            if self._peek(q) != 0x7B:
                raise _Field(q, f"headers[{i}] must be an object")
            header_at = q
            name: str | None = None
            value: bytes | None = None
            seen = 0
            q = self._skip(q + 1)
            if self._peek(q) == 0x7D:
                q += 1
            else:
                more_fields = True
                while more_fields:
                    name_at = q
                    field, q = self._name(q)
                    if field == b"name":
                        if seen & 1:
                            raise _Field(name_at, f"duplicate field 'headers[{i}].name'")
                        seen |= 1
                        if self._peek(q) != 0x22:
                            raise _Field(q, f"headers[{i}].name must be a string")
                        end, escaped = self._string(q)
                        name = self._text(q, end, escaped).decode("utf-8")
                        q = end
                    elif field == b"value":
                        if seen & 2:
                            raise _Field(name_at, f"duplicate field 'headers[{i}].value'")
                        seen |= 2
                        c = self._peek(q)
                        if c == 0x6E:
                            q = self._literal(q, b"null")
                        elif c == 0x22:
                            end, escaped = self._string(q)
                            value = decode_base64(self._text(q, end, escaped))
                            if value is None:
                                raise _Field(q, f"headers[{i}].value is not valid base64")
                            q = end
                        else:
                            raise _Field(q, f"headers[{i}].value must be a base64 string or null")
                    else:
                        raise _Field(
                            name_at, f"unknown field 'headers[{i}].{_clip(field.decode())}'"
                        )
                    q, more_fields = self._after_field(q)
            if name is None:
                raise _Field(header_at, f"headers[{i}].name is required")
            headers.append((name, value))
            q, more = self._after_element(q)
        return q, headers

    def _side(self, p: int, side: str) -> tuple[int, bytes | None, str | None]:
        """The key or value field at p: (index after it, data bytes, type)."""
        c = self._peek(p)
        if c == 0x6E:
            return self._literal(p, b"null"), None, None
        if c != 0x7B:
            raise _Field(p, f"{side} must be an object or null")
        object_at = p
        data_type: str | None = None
        data_kind = _D_ABSENT
        data_at = data_end = 0
        data_escaped = False
        seen = 0
        q = self._skip(p + 1)
        if self._peek(q) == 0x7D:
            q += 1
        else:
            more = True
            while more:
                name_at = q
                field, q = self._name(q)
                if field == b"type":
                    if seen & 1:
                        raise _Field(name_at, f"duplicate field '{side}.type'")
                    seen |= 1
                    if self._peek(q) != 0x22:
                        raise _Field(q, f"{side}.type must be BINARY, JSON or STRING")
                    end, escaped = self._string(q)
                    text = self._text(q, end, escaped)
                    data_type = _DATA_TYPES.get(text)
                    if data_type is None:
                        if text in _SCHEMA_TYPES:
                            raise _Field(
                                q,
                                f"{side}.type {text.decode()} is not supported {_SCHEMA_REGISTRY}",
                            )
                        raise _Field(q, f"{side}.type must be BINARY, JSON or STRING")
                    q = end
                elif field == b"data":
                    if seen & 2:
                        raise _Field(name_at, f"duplicate field '{side}.data'")
                    seen |= 2
                    data_at = q
                    c = self._peek(q)
                    if c == 0x22:
                        q, data_escaped = self._string(q)
                        data_kind = _D_STRING
                    elif c == 0x6E:
                        q = self._literal(q, b"null")
                        data_kind = _D_NULL
                    else:
                        q = self._value(q, 2)
                        data_kind = _D_OTHER
                    data_end = q
                elif field in _SCHEMA_FIELDS:
                    raise _Field(
                        name_at,
                        f"{side}.{field.decode()}: schema fields are not supported {_SCHEMA_REGISTRY}",
                    )
                else:
                    raise _Field(name_at, f"unknown field '{side}.{_clip(field.decode())}'")
                q, more = self._after_field(q)
        if data_type is None:
            raise _Field(object_at, f"{side}.type is required")
        if data_kind == _D_ABSENT or data_kind == _D_NULL:
            return q, None, data_type
        data: bytes | None
        if data_type == "BINARY":
            if data_kind != _D_STRING:
                raise _Field(data_at, f"{side}.data must be a base64 string for type BINARY")
            data = decode_base64(self._text(data_at, data_end, data_escaped))
            if data is None:
                raise _Field(data_at, f"{side}.data is not valid base64")
        elif data_type == "STRING":
            if data_kind != _D_STRING:
                raise _Field(data_at, f"{side}.data must be a string for type STRING")
            data = self._text(data_at, data_end, data_escaped)
        else:
            data = _COMPACT.sub(rb"\1", bytes(self._b[data_at:data_end]))
        return q, data, data_type

    def _timestamp(self, p: int) -> tuple[int, int]:
        c = self._peek(p)
        if c == 0x6E:
            return self._literal(p, b"null"), 0
        if c != 0x22:
            raise _Field(p, _TIMESTAMP_REASON)
        q, escaped = self._string(p)
        ms = parse_timestamp(self._text(p, q, escaped))
        if ms < 0:
            raise _Field(p, _TIMESTAMP_REASON)
        return q, ms
