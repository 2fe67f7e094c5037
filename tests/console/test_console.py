"""Whole journeys through the staff console in a real headless chromium.

情况二 (office_visit) from the new-client form to signed, each step through its form by the person
who owns it, each signed in with their own link; wrong-role people see no form; bad values show the
field error and change nothing; the manager uploads a recording that plays with ranges; the manager board shows an overdue case in red; reports draw charts.
"""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from playwright.async_api import Page, expect

from api.console.forms import TZ
from store.staff import StaffRepository
from tests.console.conftest import Console
from tests.support import data
from tests.support.wait import until


def local_input(delta: timedelta) -> str:
    """A datetime-local value (Beijing time) `delta` from now."""
    return (datetime.now(UTC) + delta).astimezone(TZ).strftime("%Y-%m-%dT%H:%M")


async def case_open_steps(c: Console, case_id: int) -> set[str]:
    """The open steps of a case as the projection has them."""
    rows = await c.pool.fetch("SELECT step FROM case_steps WHERE case_id = $1 AND status = 'open'", case_id)
    return {r["step"] for r in rows}


async def submit_step(page: Page, step: str) -> None:
    """Submit a step's form and wait for the next page."""
    form = page.get_by_test_id(f"form-{step}")
    async with page.expect_navigation():
        await form.locator("button[type=submit]").click()


def case_id_of(page: Page) -> int:
    """The case number from a case page's address."""
    return int(page.url.split("/console/cases/")[1].split("?")[0].split("#")[0])


async def new_client(page: Page, c: Console, phone: str, name: str, **extra: Any) -> None:
    """Fill and send the new-client form (情况二, online lead who will come to the office)."""
    await page.goto(f"{c.base}/console/new")
    form = page.get_by_test_id("new-client")
    await form.locator("[name='client.name']").fill(name)
    await form.locator("[name='client.phone']").fill(phone)
    await form.locator("[name='client.gender']").select_option("male")
    await form.locator("[name='client.compound']").fill("阳光花园")
    await form.locator("[name='client.area_m2']").fill("120")
    await form.locator("[name='client.budget']").fill("300000")
    await form.locator("[name='source']").select_option("online")
    await form.locator("[name='scenario']").select_option("office_visit")
    await form.locator("[name='meeting_at']").fill(extra.get("meeting_at", local_input(timedelta(days=2))))
    await form.locator("[name='meeting_kind']").select_option("office_visit")
    async with page.expect_navigation():
        await form.locator("button[type=submit]").click()


async def consultant_lead(c: Console, name: str) -> tuple[Page, int]:
    """The consultant, signed in, types a new 情况二 lead in: their page (on the new case) and its number."""
    consultant = await c.sign_in(c.people["consultant"].id)
    await new_client(consultant, c, data.unique_phone("13"), f"{name}{data.unique_phone('1')[-4:]}")
    return consultant, case_id_of(consultant)


