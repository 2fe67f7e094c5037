"""Staff repository: staff members and their bearer tokens (stored only as hashes)."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, time
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from domain import staffing
from domain.enums import Level, Role, StaffStatus
from domain.models import StaffRef
from domain.policy import CalendarPolicy


class Staff(BaseModel):
    """A staff member as stored in PostgreSQL."""

    id: int
    name: str
    phone: str
    role: Role
    level: Level | None = None
    status: StaffStatus = StaffStatus.active
    communities: list[str] = Field(default_factory=list)
    office_schedule: dict[int, list[tuple[time, time]]] = Field(default_factory=dict)
    max_open_cases: int | None = None
    weight: float = 1.0
    deputy_id: int | None = None  # managers: who holds their steps while they are away
    wecom_userid: str | None = None  # their WeCom member id (personal notices, signing in from WeCom)
    branch_id: int = 1  # their home branch (分公司/门店); migration 019 made everyone's branch 1
    extra_branches: list[int] = Field(default_factory=list)  # further branches a regional manager covers
    created_at: datetime | None = None

    def ref(self) -> StaffRef:
        """The id-and-name reference a case carries."""
        return StaffRef(id=self.id, name=self.name, role=self.role, level=self.level)


class StaffError(Exception):
    """A staff operation broke a rule (duplicate phone for the role, bad level, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# A WeCom member id (企业微信 UserID) as the admin console accepts it; migration 015 checks the same.
WECOM_USERID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
WECOM_USERID_RULE = "企业微信账号（UserID）应为 1–64 位字母、数字或 _ - . @"


def wecom_userid_error(value: str) -> str | None:
    """Why `value` cannot be a WeCom member id (Chinese, for staff), or None when it can."""
    return None if WECOM_USERID.fullmatch(value) else WECOM_USERID_RULE


def availability(s: Staff) -> staffing.Availability:
    """What decides whether the person is at work (status, in-office schedule)."""
    return staffing.Availability(id=s.id, status=s.status, schedule=s.office_schedule or None)


def hash_token(token: str) -> str:
    """sha256 hex of a bearer token; only this is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _schedule_to_db(schedule: dict[int, list[tuple[time, time]]]) -> dict[str, list[list[str]]]:
    return {str(d): [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in p] for d, p in schedule.items()}


def schedule_from_db(raw: dict[str, Any] | None) -> dict[int, list[tuple[time, time]]]:
    """The in-office schedule as stored (jsonb {"0": [["09:00", "18:00"]]}) as weekday -> periods."""
    return {
        int(d): [(time.fromisoformat(s), time.fromisoformat(e)) for s, e in periods]
        for d, periods in (raw or {}).items()
    }


def _row_to_staff(row: asyncpg.Record) -> Staff:
    schedule = schedule_from_db(row["office_schedule"])
    return Staff(
        id=row["id"],
        name=row["name"],
        phone=row["phone"],
        role=Role(row["role"]),
        level=Level(row["level"]) if row["level"] else None,
        status=StaffStatus(row["status"]),
        communities=list(row["communities"] or []),
        office_schedule=schedule,
        max_open_cases=row["max_open_cases"],
        weight=float(row["weight"]),
        deputy_id=row["deputy_id"],
        wecom_userid=row["wecom_userid"],
        branch_id=row["branch_id"],
        extra_branches=list(row["extra_branches"] or []),
        created_at=row["created_at"],
    )


_COLUMNS = (
    "id, name, phone, role, level, status, communities, office_schedule, max_open_cases, weight, deputy_id,"
    " wecom_userid, branch_id,"
    " ARRAY(SELECT sb.branch_id FROM staff_branches sb WHERE sb.staff_id = staff.id ORDER BY 1) AS extra_branches,"
    " created_at"
)


class StaffRepository:
    """Staff and tokens in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def add(
        self,
        *,
        name: str,
        phone: str,
        role: Role,
        level: Level | None = None,
        communities: list[str] | None = None,
        office_schedule: dict[int, list[tuple[time, time]]] | None = None,
        max_open_cases: int | None = None,
        weight: float = 1.0,
        status: StaffStatus = StaffStatus.active,
        wecom_userid: str | None = None,
        branch_id: int = 1,
        extra_branches: list[int] | None = None,
    ) -> Staff:
        """Insert a staff member (in their home branch, covering `extra_branches` too); designers must have a level."""
        problem = staffing.level_error(role, level)
        if problem is not None:
            raise StaffError("level_required" if level is None else "invalid_staff", problem)
        _check_wecom_userid(wecom_userid)
        extra = sorted({b for b in extra_branches or [] if b != branch_id})
        try:
            # One statement (the repository may be handed a connection inside a caller's transaction): the
            # person and the further branches they cover.
            row = await self._pool.fetchrow(
                "WITH new AS (INSERT INTO staff (name, phone, role, level, communities, office_schedule,"
                " max_open_cases, weight, status, wecom_userid, branch_id)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) RETURNING *),"
                " covered AS (INSERT INTO staff_branches (staff_id, branch_id)"
                " SELECT new.id, b FROM new, unnest($12::bigint[]) AS b)"
                f" SELECT {_COLUMNS} FROM new AS staff",
                name,
                phone,
                role.value,
                level.value if level else None,
                communities or [],
                _schedule_to_db(office_schedule or {}),
                max_open_cases,
                weight,
                status.value,
                wecom_userid,
                branch_id,
                extra,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _taken(exc, f"该手机号已登记为 {role.value}") from exc
        except asyncpg.CheckViolationError as exc:
            raise StaffError("invalid_staff", f"员工信息不合法: {exc.constraint_name}") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise StaffError("invalid_branch", "没有这个分公司") from exc
        assert row is not None
        # The statement's own snapshot does not see the rows it inserted into staff_branches.
        return _row_to_staff(row).model_copy(update={"extra_branches": extra})

    async def get(self, *, staff_id: int) -> Staff | None:
        """One staff member by id."""
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM staff WHERE id = $1", staff_id)
        return _row_to_staff(row) if row else None

    async def list(self, *, role: Role | None = None, active_only: bool = False) -> list[Staff]:
        """All staff, optionally of one role and only those active."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM staff WHERE ($1::text IS NULL OR role = $1)"
            " AND (NOT $2 OR status = 'active') ORDER BY id",
            role.value if role else None,
            active_only,
        )
        return [_row_to_staff(r) for r in rows]

    async def first_active(self, *, role: Role, branch_id: int | None = None) -> Staff | None:
        """The longest-serving active member of a role (the default manager, director, ...); with `branch_id`,
        of that branch: its own people first, then those who cover it (a regional manager)."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM staff WHERE role = $1 AND status = 'active'"
            f" AND ($2::bigint IS NULL OR {in_branch_sql('staff', '$2')})"
            " ORDER BY ($2::bigint IS NOT NULL AND branch_id <> $2), id LIMIT 1",
            role.value, branch_id,
        )
        return _row_to_staff(row) if row else None

    async def set_status(self, *, staff_id: int, status: StaffStatus) -> None:
        """Mark a staff member active, on leave or inactive."""
        await self._pool.execute(
            "UPDATE staff SET status = $2, updated_at = now() WHERE id = $1", staff_id, status.value
        )

    async def issue_token(
        self,
        *,
        staff_id: int,
        label: str | None = None,
        ttl_days: float | None = None,
        scope: str = "api",
        issued_by: int | None = None,
        issued_via: str | None = None,
        approved_by: int | None = None,
    ) -> str:
        """Create a new bearer token (expiring after `ttl_days` when given); returns it once, stores only its
        hash, what it opens (`scope`: api, or codec for the personal codec URL) and who issued it."""
        token = ("itc_" if scope == "codec" else "itk_") + secrets.token_urlsafe(32)
        await self._pool.execute(
            "INSERT INTO staff_tokens (staff_id, token_hash, label, expires_at, scope, issued_by, issued_via,"
            " approved_by) VALUES ($1, $2, $3,"
            " CASE WHEN $4::float8 IS NULL THEN NULL ELSE now() + $4::float8 * interval '1 day' END, $5, $6, $7, $8)",
            staff_id,
            hash_token(token),
            label,
            ttl_days,
            scope,
            issued_by,
            issued_via,
            approved_by,
        )
        return token

    async def update(self, *, staff_id: int, changes: dict[str, Any]) -> Staff | None:
        """Change some of a staff member's fields (name, role, level, communities, office_schedule,
        max_open_cases, weight, status); None when there is no such member. Leaving (inactive) also
        revokes every token, so coming back needs a new one."""
        allowed = {"name", "role", "level", "communities", "office_schedule", "max_open_cases", "weight", "status",
                   "deputy_id", "wecom_userid", "branch_id", "extra_branches"}
        unknown = set(changes) - allowed
        if unknown:
            raise StaffError("invalid_staff", f"不能修改的字段: {', '.join(sorted(unknown))}")
        if "wecom_userid" in changes:
            _check_wecom_userid(changes["wecom_userid"])
        current = await self.get(staff_id=staff_id)
        if current is None:
            return None
        merged = current.model_copy(update=changes)
        problem = staffing.level_error(Role(merged.role), merged.level)
        if problem is not None:
            raise StaffError("level_required" if merged.level is None else "invalid_staff", problem)
        if merged.deputy_id is not None:
            deputy = await self.get(staff_id=merged.deputy_id)
            if merged.deputy_id == staff_id or deputy is None or deputy.status == StaffStatus.inactive:
                raise StaffError("invalid_staff", "代理人须是另一位在职员工")
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "UPDATE staff SET name = $2, role = $3, level = $4, communities = $5, office_schedule = $6,"
                    " max_open_cases = $7, weight = $8, status = $9, deputy_id = $10, wecom_userid = $11,"
                    " branch_id = $12, updated_at = now() WHERE id = $1"
                    " RETURNING id",
                    staff_id,
                    merged.name,
                    Role(merged.role).value,
                    Level(merged.level).value if merged.level else None,
                    list(merged.communities),
                    _schedule_to_db(merged.office_schedule),
                    merged.max_open_cases,
                    merged.weight,
                    StaffStatus(merged.status).value,
                    merged.deputy_id,
                    merged.wecom_userid,
                    merged.branch_id,
                )
                if row is not None and ("extra_branches" in changes or "branch_id" in changes):
                    await _set_extra_branches(conn, staff_id, merged.branch_id, list(merged.extra_branches))
                if row is not None:
                    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM staff WHERE id = $1", staff_id)
                if merged.status == StaffStatus.inactive:
                    await revoke_all_access(conn, staff_id)
        except asyncpg.UniqueViolationError as exc:
            raise _taken(exc, "该手机号已登记为该角色") from exc
        except asyncpg.CheckViolationError as exc:
            raise StaffError("invalid_staff", f"员工信息不合法: {exc.constraint_name}") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise StaffError("invalid_branch", "没有这个分公司") from exc
        return _row_to_staff(row) if row else None

    async def by_wecom_userid(self, *, userid: str) -> Staff | None:
        """The staff member (active or on leave, as for sign-in links) whose WeCom member id this is, if any."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM staff WHERE wecom_userid = $1 AND status <> 'inactive'", userid)
        return _row_to_staff(row) if row else None

    async def acting_for(self, *, staff_id: int, calendar: CalendarPolicy, now: datetime) -> tuple[int, ...]:
        """The managers whose steps `staff_id` holds now as their deputy (each away, the deputy at work)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM staff WHERE deputy_id = $1 OR id = $1 ORDER BY id", staff_id)
        me = next((r for r in rows if r["id"] == staff_id), None)
        if me is None:
            return ()
        deputy = availability(_row_to_staff(me))
        return tuple(r["id"] for r in rows if r["id"] != staff_id
                     and staffing.acting_deputy(availability(_row_to_staff(r)), deputy, calendar, now) == staff_id)

    async def holders(self, *, calendar: CalendarPolicy, now: datetime) -> dict[int, Staff]:
        """Who holds whose steps now: each person away whose deputy is at work, mapped to that deputy."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM staff WHERE deputy_id IS NOT NULL"
            f" UNION SELECT {_COLUMNS} FROM staff WHERE id IN (SELECT deputy_id FROM staff)")
        people = {r["id"]: _row_to_staff(r) for r in rows}
        out: dict[int, Staff] = {}
        for p in people.values():
            deputy = people.get(p.deputy_id) if p.deputy_id is not None else None
            if deputy is not None and staffing.acting_deputy(availability(p), availability(deputy), calendar,
                                                              now) is not None:
                out[p.id] = deputy
        return out

    async def revoke_tokens(self, *, staff_id: int) -> int:
        """Revoke every live token of a staff member (a lost phone, someone leaving), and with them every
        console session and unused sign-in link: access ends at once. Returns how many tokens."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await revoke_all_access(conn, staff_id)

    async def by_token(
        self, *, token: str, max_age_days: float | None = None, scope: str = "api"
    ) -> Staff | None:
        """The staff member (active or on leave) owning a bearer token of `scope`, if the token is valid: not
        revoked, not past its `expires_at`, and (when `max_age_days` is given) issued less than that long ago.
        A codec credential never opens another route, an API token never the personal codec URL."""
        # Looked up by the token's sha256: timing reveals nothing about the token itself, and a
        # database equality on a hash of a 256-bit secret needs no constant-time compare after it.
        # The age bound is checked here too, so lowering the setting shortens every live token at once.
        row = await self._pool.fetchrow(token_owner_sql("$1", "$2", "$3"), hash_token(token), max_age_days, scope)
        return _row_to_staff(row) if row else None


