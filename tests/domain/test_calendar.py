"""Business calendar (SPEC §4): working time, holidays, 调休, and the period-end convention."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.calendar import (
    add_business_time,
    add_time,
    business_time_between,
    is_business_time,
    latest_business_moment_at_or_before,
    next_business_moment,
)
from domain.policy import CalendarPolicy

SH = ZoneInfo("Asia/Shanghai")
DEFAULT = CalendarPolicy()  # Mon–Sat 09:00–18:00 Asia/Shanghai
US = timedelta(microseconds=1)


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)


def is_period_end(cal: CalendarPolicy, t: datetime) -> bool:
    """t closes a working period: not working itself, but the microsecond before is."""
    return not is_business_time(cal, t) and is_business_time(cal, t - US)


# --- concrete examples -------------------------------------------------------------------------


def test_default_calendar_is_mon_to_sat_nine_to_six() -> None:
    assert is_business_time(DEFAULT, sh(2026, 11, 30, 9, 0))  # Monday 09:00
    assert is_business_time(DEFAULT, sh(2026, 11, 28, 17, 59))  # Saturday
    assert not is_business_time(DEFAULT, sh(2026, 11, 28, 18, 0))  # close is not working time
    assert not is_business_time(DEFAULT, sh(2026, 11, 29, 10, 0))  # Sunday
    assert not is_business_time(DEFAULT, sh(2026, 11, 30, 8, 59))


def test_lead_at_night_is_due_next_working_morning() -> None:
    due = add_business_time(DEFAULT, sh(2026, 11, 26, 23, 0), timedelta(minutes=15))  # Thursday 23:00
    assert due == sh(2026, 11, 27, 9, 15)


def test_saturday_evening_skips_sunday() -> None:
    due = add_business_time(DEFAULT, sh(2026, 11, 28, 17, 50), timedelta(minutes=15))
    assert due == sh(2026, 11, 30, 9, 5)  # Monday 09:05 local
    assert due.tzinfo is UTC and due == datetime(2026, 11, 30, 1, 5, tzinfo=UTC)  # UTC+8


def test_results_are_utc_and_accept_any_offset() -> None:
    start_utc = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)  # Friday 09:00 in Shanghai
    assert add_business_time(DEFAULT, start_utc, timedelta(hours=1)) == datetime(
        2026, 11, 27, 2, 0, tzinfo=UTC
    )
    assert next_business_moment(DEFAULT, sh(2026, 11, 27, 8, 0)).utcoffset() == timedelta(0)


def test_work_ending_exactly_at_close_returns_the_close() -> None:
    # Convention: remaining work that finishes exactly at close lands on the close (18:00).
    assert add_business_time(DEFAULT, sh(2026, 11, 27, 17, 45), timedelta(minutes=15)) == sh(2026, 11, 27, 18)
    assert add_business_time(DEFAULT, sh(2026, 11, 27, 9), timedelta(hours=9)) == sh(2026, 11, 27, 18)
    # A second more rolls to the next working morning.
    assert add_business_time(DEFAULT, sh(2026, 11, 27, 17, 45), timedelta(minutes=15, seconds=1)) == sh(
        2026, 11, 28, 9
    ) + timedelta(seconds=1)


def test_zero_delta_is_next_business_moment() -> None:
    assert add_business_time(DEFAULT, sh(2026, 11, 27, 18), timedelta(0)) == sh(2026, 11, 28, 9)
    assert add_business_time(DEFAULT, sh(2026, 11, 27, 10), timedelta(0)) == sh(2026, 11, 27, 10)


def test_next_business_moment() -> None:
    assert next_business_moment(DEFAULT, sh(2026, 11, 27, 10, 30)) == sh(2026, 11, 27, 10, 30)
    assert next_business_moment(DEFAULT, sh(2026, 11, 27, 3)) == sh(2026, 11, 27, 9)
    assert next_business_moment(DEFAULT, sh(2026, 11, 28, 18)) == sh(2026, 11, 30, 9)  # Sat close → Mon


def test_holiday_is_skipped() -> None:
    cal = CalendarPolicy(holidays=[date(2026, 10, d) for d in range(1, 8)])  # 国庆
    due = add_business_time(cal, sh(2026, 9, 30, 17, 50), timedelta(minutes=15))
    assert due == sh(2026, 10, 8, 9, 5)
    assert not is_business_time(cal, sh(2026, 10, 2, 10))  # a Friday, but a holiday


def test_sunday_makeup_workday_counts() -> None:
    cal = CalendarPolicy(makeup_workdays=[date(2026, 9, 27)])  # Sunday 调休
    assert is_business_time(cal, sh(2026, 9, 27, 10))
    assert add_business_time(cal, sh(2026, 9, 26, 17, 50), timedelta(minutes=15)) == sh(2026, 9, 27, 9, 5)


def test_makeup_day_uses_makeup_hours() -> None:
    cal = CalendarPolicy(makeup_workdays=[date(2026, 9, 27)], makeup_hours=[(time(10), time(16))])
    assert not is_business_time(cal, sh(2026, 9, 27, 9, 30))
    assert add_business_time(cal, sh(2026, 9, 26, 17, 50), timedelta(minutes=15)) == sh(2026, 9, 27, 10, 5)
    assert business_time_between(cal, sh(2026, 9, 27), sh(2026, 9, 28)) == timedelta(hours=6)


def test_holiday_wins_over_makeup_day() -> None:
    cal = CalendarPolicy(holidays=[date(2026, 9, 27)], makeup_workdays=[date(2026, 9, 27)])
    assert not is_business_time(cal, sh(2026, 9, 27, 10))


def test_business_time_between() -> None:
    # Friday 17:00 → Monday 10:00: 1 h Friday + 9 h Saturday + 1 h Monday.
    assert business_time_between(DEFAULT, sh(2026, 11, 27, 17), sh(2026, 11, 30, 10)) == timedelta(hours=11)
    assert business_time_between(DEFAULT, sh(2026, 11, 30, 10), sh(2026, 11, 27, 17)) == timedelta(0)
    assert business_time_between(DEFAULT, sh(2026, 11, 29, 1), sh(2026, 11, 29, 23)) == timedelta(0)


def test_latest_business_moment_at_or_before() -> None:
    # A reminder planned for 03:00 Tuesday goes out at Monday's close, not at night.
    assert latest_business_moment_at_or_before(DEFAULT, sh(2026, 12, 1, 3)) == sh(2026, 11, 30, 18)
    monday_night = sh(2026, 11, 30, 3)  # goes back over Sunday to Saturday's close
    assert latest_business_moment_at_or_before(DEFAULT, monday_night) == sh(2026, 11, 28, 18)
    assert latest_business_moment_at_or_before(DEFAULT, sh(2026, 11, 30, 11)) == sh(2026, 11, 30, 11)
    assert latest_business_moment_at_or_before(DEFAULT, sh(2026, 11, 30, 18)) == sh(2026, 11, 30, 18)
    # the opening itself is working time (not Saturday's close): a client's reminder a day before a
    # Tuesday 09:00 meeting goes out on Monday at 09:00
    assert latest_business_moment_at_or_before(DEFAULT, sh(2026, 11, 30, 9)) == sh(2026, 11, 30, 9)


def test_overlapping_and_touching_periods_count_once() -> None:
    """A policy file may list periods that overlap or touch (09–12, 11–14, 14–18): each working minute
    counts once, and a step is not due at a seam that is no close."""
    cal = CalendarPolicy(hours={d: [(time(14), time(18)), (time(9), time(12)), (time(11), time(14))] for d in range(5)})
    assert business_time_between(cal, sh(2026, 11, 30, 8), sh(2026, 11, 30, 20)) == timedelta(hours=9)
    assert add_business_time(cal, sh(2026, 11, 30, 9), timedelta(hours=9)) == sh(2026, 11, 30, 18)
    assert add_business_time(cal, sh(2026, 11, 30, 11, 30), timedelta(hours=3)) == sh(2026, 11, 30, 14, 30)
    assert latest_business_moment_at_or_before(cal, sh(2026, 11, 30, 20)) == sh(2026, 11, 30, 18)
    assert next_business_moment(cal, sh(2026, 11, 30, 12, 30)) == sh(2026, 11, 30, 12, 30)


def test_the_local_date_decides_the_day_not_the_utc_date() -> None:
    """An early shift (06:00–10:00 in Shanghai) starts on the previous UTC day: Monday 07:00 is Monday's."""
    cal = CalendarPolicy(hours={0: [(time(6), time(10))]})
    assert is_business_time(cal, sh(2026, 11, 30, 7))
    assert not is_business_time(cal, sh(2026, 11, 29, 7))
    assert next_business_moment(cal, sh(2026, 11, 29, 23)) == sh(2026, 11, 30, 6)


