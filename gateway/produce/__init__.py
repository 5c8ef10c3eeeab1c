"""The produce path: records, their order and their reports (knows neither sockets nor HTTP).

``JsonSplitter`` is the compiled splitter (gateway._speedups, built from ext/splitter.pxi) unless
``GATEWAY_PURE_PYTHON=1`` is set or the extension is not built; then it is the pure-Python twin,
which is always available as ``PyJsonSplitter``. Both behave identically (tests/unit/test_splitter.py).
"""

from __future__ import annotations

import os
from typing import cast

from gateway.produce.items import RecordError
from gateway.produce.splitter import JsonSplitter as PyJsonSplitter

__all__ = ["JsonSplitter", "PyJsonSplitter", "RecordError"]


def _pick_splitter() -> type[PyJsonSplitter]:
    if os.environ.get("GATEWAY_PURE_PYTHON") == "1":
        return PyJsonSplitter
    try:
        from gateway._speedups import JsonSplitter as compiled
    except ImportError:
        return PyJsonSplitter
    # Same interface (gateway/_speedups.pyi); the twins are kept identical by the tests.
    return cast("type[PyJsonSplitter]", compiled)


JsonSplitter = _pick_splitter()
