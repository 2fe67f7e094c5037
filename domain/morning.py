"""The morning summary (晨报, SPEC §15): when it is due, which days it covers, and its text.

Each working day, at the start of the company's working hours, the design manager(s) and the director
get a short summary: the new leads and the steps done late since the previous working day, the cases
stalled now, who holds the most open steps, and today's visits and home measures.

* Due: on a working day of the policy's calendar, from its first opening until its last close (a
  process that was down at the opening sends it when it comes back the same working day; a day whose
  hours passed with nobody up is never sent later). A calendar open around the clock (the fast policy)
  works the whole local day, so its summary is due from midnight.
* "Yesterday" is the previous working day: the figures cover local midnight of that day up to local
  midnight of today, so on a Monday after a Sunday off the Sunday's leads are counted too.
* The text is Chinese and short (a header and one line per figure, lists cut to a few items) and never
  carries a phone number: any written into a client's name is removed whole.

Pure: the moment and the figures come in; store/morning.py reads them, background/morning.py sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from domain import calendar
from domain.enums import (
    MEETING_KIND_LABELS,
    SOURCE_LABELS,
    STEP_LABELS,
    Gender,
    MeetingKind,
    Source,
    StepName,
)
from domain.phone import hide_phones_in
from domain.policy import CalendarPolicy
from domain.templates import UNKNOWN_SALUTATION, salutation, surname

# The outbox purpose of a day's summary: "morning_summary:<date>", one row per recipient.
PURPOSE = "morning_summary"
# How many items a list of the text shows before "等 N 项" (the figures keep a few more).
SHOWN = 3
SHOWN_VISITS = 6
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def purpose(day: date, branch_code: str | None = None) -> str:
    """The outbox purpose of the summary of `day` (the chain's, or a branch's: ":<code>" after the day)."""
    return f"{PURPOSE}:{day.isoformat()}" + (f":{branch_code}" if branch_code else "")


def due_day(cal: CalendarPolicy, now: datetime) -> date | None:
    """The local date whose summary is due at `now`: today, when it is a working day and `now` lies
    between its first opening and its last close; else None (a day off, before the opening, after the close)."""
    today = calendar.local_date(cal, now)
    hours = calendar.working_hours_on(cal, today)
    if hours is None:
        return None
    start, end = hours
    return today if start <= now < end else None


@dataclass(frozen=True)
class Window:
    """The days a summary covers: `since` (the previous working day) up to `day`, as local midnights in UTC."""

    day: date
    since: date
    start: datetime
    end: datetime
    working_day: bool
    timezone: str


def window(cal: CalendarPolicy, day: date) -> Window:
    """The summary of `day` covers the previous working day (and any days off between it and `day`)."""
    zone = ZoneInfo(cal.timezone)
    since = calendar.previous_working_day(cal, day)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=zone).astimezone(UTC)

    return Window(day=day, since=since, start=midnight(since), end=midnight(day),
                  working_day=calendar.working_hours_on(cal, day) is not None, timezone=cal.timezone)


# --- the figures (read by store/morning.py) ------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LateStep(_Model):
    """A step done after its due time, in the period."""

    case_id: int
    step: str
    step_label: str
    owner: str | None
    late_seconds: int


class StalledStep(_Model):
    """The most overdue open step of a stalled case."""

    case_id: int
    step: str
    step_label: str
    owner: str | None
    overdue_seconds: int


class OpenWork(_Model):
    """A person's open steps (and how many of them are overdue)."""

    staff_id: int
    name: str
    open_steps: int
    overdue: int


class Visit(_Model):
    """A visit to the office (到店) or a home measure (量房) today."""

    case_id: int
    at: datetime
    kind: MeetingKind
    client: str  # the salutation (王先生), never the full name or phone
    designer: str | None


class MorningFigures(_Model):
    """Everything a morning summary says."""

    day: date
    since: date
    timezone: str
    working_day: bool
    computed_at: datetime
    new_leads: int
    leads_by_source: dict[str, int]
    late_count: int
    late: list[LateStep]
    stalled_cases: int
    stalled_steps: int
    stalled: list[StalledStep]
    open_work: list[OpenWork]
    visits: list[Visit]
    branch_name: str | None = None  # a branch's summary in a chain of several (None: the chain's, or the one)


