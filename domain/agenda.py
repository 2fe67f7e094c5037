"""The case's time: when its steps fall due, who hears when they are late, what it waits for.

:class:`Schedule` gives a step its due time and plans the next rung of its escalation chain (in
working time, from the policy's calendar); the editor (:mod:`domain.editor`) inherits it. The
functions below take the editor: :func:`pending` lists everything the case waits for in time, each
with what to do then (escalations, a callback's retry, reminders before meetings, follow-ups), and
:func:`fire_due` does what has fallen due, soonest first. A designer's own step left late long enough
is reclaimed (:func:`reclaim`).

Pure like the rest of the engine: `now` comes in, nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from domain import calendar as cal
from domain import notices
from domain.enums import (
    MEMBER_LABELS,
    ROLE_LABELS,
    STEP_LABELS,
    CaseStatus,
    MeetingKind,
    Role,
    Scenario,
    StepName,
)
from domain.graph import StepSpec
from domain.models import CaseState, Meeting, OpenStep, StaffRef
from domain.policy import Policy
from domain.tracking import local_time

if TYPE_CHECKING:
    from domain.editor import Editor

# The designer's own steps that lapse (掉保) when late long enough: the case is reclaimed. From engine
# version 2 only a contact lapses (the designer never called); a late first meeting asks the manager.
RECLAIMABLE = (StepName.contact, StepName.first_meeting)
RECLAIMABLE_V2 = (StepName.contact,)


@dataclass(frozen=True)
class AgendaItem:
    """Something the case waits for in time: when, and what the UI timer says."""

    at: datetime
    summary: str


class Schedule:
    """Due times and escalation plans of a case's steps, on the policy's calendar."""

    s: CaseState
    p: Policy
    now: datetime

    def add(self, start: datetime, delta: timedelta, wall_clock: bool) -> datetime:
        return cal.add_time(self.p.calendar, start, delta, wall_clock=wall_clock)

    def business(self, t: datetime, wall_clock: bool) -> datetime:
        """Move a moment into working time (nobody is paged at night), unless wall-clock."""
        return t if wall_clock else cal.next_business_moment(self.p.calendar, t)

    def local(self, t: datetime) -> str:
        return local_time(t, self.p.calendar.timezone)

    @property
    def v2(self) -> bool:
        """Whether the case runs by the company's day (engine version 2, SPEC §14)."""
        return self.s.engine_version >= 2

    def due_for(self, spec: StepSpec, opened: datetime | None = None) -> datetime | None:
        """Due time of a step opening now (or, for a duration step, opened at `opened`)."""
        s, p, now = self.s, self.p, self.now
        if spec.due == "none":
            return None
        if spec.due in ("meeting", "measure"):
            m = s.meeting(spec.due)
            return (max(m.at, now) if m else now) + p.meeting_grace
        start = opened or now
        if s.scenario == Scenario.walk_in and spec.step in (StepName.assign_designer, StepName.assign_assistant):
            due = start + p.walk_in_assignment
        else:
            due = self.add(start, p.duration(spec.step), spec.wall_clock)
        if spec.before_meeting:
            m = s.meeting("meeting")
            if m is not None and m.at > now:
                # 情况二 (version 2): the manager picks at the office (seed 二b/d), so due at the visit;
                # before, due by the duration but no later than the visit.
                due = m.at if self.v2 else min(due, m.at)
        return due

    def set_due(self, step: OpenStep, due: datetime | None, *, level: int = 0) -> None:
        """Give a step a new due time; its escalation chain starts again at `level`."""
        step.due_at = due
        step.escalation_level = level
        step.overdue = level > 0
        step.stalled = False
        step.next_escalation_at = None
        self.plan_escalation(step)

    def plan_escalation(self, step: OpenStep, *, repeat_from: datetime | None = None) -> None:
        """Set when the next rung of the step's escalation chain fires and what it does.

        The chain's stages count from the due time; repeats from the rung that fired last
        (`repeat_from`), so after an outage there is no burst of catch-up pages. Once the repeats are
        used up, the next rung stalls the step.
        """
        step.next_escalation_at = None
        step.next_escalation = None
        if step.due_at is None or step.stalled:
            return
        chain = self.p.chain(step.step)
        level = step.escalation_level
        if level < len(chain.stages):
            stage = chain.stages[level]
            at = self.business(self.add(step.due_at, stage.after, step.wall_clock), step.wall_clock)
            target = stage.target
        elif chain.repeat_every is not None:
            base = repeat_from or step.due_at
            at = self.business(self.add(base, chain.repeat_every, step.wall_clock), step.wall_clock)
            target = chain.repeat_target
        else:
            return
        step.next_escalation_at = at
        if level - len(chain.stages) >= self.p.escalation_max_repeats:
            step.next_escalation = "搁置并通知总经理"
            return
        who = self.target_label(step, target)
        step.next_escalation = f"提醒{who}" if target == "owner" else f"通知{who}"

    def target(self, step: OpenStep, target: str) -> tuple[StaffRef | None, Role]:
        s = self.s
        if target == "owner":
            return step.owner, step.owner_role
        if target == "director" or step.owner_role == Role.manager:
            return s.director, Role.director
        return s.manager, Role.manager

    def target_label(self, step: OpenStep, target: str) -> str:
        ref, role = self.target(step, target)
        label = "经理" if role == Role.manager else ROLE_LABELS[role]
        return f"{label}{ref.name}" if ref else label


