"""Admins leave a trace (issue 14): no admin alone gets a working credential of someone else — a second
admin approves, the sign-in link is recorded with both names; nobody approves their own request or a
credential for themself; nobody changes their own role; the audit lists who issued what (API and CLI)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cli import main
from domain.enums import Role
from store.staff import StaffRepository
from tests.api.conftest import Api, unique_phone
from tests.api.test_errors import assert_error


async def _second_admin(api: Api) -> dict[str, str]:
    repo = StaffRepository(api.pool)
    s = await repo.add(name="第二管理员", phone=unique_phone(), role=Role.admin)
    return {"Authorization": f"Bearer {await repo.issue_token(staff_id=s.id)}"}


async def test_an_admin_alone_gets_no_working_credential(api: Api) -> None:
    admin = api.h("admin")
    target = api.people["designer"]
    before = await api.pool.fetchval("SELECT count(*) FROM staff_tokens WHERE staff_id = $1", target.id)
    r = await api.http.post(f"/staff/{target.id}/tokens", headers=admin)
    assert r.status_code == 202, r.text
    req = r.json()
    assert "token" not in req and "sign_in_url" not in req and req["requested_by"] == api.people["admin"].id
    # nothing usable exists yet
    assert await api.pool.fetchval("SELECT count(*) FROM staff_tokens WHERE staff_id = $1", target.id) == before
    # the asking admin cannot approve, nor can anyone but an admin
    url = f"/staff/credential-requests/{req['id']}/approve"
    assert_error(await api.http.post(url, headers=admin), 403, "same_person")
    assert_error(await api.http.post(url, headers=api.h("manager")), 403, "wrong_role")
    # a second admin approves: a one-time sign-in link, recorded with both names
    second = await _second_admin(api)
    r = await api.http.post(url, headers=second)
    assert r.status_code == 201, r.text
    link = r.json()["sign_in_url"]
    assert "/console/login/" in link
    assert_error(await api.http.post(url, headers=second), 409, "request_used")  # once
    code = link.rsplit("/", 1)[-1]
    page = await api.http.get(f"/console/login/{code}")
    assert page.status_code == 200 and target.name in page.text
    row = await api.pool.fetchrow(
        "SELECT issued_by, approved_by, issued_via FROM console_links WHERE staff_id = $1 ORDER BY id DESC LIMIT 1",
        target.id)
    assert row["issued_by"] == api.people["admin"].id and row["approved_by"] is not None
    assert row["approved_by"] != row["issued_by"] and row["issued_via"] == "api:two-person"


async def test_nobody_asks_for_or_approves_their_own_credential_nor_changes_their_own_role(api: Api) -> None:
    me = api.people["admin"]
    assert_error(await api.http.post(f"/staff/{me.id}/tokens", headers=api.h("admin")), 403, "own_credential")
    assert_error(await api.http.patch(f"/staff/{me.id}", json={"role": "manager"}, headers=api.h("admin")),
                 403, "own_role")
    # a request for the second admin, approved by that same admin: refused
    repo = StaffRepository(api.pool)
    s = await repo.add(name="第三管理员", phone=unique_phone(), role=Role.admin)
    own = {"Authorization": f"Bearer {await repo.issue_token(staff_id=s.id)}"}
    r = await api.http.post(f"/staff/{s.id}/tokens", headers=api.h("admin"))
    assert_error(await api.http.post(f"/staff/credential-requests/{r.json()['id']}/approve", headers=own),
                 403, "own_credential")


async def test_adding_a_person_asks_for_their_first_link(api: Api) -> None:
    r = await api.http.post("/staff", json={"name": "新顾问", "phone": unique_phone(), "role": "consultant"},
                            headers=api.h("admin"))
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert "token" not in body and body["credential_request"]["approved_by"] is None
    assert await api.pool.fetchval("SELECT count(*) FROM staff_tokens WHERE staff_id = $1", body["staff"]["id"]) == 0


async def test_the_audit_lists_who_issued_what(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = api.people["assistant"]
    req = (await api.http.post(f"/staff/{target.id}/tokens", headers=api.h("admin"))).json()
    second = await _second_admin(api)
    assert (await api.http.post(f"/staff/credential-requests/{req['id']}/approve", headers=second)).status_code == 201
    r = await api.http.get("/audit/credentials", params={"staff_id": target.id}, headers=api.h("manager"))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    link = next(i for i in items if i["kind"] == "sign_in_link")
    assert link["issued_by"]["id"] == api.people["admin"].id and link["approved_by"] is not None
    assert any(i["kind"] == "request" and i["what"] == "approved" for i in items)
    assert_error(await api.http.get("/audit/credentials", headers=api.h("designer")), 403, "wrong_role")

    # the command line names its operator, and lists the same
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    from config import get_settings

    get_settings.cache_clear()
    try:
        assert await asyncio.to_thread(main, ["staff", "link", str(target.id)]) == 0
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["staff", "audit", str(target.id)]) == 0
        out = capsys.readouterr().out
    finally:
        get_settings.cache_clear()
    first = out.splitlines()[0]
    assert "sign_in_link" in first and "by cli:" in first
    assert f"by #{api.people['admin'].id} " in out and "approved by #" in out
