"""Sending the morning summary (晨报, SPEC §15): a loop in the worker process, beside the outbox dispatcher.

Every `interval` it asks the company's policy (the newest saved version, else the policy file) whether a
summary is due now (domain/morning.py: a working day, between its first opening and its last close) and,
when it is, hands the day to store/morning.py, which sends it once per day whatever the number of
workers and restarts. So the summary goes out within `interval` of the opening, or as soon as a worker is
back the same working day; never on a day off, and a day missed entirely is not sent on a later day.
The notices themselves are delivered by the outbox dispatcher through the configured staff channel.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime

import asyncpg

from config import Settings
from domain import morning
from domain.phone import mask_phones_in
from domain.policy import Policy
from store import morning as summaries
from store.outbox import OutboxWriter, build_writer

log = logging.getLogger(__name__)

# The longest pause of the loop after database errors.
MAX_ERROR_PAUSE = 300.0


class MorningSummaryScheduler:
    """Sends each working day's morning summary once, at the start of the company's working hours."""

    def __init__(self, pool: asyncpg.Pool, writer: OutboxWriter, *, policy: Policy, interval: float = 60.0) -> None:
        if interval <= 0:
            raise ValueError("interval > 0 is required")
        self._pool = pool
        self._writer = writer
        self._fallback = policy  # the policy file's, while no version is saved in the database
        self._interval = interval

    async def run_once(self, now: datetime | None = None) -> date | None:
        """Send the summaries due at `now` (default: the present) unless sent already: the chain's and, in a
        chain of several branches, each branch's by its own calendar; the day of the first sent, or None."""
        now = now or datetime.now(UTC)
        sent: date | None = None
        for scope in await summaries.scopes(self._pool):
            policy = await summaries.policy_in_force(self._pool, self._fallback, scope.branch_id)
            day = morning.due_day(policy.calendar, now)
            if day is None:
                continue
            window = morning.window(policy.calendar, day)
            which = f" ({scope.code})" if scope.code else ""
            if not await summaries.send_once(self._pool, window=window, policy=policy, now=now, writer=self._writer,
                                             scope=scope):
                log.debug("morning summary of %s%s: sent already", day.isoformat(), which)
                continue
            log.info("morning summary of %s%s written to the outbox", day.isoformat(), which)
            sent = sent or day
        return sent

    async def run(self, stop: asyncio.Event) -> None:
        """Look every interval until `stop` is set; database trouble is logged and retried, never raised."""
        errors = 0
        while not stop.is_set():
            pause = self._interval
            try:
                await self.run_once()
                errors = 0
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again later
                errors += 1
                pause = min(self._interval * 2 ** min(errors - 1, 10), max(MAX_ERROR_PAUSE, self._interval))
                log.warning("morning summary: %s; trying again in %.0f s",
                            mask_phones_in(f"{type(exc).__name__}: {exc}")[:300], pause)
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except TimeoutError:
                pass


def build_morning_scheduler(pool: asyncpg.Pool, settings: Settings, *, policy: Policy) -> MorningSummaryScheduler:
    """The scheduler for this deployment: the outbox writer of the settings, their interval."""
    return MorningSummaryScheduler(pool, build_writer(settings), policy=policy,
                                   interval=settings.morning_summary_interval_seconds)
