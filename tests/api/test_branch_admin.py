"""Branches through HTTP (issue 22): head office sets them up; each branch's clients are texted in its names
and address; a branch with its own calendar gives its cases due times by that calendar.

Against the session's app (real Temporal, worker and outbox dispatcher). The branches made here are closed
and their policy versions removed at the end, so the suites after this one see a chain of one branch again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from api.services import policy as policy_service
from cli import main
from domain.enums import Role
from domain.policy import CalendarPolicy, fast_policy
from domain.policy_admin import policy_yaml
from store.policy_versions import PolicyVersions
from store.staff import StaffRepository
from tests.api.conftest import COMPANY_ADDRESS, Api, future, unique_phone

SH = ZoneInfo("Asia/Shanghai")


@pytest_asyncio.fixture(loop_scope="session")
async def made(api: Api) -> AsyncIterator[list[int]]:
    """Ids of the branches a test makes: closed afterwards, their policy versions removed."""
    ids: list[int] = []
    try:
        yield ids
    finally:
        await api.pool.execute("DELETE FROM policy_versions WHERE branch_id = ANY($1::bigint[])", ids)
        await api.pool.execute("UPDATE branches SET status = 'closed' WHERE id = ANY($1::bigint[])", ids)
        policy_service.forget(api.pool)


async def _add(api: Api, made: list[int], **fields: Any) -> dict[str, Any]:
    body = {"code": f"b{uuid.uuid4().hex[:8]}", "name": "分公司", **fields}
    r = await api.http.post("/branches", json=body, headers=api.h("admin"))
    assert r.status_code == 201, r.text
    made.append(r.json()["id"])
    out: dict[str, Any] = r.json()
    return out


async def test_head_office_adds_lists_and_changes_branches_and_refusals_say_why(api: Api, made: list[int]) -> None:
    hz = await _add(api, made, name="杭州分公司", city="杭州", company_name="杭州城市人家装饰有限公司",
                    sms_template_codes={"T1": "SMS_HZ1"})
    assert (hz["name"], hz["city"], hz["status"], hz["sms_template_codes"]) == ("杭州分公司", "杭州", "active",
                                                                                {"T1": "SMS_HZ1"})
    # the director changes it too; null clears an optional field; absent fields stay
    r = await api.http.patch(f"/branches/{hz['id']}", headers=api.h("director"),
                             json={"company_address": "杭州市西湖区文三路100号", "city": None, "sms_sign": "杭州城市人家"})
    assert r.status_code == 200, r.text
    assert (r.json()["company_address"], r.json()["city"], r.json()["company_name"]) == (
        "杭州市西湖区文三路100号", None, "杭州城市人家装饰有限公司")
    r = await api.http.get("/branches", headers=api.h("director"))
    listed = {b["code"]: b for b in r.json()["items"]}
    assert listed["main"]["name"] == "总店" and listed[hz["code"]]["sms_sign"] == "杭州城市人家"
    assert (await api.http.get(f"/branches/{hz['id']}", headers=api.h("admin"))).json()["code"] == hz["code"]

    # refusals: a stable code, nothing changed
    async def refused(method: str, url: str, status: int, code: str, who: str = "admin", **kw: Any) -> None:
        r = await api.http.request(method, url, headers=api.h(who), **kw)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text

    await refused("POST", "/branches", 409, "branch_code_taken", json={"code": hz["code"], "name": "重复"})
    await refused("POST", "/branches", 422, "invalid_branch_code", json={"code": "Hang Zhou", "name": "杭州"})
    await refused("POST", "/branches", 422, "invalid_payload", json={"code": "x1", "name": "  "})
    await refused("POST", "/branches", 422, "invalid_sms_template",
                  json={"code": f"t{uuid.uuid4().hex[:6]}", "name": "错", "sms_template_codes": {"T9": "SMS_1"}})
    await refused("PATCH", f"/branches/{hz['id']}", 422, "invalid_sms_template",
                  json={"sms_template_codes": {"T1": "SMS 1"}})
    await refused("PATCH", f"/branches/{hz['id']}", 422, "invalid_payload", json={"name": None})
    await refused("PATCH", f"/branches/{hz['id']}", 422, "invalid_payload", json={"code": "other"})
    await refused("PATCH", "/branches/999999", 404, "branch_not_found", json={"name": "无"})
    await refused("GET", "/branches/abc", 404, "branch_not_found")
    await refused("PATCH", "/branches/1", 409, "branch_not_empty", json={"status": "closed"})
    for who in ("manager", "designer", "consultant"):
        await refused("GET", "/branches", 403, "wrong_role", who=who)
    await refused("POST", "/branches", 403, "wrong_role", who="manager", json={"code": "m1", "name": "经理建的"})
    r = await api.http.get(f"/branches/{hz['id']}", headers=api.h("admin"))
    assert r.json()["sms_template_codes"] == {"T1": "SMS_HZ1"} and r.json()["name"] == "杭州分公司"

    # a branch with people at work cannot close; once they are gone it can
    person = await StaffRepository(api.pool).add(name="杭州顾问", phone=unique_phone(), role=Role.consultant)
    await api.pool.execute("UPDATE staff SET branch_id = $2 WHERE id = $1", person.id, hz["id"])
    await refused("PATCH", f"/branches/{hz['id']}", 409, "branch_not_empty", json={"status": "closed"})
    await api.pool.execute("UPDATE staff SET status = 'inactive' WHERE id = $1", person.id)
    r = await api.http.patch(f"/branches/{hz['id']}", json={"status": "closed"}, headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["status"] == "closed"


async def _t4(api: Api, case_id: int) -> dict[str, Any] | None:
    r = await api.http.get(f"/intakes/{case_id}/messages", headers=api.h("director"))  # sees every branch
    return next((m for m in r.json()["items"] if m["purpose"].startswith("T4") and m["status"] == "sent"), None)


async def test_each_branchs_clients_get_its_name_and_office_address(api: Api, made: list[int]) -> None:
    hz = await _add(api, made, name="杭州分公司", company_name="杭州城市人家装饰有限公司", company_short_name="杭州城市人家",
                    company_address="杭州市西湖区文三路100号", sms_sign="杭州城市人家")
    sz = await _add(api, made, name="苏州门店", company_name="苏州城市人家装饰有限公司",
                    company_address="苏州市工业园区星湖街8号")
    cases: dict[str, int] = {}
    for key, branch in (("hz", hz), ("sz", sz), ("main", None)):
        # the client's reminder (T4) is due 60 s before the visit under the fast policy: after the branch is set
        visit = future(75)
        c = await api.create("consultant", "office_visit", meeting_at=visit, meeting_kind="office_visit")
        await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": visit})
        if branch is not None:  # the case in that branch, as the row holds it (test_branches creates in a branch)
            await api.pool.execute("UPDATE cases SET branch_id = $2 WHERE id = $1", c["id"], branch["id"])
        cases[key] = c["id"]
    t4: dict[str, dict[str, Any]] = {}
    for k, cid in cases.items():
        t4[k] = await api.until(partial(_t4, api, cid), timeout=45, what=f"T4 of {k}")
    assert "杭州城市人家装饰有限公司" in t4["hz"]["text"] and "杭州市西湖区文三路100号" in t4["hz"]["text"]
    assert t4["hz"]["text"].startswith("王先生您好：我是杭州城市人家装饰有限公司"), t4["hz"]["text"]
    assert "苏州城市人家装饰有限公司" in t4["sz"]["text"] and "苏州市工业园区星湖街8号" in t4["sz"]["text"]
    # 总店 keeps the deployment's names and address (INTAKE_COMPANY_*)
    assert "城市人家装饰公司" in t4["main"]["text"] and COMPANY_ADDRESS in t4["main"]["text"]
    assert all(t["template"] == "T4_OFFICE_MANAGER" for t in t4.values())
    assert "杭州" not in t4["sz"]["text"] and "苏州" not in t4["hz"]["text"]
    signs = {r["case_id"]: r["sms_sign"] for r in await api.pool.fetch(
        "SELECT case_id, sms_sign FROM outbox WHERE case_id = ANY($1::bigint[]) AND purpose LIKE 'T4%'",
        list(cases.values()))}
    assert signs == {cases["hz"]: "杭州城市人家", cases["sz"]: None, cases["main"]: None}


async def test_a_branch_with_its_own_calendar_gives_its_cases_due_times_by_it(api: Api, made: list[int]) -> None:
    hz = await _add(api, made, name="杭州分公司")
    # 杭州 keeps two days of a local holiday from today (its own policy version); the chain is open round the clock
    today = datetime.now(SH).date()
    holidays = [today, today + timedelta(days=1)]
    own = fast_policy().model_copy(update={"name": "fast-hz", "calendar": CalendarPolicy(
        hours={d: [(time(0, 0), time(23, 59))] for d in range(7)}, holidays=holidays)})
    await PolicyVersions(api.pool).save(policy=own, yaml=policy_yaml(own), based_on=None, changes=[], note="杭州假期",
                                        created_by=api.people["admin"].id, branch_id=hz["id"])
    policy_service.forget(api.pool)
    repo = StaffRepository(api.pool)
    person = await repo.add(name="杭州顾问", phone=unique_phone(), role=Role.consultant)
    await api.pool.execute("UPDATE staff SET branch_id = $2 WHERE id = $1", person.id, hz["id"])
    token = await repo.issue_token(staff_id=person.id, label="branch test")
    try:
        r = await api.http.post("/intakes", json=api.intake_body("remote"), headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        in_hz = r.json()
        in_main = await api.create("consultant", "remote")
        due = {k: datetime.fromisoformat(next(s["due_at"] for s in c["open_steps"] if s["step"] == "callback"))
               for k, c in (("hz", in_hz, ), ("main", in_main))}
        # the chain's case: ten seconds of (round-the-clock) working time; 杭州's: after its holidays
        assert due["main"] - datetime.now(UTC) < timedelta(minutes=1)
        first_working = datetime.combine(today + timedelta(days=2), time(0), SH)
        assert first_working <= due["hz"] < first_working + timedelta(minutes=1), due["hz"]
        rows = {r["id"]: r for r in await api.pool.fetch(
            "SELECT id, policy->>'name' AS name, policy_version FROM cases WHERE id = ANY($1::bigint[])",
            [in_hz["id"], in_main["id"]])}
        assert rows[in_hz["id"]]["name"] == "fast-hz" and rows[in_hz["id"]]["policy_version"] is not None
        assert rows[in_main["id"]]["name"] == "fast" and rows[in_main["id"]]["policy_version"] is None
    finally:
        await api.pool.execute("UPDATE staff SET status = 'inactive' WHERE id = $1", person.id)


async def test_the_command_line_adds_lists_and_updates_branches(
    api: Api, made: list[int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    from config import get_settings

    get_settings.cache_clear()
    code = f"cli{uuid.uuid4().hex[:6]}"
    try:
        assert await asyncio.to_thread(main, [
            "branches", "add", code, "宁波分公司", "--company-name", "宁波城市人家装饰有限公司",
            "--sms-template", "T1=SMS_NB1", "--sms-template", "T4_OFFICE=SMS_NB4"]) == 0
        made.append(await api.pool.fetchval("SELECT id FROM branches WHERE code = $1", code))
        assert await asyncio.to_thread(main, ["branches", "update", code, "--company-address", "宁波市鄞州区1号",
                                              "--clear", "company_name"]) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["branches", "list"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if code in x)
        assert "宁波分公司" in line and "address=宁波市鄞州区1号" in line and "company=(deployment)" in line
        assert "T1=SMS_NB1,T4_OFFICE=SMS_NB4" in line
        r = await api.http.get(f"/branches/{made[-1]}", headers=api.h("admin"))
        assert (r.json()["company_name"], r.json()["company_address"]) == (None, "宁波市鄞州区1号")
        # refusals name their code; nothing changed
        assert await asyncio.to_thread(main, ["branches", "add", code, "重复"]) == 1
        assert "branch_code_taken" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["branches", "update", code, "--sms-template", "T9=SMS_1"]) == 1
        assert "invalid_sms_template" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["branches", "update", "nowhere", "--name", "无"]) == 1
        assert "branch_not_found" in capsys.readouterr().err
        assert (await api.http.get(f"/branches/{made[-1]}", headers=api.h("admin"))).json()["sms_template_codes"] == {
            "T1": "SMS_NB1", "T4_OFFICE": "SMS_NB4"}
    finally:
        get_settings.cache_clear()
