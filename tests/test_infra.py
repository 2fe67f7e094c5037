"""The test infrastructure itself works: real Temporal, real PostgreSQL, migrations applied."""

from __future__ import annotations

import asyncpg
from temporalio.client import Client


async def test_database_is_migrated(pool: asyncpg.Pool) -> None:
    versions = [r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations")]
    assert "001_init" in versions
    # the one-open-case-per-phone rule lives in the database
    idx = await pool.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'cases_open_phone_uq'")
    assert "'starting'::text, 'open'::text" in idx  # a case being created counts too


async def test_search_attributes_registered(client: Client) -> None:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    for name in ("IntakeStage", "StepDueAt", "Overdue", "EscalationLevel", "Designer", "Assistant"):
        assert name in resp.custom_attributes
