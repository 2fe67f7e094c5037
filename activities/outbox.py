"""The outbox (SPEC §6, §10): messages are decided with the case and delivered apart from it.

Writing. The workflow decides messages (:class:`~domain.models.SendSms` to the client,
:class:`~domain.models.NotifyStaff` to staff); whoever commits the case's projection calls
:meth:`OutboxWriter.enqueue` on the same connection, in the same transaction. The writer renders each
message (client name, gender and phone from ``cases``, staff names from ``staff``, texts from
:mod:`domain.templates`) and inserts one row per (case, purpose). It never raises for a business
problem: a message that cannot be rendered or has nobody to go to is recorded as ``failed`` with a
stable ``error_code`` (``sms_invalid``, ``no_recipient``), so the case's transaction still commits and
the case shows why the message did not go out.

Delivering. :class:`OutboxDispatcher` runs in the worker process, beside (not inside) the Temporal
worker, and hands due rows to the providers. It takes only rows recorded for its own providers (the
``provider`` column): a message is sent, and later asked about, by the provider it was recorded for.
A row's status walks ``pending → sending → sent`` (or ``failed`` when the message is refused for good).

Exactly once, step by step:

1. A row is inserted with ``ON CONFLICT (case_id, purpose) DO NOTHING``: the same purpose decided
   again (a retried transaction, a replayed decision) finds the row that is already there, and the
   text the client gets is the one recorded first.
2. A dispatcher claims due rows in one statement (``FOR UPDATE SKIP LOCKED``): ``pending → sending``
   with ``sending_at = now()`` and ``attempts + 1``, COMMITTED before the provider is called. This is
   the crux: if the process dies at any moment after it - before the request left, while it was in
   flight, or after the provider accepted it but before step 4 - the row stays ``sending`` and nobody
   sends it blindly again. No connection or transaction is held across the provider call. The claim
   also moves ``next_attempt_at`` past the attempt (``attempt_timeout`` + a margin): no other
   dispatcher looks at the row while this one may still be talking to the provider.
3. A ``sending`` row is left alone for ``confirm_after`` (a provider needs a moment before a message
   can be looked up) and until its ``next_attempt_at``. Then a dispatcher claims it for a check and
   asks the provider (``find_sent``, by the outbox key it was given, on the day of ``sending_at``):
   found → ``sent``; not found → the row is claimed again (conditional on the same ``sending_at``, so
   two dispatchers cannot both win) and sent. A channel that cannot be asked (WeCom group robot)
   marks the row ``failed`` with ``outcome_unknown`` instead: never twice, and the case shows the
   notice may not have arrived.
4. The outcome is recorded: ``sent`` with the provider id; a definitive rejection → ``failed`` with
   ``sms_rejected`` / ``notify_rejected`` and never claimed again; a definite "not now" (throttling,
   a refused connection: the request never left) → back to ``pending``; an ambiguous error (timeout,
   connection lost, 5xx, the provider hanging past ``attempt_timeout``: it may have accepted the
   message) → stays ``sending``, so the next try asks first. Both retryable cases set
   ``next_attempt_at = now() + backoff`` and a masked ``last_error``.

Never blocked (SPEC §10): each row is delivered in its own task, each provider call bounded by
``attempt_timeout``; the claim only hands out rows whose ``next_attempt_at`` has come, so a row waiting
for its backoff costs nothing and a hanging provider holds one of ``concurrency`` slots for at most
``attempt_timeout``. The backoff is ``backoff_initial * 2**failures`` capped at ``backoff_max``, where
``failures`` counts the row's failed tries (sends and provider checks alike).

What remains: a provider that takes longer than ``confirm_after`` to make an accepted message
searchable could still lead to a second SMS after a crash or a timeout; ``confirm_after`` (two
minutes by default, INTAKE_OUTBOX_CONFIRM_AFTER_SECONDS) makes that window as wide as the operator
wants.

Logs name rows by id, case id and purpose, never a client's name or phone; stored errors are masked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from activities.providers import (
    OutgoingNotice,
    OutgoingSms,
    ProviderError,
    SmsProvider,
    StaffNotifier,
    build_sms_provider,
    build_staff_notifier,
    mask_phone,
)
from config import Settings
from domain import notices as notice_texts
from domain import templates
from domain.enums import ROLE_LABELS, Gender, Level, MeetingKind, Role
from domain.models import CaseState, NotifyStaff, SendSms
from domain.tracking import local_time

log = logging.getLogger(__name__)

OutboxStatus = Literal["pending", "sending", "sent", "failed"]

# A claim keeps a row from other dispatchers for attempt_timeout plus this: time to record the outcome
# (the default of the dispatcher's `lease_margin`).
LEASE_MARGIN = timedelta(seconds=5)
# One dispatcher statement (or waiting for a pooled connection) longer than this is an error, not a hang.
DB_TIMEOUT = 10.0
# The longest pause of the loop after database errors (the default of `max_error_pause`).
MAX_ERROR_PAUSE = 30.0

_COLUMN_NAMES = (
    "id", "case_id", "purpose", "channel", "recipient_id", "recipient", "template", "text", "variables",
    "provider", "status", "provider_id", "attempts", "failures", "last_error", "error_code", "sending_at",
    "next_attempt_at",
)
_COLUMNS = ", ".join(_COLUMN_NAMES)
_RETURNING = ", ".join(f"o.{c}" for c in _COLUMN_NAMES)


def outbox_key(case_id: int, purpose: str) -> str:
    """The key a provider sees (Aliyun `OutId`): "<case_id>:<purpose>"."""
    return f"{case_id}:{purpose}"


def _masked(text: str) -> str:
    return mask_phone(text)[:1000]


# --- writing ----------------------------------------------------------------------------------


class _Unrenderable(Exception):
    """A message that cannot be rendered: recorded as `failed` with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _NewRow:
    case_id: int
    purpose: str
    channel: Literal["sms", "staff"]
    recipient_id: int | None
    recipient: str
    template: str
    text: str
    variables: dict[str, Any]
    provider: str
    status: OutboxStatus = "pending"
    last_error: str | None = None
    error_code: str | None = None


