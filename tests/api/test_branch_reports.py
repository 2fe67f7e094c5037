"""Reports by branch (issue 22): two branches side by side in a database of their own.

Each branch's manager reads reports, the allocation ledger, insight and the board of their branch only, and
cannot ask for the other's with ``?branch=``; the director's league table (GET /reports/branches and the
console's 分公司排行) has both branches with the figures of known cases, and opens either branch's board.
Cases are seeded as the projection holds them (relative to the real present); staff and cases are put in
their branch directly in PostgreSQL (creation in a branch is branch-core's).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.enums import Level, Role
from domain.policy import fast_policy
from store.branches import BranchRepository
from store.db import create_pool
from store.sessions import SessionRepository
from store.staff import StaffRepository
from tests.support.data import unique_phone
from tests.support.infra import database_beside

NOW = datetime.now(UTC)
MIN = timedelta(minutes=1)


@dataclass
class Chain:
    dsn: str
    pool: asyncpg.Pool
    staff: dict[str, int]
    tokens: dict[str, str]
    branch: dict[str, int]  # code -> id
    cases: dict[str, int] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


async def _case(chain: Chain, key: str, branch: str, *, created: datetime, status: str = "open",
                outcome: str | None = None, designer: str | None = None) -> int:
    cols = {"workflow_id": f"intake-test-{uuid.uuid4().hex[:10]}", "source": "marketing", "scenario": "remote",
            "stage": outcome or "callback", "status": status, "outcome": outcome,
            "outcome_reason": "预算不足" if outcome == "lost" else None, "client_name": f"客户{key}",
            "client_phone": unique_phone("15"), "client_gender": "male", "created_by": chain.staff["consultant"],
            "manager_id": chain.staff[f"manager_{branch}"],
            "designer_id": chain.staff[designer] if designer else None, "created_at": created,
            "closed_at": created + timedelta(days=1) if status == "closed" else None}
    names = ", ".join(cols)
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    case_id: int = await chain.pool.fetchval(f"INSERT INTO cases ({names}) VALUES ({marks}) RETURNING id",
                                             *cols.values())
    # the branch as branch-core's creation will set it
    await chain.pool.execute("UPDATE cases SET branch_id = $1 WHERE id = $2", chain.branch[branch], case_id)
    chain.cases[key] = case_id
    return case_id


async def _step(chain: Chain, case_id: int, step: str, *, opened: datetime, due: datetime,
                took: timedelta | None = None, escalation: int = 0, owner: str | None = None) -> None:
    done = opened + took if took is not None else None
    await chain.pool.execute(
        "INSERT INTO case_steps (case_id, step_key, step, owner_role, owner_id, status, result, opened_at, due_at,"
        " completed_at, overdue, escalation_level) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        case_id, f"{step}#1", step, "designer" if step == "contact" else "manager",
        chain.staff[owner] if owner else None, "done" if done else "open", "done" if done else None,
        opened, due, done, (done or NOW) > due, escalation,
    )


async def _ledger(chain: Chain, case_id: int, designer: str, manager: str) -> None:
    await chain.pool.execute(
        "INSERT INTO allocation_ledger (case_id, event_key, designer_id, kind, decided_by, at)"
        " VALUES ($1, 'assign', $2, 'assign', $3, $4)",
        case_id, chain.staff[designer], chain.staff[manager], NOW - timedelta(days=3),
    )


async def seed(chain: Chain) -> None:
    """杭州 (hz): A signed (callback 10 min, on time), B lost (callback 30 min, late, escalated once),
    C open (callback 20 min, on time; the designer's contact an hour overdue, escalated twice), and O, signed
    60 days ago (outside the 30-day period). 南京 (nj): D open (callback not yet due), E signed (callback
    60 min, late, escalated twice), F signed (callback 40 min, on time)."""
    day = timedelta(days=1)
    t = NOW - 5 * day
    a = await _case(chain, "A", "hz", created=t, status="closed", outcome="signed", designer="designer_hz")
    await _step(chain, a, "callback", opened=t, due=t + 15 * MIN, took=10 * MIN)
    await _step(chain, a, "outcome", opened=t + day, due=t + 2 * day, took=MIN)
    await _ledger(chain, a, "designer_hz", "manager_hz")
    t = NOW - 4 * day
    b = await _case(chain, "B", "hz", created=t, status="closed", outcome="lost")
    await _step(chain, b, "callback", opened=t, due=t + 15 * MIN, took=30 * MIN, escalation=1)
    await _step(chain, b, "outcome", opened=t + day, due=t + 2 * day, took=MIN)
    t = NOW - 3 * day
    c = await _case(chain, "C", "hz", created=t, designer="designer_hz")
    await _step(chain, c, "callback", opened=t, due=t + 30 * MIN, took=20 * MIN)
    await _step(chain, c, "contact", opened=t + 20 * MIN, due=NOW - 60 * MIN, escalation=2, owner="designer_hz")
    t = NOW - 60 * day
    o = await _case(chain, "O", "hz", created=t, status="closed", outcome="signed")
    await _step(chain, o, "callback", opened=t, due=t + 15 * MIN, took=5 * MIN)

    t = NOW - 2 * day
    d = await _case(chain, "D", "nj", created=NOW - 10 * MIN)
    await _step(chain, d, "callback", opened=NOW - 10 * MIN, due=NOW + 60 * MIN)
    e = await _case(chain, "E", "nj", created=t, status="closed", outcome="signed", designer="designer_nj")
    await _step(chain, e, "callback", opened=t, due=t + 15 * MIN, took=60 * MIN, escalation=2)
    await _step(chain, e, "outcome", opened=t + day, due=t + 2 * day, took=MIN)
    await _ledger(chain, e, "designer_nj", "manager_nj")
    t = NOW - 1 * day
    f = await _case(chain, "F", "nj", created=t, status="closed", outcome="signed")
    await _step(chain, f, "callback", opened=t, due=t + 60 * MIN, took=40 * MIN)
    await _step(chain, f, "outcome", opened=t + day / 2, due=t + day, took=MIN)


@pytest_asyncio.fixture
async def chain(pg_dsn: str) -> AsyncIterator[Chain]:
    """A database of this test alone: branches hz (杭州) and nj (南京), a manager and a designer in each, a
    regional manager over both, the director (head office, branch 1), a consultant; the cases of :func:`seed`."""
    async with database_beside(pg_dsn) as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=8)
        try:
            branches = BranchRepository(pool)
            branch = {"main": 1}
            for code, name, city in (("hz", "杭州分公司", "杭州"), ("nj", "南京分公司", "南京")):
                branch[code] = (await branches.create(code=code, name=name, city=city)).id
            repo = StaffRepository(pool)
            staff: dict[str, int] = {}
            tokens: dict[str, str] = {}
            for key, name, role, level, home in (
                ("director", "王志强", Role.director, None, "main"),
                ("manager_hz", "陈杭", Role.manager, None, "hz"),
                ("manager_nj", "孙宁", Role.manager, None, "nj"),
                ("regional", "钱区域", Role.manager, None, "hz"),
                ("designer_hz", "周杭", Role.designer, Level.senior, "hz"),
                ("designer_nj", "吴宁", Role.designer, Level.senior, "nj"),
                ("consultant", "孙丽", Role.consultant, None, "hz"),
            ):
                staff[key] = (await repo.add(name=name, phone=unique_phone(), role=role, level=level)).id
                await pool.execute("UPDATE staff SET branch_id = $1 WHERE id = $2", branch[home], staff[key])
                tokens[key] = await repo.issue_token(staff_id=staff[key], label="branch reports")
            await pool.execute("INSERT INTO staff_branches (staff_id, branch_id) VALUES ($1, $2)",
                               staff["regional"], branch["nj"])
            chain = Chain(dsn=dsn, pool=pool, staff=staff, tokens=tokens, branch=branch)
            await seed(chain)
            yield chain
        finally:
            await pool.close()


@pytest_asyncio.fixture
async def http(chain: Chain, client: Client) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.model_validate({"database_url": chain.dsn, "notify_channel": "log",
                                        "request_timeout_seconds": 5.0})
    app = create_app(settings, temporal_client=client, pool=chain.pool, policy=fast_policy())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as h:
        yield h


async def cookie(chain: Chain, who: str) -> dict[str, str]:
    sessions = SessionRepository(chain.pool)
    code = await sessions.issue_link(staff_id=chain.staff[who], ttl=timedelta(minutes=5))
    got = await sessions.redeem_link(code=code, ttl=timedelta(hours=1), user_agent="branch reports")
    assert got is not None
    return {"intake_session": got[0]}


def figures(row: dict[str, object]) -> dict[str, object]:
    keys = ("leads", "steps_done", "steps_on_time", "on_time_share", "callbacks_done", "callback_median_seconds",
            "signed", "lost", "signed_rate", "escalations", "escalated_steps", "open_cases", "stalled_cases")
    return {k: row[k] for k in keys}


# --- the league table --------------------------------------------------------------------------------------


async def test_the_directors_league_table_has_both_branches_with_their_figures(chain: Chain,
                                                                              http: httpx.AsyncClient) -> None:
    r = await http.get("/reports/branches", headers=chain.h("director"))
    assert r.status_code == 200, r.text
    body = r.json()
    by_code = {row["branch"]["code"]: row for row in body["rows"]}
    assert set(by_code) == {"main", "hz", "nj"}  # every active branch, the install's own included
    assert figures(by_code["hz"]) == {
        "leads": 3, "steps_done": 5, "steps_on_time": 4, "on_time_share": pytest.approx(0.8),
        "callbacks_done": 3, "callback_median_seconds": pytest.approx(20 * 60),
        "signed": 1, "lost": 1, "signed_rate": pytest.approx(0.5),
        "escalations": 3, "escalated_steps": 2, "open_cases": 1, "stalled_cases": 1}
    assert figures(by_code["nj"]) == {
        "leads": 3, "steps_done": 4, "steps_on_time": 3, "on_time_share": pytest.approx(0.75),
        "callbacks_done": 2, "callback_median_seconds": pytest.approx(50 * 60),
        "signed": 2, "lost": 0, "signed_rate": pytest.approx(1.0),
        "escalations": 2, "escalated_steps": 1, "open_cases": 1, "stalled_cases": 0}
    assert figures(by_code["main"])["leads"] == 0 and by_code["main"]["on_time_share"] is None
    # best on-time share first; a branch without figures last
    assert [row["branch"]["code"] for row in body["rows"]] == ["hz", "nj", "main"]
    assert [row["rank"] for row in body["rows"]] == [1, 2, 3]
    assert by_code["hz"]["branch"] == {"id": chain.branch["hz"], "code": "hz", "name": "杭州分公司", "city": "杭州",
                                       "status": "active"}
    total = body["total"]
    assert total["branch"] is None
    assert figures(total) == {
        "leads": 6, "steps_done": 9, "steps_on_time": 7, "on_time_share": pytest.approx(7 / 9),
        "callbacks_done": 5, "callback_median_seconds": pytest.approx(30 * 60),
        "signed": 3, "lost": 1, "signed_rate": pytest.approx(0.75),
        "escalations": 5, "escalated_steps": 3, "open_cases": 2, "stalled_cases": 1}

    # a longer period takes in the case of 60 days ago
    r = await http.get("/reports/branches", headers=chain.h("director"),
                       params={"created_from": (NOW - timedelta(days=90)).isoformat()})
    hz = next(row for row in r.json()["rows"] if row["branch"]["code"] == "hz")
    assert (hz["leads"], hz["signed"], hz["callbacks_done"]) == (4, 2, 4)


async def test_only_head_office_reads_the_league_table(chain: Chain, http: httpx.AsyncClient) -> None:
    r = await http.get("/reports/branches", headers=chain.h("manager_hz"))
    assert r.status_code == 403 and r.json()["code"] == "head_office_only"
    r = await http.get("/reports/branches", headers=chain.h("designer_hz"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    # a regional manager: the branches they cover, not the others
    r = await http.get("/reports/branches", headers=chain.h("regional"))
    assert r.status_code == 200, r.text
    assert sorted(row["branch"]["code"] for row in r.json()["rows"]) == ["hz", "nj"]
    assert r.json()["total"]["leads"] == 6


# --- each branch sees its own ------------------------------------------------------------------------------


def callbacks(body: dict[str, object]) -> int:
    rows = body["rows"]
    assert isinstance(rows, list)
    return sum(int(row["done"]) for row in rows if row["step"] == "callback")


async def test_a_branch_manager_reads_their_branchs_reports_and_no_other(chain: Chain,
                                                                        http: httpx.AsyncClient) -> None:
    r = await http.get("/reports/sla", headers=chain.h("manager_hz"))
    assert r.status_code == 200 and callbacks(r.json()) == 3  # A, B, C; not E, F of 南京
    r = await http.get("/reports/sla", headers=chain.h("manager_nj"))
    assert r.status_code == 200 and callbacks(r.json()) == 2
    r = await http.get("/reports/sla", headers=chain.h("manager_hz"), params={"branch": "hz"})
    assert r.status_code == 200 and callbacks(r.json()) == 3
    for path in ("/reports/sla", "/reports/allocation", "/insight/habits"):
        r = await http.get(path, headers=chain.h("manager_hz"), params={"branch": "nj"})
        assert r.status_code == 403 and r.json()["code"] == "not_your_branch", (path, r.text)
    for code in ("nowhere", "杭州\x00", "HZ"):  # no such branch; not even a code
        r = await http.get("/reports/sla", headers=chain.h("manager_hz"), params={"branch": code})
        assert r.status_code == 422 and r.json()["code"] == "unknown_branch", (code, r.text)

    # the director: the chain, or either branch
    r = await http.get("/reports/sla", headers=chain.h("director"))
    assert callbacks(r.json()) == 5
    r = await http.get("/reports/sla", headers=chain.h("director"), params={"branch": "nj"})
    assert callbacks(r.json()) == 2

    # the allocation ledger: the branch's designers and cases
    r = await http.get("/reports/allocation", headers=chain.h("manager_hz"))
    names = {row["designer"]["name"]: row for row in r.json()["rows"]}
    assert set(names) == {"周杭"} and (names["周杭"]["assigned"], names["周杭"]["open_cases"]) == (1, 1)
    r = await http.get("/reports/allocation", headers=chain.h("director"))
    assert {row["designer"]["name"] for row in r.json()["rows"]} == {"周杭", "吴宁"}

    # insight: the habits over the branch's decided cases; another branch's designer's scorecard refused
    r = await http.get("/insight/habits", headers=chain.h("manager_hz"), params={"days": 30})
    assert r.status_code == 200 and r.json()["decided_cases"] == 2  # A and B
    r = await http.get("/insight/habits", headers=chain.h("director"), params={"days": 30, "branch": "nj"})
    assert r.json()["decided_cases"] == 2  # E and F
    r = await http.get(f"/insight/scorecards/{chain.staff['designer_nj']}", headers=chain.h("manager_hz"))
    assert r.status_code == 403 and r.json()["code"] == "not_your_branch"
    r = await http.get(f"/insight/scorecards/{chain.staff['designer_hz']}", headers=chain.h("manager_hz"))
    assert r.status_code == 200


# --- the console ---------------------------------------------------------------------------------------------


async def test_the_board_shows_a_branch_manager_their_branch_and_the_director_either(
        chain: Chain, http: httpx.AsyncClient) -> None:
    c, d = chain.cases["C"], chain.cases["D"]
    page = await http.get("/console/board", cookies=await cookie(chain, "manager_hz"))
    assert page.status_code == 200
    assert f'data-case="{c}"' in page.text and f'data-case="{d}"' not in page.text
    assert "吴宁" not in page.text  # the other branch's designer is no filter choice
    assert 'href="/console/branches"' not in page.text  # no league table in the navigation
    refused = await http.get("/console/board", params={"branch": "nj"}, cookies=await cookie(chain, "manager_hz"))
    assert refused.status_code == 403 and "只能查看您所在分公司" in refused.text
    assert (await http.get("/console/branches", cookies=await cookie(chain, "manager_hz"))).status_code == 403

    director = await cookie(chain, "director")
    league = await http.get("/console/branches", cookies=director)
    assert league.status_code == 200
    assert "杭州分公司" in league.text and "南京分公司" in league.text
    assert 'href="/console/board?branch=nj"' in league.text and 'href="/console/board?branch=hz"' in league.text
    assert "80%" in league.text and "75%" in league.text  # on-time shares of 杭州 and 南京
    page = await http.get("/console/board", params={"branch": "nj"}, cookies=director)
    assert page.status_code == 200 and "南京分公司" in page.text
    assert f'data-case="{d}"' in page.text and f'data-case="{c}"' not in page.text
    page = await http.get("/console/board", cookies=director)
    assert f'data-case="{d}"' in page.text and f'data-case="{c}"' in page.text
    reports = await http.get("/console/reports", params={"branch": "hz"}, cookies=director)
    assert reports.status_code == 200 and "杭州分公司" in reports.text
