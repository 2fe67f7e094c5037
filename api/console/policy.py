"""The console's policy pages (SPEC §16): the policy edited as a form, versions with a diff, the what-if.

The form is generated from the policy model (domain/policy_admin.py) and checked exactly as a policy
file is; a save shows the diff first, and the what-if of the edit is one click from it. Who may read,
edit and run what is domain/permissions.py's.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console.auth import ConsoleUser, SignedIn, check_csrf
from api.console.forms import TZ
from api.console.routes import ConsoleRoute, render, see
from api.deps import ResourcesDep, refuse
from api.errors import ApiError
from api.services import policy as policy_service
from api.services import whatif as whatif_service
from domain import permissions, policy_admin
from domain.policy import Policy
from store.branches import Branch, BranchRepository

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

DEFAULT_WHATIF_DAYS = 90


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


async def _posted(request: Request, user: ConsoleUser, rule: Any) -> Any:
    """The posted form of a person `rule` (a domain.permissions rule) lets through, its CSRF token checked."""
    refuse(rule(user))
    form = await request.form()
    check_csrf(user, _str(form.get("csrf")) or None)
    return form


def _day(value: str, default: date) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return default


# --- what-if ---------------------------------------------------------------------------------------


async def _whatif_page(request: Request, user: ConsoleUser, res: Any, *, yaml_text: str = "", label: str = "",
                       errors: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
    refuse(permissions.may_run_whatif(user))
    current, version = await policy_service.current_policy(res)
    today = datetime.now(TZ).date()
    q = request.query_params
    return render(request, "whatif.html", status=status, user=user, nav="whatif",
                  yaml_text=yaml_text or policy_admin.policy_yaml(current), label=label or "编辑后的规则",
                  current_label=policy_service.version_label(version, current.model_dump(mode="json")),
                  period_from=_day(q.get("from", ""), today - timedelta(days=DEFAULT_WHATIF_DAYS)),
                  period_to=_day(q.get("to", ""), today), errors=errors or {},
                  runs=await whatif_service.recent(res, user))


@router.get("/whatif", response_class=HTMLResponse)
async def whatif_form(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The what-if form: a policy (YAML, the current one to start from) and a period of past cases."""
    return await _whatif_page(request, user, res)


