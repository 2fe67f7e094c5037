"""A seeded history of cases for insight and the what-if (SPEC §16): hundreds of past cases in seconds.

Each case is driven through the production engine's pure functions (``engine.start``, ``decide``,
``tick``) on a simulated clock, the cases interleaved in time order, and every decision is written by
the production :class:`~store.projection.ProjectionWriter`, so the rows are exactly what the workflow
and the API would have written. The designer a manager is offered is the production ranking read
from PostgreSQL at that moment (:class:`~store.allocation.AllocationRepository`), with the ledger row
dated at the decision (production writes it within milliseconds of it). Staff are simulated people:
each manager and designer has habits (how promptly they act, which musts they keep) and the outcome
leans on them, so the habits and outcomes have realistic spreads. Nothing leaves the building: the
messages these decisions would have sent are not put in the outbox.

Every seeded case is closed by the end (no open row without its workflow).
"""

from __future__ import annotations

import heapq
import random
from collections import namedtuple
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg

from domain import engine
from domain.enums import Gender, Level, MeetingKind, Outcome, Role, Scenario, Source, StepName
from domain.models import (
    Actor,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    NotifyStaff,
    OpenStep,
    ReceptionChecklist,
    SendSms,
    StaffRef,
    SuggestAssistants,
)
from domain.policy import Policy
from domain.whatif import advance
from store import cases as case_rows
from store.allocation import AllocationRepository
from store.projection import ProjectionWriter

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
COMPOUNDS = ("翠湖苑", "阳光花园", "滨江一号", "金色家园", "书香门第", "万科城", "碧桂园", "锦绣江南")
SOURCES = {Scenario.remote: (Source.online, Source.marketing), Scenario.office_visit: (Source.marketing, Source.online),
           Scenario.site_office: (Source.site_office,), Scenario.walk_in: (Source.walk_in,)}
# What managers correct after a first meeting, by the must that was missed, and in general.
CORRECTIONS = {
    "measure_agreed": ["没有当场约定量房时间，下次要主动约定", "量房时间要当面定下来，不要等客户回电"],
    "visited_site": ["没有带客户参观在施工地，工地是最好的说服", "要邀请客户参观在施工地，看施工工艺"],
    "visited_material_store": ["没带客户参观材料库，材料讲解不够", "材料库参观要安排，讲清楚材料品牌"],
    "seen_off": ["送客要送到门外，目送客户离开", "送客户到门外的礼节不能省"],
    "general": ["客户真正需求追问不够深入", "报价讲解太快，客户没听明白", "录音里打断客户太多，要多倾听",
                "预算沟通要更早，避免方案偏离", "介绍公司流程不完整", "名片和作品集要提前准备好"],
}


class _NoMessages:
    """History was sent long ago: the decisions' messages are not queued again."""

    async def enqueue(self, conn: asyncpg.Connection, *, sms: list[SendSms], notices: list[NotifyStaff]) -> None:
        return None


# The client's row as store/cases.insert_starting reads it.
_Client = namedtuple("_Client", "name phone gender age_range compound address area_m2 budget")


@dataclass
class _Person:
    """A simulated staff member: who, and their habits (probabilities)."""

    ref: StaffRef
    prompt: float  # acts within the step's time
    musts: dict[str, float] = field(default_factory=dict)
    skill: float = 0.0


@dataclass
class _Case:
    idx: int
    inp: IntakeInput
    rng: random.Random
    state: CaseState | None = None
    now: datetime | None = None
    version: int = 0
    delays: dict[str, timedelta] = field(default_factory=dict)
    score: float = 0.0


# What a seeding wrote: cases, of them signed, the engine's decisions, (first creation, last decision).
class Seeded(NamedTuple):
    cases: int
    signed: int
    decisions: int
    span: tuple[datetime, datetime]


