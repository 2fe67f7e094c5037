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

from api import console, errors
from api.bounds import abandon
from api.deps import Resources
from api.routers import actions, audit, codec, health, insight, intakes, me, recordings, reports, staff
from api.routers import branches as branch_routes
from api.telemetry import DB_GAUGES, REGISTRY, RequestTelemetry, metrics_text, route_template
from codec import LocalCodecCredential
from config import Settings, get_settings
from domain.policy import Policy
from store.recordings import RecordingStore

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
    {"name": "audit", "description": "审计：客户手机号查看记录（经理、总经理）"},
    {"name": "staff", "description": "员工管理（管理员）：资料、在岗/休假/离职、令牌吊销"},
    {"name": "insight", "description": "考核与习惯：个人流程执行、习惯与签单（本人、经理、总经理）"},
    {"name": "codec", "description": "Temporal UI 编解码服务：解密流程载荷（经理、总经理、管理员）"},
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
        outgoing = send
        if is_upload(scope):
            async def outgoing(message: Message) -> None:
                # A refused upload (no credentials, not this person's case, too large) ends its connection:
                # the client stops sending the body it has not sent yet.
                if message["type"] == "http.response.start" and message["status"] >= 400:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # A streamed body without Content-Length: 413 for a recording (read_upload), else
                    # FastAPI's answer to an unreadable body.
                    raise errors.BodyTooLarge("request body too large")
            return message

        await self.app(scope, limited, outgoing)


# A codec credential in the path (a personal codec URL, the dev stack's local one) never reaches a log.
_CODEC_CREDENTIAL_PATH = re.compile(r"^/codec/(k|local)/[^/]+")


def loggable_path(path: str) -> str:
    """The request path as it may be logged: a codec credential in it is replaced by ``***``."""
    return _CODEC_CREDENTIAL_PATH.sub(r"/codec/\1/***", path)


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
        # The route template, never the raw path: a path can carry a credential (/codec/k/…) or an id.
        log.warning("%s %s: no answer within %.2f s, answered 503", scope.get("method"), route_template(scope),
                    self.limit)
        err = errors.unavailable("request_timeout", "请求未能在规定时间内完成，请稍后重试")
        await JSONResponse(status_code=err.status, content=err.body(), headers=err.headers)(scope, receive, send)


class AllowedMethods:
    """OPTIONS on a documented path answers 204 with the methods its OpenAPI document lists; a method
    it does not list answers 405 with the same full ``Allow`` (Starlette's own 405 names only the
    first matching route's methods). Paths not in the document go on to the app unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _table(self, root: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        if self._paths is None:
            table = []
            for path, ops in root.openapi().get("paths", {}).items():
                rx = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
                methods = frozenset(m.upper() for m in ops if m in ("get", "post", "put", "patch", "delete"))
                table.append((rx, methods))
            # Literal paths before templated ones: /intakes/{case_id}/steps/callback is not {step}.
            self._paths = sorted(table, key=lambda t: t[0].pattern.count("[^/]+"))
        return self._paths

    def _allow(self, scope: Scope) -> str | None:
        root = scope.get("app")
        if not isinstance(root, FastAPI):
            return None
        path = scope.get("path", "")
        documented = next((m for rx, m in self._table(root) if rx.match(path)), None)
        return ", ".join(sorted(documented | {"OPTIONS"})) if documented else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        if scope["method"] == "OPTIONS" and not any(k == b"access-control-request-method" for k, _ in headers):
            allow = self._allow(scope)
            if allow:
                await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # Any other request goes to the app as is (no table lookup on the hot path); only a 405 it
        # answers is replaced by one naming every method of the path.
        replaced = False

        async def send_405_with_allow(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self._allow(scope)
                if allow:
                    replaced = True
                    await JSONResponse(
                        status_code=405,
                        content={"code": "method_not_allowed", "message": f"该地址不支持此方法（可用：{allow}）"},
                        headers={"Allow": allow},
                    )(scope, receive, send)
                    return
            if replaced:
                return  # the app's own 405 body
            await send(message)

        await self.app(scope, receive, send_405_with_allow)


class CodecCors:
    """CORS for the Temporal UI's origin on /codec (credentials allowed: the UI may send them)."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        from starlette.middleware.cors import CORSMiddleware

        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith("/codec/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def add_case_links(spec: dict[str, object]) -> dict[str, object]:
    """OpenAPI links from the case POST /intakes answers to every /intakes/{case_id}/… operation, so a
    client (and schemathesis's stateful phase) can follow a created case through its routes."""
    paths = spec.get("paths")
    if not isinstance(paths, dict):
        return spec
    links: dict[str, object] = {}
    for path, ops in paths.items():
        if not str(path).startswith("/intakes/{case_id}"):
            continue
        for method, op in ops.items():
            if isinstance(op, dict) and op.get("operationId"):
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {"case_id": "$response.body#/id"},
                    "description": f"{method.upper()} {path} of the case just created",
                }
    created = paths.get("/intakes", {}).get("post", {}).get("responses", {}).get("201")
    if isinstance(created, dict) and links:
        created["links"] = links
    return spec


