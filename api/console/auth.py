"""Console sessions: the cookie, the signed-in person, and the CSRF token of every form.

The cookie holds a random session token (HttpOnly, SameSite=Lax, Secure over https, path /console);
PostgreSQL keeps only its hash (store.sessions). Every form carries a synchroniser token derived
from the session secret; a POST without the right one changes nothing (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from api.deps import CurrentUser, ResourcesDep, bounded
from api.errors import ApiError
from store.sessions import SessionRepository, csrf_matches, csrf_token

COOKIE = "intake_session"
COOKIE_PATH = "/console"


class NeedSignIn(Exception):
    """No live session: the console answers with the sign-in page."""


@dataclass(frozen=True)
class ConsoleUser(CurrentUser):
    """The signed-in staff member, with their session's form token."""

    token: str = ""

    @property
    def csrf(self) -> str:
        """The form token of this session."""
        return csrf_token(self.token)


async def console_user(request: Request, res: ResourcesDep) -> ConsoleUser:
    """The person of the session cookie; NeedSignIn when there is none (or it expired or was revoked)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200:
        raise NeedSignIn()
    pool = await res.pool()
    idle = timedelta(minutes=res.settings.console_idle_minutes)
    session = await bounded(res, SessionRepository(pool).by_token(token=token, idle=idle))
    if session is None:
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


def set_session_cookie(response: Response, request: Request, token: str, hours: float, *, secure: bool) -> None:
    """The session cookie: HttpOnly, SameSite=Lax, Secure when served over https."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(timedelta(hours=hours).total_seconds()),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def clear_session_cookie(response: Response, request: Request, *, secure: bool) -> None:
    """Forget the cookie in the browser."""
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax", secure=secure)
