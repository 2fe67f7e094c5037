"""The SLA policy (SPEC §4, §5): defaults, YAML parsing, the fast policy, budget bands."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from pydantic import ValidationError

from domain.enums import Level, StepName
from domain.policy import CalendarPolicy, Policy, fast_policy, parse_policy


def test_defaults_match_spec() -> None:
    p = Policy()
    assert p.duration(StepName.callback) == timedelta(minutes=15)
    assert p.duration(StepName.reception_review) == timedelta(minutes=30)
    assert p.duration(StepName.assign_designer) == timedelta(minutes=30)
    assert p.duration(StepName.assign_assistant) == timedelta(minutes=60)
    assert p.duration(StepName.contact) == timedelta(hours=2)
    assert p.duration(StepName.debrief) == timedelta(hours=24)
    assert p.walk_in_assignment == timedelta(minutes=10)
    assert p.followups == [timedelta(days=7), timedelta(days=15)]
    assert p.client_reminder_before == timedelta(days=1)
    assert p.staff_reminder_before == timedelta(hours=1)
    assert p.manager_reminder_before == timedelta(minutes=15)


def test_default_calendar_is_mon_to_sat_9_to_18_shanghai() -> None:
    cal = Policy().calendar
    assert cal.timezone == "Asia/Shanghai"
    assert not cal.always_open
    assert cal.hours == {d: [(time(9), time(18))] for d in range(6)}
    assert 6 not in cal.hours  # Sunday off


def test_default_escalation_chain() -> None:
    chain = Policy().chain(StepName.callback)
    assert [(s.after, s.target) for s in chain.stages] == [
        (timedelta(0), "owner"),
        (timedelta(minutes=15), "superior"),
    ]
    assert chain.repeat_every == timedelta(hours=1)


def test_parse_policy_yaml_with_iso_and_seconds_durations() -> None:
    p = parse_policy(
        """
name: shop
durations:
  callback: PT15M
  contact: 7200
walk_in_assignment: PT5M
calendar:
  timezone: Asia/Shanghai
  hours:
    0: [["09:00", "12:00"], ["13:30", "18:00"]]
  holidays: [2026-10-01, 2026-10-02]
  makeup_workdays: [2026-09-27]
escalation_overrides:
  callback:
    stages:
      - {after: PT0S, target: owner}
      - {after: 600, target: director}
    repeat_every: PT30M
"""
    )
    assert p.name == "shop"
    assert p.duration(StepName.callback) == timedelta(minutes=15)
    assert p.duration(StepName.contact) == timedelta(hours=2)
    # A step missing from the file falls back to the SPEC default.
    assert p.duration(StepName.debrief) == timedelta(hours=24)
    assert p.walk_in_assignment == timedelta(minutes=5)
    assert p.calendar.hours[0] == [(time(9), time(12)), (time(13, 30), time(18))]
    assert p.calendar.holidays == [date(2026, 10, 1), date(2026, 10, 2)]
    assert p.calendar.makeup_workdays == [date(2026, 9, 27)]
    chain = p.chain(StepName.callback)
    assert chain.stages[1].after == timedelta(minutes=10) and chain.stages[1].target == "director"
    assert chain.repeat_every == timedelta(minutes=30)
    assert p.chain(StepName.contact) == p.escalation


def test_empty_yaml_is_the_default_policy() -> None:
    assert parse_policy("") == Policy()


@pytest.mark.parametrize(
    "text",
    [
        "callback_duration: PT15M",  # unknown top-level key (typo)
        "calendar:\n  timezon: Asia/Shanghai",  # unknown nested key
        "durations:\n  kallback: PT15M",  # unknown step
    ],
)
def test_unknown_keys_are_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_policy(text)


def test_non_mapping_and_invalid_calendars_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be a YAML mapping"):
        parse_policy("- a\n- b")
    with pytest.raises(ValidationError):
        CalendarPolicy(hours={7: [(time(9), time(18))]})
    with pytest.raises(ValidationError):
        CalendarPolicy(hours={0: [(time(18), time(9))]})
    with pytest.raises(ValidationError):
        CalendarPolicy(hours={})  # no working time at all


def test_fast_policy_is_always_open_and_short() -> None:
    p = fast_policy()
    assert p.calendar.always_open
    assert all(d <= timedelta(minutes=1) for s, d in p.durations.items() if s != StepName.outcome)
    assert p.duration(StepName.outcome) <= timedelta(minutes=5)
    assert p.duration(StepName.callback) == timedelta(seconds=10)
    assert p.walk_in_assignment < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("budget", "level"),
    [
        (None, Level.designer),
        (0, Level.junior),
        (99_999, Level.junior),
        (100_000, Level.designer),
        (299_999, Level.designer),
        (300_000, Level.senior),
        (800_000, Level.chief),
        (5_000_000, Level.chief),
    ],
)
def test_level_for_budget(budget: int | None, level: Level) -> None:
    assert Policy().level_for_budget(budget) == level


def test_policy_round_trips_through_json() -> None:
    # The policy is copied into each case (workflow input), so it must survive serialization.
    p = fast_policy()
    assert Policy.model_validate_json(p.model_dump_json()) == p
