"""The permission matrix (SPEC §13): every route of the app × every relation to a case.

The routes are read from the app itself, JSON and console alike, so a new route cannot escape the
matrix: `test_every_route_is_in_the_matrix` fails until it has a row here.

One remote case is brought to "contact open" and tied to the people below: the consultant typed it
in; `designer2` was its designer until the manager reassigned it to `designer`; `assistant` is its
assistant. `designer3`, `assistant3`, the site lead and the admin have nothing to do with it, so every
case route answers them 404 `case_not_found` (its existence not confirmed). Where someone may pass, the
request is built so that it is refused for another reason that proves the permission passed (step not
open, bad assignee, reason missing, not audio, ...) and changes nothing; only notes are really added.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute

from domain.enums import Level, Role
from store.sessions import SessionRepository, csrf_token
from store.staff import StaffRepository
from tests.api.conftest import Api, Person, future, open_steps, unique_phone
from tests.support.data import musts

VIEW_ALL = ["manager", "director", "assistant_lead"]
TIED = ["consultant", "designer", "assistant", "designer2"]  # creator, designer, assistant, former designer
STRANGERS = ["site_lead", "admin", "designer3", "assistant3"]
ACTORS = VIEW_ALL + TIED + STRANGERS
VIEWERS = VIEW_ALL + TIED
CREATORS = {"consultant", "manager", "site_lead", "assistant", "designer", "designer2", "designer3", "assistant3"}
NOT_AUDIO = b"this is not a recording"
# Who opens a scorecard at all: the manager and the director everyone's, designers and assistants their own.
WHATIF = {"manager", "director", "admin"}
POLICY_READERS = WHATIF
HEAD_OFFICE = {"admin", "director"}  # who keeps the branches
SCORECARD_READERS = {"manager", "director", "designer", "designer2", "designer3", "assistant", "assistant3"}


@dataclass
class Ctx:
    case_id: int
    api: Api
    phone: str = ""
    address: str = ""
    sessions: dict[str, str] = field(default_factory=dict)  # actor -> console session token


def past() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).isoformat()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ctx(api: Api) -> Ctx:
    """A remote case with contact open for `designer`, reassigned from `designer2`; a console session each."""
    repo = StaffRepository(api.pool)
    for key, role, level in (("designer3", Role.designer, Level.senior), ("assistant3", Role.assistant, None)):
        if key not in api.people:
            s = await repo.add(name=f"无关{key}", phone=unique_phone(), role=role, level=level)
            token = await repo.issue_token(staff_id=s.id, label="matrix")
            api.people[key] = Person(key=key, id=s.id, name=s.name, role=role, token=token, level=level)
    c = await api.create("consultant", "remote", notes="客户爱人电话 139-1234-5678，晚上打")
    cid = c["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": future(), "meeting_kind": "measure"})
    await api.ok_step(
        cid, "assign_designer", "manager", {"designer_id": api.people["designer2"].id, "reason": "权限矩阵测试指定"}
    )
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    r = await api.http.post(f"/intakes/{cid}/reassign", headers=api.h("manager"),
                            json={"role": "designer", "staff_id": api.people["designer"].id, "reason": "客户要求"})
    assert r.status_code == 200, r.text
    case = await api.case(cid)
    assert open_steps(case) == {"contact"} and case["designer"]["id"] == api.people["designer"].id, case
    sessions = SessionRepository(api.pool)
    tokens: dict[str, str] = {}
    for actor in ACTORS:
        code = await sessions.issue_link(staff_id=api.people[actor].id, ttl=timedelta(hours=1))
        redeemed = await sessions.redeem_link(code=code, ttl=timedelta(hours=1), user_agent="matrix")
        assert redeemed is not None
        tokens[actor] = redeemed[0]
    return Ctx(case_id=cid, api=api, phone=c["client"]["phone"], address=c["client"]["address"], sessions=tokens)


# --- the routes of the app --------------------------------------------------------------------------


def app_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, through included routers."""

    def walk(routes: list[Any]) -> Iterator[tuple[str, str]]:
        for r in routes:
            if hasattr(r, "original_router"):  # an included router (FastAPI keeps it whole)
                yield from walk(r.original_router.routes)
            elif isinstance(r, APIRoute):
                for m in sorted(r.methods or ()):
                    yield m, r.path

    yield from walk(app.routes)


