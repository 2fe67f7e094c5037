"""The HTTP API against the raw Temporal client on the same server, in the same run (SPEC §10).

Starts nothing of the stack: it measures a running one (``intake dev``, docker-compose, …). In one run:

* raw baseline: a trivial workflow with one update (defined below, pydantic data converter through
  ``devstack.connect_temporal``), its worker inside this process on a task queue of its own: start
  throughput at ``--concurrency`` callers, update throughput and p99 at ``--concurrency`` callers,
  update p50 at 1 caller;
* the API: ``POST /intakes`` (情况一 ``remote``/``online`` cases, one fresh mobile number each, as the
  consultant) at ``--concurrency`` callers; then the manager's ``POST /intakes/{id}/steps/callback`` at
  ``--concurrency`` callers and at 1 caller;
* one complete 情况一 case through the API to ``signed``, then its workflow history read through the
  Temporal client: number of events and size in bytes (serialized proto).

Raw and API phases alternate (start/create, update/step at N, update/step at 1) so that a noisy shared
machine hits both sides alike, and each phase starts once the task queues have drained what the last
one left behind (projections, messages); the SPEC judges ratios measured in the same run. Every case it opened
is closed at the end (``duplicate``), every raw workflow terminated, so a re-run is never refused.
Prints a table with PASS/FAIL per target and exits 0 either way (it is a report, not a test).

    # the stack (any way; e.g. the dev stack on its default ports, default policy):
    .venv/bin/intake dev
    # then:
    .venv/bin/python benchmarks/bench_api_vs_raw.py                  # ~1 min
    .venv/bin/python benchmarks/bench_api_vs_raw.py --n 300 --serial 50

Defaults come from the same settings as ``intake dev`` (``INTAKE_API_PORT``, ``INTAKE_TEMPORAL_PORT`` or
``INTAKE_TEMPORAL_ADDRESS``, ``INTAKE_TEMPORAL_NAMESPACE``, ``INTAKE_DATA_DIR``/demo-tokens.txt, TLS or
API key); ``--api``, ``--temporal-address``, ``--namespace``, ``--tokens-file`` and ``--token
ID:ROLE:TOKEN`` (also ``INTAKE_BENCH_TOKENS``, comma-separated) override them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from temporalio import workflow

# The workflow sandbox re-imports this module for RawWorkflow: no file system access in there.
if not workflow.unsafe.in_sandbox():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with workflow.unsafe.imports_passed_through():
    import httpx
    from pydantic import BaseModel
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
    from temporalio.service import RPCError, RPCStatusCode
    from temporalio.worker import Worker

    from benchmarks.benchlib import (
        HISTORY_BYTES_MAX,
        HISTORY_EVENTS_MAX,
        Phase,
        PhoneMaker,
        StaffToken,
        at_least,
        at_most,
        close_case,
        collect_tokens,
        first_of,
        fmt,
        history_of,
        machine_line,
        pad,
        ratio,
        run_phase,
        verdict,
    )

SHANGHAI = timezone(timedelta(hours=8))

# SPEC §10 targets
CREATE_RATIO_MIN = 0.9
STEP_RATIO_MIN = 0.9
STEP_P50_EXTRA_MS = 5.0  # SPEC §10: one database round trip to write a decided change
STEP_P99_FACTOR = 1.1


# --- the raw baseline: a trivial workflow with one update --------------------------------------------


class RawInput(BaseModel):
    """What the raw workflow starts with (about the size of a case's ids and settings)."""

    n: int
    created_at: datetime
    source: str = "online"
    scenario: str = "remote"


class RawStep(BaseModel):
    """The update's argument: the callback's payload."""

    reached: bool
    meeting_at: datetime
    meeting_kind: str


class RawState(BaseModel):
    """The update's answer."""

    n: int
    updates: int
    last: RawStep | None = None


@workflow.defn(name="BenchRawWorkflow")
class RawWorkflow:
    """Waits until it is told to finish; each update records its argument and answers the state."""

    def __init__(self) -> None:
        self._state = RawState(n=0, updates=0)
        self._finished = False

    @workflow.run
    async def run(self, inp: RawInput) -> int:
        """Hold the workflow open until `finish`."""
        self._state.n = inp.n
        await workflow.wait_condition(lambda: self._finished)
        return self._state.updates

    @workflow.update
    def step(self, arg: RawStep) -> RawState:
        """Record one step; answer the new state."""
        self._state.updates += 1
        self._state.last = arg
        return self._state

    @workflow.signal
    def finish(self) -> None:
        """End the workflow."""
        self._finished = True


# --- helpers -------------------------------------------------------------------------------------------


def future_local(days: int, hour: int = 10) -> str:
    """A time `days` ahead at `hour`:00 Asia/Shanghai, ISO with +08:00."""
    t = (datetime.now(SHANGHAI) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)
    return t.isoformat()


class ApiError(Exception):
    """An answer other than the expected status."""


class Api:
    """The staff HTTP API, as the staff members whose tokens the benchmark holds."""

    def __init__(self, base: str, tokens: Sequence[StaffToken], concurrency: int, timeout: float) -> None:
        limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
        self.http = httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits)
        self.by_id = {t.staff_id: t for t in tokens}
        self.tokens = list(tokens)

    def who(self, role: str) -> StaffToken:
        """The first staff member with `role`."""
        t = first_of(self.tokens, role)
        if t is None:
            raise SystemExit(f"no token for a {role}: give --tokens-file or --token ID:{role}:TOKEN")
        return t

    async def call(
        self, method: str, path: str, who: StaffToken, expect: int, json: Any = None, params: Any = None
    ) -> Any:
        """One request; the JSON body when the status is `expect`, else ApiError."""
        r = await self.http.request(
            method, path, json=json, params=params, headers={"Authorization": f"Bearer {who.token}"}
        )
        if r.status_code != expect:
            raise ApiError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()


