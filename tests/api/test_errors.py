"""Errors are JSON {code, message}: authentication, unknown routes, bad input, health."""

from __future__ import annotations

from typing import Any

import pytest

from domain.enums import Role, StaffStatus
from store.staff import StaffRepository
from tests.api.conftest import Api, unique_phone


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in r.text
    return body


async def test_health(api: Api) -> None:
    r = await api.http.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await api.http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "temporal": "ok"}}


@pytest.mark.parametrize(
    "headers, code",
    [
        ({}, "unauthenticated"),
        ({"Authorization": "Bearer"}, "unauthenticated"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "unauthenticated"),
        ({"Authorization": "Bearer itk_not-a-real-token"}, "invalid_token"),
        ({"Authorization": "Bearer " + "x" * 600}, "invalid_token"),
    ],
)
async def test_401(api: Api, headers: dict[str, str], code: str) -> None:
    for path in ("/intakes", "/me/tasks", "/reports/sla", "/intakes/1"):
        r = await api.http.get(path, headers=headers)
        assert_error(r, 401, code)
        assert r.headers["www-authenticate"] == "Bearer"


async def test_revoked_and_inactive_tokens(api: Api) -> None:
    repo = StaffRepository(api.pool)
    s = await repo.add(name="临时员工", phone=unique_phone(), role=Role.consultant)
    token = await repo.issue_token(staff_id=s.id)
    hdr = {"Authorization": f"Bearer {token}"}
    assert (await api.http.get("/me/tasks", headers=hdr)).status_code == 200
    await repo.set_status(staff_id=s.id, status=StaffStatus.inactive)
    assert_error(await api.http.get("/me/tasks", headers=hdr), 401, "invalid_token")
    await repo.set_status(staff_id=s.id, status=StaffStatus.active)
    await api.pool.execute("UPDATE staff_tokens SET revoked_at = now() WHERE staff_id = $1", s.id)
    assert_error(await api.http.get("/me/tasks", headers=hdr), 401, "invalid_token")


async def test_tokens_are_stored_only_as_hashes(api: Api) -> None:
    token = api.people["manager"].token
    rows = await api.pool.fetch("SELECT token_hash FROM staff_tokens WHERE staff_id = $1", api.people["manager"].id)
    assert rows and all(token not in r["token_hash"] for r in rows)


async def test_unknown_route_and_method(api: Api) -> None:
    assert_error(await api.http.get("/nope", headers=api.h("manager")), 404, "not_found")
    assert_error(await api.http.get("/nope"), 404, "not_found")
    r = await api.http.delete("/intakes", headers=api.h("manager"))
    assert_error(r, 405, "method_not_allowed")
    assert "allow" in r.headers
    c = await api.create("consultant", "remote")  # a case of its own: the test needs no other to run first
    assert_error(await api.http.post(f"/intakes/{c['id']}/steps/dance", json={}, headers=api.h("manager")), 404,
                 "unknown_step")


async def test_case_not_found(api: Api) -> None:
    for path in ("/intakes/999999999", "/intakes/999999999/messages"):
        assert_error(await api.http.get(path, headers=api.h("manager")), 404, "case_not_found")
    assert_error(
        await api.http.get("/intakes/999999999/designer-suggestions", headers=api.h("manager")), 404, "case_not_found"
    )
    r = await api.step(999999999, "callback", "manager", {"reached": False})
    assert_error(r, 404, "case_not_found")
    r = await api.http.post("/intakes/999999999/close", json={"outcome": "signed"}, headers=api.h("manager"))
    assert_error(r, 404, "case_not_found")


