"""The morning summary (晨报, SPEC §15) end to end: real PostgreSQL, the real app, the real worker loop.

Each test has a database of its own (the figures count every case in it, and a day is claimed once),
and the fast policy: its calendar is open around the clock, so today's summary is due at once. Cases are
seeded as the projection holds them (a late step, a stalled case, a visit today) relative to the real
present, never a mocked clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from background.morning import MorningSummaryScheduler
from config import Settings
from domain import morning
from domain.calendar import local_date
from domain.enums import Level, Role, StaffStatus
from domain.policy import CalendarPolicy, Policy, fast_policy
from domain.policy_admin import policy_yaml
from store.branches import BranchRepository
from store.db import create_pool
from store.outbox import build_writer
from store.policy_versions import PolicyVersions
from store.sessions import SessionRepository
from store.staff import StaffRepository
from tests.support.data import unique_phone
from tests.support.infra import database_beside
from tests.support.wait import until
from worker import build_dispatcher, run_worker

SH = ZoneInfo("Asia/Shanghai")
FAST = fast_policy()
PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Db:
    dsn: str
    pool: asyncpg.Pool
    staff: dict[str, int]
    phones: list[str]  # every phone in the database: none may appear in a summary

    def settings(self, **over: object) -> Settings:
        return Settings.model_validate({"database_url": self.dsn, "notify_channel": "log", **over})


@pytest_asyncio.fixture
async def db(pg_dsn: str) -> AsyncIterator[Db]:
    """A database of this test alone, with a manager, a second manager on leave, a director, a designer,
    an assistant and a consultant."""
    async with database_beside(pg_dsn) as dsn:
        pool = await create_pool(dsn, min_size=1, max_size=8)
        try:
            repo = StaffRepository(pool)
            staff: dict[str, int] = {}
            phones: list[str] = []
            for key, name, role, level, status in (
                ("manager", "陈建国", Role.manager, None, StaffStatus.active),
                ("away", "孙经理", Role.manager, None, StaffStatus.on_leave),
                ("director", "王志强", Role.director, None, StaffStatus.active),
                ("designer", "周一鸣", Role.designer, Level.chief, StaffStatus.active),
                ("assistant", "林小雨", Role.assistant, None, StaffStatus.active),
                ("consultant", "孙丽", Role.consultant, None, StaffStatus.active),
            ):
                phone = unique_phone()
                phones.append(phone)
                staff[key] = (await repo.add(name=name, phone=phone, role=role, level=level, status=status)).id
            yield Db(dsn=dsn, pool=pool, staff=staff, phones=phones)
        finally:
            await pool.close()


@dataclass
class Seeded:
    late_case: int
    stalled_case: int
    visit_case: int
    visit_at: datetime


async def _case(db: Db, *, source: str, created_at: datetime, name: str = "王建国", gender: str = "male",
                status: str = "open", **columns: object) -> int:
    phone = unique_phone("15")
    db.phones.append(phone)
    cols = {"workflow_id": f"intake-test-{uuid.uuid4().hex[:10]}", "source": source, "scenario": "remote",
            "stage": "callback", "status": status, "client_name": name, "client_phone": phone,
            "client_gender": gender, "created_by": db.staff["consultant"], "manager_id": db.staff["manager"],
            "created_at": created_at, **columns}
    names = ", ".join(cols)
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    case_id: int = await db.pool.fetchval(f"INSERT INTO cases ({names}) VALUES ({marks}) RETURNING id", *cols.values())
    return case_id


async def _step(db: Db, case_id: int, step: str, *, owner: str, opened: datetime, due: datetime,
                done: datetime | None = None) -> None:
    await db.pool.execute(
        "INSERT INTO case_steps (case_id, step_key, step, owner_role, owner_id, status, opened_at, due_at,"
        " completed_at, completed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        case_id, f"{step}#1", step, "manager" if owner == "manager" else "designer", db.staff[owner],
        "done" if done else "open", opened, due, done, db.staff[owner] if done else None,
    )


async def seed(db: Db) -> Seeded:
    """Yesterday two leads (one with a callback done 40 minutes late), one lead still `starting` and one
    closed as a duplicate (neither counts); an older case stalled on its designer's contact; a case
    whose measure is today."""
    now = datetime.now(UTC)
    w = morning.window(FAST.calendar, local_date(FAST.calendar, now))
    noon = w.start + timedelta(hours=12)
    await _case(db, source="marketing", created_at=noon)
    late_case = await _case(db, source="online", created_at=noon + timedelta(hours=1))
    await _step(db, late_case, "callback", owner="manager", opened=noon, due=noon + timedelta(hours=2),
                done=noon + timedelta(hours=2, minutes=40))
    await _case(db, source="online", created_at=noon, status="starting")
    await _case(db, source="walk_in", created_at=noon, status="closed", outcome="duplicate")
    long_ago = now - timedelta(days=3)
    stalled_case = await _case(db, source="site_office", created_at=long_ago, stage="contact",
                               designer_id=db.staff["designer"])
    await _step(db, stalled_case, "contact", owner="designer", opened=long_ago,
                due=now - timedelta(days=1, hours=2))
    # a visit today whatever the hour of the test: half an hour away, or half an hour ago near midnight
    visit_at = now + timedelta(minutes=30)
    if local_date(FAST.calendar, visit_at) != w.day:
        visit_at = now - timedelta(minutes=30)
    visit_case = await _case(db, source="marketing", created_at=long_ago, name="李丽", gender="female",
                             stage="first_meeting", meeting_at=visit_at, meeting_kind="measure", measure_at=visit_at,
                             designer_id=db.staff["designer"], notes=f"客户电话 {db.phones[-1]}")
    await _step(db, visit_case, "first_meeting", owner="designer", opened=long_ago, due=visit_at + timedelta(hours=2))
    return Seeded(late_case=late_case, stalled_case=stalled_case, visit_case=visit_case, visit_at=visit_at)


def scheduler(pool: asyncpg.Pool, policy: Policy = FAST) -> MorningSummaryScheduler:
    return MorningSummaryScheduler(pool, build_writer(Settings(notify_channel="log")), policy=policy, interval=0.1)


async def summary_rows(db: Db) -> list[asyncpg.Record]:
    return list(await db.pool.fetch(
        "SELECT id, case_id, purpose, channel, recipient_id, text, status, provider_id FROM outbox"
        " WHERE purpose LIKE 'morning_summary:%' ORDER BY recipient_id"))


def assert_no_phone(db: Db, text: str) -> None:
    digits = re.sub(r"\D", "", text)
    assert not re.search(r"1[3-9]\d{9}", re.sub(r"[\s\-+()]", "", text)), text
    for phone in db.phones:
        assert phone not in digits and phone[-4:] not in text, (phone, text)


def today() -> date:
    return local_date(FAST.calendar, datetime.now(UTC))


# --- the figures and the notices -------------------------------------------------------------------------


async def test_the_summary_says_what_happened_and_reaches_each_manager_and_the_director_once(db: Db) -> None:
    seeded = await seed(db)
    day = await scheduler(db.pool).run_once()
    assert day == today()
    stored = await db.pool.fetchrow("SELECT figures, text, recipients FROM morning_summaries WHERE day = $1", day)
    f = morning.MorningFigures.model_validate(stored["figures"])
    assert (f.new_leads, f.leads_by_source) == (2, {"marketing": 1, "online": 1})
    assert f.late_count == 1 and [(s.case_id, s.step_label, s.owner, s.late_seconds) for s in f.late] == [
        (seeded.late_case, "经理回访", "陈建国", 40 * 60)]
    assert (f.stalled_cases, f.stalled_steps) == (1, 1)
    assert [(s.case_id, s.step_label, s.owner) for s in f.stalled] == [(seeded.stalled_case, "设计师联系客户", "周一鸣")]
    assert [(w.name, w.open_steps, w.overdue) for w in f.open_work] == [("周一鸣", 2, 1)]
    assert [(v.case_id, v.kind.value, v.client, v.designer) for v in f.visits] == [
        (seeded.visit_case, "measure", "李女士", "周一鸣")]  # the first meeting is the measure: once
    text = stored["text"]
    hhmm = seeded.visit_at.astimezone(SH).strftime("%H:%M")
    assert f"#{seeded.late_case}经理回访（陈建国，晚40分钟）" in text
    assert f"#{seeded.stalled_case}设计师联系客户（周一鸣，超时1天2小时）" in text
    assert f"{hhmm} 量房 #{seeded.visit_case}李女士（设计师周一鸣）" in text
    assert_no_phone(db, text)

    rows = await summary_rows(db)
    # each active manager and the director; not the manager on leave, nobody else
    assert [r["recipient_id"] for r in rows] == sorted([db.staff["manager"], db.staff["director"]])
    assert stored["recipients"] == [r["recipient_id"] for r in rows]
    assert {(r["case_id"], r["purpose"], r["channel"], r["text"]) for r in rows} == {
        (None, f"morning_summary:{day.isoformat()}", "staff", text)}
    # the dispatcher delivers them through the configured staff channel (the log), keyed per person
    await build_dispatcher(db.pool, db.settings()).run_once()
    rows = await summary_rows(db)
    assert [(r["status"], r["provider_id"]) for r in rows] == [
        ("sent", f"log-staff{r['recipient_id']}:morning_summary:{day.isoformat()}") for r in rows]


async def test_two_schedulers_at_once_send_one_notice_per_person(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    await seed(db)
    caplog.set_level(logging.DEBUG, logger="background.morning")
    pools = [await create_pool(db.dsn, min_size=1, max_size=4) for _ in range(2)]
    try:
        a, b = scheduler(pools[0]), scheduler(pools[1])
        sent: list[date | None] = []
        for _ in range(5):  # side by side, again and again: both look, both compute, one claims
            sent += await asyncio.gather(a.run_once(), b.run_once())
        assert [d for d in sent if d] == [today()]
        # and two loops running side by side, as two workers do
        looked = sum("sent already" in r.getMessage() for r in caplog.records)
        stop = asyncio.Event()
        loops = [asyncio.create_task(s.run(stop)) for s in (a, b)]
        try:
            await until(lambda: sum("sent already" in r.getMessage() for r in caplog.records) >= looked + 6, 20,
                        "the loops looking again and again")
        finally:
            stop.set()
            await asyncio.gather(*loops)
    finally:
        for p in pools:
            await p.close()
    rows = await summary_rows(db)
    assert [r["recipient_id"] for r in rows] == sorted([db.staff["manager"], db.staff["director"]])
    assert await db.pool.fetchval("SELECT count(*) FROM morning_summaries") == 1


async def test_nothing_is_sent_on_a_day_off(db: Db) -> None:
    await seed(db)
    # The company's policy in force (a saved version) makes today a holiday; the file's is open every day.
    holiday = FAST.model_copy(update={"name": "fast-holiday", "calendar": CalendarPolicy(
        hours={d: [(time(0, 0), time(23, 59))] for d in range(7)}, holidays=[today()])})
    await PolicyVersions(db.pool).save(policy=holiday, yaml=policy_yaml(holiday), based_on=None, changes=[],
                                       note="放假", created_by=None)
    assert await scheduler(db.pool).run_once() is None
    assert await summary_rows(db) == []
    assert await db.pool.fetchval("SELECT count(*) FROM morning_summaries") == 0
    # a working day again: sent
    open_again = FAST.model_copy(update={"name": "fast-open"})
    await PolicyVersions(db.pool).save(policy=open_again, yaml=policy_yaml(open_again), based_on=1, changes=[],
                                       note="上班", created_by=None)
    assert await scheduler(db.pool).run_once() == today()


async def test_a_worker_restarted_later_the_same_day_does_not_send_it_again(
    db: Db, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The real worker (run_worker, as `intake worker` runs it), stopped and started again."""
    await seed(db)
    caplog.set_level(logging.DEBUG, logger="background.morning")
    settings = db.settings(task_queue=f"morning-{uuid.uuid4().hex[:8]}", policy_file=PROJECT / "policies/fast.yaml",
                           payload_encryption="off", morning_summary_interval_seconds=0.2,
                           outbox_poll_interval_seconds=0.1, outbox_lease_margin_seconds=0.5)

    async def delivered() -> list[asyncpg.Record] | None:
        rows = await summary_rows(db)
        return rows if len(rows) == 2 and all(r["status"] == "sent" for r in rows) else None

    for run in ("first start", "restart"):
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=stop, client=client))
        try:
            first = await until(delivered, 30, f"the summary delivered after the {run}")
            if run == "restart":
                # the restarted worker looked and found today's summary sent
                await until(lambda: any("sent already" in r.getMessage() for r in caplog.records), 30,
                            "the restarted worker's look")
        finally:
            stop.set()
            await worker
        if run == "first start":
            sent_first = [r["id"] for r in first]
            caplog.clear()
    assert [r["id"] for r in await summary_rows(db)] == sent_first


