"""Console sessions: the cookie, the signed-in person, and the CSRF token of every form.

The cookie holds a random session token (HttpOnly, SameSite=Lax); PostgreSQL keeps only its hash
(store.sessions). When the configured base URL is https (the documented TLS proxy), it is Secure and
named with the ``__Host-`` prefix (path /, no domain: no sibling host can plant or read it); over plain
http (the dev stack) it is ``intake_session`` on /console. Every form carries a synchroniser token
derived from the session secret; a POST without the right one changes nothing (403). Sign-in posts
must come from the console's own origin (:func:`check_origin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from api.deps import CurrentUser, ResourcesDep, bounded
from api.errors import ApiError
from api.ratelimit import client_address
from config import Settings
from store.sessions import SessionRepository, csrf_matches, csrf_token

COOKIE = "intake_session"
COOKIE_PATH = "/console"
HOST_COOKIE = "__Host-intake_session"


def https_base(settings: Settings) -> bool:
    """Whether staff reach the console over https (the base URL names it)."""
    return settings.console_base().startswith("https://")


def cookie_name(settings: Settings) -> str:
    """The session cookie's name: ``__Host-`` prefixed behind https."""
    return HOST_COOKIE if https_base(settings) else COOKIE


class NeedSignIn(Exception):
    """No live session: the console answers with the sign-in page."""


@dataclass(eq=False)
class ConsoleUser(CurrentUser):
    """The signed-in staff member, with their session's form token."""

    token: str = ""

    @property
    def csrf(self) -> str:
        """The form token of this session."""
        return csrf_token(self.token)


async def console_user(request: Request, res: ResourcesDep) -> ConsoleUser:
    """The person of the session cookie; NeedSignIn when there is none (or it expired or was revoked)."""
    token = request.cookies.get(cookie_name(res.settings))
    if not token:
        raise NeedSignIn()
    address = client_address(request)
    res.auth_failures.check(address)
    if len(token) > 200:
        res.auth_failures.failed(address)
        raise NeedSignIn()
    pool = await res.pool()
    idle = timedelta(minutes=res.settings.console_idle_minutes)
    session = await bounded(res, SessionRepository(pool).by_token(token=token, idle=idle))
    if session is None:
        res.auth_failures.failed(address)
        raise NeedSignIn()
    return ConsoleUser(staff=session.staff, token=token)


SignedIn = Annotated[ConsoleUser, Depends(console_user)]


def check_csrf(user: ConsoleUser, submitted: str | None) -> None:
    """403 csrf_failed unless the form's token belongs to this session."""
    if not csrf_matches(user.token, submitted):
        raise ApiError(403, "csrf_failed", "表单已过期或来源不明，请刷新页面后重试")


def served_over_https(request: Request, base_url: str) -> bool:
    """Whether staff reach the console over https (directly, or behind a TLS proxy named in the base URL)."""
    return request.url.scheme == "https" or base_url.startswith("https://")


def set_session_cookie(response: Response, request: Request, token: str, hours: float, *, settings: Settings) -> None:
    """The session cookie: HttpOnly, SameSite=Lax; Secure and ``__Host-`` when served over https."""
    host = https_base(settings)
    response.set_cookie(
        cookie_name(settings),
        token,
        max_age=int(timedelta(hours=hours).total_seconds()),
        path="/" if host else COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=host or request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: Request, *, settings: Settings) -> None:
    """Forget the cookie in the browser."""
    host = https_base(settings)
    response.delete_cookie(cookie_name(settings), path="/" if host else COOKIE_PATH, httponly=True, samesite="lax",
                           secure=host or request.url.scheme == "https")


def check_origin(request: Request, settings: Settings) -> None:
    """403 bad_origin unless a sign-in post comes from the console's own origin (a browser always sends
    Origin on a cross-site post; a post naming another origin, or `null`, is someone else's page)."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser's cross-site post (a same-origin GET-initiated form in old browsers, curl)
    allowed = {settings.console_base().rstrip("/"), f"{request.url.scheme}://{request.url.netloc}"}
    if origin.rstrip("/") not in allowed:
        raise ApiError(403, "bad_origin", "登录请求来源不明，请直接打开登录链接")