def token_owner_sql(token_hash: str, max_age_days: str, scope: str) -> str:
    """The staff row owning a valid token (not revoked or expired, issued within `max_age_days`, its owner not
    inactive), with the placeholders given: StaffRepository.by_token, and the case read that confirms a
    cached token (store.queries.case_row)."""
    return (
        f"SELECT {_COLUMNS} FROM staff WHERE status <> 'inactive' AND id = (SELECT staff_id FROM staff_tokens"
        f" WHERE token_hash = {token_hash} AND scope = {scope} AND revoked_at IS NULL"
        f" AND (expires_at IS NULL OR expires_at > now())"
        f" AND ({max_age_days}::float8 IS NULL OR created_at > now() - {max_age_days}::float8 * interval '1 day'))"
    )


def in_branch_sql(alias: str, branch_param: str) -> str:
    """The condition that staff row `alias` works in the branch `branch_param` (home, or covered)."""
    return (f"({alias}.branch_id = {branch_param} OR EXISTS (SELECT 1 FROM staff_branches sb"
            f" WHERE sb.staff_id = {alias}.id AND sb.branch_id = {branch_param}))")


async def _set_extra_branches(conn: asyncpg.Connection, staff_id: int, home: int, extra: list[int]) -> None:
    """The further branches a person covers (a regional manager), replacing those recorded; the home branch
    is never listed twice."""
    await conn.execute("DELETE FROM staff_branches WHERE staff_id = $1", staff_id)
    wanted = sorted({b for b in extra if b != home})
    if wanted:
        await conn.execute(
            "INSERT INTO staff_branches (staff_id, branch_id) SELECT $1, unnest($2::bigint[])", staff_id, wanted)


