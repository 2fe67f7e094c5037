"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from fastapi import APIRouter

from api.bounds import within
from api.deps import ResourcesDep
from api.errors import ApiError, ErrorBody, unavailable
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="存活检查")
async def healthz() -> Health:
    """Liveness: the process answers (does not touch PostgreSQL or Temporal)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="就绪检查",
    responses={503: {"model": ErrorBody, "description": "not_ready：数据库或流程引擎不可用（见 details）"}},
)
async def readyz(res: ResourcesDep) -> Health:
    """Readiness: PostgreSQL and Temporal both answer within the request time bound."""
    checks: dict[str, str] = {}

    async def database() -> str:
        pool = await res.pool()
        await pool.fetchval("SELECT 1")
        return "ok"

    async def temporal() -> str:
        client = await res.client()
        ok = await client.service_client.check_health(timeout=timedelta(seconds=res.timeout))
        return "ok" if ok else "not_serving"

    async def check(name: str, probe: Callable[[], Awaitable[str]], timeout_code: str) -> None:
        # Each check as a whole (connecting included) within the bound; a hung one is abandoned.
        try:
            checks[name] = await within(probe(), res.timeout)
        except ApiError as exc:
            checks[name] = exc.code
        except TimeoutError:
            checks[name] = timeout_code
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"

    await asyncio.gather(
        check("database", database, "database_unavailable"), check("temporal", temporal, "temporal_timeout")
    )
    if all(v == "ok" for v in checks.values()):
        return Health(status="ready", checks=checks)
    err = unavailable("not_ready", "服务尚未就绪：" + "，".join(f"{k}={v}" for k, v in checks.items()))
    err.extra["details"] = checks
    raise err
