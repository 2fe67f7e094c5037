"""WeCom corp application notices through the outbox: each to its own person, or the robot with phones masked.

Real PostgreSQL (a database of this module's own: a dispatcher claims every due row it finds) and a real
local HTTP peer speaking WeCom's gettoken, message/send and group robot webhook.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from activities.providers import LogNotifier, OutboxOnlyProvider, WeComAppNotifier, build_staff_notifier
from background.dispatcher import OutboxDispatcher
from config import Settings
from domain import templates
from domain.enums import Role
from domain.models import NotifyStaff
from store.branches import BranchRepository
from store.outbox import OutboxWriter
from store.staff import StaffError, StaffRepository
from tests.activities.conftest import MakeCase, MakeStaff
from tests.activities.peer import HttpPeer, PeerRequest, http_peer
from tests.support.wecom_peer import AGENT_ID, CORP_ID, ROBOT_PATH, SECRET, FakeWeCom
from wecom import WeComCorp

CONSOLE = "https://intake.example.test"
PHONE_NOTE = "经理回访记录：客户爱人电话 139-1234-5678，晚上联系"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(own_pool: asyncpg.Pool) -> asyncpg.Pool:
    """This module counts the outbox rows it claims: a database of its own (make_staff and make_case use it)."""
    return own_pool


@pytest.fixture
def fake() -> FakeWeCom:
    return FakeWeCom()


@pytest.fixture
def peer(fake: FakeWeCom) -> Iterator[HttpPeer]:
    with http_peer(fake) as p:
        yield p


def _settings(peer: HttpPeer, *, robot: bool) -> Settings:
    return Settings(
        console_base_url=CONSOLE, notify_channel="wecom_app", wecom_corp_id=CORP_ID, wecom_agent_id=AGENT_ID,
        wecom_secret=SecretStr(SECRET), wecom_api_base=peer.url,
        wecom_webhook_url=SecretStr(f"{peer.url}{ROBOT_PATH}?key=k") if robot else None,
    )  # fmt: skip


def _dispatcher(pool: asyncpg.Pool, settings: Settings) -> OutboxDispatcher:
    return OutboxDispatcher(pool, OutboxOnlyProvider(), build_staff_notifier(settings), confirm_after=timedelta(0))


async def _notify(pool: asyncpg.Pool, *notices: NotifyStaff) -> None:
    writer = OutboxWriter(templates.Company("城市人家装饰公司", "城市人家"), sms_provider="outbox",
                          staff_channel="wecom_app")
    async with pool.acquire() as conn, conn.transaction():
        await writer.enqueue(conn, notices=notices)


async def _row(pool: asyncpg.Pool, case_id: int, purpose: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outbox WHERE case_id = $1 AND purpose = $2", case_id, purpose)
    assert row is not None
    return row


def _userid() -> str:
    return f"u.{uuid.uuid4().hex[:8]}@corp"


async def _with_userid(pool: asyncpg.Pool, staff_id: int, userid: str) -> None:
    changed = await StaffRepository(pool).update(staff_id=staff_id, changes={"wecom_userid": userid})
    assert changed is not None and changed.wecom_userid == userid


async def test_each_notice_reaches_only_its_owner_as_a_card_to_the_case(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, peer: HttpPeer, fake: FakeWeCom
) -> None:
    designer, lead = await make_staff("张伟", Role.designer), await make_staff("刘敏", Role.assistant_lead)
    d_id, l_id = _userid(), _userid()
    fake.members |= {d_id, l_id}
    await _with_userid(pool, designer.id, d_id)
    await _with_userid(pool, lead.id, l_id)
    case_id = await make_case(designer_id=designer.id)
    await _notify(
        pool,
        NotifyStaff(case_id=case_id, purpose="details", recipient_id=designer.id, text=PHONE_NOTE),
        NotifyStaff(case_id=case_id, purpose="esc", recipient_id=lead.id, text=f"升级：客户 #{case_id}「回访」已超时，请督办"),
    )
    await _dispatcher(pool, _settings(peer, robot=True)).run_once()

    # one card each, to that person only; one token for both
    assert len(fake.tokens_issued) == 1 and not fake.robot
    (card,) = fake.delivered_to(d_id)
    assert card["msgtype"] == "textcard" and card["agentid"] == AGENT_ID
    assert card["textcard"]["url"] == f"{CONSOLE}/console/cases/{case_id}"
    assert card["textcard"]["btntxt"] == "打开客户"
    # the case's designer may see the client's phone: their own message keeps it
    assert "139-1234-5678" in card["textcard"]["description"]
    (esc,) = fake.delivered_to(l_id)
    assert esc["textcard"]["title"] == f"升级 · 客户 #{case_id}"
    assert len(fake.delivered) == 2 and len(fake.sends) == 2
    row = await _row(pool, case_id, "details")
    assert (row["status"], row["provider"], row["error_code"], row["last_error"]) == ("sent", "wecom_app", None, None)


async def test_someone_without_a_wecom_account_gets_the_robot_with_phones_masked(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, peer: HttpPeer, fake: FakeWeCom
) -> None:
    designer = await make_staff("王芳", Role.designer)  # no wecom_userid
    case_id = await make_case(designer_id=designer.id)
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="details", recipient_id=designer.id, text=PHONE_NOTE))
    await _dispatcher(pool, _settings(peer, robot=True)).run_once()

    assert not fake.sends  # nothing to send a personal message to
    (posted,) = fake.robot
    content = posted["text"]["content"]
    assert "139****5678" in content and "1234" not in content and designer.name in content
    row = await _row(pool, case_id, "details")
    assert (row["status"], row["error_code"]) == ("sent", "wecom_no_userid")
    assert "群机器人" in row["last_error"]



async def test_someone_without_a_wecom_account_gets_it_through_the_branch_department(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, peer: HttpPeer, fake: FakeWeCom
) -> None:
    """A branch with a WeCom department (分公司部门): a notice its recipient cannot get in person goes to that
    department as a card (phones masked, the recipient named), not to the chain's group robot; a
    department WeCom does not know falls back to the robot, the row saying why."""
    branch = await BranchRepository(pool).create(code=f"b{uuid.uuid4().hex[:6]}", name="杭州分公司",
                                                 wecom_department_id=700 + len(fake.sends))
    fake.departments.add(str(branch.wecom_department_id))
    designer = await make_staff("冯磊", Role.designer)  # no wecom_userid
    case_id = await make_case(designer_id=designer.id)
    await pool.execute("UPDATE cases SET branch_id = $2 WHERE id = $1", case_id, branch.id)
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="details", recipient_id=designer.id, text=PHONE_NOTE))
    await _dispatcher(pool, _settings(peer, robot=True)).run_once()

    assert not fake.robot
    (card,) = [b for b in fake.delivered if b.get("toparty") == str(branch.wecom_department_id)]
    text = card["textcard"]["description"]
    assert "139****5678" in text and "1234" not in text and designer.name in text
    assert card["textcard"]["url"] == f"{CONSOLE}/console/cases/{case_id}"
    row = await _row(pool, case_id, "details")
    assert (row["status"], row["error_code"]) == ("sent", "wecom_no_userid")
    assert f"部门 {branch.wecom_department_id}" in row["last_error"]

    # a department WeCom does not know: the robot after all
    fake.departments.clear()
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="details2", recipient_id=designer.id, text=PHONE_NOTE))
    await _dispatcher(pool, _settings(peer, robot=True)).run_once()
    (posted,) = fake.robot
    assert "139****5678" in posted["text"]["content"]
    row = await _row(pool, case_id, "details2")
    assert (row["status"], row["error_code"]) == ("sent", "wecom_no_userid") and "群机器人" in row["last_error"]

async def test_an_id_wecom_does_not_know_falls_back_or_fails_with_the_reason(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, peer: HttpPeer, fake: FakeWeCom
) -> None:
    designer = await make_staff("赵强", Role.designer)
    typo = _userid()  # registered here, unknown to WeCom
    await _with_userid(pool, designer.id, typo)
    case_id = await make_case(designer_id=designer.id)
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="a", recipient_id=designer.id, text=PHONE_NOTE))
    await _dispatcher(pool, _settings(peer, robot=True)).run_once()
    assert [s["touser"] for s in fake.sends] == [typo] and not fake.delivered
    assert len(fake.robot) == 1 and "139****5678" in fake.robot[0]["text"]["content"]
    row = await _row(pool, case_id, "a")
    assert (row["status"], row["error_code"]) == ("sent", "wecom_unknown_user")

    # without a robot the notice fails with that reason (shown on the case), never silently
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="b", recipient_id=designer.id, text="提醒"))
    await _dispatcher(pool, _settings(peer, robot=False)).run_once()
    row = await _row(pool, case_id, "b")
    assert (row["status"], row["error_code"]) == ("failed", "wecom_unknown_user")
    nobody = await make_staff("钱进", Role.designer)
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="c", recipient_id=nobody.id, text="提醒"))
    await _dispatcher(pool, _settings(peer, robot=False)).run_once()
    row = await _row(pool, case_id, "c")
    assert (row["status"], row["error_code"]) == ("failed", "wecom_no_userid")
    assert len(fake.robot) == 1


async def test_an_expired_token_is_fetched_again_once_and_the_notice_delivered(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, peer: HttpPeer, fake: FakeWeCom
) -> None:
    designer = await make_staff("孙丽", Role.designer)
    userid = _userid()
    fake.members.add(userid)
    await _with_userid(pool, designer.id, userid)
    case_id = await make_case(designer_id=designer.id)
    dispatcher = _dispatcher(pool, _settings(peer, robot=False))  # one notifier, one token cache
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="first", recipient_id=designer.id, text="提醒"))
    await dispatcher.run_once()
    assert len(fake.tokens_issued) == 1 and len(fake.delivered) == 1

    fake.expire_tokens()  # WeCom expired it early (or the secret was reset)
    await _notify(pool, NotifyStaff(case_id=case_id, purpose="second", recipient_id=designer.id, text="提醒"))
    await dispatcher.run_once()
    assert len(fake.tokens_issued) == 2  # one new gettoken
    assert len(fake.sends) == 3 and len(fake.delivered_to(userid)) == 2  # refused once (42001), then delivered
    assert (await _row(pool, case_id, "second"))["status"] == "sent"


async def test_rate_limits_and_outages_are_retried_and_never_sent_twice(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("周杰", Role.designer)
    userid = _userid()
    await _with_userid(pool, designer.id, userid)
    case_id = await make_case(designer_id=designer.id)
    answers = [(200, {"errcode": 45009, "errmsg": "api freq out of limit"}), (502, {})]
    fake = FakeWeCom(members={userid})

    def respond(req: PeerRequest) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
        if req.path == "/cgi-bin/message/send" and answers:
            fake.sends.append(req.json)
            return answers.pop(0)
        return fake(req)

    with http_peer(respond) as peer:
        settings = _settings(peer, robot=False)
        dispatcher = OutboxDispatcher(pool, OutboxOnlyProvider(), build_staff_notifier(settings),
                                      confirm_after=timedelta(0), backoff_initial=timedelta(milliseconds=1))
        await _notify(pool, NotifyStaff(case_id=case_id, purpose="r", recipient_id=designer.id, text="提醒"))
        await dispatcher.run_once()
        row = await _row(pool, case_id, "r")
        assert row["status"] == "pending" and "限流" in row["last_error"]  # answered: surely not sent
        await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", row["id"])
        await dispatcher.run_once()
        row = await _row(pool, case_id, "r")
        assert row["status"] == "sending"  # a 502 may have been delivered: asked about, never resent
        await pool.execute("UPDATE outbox SET next_attempt_at = now() WHERE id = $1", row["id"])
        await dispatcher.run_once()
        row = await _row(pool, case_id, "r")
        assert (row["status"], row["error_code"]) == ("failed", "outcome_unknown")
    assert len(fake.sends) == 2 and not fake.delivered


def test_the_app_channel_without_its_settings_fails_at_startup() -> None:
    with pytest.raises(ValueError) as err:
        build_staff_notifier(Settings(notify_channel="wecom_app"))
    for name in ("INTAKE_WECOM_CORP_ID", "INTAKE_WECOM_AGENT_ID", "INTAKE_WECOM_SECRET"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="INTAKE_WECOM_SECRET"):
        build_staff_notifier(Settings(notify_channel="wecom_app", wecom_corp_id="ww", wecom_agent_id=1))
    notifier = build_staff_notifier(Settings(notify_channel="wecom_app", wecom_corp_id="ww", wecom_agent_id=1,
                                             wecom_secret=SecretStr("s")))
    assert isinstance(notifier, WeComAppNotifier) and notifier.name == "wecom_app" and not notifier.confirmable
    assert isinstance(build_staff_notifier(Settings()), LogNotifier)


async def test_a_bad_or_taken_wecom_account_is_refused_and_changes_nothing(
    pool: asyncpg.Pool, make_staff: MakeStaff
) -> None:
    a, b = await make_staff("甲", Role.designer), await make_staff("乙", Role.designer)
    repo = StaffRepository(pool)
    userid = _userid()
    await _with_userid(pool, a.id, userid)
    for bad in ("", "有中文", "a b", "x" * 65, "semi;colon"):
        with pytest.raises(StaffError) as err:
            await repo.update(staff_id=b.id, changes={"wecom_userid": bad})
        assert err.value.code == "invalid_wecom_userid"
    with pytest.raises(StaffError) as err:
        await repo.update(staff_id=b.id, changes={"wecom_userid": userid})
    assert err.value.code == "wecom_userid_taken"
    assert (await repo.get(staff_id=b.id)).wecom_userid is None  # type: ignore[union-attr]
    assert (await repo.by_wecom_userid(userid=userid)).id == a.id  # type: ignore[union-attr]


async def test_the_token_is_cached_until_shortly_before_it_expires(peer: HttpPeer, fake: FakeWeCom) -> None:
    now = [1000.0]
    corp = WeComCorp(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, api_base=peer.url, clock=lambda: now[0])
    try:
        first = await corp.access_token()
        now[0] += 7200 - 301  # still fresh: cached
        assert await corp.access_token() == first and len(fake.tokens_issued) == 1
        now[0] += 2  # within five minutes of expiry: refreshed early
        assert await corp.access_token() != first and len(fake.tokens_issued) == 2
    finally:
        await corp.aclose()


async def test_the_morning_summary_is_a_card_to_the_board_for_each_recipient(
    pool: asyncpg.Pool, make_staff: MakeStaff, peer: HttpPeer, fake: FakeWeCom
) -> None:
    from datetime import UTC, datetime

    from domain.policy import fast_policy

    manager = await make_staff("陈建国", Role.manager)
    m_id = _userid()
    fake.members.add(m_id)
    await _with_userid(pool, manager.id, m_id)
    purpose = f"morning_summary:{uuid.uuid4().hex[:6]}"
    writer = OutboxWriter(templates.Company("城市人家装饰公司", "城市人家"), sms_provider="outbox",
                          staff_channel="wecom_app")
    recipients = await pool.fetch("SELECT * FROM staff WHERE id = $1", manager.id)
    async with pool.acquire() as conn, conn.transaction():
        await writer.enqueue_staff_digest(conn, purpose=purpose, text="【晨报】6月3日（周二）\n昨日新客户 2 个：市场部2",
                                          recipients=recipients, policy=fast_policy(), now=datetime.now(UTC))
    await _dispatcher(pool, _settings(peer, robot=False)).run_once()

    (card,) = fake.delivered_to(m_id)
    assert card["textcard"]["title"] == "【晨报】6月3日（周二）"
    assert card["textcard"]["url"] == f"{CONSOLE}/console/board"
    assert card["textcard"]["btntxt"] == "打开看板"
    row = await pool.fetchrow("SELECT status FROM outbox WHERE purpose = $1 AND recipient_id = $2", purpose, manager.id)
    assert row is not None and row["status"] == "sent"
