"""A database of its own with a seeded history (store/seed_history.py), for the insight and what-if suites.

Its own database, not the session's: the seeded cases and policy versions would change what other
suites count (reports, boards), and their cases would change the seeded rotation.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest_asyncio

from api.app import create_app
from config import Settings
from domain.enums import Level, Role
from domain.policy import Policy
from store.db import create_pool, migrate
from store.seed_history import Seeded, seed_history
from store.sessions import SessionRepository, csrf_token
from store.staff import StaffRepository
from tests.support.data import unique_phone
from tests.support.infra import fresh_database

# key -> (name, role, level); designers of every level, two assistants.
STAFF: dict[str, tuple[str, Role, Level | None]] = {
    "manager": ("陈建国", Role.manager, None), "director": ("王志强", Role.director, None),
    "assistant_lead": ("刘敏", Role.assistant_lead, None), "site_lead": ("赵磊", Role.site_lead, None),
    "consultant": ("孙丽", Role.consultant, None), "admin": ("管理员", Role.admin, None),
    "designer": ("周一鸣", Role.designer, Level.chief), "designer2": ("吴佳", Role.designer, Level.senior),
    "designer3": ("郑浩", Role.designer, Level.designer), "designer4": ("钱多多", Role.designer, Level.senior),
    "assistant": ("林小雨", Role.assistant, None), "assistant2": ("黄婷", Role.assistant, None),
}


@dataclass
class History:
    """The seeded database: its URL, a pool, the staff by key (id, token) and what was seeded."""

    dsn: str
    pool: asyncpg.Pool
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    seeded: Seeded | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def h(self, key: str) -> dict[str, str]:
        """Bearer header of a person."""
        return {"Authorization": f"Bearer {self.tokens[key]}"}


@asynccontextmanager
async def seeded_history(cases: int = 40, days: int = 120, policy: Policy | None = None) -> AsyncIterator[History]:
    """A fresh, migrated database with the staff above and `cases` closed cases over the last `days` days."""
    async with fresh_database() as dsn:
        await migrate(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=8)
        try:
            repo = StaffRepository(pool)
            hist = History(dsn=dsn, pool=pool)
            for key, (name, role, level) in STAFF.items():
                communities = ["翠湖苑", "阳光花园", "滨江一号"] if role in (Role.designer, Role.site_lead) else []
                s = await repo.add(name=name, phone=unique_phone("18"), role=role, level=level, communities=communities)
                hist.ids[key] = s.id
                hist.tokens[key] = await repo.issue_token(staff_id=s.id, label="insight tests")
            hist.seeded = await seed_history(pool, policy=policy or Policy(), count=cases, days=days, now=hist.now)
            yield hist
        finally:
            await pool.close()


@asynccontextmanager
async def app_client(hist: History) -> AsyncIterator[httpx.AsyncClient]:
    """The app over the seeded database, in process (these routes read PostgreSQL only: no Temporal)."""
    settings = Settings(database_url=hist.dsn, request_timeout_seconds=5.0,
                        recordings_dir=Path(tempfile.mkdtemp(prefix="history-recordings-")))
    app = create_app(settings, pool=hist.pool, policy=Policy())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test", timeout=30) as c:
        yield c


async def console_session(hist: History, key: str) -> tuple[dict[str, str], str]:
    """A console session of a person: its cookie and the CSRF token its forms carry."""
    repo = SessionRepository(hist.pool)
    code = await repo.issue_link(staff_id=hist.ids[key], ttl=timedelta(minutes=10))
    got = await repo.redeem_link(code=code, ttl=timedelta(hours=1), user_agent="test")
    assert got is not None
    return {"intake_session": got[0]}, csrf_token(got[0])


def history_fixtures(*, cases: int, days: int) -> tuple[Any, Any]:
    """Module fixtures `hist` (a seeded database of its own) and `http` (the app over it), for a test module."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def hist() -> AsyncIterator[History]:
        async with seeded_history(cases=cases, days=days) as h:
            yield h

    @pytest_asyncio.fixture(scope="module", loop_scope="session")
    async def http(hist: History) -> AsyncIterator[httpx.AsyncClient]:
        async with app_client(hist) as client:
            yield client

    return hist, http
