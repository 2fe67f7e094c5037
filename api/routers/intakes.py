"""Cases: create, list, read, messages to the client, designer suggestions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.allocation import AllocationActivities, DesignerSuggestion
from activities.staff import Staff, StaffRepository
from api import context, idempotency, queries
from api.deps import (
    CurrentStaff,
    CurrentUser,
    Resources,
    ResourcesDep,
    bounded,
    contact_map,
    require_roles,
    shown_contact,
)
from api.errors import R401, R403, R404, R409, R422, R503, ApiError, not_found_case, responses, unavailable
from api.privacy import mask_phone
from api.schemas import (
    MAX_ID,
    CaseList,
    CaseView,
    Id,
    IntakeCreate,
    IsoTime,
    MessageItem,
    MessageList,
    SuggestionItem,
    SuggestionList,
    query_time,
)
from api.temporal import bounded_temporal, intake_workflow, query_state
from api.views import case_summary, case_view, state_from_row, timeline
from api.writes import projection_writer
from domain import engine
from domain.constants import workflow_id
from domain.enums import Level, Role, Scenario, Source, StaffStatus
from domain.graph import initial_stage
from domain.models import CaseState, IntakeInput, StaffRef, SuggestAssistants, Suggestion
from domain.policy import Policy
from domain.tracking import initial_search_attributes, static_summary

log = logging.getLogger("intake.api")

router = APIRouter(prefix="/intakes", tags=["intakes"])

CaseId = Annotated[int, Path(ge=1, le=MAX_ID, description="案例编号", examples=[1024])]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        description="幂等键：网络中断后用同一个 Key 重试，得到第一次的结果，不会重复建档",
    ),
]

CREATOR_ROLES = (Role.consultant, Role.manager, Role.site_lead, Role.assistant, Role.designer)
Creator = Annotated[CurrentUser, Depends(require_roles(*CREATOR_ROLES))]
Manager = Annotated[CurrentUser, Depends(require_roles(Role.manager))]

# Which sources each scenario can come from (SPEC §2).
SCENARIO_SOURCES: dict[Scenario, frozenset[Source]] = {
    Scenario.remote: frozenset({Source.marketing, Source.online}),
    Scenario.office_visit: frozenset({Source.marketing, Source.online}),
    Scenario.site_office: frozenset({Source.site_office}),
    Scenario.walk_in: frozenset({Source.walk_in}),
}
# Who can have received a client at a compound office.
SITE_RECEIVERS = frozenset({Role.site_lead, Role.designer})
# A live query right after the start: short, the answer falls back to the row.
QUERY_AFTER_START_SECONDS = 2.0


def _check_future(value: datetime | None, field: str) -> None:
    # New cases only: a step's times are judged by the workflow's validators, in one place.
    if value is not None and value <= datetime.now(UTC):
        raise ApiError(422, "time_in_past", f"{field} 必须是将来的时间", details={"field": field})


async def _received_by(repo: StaffRepository, body: IntakeCreate, user: CurrentUser) -> Staff | None:
    if body.received_by is None:
        if body.scenario == Scenario.site_office and user.role in SITE_RECEIVERS:
            return user.staff
        if body.scenario == Scenario.walk_in:
            return user.staff
        return None
    staff = await repo.get(staff_id=body.received_by)
    if staff is None or staff.status != StaffStatus.active:
        raise ApiError(
            422, "invalid_assignee", f"接待人员 {body.received_by} 不存在或不在岗", details={"field": "received_by"}
        )
    if body.scenario == Scenario.site_office and staff.role not in SITE_RECEIVERS:
        raise ApiError(
            422,
            "invalid_assignee",
            "小区办公室的接待人员应为小区负责人或值班设计师",
            details={"field": "received_by"},
        )
    return staff


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
    if body.source not in SCENARIO_SOURCES[body.scenario]:
        allowed = "、".join(s.value for s in sorted(SCENARIO_SOURCES[body.scenario]))
        raise ApiError(
            422,
            "scenario_source_mismatch",
            f"情况 {body.scenario.value} 的来源应为 {allowed}，而不是 {body.source.value}",
        )
    _check_future(body.meeting_at, "meeting_at")

    pool = await res.pool()
    req_hash = idempotency.request_hash(body.model_dump_json())
    if idempotency_key:
        stored = await bounded(
            res, idempotency.lookup(pool, staff_id=user.id, key=idempotency_key, req_hash=req_hash)
        )
        if stored is not None:
            return await _replay(res, pool, stored, user)
    client = await res.client()
    repo = StaffRepository(pool)
    received = await bounded(res, _received_by(repo, body, user))
    manager = user.staff if user.role == Role.manager else await bounded(res, repo.first_active(role=Role.manager))
    director = await bounded(res, repo.first_active(role=Role.director))
    policy = res.policy()
    now = datetime.now(UTC)

    def ref(s: Staff | None) -> StaffRef | None:
        return s.ref() if s else None

    case_id: int | None = None
    try:
        # The row first, as `starting`, with everything the workflow will be started with: a crash
        # after this commit leaves a row the reconciler completes, never a workflow without its row.
        async with pool.acquire(timeout=res.timeout) as conn, conn.transaction():
            if idempotency_key:
                # Written first: a concurrent request with the same key waits here for this one.
                await conn.execute(
                    "INSERT INTO idempotency_keys (staff_id, key, request_hash, status_code, response)"
                    " VALUES ($1, $2, $3, NULL, NULL)",
                    user.id,
                    idempotency_key,
                    req_hash,
                    timeout=res.timeout,
                )
            case_id = await conn.fetchval(
                "SELECT nextval(pg_get_serial_sequence('cases', 'id'))", timeout=res.timeout
            )
            assert case_id is not None
            context.set_case(case_id)
            c = body.client
            # No client data in the workflow input: name, phone and address stay in PostgreSQL.
            inp = IntakeInput(
                case_id=case_id,
                source=body.source,
                scenario=body.scenario,
                created_at=now,
                created_by=user.staff.ref(),
                manager=ref(manager),
                director=ref(director),
                received_by=ref(received),
                compound=c.compound,
                budget=c.budget,
                meeting_at=body.meeting_at,
                meeting_kind=body.meeting_kind,
                policy=policy,
            )
            opening = engine.start(inp)
            # The open-phone unique index makes concurrent creations for one phone wait here for the
            # first one's commit (or rollback): exactly one of them gets the case.
            await conn.execute(
                "INSERT INTO cases (id, workflow_id, source, scenario, stage, status, client_name, client_phone,"
                " client_gender, client_age_range, compound, address, area_m2, budget, notes, meeting_at,"
                " meeting_kind, created_by, received_by, manager_id, created_at, policy, workflow_input)"
                " VALUES ($1,$2,$3,$4,$5,'starting',$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,"
                "$21,$22)",
                case_id,
                workflow_id(case_id),
                body.source.value,
                body.scenario.value,
                initial_stage(body.scenario),
                c.name,
                c.phone,
                c.gender.value,
                c.age_range,
                c.compound,
                c.address,
                c.area_m2,
                c.budget,
                body.notes,
                body.meeting_at,
                body.meeting_kind.value if body.meeting_kind else None,
                user.id,
                received.id if received else None,
                manager.id if manager else None,
                now,
                policy.model_dump(mode="json"),
                inp.model_dump(mode="json"),
                timeout=res.timeout,
            )
            # The opening (steps, timeline, the manager's "call back now" notice) in the same commit;
            # the outbox holds messages of a `starting` case until its workflow runs.
            await projection_writer(res.settings).apply(conn, opening.change, confirm=False)
            if idempotency_key:
                # Final within this transaction: the key commits with its case or not at all. The
                # stored body is completed after the commit; until then a replay rebuilds it.
                await conn.execute(
                    "UPDATE idempotency_keys SET status_code = 201, response = $3"
                    " WHERE staff_id = $1 AND key = $2",
                    user.id,
                    idempotency_key,
                    {"case_id": case_id, "partial": True},
                    timeout=res.timeout,
                )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == "cases_open_phone_uq":
            return await _duplicate(res, pool, body, user, idempotency_key, req_hash)
        if exc.constraint_name == "idempotency_keys_pkey" and idempotency_key:
            stored = await bounded(
                res, idempotency.lookup(pool, staff_id=user.id, key=idempotency_key, req_hash=req_hash)
            )
            if stored is not None:
                return await _replay(res, pool, stored, user)
        raise
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise unavailable("database_unavailable", "数据库暂时无法访问，请稍后重试") from exc

    await _start(res, client, pool, inp, opening.state, idempotency_key=idempotency_key, staff_id=user.id)
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    # The creator typed the phone: the answer carries it in full (and the read is recorded).
    contact = await shown_contact(res, user, [row], "POST /intakes")
    view = case_view(row, opening.state, timeline([], opening.state), "workflow", contact=contact)
    body_json = jsonable_encoder(view)
    if idempotency_key:
        try:
            await bounded(
                res,
                pool.execute(
                    "UPDATE idempotency_keys SET response = $3 WHERE staff_id = $1 AND key = $2",
                    user.id,
                    idempotency_key,
                    body_json,
                ),
            )
        except Exception as exc:  # the key still replays (rebuilt from the case)
            log.warning("idempotency answer for case %s not stored: %r", case_id, exc)
    return JSONResponse(status_code=201, content=body_json)


async def _start(
    res: Resources,
    client: Client,
    pool: asyncpg.Pool,
    inp: IntakeInput,
    opening: CaseState,
    *,
    idempotency_key: str | None,
    staff_id: int,
) -> None:
    """Start the committed case's workflow and mark the row open.

    Temporal refused outright (unreachable): nothing started, so the row is removed again and the
    request changed nothing. No answer in time: the start may have happened; the row stays
    `starting` and the reconciler completes it (a retry with the same Idempotency-Key returns it).
    """
    wf = intake_workflow()
    try:
        await bounded_temporal(
            res.timeout,
            lambda: client.start_workflow(
                wf.run,
                inp,
                id=workflow_id(inp.case_id),
                task_queue=res.settings.task_queue,
                search_attributes=initial_search_attributes(inp, opening),
                static_summary=static_summary(inp),
                rpc_timeout=res.rpc_timeout,
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # started by a concurrent reconciler: the same input, the same case
    except ApiError as exc:
        if exc.code == "temporal_unavailable":
            try:
                await bounded(res, _undo_starting(pool, inp.case_id, staff_id, idempotency_key))
            except ApiError:
                log.warning("case %s stays starting: the reconciler will start it", inp.case_id)
        raise
    try:
        await bounded(
            res, pool.execute("UPDATE cases SET status = 'open' WHERE id = $1 AND status = 'starting'", inp.case_id)
        )
    except ApiError:
        # The workflow runs; its own first write (or the reconciler) marks the row open.
        log.warning("case %s started; marking it open is left to the workflow", inp.case_id)


async def _undo_starting(pool: asyncpg.Pool, case_id: int, staff_id: int, key: str | None) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM cases WHERE id = $1 AND status = 'starting'", case_id)
        if key:
            await conn.execute("DELETE FROM idempotency_keys WHERE staff_id = $1 AND key = $2", staff_id, key)


async def _created_view(
    res: Resources, pool: asyncpg.Pool, client: Client | None, case_id: int, user: CurrentUser
) -> CaseView:
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    contact = await shown_contact(res, user, [row], "POST /intakes")
    if client is not None:
        state = await query_state(client, case_id=case_id, timeout=min(res.timeout, QUERY_AFTER_START_SECONDS))
        if state is not None:
            return case_view(row, state, timeline([], state), "workflow", contact=contact)
    projected = state_from_row(row)
    return case_view(row, projected, [], "projection" if projected else "created", contact=contact)


async def _replay(res: Resources, pool: asyncpg.Pool, stored: asyncpg.Record, user: CurrentUser) -> Any:
    resp = stored["response"]
    if stored["status_code"] == 201 and isinstance(resp, dict) and resp.get("partial"):
        # The case was committed but its answer not yet stored (or storing it failed): rebuild it.
        try:
            client: Client | None = await res.client()
        except ApiError:
            client = None
        view = await _created_view(res, pool, client, int(resp["case_id"]), user)
        return idempotency.replay(201, jsonable_encoder(view))
    return idempotency.replay(stored["status_code"], resp)


async def _duplicate(
    res: Resources, pool: asyncpg.Pool, body: IntakeCreate, user: CurrentUser, key: str | None, req_hash: str
) -> Any:
    existing = await bounded(res, queries.open_case_for_phone(pool, body.client.phone))
    if existing is None:
        # The other case closed in between: the phone is free again, the client may simply retry.
        raise ApiError(409, "duplicate_open_case", "该手机号刚有一个案例在处理中，请重试")
    err = ApiError(
        409,
        "duplicate_open_case",
        f"该手机号已有未结案的案例 #{existing}，请在该案例中继续跟进",
        case_id=existing,
    )
    if key:
        await bounded(
            res,
            idempotency.store(pool, staff_id=user.id, key=key, req_hash=req_hash, status_code=409, body=err.body()),
        )
    raise err


# --- allocation (shared with the assignment steps) --------------------------------------------


def _case_policy(res: Resources, row: asyncpg.Record) -> Policy:
    # The policy the case started with (SPEC §4), not today's file.
    return Policy.model_validate(row["policy"]) if row["policy"] else res.policy()


def _required_level(res: Resources, row: asyncpg.Record) -> Level:
    state = state_from_row(row)
    return (state.designer_level if state else None) or _case_policy(res, row).level_for_budget(row["budget"])


async def designer_ranking(
    res: Resources, pool: asyncpg.Pool, row: asyncpg.Record, *, include_ineligible: bool = False
) -> list[DesignerSuggestion]:
    """Designers for a case in rotation order (轮单) with their reasons, from the projection's state."""
    state = state_from_row(row)
    policy = _case_policy(res, row)
    meeting_at = row["meeting_at"]
    if state is not None and (m := state.meeting("meeting")) is not None:
        meeting_at = m.at
    ranked: list[DesignerSuggestion] = await bounded(
        res,
        AllocationActivities(pool).designer_suggestions(
            case_id=row["id"],
            scenario=Scenario(row["scenario"]),
            required_level=_required_level(res, row),
            meeting_at=meeting_at,
            compound=row["compound"],
            exclude_case_from_counts=True,
            max_open_by_level=policy.max_open_cases,
            tz=policy.calendar.timezone,
            include_ineligible=include_ineligible,
        ),
    )
    return ranked


