"""API tests: the app over httpx (ASGI transport), a real worker, real Temporal, real PostgreSQL.

The database is shared by the whole test session: helpers make unique phone numbers and tests never
assume they are alone in a table (other suites add staff and cases too).
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.enums import Level, Role
from domain.policy import fast_policy
from store.staff import StaffRepository
from tests.support import data
from tests.support.wait import until
from worker import build_dispatcher, build_worker

# Office-visit clients are told where to come (INTAKE_COMPANY_ADDRESS).
COMPANY_ADDRESS = "江城市解放路88号城市人家大厦3楼"


def unique_phone() -> str:
    """A valid, practically unique Chinese mobile number (API cases: 15x)."""
    return data.unique_phone("15")


def unique_house() -> str:
    """A building/unit/room of its own: one house has one open case (撞单), and the session shares a database."""
    n = uuid.uuid4().int
    return f"{n % 97 + 1}栋{n // 97 % 9 + 1}单元{n // 873 % 9000 + 1000}"


def future(seconds: float = 2 * 86400) -> str:
    """An ISO time `seconds` from now (default two days: no reminder fires during a test)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@dataclass
class Person:
    """A staff member with a bearer token."""

    key: str
    id: int
    name: str
    role: Role
    token: str
    level: Level | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


# key -> (name, role, level)
PEOPLE: dict[str, tuple[str, Role, Level | None]] = {
    "manager": ("张经理", Role.manager, None),
    "manager2": ("孙经理", Role.manager, None),
    "director": ("赵总", Role.director, None),
    "designer": ("李设计", Role.designer, Level.senior),
    "designer2": ("周设计", Role.designer, Level.chief),
    "assistant": ("陈助理", Role.assistant, None),
    "assistant2": ("吴助理", Role.assistant, None),
    "assistant_lead": ("郑主管", Role.assistant_lead, None),
    "site_lead": ("钱店长", Role.site_lead, None),
    "consultant": ("刘顾问", Role.consultant, None),
    "admin": ("王管理", Role.admin, None),
}


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def people(pool: asyncpg.Pool) -> dict[str, Person]:
    """One staff member per role (two managers, designers and assistants), each with a token."""
    repo = StaffRepository(pool)
    out: dict[str, Person] = {}
    for key, (name, role, level) in PEOPLE.items():
        s = await repo.add(name=name, phone=unique_phone(), role=role, level=level)
        token = await repo.issue_token(staff_id=s.id, label="api tests")
        out[key] = Person(key=key, id=s.id, name=name, role=role, token=token, level=level)
    return out


@dataclass
class Api:
    """The app under test and helpers to drive it over HTTP."""

    http: httpx.AsyncClient
    people: dict[str, Person]
    settings: Settings
    client: Client
    pool: asyncpg.Pool
    created: list[int] = field(default_factory=list)

    def h(self, who: str) -> dict[str, str]:
        """Headers of a person."""
        return self.people[who].headers

    def intake_body(self, scenario: str = "remote", source: str | None = None, **over: Any) -> dict[str, Any]:
        """A valid creation body for a scenario with a fresh phone."""
        src = source or {"remote": "marketing", "office_visit": "online", "site_office": "site_office",
                         "walk_in": "walk_in"}[scenario]
        client = {"name": "王建国", "phone": unique_phone(), "gender": "male", "age_range": "30-40",
                  "compound": "阳光花园", "address": unique_house(), "area_m2": 120, "budget": 300000}
        client.update(over.pop("client", {}))
        body: dict[str, Any] = {"source": src, "scenario": scenario, "client": client, "notes": "测试"}
        body.update(over)
        return body

    async def create(self, who: str = "consultant", scenario: str = "remote", **over: Any) -> dict[str, Any]:
        """Create a case and return the 201 body."""
        r = await self.http.post("/intakes", json=self.intake_body(scenario, **over), headers=self.h(who))
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        self.created.append(body["id"])
        return body

    async def step(self, case_id: int, step: str, who: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        """POST a step completion."""
        return await self.http.post(f"/intakes/{case_id}/steps/{step}", json=payload or {}, headers=self.h(who))

    async def ok_step(self, case_id: int, step: str, who: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Complete a step and expect 200; returns the case."""
        r = await self.step(case_id, step, who, payload)
        assert r.status_code == 200, f"{step} by {who}: {r.status_code} {r.text}"
        body: dict[str, Any] = r.json()
        return body

    async def case(self, case_id: int, who: str = "manager", fresh: bool = True) -> dict[str, Any]:
        """GET the case."""
        r = await self.http.get(f"/intakes/{case_id}", params={"fresh": fresh}, headers=self.h(who))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def until(self, fn: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition") -> Any:
        """Poll `fn` until it returns something truthy."""
        return await until(fn, timeout, what)

    async def notices(self, case_id: int, who: str = "manager") -> dict[str, dict[str, Any]]:
        """The staff notices of a case by purpose, as `who` may read them (GET messages?channel=staff)."""
        r = await self.http.get(f"/intakes/{case_id}/messages", params={"channel": "staff"}, headers=self.h(who))
        assert r.status_code == 200, r.text
        return {m["purpose"]: m for m in r.json()["items"]}

    async def notice(self, case_id: int, prefix: str, who: str = "manager", timeout: float = 15.0) -> dict[str, Any]:
        """The first staff notice whose purpose starts with `prefix`, once it is in the outbox."""

        async def get() -> dict[str, Any] | None:
            return next((m for p, m in (await self.notices(case_id, who)).items() if p.startswith(prefix)), None)

        found: dict[str, Any] = await self.until(get, timeout, what=f"notice {prefix}")
        return found


def open_steps(case: dict[str, Any]) -> set[str]:
    """Names of the open steps of a case body."""
    return {s["step"] for s in case["open_steps"]}


def make_http(app: Any) -> httpx.AsyncClient:
    """An httpx client speaking to the app in-process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test", timeout=30)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def api(client: Client, pool: asyncpg.Pool, pg_dsn: str, people: dict[str, Person]) -> AsyncIterator[Api]:
    """The app with an injected client, pool and fast policy, and a worker on its own task queue.

    One for the API test session, like one deployment: every case created by any API test keeps a
    worker (a case whose worker was gone would only answer 503 temporal_timeout).
    """
    tq = f"api-{uuid.uuid4().hex[:10]}"
    # Many tests check refusals of bad tokens from one address: the flood limit is tested on its own.
    settings = Settings(task_queue=tq, database_url=pg_dsn, request_timeout_seconds=5.0, auth_failures_per_minute=100_000,
                        company_address=COMPANY_ADDRESS, recordings_dir=Path(tempfile.mkdtemp(prefix="recordings-")),
                        # test-only waits, shortened: a claimed message's lease margin, the dispatcher's
                        # pause after database errors
                        outbox_lease_margin_seconds=0.5, outbox_max_error_pause_seconds=2.0)
    app = create_app(settings, temporal_client=client, pool=pool, policy=fast_policy())
    worker = build_worker(client, pool, settings, task_queue=tq)
    # Messages go out through the outbox dispatcher, as in the worker process.
    dispatcher = build_dispatcher(pool, settings)
    stop = asyncio.Event()
    sending = asyncio.create_task(dispatcher.run(stop))
    try:
        async with worker, make_http(app) as http:
            yield Api(http=http, people=people, settings=settings, client=client, pool=pool)
    finally:
        stop.set()
        await sending
