"""Idempotency-Key for POST /intakes: the first answer is kept and replayed.

Keys are per staff member. The key row is written in the same transaction as the case row, so a
key exists exactly when its case does; a second request with the same key waits on the first
(primary-key lock) and then replays its answer. Answers that say "no" for good (409 duplicate
phone) are kept too; 503s are not (a retry must be able to succeed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import asyncpg
from fastapi.responses import JSONResponse

from api.errors import ApiError

REPLAY_HEADER = "Idempotent-Replayed"


def request_hash(canonical_json: str) -> str:
    """sha256 of the request's canonical JSON: a key reused for another request is refused."""
    return hashlib.sha256(canonical_json.encode("utf-8")).hexdigest()


async def lookup(
    conn: asyncpg.Pool | asyncpg.Connection, *, staff_id: int, key: str, req_hash: str
) -> asyncpg.Record | None:
    """The stored answer for this key, or None; 422 when the key was used for another request."""
    row = await conn.fetchrow(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE staff_id = $1 AND key = $2",
        staff_id,
        key,
    )
    if row is None:
        return None
    if not hmac.compare_digest(row["request_hash"], req_hash):
        raise ApiError(
            422,
            "idempotency_key_reused",
            "该 Idempotency-Key 已用于另一个不同的请求；新请求请使用新的 Key",
        )
    if row["status_code"] is None:
        raise ApiError(409, "idempotency_in_progress", "同一 Idempotency-Key 的请求正在处理，请稍后重试")
    return row


def replay(status_code: int, body: Any) -> JSONResponse:
    """The stored answer, marked as a replay."""
    return JSONResponse(status_code=status_code, content=body, headers={REPLAY_HEADER: "true"})


async def store(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    staff_id: int,
    key: str,
    req_hash: str,
    status_code: int,
    body: dict[str, Any],
) -> None:
    """Keep a final answer for a key (no-op when the key already has one)."""
    await conn.execute(
        "INSERT INTO idempotency_keys (staff_id, key, request_hash, status_code, response)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (staff_id, key) DO NOTHING",
        staff_id,
        key,
        req_hash,
        status_code,
        json.loads(json.dumps(body, default=str)),
    )


async def reserve(conn: asyncpg.Connection, *, staff_id: int, key: str, req_hash: str, timeout: float) -> None:
    """The key's row, first in the creation's transaction: a concurrent request with the key waits here."""
    await conn.execute(
        "INSERT INTO idempotency_keys (staff_id, key, request_hash, status_code, response)"
        " VALUES ($1, $2, $3, NULL, NULL)",
        staff_id,
        key,
        req_hash,
        timeout=timeout,
    )


async def answer(
    conn: asyncpg.Pool | asyncpg.Connection, *, staff_id: int, key: str, status_code: int, body: Any,
    timeout: float | None = None,
) -> None:
    """The answer a key replays (inside the creation's transaction: it commits with its case or not at all)."""
    await conn.execute(
        "UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE staff_id = $1 AND key = $2",
        staff_id,
        key,
        status_code,
        body,
        timeout=timeout,
    )
