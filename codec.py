"""Encrypted payloads (SPEC §12): an AES-GCM payload codec with key ids, for every Temporal client and worker.

Every payload (workflow and activity inputs and results, update arguments, query answers, memo and
user metadata) leaves the process encrypted: ``encoding: binary/encrypted``, ``encryption-key-id:
<id>``, data = 12-byte nonce + AES-GCM ciphertext of the serialized original payload, compressed
first when that saves bytes (``compression: zstd``, see payload_compression.py; a payload without
that key is not compressed, as every payload written before compression existed). Search
attributes are not payloads of the codec: they stay plain, which is why they hold ids and stages only.

Keys come from configuration, ``INTAKE_PAYLOAD_KEYS="k1:<base64>,k2:<base64>"`` (16, 24 or 32 bytes
each): every key decrypts, and one encrypts: ``INTAKE_PAYLOAD_ENCRYPT_KEY_ID`` (else the first). A key
is rotated in two phases (docs/operations.md, "Payload keys"): add the new key as a decrypt-only key to
every process, then name it the encrypting key; keep the old one until no open case's history needs
it. Adding it first and encrypting with it at once would make every process not yet restarted fail
on "unknown key id". Never commit a real key.

Plain payloads (SPEC §13: only key holders command a case). With ``refuse_plain`` (what
``INTAKE_PAYLOAD_ENCRYPTION=required`` sets) a payload that is not encrypted is not passed on as it
came: decoding turns it into a ``binary/plain-refused`` payload, which the data converter of
:func:`data_converter` answers with a non-retryable ``ApplicationError`` (``plain_payload_refused``).
So a plain JSON update sent through the Temporal UI or ``temporal workflow update`` is rejected before
its validator, a plain start fails its workflow before any write, and nothing enters the case. It is
done at conversion rather than by raising in the codec: a codec error fails the whole workflow task,
which Temporal retries for ever (a case frozen by anyone who can reach the frontend).
``accept_plain`` passes them through (histories written before encryption, while they are replayed).

:class:`LocalCodecCredential` is the credential of the dev stack's own Temporal UI at the codec
endpoint (api/routers/codec.py): a random secret of scope ``codec`` that decrypts and does nothing else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import DataConverter, EncodingPayloadConverter, PayloadCodec
from temporalio.exceptions import ApplicationError

import payload_compression

ENCODING = b"binary/encrypted"
REFUSED = b"binary/plain-refused"
REFUSED_TYPE = "plain_payload_refused"
KEY_ID = "encryption-key-id"
COMPRESSION = payload_compression.METADATA_KEY
NONCE_BYTES = 12


class PayloadKeyError(ValueError):
    """A key ring that cannot be used (bad format, unknown key id)."""


def parse_keys(text: str) -> list[tuple[str, bytes]]:
    """`"k2:<base64>,k1:<base64>"` as [(key id, key)], the encrypting key first."""
    keys: list[tuple[str, bytes]] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, b64 = part.partition(":")
        kid = kid.strip()
        if not sep or not kid or len(kid) > 64:
            raise PayloadKeyError("INTAKE_PAYLOAD_KEYS: each key is <id>:<base64>, e.g. k2:q83v…,k1:…")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PayloadKeyError(f"INTAKE_PAYLOAD_KEYS: key {kid!r} is not base64") from exc
        if len(key) not in (16, 24, 32):
            raise PayloadKeyError(f"INTAKE_PAYLOAD_KEYS: key {kid!r} has {len(key)} bytes (16, 24 or 32)")
        if any(k == kid for k, _ in keys):
            raise PayloadKeyError(f"INTAKE_PAYLOAD_KEYS: key id {kid!r} given twice")
        keys.append((kid, key))
    if not keys:
        raise PayloadKeyError("INTAKE_PAYLOAD_KEYS is empty")
    return keys


def new_key_spec(key_id: str = "k1") -> str:
    """A fresh random 256-bit key as `<id>:<base64>` (the dev stack keeps one in its data dir)."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def encrypting_key_id(keys: Sequence[tuple[str, bytes]], encrypt_key_id: str | None = None) -> str:
    """The id of the key that encrypts: `encrypt_key_id` when given (it must be in the ring), else the first."""
    if not keys:
        raise PayloadKeyError("no payload key")
    if not encrypt_key_id:
        return keys[0][0]
    if encrypt_key_id not in (kid for kid, _ in keys):
        raise PayloadKeyError(
            f"INTAKE_PAYLOAD_ENCRYPT_KEY_ID names {encrypt_key_id!r}, which INTAKE_PAYLOAD_KEYS does not hold"
        )
    return encrypt_key_id


