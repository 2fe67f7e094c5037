"""SPEC §12 through the API: client data by need, the record of phone reads, access that ends
(expiry, revocation, leave, left; CLI and admin API), and path ids that cannot name a case."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cli import build_parser
from config import Settings
from domain.enums import Role
from store.staff import StaffRepository
from tests.api.conftest import Api, future, open_steps, unique_phone
from tests.api.test_errors import assert_error


def masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


async def _case_with_sms(api: Api) -> dict[str, Any]:
    """A remote case created by the consultant, worked by designer/assistant, with T1 sent to the client."""
    c = await api.create("consultant", "remote")
    cid = c["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": future(), "meeting_kind": "measure"})
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": api.people["designer"].id, "reason": "安全测试"})
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    assert "contact" in open_steps(s)
    await api.ok_step(cid, "contact", "designer", {"meeting_at": future(), "meeting_kind": "measure"})

    async def t1() -> Any:
        r = await api.http.get(f"/intakes/{cid}/messages", headers=api.h("manager"))
        return [m for m in r.json()["items"] if m["purpose"] == "T1"]

    await api.until(t1, what="T1 recorded")
    return c


async def test_messages_show_the_recipient_by_need(api: Api) -> None:
    c = await _case_with_sms(api)
    phone = c["client"]["phone"]
    # the consultant typed the lead in: the case stays theirs to read, the contact details no longer
    for who, full in (("designer", True), ("assistant", True), ("manager", True), ("consultant", False),
                      ("assistant_lead", False)):
        r = await api.http.get(f"/intakes/{c['id']}/messages", headers=api.h(who))
        assert r.status_code == 200, r.text
        sms = r.json()["items"]
        assert sms and all(m["recipient"] == (phone if full else masked(phone)) for m in sms), who
        if not full:
            assert phone not in r.text
    for who in ("designer2", "assistant2", "site_lead", "admin"):  # not tied to the case: it does not exist
        r = await api.http.get(f"/intakes/{c['id']}/messages", headers=api.h(who))
        assert r.status_code == 404 and phone not in r.text, who


async def test_full_phone_reads_are_recorded_and_listed(api: Api) -> None:
    c = await api.create("consultant", "remote")
    cid = c["id"]
    await api.http.get(f"/intakes/{cid}", headers=api.h("director"), params={"fresh": False})
    await api.http.get(f"/intakes/{cid}", headers=api.h("assistant_lead"), params={"fresh": False})  # masked
    r = await api.http.get(
        "/audit/phone-reads", params={"case_id": cid}, headers={**api.h("manager"), "X-Request-ID": "audit-1"}
    )
    assert r.status_code == 200, r.text
    reads = r.json()["items"]
    who = {(x["staff"]["id"], x["route"]) for x in reads}
    assert (api.people["consultant"].id, "POST /intakes") in who  # the creator's answer carried it
    assert (api.people["director"].id, "GET /intakes/{case_id}") in who
    assert all(x["staff"]["id"] != api.people["assistant_lead"].id for x in reads)  # masked: nothing read
    assert all(x["case_id"] == cid and x["at"] for x in reads)
    by_director = await api.http.get(
        "/audit/phone-reads", params={"staff_id": api.people["director"].id}, headers=api.h("director")
    )
    assert any(x["case_id"] == cid for x in by_director.json()["items"])
    assert_error(await api.http.get("/audit/phone-reads", headers=api.h("designer")), 403, "wrong_role")


async def test_notices_to_staff_carry_no_client_phone(api: Api) -> None:
    c = await _case_with_sms(api)
    texts = await api.pool.fetch("SELECT text FROM outbox WHERE case_id = $1 AND channel <> 'sms'", c["id"])
    assert texts and all(c["client"]["phone"] not in t["text"] for t in texts)


# --- access that ends ----------------------------------------------------------------------------


async def _person(api: Api, role: Role = Role.consultant) -> tuple[int, str]:
    repo = StaffRepository(api.pool)
    s = await repo.add(name="临时员工", phone=unique_phone(), role=role)
    return s.id, await repo.issue_token(staff_id=s.id, label="test", ttl_days=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_expired_token_is_401(api: Api) -> None:
    sid, token = await _person(api)
    assert (await api.http.get("/me/tasks", headers=bearer(token))).status_code == 200
    await api.pool.execute(
        "UPDATE staff_tokens SET expires_at = now() - interval '1 second' WHERE staff_id = $1", sid
    )
    assert_error(await api.http.get("/me/tasks", headers=bearer(token)), 401, "invalid_token")
    # a token older than INTAKE_TOKEN_TTL_DAYS is expired too, whatever its own expiry says
    sid2, token2 = await _person(api)
    await api.pool.execute(
        "UPDATE staff_tokens SET expires_at = NULL, created_at = now() - $2::float8 * interval '1 day'"
        " WHERE staff_id = $1",
        sid2,
        api.settings.token_ttl_days + 1,
    )
    assert_error(await api.http.get("/me/tasks", headers=bearer(token2)), 401, "invalid_token")


def run_cli(settings: Settings, *argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args, settings) or 0)


async def test_cli_revoke_and_edit(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url=api.settings.database_url)
    sid, token = await _person(api, Role.assistant)
    assert (await api.http.get("/me/tasks", headers=bearer(token))).status_code == 200
    assert await asyncio.to_thread(run_cli, settings, "staff", "revoke", str(sid)) == 0
    assert "revoked 1 token" in capsys.readouterr().out
    assert_error(await api.http.get("/me/tasks", headers=bearer(token)), 401, "invalid_token")

    # edit: role, level, communities, schedule, capacity, then leave and left
    code = await asyncio.to_thread(
        run_cli, settings, "staff", "edit", str(sid), "--role", "designer", "--level", "junior",
        "--communities", "阳光花园,滨江一号", "--office-hours", "0-4=09:00-18:00", "--max-open-cases", "3",
    )
    assert code == 0
    s = await StaffRepository(api.pool).get(staff_id=sid)
    assert s is not None and s.role == Role.designer and s.level is not None and s.level.value == "junior"
    assert s.communities == ["阳光花园", "滨江一号"] and s.max_open_cases == 3 and set(s.office_schedule) == {0, 1, 2, 3, 4}
    token2 = await StaffRepository(api.pool).issue_token(staff_id=sid, ttl_days=1)
    assert await asyncio.to_thread(run_cli, settings, "staff", "edit", str(sid), "--status", "leave") == 0
    assert (await api.http.get("/me/tasks", headers=bearer(token2))).status_code == 200  # on leave: still signs in
    assert await asyncio.to_thread(run_cli, settings, "staff", "edit", str(sid), "--status", "left") == 0
    assert_error(await api.http.get("/me/tasks", headers=bearer(token2)), 401, "invalid_token")
    # back again: the old token stays revoked
    assert await asyncio.to_thread(run_cli, settings, "staff", "edit", str(sid), "--status", "active") == 0
    assert_error(await api.http.get("/me/tasks", headers=bearer(token2)), 401, "invalid_token")


async def test_admin_manages_staff_through_the_api(api: Api) -> None:
    h = api.h("admin")
    r = await api.http.post(
        "/staff",
        json={"name": "新设计师", "phone": unique_phone(), "role": "designer", "level": "designer",
              "communities": ["阳光花园"], "office_schedule": {"0": ["09:00-18:00"]}, "max_open_cases": 5},
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert "token" not in r.json()  # no admin alone gets a working credential (two-person rule)
    sid = r.json()["staff"]["id"]
    token = await StaffRepository(api.pool).issue_token(staff_id=sid)
    r = await api.http.patch(f"/staff/{sid}", json={"level": "senior", "max_open_cases": None}, headers=h)
    assert r.status_code == 200 and r.json()["level"] == "senior" and r.json()["max_open_cases"] is None, r.text
    r = await api.http.patch(f"/staff/{sid}", json={"status": "on_leave"}, headers=h)
    assert r.json()["status"] == "on_leave"
    # on leave: never suggested for a new case
    c = await api.create("consultant", "remote")
    sug = await api.http.get(f"/intakes/{c['id']}/designer-suggestions", headers=api.h("manager"))
    assert sid not in {s["staff"]["id"] for s in sug.json()["items"]}
    assert_error(
        await api.http.patch(f"/staff/{sid}", json={"level": "wizard"}, headers=h), 422, "invalid_payload"
    )
    r = await api.http.post(f"/staff/{sid}/revoke", headers=h)
    assert r.json() == {"staff_id": sid, "revoked": 1}
    assert_error(await api.http.get("/me/tasks", headers=bearer(token)), 401, "invalid_token")
    r = await api.http.post(f"/staff/{sid}/tokens", headers=h)
    assert r.status_code == 202 and "token" not in r.json()  # a request, approved by a second admin
    token = await StaffRepository(api.pool).issue_token(staff_id=sid)
    await api.http.patch(f"/staff/{sid}", json={"status": "inactive"}, headers=h)
    assert_error(await api.http.get("/me/tasks", headers=bearer(token)), 401, "invalid_token")
    assert_error(await api.http.get("/staff", headers=api.h("manager")), 403, "wrong_role")
    assert_error(await api.http.get("/staff/abc", headers=h), 404, "staff_not_found")


# --- ids that cannot name a case -------------------------------------------------------------------

CASE_ROUTES = [
    ("GET", "/intakes/{id}", None),
    ("GET", "/intakes/{id}/messages", None),
    ("GET", "/intakes/{id}/designer-suggestions", None),
    ("POST", "/intakes/{id}/steps/callback", {"reached": False}),
    ("POST", "/intakes/{id}/steps/contact", {"meeting_at": "2030-05-01T10:00:00+08:00", "meeting_kind": "measure"}),
    ("POST", "/intakes/{id}/steps/no_such_step", {}),
    ("POST", "/intakes/{id}/reschedule", {"target": "measure", "at": "2030-05-01T10:00:00+08:00"}),
    ("POST", "/intakes/{id}/reassign", {"role": "designer", "staff_id": 1, "reason": "测试"}),
    ("POST", "/intakes/{id}/close", {"outcome": "duplicate"}),
    ("POST", "/intakes/{id}/notes", {"text": "备注"}),
]


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "99999999999999999999", "999999999999", "%20"])
async def test_a_path_id_that_cannot_name_a_case_is_404(api: Api, bad: str) -> None:
    for method, path, body in CASE_ROUTES:
        # a role each route admits (a wrong role is answered first, whatever the id)
        who = "designer" if path.endswith("/contact") else "manager"
        r = await api.http.request(method, path.format(id=bad), json=body, headers=api.h(who))
        assert r.status_code == 404, f"{method} {path} {bad}: {r.status_code} {r.text}"
        # an unknown step of a well-formed id says which steps exist; still a 404
        codes = ("case_not_found", "unknown_step") if "no_such_step" in path and bad.isdigit() else ("case_not_found",)
        assert r.json()["code"] in codes, f"{method} {path} {bad}: {r.text}"
