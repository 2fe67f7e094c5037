"""The four scenarios from creation to outcome, through HTTP only; the client's SMS exactly as SPEC §6."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.templates import format_meeting_time
from tests.api.conftest import COMPANY_ADDRESS, Api, future, open_steps
from tests.support.data import musts

COMPANY, SHORT = "城市人家装饰公司", "城市人家"
CLIENT = "王先生"  # 王建国, male


def t1(designer: str, assistant: str | None) -> str:
    a = assistant or ""
    return (
        f"{CLIENT}您好：我是{COMPANY}设计师{designer}，非常荣幸为您服务，我和我的助理设计师{a}会准时到达。"
        f"{SHORT}设计师{designer}敬！"
    )


def t2(designer: str, assistant: str, at: str) -> str:
    when = format_meeting_time(datetime.fromisoformat(at))
    return (
        f"{CLIENT}您好：我是{COMPANY}设计师{designer}，非常荣幸为您服务，我们预约量房时间为{when}，"
        f"我和我的助理设计师{assistant}会准时到达。{SHORT}设计师{designer}敬！"
    )


def t3(manager: str, designer: str, assistant: str) -> str:
    return (
        f"{CLIENT}您好：我是{COMPANY}设计部经理{manager}，首先非常感谢您对{SHORT}的信任，"
        f"能给我以及设计师{designer}和助理设计师{assistant}为您服务的机会；能为您服务，我们团队感到非常荣幸！"
        f"我们团队针对您的情况进行了专门讨论和制定计划，在服务过程中您随时可以联系我，"
        f"我和我的设计师{designer}、助理设计师{assistant}会尽全力让您满意。{SHORT}设计部经理{manager}敬！"
    )


async def messages(api: Api, case_id: int, purposes: set[str]) -> dict[str, dict[str, Any]]:
    """The client SMS once every expected purpose is there (sent by the workflow after the update)."""

    async def get() -> dict[str, dict[str, Any]] | None:
        r = await api.http.get(f"/intakes/{case_id}/messages", headers=api.h("manager"))
        assert r.status_code == 200, r.text
        by = {m["purpose"]: m for m in r.json()["items"]}
        done = purposes <= set(by) and all(by[p]["status"] == "sent" for p in purposes)
        return by if done else None

    result: dict[str, dict[str, Any]] = await api.until(get, what=f"messages {purposes}")
    # Reminders (T4) may come on their own schedule; the others are exactly the expected ones.
    assert {p for p in result if not p.startswith("T4")} == purposes, sorted(result)
    return result


async def whole(api: Api, case_id: int, outcome: str) -> dict[str, Any]:
    """The case is closed with its outcome, live and in the projection and the list."""
    live = await api.case(case_id, fresh=True)
    assert live["status"] == "closed" and live["outcome"] == outcome and live["open_steps"] == []

    async def projected() -> dict[str, Any] | None:
        c = await api.case(case_id, fresh=False)
        return c if c["status"] == "closed" and c["version"] == live["version"] else None

    proj = await api.until(projected, what="projection caught up")
    assert proj["stage"] == outcome and "closed" in [e["kind"] for e in proj["timeline"]]
    r = await api.http.get("/intakes", params={"status": "closed", "stage": outcome, "limit": 200},
                           headers=api.h("manager"))
    assert case_id in {c["id"] for c in r.json()["items"]}
    r = await api.http.get("/me/tasks", params={"limit": 200}, headers=api.h("designer"))
    assert case_id not in {t["case_id"] for t in r.json()["items"]}
    return proj


def P(api: Api, key: str) -> int:
    return api.people[key].id


async def test_remote_lead_to_signed(api: Api) -> None:
    """情况一: the callback names the designer agreed with the client (item 4); the designer's notice
    carries the client's details (item 5); contact opens once both are assigned (item 2); the four
    musts are required answers (item 7)."""
    c = await api.create("consultant", "remote")
    cid = c["id"]
    assert open_steps(c) == {"callback"}
    # suggestions are readable while the callback is open: the manager agrees level and name on the phone
    r = await api.http.get(f"/intakes/{cid}/designer-suggestions", params={"level": "senior"},
                           headers=api.h("manager"))
    assert r.status_code == 200 and r.json()["required_level"] == "senior", r.text
    assert P(api, "designer") in {s["staff"]["id"] for s in r.json()["items"]}
    meet = future()
    s = await api.ok_step(cid, "callback", "manager",
                          {"reached": True, "meeting_at": meet, "meeting_kind": "measure", "designer_level": "senior",
                           "designer_id": P(api, "designer"), "reason": "客户点名", "notes": "客户希望上午量房，小区停车不便"})
    # the agreed designer completed assign_designer; contact waits for the assistant (T1 names both)
    assert s["designer"]["name"] == "李设计" and s["designer_level"] == "senior"
    assert open_steps(s) == {"assign_assistant"}
    assert "assign_designer" in {d["step"] for d in s["done_steps"]}
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    assert s["assistant"]["name"] == "陈助理" and open_steps(s) == {"contact"}
    # the case shows its assignments: allocation ledger and assistant registration (备案登记)
    r = await api.http.get(f"/intakes/{cid}", headers=api.h("manager"))
    got = {(a["role"], a["staff"]["name"], a["kind"], a["reason"]) for a in r.json()["assignments"]}
    assert got == {("assistant", "陈助理", "assign", None), ("designer", "李设计", "assign", "客户点名")}, got
    # 将客户的详细情况告诉设计师: rendered from PostgreSQL into the designer's notice
    told = await api.notice(cid, f"assigned:designer:{P(api, 'designer')}", who="designer")
    for detail in ("王先生", "阳光花园", "120 平方米", "30 万元", "主任设计师", "客户希望上午量房，小区停车不便",
                   "约定量房"):
        assert detail in told["text"], (detail, told["text"])
    assert told["recipient_id"] == P(api, "designer")
    # a designer reads only the notices addressed to them
    assert all(m["recipient_id"] == P(api, "designer") for m in (await api.notices(cid, "designer")).values())
    s = await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    assert open_steps(s) == {"first_meeting"}
    # the musts at a home measure (SPEC §14): true needs required; the visits are invited, no reason forced
    r = await api.step(cid, "first_meeting", "designer", {"true_needs": "三室两厅，现代简约，年底入住"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_payload", r.text
    r = await api.step(cid, "first_meeting", "designer", musts(" ", visited_material_store=False))
    assert r.status_code == 422 and "true_needs" in r.text, r.text
    store_at = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    # the first meeting is the measure itself: it completes the measure too
    s = await api.ok_step(cid, "first_meeting", "designer",
                          musts("三室两厅，现代简约，年底入住", visited_material_store=False,
                                material_store_visit_at=store_at))
    assert open_steps(s) == {"debrief"} and "measure" in {d["step"] for d in s["done_steps"]}
    fm = next(d for d in s["done_steps"] if d["step"] == "first_meeting")
    assert fm["payload"]["seen_off"] is True and fm["payload"]["material_store_visit_at"] is not None
    s = await api.ok_step(cid, "debrief", "manager", {"findings": "需求挖掘充分"})
    assert open_steps(s) == {"outcome"}
    s = await api.ok_step(cid, "outcome", "manager", {"outcome": "signed"})
    assert s["status"] == "closed" and s["outcome"] == "signed"

    sms = await messages(api, cid, {"T1", "T3"})
    assert sms["T1"]["text"] == t1("李设计", "陈助理")
    assert sms["T3"]["text"] == t3("张经理", "李设计", "陈助理")
    assert sms["T1"]["recipient"] == c["client"]["phone"]
    await whole(api, cid, "signed")


async def test_office_visit_to_lost(api: Api) -> None:
    """情况二: the car, the company address in the client's reminder, the manager's whole reception
    checklist, arrival records it (item 6); the first meeting waits for the assistant (item 3)."""
    visit = future(25)  # soon: the reminders come within the test (fast policy: T4 60 s, manager 10 s before)
    c = await api.create("consultant", "office_visit", meeting_at=visit, meeting_kind="office_visit")
    cid = c["id"]
    s = await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": visit, "car": "沪A12345 白色轿车"})
    assert open_steps(s) == {"assign_designer", "assign_assistant", "arrival"} and s["car"] == "沪A12345 白色轿车"
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "在店值班"})
    # the manager's reminder before the visit carries the whole reception checklist
    manager_reminder = await api.until(
        lambda: _manager_reminder(api, cid), timeout=30, what="the manager's reminder")
    for item in ("口香糖清口", "录音笔", "门口迎接", "递名片", "安排前台倒水"):
        assert item in manager_reminder["text"], manager_reminder["text"]
    # the client's reminder (T4) names the company address for an office visit; before the visit the
    # client has spoken only to the manager, who signs it (SPEC §14)
    t4 = await api.until(lambda: _t4(api, cid), timeout=30, what="T4 sent")
    assert COMPANY_ADDRESS in t4["text"] and t4["template"] == "T4_OFFICE_MANAGER" and "到店见面" in t4["text"], t4
    assert t4["text"].endswith(f"设计部经理{c['manager']['name']}敬！"), t4
    # arrival records which items were done; the first meeting still waits for the assistant
    s = await api.ok_step(cid, "arrival", "manager", {"gum": True, "recorder": True, "greeted_at_door": True,
                                                      "business_card": True, "water": False})
    assert s["reception"] == {"gum": True, "recorder": True, "greeted_at_door": True, "business_card": True,
                              "water": False}
    assert "first_meeting" not in open_steps(s)
    assert any("未做：安排前台倒水" in e["text"] for e in s["timeline"])
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    assert open_steps(s) == {"first_meeting"}
    measure_at = future(3 * 86400)
    s = await api.ok_step(cid, "first_meeting", "designer",
                          musts("老房翻新", measure_at=measure_at, visited_site=False, site_reason="工地今天停工"))
    assert open_steps(s) == {"debrief", "measure"}
    # the client moves the measure; the designer reschedules it
    moved = future(4 * 86400)
    r = await api.http.post(f"/intakes/{cid}/reschedule", json={"target": "measure", "at": moved, "reason": "客户出差"},
                            headers=api.h("designer"))
    assert r.status_code == 200, r.text
    assert r.json()["meetings"][-1]["at"][:16] == datetime.fromisoformat(moved).astimezone(UTC).isoformat()[:16]
    await api.ok_step(cid, "debrief", "manager", {"findings": "讲解材料不够细", "designer_corrections": "带样板"})
    await api.ok_step(cid, "measure", "designer", {"result": "done"})
    r = await api.step(cid, "outcome", "manager", {"outcome": "lost"})
    assert r.status_code == 422 and r.json()["code"] == "reason_required"
    s = await api.ok_step(cid, "outcome", "manager", {"outcome": "lost", "reason": "预算不足"})
    assert s["outcome"] == "lost" and s["outcome_reason"] == "预算不足"

    sms = await messages(api, cid, {"T2", "T3"})
    assert sms["T2"]["text"] == t2("李设计", "陈助理", measure_at)
    assert sms["T3"]["text"] == t3("张经理", "李设计", "陈助理")
    await whole(api, cid, "lost")


async def _manager_reminder(api: Api, cid: int) -> dict[str, Any] | None:
    return next((m for p, m in (await api.notices(cid)).items() if p.startswith("remind:meeting:")
                 and p.endswith(":manager")), None)


async def _t4(api: Api, cid: int) -> dict[str, Any] | None:
    r = await api.http.get(f"/intakes/{cid}/messages", headers=api.h("manager"))
    return next((m for m in r.json()["items"] if m["purpose"].startswith("T4") and m["status"] == "sent"), None)


async def test_site_office_to_signed(api: Api) -> None:
    """情况三: an assistant designer received the client at the compound office; the review sends them a
    correction, which they acknowledge (item 1)."""
    c = await api.create("site_lead", "site_office", received_by=P(api, "assistant"))
    cid = c["id"]
    assert open_steps(c) == {"reception_review"} and c["received_by"]["id"] == P(api, "assistant")
    s = await api.ok_step(cid, "reception_review", "manager",
                          {"report": "客户看了样板间，意向强", "corrections": "接待时要先递名片，再介绍样板间"})
    ack = next(o for o in s["open_steps"] if o["step"] == "acknowledge")
    assert ack["owner"]["id"] == P(api, "assistant") and ack["owner_role"] == "assistant" and ack["due_at"]
    told = await api.notice(cid, "correction:acknowledge", who="assistant")
    assert "接待时要先递名片" in told["text"] and told["recipient_id"] == P(api, "assistant")
    # only the corrected person confirms it
    # (an assistant not on the case does not even learn that it exists)
    r = await api.step(cid, "acknowledge", "assistant2", {})
    assert r.status_code == 404 and r.json()["code"] == "case_not_found", r.text
    r = await api.step(cid, "acknowledge", "designer", {})  # no designer on the case yet: not theirs to see
    assert r.status_code == 404, r.text
    r = await api.step(cid, "acknowledge", "manager", {})  # sees the case, was not the one corrected
    assert r.status_code == 403 and r.json()["code"] == "not_your_case", r.text
    r = await api.http.get("/me/tasks", headers=api.h("assistant"))
    assert any(t["case_id"] == cid and t["step"] == "acknowledge" for t in r.json()["items"]), r.text
    s = await api.ok_step(cid, "acknowledge", "assistant", {"note": "已记录，下次先递名片"})
    assert "acknowledge" not in open_steps(s)
    assert any(e["kind"] == "acknowledged" and "下次先递名片" in e["text"] for e in s["timeline"])
    s = await api.ok_step(cid, "callback", "manager", {"reached": False})
    assert "callback" not in open_steps(s)
    # not reached: the callback comes back after the retry interval (seconds in the fast policy)

    async def callback_again() -> dict[str, Any] | None:
        x = await api.case(cid, fresh=True)
        return x if "callback" in open_steps(x) else None

    await api.until(callback_again, what="callback re-opened")
    meet = future()
    s = await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
    s = await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "熟悉该小区"})
    assert s["designer"]["id"] == P(api, "designer")
    assert open_steps(s) == {"contact", "assign_assistant"}
    # the assistant who received the client is the pre-filled assistant
    step = next(o for o in s["open_steps"] if o["step"] == "assign_assistant")
    assert step["prefill"]["assistant_id"] == P(api, "assistant")
    await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "office_visit"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {})
    measure_at = future(3 * 86400)
    await api.ok_step(cid, "first_meeting", "designer", musts("婚房", measure_at=measure_at))
    await api.ok_step(cid, "measure", "designer", {"result": "done"})
    await api.ok_step(cid, "debrief", "manager", {"findings": "好"})
    r = await api.http.post(f"/intakes/{cid}/close", json={"outcome": "signed"}, headers=api.h("manager"))
    assert r.status_code == 200 and r.json()["outcome"] == "signed", r.text

    sms = await messages(api, cid, {"T1", "T2", "T3"})
    assert sms["T1"]["text"] == t1("李设计", None)  # the site-office wording: no assistant named
    assert sms["T2"]["text"] == t2("李设计", "陈助理", measure_at)
    assert sms["T3"]["text"] == t3("张经理", "李设计", "陈助理")
    await whole(api, cid, "signed")


async def test_walk_in_to_signed(api: Api) -> None:
    """自然客户: the reception checklist at creation (item 6); the first meeting waits for the assistant
    (item 3); the recording is attached and played back, corrections are acknowledged (item 8)."""
    checklist = {"gum": True, "recorder": True, "greeted_at_door": True, "business_card": False, "water": True}
    c = await api.create("consultant", "walk_in", reception=checklist)
    cid = c["id"]
    assert c["reception"] == checklist
    assert any("未做：递名片" in e["text"] for e in (await api.case(cid))["timeline"])
    assert open_steps(c) == {"assign_designer", "assign_assistant"}
    assert all(o["wall_clock"] for o in c["open_steps"])
    due = datetime.fromisoformat(c["open_steps"][0]["due_at"])
    assert due - datetime.fromisoformat(c["created_at"]) <= timedelta(seconds=25)  # minutes, wall-clock (fast)
    s = await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "轮到他"})
    assert "first_meeting" not in open_steps(s)  # the manager introduces designer and assistant together
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    assert "first_meeting" in open_steps(s)
    measure_at = future(2 * 86400)
    s = await api.ok_step(cid, "first_meeting", "designer", musts("小户型改造", measure_at=measure_at))
    assert open_steps(s) == {"debrief", "measure"}
    r = await api.http.post(f"/intakes/{cid}/notes", json={"text": "客户带了户型图"}, headers=api.h("designer"))
    assert r.status_code == 200 and r.json()["case_notes"][-1]["text"] == "客户带了户型图"
    # the recorder's audio: uploaded by the manager, on the timeline, played back with ranges
    audio = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 40
    r = await api.http.post(f"/intakes/{cid}/recordings", files={"file": ("首次见面.mp3", audio, "audio/mpeg")},
                            headers=api.h("manager"))
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["content_type"] == "audio/mpeg" and rec["size"] == len(audio)
    case = await api.case(cid)
    assert rec["id"] in case["recordings"]
    assert any(e["kind"] == "recording" and f"#{rec['id']}" in e["text"] for e in case["timeline"])
    r = await api.http.get(rec["url"], headers=api.h("designer") | {"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == audio[100:200], r.status_code
    assert r.headers["content-range"] == f"bytes 100-199/{len(audio)}" and r.headers["accept-ranges"] == "bytes"
    r = await api.http.get(rec["url"], headers=api.h("director"))
    assert r.status_code == 200 and r.content == audio
    r = await api.http.get(rec["url"], headers=api.h("designer2"))  # not on the case: it does not exist for them
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    # corrections: a notice to each corrected person and a step each of them completes
    s = await api.ok_step(cid, "debrief", "manager", {"findings": "接待及时", "designer_corrections": "先问预算再推荐",
                                                      "assistant_corrections": "量房记录要拍照"})
    acks = {o["owner"]["id"]: o for o in s["open_steps"] if o["step"] == "acknowledge"}
    assert set(acks) == {P(api, "designer"), P(api, "assistant")}
    assert "先问预算再推荐" in (await api.notice(cid, "correction:", who="designer"))["text"]
    assert "量房记录要拍照" in (await api.notice(cid, "correction:", who="assistant"))["text"]
    await api.ok_step(cid, "acknowledge", "designer", {"note": "已改正"})
    await api.ok_step(cid, "acknowledge", "assistant", {})
    await api.ok_step(cid, "measure", "designer", {"result": "done"})
    await api.ok_step(cid, "outcome", "manager", {"outcome": "signed"})

    sms = await messages(api, cid, {"T2", "T3"})
    assert sms["T2"]["text"] == t2("李设计", "陈助理", measure_at)
    assert sms["T3"]["text"] == t3("张经理", "李设计", "陈助理")
    await whole(api, cid, "signed")
