"""What staff can do, once: the services behind both the JSON API and the staff console.

The JSON routes (api/routers) and the console's form routes (api/console) call these functions, so a
permission, a validation rule or an error code lives in one place. Each raises :class:`ApiError`
with a stable code; the JSON API answers it as JSON, the console shows its message beside the field
(``details.field``) or above the form.

Each action is one workflow update (typed reference, never a string name); its validator decides
whether the step is open and whether the caller owns it, and its rejection becomes 409/403/422 (see
api.errors.workflow_rejection). The API checks beforehand only what it alone knows: the caller's
role for the step, that the case exists, that named staff exist, are active and have the right role.

An Idempotency-Key makes a retry safe: it becomes the Temporal update id, so a repeated request
returns the first one's result instead of acting twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, create_model
from starlette.datastructures import UploadFile
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.allocation import AllocationActivities, DesignerSuggestion
from activities.staff import Staff, StaffRepository
from activities.storage import RecordingMissing
from api import context, idempotency, queries
from api.deps import CurrentUser, Resources, bounded, ensure_role, shown_contact
from api.errors import ApiError, not_found_case, unavailable
from api.privacy import mask_phone
from api.schemas import (
    MAX_ID,
    AllocationReport,
    AllocationRow,
    CaseView,
    CloseRequest,
    IntakeCreate,
    MessageItem,
    MessageList,
    NoteRequest,
    ReassignRequest,
    RequestModel,
    RescheduleRequest,
    SlaReport,
    SlaRow,
    StaffBrief,
    SuggestionItem,
    SuggestionList,
)
from api.temporal import bounded_temporal, execute_update, intake_workflow, query_state
from api.views import case_view, state_from_row, timeline
from api.writes import projection_writer, write_change
from domain import engine
from domain.audio import AUDIO_TYPES, SNIFF_BYTES, sniff_audio
from domain.constants import workflow_id
from domain.enums import (
    ROLE_LABELS,
    SOURCE_LABELS,
    STEP_LABELS,
    Level,
    Outcome,
    Role,
    Scenario,
    Source,
    StaffStatus,
    StepName,
)
from domain.graph import GRAPHS, OWNER_ROLES, STATIC_OWNERS, initial_stage
from domain.models import (
    STEP_PAYLOADS,
    AddNote,
    AttachRecording,
    CaseChange,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    Reassign,
    Reschedule,
    StaffRef,
    SuggestAssistants,
    Suggestion,
)
from domain.policy import Policy
from domain.tracking import initial_search_attributes, static_details, static_summary

log = logging.getLogger("intake.api")

CREATOR_ROLES = (Role.consultant, Role.manager, Role.site_lead, Role.assistant, Role.designer)
REPORT_ROLES = (Role.manager, Role.director)

# Which sources each scenario can come from (SPEC §2).
SCENARIO_SOURCES: dict[Scenario, frozenset[Source]] = {
    Scenario.remote: frozenset({Source.marketing, Source.online}),
    Scenario.office_visit: frozenset({Source.marketing, Source.online}),
    Scenario.site_office: frozenset({Source.site_office}),
    Scenario.walk_in: frozenset({Source.walk_in}),
}
# Who can have received a client at a compound office (seed 情况三 a/b: site lead, on-duty designer or
# an assistant designer).
SITE_RECEIVERS = frozenset({Role.site_lead, Role.designer, Role.assistant})
# A live query right after the start: short, the answer falls back to the row.
QUERY_AFTER_START_SECONDS = 2.0

# The owner role of each step (the same in every scenario's graph); a correction's acknowledgement
# belongs to whoever was corrected, which only the case knows.
STEP_OWNER_ROLE: dict[StepName, Role] = {
    spec.step: OWNER_ROLES[spec.owner] for g in GRAPHS.values() for spec in g.steps if spec.owner in STATIC_OWNERS
}

DEFAULT_PERIOD = timedelta(days=30)
MAX_PERIOD = timedelta(days=400)


# --- creating a case -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The answer to a creation: 201 with the case, or a stored answer replayed for an Idempotency-Key."""

    status: int
    body: Any  # JSON
    replayed: bool = False


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
            "小区办公室的接待人员应为小区负责人、值班设计师或助理设计师",
            details={"field": "received_by"},
        )
    return staff


