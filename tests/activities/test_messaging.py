"""The outbox: the writer's exact texts and rows, the dispatcher's exactly-once delivery, retries and hangs.

Real PostgreSQL (a database of this module's own: a dispatcher claims every due row it finds) and real
HTTP peers for Aliyun and WeCom; the default providers are subclassed only to count their calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from activities.providers import (
    AliyunSmsProvider,
    LogNotifier,
    OutboxOnlyProvider,
    OutgoingNotice,
    OutgoingSms,
    WeComNotifier,
)
from background.dispatcher import OutboxDispatcher, build_dispatcher
from config import Settings
from domain import templates
from domain.enums import Gender, MeetingKind, Role
from domain.models import NotifyStaff, SendSms
from store import queries
from store.db import create_pool
from store.outbox import OutboxWriter, build_writer
from tests.activities.conftest import MakeCase, MakeStaff
from tests.activities.peer import FakeAliyun, HoldingAliyun, PeerRequest, http_peer
from tests.support.wait import until

COMPANY = templates.Company("城市人家装饰公司", "城市人家")
T1_SPEC_TEXT = (
    "王先生您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师李娜会准时到达。"
    "城市人家设计师张伟敬！"
)
ALIYUN_TEMPLATES: dict[str, str | None] = {
    "T1": "SMS_1", "T1_NO_ASSISTANT": "SMS_1N", "T2": "SMS_2", "T3": "SMS_3", "T4": "SMS_4",
}  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(own_pool: asyncpg.Pool) -> asyncpg.Pool:
    """This module's own database instead of the session's (make_staff and make_case use it too)."""
    return own_pool


class RecordingOutbox(OutboxOnlyProvider):
    """The default provider, counting its calls."""

    def __init__(self) -> None:
        self.sent: list[OutgoingSms] = []

    async def send(self, msg: OutgoingSms) -> str:
        self.sent.append(msg)
        return await super().send(msg)


class RecordingLog(LogNotifier):
    """The default staff channel, counting its calls."""

    def __init__(self) -> None:
        self.sent: list[OutgoingNotice] = []

    async def notify(self, msg: OutgoingNotice) -> str:
        self.sent.append(msg)
        return await super().notify(msg)


def _writer(sms_provider: str = "outbox", staff_channel: str = "log") -> OutboxWriter:
    return OutboxWriter(COMPANY, sms_provider=sms_provider, staff_channel=staff_channel)


async def _enqueue(
    pool: asyncpg.Pool,
    *,
    sms: Sequence[SendSms] = (),
    notices: Sequence[NotifyStaff] = (),
    writer: OutboxWriter | None = None,
) -> None:
    """As the projection does: in a transaction of the caller's."""
    async with pool.acquire() as conn, conn.transaction():
        await (writer or _writer()).enqueue(conn, sms=sms, notices=notices)


def _dispatcher(
    pool: asyncpg.Pool,
    sms: Any = None,
    notifier: Any = None,
    *,
    confirm_after: timedelta = timedelta(minutes=2),
    **kwargs: Any,
) -> OutboxDispatcher:
    return OutboxDispatcher(
        pool,
        sms if sms is not None else RecordingOutbox(),
        notifier if notifier is not None else RecordingLog(),
        confirm_after=confirm_after,
        **kwargs,
    )


def _aliyun(endpoint: str, provider: type[AliyunSmsProvider] = AliyunSmsProvider) -> AliyunSmsProvider:
    return provider(
        access_key_id="k",
        access_key_secret="s",
        sign_name="城市人家",
        templates=ALIYUN_TEMPLATES,
        endpoint=endpoint,
        protocol="http",
        connect_timeout_ms=1_000,
        read_timeout_ms=10_000,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _row(pool: asyncpg.Pool, case_id: int, purpose: str = "T1") -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outbox WHERE case_id = $1 AND purpose = $2", case_id, purpose)
    assert row is not None, f"no outbox row {case_id}:{purpose}"
    return row


async def _an_hour_later(pool: asyncpg.Pool, case_id: int) -> None:
    """Move a case's outbox clock back an hour: every lease, backoff and confirm_after has passed."""
    await pool.execute(
        "UPDATE outbox SET sending_at = sending_at - interval '1 hour',"
        " next_attempt_at = next_attempt_at - interval '1 hour' WHERE case_id = $1",
        case_id,
    )


async def _designer_and_assistant(make_staff: MakeStaff) -> tuple[int, int]:
    designer = await make_staff("张伟", Role.designer)
    assistant = await make_staff("李娜", Role.assistant)
    return designer.id, assistant.id


def _t1(case_id: int, designer_id: int, assistant_id: int | None, **kwargs: Any) -> SendSms:
    return SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id, **kwargs
    )


