"""What staff are told (reminders, escalations, assignments): the wording, beside the SMS templates.

Staff read these in the notice channel (log, SMS or a WeCom group). They name the case by number,
never the client (the notice channel is not the place for client data).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.enums import (
    LEVEL_LABELS,
    MEETING_KIND_LABELS,
    ROLE_LABELS,
    Level,
    MeetingKind,
    Scenario,
    StepName,
)
from domain.models import RECEPTION_ITEMS, CaseState, Meeting, OpenStep, StaffRef

Local = Callable[[datetime], str]

# The manager's whole reception checklist before an office visit (seed 二a/c), in the order it is done.
RECEPTION_CHECKLIST = "、".join(RECEPTION_ITEMS.values())


def step_opened(s: CaseState, step: OpenStep, local: Local) -> str:
    """A step waits for its owner (the manager calls every new client back at once)."""
    waiting = "（客户已在公司等候）" if s.scenario == Scenario.walk_in else ""
    texts = {
        StepName.reception_review: f"新客户 #{s.case_id}（小区办公室接待），请审核接待情况",
        StepName.callback: f"新客户 #{s.case_id}，请立即回访" if step.attempt == 1
        else f"客户 #{s.case_id} 第{step.attempt}次回访，请再次联系客户",
        StepName.assign_designer: f"客户 #{s.case_id} 需要分配设计师{waiting}",
        StepName.assign_assistant: f"客户 #{s.case_id} 需要安排助理设计师并备案登记{waiting}",
        StepName.debrief: f"客户 #{s.case_id} 首次见面已完成，请听录音复盘并讲评",
        StepName.lapse_review: f"客户 #{s.case_id}「首次见面」已超时：请决定收回重新分配（掉保），或写明原因后延期",
    }
    due = f"，{local(step.due_at)} 前完成" if step.due_at else ""
    musts = ""
    if step.step == StepName.reception_review and s.site_musts is not None:
        missed = s.site_musts.missed()
        musts = "；接待四必须" + (f"未做：{'、'.join(missed)}" if missed else "均已做到")
    return texts.get(step.step, f"客户 #{s.case_id}：{step.label}") + musts + due


def transferred_in(case_id: int, from_name: str, to_name: str, reason: str, steps: list[OpenStep],
                   local: Local) -> str:
    """A case moved to another branch: its new manager hears of it, with the steps now theirs."""
    origin = f"从{from_name}" if from_name else ""
    todo = "；".join(step.label + (f"（{local(step.due_at)} 前完成）" if step.due_at else "") for step in steps)
    return f"客户 #{case_id} 已{origin}转入{to_name}（{reason}），现由您负责" + (f"；待办：{todo}" if todo else "")


def escalation(case_id: int, step: OpenStep, target: str, local: Local) -> str:
    """A late step: the owner is reminded, or the superior told."""
    due = local(step.due_at) if step.due_at else ""
    if target == "owner":
        return f"提醒：客户 #{case_id}「{step.label}」已到期（{due}），请尽快办理"
    owner = step.owner.name if step.owner else ROLE_LABELS[step.owner_role]
    return f"升级：客户 #{case_id}「{step.label}」已超时（到期 {due}，负责人 {owner}），请督办"


def stalled(case_id: int, step: OpenStep, local: Local) -> str:
    """Escalation stopped repeating: the director decides what becomes of the case."""
    due = local(step.due_at) if step.due_at else ""
    owner = step.owner.name if step.owner else ROLE_LABELS[step.owner_role]
    return (f"搁置：客户 #{case_id}「{step.label}」多次催办仍未完成（到期 {due}，负责人 {owner}），"
            "不再重复提醒，请决定跟进或结案")


def callback_exhausted(case_id: int, attempts: int) -> str:
    """The manager could not reach the client in the allowed attempts."""
    return f"客户 #{case_id} 经理回访已 {attempts} 次未接通，请决定继续跟进或结案"


def designer_assigned(case_id: int, meeting: Meeting | None, local: Local) -> str:
    """A designer hears of a new client (the engine's text, without client data: the outbox writer
    renders :func:`designer_details` from PostgreSQL instead and keeps this one as the fallback)."""
    when = f"，约定{MEETING_KIND_LABELS[meeting.kind]} {local(meeting.at)}" if meeting is not None else ""
    return f"新客户 #{case_id} 已分配给您{when}，请尽快联系客户"


def assistant_assigned(case_id: int, designer: StaffRef | None) -> str:
    """An assistant hears of a new case."""
    return f"客户 #{case_id} 已分配给您（助理设计师），设计师：{designer.name if designer else '待定'}"


def reassigned(case_id: int, who: str, reason: str) -> str:
    """The new designer or assistant of a case."""
    return f"客户 #{case_id} 已改由您负责（{who}），原因：{reason}"


def measure_no_show(case_id: int, designer: StaffRef | None) -> str:
    """The client did not come to the measure."""
    return f"客户 #{case_id} 量房爽约，设计师{designer.name if designer else ''}需重新约定"


def office_visit_reminder(case_id: int, at: str) -> str:
    """The manager, before an office visit."""
    return f"客户 #{case_id} 将于 {at} 到店，请准备接待：{RECEPTION_CHECKLIST}"


def meeting_reminder(case_id: int, m: Meeting, at: str) -> str:
    """Designer and assistant, before a meeting or measure."""
    what = "量房" if m.which == "measure" else f"首次见面（{MEETING_KIND_LABELS[m.kind]}）"
    return f"提醒：客户 #{case_id} 的{what}在 {at}，请准时到达"


def followup(case_id: int, i: int) -> str:
    """The designer, while the case waits for its outcome."""
    return f"客户 #{case_id} 仍在等待签单结果（第{i}次跟进），请跟进客户并向经理汇报"


def designer_details(
    case_id: int,
    *,
    salutation: str,
    compound: str | None,
    area_m2: float | None,
    budget: int | None,
    meeting_kind: MeetingKind | None,
    meeting_at: str | None,
    measure_at: str | None,
    level: Level | None,
    callback_notes: str | None,
    car: str | None,
) -> str:
    """将客户的详细情况告诉设计师 (seed 一b/三e): what the designer needs before calling the client."""
    lines = [f"新客户 #{case_id} 已分配给您，请尽快联系客户。", f"客户：{salutation}"]
    if compound:
        lines.append(f"小区：{compound}")
    if area_m2:
        lines.append(f"面积：{area_m2:g} 平方米")
    if budget is not None:
        lines.append(f"预算：{budget / 10000:g} 万元")
    if meeting_at:
        kind = MEETING_KIND_LABELS[meeting_kind] if meeting_kind else "见面"
        lines.append(f"约定{kind}：{meeting_at}")
    if measure_at:
        lines.append(f"约定量房：{measure_at}")
    if level:
        lines.append(f"客户约定的设计师级别：{LEVEL_LABELS[level]}")
    if car:
        lines.append(f"客户车辆：{car}")
    if callback_notes:
        lines.append(f"经理回访记录：{callback_notes}")
    return "\n".join(lines)


def correction(case_id: int, source: StepName, text: str, due: str | None) -> str:
    """A correction from the manager's review or debrief: record it, change it, confirm (做记录并改正)."""
    where = "审核接待情况" if source == StepName.reception_review else "录音复盘讲评"
    by = f"，{due} 前确认" if due else ""
    return f"客户 #{case_id} {where}中经理对您的纠正：{text}。请做记录并改正，在系统中确认{by}"


def reclaimed(case_id: int, step_label: str, designer: StaffRef) -> str:
    """The manager: a designer let a case lapse; it is back for assignment (掉保)."""
    return f"客户 #{case_id} 设计师{designer.name}「{step_label}」超时未办，案件已收回（掉保），请重新分配设计师"


def reclaimed_from(case_id: int, step_label: str) -> str:
    """The designer who lost the case."""
    return f"客户 #{case_id}「{step_label}」多次催办未完成，已按公司规定收回（掉保），计入您的分配记录"


def assignment_reminder(case_id: int, step: OpenStep, visit: str) -> str:
    """情况二: an assignment still open before the visit (due at the visit, seed 二b/d)."""
    return f"提醒：客户 #{case_id} 将于 {visit} 到店，「{step.label}」尚未完成，请在客户到店时确定"


def lapse_extended(case_id: int, until: str, reason: str) -> str:
    """The designer: the manager gave more time for the first meeting."""
    return f"客户 #{case_id}「首次见面」经理同意延期到 {until}（原因：{reason}），请按时完成"