# Routes without a case or a person's data: no permission to test beyond authentication.
PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/"),
    ("GET", "/console/login"), ("GET", "/console/login/{code}"), ("POST", "/console/login/{code}"),
    # 企业微信登录: the state cookie and WeCom's answer decide (tests/console/test_wecom_login.py)
    ("GET", "/console/login/wecom"), ("GET", "/console/login/wecom/callback"),
    ("POST", "/console/logout"),
    # the personal codec URL names its credential in the path; tested with the codec (test_codec_endpoint)
    ("POST", "/codec/k/{token}/decode"),
}

Expect = dict[str, int]


def only(allowed: dict[str, int], default: int = 403) -> Expect:
    """Viewers get `default` unless listed; strangers get 404 (case routes)."""
    return {a: (allowed.get(a, default) if a in VIEWERS else 404) for a in ACTORS}


def everyone(status: int) -> Expect:
    return dict.fromkeys(ACTORS, status)


@dataclass(frozen=True)
class Row:
    """One route of the matrix: how to call it and what each actor gets."""

    expect: Expect
    body: Callable[[Ctx], Any] = lambda c: None
    path_args: dict[str, Any] = field(default_factory=dict)
    form: bool = False  # a console form (session cookie and CSRF token) rather than a bearer token
    upload: bool = False
    codes: dict[str, str] = field(default_factory=dict)  # the code behind a status, where it says why


def _mismatch(ctx: Ctx) -> dict[str, Any]:
    return ctx.api.intake_body("walk_in", source="marketing")


STEP_ROLES = {
    "reception_review": "manager", "callback": "manager", "assign_designer": "manager", "arrival": "manager",
    "debrief": "manager", "outcome": "manager", "assign_assistant": "assistant_lead", "lapse_review": "manager",
}
STEP_BODIES: dict[str, Callable[[Ctx], Any]] = {
    "reception_review": lambda c: {},
    "callback": lambda c: {"reached": False},
    "assign_designer": lambda c: {"designer_id": c.api.people["designer"].id},
    "assign_assistant": lambda c: {"assistant_id": c.api.people["designer"].id},
    "contact": lambda c: {"meeting_at": past(), "meeting_kind": "measure"},
    "arrival": lambda c: {},
    "first_meeting": lambda c: musts("三室两厅"),
    "measure": lambda c: {"result": "done"},
    "debrief": lambda c: {"findings": "好"},
    "acknowledge": lambda c: {"note": "已改"},
    "outcome": lambda c: {"outcome": "signed"},
    "lapse_review": lambda c: {"decision": "reclaim"},
}


def _step_row(step: str) -> Row:
    if step in STEP_ROLES:
        owner = STEP_ROLES[step]
        # the owner passes and the case says why not now; the assistant lead names a designer (422)
        status = 422 if step == "assign_assistant" else 409
        return Row(only({owner: status}), STEP_BODIES[step],
                   codes={a: "wrong_role" for a in VIEWERS if a != owner})
    if step == "contact":
        # open: its designer passes (and is refused a past time); the former designer is not its designer
        return Row(only({"designer": 422}), STEP_BODIES[step],
                   codes={"designer": "time_in_past", "designer2": "not_your_case", "manager": "wrong_role"})
    if step in ("first_meeting", "measure"):
        return Row(only({"designer": 409}), STEP_BODIES[step],
                   codes={"designer": "step_not_open", "designer2": "not_your_case"})
    # acknowledge: who was corrected only the case knows; nothing to acknowledge here for anyone
    return Row(only(dict.fromkeys(VIEWERS, 409)), STEP_BODIES[step], codes={"designer": "step_not_open"})


