"""The policy's versions (SPEC §16): each saved with who, when, what changed and why.

A version belongs to the chain (``branch_id`` NULL) or to one branch (migration 019): a branch whose city
keeps other holidays or hours runs its own. New cases of a branch take its newest version, else the
chain's newest, else the policy file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from domain.policy import Policy


class PolicyChanged(Exception):
    """Someone saved another version since this edit began (its base is no longer the newest)."""

    def __init__(self, current: int | None) -> None:
        super().__init__(f"the newest version is now {current}")
        self.current = current


@dataclass(frozen=True)
class PolicyVersion:
    """A saved version of the policy."""

    version: int
    policy: Policy
    yaml: str
    based_on: int | None
    changes: list[dict[str, Any]]
    note: str | None
    created_by: int | None
    created_by_name: str | None
    created_at: datetime
    branch_id: int | None = None  # None: the chain's


_COLUMNS = ("v.version, v.policy, v.yaml, v.based_on, v.changes, v.note, v.created_by, s.name AS created_by_name,"
            " v.created_at, v.branch_id FROM policy_versions v LEFT JOIN staff s ON s.id = v.created_by")


# A branch's newest version of its own, else the chain's newest ($1 NULL: the chain's).
_NEWEST = (f"SELECT {_COLUMNS} WHERE v.branch_id IS NULL OR v.branch_id = $1"
           " ORDER BY v.branch_id IS NULL, v.version DESC LIMIT 1")


def _row(r: asyncpg.Record) -> PolicyVersion:
    return PolicyVersion(version=r["version"], policy=Policy.model_validate(r["policy"]), yaml=r["yaml"],
                         based_on=r["based_on"], changes=list(r["changes"] or []), note=r["note"],
                         created_by=r["created_by"], created_by_name=r["created_by_name"], created_at=r["created_at"],
                         branch_id=r["branch_id"])


class PolicyVersions:
    """Reading and saving versions of the policy."""

    def __init__(self, conn: asyncpg.Pool | asyncpg.Connection) -> None:
        self._conn = conn

    async def newest(self, branch_id: int | None = None) -> PolicyVersion | None:
        """The version new cases (of `branch_id`: its own newest, else the chain's) start with; None: no
        version saved yet, the policy file is in force."""
        r = await self._conn.fetchrow(_NEWEST, branch_id)
        return _row(r) if r else None

    async def get(self, version: int) -> PolicyVersion | None:
        """One version."""
        r = await self._conn.fetchrow(f"SELECT {_COLUMNS} WHERE v.version = $1", version)
        return _row(r) if r else None

    async def history(self, limit: int = 50, *, branch_id: int | None = None) -> list[PolicyVersion]:
        """The newest versions of the chain's (or of one branch's own) first."""
        return [_row(r) for r in await self._conn.fetch(
            f"SELECT {_COLUMNS} WHERE v.branch_id IS NOT DISTINCT FROM $2 ORDER BY v.version DESC LIMIT $1",
            limit, branch_id)]

    async def save(self, *, policy: Policy, yaml: str, based_on: int | None, changes: list[dict[str, Any]],
                   note: str | None, created_by: int | None, branch_id: int | None = None) -> int:
        """A new version (of the chain, or of `branch_id`) after `based_on`, the version in force for it when
        the edit began (PolicyChanged when another came into force meanwhile); its number."""
        async def insert(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                # One saver at a time: the newest version is read and extended under the table's lock.
                await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
                in_force = await conn.fetchval(f"SELECT version FROM ({_NEWEST}) n", branch_id)
                if in_force != based_on:
                    raise PolicyChanged(in_force)
                # Numbers are the chain's: one sequence for every branch's versions.
                version = (await conn.fetchval("SELECT coalesce(max(version), 0) FROM policy_versions")) + 1
                await conn.execute(
                    "INSERT INTO policy_versions (version, policy, yaml, based_on, changes, note, created_by,"
                    " branch_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    version, policy.model_dump(mode="json"), yaml, based_on, changes, note, created_by, branch_id)
                return version

        if isinstance(self._conn, asyncpg.Pool):
            async with self._conn.acquire() as conn:
                return await insert(conn)
        return await insert(self._conn)
