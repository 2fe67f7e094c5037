"""The company's day (SPEC §14, engine version 2), run through the engine over simulated days.

Each case ticks the engine through its week the way the workflow's timer does, on the default
calendar (Mon–Sat 09:00–18:00 Beijing time) unless a test says otherwise, and looks at what staff and
client would have received. Cases without a version (started before it) keep the old rules: the
first test shows the difference on the same case.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain import engine
from domain.enums import CaseStatus, Level, Role, Scenario, Source, StepName
from domain.models import (
    ENGINE_VERSION,
    Actor,
    CaseState,
    CompleteStep,
    IntakeInput,
    NotifyStaff,
    Reassign,
    SendSms,
    SiteReceptionMusts,
    StaffRef,
)
from domain.policy import Policy, fast_policy
from tests.domain.test_engine import (
    ASSISTANT,
    CONSULTANT,
    DESIGNER,
    DIRECTOR,
    LEAD,
    MANAGER,
    OTHER_DESIGNER,
    SOURCES,
    actor,
)

SH = ZoneInfo("Asia/Shanghai")
OTHER = OTHER_DESIGNER
OTHER_ASSISTANT = StaffRef(id=9, name="黄婷", role=Role.assistant)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[arg-type,misc]


class Week:
    """One case moved through simulated time: every notice and SMS with the moment it was decided."""

    def __init__(self, scenario: Scenario, start: datetime, policy: Policy, version: int = ENGINE_VERSION) -> None:
        self.policy = policy
        self.now = start
        d = engine.start(IntakeInput(case_id=7, source=SOURCES[scenario], scenario=scenario, created_at=start,
                                     created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=policy,
                                     engine_version=version))
        self.s: CaseState = d.state
        self.notices: list[tuple[datetime, NotifyStaff]] = []
        self.sms: list[tuple[datetime, SendSms]] = []
        self.ledger: list[str] = []
        self._take(d)

    def _take(self, d: engine.Decision) -> engine.Decision:
        self.s = d.state
        self.notices += [(self.now, n) for n in d.change.effects.notices]
        self.sms += [(self.now, m) for m in d.change.effects.sms]
        self.ledger += [a.kind for a in d.change.effects.assignments]
        return d

    def until(self, t: datetime, every: timedelta = timedelta(minutes=5)) -> None:
        """Let time pass, as the workflow's single timer would (each agenda item at its moment)."""
        while True:
            items = engine.agenda(self.s, now=self.now, policy=self.policy)
            nxt = min((i.at for i in items), default=None)
            if nxt is None or nxt > t:
                break
            self.now = max(self.now, nxt)
            self._take(engine.tick(self.s, now=self.now, policy=self.policy))
        self.now = max(self.now, t)

    def do(self, cmd: Any) -> engine.Decision:
        return self._take(engine.decide(self.s, cmd, now=self.now, policy=self.policy))

    def step(self, name: StepName, who: StaffRef, payload: dict[str, Any] | None = None, **kw: Any) -> None:
        self.do(CompleteStep(actor=actor(who), step=name, payload=payload or {}, **kw))

    def open(self) -> set[str]:
        return {o.step.value for o in self.s.open_steps}


def _office_week(version: int) -> tuple[Week, datetime]:
    """情况二: a lead Monday morning, the visit Thursday 10:00; nobody assigns before the visit."""
    w = Week(Scenario.office_visit, sh(2030, 5, 6, 10, 0), Policy(), version)
    visit = sh(2030, 5, 9, 10, 0)
    w.now = sh(2030, 5, 6, 10, 5)
    w.step(StepName.callback, MANAGER, {"reached": True, "meeting_at": visit.isoformat(), "car": "白色特斯拉"})
    w.until(visit - timedelta(minutes=1))
    return w, visit


