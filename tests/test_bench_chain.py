"""The chain benchmark (benchmarks/bench_chain.py) at a small size, in a database of its own: it seeds branches,
their people and cases, times every query of each person and judges each against its target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from benchmarks.bench_chain import LIST_P95_MS, REPORT_P95_MS, lines, run, shares
from store import league
from store.db import create_pool
from tests.support.infra import database_beside


def test_branches_are_uneven_the_biggest_first() -> None:
    s = shares(50)
    assert s == sorted(s, reverse=True) and s[0] / s[-1] == pytest.approx(5.0)


async def test_a_small_chain_is_seeded_timed_and_judged(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    async with database_beside(pg_dsn) as dsn:
        timings = await run(dsn, branches=5, designers=8, cases=600, repeat=2, seed=3, clean=False)
        pool = await create_pool(dsn, min_size=1, max_size=2)
        try:
            branches = [r["id"] for r in await pool.fetch("SELECT id FROM branches WHERE code LIKE 'c%' ORDER BY id")]
            assert len(branches) == 5
            assert await pool.fetchval("SELECT count(*) FROM staff WHERE role = 'designer'") == 5 * 8
            # every case in a seeded branch, worked by that branch's designer
            assert await pool.fetchval(
                "SELECT count(*) FROM cases c LEFT JOIN staff d ON d.id = c.designer_id"
                " WHERE c.branch_id = ANY($1::bigint[]) AND (d.id IS NULL OR d.branch_id = c.branch_id)",
                branches) == 600
            now = datetime.now(UTC)
            rows, total = await league.branch_league(pool, period_from=now - timedelta(days=400), period_to=now,
                                                     now=now, branches=branches)
            assert total["leads"] == 600 and sum(r["leads"] for r in rows) == 600
        finally:
            await pool.close()
    people = {t.who for t in timings}
    assert people == {"branch manager", "designer", "regional manager", "director"}
    assert any(t.query.startswith("GET /reports/branches") for t in timings)
    assert {t.target for t in timings if t.kind == "list"} == {LIST_P95_MS}
    assert {t.target for t in timings if t.kind == "report"} == {REPORT_P95_MS}
    out = capsys.readouterr().out
    assert "5 branches, 40 designers, 600 cases" in out
    assert all(("PASS" in line or "FAIL" in line) for line in lines(timings)[2:-1])
    assert f"{sum(t.passed for t in timings)} PASS" in out
