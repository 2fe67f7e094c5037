"""PostgreSQL or Temporal hangs (stopped, not gone): every request still answers 503 with Retry-After
within the time bound + 1 s, /healthz stays alive, and once the server resumes the same API (not
restarted) serves again with nothing lost.

A hang is a frozen proxy (connections stay open, new ones are accepted, nothing is answered: what a
SIGSTOPped server does), and once a real SIGSTOP of an embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import psutil
import pytest
import pytest_asyncio
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.enums import Role
from domain.policy import fast_policy
from store.db import create_pool, migrate
from store.staff import StaffRepository
from tests.api.conftest import Api, future, make_http, open_steps, unique_phone
from tests.api.proxy import TcpProxy
from tests.support.infra import pgserver_uri
from tests.support.keys import encrypted_converter
from worker import build_reconciler

TIMEOUT = 1.5
BOUND = TIMEOUT + 1.0  # SPEC §10: INTAKE_REQUEST_TIMEOUT_SECONDS + 1 s
DB_DOWN = ("database_unavailable", "request_timeout")
CALLBACK = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}


def assert_503(r: httpx.Response, codes: tuple[str, ...]) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] in codes, r.json()
    assert int(r.headers["retry-after"]) > 0


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = await request
    return r, time.monotonic() - t0


@asynccontextmanager
async def serving(settings: Settings, **inject: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app as deployed (lifespan included: it owns what it connects), over httpx."""
    app = create_app(settings, policy=fast_policy(), **inject)
    async with app.router.lifespan_context(app), make_http(app) as http:
        yield http


def postgres_proxy(dsn: str) -> tuple[TcpProxy, Callable[[], str]]:
    """A proxy in front of the server of `dsn` (TCP or pgserver's unix socket) and the DSN through it."""
    u = urlsplit(dsn)
    query = parse_qs(u.query)
    host = query.get("host", [u.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [u.port or 5432])[0])
    proxy = TcpProxy(host, port, unix_path=f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None)
    user = (u.username or "postgres") + (f":{u.password}" if u.password else "")

    def through() -> str:
        return f"postgresql://{user}@127.0.0.1:{proxy.port}{u.path}"

    return proxy, through


