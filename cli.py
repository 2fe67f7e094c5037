"""`intake`: the command-line tool (dev stack, migrations, worker, API, staff and their tokens).

Where the database and Temporal are not configured (INTAKE_DATABASE_URL / INTAKE_TEMPORAL_ADDRESS),
commands other than `dev` fall back to the embedded dev instances: the pgserver PostgreSQL under
INTAKE_DATA_DIR (started for the command and stopped after it, or reused while `intake dev` runs;
migrations are applied to it first) and the dev server on 127.0.0.1:INTAKE_TEMPORAL_PORT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import time, timedelta
from typing import Any

from config import Settings, get_settings
from domain import staffing
from domain.enums import Level, Role, StaffStatus
from domain.phone import normalize_phone


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""


def _log_setup(level: int = logging.INFO) -> None:
    from observability import configure_logging

    configure_logging(level, fmt=get_settings().log_format)


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Resolution: configured, else the embedded dev instances
# --------------------------------------------------------------------------------------------------


def resolve_database(settings: Settings, *, create: bool = False) -> tuple[str, bool]:
    """The database URL for a command, and whether it is the embedded one (configured first)."""
    if settings.database_url:
        return settings.database_url, False
    import devstack  # the embedded database is the dev stack's: only without a configured URL

    if not devstack.has_embedded_database(settings):
        if not create:
            raise CliError(
                f"no database: set INTAKE_DATABASE_URL, or create the embedded one in {settings.data_dir}"
                " with `intake dev` (or `intake migrate`)"
            )
        _note(f"No INTAKE_DATABASE_URL set: creating the embedded PostgreSQL in {settings.data_dir / 'pg'}")
    return devstack.database_url(settings), True


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Any]:
    """A pool on the resolved database; the embedded one is migrated first (it is the dev stack's)."""
    from store.db import create_pool, migrate

    dsn, embedded = resolve_database(settings)
    if embedded:
        await migrate(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


def resolved_settings(settings: Settings) -> Settings:
    """Settings with a concrete database URL and Temporal address (for the worker and the API)."""
    from connections import temporal_address
    from store.db import migrate

    dsn, embedded = resolve_database(settings)
    if embedded:
        asyncio.run(migrate(dsn))
        import devstack  # the embedded stack's payload key lives beside its database

        settings = devstack.ensure_payload_keys(settings)
    if not settings.temporal_address:
        _note(
            f"No INTAKE_TEMPORAL_ADDRESS set: using the dev server at {temporal_address(settings)}"
        )
    return settings.model_copy(
        update={"database_url": dsn, "temporal_address": temporal_address(settings)}
    )


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a coroutine to completion; returns its exit code."""
    return asyncio.run(coro) or 0


# --------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    """Start the whole stack (what `make run` runs)."""
    import devstack

    _log_setup(logging.WARNING if args.quiet else logging.INFO)
    # Library chatter that says nothing to someone watching the dev stack.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    try:
        return asyncio.run(devstack.run_dev(settings, api_processes=args.api_processes))
    except devstack.DevStackError as exc:
        raise CliError(str(exc)) from exc


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply pending migrations (waiting up to --wait seconds for the database to accept connections)."""
    import time

    import asyncpg

    from store.db import migrate

    dsn, _ = resolve_database(settings, create=True)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            applied = asyncio.run(migrate(dsn))
            break
        # Not up yet, starting, or shutting down (a PostgreSQL restarting under compose): try again.
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError) as exc:
            if time.monotonic() >= deadline:
                raise
            _note(f"database not ready ({type(exc).__name__}): retrying in 2 s")
            time.sleep(2)
    print(f"applied: {', '.join(applied)}" if applied else "migrations: up to date")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker until SIGINT/SIGTERM."""
    import worker

    _log_setup()
    resolved = resolved_settings(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await worker.run_worker(resolved, stop=stop)

    asyncio.run(main())
    return 0


def cmd_cases_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Move running cases of the first workflow version onto the case engine's workflow."""
    from background.reconciler import upgrade_v1_cases
    from connections import connect_temporal
    from store.db import create_pool
    from store.writes import projection_writer

    resolved = resolved_settings(settings)

    async def main() -> list[int]:
        assert resolved.database_url
        client = await connect_temporal(resolved)
        pool = await create_pool(resolved.database_url)
        try:
            return await upgrade_v1_cases(client, pool, projection_writer(resolved), task_queue=resolved.task_queue)
        finally:
            await pool.close()

    moved = asyncio.run(main())
    print(f"upgraded {len(moved)} case(s)" + (f": {', '.join(map(str, moved))}" if moved else ""))
    return 0


def cmd_cases_erase(args: argparse.Namespace, settings: Settings) -> int:
    """Erase a closed case's client data on request (个人信息保护法), keeping its statistics."""
    from store.recordings import build_recording_store
    from store.retention import EraseError, erase_case

    async def main() -> int:
        async with _database(settings) as pool:
            try:
                done = await erase_case(pool, build_recording_store(settings), args.id)
            except EraseError as exc:
                raise CliError(str(exc)) from exc
        print(f"case #{done.case_id}: client data erased (name, phone, address, notes, {done.events} timeline"
              f" entries, {done.messages} message texts, {done.recordings} recording(s) with their files);"
              " statistics kept")
        return 0

    return _run(main())


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    """Delete phone reads and Idempotency-Keys older than their retention (the worker does it hourly)."""
    from store.retention import prune

    async def main() -> int:
        async with _database(settings) as pool:
            removed = await prune(pool, phone_reads_days=settings.phone_reads_retention_days,
                                  idempotency_days=settings.idempotency_retention_days)
        print(f"pruned {removed['phone_reads']} phone read(s) older than {settings.phone_reads_retention_days:g} days"
              f" and {removed['idempotency_keys']} Idempotency-Key(s) older than"
              f" {settings.idempotency_retention_days:g} days")
        return 0

    return _run(main())


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the HTTP API with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    from api.app import create_app

    _log_setup()
    resolved = resolved_settings(settings)
    uvicorn.run(create_app(resolved), **server_options(resolved))
    return 0


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the API: X-Forwarded-For/-Proto believed from the configured proxy only."""
    return {
        "host": settings.api_host, "port": settings.api_port, "log_level": "info",
        "log_config": None, "access_log": False,  # JSON lines from our own handler and access middleware
        "proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips,
        # uvloop and httptools (dependencies) rather than asyncio's loop and h11: 0.5 ms less CPU per step
        # in the API process (7.2 against 7.7 ms, five alternating runs each, 2026-12-03, docs/benchmarks.md).
        "loop": "uvloop", "http": "httptools",
    }


def _parse_level(value: str | None) -> Level | None:
    return Level(value) if value else None


def parse_office_hours(text: str | None) -> dict[int, list[tuple[time, time]]]:
    """Parse `--office-hours` like "0-4=09:00-18:00;5=10:00-16:00" (0 = Monday) into a schedule."""
    schedule: dict[int, list[tuple[time, time]]] = {}
    for part in (text or "").replace("；", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            days, _, hours = part.partition("=")
            first, _, last = days.strip().partition("-")
            start_s, _, end_s = hours.strip().partition("-")
            start, end = time.fromisoformat(start_s.strip()), time.fromisoformat(end_s.strip())
            lo, hi = int(first), int(last or first)
        except ValueError as exc:
            raise CliError(f"--office-hours {part!r}: expected DAYS=HH:MM-HH:MM, e.g. 0-4=09:00-18:00") from exc
        if not (0 <= lo <= hi <= 6) or start >= end:
            raise CliError(f"--office-hours {part!r}: weekdays are 0 (Monday) to 6, and start before end")
        for day in range(lo, hi + 1):
            schedule.setdefault(day, []).append((start, end))
    return schedule


def cmd_staff_add(args: argparse.Namespace, settings: Settings) -> int:
    """Add a staff member and print their bearer token (once)."""
    from store.staff import StaffError, StaffRepository

    role = Role(args.role)
    try:
        mobile = normalize_phone(args.phone)
    except ValueError as exc:
        raise CliError(f"phone {args.phone!r} is not a Chinese mobile number (1[3-9] and 9 digits)") from exc
    if staffing.has_level(role) and not args.level:
        raise CliError("a designer needs --level (chief, senior, designer, junior)")
    if not staffing.has_level(role) and args.level:
        raise CliError("--level is for designers only")
    communities = [c.strip() for c in (args.communities or "").replace("，", ",").split(",") if c.strip()]
    schedule = parse_office_hours(args.office_hours)
    if args.weight is not None and args.weight <= 0:
        raise CliError("--weight must be above 0")
    wecom_userid = _wecom_userid(args.wecom_userid)

    async def main() -> int:
        async with _database(settings) as pool:
            repo = StaffRepository(pool)
            home = (await _branch_ids(pool, [args.branch]))[0] if args.branch else 1
            extra = await _branch_ids(pool, _codes(args.extra_branches))
            try:
                staff = await repo.add(
                    name=args.name,
                    phone=mobile,
                    role=role,
                    level=_parse_level(args.level),
                    communities=communities,
                    office_schedule=schedule,
                    max_open_cases=args.max_open_cases,
                    weight=args.weight if args.weight is not None else 1.0,
                    wecom_userid=wecom_userid,
                    branch_id=home,
                    extra_branches=extra,
                )
            except StaffError as exc:
                raise CliError(f"{exc.code}: {exc.message}") from exc
            token = await repo.issue_token(
                staff_id=staff.id, label=args.token_label, ttl_days=settings.token_ttl_days, issued_via=cli_issuer()
            )
        level = f", {staff.level.value}" if staff.level else ""
        print(f"added staff #{staff.id}: {staff.name} ({staff.role.value}{level})")
        print("bearer token (shown once; only its hash is stored):")
        print(token)
        return 0

    return _run(main())


def _codes(raw: str | None) -> list[str]:
    """Branch codes given comma-separated (full-width commas too)."""
    return [c.strip() for c in (raw or "").replace("，", ",").split(",") if c.strip()]


async def _branch_ids(pool: Any, codes: list[str]) -> list[int]:
    """The ids of the branches named by code; the command fails on one that does not exist or is closed."""
    from store.branches import BranchRepository

    out: list[int] = []
    for code in codes:
        branch = await BranchRepository(pool).by_code(code)
        if branch is None or branch.status != "active":
            raise CliError(f"no active branch {code!r} (intake branches list shows them)")
        out.append(branch.id)
    return out


def cmd_staff_list(args: argparse.Namespace, settings: Settings) -> int:
    """List staff members."""
    from store.staff import StaffRepository

    async def main() -> int:
        async with _database(settings) as pool:
            staff = await StaffRepository(pool).list(
                role=Role(args.role) if args.role else None, active_only=args.active
            )
        print(
            f"{'id':>4}  {'role':<15} {'level':<9} {'status':<9} {'phone':<12} {'max':>4}  name  communities"
        )
        for s in staff:
            print(
                f"{s.id:>4}  {s.role.value:<15} {(s.level.value if s.level else '-'):<9} {s.status.value:<9}"
                f" {s.phone:<12} {s.max_open_cases if s.max_open_cases is not None else '-':>4}"
                f"  {s.name}  {','.join(s.communities)}  branch={s.branch_id}"
                + (f"+{','.join(map(str, s.extra_branches))}" if s.extra_branches else "")
            )
        return 0

    return _run(main())


async def _staff_member(pool: Any, staff_id: int) -> Any:
    """The staff member with this id, or the command fails with a clear message."""
    from store.staff import StaffRepository

    staff = await StaffRepository(pool).get(staff_id=staff_id)
    if staff is None:
        raise CliError(f"no staff member #{staff_id}")
    return staff


def cli_issuer() -> str:
    """How the command line is named as the issuer of a credential: `cli:<operating-system user>`."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def cmd_staff_codec_url(args: argparse.Namespace, settings: Settings) -> int:
    """Print a personal codec URL for the Temporal UI (a codec-only credential: decode, short-lived)."""
    from api.routers.codec import codec_url
    from domain import permissions
    from store.staff import StaffRepository

    async def main() -> int:
        async with _database(settings) as pool:
            staff = await _staff_member(pool, args.id)
            refusal = permissions.may_use_codec(staff)
            if refusal is not None:
                raise CliError(f"#{staff.id} {staff.name}: {refusal.message}")
            hours = args.hours or settings.codec_credential_hours
            token = await StaffRepository(pool).issue_token(
                staff_id=staff.id, label="codec", ttl_days=hours / 24, scope="codec", issued_via=cli_issuer())
        print(f"codec URL for #{staff.id} {staff.name}, decode only, {hours:g} h (Temporal UI → Codec Server):")
        print(codec_url(settings, token))
        return 0

    return _run(main())


def cmd_staff_token(args: argparse.Namespace, settings: Settings) -> int:
    """Issue a new bearer token for a staff member; print it once."""
    from store.staff import StaffRepository

    async def main() -> int:
        async with _database(settings) as pool:
            repo = StaffRepository(pool)
            staff = await _staff_member(pool, args.id)
            revoked = await repo.revoke_tokens(staff_id=staff.id) if args.revoke_others else 0
            token = await repo.issue_token(
                staff_id=staff.id, label=args.token_label, ttl_days=settings.token_ttl_days, issued_via=cli_issuer()
            )
        if args.revoke_others:
            print(f"revoked {revoked} earlier token(s) of #{staff.id}")
        print(f"new bearer token for #{staff.id} {staff.name} ({staff.role.value}); shown once:")
        print(token)
        return 0

    return _run(main())


def cmd_staff_link(args: argparse.Namespace, settings: Settings) -> int:
    """Print a personal one-time sign-in link to the staff console (网页工作台)."""
    from store.sessions import SessionRepository

    async def main() -> int:
        async with _database(settings) as pool:
            staff = await _staff_member(pool, args.id)
            code = await SessionRepository(pool).issue_link(
                staff_id=staff.id, ttl=timedelta(minutes=settings.console_link_minutes), issued_via=cli_issuer()
            )
        hours = settings.console_link_minutes / 60
        print(f"sign-in link for #{staff.id} {staff.name} ({staff.role.value}); works once, for {hours:g} h:")
        print(settings.sign_in_url(code))
        return 0

    return _run(main())


def cmd_staff_audit(args: argparse.Namespace, settings: Settings) -> int:
    """List who issued which token, codec credential and sign-in link (and the admins' requests)."""
    from store.credentials import credential_audit, describe

    async def main() -> int:
        async with _database(settings) as pool:
            entries = await credential_audit(pool, staff_id=args.id, limit=args.limit)
        for entry in entries:
            print(describe(entry))
        if not entries:
            print("no credentials issued")
        return 0

    return _run(main())


def cmd_staff_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Revoke every token of a staff member without issuing a new one."""
    from store.staff import StaffRepository

    async def main() -> int:
        async with _database(settings) as pool:
            staff = await _staff_member(pool, args.id)
            revoked = await StaffRepository(pool).revoke_tokens(staff_id=staff.id)
        print(f"revoked {revoked} token(s) of #{staff.id} {staff.name}, and every console session; no new token issued")
        return 0

    return _run(main())


def cmd_staff_signout(args: argparse.Namespace, settings: Settings) -> int:
    """End every console session and unused sign-in link of a staff member (a lost phone)."""
    from store.sessions import SessionRepository

    async def main() -> int:
        async with _database(settings) as pool:
            staff = await _staff_member(pool, args.id)
            ended = await SessionRepository(pool).revoke_all(staff_id=staff.id)
        print(f"#{staff.id} {staff.name}: {ended} console session(s) ended, unused sign-in links revoked")
        return 0

    return _run(main())


def _wecom_userid(raw: str | None) -> str | None:
    """--wecom-userid as given (spaces dropped), checked like the admin API checks it."""
    from store.staff import wecom_userid_error

    if raw is None:
        return None
    value = raw.strip()
    if wecom_userid_error(value) is not None:
        raise CliError(f"--wecom-userid {raw!r}: 1 to 64 letters, digits, _ - . or @ (the member's account in WeCom)")
    return value


STATUS_WORDS = {"active": StaffStatus.active, "leave": StaffStatus.on_leave, "on_leave": StaffStatus.on_leave,
                "left": StaffStatus.inactive, "inactive": StaffStatus.inactive}


def staff_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The fields `intake staff edit` changes, validated as `staff add` validates them."""
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = args.name
    if args.role is not None:
        changes["role"] = Role(args.role)
        if not staffing.has_level(changes["role"]) and args.level is None:
            changes["level"] = None
    if args.level is not None:
        changes["level"] = None if args.level == "none" else Level(args.level)
    if args.communities is not None:
        changes["communities"] = [c.strip() for c in args.communities.replace("，", ",").split(",") if c.strip()]
    if args.office_hours is not None:
        changes["office_schedule"] = parse_office_hours(args.office_hours)
    if args.max_open_cases is not None:
        if args.max_open_cases < 0:
            raise CliError("--max-open-cases must be 0 or more (use --clear-max-open-cases for the policy default)")
        changes["max_open_cases"] = args.max_open_cases
    if args.clear_max_open_cases:
        changes["max_open_cases"] = None
    if args.weight is not None:
        if args.weight <= 0:
            raise CliError("--weight must be above 0")
        changes["weight"] = args.weight
    if args.status is not None:
        changes["status"] = STATUS_WORDS[args.status]
    if getattr(args, "deputy", None) is not None:
        changes["deputy_id"] = args.deputy
    if getattr(args, "clear_deputy", False):
        changes["deputy_id"] = None
    if getattr(args, "wecom_userid", None) is not None:
        changes["wecom_userid"] = _wecom_userid(args.wecom_userid)
    if getattr(args, "clear_wecom_userid", False):
        changes["wecom_userid"] = None
    if getattr(args, "branch", None) is not None:
        changes["branch"] = args.branch  # a code: the command resolves it
    if getattr(args, "extra_branches", None) is not None:
        changes["extra_branches"] = _codes(args.extra_branches)
    if not changes:
        raise CliError("nothing to change: give at least one option (see intake staff edit --help)")
    return changes


def cmd_staff_edit(args: argparse.Namespace, settings: Settings) -> int:
    """Change a staff member: level, communities, schedule, capacity, role, leave / active / left."""
    from store.staff import StaffError, StaffRepository

    changes = staff_changes(args)

    async def main() -> int:
        async with _database(settings) as pool:
            if "branch" in changes:
                changes["branch_id"] = (await _branch_ids(pool, [changes.pop("branch")]))[0]
            if "extra_branches" in changes:
                changes["extra_branches"] = await _branch_ids(pool, changes["extra_branches"])
            try:
                staff = await StaffRepository(pool).update(staff_id=args.id, changes=changes)
            except StaffError as exc:
                raise CliError(f"{exc.code}: {exc.message}") from exc
        if staff is None:
            raise CliError(f"no staff member #{args.id}")
        level = f", {staff.level.value}" if staff.level else ""
        print(f"#{staff.id} {staff.name} ({staff.role.value}{level}), {staff.status.value}:"
              f" changed {', '.join(sorted(changes))}")
        if staff.status == StaffStatus.inactive:
            print("left: every token revoked, no access")
        return 0

    return _run(main())


def _set_status(status: StaffStatus) -> Callable[[argparse.Namespace, Settings], int]:
    def command(args: argparse.Namespace, settings: Settings) -> int:
        from store.staff import StaffRepository

        async def main() -> int:
            async with _database(settings) as pool:
                staff = await _staff_member(pool, args.id)
                await StaffRepository(pool).set_status(staff_id=staff.id, status=status)
            print(f"#{staff.id} {staff.name}: {status.value}")
            return 0

        return _run(main())

    command.__doc__ = f"Mark a staff member {status.value}."
    return command


def _key_ring(settings: Settings) -> tuple[list[tuple[str, bytes]], str | None]:
    """The configured key ring and the id of the key that encrypts (None without keys)."""
    from codec import PayloadKeyError, encrypting_key_id, parse_keys

    if settings.payload_keys is None:
        return [], None
    try:
        ring = parse_keys(settings.payload_keys.get_secret_value())
        return ring, encrypting_key_id(ring, settings.payload_encrypt_key_id)
    except PayloadKeyError as exc:
        raise CliError(str(exc)) from exc


def _ring_text(ring: list[tuple[str, bytes]]) -> str:
    import base64

    return ",".join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in ring)


