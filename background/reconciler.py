"""The reconciler: repairs what a crash left between PostgreSQL and Temporal (SPEC §10).

Creation writes the case row first (`starting`), then starts the workflow, then marks the row open.
Whatever single fault interrupts that (database or Temporal down or hung, the API killed between the
writes, the worker away for minutes), one of these holds afterwards, and the reconciler repairs it at
worker start and then periodically:

* a `starting` row older than the settle time: its workflow is started with the input stored in the
  row (or found running already) and the row is marked open;
* an open row whose workflow is no longer running: a completed workflow's final state is written; a
  terminated, failed or timed-out one is started again from the projection's last state, so the case
  goes on.

Every repair is logged, kept in `case_repairs`, and shows on the case's timeline.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain import engine
from domain.constants import WORKFLOW_TYPE, case_id_from_workflow_id, workflow_id
from domain.models import CaseChange, CaseEvent, CaseState, IntakeInput
from domain.tracking import initial_search_attributes, static_details, static_summary
from store.projection import ProjectionWriter

log = logging.getLogger("intake.reconciler")


class Reconciler:
    """Finds half-created and orphaned cases and completes them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: Client,
        writer: ProjectionWriter,
        *,
        task_queue: str,
        settle: timedelta = timedelta(seconds=30),
        interval: timedelta = timedelta(seconds=60),
        workflow_type: str = WORKFLOW_TYPE,
        page_size: int = 500,
    ) -> None:
        self._pool = pool
        self._client = client
        self._writer = writer
        self._task_queue = task_queue
        self._settle = settle
        self._interval = interval
        self._workflow_type = workflow_type
        self._page_size = page_size
        self._checked_closed_since: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Repair now, then every `interval`, until `stop` is set; never crashes the worker."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # a database or Temporal outage: try again next round
                log.warning("reconciler round failed: %r", exc)
            try:
                await asyncio.wait_for(stop.wait(), self._interval.total_seconds())
            except TimeoutError:
                pass

    async def run_once(self) -> list[int]:
        """One round; returns the ids of the cases it repaired."""
        repaired = await self._start_stuck()
        repaired += await self._revive_orphans()
        return repaired

    async def _start_stuck(self) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT id, workflow_input FROM cases WHERE status = 'starting' AND workflow_input IS NOT NULL"
            " AND created_at < now() - $1::interval ORDER BY id LIMIT 500",
            self._settle,
        )
        done: list[int] = []
        for row in rows:
            inp = IntakeInput.model_validate(row["workflow_input"]).model_copy(update={"repaired": True})
            opening = engine.start(inp).state
            try:
                await self._client.start_workflow(
                    WORKFLOW_TYPE,  # by name: activities/ never import workflows/
                    inp,
                    id=workflow_id(inp.case_id),
                    task_queue=self._task_queue,
                    search_attributes=initial_search_attributes(inp, opening),
                    static_summary=static_summary(inp),
                    static_details=static_details(inp),
                )
                kind, detail = "started", "建档时流程未能启动：已按原始输入启动流程"
            except WorkflowAlreadyStartedError:
                kind, detail = "confirmed", "建档时流程已启动但未确认：已确认并开放案件"
            await self._mark(row["id"], kind, detail, status_from="starting")
            done.append(row["id"])
        return done

    async def _revive_orphans(self) -> list[int]:
        """Open rows whose workflow closed (terminated by hand, failed, timed out, or completed unwritten).

        The first pass pages through every closed run in retention, a page at a time (memory stays
        bounded however many there are); later passes only through those closed since the last complete
        pass (with a margin for visibility's delay). A pass that fails part-way is not counted: the next
        one starts from the same point, so no closed run is skipped.
        """
        since = self._checked_closed_since
        started = datetime.now(UTC)
        query = f'WorkflowType = "{self._workflow_type}" AND ExecutionStatus != "Running"'
        if since is not None:
            query += f' AND CloseTime > "{(since - timedelta(minutes=5)).isoformat()}"'
        done: list[int] = []
        page: set[int] = set()
        async for wf in self._client.list_workflows(query, page_size=self._page_size):
            try:
                page.add(case_id_from_workflow_id(wf.id))
            except ValueError:
                continue
            if len(page) >= self._page_size:
                done += await self._repair_closed(page)
                page = set()
        if page:
            done += await self._repair_closed(page)
        self._checked_closed_since = started
        return done

    async def _repair_closed(self, closed: set[int]) -> list[int]:
        """Of cases whose workflow run closed, those still open in PostgreSQL: written or restarted."""
        rows = await self._pool.fetch(
            "SELECT id, state FROM cases WHERE status = 'open' AND id = ANY($1::bigint[])", list(closed)
        )
        done: list[int] = []
        for row in rows:
            case_id = row["id"]
            handle = self._client.get_workflow_handle(workflow_id(case_id))
            desc = await handle.describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                continue  # a newer run is going (continued as new or restarted)
            if desc.status == WorkflowExecutionStatus.COMPLETED:
                final = CaseState.model_validate(await handle.result())
                async with self._pool.acquire() as conn, conn.transaction():
                    await self._writer.apply(conn, CaseChange(case_id=case_id, version=final.version, head=final))
                await self._mark(case_id, "final_written", "流程已结束但结果未写入：已补写结案状态")
                done.append(case_id)
                continue
            if not row["state"]:
                continue
            state = CaseState.model_validate(row["state"])
            inp_row = await self._pool.fetchval("SELECT workflow_input FROM cases WHERE id = $1", case_id)
            if inp_row is None:
                continue
            inp = IntakeInput.model_validate(inp_row)
            state.event_seq = max(state.event_seq, await self._last_seq(case_id))
            note = CaseEvent(seq=state.event_seq + 1, at=datetime.now(UTC), kind="repaired",
                             text=f"流程意外结束（{desc.status.name if desc.status else '未知'}）：系统已从最近状态恢复，案件继续")
            state.event_seq += 1
            state.events = [note]
            try:
                await self._client.start_workflow(
                    WORKFLOW_TYPE,  # by name: activities/ never import workflows/
                    inp.model_copy(update={"state": state}),
                    id=workflow_id(case_id),
                    task_queue=self._task_queue,
                    search_attributes=initial_search_attributes(inp, state),
                    static_summary=static_summary(inp),
                    static_details=static_details(inp),
                )
            except WorkflowAlreadyStartedError:
                continue
            async with self._pool.acquire() as conn:
                await conn.execute(
                    "INSERT INTO case_events (case_id, seq, at, kind, text, data) VALUES ($1, $2, $3, $4, $5, '{}')"
                    " ON CONFLICT (case_id, seq) DO NOTHING",
                    case_id, note.seq, note.at, note.kind, note.text,
                )
            await self._mark(case_id, "restarted", note.text)
            done.append(case_id)
        return done

    async def _last_seq(self, case_id: int) -> int:
        v = await self._pool.fetchval("SELECT coalesce(max(seq), 0) FROM case_events WHERE case_id = $1", case_id)
        return int(v or 0)

    async def _mark(self, case_id: int, kind: str, detail: str, *, status_from: str | None = None) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if status_from:
                await conn.execute(
                    "UPDATE cases SET status = 'open' WHERE id = $1 AND status = $2", case_id, status_from
                )
            await conn.execute("INSERT INTO case_repairs (case_id, kind, detail) VALUES ($1, $2, $3)",
                               case_id, kind, detail)
        log.warning("reconciler repaired case %s: %s (%s)", case_id, kind, detail)


