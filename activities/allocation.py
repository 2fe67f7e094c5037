"""Allocation activities (SPEC §5, 客户分配制度): suggestions from PostgreSQL, ledger and registrations.

Ranking itself is pure (:mod:`domain.allocation`); this module reads the facts it needs (designers,
their open cases, their last assignment) and writes the allocation ledger and the assistant registration
record (备案登记), both idempotent by (case_id, event_key) so activity retries add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.staff import schedule_from_db
from domain.allocation import (
    AssistantCandidate,
    DesignerCandidate,
    rank_assistants,
    rank_designers,
)
from domain.enums import Level, Role, Scenario, StaffStatus
from domain.models import RecordAssignment, StaffRef, SuggestAssistants, SuggestDesigners, Suggestion
from domain.policy import Policy


class DesignerSuggestion(Suggestion):
    """A suggestion line for the API, eligible or not (rank 0 and reasons why not)."""

    eligible: bool = True


class AllocationActivities:
    """Activities `suggest_designers`, `suggest_assistants`, `record_assignment`; suggestions for the API."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- activities ----------------------------------------------------------------------------

    @activity.defn(name="suggest_designers")
    async def suggest_designers(self, req: SuggestDesigners) -> list[Suggestion]:
        """Eligible designers in rotation order (轮单), each with its reasons."""
        ranked = await self.designer_suggestions(
            case_id=req.case_id,
            scenario=req.scenario,
            required_level=req.required_level,
            meeting_at=req.meeting_at,
            compound=req.compound,
            exclude_case_from_counts=req.exclude_case_from_counts,
            max_open_by_level=req.max_open_by_level,
            tz=req.timezone,
            include_ineligible=False,
        )
        return [Suggestion.model_validate(s.model_dump(exclude={"eligible"})) for s in ranked]

    @activity.defn(name="suggest_assistants")
    async def suggest_assistants(self, req: SuggestAssistants) -> list[Suggestion]:
        """Active assistants, fewest open cases first."""
        rows = await self._pool.fetch(
            """
            SELECT s.id, s.name, s.status,
                   (SELECT count(*) FROM cases c
                     WHERE c.assistant_id = s.id AND c.status = 'open' AND c.id <> $1) AS open_cases,
                   (SELECT max(r.at) FROM assistant_registrations r WHERE r.assistant_id = s.id) AS last_at
            FROM staff s WHERE s.role = 'assistant' AND s.status = 'active' ORDER BY s.id
            """,
            req.case_id,
        )
        by_id = {r["id"]: r for r in rows}
        ranked = rank_assistants(
            [
                AssistantCandidate(
                    staff_id=r["id"],
                    name=r["name"],
                    status=StaffStatus(r["status"]),
                    open_cases=r["open_cases"],
                )
                for r in rows
            ]
        )
        return [
            Suggestion(
                staff=StaffRef(id=a.staff_id, name=a.name, role=Role.assistant),
                rank=a.rank,
                reasons=list(a.reasons),
                open_cases=by_id[a.staff_id]["open_cases"],
                last_assigned_at=by_id[a.staff_id]["last_at"],
            )
            for a in ranked
        ]

    @activity.defn(name="record_assignment")
    async def record_assignment(self, req: RecordAssignment) -> StaffRef:
        """Write the allocation ledger row (designer) or the registration row (assistant), once."""
        table, staff_col = (
            ("allocation_ledger", "designer_id")
            if req.role == "designer"
            else ("assistant_registrations", "assistant_id")
        )
        async with self._pool.acquire() as conn, conn.transaction():
            # A retry after the first attempt committed returns what was recorded, even if the staff
            # member's status changed in between.
            done = await conn.fetchrow(
                f"SELECT s.id, s.name, s.role, s.level FROM {table} t JOIN staff s ON s.id = t.{staff_col}"
                " WHERE t.case_id = $1 AND t.event_key = $2",
                req.case_id,
                req.event_key,
            )
            if done is not None:
                return _ref(done)
            staff = await conn.fetchrow(
                "SELECT id, name, role, level, status FROM staff WHERE id = $1", req.staff_id
            )
            if staff is None:
                raise ApplicationError(
                    f"员工 {req.staff_id} 不存在", type="invalid_assignee", non_retryable=True
                )
            if staff["role"] != req.role:
                raise ApplicationError(
                    f"{staff['name']} 不是{'设计师' if req.role == 'designer' else '助理设计师'}",
                    type="invalid_assignee",
                    non_retryable=True,
                )
            if staff["status"] != StaffStatus.active.value:
                raise ApplicationError(
                    f"{staff['name']} 当前不在岗（{staff['status']}）",
                    type="invalid_assignee",
                    non_retryable=True,
                )
            try:
                if req.role == "designer":
                    await conn.execute(
                        "INSERT INTO allocation_ledger (case_id, event_key, designer_id, kind, suggested_id,"
                        " decided_by, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                        " ON CONFLICT (case_id, event_key) DO NOTHING",
                        req.case_id,
                        req.event_key,
                        req.staff_id,
                        req.kind,
                        req.suggested_id,
                        req.decided_by,
                        req.reason,
                    )
                else:
                    await conn.execute(
                        "INSERT INTO assistant_registrations (case_id, event_key, assistant_id, kind,"
                        " registered_by, reason) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (case_id, event_key) DO NOTHING",
                        req.case_id,
                        req.event_key,
                        req.staff_id,
                        req.kind,
                        req.decided_by,
                        req.reason,
                    )
            except asyncpg.ForeignKeyViolationError as exc:
                # No such case, or decided_by / suggested_id name nobody: retrying cannot fix it.
                raise ApplicationError(
                    f"分配记录无法写入: {exc.detail or exc}", type="invalid_assignment", non_retryable=True
                ) from exc
        return _ref(staff)

    # --- plain methods for the API (no Temporal) ----------------------------------------------

    async def designer_suggestions(
        self,
        *,
        case_id: int | None,
        scenario: Scenario,
        required_level: Level,
        meeting_at: datetime | None = None,
        compound: str | None = None,
        exclude_case_from_counts: bool = True,
        max_open_by_level: Mapping[Level, int] | None = None,
        tz: str = "Asia/Shanghai",
        include_ineligible: bool = True,
    ) -> list[DesignerSuggestion]:
        """Designers ranked for a case; with `include_ineligible` also the others, with reasons why not."""
        rows = await self._pool.fetch(
            """
            SELECT s.id, s.name, s.level, s.status, s.communities, s.office_schedule, s.max_open_cases,
                   s.weight,
                   (SELECT count(*) FROM cases c
                     WHERE c.designer_id = s.id AND c.status = 'open'
                       AND ($1::bigint IS NULL OR c.id <> $1)) AS open_cases,
                   (SELECT max(l.at) FROM allocation_ledger l WHERE l.designer_id = s.id) AS last_at
            FROM staff s
            WHERE s.role = 'designer' AND s.status <> 'inactive'
            ORDER BY s.id
            """,
            case_id if exclude_case_from_counts else None,
        )
        by_id = {r["id"]: r for r in rows}
        ranked = rank_designers(
            [
                DesignerCandidate(
                    staff_id=r["id"],
                    name=r["name"],
                    level=Level(r["level"]),
                    status=StaffStatus(r["status"]),
                    communities=tuple(r["communities"] or ()),
                    office_schedule=schedule_from_db(r["office_schedule"]),
                    open_cases=r["open_cases"],
                    max_open_cases=r["max_open_cases"],
                    last_assigned_at=r["last_at"],
                    weight=float(r["weight"]),
                )
                for r in rows
            ],
            required_level=required_level,
            scenario=scenario,
            meeting_at=meeting_at,
            compound=compound,
            max_open_by_level=max_open_by_level if max_open_by_level is not None else Policy().max_open_cases,
            tz=tz,
            include_ineligible=include_ineligible,
        )
        return [
            DesignerSuggestion(
                staff=StaffRef(id=d.staff_id, name=d.name, role=Role.designer, level=d.level),
                rank=d.rank,
                reasons=list(d.reasons),
                open_cases=by_id[d.staff_id]["open_cases"],
                last_assigned_at=by_id[d.staff_id]["last_at"],
                eligible=d.eligible,
            )
            for d in ranked
        ]


def _ref(row: asyncpg.Record) -> StaffRef:
    return StaffRef.model_validate({k: row[k] for k in ("id", "name", "role", "level")})
