"""Benchmark a chain: 50 branches × 30 designers and 100,000 cases, lists, tasks and reports per branch.

Seeds branches, their people (a manager, designers, assistants, an assistant lead, consultants each), a
director and a regional manager over five branches, and cases over a year spread unevenly over the
branches (the biggest about five times the smallest), with their steps, in a PostgreSQL database given by
URL; then times the very SQL the API runs (``store.queries``, ``store.league``, ``store.insight``) for
a branch's manager (the biggest branch), one of its designers, the regional manager and the director:

- lists (GET /intakes: first page with its total, filters, a cursor page) and tasks (GET /me/tasks);
- reports: GET /reports/sla and /reports/allocation of a branch and of the chain, the board, the funnel,
  the habits' case records (insight), and the league table GET /reports/branches.

Prints median and p95 per query and PASS/FAIL against the targets below; exits 0 either way (a report).

    python benchmarks/bench_chain.py --database-url postgresql://user:pw@host/db
    python benchmarks/bench_chain.py --embedded        # a throwaway database (pgserver, or a fresh one
                                                       # on INTAKE_TEST_DATABASE_URL's server)

SPEC names no millisecond figure for lists; the targets are the project's: a list or task page p95 ≤
100 ms, a report, the board or the league table p95 ≤ 1,000 ms (a fifth of the 5 s request bound).
The target database is migrated first; seeded rows are recognisable (branches ``c<run>-NN``, staff
``bench-<run>-…``) and ``--cleanup`` removes them afterwards; use a scratch database anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402

from benchmarks.bench_api_lists import Team, database_url, seed_cases, timed  # noqa: E402
from domain import permissions  # noqa: E402
from domain.enums import Role  # noqa: E402
from domain.permissions import Someone  # noqa: E402
from store import insight, league, queries  # noqa: E402
from store.db import create_pool, migrate  # noqa: E402

LIST_P95_MS = 100.0
REPORT_P95_MS = 1000.0
REGIONAL_BRANCHES = 5


@dataclass
class Chain:
    """What was seeded: the branches (biggest first), each branch's people, head office."""

    branches: list[int]
    teams: dict[int, dict[str, list[int]]]
    director: int
    regional: int