@router.post("/whatif")
async def whatif_start(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """Start a what-if run of the posted policy over the posted period; then its page."""
    form = await _posted(request, user, permissions.may_run_whatif)
    text = _str(form.get("policy_yaml"))
    label = _str(form.get("label")).strip() or "编辑后的规则"
    policy, errors = policy_admin.parse_text(text)
    today = datetime.now(TZ).date()
    frm = _day(_str(form.get("period_from")), today - timedelta(days=DEFAULT_WHATIF_DAYS))
    to = _day(_str(form.get("period_to")), today)
    if policy is None:
        return await _whatif_page(request, user, res, yaml_text=text, label=label, errors=errors, status=422)
    start = datetime.combine(frm, time(0), TZ).astimezone(UTC)
    end = datetime.combine(to + timedelta(days=1), time(0), TZ).astimezone(UTC)
    try:
        run_id = await whatif_service.start(res, user, policy, label=label, period_from=start, period_to=end)
    except ApiError as err:
        if err.status != 422:
            raise
        return await _whatif_page(request, user, res, yaml_text=text, label=label, errors={"period": err.message},
                                  status=422)
    return see(f"/console/whatif/{run_id}")


@router.get("/whatif/{run_id}", response_class=HTMLResponse)
async def whatif_run(request: Request, run_id: int, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """A run: "推演中" until done, then the leads side by side, fairness, late steps, director pages, reclaims."""
    run = await whatif_service.get(res, user, run_id)
    charts: dict[str, Any] = {}
    r = run.result or {}
    if run.status == "done" and r:
        base = {f["designer_id"]: f for f in r["fairness"]["baseline"]}
        alt = {f["designer_id"]: f for f in r["fairness"]["whatif"]}
        ids = sorted(set(base) | set(alt))
        name = {i: (alt.get(i) or base[i])["name"] for i in ids}

        def share(d: dict[int, Any], i: int) -> float | None:
            v = d.get(i, {}).get("share")
            return round(v * 100, 1) if v is not None else None

        charts["fairness"] = {"type": "bar", "labels": [name[i] for i in ids],
                              "series": [{"label": "实际规则 %", "data": [share(base, i) for i in ids]},
                                         {"label": "推演规则 %", "data": [share(alt, i) for i in ids]},
                                         {"label": "按权重的理想份额 %",
                                          "data": [round((alt.get(i) or base[i])["ideal"] * 100, 1) for i in ids]}]}
        keys = [("steps_late", "超时步骤"), ("escalations", "升级"), ("director_pages", "通知总经理"),
                ("reclaims", "掉保收回"), ("no_eligible", "无合适设计师")]
        charts["totals"] = {"type": "bar", "labels": [lbl for _, lbl in keys],
                            "series": [{"label": "实际规则", "data": [r["totals"]["baseline"][k] for k, _ in keys]},
                                       {"label": "推演规则", "data": [r["totals"]["whatif"][k] for k, _ in keys]}]}
    return render(request, "whatif_run.html", user=user, nav="whatif", run=run, r=r,
                  charts_json=json.dumps(charts, ensure_ascii=False).replace("</", "<\\/"),
                  totals_labels=[("steps_late", "超时步骤"), ("escalations", "升级次数"), ("director_pages", "通知总经理"),
                                 ("reclaims", "掉保收回"), ("no_eligible", "无合适设计师的线索"),
                                 ("not_replayed", "无法照做的记录")])


# --- the policy ------------------------------------------------------------------------------------


async def _branches(res: Any, code: str) -> tuple[Branch | None, list[Branch]]:
    """The branch a policy page is about (`?branch=CODE`; none: the chain's) and every active branch."""
    pool = await res.pool()
    repo = BranchRepository(pool)
    every = await repo.list()
    if not code:
        return None, every
    found = await repo.by_code(code)
    if found is None:
        raise ApiError(404, "branch_not_found", f"没有代码为 {code} 的分公司")
    return found, every


def _scope(branch: Branch | None) -> str:
    """The query string of a policy page's branch ("" for the chain's)."""
    return f"?branch={branch.code}" if branch else ""


async def _policy_page(request: Request, user: ConsoleUser, res: Any, *, fields: list[policy_admin.PolicyField] | None
                       = None, errors: list[str] | None = None, status: int = 200, note: str = "",
                       branch: Branch | None = None, branches: list[Branch] | None = None) -> HTMLResponse:
    branch_id = branch.id if branch else None
    current, version = await policy_service.current_policy(res, branch_id)
    editable = permissions.may_edit_policy(user) is None
    groups: dict[str, list[policy_admin.PolicyField]] = {}
    for f in fields or policy_admin.form_fields(current):
        groups.setdefault(f.group, []).append(f)
    return render(request, "policy.html", status=status, user=user, nav="policy", editable=editable,
                  groups=groups, errors=errors or [], version=version, note=note,
                  current_label=policy_service.version_label(version, current.model_dump(mode="json")),
                  yaml_text=policy_admin.policy_yaml(current),
                  versions=await policy_service.history(res, user, branch_id),
                  saved=request.query_params.get("saved"), branch=branch, branches=branches or [])


@router.get("/policy", response_class=HTMLResponse)
async def policy_page(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The policy in force (the chain's, or `?branch=CODE`'s) and its versions; for the admin, the form to edit it."""
    refuse(permissions.may_read_policy(user))
    branch, branches = await _branches(res, request.query_params.get("branch", ""))
    return await _policy_page(request, user, res, branch=branch, branches=branches)


@router.post("/policy", response_class=HTMLResponse)
async def policy_preview(request: Request, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """The edited form checked as a policy file; errors beside their fields, or the diff before saving."""
    form = await _posted(request, user, permissions.may_edit_policy)
    branch, branches = await _branches(res, _str(form.get("branch")))
    current, version = await policy_service.current_policy(res, branch.id if branch else None)
    fields = policy_admin.form_fields(current)
    values = {k: _str(v) for k, v in form.items()}
    checked = {k for k, v in form.items() if v == "on"}
    new, text, errors = policy_admin.parse_form(fields, values, checked)
    note = _str(form.get("note"))
    if new is None:
        shown = policy_admin.form_fields(current)
        for f in shown:  # what was typed stays in the form
            f.value = values.get(f.path, f.value) if f.kind != "bool" else f.value
            f.checked = f.path in checked if f.kind == "bool" else f.checked
        left = policy_admin.attach_errors(shown, errors)
        return await _policy_page(request, user, res, fields=shown, errors=left, status=422, note=note,
                                  branch=branch, branches=branches)
    changes = policy_admin.diff(current, new)
    today = datetime.now(TZ).date()
    return render(request, "policy_diff.html", user=user, nav="policy", changes=changes, yaml_text=policy_admin.policy_yaml(new),
                  based_on=version if version is not None else "", note=note, branch=branch,
                  current_label=policy_service.version_label(version, current.model_dump(mode="json")),
                  period_from=today - timedelta(days=DEFAULT_WHATIF_DAYS), period_to=today)


@router.post("/policy/save")
async def policy_save(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """Save the previewed policy as the next version (new cases take it; running cases keep theirs)."""
    form = await _posted(request, user, permissions.may_edit_policy)
    new, errors = policy_admin.parse_text(_str(form.get("policy_yaml")))
    if new is None:
        raise ApiError(422, "invalid_policy", "规则内容不正确：" + "；".join(f"{k}: {v}" for k, v in errors.items()))
    raw = _str(form.get("based_on"))
    branch, _ = await _branches(res, _str(form.get("branch")))
    number = await policy_service.save(res, user, new, based_on=int(raw) if raw.isdigit() else None,
                                       note=_str(form.get("note")), branch_id=branch.id if branch else None)
    scope = _scope(branch)
    return see(f"/console/policy{scope}{'&' if scope else '?'}saved={number}")


@router.get("/policy/versions/{number}", response_class=HTMLResponse)
async def policy_version(request: Request, number: int, user: SignedIn, res: ResourcesDep) -> HTMLResponse:
    """One saved version: who saved it, when, what changed, and its whole text."""
    v = await policy_service.version(res, user, number)
    return render(request, "policy_version.html", user=user, nav="policy", v=v, Policy=Policy)