def cmd_keys_new(args: argparse.Namespace, settings: Settings) -> int:
    """Print a new payload key (to be added decrypt-only first: `intake keys rotate`)."""
    from codec import new_key_spec

    current = [k for k, _ in _key_ring(settings)[0]]
    key_id = args.id or next(f"k{n}" for n in range(1, 10_000) if f"k{n}" not in current)
    if key_id in current:
        raise CliError(f"key id {key_id!r} is already in INTAKE_PAYLOAD_KEYS")
    print(new_key_spec(key_id))
    if current:
        _note(f"new key {key_id}: rotate in two phases (docs/operations.md, Payload keys): add it decrypt-only"
              f" everywhere (`intake keys rotate add` prints the lines), then `intake keys rotate encrypt {key_id}`")
    return 0


def cmd_keys_rotate_add(args: argparse.Namespace, settings: Settings) -> int:
    """Rotation, phase one: the ring with a new key that only decrypts; the current key still encrypts."""
    from codec import new_key_spec, parse_keys

    ring, active = _key_ring(settings)
    if active is None:
        raise CliError("INTAKE_PAYLOAD_KEYS is not set: there is nothing to rotate (`intake keys new` makes a first key)")
    key_id = args.id or next(f"k{n}" for n in range(1, 10_000) if f"k{n}" not in dict(ring))
    if key_id in dict(ring):
        raise CliError(f"key id {key_id!r} is already in INTAKE_PAYLOAD_KEYS")
    print(f"INTAKE_PAYLOAD_KEYS={_ring_text([*ring, *parse_keys(new_key_spec(key_id))])}")
    print(f"INTAKE_PAYLOAD_ENCRYPT_KEY_ID={active}")
    _note(f"phase 1 of 2: put both lines in the settings of EVERY worker and API (intake.env) and restart them"
          f" one by one; {key_id} decrypts only, {active} still encrypts. When every process runs with"
          f" {key_id}: intake keys rotate encrypt {key_id}")
    return 0