def test_the_setting_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTAKE_MORNING_SUMMARY", raising=False)
    assert Settings().morning_summary is True and Settings().morning_summary_interval_seconds == 60.0
    monkeypatch.setenv("INTAKE_MORNING_SUMMARY", "false")
    assert Settings().morning_summary is False


# --- the API and the console board -------------------------------------------------------------------------


async def test_the_api_and_the_board_show_it(db: Db, client: Client) -> None:
    seeded = await seed(db)
    app = create_app(db.settings(request_timeout_seconds=5.0), temporal_client=client, pool=db.pool,
                     policy=FAST)
    repo = StaffRepository(db.pool)
    tokens = {k: await repo.issue_token(staff_id=db.staff[k], label="morning") for k in ("manager", "designer")}
    sessions = SessionRepository(db.pool)

    async def cookie(who: str) -> dict[str, str]:
        code = await sessions.issue_link(staff_id=db.staff[who], ttl=timedelta(minutes=5))
        got = await sessions.redeem_link(code=code, ttl=timedelta(hours=1), user_agent="morning")
        assert got is not None
        return {"intake_session": got[0]}

    def h(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}"}

    hhmm = seeded.visit_at.astimezone(SH).strftime("%H:%M")
    visit_line = f"{hhmm} 量房 #{seeded.visit_case}李女士（设计师周一鸣）"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        # before it is sent: the figures as they stand now
        r = await http.get("/reports/morning-summary", headers=h("manager"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["date"], body["sent"], body["working_day"]) == (today().isoformat(), False, True)
        assert body["figures"]["new_leads"] == 2 and any(visit_line in line for line in body["lines"])
        assert_no_phone(db, body["text"])
        board = await http.get("/console/board", cookies=await cookie("director"))
        assert board.status_code == 200 and "今日晨报" in board.text and "尚未发出" in board.text
        assert visit_line in board.text and f"#{seeded.stalled_case}设计师联系客户" in board.text

        await scheduler(db.pool).run_once()
        r = await http.get("/reports/morning-summary", params={"date": today().isoformat()}, headers=h("manager"))
        body = r.json()
        assert body["sent"] is True and body["recipients"] == sorted([db.staff["manager"], db.staff["director"]])
        sent_text = await db.pool.fetchval("SELECT text FROM outbox WHERE purpose LIKE 'morning_summary:%' LIMIT 1")
        assert body["text"] == sent_text and body["lines"] == sent_text.split("\n")
        board = await http.get("/console/board", cookies=await cookie("manager"))
        assert "已于" in board.text and visit_line in board.text
        assert_no_phone(db, board.text.split("今日晨报", 1)[1].split("</details>", 1)[0])

        # an earlier day never sent: computed now, named for what it covers
        yesterday = today() - timedelta(days=1)
        r = await http.get("/reports/morning-summary", params={"date": yesterday.isoformat()}, headers=h("manager"))
        assert r.status_code == 200 and r.json()["sent"] is False and r.json()["since"] < yesterday.isoformat()

        # refusals change nothing and say why
        for params, code in (({"date": (today() + timedelta(days=1)).isoformat()}, "invalid_date"),
                             ({"date": "2020-01-01"}, "invalid_date"), ({"date": "明天"}, "invalid_payload")):
            r = await http.get("/reports/morning-summary", params=params, headers=h("manager"))
            assert (r.status_code, r.json()["code"]) == (422, code), r.text
        r = await http.get("/reports/morning-summary", headers=h("designer"))
        assert (r.status_code, r.json()["code"]) == (403, "wrong_role")
        assert (await http.get("/console/board", cookies=await cookie("designer"))).status_code == 403
    assert await db.pool.fetchval("SELECT count(*) FROM morning_summaries") == 1


# --- per branch (issue 22) ---------------------------------------------------------------------------------


async def test_each_branch_gets_its_own_summary_by_its_calendar_and_head_office_the_chains(
    db: Db, client: Client
) -> None:
    await seed(db)  # every seeded case is in branch 1 (总店)
    hz = await BranchRepository(db.pool).create(code="hz", name="杭州分公司")
    repo = StaffRepository(db.pool)
    hz_manager = (await repo.add(name="钱经理", phone=unique_phone(), role=Role.manager)).id
    await db.pool.execute("UPDATE staff SET branch_id = $2 WHERE id = $1", hz_manager, hz.id)
    now = datetime.now(UTC)
    w = morning.window(FAST.calendar, today())
    await _case(db, source="online", created_at=w.start + timedelta(hours=12), branch_id=hz.id)
    # 杭州 keeps a local holiday today (its own policy version); the chain works
    holiday = FAST.model_copy(update={"name": "fast-hz-holiday", "calendar": CalendarPolicy(
        hours={d: [(time(0, 0), time(23, 59))] for d in range(7)}, holidays=[today()])})
    await PolicyVersions(db.pool).save(policy=holiday, yaml=policy_yaml(holiday), based_on=None, changes=[],
                                       note="杭州放假", created_by=None, branch_id=hz.id)
    assert await scheduler(db.pool).run_once(now) == today()
    rows = await summary_rows(db)
    by_person = {r["recipient_id"]: r for r in rows}
    # 总店's manager: 总店's two leads; the director: the chain's three; 杭州's manager: nothing on its holiday
    assert set(by_person) == {db.staff["manager"], db.staff["director"]}
    mine, chain = by_person[db.staff["manager"]], by_person[db.staff["director"]]
    assert mine["purpose"] == f"morning_summary:{today().isoformat()}:main"
    assert mine["text"].startswith("【晨报·总店】") and "新客户 2 个" in mine["text"]
    assert chain["purpose"] == f"morning_summary:{today().isoformat()}"
    assert chain["text"].startswith("【晨报】") and "新客户 3 个" in chain["text"]
    # 杭州 works again: its summary goes to its manager, of its own case only; the others are not sent again
    await PolicyVersions(db.pool).save(policy=FAST, yaml=policy_yaml(FAST), based_on=1, changes=[], note="上班",
                                       created_by=None, branch_id=hz.id)
    assert await scheduler(db.pool).run_once(now) == today()
    assert await scheduler(db.pool).run_once(now) is None
    rows = [r for r in await summary_rows(db) if r["recipient_id"] == hz_manager]
    assert [r["purpose"] for r in rows] == [f"morning_summary:{today().isoformat()}:hz"]
    assert rows[0]["text"].startswith("【晨报·杭州分公司】") and "新客户 1 个" in rows[0]["text"]
    assert await db.pool.fetchval("SELECT count(*) FROM morning_summaries") == 3

    # The API: each reads their branch's by default; head office the chain's, or any branch's
    app = create_app(db.settings(request_timeout_seconds=5.0), temporal_client=client, pool=db.pool, policy=FAST)
    tokens = {k: await repo.issue_token(staff_id=i, label="morning") for k, i in
              (("main", db.staff["manager"]), ("hz", hz_manager), ("director", db.staff["director"]))}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        async def get(who: str, **params: str) -> httpx.Response:
            return await http.get("/reports/morning-summary", params=params,
                                  headers={"Authorization": f"Bearer {tokens[who]}"})

        body = (await get("hz")).json()
        assert body["sent"] is True and body["recipients"] == [hz_manager] and body["figures"]["new_leads"] == 1
        assert (await get("main")).json()["figures"]["new_leads"] == 2
        assert (await get("director")).json()["figures"]["new_leads"] == 3
        assert (await get("director", branch="hz")).json()["lines"][0].startswith("【晨报·杭州分公司】")
        r = await get("hz", branch="main")
        assert (r.status_code, r.json()["code"]) == (403, "not_your_branch")
        r = await get("director", branch="nowhere")
        assert (r.status_code, r.json()["code"]) == (404, "branch_not_found")
