"""The mistakes that matter, made by hand: each named mutant must be killed by the tests named with it.

    python -m tests.mutants.named            # every mutant (make mutation-named)
    python -m tests.mutants.named --list     # what they are and which tests kill them
    python -m tests.mutants.named NAME ...   # some of them
    python -m tests.mutants.named --control  # the named tests pass on the code as it is

Each mutant is a textual edit (the old text, or a regular expression when it starts with "re:", found
exactly once in the files its globs name, replaced by the new text) applied to a throwaway copy of the
project; the named tests then run there and must fail. An edit is found by its text, not by a file and
line, so it survives moving code between modules (the engine split into domain/agenda.py and friends,
the dispatcher moved to background/); if its text is gone the script says so and exits non-zero:
re-create the mutant against the new code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".data", "mutants", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    "__pycache__", "test-artifacts", "docs", "node_modules", "*.egg-info", "build",
)
DOMAIN = ("domain/**/*.py",)
OUTBOX = ("activities/**/*.py", "store/**/*.py", "background/**/*.py")
API = ("api/**/*.py",)
WORKFLOWS = ("workflows/**/*.py",)
TIMING = "tests/domain/test_engine_timing.py"
GUARDS = "tests/activities/test_outbox_guards.py"
FAULTS = "tests/api/test_engine_faults.py"


@dataclass(frozen=True)
class Mutant:
    """A deliberate mistake: edits (old text → new text) within files matching `where`, and its killers."""

    name: str
    what: str
    where: tuple[str, ...]
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


MUTANTS = [
    Mutant(
        "repeats_in_one_burst",
        "every escalation repeat counts from the due time (plan_escalation(step)), not from the rung that fired",
        DOMAIN,
        ((r"re:plan_escalation\(step, repeat_from=(\w+)\.now\)", "plan_escalation(step)"),),
        (f"{TIMING}::test_each_repeat_fires_one_interval_after_the_rung_before_it",
         f"{TIMING}::test_after_an_outage_one_late_tick_pages_once_then_repeats_an_interval_later"),
    ),
    Mutant(
        "rungs_outside_working_time",
        "the escalation rungs are not moved into working time (staff paged at night, on holidays)",
        DOMAIN,
        (("at = self.business(self.add(step.due_at, stage.after, step.wall_clock), step.wall_clock)",
          "at = self.add(step.due_at, stage.after, step.wall_clock)"),
         ("at = self.business(self.add(base, chain.repeat_every, step.wall_clock), step.wall_clock)",
          "at = self.add(base, chain.repeat_every, step.wall_clock)")),
        (f"{TIMING}::test_nobody_is_paged_outside_working_hours",),
    ),
    Mutant(
        "follow_ups_on_days_off",
        "the follow-up reminders are not moved into working time (day 7 on a Sunday pages the designer then)",
        DOMAIN,
        ((r"re:items\.append\(\((\w+)\.business\(outcome\.opened_at \+ after, False\), summary,",
          "items.append((outcome.opened_at + after, summary,"),),
        (f"{TIMING}::test_follow_ups_and_the_client_reminder_fall_in_working_time",),
    ),
    Mutant(
        "stall_one_repeat_late",
        "the step stalls one repeat after the policy's limit (an off-by-one in the repeat count)",
        DOMAIN,
        ((r"re:if repeats >= (\w+)\.p\.escalation_max_repeats:", r"if repeats > \1.p.escalation_max_repeats:"),),
        (f"{TIMING}::test_each_repeat_fires_one_interval_after_the_rung_before_it",
         "tests/domain/test_engine.py::test_escalation_climbs_on_time_then_stalls_and_tells_the_director_once"),
    ),
    Mutant(
        "ambiguous_send_retried_as_pending",
        "a provider error that may have delivered the SMS puts the row back to `pending` (sent again blindly)",
        OUTBOX,
        (('await self._retry_later(row, "sending" if exc.ambiguous else "pending", str(exc))',
          'await self._retry_later(row, "pending", str(exc))'),),
        (f"{GUARDS}::test_a_maybe_sent_message_stays_sending_and_is_asked_about_not_sent_again",),
    ),
    Mutant(
        "unconfirmed_send_retried_as_pending",
        "when the provider cannot say whether the last send arrived, the row goes back to `pending`",
        OUTBOX,
        (('await self._retry_later(row, "sending", f"无法确认上次发送结果',
          'await self._retry_later(row, "pending", f"无法确认上次发送结果'),),
        (f"{GUARDS}::test_when_the_last_send_cannot_be_confirmed_the_row_stays_sending_and_nothing_is_resent",),
    ),
    Mutant(
        "re_claim_unconditional",
        "the re-claim after \"not found\" ignores which attempt it checked: the loser of the race sends too",
        OUTBOX,
        (("WHERE id = $1 AND status = 'sending' AND sending_at = $2 RETURNING {_COLUMNS}",
          "WHERE id = $1 AND status = 'sending' AND $2::timestamptz IS NOT NULL RETURNING {_COLUMNS}"),),
        (f"{GUARDS}::test_a_dispatcher_that_loses_the_re_claim_race_does_not_send",),
    ),
    Mutant(
        "backoff_uncapped",
        "the retry backoff doubles without its cap (a provider throttled for an hour waits for days)",
        OUTBOX,
        (("least($5::interval * power(2, least(failures, 30)), $6::interval)",
          "($5::interval * power(2, least(failures, 30)) + $6::interval * 0)"),),
        (f"{GUARDS}::test_the_backoff_stops_growing_at_its_cap",),
    ),
    Mutant(
        "delivery_slots_shared_by_channels",
        "the dispatcher's delivery slots are shared: a hung SMS provider holds up the staff notices",
        OUTBOX,
        (("return {channel: max(self._concurrency - len(tasks), 0) for channel, tasks in slots.items()}",
          "return {channel: max(self._concurrency - sum(map(len, slots.values())), 0) for channel in slots}"),),
        (f"{GUARDS}::test_a_hung_sms_channel_does_not_hold_up_staff_notices",),
    ),
    Mutant(
        "api_write_failure_becomes_an_error",
        "the API turns its own failed projection write into an error although Temporal decided the update",
        API,
        (("    except Exception as exc:  # noqa: BLE001 - the action is decided and durable: never turn it into an error",
          "    except ValueError as exc:  # noqa: BLE001 - the action is decided and durable: never turn it into an error"),),
        (f"{FAULTS}::test_an_update_decided_by_temporal_answers_even_when_the_api_cannot_write_it",),
    ),
    Mutant(
        "workflow_leaves_update_writes_to_the_api",
        "the workflow writes only what its timers change, never (after the grace) what an update decided",
        WORKFLOWS,
        (("        if self._urgent or (self._write_due is not None and now >= self._write_due):",
          "        if self._urgent:"),),
        (f"{FAULTS}::test_an_update_decided_by_temporal_answers_even_when_the_api_cannot_write_it",),
    ),
]


def _files(base: Path, globs: tuple[str, ...]) -> list[Path]:
    return sorted({p for g in globs for p in base.glob(g) if p.is_file()})


def apply(m: Mutant, base: Path) -> list[str]:
    """Make the mutant's edits in the tree at `base`; returns the files changed. Raises LookupError when an
    edit's text is not found exactly once."""
    changed: list[str] = []
    for old, new in m.edits:
        pattern = re.compile(old[3:] if old.startswith("re:") else re.escape(old))
        texts = [(p, p.read_text(encoding="utf-8")) for p in _files(base, m.where)]
        hits = [(p, text) for p, text in texts if pattern.search(text)]
        count = sum(len(pattern.findall(text)) for _, text in hits)
        if count != 1:
            raise LookupError(f"{m.name}: {old!r} found {count} times in {', '.join(m.where)} (want once)")
        path, text = hits[0]
        new_text = pattern.sub(new if old.startswith("re:") else (lambda _m, new=new: new), text)
        path.write_text(new_text, encoding="utf-8")
        changed.append(str(path.relative_to(base)))
    return changed