async def test_office_visit_from_new_client_to_signed(console: Console) -> None:
    c = console
    p = c.people
    name = f"王建国{data.unique_phone('1')[-4:]}"
    phone = data.unique_phone("13")

    # --- the consultant takes the lead: a bad phone first (field error, nothing created) -------------
    consultant = await c.sign_in(p["consultant"].id)
    await expect(consultant.get_by_test_id("who")).to_contain_text(p["consultant"].name)
    await c.shot(consultant, "01-consultant-tasks")
    await new_client(consultant, c, "12345", name)
    bad_phone = consultant.locator(".field[data-field='client.phone'] .error")
    await expect(bad_phone).to_contain_text("手机号不正确")
    assert await c.pool.fetchval("SELECT count(*) FROM cases WHERE client_name = $1", name) == 0
    await c.shot(consultant, "02-new-client-bad-phone")

    await new_client(consultant, c, phone, name)
    case_id = case_id_of(consultant)
    await expect(consultant.get_by_test_id("stage")).to_contain_text("回访")
    # the creator works the case: the full phone as a tel: link
    await expect(consultant.locator("[data-testid=phone] a[href^='tel:']")).to_have_text(phone)
    # not the consultant's step: no form, a clear message
    assert await consultant.get_by_test_id("form-callback").count() == 0
    await expect(consultant.get_by_test_id("not-mine-callback")).to_contain_text("设计部经理")
    await c.shot(consultant, "03-case-created-consultant-view")
    # a post made by hand (a stale page, a guessed address) is refused by the same service: a clear
    # message, and the step stays open
    csrf = await consultant.locator("form.who input[name=csrf]").get_attribute("value")
    forged = await consultant.request.post(
        f"{c.base}/console/cases/{case_id}/steps/callback", form={"csrf": csrf or "", "reached": "on"}
    )
    assert forged.status == 403 and "由设计部经理完成" in await forged.text()
    assert await case_open_steps(c, case_id) == {"callback"}

    # a second lead with the same phone answers with a link to the open case
    await new_client(consultant, c, phone, name)
    await expect(consultant.get_by_test_id("duplicate-link")).to_have_attribute("href", f"/console/cases/{case_id}")
    await c.shot(consultant, "04-new-client-duplicate-phone")

    # --- the manager calls back -----------------------------------------------------------------------
    manager = await c.sign_in(p["manager"].id)
    await expect(manager.locator(f".task[data-case='{case_id}'][data-step='callback']")).to_be_visible()
    await c.shot(manager, "05-manager-tasks")
    await manager.locator(f".task[data-case='{case_id}'][data-step='callback'] a").click()
    await expect(manager.get_by_test_id("form-callback")).to_be_visible()
    await expect(manager.get_by_test_id("temporal-link")).to_have_attribute(
        "href", f"http://127.0.0.1:8233/namespaces/default/workflows/intake-{case_id}"
    )
    await c.shot(manager, "06-case-callback-form")
    form = manager.get_by_test_id("form-callback")
    await form.locator("[name=reached]").check()
    await form.locator("[name=car]").fill("沪A12345 白色轿车")
    await form.locator("[name=notes]").fill("客户周六上午到店")
    await submit_step(manager, "callback")
    await expect(manager.get_by_test_id("flash")).to_contain_text("经理回访")
    assert await case_open_steps(c, case_id) == {"assign_designer", "assign_assistant", "arrival"}

    # --- the manager assigns the designer: a choice other than the first needs a reason ---------------
    form = manager.get_by_test_id("form-assign_designer")
    first = await form.locator("input[name=designer_id]:checked").get_attribute("value")
    assert first, "the first suggestion is preselected"
    ours, other = str(p["designer"].id), str(p["designer2"].id)
    detour = ours if first != ours else other
    await form.locator(f"input[name=designer_id][value='{detour}']").check()
    await submit_step(manager, "assign_designer")
    reason = manager.locator("[data-testid=form-assign_designer] .field[data-field=reason] .error")
    await expect(reason).to_contain_text("理由")
    assert "assign_designer" in await case_open_steps(c, case_id)  # nothing changed
    await c.shot(manager, "07-assign-designer-reason-required")
    form = manager.get_by_test_id("form-assign_designer")
    await form.locator(f"input[name=designer_id][value='{ours}']").check()
    if first != ours:
        await form.locator("[name=reason]").fill("周设计擅长老房翻新，客户指定")
    await submit_step(manager, "assign_designer")
    await expect(manager.get_by_test_id("designer")).to_contain_text(p["designer"].name)

    # --- the assistant lead assigns the assistant (sees the phone masked: not working the case) -------
    lead = await c.sign_in(p["assistant_lead"].id)
    await expect(lead.locator(f".task[data-case='{case_id}'][data-step='assign_assistant']")).to_be_visible()
    await lead.goto(f"{c.base}/console/cases/{case_id}")
    await expect(lead.get_by_test_id("phone")).to_contain_text(phone[:3] + "****" + phone[-4:])
    assert await lead.get_by_test_id("form-arrival").count() == 0
    await c.shot(lead, "08-assistant-lead-case")
    form = lead.get_by_test_id("form-assign_assistant")
    await form.locator(f"input[name=assistant_id][value='{p['assistant'].id}']").check()
    await submit_step(lead, "assign_assistant")
    await expect(lead.get_by_test_id("assistant")).to_contain_text(p["assistant"].name)

    # --- the client arrives: the manager records it ----------------------------------------------------
    await manager.goto(f"{c.base}/console/cases/{case_id}")
    await submit_step(manager, "arrival")
    assert await case_open_steps(c, case_id) == {"first_meeting"}

    # --- the designer holds the first meeting: a time in the past is refused beside the field ---------
    designer = await c.sign_in(p["designer"].id)
    await expect(designer.locator(f".task[data-case='{case_id}'][data-step='first_meeting']")).to_be_visible()
    await c.shot(designer, "09-designer-tasks")
    await designer.goto(f"{c.base}/console/cases/{case_id}")
    await expect(designer.locator("[data-testid=phone] a[href^='tel:']")).to_have_text(phone)
    form = designer.get_by_test_id("form-first_meeting")
    await form.locator("[name=true_needs]").fill("两个孩子，需要儿童房和大储物空间")
    # the four musts (SPEC §3, seed 二f) and the send-off, each answered
    await form.locator("[name=measure_agreed]").check()
    await form.locator("[name=measure_at]").fill(local_input(-timedelta(days=1)))
    await form.locator("[name=visited_site]").check()
    await form.locator("[name=visited_material_store]").check()
    await form.locator("[name=seen_off]").check()
    await submit_step(designer, "first_meeting")
    err = designer.locator("[data-testid=form-first_meeting] .field[data-field=measure_at] .error")
    await expect(err).to_contain_text("将来")
    assert await case_open_steps(c, case_id) == {"first_meeting"}  # nothing changed
    # what was typed is still there
    await expect(designer.locator("[data-testid=form-first_meeting] [name=true_needs]")).to_have_value(
        "两个孩子，需要儿童房和大储物空间"
    )
    await c.shot(designer, "10-first-meeting-time-in-past")
    form = designer.get_by_test_id("form-first_meeting")
    await form.locator("[name=measure_agreed]").check()
    await form.locator("[name=measure_at]").fill(local_input(timedelta(days=3)))
    await form.locator("[name=visited_site]").check()
    await form.locator("[name=visited_material_store]").check()
    await form.locator("[name=seen_off]").check()
    await submit_step(designer, "first_meeting")
    assert await case_open_steps(c, case_id) == {"debrief", "measure"}

    # --- debrief by the manager, measure by the designer, outcome by the manager ------------------------
    await manager.goto(f"{c.base}/console/cases/{case_id}")
    assert await manager.get_by_test_id("form-measure").count() == 0
    await expect(manager.get_by_test_id("not-mine-measure")).to_contain_text(p["designer"].name)
    form = manager.get_by_test_id("form-debrief")
    await form.locator("[name=findings]").fill("设计师介绍作品时间过长，客户需求追问不够")
    await form.locator("[name=designer_corrections]").fill("先问需求，再讲案例")
    await submit_step(manager, "debrief")

    # the client moves the measure: the designer reschedules it, and adds a note
    await designer.goto(f"{c.base}/console/cases/{case_id}")
    await designer.locator("summary", has_text="改期").click()
    await designer.locator("#r-target").select_option("measure")
    await designer.locator("#r-at").fill(local_input(timedelta(days=4)))
    await designer.locator("#r-reason").fill("客户出差")
    async with designer.expect_navigation():
        await designer.get_by_role("button", name="改期", exact=True).click()
    await expect(designer.get_by_test_id("flash")).to_contain_text("已改期")
    await designer.locator("summary", has_text="添加备注").click()
    await designer.locator("#n-text").fill("客户带了户型图")
    async with designer.expect_navigation():
        await designer.get_by_role("button", name="添加备注", exact=True).click()
    await expect(designer.get_by_test_id("timeline")).to_contain_text("客户带了户型图")
    await c.shot(designer, "10b-designer-rescheduled-and-noted")
    # the manager's correction reached the designer, who acknowledges it (做记录并改正)
    form = designer.get_by_test_id("form-acknowledge")
    await form.locator("[name=note]").fill("已记录，下次先问需求再讲案例")
    await submit_step(designer, "acknowledge")
    await designer.get_by_test_id("form-measure").locator("[name=result]").select_option("done")
    await submit_step(designer, "measure")
    assert await case_open_steps(c, case_id) == {"outcome"}

    await manager.goto(f"{c.base}/console/cases/{case_id}")
    await manager.get_by_test_id("form-outcome").locator("[name=outcome]").select_option("signed")
    await submit_step(manager, "outcome")
    await expect(manager.get_by_test_id("stage")).to_contain_text("已签单")
    assert await c.pool.fetchval("SELECT outcome FROM cases WHERE id = $1", case_id) == "signed"

    # the SMS sent to the client, with their status (the outbox dispatcher delivers them)
    async def sms_sent() -> bool:
        await manager.reload()
        text = await manager.get_by_test_id("messages").inner_text()
        return "T2" in text and "T3" in text and "已发送" in text

    await until(sms_sent, 20, "T2 and T3 listed as sent")
    timeline = await manager.get_by_test_id("timeline").inner_text()
    assert "回访" in timeline and "分配设计师" in timeline
    await c.shot(manager, "11-case-signed")