class EncryptionCodec(PayloadCodec):
    """AES-GCM with a key id in each payload's metadata; one key encrypts, every key decrypts."""

    def __init__(self, keys: Sequence[tuple[str, bytes]], *, refuse_plain: bool = False,
                 encrypt_key_id: str | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._active_id = encrypting_key_id(keys, encrypt_key_id)
        self._keys = {kid: AESGCM(key) for kid, key in keys}
        self.refuse_plain = refuse_plain

    @property
    def active_key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._active_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload with the active key."""
        aes = self._keys[self._active_id]
        out: list[Payload] = []
        for p in payloads:
            nonce = os.urandom(NONCE_BYTES)
            plain, compression = payload_compression.compress(p.SerializeToString())
            # The key id is bound to the ciphertext as associated data: a swapped id fails to decrypt.
            data = nonce + aes.encrypt(nonce, plain, associated_data(self._active_id, compression))
            meta = {"encoding": ENCODING, KEY_ID: self._active_id.encode()}
            if compression:
                meta[COMPRESSION] = compression
            out.append(Payload(metadata=meta, data=data))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads with the key their metadata names; plain ones are marked refused
        (``refuse_plain``) or pass through."""
        out: list[Payload] = []
        for p in payloads:
            if p.metadata.get("encoding") != ENCODING:
                out.append(refused(p) if self.refuse_plain else p)
                continue
            kid = p.metadata.get(KEY_ID, b"").decode()
            aes = self._keys.get(kid)
            if aes is None:
                raise PayloadKeyError(f"payload encrypted with unknown key id {kid!r} (add it to INTAKE_PAYLOAD_KEYS)")
            compression = p.metadata.get(COMPRESSION) or None
            plain = aes.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], associated_data(kid, compression))
            out.append(Payload.FromString(payload_compression.decompress(plain, compression)))
        return out


def associated_data(key_id: str, compression: bytes | None) -> bytes:
    """What AES-GCM authenticates beside the ciphertext: the key id and, when compressed, the compression,
    so neither can be relabelled (a payload from before compression has the key id alone)."""
    return key_id.encode() + (b"\0" + compression if compression else b"")


def refused(p: Payload) -> Payload:
    """A plain payload as a refused one: its original encoding kept beside it, for whoever looks."""
    return Payload(metadata={**p.metadata, "encoding": REFUSED, "refused-encoding": p.metadata.get("encoding", b"")},
                   data=p.data)


class RefusedPlainConverter(EncodingPayloadConverter):
    """Reads a refused plain payload as a business failure: never retried, never converted."""

    @property
    def encoding(self) -> str:
        """The marker encoding the codec gives a refused plain payload."""
        return REFUSED.decode()

    def to_payload(self, value: Any) -> Payload | None:
        """Never encodes anything (last in the chain)."""
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        """Refuse: an ApplicationError fails a workflow's start and rejects an update before its validator."""
        raise ApplicationError(
            "未加密的载荷被拒绝：只有持有载荷密钥的程序可以操作案件", type=REFUSED_TYPE, non_retryable=True
        )


class StrictPayloadConverter(PydanticPayloadConverter):
    """The pydantic payload converter that refuses plain payloads marked by the codec."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), RefusedPlainConverter())


def data_converter(keys: Sequence[tuple[str, bytes]] | None, *, refuse_plain: bool = True,
                   encrypt_key_id: str | None = None) -> DataConverter:
    """The pydantic data converter, with the encryption codec when keys are given (plain payloads
    refused unless `refuse_plain` is off; `encrypt_key_id` encrypts, else the first key)."""
    if not keys:
        return pydantic_data_converter
    return dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=StrictPayloadConverter,
        payload_codec=EncryptionCodec(keys, refuse_plain=refuse_plain, encrypt_key_id=encrypt_key_id),
    )


class LocalCodecCredential:
    """A decode-only codec credential (scope ``codec``) for the UI of the dev stack; keeps only a digest."""

    SCOPE = "codec"

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("a local codec secret has at least 32 characters")
        self._digest = hashlib.sha256(secret.encode()).digest()

    @classmethod
    def generate(cls) -> tuple[str, LocalCodecCredential]:
        """A fresh random secret (256 bits) and the credential that accepts it."""
        secret = secrets.token_urlsafe(32)
        return secret, cls(secret)

    def accepts(self, presented: str) -> bool:
        """True when `presented` is the secret (compared in constant time)."""
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)

    def __repr__(self) -> str:  # never the secret, not even its digest, in a log line or a traceback
        return "LocalCodecCredential(scope='codec')"