def staff_from_json(value: dict[str, Any]) -> Staff:
    """A staff row as ``to_jsonb`` gives it (a statement that reads it beside other things)."""
    return _row_to_staff(value)


def _check_wecom_userid(value: str | None) -> None:
    """StaffError invalid_wecom_userid unless `value` is None or a well-formed WeCom member id."""
    problem = wecom_userid_error(value) if value is not None else None
    if problem is not None:
        raise StaffError("invalid_wecom_userid", problem)


def _taken(exc: asyncpg.UniqueViolationError, phone_message: str) -> StaffError:
    """A unique key already used: the WeCom member id (someone else's) or the phone for the role."""
    if exc.constraint_name == "staff_wecom_userid_key":
        return StaffError("wecom_userid_taken", "该企业微信账号已登记给另一位员工")
    return StaffError("staff_exists", phone_message)


async def revoke_all_access(conn: asyncpg.Connection, staff_id: int) -> int:
    """Revoke every token (any scope), console session and unused sign-in link of a person; tokens revoked."""
    result = await conn.execute(
        "UPDATE staff_tokens SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL", staff_id
    )
    await conn.execute("UPDATE console_sessions SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL",
                       staff_id)
    await conn.execute("UPDATE console_links SET used_at = now() WHERE staff_id = $1 AND used_at IS NULL", staff_id)
    return int(result.split()[-1])
