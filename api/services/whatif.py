"""Policy what-ifs from the console (SPEC §16): a run replays a period's cases under an edited policy.

A replay of hundreds of cases takes seconds, longer than a request may: the run is a row of
``whatif_runs`` (migration 021), computed beside the request in this process (store/whatif.py, on a
thread) and its result kept there, so the page that shows it can be answered by any API process.
The manager and the director may run one (domain/permissions.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from api.deps import CurrentUser, Resources, bounded, refuse
from api.errors import ApiError
from domain import permissions
from domain.policy import Policy
from store import whatif as store

log = logging.getLogger("intake.api")

# Runs in flight in this process (a task must be referenced until it ends).
_RUNNING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Run:
    """A what-if run as the console shows it."""

    id: int
    label: str
    period_from: datetime
    period_to: datetime
    status: str
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    requested_by: str | None


async def start(res: Resources, user: CurrentUser, policy: Policy, *, label: str, period_from: datetime,
                period_to: datetime) -> int:
    """Record a run and start it beside this request; its number (the page polls it)."""
    refuse(permissions.may_run_whatif(user))
    if period_from >= period_to:
        raise ApiError(422, "invalid_period", "开始日期必须早于结束日期", details={"field": "period_from"})
    pool = await res.pool()
    run_id: int = await bounded(res, pool.fetchval(
        "INSERT INTO whatif_runs (requested_by, policy, label, period_from, period_to) VALUES ($1, $2, $3, $4, $5)"
        " RETURNING id", user.id, policy.model_dump(mode="json"), label[:200], period_from, period_to))
    task = asyncio.create_task(_compute(pool, run_id, policy, period_from, period_to))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)
    return run_id


async def _compute(pool: asyncpg.Pool, run_id: int, policy: Policy, frm: datetime, to: datetime) -> None:
    try:
        result = await store.run(pool, policy=policy, period_from=frm, period_to=to, now=datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - a failed run says why on its page
        log.exception("what-if run %s failed", run_id)
        await pool.execute("UPDATE whatif_runs SET status = 'failed', error = $2, finished_at = now() WHERE id = $1",
                           run_id, f"{type(exc).__name__}: {exc}"[:500])
        return
    await pool.execute("UPDATE whatif_runs SET status = 'done', result = $2, finished_at = now() WHERE id = $1",
                       run_id, result)


_COLUMNS = ("r.id, r.label, r.period_from, r.period_to, r.status, r.result, r.error, r.created_at, r.finished_at,"
            " s.name AS requested_by FROM whatif_runs r LEFT JOIN staff s ON s.id = r.requested_by")


def _run(r: asyncpg.Record) -> Run:
    return Run(**dict(r))


async def get(res: Resources, user: CurrentUser, run_id: int) -> Run:
    """One run (404 what_if_not_found)."""
    refuse(permissions.may_run_whatif(user))
    pool = await res.pool()
    row = await bounded(res, pool.fetchrow(f"SELECT {_COLUMNS} WHERE r.id = $1", run_id))
    if row is None:
        raise ApiError(404, "what_if_not_found", f"没有编号为 {run_id} 的推演")
    return _run(row)


async def recent(res: Resources, user: CurrentUser, limit: int = 10) -> list[Run]:
    """The latest runs, newest first (without their results)."""
    refuse(permissions.may_run_whatif(user))
    pool = await res.pool()
    rows = await bounded(res, pool.fetch(f"SELECT {_COLUMNS.replace('r.result,', 'NULL::jsonb AS result,')}"
                                         " ORDER BY r.created_at DESC LIMIT $1", limit))
    return [_run(r) for r in rows]
