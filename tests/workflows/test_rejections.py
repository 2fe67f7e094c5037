"""Validators keep wrong input out of the history: wrong step, wrong actor, bad payload."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from domain.enums import Outcome, Scenario, StepName
from domain.models import AddNote, CaseState, CloseCase, CompleteStep, Reassign, Reschedule
from domain.policy import Policy
from tests.support.wait import until
from tests.workflows.fakes import (
    ASSISTANT,
    CONSULTANT,
    DESIGNER,
    DESIGNER2,
    LEAD,
    MANAGER,
    FakeActivities,
    actor,
    complete,
    soon,
    start_case,
    worker,
)
from workflows.intake import IntakeWorkflow


async def history_length(h: WorkflowHandle[Any, Any]) -> int:
    return len((await h.fetch_history()).events)


async def settled_history_length(h: WorkflowHandle[Any, Any]) -> int:
    """History length once the workflow is idle (no activity or task in flight)."""
    last = -1
    for _ in range(50):
        n = await history_length(h)
        if n == last:
            return n
        last = n
        await asyncio.sleep(0.3)
    raise AssertionError("the workflow never became idle")


async def upd(h: WorkflowHandle[Any, Any], update: Any, req: Any) -> CaseState:
    """Run an update, then read the case as the workflow holds it."""
    await h.execute_update(update, req)
    state: CaseState = await h.query(IntakeWorkflow.state)
    return state


async def rejected(h: WorkflowHandle[Any, Any], update: Any, req: Any) -> ApplicationError:
    before = await settled_history_length(h)
    with pytest.raises(WorkflowUpdateFailedError) as err:
        await h.execute_update(update, req)
    cause = err.value.cause
    assert isinstance(cause, ApplicationError)
    assert await history_length(h) == before, "a rejected update must not enter the history"
    return cause


async def test_rejections_leave_no_trace(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    # SPEC durations (minutes, business hours): no timer fires while the history lengths are compared
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote, policy=Policy())
        await h.query(IntakeWorkflow.state)

        # wrong step: contact is not open yet
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(DESIGNER), step=StepName.contact,
            payload={"meeting_at": soon().isoformat(), "meeting_kind": "measure"}))
        assert e.type == "step_not_open"
        # wrong actor: a consultant cannot do the manager's callback
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(CONSULTANT), step=StepName.callback, payload={"reached": True}))
        assert e.type == "wrong_role"
        # bad payload: reached must be a boolean; meeting in the past
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(MANAGER), step=StepName.callback, payload={"reached": "maybe"}))
        assert e.type == "invalid_payload"
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(MANAGER), step=StepName.callback,
            payload={"reached": True, "meeting_at": "2020-01-01T10:00:00+08:00"}))
        assert e.type == "time_in_past"
        # reassign and close: manager only
        e = await rejected(h, IntakeWorkflow.reassign, Reassign(
            actor=actor(DESIGNER), role="designer", staff=DESIGNER2, reason="x"))
        assert e.type == "wrong_role"
        e = await rejected(h, IntakeWorkflow.close, CloseCase(actor=actor(LEAD), outcome=Outcome.signed))
        assert e.type == "wrong_role"
        # reschedule before any meeting was agreed
        e = await rejected(h, IntakeWorkflow.reschedule, Reschedule(
            actor=actor(MANAGER), target="meeting", at=soon()))
        assert e.type == "no_meeting"

        await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(7200).isoformat()})
        # choosing someone else than the first suggestion needs a reason
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(MANAGER), step=StepName.assign_designer, payload={"designer_id": DESIGNER2.id},
            staff=[DESIGNER2], first_suggestion=DESIGNER))
        assert e.type == "reason_required"
        await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER2.id, "reason": "客户点名"},
                       [DESIGNER2])
        # the assistant lead must name an assistant, not a designer
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(LEAD), step=StepName.assign_assistant, payload={"assistant_id": DESIGNER.id},
            staff=[DESIGNER]))
        assert e.type == "invalid_assignee"
        # contact opens once the assistant is assigned too
        await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
        # another designer's case
        e = await rejected(h, IntakeWorkflow.complete_step, CompleteStep(
            actor=actor(DESIGNER), step=StepName.contact,
            payload={"meeting_at": soon().isoformat(), "meeting_kind": "measure"}))
        assert e.type == "not_your_case"
        e = await rejected(h, IntakeWorkflow.add_note, AddNote(actor=actor(DESIGNER), text="hi"))
        assert e.type == "not_your_case"

        # accepted operations still work afterwards
        s = await upd(h, IntakeWorkflow.add_note, AddNote(actor=actor(DESIGNER2), text="客户喜欢北欧风"))
        assert s.notes[-1].text == "客户喜欢北欧风"
        s = await upd(h, IntakeWorkflow.reassign, Reassign(
            actor=actor(MANAGER), role="designer", staff=DESIGNER, reason="刘洋请假"))
        assert s.designer == DESIGNER
        assert next(o for o in s.open_steps if o.step == StepName.contact).owner == DESIGNER
        new_at = soon(10800)
        s = await upd(h, IntakeWorkflow.reschedule, Reschedule(
            actor=actor(DESIGNER), target="meeting", at=new_at, reason="客户出差"))
        assert s.meeting("meeting").at == new_at  # type: ignore[union-attr]
        s = await upd(h, IntakeWorkflow.close, CloseCase(actor=actor(MANAGER), outcome=Outcome.duplicate))
        assert s.stage == "duplicate"
        # the workflow has finished: the server refuses further updates (the API answers 409 case_closed)
        await h.result()
        with pytest.raises(RPCError) as rpc_err:
            await h.execute_update(IntakeWorkflow.add_note, AddNote(actor=actor(MANAGER), text="late"))
        assert rpc_err.value.status == RPCStatusCode.NOT_FOUND, rpc_err.value.status
        assert {a.kind for a in fakes.assignments} == {"assign", "reassign"}


async def test_a_database_that_is_down_delays_the_projection_not_the_timers(
    client: Client, task_queue: str
) -> None:
    """Every write fails: the callback still escalates on time (owner, then the director 5 s later);
    once the database answers again, every decided notice is written once."""
    fakes = FakeActivities(fail_writes=True)
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote)
        s = await h.query(IntakeWorkflow.state)
        due = s.open_steps[0].due_at
        assert due is not None

        async def level(n: int) -> bool:
            st = await h.query(IntakeWorkflow.state)
            return st.escalation_level >= n

        await until(lambda: level(2), timeout=40, what="escalation level 2")
        s = await h.query(IntakeWorkflow.state)
        fired = [e.at for e in s.events if e.kind == "escalation"]
        # on time: the superior's rung fired at due + 5 s (fast policy), not after the writes recovered
        assert (fired[1] - (due + timedelta(seconds=5))).total_seconds() < 3
        assert fakes.calls["apply_change"] >= 1 and not fakes.notices
        fakes.fail_writes = False
        await until(lambda: {"esc:callback#1:1", "esc:callback#1:2"} <= {n.purpose for n in fakes.notices},
                    timeout=90, what="notices written after recovery")
        purposes = [n.purpose for n in fakes.notices]
        assert len(purposes) == len(set(purposes))


async def test_moving_an_office_visit_moves_what_is_due_before_it(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.office_visit)
        await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(7 * 86400).isoformat()})
        sooner = soon(12)
        s = await upd(h, IntakeWorkflow.reschedule, Reschedule(
            actor=actor(MANAGER), target="meeting", at=sooner, reason="客户提前来"))
        due = {o.step: o.due_at for o in s.open_steps}
        assert due[StepName.assign_designer] == sooner and due[StepName.assign_assistant] == sooner
        arrival_due = due[StepName.arrival]
        assert arrival_due is not None and arrival_due > sooner
