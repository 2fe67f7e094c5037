"""Case read repository for the activities: the client's contact data, read where it lives.

Client personal data (name, phone, gender) never travels through Temporal; the activities that need it
(SMS rendering) read it here, by case id.
"""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from domain.enums import Gender


class ClientContact(BaseModel):
    """What an SMS needs to know about the client of a case."""

    name: str
    gender: Gender
    phone: str


class CaseRepository:
    """Reads of the `cases` projection that activities need."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def client_contact(self, *, case_id: int) -> ClientContact | None:
        """Name, gender and phone of the case's client; None when there is no such case."""
        row = await self._pool.fetchrow(
            "SELECT client_name, client_gender, client_phone FROM cases WHERE id = $1", case_id
        )
        if row is None:
            return None
        return ClientContact(name=row["client_name"], gender=row["client_gender"], phone=row["client_phone"])

    async def exists(self, *, case_id: int) -> bool:
        """Whether the case row exists."""
        return bool(await self._pool.fetchval("SELECT EXISTS (SELECT 1 FROM cases WHERE id = $1)", case_id))
