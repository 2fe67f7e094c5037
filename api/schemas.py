"""Request and response models of the HTTP API: what /docs shows staff and the company's other systems.

Requests reject unknown fields (a typo is a 422, not a silently ignored value). Times without a
time zone are read as Beijing time (Asia/Shanghai), the company's clock.
"""

from __future__ import annotations

import re
from datetime import date as date_type
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from domain import phone
from domain.enums import (
    Gender,
    Level,
    MeetingKind,
    Outcome,
    Role,
    Scenario,
    Source,
    StaffStatus,
    StepName,
)
from domain.models import (
    CaseEvent,
    DoneStep,
    Meeting,
    OpenStep,
    ReceptionChecklist,
    SiteReceptionMusts,
    StaffRef,
)
from domain.morning import MorningFigures
from store.branches import Branch
from store.staff import wecom_userid_error

COMPANY_TZ = ZoneInfo("Asia/Shanghai")
MIN_YEAR, MAX_YEAR = 1900, 2200
MAX_ID = 2**53  # ids beyond this are not ours (and would overflow PostgreSQL bigint far later)

Id = Annotated[int, Field(ge=1, le=MAX_ID)]

# A branch (分公司/门店) as staff name it in requests: its code (store.branches.BRANCH_CODE).
BranchCode = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="分公司代码",
               examples=["main", "hz"]),
]


def _no_nul(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL; reject it here instead of failing deep in a query.
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("nul_character", "文本不能包含 NUL 字符")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k)
            _no_nul(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _no_nul(v)
    return value


def localize(value: datetime) -> datetime:
    """A time without a zone is Beijing time."""
    return value.replace(tzinfo=COMPANY_TZ) if value.tzinfo is None or value.utcoffset() is None else value


def _iso_only(value: Any) -> Any:
    # A query string like "0.5" or "1700000000" would be read as seconds since 1970 (pydantic accepts
    # Unix times): refuse anything that is not an ISO 8601 date or date-time, as the schema says.
    if isinstance(value, str) and not re.match(r"^\d{4}-\d{2}-\d{2}", value.strip()):
        raise PydanticCustomError("iso_datetime", "时间须为 ISO 8601 格式，例如 2030-05-01T10:00:00+08:00")
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise PydanticCustomError("iso_datetime", "时间须为 ISO 8601 格式，例如 2030-05-01T10:00:00+08:00")
    return value


# A time in a query string or body: ISO 8601 only (never a Unix number).
IsoTime = Annotated[datetime, BeforeValidator(_iso_only)]


def query_time(value: datetime | None, name: str) -> datetime | None:
    """A time from a query string: Beijing time when it has no zone; a filter bound far outside the
    years any case can have (before 1900, after 2200) is clamped to them: it simply matches nothing
    more (the schema's date-time allows any year, so refusing it would refuse a valid request)."""
    if value is None:
        return None
    value = localize(value)
    low = datetime(MIN_YEAR, 1, 1, tzinfo=ZoneInfo("UTC"))
    high = datetime(MAX_YEAR, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("UTC"))
    try:
        utc = value.astimezone(ZoneInfo("UTC"))
    except OverflowError:
        return low if value.year < MIN_YEAR + 1 else high
    return min(max(utc, low), high)


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields and NUL characters are rejected, naive times are Beijing time."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_nul(cls, data: Any) -> Any:
        return _no_nul(data)

    @model_validator(mode="after")
    def _localize_times(self) -> Any:
        for name in type(self).model_fields:
            v = getattr(self, name)
            if isinstance(v, datetime):
                v = localize(v)
                if not MIN_YEAR <= v.year <= MAX_YEAR:
                    raise PydanticCustomError("time_out_of_range", f"{name}: 时间超出范围（{MIN_YEAR}–{MAX_YEAR} 年）")
                setattr(self, name, v)
        return self


# --- phone numbers -------------------------------------------------------------------------------

def normalize_phone(raw: str) -> str:
    """The domain rule (domain.phone), answered as a pydantic error with the Chinese message staff read."""
    try:
        return phone.normalize_phone(raw)
    except ValueError:
        raise PydanticCustomError(
            "invalid_phone", "手机号不正确：应为 11 位中国大陆手机号 1[3-9]XXXXXXXXX（可带 +86、空格或短横线）"
        ) from None


Phone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="中国大陆手机号 1[3-9]XXXXXXXXX；自动去掉空格、括号、短横线和 +86 / 0086 / 86 前缀",
        examples=["138 1234 5678"],
        # The schema states the rule; the validator below enforces it with the message staff read.
        json_schema_extra={"pattern": phone.INPUT_PATTERN},
    ),
    AfterValidator(normalize_phone),
]


