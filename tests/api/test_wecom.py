"""WeCom through the whole stack: the admin registers each person's WeCom account; a new case's notice goes
to its owner alone as a WeCom card whose link opens the case in the console.

Real app, worker, outbox dispatcher, Temporal and PostgreSQL; WeCom is a local HTTP peer
(tests.support.wecom_peer).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client

from api.app import create_app
from cli import main
from config import Settings
from domain.enums import Role
from domain.policy import fast_policy
from store.sessions import SessionRepository
from store.staff import StaffRepository
from tests.activities.peer import HttpPeer, http_peer
from tests.api.conftest import Api, Person, make_http, unique_phone
from tests.api.test_errors import assert_error
from tests.support.wait import until
from tests.support.wecom_peer import AGENT_ID, CORP_ID, SECRET, FakeWeCom
from worker import build_dispatcher, build_worker

CONSOLE = "http://console.test"


def _userid() -> str:
    return f"w{uuid.uuid4().hex[:10]}"


# --- the admin registers each person's WeCom account ----------------------------------------------------


async def test_the_admin_sets_checks_and_clears_a_wecom_account(api: Api, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    admin = api.h("admin")
    userid = _userid()
    r = await api.http.post("/staff", json={"name": "企微顾问", "phone": unique_phone(), "role": "consultant",
                                            "wecom_userid": f" {userid} "}, headers=admin)
    assert r.status_code == 201, r.text
    first = r.json()["staff"]
    assert first["wecom_userid"] == userid
    other = (await api.http.post("/staff", json={"name": "企微顾问二", "phone": unique_phone(), "role": "consultant"},
                                 headers=admin)).json()["staff"]
    assert other["wecom_userid"] is None

    # bad input: 422 with the stable type, the Chinese rule, nothing changed
    for bad in ("", "有中文", "a b", "x" * 65, "semi;colon"):
        r = await api.http.patch(f"/staff/{other['id']}", json={"wecom_userid": bad}, headers=admin)
        body = assert_error(r, 422, "invalid_payload")
        assert body["errors"][0]["type"] == "invalid_wecom_userid" and "企业微信账号" in body["errors"][0]["msg"]
    # someone else's account: 409
    assert_error(await api.http.patch(f"/staff/{other['id']}", json={"wecom_userid": userid}, headers=admin),
                 409, "wecom_userid_taken")
    assert (await api.http.get(f"/staff/{other['id']}", headers=admin)).json()["wecom_userid"] is None

    # set, then cleared with null (the account moves to the other person)
    r = await api.http.patch(f"/staff/{first['id']}", json={"wecom_userid": None}, headers=admin)
    assert r.status_code == 200 and r.json()["wecom_userid"] is None
    r = await api.http.patch(f"/staff/{other['id']}", json={"wecom_userid": userid}, headers=admin)
    assert r.status_code == 200 and r.json()["wecom_userid"] == userid
    # only the admin manages staff
    assert_error(await api.http.patch(f"/staff/{other['id']}", json={"wecom_userid": "x"}, headers=api.h("manager")),
                 403, "wrong_role")

    # the command line: the same rule, and the flag to set and clear it
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    from config import get_settings

    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(main, ["staff", "edit", str(first["id"]), "--wecom-userid", "有中文"]) != 0
        assert "--wecom-userid" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["staff", "edit", str(first["id"]), "--wecom-userid", "cli.user"]) == 0
        assert (await StaffRepository(api.pool).get(staff_id=first["id"])).wecom_userid == "cli.user"  # type: ignore[union-attr]
        assert await asyncio.to_thread(main, ["staff", "edit", str(first["id"]), "--clear-wecom-userid"]) == 0
    finally:
        get_settings.cache_clear()
    assert (await StaffRepository(api.pool).get(staff_id=first["id"])).wecom_userid is None  # type: ignore[union-attr]


# --- a notice to its owner, as a WeCom card to the case ------------------------------------------------


@dataclass
class WeComStack:
    """An app, worker and dispatcher whose staff notices go out as WeCom application messages."""

    http: httpx.AsyncClient
    fake: FakeWeCom
    peer: HttpPeer
    settings: Settings


@pytest.fixture(scope="module")
def wecom_peer() -> Iterator[tuple[FakeWeCom, HttpPeer]]:
    fake = FakeWeCom()
    with http_peer(fake) as peer:
        yield fake, peer


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(client: Client, pool: asyncpg.Pool, pg_dsn: str,
                wecom_peer: tuple[FakeWeCom, HttpPeer]) -> AsyncIterator[WeComStack]:
    fake, peer = wecom_peer
    tq = f"wecom-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        task_queue=tq, database_url=pg_dsn, request_timeout_seconds=5.0, console_base_url=CONSOLE,
        notify_channel="wecom_app", wecom_corp_id=CORP_ID, wecom_agent_id=AGENT_ID, wecom_secret=SecretStr(SECRET),
        wecom_api_base=peer.url, wecom_oauth_base=peer.url, auth_failures_per_minute=100_000,
        outbox_lease_margin_seconds=0.5, outbox_max_error_pause_seconds=2.0,
    )  # fmt: skip
    app = create_app(settings, temporal_client=client, pool=pool, policy=fast_policy())
    worker = build_worker(client, pool, settings, task_queue=tq)
    dispatcher = build_dispatcher(pool, settings)
    stop = asyncio.Event()
    sending = asyncio.create_task(dispatcher.run(stop))
    try:
        async with worker, make_http(app) as http:
            yield WeComStack(http=http, fake=fake, peer=peer, settings=settings)
    finally:
        stop.set()
        await sending


async def test_a_new_case_notice_reaches_exactly_its_owner_and_opens_the_case(
    stack: WeComStack, api: Api, people: dict[str, Person], pool: asyncpg.Pool
) -> None:
    repo = StaffRepository(pool)
    manager = await repo.first_active(role=Role.manager)  # new cases go to this manager
    assert manager is not None
    userid = _userid()
    stack.fake.members.add(userid)
    await repo.update(staff_id=manager.id, changes={"wecom_userid": userid})
    try:
        name = f"企微{uuid.uuid4().hex[:4]}"
        body = api.intake_body("remote", client={"name": name})
        r = await stack.http.post("/intakes", json=body, headers=people["consultant"].headers)
        assert r.status_code == 201, r.text
        case_id = r.json()["id"]
        url = f"{CONSOLE}/console/cases/{case_id}"

        async def notices_out() -> list[asyncpg.Record] | None:
            rows = await pool.fetch("SELECT * FROM outbox WHERE case_id = $1 AND channel = 'staff'", case_id)
            return rows if rows and all(r["status"] != "pending" and r["status"] != "sending" for r in rows) else None

        rows = await until(notices_out, 30, "the case's staff notices delivered")
        assert all(r["provider"] == "wecom_app" and r["status"] == "sent" for r in rows), [dict(r) for r in rows]
        assert {r["recipient_id"] for r in rows} == {manager.id}
        cards = [b for b in stack.fake.sends if b["textcard"]["url"] == url]
        # one message/send per notice, each to the owner, none to anybody else, nothing to the group
        assert len(cards) == len(rows) >= 1
        assert {c["touser"] for c in cards} == {userid} and not stack.fake.robot
        assert any("回访" in c["textcard"]["description"] for c in cards)
    finally:
        await repo.update(staff_id=manager.id, changes={"wecom_userid": None})

    # the card's link, followed with the owner's console session: the client's page
    link = await SessionRepository(pool).issue_link(staff_id=manager.id, ttl=timedelta(minutes=5))
    got = await SessionRepository(pool).redeem_link(code=link, ttl=timedelta(hours=1), user_agent="test")
    assert got is not None
    path = urlsplit(url).path
    page = await stack.http.get(path, headers={"Cookie": f"intake_session={got[0]}"})
    assert page.status_code == 200 and name in page.text
    # without a session the link leads to the sign-in page, which brings the person back to the case
    r = await stack.http.get(path)
    assert r.status_code == 303 and r.headers["location"] == f"/console/login?next=%2Fconsole%2Fcases%2F{case_id}"
    login = await stack.http.get(r.headers["location"])
    assert "企业微信登录" in login.text and f"/console/login/wecom?next=/console/cases/{case_id}\"" in login.text
