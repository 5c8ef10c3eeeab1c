"""The v1 consume answer (docs/api.md §2 "Consume"): records of one partition as the v1 binary
JSON array. The endpoint (parameters, checks) is gateway.api.consume_v1; the records come from
the consumer pool (gateway.consume.pool), and this encoder runs on the pool's worker thread.
"""

from __future__ import annotations

from base64 import b64encode

from gateway.consume.pool import ConsumedRecord


def encode_records(records: list[ConsumedRecord], partition: int) -> bytes:
    """The v1 binary answer: ``[{"key":b64|null,"value":b64|null,"partition":p,"offset":o}, ...]``."""
    tail = b',"partition":%d,"offset":' % partition
    parts = []
    for offset, key, value in records:
        parts.append(
            b'{"key":'
            + (b'"' + b64encode(key) + b'"' if key is not None else b"null")
            + b',"value":'
            + (b'"' + b64encode(value) + b'"' if value is not None else b"null")
            + tail
            + b"%d}" % offset
        )
    return b"[" + b",".join(parts) + b"]"
