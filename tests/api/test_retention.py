"""Data kept too long (issue 14): Idempotency-Keys keep only the case id (no client data) and are pruned
with the phone reads by policy; a closed case's client data is erased on request (`intake cases erase`)
with its statistics kept, recordings and their files included."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from cli import main
from config import get_settings
from tests.api.conftest import Api, future

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 16
SECRET_NOTE = "客户说备用电话 13912345670，住在花园路 9 号"


def run_cli(api: Api, monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    monkeypatch.setenv("INTAKE_DATABASE_URL", api.settings.database_url or "")
    monkeypatch.setenv("INTAKE_RECORDINGS_DIR", str(api.settings.recordings_dir))
    get_settings.cache_clear()
    try:
        return asyncio.to_thread(main, list(argv))
    finally:
        get_settings.cache_clear()


async def test_idempotency_keys_keep_no_client_data(api: Api) -> None:
    body = api.intake_body("remote")
    r = await api.http.post("/intakes", json=body, headers={**api.h("consultant"), "Idempotency-Key": "ret-1"})
    assert r.status_code == 201
    stored = await api.pool.fetchval("SELECT response::text FROM idempotency_keys WHERE key = 'ret-1'")
    assert json.loads(stored) == {"case_id": r.json()["id"]}
    assert body["client"]["phone"] not in stored and body["client"]["name"] not in stored


async def test_prune_by_policy(api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    c = await api.create("consultant", "remote")
    await api.http.get(f"/intakes/{c['id']}", headers=api.h("director"))  # a recorded full-phone read
    r = await api.http.post("/intakes", json=api.intake_body("remote"),
                            headers={**api.h("consultant"), "Idempotency-Key": "ret-old"})
    assert r.status_code == 201
    old_days = api.settings.phone_reads_retention_days + 1
    await api.pool.execute("UPDATE phone_reads SET at = now() - $2::float8 * interval '1 day' WHERE case_id = $1",
                           c["id"], old_days)
    await api.pool.execute("UPDATE idempotency_keys SET created_at = now() - $1::float8 * interval '1 day'"
                           " WHERE key = 'ret-old'", api.settings.idempotency_retention_days + 1)
    fresh_reads = await api.pool.fetchval("SELECT count(*) FROM phone_reads WHERE at > now() - interval '1 hour'")
    assert await run_cli(api, monkeypatch, "prune") == 0
    assert "pruned" in capsys.readouterr().out
    assert await api.pool.fetchval("SELECT count(*) FROM phone_reads WHERE case_id = $1", c["id"]) == 0
    assert await api.pool.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = 'ret-old'") == 0
    assert await api.pool.fetchval(
        "SELECT count(*) FROM phone_reads WHERE at > now() - interval '1 hour'") >= fresh_reads  # recent ones stay


async def _closed_case_with_everything(api: Api) -> dict[str, Any]:
    c = await api.create("consultant", "remote", notes=SECRET_NOTE)
    cid = c["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": future(), "meeting_kind": "measure",
                                                    "notes": SECRET_NOTE})
    await api.ok_step(cid, "assign_designer", "manager", {"designer_id": api.people["designer"].id, "reason": "擦除测试"})
    await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
    await api.ok_step(cid, "contact", "designer", {"meeting_at": future(), "meeting_kind": "measure"})
    r = await api.http.post(f"/intakes/{cid}/recordings", files={"file": ("会见.mp3", MP3, "audio/mpeg")},
                            headers=api.h("manager"))
    assert r.status_code == 201, r.text
    await api.until(lambda: api.pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = $1 AND purpose = 'T1'", cid),
                    what="T1 in the outbox")
    r = await api.http.post(f"/intakes/{cid}/close", json={"outcome": "lost", "reason": f"预算不够 {SECRET_NOTE}"},
                            headers=api.h("manager"))
    assert r.status_code == 200, r.text
    await api.until(lambda: api.pool.fetchval("SELECT status = 'closed' FROM cases WHERE id = $1", cid), what="closed")
    return c


async def _everything_about(api: Api, cid: int) -> str:
    rows = []
    for sql in ("SELECT to_jsonb(c) FROM cases c WHERE id = $1", "SELECT to_jsonb(e) FROM case_events e WHERE case_id = $1",
                "SELECT to_jsonb(o) FROM outbox o WHERE case_id = $1", "SELECT to_jsonb(r) FROM recordings r WHERE case_id = $1",
                "SELECT to_jsonb(a) FROM allocation_ledger a WHERE case_id = $1"):
        rows += [str(r[0]) for r in await api.pool.fetch(sql, cid)]
    return "\n".join(rows)


async def test_a_closed_case_is_erased_on_request_and_keeps_its_statistics(
    api: Api, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    c = await _closed_case_with_everything(api)
    cid, client = c["id"], c["client"]
    files = [p for p in Path(str(api.settings.recordings_dir)).rglob(f"case-{cid}/*") if p.is_file()]
    assert len(files) == 1
    before = await _everything_about(api, cid)
    assert client["phone"] in before and client["name"] in before and "13912345670" in before
    stats = ("SELECT source, scenario, stage, status, outcome, designer_id, assistant_id, created_at, closed_at"
             " FROM cases WHERE id = $1")
    kept = dict(await api.pool.fetchrow(stats, cid))
    steps = [dict(r) for r in await api.pool.fetch(
        "SELECT step_key, status, opened_at, due_at, completed_at FROM case_steps WHERE case_id = $1 ORDER BY 1", cid)]
    kinds = [r[0] for r in await api.pool.fetch("SELECT kind FROM case_events WHERE case_id = $1 ORDER BY seq", cid)]

    # an open case is never erased
    other = await api.create("consultant", "remote")
    assert await run_cli(api, monkeypatch, "cases", "erase", str(other["id"])) == 1

    assert await run_cli(api, monkeypatch, "cases", "erase", str(cid)) == 0
    assert "client data erased" in capsys.readouterr().out
    after = await _everything_about(api, cid)
    for secret in (client["phone"], client["name"], client["address"], "13912345670", "花园路", "预算不够", "会见.mp3"):
        assert secret not in after, secret
    assert not any(p.exists() for p in files)
    # the statistics stay
    assert dict(await api.pool.fetchrow(stats, cid)) == kept
    assert [dict(r) for r in await api.pool.fetch(
        "SELECT step_key, status, opened_at, due_at, completed_at FROM case_steps WHERE case_id = $1 ORDER BY 1",
        cid)] == steps
    assert [r[0] for r in await api.pool.fetch("SELECT kind FROM case_events WHERE case_id = $1 ORDER BY seq", cid)] == kinds
    assert await api.pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = $1 AND purpose = 'T1'", cid) == 1
    # the case still reads (for the reports and the board), without anyone's data
    r = await api.http.get(f"/intakes/{cid}", headers=api.h("manager"), params={"fresh": False})
    assert r.status_code == 200 and client["phone"] not in r.text and client["name"] not in r.text
    r = await api.http.get("/reports/sla", headers=api.h("manager"))
    assert r.status_code == 200
