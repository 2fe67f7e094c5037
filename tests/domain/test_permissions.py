"""domain/permissions.py: who may see a case, its contact details, and what they may do on it (SPEC §13)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import permissions
from domain.enums import Role, Scenario, StepName
from domain.permissions import Action, CaseFacts, Relation, Someone

CREATOR, RECEIVER, MANAGER, DESIGNER, ASSISTANT, OLD_DESIGNER, OLD_ASSISTANT, STRANGER = range(1, 9)

CASE = CaseFacts(
    created_by=CREATOR, received_by=RECEIVER, manager_id=MANAGER, designer_id=DESIGNER, assistant_id=ASSISTANT,
    former_designers=frozenset({OLD_DESIGNER}), former_assistants=frozenset({OLD_ASSISTANT}),
)


def p(staff_id: int, role: Role) -> Someone:
    return Someone(staff_id, role)


def test_relations_name_every_tie() -> None:
    assert permissions.relations(p(DESIGNER, Role.designer), CASE) == {Relation.designer}
    assert permissions.relations(p(OLD_DESIGNER, Role.designer), CASE) == {Relation.former_designer}
    assert permissions.relations(p(OLD_ASSISTANT, Role.assistant), CASE) == {Relation.former_assistant}
    assert permissions.relations(p(CREATOR, Role.consultant), CASE) == {Relation.creator}
    assert permissions.relations(p(STRANGER, Role.designer), CASE) == frozenset()
    # the current designer is never also "former" (a reassignment back to them)
    back = CaseFacts(designer_id=OLD_DESIGNER, former_designers=frozenset({OLD_DESIGNER}))
    assert permissions.relations(p(OLD_DESIGNER, Role.designer), back) == {Relation.designer}


@pytest.mark.parametrize("role", [Role.manager, Role.director, Role.assistant_lead])
def test_the_department_sees_every_case(role: Role) -> None:
    assert permissions.may_view(p(STRANGER, role), CASE)
    assert permissions.case_scope(p(STRANGER, role)).everything


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        (p(DESIGNER, Role.designer), True),
        (p(ASSISTANT, Role.assistant), True),
        (p(OLD_DESIGNER, Role.designer), True),
        (p(OLD_ASSISTANT, Role.assistant), True),
        (p(CREATOR, Role.consultant), True),
        (p(RECEIVER, Role.site_lead), True),
        (p(STRANGER, Role.designer), False),
        (p(STRANGER, Role.assistant), False),
        (p(STRANGER, Role.consultant), False),
        (p(STRANGER, Role.site_lead), False),
        (p(STRANGER, Role.admin), False),
        (p(CREATOR, Role.admin), False),  # an admin manages staff and reads no client, tied or not
    ],
)
def test_others_see_only_the_cases_tied_to_them(who: Someone, visible: bool) -> None:
    assert permissions.may_view(who, CASE) is visible


def test_contact_details_by_need() -> None:
    assert permissions.may_see_contact(p(STRANGER, Role.manager), CASE)
    assert permissions.may_see_contact(p(STRANGER, Role.director), CASE)
    assert not permissions.may_see_contact(p(STRANGER, Role.assistant_lead), CASE)
    assert permissions.may_see_contact(p(DESIGNER, Role.designer), CASE)
    assert permissions.may_see_contact(p(ASSISTANT, Role.assistant), CASE)
    # a former designer reads the case, never the client's contact details
    assert not permissions.may_see_contact(p(OLD_DESIGNER, Role.designer), CASE)
    # the consultant who typed the lead in: until a designer is assigned
    assert not permissions.may_see_contact(p(CREATOR, Role.consultant), CASE)
    before = CaseFacts(created_by=CREATOR, received_by=RECEIVER)
    assert permissions.may_see_contact(p(CREATOR, Role.consultant), before)
    assert permissions.may_see_contact(p(RECEIVER, Role.site_lead), before)


def test_former_members_read_only() -> None:
    old = p(OLD_DESIGNER, Role.designer)
    assert permissions.allowed_actions(old, CASE) == frozenset()
    assert permissions.may(old, Action.note, CASE) is not None
    assert permissions.complete_step(old, StepName.contact, CASE, owner_role=Role.designer, owner_id=None) is not None


def test_what_each_may_do() -> None:
    manager = p(STRANGER, Role.manager)
    assert permissions.allowed_actions(manager, CASE) == {
        Action.reschedule, Action.reassign, Action.close, Action.note, Action.upload_recording, Action.listen,
        Action.suggestions, Action.all_notices, Action.workflow_record}
    designer = p(DESIGNER, Role.designer)
    assert permissions.allowed_actions(designer, CASE) == {Action.reschedule, Action.note, Action.listen}
    director = p(STRANGER, Role.director)
    assert permissions.allowed_actions(director, CASE) == {
        Action.note, Action.listen, Action.all_notices, Action.workflow_record}
    receiver = p(RECEIVER, Role.site_lead)
    assert permissions.allowed_actions(receiver, CASE) == {Action.listen}
    refusal = permissions.may(p(CREATOR, Role.consultant), Action.reschedule, CASE)
    assert refusal is not None and refusal.code == "wrong_role"
    refusal = permissions.may(p(OLD_DESIGNER, Role.designer), Action.reschedule, CASE)
    assert refusal is not None and refusal.code == "not_your_case"
    # a case the person may not see: nothing to offer (the API answers 404 before asking)
    assert permissions.allowed_actions(p(STRANGER, Role.designer), CASE) == frozenset()
    # a closed case: nothing that changes it, reading and listening stay
    closed = CaseFacts(**{**CASE.__dict__, "open": False})
    assert permissions.allowed_actions(manager, closed) == {
        Action.listen, Action.suggestions, Action.all_notices, Action.workflow_record}


def test_steps_by_their_owner() -> None:
    designer, other = p(DESIGNER, Role.designer), p(STRANGER, Role.designer)
    assert permissions.complete_step(designer, StepName.contact, CASE, owner_role=Role.designer, owner_id=None) is None
    refusal = permissions.complete_step(other, StepName.contact, CASE, owner_role=Role.designer, owner_id=None)
    assert refusal is not None and refusal.code == "not_your_case"
    refusal = permissions.complete_step(designer, StepName.callback, CASE, owner_role=Role.manager, owner_id=None)
    assert refusal is not None and refusal.code == "wrong_role" and refusal.details == {"required_role": "manager"}
    # a correction is acknowledged by whoever was corrected, and nobody else of their role
    ack = StepName.acknowledge
    assert permissions.complete_step(designer, ack, CASE, owner_role=Role.designer, owner_id=DESIGNER) is None
    refusal = permissions.complete_step(other, ack, CASE, owner_role=Role.designer, owner_id=DESIGNER)
    assert refusal is not None and refusal.code == "not_your_case"
    # what the API can judge before asking the case: the role, and the designer of a designer's step
    assert permissions.may_try_step(designer, ack, CASE, owner_role=Role.designer) is None
    assert permissions.may_try_step(other, StepName.first_meeting, CASE, owner_role=Role.designer) is not None


def test_beyond_one_case() -> None:
    for role in Role:
        who = p(STRANGER, role)
        assert (permissions.may_create(who) is None) is (role in permissions.CREATOR_ROLES)
        assert (permissions.may_read_reports(who) is None) is (role in (Role.manager, Role.director))
        assert (permissions.may_manage_staff(who) is None) is (role == Role.admin)
        # the workflow record (Temporal UI, 运维) is linked for the manager and the director only
        assert (permissions.may_open_workflow_record(who) is None) is (role in (Role.manager, Role.director))
    assert permissions.may_change_role(p(STRANGER, Role.admin), STRANGER) is not None
    assert permissions.may_change_role(p(STRANGER, Role.admin), DESIGNER) is None
    assert permissions.may_receive(Role.consultant, Scenario.remote)
    assert not permissions.may_receive(Role.consultant, Scenario.site_office)
    assert permissions.receives_by_default(p(STRANGER, Role.site_lead), Scenario.site_office)
    assert permissions.receives_by_default(p(STRANGER, Role.manager), Scenario.walk_in)
    assert not permissions.receives_by_default(p(STRANGER, Role.consultant), Scenario.remote)


ids = st.one_of(st.none(), st.integers(1, 6))


@given(
    who=st.integers(1, 6),
    role=st.sampled_from(list(Role)),
    created_by=ids, received_by=ids, manager_id=ids, designer_id=ids, assistant_id=ids,
    former_designers=st.frozensets(st.integers(1, 6), max_size=3),
    former_assistants=st.frozensets(st.integers(1, 6), max_size=3),
)
def test_view_contact_and_action_are_consistent(who: int, role: Role, **facts: object) -> None:
    """Whoever may see contact details or act on a case may see the case; lists follow the same scope."""
    case = CaseFacts(**facts)  # type: ignore[arg-type]
    person = p(who, role)
    view = permissions.may_view(person, case)
    scope = permissions.case_scope(person)
    assert view == (scope.everything or bool(scope.relations & permissions.relations(person, case)))
    if permissions.may_see_contact(person, case) or permissions.allowed_actions(person, case) - {Action.all_notices}:
        assert view
    if not view:
        assert not permissions.may_see_contact(person, case)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("爱人电话13912345678", "爱人电话139****5678"),
        ("电话 +86 139 1234 5678 晚上打", "电话 139****5678 晚上打"),
        ("电话：139-1234-5678。", "电话：139****5678。"),
        ("0086-13912345678", "139****5678"),
        ("(+86)13912345678", "139****5678"),
        ("订单号 2139123456789 不是手机号", "订单号 2139123456789 不是手机号"),
        ("预算 30 万，面积 120 平，2026-12-03 10:00", "预算 30 万，面积 120 平，2026-12-03 10:00"),
    ],
)
def test_phones_in_free_text_are_masked_as_people_write_them(text: str, masked: str) -> None:
    from domain.phone import mask_phones_in
    from observability import scrub

    assert mask_phones_in(text) == masked
    assert scrub(text) == masked  # the logs' second line of defence is the same masker


# --- the manager's deputy (SPEC §13, §14) -------------------------------------------------------------

DEPUTY = 20


def test_the_deputy_acts_with_the_managers_rights_on_the_managers_cases() -> None:
    case = CaseFacts(manager_id=MANAGER, designer_id=DESIGNER, deputy_id=DEPUTY)
    deputy = p(DEPUTY, Role.designer)  # a senior designer standing in for the manager
    assert permissions.relations(deputy, case) == {Relation.deputy}
    assert permissions.may_view(deputy, case) and permissions.may_see_contact(deputy, case)
    for action in (Action.reassign, Action.close, Action.suggestions, Action.reschedule, Action.note):
        assert permissions.may(deputy, action, case) is None, action
    assert permissions.complete_step(deputy, StepName.callback, case, owner_role=Role.manager, owner_id=MANAGER) is None
    # not the designer's own steps, and nothing on another manager's cases
    assert permissions.may_try_step(deputy, StepName.first_meeting, case, owner_role=Role.designer) is not None
    other = CaseFacts(manager_id=MANAGER + 100, designer_id=DESIGNER)
    assert not permissions.may_view(deputy, other)
    refusal = permissions.complete_step(deputy, StepName.callback, other, owner_role=Role.manager, owner_id=None)
    assert refusal is not None and refusal.code == "wrong_role"
    assert Relation.deputy in permissions.case_scope(deputy).relations  # lists follow the relation (SQL)


def test_a_deputy_holds_the_steps_only_while_the_manager_is_away() -> None:
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    from domain.enums import StaffStatus
    from domain.policy import CalendarPolicy
    from domain.staffing import Availability, acting_deputy

    cal = CalendarPolicy()  # Mon–Sat 09:00–18:00 Beijing time
    monday_10 = datetime(2030, 5, 6, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    manager = Availability(MANAGER, StaffStatus.active)
    deputy = Availability(DEPUTY, StaffStatus.active)
    assert acting_deputy(manager, deputy, cal, monday_10) is None  # the manager is at work
    assert acting_deputy(Availability(MANAGER, StaffStatus.on_leave), deputy, cal, monday_10) == DEPUTY
    mornings_off = {d: [(time(13, 0), time(18, 0))] for d in range(6)}
    assert acting_deputy(Availability(MANAGER, StaffStatus.active, mornings_off), deputy, cal, monday_10) == DEPUTY
    # a deputy who is away too leaves the steps with the manager; nobody without a deputy
    assert acting_deputy(Availability(MANAGER, StaffStatus.on_leave), Availability(DEPUTY, StaffStatus.on_leave),
                         cal, monday_10) is None
    assert acting_deputy(Availability(MANAGER, StaffStatus.on_leave), None, cal, monday_10) is None
