"""A payload key rotated by a rolling restart while cases are open (issue 19), as docs/operations.md
("Payload keys") tells an operator to do it: two real `intake worker` processes start with the old key;
the new key is added decrypt-only to one, then the other (and to the API); then it is made the
encrypting key on one worker, the API, then the other worker. Cases are created and moved through their
steps the whole time. Nothing fails ("unknown key id" or otherwise), and at the end every case is read
and its whole history replayed with the final key ring.

A Temporal dev server of this test's own: a worker refuses to start while any open case of its
namespace needs a key it lacks, and the session's server holds other tests' cases under other keys.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from api.app import create_app
from background.keyring import key_ids_in, key_ids_in_use
from codec import data_converter, parse_keys
from config import Settings
from domain.constants import SEARCH_ATTRIBUTES, workflow_id
from domain.enums import Level, Role
from store.db import create_pool
from store.staff import StaffRepository
from tests.api.conftest import make_http, unique_house, unique_phone
from tests.support.infra import database_beside, temporal_binary
from tests.support.wait import until
from workflows.intake import IntakeWorkflow

# Test-only keys, deliberately public.
OLD = "r1:cm90YXRpb24tdGVzdC1vbGQta2V5LS0tLS0tLS0tLS0="
NEW = "r2:cm90YXRpb24tdGVzdC1uZXcta2V5LS0tLS0tLS0tLS0="
BOTH = f"{OLD},{NEW}"
OPEN_CASES = 4  # cases kept open at once while the processes restart


@pytest_asyncio.fixture(loop_scope="session")
async def own_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A database of this test's own (its workers' dispatchers deliver every due message they find)."""
    async with database_beside(pg_dsn) as dsn:
        yield dsn


@dataclass
class WorkerProcess:
    """One `intake worker` process, restarted with other key settings as an operator restarts it."""

    name: str
    base_env: dict[str, str]
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def log_file(self, n: int) -> Path:
        return self.logs / f"{self.name}-{n}.log"

    async def start(self, keys: str, encrypt: str) -> None:
        self.starts += 1
        log = self.log_file(self.starts)
        env = {**self.base_env, "INTAKE_PAYLOAD_KEYS": keys, "INTAKE_PAYLOAD_ENCRYPT_KEY_ID": encrypt}
        with log.open("wb") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "intake"), "worker"], env=env,  # noqa: ASYNC220
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        await until(lambda: "worker started on task queue" in log.read_text(errors="replace")
                    or self.proc.poll() is not None, 60, f"{self.name} polling")  # type: ignore[union-attr]
        assert self.proc.poll() is None, log.read_text()
        assert f"payload keys: {encrypt} encrypts" in log.read_text()

    async def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)

    def all_logs(self) -> str:
        return "".join(self.log_file(n).read_text(errors="replace") for n in range(1, self.starts + 1))


@dataclass
class Driver:
    """Creates cases and moves them along their steps, one action at a time, through the current API."""

    http: httpx.AsyncClient
    tokens: dict[str, dict[str, str]]
    ids: dict[str, int]
    done: list[tuple[str, int, str]] = field(default_factory=list)  # (phase, case, action)
    failures: list[str] = field(default_factory=list)
    cases: dict[int, int] = field(default_factory=dict)  # case -> steps completed
    phase: str = "old key"

    def path(self, n: int) -> list[tuple[str, str, dict[str, Any]]]:
        meet = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        designer = "designer" if n % 2 else "designer2"
        return [
            ("callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"}),
            ("assign_assistant", "assistant_lead", {"assistant_id": self.ids["assistant"]}),
            ("assign_designer", "manager", {"designer_id": self.ids[designer], "reason": "轮换测试"}),
            ("contact", designer, {"meeting_at": meet, "meeting_kind": "measure"}),
            ("first_meeting", designer, {"true_needs": "三室两厅", "measure_agreed": False, "measure_reason": "先看方案",
                                         "visited_site": True, "visited_material_store": True, "seen_off": True}),
            ("debrief", "manager", {"findings": "好"}),
            ("outcome", "manager", {"outcome": "signed"}),
        ]

    async def act(self) -> None:
        """One action: a new case while fewer than OPEN_CASES are open, else the next step of the least
        advanced open case."""
        open_cases = {c: n for c, n in self.cases.items() if n < len(self.path(c))}
        if len(open_cases) < OPEN_CASES:
            body = {"source": "marketing", "scenario": "remote", "notes": "轮换",
                    "client": {"name": "钱客户", "phone": unique_phone(), "gender": "male",
                               "compound": "阳光花园", "address": unique_house()}}
            r = await self.http.post("/intakes", json=body, headers=self.tokens["consultant"])
            if r.status_code != 201:
                self.failures.append(f"{self.phase}: create {r.status_code} {r.text}")
                return
            self.cases[r.json()["id"]] = 0
            self.done.append((self.phase, r.json()["id"], "create"))
            return
        case_id = min(open_cases, key=lambda c: (open_cases[c], c))
        step, who, payload = self.path(case_id)[open_cases[case_id]]
        r = await self.http.post(f"/intakes/{case_id}/steps/{step}", json=payload, headers=self.tokens[who])
        if r.status_code != 200:
            self.failures.append(f"{self.phase}: case {case_id} {step} {r.status_code} {r.text}")
            return
        self.cases[case_id] += 1
        self.done.append((self.phase, case_id, step))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.failures:
            await self.act()

    async def progress(self, phase: str, actions: int = 4) -> None:
        """Enter `phase` and wait until `actions` more actions succeeded in it."""
        self.phase = phase
        await until(lambda: self.failures or sum(1 for p, _, _ in self.done if p == phase) >= actions, 120,
                    f"cases moving on in phase {phase!r}")
        assert not self.failures, self.failures


