"""Insight (SPEC §16): a person's SOP scorecard, the habits that go with signed contracts, the Excel export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import CurrentStaff, ResourcesDep
from api.errors import R401, R503, ErrorBody, Responses, responses
from api.routers.reports import BranchCode
from api.services import insight

router = APIRouter(prefix="/insight", tags=["insight"])

R404_STAFF: Responses = {404: {"model": ErrorBody, "description": "staff_not_found：没有该员工"}}
R403_SCORECARD: Responses = {403: {"model": ErrorBody,
                                   "description": "not_your_scorecard：只能查看自己的考核；wrong_role：角色无权查看；"
                                                  "not_your_branch：不是您所在的分公司"}}
R422_BRANCH: Responses = {422: {"model": ErrorBody,
                                "description": "invalid_payload：参数不合格；unknown_branch：没有该代码的分公司"}}

Days = Annotated[int | None, Query(ge=1, le=insight.MAX_DAYS, description="最近多少天建档的案例（默认 90）")]


@router.get("/scorecards/{staff_id}", response_model=insight.Scorecard, summary="个人考核（本人、经理、总经理）",
            responses=responses(R401, R403_SCORECARD, R404_STAFF, R422_BRANCH, R503))
async def scorecard(staff_id: int, user: CurrentStaff, res: ResourcesDep, days: Days = None,
                    branch: BranchCode = None) -> insight.Scorecard:
    """Per week: steps done on time, each must and checklist item, corrections acknowledged in time, escalations
    caused, and the recurring themes of the corrections received. A designer or assistant reads only their own."""
    return await insight.scorecard(res, user, staff_id, days=days, branch=branch)


@router.get("/habits", response_model=insight.Habits, summary="习惯与签单（经理、总经理）",
            responses=responses(R401, R403_SCORECARD, R422_BRANCH, R503))
async def habits(user: CurrentStaff, res: ResourcesDep, days: Days = None, branch: BranchCode = None) -> insight.Habits:
    """For each habit of the procedure: the signed rate of decided cases with and without it, counts, 95 % Wilson
    intervals, and `too_few` (样本太少) below the threshold. A comparison, not a cause."""
    return await insight.habits(res, user, days=days, branch=branch)


@router.get("/scorecards.xlsx", summary="考核导出 Excel",
            responses=responses(R401, R403_SCORECARD, R404_STAFF, R422_BRANCH, R503),
            response_class=Response)
async def export(user: CurrentStaff, res: ResourcesDep, days: Days = None,
                 staff_id: Annotated[int | None, Query(description="只导出此人（默认：经理、总经理导出全部）")] = None,
                 branch: BranchCode = None) -> Response:
    """The scorecards (and for the manager and the director, the habits) as an Excel workbook."""
    body = await insight.export(res, user, staff_id=staff_id, days=days, branch=branch)
    return Response(body, media_type=insight.XLSX,
                    headers={"Content-Disposition": 'attachment; filename="scorecards.xlsx"'})
