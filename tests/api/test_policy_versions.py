"""New cases take the newest saved version of the policy; running cases keep theirs (SPEC §4, §16).

Against the session's app (real Temporal and worker). The versions saved here are removed at the end,
so the suites after this one start their cases with the injected fast policy again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest_asyncio

from api.services import policy as policy_service
from domain.enums import StepName
from domain.policy import fast_policy
from domain.policy_admin import policy_yaml
from store.policy_versions import PolicyVersions
from store.sessions import SessionRepository
from tests.api.conftest import Api


@pytest_asyncio.fixture(loop_scope="session")
async def versions(api: Api) -> AsyncIterator[PolicyVersions]:
    repo = PolicyVersions(api.pool)
    assert await repo.newest() is None, "another suite left a policy version behind"
    try:
        yield repo
    finally:
        await api.pool.execute("DELETE FROM policy_versions")
        policy_service.forget(api.pool)


async def test_new_cases_take_the_newest_version_and_running_cases_keep_theirs(api: Api, versions: PolicyVersions
                                                                               ) -> None:
    before = await api.create("consultant", "remote")
    row = await api.pool.fetchrow("SELECT policy_version, policy FROM cases WHERE id = $1", before["id"])
    assert row["policy_version"] is None and row["policy"]["name"] == "fast"  # the file's (here: injected) policy

    v1 = fast_policy().model_copy(update={"name": "fast-v1"})
    v1.durations[StepName.callback] = timedelta(seconds=40)
    assert await versions.save(policy=v1, yaml=policy_yaml(v1), based_on=None, changes=[], note="测试",
                               created_by=api.people["admin"].id) == 1
    policy_service.forget(api.pool)
    after = await api.create("consultant", "remote")
    row = await api.pool.fetchrow("SELECT policy_version, policy FROM cases WHERE id = $1", after["id"])
    assert row["policy_version"] == 1 and row["policy"]["name"] == "fast-v1"
    callback = next(s for s in after["open_steps"] if s["step"] == "callback")
    opened = await api.pool.fetchval("SELECT opened_at FROM case_steps WHERE case_id = $1 AND step = 'callback'",
                                     after["id"])
    assert callback["due_at"] and abs((opened + timedelta(seconds=40)).timestamp()
                                      - datetime.fromisoformat(callback["due_at"]).timestamp()) < 1

    # A later version changes neither case: each keeps the copy it started with and names its version.
    v2 = v1.model_copy(update={"name": "fast-v2"})
    await versions.save(policy=v2, yaml=policy_yaml(v2), based_on=1, changes=[], note=None, created_by=None)
    policy_service.forget(api.pool)
    rows = {r["id"]: r for r in await api.pool.fetch(
        "SELECT id, policy_version, policy->>'name' AS name FROM cases WHERE id = ANY($1::bigint[])",
        [before["id"], after["id"]])}
    assert (rows[before["id"]]["policy_version"], rows[before["id"]]["name"]) == (None, "fast")
    assert (rows[after["id"]]["policy_version"], rows[after["id"]]["name"]) == (1, "fast-v1")
    sessions = SessionRepository(api.pool)
    code = await sessions.issue_link(staff_id=api.people["manager"].id, ttl=timedelta(minutes=5))
    got = await sessions.redeem_link(code=code, ttl=timedelta(hours=1), user_agent="test")
    assert got is not None
    cookies = {"intake_session": got[0]}
    page = await api.http.get(f"/console/cases/{after['id']}", cookies=cookies)
    assert page.status_code == 200 and "版本 #1" in page.text
    page = await api.http.get(f"/console/cases/{before['id']}", cookies=cookies)
    assert "配置文件的规则（fast）" in page.text
