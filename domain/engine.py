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

Each step has one rule in :data:`STEP_RULES`: its payload model, its check and what completing it
does, side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from domain import calendar as cal
from domain import notices
from domain.constants import workflow_id
from domain.enums import (
    OUTCOME_LABELS,
    ROLE_LABELS,
    STEP_LABELS,
    CaseStatus,
    Level,
    MeasureResult,
    MeetingKind,
    Outcome,
    Role,
    Scenario,
    StepName,
)
from domain.graph import OWNER_ROLES, ScenarioGraph, StepSpec, graph, stage_of
from domain.models import (
    RECEPTION_ITEMS,
    AcknowledgePayload,
    Actor,
    AddNote,
    ArrivalPayload,
    AssignAssistantPayload,
    AssignDesignerPayload,
    AttachRecording,
    CallbackPayload,
    CaseChange,
    CaseEvent,
    CaseState,
    CloseCase,
    CompleteStep,
    ContactPayload,
    DebriefPayload,
    DoneStep,
    Effects,
    FirstMeetingPayload,
    IntakeInput,
    MeasurePayload,
    Meeting,
    NotifyStaff,
    OpenStep,
    OutcomePayload,
    Reassign,
    ReceptionChecklist,
    ReceptionReviewPayload,
    RecordAssignment,
    Reschedule,
    SendSms,
    StaffRef,
)
from domain.policy import Policy
from domain.tracking import local_time, step_label

Command = CompleteStep | Reschedule | Reassign | AddNote | CloseCase | AttachRecording

# The designer's own steps that lapse (掉保) when late long enough: the case is reclaimed.
RECLAIMABLE = (StepName.contact, StepName.first_meeting)

# Request ids (Idempotency-Key) a case remembers, newest last: a repeat of one is answered, not applied.
HANDLED_KEPT = 100


class Rejected(Exception):
    """A command the case refuses; `code` is stable (the API maps it to 409/403/422)."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class AgendaItem:
    """Something the case waits for in time: when, and what the UI timer says."""

    at: datetime
    summary: str


@dataclass
class Decision:
    """A decided change: the new state, and what changed (for the projection and the outbox)."""

    state: CaseState
    change: CaseChange


# --- public functions -----------------------------------------------------------------------------


def start(inp: IntakeInput) -> Decision:
    """The case as it opens: its root steps, the owners told at once. Deterministic in `inp`."""
    eng = _Engine(_new_state(inp), inp.policy, inp.created_at)
    eng.event("created", "新客户建档", actor_id=inp.created_by.id)
    if inp.scenario == Scenario.walk_in:
        eng.event("arrived", "自然客户到店（建档即到店）" + _checklist_text(inp.reception), actor_id=inp.created_by.id,
                  data={"reception": inp.reception.model_dump() if inp.reception else None})
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
        head = _head(state)
        return Decision(state, CaseChange(case_id=state.case_id, version=state.version, head=head, duplicate=True))
    eng = _Engine(state.model_copy(deep=True), policy, now)
    eng.apply(cmd)
    if cmd.request_id:
        eng.s.handled = [*eng.s.handled, cmd.request_id][-HANDLED_KEPT:]
    eng.fire_due()
    return eng.finish()


def tick(state: CaseState, *, now: datetime, policy: Policy) -> Decision:
    """Everything on the agenda that is due by `now`: escalations, retries, reminders, follow-ups."""
    eng = _Engine(state.model_copy(deep=True), policy, now)
    eng.fire_due()
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
        eng.fire_due()
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
    return sorted((AgendaItem(at, summary) for at, summary, _ in _Engine(state, policy, now).agenda()),
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


def validate_payload(step: StepName, payload: dict[str, Any]) -> BaseModel:
    """A step's payload, parsed by its model (Rejected `invalid_payload` with the field errors)."""
    model = STEP_RULES[step].payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise Rejected("invalid_payload", f"「{STEP_LABELS[step]}」的内容不正确", errors=errors) from None


# --- helpers --------------------------------------------------------------------------------------


def head(state: CaseState) -> CaseState:
    """The case as it stands, without its history (done steps, events, notes, sent purposes)."""
    return _head(state)


def _head(state: CaseState) -> CaseState:
    return state.model_copy(update={"done_steps": [], "events": [], "notes": [], "sent": [], "handled": []})


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


_WHO = {"designer": "设计师", "assistant": "助理设计师", "manager": "经理"}


def _checklist_text(c: ReceptionChecklist | None) -> str:
    if c is None:
        return "；未记录接待清单"
    done = [label for key, label in RECEPTION_ITEMS.items() if getattr(c, key)]
    missed = c.missed()
    return "；接待清单 已做：" + ("、".join(done) or "无") + ("；未做：" + "、".join(missed) if missed else "")
# Steps whose owner is told the moment they open (designers hear of contact when assigned; meetings
# have their own reminders; the outcome has follow-ups).
_ANNOUNCED_STEPS = {
    StepName.reception_review,
    StepName.callback,
    StepName.assign_designer,
    StepName.assign_assistant,
    StepName.debrief,
}


# --- step rules: payload, check and completion side by side ----------------------------------------

Checker = Callable[["_Engine", OpenStep, Any, CompleteStep], StaffRef | None]
Applier = Callable[["_Engine", OpenStep, Any, CompleteStep, StaffRef | None], None]


