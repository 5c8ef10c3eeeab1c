"""Stubs and docstrings for the compiled extension ``gateway._speedups`` (built from ext/).

Import the public names from their packages (``gateway.produce.JsonSplitter``), which fall back
to the pure-Python twins when the extension is not built or ``GATEWAY_PURE_PYTHON=1``.
"""

from gateway.produce.items import RecordError

# (index, partition, key, value, headers, timestamp_ms, key_type, value_type);
# see gateway/produce/items.py.
Record = tuple[
    int,
    int,
    bytes | None,
    bytes | None,
    list[tuple[str, bytes | None]] | None,
    int,
    str | None,
    str | None,
]

class JsonSplitter:
    """Incremental splitter of a v3 produce body (docs/api.md §1) into produce items.

    The body is concatenated JSON objects, one per record, with only whitespace (space, tab, LF,
    CR) between them. Feed it in chunks split anywhere, even inside a string, an escape or a
    UTF-8 sequence; each ``feed()`` returns the items its data completed, in order:

    - a good record: ``(index, partition, key, value, headers, timestamp_ms, key_type,
      value_type)`` (gateway/produce/items.py);
    - a bad record: ``RecordError(index, error_code, message, fatal=False)``; the stream goes on.
      The message is ``record {index} at byte {offset}: {reason}`` with the absolute body offset
      of the offending byte (JSON syntax) or value (field errors). A JSON syntax error anywhere in
      the record is reported in preference to a field error; among field errors the first met in
      reading order wins.
    - a fatal error, ``fatal=True``: a byte other than whitespace or ``{`` between records, a
      record not closed within ``max_record_bytes`` bytes of its ``{``, or (from ``finish()``) a
      body ending inside a record. The splitter is then ``failed`` and ignores further input.

    A record wholly inside one chunk is decoded from the chunk itself; a record spanning chunks
    is copied into an internal buffer of at most ``max_record_bytes`` bytes, so the chunk may be
    a view into a buffer the caller reuses once ``feed()`` returns.

    This is the compiled twin of ``gateway.produce.splitter.JsonSplitter``; both give identical
    items, messages, ``offset`` and ``records``.
    """

    def __init__(self, max_record_bytes: int = 2097152) -> None:
        """``max_record_bytes``: the longest record accepted, ``{`` to ``}`` inclusive (2 to 2**31;
        ValueError otherwise)."""

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record | RecordError]:
        """Consume the next chunk of the body (any bytes-like object with a C-contiguous buffer,
        read as raw bytes) and return the items it completed, in order. After a fatal error,
        returns ``[]`` and ignores ``data``. Raises RuntimeError after ``finish()``."""

    def finish(self) -> list[RecordError]:
        """The body has ended: ``[]`` when it ended between records, else one fatal RecordError
        (``body ended inside the record``). Idempotent; ``[]`` once failed."""

    @property
    def records(self) -> int:
        """Items emitted so far, errors included; the index the next item will get."""

    @property
    def offset(self) -> int:
        """Body bytes consumed so far. After a fatal error it stays at the offending byte (or the
        first byte past the record limit) and no longer moves."""

    @property
    def failed(self) -> bool:
        """A fatal error was emitted; feed() and finish() now return ``[]``."""

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished record held in the internal buffer (at most
        ``max_record_bytes``)."""
