"""Recordings of first meetings (seed 二h): the manager uploads the recorder's audio to the case; the
case's staff, the manager and the director play it back from the case (HTTP range requests, so a
phone's player can seek).

The file goes to the recording store (a local directory or an S3-compatible bucket); its row in
PostgreSQL says which case it belongs to; only its number, type and size go into the workflow, which
puts it on the case's timeline. Its type is decided by its first bytes, never by its name.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, File, Header, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from activities.storage import RecordingMissing
from api.deps import CurrentStaff, CurrentUser, Resources, ResourcesDep, bounded, require_roles
from api.errors import R401, R403, R404, R409, R422, R503, ApiError, not_found_case, responses
from api.routers.intakes import CaseId
from api.schemas import MAX_ID
from api.temporal import execute_update, intake_workflow
from api.writes import write_change
from domain.audio import AUDIO_TYPES, SNIFF_BYTES, sniff_audio
from domain.enums import Role
from domain.models import AttachRecording, CaseChange

log = logging.getLogger("intake.api")

router = APIRouter(prefix="/intakes", tags=["recordings"])

Manager = Annotated[CurrentUser, Depends(require_roles(Role.manager))]
# Who may listen besides the case's own staff.
LISTENERS = frozenset({Role.manager, Role.director})
# One range answer at most this large; a player asks for the next one (and a whole-file GET streams).
CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RecordingOut(BaseModel):
    """One recording of the case."""

    id: int = Field(description="录音编号")
    case_id: int
    filename: str = Field(description="上传时的文件名")
    content_type: str = Field(description="按文件内容识别的类型：audio/mpeg、audio/mp4、audio/wav、audio/amr")
    size: int = Field(description="字节数")
    uploaded_by: int = Field(description="上传人（员工ID）")
    uploaded_at: datetime
    url: str = Field(description="播放地址（支持 Range，可拖动进度）")


class RecordingList(BaseModel):
    """The recordings of a case, oldest first."""

    case_id: int
    items: list[RecordingOut]


def _out(r: asyncpg.Record) -> RecordingOut:
    return RecordingOut(
        id=r["id"], case_id=r["case_id"], filename=r["filename"], content_type=r["content_type"], size=r["size"],
        uploaded_by=r["uploaded_by"], uploaded_at=r["uploaded_at"],
        url=f"/intakes/{r['case_id']}/recordings/{r['id']}",
    )


async def _case_people(res: Resources, case_id: int) -> asyncpg.Record:
    pool = await res.pool()
    row = await bounded(
        res, pool.fetchrow("SELECT id, status, designer_id, assistant_id, received_by FROM cases WHERE id = $1", case_id)
    )
    if row is None:
        raise not_found_case(case_id)
    return row


def _may_listen(user: CurrentUser, case: asyncpg.Record) -> None:
    """Only the case's staff (designer, assistant, who received the client), the manager and the director."""
    if user.role in LISTENERS:
        return
    if user.id in {case["designer_id"], case["assistant_id"], case["received_by"]}:
        return
    raise ApiError(403, "not_your_case", "只有本案人员、设计部经理和总经理可以听取录音")


@router.post(
    "/{case_id}/recordings",
    status_code=201,
    response_model=RecordingOut,
    summary="上传首次见面录音（经理）",
    responses=responses(R401, R403, R404, R409, R422, R503)
    | {413: {"description": "recording_too_large：超过大小上限"}, 415: {"description": "unsupported_audio：不是 mp3/m4a/wav/amr"}},
)
async def upload_recording(
    case_id: CaseId,
    user: Manager,
    res: ResourcesDep,
    file: Annotated[UploadFile, File(description="录音文件：mp3、m4a、wav 或 amr（按内容识别）")],
) -> Any:
    """Attach the recorder's audio (mp3/m4a/wav/amr, by content) to the case; managers only; 201 with it."""
    limit = res.settings.recordings_max_bytes
    head = await file.read(SNIFF_BYTES)
    content_type = sniff_audio(head)
    if content_type is None:
        raise ApiError(415, "unsupported_audio", "文件内容不是 mp3、m4a、wav 或 amr 录音", details={"field": "file"})
    # Size and checksum over the spooled upload, without holding it in memory.
    digest, size = hashlib.sha256(head), len(head)
    while chunk := await file.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "recording_too_large", f"录音超过大小上限 {limit // (1024 * 1024)} MB")
        digest.update(chunk)
    case = await _case_people(res, case_id)
    if case["status"] != "open":
        raise ApiError(409, "case_closed", "案件不在进行中，不能上传录音")
    store = res.recordings()
    key = f"case-{case_id}/{uuid.uuid4().hex}{AUDIO_TYPES[content_type]}"
    await file.seek(0)
    try:
        await store.put(key, file.file, content_type)
    except Exception as exc:
        log.warning("case %s: recording not stored: %r", case_id, exc)
        raise ApiError(503, "storage_unavailable", "录音存储暂时不可用，请稍后重试", headers={"Retry-After": "5"}) from exc
    pool = await res.pool()
    filename = (file.filename or "recording")[-200:]
    try:
        row = await bounded(res, pool.fetchrow(
            "INSERT INTO recordings (case_id, storage_key, filename, content_type, size, sha256, uploaded_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            case_id, key, filename, content_type, size, digest.hexdigest(), user.id,
        ))
        assert row is not None
        # The case's timeline shows it (the workflow records the number, type and size only).
        client = await res.client()
        change: CaseChange = await execute_update(
            client, case_id=case_id, update=intake_workflow().attach_recording,
            arg=AttachRecording(actor=user.actor(), recording_id=row["id"], content_type=content_type, size=size),
            timeout=res.timeout,
        )
    except BaseException:
        # Nothing half-done is left: no file without its row, no row the case does not know.
        await store.delete(key)
        await pool.execute("DELETE FROM recordings WHERE storage_key = $1", key)
        raise
    try:
        async with pool.acquire(timeout=res.timeout) as conn:
            await bounded(res, write_change(conn, res.settings, change))
    except Exception as exc:  # noqa: BLE001 - decided and durable; the workflow writes it within its grace
        log.warning("case %s: recording event not written by the API now: %r", case_id, exc)
    return _out(row)


