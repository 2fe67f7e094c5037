"""Policy what-if (SPEC §16): real cases replayed through the production engine under another policy.

Every decision is the engine's (:mod:`domain.engine`: start, decide, tick, auto_assign) and every
ranking is the allocation module's (:func:`domain.allocation.rank_designers`); this module only plays
the clock and the people:

* The clock. A case's timers fire as the workflow fires them: the earliest agenda item, one at a time
  (:func:`advance`); a staff action at its recorded time is decided with ``engine.decide``.
* The people. Each recorded action (a finished step with its payload, a reassignment, a reschedule, a
  close) is done again at its recorded time by the same person, or by whoever holds that place on the
  case now (a designer's step by the case's designer). An action whose step is not open yet waits
  until it opens (nobody can do a step before it exists). A designer assignment follows the
  ranking the replay computes when the manager followed the first suggestion in reality, and keeps the
  manager's own pick (with its reason) when they chose someone else; a lead with no eligible designer
  keeps the recorded pick and is reported. A reclaim (掉保) the policy causes and history lacks is
  reassigned at once to the first suggestion.
* The allocation facts. Who is open with whom and who was assigned last come from the allocation
  ledger of every case that is not replayed, and from the replay itself for those that are: the same
  facts store/allocation.py reads from PostgreSQL at the moment the manager decides.

A replay under the policy each case actually ran reproduces its recorded assignments and escalations
(tests/api/test_whatif.py asserts it), so the comparison with an edited policy is like for like.
Staff facts (level, leave, schedule, communities, weight) are today's: no staff history is kept.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from domain import engine
from domain.allocation import DesignerCandidate, rank_designers
from domain.enums import CaseStatus, Level, Role, StaffStatus, StepName
from domain.models import Actor, CaseState, CompleteStep, IntakeInput, Reassign, StaffRef
from domain.policy import Policy

# A case that never stops asking for timers is cut here (a policy can make a step repeat for long).
MAX_DECISIONS_PER_CASE = 200
# Reclaims the replay reassigns by itself (history had none there); after these the step stays open.
MAX_REASSIGNS_PER_CASE = 2


# --- the clock ------------------------------------------------------------------------------------


def advance(state: CaseState, *, now: datetime, until: datetime, policy: Policy,
            on_decision: Callable[[engine.Decision, datetime], None] | None = None) -> tuple[CaseState, datetime]:
    """Fire the case's timers due before `until`, earliest first, each at its own time (as the
    workflow's one timer does); returns the state and the time of the last decision."""
    for _ in range(MAX_DECISIONS_PER_CASE):
        if state.status == CaseStatus.closed:
            break
        items = engine.agenda(state, now=now, policy=policy)
        if not items or items[0].at >= until:
            break
        now = max(items[0].at, now)
        decision = engine.tick(state, now=now, policy=policy)
        state = decision.state
        if on_decision is not None:
            on_decision(decision, now)
    return state, now


# --- what a replay reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Designer:
    """A designer's standing facts, as allocation reads them (open cases and last turn come from the replay)."""

    ref: StaffRef
    level: Level
    status: StaffStatus
    communities: tuple[str, ...] = ()
    office_schedule: Mapping[int, Sequence[tuple[object, object]]] = field(default_factory=dict)
    max_open_cases: int | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Recorded:
    """One recorded staff action: when, and the command as it was given."""

    at: datetime
    command: engine.Command
    # A designer assignment: the recorded designer and whether the manager took the first suggestion.
    followed: bool | None = None


@dataclass(frozen=True)
class CaseHistory:
    """One case as history has it: how it started, what staff did, what the ledger and timeline say."""

    inp: IntakeInput
    actions: tuple[Recorded, ...]
    # (designer id, kind) of its allocation ledger rows, in order; (step key, level) of its escalations.
    ledger: tuple[tuple[int, str], ...] = ()
    escalations: tuple[tuple[str, int], ...] = ()
    outcome: str | None = None
    closed_at: datetime | None = None

    @property
    def case_id(self) -> int:
        """The case number."""
        return self.inp.case_id


@dataclass(frozen=True)
class Held:
    """A case outside the replay that a designer held for a while (from its ledger rows)."""

    case_id: int
    designer_id: int
    start: datetime
    end: datetime | None


