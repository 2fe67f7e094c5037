"""Floods (issue 14): spraying bad tokens from one address is answered 429 + Retry-After before any
database work, other addresses are served; lists cap `offset`; live workflow queries only for the roles
that need them. Cookies and sign-in behind the documented TLS proxy: Secure, `__Host-`, an Origin
check; recordings served with nosniff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.pagination import MAX_OFFSET
from domain.policy import fast_policy
from store.sessions import SessionRepository
from tests.api.conftest import Api
from tests.api.test_errors import assert_error


class CountingPool:
    """The pool, counting what reaches PostgreSQL."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._pool, name)
        if name in ("fetchrow", "fetch", "fetchval", "execute", "acquire"):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                return attr(*args, **kwargs)
            return counted
        return attr


LIMIT = 5


@pytest_asyncio.fixture(loop_scope="session")
async def limited(api: Api) -> AsyncIterator[tuple[Any, CountingPool]]:
    """The app with a low failure limit and a pool that counts its queries."""
    pool = CountingPool(api.pool)
    settings = api.settings.model_copy(update={"auth_failures_per_minute": LIMIT,
                                               "console_base_url": "https://intake.example.com"})
    app = create_app(settings, temporal_client=api.client, pool=pool, policy=fast_policy())  # type: ignore[arg-type]
    yield app, pool


def client_from(app: Any, address: str, base: str = "http://api.test") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url=base)


async def test_sprayed_tokens_are_refused_before_the_database(api: Api, limited: tuple[Any, CountingPool]) -> None:
    app, pool = limited
    async with client_from(app, "203.0.113.7") as attacker, client_from(app, "198.51.100.2") as colleague:
        for i in range(LIMIT):
            assert_error(await attacker.get("/me/tasks", headers={"Authorization": f"Bearer itk_bogus{i}"}),
                         401, "invalid_token")
        before = pool.calls
        for i in range(20):
            r = await attacker.get("/me/tasks", headers={"Authorization": f"Bearer itk_more{i}"})
            assert r.status_code == 429 and r.json()["code"] == "too_many_failures"
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        # the codec URL and the console sign-in are the same door
        assert (await attacker.post("/codec/k/itc_bogus/decode", json={"payloads": []})).status_code == 429
        assert (await attacker.get("/console/login/bogus")).status_code == 429
        assert pool.calls == before  # not one query for the whole flood
        # someone else is served as usual
        assert (await colleague.get("/me/tasks", headers=api.h("manager"))).status_code == 200


async def test_lists_cap_offset(api: Api) -> None:
    for route in ("/intakes", "/me/tasks", "/audit/phone-reads"):
        r = await api.http.get(route, params={"offset": MAX_OFFSET + 1}, headers=api.h("manager"))
        assert r.status_code == 422, route
        assert (await api.http.get(route, params={"offset": MAX_OFFSET}, headers=api.h("manager"))).status_code == 200


async def test_fresh_only_for_manager_and_director(api: Api) -> None:
    c = await api.create("consultant", "remote")
    for who, status in (("manager", 200), ("director", 200), ("consultant", 403), ("assistant_lead", 403)):
        r = await api.http.get(f"/intakes/{c['id']}", params={"fresh": True}, headers=api.h(who))
        assert r.status_code == status, (who, r.text)
        assert (await api.http.get(f"/intakes/{c['id']}", headers=api.h(who))).status_code == 200


@pytest.mark.parametrize("origin, ok", [(None, True), ("https://intake.example.com", True),
                                        ("https://evil.example", False), ("null", False)])
async def test_sign_in_behind_https_sets_a_host_cookie_and_checks_the_origin(
    api: Api, limited: tuple[Any, CountingPool], origin: str | None, ok: bool
) -> None:
    app, _ = limited
    sessions = SessionRepository(api.pool)
    code = await sessions.issue_link(staff_id=api.people["consultant"].id, ttl=timedelta(minutes=5))
    headers = {"Origin": origin} if origin else {}
    async with client_from(app, "192.0.2.10", base="https://intake.example.com") as browser:
        r = await browser.post(f"/console/login/{code}", headers=headers, follow_redirects=False)
        if not ok:
            assert r.status_code == 403 and "set-cookie" not in r.headers
            assert await sessions.link_owner(code=code) is not None  # the link is still unused
            return
        assert r.status_code == 303, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-intake_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/;" in cookie and "Domain" not in cookie
        token = r.cookies["__Host-intake_session"]
        browser.cookies.clear()
        assert (await browser.get("/console", cookies={"__Host-intake_session": token})).status_code == 200
        # the plain name is not read behind https (no sibling host can plant one)
        r = await browser.get("/console", cookies={"intake_session": token}, follow_redirects=False)
        assert r.status_code == 303


async def test_forwarded_addresses_are_believed_from_the_configured_proxy_only(
    api: Api, limited: tuple[Any, CountingPool]
) -> None:
    """What `intake api` runs (uvicorn's proxy headers with INTAKE_FORWARDED_ALLOW_IPS): the limit follows
    the forwarded client behind the proxy; a forged X-Forwarded-For from elsewhere changes nothing."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from cli import server_options

    app, _ = limited
    opts = server_options(api.settings.model_copy(update={"forwarded_allow_ips": "10.0.0.5"}))
    assert opts["proxy_headers"] is True
    served = ProxyHeadersMiddleware(app, trusted_hosts=opts["forwarded_allow_ips"])
    bad = {"Authorization": "Bearer itk_nope"}
    async with client_from(served, "10.0.0.5") as proxy, client_from(served, "203.0.113.99") as stranger:
        for _ in range(LIMIT):  # the proxy forwards one attacker's failures
            await proxy.get("/me/tasks", headers={**bad, "X-Forwarded-For": "198.51.100.77"})
        r = await proxy.get("/me/tasks", headers={**bad, "X-Forwarded-For": "198.51.100.77"})
        assert r.status_code == 429
        # another client behind the same proxy is not blocked by them
        ok = await proxy.get("/me/tasks", headers={**api.h("manager"), "X-Forwarded-For": "198.51.100.78"})
        assert ok.status_code == 200
        # a stranger cannot pose as someone else (nor escape their own count) with the header
        for i in range(LIMIT):
            await stranger.get("/me/tasks", headers={**bad, "X-Forwarded-For": f"192.0.2.{i}"})
        r = await stranger.get("/me/tasks", headers={**bad, "X-Forwarded-For": "192.0.2.200"})
        assert r.status_code == 429

