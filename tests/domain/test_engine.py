"""The case engine, without Temporal: whole cases, rejections, time, and properties over any sequence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import engine
from domain.enums import CaseStatus, Level, MeetingKind, Outcome, Role, Scenario, Source, StepName
from domain.models import (
    Actor,
    AddNote,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    Reschedule,
    StaffRef,
)
from domain.policy import Policy, fast_policy

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
MANAGER = StaffRef(id=1, name="陈建国", role=Role.manager)
DIRECTOR = StaffRef(id=2, name="赵总", role=Role.director)
DESIGNER = StaffRef(id=3, name="周一鸣", role=Role.designer, level=Level.chief)
OTHER_DESIGNER = StaffRef(id=4, name="吴佳", role=Role.designer, level=Level.senior)
ASSISTANT = StaffRef(id=5, name="林小雨", role=Role.assistant)
LEAD = StaffRef(id=6, name="郑主管", role=Role.assistant_lead)
CONSULTANT = StaffRef(id=7, name="孙丽", role=Role.consultant)
SITE_LEAD = StaffRef(id=8, name="钱站长", role=Role.site_lead)

SOURCES = {
    Scenario.remote: Source.online,
    Scenario.office_visit: Source.marketing,
    Scenario.site_office: Source.site_office,
    Scenario.walk_in: Source.walk_in,
}


def actor(ref: StaffRef) -> Actor:
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)


def new_case(scenario: Scenario, policy: Policy | None = None, **extra: Any) -> engine.Decision:
    return engine.start(IntakeInput(
        case_id=42, source=SOURCES[scenario], scenario=scenario, created_at=T0, created_by=CONSULTANT,
        manager=MANAGER, director=DIRECTOR, policy=policy or fast_policy(), **extra,
    ))


def step(state: CaseState, name: StepName, who: StaffRef, now: datetime, payload: dict[str, Any] | None = None,
         **kw: Any) -> engine.Decision:
    cmd = CompleteStep(actor=actor(who), step=name, payload=payload or {}, **kw)
    return engine.decide(state, cmd, now=now, policy=fast_policy())


def open_steps(state: CaseState) -> set[str]:
    return {o.step.value for o in state.open_steps}


def test_remote_case_to_signed_decides_every_message_once() -> None:
    d = new_case(Scenario.remote)
    s = d.state
    assert open_steps(s) == {"callback"}
    assert [n.purpose for n in d.change.effects.notices] == ["open:callback#1"]
    assert d.change.effects.notices[0].recipient_id == MANAGER.id
    now = T0 + timedelta(seconds=2)
    meeting = T0 + timedelta(days=3)
    s = step(s, StepName.callback, MANAGER, now,
             {"reached": True, "meeting_at": meeting.isoformat(), "meeting_kind": "office_visit"}).state
    assert open_steps(s) == {"assign_designer", "assign_assistant"}
    d = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER)
    s = d.state
    assert s.designer == DESIGNER and d.change.effects.assignments[0].staff_id == DESIGNER.id
    assert d.change.effects.assignments[0].suggested_id == DESIGNER.id
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    assert open_steps(s) == {"contact"}
    d = step(s, StepName.contact, DESIGNER, now, {"meeting_at": meeting.isoformat(), "meeting_kind": "office_visit"})
    s = d.state
    assert [m.template for m in d.change.effects.sms] == ["T1"]
    assert d.change.effects.sms[0].assistant_id == ASSISTANT.id
    later = meeting + timedelta(minutes=5)
    d = step(s, StepName.first_meeting, DESIGNER, later,
             {"true_needs": "三房改两房", "measure_at": (later + timedelta(days=2)).isoformat()})
    s = d.state
    assert "T2" in [m.template for m in d.change.effects.sms]
    assert open_steps(s) == {"measure", "debrief"}
    s = step(s, StepName.measure, DESIGNER, later, {"result": "done"}).state
    d = step(s, StepName.debrief, MANAGER, later, {"findings": "需求追问不够"})
    s = d.state
    assert [m.template for m in d.change.effects.sms] == ["T3"]
    d = step(s, StepName.outcome, MANAGER, later, {"outcome": "signed"})
    assert d.state.status == CaseStatus.closed and d.state.stage == "signed"
    assert d.state.open_steps == []


def test_rejections_change_nothing() -> None:
    s = new_case(Scenario.remote).state
    before = s.model_dump()
    now = T0 + timedelta(seconds=1)
    cases: list[tuple[Any, str]] = [
        (CompleteStep(actor=actor(DESIGNER), step=StepName.callback, payload={"reached": True}), "wrong_role"),
        (CompleteStep(actor=actor(MANAGER), step=StepName.contact, payload={}), "step_not_open"),
        (CompleteStep(actor=actor(MANAGER), step=StepName.callback,
                      payload={"reached": True, "meeting_at": (T0 - timedelta(days=1)).isoformat()}), "time_in_past"),
        (CompleteStep(actor=actor(MANAGER), step=StepName.callback, payload={"reached": "maybe"}), "invalid_payload"),
        (CloseCase(actor=actor(MANAGER), outcome=Outcome.lost), "reason_required"),
        (Reschedule(actor=actor(CONSULTANT), target="meeting", at=T0 + timedelta(days=1)), "wrong_role"),
    ]
    for cmd, code in cases:
        with pytest.raises(engine.Rejected) as exc:
            engine.decide(s, cmd, now=now, policy=fast_policy())
        assert exc.value.code == code
    assert s.model_dump() == before


def test_designer_other_than_first_suggestion_needs_a_reason() -> None:
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    s = step(s, StepName.callback, MANAGER, now, {"reached": True}).state
    with pytest.raises(engine.Rejected) as exc:
        step(s, StepName.assign_designer, MANAGER, now, {"designer_id": OTHER_DESIGNER.id},
             staff=[OTHER_DESIGNER], first_suggestion=DESIGNER)
    assert exc.value.code == "reason_required"
    d = step(s, StepName.assign_designer, MANAGER, now, {"designer_id": OTHER_DESIGNER.id, "reason": "客户点名"},
             staff=[OTHER_DESIGNER], first_suggestion=DESIGNER)
    assert d.state.designer == OTHER_DESIGNER
    assert d.change.effects.assignments[0].reason == "客户点名"


def test_escalation_climbs_on_time_then_stalls_and_tells_the_director_once() -> None:
    policy = fast_policy().model_copy(update={"escalation_max_repeats": 2})
    d = new_case(Scenario.remote, policy)
    s = d.state
    due = s.open_steps[0].due_at
    assert due == T0 + timedelta(seconds=10)
    purposes: list[str] = []
    now = T0
    for _ in range(10):
        items = engine.agenda(s, now=now, policy=policy)
        if not items:
            break
        now = items[0].at
        d = engine.tick(s, now=now, policy=policy)
        s = d.state
        purposes += [n.purpose for n in d.change.effects.notices]
    assert purposes == [
        "esc:callback#1:1", "esc:callback#1:2", "esc:callback#1:3", "esc:callback#1:4", "stalled:callback#1",
    ]
    step_ = s.open_steps[0]
    assert step_.stalled and step_.next_escalation_at is None and step_.escalation_level == 4
    assert engine.agenda(s, now=now, policy=policy) == []  # nothing pages anyone any more
    # Level 2 (the director) came 5 s after due, as the chain says.
    assert s.escalation_level == 4 and s.overdue


def test_a_repeated_request_is_answered_not_applied() -> None:
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    cmd = AddNote(actor=actor(MANAGER), text="客户周末方便", request_id="k1")
    s1 = engine.decide(s, cmd, now=now, policy=fast_policy()).state
    again = engine.decide(s1, cmd, now=now, policy=fast_policy())
    assert again.change.duplicate and again.state.notes == s1.notes and len(s1.notes) == 1


def test_merge_is_idempotent_and_order_independent() -> None:
    d1 = new_case(Scenario.remote)
    now = T0 + timedelta(seconds=1)
    d2 = step(d1.state, StepName.callback, MANAGER, now, {"reached": True})
    forward = engine.merge(engine.merge(None, d1.change), d2.change)
    backward = engine.merge(engine.merge(None, d2.change), d1.change)
    twice = engine.merge(forward, d2.change)
    assert forward == backward == twice
    assert [x.key for x in forward.done_steps] == ["callback#1"]


# --- properties over any sequence of commands ------------------------------------------------------

PEOPLE = [MANAGER, DIRECTOR, DESIGNER, OTHER_DESIGNER, ASSISTANT, LEAD, CONSULTANT, SITE_LEAD]


def _payload(name: StepName, now: datetime, rnd: st.DataObject) -> dict[str, Any]:
    later = (now + timedelta(minutes=rnd.draw(st.integers(1, 600)))).isoformat()
    options: dict[StepName, list[dict[str, Any]]] = {
        StepName.reception_review: [{"report": "客户想年底入住"}],
        StepName.callback: [{"reached": False}, {"reached": True, "meeting_at": later, "meeting_kind": "measure"},
                            {"reached": True, "meeting_at": later, "meeting_kind": "office_visit"}],
        StepName.assign_designer: [{}, {"designer_id": OTHER_DESIGNER.id, "reason": "客户点名"}],
        StepName.assign_assistant: [{}],
        StepName.contact: [{"meeting_at": later, "meeting_kind": "measure"},
                           {"meeting_at": later, "meeting_kind": "office_visit"}],
        StepName.arrival: [{}],
        StepName.first_meeting: [{"true_needs": "儿童房"}, {"true_needs": "大储物", "measure_at": later}],
        StepName.measure: [{"result": "done"}, {"result": "no_show"}, {"result": "rescheduled", "measure_at": later}],
        StepName.debrief: [{"findings": "先问需求"}],
        StepName.outcome: [{"outcome": "signed"}, {"outcome": "lost", "reason": "预算不够"}],
    }
    return rnd.draw(st.sampled_from(options[name]))


def _check_invariants(s: CaseState, policy: Policy, now: datetime) -> None:
    if s.status == CaseStatus.open:
        waiting = bool(s.open_steps) or s.callback_retry_at is not None
        assert waiting, "an open case waits for nothing"
        assert engine.agenda(s, now=now, policy=policy) or all(o.stalled for o in s.open_steps), "no timer pending"
    for o in s.open_steps:
        assert o.owner_role is not None and o.due_at is not None, f"{o.key} has no owner or due time"
        if o.owner_role == Role.designer:
            assert o.owner is not None
    assert len({o.key for o in s.open_steps}) == len(s.open_steps)
    assert len(set(s.sent)) == len(s.sent)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=st.sampled_from(list(Scenario)), data=st.data())
def test_any_sequence_keeps_the_case_sound(scenario: Scenario, data: st.DataObject) -> None:
    policy = fast_policy()
    meeting = {"meeting_at": T0 + timedelta(hours=5)} if scenario == Scenario.office_visit else {}
    received = {"received_by": SITE_LEAD} if scenario == Scenario.site_office else {}
    d = new_case(scenario, policy, **meeting, **received)
    s, now = d.state, T0
    purposes: list[str] = [n.purpose for n in d.change.effects.notices]
    for _ in range(data.draw(st.integers(1, 30))):
        now += timedelta(seconds=data.draw(st.integers(0, 40)))
        kind = data.draw(st.sampled_from(["step", "step", "step", "tick", "note", "reschedule", "wrong"]))
        before = s.model_dump()
        cmd: Any
        if kind == "tick":
            d = engine.tick(s, now=now, policy=policy)
            s = d.state
        else:
            if kind == "step" and s.open_steps:
                o = data.draw(st.sampled_from(s.open_steps))
                owner = {Role.manager: MANAGER, Role.assistant_lead: LEAD}.get(o.owner_role, s.designer or DESIGNER)
                cmd = CompleteStep(actor=actor(owner), step=o.step, payload=_payload(o.step, now, data),
                                   staff=[OTHER_DESIGNER], first_suggestion=DESIGNER if o.step == StepName.assign_designer
                                   else ASSISTANT)
            elif kind == "note":
                cmd = AddNote(actor=actor(data.draw(st.sampled_from(PEOPLE))), text="备注")
            elif kind == "reschedule":
                cmd = Reschedule(actor=actor(data.draw(st.sampled_from(PEOPLE))),
                                 target=data.draw(st.sampled_from(["meeting", "measure"])),
                                 at=now + timedelta(minutes=data.draw(st.integers(-5, 300))))
            else:
                name = data.draw(st.sampled_from(list(StepName)))
                cmd = CompleteStep(actor=actor(data.draw(st.sampled_from(PEOPLE))), step=name,
                                   payload=_payload(name, now, data))
            try:
                d = engine.decide(s, cmd, now=now, policy=policy)
            except engine.Rejected:
                assert s.model_dump() == before, "a rejected command changed the case"
                continue
            s = d.state
        purposes += [n.purpose for n in d.change.effects.notices] + [m.purpose for m in d.change.effects.sms]
        _check_invariants(s, policy, now)
        if s.status == CaseStatus.closed:
            break
    assert len(purposes) == len(set(purposes)), "a message was decided twice"


def test_first_meeting_that_is_the_measure_opens_no_second_visit() -> None:
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    at = T0 + timedelta(days=1)
    s = step(s, StepName.callback, MANAGER, now, {"reached": True, "meeting_at": at.isoformat(),
                                                  "meeting_kind": "measure"}).state
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    s = step(s, StepName.contact, DESIGNER, now, {"meeting_at": at.isoformat(), "meeting_kind": "measure"}).state
    d = step(s, StepName.first_meeting, DESIGNER, at, {"true_needs": "儿童房"})
    assert open_steps(d.state) == {"debrief"}
    assert [x.template for x in d.change.effects.sms] == []
    assert any(x.step == StepName.measure and x.result == "auto" for x in d.state.done_steps)
    assert d.state.meeting("measure") is not None and d.state.meeting("measure").kind == MeetingKind.measure  # type: ignore[union-attr]
