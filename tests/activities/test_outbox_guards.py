"""The outbox dispatcher's exactly-once guards, each with a test that fails when the guard is removed.

A scripted provider (in memory, recorded as the default `outbox` provider) says what a real one may say:
accepted, refused for a while, "maybe" (accepted, then the answer was lost), hung; and when asked later
whether a message arrived, found, not found, or no answer. Real PostgreSQL, a database of this module's
own (a dispatcher claims every due row it finds). tests/mutants/named.py removes each guard and checks
that the test naming it fails.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest_asyncio

from activities.providers import LogNotifier, OutboxOnlyProvider, OutgoingNotice, OutgoingSms, ProviderError
from background.dispatcher import OutboxDispatcher
from domain import templates
from domain.enums import Role
from domain.models import NotifyStaff, SendSms
from store.db import create_pool
from store.outbox import OutboxWriter
from tests.activities.conftest import MakeCase, MakeStaff
from tests.support.wait import until


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(own_pool: asyncpg.Pool) -> asyncpg.Pool:
    """This module's own database instead of the session's (make_staff and make_case use it too)."""
    return own_pool


class ScriptedSms(OutboxOnlyProvider):
    """An SMS provider whose answers the test sets; `accepted` is what the provider really has."""

    def __init__(self) -> None:
        self.send_mode = "ok"  # ok | maybe (accepted, answer lost) | throttled | hang
        self.find_mode = "lookup"  # lookup | fail (cannot be asked now) | block (until released)
        self.accepted: list[str] = []
        self.sends: list[str] = []
        self.finds: list[str] = []
        self.release = asyncio.Event()
        self.in_find = asyncio.Event()
        self.in_send = asyncio.Event()

    async def send(self, msg: OutgoingSms) -> str:
        self.sends.append(msg.key)
        if self.send_mode == "hang":
            self.in_send.set()
            await self.release.wait()
        if self.send_mode == "throttled":
            raise ProviderError("流控", retryable=True, code="isv.BUSINESS_LIMIT_CONTROL")
        self.accepted.append(msg.key)
        if self.send_mode == "maybe":
            raise ProviderError("HTTP 502 after the request was sent", retryable=True, ambiguous=True)
        return f"id-{msg.key}"

    async def find_sent(self, msg: OutgoingSms) -> str | None:
        self.finds.append(msg.key)
        if self.find_mode == "fail":
            raise ProviderError("查询接口暂不可用", retryable=True)
        if self.find_mode == "block":
            self.in_find.set()
            await self.release.wait()
        return f"id-{msg.key}" if msg.key in self.accepted else None

    def sent_of(self, key: str) -> int:
        return self.sends.count(key)


class CountingLog(LogNotifier):
    """The default staff channel, remembering when each notice went out."""

    def __init__(self) -> None:
        self.at: dict[str, datetime] = {}

    async def notify(self, msg: OutgoingNotice) -> str:
        self.at[msg.key] = datetime.now(UTC)
        return await super().notify(msg)


WRITER = OutboxWriter(templates.Company("城市人家装饰公司", "城市人家"), sms_provider="outbox", staff_channel="log")


def _dispatcher(pool: asyncpg.Pool, sms: Any, notifier: Any = None, **kwargs: Any) -> OutboxDispatcher:
    kwargs.setdefault("confirm_after", timedelta(0))
    return OutboxDispatcher(pool, sms, notifier or CountingLog(), **kwargs)


async def _t1(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> tuple[int, str]:
    designer = await make_staff("张伟", Role.designer)
    assistant = await make_staff("李娜", Role.assistant)
    case_id = await make_case()
    async with pool.acquire() as conn, conn.transaction():
        await WRITER.enqueue(conn, sms=[SendSms(case_id=case_id, purpose="T1", template="T1",
                                                designer_id=designer.id, assistant_id=assistant.id)])
    return case_id, f"{case_id}:T1"


async def _row(pool: asyncpg.Pool, case_id: int, purpose: str = "T1") -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outbox WHERE case_id = $1 AND purpose = $2", case_id, purpose)
    assert row is not None
    return row


async def _due_now(pool: asyncpg.Pool, case_id: int) -> None:
    """Every lease and backoff of the case's rows has passed (as if time went by)."""
    await pool.execute("UPDATE outbox SET next_attempt_at = now() - interval '1 second' WHERE case_id = $1", case_id)


async def test_a_maybe_sent_message_stays_sending_and_is_asked_about_not_sent_again(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """Guards: an ambiguous provider error leaves the row `sending` (_send: "sending" if exc.ambiguous)."""
    case_id, key = await _t1(pool, make_staff, make_case)
    sms = ScriptedSms()
    sms.send_mode = "maybe"  # the provider took it, the answer was lost
    dispatcher = _dispatcher(pool, sms, backoff_initial=timedelta(milliseconds=50))
    await dispatcher.run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["attempts"], row["failures"]) == ("sending", 1, 1)
    sms.send_mode = "ok"
    await _due_now(pool, case_id)
    await dispatcher.run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["provider_id"], row["attempts"]) == ("sent", f"id-{key}", 1)
    assert sms.sent_of(key) == 1 and sms.finds == [key]  # asked once, never sent twice