@dataclass
class Background:
    """The allocation facts of every case not replayed: who held what when, and each designer's turns."""

    held: list[Held] = field(default_factory=list)
    turns: dict[int, list[datetime]] = field(default_factory=dict)  # designer -> sorted assignment times

    def last_turn(self, designer_id: int, at: datetime) -> datetime | None:
        """The designer's last assignment (not a lapse) before `at`."""
        times = self.turns.get(designer_id, [])
        i = bisect.bisect_right(times, at)
        return times[i - 1] if i else None

    def open_at(self, designer_id: int, at: datetime, exclude: int) -> int:
        """How many cases the designer held at `at` (a case counts while it is open)."""
        return sum(1 for h in self.held if h.designer_id == designer_id and h.case_id != exclude
                   and h.start <= at and (h.end is None or at < h.end))


def background_from_ledger(rows: Iterable[tuple[int, int, str, datetime]],
                           closed_at: Mapping[int, datetime | None]) -> Background:
    """Background facts from ledger rows (case, designer, kind, at), oldest first per case, and each case's close."""
    bg = Background()
    by_case: dict[int, list[tuple[int, str, datetime]]] = defaultdict(list)
    for case_id, designer_id, kind, at in rows:
        by_case[case_id].append((designer_id, kind, at))
        if kind != "lapse":
            bg.turns.setdefault(designer_id, []).append(at)
    for times in bg.turns.values():
        times.sort()
    for case_id, items in by_case.items():
        items.sort(key=lambda x: x[2])
        for i, (designer_id, kind, at) in enumerate(items):
            if kind == "lapse":
                continue
            end = items[i + 1][2] if i + 1 < len(items) else closed_at.get(case_id)
            bg.held.append(Held(case_id, designer_id, at, end))
    return bg


# --- what a replay answers -------------------------------------------------------------------------------


@dataclass
class CaseResult:
    """One case replayed: who got the lead, what the policy made of its time."""

    case_id: int
    first_designer: int | None = None
    designers: list[tuple[int, str]] = field(default_factory=list)  # (designer, ledger kind) in order
    escalations: list[tuple[str, int]] = field(default_factory=list)  # (step key, level)
    director_pages: int = 0
    reclaims: int = 0
    steps_late: int = 0
    no_eligible: bool = False
    not_replayed: list[str] = field(default_factory=list)  # recorded actions the replay could not take
    outcome: str | None = None
    stage: str = ""


@dataclass
class Replay:
    """A replay of a set of cases under one policy (or each under its own)."""

    cases: dict[int, CaseResult]
    designers: dict[int, Designer]

    def leads(self) -> Counter[int]:
        """Leads per designer (the first designer of each case)."""
        return Counter(r.first_designer for r in self.cases.values() if r.first_designer is not None)

    def totals(self) -> dict[str, int]:
        """Figures over every case."""
        rs = list(self.cases.values())
        return {
            "cases": len(rs),
            "steps_late": sum(r.steps_late for r in rs),
            "escalations": sum(len(r.escalations) for r in rs),
            "director_pages": sum(r.director_pages for r in rs),
            "reclaims": sum(r.reclaims for r in rs),
            "no_eligible": sum(r.no_eligible for r in rs),
            "not_replayed": sum(len(r.not_replayed) for r in rs),
        }

    def fairness(self) -> list[FairShare]:
        """Each designer's share of the leads against the ideal share (weights), over designers not inactive."""
        return fair_shares(self.leads(), self.designers)


@dataclass(frozen=True)
class FairShare:
    """A designer's leads, share of all leads, and the share the rotation's weights would give them."""

    designer_id: int
    name: str
    leads: int
    share: float | None
    ideal: float


def fair_shares(leads: Mapping[int, int], designers: Mapping[int, Designer]) -> list[FairShare]:
    """Shares against the ideal: a designer's weight over the sum of weights of designers not inactive."""
    pool = {i: d for i, d in designers.items() if d.status != StaffStatus.inactive or leads.get(i)}
    weights = sum(d.weight for d in pool.values()) or 1.0
    n = sum(leads.values())
    return [FairShare(i, d.ref.name, leads.get(i, 0), (leads.get(i, 0) / n) if n else None, d.weight / weights)
            for i, d in sorted(pool.items())]


