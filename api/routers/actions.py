"""What staff do on a case: complete a step, reschedule, reassign, close, add a note.

The routes only read the request; the work (permissions, validation, the workflow update and the
write before the answer) is in :mod:`api.services`, shared with the staff console.
"""

from __future__ import annotations

import inspect
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from api import services
from api.deps import CaseStaff, CurrentStaff, CurrentUser, Resources, ResourcesDep
from api.errors import R401, R403, R404, R409, R422, R503, ApiError, not_found_case, responses
from api.routers.intakes import IdempotencyKey
from api.schemas import (
    MAX_ID,
    CaseView,
    CloseRequest,
    NoteRequest,
    ReassignRequest,
    RescheduleRequest,
    TransferRequest,
)
from api.services.access import CaseId, acting_case, visible_case
from domain.enums import STEP_LABELS, StepName
from domain.models import STEP_PAYLOADS

log = logging.getLogger("intake.api")

router = APIRouter(prefix="/intakes", tags=["actions"])


ACTION_ERRORS = responses(R401, R403, R404, R409, R422, R503)


# --- steps: one route per step, so /docs shows each step's own payload -----------------------------

_EXAMPLES: dict[StepName, dict[str, Any]] = {
    StepName.reception_review: {"report": "客户在阳光花园小区办公室咨询，三室两厅，想年底入住",
                                "corrections": "接待时先递名片，再介绍样板间", "notes": ""},
    StepName.callback: {
        "reached": True,
        "meeting_at": "2030-05-01T10:00:00+08:00",
        "meeting_kind": "measure",
        "designer_level": "senior",
        "designer_id": 12,
        "reason": "客户点名要这位设计师",
        "notes": "客户希望上午量房",
    },
    StepName.assign_designer: {"designer_id": 12, "reason": None},
    StepName.assign_assistant: {"assistant_id": 21},
    StepName.contact: {"meeting_at": "2030-05-01T10:00:00+08:00", "meeting_kind": "measure"},
    StepName.arrival: {"gum": True, "recorder": True, "greeted_at_door": True, "business_card": True, "water": True},
    StepName.first_meeting: {
        "true_needs": "两个孩子，需要儿童房和大储物空间",
        "measure_agreed": True,
        "measure_at": "2030-05-03T14:00:00+08:00",
        "visited_site": True,
        "visited_material_store": False,
        "material_store_reason": "客户赶时间，约定量房后再来",
        "seen_off": True,
    },
    StepName.acknowledge: {"note": "已记录，下次先问需求再讲案例"},
    StepName.measure: {"result": "done"},
    StepName.debrief: {
        "findings": "设计师介绍作品时间过长，客户需求追问不够",
        "designer_corrections": "先问需求，再讲案例",
        "assistant_corrections": "量房记录要拍照存档",
    },
    StepName.outcome: {"outcome": "signed"},
    StepName.lapse_review: {"decision": "extend", "reason": "客户出差，下周一见面", "until": "2030-05-06T10:00:00+08:00"},
}


def _add_step_route(step: StepName) -> None:
    body_model = services.step_body_model(step)
    who = services.step_owner_label(step)
    example = _EXAMPLES.get(step, {})

    async def owner_only(case_id: CaseId, user: CaseStaff, res: ResourcesDep) -> None:
        # A dependency, so a case the person may not see is 404 and a wrong role 403 before the body is
        # judged (422); the service asks the same again (the case from the request's cache).
        await services.open_for_step(res, user, case_id, step)

    async def complete(
        case_id: int,
        body: Any,
        user: CurrentUser,
        res: Resources,
        idempotency_key: str | None = None,
    ) -> CaseView:
        return await services.complete_step(res, user, case_id, step, body, idempotency_key)

    # The body type differs per step, so the signature FastAPI reads is built here with real types
    # (string annotations could not name the per-step model).
    examples = {"example": {"summary": STEP_LABELS[step], "value": example}}
    body_type = Annotated[body_model, Body(openapi_examples=examples)]  # type: ignore[valid-type]
    complete.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("case_id", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=CaseId),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body_type),
            inspect.Parameter("user", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=CaseStaff),
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


@router.post("/{case_id}/steps/{step}", include_in_schema=False, dependencies=[Depends(visible_case)])
async def unknown_step(case_id: int, step: str, user: CurrentStaff) -> None:
    """Any other step name: 404 unknown_step (the known steps have their own routes above)."""
    if not 1 <= case_id <= MAX_ID:
        raise not_found_case(case_id)
    known = "、".join(s.value for s in STEP_PAYLOADS)
    raise ApiError(404, "unknown_step", f"没有这个步骤：{step[:40]}（可用：{known}）")


@router.post(
    "/{case_id}/reschedule",
    dependencies=[Depends(acting_case)],
    response_model=CaseView,
    summary="改期：见面或量房",
    responses=ACTION_ERRORS,
)
async def reschedule(
    case_id: CaseId,
    body: RescheduleRequest,
    user: CaseStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Move the first meeting or the measure; the manager or the case's designer or assistant."""
    return await services.reschedule(res, user, case_id, body, idempotency_key)



@router.post(
    "/{case_id}/reassign",
    dependencies=[Depends(acting_case)],
    response_model=CaseView,
    summary="更换设计师或助理（经理）",
    responses=ACTION_ERRORS,
)
async def reassign(
    case_id: CaseId,
    body: ReassignRequest,
    user: CaseStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Change the case's designer or assistant designer, with a reason; managers only."""
    return await services.reassign(res, user, case_id, body, idempotency_key)



@router.post(
    "/{case_id}/transfer",
    dependencies=[Depends(acting_case)],
    response_model=CaseView,
    summary="转分公司（总经理、区域经理）",
    responses=ACTION_ERRORS,
)
async def transfer(
    case_id: CaseId,
    body: TransferRequest,
    user: CaseStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Move the case to another branch (the client moved), with a reason: the transfers ledger records it and
    its open steps go to the new branch's manager, designer and assistant; the director or a regional manager."""
    return await services.transfer_case(res, user, case_id, body, idempotency_key)


@router.post(
    "/{case_id}/close",
    dependencies=[Depends(acting_case)],
    response_model=CaseView,
    summary="结案（经理）",
    responses=ACTION_ERRORS,
)
async def close(
    case_id: CaseId,
    body: CloseRequest,
    user: CaseStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Close the case: signed, lost (with a reason) or duplicate; managers only."""
    return await services.close_case(res, user, case_id, body, idempotency_key)



@router.post(
    "/{case_id}/notes",
    dependencies=[Depends(acting_case)],
    response_model=CaseView,
    summary="添加备注",
    responses=ACTION_ERRORS,
)
async def add_note(
    case_id: CaseId,
    body: NoteRequest,
    user: CaseStaff,
    res: ResourcesDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Add a note to the case's timeline; managers, the director, the assistant lead and the case's team."""
    return await services.add_note(res, user, case_id, body, idempotency_key)