def cmd_keys_rotate_encrypt(args: argparse.Namespace, settings: Settings) -> int:
    """Rotation, phase two: name the key that encrypts (it must be in every process's ring already)."""
    ring, active = _key_ring(settings)
    if args.id not in dict(ring):
        raise CliError(f"{args.id!r} is not in INTAKE_PAYLOAD_KEYS: add it decrypt-only first (intake keys rotate add)")
    print(f"INTAKE_PAYLOAD_ENCRYPT_KEY_ID={args.id}")
    _note(f"phase 2 of 2: change this line (only this one) for every worker and API and restart them one by one;"
          f" processes with {active} or {args.id} encrypting read each other's payloads. Keep {active} in"
          f" INTAKE_PAYLOAD_KEYS until `intake keys status` shows no open case needing it")
    return 0


def cmd_keys_rotate_retire(args: argparse.Namespace, settings: Settings) -> int:
    """After a rotation: the ring without an old key, once no open case's history needs it."""
    from background.keyring import key_ids_in_use
    from connections import connect_temporal

    ring, active = _key_ring(settings)
    if args.id not in dict(ring):
        raise CliError(f"{args.id!r} is not in INTAKE_PAYLOAD_KEYS")
    if args.id == active:
        raise CliError(f"{args.id!r} encrypts: name another key first (intake keys rotate encrypt ID)")
    resolved = settings if settings.temporal_address else resolved_settings(settings)

    async def main() -> int:
        in_use = await key_ids_in_use(await connect_temporal(resolved))
        cases = in_use.get(args.id, [])
        if cases:
            raise CliError(f"{len(cases)} open case(s) still need {args.id} (e.g. {', '.join(cases[:3])}): keep it")
        print(f"INTAKE_PAYLOAD_KEYS={_ring_text([(k, v) for k, v in ring if k != args.id])}")
        _note(f"no open case needs {args.id}: put this line in the settings of every worker and API")
        return 0

    return _run(main())


