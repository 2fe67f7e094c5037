"""WHEN the engine acts, as a property: due times, escalation rungs, repeats, stalls, reminders, follow-ups.

Runs over real calendars (working hours, a lunch break, holidays and make-up working days 调休) as well
as around the clock. The expected times come from a reference calendar written here from the rules in
SPEC §4 and the conventions at the top of domain/calendar.py, not from domain.calendar itself, so a
mutant of the calendar cannot agree with its own oracle.

Uses only the public functions of domain.engine (start, check, decide, tick, agenda, merge, head,
auto_assign, auto_assign_step) and the domain models: the engine may be split into modules freely.

How a sequence is driven: between two staff actions, time advances either as in the workflow (a timer
at every agenda item, each tick exactly on time) or after an outage (no tick at all, then one late
tick). Staff actions come after the ticks due by then, as in the workflow, whose timer fires first.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import engine
from domain.enums import CaseStatus, Outcome, Role, Scenario, Source, StepName
from domain.models import (
    AddNote,
    AttachRecording,
    CaseState,
    CloseCase,
    CompleteStep,
    IntakeInput,
    NotifyStaff,
    OpenStep,
    Reassign,
    Reschedule,
    StaffRef,
)
from domain.policy import CalendarPolicy, EscalationChain, EscalationStage, Policy, fast_policy
from tests.support.cast import (
    ASSISTANT,
    CONSULTANT,
    DESIGNER,
    DIRECTOR,
    LEAD,
    MANAGER,
    OTHER_ASSISTANT,
    OTHER_DESIGNER,
    SITE_LEAD,
    SOURCES,
    actor,
)
from tests.support.examples import examples

SHANGHAI = ZoneInfo("Asia/Shanghai")
PEOPLE = [MANAGER, DIRECTOR, DESIGNER, OTHER_DESIGNER, ASSISTANT, LEAD, CONSULTANT, SITE_LEAD]

# --- calendars and policies ------------------------------------------------------------------------

# National Day 2030 (Tue 1 – Mon 7 October) with its make-up working days (调休): Sundays 29 September and
# 13 October; Sundays are otherwise off (Mon–Sat 09:00–18:00).
HOLIDAYS = [date(2030, 10, d) for d in range(1, 8)]
MAKEUP = [date(2030, 9, 29), date(2030, 10, 13)]
OFFICE = CalendarPolicy(holidays=HOLIDAYS, makeup_workdays=MAKEUP)
# A calendar with a lunch break and a short Saturday: rungs must skip 12:00–13:30 too.
LUNCH = CalendarPolicy(
    hours={d: [(time(9, 0), time(12, 0)), (time(13, 30), time(18, 0))] for d in range(5)}
    | {5: [(time(9, 30), time(12, 30))]},
    holidays=HOLIDAYS,
    makeup_workdays=MAKEUP,
    makeup_hours=[(time(10, 0), time(16, 0))],
)

POLICIES: dict[str, Policy] = {
    # Around the clock, seconds (the demo and workflow-test policy).
    "fast": fast_policy(),
    # The SPEC defaults over the office calendar, fewer repeats so a sequence reaches the stall.
    "office": Policy(calendar=OFFICE, escalation_max_repeats=3),
    # A lunch break, a callback chain of its own (three stages, repeats every 40 min), reclaim off,
    # and the system assigning designers by rotation.
    "lunch": Policy(
        calendar=LUNCH,
        escalation_max_repeats=2,
        reclaim_at_level=None,
        auto_assign_designer=True,
        escalation_overrides={StepName.callback: EscalationChain(
            stages=[EscalationStage(after=timedelta(0), target="owner"),
                    EscalationStage(after=timedelta(minutes=10), target="superior"),
                    EscalationStage(after=timedelta(minutes=50), target="director")],
            repeat_every=timedelta(minutes=40), repeat_target="director")},
    ),
}
# Time scale of a policy: how far one step of a generated sequence may move the clock.
SCALE = {"fast": timedelta(seconds=1), "office": timedelta(minutes=1), "lunch": timedelta(minutes=1)}
# Where generated cases start: the fast policy anywhere; the calendars around the National Day week.
ORIGIN = {
    "fast": datetime(2030, 5, 6, 9, 0, tzinfo=UTC),
    "office": datetime(2030, 9, 26, 0, 0, tzinfo=SHANGHAI),
    "lunch": datetime(2030, 9, 26, 0, 0, tzinfo=SHANGHAI),
}

MEETING_STEPS = {StepName.arrival: "meeting", StepName.first_meeting: "meeting", StepName.measure: "measure"}


class RefCalendar:
    """Working time computed the plain way, from the policy data and the documented conventions."""

    def __init__(self, c: CalendarPolicy) -> None:
        self.c = c
        self.zone = ZoneInfo(c.timezone)

    def periods(self, d: date) -> list[tuple[datetime, datetime]]:
        if d in self.c.holidays:
            return []
        hours = self.c.makeup_hours if d in self.c.makeup_workdays else self.c.hours.get(d.weekday(), [])
        return [(datetime.combine(d, s, self.zone).astimezone(UTC), datetime.combine(d, e, self.zone).astimezone(UTC))
                for s, e in sorted(hours)]

    def _from(self, t: datetime) -> list[tuple[datetime, datetime]]:
        d = t.astimezone(self.zone).date() - timedelta(days=1)
        out: list[tuple[datetime, datetime]] = []
        for i in range(60):
            out += [p for p in self.periods(d + timedelta(days=i)) if p[1] > t]
        return out

    def is_open(self, t: datetime) -> bool:
        if self.c.always_open:
            return True
        d = t.astimezone(self.zone).date()
        return any(s <= t < e for s, e in self.periods(d))

    def next_open(self, t: datetime) -> datetime:
        if self.c.always_open:
            return t
        s, _ = self._from(t)[0]
        return max(s, t)

    def add(self, t: datetime, delta: timedelta) -> datetime:
        """Business time added; ends on a period's close when the time runs out exactly there."""
        if self.c.always_open:
            return t + delta
        if not delta:
            return self.next_open(t)
        left = delta
        for s, e in self._from(t):
            begin = max(s, t)
            if left <= e - begin:
                return begin + left
            left -= e - begin
        raise AssertionError("no working time within 60 days")

    def latest_at_or_before(self, t: datetime) -> datetime:
        if self.c.always_open or self.is_open(t):
            return t
        d = t.astimezone(self.zone).date() + timedelta(days=1)
        for i in range(60):
            for s, e in reversed(self.periods(d - timedelta(days=i))):
                if s < t:
                    return min(e, t)
        raise AssertionError("no working time within 60 days")


