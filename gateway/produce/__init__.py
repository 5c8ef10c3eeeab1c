"""The produce path: records, their order and their reports (knows neither sockets nor HTTP).

``JsonSplitter`` is the compiled splitter of v3 bodies (gateway._speedups, ext/splitter.pxi; the
extension is required). Its pure-Python reference model, for the tests, is
tests/support/ref_splitter.py.
"""

from __future__ import annotations

from gateway.produce.core import JsonSplitter
from gateway.produce.items import RecordError

__all__ = ["JsonSplitter", "RecordError"]