class HistorySeeder:
    """Writes `count` past cases between `start` and `end` into the database, reproducibly for a seed."""

    def __init__(self, pool: asyncpg.Pool, *, policy: Policy, seed: int = 21) -> None:
        self.pool = pool
        self.policy = policy
        self.rng = random.Random(seed)
        self.writer = ProjectionWriter(_NoMessages())
        self.decisions = 0

    async def _staff(self) -> dict[Role, list[StaffRef]]:
        rows = await self.pool.fetch(
            "SELECT id, name, role, level FROM staff WHERE status = 'active' ORDER BY id")
        out: dict[Role, list[StaffRef]] = {}
        for r in rows:
            ref = StaffRef(id=r["id"], name=r["name"], role=Role(r["role"]),
                           level=Level(r["level"]) if r["level"] else None)
            out.setdefault(ref.role, []).append(ref)
        return out

    async def seed(self, *, count: int, start: datetime, end: datetime) -> Seeded:
        """Create and drive `count` cases created between `start` and `end - 30 days` (all closed by `end`)."""
        staff = await self._staff()
        for needed in (Role.manager, Role.designer, Role.assistant, Role.assistant_lead):
            if not staff.get(needed):
                raise ValueError(f"no active {needed.value}: add staff first (intake staff add)")
        self.people = {
            ref.id: _Person(ref, prompt=self.rng.uniform(0.55, 0.92),
                            musts={k: self.rng.uniform(0.35, 0.95) for k in
                                   ("measure_agreed", "visited_site", "visited_material_store", "seen_off",
                                    "gum", "recorder", "greeted_at_door", "business_card", "water")},
                            skill=self.rng.uniform(-0.4, 0.4))
            for refs in staff.values() for ref in refs
        }
        self.staff = staff
        span = max((end - timedelta(days=30)) - start, timedelta(hours=1))
        cases: list[_Case] = []
        for i in range(count):
            created = start + span * self.rng.random()
            cases.append(self._new_case(i, created))
        cases.sort(key=lambda c: c.inp.created_at)
        heap: list[tuple[datetime, int, int, int]] = []
        by_idx = {c.idx: c for c in cases}
        seq = 0
        for c in cases:
            seq += 1
            heapq.heappush(heap, (c.inp.created_at, seq, c.idx, c.version))
        async with self.pool.acquire() as conn:
            while heap:
                at, _, idx, version = heapq.heappop(heap)
                c = by_idx[idx]
                if version != c.version:
                    continue
                if c.state is None:
                    await self._start(conn, c)
                else:
                    await self._move(conn, c, at, end)
                nxt = self._next(c, end)
                if nxt is not None:
                    c.version += 1
                    seq += 1
                    heapq.heappush(heap, (nxt, seq, idx, c.version))
            for c in cases:
                if c.state is not None and c.state.status != "closed":
                    manager = c.state.manager or staff[Role.manager][0]
                    await self._decide(conn, c, CloseCase(actor=_actor(manager), outcome=Outcome.lost,
                                                         reason="历史数据：未跟进到结果"), end - timedelta(minutes=1))
        signed = sum(1 for c in cases if c.state is not None and c.state.outcome == "signed")
        return Seeded(len(cases), signed, self.decisions, (cases[0].inp.created_at if cases else start,
                                                           max((c.now for c in cases if c.now), default=start)))

    # --- a new case ---------------------------------------------------------------------------------

    def _new_case(self, i: int, created: datetime) -> _Case:
        rng = random.Random(self.rng.getrandbits(32))
        scenario = rng.choices(list(Scenario), weights=(35, 30, 20, 15))[0]
        staff = self.staff
        manager = staff[Role.manager][0]
        director = next(iter(staff.get(Role.director, [])), None)
        creator = rng.choice(staff.get(Role.consultant) or staff[Role.manager])
        received: StaffRef | None = None
        if scenario == Scenario.site_office:
            pool = [*staff.get(Role.site_lead, []), *staff[Role.designer], *staff[Role.assistant]]
            received = creator = rng.choice(pool)
        elif scenario == Scenario.walk_in:
            received = creator = manager
        budget = int(rng.choice((60_000, 90_000, 150_000, 200_000, 260_000, 350_000, 500_000, 900_000))
                     * rng.uniform(0.8, 1.2))
        reception = None
        if scenario == Scenario.walk_in:
            p = self.people[manager.id]
            reception = ReceptionChecklist(**{k: rng.random() < p.musts[k] for k in
                                              ("gum", "recorder", "greeted_at_door", "business_card", "water")})
        inp = IntakeInput(
            case_id=0, source=rng.choice(SOURCES[scenario]), scenario=scenario, created_at=created,
            created_by=creator, manager=manager, director=director, received_by=received,
            compound=rng.choice(COMPOUNDS), budget=budget, reception=reception, policy=self.policy,
        )
        return _Case(i, inp, rng)

    async def _start(self, conn: asyncpg.Connection, c: _Case) -> None:
        rng = c.rng
        case_id = await case_rows.next_case_id(conn)
        inp = c.inp.model_copy(update={"case_id": case_id})
        c.inp = inp
        surname = rng.choice(SURNAMES)
        gender = rng.choice((Gender.male, Gender.female))
        client = _Client(
            name=f"{surname}{'先生' if gender == Gender.male else '女士'}",
            phone=f"16{rng.randrange(10**9):09d}", gender=gender, age_range=rng.choice(("25-35", "35-45", "45-60")),
            compound=inp.compound, address=f"{inp.compound}{rng.randint(1, 30)}栋{rng.randint(1, 3)}单元{rng.randint(101, 2802)}",
            area_m2=rng.randint(60, 220), budget=inp.budget,
        )
        decision = engine.start(inp)
        async with conn.transaction():
            while await conn.fetchval("SELECT 1 FROM cases WHERE client_phone = $1 AND status <> 'closed'", client.phone):
                client = client._replace(phone=f"16{rng.randrange(10**9):09d}")
            await case_rows.insert_starting(conn, inp, client=client, notes=None)
            await self.writer.apply(conn, decision.change, confirm=True)
        self.decisions += 1
        c.state, c.now = decision.state, inp.created_at
        # The case's fortune: leans on the habits it will meet (summed as they happen), plus chance.
        c.score = rng.gauss(-0.9, 0.5)

    # --- the clock and the people ---------------------------------------------------------------------

    def _delay(self, c: _Case, step: OpenStep) -> timedelta:
        """How long after it opened (or after the meeting) a person does this step instance."""
        if step.key in c.delays:
            return c.delays[step.key]
        rng = c.rng
        s = c.state
        assert s is not None
        owner = step.owner or (s.designer if step.owner_role == Role.designer else None) or s.manager
        prompt = self.people[owner.id].prompt if owner and owner.id in self.people else 0.7
        on_time = rng.random() < prompt
        minutes = {
            StepName.reception_review: (5, 25, 40, 200), StepName.callback: (2, 12, 25, 180),
            StepName.assign_designer: (3, 20, 35, 150), StepName.assign_assistant: (5, 45, 70, 240),
            StepName.contact: (20, 100, 130, 300), StepName.debrief: (60, 900, 3500, 7000),
            StepName.acknowledge: (30, 400, 600, 1800), StepName.arrival: (0, 5, 0, 5),
            StepName.first_meeting: (30, 90, 30, 90), StepName.measure: (30, 90, 30, 90),
            StepName.outcome: (60 * 24 * 2, 60 * 24 * 12, 60 * 24 * 2, 60 * 24 * 12),
        }[step.step]
        lo, hi = (minutes[0], minutes[1]) if on_time else (minutes[2], minutes[3])
        c.delays[step.key] = timedelta(minutes=rng.uniform(lo, hi))
        return c.delays[step.key]

    def _due_action(self, c: _Case) -> tuple[datetime, OpenStep] | None:
        s = c.state
        assert s is not None and c.now is not None
        best: tuple[datetime, OpenStep] | None = None
        for o in s.open_steps:
            if o.owner_role == Role.designer and s.designer is None:
                continue
            base = o.opened_at
            if o.step in (StepName.arrival, StepName.first_meeting):
                m = s.meeting("meeting")
                base = max(base, m.at) if m else base
            elif o.step == StepName.measure:
                m = s.meeting("measure")
                base = max(base, m.at) if m else base
            at = max(base + self._delay(c, o), c.now)
            if best is None or at < best[0]:
                best = (at, o)
        return best

    def _next(self, c: _Case, end: datetime) -> datetime | None:
        s = c.state
        if s is None or s.status == "closed" or c.now is None:
            return None
        times = []
        due = self._due_action(c)
        if due:
            times.append(due[0])
        items = engine.agenda(s, now=c.now, policy=self.policy)
        if items:
            times.append(max(items[0].at, c.now))
        at = min(times, default=None)
        return at if at is not None and at < end else None

    async def _move(self, conn: asyncpg.Connection, c: _Case, at: datetime, end: datetime) -> None:
        s = c.state
        assert s is not None and c.now is not None
        due = self._due_action(c)
        items = engine.agenda(s, now=c.now, policy=self.policy)
        timer = max(items[0].at, c.now) if items else None
        if due is not None and due[0] <= at and (timer is None or due[0] <= timer):
            cmd = await self._command(conn, c, due[1], at)
            if cmd is not None:
                await self._decide(conn, c, cmd, at)
            return
        if timer is not None and timer <= at:
            written: list[engine.Decision] = []
            c.state, c.now = advance(s, now=c.now, until=timer + timedelta(microseconds=1), policy=self.policy,
                                     on_decision=lambda d, t: written.append(d))
            for d in written:
                await self._write(conn, c, d, c.now)

    async def _decide(self, conn: asyncpg.Connection, c: _Case, cmd: engine.Command, at: datetime) -> None:
        assert c.state is not None
        decision = engine.decide(c.state, cmd, now=at, policy=self.policy)
        await self._write(conn, c, decision, at)
        c.state, c.now = decision.state, at

    async def _write(self, conn: asyncpg.Connection, c: _Case, decision: engine.Decision, at: datetime) -> None:
        async with conn.transaction():
            await self.writer.apply(conn, decision.change, confirm=True)
            keys = [a.event_key for a in decision.change.effects.assignments]
            if keys:
                # Production writes the ledger row within milliseconds of the decision: dated at it.
                await conn.execute("UPDATE allocation_ledger SET at = $2 WHERE case_id = $1 AND event_key = ANY($3)",
                                   c.inp.case_id, at, keys)
                await conn.execute("UPDATE assistant_registrations SET at = $2 WHERE case_id = $1"
                                   " AND event_key = ANY($3)", c.inp.case_id, at, keys)
        self.decisions += 1

    # --- what each person does --------------------------------------------------------------------------

    async def _command(self, conn: asyncpg.Connection, c: _Case, step: OpenStep, at: datetime) -> CompleteStep | None:
        s = c.state
        assert s is not None
        rng = c.rng
        manager = s.manager or self.staff[Role.manager][0]
        me = self.people[manager.id]
        name = step.step
        if name == StepName.reception_review:
            corr = rng.choice(CORRECTIONS["general"]) if rng.random() < 0.35 and s.received_by else ""
            return CompleteStep(actor=_actor(manager), step=name, payload={"report": "接待顺利，客户关注收纳",
                                                                          "corrections": corr})
        if name == StepName.callback:
            if step.attempt == 1:
                c.score += 0.5 if step.due_at is None or at <= step.due_at else -0.2
            if rng.random() < 0.2 and step.attempt < self.policy.callback_max_attempts:
                return CompleteStep(actor=_actor(manager), step=name, payload={"reached": False})
            meeting = self._business(at + timedelta(days=rng.uniform(1, 4)))
            kind = "office_visit" if s.scenario == Scenario.office_visit else rng.choice(("measure", "office_visit"))
            return CompleteStep(actor=_actor(manager), step=name, payload={
                "reached": True, "meeting_at": meeting.isoformat(), "meeting_kind": kind})
        if name == StepName.assign_designer:
            return await self._assign_designer(conn, c, step, manager, at)
        if name == StepName.assign_assistant:
            lead = self.staff[Role.assistant_lead][0]
            ranked = await AllocationRepository(self.pool).suggest_assistants(SuggestAssistants(case_id=s.case_id))
            first = ranked[0].staff if ranked else rng.choice(self.staff[Role.assistant])
            return CompleteStep(actor=_actor(lead), step=name, payload={"assistant_id": first.id}, staff=[first],
                                first_suggestion=first)
        if name == StepName.contact:
            assert s.designer is not None
            c.score += 0.15 if step.due_at is None or at <= step.due_at else -0.15
            m = s.meeting("meeting")
            when = m.at if m and m.at > at else self._business(at + timedelta(days=rng.uniform(1, 3)))
            return CompleteStep(actor=_actor(s.designer), step=name,
                                payload={"meeting_at": when.isoformat(),
                                         "meeting_kind": (m.kind.value if m else "measure")})
        if name == StepName.arrival:
            items = {k: rng.random() < me.musts[k] for k in ("gum", "recorder", "greeted_at_door", "business_card", "water")}
            c.score += 0.12 * sum(items.values()) - 0.3
            return CompleteStep(actor=_actor(manager), step=name, payload=items)
        if name == StepName.first_meeting:
            assert s.designer is not None
            d = self.people[s.designer.id]
            p: dict[str, Any] = {"true_needs": rng.choice(("三房改两房，要大储物", "老人房要适老化", "开放式厨房",
                                                            "预算内全屋定制", "儿童房和书房合并"))}
            weights = {"measure_agreed": 0.45, "visited_site": 0.4, "visited_material_store": 0.3, "seen_off": 0.2}
            m = s.meeting("meeting")
            at_home = m is not None and m.kind == MeetingKind.measure
            for k, w in weights.items():
                did = rng.random() < d.musts[k] or (k == "measure_agreed" and at_home)
                p[k] = did
                c.score += w if did else -w * 0.6
                if not did and k != "seen_off":
                    p[{"measure_agreed": "measure_reason", "visited_site": "site_reason",
                       "visited_material_store": "material_store_reason"}[k]] = "客户时间紧"
            if p["measure_agreed"] and not at_home:
                p["measure_at"] = self._business(at + timedelta(days=rng.uniform(2, 5))).isoformat()
            c.score += d.skill
            return CompleteStep(actor=_actor(s.designer), step=name, payload=p)
        if name == StepName.measure:
            assert s.designer is not None
            return CompleteStep(actor=_actor(s.designer), step=name, payload={"result": "done"})
        if name == StepName.debrief:
            c.score += 0.2 if step.due_at is None or at <= step.due_at else -0.1
            held = next((x for x in s.done_steps if x.step == StepName.first_meeting), None)
            missed = [k for k in ("measure_agreed", "visited_site", "visited_material_store", "seen_off")
                      if held is not None and not held.payload.get(k)]
            texts = [rng.choice(CORRECTIONS[k]) for k in missed if rng.random() < 0.8]
            if rng.random() < 0.4:
                texts.append(rng.choice(CORRECTIONS["general"]))
            assistant = rng.choice(CORRECTIONS["general"]) if s.assistant and rng.random() < 0.3 else ""
            return CompleteStep(actor=_actor(manager), step=name, payload={
                "findings": "结合录音复盘首次见面", "designer_corrections": "；".join(texts),
                "assistant_corrections": assistant})
        if name == StepName.acknowledge:
            assert step.owner is not None
            return CompleteStep(actor=_actor(step.owner), step=name, payload={"note": "已记录，下次改正"})
        if name == StepName.outcome:
            signed = rng.random() < 1 / (1 + pow(2.718281828, -c.score))
            return CompleteStep(actor=_actor(manager), step=name, payload=(
                {"outcome": "signed"} if signed else {"outcome": "lost", "reason": rng.choice(
                    ("预算不足", "选择了其他公司", "暂缓装修", "对方案不满意"))}))
        return None

    async def _assign_designer(self, conn: asyncpg.Connection, c: _Case, step: OpenStep, manager: StaffRef,
                               at: datetime) -> CompleteStep:
        """The manager takes the first suggestion (production's ranking, read now) most of the time."""
        s = c.state
        assert s is not None
        rng = c.rng
        pre = step.prefill.get("designer")
        if isinstance(pre, dict):
            first: StaffRef | None = StaffRef.model_validate(pre)
            eligible = [first] if first else []
        else:
            m = s.meeting("meeting")
            ranked = await AllocationRepository(self.pool).designer_suggestions(
                case_id=s.case_id, scenario=s.scenario,
                required_level=engine.required_level(s, self.policy, s.budget), meeting_at=m.at if m else None,
                compound=s.compound, exclude_case_from_counts=True, max_open_by_level=self.policy.max_open_cases,
                tz=self.policy.calendar.timezone, include_ineligible=False)
            eligible = [r.staff for r in ranked if r.eligible]
            first = eligible[0] if eligible else None
        others = [d for d in self.staff[Role.designer] if d.id not in s.lapsed]
        if first is not None and (rng.random() < 0.85 or len(others) < 2):
            chosen, reason = first, None
        else:
            chosen = rng.choice([d for d in others if first is None or d.id != first.id] or others)
            reason = "客户指定" if first is not None else "无合适人选，经理指定"
        return CompleteStep(actor=_actor(manager), step=StepName.assign_designer,
                            payload={"designer_id": chosen.id, "reason": reason}, staff=[chosen],
                            first_suggestion=first)

    def _business(self, t: datetime) -> datetime:
        """A meeting time people would agree: 10:00–17:00 Beijing time."""
        local = t.astimezone(UTC) + timedelta(hours=8)
        hour = min(max(local.hour, 10), 16)
        return (local.replace(hour=hour, minute=(local.minute // 30) * 30, second=0, microsecond=0)
                - timedelta(hours=8)).replace(tzinfo=UTC)


def _actor(ref: StaffRef) -> Actor:
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)


async def seed_history(pool: asyncpg.Pool, *, policy: Policy, count: int, days: int, seed: int = 21,
                       now: datetime | None = None) -> Seeded:
    """Seed `count` closed cases over the last `days` days (see the module docstring)."""
    end = now or datetime.now(UTC)
    return await HistorySeeder(pool, policy=policy, seed=seed).seed(count=count, start=end - timedelta(days=days),
                                                                    end=end)