async def seed_chain(conn: asyncpg.Connection, run: str, n_branches: int, designers: int) -> Chain:
    """`n_branches` branches, each with a manager, `designers` designers, assistants, an assistant lead and
    two consultants; a director (head office, branch 1) and a regional manager over the first five."""
    ids: list[int] = []
    for i in range(n_branches):
        ids.append(await conn.fetchval(
            "INSERT INTO branches (code, name, city) VALUES ($1, $2, $3) RETURNING id",
            f"c{run}-{i:02d}", f"bench-{run} 分公司{i:02d}", f"城市{i:02d}"))
    plan = {"manager": 1, "designer": designers, "assistant": max(1, designers // 3), "assistant_lead": 1,
            "consultant": 2}
    levels = ["junior", "designer", "senior", "chief"]
    rows: list[tuple[Any, ...]] = []
    n = 0
    for b in ids:
        for role, count in plan.items():
            for k in range(count):
                n += 1
                rows.append((f"bench-{run}-{b}-{role}-{k}", f"197{int(run, 16) % 10**3:03d}{n:05d}", role,
                             levels[k % 4] if role == "designer" else None, b))
    rows.append((f"bench-{run}-director", f"196{int(run, 16) % 10**3:03d}00001", "director", None, 1))
    rows.append((f"bench-{run}-regional", f"196{int(run, 16) % 10**3:03d}00002", "manager", None, ids[0]))
    await conn.copy_records_to_table("staff", records=rows, columns=["name", "phone", "role", "level", "branch_id"])
    teams: dict[int, dict[str, list[int]]] = {b: {} for b in ids}
    director = regional = 0
    for r in await conn.fetch("SELECT id, name, role, branch_id FROM staff WHERE name LIKE $1 ORDER BY id",
                              f"bench-{run}-%"):
        if r["name"].endswith("-director"):
            director = r["id"]
        elif r["name"].endswith("-regional"):
            regional = r["id"]
        else:
            teams[r["branch_id"]].setdefault(r["role"], []).append(r["id"])
    await conn.executemany("INSERT INTO staff_branches (staff_id, branch_id) VALUES ($1, $2)",
                           [(regional, b) for b in ids[1:REGIONAL_BRANCHES]])
    return Chain(branches=ids, teams=teams, director=director, regional=regional)


def shares(n: int) -> list[float]:
    """Uneven branches: the first (biggest) about five times the last."""
    return [1.0 / (1 + 4 * i / max(1, n - 1)) for i in range(n)]


def in_branches(branches: list[int], *, staff_id: int = 0, role: Role = Role.manager, **kw: Any) -> queries.CaseFilter:
    """GET /intakes as someone working in `branches` asks it: the scope permissions.case_scope gives them (its
    branch condition included), as the API builds it."""
    scope = permissions.case_scope(Someone(staff_id, role, frozenset(branches)))
    return queries.CaseFilter(viewer=queries.Viewer(staff_id=staff_id, scope=scope), **kw)


@dataclass
class Timing:
    who: str
    query: str
    kind: str  # list | report
    median: float
    p95: float

    @property
    def target(self) -> float:
        return LIST_P95_MS if self.kind == "list" else REPORT_P95_MS

    @property
    def passed(self) -> bool:
        return self.p95 <= self.target


Fn = Callable[[], Awaitable[Any]]


async def bench(pool: asyncpg.Pool, chain: Chain, repeat: int) -> list[Timing]:
    """Time every query of each person; the biggest branch is the branch manager's."""
    now = datetime.now(UTC)
    month, quarter, year = now - timedelta(days=30), now - timedelta(days=90), now - timedelta(days=365)
    branch = chain.branches[0]
    team = chain.teams[branch]
    manager, designer = team["manager"][0], team["designer"][7]
    mine = [branch]
    region = sorted(chain.branches[:REGIONAL_BRANCHES])
    as_designer = queries.Viewer(staff_id=designer, scope=permissions.case_scope(
        Someone(designer, Role.designer, frozenset(mine))))
    unbranched_designer = queries.Viewer(staff_id=designer, scope=permissions.case_scope(Someone(designer, Role.designer)))
    as_manager = queries.Viewer(staff_id=manager, scope=permissions.case_scope(Someone(manager, Role.manager, frozenset(mine))))

    def lst(flt: queries.CaseFilter, cursor: tuple[datetime, int] | None = None, offset: int = 0) -> Fn:
        return lambda: queries.list_cases(pool, flt, limit=50, offset=offset, cursor=cursor)

    first, _ = await queries.list_cases(pool, in_branches(mine, staff_id=manager), limit=50, offset=0, cursor=None)
    deep = first[-1]
    for _ in range(10):  # 11 pages deep by cursor
        page, _t = await queries.list_cases(pool, in_branches(mine, staff_id=manager), limit=50, offset=0,
                                            cursor=(deep["created_at"], deep["id"]))
        if not page:  # a small chain: as deep as it goes
            break
        deep = page[-1]

    def sla(group: str, since: datetime, branches: list[int] | None) -> Fn:
        return lambda: queries.sla_report(pool, period_from=since, period_to=now, group_by=group, source=None,
                                          scenario=None, branches=branches)

    def table(since: datetime, branches: list[int] | None) -> Fn:
        return lambda: league.branch_league(pool, period_from=since, period_to=now, now=now, branches=branches)

    plan: list[tuple[str, str, str, Fn]] = [
        ("branch manager", "GET /intakes (first page, total)", "list", lst(in_branches(mine, staff_id=manager))),
        ("branch manager", "GET /intakes?status=open", "list", lst(in_branches(mine, staff_id=manager, status="open"))),
        ("branch manager", "GET /intakes?overdue=true", "list", lst(in_branches(mine, staff_id=manager, overdue=True))),
        ("branch manager", "GET /intakes?stage=callback", "list", lst(in_branches(mine, staff_id=manager, stage="callback"))),
        ("branch manager", "GET /intakes?designer_id=…", "list", lst(in_branches(mine, staff_id=manager, designer_id=designer))),
        ("branch manager", "GET /intakes cursor, page 12", "list",
         lst(in_branches(mine, staff_id=manager), cursor=(deep["created_at"], deep["id"]))),
        ("branch manager", "GET /me/tasks", "list", lambda: queries.my_tasks(
            pool, viewer=as_manager, role="manager", limit=50, offset=0)),
        ("branch manager", "GET /reports/sla (30 d)", "report", sla("none", month, mine)),
        ("branch manager", "GET /reports/sla group_by=designer (30 d)", "report", sla("designer", month, mine)),
        ("branch manager", "GET /reports/sla (365 d)", "report", sla("none", year, mine)),
        ("branch manager", "GET /reports/allocation (30 d)", "report", lambda: queries.allocation_report(
            pool, period_from=month, period_to=now, branches=mine)),
        ("branch manager", "board (open cases)", "report", lambda: queries.board_cases(pool, branches=mine)),
        ("branch manager", "funnel by designer (30 d)", "report", lambda: queries.funnel(
            pool, period_from=month, period_to=now, group_by="designer", branches=mine)),
        ("branch manager", "insight case records (90 d)", "report", lambda: insight.case_records(
            pool, period_from=quarter, period_to=now, branches=mine)),
        ("designer", "GET /intakes (own cases, in their branch)", "list",
         lst(in_branches(mine, staff_id=designer, role=Role.designer))),
        ("designer", "GET /intakes (own cases, no branch condition)", "list",
         lst(queries.CaseFilter(viewer=unbranched_designer))),
        ("designer", "GET /me/tasks", "list", lambda: queries.my_tasks(
            pool, viewer=as_designer, role="designer", limit=50, offset=0)),
        ("regional manager", "GET /intakes (5 branches)", "list", lst(in_branches(region, staff_id=chain.regional))),
        ("regional manager", "GET /reports/branches (5 branches, 30 d)", "report", table(month, region)),
        ("director", "GET /intakes (chain, first page, total)", "list", lst(queries.CaseFilter())),
        ("director", "GET /intakes?overdue=true (chain)", "list", lst(queries.CaseFilter(overdue=True))),
        ("director", "GET /reports/branches (30 d)", "report", table(month, None)),
        ("director", "GET /reports/branches (365 d)", "report", table(year, None)),
        ("director", "GET /reports/sla (chain, 30 d)", "report", sla("none", month, None)),
        ("director", "GET /reports/sla?branch=… (30 d)", "report", sla("none", month, mine)),
        ("director", "board (chain, first 300)", "report", lambda: queries.board_cases(pool)),
        ("director", "board ?branch=…", "report", lambda: queries.board_cases(pool, branches=mine)),
        ("director", "insight case records (chain, 90 d)", "report", lambda: insight.case_records(
            pool, period_from=quarter, period_to=now)),
    ]
    out = []
    for who, name, kind, fn in plan:
        med, p95 = await timed(fn, repeat)
        out.append(Timing(who, name, kind, med, p95))
    return out


def lines(timings: list[Timing]) -> list[str]:
    """The table: who, query, median, p95, target, verdict; then the count of failures."""
    head = f"{'who':<17} {'query':<46} {'median ms':>10} {'p95 ms':>9} {'target':>9}  verdict"
    out = [head, "-" * len(head)]
    for t in timings:
        out.append(f"{t.who:<17} {t.query:<46} {t.median:>10.1f} {t.p95:>9.1f} {'≤ ' + format(t.target, '.0f'):>9}"
                   f"  {'PASS' if t.passed else 'FAIL'}")
    failed = sum(not t.passed for t in timings)
    out.append(f"\n{len(timings) - failed} PASS, {failed} FAIL (p95 against: lists and tasks ≤ {LIST_P95_MS:.0f} ms,"
               f" reports ≤ {REPORT_P95_MS:.0f} ms)")
    return out


async def cleanup(conn: asyncpg.Connection, run: str, chain: Chain) -> None:
    """Remove what this run seeded."""
    await conn.execute("DELETE FROM cases WHERE branch_id = ANY($1::bigint[])", chain.branches)
    await conn.execute("DELETE FROM staff WHERE name LIKE $1", f"bench-{run}-%")
    await conn.execute("DELETE FROM branches WHERE id = ANY($1::bigint[])", chain.branches)
    print("cleaned up")


async def run(dsn: str, *, branches: int, designers: int, cases: int, repeat: int, seed: int,
              clean: bool) -> list[Timing]:
    """Migrate, seed, analyse, time; print as it goes."""
    await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        tag = f"{random.Random().getrandbits(12):03x}"
        t0 = time.perf_counter()
        async with pool.acquire() as conn:
            chain = await seed_chain(conn, tag, branches, designers)
            weights = shares(branches)
            teams: list[Team] = [(b, chain.teams[b], w) for b, w in zip(chain.branches, weights, strict=True)]
            await seed_cases(conn, {}, cases, seed, teams=teams)
            await conn.execute("ANALYZE cases; ANALYZE case_steps; ANALYZE case_events; ANALYZE staff;"
                               " ANALYZE branches; ANALYZE allocation_ledger")
        print(f"seed + analyze: {time.perf_counter() - t0:.1f} s")
        counts = await pool.fetchrow(
            "SELECT (SELECT count(*) FROM cases) AS cases, (SELECT count(*) FROM case_steps) AS steps,"
            " (SELECT count(*) FROM staff WHERE role = 'designer' AND name LIKE $1) AS designers,"
            " (SELECT count(*) FROM cases WHERE branch_id = $2) AS biggest,"
            " (SELECT count(*) FROM cases WHERE branch_id = $3) AS smallest",
            f"bench-{tag}-%", chain.branches[0], chain.branches[-1])
        print(f"{branches} branches, {counts['designers']:,} designers, {counts['cases']:,} cases"
              f" ({counts['steps']:,} steps); the biggest branch {counts['biggest']:,} cases,"
              f" the smallest {counts['smallest']:,}\n")
        timings = await bench(pool, chain, repeat)
        for line in lines(timings):
            print(line)
        if clean:
            async with pool.acquire() as conn:
                await cleanup(conn, tag, chain)
        return timings
    finally:
        await pool.close()


async def main(argv: list[str] | None = None) -> int:
    """Parse the flags, find a database, run."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=os.environ.get("INTAKE_BENCH_DATABASE_URL"))
    ap.add_argument("--embedded", action="store_true",
                    help="a throwaway database (pgserver, or a fresh one on INTAKE_TEST_DATABASE_URL's server)")
    ap.add_argument("--branches", type=int, default=50)
    ap.add_argument("--designers", type=int, default=30, help="designers per branch")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cleanup", action="store_true", help="delete the seeded rows at the end")
    args = ap.parse_args(argv)
    if args.branches < REGIONAL_BRANCHES or args.designers < 8:
        ap.error(f"at least {REGIONAL_BRANCHES} branches and 8 designers per branch")
    async with AsyncExitStack() as stack:
        dsn = await database_url(stack, ap, args)
        await run(dsn, branches=args.branches, designers=args.designers, cases=args.cases, repeat=args.repeat,
                  seed=args.seed, clean=args.cleanup)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