async def create_case(
    res: Resources, body: IntakeCreate, user: CurrentUser, idempotency_key: str | None = None
) -> Created:
    """Create a case for a new client and start its workflow; at most one open case per client phone."""
    ensure_role(user, *CREATOR_ROLES)
    if body.source not in SCENARIO_SOURCES[body.scenario]:
        allowed = "、".join(s.value for s in sorted(SCENARIO_SOURCES[body.scenario]))
        raise ApiError(
            422,
            "scenario_source_mismatch",
            f"情况 {body.scenario.value} 的来源应为 {allowed}，而不是 {body.source.value}",
        )
    _check_future(body.meeting_at, "meeting_at")
    if body.reception is not None and body.scenario != Scenario.walk_in:
        raise ApiError(
            422, "invalid_payload", "接待清单在建档时只用于自然客户（其他情况在「客户到店」步骤填写）",
            details={"field": "reception"},
        )

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
                reception=body.reception,
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
            raise await _duplicate(res, pool, body, user, idempotency_key, req_hash) from None
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
    return Created(201, body_json)


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
                static_details=static_details(inp),
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


async def _replay(res: Resources, pool: asyncpg.Pool, stored: asyncpg.Record, user: CurrentUser) -> Created:
    resp = stored["response"]
    if stored["status_code"] == 201 and isinstance(resp, dict) and resp.get("partial"):
        # The case was committed but its answer not yet stored (or storing it failed): rebuild it.
        try:
            client: Client | None = await res.client()
        except ApiError:
            client = None
        view = await _created_view(res, pool, client, int(resp["case_id"]), user)
        return Created(201, jsonable_encoder(view), replayed=True)
    return Created(stored["status_code"], resp, replayed=True)


async def _duplicate(
    res: Resources, pool: asyncpg.Pool, body: IntakeCreate, user: CurrentUser, key: str | None, req_hash: str
) -> ApiError:
    existing = await bounded(res, queries.open_case_for_phone(pool, body.client.phone))
    if existing is None:
        # The other case closed in between: the phone is free again, the client may simply retry.
        return ApiError(409, "duplicate_open_case", "该手机号刚有一个案例在处理中，请重试")
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
    return err


# --- reading a case ------------------------------------------------------------------------------


async def case_row(res: Resources, case_id: int) -> asyncpg.Record:
    """The case's projection row (404 case_not_found)."""
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    return row


async def get_case(
    res: Resources, case_id: int, *, fresh: bool = False, user: CurrentUser | None = None
) -> CaseView:
    """The case: stage, open steps (owner, due, overdue, escalation level), assignments, meetings, timeline."""
    pool = await res.pool()
    row = await case_row(res, case_id)
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
    contact = await shown_contact(res, user, [row], "GET /intakes/{case_id}") if user is not None else False
    return case_view(row, state, timeline(events, state), source, assignments=assignments, contact=contact)


async def case_messages(
    res: Resources, case_id: int, *, user: CurrentUser | None = None, channel: str = "sms"
) -> MessageList:
    """The SMS sent (or being sent) to the client of the case; or its staff notices (managers and the
    director see all of them, others only those sent to themselves)."""
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    everyone = user is None or user.role in (Role.manager, Role.director) or channel == "sms"
    mine = None if everyone or user is None else user.id
    rows = await bounded(res, queries.case_messages(pool, case_id, channel, mine))
    if channel != "sms":
        return MessageList(case_id=case_id, items=[MessageItem(**dict(r)) for r in rows])
    # The recipient of an SMS is the client's phone: full only for those who may see it (and recorded).
    contact = bool(rows) and user is not None and await shown_contact(
        res, user, [row], "GET /intakes/{case_id}/messages"
    )
    items = [
        MessageItem(**{**dict(r), "recipient": r["recipient"] if contact else mask_phone(r["recipient"])})
        for r in rows
    ]
    return MessageList(case_id=case_id, items=items)


