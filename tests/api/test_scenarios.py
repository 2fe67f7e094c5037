"""The four scenarios from creation to outcome, through HTTP only; the client's SMS exactly as SPEC §6."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.templates import format_meeting_time
from tests.api.conftest import Api, future, open_steps

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
        r = await api.http.get(f"/intakes/{case_id}/messages", headers=api.h("consultant"))
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
    c = await api.create("consultant", "remote")
    cid = c["id"]
    assert open_steps(c) == {"callback"}
    meet = future()
    s = await api.ok_step(cid, "callback", "manager",
                          {"reached": True, "meeting_at": meet, "meeting_kind": "measure", "designer_level": "senior"})
    assert open_steps(s) == {"assign_designer", "assign_assistant"} and s["designer_level"] == "senior"
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    assert s["assistant"]["name"] == "陈助理"
    r = await api.http.get(f"/intakes/{cid}/designer-suggestions", headers=api.h("manager"))
    assert r.status_code == 200 and r.json()["required_level"] == "senior", r.text
    s = await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "客户点名"})
    assert s["designer"]["name"] == "李设计" and open_steps(s) == {"contact"}
    # the case shows its assignments: allocation ledger and assistant registration (备案登记)
    r = await api.http.get(f"/intakes/{cid}", headers=api.h("manager"))
    got = {(a["role"], a["staff"]["name"], a["kind"], a["reason"]) for a in r.json()["assignments"]}
    assert got == {("assistant", "陈助理", "assign", None), ("designer", "李设计", "assign", "客户点名")}, got
    s = await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
    assert open_steps(s) == {"first_meeting"}
    # the first meeting is the measure itself: it completes the measure too
    s = await api.ok_step(cid, "first_meeting", "designer", {"true_needs": "三室两厅，现代简约，年底入住",
                                                              "visited_site": True})
    assert open_steps(s) == {"debrief"} and "measure" in {d["step"] for d in s["done_steps"]}
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
    visit = future()
    c = await api.create("consultant", "office_visit", meeting_at=visit, meeting_kind="office_visit")
    cid = c["id"]
    s = await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": visit, "car": "沪A12345 白色轿车"})
    assert open_steps(s) == {"assign_designer", "assign_assistant", "arrival"} and s["car"] == "沪A12345 白色轿车"
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "在店值班"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    s = await api.ok_step(cid, "arrival", "manager", {})
    assert open_steps(s) == {"first_meeting"}
    measure_at = future(3 * 86400)
    s = await api.ok_step(cid, "first_meeting", "designer",
                          {"true_needs": "老房翻新", "measure_at": measure_at, "visited_material_store": True})
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


async def test_site_office_to_signed(api: Api) -> None:
    # received at the compound office by the on-duty designer: assign_designer is pre-filled with them
    c = await api.create("site_lead", "site_office", received_by=P(api, "designer"))
    cid = c["id"]
    assert open_steps(c) == {"reception_review"} and c["received_by"]["id"] == P(api, "designer")
    await api.ok_step(cid, "reception_review", "manager", {"report": "客户看了样板间，意向强"})
    s = await api.ok_step(cid, "callback", "manager", {"reached": False})
    assert "callback" not in open_steps(s)
    # not reached: the callback comes back after the retry interval (seconds in the fast policy)

    async def callback_again() -> dict[str, Any] | None:
        x = await api.case(cid, fresh=True)
        return x if "callback" in open_steps(x) else None

    await api.until(callback_again, what="callback re-opened")
    meet = future()
    s = await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
    step = next(o for o in s["open_steps"] if o["step"] == "assign_designer")
    assert step["prefill"]["designer_id"] == P(api, "designer")
    s = await api.ok_step(cid, "assign_designer", "manager", {})  # take the pre-filled designer
    assert s["designer"]["id"] == P(api, "designer")
    assert open_steps(s) == {"contact", "assign_assistant"}
    await api.ok_step(cid, "contact", "designer", {"meeting_at": meet, "meeting_kind": "office_visit"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    measure_at = future(3 * 86400)
    await api.ok_step(cid, "first_meeting", "designer", {"true_needs": "婚房", "measure_at": measure_at})
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
    c = await api.create("consultant", "walk_in")
    cid = c["id"]
    assert open_steps(c) == {"assign_designer", "assign_assistant"}
    assert all(o["wall_clock"] for o in c["open_steps"])
    due = datetime.fromisoformat(c["open_steps"][0]["due_at"])
    assert due - datetime.fromisoformat(c["created_at"]) <= timedelta(seconds=25)  # minutes, wall-clock (fast)
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "轮到他"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    measure_at = future(2 * 86400)
    s = await api.ok_step(cid, "first_meeting", "designer", {"true_needs": "小户型改造", "measure_at": measure_at})
    assert open_steps(s) == {"debrief", "measure"}
    r = await api.http.post(f"/intakes/{cid}/notes", json={"text": "客户带了户型图"}, headers=api.h("designer"))
    assert r.status_code == 200 and r.json()["case_notes"][-1]["text"] == "客户带了户型图"
    await api.ok_step(cid, "debrief", "manager", {"findings": "接待及时"})
    await api.ok_step(cid, "measure", "designer", {"result": "done"})
    await api.ok_step(cid, "outcome", "manager", {"outcome": "signed"})

    sms = await messages(api, cid, {"T2", "T3"})
    assert sms["T2"]["text"] == t2("李设计", "陈助理", measure_at)
    assert sms["T3"]["text"] == t3("张经理", "李设计", "陈助理")
    await whole(api, cid, "signed")
