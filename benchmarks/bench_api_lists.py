"""Benchmark the API's list, task and report queries on 100,000 cases.

Seeds staff, cases (over a year), their steps and a few events into a PostgreSQL database given by
URL, then times the very SQL the API runs (``store.queries``): GET /intakes with its filters and both
paginations, GET /me/tasks for a manager, a designer and the assistant lead (by role), and
GET /reports/sla in each grouping. Prints median and p95 per query, and the plans with ``--explain``.

    python benchmarks/bench_api_lists.py --database-url postgresql://user:pw@host/db
    python benchmarks/bench_api_lists.py --embedded        # a throwaway pgserver database

The target database is migrated first. Seeded rows are recognisable (staff named ``bench-…``, phones
199…) and ``--cleanup`` removes them afterwards; use a scratch database anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from domain import permissions  # noqa: E402
from domain.enums import Role  # noqa: E402
from domain.permissions import Someone  # noqa: E402
from store import queries  # noqa: E402
from store.db import create_pool, migrate  # noqa: E402

SOURCES_BY_SCENARIO = {
    "remote": ["marketing", "online"],
    "office_visit": ["marketing", "online"],
    "site_office": ["site_office"],
    "walk_in": ["walk_in"],
}
STEPS_BY_SCENARIO = {
    "remote": ["callback", "assign_designer", "assign_assistant", "contact", "first_meeting", "debrief", "outcome"],
    "office_visit": ["callback", "assign_designer", "assign_assistant", "arrival", "first_meeting", "debrief",
                     "outcome"],
    "site_office": ["reception_review", "callback", "assign_designer", "contact", "assign_assistant",
                    "first_meeting", "debrief", "outcome"],
    "walk_in": ["assign_designer", "assign_assistant", "first_meeting", "debrief", "outcome"],
}
OWNER = {
    "reception_review": "manager", "callback": "manager", "assign_designer": "manager", "arrival": "manager",
    "debrief": "manager", "outcome": "manager", "assign_assistant": "assistant_lead", "contact": "designer",
    "first_meeting": "designer", "measure": "designer",
}  # fmt: skip
DURATION = {
    "reception_review": 1800, "callback": 900, "assign_designer": 1800, "assign_assistant": 3600,
    "contact": 7200, "arrival": 86400, "first_meeting": 86400, "debrief": 86400, "outcome": 30 * 86400,
}  # fmt: skip


async def seed_staff(conn: asyncpg.Connection, run: str) -> dict[str, list[int]]:
    """Managers, designers, assistants, an assistant lead and a director for the seeded cases."""
    plan = {"manager": 5, "designer": 60, "assistant": 20, "assistant_lead": 1, "director": 1}
    levels = ["junior", "designer", "senior", "chief"]
    out: dict[str, list[int]] = {}
    n = 0
    for role, count in plan.items():
        ids = []
        for i in range(count):
            n += 1
            ids.append(
                await conn.fetchval(
                    "INSERT INTO staff (name, phone, role, level) VALUES ($1, $2, $3, $4) RETURNING id",
                    f"bench-{run}-{role}-{i}",
                    f"198{(int(run, 16) % 10**5):05d}{n:03d}",
                    role,
                    levels[i % 4] if role == "designer" else None,
                )
            )
        out[role] = ids
    return out


# A branch's people for its cases: (branch id, staff by role, its share of the cases).
Team = tuple[int, dict[str, list[int]], float]


async def seed_cases(conn: asyncpg.Connection, staff: dict[str, list[int]], n: int, seed: int,
                     teams: Sequence[Team] | None = None) -> None:
    """`n` cases over the past year with their steps (COPY), 70 % closed, the open ones mid-way; spread over
    `teams` by their shares, each case worked by its branch's people (default: everyone, branch 1)."""
    rnd = random.Random(seed)
    teams = teams or [(1, staff, 1.0)]
    picks = rnd.choices(range(len(teams)), weights=[t[2] for t in teams], k=n)
    now = datetime.now(UTC)
    ids = [r[0] for r in await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence('cases', 'id')) FROM generate_series(1, $1)", n
    )]
    phone_base = await conn.fetchval("SELECT count(*) FROM cases")
    case_rows: list[tuple[Any, ...]] = []
    step_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []
    for i, cid in enumerate(ids):
        branch_id, staff, _share = teams[picks[i]]
        scenario = rnd.choice(list(SOURCES_BY_SCENARIO))
        source = rnd.choice(SOURCES_BY_SCENARIO[scenario])
        created = now - timedelta(seconds=rnd.uniform(0, 365 * 86400))
        manager = rnd.choice(staff["manager"])
        steps = STEPS_BY_SCENARIO[scenario]
        closed = rnd.random() < 0.7 and created < now - timedelta(days=2)
        n_done = len(steps) if closed else rnd.randint(0, len(steps) - 1)
        designer = rnd.choice(staff["designer"]) if n_done > steps.index("assign_designer") else None
        assistant = rnd.choice(staff["assistant"]) if n_done > steps.index("assign_assistant") else None
        t = created
        open_due = None
        overdue_case = False
        level = 0
        for k, step in enumerate(steps):
            owner_role = OWNER[step]
            owner_id = manager if owner_role == "manager" else (designer if owner_role == "designer" else None)
            due = t + timedelta(seconds=DURATION[step])
            if k < n_done:
                took = rnd.lognormvariate(6.5, 1.2)
                done_at = t + timedelta(seconds=took)
                esc = 0 if done_at <= due else rnd.choice([1, 1, 2, 3])
                step_rows.append((cid, f"{step}#1", step, 1, owner_role, owner_id, "done", "done", t, due,
                                  done_at, manager if owner_role != "designer" else designer, done_at > due, esc))
                t = done_at
            elif k == n_done:
                overdue = due < now
                esc = rnd.choice([0, 1, 2]) if overdue else 0
                overdue_case, level, open_due = overdue, esc, due
                step_rows.append((cid, f"{step}#1", step, 1, owner_role, owner_id, "open", None, t, due,
                                  None, None, overdue, esc))
        stage = ("signed" if rnd.random() < 0.4 else "lost") if closed else steps[min(n_done, len(steps) - 1)]
        outcome = stage if closed else None
        case_rows.append((
            cid, f"intake-{cid}", source, scenario, stage, "closed" if closed else "open", outcome,
            "预算不足" if outcome == "lost" else None, f"客户{i}", f"199{phone_base + i:08d}",
            rnd.choice(["male", "female", "unknown"]), "30-40", f"小区{rnd.randint(1, 300)}", None,
            rnd.randint(50, 200), rnd.choice([80_000, 150_000, 300_000, 900_000]), None,
            staff["manager"][0], manager, designer, assistant, overdue_case, level, open_due,
            created, t if closed else None, branch_id,
        ))
        event_rows.append((cid, 1, created, "created", None, None, "新客户建档"))
    await conn.copy_records_to_table(
        "cases",
        records=case_rows,
        columns=["id", "workflow_id", "source", "scenario", "stage", "status", "outcome", "outcome_reason",
                 "client_name", "client_phone", "client_gender", "client_age_range", "compound", "address",
                 "area_m2", "budget", "notes", "created_by", "manager_id", "designer_id", "assistant_id",
                 "overdue", "escalation_level", "step_due_at", "created_at", "closed_at", "branch_id"],
    )
    await conn.copy_records_to_table(
        "case_steps",
        records=step_rows,
        columns=["case_id", "step_key", "step", "attempt", "owner_role", "owner_id", "status", "result",
                 "opened_at", "due_at", "completed_at", "completed_by", "overdue", "escalation_level"],
    )
    await conn.copy_records_to_table(
        "case_events", records=event_rows, columns=["case_id", "seq", "at", "kind", "step", "actor_id", "text"]
    )
    print(f"seeded {len(case_rows):,} cases, {len(step_rows):,} steps, {len(event_rows):,} events")


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """Median and p95 in milliseconds (after one warm-up call)."""
    await fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


