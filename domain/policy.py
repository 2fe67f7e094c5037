"""The SLA policy (SPEC §4, §5): durations, escalation chains, reminders, calendar, allocation table.

A policy is plain data. It is copied into a case when the case starts, so a later edit of the policy
file never changes a running case.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.enums import Level, StepName


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CalendarPolicy(_Model):
    """Working hours per weekday (0 = Monday), time zone, holidays and make-up working days (调休)."""

    timezone: str = "Asia/Shanghai"
    always_open: bool = False
    hours: dict[int, list[tuple[time, time]]] = Field(
        default_factory=lambda: {d: [(time(9, 0), time(18, 0))] for d in range(6)}
    )
    holidays: list[date] = Field(default_factory=list)
    makeup_workdays: list[date] = Field(default_factory=list)
    makeup_hours: list[tuple[time, time]] = Field(default_factory=lambda: [(time(9, 0), time(18, 0))])

    @model_validator(mode="after")
    def _check(self) -> CalendarPolicy:
        for day, periods in self.hours.items():
            if not 0 <= day <= 6:
                raise ValueError(f"weekday {day} is not 0..6")
            for start, end in periods:
                if start >= end:
                    raise ValueError(f"working period {start}-{end} on weekday {day} is empty")
        if not self.always_open and not any(self.hours.values()) and not self.makeup_workdays:
            raise ValueError("the calendar has no working time at all")
        return self


EscalationTarget = Literal["owner", "superior", "director"]


class EscalationStage(_Model):
    """One rung of a chain: `after` the step's due time, tell `target`."""

    after: timedelta
    target: EscalationTarget


class EscalationChain(_Model):
    """At due remind the owner; +15 min notify the superior; then repeat every hour until done."""

    stages: list[EscalationStage] = Field(
        default_factory=lambda: [
            EscalationStage(after=timedelta(0), target="owner"),
            EscalationStage(after=timedelta(minutes=15), target="superior"),
        ]
    )
    repeat_every: timedelta | None = timedelta(hours=1)
    repeat_target: EscalationTarget = "superior"


