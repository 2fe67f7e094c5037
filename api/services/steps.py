"""Acting on a case: completing steps, rescheduling, reassigning, closing, notes.

Each action is one workflow update (typed reference, never a string name). Before asking Temporal the
API checks, with domain/permissions.py, that the person may see the case (404) and may take the
action (403); the workflow's validator asks the same module again, so the two can never disagree.
What the update decided is written to PostgreSQL before the answer (store/writes.py).

An Idempotency-Key makes a retry safe: it becomes the Temporal update id, so a repeated request
returns the first one's result instead of acting twice.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pydantic import BaseModel, Field, create_model

import request_context as context
from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.schemas import (
    MAX_ID,
    CaseView,
    CloseRequest,
    NoteRequest,
    ReassignRequest,
    RequestModel,
    RescheduleRequest,
)
from api.services.access import CaseAccess, actor_on, open_case, open_case_for
from api.services.cases import first_suggestion, shown
from api.temporal import execute_update, intake_workflow
from api.views import case_view, timeline
from domain import permissions
from domain.enums import ROLE_LABELS, STEP_LABELS, Role, StaffStatus, StepName
from domain.graph import GRAPHS, OWNER_ROLES, STATIC_OWNERS
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
from domain.permissions import Action
from store.staff import StaffRepository
from store.writes import write_change

log = logging.getLogger("intake.api")

# The owner role of each step (the same in every scenario's graph); a correction's acknowledgement
# belongs to whoever was corrected, which only the case knows.
STEP_OWNER_ROLE: dict[StepName, Role] = {
    spec.step: OWNER_ROLES[spec.owner] for g in GRAPHS.values() for spec in g.steps if spec.owner in STATIC_OWNERS
}
# Which staff role each reassignable position takes.
MEMBER_ROLES: dict[str, Role] = {"designer": Role.designer, "assistant": Role.assistant}


async def staff_ref(res: Resources, staff_id: int, role: Role, field: str, branch_id: int | None = None) -> StaffRef:
    """A named staff member must exist, be active (not on leave), have the role and, given the case's branch,
    work in it (422 invalid_assignee)."""
    label = ROLE_LABELS[role]
    if not 1 <= staff_id <= MAX_ID:
        raise ApiError(422, "invalid_assignee", f"{label} {staff_id} 不存在", details={"field": field})
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).get(staff_id=staff_id))
    if staff is None:
        raise ApiError(422, "invalid_assignee", f"{label} {staff_id} 不存在", details={"field": field})
    if not permissions.fits_position(staff.role, role):
        raise ApiError(
            422, "invalid_assignee", f"{staff.name} 不是{label}（是{ROLE_LABELS[staff.role]}）", details={"field": field}
        )
    if staff.status != StaffStatus.active:
        raise ApiError(
            422, "invalid_assignee", f"{staff.name} 当前不在岗（{staff.status.value}）", details={"field": field}
        )
    if branch_id is not None and not permissions.serves_branch(staff.branch_id, staff.extra_branches, branch_id):
        raise ApiError(422, "invalid_assignee", f"{staff.name} 不属于本案的分公司", details={"field": field})
    return staff.ref()


def _update_id(user: CurrentUser, kind: str, key: str | None) -> str | None:
    return f"api:{user.id}:{kind}:{key}" if key else None


async def act(
    res: Resources, access: CaseAccess, update: Any, arg: BaseModel, update_id: str | None, user: CurrentUser
) -> CaseView:
    """One update; then what it decided is written (projection, outbox, ledger) before the answer."""
    client = await res.client()
    case_id = access.case_id
    change: CaseChange = await execute_update(
        client, case_id=case_id, update=update, arg=arg, timeout=res.timeout, update_id=update_id
    )
    pool = await res.pool()
    state: CaseState = change.head
    info = context.current.get()
    # One statement writes the change, records the full phone the answer shows (SPEC §12) and brings
    # back the timeline and assignments the answer needs (store/writes.py, store/projection.py).
    route = "action"
    extras: dict[str, Any] = {"known": access.row, "answer": True}
    if access.contact:
        extras["phone_read"] = {"staff_id": user.id, "route": route, "request_id": context.request_id()}
    if info is not None:
        info.writing[case_id] = extras
    recorded = False
    try:
        async with pool.acquire(timeout=res.timeout) as conn:
            written = await bounded(res, write_change(conn, res.settings, change))
        state = written.state
        events, assignments = written.events or [], written.assignments or []
        recorded = info is not None and "phone_read" in extras
    except Exception as exc:  # noqa: BLE001 - the action is decided and durable: never turn it into an error
        # The workflow writes the same change within its grace period; answer from the decision.
        log.warning("case %s: change v%s not written by the API now: %r", case_id, change.version, exc)
        events, assignments = [], []
        state = state.model_copy(update={"events": change.events})
    finally:
        if info is not None:
            info.writing.pop(case_id, None)
    view = case_view(access.row, state, timeline(events, state), "workflow", assignments=assignments,
                     contact=access.contact)
    if recorded:
        return view  # the full phone it shows was recorded with the write
    try:
        return await shown(res, user, access, view, route)
    except Exception as exc:  # noqa: BLE001 - the action is done; unrecorded means not shown (masked)
        log.warning("case %s: phone read not recorded, answer masked: %r", case_id, exc)
        return await shown(res, user, CaseAccess(access.row, access.facts, contact=False), view, route)


def step_owner_label(step: StepName) -> str:
    """Who completes a step, in Chinese."""
    owner = STEP_OWNER_ROLE.get(step)
    if owner == Role.designer:
        return "本案设计师"
    return ROLE_LABELS[owner] if owner else "负责人"


async def open_for_step(res: Resources, user: CurrentUser, case_id: int, step: StepName) -> CaseAccess:
    """The case (404 if the caller may not see it) when the caller may try the step (403 otherwise)."""
    access = await open_case(res, user, case_id)
    refuse(permissions.may_try_step(user, step, access.facts, owner_role=STEP_OWNER_ROLE.get(step)))
    return access


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
    access = await open_for_step(res, user, case_id, step)
    payload = body.model_dump(mode="json", exclude={"notes"})
    notes = getattr(body, "notes", None)
    staff: list[StaffRef] = []
    if step in (StepName.assign_designer, StepName.callback) and payload.get("designer_id") is not None:
        staff.append(await staff_ref(res, int(payload["designer_id"]), Role.designer, "designer_id",
                                     access.row["branch_id"]))
    elif step == StepName.assign_assistant and payload.get("assistant_id") is not None:
        staff.append(await staff_ref(res, int(payload["assistant_id"]), Role.assistant, "assistant_id",
                                     access.row["branch_id"]))
    first = await first_suggestion(res, access.row, step, payload)
    update_id = _update_id(user, f"step:{step.value}", idempotency_key)
    req = CompleteStep(
        actor=actor_on(user, access), step=step, payload=payload, notes=notes, staff=staff,
        first_suggestion=first, request_id=update_id,
    )
    return await act(res, access, intake_workflow().complete_step, req, update_id, user)


async def reschedule(
    res: Resources, user: CurrentUser, case_id: int, body: RescheduleRequest, idempotency_key: str | None = None
) -> CaseView:
    """Move the first meeting or the measure; the manager or the case's designer or assistant."""
    access = await open_case_for(res, user, case_id, Action.reschedule)
    update_id = _update_id(user, "reschedule", idempotency_key)
    req = Reschedule(actor=actor_on(user, access), target=body.target, at=body.at, reason=body.reason, request_id=update_id)
    return await act(res, access, intake_workflow().reschedule, req, update_id, user)