async def bench(pool: asyncpg.Pool, staff: dict[str, list[int]], repeat: int, explain: bool) -> list[str]:
    """Time every query; returns the table lines."""
    now = datetime.now(UTC)
    month = now - timedelta(days=30)
    designer = staff["designer"][7]
    manager = staff["manager"][1]
    # Whose lists: the manager sees every case; a designer the cases tied to them (domain/permissions.py).
    as_designer = queries.Viewer(staff_id=designer, scope=permissions.case_scope(Someone(designer, Role.designer)))

    def everything(staff_id: int) -> queries.Viewer:
        return queries.Viewer(staff_id=staff_id, scope=permissions.case_scope(Someone(staff_id, Role.manager)))
    first = (await queries.list_cases(pool, queries.CaseFilter(), limit=50, offset=0, cursor=None))[0]
    deep = first[-1]
    for _ in range(20):  # 20 pages deep by cursor
        page, _t = await queries.list_cases(
            pool, queries.CaseFilter(), limit=50, offset=0, cursor=(deep["created_at"], deep["id"])
        )
        deep = page[-1]

    def lst(flt: queries.CaseFilter, **kw: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: queries.list_cases(pool, flt, limit=kw.get("limit", 50), offset=kw.get("offset", 0),
                                          cursor=kw.get("cursor"))

    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("GET /intakes (first page, total)", lst(queries.CaseFilter())),
        ("GET /intakes?status=open", lst(queries.CaseFilter(status="open"))),
        ("GET /intakes?stage=callback", lst(queries.CaseFilter(stage="callback"))),
        ("GET /intakes?overdue=true", lst(queries.CaseFilter(overdue=True))),
        ("GET /intakes?designer_id=…", lst(queries.CaseFilter(designer_id=designer))),
        ("GET /intakes?source=online&created 30 d", lst(queries.CaseFilter(source="online", created_from=month))),
        ("GET /intakes?scenario=walk_in&status=open", lst(queries.CaseFilter(scenario="walk_in", status="open"))),
        ("GET /intakes cursor, page 21", lst(queries.CaseFilter(), cursor=(deep["created_at"], deep["id"]))),
        ("GET /intakes offset=5000", lst(queries.CaseFilter(), offset=5000)),
        ("GET /intakes as a designer (by relation)", lst(queries.CaseFilter(viewer=as_designer))),
        ("GET /me/tasks manager", lambda: queries.my_tasks(pool, viewer=everything(manager), role="manager",
                                                            limit=50, offset=0)),
        ("GET /me/tasks designer", lambda: queries.my_tasks(pool, viewer=as_designer, role="designer", limit=50,
                                                             offset=0)),
        ("GET /me/tasks assistant_lead (by role)", lambda: queries.my_tasks(
            pool, viewer=everything(staff["assistant_lead"][0]), role="assistant_lead", limit=50, offset=0)),
    ]
    def report(group: str, since: datetime) -> Callable[[], Awaitable[Any]]:
        return lambda: queries.sla_report(
            pool, period_from=since, period_to=now, group_by=group, source=None, scenario=None
        )

    for group in ("none", "source", "manager", "designer"):
        cases.append((f"GET /reports/sla group_by={group} (30 d)", report(group, month)))
    cases.append(("GET /reports/sla group_by=manager (365 d)", report("manager", now - timedelta(days=365))))

    lines = [f"{'query':<48} {'median ms':>10} {'p95 ms':>10}", "-" * 70]
    for name, fn in cases:
        med, p95 = await timed(fn, repeat)
        lines.append(f"{name:<48} {med:>10.1f} {p95:>10.1f}")
    if explain:
        flt = queries.CaseFilter(stage="callback")
        where = flt.where()
        plan = await pool.fetch(
            f"EXPLAIN ANALYZE SELECT id FROM cases c {where} ORDER BY c.created_at DESC, c.id DESC LIMIT 50",
            *flt.args,
        )
        lines += ["", "plan: list by stage", *(r[0] for r in plan)]
        plan = await pool.fetch(
            "EXPLAIN ANALYZE SELECT * FROM case_steps s JOIN cases c ON c.id = s.case_id"
            " WHERE s.status = 'open' AND c.status = 'open' AND s.owner_id = $1"
            " ORDER BY s.due_at NULLS LAST LIMIT 50",
            manager,
        )
        lines += ["", "plan: tasks by owner", *(r[0] for r in plan)]
    return lines


