"""Load as staff make it (SPEC §10): simulated staff doing the real mix for minutes, measured by locust.

Starts the whole stack as ``make run`` does (``intake dev``: PostgreSQL, the Temporal dev server, the
API's server processes and the worker as separate processes, the default policy) on a throwaway data
directory and free ports; seeds one staff member per simulated person (the demo staff first, then
more of each role; designers and assistants nobody simulates are put on leave, so every assignment
goes to someone who acts on it), each with a bearer token and a one-time console sign-in link; then
runs ``benchmarks/load/locustfile.py`` headless:

    locust -f benchmarks/load/locustfile.py --headless -u USERS -r RATE -t DURATION --csv …

and prints p50 / p95 / p99 per page and per API route (ids grouped: ``/intakes/{id}``), requests,
errors and throughput, writes locust's CSV files and a chart (HTML with the console's vendored
Chart.js, and a PNG of it when Playwright and a Chromium are there) into ``--out``
(benchmarks/results/), stops the stack and deletes its data. Exit status 1 when any request failed
(an answer other than the one expected) or the stack or locust did not run.

    .venv/bin/python benchmarks/bench_load.py                       # 50 staff for 10 minutes (SPEC §10)
    .venv/bin/python benchmarks/bench_load.py --users 10 --minutes 1
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import html
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.benchlib import fmt, machine_line, pad  # noqa: E402

LOCUSTFILE = ROOT / "benchmarks" / "load" / "locustfile.py"
RESULTS = ROOT / "benchmarks" / "results"
CHART_JS = ROOT / "api" / "console" / "static" / "vendor" / "chart.umd.min.js"
ROSTER_ENV = "INTAKE_LOAD_ROSTER"

# SPEC §10: 50 simulated staff for 10 minutes.
USERS = 50
MINUTES = 10.0
# The company's shape at 50 people: one manager, one director, one assistant lead; the rest in these
# proportions (12 consultants, 20 designers, 15 assistants at 50).
FIXED_ROLES = ("manager", "director", "assistant_lead")
SHARES = {"consultant": 12, "designer": 20, "assistant": 15}
DESIGNER_LEVELS = ("chief", "senior", "senior", "designer", "designer", "designer", "senior", "designer", "designer",
                   "designer")  # fmt: skip
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"
GIVEN = ("子涵", "雨萱", "浩然", "思远", "欣怡", "宇轩", "梓萱", "俊熙", "佳琪", "天佑", "若曦", "明哲")


def role_counts(users: int) -> dict[str, int]:
    """How many simulated people of each role: one manager, director and assistant lead; the rest by SHARES
    (largest remainders), with a consultant and a designer at least (below five people: manager, consultant,
    designer, director, assistant lead, in that order)."""
    if users < 1:
        raise ValueError("at least one simulated person")
    counts = {role: 0 for role in (*FIXED_ROLES, *SHARES)}
    if users < 5:
        for role in ("manager", "consultant", "designer", "director", "assistant_lead")[:users]:
            counts[role] = 1
        return counts
    for role in FIXED_ROLES:
        counts[role] = 1
    left = users - len(FIXED_ROLES)
    total = sum(SHARES.values())
    exact = {role: left * share / total for role, share in SHARES.items()}
    for role, x in exact.items():
        counts[role] = int(x)
    for role in sorted(exact, key=lambda r: exact[r] - int(exact[r]), reverse=True)[: users - sum(counts.values())]:
        counts[role] += 1
    for role in ("consultant", "designer"):  # nobody to bring leads, or to take them: a flow with no end
        if counts[role] == 0:
            donor = "assistant" if counts["assistant"] else max(SHARES, key=lambda r: counts[r])
            counts[donor] -= 1
            counts[role] += 1
    return counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the stack: `intake dev` on a throwaway data dir -----------------------------------------------


class Stack:
    """One `intake dev` subprocess (its own session: our SIGINT reaches it alone, as a Ctrl-C would)."""

    def __init__(self, data_dir: Path, log: Path, api_processes: int | None) -> None:
        self.data_dir = data_dir
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        self.env.update(INTAKE_DATA_DIR=str(data_dir), INTAKE_API_HOST="127.0.0.1",
                        INTAKE_API_PORT=str(_free_port()), INTAKE_TEMPORAL_PORT=str(_free_port()),
                        INTAKE_TEMPORAL_UI_PORT=str(_free_port()), PYTHONUNBUFFERED="1")  # fmt: skip
        self.base = f"http://127.0.0.1:{self.env['INTAKE_API_PORT']}"
        cmd = [str(Path(sys.executable).parent / "intake"), "dev", "--quiet"]
        if api_processes:
            cmd += ["--api-processes", str(api_processes)]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, within: float = 120.0) -> None:
        """Until the banner is printed and /readyz answers 200."""
        import httpx

        deadline = time.monotonic() + within
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"intake dev exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
                if "Press Ctrl-C to stop." in self.output():
                    try:
                        if http.get(f"{self.base}/readyz").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                time.sleep(0.3)
        raise RuntimeError(f"intake dev not ready within {within:.0f}s:\n{self.output()[-3000:]}")

    def stop(self, within: float = 60.0) -> int | None:
        """SIGINT (Ctrl-C), then SIGKILL to its group when it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


