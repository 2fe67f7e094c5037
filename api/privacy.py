"""Client data by need (SPEC §12): who sees a client's full phone and address, masking, the read record.

Plain functions over a user (anything with ``id`` and ``role``) and a case row (a mapping with
``created_by``, ``designer_id``, ``assistant_id``), so the JSON API and the staff console's pages
apply the same rule. Every answer that carries a full phone is recorded in ``phone_reads``
(migration 007) by :func:`record_phone_reads`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import asyncpg

from domain.enums import Role

# Roles that see every client's contact details: they run the department and call clients back.
CONTACT_ROLES = frozenset({Role.manager, Role.director})
# The case's columns naming the staff who work it (creator, designer, assistant).
CONTACT_COLUMNS = ("created_by", "designer_id", "assistant_id")

ADDRESS_MASK = "（仅案例负责人可见）"
_DIGITS = re.compile(r"1[3-9]\d{9}")


class Viewer(Protocol):
    """Who reads: a staff id and role."""

    @property
    def id(self) -> int: ...

    @property
    def role(self) -> Role: ...


def can_see_contact(user: Viewer, case_row: Mapping[str, Any]) -> bool:
    """True when `user` may see the full phone and address of the case's client.

    The manager and the director always; otherwise only the staff who created the case or are
    assigned to it (designer, assistant).
    """
    if user.role in CONTACT_ROLES:
        return True
    return any(case_row.get(col) == user.id for col in CONTACT_COLUMNS if case_row.get(col) is not None)


def mask_phone(phone: str | None) -> str:
    """138****5678: the first three and the last four digits of a mobile number, the rest hidden."""
    if not phone:
        return ""
    digits = "".join(ch for ch in phone if ch.isdigit())
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_phones_in(text: str) -> str:
    """Any mobile number inside free text, masked."""
    return _DIGITS.sub(lambda m: mask_phone(m.group(0)), text)


def mask_address(address: str | None) -> str | None:
    """The address replaced by a note that it is hidden (None stays None)."""
    return ADDRESS_MASK if address else address


def _row_dict(row: Mapping[str, Any] | asyncpg.Record) -> Mapping[str, Any]:
    return row if isinstance(row, Mapping) else dict(row)


def contact_allowed(user: Viewer, row: Mapping[str, Any] | asyncpg.Record) -> bool:
    """can_see_contact over an asyncpg record or a mapping."""
    return can_see_contact(user, _row_dict(row))


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
