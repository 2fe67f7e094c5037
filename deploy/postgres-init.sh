#!/bin/sh
# PostgreSQL users with least privilege (docker-compose.yml mounts this into
# /docker-entrypoint-initdb.d; it runs there once, when the data volume is created, as the superuser).
#
#   temporal        owns the databases temporal and temporal_visibility, nothing else; cannot create
#                   databases or roles, cannot connect to the application's database.
#   intake_migrate  owns the application's database, its schema and every object in it (runs
#                   `intake migrate`: DDL), nothing outside it.
#   intake_app      what the API and the worker use: read and write rows of the application's tables,
#                   use their sequences; no DDL, no TRUNCATE, no other database.
#
# The superuser (POSTGRES_USER) is used by nothing but this script and the healthcheck.
#
# Safe to run again, and on an existing volume (docs/operations.md, "PostgreSQL users on an existing
# volume"): roles and databases that exist are kept (their passwords and attributes set again), and
# ownership and grants are set on what is already there: the database, the schema, its tables,
# sequences, views and functions (e.g. a deployment whose migrations ran as the superuser). Run it as
# the superuser with the same variables, e.g. `docker compose exec postgresql sh
# /docker-entrypoint-initdb.d/10-users.sh`.
#
# The names can be changed (a server shared with other things; the tests use unique ones): TEMPORAL_DB_USER,
# INTAKE_MIGRATE_DB_USER, INTAKE_APP_DB_USER, TEMPORAL_DB_NAME, TEMPORAL_VISIBILITY_DB_NAME, INTAKE_DB_NAME.
set -eu

: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
: "${INTAKE_MIGRATE_DB_PASSWORD:?set INTAKE_MIGRATE_DB_PASSWORD}"
: "${INTAKE_APP_DB_PASSWORD:?set INTAKE_APP_DB_PASSWORD}"
: "${POSTGRES_USER:=postgres}"
temporal_user="${TEMPORAL_DB_USER:-temporal}"
migrate_user="${INTAKE_MIGRATE_DB_USER:-intake_migrate}"
app_user="${INTAKE_APP_DB_USER:-intake_app}"
temporal_db="${TEMPORAL_DB_NAME:-temporal}"
visibility_db="${TEMPORAL_VISIBILITY_DB_NAME:-temporal_visibility}"
intake_db="${INTAKE_DB_NAME:-intake}"

run_psql() {
  db="$1"
  shift
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$db" \
    -v temporal_user="$temporal_user" -v migrate_user="$migrate_user" -v app_user="$app_user" \
    -v temporal_db="$temporal_db" -v visibility_db="$visibility_db" -v intake_db="$intake_db" \
    -v temporal_pw="$TEMPORAL_DB_PASSWORD" -v migrate_pw="$INTAKE_MIGRATE_DB_PASSWORD" \
    -v app_pw="$INTAKE_APP_DB_PASSWORD" "$@"
}

run_psql postgres <<'SQL'
-- No one but the owner connects to a database by default.
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;

-- The roles: created when missing; attributes and passwords set either way.
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'temporal_user', :'migrate_user', :'app_user']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
\gexec
ALTER ROLE :"temporal_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'temporal_pw';
ALTER ROLE :"migrate_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'migrate_pw';
ALTER ROLE :"app_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';

-- The databases: created when missing, owned as below either way. Temporal's two are its own
-- (temporal-sql-tool sets up the schemas as that owner); the application's is the migration user's.
SELECT format('CREATE DATABASE %I', d) FROM unnest(ARRAY[:'temporal_db', :'visibility_db', :'intake_db']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d)
\gexec
ALTER DATABASE :"temporal_db" OWNER TO :"temporal_user";
ALTER DATABASE :"visibility_db" OWNER TO :"temporal_user";
ALTER DATABASE :"intake_db" OWNER TO :"migrate_user";
REVOKE ALL ON DATABASE :"temporal_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"visibility_db" FROM PUBLIC;
REVOKE ALL ON DATABASE :"intake_db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"intake_db" TO :"app_user";
SQL

run_psql "$intake_db" <<'SQL'
-- Only the migration user creates objects in the schema; the app uses what exists.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"migrate_user";
GRANT USAGE ON SCHEMA public TO :"app_user";

-- What is there already (an existing volume): owned by the migration user. A sequence that belongs to
-- a table's column follows its table; only free-standing ones are moved on their own.
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
              n.nspname, c.relname, :'migrate_user')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
\gexec
SELECT format('ALTER SEQUENCE %I.%I OWNER TO %I', n.nspname, c.relname, :'migrate_user')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'S'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass
                   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
\gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'migrate_user')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
\gexec

-- Rows and sequences for the app, nothing more: on every table and sequence there now, and on every
-- one the migrations create later.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate_user" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrate_user" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"app_user";
SQL
