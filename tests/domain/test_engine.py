"""The case engine, without Temporal: whole cases, rejections, time, and properties over any sequence."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import engine
from domain.enums import CaseStatus, MeetingKind, Outcome, Role, Scenario, StepName
from domain.models import (
    AddNote,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    Reassign,
    Reschedule,
    StaffRef,
)
from domain.policy import Policy, fast_policy
from tests.support.cast import (
    ASSISTANT,
    CONSULTANT,
    DESIGNER,
    DIRECTOR,
    LEAD,
    MANAGER,
    OTHER_DESIGNER,
    SITE_LEAD,
    SOURCES,
    T0,
    actor,
)
from tests.support.examples import examples


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


def _musts(**over: Any) -> dict[str, Any]:
    """A first meeting where all four musts were done and the client was seen off."""
    return {"true_needs": "儿童房", "measure_agreed": True, "visited_site": True, "visited_material_store": True,
            "seen_off": True, **over}


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
             _musts(true_needs="三房改两房", measure_at=(later + timedelta(days=2)).isoformat()))
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


def test_a_new_designer_while_a_late_first_meeting_is_in_review_gets_the_meeting_clock_again() -> None:
    """Found by the sequence property: the review cancelled by the reassignment left the first meeting
    with no timer at all (an open case waiting for nothing)."""
    policy = fast_policy()
    d = new_case(Scenario.walk_in, policy, engine_version=2)
    s = step(d.state, StepName.assign_designer, MANAGER, T0, staff=[OTHER_DESIGNER], first_suggestion=DESIGNER).state
    s = step(s, StepName.assign_assistant, LEAD, T0, staff=[OTHER_DESIGNER], first_suggestion=ASSISTANT).state
    now = T0
    while not any(o.step == StepName.lapse_review for o in s.open_steps):  # the late meeting's chain runs out
        now += timedelta(seconds=5)
        s = engine.tick(s, now=now, policy=policy).state
    meeting = next(o for o in s.open_steps if o.step == StepName.first_meeting)
    assert meeting.next_escalation_at is None  # waiting for the manager's decision

    asked = s
    change = Reassign(actor=actor(MANAGER), role="designer", staff=OTHER_DESIGNER, reason="客户要求")
    s = engine.decide(asked, change, now=now, policy=policy).state
    assert "lapse_review" not in open_steps(s)
    meeting = next(o for o in s.open_steps if o.step == StepName.first_meeting)
    assert meeting.escalation_level == 0 and meeting.due_at is not None and meeting.due_at > now
    assert engine.agenda(s, now=now, policy=policy), "the first meeting waits for nothing"
    # a history decided before the rule (the workflow's patch says so) replays as it was decided
    before = engine.decide(asked, change.model_copy(update={"rearm_first_meeting": False}), now=now, policy=policy)
    assert next(o for o in before.state.open_steps if o.step == StepName.first_meeting).next_escalation_at is None


# --- properties over any sequence of commands ------------------------------------------------------

PEOPLE = [MANAGER, DIRECTOR, DESIGNER, OTHER_DESIGNER, ASSISTANT, LEAD, CONSULTANT, SITE_LEAD]


def _payload(name: StepName, now: datetime, rnd: st.DataObject) -> dict[str, Any]:
    later = (now + timedelta(minutes=rnd.draw(st.integers(1, 600)))).isoformat()
    options: dict[StepName, list[dict[str, Any]]] = {
        StepName.reception_review: [{"report": "客户想年底入住"}, {"report": "好", "corrections": "先递名片"}],
        StepName.callback: [{"reached": False}, {"reached": True, "meeting_at": later, "meeting_kind": "measure"},
                            {"reached": True, "meeting_at": later, "meeting_kind": "office_visit"},
                            {"reached": True, "meeting_at": later, "designer_id": OTHER_DESIGNER.id, "reason": "客户点名"}],
        StepName.assign_designer: [{}, {"designer_id": OTHER_DESIGNER.id, "reason": "客户点名"}],
        StepName.assign_assistant: [{}],
        StepName.contact: [{"meeting_at": later, "meeting_kind": "measure"},
                           {"meeting_at": later, "meeting_kind": "office_visit"}],
        StepName.arrival: [{}, {"gum": True, "recorder": True, "greeted_at_door": True}],
        StepName.first_meeting: [_musts(measure_agreed=False, measure_reason="客户要商量"),
                                 _musts(true_needs="大储物", measure_at=later),
                                 _musts(visited_site=False, site_reason="下雨", measure_at=later)],
        StepName.measure: [{"result": "done"}, {"result": "no_show"}, {"result": "rescheduled", "measure_at": later}],
        StepName.debrief: [{"findings": "先问需求"}, {"findings": "好", "designer_corrections": "少讲案例"},
                           {"findings": "好", "designer_corrections": "先问需求", "assistant_corrections": "拍照"}],
        StepName.acknowledge: [{}, {"note": "已改正"}],
        StepName.outcome: [{"outcome": "signed"}, {"outcome": "lost", "reason": "预算不够"}],
        StepName.lapse_review: [{"decision": "reclaim"}, {"decision": "extend", "reason": "客户出差", "until": later}],
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


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=st.sampled_from(list(Scenario)), version=st.sampled_from([1, 2]), data=st.data())
def test_any_sequence_keeps_the_case_sound(scenario: Scenario, version: int, data: st.DataObject) -> None:
    policy = fast_policy()
    meeting = {"meeting_at": T0 + timedelta(hours=5)} if scenario == Scenario.office_visit else {}
    receiver = data.draw(st.sampled_from([SITE_LEAD, DESIGNER, ASSISTANT]))
    received = {"received_by": receiver} if scenario == Scenario.site_office else {}
    d = new_case(scenario, policy, **meeting, **received, engine_version=version)
    s, now = d.state, T0
    purposes: list[str] = [n.purpose for n in d.change.effects.notices]
    for _ in range(data.draw(st.integers(1, 30))):
        now += timedelta(seconds=data.draw(st.integers(0, 40)))
        kind = data.draw(st.sampled_from(["step", "step", "step", "tick", "note", "reschedule", "reassign", "wrong"]))
        before = s.model_dump()
        cmd: Any
        if kind == "tick":
            d = engine.tick(s, now=now, policy=policy)
            s = d.state
        else:
            if kind == "step" and s.open_steps:
                o = data.draw(st.sampled_from(s.open_steps))
                owner = {Role.manager: MANAGER, Role.assistant_lead: LEAD}.get(o.owner_role, s.designer or DESIGNER)
                if o.step == StepName.acknowledge:
                    assert o.owner is not None
                    owner = o.owner
                cmd = CompleteStep(actor=actor(owner), step=o.step, payload=_payload(o.step, now, data),
                                   staff=[OTHER_DESIGNER], first_suggestion=DESIGNER if o.step == StepName.assign_designer
                                   else ASSISTANT)
            elif kind == "note":
                cmd = AddNote(actor=actor(data.draw(st.sampled_from(PEOPLE))), text="备注")
            elif kind == "reassign":
                if data.draw(st.booleans()):
                    cmd = Reassign(actor=actor(MANAGER), role="designer", reason="客户要求",
                                   staff=data.draw(st.sampled_from([DESIGNER, OTHER_DESIGNER])))
                else:
                    cmd = Reassign(actor=actor(MANAGER), role="assistant", staff=ASSISTANT, reason="调岗")
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
    d = step(s, StepName.first_meeting, DESIGNER, at, _musts())
    assert open_steps(d.state) == {"debrief"}
    assert [x.template for x in d.change.effects.sms] == []
    assert any(x.step == StepName.measure and x.result == "auto" for x in d.state.done_steps)
    assert d.state.meeting("measure") is not None and d.state.meeting("measure").kind == MeetingKind.measure  # type: ignore[union-attr]


# --- seed details (issue 9) ------------------------------------------------------------------------


def test_remote_contact_waits_for_the_assistant_so_t1_names_both() -> None:
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    s = step(s, StepName.callback, MANAGER, now, {"reached": True, "meeting_at": (T0 + timedelta(days=2)).isoformat()}).state
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    assert open_steps(s) == {"assign_assistant"}
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    assert open_steps(s) == {"contact"}


@pytest.mark.parametrize("scenario", [Scenario.office_visit, Scenario.walk_in])
def test_first_meeting_waits_for_designer_and_assistant(scenario: Scenario) -> None:
    meeting: dict[str, Any] = {"meeting_at": T0 + timedelta(hours=5)} if scenario == Scenario.office_visit else {}
    s = new_case(scenario, **meeting).state
    now = T0 + timedelta(seconds=1)
    if scenario == Scenario.office_visit:
        s = step(s, StepName.callback, MANAGER, now, {"reached": True}).state
        s = step(s, StepName.arrival, MANAGER, now, {"gum": True, "water": True}).state
        assert s.reception is not None and s.reception.missed() == ["录音笔", "门口迎接", "递名片"]
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    assert "first_meeting" not in open_steps(s)
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    assert "first_meeting" in open_steps(s)


def test_callback_with_the_agreed_designer_completes_the_assignment() -> None:
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    at = (T0 + timedelta(days=2)).isoformat()
    cb = {"reached": True, "meeting_at": at, "designer_level": "senior", "designer_id": OTHER_DESIGNER.id}
    with pytest.raises(engine.Rejected) as exc:
        step(s, StepName.callback, MANAGER, now, cb, staff=[OTHER_DESIGNER], first_suggestion=DESIGNER)
    assert exc.value.code == "reason_required"
    d = step(s, StepName.callback, MANAGER, now, cb | {"reason": "客户点名要吴佳"}, staff=[OTHER_DESIGNER],
             first_suggestion=DESIGNER)
    assert d.state.designer == OTHER_DESIGNER and open_steps(d.state) == {"assign_assistant"}
    assert [a.kind for a in d.change.effects.assignments] == ["assign"]
    assert d.change.effects.assignments[0].reason == "客户点名要吴佳"
    told = [n for n in d.change.effects.notices if n.recipient_id == OTHER_DESIGNER.id]
    assert told and told[0].template == "designer_assigned"


def test_reception_review_corrects_the_assistant_who_received_the_client() -> None:
    s = new_case(Scenario.site_office, received_by=ASSISTANT).state
    now = T0 + timedelta(seconds=1)
    d = step(s, StepName.reception_review, MANAGER, now, {"report": "客户看了样板间", "corrections": "要先递名片"})
    s = d.state
    ack = next(o for o in s.open_steps if o.step == StepName.acknowledge)
    assert ack.owner == ASSISTANT and ack.due_at == now + fast_policy().duration(StepName.acknowledge)
    assert any(n.recipient_id == ASSISTANT.id and "要先递名片" in n.text for n in d.change.effects.notices)
    with pytest.raises(engine.Rejected) as exc:
        step(s, StepName.acknowledge, DESIGNER, now, {})
    assert exc.value.code in ("wrong_role", "not_your_case")
    s = step(s, StepName.acknowledge, ASSISTANT, now, {"note": "已记录"}).state
    assert "acknowledge" not in open_steps(s) and s.stage == "callback"
    # the assistant who received the client is the assistant pre-filled later
    s = step(s, StepName.callback, MANAGER, now, {"reached": True, "meeting_at": (T0 + timedelta(days=2)).isoformat()}).state
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    assert next(o for o in s.open_steps if o.step == StepName.assign_assistant).prefill["assistant_id"] == ASSISTANT.id


def test_debrief_corrections_each_person_acknowledges_and_a_late_one_escalates() -> None:
    s = new_case(Scenario.walk_in).state
    now = T0 + timedelta(seconds=1)
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    s = step(s, StepName.first_meeting, DESIGNER, now, _musts(measure_agreed=False, measure_reason="再商量")).state
    d = step(s, StepName.debrief, MANAGER, now, {"findings": "f", "designer_corrections": "少讲", "assistant_corrections": "拍照"})
    s = d.state
    acks = {o.owner.id for o in s.open_steps if o.step == StepName.acknowledge and o.owner}
    assert acks == {DESIGNER.id, ASSISTANT.id}
    s = step(s, StepName.acknowledge, DESIGNER, now, {}).state
    late = now + fast_policy().duration(StepName.acknowledge) + timedelta(seconds=1)
    d = engine.tick(s, now=late, policy=fast_policy())
    ack = next(o for o in d.state.open_steps if o.step == StepName.acknowledge)
    assert ack.owner == ASSISTANT and ack.escalation_level == 1
    assert any(n.recipient_id == ASSISTANT.id and n.purpose.startswith("esc:acknowledge") for n in d.change.effects.notices)


@pytest.mark.parametrize("late_step", [StepName.contact, StepName.first_meeting])
def test_a_lapsed_designer_step_returns_the_case_to_the_manager(late_step: StepName) -> None:
    policy = fast_policy()
    s = new_case(Scenario.remote).state
    now = T0 + timedelta(seconds=1)
    at = T0 + timedelta(minutes=5)
    s = step(s, StepName.callback, MANAGER, now, {"reached": True, "meeting_at": at.isoformat()}).state
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    if late_step == StepName.first_meeting:
        s = step(s, StepName.contact, DESIGNER, now, {"meeting_at": at.isoformat(), "meeting_kind": "office_visit"}).state
    t = now
    lapses = []
    for _ in range(400):
        t += timedelta(seconds=5)
        d = engine.tick(s, now=t, policy=policy)
        s = d.state
        lapses += [a for a in d.change.effects.assignments if a.kind == "lapse"]
        if lapses:
            assert d.change.effects.sms == [], "the client is untouched by a reclaim"
            break
    assert [a.staff_id for a in lapses] == [DESIGNER.id]
    assert s.designer is None and open_steps(s) == {"assign_designer"} and s.stage == "assign_designer"
    assert s.meeting("meeting") is not None and s.meeting("meeting").status == "scheduled"  # type: ignore[union-attr]
    s = step(s, StepName.assign_designer, MANAGER, t, {"designer_id": OTHER_DESIGNER.id, "reason": "掉保重分"},
             staff=[OTHER_DESIGNER], first_suggestion=DESIGNER).state
    assert open_steps(s) == {late_step.value}
    assert all(o.owner == OTHER_DESIGNER for o in s.open_steps)


def test_first_meeting_musts_need_reasons() -> None:
    s = new_case(Scenario.walk_in).state
    now = T0 + timedelta(seconds=1)
    s = step(s, StepName.assign_designer, MANAGER, now, first_suggestion=DESIGNER).state
    s = step(s, StepName.assign_assistant, LEAD, now, first_suggestion=ASSISTANT).state
    for bad in ({"true_needs": "x"}, _musts(visited_site=False), _musts(measure_agreed=True),
                _musts(seen_off=None)):
        with pytest.raises(engine.Rejected) as exc:
            step(s, StepName.first_meeting, DESIGNER, now, bad)
        assert exc.value.code == "invalid_payload", bad


def test_walk_in_records_the_reception_checklist_at_creation() -> None:
    from domain.models import ReceptionChecklist

    d = new_case(Scenario.walk_in, reception=ReceptionChecklist(gum=True, recorder=True, greeted_at_door=True,
                                                                business_card=True, water=False))
    assert d.state.reception is not None and d.state.reception.missed() == ["安排前台倒水"]
    arrived = next(e for e in d.change.events if e.kind == "arrived")
    assert "未做：安排前台倒水" in arrived.text
