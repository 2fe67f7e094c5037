"""Who issued which credential (issue 14): the two-person rule for admins and the credential audit.

An admin never receives a working credential of someone else alone: `POST /staff/{id}/tokens` (and a
new person added through the API) only *asks*; a second admin, neither the one who asked nor the
person it is for, approves, and only then a one-time sign-in link is made — recorded with both names
(`issued_by`, `approved_by`) — for the person to open on their own phone. Every token and link keeps
who issued it; :func:`credential_audit` lists them (tokens, codec credentials, sign-in links, requests).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from store.sessions import SessionRepository
from store.staff import hash_token


class CredentialError(Exception):
    """A request that cannot be approved (unknown, approved already, expired)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def request_credential(
    pool: asyncpg.Pool, *, staff_id: int, requested_by: int, reason: str | None, ttl: timedelta
) -> asyncpg.Record:
    """Ask for a sign-in link for `staff_id`; it waits for a second admin's approval for `ttl`."""
    row: asyncpg.Record = await pool.fetchrow(
        "INSERT INTO credential_requests (staff_id, requested_by, reason, expires_at)"
        " VALUES ($1, $2, $3, now() + $4) RETURNING *",
        staff_id, requested_by, reason, ttl,
    )
    return row


async def pending_request(pool: asyncpg.Pool, request_id: int) -> asyncpg.Record | None:
    """A request by id (approved or not)."""
    row: asyncpg.Record | None = await pool.fetchrow("SELECT * FROM credential_requests WHERE id = $1", request_id)
    return row


async def approve_request(
    pool: asyncpg.Pool, *, request_id: int, approved_by: int, link_ttl: timedelta
) -> tuple[str, asyncpg.Record]:
    """Approve a request once: the one-time sign-in code it issues (shown once) and the updated request."""
    async with pool.acquire() as conn, conn.transaction():
        req = await conn.fetchrow("SELECT * FROM credential_requests WHERE id = $1 FOR UPDATE", request_id)
        if req is None:
            raise CredentialError("request_not_found", "没有这个凭证申请")
        if req["approved_at"] is not None:
            raise CredentialError("request_used", "该申请已批准过，不能再次签发")
        if req["expires_at"] <= await conn.fetchval("SELECT now()"):
            raise CredentialError("request_expired", "该申请已过期，请重新申请")
        code = await SessionRepository(pool).issue_link(
            staff_id=req["staff_id"], ttl=link_ttl, issued_by=req["requested_by"], approved_by=approved_by,
            issued_via="api:two-person", conn=conn,
        )
        link_id = await conn.fetchval("SELECT id FROM console_links WHERE code_hash = $1", hash_token(code))
        row = await conn.fetchrow(
            "UPDATE credential_requests SET approved_by = $2, approved_at = now(), link_id = $3 WHERE id = $1"
            " RETURNING *",
            request_id, approved_by, link_id,
        )
    return code, row


async def credential_audit(
    conn: asyncpg.Pool | asyncpg.Connection, *, staff_id: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Every token, codec credential, sign-in link and credential request, newest first: for whom, what,
    issued by whom (or which command line), approved by whom, when, until when, revoked or used when."""
    rows = await conn.fetch(
        """
        SELECT * FROM (
          SELECT 'token' AS kind, t.scope AS what, t.staff_id, t.issued_by, t.approved_by, t.issued_via,
                 t.created_at AS at, t.expires_at, t.revoked_at AS ended_at, t.label AS note
            FROM staff_tokens t
          UNION ALL
          SELECT 'sign_in_link', 'console', l.staff_id, l.issued_by, l.approved_by, l.issued_via,
                 l.created_at, l.expires_at, l.used_at, NULL
            FROM console_links l
          UNION ALL
          SELECT 'request', CASE WHEN r.approved_at IS NULL THEN 'pending' ELSE 'approved' END, r.staff_id,
                 r.requested_by, r.approved_by, 'api', r.created_at, r.expires_at, r.approved_at, r.reason
            FROM credential_requests r
        ) c
        WHERE ($1::bigint IS NULL OR c.staff_id = $1)
        ORDER BY c.at DESC LIMIT $2
        """,
        staff_id, limit,
    )
    names = {r["id"]: r["name"] for r in await conn.fetch("SELECT id, name FROM staff")}
    out = []
    for r in rows:
        d = dict(r)
        d["staff_name"] = names.get(d["staff_id"])
        d["issued_by_name"] = names.get(d["issued_by"])
        d["approved_by_name"] = names.get(d["approved_by"])
        out.append(d)
    return out


def describe(entry: dict[str, Any]) -> str:
    """One audit line for the command line."""
    def when(t: datetime | None) -> str:
        return t.strftime("%Y-%m-%d %H:%M") if t else "-"

    issuer = (f"#{entry['issued_by']} {entry['issued_by_name']}" if entry["issued_by"] is not None
              else entry["issued_via"] or "?")
    approver = f", approved by #{entry['approved_by']} {entry['approved_by_name']}" if entry["approved_by"] else ""
    return (f"{when(entry['at'])}  {entry['kind']:<13} {entry['what']:<8} for #{entry['staff_id']} "
            f"{entry['staff_name']}  by {issuer}{approver}  until {when(entry['expires_at'])}"
            f"  ended {when(entry['ended_at'])}")