def test_office_visit_three_days_out_pages_nobody_before_the_visit() -> None:
    w, visit = _office_week(ENGINE_VERSION)
    due = {o.step: o.due_at for o in w.s.open_steps}
    assert due[StepName.assign_designer] == visit and due[StepName.assign_assistant] == visit
    assert not [n for _, n in w.notices if n.purpose.startswith(("esc:", "stalled:"))], "paged before the visit"
    reminders = sorted((t.astimezone(SH), n.purpose.split(":")[1], n.recipient_id or n.recipient_role)
                       for t, n in w.notices if n.purpose.startswith("remind:assign"))
    # the day before and an hour before, each to the step's owner (the assistant lead by role)
    assert reminders == [
        (sh(2030, 5, 8, 10, 0), "assign_assistant#1", Role.assistant_lead),
        (sh(2030, 5, 8, 10, 0), "assign_designer#1", MANAGER.id),
        (sh(2030, 5, 9, 9, 0), "assign_assistant#1", Role.assistant_lead),
        (sh(2030, 5, 9, 9, 0), "assign_designer#1", MANAGER.id),
    ]
    # the client's reminder the day before is the manager's: no designer has spoken to the client yet
    (t4_at, t4), = [(t, m) for t, m in w.sms if m.template == "T4"]
    assert t4_at.astimezone(SH) == sh(2030, 5, 8, 10, 0)
    assert t4.designer_id is None and t4.manager_id == MANAGER.id
    # at the office the manager picks designer and assistant, after talking with the client (seed 二d)
    w.now = visit - timedelta(seconds=30)  # the client is a little early
    w.step(StepName.arrival, MANAGER, {"gum": True, "recorder": True, "greeted_at_door": True})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    assert w.open() == {"first_meeting"}
    assert all(o.escalation_level == 0 for o in w.s.done_steps if o.step.value.startswith("assign"))


def test_cases_without_a_version_keep_the_old_clock() -> None:
    w, visit = _office_week(1)
    # the old rule: due 30/60 working minutes after the callback, then the director every hour for days
    esc = [n for _, n in w.notices if n.purpose.startswith("esc:assign_designer")]
    assert len(esc) > 5 and any(n.recipient_id == DIRECTOR.id for n in esc)
    assert not [n for _, n in w.notices if n.purpose.startswith("remind:assign")]


def test_a_late_office_visit_assignment_escalates_after_the_visit() -> None:
    w, visit = _office_week(ENGINE_VERSION)
    w.until(visit + timedelta(minutes=20))
    esc = [(t, n.recipient_id) for t, n in w.notices if n.purpose.startswith("esc:assign_designer")]
    assert esc == [(visit, MANAGER.id), (visit + timedelta(minutes=15), DIRECTOR.id)]


# --- T4 spacing and the new designer's introduction -------------------------------------------------


def _contacted(meeting_at: datetime, policy: Policy | None = None) -> Week:
    """情况一 up to T1: assigned, assistant registered, the designer called and booked `meeting_at`."""
    w = Week(Scenario.remote, sh(2030, 5, 6, 10, 0), policy or Policy())
    w.now = sh(2030, 5, 6, 10, 5)
    w.step(StepName.callback, MANAGER, {"reached": True, "meeting_at": meeting_at.isoformat(), "meeting_kind": "measure"})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.now = sh(2030, 5, 6, 11, 0)
    w.step(StepName.contact, DESIGNER, {"meeting_at": meeting_at.isoformat(), "meeting_kind": "measure"})
    return w


def test_no_reminder_right_after_the_introduction_named_the_meeting() -> None:
    soon = sh(2030, 5, 7, 15, 0)  # the day after the call: T4 would come 4 hours after T1
    w = _contacted(soon)
    w.until(soon)
    assert [m.template for _, m in w.sms] == ["T1"]
    far = sh(2030, 5, 9, 15, 0)  # three days out: the day-before reminder is worth sending
    w = _contacted(far)
    w.until(far)
    assert [m.template for _, m in w.sms] == ["T1", "T4"]


