"""Insight (SPEC §16): which habits of the procedure go with signed contracts, and each person's SOP scorecard.

Pure: the facts of each case come in as :class:`CaseRecord` (read from the projection by
store/insight.py), figures go out. Nothing here claims a habit *causes* a signature: a habit's figure is
the signed rate of the cases where it was done beside the rate where it was not, with counts and a
Wilson interval, and "样本太少" when either side has too few cases to read.

The habits are the company's procedure (设计师和助理设计师的工作流程): the manager calls back at once
(第一时间), the reception checklist when a client comes to the company, the four musts of the first
meeting and the send-off, the designer's timely contact, the debrief and its corrections acknowledged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from domain.enums import StepName
from domain.models import RECEPTION_ITEMS

# Below this many cases on either side, a habit's comparison is marked "样本太少".
MIN_CASES = 10
# 95 % two-sided.
Z95 = 1.959963984540054
TZ = ZoneInfo("Asia/Shanghai")

# The first meeting's musts (seed 二f) and the send-off, as the step's payload names them.
MUST_ITEMS: dict[str, str] = {
    "measure_agreed": "约定量房时间",
    "visited_site": "参观在施工地",
    "visited_material_store": "参观材料库",
}
SEND_OFF = ("seen_off", "送客户到门外")


# --- the facts of a case ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRecord:
    """One finished or open step instance, as case_steps keeps it."""

    key: str
    step: StepName
    owner_id: int | None
    status: str  # open | done
    result: str | None
    opened_at: datetime
    due_at: datetime | None
    completed_at: datetime | None
    completed_by: int | None
    on_time: bool
    escalation_level: int = 0

    @property
    def by_person(self) -> bool:
        """Done by someone (not cancelled at closing, not done by the system)."""
        return self.status == "done" and self.completed_by is not None and self.result not in (
            "cancelled", "auto", "reclaimed")


@dataclass(frozen=True)
class Correction:
    """A correction the manager sent (reception review or debrief) and its acknowledgement step."""

    staff_id: int
    at: datetime
    text: str
    ack_key: str | None


@dataclass(frozen=True)
class Escalation:
    """One rung of a late step's chain, counted against the step's owner."""

    at: datetime
    step: StepName
    owner_id: int | None
    level: int


@dataclass(frozen=True)
class CaseRecord:
    """What insight reads of one case."""

    case_id: int
    scenario: str
    outcome: str | None  # signed | lost | duplicate | None (open)
    created_at: datetime
    manager_id: int | None
    designer_id: int | None
    assistant_id: int | None
    steps: tuple[StepRecord, ...] = ()
    first_meeting: dict[str, Any] | None = None  # the first meeting's payload
    first_meeting_by: int | None = None
    first_meeting_at: datetime | None = None
    reception: dict[str, Any] | None = None  # the reception checklist (arrival, or a walk-in's creation)
    reception_by: int | None = None
    reception_at: datetime | None = None
    corrections: tuple[Correction, ...] = ()
    escalations: tuple[Escalation, ...] = ()

    def first(self, step: StepName) -> StepRecord | None:
        """The first instance of a step (callback#1, contact#1, ...)."""
        found = [s for s in self.steps if s.step == step]
        return min(found, key=lambda s: (s.opened_at, s.key)) if found else None

    def step(self, key: str) -> StepRecord | None:
        """A step instance by its key."""
        return next((s for s in self.steps if s.key == key), None)


# --- the habits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Habit:
    """A habit of the procedure: whether a case had it (None: it does not apply to the case)."""

    key: str
    label: str
    group: str
    had: Callable[[CaseRecord], bool | None]


def _done_on_time(step: StepName) -> Callable[[CaseRecord], bool | None]:
    def had(c: CaseRecord) -> bool | None:
        s = c.first(step)
        if s is None or not s.by_person:
            return None
        return s.on_time

    return had


def _reception_item(item: str) -> Callable[[CaseRecord], bool | None]:
    return lambda c: None if c.reception is None else bool(c.reception.get(item))


def _meeting_item(item: str) -> Callable[[CaseRecord], bool | None]:
    return lambda c: None if c.first_meeting is None else bool(c.first_meeting.get(item))


def _reception_all(c: CaseRecord) -> bool | None:
    return None if c.reception is None else all(bool(c.reception.get(k)) for k in RECEPTION_ITEMS)


def _four_musts(c: CaseRecord) -> bool | None:
    if c.first_meeting is None:
        return None
    needs = bool(str(c.first_meeting.get("true_needs") or "").strip())
    return needs and all(bool(c.first_meeting.get(k)) for k in MUST_ITEMS)


def _corrections_acknowledged(c: CaseRecord) -> bool | None:
    acks = [a for a in (c.step(x.ack_key) for x in c.corrections if x.ack_key) if a is not None]
    if not acks:
        return None
    return all(a.by_person and a.on_time for a in acks)


HABITS: tuple[Habit, ...] = (
    Habit("callback_at_once", "经理第一时间回访（首次回访按时）", "回访", _done_on_time(StepName.callback)),
    *(Habit(f"reception_{k}", f"接待：{label}", "接待清单", _reception_item(k)) for k, label in RECEPTION_ITEMS.items()),
    Habit("reception_all", "接待清单全部做到", "接待清单", _reception_all),
    Habit("contact_on_time", "设计师按时联系客户", "联系", _done_on_time(StepName.contact)),
    *(Habit(k, f"首次见面：{label}", "四必须", _meeting_item(k)) for k, label in MUST_ITEMS.items()),
    Habit("four_musts", "四必须全部做到", "四必须", _four_musts),
    Habit(SEND_OFF[0], f"{SEND_OFF[1]}", "送客", _meeting_item(SEND_OFF[0])),
    Habit("debrief_on_time", "经理按时复盘讲评", "复盘", _done_on_time(StepName.debrief)),
    Habit("corrections_acknowledged", "纠正均按时确认", "复盘", _corrections_acknowledged),
)
HABIT_KEYS = {h.key: h for h in HABITS}


# --- the figures ------------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without cases)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return min(lo, p), max(hi, p)  # never beside the rate itself (floating point at the edges)


@dataclass(frozen=True)
class Rate:
    """Signed cases out of closed ones on one side of a habit, with the Wilson interval."""

    cases: int
    signed: int

    @property
    def rate(self) -> float | None:
        """The signed share (None without cases)."""
        return self.signed / self.cases if self.cases else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % Wilson interval."""
        return wilson(self.signed, self.cases)


@dataclass(frozen=True)
class HabitFigure:
    """A habit's signed rate with and without it; `too_few` when either side is under the threshold."""

    habit: Habit
    with_: Rate
    without: Rate
    min_cases: int

    @property
    def too_few(self) -> bool:
        """Whether either side has fewer cases than the threshold (样本太少)."""
        return self.with_.cases < self.min_cases or self.without.cases < self.min_cases

    @property
    def difference(self) -> float | None:
        """The signed rate with the habit minus without it (percentage points as a fraction)."""
        if self.with_.rate is None or self.without.rate is None:
            return None
        return self.with_.rate - self.without.rate

    @property
    def share_done(self) -> float | None:
        """How often the habit was done where it applied."""
        n = self.with_.cases + self.without.cases
        return self.with_.cases / n if n else None


def decided(cases: Iterable[CaseRecord]) -> list[CaseRecord]:
    """The cases with a decided outcome: signed or lost (open and duplicate cases say nothing)."""
    return [c for c in cases if c.outcome in ("signed", "lost")]


def habit_figures(cases: Iterable[CaseRecord], *, min_cases: int = MIN_CASES) -> list[HabitFigure]:
    """For every habit, the signed rate of decided cases with and without it."""
    closed = decided(cases)
    out: list[HabitFigure] = []
    for habit in HABITS:
        counts = {True: [0, 0], False: [0, 0]}
        for c in closed:
            had = habit.had(c)
            if had is None:
                continue
            counts[had][0] += 1
            counts[had][1] += c.outcome == "signed"
        out.append(HabitFigure(habit, Rate(*counts[True]), Rate(*counts[False]), min_cases))
    return out


# --- the scorecard per person and week -------------------------------------------------------------


def week_of(t: datetime) -> date:
    """The Monday (Beijing time) of the week a moment falls in."""
    local = t.astimezone(TZ).date()
    return local - timedelta(days=local.weekday())


def week_label(monday: date) -> str:
    """"2030-W19（5/6–5/12）"."""
    year, week, _ = monday.isocalendar()
    end = monday + timedelta(days=6)
    return f"{year}-W{week:02d}（{monday.month}/{monday.day}–{end.month}/{end.day}）"


@dataclass
class Tally:
    """Done out of asked."""

    done: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        """Count one more, done or not."""
        self.total += 1
        self.done += bool(ok)

    @property
    def share(self) -> float | None:
        """done / total (None when nothing was asked)."""
        return self.done / self.total if self.total else None

    def merge(self, other: Tally) -> None:
        """Add another tally's counts."""
        self.done += other.done
        self.total += other.total


@dataclass
class WeekCard:
    """One person's week: steps on time, musts and checklist items, corrections, escalations, themes."""

    staff_id: int
    week: date
    steps: Tally = field(default_factory=Tally)  # steps they completed, on time
    items: dict[str, Tally] = field(default_factory=dict)  # each must / checklist item / send-off
    corrections: int = 0  # corrections received
    acknowledged: Tally = field(default_factory=Tally)  # of those due: acknowledged in time
    escalations: int = 0  # rungs of late steps they owned
    correction_texts: list[str] = field(default_factory=list)

    def item(self, key: str) -> Tally:
        """The tally of one must / checklist item."""
        return self.items.setdefault(key, Tally())

    def merge(self, other: WeekCard) -> None:
        """Add another week's counts (a period's total)."""
        self.steps.merge(other.steps)
        for k, t in other.items.items():
            self.item(k).merge(t)
        self.corrections += other.corrections
        self.acknowledged.merge(other.acknowledged)
        self.escalations += other.escalations
        self.correction_texts += other.correction_texts


# Every item a scorecard may count, in the order shown: the musts, the send-off, the checklist.
ITEM_LABELS: dict[str, str] = {**MUST_ITEMS, SEND_OFF[0]: SEND_OFF[1], **RECEPTION_ITEMS}


def scorecards(cases: Iterable[CaseRecord]) -> dict[int, dict[date, WeekCard]]:
    """Per person, per week (Beijing time, Monday first): what they did of the procedure."""
    cards: dict[int, dict[date, WeekCard]] = {}

    def card(staff_id: int, at: datetime) -> WeekCard:
        week = week_of(at)
        return cards.setdefault(staff_id, {}).setdefault(week, WeekCard(staff_id, week))

    for c in cases:
        ack_keys = {x.ack_key for x in c.corrections if x.ack_key}
        for s in c.steps:
            if s.by_person and s.completed_at is not None and s.completed_by is not None and s.key not in ack_keys:
                card(s.completed_by, s.completed_at).steps.add(s.on_time)
        if c.first_meeting is not None and c.first_meeting_by is not None and c.first_meeting_at is not None:
            wc = card(c.first_meeting_by, c.first_meeting_at)
            for k in (*MUST_ITEMS, SEND_OFF[0]):
                wc.item(k).add(bool(c.first_meeting.get(k)))
        if c.reception is not None and c.reception_by is not None and c.reception_at is not None:
            wc = card(c.reception_by, c.reception_at)
            for k in RECEPTION_ITEMS:
                wc.item(k).add(bool(c.reception.get(k)))
        for x in c.corrections:
            wc = card(x.staff_id, x.at)
            wc.corrections += 1
            wc.correction_texts.append(x.text)
            ack = c.step(x.ack_key) if x.ack_key else None
            if ack is not None and (ack.status == "done" or not ack.on_time):
                # Done, or already late while open: it counts; one still within its time does not yet.
                wc.acknowledged.add(ack.by_person and ack.on_time)
        for e in c.escalations:
            if e.owner_id is not None:
                card(e.owner_id, e.at).escalations += 1
    return cards


def total(weeks: Iterable[WeekCard], staff_id: int) -> WeekCard:
    """A person's weeks added up."""
    out = WeekCard(staff_id, date.min)
    for w in weeks:
        out.merge(w)
    return out


# Words that say nothing about what to improve (particles, pronouns, the procedure's own nouns).
STOP_WORDS = frozenset(
    "的 了 和 与 及 或 在 是 有 要 也 就 都 而 并 但 对 把 被 让 给 向 从 到 为 以 等 这 那 这个 那个 一个 一些 没有 "
    "我们 你们 他们 我 你 他 她 它 自己 客户 设计师 助理 经理 时候 时 后 前 中 上 下 里 再 还 很 太 更 最 不 没 能 会 "
    "可以 需要 应该 注意 一定 一下 已经 下次 今后 以后 之后 问题 情况 方面 进行 及时 一点".split()
)


def themes(texts: Sequence[str], tokenize: Callable[[str], Iterable[str]], *, top: int = 8) -> list[tuple[str, int]]:
    """The recurring words of corrections: each word counted once per correction, most frequent first.

    `tokenize` segments Chinese text into words (jieba in the service); one-character words,
    punctuation, numbers and :data:`STOP_WORDS` are left out. Ties in order of first appearance.
    """
    counts: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    for i, text in enumerate(texts):
        words = set()
        for w in tokenize(text):
            w = w.strip()
            if len(w) < 2 or w in STOP_WORDS or not any(ch.isalpha() for ch in w):
                continue
            words.add(w)
            first_seen.setdefault(w, i)
        counts.update(words)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], first_seen[kv[0]], kv[0]))
    return [(w, n) for w, n in ranked[:top] if n >= 1]