def pending(eng: Editor) -> list[tuple[datetime, str, Callable[[], None]]]:
    """Everything the case waits for in time, each with what to do then."""
    s, p, now = eng.s, eng.p, eng.now
    if s.status == CaseStatus.closed:
        return []
    items: list[tuple[datetime, str, Callable[[], None]]] = []
    for o in s.open_steps:
        if o.next_escalation_at is not None and o.next_escalation:
            verb = "到期" if o.escalation_level == 0 else "超时"
            items.append((o.next_escalation_at, f"{STEP_LABELS[o.step]}{verb} → {o.next_escalation}",
                          partial(escalate, eng, o.key)))
    if s.callback_retry_at is not None:
        items.append((s.callback_retry_at, f"回访未接通 → 第{s.callback_attempts + 1}次回访",
                      partial(retry_callback, eng)))
    # Reminders before meetings; a rescheduled meeting has a new time, hence new purposes.
    contact_spec = eng.g.spec(StepName.contact)
    contact_pending = contact_spec is not None and not contact_spec.triggered and not eng.done(StepName.contact)
    for m in s.meetings:
        if m.status != "scheduled" or m.at <= now:
            continue
        when = m.at.isoformat()
        purpose = f"T4:{m.which}:{when}"
        signer = t4_signer(eng, m)
        # The client hears from the designer (T1) before being reminded of the meeting.
        if signer is not None and not (m.which == "meeting" and contact_pending) and purpose not in s.sent:
            planned = cal.latest_business_moment_at_or_before(p.calendar, m.at - p.client_reminder_before)
            announced = s.announced.get(f"{m.which}:{when}") if eng.v2 else None
            # No two texts about one meeting within the spacing: T1/T2/T5 just named it (version 2).
            if announced is None or planned - announced >= p.message_spacing:
                items.append((max(planned, now), "见面前一天 → 短信提醒客户",
                              partial(eng.client_sms, "T4", "见面前提醒客户", purpose=purpose, at=m.at,
                                      kind=m.kind, signer=signer)))
        for who, before in (("designer", p.staff_reminder_before), ("assistant", p.staff_reminder_before),
                            ("manager", p.manager_reminder_before)):
            purpose = f"remind:{m.which}:{when}:{who}"
            if who == "manager" and (m.which != "meeting" or m.kind != MeetingKind.office_visit):
                continue  # the manager receives office visits only
            if purpose not in s.sent and (who == "manager" or getattr(s, who) is not None):
                items.append((max(m.at - before, now), f"见面前提醒{MEMBER_LABELS[who]}",
                              partial(remind_staff, eng, purpose, m, who)))
    if eng.v2:
        items += _assignment_reminders(eng)
    outcome = eng.find_open(StepName.outcome)
    if outcome is not None and s.designer is not None:
        for i, after in enumerate(p.followups, start=1):
            purpose = f"followup:{i}"
            if purpose not in s.sent:
                summary = f"等待签单 → 第{i}次跟进提醒设计师"
                items.append((eng.business(outcome.opened_at + after, False), summary,
                              partial(eng.notify, purpose, notices.followup(s.case_id, i),
                                      recipient=s.designer, role=Role.designer, summary=summary)))
    return items


