"""What staff do on a case: complete a step, reschedule, reassign, close, add a note.

Each action is one workflow update (typed reference, never a string name); its validator decides
whether the step is open and whether the caller owns it, and its rejection becomes 409/403/422 (see
api.errors.workflow_rejection). The API checks beforehand only what it alone knows: the caller's
role for the step, that the case exists, that named staff exist, are active and have the right role.

An ``Idempotency-Key`` header makes a retry safe: it becomes the Temporal update id, so a repeated
request returns the first one's result instead of acting twice.
"""

from __future__ import annotations

import inspect
import logging
import re
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field, create_model

from activities.staff import StaffRepository
from api import queries
from api.deps import CurrentStaff, CurrentUser, Resources, ResourcesDep, bounded, require_roles, shown_contact
from api.errors import R401, R403, R404, R409, R422, R503, ApiError, not_found_case, responses
from api.routers.intakes import CaseId, IdempotencyKey
from api.schemas import (
    MAX_ID,
    CaseView,
    CloseRequest,
    NoteRequest,
    ReassignRequest,
    RequestModel,
    RescheduleRequest,
)
from api.temporal import execute_update, intake_workflow
from api.views import case_view, timeline
from api.writes import write_change
from domain.enums import ROLE_LABELS, STEP_LABELS, Outcome, Role, StaffStatus, StepName
from domain.graph import GRAPHS, OWNER_ROLES
from domain.models import (
    STEP_PAYLOADS,
    AddNote,
    CaseChange,
    CaseState,
    CloseCase,
    CompleteStep,
    Reassign,
    Reschedule,
    StaffRef,
)

log = logging.getLogger("intake.api")

router = APIRouter(prefix="/intakes", tags=["actions"])

Manager = Annotated[CurrentUser, Depends(require_roles(Role.manager))]

# The owner role of each step (the same in every scenario's graph).
STEP_OWNER_ROLE: dict[StepName, Role] = {
    spec.step: OWNER_ROLES[spec.owner] for g in GRAPHS.values() for spec in g.steps
}

ACTION_ERRORS = responses(R401, R403, R404, R409, R422, R503)


async def _case_row(res: Resources, case_id: int) -> asyncpg.Record:
    pool = await res.pool()
    row = await bounded(res, queries.case_row(pool, case_id))
    if row is None:
        raise not_found_case(case_id)
    return row


async def _staff_ref(res: Resources, staff_id: int, role: Role, field: str) -> StaffRef:
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


async def _first_suggestion(res: Resources, row: asyncpg.Record, step: StepName) -> StaffRef | None:
    """The first of the ranked suggestions for an assignment step, as the manager sees them now."""
    if step not in (StepName.assign_designer, StepName.assign_assistant):
        return None
    from api.routers.intakes import assistant_ranking, designer_ranking

    pool = await res.pool()
    try:
        ranked = await (designer_ranking(res, pool, row) if step == StepName.assign_designer
                        else assistant_ranking(res, pool, row["id"]))
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - without suggestions the owner simply has to choose
        log.warning("suggestions for case %s unavailable: %r", row["id"], exc)
        return None
    eligible = [s for s in ranked if getattr(s, "eligible", True)]
    return eligible[0].staff if eligible else None


def _update_id(user: CurrentUser, kind: str, key: str | None) -> str | None:
    return f"api:{user.id}:{kind}:{key}" if key else None