# --- creating a case ----------------------------------------------------------------------------


class ClientIn(RequestModel):
    """The client as the receiving staff member recorded them."""

    name: str = Field(min_length=1, max_length=50, description="客户姓名", examples=["王建国"])
    phone: Phone
    second_phone: Phone | None = Field(
        default=None, description="第二联系电话（如配偶）；查重时与所有案例的两个电话比对")
    gender: Gender = Field(default=Gender.unknown, description="male 先生 / female 女士 / unknown")
    age_range: str | None = Field(default=None, max_length=20, description="年龄段", examples=["30-40"])
    compound: str | None = Field(default=None, max_length=100, description="小区", examples=["阳光花园"])
    address: str | None = Field(default=None, max_length=200, description="房屋地址", examples=["3栋2单元1201"])
    area_m2: float | None = Field(default=None, gt=0, le=100_000, description="面积（平方米）", examples=[120])
    budget: int | None = Field(default=None, ge=0, le=10**11, description="装修预算（元）", examples=[300000])

    @model_validator(mode="after")
    def _strip(self) -> ClientIn:
        if not self.name.strip():
            raise PydanticCustomError("blank_name", "客户姓名不能为空")
        self.name = self.name.strip()
        return self


class IntakeCreate(RequestModel):
    """A new client (one case per client phone while open)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source": "marketing",
                    "scenario": "remote",
                    "client": {
                        "name": "王建国",
                        "phone": "+86 138-1234-5678",
                        "gender": "male",
                        "age_range": "30-40",
                        "compound": "阳光花园",
                        "address": "3栋2单元1201",
                        "area_m2": 120,
                        "budget": 300000,
                    },
                    "notes": "客户想做现代简约风格，周末方便",
                }
            ]
        },
    )

    source: Source = Field(description="来源：marketing 市场部 / online 网销 / walk_in 自然客户 / site_office 小区办公室")
    scenario: Scenario = Field(
        description="情况：remote 情况一（未到过公司）/ office_visit 情况二（来公司）/ site_office 情况三 / walk_in 自然客户"
    )
    client: ClientIn
    meeting_at: datetime | None = Field(default=None, description="已约定的见面时间（须在将来）")
    meeting_kind: MeetingKind | None = Field(default=None, description="measure 量房 / office_visit 到店")
    received_by: Id | None = Field(
        default=None,
        description="接待人员（员工ID）；小区办公室为小区负责人、值班设计师或助理设计师，省略则为创建人",
    )
    reception: ReceptionChecklist | None = Field(
        default=None,
        description="自然客户到店时的接待清单（口香糖清口、录音笔、门口迎接、递名片、安排前台倒水）；仅 walk_in",
    )
    site_musts: SiteReceptionMusts | None = Field(
        default=None,
        description="情况三b 没有合适的值班设计师时，接待人员的四必须：告知有更好的设计师、基本需求（必填）、"
        "留下电话、告知经理和设计师会联系；仅 site_office，经理审核接待时可见",
    )
    notes: str | None = Field(default=None, max_length=2000, description="备注")
    branch_id: Id | None = Field(
        default=None,
        description="客户所属分公司（ID）：总部或区域人员在其负责的分公司中选择；省略则为接待人员所在分公司，否则为创建人所在分公司",
    )


# --- updates --------------------------------------------------------------------------------------


class RescheduleRequest(RequestModel):
    """Move the meeting or the measure (量房) to a new time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"target": "measure", "at": "2030-05-02T14:00:00+08:00", "reason": "客户临时出差"}]},
    )

    target: Literal["meeting", "measure"] = Field(description="meeting 见面 / measure 量房")
    at: datetime = Field(description="新的时间（须在将来）")
    reason: str | None = Field(default=None, max_length=500, description="改期原因")