@pytest_asyncio.fixture(loop_scope="session")
async def pg_proxy(pg_dsn: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    proxy, through = postgres_proxy(pg_dsn)
    await proxy.start()
    try:
        yield proxy, through()
    finally:
        proxy.resume()
        await proxy.stop()


async def test_database_hangs_then_resumes(api: Api, client: Client, pg_proxy: tuple[TcpProxy, str]) -> None:
    proxy, dsn = pg_proxy
    settings = api.settings.model_copy(update={"database_url": dsn, "request_timeout_seconds": TIMEOUT})
    async with serving(settings, temporal_client=client) as http:
        r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("consultant"))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        phone = unique_phone()
        step_key = {"Idempotency-Key": f"hung-db-{cid}"}
        calls = [
            ("GET", "/intakes", None, api.h("manager")),
            ("GET", "/me/tasks", None, api.h("designer")),  # nothing but the bearer token lookup
            ("POST", "/intakes", api.intake_body("remote", client={"phone": phone}), api.h("consultant")),
            ("POST", f"/intakes/{cid}/steps/callback", CALLBACK, {**api.h("manager"), **step_key}),
        ]
        for method, path, body, headers in calls[:2]:
            assert (await http.request(method, path, json=body, headers=headers)).status_code == 200

        proxy.stall()
        # All at once, as staff would: each answers on its own within the bound; liveness meanwhile.
        answers = await asyncio.gather(
            *(timed(http.request(m, p, json=b, headers=h)) for m, p, b, h in calls),
            timed(http.get("/readyz")),
            timed(http.get("/healthz")),
        )
        print("ROUND1", [(a[0].json().get("code"), round(a[1], 2)) for a in answers])
        for (r, elapsed), (method, path, *_) in zip(answers, calls, strict=False):
            assert_503(r, DB_DOWN)
            assert elapsed <= BOUND, f"{method} {path} answered after {elapsed:.2f} s"
        (ready, ready_s), (live, live_s) = answers[-2:]
        assert_503(ready, ("not_ready",))
        assert ready.json()["details"]["database"] != "ok" and ready.json()["details"]["temporal"] == "ok"
        assert ready_s <= BOUND
        assert live.status_code == 200 and live_s < 1.0
        # Again, one by one: the pool's connections are stuck or being replaced by now.
        for method, path, body, headers in calls:
            r, elapsed = await timed(http.request(method, path, json=body, headers=headers))
            assert_503(r, DB_DOWN)
            print("ROUND2", path, r.json()["code"], round(elapsed, 2))
            assert elapsed <= BOUND, f"{method} {path} answered after {elapsed:.2f} s (second round)"

        proxy.resume()
        # The same app, not restarted, serves again.
        async def serves() -> bool:
            return (await http.get("/me/tasks", headers=api.h("designer"))).status_code == 200

        await api.until(serves, timeout=15, what="the API serves again after PostgreSQL resumes")
        assert (await http.get("/intakes", headers=api.h("manager"))).status_code == 200
        # Nothing from before the hang is lost, nothing refused during it was half-made.
        assert (await http.get(f"/intakes/{cid}", headers=api.h("manager"))).status_code == 200
        assert await api.pool.fetchval("SELECT count(*) FROM cases WHERE client_phone = $1", phone) == 0
        r = await http.post("/intakes", json=api.intake_body("remote", client={"phone": phone}),
                            headers=api.h("consultant"))
        assert r.status_code == 201, r.text
        r = await http.post(f"/intakes/{cid}/steps/callback", json=CALLBACK, headers={**api.h("manager"), **step_key})
        assert r.status_code == 200, r.text
        assert open_steps(r.json()) == {"assign_designer", "assign_assistant"}


async def test_connections_lost_in_a_hang_are_not_kept(
    api: Api, client: Client, pg_proxy: tuple[TcpProxy, str]
) -> None:
    """The server comes back but every connection open during the hang is silently dead: the API
    drops those (it does not wait on them forever) and serves on new ones, without a restart."""
    proxy, dsn = pg_proxy
    settings = api.settings.model_copy(
        update={"database_url": dsn, "request_timeout_seconds": TIMEOUT, "db_pool_min": 3, "db_pool_max": 3}
    )
    async with serving(settings, temporal_client=client) as http:
        h = api.h("designer")
        assert (await http.get("/me/tasks", headers=h)).status_code == 200
        proxy.stall()
        # Three connections open before the hang, more callers than that: every one is caught in it.
        answers = await asyncio.gather(*(timed(http.get("/me/tasks", headers=h)) for _ in range(5)))
        for r, elapsed in answers:
            assert_503(r, DB_DOWN)
            assert elapsed <= BOUND, f"answered after {elapsed:.2f} s"

        proxy.serve_new_only()

        async def serves() -> bool:
            return (await http.get("/me/tasks", headers=h)).status_code == 200

        await api.until(serves, timeout=15, what="the API serves on new connections")
        # Not one lucky connection: more requests than the pool holds, all served.
        answers = await asyncio.gather(*(timed(http.get("/me/tasks", headers=h)) for _ in range(6)))
        assert [r.status_code for r, _ in answers] == [200] * 6, [r.text for r, _ in answers]


