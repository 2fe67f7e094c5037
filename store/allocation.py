"""Allocation facts (SPEC §5, 客户分配制度): the designers and assistants a case could get, ranked.

Ranking itself is pure (:mod:`domain.allocation`); this repository reads the facts it needs
(designers, their open cases, their last assignment) for the API's suggestions and for the workflow's
automatic assignment (activities/allocation.py). The ledger and the registrations are written with the
projection (store/projection.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

from domain.allocation import (
    AssistantCandidate,
    DesignerCandidate,
    rank_assistants,
    rank_designers,
)
from domain.enums import Level, Role, Scenario, StaffStatus
from domain.models import StaffRef, SuggestAssistants, Suggestion
from domain.policy import Policy
from store.branches import MAIN_BRANCH_ID
from store.staff import in_branch_sql, schedule_from_db

# Staff `s` work in the branch named ($2), else in the case's ($3), else in branch 1 (a case not yet stored).
_IN_CASE_BRANCH = in_branch_sql(
    "s", f"coalesce($2::bigint, (SELECT bc.branch_id FROM cases bc WHERE bc.id = $3::bigint), {MAIN_BRANCH_ID})")


class DesignerSuggestion(Suggestion):
    """A suggestion line for the API, eligible or not (rank 0 and reasons why not)."""

    eligible: bool = True


class AllocationRepository:
    """Ranked designers and assistants for a case, from PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def suggest_assistants(self, req: SuggestAssistants, *, branch_id: int | None = None) -> list[Suggestion]:
        """Active assistants of the case's branch (or of `branch_id`), fewest open cases first."""
        rows = await self._pool.fetch(
            f"""
            SELECT s.id, s.name, s.status,
                   (SELECT count(*) FROM cases c
                     WHERE c.assistant_id = s.id AND c.status = 'open' AND c.id <> $1) AS open_cases,
                   (SELECT max(r.at) FROM assistant_registrations r WHERE r.assistant_id = s.id) AS last_at
            FROM staff s WHERE s.role = 'assistant' AND s.status = 'active' AND {_IN_CASE_BRANCH}
            ORDER BY s.id
            """,
            req.case_id, branch_id, req.case_id,
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
        branch_id: int | None = None,
    ) -> list[DesignerSuggestion]:
        """Designers of the case's branch (or of `branch_id`) ranked for it; with `include_ineligible` also the
        others, with reasons why not. Another branch's designers are never suggested."""
        rows = await self._pool.fetch(
            f"""
            SELECT s.id, s.name, s.level, s.status, s.communities, s.office_schedule, s.max_open_cases,
                   s.weight,
                   (SELECT count(*) FROM cases c
                     WHERE c.designer_id = s.id AND c.status = 'open'
                       AND ($1::bigint IS NULL OR c.id <> $1)) AS open_cases,
                   (SELECT max(l.at) FROM allocation_ledger l WHERE l.designer_id = s.id AND l.kind <> 'lapse') AS last_at
            FROM staff s
            WHERE s.role = 'designer' AND s.status <> 'inactive' AND {_IN_CASE_BRANCH}
            ORDER BY s.id
            """,
            case_id if exclude_case_from_counts else None, branch_id, case_id,
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