def intake_body(phone: str, i: int) -> dict[str, Any]:
    """A 情况一 lead from online sales."""
    return {
        "source": "online",
        "scenario": "remote",
        "client": {"name": "王建国", "phone": phone, "gender": "male", "compound": "阳光花园",
                   "area_m2": 120, "budget": 300000},
        "notes": f"bench_api_vs_raw #{i}",
    }  # fmt: skip


def callback_body() -> dict[str, Any]:
    """The manager reached the client and agreed a measure three days ahead."""
    return {"reached": True, "meeting_at": future_local(3), "meeting_kind": "measure"}


async def wait_closed(handle: WorkflowHandle[Any, Any], timeout: float) -> str:
    """The workflow's status once it is no longer running (or still RUNNING after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        desc = await handle.describe()
        status = desc.status
        if status is not None and status != WorkflowExecutionStatus.RUNNING:
            return status.name
        if time.monotonic() > deadline:
            return "RUNNING"
        await asyncio.sleep(0.5)


# --- the run ---------------------------------------------------------------------------------------------


class Bench:
    """Everything one run needs, and what it opened (to be closed at the end)."""

    def __init__(self, args: argparse.Namespace, client: Client, api: Api) -> None:
        self.args = args
        self.client = client
        self.api = api
        self.run = random.Random().randrange(10_000)
        self.phone = PhoneMaker(args.phone_prefix, self.run)
        self.queue = f"bench-raw-{uuid.uuid4().hex[:10]}"
        self.raw_ids: list[str] = []
        self.case_ids: list[int] = []
        self.consultant = api.who("consultant")
        self.manager = api.who("manager")

    # raw side
    async def raw_start(self, i: int) -> None:
        wid = f"{self.queue}-{len(self.raw_ids)}"
        self.raw_ids.append(wid)
        await self.client.start_workflow(
            RawWorkflow.run,
            RawInput(n=i, created_at=datetime.now(UTC)),
            id=wid,
            task_queue=self.queue,
            execution_timeout=timedelta(minutes=30),  # a safety net should the clean-up not run
        )

    async def raw_update(self, wid: str) -> None:
        handle = self.client.get_workflow_handle(wid)
        arg = RawStep(reached=True, meeting_at=datetime.fromisoformat(future_local(3)), meeting_kind="measure")
        await handle.execute_update(RawWorkflow.step, arg)

    # API side
    async def create(self, i: int) -> int:
        body = await self.api.call("POST", "/intakes", self.consultant, 201, json=intake_body(self.phone(), i))
        case_id = int(body["id"])
        self.case_ids.append(case_id)
        return case_id

    async def callback(self, case_id: int) -> None:
        await self.api.call("POST", f"/intakes/{case_id}/steps/callback", self.manager, 200, json=callback_body())

    async def backlog(self, queue: str) -> int:
        """Workflow and activity tasks waiting in a task queue (the server's approximate count)."""
        total = 0
        for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
            r = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=self.client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind,
                report_stats=True))  # fmt: skip
            total += int(r.stats.approximate_backlog_count)
        return total

    async def settle(self) -> None:
        """Let the background work of the last phase (first workflow tasks, projections, messages) drain.

        Waits until the stack's task queue and the raw one have no backlog (at most --drain-timeout),
        then --settle seconds more; prints how long that took when it was more than a moment.
        """
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.args.drain_timeout:
            try:
                waiting = await self.backlog(self.args.task_queue) + await self.backlog(self.queue)
            except RPCError:
                break  # a server without task queue stats: the fixed pause only
            if waiting == 0:
                break
            await asyncio.sleep(0.5)
        if self.args.settle > 0:
            await asyncio.sleep(self.args.settle)
        took = time.monotonic() - t0
        if took > self.args.settle + 1:
            print(f"  (the stack drained its backlog in {took:.1f} s)", flush=True)

    async def measure(self) -> dict[str, Phase]:
        """Warm up both sides, then the alternating phases."""
        a = self.args
        c = a.concurrency
        total = a.n + a.serial
        print(f"warm-up: {a.warmup} raw starts/updates, {a.warmup} API creates/callbacks", flush=True)
        for ph in (
            await run_phase("warm raw start", a.warmup, c, self.raw_start),
            await run_phase("warm raw update", a.warmup, c, lambda i: self.raw_update(self.raw_ids[i])),
            await run_phase("warm create", a.warmup, c, self.create),
        ):
            report_errors(ph)
        warm_cases = list(self.case_ids)
        report_errors(await run_phase("warm callback", len(warm_cases), c, lambda i: self.callback(warm_cases[i])))
        await self.settle()

        out: dict[str, Phase] = {}
        raw_base = len(self.raw_ids)
        print(f"raw start x{total} at {c} ...", flush=True)
        out["raw_start"] = await run_phase("raw start", total, c, self.raw_start)
        await self.settle()
        case_base = len(self.case_ids)
        print(f"API create x{total} at {c} ...", flush=True)
        out["create"] = await run_phase("API create", total, c, self.create)
        await self.settle()
        raw = self.raw_ids[raw_base:]
        cases = self.case_ids[case_base:]
        n_conc = min(a.n, len(raw), len(cases))
        print(f"raw update x{n_conc} at {c} ...", flush=True)
        out["raw_update_n"] = await run_phase("raw update", n_conc, c, lambda i: self.raw_update(raw[i]))
        await self.settle()
        print(f"API step x{n_conc} at {c} ...", flush=True)
        out["step_n"] = await run_phase("API step", n_conc, c, lambda i: self.callback(cases[i]))
        await self.settle()
        raw1, cases1 = raw[n_conc:], cases[n_conc:]
        n_one = min(a.serial, len(raw1), len(cases1))
        print(f"raw update x{n_one} at 1 ...", flush=True)
        out["raw_update_1"] = await run_phase("raw update", n_one, 1, lambda i: self.raw_update(raw1[i]))
        await self.settle()
        print(f"API step x{n_one} at 1 ...", flush=True)
        out["step_1"] = await run_phase("API step", n_one, 1, lambda i: self.callback(cases1[i]))
        for ph in out.values():
            report_errors(ph)
        return out

    async def whole_case(self) -> dict[str, Any]:
        """One 情况一 case from creation to signed through the API; then its history."""
        api = self.api
        lead = api.who("assistant_lead")
        assistant = api.who("assistant")
        meet = future_local(3)
        t0 = time.perf_counter()
        case = await api.call("POST", "/intakes", self.consultant, 201, json=intake_body(self.phone(), -1))
        cid = int(case["id"])
        wid = str(case.get("workflow_id") or f"intake-{cid}")
        self.case_ids.append(cid)
        base = f"/intakes/{cid}"
        await api.call("POST", f"{base}/steps/callback", self.manager, 200,
                       json={"reached": True, "meeting_at": meet, "meeting_kind": "measure"})
        sugg = await api.call("GET", f"{base}/designer-suggestions", self.manager, 200)
        items = [s for s in sugg.get("items", []) if s.get("eligible", True)]
        ours = [s for s in items if int(s["staff"]["id"]) in api.by_id]
        if not ours:
            raise ApiError(f"no suggested designer with a token among {[s['staff']['id'] for s in items]}")
        designer_id = int(ours[0]["staff"]["id"])
        pick: dict[str, Any] = {"designer_id": designer_id}
        if not items or int(items[0]["staff"]["id"]) != designer_id:
            pick["reason"] = "基准测试：选有令牌的设计师"
        await api.call("POST", f"{base}/steps/assign_designer", self.manager, 200, json=pick)
        await api.call("POST", f"{base}/steps/assign_assistant", lead, 200,
                       json={"assistant_id": assistant.staff_id})
        designer = api.by_id[designer_id]
        await api.call("POST", f"{base}/steps/contact", designer, 200,
                       json={"meeting_at": meet, "meeting_kind": "measure"})
        s = await api.call("POST", f"{base}/steps/first_meeting", designer, 200, json={
            "true_needs": "三室两厅，现代简约，年底入住", "measure_agreed": True, "measure_at": future_local(4, 14),
            "visited_site": True, "visited_material_store": True, "seen_off": True})  # fmt: skip
        if "measure" in {o["step"] for o in s.get("open_steps", [])}:
            await api.call("POST", f"{base}/steps/measure", designer, 200, json={"result": "done"})
        await api.call("POST", f"{base}/steps/debrief", self.manager, 200, json={"findings": "需求挖掘充分"})
        end = await api.call("POST", f"{base}/steps/outcome", self.manager, 200, json={"outcome": "signed"})
        api_s = time.perf_counter() - t0
        status = await wait_closed(self.client.get_workflow_handle(wid), self.args.history_wait)
        events, size, runs, kinds = await history_of(self.client, wid)
        return {"case_id": cid, "workflow_id": wid, "stage": end.get("stage"), "status": status, "events": events,
                "bytes": size, "runs": runs, "kinds": kinds, "api_s": api_s}  # fmt: skip

    async def cleanup(self) -> None:
        """Close every case still open (as duplicates) and end every raw workflow."""
        api = self.api
        cases = list(self.case_ids)
        raws = list(self.raw_ids)

        async def close(i: int) -> None:
            await close_case(api.http, cases[i], self.manager.token, "基准测试数据（bench_api_vs_raw）",
                             f"bench-close-{self.queue}-{cases[i]}")

        async def finish(i: int) -> None:
            try:
                await self.client.get_workflow_handle(raws[i]).signal(RawWorkflow.finish)
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise

        print(f"\nclean-up: closing {len(cases)} cases, finishing {len(raws)} raw workflows ...", flush=True)
        closed = await run_phase("close", len(cases), self.args.concurrency, close)
        done = await run_phase("finish", len(raws), self.args.concurrency, finish)
        print(f"clean-up: {closed.ok}/{len(cases)} cases closed, {done.ok}/{len(raws)} raw workflows finished")
        report_errors(closed)
        report_errors(done)