def test_split_periods_lunch_break() -> None:
    cal = CalendarPolicy(hours={d: [(time(9), time(12)), (time(13, 30), time(18))] for d in range(5)})
    assert add_business_time(cal, sh(2026, 11, 27, 11, 50), timedelta(minutes=15)) == sh(2026, 11, 27, 13, 35)
    assert not is_business_time(cal, sh(2026, 11, 27, 12, 30))
    assert latest_business_moment_at_or_before(cal, sh(2026, 11, 27, 12, 30)) == sh(2026, 11, 27, 12)


def test_add_time_wall_clock_ignores_calendar() -> None:
    start = sh(2026, 11, 29, 23)  # Sunday night
    assert add_time(DEFAULT, start, timedelta(minutes=10), wall_clock=True) == start + timedelta(minutes=10)
    assert add_time(DEFAULT, start, timedelta(minutes=10), wall_clock=False) == sh(2026, 11, 30, 9, 10)


def test_always_open_is_plain_arithmetic() -> None:
    cal = CalendarPolicy(always_open=True)
    start = sh(2026, 11, 29, 3)
    assert add_business_time(cal, start, timedelta(seconds=10)) == start + timedelta(seconds=10)
    assert is_business_time(cal, start)
    assert next_business_moment(cal, start) == start
    assert latest_business_moment_at_or_before(cal, start) == start
    assert business_time_between(cal, start, start + timedelta(hours=5)) == timedelta(hours=5)


