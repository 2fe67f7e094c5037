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
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO branches (code, name, city, company_name, company_short_name, company_address,"
                " sms_sign, sms_template_codes, wecom_department_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9)"
                f" RETURNING {_COLUMNS}",
                code, name, city, company_name, company_short_name, company_address, sms_sign,
                sms_template_codes or {}, wecom_department_id,
            )
        except asyncpg.UniqueViolationError:
            raise BranchError("branch_code_taken", f"分公司代码 {code} 已被使用") from None
        assert row is not None
        return _from_row(row)


class BranchError(Exception):
    """A branch operation broke a rule (code taken, bad code, ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
