"""The one place that wires everything together: pool, providers, activities, workflows, worker."""

from __future__ import annotations

import asyncio
import logging

from config import Settings, get_settings

log = logging.getLogger("intake.worker")


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the intake worker until `stop` is set (or forever). PLACEHOLDER: being built."""
    log.info("worker placeholder started on task queue %s", settings.task_queue)
    await (stop.wait() if stop else asyncio.Event().wait())


def main() -> None:
    """Console entry: run the worker with settings from the environment."""
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run_worker(get_settings()))


if __name__ == "__main__":
    main()
