"""What the Temporal UI shows of a case: search attributes, summary and current details (SPEC §8).

No client data here: search attributes, summaries and details are stored unencrypted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain.constants import (
    SA_ASSISTANT,
    SA_DESIGNER,
    SA_ESCALATION_LEVEL,
    SA_OVERDUE,
    SA_SCENARIO,
    SA_SOURCE,
    SA_STAGE,
    SA_STEP_DUE_AT,
)
from domain.enums import (
    OUTCOME_LABELS,
    ROLE_LABELS,
    SCENARIO_LABELS,
    SOURCE_LABELS,
    STEP_LABELS,
    CaseStatus,
    StepName,
)
from domain.graph import initial_stage
from domain.models import CaseState, IntakeInput

STAGE_LABELS: dict[str, str] = {s.value: label for s, label in STEP_LABELS.items()} | {
    o.value: label for o, label in OUTCOME_LABELS.items()
}


def initial_search_attributes(inp: IntakeInput, state: CaseState | None = None) -> TypedSearchAttributes:
    """Search attributes a case starts with (set at workflow start), from its opening state when given."""
    if state is None:
        return TypedSearchAttributes(
            [
                SearchAttributePair(SA_STAGE, initial_stage(inp.scenario)),
                SearchAttributePair(SA_SOURCE, inp.source.value),
                SearchAttributePair(SA_SCENARIO, inp.scenario.value),
                SearchAttributePair(SA_OVERDUE, False),
                SearchAttributePair(SA_ESCALATION_LEVEL, 0),
            ]
        )
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SA_STAGE, state.stage),
        SearchAttributePair(SA_SOURCE, state.source.value),
        SearchAttributePair(SA_SCENARIO, state.scenario.value),
        SearchAttributePair(SA_OVERDUE, state.overdue),
        SearchAttributePair(SA_ESCALATION_LEVEL, state.escalation_level),
    ]
    if state.designer:
        pairs.append(SearchAttributePair(SA_DESIGNER, str(state.designer.id)))
    if state.assistant:
        pairs.append(SearchAttributePair(SA_ASSISTANT, str(state.assistant.id)))
    if state.step_due_at:
        pairs.append(SearchAttributePair(SA_STEP_DUE_AT, state.step_due_at))
    return TypedSearchAttributes(pairs)


def static_summary(inp: IntakeInput) -> str:
    """One line for the UI list: case number, source, scenario; never the client's name."""
    return (
        f"客户 #{inp.case_id} · {SOURCE_LABELS[inp.source]} · {SCENARIO_LABELS[inp.scenario]}"
    )


def local_time(t: datetime | None, tz: str = "Asia/Shanghai") -> str:
    """A moment as staff read it: local month-day hour:minute ("—" when there is none)."""
    if t is None:
        return "—"
    return t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def stage_label(stage: str) -> str:
    """Chinese label of a stage value."""
    return STAGE_LABELS.get(stage, stage)


def current_details(state: CaseState, tz: str = "Asia/Shanghai") -> str:
    """Markdown for the UI: what the case waits for, whom, since when, what escalates next."""
    lines = [f"### 客户 #{state.case_id} · {stage_label(state.stage)}"]
    if state.status == CaseStatus.closed:
        reason = f"（{state.outcome_reason}）" if state.outcome_reason else ""
        lines.append(f"已结案：**{OUTCOME_LABELS[state.outcome] if state.outcome else ''}**{reason}，"
                     f"{local_time(state.closed_at, tz)}")
        return "\n".join(lines)
    team = []
    if state.manager:
        team.append(f"经理 {state.manager.name}")
    if state.designer:
        team.append(f"设计师 {state.designer.name}")
    if state.assistant:
        team.append(f"助理 {state.assistant.name}")
    if team:
        lines.append("团队：" + "，".join(team))
    if state.open_steps:
        lines.append("")
        lines.append("| 等待 | 负责人 | 开始 | 到期 | 状态 | 下一步升级 |")
        lines.append("|---|---|---|---|---|---|")
        for s in sorted(state.open_steps, key=lambda x: x.due_at or datetime.max.replace(tzinfo=UTC)):
            who = s.owner.name if s.owner else ROLE_LABELS[s.owner_role]
            status = f"⚠️ 超时 L{s.escalation_level}" if s.overdue else "进行中"
            nxt = (
                f"{local_time(s.next_escalation_at, tz)} {s.next_escalation}" if s.next_escalation_at else "—"
            )
            lines.append(
                f"| {s.label} | {who} | {local_time(s.opened_at, tz)} | {local_time(s.due_at, tz)} | {status} | {nxt} |"
            )
    elif state.callback_retry_at:
        lines.append(f"回访未接通，{local_time(state.callback_retry_at, tz)} 再次回访")
    for m in state.meetings:
        if m.status == "scheduled":
            what = "量房" if m.which == "measure" else ("到店" if m.kind.value == "office_visit" else "上门")
            lines.append(f"- 预约{what}：{local_time(m.at, tz)}")
    return "\n".join(lines)


def step_label(step: StepName, attempt: int = 1) -> str:
    """Chinese label of a step instance (callback attempts are numbered)."""
    label = STEP_LABELS[step]
    return f"{label}（第{attempt}次）" if attempt > 1 else label