class TransferRequest(RequestModel):
    """Move a case to another branch (the client moved); the director or a regional manager."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"branch": "hz", "reason": "客户搬到杭州，由杭州分公司跟进"}]},
    )

    branch: BranchCode = Field(description="接手的分公司（代码）")
    reason: str = Field(min_length=1, max_length=500, description="转分公司的原因（记入转移记录）")
    designer_id: Id | None = Field(
        default=None, description="接手的设计师（新分公司的员工ID）；本案已有设计师时省略则按轮单取新分公司的首位推荐")
    assistant_id: Id | None = Field(
        default=None, description="接手的助理设计师（新分公司的员工ID）；本案已有助理时省略则取新分公司在手最少的助理")


class ReassignRequest(RequestModel):
    """Change the case's designer or assistant designer."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"role": "designer", "staff_id": 12, "reason": "原设计师请假"}]},
    )

    role: Literal["designer", "assistant"] = Field(description="designer 设计师 / assistant 助理设计师")
    staff_id: Id = Field(description="新的负责人（员工ID）")
    reason: str = Field(min_length=1, max_length=500, description="调整原因（必填）")


class CloseRequest(RequestModel):
    """Close the case: signed 签单, lost 流失（须说明原因）, duplicate 重复客户."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"outcome": "lost", "reason": "客户选择了其他公司"}]}
    )

    outcome: Outcome
    reason: str | None = Field(default=None, max_length=500, description="原因（流失时必填）")


class NoteRequest(RequestModel):
    """A note on the case's timeline."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "客户希望周六上午联系"}]})

    text: str = Field(min_length=1, max_length=2000, description="备注内容")


# --- answers --------------------------------------------------------------------------------------


class StaffBrief(BaseModel):
    """A staff member in a list: id and name."""

    id: int
    name: str


class ClientOut(BaseModel):
    """The client of a case."""

    name: str
    phone: str = Field(description="手机号；仅经理、总经理、本案例的设计师/助理（分配设计师前还有建档人、接待人）可见全号，其他人为 138****5678")
    contact_visible: bool = Field(
        default=True, description="true：phone 与 address 为完整信息（已记入查看记录）；false：已遮盖"
    )
    gender: Gender
    age_range: str | None = None
    compound: str | None = None
    address: str | None = None
    area_m2: float | None = None
    budget: int | None = None


class AssignmentOut(BaseModel):
    """One assignment: a designer (allocation ledger) or an assistant (备案登记), who decided, when, why."""

    role: Literal["designer", "assistant"]
    staff: StaffBrief
    kind: Literal["assign", "reassign", "auto", "lapse"] = Field(
        description="assign 分配 / reassign 更换 / auto 系统自动 / lapse 超时收回（掉保，计入该设计师）"
    )
    suggested_id: int | None = Field(default=None, description="当时的首位推荐（设计师）")
    decided_by: StaffBrief
    reason: str | None = None
    at: datetime


class BranchBrief(BaseModel):
    """A case's branch (分公司/门店)."""

    id: int
    code: str
    name: str


