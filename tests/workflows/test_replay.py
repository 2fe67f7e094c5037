"""Saved histories of every scenario replay against the current workflow code.

A change that would break running cases (non-determinism) fails here. Refresh the files with
`RECORD_HISTORIES=1 pytest tests/workflows/test_scenarios.py` only for a deliberate, versioned change.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.support.keys import encrypted_converter
from workflows.intake import IntakeWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_scenario_has_a_saved_history() -> None:
    names = {p.stem for p in HISTORIES}
    assert {"remote_signed", "office_visit_lost", "site_office_signed", "walk_in_lost"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    # Encrypted histories (and plain ones from before encryption) replay with the codec's keys.
    replayer = Replayer(workflows=[IntakeWorkflow], data_converter=encrypted_converter())
    await replayer.replay_workflow(history)
