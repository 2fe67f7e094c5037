"""Scale of one worker (SPEC §10): 1,000 timers due within a minute, and 10,000 open cases.

Starts nothing of the stack. It creates cases through the HTTP API (``POST /intakes``) of a stack whose
API runs with ``benchmarks/policy_scale.yaml`` (calendar always open; the callback of a 情况一 case falls
due 180 s after creation, a 情况三 reception review a day after), and reads PostgreSQL and the worker
process from outside. Two figures:

(b) timers: ``--timers`` 情况一 cases created at an even pace over ``--timer-window`` seconds, so their
    callbacks fall due within one minute of each other once creation is over; then, for each case, how
    late its first escalation fired after the callback's due time: ``case_events`` (kind
    ``escalation``, step ``callback``) ``at`` against ``case_steps.due_at``. p50 / p99 / max; target
    p99 < 2 s (< 1 s with ``--burst``). The timer cases are closed afterwards.
    A callback falls due 180 s after its case was created, so the due times spread as widely as the
    creation does: 10,000 cases at ~20 creates/s fall due over ~8 minutes, not one. ``--burst`` measures
    10,000 within a minute the way it happens in an office: leads that came in while it was closed all
    fall due when it opens. ``--write-burst-policy FILE --opens-in MINUTES`` writes a copy of
    policy_scale.yaml whose calendar opens that many minutes from now (closed until then, open to 23:59
    every day); start the API with it, then run with ``--burst --timer-window 0``: the cases are created
    as fast as ``--concurrency`` callers get them (all before the opening), and every callback falls due
    at the opening plus 180 s of working time, at once.
(a) open cases: ``--cases`` 情况三 cases (each holds a timer a day away and stays quiet); the worker's
    RSS before, with all of them open (once every case's first step is in PostgreSQL), and the peak
    sampled during the phase; target < 1 GB.

The worker is ``--worker-pid``; without it, the process listening on the API's port, which for
``intake dev`` is API and worker in one process (a clean worker figure needs a separate ``intake
worker``: see docs/benchmarks.md). The cases of (a) are closed at the end unless ``--keep-open``; the closing
takes about as long as the creation. Exits 0 whatever the verdicts (it is a report, not a test).

    # separate API and worker on their own task queue, beside a running `intake dev`:
    export INTAKE_TASK_QUEUE=scale INTAKE_POLICY_FILE=benchmarks/policy_scale.yaml
    INTAKE_API_PORT=8001 .venv/bin/intake api &  .venv/bin/intake worker &  WORKER=$!
    .venv/bin/python benchmarks/bench_scale.py --api http://127.0.0.1:8001 --worker-pid $WORKER --quick
    .venv/bin/python benchmarks/bench_scale.py --api http://127.0.0.1:8001 --worker-pid $WORKER

    # 10,000 callbacks due at once on two workers (the office opens in 15 minutes):
    .venv/bin/python benchmarks/bench_scale.py --write-burst-policy /tmp/policy_burst.yaml --opens-in 15
    export INTAKE_TASK_QUEUE=scale INTAKE_POLICY_FILE=/tmp/policy_burst.yaml
    INTAKE_API_PORT=8001 .venv/bin/intake api &  .venv/bin/intake worker &  W1=$!;  .venv/bin/intake worker &  W2=$!
    .venv/bin/python benchmarks/bench_scale.py --api http://127.0.0.1:8001 --worker-pid $W1 --worker-pid $W2 \
        --only timers --timers 10000 --timer-window 0 --burst --concurrency 20

Database: ``--database-url`` (or ``INTAKE_DATABASE_URL``), else the embedded PostgreSQL of
``INTAKE_DATA_DIR`` while ``intake dev`` runs. Tokens: ``--tokens-file`` / ``--token ID:ROLE:TOKEN`` as in
bench_api_vs_raw.py (default ``INTAKE_DATA_DIR/demo-tokens.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402

from benchmarks.benchlib import (  # noqa: E402
    Phase,
    PhoneMaker,
    StaffToken,
    close_case,
    collect_tokens,
    first_of,
    fmt,
    machine_line,
    percentile,
    run_phase,
    verdict,
)
from store.db import create_pool  # noqa: E402

RSS_MAX = 1 << 30  # 1 GiB
LATE_P99_MAX_S = 2.0
BURST_LATE_P99_MAX_S = 1.0  # issue 20: 10,000 callbacks due within a minute on two workers, p99 < 1 s
MB = 1 << 20
SCALE_POLICY = Path(__file__).resolve().parent / "policy_scale.yaml"


def burst_policy_text(opens_in_minutes: float, now: datetime | None = None) -> tuple[str, datetime]:
    """policy_scale.yaml with a calendar that is closed now and opens `opens_in_minutes` from now (rounded
    up to the minute; open until 23:59 every day): every callback of a case created before the opening
    falls due at the opening plus its 180 s of working time. Returns the YAML and the opening (UTC)."""
    import yaml

    from domain.policy import Policy

    data = yaml.safe_load(SCALE_POLICY.read_text(encoding="utf-8"))
    tz = ZoneInfo(data["calendar"]["timezone"])
    local = (now or datetime.now(UTC)).astimezone(tz) + timedelta(minutes=opens_in_minutes)
    opens = local.replace(second=0, microsecond=0) + (timedelta(minutes=1) if local.second or local.microsecond
                                                       else timedelta(0))
    if opens.date() != (now or datetime.now(UTC)).astimezone(tz).date() or opens.time() >= dtime(23, 50):
        raise SystemExit(f"the opening {opens:%H:%M} ({tz.key}) is too close to midnight for a one-day calendar; "
                         "choose a shorter --opens-in or run later")
    data["name"] = "scale-burst"
    data["calendar"].update({
        "always_open": False,
        "hours": {d: [[f"{opens:%H:%M}", "23:59"]] for d in range(7)},
        "holidays": [], "makeup_workdays": [],
    })  # fmt: skip
    text = (f"# Written by bench_scale.py --write-burst-policy on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from\n"
            f"# benchmarks/policy_scale.yaml: the office opens at {opens:%H:%M} ({tz.key}) today; every callback\n"
            f"# of a case created before then falls due at {opens:%H:%M} plus 180 s of working time.\n"
            + yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    Policy.model_validate(yaml.safe_load(text))  # the API would refuse to start with a broken one
    return text, opens.astimezone(UTC)


class RssSampler:
    """Samples the RSS of one or more worker processes every `interval` seconds in the background; keeps
    the peak. With several workers every figure is the largest single process (the target is per worker)."""

    def __init__(self, pids: int | list[int], interval: float = 0.5) -> None:
        self.procs = [psutil.Process(p) for p in (pids if isinstance(pids, list) else [pids])]
        self.proc = self.procs[0]
        self.interval = interval
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    def now(self) -> int:
        """The current RSS in bytes of the largest process (and the peak follows it)."""
        rss = max(int(p.memory_info().rss) for p in self.procs)
        self.peak = max(self.peak, rss)
        return rss

    def reset_peak(self) -> None:
        """Start a new peak from the current RSS."""
        self.peak = 0
        self.now()

    def high_water(self) -> int | None:
        """VmHWM: the highest RSS since the process started (Linux), None elsewhere."""
        try:
            marks = [int(line.split()[1]) * 1024 for p in self.procs
                     for line in Path(f"/proc/{p.pid}/status").read_text().splitlines() if line.startswith("VmHWM:")]
        except OSError:
            return None
        return max(marks) if marks else None

    async def _run(self) -> None:
        while True:
            try:
                self.now()
            except psutil.Error:
                return
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Sample in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()


def api_pid(base: str) -> int | None:
    """The pid of the process listening on the API's TCP port on this machine."""
    port = httpx.URL(base).port or 80
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def describe_process(pid: int) -> str:
    """pid and command line, shortened."""
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error as exc:
        return f"pid {pid} ({exc})"
    return f"pid {pid}: {cmd[:120]}"


