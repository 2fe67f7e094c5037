"""The policy's versions (SPEC §16, migration 021): each saved with who, when, what changed and why."""

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


_COLUMNS = ("v.version, v.policy, v.yaml, v.based_on, v.changes, v.note, v.created_by, s.name AS created_by_name,"
            " v.created_at FROM policy_versions v LEFT JOIN staff s ON s.id = v.created_by")


def _row(r: asyncpg.Record) -> PolicyVersion:
    return PolicyVersion(version=r["version"], policy=Policy.model_validate(r["policy"]), yaml=r["yaml"],
                         based_on=r["based_on"], changes=list(r["changes"] or []), note=r["note"],
                         created_by=r["created_by"], created_by_name=r["created_by_name"], created_at=r["created_at"])


class PolicyVersions:
    """Reading and saving versions of the policy."""

    def __init__(self, conn: asyncpg.Pool | asyncpg.Connection) -> None:
        self._conn = conn

    async def newest(self) -> PolicyVersion | None:
        """The version new cases start with (None: no version saved yet, the policy file is in force)."""
        r = await self._conn.fetchrow(f"SELECT {_COLUMNS} ORDER BY v.version DESC LIMIT 1")
        return _row(r) if r else None

    async def get(self, version: int) -> PolicyVersion | None:
        """One version."""
        r = await self._conn.fetchrow(f"SELECT {_COLUMNS} WHERE v.version = $1", version)
        return _row(r) if r else None

    async def history(self, limit: int = 50) -> list[PolicyVersion]:
        """The newest versions first."""
        return [_row(r) for r in await self._conn.fetch(f"SELECT {_COLUMNS} ORDER BY v.version DESC LIMIT $1", limit)]

    async def save(self, *, policy: Policy, yaml: str, based_on: int | None, changes: list[dict[str, Any]],
                   note: str | None, created_by: int | None) -> int:
        """A new version after `based_on` (PolicyChanged when another was saved meanwhile); its number."""
        async def insert(conn: asyncpg.Connection) -> int:
            async with conn.transaction():
                # One saver at a time: the newest version is read and extended under the table's lock.
                await conn.execute("LOCK TABLE policy_versions IN SHARE ROW EXCLUSIVE MODE")
                newest = await conn.fetchval("SELECT max(version) FROM policy_versions")
                if newest != based_on:
                    raise PolicyChanged(newest)
                version = (newest or 0) + 1
                await conn.execute(
                    "INSERT INTO policy_versions (version, policy, yaml, based_on, changes, note, created_by)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    version, policy.model_dump(mode="json"), yaml, based_on, changes, note, created_by)
                return version

        if isinstance(self._conn, asyncpg.Pool):
            async with self._conn.acquire() as conn:
                return await insert(conn)
        return await insert(self._conn)
