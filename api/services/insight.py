"""The SOP scorecard and the habits' figures (SPEC §16), for the JSON API, the console and the Excel export.

Who reads what is domain/permissions.py's (`may_read_scorecard`, `may_read_habits`); the figures are
domain/insight.py's; the facts come from store/insight.py. Corrections are segmented into words by
jieba (its dictionary ships in the wheel; nothing is downloaded).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from pydantic import BaseModel

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.services.reports import report_scope
from domain import insight, permissions
from domain.enums import ROLE_LABELS, Role
from store import insight as store
from store.staff import Staff, StaffRepository

DEFAULT_DAYS = 90
MAX_DAYS = 400


@lru_cache(maxsize=1)
def _jieba() -> object:
    import jieba  # only the bundled dictionary; never jieba.enable_paddle() (it would pip install)

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def words(text: str) -> list[str]:
    """The words of a Chinese text (jieba, precise mode)."""
    jb = _jieba()
    return list(jb.lcut(text))  # type: ignore[attr-defined]


def period(days: int | None = None, *, to: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `days` days (default 90, at most 400) up to now."""
    end = to or datetime.now(UTC)
    n = DEFAULT_DAYS if days is None else days
    if not 1 <= n <= MAX_DAYS:
        raise ApiError(422, "invalid_period", f"统计区间为 1–{MAX_DAYS} 天")
    return end - timedelta(days=n), end


# --- answers ---------------------------------------------------------------------------------------


class TallyOut(BaseModel):
    """Done out of asked, and the share."""

    done: int
    total: int
    share: float | None


class ItemOut(TallyOut):
    """One must, send-off or checklist item."""

    key: str
    label: str


class WeekOut(BaseModel):
    """One person's week of the procedure."""

    week: date
    label: str
    steps_on_time: TallyOut
    items: list[ItemOut]
    corrections: int
    acknowledged_in_time: TallyOut
    escalations: int


class Theme(BaseModel):
    """A recurring word of the corrections a person received, and in how many corrections it came up."""

    word: str
    count: int


class Scorecard(BaseModel):
    """A person's scorecard over a period: per week, in total, and the themes of their corrections."""

    staff_id: int
    name: str
    role: Role
    role_label: str
    period_from: datetime
    period_to: datetime
    weeks: list[WeekOut]
    total: WeekOut
    themes: list[Theme]


class HabitOut(BaseModel):
    """A habit: the signed rate of decided cases with it and without it, counts and 95 % Wilson intervals."""

    key: str
    label: str
    group: str
    with_cases: int
    with_signed: int
    with_rate: float | None
    with_low: float | None
    with_high: float | None
    without_cases: int
    without_signed: int
    without_rate: float | None
    without_low: float | None
    without_high: float | None
    difference: float | None
    too_few: bool


class Habits(BaseModel):
    """Every habit's figure over the cases created in a period (decided ones: signed or lost)."""

    period_from: datetime
    period_to: datetime
    decided_cases: int
    min_cases: int
    habits: list[HabitOut]
    note: str = "同期对比，仅说明做到与未做到的案例签单率差异，不代表因果关系"


class Team(BaseModel):
    """Everyone's scorecard over a period (the manager's and the director's page)."""

    period_from: datetime
    period_to: datetime
    cards: list[Scorecard]


def _tally(t: insight.Tally) -> TallyOut:
    return TallyOut(done=t.done, total=t.total, share=t.share)


def _week(w: insight.WeekCard, label: str) -> WeekOut:
    items = [ItemOut(key=k, label=lbl, **_tally(w.items[k]).model_dump()) for k, lbl in insight.ITEM_LABELS.items()
             if k in w.items]
    return WeekOut(week=w.week, label=label, steps_on_time=_tally(w.steps), items=items, corrections=w.corrections,
                   acknowledged_in_time=_tally(w.acknowledged), escalations=w.escalations)


def _card(s: Staff, weeks: dict[date, insight.WeekCard], frm: datetime, to: datetime) -> Scorecard:
    ordered = [weeks[k] for k in sorted(weeks)]
    total = insight.total(ordered, s.id)
    return Scorecard(
        staff_id=s.id, name=s.name, role=s.role, role_label=ROLE_LABELS[s.role], period_from=frm, period_to=to,
        weeks=[_week(w, insight.week_label(w.week)) for w in ordered], total=_week(total, "合计"),
        themes=[Theme(word=w, count=n) for w, n in insight.themes(total.correction_texts, words)],
    )


def habits_of(records: Iterable[insight.CaseRecord], frm: datetime, to: datetime,
              min_cases: int = insight.MIN_CASES) -> Habits:
    """The habits' figures as the API answers them."""
    records = list(records)
    out = []
    for f in insight.habit_figures(records, min_cases=min_cases):
        wi, wo = f.with_.interval, f.without.interval
        out.append(HabitOut(
            key=f.habit.key, label=f.habit.label, group=f.habit.group,
            with_cases=f.with_.cases, with_signed=f.with_.signed, with_rate=f.with_.rate,
            with_low=wi[0] if wi else None, with_high=wi[1] if wi else None,
            without_cases=f.without.cases, without_signed=f.without.signed, without_rate=f.without.rate,
            without_low=wo[0] if wo else None, without_high=wo[1] if wo else None,
            difference=f.difference, too_few=f.too_few,
        ))
    return Habits(period_from=frm, period_to=to, decided_cases=len(insight.decided(records)), min_cases=min_cases,
                  habits=out)


