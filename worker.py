"""The one place that wires everything together: pool, providers, activities, workflows, worker."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
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
    """A worker with IntakeWorkflow and every activity, bound to their dependencies."""
    from activities.allocation import AllocationActivities
    from activities.messaging import MessagingActivities
    from activities.projection import ProjectionActivities
    from activities.providers import build_sms_provider, build_staff_notifier
    from domain.templates import Company
    from workflows.intake import IntakeWorkflow

    messaging = MessagingActivities(
        pool,
        sms_provider if sms_provider is not None else build_sms_provider(settings),
        staff_notifier if staff_notifier is not None else build_staff_notifier(settings),
        Company(name=settings.company_name, short_name=settings.company_short_name),
        confirm_after=timedelta(seconds=settings.outbox_confirm_after_seconds),
    )
    projection = ProjectionActivities(pool)
    allocation = AllocationActivities(pool)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[IntakeWorkflow],
        activities=[
            projection.sync_projection,
            messaging.send_sms,
            messaging.notify_staff,
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
    from connections import connect_temporal

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
