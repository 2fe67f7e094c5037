"""Helpers for activity tests: staff members and case rows in the real test database.

The database is shared by the whole test session, so every helper makes unique phone numbers and tests
never assume they are alone in a table.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import time

import asyncpg
import pytest

from domain.enums import Level, Role, StaffStatus
from store.staff import Staff, StaffRepository
from tests.support.data import unique_phone

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
