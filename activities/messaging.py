"""Messaging activities (SPEC §6): client SMS and staff notifications, exactly once per (case, purpose).

The outbox row is written before any provider is called; its status walks
``pending → sending → sent`` (or ``failed`` when the provider rejects the message for good).

Exactly-once, step by step (``_deliver``):

1. The row is inserted with ``ON CONFLICT (case_id, purpose) DO NOTHING``; a retry, or the workflow
   handing the same purpose again after continue-as-new, finds the row that is already there and never
   re-renders (the text the client gets is the one recorded first).
2. An attempt claims the row with one conditional UPDATE, ``pending → sending`` with ``sending_at =
   now()`` and ``attempts + 1``, COMMITTED before the provider is called. This is the crux: if the
   worker dies at any moment after it - before the request left, while it was in flight, or after the
   provider accepted it but before step 4 - the row stays ``sending`` and nobody sends it blindly again.
   No connection or transaction is held across the provider call.
3. A ``sending`` row is left alone for ``confirm_after`` (an attempt may still be running: Temporal
   can start a retry while a timed-out attempt is alive; and a provider needs a moment before a
   message can be looked up). After that, the provider is asked (``find_sent``, by the outbox key it
   was given, on the day of ``sending_at``): found → ``sent``; not found → the row is claimed again
   (conditional on the same ``sending_at``, so two attempts cannot both win) and sent. A channel that
   cannot be asked (WeCom group robot) marks the row ``failed`` with ``outcome_unknown`` instead:
   never twice, and the case's timeline shows the notice may not have arrived.
4. The outcome is recorded: ``sent`` with the provider id; a definitive rejection → ``failed`` with
   its ``error_code`` and a non-retryable ApplicationError; a definite "not now" (throttling) → back
   to ``pending``; an ambiguous error (timeout, connection lost, 5xx: the provider may have accepted
   it) → stays ``sending``, so the retry asks first.

What remains: a provider that takes longer than ``confirm_after`` to make an accepted message
searchable could still lead to a second SMS after a crash; ``confirm_after`` (two minutes by default,
INTAKE_OUTBOX_CONFIRM_AFTER_SECONDS) is there to make that window as wide as the operator wants.

Nothing returned to Temporal carries client data: :class:`OutboxRecord` has no phone number and no text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.cases import CaseRepository
from activities.providers import (
    OutgoingNotice,
    OutgoingSms,
    ProviderError,
    SmsProvider,
    StaffNotifier,
    mask_phone,
)
from domain import templates
from domain.enums import ROLE_LABELS, Role
from domain.models import NotifyStaff, SendSms

log = logging.getLogger(__name__)

OutboxStatus = Literal["pending", "sending", "sent", "failed"]

_COLUMNS = (
    "id, case_id, purpose, channel, recipient_id, recipient, template, text, variables, provider,"
    " status, provider_id, attempts, last_error, error_code, created_at, sending_at, sent_at"
)


class OutboxRecord(BaseModel):
    """An outbox row as the workflow sees it: no phone number, no text (they stay in PostgreSQL)."""

    id: int
    case_id: int
    purpose: str
    channel: Literal["sms", "staff"]
    template: str | None = None
    provider: str
    status: OutboxStatus
    provider_id: str | None = None
    attempts: int
    recipient_id: int | None = None
    last_error: str | None = None
    created_at: datetime
    sent_at: datetime | None = None


class OutboxBusy(Exception):
    """Another attempt may be delivering this outbox row right now; retry later (retryable)."""


def _record(row: asyncpg.Record) -> OutboxRecord:
    return OutboxRecord.model_validate({k: row[k] for k in OutboxRecord.model_fields})


def outbox_key(case_id: int, purpose: str) -> str:
    """The key a provider sees (Aliyun `OutId`): "<case_id>:<purpose>"."""
    return f"{case_id}:{purpose}"


class MessagingActivities:
    """Activities `send_sms` and `notify_staff`: render, record in the outbox, deliver exactly once."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sms_provider: SmsProvider,
        staff_notifier: StaffNotifier,
        company: templates.Company,
        provider_tz: str = "Asia/Shanghai",
        confirm_after: timedelta = timedelta(minutes=2),
    ) -> None:
        self._pool = pool
        self._sms = sms_provider
        self._notifier = staff_notifier
        self._company = company
        self._provider_tz = provider_tz  # the provider's calendar day (Aliyun: Beijing time)
        self._confirm_after = confirm_after
        self._cases = CaseRepository(pool)

    # --- activities ----------------------------------------------------------------------------

    @activity.defn(name="send_sms")
    async def send_sms(self, req: SendSms) -> OutboxRecord:
        """Render a client SMS (T1..T4) and send it exactly once per (case, purpose)."""
        row = await self._find(req.case_id, req.purpose)
        if row is None:
            row = await self._insert_sms(req)

        def sms_of(r: asyncpg.Record) -> OutgoingSms:
            return OutgoingSms(
                key=outbox_key(r["case_id"], r["purpose"]),
                phone=r["recipient"],
                template=r["template"],
                variables=dict(r["variables"] or {}),
                text=r["text"],
                sent_on=self._day_of(r),
            )

        return await self._deliver(
            row,
            send=lambda r: self._sms.send(sms_of(r)),
            find=lambda r: self._sms.find_sent(sms_of(r)),
            confirmable=self._sms.confirmable,
            rejected_type="sms_rejected",
        )

    @activity.defn(name="notify_staff")
    async def notify_staff(self, req: NotifyStaff) -> OutboxRecord:
        """Tell one staff member (or the first active one of a role) something, exactly once."""
        row = await self._find(req.case_id, req.purpose)
        if row is None:
            row = await self._insert_notice(req)

        def notice_of(r: asyncpg.Record) -> OutgoingNotice:
            variables = r["variables"] or {}
            return OutgoingNotice(
                key=outbox_key(r["case_id"], r["purpose"]),
                recipient_name=str(variables.get("name", "")),
                phone=r["recipient"],
                role=str(variables.get("role", "")),
                text=r["text"],
                sent_on=self._day_of(r),
            )

        return await self._deliver(
            row,
            send=lambda r: self._notifier.notify(notice_of(r)),
            find=lambda r: self._notifier.find_sent(notice_of(r)),
            confirmable=self._notifier.confirmable,
            rejected_type="notify_rejected",
        )

    def _day_of(self, row: asyncpg.Record) -> date:
        """The local day the provider was (or is being) called: the day to look the message up by."""
        at: datetime = row["sending_at"] or datetime.now(UTC)
        return at.astimezone(ZoneInfo(self._provider_tz)).date()

    # --- rendering -----------------------------------------------------------------------------

    async def _staff_names(self, ids: list[int | None]) -> dict[int, str]:
        wanted = [i for i in ids if i is not None]
        if not wanted:
            return {}
        rows = await self._pool.fetch("SELECT id, name FROM staff WHERE id = ANY($1::bigint[])", wanted)
        return {r["id"]: r["name"] for r in rows}

    async def render(self, req: SendSms) -> tuple[str, str, dict[str, str], str]:
        """(template id, text, variables, phone) of a client SMS; business errors are non-retryable."""
        contact = await self._cases.client_contact(case_id=req.case_id)
        if contact is None:
            raise ApplicationError(f"案例 {req.case_id} 不存在", type="case_missing", non_retryable=True)
        names = await self._staff_names([req.designer_id, req.assistant_id, req.manager_id])

        def name_of(staff_id: int | None, what: str, *, required: bool) -> str | None:
            if staff_id is None:
                if required:
                    raise ApplicationError(
                        f"短信 {req.template} 需要{what}", type="sms_invalid", non_retryable=True
                    )
                return None
            if staff_id not in names:
                raise ApplicationError(f"{what} {staff_id} 不存在", type="sms_invalid", non_retryable=True)
            return names[staff_id]

        def need_at() -> datetime:
            if req.at is None:
                raise ApplicationError(
                    f"短信 {req.template} 需要时间", type="sms_invalid", non_retryable=True
                )
            return req.at

        designer = name_of(req.designer_id, "设计师", required=True)
        assert designer is not None
        assistant = name_of(req.assistant_id, "助理设计师", required=False) if req.include_assistant else None
        common: dict[str, Any] = {
            "client_name": contact.name,
            "gender": contact.gender,
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
                    raise ApplicationError("短信 T4 需要见面类型", type="sms_invalid", non_retryable=True)
                variables = templates.t4_variables(
                    **common, at=need_at(), kind=req.meeting_kind, tz=req.timezone
                )
        except (KeyError, ValueError) as exc:
            raise ApplicationError(f"短信无法生成: {exc}", type="sms_invalid", non_retryable=True) from exc
        template_name = templates.template_id(req.template, assistant=assistant)
        text = templates.substitute(templates.TEMPLATES[template_name], variables)
        return template_name, text, variables, contact.phone

    # --- outbox rows ---------------------------------------------------------------------------

    async def _find(self, case_id: int, purpose: str) -> asyncpg.Record | None:
        return await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM outbox WHERE case_id = $1 AND purpose = $2", case_id, purpose
        )

    async def _insert(
        self,
        *,
        case_id: int,
        purpose: str,
        channel: str,
        recipient_id: int | None,
        recipient: str,
        template: str,
        text: str,
        variables: dict[str, Any],
        provider: str,
        status: OutboxStatus = "pending",
        last_error: str | None = None,
        error_code: str | None = None,
    ) -> asyncpg.Record:
        # Two attempts may race to insert: the loser's DO NOTHING returns no row and it reads the
        # winner's, so both go on with the same row (and the same text).
        row = await self._pool.fetchrow(
            "INSERT INTO outbox (case_id, purpose, channel, recipient_id, recipient, template, text,"
            " variables, provider, status, last_error, error_code)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
            f" ON CONFLICT (case_id, purpose) DO NOTHING RETURNING {_COLUMNS}",
            case_id,
            purpose,
            channel,
            recipient_id,
            recipient,
            template,
            text,
            variables,
            provider,
            status,
            last_error,
            error_code,
        )
        if row is None:
            row = await self._find(case_id, purpose)
        assert row is not None
        return row

    async def _insert_sms(self, req: SendSms) -> asyncpg.Record:
        template_name, text, variables, phone = await self.render(req)
        try:
            return await self._insert(
                case_id=req.case_id,
                purpose=req.purpose,
                channel="sms",
                recipient_id=None,
                recipient=phone,
                template=template_name,
                text=text,
                variables=variables,
                provider=self._sms.name,
            )
        except asyncpg.ForeignKeyViolationError as exc:  # the case was deleted meanwhile
            raise ApplicationError(
                f"案例 {req.case_id} 不存在", type="case_missing", non_retryable=True
            ) from exc

    async def _insert_notice(self, req: NotifyStaff) -> asyncpg.Record:
        try:
            return await self._insert_notice_row(req)
        except asyncpg.ForeignKeyViolationError as exc:  # no such case
            raise ApplicationError(
                f"案例 {req.case_id} 不存在", type="case_missing", non_retryable=True
            ) from exc

    async def _insert_notice_row(self, req: NotifyStaff) -> asyncpg.Record:
        staff: asyncpg.Record | None = None
        if req.recipient_id is not None:
            staff = await self._pool.fetchrow(
                "SELECT id, name, phone, role FROM staff WHERE id = $1", req.recipient_id
            )
            missing = f"员工 {req.recipient_id} 不存在"
        elif req.recipient_role is not None:
            staff = await self._pool.fetchrow(
                "SELECT id, name, phone, role FROM staff WHERE role = $1 AND status = 'active'"
                " ORDER BY id LIMIT 1",
                req.recipient_role.value,
            )
            missing = f"没有在岗的{ROLE_LABELS.get(Role(req.recipient_role), req.recipient_role)}"
        else:
            missing = "通知没有指定接收人或角色"
        if staff is None:
            # Recorded, so the case shows that this notice could not go out and why; never retried.
            row = await self._insert(
                case_id=req.case_id,
                purpose=req.purpose,
                channel="staff",
                recipient_id=None,
                recipient="",
                template="STAFF",
                text=req.text,
                variables={"text": req.text},
                provider=self._notifier.name,
                status="failed",
                last_error=missing,
                error_code="no_recipient",
            )
            if row["status"] == "failed":
                raise ApplicationError(missing, type="no_recipient", non_retryable=True)
            return row
        return await self._insert(
            case_id=req.case_id,
            purpose=req.purpose,
            channel="staff",
            recipient_id=staff["id"],
            recipient=staff["phone"],
            template="STAFF",
            text=req.text,
            variables={"name": staff["name"], "role": staff["role"], "text": req.text},
            provider=self._notifier.name,
        )

    # --- delivery ------------------------------------------------------------------------------

    async def _deliver(
        self,
        row: asyncpg.Record,
        *,
        send: Callable[[asyncpg.Record], Awaitable[str]],
        find: Callable[[asyncpg.Record], Awaitable[str | None]],
        confirmable: bool,
        rejected_type: str,
    ) -> OutboxRecord:
        """Hand one outbox row to its provider at most once (see the module docstring)."""
        row_id: int = row["id"]
        claimed = await self._claim(row_id, pending=True)
        if claimed is None:
            current = await self._pool.fetchrow(
                f"SELECT {_COLUMNS}, sending_at < now() - $2::interval AS left_alone FROM outbox WHERE id = $1",
                row_id,
                self._confirm_after,
            )
            assert current is not None
            if current["status"] == "sent":
                return _record(current)
            if current["status"] == "failed":
                raise ApplicationError(
                    current["last_error"] or "rejected",
                    type=current["error_code"] or rejected_type,
                    non_retryable=True,
                )
            if current["status"] == "pending" or not current["left_alone"]:
                # Claimed a moment ago by another attempt, which may still be talking to the provider.
                raise OutboxBusy(f"outbox {row_id} is being delivered by another attempt")
            # `sending`, left alone long enough: the attempt that claimed it died or got no clear answer.
            if not confirmable:
                error = "发送结果未知（发送途中中断），为免重复不再补发"
                await self._pool.execute(
                    "UPDATE outbox SET status = 'failed', error_code = 'outcome_unknown', last_error = $2"
                    " WHERE id = $1 AND status = 'sending'",
                    row_id,
                    error,
                )
                raise ApplicationError(error, type="outcome_unknown", non_retryable=True)
            try:
                found = await find(current)
            except ProviderError as exc:
                # Not knowing is never "not sent": a failing query must not lead to a second message.
                raise ProviderError(f"无法确认上次发送结果: {exc}", retryable=True, code=exc.code) from exc
            if found is not None:
                log.info("outbox %s: found earlier delivery %s, not sending again", row_id, found)
                return await self._mark_sent(row_id, found)
            claimed = await self._claim(row_id, pending=False, sending_at=current["sending_at"])
            if claimed is None:
                raise OutboxBusy(f"outbox {row_id} was claimed by another attempt meanwhile")
        return await self._send(claimed, send, rejected_type)

    async def _claim(
        self, row_id: int, *, pending: bool, sending_at: datetime | None = None
    ) -> asyncpg.Record | None:
        """`pending` (or the `sending` attempt that started at `sending_at`) → `sending` now; committed."""
        return await self._pool.fetchrow(
            "UPDATE outbox SET status = 'sending', sending_at = now(), attempts = attempts + 1"
            " WHERE id = $1 AND CASE WHEN $2 THEN status = 'pending'"
            " ELSE status = 'sending' AND sending_at = $3 END"
            f" RETURNING {_COLUMNS}",
            row_id,
            pending,
            sending_at,
        )

    async def _send(
        self, row: asyncpg.Record, send: Callable[[asyncpg.Record], Awaitable[str]], rejected_type: str
    ) -> OutboxRecord:
        row_id: int = row["id"]
        try:
            provider_id = await send(row)
        except ProviderError as exc:
            error = mask_phone(str(exc))[:1000]
            if not exc.retryable:
                await self._pool.execute(
                    "UPDATE outbox SET status = 'failed', error_code = $3, last_error = $2 WHERE id = $1",
                    row_id,
                    error,
                    rejected_type,
                )
                raise ApplicationError(error, type=rejected_type, non_retryable=True) from exc
            # Definitely not accepted (throttled): back to pending. Possibly accepted: keep `sending`.
            next_status = "sending" if exc.ambiguous else "pending"
            await self._pool.execute(
                "UPDATE outbox SET status = $2, last_error = $3 WHERE id = $1", row_id, next_status, error
            )
            raise
        except Exception as exc:
            # Unknown failure around the call: the provider may have the message, so `sending` stays.
            error = mask_phone(f"{type(exc).__name__}: {exc}")[:1000]
            await self._pool.execute("UPDATE outbox SET last_error = $2 WHERE id = $1", row_id, error)
            raise ProviderError(error, retryable=True, code=type(exc).__name__, ambiguous=True) from exc
        return await self._mark_sent(row_id, provider_id)

    async def _mark_sent(self, row_id: int, provider_id: str) -> OutboxRecord:
        row = await self._pool.fetchrow(
            "UPDATE outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = NULL"
            f" WHERE id = $1 RETURNING {_COLUMNS}",
            row_id,
            provider_id,
        )
        assert row is not None
        return _record(row)