def _utc(t: datetime) -> datetime:
    return t.astimezone(UTC)


# --- the model: what the engine must do, and when ---------------------------------------------------


@dataclass
class Rungs:
    """What the model remembers of one step instance's escalation."""

    due: datetime | None
    level: int
    last_fired: datetime | None = None  # the time the latest rung fired (repeats count from it)


@dataclass
class Model:
    """Remembers what a case did, checks every decision against SPEC §4 and the policy."""

    policy: Policy
    ref: RefCalendar
    state: CaseState
    projection: CaseState
    rungs: dict[str, Rungs] = field(default_factory=dict)
    fired: dict[tuple[str, datetime | None, int], datetime] = field(default_factory=dict)
    command_times: set[datetime] = field(default_factory=set)
    messages: dict[str, datetime] = field(default_factory=dict)
    stalls: list[str] = field(default_factory=list)
    escalations: int = 0
    now: datetime = datetime.min.replace(tzinfo=UTC)  # the clock of the sequence
    all_notices: list[NotifyStaff] = field(default_factory=list)

    @classmethod
    def begin(cls, policy: Policy, d: engine.Decision) -> Model:
        m = cls(policy=policy, ref=RefCalendar(policy.calendar), state=d.state, projection=engine.merge(None, d.change))
        m.command_times.add(d.state.created_at)
        m.check_new_steps(None, d.state, d.state.created_at)
        m.check_change(None, d)
        m.remember(d.state, d.state.created_at, set())
        m.record_messages(d, d.state.created_at)
        return m

    # -- expectations ------------------------------------------------------------------------------

    def planned(self, o: OpenStep, level: int, last_fired: datetime | None) -> datetime | None:
        """When the rung after `level` must fire: stages from the due time, repeats from the last rung,
        moved into working time unless the step counts wall-clock time."""
        assert o.due_at is not None
        chain = self.policy.chain(o.step)
        if level < len(chain.stages):
            base, delta = o.due_at, chain.stages[level].after
        elif chain.repeat_every is not None:
            base, delta = last_fired or o.due_at, chain.repeat_every
        else:
            return None
        if o.wall_clock:
            return base + delta
        return self.ref.next_open(self.ref.add(base, delta))

    def expected_due(self, o: OpenStep, s: CaseState, now: datetime) -> datetime | None:
        """The due time of a step that opened at `now` (SPEC §4 and the step graphs)."""
        p = self.policy
        if o.step in MEETING_STEPS:
            m = s.meeting(MEETING_STEPS[o.step])
            return (max(m.at, now) if m else now) + p.meeting_grace
        if o.step == StepName.callback and o.attempt > p.callback_max_attempts:
            return now  # out of attempts: reopened at once, already escalated
        if s.scenario == Scenario.walk_in and o.step in (StepName.assign_designer, StepName.assign_assistant):
            return now + p.walk_in_assignment  # the client is waiting: wall-clock
        due = self.ref.add(now, p.duration(o.step))
        m = s.meeting("meeting")
        if (s.scenario == Scenario.office_visit and o.step in (StepName.assign_designer, StepName.assign_assistant)
                and m is not None and m.at > now):
            due = min(due, m.at)  # due before the visit
        return due

    # -- checks ------------------------------------------------------------------------------------

    def check_new_steps(self, before: CaseState | None, after: CaseState, now: datetime) -> None:
        known = {o.key for o in before.open_steps} if before else set()
        for o in after.open_steps:
            if o.key in known or o.opened_at != now:
                continue
            assert o.due_at == self.expected_due(o, after, now), f"{o.key} opened at {now}: due {o.due_at}"
            assert o.wall_clock == (after.scenario == Scenario.walk_in and o.step in (
                StepName.assign_designer, StepName.assign_assistant, StepName.first_meeting)), o.key

    def check_plans(self, s: CaseState) -> None:
        """The engine's own plan for every open step is the policy's time for its next rung."""
        for o in s.open_steps:
            chain = self.policy.chain(o.step)
            assert o.overdue == (o.escalation_level > 0), f"{o.key}: overdue {o.overdue} at level {o.escalation_level}"
            if o.stalled:
                assert o.next_escalation_at is None and o.next_escalation is None, o.key
                # a step stalls only once its chain and all its repeats are used up
                assert o.escalation_level == len(chain.stages) + self.policy.escalation_max_repeats, o.key
                continue
            r = self.rungs.get(o.key)
            last = r.last_fired if r and r.due == o.due_at and r.level == o.escalation_level else None
            want = self.planned(o, o.escalation_level, last)
            assert o.next_escalation_at == want, (
                f"{o.key} level {o.escalation_level}: next rung planned at {o.next_escalation_at}, "
                f"the policy says {want} (due {o.due_at}, last rung {last})")
            if want is not None and not o.wall_clock:
                assert self.ref.is_open(want), f"{o.key}: next rung at {want} is outside working time"

    def expected_rungs(self, before: CaseState, now: datetime) -> dict[str, list[int | str]]:
        """Rungs each step must fire in a tick at `now`: level numbers, then "stall" or "reclaim"."""
        out: dict[str, list[int | str]] = {}
        nstages = {o.key: len(self.policy.chain(o.step).stages) for o in before.open_steps}
        for o in before.open_steps:
            if o.stalled or o.due_at is None:
                continue
            r = self.rungs.get(o.key)
            level = o.escalation_level
            last = r.last_fired if r and r.due == o.due_at and r.level == level else None
            seq: list[int | str] = []
            while True:
                at = self.planned(o, level, last)
                if at is None or at > now:
                    break
                if level - nstages[o.key] >= self.policy.escalation_max_repeats:
                    seq.append("stall")
                    break
                level += 1
                seq.append(level)
                last = now
                reclaim = self.policy.reclaim_at_level
                if (o.step in (StepName.contact, StepName.first_meeting) and reclaim is not None
                        and level >= reclaim and before.designer is not None):
                    seq.append("reclaim")
                    break
            if seq:
                out[o.key] = seq
        return out

    def check_tick(self, before: CaseState, d: engine.Decision, now: datetime, on_time: bool) -> None:
        expected = self.expected_rungs(before, now)
        actual: dict[str, list[int | str]] = {}
        for e in d.change.events:
            if e.kind == "escalation":
                actual.setdefault(e.data["key"], []).append(e.data["level"])
            elif e.kind == "stalled":
                actual.setdefault(e.data["key"], []).append("stall")
            elif e.kind == "reclaimed":
                actual.setdefault(e.data["key"], []).append("reclaim")
        assert actual == expected, f"tick at {now} ({'on time' if on_time else 'late'}): rungs {actual}, want {expected}"
        steps = {o.key: o for o in before.open_steps}
        for key, seq in actual.items():
            o = steps[key]
            for level in seq:
                if isinstance(level, int):
                    rung = (key, o.due_at, level)
                    assert rung not in self.fired, f"{key} rung {level} fired twice ({self.fired[rung]}, {now})"
                    self.fired[rung] = now
                    self.escalations += 1
                    if on_time and not o.wall_clock:
                        assert self.ref.is_open(now), f"{key} rung {level} paged at {now}, outside working time"
                elif level == "stall":
                    self.stalls.append(key)
                    reps = [x for x in seq if isinstance(x, int)]
                    chain = self.policy.chain(o.step)
                    assert (reps[-1] if reps else o.escalation_level) == len(chain.stages) + self.policy.escalation_max_repeats
                    after = next((x for x in d.state.open_steps if x.key == key), None)
                    assert after is not None and after.stalled and after.next_escalation_at is None
        # What a tick finishes is only what lapsed (掉保); what it opens is what fell due.
        assert all(x.result == "reclaimed" for x in d.change.finished), d.change.finished

    def check_change(self, before: CaseState | None, d: engine.Decision) -> None:
        """The change a decision returns is the state it moved to (head, history and version)."""
        s, c = d.state, d.change
        assert c.head == engine.head(s)
        assert c.version == s.version and c.case_id == s.case_id
        if before is not None:
            assert s.version == before.version + 1
            assert s.events == [*before.events, *c.events]
            assert s.done_steps == [*before.done_steps, *c.finished]
            new = [p for p in s.sent if p not in before.sent]
            assert sorted(new) == sorted([*(x.purpose for x in c.effects.sms), *(x.purpose for x in c.effects.notices)])
        self.projection = engine.merge(self.projection, c)
        assert self.projection == s.model_copy(update={"events": [], "sent": [], "handled": []}), (
            "the projection built from the changes differs from the case")

    def check_messages(self, d: engine.Decision, now: datetime, on_time: bool) -> None:
        """Reminders before meetings and follow-ups come when the policy says, or once they may."""
        p, s = self.policy, d.state
        by_command = now in self.command_times
        for n in d.change.effects.notices:
            parts = n.purpose.split(":")
            if parts[0] == "remind":
                which, who = parts[1], parts[-1]
                at = datetime.fromisoformat(":".join(parts[2:-1]))
                before = p.manager_reminder_before if who == "manager" else p.staff_reminder_before
                assert now < at, f"{n.purpose} at {now}: after the meeting"
                assert now >= at - before, f"{n.purpose} at {now}: earlier than {before} before"
                if on_time and not by_command:
                    assert now == at - before, f"{n.purpose} at {now}, want {at - before}"
                assert which in ("meeting", "measure")
            elif parts[0] == "followup":
                outcome = next(o for o in s.open_steps if o.step == StepName.outcome)
                want = self.ref.next_open(outcome.opened_at + p.followups[int(parts[1]) - 1])
                assert now >= want, f"{n.purpose} at {now}, due {want}"
                if on_time and not by_command:
                    assert now == want and self.ref.is_open(now), f"{n.purpose} at {now}, want {want}"
        for m in d.change.effects.sms:
            if m.template == "T4":
                at = datetime.fromisoformat(m.purpose.split(":", 2)[2])
                want = self.ref.latest_at_or_before(at - p.client_reminder_before)
                assert now < at and (now >= want or by_command), f"{m.purpose} at {now}, want {want}"
                if on_time and not by_command:
                    assert now == want, f"{m.purpose} at {now}, want {want}"
        self.record_messages(d, now)

    def record_messages(self, d: engine.Decision, now: datetime) -> None:
        self.all_notices += d.change.effects.notices
        for purpose in [*(x.purpose for x in d.change.effects.sms), *(x.purpose for x in d.change.effects.notices)]:
            assert purpose not in self.messages, f"{purpose} decided twice ({self.messages[purpose]}, {now})"
            self.messages[purpose] = now

    def check_callback_retry(self, before: CaseState, d: engine.Decision, now: datetime) -> None:
        s = d.state
        if s.callback_retry_at is not None and before.callback_retry_at is None:
            assert s.callback_retry_at == self.ref.next_open(self.ref.add(now, self.policy.callback_retry_interval))

    def check_case(self, s: CaseState, now: datetime) -> None:
        if s.status == CaseStatus.open:
            items = engine.agenda(s, now=now, policy=self.policy)
            assert items or all(o.stalled for o in s.open_steps), "an open case waits for no timer"
            assert [i.at for i in items] == sorted(i.at for i in items)
        else:
            assert s.open_steps == [] and engine.agenda(s, now=now, policy=self.policy) == []
        assert len({o.key for o in s.open_steps}) == len(s.open_steps)

    def remember(self, s: CaseState, now: datetime, fired: set[str]) -> None:
        fresh: dict[str, Rungs] = {}
        for o in s.open_steps:
            r = self.rungs.get(o.key)
            if o.key in fired:
                r = Rungs(due=o.due_at, level=o.escalation_level, last_fired=now)
            elif r is None or r.due != o.due_at or o.escalation_level < r.level:
                r = Rungs(due=o.due_at, level=o.escalation_level)
            elif o.escalation_level != r.level:
                r = Rungs(due=o.due_at, level=o.escalation_level, last_fired=r.last_fired)
            fresh[o.key] = r
        self.rungs = fresh

    # -- driving -----------------------------------------------------------------------------------

    def tick(self, now: datetime, *, on_time: bool) -> None:
        before = self.state
        d = engine.tick(before, now=now, policy=self.policy)
        self.check_tick(before, d, now, on_time)
        self.after(before, d, now, on_time, fired={e.data["key"] for e in d.change.events if e.kind == "escalation"})

    def after(self, before: CaseState, d: engine.Decision, now: datetime, on_time: bool,
              fired: set[str] | None = None) -> None:
        self.check_change(before, d)
        self.check_new_steps(before, d.state, now)
        self.check_callback_retry(before, d, now)
        self.check_messages(d, now, on_time)
        self.state = d.state
        self.remember(d.state, now, fired or set())
        self.check_plans(d.state)
        self.check_case(d.state, now)

    def advance(self, until: datetime, *, on_time: bool) -> None:
        """Time passes until `until`: timers fire on time (the workflow), or not at all and late (an outage)."""
        if on_time:
            for _ in range(500):
                items = engine.agenda(self.state, now=self.now, policy=self.policy)
                if not items or items[0].at > until:
                    break
                self.now = max(items[0].at, self.now)
                self.tick(self.now, on_time=True)
            else:
                raise AssertionError("more than 500 timers between two actions")
        self.now = until
        if not on_time:
            self.tick(until, on_time=False)

    def command(self, cmd: engine.Command, now: datetime) -> engine.Decision | None:
        before = self.state
        snapshot = before.model_dump()
        try:
            engine.check(before, cmd, now=now, policy=self.policy)
            d = engine.decide(before, cmd, now=now, policy=self.policy)
        except engine.Rejected:
            assert before.model_dump() == snapshot, "a rejected command changed the case"
            return None
        assert before.model_dump() == snapshot, "deciding changed the state it was given"
        if d.change.duplicate:
            assert d.state is before and not d.change.effects and not d.change.events
            return d
        self.command_times.add(now)
        # A staff action pages nobody by itself: rungs fire on their timers. Only a step whose due time
        # the action set anew (a callback out of attempts, a moved visit, a no-show) may be due at once.
        due_before = {o.key: o.due_at for o in before.open_steps}
        renewed = {o.key: o for o in d.state.open_steps if o.key not in due_before or due_before[o.key] != o.due_at}
        fired = set()
        for e in d.change.events:
            if e.kind == "escalation":
                key = e.data["key"]
                assert key in renewed, f"{e.text}: a staff action paged for {key}, whose due time it left as it was"
                rung = (key, renewed[key].due_at, e.data["level"])
                assert rung not in self.fired, f"{key} rung {e.data['level']} fired twice"
                self.fired[rung] = now
                fired.add(key)
        self.after(before, d, now, on_time=True, fired=fired)
        return d


