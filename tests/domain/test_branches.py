"""Branches (分公司) in the pure rules: who sees which branch's cases, where a new case belongs, who moves a
case, and what a transfer decides (domain/permissions.py, domain/engine.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import engine, permissions
from domain.enums import Role, Scenario, StepName
from domain.models import CompleteStep, IntakeInput, StaffRef, TransferCase
from domain.permissions import CaseFacts, Someone
from domain.policy import fast_policy
from tests.support.cast import CONSULTANT, DESIGNER, DIRECTOR, MANAGER, SOURCES, T0, actor

HOME, OTHER = 1, 2


def member(staff_id: int, role: Role, *branches: int) -> Someone:
    return Someone(staff_id, role, permissions.branch_reach(role, branches[0], branches[1:]))


@pytest.mark.parametrize("role", [Role.manager, Role.assistant_lead])
def test_the_department_sees_every_case_of_its_branch_only(role: Role) -> None:
    who = member(50, role, HOME)
    assert permissions.may_view(who, CaseFacts(branch_id=HOME))
    assert not permissions.may_view(who, CaseFacts(branch_id=OTHER))
    assert not permissions.may_see_contact(who, CaseFacts(branch_id=OTHER))
    assert permissions.case_scope(who).branches == {HOME}


def test_ties_hold_within_the_branch_only() -> None:
    designer = member(7, Role.designer, HOME)
    assert permissions.may_view(designer, CaseFacts(designer_id=7, branch_id=HOME))
    # transferred away: its former (or even current) designer of another branch no longer sees it
    assert not permissions.may_view(designer, CaseFacts(designer_id=7, branch_id=OTHER))
    assert not permissions.may_view(designer, CaseFacts(former_designers=frozenset({7}), branch_id=OTHER))


def test_head_office_and_a_regional_manager_span_branches() -> None:
    director = member(1, Role.director, HOME)
    regional = member(2, Role.manager, HOME, OTHER)
    for case in (CaseFacts(branch_id=HOME), CaseFacts(branch_id=OTHER)):
        assert permissions.may_view(director, case) and permissions.may_view(regional, case)
    assert permissions.case_scope(director).branches is None
    # the director and the regional manager move cases between the branches they cover; a branch's manager not
    case = CaseFacts(branch_id=HOME)
    assert permissions.may_transfer(director, case, OTHER) is None
    assert permissions.may_transfer(regional, case, OTHER) is None
    refusal = permissions.may_transfer(member(3, Role.manager, HOME), case, OTHER)
    assert refusal is not None and refusal.code == "branch_not_allowed"
    refusal = permissions.may_transfer(member(4, Role.consultant, HOME, OTHER), case, OTHER)
    assert refusal is not None and refusal.code == "wrong_role"


def test_a_new_case_belongs_to_the_chosen_then_the_receivers_then_the_creators_branch() -> None:
    assert permissions.case_branch(chosen=3, receiver_home=2, creator_home=1) == 3
    assert permissions.case_branch(chosen=None, receiver_home=2, creator_home=1) == 2
    assert permissions.case_branch(chosen=None, receiver_home=None, creator_home=1) == 1
    assert permissions.may_create_in(member(5, Role.consultant, HOME), HOME) is None
    refused = permissions.may_create_in(member(5, Role.consultant, HOME), OTHER)
    assert refused is not None and refused.code == "branch_not_allowed"
    assert permissions.may_create_in(member(6, Role.manager, HOME, OTHER), OTHER) is None
    assert permissions.manages_new_case(member(6, Role.manager, HOME, OTHER), home=HOME, branch=HOME)
    assert not permissions.manages_new_case(member(6, Role.manager, HOME, OTHER), home=HOME, branch=OTHER)


NEW_MANAGER = StaffRef(id=900, name="杭经理", role=Role.manager)
NEW_DESIGNER = StaffRef(id=901, name="杭设计", role=Role.designer)


def test_a_transfer_hands_the_open_steps_to_the_new_branchs_people() -> None:
    policy = fast_policy()
    opened = engine.start(IntakeInput(case_id=42, source=SOURCES[Scenario.remote], scenario=Scenario.remote,
                                      created_at=T0, created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR,
                                      policy=policy, branch_id=HOME, branch="main"))
    now = T0 + timedelta(seconds=1)
    s = engine.decide(opened.state, CompleteStep(actor=actor(MANAGER), step=StepName.callback, payload={
        "reached": True, "meeting_at": (T0 + timedelta(days=3)).isoformat(), "meeting_kind": "measure",
        "designer_id": DESIGNER.id, "reason": "客户点名"}, staff=[DESIGNER]), now=now, policy=policy).state
    assert s.designer == DESIGNER
    move = TransferCase(actor=actor(DIRECTOR), branch_id=OTHER, branch="hz", branch_name="杭州分公司",
                        from_branch_name="总店", manager=NEW_MANAGER, reason="客户搬家")
    # a case with a designer needs its successor; the own branch is no transfer
    with pytest.raises(engine.Rejected) as err:
        engine.check(s, move, now=now, policy=policy)
    assert err.value.code == "invalid_assignee"
    with pytest.raises(engine.Rejected) as err:
        engine.check(s, move.model_copy(update={"branch_id": HOME, "designer": NEW_DESIGNER}), now=now, policy=policy)
    assert err.value.code == "same_branch"
    with pytest.raises(engine.Rejected) as err:
        engine.check(s, move.model_copy(update={"actor": actor(CONSULTANT), "designer": NEW_DESIGNER}), now=now,
                     policy=policy)
    assert err.value.code == "wrong_role"

    d = engine.decide(s, move.model_copy(update={"designer": NEW_DESIGNER}), now=now, policy=policy)
    after = d.state
    assert (after.branch_id, after.branch) == (OTHER, "hz")
    assert after.manager == NEW_MANAGER and after.designer == NEW_DESIGNER
    ledger = d.change.effects.transfers
    assert [(t.from_branch_id, t.to_branch_id, t.decided_by, t.reason) for t in ledger] == [
        (HOME, OTHER, DIRECTOR.id, "客户搬家")]
    assert [a.staff_id for a in d.change.effects.assignments if a.kind == "reassign"] == [NEW_DESIGNER.id]
    told = {n.recipient_id for n in d.change.effects.notices}
    assert {NEW_MANAGER.id, NEW_DESIGNER.id} <= told
    assert "transferred" in {e.kind for e in d.change.events}
    # later manager steps and escalations go to the new manager
    assert all(o.owner == NEW_MANAGER for o in after.open_steps if o.owner_role == Role.manager)
    assert all(MANAGER.name not in (o.next_escalation or "") for o in after.open_steps)
