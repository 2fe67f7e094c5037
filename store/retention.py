"""Data kept no longer than needed (issue 14, 个人信息保护法).

- :func:`prune`: phone-read records older than INTAKE_PHONE_READS_RETENTION_DAYS and Idempotency-Keys
  older than INTAKE_IDEMPOTENCY_RETENTION_DAYS are deleted (the worker's background loop, hourly by
  default, and `intake prune`).
- :func:`erase_case`: a closed case's client data removed on request — name, phone, address, notes and
  every free text (timeline, step payloads, SMS texts and their recipient), recordings (rows and files)
  — while what the statistics read stays: source, scenario, stages, steps and their times, outcome,
  assignments, message purposes and statuses. The case's Temporal history holds only ciphertext and
  ends with the namespace's retention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.phone import mask_phones_in
from store.recordings import RecordingStore

ERASED = "（已按客户要求删除）"
# Keys whose values are free text written by staff or the client's own details: blanked on erasure.
FREE_TEXT_KEYS = frozenset({
    "notes", "note", "text", "true_needs", "findings", "report", "corrections", "designer_corrections",
    "assistant_corrections", "reason", "outcome_reason", "car", "measure_reason", "site_reason",
    "material_store_reason", "needs", "basic_needs", "address", "name", "phone", "client",
})


async def prune(pool: asyncpg.Pool, *, phone_reads_days: float, idempotency_days: float) -> dict[str, int]:
    """Delete phone reads and Idempotency-Keys older than their retention; how many of each."""
    reads = await pool.execute(
        "DELETE FROM phone_reads WHERE at < now() - $1::float8 * interval '1 day'", phone_reads_days)
    keys = await pool.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::float8 * interval '1 day'"
        " AND status_code IS NOT NULL", idempotency_days)
    return {"phone_reads": int(reads.split()[-1]), "idempotency_keys": int(keys.split()[-1])}


def scrub(value: Any) -> Any:
    """JSON with every free-text value blanked (booleans, numbers, ids and times kept) and phones masked."""
    if isinstance(value, dict):
        return {k: (_blank(v) if k in FREE_TEXT_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return mask_phones_in(value)
    return value


def _blank(value: Any) -> Any:
    if isinstance(value, str):
        return ERASED if value else value
    if isinstance(value, (dict, list)):
        return None if isinstance(value, dict) and not value else (
            {k: _blank(v) for k, v in value.items()} if isinstance(value, dict) else [_blank(v) for v in value])
    return value


class EraseError(Exception):
    """The case cannot be erased (unknown, still open)."""


@dataclass(frozen=True)
class Erased:
    """What an erasure removed."""

    case_id: int
    events: int
    messages: int
    recordings: int


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def erase_case(pool: asyncpg.Pool, store: RecordingStore, case_id: int) -> Erased:
    """Remove a closed case's client data, keep its statistics; the recordings' files first, then the rows
    (a store that fails leaves PostgreSQL as it was, and the erasure can simply run again)."""
    row = await pool.fetchrow("SELECT status FROM cases WHERE id = $1", case_id)
    if row is None:
        raise EraseError(f"no case #{case_id}")
    if row["status"] != "closed":
        raise EraseError(f"case #{case_id} is {row['status']}: only a closed case is erased")
    keys = [r["storage_key"] for r in await pool.fetch("SELECT storage_key FROM recordings WHERE case_id = $1", case_id)]
    for key in keys:
        await store.delete(key)
    async with pool.acquire() as conn, conn.transaction():
        state = _json(await conn.fetchval("SELECT state FROM cases WHERE id = $1 FOR UPDATE", case_id))
        await conn.execute(
            "UPDATE cases SET client_name = $2, client_phone = '', address = NULL, notes = NULL,"
            " outcome_reason = CASE WHEN outcome_reason IS NULL THEN NULL ELSE $2 END, state = $3::jsonb,"
            " workflow_input = NULL, erased_at = now(), updated_at = now() WHERE id = $1",
            case_id, ERASED, json.dumps(scrub(state)) if state is not None else None,
        )
        events = await conn.fetch("SELECT seq, data FROM case_events WHERE case_id = $1", case_id)
        for e in events:
            await conn.execute("UPDATE case_events SET text = $3, data = $4::jsonb WHERE case_id = $1 AND seq = $2",
                               case_id, e["seq"], ERASED, json.dumps(scrub(_json(e["data"]))))
        messages = await conn.execute(
            "UPDATE outbox SET recipient = '', text = $2, variables = '{}'::jsonb, last_error = NULL"
            " WHERE case_id = $1", case_id, ERASED)
        await conn.execute("UPDATE allocation_ledger SET reason = $2 WHERE case_id = $1 AND reason IS NOT NULL",
                           case_id, ERASED)
        await conn.execute("DELETE FROM recordings WHERE case_id = $1", case_id)
    return Erased(case_id=case_id, events=len(events), messages=int(messages.split()[-1]), recordings=len(keys))
