"""`intake policy …` and `intake insight …` (SPEC §16): the what-if, the policy's versions, a seeded history.

    intake policy whatif --policy new.yaml [--from 2026-09-01] [--to 2026-11-30] [--json]
    intake policy versions
    intake policy import policies/default.yaml [--note "…"]
    intake insight seed [--cases 300] [--days 240] [--seed 21]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from config import Settings

TZ = ZoneInfo("Asia/Shanghai")


def _day(text: str | None, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        from cli import CliError

        raise CliError(f"not a date (YYYY-MM-DD): {text}") from exc


def _policy_file(path: str) -> Any:
    from cli import CliError
    from domain.policy_admin import parse_text

    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"policy file not found: {path}")
    policy, errors = parse_text(p.read_text(encoding="utf-8"))
    if policy is None:
        raise CliError("the policy file is not valid:\n" + "\n".join(f"  {k or '(file)'}: {v}" for k, v in errors.items()))
    return policy


def _print_report(r: dict[str, Any], label: str) -> None:
    t = r["totals"]
    print(f"What-if: {label} — {r['cases']} cases; {r['changed']} leads would go to another designer")
    print("  replay under the recorded policies reproduces history: "
          + ("yes" if r["reproduced"] else f"NO (cases {', '.join(map(str, r['mismatched'][:20]))})"))
    print(f"  {'':24}{'recorded policy':>16}{'edited policy':>16}")
    for key, name in (("steps_late", "steps late"), ("escalations", "escalations"),
                      ("director_pages", "director pages"), ("reclaims", "reclaims (掉保)"),
                      ("no_eligible", "no eligible designer"), ("not_replayed", "actions not replayed")):
        print(f"  {name:24}{t['baseline'][key]:>16}{t['whatif'][key]:>16}")
    print("  rotation fairness (leads, share against the ideal share by weight):")
    base = {f["designer_id"]: f for f in r["fairness"]["baseline"]}
    for f in r["fairness"]["whatif"]:
        b = base.get(f["designer_id"], {"leads": 0})
        share = f"{f['share'] * 100:.0f}%" if f["share"] is not None else "—"
        print(f"    {f['name']:10} {b['leads']:>4} → {f['leads']:>4}  ({share} of leads, ideal {f['ideal'] * 100:.0f}%)")
    g = r["gini"]
    print(f"  Gini: {g['baseline'] if g['baseline'] is None else round(g['baseline'], 3)}"
          f" → {g['whatif'] if g['whatif'] is None else round(g['whatif'], 3)}")
    if r["no_eligible"]:
        print(f"  leads with no eligible designer under the edit: {', '.join(f'#{c}' for c in r['no_eligible'][:40])}")
    changed = [x for x in r["leads"] if x["baseline"] != x["whatif"]]
    if changed:
        print("  leads that change hands:")
        for x in changed[:40]:
            print(f"    #{x['case_id']:<6} {x['created_at'][:10] if x['created_at'] else '':10} "
                  f"{x['baseline'] or '—'} → {x['whatif'] or '—'}")


def cmd_whatif(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the cases created in a period under an edited policy, beside the policies they ran."""
    from cli import _database, _run
    from store import whatif

    policy = _policy_file(args.policy)
    today = datetime.now(TZ).date()
    frm = _day(args.date_from, today - timedelta(days=90))
    to = _day(args.date_to, today)
    start = datetime.combine(frm, time(0), TZ).astimezone(UTC)
    end = datetime.combine(to + timedelta(days=1), time(0), TZ).astimezone(UTC)

    async def main() -> int:
        async with _database(settings) as pool:
            report = await whatif.run(pool, policy=policy, period_from=start, period_to=end, now=datetime.now(UTC))
        if args.json:
            json.dump(report, sys.stdout, ensure_ascii=False, indent=1, default=str)
            print()
        else:
            _print_report(report, f"{args.policy} over cases created {frm} – {to}")
        return 0

    return _run(main())


def cmd_versions(args: argparse.Namespace, settings: Settings) -> int:
    """The saved versions of the policy, newest first (the newest is the one new cases take)."""
    from cli import _database, _run
    from store.policy_versions import PolicyVersions

    async def main() -> int:
        async with _database(settings) as pool:
            versions = await PolicyVersions(pool).history(branch_id=await _branch_id(pool, args.branch))
        if not versions:
            print("No version saved: new cases take the policy file (INTAKE_POLICY_FILE, else the SPEC defaults).")
        for v in versions:
            changes = ", ".join(c.get("path", "") for c in v.changes[:5]) + (" …" if len(v.changes) > 5 else "")
            print(f"#{v.version:<4} {v.created_at:%Y-%m-%d %H:%M}  {v.created_by_name or '—':8} {changes}"
                  + (f"  ({v.note})" if v.note else ""))
        return 0

    return _run(main())


