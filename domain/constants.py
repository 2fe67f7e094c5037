"""Constants in one place: task queue, workflow id format, search attribute keys."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

DEFAULT_TASK_QUEUE = "intake"
# The workflow type of a case (the engine's shape; the first version's type was "IntakeWorkflow").
WORKFLOW_TYPE = "IntakeCase"
WORKFLOW_ID_PREFIX = "intake-"


def workflow_id(case_id: int) -> str:
    """The readable workflow id of a case: ``intake-<case number>``; never client data."""
    return f"{WORKFLOW_ID_PREFIX}{case_id}"


def case_id_from_workflow_id(wf_id: str) -> int:
    """Inverse of :func:`workflow_id`."""
    return int(wf_id.removeprefix(WORKFLOW_ID_PREFIX))


SA_STAGE = SearchAttributeKey.for_keyword("IntakeStage")
SA_SOURCE = SearchAttributeKey.for_keyword("IntakeSource")
SA_SCENARIO = SearchAttributeKey.for_keyword("IntakeScenario")
SA_DESIGNER = SearchAttributeKey.for_keyword("Designer")
SA_ASSISTANT = SearchAttributeKey.for_keyword("Assistant")
SA_STEP_DUE_AT = SearchAttributeKey.for_datetime("StepDueAt")
SA_OVERDUE = SearchAttributeKey.for_bool("Overdue")
SA_ESCALATION_LEVEL = SearchAttributeKey.for_int("EscalationLevel")
# The case's branch (分公司/门店) by code: one branch's stuck cases, e.g. `Branch = "hz" AND Overdue = true`.
SA_BRANCH = SearchAttributeKey.for_keyword("Branch")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    SA_STAGE,
    SA_SOURCE,
    SA_SCENARIO,
    SA_DESIGNER,
    SA_ASSISTANT,
    SA_STEP_DUE_AT,
    SA_OVERDUE,
    SA_ESCALATION_LEVEL,
    SA_BRANCH,
)

# `temporal operator search-attribute create` / `start-dev --search-attribute` type names.
SEARCH_ATTRIBUTE_CLI_TYPES: dict[str, str] = {
    "IntakeStage": "Keyword",
    "IntakeSource": "Keyword",
    "IntakeScenario": "Keyword",
    "Designer": "Keyword",
    "Assistant": "Keyword",
    "StepDueAt": "Datetime",
    "Overdue": "Bool",
    "EscalationLevel": "Int",
    "Branch": "Keyword",
}
