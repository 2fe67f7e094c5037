"""What a step completion costs in PostgreSQL round trips (SPEC §10: one round trip to write a decided change).

The app under test gets a pool of its own whose connections log every statement they send (asyncpg's
query logger); the workflow's own write runs on the worker's pool and is not counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from api.app import create_app
from domain.policy import fast_policy
from store.db import create_pool
from tests.api.conftest import Api, future, make_http


class Counted:
    """Statements sent through the counted pool (each is one round trip)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def log(self, record: Any) -> None:
        self.sent.append(" ".join(str(record.query).split())[:120])


@pytest_asyncio.fixture(loop_scope="session")
async def counted(api: Api, pg_dsn: str) -> AsyncIterator[tuple[Api, Counted]]:
    """The same deployment as `api` (worker, task queue), answered by an app whose statements are counted."""
    counter = Counted()
    pool = await create_pool(pg_dsn, min_size=1, max_size=4)

    async def watch(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(counter.log)

    app = create_app(api.settings, temporal_client=api.client, pool=pool, policy=fast_policy())
    async with make_http(app) as http:
        counted_api = Api(http=http, people=api.people, settings=api.settings, client=api.client, pool=pool)
        # Every connection of the pool logs from now on (new ones too).
        pool._init = _chain(pool._init, watch)  # noqa: SLF001 - a test hook on the pool's connection setup
        for holder in pool._holders:  # noqa: SLF001
            if holder._con is not None:  # noqa: SLF001
                holder._con.add_query_logger(counter.log)  # noqa: SLF001
        yield counted_api, counter
    await pool.close()


def _chain(first: Any, second: Any) -> Any:
    async def both(conn: asyncpg.Connection) -> None:
        if first is not None:
            await first(conn)
        await second(conn)

    return both


async def test_a_step_completion_writes_its_change_in_one_round_trip(counted: tuple[Api, Counted]) -> None:
    api, counter = counted
    payload = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}
    # warm: the token, the staff the messages name and the statements are known to the process
    await api.ok_step((await api.create("consultant", "remote"))["id"], "callback", "manager", payload)
    case = await api.create("consultant", "remote")
    counter.sent.clear()
    body = await api.ok_step(case["id"], "callback", "manager", payload)
    # the answer shows what was decided, with its timeline
    assert {s["step"] for s in body["open_steps"]} == {"assign_designer", "assign_assistant"}
    assert any(e["kind"] == "step_done" and e["step"] == "callback" for e in body["timeline"])
    # the case read for the permission check (which also confirms the cached token), and the write
    assert len(counter.sent) <= 2, counter.sent
    assert [q for q in counter.sent if "intake_apply_change" in q] == ["SELECT intake_apply_change($1::text::jsonb)::text"]
