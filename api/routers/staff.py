"""Staff management for the admin role (SPEC §12): the same operations as `intake staff …`.

No admin alone gets a working credential of anyone (issue 14): adding a person or asking for a new
credential creates a request; a second admin approves it and a one-time sign-in link is made, recorded
with both names, for the person to open on their own phone (store.credentials). Nobody changes their
own role.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.deps import CurrentUser, ResourcesDep, bounded, permitted, refuse
from api.errors import R401, R403, R404, R409, R422, R503, ApiError, responses
from api.schemas import (
    MAX_ID,
    Revoked,
    StaffCreate,
    StaffList,
    StaffOut,
    StaffPatch,
)
from domain import permissions, staffing
from store import credentials
from store.branches import MAIN_BRANCH_ID, BranchRepository
from store.staff import Staff, StaffError, StaffRepository

router = APIRouter(prefix="/staff", tags=["staff"])

Admin = Annotated[CurrentUser, Depends(permitted(permissions.may_manage_staff))]
StaffId = Annotated[int, Path(ge=1, le=MAX_ID, description="员工ID")]


async def branch_codes(res: ResourcesDep) -> dict[int, str]:
    """Every branch's code by id (closed ones too: a person may still belong to one)."""
    pool = await res.pool()
    return {b.id: b.code for b in await bounded(res, BranchRepository(pool).list(include_closed=True))}


async def branch_ids(res: ResourcesDep, codes: list[str], field: str) -> list[int]:
    """The ids of branches named by code (422 invalid_branch for one that does not exist or is closed)."""
    repo = BranchRepository(await res.pool())
    out: list[int] = []
    for code in codes:
        branch = await bounded(res, repo.by_code(code))
        if branch is None or branch.status != "active":
            raise ApiError(422, "invalid_branch", f"没有这个分公司：{code}", details={"field": field})
        out.append(branch.id)
    return out


def staff_out(s: Staff, codes: Mapping[int, str] | None = None) -> StaffOut:
    """The admin's view of a staff member (with their branches by code when `codes` is given)."""
    codes = codes or {}
    return StaffOut(
        id=s.id,
        name=s.name,
        phone=s.phone,
        role=s.role,
        level=s.level,
        status=s.status,
        communities=list(s.communities),
        office_schedule={
            str(d): [f"{a.strftime('%H:%M')}-{b.strftime('%H:%M')}" for a, b in periods]
            for d, periods in sorted(s.office_schedule.items())
        },
        max_open_cases=s.max_open_cases,
        weight=s.weight,
        deputy_id=s.deputy_id,
        wecom_userid=s.wecom_userid,
        branch=codes.get(s.branch_id, str(s.branch_id)),
        extra_branches=[codes.get(b, str(b)) for b in s.extra_branches],
    )


def _schedule(raw: Mapping[Any, list[str]]) -> dict[int, list[tuple[time, time]]]:
    out: dict[int, list[tuple[time, time]]] = {}
    for day, periods in raw.items():
        for p in periods:
            a, _, b = p.partition("-")
            start, end = time.fromisoformat(a), time.fromisoformat(b)
            if start >= end:
                raise ApiError(422, "invalid_payload", f"在岗时段 {p} 的开始应早于结束", details={"field": "office_schedule"})
            out.setdefault(int(day), []).append((start, end))
    return out


def _not_found(staff_id: int) -> ApiError:
    return ApiError(404, "staff_not_found", f"没有编号为 {staff_id} 的员工")


def _staff_error(exc: StaffError) -> ApiError:
    return ApiError(409 if exc.code in ("staff_exists", "wecom_userid_taken") else 422, exc.code, exc.message)


@router.get("", response_model=StaffList, summary="员工列表（管理员）", responses=responses(R401, R403, R503))
async def list_staff(user: Admin, res: ResourcesDep) -> StaffList:
    """All staff members with their role, level, status, communities, schedule and capacity."""
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).list())
    codes = await branch_codes(res)
    return StaffList(items=[staff_out(s, codes) for s in staff])


class CredentialRequestOut(BaseModel):
    """A credential asked for, waiting for a second admin (two-person rule)."""

    id: int = Field(description="申请编号")
    staff_id: int
    requested_by: int
    approved_by: int | None = None
    created_at: datetime
    expires_at: datetime
    approved_at: datetime | None = None


class StaffCreated(BaseModel):
    """A new staff member and the request for their first sign-in link (no credential yet)."""

    staff: StaffOut
    credential_request: CredentialRequestOut


class ApprovedCredential(BaseModel):
    """An approved request: the person's one-time sign-in link (hand it to them; it works once)."""

    request: CredentialRequestOut
    sign_in_url: str
    expires_at: datetime


def _request_out(r: Any) -> CredentialRequestOut:
    return CredentialRequestOut(id=r["id"], staff_id=r["staff_id"], requested_by=r["requested_by"],
                                approved_by=r["approved_by"], created_at=r["created_at"],
                                expires_at=r["expires_at"], approved_at=r["approved_at"])


async def _ask(res: ResourcesDep, user: CurrentUser, staff_id: int, reason: str) -> CredentialRequestOut:
    refuse(permissions.may_request_credential(user, staff_id))
    pool = await res.pool()
    row = await bounded(res, credentials.request_credential(
        pool, staff_id=staff_id, requested_by=user.id, reason=reason,
        ttl=timedelta(minutes=res.settings.credential_request_minutes)))
    return _request_out(row)


