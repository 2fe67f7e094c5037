"""Each scenario from creation to outcome on the real Temporal dev server (fake activities)."""

from __future__ import annotations

import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from domain.enums import CaseStatus, Outcome, Scenario, StepName
from domain.models import CaseState, CloseCase
from tests.support.data import musts
from tests.support.wait import until
from tests.workflows.fakes import (
    ASSISTANT,
    DESIGNER,
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


def open_steps(state: CaseState) -> set[str]:
    return {o.step.value for o in state.open_steps}


async def test_remote_to_signed(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote)
        s = await h.query(IntakeWorkflow.state)
        assert s.stage == "callback" and open_steps(s) == {"callback"}
        # the design manager is told at once to call the new client back
        await until(lambda: any(n.purpose == "open:callback#1" for n in fakes.notices))
        page = next(n for n in fakes.notices if n.purpose == "open:callback#1")
        assert page.recipient_id == MANAGER.id and "请立即回访" in page.text

        meet = soon(7200)
        s = await complete(h, MANAGER, StepName.callback,
                           {"reached": True, "meeting_at": meet.isoformat(), "meeting_kind": "office_visit",
                            "designer_level": "designer"})
        assert open_steps(s) == {"assign_designer", "assign_assistant"}
        assert s.stage == "assign_designer"

        s = await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
        assert s.assistant and s.assistant.id == ASSISTANT.id
        s = await complete(h, MANAGER, StepName.assign_designer, {}, [])
        assert s.designer and s.designer.id == DESIGNER.id
        assert open_steps(s) == {"contact"} and s.stage == "contact"

        s = await complete(h, DESIGNER, StepName.contact,
                           {"meeting_at": meet.isoformat(), "meeting_kind": "office_visit"})
        assert s.stage == "first_meeting"
        await until(lambda: "T1" in fakes.purposes())
        t1 = next(m for m in fakes.sms if m.purpose == "T1")
        assert t1.assistant_id == ASSISTANT.id and t1.include_assistant

        measure = soon(86400 * 3)
        s = await complete(h, DESIGNER, StepName.first_meeting,
                           musts("三居室现代简约，预算30万", measure_at=measure.isoformat()))
        assert open_steps(s) == {"debrief", "measure"}
        await until(lambda: "T2" in fakes.purposes())

        s = await complete(h, DESIGNER, StepName.measure, {"result": "done"})
        s = await complete(h, MANAGER, StepName.debrief, {"findings": "需求挖掘充分"})
        await until(lambda: "T3" in fakes.purposes())
        assert s.stage == "outcome"
        s = await complete(h, MANAGER, StepName.outcome, {"outcome": "signed"})
        assert s.status == CaseStatus.closed and s.outcome == Outcome.signed
        final = await h.result()
        assert final.stage == "signed"
        assert fakes.purposes().count("T1") == 1
        # the projection saw the final state
        assert fakes.projections[final.case_id].status == CaseStatus.closed
        assert [a.role for a in fakes.assignments] == ["assistant", "designer"]


async def test_walk_in_measure_at_first_meeting_then_lost(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.walk_in)
        s = await h.query(IntakeWorkflow.state)
        assert open_steps(s) == {"assign_designer", "assign_assistant"}
        for o in s.open_steps:  # wall-clock, minutes: 20 s in the fast policy
            assert o.wall_clock and o.due_at is not None
        s = await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER.id}, [DESIGNER])
        assert "first_meeting" not in open_steps(s)  # the manager introduces designer and assistant together
        s = await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
        assert "first_meeting" in open_steps(s)
        s = await complete(h, DESIGNER, StepName.first_meeting,
                           musts("老房翻新", measure_agreed=False, measure_reason="客户要和家人商量"))
        assert open_steps(s) == {"debrief"}
        s = await complete(h, MANAGER, StepName.debrief, {"findings": "ok"})
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await h.execute_update(IntakeWorkflow.close, CloseCase(actor=actor(MANAGER), outcome=Outcome.lost))
        assert isinstance(err.value.cause, ApplicationError) and err.value.cause.type == "reason_required"
        change = await h.execute_update(
            IntakeWorkflow.close, CloseCase(actor=actor(MANAGER), outcome=Outcome.lost, reason="预算不足")
        )
        s = change.head
        assert s.stage == "lost" and s.outcome_reason == "预算不足"
        assert not s.open_steps
        await h.result()