ROUTES: dict[tuple[str, str], Row] = {
    ("POST", "/intakes"): Row({a: (422 if a in CREATORS else 403) for a in ACTORS}, _mismatch,
                              codes={"director": "wrong_role", "consultant": "scenario_source_mismatch"}),
    ("GET", "/intakes"): Row(everyone(200)),
    ("GET", "/me/tasks"): Row(everyone(200)),
    ("GET", "/intakes/{case_id}"): Row(only(dict.fromkeys(VIEWERS, 200)), codes={"designer3": "case_not_found"}),
    ("GET", "/intakes/{case_id}/messages"): Row(only(dict.fromkeys(VIEWERS, 200))),
    ("GET", "/intakes/{case_id}/designer-suggestions"): Row(only({"manager": 200}), codes={"designer": "wrong_role"}),
    **{("POST", f"/intakes/{{case_id}}/steps/{s}"): _step_row(s) for s in STEP_BODIES},
    ("POST", "/intakes/{case_id}/steps/{step}"): Row(only(dict.fromkeys(VIEWERS, 404)), lambda c: {},
                                                     path_args={"step": "nope"}, codes={"designer": "unknown_step"}),
    # reschedule: the manager and the case's designer and assistant pass (no measure booked yet: 409)
    ("POST", "/intakes/{case_id}/reschedule"): Row(
        only({"manager": 409, "designer": 409, "assistant": 409}), lambda c: {"target": "measure", "at": future()},
        codes={"manager": "no_meeting", "designer2": "not_your_case", "consultant": "wrong_role"}),
    ("POST", "/intakes/{case_id}/reassign"): Row(
        only({"manager": 422}),
        lambda c: {"role": "designer", "staff_id": c.api.people["assistant"].id, "reason": "测试"},
        codes={"manager": "invalid_assignee", "designer": "wrong_role"}),
    # transfer: the director passes (the case is in that branch already: 409); a branch's manager does not
    ("POST", "/intakes/{case_id}/transfer"): Row(
        only({"director": 409}), lambda c: {"branch": "main", "reason": "权限矩阵"},
        codes={"director": "same_branch", "manager": "branch_not_allowed", "designer": "wrong_role"}),
    ("POST", "/intakes/{case_id}/close"): Row(only({"manager": 422}), lambda c: {"outcome": "lost"},
                                              codes={"manager": "reason_required"}),
    ("POST", "/intakes/{case_id}/notes"): Row(
        only({"manager": 200, "director": 200, "assistant_lead": 200, "designer": 200, "assistant": 200}),
        lambda c: {"text": "权限矩阵备注"}, codes={"designer2": "not_your_case", "consultant": "not_your_case"}),
    ("POST", "/intakes/{case_id}/recordings"): Row(only({"manager": 415}), upload=True,
                                                   codes={"manager": "unsupported_audio", "director": "wrong_role"}),
    ("GET", "/intakes/{case_id}/recordings"): Row(
        only({"manager": 200, "director": 200, "designer": 200, "assistant": 200}),
        codes={"designer2": "not_your_case", "consultant": "not_your_case"}),
    ("GET", "/intakes/{case_id}/recordings/{recording_id}"): Row(
        only({"manager": 404, "director": 404, "designer": 404, "assistant": 404}), path_args={"recording_id": 999999},
        codes={"manager": "recording_not_found", "designer2": "not_your_case"}),
    ("GET", "/reports/sla"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}),
    # the league table of branches: head office (a manager of one branch is not)
    ("GET", "/reports/branches"): Row({a: (200 if a == "director" else 403) for a in ACTORS},
                                      codes={"manager": "head_office_only", "designer": "wrong_role"}),
    ("GET", "/reports/allocation"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}),
    ("GET", "/reports/morning-summary"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}),
    ("GET", "/audit/phone-reads"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}),
    ("GET", "/staff"): Row({a: (200 if a == "admin" else 403) for a in ACTORS}),
    # the admin passes and is refused for reasons that change nothing
    ("POST", "/staff"): Row({a: (422 if a == "admin" else 403) for a in ACTORS}, lambda c: {"name": "x"}),
    ("GET", "/staff/{staff_id}"): Row({a: (404 if a == "admin" else 403) for a in ACTORS},
                                      path_args={"staff_id": 999999999}),
    ("PATCH", "/staff/{staff_id}"): Row({a: (422 if a == "admin" else 403) for a in ACTORS}, lambda c: {"name": None},
                                        path_args={"staff_id": "designer"}),
    ("POST", "/staff/{staff_id}/revoke"): Row({a: (404 if a == "admin" else 403) for a in ACTORS},
                                              path_args={"staff_id": 999999999}, codes={"admin": "staff_not_found"}),
    ("POST", "/staff/{staff_id}/tokens"): Row({a: (404 if a == "admin" else 403) for a in ACTORS},
                                              path_args={"staff_id": 999999999}),
    ("POST", "/codec/decode"): Row({a: (200 if a in ("manager", "director", "admin") else 403) for a in ACTORS},
                                   lambda c: {"payloads": []}),
    ("POST", "/codec/encode"): Row({a: (200 if a in ("manager", "director", "admin") else 403) for a in ACTORS},
                                   lambda c: {"payloads": []}),
    # the dev stack's local operator credential: a deployed API (as here) has none, so nobody's token opens it
    ("POST", "/codec/local/{secret}/decode"): Row(everyone(404), lambda c: {"payloads": []},
                                                  path_args={"secret": "guess"}),
    ("POST", "/codec/local/{secret}/encode"): Row(everyone(404), lambda c: {"payloads": []},
                                                  path_args={"secret": "guess"}),
    # branches: head office (the admin and the director); refusals for reasons that change nothing
    ("GET", "/branches"): Row({a: (200 if a in HEAD_OFFICE else 403) for a in ACTORS}),
    ("POST", "/branches"): Row({a: (422 if a in HEAD_OFFICE else 403) for a in ACTORS},
                               lambda c: {"code": "Not A Code", "name": "x"}, codes={"admin": "invalid_branch_code"}),
    ("GET", "/branches/{branch_id}"): Row({a: (404 if a in HEAD_OFFICE else 403) for a in ACTORS},
                                          path_args={"branch_id": 999999999}, codes={"director": "branch_not_found"}),
    ("PATCH", "/branches/{branch_id}"): Row({a: (409 if a in HEAD_OFFICE else 403) for a in ACTORS},
                                            lambda c: {"status": "closed"}, path_args={"branch_id": 1},
                                            codes={"admin": "branch_not_empty"}),
    ("POST", "/staff/credential-requests/{request_id}/approve"): Row(
        {a: (404 if a == "admin" else 403) for a in ACTORS}, path_args={"request_id": 999999999}),
    ("GET", "/audit/credentials"): Row({a: (200 if a in ("manager", "director", "admin") else 403) for a in ACTORS}),
    ("POST", "/codec/credentials"): Row({a: (201 if a in ("manager", "director", "admin") else 403) for a in ACTORS}),
    # the console: the same rules behind a session cookie
    ("GET", "/console"): Row(everyone(200), form=True),
    ("GET", "/console/cases/{case_id}"): Row(only(dict.fromkeys(VIEWERS, 200)), form=True),
    ("POST", "/console/cases/{case_id}/steps/{step}"): Row(
        only({"designer": 422}), lambda c: {"meeting_at": past(), "meeting_kind": "measure"},
        path_args={"step": "contact"}, form=True),
    ("POST", "/console/cases/{case_id}/{action}"): Row(
        only({"manager": 409, "designer": 409, "assistant": 409}), lambda c: {"target": "measure", "at": future()},
        path_args={"action": "reschedule"}, form=True),
    ("POST", "/console/cases/{case_id}/recordings"): Row(only({"manager": 415}), upload=True, form=True),
    ("GET", "/console/cases/{case_id}/recordings/{recording_id}"): Row(
        only({"manager": 404, "director": 404, "designer": 404, "assistant": 404}),
        path_args={"recording_id": 999999}, form=True),
    ("GET", "/console/new"): Row({a: (200 if a in CREATORS else 403) for a in ACTORS}, form=True),
    ("POST", "/console/new"): Row({a: (422 if a in CREATORS else 403) for a in ACTORS},
                                  lambda c: {"source": "marketing", "scenario": "walk_in"}, form=True),
    ("GET", "/console/board"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}, form=True),
    ("GET", "/console/reports"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS}, form=True),
    ("GET", "/console/branches"): Row({a: (200 if a == "director" else 403) for a in ACTORS}, form=True),
    # insight (SPEC §16): everyone's scorecard for the manager and the director, one's own for designers and assistants
    ("GET", "/insight/scorecards/{staff_id}"): Row(
        {a: (200 if a in ("manager", "director", "designer") else 403) for a in ACTORS},
        path_args={"staff_id": "designer"},
        codes={"designer2": "not_your_scorecard", "assistant": "not_your_scorecard", "consultant": "wrong_role"}),
    ("GET", "/insight/habits"): Row({a: (200 if a in ("manager", "director") else 403) for a in ACTORS},
                                    codes={"designer": "wrong_role"}),
    ("GET", "/insight/scorecards.xlsx"): Row({a: (200 if a in SCORECARD_READERS else 403) for a in ACTORS}),
    ("GET", "/console/insight"): Row({a: (200 if a in SCORECARD_READERS else 403) for a in ACTORS}, form=True),
    ("GET", "/console/insight/staff/{staff_id}"): Row(
        {a: (200 if a in ("manager", "director", "designer") else 403) for a in ACTORS},
        path_args={"staff_id": "designer"}, form=True),
    ("GET", "/console/insight/export.xlsx"): Row({a: (200 if a in SCORECARD_READERS else 403) for a in ACTORS},
                                                 form=True),
    # the policy what-if (manager, director; the admin before saving an edit) and the policy itself
    ("GET", "/console/whatif"): Row({a: (200 if a in WHATIF else 403) for a in ACTORS}, form=True),
    ("POST", "/console/whatif"): Row({a: (422 if a in WHATIF else 403) for a in ACTORS},
                                     lambda c: {"policy_yaml": "callback_max_attempts: 0"}, form=True),
    ("GET", "/console/whatif/{run_id}"): Row({a: (404 if a in WHATIF else 403) for a in ACTORS},
                                             path_args={"run_id": 999999999}, form=True),
    ("GET", "/console/policy"): Row({a: (200 if a in POLICY_READERS else 403) for a in ACTORS}, form=True),
    ("POST", "/console/policy"): Row({a: (422 if a == "admin" else 403) for a in ACTORS},
                                     lambda c: {"max_open_cases.chief": "很多"}, form=True),
    ("POST", "/console/policy/save"): Row({a: (422 if a == "admin" else 403) for a in ACTORS},
                                          lambda c: {"policy_yaml": "callback_max_attempts: 0"}, form=True),
    ("GET", "/console/policy/versions/{number}"): Row({a: (404 if a in POLICY_READERS else 403) for a in ACTORS},
                                                      path_args={"number": 999999}, form=True),
}