def mb(n: int | None) -> str:
    """Bytes as MB."""
    return "-" if n is None else f"{n / MB:,.0f} MB"


class Scale:
    """The HTTP side: create and close cases as the staff whose tokens we hold."""

    def __init__(self, args: argparse.Namespace, tokens: list[StaffToken], pool: asyncpg.Pool) -> None:
        self.args = args
        self.pool = pool
        limits = httpx.Limits(max_connections=args.concurrency + 4, max_keepalive_connections=args.concurrency + 4)
        self.http = httpx.AsyncClient(base_url=args.api, timeout=60, limits=limits)
        self.run = random.Random().randrange(10_000)
        self.phone = PhoneMaker(args.phone_prefix, self.run)

        def need(role: str) -> StaffToken:
            t = first_of(tokens, role)
            if t is None:
                raise SystemExit(f"no token for a {role}: give --tokens-file or --token ID:{role}:TOKEN")
            return t

        self.consultant = need("consultant")
        self.site_lead = need("site_lead")
        self.manager = need("manager")

    async def post(self, path: str, who: StaffToken, body: dict[str, Any], expect: int) -> dict[str, Any]:
        """POST and return the body; RuntimeError on any other status."""
        r = await self.http.post(path, json=body, headers={"Authorization": f"Bearer {who.token}"})
        if r.status_code != expect:
            raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")
        out: dict[str, Any] = r.json()
        return out

    async def create(self, scenario: str) -> int:
        """A 情况一 online lead (`remote`) or a 情况三 compound-office client (`site_office`)."""
        client = {"name": "王建国", "phone": self.phone(), "gender": "male", "area_m2": 100, "budget": 200000}
        if scenario == "remote":
            body = {"source": "online", "scenario": "remote", "client": {**client, "compound": "阳光花园"},
                    "notes": "bench_scale timers"}  # fmt: skip
            who = self.consultant
        else:
            body = {"source": "site_office", "scenario": "site_office", "client": {**client, "compound": "翠湖苑"},
                    "notes": "bench_scale open cases"}  # fmt: skip
            who = self.site_lead
        case = await self.post("/intakes", who, body, 201)
        return int(case["id"])

    async def close_all(self, ids: list[int], what: str) -> None:
        """Close cases as duplicates (benchmark data)."""

        async def close(i: int) -> None:
            await close_case(self.http, ids[i], self.manager.token, "基准测试数据（bench_scale）",
                             f"bench-close-{self.run}-{ids[i]}")

        t0 = time.perf_counter()
        ph = await run_phase("close", len(ids), self.args.concurrency, close)
        print(f"closed {ph.ok}/{len(ids)} {what} in {time.perf_counter() - t0:.0f} s"
              + (f" ({len(ph.errors)} failed, e.g. {ph.errors[0]})" if ph.errors else ""), flush=True)