async def cleanup(conn: asyncpg.Connection, run: str) -> None:
    """Remove what this run seeded."""
    ids = [r[0] for r in await conn.fetch("SELECT id FROM staff WHERE name LIKE $1", f"bench-{run}-%")]
    await conn.execute("DELETE FROM cases WHERE manager_id = ANY($1::bigint[])", ids)
    await conn.execute("DELETE FROM staff WHERE id = ANY($1::bigint[])", ids)
    print("cleaned up")



async def database_url(stack: AsyncExitStack, ap: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The database a benchmark seeds: --database-url (or INTAKE_BENCH_DATABASE_URL), else with --embedded a
    fresh one (pgserver, or a database of its own on INTAKE_TEST_DATABASE_URL's server) kept for the run."""
    dsn: str | None = args.database_url
    if args.embedded:
        from tests.support.infra import fresh_database

        dsn = await stack.enter_async_context(fresh_database())
    if not dsn:
        ap.error("give --database-url (or INTAKE_BENCH_DATABASE_URL) or --embedded")
    return dsn


async def main() -> int:
    """Seed, analyse, time, print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("INTAKE_BENCH_DATABASE_URL"))
    ap.add_argument("--embedded", action="store_true", help="use a throwaway embedded PostgreSQL (pgserver)")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of two queries")
    ap.add_argument("--cleanup", action="store_true", help="delete the seeded rows at the end")
    args = ap.parse_args()
    async with AsyncExitStack() as stack:
        dsn = await database_url(stack, ap, args)
        await migrate(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)
        run = f"{random.Random().getrandbits(20):05x}"
        t0 = time.perf_counter()
        async with pool.acquire() as conn:
            staff = await seed_staff(conn, run)
            await seed_cases(conn, staff, args.cases, args.seed)
            await conn.execute("ANALYZE cases; ANALYZE case_steps; ANALYZE case_events; ANALYZE staff")
        print(f"seed + analyze: {time.perf_counter() - t0:.1f} s")
        total = await pool.fetchval("SELECT count(*) FROM cases")
        print(f"cases in the database: {total:,}\n")
        for line in await bench(pool, staff, args.repeat, args.explain):
            print(line)
        if args.cleanup:
            async with pool.acquire() as conn:
                await cleanup(conn, run)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
