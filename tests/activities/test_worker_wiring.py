"""The activities register on a real worker and are callable by name with the pydantic data converter.

(Messages are not activities any more: the outbox dispatcher delivers them, see test_messaging.py.)
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.allocation import AllocationActivities
from activities.projection import ProjectionActivities
from domain.enums import Level, Role, Scenario
from domain.models import SuggestDesigners, Suggestion
from tests.activities.conftest import MakeCase, MakeStaff

_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn(sandboxed=False)
class WiringWorkflow:
    """Calls the activities by their names, as the intake workflow does."""

    @workflow.run
    async def run(self, args: list[int]) -> list[str]:
        case_id, designer_id = args
        # The workflow may pass the plain SuggestDesigners: the activity's extended input accepts it.
        suggestions = await workflow.execute_activity(
            "suggest_designers",
            SuggestDesigners(case_id=case_id, scenario=Scenario.remote, required_level=Level.junior),
            result_type=list[Suggestion],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        return [str(any(s.staff.id == designer_id for s in suggestions))]


async def test_activities_run_on_a_real_worker(
    client: Client, task_queue: str, pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    case_id = await make_case()
    allocation = AllocationActivities(pool)
    projection = ProjectionActivities(pool)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[WiringWorkflow],
        activities=[
            allocation.suggest_designers,
            allocation.suggest_assistants,
            allocation.record_assignment,
            projection.sync_projection,
        ],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await client.execute_workflow(
            WiringWorkflow.run,
            [case_id, designer.id],
            id=f"wiring-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert result == ["True"]
