"""Rough edges of the console at 375 px (issue 18 D), each as a person on a phone meets it.

A walk-in created from 新客户 with its reception checklist as checkboxes; a refused first meeting with
the error beside its field, in Chinese, the field marked and what was typed kept; help text that does not
repeat the label; the workflow record link for the manager and the director only, in staff words; the
timeline numbered from the oldest; the designer suggestions with the workload once and the reason
labelled as the reason for not taking the first suggestion; the report's steps in process order with
headers on one line. Screenshots at 375 px and 1280 px go to test-artifacts/screenshots/ (edges-*); the
375 px ones are kept in docs/screenshots/console/.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Locator, Page, expect

from domain.enums import STEP_LABELS, StepName
from domain.graph import PROCESS_ORDER
from tests.console.conftest import Console
from tests.console.test_console import case_id_of, case_open_steps, consultant_lead, submit_step
from tests.support import data

RED = "rgb(198, 40, 40)"


async def help_repeating_labels(form: Locator) -> list[str]:
    """The grey help texts of a form that only say its field's label again."""
    out: list[str] = []
    for f in await form.locator(".field").all():
        helps = f.locator("small.muted")
        if not await helps.count():
            continue
        text = (await helps.first.inner_text()).strip()
        label = (await f.locator("label, legend").first.inner_text()).replace("*", "").strip()
        if text and (text == label or text in label):
            out.append(text)
    return out


async def line_count(cell: Locator) -> int:
    """How many lines a cell's text takes (distinct line boxes of its contents)."""
    n: int = await cell.evaluate(
        """el => { const r = document.createRange(); r.selectNodeContents(el);
                   return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"""
    )
    return n


async def pick_designer(page: Page, form: Locator, c: Console) -> str:
    """Choose the console's designer in an assignment form, with a reason if not the first suggestion."""
    first = await form.locator("input[name=designer_id]:checked").get_attribute("value")
    ours = str(c.people["designer"].id)
    await form.locator(f"input[name=designer_id][value='{ours}']").check()
    if first != ours:
        await form.locator("[name=reason]").fill("客户指定周设计")
    return ours


async def test_walk_in_from_the_new_client_form_then_a_refused_first_meeting(console: Console) -> None:
    c = console
    p = c.people
    name = f"郑先生{data.unique_phone('1')[-4:]}"

    # --- 1. the manager receives a walk-in: the checklist is one checkbox per item -----------------
    manager = await c.sign_in(p["manager"].id)
    await manager.goto(f"{c.base}/console/new")
    form = manager.get_by_test_id("new-client")
    assert await form.locator("textarea[name=reception]").count() == 0
    boxes = form.locator(".field[data-field=reception] input[type=checkbox]")
    await expect(boxes).to_have_count(5)
    for item, text in (("gum", "口香糖清口"), ("recorder", "录音笔"), ("greeted_at_door", "门口迎接"),
                       ("business_card", "递名片"), ("water", "倒水")):
        await expect(form.locator(f"label:has(input[name='reception.{item}'])")).to_contain_text(text)
    # 3. no grey help saying a label again, and no field names in what staff read
    assert await help_repeating_labels(form) == []
    assert "walk_in" not in await form.inner_text()
    await form.locator("[name='client.name']").fill(name)
    await form.locator("[name='client.phone']").fill(data.unique_phone("13"))
    await form.locator("[name='source']").select_option("walk_in")
    await form.locator("[name='scenario']").select_option("walk_in")
    for item in ("gum", "greeted_at_door", "business_card"):
        await form.locator(f"[name='reception.{item}']").check()
    await c.shot(manager, "edges-01-walk-in-checklist")
    async with manager.expect_navigation():
        await form.locator("button[type=submit]").click()
    assert "/console/cases/" in manager.url, await manager.locator("main").inner_text()
    case_id = case_id_of(manager)
    timeline = manager.get_by_test_id("timeline")
    await expect(timeline).to_contain_text("已做：口香糖清口、门口迎接、递名片")
    await expect(timeline).to_contain_text("未做：录音笔、安排前台倒水")

    # --- 4. the workflow record: for the manager, in staff words ---------------------------------
    link = manager.get_by_test_id("temporal-link")
    await expect(link).to_have_text("流程记录（运维）")
    assert "Temporal" not in await manager.locator("main").inner_text()

    # --- 7, 8. the suggestions show the workload once; the reason says what it is for -------------
    form = manager.get_by_test_id("form-assign_designer")
    for reasons in await form.locator("label.pick .reasons").all():
        assert (await reasons.inner_text()).count("在手") == 1, await reasons.inner_text()
    reason = form.locator(".field[data-field=reason]")
    await expect(reason.locator("label")).to_contain_text("未选第一推荐设计师的理由")
    await expect(reason.locator("small")).to_contain_text("首位推荐")
    await pick_designer(manager, form, c)
    await submit_step(manager, "assign_designer")
    await expect(manager.get_by_test_id("designer")).to_contain_text(p["designer"].name)

    lead = await c.sign_in(p["assistant_lead"].id)
    await lead.goto(f"{c.base}/console/cases/{case_id}")
    form = lead.get_by_test_id("form-assign_assistant")
    await form.locator(f"input[name=assistant_id][value='{p['assistant'].id}']").check()
    await submit_step(lead, "assign_assistant")
    assert await lead.get_by_test_id("temporal-link").count() == 0  # not the manager or the director

    # --- 2. the designer's first meeting, refused: the error beside its field -----------------------
    designer = await c.sign_in(p["designer"].id)
    await designer.goto(f"{c.base}/console/cases/{case_id}")
    assert await designer.get_by_test_id("temporal-link").count() == 0
    form = designer.get_by_test_id("form-first_meeting")
    assert await help_repeating_labels(form) == []
    await form.locator("[name=true_needs]").fill("三室两厅，想要开放式厨房")
    # no measure agreed and no reason why; the visits made
    await form.locator("[name=visited_site]").check()
    await form.locator("[name=visited_material_store]").check()
    await form.locator("[name=seen_off]").check()
    await submit_step(designer, "first_meeting")
    assert await case_open_steps(c, case_id) == {"first_meeting"}  # nothing changed
    form = designer.get_by_test_id("form-first_meeting")
    field = form.locator(".field[data-field=measure_reason]")
    await expect(field.locator(".error")).to_contain_text("请填写原因")
    await expect(field.locator("textarea")).to_have_attribute("aria-invalid", "true")
    assert await field.evaluate("el => getComputedStyle(el).borderLeftColor") == RED
    page_text = await designer.locator("main").inner_text()
    assert "measure_reason" not in page_text and "Value error" not in page_text
    # only the field at fault is marked
    await expect(form.locator("[aria-invalid=true]")).to_have_count(1)
    # what was typed is kept
    await expect(form.locator("[name=true_needs]")).to_have_value("三室两厅，想要开放式厨房")
    await expect(form.locator("[name=visited_site]")).to_be_checked()
    await expect(form.locator("[name=seen_off]")).to_be_checked()
    await field.scroll_into_view_if_needed()
    await c.shot(designer, "edges-02-first-meeting-reason-beside-field")

    await form.locator("[name=measure_reason]").fill("客户要和家人商量")
    await submit_step(designer, "first_meeting")
    assert "first_meeting" not in await case_open_steps(c, case_id)

    # --- 5. the timeline: newest first, the oldest numbered 1 ---------------------------------------
    items = designer.locator("[data-testid=timeline] li")
    n = await items.count()
    assert n >= 4
    numbers = [await li.evaluate("el => el.value") for li in await items.all()]
    assert numbers == list(range(n, 0, -1)), numbers
    texts = await items.all_inner_texts()
    assert "新客户建档" in texts[-1]
    assert max(i for i, t in enumerate(texts) if "首次见面" in t) < texts.index(
        next(t for t in texts if "自然客户到店" in t)), texts
    await c.shot(designer, "edges-03-timeline-oldest-is-1")


