"""The Temporal UI's remote codec ("codec server") protocol: decrypt payloads for those allowed.

The UI (and `temporal` CLI with ``--codec-endpoint``) POSTs ``{"payloads": [...]}`` to
``<endpoint>/decode`` (and ``/encode``), each payload as ``{"metadata": {k: base64}, "data": base64}``.
Only the manager, the director and the admin see decrypted payloads: the bearer token comes in the
``Authorization`` header (a UI that passes an access token, the CLI, scripts) or, for a UI without
sign-in, in the endpoint itself (``/codec/k/<credential>/decode``): a codec-only credential (scope
``codec``: decode only, never accepted by any other route, short-lived, revoked with the person's
tokens, stored hashed) from ``POST /codec/credentials`` or ``intake staff codec-url``; a bearer token
there is refused, so no full token ever sits in a URL (or in a log line). Without an allowed
credential the answer is 401/403 and the UI shows the ciphertext.
CORS for the UI's origin is added around ``/codec`` only (api.app).

The dev stack's own UI uses a third credential, :class:`codec.LocalCodecCredential`: a random secret of
scope ``codec`` that `intake dev` makes at each start, holds in memory and gives only to the Temporal
UI it starts (``/codec/local/<secret>``). It decrypts and nothing else: it is no staff token, so every
other route refuses it; ``/encode`` refuses it too (the UI cannot send a case a command with it); and
it is taken from loopback clients only. Deployed processes never have one (the route answers 404).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from temporalio.api.common.v1 import Payload

from api.deps import CurrentUser, ResourcesDep, bounded, permitted, refuse
from api.errors import R401, R403, R422, R503, ApiError, responses, unavailable
from api.ratelimit import client_address
from codec import LocalCodecCredential
from config import Settings
from domain import permissions
from store.staff import StaffRepository

router = APIRouter(prefix="/codec", tags=["codec"])

MAX_PAYLOADS = 1000


class JsonPayload(BaseModel):
    """A payload in the codec protocol's JSON form (protobuf JSON: bytes as base64)."""

    metadata: dict[str, str] = Field(default_factory=dict, description="元数据：值为 base64")
    data: str = Field(default="", description="数据：base64")


class Payloads(BaseModel):
    """The codec protocol's body, both ways."""

    payloads: list[JsonPayload] = Field(max_length=MAX_PAYLOADS)


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_payload", f"{what} 不是 base64") from exc


def _to_proto(p: JsonPayload) -> Payload:
    return Payload(metadata={k: _b64(v, f"metadata.{k}") for k, v in p.metadata.items()}, data=_b64(p.data, "data"))


