"""The splitter's simdjson settings every splitter test runs under (an autouse fixture the
test modules import)."""

from __future__ import annotations

import pytest

from gateway import _speedups

# The compiled splitter lets simdjson read first (ext/jsonsplit.pxi) and decides itself what
# simdjson does not accept: every test runs as the gateway ships it, with simdjson reading every
# record (each chunk in one pass, and any record spanning chunks), and with simdjson off.
SIMDJSON_SETTINGS = {
    "simdjson-as-shipped": _speedups.splitter_simdjson(),
    "simdjson-every-record": (1, 2),
    "simdjson-off": (1 << 40, 1 << 40),
}


@pytest.fixture(scope="module", params=list(SIMDJSON_SETTINGS), autouse=True)
def simdjson_setting(request):
    old = _speedups.splitter_simdjson(*SIMDJSON_SETTINGS[request.param])
    yield request.param
    _speedups.splitter_simdjson(*old)
