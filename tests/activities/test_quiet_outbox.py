"""Quiet hours in the outbox (SPEC §14): rows recorded held (`not_before`), the dispatcher waits for them.

Real PostgreSQL; the case rows carry a policy with the default calendar and quiet window, and the
writer is told the moment it records at (20:00 and 23:00 Beijing time), as the projection's writer is
by the clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest_asyncio

from background.dispatcher import OutboxDispatcher
from domain import templates
from domain.enums import Role
from domain.models import NotifyStaff, SendSms
from domain.policy import Policy
from store.db import create_pool
from store.outbox import OutboxWriter
from tests.activities.conftest import MakeCase, MakeStaff
from tests.activities.test_messaging import RecordingLog, RecordingOutbox
from tests.support.infra import database_beside

SH = ZoneInfo("Asia/Shanghai")
EVENING = datetime(2030, 5, 6, 20, 0, tzinfo=SH)  # a Monday
NIGHT = datetime(2030, 5, 6, 23, 0, tzinfo=SH)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """A database for this module alone (its dispatcher claims every due row it finds)."""
    async with database_beside(pg_dsn) as dsn:
        p = await create_pool(dsn, min_size=1, max_size=5)
        try:
            yield p
        finally:
            await p.close()


async def _with_policy(pool: asyncpg.Pool, case_id: int, policy: Policy) -> None:
    await pool.execute("UPDATE cases SET policy = $2 WHERE id = $1", case_id, policy.model_dump(mode="json"))


async def test_night_messages_are_recorded_held_and_wait(pool: asyncpg.Pool, make_staff: MakeStaff,
                                                         make_case: MakeCase) -> None:
    manager = await make_staff("陈经理", Role.manager)
    designer = await make_staff("周设计", Role.designer, office_schedule={d: [(time(13, 0), time(21, 0))]
                                                                        for d in range(6)})
    case_id = await make_case(designer_id=designer.id)
    await _with_policy(pool, case_id, Policy())
    writer = OutboxWriter(templates.Company(), sms_provider="outbox", staff_channel="log")
    async with pool.acquire() as conn, conn.transaction():
        await writer.enqueue(conn, now=NIGHT, sms=[SendSms(case_id=case_id, purpose="T1", template="T1",
                                                           designer_id=designer.id)],
                             notices=[NotifyStaff(case_id=case_id, purpose="open:callback#1", recipient_id=manager.id,
                                                  text="新客户，请立即回访"),
                                      NotifyStaff(case_id=case_id, purpose="esc:x", recipient_id=manager.id,
                                                  text="急", urgent=True)])
    async with pool.acquire() as conn, conn.transaction():
        # 20:00: the designer's in-office schedule runs to 21:00, so their notice goes at once
        await writer.enqueue(conn, now=EVENING, notices=[
            NotifyStaff(case_id=case_id, purpose="assigned:designer", recipient_id=designer.id, text="新客户")])
    rows = {r["purpose"]: r for r in await pool.fetch(
        "SELECT purpose, not_before, next_attempt_at, status FROM outbox WHERE case_id = $1", case_id)}
    # the client's SMS waits for 08:30, the manager's notice for 09:00, both next morning
    assert rows["T1"]["not_before"] == datetime(2030, 5, 7, 8, 30, tzinfo=SH)
    assert rows["open:callback#1"]["not_before"] == datetime(2030, 5, 7, 9, 0, tzinfo=SH)
    assert rows["T1"]["next_attempt_at"] == rows["T1"]["not_before"]
    assert rows["esc:x"]["not_before"] is None and rows["assigned:designer"]["not_before"] is None
    # the dispatcher delivers what may go now and leaves the held rows alone
    sms, log = RecordingOutbox(), RecordingLog()
    await OutboxDispatcher(pool, sms, log, confirm_after=timedelta(minutes=2)).run_once()
    sent = {r["purpose"] for r in await pool.fetch(
        "SELECT purpose FROM outbox WHERE case_id = $1 AND status = 'sent'", case_id)}
    assert sent == {"esc:x", "assigned:designer"}
    assert not [m for m in sms.sent if m.key.startswith(f"{case_id}:")]
    # once the morning comes (the clock moved on), they go
    await pool.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 second', not_before = now()"
                       " - interval '1 second' WHERE case_id = $1 AND status = 'pending'", case_id)
    await OutboxDispatcher(pool, sms, log, confirm_after=timedelta(minutes=2)).run_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = $1 AND status = 'sent'", case_id) == 4


async def test_cases_without_a_policy_hold_nothing(pool: asyncpg.Pool, make_staff: MakeStaff,
                                                   make_case: MakeCase) -> None:
    designer = await make_staff("吴设计", Role.designer)
    case_id = await make_case(designer_id=designer.id)
    writer = OutboxWriter(templates.Company(), sms_provider="outbox", staff_channel="log")
    async with pool.acquire() as conn, conn.transaction():
        await writer.enqueue(conn, now=NIGHT.astimezone(UTC), sms=[
            SendSms(case_id=case_id, purpose="T1", template="T1", designer_id=designer.id)])
    assert await pool.fetchval("SELECT not_before FROM outbox WHERE case_id = $1", case_id) is None
