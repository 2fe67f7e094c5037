"""Audit: who has read clients' full phone numbers (managers and the director); who issued which
credential (admins, managers and the director)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.deps import CurrentUser, ResourcesDep, bounded, permitted
from api.errors import R401, R403, R422, R503, responses
from api.pagination import MAX_OFFSET
from api.schemas import Id, PhoneRead, PhoneReadList, StaffBrief
from domain import permissions
from domain.enums import Role
from store.audit import list_phone_reads
from store.credentials import credential_audit

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


class CredentialEntry(BaseModel):
    """One credential: for whom, what, issued (and approved) by whom, when, until when, ended when."""

    kind: str = Field(description="token（令牌）、sign_in_link（登录链接）、request（凭证申请）")
    what: str = Field(description="api、codec、console；申请：pending / approved")
    staff: StaffBrief
    issued_by: StaffBrief | None = Field(default=None, description="签发（或申请）人；空：命令行，见 issued_via")
    approved_by: StaffBrief | None = None
    issued_via: str | None = Field(default=None, description="cli:<系统用户>、api、api:two-person")
    at: datetime
    expires_at: datetime | None = None
    ended_at: datetime | None = Field(default=None, description="吊销、使用或批准的时间")


class CredentialAudit(BaseModel):
    """Who issued what, newest first."""

    items: list[CredentialEntry]


def _brief(entry: dict[str, Any], key: str) -> StaffBrief | None:
    sid = entry[key]
    if sid is None:
        return None
    name = entry[f"{key}_name"] if key != "staff_id" else entry["staff_name"]
    return StaffBrief(id=sid, name=name or "")


@router.get(
    "/credentials",
    response_model=CredentialAudit,
    summary="凭证签发记录（管理员、经理、总经理）",
    responses=responses(R401, R403, R422, R503),
)
async def credential_list(
    user: Annotated[CurrentUser, Depends(permitted(permissions.may_audit_credentials))],
    res: ResourcesDep,
    staff_id: Annotated[Id | None, Query(description="只看此员工的凭证")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> CredentialAudit:
    """Every token, codec credential, sign-in link and request: who issued it, who approved it, when."""
    pool = await res.pool()
    rows = await bounded(res, credential_audit(pool, staff_id=staff_id, limit=limit))
    return CredentialAudit(items=[
        CredentialEntry(kind=r["kind"], what=r["what"], staff=_brief(r, "staff_id") or StaffBrief(id=0, name=""),
                        issued_by=_brief(r, "issued_by"), approved_by=_brief(r, "approved_by"),
                        issued_via=r["issued_via"], at=r["at"], expires_at=r["expires_at"], ended_at=r["ended_at"])
        for r in rows
    ])
