"""The case engine: every business decision about a case, as pure functions.

    start(inp)                              -> Decision   the case as it opens
    check(state, command, now, policy)      -> None       raises Rejected, changes nothing
    decide(state, command, now, policy)     -> Decision   a staff action (update)
    tick(state, now, policy)                -> Decision   whatever fell due (timers)
    auto_assign(state, staff, now, policy)  -> Decision   the system assigns the designer (轮单)
    agenda(state, now, policy)              -> [AgendaItem]  what the case waits for in time
    merge(stored, change)                   -> CaseState  the projection's copy after a change

No I/O, no clock, no randomness: `now` and the policy come in, a new state and its effects (SMS,
staff notices, ledger rows, each keyed so doing it twice does nothing) go out. The workflow only feeds
commands and fired timers in, records the result and hands the effects on; the API runs the same
functions to answer a new case at once. A rejected command raises :class:`Rejected` before anything
is changed (decisions work on a copy of the state).

This module is the engine's face and its command checks (who may do what is asked of
domain.permissions). Its parts live beside it:

    domain/steps.py    each step's rule in :data:`STEP_RULES`: payload model, check and completion
    domain/agenda.py   due times, escalation, reminders: what the case waits for in time
    domain/editor.py   the state editor the steps and timers edit the case with; Decision, Rejected
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from domain import permissions
from domain.agenda import RECLAIMABLE, AgendaItem, fire_due, pending
from domain.constants import workflow_id
from domain.editor import Decision, Editor, Rejected, head
from domain.enums import (
    STEP_LABELS,
    CaseStatus,
    Level,
    MeetingKind,
    Outcome,
    Scenario,
    StepName,
)
from domain.models import (
    Actor,
    AddNote,
    AttachRecording,
    CaseChange,
    CaseState,
    CloseCase,
    CompleteStep,
    Effects,
    IntakeInput,
    Meeting,
    OpenStep,
    Reassign,
    Reschedule,
    StaffRef,
    TransferCase,
)
from domain.permissions import Action, CaseFacts
from domain.policy import Policy
from domain.steps import STEP_RULES, checklist_text, require_reason, site_musts_text, validate_payload

Command = CompleteStep | Reschedule | Reassign | AddNote | CloseCase | AttachRecording | TransferCase

# Request ids (Idempotency-Key) a case remembers, newest last: a repeat of one is answered, not applied.
HANDLED_KEPT = 100


# --- public functions -----------------------------------------------------------------------------


def start(inp: IntakeInput) -> Decision:
    """The case as it opens: its root steps, the owners told at once. Deterministic in `inp`."""
    eng = _Engine(_new_state(inp), inp.policy, inp.created_at)
    eng.event("created", "新客户建档", actor_id=inp.created_by.id)
    if inp.returning:
        eng.event("returning", inp.returning, actor_id=inp.created_by.id)
    if inp.scenario == Scenario.walk_in:
        eng.event("arrived", "自然客户到店（建档即到店）" + checklist_text(inp.reception), actor_id=inp.created_by.id,
                  data={"reception": inp.reception.model_dump() if inp.reception else None})
    if inp.site_musts is not None:
        eng.event("site_musts", "小区办公室接待四必须" + site_musts_text(inp.site_musts),
                  actor_id=(inp.received_by or inp.created_by).id, data={"site_musts": inp.site_musts.model_dump()})
    for spec in eng.g.roots():
        eng.open_step(spec)
    if inp.repaired:
        # Same opening as the API wrote, plus one line saying the system completed the creation.
        eng.event("repaired", "系统补建：建档时流程未能启动，已自动补建，案件继续")
    return eng.finish()


def check(state: CaseState, cmd: Command, *, now: datetime, policy: Policy) -> None:
    """Raise :class:`Rejected` when the command cannot be applied now; changes nothing."""
    if cmd.request_id and cmd.request_id in state.handled:
        return
    _Engine(state, policy, now).check(cmd)


def decide(state: CaseState, cmd: Command, *, now: datetime, policy: Policy) -> Decision:
    """Apply a staff action (after :func:`check`), then whatever fell due by `now`."""
    if cmd.request_id and cmd.request_id in state.handled:
        # Already applied (a retry, possibly after continue-as-new): answer, change nothing.
        return Decision(state, CaseChange(case_id=state.case_id, version=state.version, head=head(state),
                                          duplicate=True))
    eng = _Engine(state.model_copy(deep=True), policy, now)
    eng.apply(cmd)
    if cmd.request_id:
        eng.s.handled = [*eng.s.handled, cmd.request_id][-HANDLED_KEPT:]
    fire_due(eng)
    return eng.finish()


def tick(state: CaseState, *, now: datetime, policy: Policy) -> Decision:
    """Everything on the agenda that is due by `now`: escalations, retries, reminders, follow-ups."""
    eng = _Engine(state.model_copy(deep=True), policy, now)
    fire_due(eng)
    return eng.finish()


def auto_assign(state: CaseState, staff: StaffRef, *, now: datetime, policy: Policy) -> Decision:
    """The system assigns the first suggested designer (where the company turned it on)."""
    eng = _Engine(state.model_copy(deep=True), policy, now)
    step = eng.find_open(StepName.assign_designer)
    if step is not None and eng.s.designer is None:
        eng.record_assignment(role="designer", staff=staff, actor=None, kind="auto",
                              reason="系统按轮单自动分配", suggested_id=staff.id)
        eng.finish_step(step, actor_id=None, payload={"designer_id": staff.id, "auto": True})
        eng.set_member("designer", staff)
        eng.event("designer_assigned", f"系统自动分配设计师：{staff.name}", step=step.step,
                  data={"designer_id": staff.id, "auto": True})
        eng.tell_designer(staff)
        eng.open_unlocked()
        fire_due(eng)
    return eng.finish()


def auto_assign_step(state: CaseState, policy: Policy) -> str | None:
    """The open assign_designer step the system should fill by rotation itself (its key), if any."""
    step = next((o for o in state.open_steps if o.step == StepName.assign_designer), None)
    if policy.auto_assign_designer and step is not None and not step.prefill and state.designer is None:
        return step.key
    return None


def required_level(state: CaseState | None, policy: Policy, budget: int | None) -> Level:
    """The designer level a case needs: agreed at the callback, else from the budget band."""
    return (state.designer_level if state else None) or policy.level_for_budget(budget)


def agenda(state: CaseState, *, now: datetime, policy: Policy) -> list[AgendaItem]:
    """What the case waits for in time (derived from the state alone), soonest first."""
    return sorted((AgendaItem(at, summary) for at, summary, _ in pending(_Engine(state, policy, now))),
                  key=lambda i: i.at)


def merge(stored: CaseState | None, change: CaseChange) -> CaseState:
    """The projection's full copy of a case after a change (idempotent; an older change adds only
    what it has new). Events are kept in their own table, not here."""
    base = stored if stored is not None else change.head
    newer = stored is None or change.version > stored.version
    head = change.head if newer else base
    done = list(base.done_steps)
    known = {d.key for d in done}
    done += [d for d in change.finished if d.key not in known]
    notes = list(base.notes)
    seen = {n.seq for n in notes}
    notes += [e for e in change.events if e.kind == "note" and e.seq not in seen]
    return head.model_copy(update={"done_steps": done, "notes": notes, "events": [], "sent": [], "handled": []})


def trim_events(state: CaseState, *, projected_seq: int, keep: int) -> None:
    """Drop timeline entries already in PostgreSQL, keeping the newest `keep` (bounded state)."""
    if len(state.events) <= keep:
        return
    cut = len(state.events) - keep
    state.events = [e for i, e in enumerate(state.events) if i >= cut or e.seq > projected_seq]


# --- helpers --------------------------------------------------------------------------------------


def _new_state(inp: IntakeInput) -> CaseState:
    s = CaseState(
        case_id=inp.case_id,
        workflow_id=workflow_id(inp.case_id),
        source=inp.source,
        scenario=inp.scenario,
        stage="new",
        created_at=inp.created_at,
        manager=inp.manager,
        director=inp.director,
        received_by=inp.received_by,
        compound=inp.compound,
        budget=inp.budget,
        reception=inp.reception,
        site_musts=inp.site_musts,
        engine_version=inp.engine_version,
        branch_id=inp.branch_id,
        branch=inp.branch,
    )
    if inp.scenario == Scenario.walk_in:
        # The client is at the door: the first meeting is now, at the office.
        s.meetings.append(Meeting(which="meeting", kind=MeetingKind.office_visit, at=inp.created_at))
    elif inp.meeting_at is not None:
        kind = inp.meeting_kind or (
            MeetingKind.office_visit if inp.scenario == Scenario.office_visit else MeetingKind.measure
        )
        s.meetings.append(Meeting(which="meeting", kind=kind, at=inp.meeting_at))
    return s


# --- the engine -----------------------------------------------------------------------------------


class _Engine(Editor):
    """A decision on a case: the state editor, plus each command's checks and what applying it does."""

    def check(self, cmd: Command) -> Any:
        self.check_open_case()
        if isinstance(cmd, CompleteStep):
            return self.check_complete(cmd)
        if isinstance(cmd, Reschedule):
            return self.check_reschedule(cmd)
        if isinstance(cmd, Reassign):
            self.allow(cmd.actor, Action.reassign)
            if cmd.staff.role.value != cmd.role:
                raise Rejected("invalid_assignee", "所选人员的角色不符", field="staff")
            return None
        if isinstance(cmd, AddNote):
            self.allow(cmd.actor, Action.note)
            return None
        if isinstance(cmd, AttachRecording):
            self.allow(cmd.actor, Action.upload_recording)
            if cmd.recording_id in self.s.recordings:
                raise Rejected("invalid_payload", "该录音已在案件中", field="recording_id")
            return None
        if isinstance(cmd, TransferCase):
            return self.check_transfer(cmd)
        self.allow(cmd.actor, Action.close)
        if cmd.outcome == Outcome.lost:
            require_reason(cmd.reason)
        return None

    def apply(self, cmd: Command) -> None:
        checked = self.check(cmd)
        if isinstance(cmd, CompleteStep):
            step, payload, ref = checked
            STEP_RULES[cmd.step].apply(self, step, payload, cmd, ref)
            self.open_unlocked()
        elif isinstance(cmd, Reschedule):
            self.reschedule(cmd.actor, cmd.target, cmd.at, cmd.reason)
        elif isinstance(cmd, Reassign):
            self.reassign(cmd)
        elif isinstance(cmd, AddNote):
            ev = self.event("note", cmd.text, actor_id=cmd.actor.staff_id, data={"by": cmd.actor.name})
            self.s.notes.append(ev)
        elif isinstance(cmd, TransferCase):
            self.transfer(cmd)
        elif isinstance(cmd, AttachRecording):
            self.s.recordings.append(cmd.recording_id)
            mb = cmd.size / (1024 * 1024)
            self.event("recording", f"{cmd.actor.name or '经理'}上传录音 #{cmd.recording_id}（{mb:.1f} MB），可在案件中播放",
                       actor_id=cmd.actor.staff_id,
                       data={"recording_id": cmd.recording_id, "content_type": cmd.content_type, "size": cmd.size})
        else:
            self.close(cmd.actor, cmd.outcome, cmd.reason)

    def check_complete(self, req: CompleteStep) -> tuple[OpenStep, BaseModel, StaffRef | None]:
        open_step = self.find_open(req.step)
        if req.step == StepName.acknowledge and open_step is not None:
            # Several corrections may wait at once (designer and assistant): the caller's own one.
            mine = [o for o in self.s.open_steps if o.step == req.step and o.owner and o.owner.id == req.actor.staff_id]
            if not mine:
                raise Rejected("not_your_case", "没有需要您确认的纠正")
            open_step = mine[0]
        if open_step is None:
            raise Rejected("step_not_open", f"「{STEP_LABELS[req.step]}」现在不可办理",
                           open_steps=[s.step.value for s in self.s.open_steps])
        self.check_owner(open_step, req.actor)
        payload = validate_payload(req.step, req.payload)
        ref = STEP_RULES[req.step].check(self, open_step, payload, req)
        return open_step, payload, ref

    def check_reschedule(self, req: Reschedule) -> None:
        s = self.s
        self.allow(req.actor, Action.reschedule)
        self.future(req.at, "at")
        if s.meeting(req.target) is None:
            raise Rejected("no_meeting", "还没有可改期的预约" if req.target == "meeting" else "还没有预约量房")
        if req.target == "meeting" and self.done(StepName.first_meeting):
            raise Rejected("no_meeting", "首次见面已完成，不能再改期")
        if req.target == "measure" and self.done(StepName.measure):
            raise Rejected("no_meeting", "量房已完成，不能再改期")

    def check_transfer(self, req: TransferCase) -> None:
        """A transfer names another branch and, for a designer or assistant the case has, their successor."""
        refusal = permissions.may_try_transfer(req.actor)
        if refusal is not None:
            raise Rejected(refusal.code, refusal.message, **refusal.details)
        if req.branch_id == self.s.branch_id:
            raise Rejected("same_branch", "客户已在该分公司", field="branch")
        if not req.reason.strip():
            raise Rejected("reason_required", "转分公司请填写原因", field="reason")
        for position, now, new in (("designer", self.s.designer, req.designer),
                                   ("assistant", self.s.assistant, req.assistant)):
            if new is not None and new.role.value != position:
                raise Rejected("invalid_assignee", "所选人员的角色不符", field=f"{position}_id")
            if now is not None and new is None:
                raise Rejected("invalid_assignee", f"请指定新分公司接手的{'设计师' if position == 'designer' else '助理设计师'}",
                               field=f"{position}_id")

    def check_open_case(self) -> None:
        if self.s.status == CaseStatus.closed:
            raise Rejected("case_closed", f"案件已结案（{self.s.outcome}），不能再操作")

    def facts(self, actor: Actor | None = None) -> CaseFacts:
        """Who is tied to the case, as the permission rules read it (the actor as the manager's deputy
        when the API found them to be; the case itself does not know its manager's deputy)."""
        s = self.s
        manager_id = s.manager.id if s.manager else None
        deputy = actor.staff_id if actor is not None and actor.deputy_for is not None \
            and actor.deputy_for == manager_id else None
        return CaseFacts(
            received_by=s.received_by.id if s.received_by else None,
            manager_id=manager_id,
            designer_id=s.designer.id if s.designer else None,
            assistant_id=s.assistant.id if s.assistant else None,
            deputy_id=deputy,
            open=s.status != CaseStatus.closed,
        )

    def allow(self, actor: Actor, action: Action) -> None:
        """Rejected unless domain.permissions lets the actor take the action on this case."""
        refusal = permissions.may(actor, action, self.facts(actor))
        if refusal is not None:
            raise Rejected(refusal.code, refusal.message, **refusal.details)

    def check_owner(self, step: OpenStep, actor: Actor) -> None:
        """The step's owner only (domain.permissions.complete_step)."""
        refusal = permissions.complete_step(actor, step.step, self.facts(actor), owner_role=step.owner_role,
                                            owner_id=step.owner.id if step.owner else None)
        if refusal is not None:
            raise Rejected(refusal.code, refusal.message, **refusal.details)


__all__ = [
    "AgendaItem",
    "Command",
    "Decision",
    "HANDLED_KEPT",
    "Level",
    "RECLAIMABLE",
    "Rejected",
    "STEP_RULES",
    "agenda",
    "auto_assign",
    "check",
    "combine",
    "decide",
    "head",
    "merge",
    "auto_assign_step",
    "required_level",
    "start",
    "tick",
    "trim_events",
    "validate_payload",
]


def combine(earlier: CaseChange | None, later: CaseChange) -> CaseChange:
    """Two changes of one case as one (what the workflow has not projected yet)."""
    if earlier is None:
        return later
    effects = Effects()
    effects.extend(earlier.effects)
    effects.extend(later.effects)
    return CaseChange(case_id=later.case_id, version=max(earlier.version, later.version), head=later.head,
                      finished=[*earlier.finished, *later.finished], events=[*earlier.events, *later.events],
                      effects=effects)
