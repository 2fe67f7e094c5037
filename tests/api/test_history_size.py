"""SPEC §10: a complete 情况一 case leaves at most 60 history events and 25 KB of history.

The case runs through HTTP on the default policy (what `intake dev` runs), on the real dev server,
with payloads encrypted as in production; then its whole chain of runs is read back with the Temporal
client and the serialized events are counted and summed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowExecutionStatus

from api.app import create_app
from benchmarks.benchlib import HISTORY_BYTES_MAX, HISTORY_EVENTS_MAX, history_of
from domain.constants import workflow_id
from domain.policy import Policy
from tests.api.conftest import Api, make_http, open_steps
from tests.support.data import musts
from tests.support.wait import until


def _in_days(days: int, hour: int = 10) -> str:
    at = datetime.now(UTC).replace(hour=hour - 8, minute=0, second=0, microsecond=0) + timedelta(days=days)
    return at.isoformat()


async def test_a_whole_remote_case_leaves_a_small_history(api: Api) -> None:
    # The same worker, client and database as the other API tests; the SPEC's default policy.
    app = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=Policy())
    async with make_http(app) as http:

        async def ok(path: str, who: str, body: dict[str, object]) -> dict[str, object]:
            r = await http.post(path, json=body, headers=api.h(who))
            assert r.status_code in (200, 201), f"{path}: {r.status_code} {r.text}"
            out: dict[str, object] = r.json()
            return out

        case = await ok("/intakes", "consultant", api.intake_body("remote"))
        cid = int(str(case["id"]))
        base = f"/intakes/{cid}/steps"
        meet = _in_days(3)
        await ok(f"{base}/callback", "manager", {"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
        await ok(f"{base}/assign_designer", "manager",
                 {"designer_id": api.people["designer"].id, "reason": "客户点名"})
        await ok(f"{base}/assign_assistant", "assistant_lead", {"assistant_id": api.people["assistant"].id})
        await ok(f"{base}/contact", "designer", {"meeting_at": meet, "meeting_kind": "measure"})
        s = await ok(f"{base}/first_meeting", "designer",
                     musts("三室两厅，现代简约，年底入住", measure_at=_in_days(4, 14)))
        if "measure" in open_steps(s):
            await ok(f"{base}/measure", "designer", {"result": "done"})
        await ok(f"{base}/debrief", "manager", {"findings": "需求挖掘充分"})
        end = await ok(f"{base}/outcome", "manager", {"outcome": "signed"})
        assert end["status"] == "closed" and end["stage"] == "signed"

    handle = api.client.get_workflow_handle(workflow_id(cid))

    async def completed() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    await until(completed, 30, "the case's workflow completed")
    events, size, runs, kinds = await history_of(api.client, workflow_id(cid))
    print(f"情况一 case #{cid}: {events} events, {size:,} bytes, {runs} run(s): {dict(kinds.most_common())}")
    assert events <= HISTORY_EVENTS_MAX, kinds.most_common()
    assert size <= HISTORY_BYTES_MAX, f"{size:,} bytes of history; events by type: {kinds.most_common()}"
