"""docker-compose.yml, its env file and the image recipe checked without a Docker engine: every setting
reaches the containers, every healthcheck's program is in its image, the start order holds."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from config import PROJECT_ROOT, Settings
from domain.constants import SEARCH_ATTRIBUTE_CLI_TYPES
from tests.support.keys import KEYS

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "intake.env.example"
APP_SERVICES = ("api", "worker", "migrate")
# What docker-compose.yml itself decides for the application (its `environment` wins over intake.env):
# each service's database user, the namespace it shares with the namespace job and the UI, the volume's
# mount point, the addresses a container listens on. Every other setting is the operator's, in intake.env.
COMPOSE_DECIDES = {"INTAKE_DATABASE_URL", "INTAKE_TEMPORAL_NAMESPACE", "INTAKE_RECORDINGS_DIR", "INTAKE_API_HOST",
                   "INTAKE_API_PORT", "INTAKE_METRICS_HOST", "INTAKE_WORKER_METRICS_PORT"}
# Programs the pinned third-party images provide (their recipes: postgres's alpine image ships the client
# tools; Temporal's server and UI images are built FROM alpine, whose busybox has nc and wget).
IMAGE_PROGRAMS = {"postgres": {"pg_isready", "psql", "sh"}, "temporalio/server": {"nc", "sh"},
                  "temporalio/ui": {"wget", "curl", "sh"}, "temporalio/admin-tools": {"temporal", "sh"}}


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


def env_file_values(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The `NAME=value` lines of an env file (commented lines show defaults and are not set)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def _env_files(service: dict[str, Any]) -> list[tuple[str, bool]]:
    files = service.get("env_file") or []
    files = [files] if isinstance(files, str) else files
    return [(f, True) if isinstance(f, str) else (f["path"], f.get("required", True)) for f in files]


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
    example = env_file_values()
    for name in APP_SERVICES:
        env = {**example, **_environment(compose["services"][name])}
        assert "@postgresql:5432/" in env["INTAKE_DATABASE_URL"]
        assert env["INTAKE_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert _environment(compose["services"]["api"])["INTAKE_API_HOST"] == "0.0.0.0"


def test_every_setting_reaches_the_app_containers(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """intake.env (from deploy/intake.env.example) goes to every app service whole; the example names every
    setting config.py reads, and compose's own `environment` overrides only what compose decides."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    named = set(re.findall(r"^#? ?(INTAKE_\w+)=", text, flags=re.MULTILINE))
    known = {n for n in _settings_env_names() if n.startswith("INTAKE_")}
    assert not known - named, f"deploy/intake.env.example lacks {sorted(known - named)}"
    assert not named - known, f"deploy/intake.env.example names {sorted(named - known)}, which config.py does not read"
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert _env_files(service) == [("intake.env", True)], name
        overridden = set(_environment(service))
        assert overridden <= COMPOSE_DECIDES, f"{name} hard-codes {sorted(overridden - COMPOSE_DECIDES)} over intake.env"
        assert "INTAKE_CODEC_CORS_ORIGINS" not in overridden
    # the shared namespace is the operator's (.env), under the same name everywhere
    for name in APP_SERVICES:
        assert _environment(compose["services"][name])["INTAKE_TEMPORAL_NAMESPACE"] == "${INTAKE_TEMPORAL_NAMESPACE:-default}"
    assert _environment(compose["services"]["temporal-setup"])["NAMESPACE"] == "${INTAKE_TEMPORAL_NAMESPACE:-default}"
    assert (_environment(compose["services"]["temporal-ui"])["TEMPORAL_DEFAULT_NAMESPACE"]
            == "${INTAKE_TEMPORAL_NAMESPACE:-default}")
    # what the example sets is valid as it stands (with a key filled in)
    for key in list(os.environ):
        if key.startswith("INTAKE_"):
            monkeypatch.delenv(key)
    for key, value in {**env_file_values(), "INTAKE_PAYLOAD_KEYS": KEYS}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.temporal_tls_server_ca is not None and settings.payload_keys is not None
    # and never baked into the image or committed
    for ignore in (".dockerignore", ".gitignore"):
        assert "intake.env" in (PROJECT_ROOT / ignore).read_text(encoding="utf-8").split(), ignore


def _program(test: list[str] | str) -> str:
    if isinstance(test, str):
        return test.split()[0]
    if test[0] == "CMD-SHELL":
        return str(test[1]).split()[0]
    assert test[0] == "CMD", test
    return str(test[1])


def _image_programs(service: dict[str, Any]) -> set[str]:
    """What a service's image can run: for our image, what its Dockerfile installs."""
    if "build" in service:
        dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
        base = re.search(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE).group(1)  # type: ignore[union-attr]
        programs = {"sh"} | ({"python", "python3", "pip"} if base.startswith("python:") else set())
        if re.search(r"pip install (-e )?\.", dockerfile):
            pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
            programs |= set(pyproject["project"]["scripts"])
        return programs
    repo = service["image"].rpartition(":")[0]
    assert repo in IMAGE_PROGRAMS, f"no recipe known for {service['image']}"
    return IMAGE_PROGRAMS[repo]