def test_a_reassignment_after_t1_sends_exactly_one_introduction() -> None:
    meet = sh(2030, 5, 9, 15, 0)
    w = _contacted(meet)
    w.now = sh(2030, 5, 8, 10, 0)  # the day before the measure
    w.do(Reassign(actor=actor(MANAGER), role="designer", staff=OTHER, reason="周一鸣休假"))
    contact = next(o for o in w.s.open_steps if o.step == StepName.contact)
    assert contact.owner == OTHER and w.s.handover_from == DESIGNER
    w.step(StepName.contact, OTHER, {"meeting_at": meet.isoformat(), "meeting_kind": "measure"})
    t5 = [m for _, m in w.sms if m.template == "T5"]
    assert len(t5) == 1 and t5[0].designer_id == OTHER.id and t5[0].previous_designer_id == DESIGNER.id
    assert t5[0].assistant_id == ASSISTANT.id and w.s.handover_from is None
    # a second change is a second introduction, each once; the assistant changing is one too
    w.do(Reassign(actor=actor(MANAGER), role="assistant", staff=OTHER_ASSISTANT, reason="调岗"))
    w.step(StepName.contact, OTHER, {"meeting_at": meet.isoformat(), "meeting_kind": "measure"})
    t5 = [m for _, m in w.sms if m.template == "T5"]
    assert [(m.purpose, m.previous_designer_id, m.assistant_id) for m in t5] == [
        ("T5:contact#2", DESIGNER.id, ASSISTANT.id), ("T5:contact#3", None, OTHER_ASSISTANT.id)]
    # no T4 within a day of the introduction that named the same meeting
    w.until(meet)
    assert [m.template for _, m in w.sms] == ["T1", "T5", "T5"]


def test_a_reassignment_before_the_call_introduces_nobody_twice() -> None:
    w = Week(Scenario.remote, sh(2030, 5, 6, 10, 0), Policy())
    w.step(StepName.callback, MANAGER, {"reached": True})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.do(Reassign(actor=actor(MANAGER), role="designer", staff=OTHER, reason="客户点名"))
    meet = sh(2030, 5, 9, 15, 0)
    w.step(StepName.contact, OTHER, {"meeting_at": meet.isoformat(), "meeting_kind": "measure"})
    assert [m.template for _, m in w.sms] == ["T1"] and w.s.handover_from is None


# --- reclaim only where nobody acted ---------------------------------------------------------------


def _fast_contacted(version: int = ENGINE_VERSION) -> tuple[Week, datetime]:
    start = sh(2030, 5, 6, 10, 0)
    w = Week(Scenario.remote, start, fast_policy(), version)
    meet = start + timedelta(minutes=10)
    w.step(StepName.callback, MANAGER, {"reached": True, "meeting_at": meet.isoformat(), "meeting_kind": "measure"})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.step(StepName.contact, DESIGNER, {"meeting_at": meet.isoformat(), "meeting_kind": "measure"})
    return w, meet


def test_a_late_first_meeting_asks_the_manager_instead_of_reclaiming() -> None:
    w, meet = _fast_contacted()
    w.until(meet + timedelta(minutes=5))
    assert w.s.designer == DESIGNER and "lapse" not in w.ledger
    assert {"first_meeting", "lapse_review"} <= w.open()
    asked = [n for _, n in w.notices if n.purpose == "open:lapse_review#1"]
    assert len(asked) == 1 and asked[0].recipient_id == MANAGER.id
    fm = next(o for o in w.s.open_steps if o.step == StepName.first_meeting)
    assert fm.next_escalation_at is None  # the manager decides; the designer is not paged on
    # extending needs a reason and a time; the designer gets the new due time
    until = w.now + timedelta(hours=3)
    with pytest.raises(engine.Rejected) as exc:
        w.step(StepName.lapse_review, MANAGER, {"decision": "extend", "until": until.isoformat()})
    assert exc.value.code == "reason_required"
    w.step(StepName.lapse_review, MANAGER, {"decision": "extend", "reason": "客户出差，周末见", "until": until.isoformat()})
    fm = next(o for o in w.s.open_steps if o.step == StepName.first_meeting)
    assert fm.due_at == until and fm.escalation_level == 0 and "lapse_review" not in w.open()
    assert any(n.purpose == "extended:lapse_review#1" and n.recipient_id == DESIGNER.id for _, n in w.notices)
    # late again: asked again; this time the manager reclaims, and the next designer introduces themself
    w.until(until + timedelta(minutes=5))
    w.step(StepName.lapse_review, MANAGER, {"decision": "reclaim", "reason": "多次爽约"})
    assert w.s.designer is None and w.ledger.count("lapse") == 1 and "assign_designer" in w.open()
    w.step(StepName.assign_designer, MANAGER, {"designer_id": OTHER.id, "reason": "接手"}, staff=[OTHER],
           first_suggestion=DESIGNER)
    assert {"first_meeting", "contact"} <= w.open()
    later = w.now + timedelta(hours=1)
    w.step(StepName.contact, OTHER, {"meeting_at": later.isoformat(), "meeting_kind": "measure"})
    t5 = [m for _, m in w.sms if m.template == "T5"]
    assert len(t5) == 1 and t5[0].previous_designer_id == DESIGNER.id


