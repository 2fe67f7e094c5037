"""The state editor: one decision in the making, and the edits every decision is made of.

:class:`Editor` works on a copy of a case's state with the policy and `now`: it opens and finishes
steps, writes the timeline, sets the case's members and meetings, closes the case, and decides staff
notices and client SMS once per purpose (each keyed so doing it twice does nothing). It records what
it changed, and :meth:`Editor.finish` packages that as a :class:`Decision`. Due times and escalation
plans come from :class:`domain.agenda.Schedule`, which it inherits; the step rules
(:mod:`domain.steps`) and the command checks (:mod:`domain.engine`) drive it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from domain import notices
from domain.agenda import Schedule
from domain.enums import (
    MEMBER_LABELS,
    OUTCOME_LABELS,
    ROLE_LABELS,
    CaseStatus,
    MeetingKind,
    Outcome,
    Role,
    Scenario,
    StepName,
)
from domain.graph import OWNER_ROLES, ScenarioGraph, StepSpec, graph, stage_of
from domain.models import (
    Actor,
    CaseChange,
    CaseEvent,
    CaseState,
    CompleteStep,
    DoneStep,
    Effects,
    Meeting,
    NotifyStaff,
    OpenStep,
    Reassign,
    RecordAssignment,
    RecordTransfer,
    SendSms,
    StaffRef,
    TransferCase,
)
from domain.policy import Policy
from domain.tracking import step_label


class Rejected(Exception):
    """A command the case refuses; `code` is stable (the API maps it to 409/403/422)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass
class Decision:
    """A decided change: the new state, and what changed (for the projection and the outbox)."""

    state: CaseState
    change: CaseChange


def head(state: CaseState) -> CaseState:
    """The case as it stands, without its history (done steps, events, notes, sent purposes)."""
    return state.model_copy(update={"done_steps": [], "events": [], "notes": [], "sent": [], "handled": []})


# Steps whose owner is told the moment they open (designers hear of contact when assigned; meetings
# have their own reminders; the outcome has follow-ups).
_ANNOUNCED_STEPS = {
    StepName.reception_review,
    StepName.callback,
    StepName.assign_designer,
    StepName.assign_assistant,
    StepName.debrief,
}


