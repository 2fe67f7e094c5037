"""Client SMS texts (SPEC §6), as Aliyun-style templates with ``${variable}`` placeholders.

Each text exists once, as a module constant written the way it is registered in the Aliyun console.
``render_*`` substitutes the ``*_variables`` into that constant, so the text kept in the outbox and
the variables sent to the provider can never diverge. Variable keys: ``name`` (the salutation,
e.g. 王先生), ``company``, ``short_name``, ``designer``, ``assistant``, ``manager``, ``time``, ``kind``,
``address``, ``previous`` (T5: the designer whose work was handed over).
Each ``*_variables`` returns exactly the keys its template uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.enums import Gender, MeetingKind

T1_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，非常荣幸为您服务，"
    "我和我的助理设计师${assistant}会准时到达。${short_name}设计师${designer}敬！"
)
T1_NO_ASSISTANT_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，非常荣幸为您服务，"
    "我和我的助理设计师会准时到达。${short_name}设计师${designer}敬！"
)
T2_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，非常荣幸为您服务，我们预约量房时间为${time}，"
    "我和我的助理设计师${assistant}会准时到达。${short_name}设计师${designer}敬！"
)
T2_NO_ASSISTANT_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，非常荣幸为您服务，我们预约量房时间为${time}，"
    "我和我的助理设计师会准时到达。${short_name}设计师${designer}敬！"
)
T3_TEMPLATE = (
    "${name}您好：我是${company}设计部经理${manager}，首先非常感谢您对${short_name}的信任，"
    "能给我以及设计师${designer}和助理设计师${assistant}为您服务的机会；能为您服务，我们团队感到非常荣幸！"
    "我们团队针对您的情况进行了专门讨论和制定计划，在服务过程中您随时可以联系我，"
    "我和我的设计师${designer}、助理设计师${assistant}会尽全力让您满意。${short_name}设计部经理${manager}敬！"
)
T3_NO_ASSISTANT_TEMPLATE = (
    "${name}您好：我是${company}设计部经理${manager}，首先非常感谢您对${short_name}的信任，"
    "能给我以及设计师${designer}和助理设计师为您服务的机会；能为您服务，我们团队感到非常荣幸！"
    "我们团队针对您的情况进行了专门讨论和制定计划，在服务过程中您随时可以联系我，"
    "我和我的设计师${designer}、助理设计师会尽全力让您满意。${short_name}设计部经理${manager}敬！"
)
T4_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，温馨提醒您，我们约定于${time}${kind}，"
    "届时我们会准时与您见面。如需调整时间，请随时联系我。${short_name}设计师${designer}敬！"
)

# Office visits (seed 二a): the reminder tells the client where the company is (configured address).
T4_OFFICE_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，温馨提醒您，我们约定于${time}到店见面，"
    "公司地址：${address}，届时我们在门口迎接您。如需调整时间，请随时联系我。${short_name}设计师${designer}敬！"
)

# 情况二 before the visit the client has spoken only to the manager (回访): the reminder is the manager's.
T4_MANAGER_TEMPLATE = (
    "${name}您好：我是${company}设计部经理${manager}，温馨提醒您，我们约定于${time}${kind}，"
    "届时我们会准时与您见面。如需调整时间，请随时联系我。${short_name}设计部经理${manager}敬！"
)
T4_OFFICE_MANAGER_TEMPLATE = (
    "${name}您好：我是${company}设计部经理${manager}，温馨提醒您，我们约定于${time}到店见面，"
    "公司地址：${address}，届时我在门口迎接您。如需调整时间，请随时联系我。${short_name}设计部经理${manager}敬！"
)

# T5: a new designer introduces themself after a change of designer (SPEC §14), in the company's words.
T5_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，接下来由我和助理设计师${assistant}为您服务，"
    "${previous}设计师的工作已与我交接，我们会准时到达。${short_name}设计师${designer}敬！"
)
T5_NO_ASSISTANT_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，接下来由我和我的助理设计师为您服务，"
    "${previous}设计师的工作已与我交接，我们会准时到达。${short_name}设计师${designer}敬！"
)
# Only the assistant changed: the designer introduces the new assistant.
T5_ASSISTANT_TEMPLATE = (
    "${name}您好：我是${company}设计师${designer}，接下来由我和助理设计师${assistant}为您服务，"
    "助理设计师的工作已交接，我们会准时到达。${short_name}设计师${designer}敬！"
)

TemplateId = Literal[
    "T1", "T1_NO_ASSISTANT", "T2", "T2_NO_ASSISTANT", "T3", "T3_NO_ASSISTANT", "T4", "T4_OFFICE",
    "T4_MANAGER", "T4_OFFICE_MANAGER", "T5", "T5_NO_ASSISTANT", "T5_ASSISTANT",
]

# Template id → text; configuration maps each id to its approved Aliyun template code.
TEMPLATES: dict[str, str] = {
    "T1": T1_TEMPLATE,
    "T1_NO_ASSISTANT": T1_NO_ASSISTANT_TEMPLATE,
    "T2": T2_TEMPLATE,
    "T2_NO_ASSISTANT": T2_NO_ASSISTANT_TEMPLATE,
    "T3": T3_TEMPLATE,
    "T3_NO_ASSISTANT": T3_NO_ASSISTANT_TEMPLATE,
    "T4": T4_TEMPLATE,
    "T4_OFFICE": T4_OFFICE_TEMPLATE,
    "T4_MANAGER": T4_MANAGER_TEMPLATE,
    "T4_OFFICE_MANAGER": T4_OFFICE_MANAGER_TEMPLATE,
    "T5": T5_TEMPLATE,
    "T5_NO_ASSISTANT": T5_NO_ASSISTANT_TEMPLATE,
    "T5_ASSISTANT": T5_ASSISTANT_TEMPLATE,
}

# Sent only once the company address is configured (INTAKE_COMPANY_ADDRESS).
ADDRESS_TEMPLATES = frozenset({"T4_OFFICE", "T4_OFFICE_MANAGER"})

_NO_ASSISTANT: dict[str, TemplateId] = {
    "T1": "T1_NO_ASSISTANT",
    "T2": "T2_NO_ASSISTANT",
    "T3": "T3_NO_ASSISTANT",
    "T5": "T5_NO_ASSISTANT",
}

# How T4 names the meeting (the kind variable).
T4_KIND_TEXT: dict[MeetingKind, str] = {
    MeetingKind.office_visit: "到店见面",
    MeetingKind.measure: "上门量房",
}

UNKNOWN_SALUTATION = "尊敬的客户"

COMPOUND_SURNAMES: frozenset[str] = frozenset(
    {
        "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
        "司徒", "夏侯", "令狐", "端木", "申屠", "轩辕", "西门", "南宫", "独孤", "澹台", "公冶",
        "宗政", "濮阳", "太叔", "仲孙", "钟离", "闻人", "赫连", "呼延", "万俟", "单于", "司空",
        "司寇", "百里", "东郭", "左丘", "梁丘", "第五", "淳于", "拓跋", "完颜", "乐正", "公羊",
    }
)  # fmt: skip

# Titles staff often type into the name field ("王先生", "李女士"): stripped before the surname.
_TITLES: dict[str, Gender] = {
    "先生": Gender.male,
    "女士": Gender.female,
    "小姐": Gender.female,
    "太太": Gender.female,
}
_HONORIFIC = {Gender.male: "先生", Gender.female: "女士"}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


@dataclass(frozen=True)
class Company:
    """The company as the client SMS name it (configurable, SPEC §6)."""

    name: str = "城市人家装饰公司"
    short_name: str = "城市人家"
    address: str = ""  # where clients come for office visits (T4); empty: T4 without an address


def surname(full_name: str) -> str:
    """The surname of a name: a known two-character compound surname when the name has 3+ characters."""
    name = "".join(full_name.split())
    for title in _TITLES:
        if len(name) > len(title) and name.endswith(title):
            name = name[: -len(title)]
            break
    if not name:
        return ""
    if not _CJK.search(name):
        # Latin names are written given-name first: "John Smith" → "Smith".
        return full_name.split()[-1] if full_name.split() else ""
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return name[:2]
    return name[0]


def salutation(full_name: str, gender: Gender) -> str:
    """王先生 / 李女士; unknown gender (or no name) gives "尊敬的客户" rather than a guess."""
    # "王先生/女士" reads like a form letter, and a wrong guess offends; so an unknown gender is
    # addressed neutrally, unless staff typed the title into the name ("王先生").
    stripped = "".join(full_name.split())
    if gender == Gender.unknown:
        for title, implied in _TITLES.items():
            if len(stripped) > len(title) and stripped.endswith(title):
                gender = implied
                break
    sur = surname(full_name)
    if gender == Gender.unknown or not sur:
        return UNKNOWN_SALUTATION
    return f"{sur}{_HONORIFIC[gender]}"


def format_meeting_time(t: datetime, tz: str = "Asia/Shanghai") -> str:
    """How a client reads a time: "11月28日（周六）上午10:00", "下午2:30", "晚上7:00"."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: meeting times must be timezone-aware")
    try:
        local = t.astimezone(ZoneInfo(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    # 上午 before 12:00, 下午 12:00–18:00, 晚上 from 18:00; 12-hour digits (12:30 stays 下午12:30).
    if local.hour < 12:
        period, hour = "上午", local.hour
    elif local.hour < 18:
        period, hour = "下午", local.hour if local.hour == 12 else local.hour - 12
    else:
        period, hour = "晚上", local.hour - 12
    return f"{local.month}月{local.day}日（{_WEEKDAYS[local.weekday()]}）{period}{hour}:{local.minute:02d}"


def substitute(template: str, variables: dict[str, str]) -> str:
    """Fill ``${key}`` placeholders; a missing variable raises KeyError."""
    return Template(template).substitute(variables)


def template_id(which: Literal["T1", "T2", "T3", "T4", "T5"], *, assistant: str | None) -> TemplateId:
    """The template variant a message uses: the ``_NO_ASSISTANT`` one when no assistant is named."""
    if which == "T4":
        return "T4"
    return which if assistant else _NO_ASSISTANT[which]


def t1_variables(
    *, client_name: str, gender: Gender, company: Company, designer: str, assistant: str | None
) -> dict[str, str]:
    """Variables of T1 (designer introduction); no ``assistant`` key when none is assigned."""
    v = {"name": salutation(client_name, gender), "company": company.name, "designer": designer}
    if assistant:
        v["assistant"] = assistant
    v["short_name"] = company.short_name
    return v


def render_t1(
    *, client_name: str, gender: Gender, company: Company, designer: str, assistant: str | None
) -> str:
    """T1 designer introduction, sent after ``contact``."""
    v = t1_variables(
        client_name=client_name, gender=gender, company=company, designer=designer, assistant=assistant
    )
    return substitute(TEMPLATES[template_id("T1", assistant=assistant)], v)


def t2_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    assistant: str | None,
    measure_at: datetime,
    tz: str = "Asia/Shanghai",
) -> dict[str, str]:
    """Variables of T2 (measure appointment); ``time`` as :func:`format_meeting_time` writes it."""
    v = {
        "name": salutation(client_name, gender),
        "company": company.name,
        "designer": designer,
        "time": format_meeting_time(measure_at, tz),
    }
    if assistant:
        v["assistant"] = assistant
    v["short_name"] = company.short_name
    return v


def render_t2(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    assistant: str | None,
    measure_at: datetime,
    tz: str = "Asia/Shanghai",
) -> str:
    """T2 measure appointment confirmation, sent after ``first_meeting`` booked a measure."""
    v = t2_variables(
        client_name=client_name,
        gender=gender,
        company=company,
        designer=designer,
        assistant=assistant,
        measure_at=measure_at,
        tz=tz,
    )
    return substitute(TEMPLATES[template_id("T2", assistant=assistant)], v)


def t3_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    manager: str,
    designer: str,
    assistant: str | None,
) -> dict[str, str]:
    """Variables of T3 (manager's thanks after the debrief)."""
    v = {
        "name": salutation(client_name, gender),
        "company": company.name,
        "manager": manager,
        "short_name": company.short_name,
        "designer": designer,
    }
    if assistant:
        v["assistant"] = assistant
    return v


