"""Typed inputs and outputs shared by the workflow, the activities and the API.

Client personal data (name, phone, address) never enters these models: it stays in PostgreSQL and
is read where it is needed (SMS rendering into the outbox). Temporal histories are stored unencrypted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from domain.enums import (
    CaseStatus,
    Level,
    MeasureResult,
    MeetingKind,
    Outcome,
    Role,
    Scenario,
    Source,
    StepName,
)
from domain.policy import Policy


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The rules a new case runs by. A case keeps the version it started with (in its input and state), so
# a workflow started under older rules replays and runs on exactly as it did:
#   1  the engine before issue 16 (what a case without the field runs by)
#   2  the company's day (SPEC §14): 情况二 assignments due at the visit, T4 spacing and the manager's
#      T4, T5 after a change of designer or assistant, reclaim only of an uncalled contact (a late first
#      meeting asks the manager), the musts by where the first meeting is
ENGINE_VERSION = 2


# --- staff -------------------------------------------------------------------------------------


class Actor(_Model):
    """Who acts: the authenticated staff member, as the API resolved the bearer token."""

    staff_id: int
    role: Role
    name: str = ""
    # The manager (id) this person acts for as their deputy on the case (SPEC §13, §14).
    deputy_for: int | None = None

    @property
    def id(self) -> int:
        """The staff id (so an actor is a permissions.Person)."""
        return self.staff_id


class StaffRef(_Model):
    """A staff member as a case shows it (id and name only)."""

    id: int
    name: str
    role: Role
    level: Level | None = None


def field_error(field: str, message: str) -> PydanticCustomError:
    """A rule across fields that one field answers for: the field in the error's context (a form shows
    the message beside it), the message naming it for callers of the JSON API."""
    return PydanticCustomError("value_error", message, {"field": field})


# --- step payloads (SPEC §3) -------------------------------------------------------------------


class ReceptionReviewPayload(_Model):
    """审核接待情况：接待人员汇报的情况；需要时纠正接待人员（通知对方并由其确认）。"""

    report: str = Field(default="", description="接待人员汇报的情况")
    corrections: str = Field(
        default="", max_length=2000,
        description="对接待人员（小区负责人、值班设计师或助理设计师）的纠正；填写后通知对方并由其确认改正",
    )


class CallbackPayload(_Model):
    """经理回访：是否接通；接通时约定的见面时间、方式、设计师级别和人选、到店车辆。"""

    reached: bool = Field(description="是否接通")
    meeting_at: datetime | None = Field(default=None, description="约定见面时间")
    meeting_kind: MeetingKind | None = Field(default=None, description="量房 measure / 到店 office_visit")
    designer_level: Level | None = Field(default=None, description="与客户约定的设计师级别")
    designer_id: int | None = Field(
        default=None, ge=1,
        description="与客户约定的设计师ID；填写后同时完成「分配设计师」（与首位推荐不同时须说明理由）",
    )
    reason: str | None = Field(default=None, max_length=500, description="所选设计师与首位推荐不同的理由")
    car: str | None = Field(default=None, description="到店客户的车辆（车牌/车型），便于安排车位")


class AssignDesignerPayload(_Model):
    """分配设计师：设计师ID；与首位推荐不同时说明理由。"""

    designer_id: int | None = Field(default=None, description="设计师ID；省略时采用预填/首位推荐")
    reason: str | None = Field(default=None, description="与首位推荐不同时必须说明理由")


class AssignAssistantPayload(_Model):
    """分配助理设计师（备案登记）。"""

    assistant_id: int | None = Field(default=None, description="助理设计师ID；省略时采用首位推荐（在手最少）")


class ContactPayload(_Model):
    """设计师联系客户：确认的见面时间与方式（完成后发送 T1 短信）。"""

    meeting_at: datetime = Field(description="与客户确认的见面时间")
    meeting_kind: MeetingKind = Field(description="量房 measure / 到店 office_visit")


# The manager's reception checklist for a client at the company (seed 二a/c, B a), in the order done.
RECEPTION_ITEMS: dict[str, str] = {
    "gum": "口香糖清口",
    "recorder": "录音笔",
    "greeted_at_door": "门口迎接",
    "business_card": "递名片",
    "water": "安排前台倒水",
}


class ReceptionChecklist(_Model):
    """接待清单：客户到店时经理做到了哪几项。"""

    gum: bool = Field(default=False, description="口香糖清口")
    recorder: bool = Field(default=False, description="打开录音笔")
    greeted_at_door: bool = Field(default=False, description="门口迎接")
    business_card: bool = Field(default=False, description="递名片")
    water: bool = Field(default=False, description="安排前台倒水")

    def missed(self) -> list[str]:
        """The Chinese names of the items not done."""
        return [label for key, label in RECEPTION_ITEMS.items() if not getattr(self, key)]


# 情况三 b: no suitable designer on duty; whoever received the client at the compound office (site lead
# or assistant designer) records what the procedure requires of them, in its order.
SITE_MUSTS: dict[str, str] = {
    "told_better_designers": "告知客户公司有更好的设计师为其服务",
    "basic_needs": "了解客户的基本需求",
    "phone_kept": "留下客户的联系电话",
    "told_will_call": "告诉客户设计部经理和设计师会与其联系",
}


class SiteReceptionMusts(_Model):
    """小区办公室接待四必须（情况三b，没有合适的值班设计师时由接待人员记录）。"""

    told_better_designers: bool = Field(description="已告知客户公司有更好的设计师为其服务")
    basic_needs: str = Field(min_length=1, max_length=2000, description="客户的基本需求（必填）")
    phone_kept: bool = Field(description="已留下客户的联系电话")
    told_will_call: bool = Field(description="已告诉客户设计部经理和设计师会与其联系")

    @model_validator(mode="after")
    def _needs(self) -> SiteReceptionMusts:
        if not self.basic_needs.strip():
            raise field_error("basic_needs", "请填写客户的基本需求 basic_needs")
        return self

    def missed(self) -> list[str]:
        """The Chinese names of the musts not done."""
        return [label for key, label in SITE_MUSTS.items() if key != "basic_needs" and not getattr(self, key)]


class ArrivalPayload(ReceptionChecklist):
    """客户到店：接待清单（口香糖清口、录音笔、门口迎接、递名片、安排前台倒水）做到了哪几项。"""


# First meeting musts (seed 二f): each answered; a "no" needs its reason. The visits' reasons are the
# engine's to require: at a home measure (version 2) the visits are invited, not done (SPEC §14).
_MUST_REASONS = (("measure_agreed", "measure_reason", "未约定量房时间"),)
VISIT_REASONS = (
    ("visited_site", "site_reason", "未参观在施工地"),
    ("visited_material_store", "material_store_reason", "未参观材料库"),
)


class FirstMeetingPayload(_Model):
    """首次见面四必须：真正需求、约定量房时间、参观在施工地、参观材料库（做不到须说明原因）；送客户到门外。"""

    true_needs: str = Field(min_length=1, description="客户真正需求")
    measure_agreed: bool = Field(description="是否约定了量房时间（首次见面即量房时填“是”）")
    measure_at: datetime | None = Field(default=None, description="约定的量房时间（约定时必填，首次见面即量房除外）")
    measure_reason: str | None = Field(default=None, max_length=500, description="未约定量房时间的原因")
    visited_site: bool = Field(description="是否参观在施工地")
    site_reason: str | None = Field(default=None, max_length=500, description="未参观在施工地的原因")
    visited_material_store: bool = Field(description="是否参观材料库")
    material_store_reason: str | None = Field(default=None, max_length=500, description="未参观材料库的原因")
    site_visit_at: datetime | None = Field(
        default=None, description="上门量房时：邀约参观在施工地的时间（不填为暂未约定）")
    material_store_visit_at: datetime | None = Field(
        default=None, description="上门量房时：邀约参观材料库的时间（不填为暂未约定）")
    seen_off: bool = Field(description="是否送客户到门外")

    @model_validator(mode="after")
    def _reasons(self) -> FirstMeetingPayload:
        if not self.true_needs.strip():
            raise field_error("true_needs", "请填写客户真正需求 true_needs")
        for flag, reason, label in _MUST_REASONS:
            if not getattr(self, flag) and not (getattr(self, reason) or "").strip():
                raise field_error(reason, f"{label}，请填写原因 {reason}")
        if not self.measure_agreed and self.measure_at is not None:
            raise field_error("measure_at", "未约定量房却填写了量房时间 measure_at")
        return self


class LapseReviewPayload(_Model):
    """首次见面超时处理：收回重新分配（掉保），或写明原因延期到新的时间。"""

    decision: Literal["reclaim", "extend"] = Field(description="收回 reclaim / 延期 extend")
    reason: str | None = Field(default=None, max_length=500, description="原因（延期时必填）")
    until: datetime | None = Field(default=None, description="延期到（延期时必填，须是将来的时间）")


class MeasurePayload(_Model):
    """量房：完成、改期（新的时间）或客户爽约。"""

    result: MeasureResult
    measure_at: datetime | None = Field(default=None, description="改期后的量房时间（result=rescheduled）")


class DebriefPayload(_Model):
    """复盘讲评：录音复盘发现，对设计师和助理的纠正（各自收到通知并确认改正；完成后发送 T3 短信）。"""

    findings: str = Field(min_length=1, description="录音复盘发现")
    designer_corrections: str = Field(default="", max_length=2000, description="对设计师的纠正（通知设计师并由其确认）")
    assistant_corrections: str = Field(
        default="", max_length=2000, description="对助理设计师的纠正（通知助理设计师并由其确认）"
    )


class AcknowledgePayload(_Model):
    """确认纠正：被纠正的人记录并确认改正。"""

    note: str = Field(default="", max_length=2000, description="记录与改正说明")


class OutcomePayload(_Model):
    """签单结果：签单 signed，或流失 lost（须填原因）。"""

    outcome: Literal["signed", "lost"]
    reason: str | None = None


STEP_PAYLOADS: dict[StepName, type[BaseModel]] = {
    StepName.reception_review: ReceptionReviewPayload,
    StepName.callback: CallbackPayload,
    StepName.assign_designer: AssignDesignerPayload,
    StepName.assign_assistant: AssignAssistantPayload,
    StepName.contact: ContactPayload,
    StepName.arrival: ArrivalPayload,
    StepName.first_meeting: FirstMeetingPayload,
    StepName.measure: MeasurePayload,
    StepName.debrief: DebriefPayload,
    StepName.acknowledge: AcknowledgePayload,
    StepName.outcome: OutcomePayload,
    StepName.lapse_review: LapseReviewPayload,
}


# --- updates -----------------------------------------------------------------------------------


class CompleteStep(_Model):
    """Complete an open step with its payload (validated against :data:`STEP_PAYLOADS`)."""

    actor: Actor
    step: StepName
    payload: dict[str, Any] = Field(default_factory=dict)
    notes: str | None = None
    # Names of staff the payload refers to, resolved by the API from PostgreSQL (designer, assistant).
    staff: list[StaffRef] = Field(default_factory=list)
    # The first suggestion (轮单 / fewest open cases) as the API ranked it when the manager decided:
    # the default choice, and the one a different choice must give a reason against.
    first_suggestion: StaffRef | None = None
    request_id: str | None = None  # Idempotency-Key: a repeat is answered, never applied twice


class Reschedule(_Model):
    """Move the first meeting or the measure (any owner)."""

    actor: Actor
    target: Literal["meeting", "measure"]
    at: datetime
    reason: str | None = None
    request_id: str | None = None


class Reassign(_Model):
    """Change the case's designer or assistant (manager, with a reason)."""

    actor: Actor
    role: Literal["designer", "assistant"]
    staff: StaffRef
    reason: str = Field(min_length=1)
    request_id: str | None = None
    # A new designer while the manager is asked about a late first meeting answers that question; the
    # first meeting's clock then starts again for the new designer. False only when the workflow replays
    # a history decided before this rule (the meeting then waited for nothing).
    rearm_first_meeting: bool = True