# --- the people ----------------------------------------------------------------------------------------


async def seed_roster(data_dir: Path, base: str, counts: dict[str, int], pace: float) -> dict[str, Any]:
    """One staff member per simulated person, with a token and a one-time sign-in code each."""
    from devstack import PG_DIR_NAME, TOKENS_FILE_NAME, EmbeddedPostgres, read_demo_tokens
    from domain.enums import Level, Role, StaffStatus
    from store.db import create_pool
    from store.sessions import SessionRepository
    from store.staff import StaffRepository

    dsn = EmbeddedPostgres(data_dir / PG_DIR_NAME).running_uri()
    if dsn is None:
        raise RuntimeError("the stack's PostgreSQL is not running")
    run = random.randint(0, 9999)
    demo = read_demo_tokens(data_dir / TOKENS_FILE_NAME)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    staff: dict[str, list[dict[str, Any]]] = {}
    try:
        repo = StaffRepository(pool)
        sessions = SessionRepository(pool)
        added = 0
        for role, count in counts.items():
            people: list[dict[str, Any]] = [
                {"id": t.staff_id, "name": t.name, "token": t.token} for t in demo if t.role == role
            ]
            # A demo designer or assistant nobody plays takes no cases (one stays when nobody plays the role).
            for extra in people[max(count, 1):]:
                if role in ("designer", "assistant"):
                    await repo.set_status(staff_id=extra["id"], status=StaffStatus.on_leave)
            people = people[:count]
            while len(people) < count:
                added += 1
                level = Level(DESIGNER_LEVELS[added % len(DESIGNER_LEVELS)]) if role == "designer" else None
                name = SURNAMES[added % len(SURNAMES)] + GIVEN[added % len(GIVEN)]
                member = await repo.add(name=name, phone=f"16{run:04d}{added:05d}", role=Role(role), level=level)
                token = await repo.issue_token(staff_id=member.id, label="load test")
                people.append({"id": member.id, "name": member.name, "token": token})
            for p in people:
                p["link"] = await sessions.issue_link(staff_id=p["id"], ttl=timedelta(hours=3))
            staff[role] = people
    finally:
        await pool.close()
    return {"base": base, "pace": pace, "run": run, "counts": counts, "staff": staff}


async def work_done(data_dir: Path) -> dict[str, Any]:
    """What the simulated staff got done, from the stack's database: cases by stage and outcome, steps
    completed by someone (by step)."""
    from devstack import PG_DIR_NAME, EmbeddedPostgres
    from store.db import create_pool

    dsn = EmbeddedPostgres(data_dir / PG_DIR_NAME).running_uri()
    if dsn is None:
        return {}
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        cases = await pool.fetch("SELECT coalesce(outcome, stage) AS k, count(*) AS n FROM cases GROUP BY 1 ORDER BY 2 DESC")
        steps = await pool.fetch("SELECT step, count(*) AS n FROM case_steps WHERE status = 'done' AND completed_by"
                                 " IS NOT NULL GROUP BY step ORDER BY 2 DESC")
    finally:
        await pool.close()
    return {"cases": {r["k"]: r["n"] for r in cases}, "steps": {r["step"]: r["n"] for r in steps}}