def gini(values: Sequence[float]) -> float | None:
    """The Gini coefficient of the values (0: all equal; towards 1: one has everything)."""
    xs = sorted(float(v) for v in values)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return None
    cum = sum((i + 1) * x for i, x in enumerate(xs))
    return (2 * cum) / (n * total) - (n + 1) / n


# --- the replay ------------------------------------------------------------------------------------------


@dataclass
class _Case:
    history: CaseHistory
    policy: Policy
    state: CaseState | None = None
    now: datetime | None = None
    queue: list[Recorded] = field(default_factory=list)
    waiting: list[Recorded] = field(default_factory=list)
    version: int = 0
    decisions: int = 0
    reassigned: int = 0


class _Replayer:
    def __init__(self, histories: Sequence[CaseHistory], designers: Mapping[int, Designer], background: Background,
                 policy_of: Callable[[CaseHistory], Policy], horizon: datetime) -> None:
        self.designers = designers
        self.bg = background
        self.horizon = horizon
        self.cases = {h.case_id: _Case(h, policy_of(h), queue=sorted(h.actions, key=lambda r: r.at)) for h in histories}
        self.results = {h.case_id: CaseResult(h.case_id) for h in histories}
        self.turns: dict[int, list[datetime]] = defaultdict(list)  # replayed assignments per designer
        self.heap: list[tuple[datetime, int, int, int]] = []
        self.seq = 0

    # --- allocation facts at a moment -------------------------------------------------------------

    def _open_cases(self, designer_id: int, at: datetime, exclude: int) -> int:
        n = self.bg.open_at(designer_id, at, exclude)
        for cid, c in self.cases.items():
            s = c.state
            if cid != exclude and s is not None and s.status != CaseStatus.closed and s.designer is not None \
                    and s.designer.id == designer_id:
                n += 1
        return n

    def _last_turn(self, designer_id: int, at: datetime) -> datetime | None:
        mine = [t for t in self.turns.get(designer_id, []) if t <= at]
        theirs = self.bg.last_turn(designer_id, at)
        return max([*mine, *([theirs] if theirs else [])], default=None)

    def ranking(self, c: _Case, at: datetime, *, level: Level | None = None,
                meeting_at: datetime | None = None) -> list[StaffRef]:
        """The eligible designers for the case at `at`, in rotation order: production's ranking."""
        s = c.state
        assert s is not None
        m = s.meeting("meeting")
        candidates = [
            DesignerCandidate(
                staff_id=d.ref.id, name=d.ref.name, level=d.level, status=d.status, communities=d.communities,
                office_schedule=d.office_schedule,  # type: ignore[arg-type]
                open_cases=self._open_cases(d.ref.id, at, s.case_id), max_open_cases=d.max_open_cases,
                last_assigned_at=self._last_turn(d.ref.id, at), weight=d.weight,
            )
            for d in self.designers.values() if d.status != StaffStatus.inactive
        ]
        ranked = rank_designers(
            candidates, required_level=level or engine.required_level(s, c.policy, s.budget),
            scenario=s.scenario, meeting_at=meeting_at or (m.at if m else None), compound=s.compound,
            max_open_by_level=c.policy.max_open_cases, tz=c.policy.calendar.timezone,
        )
        return [self.designers[r.staff_id].ref for r in ranked if r.eligible]

    # --- the loop ------------------------------------------------------------------------------------

    def run(self) -> dict[int, CaseResult]:
        for cid, c in self.cases.items():
            self._push(cid, c.history.inp.created_at)
        while self.heap:
            at, _, cid, version = heapq.heappop(self.heap)
            c = self.cases[cid]
            if version != c.version:
                continue
            self._step(c, at)
            nxt = self._next(c)
            if nxt is not None:
                self._push(cid, nxt)
        for c in self.cases.values():
            self._finish(c)
        return self.results

    def _push(self, cid: int, at: datetime) -> None:
        c = self.cases[cid]
        c.version += 1
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, cid, c.version))

    def _next(self, c: _Case) -> datetime | None:
        s = c.state
        if s is None or s.status == CaseStatus.closed or c.decisions >= MAX_DECISIONS_PER_CASE:
            return None
        assert c.now is not None
        times = [max(c.queue[0].at, c.now)] if c.queue else []
        items = engine.agenda(s, now=c.now, policy=c.policy)
        if items:
            times.append(max(items[0].at, c.now))
        at = min(times, default=None)
        return at if at is not None and at < self.horizon else None

    def _step(self, c: _Case, at: datetime) -> None:
        if c.state is None:
            inp = c.history.inp.model_copy(update={"policy": c.policy, "state": None})
            self._take(c, engine.start(inp), inp.created_at)
            return
        assert c.now is not None
        items = engine.agenda(c.state, now=c.now, policy=c.policy)
        timer = max(items[0].at, c.now) if items else None
        action = max(c.queue[0].at, c.now) if c.queue else None
        # A staff action and a timer at the same moment: the action first (its decision fires what is due).
        if action is not None and action <= at and (timer is None or action <= timer):
            self._act(c, c.queue.pop(0), at)
        elif timer is not None and timer <= at:
            self._take(c, engine.tick(c.state, now=timer, policy=c.policy), timer)

    def _take(self, c: _Case, decision: engine.Decision, at: datetime) -> None:
        """Keep a decision: the new state, the ledger it wrote, the pages it sent; then what it unblocked."""
        c.state, c.now = decision.state, at
        c.decisions += 1
        r = self.results[c.history.case_id]
        s = decision.state
        for a in decision.change.effects.assignments:
            if a.role != "designer":
                continue
            r.designers.append((a.staff_id, a.kind))
            if a.kind == "lapse":
                r.reclaims += 1
            else:
                self.turns[a.staff_id].append(at)
                if r.first_designer is None:
                    r.first_designer = a.staff_id
        for e in decision.change.events:
            if e.kind == "escalation":
                r.escalations.append((str(e.data.get("key")), int(e.data.get("level") or 0)))
        director = s.director.id if s.director else None
        for n in decision.change.effects.notices:
            if n.recipient_role == Role.director or (director is not None and n.recipient_id == director):
                r.director_pages += 1
        self._after(c, at)

    def _after(self, c: _Case, at: datetime) -> None:
        s = c.state
        assert s is not None
        if s.status == CaseStatus.closed:
            return
        # The system assigns by rotation where the policy says so (the workflow's auto-assignment).
        if engine.auto_assign_step(s, c.policy) is not None:
            ranked = self.ranking(c, at)
            if ranked:
                self._take(c, engine.auto_assign(s, ranked[0], now=at, policy=c.policy), at)
                return
            self.results[c.history.case_id].no_eligible = True
        # An assignment reopened by a reclaim history does not have: the manager reassigns at once.
        assign = next((o for o in s.open_steps if o.step == StepName.assign_designer), None)
        recorded_next = any(self._step_of(w) == StepName.assign_designer for w in (*c.queue, *c.waiting))
        if (assign is not None and s.lapsed and not recorded_next and s.manager is not None
                and c.reassigned < MAX_REASSIGNS_PER_CASE):
            ranked = [d for d in self.ranking(c, at) if d.id not in s.lapsed[-1:]]
            if ranked:
                c.reassigned += 1
                cmd = CompleteStep(actor=_actor(s.manager), step=StepName.assign_designer,
                                   payload={"designer_id": ranked[0].id}, staff=[ranked[0]],
                                   first_suggestion=ranked[0])
                self._decide(c, cmd, at, "掉保后重新分配")
                return
        for w in list(c.waiting):
            if self._ready(c, w):
                c.waiting.remove(w)
                self._act(c, w, at)
                return

    @staticmethod
    def _step_of(r: Recorded) -> StepName | None:
        return r.command.step if isinstance(r.command, CompleteStep) else None

    def _ready(self, c: _Case, r: Recorded) -> bool:
        s = c.state
        assert s is not None
        step = self._step_of(r)
        return step is None or any(o.step == step for o in s.open_steps)

    def _act(self, c: _Case, r: Recorded, at: datetime) -> None:
        """A recorded action, done again now by whoever holds that place on the case."""
        s = c.state
        assert s is not None
        if s.status == CaseStatus.closed:
            return
        if not self._ready(c, r):
            c.waiting.append(r)  # its step is not open yet: done once it opens
            return
        cmd = self._adapt(c, r, at)
        if cmd is not None:
            self._decide(c, cmd, at, self._label(r))

    def _decide(self, c: _Case, cmd: engine.Command, at: datetime, label: str) -> None:
        s = c.state
        assert s is not None
        try:
            decision = engine.decide(s, cmd, now=at, policy=c.policy)
        except engine.Rejected as exc:
            self.results[c.history.case_id].not_replayed.append(f"{label}：{exc.message}")
            return
        self._take(c, decision, at)

    @staticmethod
    def _label(r: Recorded) -> str:
        cmd = r.command
        return cmd.step.value if isinstance(cmd, CompleteStep) else type(cmd).__name__

    def _adapt(self, c: _Case, r: Recorded, at: datetime) -> engine.Command | None:
        s = c.state
        assert s is not None
        cmd = r.command
        if isinstance(cmd, Reassign):
            current = s.designer if cmd.role == "designer" else s.assistant
            return None if current is not None and current.id == cmd.staff.id else cmd
        if not isinstance(cmd, CompleteStep):
            return cmd
        step = next(o for o in s.open_steps if o.step == cmd.step)
        actor = cmd.actor
        if cmd.step == StepName.acknowledge:
            # Whoever was corrected confirms: the recorded person's own correction, else the first open one.
            mine = [o for o in s.open_steps if o.step == cmd.step and o.owner and o.owner.id == cmd.actor.staff_id]
            owner = (mine or [step])[0].owner
            if owner is None:
                return None
            actor = _actor(owner)
        elif step.owner_role == Role.designer:
            if s.designer is None:
                return None
            actor = _actor(s.designer)
        cmd = cmd.model_copy(update={"actor": actor})
        if cmd.step == StepName.assign_designer or (cmd.step == StepName.callback and cmd.payload.get("designer_id")):
            return self._choose_designer(c, cmd, r, step.prefill, at)
        return cmd

    def _choose_designer(self, c: _Case, cmd: CompleteStep, r: Recorded, prefill: dict[str, object],
                         at: datetime) -> CompleteStep:
        """The manager's choice under this policy: the first suggestion where they took it, their own pick where not."""
        payload = dict(cmd.payload)
        recorded = payload.get("designer_id")
        pre = prefill.get("designer")
        if isinstance(pre, dict):
            first: StaffRef | None = StaffRef.model_validate(pre)
            ranked = [first] if first else []
        else:
            level = Level(payload["designer_level"]) if payload.get("designer_level") else None
            meeting = datetime.fromisoformat(str(payload["meeting_at"])) if payload.get("meeting_at") else None
            ranked = self.ranking(c, at, level=level, meeting_at=meeting) if cmd.step == StepName.callback \
                else self.ranking(c, at)
            first = ranked[0] if ranked else None
        if first is None:
            self.results[c.history.case_id].no_eligible = True
        chosen: StaffRef | None
        if r.followed and first is not None:
            chosen = first
        else:
            chosen = self.designers[int(str(recorded))].ref if recorded and int(str(recorded)) in self.designers \
                else first
        if chosen is None:
            return cmd
        payload["designer_id"] = chosen.id
        if first is not None and chosen.id != first.id and not (payload.get("reason") or "").strip():
            payload["reason"] = "（推演）沿用当时的人选"
        return cmd.model_copy(update={"payload": payload, "staff": [chosen], "first_suggestion": first})

    def _finish(self, c: _Case) -> None:
        r = self.results[c.history.case_id]
        s = c.state
        if s is None:
            return
        r.outcome = s.outcome.value if s.outcome else None
        r.stage = s.stage
        r.steps_late = sum(1 for d in s.done_steps if not d.on_time and d.result not in ("cancelled", "auto")) + sum(
            1 for o in s.open_steps if o.overdue)
        r.not_replayed += [f"{self._label(w)}：步骤未开启" for w in c.waiting]


