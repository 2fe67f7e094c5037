"""Business calendar (SPEC §4): working time over a :class:`~domain.policy.CalendarPolicy`.

Conventions every caller may rely on:

* All datetimes in and out are timezone-aware; naive input raises ``ValueError``. Results are UTC.
* Working periods are half-open ``[start, end)``: 09:00 is working time, 18:00 is not.
* When business time added with :func:`add_business_time` runs out exactly at the close of a
  period, the result is that period end (e.g. 18:00), not the next morning. ``delta == 0`` is the
  exception: it returns :func:`next_business_moment` of the start.
* A date listed in ``holidays`` has no working time, even if it is also a make-up working day;
  a date in ``makeup_workdays`` (调休) works ``makeup_hours`` whatever its weekday.
* Arithmetic is done in UTC (elapsed time), never in local wall-clock, so DST zones stay correct.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.policy import CalendarPolicy

# A calendar that has no working time within this many days is treated as broken.
MAX_IDLE_DAYS = 3 * 366

_Period = tuple[datetime, datetime]


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: business calendar needs timezone-aware datetimes")
    return t.astimezone(UTC)


def _zone(cal: CalendarPolicy) -> ZoneInfo:
    try:
        return ZoneInfo(cal.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {cal.timezone!r}") from exc


class _Days:
    """Per-call view of a calendar: sets for fast lookups and the zone."""

    def __init__(self, cal: CalendarPolicy) -> None:
        self.zone = _zone(cal)
        self.hours = cal.hours
        self.holidays = frozenset(cal.holidays)
        self.makeup = frozenset(cal.makeup_workdays)
        self.makeup_hours = cal.makeup_hours

    def local_date(self, t: datetime) -> date:
        return t.astimezone(self.zone).date()

    def periods_on(self, d: date) -> list[_Period]:
        """Working periods of one local date, in UTC, sorted and merged."""
        if d in self.holidays:
            return []
        raw: list[tuple[time, time]] = list(
            self.makeup_hours if d in self.makeup else self.hours.get(d.weekday(), [])
        )
        out: list[_Period] = []
        for s, e in sorted(raw):
            start = datetime.combine(d, s, tzinfo=self.zone).astimezone(UTC)
            end = datetime.combine(d, e, tzinfo=self.zone).astimezone(UTC)
            if end <= start:  # e.g. a period swallowed by a DST gap
                continue
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        return out

    def forward(self, t: datetime, until: datetime | None = None) -> Iterator[_Period]:
        """Working periods ending after ``t``, in order; stops after ``until`` when given."""
        d = self.local_date(t) - timedelta(days=1)
        last_day = self.local_date(until) + timedelta(days=1) if until is not None else None
        idle = 0
        while last_day is None or d <= last_day:
            periods = self.periods_on(d)
            idle = 0 if periods else idle + 1
            if idle > MAX_IDLE_DAYS and last_day is None:
                raise ValueError(f"the calendar has no working time for {MAX_IDLE_DAYS} days after {t}")
            for p in periods:
                if p[1] > t:
                    yield p
            d += timedelta(days=1)

    def backward(self, t: datetime) -> Iterator[_Period]:
        """Working periods starting at or before ``t``, latest first (``t`` at an opening is working time)."""
        d = self.local_date(t) + timedelta(days=1)
        idle = 0
        while True:
            periods = self.periods_on(d)
            idle = 0 if periods else idle + 1
            if idle > MAX_IDLE_DAYS:
                raise ValueError(f"the calendar has no working time for {MAX_IDLE_DAYS} days before {t}")
            for p in reversed(periods):
                if p[0] <= t:
                    yield p
            d -= timedelta(days=1)


def is_business_time(cal: CalendarPolicy, t: datetime) -> bool:
    """Whether ``t`` falls inside a working period (periods are half-open: the close is not working)."""
    u = _utc(t)
    if cal.always_open:
        return True
    days = _Days(cal)
    return any(s <= u < e for s, e in days.periods_on(days.local_date(u)))


def next_business_moment(cal: CalendarPolicy, t: datetime) -> datetime:
    """``t`` itself if it is working time, else the start of the next working period (UTC)."""
    u = _utc(t)
    if cal.always_open:
        return u
    # forward() without `until` never runs out: it yields or raises ValueError.
    s, _e = next(_Days(cal).forward(u))
    return max(s, u)


def latest_business_moment_at_or_before(cal: CalendarPolicy, t: datetime) -> datetime:
    """``t`` if it is working time, else the end (close) of the previous working period (UTC)."""
    u = _utc(t)
    if cal.always_open:
        return u
    _s, e = next(_Days(cal).backward(u))
    return min(e, u)


def add_business_time(cal: CalendarPolicy, start: datetime, delta: timedelta) -> datetime:
    """``start`` plus ``delta`` of working time; lands on the period end when work ends at close."""
    if delta < timedelta(0):
        raise ValueError(f"negative business duration {delta}")
    u = _utc(start)
    if cal.always_open:
        return u + delta
    if delta == timedelta(0):
        return next_business_moment(cal, u)
    remaining = delta
    for s, e in _Days(cal).forward(u):
        begin = max(s, u)
        available = e - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise AssertionError("unreachable: forward() raises before running out")  # pragma: no cover


def add_time(cal: CalendarPolicy, start: datetime, delta: timedelta, *, wall_clock: bool) -> datetime:
    """Wall-clock ``start + delta`` (walk-in steps) or :func:`add_business_time` (UTC)."""
    if wall_clock:
        return _utc(start) + delta
    return add_business_time(cal, start, delta)


def business_time_between(cal: CalendarPolicy, a: datetime, b: datetime) -> timedelta:
    """Working time inside ``[a, b)``; zero when ``b <= a``."""
    ua, ub = _utc(a), _utc(b)
    if ub <= ua:
        return timedelta(0)
    if cal.always_open:
        return ub - ua
    total = timedelta(0)
    for s, e in _Days(cal).forward(ua, until=ub):
        if s >= ub:
            break
        total += min(e, ub) - max(s, ua)
    return total


def local_date(cal: CalendarPolicy, t: datetime) -> date:
    """The calendar's local date of the moment ``t``."""
    return _utc(t).astimezone(_zone(cal)).date()


def working_hours_on(cal: CalendarPolicy, d: date) -> tuple[datetime, datetime] | None:
    """The first opening and the last close of local date ``d`` (UTC); None when ``d`` has no working time.

    A calendar open around the clock works the whole local day, midnight to midnight.
    """
    if cal.always_open:
        zone = _zone(cal)
        start = datetime.combine(d, time(0), tzinfo=zone)
        end = datetime.combine(d + timedelta(days=1), time(0), tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)
    periods = _Days(cal).periods_on(d)
    if not periods:
        return None
    return periods[0][0], periods[-1][1]


def previous_working_day(cal: CalendarPolicy, d: date) -> date:
    """The last local date before ``d`` that has working time (holidays and make-up days included)."""
    if cal.always_open:
        return d - timedelta(days=1)
    days = _Days(cal)
    for back in range(1, MAX_IDLE_DAYS + 1):
        candidate = d - timedelta(days=back)
        if days.periods_on(candidate):
            return candidate
    raise ValueError(f"the calendar has no working time for {MAX_IDLE_DAYS} days before {d}")
