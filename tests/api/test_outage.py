"""Temporal or PostgreSQL gone or silent: 503 with Retry-After within the time bound, nothing half-done,
and once it is back the step can be completed and the case is whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from pydantic import SecretStr
from temporalio.client import Client

from api.app import create_app
from config import Settings
from domain.policy import fast_policy
from store.db import create_pool
from tests.api.conftest import Api, future, make_http, open_steps, unique_phone
from tests.api.proxy import TcpProxy
from tests.support.keys import KEYS, encrypted_converter
from worker import build_reconciler

TIMEOUT = 2.0


def assert_503(r: Any, *codes: str) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["code"] in codes, r.json()
    assert int(r.headers["retry-after"]) > 0


@pytest_asyncio.fixture(loop_scope="session")
async def temporal_proxy(client: Client) -> AsyncIterator[TcpProxy]:
    host, _, port = client.service_client.config.target_host.rpartition(":")
    proxy = TcpProxy(host or "127.0.0.1", int(port))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_temporal_unreachable_then_back(api: Api, client: Client, temporal_proxy: TcpProxy) -> None:
    proxied = await Client.connect(
        f"127.0.0.1:{temporal_proxy.port}", namespace=client.namespace, data_converter=encrypted_converter()
    )
    settings = api.settings.model_copy(update={"request_timeout_seconds": TIMEOUT})
    app = create_app(settings, temporal_client=proxied, pool=api.pool, policy=fast_policy())
    async with make_http(app) as http:
        h = api.h("manager")
        r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("consultant"))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        payload = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}

        for outage in (temporal_proxy.stop, temporal_proxy.blackhole):
            await outage()
            t0 = time.monotonic()
            r = await http.post(f"/intakes/{cid}/steps/callback", json=payload, headers=h)
            assert_503(r, "temporal_unavailable", "temporal_timeout")
            assert time.monotonic() - t0 < TIMEOUT + 3, "answered within the time bound"
            # a creation while Temporal is away: 503; either nothing was kept (Temporal refused for
            # sure) or the row waits as `starting`, its messages held, for the reconciler
            phone = unique_phone()
            key = {**api.h("consultant"), "Idempotency-Key": f"outage-{phone}"}
            body = api.intake_body("remote", client={"phone": phone})
            r = await http.post("/intakes", json=body, headers=key)
            assert_503(r, "temporal_unavailable", "temporal_timeout")
            rows = await api.pool.fetch("SELECT id, status FROM cases WHERE client_phone = $1", phone)
            assert [x["status"] for x in rows] in ([], ["starting"])
            if rows:
                held = await api.pool.fetch("SELECT status FROM outbox WHERE case_id = $1", rows[0]["id"])
                assert held and all(x["status"] == "pending" for x in held), "messages of a starting case wait"
            # reads from PostgreSQL still work
            r = await http.get(f"/intakes/{cid}", headers=h)
            assert r.status_code == 200 and r.json()["state_source"] == "projection"
            r = await http.get("/readyz")
            assert_503(r, "not_ready")
            assert r.json()["details"]["temporal"] != "ok" and r.json()["details"]["database"] == "ok"
            # nothing was half-applied: the callback is still open in the workflow itself
            state = await api.case(cid, fresh=True)
            assert open_steps(state) == {"callback"}

            await temporal_proxy.start()

            async def completes() -> Any:
                rr = await http.post(f"/intakes/{cid}/steps/callback", json=payload, headers=h)
                assert rr.status_code in (200, 503), rr.text
                return rr.json() if rr.status_code == 200 else None

            if outage == temporal_proxy.stop:
                # first outage over: reconnects and works again (the callback is done below, once)
                async def ready() -> bool:
                    return (await http.get("/readyz")).status_code == 200

                await api.until(ready, timeout=10, what="/readyz after the outage")
                # the reconciler completes what the outage left; the retry with the same key gets the case
                reconciler = build_reconciler(
                    api.client, api.pool, settings.model_copy(update={"reconcile_settle_seconds": 0.001}),
                    task_queue=settings.task_queue,
                )
                repaired = await reconciler.run_once()
                assert repaired == [x["id"] for x in rows]
                r = await http.post("/intakes", json=body, headers=key)
                assert r.status_code == 201, r.text
                new_id = r.json()["id"]
                assert await api.pool.fetchval("SELECT status FROM cases WHERE id = $1", new_id) == "open"
                desc = await api.client.get_workflow_handle(f"intake-{new_id}").describe()
                assert desc.status is not None and desc.status.name == "RUNNING"
                if rows:
                    timeline = (await api.case(new_id))["timeline"]
                    assert any(e["kind"] == "repaired" for e in timeline), "the repair shows on the case"
                continue
            s = await api.until(completes, timeout=20, what="callback completes after Temporal is back")
            assert open_steps(s) == {"assign_designer", "assign_assistant"}
            done = [d for d in s["done_steps"] if d["step"] == "callback"]
            assert len(done) == 1 and done[0]["result"] == "done"
            assert [e["kind"] for e in s["timeline"]].count("step_done") == 1


async def test_idempotent_step_retry_after_timeout(api: Api) -> None:
    """A retry sent while the first request is still in flight (same Idempotency-Key) acts once."""
    c = await api.create("consultant", "remote")
    payload = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}
    h = {**api.h("manager"), "Idempotency-Key": "retry-after-timeout-" + str(c["id"])}
    url = f"/intakes/{c['id']}/steps/callback"
    r1, r2 = await asyncio.gather(api.http.post(url, json=payload, headers=h), api.http.post(url, json=payload, headers=h))
    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
    assert r2.json()["version"] == r1.json()["version"]
    done = [e for e in (await api.case(c["id"]))["timeline"] if e["kind"] == "step_done" and e["step"] == "callback"]
    assert len(done) == 1
    r3 = await api.http.post(f"/intakes/{c['id']}/steps/callback", json=payload, headers=api.h("manager"))
    assert r3.status_code == 409 and r3.json()["code"] == "step_not_open"


@pytest_asyncio.fixture(loop_scope="session")
async def dead_database() -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 9)  # never forwarded: refused, then a black hole
    await proxy.start()
    await proxy.stop()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_database_unreachable(api: Api, client: Client, dead_database: TcpProxy) -> None:
    dsn = f"postgresql://intake:x@127.0.0.1:{dead_database.port}/intake"
    pool: asyncpg.Pool = await create_pool(dsn, min_size=0, max_size=2)
    settings = api.settings.model_copy(update={"request_timeout_seconds": TIMEOUT})
    app = create_app(settings, temporal_client=client, pool=pool, policy=fast_policy())
    try:
        async with make_http(app) as http:
            for outage in ("refused", "silent"):
                if outage == "silent":
                    await dead_database.blackhole()
                for method, path, body in (
                    ("GET", "/intakes", None),
                    ("GET", "/me/tasks", None),
                    ("POST", "/intakes", api.intake_body()),
                    ("POST", "/intakes/1/steps/callback", {"reached": False}),
                ):
                    t0 = time.monotonic()
                    r = await http.request(method, path, json=body, headers=api.h("manager"))
                    assert_503(r, "database_unavailable")
                    assert time.monotonic() - t0 < TIMEOUT + 3
                r = await http.get("/readyz")
                assert_503(r, "not_ready")
                assert r.json()["details"]["database"] != "ok" and r.json()["details"]["temporal"] == "ok"
                assert (await http.get("/healthz")).status_code == 200
    finally:
        pool.terminate()


async def test_app_starts_without_database_or_temporal(dead_database: TcpProxy) -> None:
    """create_app(settings) alone: the lifespan tolerates missing services; /healthz ok, /readyz 503."""
    settings = Settings(
        database_url=f"postgresql://intake:x@127.0.0.1:{dead_database.port}/intake",
        temporal_address=f"127.0.0.1:{dead_database.port}",
        request_timeout_seconds=1.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), make_http(app) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok", "checks": {}}
        r = await http.get("/readyz")
        assert_503(r, "not_ready")
        r = await http.get("/intakes", headers={"Authorization": "Bearer x"})
        assert_503(r, "database_unavailable")




async def test_app_connects_by_itself(api: Api, client: Client, pg_dsn: str) -> None:
    """create_app(settings) with nothing injected: the lifespan connects (connections.py) and is ready."""
    settings = Settings(
        database_url=pg_dsn,
        temporal_address=client.service_client.config.target_host,
        task_queue=api.settings.task_queue,
        payload_keys=SecretStr(KEYS),  # connect_temporal refuses to run without a payload key
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), make_http(app) as http:
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
        r = await http.get("/me/tasks", headers=api.h("designer"))
        assert r.status_code == 200, r.text
