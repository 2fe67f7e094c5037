"""Helpers for activity tests: staff members and case rows in the real test database.

The database is shared by the whole test session, so every helper makes unique phone numbers and tests
never assume they are alone in a table.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import time

import asyncpg
import pytest
import pytest_asyncio

from domain.enums import Level, Role, StaffStatus
from store.db import create_pool
from store.staff import Staff, StaffRepository
from tests.support.data import unique_phone
from tests.support.infra import database_beside

MakeStaff = Callable[..., Awaitable[Staff]]
MakeCase = Callable[..., Awaitable[int]]


@pytest.fixture
def make_staff(pool: asyncpg.Pool) -> MakeStaff:
    """Factory: add a staff member (designers default to level `designer`)."""
    repo = StaffRepository(pool)

    async def _make(
        name: str,
        role: Role,
        *,
        level: Level | None = None,
        status: StaffStatus = StaffStatus.active,
        communities: list[str] | None = None,
        office_schedule: dict[int, list[tuple[time, time]]] | None = None,
        max_open_cases: int | None = None,
    ) -> Staff:
        if role == Role.designer and level is None:
            level = Level.designer
        return await repo.add(
            name=name,
            phone=unique_phone(),
            role=role,
            level=level,
            status=status,
            communities=communities,
            office_schedule=office_schedule,
            max_open_cases=max_open_cases,
        )

    return _make


@pytest.fixture
def make_case(pool: asyncpg.Pool, make_staff: MakeStaff) -> MakeCase:
    """Factory: insert a `cases` row directly (as the API would) and return its id."""

    async def _make(
        *,
        client_name: str = "王建国",
        gender: str = "male",
        phone: str | None = None,
        scenario: str = "remote",
        source: str = "marketing",
        designer_id: int | None = None,
        assistant_id: int | None = None,
        status: str = "open",
    ) -> int:
        creator = await make_staff("业务顾问", Role.consultant)
        wf = f"test-{uuid.uuid4().hex[:12]}"
        case_id = await pool.fetchval(
            "INSERT INTO cases (workflow_id, source, scenario, stage, status, outcome, client_name,"
            " client_phone, client_gender, created_by, designer_id, assistant_id)"
            " VALUES ($1,$2,$3,'callback',$4,$5,$6,$7,$8,$9,$10,$11) RETURNING id",
            wf,
            source,
            scenario,
            status,
            "signed" if status == "closed" else None,
            client_name,
            phone or unique_phone(),
            gender,
            creator.id,
            designer_id,
            assistant_id,
        )
        return int(case_id)

    return _make


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A database for one test module alone (for tests that count or claim every row of a table)."""
    async with database_beside(pg_dsn) as dsn:
        yield dsn


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def own_pool(own_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the module's own database; a module uses it by overriding `pool` with it."""
    p = await create_pool(own_dsn, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()
