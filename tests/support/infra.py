"""Real infrastructure for tests: a Temporal dev server and a PostgreSQL database."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from devstack import temporal_binary

__all__ = ["compose_users_database", "database_beside", "fresh_database", "pgserver_uri", "temporal_binary"]


def pgserver_uri(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL with its data in `data_dir`; returns its URI."""
    return _pgserver(data_dir).get_uri()


def _pgserver(data_dir: Path) -> Any:
    import pgserver

    return pgserver.get_server(str(data_dir), cleanup_mode="delete")


def _with_database(uri: str, dbname: str) -> str:
    # Works for both postgresql://host:port/db and pgserver's postgresql://user:@/db?host=/socket
    base, sep, query = uri.partition("?")
    head, _, _old = base.rpartition("/")
    return f"{head}/{dbname}{sep}{query}"


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database for one test session: on INTAKE_TEST_DATABASE_URL, else on pgserver."""
    admin_uri = os.environ.get("INTAKE_TEST_DATABASE_URL")
    tmp: str | None = None
    server: Any = None
    if not admin_uri:
        tmp = tempfile.mkdtemp(prefix="intake-pg-")
        server = _pgserver(Path(tmp))
        admin_uri = server.get_uri()
    dbname = f"intake_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_uri)
    try:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    try:
        yield _with_database(admin_uri, dbname)
    finally:
        conn = await asyncpg.connect(admin_uri)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await conn.close()
        if server is not None:
            server.cleanup()  # stops the embedded server (and deletes its data) now, not at exit
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@asynccontextmanager
async def database_beside(dsn: str) -> AsyncIterator[str]:
    """A new, migrated database on the same server as `dsn`, dropped afterwards.

    For tests that must be alone in a table: an outbox dispatcher claims every due row it finds.
    """
    from store.db import migrate

    dbname = f"intake_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{dbname}"')
    finally:
        await conn.close()
    own = _with_database(dsn, dbname)
    try:
        await migrate(own)
        yield own
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        finally:
            await conn.close()


@contextmanager
def compose_users_database(data_dir: Path) -> Iterator[str]:
    """A throwaway PostgreSQL set up as compose sets it up (deploy/postgres-init.sh: users temporal /
    intake_migrate / intake_app with passwords t / m / a); yields its socket directory."""
    import re
    import subprocess

    import pgserver

    from config import PROJECT_ROOT

    server = pgserver.get_server(str(data_dir), cleanup_mode="delete")
    try:
        socket_dir = re.search(r"host=([^&]+)", server.get_uri()).group(1)  # type: ignore[union-attr]
        bindir = os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")
        env = {**os.environ, "POSTGRES_USER": "postgres", "PGHOST": socket_dir,
               "PATH": f"{bindir}:{os.environ['PATH']}", "TEMPORAL_DB_PASSWORD": "t",
               "INTAKE_MIGRATE_DB_PASSWORD": "m", "INTAKE_APP_DB_PASSWORD": "a"}
        proc = subprocess.run(["sh", str(PROJECT_ROOT / "deploy" / "postgres-init.sh")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        yield socket_dir
    finally:
        server.cleanup()