# --- allocation (shared with the assignment steps) --------------------------------------------


def _case_policy(res: Resources, row: asyncpg.Record) -> Policy:
    # The policy the case started with (SPEC §4), not today's file.
    return Policy.model_validate(row["policy"]) if row["policy"] else res.policy()


def required_level(res: Resources, row: asyncpg.Record, level: Level | None = None) -> Level:
    """The designer level a case needs: as being agreed now, agreed at the callback, else from the budget."""
    return level or engine.required_level(state_from_row(row), _case_policy(res, row), row["budget"])


async def designer_ranking(
    res: Resources,
    pool: asyncpg.Pool,
    row: asyncpg.Record,
    *,
    include_ineligible: bool = False,
    level: Level | None = None,
    meeting_at: datetime | None = None,
) -> list[DesignerSuggestion]:
    """Designers for a case in rotation order (轮单) with their reasons, from the projection's state.

    `level` and `meeting_at` stand for what the manager is agreeing with the client during the callback.
    """
    state = state_from_row(row)
    policy = _case_policy(res, row)
    if meeting_at is None:
        meeting_at = row["meeting_at"]
        if state is not None and (m := state.meeting("meeting")) is not None:
            meeting_at = m.at
    ranked: list[DesignerSuggestion] = await bounded(
        res,
        AllocationActivities(pool).designer_suggestions(
            case_id=row["id"],
            scenario=Scenario(row["scenario"]),
            required_level=required_level(res, row, level),
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


async def designer_suggestions(
    res: Resources, user: CurrentUser, case_id: int, *, include_ineligible: bool = False,
    level: Level | None = None,
) -> SuggestionList:
    """Ranked eligible designers for the case (rotation 轮单), each with its reasons; managers only.

    Readable at any open stage, also while the callback is open (the level being agreed may be given).
    """
    ensure_role(user, Role.manager)
    pool = await res.pool()
    row = await case_row(res, case_id)
    level = required_level(res, row, level)
    ranked = await designer_ranking(res, pool, row, include_ineligible=include_ineligible, level=level)
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


async def first_suggestion(
    res: Resources, row: asyncpg.Record, step: StepName, payload: dict[str, Any] | None = None
) -> StaffRef | None:
    """The first of the ranked suggestions for an assignment step, as the manager sees them now.

    A callback that names the designer is ranked against what it agrees (level, meeting time).
    """
    payload = payload or {}
    callback_choice = step == StepName.callback and payload.get("designer_id") is not None
    if step not in (StepName.assign_designer, StepName.assign_assistant) and not callback_choice:
        return None
    pool = await res.pool()
    ranked: list[Any]
    try:
        if callback_choice:
            level = Level(payload["designer_level"]) if payload.get("designer_level") else None
            at = datetime.fromisoformat(payload["meeting_at"]) if payload.get("meeting_at") else None
            ranked = await designer_ranking(res, pool, row, level=level, meeting_at=at)
        else:
            ranked = await (designer_ranking(res, pool, row) if step == StepName.assign_designer
                            else assistant_ranking(res, pool, row["id"]))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - without suggestions the owner simply has to choose
        log.warning("suggestions for case %s unavailable: %r", row["id"], exc)
        return None
    eligible = [s for s in ranked if getattr(s, "eligible", True)]
    return eligible[0].staff if eligible else None


# --- actions -------------------------------------------------------------------------------------


async def staff_ref(res: Resources, staff_id: int, role: Role, field: str) -> StaffRef:
    """A named staff member must exist, be active (not on leave) and have the role (422 invalid_assignee)."""
    label = ROLE_LABELS[role]
    if not 1 <= staff_id <= MAX_ID:
        raise ApiError(422, "invalid_assignee", f"{label} {staff_id} 不存在", details={"field": field})
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).get(staff_id=staff_id))
    if staff is None:
        raise ApiError(422, "invalid_assignee", f"{label} {staff_id} 不存在", details={"field": field})
    if staff.role != role:
        raise ApiError(
            422, "invalid_assignee", f"{staff.name} 不是{label}（是{ROLE_LABELS[staff.role]}）", details={"field": field}
        )
    if staff.status != StaffStatus.active:
        raise ApiError(
            422, "invalid_assignee", f"{staff.name} 当前不在岗（{staff.status.value}）", details={"field": field}
        )
    return staff.ref()


