"""docker-compose.yml (and the README's settings table) checked without a Docker engine."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from config import PROJECT_ROOT, Settings
from domain.constants import SEARCH_ATTRIBUTE_CLI_TYPES

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
APP_SERVICES = ("api", "worker", "migrate")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _settings_env_names() -> set[str]:
    names: set[str] = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"INTAKE_{field_name.upper()}")
    return names


def _environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _command_text(service: dict[str, Any]) -> str:
    parts = [service.get("entrypoint") or [], service.get("command") or []]
    return "\n".join(p if isinstance(p, str) else "\n".join(map(str, p)) for p in parts)


def test_services_exist(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert {"postgresql", "temporal", "temporal-ui", "temporal-setup", "migrate", "api", "worker"} <= services


def test_app_services_use_only_settings_names(compose: dict[str, Any]) -> None:
    known = _settings_env_names()
    for name in APP_SERVICES:
        env = _environment(compose["services"][name])
        ours = {k for k in env if k.startswith(("INTAKE_", "TEMPORAL_")) or k == "DATABASE_URL"}
        assert ours, f"{name} has no settings in its environment"
        unknown = ours - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which config.Settings does not read"


def test_app_services_point_at_compose_database_and_temporal(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _environment(compose["services"][name])
        assert "@postgresql:5432/" in env["INTAKE_DATABASE_URL"]
        assert env["INTAKE_TEMPORAL_ADDRESS"] in (
            "temporal:7233",
            "${INTAKE_TEMPORAL_ADDRESS:-temporal:7233}",
        )
    assert _environment(compose["services"]["api"])["INTAKE_API_HOST"] == "0.0.0.0"


def test_app_services_run_the_intake_commands(compose: dict[str, Any]) -> None:
    for name, command in (("api", "api"), ("worker", "worker"), ("migrate", "migrate")):
        assert compose["services"][name]["command"] == ["intake", command]
        assert "build" in compose["services"][name]


def test_search_attributes_registered_by_the_job_match_the_code(compose: dict[str, Any]) -> None:
    script = _command_text(compose["services"]["temporal-setup"])
    registered = dict(re.findall(r"^\s*sa (\w+) (\w+)\s*$", script, flags=re.MULTILINE))
    assert registered == SEARCH_ATTRIBUTE_CLI_TYPES
    assert "temporal operator search-attribute create" in script
    assert "temporal operator namespace create" in script


def test_temporal_uses_postgresql_persistence(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["temporal"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    schema = _command_text(compose["services"]["temporal-schema"])
    assert "temporal-sql-tool --plugin postgres12" in schema


def test_startup_order_uses_conditions(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert s["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert s["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert s["migrate"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        deps = s[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["temporal-setup"]["condition"] == "service_completed_successfully"
    for name in ("postgresql", "temporal", "api"):
        assert "healthcheck" in s[name], f"{name} has no healthcheck"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name} has neither image nor build"
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


def test_dockerfile_installs_the_project() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
    assert "COPY pyproject.toml" in dockerfile
    assert re.search(r"pip install (-e )?\.", dockerfile)
    packages = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    include = [p.rstrip("*") for p in packages["packages"]["find"]["include"]]
    for needed in ("migrations", "policies", *include):
        assert f"COPY {needed} " in dockerfile, f"the image lacks {needed}/"
    copied = {w for line in dockerfile.splitlines() if line.startswith("COPY ") for w in line.split()[1:-1]}
    modules = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    missing = sorted(f"{m}.py" for m in modules["py-modules"] if f"{m}.py" not in copied)
    assert not missing, f"the image lacks {missing}"
    ignored = (PROJECT_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".venv" in ignored and ".data" in ignored


def test_readme_documents_every_setting() -> None:
    """The README's configuration table names every environment variable Settings reads."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    missing = sorted(name for name in _settings_env_names() if f"`{name}`" not in readme)
    assert not missing, f"README lacks {missing}"


# --- security (SPEC §12) --------------------------------------------------------------------------


def _ports(service: dict[str, Any]) -> list[str]:
    return [str(p) for p in service.get("ports") or []]


