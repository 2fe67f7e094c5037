"""Insight over HTTP (SPEC §16) on a seeded history of its own: scorecards by permission, habits, Excel.

The history is written by store/seed_history.py through the production engine and projection writer;
no Temporal is needed (these routes read PostgreSQL only).
"""

from __future__ import annotations

import io

import httpx
from openpyxl import load_workbook

from tests.support.history import History, console_session, history_fixtures

hist, http = history_fixtures(cases=40, days=120)


async def session(hist: History, key: str) -> dict[str, str]:
    """A console session cookie for a person."""
    return (await console_session(hist, key))[0]


async def test_a_designer_reads_their_own_scorecard_and_no_one_elses(hist: History, http: httpx.AsyncClient) -> None:
    me, other = hist.ids["designer"], hist.ids["designer2"]
    r = await http.get(f"/insight/scorecards/{me}", params={"days": 150}, headers=hist.h("designer"))
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["name"] == "周一鸣" and card["weeks"], card
    assert card["total"]["steps_on_time"]["total"] > 0
    assert {i["key"] for i in card["total"]["items"]} >= {"measure_agreed", "visited_site", "seen_off"}
    r = await http.get(f"/insight/scorecards/{other}", headers=hist.h("designer"))
    assert r.status_code == 403 and r.json()["code"] == "not_your_scorecard"
    assert "吴佳" not in r.text
    # The console says the same: their own page opens, a colleague's is refused.
    cookies = await session(hist, "designer")
    page = await http.get(f"/console/insight/staff/{me}", cookies=cookies)
    assert page.status_code == 200 and "周一鸣的流程执行" in page.text
    page = await http.get(f"/console/insight/staff/{other}", cookies=cookies)
    assert page.status_code == 403 and "吴佳" not in page.text
    # The team page sends them to their own card; the habits are not theirs to read.
    page = await http.get("/console/insight", cookies=cookies, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith(f"/console/insight/staff/{me}")
    r = await http.get("/insight/habits", headers=hist.h("designer"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    # An assistant likewise; a consultant has no scorecard page at all.
    r = await http.get(f"/insight/scorecards/{me}", headers=hist.h("assistant"))
    assert r.status_code == 403 and r.json()["code"] == "not_your_scorecard"
    r = await http.get(f"/insight/scorecards/{me}", headers=hist.h("consultant"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"


async def test_the_manager_reads_everyone_and_the_habits(hist: History, http: httpx.AsyncClient) -> None:
    for key in ("designer", "designer2", "assistant", "manager"):
        r = await http.get(f"/insight/scorecards/{hist.ids[key]}", params={"days": 150}, headers=hist.h("director"))
        assert r.status_code == 200, r.text
    manager = (await http.get(f"/insight/scorecards/{hist.ids['manager']}", params={"days": 150},
                              headers=hist.h("manager"))).json()
    # The manager's reception checklist at the door is on their card.
    assert {"greeted_at_door", "business_card"} & {i["key"] for i in manager["total"]["items"]}
    r = await http.get("/insight/habits", params={"days": 150}, headers=hist.h("manager"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decided_cases"] > 20 and "不代表因果" in body["note"]
    habits = {h["key"]: h for h in body["habits"]}
    site = habits["visited_site"]
    assert site["with_cases"] + site["without_cases"] == body["decided_cases"]  # every first meeting answers it
    for h in body["habits"]:
        assert h["too_few"] == (min(h["with_cases"], h["without_cases"]) < body["min_cases"])
        if h["with_cases"]:
            assert h["with_low"] <= h["with_rate"] <= h["with_high"]
    page = await http.get("/console/insight", params={"days": 150}, cookies=await session(hist, "manager"))
    assert page.status_code == 200 and "样本太少" in page.text and "不代表因果关系" in page.text
    assert "周一鸣" in page.text and "吴佳" in page.text


async def test_corrections_come_back_as_themes(hist: History, http: httpx.AsyncClient) -> None:
    themes: dict[str, int] = {}
    for key in ("designer", "designer2", "designer3", "designer4"):
        card = (await http.get(f"/insight/scorecards/{hist.ids[key]}", params={"days": 150},
                               headers=hist.h("manager"))).json()
        for t in card["themes"]:
            themes[t["word"]] = themes.get(t["word"], 0) + t["count"]
    # The seeded corrections are about the musts: jieba finds their words, not the stop words.
    assert set(themes) & {"参观", "量房", "施工", "材料库", "客户时间"} or set(themes) & {"约定", "材料"}, themes
    assert "的" not in themes and "客户" not in themes


async def test_excel_export_by_permission(hist: History, http: httpx.AsyncClient) -> None:
    r = await http.get("/insight/scorecards.xlsx", params={"days": 150}, headers=hist.h("manager"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["考核", "习惯与签单"]
    names = {row[0] for row in wb["考核"].iter_rows(min_row=2, values_only=True)}
    assert {"周一鸣", "吴佳"} <= names
    assert any("不代表因果" in str(row[0]) for row in wb["习惯与签单"].iter_rows(values_only=True) if row and row[0])
    # A designer gets their own card only, whatever they ask for.
    r = await http.get("/insight/scorecards.xlsx", headers=hist.h("designer"))
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["考核"]
    assert {row[0] for row in wb["考核"].iter_rows(min_row=2, values_only=True)} == {"周一鸣"}
    r = await http.get("/insight/scorecards.xlsx", params={"staff_id": hist.ids["designer2"]}, headers=hist.h("designer"))
    assert r.status_code == 403
    cookies = await session(hist, "designer")
    r = await http.get("/console/insight/export.xlsx", cookies=cookies)
    assert r.status_code == 200 and load_workbook(io.BytesIO(r.content)).sheetnames == ["考核"]
