"""FastAPI app factory: the staff HTTP API of SPEC §7 over the intake workflow.

``create_app(settings)`` is all the dev stack needs: the lifespan connects PostgreSQL and Temporal
(and the API still starts, answering 503, when they are not there yet). Tests inject their own
client, pool and a fast policy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from activities.storage import RecordingStore
from api import console, errors
from api.bounds import abandon
from api.deps import Resources
from api.routers import actions, health, intakes, me, recordings, reports
from config import Settings, get_settings
from domain.policy import Policy

log = logging.getLogger("intake.api")

DESCRIPTION = """
客户接待流程（家装公司设计部）的员工接口。每位员工使用自己的令牌：`Authorization: Bearer <令牌>`。

* **建档**：`POST /intakes`（同一手机号同时只能有一个未结案案例；支持 `Idempotency-Key`）。
* **办理步骤**：`POST /intakes/{id}/steps/{step}`，返回案例的新状态。
* **查询**：案例列表、详情、发给客户的短信、我的待办、时效报表。

错误一律为 JSON：`{"code": "...", "message": "..."}`。常见代码：`unauthenticated`、`invalid_token`（401），
`wrong_role`、`not_your_case`（403），`case_not_found`（404），`step_not_open`、`case_closed`、
`duplicate_open_case`（409），`invalid_payload`、`time_in_past`、`reason_required`、`invalid_assignee`、
`scenario_source_mismatch`（422），`temporal_unavailable`、`temporal_timeout`、`database_unavailable`、
`request_timeout`（503，带 `Retry-After`）。每个请求都在 `INTAKE_REQUEST_TIMEOUT_SECONDS`（另加至多 1 秒）内应答。
失败的请求不改变任何数据；超时（`temporal_timeout`、`request_timeout`）时用同一个 `Idempotency-Key` 重试是安全的。

没有时区的时间按北京时间（Asia/Shanghai）理解。

数据来源：列表、待办、报表和案例详情读取 PostgreSQL 中的投影（流程每次变化后同步，通常在一秒内）；
`GET /intakes/{id}?fresh=true` 直接向流程实时查询。办理类接口返回流程给出的最新状态。
"""

TAGS = [
    {"name": "intakes", "description": "案例：建档、列表、详情、短信、推荐设计师"},
    {"name": "actions", "description": "办理：完成步骤、改期、更换人员、结案、备注"},
    {"name": "me", "description": "我的待办"},
    {"name": "reports", "description": "报表（经理、总经理）"},
    {"name": "health", "description": "健康检查"},
]

# Request bodies are small forms; anything bigger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
# A recording upload: the file, the multipart framing around it.
UPLOAD_OVERHEAD_BYTES = 64 * 1024
_UPLOAD_PATH = re.compile(r"^/(?:intakes|console/cases)/[^/]+/recordings/?$")


def is_upload(scope: Scope) -> bool:
    """A recording upload (POST /intakes/{id}/recordings, or the console's case page): large body, slow networks."""
    return scope.get("method") == "POST" and bool(_UPLOAD_PATH.match(scope.get("path", "")))


class BodyLimit:
    """Refuse request bodies over `max_bytes` with a JSON 413 (Starlette's own limit answers in plain text)."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Recording uploads (and only they) may be as large as the recording limit plus the form around it.
        self.upload_bytes = upload_bytes if upload_bytes is not None else max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if is_upload(scope) else self.max_bytes
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            message = f"请求体过大（上限 {limit // 1024} KB）"
            response: Response = JSONResponse(status_code=413, content={"code": "payload_too_large", "message": message})
            if is_upload(scope) and scope["path"].startswith("/console/"):  # staff read it on the case page
                response = HTMLResponse(
                    f'<!doctype html><meta charset="utf-8"><p role="alert">文件过大（上限约 {limit // (1024 * 1024)} MB），'
                    '请返回上一页选择较小的文件。</p>', status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # A streamed body without Content-Length: FastAPI answers 400 bad_request (JSON).
                    raise ValueError("request body too large")
            return message

        await self.app(scope, limited, send)


# The last-resort answer comes this long after the request bound: calls bounded on their own answer
# first, with their own code; this one only catches what still overruns (a hung clean-up, a sum of
# waits), and still within the bound + 1 s that SPEC §10 allows.
REQUEST_TIMEOUT_MARGIN_SECONDS = 0.75


class RequestDeadline:
    """Answer 503 ``request_timeout`` when a request overruns `limit` seconds before its answer began.

    The app runs in its own task; past the limit that task is cancelled and abandoned (not awaited:
    its clean-up may be waiting on a hung server), and whatever it still sends is dropped. An answer
    that has begun (a stream, a large body) is never cut: the bound is on the start of the answer.
    """

    def __init__(self, app: ASGIApp, limit: float, upload_limit: float | None = None) -> None:
        self.app = app
        self.limit = limit
        # An upload's body arrives as fast as the phone can send it: its own, longer bound.
        self.upload_limit = upload_limit if upload_limit is not None else limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = given_up = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if given_up:
                return  # the 503 was sent instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            await asyncio.wait({task}, timeout=self.upload_limit if is_upload(scope) else self.limit)
        except asyncio.CancelledError:
            abandon(task)
            raise
        if task.done() or started:
            await task
            return
        given_up = True
        abandon(task)
        log.warning("%s %s: no answer within %.2f s, answered 503", scope.get("method"), scope.get("path"), self.limit)
        err = errors.unavailable("request_timeout", "请求未能在规定时间内完成，请稍后重试")
        await JSONResponse(status_code=err.status, content=err.body(), headers=err.headers)(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    pool: asyncpg.Pool | None = None,
    policy: Policy | None = None,
    recording_store: RecordingStore | None = None,
) -> FastAPI:
    """Build the app; the Temporal client and pool are injected (tests) or created once in the lifespan."""
    settings = settings or get_settings()
    resources = Resources(
        settings, temporal_client=temporal_client, pool=pool, policy=policy, recording_store=recording_store
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await resources.warm_up()
        try:
            yield
        finally:
            await resources.aclose()

    app = FastAPI(
        title="客户接待 Client intake",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # /docs is served from vendored Swagger UI files (api.console.install); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        BodyLimit, max_bytes=MAX_BODY_BYTES, upload_bytes=settings.recordings_max_bytes + UPLOAD_OVERHEAD_BYTES
    )
    # Outermost but for Starlette's error middleware: bounds everything below, the body limit included.
    app.add_middleware(
        RequestDeadline,
        limit=settings.request_timeout_seconds + REQUEST_TIMEOUT_MARGIN_SECONDS,
        upload_limit=settings.recordings_upload_timeout_seconds,
    )
    # Set here, not in the lifespan: an ASGI transport without lifespan (tests) still finds them.
    app.state.resources = resources
    errors.install(app)
    app.include_router(health.router)
    app.include_router(intakes.router)
    app.include_router(actions.router)
    app.include_router(me.router)
    app.include_router(reports.router)
    app.include_router(recordings.router)
    console.install(app)
    return app
