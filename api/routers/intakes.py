"""Cases: create, list, read, messages to the client, designer suggestions."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse

from api import idempotency, pagination, services
from api.deps import CurrentStaff, CurrentUser, ResourcesDep, bounded, permitted
from api.errors import R401, R403, R404, R409, R422, R503, responses
from api.pagination import MAX_OFFSET
from api.schemas import (
    CaseList,
    CaseView,
    Id,
    IntakeCreate,
    IsoTime,
    MessageList,
    SuggestionList,
    query_time,
)
from api.services.access import CaseId, contact_map, viewer, visible_case
from api.views import case_summary
from domain import permissions
from domain.enums import Level, Scenario, Source
from store import queries

log = logging.getLogger("intake.api")

router = APIRouter(prefix="/intakes", tags=["intakes"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="幂等键：网络中断后用同一个 Key 重试，得到第一次的结果，不会重复建档",
    ),
]

Creator = Annotated[CurrentUser, Depends(permitted(permissions.may_create))]


@router.post(
    "",
    status_code=201,
    response_model=CaseView,
    summary="新客户建档",
    responses=responses(R401, R403, R409, R422, R503),
)
async def create_intake(
    body: IntakeCreate,
    user: Creator,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Create a case for a new client and start its workflow; at most one open case per client phone."""
    out = await services.create_case(res, body, user, idempotency_key)
    if out.replayed:
        return idempotency.replay(out.status, out.body)
    return JSONResponse(status_code=out.status, content=out.body)


# --- reads ---------------------------------------------------------------------------------------


@router.get(
    "",
    response_model=CaseList,
    summary="案例列表",
    responses=responses(R401, R422, R503),
)
async def list_intakes(
    user: CurrentStaff,
    res: ResourcesDep,
    stage: Annotated[str | None, Query(max_length=40, description="阶段，例如 callback、contact、signed")] = None,
    status: Annotated[Literal["open", "closed"] | None, Query(description="open 未结案 / closed 已结案")] = None,
    overdue: Annotated[bool | None, Query(description="只看（不看）超时的案例")] = None,
    designer_id: Annotated[Id | None, Query(description="设计师ID")] = None,
    manager_id: Annotated[Id | None, Query(description="经理ID")] = None,
    source: Annotated[Source | None, Query(description="来源")] = None,
    scenario: Annotated[Scenario | None, Query(description="情况")] = None,
    created_from: Annotated[IsoTime | None, Query(description="创建时间起（含）")] = None,
    created_to: Annotated[IsoTime | None, Query(description="创建时间止（不含）")] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="每页条数")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="跳过条数（与 cursor 二选一）")] = 0,
    cursor: Annotated[str | None, Query(max_length=200, description="上一页返回的 next_cursor")] = None,
) -> CaseList:
    """List cases from the projection, newest first, with filters and pagination (offset or cursor)."""
    flt = queries.CaseFilter(
        stage=stage,
        status=status,
        overdue=overdue,
        designer_id=designer_id,
        manager_id=manager_id,
        source=source.value if source else None,
        scenario=scenario.value if scenario else None,
        created_from=query_time(created_from, "created_from"),
        created_to=query_time(created_to, "created_to"),
        viewer=viewer(user),
    )
    keyset = pagination.decode_cursor(cursor) if cursor else None
    pool = await res.pool()
    rows, total = await bounded(res, queries.list_cases(pool, flt, limit=limit, offset=offset, cursor=keyset))
    allowed = await contact_map(res, user, rows, "GET /intakes")
    items = [case_summary(r, contact=ok) for r, ok in zip(rows, allowed, strict=True)]
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = pagination.encode_cursor(last["created_at"], last["id"])
    return CaseList(items=items, total=total, limit=limit, offset=0 if keyset else offset, next_cursor=next_cursor)


@router.get(
    "/{case_id}",
    dependencies=[Depends(visible_case)],
    response_model=CaseView,
    summary="案例详情",
    responses=responses(R401, R404, R422, R503),
)
async def get_intake(
    case_id: CaseId,
    user: CurrentStaff,
    res: ResourcesDep,
    fresh: Annotated[
        bool, Query(description="true：向流程实时查询（较慢）；默认读数据库投影（流程每次变化后同步）")
    ] = False,
) -> CaseView:
    """The case: stage, open steps (owner, due, overdue, escalation level), assignments, meetings, timeline."""
    return await services.get_case(res, case_id, fresh=fresh, user=user)


@router.get(
    "/{case_id}/messages",
    dependencies=[Depends(visible_case)],
    response_model=MessageList,
    summary="发给客户的短信",
    responses=responses(R401, R404, R422, R503),
)
async def list_messages(
    case_id: CaseId,
    user: CurrentStaff,
    res: ResourcesDep,
    channel: Annotated[
        Literal["sms", "staff"],
        Query(description="sms 发给客户的短信 / staff 员工通知（经理、总经理看全部，其他人只看发给自己的）"),
    ] = "sms",
) -> MessageList:
    """The SMS sent (or being sent) to the client of the case: purpose, text, status; or its staff notices."""
    return await services.case_messages(res, case_id, user=user, channel=channel)


@router.get(
    "/{case_id}/designer-suggestions",
    dependencies=[Depends(visible_case)],
    response_model=SuggestionList,
    summary="推荐设计师（经理）",
    responses=responses(R401, R403, R404, R422, R503),
)
async def designer_suggestions(
    case_id: CaseId,
    user: CurrentStaff,
    res: ResourcesDep,
    include_ineligible: Annotated[bool, Query(description="同时列出不符合条件的设计师及原因")] = False,
    level: Annotated[
        Level | None, Query(description="回访中正与客户商定的级别（默认：已约定的级别或按预算）")
    ] = None,
) -> SuggestionList:
    """Ranked eligible designers for the case (rotation 轮单), each with its reasons; managers only.

    Readable at any open stage, also while the callback is open: the manager agrees level and name
    with the client on the phone (seed 一a/三d).
    """
    return await services.designer_suggestions(
        res, user, case_id, include_ineligible=include_ineligible, level=level
    )
