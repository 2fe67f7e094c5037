"""The caller's own work."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import CurrentStaff, ResourcesDep, bounded
from api.errors import R401, R422, R503, responses
from api.pagination import MAX_OFFSET
from api.schemas import TaskList
from api.services.access import contact_map, holding_for, viewer
from api.views import task_item
from store import queries

router = APIRouter(prefix="/me", tags=["me"])


@router.get("/tasks", response_model=TaskList, summary="我的待办", responses=responses(R401, R422, R503))
async def my_tasks(
    user: CurrentStaff,
    res: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=200, description="每页条数")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="跳过条数")] = 0,
) -> TaskList:
    """The caller's open steps over all open cases (theirs, unowned ones of their role, and those of a manager
    they stand in for as deputy while the manager is away), soonest due first."""
    pool = await res.pool()
    holding = await holding_for(res, user)
    rows, total = await bounded(
        res, queries.my_tasks(pool, viewer=viewer(user), role=user.role.value, limit=limit, offset=offset,
                              holding_for=holding)
    )
    now = datetime.now(UTC)
    allowed = await contact_map(res, user, rows, "GET /me/tasks")
    items = [task_item(r, now, contact=ok) for r, ok in zip(rows, allowed, strict=True)]
    return TaskList(items=items, total=total, limit=limit, offset=offset)
