"""Waiting in tests: poll a condition until a deadline, never sleep a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Condition = Callable[[], Any | Awaitable[Any]]


async def until(condition: Condition, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` (sync or async) until it returns something truthy; AssertionError at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s (last: {last!r})")
        await asyncio.sleep(0.2)


def until_sync(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """The same for synchronous tests (subprocesses, HTTP with a sync client)."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout} s (last: {last!r})")
        time.sleep(0.2)
