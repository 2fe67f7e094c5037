"""Browser tests of the staff console: the real app under uvicorn, a worker, the dispatcher, PostgreSQL,
Temporal, and Debian's chromium driven by Playwright.

The app listens on a free port in this process (same event loop as the tests), with the fast policy.
Each person signs in with their own one-time link in their own browser context (own cookies).
Screenshots of every page a test passes through go to test-artifacts/screenshots/ at 375 px and
1280 px wide.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright
from temporalio.client import Client

from api.app import create_app
from config import PROJECT_ROOT, Settings
from domain.enums import Level, Role
from domain.policy import fast_policy
from store.sessions import SessionRepository
from store.staff import StaffRepository
from tests.support import data
from tests.support.wait import until
from worker import build_dispatcher, build_worker

CHROMIUM = os.environ.get("INTAKE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
PHONE = ViewportSize(width=375, height=812)
DESKTOP = ViewportSize(width=1280, height=900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Staffer:
    """A staff member of the console tests."""

    key: str
    id: int
    name: str
    role: Role


# key -> (name, role, level). Names are unique to this suite (the database is shared by the session).
PEOPLE: dict[str, tuple[str, Role, Level | None]] = {
    "manager": ("陈经理", Role.manager, None),
    "director": ("王总", Role.director, None),
    "assistant_lead": ("刘主管", Role.assistant_lead, None),
    "consultant": ("孙顾问", Role.consultant, None),
    "designer": ("周设计", Role.designer, Level.chief),
    "designer2": ("吴设计", Role.designer, Level.chief),
    "assistant": ("林助理", Role.assistant, None),
}


@dataclass
class Console:
    """The running console and helpers to drive it as a person."""

    base: str
    browser: Browser
    pool: asyncpg.Pool
    settings: Settings
    people: dict[str, Staffer]
    contexts: list[BrowserContext] = field(default_factory=list)
    shots: list[str] = field(default_factory=list)

    async def link(self, staff_id: int) -> str:
        """A fresh personal sign-in link (what `intake staff link <id>` prints)."""
        code = await SessionRepository(self.pool).issue_link(staff_id=staff_id, ttl=timedelta(minutes=30))
        return self.settings.sign_in_url(code)

    async def sign_in(self, staff_id: int) -> Page:
        """A phone-sized browser of its own, signed in through the person's link."""
        context = await self.browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai")
        self.contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        await page.goto(await self.link(staff_id))
        await page.get_by_test_id("sign-in").click()
        await page.wait_for_url(f"{self.base}/console")
        return page

    async def shot(self, page: Page, name: str) -> None:
        """Screenshots of the page at 375 px and at 1280 px wide (then back to the phone)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "-", name)
        for label, size in (("375", PHONE), ("1280", DESKTOP)):
            await page.set_viewport_size(size)
            path = SCREENSHOTS / f"{safe}-{label}.png"
            await page.screenshot(path=str(path), full_page=True)
            self.shots.append(path.name)
        await page.set_viewport_size(PHONE)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium (apt-get install chromium); the tests are skipped without it only outside CI."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def console(
    client: Client, pool: asyncpg.Pool, pg_dsn: str, chromium_path: str
) -> AsyncIterator[Console]:
    """The app on a free port with a worker and the outbox dispatcher, and a headless chromium."""
    repo = StaffRepository(pool)
    people: dict[str, Staffer] = {}
    suffix = uuid.uuid4().hex[:4]
    for key, (name, role, level) in PEOPLE.items():
        s = await repo.add(name=f"{name}{suffix}", phone=data.unique_phone("17"), role=role, level=level)
        people[key] = Staffer(key=key, id=s.id, name=s.name, role=role)
    # New cases go to the longest-serving active manager (other suites may have added one first):
    # the console's manager is that person, so the callback is theirs.
    first = await repo.first_active(role=Role.manager)
    assert first is not None
    people["manager"] = Staffer(key="manager", id=first.id, name=first.name, role=Role.manager)

    port = _free_port()
    tq = f"console-{uuid.uuid4().hex[:10]}"
    settings = Settings(
        task_queue=tq,
        database_url=pg_dsn,
        request_timeout_seconds=5.0,
        api_port=port,
        console_base_url=f"http://127.0.0.1:{port}",
        temporal_ui_url="http://127.0.0.1:8233",
        recordings_dir=Path(tempfile.mkdtemp(prefix="console-recordings-")),
    )
    app = create_app(settings, temporal_client=client, pool=pool, policy=fast_policy())
    worker = build_worker(client, pool, settings, task_queue=tq)
    dispatcher = build_dispatcher(pool, settings)
    stop = asyncio.Event()
    sending = asyncio.create_task(dispatcher.run(stop))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    try:
        async with worker:
            await until(lambda: server.started or serving.done(), 20, "uvicorn listening")
            assert server.started, "the console's server did not start"
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
                try:
                    yield Console(
                        base=f"http://127.0.0.1:{port}", browser=browser, pool=pool, settings=settings, people=people
                    )
                finally:
                    await browser.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
        stop.set()
        await sending


async def text_of(page: Page, test_id: str) -> str:
    """The text of an element by its data-testid."""
    t: str = await page.get_by_test_id(test_id).inner_text()
    return t


def any_of(*values: Any) -> Any:
    """The first truthy value (for readable conditions)."""
    return next((v for v in values if v), None)