def create_app(
    settings: Settings | None = None,
    *,
    temporal_client: Client | None = None,
    pool: asyncpg.Pool | None = None,
    policy: Policy | None = None,
    recording_store: RecordingStore | None = None,
    local_codec: LocalCodecCredential | None = None,
) -> FastAPI:
    """Build the app; the Temporal client and pool are injected (tests) or created once in the lifespan.

    `local_codec`: the dev stack's decode-only credential for its own Temporal UI (never in production).
    """
    settings = settings or get_settings()
    resources = Resources(
        settings, temporal_client=temporal_client, pool=pool, policy=policy, recording_store=recording_store
    )

    DB_GAUGES.max_age = settings.metrics_cache_seconds

    async def refresh_db_gauges() -> None:
        try:
            pool = await resources.pool()
        except errors.ApiError:
            DB_GAUGES.up = 0
            return
        await DB_GAUGES.refresh(pool, resources.timeout)

    async def refresh_forever() -> None:
        # With a metrics port of its own, the scrape is answered from another thread: keep the
        # database figures fresh from here instead.
        while True:
            await refresh_db_gauges()
            await asyncio.sleep(max(settings.metrics_cache_seconds, 1.0))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await resources.warm_up()
        refresher: asyncio.Task[None] | None = None
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=REGISTRY)
            refresher = asyncio.create_task(refresh_forever())
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
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
    # The Temporal UI calls the codec endpoint from its own origin: CORS there, and only there.
    origins = settings.codec_cors_origins or [
        f"http://127.0.0.1:{settings.temporal_ui_port}",
        f"http://localhost:{settings.temporal_ui_port}",
    ]
    app.add_middleware(AllowedMethods)
    app.add_middleware(CodecCors, origins=origins)
    # Outermost: every answer (a 503 of the deadline too) carries the request id and is counted.
    app.add_middleware(RequestTelemetry)
    # Set here, not in the lifespan: an ASGI transport without lifespan (tests) still finds them.
    app.state.resources = resources
    app.state.local_codec = local_codec
    errors.install(app)
    app.include_router(health.router)
    app.include_router(intakes.router)
    app.include_router(actions.router)
    app.include_router(me.router)
    app.include_router(reports.router)
    app.include_router(recordings.router)
    app.include_router(audit.router)
    app.include_router(staff.router)
    app.include_router(codec.router)
    app.include_router(insight.router)
    app.include_router(branch_routes.router)
    console.install(app)

    plain_openapi = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            app.openapi_schema = add_case_links(plain_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    if not settings.metrics_port:

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            """Prometheus metrics: HTTP requests, outbox, escalations, overdue steps, reconciler repairs."""
            await refresh_db_gauges()
            return Response(metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