def print_work(work: dict[str, Any]) -> None:
    if not work:
        return
    cases = work["cases"]
    print(f"\nwork done: {sum(cases.values())} cases created (now: "
          + ", ".join(f"{n} {k}" for k, n in cases.items()) + "); steps completed: "
          + (", ".join(f"{n} {k}" for k, n in work["steps"].items()) or "none"))


def duration_text(seconds: float) -> str:
    """"10 min" or "25 s"."""
    return f"{seconds / 60:.3g} min" if seconds >= 120 else f"{seconds:.3g} s"


# --- the report -----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of locust's statistics."""

    name: str
    requests: int
    failures: int
    rps: float
    p50: float
    p95: float
    p99: float
    max: float

    @property
    def kind(self) -> str:
        """console page or form, API route, or the total."""
        if self.name == "Aggregated":
            return "total"
        return "console" if " /console" in self.name else "api"


def read_stats(prefix: Path) -> list[Row]:
    """The rows of `<prefix>_stats.csv`."""
    rows = []
    with open(f"{prefix}_stats.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            def num(key: str, r: dict[str, str] = r) -> float:
                try:
                    return float(r[key])
                except (KeyError, ValueError):
                    return math.nan

            rows.append(Row(name=r["Name"], requests=int(r["Request Count"]), failures=int(r["Failure Count"]),
                            rps=num("Requests/s"), p50=num("50%"), p95=num("95%"), p99=num("99%"),
                            max=num("Max Response Time")))  # fmt: skip
    return rows


def read_failures(prefix: Path) -> list[tuple[str, str, int]]:
    """(name, error, occurrences) from `<prefix>_failures.csv`."""
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [(f"{r['Method']} {r['Name']}".strip(), r["Error"], int(r["Occurrences"])) for r in csv.DictReader(f)]


def ordered(rows: list[Row]) -> list[Row]:
    """Console pages and forms, then API routes, then the total."""
    order = {"console": 0, "api": 1, "total": 2}
    return sorted(rows, key=lambda r: (order[r.kind], r.name.split(" ", 1)[-1], r.name))


def print_table(rows: list[Row], failures: list[tuple[str, str, int]], seconds: float) -> None:
    head = f"{pad('page / route', 46)} {'requests':>9} {'errors':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(head)
    print("-" * len(head))
    last = None
    for r in ordered(rows):
        if last is not None and r.kind != last:
            print()
        last = r.kind
        label = "all requests" if r.kind == "total" else r.name
        print(f"{pad(label, 46)} {r.requests:>9,} {r.failures:>7,} {fmt(r.rps, '', 2):>7} {fmt(r.p50, '', 0):>8} "
              f"{fmt(r.p95, '', 0):>8} {fmt(r.p99, '', 0):>8} {fmt(r.max, '', 0):>8}")
    total = next((r for r in rows if r.kind == "total"), None)
    if total is not None:
        print(f"\nthroughput {total.rps:.1f} requests/s over {duration_text(seconds)}; "
              f"{total.requests:,} requests, {total.failures:,} errors")
    if failures:
        print("\nerrors:")
        for name, error, n in sorted(failures, key=lambda f: -f[2])[:20]:
            print(f"  {n:>5} × {name}: {error[:160]}")


def read_history(prefix: Path) -> list[dict[str, float]]:
    """The run's aggregated time series: seconds, users, requests/s, p95 (locust's `_stats_history.csv`)."""
    path = Path(f"{prefix}_stats_history.csv")
    if not path.exists():
        return []
    out = []
    with path.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("Name") == "Aggregated"]
    if not rows:
        return []
    t0 = float(rows[0]["Timestamp"])
    for r in rows:
        try:
            p95 = float(r["95%"])
        except ValueError:
            p95 = math.nan
        out.append({"t": float(r["Timestamp"]) - t0, "start": t0, "users": float(r["User Count"]),
                    "rps": float(r["Requests/s"]), "p95": p95})
    return out


