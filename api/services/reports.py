"""Reports for the manager and the director: SLA per step, the allocation ledger per designer, the league
table of branches.

Every report covers the branches its reader works in (`CurrentUser.branches`: a branch's manager their
branch, the director the chain); `?branch=CODE` narrows it to one of them (:func:`report_scope`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.schemas import (
    AllocationReport,
    AllocationRow,
    BranchLeague,
    BranchLeagueRow,
    LeagueBranch,
    MorningSummary,
    SlaReport,
    SlaRow,
    StaffBrief,
)
from api.services.policy import current_policy
from domain import calendar, morning, permissions
from domain.enums import SOURCE_LABELS, STEP_LABELS, Scenario, Source, StepName
from domain.graph import process_position
from store import league, queries
from store import morning as summaries
from store.branches import Branch, BranchRepository, branch_code_error

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=400)


def report_period(frm: datetime | None, to: datetime | None, names: tuple[str, str]) -> tuple[datetime, datetime]:
    """The period of a report: default the last 30 days, at most 400 days (422 invalid_period)."""
    period_to = to or datetime.now(UTC)
    period_from = frm or (period_to - DEFAULT_PERIOD)
    if period_from >= period_to:
        raise ApiError(422, "invalid_period", f"{names[0]} 必须早于 {names[1]}")
    if period_to - period_from > MAX_PERIOD:
        raise ApiError(422, "invalid_period", f"统计区间最长 {MAX_PERIOD.days} 天")
    return period_from, period_to


async def report_scope(res: Resources, user: CurrentUser, code: str | None) -> tuple[list[int] | None, Branch | None]:
    """The branches a report, the board or insight covers for `user` (None: every branch), and the branch
    `code` names when one was asked for: 422 unknown_branch for a code no branch has, 403 not_your_branch
    for a branch the person does not work in (domain/permissions.py decides)."""
    asked: Branch | None = None
    if code is not None:
        code = code.strip()
        pool = await res.pool()
        # A string that cannot be a branch code (a NUL byte, any text) is not looked up.
        asked = None if branch_code_error(code) else await bounded(res, BranchRepository(pool).by_code(code))
        if asked is None:
            raise ApiError(422, "unknown_branch", f"没有代码为 {code} 的分公司", details={"field": "branch"})
        refuse(permissions.may_read_branch(user.branches, asked.id))
    return league.branch_ids(permissions.report_branches(user.branches, asked.id if asked else None)), asked


async def sla_report(
    res: Resources,
    user: CurrentUser,
    *,
    group_by: Literal["none", "source", "manager", "designer"] = "none",
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    source: Source | None = None,
    scenario: Scenario | None = None,
    branch: str | None = None,
) -> SlaReport:
    """Per step: on-time share, median and p90 time to done, escalations; managers and the director, over
    their branches (or the one `branch` code names)."""
    refuse(permissions.may_read_reports(user))
    frm, to = report_period(period_from, period_to, ("created_from", "created_to"))
    branches, _asked = await report_scope(res, user, branch)
    pool = await res.pool()
    rows = await bounded(
        res,
        queries.sla_report(
            pool,
            period_from=frm,
            period_to=to,
            group_by=group_by,
            source=source.value if source else None,
            scenario=scenario.value if scenario else None,
            branches=branches,
        ),
    )
    out: list[SlaRow] = []
    for r in rows:
        try:
            step = StepName(r["step"])
        except ValueError:
            continue
        done = int(r["done"])
        out.append(
            SlaRow(
                step=step,
                step_label=STEP_LABELS[step],
                group=r["grp"],
                group_label=SOURCE_LABELS.get(r["group_label"], r["group_label"])  # type: ignore[call-overload]
                if group_by == "source"
                else r["group_label"],
                done=done,
                open=int(r["open"]),
                open_overdue=int(r["open_overdue"]),
                on_time=int(r["on_time"]),
                on_time_share=(int(r["on_time"]) / done) if done else None,
                median_seconds=r["median_seconds"],
                p90_seconds=r["p90_seconds"],
                escalated=int(r["escalated"]),
                escalations=int(r["escalations"]),
            )
        )
    # Steps in the order of the process (the query sorts by name); a step's groups keep their order.
    out.sort(key=lambda row: process_position(row.step))
    return SlaReport(period_from=frm, period_to=to, group_by=group_by, rows=out)


async def allocation_report(
    res: Resources, user: CurrentUser, *, period_from: datetime | None = None, period_to: datetime | None = None,
    branch: str | None = None,
) -> AllocationReport:
    """Per designer, from the allocation ledger: cases given, overrides of the suggestion, open cases (the
    designers and cases of the reader's branches, or of the one `branch` names)."""
    refuse(permissions.may_read_reports(user))
    frm, to = report_period(period_from, period_to, ("from", "to"))
    branches, _asked = await report_scope(res, user, branch)
    pool = await res.pool()
    rows = await bounded(res, queries.allocation_report(pool, period_from=frm, period_to=to, branches=branches))
    return AllocationReport(
        period_from=frm,
        period_to=to,
        rows=[
            AllocationRow(
                designer=StaffBrief(id=r["id"], name=r["name"]),
                level=r["level"],
                status=r["status"],
                assigned=r["assigned"],
                auto=r["auto"],
                reassigned_to=r["reassigned_to"],
                chosen_over_suggestion=r["chosen_over_suggestion"],
                passed_over=r["passed_over"],
                lapses=r["lapses"],
                open_cases=r["open_cases"],
                last_assigned_at=r["last_assigned_at"],
            )
            for r in rows
        ],
    )


# How far back a morning summary may be asked for (like a report's period).
MORNING_DAYS_BACK = 400


async def _morning_scope(res: Resources, user: CurrentUser, code: str | None) -> summaries.Scope:
    """Whose summary: the branch `code` names (404 branch_not_found; 403 not_your_branch outside one's
    branches), else head office the chain's and everyone else their home branch's."""
    pool = await res.pool()
    every: list[summaries.Scope] = await bounded(res, summaries.scopes(pool))
    if code is None:
        home = None if user.branches is None else user.staff.branch_id
        return next((s for s in every if s.branch_id == home), every[0])
    found = await bounded(res, BranchRepository(pool).by_code(code))
    if found is None:
        raise ApiError(404, "branch_not_found", f"没有代码为 {code} 的分公司")
    refuse(permissions.may_read_branch(user.branches, found.id))
    return next((s for s in every if s.branch_id == found.id), every[0])


async def morning_summary(
    res: Resources,
    user: CurrentUser,
    day: date | None = None,
    *,
    branch: str | None = None,
    check: Callable[[permissions.Person], permissions.Refusal | None] = permissions.may_read_morning_summary,
) -> MorningSummary:
    """The morning summary of `day` (default today, company time): as sent, else computed now; of `branch`
    (a code), else the reader's (head office: the chain's; others: their branch's).

    `check` is the permission asked (the console board asks its own, domain/permissions.py's either way).
    """
    refuse(check(user))
    scope = await _morning_scope(res, user, branch)
    policy, _version = await current_policy(res, scope.branch_id)
    now = datetime.now(UTC)
    today = calendar.local_date(policy.calendar, now)
    day = day or today
    if day > today or day < today - timedelta(days=MORNING_DAYS_BACK):
        raise ApiError(422, "invalid_date", f"日期须在今天及之前 {MORNING_DAYS_BACK} 天内", details={"field": "date"})
    pool = await res.pool()
    sent = await bounded(res, summaries.stored(pool, day, scope.branch_id))
    if sent is not None:
        figures = sent["figures"]
        return MorningSummary(date=day, since=figures.since, working_day=figures.working_day, sent=True,
                              sent_at=sent["sent_at"], recipients=sent["recipients"], text=sent["text"],
                              lines=sent["text"].split("\n"), figures=figures)
    figures = await bounded(res, summaries.read_figures(pool, window=morning.window(policy.calendar, day), now=now,
                                                        scope=scope))
    lines = morning.summary_lines(figures)
    return MorningSummary(date=day, since=figures.since, working_day=figures.working_day, sent=False,
                          text="\n".join(lines), lines=lines, figures=figures)


# --- the league table of branches (分公司排行) ----------------------------------------------------------


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _league_row(r: Any) -> BranchLeagueRow:
    done, signed, lost = int(r["steps_done"]), int(r["signed"]), int(r["lost"])
    return BranchLeagueRow(
        branch=LeagueBranch(id=r["id"], code=r["code"], name=r["name"], city=r["city"], status=r["status"])
        if r["id"] is not None else None,
        leads=int(r["leads"]),
        steps_done=done,
        steps_on_time=int(r["steps_on_time"]),
        on_time_share=_share(int(r["steps_on_time"]), done),
        callbacks_done=int(r["callbacks_done"]),
        callback_median_seconds=r["callback_median_seconds"],
        signed=signed,
        lost=lost,
        signed_rate=_share(signed, signed + lost),
        escalations=int(r["escalations"]),
        escalated_steps=int(r["escalated_steps"]),
        open_cases=int(r["open_cases"]),
        stalled_cases=int(r["stalled_cases"]),
    )


def _league_order(row: BranchLeagueRow) -> tuple[float, float, str]:
    """Best first: the higher on-time share, then the higher signed rate; a branch without figures last."""
    on_time = -row.on_time_share if row.on_time_share is not None else 1.0
    signed = -row.signed_rate if row.signed_rate is not None else 1.0
    return on_time, signed, row.branch.code if row.branch else ""


async def branch_league(
    res: Resources, user: CurrentUser, *, period_from: datetime | None = None, period_to: datetime | None = None
) -> BranchLeague:
    """Per branch the reader spans (the director: every branch): on-time share, median time to callback,
    signed rate, escalations, open and stalled cases; best first, with the figures of them all together."""
    refuse(permissions.may_read_league(user, user.branches))
    frm, to = report_period(period_from, period_to, ("created_from", "created_to"))
    pool = await res.pool()
    rows, total = await bounded(res, league.branch_league(
        pool, period_from=frm, period_to=to, now=datetime.now(UTC), branches=user.branches))
    ranked = sorted((_league_row(r) for r in rows), key=_league_order)
    for i, row in enumerate(ranked, start=1):
        row.rank = i
    return BranchLeague(period_from=frm, period_to=to, rows=ranked, total=_league_row(total))
