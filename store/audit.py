"""Who read a client's full phone (SPEC §12): the `phone_reads` record (migration 007)."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg


async def record_phone_reads(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    staff_id: int,
    case_ids: Iterable[int],
    route: str,
    request_id: str | None = None,
) -> None:
    """Record that `staff_id` was shown the full phone of each case (one row per case)."""
    ids = sorted(set(case_ids))
    if not ids:
        return
    await conn.execute(
        "INSERT INTO phone_reads (staff_id, case_id, route, request_id)"
        " SELECT $1, c, $3, $4 FROM unnest($2::bigint[]) AS c",
        staff_id,
        ids,
        route,
        request_id,
    )


async def list_phone_reads(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    case_id: int | None,
    staff_id: int | None,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """Recorded full-phone reads, newest first, optionally of one case or one reader."""
    where = "WHERE ($1::bigint IS NULL OR r.case_id = $1) AND ($2::bigint IS NULL OR r.staff_id = $2)"
    total: int = await conn.fetchval(f"SELECT count(*) FROM phone_reads r {where}", case_id, staff_id)
    rows = await conn.fetch(
        "SELECT r.id, r.at, r.case_id, r.route, r.request_id, r.staff_id, s.name AS staff_name, s.role AS staff_role"
        f" FROM phone_reads r JOIN staff s ON s.id = r.staff_id {where}"
        " ORDER BY r.at DESC, r.id DESC LIMIT $3 OFFSET $4",
        case_id,
        staff_id,
        limit,
        offset,
    )
    return rows, total