def test_long_span_adds_up() -> None:
    # 30 days of working time (about ten weeks of Mon-Sat 09-18): speed is a benchmark matter, not a test's
    start = sh(2026, 1, 5, 9)
    due = add_business_time(DEFAULT, start, timedelta(days=30))
    assert business_time_between(DEFAULT, start, due) == timedelta(days=30)
    assert is_business_time(DEFAULT, due) or due.astimezone(SH).time() == time(18, 0)


def test_calendar_without_working_time_raises() -> None:
    cal = CalendarPolicy(hours={}, makeup_workdays=[date(2020, 1, 5)])
    with pytest.raises(ValueError, match="no working time"):
        add_business_time(cal, sh(2026, 1, 1), timedelta(minutes=15))
    with pytest.raises(ValueError, match="no working time"):
        next_business_moment(cal, sh(2026, 1, 1))
    assert business_time_between(cal, sh(2026, 1, 1), sh(2026, 2, 1)) == timedelta(0)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: is_business_time(DEFAULT, t),
        lambda t: next_business_moment(DEFAULT, t),
        lambda t: add_business_time(DEFAULT, t, timedelta(minutes=1)),
        lambda t: add_time(DEFAULT, t, timedelta(minutes=1), wall_clock=True),
        lambda t: business_time_between(DEFAULT, t, t),
        lambda t: latest_business_moment_at_or_before(DEFAULT, t),
    ],
)
def test_naive_datetimes_are_rejected(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="naive"):
        call(datetime(2026, 11, 27, 10))


def test_negative_delta_and_unknown_zone_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative business duration"):
        add_business_time(DEFAULT, sh(2026, 11, 27, 10), timedelta(minutes=-1))
    with pytest.raises(ValueError, match="time zone"):
        is_business_time(CalendarPolicy(timezone="Mars/Olympus"), sh(2026, 11, 27, 10))


