"""The case projection: what a decision changed, written to PostgreSQL for lists, tasks and reports.

The workflow is the source of truth; `cases`, `case_steps` and `case_events` are a read model, and the
outbox and the allocation ledger are written in the same transaction. Two writers apply the same
:class:`CaseChange`: the API, right after an update answered (so a 200 is already visible in every
list), and the workflow a little later or at once after a timer (so nothing is lost when the API
dies in between). Changes can therefore arrive twice or out of order; every write is idempotent:

* the case row and the open steps only move forward (guarded by the change's `version`);
* finished steps, events (by seq), ledger rows (by event key) and outbox rows (by purpose) are
  inserted once and never changed by an older change.

One round trip (SPEC §10). All of it is one statement, ``intake_apply_change`` (migrations/018), atomic
by itself (no BEGIN/COMMIT needed) and equally at home inside a caller's transaction. Messages are
rendered here, before the call, from the inputs the database will hold after the change (the case's
client and team, staff names, phones and schedules, the designer's details); the function checks those
inputs under the case's row lock and, when they are not what the messages were rendered from, writes
nothing and answers with the right ones: the writer renders again and calls again. The API passes the
case row it read for the permission check, so its guess is usually right and a step costs one round
trip; the workflow's activity, which knows nothing beforehand, costs two when there are messages.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import asyncpg
from pydantic import ValidationError

from domain import engine
from domain.models import CaseChange, CaseState, NotifyStaff, SendSms
from store.outbox import Needs, OutboxWriter, row_json

log = logging.getLogger(__name__)

# Attempts to find the inputs still standing when the write comes (each a round trip); only concurrent
# changes of the same case or its staff make a second one miss.
MAX_ATTEMPTS = 4


class MessageQueue(Protocol):
    """Where decided messages go (the outbox), inside the caller's transaction."""

    async def enqueue(
        self, conn: asyncpg.Connection, *, sms: list[SendSms], notices: list[NotifyStaff]
    ) -> None: ...


class CaseMissing(Exception):
    """The change names a case that has no row."""


@dataclass(frozen=True)
class Written:
    """What a write answered: the projection's full state and, when asked, what the API's answer shows."""

    state: CaseState
    events: list[dict[str, Any]] | None = None  # the whole timeline, oldest first (case_events' columns)
    assignments: list[dict[str, Any]] | None = None  # ledger and registrations (queries.case_assignments' columns)