def test_an_uncalled_contact_is_still_reclaimed() -> None:
    start = sh(2030, 5, 6, 10, 0)
    w = Week(Scenario.remote, start, fast_policy())
    w.step(StepName.callback, MANAGER, {"reached": True})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.until(start + timedelta(minutes=5))
    assert w.s.designer is None and w.ledger.count("lapse") == 1
    w.step(StepName.assign_designer, MANAGER, {"designer_id": OTHER.id, "reason": "接手"}, staff=[OTHER],
           first_suggestion=DESIGNER)
    w.step(StepName.contact, OTHER, {"meeting_at": (w.now + timedelta(hours=1)).isoformat(), "meeting_kind": "measure"})
    # the client never heard from the first designer: a plain introduction (T1), no T5
    assert [m.template for _, m in w.sms] == ["T1"]


def test_old_cases_still_reclaim_a_late_first_meeting() -> None:
    w, meet = _fast_contacted(version=1)
    w.until(meet + timedelta(minutes=5))
    assert w.s.designer is None and "lapse" in w.ledger and "lapse_review" not in w.open()


# --- the musts where the procedure puts them ----------------------------------------------------------


def test_at_a_home_measure_the_visits_are_invited_not_forced() -> None:
    w, meet = _fast_contacted()
    w.now = meet + timedelta(seconds=5)
    site_at = w.now + timedelta(days=2)
    with pytest.raises(engine.Rejected) as exc:
        w.step(StepName.first_meeting, DESIGNER, {"true_needs": " ", "measure_agreed": True, "visited_site": False,
                                                   "visited_material_store": False, "seen_off": True})
    assert exc.value.code == "invalid_payload"  # true needs stay required
    w.step(StepName.first_meeting, DESIGNER, {"true_needs": "三房改两房", "measure_agreed": True, "visited_site": False,
                                               "site_visit_at": site_at.isoformat(), "visited_material_store": False,
                                               "seen_off": True})
    assert w.s.status == CaseStatus.open and "debrief" in w.open()
    text = next(e.text for e in w.s.events if e.kind == "step_done" and e.step == StepName.first_meeting)
    assert "参观在施工地：已邀约" in text and "参观材料库：暂未约定" in text


def test_at_the_office_all_four_musts_stand() -> None:
    w = Week(Scenario.office_visit, sh(2030, 5, 6, 10, 0), fast_policy())
    visit = w.now + timedelta(minutes=1)
    w.step(StepName.callback, MANAGER, {"reached": True, "meeting_at": visit.isoformat()})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.step(StepName.arrival, MANAGER, {})
    musts = {"true_needs": "大储物", "measure_agreed": True, "measure_at": (visit + timedelta(days=2)).isoformat(),
             "visited_site": False, "visited_material_store": True, "seen_off": True}
    with pytest.raises(engine.Rejected) as exc:
        w.step(StepName.first_meeting, DESIGNER, musts)
    assert exc.value.code == "invalid_payload" and "site_reason" in exc.value.message
    w.step(StepName.first_meeting, DESIGNER, musts | {"site_reason": "工地今天停工"})
    assert "measure" in w.open()


