"""Saved histories of every path replay against the current workflow code.

A change that would break running cases (non-determinism) fails here, for the cases of every version
whose histories are kept (tests/workflows/histories/<set>/, oldest to newest). The newest set must have
been recorded from the workflows/ and domain/ code as it is now, and cover every path of a case:
re-record with `make histories` after changing either, and keep the older sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from domain.models import ENGINE_VERSION
from tests.support.keys import encrypted_converter
from tests.workflows.history_sets import (
    HISTORIES,
    RECORD_COMMAND,
    REQUIRED_PATHS,
    history_files,
    manifest,
    sets,
    source_hash,
)
from worker import workflow_runner
from workflows.intake import IntakeWorkflow

ALL = history_files()


def test_every_scenario_has_a_saved_history() -> None:
    names = {p.stem for p in ALL}
    assert {"remote_signed", "office_visit_lost", "site_office_signed", "walk_in_lost"} <= names


# The full sandbox (it stops a workflow that reads the clock or randomness itself) and the worker's own
# runner (the workflows package passed through: what a running case replays on after a restart).
RUNNERS = {"full-sandbox": SandboxedWorkflowRunner(), "worker-runner": workflow_runner()}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", ALL, ids=[p.relative_to(HISTORIES).as_posix() for p in ALL])
async def test_replay(path: Path, runner: str) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    # Encrypted histories (and plain ones from before encryption) replay with the codec's keys.
    replayer = Replayer(workflows=[IntakeWorkflow], data_converter=encrypted_converter(),
                        workflow_runner=RUNNERS[runner])
    await replayer.replay_workflow(history)


def test_the_newest_histories_were_recorded_from_this_code() -> None:
    """workflows/ or domain/ changed without new histories: the replay test would only prove that the
    old cases still run, not that the new code's own paths are deterministic."""
    assert sets(), f"no recorded set of histories: run {RECORD_COMMAND}"
    newest = sets()[-1]
    recorded = manifest(newest)["source_hash"]
    assert recorded == source_hash(), (
        f"workflows/ or domain/ changed since the newest replay histories ({newest.relative_to(HISTORIES)}) "
        f"were recorded. Record a new set with one command: {RECORD_COMMAND}. It adds "
        "tests/workflows/histories/<time>-<hash>/ beside the others: commit it and keep the older sets, "
        "which prove that cases started on older code still replay."
    )


def test_the_newest_histories_cover_every_path() -> None:
    newest = sets()[-1]
    m = manifest(newest)
    files = {p.name for p in newest.glob("*.json")} - {"manifest.json"}
    assert files == set(m["histories"]), "the manifest and the set's files differ"
    covered = {path for h in m["histories"].values() for path in h["covers"]}
    assert REQUIRED_PATHS <= covered, f"not covered: {sorted(REQUIRED_PATHS - covered)}"
    # Each rule version's paths from cases of that version (version-1 cases still run).
    for h in m["histories"].values():
        v2 = [p.startswith("v2_") for p in h["covers"]]
        assert all(v2) or not any(v2), h
        assert h["engine_version"] == (ENGINE_VERSION if all(v2) and v2 else 1), h
    # What the histories themselves show, without decoding a payload: the updates, the activities,
    # the timers, and a run that continued as new.
    text = "\n".join((newest / f).read_text(encoding="utf-8") for f in files)
    events = [e for f in files for e in json.loads((newest / f).read_text(encoding="utf-8"))["events"]]
    kinds = {e["eventType"] for e in events}
    assert {"EVENT_TYPE_TIMER_FIRED", "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW",
            "EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED", "EVENT_TYPE_ACTIVITY_TASK_COMPLETED"} <= kinds
    for name in ("complete_step", "reschedule", "reassign", "add_note", "attach_recording", "close",
                 "apply_change", "suggest_designers"):
        assert f'"name": "{name}"' in text, f"no {name} in the newest histories"