async def paced(count: int, window: float, concurrency: int, op: Callable[[int], Awaitable[object]],
                ) -> Phase:
    """`op(i)` started no earlier than i × window / count seconds from now (an even pace), `concurrency` at most."""
    t0 = time.monotonic()

    async def at_pace(i: int) -> object:
        delay = t0 + i * window / max(count, 1) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return await op(i)

    return await run_phase("paced", count, concurrency, at_pace)


async def progress(what: str, done: Callable[[], int], total: int, stop: asyncio.Event) -> None:
    """Print how far a long phase is, every 15 s."""
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 15)
        except TimeoutError:
            n = done()
            print(f"  {what}: {n:,}/{total:,} after {time.monotonic() - t0:.0f} s", flush=True)


async def timers_phase(s: Scale, rss: RssSampler) -> dict[str, Any]:
    """(b) cases whose callbacks fall due within a minute; the lateness of each first escalation."""
    a = s.args
    ids: list[int] = []

    async def create(i: int) -> None:
        ids.append(await s.create("remote"))

    print(f"\n(b) timers: creating {a.timers:,} 情况一 cases over {a.timer_window:.0f} s ...", flush=True)
    stop = asyncio.Event()
    prog = asyncio.create_task(progress("created", lambda: len(ids), a.timers, stop))
    ph = await paced(a.timers, a.timer_window, a.concurrency, create)
    stop.set()
    await prog
    print(f"created {ph.ok:,} in {ph.wall_s:.0f} s ({ph.throughput:.1f}/s, p50 {ph.p(50):.0f} ms, "
          f"p99 {ph.p(99):.0f} ms, {len(ph.errors)} failed)" + (f", e.g. {ph.errors[0]}" if ph.errors else ""))
    if not ids:
        return {"ids": ids}
    created_end = datetime.now(UTC)

    sql = """
        SELECT s.case_id, s.due_at,
               (SELECT min(e.at) FROM case_events e
                 WHERE e.case_id = s.case_id AND e.kind = 'escalation' AND e.step = 'callback') AS fired
          FROM case_steps s
         WHERE s.case_id = ANY($1::bigint[]) AND s.step = 'callback' AND s.attempt = 1
    """
    rows: list[asyncpg.Record] = []
    spread: float | None = None
    deadline: float | None = None
    wait_started = last_note = time.monotonic()
    while True:
        rows = await s.pool.fetch(sql, ids)
        dues = [r["due_at"] for r in rows if r["due_at"] is not None]
        fired = sum(1 for r in rows if r["fired"] is not None)
        if dues and deadline is None and len(dues) == len(ids):
            last_due = max(dues)
            first_due = min(dues)
            spread = (last_due - first_due).total_seconds()
            print(f"callbacks due from {first_due:%H:%M:%S} to {last_due:%H:%M:%S} UTC "
                  f"(spread {(last_due - first_due).total_seconds():.0f} s; the first one "
                  f"{(first_due - created_end).total_seconds():+.0f} s after creation ended)", flush=True)
            if first_due < created_end:
                print("  note: timers fell due while cases were still being created (policy callback too short)")
            wait = (last_due - datetime.now(UTC)).total_seconds() + a.fire_grace
            deadline = time.monotonic() + max(wait, a.fire_grace)
        if fired == len(ids):
            break
        if time.monotonic() - last_note >= 15:
            last_note = time.monotonic()
            print(f"  escalated: {fired:,}/{len(ids):,}", flush=True)
        if deadline is not None and time.monotonic() > deadline:
            print(f"  gave up waiting: {len(ids) - fired} first escalations not in PostgreSQL "
                  f"{a.fire_grace:.0f} s after the last due time")
            break
        if deadline is None and time.monotonic() - wait_started > 300:
            print("  gave up: the cases' callback steps never appeared in PostgreSQL")
            break
        await asyncio.sleep(2)
    late_s = [(r["fired"] - r["due_at"]).total_seconds() for r in rows if r["fired"] and r["due_at"]]
    rss_after = rss.now()
    result = {"ids": ids, "n": len(ids), "fired": len(late_s), "late": late_s, "rss_after": rss_after,
              "spread": spread}
    if late_s:  # the figure before the long clean-up (closing takes about as long as creating)
        print(f"first escalations: {len(late_s):,}/{len(ids):,} fired, late p50 {percentile(late_s, 50):.3f} s, "
              f"p99 {percentile(late_s, 99):.3f} s, max {max(late_s):.3f} s; worker RSS {mb(rss_after)}", flush=True)
    await s.close_all(ids, "timer cases")
    return result


