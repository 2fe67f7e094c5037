"""The permission matrix: every route × every role × own/other case, asserting the status code.

One case is brought to "contact open" (designer = `designer`, assistant = `assistant`); `designer2`
and `assistant2` are the same roles on someone else's case. Where a role is allowed, the request is
built so that it is refused for another reason that proves the permission passed (step not open,
bad assignee, reason missing, ...) and changes nothing; only notes are really added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from tests.api.conftest import Api, future, open_steps
from tests.support.data import musts

ACTORS = [
    "manager",
    "director",
    "consultant",
    "site_lead",
    "admin",
    "assistant_lead",
    "designer",  # the case's designer (own case)
    "designer2",  # another designer (other case)
    "assistant",  # the case's assistant (own case)
    "assistant2",  # another assistant (other case)
]
CREATORS = {"consultant", "manager", "site_lead", "assistant", "assistant2", "designer", "designer2"}


@dataclass
class Ctx:
    case_id: int
    api: Api
    phone: str = ""
    address: str = ""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ctx(api: Api) -> Ctx:
    """A remote case with callback, designer and assistant done: `contact` is open for `designer`."""
    c = await api.create("consultant", "remote")
    cid = c["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": future(), "meeting_kind": "measure"})
    await api.ok_step(
        cid, "assign_designer", "manager", {"designer_id": api.people["designer"].id, "reason": "权限矩阵测试指定"}
    )
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    assert open_steps(s) == {"contact"}, open_steps(s)
    return Ctx(case_id=cid, api=api, phone=c["client"]["phone"], address=c["client"]["address"])


def past() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


# route name -> (method, path, body factory, expected status by actor)
Expect = dict[str, int]
Route = tuple[str, str, Callable[[Ctx], Any], Expect]


def only(allowed: dict[str, int], default: int = 403) -> Expect:
    return {a: allowed.get(a, default) for a in ACTORS}


def everyone(status: int) -> Expect:
    return dict.fromkeys(ACTORS, status)


def _mismatch(ctx: Ctx) -> dict[str, Any]:
    return ctx.api.intake_body("walk_in", source="marketing")


ROUTES: dict[str, Route] = {
    "create": ("POST", "/intakes", _mismatch, {a: (422 if a in CREATORS else 403) for a in ACTORS}),
    "list": ("GET", "/intakes", lambda c: None, everyone(200)),
    "detail": ("GET", "/intakes/{id}", lambda c: None, everyone(200)),
    "messages": ("GET", "/intakes/{id}/messages", lambda c: None, everyone(200)),
    "suggestions": ("GET", "/intakes/{id}/designer-suggestions", lambda c: None, only({"manager": 200})),
    "tasks": ("GET", "/me/tasks", lambda c: None, everyone(200)),
    "sla": ("GET", "/reports/sla", lambda c: None, only({"manager": 200, "director": 200})),
    "allocation": ("GET", "/reports/allocation", lambda c: None, only({"manager": 200, "director": 200})),
    "phone_reads": ("GET", "/audit/phone-reads", lambda c: None, only({"manager": 200, "director": 200})),
    "staff_list": ("GET", "/staff", lambda c: None, only({"admin": 200})),
    # the admin passes and is refused an empty edit field (nothing changes)
    "staff_edit": (
        "PATCH", "/staff/{designer}", lambda c: {"name": None}, only({"admin": 422}),
    ),
    "staff_revoke": ("POST", "/staff/999999999/revoke", lambda c: None, only({"admin": 404})),
    # manager steps that are not open now: the manager passes the permission and gets 409
    "step:reception_review": ("POST", "/intakes/{id}/steps/reception_review", lambda c: {}, only({"manager": 409})),
    "step:callback": ("POST", "/intakes/{id}/steps/callback", lambda c: {"reached": False}, only({"manager": 409})),
    "step:assign_designer": (
        "POST", "/intakes/{id}/steps/assign_designer", lambda c: {"designer_id": c.api.people["designer"].id},
        only({"manager": 409}),
    ),
    # the assistant lead passes and is refused for naming a designer as assistant
    "step:assign_assistant": (
        "POST", "/intakes/{id}/steps/assign_assistant", lambda c: {"assistant_id": c.api.people["designer"].id},
        only({"assistant_lead": 422}),
    ),
    # contact is open: its designer passes (and is refused a past time); another designer is not theirs
    "step:contact": (
        "POST", "/intakes/{id}/steps/contact", lambda c: {"meeting_at": past(), "meeting_kind": "measure"},
        only({"designer": 422, "designer2": 403}),
    ),
    "step:arrival": ("POST", "/intakes/{id}/steps/arrival", lambda c: {}, only({"manager": 409})),
    "step:first_meeting": (
        "POST", "/intakes/{id}/steps/first_meeting", lambda c: musts("三室两厅"),
        only({"designer": 409, "designer2": 409}),
    ),
    "step:measure": (
        "POST", "/intakes/{id}/steps/measure", lambda c: {"result": "done"}, only({"designer": 409, "designer2": 409})
    ),
    "step:debrief": ("POST", "/intakes/{id}/steps/debrief", lambda c: {"findings": "好"}, only({"manager": 409})),
    "step:outcome": ("POST", "/intakes/{id}/steps/outcome", lambda c: {"outcome": "signed"}, only({"manager": 409})),
    # reschedule: manager and the case's designer/assistant pass (no measure booked yet: 409)
    "reschedule": (
        "POST", "/intakes/{id}/reschedule", lambda c: {"target": "measure", "at": future()},
        only({"manager": 409, "designer": 409, "assistant": 409, "designer2": 403, "assistant2": 403}),
    ),
    "reassign": (
        "POST", "/intakes/{id}/reassign",
        lambda c: {"role": "designer", "staff_id": c.api.people["assistant"].id, "reason": "测试"},
        only({"manager": 422}),
    ),
    "close": ("POST", "/intakes/{id}/close", lambda c: {"outcome": "lost"}, only({"manager": 422})),
    "notes": (
        "POST", "/intakes/{id}/notes", lambda c: {"text": "权限矩阵备注"},
        only({"manager": 200, "director": 200, "assistant_lead": 200, "designer": 200, "assistant": 200}),
    ),
}

# The codes behind the statuses, where they say why.
CODES: dict[tuple[str, str], str] = {
    ("step:contact", "designer"): "time_in_past",
    ("step:contact", "designer2"): "not_your_case",
    ("step:contact", "manager"): "wrong_role",
    ("step:assign_assistant", "assistant_lead"): "invalid_assignee",
    ("step:callback", "manager"): "step_not_open",
    ("step:first_meeting", "designer2"): "step_not_open",
    ("reschedule", "manager"): "no_meeting",
    ("reschedule", "designer2"): "not_your_case",
    ("reschedule", "consultant"): "wrong_role",
    ("reassign", "manager"): "invalid_assignee",
    ("reassign", "designer"): "wrong_role",
    ("close", "manager"): "reason_required",
    ("notes", "designer2"): "not_your_case",
    ("create", "director"): "wrong_role",
    ("create", "consultant"): "scenario_source_mismatch",
    ("suggestions", "designer"): "wrong_role",
    ("sla", "consultant"): "wrong_role",
    ("phone_reads", "designer"): "wrong_role",
    ("staff_edit", "manager"): "wrong_role",
    ("staff_revoke", "admin"): "staff_not_found",
}

# Who sees the client's full phone and address (SPEC §12): the manager, the director, the case's
# creator (the consultant) and the staff assigned to it; everyone else reads 138****5678.
CONTACT_FULL = {"manager", "director", "consultant", "designer", "assistant"}


@pytest.mark.parametrize("route", list(ROUTES))
async def test_permission_matrix(ctx: Ctx, route: str) -> None:
    method, path, body_of, expect = ROUTES[route]
    url = path.format(id=ctx.case_id, designer=ctx.api.people["designer"].id)
    wrong: list[str] = []
    for actor in ACTORS:
        body = body_of(ctx)
        r = await ctx.api.http.request(
            method, url, json=body if method in ("POST", "PATCH") else None, headers=ctx.api.h(actor)
        )
        if r.status_code != expect[actor]:
            wrong.append(f"{actor}: expected {expect[actor]}, got {r.status_code} {r.text[:160]}")
            continue
        if r.status_code >= 400:
            code = r.json()["code"]
            want = CODES.get((route, actor))
            if want and code != want:
                wrong.append(f"{actor}: expected code {want}, got {code}")
            if r.status_code == 403 and route.startswith("step:") and actor not in ("designer", "designer2"):
                if code != "wrong_role":
                    wrong.append(f"{actor}: 403 code {code}")
    assert not wrong, f"{route} {method} {url}:\n" + "\n".join(wrong)


async def test_matrix_changed_nothing_but_notes(ctx: Ctx) -> None:
    s = await ctx.api.case(ctx.case_id)
    assert s["status"] == "open" and open_steps(s) == {"contact"}
    assert s["designer"]["id"] == ctx.api.people["designer"].id
    assert s["assistant"]["id"] == ctx.api.people["assistant"].id
    # (runs after the matrix in this module) every caller the matrix let through added one note
    allowed = [actor for actor, status in ROUTES["notes"][3].items() if status == 200]
    assert len(s["case_notes"]) == len(allowed)


def _masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


@pytest.mark.parametrize("actor", ACTORS)
async def test_contact_by_need_on_detail_and_list(ctx: Ctx, actor: str) -> None:
    """Detail and list show the full phone and address only to those who work the case."""
    api = ctx.api
    full = actor in CONTACT_FULL
    r = await api.http.get(f"/intakes/{ctx.case_id}", headers=api.h(actor))
    assert r.status_code == 200, r.text
    client = r.json()["client"]
    assert client["contact_visible"] is full
    assert client["phone"] == (ctx.phone if full else _masked(ctx.phone))
    assert (client["address"] == ctx.address) is full
    r = await api.http.get(
        "/intakes", params={"designer_id": api.people["designer"].id, "limit": 200}, headers=api.h(actor)
    )
    item = next(i for i in r.json()["items"] if i["id"] == ctx.case_id)
    assert item["client_phone"] == (ctx.phone if full else _masked(ctx.phone)) and item["contact_visible"] is full


async def test_another_designer_reads_the_phone_through_no_route(ctx: Ctx) -> None:
    """designer2 is not on the case: no route of the matrix answers them the full phone or address."""
    api = ctx.api
    for route, (method, path, body_of, _) in ROUTES.items():
        if route == "notes":
            continue  # adds a note when allowed; designer2 is refused anyway (403)
        url = path.format(id=ctx.case_id, designer=api.people["designer"].id)
        body = body_of(ctx)
        r = await api.http.request(
            method, url, json=body if method in ("POST", "PATCH") else None, headers=api.h("designer2")
        )
        assert ctx.phone not in r.text and ctx.address not in r.text, f"{route}: {r.text[:300]}"
    # the list over every case, the tasks, the messages
    for url in ("/intakes?limit=200", "/me/tasks?limit=200", f"/intakes/{ctx.case_id}/messages"):
        r = await api.http.get(url, headers=api.h("designer2"))
        assert r.status_code == 200 and ctx.phone not in r.text, url