def report_errors(ph: Phase) -> None:
    """Print a phase's failures (a few of them)."""
    if ph.errors:
        print(f"  {ph.name}: {len(ph.errors)} failed, e.g. {ph.errors[0]}", flush=True)


def print_report(res: dict[str, Phase], whole: dict[str, Any] | None, whole_error: str | None) -> None:
    """The figures and the SPEC's verdicts."""
    c = res["create"].concurrency
    print()
    head = f"{'operation':<30} {'callers':>7} {'ok':>5} {'err':>4} {'per s':>9} {'p50 ms':>9} {'p99 ms':>9}"
    print(head)
    print("-" * len(head))
    for key in ("raw_start", "create", "raw_update_n", "step_n", "raw_update_1", "step_1"):
        ph = res[key]
        label = {"raw_start": "raw start_workflow", "create": "API POST /intakes",
                 "raw_update_n": "raw execute_update", "step_n": "API POST …/steps/callback",
                 "raw_update_1": "raw execute_update", "step_1": "API POST …/steps/callback"}[key]  # fmt: skip
        print(f"{label:<30} {ph.concurrency:>7} {ph.ok:>5} {len(ph.errors):>4} {fmt(ph.throughput):>9}"
              f" {fmt(ph.p(50)):>9} {fmt(ph.p(99)):>9}")

    print()
    rows: list[tuple[str, str, str, bool]] = []
    create_r = ratio(res["create"].throughput, res["raw_start"].throughput)
    rows.append((f"creates/s vs starts/s at {c}", f"{fmt(create_r, '×', 2)}", f"≥ {CREATE_RATIO_MIN}×",
                 at_least(create_r, CREATE_RATIO_MIN)))
    step_r = ratio(res["step_n"].throughput, res["raw_update_n"].throughput)
    rows.append((f"steps/s vs updates/s at {c}", f"{fmt(step_r, '×', 2)}", f"≥ {STEP_RATIO_MIN}×",
                 at_least(step_r, STEP_RATIO_MIN)))
    p50, raw50 = res["step_1"].p(50), res["raw_update_1"].p(50)
    rows.append(("step p50 at 1 caller", f"{fmt(p50, ' ms')} (raw {fmt(raw50, ' ms')}, "
                 f"{'+' if p50 >= raw50 else ''}{fmt(p50 - raw50, ' ms')})",
                 f"≤ raw + {STEP_P50_EXTRA_MS:.0f} ms", at_most(p50, raw50 + STEP_P50_EXTRA_MS)))
    p99, raw99 = res["step_n"].p(99), res["raw_update_n"].p(99)
    rows.append((f"step p99 at {c} callers", f"{fmt(p99, ' ms')} (raw {fmt(raw99, ' ms')}, "
                 f"{fmt(ratio(p99, raw99), '×', 2)})", f"≤ {STEP_P99_FACTOR}× raw",
                 at_most(p99, STEP_P99_FACTOR * raw99)))
    if whole is not None:
        rows.append(("情况一 case: history events", str(whole["events"]), f"≤ {HISTORY_EVENTS_MAX}",
                     whole["events"] <= HISTORY_EVENTS_MAX))
        rows.append(("情况一 case: history size", f"{whole['bytes'] / 1000:.1f} KB ({whole['bytes']:,} B)",
                     f"≤ {HISTORY_BYTES_MAX // 1000} KB", whole["bytes"] <= HISTORY_BYTES_MAX))
    for name, value, target, ok in rows:
        print(f"{pad(name, 32)} {pad(value, 40)} {pad(target, 16)} {verdict(ok)}")
    if whole is not None:
        kinds: collections.Counter[str] = whole["kinds"]
        top = ", ".join(f"{k} {v}" for k, v in kinds.most_common(8))
        print(f"\n情况一 case #{whole['case_id']} ({whole['workflow_id']}): stage {whole['stage']}, workflow "
              f"{whole['status']}, {whole['runs']} run(s), {whole['api_s']:.1f} s through the API; events by type: {top}")
    if whole_error:
        print(f"\n情况一 case: FAIL, not completed: {whole_error}")


