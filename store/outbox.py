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
   two dispatchers cannot both win) and sent. A channel that cannot be asked (the WeCom group robot,
   WeCom application messages) marks the row ``failed`` with ``outcome_unknown`` instead: never twice,
   and the case shows the notice may not have arrived.
4. The outcome is recorded: ``sent`` with the provider id (and, when it went another way than asked,
   e.g. through the group robot because WeCom does not know the person, the reason in ``error_code`` /
   ``last_error``); a definitive rejection → ``failed`` with ``sms_rejected`` / ``notify_rejected`` (or
   the provider's own code, e.g. ``wecom_no_userid``) and never claimed again; a definite "not now" (throttling,
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

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from config import Settings
from domain import notices as notice_texts
from domain import permissions, quiet, staffing, templates
from domain.calendar import local_date
from domain.enums import ROLE_LABELS, Gender, Level, MeetingKind, Role, StaffStatus
from domain.models import Meeting, NotifyStaff, SendSms
from domain.phone import mask_phones_in
from domain.policy import Policy
from domain.tracking import local_time
from store.staff import schedule_from_db

log = logging.getLogger(__name__)

OutboxStatus = Literal["pending", "sending", "sent", "failed"]
# A row as rendering reads it: an asyncpg record or the JSON intake_apply_change answers with.
Row = Mapping[str, Any]

# One dispatcher statement (or waiting for a pooled connection) longer than this is an error, not a hang.
DB_TIMEOUT = 10.0

_COLUMN_NAMES = (
    "id", "case_id", "purpose", "channel", "recipient_id", "recipient", "template", "text", "variables",
    "provider", "status", "provider_id", "attempts", "failures", "last_error", "error_code", "sending_at",
    "next_attempt_at", "sms_sign", "sms_template_code",
)
_COLUMNS = ", ".join(_COLUMN_NAMES)
_RETURNING = ", ".join(f"o.{c}" for c in _COLUMN_NAMES)


# Staff channels that deliver to one person only. The log and the WeCom group robot are read by others,
# so phones written into a notice's free text are masked there. The WeCom corp application writes to
# each person; when it cannot reach someone, its fallback to the group robot masks phones itself.
PERSONAL_CHANNELS = frozenset({"sms", "wecom_app"})


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _policy_of(raw: Any) -> Policy | None:
    """The case's own policy (quiet window, calendar). A row without one (written before migration 003)
    holds nothing: the quiet rules come with the policy the case started with."""
    try:
        return Policy.model_validate(_json(raw)) if raw else None
    except ValueError:
        return None


def _availability(staff: Row) -> staffing.Availability:
    return staffing.Availability(id=staff["id"], status=StaffStatus(staff["status"]),
                                 schedule=schedule_from_db(_json(staff["office_schedule"])) or None)


def outbox_key(case_id: int | None, purpose: str, recipient_id: int | None = None) -> str:
    """The key a provider sees (Aliyun `OutId`): "<case_id>:<purpose>"; a notice of no case (the morning
    summary) "staff<recipient_id>:<purpose>"."""
    return f"{case_id}:{purpose}" if case_id is not None else f"staff{recipient_id}:{purpose}"


def masked(text: str) -> str:
    """An error text as stored and logged: phones masked, at most 1,000 characters."""
    return mask_phones_in(text)[:1000]


# --- writing ----------------------------------------------------------------------------------


class _Unrenderable(Exception):
    """A message that cannot be rendered: recorded as `failed` with this code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Needs:
    """What rendering a set of messages reads besides their case (``intake_outbox_staff``'s arguments)."""

    staff_ids: list[int]
    roles: list[str]
    details: bool  # a designer_assigned notice: the client's details for the designer


@dataclass(frozen=True)
class _NewRow:
    case_id: int | None  # None: a staff notice of no case (the morning summary)
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
    not_before: datetime | None = None  # held until then (quiet hours, off duty); None: at once
    sms_sign: str | None = None  # the case's branch's SMS sign where it has its own (None: the deployment's)
    sms_template_code: str | None = None  # the branch's approved template code of `template`, where set


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
        now: datetime | None = None,
    ) -> None:
        """Record messages exactly once per (case, purpose), first rendering wins; never raises for a business problem.

        A message decided at `now` (default: the present) inside the client's quiet hours or outside its
        recipient's working hours is recorded held (`not_before`, SPEC §14).
        """
        if not sms and not notices:
            return
        now = now or datetime.now(UTC)
        messages: list[SendSms | NotifyStaff] = [*sms, *notices]
        # Four statements whatever the number of messages: cases, staff, details, one INSERT.
        # FOR KEY SHARE: the cases cannot vanish before the caller commits, so the INSERT cannot fail
        # on the foreign key and abort the caller's transaction.
        cases = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, client_name, client_gender, client_phone, created_by, received_by, manager_id,"
                " designer_id, assistant_id, status, policy, intake_outbox_branch(branch_id)::text AS branch FROM cases"
                " WHERE id = ANY($1::bigint[]) FOR KEY SHARE",
                sorted({m.case_id for m in messages}),
            )
        }
        need = self.needs(sms, notices)
        staff = await self._staff(conn, need)
        details = await self._details(conn, [n for n in notices if n.template == "designer_assigned"])
        rows = self.render(messages, cases=cases, staff=staff, details=details, now=now)
        if rows:
            await self._insert(conn, rows)

    def needs(self, sms: Sequence[SendSms], notices: Sequence[NotifyStaff]) -> Needs:
        """What rendering these messages reads besides the case: staff by id and by role, the designer's details."""
        ids = {i for m in sms for i in (m.designer_id, m.assistant_id, m.manager_id, m.previous_designer_id)
               if i is not None}
        ids |= {n.recipient_id for n in notices if n.recipient_id is not None}
        roles = {key for n in notices if (key := n.role_key()) is not None}
        return Needs(staff_ids=sorted(ids), roles=sorted(roles),
                     details=any(n.template == "designer_assigned" for n in notices))

    def render(
        self,
        messages: Sequence[SendSms | NotifyStaff],
        *,
        cases: Mapping[int, Mapping[str, Any]],
        staff: Sequence[Mapping[str, Any]],
        details: Mapping[int, Mapping[str, Any]],
        now: datetime,
    ) -> list[_NewRow]:
        """The outbox rows of `messages` (one per case and purpose, the first wins) from their inputs: the
        cases (as they stand after the decision), the staff :meth:`needs` names (rows of
        ``intake_outbox_staff``) and the designer's details per case. Pure: no database."""
        by_id = {r["id"]: r for r in staff if r["for_role"] is None}
        by_role = {r["for_role"]: r for r in staff if r["for_role"] is not None}
        by_id.update({r["id"]: r for r in by_role.values() if r["id"] not in by_id})  # schedules by recipient
        names = {i: r["name"] for i, r in by_id.items()}
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
                msg = msg.model_copy(update={"text": self._designer_text(msg.case_id, details[msg.case_id], case)})
            row = (
                self._sms_row(msg, case, names)
                if isinstance(msg, SendSms)
                else self._notice_row(msg, by_id, by_role, case, now)
            )
            if row.status == "pending":
                row = self._held(row, msg, case, by_id, now)
            if row.status == "failed":
                log.warning(
                    "outbox: case %s message %s recorded as failed (%s)", row.case_id, row.purpose, row.error_code
                )
            rows.append(row)
        return rows

    async def enqueue_staff_digest(
        self,
        conn: asyncpg.Connection,
        *,
        purpose: str,
        text: str,
        recipients: Sequence[asyncpg.Record],
        policy: Policy,
        now: datetime,
    ) -> None:
        """Record a notice of no case (the morning summary) for each recipient, once per (purpose, recipient).

        `recipients` are staff rows (id, name, phone, role, office_schedule). A recipient whose own working
        hours start later today gets it then; one who does not work today gets it at once (a summary held
        until another day would be stale).
        """
        body = mask_phones_in(text)  # the log and the group robot are read by others
        rows: list[_NewRow] = []
        for staff in recipients:
            schedule = schedule_from_db(_json(staff["office_schedule"])) or None
            until = quiet.not_before(policy, now, client=False, schedule=schedule)
            if until is not None and local_date(policy.calendar, until) != local_date(policy.calendar, now):
                until = None
            rows.append(_NewRow(
                case_id=None, purpose=purpose, channel="staff", recipient_id=staff["id"], recipient=staff["phone"],
                template="STAFF", text=body, variables={"name": staff["name"], "role": staff["role"], "text": body},
                provider=self._staff_channel, not_before=until,
            ))
        if rows:
            await self._insert(conn, rows, caseless=True)

    @staticmethod
    def _held(row: _NewRow, msg: SendSms | NotifyStaff, case: Row, by_id: dict[int, Row],
              now: datetime) -> _NewRow:
        """The row, held until the client's quiet hours end or its recipient's next working start."""
        policy = _policy_of(case["policy"])
        if policy is None:
            return row
        if isinstance(msg, SendSms):
            until = quiet.not_before(policy, now, client=True)
        else:
            staff = by_id.get(row.recipient_id) if row.recipient_id is not None else None
            schedule = schedule_from_db(_json(staff["office_schedule"])) if staff is not None else None
            until = quiet.not_before(policy, now, client=False, schedule=schedule, urgent=msg.urgent)
        return replace(row, not_before=until) if until is not None else row

    async def _details(
        self, conn: asyncpg.Connection, notices: Sequence[NotifyStaff]
    ) -> dict[int, Mapping[str, Any]]:
        """将客户的详细情况告诉设计师: what the designer's notice tells, from PostgreSQL (never from the workflow).

        Read in the caller's transaction, after the change's projection and events were written, so the
        agreed times and the callback's notes are those of the same decision. The same inputs as
        ``intake_apply_change`` computes (migrations/018).
        """
        case_ids = sorted({n.case_id for n in notices})
        if not case_ids:
            return {}
        rows = await conn.fetch(
            "SELECT c.id, c.compound, c.area_m2, c.budget, c.policy->'calendar'->>'timezone' AS tz,"
            " intake_state_meeting(c.state, 'meeting')::text AS meeting,"
            " intake_state_meeting(c.state, 'measure')::text AS measure,"
            " (c.state->'designer_level')::text AS designer_level, (c.state->'car')::text AS car,"
            " intake_callback_notes(c.id) AS callback_notes"
            " FROM cases c WHERE c.id = ANY($1::bigint[])",
            case_ids,
        )
        return {r["id"]: {**dict(r), **{k: json.loads(r[k]) if r[k] else None
                                        for k in ("meeting", "measure", "designer_level", "car")}}
                for r in rows}

    @staticmethod
    def _designer_text(case_id: int, d: Mapping[str, Any], case: Mapping[str, Any]) -> str:
        """The designer's notice of a case from its details (``_details`` / ``intake_apply_change``)."""
        tz = d["tz"] or "Asia/Shanghai"

        def meeting(raw: Any) -> Meeting | None:
            try:
                return Meeting.model_validate(raw) if raw else None
            except ValueError:
                return None

        first, measure = meeting(d["meeting"]), meeting(d["measure"])
        try:
            level = Level(d["designer_level"]) if d["designer_level"] else None
        except ValueError:
            level = None
        return notice_texts.designer_details(
            case_id,
            salutation=templates.salutation(case["client_name"], Gender(case["client_gender"])),
            compound=d["compound"],
            area_m2=float(d["area_m2"]) if d["area_m2"] is not None else None,
            budget=d["budget"],
            meeting_kind=MeetingKind(first.kind) if first else None,
            meeting_at=local_time(first.at, tz) if first else None,
            measure_at=local_time(measure.at, tz) if measure else None,
            level=level,
            callback_notes=d["callback_notes"],
            car=d["car"] if isinstance(d["car"], str) else None,
        )

    async def _staff(self, conn: asyncpg.Connection, need: Needs) -> list[Mapping[str, Any]]:
        """Staff by id (names in SMS, notice recipients), the first active member of each role asked for, and
        the deputies of both (a manager away hands their notices to the deputy): ``intake_outbox_staff``."""
        if not need.staff_ids and not need.roles:
            return []
        found = await conn.fetchval("SELECT intake_outbox_staff($1::bigint[], $2::text[])::text",
                                    need.staff_ids, need.roles)
        rows: list[Mapping[str, Any]] = json.loads(found)
        return rows

    def company_of(self, branch: Any) -> templates.Company:
        """The company as a case's SMS name it: its branch's names and address (migration 021's
        ``intake_outbox_branch``), each left empty there the deployment's."""
        b = _json(branch) or {}
        return templates.Company(
            name=b.get("company_name") or self._company.name,
            short_name=b.get("company_short_name") or self._company.short_name,
            address=b["company_address"] if b.get("company_address") is not None else self._company.address,
        )

    def _sms_row(self, req: SendSms, case: Row, names: dict[int, str]) -> _NewRow:
        phone: str = case["client_phone"]
        branch = _json(case.get("branch")) or {}
        try:
            template_name, text, variables = self._render_sms(
                req, client_name=case["client_name"], gender=Gender(case["client_gender"]), names=names,
                company=self.company_of(branch),
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
                last_error=masked(exc.message),
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
            # The branch's own SMS account (sign, approved template) where it has one: kept with the text.
            sms_sign=branch.get("sms_sign") or None,
            sms_template_code=(branch.get("sms_template_codes") or {}).get(template_name) or None,
        )

    def _render_sms(
        self, req: SendSms, *, client_name: str, gender: Gender, names: dict[int, str], company: templates.Company,
    ) -> tuple[str, str, dict[str, str]]:
        """(template id, text, variables) of a client SMS (T1..T5); raises _Unrenderable."""

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

        if req.template == "T4" and req.designer_id is None and req.manager_id is not None:
            # 情况二 before the visit: the client has spoken only to the manager, who signs the reminder.
            manager = name_of(req.manager_id, "设计部经理", required=True)
            assert manager is not None
            if req.meeting_kind is None:
                raise _Unrenderable("sms_invalid", "短信 T4 需要见面类型")
            try:
                variables = templates.t4_manager_variables(
                    client_name=client_name, gender=gender, company=company, manager=manager,
                    at=need_at(), kind=req.meeting_kind, tz=req.timezone)
            except (KeyError, ValueError) as exc:
                raise _Unrenderable("sms_invalid", f"短信无法生成: {exc}") from exc
            name = "T4_OFFICE_MANAGER" if "address" in variables else "T4_MANAGER"
            return name, templates.substitute(templates.TEMPLATES[name], variables), variables
        designer = name_of(req.designer_id, "设计师", required=True)
        assert designer is not None
        assistant = name_of(req.assistant_id, "助理设计师", required=False) if req.include_assistant else None
        common: dict[str, Any] = {
            "client_name": client_name,
            "gender": gender,
            "company": company,
            "designer": designer,
        }
        try:
            if req.template == "T1":
                variables = templates.t1_variables(**common, assistant=assistant)
            elif req.template == "T2":
                variables = templates.t2_variables(
                    **common, assistant=assistant, measure_at=need_at(), tz=req.timezone
                )
            elif req.template == "T5":
                previous = name_of(req.previous_designer_id, "原设计师", required=False)
                variables = templates.t5_variables(**common, assistant=assistant, previous=previous)
            elif req.template == "T3":
                manager = name_of(req.manager_id, "设计部经理", required=True)
                assert manager is not None
                variables = templates.t3_variables(**common, manager=manager, assistant=assistant)
            else:
                if req.meeting_kind is None:
                    raise _Unrenderable("sms_invalid", "短信 T4 需要见面类型")
                if req.meeting_kind == MeetingKind.office_visit and company.address:
                    variables = templates.t4_office_variables(**common, at=need_at(), tz=req.timezone)
                else:
                    variables = templates.t4_variables(
                        **common, at=need_at(), kind=req.meeting_kind, tz=req.timezone
                    )
            if req.template == "T5":
                template_name = templates.t5_template_id(assistant=assistant, previous=variables.get("previous"))
            else:
                template_name = templates.template_id(req.template, assistant=assistant)
            if "address" in variables:
                template_name = "T4_OFFICE"
            text = templates.substitute(templates.TEMPLATES[template_name], variables)
        except (KeyError, ValueError) as exc:
            raise _Unrenderable("sms_invalid", f"短信无法生成: {exc}") from exc
        return template_name, text, variables

    @staticmethod
    def _deputy(staff: Row, by_id: dict[int, Row], case: Row,
                now: datetime) -> Row | None:
        """The recipient's deputy when the recipient is away and the deputy at work, else None."""
        deputy = by_id.get(staff["deputy_id"]) if staff["deputy_id"] is not None else None
        if deputy is None:
            return None
        calendar = (_policy_of(case["policy"]) or Policy()).calendar
        acting = staffing.acting_deputy(_availability(staff), _availability(deputy), calendar, now)
        return deputy if acting is not None else None

    def _notice_row(
        self, req: NotifyStaff, by_id: dict[int, Row], by_role: dict[str, Row],
        case: Row, now: datetime,
    ) -> _NewRow:
        staff: Row | None
        if req.recipient_id is not None:
            staff = by_id.get(req.recipient_id)
            missing = f"员工 {req.recipient_id} 不存在"
        elif req.recipient_role is not None:
            staff = by_role.get(req.role_key() or req.recipient_role.value)
            missing = f"没有在岗的{ROLE_LABELS.get(Role(req.recipient_role), req.recipient_role)}"
        else:
            staff = None
            missing = "通知没有指定接收人或角色"
        deputy = self._deputy(staff, by_id, case, now) if staff is not None else None
        if staff is not None and deputy is not None:
            # The manager is away and their deputy at work: the deputy holds the step (SPEC §14).
            req = req.model_copy(update={"text": f"【代{staff['name']}】{req.text}"})
            staff = deputy
        if staff is None or not self._private(staff, case):
            # A phone written into free text (a note, a correction) reaches only those who may see it.
            req = req.model_copy(update={"text": mask_phones_in(req.text)})
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

    def _private(self, staff: Row, case: Row) -> bool:
        """Whether the notice reaches only its recipient, who may see the client's contact details."""
        if self._staff_channel not in PERSONAL_CHANNELS:
            return False
        person = permissions.Someone(id=staff["id"], role=Role(staff["role"]))
        return permissions.may_see_contact(person, permissions.CaseFacts.of_row(case))

    @staticmethod
    async def _insert(conn: asyncpg.Connection, rows: list[_NewRow], *, caseless: bool = False) -> None:
        # One statement for every row; variables travel as JSON text so the caller's connection needs
        # no jsonb codec. Rows of no case are unique per (purpose, recipient) (migration 016).
        target = "(purpose, recipient_id) WHERE case_id IS NULL" if caseless else "(case_id, purpose)"
        await conn.execute(
            "INSERT INTO outbox (case_id, purpose, channel, recipient_id, recipient, template, text,"
            " variables, provider, status, last_error, error_code, not_before, next_attempt_at, sms_sign,"
            " sms_template_code)"
            " SELECT case_id, purpose, channel, recipient_id, recipient, template, text, variables::jsonb,"
            " provider, status, last_error, error_code, not_before, coalesce(not_before, now()), sms_sign,"
            " sms_template_code"
            " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
            " $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::timestamptz[],"
            " $14::text[], $15::text[])"
            " AS u(case_id, purpose, channel, recipient_id, recipient, template, text, variables, provider,"
            " status, last_error, error_code, not_before, sms_sign, sms_template_code)"
            f" ON CONFLICT {target} DO NOTHING",
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
            [r.not_before for r in rows],
            [r.sms_sign for r in rows],
            [r.sms_template_code for r in rows],
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


def row_json(row: _NewRow) -> dict[str, Any]:
    """A rendered row as ``intake_apply_change`` inserts it (migrations/018)."""
    return {
        "case_id": row.case_id, "purpose": row.purpose, "channel": row.channel, "recipient_id": row.recipient_id,
        "recipient": row.recipient, "template": row.template, "text": row.text, "variables": row.variables,
        "provider": row.provider, "status": row.status, "last_error": row.last_error, "error_code": row.error_code,
        "not_before": row.not_before.isoformat() if row.not_before else None,
        "sms_sign": row.sms_sign, "sms_template_code": row.sms_template_code,
    }
