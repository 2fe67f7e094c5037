"""Compose that works (issue 14), as far as this machine allows without Docker: the compose file's own
environment and commands for `migrate`, `api` and `worker`, against a PostgreSQL initialised by the
compose init script (its least-privileged users), with recordings in the `recordings` volume's folder;
a manager uploads a recording and it lands there.

What Docker would add and this test cannot: the images, the network names and the mTLS frontend (the
test's Temporal dev server speaks plain gRPC, so the three certificate paths are set empty, as for
Temporal Cloud; tests/test_hardened_compose.py checks the certificates themselves).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import yaml
from temporalio.client import Client

from config import PROJECT_ROOT
from tests.api.conftest import unique_phone
from tests.support.infra import compose_users_database
from tests.support.keys import KEYS
from tests.support.wait import until

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 32
VOLUME = "/var/lib/intake/recordings"


def interpolate(value: Any, given: dict[str, str]) -> str | None:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}` against `given`; a bare
    name (None) is passed through only when given."""
    if value is None:
        return None

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if op == ":?":
            assert given.get(name), f"compose requires {name}: {arg}"
            return given[name]
        if op == ":-":
            return given.get(name) or arg
        if op == "-":
            return given[name] if name in given else arg
        return given.get(name, "")

    return re.sub(r"\$\{(\w+)(:-|:\?|-)?([^}]*)\}", one, str(value)).replace("$$", "$")


def service_env(compose: dict[str, Any], service: str, given: dict[str, str]) -> dict[str, str]:
    """The container environment compose would give `service`: its env file (an intake.env made from
    deploy/intake.env.example, with the operator's INTAKE_* values of `given`), then its `environment`."""
    from tests.test_compose import env_file_values

    out: dict[str, str] = {}
    if compose["services"][service].get("env_file"):
        out.update(env_file_values())
        out.update({k: v for k, v in given.items() if k.startswith("INTAKE_") and not k.endswith("_DB_PASSWORD")})
    for name, value in (compose["services"][service].get("environment") or {}).items():
        if value is None:
            if name in given:
                out[name] = given[name]
            continue
        resolved = interpolate(value, given)
        assert resolved is not None
        out[name] = resolved
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture(loop_scope="session")
async def compose_db(tmp_path: Path) -> AsyncIterator[str]:
    """A throwaway PostgreSQL set up by deploy/postgres-init.sh; its socket directory."""
    with compose_users_database(tmp_path / "pg") as socket_dir:
        yield socket_dir