def t4_signer(eng: Editor, m: Meeting) -> str | None:
    """Who signs the client's reminder before a meeting: whoever the client has spoken to.

    The designer; in 情况二 before the visit (version 2) the manager, unless the designer has called
    the client (a reintroduction). None: nobody to sign it yet (no reminder).
    """
    s = eng.s
    if (eng.v2 and m.which == "meeting" and m.kind == MeetingKind.office_visit and s.manager is not None
            and not (s.designer is not None and eng.done(StepName.contact))):
        return "manager"
    return "designer" if s.designer is not None else None


def _assignment_reminders(eng: Editor) -> list[tuple[datetime, str, Callable[[], None]]]:
    """情况二 (version 2): an assignment due at the visit reminds its owner before it, while open."""
    s, p, now = eng.s, eng.p, eng.now
    m = s.meeting("meeting")
    if m is None or m.status != "scheduled" or m.at <= now:
        return []
    items: list[tuple[datetime, str, Callable[[], None]]] = []
    for o in s.open_steps:
        spec = eng.g.spec(o.step)
        if spec is None or not spec.before_meeting or o.due_at != m.at:
            continue
        for i, before in enumerate(p.assignment_reminders_before, start=1):
            at = m.at - before
            if not cal.is_business_time(p.calendar, at):  # at night: the evening before, not at 03:00
                at = cal.latest_business_moment_at_or_before(p.calendar, at)
            purpose = f"remind:{o.key}:{m.at.isoformat()}:{i}"
            # A reminder that would come before the step opened is the opening notice itself.
            if at <= o.opened_at or purpose in s.sent:
                continue
            summary = f"到店前提醒{o.label}"
            items.append((max(at, now), summary, partial(
                eng.notify, purpose, notices.assignment_reminder(s.case_id, o, eng.local(m.at)),
                recipient=o.owner, role=o.owner_role, summary=summary)))
    return items


def fire_due(eng: Editor) -> None:
    """Do everything due by now, soonest first, until nothing more is due (bounded)."""
    for _ in range(100):
        due = [i for i in pending(eng) if i[0] <= eng.now]
        if not due:
            return
        min(due, key=lambda i: i[0])[2]()


def escalate(eng: Editor, key: str) -> None:
    """The next rung of a late step's chain: remind the owner, tell their superior, or stall."""
    step = next((o for o in eng.s.open_steps if o.key == key), None)
    if step is None:
        return
    s = eng.s
    chain = eng.p.chain(step.step)
    level = step.escalation_level
    repeats = level - len(chain.stages)
    if repeats >= eng.p.escalation_max_repeats:
        # A case left open must not page anyone forever: the step stalls, the director hears once.
        step.stalled = True
        step.next_escalation_at = None
        step.next_escalation = None
        eng.event("stalled", f"{STEP_LABELS[step.step]}多次催办仍未完成 → 已搁置，通知总经理", step=step.step,
                  data={"key": step.key, "level": level})
        eng.notify(f"stalled:{step.key}", notices.stalled(s.case_id, step, eng.local), recipient=s.director,
                   role=Role.director, summary="长期未办 → 搁置并通知总经理")
        return
    target = chain.stages[level].target if level < len(chain.stages) else chain.repeat_target
    recipient, role = eng.target(step, target)
    step.escalation_level = level + 1
    step.overdue = True
    who = eng.target_label(step, target)
    if target == "owner":
        ev_text = f"{STEP_LABELS[step.step]}到期 → 提醒{who}"
    else:
        ev_text = f"{STEP_LABELS[step.step]}超时 → 通知{who}"
    eng.event("escalation", ev_text, step=step.step,
              data={"key": step.key, "level": step.escalation_level, "target": target,
                    "recipient_id": recipient.id if recipient else None})
    eng.notify(f"esc:{step.key}:{step.escalation_level}",
               notices.escalation(s.case_id, step, target, eng.local), recipient=recipient, role=role,
               summary=ev_text, urgent=eng.urgent(step))
    reclaim_at = eng.p.reclaim_at_level
    if (step.step in (RECLAIMABLE_V2 if eng.v2 else RECLAIMABLE) and reclaim_at is not None
            and step.escalation_level >= reclaim_at and s.designer is not None):
        reclaim(eng, step)
        return
    if (eng.v2 and step.step == StepName.first_meeting and reclaim_at is not None
            and step.escalation_level >= reclaim_at and s.designer is not None):
        ask_lapse(eng, step)
        return
    eng.plan_escalation(step, repeat_from=eng.now)


