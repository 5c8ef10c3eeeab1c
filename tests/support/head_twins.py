"""The two request-head parsers, for the tests that run on both twins: the compiled
``gateway._speedups.parse_head`` (ext/httphead.pxi; id "compiled") and its reference
``gateway.http.parser.python_parse_head`` (id "python").

A test module runs every test on both with a module-scoped, parametrized, autouse fixture that
swaps the ``parse_head`` its code calls (module-scoped, so hypothesis tests can use it too)::

    @pytest.fixture(scope="module", autouse=True, params=HEAD_TWINS)
    def head_twin(request):
        yield from swapped(module, "parse_head", request.param)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from gateway import errors
from gateway._speedups import parse_head as compiled_parse_head
from gateway.http.parser import (
    DEFAULT_LIMITS,
    HttpLimits,
    HttpVersionNotSupported,
    RequestHead,
    python_parse_head,
)

HEAD_TWINS = [
    pytest.param(compiled_parse_head, id="compiled"),
    pytest.param(python_parse_head, id="python"),
]


def swapped(module: ModuleType, name: str, value: Any) -> Iterator[Any]:
    """Set ``module.name`` to ``value`` for the duration of a fixture, then restore it."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield value
    finally:
        setattr(module, name, old)


# Statuses a head may be refused with.
ALLOWED_STATUS = {400, 408, 413, 414, 417, 431, 501, 505}


def head_outcome(
    parse: Callable[..., tuple[RequestHead, int] | None],
    buf: bytes | bytearray,
    start: int = 0,
    limits: HttpLimits = DEFAULT_LIMITS,
) -> tuple:
    """``parse(buf, start, len(buf), limits)`` as a comparable value: ("incomplete",),
    ("error", class name, status, message) or ("head", every field..., end - start)."""
    try:
        res = parse(buf, start, len(buf), limits)
    except errors.PeerError as exc:
        assert exc.status in ALLOWED_STATUS, exc
        assert exc.status == exc.error_code
        if exc.status == 505:
            assert isinstance(exc, HttpVersionNotSupported)
        return ("error", type(exc).__name__, exc.status, exc.message)
    if res is None:
        return ("incomplete",)
    head, end = res
    assert type(head) is RequestHead
    assert start < end <= len(buf)
    return (
        "head",
        head.method,
        head.target,
        head.path,
        head.query,
        head.version,
        tuple(head.headers),
        head.content_length,
        head.chunked,
        head.keep_alive,
        head.expect_continue,
        head.content_type,
        end - start,
    )