async def test_the_compose_api_and_worker_commands_run_and_store_an_upload(
    compose_db: str, client: Client, tmp_path: Path
) -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    socket_dir = compose_db
    volume = tmp_path / "recordings-volume"
    volume.mkdir()
    port = _free_port()
    given = {
        "POSTGRES_PASSWORD": "p", "TEMPORAL_DB_PASSWORD": "t", "INTAKE_MIGRATE_DB_PASSWORD": "m",
        "INTAKE_APP_DB_PASSWORD": "a", "INTAKE_PAYLOAD_KEYS": KEYS,
        "INTAKE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "INTAKE_TEMPORAL_NAMESPACE": client.namespace,
        # the dev server has no TLS (see the module docstring)
        "INTAKE_TEMPORAL_TLS_CLIENT_CERT": "", "INTAKE_TEMPORAL_TLS_CLIENT_KEY": "", "INTAKE_TEMPORAL_TLS_SERVER_CA": "",
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "TEMPORAL_", "DATABASE_URL"))}
    bin_dir = Path(sys.executable).parent

    def env_of(service: str) -> dict[str, str]:
        env = service_env(compose, service, given)
        # Names only the compose network knows, and the volume's mount point, as this machine has them.
        env["INTAKE_DATABASE_URL"] = env["INTAKE_DATABASE_URL"].replace("@postgresql:5432/", "@/") + f"?host={socket_dir}"
        if env.get("INTAKE_RECORDINGS_DIR") == VOLUME:
            env["INTAKE_RECORDINGS_DIR"] = str(volume)
        env["INTAKE_TASK_QUEUE"] = f"compose-{port}"
        if "INTAKE_WORKER_METRICS_PORT" in env:  # 9464 in compose: any free port here
            env["INTAKE_WORKER_METRICS_PORT"], env["INTAKE_METRICS_HOST"] = str(_free_port()), "127.0.0.1"
        return {**base_env, **env}

    command = compose["services"]["migrate"]["command"]
    mig = await asyncio.to_thread(subprocess.run, [str(bin_dir / command[0]), *command[1:]], env=env_of("migrate"),
                                  capture_output=True, text=True, timeout=120)
    assert mig.returncode == 0, mig.stderr
    # The Temporal server is the test session's, shared with other tests' cases: this database's case
    # numbers start far away from theirs, so its workflow ids (intake-<n>) never meet theirs.
    import asyncpg

    first_id = 700_000_000 + port * 1000
    conn = await asyncpg.connect(f"postgresql://intake_migrate:m@/intake?host={socket_dir}")
    try:
        await conn.execute(f"ALTER TABLE cases ALTER COLUMN id RESTART WITH {first_id}")
    finally:
        await conn.close()

    api_env = {**env_of("api"), "INTAKE_API_HOST": "127.0.0.1", "INTAKE_API_PORT": str(port)}
    assert compose["services"]["api"]["environment"]["INTAKE_RECORDINGS_DIR"] == VOLUME
    assert f"recordings:{VOLUME}" in compose["services"]["api"]["volumes"]
    staff = {}
    for role in ("manager", "consultant"):
        out = await asyncio.to_thread(
            subprocess.run, [str(bin_dir / "intake"), "staff", "add", "--role", role, "--name", f"编排{role}",
                             "--phone", unique_phone()], env=api_env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        staff[role] = {"Authorization": f"Bearer {out.stdout.strip().splitlines()[-1]}"}

    procs = []
    env_of_worker = env_of("worker")
    for service, env in (("api", api_env), ("worker", env_of_worker)):
        command = compose["services"][service]["command"]
        procs.append(subprocess.Popen([str(bin_dir / command[0]), *command[1:]], env=env,  # noqa: ASYNC220
                                      stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"{service}.log", "w")))  # noqa: SIM115
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await until(ready, 60, "the compose API answers /readyz")
            body = {"source": "online", "scenario": "remote",
                    "client": {"name": "编排客户", "phone": unique_phone(), "gender": "female"}}
            r = await http.post("/intakes", json=body, headers=staff["consultant"])
            assert r.status_code == 201, r.text
            case_id = r.json()["id"]
            assert case_id >= first_id
            r = await http.post(f"/intakes/{case_id}/recordings", headers=staff["manager"],
                                files={"file": ("见面.mp3", MP3, "audio/mpeg")})
            assert r.status_code == 201, r.text + (tmp_path / "api.log").read_text()
        stored = [p for p in volume.rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in stored] == [MP3]
        # the services' healthchecks, as Docker runs them in the containers (with this machine's ports)
        ports = {"api": ("8000", str(port)), "worker": ("9464", env_of_worker["INTAKE_WORKER_METRICS_PORT"])}
        for service, (theirs, ours) in ports.items():
            test = [arg.replace(f":{theirs}/", f":{ours}/") for arg in compose["services"][service]["healthcheck"]["test"]]
            assert test[0] == "CMD"
            check = await asyncio.to_thread(subprocess.run, [sys.executable if test[1] == "python" else test[1], *test[2:]],
                                            capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, f"{service} unhealthy: {check.stderr}"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        from temporalio.service import RPCError

        try:  # its worker is gone: end its case's workflow too
            await client.get_workflow_handle(f"intake-{first_id}").terminate("compose test over")
        except RPCError:
            pass
        for p in procs:
            try:
                await asyncio.to_thread(p.wait, 20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_the_image_gives_the_recordings_folder_to_its_user() -> None:
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"mkdir -p {VOLUME} && chown intake:intake {VOLUME}" in dockerfile
    assert dockerfile.index("chown intake") < dockerfile.index("USER intake")
