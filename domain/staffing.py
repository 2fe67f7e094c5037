"""What a staff record must hold (only designers have a level, and every designer has one), and who
is at work: a manager's deputy holds their steps while they are away (SPEC §14)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain import quiet
from domain.enums import Level, Role, StaffStatus
from domain.policy import CalendarPolicy
from domain.quiet import Schedule


@dataclass(frozen=True)
class Availability:
    """What decides whether someone is at work: their status and in-office schedule."""

    id: int
    status: StaffStatus
    schedule: Schedule | None = None


def has_level(role: Role) -> bool:
    """Whether people of `role` carry a designer level (chief, senior, designer, junior)."""
    return role == Role.designer


def level_error(role: Role, level: Level | None) -> str | None:
    """Why a role and a level do not go together (None: they do)."""
    if has_level(role) and level is None:
        return "设计师必须有级别 (chief/senior/designer/junior)"
    if not has_level(role) and level is not None:
        return "只有设计师有级别"
    return None


def is_away(status: StaffStatus, schedule: Schedule | None, calendar: CalendarPolicy, now: datetime) -> bool:
    """Whether someone is not at work now: on leave or inactive, or outside their working time (their
    in-office schedule, else the calendar's working hours)."""
    return status != StaffStatus.active or quiet.off_duty_until(calendar, schedule, now) is not None


def acting_deputy(manager: Availability, deputy: Availability | None, calendar: CalendarPolicy,
                  now: datetime) -> int | None:
    """Who holds a manager's steps now: their deputy while the manager is away and the deputy at work
    (None: the manager themself; a deputy who is away too leaves them with the manager)."""
    if deputy is None or not is_away(manager.status, manager.schedule, calendar, now):
        return None
    if is_away(deputy.status, deputy.schedule, calendar, now):
        return None
    return deputy.id
