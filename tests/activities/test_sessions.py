"""Console sign-in links and sessions in the real database: one use per link, expiry, revocation, hashes only."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from domain.enums import Role, StaffStatus
from store.sessions import SessionRepository, csrf_matches, csrf_token
from store.staff import hash_token
from tests.activities.conftest import MakeStaff

DAY = timedelta(days=1)


async def test_a_link_opens_one_session_once_and_only_hashes_are_stored(
    pool: asyncpg.Pool, make_staff: MakeStaff
) -> None:
    staff = await make_staff("登录甲", Role.consultant)
    repo = SessionRepository(pool)
    code = await repo.issue_link(staff_id=staff.id, ttl=DAY)
    assert (await repo.link_owner(code=code)).id == staff.id  # type: ignore[union-attr]
    assert await pool.fetchval("SELECT count(*) FROM console_links WHERE code_hash = $1", code) == 0
    got = await repo.redeem_link(code=code, ttl=DAY, user_agent="test")
    assert got is not None
    token, who = got
    assert who.id == staff.id
    assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE token_hash = $1", hash_token(token)) == 1
    assert await pool.fetchval("SELECT count(*) FROM console_sessions WHERE token_hash = $1", token) == 0
    # used: no second session, no owner shown
    assert await repo.redeem_link(code=code, ttl=DAY, user_agent="test") is None
    assert await repo.link_owner(code=code) is None
    session = await repo.by_token(token=token)
    assert session is not None and session.staff.id == staff.id


async def test_sessions_expire_and_are_revoked(pool: asyncpg.Pool, make_staff: MakeStaff) -> None:
    staff = await make_staff("登录乙", Role.designer)
    repo = SessionRepository(pool)

    async def session() -> str:
        got = await repo.redeem_link(code=await repo.issue_link(staff_id=staff.id, ttl=DAY), ttl=DAY, user_agent=None)
        assert got is not None
        return got[0]

    expired = await session()
    await pool.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'"
                       " WHERE token_hash = $1", hash_token(expired))
    assert await repo.by_token(token=expired) is None

    signed_out = await session()
    await repo.revoke(token=signed_out)
    assert await repo.by_token(token=signed_out) is None

    a, b = await session(), await session()
    unused = await repo.issue_link(staff_id=staff.id, ttl=DAY)
    assert await repo.revoke_all(staff_id=staff.id) == 2
    assert await repo.by_token(token=a) is None and await repo.by_token(token=b) is None
    assert await repo.redeem_link(code=unused, ttl=DAY, user_agent=None) is None

    # an expired link opens nothing; an inactive person has no session
    old = await repo.issue_link(staff_id=staff.id, ttl=timedelta(seconds=-1))
    assert await repo.redeem_link(code=old, ttl=DAY, user_agent=None) is None
    live = await session()
    await pool.execute("UPDATE staff SET status = $2 WHERE id = $1", staff.id, StaffStatus.inactive.value)
    assert await repo.by_token(token=live) is None


def test_the_form_token_belongs_to_its_session() -> None:
    assert csrf_matches("session-a", csrf_token("session-a"))
    assert not csrf_matches("session-a", csrf_token("session-b"))
    assert not csrf_matches("session-a", None) and not csrf_matches("session-a", "")
