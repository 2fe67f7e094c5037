"""Access that really ends (issue 14): revoking a person (API or command line) or their leaving ends
every token and console session at once; a session also ends after the idle time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cli import main
from domain.enums import Role
from store.sessions import SessionRepository
from store.staff import StaffRepository
from tests.api.conftest import Api, unique_phone


async def _signed_in(api: Api) -> tuple[int, str, str]:
    """A fresh person with a bearer token and a live console session (the cookie's token)."""
    repo = StaffRepository(api.pool)
    s = await repo.add(name="离职测试", phone=unique_phone(), role=Role.consultant)
    token = await repo.issue_token(staff_id=s.id)
    sessions = SessionRepository(api.pool)
    got = await sessions.redeem_link(code=await sessions.issue_link(staff_id=s.id, ttl=timedelta(hours=1)),
                                     ttl=timedelta(hours=72), user_agent="test")
    assert got is not None
    return s.id, token, got[0]


async def _console_status(api: Api, cookie: str) -> int:
    r = await api.http.get("/console", cookies={"intake_session": cookie}, follow_redirects=False)
    return r.status_code


async def _api_status(api: Api, token: str) -> int:
    return (await api.http.get("/me/tasks", headers={"Authorization": f"Bearer {token}"})).status_code


async def test_revoke_through_the_api_ends_tokens_and_sessions(api: Api) -> None:
    sid, token, cookie = await _signed_in(api)
    assert await _console_status(api, cookie) == 200 and await _api_status(api, token) == 200
    r = await api.http.post(f"/staff/{sid}/revoke", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert await _console_status(api, cookie) == 303  # back to the sign-in page
    assert await _api_status(api, token) == 401


async def test_revoke_and_leaving_on_the_command_line_end_sessions(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    from config import get_settings

    get_settings.cache_clear()
    try:
        sid, token, cookie = await _signed_in(api)
        assert await _console_status(api, cookie) == 200
        import asyncio

        assert await asyncio.to_thread(main, ["staff", "revoke", str(sid)]) == 0
        assert await _console_status(api, cookie) == 303 and await _api_status(api, token) == 401

        sid, token, cookie = await _signed_in(api)
        assert await asyncio.to_thread(main, ["staff", "edit", str(sid), "--status", "left"]) == 0
        assert await _console_status(api, cookie) == 303 and await _api_status(api, token) == 401
        assert await api.pool.fetchval(
            "SELECT count(*) FROM console_sessions WHERE staff_id = $1 AND revoked_at IS NULL", sid) == 0
    finally:
        get_settings.cache_clear()


async def test_an_idle_session_ends(api: Api) -> None:
    sid, _, cookie = await _signed_in(api)
    assert await _console_status(api, cookie) == 200
    # used a moment ago: alive, and using it keeps it alive
    await api.pool.execute("UPDATE console_sessions SET last_seen_at = now() - $2::interval WHERE staff_id = $1",
                           sid, timedelta(minutes=api.settings.console_idle_minutes - 5))
    assert await _console_status(api, cookie) == 200
    assert await api.pool.fetchval(
        "SELECT last_seen_at > now() - interval '1 minute' FROM console_sessions WHERE staff_id = $1", sid)
    # left alone past the idle time: over, though the session's 72 h are not
    await api.pool.execute("UPDATE console_sessions SET last_seen_at = now() - $2::interval WHERE staff_id = $1",
                           sid, timedelta(minutes=api.settings.console_idle_minutes + 1))
    assert await _console_status(api, cookie) == 303