async def _act(
    res: Resources, row: asyncpg.Record, update: Any, arg: BaseModel, update_id: str | None, user: CurrentUser
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
    try:
        contact = await shown_contact(res, user, [row], "action")
    except Exception as exc:  # noqa: BLE001 - the action is done; unrecorded means not shown (masked)
        log.warning("case %s: phone read not recorded, answer masked: %r", row["id"], exc)
        contact = False
    return case_view(row, state, timeline(events, state), "workflow", assignments=assignments, contact=contact)


# --- steps: one route per step, so /docs shows each step's own payload -----------------------------

_EXAMPLES: dict[StepName, dict[str, Any]] = {
    StepName.reception_review: {"report": "客户在阳光花园小区办公室咨询，三室两厅，想年底入住", "notes": ""},
    StepName.callback: {
        "reached": True,
        "meeting_at": "2030-05-01T10:00:00+08:00",
        "meeting_kind": "measure",
        "designer_level": "senior",
        "notes": "客户希望上午量房",
    },
    StepName.assign_designer: {"designer_id": 12, "reason": None},
    StepName.assign_assistant: {"assistant_id": 21},
    StepName.contact: {"meeting_at": "2030-05-01T10:00:00+08:00", "meeting_kind": "measure"},
    StepName.arrival: {},
    StepName.first_meeting: {
        "true_needs": "两个孩子，需要儿童房和大储物空间",
        "measure_at": "2030-05-03T14:00:00+08:00",
        "visited_site": True,
        "visited_material_store": True,
    },
    StepName.measure: {"result": "done"},
    StepName.debrief: {
        "findings": "设计师介绍作品时间过长，客户需求追问不够",
        "designer_corrections": "先问需求，再讲案例",
        "assistant_corrections": "量房记录要拍照存档",
    },
    StepName.outcome: {"outcome": "signed"},
}


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"_+", name))


def _step_body_model(step: StepName) -> type[RequestModel]:
    payload = STEP_PAYLOADS[step]
    bases: Any = (payload, RequestModel)
    model: type[RequestModel] = create_model(
        f"{_camel(step.value)}StepRequest",
        __base__=bases,
        __doc__=f"{STEP_LABELS[step]}：完成时填写的内容",
        notes=(str | None, Field(default=None, max_length=2000, description="备注")),
    )
    return model


def _add_step_route(step: StepName) -> None:
    body_model = _step_body_model(step)
    owner = STEP_OWNER_ROLE.get(step)
    who = ROLE_LABELS[owner] if owner else "负责人"
    if owner == Role.designer:
        who = "本案设计师"
    example = _EXAMPLES.get(step, {})

    async def owner_only(user: CurrentStaff) -> None:
        # A dependency, so a wrong role is answered (403) before the body is judged (422).
        if owner is not None and user.role != owner:
            raise ApiError(403, "wrong_role", f"「{STEP_LABELS[step]}」由{who}完成", details={"required_role": owner.value})

    async def complete(
        case_id: int,
        body: Any,
        user: CurrentUser,
        res: Resources,
        idempotency_key: str | None = None,
    ) -> CaseView:
        row = await _case_row(res, case_id)
        payload = body.model_dump(mode="json", exclude={"notes"})
        staff: list[StaffRef] = []
        if step == StepName.assign_designer and payload.get("designer_id") is not None:
            staff.append(await _staff_ref(res, int(payload["designer_id"]), Role.designer, "designer_id"))
        elif step == StepName.assign_assistant and payload.get("assistant_id") is not None:
            staff.append(await _staff_ref(res, int(payload["assistant_id"]), Role.assistant, "assistant_id"))
        first = await _first_suggestion(res, row, step)
        update_id = _update_id(user, f"step:{step.value}", idempotency_key)
        req = CompleteStep(
            actor=user.actor(), step=step, payload=payload, notes=body.notes, staff=staff,
            first_suggestion=first, request_id=update_id,
        )
        wf = intake_workflow()
        return await _act(res, row, wf.complete_step, req, update_id, user)

    # The body type differs per step, so the signature FastAPI reads is built here with real types
    # (string annotations could not name the per-step model).
    examples = {"example": {"summary": STEP_LABELS[step], "value": example}}
    body_type = Annotated[body_model, Body(openapi_examples=examples)]  # type: ignore[valid-type]
    complete.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("case_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=CaseId),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body_type),
            inspect.Parameter("user", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=CurrentStaff),
            inspect.Parameter("res", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ResourcesDep),
            inspect.Parameter(
                "idempotency_key", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=IdempotencyKey
            ),
        ],
        return_annotation=CaseView,
    )
    complete.__doc__ = f"Complete the step {step.value} ({STEP_LABELS[step]}); {who} only; 200 with the case."
    router.add_api_route(
        f"/{{case_id}}/steps/{step.value}",
        complete,
        methods=["POST"],
        response_model=CaseView,
        summary=f"完成步骤：{STEP_LABELS[step]}（{who}）",
        description=(
            f"完成「{STEP_LABELS[step]}」并返回案例的新状态。由{who}完成。\n\n"
            "步骤未开放 → 409 step_not_open；不是你的案例 → 403 not_your_case；内容不合格 → 422。"
        ),
        responses=ACTION_ERRORS,
        dependencies=[Depends(owner_only)],
        operation_id=f"complete_step_{step.value}",
        name=f"complete_step_{step.value}",
    )


