"""Due times, escalation chains and business time, on the real dev server with a fast policy."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import Client

from domain import calendar as cal
from domain.enums import Role, Scenario, StepName
from domain.policy import CalendarPolicy, EscalationChain, EscalationStage, fast_policy
from tests.support.wait import until
from tests.workflows.fakes import DIRECTOR, MANAGER, FakeActivities, complete, start_case, worker
from workflows.intake import IntakeWorkflow


def quick_policy():  # type: ignore[no-untyped-def]
    p = fast_policy()
    p.durations[StepName.callback] = timedelta(seconds=2)
    p.escalation = EscalationChain(
        stages=[EscalationStage(after=timedelta(0), target="owner"),
                EscalationStage(after=timedelta(seconds=2), target="superior")],
        repeat_every=timedelta(seconds=3),
    )
    return p


async def test_late_callback_reminds_manager_then_director_and_repeats(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote, policy=quick_policy())
        wf_id = h.id

        async def escalated_to(level: int) -> bool:
            s = await h.query(IntakeWorkflow.state)
            return s.escalation_level >= level

        await until(lambda: escalated_to(3), timeout=30)
        # the notices follow the state change: wait for the third one to reach the channel
        await until(lambda: any(n.purpose == "esc:callback#1:3" for n in fakes.notices), what="3rd notice")
        purposes = [n.purpose for n in fakes.notices]
        assert "esc:callback#1:1" in purposes and "esc:callback#1:2" in purposes and "esc:callback#1:3" in purposes
        first = next(n for n in fakes.notices if n.purpose == "esc:callback#1:1")
        second = next(n for n in fakes.notices if n.purpose == "esc:callback#1:2")
        assert first.recipient_id == MANAGER.id  # at due: remind the owner
        assert second.recipient_id == DIRECTOR.id  # +15 min: the manager's superior
        s = await h.query(IntakeWorkflow.state)
        assert s.overdue and s.open_steps[0].overdue and s.open_steps[0].escalation_level >= 3
        # the repeat (every 3 s here, hourly by default) goes to the superior again, saying who is late
        repeat = next(n for n in fakes.notices if n.purpose == "esc:callback#1:3")
        assert repeat.recipient_id == DIRECTOR.id and "已超时" in repeat.text and "陈经理" in repeat.text
        kinds = [e.text for e in s.events if e.kind == "escalation"]
        assert kinds[0] == "经理回访到期 → 提醒经理陈经理"
        assert kinds[1] == "经理回访超时 → 通知总经理赵总"

        async def listed(query: str) -> bool:
            ids = [w.id async for w in client.list_workflows(query)]
            return wf_id in ids

        await until(lambda: listed(f'WorkflowId = "{wf_id}" AND Overdue = true AND EscalationLevel >= 2'))
        await until(lambda: listed(f'WorkflowId = "{wf_id}" AND IntakeStage = "callback"'))

        s = await complete(h, MANAGER, StepName.callback, {"reached": True, "meeting_at":
                           (datetime.now(UTC) + timedelta(days=2)).isoformat()})
        assert not any(o.step == StepName.callback for o in s.open_steps)
        await until(lambda: listed(f'WorkflowId = "{wf_id}" AND IntakeStage = "assign_designer"'))
        # the new steps are not overdue yet: the case's flags were cleared
        s = await h.query(IntakeWorkflow.state)
        assert not s.overdue and s.escalation_level == 0
        await until(lambda: listed(f'WorkflowId = "{wf_id}" AND Overdue = false AND EscalationLevel = 0'))
        # timers in the history carry Chinese summaries (the UI timeline reads as the story, through
        # the codec endpoint: like every payload, user metadata is encrypted in history)
        hist = await h.fetch_history()
        raw = [e.user_metadata.summary for e in hist.events
               if e.HasField("user_metadata") and e.user_metadata.HasField("summary")]
        assert raw and all(p.metadata["encoding"] == b"binary/encrypted" for p in raw)
        codec = client.data_converter.payload_codec
        assert codec is not None
        summaries = [client.data_converter.payload_converter.from_payload(p, str) for p in await codec.decode(raw)]
        assert any("经理回访到期 → 提醒经理" in x for x in summaries), summaries
        assert any("通知总经理" in x for x in summaries), summaries


async def test_callback_not_reached_retries_then_escalates(client: Client, task_queue: str) -> None:
    fakes = FakeActivities()
    p = fast_policy()
    p.callback_retry_interval = timedelta(seconds=1)
    p.callback_max_attempts = 2
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote, policy=p)
        s = await complete(h, MANAGER, StepName.callback, {"reached": False})
        assert not s.open_steps and s.stage == "callback" and s.callback_retry_at is not None

        async def reopened() -> bool:
            st = await h.query(IntakeWorkflow.state)
            return any(o.key == "callback#2" for o in st.open_steps)

        await until(reopened, timeout=15)
        s = await complete(h, MANAGER, StepName.callback, {"reached": False})
        # out of attempts: a third attempt opens already escalated, and the director is told
        third = next(o for o in s.open_steps if o.step == StepName.callback)
        assert third.attempt == 3 and third.overdue and third.escalation_level >= 2
        await until(lambda: any(n.purpose == "callback_exhausted:2" for n in fakes.notices))
        notice = next(n for n in fakes.notices if n.purpose == "callback_exhausted:2")
        assert notice.recipient_id == DIRECTOR.id


async def test_lead_outside_working_hours_is_due_next_working_period(client: Client, task_queue: str) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    today = datetime.now(tz).date()
    # The company is closed today and tomorrow: the callback is due on the day after, 09:15.
    calendar = CalendarPolicy(
        hours={d: [(time(9, 0), time(18, 0))] for d in range(7)},
        holidays=[today, today + timedelta(days=1)],
    )
    p = fast_policy()
    p.calendar = calendar
    p.durations[StepName.callback] = timedelta(minutes=15)
    fakes = FakeActivities()
    async with worker(client, task_queue, fakes):
        h = await start_case(client, task_queue, Scenario.remote, policy=p)
        s = await h.query(IntakeWorkflow.state)
        due = s.open_steps[0].due_at
        assert due is not None
        local = due.astimezone(tz)
        assert local.date() == today + timedelta(days=2)
        assert (local.hour, local.minute) == (9, 15)
        assert cal.is_business_time(calendar, due)
        assert s.open_steps[0].owner_role == Role.manager
        # the first escalation is planned at the due time, within working hours
        assert s.open_steps[0].next_escalation_at == due