def _actor(ref: StaffRef) -> Actor:
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)


def replay(histories: Sequence[CaseHistory], designers: Mapping[int, Designer], background: Background, *,
           policy: Policy | None, horizon: datetime,
           recorded_policies: Mapping[int, Policy] | None = None) -> Replay:
    """Replay the cases in time order together (they share the designers): under `policy`, or each under
    the policy it ran (`recorded_policies`, falling back to its input's) when `policy` is None."""

    def policy_of(h: CaseHistory) -> Policy:
        if policy is not None:
            return policy
        return (recorded_policies or {}).get(h.case_id) or h.inp.policy

    results = _Replayer(histories, designers, background, policy_of, horizon).run()
    return Replay(results, dict(designers))


# --- the comparison --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadRow:
    """One lead side by side: the recorded designer, the replay under its own policy, under the edited one."""

    case_id: int
    recorded: int | None
    baseline: int | None
    whatif: int | None
    no_eligible: bool


@dataclass(frozen=True)
class Comparison:
    """A what-if: the cases replayed under the policies they ran and under the edited one."""

    baseline: Replay
    whatif: Replay
    recorded_first: Mapping[int, int | None]
    reproduced: bool  # the baseline gave every recorded assignment and escalation

    def leads(self) -> list[LeadRow]:
        """Who got each lead, side by side."""
        return [LeadRow(cid, self.recorded_first.get(cid), self.baseline.cases[cid].first_designer,
                        self.whatif.cases[cid].first_designer, self.whatif.cases[cid].no_eligible)
                for cid in sorted(self.whatif.cases)]

    def changed(self) -> int:
        """Leads that would have gone to someone else."""
        return sum(1 for r in self.leads() if r.baseline != r.whatif)


