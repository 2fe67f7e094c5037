"""What the Temporal UI shows of a case: search attributes, summary and current details (SPEC §8),
and the ready list queries that find stuck cases over those search attributes.

No client data here: search attributes are stored unencrypted, and summaries and details are read by
whoever operates the Temporal UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain.constants import (
    SA_ASSISTANT,
    SA_BRANCH,
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
    Role,
    Scenario,
    StepName,
)
from domain.graph import graph, initial_stage
from domain.models import CaseState, IntakeInput, OpenStep

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
                SearchAttributePair(SA_BRANCH, inp.branch),
            ]
        )
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(SA_STAGE, state.stage),
        SearchAttributePair(SA_SOURCE, state.source.value),
        SearchAttributePair(SA_SCENARIO, state.scenario.value),
        SearchAttributePair(SA_OVERDUE, state.overdue),
        SearchAttributePair(SA_ESCALATION_LEVEL, state.escalation_level),
        SearchAttributePair(SA_BRANCH, state.branch),
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


def static_details(inp: IntakeInput) -> str:
    """Markdown the case carries from its start (UI "User Metadata"): what it is, and where staff act."""
    return (
        f"**客户 #{inp.case_id}** · {SCENARIO_LABELS[inp.scenario]} · {SOURCE_LABELS[inp.source]} · 策略 {inp.policy.name}\n\n"
        "此处用于查看进度、排查卡住的流程。回访、分配、改期、结案等业务请在网页工作台办理"
        f"（/console/cases/{inp.case_id}）：在此界面上的操作无法证明是哪位员工所为。"
    )


def local_time(t: datetime | None, tz: str = "Asia/Shanghai") -> str:
    """A moment as staff read it: local month-day hour:minute ("—" when there is none)."""
    if t is None:
        return "—"
    return t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M")


def stage_label(stage: str) -> str:
    """Chinese label of a stage value."""
    return STAGE_LABELS.get(stage, stage)


def _role_label(role: Role) -> str:
    return "经理" if role == Role.manager else ROLE_LABELS[role]


def _late_by(late: timedelta) -> str:
    """How late, as staff say it: 不到 1 分钟, 25 分钟, 3 小时 10 分, 2 天."""
    minutes = int(late.total_seconds() // 60)
    if minutes < 1:
        return "不到 1 分钟"
    if minutes < 60:
        return f"{minutes} 分钟"
    if minutes < 48 * 60:
        return f"{minutes // 60} 小时 {minutes % 60} 分" if minutes % 60 else f"{minutes // 60} 小时"
    return f"{minutes // (24 * 60)} 天"


def _open_step_line(s: OpenStep, tz: str, now: datetime | None) -> str:
    who = f"{_role_label(s.owner_role)} {s.owner.name}" if s.owner else f"{ROLE_LABELS[s.owner_role]}（待指定）"
    parts = [f"轮到 {who}", f"自 {local_time(s.opened_at, tz)} 起", f"到期 {local_time(s.due_at, tz)}"]
    if s.overdue:
        late = f"已超时 {_late_by(now - s.due_at)}" if now is not None and s.due_at is not None else "已超时"
        parts.append(f"⚠️ {late}，升级 {s.escalation_level} 级")
    if s.stalled:
        parts.append("已搁置（已通知总经理）")
    elif s.next_escalation_at is not None and s.next_escalation:
        parts.append(f"下一步 {local_time(s.next_escalation_at, tz)} {s.next_escalation}")
    return f"- **{s.label}**：" + "；".join(parts)


def current_details(state: CaseState, tz: str = "Asia/Shanghai", now: datetime | None = None) -> str:
    """Markdown for the UI (SPEC §8): the stage; per open step whose turn it is, since when, due, how late
    (as of `now`), the escalation level and what escalates next. Staff names and ids, never client data."""
    head = f"### 客户 #{state.case_id} · {stage_label(state.stage)}"
    if state.status == CaseStatus.closed:
        reason = f"（{state.outcome_reason}）" if state.outcome_reason else ""
        return "\n".join([head, f"已结案：**{OUTCOME_LABELS[state.outcome] if state.outcome else ''}**{reason}，"
                                 f"{local_time(state.closed_at, tz)}"])
    if state.overdue:
        head += f" · ⚠️ 超时（升级 {state.escalation_level} 级）"
    about = [SCENARIO_LABELS[state.scenario], SOURCE_LABELS[state.source]]
    team = [f"{label} {ref.name}" for label, ref in
            (("经理", state.manager), ("设计师", state.designer), ("助理", state.assistant)) if ref]
    if team:
        about.append("团队：" + "，".join(team))
    lines = [head, " · ".join(about), ""]
    far = datetime.max.replace(tzinfo=UTC)
    for s in sorted(state.open_steps, key=lambda x: x.due_at or far):
        lines.append(_open_step_line(s, tz, now))
    if not state.open_steps and state.callback_retry_at:
        lines.append(f"- 回访未接通，{local_time(state.callback_retry_at, tz)} 再次回访")
    for m in state.meetings:
        if m.status == "scheduled":
            what = "量房" if m.which == "measure" else ("到店" if m.kind.value == "office_visit" else "上门")
            lines.append(f"- 预约{what}：{local_time(m.at, tz)}")
    lines += ["", f"时间为{'北京时间' if tz == 'Asia/Shanghai' else tz}；办理请用网页工作台。"]
    return "\n".join(lines)


def step_label(step: StepName, attempt: int = 1) -> str:
    """Chinese label of a step instance (callback attempts are numbered)."""
    label = STEP_LABELS[step]
    return f"{label}（第{attempt}次）" if attempt > 1 else label


# --------------------------------------------------------------------------------------------------
# Stuck-case lists: Temporal list queries over the search attributes (the dev stack's banner, docs)
# --------------------------------------------------------------------------------------------------

#: Stages whose step the manager owns: when one of them is late past the owner's reminder (level 2 of
#: the default chain) the director has been told.
MANAGER_STAGES: tuple[str, ...] = tuple(
    step.value for step in StepName
    if any(s.step == step and s.owner == "manager" for sc in Scenario for s in graph(sc).steps)
)
#: Level of the superior's notice in the default and fast policies (1: the owner reminded).
SUPERIOR_LEVEL = 2
_RUNNING = 'ExecutionStatus = "Running"'


@dataclass(frozen=True)
class StuckQuery:
    """One ready list of the Temporal UI: what it finds (English, Chinese) and its list query."""

    name: str
    label: str
    query: str


def late_cases_query() -> StuckQuery:
    """Open cases with a step past its due time."""
    return StuckQuery("Late cases", "超时案件", f"{_RUNNING} AND {SA_OVERDUE.name} = true")


def escalated_to_director_query() -> StuckQuery:
    """Open cases whose late manager step has been escalated to the director."""
    stages = ", ".join(f'"{s}"' for s in MANAGER_STAGES)
    return StuckQuery(
        "Escalated to the director", "已通知总经理",
        f"{_RUNNING} AND {SA_ESCALATION_LEVEL.name} >= {SUPERIOR_LEVEL} AND {SA_STAGE.name} IN ({stages})",
    )


def designer_cases_query(designer_id: int | str, name: str = "") -> StuckQuery:
    """One designer's open cases (the search attribute holds the staff id, never a name)."""
    who = f"{name} (#{designer_id})" if name else f"#{designer_id}"
    return StuckQuery(f"Open cases of {who}", "设计师的在办案件",
                      f'{_RUNNING} AND {SA_DESIGNER.name} = "{designer_id}"')


def waiting_on_query(step: StepName) -> StuckQuery:
    """Open cases whose stage is `step`, soonest due first in the UI's StepDueAt column."""
    return StuckQuery(f"Waiting for {step.value}", f"等待{STEP_LABELS[step]}",
                      f'{_RUNNING} AND {SA_STAGE.name} = "{step.value}"')


def stuck_case_queries(designer_id: int | str = "<staff id>", designer_name: str = "",
                       step: StepName = StepName.callback) -> list[StuckQuery]:
    """The ready lists of the banner and docs/operations.md: late, escalated, a designer's, a step's."""
    return [late_cases_query(), escalated_to_director_query(), designer_cases_query(designer_id, designer_name),
            waiting_on_query(step)]
