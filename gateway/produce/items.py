"""What the JSON splitter hands to a produce session, one item per record in the body.

A good record is a plain tuple (cheap to build from the compiled splitter):

    (index, partition, key, value, headers, timestamp_ms, key_type, value_type)

- index: 0-based position of the record in the body (its report goes out in this order)
- partition: explicit ``partition_id``, or -1 when absent/null (the partitioner decides)
- key, value: ``bytes`` or ``None``
- headers: ``None`` when absent/null, else a list of ``(name: str, value: bytes | None)``
- timestamp_ms: milliseconds since the epoch, or 0 when absent/null (gateway clock at receipt)
- key_type, value_type: "BINARY", "JSON", "STRING", or ``None`` when that field was absent/null

A record that cannot be produced is a ``RecordError``; ``fatal`` means the splitter could not
find the start of the next record and the stream must end after this report (docs/api.md §1).
"""

from __future__ import annotations

REC_INDEX = 0
REC_PARTITION = 1
REC_KEY = 2
REC_VALUE = 3
REC_HEADERS = 4
REC_TIMESTAMP = 5
REC_KEY_TYPE = 6
REC_VALUE_TYPE = 7


class RecordError:
    __slots__ = ("index", "error_code", "message", "fatal")

    def __init__(self, index: int, error_code: int, message: str, fatal: bool = False) -> None:
        self.index = index
        self.error_code = error_code
        self.message = message
        self.fatal = fatal

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordError):
            return NotImplemented
        return (self.index, self.error_code, self.message, self.fatal) == (
            other.index,
            other.error_code,
            other.message,
            other.fatal,
        )

    def __repr__(self) -> str:
        return (
            f"RecordError(index={self.index}, error_code={self.error_code}, "
            f"message={self.message!r}, fatal={self.fatal})"
        )
