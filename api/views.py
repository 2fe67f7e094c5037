"""Build the API's answers from projection rows and workflow states."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from pydantic import ValidationError

from api.schemas import (
    AssignmentOut,
    BranchBrief,
    CaseSummary,
    CaseView,
    ClientOut,
    StaffBrief,
    TaskCase,
    TaskItem,
)
from domain.enums import Level, Role, StepName
from domain.models import CaseEvent, CaseState, StaffRef
from domain.phone import mask_phone
from domain.tracking import stage_label, step_label

log = logging.getLogger("intake.api")

StateSource = Literal["workflow", "projection", "created"]

ADDRESS_MASK = "（仅案例负责人可见）"


def mask_address(address: str | None) -> str | None:
    """The address replaced by a note that it is hidden (None stays None)."""
    return ADDRESS_MASK if address else address


def staff_ref(value: Any) -> StaffRef | None:
    """A StaffRef from the jsonb the detail query builds (None when absent)."""
    if not value:
        return None
    return StaffRef(
        id=value["id"],
        name=value["name"],
        role=Role(value["role"]),
        level=Level(value["level"]) if value.get("level") else None,
    )


def state_from_row(row: asyncpg.Record) -> CaseState | None:
    """The last state the workflow reported (projection), if it parses."""
    raw = row["state"]
    if not raw:
        return None
    try:
        return CaseState.model_validate(raw)
    except ValidationError as exc:  # written by another version of the model: show the row instead
        log.warning("case %s: projection state does not parse: %s", row["id"], exc.error_count())
        return None


def _events_from_rows(rows: list[asyncpg.Record]) -> list[CaseEvent]:
    out: list[CaseEvent] = []
    for r in rows:
        try:
            step = StepName(r["step"]) if r["step"] else None
        except ValueError:
            step = None
        out.append(
            CaseEvent(
                seq=r["seq"],
                at=r["at"],
                kind=r["kind"],
                text=r["text"],
                actor_id=r["actor_id"],
                step=step,
                data=r["data"] if isinstance(r["data"], dict) else {},
            )
        )
    return out


def timeline(rows: list[asyncpg.Record], state: CaseState | None) -> list[CaseEvent]:
    """The audit table's events, then any newer ones the state already knows."""
    events = _events_from_rows(rows)
    last = events[-1].seq if events else 0
    if state is not None:
        events += [e for e in state.events if e.seq > last]
    return events


def case_view(
    row: asyncpg.Record,
    state: CaseState | None,
    events: list[CaseEvent],
    source: StateSource,
    *,
    now: datetime | None = None,
    assignments: list[asyncpg.Record] | None = None,
    contact: bool,
) -> CaseView:
    """The case as the API shows it: client data from the row, the rest from the state when known.

    `contact`: the caller may see the client's full phone and address (domain.permissions.may_see_contact);
    otherwise both are masked.
    """
    now = now or datetime.now(UTC)
    client = ClientOut(
        name=row["client_name"],
        phone=row["client_phone"] if contact else mask_phone(row["client_phone"]),
        contact_visible=contact,
        gender=row["client_gender"],
        age_range=row["client_age_range"],
        compound=row["compound"],
        address=row["address"] if contact else mask_address(row["address"]),
        area_m2=float(row["area_m2"]) if row["area_m2"] is not None else None,
        budget=row["budget"],
    )
    common: dict[str, Any] = {
        "id": row["id"],
        "workflow_id": row["workflow_id"],
        "source": row["source"],
        "scenario": row["scenario"],
        "client": client,
        "notes": row["notes"],
        "created_at": row["created_at"],
        "created_by": staff_ref(row["created_by_ref"]),
        "previous_case_id": row.get("previous_case_id"),
        "returning": row.get("returning_reason"),
        "timeline": events,
        "state_source": source,
        "assignments": [
            AssignmentOut(
                role=a["role"],
                staff=StaffBrief(id=a["staff_id"], name=a["staff_name"]),
                kind=a["kind"],
                suggested_id=a["suggested_id"],
                decided_by=StaffBrief(id=a["decided_by"], name=a["decided_by_name"]),
                reason=a["reason"],
                at=a["at"],
            )
            for a in assignments or []
        ],
    }
    common["branch"] = _branch(row, state)
    if state is None:
        return CaseView(
            **common,
            stage=row["stage"],
            stage_label=stage_label(row["stage"]),
            status=row["status"],
            outcome=row["outcome"],
            outcome_reason=row["outcome_reason"],
            closed_at=row["closed_at"],
            received_by=staff_ref(row["received_by_ref"]),
            manager=staff_ref(row["manager_ref"]),
            designer=staff_ref(row["designer_ref"]),
            assistant=staff_ref(row["assistant_ref"]),
            overdue=row["overdue"],
            escalation_level=row["escalation_level"],
            step_due_at=row["step_due_at"],
            version=row["version"],
        )
    # A step past its due time is overdue now, even if the workflow's timer has not reported it yet.
    open_steps = [
        s.model_copy(update={"overdue": True}) if (not s.overdue and s.due_at and s.due_at < now) else s
        for s in state.open_steps
    ]
    return CaseView(
        **common,
        stage=state.stage,
        stage_label=stage_label(state.stage),
        status=state.status.value,
        outcome=state.outcome,
        outcome_reason=state.outcome_reason,
        closed_at=state.closed_at,
        received_by=state.received_by,
        manager=state.manager,
        director=state.director,
        designer=state.designer,
        assistant=state.assistant,
        designer_level=state.designer_level,
        car=state.car,
        reception=state.reception,
        site_musts=state.site_musts,
        recordings=state.recordings,
        overdue=any(s.overdue for s in open_steps),
        escalation_level=state.escalation_level,
        step_due_at=state.step_due_at,
        meetings=state.meetings,
        open_steps=open_steps,
        done_steps=state.done_steps,
        case_notes=state.notes,
        version=state.version,
    )


