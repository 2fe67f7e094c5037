"""Who may see and do what (SPEC §13): the one authority.

Every question of the form "may this person … this case?" is answered here, from the person (id and
role) and their relation to the case (creator, receiver, designer, assistant, former designer or
assistant, the case's manager, the manager's deputy). The engine's checks, the API's services, the SQL filters of every
list (through :func:`case_scope`, which names the relations a list may follow) and the console's
buttons all ask these functions; no role or ownership check is written anywhere else (a test greps).

Pure: no I/O, no clock. A refusal is a :class:`Refusal` with a stable code and a Chinese message;
the engine raises it as ``Rejected``, the API as 403 (or 404 when the person may not even know the
case exists: :func:`may_view`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from domain.enums import ROLE_LABELS, STEP_LABELS, Role, Scenario, StepName


class Person(Protocol):
    """Who asks: a staff id and a role (the API's user, the console's user, the engine's actor)."""

    @property
    def id(self) -> int: ...

    @property
    def role(self) -> Role: ...


class Member(Person, Protocol):
    """A person with the branches they work in (what seeing a case asks): the API's and the console's user."""

    @property
    def branches(self) -> frozenset[int] | None: ...


@dataclass(frozen=True)
class Someone:
    """A plain :class:`Member` (tests, the CLI, a row read back); `branches` None: not judged by branch."""

    id: int
    role: Role
    branches: frozenset[int] | None = None


class Relation(StrEnum):
    """How a person is tied to a case."""

    creator = "creator"  # typed the lead in
    receiver = "receiver"  # received the client (compound office, walk-in)
    designer = "designer"  # the case's designer now
    assistant = "assistant"  # the case's assistant designer now
    former_designer = "former_designer"  # was its designer before a reassignment or reclaim
    former_assistant = "former_assistant"  # was its assistant before a reassignment
    manager = "manager"  # the case's design manager
    deputy = "deputy"  # the deputy of the case's manager: acts with the manager's rights on the case


# Who sees every case (SPEC §13): they run the department.
SEE_ALL_ROLES = frozenset({Role.manager, Role.director, Role.assistant_lead})
# Who sees every client's contact details.
CONTACT_ROLES = frozenset({Role.manager, Role.director})
# The relations that make a case "theirs" for a person who does not see every case. A list follows
# these (store/queries translates each relation into its column or ledger lookup).
TIED = frozenset(Relation)
WORKING = frozenset({Relation.designer, Relation.assistant})
FORMER = frozenset({Relation.former_designer, Relation.former_assistant})
INTAKE = frozenset({Relation.creator, Relation.receiver})

# Who may type a new lead in (SPEC §7).
CREATOR_ROLES = frozenset({Role.consultant, Role.manager, Role.site_lead, Role.assistant, Role.designer})
# Who can have received a client at a compound office (seed 情况三 a/b: site lead, on-duty designer or
# an assistant designer).
SITE_RECEIVER_ROLES = frozenset({Role.site_lead, Role.designer, Role.assistant})
REPORT_ROLES = frozenset({Role.manager, Role.director})
BOARD_ROLES = REPORT_ROLES
AUDIT_ROLES = REPORT_ROLES
# Who may ask a case's workflow directly (GET /intakes/{id}?fresh=true): a live query costs a workflow
# task, so only those who judge a case as it stands this second (the board, escalations).
FRESH_ROLES = frozenset({Role.manager, Role.director})
# Who lists who issued which credential (the credential audit).
CREDENTIAL_AUDIT_ROLES = frozenset({Role.admin, Role.manager, Role.director})
# Who may decrypt payloads for the Temporal UI (the codec endpoint).
CODEC_ROLES = frozenset({Role.manager, Role.director, Role.admin})
# Who may add a note besides the people working the case.
NOTE_ROLES = frozenset({Role.manager, Role.director, Role.assistant_lead})
# Who may listen to a recording besides the people working the case and who received the client.
LISTEN_ROLES = frozenset({Role.manager, Role.director})
# Who is shown the link to a case's workflow record (the Temporal UI: an operations tool, not a staff page).
WORKFLOW_RECORD_ROLES = frozenset({Role.manager, Role.director})


class Action(StrEnum):
    """What a person may do on a case (the console shows a button for each allowed one)."""

    reschedule = "reschedule"
    reassign = "reassign"
    close = "close"
    note = "note"
    upload_recording = "upload_recording"
    listen = "listen"
    suggestions = "suggestions"
    all_notices = "all_notices"  # every staff notice of the case, not only one's own
    workflow_record = "workflow_record"  # the link to the case's workflow in the Temporal UI


@dataclass(frozen=True)
class Refusal:
    """Why a person may not: a stable code, a message for staff, details for the API's body."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseFacts:
    """Who is tied to a case: what the permission rules read of it."""

    created_by: int | None = None
    received_by: int | None = None
    manager_id: int | None = None
    designer_id: int | None = None
    assistant_id: int | None = None
    former_designers: frozenset[int] = frozenset()
    former_assistants: frozenset[int] = frozenset()
    deputy_id: int | None = None  # the case manager's deputy (staff setting)
    open: bool = True
    branch_id: int | None = None  # the case's branch (None: not known here, as in the engine)

    @classmethod
    def of_row(cls, row: Any) -> CaseFacts:
        """From a case row (a mapping or a database record with store/queries' columns; the former
        designers and assistants when read)."""
        get = row.get
        return cls(
            created_by=get("created_by"),
            received_by=get("received_by"),
            manager_id=get("manager_id"),
            designer_id=get("designer_id"),
            assistant_id=get("assistant_id"),
            former_designers=frozenset(get("former_designers") or ()),
            former_assistants=frozenset(get("former_assistants") or ()),
            deputy_id=get("manager_deputy_id"),
            open=get("status", "open") in ("open", "starting"),
            branch_id=get("branch_id"),
        )


def relations(person: Person, case: CaseFacts) -> frozenset[Relation]:
    """Every way `person` is tied to the case."""
    me = person.id
    out: set[Relation] = set()
    if case.created_by == me:
        out.add(Relation.creator)
    if case.received_by == me:
        out.add(Relation.receiver)
    if case.manager_id == me:
        out.add(Relation.manager)
    elif case.deputy_id == me:
        out.add(Relation.deputy)
    if case.designer_id == me:
        out.add(Relation.designer)
    elif me in case.former_designers:
        out.add(Relation.former_designer)
    if case.assistant_id == me:
        out.add(Relation.assistant)
    elif me in case.former_assistants:
        out.add(Relation.former_assistant)
    return frozenset(out)


# --- branches (分公司/门店) -------------------------------------------------------------------------

# Head office: who spans every branch of the chain.
ALL_BRANCH_ROLES = frozenset({Role.director, Role.admin})


def branch_reach(role: Role, home: int, extra: Iterable[int] = ()) -> frozenset[int] | None:
    """The branches a person works in: None for every branch (head office), else their home branch and
    the further branches they cover (a regional manager's list). Every other rule applies within it."""
    if role in ALL_BRANCH_ROLES:
        return None
    return frozenset({home, *extra})


# Who moves a case to another branch (the client moved): the director, or a manager who covers both
# branches (a regional manager); a branch's own manager covers one branch and so never.
TRANSFER_ROLES = frozenset({Role.director, Role.manager})


def case_branch(*, chosen: int | None, receiver_home: int | None, creator_home: int) -> int:
    """The branch a new case belongs to: the one chosen at creation, else the receiver's (the site office
    or the shop that took the client), else the creator's home branch."""
    if chosen is not None:
        return chosen
    return receiver_home if receiver_home is not None else creator_home


def may_create_in(person: Member, branch_id: int) -> Refusal | None:
    """Whether `person` may type a lead in for `branch_id`: a branch within their reach (head office and
    regional staff choose among theirs; branch staff create in their own)."""
    reach = person.branches
    if reach is None or branch_id in reach:
        return None
    return Refusal("branch_not_allowed", "您不能为该分公司建档", {"field": "branch_id"})


def serves_branch(home: int, extra: Iterable[int], branch_id: int) -> bool:
    """Whether a staff member (home branch and further branches) works in `branch_id`: may receive its
    clients, be assigned to its cases."""
    return home == branch_id or branch_id in set(extra)


def may_try_transfer(person: Person) -> Refusal | None:
    """The role part of moving a case to another branch (what the engine can judge: it knows no reach)."""
    return None if person.role in TRANSFER_ROLES else _wrong_role([Role.director], "将客户转到其他分公司")


def transfer_targets(person: Member, case: CaseFacts, branches: Iterable[int]) -> list[int]:
    """The branches (of `branches`) `person` may move the case to: what the console's transfer form offers."""
    if not case.open:
        return []
    return [b for b in branches if b != case.branch_id and may_transfer(person, case, b) is None]


def may_transfer(person: Member, case: CaseFacts, to_branch: int) -> Refusal | None:
    """Whether `person` may move the case to `to_branch`: the director; a manager covering both branches."""
    refusal = may_try_transfer(person)
    if refusal is not None:
        return refusal
    reach = person.branches
    if reach is None or (len(reach) > 1 and case.branch_id in reach and to_branch in reach):
        return None
    return Refusal("branch_not_allowed", "只有总经理或同时负责两个分公司的区域经理可以转分公司",
                   {"field": "branch"})


# Who sets up branches (names, SMS names and account, WeCom department, closing one): head office.
BRANCH_ADMIN_ROLES = frozenset({Role.admin, Role.director})


def may_manage_branches(person: Person) -> Refusal | None:
    """Listing, adding and changing branches: the admin and the director."""
    return _one_of(person, BRANCH_ADMIN_ROLES, "管理分公司")


# --- seeing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which cases a person's lists show: every case, or those tied to them by one of `relations`; in
    either case only those of `branches` (None: of every branch)."""

    everything: bool
    relations: frozenset[Relation] = frozenset()
    branches: frozenset[int] | None = None


def case_scope(person: Member) -> Scope:
    """The cases `person` may see at all (what every list filters on, in SQL): by role and relation,
    within the branches they work in (a branch's staff never see another branch's clients)."""
    reach = person.branches
    if person.role in SEE_ALL_ROLES:
        return Scope(everything=True, branches=reach)
    if person.role == Role.admin:
        return Scope(everything=False)  # manages staff and policy, reads no client
    return Scope(everything=False, relations=TIED - {Relation.manager}, branches=reach)


def in_reach(scope: Scope, branch_id: int | None) -> bool:
    """Whether a case of `branch_id` lies within the scope's branches (an unknown branch: judged elsewhere)."""
    return scope.branches is None or branch_id is None or branch_id in scope.branches


def may_view(person: Member, case: CaseFacts) -> bool:
    """Whether the case exists for `person` at all (otherwise every case route answers 404)."""
    scope = case_scope(person)
    if not in_reach(scope, case.branch_id):
        return False
    return scope.everything or bool(scope.relations & relations(person, case))


def may_see_contact(person: Member, case: CaseFacts) -> bool:
    """Whether `person` sees the client's phone, address and any phone written in free text.

    The manager and the director always; the case's designer and assistant; who typed the lead in or
    received the client until a designer is assigned. A former designer or assistant never. Nobody
    outside the case's branches.
    """
    if not in_reach(case_scope(person), case.branch_id):
        return False
    if person.role in CONTACT_ROLES:
        return True
    if not may_view(person, case):
        return False
    rel = relations(person, case)
    if rel & WORKING or Relation.deputy in rel:
        return True
    return bool(rel & INTAKE) and case.designer_id is None


def acts_as_manager(person: Person, case: CaseFacts) -> bool:
    """A manager, or the deputy of the case's manager (who acts with the manager's rights on it)."""
    return person.role == Role.manager or Relation.deputy in relations(person, case)


def works_case(person: Person, case: CaseFacts) -> bool:
    """Whether `person` is the case's designer or assistant now."""
    return bool(relations(person, case) & WORKING)


# --- doing ------------------------------------------------------------------------------------------


def _wrong_role(roles: Iterable[Role], what: str = "执行此操作") -> Refusal:
    wanted = sorted(roles, key=lambda r: list(Role).index(r))
    names = "、".join(ROLE_LABELS[r] for r in wanted)
    details: dict[str, Any] = {"required_role": wanted[0].value} if len(wanted) == 1 else {
        "required_roles": [r.value for r in wanted]}
    return Refusal("wrong_role", f"只有{names}可以{what}", details)


NOT_YOUR_CASE = Refusal("not_your_case", "这不是您负责的客户")


def may_try_step(person: Person, step: StepName, case: CaseFacts, *, owner_role: Role | None) -> Refusal | None:
    """What can be judged before the case is asked: the step's owner role, and for a designer's step
    the case's designer (who was corrected, for an acknowledgement, only the case knows)."""
    deputy = owner_role == Role.manager and Relation.deputy in relations(person, case)
    if owner_role is not None and person.role != owner_role and not deputy:
        return Refusal("wrong_role", f"「{STEP_LABELS[step]}」由{ROLE_LABELS[owner_role]}完成",
                       {"required_role": owner_role.value})
    if owner_role == Role.designer and step != StepName.acknowledge and case.designer_id != person.id:
        return NOT_YOUR_CASE
    return None


def complete_step(
    person: Person, step: StepName, case: CaseFacts, *, owner_role: Role | None, owner_id: int | None
) -> Refusal | None:
    """Whether `person` may complete the open step: its owner role; a designer's step only by the case's
    designer; a correction's acknowledgement only by whoever was corrected."""
    refusal = may_try_step(person, step, case, owner_role=owner_role)
    if refusal is None and step == StepName.acknowledge and (owner_id is None or owner_id != person.id):
        return Refusal("not_your_case", "没有需要您确认的纠正")
    return refusal


def fits_position(role: Role, position: Role) -> bool:
    """Whether a person of `role` can be assigned as the case's `position` (designer, assistant)."""
    return role == position


def may(person: Person, action: Action, case: CaseFacts) -> Refusal | None:
    """Whether `person` may take `action` on the case (None: yes).

    Whether they may see the case at all is asked first, by the API (404): :func:`may_view`.
    """
    rel = relations(person, case)
    working = bool(rel & WORKING)
    manager = acts_as_manager(person, case)
    if action == Action.reschedule:
        if manager or working:
            return None
        if person.role in (Role.designer, Role.assistant):
            return NOT_YOUR_CASE
        return Refusal("wrong_role", "只有经理和本案设计师、助理可以改期")
    if action in (Action.reassign, Action.close, Action.upload_recording, Action.suggestions):
        if manager:
            return None
        what = {Action.reassign: "更换设计师或助理", Action.close: "结案",
                Action.upload_recording: "上传录音", Action.suggestions: "查看推荐设计师"}[action]
        return _wrong_role([Role.manager], what)
    if action == Action.note:
        if person.role in NOTE_ROLES or working or manager:
            return None
        return Refusal("not_your_case", "只有经理和本案人员可以添加备注")
    if action == Action.listen:
        if person.role in LISTEN_ROLES or working or manager or Relation.receiver in rel:
            return None
        return Refusal("not_your_case", "只有本案人员、设计部经理和总经理可以听取录音")
    if action == Action.all_notices:
        return None if person.role in CONTACT_ROLES or manager else NOT_YOUR_CASE
    if action == Action.workflow_record:
        return may_open_workflow_record(person)
    raise ValueError(action)  # pragma: no cover - every Action is answered above


def allowed_actions(person: Member, case: CaseFacts) -> frozenset[Action]:
    """Every action the console may offer `person` on the case (closed cases: none that change it)."""
    if not may_view(person, case):
        return frozenset()
    changing = {Action.reschedule, Action.reassign, Action.close, Action.note, Action.upload_recording}
    return frozenset(
        a for a in Action if may(person, a, case) is None and (case.open or a not in changing)
    )


# --- beyond one case ------------------------------------------------------------------------------


def may_create(person: Person) -> Refusal | None:
    """Whether `person` may type a new lead in."""
    return None if person.role in CREATOR_ROLES else _wrong_role(CREATOR_ROLES, "新建客户")


def may_receive(role: Role, scenario: Scenario) -> bool:
    """Whether someone of `role` can have received a client in this scenario (情况三: site lead,
    on-duty designer or assistant; everywhere else anyone)."""
    return scenario != Scenario.site_office or role in SITE_RECEIVER_ROLES


def receives_by_default(person: Person, scenario: Scenario) -> bool:
    """Whether the creator is taken as the receiver when none is named (they received the client)."""
    return scenario == Scenario.walk_in or (scenario == Scenario.site_office and person.role in SITE_RECEIVER_ROLES)


def manages_new_case(person: Person, *, home: int | None = None, branch: int | None = None) -> bool:
    """Whether a case `person` creates is theirs to manage (a manager creating it in their own branch), not
    the branch's first manager's."""
    return person.role == Role.manager and home == branch


def may_read_reports(person: Person) -> Refusal | None:
    """Reports and the allocation ledger: the manager and the director."""
    return None if person.role in REPORT_ROLES else _wrong_role(REPORT_ROLES, "查看报表")


def may_see_board(person: Person) -> Refusal | None:
    """The manager's board of every open case."""
    return None if person.role in BOARD_ROLES else _wrong_role(BOARD_ROLES, "查看看板")


def may_open_workflow_record(person: Person) -> Refusal | None:
    """The link to a case's workflow record (运维): the manager and the director."""
    return None if person.role in WORKFLOW_RECORD_ROLES else _wrong_role(WORKFLOW_RECORD_ROLES, "查看流程记录")


def may_audit(person: Person) -> Refusal | None:
    """Who read clients' phones (the audit)."""
    return None if person.role in AUDIT_ROLES else _wrong_role(AUDIT_ROLES, "查看手机号查看记录")


def may_manage_staff(person: Person) -> Refusal | None:
    """Adding, editing, revoking staff: the admin."""
    return None if person.role == Role.admin else _wrong_role([Role.admin], "管理员工")


def may_use_codec(person: Person) -> Refusal | None:
    """Decrypting payloads for the Temporal UI."""
    return None if person.role in CODEC_ROLES else _wrong_role(CODEC_ROLES, "使用解密服务")


def may_read_fresh(person: Person) -> Refusal | None:
    """A live query of the case's workflow instead of the projection: the manager and the director."""
    return None if person.role in FRESH_ROLES else _wrong_role(FRESH_ROLES, "实时查询流程")


def may_audit_credentials(person: Person) -> Refusal | None:
    """Who issued which token and sign-in link: admins, the manager and the director."""
    return None if person.role in CREDENTIAL_AUDIT_ROLES else _wrong_role(CREDENTIAL_AUDIT_ROLES, "查看凭证签发记录")


def may_approve_credential(person: Person, *, requested_by: int, target_id: int) -> Refusal | None:
    """The two-person rule: a credential an admin asked for is approved by another admin, never by the
    one who asked nor by the person it is for."""
    refusal = may_manage_staff(person)
    if refusal is not None:
        return refusal
    if person.id == requested_by:
        return Refusal("same_person", "需要另一位管理员批准（双人规则）")
    if person.id == target_id:
        return Refusal("own_credential", "不能批准给自己的凭证")
    return None


def may_request_credential(person: Person, target_id: int) -> Refusal | None:
    """An admin asks for a credential for someone else (never for themself)."""
    refusal = may_manage_staff(person)
    if refusal is None and person.id == target_id:
        return Refusal("own_credential", "不能为自己申请凭证")
    return refusal


def may_change_role(person: Person, target_id: int) -> Refusal | None:
    """Nobody changes their own role (an admin cannot make themself manager)."""
    if person.id == target_id:
        return Refusal("own_role", "不能修改自己的角色")
    return None


def notices_for(person: Person) -> int | None:
    """Whose staff notices of a case `person` reads: everyone's (None) or only their own (their id)."""
    return None if person.role in CONTACT_ROLES else person.id



# --- insight (SPEC §16) -----------------------------------------------------------------------------

# Who reads every person's scorecard, the habits' figures and runs a policy what-if: they run the department.
INSIGHT_ROLES = REPORT_ROLES
# Who reads their own scorecard (and nobody else's): the people the procedure's habits are about.
SCORECARD_SELF_ROLES = frozenset({Role.designer, Role.assistant})
# Who reads the policy and its versions; who edits it.
POLICY_READ_ROLES = frozenset({Role.admin, Role.manager, Role.director})
POLICY_EDIT_ROLES = frozenset({Role.admin})

NOT_YOUR_SCORECARD = Refusal("not_your_scorecard", "只能查看自己的考核记录")


def _one_of(person: Person, roles: frozenset[Role], what: str) -> Refusal | None:
    """None when the person's role is one of `roles`, else wrong_role naming them."""
    return None if person.role in roles else _wrong_role(roles, what)


def may_read_scorecard(person: Person, staff_id: int) -> Refusal | None:
    """A person's SOP scorecard: the manager and the director everyone's; a designer or assistant their own."""
    if person.role in INSIGHT_ROLES:
        return None
    if person.role in SCORECARD_SELF_ROLES:
        return None if person.id == staff_id else NOT_YOUR_SCORECARD
    return _wrong_role(INSIGHT_ROLES | SCORECARD_SELF_ROLES, "查看考核记录")


def scorecard_scope(person: Person) -> int | None:
    """Whose scorecards a person's insight page opens on: everyone's (None) or their own (their id)."""
    return None if person.role in INSIGHT_ROLES else person.id


def may_open_insight(person: Person) -> Refusal | None:
    """The insight pages at all (the team's, or one's own scorecard)."""
    return _one_of(person, INSIGHT_ROLES | SCORECARD_SELF_ROLES, "查看考核记录")


def may_read_habits(person: Person) -> Refusal | None:
    """Which habits go with signed contracts, over the whole team: the manager and the director."""
    return _one_of(person, INSIGHT_ROLES, "查看习惯与签单分析")


# A what-if shows case numbers, dates and designers' names, no client: the admin runs one before saving an edit.
WHATIF_ROLES = INSIGHT_ROLES | POLICY_EDIT_ROLES


def may_run_whatif(person: Person) -> Refusal | None:
    """Replaying past cases under an edited policy: the manager, the director, and the admin who edits it."""
    return _one_of(person, WHATIF_ROLES, "推演规则变化")


def may_read_policy(person: Person) -> Refusal | None:
    """The policy in force and its versions."""
    return _one_of(person, POLICY_READ_ROLES, "查看规则")


def may_edit_policy(person: Person) -> Refusal | None:
    """Saving a new version of the policy: the admin."""
    return _one_of(person, POLICY_EDIT_ROLES, "修改规则")


# --- the morning summary (SPEC §15) ------------------------------------------------------------------

# Who gets the morning summary each working day (as a staff notice) and reads it (API, board).
MORNING_SUMMARY_ROLES = REPORT_ROLES


def may_read_morning_summary(person: Person) -> Refusal | None:
    """The morning summary (晨报): the manager and the director, who get it each working day."""
    return _one_of(person, MORNING_SUMMARY_ROLES, "查看晨报")


def morning_summary_roles(*, chain: bool, branches: int) -> frozenset[Role]:
    """Who gets a summary: in a chain of one branch everyone of MORNING_SUMMARY_ROLES gets the one summary;
    in a chain of several, head office (who spans every branch) the chain's (`chain`), the others the
    summary of each branch they work in."""
    if branches <= 1:
        return MORNING_SUMMARY_ROLES
    return MORNING_SUMMARY_ROLES & ALL_BRANCH_ROLES if chain else MORNING_SUMMARY_ROLES - ALL_BRANCH_ROLES


# --- reports by branch (分公司报表) ------------------------------------------------------------------

NOT_YOUR_BRANCH = Refusal("not_your_branch", "只能查看您所在分公司的报表和看板")
HEAD_OFFICE_ONLY = Refusal("head_office_only", "分公司排行只对总部（总经理、区域经理）开放")


def may_read_branch(reach: frozenset[int] | None, branch_id: int) -> Refusal | None:
    """Whether someone who works in `reach` (:func:`branch_reach`; None: every branch) may open one branch's
    reports, board and insight (``?branch=``): head office any branch, everyone else only their own."""
    return None if reach is None or branch_id in reach else NOT_YOUR_BRANCH


def report_branches(reach: frozenset[int] | None, asked: int | None = None) -> frozenset[int] | None:
    """The branches a report, the board or insight covers: the branch asked for (once :func:`may_read_branch`
    allowed it), else every branch the reader works in (None: the whole chain)."""
    return frozenset({asked}) if asked is not None else reach


def may_read_league(person: Person, reach: frozenset[int] | None) -> Refusal | None:
    """The league table of branches (GET /reports/branches): who reads reports and spans more than one branch
    (the director the whole chain, a regional manager the branches they cover); a branch's own manager not."""
    refusal = may_read_reports(person)
    if refusal is not None:
        return refusal
    return None if reach is None or len(reach) > 1 else HEAD_OFFICE_ONLY