class CaseView(BaseModel):
    """One case: where it stands, who owns what, what is due, and its story."""

    id: int = Field(description="案例编号")
    workflow_id: str = Field(description="Temporal 工作流ID（intake-<编号>）")
    source: Source
    scenario: Scenario
    stage: str = Field(description="当前阶段（最早的未完成主线步骤）")
    stage_label: str
    status: Literal["starting", "open", "closed"] = Field(description="starting 建档中（流程启动中） / open 未结案 / closed 已结案")
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    client: ClientOut
    notes: str | None = Field(default=None, description="创建时的备注")
    created_at: datetime
    closed_at: datetime | None = None
    created_by: StaffRef | None = None
    received_by: StaffRef | None = None
    manager: StaffRef | None = None
    director: StaffRef | None = None
    designer: StaffRef | None = None
    assistant: StaffRef | None = None
    designer_level: Level | None = None
    car: str | None = None
    reception: ReceptionChecklist | None = Field(default=None, description="客户到店时的接待清单（做到了哪几项）")
    site_musts: SiteReceptionMusts | None = Field(default=None, description="情况三b 小区办公室接待四必须")
    previous_case_id: int | None = Field(default=None, description="回头客：关联的旧案例编号")
    returning: str | None = Field(default=None, description="回头客：与旧案例关联的原因")
    recordings: list[int] = Field(default_factory=list, description="已上传的录音编号（GET /intakes/{id}/recordings）")
    overdue: bool = Field(description="是否有超时未完成的步骤")
    escalation_level: int = Field(description="最高升级级别")
    step_due_at: datetime | None = Field(default=None, description="最近一个未完成步骤的到期时间")
    meetings: list[Meeting] = Field(default_factory=list, description="见面与量房")
    open_steps: list[OpenStep] = Field(default_factory=list, description="待办步骤：负责人、到期、是否超时、升级级别")
    done_steps: list[DoneStep] = Field(default_factory=list)
    timeline: list[CaseEvent] = Field(default_factory=list, description="时间线（事件）")
    case_notes: list[CaseEvent] = Field(default_factory=list, description="备注")
    assignments: list[AssignmentOut] = Field(
        default_factory=list, description="分配记录：设计师分配台账与助理备案登记（谁、由谁、何时、为何）"
    )
    version: int = 0
    branch: BranchBrief | None = Field(default=None, description="客户所属分公司（转分公司后为新分公司）")
    state_source: Literal["workflow", "projection", "created"] = Field(
        description="数据来源：workflow 实时查询 / projection 数据库投影 / created 刚创建（流程尚未回报）"
    )


class CaseSummary(BaseModel):
    """One line of the case list."""

    id: int
    workflow_id: str
    source: Source
    scenario: Scenario
    stage: str
    stage_label: str
    status: Literal["starting", "open", "closed"] = Field(description="starting 建档中（流程启动中） / open 未结案 / closed 已结案")
    outcome: Outcome | None = None
    client_name: str
    client_phone: str = Field(description="手机号；无权查看者为 138****5678")
    contact_visible: bool = Field(default=True, description="client_phone 是否为完整号码")
    compound: str | None = None
    budget: int | None = None
    manager: StaffBrief | None = None
    designer: StaffBrief | None = None
    assistant: StaffBrief | None = None
    overdue: bool
    escalation_level: int
    step_due_at: datetime | None = None
    meeting_at: datetime | None = None
    created_at: datetime
    branch_id: int | None = Field(default=None, description="所属分公司（ID）")


class CaseList(BaseModel):
    """A page of cases, newest first."""

    items: list[CaseSummary]
    total: int = Field(description="符合条件的总数")
    limit: int
    offset: int
    next_cursor: str | None = Field(default=None, description="下一页游标（传给 cursor 参数）；没有更多时为空")


class TaskCase(BaseModel):
    """The case a task belongs to, in brief."""

    id: int
    stage: str
    source: Source
    scenario: Scenario
    client_name: str
    client_phone: str = Field(description="手机号；无权查看者为 138****5678")
    contact_visible: bool = Field(default=True, description="client_phone 是否为完整号码")
    compound: str | None = None


class TaskItem(BaseModel):
    """One open step waiting for the caller."""

    case_id: int
    step_key: str
    step: StepName
    label: str
    owner_role: Role
    owner_id: int | None = None
    attempt: int
    opened_at: datetime
    due_at: datetime | None = None
    overdue: bool
    escalation_level: int
    case: TaskCase


class TaskList(BaseModel):
    """The caller's open steps, soonest due first."""

    items: list[TaskItem]
    total: int
    limit: int
    offset: int


class MessageItem(BaseModel):
    """One SMS to the client, as the outbox keeps it."""

    purpose: str = Field(
        description="用途：T1 设计师介绍 / T2 量房确认 / T3 经理致谢 / T4:… 见面提醒；员工通知如 assigned:designer:<id>"
    )
    template: str | None = None
    text: str = Field(description="短信全文")
    status: Literal["pending", "sending", "sent", "failed"]
    recipient: str
    recipient_id: int | None = Field(default=None, description="员工通知的接收人（员工ID）")
    provider: str
    provider_id: str | None = None
    attempts: int
    error_code: str | None = Field(
        default=None, description="失败原因代码（status=failed 时）；已发送的员工通知若改由群机器人送达，为原因（如 wecom_no_userid）")
    created_at: datetime
    sent_at: datetime | None = None
    not_before: datetime | None = Field(
        default=None, description="暂缓发送至此时（客户免打扰时段、员工下班时间）；为空即立即发送")
    held: str | None = Field(default=None, description="仍在暂缓时的说明，如「暂缓至 05-07 08:30 发送」")