async def test_site_office_prefilled_designer_and_t1_without_assistant(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.site_office, received_by=DESIGNER)
        s = await h.query(IntakeWorkflow.state)
        assert open_steps(s) == {"reception_review"}
        await complete(h, MANAGER, StepName.reception_review, {"report": "张伟在小区办公室接待"})
        s = await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(9000).isoformat()})
        pre = next(o for o in s.open_steps if o.step == StepName.assign_designer).prefill
        assert pre["designer_id"] == DESIGNER.id
        s = await complete(h, MANAGER, StepName.assign_designer, {})
        assert open_steps(s) == {"contact", "assign_assistant"}
        await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
        await complete(h, DESIGNER, StepName.contact, {"meeting_at": soon(9000).isoformat(), "meeting_kind": "measure"})
        await until(lambda: "T1" in fakes.purposes())
        t1 = next(m for m in fakes.sms if m.purpose == "T1")
        assert not t1.include_assistant and t1.assistant_id is None
        # first meeting at the house is the measure itself: measure completes with it, no T2
        s = await complete(h, DESIGNER, StepName.first_meeting, musts("婚房"))
        assert open_steps(s) == {"debrief"}
        assert any(d.step == StepName.measure for d in s.done_steps)
        await complete(h, MANAGER, StepName.debrief, {"findings": "很好"})
        await complete(h, MANAGER, StepName.outcome, {"outcome": "signed"})
        await h.result()


async def test_office_visit_arrival_then_meeting(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        visit = soon(3 * 3600)
        h = await start_case(client, task_queue, Scenario.office_visit)
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await complete(h, MANAGER, StepName.callback, {"reached": True})
        cause = err.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "invalid_payload"
        s = await complete(h, MANAGER, StepName.callback,
                           {"reached": True, "meeting_at": visit.isoformat(), "car": "沪A12345"})
        assert open_steps(s) == {"assign_designer", "assign_assistant", "arrival"}
        for o in s.open_steps:
            if o.step in (StepName.assign_designer, StepName.assign_assistant):
                assert o.due_at is not None and o.due_at <= visit
        await complete(h, MANAGER, StepName.assign_designer, {})
        s = await complete(h, MANAGER, StepName.arrival, {"gum": True, "recorder": True, "greeted_at_door": True})
        assert "first_meeting" not in open_steps(s) and s.reception and s.reception.greeted_at_door
        s = await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
        assert "first_meeting" in open_steps(s)
        s = await complete(h, DESIGNER, StepName.first_meeting, musts("别墅", measure_at=soon(86400).isoformat()))
        assert {"measure", "debrief"} <= open_steps(s)
        assert s.car == "沪A12345"
        await complete(h, DESIGNER, StepName.measure, {"result": "no_show"})
        s = await complete(h, DESIGNER, StepName.measure, {"result": "rescheduled",
                                                            "measure_at": soon(2 * 86400).isoformat()})
        assert s.meeting("measure").at > soon(86400 + 60)  # type: ignore[union-attr]
        await complete(h, DESIGNER, StepName.measure, {"result": "done"})
        await complete(h, MANAGER, StepName.debrief, {"findings": "ok"})
        await complete(h, MANAGER, StepName.outcome, {"outcome": "lost", "reason": "选择了别家"})
        await h.result()



async def test_suggested_assistant_and_automatic_designer(client: Client, task_queue: str) -> None:
    """Where the company turns it on, the system assigns the designer by rotation; the assistant lead
    may accept the suggested assistant (fewest open cases) without naming one."""
    from domain.policy import fast_policy

    policy = fast_policy()
    policy.auto_assign_designer = True
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.walk_in, policy=policy)

        async def assigned() -> bool:
            st = await h.query(IntakeWorkflow.state)
            return st.designer is not None

        await until(assigned)
        s = await h.query(IntakeWorkflow.state)
        assert s.designer == DESIGNER and "first_meeting" not in open_steps(s)
        await until(lambda: any(a.role == "designer" for a in fakes.assignments), what="ledger row written")
        auto = next(a for a in fakes.assignments if a.role == "designer")
        assert auto.kind == "auto"
        s = await complete(h, LEAD, StepName.assign_assistant, {})
        assert s.assistant == ASSISTANT and "first_meeting" in open_steps(s)
