"""What staff are told (reminders, escalations, assignments): the wording, beside the SMS templates.

Staff read these in the notice channel (log, SMS or a WeCom group). They name the case by number,
never the client (the notice channel is not the place for client data).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from domain.enums import MEETING_KIND_LABELS, ROLE_LABELS, Scenario, StepName
from domain.models import CaseState, Meeting, OpenStep, StaffRef

Local = Callable[[datetime], str]

# The manager's checklist before an office visit (SPEC §4).
RECEPTION_CHECKLIST = "门口迎接、递名片、打开录音笔、备好茶水"


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
    }
    due = f"，{local(step.due_at)} 前完成" if step.due_at else ""
    return texts.get(step.step, f"客户 #{s.case_id}：{step.label}") + due


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
    """A designer hears of a new client."""
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
