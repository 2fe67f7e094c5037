"""The morning summary (晨报, SPEC §15): when it is due, which days it covers, and what it says."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain import morning
from domain.calendar import local_date, previous_working_day, working_hours_on
from domain.enums import Gender, MeetingKind
from domain.morning import LateStep, MorningFigures, OpenWork, StalledStep, Visit
from domain.policy import CalendarPolicy, fast_policy

SH = ZoneInfo("Asia/Shanghai")
# Mon–Sat 09:00–18:00; 2026-10-01 (Thursday) a holiday, Sunday 2026-10-11 a make-up working day (调休)
CAL = CalendarPolicy(holidays=[date(2026, 10, 1)], makeup_workdays=[date(2026, 10, 11)],
                     makeup_hours=[(time(9, 30), time(17, 0))])
SPLIT = CalendarPolicy(hours={d: [(time(13, 0), time(18, 0)), (time(8, 30), time(12, 0))] for d in range(5)})


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


# --- the calendar's days -----------------------------------------------------------------------------


def test_working_hours_of_a_day_are_its_first_opening_and_last_close() -> None:
    assert working_hours_on(CAL, date(2026, 9, 30)) == (sh(2026, 9, 30, 9), sh(2026, 9, 30, 18))
    assert working_hours_on(SPLIT, date(2026, 9, 30)) == (sh(2026, 9, 30, 8, 30), sh(2026, 9, 30, 18))
    assert working_hours_on(CAL, date(2026, 10, 1)) is None  # holiday
    assert working_hours_on(CAL, date(2026, 10, 4)) is None  # Sunday
    assert working_hours_on(CAL, date(2026, 10, 11)) == (sh(2026, 10, 11, 9, 30), sh(2026, 10, 11, 17))  # 调休
    always = fast_policy().calendar
    assert working_hours_on(always, date(2026, 10, 4)) == (sh(2026, 10, 4), sh(2026, 10, 5))


def test_the_previous_working_day_skips_days_off() -> None:
    assert previous_working_day(CAL, date(2026, 9, 30)) == date(2026, 9, 29)
    assert previous_working_day(CAL, date(2026, 10, 2)) == date(2026, 9, 30)  # over the holiday
    assert previous_working_day(CAL, date(2026, 10, 5)) == date(2026, 10, 3)  # Monday: Saturday
    assert previous_working_day(CAL, date(2026, 10, 12)) == date(2026, 10, 11)  # the make-up Sunday
    assert previous_working_day(fast_policy().calendar, date(2026, 10, 5)) == date(2026, 10, 4)


def test_local_date_is_the_calendars() -> None:
    assert local_date(CAL, datetime(2026, 9, 30, 16, 30, tzinfo=UTC)) == date(2026, 10, 1)  # 00:30 in Shanghai


# --- when it is due ---------------------------------------------------------------------------------


def test_due_from_the_opening_until_the_close_of_a_working_day() -> None:
    assert morning.due_day(CAL, sh(2026, 9, 30, 8, 59)) is None
    assert morning.due_day(CAL, sh(2026, 9, 30, 9)) == date(2026, 9, 30)
    # everything was down at 09:00: sent when a worker is back the same working day
    assert morning.due_day(CAL, sh(2026, 9, 30, 15, 40)) == date(2026, 9, 30)
    assert morning.due_day(CAL, sh(2026, 9, 30, 18)) is None  # the day is over: never sent later
    assert morning.due_day(SPLIT, sh(2026, 9, 30, 12, 30)) == date(2026, 9, 30)  # the lunch break too


def test_never_due_on_a_day_off() -> None:
    for t in (sh(2026, 10, 1, 10), sh(2026, 10, 4, 10), sh(2026, 10, 4, 0)):
        assert morning.due_day(CAL, t) is None
    assert morning.due_day(CAL, sh(2026, 10, 11, 9, 30)) == date(2026, 10, 11)


def test_a_calendar_open_around_the_clock_is_due_from_midnight() -> None:
    always = fast_policy().calendar
    assert morning.due_day(always, sh(2026, 10, 4, 0, 0)) == date(2026, 10, 4)
    assert morning.due_day(always, sh(2026, 10, 4, 23, 59)) == date(2026, 10, 4)


def test_the_window_runs_from_the_previous_working_day_to_today() -> None:
    w = morning.window(CAL, date(2026, 10, 5))  # Monday after a Sunday off
    assert (w.since, w.start, w.end, w.working_day) == (
        date(2026, 10, 3), sh(2026, 10, 3), sh(2026, 10, 5), True)
    assert not morning.window(CAL, date(2026, 10, 4)).working_day
    assert morning.purpose(date(2026, 10, 5)) == "morning_summary:2026-10-05"


# --- the text -----------------------------------------------------------------------------------------


def figures(**over: object) -> MorningFigures:
    base: dict[str, object] = dict(
        day=date(2026, 10, 5), since=date(2026, 10, 3), timezone="Asia/Shanghai", working_day=True,
        computed_at=sh(2026, 10, 5, 9), new_leads=5, leads_by_source={"online": 2, "marketing": 3},
        late_count=4,
        late=[LateStep(case_id=12, step="callback", step_label="经理回访", owner="陈建国", late_seconds=25 * 60),
              LateStep(case_id=15, step="contact", step_label="设计师联系客户", owner=None, late_seconds=7200),
              LateStep(case_id=16, step="debrief", step_label="复盘讲评", owner="陈建国", late_seconds=600),
              LateStep(case_id=17, step="measure", step_label="量房", owner="吴佳", late_seconds=60)],
        stalled_cases=2, stalled_steps=3,
        stalled=[StalledStep(case_id=7, step="first_meeting", step_label="首次见面", owner="吴佳",
                             overdue_seconds=86400 + 2 * 3600)],
        open_work=[OpenWork(staff_id=1, name="陈建国", open_steps=8, overdue=0),
                   OpenWork(staff_id=6, name="周一鸣", open_steps=6, overdue=2)],
        visits=[Visit(case_id=12, at=sh(2026, 10, 5, 10), kind=MeetingKind.measure, client="王先生",
                      designer="周一鸣"),
                Visit(case_id=15, at=sh(2026, 10, 5, 14, 30), kind=MeetingKind.office_visit, client="李女士",
                      designer=None)],
    )
    base.update(over)
    return MorningFigures.model_validate(base)


def test_the_text_says_each_figure_on_its_own_short_line() -> None:
    lines = morning.summary_lines(figures())
    assert lines == [
        "【晨报】10月5日（周一）",
        "10月3日起新客户 5 个：市场部3、网销2",
        "10月3日起超时完成 4 项：#12经理回访（陈建国，晚25分钟）、#15设计师联系客户（未指定，晚2小时）、"
        "#16复盘讲评（陈建国，晚10分钟） 等4项",
        "当前超时 2 个案例：#7首次见面（吴佳，超时1天2小时） 等2个",
        "在办最多：陈建国8项、周一鸣6项（超时2）",
        "今日到店/量房 2 个：10:00 量房 #12王先生（设计师周一鸣）；14:30 到店 #15李女士（设计师未指定）",
    ]
    assert morning.summary_text(figures()) == "\n".join(lines)


def test_a_quiet_day_says_so() -> None:
    lines = morning.summary_lines(figures(
        day=date(2026, 10, 6), since=date(2026, 10, 5), new_leads=0, leads_by_source={}, late_count=0, late=[],
        stalled_cases=0, stalled_steps=0, stalled=[], open_work=[], visits=[]))
    assert lines == ["【晨报】10月6日（周二）", "昨日新客户 0 个", "昨日超时完成 0 项", "当前超时 0 个案例",
                     "在办最多：无", "今日到店/量房：无"]


def test_no_phone_number_ever_appears_in_the_text() -> None:
    typed = "13812345678"  # staff typed a phone into the client's name
    visit = Visit(case_id=3, at=sh(2026, 10, 5, 11), kind=MeetingKind.measure, client=f"王{typed}",
                  designer="+86 139-1234-5678")
    text = morning.summary_text(figures(visits=[visit]))
    assert not re.search(r"1[3-9]\d{9}", re.sub(r"[\s\-+]", "", text))
    assert "5678" not in text  # not even masked: removed whole


def test_a_client_is_named_by_salutation_only() -> None:
    assert morning.client_salutation("王建国", Gender.male) == "王先生"
    assert morning.client_salutation("李丽", Gender.female) == "李女士"
    assert morning.client_salutation("欧阳明", Gender.unknown) == "欧阳客户"
    assert morning.client_salutation("", Gender.unknown) == "客户"


def test_durations_read_as_staff_say_them() -> None:
    assert [morning.span(s) for s in (0, 59, 60, 3600, 3660, 86400, 90000)] == [
        "不到1分钟", "不到1分钟", "1分钟", "1小时", "1小时1分", "1天", "1天1小时"]
    assert morning.step_label("callback") == "经理回访" and morning.step_label("nope") == "nope"
    assert morning.source_label("walk_in") == "自然客户" and morning.source_label("x") == "x"
    assert morning.period_label(figures(since=date(2026, 10, 4))) == "昨日"
    assert timedelta(days=1) == figures().day - date(2026, 10, 4)
