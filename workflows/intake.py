"""IntakeWorkflow: one durable workflow per client case, interpreting the scenario's step graph.

Updates (each with a validator that keeps wrong input out of the history):
    complete_step(CompleteStep) -> CaseState
    reschedule(Reschedule) -> CaseState
    reassign(Reassign) -> CaseState
    add_note(AddNote) -> CaseState
    close(CloseCase) -> CaseState
Query:
    state() -> CaseState

Timers: the main loop keeps an agenda (escalations of open steps, callback retries, meeting
reminders, follow-ups), derived from the state alone, and sleeps until its earliest item with a
Chinese timer summary, so the UI timeline reads as the case's story. Messages are queued in the
state as pending effects and handed to the outbox by the main loop, exactly once per purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ValidationError

    from domain import calendar as cal
    from domain.constants import (
        SA_ASSISTANT,
        SA_DESIGNER,
        SA_ESCALATION_LEVEL,
        SA_OVERDUE,
        SA_SCENARIO,
        SA_SOURCE,
        SA_STAGE,
        SA_STEP_DUE_AT,
        workflow_id,
    )
    from domain.enums import (
        MEETING_KIND_LABELS,
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
        STEP_PAYLOADS,
        Actor,
        AddNote,
        AssignAssistantPayload,
        AssignDesignerPayload,
        CallbackPayload,
        CaseEvent,
        CaseState,
        CloseCase,
        CompleteStep,
        ContactPayload,
        DebriefPayload,
        DoneStep,
        FirstMeetingPayload,
        IntakeInput,
        MeasurePayload,
        Meeting,
        NotifyStaff,
        OpenStep,
        OutcomePayload,
        PendingEffect,
        Reassign,
        RecordAssignment,
        Reschedule,
        SendSms,
        StaffRef,
        SuggestAssistants,
        SuggestDesigners,
        Suggestion,
        SyncProjection,
    )
    from domain.policy import Policy
    from domain.tracking import current_details, local_time, step_label

# Activity names (registered by worker.py from the activity classes).
ACT_SYNC_PROJECTION = "sync_projection"
ACT_SEND_SMS = "send_sms"
ACT_NOTIFY_STAFF = "notify_staff"
ACT_RECORD_ASSIGNMENT = "record_assignment"
ACT_SUGGEST_DESIGNERS = "suggest_designers"
ACT_SUGGEST_ASSISTANTS = "suggest_assistants"

_DB_TIMEOUT = timedelta(seconds=30)
# Messages retry until they go out (the outbox makes retries harmless); backoff caps at 5 minutes.
_SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
_DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30))
_SUGGEST_RETRY = RetryPolicy(maximum_attempts=3)

# Steps whose owner is told the moment they open (designers hear of contact when assigned;
# meetings have their own reminders; the outcome has follow-ups).
_ANNOUNCED_STEPS = {
    StepName.reception_review,
    StepName.callback,
    StepName.assign_designer,
    StepName.assign_assistant,
    StepName.debrief,
}
RECEPTION_CHECKLIST = "门口迎接、递名片、打开录音笔、备好茶水"


def _business_failure(exc: ActivityError) -> ApplicationError | None:
    """The typed business error behind an activity failure (through retries and timeouts), if any."""
    cause: BaseException | None = exc.cause
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            return cause
        cause = cause.__cause__
    return None


def _prefill(role: str, suggestions: list[Suggestion], nobody: str) -> dict[str, Any]:
    """What an assignment step offers its owner: the first suggestion, its reasons, the next ones."""
    if not suggestions:
        return {"reasons": [nobody]}
    top = suggestions[0]
    return {
        f"{role}_id": top.staff.id,
        role: top.staff.model_dump(mode="json"),
        "reasons": top.reasons,
        "suggested_ids": [x.staff.id for x in suggestions[:5]],
    }


def _reject(code: str, message: str, **details: Any) -> ApplicationError:
    """A business rejection: the API maps `code` to an HTTP status."""
    return ApplicationError(message, details or {}, type=code, non_retryable=True)


@dataclass
class _AgendaItem:
    """Something the case waits for in time: when, what the UI timer says, what to do then."""

    at: datetime
    summary: str
    act: Callable[[], None]


_WHO = {"designer": "设计师", "assistant": "助理设计师", "manager": "经理"}


@dataclass
class _Checked:
    """A step completion that passed validation: the open step, its parsed payload, who it names."""

    step: OpenStep
    payload: BaseModel
    assignee: StaffRef | None = None


@workflow.defn(name="IntakeWorkflow")
class IntakeWorkflow:
    """One client case from first lead to outcome. See the module docstring for its messages."""

    @workflow.init
    def __init__(self, inp: IntakeInput) -> None:
        # Built here, not in run(): an update may be delivered in the very first workflow task.
        self._changed = False
        self._lock = asyncio.Lock()
        self._last_sa: tuple[Any, ...] | None = None
        self.inp = inp.model_copy(update={"state": None})
        # Continued-as-new runs carry their state; new cases open their root steps now.
        self.s: CaseState = inp.state or self._new_state(inp)
        if inp.state is None:
            self._event("created", "新客户建档", actor_id=inp.created_by.id)
            if inp.scenario == Scenario.walk_in:
                self._event("arrived", "自然客户到店（建档即到店）", actor_id=inp.created_by.id)
            for spec in self.g.roots():
                self._open_step(spec)

    # ------------------------------------------------------------------ properties

    @property
    def policy(self) -> Policy:
        return self.inp.policy

    @property
    def g(self) -> ScenarioGraph:
        return graph(self.s.scenario)

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: IntakeInput) -> CaseState:
        """Drive the case until it is closed, then return its final state."""
        # Timers are re-derived from the state, so a continued-as-new run resumes where it was.
        async with self._lock:
            if self.s.version == 0:
                try:
                    # The first sync waits a bounded time for the API to commit the case row.
                    await self._commit(within=self.policy.case_row_wait)
                except ActivityError as exc:
                    # The API rolled back the case row (its start timed out or its commit failed):
                    # this workflow has no case. End it instead of retrying forever.
                    failure = _business_failure(exc)
                    if failure is None or failure.type != "case_missing":
                        raise
                    workflow.logger.warning("case %s has no row: orphan ends", self.s.case_id)
                    return self.s
            await self._after_opening()
            await self._commit()

        while True:
            s = self.s
            if s.pending_effects:
                await self._run_effect(s.pending_effects[0])
                continue
            if s.status == CaseStatus.closed:
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() and not self._lock.locked())
                if not self.s.pending_effects and self.s.status == CaseStatus.open:
                    workflow.continue_as_new(self.inp.model_copy(update={"state": self.s}))
                continue
            item = self._next_agenda_item()
            self._changed = False
            if item is None:
                await workflow.wait_condition(lambda: self._changed)
                continue
            wait = (item.at - workflow.now()).total_seconds()
            if wait > 0:
                try:
                    await workflow.wait_condition(
                        lambda: self._changed, timeout=timedelta(seconds=wait), timeout_summary=item.summary
                    )
                    continue  # something changed: re-plan
                except TimeoutError:
                    pass
            async with self._lock:
                if self._changed or self.s.status == CaseStatus.closed:
                    continue  # an update changed the case while we waited for the lock: re-plan
                item.act()
                await self._commit()

        # Let running update handlers finish before the workflow completes (no lost replies).
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._commit()
        return self.s

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() > self.policy.continue_as_new_after_events
        )

    def _new_state(self, inp: IntakeInput) -> CaseState:
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

    # ------------------------------------------------------------------ query

    @workflow.query
    def state(self) -> CaseState:
        """The whole case: stage, open steps, assignments, meetings, events."""
        return self.s

    # ------------------------------------------------------------------ updates

    @workflow.update
    async def complete_step(self, req: CompleteStep) -> CaseState:
        """Complete an open step with its payload."""
        async with self._lock:
            checked = self._check_complete(req)  # again: an earlier handler may have changed the case
            await self._complete(req, checked)
            await self._commit()
            return self.s

    @complete_step.validator
    def _validate_complete(self, req: CompleteStep) -> None:
        self._check_complete(req)

    @workflow.update
    async def reschedule(self, req: Reschedule) -> CaseState:
        """Move the first meeting or the measure to a new time."""
        async with self._lock:
            self._check_reschedule(req)
            self._do_reschedule(req.actor, req.target, req.at, req.reason)
            await self._commit()
            return self.s

    @reschedule.validator
    def _validate_reschedule(self, req: Reschedule) -> None:
        self._check_reschedule(req)

    @workflow.update
    async def reassign(self, req: Reassign) -> CaseState:
        """Change the case's designer or assistant, with a reason."""
        async with self._lock:
            self._check_reassign(req)
            staff = await self._record_assignment(
                role=req.role, staff=req.staff, actor=req.actor, kind="reassign", reason=req.reason
            )
            self._set_member(req.role, staff)
            who = "设计师" if req.role == "designer" else "助理设计师"
            self._event(
                "reassigned",
                f"{req.actor.name or '经理'}将{who}改为{staff.name}：{req.reason}",
                actor_id=req.actor.staff_id,
                data={"role": req.role, "staff_id": staff.id, "reason": req.reason},
            )
            self._notify(
                f"assigned:{req.role}:{staff.id}:{self._seq()}",
                f"客户 #{self.s.case_id} 已改由您负责（{who}），原因：{req.reason}",
                recipient=staff,
                summary=f"通知新{who}",
            )
            await self._commit()
            return self.s

    @reassign.validator
    def _validate_reassign(self, req: Reassign) -> None:
        self._check_reassign(req)

    @workflow.update
    async def add_note(self, req: AddNote) -> CaseState:
        """Add a note to the case's timeline."""
        async with self._lock:
            self._check_note(req)
            ev = self._event("note", req.text, actor_id=req.actor.staff_id, data={"by": req.actor.name})
            self.s.notes.append(ev)
            await self._commit()
            return self.s

    @add_note.validator
    def _validate_note(self, req: AddNote) -> None:
        self._check_note(req)

    @workflow.update
    async def close(self, req: CloseCase) -> CaseState:
        """Close the case: signed, lost (with reason) or duplicate."""
        async with self._lock:
            self._check_close(req)
            self._close(req.actor, req.outcome, req.reason)
            await self._commit()
            return self.s

    @close.validator
    def _validate_close(self, req: CloseCase) -> None:
        self._check_close(req)

    # ------------------------------------------------------------------ validation

    def _check_open_case(self) -> None:
        if self.s.status == CaseStatus.closed:
            raise _reject("case_closed", f"案件已结案（{self.s.outcome}），不能再操作")

    def _require_manager(self, actor: Actor) -> None:
        if actor.role != Role.manager:
            raise _reject("wrong_role", "只有设计部经理可以执行此操作", required_role="manager")

    def _check_owner(self, step: OpenStep, actor: Actor) -> None:
        """The step's owner only: role, and for the designer's steps the case's designer."""
        if actor.role != step.owner_role:
            raise _reject(
                "wrong_role",
                f"「{step.label}」由{ROLE_LABELS[step.owner_role]}完成",
                required_role=step.owner_role.value,
            )
        if step.owner_role == Role.designer:
            designer = self.s.designer
            if designer is None or designer.id != actor.staff_id:
                raise _reject("not_your_case", "这不是您负责的客户")

    def _find_open(self, step: StepName) -> OpenStep | None:
        for s in self.s.open_steps:
            if s.step == step:
                return s
        return None

    def _future(self, t: datetime | None, field: str) -> None:
        if t is not None and t.utcoffset() is None:
            raise _reject("invalid_payload", f"{field} 须带时区（如 +08:00）", field=field)
        if t is not None and t <= workflow.now():
            raise _reject("time_in_past", f"{field} 必须是将来的时间", field=field)

    def _payload(self, req: CompleteStep) -> BaseModel:
        model = STEP_PAYLOADS[req.step]
        try:
            return model.model_validate(req.payload)
        except ValidationError as exc:
            errors = [
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ]
            raise _reject("invalid_payload", f"「{STEP_LABELS[req.step]}」的内容不正确", errors=errors) from None

    def _check_complete(self, req: CompleteStep) -> _Checked:
        self._check_open_case()
        open_step = self._find_open(req.step)
        if open_step is None:
            raise _reject(
                "step_not_open",
                f"「{STEP_LABELS[req.step]}」现在不可办理",
                open_steps=[s.step.value for s in self.s.open_steps],
            )
        self._check_owner(open_step, req.actor)
        p = self._payload(req)
        checked = _Checked(open_step, p)
        s = self.s
        if isinstance(p, CallbackPayload) and p.reached:
            self._future(p.meeting_at, "meeting_at")
            if s.scenario == Scenario.office_visit and p.meeting_at is None and s.meeting("meeting") is None:
                raise _reject("invalid_payload", "客户来公司：请填写约定的到店时间 meeting_at", field="meeting_at")
        elif isinstance(p, ContactPayload):
            self._future(p.meeting_at, "meeting_at")
        elif isinstance(p, FirstMeetingPayload):
            self._future(p.measure_at, "measure_at")
        elif isinstance(p, MeasurePayload):
            if p.result == MeasureResult.rescheduled:
                if p.measure_at is None:
                    raise _reject("invalid_payload", "改期请填写新的量房时间 measure_at", field="measure_at")
                self._future(p.measure_at, "measure_at")
        elif isinstance(p, AssignDesignerPayload):
            chosen = p.designer_id or open_step.prefill.get("designer_id")
            if chosen is None:
                raise _reject("invalid_payload", "请选择设计师 designer_id（暂无可推荐的设计师）", field="designer_id")
            checked.assignee = self._staff_ref(req, chosen, Role.designer)
            if checked.assignee is None:
                raise _reject("invalid_assignee", "所选设计师不存在或不可分配", field="designer_id")
            first = open_step.prefill.get("designer_id")
            if first is not None and chosen != first and not (p.reason and p.reason.strip()):
                raise _reject(
                    "reason_required", "所选设计师与首位推荐不同，请填写理由 reason", suggested_designer_id=first
                )
        elif isinstance(p, AssignAssistantPayload):
            chosen_assistant = p.assistant_id or open_step.prefill.get("assistant_id")
            if chosen_assistant is None:
                raise _reject("invalid_payload", "请选择助理设计师 assistant_id（暂无推荐）", field="assistant_id")
            checked.assignee = self._staff_ref(req, chosen_assistant, Role.assistant)
            if checked.assignee is None:
                raise _reject("invalid_assignee", "所选助理设计师不存在或不可分配", field="assistant_id")
        elif isinstance(p, OutcomePayload) and p.outcome == "lost":
            self._require_reason(p.reason)
        return checked

    def _staff_ref(self, req: CompleteStep, staff_id: int, role: Role) -> StaffRef | None:
        for ref in req.staff:
            if ref.id == staff_id and ref.role == role:
                return ref
        step = self._find_open(req.step)
        pre = (step.prefill.get(role.value) if step else None) or None
        if pre and pre.get("id") == staff_id and pre.get("role") == role.value:
            return StaffRef.model_validate(pre)
        return None

    def _check_reschedule(self, req: Reschedule) -> None:
        self._check_open_case()
        s = self.s
        allowed = req.actor.role == Role.manager or (
            (s.designer and s.designer.id == req.actor.staff_id)
            or (s.assistant and s.assistant.id == req.actor.staff_id)
        )
        if not allowed:
            if req.actor.role in (Role.designer, Role.assistant):
                raise _reject("not_your_case", "这不是您负责的客户")
            raise _reject("wrong_role", "只有经理和本案设计师、助理可以改期")
        self._future(req.at, "at")
        if s.meeting(req.target) is None:
            raise _reject("no_meeting", "还没有可改期的预约" if req.target == "meeting" else "还没有预约量房")
        if req.target == "meeting" and self._done(StepName.first_meeting):
            raise _reject("no_meeting", "首次见面已完成，不能再改期")
        if req.target == "measure" and self._done(StepName.measure):
            raise _reject("no_meeting", "量房已完成，不能再改期")

    def _check_reassign(self, req: Reassign) -> None:
        self._check_open_case()
        self._require_manager(req.actor)
        if req.staff.role.value != req.role:
            raise _reject("invalid_assignee", "所选人员的角色不符", field="staff")

    def _check_note(self, req: AddNote) -> None:
        self._check_open_case()
        s = self.s
        ok = req.actor.role in (Role.manager, Role.director, Role.assistant_lead) or (
            (s.designer and s.designer.id == req.actor.staff_id)
            or (s.assistant and s.assistant.id == req.actor.staff_id)
        )
        if not ok:
            raise _reject("not_your_case", "只有经理和本案人员可以添加备注")

    def _check_close(self, req: CloseCase) -> None:
        self._check_open_case()
        self._require_manager(req.actor)
        if req.outcome == Outcome.lost:
            self._require_reason(req.reason)

    def _require_reason(self, reason: str | None) -> None:
        if not (reason and reason.strip()):
            raise _reject("reason_required", "流失请填写原因 reason", field="reason")

    # ------------------------------------------------------------------ state helpers

    def _seq(self) -> int:
        return len(self.s.events) + 1

    def _event(
        self,
        kind: str,
        text: str,
        *,
        actor_id: int | None = None,
        step: StepName | None = None,
        data: dict[str, Any] | None = None,
    ) -> CaseEvent:
        ev = CaseEvent(
            seq=self._seq(),
            at=workflow.now(),
            kind=kind,
            text=text,
            actor_id=actor_id,
            step=step,
            data=data or {},
        )
        self.s.events.append(ev)
        self._changed = True
        return ev

    def _done(self, step: StepName) -> bool:
        return any(d.step == step and d.result in ("done", "auto") for d in self.s.done_steps)

    def _done_set(self) -> set[StepName]:
        return {d.step for d in self.s.done_steps if d.result in ("done", "auto")}

    def _instances(self, step: StepName) -> int:
        s = self.s
        return sum(1 for d in s.done_steps if d.step == step) + sum(1 for o in s.open_steps if o.step == step)

    def _owner_ref(self, spec: StepSpec) -> StaffRef | None:
        if spec.owner == "manager":
            return self.s.manager
        if spec.owner == "case_designer":
            return self.s.designer
        return None

    def _add(self, start: datetime, delta: timedelta, wall_clock: bool) -> datetime:
        return cal.add_time(self.policy.calendar, start, delta, wall_clock=wall_clock)

    def _business(self, t: datetime, wall_clock: bool) -> datetime:
        """Move a moment into working time (nobody is paged at night), unless wall-clock."""
        return t if wall_clock else cal.next_business_moment(self.policy.calendar, t)

    def _due_for(self, spec: StepSpec, now: datetime, opened: datetime | None = None) -> datetime | None:
        """Due time of a step opening now (or, for a duration step, opened at `opened`)."""
        s = self.s
        p = self.policy
        if spec.due == "none":
            return None
        if spec.due in ("meeting", "measure"):
            m = s.meeting(spec.due)
            return (max(m.at, now) if m else now) + p.meeting_grace
        start = opened or now
        if s.scenario == Scenario.walk_in and spec.step in (StepName.assign_designer, StepName.assign_assistant):
            due = start + p.walk_in_assignment
        else:
            due = self._add(start, p.duration(spec.step), spec.wall_clock)
        if spec.before_meeting:
            m = s.meeting("meeting")
            if m is not None and m.at > now:
                due = min(due, m.at)
        return due

    def _set_due(self, step: OpenStep, due: datetime | None, *, level: int = 0) -> None:
        """Give a step a new due time; its escalation chain starts again at `level`."""
        step.due_at = due
        step.escalation_level = level
        step.overdue = level > 0
        step.next_escalation_at = None
        self._plan_escalation(step)

    def _plan_escalation(self, step: OpenStep) -> None:
        """Set when the next rung of the step's escalation chain fires and what it does."""
        if step.due_at is None:
            step.next_escalation_at = None
            step.next_escalation = None
            return
        chain = self.policy.chain(step.step)
        level = step.escalation_level
        if level < len(chain.stages):
            stage = chain.stages[level]
            at = self._business(self._add(step.due_at, stage.after, step.wall_clock), step.wall_clock)
            target = stage.target
        elif chain.repeat_every is not None:
            last = step.next_escalation_at or step.due_at
            at = self._business(self._add(last, chain.repeat_every, step.wall_clock), step.wall_clock)
            target = chain.repeat_target
        else:
            step.next_escalation_at = None
            step.next_escalation = None
            return
        step.next_escalation_at = at
        who = self._target_label(step, target)
        step.next_escalation = f"提醒{who}" if target == "owner" else f"通知{who}"

    def _target(self, step: OpenStep, target: str) -> tuple[StaffRef | None, Role]:
        s = self.s
        if target == "owner":
            return step.owner, step.owner_role
        if target == "director" or step.owner_role == Role.manager:
            return s.director, Role.director
        return s.manager, Role.manager

    def _target_label(self, step: OpenStep, target: str) -> str:
        ref, role = self._target(step, target)
        label = ROLE_LABELS[role]
        if role == Role.manager:
            label = "经理"
        return f"{label}{ref.name}" if ref else label

    def _open_step(self, spec: StepSpec, *, attempt: int | None = None) -> OpenStep:
        now = workflow.now()
        n = attempt or self._instances(spec.step) + 1
        step = OpenStep(
            key=f"{spec.step.value}#{n}",
            step=spec.step,
            label=step_label(spec.step, n),
            owner_role=OWNER_ROLES[spec.owner],
            owner=self._owner_ref(spec),
            attempt=n,
            opened_at=now,
            due_at=self._due_for(spec, now),
            wall_clock=spec.wall_clock,
        )
        self._plan_escalation(step)
        self.s.open_steps.append(step)
        self._event("step_opened", f"开始：{step.label}", step=spec.step, data={"key": step.key})
        if spec.step in _ANNOUNCED_STEPS:
            self._announce(step)
        return step

    def _local(self, t: datetime) -> str:
        return local_time(t, self.policy.calendar.timezone)

    def _announce(self, step: OpenStep) -> None:
        """Tell the owner at once that a step is waiting for them (the manager calls back at once)."""
        s = self.s
        due = f"，{self._local(step.due_at)} 前完成" if step.due_at else ""
        texts = {
            StepName.reception_review: f"新客户 #{s.case_id}（小区办公室接待），请审核接待情况",
            StepName.callback: f"新客户 #{s.case_id}，请立即回访" if step.attempt == 1
            else f"客户 #{s.case_id} 第{step.attempt}次回访，请再次联系客户",
            StepName.assign_designer: f"客户 #{s.case_id} 需要分配设计师"
            + ("（客户已在公司等候）" if s.scenario == Scenario.walk_in else ""),
            StepName.assign_assistant: f"客户 #{s.case_id} 需要安排助理设计师并备案登记"
            + ("（客户已在公司等候）" if s.scenario == Scenario.walk_in else ""),
            StepName.debrief: f"客户 #{s.case_id} 首次见面已完成，请听录音复盘并讲评",
        }
        who = "助理负责人" if step.owner_role == Role.assistant_lead else "经理"
        self._notify(
            f"open:{step.key}",
            texts[step.step] + due,
            recipient=step.owner,
            role=step.owner_role,
            summary=f"{step.label} → 通知{who}",
        )

    async def _after_opening(self) -> None:
        """Work that needs activities once steps are open (suggestions for a new assignment)."""
        for o in list(self.s.open_steps):
            if o.step == StepName.assign_designer and not o.prefill:
                await self._prefill_designer(o)
            elif o.step == StepName.assign_assistant and not o.prefill:
                await self._prefill_assistant(o)

    def _finish_step(
        self, step: OpenStep, *, actor_id: int | None, result: str = "done", payload: dict[str, Any] | None = None
    ) -> DoneStep:
        now = workflow.now()
        self.s.open_steps = [o for o in self.s.open_steps if o.key != step.key]
        done = DoneStep(
            key=step.key,
            step=step.step,
            label=step.label,
            attempt=step.attempt,
            owner_role=step.owner_role,
            opened_at=step.opened_at,
            due_at=step.due_at,
            completed_at=now,
            completed_by=actor_id,
            on_time=step.due_at is None or now <= step.due_at,
            escalation_level=step.escalation_level,
            result=result,
            payload=payload or {},
        )
        self.s.done_steps.append(done)
        self._changed = True
        return done

    async def _open_unlocked(self) -> None:
        done = self._done_set()
        open_now = {o.step for o in self.s.open_steps}
        for spec in self.g.unlocked_by(done):
            if spec.step in open_now:
                continue
            # A callback not reached waits for its retry timer, not for its dependencies.
            if spec.step == StepName.callback and self.s.callback_retry_at is not None:
                continue
            self._open_step(spec)
        await self._after_opening()

    def _set_member(self, role: str, staff: StaffRef) -> None:
        s = self.s
        if role == "designer":
            s.designer = staff
            for o in s.open_steps:
                if o.owner_role == Role.designer:  # the case designer's steps follow the case
                    o.owner = staff
        else:
            s.assistant = staff
        self._changed = True

    def _notify(
        self,
        purpose: str,
        text: str,
        *,
        recipient: StaffRef | None = None,
        role: Role | None = None,
        summary: str,
    ) -> None:
        if purpose in self.s.sent:
            return
        self.s.sent.append(purpose)
        self.s.pending_effects.append(
            PendingEffect(
                kind="notify",
                summary=summary,
                notify=NotifyStaff(
                    case_id=self.s.case_id,
                    purpose=purpose,
                    recipient_id=recipient.id if recipient else None,
                    recipient_role=None if recipient else (role or Role.manager),
                    text=text,
                ),
            )
        )
        self._changed = True

    def _client_sms(
        self,
        template: Literal["T1", "T2", "T3", "T4"],
        summary: str,
        *,
        purpose: str | None = None,
        at: datetime | None = None,
        kind: MeetingKind | None = None,
        manager_id: int | None = None,
        name_assistant: bool = True,
    ) -> None:
        """Queue an SMS to the client, once per purpose; names the case's designer and assistant."""
        s = self.s
        purpose = purpose or template
        if purpose in s.sent:
            return
        s.sent.append(purpose)
        assistant = s.assistant if name_assistant else None
        req = SendSms(
            case_id=s.case_id,
            purpose=purpose,
            template=template,
            designer_id=s.designer.id if s.designer else None,
            assistant_id=assistant.id if assistant else None,
            include_assistant=assistant is not None,
            manager_id=manager_id,
            at=at,
            meeting_kind=kind,
            timezone=self.policy.calendar.timezone,
        )
        s.pending_effects.append(PendingEffect(kind="sms", summary=summary, sms=req))
        self._event("sms_queued", f"短信{template}：{summary}", data={"purpose": purpose})

    # ------------------------------------------------------------------ completing steps

    async def _complete(self, req: CompleteStep, checked: _Checked) -> None:
        s = self.s
        step, p, actor = checked.step, checked.payload, req.actor
        payload = p.model_dump(mode="json")
        text = f"{actor.name or ROLE_LABELS[actor.role]}完成：{step.label}"
        if req.notes:
            text += f"（{req.notes}）"

        if isinstance(p, CallbackPayload):
            if not p.reached:
                self._finish_step(step, actor_id=actor.staff_id, result="not_reached", payload=payload)
                self._event("callback_not_reached", f"回访未接通（第{step.attempt}次）", actor_id=actor.staff_id,
                            step=step.step, data={"notes": req.notes})
                s.callback_attempts = step.attempt
                if step.attempt < self.policy.callback_max_attempts:
                    s.callback_retry_at = self._business(
                        self._add(workflow.now(), self.policy.callback_retry_interval, False), False
                    )
                else:
                    # Out of attempts: reopen at once, already escalated to the manager's superior.
                    spec = self.g.spec(StepName.callback)
                    assert spec is not None
                    new = self._open_step(spec, attempt=step.attempt + 1)
                    self._set_due(new, workflow.now(), level=len(self.policy.chain(StepName.callback).stages))
                    self._event("escalation", f"回访{step.attempt}次未接通 → 通知总经理", step=step.step,
                                data={"key": new.key, "level": new.escalation_level, "target": "director"})
                    self._notify(
                        f"callback_exhausted:{step.attempt}",
                        f"客户 #{s.case_id} 经理回访已 {step.attempt} 次未接通，请决定继续跟进或结案",
                        recipient=s.director,
                        role=Role.director,
                        summary="回访多次未接通 → 通知总经理",
                    )
                return
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            s.callback_retry_at = None
            s.designer_level = p.designer_level or s.designer_level
            s.car = p.car or s.car
            meeting = s.meeting("meeting")
            kind = p.meeting_kind or (meeting.kind if meeting else None) or (
                MeetingKind.office_visit if s.scenario == Scenario.office_visit else MeetingKind.measure
            )
            if p.meeting_at is not None:
                self._set_meeting("meeting", kind, p.meeting_at)
            elif meeting is not None and meeting.kind != kind:
                meeting.kind = kind
            self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
        elif isinstance(p, AssignDesignerPayload):
            ref = checked.assignee
            assert ref is not None
            first = step.prefill.get("designer_id")
            staff = await self._record_assignment(
                role="designer",
                staff=ref,
                actor=actor,
                kind="assign",
                reason=p.reason,
                suggested_id=first,
            )
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._set_member("designer", staff)
            self._event("designer_assigned", f"{actor.name or '经理'}分配设计师：{staff.name}",
                        actor_id=actor.staff_id, step=step.step,
                        data={"designer_id": staff.id, "suggested_id": first, "reason": p.reason})
            self._tell_designer(staff)
        elif isinstance(p, AssignAssistantPayload):
            ref = checked.assignee
            assert ref is not None
            staff = await self._record_assignment(role="assistant", staff=ref, actor=actor, kind="assign")
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._set_member("assistant", staff)
            self._event("assistant_assigned", f"分配助理设计师并备案：{staff.name}",
                        actor_id=actor.staff_id, step=step.step, data={"assistant_id": staff.id})
            self._notify(
                f"assigned:assistant:{staff.id}",
                f"客户 #{s.case_id} 已分配给您（助理设计师），设计师：{s.designer.name if s.designer else '待定'}",
                recipient=staff,
                summary="通知助理设计师",
            )
        elif isinstance(p, ContactPayload):
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._set_meeting("meeting", p.meeting_kind, p.meeting_at)
            self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
            self._client_sms(
                "T1", "设计师自我介绍短信", at=p.meeting_at, kind=p.meeting_kind,
                name_assistant=self.g.t1_names_assistant,
            )
        elif isinstance(p, FirstMeetingPayload):
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            meeting = s.meeting("meeting")
            if meeting:
                meeting.status = "done"
            self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
            if meeting is not None and meeting.kind == MeetingKind.measure:
                # The first meeting was the measure itself: no second visit opens.
                s.meetings.append(Meeting(which="measure", kind=MeetingKind.measure, at=meeting.at, status="done"))
                spec = self.g.spec(StepName.measure)
                assert spec is not None
                self._finish_step(self._open_step(spec), actor_id=actor.staff_id, result="auto",
                                  payload={"result": "done", "with": "first_meeting"})
                self._event("measure_done", "首次见面即量房，量房完成", actor_id=actor.staff_id, step=StepName.measure)
            elif p.measure_at is not None:
                self._set_meeting("measure", MeetingKind.measure, p.measure_at)
                spec = self.g.spec(StepName.measure)
                assert spec is not None
                self._open_step(spec)
                self._client_sms("T2", "量房预约确认短信", at=p.measure_at, kind=MeetingKind.measure)
        elif isinstance(p, MeasurePayload):
            meeting = s.meeting("measure")
            if p.result == MeasureResult.done:
                self._finish_step(step, actor_id=actor.staff_id, payload=payload)
                if meeting:
                    meeting.status = "done"
                self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
            elif p.result == MeasureResult.rescheduled:
                assert p.measure_at is not None
                self._do_reschedule(actor, "measure", p.measure_at, req.notes)
            else:
                if meeting:
                    meeting.status = "no_show"
                self._event("measure_no_show", "量房客户爽约，请设计师重新约定时间", actor_id=actor.staff_id,
                            step=step.step, data={"notes": req.notes})
                self._set_due(step, self._add(workflow.now(), self.policy.duration(StepName.contact), False))
                self._notify(
                    f"measure_no_show:{self._seq()}",
                    f"客户 #{s.case_id} 量房爽约，设计师{s.designer.name if s.designer else ''}需重新约定",
                    recipient=s.manager,
                    role=Role.manager,
                    summary="量房爽约 → 通知经理",
                )
        elif isinstance(p, DebriefPayload):
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
            self._client_sms("T3", "经理感谢短信", manager_id=actor.staff_id)
        elif isinstance(p, OutcomePayload):
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._close(actor, Outcome(p.outcome), p.reason)
            return
        else:  # reception_review, arrival
            self._finish_step(step, actor_id=actor.staff_id, payload=payload)
            self._event("step_done", text, actor_id=actor.staff_id, step=step.step, data=payload)
            if step.step == StepName.arrival:
                m = s.meeting("meeting")
                if m is not None and m.at > workflow.now():
                    m.at = workflow.now()  # the client came early: the meeting is now
        await self._open_unlocked()

    def _tell_designer(self, staff: StaffRef) -> None:
        s = self.s
        m = s.meeting("meeting")
        when = ""
        if m is not None:
            when = f"，约定{MEETING_KIND_LABELS[m.kind]} {self._local(m.at)}"
        self._notify(
            f"assigned:designer:{staff.id}",
            f"新客户 #{s.case_id} 已分配给您{when}，请尽快联系客户",
            recipient=staff,
            summary="通知设计师新客户",
        )

    def _set_meeting(self, which: str, kind: MeetingKind, at: datetime) -> None:
        s = self.s
        m = s.meeting(which)
        if m is not None and m.status == "scheduled":
            m.status = "cancelled"
        s.meetings.append(Meeting(which=which, kind=kind, at=at))  # type: ignore[arg-type]
        self._changed = True

    def _do_reschedule(self, actor: Actor, which: str, at: datetime, reason: str | None) -> None:
        s = self.s
        old = s.meeting(which)
        assert old is not None
        self._set_meeting(which, old.kind, at)
        label = "量房" if which == "measure" else "首次见面"
        self._event(
            "rescheduled",
            f"{actor.name or ROLE_LABELS[actor.role]}将{label}改期到 {self._local(at)}"
            + (f"：{reason}" if reason else ""),
            actor_id=actor.staff_id,
            data={"which": which, "at": at.isoformat(), "from": old.at.isoformat(), "reason": reason},
        )
        for o in s.open_steps:
            spec = self.g.spec(o.step)
            assert spec is not None
            if spec.due == which:
                self._set_due(o, self._due_for(spec, workflow.now()))
            elif which == "meeting" and spec.before_meeting:
                # Assignments due before the visit follow the visit (an office visit moved earlier).
                self._set_due(o, self._due_for(spec, workflow.now(), opened=o.opened_at))

    def _close(self, actor: Actor, outcome: Outcome, reason: str | None) -> None:
        s = self.s
        for o in list(s.open_steps):
            self._finish_step(o, actor_id=actor.staff_id, result="cancelled")
        for m in s.meetings:
            if m.status == "scheduled":
                m.status = "cancelled"
        s.status = CaseStatus.closed
        s.outcome = outcome
        s.outcome_reason = reason
        s.closed_at = workflow.now()
        s.callback_retry_at = None
        self._event(
            "closed",
            f"结案：{OUTCOME_LABELS[outcome]}" + (f"（{reason}）" if reason else ""),
            actor_id=actor.staff_id,
            data={"outcome": outcome.value, "reason": reason},
        )

    # ------------------------------------------------------------------ allocation

    async def _prefill_designer(self, step: OpenStep) -> None:
        s = self.s
        received = s.received_by
        if s.scenario == Scenario.site_office and received is not None and received.role == Role.designer:
            # The on-duty designer who took the client at the compound office.
            step.prefill = {"designer_id": received.id, "designer": received.model_dump(mode="json"),
                            "reasons": ["小区办公室值班接待的设计师"]}
            return
        m = s.meeting("meeting")
        suggestions = await self._suggest(
            ACT_SUGGEST_DESIGNERS,
            SuggestDesigners(
                case_id=s.case_id,
                scenario=s.scenario,
                required_level=Level(s.designer_level or self.policy.level_for_budget(s.budget)),
                meeting_at=m.at if m else None,
                compound=s.compound,
                max_open_by_level=dict(self.policy.max_open_cases),
                timezone=self.policy.calendar.timezone,
            ),
            "推荐设计师（轮单）",
        )
        step.prefill = _prefill("designer", suggestions, "暂无符合条件的设计师")
        if self.policy.auto_assign_designer and suggestions:
            top = suggestions[0].staff
            staff = await self._record_assignment(
                role="designer", staff=top, actor=None, kind="auto", reason="系统按轮单自动分配", suggested_id=top.id
            )
            self._finish_step(step, actor_id=None, payload={"designer_id": staff.id, "auto": True})
            self._set_member("designer", staff)
            self._event("designer_assigned", f"系统自动分配设计师：{staff.name}", step=step.step,
                        data={"designer_id": staff.id, "auto": True})
            self._tell_designer(staff)
            await self._open_unlocked()

    async def _prefill_assistant(self, step: OpenStep) -> None:
        """Suggest the assistant with the fewest open cases; the assistant lead decides."""
        suggestions = await self._suggest(
            ACT_SUGGEST_ASSISTANTS, SuggestAssistants(case_id=self.s.case_id), "推荐助理设计师（在手最少）"
        )
        step.prefill = _prefill("assistant", suggestions, "暂无可安排的助理设计师")

    async def _suggest(self, activity: str, arg: BaseModel, summary: str) -> list[Suggestion]:
        """Ranked suggestions from the database; none when the lookup fails (the owner then chooses)."""
        try:
            suggestions: list[Suggestion] = await workflow.execute_activity(
                activity,
                arg,
                start_to_close_timeout=_DB_TIMEOUT,
                retry_policy=_SUGGEST_RETRY,
                result_type=list[Suggestion],
                summary=summary,
            )
        except ActivityError:
            return []
        return suggestions

    async def _record_assignment(
        self,
        *,
        role: str,
        staff: StaffRef,
        actor: Actor | None,
        kind: str,
        reason: str | None = None,
        suggested_id: int | None = None,
    ) -> StaffRef:
        s = self.s
        decided_by = actor.staff_id if actor else (s.manager.id if s.manager else staff.id)
        try:
            result: StaffRef = await workflow.execute_activity(
                ACT_RECORD_ASSIGNMENT,
                RecordAssignment(
                    case_id=s.case_id,
                    event_key=f"{role}:{self._seq()}:{staff.id}",
                    role=role,  # type: ignore[arg-type]
                    staff_id=staff.id,
                    decided_by=decided_by,
                    kind=kind,  # type: ignore[arg-type]
                    suggested_id=suggested_id,
                    reason=reason,
                ),
                start_to_close_timeout=_DB_TIMEOUT,
                retry_policy=_DB_RETRY,
                result_type=StaffRef,
                summary="登记分配（分配台账）" if role == "designer" else "助理备案登记",
            )
        except ActivityError as exc:
            failure = _business_failure(exc)
            if failure is None or failure.type is None:
                raise
            raise _reject(failure.type, failure.message) from None
        return result

    # ------------------------------------------------------------------ agenda (timers)

    def _next_agenda_item(self) -> _AgendaItem | None:
        items = self._agenda()
        return min(items, key=lambda i: i.at) if items else None

    def _agenda(self) -> list[_AgendaItem]:
        """Everything the case waits for in time, each with what to do then (derived from the state)."""
        s = self.s
        p = self.policy
        now = workflow.now()
        items: list[_AgendaItem] = []
        for o in s.open_steps:
            if o.next_escalation_at is not None and o.next_escalation:
                verb = "到期" if o.escalation_level == 0 else "超时"
                items.append(_AgendaItem(o.next_escalation_at, f"{STEP_LABELS[o.step]}{verb} → {o.next_escalation}",
                                         partial(self._escalate, o)))
        if s.callback_retry_at is not None:
            items.append(_AgendaItem(s.callback_retry_at, f"回访未接通 → 第{s.callback_attempts + 1}次回访",
                                     self._retry_callback))
        # Reminders before meetings; a rescheduled meeting has a new time, hence new purposes.
        contact_pending = self.g.spec(StepName.contact) is not None and not self._done(StepName.contact)
        for m in s.meetings:
            if m.status != "scheduled" or m.at <= now:
                continue
            when = m.at.isoformat()
            purpose = f"T4:{m.which}:{when}"
            # The client hears from the designer (T1) before being reminded of the meeting.
            if s.designer is not None and not (m.which == "meeting" and contact_pending) and purpose not in s.sent:
                at = cal.latest_business_moment_at_or_before(p.calendar, m.at - p.client_reminder_before)
                items.append(_AgendaItem(max(at, now), "见面前一天 → 短信提醒客户", partial(
                    self._client_sms, "T4", "见面前提醒客户", purpose=purpose, at=m.at, kind=m.kind)))
            for who, before in (("designer", p.staff_reminder_before), ("assistant", p.staff_reminder_before),
                                ("manager", p.manager_reminder_before)):
                purpose = f"remind:{m.which}:{when}:{who}"
                if who == "manager" and (m.which != "meeting" or m.kind != MeetingKind.office_visit):
                    continue  # the manager receives office visits only
                if purpose not in s.sent and (who == "manager" or getattr(s, who) is not None):
                    items.append(_AgendaItem(max(m.at - before, now), f"见面前提醒{_WHO[who]}",
                                             partial(self._remind_staff, purpose, m, who)))
        outcome = self._find_open(StepName.outcome)
        if outcome is not None and s.designer is not None:
            for i, after in enumerate(p.followups, start=1):
                purpose = f"followup:{i}"
                if purpose not in s.sent:
                    summary = f"等待签单 → 第{i}次跟进提醒设计师"
                    items.append(_AgendaItem(self._business(outcome.opened_at + after, False), summary, partial(
                        self._notify, purpose,
                        f"客户 #{s.case_id} 仍在等待签单结果（第{i}次跟进），请跟进客户并向经理汇报",
                        recipient=s.designer, role=Role.designer, summary=summary)))
        return items

    def _escalate(self, step: OpenStep) -> None:
        """The next rung of a late step's chain: remind the owner, or tell their superior."""
        s = self.s
        chain = self.policy.chain(step.step)
        level = step.escalation_level
        target = chain.stages[level].target if level < len(chain.stages) else chain.repeat_target
        recipient, role = self._target(step, target)
        step.escalation_level = level + 1
        step.overdue = True
        who = self._target_label(step, target)
        due = self._local(step.due_at) if step.due_at else ""
        owner = step.owner.name if step.owner else ROLE_LABELS[step.owner_role]
        if target == "owner":
            text = f"提醒：客户 #{s.case_id}「{step.label}」已到期（{due}），请尽快办理"
            ev_text = f"{STEP_LABELS[step.step]}到期 → 提醒{who}"
        else:
            text = f"升级：客户 #{s.case_id}「{step.label}」已超时（到期 {due}，负责人 {owner}），请督办"
            ev_text = f"{STEP_LABELS[step.step]}超时 → 通知{who}"
        self._event("escalation", ev_text, step=step.step,
                    data={"key": step.key, "level": step.escalation_level, "target": target,
                          "recipient_id": recipient.id if recipient else None})
        self._notify(f"esc:{step.key}:{step.escalation_level}", text, recipient=recipient, role=role,
                     summary=ev_text)
        self._plan_escalation(step)

    def _retry_callback(self) -> None:
        """A callback that did not reach the client opens again."""
        self.s.callback_retry_at = None
        spec = self.g.spec(StepName.callback)
        assert spec is not None
        self._open_step(spec, attempt=self.s.callback_attempts + 1)

    def _remind_staff(self, purpose: str, m: Meeting, who: str) -> None:
        """Before a meeting: designer and assistant to be on time; the manager to receive an office visit."""
        s = self.s
        at = self._local(m.at)
        if who == "manager":
            self._notify(purpose, f"客户 #{s.case_id} 将于 {at} 到店，请准备接待：{RECEPTION_CHECKLIST}",
                         recipient=s.manager, role=Role.manager, summary="到店前提醒经理接待")
            return
        what = "量房" if m.which == "measure" else f"首次见面（{MEETING_KIND_LABELS[m.kind]}）"
        self._notify(purpose, f"提醒：客户 #{s.case_id} 的{what}在 {at}，请准时到达",
                     recipient=s.designer if who == "designer" else s.assistant, role=Role(who),
                     summary=f"会前提醒{_WHO[who]}")

    async def _run_effect(self, effect: PendingEffect) -> None:
        """Hand one queued message to the outbox; the outbox makes a retry a no-op."""
        try:
            if effect.kind == "sms" and effect.sms is not None:
                await workflow.execute_activity(
                    ACT_SEND_SMS, effect.sms, start_to_close_timeout=self.policy.send_attempt_timeout,
                    retry_policy=_SEND_RETRY, summary=effect.summary,
                )
                self._event("sms_sent", f"已发短信：{effect.summary}", data={"purpose": effect.sms.purpose})
            elif effect.notify is not None:
                await workflow.execute_activity(
                    ACT_NOTIFY_STAFF, effect.notify, start_to_close_timeout=self.policy.send_attempt_timeout,
                    retry_policy=_SEND_RETRY, summary=effect.summary,
                )
        except ActivityError as exc:
            # Non-retryable (the provider refused it): recorded in the outbox and the timeline.
            purpose = effect.sms.purpose if effect.sms else (effect.notify.purpose if effect.notify else "")
            self._event("message_failed", f"消息发送失败：{effect.summary}（{exc.cause or exc}）",
                        data={"purpose": purpose})
        self.s.pending_effects = self.s.pending_effects[1:]
        await self._commit()

    # ------------------------------------------------------------------ visibility

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

    def _upsert_search_attributes(self) -> None:
        """Search attributes as the state says; upserted only when one changed (each upsert is an event)."""
        s = self.s
        designer = str(s.designer.id) if s.designer else None
        assistant = str(s.assistant.id) if s.assistant else None
        values = (s.stage, s.source, s.scenario, s.overdue, s.escalation_level, designer, assistant, s.step_due_at)
        if values == self._last_sa:
            return
        self._last_sa = values
        workflow.upsert_search_attributes(
            [
                SA_STAGE.value_set(s.stage),
                SA_SOURCE.value_set(s.source.value),
                SA_SCENARIO.value_set(s.scenario.value),
                SA_OVERDUE.value_set(s.overdue),
                SA_ESCALATION_LEVEL.value_set(s.escalation_level),
                SA_DESIGNER.value_set(designer) if designer else SA_DESIGNER.value_unset(),
                SA_ASSISTANT.value_set(assistant) if assistant else SA_ASSISTANT.value_unset(),
                SA_STEP_DUE_AT.value_set(s.step_due_at) if s.step_due_at else SA_STEP_DUE_AT.value_unset(),
            ]
        )

    async def _commit(self, within: timedelta | None = None) -> None:
        """Recompute derived fields, update what the UI shows, and sync the PostgreSQL projection."""
        s = self.s
        self._refresh_derived()
        s.version += 1
        self._upsert_search_attributes()
        workflow.set_current_details(current_details(s, self.policy.calendar.timezone))
        await workflow.execute_activity(
            ACT_SYNC_PROJECTION,
            SyncProjection(state=s),
            start_to_close_timeout=_DB_TIMEOUT,
            schedule_to_close_timeout=within,
            retry_policy=_DB_RETRY,
            summary="同步案件视图",
        )
