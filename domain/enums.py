"""Enumerations of the business vocabulary (SPEC §1–§3). Values are the API's wire values."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Staff roles (SPEC §1)."""

    manager = "manager"
    designer = "designer"
    assistant = "assistant"
    assistant_lead = "assistant_lead"
    site_lead = "site_lead"
    consultant = "consultant"
    director = "director"
    admin = "admin"


ROLE_LABELS: dict[Role, str] = {
    Role.manager: "设计部经理",
    Role.designer: "设计师",
    Role.assistant: "助理设计师",
    Role.assistant_lead: "助理设计师负责人",
    Role.site_lead: "小区负责人",
    Role.consultant: "业务顾问",
    Role.director: "总经理",
    Role.admin: "管理员",
}

# A case's members as the case engine's texts name them (its manager is plain 经理 there).
MEMBER_LABELS: dict[str, str] = {"designer": "设计师", "assistant": "助理设计师", "manager": "经理"}


class Level(StrEnum):
    """Designer levels; compare with :data:`LEVEL_RANK` (higher rank is more senior)."""

    chief = "chief"
    senior = "senior"
    designer = "designer"
    junior = "junior"


LEVEL_RANK: dict[Level, int] = {Level.junior: 0, Level.designer: 1, Level.senior: 2, Level.chief: 3}
LEVEL_LABELS: dict[Level, str] = {
    Level.chief: "首席设计师",
    Level.senior: "主任设计师",
    Level.designer: "设计师",
    Level.junior: "见习设计师",
}


class Source(StrEnum):
    """Where a client comes from."""

    marketing = "marketing"
    online = "online"
    walk_in = "walk_in"
    site_office = "site_office"


SOURCE_LABELS: dict[Source, str] = {
    Source.marketing: "市场部",
    Source.online: "网销",
    Source.walk_in: "自然客户",
    Source.site_office: "小区办公室",
}


class Scenario(StrEnum):
    """The four intake scenarios (SPEC §2)."""

    remote = "remote"
    office_visit = "office_visit"
    site_office = "site_office"
    walk_in = "walk_in"


SCENARIO_LABELS: dict[Scenario, str] = {
    Scenario.remote: "情况一·未到过公司",
    Scenario.office_visit: "情况二·客户来公司",
    Scenario.site_office: "情况三·小区办公室接待",
    Scenario.walk_in: "自然客户·到店",
}


class StepName(StrEnum):
    """Steps of a case (SPEC §3)."""

    reception_review = "reception_review"
    callback = "callback"
    assign_designer = "assign_designer"
    assign_assistant = "assign_assistant"
    contact = "contact"
    arrival = "arrival"
    first_meeting = "first_meeting"
    measure = "measure"
    debrief = "debrief"
    acknowledge = "acknowledge"
    outcome = "outcome"
    lapse_review = "lapse_review"  # a late first meeting: the manager reclaims or extends (version 2)


STEP_LABELS: dict[StepName, str] = {
    StepName.reception_review: "审核接待情况",
    StepName.callback: "经理回访",
    StepName.assign_designer: "分配设计师",
    StepName.assign_assistant: "分配助理设计师",
    StepName.contact: "设计师联系客户",
    StepName.arrival: "客户到店",
    StepName.first_meeting: "首次见面",
    StepName.measure: "量房",
    StepName.debrief: "复盘讲评",
    StepName.acknowledge: "确认纠正",
    StepName.outcome: "签单结果",
    StepName.lapse_review: "首次见面超时处理",
}


class MeetingKind(StrEnum):
    """Where the first meeting happens: the client's house (量房) or the company (到店)."""

    measure = "measure"  # 量房: at the client's house
    office_visit = "office_visit"  # 到店: at the company


MEETING_KIND_LABELS: dict[MeetingKind, str] = {
    MeetingKind.measure: "量房",
    MeetingKind.office_visit: "到店",
}


class Gender(StrEnum):
    """Client gender, for the SMS salutation (先生 / 女士)."""

    male = "male"
    female = "female"
    unknown = "unknown"


class Outcome(StrEnum):
    """How a case ends."""

    signed = "signed"
    lost = "lost"
    duplicate = "duplicate"


OUTCOME_LABELS: dict[Outcome, str] = {
    Outcome.signed: "已签单",
    Outcome.lost: "已流失",
    Outcome.duplicate: "重复客户",
}


class CaseStatus(StrEnum):
    """Open or closed."""

    open = "open"
    closed = "closed"


class MeasureResult(StrEnum):
    """What happened at a measure (量房) appointment."""

    done = "done"
    rescheduled = "rescheduled"
    no_show = "no_show"


class StaffStatus(StrEnum):
    """Whether a staff member takes new cases."""

    active = "active"
    on_leave = "on_leave"
    inactive = "inactive"
