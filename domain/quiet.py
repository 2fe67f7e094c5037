"""When a message may go out (SPEC §14): nobody is texted at night, nobody is paged off duty.

The outbox writer asks these when it records a message, and the row waits (`not_before`) until then:

* a client SMS that falls inside the policy's quiet window (default 21:00–08:30 in the calendar's time
  zone) waits for the window's end;
* a staff notice outside the recipient's working hours waits for their next working start: their
  in-office schedule when they have one, else the calendar's working hours (holidays and make-up days
  included); an urgent notice (policy `urgent_steps`, a walk-in client waiting) goes at once.

Pure: the moment comes in, nothing reads a clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain import calendar as cal
from domain.policy import CalendarPolicy, Policy

Schedule = dict[int, list[tuple[time, time]]]


def _in_window(t: time, start: time, end: time) -> bool:
    # A window that spans midnight (21:00–08:30) is the two ends of the day.
    return start <= t < end if start < end else (t >= start or t < end)


def quiet_until(policy: Policy, t: datetime) -> datetime | None:
    """The end of the client quiet window when `t` lies inside it (UTC), else None."""
    q = policy.quiet_hours
    if q is None:
        return None
    zone = ZoneInfo(policy.calendar.timezone)
    local = t.astimezone(zone)
    if not _in_window(local.time(), q.start, q.end):
        return None
    day: date = local.date()
    if q.start > q.end and local.time() >= q.start:
        day += timedelta(days=1)  # late evening: the window ends tomorrow morning
    return datetime.combine(day, q.end, tzinfo=zone).astimezone(UTC)


def working_calendar(calendar: CalendarPolicy, schedule: Schedule | None) -> CalendarPolicy:
    """A person's working time: their in-office schedule (with the company's holidays) or the calendar.
    A calendar open around the clock (the fast demo policy) holds nobody's notices."""
    if not schedule or calendar.always_open:
        return calendar
    return calendar.model_copy(update={"hours": schedule})


def off_duty_until(calendar: CalendarPolicy, schedule: Schedule | None, t: datetime) -> datetime | None:
    """The person's next working start when `t` is outside their working time (UTC), else None."""
    work = working_calendar(calendar, schedule)
    if work.always_open or cal.is_business_time(work, t):
        return None
    try:
        return cal.next_business_moment(work, t)
    except ValueError:
        return None  # a schedule with no working time at all: never hold a notice for ever


def not_before(policy: Policy, t: datetime, *, client: bool, schedule: Schedule | None = None,
               urgent: bool = False) -> datetime | None:
    """When a message decided at `t` may go out: None for at once."""
    if client:
        return quiet_until(policy, t)
    if urgent:
        return None
    return off_duty_until(policy.calendar, schedule, t)
