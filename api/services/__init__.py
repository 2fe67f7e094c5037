"""What staff can do, once: the services behind both the JSON API and the staff console.

The JSON routes (api/routers) and the console's form routes (api/console) call these functions, so a
validation rule or an error code lives in one place, and every permission is domain/permissions.py's
answer. Each raises :class:`~api.errors.ApiError` with a stable code; the JSON API answers it as JSON,
the console shows its message beside the field (``details.field``) or above the form.

By feature: creation (a new case), cases (reading a case, its messages, suggestions), steps (steps and
the other actions), recordings, reports; access (the case as one person may see it).
"""

from api.services.cases import (
    assistant_ranking,
    case_messages,
    designer_ranking,
    designer_suggestions,
    first_suggestion,
    get_case,
)
from api.services.creation import Created, create_case
from api.services.recordings import (
    list_recordings,
    may_upload,
    play_recording,
    upload_recording,
)
from api.services.reports import allocation_report, branch_league, morning_summary, report_scope, sla_report
from api.services.steps import (
    add_note,
    close_case,
    complete_step,
    open_for_step,
    reassign,
    reschedule,
    staff_ref,
    step_body_model,
    step_owner_label,
)
from api.services.transfer import transfer_case

__all__ = [
    "Created",
    "add_note",
    "allocation_report",
    "branch_league",
    "assistant_ranking",
    "case_messages",
    "close_case",
    "complete_step",
    "create_case",
    "designer_ranking",
    "designer_suggestions",
    "open_for_step",
    "first_suggestion",
    "get_case",
    "list_recordings",
    "may_upload",
    "morning_summary",
    "play_recording",
    "reassign",
    "reschedule",
    "report_scope",
    "sla_report",
    "transfer_case",
    "staff_ref",
    "step_body_model",
    "step_owner_label",
    "upload_recording",
]