def _no_check(eng: _Engine, step: OpenStep, p: Any, req: CompleteStep) -> StaffRef | None:
    return None


@dataclass(frozen=True)
class StepRule:
    """One step: the model its payload must fit, what it must satisfy, what completing it does."""

    payload: type[BaseModel]
    apply: Applier
    check: Checker = _no_check


def _check_reception_review(
    eng: _Engine, step: OpenStep, p: ReceptionReviewPayload, req: CompleteStep
) -> StaffRef | None:
    if p.corrections.strip() and eng.s.received_by is None:
        raise Rejected("invalid_payload", "没有记录接待人员，无法发送纠正", field="corrections")
    return None


def _apply_reception_review(
    eng: _Engine, step: OpenStep, p: ReceptionReviewPayload, req: CompleteStep, _: StaffRef | None
) -> None:
    payload = p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    eng.event("step_done", eng.done_text(step, req), actor_id=req.actor.staff_id, step=step.step, data=payload)
    received = eng.s.received_by
    if p.corrections.strip() and received is not None:
        # Seed 三c "纠正设计师的错误": whoever received the client hears it and confirms.
        eng.open_acknowledge(received, p.corrections.strip(), StepName.reception_review)


def _check_callback(eng: _Engine, step: OpenStep, p: CallbackPayload, req: CompleteStep) -> StaffRef | None:
    if p.reached:
        eng.future(p.meeting_at, "meeting_at")
        if eng.s.scenario == Scenario.office_visit and p.meeting_at is None and eng.s.meeting("meeting") is None:
            raise Rejected("invalid_payload", "客户来公司：请填写约定的到店时间 meeting_at", field="meeting_at")
    if p.designer_id is not None:
        # Seed 一a/三d: the level *and name* agreed with the client; the same rules as the assignment step.
        if not p.reached:
            raise Rejected("invalid_payload", "未接通时不能约定设计师", field="designer_id")
        spec = eng.g.spec(StepName.assign_designer)
        if spec is None or StepName.callback not in spec.after or eng.s.designer is not None:
            raise Rejected("invalid_payload", "本案的设计师不在回访时确定", field="designer_id")
        return eng.check_designer_choice(p.designer_id, p.reason, req, eng.designer_prefill() or req.first_suggestion)
    return None


def _apply_callback(
    eng: _Engine, step: OpenStep, p: CallbackPayload, req: CompleteStep, chosen: StaffRef | None
) -> None:
    s, actor, payload = eng.s, req.actor, p.model_dump(mode="json")
    if not p.reached:
        eng.finish_step(step, actor_id=actor.staff_id, result="not_reached", payload=payload)
        eng.event("callback_not_reached", f"回访未接通（第{step.attempt}次）", actor_id=actor.staff_id,
                  step=step.step, data={"notes": req.notes})
        s.callback_attempts = step.attempt
        if step.attempt < eng.p.callback_max_attempts:
            s.callback_retry_at = eng.business(eng.add(eng.now, eng.p.callback_retry_interval, False), False)
        else:
            # Out of attempts: reopen at once, already escalated to the manager's superior.
            spec = eng.g.spec(StepName.callback)
            assert spec is not None
            new = eng.open_step(spec, attempt=step.attempt + 1)
            eng.set_due(new, eng.now, level=len(eng.p.chain(StepName.callback).stages))
            eng.event("escalation", f"回访{step.attempt}次未接通 → 通知总经理", step=step.step,
                      data={"key": new.key, "level": new.escalation_level, "target": "director"})
            eng.notify(f"callback_exhausted:{step.attempt}", notices.callback_exhausted(s.case_id, step.attempt),
                       recipient=s.director, role=Role.director, summary="回访多次未接通 → 通知总经理")
        return
    eng.finish_step(step, actor_id=actor.staff_id, payload=payload)
    s.callback_retry_at = None
    s.designer_level = p.designer_level or s.designer_level
    s.car = p.car or s.car
    meeting = s.meeting("meeting")
    kind = p.meeting_kind or (meeting.kind if meeting else None) or (
        MeetingKind.office_visit if s.scenario == Scenario.office_visit else MeetingKind.measure
    )
    if p.meeting_at is not None:
        eng.set_meeting("meeting", kind, p.meeting_at)
    elif meeting is not None and meeting.kind != kind:
        meeting.kind = kind
    # The notes are kept with the event: the designer's notice reads them from PostgreSQL.
    eng.event("step_done", eng.done_text(step, req), actor_id=actor.staff_id, step=step.step,
              data=payload | {"notes": req.notes})
    if p.designer_id is not None and chosen is not None:
        # The agreed designer completes assign_designer at once (ledger row, notice, like the step).
        eng.open_unlocked()
        assign = eng.find_open(StepName.assign_designer)
        assert assign is not None
        _apply_assign_designer(eng, assign, AssignDesignerPayload(designer_id=chosen.id, reason=p.reason), req,
                               chosen)