class AddNote(_Model):
    """A note on the case's timeline."""

    actor: Actor
    text: str = Field(min_length=1)
    request_id: str | None = None


class AttachRecording(_Model):
    """A recording the API stored (file and metadata in PostgreSQL): put on the case's timeline.

    Only its number, type and size enter the workflow; the file name (often the client's name) does not.
    """

    actor: Actor
    recording_id: int
    content_type: str
    size: int
    request_id: str | None = None


class CloseCase(_Model):
    """Close the case: signed, lost (with reason) or duplicate (manager)."""

    actor: Actor
    outcome: Outcome
    reason: str | None = None
    request_id: str | None = None


class TransferCase(_Model):
    """Move the case to another branch (分公司/门店: the client moved), with a reason: its open steps go to
    the new branch's manager, designer and assistant (the director or a regional manager decides)."""

    actor: Actor
    branch_id: int
    branch: str  # the new branch's code (the Temporal search attribute `Branch`)
    branch_name: str = ""
    from_branch_name: str = ""
    manager: StaffRef | None = None  # the new branch's manager (None: the steps wait for its managers)
    designer: StaffRef | None = None  # the new branch's designer, when the case has one
    assistant: StaffRef | None = None  # the new branch's assistant designer, when the case has one
    reason: str = Field(min_length=1, max_length=500)
    request_id: str | None = None


