"""The step rules: for each step, its payload model, its check and what completing it does, side by side.

:data:`STEP_RULES` holds one :class:`StepRule` a step. A check raises :class:`~domain.editor.Rejected`
before anything changes (and may return the staff member an assignment chose); an apply makes the
step's edits through the :class:`~domain.editor.Editor`. Who may complete a step is asked of
domain.permissions by the engine's command checks (:mod:`domain.engine`), not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from domain import notices
from domain.agenda import reclaim
from domain.editor import Editor, Rejected
from domain.enums import (
    MEMBER_LABELS,
    ROLE_LABELS,
    STEP_LABELS,
    MeasureResult,
    MeetingKind,
    Outcome,
    Role,
    Scenario,
    StepName,
)
from domain.models import (
    RECEPTION_ITEMS,
    SITE_MUSTS,
    VISIT_REASONS,
    AcknowledgePayload,
    ArrivalPayload,
    AssignAssistantPayload,
    AssignDesignerPayload,
    CallbackPayload,
    CompleteStep,
    ContactPayload,
    DebriefPayload,
    FirstMeetingPayload,
    LapseReviewPayload,
    MeasurePayload,
    Meeting,
    OpenStep,
    OutcomePayload,
    ReceptionChecklist,
    ReceptionReviewPayload,
    SiteReceptionMusts,
    StaffRef,
)

Checker = Callable[[Editor, OpenStep, Any, CompleteStep], StaffRef | None]
Applier = Callable[[Editor, OpenStep, Any, CompleteStep, StaffRef | None], None]


def _no_check(eng: Editor, step: OpenStep, p: Any, req: CompleteStep) -> StaffRef | None:
    return None


@dataclass(frozen=True)
class StepRule:
    """One step: the model its payload must fit, what it must satisfy, what completing it does."""

    payload: type[BaseModel]
    apply: Applier
    check: Checker = _no_check


def validate_payload(step: StepName, payload: dict[str, Any]) -> BaseModel:
    """A step's payload, parsed by its model (Rejected `invalid_payload` with the field errors)."""
    model = STEP_RULES[step].payload
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        # A rule across fields names the field it concerns in its context: that field is where it is.
        errors = [{"loc": [*e["loc"], *([e["ctx"]["field"]] if "field" in e.get("ctx", {}) else [])],
                   "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise Rejected("invalid_payload", f"「{STEP_LABELS[step]}」的内容不正确", errors=errors) from None


def require_reason(reason: str | None) -> None:
    if not (reason and reason.strip()):
        raise Rejected("reason_required", "流失请填写原因 reason", field="reason")


def checklist_text(c: ReceptionChecklist | None) -> str:
    if c is None:
        return "；未记录接待清单"
    done = [label for key, label in RECEPTION_ITEMS.items() if getattr(c, key)]
    missed = c.missed()
    return "；接待清单 已做：" + ("、".join(done) or "无") + ("；未做：" + "、".join(missed) if missed else "")


def site_musts_text(m: SiteReceptionMusts) -> str:
    """情况三 b, as the timeline and the review read it: what was done, what was not."""
    done = [label for key, label in SITE_MUSTS.items() if key != "basic_needs" and getattr(m, key)]
    missed = m.missed()
    return ("：已做：" + ("、".join(done) or "无") + (f"；未做：{'、'.join(missed)}" if missed else "")
            + f"；客户基本需求：{m.basic_needs.strip()}")


# --- the assignment steps' choice of staff --------------------------------------------------------


def _first_choice(step: OpenStep, req: CompleteStep, role: str) -> StaffRef | None:
    """The default for an assignment: the step's prefill (on-duty designer), else the API's first suggestion."""
    pre = step.prefill.get(role)
    if pre:
        return StaffRef.model_validate(pre)
    return req.first_suggestion


def _check_designer_choice(designer_id: int | None, reason: str | None, req: CompleteStep,
                           first: StaffRef | None) -> StaffRef:
    """The designer chosen (or the first choice), known and with a reason when not the first choice."""
    chosen = designer_id or (first.id if first else None)
    if chosen is None:
        raise Rejected("invalid_payload", "请选择设计师 designer_id（暂无可推荐的设计师）", field="designer_id")
    assignee = _staff_ref(req, chosen, Role.designer, first)
    if assignee is None:
        raise Rejected("invalid_assignee", "所选设计师不存在或不可分配", field="designer_id")
    if first is not None and chosen != first.id and not (reason and reason.strip()):
        raise Rejected("reason_required", "所选设计师与首位推荐不同，请填写理由 reason",
                       suggested_designer_id=first.id)
    return assignee


def _staff_ref(req: CompleteStep, staff_id: int, role: Role, first: StaffRef | None) -> StaffRef | None:
    for ref in [*req.staff, *([first] if first else [])]:
        if ref.id == staff_id and ref.role == role:
            return ref
    return None


# --- the steps ------------------------------------------------------------------------------------


def _check_reception_review(
    eng: Editor, step: OpenStep, p: ReceptionReviewPayload, req: CompleteStep
) -> StaffRef | None:
    if p.corrections.strip() and eng.s.received_by is None:
        raise Rejected("invalid_payload", "没有记录接待人员，无法发送纠正", field="corrections")
    return None


def _apply_reception_review(
    eng: Editor, step: OpenStep, p: ReceptionReviewPayload, req: CompleteStep, _: StaffRef | None
) -> None:
    payload = p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    eng.event("step_done", eng.done_text(step, req), actor_id=req.actor.staff_id, step=step.step, data=payload)
    received = eng.s.received_by
    if p.corrections.strip() and received is not None:
        # Seed 三c "纠正设计师的错误": whoever received the client hears it and confirms.
        eng.open_acknowledge(received, p.corrections.strip(), StepName.reception_review)


def _check_callback(eng: Editor, step: OpenStep, p: CallbackPayload, req: CompleteStep) -> StaffRef | None:
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
        return _check_designer_choice(p.designer_id, p.reason, req, eng.designer_prefill() or req.first_suggestion)
    return None


def _apply_callback(
    eng: Editor, step: OpenStep, p: CallbackPayload, req: CompleteStep, chosen: StaffRef | None
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
    label = MEMBER_LABELS[role]

    def check(eng: Editor, step: OpenStep, p: Any, req: CompleteStep) -> StaffRef | None:
        first = _first_choice(step, req, role)
        if role == "designer":
            return _check_designer_choice(p.designer_id, p.reason, req, first)
        chosen = getattr(p, f"{role}_id") or (first.id if first else None)
        if chosen is None:
            raise Rejected("invalid_payload", f"请选择{label} {role}_id（暂无可推荐的{label}）", field=f"{role}_id")
        assignee = _staff_ref(req, chosen, staff_role, first)
        if assignee is None:
            raise Rejected("invalid_assignee", f"所选{label}不存在或不可分配", field=f"{role}_id")
        return assignee

    return check


def _apply_assign_designer(
    eng: Editor, step: OpenStep, p: AssignDesignerPayload, req: CompleteStep, ref: StaffRef | None
) -> None:
    assert ref is not None
    actor = req.actor
    first = _first_choice(step, req, "designer")
    eng.record_assignment(role="designer", staff=ref, actor=actor, kind="assign", reason=p.reason,
                          suggested_id=first.id if first else None)
    eng.finish_step(step, actor_id=actor.staff_id, payload=p.model_dump(mode="json") | {"designer_id": ref.id})
    eng.set_member("designer", ref)
    eng.event("designer_assigned", f"{actor.name or '经理'}分配设计师：{ref.name}", actor_id=actor.staff_id,
              step=step.step, data={"designer_id": ref.id, "suggested_id": first.id if first else None,
                                    "reason": p.reason})
    eng.tell_designer(ref)
    if eng.v2 and eng.s.handover_from is not None:
        # After a reclaim of a designer who had spoken to the client: the new one introduces themself.
        eng.hand_over(None)


def _apply_assign_assistant(
    eng: Editor, step: OpenStep, p: AssignAssistantPayload, req: CompleteStep, ref: StaffRef | None
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


def _check_contact(eng: Editor, step: OpenStep, p: ContactPayload, req: CompleteStep) -> StaffRef | None:
    eng.future(p.meeting_at, "meeting_at")
    return None


def _apply_contact(eng: Editor, step: OpenStep, p: ContactPayload, req: CompleteStep, _: StaffRef | None) -> None:
    payload = p.model_dump(mode="json")
    if eng.v2 and eng.contacted():
        _apply_reintroduction(eng, step, p, req)
        return
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    eng.set_meeting("meeting", p.meeting_kind, p.meeting_at)
    eng.event("step_done", eng.done_text(step, req), actor_id=req.actor.staff_id, step=step.step, data=payload)
    eng.client_sms("T1", "设计师自我介绍短信", at=p.meeting_at, kind=p.meeting_kind,
                   name_assistant=eng.g.t1_names_assistant, announces="meeting")


def _apply_reintroduction(eng: Editor, step: OpenStep, p: ContactPayload, req: CompleteStep) -> None:
    """The new designer called the client after a change (version 2): T5, once per change.

    The time confirmed is the next appointment: the first meeting while it is ahead, else the measure.
    """
    s, payload = eng.s, p.model_dump(mode="json")
    previous = s.handover_from
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload | {"handover_from": previous.id if previous
                                                                                      else None})
    which = "meeting" if not eng.done(StepName.first_meeting) else "measure"
    m = s.meeting(which)
    kind = p.meeting_kind if which == "meeting" else MeetingKind.measure
    if m is None and which == "meeting":
        eng.set_meeting("meeting", kind, p.meeting_at)
    elif m is not None and m.status == "scheduled" and m.at != p.meeting_at:
        eng.reschedule(req.actor, which, p.meeting_at, "新设计师联系客户时确认")
    eng.event("step_done", eng.done_text(step, req) + (f"（接替{previous.name}）" if previous else ""),
              actor_id=req.actor.staff_id, step=step.step, data=payload)
    s.handover_from = None
    # Only the assistant changed: the new assistant is the news, named even where T1 names nobody (情况三).
    eng.client_sms("T5", "新设计师自我介绍短信", purpose=f"T5:{step.key}", at=p.meeting_at, kind=kind,
                   name_assistant=eng.g.t1_names_assistant or previous is None, announces=which,
                   previous_designer_id=previous.id if previous else None)


def _at_home(eng: Editor) -> bool:
    """Whether the first meeting is a home measure under version 2 (the visits are invited, not done)."""
    meeting = eng.s.meeting("meeting")
    return eng.v2 and meeting is not None and meeting.kind == MeetingKind.measure


def _check_first_meeting(eng: Editor, step: OpenStep, p: FirstMeetingPayload, req: CompleteStep) -> StaffRef | None:
    eng.future(p.measure_at, "measure_at")
    meeting = eng.s.meeting("meeting")
    was_measure = meeting is not None and meeting.kind == MeetingKind.measure
    if p.measure_agreed and p.measure_at is None and not was_measure:
        raise Rejected("invalid_payload", "已约定量房，请填写量房时间 measure_at", field="measure_at")
    if _at_home(eng):
        # SPEC §14: at the client's house the site and material store visits are invited (a time, or not yet).
        eng.future(p.site_visit_at, "site_visit_at")
        eng.future(p.material_store_visit_at, "material_store_visit_at")
        return None
    # At the office all four musts stand (seed 二f): a visit not made needs its reason.
    for flag, why, label in VISIT_REASONS:
        if not getattr(p, flag) and not (getattr(p, why) or "").strip():
            raise Rejected("invalid_payload", f"{label}，请填写原因 {why}", field=why,
                           errors=[{"loc": [why], "msg": f"{label}，请填写原因 {why}", "type": "value_error"}])
    return None


def _apply_first_meeting(
    eng: Editor, step: OpenStep, p: FirstMeetingPayload, req: CompleteStep, _: StaffRef | None
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
        if not (_at_home(eng) and flag != "measure_agreed" and not getattr(p, flag))
    )
    if _at_home(eng):
        for flag, at, label in (("visited_site", p.site_visit_at, "参观在施工地"),
                                ("visited_material_store", p.material_store_visit_at, "参观材料库")):
            if not getattr(p, flag):
                musts += f"；{label}：{'已邀约 ' + eng.local(at) if at else '暂未约定'}"
    review = eng.find_open(StepName.lapse_review)
    if review is not None:
        eng.finish_step(review, actor_id=actor.staff_id, result="cancelled")  # the meeting took place
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
        eng.client_sms("T2", "量房预约确认短信", at=p.measure_at, kind=MeetingKind.measure, announces="measure")


def _check_measure(eng: Editor, step: OpenStep, p: MeasurePayload, req: CompleteStep) -> StaffRef | None:
    if p.result == MeasureResult.rescheduled:
        if p.measure_at is None:
            raise Rejected("invalid_payload", "改期请填写新的量房时间 measure_at", field="measure_at")
        eng.future(p.measure_at, "measure_at")
    return None


def _apply_measure(eng: Editor, step: OpenStep, p: MeasurePayload, req: CompleteStep, _: StaffRef | None) -> None:
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


def _check_debrief(eng: Editor, step: OpenStep, p: DebriefPayload, req: CompleteStep) -> StaffRef | None:
    if p.assistant_corrections.strip() and eng.s.assistant is None:
        raise Rejected("invalid_payload", "本案还没有助理设计师，无法发送纠正", field="assistant_corrections")
    return None


def _apply_debrief(eng: Editor, step: OpenStep, p: DebriefPayload, req: CompleteStep, _: StaffRef | None) -> None:
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
    eng: Editor, step: OpenStep, p: AcknowledgePayload, req: CompleteStep, _: StaffRef | None
) -> None:
    payload = p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    who = req.actor.name or ROLE_LABELS[req.actor.role]
    eng.event("acknowledged", f"{who}确认纠正并改正" + (f"：{p.note}" if p.note else ""), actor_id=req.actor.staff_id,
              step=step.step, data=payload | {"key": step.key})


def _apply_arrival(eng: Editor, step: OpenStep, p: ArrivalPayload, req: CompleteStep, _: StaffRef | None) -> None:
    s, payload = eng.s, p.model_dump(mode="json")
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    s.reception = ReceptionChecklist.model_validate(payload)
    eng.event("step_done", eng.done_text(step, req) + checklist_text(s.reception), actor_id=req.actor.staff_id,
              step=step.step, data=payload)
    m = s.meeting("meeting")
    if m is not None and m.at > eng.now:
        m.at = eng.now  # the client came early: the meeting is now


def _check_lapse_review(eng: Editor, step: OpenStep, p: LapseReviewPayload, req: CompleteStep) -> StaffRef | None:
    if eng.find_open(StepName.first_meeting) is None or eng.s.designer is None:
        raise Rejected("step_not_open", "首次见面已不在等待中")
    if p.decision == "extend":
        if not (p.reason and p.reason.strip()):
            raise Rejected("reason_required", "延期请写明原因 reason", field="reason")
        if p.until is None:
            raise Rejected("invalid_payload", "延期请填写延期到的时间 until", field="until")
        eng.future(p.until, "until")
    return None


def _apply_lapse_review(
    eng: Editor, step: OpenStep, p: LapseReviewPayload, req: CompleteStep, _: StaffRef | None
) -> None:
    s, payload = eng.s, p.model_dump(mode="json")
    meeting = eng.find_open(StepName.first_meeting)
    assert meeting is not None and s.designer is not None
    eng.finish_step(step, actor_id=req.actor.staff_id, payload=payload)
    if p.decision == "reclaim":
        eng.event("step_done", eng.done_text(step, req) + f"：收回（掉保）{('，' + p.reason) if p.reason else ''}",
                  actor_id=req.actor.staff_id, step=step.step, data=payload)
        reclaim(eng, meeting)
        return
    assert p.until is not None and p.reason is not None
    eng.set_due(meeting, p.until)
    eng.event("step_done", eng.done_text(step, req) + f"：首次见面延期到 {eng.local(p.until)}（{p.reason}）",
              actor_id=req.actor.staff_id, step=step.step, data=payload)
    eng.notify(f"extended:{step.key}", notices.lapse_extended(s.case_id, eng.local(p.until), p.reason),
               recipient=s.designer, summary="首次见面延期 → 通知设计师")


def _check_outcome(eng: Editor, step: OpenStep, p: OutcomePayload, req: CompleteStep) -> StaffRef | None:
    if p.outcome == "lost":
        require_reason(p.reason)
    return None


def _apply_outcome(eng: Editor, step: OpenStep, p: OutcomePayload, req: CompleteStep, _: StaffRef | None) -> None:
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
    StepName.lapse_review: StepRule(LapseReviewPayload, _apply_lapse_review, _check_lapse_review),
}

