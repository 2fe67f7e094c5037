"""The one place that wires everything together: pool, providers, activities, workflows, worker."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from config import Settings, get_settings

if TYPE_CHECKING:
    from activities.providers import SmsProvider, StaffNotifier

log = logging.getLogger("intake.worker")


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    task_queue: str | None = None,
    sms_provider: SmsProvider | None = None,
    staff_notifier: StaffNotifier | None = None,
) -> Worker:
    """A worker with IntakeWorkflow and every activity, bound to their dependencies.

    Messages are no longer activities: the outbox dispatcher (activities.outbox.build_dispatcher)
    delivers them; `sms_provider` / `staff_notifier` are kept for it until the worker is rewired.
    """
    from activities.allocation import AllocationActivities
    from activities.projection import ProjectionActivities
    from workflows.intake import IntakeWorkflow

    projection = ProjectionActivities(pool)
    allocation = AllocationActivities(pool)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[IntakeWorkflow],
        activities=[
            projection.sync_projection,
            allocation.suggest_designers,
            allocation.suggest_assistants,
            allocation.record_assignment,
        ],
    )


async def run_worker(
    settings: Settings, *, stop: asyncio.Event | None = None, client: Client | None = None
) -> None:
    """Run the intake worker until `stop` is set (or forever); `client` reuses a connected one."""
    from activities.db import create_pool
    from devstack import connect_temporal

    if not settings.database_url:
        # Only `intake dev` / `intake worker` resolve the embedded dev database; a deployed worker
        # must never quietly start a throwaway PostgreSQL of its own.
        raise RuntimeError("INTAKE_DATABASE_URL is not set")
    client = client or await connect_temporal(settings)
    pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        worker = build_worker(client, pool, settings)
        log.info("worker started on task queue %s", worker.task_queue)
        async with worker:
            await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        await pool.close()


def main() -> None:
    """Console entry: run the worker with settings from the environment."""
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
