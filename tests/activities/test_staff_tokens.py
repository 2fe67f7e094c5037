"""Bearer tokens: only hashes are stored, and revoked tokens stop working."""

from __future__ import annotations

import asyncpg

from domain.enums import Role
from store.staff import StaffRepository, hash_token
from tests.support.data import unique_phone


async def test_tokens_are_hashed_and_can_be_revoked(pool: asyncpg.Pool) -> None:
    repo = StaffRepository(pool)
    staff = await repo.add(name="陈经理", phone=unique_phone(), role=Role.manager)
    old = await repo.issue_token(staff_id=staff.id)
    stored = await pool.fetchval("SELECT token_hash FROM staff_tokens WHERE staff_id = $1", staff.id)
    assert stored == hash_token(old) and old not in stored
    assert (await repo.by_token(token=old)) is not None
    assert await repo.revoke_tokens(staff_id=staff.id) == 1
    assert await repo.by_token(token=old) is None
    new = await repo.issue_token(staff_id=staff.id)
    found = await repo.by_token(token=new)
    assert found is not None and found.id == staff.id
    assert await repo.by_token(token=new + "x") is None
