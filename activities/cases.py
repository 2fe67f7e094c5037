"""Case read repository: reads of the `cases` projection outside the workflows.

(Client personal data - name, phone, gender - never travels through Temporal; the outbox writer reads
it from `cases` in the transaction that records a message, see activities.outbox.)
"""

from __future__ import annotations

import asyncpg


class CaseRepository:
    """Reads of the `cases` projection that activities need."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def exists(self, *, case_id: int) -> bool:
        """Whether the case row exists."""
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM cases WHERE id = $1)", case_id))