# --- writer: texts and rows --------------------------------------------------------------------------


async def test_t1_text_is_the_spec_text_and_is_sent_once(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="王建国", gender="male")
    provider = RecordingOutbox()
    dispatcher = _dispatcher(pool, provider)
    req = _t1(case_id, designer_id, assistant_id)

    await _enqueue(pool, sms=[req])
    assert await dispatcher.run_once() >= 1
    for _ in range(2):  # the same decision recorded again (a retried transaction), dispatched again
        await _enqueue(pool, sms=[req])
        await dispatcher.run_once()

    assert len(provider.sent) == 1  # one provider call
    rows = await pool.fetch("SELECT * FROM outbox WHERE case_id = $1", case_id)
    assert len(rows) == 1
    row = rows[0]
    expected = templates.render_t1(
        client_name="王建国", gender=Gender.male, company=COMPANY, designer="张伟", assistant="李娜"
    )
    assert row["text"] == expected == T1_SPEC_TEXT
    assert row["variables"] == templates.t1_variables(
        client_name="王建国", gender=Gender.male, company=COMPANY, designer="张伟", assistant="李娜"
    )
    assert (row["channel"], row["template"], row["status"], row["provider"]) == ("sms", "T1", "sent", "outbox")
    assert row["provider_id"] == f"outbox-{case_id}:T1"
    assert row["attempts"] == 1 and row["sent_at"] is not None and row["last_error"] is None
    assert provider.sent[0].text == T1_SPEC_TEXT and provider.sent[0].key == f"{case_id}:T1"
    # nothing logged names the client
    assert "王建国" not in caplog.text and "王先生" not in caplog.text and row["recipient"] not in caplog.text


async def test_t1_without_assistant(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="李梅", gender="female")
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id, include_assistant=False)])
    await _dispatcher(pool).run_once()
    [msg] = await queries.case_messages(pool, case_id)
    assert msg["template"] == "T1_NO_ASSISTANT"
    assert msg["text"] == (
        "李女士您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师会准时到达。城市人家设计师张伟敬！"
    )
    assert msg["purpose"] == "T1" and msg["status"] == "sent" and msg["provider_id"] == f"outbox-{case_id}:T1"


async def test_t2_t3_t4_render_with_their_templates(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    manager = await make_staff("刘强", Role.manager)
    case_id = await make_case(client_name="欧阳明", gender="male")
    measure_at = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    await _enqueue(
        pool,
        sms=[
            SendSms(case_id=case_id, purpose="T2", template="T2", designer_id=designer_id,
                    assistant_id=assistant_id, at=measure_at),
            SendSms(case_id=case_id, purpose="T3", template="T3", designer_id=designer_id,
                    assistant_id=assistant_id, manager_id=manager.id),
            SendSms(case_id=case_id, purpose=f"T4:meeting:{measure_at.isoformat()}", template="T4",
                    designer_id=designer_id, at=measure_at, meeting_kind=MeetingKind.measure),
        ],
    )  # fmt: skip
    texts = {m["template"]: m["text"] for m in await queries.case_messages(pool, case_id)}
    common: dict[str, Any] = {"client_name": "欧阳明", "gender": Gender.male, "company": COMPANY, "designer": "张伟"}
    assert texts["T2"] == templates.render_t2(**common, assistant="李娜", measure_at=measure_at)
    assert texts["T3"] == templates.render_t3(**common, manager="刘强", assistant="李娜")
    assert texts["T4"] == templates.render_t4(**common, at=measure_at, kind=MeetingKind.measure)
    assert "欧阳先生" in texts["T3"] and "刘强" in texts["T3"]
    await _dispatcher(pool).run_once()
    assert {m["status"] for m in await queries.case_messages(pool, case_id)} == {"sent"}


async def test_first_rendering_wins(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)])
    # decided again with other data (and twice in one call): the text recorded first is the one sent
    again = _t1(case_id, designer_id, assistant_id, include_assistant=False)
    await _enqueue(pool, sms=[again, again])
    [msg] = await queries.case_messages(pool, case_id)
    assert msg["template"] == "T1" and "李娜" in msg["text"]
    await _dispatcher(pool).run_once()