class MessageList(BaseModel):
    """The SMS sent (or being sent) to the client of a case, oldest first."""

    case_id: int
    items: list[MessageItem]


class SuggestionItem(BaseModel):
    """One suggested designer with the reasons (轮单)."""

    staff: StaffRef
    rank: int = Field(description="排名（1 为首选；0 为不符合条件）")
    eligible: bool = True
    reasons: list[str]
    open_cases: int | None = None
    last_assigned_at: datetime | None = None


class RelatedCase(BaseModel):
    """Another case of the same client or house (查重, 撞单), as the manager sees it before assigning."""

    case_id: int
    status: str
    outcome: Outcome | None = None
    designer: str | None = Field(default=None, description="该案例的设计师")
    matched_by: str = Field(description="phone 手机号 / second_phone 第二联系电话 / house 房屋")
    reason: str = Field(description="中文说明")


class SuggestionList(BaseModel):
    """Ranked eligible designers for a case; a returning client's earlier designer first, and the other
    cases of the same client or house."""

    case_id: int
    required_level: Level
    items: list[SuggestionItem]
    returning: str | None = Field(default=None, description="回头客：与哪个旧案例关联、为什么")
    related_cases: list[RelatedCase] = Field(default_factory=list, description="同一客户或同一房屋的其他案例")


class SlaRow(BaseModel):
    """SLA figures of one step in one group."""

    step: StepName
    step_label: str
    group: str | None = Field(default=None, description="分组键（来源/经理ID/设计师ID）；未分组时为空")
    group_label: str | None = None
    done: int = Field(description="已完成的步骤数")
    open: int = Field(description="未完成的步骤数")
    open_overdue: int = Field(description="未完成且已超时")
    on_time: int = Field(description="按时完成数")
    on_time_share: float | None = Field(default=None, description="按时完成率 0..1")
    median_seconds: float | None = Field(default=None, description="完成用时中位数（秒）")
    p90_seconds: float | None = Field(default=None, description="完成用时 P90（秒）")
    escalated: int = Field(description="发生过升级的步骤数")
    escalations: int = Field(description="升级总次数")


class SlaReport(BaseModel):
    """Per step: on-time share, median and p90 time to done, escalations."""

    period_from: datetime
    period_to: datetime
    group_by: Literal["none", "source", "manager", "designer"]
    rows: list[SlaRow]


class MorningSummary(BaseModel):
    """The morning summary (晨报) of a day: as sent, or computed now when none was sent for it."""

    date: date_type = Field(description="the day the summary is for (the company's local date)")
    since: date_type = Field(description="the previous working day: leads and late steps since its start")
    working_day: bool = Field(description="whether the day is a working day (a summary is sent only then)")
    sent: bool = Field(description="true: as sent that morning; false: computed now (not sent, or not yet)")
    sent_at: datetime | None = None
    recipients: list[int] = Field(default_factory=list, description="staff ids it was sent to")
    text: str = Field(description="the text as staff read it (no phone number)")
    lines: list[str]
    figures: MorningFigures


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "ready"]
    checks: dict[str, str] = Field(default_factory=dict)


class AllocationRow(BaseModel):
    """One designer's share of new cases (客户分配) in the period."""

    designer: StaffBrief
    level: Level | None = None
    status: StaffStatus
    assigned: int = Field(description="期间分到的案例（含自动分配与更换）")
    auto: int = Field(description="其中系统自动分配")
    reassigned_to: int = Field(description="其中因更换而转来")
    chosen_over_suggestion: int = Field(description="经理未按首位推荐、改选此人的次数")
    passed_over: int = Field(description="此人是首位推荐但经理另选他人的次数")
    lapses: int = Field(default=0, description="期间因联系客户或首次见面超时被收回（掉保）的案例")
    open_cases: int = Field(description="当前在手案例")
    last_assigned_at: datetime | None = Field(default=None, description="最近一次分配（轮单依据）")