def _update_id(user: CurrentUser, kind: str, key: str | None) -> str | None:
    return f"api:{user.id}:{kind}:{key}" if key else None


async def act(
    res: Resources, row: asyncpg.Record, update: Any, arg: BaseModel, update_id: str | None,
    user: CurrentUser | None = None,
) -> CaseView:
    """One update; then what it decided is written (projection, outbox, ledger) before the answer."""
    client = await res.client()
    change: CaseChange = await execute_update(
        client, case_id=row["id"], update=update, arg=arg, timeout=res.timeout, update_id=update_id
    )
    pool = await res.pool()
    state: CaseState = change.head
    try:
        async with pool.acquire(timeout=res.timeout) as conn:
            state = await bounded(res, write_change(conn, res.settings, change))
            events = await bounded(res, queries.case_events(conn, row["id"]))
            assignments = await bounded(res, queries.case_assignments(conn, row["id"]))
    except Exception as exc:  # noqa: BLE001 - the action is decided and durable: never turn it into an error
        # The workflow writes the same change within its grace period; answer from the decision.
        log.warning("case %s: change v%s not written by the API now: %r", row["id"], change.version, exc)
        events, assignments = [], []
        state = state.model_copy(update={"events": change.events})
    contact = False
    if user is not None:
        try:
            contact = await shown_contact(res, user, [row], "action")
        except Exception as exc:  # noqa: BLE001 - the action is done; unrecorded means not shown (masked)
            log.warning("case %s: phone read not recorded, answer masked: %r", row["id"], exc)
    return case_view(row, state, timeline(events, state), "workflow", assignments=assignments, contact=contact)


def step_owner_label(step: StepName) -> str:
    """Who completes a step, in Chinese."""
    owner = STEP_OWNER_ROLE.get(step)
    if owner == Role.designer:
        return "本案设计师"
    return ROLE_LABELS[owner] if owner else "负责人"


def ensure_step_role(user: CurrentUser, step: StepName) -> None:
    """403 wrong_role unless the caller has the step's owner role (before the payload is judged)."""
    owner = STEP_OWNER_ROLE.get(step)
    if owner is not None and user.role != owner:
        raise ApiError(
            403, "wrong_role", f"「{STEP_LABELS[step]}」由{step_owner_label(step)}完成",
            details={"required_role": owner.value},
        )


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"_+", name))


_BODY_MODELS: dict[StepName, type[RequestModel]] = {}


def step_body_model(step: StepName) -> type[RequestModel]:
    """The request body of a step: its payload model (STEP_PAYLOADS) plus notes, as a request model."""
    if step in _BODY_MODELS:
        return _BODY_MODELS[step]
    payload = STEP_PAYLOADS[step]
    bases: Any = (payload, RequestModel)
    model: type[RequestModel] = create_model(
        f"{_camel(step.value)}StepRequest",
        __base__=bases,
        __doc__=f"{STEP_LABELS[step]}：完成时填写的内容",
        notes=(str | None, Field(default=None, max_length=2000, description="备注")),
    )
    _BODY_MODELS[step] = model
    return model


async def complete_step(
    res: Resources,
    user: CurrentUser,
    case_id: int,
    step: StepName,
    body: BaseModel,
    idempotency_key: str | None = None,
) -> CaseView:
    """Complete an open step with its payload (the step's body model); its owner only."""
    ensure_step_role(user, step)
    row = await case_row(res, case_id)
    payload = body.model_dump(mode="json", exclude={"notes"})
    notes = getattr(body, "notes", None)
    staff: list[StaffRef] = []
    if step in (StepName.assign_designer, StepName.callback) and payload.get("designer_id") is not None:
        staff.append(await staff_ref(res, int(payload["designer_id"]), Role.designer, "designer_id"))
    elif step == StepName.assign_assistant and payload.get("assistant_id") is not None:
        staff.append(await staff_ref(res, int(payload["assistant_id"]), Role.assistant, "assistant_id"))
    first = await first_suggestion(res, row, step, payload)
    update_id = _update_id(user, f"step:{step.value}", idempotency_key)
    req = CompleteStep(
        actor=user.actor(), step=step, payload=payload, notes=notes, staff=staff,
        first_suggestion=first, request_id=update_id,
    )
    wf = intake_workflow()
    return await act(res, row, wf.complete_step, req, update_id, user)


