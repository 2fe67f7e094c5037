"""The one place that wires everything together: pool, providers, activities, workflows, worker.

A worker process runs these side by side:
* the Temporal worker (IntakeWorkflow and its activities: writing changes or finding them written,
  suggesting designers);
* the outbox dispatcher, which delivers decided messages (SMS, staff notices) on its own, so a
  provider that is down or hangs never holds up a case;
* the reconciler, which repairs at start and then periodically what a crash left between
  PostgreSQL and Temporal;
* the morning summary's loop (INTAKE_MORNING_SUMMARY), which writes each working day's summary to the
  outbox once, for the dispatcher to deliver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from config import Settings, get_settings

if TYPE_CHECKING:
    from activities.providers import SmsProvider, StaffNotifier
    from background.dispatcher import OutboxDispatcher
    from background.morning import MorningSummaryScheduler
    from background.reconciler import Reconciler

log = logging.getLogger("intake.worker")


def build_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    task_queue: str | None = None,
) -> Worker:
    """A Temporal worker with IntakeWorkflow and its activities, bound to their dependencies."""
    from workflows.intake import IntakeWorkflow

    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[IntakeWorkflow],
        activities=worker_activities(pool, settings),
        max_cached_workflows=settings.worker_cached_workflows,
        workflow_runner=workflow_runner(),
    )


def workflow_runner() -> SandboxedWorkflowRunner:
    """Temporal's sandbox, with the workflow's own package passed through like domain/ already is.

    The sandbox re-imported workflows/intake.py from source for every case it started or took back
    into its cache (compiling the file, re-running its decorators): a third of the worker's CPU per
    new case on the 2-core VM (py-spy; docs/benchmarks.md, "Figures, 2026-12-03 (06:50–08:10 UTC)").
    The module holds no state of its own (constants, the class). A passed-through module keeps the real `datetime`, `time`
    and `random` (tried: `datetime.now()` in one runs, where the full sandbox stops the workflow), so the
    check moves out of the worker: workflows/ and domain/ import no clock, randomness, environment or
    network module and call no `.now()` but `workflow.now()` (tests/test_architecture.py); the workflow
    tests' worker (tests/workflows/fakes.py) keeps the full sandbox, and every recorded path replays
    under both (tests/workflows/test_replay.py).
    """
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("workflows"))


def worker_activities(pool: asyncpg.Pool, settings: Settings) -> list[Callable[..., Any]]:
    """The workflow's activities, bound to the pool: writing changes (or finding them written), suggesting
    designers."""
    from activities.allocation import AllocationActivities
    from activities.projection import ProjectionActivities
    from store.writes import projection_writer

    projection = ProjectionActivities(pool, projection_writer(settings))
    allocation = AllocationActivities(pool)
    return [projection.apply_change, projection.projection_written, allocation.suggest_designers]


def build_dispatcher(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    sms_provider: SmsProvider | None = None,
    staff_notifier: StaffNotifier | None = None,
) -> OutboxDispatcher:
    """The outbox dispatcher for this configuration (providers from settings unless given)."""
    from background import dispatcher

    return dispatcher.build_dispatcher(pool, settings, sms_provider=sms_provider, staff_notifier=staff_notifier)


def build_reconciler(client: Client, pool: asyncpg.Pool, settings: Settings, *, task_queue: str | None = None) -> Reconciler:
    """The reconciler for this configuration."""
    from background.reconciler import Reconciler
    from store.writes import projection_writer

    return Reconciler(
        pool,
        client,
        projection_writer(settings),
        task_queue=task_queue or settings.task_queue,
        settle=timedelta(seconds=settings.reconcile_settle_seconds),
        interval=timedelta(seconds=settings.reconcile_interval_seconds),
        page_size=settings.reconcile_page_size,
    )


def build_morning_scheduler(pool: asyncpg.Pool, settings: Settings) -> MorningSummaryScheduler:
    """The morning summary's loop (INTAKE_MORNING_SUMMARY); the policy file while no version is saved."""
    from background.morning import build_morning_scheduler as build
    from connections import load_policy

    return build(pool, settings, policy=load_policy(settings))


async def run_worker(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    client: Client | None = None,
    task_queue: str | None = None,
    sms_provider: SmsProvider | None = None,
    staff_notifier: StaffNotifier | None = None,
) -> None:
    """Run worker, dispatcher and reconciler until `stop` is set (or forever)."""
    from connections import connect_temporal
    from store.db import create_pool

    if not settings.database_url:
        # Only `intake dev` / `intake worker` resolve the embedded dev database; a deployed worker
        # must never quietly start a throwaway PostgreSQL of its own.
        raise RuntimeError("INTAKE_DATABASE_URL is not set")
    client = client or await connect_temporal(settings, worker_metrics=True)
    if settings.payload_keys is not None:
        # Never start a worker that could not replay an open case: every key its history needs is here.
        from background.keyring import require_payload_keys
        from codec import encrypting_key_id, parse_keys

        keys = parse_keys(settings.payload_keys.get_secret_value())
        await require_payload_keys(client, [k for k, _ in keys])
        active = encrypting_key_id(keys, settings.payload_encrypt_key_id)
        log.info("payload keys: %s encrypts; %s decrypt only", active,
                 ", ".join(k for k, _ in keys if k != active) or "no other key")
    pool = await create_pool(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    stop = stop or asyncio.Event()
    try:
        worker = build_worker(client, pool, settings, task_queue=task_queue)
        dispatcher = build_dispatcher(pool, settings, sms_provider=sms_provider, staff_notifier=staff_notifier)
        reconciler = build_reconciler(client, pool, settings, task_queue=task_queue)
        morning = build_morning_scheduler(pool, settings) if settings.morning_summary else None
        log.info("worker started on task queue %s", worker.task_queue)
        async with worker:
            loops: list[Coroutine[Any, Any, None]] = [dispatcher.run(stop), reconciler.run(stop),
                                                      run_pruner(pool, settings, stop)]
            if morning is not None:
                loops.append(morning.run(stop))
            await asyncio.gather(*loops, stop.wait())
    finally:
        await pool.close()


async def run_pruner(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Delete what is kept too long (phone reads, Idempotency-Keys) now and then every interval; never
    crashes the worker."""
    from store.retention import prune

    while not stop.is_set():
        try:
            removed = await prune(pool, phone_reads_days=settings.phone_reads_retention_days,
                                  idempotency_days=settings.idempotency_retention_days)
            if any(removed.values()):
                log.info("pruned %s", removed)
        except Exception as exc:  # noqa: BLE001 - the database may be down; try again next time
            log.warning("pruning failed: %r", exc)
        try:
            await asyncio.wait_for(stop.wait(), settings.prune_interval_seconds)
        except TimeoutError:
            pass


def main() -> None:
    """Console entry: run the worker with settings from the environment."""
    from observability import configure_logging

    settings = get_settings()
    configure_logging(logging.INFO, fmt=settings.log_format)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()