# --- generated sequences ---------------------------------------------------------------------------


def _musts(**over: Any) -> dict[str, Any]:
    return {"true_needs": "儿童房", "measure_agreed": True, "visited_site": True, "visited_material_store": True,
            "seen_off": True, **over}


def _payload(name: StepName, now: datetime, scale: timedelta, rnd: st.DataObject) -> dict[str, Any]:
    later = (now + scale * rnd.draw(st.integers(1, 3000), label="later")).isoformat()
    options: dict[StepName, list[dict[str, Any]]] = {
        StepName.reception_review: [{"report": "客户想年底入住"}, {"report": "好", "corrections": "先递名片"}],
        StepName.callback: [{"reached": False}, {"reached": False},
                            {"reached": True, "meeting_at": later, "meeting_kind": "measure"},
                            {"reached": True, "meeting_at": later, "meeting_kind": "office_visit"},
                            {"reached": True, "meeting_at": later, "designer_id": OTHER_DESIGNER.id, "reason": "客户点名"}],
        StepName.assign_designer: [{}, {"designer_id": OTHER_DESIGNER.id, "reason": "客户点名"}],
        StepName.assign_assistant: [{}],
        StepName.contact: [{"meeting_at": later, "meeting_kind": "measure"},
                           {"meeting_at": later, "meeting_kind": "office_visit"}],
        StepName.arrival: [{}, {"gum": True, "recorder": True}],
        StepName.first_meeting: [_musts(measure_agreed=False, measure_reason="客户要商量"), _musts(measure_at=later)],
        StepName.measure: [{"result": "done"}, {"result": "no_show"}, {"result": "rescheduled", "measure_at": later}],
        StepName.debrief: [{"findings": "先问需求"}, {"findings": "好", "designer_corrections": "少讲案例"}],
        StepName.acknowledge: [{"note": "已改正"}],
        StepName.outcome: [{"outcome": "signed"}, {"outcome": "lost", "reason": "预算不够"}],
        StepName.lapse_review: [{"decision": "reclaim"}, {"decision": "extend", "reason": "客户出差", "until": later}],
    }
    return rnd.draw(st.sampled_from(options[name]), label=f"{name.value} payload")


