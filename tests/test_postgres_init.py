"""deploy/postgres-init.sh on an existing volume (issue 19): run twice, and over a database whose objects
the superuser made (a deployment from before the users), it aborts nowhere and leaves the database, its
schema, tables and sequences owned by the migration user, with rows and sequences for the app.

On INTAKE_TEST_DATABASE_URL's server (roles and databases of unique names, dropped after), else on a
throwaway pgserver.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from config import PROJECT_ROOT
from store.db import migrate

SCRIPT = PROJECT_ROOT / "deploy" / "postgres-init.sh"


@contextmanager
def superuser_server(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """libpq variables (and PATH to psql) for the script, and a superuser DSN prefix `postgresql://…@…/`."""
    url = os.environ.get("INTAKE_TEST_DATABASE_URL")
    if url:
        parts = urlsplit(url)
        env = {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
               "POSTGRES_USER": parts.username or "postgres"}
        if parts.password:
            env["PGPASSWORD"] = parts.password
        yield env, f"postgresql://{{user}}:{{pw}}@{env['PGHOST']}:{env['PGPORT']}/{{db}}"
        return
    import pgserver

    server = pgserver.get_server(str(tmp_path / "pg"), cleanup_mode="delete")
    try:
        socket_dir = re.search(r"host=([^&]+)", server.get_uri()).group(1)  # type: ignore[union-attr]
        bindir = os.path.join(os.path.dirname(pgserver.__file__), "pginstall", "bin")
        yield ({"PGHOST": socket_dir, "POSTGRES_USER": "postgres", "PATH": f"{bindir}:{os.environ['PATH']}"},
               f"postgresql://{{user}}:{{pw}}@/{{db}}?host={socket_dir}")
    finally:
        server.cleanup()


def test_the_init_script_runs_twice_and_takes_over_an_existing_volume(tmp_path: Path) -> None:
    n = uuid.uuid4().hex[:8]
    names = {"TEMPORAL_DB_USER": f"temporal_{n}", "INTAKE_MIGRATE_DB_USER": f"migrate_{n}",
             "INTAKE_APP_DB_USER": f"app_{n}", "TEMPORAL_DB_NAME": f"temporal_{n}",
             "TEMPORAL_VISIBILITY_DB_NAME": f"temporal_vis_{n}", "INTAKE_DB_NAME": f"intake_init_{n}"}
    passwords = {"TEMPORAL_DB_PASSWORD": "t-pw", "INTAKE_MIGRATE_DB_PASSWORD": "m-pw", "INTAKE_APP_DB_PASSWORD": "a-pw"}
    with superuser_server(tmp_path) as (pg, dsn_format):
        env = {**os.environ, **pg, **names, **passwords}
        superuser = pg["POSTGRES_USER"]

        def dsn(user: str, pw: str, db: str) -> str:
            return dsn_format.format(user=user, pw=pw or pg.get("PGPASSWORD", ""), db=db)

        def run_script() -> None:
            proc = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
            assert "ERROR" not in proc.stderr, proc.stderr

        async def acl_of(db: str) -> object:
            conn = await asyncpg.connect(dsn(superuser, "", "postgres"))
            try:
                return await conn.fetchval("SELECT datacl::text FROM pg_database WHERE datname = $1", db)
            finally:
                await conn.close()

        acls = {db: asyncio.run(acl_of(db)) for db in ("postgres", "template1")}
        try:
            run_script()
            # An existing deployment: the superuser made objects in the application's database (its
            # migrations ran as the superuser before these users existed).
            asyncio.run(_as_superuser(dsn(superuser, "", names["INTAKE_DB_NAME"])))
            run_script()  # and once more: nothing exists twice, nothing aborts
            asyncio.run(_check(dsn, superuser, names))
        finally:
            asyncio.run(_drop(dsn(superuser, "", "postgres"), names, acls))


async def _as_superuser(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE legacy (id serial PRIMARY KEY, note text);"
                           " CREATE SEQUENCE loose_seq; CREATE VIEW legacy_notes AS SELECT note FROM legacy")
    finally:
        await conn.close()


async def _check(dsn: Callable[[str, str, str], str], superuser: str, names: dict[str, str]) -> None:
    db, migrate_user, app_user = names["INTAKE_DB_NAME"], names["INTAKE_MIGRATE_DB_USER"], names["INTAKE_APP_DB_USER"]
    su = await asyncpg.connect(dsn(superuser, "", db))
    try:
        owners = dict(await su.fetch(
            "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relname IN ('legacy', 'legacy_id_seq', 'loose_seq', 'legacy_notes')"))
        assert owners == dict.fromkeys(("legacy", "legacy_id_seq", "loose_seq", "legacy_notes"), migrate_user)
        assert await su.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public'") == migrate_user
        dbs = dict(await su.fetch("SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname = ANY($1)",
                                  [db, names["TEMPORAL_DB_NAME"], names["TEMPORAL_VISIBILITY_DB_NAME"]]))
        assert dbs == {db: migrate_user, names["TEMPORAL_DB_NAME"]: names["TEMPORAL_DB_USER"],
                       names["TEMPORAL_VISIBILITY_DB_NAME"]: names["TEMPORAL_DB_USER"]}
    finally:
        await su.close()
    # the migration user migrates; the app writes rows (old tables and new) and uses sequences, no DDL
    await migrate(dsn(migrate_user, "m-pw", db))
    app = await asyncpg.connect(dsn(app_user, "a-pw", db))
    try:
        assert await app.fetchval("INSERT INTO legacy (note) VALUES ('旧') RETURNING id") == 1
        assert await app.fetchval("SELECT nextval('loose_seq')") == 1
        assert await app.fetchval("INSERT INTO staff (name, phone, role) VALUES ('甲', '13900000000', 'manager')"
                                  " RETURNING id")
        for ddl in ("CREATE TABLE x (id int)", "DROP TABLE legacy", "TRUNCATE staff"):
            try:
                await app.execute(ddl)
            except asyncpg.InsufficientPrivilegeError:
                continue
            raise AssertionError(f"the app user could run {ddl}")
    finally:
        await app.close()


async def _drop(dsn: str, names: dict[str, str], acls: dict[str, object]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for key in ("INTAKE_DB_NAME", "TEMPORAL_DB_NAME", "TEMPORAL_VISIBILITY_DB_NAME"):
            await conn.execute(f'DROP DATABASE IF EXISTS "{names[key]}" WITH (FORCE)')
        for key in ("INTAKE_APP_DB_USER", "INTAKE_MIGRATE_DB_USER", "TEMPORAL_DB_USER"):
            await conn.execute(f'DROP ROLE IF EXISTS "{names[key]}"')
        # the script closes the shared databases to PUBLIC: give the server back as it was
        for db, acl in acls.items():
            await conn.execute("UPDATE pg_database SET datacl = $1::text::aclitem[] WHERE datname = $2", acl, db)
    finally:
        await conn.close()
