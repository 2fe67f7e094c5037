"""Encrypted payloads through the API: history is ciphertext, the codec endpoint decodes for allowed staff."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.api.common.v1 import Payload

from api.app import create_app, loggable_path
from codec import ENCODING, EncryptionCodec, LocalCodecCredential, parse_keys
from domain.constants import workflow_id
from domain.enums import Role
from domain.policy import fast_policy
from store.staff import StaffRepository
from tests.api.conftest import Api, future, make_http, unique_phone
from tests.api.test_errors import assert_error
from tests.support.keys import OLD

CAR = "沪A7Q321 银色SUV"
NEEDS = "秘密需求：主卧改衣帽间"


def payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every payload of a history in protobuf-JSON form, search attributes and patch markers excluded
    (plain by design: ids and stages, the name of a code change)."""
    if isinstance(node, dict):
        if node.get("markerName") == "core_patch":
            return
        if "searchAttributes" in node:
            node = {k: v for k, v in node.items() if k != "searchAttributes"}
        if isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield node
        for v in node.values():
            yield from payloads(v)
    elif isinstance(node, list):
        for v in node:
            yield from payloads(v)


async def _office_case(api: Api) -> tuple[int, list[dict[str, Any]]]:
    visit = future()
    c = await api.create("consultant", "office_visit", meeting_at=visit, meeting_kind="office_visit",
                         notes=NEEDS)
    cid = c["id"]
    await api.ok_step(cid, "callback", "manager", {"reached": True, "meeting_at": visit, "car": CAR,
                                                   "notes": NEEDS})
    hist = await api.client.get_workflow_handle(workflow_id(cid)).fetch_history()
    return cid, list(payloads(json.loads(hist.to_json())))


async def test_workflow_payloads_in_history_are_ciphertext(api: Api) -> None:
    _, found = await _office_case(api)
    assert found
    for p in found:
        enc = base64.b64decode(p["metadata"]["encoding"])
        data = base64.b64decode(p.get("data", ""))
        assert enc == ENCODING, enc
        assert CAR.encode() not in data and NEEDS.encode() not in data
        # not JSON (a random nonce comes first: its first byte may well be "{", the whole never parses)
        with pytest.raises(ValueError):
            json.loads(data)


async def test_codec_endpoint_decodes_for_allowed_staff_only(api: Api) -> None:
    _, found = await _office_case(api)
    body = {"payloads": found}
    for who in ("manager", "director", "admin"):
        r = await api.http.post("/codec/decode", json=body, headers={**api.h(who), "X-Namespace": "default"})
        assert r.status_code == 200, r.text
        texts = [base64.b64decode(p["data"]).decode("utf-8", "replace") for p in r.json()["payloads"]]
        assert any(CAR in t for t in texts) and any(NEEDS in t for t in texts), who
        assert all(base64.b64decode(p["metadata"]["encoding"]) != ENCODING for p in r.json()["payloads"])
    for who in ("designer", "assistant", "consultant", "site_lead", "assistant_lead"):
        assert_error(await api.http.post("/codec/decode", json=body, headers=api.h(who)), 403, "wrong_role")
    assert_error(await api.http.post("/codec/decode", json=body), 401, "unauthenticated")
    # encode: what the UI sends comes back encrypted with the active key
    plain = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                           "data": base64.b64encode(b'"hi"').decode()}]}
    r = await api.http.post("/codec/encode", json=plain, headers=api.h("manager"))
    assert r.status_code == 200 and base64.b64decode(r.json()["payloads"][0]["metadata"]["encoding"]) == ENCODING