def test_every_route_is_in_the_matrix(api: Api) -> None:
    """A route the matrix does not know fails here: add its row (who may call it, on which case)."""
    served = set(app_routes(api.http._transport.app))  # type: ignore[attr-defined]
    missing = sorted(served - set(ROUTES) - PUBLIC)
    assert not missing, f"routes without a row in the permission matrix: {missing}"
    gone = sorted(set(ROUTES) - served)
    assert not gone, f"rows for routes the app no longer serves: {gone}"


async def call(ctx: Ctx, method: str, path: str, row: Row, actor: str) -> httpx.Response:
    """The route as `actor` calls it: bearer token for the API, session cookie and CSRF for the console."""
    api = ctx.api
    args = {"case_id": ctx.case_id, **{k: (api.people[v].id if isinstance(v, str) and v in api.people else v)
                                        for k, v in row.path_args.items()}}
    url = path.format(**args)
    body = row.body(ctx)
    if not row.form:
        if row.upload:
            return await api.http.request(method, url, headers=api.h(actor),
                                          files={"file": ("note.mp3", NOT_AUDIO, "audio/mpeg")})
        return await api.http.request(method, url, headers=api.h(actor),
                                      json=body if method in ("POST", "PATCH") else None)
    token = ctx.sessions[actor]
    cookies = {"intake_session": token}
    if method == "GET":
        return await api.http.get(url, cookies=cookies)
    data = {"csrf": csrf_token(token), **(body or {})}
    if row.upload:  # the form token rides in the address: judged before the file is read
        return await api.http.post(url, cookies=cookies, params={"csrf": csrf_token(token)},
                                   files={"file": ("note.mp3", NOT_AUDIO, "audio/mpeg")})
    return await api.http.post(url, cookies=cookies, data=data)


