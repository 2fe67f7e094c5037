"""The recorder's audio of a first meeting (seed 二h): upload to an open case, list, play with Range.

The JSON API (api/routers/recordings.py) and the console's case page call these; who may upload or
listen is domain/permissions.py's answer.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from python_multipart.multipart import MultipartParser, parse_options_header

from api.deps import CurrentUser, Resources, bounded
from api.errors import ApiError, BodyTooLarge
from api.schemas import MAX_ID
from api.services.access import CaseAccess, actor_on, open_case_for
from api.temporal import execute_update, intake_workflow
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
# An upload is spooled in memory up to this size, beyond it in a temporary file (after authentication).
SPOOL_IN_MEMORY = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _FilePart:
    """The multipart parser's callbacks: the `file` part streamed into a spool, bounded while it arrives."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by the caller
        self.digest = hashlib.sha256()
        self.size = 0
        self.filename: str | None = None
        self.head = b""
        self.found = False
        self.too_large = False
        self._in_file = False
        self._header_field = b""
        self._header_value = b""
        self._disposition = b""

    def callbacks(self) -> dict[str, Any]:
        """The callbacks for python_multipart's MultipartParser."""
        return {
            "on_part_begin": self._part_begin, "on_header_field": self._field, "on_header_value": self._value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_part_data": self._data, "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition = b""
        self._in_file = False

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_field.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") == b"file" and not self.found:
            self._in_file = self.found = True
            self.filename = params.get(b"filename", b"").decode("utf-8", "replace") or None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            # Said by a flag, not raised here: the parser is free to wrap what its callbacks raise.
            self.too_large = True
            return
        if len(self.head) < SNIFF_BYTES:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
        self.digest.update(chunk)
        self.spool.write(chunk)

    def _part_end(self) -> None:
        self._in_file = False


async def read_upload(request: Request, limit: int) -> _FilePart:
    """Stream a multipart body's `file` part into a spool, refusing it (413) the moment it passes `limit`.

    Called only once the caller's credentials, role and case were judged from the headers: nothing of the
    body is read before. 422 file_required without a file part, 415 unsupported_audio by its first bytes.
    """
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(422, "file_required", "请以 multipart/form-data 上传录音文件（字段 file）", details={"field": "file"})
    part = _FilePart(limit)
    parser = MultipartParser(boundary, part.callbacks())  # type: ignore[arg-type]
    too_large = ApiError(413, "recording_too_large", f"录音超过大小上限 {limit // (1024 * 1024)} MB")
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if part.too_large:
                raise too_large
        parser.finalize()
    except ApiError:
        part.spool.close()
        raise
    except BodyTooLarge as exc:
        # The whole body passed the upload limit in a chunk the parser has not seen yet (chunks coalesce
        # under load): the file is too large all the same.
        part.spool.close()
        raise too_large from exc
    except Exception as exc:  # a malformed body (or one cut off past the limit): say so, keep nothing
        part.spool.close()
        if part.too_large:
            raise too_large from exc
        raise ApiError(422, "invalid_payload", "上传内容格式不正确", details={"field": "file"}) from exc
    if not part.found or not part.filename:
        part.spool.close()
        raise ApiError(422, "file_required", "请选择录音文件", details={"field": "file"})
    if sniff_audio(part.head) is None:
        part.spool.close()
        raise ApiError(415, "unsupported_audio", "文件内容不是 mp3、m4a、wav 或 amr 录音", details={"field": "file"})
    part.spool.seek(0)
    return part


async def may_upload(res: Resources, user: CurrentUser, case_id: int) -> CaseAccess:
    """Everything judged from the headers before an upload's body is read: the case (404), the role (403),
    the case still open (409)."""
    access = await open_case_for(res, user, case_id, Action.upload_recording)
    if not access.facts.open:
        raise ApiError(409, "case_closed", "案件不在进行中，不能上传录音")
    return access


async def upload_recording(res: Resources, user: CurrentUser, case_id: int, request: Request) -> asyncpg.Record:
    """Attach the recorder's audio (mp3/m4a/wav/amr, by content) to an open case; its recordings row.

    404 case_not_found, 403 wrong_role, 409 case_closed — all before the body is read — then, while it
    streams, 413 recording_too_large; 415 unsupported_audio, 503.
    """
    access = await may_upload(res, user, case_id)
    part = await read_upload(request, res.settings.recordings_max_bytes)
    try:
        return await _store_upload(res, user, access, part)
    finally:
        part.spool.close()


async def _store_upload(res: Resources, user: CurrentUser, access: CaseAccess, part: _FilePart) -> asyncpg.Record:
    case_id = access.case_id
    content_type = sniff_audio(part.head)
    assert content_type is not None
    size = part.size
    store = res.recordings()
    key = f"case-{case_id}/{uuid.uuid4().hex}{AUDIO_TYPES[content_type]}"
    try:
        await store.put(key, part.spool, content_type)  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("case %s: recording not stored: %r", case_id, exc)
        raise ApiError(503, "storage_unavailable", "录音存储暂时不可用，请稍后重试", headers={"Retry-After": "5"}) from exc
    pool = await res.pool()
    filename = (part.filename or "recording")[-200:]
    try:
        row = await bounded(res, repo.insert_recording(
            pool, case_id=case_id, key=key, filename=filename, content_type=content_type, size=size,
            sha256=part.digest.hexdigest(), uploaded_by=user.id,
        ))
        # The case's timeline shows it (the workflow records the number, type and size only).
        client = await res.client()
        change: CaseChange = await execute_update(
            client, case_id=case_id, update=intake_workflow().attach_recording,
            arg=AttachRecording(actor=actor_on(user, access), recording_id=row["id"], content_type=content_type,
                                size=size),
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
