"""IntakeWorkflow (type "IntakeCase"): one durable workflow per client case.

Every decision is made by the pure case engine (domain/engine.py); this class only feeds it commands
and fired timers, records the result and hands on what it decided.

Updates (each with a validator, so a rejected one leaves no trace in the history); each answers with
the CaseChange it decided (the new head of the case, new events, the messages and ledger rows):
    complete_step(CompleteStep)   reschedule(Reschedule)   reassign(Reassign)
    add_note(AddNote)             close(CloseCase)         attach_recording(AttachRecording)
    transfer(TransferCase)        (another branch: the search attribute `Branch` follows at once)
Query:
    state() -> CaseState

Timing. An update answers as soon as the engine has decided: nothing waits on an activity. The API
writes the change it got back to PostgreSQL (projection, outbox, ledger) before it answers staff; the
workflow writes the same change again `projection_grace` later (a no-op when the API did), so a crash
between the two loses nothing. What timers change (escalations, reminders) the workflow writes at once.
Writing runs beside the case, never in front of it: a database that is down delays the projection,
not a timer or an update. Messages are delivered by the outbox dispatcher, outside the workflow.

One timer is armed at a time, for the earliest thing the case waits for, and is only replaced when
that moment changes, so the UI timeline of a case reads as its story ("回访到期 → 提醒经理 …").
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.allocation import AllocationActivities
    from activities.projection import ProjectionActivities
    from domain import engine
    from domain.constants import (
        SA_ASSISTANT,
        SA_BRANCH,
        SA_DESIGNER,
        SA_ESCALATION_LEVEL,
        SA_OVERDUE,
        SA_SCENARIO,
        SA_SOURCE,
        SA_STAGE,
        SA_STEP_DUE_AT,
        WORKFLOW_TYPE,
        workflow_id,
    )
    from domain.enums import CaseStatus, StepName
    from domain.models import (
        AddNote,
        AttachRecording,
        CaseChange,
        CaseState,
        CloseCase,
        CompleteStep,
        IntakeInput,
        Reassign,
        Reschedule,
        SuggestDesigners,
        Suggestion,
        TransferCase,
        WrittenCheck,
    )
    from domain.policy import Policy
    from domain.tracking import current_details

# Writing the projection retries until the database answers (each attempt is idempotent), at most
# policy.projection_retry_max apart.
_WRITE_RETRY_FIRST = timedelta(seconds=1)
_WRITE_TIMEOUT = timedelta(seconds=30)
_SUGGEST_RETRY = RetryPolicy(maximum_attempts=3)
# One patch (one marker in a new history) for what issue 20 changed in the commands a case issues:
# search attributes follow the workflow's own writes instead of every update, and that write first
# asks whether the API wrote the change already. Histories without the marker replay the old commands.
SMALLER_HISTORY = "smaller-history"


def _sa_values(s: CaseState) -> tuple[Any, ...]:
    designer = str(s.designer.id) if s.designer else None
    assistant = str(s.assistant.id) if s.assistant else None
    return (s.stage, s.source, s.scenario, s.overdue, s.escalation_level, designer, assistant, s.step_due_at)


@workflow.defn(name=WORKFLOW_TYPE)
class IntakeWorkflow:
    """One client case from first lead to outcome. See the module docstring for its messages."""

    @workflow.init
    def __init__(self, inp: IntakeInput) -> None:
        # SPEC §13: a workflow whose input names another case (an input copied from that case's
        # history, started under another id) must never write to that case. Pure comparison: no command.
        self._forged = workflow.info().workflow_id != workflow_id(inp.case_id)
        # Built here, not in run(): an update may be delivered in the very first workflow task.
        self.inp = inp.model_copy(update={"state": None})
        self.policy: Policy = inp.policy
        self._unwritten: CaseChange | None = None  # decided, not yet written by this workflow
        self._unwritten_by_api = False  # every part of it the API writes too (the opening, updates)
        self._updated = inp.state is not None  # an update was decided: the API's write confirmed the case
        self._write_due: datetime | None = None
        self._urgent = False
        self._writing = False
        self._written_seq = 0
        self._dirty = False
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None
        self._auto_asked: set[str] = set()
        self._ticked_at: datetime | None = None
        if inp.state is None:
            decision = engine.start(inp)
            self.s = decision.state
            # Written by the API at creation too, but unconfirmed: only the workflow's write (or an
            # update's, written by the API) opens the case.
            self._queue(decision.change, urgent=False, by_api=True)
            # The API started the case with these search attributes: no upsert event for them.
            self._last_sa: tuple[Any, ...] | None = _sa_values(self.s)
        else:
            self.s = inp.state  # continued as new: everything before is written already
            self._written_seq = self.s.event_seq
            self._last_sa = None

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, inp: IntakeInput) -> CaseState:
        """Drive the case until it is closed and written; returns its final head (without its history)."""
        # Fail before any command (search attributes, writes). `patched` is asked only when the ids
        # differ, so a real case's history gains no marker; a Replayer that names a saved history by
        # its file (not its workflow id) finds no marker there and replays the recorded path.
        if self._forged and workflow.patched("refuse-foreign-case-id"):
            raise ApplicationError(
                f"工作流 {workflow.info().workflow_id} 不是案例 {self.inp.case_id} 的流程", type="case_id_mismatch",
                non_retryable=True,
            )
        self._show()
        while self.s.status != CaseStatus.closed:
            now = workflow.now()
            items = engine.agenda(self.s, now=now, policy=self.policy)
            if items and items[0].at <= now and self._ticked_at != now:
                self._ticked_at = now  # once per workflow task: a bug in the agenda cannot spin here
                self._record(engine.tick(self.s, now=now, policy=self.policy), urgent=True)
                continue
            auto = engine.auto_assign_step(self.s, self.policy)
            if auto is not None and auto not in self._auto_asked:
                # Asked once per step: with no suggestion the manager assigns by hand.
                self._auto_asked.add(auto)
                asyncio.create_task(self._auto_assign())
            if self._continue_as_new_due():
                # Write everything first, so the next run starts with nothing unwritten.
                self._urgent = True
                self._maybe_write(now)
                if workflow.all_handlers_finished() and not self._writing and self._unwritten is None:
                    engine.trim_events(self.s, projected_seq=self._written_seq, keep=self.policy.events_kept)
                    workflow.continue_as_new(self.inp.model_copy(update={"state": self.s}))
            self._maybe_write(now)
            wake: list[tuple[datetime, str]] = [(i.at, i.summary) for i in items[:1]]
            if self._unwritten is not None and not self._writing and self._write_due is not None:
                wake.append((self._write_due, "核对案件视图"))
            at, summary = min(wake) if wake else (None, "")
            self._arm(at, summary)
            self._dirty = False
            await workflow.wait_condition(lambda: self._dirty)

        # Closed: let running handlers answer, then make sure the end is written before completing.
        self._arm(None, "")
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._urgent = True
        while self._unwritten is not None or self._writing:
            self._maybe_write(workflow.now())
            self._dirty = False
            await workflow.wait_condition(lambda: self._dirty)
        return engine.head(self.s)

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() > self.policy.continue_as_new_after_events
        )

    # ------------------------------------------------------------------ query

    @workflow.query
    def state(self) -> CaseState:
        """The whole case: stage, open steps, assignments, meetings, recent events."""
        return self.s

    # ------------------------------------------------------------------ updates

    @workflow.update
    async def complete_step(self, req: CompleteStep) -> CaseChange:
        """Complete an open step with its payload."""
        return self._decide(req)

    @complete_step.validator
    def _validate_complete(self, req: CompleteStep) -> None:
        self._check(req)

    @workflow.update
    async def reschedule(self, req: Reschedule) -> CaseChange:
        """Move the first meeting or the measure to a new time."""
        return self._decide(req)

    @reschedule.validator
    def _validate_reschedule(self, req: Reschedule) -> None:
        self._check(req)

    @workflow.update
    async def reassign(self, req: Reassign) -> CaseChange:
        """Change the case's designer or assistant, with a reason."""
        if any(o.step == StepName.lapse_review for o in self.s.open_steps) and not workflow.patched(
            "rearm-first-meeting-on-reassign"
        ):
            req = req.model_copy(update={"rearm_first_meeting": False})  # decided before the rule
        return self._decide(req)

    @reassign.validator
    def _validate_reassign(self, req: Reassign) -> None:
        self._check(req)

    @workflow.update
    async def add_note(self, req: AddNote) -> CaseChange:
        """Add a note to the case's timeline."""
        return self._decide(req)

    @add_note.validator
    def _validate_note(self, req: AddNote) -> None:
        self._check(req)

    @workflow.update
    async def attach_recording(self, req: AttachRecording) -> CaseChange:
        """Put a stored recording (its number only) on the case's timeline."""
        return self._decide(req)

    @attach_recording.validator
    def _validate_recording(self, req: AttachRecording) -> None:
        self._check(req)

    @workflow.update
    async def close(self, req: CloseCase) -> CaseChange:
        """Close the case: signed, lost (with reason) or duplicate."""
        return self._decide(req)

    @close.validator
    def _validate_close(self, req: CloseCase) -> None:
        self._check(req)

    @workflow.update
    async def transfer(self, req: TransferCase) -> CaseChange:
        """Move the case to another branch: its open steps go to the new branch's people."""
        change = self._decide(req)
        if not change.duplicate:
            # New in issue 22, so no recorded history holds this handler: the `Branch` search attribute
            # (set at start) follows the case at once, outside `_sa_values`, whose upserts old histories
            # recorded key by key.
            workflow.upsert_search_attributes([SA_BRANCH.value_set(self.s.branch)])
        return change

    @transfer.validator
    def _validate_transfer(self, req: TransferCase) -> None:
        self._check(req)

    def _check(self, cmd: engine.Command) -> None:
        # Validators do not run on replay: refusing here changes no recorded history.
        if self._forged:
            raise ApplicationError("此流程的案例编号与流程编号不符", type="case_id_mismatch", non_retryable=True)
        try:
            engine.check(self.s, cmd, now=workflow.now(), policy=self.policy)
        except engine.Rejected as exc:
            raise ApplicationError(exc.message, exc.details, type=exc.code, non_retryable=True) from None

    def _decide(self, cmd: engine.Command) -> CaseChange:
        # No await between the validator and here, and none in the engine: handlers cannot interleave.
        try:
            decision = engine.decide(self.s, cmd, now=workflow.now(), policy=self.policy)
        except engine.Rejected as exc:
            raise ApplicationError(exc.message, exc.details, type=exc.code, non_retryable=True) from None
        if not decision.change.duplicate:
            self._updated = True
            self._record(decision, urgent=False, by_api=True)
        return decision.change

    # ------------------------------------------------------------------ recording and writing

    def _record(self, decision: engine.Decision, *, urgent: bool, by_api: bool = False) -> None:
        """Take a decision's state; queue its change for writing (at once when a timer made it)."""
        self.s = decision.state
        self._queue(decision.change, urgent=urgent, by_api=by_api)
        # An update's search attributes wait for the workflow's own write (one upsert for the changes
        # of a grace period, not one per step); what a timer decided (late, escalated: what the UI's
        # stuck-case lists look for) and the close are shown at once.
        self._show(upsert=urgent or self.s.status == CaseStatus.closed or not workflow.patched(SMALLER_HISTORY))
        self._dirty = True

    def _queue(self, change: CaseChange, *, urgent: bool, by_api: bool) -> None:
        self._unwritten_by_api = by_api and (self._unwritten is None or self._unwritten_by_api)
        self._unwritten = engine.combine(self._unwritten, change)
        if self._write_due is None:
            # The first unwritten change sets the check time; later updates do not push it back.
            self._write_due = workflow.now() + self.policy.projection_grace
        self._urgent = self._urgent or urgent or change.head.status == CaseStatus.closed

    def _maybe_write(self, now: datetime) -> None:
        if self._writing or self._unwritten is None:
            return
        if self._urgent or (self._write_due is not None and now >= self._write_due):
            self._writing = True
            asyncio.create_task(self._write())

    async def _write(self) -> None:
        """Write what this workflow decided and has not written yet; retries until the database answers."""
        try:
            while self._unwritten is not None:
                change, self._unwritten = self._unwritten, None
                by_api, self._unwritten_by_api = self._unwritten_by_api, False
                due, self._write_due, self._urgent = self._write_due, None, False
                self._show(upsert=True)  # what updates left unshown (no command when nothing changed)
                retry = RetryPolicy(
                    initial_interval=_WRITE_RETRY_FIRST,
                    maximum_interval=max(self.policy.projection_retry_max, _WRITE_RETRY_FIRST),
                )
                try:
                    # What only updates decided the API has almost always written: ask (a few bytes of
                    # history) before sending the change itself (the whole case, for a quick one). A
                    # write before its grace period is over (the close) gives the API the rest of it.
                    ask = by_api and self._updated and workflow.patched(SMALLER_HISTORY)
                    left = (due - workflow.now()).total_seconds() if due is not None else 0.0
                    check = WrittenCheck.of(change, wait_seconds=left) if ask else None
                    written = check is not None and await workflow.execute_activity_method(
                        ProjectionActivities.projection_written,
                        check,
                        start_to_close_timeout=_WRITE_TIMEOUT + timedelta(seconds=check.wait_seconds),
                        retry_policy=retry,
                        summary="核对案件视图",
                    )
                    if not written:
                        await workflow.execute_activity_method(
                            ProjectionActivities.apply_change,
                            change,
                            start_to_close_timeout=_WRITE_TIMEOUT,
                            retry_policy=retry,
                            summary="写入案件视图与待发消息",
                        )
                except ActivityError as exc:
                    # Refused for good (a value the schema rejects): logged; the case goes on.
                    workflow.logger.error("case %s: change v%s not written: %s", self.s.case_id, change.version, exc)
                if change.events:
                    self._written_seq = max(self._written_seq, change.events[-1].seq)
                engine.trim_events(self.s, projected_seq=self._written_seq, keep=self.policy.events_kept)
        finally:
            self._writing = False
            self._dirty = True

    async def _auto_assign(self) -> None:
        """Where the company lets the system assign: ask the database for the rotation's first designer."""
        s = self.s
        m = s.meeting("meeting")
        try:
            suggestions: list[Suggestion] = await workflow.execute_activity_method(
                AllocationActivities.suggest_designers,
                SuggestDesigners(
                    case_id=s.case_id, scenario=s.scenario,
                    required_level=engine.required_level(s, self.policy, s.budget),
                    meeting_at=m.at if m else None, compound=s.compound,
                    max_open_by_level=dict(self.policy.max_open_cases), timezone=self.policy.calendar.timezone,
                ),
                start_to_close_timeout=_WRITE_TIMEOUT,
                retry_policy=_SUGGEST_RETRY,
                summary="推荐设计师（轮单）",
            )
        except ActivityError:
            suggestions = []  # the manager assigns by hand
        if suggestions and self.s.status == CaseStatus.open:
            self._record(engine.auto_assign(self.s, suggestions[0].staff, now=workflow.now(), policy=self.policy),
                         urgent=False)

    # ------------------------------------------------------------------ timer and visibility

    def _arm(self, at: datetime | None, summary: str) -> None:
        """One timer for the earliest moment the case waits for, replaced only when that moment changes."""
        if at == self._timer_at and (at is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            delay = max((at - workflow.now()).total_seconds(), 0.001)
            self._timer = asyncio.create_task(self._sleep(delay, summary))

    async def _sleep(self, delay: float, summary: str) -> None:
        try:
            await workflow.sleep(delay, summary=summary)
        except asyncio.CancelledError:
            return
        self._timer, self._timer_at = None, None
        self._dirty = True

    def _show(self, *, upsert: bool = True) -> None:
        """Search attributes (only those that changed: each upsert is an event; none unless `upsert`)
        and the UI's details."""
        s = self.s
        values = _sa_values(s)
        before = self._last_sa or (None,) * len(values)
        if upsert and values != before:
            self._last_sa = values
            keys: tuple[Any, ...] = (SA_STAGE, SA_SOURCE, SA_SCENARIO, SA_OVERDUE, SA_ESCALATION_LEVEL, SA_DESIGNER, SA_ASSISTANT,
                    SA_STEP_DUE_AT)
            updates: list[Any] = []
            for key, new, old in zip(keys, values, before, strict=True):
                if new == old:
                    continue
                if new is None:
                    updates.append(key.value_unset())
                else:
                    updates.append(key.value_set(new.value if hasattr(new, "value") else new))
            workflow.upsert_search_attributes(updates)
        # Not a command: the details may change freely (and carry workflow.now()) without touching replay.
        workflow.set_current_details(current_details(s, self.policy.calendar.timezone, workflow.now()))
