"""Activity `suggest_designers`: the workflow's automatic assignment (轮单) asks store/allocation.py."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from domain.models import SuggestDesigners, Suggestion
from store.allocation import AllocationRepository


class AllocationActivities:
    """Activity `suggest_designers` (automatic assignment, where the company turned it on)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._repo = AllocationRepository(pool)

    @activity.defn(name="suggest_designers")
    async def suggest_designers(self, req: SuggestDesigners) -> list[Suggestion]:
        """Eligible designers in rotation order (轮单), each with its reasons."""
        ranked = await self._repo.designer_suggestions(
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