async def cases_phase(s: Scale, rss: RssSampler) -> dict[str, Any]:
    """(a) many open 情况三 cases: the worker's RSS before, with them open, and the peak."""
    a = s.args
    ids: list[int] = []
    await asyncio.sleep(a.settle)
    before = rss.now()
    rss.reset_peak()
    print(f"\n(a) open cases: RSS before {mb(before)}; creating {a.cases:,} 情况三 cases at {a.concurrency} ...",
          flush=True)

    async def create(i: int) -> None:
        ids.append(await s.create("site_office"))

    stop = asyncio.Event()
    prog = asyncio.create_task(progress("created", lambda: len(ids), a.cases, stop))
    ph = await run_phase("create", a.cases, a.concurrency, create)
    stop.set()
    await prog
    print(f"created {ph.ok:,} in {ph.wall_s:.0f} s ({ph.throughput:.1f}/s, p50 {ph.p(50):.0f} ms, "
          f"p99 {ph.p(99):.0f} ms, {len(ph.errors)} failed)" + (f", e.g. {ph.errors[0]}" if ph.errors else ""))
    # Every case has run on the worker once its first step is projected.
    t0 = time.monotonic()
    while ids:
        seen = await s.pool.fetchval(
            "SELECT count(DISTINCT case_id) FROM case_steps WHERE case_id = ANY($1::bigint[])", ids
        )
        if seen >= len(ids) or time.monotonic() - t0 > 300:
            print(f"{seen:,}/{len(ids):,} cases have their first step in PostgreSQL")
            break
        await asyncio.sleep(2)
    await asyncio.sleep(a.settle)
    open_rss = rss.now()
    open_count = await s.pool.fetchval(
        "SELECT count(*) FROM cases WHERE id = ANY($1::bigint[]) AND status = 'open'", ids
    )
    return {"ids": ids, "n": len(ids), "open": open_count, "before": before, "open_rss": open_rss,
            "peak": rss.peak, "hwm": rss.high_water()}  # fmt: skip


