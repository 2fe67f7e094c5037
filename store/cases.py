"""Writing a new case's row (SPEC §10: the row first, as `starting`; then the workflow; then `open`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.constants import workflow_id
from domain.graph import initial_stage
from domain.models import IntakeInput


async def next_case_id(conn: asyncpg.Connection, *, timeout: float | None = None) -> int:
    """A new case number from the cases' sequence."""
    case_id: int | None = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('cases', 'id'))", timeout=timeout)
    assert case_id is not None
    return case_id


async def insert_starting(
    conn: asyncpg.Connection,
    inp: IntakeInput,
    *,
    client: Any,
    notes: str | None,
    timeout: float | None = None,
    policy_version: int | None = None,
    house_key: str | None = None,
    previous_case_id: int | None = None,
    returning_reason: str | None = None,
) -> None:
    """The case row as `starting`, with the client's data and everything its workflow starts with.

    The open-phone unique index makes concurrent creations for one phone wait here for the first
    one's commit (or rollback): exactly one of them gets the case (UniqueViolationError
    ``cases_open_phone_uq`` for the others).
    """
    await conn.execute(
        "INSERT INTO cases (id, workflow_id, source, scenario, stage, status, client_name, client_phone,"
        " client_gender, client_age_range, compound, address, area_m2, budget, notes, meeting_at,"
        " meeting_kind, created_by, received_by, manager_id, created_at, policy, workflow_input, policy_version,"
        " second_phone, house_key, previous_case_id, returning_reason, branch_id)"
        " VALUES ($1,$2,$3,$4,$5,'starting',$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,"
        "$21,$22,$23,$24,$25,$26,$27,$28)",
        inp.case_id,
        workflow_id(inp.case_id),
        inp.source.value,
        inp.scenario.value,
        initial_stage(inp.scenario),
        client.name,
        client.phone,
        client.gender.value,
        client.age_range,
        client.compound,
        client.address,
        client.area_m2,
        client.budget,
        notes,
        inp.meeting_at,
        inp.meeting_kind.value if inp.meeting_kind else None,
        inp.created_by.id,
        inp.received_by.id if inp.received_by else None,
        inp.manager.id if inp.manager else None,
        inp.created_at,
        inp.policy.model_dump(mode="json"),
        inp.model_dump(mode="json"),
        policy_version,
        getattr(client, "second_phone", None),
        house_key,
        previous_case_id,
        returning_reason,
        inp.branch_id,
        timeout=timeout,
    )


async def mark_open(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> None:
    """The workflow runs: the row is open."""
    await conn.execute("UPDATE cases SET status = 'open' WHERE id = $1 AND status = 'starting'", case_id)


async def undo_starting(pool: asyncpg.Pool, case_id: int, *, staff_id: int, key: str | None) -> None:
    """Temporal refused the start outright: the row (and its Idempotency-Key) go again."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM cases WHERE id = $1 AND status = 'starting'", case_id)
        if key:
            await conn.execute("DELETE FROM idempotency_keys WHERE staff_id = $1 AND key = $2", staff_id, key)
