"""What a what-if replays, read from the projection (SPEC §16): each case's start, its staff actions with
their real times and payloads, its ledger and escalations; the designers; every other case's ledger.

Sources: ``cases.workflow_input`` (what the case started with, its policy included), the finished steps
with their payloads and completion times (the projection's ``state.done_steps``, as written to
``case_steps``), ``case_events`` (reassignments, reschedules, a close without the outcome step, a
measure no-show, escalations) and ``allocation_ledger`` (who got the case, and whether the manager
took the first suggestion).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from domain.enums import Level, Role, StaffStatus, StepName
from domain.models import Actor, CloseCase, CompleteStep, IntakeInput, Reassign, Reschedule, StaffRef
from domain.policy import Policy
from domain.whatif import Background, CaseHistory, Designer, Recorded, background_from_ledger
from store.staff import schedule_from_db

# A finished step done by a person (not cancelled at closing, not done by the system) is an action.
_PERSON_RESULTS = ("done", "not_reached")


async def designers(conn: asyncpg.Pool | asyncpg.Connection) -> dict[int, Designer]:
    """Every designer with the facts allocation reads (today's: no staff history is kept)."""
    rows = await conn.fetch(
        "SELECT id, name, level, status, communities, office_schedule, max_open_cases, weight FROM staff"
        " WHERE role = 'designer' ORDER BY id")
    return {
        r["id"]: Designer(
            ref=StaffRef(id=r["id"], name=r["name"], role=Role.designer, level=Level(r["level"])),
            level=Level(r["level"]), status=StaffStatus(r["status"]), communities=tuple(r["communities"] or ()),
            office_schedule=schedule_from_db(r["office_schedule"]), max_open_cases=r["max_open_cases"],
            weight=float(r["weight"]),
        )
        for r in rows
    }


async def _staff_refs(conn: asyncpg.Pool | asyncpg.Connection) -> dict[int, StaffRef]:
    rows = await conn.fetch("SELECT id, name, role, level FROM staff")
    return {r["id"]: StaffRef(id=r["id"], name=r["name"], role=Role(r["role"]),
                              level=Level(r["level"]) if r["level"] else None) for r in rows}


async def histories(
    conn: asyncpg.Pool | asyncpg.Connection, *, period_from: datetime, period_to: datetime
) -> tuple[list[CaseHistory], dict[int, Policy], Background]:
    """The cases created in [period_from, period_to) as history has them, the policy each ran, and the
    allocation facts of every other case."""
    rows = await conn.fetch(
        "SELECT id, workflow_input, policy, state, outcome, closed_at FROM cases"
        " WHERE created_at >= $1 AND created_at < $2 AND status <> 'starting' AND workflow_input IS NOT NULL"
        " ORDER BY created_at, id",
        period_from, period_to,
    )
    ids = [r["id"] for r in rows]
    staff = await _staff_refs(conn)
    events = await conn.fetch(
        "SELECT case_id, seq, at, kind, step, actor_id, data FROM case_events WHERE case_id = ANY($1::bigint[])"
        " AND kind IN ('reassigned', 'rescheduled', 'closed', 'measure_no_show', 'escalation')"
        " ORDER BY case_id, seq", ids)
    ledger = await conn.fetch(
        "SELECT case_id, designer_id, kind, suggested_id, at FROM allocation_ledger ORDER BY case_id, at, id")
    closed = await conn.fetch(
        "SELECT c.id, c.closed_at FROM cases c WHERE c.id IN (SELECT DISTINCT case_id FROM allocation_ledger)")
    by_case_events: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for e in events:
        by_case_events[e["case_id"]].append(e)
    mine = set(ids)
    by_case_ledger: dict[int, list[asyncpg.Record]] = defaultdict(list)
    others: list[tuple[int, int, str, datetime]] = []
    for lr in ledger:
        if lr["case_id"] in mine:
            by_case_ledger[lr["case_id"]].append(lr)
        else:
            others.append((lr["case_id"], lr["designer_id"], lr["kind"], lr["at"]))
    background = background_from_ledger(others, {r["id"]: r["closed_at"] for r in closed})
    out: list[CaseHistory] = []
    policies: dict[int, Policy] = {}
    for r in rows:
        try:
            inp = IntakeInput.model_validate(r["workflow_input"])
        except ValidationError:
            continue  # written by a version this one cannot read
        if r["policy"]:
            policies[r["id"]] = Policy.model_validate(r["policy"])
        out.append(_history(inp, r, by_case_events[r["id"]], by_case_ledger[r["id"]], staff))
    return out, policies, background


def _actor(staff: dict[int, StaffRef], staff_id: int | None) -> Actor | None:
    ref = staff.get(staff_id) if staff_id is not None else None
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name) if ref else None


