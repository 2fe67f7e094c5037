"""The Temporal UI as the stuck-case tool, readable from the first run (SPEC §8, §12).

`intake dev` runs as a newcomer starts it (a subprocess, the fast policy, free ports, an empty
database), a case is left alone until its callback is late, and Debian's headless Chromium does what
docs/operations.md tells an operator to do: open the banner's late-cases link, add the stage,
escalation level, due and designer columns, save the view, open the case and read its Chinese current
details, decrypted by the dev stack's own codec credential, with no codec error anywhere; tries to send
the case an update from the UI, which that decode-only credential cannot encode; then a manager's
personal codec URL in the UI's settings, as in production. The screenshots are kept in
tests/e2e/screenshots/ (git-ignored; the docs keep a copy in docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Response, async_playwright

from config import PROJECT_ROOT
from devstack import TOKENS_FILE_NAME, read_demo_tokens
from tests.e2e.test_devstack import DevProcess, _free_port
from tests.support.infra import database_beside
from tests.support.wait import until

SHOTS = Path(__file__).with_name("screenshots")
CHROMIUM = os.environ.get("INTAKE_TEST_CHROMIUM", "/usr/bin/chromium")
CODEC_ERROR = "Codec Server could not connect"


@pytest.fixture
def chromium_path() -> str:
    """Debian's chromium; skipped without it only outside CI."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with apt-get")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return path


def _banner_link(output: str, name: str) -> str:
    line = next((ln for ln in output.splitlines() if ln.strip().startswith(name)), None)
    assert line is not None, f"no {name!r} line in the banner:\n{output}"
    return line.split()[-1]


def _ui_codec_endpoint(dev: DevProcess) -> str:
    """The codec endpoint the stack gave its Temporal UI (read from the dev server's command line)."""
    for child in psutil.Process(dev.proc.pid).children(recursive=True):
        cmd = child.cmdline()
        if "start-dev" in cmd and "--ui-codec-endpoint" in cmd:
            return cmd[cmd.index("--ui-codec-endpoint") + 1]
    raise AssertionError("no temporal server start-dev among the stack's children")


