"""Moving a case to another branch (分公司/门店): the client moved (POST /intakes/{id}/transfer).

The director, or a regional manager covering both branches, decides with a reason (domain/permissions.py).
The case's open steps go to the new branch's people: its manager (the branch's first active one), and
for a designer or assistant the case has, the one named, else the new branch's first suggestion (rotation
轮单 for designers, fewest open cases for assistants). One workflow update (TransferCase) decides it; its
write records the transfers ledger row (case_transfers) and the case's branch, and the workflow sets the
search attribute `Branch`.
"""

from __future__ import annotations

import asyncpg

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.schemas import CaseView, TransferRequest
from api.services.access import actor_on, open_case
from api.services.cases import assistant_ranking, designer_ranking
from api.services.steps import act, staff_ref
from api.temporal import intake_workflow
from domain import permissions
from domain.enums import Role
from domain.models import StaffRef, Suggestion, TransferCase
from store.branches import BranchRepository
from store.staff import StaffRepository


async def transfer_case(
    res: Resources, user: CurrentUser, case_id: int, body: TransferRequest, idempotency_key: str | None = None
) -> CaseView:
    """Move the case to the branch named, with a reason; its open steps go to that branch's people."""
    access = await open_case(res, user, case_id)
    pool = await res.pool()
    branches = BranchRepository(pool)
    target = await bounded(res, branches.by_code(body.branch))
    if target is None or target.status != "active":
        raise ApiError(422, "invalid_branch", f"没有这个分公司：{body.branch}", details={"field": "branch"})
    refuse(permissions.may_transfer(user, access.facts, target.id))
    if target.id == access.row["branch_id"]:
        raise ApiError(409, "same_branch", f"客户已在{target.name}", details={"field": "branch"})
    if access.row["status"] != "open":
        raise ApiError(409, "case_closed", "案件已结案，不能再转分公司")
    current = await bounded(res, branches.get(access.row["branch_id"]))
    manager = await bounded(res, StaffRepository(pool).first_active(role=Role.manager, branch_id=target.id))
    designer = await _successor(res, access.row, "designer", body.designer_id, target.id)
    assistant = await _successor(res, access.row, "assistant", body.assistant_id, target.id)
    update_id = f"api:{user.id}:transfer:{idempotency_key}" if idempotency_key else None
    req = TransferCase(
        actor=actor_on(user, access), branch_id=target.id, branch=target.code, branch_name=target.name,
        from_branch_name=current.name if current else "", manager=manager.ref() if manager else None,
        designer=designer, assistant=assistant, reason=body.reason.strip(), request_id=update_id,
    )
    return await act(res, access, intake_workflow().transfer, req, update_id, user)


async def _successor(
    res: Resources, row: asyncpg.Record, position: str, named: int | None, branch_id: int
) -> StaffRef | None:
    """Who takes over the case's designer or assistant in the new branch: the one named (of that branch),
    else its first suggestion; None when the case has nobody in that position and nobody is named."""
    role = Role.designer if position == "designer" else Role.assistant
    field = f"{position}_id"
    if named is not None:
        return await staff_ref(res, named, role, field, branch_id)
    if row[field] is None:
        return None
    pool = await res.pool()
    ranked: list[Suggestion]
    if position == "designer":
        ranked = [s for s in await designer_ranking(res, pool, row, branch_id=branch_id) if s.eligible]
    else:
        ranked = list(await assistant_ranking(res, pool, row["id"], branch_id=branch_id))
    if not ranked:
        label = "设计师" if position == "designer" else "助理设计师"
        raise ApiError(422, "invalid_assignee", f"新分公司没有可接手的{label}，请先在该分公司登记人员或指定 {field}",
                       details={"field": field})
    return ranked[0].staff