async def reassign(
    res: Resources, user: CurrentUser, case_id: int, body: ReassignRequest, idempotency_key: str | None = None
) -> CaseView:
    """Change the case's designer or assistant designer, with a reason; managers only."""
    access = await open_case_for(res, user, case_id, Action.reassign)
    ref = await staff_ref(res, body.staff_id, MEMBER_ROLES[body.role], "staff_id", access.row["branch_id"])
    update_id = _update_id(user, "reassign", idempotency_key)
    req = Reassign(actor=actor_on(user, access), role=body.role, staff=ref, reason=body.reason, request_id=update_id)
    return await act(res, access, intake_workflow().reassign, req, update_id, user)


async def close_case(
    res: Resources, user: CurrentUser, case_id: int, body: CloseRequest, idempotency_key: str | None = None
) -> CaseView:
    """Close the case: signed, lost (with a reason) or duplicate; managers only (the reason: the engine's rule)."""
    access = await open_case_for(res, user, case_id, Action.close)
    update_id = _update_id(user, "close", idempotency_key)
    req = CloseCase(actor=actor_on(user, access), outcome=body.outcome, reason=body.reason, request_id=update_id)
    return await act(res, access, intake_workflow().close, req, update_id, user)


async def add_note(
    res: Resources, user: CurrentUser, case_id: int, body: NoteRequest, idempotency_key: str | None = None
) -> CaseView:
    """Add a note to the case's timeline; managers, the director, the assistant lead and the case's team."""
    if not body.text.strip():
        raise ApiError(422, "invalid_payload", "备注不能为空", details={"field": "text"})
    access = await open_case_for(res, user, case_id, Action.note)
    update_id = _update_id(user, "note", idempotency_key)
    req = AddNote(actor=actor_on(user, access), text=body.text, request_id=update_id)
    return await act(res, access, intake_workflow().add_note, req, update_id, user)
