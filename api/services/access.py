"""A case as one person may see it: 404 when they may not know it exists, 403 when they may not act.

Every case route goes through :func:`open_case` first; what it answers comes from
domain/permissions.py (the one authority), never from a rule written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
from fastapi import Depends, Path
from pydantic import BaseModel

import request_context as context
from api.deps import (
    CaseStaff,
    CurrentStaff,
    CurrentUser,
    Resources,
    ResourcesDep,
    bounded,
    invalid_token,
    refuse,
)
from api.errors import not_found_case
from api.schemas import MAX_ID
from domain import permissions
from domain.models import Actor
from domain.permissions import Action, CaseFacts
from domain.phone import mask_phones_in
from store import queries
from store.audit import record_phone_reads
from store.staff import StaffRepository, staff_from_json

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class CaseAccess:
    """A case row and what the person may see of it."""

    row: asyncpg.Record
    facts: CaseFacts
    contact: bool  # the client's phone, address and phones written in free text

    @property
    def case_id(self) -> int:
        """The case's id."""
        return int(self.row["id"])


CaseId = Annotated[int, Path(ge=1, le=MAX_ID, description="案例编号", examples=[1024])]


async def visible_case(case_id: CaseId, user: CurrentStaff, res: ResourcesDep) -> CaseAccess:
    """A dependency of every case route: 404 for a case the caller may not see, before the body is judged."""
    return await open_case(res, user, case_id)


VisibleCase = Annotated[CaseAccess, Depends(visible_case)]


async def acting_case(case_id: CaseId, user: CaseStaff, res: ResourcesDep) -> CaseAccess:
    """:func:`visible_case` for the action routes: the caller may come from the token cache, confirmed by this
    very read of the case (api.deps.get_case_user)."""
    return await open_case(res, user, case_id)


def viewer(user: CurrentUser) -> queries.Viewer:
    """The person as the lists' SQL filters take them."""
    return queries.Viewer(staff_id=user.id, scope=permissions.case_scope(user))


async def holding_for(res: Resources, user: CurrentUser) -> tuple[int, ...]:
    """The managers whose steps `user` holds now as their deputy (they are away, the deputy at work)."""
    pool = await res.pool()
    return await bounded(res, StaffRepository(pool).acting_for(
        staff_id=user.id, calendar=res.policy().calendar, now=datetime.now(UTC)))


def actor_on(user: CurrentUser, access: CaseAccess) -> Actor:
    """Who acts on this case: the deputy of its manager acts for that manager (with their rights)."""
    actor = user.actor()
    if permissions.Relation.deputy in permissions.relations(user, access.facts):
        return actor.model_copy(update={"deputy_for": access.row["manager_id"]})
    return actor


async def open_case(res: Resources, user: CurrentUser, case_id: int) -> CaseAccess:
    """The case if `user` may see it; 404 case_not_found otherwise (its existence is not confirmed)."""
    info = context.current.get()
    known = info.cases.get((user.id, case_id)) if info is not None else None
    if known is not None:
        return known  # type: ignore[no-any-return]
    pool = await res.pool()
    proof = user.proof
    if proof is None:
        row = await bounded(res, queries.case_row(pool, case_id))
    else:
        # A person from the token cache: the same statement says whether the token still holds, and who
        # they are now (revoked, expired or left: 401; a new role counts from here on).
        owner, row = await bounded(res, queries.case_row_as(
            pool, case_id, token_hash=proof.token_hash, max_age_days=proof.max_age_days))
        if owner is None:
            res.tokens.drop(proof.token_hash)
            raise invalid_token()
        user.confirmed(staff_from_json(owner))
        res.tokens.put(proof.token_hash, user.staff)
    if row is None:
        raise not_found_case(case_id)
    facts = CaseFacts.of_row(row)
    if not permissions.may_view(user, facts):
        raise not_found_case(case_id)
    access = CaseAccess(row=row, facts=facts, contact=permissions.may_see_contact(user, facts))
    if info is not None:
        info.cases[(user.id, case_id)] = access
    return access


async def open_case_for(res: Resources, user: CurrentUser, case_id: int, action: Action) -> CaseAccess:
    """The case (404 as :func:`open_case`) when `user` may take `action` on it (403 otherwise)."""
    access = await open_case(res, user, case_id)
    refuse(permissions.may(user, action, access.facts))
    return access


async def record_contact(res: Resources, user: CurrentUser, case_ids: list[int], route: str) -> None:
    """Record that `user` was shown the full phone of these cases (SPEC §12)."""
    if not case_ids:
        return
    pool = await res.pool()
    await bounded(res, record_phone_reads(pool, staff_id=user.id, case_ids=case_ids, route=route,
                                          request_id=context.request_id()))


async def contact_map(res: Resources, user: CurrentUser, rows: list[Any], route: str) -> list[bool]:
    """Per list row, whether `user` sees the client's contact details; each full phone shown is recorded."""
    allowed = [permissions.may_see_contact(user, CaseFacts.of_row(r)) for r in rows]
    shown = [int(r["id"] if "id" in r.keys() else r["case_id"]) for r, ok in zip(rows, allowed, strict=True) if ok]
    await record_contact(res, user, shown, route)
    return allowed


def redact(model: M) -> M:
    """The answer with every phone number written into its free text masked (notes, reports, findings)."""
    return type(model).model_validate(_mask(model.model_dump()))


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_phones_in(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value

