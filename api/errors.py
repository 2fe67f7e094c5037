"""Errors as the API answers them: JSON ``{code, message, ...}`` with a stable code, never a stack trace.

Every failure the API can answer goes through :class:`ApiError`; the exception handlers below turn
FastAPI's and Starlette's own errors (validation, unknown route, wrong method) into the same shape.
Workflow update rejections are mapped in exactly one place: :func:`workflow_rejection`.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.exceptions import ApplicationError

log = logging.getLogger("intake.api")

RETRY_AFTER_SECONDS = 5


class ErrorBody(BaseModel):
    """Every error answer: a stable machine code and a human message (Chinese first)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"code": "step_not_open", "message": "该步骤当前未开放：经理回访"}]}
    )

    code: str = Field(description="稳定的错误代码，供程序判断，例如 step_not_open、not_your_case")
    message: str = Field(description="给人看的说明")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="invalid_payload：逐项列出不合格的字段（loc, msg, type）"
    )
    case_id: int | None = Field(default=None, description="duplicate_open_case：已存在的未结案案例编号")
    details: dict[str, Any] | None = Field(default=None, description="补充信息")


class BodyTooLarge(ValueError):
    """A streamed request body (no Content-Length) passed its limit: raised from the app's receive."""


class ApiError(Exception):
    """An answer other than success: HTTP status, stable code, message and optional extra fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return {"code": self.code, "message": self.message, **self.extra}


def unavailable(code: str, message: str) -> ApiError:
    """503 with Retry-After: Temporal or the database did not answer in time."""
    return ApiError(503, code, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def not_found_case(case_id: int) -> ApiError:
    """404 for a case number that does not exist."""
    return ApiError(404, "case_not_found", f"没有编号为 {case_id} 的案例")


# --- workflow update rejections: the one mapping ------------------------------------------------

# ApplicationError.type raised by the workflow's update validators -> HTTP status.
WORKFLOW_ERROR_STATUS: dict[str, int] = {
    "step_not_open": 409,
    "case_closed": 409,
    "wrong_role": 403,
    "not_your_case": 403,
    "invalid_payload": 422,
    "time_in_past": 422,
    "reason_required": 422,
    "invalid_assignee": 422,
    "no_meeting": 409,
    "same_branch": 409,
}


def workflow_rejection(cause: BaseException | None) -> ApiError:
    """Turn the cause of a WorkflowUpdateFailedError into the API's answer (409/403/422)."""
    if isinstance(cause, ApplicationError) and cause.type in WORKFLOW_ERROR_STATUS:
        extra: dict[str, Any] = {}
        if cause.details:
            first = cause.details[0]
            extra["details"] = first if isinstance(first, dict) else {"details": list(cause.details)}
        return ApiError(WORKFLOW_ERROR_STATUS[cause.type], cause.type, cause.message, **extra)
    # A rejection the API does not know by name still changed nothing: answer 409 with its text.
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or "")
    kind = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
    log.warning("unmapped workflow rejection %s: %s", kind, message)
    return ApiError(409, "update_rejected", message or "流程拒绝了该操作", details={"type": kind})


# --- OpenAPI: documented error answers ----------------------------------------------------------


Responses = dict[int | str, dict[str, Any]]


