"""Branches (分公司/门店) for head office (the admin, the director): the same operations as `intake branches …`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.deps import CurrentUser, ResourcesDep, permitted
from api.errors import R401, R403, R404_BRANCH, R409_BRANCH, R422_BRANCH, R503, responses
from api.schemas import MAX_ID, BranchCreate, BranchList, BranchOut, BranchPatch
from api.services import branches as service
from domain import permissions

router = APIRouter(prefix="/branches", tags=["branches"])

HeadOffice = Annotated[CurrentUser, Depends(permitted(permissions.may_manage_branches))]
BranchId = Annotated[int, Path(ge=1, le=MAX_ID, description="分公司ID")]


@router.get("", response_model=BranchList, summary="分公司列表（管理员、总经理）", responses=responses(R401, R403, R503))
async def list_branches(user: HeadOffice, res: ResourcesDep) -> BranchList:
    """Every branch with its SMS names and account, WeCom department and status (closed ones too)."""
    return BranchList(items=[service.branch_out(b) for b in await service.list_branches(res, user)])


@router.post(
    "", response_model=BranchOut, status_code=201, summary="新增分公司（管理员、总经理）",
    responses=responses(R401, R403, R409_BRANCH, R422_BRANCH, R503),
)
async def add_branch(body: BranchCreate, user: HeadOffice, res: ResourcesDep) -> BranchOut:
    """Add a branch; its clients' SMS carry its company names and address (else the deployment's)."""
    return service.branch_out(await service.add_branch(res, user, body))


@router.get(
    "/{branch_id}", response_model=BranchOut, summary="分公司详情（管理员、总经理）",
    responses=responses(R401, R403, R404_BRANCH, R503),
)
async def get_branch(branch_id: BranchId, user: HeadOffice, res: ResourcesDep) -> BranchOut:
    """One branch."""
    return service.branch_out(await service.get_branch(res, user, branch_id))


@router.patch(
    "/{branch_id}", response_model=BranchOut, summary="修改分公司（管理员、总经理）",
    responses=responses(R401, R403, R404_BRANCH, R409_BRANCH, R422_BRANCH, R503),
)
async def edit_branch(branch_id: BranchId, body: BranchPatch, user: HeadOffice, res: ResourcesDep) -> BranchOut:
    """Change names, city, SMS names, address, sign and template codes, WeCom department or status
    (texts decided from now on use them; texts already recorded stay as they are)."""
    return service.branch_out(await service.update_branch(res, user, branch_id, body))