async def test_board_shows_an_overdue_case_in_red_and_reports_draw(console: Console) -> None:
    c = console
    consultant = await c.sign_in(c.people["consultant"].id)
    await new_client(consultant, c, data.unique_phone("13"), "李女士")
    case_id = case_id_of(consultant)

    # nobody calls back: with the fast policy the callback is overdue after 10 s
    manager = await c.sign_in(c.people["manager"].id)
    await manager.goto(f"{c.base}/console/board?scenario=office_visit")
    row = manager.locator(f".boardcase[data-case='{case_id}']")

    async def overdue_on_board() -> bool:
        await manager.reload()
        cls = await row.get_attribute("class") if await row.count() else ""
        return "overdue" in (cls or "")

    await until(overdue_on_board, 40, "the case shown overdue on the board")
    colour = await row.evaluate("el => getComputedStyle(el).borderLeftColor")
    assert colour == "rgb(198, 40, 40)", colour  # red
    await expect(row.locator(".due")).to_contain_text("超时")
    # overdue cases come first
    first_overdue = await manager.locator(".boardcase").first.get_attribute("class")
    assert "overdue" in (first_overdue or "")
    # the board refreshes by itself (htmx polling)
    assert await manager.locator("#board[hx-trigger^='every']").count() == 1
    # 今日晨报 at the top: the case stalled now among the figures, as they stand before the summary is sent
    summary = manager.get_by_test_id("morning-summary")
    await expect(summary).to_contain_text("今日晨报")
    await expect(summary).to_contain_text("当前超时")
    await c.shot(manager, "12-manager-board-overdue")

    # the same task, red, in the manager's 我的待办 with how late
    await manager.goto(f"{c.base}/console")
    task = manager.locator(f".task.overdue[data-case='{case_id}']")
    await expect(task).to_contain_text("超时")

    # a consultant has no board
    await consultant.goto(f"{c.base}/console/board")
    await expect(consultant.get_by_test_id("error")).to_contain_text("只有设计部经理、总经理可以查看看板")

    director = await c.sign_in(c.people["director"].id)
    await director.goto(f"{c.base}/console/reports")
    for chart in ("ontime", "callback", "escalations", "rotation", "funnel_source", "funnel_designer"):
        await expect(director.locator(f"#chart-{chart}[data-drawn=true]")).to_have_count(1)
    await expect(director.get_by_test_id("chart-funnel-source")).to_contain_text("网销")
    await c.shot(director, "13-reports")


