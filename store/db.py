"""PostgreSQL plumbing: the connection pool (one factory for API, worker and CLI) and the migration runner."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only serialises concurrent `intake migrate` runs.
_MIGRATION_LOCK = 7_310_042


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to undo when a connection goes back to the pool: no code of this project leaves session state
    behind (no SET, LISTEN, advisory lock or cursor outside a transaction), and asyncpg still rolls back a
    transaction left open. asyncpg's default reset would cost a round trip on every release."""


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float | None = None
) -> asyncpg.Pool:
    """The one pool factory: connections decode json/jsonb; with `timeout`, no wait on the server outlasts it.

    `timeout` bounds connecting, every statement without a timeout of its own, and the cancellation
    that follows a timed-out statement: when the server hangs, asyncpg gives up on the cancel and
    terminates the connection, so a hung server cannot keep pool connections checked out forever.
    """
    bounds: dict[str, float] = {} if timeout is None else {"timeout": timeout, "command_timeout": timeout}
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection,
                                     reset=_no_reset, **bounds)
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, Path]]:
    """Versioned SQL files in order: (version, path); the version is the file name's stem."""
    return sorted((p.stem, p) for p in MIGRATIONS_DIR.glob("*.sql"))


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the versions applied now."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, path in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                applied_now.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied_now