def test_every_long_running_service_has_a_healthcheck_its_image_can_run(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        one_shot = service.get("restart") == "no" or "profiles" in service
        if one_shot:
            assert "healthcheck" not in service, f"{name} is a one-shot job"
            continue
        assert "healthcheck" in service, f"{name} has no healthcheck"
        program = _program(service["healthcheck"]["test"])
        assert program in _image_programs(service), f"{name}: its image has no {program}"
    pg = compose["services"]["postgresql"]["healthcheck"]["test"]
    # over TCP: during initialisation the server listens on its socket only, so this waits for the init script
    assert "pg_isready" in pg and "-h" in pg and pg[pg.index("-h") + 1] == "localhost"


def test_the_worker_health_and_metrics_are_its_metrics_port(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    port = _environment(worker)["INTAKE_WORKER_METRICS_PORT"]
    assert any(p.startswith("127.0.0.1:") and p.endswith(f":{port}") for p in _ports(worker)), _ports(worker)
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert _environment(worker)["INTAKE_METRICS_HOST"] == "0.0.0.0"  # reachable through the published port


def test_depends_on_conditions_are_sound(compose: dict[str, Any]) -> None:
    s = compose["services"]
    for name, service in s.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            target = s[dep]
            assert "profiles" not in target, f"{name} waits for {dep}, which `up` never starts"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dep} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{name} waits for {dep} to finish; it is restarted"
            else:
                assert condition == "service_started", condition
    # no cycle: every service can be started after the ones it waits for
    started: set[str] = set()
    while len(started) < len(s):
        ready = {n for n, svc in s.items() if n not in started and set(svc.get("depends_on") or {}) <= started}
        assert ready, f"a dependency cycle among {sorted(set(s) - started)}"
        started |= ready


def test_one_shot_jobs_retry_while_their_server_is_not_ready(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert s["migrate"]["command"][:2] == ["intake", "migrate"] and "--wait" in s["migrate"]["command"]
    schema = _command_text(s["temporal-schema"])
    assert all(f"retry $$tool --db {db}" in schema for db in ("temporal", "temporal_visibility"))
    assert "until temporal operator cluster health" in _command_text(s["temporal-setup"])


def test_migrate_waits_for_the_database_then_says_why_it_gave_up(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
    env["INTAKE_DATABASE_URL"] = f"postgresql://intake_migrate:x@127.0.0.1:{port}/intake"
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "intake"), "migrate", "--wait", "3"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and time.monotonic() - started >= 3
    assert "database not ready" in proc.stderr and "retrying" in proc.stderr
    assert "Connect" in proc.stderr or "refused" in proc.stderr.lower()


def test_operator_commands_run_through_compose_without_a_virtualenv(compose: dict[str, Any]) -> None:
    """`docker compose run --rm tools intake keys new` works before intake.env exists (the key goes in it)."""
    tools = compose["services"]["tools"]
    assert tools["profiles"] == ["tools"] and "depends_on" not in tools
    assert _env_files(tools) == [("intake.env", False)]
    assert "./deploy/certs:/app/deploy/certs" in tools["volumes"]  # `intake certs` writes its default folder
    assert "${INTAKE_PAYLOAD_KEYS" not in COMPOSE.read_text(encoding="utf-8")  # compose loads without a key


def test_app_services_run_the_intake_commands(compose: dict[str, Any]) -> None:
    for name, command in (("api", "api"), ("worker", "worker"), ("migrate", "migrate")):
        assert compose["services"][name]["command"][:2] == ["intake", command]
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
    for name in ("postgresql", "temporal", "temporal-ui", "api", "worker"):
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
    # the key is the operator's (intake.env): the example leaves it empty and never turns encryption off,
    # and an app without one refuses to start (tests/test_codec.py)
    assert env_file_values()["INTAKE_PAYLOAD_KEYS"] == ""
    assert "INTAKE_PAYLOAD_ENCRYPTION" not in env_file_values()
    ui = _environment(s["temporal-ui"])
    assert ui["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec}") or ui["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec")
    # No business action from the UI (it cannot tell who acts): signal, update, cancel and start are off.
    for action in ("WORKFLOW_SIGNAL", "WORKFLOW_UPDATE", "WORKFLOW_CANCEL", "START_WORKFLOW"):
        assert ui[f"TEMPORAL_{action}_DISABLED"] == "true", action
    # the UI's origin (published on 8233) is the codec endpoint's default CORS origin
    assert Settings().temporal_ui_port == 8233 and "127.0.0.1:8233:8080" in _ports(s["temporal-ui"])


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