async def test_a_rolling_restart_onto_a_new_key_loses_nothing(own_dsn: str, tmp_path: Path) -> None:
    def converter(keys: str, encrypt: str) -> Any:
        return data_converter(parse_keys(keys), encrypt_key_id=encrypt)

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=converter(OLD, "r1"), dev_server_log_level="error",
    )  # fmt: skip
    pool = await create_pool(own_dsn, min_size=1, max_size=10)
    target = env.client.service_client.config.target_host
    tq = f"rotation-{uuid.uuid4().hex[:8]}"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("INTAKE_", "TEMPORAL_", "DATABASE_URL"))}
    base_env.update({"INTAKE_DATABASE_URL": own_dsn, "INTAKE_TEMPORAL_ADDRESS": target, "INTAKE_TASK_QUEUE": tq,
                     "INTAKE_LOG_FORMAT": "text", "INTAKE_RECONCILE_INTERVAL_SECONDS": "5"})
    workers = [WorkerProcess(name, base_env, tmp_path) for name in ("a", "b")]
    settings = Settings(database_url=own_dsn, task_queue=tq, request_timeout_seconds=30.0,
                        recordings_dir=tmp_path / "recordings")

    async def api(keys: str, encrypt: str) -> httpx.AsyncClient:
        """The API restarted with these key settings (its own client, as a new process would have)."""
        client = await Client.connect(target, data_converter=converter(keys, encrypt))
        return make_http(create_app(settings, temporal_client=client, pool=pool))

    stop = asyncio.Event()
    driving: asyncio.Task[None] | None = None
    try:
        repo = StaffRepository(pool)
        tokens: dict[str, dict[str, str]] = {}
        ids: dict[str, int] = {}
        for key, role, level in (("manager", Role.manager, None), ("assistant_lead", Role.assistant_lead, None),
                                 ("assistant", Role.assistant, None), ("consultant", Role.consultant, None),
                                 ("designer", Role.designer, Level.senior), ("designer2", Role.designer, Level.chief)):
            s = await repo.add(name=f"轮换{key}", phone=unique_phone(), role=role, level=level)
            ids[key] = s.id
            tokens[key] = {"Authorization": f"Bearer {await repo.issue_token(staff_id=s.id, label='rotation')}"}

        for w in workers:
            await w.start(OLD, "r1")
        driver = Driver(await api(OLD, "r1"), tokens, ids)
        driving = asyncio.create_task(driver.run(stop))
        await driver.progress("old key")

        # Phase 1: the new key decrypt-only, everywhere, one process at a time.
        await workers[0].stop()
        await workers[0].start(BOTH, "r1")
        await driver.progress("a holds r2 decrypt-only")
        await workers[1].stop()
        await workers[1].start(BOTH, "r1")
        driver.http = await api(BOTH, "r1")
        await driver.progress("every process holds r2")

        # Phase 2: r2 encrypts, one process at a time; meanwhile the others still encrypt with r1.
        await workers[0].stop()
        await workers[0].start(BOTH, "r2")
        await driver.progress("a encrypts with r2, b and the API with r1")
        driver.http = await api(BOTH, "r2")
        await driver.progress("a and the API encrypt with r2")
        await workers[1].stop()
        await workers[1].start(BOTH, "r2")
        await driver.progress("every process encrypts with r2")

        stop.set()
        await driving
        assert not driver.failures, driver.failures
        logs = "".join(w.all_logs() for w in workers)
        assert "unknown key id" not in logs, logs[-4000:]

        # Every case is readable with the final ring: its state through the API, its whole history replayed.
        final = await Client.connect(target, data_converter=converter(BOTH, "r2"))
        spanning = 0
        for case_id in driver.cases:
            r = await driver.http.get(f"/intakes/{case_id}", params={"fresh": True}, headers=tokens["manager"])
            assert r.status_code == 200 and r.json()["id"] == case_id, r.text
            history = await final.get_workflow_handle(workflow_id(case_id)).fetch_history()
            await Replayer(workflows=[IntakeWorkflow], data_converter=final.data_converter).replay_workflow(history)
            spanning += key_ids_in(history.events) == {"r1", "r2"}
        assert spanning, "no case was open across the switch of the encrypting key"
        # the cases still open need only r2 and r1 if any; `intake keys status` would say which
        assert set(await key_ids_in_use(final)) <= {"r1", "r2"}
        assert sum(1 for _, _, a in driver.done if a == "outcome") >= 1  # at least one case went all the way
    finally:
        stop.set()
        if driving is not None and not driving.done():
            driving.cancel()
        for w in workers:
            await w.stop()
        await pool.close()
        await env.shutdown()