def step_label(step: str) -> str:
    """The Chinese label of a step name (the name itself when unknown)."""
    try:
        return STEP_LABELS[StepName(step)]
    except ValueError:
        return step


def source_label(source: str) -> str:
    """The Chinese label of a source (the value itself when unknown)."""
    return SOURCE_LABELS[Source(source)] if source in Source.__members__ else source


def client_salutation(name: str, gender: Gender) -> str:
    """王先生 / 李女士; with no gender known the surname and 客户 (王客户), never the full name."""
    s = salutation(name, gender)
    if s != UNKNOWN_SALUTATION:
        return s
    sur = surname(name)
    return f"{sur}客户" if sur else "客户"


# --- the text ------------------------------------------------------------------------------------------


def span(seconds: int) -> str:
    """A duration as staff say it: 2天3小时, 5小时20分, 25分钟, 不到1分钟."""
    minutes = max(int(seconds), 0) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    if hours:
        return f"{hours}小时{mins}分" if mins else f"{hours}小时"
    return f"{mins}分钟" if mins else "不到1分钟"


def day_label(d: date) -> str:
    """6月3日（周二）."""
    return f"{d.month}月{d.day}日（{WEEKDAYS[d.weekday()]}）"


def period_label(f: MorningFigures) -> str:
    """昨日, or "5月31日起" when days off lie between the previous working day and today."""
    if f.since == f.day - timedelta(days=1):
        return "昨日"
    return f"{f.since.month}月{f.since.day}日起"


def _listed(items: list[str], total: int, unit: str) -> str:
    text = "、".join(items[:SHOWN])
    return f"{text} 等{total}{unit}" if total > min(len(items), SHOWN) else text


def _who(name: str | None) -> str:
    return name or "未指定"


def summary_lines(f: MorningFigures) -> list[str]:
    """The summary as lines: a header, then leads, late steps, stalled cases, open work, today's visits."""
    period = period_label(f)
    lines = [f"【晨报·{f.branch_name}】{day_label(f.day)}" if f.branch_name else f"【晨报】{day_label(f.day)}"]
    by_source = [f"{source_label(s)}{n}" for s, n in sorted(f.leads_by_source.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines.append(f"{period}新客户 {f.new_leads} 个" + (f"：{'、'.join(by_source)}" if by_source else ""))
    late = [f"#{s.case_id}{s.step_label}（{_who(s.owner)}，晚{span(s.late_seconds)}）" for s in f.late]
    lines.append(f"{period}超时完成 {f.late_count} 项" + (f"：{_listed(late, f.late_count, '项')}" if late else ""))
    stalled = [f"#{s.case_id}{s.step_label}（{_who(s.owner)}，超时{span(s.overdue_seconds)}）" for s in f.stalled]
    lines.append(f"当前超时 {f.stalled_cases} 个案例" + (f"：{_listed(stalled, f.stalled_cases, '个')}" if stalled else ""))
    work = [f"{w.name}{w.open_steps}项" + (f"（超时{w.overdue}）" if w.overdue else "") for w in f.open_work[:SHOWN]]
    lines.append("在办最多：" + ("、".join(work) if work else "无"))
    zone = ZoneInfo(f.timezone)
    visits = [
        f"{v.at.astimezone(zone):%H:%M} {MEETING_KIND_LABELS[v.kind]} #{v.case_id}{v.client}（设计师{_who(v.designer)}）"
        for v in f.visits
    ]
    if visits:
        shown = "；".join(visits[:SHOWN_VISITS])
        more = len(visits) - SHOWN_VISITS
        lines.append(f"今日到店/量房 {len(visits)} 个：{shown}" + (f" 等{len(visits)}个" if more > 0 else ""))
    else:
        lines.append("今日到店/量房：无")
    # Whatever staff typed into a name, no phone number leaves in the summary.
    return [hide_phones_in(line) for line in lines]


def summary_text(f: MorningFigures) -> str:
    """The summary as one text (a WeCom message, an SMS, the log)."""
    return "\n".join(summary_lines(f))
