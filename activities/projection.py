"""Activities `apply_change` and `projection_written`: the workflow's own write of what it decided
(store/projection.py writes it), and the cheap question that usually makes it unnecessary."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.models import CaseChange, WrittenCheck
from store.projection import CaseMissing, ProjectionWriter

# While the API may still be writing a change: asked again after 20 ms, then up to every 500 ms.
_FIRST_PAUSE = 0.02
_MAX_PAUSE = 0.5


class ProjectionActivities:
    """Activities `apply_change` (the workflow's own, idempotent write of what it decided) and
    `projection_written` (whether the API wrote it already)."""

    def __init__(self, pool: asyncpg.Pool, writer: ProjectionWriter) -> None:
        self._pool = pool
        self._writer = writer

    @activity.defn(name="apply_change")
    async def apply_change(self, change: CaseChange) -> None:
        """Write a change to the projection, the ledger and the outbox (a repeat does nothing)."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._writer.apply(conn, change)
        except CaseMissing:
            # The row is written before the workflow starts; a missing one was deleted by hand.
            raise ApplicationError(f"案例 {change.case_id} 不存在", type="case_missing", non_retryable=True) from None
        except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as exc:
            raise ApplicationError(
                f"案例 {change.case_id} 的变更无法写入: {exc}", type="projection_invalid", non_retryable=True
            ) from exc

    @activity.defn(name="projection_written")
    async def projection_written(self, check: WrittenCheck) -> bool:
        """True when PostgreSQL holds the change already (its version, every timeline entry it added, a
        confirmed case: one still `starting` needs the workflow's write to open it); asked again for up
        to `wait_seconds` while the API may still be writing it (a case closed a moment ago)."""
        deadline = time.monotonic() + check.wait_seconds
        pause = _FIRST_PAUSE
        while not await self._written(check):
            if time.monotonic() + pause > deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)
        return True

    async def _written(self, check: WrittenCheck) -> bool:
        row = await self._pool.fetchrow(
            """
            SELECT c.version, c.status,
                   (SELECT count(*) FROM case_events e WHERE e.case_id = c.id AND e.seq BETWEEN $2 AND $3) AS entries
            FROM cases c WHERE c.id = $1
            """,
            check.case_id, check.first_seq, check.last_seq,
        )
        return (
            row is not None and row["status"] != "starting" and row["version"] >= check.version
            and row["entries"] == check.last_seq - check.first_seq + 1
        )