def cmd_keys_status(args: argparse.Namespace, settings: Settings) -> int:
    """Which payload key ids the open cases' histories use, and whether the configuration has them."""
    from background.keyring import key_ids_in_use
    from connections import connect_temporal

    resolved = settings if settings.temporal_address else resolved_settings(settings)
    ring, active = _key_ring(resolved)

    async def main() -> int:
        client = await connect_temporal(resolved)
        return _print_key_status(await key_ids_in_use(client), [k for k, _ in ring], active)

    return _run(main())


def _print_key_status(in_use: dict[str, list[str]], configured: list[str], active: str | None) -> int:
    print(f"{'key':<10} {'configured':<13} {'open cases':>10}  e.g.")
    for kid in sorted(set(in_use) | set(configured)):
        cases = in_use.get(kid, [])
        state = ("encrypts" if kid == active else "decrypt-only") if kid in configured else "MISSING"
        print(f"{kid:<10} {state:<13} {len(cases):>10}  {', '.join(cases[:3])}")
    unused = [k for k in configured if k != active and k not in in_use]
    if unused:
        print(f"no open case needs {', '.join(unused)}: they can leave INTAKE_PAYLOAD_KEYS (intake keys rotate retire ID)")
    missing = [k for k in in_use if k not in configured]
    if missing:
        print(f"MISSING from INTAKE_PAYLOAD_KEYS: {', '.join(missing)} (workers refuse to start without them)")
        return 1
    return 0


