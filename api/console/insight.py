"""The console's insight pages (SPEC §16): the team's scorecards and habits, a person's own scorecard, Excel.

Who sees which page is domain/permissions.py's: the manager and the director everyone's (and the habits),
a designer or an assistant only their own scorecard (another person's answers 403 not_your_scorecard).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.auth import SignedIn
from api.console.routes import TEMPLATES, ConsoleRoute, render
from api.deps import ResourcesDep, refuse
from api.services import insight
from domain import permissions
from domain.insight import ITEM_LABELS

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

# The scripts of a page with charts: the vendored Chart.js and the small drawer of insight's charts.
TEMPLATES.env.globals["chart_scripts"] = (
    '<script src="/static/vendor/chart.umd.min.js" defer></script>\n<script src="/static/insight.js" defer></script>')

DAY_CHOICES = (30, 90, 180, 365)


def _days(request: Request) -> int:
    try:
        return max(1, min(insight.MAX_DAYS, int(request.query_params.get("days", str(insight.DEFAULT_DAYS)))))
    except ValueError:
        return insight.DEFAULT_DAYS


def _branch(request: Request) -> str | None:
    """`?branch=CODE`: one of the reader's branches (the services refuse another)."""
    code = request.query_params.get("branch")
    return code[:64] if code else None


def _pct(v: float | None) -> float | None:
    return round(v * 100, 1) if v is not None else None


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


@router.get("/insight", response_class=HTMLResponse)
async def insight_page(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """The team's scorecards and the habits (manager, director); a designer or assistant is sent to their own."""
    refuse(permissions.may_open_insight(user))
    days = _days(request)
    own = permissions.scorecard_scope(user)
    if own is not None:
        return RedirectResponse(f"/console/insight/staff/{own}?days={days}", status_code=303)
    team, habits = await insight.team(res, user, days=days, branch=_branch(request))
    cards = team.cards
    charts = {
        "team": {"type": "bar", "labels": [c.name for c in cards], "max": 100,
                 "series": [{"label": "步骤按时率 %", "data": [_pct(c.total.steps_on_time.share) for c in cards]},
                            {"label": "纠正按时确认率 %", "data": [_pct(c.total.acknowledged_in_time.share) for c in cards]}]},
        "habits": {"type": "interval", "labels": [h.label for h in habits.habits], "max": 100,
                   "series": [{"label": "做到：签单率 95% 区间",
                               "data": [[_pct(h.with_low), _pct(h.with_high)] if h.with_cases else None
                                        for h in habits.habits]},
                              {"label": "未做到：签单率 95% 区间",
                               "data": [[_pct(h.without_low), _pct(h.without_high)] if h.without_cases else None
                                        for h in habits.habits]}]},
    }
    return render(request, "insight.html", user=user, nav="insight", days=days, day_choices=DAY_CHOICES, team=team,
                  habits=habits, pct=_pct, charts_json=_json(charts))


@router.get("/insight/staff/{staff_id}", response_class=HTMLResponse)
async def scorecard_page(request: Request, staff_id: int, user: SignedIn, res: ResourcesDep) -> Response:
    """One person's scorecard per week, with charts: their own, or anyone's for the manager and the director."""
    days = _days(request)
    card = await insight.scorecard(res, user, staff_id, days=days, branch=_branch(request))
    weeks = card.weeks
    must_keys = [k for k in ITEM_LABELS if any(i.key == k for w in weeks for i in w.items)]
    charts = {
        "weeks": {"type": "line", "labels": [w.label.split("（")[0] for w in weeks], "max": 100,
                  "series": [{"label": "步骤按时率 %", "data": [_pct(w.steps_on_time.share) for w in weeks]},
                             {"label": "纠正按时确认率 %", "data": [_pct(w.acknowledged_in_time.share) for w in weeks]}]},
        "items": {"type": "bar", "labels": [ITEM_LABELS[k] for k in must_keys], "max": 100,
                  "series": [{"label": "做到 %", "data": [
                      _pct(next((i.share for i in card.total.items if i.key == k), None)) for k in must_keys]}]},
        "escalations": {"type": "bar", "labels": [w.label.split("（")[0] for w in weeks],
                        "series": [{"label": "升级次数", "data": [w.escalations for w in weeks]},
                                   {"label": "收到纠正", "data": [w.corrections for w in weeks]}]},
    }
    return render(request, "scorecard.html", user=user, nav="insight", days=days, day_choices=DAY_CHOICES, card=card,
                  pct=_pct, charts_json=_json(charts), team_view=permissions.scorecard_scope(user) is None)


@router.get("/insight/export.xlsx")
async def export(request: Request, user: SignedIn, res: ResourcesDep) -> Response:
    """The Excel workbook: one's own scorecard, or everyone's and the habits (manager, director)."""
    raw = request.query_params.get("staff_id")
    staff_id = int(raw) if raw and raw.isdigit() and len(raw) < 16 else None
    body = await insight.export(res, user, staff_id=staff_id, days=_days(request), branch=_branch(request))
    name = f"scorecard-{staff_id}.xlsx" if staff_id else "scorecards.xlsx"
    return Response(body, media_type=insight.XLSX, headers={"Content-Disposition": f'attachment; filename="{name}"',
                                                            "Cache-Control": "no-store"})
