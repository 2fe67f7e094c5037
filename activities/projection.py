"""Activity `apply_change`: the workflow's own write of what it decided (store/projection.py writes it)."""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.models import CaseChange
from store.projection import CaseMissing, ProjectionWriter


class ProjectionActivities:
    """Activity `apply_change`: the workflow's own (idempotent) write of what it decided."""

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
