"""Designer and assistant allocation (SPEC §5, 客户分配制度): eligibility, rotation (轮单), reasons.

Pure ranking: the activity reads staff, open-case counts and the allocation ledger from PostgreSQL,
builds candidates, and this module decides the order and explains it in Chinese.

Rotation with weights: a designer's *effective* last assignment is ``last_assigned_at`` moved
earlier by ``(weight - 1)`` days. Weight 1.0 is neutral; 1.5 ranks the designer as if assigned half
a day earlier (so they come up sooner and get more clients over time); 0.5 half a day later. Designers
never assigned come first whatever their weight. Ties: fewer open cases, then higher weight, then
lower staff id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.enums import LEVEL_LABELS, LEVEL_RANK, Level, Scenario, StaffStatus
from domain.policy import Policy

_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_STATUS_REASONS = {StaffStatus.on_leave: "请假中", StaffStatus.inactive: "已停用"}
_OFFICE_SCENARIOS = frozenset({Scenario.office_visit, Scenario.walk_in})


@dataclass(frozen=True)
class DesignerCandidate:
    """A designer as allocation sees them: level, status, coverage, schedule, load and last turn."""

    staff_id: int
    name: str
    level: Level
    status: StaffStatus
    communities: tuple[str, ...]
    # weekday (0 = Monday) → in-office periods [start, end); an empty mapping means always in office.
    office_schedule: Mapping[int, Sequence[tuple[time, time]]]
    open_cases: int
    max_open_cases: int | None  # personal override of the level's maximum
    last_assigned_at: datetime | None
    weight: float = 1.0


@dataclass(frozen=True)
class RankedDesigner:
    """One suggestion line: rank 1..n when eligible, 0 when not; reasons in Chinese."""

    staff_id: int
    name: str
    level: Level
    rank: int
    eligible: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class AssistantCandidate:
    """An assistant designer as allocation sees them."""

    staff_id: int
    name: str
    status: StaffStatus
    open_cases: int


@dataclass(frozen=True)
class RankedAssistant:
    """One assistant suggestion: rank 1..n, reasons in Chinese."""

    staff_id: int
    name: str
    rank: int
    reasons: tuple[str, ...]


def _aware(t: datetime, what: str) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime for {what}: {t!r}")
    return t


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def in_office(schedule: Mapping[int, Sequence[tuple[time, time]]], local: datetime) -> bool:
    """Whether a local time falls in an in-office period [start, end); an empty schedule is always in."""
    if not schedule:
        return True
    t = local.time().replace(tzinfo=None)
    return any(start <= t < end for start, end in schedule.get(local.weekday(), ()))


def _effective_last(c: DesignerCandidate) -> datetime:
    assert c.last_assigned_at is not None
    # Clamped so an absurd weight cannot overflow datetime arithmetic.
    shift = min(max(c.weight - 1.0, -3650.0), 3650.0)
    return c.last_assigned_at.astimezone(UTC) - timedelta(days=shift)


def _rotation_key(c: DesignerCandidate) -> tuple[int, datetime, int, float, int]:
    never = c.last_assigned_at is None
    effective = datetime.min.replace(tzinfo=UTC) if never else _effective_last(c)
    return (0 if never else 1, effective, c.open_cases, -c.weight, c.staff_id)


def _day(t: datetime, zone: ZoneInfo) -> str:
    local = t.astimezone(zone)
    return f"{local.month}月{local.day}日"


def rank_designers(
    candidates: Sequence[DesignerCandidate],
    *,
    required_level: Level,
    scenario: Scenario,
    meeting_at: datetime | None,
    compound: str | None,
    max_open_by_level: Mapping[Level, int],
    tz: str = "Asia/Shanghai",
    include_ineligible: bool = False,
) -> list[RankedDesigner]:
    """Eligible designers in rotation order (rank 1..n) with reasons; ineligible ones after, rank 0."""
    zone = _zone(tz)
    local_meeting = _aware(meeting_at, "meeting_at").astimezone(zone) if meeting_at is not None else None
    wanted_compound = compound.strip() if compound and compound.strip() else None
    eligible: list[tuple[DesignerCandidate, list[str]]] = []
    ineligible: list[tuple[DesignerCandidate, list[str]]] = []

    for c in candidates:
        if c.last_assigned_at is not None:
            _aware(c.last_assigned_at, f"last_assigned_at of staff {c.staff_id}")
        ok: list[str] = []
        why_not: list[str] = []

        if c.status != StaffStatus.active:
            why_not.append(_STATUS_REASONS.get(c.status, f"状态 {c.status}"))

        have, need = LEVEL_LABELS[c.level], LEVEL_LABELS[required_level]
        if LEVEL_RANK[c.level] >= LEVEL_RANK[required_level]:
            ok.append(f"级别{have} ≥ 要求{need}")
        else:
            why_not.append(f"级别不足（{have} < 要求{need}）")

        if scenario in _OFFICE_SCENARIOS and local_meeting is not None:
            when = f"{_WEEKDAYS[local_meeting.weekday()]} {local_meeting:%H:%M}"
            if in_office(c.office_schedule, local_meeting):
                ok.append(f"在办公室（{when}）")
            else:
                why_not.append(f"该时间不在办公室（{when}）")

        if scenario == Scenario.site_office and wanted_compound is not None:
            if wanted_compound in {x.strip() for x in c.communities}:
                ok.append(f"负责小区 {wanted_compound}")
            else:
                why_not.append(f"不负责该小区（{wanted_compound}）")

        limit = c.max_open_cases if c.max_open_cases is not None else max_open_by_level.get(c.level)
        if limit is None:
            ok.append(f"在手 {c.open_cases} 单")
        elif c.open_cases < limit:
            ok.append(f"在手 {c.open_cases}/{limit} 单")
        else:
            why_not.append(f"在手已满 {c.open_cases}/{limit}")

        if c.last_assigned_at is None:
            ok.append("从未分配（轮单优先）")
        else:
            ok.append(f"上次分配 {_day(c.last_assigned_at, zone)}")
        if c.weight != 1.0:
            ok.append(f"权重 {c.weight:g}")

        (ineligible if why_not else eligible).append((c, why_not or ok))

    ranked = [
        RankedDesigner(c.staff_id, c.name, c.level, rank, True, tuple(reasons))
        for rank, (c, reasons) in enumerate(sorted(eligible, key=lambda x: _rotation_key(x[0])), start=1)
    ]
    if include_ineligible:
        ranked += [
            RankedDesigner(c.staff_id, c.name, c.level, 0, False, tuple(reasons))
            for c, reasons in sorted(ineligible, key=lambda x: _rotation_key(x[0]))
        ]
    return ranked


def rank_assistants(candidates: Sequence[AssistantCandidate]) -> list[RankedAssistant]:
    """Active assistants, fewest open cases first (ties by staff id), ranked 1..n."""
    active = sorted(
        (c for c in candidates if c.status == StaffStatus.active), key=lambda c: (c.open_cases, c.staff_id)
    )
    return [
        RankedAssistant(c.staff_id, c.name, rank, (f"在手 {c.open_cases} 单",))
        for rank, c in enumerate(active, start=1)
    ]


def required_level(policy: Policy, *, agreed: Level | None, budget: int | None) -> Level:
    """The level agreed at the callback, else the policy's level for the client's budget."""
    if agreed is not None:
        return agreed
    return policy.level_for_budget(budget)
