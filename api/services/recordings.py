"""The recorder's audio of a first meeting (seed 二h): upload to an open case, list, play with Range.

The JSON API (api/routers/recordings.py) and the console's case page call these; who may upload or
listen is domain/permissions.py's answer.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from api.deps import CurrentUser, Resources, bounded
from api.errors import ApiError
from api.schemas import MAX_ID
from api.services.access import actor_on, open_case_for
from api.temporal import execute_update, intake_workflow
from domain import permissions
from domain.audio import AUDIO_TYPES, SNIFF_BYTES, sniff_audio
from domain.models import AttachRecording, CaseChange
from domain.permissions import Action
from store import recordings as repo
from store.recordings import RecordingMissing
from store.writes import write_change

log = logging.getLogger("intake.api")

# One read from the store at most this large; a range answer at most RANGE_CHUNKS of them.
RECORDING_CHUNK = 1024 * 1024
RANGE_CHUNKS = 8
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def may_upload_recording(user: CurrentUser) -> bool:
    """Whether the person may upload recordings at all (the console shows the form)."""
    return permissions.may(user, Action.upload_recording, permissions.CaseFacts()) is None


async def upload_recording(res: Resources, user: CurrentUser, case_id: int, file: UploadFile) -> asyncpg.Record:
    """Attach the recorder's audio (mp3/m4a/wav/amr, by content) to an open case; its recordings row.

    404 case_not_found, 403 wrong_role, 415 unsupported_audio, 413 recording_too_large, 409 case_closed, 503.
    """
    access = await open_case_for(res, user, case_id, Action.upload_recording)
    limit = res.settings.recordings_max_bytes
    head = await file.read(SNIFF_BYTES)
    content_type = sniff_audio(head)
    if content_type is None:
        raise ApiError(415, "unsupported_audio", "文件内容不是 mp3、m4a、wav 或 amr 录音", details={"field": "file"})
    # Size and checksum over the spooled upload, without holding it in memory.
    digest, size = hashlib.sha256(head), len(head)
    while chunk := await file.read(RECORDING_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "recording_too_large", f"录音超过大小上限 {limit // (1024 * 1024)} MB")
        digest.update(chunk)
    if not access.facts.open:
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
        row = await bounded(res, repo.insert_recording(
            pool, case_id=case_id, key=key, filename=filename, content_type=content_type, size=size,
            sha256=digest.hexdigest(), uploaded_by=user.id,
        ))
        # The case's timeline shows it (the workflow records the number, type and size only).
        client = await res.client()
        change: CaseChange = await execute_update(
            client, case_id=case_id, update=intake_workflow().attach_recording,
            arg=AttachRecording(actor=actor_on(user, access), recording_id=row["id"], content_type=content_type, size=size),
            timeout=res.timeout,
        )
    except BaseException:
        # Nothing half-done is left: no file without its row, no row the case does not know.
        await store.delete(key)
        await repo.delete_recording(pool, key=key)
        raise
    try:
        async with pool.acquire(timeout=res.timeout) as conn:
            await bounded(res, write_change(conn, res.settings, change))
    except Exception as exc:  # noqa: BLE001 - decided and durable; the workflow writes it within its grace
        log.warning("case %s: recording event not written by the API now: %r", case_id, exc)
    return row


async def list_recordings(res: Resources, user: CurrentUser, case_id: int) -> list[asyncpg.Record]:
    """The case's recordings, oldest first, with the uploader's name (uploaded_by_name); 403 for others."""
    await open_case_for(res, user, case_id, Action.listen)
    pool = await res.pool()
    rows: list[asyncpg.Record] = await bounded(res, repo.case_recordings(pool, case_id))
    return rows


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
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


async def play_recording(
    res: Resources, user: CurrentUser, case_id: int, recording_id: int, range_header: str | None
) -> Response:
    """A recording for its player: the whole file (200, streamed) or the requested bytes (206).

    404 case_not_found / recording_not_found, 403 not_your_case, 416 range_not_satisfiable, 503.
    """
    await open_case_for(res, user, case_id, Action.listen)
    if not 1 <= recording_id <= MAX_ID:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    pool = await res.pool()
    rec = await bounded(res, repo.case_recording(pool, case_id=case_id, recording_id=recording_id))
    if rec is None:
        raise ApiError(404, "recording_not_found", "没有这个录音")
    store = res.recordings()
    size = int(rec["size"])
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff",
               "Content-Disposition": f"inline; filename=\"recording-{rec['id']}{AUDIO_TYPES[rec['content_type']]}\""}
    try:
        wanted = parse_range(range_header, size)
    except ValueError:
        raise ApiError(416, "range_not_satisfiable", "请求的范围超出录音长度",
                       headers={"Content-Range": f"bytes */{size}"}) from None
    try:
        if wanted is not None:
            start, end = wanted
            end = min(end, start + RECORDING_CHUNK * RANGE_CHUNKS - 1)  # bounded; the player asks for the rest
            data = await store.read(rec["storage_key"], start, end)
            return Response(data, status_code=206, media_type=rec["content_type"],
                            headers=headers | {"Content-Range": f"bytes {start}-{start + len(data) - 1}/{size}"})
        first = await store.read(rec["storage_key"], 0, min(RECORDING_CHUNK, size) - 1)
    except RecordingMissing:
        raise ApiError(404, "recording_not_found", "录音文件已不在存储中") from None

    async def rest() -> AsyncIterator[bytes]:
        yield first
        pos = len(first)
        while pos < size:
            chunk = await store.read(rec["storage_key"], pos, min(pos + RECORDING_CHUNK, size) - 1)
            if not chunk:
                return
            yield chunk
            pos += len(chunk)

    return StreamingResponse(rest(), media_type=rec["content_type"],
                             headers=headers | {"Content-Length": str(size)})
