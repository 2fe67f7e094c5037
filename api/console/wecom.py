"""Signing in to the console from WeCom (企业微信登录): WeCom's web OAuth, scope snsapi_base.

``GET /console/login/wecom`` sends the browser to WeCom's authorize page with a fresh ``state`` that
is also kept in a short-lived HttpOnly cookie; WeCom sends it back to ``/console/login/wecom/callback``
with a one-time ``code``. A callback whose ``state`` is not the cookie's (someone else's page started
it: login CSRF) changes nothing. The code is exchanged for the member id (``auth/getuserinfo``); the
staff member registered with that id (``wecom_userid``, not inactive) gets the same console session a
one-time sign-in link opens. Anyone else — not a member of the corp (only an ``openid``), a member
nobody registered, someone who left, a used or forged code — stays signed out and reads why.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

import wecom
from api.console.auth import https_base, set_session_cookie
from api.console.routes import ConsoleRoute, render, see
from api.deps import ResourcesDep, bounded
from api.ratelimit import client_address
from config import Settings
from store.sessions import SessionRepository
from store.staff import StaffRepository

log = logging.getLogger("intake.console")

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

STATE_COOKIE = "intake_wecom_state"
STATE_PATH = "/console/login/wecom"
STATE_MINUTES = 10  # time to pass WeCom's authorize page

NOT_CONFIGURED = "本系统未配置企业微信登录，请使用发给您本人的登录链接"
STALE = "登录请求已过期或来源不明，请重新点击「企业微信登录」"
BAD_CODE = "企业微信登录未完成（登录码无效或已使用），请重新点击「企业微信登录」"
NOT_MEMBER = "您不是本企业的企业微信成员，无法登录工作台"
UNKNOWN = "您的企业微信账号没有登记给在职员工，请联系管理员登记后再试"
UNREACHABLE = "暂时无法连接企业微信，请稍后重试"


def safe_next(raw: str | None) -> str:
    """Where to go after signing in: a console page of this site (path and query), else the console home."""
    if not raw or len(raw) > 500 or "\\" in raw or any(ord(ch) < 32 for ch in raw):
        return "/console"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or raw.startswith("//"):
        return "/console"  # another site: never an open redirect
    if parts.path != "/console" and not parts.path.startswith("/console/"):
        return "/console"
    if parts.path.startswith("/console/login") or "/../" in f"{parts.path}/":
        return "/console"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _pack(state: str, target: str) -> str:
    return f"{state}.{base64.urlsafe_b64encode(target.encode()).decode().rstrip('=')}"


def _unpack(cookie: str | None) -> tuple[str, str] | None:
    if not cookie or "." not in cookie or len(cookie) > 1000:
        return None
    state, _, packed = cookie.partition(".")
    try:
        target = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except ValueError:
        return None
    return state, safe_next(target)


def redirect_uri(settings: Settings) -> str:
    """The callback WeCom sends the browser back to (its host is the app's trusted domain in WeCom)."""
    return f"{settings.console_base()}/console/login/wecom/callback"


def _refused(request: Request, message: str, status: int = 403) -> HTMLResponse:
    """The sign-in page with why, no session; the state cookie is spent."""
    page = render(request, "login.html", status=status, owner=None, code=None, message=message, wecom=True,
                  next_page="/console")
    page.delete_cookie(STATE_COOKIE, path=STATE_PATH, httponly=True, samesite="lax")
    return page


@router.get("/login/wecom")
async def wecom_start(request: Request, res: ResourcesDep, next: str | None = None) -> Response:  # noqa: A002
    """Start 企业微信登录: to WeCom's authorize page, with a state bound to a short-lived cookie."""
    if not wecom.configured(res.settings):
        return render(request, "login.html", status=404, owner=None, code=None, message=NOT_CONFIGURED)
    state = secrets.token_urlsafe(24)
    target = safe_next(next)
    response = RedirectResponse(
        wecom.authorize_url(res.settings, redirect_uri=redirect_uri(res.settings), state=state), status_code=303
    )
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        STATE_COOKIE,
        _pack(state, target),
        max_age=int(timedelta(minutes=STATE_MINUTES).total_seconds()),
        path=STATE_PATH,
        httponly=True,
        # Lax: sent on WeCom's top-level redirect back to the callback, never on another site's subrequest.
        samesite="lax",
        secure=https_base(res.settings) or request.url.scheme == "https",
    )
    return response


@router.get("/login/wecom/callback")
async def wecom_callback(request: Request, res: ResourcesDep, code: str = "", state: str = "") -> Response:
    """WeCom's answer: check the state, ask who the code belongs to, open their session (or say why not)."""
    address = client_address(request)
    res.auth_failures.check(address)
    if not wecom.configured(res.settings):
        return render(request, "login.html", status=404, owner=None, code=None, message=NOT_CONFIGURED)
    kept = _unpack(request.cookies.get(STATE_COOKIE))
    if kept is None or not state or not hmac.compare_digest(kept[0].encode(), state[:200].encode()):
        res.auth_failures.failed(address)
        return _refused(request, STALE)
    target = kept[1]
    if not code or len(code) > 512:
        res.auth_failures.failed(address)
        return _refused(request, BAD_CODE)
    corp = res.wecom()
    try:
        async with asyncio.timeout(res.timeout):
            userid = await corp.user_of_code(code)
    except wecom.WeComError as exc:
        if exc.retryable:
            log.warning("WeCom sign-in: getuserinfo unavailable (%s)", exc.message)
            return _refused(request, UNREACHABLE, status=503)
        res.auth_failures.failed(address)
        return _refused(request, BAD_CODE)
    except TimeoutError:
        log.warning("WeCom sign-in: getuserinfo did not answer within %.1f s", res.timeout)
        return _refused(request, UNREACHABLE, status=503)
    if userid is None:
        res.auth_failures.failed(address)
        return _refused(request, NOT_MEMBER)
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).by_wecom_userid(userid=userid))
    if staff is None:
        res.auth_failures.failed(address)
        log.info("WeCom sign-in refused: no staff member for that WeCom account")
        return _refused(request, UNKNOWN)
    token = await bounded(res, SessionRepository(pool).open_for(
        staff_id=staff.id, ttl=timedelta(hours=res.settings.console_session_hours),
        user_agent=request.headers.get("user-agent")))
    log.info("WeCom sign-in: staff %s", staff.id)
    response = see(target)
    set_session_cookie(response, request, token, res.settings.console_session_hours, settings=res.settings)
    response.delete_cookie(STATE_COOKIE, path=STATE_PATH, httponly=True, samesite="lax")
    return response
