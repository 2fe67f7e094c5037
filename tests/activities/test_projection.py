"""The projection writer: a decision's change lands once, newest version wins, in any order, twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError

from activities.projection import ProjectionActivities
from domain import engine
from domain.enums import Role, Scenario, Source, StepName
from domain.models import Actor, CompleteStep, IntakeInput, StaffRef, WrittenCheck
from domain.policy import fast_policy
from domain.templates import Company
from store.outbox import OutboxWriter
from store.projection import ProjectionWriter
from tests.activities.conftest import MakeCase, MakeStaff

T0 = datetime(2030, 3, 4, 1, 0, tzinfo=UTC)


def writer() -> ProjectionWriter:
    return ProjectionWriter(OutboxWriter(Company(name="城市人家装饰公司", short_name="城市人家"),
                                         sms_provider="outbox", staff_channel="log"))


async def _decisions(make_staff: MakeStaff, case_id: int) -> tuple[StaffRef, StaffRef, list[engine.Decision]]:
    manager = (await make_staff("刘强", Role.manager)).ref()
    designer = (await make_staff("张伟", Role.designer)).ref()
    creator = (await make_staff("孙丽", Role.consultant)).ref()
    d1 = engine.start(IntakeInput(case_id=case_id, source=Source.marketing, scenario=Scenario.remote, created_at=T0,
                                  created_by=creator, manager=manager, policy=fast_policy()))
    act = Actor(staff_id=manager.id, role=Role.manager, name=manager.name)
    now = T0 + timedelta(seconds=3)
    d2 = engine.decide(d1.state, CompleteStep(actor=act, step=StepName.callback, payload={"reached": True}),
                       now=now, policy=fast_policy())
    d3 = engine.decide(d2.state, CompleteStep(actor=act, step=StepName.assign_designer, payload={},
                                              first_suggestion=designer), now=now, policy=fast_policy())
    return manager, designer, [d1, d2, d3]


async def _apply(pool: asyncpg.Pool, d: engine.Decision, *, confirm: bool = True) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await writer().apply(conn, d.change, confirm=confirm)


async def _rows(pool: asyncpg.Pool, case_id: int) -> tuple[Any, ...]:
    case = await pool.fetchrow("SELECT stage, version, designer_id, status FROM cases WHERE id = $1", case_id)
    steps = await pool.fetch("SELECT step_key, status, result FROM case_steps WHERE case_id = $1 ORDER BY step_key",
                             case_id)
    events = await pool.fetch("SELECT seq, kind FROM case_events WHERE case_id = $1 ORDER BY seq", case_id)
    ledger = await pool.fetch("SELECT designer_id, kind FROM allocation_ledger WHERE case_id = $1", case_id)
    outbox = await pool.fetch("SELECT purpose FROM outbox WHERE case_id = $1 ORDER BY purpose", case_id)
    return (tuple(case), [tuple(r) for r in steps], [tuple(r) for r in events], [tuple(r) for r in ledger],
            [r["purpose"] for r in outbox])


async def test_changes_land_once_in_any_order(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> None:
    a, b = await make_case(), await make_case()
    _, designer, forward = await _decisions(make_staff, a)
    _, designer_b, backward = await _decisions(make_staff, b)
    for d in forward:
        await _apply(pool, d)
        await _apply(pool, d)  # the workflow writes what the API wrote already: nothing changes
    await _apply(pool, forward[0])  # late and old: ignored
    for d in reversed(backward):
        await _apply(pool, d)
    case, steps, events, ledger, outbox = await _rows(pool, a)
    # contact waits for the assistant too (T1 names both)
    assert case == ("assign_assistant", 3, designer.id, "open")
    assert steps == [("assign_assistant#1", "open", None), ("assign_designer#1", "done", "done"),
                     ("callback#1", "done", "done")]
    assert [k for _, k in events].count("designer_assigned") == 1
    assert ledger == [(designer.id, "assign")]
    assert outbox == sorted(["open:callback#1", "open:assign_designer#1", "open:assign_assistant#1",
                             f"assigned:designer:{designer.id}"])
    # the other case, written newest first, ends the same way
    case_b, steps_b, events_b, ledger_b, _ = await _rows(pool, b)
    assert case_b == ("assign_assistant", 3, designer_b.id, "open")
    assert steps_b == steps and [k for _, k in events_b] == [k for _, k in events]


async def test_a_starting_case_opens_only_when_its_workflow_is_known_to_run(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    case_id = await make_case(status="starting")
    _, _, ds = await _decisions(make_staff, case_id)
    await _apply(pool, ds[0], confirm=False)
    assert await pool.fetchval("SELECT status FROM cases WHERE id = $1", case_id) == "starting"
    await _apply(pool, ds[0])  # the workflow's own write: it runs
    assert await pool.fetchval("SELECT status FROM cases WHERE id = $1", case_id) == "open"


async def test_apply_change_refuses_for_good_what_cannot_be_written(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    _, _, ds = await _decisions(make_staff, 987_654_321)
    with pytest.raises(ApplicationError) as exc:
        await ProjectionActivities(pool, writer()).apply_change(ds[0].change)
    assert exc.value.type == "case_missing" and exc.value.non_retryable
    case_id = await make_case()
    _, _, ds = await _decisions(make_staff, case_id)
    ghost = StaffRef(id=987_654_321, name="无此人", role=Role.designer)
    bad = ds[0].change.model_copy(update={"head": ds[0].change.head.model_copy(update={"designer": ghost})})
    with pytest.raises(ApplicationError) as exc:
        await ProjectionActivities(pool, writer()).apply_change(bad)
    assert exc.value.type == "projection_invalid" and exc.value.non_retryable


async def test_projection_written_tells_whether_the_api_wrote_a_change(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """The workflow's cheap question before its own write: yes only when every entry of the change is
    there at its version in a confirmed case; it waits while the API may still be writing."""
    case_id = await make_case(status="starting")
    _, _, ds = await _decisions(make_staff, case_id)
    acts = ProjectionActivities(pool, writer())
    both = engine.combine(ds[0].change, ds[1].change)
    check = WrittenCheck.of(both)
    assert check is not None and (check.first_seq, check.last_seq) == (1, both.events[-1].seq)
    await _apply(pool, ds[0], confirm=False)  # the API's write at creation: not yet confirmed
    assert not await acts.projection_written(check)
    await _apply(pool, ds[1])  # the API's write after the callback (confirms the case)
    assert await acts.projection_written(check)
    # a later change not written yet: no, after its wait; written while the activity waits: yes
    later = WrittenCheck.of(ds[2].change, wait_seconds=0.3)
    assert later is not None and not await acts.projection_written(later)

    async def api_writes_soon() -> None:
        await asyncio.sleep(0.2)
        await _apply(pool, ds[2])

    answer, _ = await asyncio.gather(acts.projection_written(later.model_copy(update={"wait_seconds": 10})),
                                     api_writes_soon())
    assert answer
    # a change whose entries do not prove it (none) is never asked about
    assert WrittenCheck.of(ds[2].change.model_copy(update={"events": []})) is None
