"""Insight's figures without a database: the Wilson interval, habits with and without, the weekly card, themes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.enums import StepName
from domain.insight import (
    MIN_CASES,
    CaseRecord,
    Correction,
    Escalation,
    StepRecord,
    habit_figures,
    scorecards,
    themes,
    week_label,
    week_of,
    wilson,
)
from domain.whatif import gini

T0 = datetime(2030, 5, 6, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Beijing


def test_wilson_matches_the_textbook() -> None:
    lo, hi = wilson(8, 10) or (0, 0)
    # Wilson score interval for 8/10 at 95 %: 0.490 .. 0.943
    assert round(lo, 3) == 0.490 and round(hi, 3) == 0.943
    assert wilson(0, 0) is None
    lo, hi = wilson(0, 20) or (1, 1)
    assert lo == 0.0 and 0.16 < hi < 0.17


@given(st.integers(min_value=1, max_value=500), st.data())
def test_wilson_contains_the_rate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    lo, hi = wilson(k, n) or (1, 0)
    assert 0 <= lo <= k / n <= hi <= 1


def _meeting_case(i: int, *, site: bool, signed: bool, designer: int = 3) -> CaseRecord:
    fm = {"true_needs": "三房", "measure_agreed": True, "visited_site": site, "visited_material_store": True,
          "seen_off": True}
    at = T0 + timedelta(days=i % 14)
    step = StepRecord(key="first_meeting#1", step=StepName.first_meeting, owner_id=designer, status="done",
                      result="done", opened_at=at, due_at=at + timedelta(hours=2), completed_at=at + timedelta(hours=1),
                      completed_by=designer, on_time=True)
    return CaseRecord(case_id=i, scenario="remote", outcome="signed" if signed else "lost", created_at=at,
                      manager_id=1, designer_id=designer, assistant_id=None, steps=(step,), first_meeting=fm,
                      first_meeting_by=designer, first_meeting_at=at + timedelta(hours=1))


def test_a_habit_is_compared_with_and_without_and_marked_when_too_few() -> None:
    cases = [_meeting_case(i, site=True, signed=i % 3 != 0) for i in range(30)]
    cases += [_meeting_case(100 + i, site=False, signed=i % 4 == 0) for i in range(8)]
    cases.append(CaseRecord(case_id=999, scenario="remote", outcome=None, created_at=T0, manager_id=1,
                            designer_id=3, assistant_id=None))  # open: says nothing
    fig = {f.habit.key: f for f in habit_figures(cases)}
    site = fig["visited_site"]
    assert (site.with_.cases, site.with_.signed) == (30, 20)
    assert (site.without.cases, site.without.signed) == (8, 2)
    assert site.too_few  # 8 < MIN_CASES on the side without
    assert MIN_CASES > 8
    assert site.difference is not None and round(site.difference, 3) == round(20 / 30 - 2 / 8, 3)
    assert fig["callback_at_once"].with_.cases == 0  # no callback recorded: it does not apply


def test_the_weekly_card_counts_steps_musts_corrections_and_escalations() -> None:
    c = _meeting_case(0, site=False, signed=True)
    ack = StepRecord(key="acknowledge#1", step=StepName.acknowledge, owner_id=3, status="done", result="done",
                     opened_at=T0, due_at=T0 + timedelta(hours=9), completed_at=T0 + timedelta(hours=20),
                     completed_by=3, on_time=False)
    c = CaseRecord(**{**c.__dict__, "steps": (*c.steps, ack),
                      "corrections": (Correction(3, T0, "要邀请客户参观在施工地", "acknowledge#1"),),
                      "escalations": (Escalation(T0 + timedelta(hours=10), StepName.acknowledge, 3, 1),)})
    cards = scorecards([c])
    week = cards[3][week_of(T0)]
    assert (week.steps.done, week.steps.total) == (1, 1)  # the acknowledgement is counted on its own
    assert week.item("visited_site").share == 0 and week.item("seen_off").share == 1
    assert week.corrections == 1 and (week.acknowledged.done, week.acknowledged.total) == (0, 1)
    assert week.escalations == 1
    assert week_of(T0) == date(2030, 5, 6) and week_label(date(2030, 5, 6)).startswith("2030-W19")


def test_themes_count_each_word_once_per_correction_without_stop_words() -> None:
    texts = ["要邀请客户参观在施工地", "参观 工地 要主动", "材料库 参观 不够"]
    got = themes(texts, lambda t: t.replace("要", " ").replace("在", " ").split() if " " in t
                 else ["要", "邀请", "客户", "参观", "在", "施工地"])
    assert got[0] == ("参观", 3)
    assert ("客户", 1) not in got and all(len(w) > 1 for w, _ in got)


def test_gini() -> None:
    assert gini([5, 5, 5]) == 0
    assert gini([]) is None
    g = gini([0, 0, 10])
    assert g is not None and abs(g - 2 / 3) < 1e-9