# --- workflow input and state ------------------------------------------------------------------


class IntakeInput(_Model):
    """The one input of IntakeWorkflow. `state` is set only when continuing as new."""

    case_id: int
    source: Source
    scenario: Scenario
    created_at: datetime
    created_by: StaffRef
    manager: StaffRef | None = None
    director: StaffRef | None = None
    received_by: StaffRef | None = None
    compound: str | None = None
    budget: int | None = None
    meeting_at: datetime | None = None
    meeting_kind: MeetingKind | None = None
    # Walk-ins: the reception checklist as done when the client came in (the creation is the arrival).
    reception: ReceptionChecklist | None = None
    # 情况三 b: the receiver's four musts when no suitable designer was on duty (shown in the review).
    site_musts: SiteReceptionMusts | None = None
    policy: Policy
    state: CaseState | None = None
    # Started by the reconciler after the API could not (the case row was there, its workflow not).
    repaired: bool = False
    # The rules the case runs by (see ENGINE_VERSION); absent in cases started before version 2.
    engine_version: int = 1
    # A returning client (查重): why the case is linked to an earlier one, for the timeline (no client data).
    returning: str | None = None
    # The branch (分公司/门店) that received the lead: id and code. Absent before branches: branch 1, main.
    branch_id: int = 1
    branch: str = "main"