def chart_html(rows: list[Row], history: list[dict[str, float]], title: str) -> str:
    """A page of two charts with the console's vendored Chart.js inlined (no CDN, opens offline)."""
    named = [r for r in ordered(rows) if r.kind != "total"]
    bars = {"labels": [r.name for r in named],
            "datasets": [{"label": f"{p} ms", "data": [None if math.isnan(v) else v for v in vals]}
                         for p, vals in (("p50", [r.p50 for r in named]), ("p95", [r.p95 for r in named]),
                                         ("p99", [r.p99 for r in named]))]}  # fmt: skip
    line = {"labels": [f"{h['t'] / 60:.1f}" for h in history],
            "datasets": [{"label": "requests/s", "data": [h["rps"] for h in history], "yAxisID": "y"},
                         {"label": "p95 ms so far (all requests)", "data": [None if math.isnan(h["p95"]) else h["p95"]
                                                                   for h in history], "yAxisID": "y1"},
                         {"label": "simulated staff", "data": [h["users"] for h in history], "yAxisID": "y"}]}
    script = CHART_JS.read_text(encoding="utf-8").replace("</script", "<\\/script")
    height = 120 + 26 * len(named)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:16px;width:1100px;background:#fff}} h1{{font-size:18px}}</style>
<script>{script}</script></head>
<body><h1>{html.escape(title)}</h1>
<div style="height:{height}px"><canvas id="bars"></canvas></div>
<div style="height:320px;margin-top:24px"><canvas id="line"></canvas></div>
<script>
Chart.defaults.animation = false;
Chart.defaults.elements.point.radius = 0;
new Chart(document.getElementById('bars'), {{type: 'bar', data: {json.dumps(bars, ensure_ascii=False)},
  options: {{indexAxis: 'y', maintainAspectRatio: false,
    plugins: {{title: {{display: true, text: 'response time per page and route (ms)'}}}}}}}});
new Chart(document.getElementById('line'), {{type: 'line', data: {json.dumps(line)},
  options: {{maintainAspectRatio: false, scales: {{x: {{title: {{display: true, text: 'minutes'}}}},
    y: {{position: 'left', title: {{display: true, text: 'requests/s, staff'}}}},
    y1: {{position: 'right', grid: {{drawOnChartArea: false}}, title: {{display: true, text: 'p95 ms'}}}}}},
    plugins: {{title: {{display: true, text: 'over the run'}}}}}}}});
document.body.dataset.ready = '1';
</script></body></html>
"""


def chart_png(page_html: Path, png: Path) -> bool:
    """A PNG of the chart page through headless Chromium (Playwright, Debian's chromium); False without them."""
    chromium = os.environ.get("INTAKE_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        return False
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return False
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1140, "height": 800})
            page.goto(page_html.resolve().as_uri())
            page.wait_for_selector("body[data-ready='1']")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    return True


def report(prefix: Path, seconds: float | None = None) -> tuple[list[Row], int]:
    """The table, the work done and the chart of a run's CSV files (`seconds`: the run's planned length,
    else read from its history); its rows and errors."""
    rows = read_stats(prefix)
    history = read_history(prefix)
    if seconds is None:
        seconds = round(history[-1]["t"] / 10) * 10 if history else math.nan  # locust writes every ~2 s
    print()
    print_table(rows, read_failures(prefix), seconds)
    work_file = Path(f"{prefix}-work.json")
    if work_file.exists():
        print_work(json.loads(work_file.read_text(encoding="utf-8")))
    users = int(max((h["users"] for h in history), default=0))
    day = time.strftime("%Y-%m-%d", time.localtime(history[0]["start"])) if history else "?"
    title = (f"{users} simulated staff for {duration_text(round(seconds))}, intake dev, default policy "
             f"({day}, {os.cpu_count()} cores)")
    page = Path(f"{prefix}-chart.html")
    page.write_text(chart_html(rows, history, title), encoding="utf-8")
    png = Path(f"{prefix}-chart.png")
    drawn = chart_png(page, png)
    print(f"\nCSV: {prefix}_stats.csv (and _failures, _stats_history); chart: {png if drawn else page}")
    return rows, sum(r.failures for r in rows if r.kind != "total")


