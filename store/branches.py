"""Branches (分公司/门店): a chain's offices, each with its own people, calendar, rules and SMS names.

Migration 019 makes an existing install branch 1 (``main``). A branch's company names and address left
empty are the deployment's settings (INTAKE_COMPANY_*), so branch 1 texts clients as before.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from domain import templates

MAIN_BRANCH_ID = 1
BRANCH_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
BRANCH_CODE_RULE = "分公司代码应为 1–32 位小写字母、数字、_ 或 -，以字母或数字开头"
# An approved Aliyun template code (SMS_123456789) as a branch's SMS account names it.
SMS_TEMPLATE_CODE = re.compile(r"[A-Za-z0-9_]{1,64}")
# What PATCH may change (the code is how staff and the CLI name a branch: it stays).
UPDATABLE = frozenset({
    "name", "city", "company_name", "company_short_name", "company_address", "sms_sign", "sms_template_codes",
    "wecom_department_id", "status",
})

_COLUMNS = (
    "id, code, name, city, company_name, company_short_name, company_address, sms_sign,"
    " sms_template_codes, wecom_department_id, status, created_at"
)


class Branch(BaseModel):
    """A branch as stored in PostgreSQL."""

    id: int
    code: str
    name: str
    city: str | None = None
    company_name: str | None = None
    company_short_name: str | None = None
    company_address: str | None = None
    sms_sign: str | None = None
    sms_template_codes: dict[str, str] = Field(default_factory=dict)
    wecom_department_id: int | None = None
    status: str = "active"
    created_at: datetime | None = None

    def company(self, default: templates.Company) -> templates.Company:
        """The company as this branch's client SMS name it: its own names and address, else the deployment's."""
        return templates.Company(
            name=self.company_name or default.name,
            short_name=self.company_short_name or default.short_name,
            address=self.company_address if self.company_address is not None else default.address,
        )


def branch_code_error(value: str) -> str | None:
    """Why `value` cannot be a branch code (Chinese, for staff), or None when it can."""
    return None if BRANCH_CODE.fullmatch(value) else BRANCH_CODE_RULE


def sms_template_codes_error(codes: dict[str, str]) -> str | None:
    """Why `codes` cannot be a branch's template codes (Chinese, for staff), or None when they can: each key
    a template of domain/templates.py (T1, T1_NO_ASSISTANT, ..., T4_OFFICE), each value an approved code."""
    unknown = sorted(k for k in codes if k not in templates.TEMPLATES)
    if unknown:
        return f"没有这些短信模板：{'、'.join(unknown)}（可用：{'、'.join(templates.TEMPLATES)}）"
    bad = sorted(k for k, v in codes.items() if not isinstance(v, str) or not SMS_TEMPLATE_CODE.fullmatch(v))
    if bad:
        return f"短信模板 {'、'.join(bad)} 的模板编号应为 1–64 位字母、数字或 _（如 SMS_123456789）"
    return None


def _from_row(row: asyncpg.Record) -> Branch:
    data: dict[str, Any] = dict(row)
    codes = data.get("sms_template_codes")
    if isinstance(codes, str):  # jsonb without a codec on this connection
        data["sms_template_codes"] = json.loads(codes)
    return Branch.model_validate(data)


class BranchRepository:
    """Reads and writes `branches`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, branch_id: int) -> Branch | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM branches WHERE id = $1", branch_id)
        return _from_row(row) if row else None

    async def by_code(self, code: str) -> Branch | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM branches WHERE code = $1", code)
        return _from_row(row) if row else None

    async def list(self, *, include_closed: bool = False) -> list[Branch]:
        where = "" if include_closed else "WHERE status = 'active'"
        rows = await self._pool.fetch(f"SELECT {_COLUMNS} FROM branches {where} ORDER BY id")
        return [_from_row(r) for r in rows]

    async def create(
        self,
        *,
        code: str,
        name: str,
        city: str | None = None,
        company_name: str | None = None,
        company_short_name: str | None = None,
        company_address: str | None = None,
        sms_sign: str | None = None,
        sms_template_codes: dict[str, str] | None = None,
        wecom_department_id: int | None = None,
    ) -> Branch:
        """A new branch; BranchError `invalid_branch_code` or `branch_code_taken` when it cannot be."""
        problem = branch_code_error(code)
        if problem:
            raise BranchError("invalid_branch_code", problem)
        _check_codes(sms_template_codes or {})
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO branches (code, name, city, company_name, company_short_name, company_address,"
                " sms_sign, sms_template_codes, wecom_department_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::text::jsonb,$9)"
                f" RETURNING {_COLUMNS}",
                code, name, city, company_name, company_short_name, company_address, sms_sign,
                json.dumps(sms_template_codes or {}), wecom_department_id,
            )
        except asyncpg.UniqueViolationError:
            raise BranchError("branch_code_taken", f"分公司代码 {code} 已被使用") from None
        assert row is not None
        return _from_row(row)

    async def update(self, branch_id: int, changes: dict[str, Any]) -> Branch:
        """Change the fields named in `changes` (None clears an optional one); BranchError
        `branch_not_found`, `invalid_sms_template`, or `branch_not_empty` when closing a branch that still
        has people at work or open cases (move or close them first)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if "sms_template_codes" in changes:
            changes = {**changes, "sms_template_codes": changes["sms_template_codes"] or {}}
            _check_codes(changes["sms_template_codes"])
        async with self._pool.acquire() as conn, conn.transaction():
            current = await conn.fetchrow("SELECT id, status FROM branches WHERE id = $1 FOR UPDATE", branch_id)
            if current is None:
                raise BranchError("branch_not_found", f"没有编号为 {branch_id} 的分公司")
            if changes.get("status") == "closed" and current["status"] != "closed":
                busy = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM staff WHERE branch_id = $1 AND status <> 'inactive') AS people,"
                    " (SELECT count(*) FROM cases WHERE branch_id = $1 AND status IN ('open', 'starting')) AS cases",
                    branch_id)
                assert busy is not None
                if branch_id == MAIN_BRANCH_ID or busy["people"] or busy["cases"]:
                    raise BranchError("branch_not_empty", (
                        "总店不能关闭" if branch_id == MAIN_BRANCH_ID else
                        f"分公司还有 {busy['people']} 名在职员工、{busy['cases']} 个未结案客户，请先调走或结案再关闭"))
            names = sorted(changes)
            if names:
                sets = ", ".join(
                    f"{n} = ${i}::text::jsonb" if n == "sms_template_codes" else f"{n} = ${i}"
                    for i, n in enumerate(names, start=2))
                values = [json.dumps(changes[n]) if n == "sms_template_codes" else changes[n] for n in names]
                await conn.execute(f"UPDATE branches SET {sets}, updated_at = now() WHERE id = $1", branch_id, *values)
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM branches WHERE id = $1", branch_id)
        assert row is not None
        return _from_row(row)


def _check_codes(codes: dict[str, str]) -> None:
    problem = sms_template_codes_error(codes)
    if problem:
        raise BranchError("invalid_sms_template", problem)


class BranchError(Exception):
    """A branch operation broke a rule (code taken, bad code, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
