"""The API's half of writing a case: what an update decided goes to PostgreSQL before staff get a 200.

The same :class:`ProjectionWriter` as the workflow's activity (idempotent, version-guarded), so the
two writers can race or repeat each other harmlessly. When the database cannot take the write now,
the action still answers (the decision is durable in Temporal) and the workflow writes it within
`projection_grace`.
"""

from __future__ import annotations

import logging

import asyncpg

import request_context as context
from config import Settings
from domain.models import CaseChange
from store.outbox import build_writer
from store.projection import ProjectionWriter, Written

log = logging.getLogger("intake.api")


_writers: dict[int, tuple[Settings, ProjectionWriter]] = {}


def projection_writer(settings: Settings) -> ProjectionWriter:
    """The writer for this configuration (company name and providers as the outbox records them)."""
    hit = _writers.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    writer = ProjectionWriter(build_writer(settings))
    _writers[id(settings)] = (settings, writer)
    return writer


async def write_change(
    conn: asyncpg.Connection, settings: Settings, change: CaseChange, *, confirm: bool = True
) -> Written:
    """Apply one change on `conn` in one statement (atomic by itself, store/projection.py); returns the
    projection's full state. Serving a request, it also takes what the request put in
    ``request_context`` for this case (the case row read before the update, the answer's timeline and
    assignments, a full-phone read to record): still one statement."""
    info = context.current.get()
    extras = info.writing.get(change.case_id, {}) if info is not None else {}
    return await projection_writer(settings).write(conn, change, confirm=confirm, **extras)
