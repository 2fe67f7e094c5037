"""In-memory stand-ins for the activities, registered by name (workflow tests only)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from domain import engine
from domain.constants import workflow_id
from domain.enums import Level, Role, Scenario, Source, StepName
from domain.models import (
    Actor,
    CaseChange,
    CaseState,
    CompleteStep,
    IntakeInput,
    NotifyStaff,
    RecordAssignment,
    SendSms,
    SiteReceptionMusts,
    StaffRef,
    SuggestDesigners,
    Suggestion,
    WrittenCheck,
)
from domain.policy import Policy, fast_policy
from domain.tracking import initial_search_attributes, static_details, static_summary
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
    """Records what the workflow wrote (changes, the messages and ledger rows in them); counts every call."""

    projections: dict[int, CaseState] = field(default_factory=dict)
    changes: list[CaseChange] = field(default_factory=list)
    sms: list[SendSms] = field(default_factory=list)
    notices: list[NotifyStaff] = field(default_factory=list)
    notice_times: dict[str, datetime] = field(default_factory=dict)  # purpose -> when the worker wrote it
    assignments: list[RecordAssignment] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    suggestions: list[StaffRef] = field(default_factory=lambda: [DESIGNER, DESIGNER2])
    fail_writes: bool = False
    written_seqs: dict[int, set[int]] = field(default_factory=dict)  # case -> timeline entries written

    @activity.defn(name="apply_change")
    async def apply_change(self, change: CaseChange) -> None:
        self.calls["apply_change"] += 1
        if self.fail_writes:
            raise RuntimeError("database down")
        self.changes.append(change)
        self.projections[change.case_id] = engine.merge(self.projections.get(change.case_id), change)
        self.written_seqs.setdefault(change.case_id, set()).update(e.seq for e in change.events)
        seen = {m.purpose for m in self.sms}
        self.sms += [m for m in change.effects.sms if m.purpose not in seen]
        seen = {n.purpose for n in self.notices}
        for n in change.effects.notices:
            if n.purpose not in seen:
                self.notices.append(n)
                self.notice_times.setdefault(n.purpose, datetime.now(UTC))
        keys = {a.event_key for a in self.assignments}
        self.assignments += [a for a in change.effects.assignments if a.event_key not in keys]

    @activity.defn(name="projection_written")
    async def projection_written(self, check: WrittenCheck) -> bool:
        self.calls["projection_written"] += 1
        stored = self.projections.get(check.case_id)
        seqs = set(range(check.first_seq, check.last_seq + 1))
        return stored is not None and stored.version >= check.version and seqs <= self.written_seqs[check.case_id]

    @activity.defn(name="suggest_designers")
    async def suggest_designers(self, req: SuggestDesigners) -> list[Suggestion]:
        self.calls["suggest_designers"] += 1
        return [
            Suggestion(staff=s, rank=i + 1, reasons=["轮单"], open_cases=0)
            for i, s in enumerate(self.suggestions)
        ]

    def all(self) -> list[Any]:
        return [self.apply_change, self.projection_written, self.suggest_designers]

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
    engine_version: int = 1,
    site_musts: SiteReceptionMusts | None = None,
) -> WorkflowHandle[IntakeWorkflow, CaseState]:
    """Start one case workflow as the API would (by default a case of engine version 1, as started
    before version 2; the API starts new cases with domain.models.ENGINE_VERSION)."""
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
        policy=policy or test_policy(),
        engine_version=engine_version,
        site_musts=site_musts,
    )
    return await client.start_workflow(
        IntakeWorkflow.run,
        inp,
        id=workflow_id(inp.case_id),
        task_queue=task_queue,
        search_attributes=initial_search_attributes(inp, engine.start(inp).state),
        static_summary=static_summary(inp),
        static_details=static_details(inp),
    )


def test_policy() -> Policy:
    """The fast policy, with the workflow's own projection write right after each update."""
    return fast_policy().model_copy(update={"projection_grace": timedelta(milliseconds=300)})


def soon(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def actor(ref: StaffRef) -> Actor:
    """Who acts, as the API would resolve them."""
    return Actor(staff_id=ref.id, role=ref.role, name=ref.name)


async def complete(
    handle: WorkflowHandle[Any, Any], who: StaffRef, step: StepName, payload: dict[str, Any] | None = None,
    staff: list[StaffRef] | None = None,
) -> CaseState:
    """Complete a step as `who` through the update, as the API does (with the API's first suggestion
    for assignments); returns the case as the workflow now holds it."""
    first = {StepName.assign_designer: DESIGNER, StepName.assign_assistant: ASSISTANT}.get(step)
    change: CaseChange = await handle.execute_update(
        IntakeWorkflow.complete_step,
        CompleteStep(actor=actor(who), step=step, payload=payload or {}, staff=staff or [], first_suggestion=first),
    )
    assert change.head.version == change.version
    state: CaseState = await handle.query(IntakeWorkflow.state)
    return state