# --- 情况三 b: no suitable designer on duty ----------------------------------------------------------


def test_the_receivers_four_musts_are_in_front_of_the_manager_in_the_review() -> None:
    site_lead = StaffRef(id=8, name="钱站长", role=Role.site_lead)
    musts = SiteReceptionMusts(told_better_designers=True, basic_needs="三口之家，想要开放式厨房", phone_kept=True,
                               told_will_call=False)
    d = engine.start(IntakeInput(case_id=8, source=Source.site_office, scenario=Scenario.site_office,
                                 created_at=sh(2030, 5, 6, 10, 0), created_by=site_lead, received_by=site_lead,
                                 manager=MANAGER, director=DIRECTOR, policy=Policy(), site_musts=musts,
                                 engine_version=ENGINE_VERSION))
    review = next(o for o in d.state.open_steps if o.step == StepName.reception_review)
    assert review.prefill["reception_musts"]["basic_needs"] == "三口之家，想要开放式厨房"
    assert review.prefill["missed"] == ["告诉客户设计部经理和设计师会与其联系"]
    told = next(n for n in d.change.effects.notices if n.purpose == "open:reception_review#1")
    assert "接待四必须未做：告诉客户设计部经理和设计师会与其联系" in told.text
    assert "开放式厨房" not in told.text  # the client's needs stay on the case, not in the notice channel
    event = next(e for e in d.state.events if e.kind == "site_musts")
    assert "客户基本需求：三口之家" in event.text and event.actor_id == site_lead.id
    with pytest.raises(ValueError):
        SiteReceptionMusts(told_better_designers=True, basic_needs="  ", phone_kept=True, told_will_call=True)


def test_the_engine_lets_the_managers_deputy_act_on_the_managers_case() -> None:
    deputy = StaffRef(id=30, name="吴主任", role=Role.designer, level=Level.senior)
    w = Week(Scenario.remote, sh(2030, 5, 6, 10, 0), Policy())
    as_deputy = Actor(staff_id=deputy.id, role=deputy.role, name=deputy.name, deputy_for=MANAGER.id)
    w.do(CompleteStep(actor=as_deputy, step=StepName.callback, payload={"reached": True}))
    assert {"assign_designer", "assign_assistant"} <= w.open()
    w.do(Reassign(actor=as_deputy, role="assistant", staff=ASSISTANT, reason="代经理安排"))
    # standing in for another manager gives no rights here
    stranger = Actor(staff_id=deputy.id, role=deputy.role, name=deputy.name, deputy_for=MANAGER.id + 100)
    with pytest.raises(engine.Rejected) as exc:
        w.do(CompleteStep(actor=stranger, step=StepName.assign_designer, payload={}, first_suggestion=DESIGNER))
    assert exc.value.code == "wrong_role"


def test_a_new_assistant_is_introduced_by_name_even_where_t1_names_nobody() -> None:
    w = Week(Scenario.site_office, sh(2030, 5, 6, 10, 0), Policy())
    meet = sh(2030, 5, 9, 15, 0).isoformat()
    w.step(StepName.reception_review, MANAGER, {"report": "想要开放式厨房"})
    w.step(StepName.callback, MANAGER, {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
    w.step(StepName.assign_designer, MANAGER, first_suggestion=DESIGNER)
    w.step(StepName.contact, DESIGNER, {"meeting_at": meet, "meeting_kind": "measure"})
    w.step(StepName.assign_assistant, LEAD, first_suggestion=ASSISTANT)
    w.do(Reassign(actor=actor(MANAGER), role="assistant", staff=OTHER_ASSISTANT, reason="调岗"))
    w.step(StepName.contact, DESIGNER, {"meeting_at": meet, "meeting_kind": "measure"})
    t1, t5 = (m for _, m in w.sms)
    assert t1.template == "T1" and t1.assistant_id is None  # the seed's 情况三 wording
    assert t5.template == "T5" and t5.assistant_id == OTHER_ASSISTANT.id and t5.previous_designer_id is None
