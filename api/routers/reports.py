"""Reports for managers and the director."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api import queries
from api.deps import CurrentUser, ResourcesDep, bounded, require_roles
from api.errors import R401, R403, R422_PERIOD, R503, ApiError, responses
from api.schemas import AllocationReport, AllocationRow, IsoTime, SlaReport, SlaRow, StaffBrief, query_time
from domain.enums import SOURCE_LABELS, STEP_LABELS, Role, Scenario, Source, StepName

router = APIRouter(prefix="/reports", tags=["reports"])

Reader = Annotated[CurrentUser, Depends(require_roles(Role.manager, Role.director))]
DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=400)


@router.get(
    "/sla",
    response_model=SlaReport,
    summary="时效报表（经理、总经理）",
    responses=responses(R401, R403, R422_PERIOD, R503),
)
async def sla_report(
    user: Reader,
    res: ResourcesDep,
    group_by: Annotated[
        Literal["none", "source", "manager", "designer"], Query(description="分组：来源 / 经理 / 设计师")
    ] = "none",
    created_from: Annotated[IsoTime | None, Query(description="案例创建时间起（默认 30 天前）")] = None,
    created_to: Annotated[IsoTime | None, Query(description="案例创建时间止（默认现在）")] = None,
    source: Annotated[Source | None, Query(description="只看某个来源")] = None,
    scenario: Annotated[Scenario | None, Query(description="只看某种情况")] = None,
) -> SlaReport:
    """Per step: on-time share, median and p90 time to done, escalations; optionally by source, manager, designer."""
    now = datetime.now(UTC)
    period_to = query_time(created_to, "created_to") or now
    period_from = query_time(created_from, "created_from") or (period_to - DEFAULT_PERIOD)
    if period_from >= period_to:
        raise ApiError(422, "invalid_period", "created_from 必须早于 created_to")
    if period_to - period_from > MAX_PERIOD:
        raise ApiError(422, "invalid_period", f"统计区间最长 {MAX_PERIOD.days} 天")
    pool = await res.pool()
    rows = await bounded(
        res,
        queries.sla_report(
            pool,
            period_from=period_from,
            period_to=period_to,
            group_by=group_by,
            source=source.value if source else None,
            scenario=scenario.value if scenario else None,
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
    return SlaReport(period_from=period_from, period_to=period_to, group_by=group_by, rows=out)


@router.get(
    "/allocation",
    response_model=AllocationReport,
    summary="客户分配公平性报表（经理、总经理）",
    responses=responses(R401, R403, R422_PERIOD, R503),
)
async def allocation_report(
    user: Reader,
    res: ResourcesDep,
    period_from: Annotated[IsoTime | None, Query(alias="from", description="起（默认 30 天前）")] = None,
    period_to: Annotated[IsoTime | None, Query(alias="to", description="止（默认现在）")] = None,
) -> AllocationReport:
    """Per designer, from the allocation ledger: cases given, overrides of the suggestion, open cases."""
    now = datetime.now(UTC)
    to = query_time(period_to, "to") or now
    frm = query_time(period_from, "from") or (to - DEFAULT_PERIOD)
    if frm >= to:
        raise ApiError(422, "invalid_period", "from 必须早于 to")
    if to - frm > MAX_PERIOD:
        raise ApiError(422, "invalid_period", f"统计区间最长 {MAX_PERIOD.days} 天")
    pool = await res.pool()
    rows = await bounded(res, queries.allocation_report(pool, period_from=frm, period_to=to))
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
                open_cases=r["open_cases"],
                last_assigned_at=r["last_assigned_at"],
            )
            for r in rows
        ],
    )
