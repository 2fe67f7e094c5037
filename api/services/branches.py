"""Branch administration (分公司/门店): listing, adding and changing branches, for the API, the console and
the CLI's rules alike. Who may is domain/permissions.py's (the admin and the director)."""

from __future__ import annotations

import logging
from typing import Any

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from api.schemas import BranchCreate, BranchOut, BranchPatch
from domain import permissions
from store.branches import Branch, BranchError, BranchRepository

log = logging.getLogger("intake.api")

# Fields a PATCH may not clear with null: a branch always has a name and a status.
REQUIRED = frozenset({"name", "status"})
_STATUS = {"branch_not_found": 404, "branch_code_taken": 409, "branch_not_empty": 409}


def branch_out(b: Branch) -> BranchOut:
    """Head office's view of a branch."""
    return BranchOut.model_validate(b.model_dump())


def branch_error(exc: BranchError) -> ApiError:
    """A repository's refusal as the API answers it (404, 409 or 422, its stable code)."""
    return ApiError(_STATUS.get(exc.code, 422), exc.code, exc.message)


async def list_branches(res: Resources, user: CurrentUser) -> list[Branch]:
    """Every branch, the closed ones too."""
    refuse(permissions.may_manage_branches(user))
    pool = await res.pool()
    found: list[Branch] = await bounded(res, BranchRepository(pool).list(include_closed=True))
    return found


async def get_branch(res: Resources, user: CurrentUser, branch_id: int) -> Branch:
    """One branch; 404 branch_not_found."""
    refuse(permissions.may_manage_branches(user))
    pool = await res.pool()
    found: Branch | None = await bounded(res, BranchRepository(pool).get(branch_id))
    if found is None:
        raise ApiError(404, "branch_not_found", f"没有编号为 {branch_id} 的分公司")
    return found


async def add_branch(res: Resources, user: CurrentUser, body: BranchCreate) -> Branch:
    """A new branch (409 branch_code_taken; 422 invalid_branch_code, invalid_sms_template)."""
    refuse(permissions.may_manage_branches(user))
    pool = await res.pool()
    fields = _stripped(body.model_dump())
    try:
        made: Branch = await bounded(res, BranchRepository(pool).create(**fields))
    except BranchError as exc:
        raise branch_error(exc) from None
    log.info("branch %s (%s) added by staff %s", made.id, made.code, user.id)
    return made


async def update_branch(res: Resources, user: CurrentUser, branch_id: int, body: BranchPatch) -> Branch:
    """Change the fields sent (null clears an optional one); closing needs an empty branch (409 branch_not_empty)."""
    refuse(permissions.may_manage_branches(user))
    changes: dict[str, Any] = {}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name in REQUIRED:
            raise ApiError(422, "invalid_payload", f"{name} 不能为空", details={"field": name})
        changes[name] = value
    pool = await res.pool()
    try:
        changed: Branch = await bounded(res, BranchRepository(pool).update(branch_id, _stripped(changes)))
    except BranchError as exc:
        raise branch_error(exc) from None
    log.info("branch %s changed by staff %s: %s", branch_id, user.id, ", ".join(sorted(changes)))
    return changed


def _stripped(fields: dict[str, Any]) -> dict[str, Any]:
    """Texts without surrounding blanks; a text of blanks only is an error, not an empty name."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ApiError(422, "invalid_payload", f"{name} 不能为空白", details={"field": name})
        out[name] = value
    return out
