"""Console sign-in: one-time sign-in links and cookie sessions, stored only as hashes (PostgreSQL).

A link's code and a session's token are 256-bit secrets handed out once; the database keeps their
sha256 (like bearer tokens), so a copy of the database opens no session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from store.staff import _COLUMNS, Staff, _row_to_staff, hash_token


def csrf_token(session_token: str) -> str:
    """The form token of a session (synchroniser token): derived from the session secret, never stored."""
    return hmac.new(session_token.encode("utf-8"), b"intake-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, submitted: str | None) -> bool:
    """Whether a submitted form token belongs to this session (constant-time compare)."""
    return bool(submitted) and hmac.compare_digest(csrf_token(session_token), submitted or "")


@dataclass(frozen=True)
class Session:
    """A live console session: who, until when."""

    id: int
    staff: Staff
    expires_at: datetime


class SessionRepository:
    """Sign-in links and console sessions in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issue_link(
        self,
        *,
        staff_id: int,
        ttl: timedelta,
        issued_by: int | None = None,
        issued_via: str | None = None,
        approved_by: int | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> str:
        """A new one-time sign-in code for a staff member; returned once, only its hash is stored, with who
        issued it (`issued_by`, or the command line in `issued_via`)."""
        code = secrets.token_urlsafe(32)
        await (conn or self._pool).execute(
            "INSERT INTO console_links (staff_id, code_hash, expires_at, issued_by, issued_via, approved_by)"
            " VALUES ($1, $2, now() + $3, $4, $5, $6)",
            staff_id,
            hash_token(code),
            ttl,
            issued_by,
            issued_via,
            approved_by,
        )
        return code

    async def link_owner(self, *, code: str) -> Staff | None:
        """Who a still-valid, unused link belongs to (for the confirmation page); changes nothing."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM staff WHERE status <> 'inactive' AND id = (SELECT staff_id FROM console_links"
            " WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now())",
            hash_token(code),
        )
        return _row_to_staff(row) if row else None

    async def redeem_link(self, *, code: str, ttl: timedelta, user_agent: str | None) -> tuple[str, Staff] | None:
        """Use a link once: mark it used and open a session; returns the session token and the person."""
        token = secrets.token_urlsafe(32)
        async with self._pool.acquire() as conn, conn.transaction():
            # One statement claims the link: two taps on the same link open one session, not two.
            link = await conn.fetchrow(
                "UPDATE console_links SET used_at = now() WHERE code_hash = $1 AND used_at IS NULL"
                " AND expires_at > now() RETURNING id, staff_id",
                hash_token(code),
            )
            if link is None:
                return None
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM staff WHERE id = $1 AND status <> 'inactive'", link["staff_id"]
            )
            if row is None:
                return None
            await conn.execute(
                "INSERT INTO console_sessions (staff_id, token_hash, link_id, user_agent, expires_at)"
                " VALUES ($1, $2, $3, $4, now() + $5)",
                link["staff_id"],
                hash_token(token),
                link["id"],
                (user_agent or "")[:300],
                ttl,
            )
        return token, _row_to_staff(row)

    async def open_for(self, *, staff_id: int, ttl: timedelta, user_agent: str | None) -> str:
        """A session for someone whose identity was proven otherwise (WeCom sign-in); returns its token once."""
        token = secrets.token_urlsafe(32)
        await self._pool.execute(
            "INSERT INTO console_sessions (staff_id, token_hash, user_agent, expires_at) VALUES ($1, $2, $3, now() + $4)",
            staff_id,
            hash_token(token),
            (user_agent or "")[:300],
            ttl,
        )
        return token

    async def by_token(self, *, token: str, idle: timedelta | None = None) -> Session | None:
        """The live session of a cookie token (not expired, not revoked, not idle longer than `idle`, staff
        not inactive); being used keeps it alive (`last_seen_at`)."""
        # One statement: the idle check and the touch cannot race with each other.
        row = await self._pool.fetchrow(
            "WITH touched AS (UPDATE console_sessions SET last_seen_at = now()"
            "   WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()"
            "   AND ($2::interval IS NULL OR last_seen_at > now() - $2::interval)"
            "   RETURNING id, staff_id, expires_at)"
            " SELECT t.id AS session_id, t.expires_at AS session_expires_at, s.*"
            f" FROM touched t, LATERAL (SELECT {_COLUMNS} FROM staff"
            "   WHERE staff.id = t.staff_id AND staff.status <> 'inactive') s",
            hash_token(token),
            idle,
        )
        if row is None:
            return None
        return Session(id=row["session_id"], staff=_row_to_staff(row), expires_at=row["session_expires_at"])

    async def revoke(self, *, token: str) -> None:
        """End one session (sign-out)."""
        await self._pool.execute(
            "UPDATE console_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
            hash_token(token),
        )

    async def revoke_all(self, *, staff_id: int) -> int:
        """End every session and unused link of a staff member (a lost phone); returns the sessions ended."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE console_links SET used_at = now() WHERE staff_id = $1 AND used_at IS NULL", staff_id
            )
            result = await conn.execute(
                "UPDATE console_sessions SET revoked_at = now()"
                " WHERE staff_id = $1 AND revoked_at IS NULL AND expires_at > now()",
                staff_id,
            )
        return int(result.split()[-1])
