"""A token seen a moment ago costs an action no lookup of its own, yet revocation counts at once (SPEC §10, §12).

Two app processes stand in for two API servers: each keeps its own cache of who a token belongs to,
and each confirms the token in the statement that reads the case, so the very next request after a
revocation, a departure or a change of role is refused in both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from api.app import create_app
from domain.enums import Role
from domain.policy import fast_policy
from store.staff import StaffRepository
from tests.api.conftest import Api, make_http, unique_phone


@pytest_asyncio.fixture(loop_scope="session")
async def two(api: Api) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two API processes of the same deployment (same database, Temporal, task queue)."""
    a = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    b = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    async with make_http(a) as http_a, make_http(b) as http_b:
        yield http_a, http_b


async def _manager(api: Api, name: str) -> tuple[int, dict[str, str]]:
    repo = StaffRepository(api.pool)
    person = await repo.add(name=name, phone=unique_phone(), role=Role.manager)
    token = await repo.issue_token(staff_id=person.id, label="token cache test")
    return person.id, {"Authorization": f"Bearer {token}"}


async def _note(http: httpx.AsyncClient, case_id: int, headers: dict[str, str], text: str) -> httpx.Response:
    return await http.post(f"/intakes/{case_id}/notes", json={"text": text}, headers=headers)


async def test_a_revoked_token_is_refused_by_the_very_next_request_in_every_process(
    api: Api, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    case = await api.create("consultant", "remote")
    staff_id, headers = await _manager(api, "缓存经理")
    for http in (a, b, a, b):  # both processes have seen (and cached) the token
        assert (await _note(http, case["id"], headers, "电话已约")).status_code == 200
    await StaffRepository(api.pool).revoke_tokens(staff_id=staff_id)  # `intake staff revoke`
    r = await _note(b, case["id"], headers, "吊销后")
    assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    assert (await _note(a, case["id"], headers, "吊销后")).status_code == 401
    body = await api.case(case["id"], "manager", fresh=False)
    assert not any(e["text"] == "吊销后" for e in body["case_notes"] + body["timeline"])


async def test_someone_who_left_or_changed_role_is_refused_at_once(
    api: Api, two: tuple[httpx.AsyncClient, httpx.AsyncClient]
) -> None:
    a, b = two
    case = await api.create("consultant", "remote")
    left_id, left = await _manager(api, "离职经理")
    moved_id, moved = await _manager(api, "转岗经理")
    for http in (a, b):
        assert (await _note(http, case["id"], left, "在职")).status_code == 200
        assert (await _note(http, case["id"], moved, "在职")).status_code == 200
    # Changed behind the API's back (an admin's SQL): no notice to any process, still refused at once.
    await api.pool.execute("UPDATE staff SET status = 'inactive' WHERE id = $1", left_id)
    await api.pool.execute("UPDATE staff SET role = 'consultant' WHERE id = $1", moved_id)
    for http in (b, a):
        assert (await _note(http, case["id"], left, "离职后")).status_code == 401
        # a consultant who did not bring the case in neither sees it nor acts on it
        r = await http.post(f"/intakes/{case['id']}/steps/callback", json={"reached": False}, headers=moved)
        assert r.status_code in (403, 404), r.text
    assert await api.pool.fetchval("SELECT state->>'stage' FROM cases WHERE id = $1", case["id"]) == "callback"
