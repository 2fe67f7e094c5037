"""The activities register on a real worker and are callable by name with the pydantic data converter."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.allocation import AllocationActivities
from activities.messaging import MessagingActivities, OutboxRecord
from activities.projection import ProjectionActivities
from activities.providers import LogNotifier, OutboxOnlyProvider
from domain.enums import Level, Role, Scenario
from domain.models import NotifyStaff, SendSms, SuggestDesigners, Suggestion
from domain.templates import Company
from tests.activities.conftest import MakeCase, MakeStaff

_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn(sandboxed=False)
class WiringWorkflow:
    """Calls the activities by their names, as the intake workflow does."""

    @workflow.run
    async def run(self, args: list[int]) -> list[str]:
        case_id, designer_id, assistant_id = args
        sms = await workflow.execute_activity(
            "send_sms",
            SendSms(
                case_id=case_id,
                purpose="T1",
                template="T1",
                designer_id=designer_id,
                assistant_id=assistant_id,
            ),
            result_type=OutboxRecord,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        notice = await workflow.execute_activity(
            "notify_staff",
            NotifyStaff(case_id=case_id, purpose="remind", recipient_id=designer_id, text="提醒"),
            result_type=OutboxRecord,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        # The workflow may pass the plain SuggestDesigners: the activity's extended input accepts it.
        suggestions = await workflow.execute_activity(
            "suggest_designers",
            SuggestDesigners(case_id=case_id, scenario=Scenario.remote, required_level=Level.junior),
            result_type=list[Suggestion],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        return [sms.status, notice.status, str(any(s.staff.id == designer_id for s in suggestions))]


async def test_activities_run_on_a_real_worker(
    client: Client, task_queue: str, pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    assistant = await make_staff("李娜", Role.assistant)
    case_id = await make_case()
    messaging = MessagingActivities(pool, OutboxOnlyProvider(), LogNotifier(), Company())
    allocation = AllocationActivities(pool)
    projection = ProjectionActivities(pool)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[WiringWorkflow],
        activities=[
            messaging.send_sms,
            messaging.notify_staff,
            allocation.suggest_designers,
            allocation.suggest_assistants,
            allocation.record_assignment,
            projection.sync_projection,
        ],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await client.execute_workflow(
            WiringWorkflow.run,
            [case_id, designer.id, assistant.id],
            id=f"wiring-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert result == ["sent", "sent", "True"]
