"""A dispatcher killed mid-send: every SMS reaches the provider once, and the others were never held up.

The outbox dispatcher runs as a real subprocess (so it can be killed with SIGKILL), built from settings
as a deployment builds it, against PostgreSQL and the Aliyun SMS provider (the official SDK) talking
HTTP to a local peer that counts SendSms calls per OutId. The peer takes T1, then holds its answer; the
process dies before hearing back, and its restart asks Aliyun instead of sending T1 again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest_asyncio

from domain.enums import Level, Role
from domain.models import SendSms
from domain.templates import Company
from store.db import create_pool
from store.outbox import OutboxWriter
from store.staff import StaffRepository
from tests.activities.peer import HoldingAliyun, http_peer
from tests.support.data import unique_phone
from tests.support.infra import database_beside
from tests.support.wait import until

ROOT = Path(__file__).resolve().parents[2]

# What a worker process does beside its Temporal worker: the dispatcher, built from the settings.
DISPATCHER = """
import asyncio, logging
from store.db import create_pool
from background.dispatcher import build_dispatcher
from config import get_settings

async def main() -> None:
    settings = get_settings()
    pool = await create_pool(settings.database_url)
    await build_dispatcher(pool, settings).run(asyncio.Event())

logging.basicConfig(level=logging.INFO)
asyncio.run(main())
"""


@pytest_asyncio.fixture(loop_scope="session")
async def own_dsn(pg_dsn: str) -> AsyncIterator[str]:
    """A database of this test's own: the dispatcher delivers every due row it finds."""
    async with database_beside(pg_dsn) as dsn:
        yield dsn


@contextmanager
def dispatcher_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", DISPATCHER],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
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


async def test_dispatcher_killed_mid_send_sends_each_sms_once(own_dsn: str, tmp_path: Path) -> None:
    pool = await create_pool(own_dsn)
    try:
        await _scenario(pool, own_dsn, tmp_path)
    finally:
        await pool.close()


async def _scenario(pool: asyncpg.Pool, dsn: str, tmp_path: Path) -> None:
    repo = StaffRepository(pool)
    manager = await repo.add(name="陈经理", phone=unique_phone(), role=Role.manager)
    designer = await repo.add(name="张伟", phone=unique_phone(), role=Role.designer, level=Level.senior)
    assistant = await repo.add(name="李娜", phone=unique_phone(), role=Role.assistant)
    consultant = await repo.add(name="周顾问", phone=unique_phone(), role=Role.consultant)
    case_id = await pool.fetchval(
        "INSERT INTO cases (workflow_id, source, scenario, stage, client_name, client_phone, client_gender,"
        " created_by, manager_id) VALUES ($1, 'online', 'remote', 'contact', '王建国', $2, 'male', $3, $4)"
        " RETURNING id",
        f"crash-{unique_phone()}", unique_phone(), consultant.id, manager.id,
    )  # fmt: skip
    other_case = await pool.fetchval(
        "INSERT INTO cases (workflow_id, source, scenario, stage, client_name, client_phone, client_gender,"
        " created_by) VALUES ($1, 'online', 'remote', 'contact', '李梅', $2, 'female', $3) RETURNING id",
        f"crash-{unique_phone()}", unique_phone(), consultant.id,
    )  # fmt: skip
    measure_at = datetime.now(UTC) + timedelta(days=3)
    d, a = designer.id, assistant.id
    decided = [
        SendSms(case_id=case_id, purpose="T1", template="T1", designer_id=d, assistant_id=a),
        SendSms(case_id=case_id, purpose="T2", template="T2", designer_id=d, assistant_id=a, at=measure_at),
        SendSms(case_id=case_id, purpose="T3", template="T3", designer_id=d, assistant_id=a, manager_id=manager.id),
        SendSms(case_id=other_case, purpose="T1", template="T1", designer_id=d, assistant_id=a),
    ]
    expected = {f"{m.case_id}:{m.purpose}" for m in decided}

    fake = HoldingAliyun(hold_out_id=f"{case_id}:T1")
    with http_peer(fake) as peer:
        env = {
            **os.environ,
            "INTAKE_DATABASE_URL": dsn,
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
            "INTAKE_ALIYUN_TEMPLATE_T4_MANAGER": "SMS_T4M",
            "INTAKE_ALIYUN_TEMPLATE_T5": "SMS_T5",
            "INTAKE_ALIYUN_TEMPLATE_T5_NO_ASSISTANT": "SMS_T5N",
            "INTAKE_ALIYUN_TEMPLATE_T5_ASSISTANT": "SMS_T5A",
            "INTAKE_OUTBOX_POLL_INTERVAL_SECONDS": "0.1",
            # the restarted dispatcher may ask about the interrupted send once it is 3 s old and the
            # dead process's claim (attempt timeout + a margin) has run out
            "INTAKE_OUTBOX_CONFIRM_AFTER_SECONDS": "3",
            "INTAKE_OUTBOX_ATTEMPT_TIMEOUT_SECONDS": "2",
        }
        log = tmp_path / "dispatcher.log"
        # T1 first, so it is the one in flight when the process dies
        writer = OutboxWriter(Company(), sms_provider="aliyun", staff_channel="log")
        async with pool.acquire() as conn, conn.transaction():
            await writer.enqueue(conn, sms=decided[:1])

        async def statuses() -> dict[str, str]:
            rows = await pool.fetch("SELECT case_id, purpose, status FROM outbox")
            return {f"{r['case_id']}:{r['purpose']}": r["status"] for r in rows}

        async def all_sent(wanted: set[str]) -> bool:
            got = await statuses()
            return all(got.get(k) == "sent" for k in wanted)

        with dispatcher_process(env, log) as proc:
            assert await asyncio.to_thread(fake.holding.wait, 30), "SendSms never reached the provider"
            async with pool.acquire() as conn, conn.transaction():
                await writer.enqueue(conn, sms=decided[1:])
            # the held T1 holds up nothing else
            await until(lambda: all_sent(expected - {f"{case_id}:T1"}), 10, "the others while T1 hangs")
            # T1 is with the provider, and the dispatcher dies before hearing back
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            fake.release.set()
        assert (await statuses())[f"{case_id}:T1"] == "sending"  # handed over, answer never recorded

        with dispatcher_process(env, log):
            await until(lambda: all_sent(expected), 40, "every SMS sent after the restart")

    per_out_id = Counter(p.params.get("OutId") for p in peer.actions("SendSms"))
    assert per_out_id == Counter(expected), per_out_id  # every OutId exactly once
    t1 = next(p.params for p in peer.actions("SendSms") if p.params.get("OutId") == f"{case_id}:T1")
    assert t1["TemplateCode"] == "SMS_T1" and "李娜" in t1["TemplateParam"]
    # the restart asked instead of sending again
    assert peer.actions("QuerySendDetails"), "the restarted dispatcher should have asked the provider first"
    row = await pool.fetchrow("SELECT provider_id, attempts FROM outbox WHERE case_id = $1 AND purpose = 'T1'", case_id)
    assert (row["provider_id"], row["attempts"]) == (f"aliyun-outid:{case_id}:T1", 1)