def _check_assign(role: Literal["designer", "assistant"]) -> Checker:
    staff_role = Role.designer if role == "designer" else Role.assistant
    label = _WHO[role]

    def check(eng: _Engine, step: OpenStep, p: Any, req: CompleteStep) -> StaffRef | None:
        first = eng.first_choice(step, req, role)
        if role == "designer":
            return eng.check_designer_choice(p.designer_id, p.reason, req, first)
        chosen = getattr(p, f"{role}_id") or (first.id if first else None)
        if chosen is None:
            raise Rejected("invalid_payload", f"请选择{label} {role}_id（暂无可推荐的{label}）", field=f"{role}_id")
        assignee = eng.staff_ref(req, chosen, staff_role, first)
        if assignee is None:
            raise Rejected("invalid_assignee", f"所选{label}不存在或不可分配", field=f"{role}_id")
        return assignee

    return check


def _apply_assign_designer(
    eng: _Engine, step: OpenStep, p: AssignDesignerPayload, req: CompleteStep, ref: StaffRef | None
) -> None:
    assert ref is not None
    actor = req.actor
    first = eng.first_choice(step, req, "designer")
    eng.record_assignment(role="designer", staff=ref, actor=actor, kind="assign", reason=p.reason,
                          suggested_id=first.id if first else None)
    eng.finish_step(step, actor_id=actor.staff_id, payload=p.model_dump(mode="json") | {"designer_id": ref.id})
    eng.set_member("designer", ref)
    eng.event("designer_assigned", f"{actor.name or '经理'}分配设计师：{ref.name}", actor_id=actor.staff_id,
              step=step.step, data={"designer_id": ref.id, "suggested_id": first.id if first else None,
                                    "reason": p.reason})
    eng.tell_designer(ref)


def _apply_assign_assistant(
    eng: _Engine, step: OpenStep, p: AssignAssistantPayload, req: CompleteStep, ref: StaffRef | None
) -> None:
    assert ref is not None
    s, actor = eng.s, req.actor
    eng.record_assignment(role="assistant", staff=ref, actor=actor, kind="assign")
    eng.finish_step(step, actor_id=actor.staff_id, payload=p.model_dump(mode="json") | {"assistant_id": ref.id})
    eng.set_member("assistant", ref)
    eng.event("assistant_assigned", f"分配助理设计师并备案：{ref.name}", actor_id=actor.staff_id,
              step=step.step, data={"assistant_id": ref.id})
    eng.notify(f"assigned:assistant:{ref.id}", notices.assistant_assigned(s.case_id, s.designer),
               recipient=ref, summary="通知助理设计师")


def _check_contact(eng: _Engine, step: OpenStep, p: ContactPayload, req: CompleteStep) -> StaffRef | None:
    eng.future(p.meeting_at, "meeting_at")
    return None


def _apply_contact(eng: _Engine, step: OpenStep, p: ContactPayload, req: CompleteStep, _: StaffRef | None) -> None:
    payload = p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    eng.set_meeting("meeting", p.meeting_kind, p.meeting_at)
    eng.event("step_done", eng.done_text(step, req), actor_id=req.actor.staff_id, step=step.step, data=payload)
    eng.client_sms("T1", "设计师自我介绍短信", at=p.meeting_at, kind=p.meeting_kind,
                   name_assistant=eng.g.t1_names_assistant)


def _check_first_meeting(eng: _Engine, step: OpenStep, p: FirstMeetingPayload, req: CompleteStep) -> StaffRef | None:
    eng.future(p.measure_at, "measure_at")
    meeting = eng.s.meeting("meeting")
    was_measure = meeting is not None and meeting.kind == MeetingKind.measure
    if p.measure_agreed and p.measure_at is None and not was_measure:
        raise Rejected("invalid_payload", "已约定量房，请填写量房时间 measure_at", field="measure_at")
    return None


def _apply_first_meeting(
    eng: _Engine, step: OpenStep, p: FirstMeetingPayload, req: CompleteStep, _: StaffRef | None
) -> None:
    s, actor, payload = eng.s, req.actor, p.model_dump(mode="json")
    eng.finish_step(step, actor_id=actor.staff_id, payload=payload)
    meeting = s.meeting("meeting")
    if meeting:
        meeting.status = "done"
    musts = "；".join(
        f"{label}：{'是' if getattr(p, flag) else '否（' + (getattr(p, why) or '') + '）'}"
        for flag, why, label in (("measure_agreed", "measure_reason", "约定量房"),
                                 ("visited_site", "site_reason", "参观在施工地"),
                                 ("visited_material_store", "material_store_reason", "参观材料库"))
    )
    eng.event("step_done", eng.done_text(step, req) + f"；{musts}；送客户到门外：{'是' if p.seen_off else '否'}",
              actor_id=actor.staff_id, step=step.step, data=payload)
    spec = eng.g.spec(StepName.measure)
    assert spec is not None
    if meeting is not None and meeting.kind == MeetingKind.measure:
        # The first meeting was the measure itself: no second visit opens.
        s.meetings.append(Meeting(which="measure", kind=MeetingKind.measure, at=meeting.at, status="done"))
        eng.finish_step(eng.open_step(spec), actor_id=actor.staff_id, result="auto",
                        payload={"result": "done", "with": "first_meeting"})
        eng.event("measure_done", "首次见面即量房，量房完成", actor_id=actor.staff_id, step=StepName.measure)
    elif p.measure_at is not None:
        eng.set_meeting("measure", MeetingKind.measure, p.measure_at)
        eng.open_step(spec)
        eng.client_sms("T2", "量房预约确认短信", at=p.measure_at, kind=MeetingKind.measure)