class OpenStep(_Model):
    """A step waiting to be done: owner, due time, overdue flag, escalation level and what comes next."""

    key: str  # unique per instance, e.g. "callback#2"
    step: StepName
    label: str
    owner_role: Role
    owner: StaffRef | None = None
    attempt: int = 1
    opened_at: datetime
    due_at: datetime | None = None
    wall_clock: bool = False
    overdue: bool = False
    escalation_level: int = 0
    next_escalation_at: datetime | None = None
    next_escalation: str | None = None  # Chinese: what happens then
    # Escalation stopped repeating (policy limit): the director was told once, no more timers.
    stalled: bool = False
    prefill: dict[str, Any] = Field(default_factory=dict)


class DoneStep(_Model):
    """A finished step instance: when, by whom, on time or not, with its payload."""

    key: str
    step: StepName
    label: str
    attempt: int = 1
    owner_role: Role
    opened_at: datetime
    due_at: datetime | None = None
    completed_at: datetime
    completed_by: int | None = None
    on_time: bool = True
    escalation_level: int = 0
    result: str = "done"  # done | not_reached | rescheduled | no_show | cancelled
    payload: dict[str, Any] = Field(default_factory=dict)


class CaseEvent(_Model):
    """One line of a case's timeline (audit)."""

    seq: int
    at: datetime
    kind: str
    text: str  # Chinese, what staff read in the timeline
    actor_id: int | None = None
    step: StepName | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Meeting(_Model):
    """An agreed first meeting or measure, with its status."""

    which: Literal["meeting", "measure"]
    kind: MeetingKind
    at: datetime
    status: Literal["scheduled", "done", "no_show", "cancelled"] = "scheduled"


class PendingEffect(_Model):
    """A message the workflow still has to hand to the outbox (survives continue-as-new)."""

    kind: Literal["sms", "notify"]
    summary: str  # Chinese activity summary for the UI timeline
    sms: SendSms | None = None
    notify: NotifyStaff | None = None


