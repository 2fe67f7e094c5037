"""The one-statement write (migration 018, `intake_apply_change`) against the engine's own merge.

The SQL function merges a change into the stored case the way `domain.engine.merge` does. Random cases
driven through the engine (steps, ticks, notes, reassignments), their changes written in a shuffled order
with repeats: the state PostgreSQL keeps must be the engine's merge of the same changes, and the steps,
events and outbox rows each written once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from domain import engine
from domain.enums import Role, Scenario, Source, StepName
from domain.models import Actor, AddNote, CaseChange, CaseState, CompleteStep, IntakeInput, Reassign, StaffRef
from domain.policy import fast_policy
from domain.templates import Company
from store.outbox import OutboxWriter
from store.projection import ProjectionWriter
from tests.activities.conftest import MakeCase, MakeStaff

T0 = datetime(2030, 3, 4, 1, 0, tzinfo=UTC)
SOURCES = {Scenario.remote: Source.marketing, Scenario.office_visit: Source.online,
           Scenario.site_office: Source.site_office, Scenario.walk_in: Source.walk_in}


def _payload(name: StepName, now: datetime, rnd: random.Random, designer2: StaffRef) -> dict[str, Any]:
    later = (now + timedelta(minutes=rnd.randint(1, 600))).isoformat()
    musts = {"true_needs": "儿童房", "measure_agreed": True, "visited_site": True, "visited_material_store": True,
             "seen_off": True}
    options: dict[StepName, list[dict[str, Any]]] = {
        StepName.reception_review: [{"report": "客户想年底入住"}, {"report": "好", "corrections": "先递名片"}],
        StepName.callback: [{"reached": False}, {"reached": True, "meeting_at": later, "meeting_kind": "measure"},
                            {"reached": True, "meeting_at": later, "meeting_kind": "office_visit"}],
        StepName.assign_designer: [{}, {"designer_id": designer2.id, "reason": "客户点名"}],
        StepName.assign_assistant: [{}],
        StepName.contact: [{"meeting_at": later, "meeting_kind": "measure"}],
        StepName.arrival: [{}, {"gum": True, "recorder": True, "greeted_at_door": True}],
        StepName.first_meeting: [{**musts, "measure_agreed": False, "measure_reason": "客户要商量"},
                                 {**musts, "measure_at": later}],
        StepName.measure: [{"result": "done"}, {"result": "no_show"}],
        StepName.debrief: [{"findings": "先问需求"}, {"findings": "好", "designer_corrections": "少讲案例"}],
        StepName.acknowledge: [{}, {"note": "已改正"}],
        StepName.outcome: [{"outcome": "signed"}, {"outcome": "lost", "reason": "预算不够"}],
        StepName.lapse_review: [{"decision": "extend", "reason": "客户出差", "until": later}],
    }
    return rnd.choice(options[name])


def _drive(rnd: random.Random, case_id: int, cast: dict[str, StaffRef], version: int) -> list[CaseChange]:
    policy = fast_policy()
    scenario = rnd.choice([Scenario.remote, Scenario.office_visit, Scenario.walk_in])
    extra: dict[str, Any] = {"meeting_at": T0 + timedelta(hours=5)} if scenario == Scenario.office_visit else {}
    d = engine.start(IntakeInput(case_id=case_id, source=SOURCES[scenario], scenario=scenario, created_at=T0,
                                 created_by=cast["consultant"], manager=cast["manager"], director=cast["director"],
                                 policy=policy, engine_version=version, **extra))
    s, now, changes = d.state, T0, [d.change]
    owners = {Role.manager: cast["manager"], Role.assistant_lead: cast["lead"]}
    for _ in range(rnd.randint(3, 25)):
        now += timedelta(seconds=rnd.randint(0, 40))
        kind = rnd.choice(["step", "step", "step", "tick", "note", "reassign"])
        cmd: Any = None
        if kind == "tick":
            d = engine.tick(s, now=now, policy=policy)
        else:
            if kind == "step" and s.open_steps:
                o = rnd.choice(s.open_steps)
                who = o.owner if o.step == StepName.acknowledge and o.owner else \
                    owners.get(o.owner_role, s.designer or cast["designer"])
                cmd = CompleteStep(actor=Actor(staff_id=who.id, role=who.role, name=who.name), step=o.step,
                                   payload=_payload(o.step, now, rnd, cast["designer2"]),
                                   staff=[cast["designer2"]], first_suggestion=cast["designer"]
                                   if o.step == StepName.assign_designer else cast["assistant"])
            elif kind == "reassign" and s.designer is not None:
                m = cast["manager"]
                cmd = Reassign(actor=Actor(staff_id=m.id, role=m.role, name=m.name), role="designer",
                               staff=rnd.choice([cast["designer"], cast["designer2"]]), reason="客户要求")
            else:
                m = cast["manager"]
                cmd = AddNote(actor=Actor(staff_id=m.id, role=m.role, name=m.name), text="备注 13912345678")
            try:
                d = engine.decide(s, cmd, now=now, policy=policy)
            except engine.Rejected:
                continue
        s = d.state
        if d.change.version > changes[-1].version or d.change.finished or d.change.events:
            changes.append(d.change)
        if s.status.value == "closed":
            break
    return changes


@pytest.mark.parametrize("seed", range(12))
async def test_the_database_merges_changes_as_the_engine_does(
    pool: asyncpg.Pool, make_staff: MakeStaff, make_case: MakeCase, seed: int
) -> None:
    rnd = random.Random(seed)
    cast = {
        "manager": (await make_staff("陈建国", Role.manager)).ref(),
        "director": (await make_staff("林总", Role.director)).ref(),
        "consultant": (await make_staff("孙丽", Role.consultant)).ref(),
        "designer": (await make_staff("周一鸣", Role.designer)).ref(),
        "designer2": (await make_staff("吴佳", Role.designer)).ref(),
        "assistant": (await make_staff("赵敏", Role.assistant)).ref(),
        "lead": (await make_staff("刘敏", Role.assistant_lead)).ref(),
    }
    case_id = await make_case()
    changes = _drive(rnd, case_id, cast, version=rnd.choice([1, 2]))
    order = changes + rnd.sample(changes, k=min(len(changes), rnd.randint(0, 5)))  # some written twice
    rnd.shuffle(order)
    writer = ProjectionWriter(OutboxWriter(Company(name="城市人家装饰公司", short_name="城市人家"),
                                           sms_provider="outbox", staff_channel="log"))
    expected: CaseState | None = None
    for change in order:
        async with pool.acquire() as conn, conn.transaction():
            await writer.apply(conn, change)
        expected = engine.merge(expected, change)
    assert expected is not None
    row = await pool.fetchrow("SELECT state, version, stage, designer_id FROM cases WHERE id = $1", case_id)
    stored = CaseState.model_validate(row["state"])
    assert stored.model_dump(mode="json") == expected.model_dump(mode="json")
    assert (row["version"], row["stage"]) == (expected.version, expected.stage)
    assert row["designer_id"] == (expected.designer.id if expected.designer else None)
    # every event and every decided message once
    events = await pool.fetch("SELECT seq FROM case_events WHERE case_id = $1", case_id)
    assert sorted(r["seq"] for r in events) == sorted({e.seq for c in changes for e in c.events})
    purposes = await pool.fetch("SELECT purpose FROM outbox WHERE case_id = $1", case_id)
    decided = {m.purpose for c in changes for m in c.effects.sms} | {n.purpose for c in changes for n in c.effects.notices}
    assert sorted(r["purpose"] for r in purposes) == sorted(decided)
    open_rows = await pool.fetch("SELECT step_key FROM case_steps WHERE case_id = $1 AND status = 'open'", case_id)
    assert {r["step_key"] for r in open_rows} == {o.key for o in expected.open_steps}