def render_t3(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    manager: str,
    designer: str,
    assistant: str | None,
) -> str:
    """T3 manager's thanks, sent after ``debrief``."""
    v = t3_variables(
        client_name=client_name,
        gender=gender,
        company=company,
        manager=manager,
        designer=designer,
        assistant=assistant,
    )
    return substitute(TEMPLATES[template_id("T3", assistant=assistant)], v)


def t4_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    at: datetime,
    kind: MeetingKind,
    tz: str = "Asia/Shanghai",
) -> dict[str, str]:
    """Variables of T4 (reminder before a meeting); ``kind`` is 到店见面 or 上门量房."""
    return {
        "name": salutation(client_name, gender),
        "company": company.name,
        "designer": designer,
        "time": format_meeting_time(at, tz),
        "kind": T4_KIND_TEXT[MeetingKind(kind)],
        "short_name": company.short_name,
    }


def t4_office_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    at: datetime,
    tz: str = "Asia/Shanghai",
) -> dict[str, str]:
    """Variables of T4_OFFICE (reminder before an office visit, with the company address)."""
    if not company.address:
        raise ValueError("T4_OFFICE needs the company address (INTAKE_COMPANY_ADDRESS)")
    return {
        "name": salutation(client_name, gender),
        "company": company.name,
        "designer": designer,
        "time": format_meeting_time(at, tz),
        "address": company.address,
        "short_name": company.short_name,
    }