@router.get(
    "/{case_id}/recordings",
    response_model=RecordingList,
    summary="案件录音列表",
    responses=responses(R401, R403, R404, R422, R503),
)
async def list_recordings(case_id: CaseId, user: CurrentStaff, res: ResourcesDep) -> RecordingList:
    """The case's recordings, oldest first; the case's staff, the manager and the director."""
    case = await _case_people(res, case_id)
    _may_listen(user, case)
    pool = await res.pool()
    rows = await bounded(res, pool.fetch("SELECT * FROM recordings WHERE case_id = $1 ORDER BY id", case_id))
    return RecordingList(case_id=case_id, items=[_out(r) for r in rows])


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive of a single `bytes=` range, None for the whole file; ValueError when unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or not (m.group(1) or m.group(2)):
        return None  # a form we do not serve (several ranges, other units): the whole file, as RFC 9110 allows
    first, last = m.group(1), m.group(2)
    if not first:  # the last N bytes
        n = int(last)
        if n == 0:
            raise ValueError
        return max(size - n, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise ValueError
    return start, end


@router.get(
    "/{case_id}/recordings/{recording_id}",
    summary="播放录音（支持 Range）",
    responses=responses(R401, R403, R404, R422, R503)
    | {
        200: {"content": {"audio/mpeg": {}}, "description": "整段录音"},
        206: {"description": "所请求的片段（Content-Range）"},
        416: {"description": "range_not_satisfiable"},
    },
    response_class=Response,
)
async def play_recording(
    case_id: CaseId,
    recording_id: int,
    user: CurrentStaff,
    res: ResourcesDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200, description="例如 bytes=0-1023")] = None,
) -> Response:
    """Play a recording: the whole file (200) or the requested bytes (206), so a phone can seek."""
    case = await _case_people(res, case_id)
    _may_listen(user, case)
    if not 1 <= recording_id <= MAX_ID:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    pool = await res.pool()
    rec = await bounded(res, pool.fetchrow(
        "SELECT * FROM recordings WHERE id = $1 AND case_id = $2", recording_id, case_id
    ))
    if rec is None:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    store = res.recordings()
    size = int(rec["size"])
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600",
               "Content-Disposition": f"inline; filename=\"recording-{rec['id']}{AUDIO_TYPES[rec['content_type']]}\""}
    try:
        wanted = _parse_range(range_header, size)
    except ValueError:
        raise ApiError(416, "range_not_satisfiable", "请求的范围超出录音长度",
                       headers={"Content-Range": f"bytes */{size}"}) from None
    try:
        if wanted is not None:
            start, end = wanted
            end = min(end, start + CHUNK * 8 - 1)  # a bounded answer; the player asks for the rest
            data = await store.read(rec["storage_key"], start, end)
            return Response(data, status_code=206, media_type=rec["content_type"],
                            headers=headers | {"Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"})
        first = await store.read(rec["storage_key"], 0, min(CHUNK, size) - 1)
    except RecordingMissing:
        raise ApiError(404, "recording_not_found", "录音文件已不在存储中") from None

    async def rest() -> AsyncIterator[bytes]:
        yield first
        pos = len(first)
        while pos < size:
            chunk = await store.read(rec["storage_key"], pos, min(pos + CHUNK, size) - 1)
            if not chunk:
                return
            yield chunk
            pos += len(chunk)

    return StreamingResponse(rest(), media_type=rec["content_type"],
                             headers=headers | {"Content-Length": str(size)})