async def main() -> int:
    """Parse, connect, measure, report, clean up."""
    from config import Settings
    from devstack import connect_temporal, ensure_payload_keys, temporal_address

    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", default=os.environ.get("INTAKE_BENCH_API", f"http://127.0.0.1:{settings.api_port}"),
                    help="API base URL (default: http://127.0.0.1:INTAKE_API_PORT)")
    ap.add_argument("--temporal-address", default=temporal_address(settings),
                    help="Temporal frontend (default: INTAKE_TEMPORAL_ADDRESS, else 127.0.0.1:INTAKE_TEMPORAL_PORT)")
    ap.add_argument("--namespace", default=settings.temporal_namespace)
    ap.add_argument("--tokens-file", type=Path, default=settings.data_dir / "demo-tokens.txt",
                    help="staff tokens as in demo-tokens.txt (default: INTAKE_DATA_DIR/demo-tokens.txt)")
    ap.add_argument("--token", action="append", default=[x for x in [os.environ.get("INTAKE_BENCH_TOKENS")] if x],
                    metavar="ID:ROLE:TOKEN", help="a staff token (repeatable; env INTAKE_BENCH_TOKENS, comma-separated)")
    ap.add_argument("--n", type=int, default=100, help="operations per phase at --concurrency callers (100)")
    ap.add_argument("--serial", type=int, default=30, help="operations per phase at 1 caller (30)")
    ap.add_argument("--concurrency", type=int, default=20, help="concurrent callers (20)")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up operations per side (10)")
    ap.add_argument("--task-queue", default=settings.task_queue,
                    help="the stack's task queue, drained between phases (default: INTAKE_TASK_QUEUE, intake)")
    ap.add_argument("--drain-timeout", type=float, default=60.0,
                    help="longest wait for the task queues to drain between phases (60 s)")
    ap.add_argument("--settle", type=float, default=1.0, help="pause after draining, seconds (1)")
    ap.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout per request, seconds (30)")
    ap.add_argument("--history-wait", type=float, default=30.0,
                    help="how long to wait for the signed case's workflow to close (30 s)")
    ap.add_argument("--phone-prefix", default="17", help="first two digits of the benchmark's phones (17)")
    ap.add_argument("--no-whole-case", action="store_true", help="skip the complete 情况一 case")
    args = ap.parse_args()

    tokens = collect_tokens(args.tokens_file, args.token)
    if not tokens:
        ap.error(f"no staff tokens: {args.tokens_file} is missing; give --tokens-file or --token ID:ROLE:TOKEN")
    # The stack's payload key (INTAKE_PAYLOAD_KEYS, else the dev stack's key file in its data dir).
    run_settings = ensure_payload_keys(settings).model_copy(
        update={"temporal_address": args.temporal_address, "temporal_namespace": args.namespace}
    )
    api = Api(args.api, tokens, args.concurrency, args.timeout)
    try:
        r = await api.http.get("/readyz")
        if r.status_code != 200:
            print(f"the API at {args.api} is not ready: {r.status_code} {r.text[:200]}", file=sys.stderr)
            return 2
    except httpx.HTTPError as exc:
        print(f"no API at {args.api} ({exc!r}); start the stack first (see the docstring)", file=sys.stderr)
        await api.close()
        return 2
    client = await connect_temporal(run_settings)

    bench = Bench(args, client, api)
    print(f"bench_api_vs_raw  {machine_line()}")
    print(f"API {args.api}  Temporal {args.temporal_address} ({args.namespace})  raw task queue {bench.queue}")
    print(f"{args.n} ops at {args.concurrency} callers, {args.serial} at 1 caller, warm-up {args.warmup}; "
          f"phones {args.phone_prefix}{bench.run:04d}xxxxx")
    whole: dict[str, Any] | None = None
    whole_error: str | None = None
    res: dict[str, Phase] = {}
    try:
        async with Worker(client, task_queue=bench.queue, workflows=[RawWorkflow]):
            try:
                res = await bench.measure()
                if not args.no_whole_case:
                    print("情况一 case to signed ...", flush=True)
                    try:
                        whole = await bench.whole_case()
                    except (ApiError, RPCError, httpx.HTTPError) as exc:
                        whole_error = str(exc)
                print_report(res, whole, whole_error)
            finally:
                await bench.cleanup()
    finally:
        await api.close()
    failed = sum(len(p.errors) for p in res.values())
    if failed:
        print(f"note: {failed} calls failed: per s counts the successful ones, p50/p99 include the failed calls")
    return 0

if __name__ == "__main__":
    code = asyncio.run(main())
    # The Temporal SDK's runtime threads can abort the interpreter while it finalizes (PyGILState_Release)
    # after the report is printed: leave without finalizing, the report flushed and the exit code kept.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
