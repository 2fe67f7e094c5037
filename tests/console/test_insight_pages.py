"""The insight, what-if and policy pages in a real headless chromium, on a seeded history of their own.

Screenshots at 375 px and 1280 px go to test-artifacts/screenshots/ (insight-*, whatif-*, policy-*).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import uvicorn
from playwright.async_api import async_playwright, expect

from api.app import create_app
from config import Settings
from domain.policy import Policy
from tests.console.conftest import Console, Staffer, _free_port
from tests.support.history import STAFF, History, history_fixtures
from tests.support.wait import until

hist = history_fixtures(cases=80, days=150)[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ui(hist: History, chromium_path: str) -> AsyncIterator[Console]:
    """The app over the seeded database on a free port (no Temporal needed by these pages), and chromium."""
    port = _free_port()
    settings = Settings(database_url=hist.dsn, request_timeout_seconds=5.0, api_port=port,
                        console_base_url=f"http://127.0.0.1:{port}",
                        recordings_dir=Path(tempfile.mkdtemp(prefix="insight-ui-")))
    app = create_app(settings, pool=hist.pool, policy=Policy())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    people = {k: Staffer(key=k, id=hist.ids[k], name=v[0], role=v[1]) for k, v in STAFF.items()}
    try:
        await until(lambda: server.started or serving.done(), 20, "uvicorn listening")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
            try:
                yield Console(base=f"http://127.0.0.1:{port}", browser=browser, pool=hist.pool, settings=settings,
                              people=people)
            finally:
                await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


async def test_the_team_and_a_designer_scorecard_render_with_charts(ui: Console) -> None:
    page = await ui.sign_in(ui.people["manager"].id)
    await page.get_by_role("link", name="考核").click()
    await page.wait_for_url("**/console/insight")
    await page.goto(f"{ui.base}/console/insight?days=180")
    await expect(page.get_by_test_id("habits")).to_contain_text("样本太少")
    await expect(page.locator("#chart-habits")).to_have_attribute("data-drawn", "true")
    await expect(page.locator("#chart-team")).to_have_attribute("data-drawn", "true")
    await ui.shot(page, "insight-team")
    await page.get_by_role("link", name="周一鸣").first.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("周一鸣的流程执行")
    await expect(page.locator("#chart-weeks")).to_have_attribute("data-drawn", "true")
    await ui.shot(page, "insight-scorecard-by-manager")

    designer = await ui.sign_in(ui.people["designer2"].id)
    await designer.get_by_role("link", name="考核").click()
    await expect(designer.get_by_role("heading", level=1)).to_contain_text("吴佳的流程执行")
    await expect(designer.get_by_test_id("themes")).to_be_visible()
    await ui.shot(designer, "insight-own-scorecard")
    # A colleague's card is refused, in Chinese.
    response = await designer.goto(f"{ui.base}/console/insight/staff/{ui.people['designer'].id}")
    assert response is not None and response.status == 403
    await expect(designer.locator("main")).to_contain_text("只能查看自己的考核记录")


async def test_the_admin_edits_the_policy_runs_the_what_if_and_saves(ui: Console) -> None:
    page = await ui.sign_in(ui.people["admin"].id)
    await page.get_by_role("link", name="规则").click()
    await expect(page.get_by_test_id("current-version")).to_contain_text("配置文件的规则")
    await ui.shot(page, "policy-form")
    await page.locator('input[name="durations.contact"]').fill("PT4H")
    await page.locator('input[name="reclaim_at_level"]').fill("")
    await page.locator('input[name="note"]').fill("联系客户放宽到 4 小时，不再掉保")
    await page.get_by_test_id("preview").click()
    await expect(page.get_by_test_id("diff")).to_contain_text("PT4H")
    await ui.shot(page, "policy-diff")
    await page.get_by_test_id("whatif").click()
    await expect(page.get_by_test_id("whatif-summary")).to_be_visible(timeout=30_000)
    await expect(page.get_by_test_id("reproduced")).to_contain_text("完全一致")
    await expect(page.locator("#chart-fairness")).to_have_attribute("data-drawn", "true")
    await ui.shot(page, "whatif-run")
    # Back to the edit (the what-if opened from the diff), and save it this time.
    await page.goto(f"{ui.base}/console/policy")
    await page.locator('input[name="durations.contact"]').fill("PT4H")
    await page.locator('input[name="reclaim_at_level"]').fill("")
    await page.locator('input[name="note"]').fill("联系客户放宽到 4 小时，不再掉保")
    await page.get_by_test_id("preview").click()
    await page.get_by_test_id("save").click()
    await expect(page.get_by_test_id("saved")).to_contain_text("版本 #1")
    await expect(page.get_by_test_id("versions")).to_contain_text("联系客户放宽到 4 小时")
    await ui.shot(page, "policy-saved")

    manager = await ui.sign_in(ui.people["manager"].id)
    await manager.get_by_role("link", name="推演").click()
    await expect(manager.get_by_test_id("whatif-form")).to_be_visible()
    await ui.shot(manager, "whatif-form")
