"""Staff management for the admin role (SPEC §12): the same operations as `intake staff …`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api.deps import CurrentUser, ResourcesDep, bounded, permitted, refuse
from api.errors import R401, R403, R404, R422, R503, ApiError, responses
from api.schemas import (
    MAX_ID,
    IssuedToken,
    Revoked,
    StaffCreate,
    StaffList,
    StaffOut,
    StaffPatch,
)
from domain import permissions, staffing
from store.staff import Staff, StaffError, StaffRepository

router = APIRouter(prefix="/staff", tags=["staff"])

Admin = Annotated[CurrentUser, Depends(permitted(permissions.may_manage_staff))]
StaffId = Annotated[int, Path(ge=1, le=MAX_ID, description="员工ID")]


def staff_out(s: Staff) -> StaffOut:
    """The admin's view of a staff member."""
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
    return ApiError(409 if exc.code == "staff_exists" else 422, exc.code, exc.message)


@router.get("", response_model=StaffList, summary="员工列表（管理员）", responses=responses(R401, R403, R503))
async def list_staff(user: Admin, res: ResourcesDep) -> StaffList:
    """All staff members with their role, level, status, communities, schedule and capacity."""
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).list())
    return StaffList(items=[staff_out(s) for s in staff])


@router.post(
    "", response_model=IssuedToken, status_code=201, summary="新增员工（管理员）",
    responses=responses(R401, R403, R422, R503),
)
async def add_staff(body: StaffCreate, user: Admin, res: ResourcesDep) -> IssuedToken:
    """Add a staff member and issue their first bearer token (shown once)."""
    pool = await res.pool()
    repo = StaffRepository(pool)
    try:
        s = await bounded(
            res,
            repo.add(
                name=body.name.strip(), phone=body.phone, role=body.role, level=body.level,
                communities=body.communities, office_schedule=_schedule(body.office_schedule),
                max_open_cases=body.max_open_cases, weight=body.weight,
            ),
        )
    except StaffError as exc:
        raise _staff_error(exc) from exc
    return await _issue(res, repo, s)


async def _issue(res: ResourcesDep, repo: StaffRepository, s: Staff) -> IssuedToken:
    ttl = res.settings.token_ttl_days
    token = await bounded(res, repo.issue_token(staff_id=s.id, label="api:admin", ttl_days=ttl))
    return IssuedToken(staff=staff_out(s), token=token, expires_at=datetime.now(UTC) + timedelta(days=ttl))


@router.get(
    "/{staff_id}", response_model=StaffOut, summary="员工详情（管理员）", responses=responses(R401, R403, R404, R503)
)
async def get_staff(staff_id: StaffId, user: Admin, res: ResourcesDep) -> StaffOut:
    """One staff member."""
    pool = await res.pool()
    s = await bounded(res, StaffRepository(pool).get(staff_id=staff_id))
    if s is None:
        raise _not_found(staff_id)
    return staff_out(s)


@router.patch(
    "/{staff_id}", response_model=StaffOut, summary="修改员工（管理员）",
    responses=responses(R401, R403, R404, R422, R503),
)
async def edit_staff(staff_id: StaffId, body: StaffPatch, user: Admin, res: ResourcesDep) -> StaffOut:
    """Change level, communities, schedule, capacity, role or status (on_leave: no new cases; inactive: no access)."""
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name not in ("level", "max_open_cases", "deputy_id"):
            raise ApiError(422, "invalid_payload", f"{name} 不能为空", details={"field": name})
        changes[name] = value
    if "office_schedule" in changes:
        changes["office_schedule"] = _schedule(changes["office_schedule"])
    if "name" in changes:
        changes["name"] = changes["name"].strip()
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
    return staff_out(s)


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
    "/{staff_id}/tokens", response_model=IssuedToken, status_code=201, summary="签发新令牌（管理员）",
    responses=responses(R401, R403, R404, R503),
)
async def issue_token(staff_id: StaffId, user: Admin, res: ResourcesDep) -> IssuedToken:
    """Issue a new bearer token (shown once); earlier tokens stay valid until revoked or expired."""
    pool = await res.pool()
    repo = StaffRepository(pool)
    s = await bounded(res, repo.get(staff_id=staff_id))
    if s is None:
        raise _not_found(staff_id)
    return await _issue(res, repo, s)