def _owner(s: CaseState, o: OpenStep) -> StaffRef:
    if o.step == StepName.acknowledge and o.owner is not None:
        return o.owner
    return {Role.manager: MANAGER, Role.assistant_lead: LEAD}.get(o.owner_role, s.designer or DESIGNER)


_ids = itertools.count(1)


def _command(kind: str, s: CaseState, now: datetime, scale: timedelta, data: st.DataObject) -> engine.Command | None:
    rid = f"r{next(_ids)}" if data.draw(st.booleans(), label="with request id") else None
    if kind == "step":
        if not s.open_steps:
            return None
        o = data.draw(st.sampled_from(s.open_steps), label="step")
        return CompleteStep(actor=actor(_owner(s, o)), step=o.step, payload=_payload(o.step, now, scale, data),
                            staff=[OTHER_DESIGNER], request_id=rid,
                            first_suggestion=DESIGNER if o.step != StepName.assign_assistant else ASSISTANT)
    if kind == "note":
        return AddNote(actor=actor(data.draw(st.sampled_from(PEOPLE))), text="备注", request_id=rid)
    if kind == "reschedule":
        return Reschedule(actor=actor(data.draw(st.sampled_from([MANAGER, s.designer or DESIGNER, CONSULTANT]))),
                          target=data.draw(st.sampled_from(["meeting", "measure"])),
                          at=now + scale * data.draw(st.integers(-5, 3000)), request_id=rid)
    if kind == "reassign":
        role: Literal["designer", "assistant"] = data.draw(st.sampled_from(["designer", "assistant"]))
        staff = data.draw(st.sampled_from([OTHER_DESIGNER, DESIGNER] if role == "designer" else [OTHER_ASSISTANT, ASSISTANT]))
        return Reassign(actor=actor(data.draw(st.sampled_from([MANAGER, MANAGER, DESIGNER]))), role=role, staff=staff,
                        reason="客户要求", request_id=rid)
    if kind == "recording":
        return AttachRecording(actor=actor(MANAGER), recording_id=data.draw(st.integers(1, 3)),
                               content_type="audio/mpeg", size=2_000_000, request_id=rid)
    if kind == "close":
        outcome = data.draw(st.sampled_from(list(Outcome)))
        return CloseCase(actor=actor(MANAGER), outcome=outcome, request_id=rid,
                         reason="预算不够" if outcome == Outcome.lost else None)
    name = data.draw(st.sampled_from(list(StepName)))
    return CompleteStep(actor=actor(data.draw(st.sampled_from(PEOPLE))), step=name,
                        payload=_payload(name, now, scale, data), request_id=rid)


