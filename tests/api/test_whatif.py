"""The policy what-if (SPEC §16) on a seeded history of its own, and the policy edited in the console.

The history is written through the production engine and projection writer (store/seed_history.py),
the manager offered the production ranking read from PostgreSQL at each assignment. The replay reads
it back from the projection and runs it through the same engine and ranking with the allocation facts
rebuilt in memory; under the policies the cases ran it must give exactly the recorded ledger and
escalations, or the comparison with an edited policy would not be like for like.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import httpx

from domain import whatif
from domain.enums import StepName
from domain.policy import Policy
from store import whatif as store
from store.policy_versions import PolicyVersions
from tests.support.history import History, console_session, history_fixtures
from tests.support.wait import until

hist, http = history_fixtures(cases=60, days=150)


async def _load(hist: History) -> tuple[list[whatif.CaseHistory], dict[int, Policy], whatif.Background,
                                        dict[int, whatif.Designer]]:
    found, policies, background = await store.histories(hist.pool, period_from=hist.now - timedelta(days=200),
                                                         period_to=hist.now)
    return found, policies, background, await store.designers(hist.pool)


async def test_a_replay_under_the_recorded_policy_reproduces_history(hist: History) -> None:
    found, policies, background, designers = await _load(hist)
    assert len(found) == 60 and len(policies) == 60
    replay = whatif.replay(found, designers, background, policy=None, horizon=hist.now, recorded_policies=policies)
    ledger_rows = escalations = 0
    for h in found:
        got = replay.cases[h.case_id]
        assert got.designers == list(h.ledger), f"case {h.case_id}: assignments differ"
        assert sorted(got.escalations) == sorted(h.escalations), f"case {h.case_id}: escalations differ"
        assert got.not_replayed == [] and got.outcome == h.outcome
        ledger_rows += len(h.ledger)
        escalations += len(h.escalations)
    # The history is not trivial: every case assigned, overrides of the suggestion, late steps.
    assert ledger_rows >= 60 and escalations > 20
    assert any(not a.followed for h in found for a in h.actions if a.followed is not None)
    assert any(a.command.step == StepName.callback for h in found for a in h.actions
               if hasattr(a.command, "step"))


async def test_an_edited_policy_changes_who_gets_the_leads_and_what_escalates(hist: History) -> None:
    found, policies, background, designers = await _load(hist)
    # Every lead needs a chief designer, who may hold two cases at once; nothing is reclaimed.
    strict = Policy(name="strict", level_by_budget=[{"min_budget": 0, "level": "chief"}],  # type: ignore[list-item]
                    max_open_cases={"chief": 2, "senior": 10, "designer": 12, "junior": 6},  # type: ignore[dict-item]
                    reclaim_at_level=None)
    comp = whatif.compare(found, designers, background, policy=strict, horizon=hist.now, recorded_policies=policies)
    assert comp.reproduced
    assert comp.whatif.totals()["reclaims"] == 0
    assert comp.whatif.totals()["no_eligible"] > comp.baseline.totals()["no_eligible"]
    chief = next(i for i, d in designers.items() if d.level.value == "chief")
    # Where the manager followed the ranking (not an on-duty designer at a compound office, pre-filled):
    followed = {h.case_id for h in found if h.inp.scenario.value != "site_office"
                and next((a.followed for a in h.actions if a.followed is not None), False)}
    assert len(followed) > 20
    for row in comp.leads():
        if row.case_id in followed and not row.no_eligible:
            assert row.whatif == chief, row  # the only eligible designer
    report = whatif.report(comp, found)
    assert report["reproduced"] is True and report["changed"] == comp.changed() > 0
    shares = report["fairness"]["whatif"]  # type: ignore[index]
    assert abs(sum(f["ideal"] for f in shares) - 1) < 1e-9


async def test_the_console_what_if_runs_beside_the_request(hist: History, http: httpx.AsyncClient) -> None:
    cookies, csrf = await console_session(hist, "manager")
    page = await http.get("/console/whatif", cookies=cookies)
    assert page.status_code == 200 and "reclaim_at_level" in page.text
    yaml_text = "name: 不收回\nreclaim_at_level: null\n"
    frm = (hist.now - timedelta(days=160)).date().isoformat()
    r = await http.post("/console/whatif", cookies=cookies, data={
        "csrf": csrf, "policy_yaml": yaml_text, "label": "不掉保", "period_from": frm,
        "period_to": hist.now.date().isoformat()}, follow_redirects=False)
    assert r.status_code == 303, r.text
    url = r.headers["location"]

    async def done() -> str | None:
        p = await http.get(url, cookies=cookies)
        return p.text if 'data-testid="running"' not in p.text else None

    text = await until(done, 30, "the what-if run")
    assert "完全一致" in text and "每个线索分给谁" in text and "掉保收回" in text
    # A broken policy is refused with the file's own error, beside the box.
    r = await http.post("/console/whatif", cookies=cookies, data={
        "csrf": csrf, "policy_yaml": "callback_max_attempts: 0\n", "period_from": frm,
        "period_to": hist.now.date().isoformat()})
    assert r.status_code == 422 and "callback_max_attempts" in r.text
    # A designer may not run one.
    dcookies, dcsrf = await console_session(hist, "designer")
    r = await http.post("/console/whatif", cookies=dcookies, data={"csrf": dcsrf, "policy_yaml": yaml_text})
    assert r.status_code == 403


async def test_the_admin_edits_the_policy_with_a_diff_and_versions(hist: History, http: httpx.AsyncClient) -> None:
    cookies, csrf = await console_session(hist, "admin")
    page = await http.get("/console/policy", cookies=cookies)
    assert page.status_code == 200 and 'name="durations.callback"' in page.text and "配置文件的规则" in page.text
    # The form is generated from the model: every field's current value is there; change two.
    form = {"csrf": csrf, "note": "回访改为 10 分钟"}
    from domain.policy_admin import form_fields

    for f in form_fields(Policy()):
        if f.kind == "bool":
            if f.checked:
                form[f.path] = "on"
        else:
            form[f.path] = f.value
    form["durations.callback"] = "PT10M"
    bad = {**form, "max_open_cases.chief": "很多"}
    r = await http.post("/console/policy", cookies=cookies, data=bad)
    assert r.status_code == 422 and "valid integer" in r.text  # the same words as a policy file's error
    form["max_open_cases.chief"] = "9"
    r = await http.post("/console/policy", cookies=cookies, data=form)
    assert r.status_code == 200 and "保存前请核对变化" in r.text
    assert "PT15M" in r.text and "PT10M" in r.text and "首席设计师" in r.text
    assert 'action="/console/whatif"' in r.text  # the what-if one click away
    yaml_text = r.text.split('name="policy_yaml" value="', 1)[1].split('"', 1)[0]
    import html

    r = await http.post("/console/policy/save", cookies=cookies, follow_redirects=False, data={
        "csrf": csrf, "policy_yaml": html.unescape(yaml_text), "based_on": "", "note": "回访改为 10 分钟"})
    assert r.status_code == 303 and r.headers["location"] == "/console/policy?saved=1"
    newest = await PolicyVersions(hist.pool).newest()
    assert newest is not None and newest.version == 1 and newest.created_by == hist.ids["admin"]
    assert newest.policy.durations[StepName.callback] == timedelta(minutes=10)
    assert {c["path"] for c in newest.changes} == {"durations.callback", "max_open_cases.chief"}
    page = await http.get("/console/policy", cookies=cookies)
    assert "版本 #1" in page.text and "回访改为 10 分钟" in page.text
    # Saving on an old base is refused (someone saved meanwhile).
    r = await http.post("/console/policy/save", cookies=cookies, data={
        "csrf": csrf, "policy_yaml": "name: other\n", "based_on": "", "note": ""})
    assert r.status_code == 409 and "policy_changed" in r.text
    # The manager reads the versions but has no form; a designer does not see the policy at all.
    mcookies, mcsrf = await console_session(hist, "manager")
    page = await http.get("/console/policy", cookies=mcookies)
    assert page.status_code == 200 and 'data-testid="policy-form"' not in page.text and "#1" in page.text
    r = await http.post("/console/policy", cookies=mcookies, data={**form, "csrf": mcsrf})
    assert r.status_code == 403
    dcookies, _ = await console_session(hist, "designer")
    assert (await http.get("/console/policy", cookies=dcookies)).status_code == 403


def test_the_command_line_what_if_and_versions(hist: History) -> None:
    """`intake policy whatif --policy new.yaml --from … --to …`, `import`, `versions` against the same history."""
    env = {**os.environ, "INTAKE_DATABASE_URL": hist.dsn}
    frm = (hist.now - timedelta(days=160)).date().isoformat()

    def intake(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr
        return done.stdout

    edited = Path(tempfile.mkdtemp(prefix="whatif-cli-")) / "new.yaml"
    edited.write_text("name: 更宽松\ndurations:\n  callback: PT1H\n  contact: PT4H\nreclaim_at_level: null\n",
                      encoding="utf-8")
    out = intake("policy", "whatif", "--policy", str(edited), "--from", frm)
    assert "reproduces history: yes" in out and "Gini" in out and "steps late" in out
    report = json.loads(intake("policy", "whatif", "--policy", "policies/default.yaml", "--from", frm, "--json"))
    assert report["reproduced"] is True and report["changed"] == 0  # the policy the cases ran: nothing changes
    assert "#" in intake("policy", "import", "policies/fast.yaml", "--note", "演示用快速规则")
    assert "演示用快速规则" in intake("policy", "versions")