async def test_database_hangs_in_the_middle_of_a_creation(
    api: Api, client: Client, pg_proxy: tuple[TcpProxy, str]
) -> None:
    """Frozen after the transaction began: 503 within the bound, rolled back, the same key retries."""
    proxy, dsn = pg_proxy
    settings = api.settings.model_copy(update={"database_url": dsn, "request_timeout_seconds": TIMEOUT})
    async with serving(settings, temporal_client=client) as http:
        phone = unique_phone()
        body = api.intake_body("remote", client={"phone": phone})
        headers = {**api.h("consultant"), "Idempotency-Key": f"hung-create-{uuid.uuid4().hex}"}
        proxy.stall_on(b"INSERT INTO cases")
        r, elapsed = await timed(http.post("/intakes", json=body, headers=headers))
        print("MID", r.json()["code"], round(elapsed, 2))
        assert proxy.stalled.is_set(), "the hang began inside the creation's transaction"
        assert_503(r, DB_DOWN)
        assert elapsed <= BOUND, f"answered after {elapsed:.2f} s"
        assert (await http.get("/healthz")).status_code == 200

        proxy.resume()

        async def created() -> httpx.Response | None:
            rr = await http.post("/intakes", json=body, headers=headers)
            assert rr.status_code in (201, 503), rr.text
            return rr if rr.status_code == 201 else None

        r = await api.until(created, timeout=15, what="the same request succeeds after PostgreSQL resumes")
        assert r.json()["client"]["phone"] == phone
        assert await api.pool.fetchval("SELECT count(*) FROM cases WHERE client_phone = $1", phone) == 1


