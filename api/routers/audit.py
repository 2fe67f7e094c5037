"""Audit: who has read clients' full phone numbers (managers and the director)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import CurrentUser, ResourcesDep, bounded, permitted
from api.errors import R401, R403, R422, R503, responses
from api.pagination import MAX_OFFSET
from api.schemas import Id, PhoneRead, PhoneReadList, StaffBrief
from domain import permissions
from domain.enums import Role
from store.audit import list_phone_reads

router = APIRouter(prefix="/audit", tags=["audit"])

Auditor = Annotated[CurrentUser, Depends(permitted(permissions.may_audit))]


@router.get(
    "/phone-reads",
    response_model=PhoneReadList,
    summary="客户手机号查看记录（经理、总经理）",
    responses=responses(R401, R403, R422, R503),
)
async def phone_reads(
    user: Auditor,
    res: ResourcesDep,
    case_id: Annotated[Id | None, Query(description="只看某个案例")] = None,
    staff_id: Annotated[Id | None, Query(description="只看某位员工")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="每页条数")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="跳过条数")] = 0,
) -> PhoneReadList:
    """Every recorded read of a client's full phone (who, when, which case, which route), newest first."""
    pool = await res.pool()
    rows, total = await bounded(
        res, list_phone_reads(pool, case_id=case_id, staff_id=staff_id, limit=limit, offset=offset)
    )
    items = [
        PhoneRead(
            id=r["id"],
            at=r["at"],
            case_id=r["case_id"],
            route=r["route"],
            request_id=r["request_id"],
            staff=StaffBrief(id=r["staff_id"], name=r["staff_name"]),
            staff_role=Role(r["staff_role"]),
        )
        for r in rows
    ]
    return PhoneReadList(items=items, total=total, limit=limit, offset=offset)