class Editor(Schedule):
    """One decision in the making: the state it works on, the policy, `now`, what it produced."""

    def __init__(self, state: CaseState, policy: Policy, now: datetime) -> None:
        self.s = state
        self.p = policy
        self.now = now
        self.effects = Effects()
        self.events: list[CaseEvent] = []
        self.finished: list[DoneStep] = []

    @property
    def g(self) -> ScenarioGraph:
        return graph(self.s.scenario)

    def finish(self) -> Decision:
        """Recompute what is derived, count the version, package the change."""
        self._refresh_derived()
        s = self.s
        s.version += 1
        change = CaseChange(case_id=s.case_id, version=s.version, head=head(s), finished=self.finished,
                            events=self.events, effects=self.effects)
        return Decision(s, change)

    def _refresh_derived(self) -> None:
        s = self.s
        if s.status == CaseStatus.closed and s.outcome:
            s.stage = s.outcome.value
        else:
            # No open step while a callback waits for its retry: the case is still at the callback.
            waiting = StepName.callback.value if s.callback_retry_at else s.stage
            s.stage = stage_of(s.scenario, [o.step for o in s.open_steps], waiting)
        s.overdue = any(o.overdue for o in s.open_steps)
        s.escalation_level = max((o.escalation_level for o in s.open_steps), default=0)
        dues = [o.due_at for o in s.open_steps if o.due_at is not None]
        if s.callback_retry_at is not None:
            dues.append(s.callback_retry_at)
        s.step_due_at = min(dues, default=None)

    # --- reading the case ----------------------------------------------------------------------

    def done(self, step: StepName) -> bool:
        return any(d.step == step and d.result in ("done", "auto") for d in self.s.done_steps)

    def find_open(self, step: StepName) -> OpenStep | None:
        return next((o for o in self.s.open_steps if o.step == step), None)

    def instances(self, step: StepName) -> int:
        s = self.s
        return sum(1 for d in s.done_steps if d.step == step) + sum(1 for o in s.open_steps if o.step == step)

    def owner_ref(self, spec: StepSpec) -> StaffRef | None:
        if spec.owner == "manager":
            return self.s.manager
        if spec.owner == "case_designer":
            return self.s.designer
        return None

    def designer_prefill(self) -> StaffRef | None:
        """The on-duty designer who took the client at the compound office (unless they let it lapse)."""
        s = self.s
        received = s.received_by
        if (s.scenario == Scenario.site_office and received is not None and received.role == Role.designer
                and received.id not in s.lapsed):
            return received
        return None

    def done_text(self, step: OpenStep, req: CompleteStep) -> str:
        text = f"{req.actor.name or ROLE_LABELS[req.actor.role]}完成：{step.label}"
        return text + (f"（{req.notes}）" if req.notes else "")

    def future(self, t: datetime | None, field: str) -> None:
        """Rejected unless a time the command names has a time zone and lies ahead of now."""
        if t is not None and t.utcoffset() is None:
            raise Rejected("invalid_payload", f"{field} 须带时区（如 +08:00）", field=field)
        if t is not None and t <= self.now:
            raise Rejected("time_in_past", f"{field} 必须是将来的时间", field=field)

    # --- steps and the timeline ----------------------------------------------------------------

    def event(self, kind: str, text: str, *, actor_id: int | None = None, step: StepName | None = None,
              data: dict[str, Any] | None = None) -> CaseEvent:
        self.s.event_seq = max(self.s.event_seq, self.s.events[-1].seq if self.s.events else 0) + 1
        ev = CaseEvent(seq=self.s.event_seq, at=self.now, kind=kind, text=text, actor_id=actor_id, step=step,
                       data=data or {})
        self.s.events.append(ev)
        self.events.append(ev)
        return ev

    def open_step(self, spec: StepSpec, *, attempt: int | None = None, owner: StaffRef | None = None) -> OpenStep:
        n = attempt or self.instances(spec.step) + 1
        step = OpenStep(
            key=f"{spec.step.value}#{n}",
            step=spec.step,
            label=step_label(spec.step, n),
            owner_role=owner.role if owner is not None else OWNER_ROLES[spec.owner],
            owner=owner or self.owner_ref(spec),
            attempt=n,
            opened_at=self.now,
            due_at=self.due_for(spec),
            wall_clock=spec.wall_clock,
        )
        self.plan_escalation(step)
        self.s.open_steps.append(step)
        self.event("step_opened", f"开始：{step.label}", step=spec.step, data={"key": step.key})
        if spec.step == StepName.assign_designer:
            self.prefill_designer(step)
        if spec.step == StepName.assign_assistant:
            self.prefill_assistant(step)
        if spec.step == StepName.reception_review and self.s.site_musts is not None:
            # 情况三 b: the receiver's four musts, in front of the manager who reviews the reception.
            step.prefill = {"reception_musts": self.s.site_musts.model_dump(mode="json"),
                            "missed": self.s.site_musts.missed()}
        if spec.step in _ANNOUNCED_STEPS or (spec.step == StepName.lapse_review):
            self.notify(f"open:{step.key}", notices.step_opened(self.s, step, self.local),
                        recipient=step.owner, role=step.owner_role,
                        summary=f"{step.label} → 通知{'助理负责人' if step.owner_role == Role.assistant_lead else '经理'}",
                        urgent=self.urgent(step))
        return step

    def prefill_designer(self, step: OpenStep) -> None:
        received = self.designer_prefill()
        if received is not None:
            # The on-duty designer who took the client at the compound office.
            step.prefill = {"designer_id": received.id, "designer": received.model_dump(mode="json"),
                            "reasons": ["小区办公室值班接待的设计师"]}

    def prefill_assistant(self, step: OpenStep) -> None:
        s = self.s
        received = s.received_by
        if s.scenario == Scenario.site_office and received is not None and received.role == Role.assistant:
            # The assistant designer who received the client at the compound office (seed 三a/b).
            step.prefill = {"assistant_id": received.id, "assistant": received.model_dump(mode="json"),
                            "reasons": ["在小区办公室接待客户的助理设计师"]}

    def open_acknowledge(self, person: StaffRef, text: str, source: StepName) -> OpenStep:
        """A correction for one person: a notice, and a step of theirs to confirm it (due per policy)."""
        spec = self.g.spec(StepName.acknowledge)
        assert spec is not None
        step = self.open_step(spec, owner=person)
        self.event("correction", f"经理纠正{ROLE_LABELS[person.role]}{person.name}：{text}", step=source,
                   data={"key": step.key, "staff_id": person.id, "source": source.value})
        self.notify(f"correction:{step.key}", notices.correction(
            self.s.case_id, source, text, self.local(step.due_at) if step.due_at else None),
            recipient=person, summary=f"纠正 → 通知{person.name}")
        return step

    def urgent(self, step: OpenStep) -> bool:
        """Whether notices about the step go out at once, even outside working hours (a walk-in client
        is waiting; the policy's urgent steps)."""
        return step.wall_clock or step.step in self.p.urgent_steps

    def finish_step(self, step: OpenStep, *, actor_id: int | None, result: str = "done",
                    payload: dict[str, Any] | None = None) -> DoneStep:
        now = self.now
        self.s.open_steps = [o for o in self.s.open_steps if o.key != step.key]
        done = DoneStep(
            key=step.key, step=step.step, label=step.label, attempt=step.attempt, owner_role=step.owner_role,
            opened_at=step.opened_at, due_at=step.due_at, completed_at=now, completed_by=actor_id,
            on_time=step.due_at is None or now <= step.due_at, escalation_level=step.escalation_level,
            result=result, payload=payload or {},
        )
        self.s.done_steps.append(done)
        self.finished.append(done)
        return done

    def open_unlocked(self) -> None:
        done = {d.step for d in self.s.done_steps if d.result in ("done", "auto")}
        open_now = {o.step for o in self.s.open_steps}
        for spec in self.g.unlocked_by(done):
            if spec.step in open_now:
                continue
            # A callback not reached waits for its retry timer, not for its dependencies.
            if spec.step == StepName.callback and self.s.callback_retry_at is not None:
                continue
            # The designer's own steps wait for a designer (after a reclaim, for the next one).
            if spec.owner == "case_designer" and self.s.designer is None:
                continue
            self.open_step(spec)

    # --- people and messages -------------------------------------------------------------------

    def set_member(self, role: str, staff: StaffRef) -> None:
        s = self.s
        if role == "designer":
            s.designer = staff
            for o in s.open_steps:
                if o.owner_role == Role.designer:  # the case designer's steps follow the case
                    o.owner = staff
        else:
            s.assistant = staff

    def record_assignment(self, *, role: Literal["designer", "assistant"], staff: StaffRef, actor: Actor | None,
                          kind: Literal["assign", "reassign", "auto", "lapse"], reason: str | None = None,
                          suggested_id: int | None = None) -> None:
        s = self.s
        decided_by = actor.staff_id if actor else (s.manager.id if s.manager else staff.id)
        self.effects.assignments.append(RecordAssignment(
            case_id=s.case_id, event_key=f"{role}:{s.event_seq + 1}:{staff.id}", role=role, staff_id=staff.id,
            decided_by=decided_by, kind=kind, suggested_id=suggested_id, reason=reason,
        ))

    def reassign(self, req: Reassign) -> None:
        staff = req.staff
        before = self.s.designer if req.role == "designer" else self.s.assistant
        self.record_assignment(role=req.role, staff=staff, actor=req.actor, kind="reassign", reason=req.reason)
        self.set_member(req.role, staff)
        who = MEMBER_LABELS[req.role]
        self.event("reassigned", f"{req.actor.name or '经理'}将{who}改为{staff.name}：{req.reason}",
                   actor_id=req.actor.staff_id, data={"role": req.role, "staff_id": staff.id, "reason": req.reason})
        self.notify(f"assigned:{req.role}:{staff.id}:{self.s.event_seq}",
                    notices.reassigned(self.s.case_id, who, req.reason), recipient=staff, summary=f"通知新{who}")
        if self.v2 and (before is None or before.id != staff.id):
            if req.role == "designer":
                # The manager's question about a late first meeting is answered by the change itself.
                review = self.find_open(StepName.lapse_review)
                if review is not None:
                    self.finish_step(review, actor_id=req.actor.staff_id, result="cancelled")
                    meeting = self.find_open(StepName.first_meeting)
                    spec = self.g.spec(StepName.first_meeting)
                    if meeting is not None and spec is not None and req.rearm_first_meeting:
                        # Its chain stopped at the question (ask_lapse): the new designer gets the
                        # meeting's grace from now, and its reminders and escalations again.
                        self.set_due(meeting, self.due_for(spec))
            self.hand_over(before if req.role == "designer" else None)

    def transfer(self, req: TransferCase) -> None:
        """The case moves to another branch: the ledger row, then its open steps to the new branch's people
        (the manager's steps to its manager, the designer's and assistant's to their successors, who hear
        of the case as on a reassignment; T5 follows when the client already knew the old designer)."""
        s = self.s
        before = s.branch_id
        text = f"{req.actor.name or '总部'}将客户转到{req.branch_name or req.branch}"
        text += (f"（原{req.from_branch_name}）" if req.from_branch_name else "") + f"：{req.reason}"
        ev = self.event("transferred", text, actor_id=req.actor.staff_id,
                        data={"from_branch_id": before, "to_branch_id": req.branch_id, "reason": req.reason})
        self.effects.transfers.append(RecordTransfer(
            case_id=s.case_id, event_key=f"transfer:{ev.seq}", from_branch_id=before, to_branch_id=req.branch_id,
            decided_by=req.actor.staff_id, reason=req.reason))
        s.branch_id, s.branch = req.branch_id, req.branch
        old_manager = s.manager
        s.manager = req.manager
        handed: list[OpenStep] = []
        for o in s.open_steps:
            if o.owner_role == Role.manager and (o.owner is None or old_manager is None or o.owner.id == old_manager.id):
                o.owner = req.manager
                handed.append(o)
        self.notify(f"transfer:{ev.seq}:manager",
                    notices.transferred_in(s.case_id, req.from_branch_name, req.branch_name or req.branch,
                                           req.reason, handed, self.local),
                    recipient=req.manager, role=Role.manager, summary="转分公司 → 通知新分公司经理",
                    urgent=any(self.urgent(o) for o in handed))
        for role, new in (("designer", req.designer), ("assistant", req.assistant)):
            if new is None:
                continue
            old = s.designer if role == "designer" else s.assistant
            if old is not None and old.id == new.id:
                continue
            self.reassign(Reassign(actor=req.actor, role=role, staff=new,  # type: ignore[arg-type]
                                   reason=f"转分公司：{req.reason}"))
            if old is not None:
                for o in s.open_steps:  # what was theirs alone (a correction to acknowledge) goes too
                    if o.owner is not None and o.owner.id == old.id:
                        o.owner = new
        for o in s.open_steps:
            self.relabel_escalation(o)

    def relabel_escalation(self, step: OpenStep) -> None:
        """The next rung's words after the people changed (whom it reminds or tells); its time stays."""
        if step.next_escalation is None or step.next_escalation_at is None or step.next_escalation.startswith("搁置"):
            return
        chain = self.p.chain(step.step)
        level = step.escalation_level
        target = chain.stages[level].target if level < len(chain.stages) else chain.repeat_target
        who = self.target_label(step, target)
        step.next_escalation = f"提醒{who}" if target == "owner" else f"通知{who}"

    # --- a new designer introduces themself (version 2) ------------------------------------------

    def contacted(self) -> bool:
        """Whether the case's designer has spoken to the client (called, or met at the first meeting)."""
        return self.done(StepName.contact) or self.done(StepName.first_meeting)

    def hand_over(self, previous: StaffRef | None) -> None:
        """The designer or assistant changed: once the client was contacted, the (new) designer's
        contact opens again and its completion sends T5 (once per change)."""
        s = self.s
        if not self.contacted():
            return
        if previous is not None and s.handover_from is None:
            s.handover_from = previous  # the designer the client knew, until T5 names the new one
        if s.designer is not None and self.find_open(StepName.contact) is None:
            spec = self.g.spec(StepName.contact)
            assert spec is not None
            self.open_step(spec)

    def notify(self, purpose: str, text: str, *, recipient: StaffRef | None = None, role: Role | None = None,
               summary: str, template: Literal["designer_assigned"] | None = None, urgent: bool = False) -> None:
        """A staff notice, decided once per purpose (`urgent`: not held outside working hours)."""
        if purpose in self.s.sent:
            return
        self.s.sent.append(purpose)
        self.effects.notices.append(NotifyStaff(
            case_id=self.s.case_id, purpose=purpose, recipient_id=recipient.id if recipient else None,
            recipient_role=None if recipient else (role or Role.manager), text=text, template=template,
            urgent=urgent, branch_id=None if recipient else self.s.branch_id,
        ))

    def client_sms(self, template: Literal["T1", "T2", "T3", "T4", "T5"], summary: str, *,
                   purpose: str | None = None, at: datetime | None = None, kind: MeetingKind | None = None,
                   manager_id: int | None = None, name_assistant: bool = True, signer: str = "designer",
                   announces: str | None = None, previous_designer_id: int | None = None) -> None:
        """An SMS to the client, once per purpose; names the case's designer and assistant.

        `signer` "manager": a reminder signed by the manager (no designer named); `announces` the meeting
        ("which") whose time the text tells the client, so no reminder about it follows too soon.
        """
        s = self.s
        purpose = purpose or template
        if purpose in s.sent:
            return
        s.sent.append(purpose)
        assistant = s.assistant if name_assistant else None
        by_manager = signer == "manager" and s.manager is not None
        self.effects.sms.append(SendSms(
            case_id=s.case_id, purpose=purpose, template=template,
            designer_id=s.designer.id if s.designer and not by_manager else None,
            assistant_id=assistant.id if assistant else None, include_assistant=assistant is not None,
            manager_id=s.manager.id if by_manager and s.manager else manager_id, at=at, meeting_kind=kind,
            timezone=self.p.calendar.timezone, previous_designer_id=previous_designer_id,
        ))
        if self.v2 and announces is not None and at is not None:
            s.announced = {**s.announced, f"{announces}:{at.isoformat()}": self.now}
        self.event("sms_queued", f"短信{template}：{summary}", data={"purpose": purpose})

    def tell_designer(self, staff: StaffRef) -> None:
        m = self.s.meeting("meeting")
        # Only a marker and ids here: the outbox writer adds the client's details from PostgreSQL.
        self.notify(f"assigned:designer:{staff.id}", notices.designer_assigned(self.s.case_id, m, self.local),
                    recipient=staff, summary="通知设计师新客户", template="designer_assigned")

    # --- meetings and closing ------------------------------------------------------------------

    def set_meeting(self, which: str, kind: MeetingKind, at: datetime) -> None:
        m = self.s.meeting(which)
        if m is not None and m.status == "scheduled":
            m.status = "cancelled"
        self.s.meetings.append(Meeting(which=which, kind=kind, at=at))  # type: ignore[arg-type]

    def reschedule(self, actor: Actor, which: str, at: datetime, reason: str | None) -> None:
        s = self.s
        old = s.meeting(which)
        assert old is not None
        self.set_meeting(which, old.kind, at)
        label = "量房" if which == "measure" else "首次见面"
        self.event("rescheduled", f"{actor.name or ROLE_LABELS[actor.role]}将{label}改期到 {self.local(at)}"
                   + (f"：{reason}" if reason else ""), actor_id=actor.staff_id,
                   data={"which": which, "at": at.isoformat(), "from": old.at.isoformat(), "reason": reason})
        for o in s.open_steps:
            spec = self.g.spec(o.step)
            assert spec is not None
            if spec.due == which:
                self.set_due(o, self.due_for(spec))
            elif which == "meeting" and spec.before_meeting:
                # Assignments due before the visit follow the visit (an office visit moved earlier);
                # one whose due time stays keeps its chain (restarting it would page its rungs again).
                due = self.due_for(spec, opened=o.opened_at)
                if due != o.due_at:
                    self.set_due(o, due)

    def close(self, actor: Actor, outcome: Outcome, reason: str | None) -> None:
        s = self.s
        for o in list(s.open_steps):
            self.finish_step(o, actor_id=actor.staff_id, result="cancelled")
        for m in s.meetings:
            if m.status == "scheduled":
                m.status = "cancelled"
        s.status = CaseStatus.closed
        s.outcome = outcome
        s.outcome_reason = reason
        s.closed_at = self.now
        s.callback_retry_at = None
        self.event("closed", f"结案：{OUTCOME_LABELS[outcome]}" + (f"（{reason}）" if reason else ""),
                   actor_id=actor.staff_id, data={"outcome": outcome.value, "reason": reason})
