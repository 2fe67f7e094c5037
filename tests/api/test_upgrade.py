"""`intake cases upgrade`: running cases of the first version (type IntakeWorkflow) move onto IntakeCase."""

from __future__ import annotations

import uuid

from temporalio import workflow
from temporalio.worker import Worker

from background.reconciler import upgrade_v1_cases
from domain.models import CaseState, NotifyStaff, PendingEffect
from store.writes import projection_writer
from tests.api.conftest import Api, future, open_steps


@workflow.defn(name="IntakeWorkflow", sandboxed=False)
class FirstVersionStandIn:
    """Stands in for a running case of the first version (its code is gone; only its type name counts)."""

    @workflow.run
    async def run(self, inp: dict[str, object]) -> None:
        await workflow.wait_condition(lambda: False)


async def test_running_first_version_cases_move_onto_the_engine(api: Api) -> None:
    c = await api.create("consultant", "remote")
    wf_id = f"intake-{c['id']}"
    # Make it look like a case of the first version: its own workflow type, a message still pending.
    await api.client.get_workflow_handle(wf_id).terminate(reason="test setup")
    row_state = CaseState.model_validate(await api.pool.fetchval("SELECT state FROM cases WHERE id = $1", c["id"]))
    pending = NotifyStaff(case_id=c["id"], purpose="v1:pending", recipient_id=api.people["manager"].id,
                          text=f"客户 #{c['id']} 旧版本待发通知")
    row_state.pending_effects = [PendingEffect(kind="notify", summary="旧版待发", notify=pending)]
    await api.pool.execute("UPDATE cases SET state = $2, workflow_input = NULL WHERE id = $1", c["id"],
                           row_state.model_dump(mode="json"))
    old_tq = f"v1-{uuid.uuid4().hex[:8]}"
    async with Worker(api.client, task_queue=old_tq, workflows=[FirstVersionStandIn]):
        await api.client.start_workflow("IntakeWorkflow", {"case_id": c["id"]}, id=wf_id, task_queue=old_tq)

        async def visible() -> bool:  # the list comes from visibility, which lags a moment behind
            query = f'WorkflowType = "IntakeWorkflow" AND ExecutionStatus = "Running" AND WorkflowId = "{wf_id}"'
            return bool([w async for w in api.client.list_workflows(query)])

        await api.until(visible, timeout=20, what="the old run is listed")
        moved = await upgrade_v1_cases(api.client, api.pool, projection_writer(api.settings),
                                       task_queue=api.settings.task_queue)
    assert c["id"] in moved
    desc = await api.client.get_workflow_handle(wf_id).describe()
    assert desc.workflow_type == "IntakeCase" and desc.status is not None and desc.status.name == "RUNNING"
    assert await api.pool.fetchval("SELECT count(*) FROM outbox WHERE case_id = $1 AND purpose = 'v1:pending'",
                                   c["id"]) == 1
    # the case carries on where it stood
    body = await api.ok_step(c["id"], "callback", "manager", {"reached": True, "meeting_at": future(),
                                                              "meeting_kind": "measure"})
    assert open_steps(body) == {"assign_designer", "assign_assistant"}
    # running it again finds nothing left to move
    assert c["id"] not in await upgrade_v1_cases(api.client, api.pool, projection_writer(api.settings),
                                                 task_queue=api.settings.task_queue)
