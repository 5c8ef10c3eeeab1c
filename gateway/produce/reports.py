"""Delivery report bytes that are built in Python (docs/api.md §1).

Success reports are formatted in C by ``StreamCore.take_ready`` (ext/stream.pxi), which also
keeps them in send order; failure reports are rare and built here, then filed in the record's
slot.
"""

from __future__ import annotations

import json


def json_str(s: str) -> bytes:
    return json.dumps(s, ensure_ascii=False).encode()


def error_report(error_code: int, message: str) -> bytes:
    """A failure report: ``{"error_code":<int>,"message":"<text>"}`` and CRLF."""
    return b'{"error_code":%d,"message":%s}\r\n' % (error_code, json_str(message))
