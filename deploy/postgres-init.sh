#!/bin/sh
# PostgreSQL users with least privilege (docker-compose.yml mounts this into
# /docker-entrypoint-initdb.d; it runs once, when the data volume is created, as the superuser).
#
#   temporal        owns the databases temporal and temporal_visibility, nothing else; cannot create
#                   databases or roles, cannot connect to the application's database.
#   intake_migrate  owns the application's schema (runs `intake migrate`: DDL), nothing outside it.
#   intake_app      what the API and the worker use: read and write rows of the application's tables,
#                   use their sequences; no DDL, no TRUNCATE, no other database.
#
# The superuser (POSTGRES_USER) is used by nothing but this script and the healthcheck.
# An existing volume is not re-initialised: run this script once by hand against it (psql as the
# superuser) to move a running deployment onto these users.
set -eu

: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
: "${INTAKE_MIGRATE_DB_PASSWORD:?set INTAKE_MIGRATE_DB_PASSWORD}"
: "${INTAKE_APP_DB_PASSWORD:?set INTAKE_APP_DB_PASSWORD}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v temporal_pw="$TEMPORAL_DB_PASSWORD" -v migrate_pw="$INTAKE_MIGRATE_DB_PASSWORD" \
  -v app_pw="$INTAKE_APP_DB_PASSWORD" <<'SQL'
-- No one but the owner connects to a database by default.
REVOKE ALL ON DATABASE postgres FROM PUBLIC;
REVOKE ALL ON DATABASE template1 FROM PUBLIC;

CREATE ROLE temporal LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'temporal_pw';
CREATE ROLE intake_migrate LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'migrate_pw';
CREATE ROLE intake_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';

-- Temporal: its two databases, owned by it (temporal-sql-tool sets up the schemas as that owner).
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE ALL ON DATABASE temporal FROM PUBLIC;
REVOKE ALL ON DATABASE temporal_visibility FROM PUBLIC;

-- The application: one database, its schema owned by the migration user.
CREATE DATABASE intake OWNER intake_migrate;
REVOKE ALL ON DATABASE intake FROM PUBLIC;
GRANT CONNECT ON DATABASE intake TO intake_app;
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname intake <<'SQL'
-- Only the migration user creates objects in the schema; the app uses what exists.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO intake_migrate;
GRANT USAGE ON SCHEMA public TO intake_app;
-- Every table and sequence the migrations create: rows and sequences for the app, nothing more.
ALTER DEFAULT PRIVILEGES FOR ROLE intake_migrate IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO intake_app;
ALTER DEFAULT PRIVILEGES FOR ROLE intake_migrate IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO intake_app;
SQL