async def reschedule(
    res: Resources, user: CurrentUser, case_id: int, body: RescheduleRequest, idempotency_key: str | None = None
) -> CaseView:
    """Move the first meeting or the measure; the manager or the case's designer or assistant."""
    row = await case_row(res, case_id)
    update_id = _update_id(user, "reschedule", idempotency_key)
    req = Reschedule(actor=user.actor(), target=body.target, at=body.at, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await act(res, row, wf.reschedule, req, update_id, user)


async def reassign(
    res: Resources, user: CurrentUser, case_id: int, body: ReassignRequest, idempotency_key: str | None = None
) -> CaseView:
    """Change the case's designer or assistant designer, with a reason; managers only."""
    ensure_role(user, Role.manager)
    row = await case_row(res, case_id)
    role = Role.designer if body.role == "designer" else Role.assistant
    ref = await staff_ref(res, body.staff_id, role, "staff_id")
    update_id = _update_id(user, "reassign", idempotency_key)
    req = Reassign(actor=user.actor(), role=body.role, staff=ref, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await act(res, row, wf.reassign, req, update_id, user)


async def close_case(
    res: Resources, user: CurrentUser, case_id: int, body: CloseRequest, idempotency_key: str | None = None
) -> CaseView:
    """Close the case: signed, lost (with a reason) or duplicate; managers only."""
    ensure_role(user, Role.manager)
    if body.outcome == Outcome.lost and not (body.reason and body.reason.strip()):
        raise ApiError(422, "reason_required", "流失请填写原因 reason", details={"field": "reason"})
    row = await case_row(res, case_id)
    update_id = _update_id(user, "close", idempotency_key)
    req = CloseCase(actor=user.actor(), outcome=body.outcome, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await act(res, row, wf.close, req, update_id, user)


async def add_note(
    res: Resources, user: CurrentUser, case_id: int, body: NoteRequest, idempotency_key: str | None = None
) -> CaseView:
    """Add a note to the case's timeline; managers, the director, the assistant lead and the case's team."""
    if not body.text.strip():
        raise ApiError(422, "invalid_payload", "备注不能为空", details={"field": "text"})
    row = await case_row(res, case_id)
    update_id = _update_id(user, "note", idempotency_key)
    req = AddNote(actor=user.actor(), text=body.text, request_id=update_id)
    wf = intake_workflow()
    return await act(res, row, wf.add_note, req, update_id, user)


# --- reports -------------------------------------------------------------------------------------


def report_period(frm: datetime | None, to: datetime | None, names: tuple[str, str]) -> tuple[datetime, datetime]:
    """The period of a report: default the last 30 days, at most 400 days (422 invalid_period)."""
    period_to = to or datetime.now(UTC)
    period_from = frm or (period_to - DEFAULT_PERIOD)
    if period_from >= period_to:
        raise ApiError(422, "invalid_period", f"{names[0]} 必须早于 {names[1]}")
    if period_to - period_from > MAX_PERIOD:
        raise ApiError(422, "invalid_period", f"统计区间最长 {MAX_PERIOD.days} 天")
    return period_from, period_to


async def sla_report(
    res: Resources,
    user: CurrentUser,
    *,
    group_by: Literal["none", "source", "manager", "designer"] = "none",
    period_from: datetime | None = None,
    period_to: datetime | None = None,
    source: Source | None = None,
    scenario: Scenario | None = None,
) -> SlaReport:
    """Per step: on-time share, median and p90 time to done, escalations; managers and the director."""
    ensure_role(user, *REPORT_ROLES)
    frm, to = report_period(period_from, period_to, ("created_from", "created_to"))
    pool = await res.pool()
    rows = await bounded(
        res,
        queries.sla_report(
            pool,
            period_from=frm,
            period_to=to,
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
    return SlaReport(period_from=frm, period_to=to, group_by=group_by, rows=out)


async def allocation_report(
    res: Resources, user: CurrentUser, *, period_from: datetime | None = None, period_to: datetime | None = None
) -> AllocationReport:
    """Per designer, from the allocation ledger: cases given, overrides of the suggestion, open cases."""
    ensure_role(user, *REPORT_ROLES)
    frm, to = report_period(period_from, period_to, ("from", "to"))
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
                lapses=r["lapses"],
                open_cases=r["open_cases"],
                last_assigned_at=r["last_assigned_at"],
            )
            for r in rows
        ],
    )


# --- recordings of first meetings (seed 二h) ------------------------------------------------------
# The rules of the JSON API (api/routers/recordings.py) and of the console's case page, once.

# Who may upload a recording; who may listen besides the case's own staff.
RECORDING_UPLOADERS = (Role.manager,)
RECORDING_LISTENERS = frozenset({Role.manager, Role.director})
# One read from the store at most this large; a range answer at most RANGE_CHUNKS of them.
RECORDING_CHUNK = 1024 * 1024
RANGE_CHUNKS = 8
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def recording_case(res: Resources, case_id: int) -> asyncpg.Record:
    """Who works the case, and whether it is open (404 case_not_found)."""
    pool = await res.pool()
    row = await bounded(
        res, pool.fetchrow("SELECT id, status, designer_id, assistant_id, received_by FROM cases WHERE id = $1", case_id)
    )
    if row is None:
        raise not_found_case(case_id)
    return row


def ensure_may_listen(user: CurrentUser, case: asyncpg.Record) -> None:
    """Only the case's staff (designer, assistant, who received the client), the manager and the director."""
    if user.role in RECORDING_LISTENERS:
        return
    if user.id in {case["designer_id"], case["assistant_id"], case["received_by"]}:
        return
    raise ApiError(403, "not_your_case", "只有本案人员、设计部经理和总经理可以听取录音")


def may_upload_recording(user: CurrentUser) -> bool:
    """Whether the person may upload a recording to a case (the manager)."""
    return user.role in RECORDING_UPLOADERS


async def upload_recording(res: Resources, user: CurrentUser, case_id: int, file: UploadFile) -> asyncpg.Record:
    """Attach the recorder's audio (mp3/m4a/wav/amr, by content) to an open case; its recordings row.

    403 wrong_role, 415 unsupported_audio, 413 recording_too_large, 404, 409 case_closed, 503.
    """
    ensure_role(user, *RECORDING_UPLOADERS)
    limit = res.settings.recordings_max_bytes
    head = await file.read(SNIFF_BYTES)
    content_type = sniff_audio(head)
    if content_type is None:
        raise ApiError(415, "unsupported_audio", "文件内容不是 mp3、m4a、wav 或 amr 录音", details={"field": "file"})
    # Size and checksum over the spooled upload, without holding it in memory.
    digest, size = hashlib.sha256(head), len(head)
    while chunk := await file.read(RECORDING_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "recording_too_large", f"录音超过大小上限 {limit // (1024 * 1024)} MB")
        digest.update(chunk)
    case = await recording_case(res, case_id)
    if case["status"] != "open":
        raise ApiError(409, "case_closed", "案件不在进行中，不能上传录音")
    store = res.recordings()
    key = f"case-{case_id}/{uuid.uuid4().hex}{AUDIO_TYPES[content_type]}"
    await file.seek(0)
    try:
        await store.put(key, file.file, content_type)
    except Exception as exc:
        log.warning("case %s: recording not stored: %r", case_id, exc)
        raise ApiError(503, "storage_unavailable", "录音存储暂时不可用，请稍后重试", headers={"Retry-After": "5"}) from exc
    pool = await res.pool()
    filename = (file.filename or "recording")[-200:]
    try:
        row = await bounded(res, pool.fetchrow(
            "INSERT INTO recordings (case_id, storage_key, filename, content_type, size, sha256, uploaded_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            case_id, key, filename, content_type, size, digest.hexdigest(), user.id,
        ))
        assert row is not None
        # The case's timeline shows it (the workflow records the number, type and size only).
        client = await res.client()
        change: CaseChange = await execute_update(
            client, case_id=case_id, update=intake_workflow().attach_recording,
            arg=AttachRecording(actor=user.actor(), recording_id=row["id"], content_type=content_type, size=size),
            timeout=res.timeout,
        )
    except BaseException:
        # Nothing half-done is left: no file without its row, no row the case does not know.
        await store.delete(key)
        await pool.execute("DELETE FROM recordings WHERE storage_key = $1", key)
        raise
    try:
        async with pool.acquire(timeout=res.timeout) as conn:
            await bounded(res, write_change(conn, res.settings, change))
    except Exception as exc:  # noqa: BLE001 - decided and durable; the workflow writes it within its grace
        log.warning("case %s: recording event not written by the API now: %r", case_id, exc)
    return row


async def list_recordings(res: Resources, user: CurrentUser, case_id: int) -> list[asyncpg.Record]:
    """The case's recordings, oldest first, with the uploader's name (uploaded_by_name); 403 for others."""
    case = await recording_case(res, case_id)
    ensure_may_listen(user, case)
    pool = await res.pool()
    rows: list[asyncpg.Record] = await bounded(res, pool.fetch(
        "SELECT r.*, s.name AS uploaded_by_name FROM recordings r LEFT JOIN staff s ON s.id = r.uploaded_by"
        " WHERE r.case_id = $1 ORDER BY r.id", case_id,
    ))
    return rows


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive of a single `bytes=` range, None for the whole file; ValueError when unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None  # a form we do not serve (several ranges, other units): the whole file, as RFC 9110 allows
    first, last = m.group(1), m.group(2)
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError
        return max(size - n, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError
    return start, end


async def play_recording(
    res: Resources, user: CurrentUser, case_id: int, recording_id: int, range_header: str | None
) -> Response:
    """A recording for its player: the whole file (200, streamed) or the requested bytes (206).

    403 not_your_case, 404 case_not_found / recording_not_found, 416 range_not_satisfiable, 503.
    """
    case = await recording_case(res, case_id)
    ensure_may_listen(user, case)
    if not 1 <= recording_id <= MAX_ID:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    pool = await res.pool()
    rec = await bounded(res, pool.fetchrow(
        "SELECT * FROM recordings WHERE id = $1 AND case_id = $2", recording_id, case_id
    ))
    if rec is None:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    store = res.recordings()
    size = int(rec["size"])
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600",
               "Content-Disposition": f"inline; filename=\"recording-{rec['id']}{AUDIO_TYPES[rec['content_type']]}\""}
    try:
        wanted = parse_range(range_header, size)
    except ValueError:
        raise ApiError(416, "range_not_satisfiable", "请求的范围超出录音长度",
                       headers={"Content-Range": f"bytes */{size}"}) from None
    try:
        if wanted is not None:
            start, end = wanted
            end = min(end, start + RECORDING_CHUNK * RANGE_CHUNKS - 1)  # bounded; the player asks for the rest
            data = await store.read(rec["storage_key"], start, end)
            return Response(data, status_code=206, media_type=rec["content_type"],
                            headers=headers | {"Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"})
        first = await store.read(rec["storage_key"], 0, min(RECORDING_CHUNK, size) - 1)
    except RecordingMissing:
        raise ApiError(404, "recording_not_found", "录音文件已不在存储中") from None

    async def rest() -> AsyncIterator[bytes]:
        yield first
        pos = len(first)
        while pos < size:
            chunk = await store.read(rec["storage_key"], pos, min(pos + RECORDING_CHUNK, size) - 1)
            if not chunk:
                return
            yield chunk
            pos += len(chunk)

    return StreamingResponse(rest(), media_type=rec["content_type"],
                             headers=headers | {"Content-Length": str(size)})
