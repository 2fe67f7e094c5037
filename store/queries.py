"""SQL read by the API: case rows, lists, tasks, messages, reports, the board (the projection in PostgreSQL).

Raw SQL with parameters; every call is bounded by the caller (api.deps.bounded). Lists are
paginated and use the indexes of migrations/001_init.sql (see benchmarks/bench_api_lists.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from domain.permissions import Relation, Scope
from store.staff import token_owner_sql

# --- who sees which case (domain/permissions.py decides; this is its translation into SQL) ----------

# Each relation of a person to a case, as a condition on the case row `c` and the person's id {p}.
_RELATION_SQL: dict[Relation, str] = {
    Relation.creator: "c.created_by = {p}",
    Relation.receiver: "c.received_by = {p}",
    Relation.manager: "c.manager_id = {p}",
    Relation.deputy: "c.manager_id IN (SELECT m.id FROM staff m WHERE m.deputy_id = {p})",
    Relation.designer: "c.designer_id = {p}",
    Relation.assistant: "c.assistant_id = {p}",
    Relation.former_designer: "c.id IN (SELECT l.case_id FROM allocation_ledger l WHERE l.designer_id = {p})",
    Relation.former_assistant: "c.id IN (SELECT r.case_id FROM assistant_registrations r WHERE r.assistant_id = {p})",
}


def branch_sql(scope: Scope) -> str | None:
    """The scope's branches as a condition on `c` (None: every branch). The ids are integers from the
    staff row, written into the statement: a person's lists keep one plan per set of branches."""
    if scope.branches is None:
        return None
    ids = sorted(int(b) for b in scope.branches)
    if not ids:
        return "FALSE"
    return f"c.branch_id = {ids[0]}" if len(ids) == 1 else f"c.branch_id IN ({', '.join(map(str, ids))})"


def scope_sql(scope: Scope, person_param: str) -> str:
    """The WHERE condition for the cases a scope admits; `person_param` is the placeholder of the person's id."""
    branches = branch_sql(scope)
    if scope.everything:
        return branches or "TRUE"
    if not scope.relations:
        return "FALSE"
    tied = "(" + " OR ".join(_RELATION_SQL[r].format(p=person_param) for r in sorted(scope.relations)) + ")"
    return f"({branches} AND {tied})" if branches else tied


@dataclass(frozen=True)
class Viewer:
    """Whose lists: the person's id and the cases their role lets them see."""

    staff_id: int
    scope: Scope

_STAFF_JSON = (
    "CASE WHEN {a}.id IS NULL THEN NULL ELSE jsonb_build_object("
    "'id', {a}.id, 'name', {a}.name, 'role', {a}.role, 'level', {a}.level) END"
)

CASE_COLUMNS = (
    "c.id, c.workflow_id, c.source, c.scenario, c.stage, c.status, c.outcome, c.outcome_reason,"
    " c.client_name, c.client_phone, c.client_gender, c.client_age_range, c.compound, c.address,"
    " c.area_m2, c.budget, c.notes, c.meeting_at, c.meeting_kind, c.measure_at, c.created_by,"
    " c.received_by, c.manager_id, c.designer_id, c.assistant_id, c.overdue, c.escalation_level,"
    " c.step_due_at, c.version, c.created_at, c.closed_at, c.branch_id"
)

_DETAIL_SQL = (
    f"SELECT {CASE_COLUMNS}, c.state, c.policy, c.policy_version, mg.deputy_id AS manager_deputy_id,"
    " c.previous_case_id, c.returning_reason, c.house_key, c.second_phone,"
    " intake_callback_notes(c.id) AS callback_notes,"  # what a step's designer notice tells (store/projection)
    f" {_STAFF_JSON.format(a='cb')} AS created_by_ref,"
    f" {_STAFF_JSON.format(a='rb')} AS received_by_ref,"
    f" {_STAFF_JSON.format(a='mg')} AS manager_ref,"
    f" {_STAFF_JSON.format(a='dg')} AS designer_ref,"
    f" {_STAFF_JSON.format(a='ag')} AS assistant_ref,"
    " br.code AS branch_code, br.name AS branch_name"
    ", ARRAY(SELECT DISTINCT l.designer_id FROM allocation_ledger l WHERE l.case_id = c.id"
    "        AND l.designer_id IS DISTINCT FROM c.designer_id) AS former_designers"
    ", ARRAY(SELECT DISTINCT r.assistant_id FROM assistant_registrations r WHERE r.case_id = c.id"
    "        AND r.assistant_id IS DISTINCT FROM c.assistant_id) AS former_assistants"
    " FROM cases c"
    " LEFT JOIN staff cb ON cb.id = c.created_by"
    " LEFT JOIN staff rb ON rb.id = c.received_by"
    " LEFT JOIN staff mg ON mg.id = c.manager_id"
    " LEFT JOIN staff dg ON dg.id = c.designer_id"
    " LEFT JOIN staff ag ON ag.id = c.assistant_id"
    " LEFT JOIN branches br ON br.id = c.branch_id"
    " WHERE c.id = $1"
)