class ProjectionWriter:
    """Applies CaseChanges to the projection, the ledger and the outbox (one statement each)."""

    def __init__(self, outbox: MessageQueue) -> None:
        self._outbox = outbox
        # Staff rows as the database last answered them (intake_outbox_staff), to guess the inputs of the
        # next message; a wrong guess costs one round trip, never a wrong message.
        self._staff_by_id: dict[int, dict[str, Any]] = {}
        self._staff_by_role: dict[str, dict[str, Any]] = {}
        # Branches as last answered (intake_outbox_branch), by id: the SMS name the case's branch.
        self._branches: dict[int, dict[str, Any]] = {}

    async def apply(self, conn: asyncpg.Connection, change: CaseChange, *, confirm: bool = True) -> CaseState:
        """Write one change (inside the caller's transaction, if any); returns the projection's full state.

        `confirm` marks a case still `starting` as open (its workflow is known to run); the API's
        first write at creation passes False.
        """
        return (await self.write(conn, change, confirm=confirm)).state

    async def write(
        self,
        conn: asyncpg.Connection,
        change: CaseChange,
        *,
        confirm: bool = True,
        known: Any = None,
        answer: bool = False,
        phone_read: dict[str, Any] | None = None,
    ) -> Written:
        """:meth:`apply`, with what the API has and wants: `known`, the case row it read before the update
        (store.queries.case_row), to render messages without asking first; `answer`, the timeline and
        assignments back; `phone_read`, a full-phone read to record (staff_id, route, request_id)."""
        if change.effects.transfers:
            # A transfer (rare) writes its ledger row and the case's branch with the change, atomically.
            async with conn.transaction():
                written = await self._write(conn, change, confirm=confirm, known=known, answer=answer,
                                            phone_read=phone_read)
                await _write_transfers(conn, change)
                return written
        return await self._write(conn, change, confirm=confirm, known=known, answer=answer, phone_read=phone_read)

    async def _write(
        self, conn: asyncpg.Connection, change: CaseChange, *, confirm: bool, known: Any, answer: bool,
        phone_read: dict[str, Any] | None,
    ) -> Written:
        p = _payload(change, confirm=confirm, answer=answer, phone_read=phone_read)
        sms, notices = change.effects.sms, change.effects.notices
        messages: list[SendSms | NotifyStaff] = [*sms, *notices]
        outbox = self._outbox
        rendered_here = isinstance(outbox, OutboxWriter) and all(m.case_id == change.case_id for m in messages)
        if messages and rendered_here:
            assert isinstance(outbox, OutboxWriter)
            out = await self._write_rendered(conn, p, change, outbox, known, confirm=confirm)
        elif messages:
            # A queue of another kind records them itself, in the same transaction as the projection.
            async with conn.transaction():
                out = await _call(conn, p)
                if not out.get("missing"):
                    await outbox.enqueue(conn, sms=sms, notices=notices)
        else:
            out = await _call(conn, p)
        if out.get("missing"):
            raise CaseMissing(change.case_id)
        try:
            state = CaseState.model_validate(out["state"])
        except ValidationError:
            state = await self._rebuild(conn, change, out)
        return Written(state=state, events=out.get("events"), assignments=out.get("assignments"))

    async def enqueue_messages(
        self, conn: asyncpg.Connection, *, sms: list[SendSms], notices: list[NotifyStaff]
    ) -> None:
        """Messages decided outside a change (an upgrade of old cases), into the outbox."""
        if sms or notices:
            await self._outbox.enqueue(conn, sms=sms, notices=notices)

    async def _write_rendered(
        self, conn: asyncpg.Connection, p: dict[str, Any], change: CaseChange, outbox: OutboxWriter, known: Any,
        *, confirm: bool,
    ) -> dict[str, Any]:
        sms, notices = change.effects.sms, change.effects.notices
        messages: list[SendSms | NotifyStaff] = [*sms, *notices]
        need = outbox.needs(sms, notices)
        now = datetime.now(UTC)
        inputs = self._guess(known, change, need, confirm=confirm) if known is not None else None
        for _ in range(MAX_ATTEMPTS):
            rows = []
            if inputs is not None:
                details = {change.case_id: {**inputs["case"], **inputs["details"]}} if inputs.get("details") else {}
                rows = outbox.render(messages, cases={change.case_id: inputs["case"]}, staff=inputs["staff"],
                                     details=details, now=now)
            p["outbox"] = {"staff_ids": need.staff_ids, "roles": need.roles, "details": need.details,
                           "expect": inputs, "rows": [row_json(r) for r in rows]}
            out = await _call(conn, p)
            if not out.get("stale"):
                return out
            inputs = out["inputs"]
            self._remember(inputs["staff"], inputs["case"].get("branch"))
        raise RuntimeError(f"case {change.case_id}: the messages' inputs kept changing; nothing written")

    def _remember(self, staff: list[dict[str, Any]], branch: dict[str, Any] | None = None) -> None:
        if branch is not None:
            self._branches[branch["id"]] = branch
        for r in staff:
            if r["for_role"] is None:
                self._staff_by_id[r["id"]] = r
            else:
                self._staff_by_role[r["for_role"]] = r

    def _guess(self, row: Any, change: CaseChange, need: Needs, *, confirm: bool) -> dict[str, Any] | None:
        """The messages' inputs as they should stand after `change`, from the case row read before it
        (the function's own rules, mirrored); None when the staff they need were never seen."""
        named = [self._staff_by_id.get(i) for i in need.staff_ids]
        by_role = [self._staff_by_role.get(r) for r in need.roles]
        if any(r is None for r in named) or any(r is None for r in by_role):
            return None
        present = [r for r in named if r is not None] + [r for r in by_role if r is not None]
        ids = {r["id"] for r in present if r["for_role"] is None}
        deputy_ids = {r["deputy_id"] for r in present if r["deputy_id"] is not None} - ids - {
            r["id"] for r in present if r["for_role"] is not None}
        deputies = [self._staff_by_id.get(i) for i in sorted(deputy_ids)]
        if any(d is None for d in deputies):
            return None
        branch = self._branches.get(row["branch_id"]) if row.get("branch_id") is not None else None
        if branch is None:
            return None
        staff = sorted([*present, *(d for d in deputies if d is not None)],
                       key=lambda r: (r["for_role"] or "", r["id"]))
        try:
            stored = CaseState.model_validate(row["state"]) if row["state"] else None
        except ValidationError:
            return None
        merged = engine.merge(stored, change)
        newer = change.version > row["version"]
        status = merged.status.value
        if row["status"] == "starting" and not confirm:
            status = "starting"
        rewrite = not newer and bool(change.finished or any(e.kind == "note" for e in change.events)
                                     or (row["status"] == "starting" and confirm))
        post_status = status if newer or (rewrite and row["status"] == "starting") else row["status"]

        def member(ref: Any, column: str) -> int | None:
            return (ref.id if ref is not None else None) if newer else row[column]

        case = {
            "id": row["id"], "client_name": row["client_name"], "client_gender": row["client_gender"],
            "client_phone": row["client_phone"], "created_by": row["created_by"], "received_by": row["received_by"],
            "manager_id": member(merged.manager, "manager_id"), "designer_id": member(merged.designer, "designer_id"),
            "assistant_id": member(merged.assistant, "assistant_id"), "status": post_status, "policy": row["policy"],
            "branch": branch,
        }
        details = None
        if need.details:
            meeting, measure = merged.meeting("meeting"), merged.meeting("measure")
            callback = [e for e in change.events if e.step is not None and e.step.value == "callback"
                        and e.kind == "step_done"]
            area = row["area_m2"]
            details = {
                "compound": row["compound"], "area_m2": float(area) if isinstance(area, Decimal) else area,
                "budget": row["budget"], "tz": ((row["policy"] or {}).get("calendar") or {}).get("timezone"),
                "meeting": meeting.model_dump(mode="json") if meeting else None,
                "measure": measure.model_dump(mode="json") if measure else None,
                "designer_level": merged.designer_level.value if merged.designer_level else None, "car": merged.car,
                "callback_notes": callback[-1].data.get("notes") if callback else row["callback_notes"],
            }
        return {"case": case, "staff": staff, "details": details}

    async def _rebuild(self, conn: asyncpg.Connection, change: CaseChange, out: dict[str, Any]) -> CaseState:
        """The stored state was written by an older shape of the model: rebuilt from this change alone
        (as engine.merge does with nothing stored), and stored so if the write stored the other."""
        merged = engine.merge(None, change)
        if out.get("wrote_state"):
            await conn.execute(
                "UPDATE cases SET state = $2::text::jsonb WHERE id = $1 AND state = $3::text::jsonb",
                change.case_id, merged.model_dump_json(), json.dumps(out["state"], ensure_ascii=False),
            )
        return merged