async def test_sign_in_sign_out_csrf_docs_and_bearer_beside(console: Console) -> None:
    c = console
    link = await c.link(c.people["consultant"].id)
    page = await c.sign_in(c.people["consultant"].id)
    cookie = next(k for k in await page.context.cookies() if k["name"] == "intake_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
    assert not cookie["secure"]  # plain http here; Secure over https
    token_hash = await c.pool.fetchval(
        "SELECT token_hash FROM console_sessions WHERE staff_id = $1 ORDER BY id DESC LIMIT 1",
        c.people["consultant"].id,
    )
    assert token_hash and cookie["value"] not in token_hash  # only the hash is stored

    # a form post without the session's token changes nothing
    r = await page.request.post(f"{c.base}/console/new", form={"client.name": "张三", "client.phone": "13900000000"})
    assert r.status == 403 and "表单已过期" in await r.text()

    # a link works once
    await page.goto(link)
    await page.get_by_test_id("sign-in").click()
    await page.goto(link)
    await expect(page.locator(".alert")).to_contain_text("无效")

    # sign-out revokes the session: the cookie no longer opens anything
    await page.goto(f"{c.base}/console")
    cookie = next(k for k in await page.context.cookies() if k["name"] == "intake_session")
    async with page.expect_navigation():
        await page.get_by_role("button", name="退出").click()
    assert page.url.endswith("/console/login")
    r = await page.request.get(f"{c.base}/console", headers={"Cookie": f"intake_session={cookie['value']}"},
                               max_redirects=0)
    assert r.status == 303 and r.headers["location"] == "/console/login"
    await c.shot(page, "14-signed-out")

    # the bearer-token API keeps working beside the console
    token = await StaffRepository(c.pool).issue_token(staff_id=c.people["manager"].id, label="console test")
    async with httpx.AsyncClient(base_url=c.base) as http:
        r2 = await http.get("/me/tasks", headers={"Authorization": f"Bearer {token}"})
        assert r2.status_code == 200
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in docs.text
        assert "cdn" not in docs.text.lower() and "https://" not in docs.text
        assert (await http.get("/redoc")).status_code == 404

    # /docs renders offline from the vendored files
    await page.goto(f"{c.base}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("客户接待")
    await c.shot(page, "15-api-docs-offline")


def tiny_wav(seconds: float = 0.2, rate: int = 8000) -> bytes:
    """A short silent mono 16-bit WAV, made here (no fixture file)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


async def test_recording_uploaded_and_played_from_the_case_page(console: Console) -> None:
    c = console
    p = c.people
    _, case_id = await consultant_lead(c, "赵先生")

    manager = await c.sign_in(p["manager"].id)
    await manager.goto(f"{c.base}/console/cases/{case_id}")
    form = manager.get_by_test_id("form-recording")
    await expect(form.locator("input[type=file][name=file]")).to_have_attribute("accept", "audio/*")
    assert await form.get_attribute("enctype") == "multipart/form-data"
    # the form token rides in the form's address: judged before the file is read
    assert "?csrf=" in (await form.get_attribute("action") or "")

    # not audio (a text file named .mp3): refused in Chinese on the page, nothing stored
    await form.locator("input[name=file]").set_input_files(
        {"name": "notes.mp3", "mimeType": "audio/mpeg", "buffer": "这不是录音".encode()}
    )
    async with manager.expect_navigation():
        await form.locator("button[type=submit]").click()
    await expect(manager.get_by_test_id("recording-error")).to_contain_text("不是 mp3、m4a、wav 或 amr")
    assert await c.pool.fetchval("SELECT count(*) FROM recordings WHERE case_id = $1", case_id) == 0

    wav = tiny_wav()
    form = manager.get_by_test_id("form-recording")
    await form.locator("input[name=file]").set_input_files(
        {"name": "首次见面.wav", "mimeType": "audio/wav", "buffer": wav}
    )
    async with manager.expect_navigation():
        await form.locator("button[type=submit]").click()
    await expect(manager.get_by_test_id("flash")).to_contain_text("录音已上传")
    item = manager.locator("[data-testid=recordings] .recording")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text(p["manager"].name)
    player = item.locator("audio[controls][preload=none]")
    await expect(player).to_have_count(1)
    src = await player.get_attribute("src")
    assert src and src.startswith(f"/console/cases/{case_id}/recordings/")
    await c.shot(manager, "16-case-recording-uploaded")

    # the player's src answers ranges for this session (a phone's player seeks)
    r = await manager.request.get(f"{c.base}{src}", headers={"Range": "bytes=0-99"})
    assert r.status == 206, r.status
    assert r.headers["content-range"] == f"bytes 0-99/{len(wav)}"
    assert r.headers["content-type"] == "audio/wav"
    assert await r.body() == wav[:100]
    whole = await manager.request.get(f"{c.base}{src}")
    assert whole.status == 200 and await whole.body() == wav

    # a designer not on the case: the case does not exist for them, nor its recording
    stranger = await c.sign_in(p["designer2"].id)
    await stranger.goto(f"{c.base}/console/cases/{case_id}")
    await expect(stranger.get_by_test_id("error")).to_contain_text(f"没有编号为 {case_id} 的案例")
    assert (await stranger.request.get(f"{c.base}{src}")).status == 404
    # the assistant lead sees every case but is not on this one: no player, no upload form, the src refused
    other = await c.sign_in(p["assistant_lead"].id)
    await other.goto(f"{c.base}/console/cases/{case_id}")
    await expect(other.get_by_test_id("recordings-private")).to_be_visible()
    assert await other.get_by_test_id("form-recording").count() == 0
    assert await other.locator("audio").count() == 0
    refused = await other.request.get(f"{c.base}{src}", headers={"Range": "bytes=0-99"})
    assert refused.status == 403 and "只有本案人员" in await refused.text()
    await c.shot(other, "17-case-recording-not-on-case")