def _resp(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


R401: Responses = {401: _resp("unauthenticated / invalid_token：缺少或无效的 Bearer 令牌")}
R403: Responses = {403: _resp("wrong_role：角色无权操作；not_your_case：不是你的案例")}
R404: Responses = {404: _resp("case_not_found：没有该案例")}
R409: Responses = {409: _resp("step_not_open / case_closed / no_meeting / duplicate_open_case / idempotency_in_progress")}
R422: Responses = {422: _resp(
    "invalid_payload：字段不合格（类型、长度、取值、手机号 1[3-9]XXXXXXXXX、ISO 8601 时间、1900–2200 年、未知字段）；"
    "以及结构无法表达的规则：time_in_past（时间须在将来）、reason_required（流失或未按首位推荐须写原因）、"
    "invalid_assignee（人员须存在、角色相符且在岗）、scenario_source_mismatch（情况与来源不符）、"
    "idempotency_key_reused（同一 Idempotency-Key 用于不同请求）"
)}
R422_PERIOD: Responses = {422: _resp(
    "invalid_payload：参数不合格（ISO 8601 时间；数字不是时间）；invalid_period：起须早于止，区间最长 400 天"
)}
R422_DATE: Responses = {422: _resp(
    "invalid_payload：参数不合格（日期须为 YYYY-MM-DD）；invalid_date：日期须在今天及之前 400 天内"
)}
R503: Responses = {
    503: _resp("temporal_unavailable / temporal_timeout / database_unavailable / request_timeout：稍后重试（见 Retry-After）")
}
R404_BRANCH: Responses = {404: _resp("branch_not_found：没有该分公司")}
R409_BRANCH: Responses = {409: _resp("branch_code_taken：代码已被使用；branch_not_empty：还有在职员工或未结案客户，或是总店")}
R422_BRANCH: Responses = {422: _resp(
    "invalid_payload：字段不合格；invalid_branch_code：代码格式不对；invalid_sms_template：模板名或模板编号不对"
)}


def responses(*parts: Responses) -> Responses:
    """Merge documented error answers for a route's ``responses=``."""
    out: Responses = {}
    for p in parts:
        out.update(p)
    return out


# --- exception handlers -------------------------------------------------------------------------

# (FastAPI's 400, a body it cannot parse, is answered 422 invalid_payload: see _http_error.)
_STATUS_CODES = {
    401: ("unauthenticated", "需要登录（Authorization: Bearer <令牌>）"),
    403: ("forbidden", "无权访问"),
    404: ("not_found", "没有这个地址"),
    405: ("method_not_allowed", "该地址不支持此方法"),
    406: ("not_acceptable", "无法提供所要求的格式"),
    413: ("payload_too_large", "请求体过大"),
    415: ("unsupported_media_type", "请求体必须是 JSON（Content-Type: application/json）"),
    422: ("invalid_payload", "请求内容不合格"),
}


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=headers)


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.body(), exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's only 400 is a body it cannot parse (not UTF-8, broken multipart): bad input, 422.
        return _json(422, {"code": "invalid_payload", "message": "请求体无法解析：须为 UTF-8 编码的 JSON", "errors": []})
    code, default_message = _STATUS_CODES.get(exc.status_code, (f"http_{exc.status_code}", "请求失败"))
    detail = exc.detail if isinstance(exc.detail, str) else None
    message = default_message if not detail or detail in ("Not Found", "Method Not Allowed") else detail
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code >= 500:
        log.error("HTTP %s: %s", exc.status_code, exc.detail)
        return _json(exc.status_code, {"code": "internal_error", "message": "服务器内部错误"}, headers)
    return _json(exc.status_code, {"code": code, "message": message}, headers)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in errors:
        item: dict[str, Any] = {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        # `input` and `ctx` may hold anything (bytes, exceptions); keep them only as safe text.
        if "input" in e and isinstance(e["input"], str | int | float | bool | None):
            item["input"] = e["input"]
        out.append(item)
    return out


# A path id that cannot name anything (not a number, 0, beyond the id range) is answered like an
# unknown one (SPEC §12): the caller learns nothing more from a malformed id than from a missing one.
_PATH_IDS = {
    "case_id": ("case_not_found", "没有编号为 {} 的案例"),
    "staff_id": ("staff_not_found", "没有编号为 {} 的员工"),
    "branch_id": ("branch_not_found", "没有编号为 {} 的分公司"),
}


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = exc.errors()
    for e in raw:
        loc = tuple(e.get("loc", ()))
        if len(loc) >= 2 and loc[0] == "path" and loc[1] in _PATH_IDS:
            code, text = _PATH_IDS[str(loc[1])]
            shown = str(e.get("input", ""))[:40]
            return _json(404, {"code": code, "message": text.format(shown)})
    errors = _clean_errors(raw)
    first = errors[0] if errors else None
    where = ".".join(str(p) for p in first["loc"][1:]) if first else ""
    message = "请求内容不合格"
    if first:
        message += f"：{where} {first['msg']}" if where else f"：{first['msg']}"
    return _json(422, {"code": "invalid_payload", "message": message, "errors": errors})


async def _database_error(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %r", exc)
    err = unavailable("database_unavailable", "数据库暂时无法访问，请稍后重试")
    return _json(err.status, err.body(), err.headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return _json(500, {"code": "internal_error", "message": "服务器内部错误，已记录"})


# Errors that mean "PostgreSQL cannot answer now" (down, restarting, overloaded, too slow).
DATABASE_DOWN: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.AdminShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def install(app: FastAPI) -> None:
    """Register the handlers that keep every error answer in the ``{code, message}`` shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type in DATABASE_DOWN:
        app.add_exception_handler(exc_type, _database_error)
    app.add_exception_handler(Exception, _unexpected)