class OutboxWriter:
    """Renders decided messages and records them in the outbox, inside the caller's transaction.

    Needs no provider object (the API process uses it too): only the provider names the rows record.
    """

    def __init__(self, company: templates.Company, *, sms_provider: str, staff_channel: str) -> None:
        self._company = company
        self._sms_provider = sms_provider
        self._staff_channel = staff_channel

    async def enqueue(
        self,
        conn: asyncpg.Connection,
        *,
        sms: Sequence[SendSms] = (),
        notices: Sequence[NotifyStaff] = (),
    ) -> None:
        """Record messages exactly once per (case, purpose), first rendering wins; never raises for a business problem."""
        if not sms and not notices:
            return
        messages: list[SendSms | NotifyStaff] = [*sms, *notices]
        # Three statements whatever the number of messages: cases, staff (ids and roles), one INSERT.
        # FOR KEY SHARE: the cases cannot vanish before the caller commits, so the INSERT cannot fail
        # on the foreign key and abort the caller's transaction.
        cases = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, client_name, client_gender, client_phone FROM cases"
                " WHERE id = ANY($1::bigint[]) FOR KEY SHARE",
                sorted({m.case_id for m in messages}),
            )
        }
        by_id, by_role = await self._staff(conn, sms, notices)
        names = {i: r["name"] for i, r in by_id.items()}
        details = await self._details(conn, [n for n in notices if n.template == "designer_assigned"])
        rows: list[_NewRow] = []
        seen: set[tuple[int, str]] = set()
        for msg in messages:
            key = (msg.case_id, msg.purpose)
            if key in seen:  # the same purpose twice in one call: the first one wins, as in the table
                continue
            seen.add(key)
            case = cases.get(msg.case_id)
            if case is None:
                # Nothing can be recorded against a case that does not exist (and nobody could read it).
                log.warning("outbox: case %s does not exist; message %s not recorded", msg.case_id, msg.purpose)
                continue
            if isinstance(msg, NotifyStaff) and msg.template and msg.case_id in details:
                msg = msg.model_copy(update={"text": details[msg.case_id]})
            row = (
                self._sms_row(msg, case, names)
                if isinstance(msg, SendSms)
                else self._notice_row(msg, by_id, by_role)
            )
            if row.status == "failed":
                log.warning(
                    "outbox: case %s message %s recorded as failed (%s)", row.case_id, row.purpose, row.error_code
                )
            rows.append(row)
        if rows:
            await self._insert(conn, rows)

    async def _details(self, conn: asyncpg.Connection, notices: Sequence[NotifyStaff]) -> dict[int, str]:
        """将客户的详细情况告诉设计师: the designer's notice, from PostgreSQL (never from the workflow).

        Read in the caller's transaction, after the change's projection and events were written, so the
        agreed times and the callback's notes are those of the same decision.
        """
        case_ids = sorted({n.case_id for n in notices})
        if not case_ids:
            return {}
        rows = await conn.fetch(
            "SELECT c.id, c.client_name, c.client_gender, c.compound, c.area_m2, c.budget, c.state,"
            " c.policy->'calendar'->>'timezone' AS tz,"
            " (SELECT e.data->>'notes' FROM case_events e WHERE e.case_id = c.id AND e.step = 'callback'"
            "  AND e.kind = 'step_done' ORDER BY e.seq DESC LIMIT 1) AS callback_notes"
            " FROM cases c WHERE c.id = ANY($1::bigint[])",
            case_ids,
        )
        out: dict[int, str] = {}
        for r in rows:
            state: CaseState | None = None
            raw = r["state"]
            if raw:
                try:
                    state = CaseState.model_validate(json.loads(raw) if isinstance(raw, str) else raw)
                except ValueError:
                    state = None
            tz = r["tz"] or "Asia/Shanghai"
            if state is not None:
                meeting, measure = state.meeting("meeting"), state.meeting("measure")
            else:
                meeting = measure = None
            out[r["id"]] = notice_texts.designer_details(
                r["id"],
                salutation=templates.salutation(r["client_name"], Gender(r["client_gender"])),
                compound=r["compound"],
                area_m2=float(r["area_m2"]) if r["area_m2"] is not None else None,
                budget=r["budget"],
                meeting_kind=MeetingKind(meeting.kind) if meeting else None,
                meeting_at=local_time(meeting.at, tz) if meeting else None,
                measure_at=local_time(measure.at, tz) if measure else None,
                level=Level(state.designer_level) if state and state.designer_level else None,
                callback_notes=r["callback_notes"],
                car=state.car if state else None,
            )
        return out

    async def _staff(
        self, conn: asyncpg.Connection, sms: Sequence[SendSms], notices: Sequence[NotifyStaff]
    ) -> tuple[dict[int, asyncpg.Record], dict[str, asyncpg.Record]]:
        """Staff by id (names in SMS, notice recipients) and the first active member of each role asked for."""
        ids = {i for m in sms for i in (m.designer_id, m.assistant_id, m.manager_id) if i is not None}
        ids |= {n.recipient_id for n in notices if n.recipient_id is not None}
        roles = {n.recipient_role.value for n in notices if n.recipient_id is None and n.recipient_role is not None}
        if not ids and not roles:
            return {}, {}
        found = await conn.fetch(
            "SELECT id, name, phone, role, NULL::text AS for_role FROM staff WHERE id = ANY($1::bigint[])"
            " UNION ALL"
            " (SELECT DISTINCT ON (role) id, name, phone, role, role AS for_role FROM staff"
            "  WHERE role = ANY($2::text[]) AND status = 'active' ORDER BY role, id)",
            sorted(ids),
            sorted(roles),
        )
        by_id = {r["id"]: r for r in found if r["for_role"] is None}
        by_role = {r["for_role"]: r for r in found if r["for_role"] is not None}
        return by_id, by_role

    def _sms_row(self, req: SendSms, case: asyncpg.Record, names: dict[int, str]) -> _NewRow:
        phone: str = case["client_phone"]
        try:
            template_name, text, variables = self._render_sms(
                req, client_name=case["client_name"], gender=Gender(case["client_gender"]), names=names
            )
        except _Unrenderable as exc:
            return _NewRow(
                case_id=req.case_id,
                purpose=req.purpose,
                channel="sms",
                recipient_id=None,
                recipient=phone,
                template=req.template,
                text="",
                variables={},
                provider=self._sms_provider,
                status="failed",
                last_error=_masked(exc.message),
                error_code=exc.code,
            )
        return _NewRow(
            case_id=req.case_id,
            purpose=req.purpose,
            channel="sms",
            recipient_id=None,
            recipient=phone,
            template=template_name,
            text=text,
            variables=variables,
            provider=self._sms_provider,
        )

    def _render_sms(
        self, req: SendSms, *, client_name: str, gender: Gender, names: dict[int, str]
    ) -> tuple[str, str, dict[str, str]]:
        """(template id, text, variables) of a client SMS (T1..T4); raises _Unrenderable."""

        def name_of(staff_id: int | None, what: str, *, required: bool) -> str | None:
            if staff_id is None:
                if required:
                    raise _Unrenderable("sms_invalid", f"短信 {req.template} 需要{what}")
                return None
            if staff_id not in names:
                raise _Unrenderable("sms_invalid", f"{what} {staff_id} 不存在")
            return names[staff_id]

        def need_at() -> datetime:
            if req.at is None:
                raise _Unrenderable("sms_invalid", f"短信 {req.template} 需要时间")
            return req.at

        designer = name_of(req.designer_id, "设计师", required=True)
        assert designer is not None
        assistant = name_of(req.assistant_id, "助理设计师", required=False) if req.include_assistant else None
        common: dict[str, Any] = {
            "client_name": client_name,
            "gender": gender,
            "company": self._company,
            "designer": designer,
        }
        try:
            if req.template == "T1":
                variables = templates.t1_variables(**common, assistant=assistant)
            elif req.template == "T2":
                variables = templates.t2_variables(
                    **common, assistant=assistant, measure_at=need_at(), tz=req.timezone
                )
            elif req.template == "T3":
                manager = name_of(req.manager_id, "设计部经理", required=True)
                assert manager is not None
                variables = templates.t3_variables(**common, manager=manager, assistant=assistant)
            else:
                if req.meeting_kind is None:
                    raise _Unrenderable("sms_invalid", "短信 T4 需要见面类型")
                if req.meeting_kind == MeetingKind.office_visit and self._company.address:
                    variables = templates.t4_office_variables(**common, at=need_at(), tz=req.timezone)
                else:
                    variables = templates.t4_variables(
                        **common, at=need_at(), kind=req.meeting_kind, tz=req.timezone
                    )
            template_name = templates.template_id(req.template, assistant=assistant)
            if "address" in variables:
                template_name = "T4_OFFICE"
            text = templates.substitute(templates.TEMPLATES[template_name], variables)
        except (KeyError, ValueError) as exc:
            raise _Unrenderable("sms_invalid", f"短信无法生成: {exc}") from exc
        return template_name, text, variables

    def _notice_row(
        self, req: NotifyStaff, by_id: dict[int, asyncpg.Record], by_role: dict[str, asyncpg.Record]
    ) -> _NewRow:
        staff: asyncpg.Record | None
        if req.recipient_id is not None:
            staff = by_id.get(req.recipient_id)
            missing = f"员工 {req.recipient_id} 不存在"
        elif req.recipient_role is not None:
            staff = by_role.get(req.recipient_role.value)
            missing = f"没有在岗的{ROLE_LABELS.get(Role(req.recipient_role), req.recipient_role)}"
        else:
            staff = None
            missing = "通知没有指定接收人或角色"
        if staff is None:
            # Recorded, so the case shows that this notice could not go out and why; never delivered.
            return _NewRow(
                case_id=req.case_id,
                purpose=req.purpose,
                channel="staff",
                recipient_id=None,
                recipient="",
                template="STAFF",
                text=req.text,
                variables={"text": req.text},
                provider=self._staff_channel,
                status="failed",
                last_error=missing,
                error_code="no_recipient",
            )
        return _NewRow(
            case_id=req.case_id,
            purpose=req.purpose,
            channel="staff",
            recipient_id=staff["id"],
            recipient=staff["phone"],
            template="STAFF",
            text=req.text,
            variables={"name": staff["name"], "role": staff["role"], "text": req.text},
            provider=self._staff_channel,
        )

    @staticmethod
    async def _insert(conn: asyncpg.Connection, rows: list[_NewRow]) -> None:
        # One statement for every row; variables travel as JSON text so the caller's connection needs
        # no jsonb codec.
        await conn.execute(
            "INSERT INTO outbox (case_id, purpose, channel, recipient_id, recipient, template, text,"
            " variables, provider, status, last_error, error_code)"
            " SELECT case_id, purpose, channel, recipient_id, recipient, template, text, variables::jsonb,"
            " provider, status, last_error, error_code"
            " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
            " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[])"
            " AS u(case_id, purpose, channel, recipient_id, recipient, template, text, variables, provider,"
            " status, last_error, error_code)"
            " ON CONFLICT (case_id, purpose) DO NOTHING",
            [r.case_id for r in rows],
            [r.purpose for r in rows],
            [r.channel for r in rows],
            [r.recipient_id for r in rows],
            [r.recipient for r in rows],
            [r.template for r in rows],
            [r.text for r in rows],
            [json.dumps(r.variables, ensure_ascii=False) for r in rows],
            [r.provider for r in rows],
            [r.status for r in rows],
            [r.last_error for r in rows],
            [r.error_code for r in rows],
        )