async def _branch_id(pool: Any, code: str | None) -> int | None:
    """The id of the branch `--branch CODE` names (None: the chain's policy)."""
    from cli import CliError
    from store.branches import BranchRepository

    if code is None:
        return None
    found = await BranchRepository(pool).by_code(code)
    if found is None:
        raise CliError(f"branch_not_found: no branch {code}")
    return found.id


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Save a policy file as the next version (how a fresh install's file becomes managed data)."""
    from cli import CliError, _database, _run
    from domain.policy_admin import diff, policy_yaml
    from store.policy_versions import PolicyChanged, PolicyVersions

    policy = _policy_file(args.file)

    async def main() -> int:
        async with _database(settings) as pool:
            repo = PolicyVersions(pool)
            branch_id = await _branch_id(pool, args.branch)
            newest = await repo.newest(branch_id)
            base = newest.policy if newest else None
            changes = diff(base, policy) if base else []
            try:
                number = await repo.save(
                    policy=policy, yaml=policy_yaml(policy), based_on=newest.version if newest else None,
                    changes=[{"path": c.path, "label": c.label, "old": c.old, "new": c.new} for c in changes],
                    note=args.note or f"imported from {args.file}", created_by=None, branch_id=branch_id)
            except PolicyChanged as exc:
                raise CliError(f"another version was saved meanwhile (#{exc.current}); try again") from exc
        print(f"Saved as version #{number}" + (f" ({len(changes)} changes)" if newest else "")
              + ": new cases take it; running cases keep theirs.")
        return 0

    return _run(main())


def cmd_seed(args: argparse.Namespace, settings: Settings) -> int:
    """Write a seeded history of closed cases (for a demo database: insight and the what-if need history)."""
    from cli import _database, _run
    from connections import load_policy
    from store.seed_history import seed_history

    async def main() -> int:
        async with _database(settings) as pool:
            done = await seed_history(pool, policy=load_policy(settings), count=args.cases, days=args.days,
                                      seed=args.seed)
        first, last = done.span
        print(f"Seeded {done.cases} cases ({done.signed} signed) created {first:%Y-%m-%d} – "
              f"{last:%Y-%m-%d}, {done.decisions} decisions of the engine.")
        return 0

    return _run(main())


def add_commands(sub: Any) -> None:
    """`policy` and `insight` under the `intake` parser."""
    policy = sub.add_parser("policy", help="the policy's versions and what-ifs")
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="POLICY_COMMAND")
    p = psub.add_parser("whatif", help="replay past cases under an edited policy, beside the policies they ran")
    p.add_argument("--policy", required=True, help="the edited policy (a YAML file like policies/default.yaml)")
    p.add_argument("--from", dest="date_from", help="cases created from this day (YYYY-MM-DD; default 90 days ago)")
    p.add_argument("--to", dest="date_to", help="… to this day included (default today)")
    p.add_argument("--json", action="store_true", help="the whole report as JSON")
    p.set_defaults(func=cmd_whatif)
    p = psub.add_parser("versions", help="the saved versions, newest first")
    p.add_argument("--branch", metavar="CODE", help="a branch's own versions (default: the chain's)")
    p.set_defaults(func=cmd_versions)
    p = psub.add_parser("import", help="save a policy file as the next version")
    p.add_argument("file")
    p.add_argument("--branch", metavar="CODE",
                   help="as a branch's own policy (its calendar, holidays, durations); default: the chain's")
    p.add_argument("--note", help="why (kept with the version)")
    p.set_defaults(func=cmd_import)

    insight = sub.add_parser("insight", help="SOP scorecards and habits: a seeded history for a demo database")
    isub = insight.add_subparsers(dest="insight_command", required=True, metavar="INSIGHT_COMMAND")
    p = isub.add_parser("seed", help="write a history of closed cases through the engine (demo databases only)")
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--days", type=int, default=240, help="spread over the last this many days")
    p.add_argument("--seed", type=int, default=21, help="the random seed (the same seed, the same history)")
    p.set_defaults(func=cmd_seed)