# --- services --------------------------------------------------------------------------------------


async def _records(res: Resources, frm: datetime, to: datetime, branches: list[int] | None) -> list[insight.CaseRecord]:
    pool = await res.pool()
    records: list[insight.CaseRecord] = await bounded(
        res, store.case_records(pool, period_from=frm, period_to=to, branches=branches))
    return records


async def _staff(res: Resources) -> dict[int, Staff]:
    pool = await res.pool()
    return {s.id: s for s in await bounded(res, StaffRepository(pool).list())}


async def scorecard(res: Resources, user: CurrentUser, staff_id: int, *, days: int | None = None,
                    branch: str | None = None) -> Scorecard:
    """One person's scorecard: the manager and the director anyone's in their branches, a designer or assistant
    their own; over the cases of the reader's branches (or of the one `branch` names)."""
    refuse(permissions.may_read_scorecard(user, staff_id))
    frm, to = period(days)
    branches, _asked = await report_scope(res, user, branch)
    staff = await _staff(res)
    if staff_id not in staff:
        raise ApiError(404, "staff_not_found", f"没有编号为 {staff_id} 的员工")
    if staff_id != user.id:
        refuse(permissions.may_read_branch(user.branches, staff[staff_id].branch_id))
    cards = insight.scorecards(await _records(res, frm, to, branches))
    return await asyncio.to_thread(_card, staff[staff_id], cards.get(staff_id, {}), frm, to)


async def team(res: Resources, user: CurrentUser, *, days: int | None = None,
               branch: str | None = None) -> tuple[Team, Habits]:
    """Everyone's scorecard and the habits' figures over the cases of the reader's branches (or of the one
    `branch` names): the manager and the director."""
    refuse(permissions.may_read_habits(user))
    frm, to = period(days)
    branches, _asked = await report_scope(res, user, branch)
    staff = await _staff(res)
    records = await _records(res, frm, to, branches)
    cards = insight.scorecards(records)

    def build() -> Team:
        ordered = sorted((sid for sid in cards if sid in staff),
                         key=lambda sid: (list(Role).index(staff[sid].role), staff[sid].id))
        return Team(period_from=frm, period_to=to, cards=[_card(staff[sid], cards[sid], frm, to) for sid in ordered])

    return await asyncio.to_thread(build), habits_of(records, frm, to)


async def habits(res: Resources, user: CurrentUser, *, days: int | None = None, branch: str | None = None) -> Habits:
    """The habits' figures alone (the reader's branches, or the one `branch` names)."""
    refuse(permissions.may_read_habits(user))
    frm, to = period(days)
    branches, _asked = await report_scope(res, user, branch)
    return habits_of(await _records(res, frm, to, branches), frm, to)


# --- Excel -----------------------------------------------------------------------------------------


def _pct(v: float | None) -> float | None:
    return round(v * 100, 1) if v is not None else None


def workbook(cards: list[Scorecard], habit_figures: Habits | None) -> bytes:
    """The scorecards (one row per person and week, and a total per person) and the habits, as .xlsx."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "考核"
    items = list(insight.ITEM_LABELS.items())
    head = ["员工", "角色", "周", "完成步骤", "按时", "按时率%", *[f"{label}%" for _, label in items],
            "收到纠正", "按时确认", "升级次数", "纠正主题"]
    ws.append(head)
    for c in cards:
        for w in [*c.weeks, c.total]:
            by_key = {i.key: i for i in w.items}
            ws.append([c.name, c.role_label, w.label, w.steps_on_time.total, w.steps_on_time.done,
                       _pct(w.steps_on_time.share), *[_pct(by_key[k].share) if k in by_key else None for k, _ in items],
                       w.corrections, w.acknowledged_in_time.done, w.escalations,
                       "、".join(f"{t.word}×{t.count}" for t in c.themes) if w is c.total else ""])
            if w is c.total:
                for cell in ws[ws.max_row]:
                    cell.font = Font(bold=True)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    if habit_figures is not None:
        hs = wb.create_sheet("习惯与签单")
        hs.append(["习惯", "做到：案例", "做到：签单", "做到：签单率%", "95%区间下限%", "95%区间上限%",
                   "未做到：案例", "未做到：签单", "未做到：签单率%", "95%区间下限%", "95%区间上限%", "差值（百分点）", "说明"])
        for h in habit_figures.habits:
            hs.append([h.label, h.with_cases, h.with_signed, _pct(h.with_rate), _pct(h.with_low), _pct(h.with_high),
                       h.without_cases, h.without_signed, _pct(h.without_rate), _pct(h.without_low),
                       _pct(h.without_high), _pct(h.difference), "样本太少" if h.too_few else ""])
        hs.append([])
        hs.append([habit_figures.note])
        for cell in hs[1]:
            cell.font = Font(bold=True)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def export(res: Resources, user: CurrentUser, *, staff_id: int | None, days: int | None = None,
                 branch: str | None = None) -> bytes:
    """The Excel file a person may download: their own scorecard, or (manager, director) everyone's and the habits."""
    if staff_id is not None or permissions.scorecard_scope(user) is not None:
        sid = staff_id if staff_id is not None else user.id
        card = await scorecard(res, user, sid, days=days, branch=branch)
        return await asyncio.to_thread(workbook, [card], None)
    everyone, figures = await team(res, user, days=days, branch=branch)
    return await asyncio.to_thread(workbook, everyone.cards, figures)


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