def _check_measure(eng: _Engine, step: OpenStep, p: MeasurePayload, req: CompleteStep) -> StaffRef | None:
    if p.result == MeasureResult.rescheduled:
        if p.measure_at is None:
            raise Rejected("invalid_payload", "改期请填写新的量房时间 measure_at", field="measure_at")
        eng.future(p.measure_at, "measure_at")
    return None


def _apply_measure(eng: _Engine, step: OpenStep, p: MeasurePayload, req: CompleteStep, _: StaffRef | None) -> None:
    s, actor = eng.s, req.actor
    meeting = s.meeting("measure")
    if p.result == MeasureResult.done:
        payload = p.model_dump(mode="json")
        eng.finish_step(step, actor_id=actor.staff_id, payload=payload)
        if meeting:
            meeting.status = "done"
        eng.event("step_done", eng.done_text(step, req), actor_id=actor.staff_id, step=step.step, data=payload)
    elif p.result == MeasureResult.rescheduled:
        assert p.measure_at is not None
        eng.reschedule(actor, "measure", p.measure_at, req.notes)
    else:
        if meeting:
            meeting.status = "no_show"
        eng.event("measure_no_show", "量房客户爽约，请设计师重新约定时间", actor_id=actor.staff_id,
                  step=step.step, data={"notes": req.notes})
        eng.set_due(step, eng.add(eng.now, eng.p.duration(StepName.contact), False))
        eng.notify(f"measure_no_show:{s.event_seq}", notices.measure_no_show(s.case_id, s.designer),
                   recipient=s.manager, role=Role.manager, summary="量房爽约 → 通知经理")


def _check_debrief(eng: _Engine, step: OpenStep, p: DebriefPayload, req: CompleteStep) -> StaffRef | None:
    if p.assistant_corrections.strip() and eng.s.assistant is None:
        raise Rejected("invalid_payload", "本案还没有助理设计师，无法发送纠正", field="assistant_corrections")
    return None


def _apply_debrief(eng: _Engine, step: OpenStep, p: DebriefPayload, req: CompleteStep, _: StaffRef | None) -> None:
    s, payload = eng.s, p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    eng.event("step_done", eng.done_text(step, req), actor_id=req.actor.staff_id, step=step.step,
              data=payload | {"recordings": list(s.recordings)})
    eng.client_sms("T3", "经理感谢短信", manager_id=req.actor.staff_id)
    # Seed 二h: each corrected person is told and confirms (做记录并改正).
    if p.designer_corrections.strip() and s.designer is not None:
        eng.open_acknowledge(s.designer, p.designer_corrections.strip(), StepName.debrief)
    if p.assistant_corrections.strip() and s.assistant is not None:
        eng.open_acknowledge(s.assistant, p.assistant_corrections.strip(), StepName.debrief)


def _apply_acknowledge(
    eng: _Engine, step: OpenStep, p: AcknowledgePayload, req: CompleteStep, _: StaffRef | None
) -> None:
    payload = p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    who = req.actor.name or ROLE_LABELS[req.actor.role]
    eng.event("acknowledged", f"{who}确认纠正并改正" + (f"：{p.note}" if p.note else ""), actor_id=req.actor.staff_id,
              step=step.step, data=payload | {"key": step.key})


def _apply_arrival(eng: _Engine, step: OpenStep, p: ArrivalPayload, req: CompleteStep, _: StaffRef | None) -> None:
    s, payload = eng.s, p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    s.reception = ReceptionChecklist.model_validate(payload)
    eng.event("step_done", eng.done_text(step, req) + _checklist_text(s.reception), actor_id=req.actor.staff_id,
              step=step.step, data=payload)
    m = s.meeting("meeting")
    if m is not None and m.at > eng.now:
        m.at = eng.now  # the client came early: the meeting is now


def _check_outcome(eng: _Engine, step: OpenStep, p: OutcomePayload, req: CompleteStep) -> StaffRef | None:
    if p.outcome == "lost":
        _require_reason(p.reason)
    return None


def _apply_outcome(eng: _Engine, step: OpenStep, p: OutcomePayload, req: CompleteStep, _: StaffRef | None) -> None:
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=p.model_dump(mode="json"))
    eng.close(req.actor, Outcome(p.outcome), p.reason)


STEP_RULES: dict[StepName, StepRule] = {
    StepName.reception_review: StepRule(ReceptionReviewPayload, _apply_reception_review, _check_reception_review),
    StepName.callback: StepRule(CallbackPayload, _apply_callback, _check_callback),
    StepName.assign_designer: StepRule(AssignDesignerPayload, _apply_assign_designer, _check_assign("designer")),
    StepName.assign_assistant: StepRule(AssignAssistantPayload, _apply_assign_assistant, _check_assign("assistant")),
    StepName.contact: StepRule(ContactPayload, _apply_contact, _check_contact),
    StepName.arrival: StepRule(ArrivalPayload, _apply_arrival),
    StepName.first_meeting: StepRule(FirstMeetingPayload, _apply_first_meeting, _check_first_meeting),
    StepName.measure: StepRule(MeasurePayload, _apply_measure, _check_measure),
    StepName.debrief: StepRule(DebriefPayload, _apply_debrief, _check_debrief),
    StepName.acknowledge: StepRule(AcknowledgePayload, _apply_acknowledge),
    StepName.outcome: StepRule(OutcomePayload, _apply_outcome, _check_outcome),
}


