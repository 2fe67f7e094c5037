"""SPEC §13, only key holders command a case: forged commands sent straight to the Temporal frontend
with the real `temporal` CLI (what the UI's "Send update" does) are refused and change nothing.

- a plain JSON update that names the manager as its actor: rejected before its validator;
- a start whose input is another case's (ciphertext copied from that case's history) under another
  workflow id: the workflow fails before any write;
- a plain start: fails the same way.
The case in PostgreSQL, its steps, timeline and outbox are compared before and after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from typing import Any

import asyncpg
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from domain.constants import WORKFLOW_TYPE, workflow_id
from tests.api.conftest import Api
from tests.support.infra import temporal_binary


async def snapshot(pool: asyncpg.Pool, case_id: int) -> dict[str, Any]:
    """Everything the case is in PostgreSQL."""
    return {
        "case": dict(await pool.fetchrow("SELECT status, stage, version, state::text FROM cases WHERE id = $1", case_id)),
        "steps": [dict(r) for r in await pool.fetch(
            "SELECT step, status, owner_id, due_at FROM case_steps WHERE case_id = $1 ORDER BY 1, 2", case_id)],
        "events": await pool.fetchval("SELECT count(*) FROM case_events WHERE case_id = $1", case_id),
        "outbox": [dict(r) for r in await pool.fetch(
            "SELECT purpose, text FROM outbox WHERE case_id = $1 ORDER BY purpose", case_id)],
    }


async def cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    """The real `temporal` CLI against the test server."""
    target = api.client.service_client.config.target_host
    cmd = [temporal_binary(), *args, "--address", target, "--namespace", api.client.namespace]
    return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=60)


async def wait_closed(api: Api, wf_id: str) -> WorkflowExecutionStatus | None:
    """The status of a workflow once it is no longer running."""
    async def done() -> Any:
        d = await api.client.get_workflow_handle(wf_id).describe()
        return d.status if d.status != WorkflowExecutionStatus.RUNNING else None

    status: WorkflowExecutionStatus | None = await api.until(done, 30, f"{wf_id} closed")
    return status


async def failure_type(api: Api, wf_id: str) -> str:
    """The error type the workflow failed with."""
    async for e in api.client.get_workflow_handle(wf_id).fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            return str(e.workflow_execution_failed_event_attributes.failure.application_failure_info.type)
    return ""


async def test_plain_update_as_the_manager_is_refused_and_changes_nothing(api: Api) -> None:
    c = await api.create("consultant", "remote")
    cid = c["id"]
    before = await snapshot(api.pool, cid)
    forged = {"actor": {"staff_id": api.people["manager"].id, "role": "manager", "name": "张经理"},
              "outcome": "lost", "reason": "伪造"}
    r = await cli(api, "workflow", "update", "execute", "--workflow-id", workflow_id(cid), "--name", "close",
                  "--input", json.dumps(forged, ensure_ascii=False))
    assert r.returncode != 0, r.stdout
    assert "plain_payload_refused" in r.stdout + r.stderr or "未加密" in r.stdout + r.stderr, r.stdout + r.stderr
    # nothing entered the history, the case goes on, PostgreSQL is as it was
    events = [e.event_type async for e in api.client.get_workflow_handle(workflow_id(cid)).fetch_history_events()]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED not in events
    assert (await api.client.get_workflow_handle(workflow_id(cid)).describe()).status == WorkflowExecutionStatus.RUNNING
    assert (await api.case(cid, fresh=False))["status"] == "open"
    assert await snapshot(api.pool, cid) == before
    # the real path still works: the manager's own update through the API
    await api.ok_step(cid, "callback", "manager", {"reached": False})


async def test_a_start_with_another_cases_input_fails_before_any_write(api: Api) -> None:
    c = await api.create("consultant", "remote")
    cid = c["id"]
    before = await snapshot(api.pool, cid)
    # what anyone who can read the history has: the case's encrypted input, as stored
    start = None
    async for e in api.client.get_workflow_handle(workflow_id(cid)).fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            start = e.workflow_execution_started_event_attributes.input.payloads[0]
            break
    assert start is not None and start.metadata["encoding"] == b"binary/encrypted"
    other = cid + 10_000_000
    meta = [a for k, v in start.metadata.items() for a in ("--input-meta", f"{k}={v.decode()}")]
    r = await cli(api, "workflow", "start", "--type", WORKFLOW_TYPE, "--task-queue", api.settings.task_queue,
                  "--workflow-id", workflow_id(other), "--input-base64", "--input",
                  base64.b64encode(start.data).decode(), *meta)
    assert r.returncode == 0, r.stderr  # the server takes any start; the worker refuses it
    assert await wait_closed(api, workflow_id(other)) == WorkflowExecutionStatus.FAILED
    assert await failure_type(api, workflow_id(other)) == "case_id_mismatch"
    # the failed run wrote nothing (the SDK records only its patch marker): no activity before the failure
    kinds = {e.event_type async for e in api.client.get_workflow_handle(workflow_id(other)).fetch_history_events()}
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds

    # a plain start under a fresh id, naming that id's own case: refused on decode
    plain = {"case_id": other + 1, "source": "marketing", "scenario": "remote", "created_at": "2030-01-01T00:00:00Z",
             "created_by": {"id": api.people["manager"].id, "name": "x", "role": "manager"}, "policy": {}}
    r = await cli(api, "workflow", "start", "--type", WORKFLOW_TYPE, "--task-queue", api.settings.task_queue,
                  "--workflow-id", workflow_id(other + 1), "--input", json.dumps(plain))
    assert r.returncode == 0, r.stderr
    assert await wait_closed(api, workflow_id(other + 1)) == WorkflowExecutionStatus.FAILED
    assert await failure_type(api, workflow_id(other + 1)) == "plain_payload_refused"

    assert await snapshot(api.pool, cid) == before
    assert await api.pool.fetchval("SELECT count(*) FROM cases WHERE id = ANY($1::bigint[])", [other, other + 1]) == 0
