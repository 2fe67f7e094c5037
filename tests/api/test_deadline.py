"""The last resort: a request that overruns its bound answers 503 request_timeout; nothing else changes.

No PostgreSQL or Temporal here: the app gets a few extra routes that hang, refuse to be cancelled,
or stream for longer than the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from api.app import REQUEST_TIMEOUT_MARGIN_SECONDS, create_app
from api.bounds import abandoned_count, within
from config import Settings
from tests.api.conftest import make_http
from tests.support.wait import until

TIMEOUT = 0.5
LIMIT = TIMEOUT + REQUEST_TIMEOUT_MARGIN_SECONDS


def slow_app() -> tuple[FastAPI, dict[str, Any]]:
    """The real app (nothing reachable behind it) with routes that take too long in different ways."""
    nowhere = "127.0.0.1:9"
    app = create_app(
        Settings(database_url=f"postgresql://x@{nowhere}/x", temporal_address=nowhere, request_timeout_seconds=TIMEOUT)
    )
    seen: dict[str, Any] = {}

    async def hang() -> dict[str, str]:
        await asyncio.Event().wait()
        return {}

    async def stubborn() -> dict[str, bool]:
        # A clean-up that outlasts the bound, as asyncpg's does when the server is stopped.
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen["cancelled"] = True
            await asyncio.sleep(2 * LIMIT)
            seen["finished"] = True
        return {"late": True}

    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            for i in range(4):
                await asyncio.sleep(LIMIT / 2)
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def fast() -> dict[str, bool]:
        return {"ok": True}

    for path, endpoint in (("/t/hang", hang), ("/t/stubborn", stubborn), ("/t/stream", stream), ("/t/fast", fast)):
        app.add_api_route(path, endpoint, methods=["GET"])
    return app, seen


async def timed(request: Any) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await request
    return r, time.monotonic() - t0


def assert_request_timeout(r: httpx.Response, elapsed: float) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "request_timeout" and r.json()["message"]
    assert int(r.headers["retry-after"]) > 0
    assert LIMIT - 0.05 <= elapsed <= TIMEOUT + 1.0, elapsed


async def test_a_hung_request_answers_503_request_timeout_and_liveness_stays() -> None:
    app, _ = slow_app()
    async with make_http(app) as http:
        hung = asyncio.ensure_future(timed(http.get("/t/hang")))
        r, elapsed = await timed(http.get("/healthz"))
        # the hung request is still waiting when liveness has answered (a busy machine may be slow, but
        # liveness never waits for the hung request's deadline)
        assert r.status_code == 200 and not hung.done(), ("liveness answers while a request hangs", elapsed)
        assert_request_timeout(*await hung)
        r = await http.get("/t/fast")
        assert r.status_code == 200 and r.json() == {"ok": True}


async def test_a_clean_up_that_hangs_does_not_hold_the_answer() -> None:
    """asyncio.wait_for would wait for the cancelled handler; the answer must not."""
    app, seen = slow_app()
    async with make_http(app) as http:
        assert_request_timeout(*await timed(http.get("/t/stubborn")))
        await until(lambda: seen.get("cancelled"), 1, "the overrunning handler is cancelled")
        assert not seen.get("finished")
        # The abandoned handler finishes in the background; its late answer goes nowhere.
        await until(lambda: seen.get("finished") and abandoned_count() == 0, 5, "abandoned handler ends")


async def test_a_stream_longer_than_the_bound_is_not_cut() -> None:
    app, _ = slow_app()
    async with make_http(app) as http:
        r, elapsed = await timed(http.get("/t/stream"))
        assert r.status_code == 200, r.text
        assert r.text == "first\n" + "".join(f"chunk {i}\n" for i in range(4))
        assert elapsed > LIMIT


async def test_within_abandons_a_call_whose_cancellation_hangs() -> None:
    finished = asyncio.Event()

    async def stuck_in_clean_up() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(1.0)
            finished.set()

    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        await within(stuck_in_clean_up(), 0.1)
    assert time.monotonic() - t0 < 0.5 and not finished.is_set()
    await asyncio.wait_for(finished.wait(), 5)
    assert await within(asyncio.sleep(0, "value"), 1) == "value"