def _require_reason(reason: str | None) -> None:
    if not (reason and reason.strip()):
        raise Rejected("reason_required", "流失请填写原因 reason", field="reason")


# --- the engine -----------------------------------------------------------------------------------


class _Engine:
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
        change = CaseChange(case_id=s.case_id, version=s.version, head=_head(s), finished=self.finished,
                            events=self.events, effects=self.effects)
        return Decision(s, change)

    # --- commands ------------------------------------------------------------------------------

    def check(self, cmd: Command) -> Any:
        self.check_open_case()
        if isinstance(cmd, CompleteStep):
            return self.check_complete(cmd)
        if isinstance(cmd, Reschedule):
            return self.check_reschedule(cmd)
        if isinstance(cmd, Reassign):
            self.require_manager(cmd.actor)
            if cmd.staff.role.value != cmd.role:
                raise Rejected("invalid_assignee", "所选人员的角色不符", field="staff")
            return None
        if isinstance(cmd, AddNote):
            ok = cmd.actor.role in (Role.manager, Role.director, Role.assistant_lead) or self.is_member(cmd.actor)
            if not ok:
                raise Rejected("not_your_case", "只有经理和本案人员可以添加备注")
            return None
        if isinstance(cmd, AttachRecording):
            self.require_manager(cmd.actor)
            if cmd.recording_id in self.s.recordings:
                raise Rejected("invalid_payload", "该录音已在案件中", field="recording_id")
            return None
        self.require_manager(cmd.actor)
        if cmd.outcome == Outcome.lost:
            _require_reason(cmd.reason)
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
        if not (req.actor.role == Role.manager or self.is_member(req.actor)):
            if req.actor.role in (Role.designer, Role.assistant):
                raise Rejected("not_your_case", "这不是您负责的客户")
            raise Rejected("wrong_role", "只有经理和本案设计师、助理可以改期")
        self.future(req.at, "at")
        if s.meeting(req.target) is None:
            raise Rejected("no_meeting", "还没有可改期的预约" if req.target == "meeting" else "还没有预约量房")
        if req.target == "meeting" and self.done(StepName.first_meeting):
            raise Rejected("no_meeting", "首次见面已完成，不能再改期")
        if req.target == "measure" and self.done(StepName.measure):
            raise Rejected("no_meeting", "量房已完成，不能再改期")

    def check_open_case(self) -> None:
        if self.s.status == CaseStatus.closed:
            raise Rejected("case_closed", f"案件已结案（{self.s.outcome}），不能再操作")

    def require_manager(self, actor: Actor) -> None:
        if actor.role != Role.manager:
            raise Rejected("wrong_role", "只有设计部经理可以执行此操作", required_role="manager")

    def is_member(self, actor: Actor) -> bool:
        s = self.s
        return bool((s.designer and s.designer.id == actor.staff_id) or (s.assistant and s.assistant.id == actor.staff_id))

    def check_owner(self, step: OpenStep, actor: Actor) -> None:
        """The step's owner only: role, and for the designer's steps the case's designer."""
        if actor.role != step.owner_role:
            raise Rejected("wrong_role", f"「{step.label}」由{ROLE_LABELS[step.owner_role]}完成",
                           required_role=step.owner_role.value)
        if step.step == StepName.acknowledge:
            if step.owner is None or step.owner.id != actor.staff_id:
                raise Rejected("not_your_case", "没有需要您确认的纠正")
            return
        if step.owner_role == Role.designer:
            designer = self.s.designer
            if designer is None or designer.id != actor.staff_id:
                raise Rejected("not_your_case", "这不是您负责的客户")

    def future(self, t: datetime | None, field: str) -> None:
        if t is not None and t.utcoffset() is None:
            raise Rejected("invalid_payload", f"{field} 须带时区（如 +08:00）", field=field)
        if t is not None and t <= self.now:
            raise Rejected("time_in_past", f"{field} 必须是将来的时间", field=field)

    def first_choice(self, step: OpenStep, req: CompleteStep, role: str) -> StaffRef | None:
        """The default for an assignment: the step's prefill (on-duty designer), else the API's first suggestion."""
        pre = step.prefill.get(role)
        if pre:
            return StaffRef.model_validate(pre)
        return req.first_suggestion

    def check_designer_choice(self, designer_id: int | None, reason: str | None, req: CompleteStep,
                              first: StaffRef | None) -> StaffRef:
        """The designer chosen (or the first choice), known and with a reason when not the first choice."""
        chosen = designer_id or (first.id if first else None)
        if chosen is None:
            raise Rejected("invalid_payload", "请选择设计师 designer_id（暂无可推荐的设计师）", field="designer_id")
        assignee = self.staff_ref(req, chosen, Role.designer, first)
        if assignee is None:
            raise Rejected("invalid_assignee", "所选设计师不存在或不可分配", field="designer_id")
        if first is not None and chosen != first.id and not (reason and reason.strip()):
            raise Rejected("reason_required", "所选设计师与首位推荐不同，请填写理由 reason",
                           suggested_designer_id=first.id)
        return assignee

    def designer_prefill(self) -> StaffRef | None:
        """The on-duty designer who took the client at the compound office (unless they let it lapse)."""
        s = self.s
        received = s.received_by
        if (s.scenario == Scenario.site_office and received is not None and received.role == Role.designer
                and received.id not in s.lapsed):
            return received
        return None

    def staff_ref(self, req: CompleteStep, staff_id: int, role: Role, first: StaffRef | None) -> StaffRef | None:
        for ref in [*req.staff, *([first] if first else [])]:
            if ref.id == staff_id and ref.role == role:
                return ref
        return None

    def reassign(self, req: Reassign) -> None:
        staff = req.staff
        self.record_assignment(role=req.role, staff=staff, actor=req.actor, kind="reassign", reason=req.reason)
        self.set_member(req.role, staff)
        who = _WHO[req.role]
        self.event("reassigned", f"{req.actor.name or '经理'}将{who}改为{staff.name}：{req.reason}",
                   actor_id=req.actor.staff_id, data={"role": req.role, "staff_id": staff.id, "reason": req.reason})
        self.notify(f"assigned:{req.role}:{staff.id}:{self.s.event_seq}",
                    notices.reassigned(self.s.case_id, who, req.reason), recipient=staff, summary=f"通知新{who}")

    # --- state helpers -------------------------------------------------------------------------

    def event(self, kind: str, text: str, *, actor_id: int | None = None, step: StepName | None = None,
              data: dict[str, Any] | None = None) -> CaseEvent:
        self.s.event_seq = max(self.s.event_seq, self.s.events[-1].seq if self.s.events else 0) + 1
        ev = CaseEvent(seq=self.s.event_seq, at=self.now, kind=kind, text=text, actor_id=actor_id, step=step,
                       data=data or {})
        self.s.events.append(ev)
        self.events.append(ev)
        return ev

    def done_text(self, step: OpenStep, req: CompleteStep) -> str:
        text = f"{req.actor.name or ROLE_LABELS[req.actor.role]}完成：{step.label}"
        return text + (f"（{req.notes}）" if req.notes else "")

    def done(self, step: StepName) -> bool:
        return any(d.step == step and d.result in ("done", "auto") for d in self.s.done_steps)

    def find_open(self, step: StepName) -> OpenStep | None:
        return next((o for o in self.s.open_steps if o.step == step), None)

    def instances(self, step: StepName) -> int:
        s = self.s
        return sum(1 for d in s.done_steps if d.step == step) + sum(1 for o in s.open_steps if o.step == step)

    def add(self, start: datetime, delta: timedelta, wall_clock: bool) -> datetime:
        return cal.add_time(self.p.calendar, start, delta, wall_clock=wall_clock)

    def business(self, t: datetime, wall_clock: bool) -> datetime:
        """Move a moment into working time (nobody is paged at night), unless wall-clock."""
        return t if wall_clock else cal.next_business_moment(self.p.calendar, t)

    def local(self, t: datetime) -> str:
        return local_time(t, self.p.calendar.timezone)

    def due_for(self, spec: StepSpec, opened: datetime | None = None) -> datetime | None:
        """Due time of a step opening now (or, for a duration step, opened at `opened`)."""
        s, p, now = self.s, self.p, self.now
        if spec.due == "none":
            return None
        if spec.due in ("meeting", "measure"):
            m = s.meeting(spec.due)
            return (max(m.at, now) if m else now) + p.meeting_grace
        start = opened or now
        if s.scenario == Scenario.walk_in and spec.step in (StepName.assign_designer, StepName.assign_assistant):
            due = start + p.walk_in_assignment
        else:
            due = self.add(start, p.duration(spec.step), spec.wall_clock)
        if spec.before_meeting:
            m = s.meeting("meeting")
            if m is not None and m.at > now:
                due = min(due, m.at)
        return due

    def set_due(self, step: OpenStep, due: datetime | None, *, level: int = 0) -> None:
        """Give a step a new due time; its escalation chain starts again at `level`."""
        step.due_at = due
        step.escalation_level = level
        step.overdue = level > 0
        step.stalled = False
        step.next_escalation_at = None
        self.plan_escalation(step)

    def plan_escalation(self, step: OpenStep, *, repeat_from: datetime | None = None) -> None:
        """Set when the next rung of the step's escalation chain fires and what it does.

        The chain's stages count from the due time; repeats from the rung that fired last
        (`repeat_from`), so after an outage there is no burst of catch-up pages. Once the repeats are
        used up, the next rung stalls the step.
        """
        step.next_escalation_at = None
        step.next_escalation = None
        if step.due_at is None or step.stalled:
            return
        chain = self.p.chain(step.step)
        level = step.escalation_level
        if level < len(chain.stages):
            stage = chain.stages[level]
            at = self.business(self.add(step.due_at, stage.after, step.wall_clock), step.wall_clock)
            target = stage.target
        elif chain.repeat_every is not None:
            base = repeat_from or step.due_at
            at = self.business(self.add(base, chain.repeat_every, step.wall_clock), step.wall_clock)
            target = chain.repeat_target
        else:
            return
        step.next_escalation_at = at
        if level - len(chain.stages) >= self.p.escalation_max_repeats:
            step.next_escalation = "搁置并通知总经理"
            return
        who = self.target_label(step, target)
        step.next_escalation = f"提醒{who}" if target == "owner" else f"通知{who}"

    def target(self, step: OpenStep, target: str) -> tuple[StaffRef | None, Role]:
        s = self.s
        if target == "owner":
            return step.owner, step.owner_role
        if target == "director" or step.owner_role == Role.manager:
            return s.director, Role.director
        return s.manager, Role.manager

    def target_label(self, step: OpenStep, target: str) -> str:
        ref, role = self.target(step, target)
        label = "经理" if role == Role.manager else ROLE_LABELS[role]
        return f"{label}{ref.name}" if ref else label

    def owner_ref(self, spec: StepSpec) -> StaffRef | None:
        if spec.owner == "manager":
            return self.s.manager
        if spec.owner == "case_designer":
            return self.s.designer
        return None

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
        if spec.step in _ANNOUNCED_STEPS:
            self.notify(f"open:{step.key}", notices.step_opened(self.s, step, self.local),
                        recipient=step.owner, role=step.owner_role,
                        summary=f"{step.label} → 通知{'助理负责人' if step.owner_role == Role.assistant_lead else '经理'}")
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

    def reclaim(self, step: OpenStep) -> None:
        """掉保/公海: the designer let their step lapse; the case goes back to the manager's assignment."""
        s = self.s
        designer = s.designer
        assert designer is not None
        self.finish_step(step, actor_id=None, result="reclaimed")
        reason = f"「{step.label}」超时未办（升级{step.escalation_level}级），按规定收回"
        self.record_assignment(role="designer", staff=designer, actor=None, kind="lapse", reason=reason)
        s.lapsed = [*s.lapsed, designer.id]
        s.designer = None
        self.event("reclaimed", f"设计师{designer.name}{reason}（掉保），案件退回经理重新分配", step=step.step,
                   data={"designer_id": designer.id, "key": step.key, "level": step.escalation_level})
        self.notify(f"reclaimed:{step.key}", notices.reclaimed(s.case_id, step.label, designer), recipient=s.manager,
                    role=Role.manager, summary="掉保 → 通知经理重新分配")
        self.notify(f"reclaimed_from:{step.key}", notices.reclaimed_from(s.case_id, step.label), recipient=designer,
                    summary="掉保 → 通知原设计师")
        spec = self.g.spec(StepName.assign_designer)
        assert spec is not None
        self.open_step(spec)

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

    def notify(self, purpose: str, text: str, *, recipient: StaffRef | None = None, role: Role | None = None,
               summary: str, template: Literal["designer_assigned"] | None = None) -> None:
        """A staff notice, decided once per purpose."""
        if purpose in self.s.sent:
            return
        self.s.sent.append(purpose)
        self.effects.notices.append(NotifyStaff(
            case_id=self.s.case_id, purpose=purpose, recipient_id=recipient.id if recipient else None,
            recipient_role=None if recipient else (role or Role.manager), text=text, template=template,
        ))

    def client_sms(self, template: Literal["T1", "T2", "T3", "T4"], summary: str, *, purpose: str | None = None,
                   at: datetime | None = None, kind: MeetingKind | None = None, manager_id: int | None = None,
                   name_assistant: bool = True) -> None:
        """An SMS to the client, once per purpose; names the case's designer and assistant."""
        s = self.s
        purpose = purpose or template
        if purpose in s.sent:
            return
        s.sent.append(purpose)
        assistant = s.assistant if name_assistant else None
        self.effects.sms.append(SendSms(
            case_id=s.case_id, purpose=purpose, template=template,
            designer_id=s.designer.id if s.designer else None,
            assistant_id=assistant.id if assistant else None, include_assistant=assistant is not None,
            manager_id=manager_id, at=at, meeting_kind=kind, timezone=self.p.calendar.timezone,
        ))
        self.event("sms_queued", f"短信{template}：{summary}", data={"purpose": purpose})

    def tell_designer(self, staff: StaffRef) -> None:
        m = self.s.meeting("meeting")
        # Only a marker and ids here: the outbox writer adds the client's details from PostgreSQL.
        self.notify(f"assigned:designer:{staff.id}", notices.designer_assigned(self.s.case_id, m, self.local),
                    recipient=staff, summary="通知设计师新客户", template="designer_assigned")

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

    # --- time ----------------------------------------------------------------------------------

    def agenda(self) -> list[tuple[datetime, str, Callable[[], None]]]:
        """Everything the case waits for in time, each with what to do then."""
        s, p, now = self.s, self.p, self.now
        if s.status == CaseStatus.closed:
            return []
        items: list[tuple[datetime, str, Callable[[], None]]] = []
        for o in s.open_steps:
            if o.next_escalation_at is not None and o.next_escalation:
                verb = "到期" if o.escalation_level == 0 else "超时"
                items.append((o.next_escalation_at, f"{STEP_LABELS[o.step]}{verb} → {o.next_escalation}",
                              partial(self.escalate, o.key)))
        if s.callback_retry_at is not None:
            items.append((s.callback_retry_at, f"回访未接通 → 第{s.callback_attempts + 1}次回访", self.retry_callback))
        # Reminders before meetings; a rescheduled meeting has a new time, hence new purposes.
        contact_pending = self.g.spec(StepName.contact) is not None and not self.done(StepName.contact)
        for m in s.meetings:
            if m.status != "scheduled" or m.at <= now:
                continue
            when = m.at.isoformat()
            purpose = f"T4:{m.which}:{when}"
            # The client hears from the designer (T1) before being reminded of the meeting.
            if s.designer is not None and not (m.which == "meeting" and contact_pending) and purpose not in s.sent:
                at = cal.latest_business_moment_at_or_before(p.calendar, m.at - p.client_reminder_before)
                items.append((max(at, now), "见面前一天 → 短信提醒客户",
                              partial(self.client_sms, "T4", "见面前提醒客户", purpose=purpose, at=m.at,
                                      kind=m.kind)))
            for who, before in (("designer", p.staff_reminder_before), ("assistant", p.staff_reminder_before),
                                ("manager", p.manager_reminder_before)):
                purpose = f"remind:{m.which}:{when}:{who}"
                if who == "manager" and (m.which != "meeting" or m.kind != MeetingKind.office_visit):
                    continue  # the manager receives office visits only
                if purpose not in s.sent and (who == "manager" or getattr(s, who) is not None):
                    items.append((max(m.at - before, now), f"见面前提醒{_WHO[who]}",
                                  partial(self.remind_staff, purpose, m, who)))
        outcome = self.find_open(StepName.outcome)
        if outcome is not None and s.designer is not None:
            for i, after in enumerate(p.followups, start=1):
                purpose = f"followup:{i}"
                if purpose not in s.sent:
                    summary = f"等待签单 → 第{i}次跟进提醒设计师"
                    items.append((self.business(outcome.opened_at + after, False), summary,
                                  partial(self.notify, purpose, notices.followup(s.case_id, i),
                                          recipient=s.designer, role=Role.designer, summary=summary)))
        return items

    def fire_due(self) -> None:
        """Do everything due by now, soonest first, until nothing more is due (bounded)."""
        for _ in range(100):
            due = [i for i in self.agenda() if i[0] <= self.now]
            if not due:
                return
            min(due, key=lambda i: i[0])[2]()

    def escalate(self, key: str) -> None:
        """The next rung of a late step's chain: remind the owner, tell their superior, or stall."""
        step = next((o for o in self.s.open_steps if o.key == key), None)
        if step is None:
            return
        s = self.s
        chain = self.p.chain(step.step)
        level = step.escalation_level
        repeats = level - len(chain.stages)
        if repeats >= self.p.escalation_max_repeats:
            # A case left open must not page anyone forever: the step stalls, the director hears once.
            step.stalled = True
            step.next_escalation_at = None
            step.next_escalation = None
            self.event("stalled", f"{STEP_LABELS[step.step]}多次催办仍未完成 → 已搁置，通知总经理", step=step.step,
                       data={"key": step.key, "level": level})
            self.notify(f"stalled:{step.key}", notices.stalled(s.case_id, step, self.local), recipient=s.director,
                        role=Role.director, summary="长期未办 → 搁置并通知总经理")
            return
        target = chain.stages[level].target if level < len(chain.stages) else chain.repeat_target
        recipient, role = self.target(step, target)
        step.escalation_level = level + 1
        step.overdue = True
        who = self.target_label(step, target)
        if target == "owner":
            ev_text = f"{STEP_LABELS[step.step]}到期 → 提醒{who}"
        else:
            ev_text = f"{STEP_LABELS[step.step]}超时 → 通知{who}"
        self.event("escalation", ev_text, step=step.step,
                   data={"key": step.key, "level": step.escalation_level, "target": target,
                         "recipient_id": recipient.id if recipient else None})
        self.notify(f"esc:{step.key}:{step.escalation_level}",
                    notices.escalation(s.case_id, step, target, self.local), recipient=recipient, role=role,
                    summary=ev_text)
        reclaim_at = self.p.reclaim_at_level
        if (step.step in RECLAIMABLE and reclaim_at is not None and step.escalation_level >= reclaim_at
                and s.designer is not None):
            self.reclaim(step)
            return
        self.plan_escalation(step, repeat_from=self.now)

    def retry_callback(self) -> None:
        """A callback that did not reach the client opens again."""
        self.s.callback_retry_at = None
        spec = self.g.spec(StepName.callback)
        assert spec is not None
        self.open_step(spec, attempt=self.s.callback_attempts + 1)

    def remind_staff(self, purpose: str, m: Meeting, who: str) -> None:
        """Before a meeting: designer and assistant to be on time; the manager to receive an office visit."""
        s = self.s
        if who == "manager":
            self.notify(purpose, notices.office_visit_reminder(s.case_id, self.local(m.at)), recipient=s.manager,
                        role=Role.manager, summary="到店前提醒经理接待")
            return
        self.notify(purpose, notices.meeting_reminder(s.case_id, m, self.local(m.at)),
                    recipient=s.designer if who == "designer" else s.assistant, role=Role(who),
                    summary=f"会前提醒{_WHO[who]}")

    # --- derived -------------------------------------------------------------------------------

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


__all__ = [
    "AgendaItem",
    "Command",
    "Decision",
    "Level",
    "Rejected",
    "STEP_RULES",
    "agenda",
    "auto_assign",
    "check",
    "decide",
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