class AllocationReport(BaseModel):
    """Fairness of allocation (轮单): how new cases were shared among designers, from the ledger."""

    period_from: datetime
    period_to: datetime
    rows: list[AllocationRow]


class PhoneRead(BaseModel):
    """One recorded read of a client's full phone: who, when, which case, through which route."""

    id: int
    at: datetime
    case_id: int
    route: str = Field(description="读取途径，例如 GET /intakes/{case_id}")
    request_id: str | None = Field(default=None, description="请求编号（与日志中的 request_id 对应）")
    staff: StaffBrief
    staff_role: Role


class PhoneReadList(BaseModel):
    """Recorded full-phone reads, newest first."""

    items: list[PhoneRead]
    total: int
    limit: int
    offset: int


# --- staff management (admin) -------------------------------------------------------------------

OfficePeriod = Annotated[
    str,
    Field(
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="在岗时段 HH:MM-HH:MM",
        examples=["09:00-18:00"],
    ),
]
Weekday = Literal["0", "1", "2", "3", "4", "5", "6"]


def check_wecom_userid(raw: str) -> str:
    """A WeCom member id as typed (surrounding spaces dropped), or the rule staff read as a pydantic error."""
    value = raw.strip()
    problem = wecom_userid_error(value)
    if problem is not None:
        raise PydanticCustomError("invalid_wecom_userid", problem)
    return value


WeComUserId = Annotated[
    str,
    Field(
        max_length=200,
        description="企业微信成员账号（UserID，通讯录中的「账号」）：1–64 位字母、数字或 _ - . @；用于个人通知与企业微信登录",
        examples=["zhangwei"],
        json_schema_extra={"pattern": r"^\s*[A-Za-z0-9_.@-]{1,64}\s*$"},
    ),
    AfterValidator(check_wecom_userid),
]


class StaffOut(BaseModel):
    """A staff member as the admin manages them."""

    id: int
    name: str
    phone: str
    role: Role
    level: Level | None = None
    status: StaffStatus = Field(description="active 在岗 / on_leave 休假（不接新案例） / inactive 离职（无任何访问）")
    communities: list[str]
    office_schedule: dict[str, list[str]] = Field(description="星期（0=周一）→ 在岗时段")
    max_open_cases: int | None = None
    weight: float
    deputy_id: int | None = Field(default=None, description="经理的代理人（员工ID）：经理休假或不在班时代为处理其步骤")
    wecom_userid: str | None = Field(default=None, description="企业微信成员账号（UserID）；未登记为空")
    branch: str = Field(default="main", description="所属分公司（代码）")
    extra_branches: list[str] = Field(default_factory=list, description="另外负责的分公司（代码；区域经理）")


class StaffList(BaseModel):
    """All staff, by id."""

    items: list[StaffOut]


class StaffCreate(RequestModel):
    """A new staff member (a token is issued and shown once)."""

    name: str = Field(min_length=1, max_length=50)
    phone: Phone
    role: Role
    level: Level | None = Field(default=None, description="设计师必填")
    communities: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    office_schedule: dict[Weekday, list[OfficePeriod]] = Field(default_factory=dict)
    max_open_cases: int | None = Field(default=None, ge=0, le=10_000)
    weight: float = Field(default=1.0, gt=0, le=100)
    wecom_userid: WeComUserId | None = None
    branch: BranchCode | None = Field(default=None, description="所属分公司（代码）；省略为总店 main")
    extra_branches: list[BranchCode] = Field(
        default_factory=list, max_length=100, description="另外负责的分公司（代码；区域经理）")


class StaffPatch(RequestModel):
    """Fields to change; absent fields stay as they are (null clears level or max_open_cases)."""

    name: str | None = Field(default=None, min_length=1, max_length=50)
    role: Role | None = None
    level: Level | None = None
    communities: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=50)
    office_schedule: dict[Weekday, list[OfficePeriod]] | None = None
    max_open_cases: int | None = Field(default=None, ge=0, le=10_000)
    weight: float | None = Field(default=None, gt=0, le=100)
    status: StaffStatus | None = Field(
        default=None, description="active 在岗 / on_leave 休假（不接新案例） / inactive 离职（吊销全部令牌，无任何访问）"
    )
    deputy_id: Id | None = Field(default=None, description="经理的代理人（员工ID）；null 取消代理人")
    wecom_userid: WeComUserId | None = Field(default=None, description="企业微信成员账号（UserID）；null 取消登记")
    branch: BranchCode | None = Field(default=None, description="所属分公司（代码）")
    extra_branches: list[BranchCode] | None = Field(
        default=None, max_length=100, description="另外负责的分公司（代码；区域经理）；[] 取消")


