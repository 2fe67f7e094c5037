"""Reports for managers and the director: each covers the reader's branches, `?branch=CODE` one of them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api import services
from api.deps import CurrentUser, ResourcesDep, permitted
from api.errors import R401, R403, R404_BRANCH, R422_DATE, R422_PERIOD, R503, ErrorBody, Responses, responses
from api.schemas import AllocationReport, BranchLeague, IsoTime, MorningSummary, SlaReport, query_time
from api.services import reports as report_services
from domain import permissions
from domain.enums import Scenario, Source

router = APIRouter(prefix="/reports", tags=["reports"])

Reader = Annotated[CurrentUser, Depends(permitted(permissions.may_read_reports))]

# One branch of those the reader works in (head office: any branch).
BranchCode = Annotated[str | None, Query(max_length=32, description="分公司代码：只看这一家（总部可看任一家，其他人只能看本分公司）")]
R403_BRANCH: Responses = {403: {"model": ErrorBody, "description": "wrong_role：角色无权查看；not_your_branch：不是您所在的分公司"}}
R422_BRANCH: Responses = {422: {"model": ErrorBody, "description": (
    "invalid_payload：参数不合格；invalid_period：起须早于止，区间最长 400 天；unknown_branch：没有该代码的分公司")}}


@router.get(
    "/sla",
    response_model=SlaReport,
    summary="时效报表（经理、总经理）",
    responses=responses(R401, R403_BRANCH, R422_BRANCH, R503),
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
    branch: BranchCode = None,
) -> SlaReport:
    """Per step: on-time share, median and p90 time to done, escalations; optionally by source, manager, designer."""
    return await services.sla_report(
        res,
        user,
        group_by=group_by,
        period_from=query_time(created_from, "created_from"),
        period_to=query_time(created_to, "created_to"),
        source=source,
        scenario=scenario,
        branch=branch,
    )


@router.get(
    "/allocation",
    response_model=AllocationReport,
    summary="客户分配公平性报表（经理、总经理）",
    responses=responses(R401, R403_BRANCH, R422_BRANCH, R503),
)
async def allocation_report(
    user: Reader,
    res: ResourcesDep,
    period_from: Annotated[IsoTime | None, Query(alias="from", description="起（默认 30 天前）")] = None,
    period_to: Annotated[IsoTime | None, Query(alias="to", description="止（默认现在）")] = None,
    branch: BranchCode = None,
) -> AllocationReport:
    """Per designer, from the allocation ledger: cases given, overrides of the suggestion, open cases."""
    return await services.allocation_report(
        res, user, period_from=query_time(period_from, "from"), period_to=query_time(period_to, "to"), branch=branch
    )


MorningReader = Annotated[CurrentUser, Depends(permitted(permissions.may_read_morning_summary))]


@router.get(
    "/morning-summary",
    response_model=MorningSummary,
    summary="晨报（经理、总经理）",
    responses=responses(R401, R403, R404_BRANCH, R422_DATE, R503),
)
async def morning_summary(
    user: MorningReader,
    res: ResourcesDep,
    day: Annotated[date | None, Query(alias="date", description="哪一天的晨报（公司所在时区的日期，默认今天）")] = None,
    branch: Annotated[str | None, Query(max_length=32, description="分公司代码（默认：总部看全公司，其他人看本分公司）")] = None,
) -> MorningSummary:
    """The morning summary of a day: yesterday's leads and late steps, stalled cases, open work, today's visits."""
    return await services.morning_summary(res, user, day, branch=branch)


R403_LEAGUE: Responses = {403: {"model": ErrorBody, "description": (
    "wrong_role：角色无权查看报表；head_office_only：分公司排行只对总部（总经理、区域经理）开放")}}


@router.get(
    "/branches",
    response_model=BranchLeague,
    summary="分公司排行（总经理、区域经理）",
    responses=responses(R401, R403_LEAGUE, R422_PERIOD, R503),
)
async def branch_league(
    user: Reader,
    res: ResourcesDep,
    created_from: Annotated[IsoTime | None, Query(description="案例创建时间起（默认 30 天前）")] = None,
    created_to: Annotated[IsoTime | None, Query(description="案例创建时间止（默认现在）")] = None,
) -> BranchLeague:
    """Per branch: on-time share, median time to callback, signed rate, escalations over the cases created in
    the period; open and stalled cases now. Best first, and all of them together (`total`)."""
    return await report_services.branch_league(
        res, user, period_from=query_time(created_from, "created_from"), period_to=query_time(created_to, "created_to")
    )