def reclaim(eng: Editor, step: OpenStep) -> None:
    """掉保/公海: the designer let their step lapse; the case goes back to the manager's assignment."""
    s = eng.s
    designer = s.designer
    assert designer is not None
    eng.finish_step(step, actor_id=None, result="reclaimed")
    reason = f"「{step.label}」超时未办（升级{step.escalation_level}级），按规定收回"
    eng.record_assignment(role="designer", staff=designer, actor=None, kind="lapse", reason=reason)
    s.lapsed = [*s.lapsed, designer.id]
    s.designer = None
    eng.event("reclaimed", f"设计师{designer.name}{reason}（掉保），案件退回经理重新分配", step=step.step,
              data={"designer_id": designer.id, "key": step.key, "level": step.escalation_level})
    eng.notify(f"reclaimed:{step.key}", notices.reclaimed(s.case_id, step.label, designer), recipient=s.manager,
               role=Role.manager, summary="掉保 → 通知经理重新分配")
    eng.notify(f"reclaimed_from:{step.key}", notices.reclaimed_from(s.case_id, step.label), recipient=designer,
               summary="掉保 → 通知原设计师")
    if eng.v2:
        # The next designer introduces themself (T5) when this one had already spoken to the client.
        eng.hand_over(designer)
        # A reclaimed first meeting reopens for the next designer once assigned (open_unlocked).
    spec = eng.g.spec(StepName.assign_designer)
    assert spec is not None
    eng.open_step(spec)


def ask_lapse(eng: Editor, step: OpenStep) -> None:
    """A late first meeting (version 2): the manager decides, reclaim or extend with a reason (掉保审核).

    The designer may have called and the client postponed: nobody is reclaimed without the manager.
    The first meeting's own chain stops here; the manager's decision step has its chain (→ director).
    """
    s = eng.s
    step.next_escalation_at = None
    step.next_escalation = None
    if eng.find_open(StepName.lapse_review) is not None:
        return
    spec = eng.g.spec(StepName.lapse_review)
    assert spec is not None
    review = eng.open_step(spec)
    designer = s.designer.name if s.designer else ""
    eng.event("lapse_asked", f"首次见面超时（升级{step.escalation_level}级）→ 请经理决定：收回（掉保）或延期（写明原因）",
              step=step.step, data={"key": step.key, "review": review.key, "designer": designer})


def retry_callback(eng: Editor) -> None:
    """A callback that did not reach the client opens again."""
    eng.s.callback_retry_at = None
    spec = eng.g.spec(StepName.callback)
    assert spec is not None
    eng.open_step(spec, attempt=eng.s.callback_attempts + 1)


def remind_staff(eng: Editor, purpose: str, m: Meeting, who: str) -> None:
    """Before a meeting: designer and assistant to be on time; the manager to receive an office visit."""
    s = eng.s
    if who == "manager":
        eng.notify(purpose, notices.office_visit_reminder(s.case_id, eng.local(m.at)), recipient=s.manager,
                   role=Role.manager, summary="到店前提醒经理接待")
        return
    eng.notify(purpose, notices.meeting_reminder(s.case_id, m, eng.local(m.at)),
               recipient=s.designer if who == "designer" else s.assistant, role=Role(who),
               summary=f"会前提醒{MEMBER_LABELS[who]}")