def test_dst_day_counts_elapsed_time() -> None:
    # Europe/Berlin springs forward on 2026-03-29 at 02:00 → 03:00: 01:00–04:00 is 2 h elapsed.
    cal = CalendarPolicy(timezone="Europe/Berlin", hours={6: [(time(1), time(4))]})
    berlin = ZoneInfo("Europe/Berlin")
    day = datetime(2026, 3, 29, tzinfo=berlin)
    assert business_time_between(cal, day, day + timedelta(days=1)) == timedelta(hours=2)
    assert add_business_time(
        cal, datetime(2026, 3, 29, 1, 30, tzinfo=berlin), timedelta(hours=1)
    ) == datetime(2026, 3, 29, 3, 30, tzinfo=berlin)


# --- properties --------------------------------------------------------------------------------

ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York"]


@st.composite
def periods(draw: st.DrawFn) -> list[tuple[time, time]]:
    points = sorted(draw(st.sets(st.integers(0, 23 * 60 + 59), max_size=4)))
    if len(points) % 2:
        points = points[:-1]
    return [
        (time(a // 60, a % 60), time(b // 60, b % 60)) for a, b in zip(points[::2], points[1::2], strict=True)
    ]


@st.composite
def calendars(draw: st.DrawFn) -> CalendarPolicy:
    if draw(st.booleans()):
        return CalendarPolicy(
            holidays=draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=10)),
            makeup_workdays=draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=3)),
        )
    hours = {d: draw(periods()) for d in range(7)}
    if not any(hours.values()):
        hours[0] = [(time(9), time(17))]
    return CalendarPolicy(
        timezone=draw(st.sampled_from(ZONES)),
        hours=hours,
        holidays=draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=10)),
        makeup_workdays=draw(st.lists(st.dates(date(2026, 1, 1), date(2026, 12, 31)), max_size=3)),
        makeup_hours=draw(periods()) or [(time(9), time(18))],
    )


moments = st.datetimes(
    min_value=datetime(2025, 12, 1), max_value=datetime(2027, 1, 31), timezones=st.just(UTC)
)
deltas = st.timedeltas(min_value=US, max_value=timedelta(days=5))
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(calendars(), moments, deltas)
def test_result_is_working_time_or_a_period_end(
    cal: CalendarPolicy, start: datetime, delta: timedelta
) -> None:
    due = add_business_time(cal, start, delta)
    assert due > start
    assert is_business_time(cal, due) or is_period_end(cal, due)
    assert due.tzinfo is UTC


@PROPS
@given(calendars(), moments, deltas)
def test_business_time_between_inverts_add(cal: CalendarPolicy, start: datetime, delta: timedelta) -> None:
    assert business_time_between(cal, start, add_business_time(cal, start, delta)) == delta


@PROPS
@given(calendars(), moments, deltas, deltas)
def test_monotonic_in_delta_and_additive(
    cal: CalendarPolicy, start: datetime, d1: timedelta, d2: timedelta
) -> None:
    a, b = add_business_time(cal, start, d1), add_business_time(cal, start, d1 + d2)
    assert a <= b
    assert add_business_time(cal, a, d2) == b


@PROPS
@given(calendars(), moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)), deltas)
def test_monotonic_in_start(cal: CalendarPolicy, start: datetime, later: timedelta, delta: timedelta) -> None:
    assert add_business_time(cal, start, delta) <= add_business_time(cal, start + later, delta)


@PROPS
@given(calendars(), moments)
def test_next_and_latest_business_moments(cal: CalendarPolicy, t: datetime) -> None:
    nxt = next_business_moment(cal, t)
    assert nxt >= t and is_business_time(cal, nxt)
    assert business_time_between(cal, t, nxt) == timedelta(0)
    assert (nxt == t) == is_business_time(cal, t)
    prev = latest_business_moment_at_or_before(cal, t)
    assert prev <= t and business_time_between(cal, prev, t) == timedelta(0)
    assert is_business_time(cal, prev) or is_period_end(cal, prev)


@PROPS
@given(calendars(), moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)))
def test_wall_clock_ignores_calendar(cal: CalendarPolicy, start: datetime, delta: timedelta) -> None:
    assert add_time(cal, start, delta, wall_clock=True) == start + delta
    assert add_time(cal, start, delta, wall_clock=False) == add_business_time(cal, start, delta)
