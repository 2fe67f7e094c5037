"""The process order of the steps (reports list steps in it) agrees with every scenario's graph."""

from __future__ import annotations

from domain.enums import Scenario, StepName
from domain.graph import GRAPHS, PROCESS_ORDER, process_position


def test_every_step_once() -> None:
    assert sorted(PROCESS_ORDER) == sorted(StepName)
    assert len(set(PROCESS_ORDER)) == len(PROCESS_ORDER)


def test_every_dependency_comes_before_the_step_it_opens() -> None:
    for scenario, g in GRAPHS.items():
        for spec in g.steps:
            for before in spec.after:
                assert process_position(before) < process_position(spec.step), (scenario, before, spec.step)


def test_the_main_line_of_each_scenario_runs_forward() -> None:
    # the steps a case of each scenario normally moves through, as the graph lists them
    for scenario in Scenario:
        g = GRAPHS[scenario]
        main = [s.step for s in g.steps if not s.triggered and s.step not in g.side_steps]
        assert main == sorted(main, key=process_position), scenario