class CaseState(_Model):
    """The whole case as the workflow knows it (query result; the projection's source)."""

    case_id: int
    workflow_id: str
    source: Source
    scenario: Scenario
    stage: str
    status: CaseStatus = CaseStatus.open
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    created_at: datetime
    closed_at: datetime | None = None
    manager: StaffRef | None = None
    director: StaffRef | None = None
    designer: StaffRef | None = None
    assistant: StaffRef | None = None
    received_by: StaffRef | None = None
    compound: str | None = None
    budget: int | None = None
    designer_level: Level | None = None
    car: str | None = None
    reception: ReceptionChecklist | None = None  # what the manager did when the client came in
    site_musts: SiteReceptionMusts | None = None  # 情况三 b: what the compound office's receiver did
    recordings: list[int] = Field(default_factory=list)  # recording ids attached (files in PostgreSQL/storage)
    lapsed: list[int] = Field(default_factory=list)  # designers whose case was reclaimed (掉保)
    meetings: list[Meeting] = Field(default_factory=list)
    open_steps: list[OpenStep] = Field(default_factory=list)
    done_steps: list[DoneStep] = Field(default_factory=list)
    events: list[CaseEvent] = Field(default_factory=list)
    notes: list[CaseEvent] = Field(default_factory=list)
    callback_attempts: int = 0
    callback_retry_at: datetime | None = None
    sent: list[str] = Field(default_factory=list)  # purposes already decided (exactly once per purpose)
    pending_effects: list[PendingEffect] = Field(default_factory=list)  # unused since the engine (v2)
    event_seq: int = 0  # last event number given (events themselves are trimmed once projected)
    handled: list[str] = Field(default_factory=list)  # recent request ids (Idempotency-Key), bounded
    overdue: bool = False
    escalation_level: int = 0
    step_due_at: datetime | None = None
    version: int = 0
    engine_version: int = 1  # the rules the case runs by (ENGINE_VERSION when it started)
    # When each meeting was last announced to the client (T1/T2/T5), by "which:time": no T4 follows
    # within the policy's spacing (version 2).
    announced: dict[str, datetime] = Field(default_factory=dict)
    # The designer the client knew before a change (reassignment or reclaim): T5 names them (version 2).
    handover_from: StaffRef | None = None
    # The case's branch (分公司/门店), id and code; a transfer changes both. Absent before branches: main.
    branch_id: int = 1
    branch: str = "main"

    def meeting(self, which: str) -> Meeting | None:
        """The current (latest, not cancelled) meeting of a kind."""
        for m in reversed(self.meetings):
            if m.which == which and m.status != "cancelled":
                return m
        return None




# --- decisions ---------------------------------------------------------------------------------


class Effects(_Model):
    """What a decision asks of the outside world; each keyed, so doing it twice does nothing."""

    sms: list[SendSms] = Field(default_factory=list)
    notices: list[NotifyStaff] = Field(default_factory=list)
    assignments: list[RecordAssignment] = Field(default_factory=list)
    transfers: list[RecordTransfer] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sms or self.notices or self.assignments or self.transfers)

    def extend(self, other: Effects) -> None:
        """Append another decision's effects."""
        self.sms += other.sms
        self.notices += other.notices
        self.assignments += other.assignments
        self.transfers += other.transfers


class CaseChange(_Model):
    """What one decision (or a batch of them) changed: written to the projection, idempotently.

    `head` is the case as it now stands without its history (no events, done steps, notes or sent
    purposes); `finished` and `events` are only what is new; so neither an update's answer nor the
    projection activity's input carries the whole case.
    """

    case_id: int
    version: int
    head: CaseState
    finished: list[DoneStep] = Field(default_factory=list)
    events: list[CaseEvent] = Field(default_factory=list)
    effects: Effects = Field(default_factory=Effects)
    duplicate: bool = False  # the request id was seen before: nothing was applied now


# --- activity inputs ---------------------------------------------------------------------------


