"""What the engine refuses, and how: the stable code the API maps to a status, the details, the Chinese
message staff read. Uses only domain.engine's public functions (check, decide) and the models."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain import engine
from domain.enums import Outcome, Scenario, Source, StepName
from domain.models import (
    AddNote,
    AttachRecording,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    Reassign,
    Reschedule,
    StaffRef,
)
from domain.policy import fast_policy
from tests.support.cast import (
    ASSISTANT,
    CONSULTANT,
    DESIGNER,
    DIRECTOR,
    LEAD,
    MANAGER,
    OTHER_ASSISTANT,
    OTHER_DESIGNER,
    T0,
    actor,
)

POLICY = fast_policy()
NOW = T0 + timedelta(seconds=1)
LATER = T0 + timedelta(days=2)


def _step(s: CaseState, who: StaffRef, name: StepName, payload: dict[str, Any] | None = None) -> CaseState:
    first = {StepName.assign_designer: DESIGNER, StepName.assign_assistant: ASSISTANT}.get(name)
    return engine.decide(s, CompleteStep(actor=actor(who), step=name, payload=payload or {}, first_suggestion=first),
                         now=NOW, policy=POLICY).state


def at_contact() -> CaseState:
    """A remote case with DESIGNER and ASSISTANT; the designer's contact is open."""
    s = engine.start(IntakeInput(case_id=42, source=Source.online, scenario=Scenario.remote, created_at=T0,
                                 created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=POLICY)).state
    s = _step(s, MANAGER, StepName.callback, {"reached": True, "meeting_at": LATER.isoformat()})
    s = _step(s, MANAGER, StepName.assign_designer)
    return _step(s, LEAD, StepName.assign_assistant)


def with_correction() -> CaseState:
    """A site-office case whose receiver (an assistant) has a correction to acknowledge."""
    s = engine.start(IntakeInput(case_id=43, source=Source.site_office, scenario=Scenario.site_office, created_at=T0,
                                 created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=POLICY,
                                 received_by=ASSISTANT)).state
    return _step(s, MANAGER, StepName.reception_review, {"report": "好", "corrections": "先递名片"})


def closed() -> CaseState:
    return engine.decide(at_contact(), CloseCase(actor=actor(MANAGER), outcome=Outcome.duplicate), now=NOW,
                         policy=POLICY).state


CONTACT = {"meeting_at": LATER.isoformat(), "meeting_kind": "measure"}
REFUSALS: list[tuple[str, Any, Any, str, str, dict[str, Any]]] = [
    # (what, case, command, code, message, details)
    ("a closed case takes nothing", closed, AddNote(actor=actor(MANAGER), text="还在吗"),
     "case_closed", "案件已结案（duplicate），不能再操作", {}),
    ("only the manager closes", at_contact, CloseCase(actor=actor(DIRECTOR), outcome=Outcome.duplicate),
     "wrong_role", "只有设计部经理可以结案", {"required_role": "manager"}),
    ("only the manager reassigns", at_contact,
     Reassign(actor=actor(DESIGNER), role="designer", staff=OTHER_DESIGNER, reason="忙"),
     "wrong_role", "只有设计部经理可以更换设计师或助理", {"required_role": "manager"}),
    ("only the manager attaches recordings", at_contact,
     AttachRecording(actor=actor(DESIGNER), recording_id=1, content_type="audio/mpeg", size=1),
     "wrong_role", "只有设计部经理可以上传录音", {"required_role": "manager"}),
    ("a step by the wrong role", at_contact, CompleteStep(actor=actor(MANAGER), step=StepName.contact, payload=CONTACT),
     "wrong_role", "「设计师联系客户」由设计师完成", {"required_role": "designer"}),
    ("another designer's step", at_contact,
     CompleteStep(actor=actor(OTHER_DESIGNER), step=StepName.contact, payload=CONTACT),
     "not_your_case", "这不是您负责的客户", {}),
    ("someone else's correction", with_correction,
     CompleteStep(actor=actor(OTHER_ASSISTANT), step=StepName.acknowledge, payload={}),
     "not_your_case", "没有需要您确认的纠正", {}),
    ("a note by a designer of another case", at_contact, AddNote(actor=actor(OTHER_DESIGNER), text="x"),
     "not_your_case", "只有经理和本案人员可以添加备注", {}),
    ("a note by an assistant of another case", at_contact, AddNote(actor=actor(OTHER_ASSISTANT), text="x"),
     "not_your_case", "只有经理和本案人员可以添加备注", {}),
    ("a reschedule by a designer of another case", at_contact,
     Reschedule(actor=actor(OTHER_DESIGNER), target="meeting", at=LATER),
     "not_your_case", "这不是您负责的客户", {}),
    ("a reschedule by a consultant", at_contact, Reschedule(actor=actor(CONSULTANT), target="meeting", at=LATER),
     "wrong_role", "只有经理和本案设计师、助理可以改期", {}),
]


@pytest.mark.parametrize("what, case, cmd, code, message, details", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_with_its_code_message_and_details(
    what: str, case: Any, cmd: Any, code: str, message: str, details: dict[str, Any]
) -> None:
    s = case()
    before = s.model_dump()
    with pytest.raises(engine.Rejected) as exc:
        engine.check(s, cmd, now=NOW, policy=POLICY)
    assert (exc.value.code, exc.value.message, str(exc.value)) == (code, message, message)
    assert {k: exc.value.details[k] for k in details} == details
    with pytest.raises(engine.Rejected) as again:
        engine.decide(s, cmd, now=NOW, policy=POLICY)
    assert again.value.code == code and s.model_dump() == before


@pytest.mark.parametrize("who", [MANAGER, DESIGNER, ASSISTANT, DIRECTOR, LEAD])
def test_the_case_people_may_note(who: StaffRef) -> None:
    d = engine.decide(at_contact(), AddNote(actor=actor(who), text="客户周末在家"), now=NOW, policy=POLICY)
    assert d.state.notes[-1].actor_id == who.id


@pytest.mark.parametrize("who", [MANAGER, DESIGNER, ASSISTANT])
def test_the_manager_and_the_case_people_may_reschedule(who: StaffRef) -> None:
    s = at_contact()
    s = _step(s, DESIGNER, StepName.contact, CONTACT)
    moved = LATER + timedelta(hours=1)
    d = engine.decide(s, Reschedule(actor=actor(who), target="meeting", at=moved), now=NOW, policy=POLICY)
    assert d.state.meeting("meeting").at == moved  # type: ignore[union-attr]


def test_the_corrected_person_acknowledges_their_own_correction() -> None:
    d = engine.decide(with_correction(), CompleteStep(actor=actor(ASSISTANT), step=StepName.acknowledge, payload={}),
                      now=NOW, policy=POLICY)
    assert not any(o.step == StepName.acknowledge for o in d.state.open_steps)