OLD_WORKFLOW_TYPE = "IntakeWorkflow"


async def upgrade_v1_cases(
    client: Client, pool: asyncpg.Pool, writer: ProjectionWriter, *, task_queue: str
) -> list[int]:
    """Move running cases of the first version (type "IntakeWorkflow") onto the engine's workflow.

    The first version copied its whole state into `cases.state` after every change, so that copy is
    where the case stands. For each running one: messages it had decided but not yet handed on go to
    the outbox, the old run is terminated, and an "IntakeCase" run starts from that state (timers are
    derived from the state, so due times and escalations carry on). Safe to run again.
    """
    done: list[int] = []
    query = f'WorkflowType = "{OLD_WORKFLOW_TYPE}" AND ExecutionStatus = "Running"'
    async for wf in client.list_workflows(query):
        try:
            case_id = case_id_from_workflow_id(wf.id)
        except ValueError:
            continue
        row = await pool.fetchrow(
            "SELECT c.*, s.name AS creator_name, s.role AS creator_role FROM cases c"
            " JOIN staff s ON s.id = c.created_by WHERE c.id = $1", case_id,
        )
        if row is None or not row["state"]:
            log.warning("upgrade: case %s has no projected state; left on the old workflow", case_id)
            continue
        state = CaseState.model_validate(row["state"])
        policy = row["policy"]
        inp = IntakeInput.model_validate({
            "case_id": case_id, "source": row["source"], "scenario": row["scenario"],
            "created_at": row["created_at"],
            "created_by": {"id": row["created_by"], "name": row["creator_name"], "role": row["creator_role"]},
            "manager": state.manager, "director": state.director, "received_by": state.received_by,
            "compound": row["compound"], "budget": row["budget"], "meeting_at": row["meeting_at"],
            "meeting_kind": row["meeting_kind"], "policy": policy if policy else {},
        })
        pending = state.pending_effects
        last_seq = int(await pool.fetchval(
            "SELECT coalesce(max(seq), 0) FROM case_events WHERE case_id = $1", case_id) or 0)
        state = state.model_copy(update={
            "pending_effects": [], "events": [], "event_seq": max(state.event_seq, last_seq,
                                                                   max((e.seq for e in state.events), default=0)),
        })
        async with pool.acquire() as conn, conn.transaction():
            await writer.enqueue_messages(
                conn, sms=[p.sms for p in pending if p.sms], notices=[p.notify for p in pending if p.notify]
            )
            await conn.execute("UPDATE cases SET workflow_input = $2 WHERE id = $1", case_id,
                               inp.model_dump(mode="json"))
        await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate(reason="upgraded to IntakeCase")
        await client.start_workflow(
            WORKFLOW_TYPE,
            inp.model_copy(update={"state": state}),
            id=wf.id,
            task_queue=task_queue,
            search_attributes=initial_search_attributes(inp, state),
            static_summary=static_summary(inp),
            static_details=static_details(inp),
        )
        await pool.execute("INSERT INTO case_repairs (case_id, kind, detail) VALUES ($1, 'upgraded', $2)",
                           case_id, "流程升级：由第一版 IntakeWorkflow 迁到 IntakeCase，从最近状态继续")
        log.warning("upgraded case %s to %s", case_id, WORKFLOW_TYPE)
        done.append(case_id)
    return done
