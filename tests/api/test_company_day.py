"""The company's day through HTTP (SPEC §14): real API, worker, Temporal and PostgreSQL.

Two clocks. The session's fast policy (seconds, open around the clock) carries the cases whose point is
what happens, not when: 情况二 three days out, a reassignment after T1, a late first meeting. The night
is a policy of this module: a real calendar (working hours, a quiet window 21:00–08:30 as its own times)
compressed around the present, so "20:00" comes a few seconds after the test starts and "the next
morning" a minute later, in a fixed-offset time zone where the present is about noon.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.policy import CalendarPolicy, Policy, QuietHours, fast_policy
from tests.api.conftest import Api, Person, future, make_http, open_steps, unique_phone
from tests.support.data import musts
from worker import build_dispatcher, build_worker

# --- the fast clock ---------------------------------------------------------------------------------


async def test_office_visit_three_days_out_pages_nobody_before_the_visit(api: Api) -> None:
    visit = future(3 * 86400)
    c = await api.create("consultant", "office_visit", meeting_at=visit, meeting_kind="office_visit")
    s = await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": visit})
    due = {o["step"]: o for o in s["open_steps"]}
    for step in ("assign_designer", "assign_assistant"):
        # due at the visit, and the first rung of the chain at the visit too: nobody hears before
        assert datetime.fromisoformat(due[step]["due_at"]) == datetime.fromisoformat(visit), due[step]
        assert datetime.fromisoformat(due[step]["next_escalation_at"]) >= datetime.fromisoformat(visit)
    await asyncio.sleep(3)
    assert not [p for p in await api.notices(c["id"]) if p.startswith("esc:")]


async def _to_t1(api: Api, meet: str) -> int:
    c = await api.create("consultant", "remote")
    cid = int(c["id"])
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": api.people["designer"].id, "reason": "点名"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    return cid


async def _sms(api: Api, cid: int) -> dict[str, dict[str, Any]]:
    r = await api.http.get(f"/intakes/{cid}/messages", headers=api.h("manager"))
    assert r.status_code == 200, r.text
    return {m["purpose"]: m for m in r.json()["items"]}


async def test_a_reassignment_after_t1_sends_exactly_one_introduction(api: Api) -> None:
    meet = future(2 * 86400)
    cid = await _to_t1(api, meet)
    r = await api.http.post(f"/intakes/{cid}/reassign", headers=api.h("manager"),
                            json={"role": "designer", "staff_id": api.people["designer2"].id, "reason": "李设计休假"})
    assert r.status_code == 200, r.text
    contact = next(o for o in r.json()["open_steps"] if o["step"] == "contact")
    assert contact["owner"]["id"] == api.people["designer2"].id
    r = await api.step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    assert r.status_code == 403  # the former designer no longer owns it
    await api.ok_step(cid, "contact", "designer2", {"meeting_at": meet, "meeting_kind": "measure"})
    r = await api.step(cid, "contact", "designer2", {"meeting_at": meet, "meeting_kind": "measure"})
    assert r.status_code == 409  # once per change
    sms = await _sms(api, cid)
    t5 = [m for p, m in sms.items() if p.startswith("T5")]
    assert len(t5) == 1, sms.keys()
    assert t5[0]["text"] == ("王先生您好：我是城市人家装饰公司设计师周设计，接下来由我和助理设计师陈助理为您服务，"
                             "李设计设计师的工作已与我交接，我们会准时到达。城市人家设计师周设计敬！")


async def test_a_late_first_meeting_asks_the_manager_instead_of_reclaiming(api: Api) -> None:
    cid = await _to_t1(api, future(3))
    # due 30 s after the meeting; reminded, the manager told, then at the first repeat: the manager decides
    review = await api.until(lambda: _open(api, cid, "lapse_review"), timeout=90, what="lapse_review")
    assert review["owner_role"] == "manager"
    case = await api.case(cid)
    assert case["designer"]["id"] == api.people["designer"].id and "first_meeting" in open_steps(case)
    r = await api.step(cid, "lapse_review", "manager", {"decision": "extend", "until": future(600)})
    assert r.status_code == 422 and r.json()["code"] == "reason_required", r.text
    s = await api.ok_step(cid, "lapse_review", "manager",
                          {"decision": "extend", "reason": "客户出差，改天见面", "until": future(600)})
    assert "lapse_review" not in open_steps(s) and s["designer"]["id"] == api.people["designer"].id
    r = await api.http.get("/reports/allocation", headers=api.h("manager"))
    assert r.status_code == 200


async def _open(api: Api, cid: int, step: str) -> dict[str, Any] | None:
    case = await api.case(cid)
    return next((o for o in case["open_steps"] if o["step"] == step), None)


# --- the night ---------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def night(client: Client, pool: asyncpg.Pool, pg_dsn: str, people: dict[str, Person]) -> AsyncIterator[
        tuple[Api, dict[str, datetime]]]:
    """An app whose calendar puts "20:00" 25 s and "the next morning" 85 s from now."""
    now = datetime.now(UTC).replace(microsecond=0)
    offset = (12 - now.hour + 12) % 24 - 12  # the present at about noon, local
    zone = ZoneInfo(f"Etc/GMT{'-' if offset >= 0 else '+'}{abs(offset)}")
    local = now.astimezone(zone)

    def at(seconds: int) -> time:
        return (local + timedelta(seconds=seconds)).time()

    marks = {"evening": now + timedelta(seconds=20), "quiet": now + timedelta(seconds=25),
             "quiet_end": now + timedelta(seconds=80), "morning": now + timedelta(seconds=85)}
    day = [(time(0, 0), at(20)), (at(85), time(23, 59, 59))]
    policy = fast_policy().model_copy(update={
        "name": "night",
        "calendar": CalendarPolicy(timezone=zone.key, always_open=False, hours=dict.fromkeys(range(7), day)),
        "quiet_hours": QuietHours(start=at(25), end=at(80)),
    })
    Policy.model_validate(policy.model_dump())  # a policy that could be written in a file
    tq = f"night-{uuid.uuid4().hex[:10]}"
    settings = Settings(task_queue=tq, database_url=pg_dsn, request_timeout_seconds=5.0)
    app = create_app(settings, temporal_client=client, pool=pool, policy=policy)
    worker = build_worker(client, pool, settings, task_queue=tq)
    stop = asyncio.Event()
    sending = asyncio.create_task(build_dispatcher(pool, settings).run(stop))
    try:
        async with worker, make_http(app) as http:
            yield Api(http=http, people=people, settings=settings, client=client, pool=pool), marks
    finally:
        stop.set()
        await sending


async def _wait_until(t: datetime) -> None:
    await asyncio.sleep(max((t - datetime.now(UTC)).total_seconds(), 0))


async def test_a_lead_at_night_is_called_back_next_morning_with_nothing_sent_at_night(
        night: tuple[Api, dict[str, datetime]]) -> None:
    api, marks = night
    # in the afternoon a case reaches the designer; the designer calls the client in the evening
    meet = future(3 * 86400)
    earlier = await api.create("consultant", "remote")
    await api.ok_step(earlier["id"], "callback", "manager", {"reached": True, "meeting_at": meet,
                                                              "meeting_kind": "measure"})
    await api.ok_step(earlier["id"], "assign_designer", "manager", {"designer_id": api.people["designer"].id,
                                                                     "reason": "点名"})
    await api.ok_step(earlier["id"], "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    await _wait_until(marks["quiet"] + timedelta(seconds=1))
    # "20:00" has passed, the quiet window has begun: a new lead comes in, the designer's call ends
    lead = await api.create("consultant", "remote")
    callback = next(o for o in lead["open_steps"] if o["step"] == "callback")
    # due the next working morning (10 s of working time after it starts): nobody is paged at night
    assert datetime.fromisoformat(callback["due_at"]) >= marks["morning"], callback
    await api.ok_step(earlier["id"], "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    told = await api.notice(lead["id"], "open:callback")
    assert told["status"] == "pending" and told["held"] and "暂缓至" in told["held"], told
    assert datetime.fromisoformat(told["not_before"]) == marks["morning"], told
    t1 = (await _sms(api, earlier["id"]))["T1"]
    assert t1["status"] == "pending" and datetime.fromisoformat(t1["not_before"]) == marks["quiet_end"], t1
    # the night passes: nothing was sent before its time; then both go, and the callback is due
    await _wait_until(marks["morning"] + timedelta(seconds=12))

    async def sent() -> bool:
        n = (await api.notices(lead["id"]))["open:callback#1"]
        m = (await _sms(api, earlier["id"]))["T1"]
        return n["status"] == "sent" and m["status"] == "sent"

    await api.until(sent, timeout=20, what="the night's messages sent in the morning")
    rows = await api.pool.fetch("SELECT purpose, sent_at, not_before FROM outbox WHERE case_id = ANY($1::bigint[])"
                                " AND status = 'sent'", [lead["id"], earlier["id"]])
    assert rows and all(r["not_before"] is None or r["sent_at"] >= r["not_before"] for r in rows)
    assert not [r for r in rows if marks["evening"] <= r["sent_at"] < marks["quiet_end"]
                and r["purpose"] in ("T1", "open:callback#1")]
    esc = await api.notice(lead["id"], "esc:callback#1", timeout=20)
    assert esc["recipient_id"] == lead["manager"]["id"]
    s = await api.ok_step(lead["id"], "callback", "manager", {"reached": True})
    assert {"assign_designer", "assign_assistant"} <= open_steps(s)
    assert musts()  # the shared payload helper stays importable for the scenario above


async def test_site_office_without_a_designer_on_duty_records_the_four_musts(api: Api) -> None:
    musts4 = {"told_better_designers": True, "basic_needs": "三口之家，想要开放式厨房", "phone_kept": True,
              "told_will_call": True}
    r = await api.http.post("/intakes", headers=api.h("site_lead"),
                            json=api.intake_body("site_office", site_musts=musts4 | {"basic_needs": " "}))
    assert r.status_code == 422 and "basic_needs" in r.text, r.text
    r = await api.http.post("/intakes", headers=api.h("consultant"),
                            json=api.intake_body("remote", site_musts=musts4))
    assert r.status_code == 422 and r.json()["code"] == "invalid_payload", r.text
    c = await api.create("site_lead", "site_office", site_musts=musts4)
    assert c["site_musts"] == musts4
    review = next(o for o in (await api.case(c["id"]))["open_steps"] if o["step"] == "reception_review")
    assert review["prefill"]["reception_musts"] == musts4 and review["prefill"]["missed"] == []


async def test_the_deputy_holds_the_managers_steps_while_the_manager_is_on_leave(api: Api) -> None:
    manager, deputy = api.people["manager2"], api.people["designer2"]
    r = await api.http.patch(f"/staff/{manager.id}", headers=api.h("admin"), json={"deputy_id": manager.id})
    assert r.status_code == 422, r.text  # nobody deputizes for themself
    r = await api.http.patch(f"/staff/{manager.id}", headers=api.h("admin"),
                             json={"deputy_id": deputy.id, "status": "on_leave"})
    assert r.status_code == 200 and r.json()["deputy_id"] == deputy.id, r.text
    try:
        c = await api.create("manager2", "remote")  # 孙经理's own case
        cid = c["id"]
        # the new step goes to the deputy: in their tasks, its notice to them, for the manager
        r = await api.http.get("/me/tasks", headers=api.h("designer2"))
        assert any(t["case_id"] == cid and t["step"] == "callback" for t in r.json()["items"]), r.text
        told = await api.notice(cid, "open:callback#1")
        assert told["recipient_id"] == deputy.id and told["text"].startswith(f"【代{manager.name}】"), told
        # late: the deputy is reminded first, the director only after the deputy
        first = await api.notice(cid, "esc:callback#1:1", timeout=30)
        second = await api.notice(cid, "esc:callback#1:2", timeout=30)
        assert first["recipient_id"] == deputy.id and second["recipient_id"] == api.people["director"].id
        # the deputy acts with the manager's rights on the manager's case
        s = await api.ok_step(cid, "callback", "designer2", {"reached": True})
        assert {"assign_designer", "assign_assistant"} <= open_steps(s)
        s = await api.ok_step(cid, "assign_designer", "designer2",
                              {"designer_id": api.people["designer"].id, "reason": "代经理分配"})
        assert s["designer"]["id"] == api.people["designer"].id
        # on another manager's case the deputy is nobody
        other = await api.create("consultant", "remote")
        r = await api.step(other["id"], "callback", "designer2", {"reached": True})
        assert r.status_code == 404, r.text
    finally:
        r = await api.http.patch(f"/staff/{manager.id}", headers=api.h("admin"),
                                 json={"deputy_id": None, "status": "active"})
        assert r.status_code == 200, r.text


async def test_a_returning_client_is_linked_and_one_house_has_one_designer(api: Api) -> None:
    phone, spouse = unique_phone(), unique_phone()
    house = {"compound": "翠湖苑", "address": f"{uuid.uuid4().int % 90 + 10}栋1单元{uuid.uuid4().int % 9000 + 1000}"}
    first = await api.create("consultant", "remote", client={"phone": phone, "second_phone": spouse, **house})
    await api.ok_step(first["id"], "callback", "manager", {"reached": True})
    await api.ok_step(first["id"], "assign_designer", "manager",
                      {"designer_id": api.people["designer2"].id, "reason": "客户点名"})
    # while it is open: the spouse calling in, or the same house under another phone, is the same client (撞单)
    for client in ({"phone": spouse}, {"phone": unique_phone(), **house}):
        r = await api.http.post("/intakes", headers=api.h("manager"), json=api.intake_body("remote", client=client))
        assert r.status_code == 409 and r.json()["case_id"] == first["id"], r.text
    r = await api.http.post(f"/intakes/{first['id']}/close", headers=api.h("manager"),
                            json={"outcome": "lost", "reason": "预算不够"})
    assert r.status_code == 200, r.text
    # a year later the client comes back: a new case, linked to its history
    again = await api.create("consultant", "remote", client={"phone": phone, **house})
    assert again["previous_case_id"] == first["id"], again
    assert again["returning"] == f"回头客：手机号与案例 #{first['id']} 相同（已流失，原设计师 周设计）"
    assert any(e["kind"] == "returning" for e in again["timeline"])
    # the manager sees the earlier designer first, with the reason, and the other case of the house
    r = await api.http.get(f"/intakes/{again['id']}/designer-suggestions", headers=api.h("manager"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["items"][0]["staff"]["id"] == api.people["designer2"].id, body["items"]
    assert body["items"][0]["reasons"][0].startswith(f"曾为该客户服务（案例 #{first['id']}）")
    assert [(c["case_id"], c["matched_by"]) for c in body["related_cases"]] == [(first["id"], "phone")]