async def test_personal_codec_url_and_revocation(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    repo = StaffRepository(api.pool)
    boss = await repo.add(name="临时总经理", phone=unique_phone(), role=Role.director)
    token = await repo.issue_token(staff_id=boss.id, ttl_days=1)
    _, found = await _office_case(api)
    # a codec-only credential, issued by the person for themself
    r = await api.http.post("/codec/credentials", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    path = url.removeprefix(api.settings.console_base())
    assert path.startswith("/codec/k/itc_") and token not in url
    with caplog.at_level("INFO", logger="intake.access"):
        r = await api.http.post(f"{path}/decode", json={"payloads": found})
    assert r.status_code == 200 and any(
        CAR in base64.b64decode(p["data"]).decode("utf-8", "replace") for p in r.json()["payloads"]
    )
    credential = path.rsplit("/", 1)[-1]
    assert credential not in caplog.text and "/codec/k/{token}/decode" in caplog.text  # the template, not the path
    # decode only; never a bearer token anywhere else; a bearer token never in the URL
    assert (await api.http.post(f"{path}/encode", json={"payloads": []})).status_code in (404, 405)
    for route in ("/me/tasks", "/intakes"):
        assert_error(await api.http.get(route, headers={"Authorization": f"Bearer {credential}"}), 401, "invalid_token")
    assert_error(await api.http.post("/codec/decode", json={"payloads": found},
                                     headers={"Authorization": f"Bearer {credential}"}), 401, "invalid_token")
    assert_error(await api.http.post(f"/codec/k/{token}/decode", json={"payloads": found}), 401, "invalid_token")
    # stored hashed, with its scope and who issued it
    row = await api.pool.fetchrow("SELECT scope, issued_by, expires_at - created_at AS ttl FROM staff_tokens"
                                  " WHERE staff_id = $1 AND scope = 'codec'", boss.id)
    assert row["issued_by"] == boss.id and row["ttl"].total_seconds() <= api.settings.codec_credential_hours * 3600 + 1
    assert await api.pool.fetchval("SELECT count(*) FROM staff_tokens WHERE token_hash = $1", credential) == 0
    # a designer gets none
    assert_error(await api.http.post("/codec/credentials", headers=api.h("designer")), 403, "wrong_role")
    await repo.revoke_tokens(staff_id=boss.id)
    assert_error(await api.http.post(f"{path}/decode", json={"payloads": found}), 401, "invalid_token")


async def test_old_key_payloads_decode_after_rotation(api: Api) -> None:
    [old] = await EncryptionCodec(parse_keys(OLD)).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'{"car": "old"}')]
    )
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in old.metadata.items()},
                          "data": base64.b64encode(old.data).decode()}]}
    r = await api.http.post("/codec/decode", json=body, headers=api.h("manager"))
    assert r.status_code == 200 and base64.b64decode(r.json()["payloads"][0]["data"]) == b'{"car": "old"}'
    body["payloads"][0]["data"] = base64.b64encode(b"x" * 40).decode()
    assert_error(await api.http.post("/codec/decode", json=body, headers=api.h("manager")), 422, "undecodable_payload")


async def test_cors_for_the_temporal_ui_only(api: Api) -> None:
    ui = f"http://127.0.0.1:{api.settings.temporal_ui_port}"
    pre = {"Origin": ui, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}
    r = await api.http.options("/codec/decode", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ui
    assert r.headers["access-control-allow-credentials"] == "true"
    r = await api.http.options("/codec/decode", headers={**pre, "Origin": "http://evil.example"})
    assert r.headers.get("access-control-allow-origin") != "http://evil.example"
    # other routes get no CORS at all
    r = await api.http.get("/me/tasks", headers={**api.h("manager"), "Origin": ui})
    assert "access-control-allow-origin" not in r.headers


# --- the dev stack's local operator: a decode-only, loopback-only credential of scope "codec" -------


def _local_app(api: Api, credential: LocalCodecCredential | None) -> Any:
    return create_app(api.settings, temporal_client=api.client, pool=api.pool, policy=fast_policy(),
                      local_codec=credential)


async def test_local_codec_credential_decodes_and_does_nothing_else(api: Api) -> None:
    secret, credential = LocalCodecCredential.generate()
    assert secret not in repr(credential)
    _, found = await _office_case(api)
    body = {"payloads": found}
    async with make_http(_local_app(api, credential)) as http:  # ASGI client: 127.0.0.1
        r = await http.post(f"/codec/local/{secret}/decode", json=body, headers={"X-Namespace": "default"})
        assert r.status_code == 200, r.text
        assert any(CAR in base64.b64decode(p["data"]).decode("utf-8", "replace") for p in r.json()["payloads"])
        # Decode only: the UI cannot encode a signal or an update for a case with it.
        assert_error(await http.post(f"/codec/local/{secret}/encode", json=body), 403, "decode_only")
        assert_error(await http.post(f"/codec/local/{'x' * 43}/decode", json=body), 401, "invalid_token")
        # Codec only: it is no staff token, on any route.
        bearer = {"Authorization": f"Bearer {secret}"}
        assert_error(await http.get("/me/tasks", headers=bearer), 401, "invalid_token")
        assert_error(await http.post("/codec/decode", json=body, headers=bearer), 401, "invalid_token")
        assert_error(await http.post(f"/codec/k/{secret}/decode", json=body), 401, "invalid_token")
        # The UI's preflight from its own origin is answered.
        ui = f"http://127.0.0.1:{api.settings.temporal_ui_port}"
        pre = await http.options(f"/codec/local/{secret}/decode", headers={
            "Origin": ui, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ui
    # From another machine (an API bound to 0.0.0.0): refused even with the secret.
    remote = httpx.ASGITransport(app=_local_app(api, credential), client=("192.168.1.20", 50000))
    async with httpx.AsyncClient(transport=remote, base_url="http://api.test") as http:
        assert_error(await http.post(f"/codec/local/{secret}/decode", json=body), 403, "local_only")
    # A deployed API has no local credential: the route does not exist.
    assert_error(await api.http.post(f"/codec/local/{secret}/decode", json=body), 404, "not_found")


def test_codec_credentials_in_a_path_are_never_logged() -> None:
    assert loggable_path("/codec/local/s3cr3t/decode") == "/codec/local/***/decode"
    assert loggable_path("/codec/k/itk_abc/encode") == "/codec/k/***/encode"
    assert loggable_path("/intakes/12/steps/callback") == "/intakes/12/steps/callback"