def build_writer(settings: Settings) -> OutboxWriter:
    """The writer for this deployment: company names and provider names from the settings."""
    return OutboxWriter(
        templates.Company(
            name=settings.company_name, short_name=settings.company_short_name, address=settings.company_address
        ),
        sms_provider=settings.sms_provider,
        staff_channel=settings.notify_channel,
    )


# --- delivering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Channel:
    """One outbox channel (`sms` or `staff`) as the dispatcher drives it."""

    name: str  # the provider's name, as the `provider` column records it
    confirmable: bool
    send: Callable[[asyncpg.Record], Awaitable[str]]
    find: Callable[[asyncpg.Record], Awaitable[str | None]]
    rejected_code: str


def _variables(row: asyncpg.Record) -> dict[str, Any]:
    value = row["variables"]
    if isinstance(value, str):  # a pool without the jsonb codec of activities.db
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
                            _masked(f"{type(exc).__name__}: {exc}"),
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
            f"WITH sms AS ({due.format(channel='sms', provider=5, limit=2)}),"
            f" staff AS ({due.format(channel='staff', provider=6, limit=3)}),"
            " due AS (SELECT * FROM sms UNION ALL SELECT * FROM staff)"
            " UPDATE outbox AS o SET status = 'sending',"
            # a pending row starts an attempt now; a sending row keeps the attempt it is checked for
            " sending_at = CASE WHEN due.status = 'pending' THEN now() ELSE o.sending_at END,"
            " attempts = o.attempts + CASE WHEN due.status = 'pending' THEN 1 ELSE 0 END,"
            " next_attempt_at = now() + $4::interval"
            f" FROM due WHERE o.id = due.id RETURNING {_RETURNING}, due.status AS claimed_from",
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
            "UPDATE outbox SET sending_at = now(), attempts = attempts + 1, next_attempt_at = now() + $3::interval"
            f" WHERE id = $1 AND status = 'sending' AND sending_at = $2 RETURNING {_COLUMNS}",
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
                provider_id = await channel.send(row)
        except ProviderError as exc:
            if not exc.retryable:
                error = _masked(str(exc))
                await self._execute(
                    "UPDATE outbox SET status = 'failed', error_code = $3, last_error = $4"
                    " WHERE id = $1 AND status = 'sending' AND sending_at = $2",
                    row["id"],
                    row["sending_at"],
                    channel.rejected_code,
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
        await self._mark_sent(row["id"], provider_id)

    async def _retry_later(self, row: asyncpg.Record, status: OutboxStatus, error: str) -> None:
        error = _masked(error)
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

    async def _mark_sent(self, row_id: int, provider_id: str) -> None:
        # Unconditional: whatever another dispatcher concluded meanwhile, the provider has the message.
        await self._execute(
            "UPDATE outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = NULL,"
            " error_code = NULL WHERE id = $1",
            row_id,
            provider_id,
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
        )

    def _notice_of(self, row: asyncpg.Record) -> OutgoingNotice:
        variables = _variables(row)
        return OutgoingNotice(
            key=outbox_key(row["case_id"], row["purpose"]),
            recipient_name=str(variables.get("name", "")),
            phone=row["recipient"],
            role=str(variables.get("role", "")),
            text=row["text"],
            sent_on=self._day_of(row),
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
