"""The staff load test (benchmarks/bench_load.py) run briefly: a real `intake dev`, six simulated staff (one
of each role) for 20 s at a twentieth of the think time, and every page and route of the mix answered
without one error."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.bench_load import ROOT

# What the staff's day is made of: each must have been asked for at least once.
CONSOLE = ["GET /console/login/{code}", "POST /console/login/{code}", "GET /console", "GET /console/cases/{id}",
           "POST /console/cases/{id}/steps/{step}", "GET /console/board", "GET /console/reports",
           "GET /console/new", "POST /console/new"]  # fmt: skip
API = ["GET /me/tasks", "GET /intakes/{id}", "POST /intakes", "POST /intakes/{id}/steps/{step}", "GET /intakes",
       "GET /intakes/{id}/designer-suggestions", "GET /reports/sla"]  # fmt: skip


def test_a_short_load_run_reaches_every_page_and_route_without_errors(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_load.py"), "--users", "6", "--seconds", "20",
         "--spawn-rate", "6", "--pace", "0.05", "--out", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "PASS: no errors" in report, report
    [stats] = tmp_path.glob("load-*_stats.csv")
    with stats.open(encoding="utf-8", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    missing = [name for name in CONSOLE + API if int(rows.get(name, {}).get("Request Count", 0)) == 0]
    assert not missing, f"never asked for: {missing}\n{report}"
    assert all(int(r["Failure Count"]) == 0 for r in rows.values()), report
    assert float(rows["Aggregated"]["95%"]) > 0
    # The leads went through the hands of each role: created, called back, assigned, contacted (a designer does
    # the contacts first: they fall due long before the first meetings, so 20 s may end before a meeting).
    [work_file] = tmp_path.glob("load-*-work.json")
    work = json.loads(work_file.read_text(encoding="utf-8"))
    for step in ("callback", "assign_designer", "assign_assistant", "contact"):
        assert work["steps"].get(step, 0) >= 1, (step, work)
    # The table, the chart and the CSV are where the runner says.
    assert "p95 ms" in report and "GET /console/board" in report
    assert list(tmp_path.glob("load-*-chart.html"))
    # The stack stopped and its throwaway data went with it.
    data_dir = re.search(r"\(data (\S+)\)", report)
    assert data_dir and not Path(data_dir.group(1)).exists(), report
