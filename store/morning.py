"""The morning summary (晨报, SPEC §15) in PostgreSQL: its figures, read from the case projection, and the
day's claim that makes it go out once.

Per branch (issue 22). A chain of one branch (every install before branches) sends one summary, as before,
to every manager and the director. A chain of several sends each branch's summary (its cases, by its own
calendar: a branch's holiday is its own) to the managers who work in that branch, and one summary of the
whole chain (by the chain's calendar) to head office (the director): one notice a morning, not one per
branch; the director opens any branch's summary in the API (``?branch=CODE``). Who gets which is
domain/permissions.py's (:func:`~domain.permissions.morning_summary_roles`).

Exactly once per working day, however many workers run and however often they restart:
:func:`send_once` computes the figures, then in the same transaction claims the day
(``INSERT INTO morning_summaries ... ON CONFLICT (day) DO NOTHING``) and, only when the claim is its
own, writes one outbox row per recipient (unique per purpose and recipient as well, migration 016).
A second worker's INSERT waits for the first one's transaction and then finds the day taken; a
worker that dies before committing leaves no claim, and the next one sends it. The rows are
delivered by the outbox dispatcher like any staff notice, through the configured staff channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg

from domain import morning, permissions
from domain.enums import Gender, MeetingKind
from domain.morning import LateStep, MorningFigures, OpenWork, StalledStep, Visit, Window
from domain.policy import Policy
from store.outbox import OutboxWriter
from store.policy_versions import PolicyVersions

# How many items of each list the figures keep (the text shows fewer).
KEPT = 10

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class Scope:
    """Whose summary: the chain's (`branch_id` None; in a chain of one branch, the one summary) or a branch's."""

    branch_id: int | None = None
    code: str | None = None
    name: str | None = None
    branches: int = 1  # active branches of the chain: one means one summary for everyone, as before


async def scopes(conn: Conn) -> list[Scope]:
    """The summaries a morning has: the chain's, and each active branch's when there are several."""
    rows = await conn.fetch("SELECT id, code, name FROM branches WHERE status = 'active' ORDER BY id")
    if len(rows) <= 1:
        return [Scope()]
    n = len(rows)
    return [Scope(branches=n)] + [Scope(branch_id=r["id"], code=r["code"], name=r["name"], branches=n) for r in rows]


async def scope_of(conn: Conn, branch_id: int | None) -> Scope:
    """The scope of one branch's summary (None, or a chain of one branch: the chain's)."""
    every = await scopes(conn)
    return next((s for s in every if s.branch_id == branch_id), every[0])


async def policy_in_force(conn: Conn, fallback: Policy, branch_id: int | None = None) -> Policy:
    """The company's (or a branch's) policy now: the newest saved version, else the policy file (`fallback`)."""
    try:
        newest = await PolicyVersions(conn).newest(branch_id)
    except asyncpg.UndefinedTableError:
        return fallback
    return newest.policy if newest is not None else fallback


async def read_figures(conn: Conn, *, window: Window, now: datetime, scope: Scope | None = None) -> MorningFigures:
    """The figures of the summary of `window.day`, as of `now` (stalled cases and open work are "now"), of the
    chain's cases or (`scope`) of one branch's."""
    start, end = window.start, window.end
    scope = scope or Scope()
    b = scope.branch_id
    # Every statement's last parameter is the branch (NULL: every case).
    mine = "({c}.branch_id = ${n} OR ${n}::bigint IS NULL)"
    leads = await conn.fetch(
        # A case still `starting` may yet be undone; a duplicate is not a new lead.
        "SELECT source, count(*) AS n FROM cases c WHERE created_at >= $1 AND created_at < $2"
        f" AND status <> 'starting' AND outcome IS DISTINCT FROM 'duplicate' AND {mine.format(c='c', n=3)}"
        " GROUP BY source",
        start, end, b,
    )
    late = await conn.fetch(
        "SELECT s.case_id, s.step, st.name AS owner,"
        " extract(epoch FROM s.completed_at - s.due_at)::bigint AS late_seconds, count(*) OVER () AS total"
        " FROM case_steps s JOIN cases c ON c.id = s.case_id"
        " LEFT JOIN staff st ON st.id = coalesce(s.owner_id, s.completed_by)"
        " WHERE s.status = 'done' AND s.completed_at >= $1 AND s.completed_at < $2 AND s.completed_at > s.due_at"
        f" AND {mine.format(c='c', n=4)} ORDER BY s.completed_at - s.due_at DESC, s.case_id LIMIT $3",
        start, end, KEPT, b,
    )
    stalled_counts = await conn.fetchrow(
        "SELECT count(DISTINCT s.case_id) AS cases, count(*) AS steps FROM case_steps s"
        " JOIN cases c ON c.id = s.case_id AND c.status = 'open' WHERE s.status = 'open' AND s.due_at < $1"
        f" AND {mine.format(c='c', n=2)}",
        now, b,
    )
    stalled = await conn.fetch(
        # Each stalled case once, by its most overdue step; the longest overdue first.
        "SELECT * FROM (SELECT DISTINCT ON (s.case_id) s.case_id, s.step, st.name AS owner,"
        "  extract(epoch FROM $1 - s.due_at)::bigint AS overdue_seconds, s.due_at"
        "  FROM case_steps s JOIN cases c ON c.id = s.case_id AND c.status = 'open'"
        "  LEFT JOIN staff st ON st.id = s.owner_id"
        f"  WHERE s.status = 'open' AND s.due_at < $1 AND {mine.format(c='c', n=3)} ORDER BY s.case_id, s.due_at) w"
        " ORDER BY w.due_at, w.case_id LIMIT $2",
        now, KEPT, b,
    )
    work = await conn.fetch(
        "SELECT st.id, st.name, count(*) AS open_steps, count(*) FILTER (WHERE s.due_at < $1) AS overdue"
        " FROM case_steps s JOIN cases c ON c.id = s.case_id AND c.status = 'open'"
        f" JOIN staff st ON st.id = s.owner_id WHERE s.status = 'open' AND {mine.format(c='c', n=3)}"
        " GROUP BY st.id, st.name ORDER BY open_steps DESC, overdue DESC, st.id LIMIT $2",
        now, KEPT, b,
    )
    today_start, today_end = _local_day(window)
    meetings = await conn.fetch(
        "SELECT c.id, c.client_name, c.client_gender, c.meeting_at, c.meeting_kind, c.measure_at, d.name AS designer"
        " FROM cases c LEFT JOIN staff d ON d.id = c.designer_id WHERE c.status = 'open'"
        " AND ((c.meeting_at >= $1 AND c.meeting_at < $2) OR (c.measure_at >= $1 AND c.measure_at < $2))"
        f" AND {mine.format(c='c', n=3)}",
        today_start, today_end, b,
    )
    return MorningFigures(
        day=window.day,
        since=window.since,
        timezone=window.timezone,
        working_day=window.working_day,
        computed_at=now,
        new_leads=sum(int(r["n"]) for r in leads),
        leads_by_source={r["source"]: int(r["n"]) for r in leads},
        late_count=int(late[0]["total"]) if late else 0,
        late=[LateStep(case_id=r["case_id"], step=r["step"], step_label=morning.step_label(r["step"]),
                       owner=r["owner"], late_seconds=int(r["late_seconds"])) for r in late],
        stalled_cases=int(stalled_counts["cases"]) if stalled_counts else 0,
        stalled_steps=int(stalled_counts["steps"]) if stalled_counts else 0,
        stalled=[StalledStep(case_id=r["case_id"], step=r["step"], step_label=morning.step_label(r["step"]),
                             owner=r["owner"], overdue_seconds=int(r["overdue_seconds"])) for r in stalled],
        open_work=[OpenWork(staff_id=r["id"], name=r["name"], open_steps=int(r["open_steps"]),
                            overdue=int(r["overdue"])) for r in work],
        visits=_visits(meetings, today_start, today_end),
        branch_name=scope.name if scope.branch_id is not None else None,
    )


def _local_day(window: Window) -> tuple[datetime, datetime]:
    """Local midnight to midnight of the summary's day."""
    zone = ZoneInfo(window.timezone)
    start = datetime.combine(window.day, time(0), tzinfo=zone)
    end = datetime.combine(window.day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def _visits(rows: list[asyncpg.Record], start: datetime, end: datetime) -> list[Visit]:
    """Today's first meetings (到店 or 量房) and home measures, soonest first; a first meeting that is the
    measure itself counted once."""
    out: list[Visit] = []
    for r in rows:
        client = morning.client_salutation(r["client_name"] or "", _gender(r["client_gender"]))
        meeting_at, measure_at = r["meeting_at"], r["measure_at"]
        if meeting_at is not None and r["meeting_kind"] and start <= meeting_at < end:
            out.append(Visit(case_id=r["id"], at=meeting_at, kind=MeetingKind(r["meeting_kind"]), client=client,
                             designer=r["designer"]))
        same = r["meeting_kind"] == MeetingKind.measure.value and measure_at == meeting_at
        if measure_at is not None and start <= measure_at < end and not same:
            out.append(Visit(case_id=r["id"], at=measure_at, kind=MeetingKind.measure, client=client,
                             designer=r["designer"]))
    return sorted(out, key=lambda v: (v.at, v.case_id))


def _gender(raw: str | None) -> Gender:
    return Gender(raw) if raw is not None and raw in Gender.__members__ else Gender.unknown


async def recipients(conn: Conn, scope: Scope | None = None) -> list[asyncpg.Record]:
    """Who gets the summary: every active member of the roles domain/permissions.py names for it; for a
    branch's, those who work in the branch (their home, or one they cover)."""
    scope = scope or Scope()
    roles = permissions.morning_summary_roles(chain=scope.branch_id is None, branches=scope.branches)
    return list(await conn.fetch(
        "SELECT id, name, phone, role, office_schedule FROM staff s WHERE role = ANY($1::text[])"
        " AND status = 'active' AND ($2::bigint IS NULL OR s.branch_id = $2"
        "  OR EXISTS (SELECT 1 FROM staff_branches sb WHERE sb.staff_id = s.id AND sb.branch_id = $2)) ORDER BY id",
        sorted(r.value for r in roles), scope.branch_id,
    ))


async def stored(conn: Conn, day: date, branch_id: int | None = None) -> dict[str, Any] | None:
    """The summary sent for `day` (the chain's, or `branch_id`'s): figures, text, recipients, when; or None."""
    r = await conn.fetchrow(
        "SELECT day, figures, text, recipients, created_at FROM morning_summaries"
        " WHERE day = $1 AND branch_id IS NOT DISTINCT FROM $2", day, branch_id,
    )
    if r is None:
        return None
    raw = r["figures"]
    return {
        "figures": MorningFigures.model_validate(json.loads(raw) if isinstance(raw, str) else raw),
        "text": r["text"],
        "recipients": list(r["recipients"]),
        "sent_at": r["created_at"],
    }


async def send_once(pool: asyncpg.Pool, *, window: Window, policy: Policy, now: datetime,
                    writer: OutboxWriter, scope: Scope | None = None) -> bool:
    """Claim `window.day` (of the chain, or of `scope`'s branch) and write its summary to the outbox for each
    recipient; False when it was already claimed (by this or another worker, now or before a restart)."""
    scope = scope or Scope()
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT 1 FROM morning_summaries WHERE day = $1 AND branch_id IS NOT DISTINCT FROM $2",
                               window.day, scope.branch_id):
            return False  # the common case of the loop: said already
        async with conn.transaction():
            figures = await read_figures(conn, window=window, now=now, scope=scope)
            text = morning.summary_text(figures)
            people = await recipients(conn, scope)
            claimed = await conn.fetchval(
                # Variables travel as JSON text: the caller's connection needs no jsonb codec.
                "INSERT INTO morning_summaries (day, since, figures, text, recipients, branch_id)"
                " VALUES ($1, $2, $3::text::jsonb, $4, $5::bigint[], $6)"
                " ON CONFLICT (day, branch_id) DO NOTHING RETURNING day",
                window.day, window.since, figures.model_dump_json(), text, [p["id"] for p in people], scope.branch_id,
            )
            if claimed is None:
                return False
            await writer.enqueue_staff_digest(conn, purpose=morning.purpose(window.day, scope.code), text=text,
                                              recipients=people, policy=policy, now=now)
    return True
