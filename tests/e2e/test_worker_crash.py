"""A worker killed mid-case and mid-SMS-send: the case goes on and every SMS reaches the provider once.

The worker runs as a real subprocess (so it can be killed with SIGKILL) against the real Temporal dev
server and PostgreSQL; the SMS provider is Aliyun's official SDK talking HTTP to a local peer that
counts SendSms calls per OutId.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from temporalio.client import Client

from activities.staff import StaffRepository
from domain.constants import workflow_id
from domain.enums import Level, Role, Scenario, Source, StepName
from domain.models import IntakeInput
from domain.policy import fast_policy
from domain.tracking import initial_search_attributes, static_summary
from tests.activities.peer import FakeAliyun, PeerRequest, http_peer
from tests.support.data import unique_phone
from tests.support.wait import until
from tests.workflows.fakes import complete
from workflows.intake import IntakeWorkflow

ROOT = Path(__file__).resolve().parents[2]


class StallingAliyun(FakeAliyun):
    """Accepts the first SendSms, then holds the answer until released (the worker dies meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.release = threading.Event()
        self._stalled_once = False

    def __call__(self, req: PeerRequest) -> tuple[int, Any]:
        answer = super().__call__(req)
        if req.headers.get("x-acs-action") == "SendSms" and not self._stalled_once:
            self._stalled_once = True
            self.stalled.set()
            self.release.wait(timeout=60)
        return answer


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import worker; worker.main()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_worker_killed_mid_send_sends_each_sms_once(
    client: Client, pool: asyncpg.Pool, pg_dsn: str, task_queue: str, tmp_path: Path
) -> None:
    repo = StaffRepository(pool)
    manager = await repo.add(name="陈经理", phone=unique_phone(), role=Role.manager)
    director = await repo.add(name="赵总", phone=unique_phone(), role=Role.director)
    lead = await repo.add(name="孙组长", phone=unique_phone(), role=Role.assistant_lead)
    designer = await repo.add(name="张伟", phone=unique_phone(), role=Role.designer, level=Level.senior)
    assistant = await repo.add(name="李娜", phone=unique_phone(), role=Role.assistant)
    consultant = await repo.add(name="周顾问", phone=unique_phone(), role=Role.consultant)
    client_phone = unique_phone()
    case_id = await pool.fetchval(
        "INSERT INTO cases (workflow_id, source, scenario, stage, client_name, client_phone, client_gender,"
        " created_by, manager_id) VALUES ('pending', 'online', 'remote', 'callback', '王建国', $1, 'male', $2, $3)"
        " RETURNING id",
        client_phone, consultant.id, manager.id,
    )
    await pool.execute("UPDATE cases SET workflow_id = $2 WHERE id = $1", case_id, workflow_id(case_id))

    fake = StallingAliyun()
    with http_peer(fake) as peer:
        env = {
            **os.environ,
            "INTAKE_DATABASE_URL": pg_dsn,
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "INTAKE_TASK_QUEUE": task_queue,
            "INTAKE_SMS_PROVIDER": "aliyun",
            "INTAKE_ALIYUN_ACCESS_KEY_ID": "test-key",
            "INTAKE_ALIYUN_ACCESS_KEY_SECRET": "test-secret",
            "INTAKE_ALIYUN_SIGN_NAME": "城市人家",
            "INTAKE_ALIYUN_ENDPOINT": peer.endpoint,
            "INTAKE_ALIYUN_PROTOCOL": "http",
            "INTAKE_ALIYUN_TEMPLATE_T1": "SMS_T1",
            "INTAKE_ALIYUN_TEMPLATE_T1_NO_ASSISTANT": "SMS_T1N",
            "INTAKE_ALIYUN_TEMPLATE_T2": "SMS_T2",
            "INTAKE_ALIYUN_TEMPLATE_T2_NO_ASSISTANT": "SMS_T2N",
            "INTAKE_ALIYUN_TEMPLATE_T3": "SMS_T3",
            "INTAKE_ALIYUN_TEMPLATE_T3_NO_ASSISTANT": "SMS_T3N",
            "INTAKE_ALIYUN_TEMPLATE_T4": "SMS_T4",
            # the restarted worker may ask the provider about the interrupted send after 3 s
            "INTAKE_OUTBOX_CONFIRM_AFTER_SECONDS": "3",
        }
        log = tmp_path / "worker.log"
        policy = fast_policy()
        policy.send_attempt_timeout = timedelta(seconds=4)
        inp = IntakeInput(
            case_id=case_id, source=Source.online, scenario=Scenario.remote, created_at=datetime.now(UTC),
            created_by=consultant.ref(), manager=manager.ref(), director=director.ref(), budget=300_000,
            policy=policy,
        )

        meet = datetime.now(UTC) + timedelta(days=2)
        with worker_process(env, log) as proc:
            h = await client.start_workflow(
                IntakeWorkflow.run, inp, id=workflow_id(case_id), task_queue=task_queue,
                search_attributes=initial_search_attributes(inp), static_summary=static_summary(inp),
            )
            await complete(h, manager.ref(), StepName.callback, {"reached": True, "meeting_at": meet.isoformat()})
            await complete(h, lead.ref(), StepName.assign_assistant, {"assistant_id": assistant.id}, [assistant.ref()])
            await complete(h, manager.ref(), StepName.assign_designer, {"designer_id": designer.id, "reason": "指定"},
                           [designer.ref()])
            await complete(h, designer.ref(), StepName.contact, {"meeting_at": meet.isoformat(), "meeting_kind": "office_visit"})
            # T1 is on its way: the provider has it, and the worker dies before hearing back.
            assert await asyncio.to_thread(fake.stalled.wait, 30), "SendSms never reached the provider"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            fake.release.set()
        status = await pool.fetchval("SELECT status FROM outbox WHERE case_id = $1 AND purpose = 'T1'", case_id)
        assert status == "sending"  # the worker died between handing it over and recording the answer

        with worker_process(env, log):
            async def t1_sent() -> bool:
                row = await pool.fetchrow(
                    "SELECT status FROM outbox WHERE case_id = $1 AND purpose = 'T1'", case_id)
                return row is not None and row["status"] == "sent"

            await until(t1_sent, 40, "T1 recorded as sent after the restart")
            # the case goes on after the crash
            await complete(h, designer.ref(), StepName.first_meeting,
                           {"true_needs": "三居室", "measure_at": (meet + timedelta(days=1)).isoformat()})
            await complete(h, designer.ref(), StepName.measure, {"result": "done"})
            await complete(h, manager.ref(), StepName.debrief, {"findings": "好"})
            await complete(h, manager.ref(), StepName.outcome, {"outcome": "signed"})
            final = await h.result()
            assert final.stage == "signed"

            async def all_sent() -> bool:
                rows = await pool.fetch("SELECT purpose, status FROM outbox WHERE case_id = $1 AND channel = 'sms'",
                                        case_id)
                return {r["purpose"] for r in rows if r["status"] == "sent"} >= {"T1", "T2", "T3"}

            await until(all_sent, 30, "T1, T2, T3 sent")

    per_out_id = Counter(p.get("OutId") for p in fake.sent)
    assert per_out_id[f"{case_id}:T1"] == 1, per_out_id
    assert per_out_id[f"{case_id}:T2"] == 1, per_out_id
    assert per_out_id[f"{case_id}:T3"] == 1, per_out_id
    assert all(n == 1 for n in per_out_id.values()), per_out_id
    t1 = next(p for p in fake.sent if p.get("OutId") == f"{case_id}:T1")
    assert t1["TemplateCode"] == "SMS_T1" and "李娜" in t1["TemplateParam"]
    # the query after the crash asked instead of sending again
    assert peer.actions("QuerySendDetails"), "the retry should have asked the provider first"
    projection = await pool.fetchrow("SELECT stage, status FROM cases WHERE id = $1", case_id)
    assert dict(projection) == {"stage": "signed", "status": "closed"}