KINDS = ["step"] * 6 + ["wait"] * 2 + ["note", "reschedule", "reassign", "recording", "close", "repeat", "wrong", "auto"]


def _start(policy_name: str, scenario: Scenario, data: st.DataObject) -> tuple[Policy, Model]:
    policy = POLICIES[policy_name]
    scale = SCALE[policy_name]
    if policy_name != "fast" and data.draw(st.booleans(), label="near a close"):
        # Just before a close (lunch, evening): due times and rungs land exactly on the period's end,
        # which is not working time: the engine must move them to the next opening.
        day = ORIGIN[policy_name] + timedelta(days=data.draw(st.integers(0, 17), label="day"))
        close = data.draw(st.sampled_from([time(12, 0), time(12, 30), time(16, 0), time(18, 0)]), label="close")
        created = _utc(datetime.combine(day.date(), close, SHANGHAI)
                       - timedelta(minutes=5 * data.draw(st.integers(1, 14), label="minutes before")))
    else:
        created = _utc(ORIGIN[policy_name] + scale * data.draw(st.integers(0, 10 * 24 * 60), label="created"))
    extra: dict[str, Any] = {}
    if scenario == Scenario.office_visit:
        extra["meeting_at"] = created + scale * data.draw(st.integers(1, 3000), label="visit")
    if scenario == Scenario.site_office:
        extra["received_by"] = data.draw(st.sampled_from([SITE_LEAD, DESIGNER, ASSISTANT]))
    d = engine.start(IntakeInput(case_id=42, source=SOURCES[scenario], scenario=scenario, created_at=created,
                                 created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=policy, **extra))
    model = Model.begin(policy, d)
    model.now = created
    return policy, model


def run_sequence(policy_name: str, scenario: Scenario, data: st.DataObject, length: int) -> Model:
    policy, m = _start(policy_name, scenario, data)
    scale = SCALE[policy_name]
    last: engine.Command | None = None
    for _ in range(length):
        if m.state.status == CaseStatus.closed:
            break
        # Quiet, busy, or a long silence (a night, a weekend, the holiday week).
        gap = data.draw(st.sampled_from([0, 1, 5, 20, 60, 300, 900, 3000]), label="gap") * scale
        on_time = data.draw(st.sampled_from([True, True, True, False]), label="on time")
        m.advance(m.now + gap, on_time=on_time)
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        if kind == "wait":
            continue
        if kind == "auto":
            key = engine.auto_assign_step(m.state, policy)
            if key is not None:
                before = m.state
                auto = engine.auto_assign(before, DESIGNER, now=m.now, policy=policy)
                m.command_times.add(m.now)
                m.after(before, auto, m.now, on_time=True)
                assert auto.state.designer == DESIGNER and not any(o.key == key for o in auto.state.open_steps)
            continue
        cmd = last if kind == "repeat" else _command(kind, m.state, m.now, scale, data)
        if cmd is None:
            continue
        d = m.command(cmd, m.now)
        if kind == "repeat" and cmd.request_id:
            # The same request again (a retried HTTP call): answered, not applied.
            assert d is not None and d.change.duplicate, "a repeated request id was applied twice"
        if d is not None and not d.change.duplicate:
            last = cmd
    # Let the case run out on its timers: every open step climbs its chain on time, then stalls.
    m.advance(m.now + 7 * 24 * 60 * scale, on_time=True)
    return m


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(policy_name=st.sampled_from(["office", "lunch"]), scenario=st.sampled_from(list(Scenario)), data=st.data())
def test_every_rung_reminder_and_follow_up_comes_when_a_real_calendar_says(
    policy_name: str, scenario: Scenario, data: st.DataObject
) -> None:
    run_sequence(policy_name, scenario, data, length=data.draw(st.integers(1, 25), label="length"))


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=st.sampled_from(list(Scenario)), data=st.data())
def test_every_rung_reminder_and_follow_up_comes_when_the_fast_policy_says(scenario: Scenario, data: st.DataObject) -> None:
    run_sequence("fast", scenario, data, length=data.draw(st.integers(1, 25), label="length"))


# --- the mistakes that matter, by name ---------------------------------------------------------------


def _case(policy: Policy, created: datetime, scenario: Scenario = Scenario.remote) -> Model:
    d = engine.start(IntakeInput(case_id=7, source=SOURCES[scenario], scenario=scenario, created_at=created,
                                 created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR, policy=policy))
    m = Model.begin(policy, d)
    m.now = created
    return m


def _pages(m: Model, until: datetime) -> list[tuple[str, datetime]]:
    """Run the case on its timers until `until`; the escalation notices decided, with their times."""
    m.advance(until, on_time=True)
    return sorted(((p, t) for p, t in m.messages.items() if p.startswith(("esc:", "stalled:"))), key=lambda x: x[1])


