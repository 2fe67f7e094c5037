"""`intake branches …`: branches (分公司/门店) from the command line, the same rules as the API's /branches."""

from __future__ import annotations

import argparse
from typing import Any

from config import Settings

# Options of `add` and `update` and the branch fields they set.
_FIELDS = (
    ("--city", "city", "the city (杭州)"),
    ("--company-name", "company_name", "the company's name in its clients' SMS (empty: INTAKE_COMPANY_NAME)"),
    ("--company-short-name", "company_short_name", "the short name SMS are signed with"),
    ("--company-address", "company_address", "the office address in the reminder of an office visit (T4)"),
    ("--sms-sign", "sms_sign", "the SMS sign where its SMS account differs (empty: INTAKE_ALIYUN_SIGN_NAME)"),
)


def _template_codes(pairs: list[str] | None) -> dict[str, str] | None:
    """`T1=SMS_123` pairs as a dict (None: none given)."""
    from cli import CliError

    if pairs is None:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, code = pair.partition("=")
        if not sep:
            raise CliError(f"--sms-template {pair!r}: write TEMPLATE=CODE, e.g. T1=SMS_123456789")
        out[name.strip()] = code.strip()
    return out


def _line(b: Any) -> str:
    codes = ",".join(f"{k}={v}" for k, v in sorted(b.sms_template_codes.items())) or "-"
    return (f"{b.id:>4}  {b.code:<12} {b.status:<7} {b.name}  city={b.city or '-'}"
            f"  company={b.company_name or '(deployment)'}/{b.company_short_name or '(deployment)'}"
            f"  address={b.company_address or '(deployment)'}  sign={b.sms_sign or '(deployment)'}  templates={codes}"
            f"  wecom_department={b.wecom_department_id or '-'}")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Every branch (closed ones with --all)."""
    from cli import _database, _run
    from store.branches import BranchRepository

    async def main() -> int:
        async with _database(settings) as pool:
            branches = await BranchRepository(pool).list(include_closed=args.all)
        for b in branches:
            print(_line(b))
        return 0

    return _run(main())


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Add a branch."""
    from cli import CliError, _database, _run
    from store.branches import BranchError, BranchRepository

    fields = {name: getattr(args, name) for _, name, _ in _FIELDS}

    async def main() -> int:
        async with _database(settings) as pool:
            try:
                b = await BranchRepository(pool).create(
                    code=args.code, name=args.name, **fields, sms_template_codes=_template_codes(args.sms_template),
                    wecom_department_id=args.wecom_department)
            except BranchError as exc:
                raise CliError(f"{exc.code}: {exc.message}") from exc
        print(f"added branch #{b.id}: {b.code} {b.name}")
        return 0

    return _run(main())


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    """Change a branch (by its code): the options given; --clear FIELD empties one (the deployment's again)."""
    from cli import CliError, _database, _run
    from store.branches import BranchError, BranchRepository

    changes: dict[str, Any] = {name: getattr(args, name) for _, name, _ in _FIELDS if getattr(args, name) is not None}
    if args.name is not None:
        changes["name"] = args.name
    if args.status is not None:
        changes["status"] = args.status
    if args.wecom_department is not None:
        changes["wecom_department_id"] = args.wecom_department
    codes = _template_codes(args.sms_template)
    if codes is not None:
        changes["sms_template_codes"] = codes
    for name in args.clear or []:
        changes[name] = None
    if not changes:
        raise CliError("nothing to change: give at least one option (see intake branches update --help)")

    async def main() -> int:
        async with _database(settings) as pool:
            repo = BranchRepository(pool)
            found = await repo.by_code(args.code)
            if found is None:
                raise CliError(f"branch_not_found: no branch {args.code}")
            try:
                b = await repo.update(found.id, changes)
            except BranchError as exc:
                raise CliError(f"{exc.code}: {exc.message}") from exc
        print(f"#{b.id} {b.code} {b.name} ({b.status}): changed {', '.join(sorted(changes))}")
        return 0

    return _run(main())


def _fields(p: argparse.ArgumentParser) -> None:
    for flag, name, text in _FIELDS:
        p.add_argument(flag, dest=name, help=text)
    p.add_argument("--sms-template", action="append", metavar="TEMPLATE=CODE",
                   help="an approved template code of its SMS account, e.g. T1=SMS_123 (repeat; update: replaces all)")
    p.add_argument("--wecom-department", type=int, metavar="ID", help="its WeCom department id")


def add_commands(sub: Any) -> None:
    """`branches` under the `intake` parser."""
    branches = sub.add_parser("branches", help="branches (分公司/门店): their names, SMS names and account")
    bsub = branches.add_subparsers(dest="branches_command", required=True, metavar="BRANCHES_COMMAND")
    p = bsub.add_parser("list", help="list branches")
    p.add_argument("--all", action="store_true", help="closed ones too")
    p.set_defaults(func=cmd_list)
    p = bsub.add_parser("add", help="add a branch")
    p.add_argument("code", help="its code: lower-case letters, digits, _ or - (hangzhou); never changes")
    p.add_argument("name", help="what staff call it (杭州分公司)")
    _fields(p)
    p.set_defaults(func=cmd_add)
    p = bsub.add_parser("update", help="change a branch (by its code)")
    p.add_argument("code")
    p.add_argument("--name")
    _fields(p)
    p.add_argument("--status", choices=("active", "closed"), help="closed: only with nobody at work and no open case")
    p.add_argument("--clear", action="append", metavar="FIELD",
                   choices=("city", "company_name", "company_short_name", "company_address", "sms_sign",
                            "sms_template_codes", "wecom_department_id"),
                   help="empty a field (the deployment's setting again); repeat")
    p.set_defaults(func=cmd_update)
