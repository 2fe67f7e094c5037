"""Two branches (分公司) side by side in one stack, through HTTP: each sees only its own cases and
designers; a case's branch, manager and suggestions at creation; a transfer with its ledger row, its open
steps handed to the new branch's people; the `Branch` search attribute (issue 22)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from cli import main
from domain.constants import workflow_id
from domain.enums import Level, Role
from store.branches import MAIN_BRANCH_ID, Branch, BranchRepository
from store.staff import StaffRepository
from tests.api.conftest import Api, Person, future, open_steps, unique_phone


@dataclass
class Chain:
    """A second branch and its people, beside branch 1 (the API tests' people)."""

    branch: Branch
    people: dict[str, Person]


# key -> (name, role, level)
HZ_PEOPLE: dict[str, tuple[str, Role, Level | None]] = {
    "manager": ("杭经理", Role.manager, None),
    "designer": ("杭设计", Role.designer, Level.senior),
    "assistant": ("杭助理", Role.assistant, None),
    "assistant_lead": ("杭主管", Role.assistant_lead, None),
    "consultant": ("杭顾问", Role.consultant, None),
    "site_lead": ("杭店长", Role.site_lead, None),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chain(api: Api) -> Chain:
    """Branch `hz-…` with a manager, designer, assistant, assistant lead, consultant and site lead; and a
    regional manager whose home is branch 1 and who covers it too."""
    branch = await BranchRepository(api.pool).create(code=f"hz-{uuid.uuid4().hex[:8]}", name="杭州分公司", city="杭州")
    repo = StaffRepository(api.pool)
    out: dict[str, Person] = {}
    for key, (name, role, level) in HZ_PEOPLE.items():
        s = await repo.add(name=name, phone=unique_phone(), role=role, level=level, branch_id=branch.id)
        token = await repo.issue_token(staff_id=s.id, label="branch tests")
        out[key] = Person(key=key, id=s.id, name=name, role=role, token=token, level=level)
    s = await repo.add(name="区域经理", phone=unique_phone(), role=Role.manager, branch_id=MAIN_BRANCH_ID,
                       extra_branches=[branch.id])
    out["regional"] = Person(key="regional", id=s.id, name=s.name, role=Role.manager,
                             token=await repo.issue_token(staff_id=s.id, label="branch tests"))
    return Chain(branch=branch, people=out)


def hz(chain: Chain, key: str) -> dict[str, str]:
    """Headers of a person of the second branch."""
    return chain.people[key].headers


async def create_as(api: Api, headers: dict[str, str], scenario: str = "remote", **over: Any) -> dict[str, Any]:
    """Create a case as whoever `headers` name; the 201 body."""
    r = await api.http.post("/intakes", json=api.intake_body(scenario, **over), headers=headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def listed(api: Api, headers: dict[str, str]) -> set[int]:
    """The case ids a person's list shows (the newest 200)."""
    r = await api.http.get("/intakes", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {c["id"] for c in r.json()["items"]}


async def tasks(api: Api, headers: dict[str, str]) -> set[tuple[int, str]]:
    """(case, step) of a person's open tasks."""
    r = await api.http.get("/me/tasks", params={"limit": 200}, headers=headers)
    assert r.status_code == 200, r.text
    return {(t["case_id"], t["step"]) for t in r.json()["items"]}


async def test_each_branch_sees_only_its_own_cases_and_designers(api: Api, chain: Chain) -> None:
    main_case = await api.create("consultant", "remote")
    hz_case = await create_as(api, hz(chain, "consultant"), "remote")
    # the case belongs to the branch of whoever typed the lead in; its manager is that branch's
    assert main_case["branch"]["id"] == MAIN_BRANCH_ID
    assert hz_case["branch"] == {"id": chain.branch.id, "code": chain.branch.code, "name": "杭州分公司"}
    assert hz_case["manager"]["id"] == chain.people["manager"].id
    assert main_case["manager"]["id"] != chain.people["manager"].id

    # each branch's manager: the other branch's case does not exist for them (404), nor in their list
    r = await api.http.get(f"/intakes/{hz_case['id']}", headers=api.h("manager"))
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    r = await api.http.get(f"/intakes/{main_case['id']}", headers=hz(chain, "manager"))
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    assert hz_case["id"] not in await listed(api, api.h("manager"))
    mine = await listed(api, hz(chain, "manager"))
    assert hz_case["id"] in mine and main_case["id"] not in mine
    # messages and recordings of the other branch's case: 404 as well
    for path in ("messages", "recordings"):
        r = await api.http.get(f"/intakes/{main_case['id']}/{path}", headers=hz(chain, "manager"))
        assert r.status_code == 404, (path, r.text)
    # the director (head office) and the regional manager see both
    for headers in (api.h("director"), hz(chain, "regional")):
        seen = await listed(api, headers)
        assert {main_case["id"], hz_case["id"]} <= seen
    # tasks: the callback waits for the case's own branch's managers only
    assert (hz_case["id"], "callback") in await tasks(api, hz(chain, "manager"))
    assert (hz_case["id"], "callback") not in await tasks(api, api.h("manager"))
    assert (main_case["id"], "callback") not in await tasks(api, hz(chain, "manager"))

    # designer suggestions come from the case's branch
    r = await api.http.get(f"/intakes/{hz_case['id']}/designer-suggestions", params={"include_ineligible": True},
                           headers=hz(chain, "manager"))
    assert r.status_code == 200, r.text
    suggested = {s["staff"]["id"] for s in r.json()["items"]}
    assert suggested == {chain.people["designer"].id}
    r = await api.http.get(f"/intakes/{main_case['id']}/designer-suggestions", params={"include_ineligible": True},
                           headers=api.h("manager"))
    assert chain.people["designer"].id not in {s["staff"]["id"] for s in r.json()["items"]}
    assert api.people["designer"].id in {s["staff"]["id"] for s in r.json()["items"]}
    # ... and a designer of the other branch cannot be assigned (422, nothing changed)
    r = await api.step(hz_case["id"], "callback", "manager", {"reached": True})
    assert r.status_code == 404  # branch 1's manager does not even know the case
    r = await api.http.post(f"/intakes/{hz_case['id']}/steps/callback", headers=hz(chain, "manager"),
                            json={"reached": True, "meeting_at": future(), "meeting_kind": "measure",
                                  "designer_id": api.people["designer"].id, "reason": "试试总店的设计师"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_assignee", r.text
    # with its own designer: the assistant lead told to assign an assistant is the branch's own
    r = await api.http.post(f"/intakes/{hz_case['id']}/steps/callback", headers=hz(chain, "manager"),
                            json={"reached": True, "meeting_at": future(), "meeting_kind": "measure",
                                  "designer_id": chain.people["designer"].id})
    assert r.status_code == 200 and open_steps(r.json()) == {"assign_assistant"}, r.text
    told = await api.notice(hz_case["id"], "open:assign_assistant", who="director")
    assert told["recipient_id"] == chain.people["assistant_lead"].id
    assert (hz_case["id"], "assign_assistant") in await tasks(api, hz(chain, "assistant_lead"))
    assert (hz_case["id"], "assign_assistant") not in await tasks(api, api.h("assistant_lead"))

    # the duplicate answer does not say where the other branch's client is served
    phone = await api.pool.fetchval("SELECT client_phone FROM cases WHERE id = $1", hz_case["id"])
    r = await api.http.post("/intakes", headers=api.h("consultant"), json=api.intake_body(
        "remote", client={"phone": phone}))
    assert r.status_code == 409 and r.json()["code"] == "duplicate_open_case", r.text
    assert "case_id" not in r.json() and str(hz_case["id"]) not in r.json()["message"]


async def test_creation_picks_the_branch(api: Api, chain: Chain) -> None:
    # branch staff create in their own branch only: naming another is refused (422), nothing created
    r = await api.http.post("/intakes", headers=hz(chain, "consultant"),
                            json=api.intake_body("remote", branch_id=MAIN_BRANCH_ID))
    assert r.status_code == 422 and r.json()["code"] == "branch_not_allowed", r.text
    r = await api.http.post("/intakes", headers=api.h("consultant"), json=api.intake_body("remote", branch_id=999_999))
    assert r.status_code == 422 and r.json()["code"] == "invalid_branch", r.text
    # the regional manager chooses among the branches they cover: the branch's own manager manages it
    c = await create_as(api, hz(chain, "regional"), "remote", branch_id=chain.branch.id)
    assert c["branch"]["code"] == chain.branch.code and c["manager"]["id"] == chain.people["manager"].id
    # created by a branch-1 manager in their own branch: theirs
    c = await create_as(api, hz(chain, "regional"), "remote")
    assert c["branch"]["id"] == MAIN_BRANCH_ID and c["manager"]["id"] == chain.people["regional"].id
    # a compound office of the second branch: its site lead's branch
    c = await create_as(api, hz(chain, "site_lead"), "site_office")
    assert c["branch"]["id"] == chain.branch.id and c["received_by"]["id"] == chain.people["site_lead"].id
    # a receiver of another branch than the case's: refused
    r = await api.http.post("/intakes", headers=hz(chain, "regional"), json=api.intake_body(
        "site_office", branch_id=MAIN_BRANCH_ID, received_by=chain.people["site_lead"].id))
    assert r.status_code == 422 and r.json()["code"] == "invalid_assignee", r.text


async def test_transfer_moves_the_case_with_its_ledger_row_and_open_steps(api: Api, chain: Chain) -> None:
    c = await api.create("consultant", "remote")
    cid = c["id"]
    meet = future()
    s = await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure",
                                                      "designer_id": api.people["designer"].id, "reason": "客户点名"})
    assert s["designer"]["id"] == api.people["designer"].id and open_steps(s) == {"assign_assistant"}
    body = {"branch": chain.branch.code, "reason": "客户搬到杭州，由杭州分公司跟进"}

    # a branch's own manager cannot move a case out of it; a bad branch or no reason is refused
    r = await api.http.post(f"/intakes/{cid}/transfer", json=body, headers=api.h("manager"))
    assert r.status_code == 403 and r.json()["code"] == "branch_not_allowed", r.text
    r = await api.http.post(f"/intakes/{cid}/transfer", json={**body, "branch": "no-such"}, headers=api.h("director"))
    assert r.status_code == 422 and r.json()["code"] == "invalid_branch", r.text
    r = await api.http.post(f"/intakes/{cid}/transfer", json={**body, "reason": ""}, headers=api.h("director"))
    assert r.status_code == 422, r.text
    r = await api.http.post(f"/intakes/{cid}/transfer", json={**body, "branch": "main"}, headers=api.h("director"))
    assert r.status_code == 409 and r.json()["code"] == "same_branch", r.text

    # the director moves it: the new branch's manager and (by rotation) designer take over
    r = await api.http.post(f"/intakes/{cid}/transfer", json=body, headers=api.h("director"))
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["branch"]["id"] == chain.branch.id
    assert moved["manager"]["id"] == chain.people["manager"].id
    assert moved["designer"]["id"] == chain.people["designer"].id
    assert "transferred" in {e["kind"] for e in moved["timeline"]}

    # the ledger row
    row = await api.pool.fetchrow("SELECT * FROM case_transfers WHERE case_id = $1", cid)
    assert row is not None and row["from_branch_id"] == MAIN_BRANCH_ID and row["to_branch_id"] == chain.branch.id
    assert row["decided_by"] == api.people["director"].id and row["reason"] == body["reason"]
    assert await api.pool.fetchval("SELECT branch_id FROM cases WHERE id = $1", cid) == chain.branch.id

    # the old branch no longer sees it; the new branch's people do, and its open step is theirs
    r = await api.http.get(f"/intakes/{cid}", headers=api.h("manager"))
    assert r.status_code == 404
    r = await api.http.get(f"/intakes/{cid}", headers=api.h("designer"))
    assert r.status_code == 404  # its former designer, in another branch
    assert cid in await listed(api, hz(chain, "manager"))
    assert (cid, "assign_assistant") in await tasks(api, hz(chain, "assistant_lead"))
    assert (cid, "assign_assistant") not in await tasks(api, api.h("assistant_lead"))
    # the new branch's manager is told, the new designer hears of the case
    told = await api.notice(cid, "transfer:", who="director")
    assert told["recipient_id"] == chain.people["manager"].id and "杭州分公司" in told["text"]
    await api.notice(cid, f"assigned:designer:{chain.people['designer'].id}", who="director")
    # an assistant of the new branch is assigned by its assistant lead; one of the old branch is not
    r = await api.http.post(f"/intakes/{cid}/steps/assign_assistant", headers=hz(chain, "assistant_lead"),
                            json={"assistant_id": api.people["assistant"].id})
    assert r.status_code == 422 and r.json()["code"] == "invalid_assignee", r.text
    r = await api.http.post(f"/intakes/{cid}/steps/assign_assistant", headers=hz(chain, "assistant_lead"),
                            json={"assistant_id": chain.people["assistant"].id})
    assert r.status_code == 200 and open_steps(r.json()) == {"contact"}, r.text
    assert (cid, "contact") in await tasks(api, hz(chain, "designer"))

    # the Branch search attribute follows the case: operators list one branch's cases by it
    async def in_branch() -> bool:
        query = f'Branch = "{chain.branch.code}" AND WorkflowId = "{workflow_id(cid)}"'
        return bool([w async for w in api.client.list_workflows(query)])

    await api.until(in_branch, what="Branch search attribute after the transfer")


async def test_a_regional_manager_transfers_between_the_branches_they_cover(api: Api, chain: Chain) -> None:
    c = await create_as(api, hz(chain, "consultant"), "remote")

    async def started_in_branch() -> bool:
        query = f'Branch = "{chain.branch.code}" AND WorkflowId = "{workflow_id(c["id"])}"'
        return bool([w async for w in api.client.list_workflows(query)])

    await api.until(started_in_branch, what="Branch set at start")
    r = await api.http.post(f"/intakes/{c['id']}/transfer", headers=hz(chain, "regional"),
                            json={"branch": "main", "reason": "客户回到总店所在城市"})
    assert r.status_code == 200, r.text
    assert r.json()["branch"]["id"] == MAIN_BRANCH_ID and r.json()["manager"]["id"] != chain.people["manager"].id
    assert open_steps(r.json()) == {"callback"}
    # the callback is now branch 1's manager's
    assert r.json()["open_steps"][0]["owner"]["id"] == r.json()["manager"]["id"]
    assert (c["id"], "callback") not in await tasks(api, hz(chain, "manager"))


async def test_staff_in_branches_through_the_admin_api_and_the_cli(
    api: Api, chain: Chain, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    r = await api.http.post("/staff", headers=api.h("admin"), json={
        "name": "杭新人", "phone": unique_phone(), "role": "designer", "level": "junior", "branch": chain.branch.code})
    assert r.status_code == 201, r.text
    staff = r.json()["staff"]
    assert staff["branch"] == chain.branch.code and staff["extra_branches"] == []
    r = await api.http.patch(f"/staff/{staff['id']}", headers=api.h("admin"), json={"branch": "main",
                                                                                      "extra_branches": [chain.branch.code]})
    assert r.status_code == 200, r.text
    assert r.json()["branch"] == "main" and r.json()["extra_branches"] == [chain.branch.code]
    r = await api.http.patch(f"/staff/{staff['id']}", headers=api.h("admin"), json={"branch": "nowhere"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_branch", r.text

    # the command line: --branch and --extra-branches by code; an unknown code changes nothing
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    from config import get_settings

    get_settings.cache_clear()
    try:
        phone = unique_phone()
        assert await asyncio.to_thread(main, ["staff", "add", "--role", "consultant", "--name", "杭顾问二",
                                              "--phone", phone, "--branch", chain.branch.code]) == 0
        added = await api.pool.fetchval("SELECT id FROM staff WHERE phone = $1", phone)
        person = await StaffRepository(api.pool).get(staff_id=added)
        assert person is not None and person.branch_id == chain.branch.id
        assert await asyncio.to_thread(main, ["staff", "edit", str(added), "--branch", "nowhere"]) != 0
        assert "nowhere" in capsys.readouterr().err
        assert await asyncio.to_thread(main, ["staff", "edit", str(added), "--branch", "main",
                                              "--extra-branches", chain.branch.code]) == 0
        person = await StaffRepository(api.pool).get(staff_id=added)
        assert person is not None and (person.branch_id, person.extra_branches) == (MAIN_BRANCH_ID, [chain.branch.id])
    finally:
        get_settings.cache_clear()
