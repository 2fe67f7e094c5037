"""The case engine under faults, as staff and operators see them through the API and the outbox.

* every staff notice fails (the WeCom robot is unreachable): escalations still climb on time, each
  failure is visible in the outbox and retried with backoff;
* no worker for a while: creation and reads answer at once, the case goes on when a worker returns;
* a workflow terminated by hand: the reconciler starts it again from the projection, the case goes on;
* a step answered 200 is visible in lists and tasks at once (the API wrote it before answering).
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.services import steps
from domain.enums import StepName
from domain.policy import EscalationChain, EscalationStage, fast_policy
from tests.api.conftest import Api, future, make_http, open_steps
from worker import build_dispatcher, build_reconciler, build_worker


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def test_failing_notice_channel_delays_no_escalation(api: Api) -> None:
    """Every notice fails; the callback escalates to level 2 on time; the outbox shows the failures."""
    policy = fast_policy().model_copy(update={
        "durations": {**fast_policy().durations, StepName.callback: timedelta(seconds=3)},
        "escalation": EscalationChain(stages=[EscalationStage(after=timedelta(0), target="owner"),
                                              EscalationStage(after=timedelta(seconds=3), target="superior")],
                                      repeat_every=timedelta(seconds=30)),
    })
    tq = f"wecom-{uuid.uuid4().hex[:8]}"
    settings = api.settings.model_copy(update={
        "task_queue": tq, "notify_channel": "wecom",
        "wecom_webhook_url": SecretStr(f"http://127.0.0.1:{_closed_port()}/cgi-bin/webhook/send?key=x"),
        "outbox_backoff_initial_seconds": 0.2, "outbox_poll_interval_seconds": 0.1,
    })
    app = create_app(settings, temporal_client=api.client, pool=api.pool, policy=policy)
    stop = asyncio.Event()
    dispatching = asyncio.create_task(build_dispatcher(api.pool, settings).run(stop))
    try:
        async with build_worker(api.client, api.pool, settings, task_queue=tq), make_http(app) as http:
            r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("consultant"))
            assert r.status_code == 201, r.text
            case = r.json()
            due = datetime.fromisoformat(case["open_steps"][0]["due_at"])

            async def escalated() -> list[dict[str, object]] | None:
                rows = await api.pool.fetch(
                    "SELECT seq, at, data FROM case_events WHERE case_id = $1 AND kind = 'escalation' ORDER BY seq",
                    case["id"],
                )
                return [dict(x) for x in rows] if len(rows) >= 2 else None

            rows = await api.until(escalated, timeout=30, what="two escalations written")
            # level 1 at due, level 2 three seconds later: on time although no notice got through
            assert abs((rows[0]["at"] - due).total_seconds()) < 2  # type: ignore[operator]
            assert abs((rows[1]["at"] - (due + timedelta(seconds=3))).total_seconds()) < 2  # type: ignore[operator]
            got = await http.get(f"/intakes/{case['id']}", headers=api.h("manager"))
            assert got.json()["escalation_level"] >= 2 and got.json()["overdue"]

            async def failures_visible() -> list[dict[str, object]] | None:
                out = await api.pool.fetch(
                    "SELECT purpose, status, failures, last_error, next_attempt_at FROM outbox"
                    " WHERE case_id = $1 AND channel = 'staff'", case["id"],
                )
                esc = [dict(x) for x in out if str(x["purpose"]).startswith("esc:")]
                return esc if len(esc) >= 2 and all(int(x["failures"]) >= 2 for x in esc) else None  # type: ignore[call-overload]

            esc = await api.until(failures_visible, timeout=30, what="notice failures recorded")
            for row in esc:
                assert row["status"] in ("pending", "sending") and row["last_error"], row
                assert row["next_attempt_at"] > datetime.now(UTC) - timedelta(seconds=1)  # type: ignore[operator]
            r = await http.post(f"/intakes/{case['id']}/close", json={"outcome": "duplicate"},
                                headers=api.h("manager"))
            assert r.status_code == 200, r.text
            await api.client.get_workflow_handle(f"intake-{case['id']}").result()  # ends while its worker is here
    finally:
        stop.set()
        await dispatching


async def test_no_worker_for_a_while_then_the_case_goes_on(api: Api) -> None:
    """Creation answers without any worker polling; once one starts, the case proceeds."""
    tq = f"late-{uuid.uuid4().hex[:8]}"
    settings = api.settings.model_copy(update={"task_queue": tq})
    app = create_app(settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    async with make_http(app) as http:
        # Created by the manager, so the callback is theirs: a consultant's case goes to the first active
        # manager in the shared database, which other suites (tests/activities) may have added first.
        r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("manager"))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        assert open_steps(r.json()) == {"callback"}
        # the case is readable at once, from the API's own write: the manager's callback is waiting
        got = (await http.get(f"/intakes/{cid}", headers=api.h("manager"))).json()
        assert got["stage"] == "callback" and open_steps(got) == {"callback"}
        owner = await api.pool.fetchval(
            "SELECT owner_id FROM case_steps WHERE case_id = $1 AND status = 'open'", cid)
        assert owner is not None
        async with build_worker(api.client, api.pool, settings, task_queue=tq):
            payload = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}
            r = await http.post(f"/intakes/{cid}/steps/callback", json=payload, headers=api.h("manager"))
            assert r.status_code == 200, r.text
            assert open_steps(r.json()) == {"assign_designer", "assign_assistant"}
            # closed while its worker is there: no case is left without a worker for later tests
            r = await http.post(f"/intakes/{cid}/close", json={"outcome": "duplicate"}, headers=api.h("manager"))
            assert r.status_code == 200, r.text
            await api.client.get_workflow_handle(f"intake-{cid}").result()  # ends while its worker is here
        assert await api.pool.fetchval("SELECT status FROM cases WHERE id = $1", cid) == "closed"


async def test_terminated_workflow_is_restarted_by_the_reconciler(api: Api) -> None:
    c = await api.create("consultant", "remote")
    await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": future(),
                                                       "meeting_kind": "measure"})
    handle = api.client.get_workflow_handle(f"intake-{c['id']}")
    await handle.terminate(reason="test: an operator ended it by mistake")
    reconciler = build_reconciler(api.client, api.pool, api.settings, task_queue=api.settings.task_queue)

    async def repaired() -> bool:
        return c["id"] in await reconciler.run_once()

    await api.until(repaired, timeout=20, what="reconciler restarts the case")
    desc = await handle.describe()
    assert desc.status is not None and desc.status.name == "RUNNING"
    case = await api.case(c["id"])
    assert open_steps(case) == {"assign_designer", "assign_assistant"}
    assert any(e["kind"] == "repaired" for e in case["timeline"])
    # and it goes on: the assistant lead registers an assistant
    body = await api.ok_step(c["id"], "assign_assistant", "assistant_lead", {})
    assert "assign_assistant" not in open_steps(body)
    kinds = await api.pool.fetch("SELECT kind FROM case_repairs WHERE case_id = $1", c["id"])
    assert [k["kind"] for k in kinds] == ["restarted"]


async def test_a_200_is_in_every_list_at_once(api: Api) -> None:
    c = await api.create("consultant", "remote")
    body = await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": future(),
                                                              "meeting_kind": "measure"})
    assert body["stage"] == "assign_designer"
    lst = (await api.http.get("/intakes", params={"stage": "assign_designer", "limit": 200},
                              headers=api.h("manager"))).json()
    assert any(i["id"] == c["id"] for i in lst["items"])
    tasks = (await api.http.get("/me/tasks", headers=api.h("assistant_lead"))).json()
    assert any(t["case_id"] == c["id"] and t["step"] == "assign_assistant" for t in tasks["items"])
    got = await api.http.get(f"/intakes/{c['id']}", headers=api.h("manager"))
    assert got.json()["stage"] == "assign_designer" and got.json()["state_source"] == "projection"


async def test_the_reconciler_pages_through_every_closed_run(api: Api) -> None:
    """Issue 19: more closed runs than one page (here a page of one) and every orphan is still restarted."""
    ids = []
    for _ in range(3):
        c = await api.create("consultant", "remote")
        await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": future(),
                                                           "meeting_kind": "measure"})
        await api.client.get_workflow_handle(f"intake-{c['id']}").terminate(reason="test: ended by mistake")
        ids.append(c["id"])
    listed = " OR ".join(f'WorkflowId = "intake-{i}"' for i in ids)

    async def visible() -> bool:  # visibility follows the terminations a moment later
        runs = [w async for w in api.client.list_workflows(f'({listed}) AND ExecutionStatus = "Terminated"')]
        return len(runs) == len(ids)

    await api.until(visible, timeout=20, what="the terminations in visibility")
    settings = api.settings.model_copy(update={"reconcile_page_size": 1})
    reconciler = build_reconciler(api.client, api.pool, settings, task_queue=api.settings.task_queue)
    repaired = await reconciler.run_once()  # one pass, page after page of closed runs
    assert set(ids) <= set(repaired), (ids, repaired)
    for i in ids:
        desc = await api.client.get_workflow_handle(f"intake-{i}").describe()
        assert desc.status is not None and desc.status.name == "RUNNING"


async def test_an_update_decided_by_temporal_answers_even_when_the_api_cannot_write_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guards: the API's fallback after Temporal decided (api/services/steps.act: a failed projection write is
    logged, the answer is built from the decision) and the workflow's own write `projection_grace` later,
    so the case reads right afterwards without the API's write."""
    c = await api.create("consultant", "remote")
    attempts: list[int] = []

    async def database_refuses(conn: Any, settings: Any, change: Any, *, confirm: bool = True) -> Any:
        attempts.append(change.version)
        raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")

    monkeypatch.setattr(steps, "write_change", database_refuses)
    payload = {"reached": True, "meeting_at": future(), "meeting_kind": "measure"}
    body = await api.ok_step(c["id"], "callback", "manager", payload)
    # the answer is the decision, although nothing was written by the API
    assert attempts, "the API did not try to write the change"
    assert body["stage"] == "assign_designer" and open_steps(body) == {"assign_designer", "assign_assistant"}
    assert await api.pool.fetchval("SELECT stage FROM cases WHERE id = $1", c["id"]) == "callback"
    monkeypatch.undo()

    async def projected() -> dict[str, Any] | None:
        # the projection as lists, tasks and a plain GET read it (not the workflow's query)
        got = await api.case(c["id"], fresh=False)
        return got if got["stage"] == "assign_designer" else None

    got = await api.until(projected, timeout=fast_policy().projection_grace.total_seconds() + 10,
                          what="the workflow's own write of the decided change")
    assert open_steps(got) == {"assign_designer", "assign_assistant"} and got["state_source"] == "projection"
    tasks = (await api.http.get("/me/tasks", headers=api.h("assistant_lead"))).json()
    assert any(t["case_id"] == c["id"] and t["step"] == "assign_assistant" for t in tasks["items"])
    notices = await api.notices(c["id"])
    assert {"open:assign_designer#1", "open:assign_assistant#1"} <= set(notices)