async def test_callback_suggestions_board_and_reports(console: Console) -> None:
    c = console
    p = c.people
    consultant, case_id = await consultant_lead(c, "钱女士")
    assert await consultant.get_by_test_id("temporal-link").count() == 0

    # --- 7, 8 on the callback form --------------------------------------------------------------
    manager = await c.sign_in(p["manager"].id)
    await manager.goto(f"{c.base}/console/cases/{case_id}")
    form = manager.get_by_test_id("form-callback")
    picks = form.locator("label.pick .reasons")
    assert await picks.count() >= 2
    for reasons in await picks.all():
        assert (await reasons.inner_text()).count("在手") == 1, await reasons.inner_text()
    reason = form.locator(".field[data-field=reason]")
    await expect(reason.locator("label")).to_have_text("未选第一推荐设计师的理由")
    await expect(reason.locator("small")).to_contain_text("只在所选设计师不是首位推荐时必填")
    assert await help_repeating_labels(form) == []
    await reason.scroll_into_view_if_needed()
    await c.shot(manager, "edges-04-callback-suggestions-and-reason")
    await form.locator("[name=reached]").check()
    await pick_designer(manager, form, c)
    await submit_step(manager, "callback")
    await expect(manager.get_by_test_id("flash")).to_contain_text("经理回访")

    # --- 4 on the board: the workflow record in staff words -------------------------------------
    await manager.goto(f"{c.base}/console/board")
    row = manager.locator(f".boardcase[data-case='{case_id}']")
    await expect(row.get_by_test_id("workflow-record")).to_have_text("流程记录（运维）")
    await c.shot(manager, "edges-05-board-workflow-record")

    # --- 6. the report: steps in process order, headers on one line -------------------------------
    director = await c.sign_in(p["director"].id)
    await director.goto(f"{c.base}/console/reports")
    await expect(director.locator("#chart-ontime[data-drawn=true]")).to_have_count(1)
    labels: list[str] = await director.evaluate("() => Chart.getChart('chart-ontime').data.labels")
    process = [STEP_LABELS[s] for s in PROCESS_ORDER]
    assert {STEP_LABELS[StepName.callback], STEP_LABELS[StepName.assign_designer]} <= set(labels), labels
    assert labels == sorted(labels, key=process.index), labels
    table_steps = [t.strip() for t in await director.locator("[data-testid=chart-ontime] tbody td:first-child")
                   .all_inner_texts()]
    assert table_steps == labels
    headers = director.locator(".report th")
    assert await headers.count() > 10
    wrapped: list[Any] = []
    for th in await headers.all():
        if await line_count(th) != 1:
            wrapped.append(await th.inner_text())
    assert not wrapped, f"headers wrapping at 375 px: {wrapped}"
    # the page itself does not scroll sideways: a wide table scrolls in its own box
    assert await director.evaluate("() => document.documentElement.scrollWidth") <= 375
    await c.shot(director, "edges-06-reports-process-order")
