"""What insight reads of the projection (SPEC §16): each case's steps, musts, checklist, corrections, escalations.

Three queries over the cases created in a period (cases_created_idx, then the steps' and events' primary
keys), folded into :class:`domain.insight.CaseRecord` values; the figures are computed in domain/insight.py.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg

from domain.enums import StepName
from domain.insight import CaseRecord, Correction, Escalation, StepRecord

_CASES = (
    "SELECT c.id, c.scenario, c.outcome, c.status, c.created_at, c.manager_id, c.designer_id, c.assistant_id"
    " FROM cases c WHERE c.created_at >= $1 AND c.created_at < $2 AND c.status <> 'starting'"
    " AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))"  # a report of some branches
)


async def case_records(
    conn: asyncpg.Pool | asyncpg.Connection, *, period_from: datetime, period_to: datetime,
    branches: list[int] | None = None,
) -> list[CaseRecord]:
    """Every case created in [period_from, period_to) (of `branches`, None: every branch) with what insight
    needs of it, oldest first."""
    cases = await conn.fetch(_CASES + " ORDER BY c.created_at, c.id", period_from, period_to, branches)
    if not cases:
        return []
    ids = [r["id"] for r in cases]
    steps = await conn.fetch(
        "SELECT case_id, step_key, step, owner_id, status, result, opened_at, due_at, completed_at, completed_by,"
        " overdue, escalation_level FROM case_steps WHERE case_id = ANY($1::bigint[])",
        ids,
    )
    events = await conn.fetch(
        "SELECT case_id, seq, at, kind, step, actor_id, text, data FROM case_events"
        " WHERE case_id = ANY($1::bigint[])"
        " AND (kind IN ('arrived', 'correction', 'escalation')"
        "      OR (kind = 'step_done' AND step IN ('arrival', 'first_meeting')))"
        " ORDER BY case_id, seq",
        ids,
    )
    by_case_steps: dict[int, list[StepRecord]] = defaultdict(list)
    owner_of: dict[tuple[int, str], tuple[int | None, str]] = {}
    for s in steps:
        try:
            name = StepName(s["step"])
        except ValueError:
            continue
        by_case_steps[s["case_id"]].append(StepRecord(
            key=s["step_key"], step=name, owner_id=s["owner_id"], status=s["status"], result=s["result"],
            opened_at=s["opened_at"], due_at=s["due_at"], completed_at=s["completed_at"],
            completed_by=s["completed_by"], on_time=not s["overdue"], escalation_level=s["escalation_level"],
        ))
        owner_of[(s["case_id"], s["step_key"])] = (s["owner_id"], s["step"])
    by_case_events: dict[int, list[asyncpg.Record]] = defaultdict(list)
    for e in events:
        by_case_events[e["case_id"]].append(e)
    return [_record(c, by_case_steps[c["id"]], by_case_events[c["id"]], owner_of) for c in cases]


def _record(
    c: asyncpg.Record,
    steps: list[StepRecord],
    events: list[asyncpg.Record],
    owner_of: dict[tuple[int, str], tuple[int | None, str]],
) -> CaseRecord:
    fields: dict[str, Any] = {}
    corrections: list[Correction] = []
    escalations: list[Escalation] = []
    for e in events:
        data = e["data"] or {}
        if e["kind"] == "step_done" and e["step"] == "first_meeting" and "first_meeting" not in fields:
            fields.update(first_meeting=data, first_meeting_by=e["actor_id"], first_meeting_at=e["at"])
        elif e["kind"] == "step_done" and e["step"] == "arrival" and "reception" not in fields:
            fields.update(reception=data, reception_by=e["actor_id"], reception_at=e["at"])
        elif e["kind"] == "arrived" and isinstance(data.get("reception"), dict) and "reception" not in fields:
            # A walk-in: the checklist was recorded at creation; receiving the client is the manager's (seed B a).
            fields.update(reception=data["reception"], reception_by=c["manager_id"], reception_at=e["at"])
        elif e["kind"] == "correction" and data.get("staff_id"):
            # "经理纠正设计师周一鸣：<the correction>": the text after the first full-width colon.
            text = e["text"].split("：", 1)[1] if "：" in e["text"] else e["text"]
            corrections.append(Correction(staff_id=int(data["staff_id"]), at=e["at"], text=text,
                                          ack_key=data.get("key")))
        elif e["kind"] == "escalation" and e["step"]:
            key = data.get("key")
            owner, step = owner_of.get((c["id"], key), (None, e["step"])) if key else (None, e["step"])
            if owner is None:
                # An unowned step escalates against whoever holds that role on the case.
                owner = {"callback": c["manager_id"], "reception_review": c["manager_id"],
                         "assign_designer": c["manager_id"], "arrival": c["manager_id"],
                         "debrief": c["manager_id"], "outcome": c["manager_id"],
                         "contact": c["designer_id"], "first_meeting": c["designer_id"],
                         "measure": c["designer_id"]}.get(step)
            try:
                name = StepName(step)
            except ValueError:
                continue
            escalations.append(Escalation(at=e["at"], step=name, owner_id=owner, level=int(data.get("level") or 0)))
    return CaseRecord(
        case_id=c["id"], scenario=c["scenario"], outcome=c["outcome"], created_at=c["created_at"],
        manager_id=c["manager_id"], designer_id=c["designer_id"], assistant_id=c["assistant_id"],
        steps=tuple(steps), corrections=tuple(corrections), escalations=tuple(escalations), **fields,
    )