def _history(inp: IntakeInput, row: asyncpg.Record, events: list[asyncpg.Record], ledger: list[asyncpg.Record],
             staff: dict[int, StaffRef]) -> CaseHistory:
    state: dict[str, Any] = row["state"] or {}
    done = state.get("done_steps") or []
    actions: list[tuple[datetime, int, Recorded]] = []
    # Which ledger rows the manager decided, in order (the first suggestion taken or not).
    assign_rows = iter([lr for lr in ledger if lr["kind"] == "assign"])
    callback_picks = {d["completed_at"] for d in done
                      if d.get("step") == "callback" and (d.get("payload") or {}).get("designer_id")}
    outcome_times = {d["completed_at"] for d in done if d.get("step") == "outcome"}
    for i, d in enumerate(done):
        step = StepName(d["step"])
        if d.get("result") not in _PERSON_RESULTS or d.get("completed_by") is None:
            continue
        if step == StepName.assign_designer and d["completed_at"] in callback_picks:
            continue  # completed by the callback that named the designer: that callback is the action
        actor = _actor(staff, d["completed_by"])
        if actor is None:
            continue
        payload = dict(d.get("payload") or {})
        at = datetime.fromisoformat(d["completed_at"])
        followed: bool | None = None
        refs: list[StaffRef] = []
        if step == StepName.assign_designer or (step == StepName.callback and payload.get("designer_id")):
            lr = next(assign_rows, None)
            followed = lr is None or lr["suggested_id"] is None or lr["suggested_id"] == lr["designer_id"]
            if payload.get("designer_id") in staff:
                refs = [staff[payload["designer_id"]]]
        if step == StepName.assign_assistant and payload.get("assistant_id") in staff:
            refs = [staff[payload["assistant_id"]]]
        cmd = CompleteStep(actor=actor, step=step, payload=payload, staff=refs,
                           first_suggestion=refs[0] if step == StepName.assign_assistant and refs else None)
        actions.append((at, i, Recorded(at, cmd, followed)))
    for e in events:
        data = e["data"] or {}
        actor = _actor(staff, e["actor_id"])
        at = e["at"]
        seq = 10_000 + e["seq"]
        if actor is None:
            continue
        if e["kind"] == "reassigned" and data.get("staff_id") in staff:
            actions.append((at, seq, Recorded(at, Reassign(actor=actor, role=data["role"], staff=staff[data["staff_id"]],
                                                          reason=data.get("reason") or "—"))))
        elif e["kind"] == "rescheduled":
            actions.append((at, seq, Recorded(at, Reschedule(actor=actor, target=data["which"],
                                                            at=datetime.fromisoformat(data["at"]),
                                                            reason=data.get("reason")))))
        elif e["kind"] == "measure_no_show":
            actions.append((at, seq, Recorded(at, CompleteStep(actor=actor, step=StepName.measure,
                                                              payload={"result": "no_show"}))))
        elif e["kind"] == "closed" and at.isoformat() not in outcome_times and \
                not any(at == datetime.fromisoformat(t) for t in outcome_times):
            actions.append((at, seq, Recorded(at, CloseCase(actor=actor, outcome=data["outcome"],
                                                           reason=data.get("reason")))))
    actions.sort(key=lambda x: (x[0], x[1]))
    escalations = tuple((str((e["data"] or {}).get("key")), int((e["data"] or {}).get("level") or 0))
                        for e in events if e["kind"] == "escalation")
    return CaseHistory(
        inp=inp, actions=tuple(a for _, _, a in actions),
        ledger=tuple((lr["designer_id"], lr["kind"]) for lr in ledger), escalations=escalations,
        outcome=row["outcome"], closed_at=row["closed_at"],
    )


async def run(conn: asyncpg.Pool | asyncpg.Connection, *, policy: Policy, period_from: datetime, period_to: datetime,
              now: datetime) -> dict[str, object]:
    """Read the period's cases and replay them under their own policies and under `policy`; the report."""
    import asyncio

    from domain.whatif import compare, report

    found, policies, background = await histories(conn, period_from=period_from, period_to=period_to)
    people = await designers(conn)

    def replay() -> dict[str, object]:
        comp = compare(found, people, background, policy=policy, horizon=now, recorded_policies=policies)
        return report(comp, found)

    # Hundreds of cases take seconds of CPU: off the event loop.
    return await asyncio.to_thread(replay)
