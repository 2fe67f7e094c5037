"""In-memory stand-ins for the activities, registered by name (workflow tests only)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from domain.constants import workflow_id
from domain.enums import Level, Role, Scenario, Source, StepName
from domain.models import (
    Actor,
    CaseState,
    CompleteStep,
    IntakeInput,
    NotifyStaff,
    RecordAssignment,
    SendSms,
    StaffRef,
    SuggestAssistants,
    SuggestDesigners,
    Suggestion,
    SyncProjection,
)
from domain.policy import Policy, fast_policy
from domain.tracking import initial_search_attributes, static_summary
from workflows.intake import IntakeWorkflow

MANAGER = StaffRef(id=1, name="陈经理", role=Role.manager)
DIRECTOR = StaffRef(id=2, name="赵总", role=Role.director)
LEAD = StaffRef(id=3, name="孙组长", role=Role.assistant_lead)
CONSULTANT = StaffRef(id=4, name="周顾问", role=Role.consultant)
DESIGNER = StaffRef(id=10, name="张伟", role=Role.designer, level=Level.senior)
DESIGNER2 = StaffRef(id=11, name="刘洋", role=Role.designer, level=Level.designer)
ASSISTANT = StaffRef(id=20, name="李娜", role=Role.assistant)
SITE_LEAD = StaffRef(id=5, name="吴主管", role=Role.site_lead)
STAFF = {s.id: s for s in (MANAGER, DIRECTOR, LEAD, CONSULTANT, DESIGNER, DESIGNER2, ASSISTANT, SITE_LEAD)}


@dataclass
class FakeActivities:
    """Records what the workflow asked for; counts every call."""

    projections: dict[int, CaseState] = field(default_factory=dict)
    sms: list[SendSms] = field(default_factory=list)
    notices: list[NotifyStaff] = field(default_factory=list)
    notice_times: dict[str, datetime] = field(default_factory=dict)  # purpose -> when the worker was asked
    assignments: list[RecordAssignment] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    suggestions: list[StaffRef] = field(default_factory=lambda: [DESIGNER, DESIGNER2])

    @activity.defn(name="sync_projection")
    async def sync_projection(self, req: SyncProjection) -> None:
        self.calls["sync_projection"] += 1
        cur = self.projections.get(req.state.case_id)
        if cur is None or cur.version < req.state.version:
            self.projections[req.state.case_id] = req.state

    @activity.defn(name="send_sms")
    async def send_sms(self, req: SendSms) -> dict[str, Any]:
        self.calls["send_sms"] += 1
        self.sms.append(req)
        return {"purpose": req.purpose, "status": "sent"}

    @activity.defn(name="notify_staff")
    async def notify_staff(self, req: NotifyStaff) -> dict[str, Any]:
        self.calls["notify_staff"] += 1
        self.notices.append(req)
        self.notice_times.setdefault(req.purpose, datetime.now(UTC))
        return {"purpose": req.purpose, "status": "sent"}

    @activity.defn(name="suggest_designers")
    async def suggest_designers(self, req: SuggestDesigners) -> list[Suggestion]:
        self.calls["suggest_designers"] += 1
        return [
            Suggestion(staff=s, rank=i + 1, reasons=["轮单"], open_cases=0)
            for i, s in enumerate(self.suggestions)
        ]

    @activity.defn(name="suggest_assistants")
    async def suggest_assistants(self, req: SuggestAssistants) -> list[Suggestion]:
        self.calls["suggest_assistants"] += 1
        return [Suggestion(staff=ASSISTANT, rank=1, reasons=["在手 0 单"], open_cases=0)]

    @activity.defn(name="record_assignment")
    async def record_assignment(self, req: RecordAssignment) -> StaffRef:
        self.calls["record_assignment"] += 1
        staff = STAFF.get(req.staff_id)
        if staff is None or staff.role.value != req.role:
            raise ApplicationError("无效的人员", type="invalid_assignee", non_retryable=True)
        self.assignments.append(req)
        return staff

    def all(self) -> list[Any]:
        return [self.sync_projection, self.send_sms, self.notify_staff, self.suggest_designers,
                self.suggest_assistants, self.record_assignment]

    def purposes(self) -> list[str]:
        return [m.purpose for m in self.sms]


def worker(client: Client, task_queue: str, fakes: FakeActivities) -> Worker:
    """A worker running the real workflow with the fake activities."""
    return Worker(client, task_queue=task_queue, workflows=[IntakeWorkflow], activities=fakes.all())


_case_counter = [int(datetime.now(UTC).timestamp()) % 1_000_000 * 100]


def next_case_id() -> int:
    _case_counter[0] += 1
    return _case_counter[0]


async def start_case(
    client: Client,
    task_queue: str,
    scenario: Scenario,
    *,
    source: Source | None = None,
    policy: Policy | None = None,
    meeting_at: datetime | None = None,
    received_by: StaffRef | None = None,
    created_at: datetime | None = None,
    budget: int | None = 200_000,
) -> WorkflowHandle[IntakeWorkflow, CaseState]:
    """Start one case workflow as the API would."""
    src = source or {
        Scenario.remote: Source.online,
        Scenario.office_visit: Source.marketing,
        Scenario.site_office: Source.site_office,
        Scenario.walk_in: Source.walk_in,
    }[scenario]
    inp = IntakeInput(
        case_id=next_case_id(),
        source=src,
        scenario=scenario,
        created_at=created_at or datetime.now(UTC),
        created_by=CONSULTANT,
        manager=MANAGER,
        director=DIRECTOR,
        received_by=received_by,
        compound="翠湖花园",
        budget=budget,
        meeting_at=meeting_at,
        policy=policy or fast_policy(),
    )
    return await client.start_workflow(
        IntakeWorkflow.run,
        inp,
        id=workflow_id(inp.case_id),
        task_queue=task_queue,
        search_attributes=initial_search_attributes(inp),
        static_summary=static_summary(inp),
    )


def soon(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def actor(ref: StaffRef) -> Actor:
    """Who acts, as the API would resolve them."""
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)


async def complete(
    handle: WorkflowHandle[Any, Any], who: StaffRef, step: StepName, payload: dict[str, Any] | None = None,
    staff: list[StaffRef] | None = None,
) -> CaseState:
    """Complete a step as `who` through the update, as the API does."""
    return await handle.execute_update(
        IntakeWorkflow.complete_step,
        CompleteStep(actor=actor(who), step=step, payload=payload or {}, staff=staff or []),
    )
