"""Projection activity: the workflow's CaseState copied into PostgreSQL for lists, tasks and reports.

The workflow is the source of truth; `cases`, `case_steps` and `case_events` are a read model. Syncs can
arrive twice (activity retries) or out of order (a slow older attempt finishing after a newer one), so the
write is guarded by the state's monotonic `version`: only a newer state changes anything, and events are
keyed by (case_id, seq).
"""

from __future__ import annotations

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.models import CaseState, SyncProjection


class ProjectionActivities:
    """Activity `sync_projection`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="sync_projection")
    async def sync_projection(self, req: SyncProjection) -> None:
        """Upsert the case row, its steps and new events from a CaseState (newer versions only)."""
        state = req.state
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # The row lock serialises concurrent syncs of one case, so the version comparison and the
                # writes below see the same stored version (no lost update between two attempts).
                stored = await conn.fetchval(
                    "SELECT version FROM cases WHERE id = $1 FOR UPDATE", state.case_id
                )
                if stored is None:
                    # Retryable: the API commits the case row right after starting the workflow, so the
                    # first sync may run a moment before the row is visible. The workflow bounds the
                    # retries of its first sync and ends an orphan whose row never appears.
                    raise ApplicationError(f"案例 {state.case_id} 不存在", type="case_missing")
                if state.version <= stored:
                    return  # a repeated or older state: the projection already shows this or newer
                await self._update_case(conn, state)
                await self._upsert_steps(conn, state)
                await self._insert_events(conn, state)
        except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as exc:
            # A staff id that doesn't exist or a value the schema refuses: retrying cannot help.
            raise ApplicationError(
                f"案例 {state.case_id} 的状态无法写入: {exc}", type="projection_invalid", non_retryable=True
            ) from exc

    async def _update_case(self, conn: asyncpg.Connection, state: CaseState) -> None:
        meeting = state.meeting("meeting")
        measure = state.meeting("measure")
        await conn.execute(
            """
            UPDATE cases SET
                stage = $2, status = $3, outcome = $4, outcome_reason = $5,
                meeting_at = $6, meeting_kind = $7, measure_at = $8,
                manager_id = $9, designer_id = $10, assistant_id = $11,
                overdue = $12, escalation_level = $13, step_due_at = $14,
                state = $15, version = $16, closed_at = $17, updated_at = now()
            WHERE id = $1
            """,
            state.case_id,
            state.stage,
            state.status.value,
            state.outcome.value if state.outcome else None,
            state.outcome_reason,
            meeting.at if meeting else None,
            meeting.kind.value if meeting else None,
            measure.at if measure else None,
            state.manager.id if state.manager else None,
            state.designer.id if state.designer else None,
            state.assistant.id if state.assistant else None,
            state.overdue,
            state.escalation_level,
            state.step_due_at,
            state.model_dump(mode="json"),
            state.version,
            state.closed_at,
        )

    async def _upsert_steps(self, conn: asyncpg.Connection, state: CaseState) -> None:
        # Only what changed: a finished step never changes again, so those already stored are skipped
        # (a long case would otherwise rewrite its whole history at every sync).
        stored_done = {
            r["step_key"]
            for r in await conn.fetch(
                "SELECT step_key FROM case_steps WHERE case_id = $1 AND status = 'done'", state.case_id
            )
        }
        new_done = [s for s in state.done_steps if s.key not in stored_done]
        if state.open_steps:
            await conn.executemany(
                """
                INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, owner_id, status,
                                        opened_at, due_at, overdue, escalation_level)
                VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10)
                ON CONFLICT (case_id, step_key) DO UPDATE SET
                    step = EXCLUDED.step, attempt = EXCLUDED.attempt, owner_role = EXCLUDED.owner_role,
                    owner_id = EXCLUDED.owner_id, status = 'open', result = NULL, opened_at = EXCLUDED.opened_at,
                    due_at = EXCLUDED.due_at, completed_at = NULL, completed_by = NULL,
                    overdue = EXCLUDED.overdue, escalation_level = EXCLUDED.escalation_level
                """,
                [
                    (
                        state.case_id,
                        s.key,
                        s.step.value,
                        s.attempt,
                        s.owner_role.value,
                        s.owner.id if s.owner else None,
                        s.opened_at,
                        s.due_at,
                        s.overdue,
                        s.escalation_level,
                    )
                    for s in state.open_steps
                ],
            )
        if new_done:
            await conn.executemany(
                """
                INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, status, result,
                                        opened_at, due_at, completed_at, completed_by, overdue,
                                        escalation_level)
                VALUES ($1, $2, $3, $4, $5, 'done', $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT (case_id, step_key) DO UPDATE SET
                    step = EXCLUDED.step, attempt = EXCLUDED.attempt, owner_role = EXCLUDED.owner_role,
                    status = 'done', result = EXCLUDED.result, opened_at = EXCLUDED.opened_at,
                    due_at = EXCLUDED.due_at, completed_at = EXCLUDED.completed_at,
                    completed_by = EXCLUDED.completed_by, overdue = EXCLUDED.overdue,
                    escalation_level = EXCLUDED.escalation_level
                """,
                [
                    (
                        state.case_id,
                        s.key,
                        s.step.value,
                        s.attempt,
                        s.owner_role.value,
                        s.result,
                        s.opened_at,
                        s.due_at,
                        s.completed_at,
                        s.completed_by,
                        not s.on_time,
                        s.escalation_level,
                    )
                    for s in new_done
                ],
            )
        # A step the projection still shows open but the state neither has open nor reports done (done
        # steps trimmed at continue-as-new, steps dropped when the case closed) must leave the task lists.
        await conn.execute(
            """
            UPDATE case_steps SET status = 'done', result = COALESCE(result, 'cancelled'),
                                  completed_at = COALESCE(completed_at, now())
            WHERE case_id = $1 AND status = 'open' AND NOT (step_key = ANY($2::text[]))
            """,
            state.case_id,
            [s.key for s in state.open_steps],
        )

    async def _insert_events(self, conn: asyncpg.Connection, state: CaseState) -> None:
        # Events are append-only and numbered: only those after the last stored one are new.
        last = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM case_events WHERE case_id = $1", state.case_id)
        new = [e for e in state.events if e.seq > last]
        if not new:
            return
        await conn.executemany(
            """
            INSERT INTO case_events (case_id, seq, at, kind, step, actor_id, text, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (case_id, seq) DO NOTHING
            """,
            [
                (
                    state.case_id,
                    e.seq,
                    e.at,
                    e.kind,
                    e.step.value if e.step else None,
                    e.actor_id,
                    e.text,
                    e.data,
                )
                for e in new
            ],
        )
