"""Fuzzing with hypothesis: the HTTP parser, the JSON record splitter (both twins) and the HTTP
protocol as a whole.

Two hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE``:

- ``ci`` (the default, what ``make test`` runs): a few hundred examples per target, the same
  ones every run (derandomized: a failure reproduces), no example database written.
- ``fuzz`` (``make fuzz``): random examples, run again and again for ``FUZZ_SECONDS`` in all
  (default 480), shared equally by the fuzz test functions selected (a function with several
  items, such as the schemathesis run's one per API operation, splits its share among them);
  failures are saved in ``.hypothesis/`` and replayed first next time. ``FUZZ_EXAMPLES`` sets the examples per run
  (default 100: a run is a few seconds, so the time is kept to within about that).
"""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=False,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.load_profile(PROFILE)

_budget: dict[pytest.Item, float] = {}
_report: list[str] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    if PROFILE != "fuzz":
        return
    mine = [i for i in session.items if "/tests/fuzz/" in str(i.path)]  # after -k and the like
    total = float(os.environ.get("FUZZ_SECONDS", "480"))
    # An equal share per test function; a function with several items (the schemathesis run:
    # one per API operation) splits its share among them.
    functions: dict[tuple[str, str], list[pytest.Item]] = {}
    for item in mine:
        key = (str(item.path), getattr(item, "originalname", item.name))
        functions.setdefault(key, []).append(item)
    for items in functions.values():
        for item in items:
            _budget[item] = total / len(functions) / len(items)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Under the fuzz profile, run each hypothesis test again (new random examples each time)
    until its share of FUZZ_SECONDS is spent."""
    budget = _budget.get(pyfuncitem)
    if budget is None:
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    start = time.monotonic()
    runs = 0
    while True:
        pyfuncitem.obj(**args)
        runs += 1
        if time.monotonic() - start >= budget:
            break
    n = settings.default.max_examples * runs
    _report.append(f"{pyfuncitem.path.name}::{pyfuncitem.name}: {runs} runs, up to {n} examples, {time.monotonic() - start:.0f}s")
    return True


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _report:
        terminalreporter.write_sep("-", "fuzz runs")
        for line in _report:
            terminalreporter.write_line(line)
