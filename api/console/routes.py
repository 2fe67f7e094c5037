"""The staff console's pages (网页工作台, SPEC §11): server-rendered, Chinese, mobile first.

Every form posts to a route here that calls the same service as the JSON API (api.services): the
permissions, the validation and the error codes are the API's own; this module only turns form fields
into the API's input and the service's refusal into a message beside the field.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

import wecom
from api import services
from api.console import forms
from api.console.auth import (
    ConsoleUser,
    NeedSignIn,
    SignedIn,
    check_csrf,
    check_origin,
    clear_session_cookie,
    set_session_cookie,
)
from api.deps import ResourcesDep, bounded, refuse
from api.errors import ApiError
from api.ratelimit import client_address
from api.schemas import (
    CaseView,
    CloseRequest,
    IntakeCreate,
    NoteRequest,
    ReassignRequest,
    RescheduleRequest,
    TransferRequest,
)
from api.services.access import contact_map, holding_for, open_case, viewer
from api.services.cases import case_answer
from api.services.policy import version_label
from api.views import task_item
from domain import permissions
from domain.enums import (
    LEVEL_LABELS,
    MEETING_KIND_LABELS,
    OUTCOME_LABELS,
    ROLE_LABELS,
    SCENARIO_LABELS,
    SOURCE_LABELS,
    STEP_LABELS,
    Role,
    Scenario,
    Source,
    StepName,
)
from domain.models import STEP_PAYLOADS, OpenStep
from domain.permissions import Action
from domain.tracking import stage_label
from store import queries
from store.branches import BranchRepository
from store.sessions import SessionRepository
from store.staff import StaffRepository

log = logging.getLogger("intake.console")

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

BOARD_REFRESH_SECONDS = 15


# --- formatting helpers (Jinja filters) ---------------------------------------------------------


def local_time(value: datetime | None) -> str:
    """A time as staff read it: Beijing time, month-day hour:minute (year when not this year)."""
    if value is None:
        return "—"
    t = value.astimezone(forms.TZ)
    now = datetime.now(forms.TZ)
    return t.strftime("%m-%d %H:%M") if t.year == now.year else t.strftime("%Y-%m-%d %H:%M")


def span(seconds: float) -> str:
    """A duration in Chinese: 3 分钟, 2 小时 5 分, 1 天 3 小时."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s} 秒"
    m = s // 60
    if m < 60:
        return f"{m} 分钟"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h} 小时 {m} 分" if m else f"{h} 小时"
    d, h = divmod(h, 24)
    return f"{d} 天 {h} 小时" if h else f"{d} 天"


def due_text(due: datetime | None, overdue: bool = False) -> str:
    """"超时 5 分钟" or "还有 10 分钟"."""
    if due is None:
        return "无时限"
    delta = (datetime.now(UTC) - due).total_seconds()
    if delta >= 1:
        return f"超时 {span(delta)}"
    if overdue:
        return "已超时"
    return f"还有 {span(delta)}"


def label(value: Any) -> str:
    """The Chinese label of an enum value."""
    v = getattr(value, "value", value)
    return forms.VALUE_LABELS.get(str(v), str(v)) if v is not None else "—"


# Titles staff type into the name field themselves ("王先生", "赵女士"): no second one after them.
_TYPED_TITLES = ("先生", "女士", "小姐", "太太")


def client_title(name: str, gender: Any) -> str:
    """The client as the case page heads them: 王伟先生, 李娜女士; a name typed with its title stays as typed."""
    v = getattr(gender, "value", gender)
    if v not in ("male", "female") or name.endswith(_TYPED_TITLES):
        return name
    return f"{name}{forms.VALUE_LABELS[v]}"