class StoppablePostgres:
    """A dedicated embedded PostgreSQL (pgserver): its postmaster and backends can be SIGSTOPped."""

    def __init__(self, uri: str, postmaster: psutil.Process) -> None:
        self.uri = uri
        self.postmaster = postmaster
        self.frozen: list[psutil.Process] = []

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: the server hangs, sockets stay open."""
        for p in [self.postmaster, *self.postmaster.children(recursive=True)]:
            p.send_signal(signal.SIGSTOP)
            self.frozen.append(p)

    def thaw(self) -> None:
        """SIGCONT what was stopped."""
        while self.frozen:
            try:
                self.frozen.pop().send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass


@pytest_asyncio.fixture(loop_scope="session")
async def stoppable_postgres() -> AsyncIterator[StoppablePostgres]:
    """Migrated, and continued then stopped and removed at the end whatever happened."""
    with tempfile.TemporaryDirectory(prefix="intake-stop-") as tmp:
        data = Path(tmp) / "pg"
        uri = await asyncio.to_thread(pgserver_uri, data)
        postmaster = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
        pg = StoppablePostgres(uri, postmaster)
        try:
            await migrate(uri)
            yield pg
        finally:
            pg.thaw()
            postmaster.send_signal(signal.SIGINT)  # fast shutdown; the directory goes with `tmp`
            await asyncio.to_thread(psutil.wait_procs, [postmaster], 15)


@pytest.mark.filterwarnings("ignore:XDG_RUNTIME_DIR")  # pgserver's platformdirs, in CI and containers
async def test_postgres_sigstopped_then_continued(
    api: Api, client: Client, stoppable_postgres: StoppablePostgres
) -> None:
    pg = stoppable_postgres
    pool: asyncpg.Pool = await create_pool(pg.uri, min_size=1, max_size=1)
    try:
        repo = StaffRepository(pool)
        staff = await repo.add(name="停机测试", phone=unique_phone(), role=Role.consultant)
        token = await repo.issue_token(staff_id=staff.id, label="sigstop test")
    finally:
        await pool.close()
    h = {"Authorization": f"Bearer {token}"}
    settings = api.settings.model_copy(update={"database_url": pg.uri, "request_timeout_seconds": TIMEOUT})
    async with serving(settings, temporal_client=client) as http:
        assert (await http.get("/me/tasks", headers=h)).status_code == 200

        pg.freeze()
        for path in ("/me/tasks", "/intakes", "/me/tasks"):
            r, elapsed = await timed(http.get(path, headers=h))
            assert_503(r, DB_DOWN)
            assert elapsed <= BOUND, f"GET {path} answered after {elapsed:.2f} s"
        r, elapsed = await timed(http.get("/readyz"))
        assert_503(r, ("not_ready",))
        assert r.json()["details"]["database"] != "ok" and elapsed <= BOUND
        assert (await http.get("/healthz")).status_code == 200

        pg.thaw()

        async def serves() -> bool:
            return (await http.get("/me/tasks", headers=h)).status_code == 200

        await api.until(serves, timeout=15, what="the API serves again after SIGCONT")
        assert (await http.get("/readyz")).status_code == 200


@pytest_asyncio.fixture(loop_scope="session")
async def temporal_proxy(client: Client) -> AsyncIterator[TcpProxy]:
    host, _, port = client.service_client.config.target_host.rpartition(":")
    proxy = TcpProxy(host or "127.0.0.1", int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        proxy.resume()
        await proxy.stop()


async def test_temporal_hangs_then_resumes(api: Api, client: Client, temporal_proxy: TcpProxy) -> None:
    proxied = await Client.connect(
        f"127.0.0.1:{temporal_proxy.port}", namespace=client.namespace, data_converter=encrypted_converter()
    )
    settings = api.settings.model_copy(update={"request_timeout_seconds": TIMEOUT})
    async with serving(settings, temporal_client=proxied, pool=api.pool) as http:
        h = api.h("manager")
        r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("consultant"))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        step_key = {**h, "Idempotency-Key": f"hung-temporal-{cid}"}
        phone = unique_phone()

        temporal_proxy.stall()
        r, elapsed = await timed(http.post(f"/intakes/{cid}/steps/callback", json=CALLBACK, headers=step_key))
        assert_503(r, ("temporal_timeout", "temporal_unavailable", "request_timeout"))
        assert elapsed <= BOUND, f"step answered after {elapsed:.2f} s"
        create_key = {**api.h("consultant"), "Idempotency-Key": f"hung-create-{phone}"}
        body = api.intake_body("remote", client={"phone": phone})
        r, elapsed = await timed(http.post("/intakes", json=body, headers=create_key))
        assert_503(r, ("temporal_timeout", "temporal_unavailable", "request_timeout"))
        assert elapsed <= BOUND, f"creation answered after {elapsed:.2f} s"
        # No answer from Temporal: the row waits as `starting` (or was never kept) for the reconciler.
        rows = await api.pool.fetch("SELECT status FROM cases WHERE client_phone = $1", phone)
        assert [x["status"] for x in rows] in ([], ["starting"])
        # Reads come from PostgreSQL; a fresh read falls back to the projection within the bound.
        r, elapsed = await timed(http.get(f"/intakes/{cid}", params={"fresh": True}, headers=h))
        assert r.status_code == 200 and r.json()["state_source"] == "projection" and elapsed <= BOUND
        r, elapsed = await timed(http.get("/readyz"))
        assert_503(r, ("not_ready",))
        assert r.json()["details"]["temporal"] != "ok" and r.json()["details"]["database"] == "ok"
        assert elapsed <= BOUND
        assert (await http.get("/healthz")).status_code == 200

        temporal_proxy.resume()

        async def completes() -> Any:
            rr = await http.post(f"/intakes/{cid}/steps/callback", json=CALLBACK, headers=step_key)
            assert rr.status_code in (200, 503), rr.text
            return rr.json() if rr.status_code == 200 else None

        # The update sent during the hang may have been applied on resume: the same key is the same
        # update, so the retry answers its outcome and the step is done once.
        s = await api.until(completes, timeout=20, what="the step completes after Temporal resumes")
        assert open_steps(s) == {"assign_designer", "assign_assistant"}
        assert [e["kind"] for e in s["timeline"]].count("step_done") == 1
        reconciler = build_reconciler(api.client, api.pool,
                                      settings.model_copy(update={"reconcile_settle_seconds": 0.001}),
                                      task_queue=settings.task_queue)
        await reconciler.run_once()
        r = await http.post("/intakes", json=body, headers=create_key)
        assert r.status_code == 201, r.text
        assert await api.pool.fetchval("SELECT status FROM cases WHERE id = $1", r.json()["id"]) == "open"
