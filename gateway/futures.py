"""Handing a result computed on a worker thread to an asyncio future on the loop."""

from __future__ import annotations

import asyncio
from typing import Any


def settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Set ``fut``'s exception, or else its result, unless it is done already (cancelled, or
    answered another way). Runs on the loop: ``loop.call_soon_threadsafe(settle, ...)``."""
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