# The case row beside the owner of a token (jsonb, NULL when the token is no longer valid): a token taken from
# the process's cache is confirmed by the statement that reads the case anyway (api.deps.get_case_user).
_API_SCOPE = "'api'"
_DETAIL_AS_SQL = (
    f"SELECT (SELECT to_jsonb(o) FROM ({token_owner_sql('$2', '$3', _API_SCOPE)}) o) AS auth_staff,"
    f" d.* FROM (SELECT 1) AS one LEFT JOIN LATERAL ({_DETAIL_SQL}) d ON true"
)


async def case_row(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> asyncpg.Record | None:
    """The case row with its staff references and the last reported state (jsonb)."""
    return await conn.fetchrow(_DETAIL_SQL, case_id)


async def case_row_as(
    conn: asyncpg.Pool | asyncpg.Connection, case_id: int, *, token_hash: str, max_age_days: float | None
) -> tuple[dict[str, Any] | None, asyncpg.Record | None]:
    """The owner of a token as the database holds them now (None: revoked, expired, left) and the case row."""
    row = await conn.fetchrow(_DETAIL_AS_SQL, case_id, token_hash, max_age_days)
    assert row is not None
    owner = row["auth_staff"]
    return owner, (row if row["id"] is not None else None)


async def case_events(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> list[asyncpg.Record]:
    """The case's timeline, oldest first."""
    return await conn.fetch(
        "SELECT seq, at, kind, step, actor_id, text, data FROM case_events WHERE case_id = $1 ORDER BY seq",
        case_id,
    )


async def case_assignments(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> list[asyncpg.Record]:
    """Allocation ledger and assistant registrations (备案登记) of a case, oldest first."""
    return await conn.fetch(
        "SELECT role, staff_id, staff_name, kind, suggested_id, decided_by, decided_by_name, reason, at"
        " FROM case_assignment_rows WHERE case_id = $1 ORDER BY at",  # the view: migrations/018
        case_id,
    )


async def open_case_for_phone(
    conn: asyncpg.Pool | asyncpg.Connection, phone: str, viewer: Viewer
) -> tuple[int, bool] | None:
    """The open case of a client phone, if any: its id, and whether `viewer` may see it."""
    visible = scope_sql(viewer.scope, "$2")
    args = (phone, viewer.staff_id) if "$2" in visible else (phone,)
    row = await conn.fetchrow(
        f"SELECT c.id, {visible} AS visible FROM cases c"
        " WHERE c.client_phone = $1 AND c.status IN ('open', 'starting')",
        *args,
    )
    return (row["id"], row["visible"]) if row is not None else None


async def case_designer(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> int | None:
    """The designer a case had last: its designer, else the last one in its allocation ledger."""
    value: int | None = await conn.fetchval(
        "SELECT coalesce(c.designer_id, (SELECT l.designer_id FROM allocation_ledger l WHERE l.case_id = c.id"
        " ORDER BY l.at DESC, l.id DESC LIMIT 1)) FROM cases c WHERE c.id = $1", case_id)
    return value


async def matching_cases(
    conn: asyncpg.Pool | asyncpg.Connection, *, phones: list[str], house_key: str | None, viewer: Viewer,
    exclude_id: int | None = None, limit: int = 20,
) -> list[asyncpg.Record]:
    """Cases of the same client or house (查重, 撞单), open ones first, then the newest: how each matched
    (phone, second_phone, house), its designer, and whether `viewer` may see it."""
    visible = scope_sql(viewer.scope, "$4")
    return await conn.fetch(
        # $4 (the viewer) is named even when their scope is everything, so its type is always known.
        f"SELECT c.id, c.status, c.outcome, c.designer_id, d.name AS designer_name, {visible} AS visible,"
        " $4::bigint AS viewer_id,"
        " CASE WHEN c.client_phone = ANY($1::text[]) THEN 'phone'"
        "      WHEN c.second_phone = ANY($1::text[]) THEN 'second_phone' ELSE 'house' END AS matched_by"
        " FROM cases c LEFT JOIN staff d ON d.id = c.designer_id"
        " WHERE (c.client_phone = ANY($1::text[]) OR c.second_phone = ANY($1::text[])"
        "        OR ($2::text IS NOT NULL AND c.house_key = $2))"
        " AND ($3::bigint IS NULL OR c.id <> $3)"
        " ORDER BY c.status IN ('open', 'starting') DESC, c.created_at DESC, c.id DESC LIMIT $5",
        phones, house_key, exclude_id, viewer.staff_id, limit,
    )


# --- list ----------------------------------------------------------------------------------------


@dataclass
class CaseFilter:
    """Filters of GET /intakes (all optional, combined with AND)."""

    stage: str | None = None
    status: str | None = None
    overdue: bool | None = None
    designer_id: int | None = None
    manager_id: int | None = None
    source: str | None = None
    scenario: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    viewer: Viewer | None = None  # None: every case (internal use only)
    args: list[Any] = field(default_factory=list)

    def where(self) -> str:
        """The WHERE clause; parameters accumulate in `args`."""
        self.args = []
        parts: list[str] = []

        def add(sql: str, value: Any) -> None:
            self.args.append(value)
            parts.append(sql.format(p=f"${len(self.args)}"))

        if self.stage is not None:
            add("c.stage = {p}", self.stage)
        if self.status is not None:
            add("c.status = {p}", self.status)
        if self.overdue is not None:
            parts.append("c.overdue" if self.overdue else "NOT c.overdue")
        if self.designer_id is not None:
            add("c.designer_id = {p}", self.designer_id)
        if self.manager_id is not None:
            add("c.manager_id = {p}", self.manager_id)
        if self.source is not None:
            add("c.source = {p}", self.source)
        if self.scenario is not None:
            add("c.scenario = {p}", self.scenario)
        if self.created_from is not None:
            add("c.created_at >= {p}", self.created_from)
        if self.created_to is not None:
            add("c.created_at < {p}", self.created_to)
        if self.viewer is not None and not self.viewer.scope.everything:
            if self.viewer.scope.relations:
                add(scope_sql(self.viewer.scope, "{p}"), self.viewer.staff_id)  # every {p} is the person
            else:
                parts.append("FALSE")
        elif self.viewer is not None:
            branches = branch_sql(self.viewer.scope)
            if branches:
                parts.append(branches)
        return ("WHERE " + " AND ".join(parts)) if parts else ""


_LIST_COLUMNS = (
    "c.id, c.workflow_id, c.source, c.scenario, c.stage, c.status, c.outcome, c.client_name,"
    " c.client_phone, c.compound, c.budget, c.overdue, c.escalation_level, c.step_due_at, c.meeting_at,"
    " c.created_at, c.created_by, c.received_by, c.manager_id, mg.name AS manager_name, c.designer_id, dg.name AS designer_name,"
    " c.assistant_id, ag.name AS assistant_name, c.branch_id"
)


async def list_cases(
    conn: asyncpg.Pool | asyncpg.Connection,
    flt: CaseFilter,
    *,
    limit: int,
    offset: int,
    cursor: tuple[datetime, int] | None,
) -> tuple[list[asyncpg.Record], int]:
    """A page of cases, newest first, and the total matching the filters."""
    where = flt.where()
    args = list(flt.args)
    total: int = await conn.fetchval(f"SELECT count(*) FROM cases c {where}", *args)
    page_where = where
    if cursor is not None:
        args += [cursor[0], cursor[1]]
        cond = f"(c.created_at, c.id) < (${len(args) - 1}, ${len(args)})"
        page_where = f"{where} AND {cond}" if where else f"WHERE {cond}"
        offset = 0
    args += [limit, offset]
    rows = await conn.fetch(
        f"SELECT {_LIST_COLUMNS} FROM cases c"
        " LEFT JOIN staff mg ON mg.id = c.manager_id"
        " LEFT JOIN staff dg ON dg.id = c.designer_id"
        " LEFT JOIN staff ag ON ag.id = c.assistant_id"
        f" {page_where} ORDER BY c.created_at DESC, c.id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return rows, total


# --- my tasks ------------------------------------------------------------------------------------

_TASK_COLUMNS = (
    "s.case_id, s.step_key, s.step, s.attempt, s.owner_role, s.owner_id, s.opened_at, s.due_at,"
    " s.overdue, s.escalation_level, c.stage, c.source, c.scenario, c.client_name, c.compound,"
    " c.client_phone, c.created_by, c.received_by, c.designer_id, c.assistant_id, c.branch_id"
)


async def my_tasks(
    conn: asyncpg.Pool | asyncpg.Connection, *, viewer: Viewer, role: str, limit: int, offset: int,
    holding_for: tuple[int, ...] = (),
) -> tuple[list[asyncpg.Record], int]:
    """Open steps owned by the staff member, or unowned, of their role and on a case they may see;
    soonest due first.

    Two index-ordered branches (case_steps_open_owner_idx, case_steps_open_role_idx), each cut at
    offset+limit, merged: the page never sorts all open steps of a role.
    """
    cut = offset + limit
    staff_id = viewer.staff_id
    unowned = f"s.owner_id IS NULL AND s.owner_role = $2 AND {scope_sql(viewer.scope, '$1')}"
    branch = (
        f"(SELECT {_TASK_COLUMNS} FROM case_steps s JOIN cases c ON c.id = s.case_id"
        " WHERE s.status = 'open' AND c.status = 'open' AND {cond}"
        " ORDER BY s.due_at NULLS LAST LIMIT $3)"
    )
    # A deputy holds the steps of the managers who are away (domain.staffing.acting_deputy).
    held = "s.owner_id = ANY($6::bigint[])"
    # Steps of a case outside the person's branches are not theirs to do (a transfer hands them on).
    branches = branch_sql(viewer.scope)
    within = f" AND {branches}" if branches else ""
    rows = await conn.fetch(
        f"SELECT * FROM ({branch.format(cond='s.owner_id = $1' + within)}"
        f" UNION ALL {branch.format(cond=unowned)}"
        f" UNION ALL {branch.format(cond=held + within)}) t"
        " ORDER BY t.due_at NULLS LAST, t.case_id, t.step_key LIMIT $4 OFFSET $5",
        staff_id,
        role,
        cut,
        limit,
        offset,
        list(holding_for),
    )
    total: int = await conn.fetchval(
        "SELECT count(*) FROM case_steps s JOIN cases c ON c.id = s.case_id"
        " WHERE s.status = 'open' AND c.status = 'open'"
        f" AND (s.owner_id = $1 OR ({unowned}) OR ({held.replace('$6', '$3')})){within}",
        staff_id,
        role,
        list(holding_for),
    )
    return rows, total


# --- messages ------------------------------------------------------------------------------------


async def case_messages(
    conn: asyncpg.Pool | asyncpg.Connection, case_id: int, channel: str = "sms", recipient_id: int | None = None
) -> list[asyncpg.Record]:
    """The messages of a case on a channel (SMS to the client by default), oldest first; staff notices
    of one recipient when `recipient_id` is given."""
    return await conn.fetch(
        "SELECT purpose, template, text, status, recipient, recipient_id, provider, provider_id, attempts,"
        " error_code, last_error, created_at, sent_at, not_before FROM outbox WHERE case_id = $1 AND channel = $2"
        " AND ($3::bigint IS NULL OR recipient_id = $3) ORDER BY created_at, id",
        case_id,
        channel,
        recipient_id,
    )


# --- SLA report ----------------------------------------------------------------------------------

GROUP_KEYS = {"none": "NULL::text", "source": "c.source", "manager": "c.manager_id::text", "designer": "c.designer_id::text"}


async def sla_report(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    period_from: datetime,
    period_to: datetime,
    group_by: str,
    source: str | None,
    scenario: str | None,
    branches: list[int] | None = None,
) -> list[asyncpg.Record]:
    """Per step (and group): done, on time, median and p90 time to done, escalations.

    The period selects cases by creation time (cases_created_idx; of some branches: cases_branch_created_idx),
    then their steps by primary key. Cancelled step instances (closed cases) are left out of the timing figures.
    """
    key = GROUP_KEYS[group_by]
    label = {
        "none": "NULL::text",
        "source": "r.grp",
        "manager": "st.name",
        "designer": "st.name",
    }[group_by]
    join = "LEFT JOIN staff st ON st.id::text = r.grp" if group_by in ("manager", "designer") else ""
    return await conn.fetch(
        f"""
        WITH r AS (
          SELECT s.step, {key} AS grp,
            count(*) FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled') AS done,
            count(*) FILTER (WHERE s.status = 'open') AS open,
            count(*) FILTER (WHERE s.status = 'open' AND s.due_at < now()) AS open_overdue,
            count(*) FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled'
                             AND (s.due_at IS NULL OR s.completed_at <= s.due_at)) AS on_time,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.completed_at - s.opened_at))
              FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled') AS median_seconds,
            percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM s.completed_at - s.opened_at))
              FILTER (WHERE s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled') AS p90_seconds,
            count(*) FILTER (WHERE s.escalation_level > 0) AS escalated,
            coalesce(sum(s.escalation_level), 0)::bigint AS escalations
          FROM cases c JOIN case_steps s ON s.case_id = c.id
          WHERE c.created_at >= $1 AND c.created_at < $2
            AND ($3::text IS NULL OR c.source = $3) AND ($4::text IS NULL OR c.scenario = $4)
            AND ($5::bigint[] IS NULL OR c.branch_id = ANY($5::bigint[]))
          GROUP BY s.step, grp
        )
        SELECT r.*, {label} AS group_label FROM r {join}
        ORDER BY r.step, r.grp NULLS FIRST
        """,
        period_from,
        period_to,
        source,
        scenario,
        branches,
    )


async def allocation_report(
    conn: asyncpg.Pool | asyncpg.Connection, *, period_from: datetime, period_to: datetime,
    branches: list[int] | None = None,
) -> list[asyncpg.Record]:
    """Per designer: cases given in the period (by kind), overrides of the suggestion, open cases now.

    Of some branches: their designers, and the ledger and open cases of those branches' cases.
    """
    return await conn.fetch(
        """
        WITH l AS (
          SELECT designer_id,
            count(*) FILTER (WHERE kind <> 'lapse') AS assigned,
            count(*) FILTER (WHERE kind = 'lapse') AS lapses,
            count(*) FILTER (WHERE kind = 'auto') AS auto,
            count(*) FILTER (WHERE kind = 'reassign') AS reassigned_to,
            count(*) FILTER (WHERE kind = 'assign' AND suggested_id IS NOT NULL
                             AND suggested_id <> designer_id) AS chosen_over_suggestion,
            max(at) FILTER (WHERE kind <> 'lapse') AS last_assigned_at
          FROM allocation_ledger
          WHERE at >= $1 AND at < $2
            AND ($3::bigint[] IS NULL OR case_id IN (SELECT id FROM cases WHERE branch_id = ANY($3::bigint[])))
          GROUP BY designer_id
        ), passed AS (
          SELECT suggested_id AS designer_id, count(*) AS passed_over
          FROM allocation_ledger
          WHERE at >= $1 AND at < $2 AND kind = 'assign' AND suggested_id IS NOT NULL
            AND suggested_id <> designer_id
            AND ($3::bigint[] IS NULL OR case_id IN (SELECT id FROM cases WHERE branch_id = ANY($3::bigint[])))
          GROUP BY suggested_id
        ), o AS (
          SELECT designer_id, count(*) AS open_cases FROM cases WHERE status = 'open' AND designer_id IS NOT NULL
            AND ($3::bigint[] IS NULL OR branch_id = ANY($3::bigint[]))
          GROUP BY designer_id
        )
        SELECT s.id, s.name, s.level, s.status,
          coalesce(l.assigned, 0) AS assigned, coalesce(l.lapses, 0) AS lapses, coalesce(l.auto, 0) AS auto,
          coalesce(l.reassigned_to, 0) AS reassigned_to,
          coalesce(l.chosen_over_suggestion, 0) AS chosen_over_suggestion,
          coalesce(p.passed_over, 0) AS passed_over,
          coalesce(o.open_cases, 0) AS open_cases,
          (SELECT max(at) FROM allocation_ledger a WHERE a.designer_id = s.id AND a.kind <> 'lapse')
            AS last_assigned_at
        FROM staff s
        LEFT JOIN l ON l.designer_id = s.id
        LEFT JOIN passed p ON p.designer_id = s.id
        LEFT JOIN o ON o.designer_id = s.id
        WHERE s.role = 'designer' AND (s.status <> 'inactive' OR l.assigned IS NOT NULL)
          AND ($3::bigint[] IS NULL OR s.branch_id = ANY($3::bigint[]) OR l.assigned IS NOT NULL)
        ORDER BY coalesce(l.assigned, 0) DESC, s.id
        """,
        period_from,
        period_to,
        branches,
    )


# --- staff console: manager board and the lead funnel -------------------------------------------


async def board_cases(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    designer_id: int | None = None,
    source: str | None = None,
    scenario: str | None = None,
    overdue: bool | None = None,
    limit: int = 300,
    branches: list[int] | None = None,
) -> list[asyncpg.Record]:
    """Open cases for the manager's board (of some branches: cases_branch_status_idx): overdue first, then the
    most escalated, then soonest due."""
    return await conn.fetch(
        """
        SELECT * FROM (
          SELECT c.id, c.workflow_id, c.stage, c.source, c.scenario, c.client_name, c.compound,
            c.designer_id, d.name AS designer_name, c.assistant_id, a.name AS assistant_name,
            c.manager_id, m.name AS manager_name,
            c.escalation_level, f.step_due_at, c.created_at,
            (c.overdue OR coalesce(f.step_due_at < now(), false)) AS overdue
          FROM cases c
          -- the earliest due open step (how late the case is), by the steps' primary key
          LEFT JOIN LATERAL (SELECT min(s.due_at) AS step_due_at FROM case_steps s
                             WHERE s.case_id = c.id AND s.status = 'open') f ON true
          LEFT JOIN staff d ON d.id = c.designer_id
          LEFT JOIN staff a ON a.id = c.assistant_id
          LEFT JOIN staff m ON m.id = c.manager_id
          WHERE c.status = 'open'
            AND ($1::bigint IS NULL OR c.designer_id = $1)
            AND ($2::text IS NULL OR c.source = $2)
            AND ($3::text IS NULL OR c.scenario = $3)
            AND ($6::bigint[] IS NULL OR c.branch_id = ANY($6::bigint[]))
        ) b
        WHERE ($4::boolean IS NULL OR b.overdue = $4)
        ORDER BY b.overdue DESC, b.escalation_level DESC, b.step_due_at NULLS LAST, b.id
        LIMIT $5
        """,
        designer_id,
        source,
        scenario,
        overdue,
        limit,
        branches,
    )


async def funnel(
    conn: asyncpg.Pool | asyncpg.Connection, *, period_from: datetime, period_to: datetime, group_by: str,
    branches: list[int] | None = None,
) -> list[asyncpg.Record]:
    """Lead → first meeting held → signed, for cases created in the period, by source or by designer."""
    key, label = {
        "source": ("c.source", "c.source"),
        "designer": ("c.designer_id::text", "coalesce(st.name, '未分配')"),
    }[group_by]
    return await conn.fetch(
        f"""
        SELECT {key} AS grp, {label} AS label,
          count(*) AS leads,
          count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM case_steps s WHERE s.case_id = c.id AND s.step = 'first_meeting'
              AND s.status = 'done' AND s.result IS DISTINCT FROM 'cancelled')) AS first_meeting,
          count(*) FILTER (WHERE c.outcome = 'signed') AS signed
        FROM cases c LEFT JOIN staff st ON st.id = c.designer_id
        WHERE c.created_at >= $1 AND c.created_at < $2 AND c.status <> 'starting'
          AND ($3::bigint[] IS NULL OR c.branch_id = ANY($3::bigint[]))
        GROUP BY 1, 2
        ORDER BY leads DESC, label
        """,
        period_from,
        period_to,
        branches,
    )