def database_url(arg: str | None) -> str | None:
    """--database-url, INTAKE_DATABASE_URL, else the embedded PostgreSQL of INTAKE_DATA_DIR when it runs."""
    if arg:
        return arg
    from config import Settings
    from devstack import PG_DIR_NAME, EmbeddedPostgres

    settings = Settings()
    if settings.database_url:
        return settings.database_url
    return EmbeddedPostgres(settings.data_dir / PG_DIR_NAME).running_uri()


async def main() -> int:
    """Parse, find the worker, run the phases, report."""
    from config import Settings

    settings = Settings()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--api", default=os.environ.get("INTAKE_BENCH_API", f"http://127.0.0.1:{settings.api_port}"))
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--tokens-file", type=Path, default=settings.data_dir / "demo-tokens.txt")
    ap.add_argument("--token", action="append", default=[x for x in [os.environ.get("INTAKE_BENCH_TOKENS")] if x],
                    metavar="ID:ROLE:TOKEN")
    ap.add_argument("--worker-pid", type=int, action="append", default=None,
                    help="a worker process, repeated for several workers (RSS: the largest one); default: the "
                         "process listening on the API's port")
    ap.add_argument("--cases", type=int, default=10_000, help="open cases for the RSS figure (10,000)")
    ap.add_argument("--timers", type=int, default=1_000, help="cases whose callbacks fall due together (1,000)")
    ap.add_argument("--timer-window", type=float, default=60.0,
                    help="seconds over which the timer cases are created, evenly (60)")
    ap.add_argument("--fire-grace", type=float, default=60.0,
                    help="how long after the last due time to wait for escalations (60 s)")
    ap.add_argument("--quick", action="store_true", help="a check that it works: 200 cases, 100 timers over 10 s")
    ap.add_argument("--only", choices=["timers", "cases"], default=None, help="run one of the two figures")
    ap.add_argument("--concurrency", type=int, default=20, help="concurrent API callers (20)")
    ap.add_argument("--settle", type=float, default=5.0, help="quiet seconds before reading RSS (5)")
    ap.add_argument("--keep-open", action="store_true", help="leave the open cases of (a) open at the end")
    ap.add_argument("--phone-prefix", default="16", help="first two digits of the benchmark's phones (16)")
    ap.add_argument("--burst", action="store_true",
                    help="the API runs a policy of --write-burst-policy: every callback falls due at once when the "
                         "office opens; judged p99 < 1 s")
    ap.add_argument("--write-burst-policy", type=Path, default=None, metavar="FILE",
                    help="write policy_scale.yaml with a calendar that opens --opens-in minutes from now, then exit")
    ap.add_argument("--opens-in", type=float, default=15.0,
                    help="minutes from now to the opening of --write-burst-policy (15)")
    args = ap.parse_args()
    if args.write_burst_policy is not None:
        text, opens = burst_policy_text(args.opens_in)
        args.write_burst_policy.write_text(text, encoding="utf-8")
        print(f"wrote {args.write_burst_policy}: the office opens at {opens:%H:%M} UTC; create the timer cases before "
              f"then (start the API with INTAKE_POLICY_FILE={args.write_burst_policy}; run with --burst)")
        return 0
    if args.quick:
        args.cases, args.timers, args.timer_window = 200, 100, 10.0

    dsn = database_url(args.database_url)
    if not dsn:
        ap.error("no database: give --database-url (or INTAKE_DATABASE_URL), or run `intake dev` with INTAKE_DATA_DIR")
    tokens = collect_tokens(args.tokens_file, args.token)
    if not tokens:
        ap.error(f"no staff tokens: {args.tokens_file} is missing; give --tokens-file or --token ID:ROLE:TOKEN")
    pids: list[int] = list(args.worker_pid or [])
    pid = pids[0] if pids else api_pid(args.api)
    if pid is None:
        ap.error("no worker process: give --worker-pid (nothing listens on the API's port on this machine)")
    try:
        async with httpx.AsyncClient(timeout=10) as h:
            r = await h.get(f"{args.api}/readyz")
        if r.status_code != 200:
            print(f"the API at {args.api} is not ready: {r.status_code} {r.text[:200]}", file=sys.stderr)
            return 2
    except httpx.HTTPError as exc:
        print(f"no API at {args.api} ({exc!r}); start the stack first (see the docstring)", file=sys.stderr)
        return 2

    print(f"bench_scale  {machine_line()}")
    print(f"API {args.api}; worker {'; '.join(describe_process(p) for p in (pids or [pid]))}")
    if args.worker_pid is None:
        print("  (the API's own process: with `intake dev` that is API and worker together; "
              "give --worker-pid of a separate `intake worker` for the worker alone)")
    pool = await create_pool(dsn, min_size=1, max_size=3)
    rss = RssSampler(pids or pid)
    rss.start()
    s = Scale(args, tokens, pool)
    start_rss = rss.now()
    print(f"worker RSS at start {mb(start_rss)}; phones {args.phone_prefix}{s.run:04d}xxxxx")
    timers: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    try:
        if args.only in (None, "timers"):
            timers = await timers_phase(s, rss)
        if args.only in (None, "cases"):
            cases = await cases_phase(s, rss)
        report(args, start_rss, timers, cases)
    finally:
        rss.stop()
        if cases.get("ids") and not args.keep_open:
            await s.close_all(cases["ids"], "open cases")
        elif cases.get("ids"):
            print(f"left {len(cases['ids']):,} cases open (--keep-open)")
        await s.http.aclose()
        await pool.close()
    return 0


