"""Each client's SMS in its own branch's names, address, SMS sign and template codes (issue 22).

Real PostgreSQL (a database of this module's own: the dispatcher claims every due row) and the Aliyun
SDK talking real HTTP to the local peer: what a client's phone would get is what the peer saw.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest_asyncio

from activities.providers import AliyunSmsProvider, LogNotifier
from background.dispatcher import OutboxDispatcher
from domain import templates
from domain.enums import Gender, MeetingKind, Role
from domain.models import SendSms
from store.branches import Branch, BranchRepository
from store.outbox import OutboxWriter
from store.staff import Staff
from tests.activities.conftest import MakeCase, MakeStaff
from tests.activities.peer import FakeAliyun, PeerRequest, http_peer

DEPLOYMENT = templates.Company("城市人家装饰公司", "城市人家")  # INTAKE_COMPANY_*: no address
DEPLOYMENT_SIGN = "城市人家"
DEPLOYMENT_CODES: dict[str, str | None] = {
    "T1": "SMS_1", "T1_NO_ASSISTANT": "SMS_1N", "T3": "SMS_3", "T4": "SMS_4", "T4_OFFICE": "SMS_4O",
}  # fmt: skip
VISIT = datetime(2026, 12, 20, 6, 30, tzinfo=UTC)  # 14:30 in Shanghai


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(own_pool: asyncpg.Pool) -> asyncpg.Pool:
    """This module's own database instead of the session's (make_staff and make_case use it too)."""
    return own_pool


async def _enqueue(pool: asyncpg.Pool, sms: list[SendSms]) -> None:
    """Record messages as a case's decision does: in a transaction of the caller's."""
    async with pool.acquire() as conn, conn.transaction():
        await OutboxWriter(DEPLOYMENT, sms_provider="aliyun", staff_channel="log").enqueue(conn, sms=sms)


def _aliyun(endpoint: str) -> AliyunSmsProvider:
    return AliyunSmsProvider(access_key_id="k", access_key_secret="s", sign_name=DEPLOYMENT_SIGN,
                             templates=DEPLOYMENT_CODES, endpoint=endpoint, protocol="http")


async def _branches(pool: asyncpg.Pool) -> tuple[Branch, Branch]:
    """杭州 with an SMS account of its own (sign, two template codes); 苏州 with its names and address only."""
    repo = BranchRepository(pool)
    tag = uuid.uuid4().hex[:6]
    hz = await repo.create(code=f"hz-{tag}", name="杭州分公司", city="杭州", company_name="杭州城市人家装饰有限公司",
                           company_short_name="杭州城市人家", company_address="杭州市西湖区文三路100号",
                           sms_sign="杭州城市人家", sms_template_codes={"T1": "SMS_HZ1", "T4_OFFICE": "SMS_HZ4O"})
    sz = await repo.create(code=f"sz-{tag}", name="苏州门店", city="苏州", company_name="苏州城市人家装饰有限公司",
                           company_short_name="苏州城市人家", company_address="苏州市工业园区星湖街8号")
    return hz, sz


async def _team(make_staff: MakeStaff) -> tuple[Staff, Staff]:
    """The designer and the assistant the texts name."""
    return await make_staff("张伟", Role.designer), await make_staff("李娜", Role.assistant)


async def _in_branch(pool: asyncpg.Pool, case_id: int, branch: Branch) -> None:
    # The case's branch is decided at creation (branch-core); here it is set as the row would hold it.
    await pool.execute("UPDATE cases SET branch_id = $2 WHERE id = $1", case_id, branch.id)


def _t1_t4(case_id: int, designer_id: int, assistant_id: int) -> list[SendSms]:
    return [
        SendSms(case_id=case_id, purpose="T1", template="T1", designer_id=designer_id, assistant_id=assistant_id),
        SendSms(case_id=case_id, purpose="T4:meeting", template="T4", designer_id=designer_id, at=VISIT,
                meeting_kind=MeetingKind.office_visit),
    ]


async def _dispatch(pool: asyncpg.Pool, fake: FakeAliyun) -> dict[str, PeerRequest]:
    """Hand every due row to Aliyun (the peer); what it got, by outbox key (OutId)."""
    with http_peer(fake) as peer:
        await OutboxDispatcher(pool, _aliyun(peer.endpoint), LogNotifier(), confirm_after=timedelta(minutes=2)
                               ).run_once()
    return {r.params["OutId"]: r for r in peer.actions("SendSms")}


async def test_each_client_gets_its_branchs_names_address_sign_and_template_codes(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    hz, sz = await _branches(pool)
    designer, assistant = await _team(make_staff)
    in_hz = await make_case(client_name="王建国", gender="male")
    in_sz = await make_case(client_name="李梅", gender="female")
    in_main = await make_case(client_name="赵磊", gender="male")
    await _in_branch(pool, in_hz, hz)
    await _in_branch(pool, in_sz, sz)
    await _enqueue(pool, [m for c in (in_hz, in_sz, in_main) for m in _t1_t4(c, designer.id, assistant.id)])
    got = await _dispatch(pool, FakeAliyun())

    def sent(case_id: int, purpose: str) -> tuple[str, str, dict[str, str]]:
        req = got[f"{case_id}:{purpose}"]
        return req.params["SignName"], req.params["TemplateCode"], json.loads(req.params["TemplateParam"])

    # 杭州: its names in T1, its address in the visit's reminder, its own sign and approved codes
    sign, code, params = sent(in_hz, "T1")
    assert (sign, code) == ("杭州城市人家", "SMS_HZ1")
    assert (params["company"], params["short_name"]) == ("杭州城市人家装饰有限公司", "杭州城市人家")
    sign, code, params = sent(in_hz, "T4:meeting")
    assert (sign, code, params["address"]) == ("杭州城市人家", "SMS_HZ4O", "杭州市西湖区文三路100号")
    # 苏州: its names and address, the deployment's SMS account (no sign or codes of its own)
    sign, code, params = sent(in_sz, "T1")
    assert (sign, code, params["company"], params["short_name"]) == (
        DEPLOYMENT_SIGN, "SMS_1", "苏州城市人家装饰有限公司", "苏州城市人家")
    sign, code, params = sent(in_sz, "T4:meeting")
    assert (sign, code, params["address"]) == (DEPLOYMENT_SIGN, "SMS_4O", "苏州市工业园区星湖街8号")
    # 总店 (branch 1, nothing set): the deployment's names; no address configured, so the plain reminder
    sign, code, params = sent(in_main, "T1")
    assert (sign, code, params["company"]) == (DEPLOYMENT_SIGN, "SMS_1", "城市人家装饰公司")
    sign, code, params = sent(in_main, "T4:meeting")
    assert (sign, code) == (DEPLOYMENT_SIGN, "SMS_4") and "address" not in params

    # The texts recorded are the texts the clients read, each in its branch's names
    texts = {(r["case_id"], r["purpose"]): r for r in await pool.fetch(
        "SELECT case_id, purpose, template, text, status FROM outbox WHERE case_id = ANY($1::bigint[])",
        [in_hz, in_sz, in_main])}
    assert {r["status"] for r in texts.values()} == {"sent"}
    hz_company = templates.Company("杭州城市人家装饰有限公司", "杭州城市人家", "杭州市西湖区文三路100号")
    assert texts[(in_hz, "T1")]["text"] == templates.render_t1(
        client_name="王建国", gender=Gender.male, company=hz_company, designer="张伟", assistant="李娜")
    assert texts[(in_hz, "T4:meeting")]["template"] == "T4_OFFICE"
    assert "杭州市西湖区文三路100号" in texts[(in_hz, "T4:meeting")]["text"]
    assert "苏州市工业园区星湖街8号" in texts[(in_sz, "T4:meeting")]["text"]
    assert texts[(in_main, "T4:meeting")]["template"] == "T4"
    assert "杭州" not in texts[(in_sz, "T1")]["text"] and "苏州" not in texts[(in_hz, "T1")]["text"]


async def test_a_transfer_changes_the_texts_decided_after_it_and_a_branchs_new_names_apply_at_once(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    hz, sz = await _branches(pool)
    designer, assistant = await _team(make_staff)
    manager = await make_staff("刘强", Role.manager)
    case_id = await make_case(client_name="王建国")
    await _in_branch(pool, case_id, hz)
    await _enqueue(pool, _t1_t4(case_id, designer.id, assistant.id)[:1])
    # the client moved to 苏州: the case is transferred; the text already recorded stays as it was
    await _in_branch(pool, case_id, sz)
    await _enqueue(pool, [SendSms(case_id=case_id, purpose="T3", template="T3", designer_id=designer.id,
                                  assistant_id=assistant.id, manager_id=manager.id)])
    # 苏州 gets an SMS account of its own: the texts decided from now on go out with it
    await BranchRepository(pool).update(sz.id, {"sms_sign": "苏州城市人家", "company_short_name": "苏州人家"})
    await _enqueue(pool, _t1_t4(case_id, designer.id, assistant.id)[1:])
    got = await _dispatch(pool, FakeAliyun())
    t1, t3, t4 = (got[f"{case_id}:{p}"].params for p in ("T1", "T3", "T4:meeting"))
    assert (t1["SignName"], json.loads(t1["TemplateParam"])["company"]) == ("杭州城市人家", "杭州城市人家装饰有限公司")
    assert (t3["SignName"], json.loads(t3["TemplateParam"])["company"]) == (DEPLOYMENT_SIGN, "苏州城市人家装饰有限公司")
    assert t4["SignName"] == "苏州城市人家" and json.loads(t4["TemplateParam"])["short_name"] == "苏州人家"
