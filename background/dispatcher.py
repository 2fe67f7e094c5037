"""Delivering the outbox (SPEC §6, §10): the dispatcher that hands due rows to their providers.

It runs in the worker process, beside (not inside) the Temporal worker. How a row walks
``pending → sending → sent`` and why a message is never sent twice is explained in store/outbox.py,
which writes the rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from activities.providers import (
    Delivered,
    OutgoingNotice,
    OutgoingSms,
    ProviderError,
    SmsProvider,
    StaffNotifier,
    build_sms_provider,
    build_staff_notifier,
)
from config import Settings
from store.outbox import _RETURNING, DB_TIMEOUT, OutboxStatus, masked, outbox_key

log = logging.getLogger(__name__)

# A claim keeps a row from other dispatchers for attempt_timeout plus this: time to record the outcome
# (the default of the dispatcher's `lease_margin`).
LEASE_MARGIN = timedelta(seconds=5)
# A staff notice's recipient's WeCom member id as the staff table has it at the attempt (set after the
# notice was decided counts), beside the row's own columns.
# And the WeCom department a notice falls back to: the case's branch's, else (a notice of no case) the
# recipient's home branch's.
_WECOM_USERID = (
    "(SELECT s.wecom_userid FROM staff s WHERE s.id = o.recipient_id) AS wecom_userid,"
    " COALESCE((SELECT b.wecom_department_id FROM cases c JOIN branches b ON b.id = c.branch_id"
    " WHERE c.id = o.case_id), (SELECT b.wecom_department_id FROM staff s JOIN branches b ON b.id = s.branch_id"
    " WHERE s.id = o.recipient_id)) AS wecom_department_id"
)
# The longest pause of the loop after database errors (the default of `max_error_pause`).
MAX_ERROR_PAUSE = 30.0

# --- delivering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Channel:
    """One outbox channel (`sms` or `staff`) as the dispatcher drives it."""

    name: str  # the provider's name, as the `provider` column records it
    confirmable: bool
    send: Callable[[asyncpg.Record], Awaitable[str | Delivered]]
    find: Callable[[asyncpg.Record], Awaitable[str | None]]
    rejected_code: str


def _variables(row: asyncpg.Record) -> dict[str, Any]:
    value = row["variables"]
    if isinstance(value, str):  # a pool without the jsonb codec of store.db
        value = json.loads(value)
    return dict(value or {})


class OutboxDispatcher:
    """Delivers due outbox rows to their providers, concurrently and independently of any workflow."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sms_provider: SmsProvider,
        staff_notifier: StaffNotifier,
        *,
        confirm_after: timedelta,
        poll_interval: float = 0.5,
        concurrency: int = 16,
        attempt_timeout: float = 15.0,
        backoff_initial: timedelta = timedelta(seconds=1),
        backoff_max: timedelta = timedelta(minutes=5),
        provider_tz: str = "Asia/Shanghai",
        lease_margin: timedelta = LEASE_MARGIN,
        max_error_pause: float = MAX_ERROR_PAUSE,
    ) -> None:
        if concurrency < 1 or attempt_timeout <= 0 or poll_interval <= 0:
            raise ValueError("concurrency >= 1, attempt_timeout > 0 and poll_interval > 0 are required")
        self._pool = pool
        self._confirm_after = confirm_after
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._attempt_timeout = attempt_timeout
        self._lease = timedelta(seconds=attempt_timeout) + lease_margin
        self._max_error_pause = max_error_pause
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._provider_tz = ZoneInfo(provider_tz)  # the provider's calendar day (Aliyun: Beijing time)
        self._channels = {
            "sms": _Channel(
                name=sms_provider.name,
                confirmable=sms_provider.confirmable,
                send=lambda r: sms_provider.send(self._sms_of(r)),
                find=lambda r: sms_provider.find_sent(self._sms_of(r)),
                rejected_code="sms_rejected",
            ),
            "staff": _Channel(
                name=staff_notifier.name,
                confirmable=staff_notifier.confirmable,
                send=lambda r: staff_notifier.notify(self._notice_of(r)),
                find=lambda r: staff_notifier.find_sent(self._notice_of(r)),
                rejected_code="notify_rejected",
            ),
        }

    # --- the loop --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver due rows until `stop` is set; database trouble is logged and retried, never raised."""
        slots: dict[str, set[asyncio.Task[None]]] = {channel: set() for channel in self._channels}
        stopping = asyncio.ensure_future(stop.wait())
        errors = 0
        try:
            while not stop.is_set():
                free = self._free(slots)
                if any(free.values()):
                    try:
                        claimed = self._start(await self._claim(free), slots)
                    except Exception as exc:
                        errors += 1
                        pause = min(max(self._poll_interval, 1.0) * 2 ** min(errors - 1, 10), self._max_error_pause)
                        log.warning(
                            "outbox dispatcher: cannot claim rows (%s); trying again in %.1f s",
                            masked(f"{type(exc).__name__}: {exc}"),
                            pause,
                        )
                        await asyncio.wait({stopping}, timeout=pause)
                        continue
                    errors = 0
                    if any(claimed[c] and claimed[c] == free[c] for c in free):
                        continue  # a channel took all it could: more may be due, claim again at once
                # The next poll, the stop, or a free slot on a channel that has none.
                full = [t for c, tasks in slots.items() if len(tasks) >= self._concurrency for t in tasks]
                await asyncio.wait(
                    {stopping, *full}, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            stopping.cancel()
            await self._drain(slots)

    async def run_once(self) -> int:
        """Claim every row due now, deliver them concurrently and wait for them; returns how many."""
        slots: dict[str, set[asyncio.Task[None]]] = {channel: set() for channel in self._channels}
        handled = 0
        exhausted: set[str] = set()  # channels that had room and found nothing more due
        try:
            while True:
                free = {c: 0 if c in exhausted else n for c, n in self._free(slots).items()}
                claimed = self._start(await self._claim(free), slots) if any(free.values()) else dict.fromkeys(free, 0)
                handled += sum(claimed.values())
                exhausted |= {c for c in free if free[c] and claimed[c] < free[c]}
                busy = [t for c, tasks in slots.items() if c not in exhausted for t in tasks]
                if len(exhausted) == len(slots):
                    break
                if busy:  # a channel took all it could: claim again once one of its slots is free
                    await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
            running = [t for tasks in slots.values() for t in tasks]
            if running:
                await asyncio.wait(running)
        finally:
            await self._drain(slots)
        return handled

    def _free(self, slots: dict[str, set[asyncio.Task[None]]]) -> dict[str, int]:
        # Slots per channel: a channel whose provider hangs cannot hold up the other channel's messages.
        return {channel: max(self._concurrency - len(tasks), 0) for channel, tasks in slots.items()}

    def _start(self, rows: list[asyncpg.Record], slots: dict[str, set[asyncio.Task[None]]]) -> dict[str, int]:
        started = dict.fromkeys(slots, 0)
        for row in rows:
            tasks = slots[row["channel"]]
            task = asyncio.create_task(self._handle(row), name=f"outbox-{row['id']}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            started[row["channel"]] += 1
        return started

    async def _drain(self, slots: dict[str, set[asyncio.Task[None]]]) -> None:
        """Let running deliveries finish (each is bounded by attempt_timeout), then cancel what is left."""
        running = {t for tasks in slots.values() for t in tasks}
        if not running:
            return
        _done, pending = await asyncio.wait(running, timeout=self._lease.total_seconds())
        for task in pending:
            task.cancel()  # the row stays `sending` and is checked with the provider before any resend
        if pending:
            await asyncio.wait(pending)

    async def _handle(self, row: asyncpg.Record) -> None:
        """Deliver one claimed row; nothing escapes but cancellation."""
        try:
            if row["claimed_from"] == "sending":
                await self._check(row)
            else:
                await self._send(row)
        except Exception:
            # Most likely the database while recording the outcome: the row keeps its claim until
            # the lease ends, then it is checked with the provider like any interrupted attempt.
            log.exception(
                "outbox %s (case %s, %s): delivery interrupted", row["id"], row["case_id"], row["purpose"]
            )

    # --- claims ------------------------------------------------------------------------------------

    async def _claim(self, limits: dict[str, int]) -> list[asyncpg.Record]:
        """Claim due rows (pending, or sending and left alone long enough), up to a limit per channel.

        Only rows recorded for this dispatcher's providers: a message is delivered (and later asked
        about) by the provider it was recorded for, never silently by another configuration's.
        """
        # SKIP LOCKED: two dispatchers never wait for, nor both take, the same row; and the new
        # next_attempt_at (the lease) keeps the row from being handed out again while it is worked on.
        due = (
            " SELECT id, status FROM outbox"
            " WHERE channel = '{channel}' AND provider = ${provider} AND status IN ('pending', 'sending')"
            " AND next_attempt_at <= now() AND (status = 'pending' OR sending_at < now() - $1::interval)"
            # A case still `starting` may yet be undone (its workflow never started): hold its messages.
            " AND NOT EXISTS (SELECT 1 FROM cases c WHERE c.id = outbox.case_id AND c.status = 'starting')"
            " ORDER BY next_attempt_at, id LIMIT ${limit} FOR UPDATE OF outbox SKIP LOCKED"
        )
        return await self._fetch(
            f"WITH due_sms AS ({due.format(channel='sms', provider=5, limit=2)}),"
            f" due_staff AS ({due.format(channel='staff', provider=6, limit=3)}),"
            " due AS (SELECT * FROM due_sms UNION ALL SELECT * FROM due_staff)"
            " UPDATE outbox AS o SET status = 'sending',"
            # a pending row starts an attempt now; a sending row keeps the attempt it is checked for
            " sending_at = CASE WHEN due.status = 'pending' THEN now() ELSE o.sending_at END,"
            " attempts = o.attempts + CASE WHEN due.status = 'pending' THEN 1 ELSE 0 END,"
            " next_attempt_at = now() + $4::interval"
            f" FROM due WHERE o.id = due.id RETURNING {_RETURNING}, {_WECOM_USERID}, due.status AS claimed_from",
            self._confirm_after,
            limits.get("sms", 0),
            limits.get("staff", 0),
            self._lease,
            self._channels["sms"].name,
            self._channels["staff"].name,
        )

    # --- one row -----------------------------------------------------------------------------------

    async def _check(self, row: asyncpg.Record) -> None:
        """A `sending` row left alone long enough: ask the provider, then mark it sent or send it again."""
        channel = self._channels[row["channel"]]
        row_id, started = row["id"], row["sending_at"]
        if not channel.confirmable:
            error = "发送结果未知（发送途中中断），为免重复不再补发"
            await self._execute(
                "UPDATE outbox SET status = 'failed', error_code = 'outcome_unknown', last_error = $3"
                " WHERE id = $1 AND status = 'sending' AND sending_at = $2",
                row_id,
                started,
                error,
            )
            log.warning("outbox %s (case %s, %s): outcome unknown, not sent again",
                        row_id, row["case_id"], row["purpose"])
            return
        try:
            async with asyncio.timeout(self._attempt_timeout):
                found = await channel.find(row)
        except Exception as exc:
            # Not knowing is never "not sent": the row stays `sending` and is asked again later.
            await self._retry_later(row, "sending", f"无法确认上次发送结果: {self._describe(exc)}")
            return
        if found is not None:
            log.info("outbox %s: found earlier delivery %s, not sending again", row_id, found)
            await self._mark_sent(row_id, found)
            return
        again = await self._fetchrow(
            "UPDATE outbox AS o SET sending_at = now(), attempts = o.attempts + 1, next_attempt_at = now() + $3::interval"
            f" WHERE o.id = $1 AND o.status = 'sending' AND o.sending_at = $2 RETURNING {_RETURNING}, {_WECOM_USERID}",
            row_id,
            started,
            self._lease,
        )
        if again is None:
            return  # another dispatcher decided about this attempt meanwhile
        await self._send(again)

    async def _send(self, row: asyncpg.Record) -> None:
        """Hand a claimed row to its provider once and record the outcome."""
        channel = self._channels[row["channel"]]
        try:
            async with asyncio.timeout(self._attempt_timeout):
                outcome = await channel.send(row)
        except ProviderError as exc:
            if not exc.retryable:
                error = masked(str(exc))
                await self._execute(
                    "UPDATE outbox SET status = 'failed', error_code = $3, last_error = $4"
                    " WHERE id = $1 AND status = 'sending' AND sending_at = $2",
                    row["id"],
                    row["sending_at"],
                    exc.outbox_code or channel.rejected_code,
                    error,
                )
                log.warning("outbox %s (case %s, %s): refused for good (%s)",
                            row["id"], row["case_id"], row["purpose"], exc.code)
                return
            # Definitely not accepted (throttled, never connected): pending. Possibly accepted: sending.
            await self._retry_later(row, "sending" if exc.ambiguous else "pending", str(exc))
            return
        except Exception as exc:
            # A timeout or an unknown failure around the call: the provider may have the message.
            await self._retry_later(row, "sending", self._describe(exc))
            return
        if isinstance(outcome, Delivered):  # delivered another way than asked: the row keeps why
            await self._mark_sent(row["id"], outcome.provider_id, code=outcome.code, note=masked(outcome.note))
        else:
            await self._mark_sent(row["id"], outcome)

    async def _retry_later(self, row: asyncpg.Record, status: OutboxStatus, error: str) -> None:
        error = masked(error)
        when = await self._fetchval(
            "UPDATE outbox SET status = $3, last_error = $4, failures = failures + 1,"
            " next_attempt_at = now() + least($5::interval * power(2, least(failures, 30)), $6::interval)"
            " WHERE id = $1 AND status = 'sending' AND sending_at = $2 RETURNING next_attempt_at",
            row["id"],
            row["sending_at"],
            status,
            error,
            self._backoff_initial,
            self._backoff_max,
        )
        log.warning("outbox %s (case %s, %s): %s; %s, next try at %s", row["id"], row["case_id"],
                    row["purpose"], error, status, when)

    async def _mark_sent(self, row_id: int, provider_id: str, *, code: str | None = None,
                         note: str | None = None) -> None:
        # Unconditional: whatever another dispatcher concluded meanwhile, the provider has the message.
        await self._execute(
            "UPDATE outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = $4,"
            " error_code = $3 WHERE id = $1",
            row_id,
            provider_id,
            code,
            note,
        )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError):
            return f"{self._attempt_timeout:g} 秒内没有回应（结果未知，先查询再补发）"
        if isinstance(exc, ProviderError):
            return str(exc)
        return f"{type(exc).__name__}: {exc}"

    # --- messages as the providers see them --------------------------------------------------------

    def _day_of(self, row: asyncpg.Record) -> date:
        """The provider's local day of the attempt: the day to look the message up by."""
        at: datetime = row["sending_at"] or datetime.now(UTC)
        return at.astimezone(self._provider_tz).date()

    def _sms_of(self, row: asyncpg.Record) -> OutgoingSms:
        return OutgoingSms(
            key=outbox_key(row["case_id"], row["purpose"]),
            phone=row["recipient"],
            template=row["template"],
            variables={k: str(v) for k, v in _variables(row).items()},
            text=row["text"],
            sent_on=self._day_of(row),
            sign=row["sms_sign"],
            template_code=row["sms_template_code"],
        )

    def _notice_of(self, row: asyncpg.Record) -> OutgoingNotice:
        variables = _variables(row)
        return OutgoingNotice(
            key=outbox_key(row["case_id"], row["purpose"], row["recipient_id"]),
            recipient_name=str(variables.get("name", "")),
            phone=row["recipient"],
            role=str(variables.get("role", "")),
            text=row["text"],
            sent_on=self._day_of(row),
            case_id=row["case_id"],
            recipient_id=row["recipient_id"],
            wecom_userid=row.get("wecom_userid"),
            wecom_department_id=row.get("wecom_department_id"),
        )

    # --- database, bounded ---------------------------------------------------------------------------

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._pool.acquire(timeout=DB_TIMEOUT) as conn:
            return list(await conn.fetch(sql, *args, timeout=DB_TIMEOUT))

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self._pool.acquire(timeout=DB_TIMEOUT) as conn:
            return await conn.fetchrow(sql, *args, timeout=DB_TIMEOUT)

    async def _fetchval(self, sql: str, *args: Any) -> Any:
        async with self._pool.acquire(timeout=DB_TIMEOUT) as conn:
            return await conn.fetchval(sql, *args, timeout=DB_TIMEOUT)

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire(timeout=DB_TIMEOUT) as conn:
            await conn.execute(sql, *args, timeout=DB_TIMEOUT)


def build_dispatcher(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    sms_provider: SmsProvider | None = None,
    staff_notifier: StaffNotifier | None = None,
) -> OutboxDispatcher:
    """The dispatcher for this deployment: providers and timings from the settings."""
    return OutboxDispatcher(
        pool,
        sms_provider if sms_provider is not None else build_sms_provider(settings),
        staff_notifier if staff_notifier is not None else build_staff_notifier(settings),
        confirm_after=timedelta(seconds=settings.outbox_confirm_after_seconds),
        poll_interval=settings.outbox_poll_interval_seconds,
        concurrency=settings.outbox_concurrency,
        attempt_timeout=settings.outbox_attempt_timeout_seconds,
        backoff_initial=timedelta(seconds=settings.outbox_backoff_initial_seconds),
        backoff_max=timedelta(seconds=settings.outbox_backoff_max_seconds),
        lease_margin=timedelta(seconds=settings.outbox_lease_margin_seconds),
        max_error_pause=settings.outbox_max_error_pause_seconds,
    )
