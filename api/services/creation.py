"""Creating a case (POST /intakes, the console's new-client form): the row, then the workflow.

An Idempotency-Key makes a retry safe: the first answer is kept and replayed (api/idempotency.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi.encoders import jsonable_encoder
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

import request_context as context
from api import idempotency
from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError, not_found_case, unavailable
from api.schemas import CaseView, IntakeCreate
from api.services.access import record_contact, redact, viewer
from api.services.policy import current_policy
from api.temporal import bounded_temporal, intake_workflow, query_state
from api.views import case_view, state_from_row, timeline
from domain import duplicates, engine, permissions
from domain.constants import workflow_id
from domain.enums import Outcome, Role, Scenario, Source, StaffStatus
from domain.models import ENGINE_VERSION, CaseState, IntakeInput, StaffRef
from domain.permissions import CaseFacts
from domain.tracking import initial_search_attributes, static_details, static_summary
from store import cases, queries
from store.branches import Branch, BranchRepository
from store.staff import Staff, StaffRepository
from store.writes import projection_writer

log = logging.getLogger("intake.api")

# Which sources each scenario can come from (SPEC §2).
SCENARIO_SOURCES: dict[Scenario, frozenset[Source]] = {
    Scenario.remote: frozenset({Source.marketing, Source.online}),
    Scenario.office_visit: frozenset({Source.marketing, Source.online}),
    Scenario.site_office: frozenset({Source.site_office}),
    Scenario.walk_in: frozenset({Source.walk_in}),
}
# A live query right after the start: short, the answer falls back to the row.
QUERY_AFTER_START_SECONDS = 2.0


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
        return user.staff if permissions.receives_by_default(user, body.scenario) else None
    staff = await repo.get(staff_id=body.received_by)
    if staff is None or staff.status != StaffStatus.active:
        raise ApiError(
            422, "invalid_assignee", f"接待人员 {body.received_by} 不存在或不在岗", details={"field": "received_by"}
        )
    if not permissions.may_receive(staff.role, body.scenario):
        raise ApiError(
            422,
            "invalid_assignee",
            "小区办公室的接待人员应为小区负责人、值班设计师或助理设计师",
            details={"field": "received_by"},
        )
    return staff


async def _case_branch(
    res: Resources, pool: asyncpg.Pool, body: IntakeCreate, user: CurrentUser, received: Staff | None
) -> Branch:
    """The branch a new case belongs to (domain.permissions.case_branch): chosen, else the receiver's, else
    the creator's; within the creator's reach (422 branch_not_allowed), an active branch (422 invalid_branch),
    and the receiver works in it (422 invalid_assignee)."""
    branch_id = permissions.case_branch(chosen=body.branch_id, receiver_home=received.branch_id if received else None,
                                        creator_home=user.staff.branch_id)
    branch = await bounded(res, BranchRepository(pool).get(branch_id))
    if branch is None or branch.status != "active":
        raise ApiError(422, "invalid_branch", f"没有这个分公司：{branch_id}", details={"field": "branch_id"})
    refusal = permissions.may_create_in(user, branch.id)
    if refusal is not None:  # a branch named in the body: a bad value (422), not a forbidden route
        raise ApiError(422, refusal.code, refusal.message, details=refusal.details)
    if received is not None and not permissions.serves_branch(received.branch_id, received.extra_branches, branch.id):
        raise ApiError(422, "invalid_assignee", f"接待人员 {received.name} 不属于{branch.name}",
                       details={"field": "received_by"})
    return branch


async def create_case(
    res: Resources, body: IntakeCreate, user: CurrentUser, idempotency_key: str | None = None
) -> Created:
    """Create a case for a new client and start its workflow; at most one open case per client phone."""
    refuse(permissions.may_create(user))
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

    if body.site_musts is not None and body.scenario != Scenario.site_office:
        raise ApiError(
            422, "invalid_payload", "接待四必须只用于小区办公室接待的客户（情况三）", details={"field": "site_musts"},
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
    branch = await _case_branch(res, pool, body, user, received)
    # The case's people come from its branch: its manager (the creator, when a manager of it), its director
    # (one of the branch's own, else the chain's).
    manager = (user.staff if permissions.manages_new_case(user, home=user.staff.branch_id, branch=branch.id)
               else await bounded(res, repo.first_active(role=Role.manager, branch_id=branch.id)))
    director = (await bounded(res, repo.first_active(role=Role.director, branch_id=branch.id))
                or await bounded(res, repo.first_active(role=Role.director)))
    # The newest saved version of the policy of the case's branch, else the chain's (PostgreSQL), else the
    # policy file; the case keeps its copy.
    policy, policy_version = await current_policy(res, branch.id)
    now = datetime.now(UTC)
    house = duplicates.house_key(body.client.compound, body.client.address)
    try:
        earlier = await _earlier_case(res, pool, body, user, house, idempotency_key, req_hash)
    except ApiError as exc:
        # A concurrent request with the same key may have created this very case since the lookup above:
        # its answer is this request's answer.
        if exc.code != "duplicate_open_case" or not idempotency_key:
            raise
        stored = await bounded(
            res, idempotency.lookup(pool, staff_id=user.id, key=idempotency_key, req_hash=req_hash)
        )
        if stored is None or stored["status_code"] != 201:
            raise
        return await _replay(res, pool, stored, user)

    def ref(s: Staff | None) -> StaffRef | None:
        return s.ref() if s else None

    case_id: int | None = None
    try:
        # The row first, as `starting`, with everything the workflow will be started with: a crash
        # after this commit leaves a row the reconciler completes, never a workflow without its row.
        async with pool.acquire(timeout=res.timeout) as conn, conn.transaction():
            if idempotency_key:
                await idempotency.reserve(conn, staff_id=user.id, key=idempotency_key, req_hash=req_hash,
                                          timeout=res.timeout)
            case_id = await cases.next_case_id(conn, timeout=res.timeout)
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
                site_musts=body.site_musts,
                returning=duplicates.reason(earlier) if earlier else None,
                policy=policy,
                engine_version=ENGINE_VERSION,  # the rules a new case runs by (kept for its whole life)
                branch_id=branch.id,
                branch=branch.code,
            )
            opening = engine.start(inp)
            await cases.insert_starting(conn, inp, client=c, notes=body.notes, timeout=res.timeout,
                                        policy_version=policy_version, house_key=house,
                                        previous_case_id=earlier.case_id if earlier else None,
                                        returning_reason=inp.returning)
            # The opening (steps, timeline, the manager's "call back now" notice) in the same commit;
            # the outbox holds messages of a `starting` case until its workflow runs.
            await projection_writer(res.settings).apply(conn, opening.change, confirm=False)
            if idempotency_key:
                # Final within this transaction: the key commits with its case or not at all. Only the
                # case number is kept (no client data): a replay rebuilds the answer for its reader.
                await idempotency.answer(conn, staff_id=user.id, key=idempotency_key, status_code=201,
                                         body={"case_id": case_id}, timeout=res.timeout)
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
    view = await _created_view(res, pool, None, case_id, user, opening.state)
    body_json = jsonable_encoder(view)
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
                await bounded(res, cases.undo_starting(pool, inp.case_id, staff_id=staff_id, key=idempotency_key))
            except ApiError:
                log.warning("case %s stays starting: the reconciler will start it", inp.case_id)
        raise
    try:
        await bounded(res, cases.mark_open(pool, inp.case_id))
    except ApiError:
        # The workflow runs; its own first write (or the reconciler) marks the row open.
        log.warning("case %s started; marking it open is left to the workflow", inp.case_id)


async def _created_view(
    res: Resources, pool: asyncpg.Pool, client: Client | None, case_id: int, user: CurrentUser,
    opening: CaseState | None = None,
) -> CaseView:
    """The new case as its creator sees it (the creator typed the phone: shown in full, and recorded)."""
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    contact = permissions.may_see_contact(user, CaseFacts.of_row(row))
    if contact:
        await record_contact(res, user, [case_id], "POST /intakes")
    state = opening
    if state is None and client is not None:
        state = await query_state(client, case_id=case_id, timeout=min(res.timeout, QUERY_AFTER_START_SECONDS))
    if state is not None:
        view = case_view(row, state, timeline([], state), "workflow", contact=contact)
    else:
        projected = state_from_row(row)
        view = case_view(row, projected, [], "projection" if projected else "created", contact=contact)
    return view if contact else redact(view)


async def _replay(res: Resources, pool: asyncpg.Pool, stored: asyncpg.Record, user: CurrentUser) -> Created:
    resp = stored["response"]
    if stored["status_code"] == 201 and isinstance(resp, dict) and resp.get("case_id"):
        # Answers are kept without client data: rebuilt from the case for whoever asks again.
        try:
            client: Client | None = await res.client()
        except ApiError:
            client = None
        view = await _created_view(res, pool, client, int(resp["case_id"]), user)
        return Created(201, jsonable_encoder(view), replayed=True)
    return Created(stored["status_code"], resp, replayed=True)


async def _earlier_case(
    res: Resources, pool: asyncpg.Pool, body: IntakeCreate, user: CurrentUser, house: str | None,
    key: str | None, req_hash: str,
) -> duplicates.Match | None:
    """查重: an open case of the same client or house refuses the lead (409, 撞单); a closed one is the
    history the new case is linked to (its designer suggested first)."""
    phones = [body.client.phone, *([body.client.second_phone] if body.client.second_phone else [])]
    rows = await bounded(res, queries.matching_cases(pool, phones=phones, house_key=house, viewer=viewer(user)))
    for r in rows:
        if r["status"] in ("open", "starting"):
            raise await _refused(res, pool, user, key, req_hash, r["id"], r["visible"], r["matched_by"])
    return duplicates.earlier([
        duplicates.Match(case_id=r["id"], open=False, by=r["matched_by"],
                         outcome=Outcome(r["outcome"]) if r["outcome"] else None,
                         designer_id=r["designer_id"], designer_name=r["designer_name"])
        for r in rows
    ])


async def _duplicate(
    res: Resources, pool: asyncpg.Pool, body: IntakeCreate, user: CurrentUser, key: str | None, req_hash: str
) -> ApiError:
    existing = await bounded(res, queries.open_case_for_phone(pool, body.client.phone, viewer(user)))
    if existing is None:
        # The other case closed in between: the phone is free again, the client may simply retry.
        return ApiError(409, "duplicate_open_case", "该手机号刚有一个案例在处理中，请重试")
    case_id, visible = existing
    return await _refused(res, pool, user, key, req_hash, case_id, visible, "phone")


async def _refused(
    res: Resources, pool: asyncpg.Pool, user: CurrentUser, key: str | None, req_hash: str, case_id: int,
    visible: bool, by: str,
) -> ApiError:
    """409 duplicate_open_case for an open case of the same client or house (kept for an Idempotency-Key)."""
    what = duplicates.BY_LABELS.get(by, "手机号")
    if visible:
        err = ApiError(409, "duplicate_open_case", f"该{what}已有未结案的案例 #{case_id}，请在该案例中继续跟进",
                       case_id=case_id, matched_by=by)
    else:
        # Not theirs to see: that the client is being served, not by whom or where.
        err = ApiError(409, "duplicate_open_case", "该客户已有未结案的案例，正由设计部跟进；如有新情况请告知设计部经理")
    if key:
        await bounded(
            res,
            idempotency.store(pool, staff_id=user.id, key=key, req_hash=req_hash, status_code=409, body=err.body()),
        )
    return err