async def test_when_the_last_send_cannot_be_confirmed_the_row_stays_sending_and_nothing_is_resent(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """Guards: "could not confirm the last send" (_check: a failing find_sent → _retry_later(row, "sending"))
    — not knowing is never "not sent"."""
    case_id, key = await _t1(pool, make_staff, make_case)
    sms = ScriptedSms()
    sms.send_mode = "maybe"
    dispatcher = _dispatcher(pool, sms, backoff_initial=timedelta(milliseconds=50))
    await dispatcher.run_once()
    sms.send_mode = "ok"
    sms.find_mode = "fail"  # the provider's lookup is down: nobody can tell whether the SMS arrived
    for attempt in range(1, 4):
        await _due_now(pool, case_id)
        assert await dispatcher.run_once() == 1
        row = await _row(pool, case_id)
        assert (row["status"], row["attempts"], row["failures"]) == ("sending", 1, 1 + attempt)
        assert "无法确认上次发送结果" in row["last_error"]
    assert sms.sent_of(key) == 1 and len(sms.finds) == 3
    sms.find_mode = "lookup"  # the lookup is back: the SMS is found, not sent again
    await _due_now(pool, case_id)
    await dispatcher.run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["provider_id"]) == ("sent", f"id-{key}")
    assert sms.sent_of(key) == 1


async def test_a_dispatcher_that_loses_the_re_claim_race_does_not_send(
    pool: asyncpg.Pool, own_dsn: str, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """Guards: the re-claim after "not found" is conditional on the attempt it checked
    (_check: UPDATE … WHERE status = 'sending' AND sending_at = $2); the loser returns without sending."""
    case_id, key = await _t1(pool, make_staff, make_case)
    # An earlier attempt died before its request left: the row is `sending`, the provider has nothing.
    await pool.execute("UPDATE outbox SET status = 'sending', attempts = 1, sending_at = now() - interval '1 hour',"
                       " next_attempt_at = now() - interval '1 hour' WHERE case_id = $1", case_id)
    slow, fast = ScriptedSms(), ScriptedSms()
    slow.find_mode = "block"  # dispatcher A asks the provider and stalls (a GC pause, a slow lookup)
    pool_a = await create_pool(own_dsn, min_size=1, max_size=4)
    try:
        a = asyncio.create_task(_dispatcher(pool_a, slow, attempt_timeout=30).run_once())
        await until(lambda: slow.in_find.is_set(), 10, "dispatcher A asking the provider")
        # A's lease runs out; dispatcher B checks the same attempt, finds nothing, re-claims and sends
        # (its provider is slow to answer, so B's attempt is in flight when A wakes up).
        await _due_now(pool, case_id)
        fast.send_mode = "hang"
        b = asyncio.create_task(_dispatcher(pool, fast, attempt_timeout=30).run_once())
        await until(lambda: fast.in_send.is_set(), 10, "dispatcher B sending after its re-claim")
        # A wakes up: the provider (which has not got B's message yet) says "not found".
        slow.release.set()
        await asyncio.wait_for(a, 30)
        fast.release.set()
        assert await asyncio.wait_for(b, 30) == 1
    finally:
        await pool_a.close()
    assert slow.sends == [], "the dispatcher that lost the re-claim sent the message a second time"
    row = await _row(pool, case_id)
    assert (row["status"], row["provider_id"], row["attempts"]) == ("sent", f"id-{key}", 2)


async def test_the_backoff_stops_growing_at_its_cap(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """Guards: the backoff cap (_retry_later: least(initial * 2^failures, backoff_max))."""
    case_id, _ = await _t1(pool, make_staff, make_case)
    # Many failures already (a provider throttling for hours): uncapped, the next try would be days away.
    await pool.execute("UPDATE outbox SET failures = 25 WHERE case_id = $1", case_id)
    sms = ScriptedSms()
    sms.send_mode = "throttled"
    cap = timedelta(seconds=3)
    await _dispatcher(pool, sms, backoff_initial=timedelta(seconds=1), backoff_max=cap).run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["failures"]) == ("pending", 26)
    wait = row["next_attempt_at"] - datetime.now(UTC)
    assert timedelta(seconds=1) < wait <= cap, wait
    # and the doubling below the cap: 1 s, 2 s, then capped at 3 s
    await pool.execute("UPDATE outbox SET failures = 1 WHERE case_id = $1", case_id)
    await _due_now(pool, case_id)
    await _dispatcher(pool, sms, backoff_initial=timedelta(seconds=1), backoff_max=cap).run_once()
    row = await _row(pool, case_id)
    assert timedelta(seconds=1.5) < row["next_attempt_at"] - row["sending_at"] <= timedelta(seconds=2.5)


async def test_a_hung_sms_channel_does_not_hold_up_staff_notices(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """Guards: delivery slots per channel (OutboxDispatcher._free): with one slot each, an SMS provider that
    hangs for the whole attempt timeout leaves the staff channel its own slot."""
    designer = await make_staff("张伟", Role.designer)
    case_id, key = await _t1(pool, make_staff, make_case)
    sms = ScriptedSms()
    sms.send_mode = "hang"
    notifier = CountingLog()
    attempt_timeout = 20.0
    dispatcher = _dispatcher(pool, sms, notifier, concurrency=1, poll_interval=0.05, attempt_timeout=attempt_timeout)
    stop = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stop))
    try:
        await until(lambda: sms.in_send.is_set(), 10, "the SMS hanging at its provider")
        started = datetime.now(UTC)
        async with pool.acquire() as conn, conn.transaction():
            await WRITER.enqueue(conn, notices=[
                NotifyStaff(case_id=case_id, purpose=f"esc:callback#1:{i}", recipient_id=designer.id, text="超时")
                for i in range(1, 4)])
        await until(lambda: len(notifier.at) == 3, attempt_timeout / 4, "three notices while the SMS hangs")
        assert max(notifier.at.values()) - started < timedelta(seconds=attempt_timeout / 4)
        assert (await _row(pool, case_id))["status"] == "sending" and not sms.release.is_set()
    finally:
        sms.release.set()
        stop.set()
        await asyncio.wait_for(loop, 30)
    assert sms.sent_of(key) == 1
