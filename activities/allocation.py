"""Allocation activities (SPEC §5, 客户分配制度): suggestions from PostgreSQL, ledger and registrations.

Ranking itself is pure (:mod:`domain.allocation`); this module reads the facts it needs (designers,
their open cases, their last assignment) and writes the allocation ledger and the assistant registration
record (备案登记), both idempotent by (case_id, event_key) so activity retries add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.allocation import (
    AssistantCandidate,
    DesignerCandidate,
    rank_assistants,
    rank_designers,
)
from domain.enums import Level, Role, Scenario, StaffStatus
from domain.models import RecordAssignment, StaffRef, SuggestAssistants, SuggestDesigners, Suggestion
from domain.policy import Policy


class SuggestDesignersInput(SuggestDesigners):
    """SuggestDesigners plus the case's policy limits (max open cases per level; None = SPEC defaults)."""

    max_open_by_level: dict[Level, int] | None = None



class DesignerSuggestion(Suggestion):
    """A suggestion line for the API, eligible or not (rank 0 and reasons why not)."""

    eligible: bool = True


class LedgerEntry(BaseModel):
    """One allocation ledger row: who got the case, suggested whom, decided by whom, when, why."""

    id: int
    case_id: int
    event_key: str
    designer_id: int
    designer_name: str
    kind: Literal["assign", "reassign", "auto"]
    suggested_id: int | None = None
    decided_by: int
    reason: str | None = None
    at: datetime


class RegistrationEntry(BaseModel):
    """One assistant registration row (备案登记)."""

    id: int
    case_id: int
    event_key: str
    assistant_id: int
    assistant_name: str
    kind: Literal["assign", "reassign", "auto"]
    registered_by: int
    reason: str | None = None
    at: datetime


def _schedule(raw: Mapping[str, Any] | None) -> dict[int, list[tuple[time, time]]]:
    return {
        int(day): [(time.fromisoformat(s), time.fromisoformat(e)) for s, e in periods]
        for day, periods in (raw or {}).items()
    }


class AllocationActivities:
    """Activities `suggest_designers`, `suggest_assistants`, `record_assignment`; ledger reads for the API."""

    def __init__(self, pool: asyncpg.Pool, tz: str = "Asia/Shanghai") -> None:
        self._pool = pool
        self._tz = tz

    # --- activities ----------------------------------------------------------------------------

    @activity.defn(name="suggest_designers")
    async def suggest_designers(self, req: SuggestDesignersInput) -> list[Suggestion]:
        """Eligible designers in rotation order (轮单), each with its reasons."""
        ranked = await self.designer_suggestions(
            case_id=req.case_id,
            scenario=req.scenario,
            required_level=req.required_level,
            meeting_at=req.meeting_at,
            compound=req.compound,
            exclude_case_from_counts=req.exclude_case_from_counts,
            max_open_by_level=req.max_open_by_level,
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
                    office_schedule=_schedule(r["office_schedule"]),
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
            tz=self._tz,
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

    async def ledger(self, *, case_id: int) -> list[LedgerEntry]:
        """The allocation ledger of a case, oldest first."""
        rows = await self._pool.fetch(
            "SELECT l.id, l.case_id, l.event_key, l.designer_id, s.name AS designer_name, l.kind,"
            " l.suggested_id, l.decided_by, l.reason, l.at"
            " FROM allocation_ledger l JOIN staff s ON s.id = l.designer_id"
            " WHERE l.case_id = $1 ORDER BY l.at, l.id",
            case_id,
        )
        return [LedgerEntry.model_validate(dict(r)) for r in rows]

    async def registrations(self, *, case_id: int) -> list[RegistrationEntry]:
        """The assistant registrations (备案登记) of a case, oldest first."""
        rows = await self._pool.fetch(
            "SELECT r.id, r.case_id, r.event_key, r.assistant_id, s.name AS assistant_name, r.kind,"
            " r.registered_by, r.reason, r.at"
            " FROM assistant_registrations r JOIN staff s ON s.id = r.assistant_id"
            " WHERE r.case_id = $1 ORDER BY r.at, r.id",
            case_id,
        )
        return [RegistrationEntry.model_validate(dict(r)) for r in rows]


def _ref(row: asyncpg.Record) -> StaffRef:
    return StaffRef(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        level=Level(row["level"]) if row["level"] else None,
    )
