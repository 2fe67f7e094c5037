"""Time bounds a hung server cannot stretch.

``asyncio.wait_for`` and ``asyncio.timeout`` cancel the late call and then *wait for it to finish*;
a call whose clean-up talks to the hung server (asyncpg sends a CancelRequest and waits for the
server to acknowledge it; a connection is released by rolling back) keeps the caller waiting far past
the bound. :func:`within` cancels the late call and returns at once; the call finishes its clean-up
in the background, held here so it is not garbage-collected midway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

log = logging.getLogger("intake.api")
T = TypeVar("T")

# Calls given up on and still unwinding; kept referenced until they end.
_abandoned: set[asyncio.Future[Any]] = set()


async def within(aw: Awaitable[T], seconds: float) -> T:
    """Await `aw` for at most `seconds`; past that, cancel it without waiting and raise TimeoutError."""
    fut = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({fut}, timeout=max(seconds, 0.0))
    except asyncio.CancelledError:
        abandon(fut)  # our caller gave up: so do we, without waiting either
        raise
    if not done:
        abandon(fut)
        raise TimeoutError(f"no answer within {seconds:g} s")
    return fut.result()


def abandon(fut: asyncio.Future[Any]) -> None:
    """Cancel `fut` without awaiting it; it unwinds in the background and its outcome is only logged."""
    if fut.done():
        _settle(fut)
        return
    fut.cancel()
    _abandoned.add(fut)
    fut.add_done_callback(_settle)


def abandoned_count() -> int:
    """How many abandoned calls are still unwinding (for tests and diagnostics)."""
    return len(_abandoned)


def _settle(fut: asyncio.Future[Any]) -> None:
    _abandoned.discard(fut)
    if not fut.cancelled() and (exc := fut.exception()) is not None:
        # Retrieved, so asyncio does not report "exception was never retrieved".
        log.debug("abandoned call ended with %r", exc)