class Revoked(BaseModel):
    """How many live tokens were revoked."""

    staff_id: int
    revoked: int


# --- branches (分公司/门店) ----------------------------------------------------------------------------

BranchText = Annotated[str, Field(min_length=1, max_length=100)]
SmsTemplateCodes = Annotated[
    dict[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=64)]],
    Field(max_length=20, description="本分公司短信账号的模板编号，如 {\"T1\": \"SMS_123\"}；未列出的模板用部署的编号"),
]


class BranchCreate(RequestModel):
    """A new branch; company names, address, SMS sign and codes left out are the deployment's."""

    code: str = Field(min_length=1, max_length=32, description="代码：小写字母、数字、_ 或 -（如 hangzhou），建后不可改")
    name: BranchText = Field(description="员工口中的名称，如 杭州分公司")
    city: BranchText | None = None
    company_name: BranchText | None = Field(default=None, description="短信中的公司名（空：部署的 INTAKE_COMPANY_NAME）")
    company_short_name: BranchText | None = Field(default=None, description="短信落款的简称")
    company_address: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="到店提醒（T4）中的门店地址")
    sms_sign: Annotated[str, Field(min_length=1, max_length=50)] | None = Field(
        default=None, description="短信签名（本分公司的短信账号不同时）")
    sms_template_codes: SmsTemplateCodes = Field(default_factory=dict)
    wecom_department_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="企业微信部门 ID")


class BranchPatch(RequestModel):
    """Fields to change; absent fields stay as they are (null clears an optional one)."""

    name: BranchText | None = None
    city: BranchText | None = None
    company_name: BranchText | None = None
    company_short_name: BranchText | None = None
    company_address: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    sms_sign: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    sms_template_codes: SmsTemplateCodes | None = None
    wecom_department_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    status: Literal["active", "closed"] | None = Field(
        default=None, description="closed 关闭（须先调走在职员工、结清未结案客户；总店不能关闭）")


class BranchOut(Branch):
    """A branch as head office sees it (its columns; NULL company fields and sign: the deployment's)."""


class BranchList(BaseModel):
    """Every branch, the closed ones too (by id)."""

    items: list[BranchOut]


# --- the league table of branches (分公司排行) -----------------------------------------------------------


class LeagueBranch(BaseModel):
    """A branch as the league table names it."""

    id: int
    code: str = Field(description="分公司代码，报表和看板的 ?branch= 用它")
    name: str
    city: str | None = None
    status: str = Field(description="active 营业 / closed 已关闭（有数字时仍列出）")


class BranchLeagueRow(BaseModel):
    """One branch's figures over the cases created in the period; open and stalled cases as of now."""

    branch: LeagueBranch | None = Field(description="null：全部分公司合计（total）")
    rank: int | None = Field(default=None, description="名次：按时率高者在前，其次签单率")
    leads: int = Field(description="期间建档的案例")
    steps_done: int
    steps_on_time: int
    on_time_share: float | None = Field(description="按时完成的步骤占已完成步骤的比例")
    callbacks_done: int
    callback_median_seconds: float | None = Field(description="经理回访用时中位数（秒，自步骤开放起）")
    signed: int
    lost: int
    signed_rate: float | None = Field(description="签单率：签单 /（签单 + 未签）；尚未结案的不计")
    escalations: int = Field(description="升级次数（各步骤升级级数之和）")
    escalated_steps: int = Field(description="发生升级的步骤数")
    open_cases: int = Field(description="此刻未结案的案例")
    stalled_cases: int = Field(description="此刻有步骤超时的未结案案例（同晨报）")


class BranchLeague(BaseModel):
    """The league table: each branch the reader spans, best first, and all of them together."""

    period_from: datetime
    period_to: datetime
    rows: list[BranchLeagueRow]
    total: BranchLeagueRow
