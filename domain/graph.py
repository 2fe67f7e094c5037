"""Step graphs of the four scenarios, as data (SPEC §3).

A step opens when every step in `after` is done. The workflow interprets these graphs; adding a
scenario means adding a graph here, not writing a new workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from domain.enums import Role, Scenario, StepName

# "corrected": the person a correction was sent to (set when the step opens: designer, assistant or
# whoever received the client at the compound office).
Owner = Literal["manager", "assistant_lead", "case_designer", "corrected"]
# How the due time of a step is computed when it opens:
#   duration — policy duration from opening (business time unless wall_clock)
#   meeting  — the agreed meeting time (or the opening, whichever is later) plus the grace
#   measure  — the agreed measure time plus the grace
#   none     — no due time (waits for the outcome; follow-up reminders instead)
DueRule = Literal["duration", "meeting", "measure", "none"]


@dataclass(frozen=True)
class StepSpec:
    """One step of a scenario: owner, dependencies and due rule."""

    step: StepName
    owner: Owner
    after: tuple[StepName, ...] = ()
    due: DueRule = "duration"
    wall_clock: bool = False
    # Also due no later than the agreed meeting time (office visits: assignments before the visit).
    before_meeting: bool = False
    # Opened by another step's completion (measure: when the first meeting books one), not by `after`.
    triggered: bool = False


@dataclass(frozen=True)
class ScenarioGraph:
    """All steps of one scenario, in the order a case normally moves through them."""

    scenario: Scenario
    steps: tuple[StepSpec, ...]
    # T1 names the assistant when one is assigned by then (False: the seed's site-office wording).
    t1_names_assistant: bool = True
    # The client is physically at the company when the case starts (walk-in).
    client_present_at_start: bool = False
    # Where `measure` opens from: the first meeting's agreed measure time (all scenarios).
    side_steps: frozenset[StepName] = field(
        default_factory=lambda: frozenset(
            {StepName.assign_assistant, StepName.measure, StepName.acknowledge, StepName.lapse_review}
        )
    )

    def spec(self, step: StepName) -> StepSpec | None:
        """The spec of a step in this scenario, if it has one."""
        for s in self.steps:
            if s.step == step:
                return s
        return None

    def roots(self) -> list[StepSpec]:
        """Steps that open when the case starts."""
        return [s for s in self.steps if not s.after and not s.triggered]

    def unlocked_by(self, done: set[StepName]) -> list[StepSpec]:
        """Steps whose dependencies are all in `done` (excluding those already done)."""
        return [
            s for s in self.steps if s.after and not s.triggered and s.step not in done and set(s.after) <= done
        ]

    def order(self, step: StepName) -> int:
        """Position of a step in this scenario (for the stage)."""
        for i, s in enumerate(self.steps):
            if s.step == step:
                return i
        return len(self.steps)


_S = StepName
# Opened by a correction (reception review, debrief) for the corrected person: "做记录并改正".
_ACK = StepSpec(_S.acknowledge, "corrected", triggered=True)
# Opened by a late first meeting (version 2): the manager reclaims (掉保) or extends with a reason.
_LAPSE = StepSpec(_S.lapse_review, "manager", triggered=True)
# Where the graph has no contact of its own (office visits, walk-ins): a new designer's call to introduce
# themself after a change of designer or assistant (T5, version 2).
_REINTRODUCE = StepSpec(_S.contact, "case_designer", triggered=True)

GRAPHS: dict[Scenario, ScenarioGraph] = {
    # 情况一: lead from marketing/online; the client has never been to the company.
    Scenario.remote: ScenarioGraph(
        scenario=Scenario.remote,
        steps=(
            StepSpec(_S.callback, "manager"),
            StepSpec(_S.assign_designer, "manager", after=(_S.callback,)),
            StepSpec(_S.assign_assistant, "assistant_lead", after=(_S.callback,)),
            # Seed 一c before d: T1 introduces the designer *and* the assistant.
            StepSpec(_S.contact, "case_designer", after=(_S.assign_designer, _S.assign_assistant)),
            StepSpec(_S.first_meeting, "case_designer", after=(_S.contact,), due="meeting"),
            StepSpec(_S.measure, "case_designer", due="measure", triggered=True),
            StepSpec(_S.debrief, "manager", after=(_S.first_meeting,)),
            _ACK,
            StepSpec(_S.outcome, "manager", after=(_S.debrief,)),
            _LAPSE,
        ),
    ),
    # 情况二: lead from marketing/online; the client will come to the company.
    Scenario.office_visit: ScenarioGraph(
        scenario=Scenario.office_visit,
        steps=(
            StepSpec(_S.callback, "manager"),
            StepSpec(_S.assign_designer, "manager", after=(_S.callback,), before_meeting=True),
            StepSpec(_S.assign_assistant, "assistant_lead", after=(_S.callback,), before_meeting=True),
            StepSpec(_S.arrival, "manager", after=(_S.callback,), due="meeting"),
            # Seed 二d/e: the manager introduces designer and assistant together.
            StepSpec(
                _S.first_meeting, "case_designer", after=(_S.arrival, _S.assign_designer, _S.assign_assistant),
                due="meeting",
            ),
            StepSpec(_S.measure, "case_designer", due="measure", triggered=True),
            StepSpec(_S.debrief, "manager", after=(_S.first_meeting,)),
            _ACK,
            StepSpec(_S.outcome, "manager", after=(_S.debrief,)),
            _LAPSE,
            _REINTRODUCE,
        ),
    ),
    # 情况三: received at a compound sales office.
    Scenario.site_office: ScenarioGraph(
        scenario=Scenario.site_office,
        steps=(
            StepSpec(_S.reception_review, "manager"),
            StepSpec(_S.callback, "manager", after=(_S.reception_review,)),
            StepSpec(_S.assign_designer, "manager", after=(_S.callback,)),
            StepSpec(_S.contact, "case_designer", after=(_S.assign_designer,)),
            StepSpec(_S.assign_assistant, "assistant_lead", after=(_S.assign_designer,)),
            StepSpec(_S.first_meeting, "case_designer", after=(_S.contact,), due="meeting"),
            StepSpec(_S.measure, "case_designer", due="measure", triggered=True),
            StepSpec(_S.debrief, "manager", after=(_S.first_meeting,)),
            _ACK,
            StepSpec(_S.outcome, "manager", after=(_S.debrief,)),
            _LAPSE,
        ),
        t1_names_assistant=False,
    ),
    # B 自然客户: walked into the company; arrival is the creation itself.
    Scenario.walk_in: ScenarioGraph(
        scenario=Scenario.walk_in,
        steps=(
            StepSpec(_S.assign_designer, "manager", wall_clock=True),
            StepSpec(_S.assign_assistant, "assistant_lead", wall_clock=True),
            # The manager introduces designer and assistant together (as in 情况二).
            StepSpec(
                _S.first_meeting, "case_designer", after=(_S.assign_designer, _S.assign_assistant), due="meeting",
                wall_clock=True,
            ),
            StepSpec(_S.measure, "case_designer", due="measure", triggered=True),
            StepSpec(_S.debrief, "manager", after=(_S.first_meeting,)),
            _ACK,
            StepSpec(_S.outcome, "manager", after=(_S.debrief,)),
            _LAPSE,
            _REINTRODUCE,
        ),
        client_present_at_start=True,
    ),
}

# Every step in the order a case moves through them, whatever its scenario (reports list steps so):
# each graph's dependencies point forward in it; a side step sits after the step that opens it (the
# lapse review after a late first meeting, the acknowledgement after the correction of a debrief).
PROCESS_ORDER: tuple[StepName, ...] = (
    _S.reception_review,
    _S.callback,
    _S.assign_designer,
    _S.assign_assistant,
    _S.contact,
    _S.arrival,
    _S.first_meeting,
    _S.lapse_review,
    _S.measure,
    _S.debrief,
    _S.acknowledge,
    _S.outcome,
)


def process_position(step: StepName) -> int:
    """Where a step comes in the process (PROCESS_ORDER), for listing steps in that order."""
    return PROCESS_ORDER.index(step)


OWNER_ROLES: dict[Owner, Role] = {
    "manager": Role.manager,
    "assistant_lead": Role.assistant_lead,
    "case_designer": Role.designer,
}
# Owners whose role is known from the graph alone (a correction's owner is whoever was corrected).
STATIC_OWNERS = frozenset(OWNER_ROLES)


def graph(scenario: Scenario) -> ScenarioGraph:
    """The step graph of a scenario."""
    return GRAPHS[scenario]


def initial_stage(scenario: Scenario) -> str:
    """The stage a new case of this scenario starts in (first root step)."""
    return graph(scenario).roots()[0].step.value


def stage_of(scenario: Scenario, open_steps: list[StepName], fallback: str) -> str:
    """The case's stage: its earliest open main-line step, else its earliest open step, else fallback."""
    g = graph(scenario)
    main = [s for s in open_steps if s not in g.side_steps]
    pool = main or list(open_steps)
    if not pool:
        return fallback
    return min(pool, key=g.order).value
