"""The worker's activities register on a real worker and are callable by name with the pydantic converter.

(Messages are not activities: the outbox dispatcher delivers them, see test_messaging.py.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from config import Settings
from domain import engine
from domain.enums import Level, Role, Scenario, Source
from domain.models import CaseChange, IntakeInput, SuggestDesigners, Suggestion
from domain.policy import fast_policy
from tests.activities.conftest import MakeCase, MakeStaff
from worker import build_worker, worker_activities

_TIMEOUT = timedelta(seconds=10)
_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn(sandboxed=False)
class WiringWorkflow:
    """Calls the worker's activities by their names."""

    @workflow.run
    async def run(self, args: tuple[int, int, CaseChange]) -> list[str]:
        case_id, designer_id, change = args
        suggestions = await workflow.execute_activity(
            "suggest_designers",
            SuggestDesigners(case_id=case_id, scenario=Scenario.remote, required_level=Level.junior),
            result_type=list[Suggestion],
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_RETRY,
        )
        await workflow.execute_activity("apply_change", change, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY)
        return [str(any(s.staff.id == designer_id for s in suggestions))]


async def test_activities_run_on_a_real_worker(
    client: Client, task_queue: str, pool: asyncpg.Pool, pg_dsn: str, make_staff: MakeStaff, make_case: MakeCase
) -> None:
    designer = await make_staff("张伟", Role.designer)
    manager = await make_staff("陈经理", Role.manager)
    creator = await make_staff("孙丽", Role.consultant)
    case_id = await make_case()
    opening = engine.start(IntakeInput(
        case_id=case_id, source=Source.marketing, scenario=Scenario.remote, created_at=datetime.now(UTC),
        created_by=creator.ref(), manager=manager.ref(), policy=fast_policy(),
    ))
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[WiringWorkflow],
        activities=worker_activities(pool, Settings(database_url=pg_dsn)),
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result = await client.execute_workflow(
            WiringWorkflow.run,
            (case_id, designer.id, opening.change),
            id=f"wiring-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
    assert result == ["True"]
    # apply_change wrote the opening: the callback is on the manager's list, the notice in the outbox
    steps = await pool.fetch("SELECT step, status, owner_id FROM case_steps WHERE case_id = $1", case_id)
    assert [(r["step"], r["status"], r["owner_id"]) for r in steps] == [("callback", "open", manager.id)]
    purposes = await pool.fetch("SELECT purpose FROM outbox WHERE case_id = $1", case_id)
    assert [r["purpose"] for r in purposes] == ["open:callback#1"]


async def test_the_worker_keeps_as_many_cases_in_memory_as_configured(
    client: Client, task_queue: str, pool: asyncpg.Pool
) -> None:
    """INTAKE_WORKER_CACHED_WORKFLOWS sizes the worker's workflow cache (a case outside it replays its history)."""
    default = build_worker(client, pool, Settings(), task_queue=f"{task_queue}-default")
    assert default.config()["max_cached_workflows"] == 1000
    sized = build_worker(client, pool, Settings(worker_cached_workflows=12_000), task_queue=f"{task_queue}-sized")
    assert sized.config()["max_cached_workflows"] == 12_000
