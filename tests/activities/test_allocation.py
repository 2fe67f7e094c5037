"""Designer suggestions (轮单), assistant suggestions, the allocation ledger and 备案登记."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.testing import ActivityEnvironment

from activities.allocation import AllocationActivities
from domain.enums import Level, Role, Scenario, StaffStatus
from domain.models import SuggestAssistants, SuggestDesigners
from store import queries
from store.allocation import AllocationRepository
from tests.activities.conftest import MakeCase, MakeStaff


async def test_suggest_designers_ranks_by_rotation_with_reasons(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    # A compound of our own: designers created by other tests never cover it, so the list is ours.
    compound = f"翠湖苑-{uuid.uuid4().hex[:6]}"
    manager = await make_staff("刘强", Role.manager)
    never = await make_staff("甲", Role.designer, level=Level.senior, communities=[compound])
    recent = await make_staff("乙", Role.designer, communities=[compound])
    older = await make_staff("丙", Role.designer, communities=[compound])
    junior = await make_staff("丁", Role.designer, level=Level.junior, communities=[compound])
    on_leave = await make_staff("戊", Role.designer, communities=[compound], status=StaffStatus.on_leave)
    full = await make_staff("己", Role.designer, communities=[compound], max_open_cases=1)
    elsewhere = await make_staff("庚", Role.designer, communities=["别的小区"])

    acts = AllocationActivities(pool)
    for designer, days_ago in ((recent, 1), (older, 3), (full, 5)):
        other = await make_case()
        key = f"assign-{uuid.uuid4().hex[:6]}"
        await pool.execute(
            "INSERT INTO allocation_ledger (case_id, event_key, designer_id, kind, decided_by)"
            " VALUES ($1, $2, $3, 'assign', $4)",
            other,
            key,
            designer.id,
            manager.id,
        )
        await pool.execute(
            "UPDATE allocation_ledger SET at = $3 WHERE case_id = $1 AND event_key = $2",
            other,
            key,
            datetime.now(UTC) - timedelta(days=days_ago),
        )
    full_case = await make_case(designer_id=full.id, scenario="site_office", source="site_office")
    case_id = await make_case(scenario="site_office", source="site_office")

    req = SuggestDesigners(
        case_id=case_id, scenario=Scenario.site_office, required_level=Level.designer, compound=compound
    )
    suggestions = await ActivityEnvironment().run(acts.suggest_designers, req)
    assert [s.staff.id for s in suggestions] == [never.id, older.id, recent.id]
    assert [s.rank for s in suggestions] == [1, 2, 3]
    assert suggestions[0].last_assigned_at is None and "从未分配（轮单优先）" in suggestions[0].reasons
    assert suggestions[1].last_assigned_at is not None
    assert any(compound in r for r in suggestions[1].reasons)
    assert suggestions[0].staff.level == Level.senior and suggestions[0].staff.name == "甲"

    # The API's view: the ineligible ones too, each with why not.
    everyone = await AllocationRepository(pool).designer_suggestions(
        case_id=case_id, scenario=Scenario.site_office, required_level=Level.designer, compound=compound
    )
    why_not = {s.staff.id: s.reasons for s in everyone if not s.eligible}
    assert {junior.id, on_leave.id, full.id, elsewhere.id} <= set(why_not)
    assert any("级别不足" in r for r in why_not[junior.id])
    assert "请假中" in why_not[on_leave.id]
    assert any("在手已满 1/1" in r for r in why_not[full.id])
    assert all(s.rank == 0 for s in everyone if not s.eligible)

    # Reassigning full's own case: that case does not count against them.
    again = await acts.suggest_designers(
        SuggestDesigners(
            case_id=full_case, scenario=Scenario.site_office, required_level=Level.designer, compound=compound
        )
    )
    assert full.id in [s.staff.id for s in again]
    # Policy limits travel with the request (the case's policy, fixed at start).
    tight = await acts.suggest_designers(
        SuggestDesigners(
            case_id=case_id,
            scenario=Scenario.site_office,
            required_level=Level.designer,
            compound=compound,
            max_open_by_level={Level.senior: 0, Level.designer: 12},
        )
    )
    assert never.id not in [s.staff.id for s in tight]


async def test_suggest_assistants_fewest_open_cases_first(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    busy = await make_staff("忙助理", Role.assistant)
    free = await make_staff("闲助理", Role.assistant)
    for _ in range(2):
        await make_case(assistant_id=busy.id)
    this_case = await make_case(assistant_id=free.id)  # the case itself does not count
    suggestions = await AllocationRepository(pool).suggest_assistants(SuggestAssistants(case_id=this_case))
    by_id = {s.staff.id: s for s in suggestions}
    assert by_id[free.id].open_cases == 0 and by_id[busy.id].open_cases == 2
    assert by_id[free.id].rank < by_id[busy.id].rank
    assert by_id[busy.id].reasons == ["在手 2 单"]
    assert [s.rank for s in suggestions] == list(range(1, len(suggestions) + 1))


async def _assignments(pool: asyncpg.Pool, case_id: int, role: str) -> list[asyncpg.Record]:
    """The case's ledger (designer) or registration (assistant) rows, as the API shows them."""
    return [a for a in await queries.case_assignments(pool, case_id) if a["role"] == role]
