"""Messaging activities (SPEC §6): client SMS and staff notifications, exactly once per (case, purpose).

The outbox row is written before any provider is called; its status walks
``pending → sending → sent`` (or ``failed`` when the provider rejects the message for good).

Exactly-once, step by step (``_deliver``):

1. The row is inserted with ``ON CONFLICT (case_id, purpose) DO NOTHING``; a retry, or the workflow
   handing the same purpose again after continue-as-new, finds the row that is already there and never
   re-renders (the text the client gets is the one recorded first).
2. One attempt at a time per row: a session-level advisory lock on the row id, taken with
   ``pg_try_advisory_lock``. Temporal can run two attempts of one activity at once (the old attempt timed
   out but is still alive: a "zombie"); the second attempt then fails fast with a retryable error instead
   of talking to the provider concurrently. The lock dies with the database session, so a worker that
   crashes never leaves it behind; asyncpg also runs ``pg_advisory_unlock_all()`` when a connection
   goes back to the pool.
3. Under that lock, in short transactions with the row locked ``FOR UPDATE``: ``sent`` returns the row,
   ``failed`` raises the recorded rejection again, ``sending`` means an earlier attempt died between
   step 4 and step 5, so we ask the provider (``find_sent``, by the outbox key it was given) and only
   send when it says the message never arrived.
4. ``status = 'sending', attempts + 1`` is COMMITTED before the provider is called. This is the crux:
   if the worker dies at any moment after this commit - before the request left, while it was in flight,
   or after the provider accepted it but before step 5 - the next attempt sees ``sending`` and knows it
   must ask before sending. Without this mark a crash after the provider accepted would leave
   ``pending`` and the retry would send a second SMS. The opposite order (call first, then mark) has the
   same hole. No database transaction is held open across the provider call: a crash would roll such a
   transaction back and erase exactly the evidence we need.
5. The outcome is recorded: ``sent`` with the provider id; a definitive rejection → ``failed`` and a
   non-retryable ApplicationError; a definite "not now" (throttling) → back to ``pending``; an ambiguous
   error (timeout, connection lost, 5xx: the provider may have accepted it) → stays ``sending`` so the
   retry asks first.

The remaining risk is the provider's own visibility delay: if the worker dies right after Aliyun accepted
a message and the retry queries before the record is searchable, a second SMS can go out. Temporal's
retry backoff makes that window small. Channels that cannot be asked (WeCom robot, log) resend after a
crash mid-call: for a staff reminder, twice is better than never.

Nothing returned to Temporal carries client data: :class:`OutboxRecord` has no phone number and no text.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
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
from domain.enums import ROLE_LABELS, Gender, Role
from domain.models import NotifyStaff, SendSms

log = logging.getLogger(__name__)

# Namespace of the two-int advisory locks that serialise attempts per outbox row.
_OUTBOX_LOCK_NS = 7_310_043

OutboxStatus = Literal["pending", "sending", "sent", "failed"]

_COLUMNS = (
    "id, case_id, purpose, channel, recipient_id, recipient, template, text, variables, provider,"
    " status, provider_id, attempts, last_error, created_at, sent_at"
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


class MessageView(BaseModel):
    """A message as staff read it (GET /intakes/{id}/messages): purpose, template, text, status."""

    id: int
    purpose: str
    channel: Literal["sms", "staff"]
    template: str | None = None
    text: str
    status: OutboxStatus
    provider: str
    provider_id: str | None = None
    attempts: int
    last_error: str | None = None
    recipient_id: int | None = None
    created_at: datetime
    sent_at: datetime | None = None


class OutboxBusy(Exception):
    """Another attempt is delivering this outbox row right now; retry later (retryable)."""


def _record(row: asyncpg.Record) -> OutboxRecord:
    return OutboxRecord(
        id=row["id"],
        case_id=row["case_id"],
        purpose=row["purpose"],
        channel=row["channel"],
        template=row["template"],
        provider=row["provider"],
        status=row["status"],
        provider_id=row["provider_id"],
        attempts=row["attempts"],
        recipient_id=row["recipient_id"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def _view(row: asyncpg.Record) -> MessageView:
    return MessageView(
        id=row["id"],
        purpose=row["purpose"],
        channel=row["channel"],
        template=row["template"],
        text=row["text"],
        status=row["status"],
        provider=row["provider"],
        provider_id=row["provider_id"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        recipient_id=row["recipient_id"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def outbox_key(case_id: int, purpose: str) -> str:
    """The key a provider sees (Aliyun `OutId`): "<case_id>:<purpose>"."""
    return f"{case_id}:{purpose}"


class MessagingActivities:
    """Activities `send_sms` and `notify_staff`, plus the message list the API shows."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        sms_provider: SmsProvider,
        staff_notifier: StaffNotifier,
        company: templates.Company,
        tz: str = "Asia/Shanghai",
    ) -> None:
        self._pool = pool
        self._sms = sms_provider
        self._notifier = staff_notifier
        self._company = company
        self._tz = tz
        self._zone = ZoneInfo(tz)
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
                template_code=None,
                variables=dict(r["variables"] or {}),
                text=r["text"],
                sent_on=self._today(),
            )

        return await self._deliver(
            row,
            send=lambda r: self._sms.send(sms_of(r)),
            find=lambda r: self._sms.find_sent(sms_of(r)),
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
                sent_on=self._today(),
            )

        return await self._deliver(
            row,
            send=lambda r: self._notifier.notify(notice_of(r)),
            find=lambda r: self._notifier.find_sent(notice_of(r)),
            rejected_type="notify_rejected",
        )

    # --- repository ----------------------------------------------------------------------------

    async def list_messages(
        self, *, case_id: int, channel: Literal["sms", "staff"] = "sms"
    ) -> list[MessageView]:
        """The messages of a case on a channel, oldest first (GET /intakes/{id}/messages)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM outbox WHERE case_id = $1 AND channel = $2 ORDER BY created_at, id",
            case_id,
            channel,
        )
        return [_view(r) for r in rows]

    async def get_record(self, *, case_id: int, purpose: str) -> OutboxRecord | None:
        """One outbox row by (case, purpose)."""
        row = await self._find(case_id, purpose)
        return _record(row) if row else None

    # --- rendering -----------------------------------------------------------------------------

    def _today(self) -> date:
        return datetime.now(self._zone).date()

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
            "gender": Gender(contact.gender),
            "company": self._company,
            "designer": designer,
        }
        try:
            if req.template == "T1":
                variables = templates.t1_variables(**common, assistant=assistant)
                text = templates.render_t1(**common, assistant=assistant)
            elif req.template == "T2":
                at = need_at()
                variables = templates.t2_variables(**common, assistant=assistant, measure_at=at, tz=self._tz)
                text = templates.render_t2(**common, assistant=assistant, measure_at=at, tz=self._tz)
            elif req.template == "T3":
                manager = name_of(req.manager_id, "设计部经理", required=True)
                assert manager is not None
                variables = templates.t3_variables(**common, manager=manager, assistant=assistant)
                text = templates.render_t3(**common, manager=manager, assistant=assistant)
            else:
                at = need_at()
                if req.meeting_kind is None:
                    raise ApplicationError("短信 T4 需要见面类型", type="sms_invalid", non_retryable=True)
                kind = req.meeting_kind
                variables = templates.t4_variables(**common, at=at, kind=kind, tz=self._tz)
                text = templates.render_t4(**common, at=at, kind=kind, tz=self._tz)
        except (KeyError, ValueError) as exc:
            raise ApplicationError(f"短信无法生成: {exc}", type="sms_invalid", non_retryable=True) from exc
        template_name = templates.template_id(req.template, assistant=assistant)
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
    ) -> asyncpg.Record:
        # Two attempts may race to insert: the loser's DO NOTHING returns no row and it reads the
        # winner's, so both go on with the same row (and the same text).
        row = await self._pool.fetchrow(
            "INSERT INTO outbox (case_id, purpose, channel, recipient_id, recipient, template, text,"
            " variables, provider, status, last_error) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
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
        if not await self._cases.exists(case_id=req.case_id):
            raise ApplicationError(f"案例 {req.case_id} 不存在", type="case_missing", non_retryable=True)
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
                last_error=f"no_recipient: {missing}",
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
        rejected_type: str,
    ) -> OutboxRecord:
        """Hand one outbox row to its provider at most once (see the module docstring)."""
        if row["status"] == "sent":
            return _record(row)
        row_id: int = row["id"]
        async with self._pool.acquire() as conn:
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1::int, ($2 % 2147483647)::int)", _OUTBOX_LOCK_NS, row_id
            )
            if not locked:
                raise OutboxBusy(f"outbox {row_id} is being delivered by another attempt")
            try:
                return await self._deliver_locked(
                    conn, row_id, send=send, find=find, rejected_type=rejected_type
                )
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock($1::int, ($2 % 2147483647)::int)", _OUTBOX_LOCK_NS, row_id
                )

    async def _deliver_locked(
        self,
        conn: asyncpg.Connection,
        row_id: int,
        *,
        send: Callable[[asyncpg.Record], Awaitable[str]],
        find: Callable[[asyncpg.Record], Awaitable[str | None]],
        rejected_type: str,
    ) -> OutboxRecord:
        async with conn.transaction():
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM outbox WHERE id = $1 FOR UPDATE", row_id)
        assert row is not None
        if row["status"] == "sent":
            return _record(row)
        if row["status"] == "failed":
            error = row["last_error"] or "rejected"
            error_type = "no_recipient" if error.startswith("no_recipient") else rejected_type
            raise ApplicationError(error, type=error_type, non_retryable=True)

        if row["status"] == "sending":
            # An earlier attempt committed `sending` and never recorded the outcome: it died (or got an
            # ambiguous error) around the provider call. Only the provider knows whether the message
            # arrived; a failing query raises (retryable) rather than risk a second message.
            try:
                found = await find(row)
            except ProviderError as exc:
                raise ProviderError(f"无法确认上次发送结果: {exc}", retryable=True, code=exc.code) from exc
            if found is not None:
                log.info("outbox %s: found earlier delivery %s, not sending again", row_id, found)
                return await self._mark_sent(conn, row_id, found)

        # Committed BEFORE the provider is called: from here on a crash leaves `sending`, which makes the
        # next attempt ask the provider first (see the module docstring, step 4).
        async with conn.transaction():
            row = await conn.fetchrow(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1 WHERE id = $1"
                f" RETURNING {_COLUMNS}",
                row_id,
            )
        assert row is not None
        try:
            provider_id = await send(row)
        except ProviderError as exc:
            error = mask_phone(str(exc))[:1000]
            if not exc.retryable:
                await conn.execute(
                    "UPDATE outbox SET status = 'failed', last_error = $2 WHERE id = $1", row_id, error
                )
                raise ApplicationError(error, type=rejected_type, non_retryable=True) from exc
            # Definitely not accepted (throttled): back to pending. Possibly accepted: keep `sending`.
            next_status = "sending" if exc.ambiguous else "pending"
            await conn.execute(
                "UPDATE outbox SET status = $2, last_error = $3 WHERE id = $1", row_id, next_status, error
            )
            raise
        except Exception as exc:
            # Unknown failure around the call: the provider may have the message, so `sending` stays.
            await conn.execute(
                "UPDATE outbox SET last_error = $2 WHERE id = $1",
                row_id,
                mask_phone(f"{type(exc).__name__}: {exc}")[:1000],
            )
            raise
        return await self._mark_sent(conn, row_id, provider_id)

    async def _mark_sent(self, conn: asyncpg.Connection, row_id: int, provider_id: str) -> OutboxRecord:
        row = await conn.fetchrow(
            "UPDATE outbox SET status = 'sent', provider_id = $2, sent_at = now(), last_error = NULL"
            f" WHERE id = $1 RETURNING {_COLUMNS}",
            row_id,
            provider_id,
        )
        assert row is not None
        return _record(row)
