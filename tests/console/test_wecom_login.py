"""企业微信登录 in a real chromium: the console's sign-in page → WeCom's authorize page (a local peer that
signs in whoever the test says and redirects back with a code) → the console, signed in as that person.
A code for someone nobody registered, or for someone outside the corp, leaves the browser signed out
with the reason; a callback whose state is not the browser's own changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import SecretStr
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.enums import Level, Role
from domain.policy import fast_policy
from store.staff import Staff, StaffRepository
from tests.activities.peer import http_peer
from tests.api.conftest import make_http
from tests.console.conftest import PHONE, SCREENSHOTS, _free_port
from tests.support import data
from tests.support.wait import until
from tests.support.wecom_peer import AGENT_ID, CORP_ID, SECRET, FakeWeCom

SIGNED_IN_HOME = re.compile(r".*/console(#.*)?$")


@dataclass
class WeComConsole:
    base: str
    browser: Browser
    fake: FakeWeCom
    person: Staff
    pool: asyncpg.Pool
    client: Client

    async def page(self) -> Page:
        """A phone-sized browser of its own (own cookies)."""
        context = await self.browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai")
        page = await context.new_page()
        page.set_default_timeout(15_000)
        return page


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}-375.png"), full_page=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wecom_console(client: Client, pool: asyncpg.Pool, pg_dsn: str, chromium_path: str
                        ) -> AsyncIterator[WeComConsole]:
    """The console with WeCom configured against a local peer, and a designer registered with a WeCom account."""
    fake = FakeWeCom()
    userid = f"zhou.{uuid.uuid4().hex[:6]}"
    person = await StaffRepository(pool).add(name=f"周设计{userid[-4:]}", phone=data.unique_phone("17"),
                                             role=Role.designer, level=Level.chief, wecom_userid=userid)
    fake.members.add(userid)
    port = _free_port()
    with http_peer(fake) as peer:
        settings = Settings(
            task_queue=f"wecom-login-{uuid.uuid4().hex[:6]}", database_url=pg_dsn, api_port=port,
            console_base_url=f"http://127.0.0.1:{port}", wecom_corp_id=CORP_ID, wecom_agent_id=AGENT_ID,
            wecom_secret=SecretStr(SECRET), wecom_api_base=peer.url, wecom_oauth_base=peer.url,
        )  # fmt: skip
        app = create_app(settings, temporal_client=client, pool=pool, policy=fast_policy())
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        serving = asyncio.create_task(server.serve())
        try:
            await until(lambda: server.started or serving.done(), 20, "uvicorn listening")
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
                try:
                    yield WeComConsole(base=f"http://127.0.0.1:{port}", browser=browser, fake=fake, person=person,
                                       pool=pool, client=client)
                finally:
                    await browser.close()
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 15)


async def _session_cookie(page: Page) -> str | None:
    return next((c["value"] for c in await page.context.cookies() if c["name"] == "intake_session"), None)


async def test_a_registered_member_signs_in_from_wecom(wecom_console: WeComConsole) -> None:
    c = wecom_console
    c.fake.signing_in = c.person.wecom_userid
    page = await c.page()
    await page.goto(f"{c.base}/console/login")
    button = page.get_by_test_id("wecom-login")
    await expect(button).to_have_text("企业微信登录")
    await shot(page, "wecom-01-login")
    await button.click()  # → WeCom's authorize page → the callback → the console home
    await page.wait_for_url(SIGNED_IN_HOME)
    await expect(page.get_by_test_id("who")).to_contain_text(c.person.name)
    await shot(page, "wecom-02-signed-in")
    assert await _session_cookie(page) is not None
    # WeCom was asked who the code belongs to, with the corp's token; the code worked once
    assert len(c.fake.tokens_issued) == 1 and not c.fake.codes
    await page.context.close()


async def test_an_unregistered_or_outside_account_stays_signed_out(wecom_console: WeComConsole) -> None:
    c = wecom_console
    for who, reason in ((f"stranger{uuid.uuid4().hex[:6]}", "没有登记给在职员工"),
                        (("openid", "o-outsider"), "不是本企业的企业微信成员")):
        c.fake.signing_in = who
        page = await c.page()
        await page.goto(f"{c.base}/console/login")
        await page.get_by_test_id("wecom-login").click()
        await page.wait_for_url(re.compile(r".*/console/login/wecom/callback\?.*"))
        await expect(page.locator(".alert")).to_contain_text(reason)
        await expect(page.get_by_test_id("wecom-login")).to_be_visible()  # try again
        if isinstance(who, str):
            await shot(page, "wecom-03-unknown-account")
        assert await _session_cookie(page) is None
        await page.goto(f"{c.base}/console")
        assert page.url.endswith("/console/login")  # still signed out
        await page.context.close()


async def test_a_callback_not_started_by_this_browser_changes_nothing(wecom_console: WeComConsole) -> None:
    c = wecom_console
    # someone else's code (login CSRF): a valid code, but this browser never started a sign-in
    c.fake.codes["forged-code"] = {"userid": c.person.wecom_userid}
    page = await c.page()
    await page.goto(f"{c.base}/console/login/wecom/callback?code=forged-code&state=whatever")
    await expect(page.locator(".alert")).to_contain_text("已过期或来源不明")
    assert await _session_cookie(page) is None and "forged-code" in c.fake.codes  # WeCom never even asked
    await page.context.close()

    # an open redirect is refused: `next` only ever leads inside the console
    c.fake.signing_in = c.person.wecom_userid
    page = await c.page()
    await page.goto(f"{c.base}/console/login?next=https://evil.example/x")
    await page.get_by_test_id("wecom-login").click()
    await page.wait_for_url(SIGNED_IN_HOME)
    assert page.url.startswith(c.base)
    await page.context.close()


async def test_without_wecom_settings_the_login_page_has_no_wecom_button(wecom_console: WeComConsole) -> None:
    c = wecom_console
    app = create_app(Settings(database_url="postgresql://unused"), temporal_client=c.client, pool=c.pool,
                     policy=fast_policy())
    async with make_http(app) as http:
        page = await http.get("/console/login")
        assert page.status_code == 200 and "企业微信登录" not in page.text
        r = await http.get("/console/login/wecom")
        assert r.status_code == 404 and "未配置企业微信登录" in r.text