@router.post(
    "", response_model=StaffCreated, status_code=201, summary="新增员工（管理员）",
    responses=responses(R401, R403, R409, R422, R503),
)
async def add_staff(body: StaffCreate, user: Admin, res: ResourcesDep) -> StaffCreated:
    """Add a staff member; their first sign-in link waits for a second admin's approval (no token here)."""
    pool = await res.pool()
    repo = StaffRepository(pool)
    home = (await branch_ids(res, [body.branch], "branch"))[0] if body.branch else MAIN_BRANCH_ID
    extra = await branch_ids(res, body.extra_branches, "extra_branches")
    try:
        s = await bounded(
            res,
            repo.add(
                name=body.name.strip(), phone=body.phone, role=body.role, level=body.level,
                communities=body.communities, office_schedule=_schedule(body.office_schedule),
                max_open_cases=body.max_open_cases, weight=body.weight, wecom_userid=body.wecom_userid,
                branch_id=home, extra_branches=extra,
            ),
        )
    except StaffError as exc:
        raise _staff_error(exc) from exc
    return StaffCreated(staff=staff_out(s, await branch_codes(res)),
                        credential_request=await _ask(res, user, s.id, "新员工"))


@router.get(
    "/{staff_id}", response_model=StaffOut, summary="员工详情（管理员）", responses=responses(R401, R403, R404, R503)
)
async def get_staff(staff_id: StaffId, user: Admin, res: ResourcesDep) -> StaffOut:
    """One staff member."""
    pool = await res.pool()
    s = await bounded(res, StaffRepository(pool).get(staff_id=staff_id))
    if s is None:
        raise _not_found(staff_id)
    return staff_out(s, await branch_codes(res))


@router.patch(
    "/{staff_id}", response_model=StaffOut, summary="修改员工（管理员）",
    responses=responses(R401, R403, R404, R409, R422, R503),
)
async def edit_staff(staff_id: StaffId, body: StaffPatch, user: Admin, res: ResourcesDep) -> StaffOut:
    """Change level, communities, schedule, capacity, role, status (on_leave: no new cases; inactive: no access)
    or the WeCom member id (personal notices, signing in from WeCom)."""
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name not in ("level", "max_open_cases", "deputy_id", "wecom_userid"):
            raise ApiError(422, "invalid_payload", f"{name} 不能为空", details={"field": name})
        changes[name] = value
    if "office_schedule" in changes:
        changes["office_schedule"] = _schedule(changes["office_schedule"])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
    if "branch" in changes:
        changes["branch_id"] = (await branch_ids(res, [changes.pop("branch")], "branch"))[0]
    if "extra_branches" in changes:
        changes["extra_branches"] = await branch_ids(res, changes["extra_branches"], "extra_branches")
    if "role" in changes:
        refuse(permissions.may_change_role(user, staff_id))
        if not staffing.has_level(changes["role"]) and "level" not in changes:
            changes["level"] = None
    pool = await res.pool()
    try:
        s = await bounded(res, StaffRepository(pool).update(staff_id=staff_id, changes=changes))
    except StaffError as exc:
        raise _staff_error(exc) from exc
    if s is None:
        raise _not_found(staff_id)
    return staff_out(s, await branch_codes(res))


@router.post(
    "/{staff_id}/revoke", response_model=Revoked, summary="吊销全部令牌（管理员）",
    responses=responses(R401, R403, R404, R503),
)
async def revoke(staff_id: StaffId, user: Admin, res: ResourcesDep) -> Revoked:
    """Revoke every live token of a staff member; no new token is issued."""
    pool = await res.pool()
    repo = StaffRepository(pool)
    if await bounded(res, repo.get(staff_id=staff_id)) is None:
        raise _not_found(staff_id)
    n = await bounded(res, repo.revoke_tokens(staff_id=staff_id))
    return Revoked(staff_id=staff_id, revoked=n)


@router.post(
    "/{staff_id}/tokens", response_model=CredentialRequestOut, status_code=202,
    summary="申请新凭证（管理员，需另一位管理员批准）", responses=responses(R401, R403, R404, R503),
)
async def issue_token(staff_id: StaffId, user: Admin, res: ResourcesDep) -> CredentialRequestOut:
    """Ask for a new sign-in link for a person (never for oneself); a second admin approves it (202)."""
    pool = await res.pool()
    if await bounded(res, StaffRepository(pool).get(staff_id=staff_id)) is None:
        raise _not_found(staff_id)
    return await _ask(res, user, staff_id, "管理员申请")


@router.post(
    "/credential-requests/{request_id}/approve", response_model=ApprovedCredential, status_code=201,
    summary="批准凭证申请（另一位管理员）", responses=responses(R401, R403, R404, R409, R503),
)
async def approve_credential(
    request_id: Annotated[int, Path(ge=1, le=MAX_ID)], user: Admin, res: ResourcesDep
) -> ApprovedCredential:
    """The second admin approves: a one-time sign-in link for the person, recorded with both admins."""
    pool = await res.pool()
    req = await bounded(res, credentials.pending_request(pool, request_id))
    if req is None:
        raise ApiError(404, "request_not_found", "没有这个凭证申请")
    refuse(permissions.may_approve_credential(user, requested_by=req["requested_by"], target_id=req["staff_id"]))
    ttl = timedelta(minutes=res.settings.console_link_minutes)
    try:
        code, row = await bounded(res, credentials.approve_request(
            pool, request_id=request_id, approved_by=user.id, link_ttl=ttl))
    except credentials.CredentialError as exc:
        raise ApiError(409, exc.code, exc.message) from exc
    return ApprovedCredential(request=_request_out(row), sign_in_url=res.settings.sign_in_url(code),
                              expires_at=datetime.now(UTC) + ttl)