def render_t4(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    at: datetime,
    kind: MeetingKind,
    tz: str = "Asia/Shanghai",
) -> str:
    """T4 reminder to the client before a meeting or measure."""
    v = t4_variables(
        client_name=client_name, gender=gender, company=company, designer=designer, at=at, kind=kind, tz=tz
    )
    return substitute(T4_TEMPLATE, v)


def t4_manager_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    manager: str,
    at: datetime,
    kind: MeetingKind,
    tz: str = "Asia/Shanghai",
) -> dict[str, str]:
    """Variables of T4_MANAGER / T4_OFFICE_MANAGER (情况二: the reminder before the visit, signed by the
    manager while no designer has spoken to the client); the office variant when the address is set."""
    # The designer's T4 variables with the manager in the signer's place.
    if MeetingKind(kind) == MeetingKind.office_visit and company.address:
        v = t4_office_variables(client_name=client_name, gender=gender, company=company, designer=manager, at=at,
                                tz=tz)
    else:
        v = t4_variables(client_name=client_name, gender=gender, company=company, designer=manager, at=at, kind=kind,
                         tz=tz)
    v["manager"] = v.pop("designer")
    return v


def t5_variables(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    assistant: str | None,
    previous: str | None,
) -> dict[str, str]:
    """Variables of T5 (a new designer introduces themself): T1's, and ``previous`` unless only the
    assistant changed (T5_ASSISTANT); no ``assistant`` when none is assigned (T5_NO_ASSISTANT)."""
    v = t1_variables(client_name=client_name, gender=gender, company=company, designer=designer, assistant=assistant)
    if previous:
        v["previous"] = previous
    return v


def t5_template_id(*, assistant: str | None, previous: str | None) -> TemplateId:
    """The T5 variant: the designer changed (T5, T5_NO_ASSISTANT) or only the assistant (T5_ASSISTANT)."""
    if previous is None:
        return "T5_ASSISTANT"
    return template_id("T5", assistant=assistant)


def render_t5(
    *,
    client_name: str,
    gender: Gender,
    company: Company,
    designer: str,
    assistant: str | None,
    previous: str | None,
) -> str:
    """T5, sent when the new designer's contact is done after a change of designer or assistant."""
    v = t5_variables(client_name=client_name, gender=gender, company=company, designer=designer,
                     assistant=assistant, previous=previous)
    return substitute(TEMPLATES[t5_template_id(assistant=assistant, previous=previous)], v)
