"""Seed details through HTTP beyond the four scenario journeys: automatic reclaim (掉保) and the
allocation report, recordings on an S3-compatible store (a real local peer: the moto server in its own
process), upload limits and types."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from api.app import create_app
from domain.enums import StepName
from domain.policy import fast_policy
from store.recordings import RecordingMissing, build_recording_store
from tests.api.conftest import Api, future, make_http, open_steps

MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 64  # 16 KB after the tag


def P(api: Api, key: str) -> int:
    return api.people[key].id


async def test_a_lapsed_contact_returns_the_case_to_the_manager_and_counts_against_the_designer(api: Api) -> None:
    """掉保/公海: contact late to the policy's reclaim level → back to assign_designer, lapse recorded,
    the client untouched; GET /reports/allocation counts it."""
    quick = fast_policy()
    quick.durations[StepName.contact] = timedelta(seconds=2)
    quick.reclaim_at_level = 2  # due → designer reminded (1); +5 s → manager told (2) and the case reclaimed
    app = create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=quick)
    async with make_http(app) as http:
        r = await http.post("/intakes", json=api.intake_body("remote"), headers=api.h("consultant"))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": future(), "designer_id": P(api, "designer"),
                                                   "reason": "客户点名"})
    s = await api.ok_step(cid, "assign_assistant", "assistant_lead", {"assistant_id": P(api, "assistant")})
    assert open_steps(s) == {"contact"}

    async def reclaimed() -> dict[str, Any] | None:
        # the workflow answers at once; its write of the ledger follows a moment later
        c = await api.case(cid)
        written = any(a["kind"] == "lapse" for a in c["assignments"])
        return c if c["stage"] == "assign_designer" and written else None

    c = await api.until(reclaimed, timeout=30, what="case reclaimed")
    assert c["designer"] is None and open_steps(c) == {"assign_designer"}
    assert any(e["kind"] == "reclaimed" and "李设计" in e["text"] for e in c["timeline"])
    lapse = [a for a in c["assignments"] if a["kind"] == "lapse"]
    assert [a["staff"]["id"] for a in lapse] == [P(api, "designer")]
    # the client untouched: no SMS at all (T1 was never sent, nothing about the lapse)
    r = await api.http.get(f"/intakes/{cid}/messages", headers=api.h("manager"))
    assert r.json()["items"] == []
    assert "掉保" in (await api.notice(cid, "reclaimed:", who="manager"))["text"]
    # the allocation report counts the lapse against the designer
    r = await api.http.get("/reports/allocation", headers=api.h("director"))
    assert r.status_code == 200, r.text
    row = next(x for x in r.json()["rows"] if x["designer"]["id"] == P(api, "designer"))
    assert row["lapses"] >= 1
    # the next designer takes over the contact
    s = await api.ok_step(cid, "assign_designer", "manager", {"designer_id": P(api, "designer2"), "reason": "掉保重分"})
    assert s["designer"]["id"] == P(api, "designer2")
    contact = next(o for o in s["open_steps"] if o["step"] == "contact")
    assert contact["owner"]["id"] == P(api, "designer2")
    r = await api.http.post(f"/intakes/{cid}/close", json={"outcome": "duplicate"}, headers=api.h("manager"))
    assert r.status_code == 200, r.text


# --- recordings: limits, types, roles ---------------------------------------------------------------


async def _walk_in(api: Api) -> int:
    c = await api.create("consultant", "walk_in")
    await api.ok_step(c["id"], "assign_designer", "manager", {"designer_id": P(api, "designer"), "reason": "轮到他"})
    return int(c["id"])


async def test_recording_upload_checks_content_size_and_role(api: Api) -> None:
    cid = await _walk_in(api)
    url = f"/intakes/{cid}/recordings"
    # a text file named .mp3 is not audio: the content decides
    r = await api.http.post(url, files={"file": ("录音.mp3", b"just some text, not audio", "audio/mpeg")},
                            headers=api.h("manager"))
    assert r.status_code == 415 and r.json()["code"] == "unsupported_audio", r.text
    # a real m4a named .txt is accepted as audio/mp4
    m4a = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + b"\x00" * 4000
    r = await api.http.post(url, files={"file": ("notes.txt", m4a, "text/plain")}, headers=api.h("manager"))
    assert r.status_code == 201 and r.json()["content_type"] == "audio/mp4", r.text
    # only the manager uploads
    r = await api.http.post(url, files={"file": ("a.mp3", MP3, "audio/mpeg")}, headers=api.h("designer"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    # the size limit comes from the settings
    small = api.settings.model_copy(update={"recordings_max_bytes": 4096})
    app = create_app(small, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    async with make_http(app) as http:
        r = await http.post(url, files={"file": ("a.mp3", MP3, "audio/mpeg")}, headers=api.h("manager"))
    assert r.status_code == 413 and r.json()["code"] == "recording_too_large", r.text
    r = await api.http.get(url, headers=api.h("manager"))
    assert [x["content_type"] for x in r.json()["items"]] == ["audio/mp4"]
    # ranges: the last bytes, an open end, and one past the end
    rec = r.json()["items"][0]
    r = await api.http.get(rec["url"], headers=api.h("designer") | {"Range": "bytes=-16"})
    assert r.status_code == 206 and r.content == m4a[-16:]
    r = await api.http.get(rec["url"], headers=api.h("manager") | {"Range": "bytes=4000-"})
    assert r.status_code == 206 and r.content == m4a[4000:]
    r = await api.http.get(rec["url"], headers=api.h("manager") | {"Range": f"bytes={len(m4a)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(m4a)}"
    # a site lead is not the case's staff (the consultant who received the walk-in is): no such case for them
    r = await api.http.get(url, headers=api.h("site_lead"))
    assert r.status_code == 404 and r.json()["code"] == "case_not_found"
    r = await api.http.get(rec["url"], headers=api.h("site_lead"))
    assert r.status_code == 404
    # the assistant lead sees every case but does not listen to its recordings
    r = await api.http.get(url, headers=api.h("assistant_lead"))
    assert r.status_code == 403 and r.json()["code"] == "not_your_case"


# --- S3-compatible store: the moto server as a real local peer ----------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible HTTP server in its own process (moto), with one bucket."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="k",
                     aws_secret_access_key="s").create_bucket(Bucket="recordings")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _s3_settings(api: Api, url: str) -> Any:
    from pydantic import SecretStr

    return api.settings.model_copy(update={
        "recordings_store": "s3", "s3_endpoint_url": url, "s3_bucket": "recordings", "s3_prefix": "intake/",
        "s3_access_key_id": SecretStr("k"), "s3_secret_access_key": SecretStr("s"),
    })


async def test_s3_store_round_trip(api: Api, s3_endpoint: str) -> None:
    import io

    store = build_recording_store(_s3_settings(api, s3_endpoint))
    assert store.name == "s3"
    await store.put("case-1/x.mp3", io.BytesIO(MP3), "audio/mpeg")
    assert await store.size("case-1/x.mp3") == len(MP3)
    assert await store.read("case-1/x.mp3", 10, 19) == MP3[10:20]
    await store.delete("case-1/x.mp3")
    with pytest.raises(RecordingMissing):
        await store.size("case-1/x.mp3")


async def test_recordings_on_s3_through_the_api(api: Api, s3_endpoint: str) -> None:
    settings = _s3_settings(api, s3_endpoint)
    app = create_app(settings, temporal_client=api.client, pool=api.pool, policy=fast_policy())
    cid = await _walk_in(api)
    async with make_http(app) as http:
        r = await http.post(f"/intakes/{cid}/recordings", files={"file": ("rec.mp3", MP3, "audio/mpeg")},
                            headers=api.h("manager"))
        assert r.status_code == 201, r.text
        rec = r.json()
        r = await http.get(rec["url"], headers=api.h("designer") | {"Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.content == MP3[1000:2000]
        assert r.headers["content-range"] == f"bytes 1000-1999/{len(MP3)}"
        r = await http.get(rec["url"], headers=api.h("manager"))
        assert r.status_code == 200 and r.content == MP3
    keys = [o["Key"] for o in boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
    ).list_objects_v2(Bucket="recordings", Prefix=f"intake/case-{cid}/").get("Contents", [])]
    assert len(keys) == 1 and keys[0].endswith(".mp3")
    case = await api.case(cid)
    assert rec["id"] in case["recordings"]
