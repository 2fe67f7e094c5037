"""The policy as managed data (SPEC §16): the version new cases take, saving a new one, reading the history.

New cases start with the newest saved version (PostgreSQL) of their branch, else the chain's, else the
policy file (or the policy a test injected): the file seeds a fresh install. A running case keeps the copy it started with. Who may
read and edit is domain/permissions.py's.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import asyncpg

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from domain import permissions, policy_admin
from domain.policy import Policy
from store.policy_versions import PolicyChanged, PolicyVersion, PolicyVersions

log = logging.getLogger("intake.api")

# How long one process reuses what it read of the newest version (saving here forgets it at once). Only
# the database's answer is kept: without a saved version each app takes its own file (or injected) policy.
CACHE_SECONDS = 2.0
_cache: dict[tuple[int, int | None], tuple[float, PolicyVersion | None]] = {}


async def current_policy(res: Resources, branch_id: int | None = None) -> tuple[Policy, int | None]:
    """The policy new cases (of `branch_id`; None: the chain's) start with and its version (None: the file)."""
    pool = await res.pool()
    key = (id(pool), branch_id)
    hit = _cache.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        newest = hit[1]
    else:
        try:
            newest = await bounded(res, PolicyVersions(pool).newest(branch_id))
        except asyncpg.UndefinedTableError:
            newest = None  # migration 011 not applied yet: the file, as before
        _cache[key] = (now, newest)
    return (newest.policy, newest.version) if newest else (res.policy(), None)


def forget(pool: asyncpg.Pool) -> None:
    """After a save: the next case reads the newest version again."""
    for key in [k for k in _cache if k[0] == id(pool)]:
        _cache.pop(key, None)


def version_label(version: int | None, policy: dict[str, Any] | None = None) -> str:
    """How a case names its policy: "版本 #3", or the file's policy by name."""
    if version is not None:
        return f"版本 #{version}"
    name = (policy or {}).get("name") or "default"
    return f"配置文件的规则（{name}）"


async def history(res: Resources, user: CurrentUser, branch_id: int | None = None) -> list[PolicyVersion]:
    """The saved versions of the chain (or of one branch's own), newest first (admin, manager, director)."""
    refuse(permissions.may_read_policy(user))
    pool = await res.pool()
    versions: list[PolicyVersion] = await bounded(res, PolicyVersions(pool).history(branch_id=branch_id))
    return versions


async def version(res: Resources, user: CurrentUser, number: int) -> PolicyVersion:
    """One saved version."""
    refuse(permissions.may_read_policy(user))
    pool = await res.pool()
    found: PolicyVersion | None = await bounded(res, PolicyVersions(pool).get(number))
    if found is None:
        raise ApiError(404, "policy_version_not_found", f"没有规则版本 #{number}")
    return found


async def save(res: Resources, user: CurrentUser, new: Policy, *, based_on: int | None, note: str | None,
               branch_id: int | None = None) -> int:
    """Save `new` as the next version (of the chain, or of `branch_id`) after `based_on` (the admin); 409 when
    another came into force meanwhile."""
    refuse(permissions.may_edit_policy(user))
    pool = await res.pool()
    base = await bounded(res, PolicyVersions(pool).get(based_on)) if based_on is not None else None
    changes = policy_admin.diff(base.policy if base else res.policy(), new)
    if not changes:
        raise ApiError(422, "policy_unchanged", "规则没有变化，无需保存")
    try:
        number: int = await bounded(res, PolicyVersions(pool).save(
            policy=new, yaml=policy_admin.policy_yaml(new), based_on=based_on,
            changes=[{"path": c.path, "label": c.label, "old": c.old, "new": c.new} for c in changes],
            note=(note or "").strip() or None, created_by=user.id, branch_id=branch_id))
    except PolicyChanged as exc:
        raise ApiError(409, "policy_changed", f"保存前已有人保存了新版本 #{exc.current}，请在最新版本上重新修改",
                       details={"current": exc.current}) from None
    forget(pool)
    log.info("policy version %s (branch %s) saved by staff %s (%d changes)", number, branch_id, user.id, len(changes))
    return number