async def _open_list(page: Page, url: str, workflow: str, *, within: float = 60.0) -> None:
    """Open a list link until it shows `workflow` (visibility follows the workflow by a moment)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        await page.goto(url)
        try:
            await page.get_by_role("link", name=workflow, exact=True).wait_for(timeout=5000)
            return
        except Exception:  # noqa: BLE001 - not listed yet: reload until the deadline
            if asyncio.get_running_loop().time() > deadline:
                raise


async def _shot(page: Page, name: str, **kw: Any) -> None:
    SHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SHOTS / name), **kw)


async def test_late_case_found_from_the_banner_and_read_decrypted(
    pg_dsn: str, tmp_path: Path, chromium_path: str
) -> None:
    async with database_beside(pg_dsn) as dsn:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        env.update(
            INTAKE_DATA_DIR=str(tmp_path / "data"), INTAKE_DATABASE_URL=dsn,
            INTAKE_POLICY_FILE=str(PROJECT_ROOT / "policies" / "fast.yaml"),
            INTAKE_API_HOST="127.0.0.1", INTAKE_API_PORT=str(_free_port()),
            INTAKE_TEMPORAL_PORT=str(_free_port()), INTAKE_TEMPORAL_UI_PORT=str(_free_port()),
            PYTHONUNBUFFERED="1",
        )
        dev = DevProcess(env, tmp_path / "dev.log")
        try:
            await asyncio.to_thread(dev.wait_ready)
            await _walk(dev, chromium_path)
        finally:
            if dev.proc.poll() is None:
                dev.interrupt_and_wait()
            dev.kill()


async def _walk(dev: DevProcess, chromium_path: str) -> None:
    banner = dev.output()
    late_link = _banner_link(banner, "Late cases")
    escalated_link = _banner_link(banner, "Escalated to the director")
    assert urlsplit(late_link).netloc == urlsplit(dev.ui).netloc and "query=" in late_link

    # The UI's codec credential: loopback, decode only, no staff token, and printed nowhere.
    endpoint = _ui_codec_endpoint(dev)
    secret = endpoint.rsplit("/", 1)[-1]
    assert endpoint == f"{dev.api}/codec/local/{secret}" and len(secret) >= 32
    tokens = {t.role: t for t in read_demo_tokens(dev.data_dir / TOKENS_FILE_NAME)}
    async with httpx.AsyncClient(base_url=dev.api, timeout=30) as http:
        refused = await http.post(f"{endpoint}/encode", json={"payloads": []})
        assert refused.status_code == 403 and refused.json()["code"] == "decode_only"
        as_bearer = await http.get("/me/tasks", headers={"Authorization": f"Bearer {secret}"})
        assert as_bearer.status_code == 401

        # A case nobody calls back: the fast policy makes its callback late within seconds.
        consultant = {"Authorization": f"Bearer {tokens['consultant'].token}"}
        manager = {"Authorization": f"Bearer {tokens['manager'].token}"}
        created = await http.post("/intakes", headers=consultant, json={
            "source": "online", "scenario": "remote",
            "client": {"name": "王建国", "phone": "13912345678", "gender": "male", "budget": 300000}})
        assert created.status_code == 201, created.text
        case_id = created.json()["id"]
        workflow = f"intake-{case_id}"

        async def escalated_to_director() -> bool:
            case = (await http.get(f"/intakes/{case_id}", headers=manager)).json()
            return bool(case["overdue"]) and case["escalation_level"] >= 2

        await until(escalated_to_director, timeout=60, what="the callback escalated to the director")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 640}, locale="en-US")
            codec_answers: list[tuple[str, int]] = []  # (local | personal, HTTP status)
            outside: list[str] = []

            def seen(response: Response) -> None:
                if "/codec/local/" in response.url:
                    codec_answers.append(("local", response.status))
                elif "/codec/k/" in response.url:
                    codec_answers.append(("personal", response.status))

            page.on("response", seen)
            page.on("request", lambda r: outside.append(r.url)
                    if urlsplit(r.url).hostname not in ("127.0.0.1", "localhost", None) else None)

            # 1. The banner's late-cases link finds the case; so does the escalated one.
            await _open_list(page, escalated_link, workflow)
            await _open_list(page, late_link, workflow)
            await _shot(page, "ui-stuck-01-late-cases-link.png")
            # Times in Beijing time (the UI's clock menu; kept in this browser).
            await page.get_by_test_id("timezones-menu-button").click()
            await page.get_by_test_id("timezone-search").fill("China")
            await page.get_by_role("menuitem", name="China Standard Time").click()
            await page.keyboard.press("Escape")
            await page.get_by_test_id("timezone-search").wait_for(state="hidden")

            # 2. The columns that tell the story (docs/operations.md), then the list saved as a view.
            await page.get_by_test_id("workflows-summary-table-configuration-button").click()
            for name in ("Run ID", "Type", "End"):
                await page.get_by_test_id(f"orderable-list-item-{name}-remove-button").click()
            for name in ("IntakeStage", "EscalationLevel", "StepDueAt", "Designer"):
                await page.get_by_test_id(f"orderable-list-item-{name}-add-button").click()
            await page.get_by_text("Columns (in view)").scroll_into_view_if_needed()
            await _shot(page, "ui-stuck-02-configure-columns.png")
            await page.get_by_role("button", name="Close").locator("visible=true").first.click()
            await page.get_by_test_id("create-view-button").click()
            await page.get_by_test_id("workflow-save-view-modal-input").press_sequentially("Late cases")
            await page.get_by_test_id("confirm-modal-button").locator("visible=true").click()
            await page.get_by_test_id("saved-views-button").filter(has_text="Late cases").wait_for()
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=workflow, exact=True))
            await row.get_by_text("callback").wait_for()
            await _shot(page, "ui-stuck-03-late-cases-view.png")

            # 3. The case: its input decrypted, its timeline in Chinese.
            await page.get_by_role("link", name=workflow, exact=True).click()
            await page.get_by_text('"scenario": "remote"').first.wait_for(timeout=30_000)
            await page.get_by_text("经理回访超时 → 通知总经理").first.wait_for(timeout=30_000)
            await page.set_viewport_size({"width": 1400, "height": 960})
            await _shot(page, "ui-stuck-04-case-decrypted.png")

            # 4. Its current details (User Metadata): the step, whose turn, due, how late, what next.
            # The UI renders each Markdown text in a frame of its own (window names user-metadata-…).
            await page.get_by_test_id("user-metadata-tab").click()

            async def frame_text(name: str, wanted: str) -> str | None:
                frame = page.frame(name=name)
                try:
                    text = await frame.inner_text("body") if frame is not None else ""
                except PlaywrightError as exc:
                    if "detached" not in str(exc):
                        raise
                    return None  # the UI re-rendered the frame between finding and reading it: not yet
                return text if wanted in text else None

            details = await until(lambda: frame_text("user-metadata-current-details", "已超时"), timeout=30,
                                  what="the current details, decrypted")
            assert f"客户 #{case_id} · 经理回访 · ⚠️ 超时" in details, details
            assert "轮到 经理 陈建国" in details and ("通知总经理王志强" in details or "已搁置" in details), details
            await until(lambda: frame_text("user-metadata-summary", f"客户 #{case_id} · 网销 · 情况一·未到过公司"),
                        timeout=10, what="the static summary")
            text = await page.inner_text("body")
            assert CODEC_ERROR not in text
            await _shot(page, "ui-stuck-05-case-details.png")

            assert codec_answers and set(codec_answers) == {("local", 200)}, codec_answers
            assert "13912345678" not in text + details and "王建国" not in text + details  # no client data

            # 5. No business action from this UI: its credential cannot encode an update's input.
            await page.get_by_role("button", name="More Actions").click()
            await page.get_by_role("menuitem", name="Send an Update").click()
            dialog = page.locator("dialog[open]")
            await dialog.get_by_test_id("update-select-button").click()
            await page.get_by_role("option", name="add_note").click()
            await dialog.locator(".cm-content").first.click()
            await page.keyboard.type('{"actor": {"staff_id": 2, "role": "director", "name": "?"}, "text": "typed in the UI"}')
            await dialog.get_by_text("Update ID (optional)").click()  # the editor hands its text over on blur
            await dialog.get_by_test_id("confirm-modal-button").click()
            await dialog.get_by_text("Data encoding failed").wait_for(timeout=15_000)
            assert ("local", 403) in codec_answers, codec_answers
            await _shot(page, "ui-stuck-06-update-refused.png")
            async with httpx.AsyncClient(base_url=dev.api, timeout=30) as http:
                case = (await http.get(f"/intakes/{case_id}?fresh=true", headers=manager)).json()
            assert "typed in the UI" not in str(case), case["timeline"][-3:]
            await page.reload()

            # 6. Production: a manager's personal codec URL in the UI's settings (a codec-only credential that
            # decrypts and nothing else, from POST /codec/credentials; masked in the shots).
            async with httpx.AsyncClient(base_url=dev.api, timeout=30) as http:
                issued = await http.post("/codec/credentials", headers=manager)
            assert issued.status_code == 201, issued.text
            personal_url = issued.json()["url"]
            assert tokens["manager"].token not in personal_url and "/codec/k/itc_" in personal_url
            await page.locator("[aria-label*='Codec Server']").locator("visible=true").first.click()
            await _shot(page, "ui-codec-settings-1-open.png", mask=[page.get_by_text(secret)])
            await page.get_by_test_id("use-local-endpoint-input").check()
            box = page.get_by_test_id("data-encoder-endpoint-input")
            await box.fill(personal_url)
            await _shot(page, "ui-codec-settings-2-personal-url.png", mask=[box, page.get_by_text(secret)])
            codec_answers.clear()
            await page.get_by_test_id("confirm-modal-button").locator("visible=true").click()
            await page.get_by_test_id("timeline-tab").click()
            await page.get_by_text('"scenario": "remote"').first.wait_for(timeout=30_000)
            await until(lambda: any(kind == "personal" for kind, _ in codec_answers), timeout=30,
                        what="the personal codec URL asked")
            assert {answer for answer in codec_answers if answer[0] == "personal"} == {("personal", 200)}, codec_answers
            assert CODEC_ERROR not in await page.inner_text("body")
            await _shot(page, "ui-codec-settings-3-decrypted.png")
            assert not outside, f"the UI fetched from outside this machine: {outside}"
        except BaseException:
            await _shot(page, "ui-stuck-failed.png", full_page=True)  # what the browser showed, for the report
            raise
        finally:
            await browser.close()

    # The local secret went to the UI's command line only: not to the banner, the logs or Temporal's log.
    assert secret not in dev.output()
    assert secret not in (dev.data_dir / "temporal.log").read_text(errors="replace")
