"""The Temporal UI shows a case's payloads decrypted through the API's codec endpoint for an allowed
person, and ciphertext without it (SPEC §12). A real dev server with its UI, the API over HTTP, a
worker, and Debian's headless Chromium; the screenshots are kept in tests/e2e/screenshots/."""

from __future__ import annotations

import asyncio
import shutil
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn

from api.app import create_app
from config import Settings
from domain.constants import SEARCH_ATTRIBUTES, workflow_id
from domain.enums import Level, Role
from domain.policy import fast_policy
from store.staff import StaffRepository
from tests.support import data
from tests.support.infra import temporal_binary
from tests.support.keys import encrypted_converter
from tests.support.wait import until
from worker import build_worker

SHOTS = Path(__file__).with_name("screenshots")  # rewritten by each run (git-ignored); a copy in docs/
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CAR = "沪A7Q321"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _chromium(url: str, shot: Path, ready: Callable[[str], bool], within: float = 60.0) -> str:
    """Open `url` in headless Chromium until its text is `ready` (or `within` seconds passed; the UI's
    history page keeps a long poll open, so Chromium's own --screenshot never finishes), save a
    screenshot and return the page's text; driven over the DevTools protocol."""
    import base64

    import aiohttp

    assert CHROMIUM
    port = _free_port()
    profile = shot.parent / f".profile-{shot.stem}"
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--window-size=1400,1600", f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            ws_url = None
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                        pages = [p for p in await r.json() if p.get("type") == "page"]
                    if pages:
                        ws_url = pages[0]["webSocketDebuggerUrl"]
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            assert ws_url, "Chromium's DevTools endpoint did not come up"
            async with http.ws_connect(ws_url, max_msg_size=0) as ws:
                ids = iter(range(1, 1000))

                async def call(method: str, **params: object) -> dict[str, object]:
                    n = next(ids)
                    await ws.send_json({"id": n, "method": method, "params": params})
                    while True:
                        msg = await ws.receive_json(timeout=60)
                        if msg.get("id") == n:
                            result: dict[str, object] = msg.get("result", {})
                            return result

                await call("Page.enable")
                await call("Page.navigate", url=url)
                deadline = asyncio.get_running_loop().time() + within
                text = ""
                while True:
                    await asyncio.sleep(1.0)
                    got = await call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
                    value = got.get("result", {})
                    text = str(value.get("value", "")) if isinstance(value, dict) else ""
                    if ready(text) or asyncio.get_running_loop().time() > deadline:
                        break
                await asyncio.sleep(1.0)  # let the page finish painting what it just showed
                png = await call("Page.captureScreenshot", format="png")
                shot.write_bytes(base64.b64decode(str(png["data"])))
                return text
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_temporal_ui_decrypts_for_an_allowed_person_only(pool: asyncpg.Pool, pg_dsn: str, tmp_path: Path) -> None:
    from temporalio.testing import WorkflowEnvironment

    repo = StaffRepository(pool)
    manager = await repo.add(name="界面经理", phone=data.unique_phone("17"), role=Role.manager)
    token = await repo.issue_token(staff_id=manager.id, ttl_days=1)
    consultant = await repo.add(name="界面顾问", phone=data.unique_phone("17"), role=Role.consultant)
    ctoken = await repo.issue_token(staff_id=consultant.id, ttl_days=1)
    await repo.add(name="界面设计", phone=data.unique_phone("17"), role=Role.designer, level=Level.senior)

    api_port, ui_port = _free_port(), _free_port()
    # The UI as a manager who set their personal codec endpoint (docs/operations.md: Codec Server settings): a
    # codec-only credential, never the bearer token.
    codec_token = await repo.issue_token(staff_id=manager.id, ttl_days=1, scope="codec", issued_by=manager.id)
    endpoint = f"http://127.0.0.1:{api_port}/codec/k/{codec_token}"
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=encrypted_converter(),
        dev_server_log_level="error",
        ui=True,
        ui_port=ui_port,
        dev_server_extra_args=["--ui-codec-endpoint", endpoint],
    )
    tq = f"ui-{uuid.uuid4().hex[:8]}"
    settings = Settings(task_queue=tq, database_url=pg_dsn, api_port=api_port, temporal_ui_port=ui_port,
                        codec_cors_origins=[f"http://127.0.0.1:{ui_port}", f"http://localhost:{ui_port}"])
    app = create_app(settings, temporal_client=env.client, pool=pool, policy=fast_policy())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning",
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        async with build_worker(env.client, pool, settings, task_queue=tq):
            await until(lambda: server.started or serving.done(), timeout=15, what="API started")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=30) as http:
                body = {"source": "online", "scenario": "office_visit", "meeting_at": "2030-05-01T10:00:00+08:00",
                        "meeting_kind": "office_visit",
                        "client": {"name": "王建国", "phone": data.unique_phone("17"), "gender": "male"}}
                r = await http.post("/intakes", json=body, headers={"Authorization": f"Bearer {ctoken}"})
                assert r.status_code == 201, r.text
                cid = r.json()["id"]
                r = await http.post(
                    f"/intakes/{cid}/steps/callback",
                    json={"reached": True, "meeting_at": "2030-05-01T10:00:00+08:00", "car": CAR},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
            handle = env.client.get_workflow_handle(workflow_id(cid))
            run_id = (await handle.describe()).run_id
            url = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows/{workflow_id(cid)}/{run_id}/history"
            SHOTS.mkdir(exist_ok=True)

            allowed = await _chromium(url, SHOTS / "ui-codec-manager.png", lambda t: '"office_visit"' in t)
            await repo.revoke_tokens(staff_id=manager.id)  # the same UI, the token no longer valid
            refused = await _chromium(url, SHOTS / "ui-codec-refused.png",
                                      lambda t: "Codec Server could not connect" in t)
    finally:
        server.should_exit = True
        await serving
        await env.shutdown()
    assert (SHOTS / "ui-codec-manager.png").stat().st_size > 10_000
    # The workflow's input, decrypted: who created the case and the scenario.
    assert "界面顾问" in allowed and '"office_visit"' in allowed, allowed[:3000]
    assert "Codec Server could not connect" not in allowed
    # The same page once the token is revoked: ciphertext, and the UI says the codec refused.
    assert "界面顾问" not in refused and '"office_visit"' not in refused, refused[:3000]
    assert "Codec Server could not connect" in refused
