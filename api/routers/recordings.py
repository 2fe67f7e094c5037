"""Recordings of first meetings (seed 二h): the manager uploads the recorder's audio to the case; the
case's staff, the manager and the director play it back from the case (HTTP range requests, so a
phone's player can seek).

The file goes to the recording store (a local directory or an S3-compatible bucket); its row in
PostgreSQL says which case it belongs to; only its number, type and size go into the workflow, which
puts it on the case's timeline. Its type is decided by its first bytes, never by its name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import services
from api.deps import CurrentStaff, ResourcesDep
from api.errors import R401, R403, R404, R409, R422, R503, responses
from api.services.access import CaseId, visible_case

router = APIRouter(prefix="/intakes", tags=["recordings"])

# The rules (who may upload and listen, the type by content, the size limit, ranges) are in api.services,
# shared with the staff console's case page.


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


@router.post(
    "/{case_id}/recordings",
    dependencies=[Depends(visible_case)],
    status_code=201,
    response_model=RecordingOut,
    summary="上传首次见面录音（经理）",
    responses=responses(R401, R403, R404, R409, R422, R503)
    | {413: {"description": "recording_too_large：超过大小上限"}, 415: {"description": "unsupported_audio：不是 mp3/m4a/wav/amr"}},
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary",
                                "description": "录音文件：mp3、m4a、wav 或 amr（按内容识别）"}}}}}}},
)
async def upload_recording(case_id: CaseId, request: Request, user: CurrentStaff, res: ResourcesDep) -> Any:
    """Attach the recorder's audio (mp3/m4a/wav/amr, by content; multipart field `file`) to the case;
    managers only; 201 with it. Credentials, case and role are judged before the body is read; the size
    limit while it streams."""
    return _out(await services.upload_recording(res, user, case_id, request))


@router.get(
    "/{case_id}/recordings",
    dependencies=[Depends(visible_case)],
    response_model=RecordingList,
    summary="案件录音列表",
    responses=responses(R401, R403, R404, R422, R503),
)
async def list_recordings(case_id: CaseId, user: CurrentStaff, res: ResourcesDep) -> RecordingList:
    """The case's recordings, oldest first; the case's staff, the manager and the director."""
    rows = await services.list_recordings(res, user, case_id)
    return RecordingList(case_id=case_id, items=[_out(r) for r in rows])


@router.get(
    "/{case_id}/recordings/{recording_id}",
    dependencies=[Depends(visible_case)],
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
    return await services.play_recording(res, user, case_id, recording_id, range_header)
