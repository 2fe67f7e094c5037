"""Quiet hours (SPEC §14): client SMS wait for the quiet window's end; staff notices for working time."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from domain.policy import Policy, fast_policy
from domain.quiet import not_before, quiet_until

SH = ZoneInfo("Asia/Shanghai")
POLICY = Policy()  # 21:00–08:30; Mon–Sat 09:00–18:00


def sh(d: int, h: int, m: int = 0) -> datetime:
    return datetime(2030, 5, d, h, m, tzinfo=SH)  # 2030-05-06 is a Monday


def test_client_sms_at_night_waits_for_the_end_of_the_quiet_window() -> None:
    assert quiet_until(POLICY, sh(6, 20, 59)) is None
    assert quiet_until(POLICY, sh(6, 21, 0)) == sh(7, 8, 30)
    assert quiet_until(POLICY, sh(7, 3, 0)) == sh(7, 8, 30)
    assert quiet_until(POLICY, sh(7, 8, 30)) is None
    assert quiet_until(fast_policy(), sh(7, 3, 0)) is None  # the demo policy texts at any hour
    day = POLICY.model_copy(update={"quiet_hours": POLICY.quiet_hours.model_copy(  # type: ignore[union-attr]
        update={"start": time(12, 0), "end": time(13, 30)})})
    assert quiet_until(day, sh(6, 12, 15)) == sh(6, 13, 30)  # a window within one day


def test_staff_notices_wait_for_the_next_working_start_unless_urgent() -> None:
    # a lead at 20:00 on Monday: the manager hears of it at 09:00 on Tuesday
    assert not_before(POLICY, sh(6, 20, 0), client=False) == sh(7, 9, 0)
    assert not_before(POLICY, sh(6, 20, 0), client=False, urgent=True) is None
    assert not_before(POLICY, sh(6, 10, 0), client=False) is None
    # Saturday evening: Monday morning (Sunday is off)
    assert not_before(POLICY, sh(11, 19, 0), client=False) == sh(13, 9, 0)
    # the person's own in-office schedule when they have one: Tuesday from 13:00
    afternoons = {d: [(time(13, 0), time(21, 0))] for d in range(6)}
    assert not_before(POLICY, sh(7, 10, 0), client=False, schedule=afternoons) == sh(7, 13, 0)
    assert not_before(POLICY, sh(6, 20, 0), client=False, schedule=afternoons) is None
    # a calendar open around the clock holds nobody
    assert not_before(fast_policy(), sh(7, 3, 0), client=False, schedule=afternoons) is None
