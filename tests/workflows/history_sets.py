"""Saved replay histories, in sets: tests/workflows/histories/<set>/*.json (+ manifest.json).

A set is what one run of the recorder (`make histories`) saved from one version of the code. Every set
keeps replaying (the cases that ran on an older version are still out there); the newest set carries a
manifest with a hash of workflows/ and domain/, so a change of either without re-recording is noticed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = Path(__file__).parent / "histories"
MANIFEST = "manifest.json"
RECORD_COMMAND = "make histories  (or: .venv/bin/python -m tests.workflows.record_histories)"
# The code a history is a history of: everything the workflow runs (the engine included, whichever
# modules it is split into).
SOURCES = ("workflows", "domain")

# The paths a newest set must cover (the recorder asserts each one as it drives the cases).
REQUIRED_PATHS = frozenset({
    "callback_retry", "callback_exhausted", "escalation_owner", "escalation_superior", "escalation_repeat",
    "stall", "client_reminder", "staff_reminder", "manager_reminder", "followup", "auto_assignment",
    "reassign_designer", "reassign_assistant", "reschedule", "reclaim", "continue_as_new", "recording",
    "note", "correction_acknowledged", "measure_no_show", "measure_rescheduled",
    "close_reception_review", "close_callback", "close_assign_designer", "close_contact", "close_first_meeting",
    "close_debrief", "close_outcome_signed", "close_outcome_lost",
}) | frozenset({
    # Engine version 2 (the cases POST /intakes starts now), claimed by version-2 cases only; the paths
    # above by version-1 cases only (cases started before version 2 keep running on the old rules).
    "v2_office_assignments_due_at_visit", "v2_assignment_reminders", "v2_t4_by_manager", "v2_t4_spaced_after_t1",
    "v2_reassign_contact_again", "v2_t5_new_designer", "v2_t5_new_assistant", "v2_t5_after_reclaim",
    "v2_transfer_to_other_branch", "v2_lapse_review_asked", "v2_lapse_review_extend", "v2_lapse_review_reclaim", "v2_reclaim_uncalled_contact",
    "v2_reassign_during_lapse_review",
    "v2_home_measure_invited_visits", "v2_site_musts", "v2_deputy",
})


def source_files() -> list[Path]:
    """The Python files of workflows/ and domain/, in a stable order."""
    return sorted(p for d in SOURCES for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)


def source_hash() -> str:
    """A hash of every workflows/ and domain/ source file (its path and its bytes)."""
    h = hashlib.sha256()
    for p in source_files():
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(b"\0")
        h.update(p.read_bytes().replace(b"\r\n", b"\n"))
        h.update(b"\0")
    return h.hexdigest()


def history_files() -> list[Path]:
    """Every saved history of every set (the older, unversioned ones included)."""
    return sorted(p for p in HISTORIES.rglob("*.json") if p.name != MANIFEST)


def sets() -> list[Path]:
    """The sets that have a manifest, oldest first (their names start with the recording time)."""
    return sorted(p.parent for p in HISTORIES.glob(f"*/{MANIFEST}"))


def manifest(set_dir: Path) -> dict[str, Any]:
    """A set's manifest."""
    data: dict[str, Any] = json.loads((set_dir / MANIFEST).read_text(encoding="utf-8"))
    return data