def test_each_repeat_fires_one_interval_after_the_rung_before_it() -> None:
    """Guards: repeats count from the rung that fired (plan_escalation(step, repeat_from=now)), not all at
    once from the due time."""
    policy = fast_policy().model_copy(update={"escalation_max_repeats": 3})
    m = _case(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    due = m.state.open_steps[0].due_at
    assert due is not None
    pages = _pages(m, due + timedelta(minutes=10))
    every = policy.escalation.repeat_every
    assert every is not None
    assert pages == [
        ("esc:callback#1:1", due),
        ("esc:callback#1:2", due + timedelta(seconds=5)),
        ("esc:callback#1:3", due + timedelta(seconds=5) + every),
        ("esc:callback#1:4", due + timedelta(seconds=5) + 2 * every),
        ("esc:callback#1:5", due + timedelta(seconds=5) + 3 * every),
        ("stalled:callback#1", due + timedelta(seconds=5) + 4 * every),
    ]


def test_after_an_outage_one_late_tick_pages_once_then_repeats_an_interval_later() -> None:
    """Guards: no burst of catch-up pages after an outage; the next repeat counts from the late rung."""
    policy = fast_policy()
    m = _case(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    due = m.state.open_steps[0].due_at
    assert due is not None
    late = due + timedelta(minutes=30)  # the worker was down for half an hour
    m.advance(late, on_time=False)
    # the owner and the superior, both late (the stages count from the due time), no repeat yet
    assert sorted(p for p in m.messages if p.startswith("esc:")) == ["esc:callback#1:1", "esc:callback#1:2"]
    step = m.state.open_steps[0]
    assert step.next_escalation_at == late + policy.escalation.repeat_every  # type: ignore[operator]


def test_nobody_is_paged_outside_working_hours() -> None:
    """Guards: the shift into working time around every escalation rung (business(...) in plan_escalation).

    A lead at 17:50 on the Monday before the National Day holiday (Mon–Sat 09:00–18:00): the callback is
    due 15 working minutes later, so 09:05 on Tuesday 8 October; the superior hears 15 minutes after that;
    the hourly repeats run through the working day and stop at 18:00, the next one on Wednesday morning.
    """
    policy = POLICIES["office"]
    created = datetime(2030, 9, 30, 17, 50, tzinfo=SHANGHAI)
    m = _case(policy, created)
    due = m.state.open_steps[0].due_at
    assert due == datetime(2030, 10, 8, 9, 5, tzinfo=SHANGHAI)
    pages = _pages(m, datetime(2030, 10, 12, tzinfo=SHANGHAI))
    local = [(p, t.astimezone(SHANGHAI).strftime("%m-%d %H:%M")) for p, t in pages]
    assert local == [
        ("esc:callback#1:1", "10-08 09:05"),
        ("esc:callback#1:2", "10-08 09:20"),
        ("esc:callback#1:3", "10-08 10:20"),
        ("esc:callback#1:4", "10-08 11:20"),
        ("esc:callback#1:5", "10-08 12:20"),
        ("stalled:callback#1", "10-08 13:20"),
    ]
    # the repeats of a step late in the afternoon cross the night: 18:00 is the close, not working time
    m = _case(policy, datetime(2030, 10, 9, 16, 30, tzinfo=SHANGHAI))
    pages = _pages(m, datetime(2030, 10, 12, tzinfo=SHANGHAI))
    assert [t.astimezone(SHANGHAI).strftime("%m-%d %H:%M") for _, t in pages] == [
        "10-09 16:45", "10-09 17:00", "10-10 09:00", "10-10 10:00", "10-10 11:00", "10-10 12:00",
    ]
    assert all(m.ref.is_open(t) for _, t in pages), pages


@pytest.mark.parametrize("created, due", [
    # Friday 23:00 → Saturday 09:15 (Saturdays work).
    (datetime(2030, 9, 27, 23, 0, tzinfo=SHANGHAI), datetime(2030, 9, 28, 9, 15, tzinfo=SHANGHAI)),
    # Saturday 17:55 → the make-up Sunday 29 September (调休) 09:10.
    (datetime(2030, 9, 28, 17, 55, tzinfo=SHANGHAI), datetime(2030, 9, 29, 9, 10, tzinfo=SHANGHAI)),
    # During the holiday → the first working morning after it.
    (datetime(2030, 10, 3, 10, 0, tzinfo=SHANGHAI), datetime(2030, 10, 8, 9, 15, tzinfo=SHANGHAI)),
    # 17:45 → exactly the close, 18:00 (the rung then moves to the next morning).
    (datetime(2030, 10, 9, 17, 45, tzinfo=SHANGHAI), datetime(2030, 10, 9, 18, 0, tzinfo=SHANGHAI)),
])
def test_a_lead_out_of_hours_is_due_in_working_time(created: datetime, due: datetime) -> None:
    m = _case(POLICIES["office"], created)
    step = m.state.open_steps[0]
    assert step.due_at == due
    assert step.next_escalation_at is not None and m.ref.is_open(step.next_escalation_at)
    assert step.next_escalation_at == m.ref.next_open(due)


def test_walk_in_assignments_count_wall_clock_time_at_night() -> None:
    """A walk-in client is in the office: the assignments escalate by the minute, whatever the calendar."""
    policy = POLICIES["office"]
    created = datetime(2030, 10, 9, 19, 0, tzinfo=SHANGHAI)  # after hours
    m = _case(policy, created, Scenario.walk_in)
    for o in m.state.open_steps:
        assert o.wall_clock and o.due_at == created + policy.walk_in_assignment
        assert o.next_escalation_at == o.due_at
    pages = _pages(m, created + timedelta(minutes=40))
    assert ("esc:assign_designer#1:2", created + policy.walk_in_assignment + timedelta(minutes=15)) in pages


def test_follow_ups_and_the_client_reminder_fall_in_working_time() -> None:
    """Guards: follow-ups move into working time (business(...) around opened_at + followup), and the
    client's reminder comes on the last working moment at or before a day ahead of the meeting."""
    policy = POLICIES["office"]
    created = datetime(2030, 10, 20, 11, 0, tzinfo=SHANGHAI)  # a Sunday: a walk-in on a day off
    m = _case(policy, created, Scenario.walk_in)
    now = created + timedelta(minutes=5)
    m.advance(now, on_time=True)
    measure = datetime(2030, 10, 28, 10, 0, tzinfo=SHANGHAI)  # Monday 10:00: a day before is a Sunday
    for who, name, payload in [
        (MANAGER, StepName.assign_designer, {}),
        (LEAD, StepName.assign_assistant, {}),
        (DESIGNER, StepName.first_meeting, _musts(measure_at=measure.isoformat())),
        (MANAGER, StepName.debrief, {"findings": "先问需求"}),
    ]:
        done = m.command(CompleteStep(actor=actor(who), step=name, payload=payload,
                                      first_suggestion=DESIGNER if name == StepName.assign_designer else ASSISTANT), now)
        assert done is not None
    outcome = next(o for o in m.state.open_steps if o.step == StepName.outcome)
    assert outcome.opened_at == now
    m.advance(datetime(2030, 11, 10, tzinfo=SHANGHAI), on_time=True)
    local = {p: t.astimezone(SHANGHAI).strftime("%a %m-%d %H:%M") for p, t in m.messages.items()}
    # day 7 falls on a Sunday: the designer hears on Monday morning; day 15 is a working Monday
    assert local["followup:1"] == "Mon 10-28 09:00"
    assert local["followup:2"] == "Mon 11-04 11:05"
    # the client's T4 for Monday's measure: Saturday's close (Sunday is off), not Sunday 10:00
    assert local[f"T4:measure:{measure.isoformat()}"] == "Sat 10-26 18:00"
    # designer and assistant an hour before the measure, whatever the calendar (the meeting is then)
    assert local[f"remind:measure:{measure.isoformat()}:designer"] == "Mon 10-28 09:00"


def _remote_at_contact(policy: Policy, created: datetime) -> Model:
    """A remote case whose designer (and assistant) are assigned: `contact` is open, the designer's."""
    m = _case(policy, created)
    now = created + timedelta(seconds=1)
    m.advance(now, on_time=True)
    meet = (created + timedelta(days=3)).isoformat()
    for who, name, payload in [(MANAGER, StepName.callback, {"reached": True, "meeting_at": meet}),
                               (MANAGER, StepName.assign_designer, {}), (LEAD, StepName.assign_assistant, {})]:
        done = m.command(CompleteStep(actor=actor(who), step=name, payload=payload,
                                      first_suggestion=DESIGNER if name == StepName.assign_designer else ASSISTANT), now)
        assert done is not None
    assert {o.step for o in m.state.open_steps} == {StepName.contact}
    return m


def test_each_rung_pages_whom_the_chain_says_and_the_stall_tells_the_director() -> None:
    """Guards the targets of escalate(): owner, then the owner's superior (a manager's step: the director;
    a designer's step: the manager), the repeats to the chain's repeat target, the stall to the director,
    and what the timeline and the UI say of each."""
    policy = fast_policy().model_copy(update={"escalation_max_repeats": 1, "reclaim_at_level": None})
    # the manager's callback
    m = _case(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    step = m.state.open_steps[0]
    assert step.next_escalation == "提醒经理陈建国"
    d = engine.tick(m.state, now=step.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    [ev] = [e for e in d.change.events if e.kind == "escalation"]
    assert (ev.step, ev.text) == (StepName.callback, "经理回访到期 → 提醒经理陈建国")
    assert ev.data == {"key": "callback#1", "level": 1, "target": "owner", "recipient_id": MANAGER.id}
    [n] = d.change.effects.notices
    assert (n.purpose, n.recipient_id, n.recipient_role) == ("esc:callback#1:1", MANAGER.id, None)
    assert n.text.startswith("提醒：客户 #7「经理回访」已到期")
    step = d.state.open_steps[0]
    assert step.overdue and step.next_escalation == "通知总经理赵总"
    d = engine.tick(d.state, now=step.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    [ev] = [e for e in d.change.events if e.kind == "escalation"]
    assert ev.text == "经理回访超时 → 通知总经理赵总"
    assert ev.data == {"key": "callback#1", "level": 2, "target": "superior", "recipient_id": DIRECTOR.id}
    [n] = d.change.effects.notices
    assert (n.recipient_id, n.text[:3]) == (DIRECTOR.id, "升级：")
    step = d.state.open_steps[0]
    assert step.next_escalation == "通知总经理赵总"  # the one repeat
    d = engine.tick(d.state, now=step.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    step = d.state.open_steps[0]
    assert step.escalation_level == 3 and step.next_escalation == "搁置并通知总经理"
    d = engine.tick(d.state, now=step.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    [ev] = d.change.events
    assert (ev.kind, ev.step, ev.data) == ("stalled", StepName.callback, {"key": "callback#1", "level": 3})
    [n] = d.change.effects.notices
    assert (n.purpose, n.recipient_id, n.recipient_role) == ("stalled:callback#1", DIRECTOR.id, None)
    assert n.text.startswith("搁置：客户 #7「经理回访」")
    # the designer's contact: owner, then the manager (the designer's superior)
    m = _remote_at_contact(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    contact = m.state.open_steps[0]
    assert contact.next_escalation == "提醒设计师周一鸣"
    d = engine.tick(m.state, now=contact.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    assert [(n.recipient_id, n.recipient_role) for n in d.change.effects.notices] == [(DESIGNER.id, None)]
    contact = d.state.open_steps[0]
    assert contact.next_escalation == "通知经理陈建国"
    d = engine.tick(d.state, now=contact.next_escalation_at, policy=policy)  # type: ignore[arg-type]
    [ev] = [e for e in d.change.events if e.kind == "escalation"]
    assert ev.data == {"key": "contact#1", "level": 2, "target": "superior", "recipient_id": MANAGER.id}
    # without a director on the case, the role is named, so the outbox finds one
    s = d.state.model_copy(update={"director": None})
    last = engine.tick(s, now=d.state.open_steps[0].next_escalation_at, policy=policy)  # type: ignore[arg-type]
    later = engine.tick(last.state, now=last.state.open_steps[0].next_escalation_at, policy=policy)  # type: ignore[arg-type]
    [n] = later.change.effects.notices
    assert (n.purpose, n.recipient_id, n.recipient_role) == ("stalled:contact#1", None, Role.director)


def test_the_designer_lapses_at_the_policy_rung_not_later() -> None:
    """Guards the reclaim level (escalation_level >= reclaim_at_level): 掉保 on the first repeat (level 3)."""
    policy = fast_policy()
    m = _remote_at_contact(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    due = m.state.open_steps[0].due_at
    assert due is not None and policy.reclaim_at_level == 3
    m.advance(due + timedelta(minutes=5), on_time=True)
    reclaimed = m.messages["reclaimed:contact#1"]
    assert reclaimed == due + timedelta(seconds=5) + policy.escalation.repeat_every  # type: ignore[operator]
    assert "esc:contact#1:4" not in m.messages and m.state.designer is None


def test_a_moved_meeting_restarts_its_steps_chain_from_the_new_time() -> None:
    """Guards set_due: a rescheduled first meeting is due at the new time plus the grace, not overdue, not
    stalled, its first rung at that due time; an office visit moved before an assignment's own due time
    pulls that assignment's due time to the visit."""
    policy = fast_policy().model_copy(update={"reclaim_at_level": None})  # the designer keeps the case
    m = _remote_at_contact(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    now = m.now
    meet = now + timedelta(minutes=30)
    assert m.command(CompleteStep(actor=actor(DESIGNER), step=StepName.contact,
                                  payload={"meeting_at": meet.isoformat(), "meeting_kind": "measure"}), now)
    late = meet + policy.meeting_grace + timedelta(minutes=5)
    m.advance(late, on_time=True)  # the first meeting escalates and stalls
    fm = next(o for o in m.state.open_steps if o.step == StepName.first_meeting)
    assert fm.stalled and fm.overdue
    moved = late + timedelta(hours=2)
    d = m.command(Reschedule(actor=actor(MANAGER), target="meeting", at=moved, reason="客户出差"), late)
    assert d is not None
    fm = next(o for o in d.state.open_steps if o.step == StepName.first_meeting)
    assert (fm.due_at, fm.escalation_level, fm.overdue, fm.stalled) == (moved + policy.meeting_grace, 0, False, False)
    assert fm.next_escalation_at == fm.due_at and fm.next_escalation == "提醒设计师周一鸣"
    # an office visit moved to five seconds from now: both assignments are due then, not in 20 / 30 s
    created = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
    v = engine.start(IntakeInput(case_id=8, source=Source.marketing, scenario=Scenario.office_visit,
                                 created_at=created, created_by=CONSULTANT, manager=MANAGER, director=DIRECTOR,
                                 policy=policy, meeting_at=created + timedelta(days=2)))
    m = Model.begin(policy, v)
    m.now = created
    assert m.command(CompleteStep(actor=actor(MANAGER), step=StepName.callback, payload={"reached": True}), created)
    visit = created + timedelta(seconds=5)
    d = m.command(Reschedule(actor=actor(MANAGER), target="meeting", at=visit), created)
    assert d is not None
    dues = {o.step: o.due_at for o in d.state.open_steps}
    assert dues[StepName.assign_designer] == dues[StepName.assign_assistant] == visit
    assert dues[StepName.arrival] == visit + policy.meeting_grace


def test_a_step_with_a_chain_of_its_own_follows_that_chain() -> None:
    """Guards policy.chain(step) in plan_escalation: the lunch policy's callback has three stages (owner,
    superior after 10 min, the director after 50 min) and repeats every 40 min to the director."""
    policy = POLICIES["lunch"]
    m = _case(policy, datetime(2030, 10, 9, 9, 0, tzinfo=SHANGHAI))
    due = m.state.open_steps[0].due_at
    assert due == datetime(2030, 10, 9, 9, 15, tzinfo=SHANGHAI)
    pages = _pages(m, datetime(2030, 10, 10, tzinfo=SHANGHAI))
    local = [(p, t.astimezone(SHANGHAI).strftime("%H:%M")) for p, t in pages]
    assert local == [("esc:callback#1:1", "09:15"), ("esc:callback#1:2", "09:25"), ("esc:callback#1:3", "10:05"),
                     ("esc:callback#1:4", "10:45"), ("esc:callback#1:5", "11:25"), ("stalled:callback#1", "13:35")]


def test_out_of_attempts_the_callback_reopens_overdue_at_the_end_of_its_chain() -> None:
    """Guards set_due(level=...): the callback reopened after the last attempt is overdue at once, however
    short the chain (here one stage), and its next rung is a repeat."""
    one = EscalationChain(stages=[EscalationStage(after=timedelta(0), target="owner")], repeat_every=timedelta(seconds=20))
    policy = fast_policy().model_copy(update={"escalation": one, "callback_max_attempts": 1})
    m = _case(policy, datetime(2030, 5, 6, 9, 0, tzinfo=UTC))
    now = m.now + timedelta(seconds=1)
    d = m.command(CompleteStep(actor=actor(MANAGER), step=StepName.callback, payload={"reached": False}), now)
    assert d is not None
    [cb] = d.state.open_steps
    assert (cb.key, cb.escalation_level, cb.overdue, cb.due_at) == ("callback#2", 1, True, now)
    assert cb.next_escalation_at == now + timedelta(seconds=20) and d.state.overdue


def test_a_notice_to_a_role_names_the_role_when_nobody_is_on_the_case() -> None:
    """Guards the role of an escalation notice (the outbox finds the person by role when the case has
    nobody in it): the director for a manager's step, the manager for a designer's."""
    policy = fast_policy()
    created = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
    d = engine.start(IntakeInput(case_id=9, source=Source.online, scenario=Scenario.remote, created_at=created,
                                 created_by=CONSULTANT, manager=None, director=None, policy=policy))
    m = Model.begin(policy, d)
    m.now = created
    m.advance(created + timedelta(seconds=16), on_time=True)
    rungs = [(n.purpose, n.recipient_id, n.recipient_role) for n in m.all_notices if n.purpose.startswith("esc:")]
    assert rungs == [("esc:callback#1:1", None, Role.manager), ("esc:callback#1:2", None, Role.director)]