def reproduces(history: CaseHistory, result: CaseResult) -> bool:
    """Whether a replay gave the case exactly its recorded ledger rows and escalations."""
    return list(history.ledger) == result.designers and sorted(history.escalations) == sorted(result.escalations)


def compare(histories: Sequence[CaseHistory], designers: Mapping[int, Designer], background: Background, *,
            policy: Policy, horizon: datetime, recorded_policies: Mapping[int, Policy] | None = None) -> Comparison:
    """Replay under the recorded policies and under `policy`, and put them side by side."""
    base = replay(histories, designers, background, policy=None, horizon=horizon, recorded_policies=recorded_policies)
    alt = replay(histories, designers, background, policy=policy, horizon=horizon)
    recorded_first = {h.case_id: next((d for d, k in h.ledger if k != "lapse"), None) for h in histories}
    ok = all(reproduces(h, base.cases[h.case_id]) for h in histories)
    return Comparison(base, alt, recorded_first, ok)


def report(comp: Comparison, histories: Sequence[CaseHistory], *, limit_leads: int = 500) -> dict[str, object]:
    """The comparison as plain data (stored with a run, printed by the CLI, drawn by the console)."""
    names = {i: d.ref.name for i, d in comp.whatif.designers.items()}
    created = {h.case_id: h.inp.created_at.isoformat() for h in histories}

    def shares(r: Replay) -> list[dict[str, object]]:
        return [{"designer_id": f.designer_id, "name": f.name, "leads": f.leads, "share": f.share, "ideal": f.ideal}
                for f in r.fairness()]

    def gini_of(r: Replay) -> float | None:
        return gini([f.leads / f.ideal for f in r.fairness() if f.ideal > 0])

    leads = comp.leads()
    changed = [x for x in leads if x.baseline != x.whatif]
    shown = (changed + [x for x in leads if x.baseline == x.whatif])[:limit_leads]
    mismatched = [h.case_id for h in histories if not reproduces(h, comp.baseline.cases[h.case_id])]
    return {
        "cases": len(histories),
        "reproduced": comp.reproduced,
        "mismatched": mismatched,
        "totals": {"baseline": comp.baseline.totals(), "whatif": comp.whatif.totals()},
        "fairness": {"baseline": shares(comp.baseline), "whatif": shares(comp.whatif)},
        "gini": {"baseline": gini_of(comp.baseline), "whatif": gini_of(comp.whatif)},
        "changed": len(changed),
        "leads": [{"case_id": x.case_id, "created_at": created.get(x.case_id),
                   "recorded": names.get(x.recorded) if x.recorded else None,
                   "baseline": names.get(x.baseline) if x.baseline else None,
                   "whatif": names.get(x.whatif) if x.whatif else None, "no_eligible": x.no_eligible}
                  for x in shown],
        "no_eligible": sorted(cid for cid, r in comp.whatif.cases.items() if r.no_eligible),
        "not_replayed": [{"case_id": cid, "what": w} for cid, r in sorted(comp.whatif.cases.items())
                         for w in r.not_replayed][:200],
    }