def test_everything_is_published_on_localhost_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in _ports(service):
            assert port.startswith(("127.0.0.1:", "${API_BIND:-127.0.0.1}:")), f"{name} publishes {port}"
    assert _ports(compose["services"]["api"]) == ["${API_BIND:-127.0.0.1}:8000:8000"]


def test_each_service_has_its_own_least_privileged_database_user(compose: dict[str, Any]) -> None:
    s = compose["services"]
    users = {name: re.match(r"postgresql://(\w+):", _environment(s[name])["INTAKE_DATABASE_URL"]).group(1)  # type: ignore[union-attr]
             for name in APP_SERVICES}
    assert users == {"api": "intake_app", "worker": "intake_app", "migrate": "intake_migrate"}
    assert _environment(s["temporal"])["POSTGRES_USER"] == "temporal"
    assert "-u temporal" in _command_text(s["temporal-schema"])
    pg = s["postgresql"]
    assert any(str(v).endswith("/docker-entrypoint-initdb.d/10-users.sh:ro") for v in pg["volumes"])
    env = _environment(pg)
    for secret in ("POSTGRES_PASSWORD", "TEMPORAL_DB_PASSWORD", "INTAKE_MIGRATE_DB_PASSWORD",
                   "INTAKE_APP_DB_PASSWORD"):
        assert ":?" in str(env[secret]), f"{secret} must have no default"


def test_payloads_are_encrypted_and_the_ui_decodes_through_the_api(compose: dict[str, Any]) -> None:
    s = compose["services"]
    for name in ("api", "worker"):
        assert ":?" in str(_environment(s[name])["INTAKE_PAYLOAD_KEYS"]), f"{name}: no key, no start"
    ui = _environment(s["temporal-ui"])
    assert ui["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec}") or ui["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec")
    # No business action from the UI (it cannot tell who acts): signal, update, cancel and start are off.
    for action in ("WORKFLOW_SIGNAL", "WORKFLOW_UPDATE", "WORKFLOW_CANCEL", "START_WORKFLOW"):
        assert ui[f"TEMPORAL_{action}_DISABLED"] == "true", action
    assert "8233" in _environment(s["api"])["INTAKE_CODEC_CORS_ORIGINS"]


def test_init_script_gives_the_app_rows_but_no_ddl(tmp_path: Any) -> None:
    """deploy/postgres-init.sh on a throwaway PostgreSQL (pgserver): migrate as intake_migrate, then the
    app user writes rows but cannot change the schema or reach Temporal's databases."""
    import asyncio

    import asyncpg

    from store.db import migrate
    from tests.support.infra import compose_users_database

    with compose_users_database(tmp_path / "pg") as socket_dir:
        def dsn(user: str, db: str) -> str:
            return f"postgresql://{user}:x@/{db}?host={socket_dir}"

        async def check() -> None:
            await migrate(dsn("intake_migrate", "intake"))
            app = await asyncpg.connect(dsn("intake_app", "intake"))
            try:
                sid = await app.fetchval(
                    "INSERT INTO staff (name, phone, role) VALUES ('甲', '13900000000', 'manager') RETURNING id"
                )
                assert await app.fetchval("SELECT name FROM staff WHERE id = $1", sid) == "甲"
                await app.execute("UPDATE staff SET name = '乙' WHERE id = $1", sid)
                for ddl in ("CREATE TABLE x (id int)", "DROP TABLE staff", "ALTER TABLE staff ADD COLUMN y int",
                            "TRUNCATE staff_tokens"):
                    try:
                        await app.execute(ddl)
                    except asyncpg.InsufficientPrivilegeError:
                        continue
                    raise AssertionError(f"intake_app could run {ddl}")
            finally:
                await app.close()
            for user, db in (("intake_app", "temporal"), ("intake_app", "postgres"), ("temporal", "intake")):
                try:
                    conn = await asyncpg.connect(dsn(user, db))
                except asyncpg.InsufficientPrivilegeError:
                    continue
                await conn.close()
                raise AssertionError(f"{user} could connect to {db}")

        asyncio.run(check())