async def test_validation_errors_are_422_invalid_payload(api: Api) -> None:
    h = api.h("consultant")
    # not JSON at all
    r = await api.http.post("/intakes", content=b"{not json", headers={**h, "content-type": "application/json"})
    assert_error(r, 422, "invalid_payload")
    # missing fields, unknown fields, wrong enum
    body = assert_error(await api.http.post("/intakes", json={"source": "tv"}, headers=h), 422, "invalid_payload")
    locs = {tuple(e["loc"]) for e in body["errors"]}
    assert ("body", "source") in locs and ("body", "scenario") in locs and ("body", "client") in locs
    good = api.intake_body()
    body = assert_error(await api.http.post("/intakes", json={**good, "colour": "red"}, headers=h), 422, "invalid_payload")
    assert body["errors"][0]["type"] == "extra_forbidden"
    # a path id that cannot name a case is answered like an unknown one (tests/api/test_security.py)
    assert_error(await api.http.get("/intakes/abc", headers=h), 404, "case_not_found")
    assert_error(await api.http.get("/intakes/0", headers=h), 404, "case_not_found")
    assert_error(await api.http.get(f"/intakes/{2**70}", headers=h), 404, "case_not_found")
    # query parameters
    assert_error(await api.http.get("/intakes", params={"limit": 0}, headers=h), 422, "invalid_payload")
    assert_error(await api.http.get("/intakes", params={"source": "tv"}, headers=h), 422, "invalid_payload")
    assert_error(await api.http.get("/intakes", params={"cursor": "!!"}, headers=h), 422, "invalid_cursor")
    # a date-time the schema allows but no case can have is a bound that matches nothing more (clamped)
    r = await api.http.get("/intakes", params={"created_from": "0001-01-01T00:00:00+14:00"}, headers=h)
    assert r.status_code == 200, r.text
    r = await api.http.get("/intakes", params={"created_from": "9999-12-31T23:59:59-14:00"}, headers=h)
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    # a number is not a time (pydantic would read it as seconds since 1970): refused
    assert_error(await api.http.get("/reports/allocation", params={"to": "0.5"}, headers=api.h("manager")),
                 422, "invalid_payload")
    assert_error(await api.http.get("/intakes", params={"created_to": "1700000000"}, headers=h),
                 422, "invalid_payload")
    # NUL characters never reach PostgreSQL
    bad = api.intake_body(notes="a\x00b")
    assert_error(await api.http.post("/intakes", json=bad, headers=h), 422, "invalid_payload")
    # a step payload of the wrong shape
    r = await api.step(1, "callback", "manager", {"reached": "maybe"})
    assert_error(r, 422, "invalid_payload")


async def test_body_too_large(api: Api) -> None:
    body = api.intake_body(notes="长" * 40_000)
    r = await api.http.post("/intakes", json=body, headers=api.h("consultant"))
    assert_error(r, 413, "payload_too_large")


async def test_wrong_content_type(api: Api) -> None:
    r = await api.http.post(
        "/intakes", content=b"source=walk_in", headers={**api.h("consultant"), "content-type": "text/plain"}
    )
    # without a JSON content type the body is not read as JSON (FastAPI's CSRF guard): no object, 422
    assert_error(r, 422, "invalid_payload")


async def test_options_and_405_name_every_method_of_the_path(api: Api) -> None:
    r = await api.http.options("/intakes")
    assert r.status_code == 204 and r.headers["allow"] == "GET, OPTIONS, POST"
    r = await api.http.options("/intakes/1/steps/callback")
    assert r.status_code == 204 and r.headers["allow"] == "OPTIONS, POST"
    r = await api.http.delete("/intakes", headers=api.h("manager"))
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, OPTIONS, POST"


async def test_the_schema_states_the_phone_rule_and_links_the_case_routes(api: Api) -> None:
    spec = (await api.http.get("/openapi.json")).json()
    phone = spec["components"]["schemas"]["ClientIn"]["properties"]["phone"]
    assert "1" in phone["pattern"] and "[3-9]" in phone["pattern"]
    links = spec["paths"]["/intakes"]["post"]["responses"]["201"]["links"]
    targets = {op["operationId"] for path, ops in spec["paths"].items() if path.startswith("/intakes/{case_id}")
               for op in ops.values()}
    assert set(links) == targets and all(v["parameters"] == {"case_id": "$response.body#/id"} for v in links.values())