def _branch(row: asyncpg.Record, state: CaseState | None) -> BranchBrief | None:
    """The case's branch: the state's (a transfer's answer names the new one), named as the row names it."""
    branch_id = row.get("branch_id")
    if state is not None and state.branch_id != branch_id:
        return BranchBrief(id=state.branch_id, code=state.branch, name=state.branch)
    if branch_id is None or row.get("branch_code") is None:
        return None
    return BranchBrief(id=branch_id, code=row["branch_code"], name=row["branch_name"])


def _brief(staff_id: int | None, name: str | None) -> StaffBrief | None:
    return StaffBrief(id=staff_id, name=name or "") if staff_id is not None else None


def case_summary(r: asyncpg.Record, *, contact: bool) -> CaseSummary:
    """One list line from a list row (`contact`: the full phone, else masked)."""
    return CaseSummary(
        id=r["id"],
        workflow_id=r["workflow_id"],
        source=r["source"],
        scenario=r["scenario"],
        stage=r["stage"],
        stage_label=stage_label(r["stage"]),
        status=r["status"],
        outcome=r["outcome"],
        client_name=r["client_name"],
        client_phone=r["client_phone"] if contact else mask_phone(r["client_phone"]),
        contact_visible=contact,
        compound=r["compound"],
        budget=r["budget"],
        manager=_brief(r["manager_id"], r["manager_name"]),
        designer=_brief(r["designer_id"], r["designer_name"]),
        assistant=_brief(r["assistant_id"], r["assistant_name"]),
        overdue=r["overdue"],
        escalation_level=r["escalation_level"],
        step_due_at=r["step_due_at"],
        meeting_at=r["meeting_at"],
        created_at=r["created_at"],
        branch_id=r.get("branch_id"),
    )


def task_item(r: asyncpg.Record, now: datetime, *, contact: bool) -> TaskItem:
    """One task line from a task row (`contact`: the client's full phone, else masked)."""
    step = StepName(r["step"])
    label = step_label(step, r["attempt"])
    return TaskItem(
        case_id=r["case_id"],
        step_key=r["step_key"],
        step=step,
        label=label,
        owner_role=Role(r["owner_role"]),
        owner_id=r["owner_id"],
        attempt=r["attempt"],
        opened_at=r["opened_at"],
        due_at=r["due_at"],
        overdue=bool(r["overdue"] or (r["due_at"] is not None and r["due_at"] < now)),
        escalation_level=r["escalation_level"],
        case=TaskCase(
            id=r["case_id"],
            stage=r["stage"],
            source=r["source"],
            scenario=r["scenario"],
            client_name=r["client_name"],
            client_phone=r["client_phone"] if contact else mask_phone(r["client_phone"]),
            contact_visible=contact,
            compound=r["compound"],
        ),
    )
