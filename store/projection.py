"""The case projection: what a decision changed, written to PostgreSQL for lists, tasks and reports.

The workflow is the source of truth; `cases`, `case_steps` and `case_events` are a read model, and the
outbox and the allocation ledger are written in the same transaction. Two writers apply the same
:class:`CaseChange`: the API, right after an update answered (so a 200 is already visible in every
list), and the workflow a little later or at once after a timer (so nothing is lost when the API
dies in between). Changes can therefore arrive twice or out of order; every write is idempotent:

* the case row and the open steps only move forward (guarded by the change's `version`);
* finished steps, events (by seq), ledger rows (by event key) and outbox rows (by purpose) are
  inserted once and never changed by an older change.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg
from pydantic import ValidationError

from domain import engine
from domain.models import CaseChange, CaseState, NotifyStaff, RecordAssignment, SendSms


class MessageQueue(Protocol):
    """Where decided messages go (the outbox), inside the caller's transaction."""

    async def enqueue(
        self, conn: asyncpg.Connection, *, sms: list[SendSms], notices: list[NotifyStaff]
    ) -> None: ...


class CaseMissing(Exception):
    """The change names a case that has no row."""


class ProjectionWriter:
    """Applies CaseChanges to the projection, the ledger and the outbox (one transaction each)."""

    def __init__(self, outbox: MessageQueue) -> None:
        self._outbox = outbox

    async def apply(self, conn: asyncpg.Connection, change: CaseChange, *, confirm: bool = True) -> CaseState:
        """Write one change inside the caller's transaction; returns the projection's full state.

        `confirm` marks a case still `starting` as open (its workflow is known to run); the API's
        first write at creation passes False.
        """
        row = await conn.fetchrow("SELECT version, status, state FROM cases WHERE id = $1 FOR UPDATE", change.case_id)
        if row is None:
            raise CaseMissing(change.case_id)
        stored: CaseState | None = None
        if row["state"]:
            try:
                stored = CaseState.model_validate(row["state"])
            except ValidationError:
                stored = None  # written by an older shape: rebuilt from this change
        merged = engine.merge(stored, change)
        newer = change.version > row["version"]
        status = merged.status.value
        if row["status"] == "starting" and not confirm:
            status = "starting"
        if newer:
            await self._update_case(conn, merged, status)
            await self._upsert_open_steps(conn, change)
        elif change.finished or any(e.kind == "note" for e in change.events) or (
            row["status"] == "starting" and confirm
        ):
            await conn.execute(
                "UPDATE cases SET state = $2, status = CASE WHEN status = 'starting' THEN $3 ELSE status END"
                " WHERE id = $1",
                change.case_id,
                merged.model_dump(mode="json"),
                status,
            )
        await self._insert_finished(conn, change)
        await self._insert_events(conn, change)
        await self._insert_assignments(conn, change.effects.assignments)
        if change.effects.sms or change.effects.notices:
            await self._outbox.enqueue(conn, sms=change.effects.sms, notices=change.effects.notices)
        return merged

    async def enqueue_messages(
        self, conn: asyncpg.Connection, *, sms: list[SendSms], notices: list[NotifyStaff]
    ) -> None:
        """Messages decided outside a change (an upgrade of old cases), into the outbox."""
        if sms or notices:
            await self._outbox.enqueue(conn, sms=sms, notices=notices)

    async def _update_case(self, conn: asyncpg.Connection, state: CaseState, status: str) -> None:
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
            status,
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

    async def _upsert_open_steps(self, conn: asyncpg.Connection, change: CaseChange) -> None:
        head = change.head
        if head.open_steps:
            await conn.executemany(
                """
                INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, owner_id, status,
                                        opened_at, due_at, overdue, escalation_level)
                VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10)
                ON CONFLICT (case_id, step_key) DO UPDATE SET
                    owner_id = EXCLUDED.owner_id, due_at = EXCLUDED.due_at, overdue = EXCLUDED.overdue,
                    escalation_level = EXCLUDED.escalation_level
                WHERE case_steps.status = 'open'
                """,
                [
                    (head.case_id, s.key, s.step.value, s.attempt, s.owner_role.value,
                     s.owner.id if s.owner else None, s.opened_at, s.due_at, s.overdue, s.escalation_level)
                    for s in head.open_steps
                ],
            )
        # A step the projection still shows open that this newer state no longer has open is done
        # (its finished row may come with this change or has come already).
        await conn.execute(
            """
            UPDATE case_steps SET status = 'done', result = COALESCE(result, 'cancelled'),
                                  completed_at = COALESCE(completed_at, now())
            WHERE case_id = $1 AND status = 'open' AND NOT (step_key = ANY($2::text[]))
            """,
            head.case_id,
            [s.key for s in head.open_steps],
        )

    async def _insert_finished(self, conn: asyncpg.Connection, change: CaseChange) -> None:
        if not change.finished:
            return
        await conn.executemany(
            """
            INSERT INTO case_steps (case_id, step_key, step, attempt, owner_role, status, result,
                                    opened_at, due_at, completed_at, completed_by, overdue, escalation_level)
            VALUES ($1, $2, $3, $4, $5, 'done', $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (case_id, step_key) DO UPDATE SET
                status = 'done', result = EXCLUDED.result, due_at = EXCLUDED.due_at,
                completed_at = EXCLUDED.completed_at, completed_by = EXCLUDED.completed_by,
                overdue = EXCLUDED.overdue, escalation_level = EXCLUDED.escalation_level
            WHERE case_steps.status = 'open' OR case_steps.result = 'cancelled'
            """,
            [
                (change.case_id, s.key, s.step.value, s.attempt, s.owner_role.value, s.result, s.opened_at,
                 s.due_at, s.completed_at, s.completed_by, not s.on_time, s.escalation_level)
                for s in change.finished
            ],
        )

    async def _insert_events(self, conn: asyncpg.Connection, change: CaseChange) -> None:
        if not change.events:
            return
        await conn.executemany(
            """
            INSERT INTO case_events (case_id, seq, at, kind, step, actor_id, text, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (case_id, seq) DO NOTHING
            """,
            [
                (change.case_id, e.seq, e.at, e.kind, e.step.value if e.step else None, e.actor_id, e.text, e.data)
                for e in change.events
            ],
        )

    async def _insert_assignments(self, conn: asyncpg.Connection, rows: list[RecordAssignment]) -> None:
        # A designer's assignment goes to the allocation ledger, an assistant's to the registrations (备案登记).
        by_position: dict[str, list[RecordAssignment]] = {"designer": [], "assistant": []}
        for a in rows:
            by_position[a.role].append(a)
        for a in by_position["designer"]:
            await conn.execute(
                "INSERT INTO allocation_ledger (case_id, event_key, designer_id, kind, suggested_id,"
                " decided_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (case_id, event_key) DO NOTHING",
                a.case_id, a.event_key, a.staff_id, a.kind, a.suggested_id, a.decided_by, a.reason,
            )
        for a in by_position["assistant"]:
            await conn.execute(
                "INSERT INTO assistant_registrations (case_id, event_key, assistant_id, kind,"
                " registered_by, reason) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (case_id, event_key) DO NOTHING",
                a.case_id, a.event_key, a.staff_id, a.kind, a.decided_by, a.reason,
            )