# --- the run ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=USERS, help=f"simulated staff (default {USERS})")
    ap.add_argument("--minutes", type=float, default=MINUTES, help=f"how long they work (default {MINUTES:g})")
    ap.add_argument("--seconds", type=float, help="the duration in seconds instead (short runs)")
    ap.add_argument("--spawn-rate", type=float, default=5.0, help="people starting per second (default 5)")
    ap.add_argument("--pace", type=float, default=1.0,
                    help="factor on every think time (default 1; 0.05 for a quick check that reaches every step)")
    ap.add_argument("--api-processes", type=int, help="the API's server processes (default: intake dev's, one per core)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where the CSV files and the chart go")
    ap.add_argument("--keep-data", action="store_true", help="keep the stack's data dir (printed) after the run")
    ap.add_argument("--report", type=Path, metavar="PREFIX",
                    help="run nothing: the table and the chart again from a run's files (benchmarks/results/load-…)")
    args = ap.parse_args(argv)
    if args.report is not None:
        rows, errors = report(args.report)
        return 1 if errors or not rows else 0
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    counts = role_counts(args.users)

    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = args.out / f"load-{stamp}"
    data_dir = Path(tempfile.mkdtemp(prefix="intake-load-"))
    stack_log = Path(f"{prefix}-stack.log")
    print(machine_line())
    print(f"{args.users} simulated staff ({', '.join(f'{n} {r}' for r, n in counts.items() if n)}) for "
          f"{duration_text(seconds)}, think times ×{args.pace:g}; stack log {stack_log}")
    stack = Stack(data_dir, stack_log, args.api_processes)
    code = 1
    try:
        t0 = time.monotonic()
        stack.wait_ready()
        print(f"intake dev ready in {time.monotonic() - t0:.0f} s at {stack.base} (data {data_dir})")
        roster = asyncio.run(seed_roster(data_dir, stack.base, counts, args.pace))
        roster_file = data_dir / "load-roster.json"
        fd = os.open(roster_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(roster, f, ensure_ascii=False)
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(args.users),
               "-r", str(args.spawn_rate), "-t", f"{max(1, round(seconds))}s", "--stop-timeout", "10",
               "--csv", str(prefix), "--host", stack.base, "--only-summary", "--loglevel", "WARNING"]  # fmt: skip
        locust_log = Path(f"{prefix}-locust.log")
        with locust_log.open("w", encoding="utf-8") as out:
            locust = subprocess.Popen(cmd, env={**os.environ, ROSTER_ENV: str(roster_file)}, cwd=ROOT,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
            # The stack must live through the run: stopped from outside, its figures would be connection errors.
            while locust.poll() is None and stack.proc.poll() is None:
                time.sleep(0.5)
            stack_died = stack.proc.poll() is not None
            if stack_died and locust.poll() is None:
                locust.send_signal(signal.SIGINT)  # locust writes its CSV files and stops
                locust.wait(60)
            locust.wait()
        if stack_died:
            print(f"FAIL: intake dev stopped during the run (exit code {stack.proc.returncode}), not by this"
                  f" script: something outside sent it a signal or it failed; its log: {stack_log}")
        locust_out = locust_log.read_text(encoding="utf-8", errors="replace")
        if not Path(f"{prefix}_stats.csv").exists():
            print(locust_out[-4000:])
            raise RuntimeError(f"locust wrote no statistics (exit {locust.returncode})")
        work = {} if stack_died else asyncio.run(work_done(data_dir))
        Path(f"{prefix}-work.json").write_text(json.dumps(work, ensure_ascii=False, indent=1), encoding="utf-8")
        rows, errors = report(prefix, seconds)
        code = 1 if errors or stack_died or locust.returncode not in (0, 1) or not rows else 0
        if locust.returncode not in (0, 1):
            print(f"locust exited with {locust.returncode}:\n{locust_out[-2000:]}")
        print("\nPASS: no errors" if code == 0 else f"\nFAIL: {errors} error(s)")
    except Exception as exc:  # noqa: BLE001 - a report: say what broke and exit non-zero
        print(f"FAIL: {exc}")
    finally:
        stopped = stack.stop()
        if stopped not in (0, None):
            print(f"intake dev stopped with exit code {stopped} (log: {stack_log})")
        if args.keep_data:
            print(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
