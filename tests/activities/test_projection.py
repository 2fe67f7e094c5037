"""sync_projection: the case row, its steps and events follow the workflow's state, newest version wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError

from activities.projection import ProjectionActivities
from domain.enums import MeetingKind, Outcome, Role, Scenario, Source, StepName
from domain.models import CaseEvent, CaseState, DoneStep, Meeting, OpenStep, StaffRef, SyncProjection
from tests.activities.conftest import MakeCase, MakeStaff

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _state(case_id: int, version: int, **kw: object) -> CaseState:
    base: dict[str, object] = {
        "case_id": case_id,
        "workflow_id": f"intake-{case_id}",
        "source": Source.marketing,
        "scenario": Scenario.remote,
        "stage": "callback",
        "created_at": T0,
        "version": version,
    }
    base.update(kw)
    return CaseState.model_validate(base)


def _ev(seq: int, text: str) -> CaseEvent:
    return CaseEvent(seq=seq, at=T0 + timedelta(minutes=seq), kind="step_opened", text=text)


async def test_sync_projection_is_monotonic_and_idempotent(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    manager = await make_staff("刘强", Role.manager)
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    acts = ProjectionActivities(pool)
    callback = OpenStep(
        key="callback#1",
        step=StepName.callback,
        label="经理回访",
        owner_role=Role.manager,
        owner=manager.ref(),
        opened_at=T0,
        due_at=T0 + timedelta(minutes=15),
    )
    v1 = _state(
        case_id,
        1,
        manager=manager.ref(),
        open_steps=[callback],
        events=[_ev(1, "案例创建"), _ev(2, "回访开始")],
        step_due_at=callback.due_at,
    )
    await acts.sync_projection(SyncProjection(state=v1))
    await acts.sync_projection(SyncProjection(state=v1))  # a retry: harmless

    meeting_at = T0 + timedelta(days=2)
    v2 = _state(
        case_id,
        2,
        stage="assign_designer",
        manager=manager.ref(),
        designer=StaffRef(id=designer.id, name="张伟", role=Role.designer),
        meetings=[Meeting(which="meeting", kind=MeetingKind.measure, at=meeting_at)],
        open_steps=[
            OpenStep(
                key="assign_designer",
                step=StepName.assign_designer,
                label="分配设计师",
                owner_role=Role.manager,
                opened_at=T0 + timedelta(minutes=5),
                overdue=True,
                escalation_level=1,
            )
        ],
        done_steps=[
            DoneStep(
                key="callback#1",
                step=StepName.callback,
                label="经理回访",
                owner_role=Role.manager,
                opened_at=T0,
                due_at=T0 + timedelta(minutes=15),
                completed_at=T0 + timedelta(minutes=5),
                completed_by=manager.id,
            )
        ],
        events=[_ev(1, "案例创建"), _ev(2, "回访开始"), _ev(3, "回访完成")],
        overdue=True,
        escalation_level=1,
    )
    await acts.sync_projection(SyncProjection(state=v2))
    await acts.sync_projection(SyncProjection(state=v1))  # late, older: ignored

    case = await pool.fetchrow("SELECT * FROM cases WHERE id = $1", case_id)
    assert case["version"] == 2 and case["stage"] == "assign_designer"
    assert case["designer_id"] == designer.id and case["manager_id"] == manager.id
    assert (
        case["meeting_at"] == meeting_at and case["meeting_kind"] == "measure" and case["measure_at"] is None
    )
    assert case["overdue"] is True and case["escalation_level"] == 1
    assert case["state"]["version"] == 2 and case["state"]["stage"] == "assign_designer"

    steps = {
        r["step_key"]: r for r in await pool.fetch("SELECT * FROM case_steps WHERE case_id = $1", case_id)
    }
    assert set(steps) == {"callback#1", "assign_designer"}
    assert steps["callback#1"]["status"] == "done" and steps["callback#1"]["completed_by"] == manager.id
    assert steps["callback#1"]["owner_id"] == manager.id  # kept from when it was open
    assert steps["callback#1"]["result"] == "done"
    assert steps["assign_designer"]["status"] == "open" and steps["assign_designer"]["escalation_level"] == 1

    events = await pool.fetch("SELECT seq, text FROM case_events WHERE case_id = $1 ORDER BY seq", case_id)
    assert [(e["seq"], e["text"]) for e in events] == [(1, "案例创建"), (2, "回访开始"), (3, "回访完成")]

    # closing: the open step the state no longer lists leaves the task lists
    v3 = _state(
        case_id,
        3,
        stage="closed",
        status="closed",
        outcome=Outcome.lost,
        outcome_reason="预算不足",
        closed_at=T0 + timedelta(days=1),
        events=[_ev(4, "案例关闭")],
    )
    await acts.sync_projection(SyncProjection(state=v3))
    case = await pool.fetchrow(
        "SELECT status, outcome, outcome_reason, closed_at FROM cases WHERE id = $1", case_id
    )
    assert (case["status"], case["outcome"], case["outcome_reason"]) == ("closed", "lost", "预算不足")
    step = await pool.fetchrow(
        "SELECT status, result FROM case_steps WHERE case_id = $1 AND step_key = 'assign_designer'", case_id
    )
    assert (step["status"], step["result"]) == ("done", "cancelled")
    assert await pool.fetchval("SELECT count(*) FROM case_events WHERE case_id = $1", case_id) == 4


async def test_sync_projection_without_case_row_is_retried(pool: asyncpg.Pool) -> None:
    # Retryable: the API may commit the row a moment after the workflow's first sync.
    with pytest.raises(ApplicationError) as info:
        await ProjectionActivities(pool).sync_projection(SyncProjection(state=_state(987_654_321, 1)))
    assert info.value.type == "case_missing" and not info.value.non_retryable


async def test_sync_projection_with_unknown_staff_is_not_retried(
    pool: asyncpg.Pool, make_case: MakeCase
) -> None:
    case_id = await make_case()
    state = _state(case_id, 1, designer=StaffRef(id=987_654_321, name="无此人", role=Role.designer))
    with pytest.raises(ApplicationError) as info:
        await ProjectionActivities(pool).sync_projection(SyncProjection(state=state))
    assert info.value.type == "projection_invalid" and info.value.non_retryable
    assert await pool.fetchval("SELECT version FROM cases WHERE id = $1", case_id) == 0  # nothing written