TEMPLATES.env.filters.update(localtime=local_time, label=label, span=span)
TEMPLATES.env.globals.update(client_title=client_title)
TEMPLATES.env.globals.update(
    due_text=due_text,
    # A fresh Idempotency-Key per rendered form: a double tap on 完成 is one action, not two.
    new_key=lambda: uuid.uuid4().hex,
    ROLE_LABELS=ROLE_LABELS,
    STEP_LABELS=STEP_LABELS,
    SOURCE_LABELS=SOURCE_LABELS,
    SCENARIO_LABELS=SCENARIO_LABELS,
    LEVEL_LABELS=LEVEL_LABELS,
    OUTCOME_LABELS=OUTCOME_LABELS,
    MEETING_KIND_LABELS=MEETING_KIND_LABELS,
)


# --- the route class: HTML answers for refusals and missing sessions ----------------------------


class ConsoleRoute(APIRoute):
    """Console routes answer refusals as pages (the API's own code and message), never as JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler: no session → the sign-in page; ApiError → an error page with its status."""
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except NeedSignIn:
                return RedirectResponse(_login_for(request), status_code=303)
            except ApiError as err:
                page = error_page(request, err.status, err.message, err.code)
                page.headers.update(err.headers or {})  # e.g. a refused range's Content-Range
                return page
            except RequestValidationError:
                return error_page(request, 404, "没有这个页面", "not_found")

        return route


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _login_for(request: Request) -> str:
    """The sign-in page, remembering the console page a GET wanted (a notice's case link) to come back to."""
    path = request.url.path
    if request.method != "GET" or path == "/console" or not path.startswith("/console/"):
        return "/console/login"
    wanted = path + (f"?{request.url.query}" if request.url.query else "")
    return f"/console/login?{urlencode({'next': wanted})}"


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """A page; every page is private (no caching) and never framed."""
    user = ctx.get("user")
    if user is not None:
        # The navigation shows what domain/permissions.py lets this person open.
        ctx.setdefault("may", {"new": permissions.may_create(user) is None,
                               "board": permissions.may_see_board(user) is None,
                               "reports": permissions.may_read_reports(user) is None,
                               "insight": permissions.may_open_insight(user) is None,
                               "whatif": permissions.may_run_whatif(user) is None,
                               "policy": permissions.may_read_policy(user) is None,
                               "league": permissions.may_read_league(user, user.branches) is None,
                               "workflow_record": permissions.may_open_workflow_record(user) is None})
    response = TEMPLATES.TemplateResponse(request, name, ctx, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(request: Request, status: int, message: str, code: str, user: ConsoleUser | None = None) -> HTMLResponse:
    """A refusal as a page: what happened, in Chinese, and a way back."""
    return render(request, "error.html", status=status, message=message, code=code, user=user)


def see(url: str) -> RedirectResponse:
    """After a successful post: back to a page (303, so a reload does not post again)."""
    return RedirectResponse(url, status_code=303)


# --- sign-in -------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_help(request: Request, res: ResourcesDep, next: str | None = None) -> HTMLResponse:  # noqa: A002
    """How to sign in: 企业微信登录 (when configured), or a personal link from the manager or the command line."""
    return render(request, "login.html", owner=None, code=None, wecom=wecom.configured(res.settings),
                  next_page=next or "/console")


@router.get("/login/{code}", response_class=HTMLResponse)
async def login_confirm(request: Request, code: str, res: ResourcesDep) -> HTMLResponse:
    """The page a sign-in link opens: whose link it is and one button (a link preview cannot sign in)."""
    address = client_address(request)
    res.auth_failures.check(address)
    pool = await res.pool()
    owner = await bounded(res, SessionRepository(pool).link_owner(code=code[:100]))
    if owner is None:
        res.auth_failures.failed(address)
        return render(request, "login.html", status=404, owner=None, code=None,
                      message="登录链接无效、已使用或已过期，请向经理或管理员索取新的链接（intake staff link <编号>）")
    return render(request, "login.html", owner=owner, code=code, role_label=ROLE_LABELS[owner.role])


@router.post("/login/{code}")
async def login(request: Request, code: str, res: ResourcesDep) -> Response:
    """Redeem a sign-in link once: open a session and set its cookie (posts from the console's origin only)."""
    check_origin(request, res.settings)
    address = client_address(request)
    res.auth_failures.check(address)
    pool = await res.pool()
    ttl = timedelta(hours=res.settings.console_session_hours)
    got = await bounded(
        res, SessionRepository(pool).redeem_link(code=code[:100], ttl=ttl, user_agent=request.headers.get("user-agent"))
    )
    if got is None:
        res.auth_failures.failed(address)
        return render(request, "login.html", status=404, owner=None, code=None,
                      message="登录链接无效、已使用或已过期，请向经理或管理员索取新的链接")
    token, _ = got
    response = see("/console")
    set_session_cookie(response, request, token, res.settings.console_session_hours, settings=res.settings)
    return response


@router.post("/logout")
async def logout(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """Sign out: the session is revoked in the database and the cookie forgotten."""
    form = await request.form()
    check_csrf(user, _str(form.get("csrf")))
    pool = await res.pool()
    await bounded(res, SessionRepository(pool).revoke(token=user.token))
    response = see("/console/login")
    clear_session_cookie(response, request, settings=res.settings)
    return response


# --- 我的待办 -------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """我的待办: the person's open steps, soonest due first, overdue in red with how late."""
    pool = await res.pool()
    holding = await holding_for(res, user)
    rows, total = await bounded(res, queries.my_tasks(pool, viewer=viewer(user), role=user.role.value, limit=200,
                                                      offset=0, holding_for=holding))
    now = datetime.now(UTC)
    allowed = await contact_map(res, user, rows, "console 我的待办")
    tasks = [task_item(r, now, contact=ok) for r, ok in zip(rows, allowed, strict=True)]
    return render(request, "home.html", user=user, tasks=tasks, total=total, nav="home")


# --- the case page ---------------------------------------------------------------------------------


def _owns(user: ConsoleUser, step: OpenStep, facts: permissions.CaseFacts) -> bool:
    """Whether the form of a step is shown to this person (the workflow's validator asks the same rule)."""
    owner_id = step.owner.id if step.owner else None
    return permissions.complete_step(user, step.step, facts, owner_role=step.owner_role, owner_id=owner_id) is None


def _owner_text(step: OpenStep, view: CaseView) -> str:
    who = step.owner.name if step.owner else None
    if step.owner_role == Role.designer and view.designer:
        who = view.designer.name
    role = ROLE_LABELS[step.owner_role]
    return f"{role} {who}" if who else role


async def _picks(res: Any, row: Any, step: StepName) -> list[dict[str, Any]]:
    """Suggestions with reasons for an assignment field (designers by rotation, assistants by load)."""
    pool = await res.pool()
    out: list[dict[str, Any]] = []
    if step == StepName.assign_assistant:
        for s in await services.assistant_ranking(res, pool, row["id"]):
            out.append({"id": s.staff.id, "name": s.staff.name, "level": None, "reasons": s.reasons,
                        "eligible": True, "open_cases": s.open_cases})
        return out
    for d in await services.designer_ranking(res, pool, row, include_ineligible=True):
        out.append({"id": d.staff.id, "name": d.staff.name,
                    "level": LEVEL_LABELS.get(d.staff.level) if d.staff.level else None,  # type: ignore[call-overload]
                    "reasons": list(d.reasons), "eligible": d.eligible, "open_cases": d.open_cases})
    return out


async def _case_page(
    request: Request,
    user: ConsoleUser,
    res: Any,
    case_id: int,
    *,
    failed: dict[str, forms.FormState] | None = None,
    status: int = 200,
) -> HTMLResponse:
    access = await open_case(res, user, case_id)
    facts = access.facts
    view = await case_answer(res, user, access, route="console 案例")
    messages = await services.case_messages(res, case_id, user=user)
    allowed = permissions.allowed_actions(user, facts)
    failed = failed or {}
    step_forms: list[dict[str, Any]] = []
    for step in view.open_steps:
        entry: dict[str, Any] = {"step": step, "owner_text": _owner_text(step, view), "mine": _owns(user, step, facts)}
        if entry["mine"] and step.step in STEP_PAYLOADS:
            state = failed.get(step.step.value) or forms.FormState()
            # Prefilled answers (e.g. the on-duty designer) first, then what was just typed.
            values = {**{k: v for k, v in step.prefill.items() if not isinstance(v, dict)}, **state.values}
            fields = forms.model_fields(services.step_body_model(step.step), values=values, errors=state.errors,
                                        texts=forms.STEP_TEXTS.get(step.step.value), submitted=bool(state.values))
            for f in fields:
                if f.kind == "pick":
                    target = StepName.assign_assistant if f.name.endswith("assistant_id") else StepName.assign_designer
                    try:
                        f.picks = await _picks(res, access.row, target)
                    except ApiError:
                        f.picks = []
                    pre = step.prefill.get("designer" if target == StepName.assign_designer else "assistant")
                    if not f.value and isinstance(pre, dict):
                        f.value = pre.get("id")
                    if step.step in (StepName.assign_designer, StepName.assign_assistant) and f.picks:
                        # The assignment itself: someone is chosen; the first suggestion is the default.
                        f.required = True
                        first = next((p for p in f.picks if p["eligible"]), None)
                        f.value = f.value or (first["id"] if first else None)
            entry.update(fields=fields, state=state)
        step_forms.append(entry)
    # A refusal for a step that shows no form here (not this person's, no longer open): said at the top.
    shown = {e["step"].step.value for e in step_forms if e["mine"]}
    page_error = next((st.message for key, st in failed.items()
                       if key in StepName.__members__ and key not in shown and st.message), None)
    staff_lists: dict[str, list[Any]] = {}
    branch_id = access.row["branch_id"]
    if Action.reassign in allowed:
        pool = await res.pool()
        repo = StaffRepository(pool)
        designers = await bounded(res, repo.list(role=Role.designer, active_only=True))
        assistants = await bounded(res, repo.list(role=Role.assistant, active_only=True))
        staff_lists = {  # the case's branch's people only (another branch's cannot be assigned)
            key: [s for s in people if permissions.serves_branch(s.branch_id, s.extra_branches, branch_id)]
            for key, people in (("designer", designers), ("assistant", assistants))
        }
    # 转分公司: the branches this person may move the case to (the director, a regional manager).
    active_branches = await bounded(res, BranchRepository(await res.pool()).list())
    targets = set(permissions.transfer_targets(user, facts, [b.id for b in active_branches]))
    transfer_to = [b for b in active_branches if b.id in targets]
    can = {a.value: a in allowed for a in Action} | {"record": Action.upload_recording in allowed}
    # The recordings (录音): listed with a player for those who may listen; the upload form for the manager.
    recordings: list[Any] | None = (
        await services.list_recordings(res, user, case_id) if Action.listen in allowed else None
    )
    done = request.query_params.get("done")
    return render(
        request,
        "case.html",
        status=status,
        user=user,
        view=view,
        phone=view.client.phone,
        phone_full=access.contact,
        messages=messages.items,
        step_forms=step_forms,
        failed=failed,
        page_error=page_error,
        can=can,
        staff_lists=staff_lists,
        transfer_to=transfer_to,
        recordings=recordings,
        stage_label=stage_label(view.stage),
        policy_text=version_label(access.row["policy_version"], access.row["policy"]),
        temporal_url=res.settings.temporal_workflow_url(view.workflow_id),
        done=STEP_LABELS[StepName(done)] if done and done in StepName.__members__ else None,
        action_done={"reschedule": "已改期", "reassign": "已更换", "close": "已结案", "note": "已添加备注",
                     "recording": "录音已上传", "transfer": "已转分公司"}.get(
            request.query_params.get("ok", "")
        ),
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(request: Request, case_id: int, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The case: stage, client, open steps with their forms, suggestions, timeline, SMS, meetings."""
    if not 1 <= case_id <= 2**53:
        raise ApiError(404, "case_not_found", f"没有编号为 {case_id} 的案例")
    return await _case_page(request, user, res, case_id)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@router.post("/cases/{case_id}/steps/{step}")
async def complete_step(request: Request, case_id: int, step: str, user: SignedIn, res: ResourcesDep) -> Response:
    """Complete a step from its form: the JSON API's service with the form's values."""
    form = await request.form()
    check_csrf(user, _str(form.get("csrf")))
    try:
        name = StepName(step)
    except ValueError:
        raise ApiError(404, "unknown_step", f"没有这个步骤：{step[:40]}") from None
    if name not in STEP_PAYLOADS:
        raise ApiError(404, "unknown_step", f"没有这个步骤：{step[:40]}")
    model = services.step_body_model(name)
    values = forms.form_values(form)
    try:
        body = model.model_validate(forms.form_to_data(model, form))
        await services.complete_step(res, user, case_id, name, body, _str(form.get("idempotency_key")))
    except ValidationError as exc:
        state = forms.validation_errors(exc)
        state.values = values
        return await _case_page(request, user, res, case_id, failed={name.value: state}, status=422)
    except ApiError as err:
        if err.status in (401, 404, 503):
            raise
        state = forms.api_errors(err)
        state.values = values
        return await _case_page(request, user, res, case_id, failed={name.value: state}, status=err.status)
    return see(f"/console/cases/{case_id}?done={name.value}")


@router.post("/cases/{case_id}/recordings")
async def upload_recording(request: Request, case_id: int, user: SignedIn, res: ResourcesDep) -> Response:
    """Upload a recording from the case page: the JSON API's service; a refusal shown in Chinese on the page.

    The session, the form token (in the form's address, so it is judged before the body), the case and
    the role are checked before one byte of the file is read."""
    if not 1 <= case_id <= 2**53:
        raise ApiError(404, "case_not_found", f"没有编号为 {case_id} 的案例")
    check_csrf(user, request.query_params.get("csrf"))
    await services.may_upload(res, user, case_id)
    try:
        await services.upload_recording(res, user, case_id, request)
    except ApiError as err:
        if err.status in (401, 404, 503):
            raise
        state = forms.api_errors(err)
        state.message = err.message
        return await _case_page(request, user, res, case_id, failed={"recording": state}, status=err.status)
    return see(f"/console/cases/{case_id}?ok=recording#recordings")


@router.get("/cases/{case_id}/recordings/{recording_id}")
async def play_recording(request: Request, case_id: int, recording_id: int, user: SignedIn, res: ResourcesDep) -> Response:
    """The src of the case page's player: the JSON API's playback (same permission, HTTP Range) for this session."""
    if not 1 <= case_id <= 2**53:
        raise ApiError(404, "case_not_found", f"没有编号为 {case_id} 的案例")
    range_header = request.headers.get("range")
    if range_header and len(range_header) > 200:
        range_header = None  # not a range we serve: the whole file, as RFC 9110 allows
    return await services.play_recording(res, user, case_id, recording_id, range_header)


_ACTIONS: dict[str, tuple[type[Any], Callable[..., Any]]] = {
    "reschedule": (RescheduleRequest, services.reschedule),
    "reassign": (ReassignRequest, services.reassign),
    "close": (CloseRequest, services.close_case),
    "note": (NoteRequest, services.add_note),
    "transfer": (TransferRequest, services.transfer_case),
}


@router.post("/cases/{case_id}/{action}")
async def case_action(request: Request, case_id: int, action: str, user: SignedIn, res: ResourcesDep) -> Response:
    """Reschedule, reassign, close or add a note: the JSON API's services with the form's values."""
    if action not in _ACTIONS:
        raise ApiError(404, "not_found", "没有这个操作")
    form = await request.form()
    check_csrf(user, _str(form.get("csrf")))
    model, service = _ACTIONS[action]
    values = forms.form_values(form)
    try:
        body = model.model_validate(forms.form_to_data(model, form))
        await service(res, user, case_id, body, _str(form.get("idempotency_key")))
    except ValidationError as exc:
        state = forms.validation_errors(exc)
        state.values = values
        return await _case_page(request, user, res, case_id, failed={action: state}, status=422)
    except ApiError as err:
        if err.status in (401, 404, 503):
            raise
        state = forms.api_errors(err)
        state.values = values
        return await _case_page(request, user, res, case_id, failed={action: state}, status=err.status)
    return see(f"/console/cases/{case_id}?ok={action}")


# --- new client ------------------------------------------------------------------------------------


async def _new_page(
    request: Request, user: ConsoleUser, res: Any, state: forms.FormState | None = None, status: int = 200
) -> HTMLResponse:
    submitted = state is not None
    state = state or forms.FormState(values={"source": "online", "scenario": "office_visit"})
    pool = await res.pool()
    reach = user.branches
    receivers = [
        s for s in await bounded(res, StaffRepository(pool).list(active_only=True))
        if permissions.may_receive(s.role, Scenario.site_office)
        and (reach is None or any(permissions.serves_branch(s.branch_id, s.extra_branches, b) for b in reach))
    ]
    fields = forms.model_fields(IntakeCreate, values=state.values, errors=state.errors, submitted=submitted)
    # The branch is chosen only by who spans several (head office, a regional manager): among theirs.
    choosable = [b for b in await bounded(res, BranchRepository(pool).list())
                 if permissions.may_create_in(user, b.id) is None]
    for f in fields:
        if f.name == "branch_id":
            f.kind, f.label = "select", "分公司"
            f.options = [("", "（默认：接待人员或我所在的分公司）"), *((str(b.id), b.name) for b in choosable)]
    top = [f for f in fields if f.name not in ("client", "received_by")
           and (f.name != "branch_id" or len(choosable) > 1)]
    client = next(f for f in fields if f.name == "client")
    return render(
        request, "new.html", status=status, user=user, state=state, top=top, client_fields=client.fields,
        receivers=receivers, key=uuid.uuid4().hex, nav="new",
    )


@router.get("/new", response_class=HTMLResponse)
async def new_client_form(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The new-client form (业务顾问、小区负责人、经理)."""
    refuse(permissions.may_create(user))
    return await _new_page(request, user, res)


@router.post("/new")
async def new_client(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """Create the case through the API's creation service; a duplicate phone links to the open case."""
    refuse(permissions.may_create(user))
    form = await request.form()
    check_csrf(user, _str(form.get("csrf")))
    values = forms.form_values(form)
    data = forms.form_to_data(IntakeCreate, form)
    if data.get("scenario") == Scenario.walk_in.value:
        # A walk-in's checklist is always recorded: a box left unticked is an item not done.
        data.setdefault("reception", {})
    try:
        body = IntakeCreate.model_validate(data)
        out = await services.create_case(res, body, user, _str(form.get("idempotency_key")))
    except ValidationError as exc:
        state = forms.validation_errors(exc)
        state.values = values
        return await _new_page(request, user, res, state, status=422)
    except ApiError as err:
        if err.status in (401, 503):
            raise
        state = forms.api_errors(err)
        state.values = values
        return await _new_page(request, user, res, state, status=err.status)
    if out.status != 201:  # a replayed refusal (the same form sent twice)
        body_json = out.body if isinstance(out.body, dict) else {}
        state = forms.FormState(values=values, message=str(body_json.get("message", "建档失败")))
        if body_json.get("case_id"):
            state.case_link = int(body_json["case_id"])
        return await _new_page(request, user, res, state, status=out.status)
    return see(f"/console/cases/{out.body['id']}")


# --- manager board ---------------------------------------------------------------------------------


async def _branch_view(request: Request, user: ConsoleUser, res: Any) -> dict[str, Any]:
    """The branches a board or report page covers (`?branch=CODE`: one of the reader's; 403, 422 otherwise)
    and, for whoever spans several, the branches to pick from."""
    code = request.query_params.get("branch") or None
    branches, asked = await services.report_scope(res, user, code[:64] if code else None)
    choices: list[Any] = []
    if user.branches is None or len(user.branches) > 1:
        everyone = await bounded(res, BranchRepository(await res.pool()).list(include_closed=True))
        choices = [b for b in everyone if user.branches is None or b.id in user.branches]
    return {"branch_ids": branches, "branch": asked, "branch_choices": choices,
            "league": permissions.may_read_league(user, user.branches) is None}


async def _board_data(request: Request, res: Any, branches: list[int] | None) -> dict[str, Any]:
    q = request.query_params
    designer = q.get("designer_id") or None
    source = q.get("source") if q.get("source") in Source.__members__ else None
    scenario = q.get("scenario") if q.get("scenario") in Scenario.__members__ else None
    overdue = {"1": True, "0": False}.get(q.get("overdue", ""))
    pool = await res.pool()
    rows = await bounded(res, queries.board_cases(
        pool,
        designer_id=int(designer) if designer and designer.isdigit() and len(designer) < 16 else None,
        source=source, scenario=scenario, overdue=overdue, branches=branches,
    ))
    stages: dict[str, list[Any]] = {}
    for r in rows:
        stages.setdefault(r["stage"], []).append(r)
    # Who holds a manager's steps while the manager is away (the deputy, SPEC §14).
    holders = await bounded(res, StaffRepository(pool).holders(calendar=res.policy().calendar,
                                                               now=datetime.now(UTC)))
    return {
        "holders": {manager_id: deputy.name for manager_id, deputy in holders.items()},
        "groups": [(stage, stage_label(stage), items) for stage, items in stages.items()],
        "count": len(rows),
        "overdue_count": sum(1 for r in rows if r["overdue"]),
        "filters": {"designer_id": designer or "", "source": source or "", "scenario": scenario or "",
                    "overdue": q.get("overdue", ""), "branch": q.get("branch", "")},
        "temporal": res.settings.temporal_workflow_url,
        "refreshed": local_time(datetime.now(UTC)),
    }


@router.get("/board", response_class=HTMLResponse)
async def board(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """Open cases by stage, overdue and escalated first, with filters; refreshes by itself."""
    refuse(permissions.may_see_board(user))
    scope = await _branch_view(request, user, res)
    data = await _board_data(request, res, scope["branch_ids"])
    pool = await res.pool()
    designers = [d for d in await bounded(res, StaffRepository(pool).list(role=Role.designer))
                 if scope["branch_ids"] is None or d.branch_id in scope["branch_ids"]]
    if request.headers.get("HX-Request") == "true":
        return render(request, "_board_rows.html", user=user, **data)
    # 今日晨报: whoever sees the board reads today's morning summary (as sent, else as it stands now).
    summary = await services.morning_summary(res, user, check=permissions.may_see_board)
    return render(request, "board.html", user=user, designers=designers, nav="board", summary=summary,
                  refresh=BOARD_REFRESH_SECONDS, query=str(request.url.query), **scope, **data)


# --- reports ---------------------------------------------------------------------------------------


@router.get("/reports", response_class=HTMLResponse)
async def reports(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """Charts for the manager and the director: on time, callback time, escalations, rotation, funnel."""
    refuse(permissions.may_read_reports(user))
    try:
        days = max(1, min(400, int(request.query_params.get("days", "30"))))
    except ValueError:
        days = 30
    to = datetime.now(UTC)
    frm = to - timedelta(days=days)
    scope = await _branch_view(request, user, res)
    code = scope["branch"].code if scope["branch"] else None
    sla = await services.sla_report(res, user, period_from=frm, period_to=to, branch=code)
    by_source = await services.sla_report(res, user, group_by="source", period_from=frm, period_to=to, branch=code)
    allocation = await services.allocation_report(res, user, period_from=frm, period_to=to, branch=code)
    pool = await res.pool()
    branches = scope["branch_ids"]
    funnel_source = await bounded(res, queries.funnel(pool, period_from=frm, period_to=to, group_by="source",
                                                      branches=branches))
    funnel_designer = await bounded(res, queries.funnel(pool, period_from=frm, period_to=to, group_by="designer",
                                                        branches=branches))

    def pct(v: float | None) -> float | None:
        return round(v * 100, 1) if v is not None else None

    callback_rows = [r for r in by_source.rows if r.step == StepName.callback]
    # Minutes as a rule; seconds when every figure is under two minutes (the fast demo policy).
    in_seconds = all((r.p90_seconds or 0) < 120 for r in callback_rows)
    unit = "秒" if in_seconds else "分钟"

    def minutes(v: float | None) -> float | None:
        if v is None:
            return None
        return round(v, 1) if in_seconds else round(v / 60, 1)

    charts = {
        "ontime": {"type": "bar", "labels": [r.step_label for r in sla.rows],
                   "series": [{"label": "按时完成率 %", "data": [pct(r.on_time_share) for r in sla.rows]}],
                   "max": 100},
        "callback": {"type": "bar", "labels": [r.group_label or "全部" for r in callback_rows],
                     "series": [{"label": f"中位数（{unit}）", "data": [minutes(r.median_seconds) for r in callback_rows]},
                                {"label": f"P90（{unit}）", "data": [minutes(r.p90_seconds) for r in callback_rows]}]},
        "escalations": {"type": "bar", "labels": [r.step_label for r in sla.rows],
                        "series": [{"label": "升级次数", "data": [r.escalations for r in sla.rows]},
                                   {"label": "发生升级的步骤", "data": [r.escalated for r in sla.rows]}]},
        "rotation": {"type": "bar", "labels": [r.designer.name for r in allocation.rows],
                     "series": [{"label": "分到的案例", "data": [r.assigned for r in allocation.rows]},
                                {"label": "首推被跳过", "data": [r.passed_over for r in allocation.rows]},
                                {"label": "当前在手", "data": [r.open_cases for r in allocation.rows]}]},
        "funnel_source": _funnel_chart(funnel_source, source_labels=True),
        "funnel_designer": _funnel_chart(funnel_designer, source_labels=False),
    }
    return render(
        request, "reports.html", user=user, nav="reports", days=days, sla=sla, callback_rows=callback_rows,
        allocation=allocation, funnel_source=funnel_source, funnel_designer=funnel_designer,
        charts_json=json.dumps(charts, ensure_ascii=False).replace("</", "<\\/"), minutes=minutes, pct=pct,
        source_label=lambda v: SOURCE_LABELS.get(Source(v), v) if v in Source.__members__ else v, **scope,
    )


@router.get("/branches", response_class=HTMLResponse)
async def branches_page(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The league table of branches (分公司排行) for head office, each branch linking to its board and reports."""
    refuse(permissions.may_read_league(user, user.branches))
    try:
        days = max(1, min(400, int(request.query_params.get("days", "30"))))
    except ValueError:
        days = 30
    to = datetime.now(UTC)
    table = await services.branch_league(res, user, period_from=to - timedelta(days=days), period_to=to)

    def pct(v: float | None) -> str:
        return f"{v * 100:.0f}%" if v is not None else "—"

    charts = {"league": {"type": "bar", "labels": [r.branch.name for r in table.rows if r.branch], "max": 100,
                         "series": [{"label": "按时率 %", "data": [round(r.on_time_share * 100, 1) if r.on_time_share
                                                                 is not None else None for r in table.rows]},
                                    {"label": "签单率 %", "data": [round(r.signed_rate * 100, 1) if r.signed_rate
                                                                 is not None else None for r in table.rows]}]}}
    return render(request, "branches.html", user=user, nav="branches", days=days, table=table, pct=pct,
                  charts_json=json.dumps(charts, ensure_ascii=False).replace("</", "<\\/"))


def _funnel_chart(rows: list[Any], *, source_labels: bool) -> dict[str, Any]:
    def name(r: Any) -> str:
        if source_labels and r["label"] in Source.__members__:
            return SOURCE_LABELS[Source(r["label"])]
        return str(r["label"])

    return {"type": "bar", "labels": [name(r) for r in rows],
            "series": [{"label": "线索", "data": [r["leads"] for r in rows]},
                       {"label": "首次见面", "data": [r["first_meeting"] for r in rows]},
                       {"label": "签单", "data": [r["signed"] for r in rows]}]}
