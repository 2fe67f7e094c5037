"""The console with two branches (issue 22): the case page names the case's branch; the director moves a
case to another branch from it; the old branch's manager then no longer finds it."""

from __future__ import annotations

import uuid

import httpx

from domain.enums import Level, Role
from store.branches import BranchRepository
from store.staff import StaffRepository
from tests.console.conftest import Console, text_of
from tests.support import data


async def test_the_director_transfers_a_case_from_its_page(console: Console) -> None:
    c = console
    branch = await BranchRepository(c.pool).create(code=f"sz-{uuid.uuid4().hex[:8]}", name="深圳分公司", city="深圳")
    repo = StaffRepository(c.pool)
    sz_manager = await repo.add(name="深经理", phone=data.unique_phone("17"), role=Role.manager, branch_id=branch.id)
    await repo.add(name="深设计", phone=data.unique_phone("17"), role=Role.designer, level=Level.senior,
                   branch_id=branch.id)
    token = await repo.issue_token(staff_id=c.people["consultant"].id, label="console branches")
    async with httpx.AsyncClient(base_url=c.base) as http:
        r = await http.post("/intakes", headers={"Authorization": f"Bearer {token}"}, json={
            "source": "online", "scenario": "remote", "client": {
                "name": "赵女士", "phone": data.unique_phone("17"), "gender": "female", "compound": "海景花园"}})
    assert r.status_code == 201, r.text
    case_id = r.json()["id"]

    page = await c.sign_in(c.people["director"].id)
    await page.goto(f"{c.base}/console/cases/{case_id}")
    assert await text_of(page, "branch") == "总店"
    await page.get_by_test_id("transfer").locator("summary").click()
    await page.select_option("#t-branch", branch.code)
    await page.fill("#t-reason", "客户搬到深圳")
    await c.shot(page, "branches-01-transfer-form")
    await page.get_by_role("button", name="转分公司").click()
    await page.wait_for_url(f"{c.base}/console/cases/{case_id}?ok=transfer")
    assert await text_of(page, "flash") == "已转分公司"
    assert await text_of(page, "branch") == "深圳分公司"
    assert "客户搬到深圳" in await page.content()
    assert c.people["manager"].name not in await page.get_by_test_id("not-mine-callback").locator("..").inner_text()
    await c.shot(page, "branches-02-transferred")
    row = await c.pool.fetchrow("SELECT manager_id, branch_id FROM cases WHERE id = $1", case_id)
    assert row["branch_id"] == branch.id and row["manager_id"] == sz_manager.id

    # the old branch's manager: no such case
    manager = await c.sign_in(c.people["manager"].id)
    response = await manager.goto(f"{c.base}/console/cases/{case_id}")
    assert response is not None and response.status == 404

    # the director's league table lists both branches, each with a link to its own board, which shows the
    # moved case; the old branch's manager's board no longer does
    await page.goto(f"{c.base}/console/branches")
    league = page.get_by_test_id("league-table")
    assert await league.locator("tr[data-branch='main']").count() == 1
    row = league.locator(f"tr[data-branch='{branch.code}']")
    assert "深圳分公司" in await row.inner_text()
    await c.shot(page, "branches-03-league")
    await row.get_by_role("link", name="看板").click()
    await page.wait_for_url(f"{c.base}/console/board?branch={branch.code}")
    assert await text_of(page, "branch-name") == "深圳分公司"
    assert f"/console/cases/{case_id}" in await page.content()
    await c.shot(page, "branches-04-board")
    await manager.goto(f"{c.base}/console/board")
    assert f"/console/cases/{case_id}" not in await manager.content()
