"""Designer allocation (SPEC §5): eligibility rules, rotation 轮单, tie breaks, reasons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.allocation import (
    AssistantCandidate,
    DesignerCandidate,
    RankedDesigner,
    rank_assistants,
    rank_designers,
    required_level,
)
from domain.enums import Level, Scenario, StaffStatus
from domain.policy import Policy

SH = ZoneInfo("Asia/Shanghai")
MAX_OPEN = Policy().max_open_cases  # chief 8, senior 10, designer 12, junior 6
SATURDAY_10 = datetime(2026, 11, 28, 10, 0, tzinfo=SH)
WEEKDAYS_9_18 = {d: [(time(9), time(18))] for d in range(6)}


def cand(staff_id: int, **kw: object) -> DesignerCandidate:
    base = DesignerCandidate(
        staff_id=staff_id,
        name=f"设计师{staff_id}",
        level=Level.designer,
        status=StaffStatus.active,
        communities=(),
        office_schedule={},
        open_cases=0,
        max_open_cases=None,
        last_assigned_at=None,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def rank(candidates: list[DesignerCandidate], **kw: object) -> list[RankedDesigner]:
    args: dict[str, object] = {
        "required_level": Level.designer,
        "scenario": Scenario.remote,
        "meeting_at": None,
        "compound": None,
        "max_open_by_level": MAX_OPEN,
    }
    args.update(kw)
    return rank_designers(candidates, **args)  # type: ignore[arg-type]


def ids(ranked: list[RankedDesigner]) -> list[int]:
    return [r.staff_id for r in ranked]


def days_ago(n: float) -> datetime:
    return datetime(2026, 11, 27, 10, 0, tzinfo=SH) - timedelta(days=n)


# --- eligibility -------------------------------------------------------------------------------


def test_on_leave_and_inactive_are_not_eligible() -> None:
    cs = [cand(1), cand(2, status=StaffStatus.on_leave), cand(3, status=StaffStatus.inactive)]
    assert ids(rank(cs)) == [1]
    out = {r.staff_id: r for r in rank(cs, include_ineligible=True)}
    assert out[2].reasons == ("请假中",) and not out[2].eligible and out[2].rank == 0
    assert out[3].reasons == ("已停用",)


def test_level_must_reach_the_required_one() -> None:
    cs = [cand(1, level=Level.junior), cand(2, level=Level.designer), cand(3, level=Level.chief)]
    ranked = rank(cs, required_level=Level.designer, include_ineligible=True)
    assert [(r.staff_id, r.eligible) for r in ranked] == [(2, True), (3, True), (1, False)]
    assert "级别首席设计师 ≥ 要求设计师" in ranked[1].reasons
    assert ranked[2].reasons[0].startswith("级别不足")
    assert ids(rank(cs, required_level=Level.chief)) == [3]


def test_open_cases_below_level_maximum_or_personal_override() -> None:
    cs = [
        cand(1, open_cases=12),  # designer level max 12: full
        cand(2, open_cases=11),
        cand(3, open_cases=4, max_open_cases=4),  # personal max 4: full
        cand(4, open_cases=13, max_open_cases=20),  # personal max above the level's
    ]
    ranked = {r.staff_id: r for r in rank(cs, include_ineligible=True)}
    assert [s for s, r in ranked.items() if r.eligible] == [2, 4]
    assert "在手已满 12/12" in ranked[1].reasons
    assert "在手已满 4/4" in ranked[3].reasons
    assert "在手 11/12 单" in ranked[2].reasons
    assert "在手 13/20 单" in ranked[4].reasons


def test_level_without_maximum_is_unlimited() -> None:
    ranked = rank([cand(1, open_cases=50)], max_open_by_level={})
    assert ids(ranked) == [1] and "在手 50 单" in ranked[0].reasons


@pytest.mark.parametrize("scenario", [Scenario.office_visit, Scenario.walk_in])
def test_office_visits_and_walk_ins_need_the_designer_in_the_office(scenario: Scenario) -> None:
    cs = [
        cand(1, office_schedule=WEEKDAYS_9_18),
        cand(2, office_schedule={0: [(time(9), time(18))]}),  # Mondays only
        cand(3),  # empty schedule: always in the office
        cand(4, office_schedule={5: [(time(9), time(10))]}),  # leaves at 10:00 (half-open)
    ]
    ranked = {
        r.staff_id: r for r in rank(cs, scenario=scenario, meeting_at=SATURDAY_10, include_ineligible=True)
    }
    assert [s for s, r in ranked.items() if r.eligible] == [1, 3]
    assert "在办公室（周六 10:00）" in ranked[1].reasons
    assert any(x.startswith("该时间不在办公室") for x in ranked[2].reasons)
    assert any(x.startswith("该时间不在办公室") for x in ranked[4].reasons)


def test_office_check_uses_local_time() -> None:
    # 02:00 UTC is 10:00 in Shanghai.
    c = cand(1, office_schedule={5: [(time(9, 30), time(12))]})
    at = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    assert ids(rank([c], scenario=Scenario.office_visit, meeting_at=at)) == [1]
    assert ids(rank([c], scenario=Scenario.office_visit, meeting_at=at, tz="UTC")) == []


def test_office_is_not_checked_for_remote_or_without_meeting_time() -> None:
    c = cand(1, office_schedule={0: [(time(9), time(10))]})
    assert ids(rank([c], scenario=Scenario.remote, meeting_at=SATURDAY_10)) == [1]
    assert ids(rank([c], scenario=Scenario.office_visit, meeting_at=None)) == [1]


def test_site_office_needs_the_compound() -> None:
    cs = [cand(1, communities=("翠湖花园", "金色家园")), cand(2, communities=("阳光小区",)), cand(3)]
    ranked = rank(cs, scenario=Scenario.site_office, compound="翠湖花园", include_ineligible=True)
    assert [(r.staff_id, r.eligible) for r in ranked] == [(1, True), (2, False), (3, False)]
    assert "负责小区 翠湖花园" in ranked[0].reasons
    assert any(x.startswith("不负责该小区") for x in ranked[1].reasons)
    # Without a compound, or in another scenario, coverage does not matter.
    assert ids(rank(cs, scenario=Scenario.site_office, compound=None)) == [1, 2, 3]
    assert ids(rank(cs, scenario=Scenario.remote, compound="翠湖花园")) == [1, 2, 3]


def test_ineligible_reasons_list_every_failure() -> None:
    c = cand(1, status=StaffStatus.on_leave, level=Level.junior, open_cases=6)
    (r,) = rank([c], include_ineligible=True)
    assert r.reasons[0] == "请假中"
    assert r.reasons[1].startswith("级别不足")
    assert r.reasons[2] == "在手已满 6/6"


# --- rotation 轮单 -----------------------------------------------------------------------------


def test_never_assigned_first_then_least_recently_assigned() -> None:
    cs = [
        cand(1, last_assigned_at=days_ago(1)),
        cand(2, last_assigned_at=days_ago(5)),
        cand(3),
        cand(4, last_assigned_at=days_ago(3)),
    ]
    ranked = rank(cs)
    assert ids(ranked) == [3, 2, 4, 1]
    assert [r.rank for r in ranked] == [1, 2, 3, 4]
    assert "从未分配（轮单优先）" in ranked[0].reasons
    assert "上次分配 11月22日" in ranked[1].reasons


def test_ties_by_fewer_open_cases_then_weight_then_id() -> None:
    same = days_ago(2)
    cs = [
        cand(5, last_assigned_at=same, open_cases=3),
        cand(4, last_assigned_at=same, open_cases=1),
        cand(3, last_assigned_at=same, open_cases=1),
        cand(6, open_cases=2),
        cand(7, open_cases=2, weight=2.0),
        cand(8, open_cases=0),
    ]
    # Never assigned: 8 (0 open), then 7 (weight 2) before 6; assigned at the same time: 3, 4 (id), 5.
    assert ids(rank(cs)) == [8, 7, 6, 3, 4, 5]


def test_weight_shifts_recency_by_days() -> None:
    cs = [
        cand(1, last_assigned_at=days_ago(2)),
        cand(2, last_assigned_at=days_ago(1), weight=2.5),  # effective: 2.5 days ago → first
        cand(3, last_assigned_at=days_ago(3), weight=0.5),  # effective: 2.5 days ago, weight lower → after 2
    ]
    ranked = rank(cs)
    assert ids(ranked) == [2, 3, 1]
    assert "权重 2.5" in ranked[0].reasons


def test_ineligible_follow_eligible_with_rank_zero() -> None:
    cs = [cand(1, status=StaffStatus.on_leave), cand(2, last_assigned_at=days_ago(1)), cand(3)]
    ranked = rank(cs, include_ineligible=True)
    assert [(r.staff_id, r.rank, r.eligible) for r in ranked] == [(3, 1, True), (2, 2, True), (1, 0, False)]
    assert ids(rank(cs)) == [3, 2]


def test_eligible_reasons_are_complete() -> None:
    c = cand(
        9,
        level=Level.senior,
        communities=("翠湖花园",),
        office_schedule=WEEKDAYS_9_18,
        open_cases=3,
        last_assigned_at=datetime(2026, 11, 20, 15, 0, tzinfo=SH),
    )
    (r,) = rank([c], scenario=Scenario.office_visit, meeting_at=SATURDAY_10)
    assert r.reasons == (
        "级别主任设计师 ≥ 要求设计师",
        "在办公室（周六 10:00）",
        "在手 3/10 单",
        "上次分配 11月20日",
    )
    (r,) = rank([c], scenario=Scenario.site_office, compound="翠湖花园")
    assert "负责小区 翠湖花园" in r.reasons


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive datetime for meeting_at"):
        rank([cand(1)], scenario=Scenario.office_visit, meeting_at=datetime(2026, 11, 28, 10))
    with pytest.raises(ValueError, match="naive datetime for last_assigned_at"):
        rank([cand(1, last_assigned_at=datetime(2026, 11, 28, 10))])


# --- assistants and required level -------------------------------------------------------------


def test_rank_assistants_fewest_open_cases_first() -> None:
    cs = [
        AssistantCandidate(staff_id=3, name="赵敏", status=StaffStatus.active, open_cases=2),
        AssistantCandidate(staff_id=1, name="李娜", status=StaffStatus.active, open_cases=2),
        AssistantCandidate(staff_id=2, name="周芳", status=StaffStatus.on_leave, open_cases=0),
        AssistantCandidate(staff_id=4, name="孙丽", status=StaffStatus.active, open_cases=1),
    ]
    ranked = rank_assistants(cs)
    assert [(r.staff_id, r.rank) for r in ranked] == [(4, 1), (1, 2), (3, 3)]
    assert ranked[1].reasons == ("在手 2 单",)


def test_required_level_prefers_the_agreed_level() -> None:
    policy = Policy()
    assert required_level(policy, agreed=Level.chief, budget=50_000) == Level.chief
    assert required_level(policy, agreed=None, budget=350_000) == Level.senior
    assert required_level(policy, agreed=None, budget=None) == policy.default_level
