"""POST /intakes: validation, one open case per phone (atomically), Idempotency-Key, no client data in Temporal."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from api.idempotency import request_hash
from api.schemas import IntakeCreate
from domain.constants import workflow_id
from tests.api.conftest import Api, unique_phone
from tests.api.test_errors import assert_error


async def test_create_answers_201_with_the_case(api: Api) -> None:
    body = api.intake_body("remote", client={"phone": "+86 " + unique_phone()})
    r = await api.http.post("/intakes", json=body, headers=api.h("consultant"))
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["workflow_id"] == workflow_id(c["id"]) == f"intake-{c['id']}"
    assert c["status"] == "open" and c["stage"] == "callback" and c["stage_label"] == "经理回访"
    assert c["client"]["name"] == "王建国" and c["client"]["budget"] == 300000
    assert c["created_by"]["id"] == api.people["consultant"].id
    assert c["manager"] is not None and c["manager"]["role"] == "manager"
    assert [s["step"] for s in c["open_steps"]] == ["callback"]
    assert c["open_steps"][0]["owner_role"] == "manager" and c["open_steps"][0]["due_at"]
    assert c["state_source"] == "workflow"
    assert c["timeline"] and c["timeline"][0]["kind"] == "created"
    row = await api.pool.fetchrow("SELECT * FROM cases WHERE id = $1", c["id"])
    assert row["workflow_id"] == c["workflow_id"] and row["created_by"] == api.people["consultant"].id


@pytest.mark.parametrize(
    "raw",
    ["+86 139 {a} {b}", "0086-139-{a}-{b}", "86 139{a}{b}", " 139-{a}-{b} ", "(139) {a} {b}", "+8613 9{a}{b}"],
)
async def test_phone_is_normalised(api: Api, raw: str) -> None:
    n = uuid.uuid4().int % 10**8
    a, b = f"{n // 10**4:04d}", f"{n % 10**4:04d}"
    r = await api.http.post(
        "/intakes", json=api.intake_body(client={"phone": raw.format(a=a, b=b)}), headers=api.h("consultant")
    )
    assert r.status_code == 201, r.text
    assert r.json()["client"]["phone"] == f"139{a}{b}"


@pytest.mark.parametrize("phone", ["12812345678", "1391234567", "139123456789", "abc", "+1 415 555 0100", ""])
async def test_bad_phone_is_422(api: Api, phone: str) -> None:
    r = await api.http.post("/intakes", json=api.intake_body(client={"phone": phone}), headers=api.h("consultant"))
    body = assert_error(r, 422, "invalid_payload")
    assert any(e["loc"][-1] == "phone" for e in body["errors"])


@pytest.mark.parametrize(
    "scenario, source",
    [("walk_in", "marketing"), ("site_office", "online"), ("remote", "walk_in"), ("office_visit", "site_office")],
)
async def test_scenario_source_mismatch(api: Api, scenario: str, source: str) -> None:
    r = await api.http.post("/intakes", json=api.intake_body(scenario, source=source), headers=api.h("consultant"))
    assert_error(r, 422, "scenario_source_mismatch")


async def test_meeting_in_the_past_is_422(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = await api.http.post("/intakes", json=api.intake_body(meeting_at=past), headers=api.h("consultant"))
    assert_error(r, 422, "time_in_past")


async def test_received_by_must_be_active_and_fitting(api: Api) -> None:
    h = api.h("consultant")
    r = await api.http.post("/intakes", json=api.intake_body(received_by=999_999_999), headers=h)
    assert_error(r, 422, "invalid_assignee")
    # site office: the site lead or an on-duty designer, not a consultant
    r = await api.http.post(
        "/intakes", json=api.intake_body("site_office", received_by=api.people["consultant"].id), headers=h
    )
    assert_error(r, 422, "invalid_assignee")
    r = await api.http.post(
        "/intakes", json=api.intake_body("site_office", received_by=api.people["site_lead"].id), headers=h
    )
    assert r.status_code == 201, r.text
    assert r.json()["received_by"]["id"] == api.people["site_lead"].id


@pytest.mark.parametrize("who", ["director", "admin", "assistant_lead"])
async def test_roles_that_cannot_create(api: Api, who: str) -> None:
    assert_error(await api.http.post("/intakes", json=api.intake_body(), headers=api.h(who)), 403, "wrong_role")


async def test_second_open_case_for_a_phone_is_409_naming_it(api: Api) -> None:
    first = await api.create()
    phone = first["client"]["phone"]
    again = api.intake_body("walk_in", client={"phone": f"+86 {phone[:3]}-{phone[3:7]}-{phone[7:]}"})
    # who may see the open case is told which one it is
    body = assert_error(await api.http.post("/intakes", json=again, headers=api.h("consultant")), 409,
                        "duplicate_open_case")
    assert body["case_id"] == first["id"]
    # a designer not on it learns only that the client is being served (SPEC §13: existence by need)
    r = await api.http.post("/intakes", json=again, headers=api.h("designer"))
    body = assert_error(r, 409, "duplicate_open_case")
    assert "case_id" not in body and str(first["id"]) not in r.text
    # once closed, the phone can open a new case
    r = await api.http.post(
        f"/intakes/{first['id']}/close", json={"outcome": "duplicate"}, headers=api.h("manager")
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"
    # a closed case takes no more actions
    r = await api.step(first["id"], "callback", "manager", {"reached": False})
    assert_error(r, 409, "case_closed")
    r = await api.http.post(f"/intakes/{first['id']}/notes", json={"text": "还在吗"}, headers=api.h("manager"))
    assert_error(r, 409, "case_closed")
    second = await api.create(client={"phone": phone})
    assert second["id"] != first["id"]


async def test_twenty_concurrent_creations_for_one_phone_give_one_case(api: Api) -> None:
    phone = unique_phone()
    bodies = [api.intake_body(client={"phone": phone}) for _ in range(20)]
    rs = await asyncio.gather(
        *(api.http.post("/intakes", json=b, headers=api.h("consultant")) for b in bodies)
    )
    codes = sorted(r.status_code for r in rs)
    assert codes == [201] + [409] * 19, [(r.status_code, r.text[:200]) for r in rs]
    created = next(r.json() for r in rs if r.status_code == 201)
    assert all(r.json()["case_id"] == created["id"] for r in rs if r.status_code == 409)
    assert await api.pool.fetchval("SELECT count(*) FROM cases WHERE client_phone = $1", phone) == 1
    desc = await api.client.get_workflow_handle(created["workflow_id"]).describe()
    assert desc.status is not None and desc.status.name == "RUNNING"


async def test_idempotency_key_replays_the_first_answer(api: Api) -> None:
    key = uuid.uuid4().hex
    body = api.intake_body()
    h = {**api.h("consultant"), "Idempotency-Key": key}
    r1 = await api.http.post("/intakes", json=body, headers=h)
    assert r1.status_code == 201, r1.text
    r2 = await api.http.post("/intakes", json=body, headers=h)
    assert r2.status_code == 201 and r2.headers.get("idempotent-replayed") == "true"
    assert r2.json() == r1.json()
    assert await api.pool.fetchval("SELECT count(*) FROM cases WHERE client_phone = $1", body["client"]["phone"]) == 1
    # the case committed but its answer not stored (a crash in between): the replay rebuilds it
    await api.pool.execute(
        "UPDATE idempotency_keys SET response = $3 WHERE staff_id = $1 AND key = $2",
        api.people["consultant"].id, key, {"case_id": r1.json()["id"], "partial": True},
    )
    r2b = await api.http.post("/intakes", json=body, headers=h)
    assert r2b.status_code == 201 and r2b.json()["id"] == r1.json()["id"], r2b.text
    assert r2b.json()["client"] == r1.json()["client"]
    # same key, another request: refused
    other = api.intake_body()
    assert_error(await api.http.post("/intakes", json=other, headers=h), 422, "idempotency_key_reused")
    # keys are per staff member: another person's same key is a new request
    r3 = await api.http.post("/intakes", json=other, headers={**api.h("site_lead"), "Idempotency-Key": key})
    assert r3.status_code == 201, r3.text


async def test_idempotency_concurrent_same_key_one_case(api: Api) -> None:
    key = uuid.uuid4().hex
    body = api.intake_body()
    h = {**api.h("consultant"), "Idempotency-Key": key}
    rs = await asyncio.gather(*(api.http.post("/intakes", json=body, headers=h) for _ in range(5)))
    assert all(r.status_code == 201 for r in rs), [(r.status_code, r.text[:200]) for r in rs]
    assert len({r.json()["id"] for r in rs}) == 1


async def test_idempotency_replays_a_409(api: Api) -> None:
    first = await api.create()
    key = uuid.uuid4().hex
    body = api.intake_body(client={"phone": first["client"]["phone"]})
    h = {**api.h("consultant"), "Idempotency-Key": key}
    b1 = assert_error(await api.http.post("/intakes", json=body, headers=h), 409, "duplicate_open_case")
    r2 = await api.http.post("/intakes", json=body, headers=h)
    assert r2.status_code == 409 and r2.json() == b1 and r2.headers.get("idempotent-replayed") == "true"


async def test_no_client_data_in_temporal(api: Api) -> None:
    name = f"欧阳{uuid.uuid4().hex[:4]}"
    address = f"幸福里{uuid.uuid4().hex[:4]}号"
    c = await api.create(client={"name": name, "address": address})
    phone = c["client"]["phone"]
    handle = api.client.get_workflow_handle(c["workflow_id"])
    desc = await handle.describe()
    sa = {k.name: v for k, v in ((p.key, p.value) for p in desc.typed_search_attributes)}
    assert sa["IntakeSource"] == "marketing" and sa["IntakeScenario"] == "remote"
    for v in sa.values():
        assert phone not in str(v) and name not in str(v)
    assert phone not in c["workflow_id"]
    history = (await handle.fetch_history()).to_json()
    for secret in (phone, name, address):
        assert secret not in history
        assert secret.encode("unicode_escape").decode() not in history


async def test_idempotency_in_progress(api: Api) -> None:
    """A key whose first request has not finished (no answer stored yet) answers 409, not a second case."""
    key = uuid.uuid4().hex
    body = api.intake_body()
    await api.pool.execute(
        "INSERT INTO idempotency_keys (staff_id, key, request_hash) VALUES ($1, $2, $3)",
        api.people["consultant"].id, key, request_hash(IntakeCreate.model_validate(body).model_dump_json()),
    )
    r = await api.http.post("/intakes", json=body, headers={**api.h("consultant"), "Idempotency-Key": key})
    assert_error(r, 409, "idempotency_in_progress")