def _payload(change: CaseChange, *, confirm: bool, answer: bool, phone_read: dict[str, Any] | None) -> dict[str, Any]:
    """The change as ``intake_apply_change`` takes it: columns already converted, JSON throughout."""
    head = change.head
    return {
        "case_id": change.case_id,
        "version": change.version,
        "confirm": confirm,
        "answer": answer,
        "phone_read": phone_read,
        "head": head.model_dump(mode="json"),
        "finished_json": [d.model_dump(mode="json") for d in change.finished],
        "note_events": [e.model_dump(mode="json") for e in change.events if e.kind == "note"],
        "open_steps": [
            {"step_key": s.key, "step": s.step.value, "attempt": s.attempt, "owner_role": s.owner_role.value,
             "owner_id": s.owner.id if s.owner else None, "opened_at": _iso(s.opened_at), "due_at": _iso(s.due_at),
             "overdue": s.overdue, "escalation_level": s.escalation_level}
            for s in head.open_steps
        ],
        "finished": [
            {"step_key": s.key, "step": s.step.value, "attempt": s.attempt, "owner_role": s.owner_role.value,
             "result": s.result, "opened_at": _iso(s.opened_at), "due_at": _iso(s.due_at),
             "completed_at": _iso(s.completed_at), "completed_by": s.completed_by, "overdue": not s.on_time,
             "escalation_level": s.escalation_level}
            for s in change.finished
        ],
        "events": [e.model_dump(mode="json") for e in change.events],
        "assignments": [a.model_dump(mode="json") for a in change.effects.assignments],
    }


async def _write_transfers(conn: asyncpg.Connection, change: CaseChange) -> None:
    """The transfers ledger (case_transfers, once per event key) and the case row's branch, taken from the
    newest state the projection holds (a change written out of order never moves the case back)."""
    await conn.execute(
        "WITH t AS (INSERT INTO case_transfers (case_id, event_key, from_branch_id, to_branch_id, decided_by, reason)"
        " SELECT case_id, event_key, from_branch_id, to_branch_id, decided_by, reason"
        " FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[])"
        " AS u(case_id, event_key, from_branch_id, to_branch_id, decided_by, reason)"
        " ON CONFLICT (case_id, event_key) DO NOTHING RETURNING 1)"
        " UPDATE cases SET branch_id = (state->>'branch_id')::bigint"
        " WHERE id = $1 AND state ? 'branch_id' AND branch_id IS DISTINCT FROM (state->>'branch_id')::bigint",
        change.case_id,
        [t.case_id for t in change.effects.transfers],
        [t.event_key for t in change.effects.transfers],
        [t.from_branch_id for t in change.effects.transfers],
        [t.to_branch_id for t in change.effects.transfers],
        [t.decided_by for t in change.effects.transfers],
        [t.reason for t in change.effects.transfers],
    )


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


async def _call(conn: asyncpg.Connection, p: dict[str, Any]) -> dict[str, Any]:
    # JSON as text both ways: the same on a connection with or without a jsonb codec.
    raw = await conn.fetchval("SELECT intake_apply_change($1::text::jsonb)::text", json.dumps(p, ensure_ascii=False))
    out: dict[str, Any] = json.loads(raw)
    return out