def _to_json(p: Payload) -> JsonPayload:
    return JsonPayload(
        metadata={k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
        data=base64.b64encode(p.data).decode(),
    )


async def _run(res: Any, body: Payloads, direction: str) -> Payloads:
    client = await res.client()
    codec = client.data_converter.payload_codec
    if codec is None:
        raise unavailable("codec_unavailable", "未配置载荷加密（INTAKE_PAYLOAD_KEYS）")
    try:
        protos = [_to_proto(p) for p in body.payloads]
        out = await (codec.decode(protos) if direction == "decode" else codec.encode(protos))
    except ApiError:
        raise
    except Exception as exc:  # a wrong key, a tampered payload: say so without detail
        raise ApiError(422, "undecodable_payload", "载荷无法解密（密钥未知或数据被篡改）") from exc
    return Payloads(payloads=[_to_json(p) for p in out])


Allowed = Annotated[CurrentUser, Depends(permitted(permissions.may_use_codec))]
DOC = responses(R401, R403, R422, R503) | {413: {"description": "payload_too_large：请求体过大"}}


@router.post("/decode", response_model=Payloads, summary="解密载荷（Temporal UI 编解码服务）", responses=DOC)
async def decode(body: Payloads, user: Allowed, res: ResourcesDep) -> Payloads:
    """Decrypt payloads for the Temporal UI; managers, the director and admins only."""
    return await _run(res, body, "decode")


@router.post("/encode", response_model=Payloads, summary="加密载荷（Temporal UI 编解码服务）", responses=DOC)
async def encode(body: Payloads, user: Allowed, res: ResourcesDep) -> Payloads:
    """Encrypt payloads with the active key (the UI encodes what it sends, e.g. a signal's input)."""
    return await _run(res, body, "encode")


async def _path_user(
    request: Request, token: Annotated[str, Path(min_length=1, max_length=512)], res: ResourcesDep
) -> CurrentUser:
    """The person of a codec-only credential (an API token is refused here)."""
    address = client_address(request)
    res.auth_failures.check(address)
    pool = await res.pool()
    staff = await bounded(res, StaffRepository(pool).by_token(token=token, scope="codec"))
    if staff is None:
        res.auth_failures.failed(address)
        raise ApiError(401, "invalid_token", "解密地址无效、已过期或已吊销")
    user = CurrentUser(staff)
    refuse(permissions.may_use_codec(user))
    return user


PathUser = Annotated[CurrentUser, Depends(_path_user)]


@router.post("/k/{token}/decode", response_model=Payloads, include_in_schema=False)
async def decode_personal(body: Payloads, user: PathUser, res: ResourcesDep) -> Payloads:
    """decode, with a codec-only credential in the endpoint (a personal codec URL for a UI without sign-in)."""
    return await _run(res, body, "decode")


class CodecCredential(BaseModel):
    """A personal codec URL: paste it into the Temporal UI's Codec Server setting."""

    url: str = Field(description="个人解密地址（只能解密，不能用于其他接口）")
    expires_at: datetime


@router.post("/credentials", response_model=CodecCredential, status_code=201,
             summary="签发个人解密地址（经理、总经理、管理员）", responses=DOC)
async def issue_codec_credential(user: Allowed, res: ResourcesDep) -> CodecCredential:
    """A codec-only credential for the caller, as the endpoint the Temporal UI calls (decode only)."""
    pool = await res.pool()
    hours = res.settings.codec_credential_hours
    token = await bounded(res, StaffRepository(pool).issue_token(
        staff_id=user.id, label="codec", ttl_days=hours / 24, scope="codec", issued_by=user.id, issued_via="api"))
    return CodecCredential(url=codec_url(res.settings, token), expires_at=datetime.now(UTC) + timedelta(hours=hours))


def codec_url(settings: Settings, token: str) -> str:
    """The personal codec endpoint of a codec credential (the UI appends /decode)."""
    return f"{settings.console_base()}/codec/k/{token}"


# --- the dev stack's local operator: decode only, loopback only ---------------------------------


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_operator(request: Request, secret: Annotated[str, Path(min_length=1, max_length=128)]) -> None:
    """Admit the dev stack's local operator: the right secret, from this machine (404 when there is none)."""
    credential: LocalCodecCredential | None = getattr(request.app.state, "local_codec", None)
    if credential is None:
        raise ApiError(404, "not_found", "没有这个地址")
    if not _is_loopback(request.client.host if request.client else None):
        raise ApiError(403, "local_only", "本机编解码凭据只在本机使用")
    if not credential.accepts(secret):
        raise ApiError(401, "invalid_token", "编解码凭据无效（每次启动 intake dev 都会更换）")


LocalOperator = Depends(local_operator)


@router.post("/local/{secret}/decode", response_model=Payloads, include_in_schema=False,
             dependencies=[LocalOperator])
async def decode_local(body: Payloads, res: ResourcesDep) -> Payloads:
    """decode for the dev stack's own Temporal UI (the local operator's codec-only credential)."""
    return await _run(res, body, "decode")


@router.post("/local/{secret}/encode", include_in_schema=False, dependencies=[LocalOperator])
async def encode_local() -> None:
    """Refused: the local credential decrypts only, so the UI cannot encode a command for a case."""
    raise ApiError(403, "decode_only", "本机编解码凭据只能解密：业务操作请在网页工作台或接口办理")