def _code(r: httpx.Response) -> str | None:
    if r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        return body.get("code") if isinstance(body, dict) else None
    return None


@pytest.mark.parametrize("route", sorted(ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
async def test_permission_matrix(ctx: Ctx, route: tuple[str, str]) -> None:
    method, path = route
    row = ROUTES[route]
    wrong: list[str] = []
    for actor in ACTORS:
        r = await call(ctx, method, path, row, actor)
        want = row.expect[actor]
        got = 200 if row.form and r.status_code == 303 else r.status_code  # a done form redirects
        if got != want:
            wrong.append(f"{actor}: expected {want}, got {r.status_code} {r.text[:160]}")
            continue
        code = _code(r)
        expected_code = row.codes.get(actor)
        if "{case_id}" in path and actor in STRANGERS:
            expected_code = "case_not_found"
        if expected_code and not row.form and code != expected_code:
            wrong.append(f"{actor}: expected code {expected_code}, got {code}")
        if row.form and "{case_id}" in path and actor in STRANGERS and "case_not_found" not in r.text:
            wrong.append(f"{actor}: the console's 404 page does not say case_not_found")
    assert not wrong, f"{method} {path}:\n" + "\n".join(wrong)


async def test_matrix_changed_nothing_but_notes(ctx: Ctx) -> None:
    """Whatever of the matrix ran against this case (tests may run on several workers): only notes, each by
    someone who may add one."""
    s = await ctx.api.case(ctx.case_id)
    assert s["status"] == "open" and open_steps(s) == {"contact"}
    assert s["designer"]["id"] == ctx.api.people["designer"].id
    assert s["assistant"]["id"] == ctx.api.people["assistant"].id
    allowed = {ctx.api.people[a].name for a, status in ROUTES[("POST", "/intakes/{case_id}/notes")].expect.items()
               if status == 200}
    assert {n["data"]["by"] for n in s["case_notes"]} <= allowed


def _masked(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


# Who sees the client's contact details (SPEC §13): the manager, the director, the case's designer and
# assistant; not the consultant once a designer is assigned, not the former designer, not the assistant lead.
CONTACT_FULL = {"manager", "director", "designer", "assistant"}


@pytest.mark.parametrize("actor", VIEWERS)
async def test_contact_by_need_on_detail_and_list(ctx: Ctx, actor: str) -> None:
    """Detail and list show the phone, the address and phones written into notes only to those who may."""
    api = ctx.api
    full = actor in CONTACT_FULL
    r = await api.http.get(f"/intakes/{ctx.case_id}", headers=api.h(actor))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["client"]["contact_visible"] is full
    assert body["client"]["phone"] == (ctx.phone if full else _masked(ctx.phone))
    assert (body["client"]["address"] == ctx.address) is full
    # the spouse's number the consultant typed into the notes
    assert ("139-1234-5678" in body["notes"]) is full
    assert ("139****5678" in body["notes"]) is not full
    r = await api.http.get("/intakes", params={"limit": 200}, headers=api.h(actor))
    item = next(i for i in r.json()["items"] if i["id"] == ctx.case_id)
    assert item["client_phone"] == (ctx.phone if full else _masked(ctx.phone)) and item["contact_visible"] is full


@pytest.mark.parametrize("actor", STRANGERS)
async def test_a_stranger_never_sees_the_case_in_any_list(ctx: Ctx, actor: str) -> None:
    """Lists, tasks and the filter by designer are filtered in SQL: the case is in none of them."""
    api = ctx.api
    urls = ["/intakes?limit=200", f"/intakes?designer_id={api.people['designer'].id}&limit=200",
            "/intakes?status=open&limit=200", "/me/tasks?limit=200"]
    for url in urls:
        r = await api.http.get(url, headers=api.h(actor))
        assert r.status_code == 200, r.text
        ids = [i.get("id") or i.get("case_id") for i in r.json()["items"]]
        assert ctx.case_id not in ids and ctx.phone not in r.text, url
        if url.startswith("/intakes?designer_id"):
            assert r.json()["total"] == 0  # a colleague's client list is not theirs to read
    r = await api.http.get("/console", cookies={"intake_session": ctx.sessions[actor]})
    assert r.status_code == 200 and f"/console/cases/{ctx.case_id}" not in r.text


async def test_the_former_designer_reads_without_contact_and_cannot_act(ctx: Ctx) -> None:
    api = ctx.api
    r = await api.http.get(f"/intakes/{ctx.case_id}", headers=api.h("designer2"))
    assert r.status_code == 200 and ctx.phone not in r.text and ctx.address not in r.text
    page = await api.http.get(f"/console/cases/{ctx.case_id}", cookies={"intake_session": ctx.sessions["designer2"]})
    assert page.status_code == 200 and ctx.phone not in page.text
    assert f'action="/console/cases/{ctx.case_id}/note"' not in page.text  # no forms for them
    assert f'action="/console/cases/{ctx.case_id}/reschedule"' not in page.text