class SendSms(_Model):
    """Send one client SMS of a template, exactly once per (case, purpose)."""

    case_id: int
    purpose: str  # e.g. "T1", "T2", "T3", "T4:meeting:2026-11-27T02:00:00+00:00", "T5:contact#2"
    template: Literal["T1", "T2", "T3", "T4", "T5"]
    designer_id: int | None = None  # T4 without a designer is signed by the manager (情况二 before the visit)
    previous_designer_id: int | None = None  # T5: the designer whose work was handed over
    assistant_id: int | None = None
    manager_id: int | None = None
    at: datetime | None = None  # the meeting / measure time the text names
    meeting_kind: MeetingKind | None = None
    include_assistant: bool = True
    timezone: str = "Asia/Shanghai"  # the case's calendar: how the text writes the time


class NotifyStaff(_Model):
    """Tell one staff member (or the first active one of a role) something, once per (case, purpose)."""

    case_id: int
    purpose: str  # e.g. "esc:callback#1:2"
    recipient_id: int | None = None
    recipient_role: Role | None = None
    text: str
    # Rendered by the outbox writer from PostgreSQL at enqueue time (client details stay out of Temporal);
    # `text` is the fallback without client data.
    template: Literal["designer_assigned"] | None = None
    # Goes out at once even outside the recipient's working hours (policy urgent_steps, walk-ins).
    urgent: bool = False
    # A notice to a role: the role in this branch (the case's). None (decided before branches): the chain's.
    branch_id: int | None = None

    def role_key(self) -> str | None:
        """Whom a notice to a role asks for (intake_outbox_staff's "role" or "role:branch"); None when named."""
        if self.recipient_id is not None or self.recipient_role is None:
            return None
        role = self.recipient_role.value
        return role if self.branch_id is None else f"{role}:{self.branch_id}"


class RecordAssignment(_Model):
    """Allocation ledger row (designer) or registration row (assistant, 备案登记)."""

    case_id: int
    event_key: str
    role: Literal["designer", "assistant"]
    staff_id: int
    decided_by: int
    # lapse: the designer let the case lapse (掉保) and it was reclaimed; counted against them.
    kind: Literal["assign", "reassign", "auto", "lapse"]
    suggested_id: int | None = None
    reason: str | None = None


class RecordTransfer(_Model):
    """A row of the transfers ledger (case_transfers): the case moved from one branch to another."""

    case_id: int
    event_key: str
    from_branch_id: int
    to_branch_id: int
    decided_by: int
    reason: str


class WrittenCheck(_Model):
    """Is a change already in PostgreSQL? Its version and the unbroken run of timeline entries it added
    (the API writes each decided change in one transaction, so its entries show the whole change).
    `wait_seconds`: how long the API may still be writing it (what is left of its grace period)."""

    case_id: int
    version: int
    first_seq: int
    last_seq: int
    wait_seconds: float = 0.0

    @classmethod
    def of(cls, change: CaseChange, *, wait_seconds: float = 0.0) -> WrittenCheck | None:
        """The check for `change`; None when its entries cannot prove it (none, or not one run)."""
        seqs = [e.seq for e in change.events]
        if not seqs or seqs != list(range(seqs[0], seqs[0] + len(seqs))):
            return None
        return cls(case_id=change.case_id, version=change.version, first_seq=seqs[0], last_seq=seqs[-1],
                   wait_seconds=max(wait_seconds, 0.0))


class SuggestDesigners(_Model):
    """Input of `suggest_designers`: what the case needs of its designer."""

    case_id: int
    scenario: Scenario
    required_level: Level
    meeting_at: datetime | None = None
    compound: str | None = None
    exclude_case_from_counts: bool = True
    max_open_by_level: dict[Level, int] | None = None  # the case's policy table
    timezone: str = "Asia/Shanghai"  # the case's calendar: when designers are in the office


class SuggestAssistants(_Model):
    """Input of `suggest_assistants`: the case the assistant is for (its own count is excluded)."""

    case_id: int


class Suggestion(_Model):
    """One suggested designer or assistant, ranked, with the reasons."""

    staff: StaffRef
    rank: int
    reasons: list[str]
    open_cases: int
    last_assigned_at: datetime | None = None


PendingEffect.model_rebuild()
CaseState.model_rebuild()
IntakeInput.model_rebuild()
Effects.model_rebuild()
CaseChange.model_rebuild()
