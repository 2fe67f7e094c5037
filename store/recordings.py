"""Where recordings are kept: a storage interface, a local directory (default) and S3-compatible buckets.

The API writes a recording once (under a key it made up, never the client's name) and reads ranges of
it back for playback. The S3 backend speaks the S3 API through boto3 to AWS S3 or any compatible store
(MinIO, Aliyun OSS / Tencent COS in S3 mode): `INTAKE_S3_ENDPOINT_URL` points it at one.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Protocol

import asyncpg

from config import Settings


class RecordingMissing(Exception):
    """The store has no object under this key."""


class RecordingStore(Protocol):
    """Keeps recording files by key."""

    name: str

    async def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        """Store the whole file (read from its current position) under `key`."""
        ...

    async def size(self, key: str) -> int:
        """The stored size in bytes; RecordingMissing when absent."""
        ...

    async def read(self, key: str, start: int, end: int) -> bytes:
        """Bytes start..end (inclusive) of the object."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object (nothing when absent)."""
        ...


def _safe_key(key: str) -> str:
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"bad storage key {key!r}")
    return key


class LocalRecordingStore:
    """Files under one directory (the default: `<data_dir>/recordings`)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        """Write to a temporary file beside the target, then rename: a reader never sees half a file."""
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(file, out, 1024 * 1024)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        await asyncio.to_thread(write)

    async def size(self, key: str) -> int:
        """The file's size."""
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError as exc:
            raise RecordingMissing(key) from exc

    async def read(self, key: str, start: int, end: int) -> bytes:
        """A byte range of the file."""

        def read() -> bytes:
            with self._path(key).open("rb") as f:
                f.seek(start)
                return f.read(end - start + 1)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError as exc:
            raise RecordingMissing(key) from exc

    async def delete(self, key: str) -> None:
        """Remove the file."""
        await asyncio.to_thread(self._path(key).unlink, True)


class S3RecordingStore:
    """Objects in an S3-compatible bucket (boto3 in a thread: its client is thread-safe)."""

    name = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + _safe_key(key)

    async def put(self, key: str, file: IO[bytes], content_type: str) -> None:
        """Upload (multipart for large files, as boto3 decides)."""
        await asyncio.to_thread(
            self.client.upload_fileobj, file, self.bucket, self._key(key), ExtraArgs={"ContentType": content_type}
        )

    async def size(self, key: str) -> int:
        """HEAD the object."""
        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise RecordingMissing(key) from exc
            raise
        return int(head["ContentLength"])

    async def read(self, key: str, start: int, end: int) -> bytes:
        """GET with a Range header."""

        def get() -> bytes:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}")
            body = obj["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
            return data

        try:
            return await asyncio.to_thread(get)
        except self.client.exceptions.NoSuchKey as exc:
            raise RecordingMissing(key) from exc

    async def delete(self, key: str) -> None:
        """DELETE the object."""
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))


def build_recording_store(settings: Settings) -> RecordingStore:
    """The store chosen by `INTAKE_RECORDINGS_STORE`; misconfiguration fails at startup."""
    if settings.recordings_store == "local":
        return LocalRecordingStore(settings.recordings_dir or settings.data_dir / "recordings")
    if not settings.s3_bucket:
        raise ValueError("INTAKE_RECORDINGS_STORE=s3 needs INTAKE_S3_BUCKET")
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
        aws_secret_access_key=(
            settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        ),
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )
    return S3RecordingStore(client, settings.s3_bucket, settings.s3_prefix)


# --- the recordings table (migration 008) ------------------------------------------------------------


async def insert_recording(
    conn: asyncpg.Pool | asyncpg.Connection, *, case_id: int, key: str, filename: str, content_type: str,
    size: int, sha256: str, uploaded_by: int,
) -> asyncpg.Record:
    """The row of a stored recording."""
    row = await conn.fetchrow(
        "INSERT INTO recordings (case_id, storage_key, filename, content_type, size, sha256, uploaded_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        case_id, key, filename, content_type, size, sha256, uploaded_by,
    )
    assert row is not None
    return row


async def delete_recording(conn: asyncpg.Pool | asyncpg.Connection, *, key: str) -> None:
    """Remove the row of a recording that its case never took."""
    await conn.execute("DELETE FROM recordings WHERE storage_key = $1", key)


async def case_recordings(conn: asyncpg.Pool | asyncpg.Connection, case_id: int) -> list[asyncpg.Record]:
    """A case's recordings, oldest first, with the uploader's name (uploaded_by_name)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT r.*, s.name AS uploaded_by_name FROM recordings r LEFT JOIN staff s ON s.id = r.uploaded_by"
        " WHERE r.case_id = $1 ORDER BY r.id", case_id,
    )
    return rows


async def case_recording(conn: asyncpg.Pool | asyncpg.Connection, *, case_id: int, recording_id: int) -> asyncpg.Record | None:
    """One recording of a case."""
    return await conn.fetchrow("SELECT * FROM recordings WHERE id = $1 AND case_id = $2", recording_id, case_id)
