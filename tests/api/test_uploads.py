"""Uploads before sign-in (issue 14), over real HTTP (uvicorn on a port): credentials, case and role are
judged from the headers before the body is read — a request without them gets 401 at once and its
connection closes — and the size limit is enforced while the body streams; nothing is kept."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import uvicorn

from api.app import create_app
from domain.policy import fast_policy
from tests.api.conftest import Api
from tests.support.wait import until

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 64
LIMIT = 256 * 1024
BOUNDARY = "----intakeboundary"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture(loop_scope="session")
async def server(api: Api, tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """The app behind real uvicorn, recordings in a directory of their own, a small size limit."""
    rec_dir = tmp_path / "recordings"
    settings = api.settings.model_copy(update={"recordings_dir": rec_dir, "recordings_max_bytes": LIMIT})
    app = create_app(settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(srv.serve())
    await until(lambda: srv.started, 10, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}", rec_dir
    finally:
        srv.should_exit = True
        await task


async def _raw_upload(base: str, path: str, headers: dict[str, str], declared: int) -> tuple[int, bytes, float, bool]:
    """Send the headers of an upload of `declared` bytes and only its first 64 KB; the status, the body,
    how long the answer took, and whether the server then closed the connection."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {declared}",
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}", *(f"{k}: {v}" for k, v in headers.items())]
    started = time.monotonic()
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    writer.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
                 f"Content-Type: audio/mpeg\r\n\r\n".encode() + MP3[:60_000])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    elapsed = time.monotonic() - started
    raw = await asyncio.wait_for(reader.read(65536), 10)
    closed = False
    try:
        closed = (await asyncio.wait_for(reader.read(1), 10)) == b""
    except (ConnectionError, TimeoutError):
        closed = True
    writer.close()
    return int(status_line.split()[1]), raw, elapsed, closed


def _files(rec_dir: Path) -> list[Path]:
    return [p for p in rec_dir.rglob("*") if p.is_file()] if rec_dir.exists() else []


async def test_refused_uploads_are_refused_from_the_headers_and_close(api: Api, server: tuple[str, Path]) -> None:
    base, rec_dir = server
    c = await api.create("consultant", "remote")
    path = f"/intakes/{c['id']}/recordings"
    # the whole limit announced, 60 KB sent: every refusal comes without waiting for the rest of the body
    for who, status in ((None, 401), ("designer2", 404), ("consultant", 403)):
        headers = {"Authorization": f"Bearer {api.people[who].token}"} if who else {}
        got, raw, elapsed, closed = await _raw_upload(base, path, headers, declared=LIMIT)
        assert got == status, (who, raw)
        assert b"connection: close" in raw.lower() and closed, who
        assert elapsed < 5
    # the console form: the session and its form token before the file
    got, raw, _, closed = await _raw_upload(base, f"/console/cases/{c['id']}/recordings", {}, declared=LIMIT)
    assert got == 303 and closed  # to the sign-in page
    assert _files(rec_dir) == []
    assert await api.pool.fetchval("SELECT count(*) FROM recordings WHERE case_id = $1", c["id"]) == 0


async def test_the_size_limit_is_enforced_while_the_body_streams(api: Api, server: tuple[str, Path]) -> None:
    base, rec_dir = server
    c = await api.create("consultant", "remote")
    sent = 0

    async def body() -> AsyncIterator[bytes]:  # chunked: no Content-Length to judge it by up front
        nonlocal sent
        yield (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.mp3"\r\n'
               f"Content-Type: audio/mpeg\r\n\r\n").encode() + MP3
        for _ in range(200):  # 3 MB of audio, well past the limit
            sent += 16384
            yield bytes(16384)
            await asyncio.sleep(0)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        try:
            r = await http.post(f"/intakes/{c['id']}/recordings", content=body(),
                                headers={**api.h("manager"), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            assert r.status_code == 413 and r.json()["code"] == "recording_too_large", r.text
        except httpx.HTTPError:
            pass  # the server may close before the client finished sending: refused all the same
    assert _files(rec_dir) == []
    assert await api.pool.fetchval("SELECT count(*) FROM recordings WHERE case_id = $1", c["id"]) == 0


async def test_a_good_upload_streams_to_storage_and_plays_with_nosniff(api: Api, server: tuple[str, Path]) -> None:
    base, rec_dir = server
    c = await api.create("consultant", "remote")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post(f"/intakes/{c['id']}/recordings", files={"file": ("会见.mp3", MP3, "audio/mpeg")},
                            headers=api.h("manager"))
        assert r.status_code == 201, r.text
        rec: dict[str, Any] = r.json()
        assert rec["size"] == len(MP3) and rec["content_type"] == "audio/mpeg" and rec["filename"] == "会见.mp3"
        assert [p.read_bytes() for p in _files(rec_dir)] == [MP3]
        played = await http.get(rec["url"], headers=api.h("manager"))
        assert played.content == MP3 and played.headers["x-content-type-options"] == "nosniff"
        part = await http.get(rec["url"], headers={**api.h("manager"), "Range": "bytes=0-9"})
        assert part.status_code == 206 and part.headers["x-content-type-options"] == "nosniff"
        # not audio: 415, nothing kept
        r = await http.post(f"/intakes/{c['id']}/recordings", files={"file": ("x.mp3", b"<html>" * 100, "audio/mpeg")},
                            headers=api.h("manager"))
        assert r.status_code == 415
    assert len(_files(rec_dir)) == 1