def cmd_certs(args: argparse.Namespace, settings: Settings) -> int:
    """Make the mTLS certificates of Temporal's frontend and its clients (docker-compose)."""
    from pathlib import Path

    from certs import make_certificates

    try:
        written = make_certificates(Path(args.out), days=args.days, force=args.force)
    except FileExistsError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {len(written)} files to {args.out} (keys mode 600):")
    for path in written:
        print(f"  {path}")
    print("docker-compose.yml mounts them; docs/operations.md says who reads which key.")
    return 0


# --------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of `intake`."""
    parser = argparse.ArgumentParser(
        prog="intake",
        description="Client intake on Temporal. Configuration comes from INTAKE_* environment variables.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("dev", help="start the whole stack on the embedded defaults (make run)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    p.add_argument("--api-processes", type=int, default=None, metavar="N",
                   help="the API's server processes (default: one per core but one, at least one); the worker runs in its own")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("migrate", help="apply pending database migrations")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="retry this long while the database does not accept connections (default: no retry)")
    p.set_defaults(func=cmd_migrate)
    sub.add_parser("worker", help="run a Temporal worker").set_defaults(func=cmd_worker)
    sub.add_parser("api", help="serve the HTTP API (uvicorn)").set_defaults(func=cmd_api)

    keys = sub.add_parser("keys", help="payload encryption keys: a new one, rotation, which ones open cases use")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = ksub.add_parser("new", help="print a new payload key (add it decrypt-only first: keys rotate add)")
    p.add_argument("--id", help="its key id (default: the next free kN)")
    p.set_defaults(func=cmd_keys_new)
    ksub.add_parser("status", help="key ids the open cases' histories use; exit 1 when one is missing").set_defaults(
        func=cmd_keys_status)
    rotate = ksub.add_parser("rotate", help="rotate the payload key in two phases (prints the settings lines)")
    rsub = rotate.add_subparsers(dest="rotate_command", required=True)
    p = rsub.add_parser("add", help="phase 1: the ring with a new decrypt-only key; the current key still encrypts")
    p.add_argument("--id", help="the new key's id (default: the next free kN)")
    p.set_defaults(func=cmd_keys_rotate_add)
    p = rsub.add_parser("encrypt", help="phase 2: name the key that encrypts (once every process holds it)")
    p.add_argument("id")
    p.set_defaults(func=cmd_keys_rotate_encrypt)
    p = rsub.add_parser("retire", help="the ring without an old key, once no open case needs it")
    p.add_argument("id")
    p.set_defaults(func=cmd_keys_rotate_retire)

    p = sub.add_parser("certs", help="make the mTLS certificates between Temporal and its clients (compose)")
    p.add_argument("--out", default="deploy/certs", help="directory to write (default deploy/certs)")
    p.add_argument("--days", type=int, default=825, help="validity in days")
    p.add_argument("--force", action="store_true", help="replace an existing CA and every certificate")
    p.set_defaults(func=cmd_certs)

    cases = sub.add_parser("cases", help="operate on running cases")
    csub = cases.add_subparsers(dest="cases_command", required=True)
    csub.add_parser(
        "upgrade", help="move running cases of the first version (IntakeWorkflow) onto IntakeCase"
    ).set_defaults(func=cmd_cases_upgrade)
    p = csub.add_parser("erase", help="erase a closed case's client data on request, keeping its statistics")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_cases_erase)
    sub.add_parser("prune", help="delete phone reads and Idempotency-Keys past their retention").set_defaults(
        func=cmd_prune)

    staff = sub.add_parser("staff", help="manage staff and their bearer tokens")
    ssub = staff.add_subparsers(dest="staff_command", required=True, metavar="STAFF_COMMAND")

    p = ssub.add_parser("add", help="add a staff member and print their token once")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--name", required=True)
    p.add_argument("--phone", required=True, help="mobile number, 1[3-9]XXXXXXXXX")
    p.add_argument("--level", choices=[lv.value for lv in Level], help="designers only")
    p.add_argument("--communities", help="compounds covered, comma-separated (site leads, designers)")
    p.add_argument("--max-open-cases", type=int, help="overrides the policy's maximum for the level")
    p.add_argument(
        "--office-hours",
        help='in-office schedule, e.g. "0-4=09:00-18:00;5=10:00-16:00" (0 = Monday); default: always in',
    )
    p.add_argument("--weight", type=float, help="rotation weight (default 1; above 1 gets cases sooner)")
    p.add_argument("--wecom-userid", metavar="USERID",
                   help="their WeCom member account (企业微信账号): personal notices, signing in from WeCom")
    p.add_argument("--token-label", default="cli", help="a note stored with the token")
    p.add_argument("--branch", metavar="CODE", help="their home branch (分公司/门店) by code; default main")
    p.add_argument("--extra-branches", metavar="CODES", help="further branches they cover (regional manager), comma-separated")
    p.set_defaults(func=cmd_staff_add)

    p = ssub.add_parser("list", help="list staff")
    p.add_argument("--role", choices=[r.value for r in Role])
    p.add_argument("--active", action="store_true", help="active staff only")
    p.set_defaults(func=cmd_staff_list)

    p = ssub.add_parser("token", help="issue a new bearer token (printed once)")
    p.add_argument("id", type=int)
    p.add_argument("--token-label", default="cli", help="a note stored with the token")
    p.add_argument("--revoke-others", action="store_true", help="revoke every earlier token of this person")
    p.set_defaults(func=cmd_staff_token)

    p = ssub.add_parser("codec-url", help="print a personal codec URL for the Temporal UI (decode only, short-lived)")
    p.add_argument("id", type=int)
    p.add_argument("--hours", type=float, help="validity (default INTAKE_CODEC_CREDENTIAL_HOURS)")
    p.set_defaults(func=cmd_staff_codec_url)

    p = ssub.add_parser("link", help="print a personal one-time sign-in link to the staff console")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_staff_link)

    p = ssub.add_parser("audit", help="who issued which token, codec URL and sign-in link, newest first")
    p.add_argument("id", type=int, nargs="?", help="only this person's credentials")
    p.add_argument("--limit", type=int, default=200)
    p.set_defaults(func=cmd_staff_audit)

    p = ssub.add_parser("signout", help="end every console session of a staff member (lost phone)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_staff_signout)

    p = ssub.add_parser("revoke", help="revoke every token of a staff member (no new token is issued)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_staff_revoke)

    p = ssub.add_parser("edit", help="change a staff member (level, communities, schedule, capacity, role, status)")
    p.add_argument("id", type=int)
    p.add_argument("--name")
    p.add_argument("--role", choices=[r.value for r in Role])
    p.add_argument("--level", choices=[lv.value for lv in Level] + ["none"], help="designers only")
    p.add_argument("--communities", help="compounds covered, comma-separated (replaces the list; '' clears)")
    p.add_argument("--office-hours", help='in-office schedule, e.g. "0-4=09:00-18:00;5=10:00-16:00" (replaces)')
    p.add_argument("--max-open-cases", type=int, help="maximum open cases (overrides the policy)")
    p.add_argument("--clear-max-open-cases", action="store_true", help="back to the policy's maximum")
    p.add_argument("--weight", type=float, help="rotation weight")
    p.add_argument("--deputy", type=int, metavar="ID",
                   help="the staff id who holds this manager's steps while they are on leave or off schedule")
    p.add_argument("--clear-deputy", action="store_true", help="no deputy")
    p.add_argument("--wecom-userid", metavar="USERID", help="their WeCom member account (企业微信账号)")
    p.add_argument("--clear-wecom-userid", action="store_true", help="no WeCom account on file")
    p.add_argument("--branch", metavar="CODE", help="move them to another home branch (by code)")
    p.add_argument("--extra-branches", metavar="CODES",
                   help="further branches they cover, comma-separated (replaces the list; '' clears)")
    p.add_argument(
        "--status", choices=sorted(STATUS_WORDS),
        help="active; leave (no new cases); left (no access at all, tokens revoked)",
    )
    p.set_defaults(func=cmd_staff_edit)

    p = ssub.add_parser("leave", help="mark a staff member on leave (no new cases)")
    p.add_argument("id", type=int)
    p.set_defaults(func=_set_status(StaffStatus.on_leave))

    p = ssub.add_parser("activate", help="mark a staff member active again")
    p.add_argument("id", type=int)
    p.set_defaults(func=_set_status(StaffStatus.active))

    import insight_cli  # `intake policy …` and `intake insight …` (SPEC §16)

    insight_cli.add_commands(sub)
    import branches_cli  # `intake branches …` (issue 22)

    branches_cli.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `intake` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, get_settings()) or 0)
    except CliError as exc:
        _note(f"intake: error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import asyncpg

        if isinstance(exc, asyncpg.UndefinedTableError):
            _note(f"intake: error: {exc}; apply migrations first: intake migrate")
            return 1
        if isinstance(exc, (OSError, asyncpg.PostgresError)):
            _note(f"intake: error: {type(exc).__name__}: {exc}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