class QuietHours(_Model):
    """When clients are not texted (local time of the calendar's zone); the window may span midnight."""

    start: time = time(21, 0)
    end: time = time(8, 30)

    @model_validator(mode="after")
    def _check(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("the quiet window is empty (start == end); use null to turn it off")
        return self


class BudgetBand(_Model):
    """Budgets (in yuan) from `min_budget` up need at least `level`."""

    min_budget: int
    level: Level


def _default_durations() -> dict[StepName, timedelta]:
    return {
        StepName.reception_review: timedelta(minutes=30),
        StepName.callback: timedelta(minutes=15),
        StepName.assign_designer: timedelta(minutes=30),
        StepName.assign_assistant: timedelta(minutes=60),
        StepName.contact: timedelta(hours=2),
        StepName.debrief: timedelta(hours=24),
        # The corrected person confirms a correction (做记录并改正) within a working day.
        StepName.acknowledge: timedelta(hours=9),
        # Waiting for the outcome: about three working weeks (9 h a day) before the manager is reminded.
        StepName.outcome: timedelta(hours=135),
    }


class Policy(_Model):
    """Everything time- and allocation-related that the company may tune."""

    name: str = "default"
    calendar: CalendarPolicy = Field(default_factory=CalendarPolicy)
    durations: dict[StepName, timedelta] = Field(default_factory=_default_durations)
    # Walk-in clients are waiting in the office: these count wall-clock time.
    walk_in_assignment: timedelta = timedelta(minutes=10)
    # Meetings (arrival, first meeting, measure) are due at their agreed time plus this grace.
    meeting_grace: timedelta = timedelta(hours=2)
    callback_retry_interval: timedelta = timedelta(minutes=30)
    callback_max_attempts: int = Field(default=3, ge=1)
    escalation: EscalationChain = Field(default_factory=EscalationChain)
    escalation_overrides: dict[StepName, EscalationChain] = Field(default_factory=dict)
    client_reminder_before: timedelta = timedelta(days=1)
    staff_reminder_before: timedelta = timedelta(hours=1)
    manager_reminder_before: timedelta = timedelta(minutes=15)
    followups: list[timedelta] = Field(default_factory=lambda: [timedelta(days=7), timedelta(days=15)])
    # 情况二: the manager picks designer and assistant at the office (seed 二b/d), so both assignments are
    # due at the visit; while still open, their owners are reminded this long before it.
    assignment_reminders_before: list[timedelta] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(hours=1)]
    )
    # Client SMS that fall inside this window wait for its end (None: text at any hour).
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    # Staff notices outside working hours wait for the person's next working start, except those about
    # these steps (and wall-clock steps: a walk-in client is waiting).
    urgent_steps: list[StepName] = Field(default_factory=list)
    # A client gets no two texts about the same meeting within this: T4 is skipped when T1/T2/T5
    # announced that meeting less than this before the reminder would go.
    message_spacing: timedelta = timedelta(days=1)
    # Allocation (客户分配制度)
    default_level: Level = Level.designer
    level_by_budget: list[BudgetBand] = Field(
        default_factory=lambda: [
            BudgetBand(min_budget=0, level=Level.junior),
            BudgetBand(min_budget=100_000, level=Level.designer),
            BudgetBand(min_budget=300_000, level=Level.senior),
            BudgetBand(min_budget=800_000, level=Level.chief),
        ]
    )
    max_open_cases: dict[Level, int] = Field(
        default_factory=lambda: {Level.chief: 8, Level.senior: 10, Level.designer: 12, Level.junior: 6}
    )
    auto_assign_designer: bool = False
    # Automatic reclaim (掉保/公海): when the designer's `contact` reaches this escalation level (the
    # designer never called), the case goes back to the manager's `assign_designer` and the lapse is
    # recorded against the designer; a late `first_meeting` at this level asks the manager instead
    # (reclaim, or extend with a reason). None turns both off. Level 1 = owner reminded, 2 = superior
    # told, 3 = first repeat. (Cases started before engine version 2 reclaim a late first meeting too.)
    reclaim_at_level: int | None = Field(default=3, ge=1)
    # How long one attempt to hand a message to the provider may take before Temporal retries it
    # (a worker that died mid-send is noticed after this; the outbox makes the retry harmless).
    send_attempt_timeout: timedelta = timedelta(seconds=60)
    # How long a new case's workflow waits for the API to commit its row before ending as an orphan.
    case_row_wait: timedelta = timedelta(minutes=2)
    # A history longer than this continues as new (the server also suggests it).
    continue_as_new_after_events: int = Field(default=2000, ge=200)
    # After the chain's stages, a late step's escalation repeats at most this often; then the step is
    # marked stalled and the director told once (a case left open must not page anyone forever).
    escalation_max_repeats: int = Field(default=8, ge=0)
    # The API writes what an update changed at once; the workflow checks it in this long after (and
    # writes at once what its timers change).
    projection_grace: timedelta = timedelta(seconds=30)
    # The workflow's write of a change retries until the database answers, waiting at most this long
    # between tries (doubling from one second): how soon after an outage the projection catches up.
    projection_retry_max: timedelta = timedelta(minutes=1)
    # Timeline entries the workflow keeps once they are in PostgreSQL (older ones live there only).
    events_kept: int = Field(default=30, ge=5)

    def duration(self, step: StepName) -> timedelta:
        """The policy duration of a step (missing steps fall back to the SPEC defaults)."""
        return self.durations.get(step) or _default_durations().get(step, timedelta(hours=1))

    def chain(self, step: StepName) -> EscalationChain:
        """The escalation chain in force for a step."""
        return self.escalation_overrides.get(step, self.escalation)

    def level_for_budget(self, budget: int | None) -> Level:
        """The minimum designer level for a budget, from the policy table."""
        if budget is None:
            return self.default_level
        level = self.default_level
        best = -1
        for band in self.level_by_budget:
            if budget >= band.min_budget and band.min_budget > best:
                best, level = band.min_budget, band.level
        return level


def parse_policy(text: str) -> Policy:
    """Parse a YAML policy document; unknown keys are an error so typos don't pass silently."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError("a policy file must be a YAML mapping")
    return Policy.model_validate(data)


def fast_policy() -> Policy:
    """Seconds instead of minutes, calendar open around the clock: for tests and demos."""
    return Policy(
        name="fast",
        calendar=CalendarPolicy(always_open=True),
        durations={
            StepName.reception_review: timedelta(seconds=20),
            StepName.callback: timedelta(seconds=10),
            StepName.assign_designer: timedelta(seconds=20),
            StepName.assign_assistant: timedelta(seconds=30),
            StepName.contact: timedelta(seconds=30),
            StepName.debrief: timedelta(seconds=60),
            StepName.acknowledge: timedelta(seconds=60),
            StepName.outcome: timedelta(seconds=300),
        },
        walk_in_assignment=timedelta(seconds=20),
        meeting_grace=timedelta(seconds=30),
        callback_retry_interval=timedelta(seconds=5),
        callback_max_attempts=3,
        escalation=EscalationChain(
            stages=[
                EscalationStage(after=timedelta(0), target="owner"),
                EscalationStage(after=timedelta(seconds=5), target="superior"),
            ],
            repeat_every=timedelta(seconds=20),
        ),
        client_reminder_before=timedelta(seconds=60),
        staff_reminder_before=timedelta(seconds=20),
        manager_reminder_before=timedelta(seconds=10),
        followups=[timedelta(seconds=60), timedelta(seconds=120)],
        assignment_reminders_before=[timedelta(seconds=60), timedelta(seconds=20)],
        quiet_hours=None,
        message_spacing=timedelta(seconds=60),
        send_attempt_timeout=timedelta(seconds=10),
        case_row_wait=timedelta(seconds=10),
        projection_grace=timedelta(seconds=5),
        projection_retry_max=timedelta(seconds=2),
    )