for _step in StepName:
    if _step in STEP_PAYLOADS:
        _add_step_route(_step)


@router.post("/{case_id}/steps/{step}", include_in_schema=False)
async def unknown_step(case_id: int, step: str, user: CurrentStaff) -> None:
    """Any other step name: 404 unknown_step (the known steps have their own routes above)."""
    if not 1 <= case_id <= MAX_ID:
        raise not_found_case(case_id)
    known = "、".join(s.value for s in STEP_PAYLOADS)
    raise ApiError(404, "unknown_step", f"没有这个步骤：{step[:40]}（可用：{known}）")


@router.post(
    "/{case_id}/reschedule",
    response_model=CaseView,
    summary="改期：见面或量房",
    responses=ACTION_ERRORS,
)
async def reschedule(
    case_id: CaseId,
    body: RescheduleRequest,
    user: CurrentStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Move the first meeting or the measure; the manager or the case's designer or assistant."""
    row = await _case_row(res, case_id)
    update_id = _update_id(user, "reschedule", idempotency_key)
    req = Reschedule(actor=user.actor(), target=body.target, at=body.at, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await _act(res, row, wf.reschedule, req, update_id, user)


@router.post(
    "/{case_id}/reassign",
    response_model=CaseView,
    summary="更换设计师或助理（经理）",
    responses=ACTION_ERRORS,
)
async def reassign(
    case_id: CaseId,
    body: ReassignRequest,
    user: Manager,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Change the case's designer or assistant designer, with a reason; managers only."""
    row = await _case_row(res, case_id)
    role = Role.designer if body.role == "designer" else Role.assistant
    ref = await _staff_ref(res, body.staff_id, role, "staff_id")
    update_id = _update_id(user, "reassign", idempotency_key)
    req = Reassign(actor=user.actor(), role=body.role, staff=ref, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await _act(res, row, wf.reassign, req, update_id, user)


@router.post(
    "/{case_id}/close",
    response_model=CaseView,
    summary="结案（经理）",
    responses=ACTION_ERRORS,
)
async def close(
    case_id: CaseId,
    body: CloseRequest,
    user: Manager,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Close the case: signed, lost (with a reason) or duplicate; managers only."""
    if body.outcome == Outcome.lost and not (body.reason and body.reason.strip()):
        raise ApiError(422, "reason_required", "流失请填写原因 reason", details={"field": "reason"})
    row = await _case_row(res, case_id)
    update_id = _update_id(user, "close", idempotency_key)
    req = CloseCase(actor=user.actor(), outcome=body.outcome, reason=body.reason, request_id=update_id)
    wf = intake_workflow()
    return await _act(res, row, wf.close, req, update_id, user)


@router.post(
    "/{case_id}/notes",
    response_model=CaseView,
    summary="添加备注",
    responses=ACTION_ERRORS,
)
async def add_note(
    case_id: CaseId,
    body: NoteRequest,
    user: CurrentStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Add a note to the case's timeline; managers, the director, the assistant lead and the case's team."""
    if not body.text.strip():
        raise ApiError(422, "invalid_payload", "备注不能为空", details={"field": "text"})
    row = await _case_row(res, case_id)
    update_id = _update_id(user, "note", idempotency_key)
    req = AddNote(actor=user.actor(), text=body.text, request_id=update_id)
    wf = intake_workflow()
    return await _act(res, row, wf.add_note, req, update_id, user)

