"""send_sms and notify_staff: the exact texts, the outbox rows, and exactly-once under retries and crashes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messaging import MessagingActivities, OutboxBusy
from activities.providers import (
    AliyunSmsProvider,
    LogNotifier,
    OutboxOnlyProvider,
    OutgoingNotice,
    OutgoingSms,
    ProviderError,
)
from api import queries
from domain import templates
from domain.enums import Gender, MeetingKind, Role
from domain.models import NotifyStaff, SendSms
from tests.activities.conftest import MakeCase, MakeStaff
from tests.activities.peer import FakeAliyun, http_peer

COMPANY = templates.Company("城市人家装饰公司", "城市人家")
T1_SPEC_TEXT = (
    "王先生您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师李娜会准时到达。"
    "城市人家设计师张伟敬！"
)


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


def _messaging(
    pool: asyncpg.Pool,
    sms: object | None = None,
    notifier: object | None = None,
    *,
    confirm_after: timedelta = timedelta(minutes=2),
) -> MessagingActivities:
    return MessagingActivities(
        pool,
        sms or RecordingOutbox(),  # type: ignore[arg-type]
        notifier or RecordingLog(),  # type: ignore[arg-type]
        COMPANY,
        confirm_after=confirm_after,
    )


async def _messages(pool: asyncpg.Pool, case_id: int, channel: str = "sms") -> list[asyncpg.Record]:
    return await queries.case_messages(pool, case_id, channel)


def _aliyun(endpoint: str) -> AliyunSmsProvider:
    return AliyunSmsProvider(
        access_key_id="k",
        access_key_secret="s",
        sign_name="城市人家",
        templates={"T1": "SMS_1", "T1_NO_ASSISTANT": "SMS_1N", "T2": "SMS_2", "T3": "SMS_3", "T4": "SMS_4"},
        endpoint=endpoint,
        protocol="http",
    )


async def _designer_and_assistant(make_staff: MakeStaff) -> tuple[int, int]:
    designer = await make_staff("张伟", Role.designer)
    assistant = await make_staff("李娜", Role.assistant)
    return designer.id, assistant.id


async def test_send_sms_t1_text_is_the_spec_text_and_is_sent_once(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="王建国", gender="male")
    provider = RecordingOutbox()
    acts = _messaging(pool, provider)
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )

    # the first call inside a real activity context, the "retries" as plain calls
    first = await ActivityEnvironment().run(acts.send_sms, req)
    again = [await acts.send_sms(req) for _ in range(2)]

    assert first.status == "sent" and first.provider == "outbox" and first.template == "T1"
    assert first.provider_id == f"outbox-{case_id}:T1"
    assert all(r.id == first.id and r.status == "sent" for r in again)
    assert len(provider.sent) == 1  # one provider call for three activity calls
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
    assert row["channel"] == "sms" and row["attempts"] == 1 and row["sent_at"] is not None
    assert provider.sent[0].text == T1_SPEC_TEXT and provider.sent[0].key == f"{case_id}:T1"
    # client data stays in PostgreSQL: the activity's result (Temporal history) carries none of it
    dumped = first.model_dump_json()
    assert "王" not in dumped and row["recipient"] not in dumped


async def test_send_sms_t1_without_assistant(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="李梅", gender="female")
    acts = _messaging(pool)
    rec = await acts.send_sms(
        SendSms(
            case_id=case_id,
            purpose="T1",
            template="T1",
            designer_id=designer_id,
            assistant_id=assistant_id,
            include_assistant=False,
        )
    )
    assert rec.template == "T1_NO_ASSISTANT"
    [msg] = await _messages(pool, case_id)
    assert msg["text"] == (
        "李女士您好：我是城市人家装饰公司设计师张伟，非常荣幸为您服务，我和我的助理设计师会准时到达。城市人家设计师张伟敬！"
    )
    assert msg["purpose"] == "T1" and msg["status"] == "sent" and msg["provider_id"] == rec.provider_id


async def test_send_sms_t2_t3_t4_render_with_their_templates(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    manager = await make_staff("刘强", Role.manager)
    case_id = await make_case(client_name="欧阳明", gender="male")
    acts = _messaging(pool)
    measure_at = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    await acts.send_sms(
        SendSms(
            case_id=case_id,
            purpose="T2",
            template="T2",
            designer_id=designer_id,
            assistant_id=assistant_id,
            at=measure_at,
        )
    )
    await acts.send_sms(
        SendSms(
            case_id=case_id,
            purpose="T3",
            template="T3",
            designer_id=designer_id,
            assistant_id=assistant_id,
            manager_id=manager.id,
        )
    )
    await acts.send_sms(
        SendSms(
            case_id=case_id,
            purpose=f"T4:meeting:{measure_at.isoformat()}",
            template="T4",
            designer_id=designer_id,
            at=measure_at,
            meeting_kind=MeetingKind.measure,
        )
    )
    texts = {m["template"]: m["text"] for m in await _messages(pool, case_id)}
    common: dict[str, Any] = {
        "client_name": "欧阳明",
        "gender": Gender.male,
        "company": COMPANY,
        "designer": "张伟",
    }
    assert texts["T2"] == templates.render_t2(**common, assistant="李娜", measure_at=measure_at)
    assert texts["T3"] == templates.render_t3(**common, manager="刘强", assistant="李娜")
    assert texts["T4"] == templates.render_t4(**common, at=measure_at, kind=MeetingKind.measure)
    assert "欧阳先生" in texts["T3"] and "刘强" in texts["T3"]


async def test_send_sms_business_errors_are_not_retried(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    acts = _messaging(pool)
    with pytest.raises(ApplicationError) as info:
        await acts.send_sms(SendSms(case_id=987_654_321, purpose="T1", template="T1", designer_id=1))
    assert info.value.type == "case_missing" and info.value.non_retryable
    case_id = await make_case()
    with pytest.raises(ApplicationError) as info:
        await acts.send_sms(SendSms(case_id=case_id, purpose="T1", template="T1"))
    assert info.value.type == "sms_invalid" and info.value.non_retryable
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = $1", case_id) == 0


async def test_send_sms_through_aliyun_peer(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case(client_name="王建国", gender="male")
    fake = FakeAliyun()
    with http_peer(fake) as peer:
        acts = _messaging(pool, _aliyun(peer.endpoint))
        req = SendSms(
            case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
        )
        rec = await acts.send_sms(req)
        await acts.send_sms(req)  # a retry
    assert rec.status == "sent" and rec.provider == "aliyun" and rec.provider_id == "biz-1"
    [sent] = peer.actions("SendSms")
    row = await pool.fetchrow("SELECT * FROM outbox WHERE id = $1", rec.id)
    assert sent.params["OutId"] == f"{case_id}:T1"
    assert sent.params["TemplateCode"] == "SMS_1"
    assert sent.params["PhoneNumbers"] == row["recipient"]
    assert json.loads(sent.params["TemplateParam"]) == row["variables"]
    assert row["text"] == T1_SPEC_TEXT


class DiesAfterSend(AliyunSmsProvider):
    """The provider accepts the message, then the worker dies before the outcome is recorded."""

    async def send(self, msg: OutgoingSms) -> str:
        await super().send(msg)
        # BaseException, like a killed process: no `except Exception` in the activity sees it.
        raise asyncio.CancelledError("worker died")


async def test_crash_after_provider_accepted_is_not_sent_twice(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    fake = FakeAliyun()
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )
    with http_peer(fake) as peer:
        dying = DiesAfterSend(
            access_key_id="k",
            access_key_secret="s",
            sign_name="城市人家",
            templates={"T1": "SMS_1"},
            endpoint=peer.endpoint,
            protocol="http",
        )
        with pytest.raises(asyncio.CancelledError):
            await _messaging(pool, dying).send_sms(req)
        left = await pool.fetchrow("SELECT status, attempts FROM outbox WHERE case_id = $1", case_id)
        assert (left["status"], left["attempts"]) == ("sending", 1)

        # a retry at once finds the attempt too fresh to judge: it neither asks nor sends
        with pytest.raises(OutboxBusy):
            await _messaging(pool, _aliyun(peer.endpoint)).send_sms(req)
        assert not peer.actions("QuerySendDetails")
        # the retry once the attempt was left alone long enough, on a "new worker"
        rec = await _messaging(pool, _aliyun(peer.endpoint), confirm_after=timedelta(0)).send_sms(req)

    assert rec.status == "sent" and rec.provider_id == f"aliyun-outid:{case_id}:T1"
    assert len(peer.actions("SendSms")) == 1  # the peer got exactly one SendSms
    assert len(peer.actions("QuerySendDetails")) >= 1
    assert rec.attempts == 1  # the retry asked, it did not send


async def test_crash_before_request_left_sends_on_retry(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )
    fake = FakeAliyun()
    with http_peer(fake) as peer:
        acts = _messaging(pool, _aliyun(peer.endpoint))
        # an earlier attempt committed `sending` an hour ago and died before its request left
        await acts.render(req)  # (validates the request renders)
        await pool.execute(
            "INSERT INTO outbox (case_id, purpose, channel, recipient, template, text, variables, provider,"
            " status, attempts, sending_at) SELECT $1, 'T1', 'sms', client_phone, 'T1', 'x', '{}'::jsonb,"
            " 'aliyun', 'sending', 1, now() - interval '1 hour' FROM cases WHERE id = $1",
            case_id,
        )
        rec = await acts.send_sms(req)
    assert rec.status == "sent" and rec.provider_id == "biz-1" and rec.attempts == 2
    assert len(peer.actions("QuerySendDetails")) == 2  # the attempt's day and the next (midnight)
    assert len(peer.actions("SendSms")) == 1


async def test_rejected_sms_is_failed_for_good(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    fake = FakeAliyun()
    fake.send_answer = (200, {"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "非法手机号", "RequestId": "r"})
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )
    with http_peer(fake) as peer:
        acts = _messaging(pool, _aliyun(peer.endpoint))
        for _ in range(2):
            with pytest.raises(ApplicationError) as info:
                await acts.send_sms(req)
            assert info.value.type == "sms_rejected" and info.value.non_retryable
    assert len(peer.actions("SendSms")) == 1
    row = await pool.fetchrow("SELECT status, last_error FROM outbox WHERE case_id = $1", case_id)
    assert row["status"] == "failed" and "isv.MOBILE_NUMBER_ILLEGAL" in row["last_error"]


async def test_throttled_sms_goes_back_to_pending_and_is_sent_by_the_retry(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    fake = FakeAliyun()
    fake.send_answer = (200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "流控", "RequestId": "r"})
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )
    with http_peer(fake) as peer:
        acts = _messaging(pool, _aliyun(peer.endpoint))
        with pytest.raises(ProviderError) as info:
            await acts.send_sms(req)
        assert info.value.retryable
        row = await pool.fetchrow("SELECT status, last_error FROM outbox WHERE case_id = $1", case_id)
        assert row["status"] == "pending" and "BUSINESS_LIMIT_CONTROL" in row["last_error"]
        fake.send_answer = None
        rec = await acts.send_sms(req)
    assert rec.status == "sent" and rec.attempts == 2
    assert not peer.actions("QuerySendDetails")  # throttled = definitely not sent: no need to ask


class SlowProvider(RecordingOutbox):
    """Slow enough that concurrent attempts overlap."""

    async def send(self, msg: OutgoingSms) -> str:
        await asyncio.sleep(0.3)
        return await super().send(msg)


async def test_concurrent_attempts_send_once(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer_id, assistant_id = await _designer_and_assistant(make_staff)
    case_id = await make_case()
    provider = SlowProvider()
    acts = _messaging(pool, provider)
    req = SendSms(
        case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id
    )
    results = await asyncio.gather(*(acts.send_sms(req) for _ in range(5)), return_exceptions=True)
    assert len(provider.sent) == 1
    assert all(isinstance(r, OutboxBusy) or r.status == "sent" for r in results)  # type: ignore[union-attr]
    assert any(isinstance(r, OutboxBusy) for r in results)  # the overlap really happened
    assert (await acts.send_sms(req)).status == "sent"
    assert len(provider.sent) == 1


async def test_notify_staff_exactly_once_by_id(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    notifier = RecordingLog()
    acts = _messaging(pool, notifier=notifier)
    req = NotifyStaff(
        case_id=case_id, purpose="remind:first_meeting", recipient_id=designer.id, text="1小时后见客户"
    )
    recs = [await acts.notify_staff(req) for _ in range(3)]
    assert len({r.id for r in recs}) == 1 and recs[0].status == "sent" and recs[0].channel == "staff"
    assert recs[0].recipient_id == designer.id and recs[0].provider == "log"
    assert len(notifier.sent) == 1
    sent: OutgoingNotice = notifier.sent[0]
    assert (sent.recipient_name, sent.phone, sent.role, sent.text) == (
        "张伟",
        designer.phone,
        "designer",
        "1小时后见客户",
    )
    assert [m["purpose"] for m in await _messages(pool, case_id, "staff")] == ["remind:first_meeting"]
    assert await _messages(pool, case_id) == []  # not a client SMS


async def test_notify_staff_by_role_and_without_recipient(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    await make_staff("赵总", Role.director)
    case_id = await make_case()
    notifier = RecordingLog()
    acts = _messaging(pool, notifier=notifier)
    rec = await acts.notify_staff(
        NotifyStaff(
            case_id=case_id, purpose="esc:callback#1:2", recipient_role=Role.director, text="回访超时"
        )
    )
    told = await pool.fetchrow("SELECT role, status, name FROM staff WHERE id = $1", rec.recipient_id)
    assert (told["role"], told["status"], rec.status) == ("director", "active", "sent")
    assert notifier.sent[0].recipient_name == told["name"] and notifier.sent[0].text == "回访超时"

    # nobody to tell (the database is shared, so a vanished id stands in for an empty role)
    req = NotifyStaff(case_id=case_id, purpose="esc:x", recipient_id=987_654_321, text="无人可通知")
    for _ in range(2):
        with pytest.raises(ApplicationError) as info:
            await acts.notify_staff(req)
        assert info.value.type == "no_recipient" and info.value.non_retryable
    row = await pool.fetchrow(
        "SELECT status, last_error FROM outbox WHERE case_id = $1 AND purpose = 'esc:x'", case_id
    )
    assert row["status"] == "failed" and "员工 987654321 不存在" in row["last_error"]
    assert len(notifier.sent) == 1


class DiesAfterPost(RecordingLog):
    """A channel that cannot be asked (like the WeCom robot): the post went out, then the worker died."""

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
    req = NotifyStaff(case_id=case_id, purpose="esc:contact#1:1", recipient_id=designer.id, text="联系客户已到期")
    with pytest.raises(asyncio.CancelledError):
        await _messaging(pool, notifier=channel).notify_staff(req)
    retry = _messaging(pool, notifier=channel, confirm_after=timedelta(0))
    for _ in range(2):
        with pytest.raises(ApplicationError) as info:
            await retry.notify_staff(req)
        assert info.value.type == "outcome_unknown" and info.value.non_retryable
    assert len(channel.sent) == 1  # posted once, never again
    row = await pool.fetchrow(
        "SELECT status, error_code FROM outbox WHERE case_id = $1 AND purpose = $2", case_id, req.purpose
    )
    assert (row["status"], row["error_code"]) == ("failed", "outcome_unknown")