def run_tests(base: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    """pytest on the copy at `base` (its own modules first on sys.path); returns (exit code, tail)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=base, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode, "\n".join(lines[-3:])


def main(argv: list[str] | None = None) -> int:
    """Kill every named mutant (or list them); non-zero when one survives or cannot be made."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their killing tests")
    ap.add_argument("--control", action="store_true", help="run the named tests on the unmutated code")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what}\n  killed by: " + "\n             ".join(m.tests))
        return 0
    bad = 0
    with tempfile.TemporaryDirectory(prefix="named-mutants-") as tmp:
        for m in chosen:
            base = Path(tmp) / m.name
            shutil.copytree(ROOT, base, ignore=IGNORED)
            t0 = time.monotonic()
            if args.control:
                code, tail = run_tests(base, m.tests, args.timeout)
                verdict = "passes" if code == 0 else "FAILS UNMUTATED"
                bad += code != 0
            else:
                try:
                    files = apply(m, base)
                except LookupError as exc:
                    print(f"CANNOT MAKE {m.name}: {exc}")
                    bad += 1
                    continue
                code, tail = run_tests(base, m.tests, args.timeout)
                # 1: tests failed (killed). 0: all passed (survived). Others: errors, not a verdict.
                verdict = {0: "SURVIVED", 1: "killed"}.get(code, f"ERROR (pytest exit {code})")
                bad += code != 1
                tail = f"[{', '.join(files)}] " + tail.splitlines()[-1] if tail else ""
            print(f"{verdict:>9}  {m.name}  ({time.monotonic() - t0:.0f} s)  {tail}", flush=True)
            shutil.rmtree(base, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
