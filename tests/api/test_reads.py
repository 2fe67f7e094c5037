"""Reads from the projection: the list with filters and pagination, the case, my tasks, the SLA report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio

from tests.api.conftest import Api, future, open_steps
from tests.api.test_errors import assert_error


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cases(api: Api) -> dict[str, Any]:
    """Four cases created by `manager2` (so they are theirs), one with the designer assigned."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    remote = await api.create("manager2", "remote")
    office = await api.create("manager2", "office_visit", meeting_at=future(), meeting_kind="office_visit")
    walk = await api.create("manager2", "walk_in")
    site = await api.create("manager2", "site_office", received_by=api.people["site_lead"].id)
    await api.ok_step(remote["id"], "callback", "manager2", {"reached": True, "meeting_at": future()})
    await api.ok_step(
        remote["id"], "assign_designer", "manager2", {"designer_id": api.people["designer2"].id, "reason": "测试"}
    )
    # contact opens once the assistant is assigned too (T1 names both)
    s = await api.ok_step(remote["id"], "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    assert "contact" in open_steps(s)
    return {"since": since, "remote": remote, "office": office, "walk": walk, "site": site}


def ids(body: dict[str, Any]) -> list[int]:
    return [c["id"] for c in body["items"]]


async def test_list_filters(api: Api, cases: dict[str, Any]) -> None:
    h = api.h("director")  # sees every case (who sees which: tests/api/test_permissions.py)
    mine = {"manager_id": api.people["manager2"].id, "created_from": cases["since"].isoformat()}
    r = await api.http.get("/intakes", params=mine, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    all_ids = {cases[k]["id"] for k in ("remote", "office", "walk", "site")}
    assert set(ids(body)) == all_ids and body["total"] == 4
    assert ids(body) == sorted(ids(body), reverse=True)  # newest first
    item = next(c for c in body["items"] if c["id"] == cases["remote"]["id"])
    assert item["designer"] == {"id": api.people["designer2"].id, "name": "周设计"}
    assert item["manager"]["name"] == "孙经理" and item["client_name"] == "王建国"
    assert item["stage"] == "contact" and item["stage_label"] == "设计师联系客户"

    async def only(**extra: Any) -> set[int]:
        rr = await api.http.get("/intakes", params={**mine, **extra}, headers=h)
        assert rr.status_code == 200, rr.text
        return set(ids(rr.json()))

    assert await only(source="walk_in") == {cases["walk"]["id"]}
    assert await only(scenario="office_visit") == {cases["office"]["id"]}
    assert await only(stage="reception_review") == {cases["site"]["id"]}
    assert await only(designer_id=api.people["designer2"].id) == {cases["remote"]["id"]}
    assert await only(status="closed") == set()
    overdue, in_time = await only(overdue=True), await only(overdue=False)
    assert overdue.isdisjoint(in_time) and overdue | in_time == all_ids  # the filter splits, not ignores
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await only(created_from=later) == set()
    assert await only(created_to=cases["since"].isoformat()) == set()


async def test_list_pagination_offset_and_cursor(api: Api, cases: dict[str, Any]) -> None:
    h = api.h("assistant_lead")
    params = {"manager_id": api.people["manager2"].id, "created_from": cases["since"].isoformat(), "limit": 3}
    p1 = (await api.http.get("/intakes", params=params, headers=h)).json()
    assert len(p1["items"]) == 3 and p1["total"] == 4 and p1["next_cursor"]
    p2 = (await api.http.get("/intakes", params={**params, "cursor": p1["next_cursor"]}, headers=h)).json()
    assert len(p2["items"]) == 1 and p2["next_cursor"] is None
    o2 = (await api.http.get("/intakes", params={**params, "offset": 3}, headers=h)).json()
    assert ids(o2) == ids(p2)
    assert set(ids(p1)) | set(ids(p2)) == {cases[k]["id"] for k in ("remote", "office", "walk", "site")}


async def test_case_detail_from_projection_and_live(api: Api, cases: dict[str, Any]) -> None:
    cid = cases["remote"]["id"]
    proj = await api.case(cid, "assistant_lead", fresh=False)
    live = await api.case(cid, "director", fresh=True)  # a live workflow query: the manager and director only
    r = await api.http.get(f"/intakes/{cid}", params={"fresh": True}, headers=api.h("assistant_lead"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    assert proj["state_source"] == "projection" and live["state_source"] == "workflow"
    for c in (proj, live):
        assert c["stage"] == "contact"
        assert c["designer"]["id"] == api.people["designer2"].id
        contact = next(s for s in c["open_steps"] if s["step"] == "contact")
        assert contact["owner"]["id"] == api.people["designer2"].id and contact["due_at"]
        late = datetime.fromisoformat(contact["due_at"]) < datetime.now(UTC)
        assert contact["overdue"] == late or abs(
            (datetime.fromisoformat(contact["due_at"]) - datetime.now(UTC)).total_seconds()) < 2
        if not contact["overdue"]:
            assert contact["escalation_level"] == 0  # nothing escalates before its due time
        assert [m["which"] for m in c["meetings"]] == ["meeting"]
        kinds = [e["kind"] for e in c["timeline"]]
        assert kinds[0] == "created" and "designer_assigned" in kinds
        assert [e["seq"] for e in c["timeline"]] == sorted(e["seq"] for e in c["timeline"])
    # the assistant lead sees every case but works none: the phone and address are masked (SPEC §13)
    full = cases["remote"]["client"]["phone"]
    assert proj["client"]["phone"] == f"{full[:3]}****{full[-4:]}" and not proj["client"]["contact_visible"]
    assert proj["client"]["address"] != cases["remote"]["client"]["address"]
    # its designer sees them in full
    own = await api.case(cid, "designer2", fresh=False)
    assert own["client"]["phone"] == cases["remote"]["client"]["phone"] and own["client"]["contact_visible"]


async def test_my_tasks(api: Api, cases: dict[str, Any]) -> None:
    r = await api.http.get("/me/tasks", params={"limit": 200}, headers=api.h("manager2"))
    assert r.status_code == 200, r.text
    tasks = r.json()["items"]
    mine = {(t["case_id"], t["step"]) for t in tasks}
    assert (cases["office"]["id"], "callback") in mine
    assert (cases["site"]["id"], "reception_review") in mine
    assert (cases["walk"]["id"], "assign_designer") in mine
    assert (cases["remote"]["id"], "callback") not in mine  # done
    dues = [t["due_at"] for t in tasks if t["due_at"]]
    assert dues == sorted(dues)  # soonest first
    t = next(t for t in tasks if t["case_id"] == cases["site"]["id"])
    assert t["label"] == "审核接待情况" and t["case"]["client_name"] == "王建国"
    # the designer sees the contact step of their case
    r = await api.http.get("/me/tasks", headers=api.h("designer2"))
    assert (cases["remote"]["id"], "contact") in {(t["case_id"], t["step"]) for t in r.json()["items"]}
    # the assistant lead sees unowned assign_assistant steps (by role)
    r = await api.http.get("/me/tasks", params={"limit": 200}, headers=api.h("assistant_lead"))
    lead = {(t["case_id"], t["step"]) for t in r.json()["items"]}
    assert (cases["walk"]["id"], "assign_assistant") in lead
    assert all(t["owner_id"] is None for t in r.json()["items"])
    # a consultant has nothing to do
    r = await api.http.get("/me/tasks", headers=api.h("consultant"))
    assert r.json()["items"] == [] and r.json()["total"] == 0


async def test_sla_report(api: Api, cases: dict[str, Any]) -> None:
    params = {"created_from": cases["since"].isoformat(), "group_by": "manager"}
    r = await api.http.get("/reports/sla", params=params, headers=api.h("director"))
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    mine = [x for x in rows if x["group"] == str(api.people["manager2"].id)]
    callback = next(x for x in mine if x["step"] == "callback")
    assert callback["group_label"] == "孙经理" and callback["step_label"] == "经理回访"
    assert callback["done"] >= 1 and callback["on_time"] >= 1 and callback["on_time_share"] == 1.0
    assert callback["median_seconds"] is not None and callback["p90_seconds"] >= callback["median_seconds"]
    assert callback["open"] >= 1  # the office visit's callback
    for group_by in ("none", "source", "designer"):
        r = await api.http.get("/reports/sla", params={"group_by": group_by}, headers=api.h("manager"))
        assert r.status_code == 200, r.text
    by_source = (await api.http.get("/reports/sla", params={**params, "group_by": "source"}, headers=api.h("manager")))
    assert {x["group"] for x in by_source.json()["rows"]} >= {"marketing", "walk_in"}
    r = await api.http.get(
        "/reports/sla", params={"created_from": "2020-01-01T00:00:00Z", "created_to": "2024-01-01T00:00:00Z"},
        headers=api.h("manager"),
    )
    assert_error(r, 422, "invalid_period")


async def test_allocation_fairness_report(api: Api) -> None:
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()

    async def report() -> dict[int, dict[str, Any]]:
        r = await api.http.get("/reports/allocation", params={"from": since}, headers=api.h("director"))
        assert r.status_code == 200, r.text
        return {x["designer"]["id"]: x for x in r.json()["rows"]}

    case = await api.create("consultant", "remote")
    await api.ok_step(case["id"], "callback", "manager", {"reached": True, "meeting_at": future()})
    r = await api.http.get(f"/intakes/{case['id']}/designer-suggestions", headers=api.h("manager"))
    first, other = (i["staff"]["id"] for i in r.json()["items"][:2])
    before = await report()
    # the manager passes over the first suggestion, with a reason: the ledger, hence the report, shows it
    await api.ok_step(case["id"], "assign_designer", "manager", {"designer_id": other, "reason": "客户点名"})
    after = await report()

    def grew(staff_id: int, field: str) -> int:
        return int(after[staff_id][field] - before.get(staff_id, {}).get(field, 0))

    assert grew(other, "assigned") == 1 and grew(other, "chosen_over_suggestion") == 1
    assert grew(first, "passed_over") == 1 and grew(first, "assigned") == 0
    assert after[other]["open_cases"] >= 1 and after[other]["last_assigned_at"] is not None
    r = await api.http.get("/reports/allocation", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                           headers=api.h("manager"))
    assert_error(r, 422, "invalid_period")


async def test_suggestions_use_the_policy_the_case_started_with(api: Api) -> None:
    """A policy edit (here: an API restarted with another file) never changes a running case (SPEC §4)."""
    from api.app import create_app
    from domain.enums import Level
    from domain.policy import BudgetBand, fast_policy
    from tests.api.conftest import make_http

    case = await api.create("consultant", "remote", client={"budget": 300_000})
    r = await api.http.get(f"/intakes/{case['id']}/designer-suggestions", headers=api.h("manager"))
    assert r.status_code == 200 and r.json()["required_level"] == "senior", r.text  # fast policy: 300k → senior
    edited = fast_policy()
    edited.level_by_budget = [BudgetBand(min_budget=0, level=Level.chief)]
    restarted = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=edited)
    async with make_http(restarted) as http:
        r = await http.get(f"/intakes/{case['id']}/designer-suggestions", headers=api.h("manager"))
        assert r.status_code == 200 and r.json()["required_level"] == "senior", r.text
        new = await http.post("/intakes", json=api.intake_body("remote", client={"budget": 300_000}),
                              headers=api.h("consultant"))
        assert new.status_code == 201, new.text
        r = await http.get(f"/intakes/{new.json()['id']}/designer-suggestions", headers=api.h("manager"))
        assert r.json()["required_level"] == "chief"  # new cases start with the edited policy
