"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter

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

    async def database() -> None:
        try:
            pool = await res.pool()
            await asyncio.wait_for(pool.fetchval("SELECT 1"), res.timeout)
            checks["database"] = "ok"
        except ApiError as exc:
            checks["database"] = exc.code
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"

    async def temporal() -> None:
        try:
            client = await res.client()
            ok = await asyncio.wait_for(
                client.service_client.check_health(timeout=timedelta(seconds=res.timeout)), res.timeout + 0.5
            )
            checks["temporal"] = "ok" if ok else "not_serving"
        except ApiError as exc:
            checks["temporal"] = exc.code
        except Exception as exc:
            checks["temporal"] = f"error: {type(exc).__name__}"

    await asyncio.gather(database(), temporal())
    if all(v == "ok" for v in checks.values()):
        return Health(status="ready", checks=checks)
    err = unavailable("not_ready", "服务尚未就绪：" + "，".join(f"{k}={v}" for k, v in checks.items()))
    err.extra["details"] = checks
    raise err