async def assistant_ranking(res: Resources, pool: asyncpg.Pool, case_id: int) -> list[Suggestion]:
    """Assistants for a case, fewest open cases first."""
    ranked: list[Suggestion] = await bounded(
        res, AllocationActivities(pool).suggest_assistants(SuggestAssistants(case_id=case_id))
    )
    return ranked


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
    offset: Annotated[int, Query(ge=0, le=100_000, description="跳过条数（与 cursor 二选一）")] = 0,
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
    )
    keyset = queries.decode_cursor(cursor) if cursor else None
    pool = await res.pool()
    rows, total = await bounded(res, queries.list_cases(pool, flt, limit=limit, offset=offset, cursor=keyset))
    allowed = await contact_map(res, user, rows, "GET /intakes")
    items = [case_summary(r, contact=ok) for r, ok in zip(rows, allowed, strict=True)]
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = queries.encode_cursor(last["created_at"], last["id"])
    return CaseList(items=items, total=total, limit=limit, offset=0 if keyset else offset, next_cursor=next_cursor)


@router.get(
    "/{case_id}",
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
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    events = await bounded(res, queries.case_events(pool, case_id))
    state = None if fresh else state_from_row(row)
    source: Literal["workflow", "projection", "created"] = "projection"
    if state is None:
        # Asked for fresh data, or the workflow has not reported yet: ask it (bounded), else the row.
        try:
            client = await res.client()
            wait = res.timeout if fresh else min(res.timeout, QUERY_AFTER_START_SECONDS)
            state = await query_state(client, case_id=case_id, timeout=wait)
        except ApiError:
            state = None
        source = "workflow" if state is not None else "projection"
        if state is None:
            state = state_from_row(row)
            source = "projection" if state is not None else "created"
    assignments = await bounded(res, queries.case_assignments(pool, case_id))
    contact = await shown_contact(res, user, [row], "GET /intakes/{case_id}")
    return case_view(row, state, timeline(events, state), source, assignments=assignments, contact=contact)


@router.get(
    "/{case_id}/messages",
    response_model=MessageList,
    summary="发给客户的短信",
    responses=responses(R401, R404, R422, R503),
)
async def list_messages(case_id: CaseId, user: CurrentStaff, res: ResourcesDep) -> MessageList:
    """The SMS sent (or being sent) to the client of the case: purpose, text, status."""
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    rows = await bounded(res, queries.case_messages(pool, case_id))
    # The recipient of an SMS is the client's phone: full only for those who may see it.
    contact = bool(rows) and await shown_contact(res, user, [row], "GET /intakes/{case_id}/messages")
    items = [
        MessageItem(**{**dict(r), "recipient": r["recipient"] if contact else mask_phone(r["recipient"])})
        for r in rows
    ]
    return MessageList(case_id=case_id, items=items)


@router.get(
    "/{case_id}/designer-suggestions",
    response_model=SuggestionList,
    summary="推荐设计师（经理）",
    responses=responses(R401, R403, R404, R422, R503),
)
async def designer_suggestions(
    case_id: CaseId,
    user: Manager,
    res: ResourcesDep,
    include_ineligible: Annotated[bool, Query(description="同时列出不符合条件的设计师及原因")] = False,
) -> SuggestionList:
    """Ranked eligible designers for the case (rotation 轮单), each with its reasons; managers only."""
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    level = _required_level(res, row)
    ranked = await designer_ranking(res, pool, row, include_ineligible=include_ineligible)
    items = [
        SuggestionItem(
            staff=s.staff,
            rank=s.rank,
            eligible=s.eligible,
            reasons=list(s.reasons),
            open_cases=s.open_cases,
            last_assigned_at=s.last_assigned_at,
        )
        for s in ranked
    ]
    return SuggestionList(case_id=case_id, required_level=level, items=items)