async def test_messages_that_cannot_go_out_are_recorded_failed_and_the_transaction_commits(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case(client_name="赵六")
    notifier = RecordingLog()
    async with pool.acquire() as conn, conn.transaction():
        await _writer().enqueue(
            conn,
            sms=[
                SendSms(case_id=case_id, purpose="T1", template="T1"),  # no designer
                SendSms(case_id=case_id, purpose="T3", template="T3", designer_id=designer.id),  # no manager
                SendSms(case_id=987_654_321, purpose="T1", template="T1", designer_id=designer.id),  # no case
            ],
            notices=[
                NotifyStaff(case_id=case_id, purpose="esc:x", recipient_id=987_654_321, text="无人可通知"),
                # the module's database has no site lead at all
                NotifyStaff(case_id=case_id, purpose="esc:y", recipient_role=Role.site_lead, text="无人在岗"),
                NotifyStaff(case_id=case_id, purpose="esc:z", text="没有接收人"),
                NotifyStaff(case_id=case_id, purpose="remind", recipient_id=designer.id, text="提醒"),
            ],
        )
        # the caller's transaction is still usable after the failed messages
        assert await conn.fetchval("SELECT 1") == 1
    rows = {
        r["purpose"]: r
        for r in await pool.fetch(
            "SELECT purpose, status, error_code, last_error FROM outbox WHERE case_id = $1", case_id
        )
    }
    assert (rows["T1"]["status"], rows["T1"]["error_code"]) == ("failed", "sms_invalid")
    assert rows["T1"]["last_error"] == "短信 T1 需要设计师"
    assert (rows["T3"]["error_code"], rows["T3"]["last_error"]) == ("sms_invalid", "短信 T3 需要设计部经理")
    assert (rows["esc:x"]["status"], rows["esc:x"]["error_code"]) == ("failed", "no_recipient")
    assert rows["esc:x"]["last_error"] == "员工 987654321 不存在"
    assert rows["esc:y"]["last_error"] == "没有在岗的小区负责人"
    assert rows["esc:z"]["last_error"] == "通知没有指定接收人或角色"
    assert rows["remind"]["status"] == "pending"
    assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = 987654321")
    # failed rows are never handed to a provider
    await _dispatcher(pool, notifier=notifier).run_once()
    assert [n.key for n in notifier.sent if n.key.startswith(f"{case_id}:")] == [f"{case_id}:remind"]
    assert (await _row(pool, case_id, "T1"))["status"] == "failed"
    assert "赵六" not in caplog.text and "赵先生" not in caplog.text


async def test_enqueue_costs_three_statements_however_many_messages(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    manager = await make_staff("刘强", Role.manager)
    await make_staff("赵总", Role.director)
    cases = [await make_case() for _ in range(3)]
    statements: list[str] = []

    def record(query: Any) -> None:
        statements.append(query.query)

    async with pool.acquire() as conn:
        conn.add_query_logger(record)
        try:
            async with conn.transaction():
                await _writer().enqueue(
                    conn,
                    sms=[_t1(c, designer_id, assistant_id) for c in cases]
                    + [SendSms(case_id=c, purpose="T3", template="T3", designer_id=designer_id,
                               assistant_id=assistant_id, manager_id=manager.id) for c in cases],
                    notices=[NotifyStaff(case_id=c, purpose="esc", recipient_role=Role.director, text="超时")
                             for c in cases]
                    + [NotifyStaff(case_id=c, purpose="remind", recipient_id=designer_id, text="提醒")
                       for c in cases],
                )  # fmt: skip
        finally:
            conn.remove_query_logger(record)
    ours = [q for q in statements if q.strip().rstrip(";").upper() not in ("BEGIN", "COMMIT")]
    assert len(ours) == 3, ours
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = ANY($1::bigint[])", cases) == 12
    await _dispatcher(pool).run_once()


# --- dispatcher: exactly once ------------------------------------------------------------------------


async def test_sms_through_the_aliyun_peer(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="王建国", gender="male")
    with http_peer(FakeAliyun()) as peer:
        dispatcher = _dispatcher(pool, _aliyun(peer.endpoint))
        await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
        await dispatcher.run_once()
        await dispatcher.run_once()  # again: nothing to do
    row = await _row(pool, case_id)
    assert (row["status"], row["provider"], row["provider_id"]) == ("sent", "aliyun", "biz-1")
    [sent] = peer.actions("SendSms")
    assert sent.params["OutId"] == f"{case_id}:T1"
    assert sent.params["TemplateCode"] == "SMS_1"
    assert sent.params["PhoneNumbers"] == row["recipient"]
    assert json.loads(sent.params["TemplateParam"]) == row["variables"]
    assert row["text"] == T1_SPEC_TEXT


class DiesAfterSend(AliyunSmsProvider):
    """The provider accepts the message, then the process dies before the outcome is recorded."""

    async def send(self, msg: OutgoingSms) -> str:
        await super().send(msg)
        # BaseException, like a killed process: no `except Exception` around the call sees it.
        raise asyncio.CancelledError("worker died")


async def test_crash_after_the_provider_accepted_is_not_sent_twice(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    with http_peer(FakeAliyun()) as peer:
        await _dispatcher(pool, _aliyun(peer.endpoint, DiesAfterSend)).run_once()
        left = await _row(pool, case_id)
        assert (left["status"], left["attempts"]) == ("sending", 1)

        # a new process at once finds the attempt too fresh to judge: it neither asks nor sends
        assert await _dispatcher(pool, _aliyun(peer.endpoint), confirm_after=timedelta(0)).run_once() == 0
        assert not peer.actions("QuerySendDetails")
        # once the attempt was left alone long enough, it asks and finds the message
        await _an_hour_later(pool, case_id)
        await _dispatcher(pool, _aliyun(peer.endpoint)).run_once()

    row = await _row(pool, case_id)
    assert row["status"] == "sent" and row["provider_id"] == f"aliyun-outid:{case_id}:T1"
    assert len(peer.actions("SendSms")) == 1  # the peer got exactly one SendSms
    assert len(peer.actions("QuerySendDetails")) >= 1
    assert row["attempts"] == 1  # the retry asked, it did not send


async def test_crash_before_the_request_left_is_sent_after_asking(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    # an earlier dispatcher committed its claim an hour ago and died before its request left
    await pool.execute(
        "UPDATE outbox SET status = 'sending', attempts = 1, sending_at = now() - interval '1 hour',"
        " next_attempt_at = now() - interval '1 hour' WHERE case_id = $1",
        case_id,
    )
    with http_peer(FakeAliyun()) as peer:
        await _dispatcher(pool, _aliyun(peer.endpoint)).run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["provider_id"], row["attempts"]) == ("sent", "biz-1", 2)
    assert len(peer.actions("QuerySendDetails")) == 2  # the attempt's day and the next (midnight)
    assert len(peer.actions("SendSms")) == 1


class SlowProvider(RecordingOutbox):
    """Slow enough that dispatchers overlap."""

    async def send(self, msg: OutgoingSms) -> str:
        await asyncio.sleep(0.2)
        return await super().send(msg)


async def test_concurrent_dispatchers_send_each_message_once(
    pool: asyncpg.Pool, own_dsn: str, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    cases = [await make_case() for _ in range(6)]
    await _enqueue(pool, sms=[_t1(c, designer_id, assistant_id) for c in cases])
    provider = SlowProvider()
    # three worker processes: three pools, one delivery at a time each, so their claims interleave
    pools = [await create_pool(own_dsn, min_size=1, max_size=4) for _ in range(3)]
    try:
        handled = await asyncio.gather(*(_dispatcher(p, provider, concurrency=1).run_once() for p in pools))
    finally:
        for p in pools:
            await p.close()
    keys = [m.key for m in provider.sent]
    assert sorted(keys) == sorted(f"{c}:T1" for c in cases)  # every message, each once
    assert sum(1 for n in handled if n) >= 2, handled  # the dispatchers really overlapped
    assert {(await _row(pool, c))["status"] for c in cases} == {"sent"}


async def test_notice_exactly_once_by_id(pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase) -> None:
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    notifier = RecordingLog()
    dispatcher = _dispatcher(pool, notifier=notifier)
    req = NotifyStaff(case_id=case_id, purpose="remind:first_meeting", recipient_id=designer.id, text="1小时后见客户")
    for _ in range(3):
        await _enqueue(pool, notices=[req])
        await dispatcher.run_once()
    assert len(notifier.sent) == 1
    sent = notifier.sent[0]
    assert (sent.key, sent.recipient_name, sent.phone, sent.role, sent.text) == (
        f"{case_id}:remind:first_meeting",
        "张伟",
        designer.phone,
        "designer",
        "1小时后见客户",
    )
    [msg] = await queries.case_messages(pool, case_id, "staff")
    assert (msg["purpose"], msg["status"], msg["provider"]) == ("remind:first_meeting", "sent", "log")
    assert await queries.case_messages(pool, case_id) == []  # not a client SMS


async def test_notice_by_role_goes_to_the_first_active_member(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    await make_staff("赵总", Role.director)
    case_id = await make_case()
    notifier = RecordingLog()
    await _enqueue(
        pool, notices=[NotifyStaff(case_id=case_id, purpose="esc:callback#1:2", recipient_role=Role.director,
                                   text="回访超时")]
    )  # fmt: skip
    await _dispatcher(pool, notifier=notifier).run_once()
    row = await _row(pool, case_id, "esc:callback#1:2")
    told = await pool.fetchrow(
        "SELECT id, name FROM staff WHERE role = 'director' AND status = 'active' ORDER BY id LIMIT 1"
    )
    assert (row["recipient_id"], row["status"]) == (told["id"], "sent")
    [sent] = [n for n in notifier.sent if n.key == f"{case_id}:esc:callback#1:2"]
    assert (sent.recipient_name, sent.text) == (told["name"], "回访超时")


class DiesAfterPost(RecordingLog):
    """A channel that cannot be asked (like the WeCom robot): the post went out, then the process died."""

    confirmable = False

    async def notify(self, msg: OutgoingNotice) -> str:
        await super().notify(msg)
        raise asyncio.CancelledError("worker died")


async def test_unconfirmable_notice_interrupted_mid_post_is_never_posted_twice(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    channel = DiesAfterPost()
    purpose = "esc:contact#1:1"
    await _enqueue(
        pool, notices=[NotifyStaff(case_id=case_id, purpose=purpose, recipient_id=designer.id, text="联系客户已到期")]
    )
    await _dispatcher(pool, notifier=channel).run_once()
    assert (await _row(pool, case_id, purpose))["status"] == "sending"
    await _an_hour_later(pool, case_id)
    for _ in range(2):
        await _dispatcher(pool, notifier=channel, confirm_after=timedelta(0)).run_once()
    assert len(channel.sent) == 1  # posted once, never again
    row = await _row(pool, case_id, purpose)
    assert (row["status"], row["error_code"]) == ("failed", "outcome_unknown")


async def test_a_message_is_delivered_only_by_the_provider_it_was_recorded_for(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    # a worker configured with the record-only provider must not "send" a real SMS by recording it
    provider = RecordingOutbox()
    await _dispatcher(pool, provider).run_once()
    row = await _row(pool, case_id)
    assert (row["status"], row["attempts"], row["provider"]) == ("pending", 0, "aliyun")
    assert not [m for m in provider.sent if m.key == f"{case_id}:T1"]
    with http_peer(FakeAliyun()) as peer:
        await _dispatcher(pool, _aliyun(peer.endpoint)).run_once()
    assert (await _row(pool, case_id))["status"] == "sent" and len(peer.actions("SendSms")) == 1


# --- dispatcher: failures, backoff, hangs ---------------------------------------------------------------


async def test_refused_for_good_is_failed_and_never_attempted_again(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    fake = FakeAliyun()
    fake.send_answer = (200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号", "RequestId": "r"})
    with http_peer(fake) as peer:
        dispatcher = _dispatcher(pool, _aliyun(peer.endpoint), confirm_after=timedelta(0))
        await dispatcher.run_once()
        row = await _row(pool, case_id)
        assert (row["status"], row["error_code"]) == ("failed", "sms_rejected")
        assert "isv.MOBILE_NUMBER_ILLEGAL" in row["last_error"]
        # however long one waits, and whatever the provider would now say
        await _an_hour_later(pool, case_id)
        fake.send_answer = None
        assert await dispatcher.run_once() == 0
    assert len(peer.actions("SendSms")) == 1 and not peer.actions("QuerySendDetails")
    assert (await _row(pool, case_id))["status"] == "failed"


async def test_throttled_waits_for_its_backoff_then_is_sent(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    fake = FakeAliyun()
    fake.send_answer = (200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "流控", "RequestId": "r"})
    with http_peer(fake) as peer:
        dispatcher = _dispatcher(pool, _aliyun(peer.endpoint), backoff_initial=timedelta(seconds=1))
        await dispatcher.run_once()
        row = await _row(pool, case_id)
        assert row["status"] == "pending" and "BUSINESS_LIMIT_CONTROL" in row["last_error"]
        assert row["next_attempt_at"] >= row["sending_at"] + timedelta(seconds=1)
        # waiting for its backoff, the row is not handed out again
        assert await dispatcher.run_once() == 0
        assert len(peer.actions("SendSms")) == 1
        fake.send_answer = None
        await until(dispatcher.run_once, 10, "the throttled SMS claimed again after its backoff")
    row = await _row(pool, case_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert not peer.actions("QuerySendDetails")  # throttled = definitely not sent: no need to ask


async def test_unreachable_sms_provider_is_retried_with_growing_backoff_until_it_is_back(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=_writer("aliyun"))
    port = _closed_port()  # the provider is down: connections are refused
    dispatcher = _dispatcher(
        pool, _aliyun(f"127.0.0.1:{port}"), backoff_initial=timedelta(seconds=0.2), backoff_max=timedelta(seconds=5)
    )
    delays: list[timedelta] = []
    for attempt in range(1, 4):
        await until(dispatcher.run_once, 10, f"attempt {attempt} of the unreachable SMS")
        row = await _row(pool, case_id)
        assert (row["status"], row["attempts"], row["failures"]) == ("pending", attempt, attempt)
        assert row["last_error"].startswith("[ClientConnectorError]") or "网络错误" in row["last_error"]
        assert row["recipient"] not in row["last_error"]  # masked
        delays.append(row["next_attempt_at"] - row["sending_at"])
    # exponential: at least 0.2 s, 0.4 s, 0.8 s after each attempt began, and growing
    assert all(d >= timedelta(seconds=0.2 * 2**i) for i, d in enumerate(delays)), delays
    assert delays == sorted(delays), delays
    with http_peer(FakeAliyun(), port=port) as peer:
        await until(dispatcher.run_once, 10, "the SMS once the provider is back")
    row = await _row(pool, case_id)
    assert (row["status"], row["provider_id"], row["last_error"]) == ("sent", "biz-1", None)
    assert len(peer.actions("SendSms")) == 1
    assert not peer.actions("QuerySendDetails")  # refused connections never carried the message


async def test_unreachable_wecom_robot_is_retried_not_given_up(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    await _enqueue(
        pool,
        notices=[NotifyStaff(case_id=case_id, purpose="remind", recipient_id=designer.id, text="提醒")],
        writer=_writer(staff_channel="wecom"),
    )
    port = _closed_port()
    dispatcher = _dispatcher(
        pool,
        notifier=WeComNotifier(f"http://127.0.0.1:{port}/send?key=k", timeout=2.0),
        confirm_after=timedelta(0),
        backoff_initial=timedelta(seconds=0.2),
    )
    await dispatcher.run_once()
    row = await _row(pool, case_id, "remind")
    assert row["status"] == "pending" and "ConnectError" in row["last_error"]
    posted: list[PeerRequest] = []

    def robot(req: PeerRequest) -> tuple[int, Any]:
        posted.append(req)
        return 200, {"errcode": 0, "errmsg": "ok"}

    with http_peer(robot, port=port):
        await until(dispatcher.run_once, 10, "the notice once the robot is reachable")
    row = await _row(pool, case_id, "remind")
    assert (row["status"], row["error_code"]) == ("sent", None)  # not outcome_unknown: it never left
    assert len(posted) == 1 and posted[0].json["text"]["mentioned_mobile_list"] == [designer.phone]


async def test_a_hanging_provider_delays_no_other_message(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    hung_case, other_case, third_case = await make_case(), await make_case(), await make_case()
    measure_at = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    notifier = RecordingLog()
    fake = HoldingAliyun(hold_out_id=f"{hung_case}:T1")
    attempt_timeout = 3.0
    with http_peer(fake) as peer:
        dispatcher = _dispatcher(
            pool,
            _aliyun(peer.endpoint),
            notifier,
            confirm_after=timedelta(0),
            poll_interval=0.05,
            attempt_timeout=attempt_timeout,
            backoff_initial=timedelta(seconds=0.2),
        )
        stop = asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop))
        try:
            await _enqueue(pool, sms=[_t1(hung_case, designer_id, assistant_id)], writer=_writer("aliyun"))
            await until(lambda: fake.holding.is_set(), 5, "the hung SMS reached the provider")
            # then the rest: the same case's other purposes, other cases, a staff notice
            await _enqueue(
                pool,
                sms=[
                    SendSms(case_id=hung_case, purpose="T2", template="T2", designer_id=designer_id,
                            assistant_id=assistant_id, at=measure_at),
                    _t1(other_case, designer_id, assistant_id),
                    _t1(third_case, designer_id, assistant_id),
                ],
                notices=[NotifyStaff(case_id=hung_case, purpose="remind", recipient_id=designer_id, text="提醒")],
                writer=_writer("aliyun"),
            )  # fmt: skip
            others = [(hung_case, "T2"), (other_case, "T1"), (third_case, "T1"), (hung_case, "remind")]

            async def others_sent() -> bool:
                return all([(await _row(pool, c, p))["status"] == "sent" for c, p in others])

            # well before the hung attempt is abandoned, everything else is out
            await until(others_sent, attempt_timeout * 0.8, "the other messages, while one SMS hangs")
            hung = await _row(pool, hung_case)
            assert (hung["status"], hung["last_error"]) == ("sending", None)
            assert fake.holding.is_set() and not fake.release.is_set()

            # the hung attempt is abandoned after attempt_timeout; the provider had the message, so the
            # next try asks and finds it instead of sending it again
            async def abandoned() -> asyncpg.Record | None:
                row = await _row(pool, hung_case)
                return row if row["failures"] >= 1 else None

            gave_up = await until(abandoned, attempt_timeout + 5, "the hung attempt abandoned")
            assert gave_up["status"] == "sent" or "没有回应" in gave_up["last_error"]

            async def hung_sent() -> bool:
                return (await _row(pool, hung_case))["status"] == "sent"

            await until(hung_sent, 10, "the hung SMS confirmed with the provider")
        finally:
            fake.release.set()
            stop.set()
            await asyncio.wait_for(loop, 30)
    hung = await _row(pool, hung_case)
    assert hung["provider_id"] == f"aliyun-outid:{hung_case}:T1" and hung["attempts"] == 1
    sent_ids = [p.params["OutId"] for p in peer.actions("SendSms")]
    assert sorted(sent_ids) == sorted({f"{hung_case}:T1", f"{hung_case}:T2", f"{other_case}:T1", f"{third_case}:T1"})
    assert [n.key for n in notifier.sent] == [f"{hung_case}:remind"]


async def test_the_loop_survives_a_database_outage(
    pool: asyncpg.Pool, own_dsn: str, pg_dsn: str, make_staff: MakeStaff, make_case: MakeCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    first, second = await make_case(), await make_case()
    sep = "&" if "?" in own_dsn else "?"
    dispatcher_pool = await create_pool(f"{own_dsn}{sep}application_name=outbox-dispatcher-test", max_size=4)
    provider = RecordingOutbox()
    stop = asyncio.Event()
    # a short pause after database errors: the test waits for the dispatcher to come back, not 30 s
    loop = asyncio.create_task(_dispatcher(dispatcher_pool, provider, poll_interval=0.05, max_error_pause=1.0).run(stop))
    try:
        async with pool.acquire() as conn:  # the test's own connection, kept through the outage
            async with conn.transaction():
                await _writer().enqueue(conn, sms=[_t1(first, designer_id, assistant_id)])
            await until(lambda: any(m.key == f"{first}:T1" for m in provider.sent), 10, "the first SMS")
            # the database goes away for the dispatcher: its connections dropped, new ones refused
            dbname = await conn.fetchval("SELECT current_database()")
            admin = await asyncpg.connect(pg_dsn)  # (a database cannot close itself)
            try:
                await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'outbox-dispatcher-test'"
                )
                await until(lambda: "cannot claim rows" in caplog.text, 10, "the dispatcher noticed the outage")
                async with conn.transaction():
                    await _writer().enqueue(conn, sms=[_t1(second, designer_id, assistant_id)])
                assert not loop.done()
            finally:
                await admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
                await admin.close()
        await until(lambda: any(m.key == f"{second}:T1" for m in provider.sent), 40, "the SMS after the outage")
        assert not loop.done()
    finally:
        stop.set()
        await asyncio.wait_for(loop, 30)
        await dispatcher_pool.close()
    assert (await _row(pool, second))["status"] == "sent"


# --- factories -------------------------------------------------------------------------------------------


async def test_build_writer_and_dispatcher_from_settings(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    settings = Settings(
        company_name="城市人家装饰公司", company_short_name="城市人家", outbox_concurrency=2,
        outbox_attempt_timeout_seconds=5, outbox_backoff_initial_seconds=0.5,
    )  # fmt: skip
    await _enqueue(pool, sms=[_t1(case_id, designer_id, assistant_id)], writer=build_writer(settings))
    await build_dispatcher(pool, settings).run_once()  # the default providers: outbox, log
    row = await _row(pool, case_id)
    assert (row["status"], row["provider"], row["text"]) == ("sent", "outbox", T1_SPEC_TEXT)


async def test_a_phone_written_into_a_notice_reaches_only_who_may_see_it(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    """SPEC §13: a phone in free text (a note, a correction, the callback's notes) is masked on channels others
    read (the log, the WeCom group robot) and for recipients who may not see the client's contact details."""
    designer = await make_staff("张伟", Role.designer)
    lead = await make_staff("刘敏", Role.assistant_lead)
    case_id = await make_case(designer_id=designer.id)
    text = "经理回访记录：客户爱人电话 +86 139-1234-5678，晚上联系"

    def note(purpose: str, to: int) -> NotifyStaff:
        return NotifyStaff(case_id=case_id, purpose=purpose, recipient_id=to, text=text)

    # the log (and the group robot) are read by others: masked even for the case's designer
    await _enqueue(pool, notices=[note("n:log", designer.id)])
    await _enqueue(pool, notices=[note("n:robot", designer.id)], writer=_writer(staff_channel="wecom"))
    for purpose in ("n:log", "n:robot"):
        row = await _row(pool, case_id, purpose)
        assert "139****5678" in row["text"] and "1234" not in row["text"] and "1234" not in str(row["variables"])
    # a personal channel: the case's designer reads it; the assistant lead, who works no case, does not
    personal = _writer(staff_channel="sms")
    await _enqueue(pool, notices=[note("n:designer", designer.id), note("n:lead", lead.id)], writer=personal)
    assert (await _row(pool, case_id, "n:designer"))["text"] == text
    assert "139-1234-5678" not in (await _row(pool, case_id, "n:lead"))["text"]