def report(args: argparse.Namespace, start_rss: int, timers: dict[str, Any], cases: dict[str, Any]) -> None:
    """The figures and the SPEC's verdicts."""
    print()
    if timers.get("n"):
        late = timers["late"]
        p50, p99, worst = (percentile(late, 50), percentile(late, 99), max(late) if late else float("nan"))
        missing = timers["n"] - timers["fired"]
        limit = BURST_LATE_P99_MAX_S if args.burst else LATE_P99_MAX_S
        ok = timers["fired"] == timers["n"] and p99 < limit
        spread = timers.get("spread")
        within = f"{spread:.0f} s" if spread is not None else f"~{args.timer_window:.0f} s"
        print(f"(b) {timers['n']:,} timers due within {within}: first escalation late by "
              f"p50 {fmt(p50 * 1000, ' ms', 0)}, p99 {fmt(p99 * 1000, ' ms', 0)}, max {fmt(worst * 1000, ' ms', 0)}"
              f"; {timers['fired']:,} fired, {missing:,} missing; worker RSS after {mb(timers['rss_after'])}")
        workers = len(args.worker_pid or []) or 1
        print(f"    target p99 < {limit:.0f} s (every timer fired), {workers} worker(s): {verdict(ok)}")
    if cases.get("n"):
        ok = cases["peak"] < RSS_MAX
        print(f"(a) {cases['open']:,} open cases: worker RSS before {mb(cases['before'])}, with them open "
              f"{mb(cases['open_rss'])}, peak {mb(cases['peak'])} (sampled; VmHWM since the process started "
              f"{mb(cases['hwm'])}); per case {fmt((cases['open_rss'] - cases['before']) / max(cases['open'], 1) / 1024, ' KB', 1)}")
        print(f"    target < 1 GB for {args.cases:,} open cases: {verdict(ok)}"
              + ("" if cases["open"] >= 10_000 else f" (measured with {cases['open']:,}, not 10,000)"))
    if not timers.get("n") and not cases.get("n"):
        print(f"nothing measured (worker RSS {mb(start_rss)})")


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
